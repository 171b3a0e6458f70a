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
from ..descriptive import _and, by_medium, count_of
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


def _guide_values(ctx: StageContext, medium: str) -> pd.Series:
    """Lowest value of the region's guideline threshold per metal (empty without a guideline set)."""
    from ..reference import guideline_values

    p = ctx.params
    if not p.references.guideline:
        return pd.Series(dtype=float)
    try:
        g = guideline_values(p.references.guideline, medium=medium, unit=ctx.data.unit(medium))
    except ReferenceDataError:
        return pd.Series(dtype=float)
    thr = p.references.guideline_threshold
    if thr:
        g = g[g["threshold_name"] == thr]
    return g.groupby("metal")["value"].min()


def report(ctx: StageContext, result: Result) -> None:
    """The baselines section: methods, baselines against the literature, background values, adaptive background."""
    import matplotlib.pyplot as plt

    from ..descriptive import reference_label

    o, data, p, out = ctx.options, ctx.data, ctx.params, ctx.out
    table, comparison = result.table, result.comparison
    media = list(data.media)
    lit_name = reference_label(p.references.background, cite=False, short=True) if p.references.background else ""
    methods = bl.methods_text(methods=o.methods, log_transform=o.log_transform, n_bootstrap=o.n_bootstrap,
                              confidence=o.confidence, em_max_components=o.em_max_components,
                              em_min_weight=o.em_min_weight, stratify_by=o.stratify_by,
                              min_samples=o.min_samples, reference_set=p.references.background).strip().split("\n\n")
    # the main text keeps what was estimated and how the value is chosen; the formulas of each method go to
    # the appendix
    out.markdown("## Regional baselines\n\n" + "\n\n".join([methods[0], *methods[2:]]))
    if len(methods) > 1:
        out.markdown("**Baseline methods.**\n\n" + methods[1], appendix=True)
    out.table("baselines", table,
              f"Geochemical baselines of all samples by method, with {o.confidence:.0%} bootstrap confidence "
              f"intervals ({o.n_bootstrap} resamples); retained: samples inside the method's background range; "
              "✔: recommended method (median of the methods)." + (" Rows per stratum are in the CSV." if o.stratify_by
                                                                   else ""),
              display=bl.display_table(table, stratum="all"), max_rows=60, appendix=True)
    if len(comparison):
        unit_of = comparison["medium"].map(data.unit)
        one_unit = unit_of.nunique() == 1
        u = f" ({unit_of.iloc[0]})" if one_unit else ""
        f = format_table(comparison[["recommended_baseline", "ci_low", "ci_high", "min_baseline", "max_baseline"]])
        comp_disp = pd.DataFrame({
            "Medium": comparison["medium"], "Metal": comparison["metal"], "Unit": unit_of,
            f"Baseline{u}": f["recommended_baseline"] + " (" + f["ci_low"] + "–" + f["ci_high"] + ")",
            "Method": comparison["recommended_method"].map(lambda m: bl.METHOD_LABELS.get(m, m).split(" (")[0]),
            f"Range of the methods{u}": f["min_baseline"] + "–" + f["max_baseline"],
            f"Literature{u}": comparison["literature"],
            "Baseline / literature": comparison["ratio_to_literature"]})
        guide = {m: _guide_values(ctx, m) for m in media}
        gv = [guide[r.medium].get(r.metal, np.nan) for r in comparison.itertuples()]
        if np.isfinite(np.asarray(gv, float)).any():
            comp_disp[f"{(p.references.guideline_threshold or 'guideline').replace('_', '-').capitalize()} value{u}"] = gv
        if one_unit:
            comp_disp = comp_disp.drop(columns=["Unit"])
        if comp_disp["Medium"].nunique() == 1:
            comp_disp = comp_disp.drop(columns=["Medium"])
        out.table("baselines_vs_literature", comparison,
                  f"Recommended regional baseline per metal with its {o.confidence:.0%} bootstrap confidence interval, "
                  "the range of the five methods, and the literature background"
                  + (f" ({lit_name})" if lit_name else "") + (" and guideline value" if "value" in comp_disp.columns[-1]
                                                                and "literature" not in comp_disp.columns[-1] else "")
                  + "; a dash: no value for the metal.", display=comp_disp)
        out.markdown(_baseline_text(ctx, result, comparison, guide, lit_name))
        _baseline_finding(ctx, comparison, guide, lit_name)
    if o.stratify_by:
        st = bl.strata_table(table)
        st_disp = st.drop(columns=["medium"]) if st["medium"].nunique() == 1 else st
        st_disp = st_disp.rename(columns={"stratum": "Stratum", "medium": "Medium",
                                          **{m: f"{m} ({data.unit(media[0])})" for m in data.metals}})
        out.table("baselines_strata", st, "Recommended baseline per stratum and metal (the method of each cell is "
                  "in the CSV).", display=st_disp, max_rows=60, appendix=True)
        txt = _strata_text(table, o.stratify_by)
        if txt:
            out.markdown(txt + f" ({out.ref('baselines_strata')}).")
    if len(result.skipped):
        sk = (result.skipped.groupby(["medium", "stratum", "n_total", "reason"], sort=False)["metal"]
              .agg(", ".join).reset_index()
              .rename(columns={"medium": "Medium", "stratum": "Stratum", "metal": "Metals", "n_total": "Samples",
                               "reason": "Reason"}))
        out.table("baselines_skipped", result.skipped, "Groups and methods not estimated, with the reason.",
                  display=sk[["Medium", "Stratum", "Metals", "Samples", "Reason"]], appendix=True)
    for m in media:
        w = data.wide(m)
        vals = {metal: w[metal].dropna().to_numpy() for metal in w.columns}
        vals = {k: v[v > 0] if o.log_transform else v for k, v in vals.items()}
        if "rcf" in o.methods:
            fig = bl.plot_cumulative_frequency(vals, unit=data.unit(m), log_transform=o.log_transform)
            out.figure(f"baselines_rcf_{m}", fig,
                       f"Relative cumulative frequency curves of the metals in {m} (log concentration axis) with the "
                       "fitted three-segment regression and its breakpoints; the cumulative-frequency baseline is the breakpoint that "
                       "closes the segment holding most samples.", appendix=True,
                       group="baselines_rcf" if len(media) > 1 else None)
            plt.close(fig)
        fig = bl.plot_method_comparison(table[table["medium"] == m], literature=result.literature.get(m),
                                        literature_label=lit_name or "literature background")
        out.figure(f"baselines_methods_{m}", fig,
                   f"Baselines of the metals in {m} by method (dots with {o.confidence:.0%} bootstrap intervals; red: "
                   "recommended), their upper limits (triangles)"
                   + ((f" and the literature background ({lit_name}, dashed line)" if lit_name else
                       " and the literature background (dashed line)") if _has_values(result.literature.get(m))
                      else "; no literature background applies to this medium") + ". Log scale.",
                   group="baselines_methods" if len(media) > 1 else None)
        plt.close(fig)
    if result.statistics is not None:
        _report_statistics(ctx, result)
    if result.adaptive is not None:
        _report_adaptive(ctx, result)
    _conclusion(ctx, result, lit_name)


