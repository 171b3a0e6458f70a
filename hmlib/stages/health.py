"""Stage ``health``: human health risk, US EPA deterministic and Monte Carlo assessment.

``run`` composes :mod:`hmlib.health`: deterministic risk per sample, metal, pathway and receptor;
a seeded Monte Carlo analysis per medium and receptor; and, when the spatial stage ran (optional
read of ``grid_predictions``), HI and TCR on the grid from the same risk model applied to the
method chosen for each metal. ``report`` writes the section.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from pydantic import Field, field_validator

from .. import health as hr
from ..params import StageOptions
from .base import Read, StageSpec, needs_exposure_medium

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]

_EXPOSURE_MEDIA = ("soil", "dust", "water", "groundwater")
_PARAM_NAMES = {"BW": ("BW", "body weight"), "IRS": ("IRS", "soil ingestion rate"),
                "EF": ("EF", "exposure frequency"), "ED": ("ED", "exposure duration"),
                "age_start": ("Age at start", "age at the start of exposure"),
                "ET": ("ET", "time outdoors exposed to dust"), "SA_soil": ("SA (soil)", "skin area in contact with soil"),
                "AF": ("AF", "soil-to-skin adherence factor"), "PEF": ("PEF", "particulate emission factor"),
                "LT": ("LT", "lifetime"), "IRW": ("IRW", "drinking-water intake"),
                "SA_water": ("SA (water)", "skin area in contact with water"),
                "t_event": ("t (event)", "duration of one bathing event"), "EV": ("EV", "bathing events per day")}
_BASIS = {"cited": "cited", "cited+assumption": "cited value, spread assumed", "assumption": "assumed"}
_PARAM_UNITS = {"BW": "kg", "IRS": "mg/day", "EF": "day/yr", "ED": "yr", "age_start": "yr", "ET": "h/day",
                "SA_soil": "cm2", "AF": "mg/cm2", "PEF": "m3/kg", "LT": "yr", "IRW": "L/day", "SA_water": "cm2",
                "t_event": "h/event", "EV": "event/day"}


class Options(StageOptions):
    """Options of the ``health`` stage (``stages: health:`` in params)."""

    parameters: Literal["epa_rsl", "zhao2026", "hj25_3"] = Field(
        default="epa_rsl", description="exposure parameter set: US EPA RSL resident, Zhao et al. (2026), "
                                       "China HJ 25.3-2019")
    toxicity: Literal["epa_rsl", "epa_rsl_iris2024"] = Field(
        default="epa_rsl", description="toxicity value set: US EPA RSL tables of November 2024, or the same with the "
                                       "Cr(VI) values of the August 2024 IRIS assessment")
    receptors: list[Literal["child", "adult", "resident"]] = Field(
        default=["child", "adult", "resident"], min_length=1, description="receptors to assess")
    cr_vi_fraction: float = Field(
        default=0.142857, ge=0.0, le=1.0,
        description="share of Cr(VI) in total Cr (default 1/7: the RSL 1:6 Cr(VI):Cr(III) assumption)")
    default_abs_soil: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="dermal absorption fraction for metals without an ABS (None: no dermal soil pathway, as the RSLs)")
    n_iter: int = Field(default=10000, ge=10000, le=1_000_000, description="Monte Carlo iterations")
    distributions: Literal["usepa_efh2011"] = Field(
        default="usepa_efh2011", description="exposure-factor distribution set for the Monte Carlo analysis")
    grid_method: str | None = Field(
        default=None, description="prediction method of the spatial stage to map risk from (None: the method the "
                                  "spatial stage chose for each metal)")

    @field_validator("receptors")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"receptors must be distinct, got {v}")
        return v


SPEC = StageSpec(
    name="health",
    notebook="40_health.ipynb",
    title="Human health risk: US EPA deterministic and Monte Carlo assessment",
    options=Options,
    reads=(Read("grid_predictions", required=False),),
    writes=(),
    requires=(needs_exposure_medium,),
)


@dataclass
class Result:
    """What the health stage computed.

    Attributes
    ----------
    media : media assessed (soil, dust, water, groundwater present in the region).
    exposure, distributions : exposure parameter set and Monte Carlo distributions used.
    toxicity : medium -> toxicity table used.
    risk : per sample, receptor, metal and pathway (:func:`hmlib.health.risk_table`), all media.
    sample_indices : HI and TCR per sample and receptor.
    summaries : medium -> :func:`hmlib.health.hazard_summary`.
    not_assessed : metals without toxicity values (lead).
    montecarlo : list of :class:`hmlib.health.MonteCarloResult`; mc_table their summary.
    central : deterministic point value beside the Monte Carlo median of each varied factor.
    grid : HI and TCR per grid cell (None without grid predictions or soil); grid_methods: metal -> method;
        grid_below_zero: metal -> number of cells whose predicted concentration was below zero, taken as zero.
    """

    media: list
    exposure: pd.DataFrame
    distributions: pd.DataFrame
    toxicity: dict
    risk: pd.DataFrame
    sample_indices: pd.DataFrame
    summaries: dict
    not_assessed: list
    montecarlo: list
    mc_table: pd.DataFrame
    central: pd.DataFrame
    grid: pd.DataFrame | None = None
    grid_methods: dict = field(default_factory=dict)
    grid_below_zero: dict = field(default_factory=dict)
    skipped_media: list = field(default_factory=list)


def check(ctx) -> list[str]:
    """Options against the region: the grid method, when named, must be one the spatial stage can choose."""
    o = ctx.options
    probs = []
    from ..spatial import METHOD_LABELS

    if o.grid_method is not None and o.grid_method not in METHOD_LABELS:
        probs.append(f"stages.health.grid_method: got {o.grid_method!r}; expected one of the spatial methods "
                     f"({', '.join(METHOD_LABELS)}) or nothing for the method chosen per metal")
    return probs


def run(ctx) -> Result:
    """Deterministic risk, Monte Carlo and grid risk of every exposure medium."""
    from ..progress import track

    o, data = ctx.options, ctx.data
    media = [m for m in data.media if m in _EXPOSURE_MEDIA]
    exposure = hr.load_exposure_parameters(o.parameters)
    dist = hr.load_distributions(o.distributions)
    tox = {m: hr.load_toxicity(o.toxicity, medium=m) for m in media}
    risks, summaries = {}, {}
    for m in media:
        conc = data.wide(m)
        conc.index = conc.index.astype(str)
        risks[m] = hr.risk_table(conc, medium=m, exposure=exposure, toxicity=tox[m], receptors=tuple(o.receptors),
                                 cr_vi_fraction=o.cr_vi_fraction, default_abs_soil=o.default_abs_soil)
        summaries[m] = hr.hazard_summary(risks[m])
    not_assessed = sorted({x for m in media for x in risks[m].attrs["not_assessed"]})
    risk_all = pd.concat(risks.values(), ignore_index=True)
    mc = []
    jobs = [(i, m, k, rec) for i, m in enumerate(media) for k, rec in enumerate(o.receptors)]
    for i, m, k, rec in track(jobs, desc="health Monte Carlo"):
        conc = data.wide(m)
        conc.index = conc.index.astype(str)
        seed = int(ctx.rng(100 * i + k).integers(0, 2**31 - 1))
        mc.append(hr.monte_carlo(conc, medium=m, receptor=rec, exposure=exposure, toxicity=tox[m],
                                 distributions=dist, n_iter=o.n_iter, seed=seed, cr_vi_fraction=o.cr_vi_fraction,
                                 default_abs_soil=o.default_abs_soil))
    res = Result(media=media, exposure=exposure, distributions=dist, toxicity=tox, risk=risk_all,
                 sample_indices=hr.sample_indices(risk_all), summaries=summaries, not_assessed=not_assessed,
                 montecarlo=mc, mc_table=hr.montecarlo_table(mc) if mc else pd.DataFrame(),
                 central=hr.central_values_table(exposure, dist),
                 skipped_media=[m for m in data.media if m not in media])
    gp = ctx.read_table("grid_predictions")
    if gp is not None and "soil" in media:
        recs = tuple(r for r in o.receptors if r in ("child", "resident")) or tuple(o.receptors)
        # exactly the per-sample model: same parameters, toxicity set, Cr(VI) share and dermal rule
        grid = hr.grid_risk(gp, exposure=exposure, toxicity=tox["soil"], receptors=recs, method=o.grid_method,
                            cr_vi_fraction=o.cr_vi_fraction, default_abs_soil=o.default_abs_soil, medium="soil")
        res.grid, res.grid_methods = grid, dict(grid.attrs.get("methods", {}))
        res.grid_below_zero = dict(grid.attrs.get("cells_below_zero", {}))
    return res


def _mc_display(mc: pd.DataFrame) -> pd.DataFrame:
    d = mc.copy()
    d["P(> threshold)"] = [hr.format_probability(p, int(n)) for p, n in zip(d["prob_gt_threshold"], d["n_iter"])]
    d["Threshold"] = [hr.sci_text(t, 1) for t in d["threshold"]]
    for c in ("mean", "p5", "p50", "p95"):
        d[c] = [hr.sci_text(v) for v in d[c]]
    cols = ["Medium", "Receptor", "Metric", "Mean", "P5", "P50", "P95", "Threshold", "P(> threshold)"]
    if d["medium"].nunique() == 1:
        cols = cols[1:]
    return d.rename(columns={"medium": "Medium", "receptor": "Receptor", "metric": "Metric", "mean": "Mean",
                             "p5": "P5", "p50": "P50", "p95": "P95"})[cols]


def report(ctx, result: Result) -> None:
    """Methods; what HI and TCR mean for residents, with the Monte Carlo interval; maps; reference tables in the
    appendix; findings and limitations."""
    import matplotlib.pyplot as plt

    out, o, data, p = ctx.out, ctx.options, ctx.data, ctx.params
    r = result
    cr_vi_assumed = "Cr" in data.metals and "Cr(VI)" not in data.metals
    out.markdown(hr.methods_summary(parameters=o.parameters, receptors=o.receptors, n_iter=o.n_iter, media=r.media,
                                    appendix_ref="@sec-appendix-health"))
    out.markdown(hr.methods_text(parameters=o.parameters, receptors=o.receptors, cr_vi_fraction=o.cr_vi_fraction,
                                 n_iter=o.n_iter, seed=ctx.seed, not_assessed=r.not_assessed,
                                 default_abs_soil=o.default_abs_soil, media=r.media, toxicity=o.toxicity)
                 + f" The exposure parameters and toxicity values are listed in {out.ref('health_exposure_parameters')} "
                 f"and {out.ref('health_toxicity')}, the Monte Carlo distributions in "
                 f"{out.ref('health_mc_distributions')}.", appendix=True)
    if r.skipped_media:
        out.markdown(f"The {' and '.join(r.skipped_media)} samples are not assessed: the residential US EPA exposure "
                     "equations cover soil (and dust) and drinking water only.")
    # appendix: the inputs of the assessment
    exp_disp = r.exposure.T.rename_axis("Parameter").reset_index().rename(columns={"child": "Child",
                                                                                  "adult": "Adult"})
    codes = exp_disp["Parameter"]
    exp_disp.insert(1, "Meaning", codes.map(lambda c: _PARAM_NAMES.get(c, (c, ""))[1]))
    exp_disp.insert(2, "Unit", codes.map(_PARAM_UNITS))
    exp_disp["Parameter"] = codes.map(lambda c: _PARAM_NAMES.get(c, (c, ""))[0])
    out.table("health_exposure_parameters", r.exposure.T.rename_axis("parameter").reset_index(),
              "Exposure parameters of the deterministic assessment (each value's citation is listed in the "
              "parameter file shipped with hmlib).", display=exp_disp, appendix=True)
    tox_all = pd.concat([t.reset_index().assign(medium_used=m) for m, t in r.toxicity.items()], ignore_index=True)
    tox_all = tox_all[tox_all["metal"].isin(set(r.risk["metal"]))]
    cols = {"metal": "Metal", "medium_used": "Medium", "rfd_oral": "RfD (mg/kg-d)", "sf_oral": "SF ((mg/kg-d)^-1)",
            "rfc": "RfC (mg/m3)", "iur": "IUR ((ug/m3)^-1)", "giabs": "GIABS", "abs_soil": "ABS", "rba_soil": "RBA",
            "kp_water": "Kp (cm/h)", "mutagen": "Mutagen", "table_version": "Source table"}
    tox_disp = tox_all.rename(columns=cols)[[c for c in cols.values() if c in tox_all.rename(columns=cols).columns]]
    if len(r.media) == 1:
        tox_disp = tox_disp.drop(columns=["Medium"], errors="ignore")
    out.table("health_toxicity", tox_all.drop(columns=["source"]),
              "Toxicity values and the table each comes from ('–': no value, the endpoint or pathway is not "
              "assessed). Cr(III) and Cr(VI) come from total Cr split by the Cr(VI) share.", display=tox_disp,
              appendix=True)
    out.table("health_risk", r.risk[["sample_id", "medium", "receptor", "metal", "pathway", "add", "hq", "cr"]],
              "Risk per sample, receptor, metal and pathway (add: mg/kg-day; inhalation: exposure concentration in "
              "mg/m3).", in_report=False)
    out.table("health_sample_indices", r.sample_indices,
              "Hazard index (HI) and total cancer risk (TCR) per sample and receptor.", in_report=False)
    # results per medium: one receptor table, one contributions figure, one interpretation
    mc_fig = "health_montecarlo" if len(r.mc_table) else None
    findings = []
    for i, m in enumerate(r.media):
        s = r.summaries[m]
        risk_m = r.risk[r.risk["medium"] == m]
        if s.empty:
            out.markdown(f"No metal of the {m} samples has toxicity values, so no risk was computed.")
            continue
        sfx = "" if i == 0 else f"_{m}"
        tname, fname = f"health_summary{sfx}", f"health_contributions_{m}"
        out.table(tname, s,
                  f"Hazard index (HI, sum over metals and pathways) and total cancer risk (TCR) in {m} per receptor: "
                  "deterministic mean and maximum over the samples and share of samples above the thresholds; Monte "
                  "Carlo median, 5th-95th percentile interval and probability of exceeding the threshold; the metal "
                  "with the largest share of the mean. The resident's HI is the child's (noncancer effects are "
                  "assessed for the child).",
                  display=hr.receptor_table(s, r.sample_indices, r.mc_table, medium=m))
        fig = hr.plot_contributions(risk_m, receptors=o.receptors)
        out.figure(fname, fig, f"Mean hazard quotient (left) and mean cancer risk (right) per metal in {m}, stacked "
                   "by exposure pathway: the child's HI (the most exposed receptor) and the resident's lifetime "
                   "cancer risk.")
        plt.close(fig)
        out.markdown(hr.results_text(s, risk_m, r.mc_table if len(r.mc_table) else None, medium=m,
                                     indices=r.sample_indices, cr_vi_fraction=o.cr_vi_fraction,
                                     cr_vi_assumed=cr_vi_assumed,
                                     refs={"table": _rid("tbl", tname), "contributions": _rid("fig", fname),
                                           "montecarlo": _rid("fig", mc_fig) if mc_fig else None}))
        findings += _findings(r, m, tname, mc_fig)
        metal_disp = s.assign(**{c: 100 * s[c] for c in ("share_hi_gt_1", "share_cr_gt_1e-4", "share_cr_gt_1e-6")})
        out.table(f"health_metals{sfx}", s.copy(),
                  f"HI and TCR per receptor and metal in {m}: mean and maximum over samples and the share of samples "
                  "above HI = 1 and TCR = 10^−4^ and 10^−6^ (metal 'all': sum over metals; '–': no toxicity value).",
                  display=metal_disp.rename(columns={
                      "receptor": "Receptor", "metal": "Metal", "hi_mean": "HI mean", "hi_max": "HI max",
                      "share_hi_gt_1": "HI > 1 (% samples)", "tcr_mean": "TCR mean",
                      "share_cr_gt_1e-4": "TCR > 1e-4 (%)", "share_cr_gt_1e-6": "TCR > 1e-6 (%)"}),
                  max_rows=60, appendix=True)
    # Monte Carlo
    if len(r.mc_table):
        fig = hr.plot_montecarlo(r.montecarlo)
        out.figure("health_montecarlo", fig, f"Monte Carlo distributions ({o.n_iter:,} iterations per receptor) of "
                   "the hazard index (left) and the total cancer risk (right); each iteration draws one set of "
                   "exposure factors and one sample of the region. Threshold lines as named in the legends.")
        plt.close(fig)
        first = r.montecarlo[0]
        out.markdown("The Monte Carlo medians lie below the deterministic means because the deterministic exposure "
                     "factors are upper-end defaults, while the Monte Carlo distributions are centred on typical "
                     f"values ({out.ref('health_central_values')}); the full Monte Carlo summary is "
                     f"{out.ref('health_montecarlo')}, and the inputs the results are most sensitive to are shown in "
                     f"{out.ref('health_tornado_' + first.medium + '_' + first.receptor, 'fig')}"
                     + (" and the following figures" if len(r.montecarlo) > 1 else "") + ".")
        out.markdown(hr.central_values_text(_central_for_media(r.central, r.media)), appendix=True)
        out.table("health_montecarlo", r.mc_table,
                  f"Monte Carlo HI and TCR ({o.n_iter:,} iterations per receptor; mean, 5th, 50th and 95th "
                  "percentiles, probability of exceeding the threshold; no iteration above it prints as below one "
                  "in the number of iterations).", display=_mc_display(r.mc_table), appendix=True)
        d = r.distributions
        out.table("health_mc_distributions", d[["parameter", "receptor", "distribution", "p1", "p2", "p3", "unit",
                                                "basis", "source"]],
                  "Exposure-factor distributions of the Monte Carlo analysis (lognormal: p1 median, p2 95th "
                  "percentile; normal: mean, sd, lower truncation; triangular: min, mode, max). Other factors stay at "
                  "their point values; each iteration also draws one sample of the region. Basis 'assumption': spread "
                  "chosen by hmlib around the US EPA default value.",
                  display=d[["parameter", "receptor", "distribution", "p1", "p2", "p3", "unit", "basis"]].assign(
                      parameter=d["parameter"].map(lambda c: _PARAM_NAMES.get(c, (c, ""))[0]),
                      basis=d["basis"].map(lambda b: _BASIS.get(b, b))).rename(
                      columns={"parameter": "Parameter", "receptor": "Receptor", "distribution": "Distribution",
                               "p1": "Median, mean or minimum", "p2": "95th percentile, SD, mode or maximum",
                               "p3": "Lower bound or maximum", "unit": "Unit", "basis": "Basis"}), appendix=True)
        c = _central_for_media(r.central, r.media)
        out.table("health_central_values", c,
                  "Deterministic point value and Monte Carlo median of each varied exposure factor.",
                  display=c.assign(parameter=c["parameter"].map(lambda x: _PARAM_NAMES.get(x, (x, ""))[0]),
                                   basis=c["basis"].map(lambda b: _BASIS.get(b, b))).rename(
                      columns={"parameter": "Parameter", "receptor": "Receptor", "unit": "Unit",
                               "deterministic": "Deterministic", "mc_median": "Monte Carlo median",
                               "ratio": "Ratio", "basis": "Basis"}), appendix=True)
        sens = pd.concat([x.sensitivity.assign(medium=x.medium, receptor=x.receptor) for x in r.montecarlo],
                         ignore_index=True)
        out.table("health_sensitivity", sens[["medium", "receptor", "output", "input", "rho"]],
                  "Spearman rank correlation of each Monte Carlo input with HI and TCR.", in_report=False)
        for x in r.montecarlo:
            fig = hr.plot_tornado(x)
            out.figure(f"health_tornado_{x.medium}_{x.receptor}", fig,
                       f"Sensitivity of HI and TCR ({x.receptor}, {x.medium}): Spearman rank correlation of the inputs "
                       "(exposure factors, and the drawn concentration of each metal) with the output; the ten inputs "
                       "with the largest absolute correlation.", appendix=True, group="health_tornado")
            plt.close(fig)
    # grid
    if r.grid is None:
        out.markdown("No grid predictions of the spatial analysis were available, so HI and TCR are not mapped.")
    else:
        out.table("health_grid", r.grid, "HI and TCR per grid cell from the predicted concentrations.",
                  in_report=False)
        fig = hr.plot_grid_risk(r.grid, coordinate_unit=p.data.coordinate_unit, crs=p.data.crs)
        out.figure("health_grid_maps", fig,
                   "Hazard index and total cancer risk on the prediction grid: the per-sample risk model (same "
                   "exposure parameters, toxicity values and Cr(VI) share) applied to the mean concentrations "
                   "predicted by the method the spatial cross-validation chose for each metal (the expected exposure)"
                   + (" (@tbl-spatial-choice)." if "spatial" in ctx.params.stages else "."))
        plt.close(fig)
        out.markdown(_grid_text(r.grid) + f" ({out.ref('health_grid_maps', 'fig')})." + _below_zero_text(r.grid_below_zero))
    for f in findings:
        out.finding(f["text"], importance=f["importance"], refs=f["refs"])
    for m in r.media:  # one conclusion per medium assessed: soil and drinking water can differ
        if not r.summaries[m].empty:
            out.conclusion(_conclusion(r, m, cr_vi_assumed))
    _limitations(ctx, r, cr_vi_assumed)


def _central_for_media(central: pd.DataFrame, media) -> pd.DataFrame:
    """The exposure factors of the media assessed (no drinking-water intake for soil alone, and vice versa)."""
    kinds = {hr.exposure_medium(m) for m in media}
    drop = set()
    if "water" not in kinds:
        drop |= {"IRW"}
    if "soil" not in kinds:
        drop |= {"IRS", "AF"}
    return central[~central["parameter"].isin(drop)]


def _rid(kind: str, name: str) -> str:
    from ..outputs import ref_id

    return ref_id(kind, name)


def _findings(r: Result, m: str, table: str, mc_fig: str | None) -> list[dict]:
    """The section's proposed key findings for medium ``m``: the noncancer hazard and the cancer risk, each with
    its Monte Carlo interval and exceedance probability."""
    ind = r.sample_indices[r.sample_indices["medium"] == m]
    recs = list(dict.fromkeys(ind["receptor"]))
    mc = r.mc_table[r.mc_table["medium"] == m] if len(r.mc_table) else r.mc_table
    refs = [_rid("tbl", table)] + ([_rid("fig", mc_fig)] if mc_fig else [])
    out = []
    r_hi = "child" if "child" in recs else recs[0]
    hi = ind.loc[ind["receptor"] == r_hi, "hi"]
    share = float((hi > 1).mean())
    t = (f"For a {r_hi} exposed to the {m} samples' concentrations, the hazard index averaged {hr.sci_text(hi.mean())} (maximum "
         f"{hr.sci_text(hi.max())}); ")
    t += ("no sample exceeded 1" if share == 0 else f"{100 * share:.2g} % of the samples exceeded 1")
    mh = mc[(mc["receptor"] == r_hi) & (mc["metric"] == "HI")] if len(mc) else mc
    if len(mh):
        q = mh.iloc[0]
        t += (f", and in the Monte Carlo analysis the median was {hr.sci_text(q.p50)} (90 % interval "
              f"{hr.sci_text(q.p5)} to {hr.sci_text(q.p95)}) with a probability of HI above 1 of "
              f"{hr._prob_text(q.prob_gt_threshold, int(q.n_iter))}")
    out.append({"text": t + ".", "importance": 0.75 if share > 0.05 else 0.55, "refs": refs})
    with_c = [x for x in recs if ind.loc[ind["receptor"] == x, "tcr"].notna().any()]
    if with_c:
        r_c = "resident" if "resident" in with_c else with_c[0]
        tc = ind.loc[ind["receptor"] == r_c, "tcr"]
        t = (f"The lifetime cancer risk of a {r_c} exposed to the {m} samples' concentrations averaged "
             f"{hr.sci_text(tc.mean())} (range {hr.sci_text(tc.min())} "
             f"to {hr.sci_text(tc.max())} over the samples; {100 * float((tc > 1e-4).mean()):.2g} % above 10^−4^)")
        mt = mc[(mc["receptor"] == r_c) & (mc["metric"] == "TCR") & (mc["threshold"] == 1e-4)] if len(mc) else mc
        if len(mt):
            q = mt.iloc[0]
            t += (f"; Monte Carlo median {hr.sci_text(q.p50)}, 90 % interval {hr.sci_text(q.p5)} to "
                  f"{hr.sci_text(q.p95)}")
        s = r.summaries[m]
        d = s[(s["receptor"] == r_c) & (s["metal"] != "all")].dropna(subset=["tcr_mean"])
        if len(d) and d["tcr_mean"].sum() > 0:
            top = d.sort_values("tcr_mean").iloc[-1]
            sh = top.tcr_mean / d["tcr_mean"].sum()
            t += f"; {top.metal} carries " + ("almost all" if sh > 0.995 else f"{100 * sh:.0f} %") + " of it"
        out.append({"text": t + ".", "importance": 0.7 if (tc > 1e-4).mean() > 0.05 else 0.5 if tc.mean() >= 1e-6 else 0.3,
                    "refs": refs})
    return out


def _conclusion(r: Result, m: str, cr_vi_assumed: bool) -> str:
    """What the risk means for the people exposed, in one or two sentences with the main numbers."""
    ind = r.sample_indices[r.sample_indices["medium"] == m]
    recs = list(dict.fromkeys(ind["receptor"]))
    r_hi = "child" if "child" in recs else recs[0]
    hi = ind.loc[ind["receptor"] == r_hi, "hi"]
    mc = r.mc_table[(r.mc_table["medium"] == m) & (r.mc_table["receptor"] == r_hi) & (r.mc_table["metric"] == "HI")] \
        if len(r.mc_table) else r.mc_table
    p_txt = (f"; in the Monte Carlo analysis it exceeded 1 with a probability of "
             f"{hr._prob_text(mc.iloc[0].prob_gt_threshold, int(mc.iloc[0].n_iter))}"
             if len(mc) else "")
    share = float((hi > 1).mean())
    who = f"Living on these {m}s" if hr.exposure_medium(m) == "soil" else f"Using this {m} daily"
    t = (f"{who} poses no appreciable noncancer hazard (a {r_hi}'s hazard index at most "
         f"{hr.sci_text(hi.max())}{p_txt})" if share == 0 else
         f"A noncancer hazard cannot be ruled out at {100 * share:.2g} % of the {m} samples (a {r_hi}'s hazard index "
         f"up to {hr.sci_text(hi.max())}{p_txt})")
    with_c = [x for x in recs if ind.loc[ind["receptor"] == x, "tcr"].notna().any()]
    if with_c:
        r_c = "resident" if "resident" in with_c else with_c[0]
        tc = ind.loc[ind["receptor"] == r_c, "tcr"]
        band = ("above the US EPA target range" if tc.mean() > 1e-4 else "within the US EPA target range"
                if tc.mean() >= 1e-6 else "below the US EPA target range")
        above = float((tc > 1e-4).mean())
        t += (f"; the lifetime cancer risk, {hr.sci_text(tc.mean())} on average (range {hr.sci_text(tc.min())} to "
              f"{hr.sci_text(tc.max())}), lies {band}"
              + (f", with {100 * above:.2g} % of the samples above 10^−4^" if above > 0 and tc.mean() <= 1e-4 else ""))
        s = r.summaries[m]
        d = s[(s["receptor"] == r_c) & (s["metal"] != "all")].dropna(subset=["tcr_mean"])
        if cr_vi_assumed and len(d) and d.sort_values("tcr_mean").iloc[-1].metal == "Cr(VI)":
            t += " and rests on the assumed share of hexavalent chromium, which was not measured"
    return t + "."


def _grid_text(grid: pd.DataFrame) -> str:
    recs = list(dict.fromkeys(grid["receptor"]))
    r_hi = "child" if "child" in recs else recs[0]
    g = grid[grid["receptor"] == r_hi]["hi"].dropna()
    txt = (f"On the prediction grid the {r_hi}'s hazard index ranges from {hr.sci_text(g.min())} to "
           f"{hr.sci_text(g.max())}, " + ("above 1 nowhere on the grid" if not (g > 1).any() else
                                         f"above 1 in {100 * float((g > 1).mean()):.2g} % of the cells"))
    with_c = [x for x in recs if grid.loc[grid["receptor"] == x, "tcr"].notna().any()]
    if with_c:
        r_c = "resident" if "resident" in with_c else with_c[0]
        c = grid[grid["receptor"] == r_c]["tcr"].dropna()
        txt += (f"; the {r_c}'s cancer risk ranges from {hr.sci_text(c.min())} to {hr.sci_text(c.max())}, "
                + ("above 10^−4^ nowhere" if not (c > 1e-4).any() else
                   f"above 10^−4^ in {100 * float((c > 1e-4).mean()):.2g} % of the cells"))
    return txt + ". The maps show where the risk is highest, from the mapped concentrations"


def _below_zero_text(below: dict) -> str:
    if not below:
        return ""
    parts = [f"{n:,} cells for {m}" for m, n in below.items()]
    return (" The interpolation on the original concentration scale fell below zero in "
            + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
            + "; no exposure follows from a negative concentration, so those cells were taken as zero.")


_PARAM_SET_ORIGIN = {
    "epa_rsl": "the US EPA residential defaults, which describe a US resident",
    "zhao2026": "those of Zhao et al. (2026) for an arid basin in north-west China",
    "hj25_3": "those of the Chinese guideline HJ 25.3-2019, which describe a resident of China",
}


def _limitations(ctx, r: Result, cr_vi_assumed: bool) -> None:
    o, out = ctx.options, ctx.out
    out.limitation(f"The exposure parameters are {_PARAM_SET_ORIGIN.get(o.parameters, o.parameters)}; "
                   "they were applied without adaptation to this region's population, diet and habits, and the "
                   "Monte Carlo distributions of body weight and exposure frequency are assumptions around these "
                   "defaults.")
    if cr_vi_assumed:
        out.limitation(f"Cr(VI) was not measured; a share of {o.cr_vi_fraction:.2g} of total Cr (the "
                       "ratio the US EPA screening tables assume) was taken as Cr(VI), and the cancer risk from Cr "
                       "scales linearly with this share.")
    out.limitation("Health risk doses use total concentrations with full oral bioavailability (except where the US "
                   "EPA tables give a relative bioavailability), which errs on the side of overestimating the risk"
                   + (f"; {', '.join(r.not_assessed)} could not be assessed (no reference dose or slope factor; lead "
                      "needs a blood-lead model)" if r.not_assessed else "") + ".")
