"""Stage ``sources``: source apportionment: correlation, PCA, PMF (EPA PMF 5.0 with robust fit, factor-count
criteria, bootstrap, DISP and BS-DISP) and Pb isotope mixing.

``run`` composes :mod:`hmlib.sources` (correlation, PCA, interpretation aid), :mod:`hmlib.pmf` (PMF around
esat) and :mod:`hmlib.isotopes` (two-end-member and Bayesian mixing with R-hat and ESS); ``report`` writes
the section.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from pydantic import Field, field_validator, model_validator

from .. import isotopes as iso
from .. import pmf as pmf_lib
from .. import sources as src
from ..context import StageContext
from ..params import StageOptions
from ..progress import track
from .base import StageSpec

__all__ = ["Options", "SPEC", "Result", "PMFMedium", "check", "run", "report"]


class Options(StageOptions):
    """Options of the ``sources`` stage (``stages: sources:`` in params)."""

    pca_transform: Literal["log", "clr"] = Field(
        default="log", description="PCA input: log10 or centred log-ratio of concentrations, then standardized")
    pca_components: int | None = Field(default=None, ge=1, description="fixed PCA component count; None: Kaiser")
    signatures: dict[str, list[str]] = Field(
        default_factory=dict, description="source type -> marker metals, for labelling factors")
    signature_min_similarity: float = Field(default=0.7, gt=0, le=1,
                                            description="cosine similarity needed to name a factor")
    pmf: bool = Field(default=True, description="run PMF")
    pmf_factor_range: tuple[int, int] = Field(default=(2, 5), description="smallest and largest factor count")
    pmf_factors: int | None = Field(default=None, ge=1, description="fixed factor count; None: chosen by the "
                                                                    "change in Q and stability")
    pmf_dq_units_min: float = Field(default=2.0, gt=0, description="smallest drop in Q(robust), in units of the "
                                                                   "values a factor adds, that supports a factor")
    pmf_stability: bool = Field(default=True, description="check bootstrap mapping and DISP swaps of the chosen count")
    pmf_stability_bootstrap: int = Field(default=50, ge=2, description="bootstrap runs of the stability check")
    pmf_robust: bool = Field(default=True, description="robust fit (EPA PMF 5.0): down-weight scaled residuals "
                                                       "beyond 4")
    pmf_starts: int = Field(default=20, ge=2, description="seeded random starts per factor count (EPA: 20)")
    pmf_bootstrap: int = Field(default=100, ge=2, description="bootstrap runs")
    pmf_bootstrap_threshold: float = Field(default=0.6, gt=0, lt=1, description="min r to map a bootstrap factor")
    pmf_bootstrap_block: int | None = Field(default=None, ge=2, description="block length; None: single samples")
    pmf_disp: bool = Field(default=True, description="run DISP error estimation (rest of the solution refitted)")
    pmf_bs_disp: int = Field(default=10, ge=0, description="bootstrap runs of BS-DISP; 0: no BS-DISP")
    pmf_max_iter: int = Field(default=20000, ge=100, description="largest number of esat iterations per run")
    pmf_converge_delta: float = Field(default=0.1, gt=0, description="convergence: change of Q below this ...")
    pmf_converge_n: int = Field(default=100, ge=10, description="... over this many iterations")
    mdl: dict[str, float] = Field(
        default_factory=dict,
        description="laboratory method detection limit per metal (medium unit); default: params "
                    "non_detects.detection_limits, else estimated from the data")
    error_fraction: float | dict[str, float] = Field(default=0.1, description="error fraction EF (0.1 means 10 %)")
    uncertainty_file: str | None = Field(
        default=None, description="CSV of uncertainties: sample_id, medium (optional) and one column per metal")
    species_categories: dict[str, Literal["strong", "weak", "bad"]] = Field(
        default_factory=dict, description="metal -> category, overriding the S/N rule")
    isotope_ratios: dict[str, str] = Field(
        default_factory=dict, description="ratio label (e.g. '206Pb/207Pb') -> covariate column with the ratio")
    isotope_endmembers: str | None = Field(default=None, description="CSV: source, ratio, mean, sd")
    isotope_pair: list[str] = Field(default_factory=list, description="the two end-members for linear mixing")
    isotope_residual_sd: float = Field(default=0.002, gt=0, description="measurement sd of each ratio")
    isotope_steps: int = Field(default=4000, ge=500, description="Metropolis steps per chain")

    @field_validator("pmf_factor_range")
    @classmethod
    def _range(cls, v):
        if not 1 <= v[0] <= v[1]:
            raise ValueError(f"expected 1 <= first <= second, got {v}")
        return v

    @model_validator(mode="after")
    def _isotopes(self):
        if self.isotope_ratios and not self.isotope_endmembers:
            raise ValueError("isotope_ratios need isotope_endmembers (a CSV of source, ratio, mean, sd)")
        if self.isotope_pair and len(self.isotope_pair) != 2:
            raise ValueError(f"isotope_pair must name two end-members, got {self.isotope_pair}")
        return self


SPEC = StageSpec(
    name="sources",
    notebook="50_sources.ipynb",
    title="Source apportionment: correlation, PCA, PMF and Pb isotope mixing",
    options=Options,
)

RHAT_WARN = 1.01


@dataclass
class PMFMedium:
    """PMF of one medium.

    Attributes
    ----------
    fit : the chosen base run (:class:`hmlib.pmf.PMFResult`).
    criteria : one row per factor count: Q values, Q/Qexp, change in Q, support, stability.
    residuals : scaled-residual distribution per factor count.
    chosen, why : the factor count and the sentence saying why.
    boot : bootstrap of the chosen run; disp, bs_disp : DISP and BS-DISP tables (None when off).
    signal_to_noise, categories : S/N and category per metal.
    uncertainty_source : "file", "laboratory" or "estimated" (MDLs estimated from the data).
    mdl : the MDLs used (None with an uncertainty file).
    """

    fit: pmf_lib.PMFResult
    criteria: pd.DataFrame
    residuals: pd.DataFrame
    chosen: int
    why: str
    boot: pmf_lib.BootstrapResult
    disp: dict | None
    bs_disp: dict | None
    signal_to_noise: pd.Series
    categories: pd.Series
    uncertainty_source: str
    mdl: dict | None
    estimated_mdl_metals: list[str] = field(default_factory=list)


@dataclass
class Result:
    """What the sources stage computed.

    Attributes
    ----------
    media : media analysed; dropped : samples left out per medium (a missing metal value).
    correlation : pairwise correlations (medium, method, metal_a, metal_b, r, p, n).
    pca : PCA per medium; pca_tests, pca_loadings : KMO/Bartlett and loadings tables.
    pmf : PMF per medium (:class:`PMFMedium`); empty when PMF is off.
    profiles, contributions, diagnostics, factor_count, bootstrap, disp, bs_disp, bs_disp_swaps,
    disp_swaps : tidy PMF tables over media.
    interpretation : factor interpretation aid (PCA and PMF).
    isotope_mixing, isotope_summary : isotope mixing per sample and averaged (None without ratios);
    isotope_convergence : R-hat and ESS per sample and share of the Bayesian model.
    """

    media: list[str]
    dropped: dict[str, int]
    correlation: pd.DataFrame
    pca: dict
    pca_tests: pd.DataFrame
    pca_loadings: pd.DataFrame
    pmf: dict[str, PMFMedium]
    profiles: pd.DataFrame | None
    contributions: pd.DataFrame | None
    diagnostics: pd.DataFrame | None
    factor_count: pd.DataFrame | None
    bootstrap: pd.DataFrame | None
    disp: pd.DataFrame | None
    disp_swaps: pd.DataFrame | None
    bs_disp: pd.DataFrame | None
    bs_disp_swaps: pd.DataFrame | None
    interpretation: pd.DataFrame
    isotope_mixing: pd.DataFrame | None = None
    isotope_summary: pd.DataFrame | None = None
    isotope_convergence: pd.DataFrame | None = None
    isotope_pair: tuple | None = None
    isotope_outside: int = 0


def check(ctx: StageContext) -> list[str]:
    """Problems of the options against the data (metals, ratio columns and files that do not exist)."""
    o, data, p = ctx.options, ctx.data, ctx.params
    metals = set(data.metals)
    problems = []
    for key in ("mdl", "species_categories"):
        bad = [k for k in getattr(o, key) if k not in metals]
        if bad:
            problems.append(f"stages.sources.{key}: got {', '.join(bad)}; expected metals of the region "
                            f"({', '.join(sorted(metals))})")
    if isinstance(o.error_fraction, dict):
        missing = [m for m in data.metals if m not in o.error_fraction]
        if missing:
            problems.append(f"stages.sources.error_fraction: got no value for {', '.join(missing)}; expected one "
                            "error fraction per metal or a single number")
    for key in ("uncertainty_file", "isotope_endmembers"):
        f = getattr(o, key)
        if f and not p.resolve(f).is_file():
            problems.append(f"stages.sources.{key}: got {f}; expected an existing CSV file")
    cols = set(data.samples.columns)
    bad = [c for c in o.isotope_ratios.values() if c not in cols]
    if bad:
        problems.append(f"stages.sources.isotope_ratios: got columns {', '.join(bad)}; expected sample columns "
                        "(add them to data.covariates)")
    if o.pmf_factors and o.pmf_factors > len(data.metals):
        problems.append(f"stages.sources.pmf_factors: got {o.pmf_factors}; expected at most the number of metals "
                        f"({len(data.metals)})")
    return problems


def run(ctx: StageContext) -> Result:
    """Correlation, PCA, PMF and isotope mixing of every medium."""
    o, data = ctx.options, ctx.data
    media = list(data.media)
    conc = {m: data.wide(m).dropna() for m in media}
    for m in media:
        conc[m].index = conc[m].index.astype(str)
    dropped = {m: int(data.wide(m).isna().any(axis=1).sum()) for m in media}
    corr = pd.concat([src.correlation_table(conc[m]).assign(medium=m) for m in media], ignore_index=True)
    pca, tests, loads, interp = {}, [], [], []
    for m in media:
        res = src.pca_varimax(conc[m], transform=o.pca_transform, n_components=o.pca_components)
        pca[m] = res
        loads.append(src.pca_loadings_table(res).assign(medium=m))
        t = res.tests
        tests.append({"medium": m, "n": len(conc[m]), "kmo": t["kmo"], "bartlett_chi2": t["bartlett_chi2"],
                      "bartlett_df": t["bartlett_df"], "bartlett_p": t["bartlett_p"],
                      "n_components": res.n_components, "criterion": res.criterion})
        weights = (res.rotated_loadings.clip(lower=0) ** 2 * 100).T
        interp.append(src.interpret_factors(weights, o.signatures, min_similarity=o.signature_min_similarity)
                      .assign(medium=m, method="PCA"))
    load = pd.concat(loads, ignore_index=True)[["medium", "component", "metal", "loading", "rotated_loading",
                                                "communality", "eigenvalue", "explained_variance_percent",
                                                "rotated_variance_percent"]]
    pmf_res: dict[str, PMFMedium] = {}
    if o.pmf:
        for mi, m in enumerate(media):
            pmf_res[m] = _pmf_medium(ctx, conc[m], m, mi)
            pct = pmf_lib.profile_table(pmf_res[m].fit).pivot(index="factor", columns="species",
                                                              values="percent_of_species")
            interp.append(src.interpret_factors(pct, o.signatures, min_similarity=o.signature_min_similarity)
                          .assign(medium=m, method="PMF"))
    interp_df = pd.concat(interp, ignore_index=True)[["medium", "method", "factor", "suggested_source", "similarity",
                                                      "best_signature", "top_metals", "reason"]]
    tabs = _pmf_tables(pmf_res) if pmf_res else dict.fromkeys(
        ["profiles", "contributions", "diagnostics", "factor_count", "bootstrap", "disp", "disp_swaps", "bs_disp",
         "bs_disp_swaps"])
    result = Result(media=media, dropped=dropped, correlation=corr, pca=pca, pca_tests=pd.DataFrame(tests),
                    pca_loadings=load, pmf=pmf_res, interpretation=interp_df, **tabs)
    if o.isotope_ratios:
        _isotopes(ctx, result)
    return result


def _pmf_medium(ctx: StageContext, x: pd.DataFrame, m: str, mi: int) -> PMFMedium:
    o, p = ctx.options, ctx.params
    est_metals: list[str] = []
    mdl = None
    if o.uncertainty_file:
        unc = pmf_lib.read_uncertainty_file(p.resolve(o.uncertainty_file), concentration=x, medium=m)
        source = "file"
    else:
        given = {**p.non_detects.detection_limits, **o.mdl}
        est = pmf_lib.estimated_mdl(x)
        mdl = {k: float(given.get(k, est[k])) for k in x.columns}
        est_metals = [k for k in x.columns if k not in given]
        source = "estimated" if est_metals else "laboratory"
        unc = pmf_lib.pmf_uncertainty(x, mdl=mdl, error_fraction=o.error_fraction)
    sn = pmf_lib.signal_to_noise(x, unc)
    cats = pmf_lib.species_categories(sn, overrides=o.species_categories)
    V, U = pmf_lib.pmf_input(x, unc, cats)
    n_strong = int((cats[V.columns] == "strong").sum())
    lo, hi = o.pmf_factor_range
    hi = min(hi, max(V.shape[1] - 2, 1))  # with m species, at most m - 2 factors are worth resolving
    counts = list(range(min(lo, hi), hi + 1))
    solver = dict(max_iter=o.pmf_max_iter, converge_delta=o.pmf_converge_delta, converge_n=o.pmf_converge_n,
                  robust=o.pmf_robust)
    base_seed = ctx.seed + 1000 * mi
    fits = {}
    for k in track(counts, desc=f"PMF factor counts ({m})"):
        fits[k] = pmf_lib.fit_pmf(V, U, n_factors=k, seed=base_seed + k, n_starts=o.pmf_starts, n_strong=n_strong,
                                  **solver)
    scan = pd.DataFrame([{"n_factors": k, "q_true": r.q_true, "q_robust": r.q_robust, "q_expected": r.q_expected,
                          "q_true_over_expected": r.q_true / r.q_expected,
                          "q_robust_over_expected": r.q_robust / r.q_expected,
                          "n_downweighted": r.settings["n_downweighted"]} for k, r in fits.items()])
    if o.pmf_factors:
        k = o.pmf_factors
        if k not in fits:
            fits[k] = pmf_lib.fit_pmf(V, U, n_factors=k, seed=base_seed + k, n_starts=o.pmf_starts,
                                      n_strong=n_strong, **solver)
        _, _, crit = pmf_lib.choose_factor_count(scan, n_samples=V.shape[0], n_species=V.shape[1],
                                                 dq_units_min=o.pmf_dq_units_min)
        why = f"{k} factors: fixed in the region's parameters"
    else:
        k, why, crit = pmf_lib.choose_factor_count(scan, n_samples=V.shape[0], n_species=V.shape[1],
                                                   dq_units_min=o.pmf_dq_units_min)
        if o.pmf_stability and len(counts) > 1:
            rows = []
            q = k
            while q >= counts[0]:
                rows.append(pmf_lib.factor_stability(fits[q], n_boot=o.pmf_stability_bootstrap,
                                                     seed=base_seed + 300 + q, threshold=o.pmf_bootstrap_threshold,
                                                     block_size=o.pmf_bootstrap_block))
                last = rows[-1]
                if last["bs_min_mapping"] >= 0.8 and last["disp_swaps_dq4"] == 0:
                    break
                q -= 1
            k, why, crit = pmf_lib.choose_factor_count(scan, n_samples=V.shape[0], n_species=V.shape[1],
                                                       dq_units_min=o.pmf_dq_units_min, stability=pd.DataFrame(rows))
    crit = crit.assign(chosen=crit["n_factors"] == k)
    res = fits[k]
    boot = pmf_lib.bootstrap_pmf(res, n_runs=o.pmf_bootstrap, seed=base_seed + 500,
                                 threshold=o.pmf_bootstrap_threshold, block_size=o.pmf_bootstrap_block)
    disp = pmf_lib.disp_pmf(res) if o.pmf_disp else None
    bsd = (pmf_lib.bs_disp_pmf(res, n_runs=o.pmf_bs_disp, seed=base_seed + 700, threshold=o.pmf_bootstrap_threshold,
                               block_size=o.pmf_bootstrap_block) if o.pmf_bs_disp else None)
    return PMFMedium(fit=res, criteria=crit, residuals=pmf_lib.scaled_residual_summary(fits), chosen=k, why=why,
                     boot=boot, disp=disp, bs_disp=bsd, signal_to_noise=sn, categories=cats,
                     uncertainty_source=source, mdl=mdl, estimated_mdl_metals=est_metals)


def _pmf_tables(pmf_res: dict[str, PMFMedium]) -> dict:
    prof, con, diag, crit, boot, disp, dsw, bsd, bsw = [], [], [], [], [], [], [], [], []
    for m, r in pmf_res.items():
        res = r.fit
        prof.append(pmf_lib.profile_table(res, r.boot).rename(columns={"species": "metal"}).assign(medium=m))
        con.append(pmf_lib.contribution_table(res).assign(medium=m))
        dg = pmf_lib.species_diagnostics(res).rename(columns={"species": "metal"})
        dg = dg.merge(pd.DataFrame({"metal": r.signal_to_noise.index, "signal_to_noise": r.signal_to_noise.to_numpy(),
                                    "category": r.categories.to_numpy()}), on="metal", how="right")
        diag.append(dg.assign(medium=m, n_factors=r.chosen, q_true=res.q_true, q_robust=res.q_robust,
                              q_expected=res.q_expected))
        crit.append(r.criteria.merge(r.residuals, on="n_factors", how="left").assign(medium=m))
        bmap = r.boot.mapping.assign(medium=m)
        if r.disp is not None:
            sw = r.disp["swaps"]
            bmap = bmap.merge(sw[sw["dQmax"] == 4][["factor", "swap_percent"]].rename(
                columns={"swap_percent": "disp_swap_percent_dq4"}), on="factor")
            disp.append(r.disp["intervals"].assign(medium=m))
            dsw.append(sw.assign(medium=m))
        if r.bs_disp is not None:
            bsd.append(r.bs_disp["intervals"].assign(medium=m))
            bsw.append(r.bs_disp["swaps"].assign(medium=m))
        boot.append(bmap)
    con_df = pd.concat(con, ignore_index=True)[["sample_id", "medium", "factor", "contribution", "share"]]
    share = con_df.groupby(["medium", "factor"])["share"].mean().mul(100).rename("mean_share_percent").reset_index()
    boot_df = pd.concat(boot, ignore_index=True).merge(share, on=["medium", "factor"])
    boot_df = boot_df[["medium"] + [c for c in boot_df.columns if c != "medium"]]

    def cat(lst):
        return pd.concat(lst, ignore_index=True) if lst else None

    return {"profiles": pd.concat(prof, ignore_index=True)[["medium", "factor", "metal", "concentration",
                                                            "percent_of_species", "ci_low", "ci_high"]],
            "contributions": con_df, "diagnostics": pd.concat(diag, ignore_index=True),
            "factor_count": pd.concat(crit, ignore_index=True), "bootstrap": boot_df, "disp": cat(disp),
            "disp_swaps": cat(dsw), "bs_disp": cat(bsd), "bs_disp_swaps": cat(bsw)}


def _isotopes(ctx: StageContext, result: Result) -> None:
    o, data, p = ctx.options, ctx.data, ctx.params
    em = pd.read_csv(p.resolve(o.isotope_endmembers))
    samp = data.samples.copy()
    samp["sample_id"] = samp["sample_id"].astype(str)
    srcs_all = list(dict.fromkeys(em["source"]))
    pair = tuple(o.isotope_pair) if o.isotope_pair else tuple(srcs_all[:2])
    lin = iso.two_endmember_table(samp, em, ratio_columns=o.isotope_ratios, pair=pair)
    bay = iso.bayesian_mixing_table(samp, em, ratio_columns=o.isotope_ratios, residual_sd=o.isotope_residual_sd,
                                    seed=ctx.seed + 7, n_steps=o.isotope_steps, burn=o.isotope_steps // 4)
    mix = pd.concat([lin.drop(columns=["outside_range"]), bay.drop(columns=["acceptance", "rhat", "ess"])],
                    ignore_index=True)
    summ = mix.groupby(["medium", "method", "source"]).agg(
        mean_share=("share", "mean"), median_share=("share", "median"), mean_ci_low=("ci_low", "mean"),
        mean_ci_high=("ci_high", "mean"), n=("share", "size")).reset_index()
    conv = bay.groupby(["medium", "source"]).agg(
        max_rhat=("rhat", "max"), median_rhat=("rhat", "median"), min_ess=("ess", "min"),
        median_ess=("ess", "median"), n_rhat_above=("rhat", lambda s: int((s > RHAT_WARN).sum())),
        n=("rhat", "size"), acceptance=("acceptance", "mean")).reset_index()
    result.isotope_mixing = mix[["sample_id", "medium", "method", "source", "share", "ci_low", "ci_high"]].merge(
        bay[["sample_id", "medium", "source", "rhat", "ess"]].assign(method="bayesian"),
        on=["sample_id", "medium", "method", "source"], how="left")
    result.isotope_summary = summ
    result.isotope_convergence = conv
    result.isotope_pair = pair
    result.isotope_outside = int(lin["outside_range"].sum())


# ------------------------------------------------------------------------------------------ report
def report(ctx: StageContext, result: Result) -> None:
    """The sources section: methods, correlation, PCA, PMF (count, Q, BS, DISP, BS-DISP), isotopes."""
    o, data, out = ctx.options, ctx.data, ctx.out
    media = result.media
    units = {m: data.unit(m) for m in media}
    unit_label = units[media[0]] if len(set(units.values())) == 1 else "medium unit"
    out.markdown(src.methods_text(o, media=media, seed=ctx.seed, esat_version=pmf_lib.ESAT_VERSION,
                                  mdl_notes=_mdl_notes(result)))
    if any(result.dropped.values()):
        out.markdown("Samples with a missing metal value were left out of this analysis: "
                     + ", ".join(f"{n} in {m}" for m, n in result.dropped.items() if n) + ".")
    _report_correlation(ctx, result)
    _report_pca(ctx, result)
    if result.pmf:
        _report_pmf(ctx, result, unit_label, units)
    else:
        out.markdown("PMF was not run for this region (switched off in its parameters).")
    it = result.interpretation
    out.table("factor_interpretation", it,
              "Factor interpretation aid: cosine similarity of each factor's metal weights (PMF: % of species; PCA: "
              "squared positive rotated loadings, %) with the marker-metal signatures of the region; a factor is "
              f"named only at similarity >= {o.signature_min_similarity:g}. Signatures: "
              + ("; ".join(f"{k}: {', '.join(v)}" for k, v in o.signatures.items()) or "none given") + ".",
              display=it.drop(columns=["reason"]).rename(
                  columns={"medium": "Medium", "method": "Method", "factor": "Factor",
                           "suggested_source": "Suggested source", "similarity": "Cosine similarity",
                           "best_signature": "Closest signature", "top_metals": "Largest weights (%)"}))
    if result.isotope_mixing is not None:
        _report_isotopes(ctx, result)
    else:
        out.markdown("No isotope ratios are given for this region, so isotope mixing was not run.")


def _mdl_notes(result: Result) -> dict[str, str]:
    notes = {}
    for m, r in result.pmf.items():
        if r.uncertainty_source == "laboratory":
            notes[m] = "laboratory MDLs from the region's parameters"
        elif r.uncertainty_source == "estimated":
            notes[m] = ("no laboratory MDL for " + ", ".join(r.estimated_mdl_metals) + f" in {m}, so the MDL was "
                        "estimated as 0.33 times the smallest reported value (a value is reported at or above the "
                        "limit of quantification, 10 blank standard deviations, and the detection limit is 3.3 of "
                        "them) [@ich2005q2]; this bounds the detection-limit term without inflating the uncertainty")
    return notes


def _report_correlation(ctx: StageContext, result: Result) -> None:
    out = ctx.out
    for m in result.media:
        t = result.correlation[result.correlation["medium"] == m]
        r_log, p_log = src.correlation_matrices(t, method="pearson_log")
        r_sp, p_sp = src.correlation_matrices(t, method="spearman")
        n = int(t["n"].max()) if len(t) else 0
        fig = src.plot_correlation_heatmap(r_log, p_log, title=f"Pearson r of log10 concentrations, {m}")
        out.figure(f"correlation_heatmap_{m}", fig,
                   f"Pearson correlation of log10 concentrations in {m} (n = {n}), ordered by average-linkage "
                   "clustering on 1 - r; * p < 0.05, ** p < 0.01 (two-tailed).", width="80%")
        out.table(f"correlation_matrix_{m}", src.correlation_display(r_log, p_log, r_sp, p_sp),
                  f"Correlation matrix, {m}: Pearson r of log10 concentrations below the diagonal, Spearman rho "
                  "above; * p < 0.05, ** p < 0.01 (two-tailed).")
    out.table("correlation", result.correlation[["medium", "method", "metal_a", "metal_b", "r", "p"]],
              "Correlation coefficients and two-tailed p-values for every pair of metals (method pearson: raw "
              "values; pearson_log: log10 values; spearman: ranks).", in_report=False)


def _report_pca(ctx: StageContext, result: Result) -> None:
    o, out = ctx.options, ctx.out
    for m, res in result.pca.items():
        out.figure(f"pca_scree_{m}", src.plot_scree(res, title=f"Scree plot, {m}"),
                   f"Eigenvalues of the correlation matrix of standardized {o.pca_transform} concentrations in {m}, "
                   "with the Kaiser criterion (eigenvalue 1) and the cumulative explained variance.", width="70%")
        out.figure(f"pca_biplot_{m}", src.plot_biplot(res, title=f"Biplot, {m}"),
                   f"Biplot of the first two varimax-rotated components in {m}: sample scores (grey) and metal "
                   "loadings (arrows, scaled to the scores).", width="70%")
    tests = result.pca_tests
    out.table("pca_tests", tests, "Sampling adequacy: Kaiser-Meyer-Olkin measure (KMO; > 0.6 acceptable) and "
              "Bartlett's test of sphericity (small p: correlations suitable for PCA), and the components kept.",
              display=tests.rename(columns={"medium": "Medium", "n": "n", "kmo": "KMO",
                                            "bartlett_chi2": "Bartlett chi2", "bartlett_df": "df",
                                            "bartlett_p": "p", "n_components": "Components",
                                            "criterion": "Criterion"}))
    load = result.pca_loadings
    wide = load.pivot_table(index=["medium", "metal"], columns="component", values="rotated_loading").reset_index()
    var = load.drop_duplicates(["medium", "component"])
    note = "; ".join(f"{r.medium} {r.component}: {r.rotated_variance_percent:.1f} %" for r in var.itertuples())
    out.table("pca_loadings", load, f"Varimax-rotated PCA loadings (RC: rotated component) of standardized "
              f"{o.pca_transform} concentrations. Variance explained after rotation: {note}.",
              display=wide.rename(columns={"medium": "Medium", "metal": "Metal"}), sig=2)


def _report_pmf(ctx: StageContext, result: Result, unit_label: str, units: dict) -> None:
    o, data, p, out = ctx.options, ctx.data, ctx.params, ctx.out
    text = []
    for m, r in result.pmf.items():
        crit = r.criteria
        fig = src.plot_q_scan(crit, chosen=r.chosen, title=f"PMF factor count, {m}")
        out.figure(f"pmf_q_{m}", fig, f"Q(true)/Q(expected) and Q(robust)/Q(expected) of the best of {o.pmf_starts} "
                   f"random starts per factor count in {m}; {r.why}.", width="70%")
        prof = result.profiles[result.profiles["medium"] == m]
        fig = src.plot_pmf_profiles(prof.rename(columns={"metal": "species"}), unit=units[m],
                                    title=f"PMF factor profiles, {m}")
        out.figure(f"pmf_profiles_{m}", fig, f"PMF factor profiles in {m} ({r.chosen} factors): concentration "
                   f"({units[m]}, bars, log scale) with bootstrap 5th-95th percentiles ({o.pmf_bootstrap} runs), and "
                   "percent of each metal's modelled concentration (diamonds, right axis).")
        sites = data.sites(m).reset_index()
        sites["sample_id"] = sites["sample_id"].astype(str)
        if sites[["x", "y"]].notna().all().all():
            con = result.contributions[result.contributions["medium"] == m]
            fig = src.plot_contribution_maps(con, sites, title=f"PMF factor shares, {m}",
                                             coord_unit=p.data.coordinate_unit)
            out.figure(f"pmf_maps_{m}", fig, f"Share of each PMF factor in the modelled concentrations of each {m} "
                       "sample (mean over metals), at the sample locations.")
        text.append(src.pmf_results_text(m, r, result, bootstrap_runs=o.pmf_bootstrap))
        if r.uncertainty_source == "estimated":
            out.callout(f"No laboratory detection limits were given for {', '.join(r.estimated_mdl_metals)} in {m}; "
                        "the PMF uncertainties use detection limits estimated from the data (0.33 times the smallest "
                        "reported value). Q/Q(expected) is then only indicative; laboratory detection limits would "
                        "make it interpretable.", kind="warning", title="Estimated detection limits")
    if len(data.metals) <= 4:
        out.markdown(f"This region has {len(data.metals)} metals, so at most {max(len(data.metals) - 2, 1)} factors "
                     "can be resolved meaningfully; PMF results with so few species are coarse and should be read "
                     "with the correlation and PCA results.")
    out.markdown("\n\n".join(text))
    prof = result.profiles
    out.table("pmf_profiles", prof, "PMF factor profiles: concentration (medium unit, contributions scaled to mean 1), "
              "percent of species, and bootstrap 5th-95th percentiles (ci_low, ci_high).",
              display=prof.rename(columns={"medium": "Medium", "factor": "Factor", "metal": "Metal",
                                           "concentration": f"Concentration ({unit_label})",
                                           "percent_of_species": "% of species", "ci_low": f"BS 5th ({unit_label})",
                                           "ci_high": f"BS 95th ({unit_label})"}), max_rows=60)
    out.table("pmf_contributions", result.contributions, "PMF factor contributions per sample (dimensionless, mean 1 "
              "per factor) and share of the sample's modelled concentrations (mean over metals).", in_report=False)
    fc = result.factor_count
    cols = ["medium", "n_factors", "q_true", "q_robust", "q_expected", "q_robust_over_expected", "dq_units",
            "share_abs_gt3", "chosen"]
    extra = [c for c in ("bs_min_mapping", "disp_swaps_dq4") if c in fc.columns]
    out.table("pmf_factor_count", fc, "PMF factor-count criteria: Q(true) and Q(robust) of the best start, "
              "Q(robust)/Q(expected), the drop in Q(robust) from one fewer factor in units of the n + m values a "
              "factor adds (scaled by the noise level of the largest model; about 1 when the factor fits noise), the "
              "share of scaled residuals beyond 3, and, where checked, the smallest bootstrap mapping share and the "
              "DISP swaps at dQmax = 4.",
              display=fc[cols + extra].rename(columns={
                  "medium": "Medium", "n_factors": "Factors", "q_true": "Q(true)", "q_robust": "Q(robust)",
                  "q_expected": "Q(exp)", "q_robust_over_expected": "Q(robust)/Q(exp)", "dq_units": "ΔQ / (s(n+m))",
                  "share_abs_gt3": "|res/u| > 3", "chosen": "Chosen", "bs_min_mapping": "Min. BS mapping",
                  "disp_swaps_dq4": "DISP swaps dQ=4"}))
    dg = result.diagnostics
    out.table("pmf_diagnostics", dg, "PMF diagnostics per metal: S/N and category, observed vs predicted regression "
              "(r2, slope), Lilliefors test of scaled residuals (KS statistic, p) and the share of |scaled residual| "
              "> 3; model Q values repeated per row.",
              display=dg[["medium", "metal", "category", "signal_to_noise", "r2", "slope", "ks_statistic", "ks_p",
                          "share_scaled_residual_gt3"]].rename(
                  columns={"medium": "Medium", "metal": "Metal", "category": "Category", "signal_to_noise": "S/N",
                           "slope": "Slope", "ks_statistic": "KS D", "ks_p": "KS p",
                           "share_scaled_residual_gt3": "|res/u| > 3 (share)"}), appendix=True)
    bt = result.bootstrap
    out.table("pmf_bootstrap", bt, "Error estimation: share of bootstrap runs in which each base factor was mapped "
              f"(contribution r >= {o.pmf_bootstrap_threshold:g})"
              + (", share of DISP displacements with a factor swap at dQmax = 4" if o.pmf_disp else "")
              + ", and the factor's mean share of the samples' modelled concentrations.",
              display=bt.rename(columns={"medium": "Medium", "factor": "Factor", "n_runs": "BS runs",
                                         "n_mapped": "Mapped", "mapping_share": "Mapping share",
                                         "disp_swap_percent_dq4": "DISP swaps dQ=4 (%)",
                                         "mean_share_percent": "Mean share (%)"}))
    if result.disp is not None:
        out.table("pmf_disp_swaps", result.disp_swaps, "DISP factor swaps per factor and dQmax (EPA levels 4, 8, 16, "
                  "32): displacements (two per metal) after which a refitted profile matched another factor better.",
                  display=result.disp_swaps.rename(columns={"medium": "Medium", "dQmax": "dQmax", "factor": "Factor",
                                                            "n_swaps": "Swaps", "n_displacements": "Displacements",
                                                            "swap_percent": "Swaps (%)"}), appendix=True)
        out.table("pmf_disp", result.disp, "DISP intervals of every profile value for dQmax = 4, 8, 16, 32, with the "
                  "rest of the solution refitted at each displaced value (concentration in the medium unit with "
                  "contributions of mean 1; percent of species).", in_report=False)
    if result.bs_disp is not None:
        out.table("pmf_bs_disp_swaps", result.bs_disp_swaps, "BS-DISP swaps per factor and dQmax (0.5, 1, 2, 4) over "
                  f"{o.pmf_bs_disp} bootstrap runs.", display=result.bs_disp_swaps.rename(
                      columns={"medium": "Medium", "factor": "Factor", "n_swaps": "Swaps",
                               "n_displacements": "Displacements", "swap_percent": "Swaps (%)"}), appendix=True)
        out.table("pmf_bs_disp", result.bs_disp, "BS-DISP intervals of every profile value (range over bootstrap "
                  "runs of the displaced bounds).", in_report=False)
    for m, r in result.pmf.items():
        out.finding(f"In {m}, PMF resolved {r.chosen} factors ({r.why.split(': ', 1)[-1].split(';')[0]}); "
                    f"every factor was mapped in at least {100 * r.boot.mapping['mapping_share'].min():.0f} % of "
                    f"{o.pmf_bootstrap} bootstrap runs.", importance=0.6, refs=("pmf_factor_count",))


def _report_isotopes(ctx: StageContext, result: Result) -> None:
    o, out = ctx.options, ctx.out
    pair = result.isotope_pair
    out.table("isotope_mixing", result.isotope_mixing,
              "Pb source shares per sample: linear two-end-member mixing per ratio (point estimates) and the "
              "Bayesian mixing model (posterior mean, 95 % interval, R-hat and effective sample size).",
              in_report=False)
    summ = result.isotope_summary
    out.table("isotope_mixing_summary", summ, f"Pb source shares averaged over samples (linear mixing of {pair[0]} and "
              f"{pair[1]}; Bayesian model with all end-members). {result.isotope_outside} linear estimates fall "
              "outside [0, 1] (sample outside the end-member range).",
              display=summ.rename(columns={"medium": "Medium", "method": "Method", "source": "Source",
                                           "mean_share": "Mean share", "median_share": "Median share",
                                           "mean_ci_low": "Mean 2.5 %", "mean_ci_high": "Mean 97.5 %", "n": "n"}))
    conv = result.isotope_convergence
    out.table("isotope_convergence", conv, "Convergence of the Bayesian mixing model per source: largest and median "
              "rank-normalised split R-hat and smallest and median bulk effective sample size (ESS) over samples, "
              f"samples with R-hat above {RHAT_WARN}, and the mean acceptance rate.",
              display=conv.rename(columns={"medium": "Medium", "source": "Source", "max_rhat": "Max R-hat",
                                           "median_rhat": "Median R-hat", "min_ess": "Min ESS",
                                           "median_ess": "Median ESS", "n_rhat_above": f"R-hat > {RHAT_WARN}",
                                           "n": "Samples", "acceptance": "Acceptance"}))
    n_bad = int(conv["n_rhat_above"].sum())
    if n_bad:
        out.callout(f"{n_bad} posterior shares (of {int(conv['n'].sum())}) have R-hat above {RHAT_WARN}: their chains "
                    "had not mixed, and their shares and intervals are less reliable than the others; more steps "
                    "per chain would help.", kind="warning", title="Isotope mixing: chains not converged")
    else:
        out.markdown(f"All posterior shares have R-hat at most {RHAT_WARN} (largest {conv['max_rhat'].max():.3f}); the "
                     f"smallest bulk effective sample size is {conv['min_ess'].min():.0f}.")
    samp = ctx.data.samples.copy()
    em = pd.read_csv(ctx.params.resolve(o.isotope_endmembers))
    cols = list(o.isotope_ratios.values())
    fig = src.plot_isotopes(samp.dropna(subset=cols), em, ratio_columns=o.isotope_ratios,
                            title="Pb isotope ratios and end-members")
    out.figure("isotope_ratios", fig, "Pb isotope ratios of the samples and the end-member means (squares, error "
               "bars +- 2 sd).", width="70%")