def _conclusion(ctx: StageContext, result: Result, lit_name: str) -> None:
    """The take-home: the regional baseline furthest from the literature and how much the adaptive background flags."""
    c = result.comparison.dropna(subset=["ratio_to_literature"]) if len(result.comparison) else result.comparison
    if c.empty:
        return
    r = c.loc[c["ratio_to_literature"].apply(lambda v: abs(np.log(v)) if v > 0 else 0).idxmax()]
    text = (f"The region's own baselines, not the {lit_name or 'literature value'}, are the reference for this "
            "region's samples: "
            f"the baseline of {r['metal']} is {r['recommended_baseline']:.3g} {r['unit']} "
            f"({ctx.options.confidence:.0%} CI {r['ci_low']:.3g}–{r['ci_high']:.3g}), {r['ratio_to_literature']:.1f} "
            "times the literature value"
            + (", so the region is naturally rich or enriched throughout." if r["ratio_to_literature"] > 3 else "."))
    s = result.adaptive_summary
    if s is not None:
        a = s[(s["metal"] == r["metal"]) & (s["medium"] == r["medium"])]
        if len(a):
            a = a.iloc[0]
            text += (f" Its adaptive background is predicted with an out-of-fold skill of {a['skill']:.2f}, and only "
                     f"{int(a['n_flagged'])} of {int(a['n_total'])} samples "
                     f"({100 * a['n_flagged'] / max(a['n_total'], 1):.0f} %) lie clearly above their own background"
                     + (f": the others lie within the level predicted from {_inputs_words(ctx, result)}." if a["skill"] >= 0.5 and
                        a["n_flagged"] / max(a["n_total"], 1) < 0.25 else "."))
    ctx.out.conclusion(text)


