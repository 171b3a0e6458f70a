"""Stage ``baselines``: geochemical baselines, censored-data background statistics and the adaptive background.

Composes :mod:`hmlib.baselines` (five baseline methods with bootstrap intervals),
:mod:`hmlib.censored` (Kaplan-Meier / ROS statistics, UCL95 and background threshold values as
ProUCL computes them) and :mod:`hmlib.background` (out-of-fold adaptive background from soil
chemistry). Writes ``baselines``, ``background_statistics`` and ``adaptive_background`` for the
indices stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from .. import background as bg
from .. import baselines as bl
from .. import censored as cz
from ..context import StageContext
from ..errors import ReferenceDataError
from ..io import SUBSTITUTION_FACTORS
from ..outputs import format_table
from ..params import StageOptions
from ..progress import track
from ..reference import background_values
from .base import StageSpec

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]


class Options(StageOptions):
    """Options of the ``baselines`` stage."""

    methods: list[Literal["imea", "imed", "rcf", "boxplot", "em"]] = Field(
        default_factory=lambda: list(bl.METHODS), min_length=1,
        description="baseline methods to run (imea, imed, rcf, boxplot, em)")
    log_transform: bool = Field(default=True, description="estimate baselines on natural-log values (else raw)")
    stratify_by: list[str] = Field(default_factory=list,
                                   description="sample covariates to stratify by (each adds its own strata rows)")
    n_bootstrap: int = Field(default=1000, ge=500, le=20000, description="bootstrap resamples of the baseline intervals")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="two-sided confidence level of the intervals")
    em_max_components: int = Field(default=4, ge=1, le=6, description="largest number of mixture components (BIC chooses)")
    em_min_weight: float = Field(default=0.4, gt=0.0, le=0.5,
                                 description="smallest mixing weight of the EM background component")
    min_samples: int = Field(default=10, ge=5, description="strata with fewer samples are listed, not estimated")
    censored_statistics: bool = Field(default=True,
                                      description="Kaplan-Meier and ROS statistics, UCL95 and threshold values")
    ucl_bootstrap: int = Field(default=2000, ge=200, le=20000,
                               description="bootstrap resamples of a bootstrap UCL95 where the rules choose one")
    btv_coverage: float = Field(default=0.95, gt=0.5, lt=1.0, description="coverage of the upper tolerance limit")
    adaptive: bool = Field(default=True, description="run the adaptive (sample-specific) background")
    adaptive_covariates: list[str] = Field(
        default_factory=list,
        description="inputs of the adaptive background: sample covariates and/or lithogenic metals "
                    "(empty: the region's covariates)")
    adaptive_coordinates: bool = Field(default=False, description="add the coordinates x, y to the inputs")
    adaptive_training: Literal["robust", "em"] = Field(
        default="robust", description="training samples by iterated robust regression (robust) or by EM")
    compare_em: bool = Field(default=True, description="also fit the EM-trained model and compare it")
    n_folds: int = Field(default=5, ge=2, le=20, description="folds of the out-of-fold prediction")
    n_inducing: int = Field(default=200, ge=20, le=2000, description="inducing points of the sparse Gaussian process")
    max_exact: int = Field(default=200, ge=50, le=2000,
                           description="largest training subset for the kernel hyperparameters")
    z_select: float = Field(default=2.0, gt=0.5, le=5.0,
                            description="residual SDs above which a sample leaves the training set")
    z_flag: float = Field(default=2.0, gt=0.5, le=5.0,
                          description="predictive SDs above which a sample is flagged above its background")
    log_covariates: bool = Field(default=True, description="strictly positive numeric covariates enter as logs")
    gpr_restarts: int = Field(default=0, ge=0, le=10, description="extra optimizer restarts of the hyperparameters")

    @field_validator("methods")
    @classmethod
    def _unique_methods(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"each method once, got {v}")
        return v


SPEC = StageSpec(
    name="baselines",
    notebook="10_baselines.ipynb",
    title="Geochemical baselines and adaptive background",
    options=Options,
    reads=(),
    writes=("baselines", "adaptive_background", "background_statistics"),
    requires=(),
)


@dataclass
class Result:
    """What the baselines stage computed.

    Attributes
    ----------
    table : baselines per medium, stratum, metal and method (bootstrap intervals, recommended method).
    skipped : groups and methods not estimated, with the reason.
    literature : literature background per medium (Series metal -> value; empty without a set).
    comparison : recommended baseline beside the literature value per medium and metal.
    statistics : censored-data statistics and BTVs per medium, stratum and metal (or None).
    values : recommended baseline beside KM mean, UCL95 and BTVs per medium and metal.
    adaptive : per-sample out-of-fold adaptive background (or None).
    adaptive_summary : per medium and metal: training samples, out-of-fold skill, flagged samples.
    adaptive_grid : adaptive background per grid cell (or None).
    em_summary : the same summary for the EM-trained model (or None).
    covariates : inputs of the adaptive background.
    grid_inputs : inputs of the grid model.
    """

    table: pd.DataFrame
    skipped: pd.DataFrame
    literature: dict
    comparison: pd.DataFrame
    statistics: pd.DataFrame | None
    values: pd.DataFrame | None
    adaptive: pd.DataFrame | None
    adaptive_summary: pd.DataFrame | None
    adaptive_grid: pd.DataFrame | None
    em_summary: pd.DataFrame | None
    covariates: list[str] = field(default_factory=list)
    grid_inputs: list[str] = field(default_factory=list)


def _covariates(ctx: StageContext) -> list[str]:
    return list(ctx.options.adaptive_covariates or ctx.params.data.covariates)


def check(ctx: StageContext) -> list[str]:
    """Strata and adaptive inputs must name sample columns (or metals)."""
    o, data, p = ctx.options, ctx.data, ctx.params
    problems = []
    bad = [c for c in o.stratify_by if c not in data.samples.columns]
    if bad:
        problems.append(f"stages.baselines.stratify_by: got {', '.join(bad)}; expected sample columns listed under "
                        f"data.covariates ({', '.join(p.data.covariates) or 'none'})")
    if o.adaptive:
        cov = _covariates(ctx)
        bad = [c for c in cov if c not in data.samples.columns and c not in data.metals]
        if bad:
            problems.append(f"stages.baselines.adaptive_covariates: got {', '.join(bad)}; expected columns of "
                            f"data.covariates ({', '.join(p.data.covariates) or 'none'}) or metals "
                            f"({', '.join(data.metals)})")
        if not cov and not o.adaptive_coordinates:
            problems.append("stages.baselines.adaptive_covariates: got none (and the region lists no covariates); "
                            "expected soil-chemistry covariates or lithogenic metals, or adaptive_coordinates true")
    return problems


def run(ctx: StageContext) -> Result:
    """Baselines, censored-data statistics and the adaptive background of every medium."""
    o, data, p = ctx.options, ctx.data, ctx.params
    strata = data.samples[["sample_id", "medium", *o.stratify_by]] if o.stratify_by else None
    table, skipped = bl.baseline_table(data.concentrations, methods=o.methods, log_transform=o.log_transform,
                                       strata=strata, n_bootstrap=o.n_bootstrap, confidence=o.confidence,
                                       seed=ctx.seed, em_max_components=o.em_max_components,
                                       em_min_weight=o.em_min_weight, min_samples=o.min_samples)
    literature = {}
    for m in data.media:
        try:
            literature[m] = background_values(p.references.background, medium=m, unit=data.unit(m))
        except ReferenceDataError:
            literature[m] = pd.Series(dtype=float)
    comparison = pd.concat([bl.literature_comparison(table[table["medium"] == m], literature[m]) for m in data.media
                            if (table["medium"] == m).any()], ignore_index=True)
    statistics = values = None
    if o.censored_statistics:
        statistics = cz.background_statistics(
            data.concentrations, strata=strata, substitution_factor=SUBSTITUTION_FACTORS[p.non_detects.substitution],
            confidence=o.confidence, coverage=o.btv_coverage, n_bootstrap=o.ucl_bootstrap, seed=ctx.seed,
            min_samples=o.min_samples)
        values = bl.background_values_table(table, statistics)
    adaptive = summary = grid_t = em_summary = None
    cov = _covariates(ctx)
    grid_inputs: list[str] = []
    if o.adaptive:
        kw = dict(covariates=cov, categorical=p.data.categorical, coordinates=o.adaptive_coordinates,
                  n_folds=o.n_folds, z_select=o.z_select, z_flag=o.z_flag, n_inducing=o.n_inducing,
                  max_exact=o.max_exact, log_covariates=o.log_covariates, em_max_components=o.em_max_components,
                  em_min_weight=o.em_min_weight, seed=ctx.seed, n_restarts=o.gpr_restarts, progress=track)
        rows, sums, grids, em_sums = [], [], [], []
        for m in data.media:
            r = bg.adaptive_background(data.wide(m), data.sites(m), medium=m, grid=data.grid,
                                       training=o.adaptive_training, **kw)
            rows.append(r["samples"].assign(unit=data.unit(m)))
            sums.append(r["summary"])
            grid_inputs = r["grid_inputs"]
            if r["grid"] is not None:
                grids.append(r["grid"].assign(unit=data.unit(m)))
            if o.compare_em and o.adaptive_training == "robust":
                hyper = {k: v.gp for k, v in r["models"].items()}
                em_sums.append(bg.adaptive_background(data.wide(m), data.sites(m), medium=m, grid=None,
                                                      training="em", hyperparameters=hyper, **kw)["summary"])
        adaptive = pd.concat(rows, ignore_index=True)
        summary = pd.concat(sums, ignore_index=True)
        grid_t = pd.concat(grids, ignore_index=True) if grids else None
        em_summary = pd.concat(em_sums, ignore_index=True) if em_sums else None
    return Result(table=table, skipped=skipped, literature=literature, comparison=comparison, statistics=statistics,
                  values=values, adaptive=adaptive, adaptive_summary=summary, adaptive_grid=grid_t,
                  em_summary=em_summary, covariates=cov, grid_inputs=grid_inputs)


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _and(items) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def report(ctx: StageContext, result: Result) -> None:
    """The baselines section: methods, baselines, censored statistics and BTVs, recommendation, adaptive background."""
    import matplotlib.pyplot as plt

    o, data, p, out = ctx.options, ctx.data, ctx.params, ctx.out
    table, comparison = result.table, result.comparison
    unit0 = data.unit(data.media[0])
    out.markdown(bl.methods_text(methods=o.methods, log_transform=o.log_transform, n_bootstrap=o.n_bootstrap,
                                 confidence=o.confidence, em_max_components=o.em_max_components,
                                 em_min_weight=o.em_min_weight, stratify_by=o.stratify_by,
                                 min_samples=o.min_samples, reference_set=p.references.background))
    out.table("baselines", table,
              f"Geochemical baselines of all samples by method, with {o.confidence:.0%} bootstrap confidence "
              f"intervals of the baseline ({o.n_bootstrap} resamples); retained = samples inside the method's "
              "background range; ✔ = recommended method (median of the methods)."
              + (" Rows per stratum are in the CSV." if o.stratify_by else ""),
              display=bl.display_table(table, stratum="all"), max_rows=60)
    if len(comparison):
        comp_disp = pd.DataFrame({
            "Medium": comparison["medium"], "Metal": comparison["metal"],
            f"Range of methods ({unit0})": format_table(comparison[["min_baseline"]])["min_baseline"] + "–"
                                           + format_table(comparison[["max_baseline"]])["max_baseline"],
            "Recommended": comparison["recommended_method"].map(bl.METHOD_LABELS),
            f"Baseline ({unit0})": comparison["recommended_baseline"],
            f"Literature ({unit0})": comparison["literature"],
            "Ratio to literature": comparison["ratio_to_literature"],
            "Methods above literature": comparison["n_methods_above_literature"].astype(str) + f" of {len(o.methods)}"})
        if comp_disp["Medium"].nunique() == 1:
            comp_disp = comp_disp.drop(columns=["Medium"])
        out.table("baselines_vs_literature", comparison,
                  f"Recommended baseline per metal beside the literature background ({p.references.background}); "
                  "a dash: the set has no value for the metal. Ratio above 1: the regional baseline exceeds the "
                  "literature background.", display=comp_disp)
        spread = comparison["max_baseline"] / comparison["min_baseline"]
        rec_counts = table[table["recommended"] & (table["stratum"] == "all")]["method"].map(bl.METHOD_LABELS).value_counts()
        lit_txt = []
        for medium, cg in comparison.groupby("medium", sort=False):
            above = cg.loc[cg["ratio_to_literature"] > 1, "metal"].tolist()
            below = cg.loc[cg["ratio_to_literature"] < 1, "metal"].tolist()
            if above or below:
                lit_txt.append(f"in {medium}, above it for {_and(above) or 'no metal'} and below it for "
                               f"{_and(below) or 'no metal'}")
        rcf_high = _rcf_highest(table)
        out.markdown(
            f"Across methods, the baseline of a metal varied by a factor of {spread.min():.2f} to {spread.max():.2f} "
            f"(largest for {comparison.loc[spread.idxmax(), 'metal']}; {out.ref('baselines_vs_literature')}). "
            + (f"The RCF value, read at the break that closes the background population, was the highest of the "
               f"methods for {rcf_high[0]} of {rcf_high[1]} metals, as in @wu2025tracing. " if rcf_high[1] else "")
            + "The recommendation rule chose "
            + _and(f"{k} for {v} {'metal' if v == 1 else 'metals'}" for k, v in rec_counts.items()) + ". "
            + (f"Recommended baselines were, against the literature background, {'; '.join(lit_txt)}. " if lit_txt else "")
            + "A crustal or national average is not the natural range of one region's soils, so ratios far from 1 "
              "point to regional geology as much as to contamination.")
    if o.stratify_by:
        st = bl.strata_table(table)
        st_disp = st.drop(columns=["medium"]) if st["medium"].nunique() == 1 else st
        st_disp = st_disp.rename(columns={"stratum": "Stratum", "medium": "Medium",
                                          **{m: f"{m} ({unit0})" for m in data.metals}})
        out.table("baselines_strata", st, "Recommended baseline per stratum and metal (the method of each cell is "
                  "in the baselines table).", display=st_disp, max_rows=60, appendix=True)
    if len(result.skipped):
        sk = (result.skipped.groupby(["medium", "stratum", "n_total", "reason"], sort=False)["metal"]
              .agg(", ".join).reset_index()
              .rename(columns={"medium": "Medium", "stratum": "Stratum", "metal": "Metals", "n_total": "Samples",
                               "reason": "Reason"}))
        out.table("baselines_skipped", result.skipped, "Groups and methods not estimated, with the reason.",
                  display=sk[["Medium", "Stratum", "Metals", "Samples", "Reason"]], appendix=True)
    for m in data.media:
        w = data.wide(m)
        vals = {metal: w[metal].dropna().to_numpy() for metal in w.columns}
        vals = {k: v[v > 0] if o.log_transform else v for k, v in vals.items()}
        if "rcf" in o.methods:
            fig = bl.plot_cumulative_frequency(vals, unit=data.unit(m), log_transform=o.log_transform)
            out.figure(f"baselines_rcf_{m}", fig,
                       f"Relative cumulative frequency curves of the metals in {m} (log concentration axis) with the "
                       "fitted three-segment regression and its breakpoints; the RCF baseline is the breakpoint that "
                       "closes the segment holding most samples.", appendix=True)
            plt.close(fig)
        fig = bl.plot_method_comparison(table[table["medium"] == m], literature=result.literature.get(m))
        out.figure(f"baselines_methods_{m}", fig,
                   f"Baselines of the metals in {m} by method (dots, with {o.confidence:.0%} bootstrap intervals; red: "
                   f"recommended), their upper limits (triangles) and the literature background "
                   f"({p.references.background}, dashed line). Log scale.")
        plt.close(fig)
    if result.statistics is not None:
        _report_statistics(ctx, result)
    if result.adaptive is not None:
        _report_adaptive(ctx, result)


def _rcf_highest(table: pd.DataFrame) -> tuple[int, int]:
    t = table[table["stratum"] == "all"]
    if "rcf" not in set(t["method"]):
        return 0, 0
    n = k = 0
    for _, g in t.groupby(["medium", "metal"]):
        if "rcf" in set(g["method"]) and len(g) > 1:
            n += 1
            k += int(g.loc[g["method"] == "rcf", "baseline"].iloc[0] >= g["baseline"].max())
    return k, n


def _report_statistics(ctx: StageContext, result: Result) -> None:
    o, p, out = ctx.options, ctx.params, ctx.out
    s = result.statistics
    sub = {"half_dl": "half the detection limit", "dl": "the detection limit",
           "dl_sqrt2": "the detection limit divided by the square root of 2", "zero": "zero"}[p.non_detects.substitution]
    out.markdown(cz.methods_text(confidence=o.confidence, coverage=o.btv_coverage, n_bootstrap=o.ucl_bootstrap,
                                 substitution=sub))
    n_cens = int(s.loc[s["stratum"] == "all", "n_censored"].sum())
    out.table("background_statistics", s,
              "Background statistics per metal: Kaplan-Meier (KM) mean and SD, distribution of the detected values, "
              f"UCL95 of the mean and the background threshold values UTL95-95, UPL95 and USL95 ({s['unit'].iloc[0] if len(s) else ''})."
              + (" ROS statistics, detection limits and rows per stratum are in the CSV." if n_cens or o.stratify_by else ""),
              display=cz.display(s, stratum="all"), max_rows=60)
    v = result.values
    if v is not None and len(v):
        vd = pd.DataFrame({
            "Medium": v["medium"], "Metal": v["metal"],
            "Baseline (central background)": format_table(v[["baseline"]])["baseline"] + " ("
            + v["baseline_method"].map(lambda m: bl.METHOD_LABELS.get(m, str(m)).split(" (")[-1].rstrip(")")) + ")",
            "KM mean": v["km_mean"], "UCL95 of the mean": v["ucl95"],
            "UTL95-95 (screening value)": v["utl95_95"], "USL95 (many samples)": v["usl95"], "Unit": v["unit"]})
        if vd["Medium"].nunique() == 1:
            vd = vd.drop(columns=["Medium"])
        out.table("background_values", v, "Which background value for which purpose: the recommended baseline "
                  "(central background) beside the mean statistics and the upper threshold values.", display=vd)
        ratio = (v["utl95_95"] / v["baseline"]).replace([np.inf, -np.inf], np.nan).dropna()
        out.markdown(
            f"**Which value to use.** The *baseline* ({out.ref('background_values')}) is a central value of the natural "
            "background: it belongs in the denominators of contamination factors, geoaccumulation indices and "
            "enrichment ratios, which measure how far a sample is above typical natural levels. It is not a "
            "screening limit: about half of the natural samples lie above a central value. The *upper tolerance "
            "limit* UTL95-95 is the screening value: with 95 % confidence it lies above 95 % of the background "
            "population, so a single new sample above it is unlikely to be natural. When many samples are screened "
            "at once, the *upper simultaneous limit* USL95 keeps the chance of any false exceedance among them near "
            "5 %, at the cost of missing moderate contamination; the UPL95 applies to one future sample only. The "
            "*UCL95* is for comparing a site's mean with background, never single samples. "
            + (f"Across metals the UTL95-95 was {ratio.min():.1f} to {ratio.max():.1f} times the baseline. "
               if len(ratio) else "")
            + (f"{n_cens} non-detects entered the statistics as censored values at their detection limits. "
               if n_cens else "No value was a non-detect, so the KM statistics equal the ordinary sample statistics. "))
        if len(ratio):
            i = ratio.idxmax()
            out.finding(f"Background threshold values (UTL95-95, the upper screening value) were "
                        f"{ratio.min():.1f} to {ratio.max():.1f} times the recommended baselines; for "
                        f"{v.loc[i, 'metal']} in {v.loc[i, 'medium']} the baseline is {v.loc[i, 'baseline']:.3g} "
                        f"({o.confidence:.0%} CI {v.loc[i, 'ci_low']:.3g}–{v.loc[i, 'ci_high']:.3g}) and the UTL95-95 "
                        f"{v.loc[i, 'utl95_95']:.3g} {v.loc[i, 'unit']}.",
                        importance=0.5, refs=["background_values"])


def _report_adaptive(ctx: StageContext, result: Result) -> None:
    import matplotlib.pyplot as plt

    o, data, p, out = ctx.options, ctx.data, ctx.params, ctx.out
    summ, a = result.adaptive_summary, result.adaptive
    grid = data.grid
    gi = result.grid_inputs if grid is not None else None
    dropped = [c for c in result.covariates if grid is not None and c not in grid.columns]
    out.markdown(bg.methods_text(covariates=result.covariates, coordinates=o.adaptive_coordinates, grid_inputs=gi,
                                 grid_dropped=dropped, training=o.adaptive_training, n_folds=o.n_folds,
                                 n_inducing=o.n_inducing, max_exact=o.max_exact, z_select=o.z_select,
                                 z_flag=o.z_flag, log_covariates=o.log_covariates, em_min_weight=o.em_min_weight,
                                 metals=data.metals))
    out.table("adaptive_background", a[["sample_id", "medium", "metal", "background", "background_sd", "excess",
                                        "concentration", "unit", "log_background", "log_background_sd",
                                        "in_training", "flagged"]],
              "Adaptive background per sample (out-of-fold prediction).", in_report=False)
    out.table("adaptive_background_models", summ,
              f"Adaptive background models: training samples out of all, {o.n_folds}-fold out-of-fold RMSE of "
              "ln C on the training samples for the model and for a static background (training mean), the skill "
              "1 − MSE/MSE(static), samples flagged above their background, and the nugget SD.",
              display=bg.summary_display(summ))
    med_skill = float(summ["skill"].median())
    worse = [f"{r.metal} in {r.medium}" for r in summ[summ["skill"] <= 0].itertuples()]
    text = (f"Out of fold, the adaptive background predicted the background samples better than a static value "
            f"for {int((summ['skill'] > 0).sum())} of {len(summ)} metal and medium combinations (median skill "
            f"{med_skill:.2f}, range {summ['skill'].min():.2f} to {summ['skill'].max():.2f}; "
            f"{out.ref('adaptive_background_models')}). "
            + (f"For {_and(worse)} the inputs do not predict the background better than a single value, so "
               "the adaptive background of these should not be interpreted. " if worse else "")
            + ("The coordinates were model inputs. " if o.adaptive_coordinates else
               "The coordinates were not model inputs. "))
    if result.em_summary is not None:
        em = result.em_summary
        cmp_ = summ[["medium", "metal", "n_train", "n_total", "skill", "n_flagged"]].merge(
            em[["medium", "metal", "n_train", "skill", "n_flagged"]], on=["medium", "metal"], suffixes=("", "_em"))
        cmp_disp = pd.DataFrame({
            "Medium": cmp_["medium"], "Metal": cmp_["metal"],
            "Training samples, robust": cmp_["n_train"].astype(str) + " / " + cmp_["n_total"].astype(str),
            "Training samples, EM": cmp_["n_train_em"].astype(str) + " / " + cmp_["n_total"].astype(str),
            "Skill, robust": cmp_["skill"], "Skill, EM": cmp_["skill_em"],
            "Flagged, robust": cmp_["n_flagged"], "Flagged, EM": cmp_["n_flagged_em"]})
        if cmp_disp["Medium"].nunique() == 1:
            cmp_disp = cmp_disp.drop(columns=["Medium"])
        out.table("adaptive_training_comparison", cmp_,
                  "Training samples chosen by robust regression on the covariates against the EM selection of "
                  "Sun et al. (2025): training set size, out-of-fold skill and samples flagged above background.",
                  display=cmp_disp)
        better = int((cmp_["skill"] > cmp_["skill_em"]).sum())
        fewer = int((cmp_["n_train_em"] < cmp_["n_train"]).sum())
        text += (f"The robust selection gave the higher out-of-fold skill for {better} of {len(cmp_)} combinations "
                 f"({out.ref('adaptive_training_comparison')}; each skill on its own training samples). "
                 + (f"The EM selection trained on fewer samples for {fewer} of them: it keeps only the lowest "
                    "dominant mixture component, which leaves out naturally high soils where the background follows "
                    "parent material. " if fewer else
                    "Here the mixture kept (nearly) all samples, so the EM selection did not remove anomalies. "))
    out.markdown(text)
    out.finding(f"The adaptive background, predicted out of fold from {_and(result.covariates) or 'the coordinates'}, "
                f"had a median skill of {med_skill:.2f} over a static background (range {summ['skill'].min():.2f} to "
                f"{summ['skill'].max():.2f}) and flagged {int(summ['n_flagged'].sum())} of {int(summ['n_total'].sum())} "
                "sample values above their own background.", importance=0.6, refs=["adaptive_background_models"])
    exc = bg.excess_summary(a)
    unit0 = data.unit(data.media[0])
    out.table("adaptive_excess_summary", exc,
              "Adaptive background and anthropogenic excess per metal: range of the per-sample background, samples "
              "with excess above zero, samples flagged above their background, and the flagged excess as a share of "
              "the summed concentrations.",
              display=pd.DataFrame({"Medium": exc["medium"], "Metal": exc["metal"],
                                    f"Median background ({unit0})": exc["median_background"],
                                    f"Background range ({unit0})": format_table(exc[["min_background"]])["min_background"]
                                    + "–" + format_table(exc[["max_background"]])["max_background"],
                                    "Samples with excess": exc["n_excess"].astype(str) + " of " + exc["n_total"].astype(str),
                                    "Flagged above background": exc["n_flagged"],
                                    "Flagged excess share of total (%)": 100 * exc["share_excess_of_total"]}),
              appendix=True)
    out.limitation("The adaptive background uses a sparse Gaussian process (inducing points) and kernel "
                   "hyperparameters fitted once on all training samples; each sample's background is otherwise "
                   "predicted by a model that did not see it.")
    cu = p.data.coordinate_unit
    if result.adaptive_grid is not None:
        g = result.adaptive_grid
        out.table("adaptive_background_grid", g, "Adaptive background per grid cell.", in_report=False)
        for m in g["medium"].unique():
            fig = bg.plot_maps(g[g["medium"] == m], value="background", unit=data.unit(m), coordinate_unit=cu, cell=True)
            out.figure(f"adaptive_background_map_{m}", fig,
                       f"Adaptive background of the metals in {m} on the prediction grid (model on "
                       + _and(result.grid_inputs) + "; log colour scale).")
            plt.close(fig)
    for m in a["medium"].unique():
        am = a[a["medium"] == m].merge(data.sites(m)[["x", "y"]], left_on="sample_id", right_index=True)
        fig = bg.plot_maps(am, value="excess", unit=data.unit(m), coordinate_unit=cu, cmap="magma_r", scale="sqrt")
        out.figure(f"adaptive_excess_map_{m}", fig,
                   f"Anthropogenic excess $E = \\max(C - B, 0)$ of the metals in {m} over the out-of-fold adaptive "
                   "background (grey: no excess; square-root colour scale).")
        plt.close(fig)
