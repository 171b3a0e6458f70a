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
_PARAM_UNITS = {"BW": "kg", "IRS": "mg/day", "EF": "day/yr", "ED": "yr", "age_start": "yr", "ET": "h/day",
                "SA_soil": "cm2", "AF": "mg/cm2", "PEF": "m3/kg", "LT": "yr", "IRW": "L/day", "SA_water": "cm2",
                "t_event": "h/event", "EV": "event/day"}


class Options(StageOptions):
    """Options of the ``health`` stage (``stages: health:`` in params)."""

    parameters: Literal["epa_rsl", "seed003", "hj25_3"] = Field(
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
    grid : HI and TCR per grid cell (None without grid predictions or soil); grid_methods: metal -> method.
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
    return res


def _method_labels() -> dict:
    from ..spatial import METHOD_LABELS

    return dict(METHOD_LABELS)


def _mc_display(mc: pd.DataFrame) -> pd.DataFrame:
    d = mc.copy()
    d["P(> threshold)"] = [hr.format_probability(p, int(n)) for p, n in zip(d["prob_gt_threshold"], d["n_iter"])]
    d["Threshold"] = [f"{t:g}" for t in d["threshold"]]
    return d.rename(columns={"medium": "Medium", "receptor": "Receptor", "metric": "Metric", "mean": "Mean",
                             "p5": "P5", "p50": "P50", "p95": "P95"})[
        ["Medium", "Receptor", "Metric", "Mean", "P5", "P50", "P95", "Threshold", "P(> threshold)"]]


def report(ctx, result: Result) -> None:
    """Methods, parameter and toxicity tables, deterministic results, Monte Carlo, grid maps."""
    import matplotlib.pyplot as plt

    out, o, data, p = ctx.out, ctx.options, ctx.data, ctx.params
    r = result
    out.markdown(hr.methods_text(parameters=o.parameters, receptors=o.receptors, cr_vi_fraction=o.cr_vi_fraction,
                                 n_iter=o.n_iter, seed=ctx.seed, not_assessed=r.not_assessed,
                                 default_abs_soil=o.default_abs_soil, media=r.media, toxicity=o.toxicity))
    if r.skipped_media:
        out.markdown(f"The {' and '.join(r.skipped_media)} samples are not assessed: the residential US EPA exposure "
                     "equations cover soil (and dust) and drinking water only.")
    exp_disp = r.exposure.T.rename_axis("Parameter").reset_index().rename(columns={"child": "Child",
                                                                                  "adult": "Adult"})
    exp_disp.insert(1, "Unit", exp_disp["Parameter"].map(_PARAM_UNITS))
    out.table("health_exposure_parameters", r.exposure.T.rename_axis("parameter").reset_index(),
              "Exposure parameters of the deterministic assessment (each value's citation is listed in the "
              "parameter file shipped with hmlib).", display=exp_disp)
    tox_all = pd.concat([t.reset_index().assign(medium_used=m) for m, t in r.toxicity.items()], ignore_index=True)
    tox_all = tox_all[tox_all["metal"].isin(set(r.risk["metal"]))]
    cols = {"metal": "Metal", "medium_used": "Medium", "rfd_oral": "RfD (mg/kg-d)", "sf_oral": "SF ((mg/kg-d)^-1)",
            "rfc": "RfC (mg/m3)", "iur": "IUR ((ug/m3)^-1)", "giabs": "GIABS", "abs_soil": "ABS", "rba_soil": "RBA",
            "kp_water": "Kp (cm/h)", "mutagen": "Mutagen", "table_version": "Source table"}
    tox_disp = tox_all.rename(columns=cols)[[c for c in cols.values() if c in tox_all.rename(columns=cols).columns]]
    out.table("health_toxicity", tox_all.drop(columns=["source"]),
              "Toxicity values and the table each comes from ('–': no value, the endpoint or pathway is not "
              "assessed). Cr(III) and Cr(VI) come from total Cr split by the Cr(VI) share.", display=tox_disp)
    out.table("health_risk", r.risk[["sample_id", "medium", "receptor", "metal", "pathway", "add", "hq", "cr"]],
              "Risk per sample, receptor, metal and pathway (add: mg/kg-day; inhalation: exposure concentration in "
              "mg/m3).", in_report=False)
    out.table("health_sample_indices", r.sample_indices,
              "Hazard index (HI) and total cancer risk (TCR) per sample and receptor.", in_report=False)
    for i, m in enumerate(r.media):
        s = r.summaries[m]
        disp = s.assign(**{c: 100 * s[c] for c in ("share_hi_gt_1", "share_cr_gt_1e-4", "share_cr_gt_1e-6")}).rename(
            columns={"receptor": "Receptor", "metal": "Metal", "hi_mean": "HI mean", "hi_max": "HI max",
                     "share_hi_gt_1": "HI > 1 (% samples)", "tcr_mean": "TCR mean",
                     "share_cr_gt_1e-4": "TCR > 1e-4 (%)", "share_cr_gt_1e-6": "TCR > 1e-6 (%)"})
        out.table("health_summary" if i == 0 else f"health_summary_{m}", s,
                  f"Hazard index (HI, sum of HQ over pathways) and total cancer risk (TCR, sum of CR) per receptor and "
                  f"metal in {m}: mean and maximum over samples and the share of samples above HI = 1 and TCR = 1e-4 "
                  f"and 1e-6 (metal 'all': sum over metals; '–': no toxicity value).", display=disp, max_rows=60)
        fig = hr.plot_contributions(r.risk[r.risk["medium"] == m], receptors=o.receptors)
        out.figure(f"health_contributions_{m}", fig,
                   f"Mean HI (left) and TCR (right) per metal in {m}, stacked by exposure pathway, per receptor.")
        plt.close(fig)
        out.markdown(hr.results_text(s, r.risk[r.risk["medium"] == m], medium=m))
    if "Cr" in data.metals and "Cr(VI)" not in data.metals:
        out.markdown(f"Cr(VI) was not measured: its hazard and cancer risk follow from the assumed Cr(VI) share of "
                     f"total Cr ({o.cr_vi_fraction:.3g}) and scale linearly with it; measured Cr(VI) (e.g. alkaline "
                     "digestion, US EPA Method 3060A) would replace this assumption.")
    # Monte Carlo
    if len(r.mc_table):
        out.table("health_montecarlo", r.mc_table,
                  f"Monte Carlo HI and TCR ({o.n_iter:,} iterations per receptor; mean, 5th, 50th and 95th "
                  "percentiles, probability of exceeding the threshold; no iteration above it prints as below one "
                  "in the number of iterations).", display=_mc_display(r.mc_table))
        for m in r.media:
            out.markdown(hr.montecarlo_text(r.mc_table, medium=m))
        out.markdown(hr.central_values_text(r.central))
        d = r.distributions
        out.table("health_mc_distributions", d[["parameter", "receptor", "distribution", "p1", "p2", "p3", "unit",
                                                "basis", "source"]],
                  "Exposure-factor distributions of the Monte Carlo analysis (lognormal: p1 median, p2 95th "
                  "percentile; normal: mean, sd, lower truncation; triangular: min, mode, max). Other factors stay at "
                  "their point values; each iteration also draws one sample of the region. Basis 'assumption': spread "
                  "chosen by hmlib around the RSL value.",
                  display=d[["parameter", "receptor", "distribution", "p1", "p2", "p3", "unit", "basis"]].rename(
                      columns={"parameter": "Parameter", "receptor": "Receptor", "distribution": "Distribution",
                               "unit": "Unit", "basis": "Basis"}))
        c = r.central
        out.table("health_central_values", c,
                  "Deterministic point value and Monte Carlo median of each varied exposure factor.",
                  display=c.rename(columns={"parameter": "Parameter", "receptor": "Receptor",
                                            "deterministic": "Deterministic", "mc_median": "Monte Carlo median",
                                            "ratio": "Ratio", "basis": "Basis"}))
        fig = hr.plot_montecarlo(r.montecarlo)
        out.figure("health_montecarlo", fig, "Monte Carlo distributions of log10 HI (left) and log10 TCR (right) per "
                   "receptor; dashed lines: HI = 1, TCR = 1e-6 and 1e-4.")
        plt.close(fig)
        sens = pd.concat([x.sensitivity.assign(medium=x.medium, receptor=x.receptor) for x in r.montecarlo],
                         ignore_index=True)
        out.table("health_sensitivity", sens[["medium", "receptor", "output", "input", "rho"]],
                  "Spearman rank correlation of each Monte Carlo input with HI and TCR.", in_report=False)
        for x in r.montecarlo:
            fig = hr.plot_tornado(x)
            out.figure(f"health_tornado_{x.medium}_{x.receptor}", fig,
                       f"Sensitivity of HI and TCR ({x.receptor}, {x.medium}): Spearman rank correlation of the inputs "
                       "(exposure factors, and drawn concentrations such as 'C Cd') with the output; the ten inputs "
                       "with the largest absolute correlation.")
            plt.close(fig)
    # grid
    if r.grid is None:
        out.markdown("No grid predictions of the spatial analysis were available, so HI and TCR are not mapped.")
        return
    out.table("health_grid", r.grid, "HI and TCR per grid cell from the predicted concentrations.", in_report=False)
    fig = hr.plot_grid_risk(r.grid, coordinate_unit=p.data.coordinate_unit)
    out.figure("health_grid_maps", fig,
               "HI and TCR on the prediction grid: the per-sample risk model (same exposure parameters, toxicity "
               f"values and Cr(VI) share) applied to the concentrations predicted by "
               f"{hr.methods_caption(r.grid_methods, _method_labels())} "
               "(the method the spatial cross-validation chose for each metal); log colour scale.")
    plt.close(fig)