def _baseline_text(ctx: StageContext, result: Result, comparison: pd.DataFrame, guide: dict, lit_name: str) -> str:
    """Interpretation: spread of the methods, regional baseline against the literature and the guideline."""
    out, p = ctx.out, ctx.params
    media = list(ctx.data.media)
    spread = comparison["max_baseline"] / comparison["min_baseline"]
    rcf_high = _rcf_highest(result.table)
    figs = ", ".join(out.ref(f"baselines_methods_{m}", "fig") for m in media)
    txt = (f"The five methods agree within a factor of {spread.min():.1f} to "
           f"{spread.max():.1f} per metal (widest for {comparison.loc[spread.idxmax(), 'metal']}; "
           f"{out.ref('baselines_vs_literature')}, {figs}; every method with its interval in "
           f"{out.ref('baselines')}). ")
    if rcf_high[1]:
        txt += (f"The relative cumulative frequency value was the highest of the methods for "
                f"{count_of(rcf_high[0], rcf_high[1], 'metal and medium combinations' if len(media) > 1 else 'metals')}"
                ", as expected of a threshold between populations [@wu2025tracing]. ")
    cg = comparison.dropna(subset=["ratio_to_literature"])
    if len(cg) and lit_name:
        hi = cg[cg["ratio_to_literature"] > 1.5].sort_values("ratio_to_literature", ascending=False)
        lo = cg[cg["ratio_to_literature"] < 1 / 1.5]
        multi = len(media) > 1
        if len(hi):
            txt += ("The regional baselines lie well above the " + lit_name + " for "
                    + _and(f"{r.metal}{f' in {r.medium}' if multi else ''} ({r.ratio_to_literature:.1f} times)"
                           for r in hi.itertuples())
                    + (" and below it for " + _and(f"{r.metal}{f' in {r.medium}' if multi else ''}"
                                                   for r in lo.itertuples()) if len(lo) else "")
                    + ". These baselines describe the bulk of this region's samples, natural and diffuse inputs "
                      "together, whereas a crustal or national average describes no particular soil: where the "
                      "bulk of the samples is far above it, the region is naturally rich (parent rock) or "
                      "diffusely enriched throughout, and a sample-by-sample comparison with the global value "
                      "calls almost every sample enriched. The indices of this report therefore use the regional "
                      "baseline as background (the methods text of the indices names the one used). ")
        elif len(lo):
            txt += ("The regional baselines lie below the " + lit_name + " for " + _and(lo["metal"]) + " and near it "
                    "for the others, so the literature value would understate enrichment there. ")
    over = []
    for r in comparison.itertuples():
        g = guide.get(r.medium, pd.Series(dtype=float)).get(r.metal, np.nan)
        if np.isfinite(g) and r.recommended_baseline > g:
            over.append((r, g))
    if over:
        thr = (p.references.guideline_threshold or "guideline").replace("_", "-")
        txt += ("For " + _and(r.metal for r, _ in over) + " the regional baseline itself exceeds the " + thr
                + " value (" + _and(f"{r.recommended_baseline:.3g} against {g:.3g} {r.unit}" for r, g in over)
                + "): a large share of the exceedances reported in the data-quality section is expected even without "
                  "human inputs, and whether they are natural is decided by the adaptive background below and the "
                  "source analysis, not by the guideline.")
    return txt


def _baseline_finding(ctx: StageContext, comparison: pd.DataFrame, guide: dict, lit_name: str) -> None:
    c = comparison.dropna(subset=["ratio_to_literature"])
    if c.empty or not lit_name:
        return
    r = c.loc[(c["ratio_to_literature"].apply(lambda v: abs(np.log(v)) if v > 0 else 0)).idxmax()]
    g = guide.get(r["medium"], pd.Series(dtype=float)).get(r["metal"], np.nan)
    thr = (ctx.params.references.guideline_threshold or "guideline").replace("_", "-")
    g_txt = ""
    if np.isfinite(g):
        g_txt = (f", {'above' if r['recommended_baseline'] > g else 'below'} the {thr} value of {g:.3g} {r['unit']}")
    ctx.out.finding(
        f"The regional baseline of {r['metal']} in {r['medium']} is {r['recommended_baseline']:.3g} {r['unit']} "
        f"({ctx.options.confidence:.0%} CI {r['ci_low']:.3g}–{r['ci_high']:.3g}), {r['ratio_to_literature']:.1f} "
        f"times the {lit_name} ({r['literature']:.3g} {r['unit']}){g_txt}"
        + (": the region is naturally rich or enriched throughout, and enrichment is judged against this baseline, "
           "which includes that level." if r["ratio_to_literature"] > 3 else
           ": the region's own baseline, not the global value, is the background against which enrichment is judged."),
        importance=0.8 if abs(np.log(r["ratio_to_literature"])) > np.log(3) else 0.55,
        refs=["baselines_vs_literature"])


def _strata_text(table: pd.DataFrame, stratify_by) -> str:
    """One sentence per stratification column: the metal whose baseline varies most between its classes."""
    rec = table[table["recommended"] & (table["stratum"] != "all")]
    parts = []
    for col in stratify_by:
        r = rec[rec["stratum"].astype(str).str.startswith(f"{col}=")]
        if r.empty:
            continue
        best = None
        for (_medium, metal), g in r.groupby(["medium", "metal"], sort=False):
            if len(g) < 2:
                continue
            ratio = g["baseline"].max() / g["baseline"].min()
            if best is None or ratio > best[0]:
                lo, hi = g.loc[g["baseline"].idxmin()], g.loc[g["baseline"].idxmax()]
                best = (ratio, metal, lo, hi)
        if best:
            ratio, metal, lo, hi = best
            parts.append(f"between classes of {bl.column_words(col)} the baseline of {metal} varies most, from "
                         f"{lo['baseline']:.3g} ({str(lo['stratum']).split('=', 1)[-1]}) to {hi['baseline']:.3g} "
                         f"{hi['unit']} ({str(hi['stratum']).split('=', 1)[-1]}), a factor of {ratio:.1f}")
    if not parts:
        return ""
    t = "; ".join(parts)
    return ("**Strata.** " + t[0].upper() + t[1:]
            + ". A single regional baseline averages over these differences")


def _has_values(literature) -> bool:
    """Whether a medium's literature background has any value to draw (water has none in the crustal sets)."""
    return literature is not None and bool(pd.Series(literature, dtype=float).notna().any())


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
    out.markdown("## Background threshold values\n\n"
                 + cz.methods_text(confidence=o.confidence, coverage=o.btv_coverage, n_bootstrap=o.ucl_bootstrap,
                                   substitution=sub).strip().replace("**Background statistics with non-detects.** ", ""))
    n_cens = int(s.loc[s["stratum"] == "all", "n_censored"].sum())
    out.table("background_statistics", s,
              "Background statistics per metal: Kaplan-Meier (KM) mean and SD, distribution of the detected values, "
              f"UCL95 of the mean and the background threshold values UTL95-95, UPL95 and USL95 ({s['unit'].iloc[0] if len(s) else ''})."
              + (" ROS statistics, detection limits and rows per stratum are in the CSV." if n_cens or o.stratify_by else ""),
              display=cz.display(s, stratum="all"), max_rows=60, appendix=True)
    v = result.values
    if v is None or not len(v):
        return
    one_unit = v["unit"].nunique() == 1
    u = f" ({v['unit'].iloc[0]})" if one_unit else ""
    vd = pd.DataFrame({
        "Medium": v["medium"], "Metal": v["metal"], "Unit": v["unit"],
        f"Baseline{u}": v["baseline"], f"KM mean{u}": v["km_mean"], f"UCL95 of the mean{u}": v["ucl95"],
        f"UTL95-95{u}": v["utl95_95"], f"USL95{u}": v["usl95"]})
    if one_unit:
        vd = vd.drop(columns=["Unit"])
    if vd["Medium"].nunique() == 1:
        vd = vd.drop(columns=["Medium"])
    out.table("background_values", v, "Which background value for which purpose: the baseline (central natural "
              "level, the denominator of the indices), the mean and its upper confidence limit (to compare a site's "
              "mean), the upper tolerance limit UTL95-95 (to screen single samples) and the upper simultaneous limit "
              "USL95 (to screen many samples at once).", display=vd)
    ratio = (v["utl95_95"] / v["baseline"]).replace([np.inf, -np.inf], np.nan).dropna()
    out.markdown(
        f"**Which value to use.** The baseline ({out.ref('background_values')}) is a central value: about half of "
        "the natural samples lie above it, so it belongs in the denominators of the indices, never in screening. "
        "A single new sample above the UTL95-95 (with 95 % confidence above 95 % of the background population) is "
        "unlikely to be natural; when many samples are screened at once, the USL95 keeps the chance of any false "
        "exceedance near 5 %; the UCL95 compares a site's mean with background, never single samples"
        + (f". Here the UTL95-95 is {ratio.min():.1f} to {ratio.max():.1f} times the baseline" if len(ratio) else "")
        + (f"; {n_cens} non-detects entered as censored values at their detection limits (all statistics in "
           f"{out.ref('background_statistics')})." if n_cens else
           f"; with no non-detects the KM statistics equal the ordinary sample statistics "
           f"({out.ref('background_statistics')})."))
    if len(ratio):
        i = ratio.idxmax()
        out.finding(f"Upper background threshold values (UTL95-95, for screening single samples) were "
                    f"{ratio.min():.1f} to {ratio.max():.1f} times the recommended baselines; for "
                    f"{v.loc[i, 'metal']} in {v.loc[i, 'medium']} the baseline is {v.loc[i, 'baseline']:.3g} "
                    f"({o.confidence:.0%} CI {v.loc[i, 'ci_low']:.3g}–{v.loc[i, 'ci_high']:.3g}) and the UTL95-95 "
                    f"{v.loc[i, 'utl95_95']:.3g} {v.loc[i, 'unit']}.",
                    importance=0.4, refs=["background_values"])


def _inputs_words(ctx: StageContext, result: Result) -> str:
    """The adaptive background's inputs in the reader's words ("Co, Cr, Ni, rock type and land use")."""
    words = [c if c in ctx.data.metals else _prose_name(ctx.params, c) for c in result.covariates]
    return _and(words) or "the coordinates"


def _prose_name(p, column: str) -> str:
    """The reader's name of a covariate for prose: its ``covariate_labels`` entry without a trailing unit in
    parentheses ("distance to the river"), else the column name as words."""
    import re

    if column in p.data.covariate_labels:
        return re.sub(r"\s*\([^)]*\)\s*$", "", p.data.covariate_label(column))
    return bl.column_words(column)


def _report_adaptive(ctx: StageContext, result: Result) -> None:
    import matplotlib.pyplot as plt

    o, data, p, out = ctx.options, ctx.data, ctx.params, ctx.out
    summ, a = result.adaptive_summary, result.adaptive
    grid = data.grid
    gi = result.grid_inputs if grid is not None else None
    dropped = [c for c in result.covariates if grid is not None and c not in grid.columns]

    def word(c):
        return c if c in data.metals else _prose_name(p, c)

    methods = bg.methods_text(covariates=[word(c) for c in result.covariates], coordinates=o.adaptive_coordinates,
                              grid_inputs=None if gi is None else [word(c) for c in gi],
                              grid_dropped=[word(c) for c in dropped], training=o.adaptive_training, n_folds=o.n_folds,
                              n_inducing=o.n_inducing, max_exact=o.max_exact, z_select=o.z_select,
                              z_flag=o.z_flag, log_covariates=o.log_covariates, em_min_weight=o.em_min_weight,
                              metals=data.metals).strip().split("\n\n")
    # what the adaptive background is; the model, approximation and folds in the appendix
    out.markdown("## Adaptive background\n\n" + methods[0].replace("**Adaptive background.** ", ""))
    if len(methods) > 1:
        out.markdown("**Adaptive background: model.** " + "\n\n".join(methods[1:]), appendix=True)
    out.table("adaptive_background", a[["sample_id", "medium", "metal", "background", "background_sd", "excess",
                                        "concentration", "unit", "log_background", "log_background_sd",
                                        "in_training", "flagged"]],
              "Adaptive background per sample (out-of-fold prediction).", in_report=False)
    out.table("adaptive_background_models", summ,
              f"Adaptive background models: training samples out of all, {o.n_folds}-fold out-of-fold RMSE of "
              "ln C on the training samples for the model and for a static background (training mean), the skill "
              "1 − MSE/MSE(static), samples flagged above their background, and the nugget SD.",
              display=bg.summary_display(summ))
    inputs = _and(word(c) for c in result.covariates) or "the coordinates"
    lith = [c for c in result.covariates if c in data.metals]
    med_skill = float(summ["skill"].median())
    good = summ[summ["skill"] >= 0.5].sort_values("skill", ascending=False)
    poor = summ[summ["skill"] < 0.25]
    multi = summ["medium"].nunique() > 1
    lab = (lambda r: f"{r.metal} in {r.medium}") if multi else (lambda r: f"{r.metal}")
    text = (f"**How well the background is predicted.** Out of fold, the model predicted the background samples "
            f"better than a single static value for "
            f"{count_of((summ['skill'] > 0).sum(), len(summ), 'metal and medium combinations' if multi else 'metals')} (median skill {med_skill:.2f}, range "
            f"{summ['skill'].min():.2f} to {summ['skill'].max():.2f}; {out.ref('adaptive_background_models')}). ")
    n_metals = summ.groupby("medium")["metal"].nunique().to_dict()
    if len(good):
        if multi:  # per medium; a medium whose every metal is well predicted is named as such
            listed = " and for ".join(
                f"every metal in {med} (skill {g['skill'].min():.2f} to {g['skill'].max():.2f})"
                if len(g) == n_metals[med] and len(g) > 1 else
                _and(f"{r.metal} ({r.skill:.2f})" for r in g.itertuples()) + f" in {med}"
                for med, g in good.groupby("medium", sort=False))
        else:
            listed = _and(f"{lab(r)} ({r.skill:.2f})" for r in good.itertuples())
        text += ("For " + listed
                 + f" most of the variation among background samples follows {inputs}"
                 + (": where a metal's natural level follows the lithogenic elements "
                    + _and(lith) + ", its high values are expected from the parent rock, not from inputs"
                    if lith else "") + ". ")
    if len(poor):
        listed = (" and for ".join(by_medium(((r.medium, r.metal) for r in poor.itertuples()), n_metals=n_metals))
                  if multi else _and(lab(r) for r in poor.itertuples()))
        text += ("For " + listed + " the inputs barely predict the background "
                 "(skill below 0.25): its variation is not geological in the sense of these inputs, which points to "
                 "diffuse or local inputs, and its adaptive background is close to a single regional value. ")
    top = summ.sort_values("n_flagged", ascending=False).head(3)
    text += (f"Samples more than {o.z_flag:g} predictive SDs above their own background are flagged, most often for "
             + _and(f"{lab(r)} ({int(r.n_flagged)}" + (f" of {int(r.n_total)})" if i == 0 else ")")
                    for i, r in enumerate(top.itertuples()))
             + ". ")
    if result.em_summary is not None:
        em = result.em_summary
        cmp_ = summ[["medium", "metal", "n_train", "n_total", "skill", "n_flagged"]].merge(
            em[["medium", "metal", "n_train", "skill", "n_flagged"]], on=["medium", "metal"], suffixes=("", "_em"))
        cmp_disp = pd.DataFrame({
            "Medium": cmp_["medium"], "Metal": cmp_["metal"],
            "Training samples, robust": cmp_["n_train"].astype(str) + " / " + cmp_["n_total"].astype(str),
            "Training samples, mixture": cmp_["n_train_em"].astype(str) + " / " + cmp_["n_total"].astype(str),
            "Skill, robust": cmp_["skill"], "Skill, mixture": cmp_["skill_em"],
            "Flagged, robust": cmp_["n_flagged"], "Flagged, mixture": cmp_["n_flagged_em"]})
        if cmp_disp["Medium"].nunique() == 1:
            cmp_disp = cmp_disp.drop(columns=["Medium"])
        out.table("adaptive_training_comparison", cmp_,
                  "Training samples chosen by robust regression on the inputs against the Gaussian-mixture selection "
                  "of Sun et al. (2025): training set size, out-of-fold skill and samples flagged above background.",
                  display=cmp_disp, appendix=True)
        better = int((cmp_["skill"] > cmp_["skill_em"]).sum())
        fewer = int((cmp_["n_train_em"] < cmp_["n_train"]).sum())
        what = "metal and medium combinations" if multi else "metals"
        text += (f"The robust selection of training samples predicted better than the mixture selection of "
                 f"@sun2025adaptive for {count_of(better, len(cmp_), what)} "
                 f"({out.ref('adaptive_training_comparison')})"
                 + (f"; the mixture trained on fewer samples for {fewer}, because it keeps only the lowest dominant "
                    "component and so leaves out naturally high soils. " if fewer else ". "))
    text += ("The coordinates were model inputs, so part of a hot spot may be absorbed into its background. "
             if o.adaptive_coordinates else "")
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
    share = exc.set_index(["medium", "metal"])["share_excess_of_total"]
    top = share.sort_values(ascending=False).head(2)
    figs = [out.ref(f"adaptive_excess_map_{m}", "fig") for m in a["medium"].unique()]
    text += ("Summed over the flagged samples, the excess above background is "
             + _and(f"{100 * v:.1f} % of all {k[1]}{f' in {k[0]}' if multi else ''}" for k, v in top.items())
             + f" and less for the other metals ({', '.join(figs)}; per metal in {out.ref('adaptive_excess_summary')}).")
    out.markdown(text)
    comp = result.comparison.dropna(subset=["ratio_to_literature"]) if len(result.comparison) else result.comparison
    if len(comp):  # the metal of the baseline finding: furthest from the literature value
        k = comp.loc[comp["ratio_to_literature"].apply(lambda v: abs(np.log(v)) if v > 0 else 0).idxmax()]
        pick = summ[(summ["metal"] == k["metal"]) & (summ["medium"] == k["medium"])]
    else:
        pick = summ.loc[[summ["skill"].idxmax()]]
    if len(pick):
        r = pick.iloc[0]
        out.finding(f"Predicted out of fold from {inputs}, the background of {r['metal']} in {r['medium']} "
                    f"reached a skill of {r['skill']:.2f} over a single regional value (range over "
                    f"{'combinations' if multi else 'metals'} {summ['skill'].min():.2f} to {summ['skill'].max():.2f}); "
                    f"only {int(r['n_flagged'])} of {int(r['n_total'])} samples "
                    f"({100 * r['n_flagged'] / max(r['n_total'], 1):.0f} %) lie more than {o.z_flag:g} predictive SDs "
                    "above their own background.",
                    importance=0.65, refs=["adaptive_background_models"])
    other = [word(c) for c in result.covariates if c not in data.metals]
    if other:
        out.limitation(f"The adaptive background is the level predicted from {inputs}. "
                       + (f"Apart from the lithogenic elements, {_and(other)} can " if lith else "These inputs can ")
                       + "also follow the way contamination arrives or is held (a river that carries polluted "
                       "sediment, flooding, land use, or organic matter and clay that bind added metals): enrichment "
                       "that varies with them passes as background, and a sample is flagged only for enrichment "
                       "beyond that level.")
    out.limitation("The adaptive background uses a sparse Gaussian process (inducing points) and kernel "
                   "hyperparameters fitted once on all training samples; each sample's background is otherwise "
                   "predicted by a model that did not see it.")
    cu = p.data.coordinate_unit
    if result.adaptive_grid is not None:
        g = result.adaptive_grid
        # tidy and without repeating each cell's coordinates once per metal (7 million rows at a million
        # cells): the per-cell, per-metal values, and the cells' coordinates in a table of their own
        out.table("adaptive_background_grid", g[["cell", "medium", "metal", "background", "background_sd", "unit"]],
                  "Adaptive background per grid cell and metal (cell: the row of the region's grid; its "
                  "coordinates are in the table of the grid cells).", in_report=False)
        out.table("adaptive_background_grid_cells", g[["cell", "x", "y"]].drop_duplicates("cell"),
                  "Coordinates of the grid cells of the adaptive background.", in_report=False)
        for m in g["medium"].unique():
            fig = bg.plot_maps(g[g["medium"] == m], value="background", unit=data.unit(m), coordinate_unit=cu,
                               cell=True, crs=p.data.crs)
            out.figure(f"adaptive_background_map_{m}", fig,
                       f"Adaptive background of the metals in {m} on the prediction grid (model on "
                       + _and(word(c) for c in result.grid_inputs)
                       + "; log colour scale).", appendix=True,
                       group="adaptive_background_map" if g["medium"].nunique() > 1 else None)
            plt.close(fig)
    for m in a["medium"].unique():
        am = a[a["medium"] == m].merge(data.sites(m)[["x", "y"]], left_on="sample_id", right_index=True)
        fig = bg.plot_maps(am, value="excess", unit=data.unit(m), coordinate_unit=cu, cmap="magma_r", scale="sqrt",
                           crs=p.data.crs)
        out.figure(f"adaptive_excess_map_{m}", fig,
                   f"Anthropogenic excess $E = \\max(C - B, 0)$ of the metals in {m} over the out-of-fold adaptive "
                   "background (grey: no excess; square-root colour scale).", appendix=True,
                   group="adaptive_excess_map" if a["medium"].nunique() > 1 else None)
        plt.close(fig)
