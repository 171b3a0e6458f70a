"""Stage ``data_quality``: input checks, descriptive statistics, normality, outliers, exceedance of
background and guideline values, correlations and sample maps.

The reference example of the stage contract (:mod:`hmlib.stages.base`): options, spec, check, run
(numbers only, from :mod:`hmlib.descriptive`) and report (prose, display tables, figures).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pydantic import Field

from .. import descriptive as dq
from .. import plots
from ..context import StageContext
from ..params import StageOptions
from .base import StageSpec

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]


class Options(StageOptions):
    """Options of the ``data_quality`` stage."""

    iqr_factor: float = Field(default=1.5, gt=0, description="Tukey fence multiplier for outlier flags")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="significance level for tests and marks")
    correlation_log: bool = Field(default=True, description="correlations on log10 values (else raw)")
    map_columns: int = Field(default=4, ge=1, le=6, description="panels per row in the sample maps")


SPEC = StageSpec(
    name="data_quality",
    notebook="00_data_quality.ipynb",
    title="Data quality and descriptive statistics",
    options=Options,
)


@dataclass
class Result:
    """What the data-quality stage computed.

    Attributes
    ----------
    overview : samples, metals, censored and missing values per medium.
    summary : descriptive statistics per medium, metal and statistic (long format).
    normality : Shapiro-Wilk tests per medium, metal and scale (raw, log).
    outliers : samples outside Tukey's fences (log scale) per medium and metal.
    exceedance : samples above background, guideline and water-standard values (counts).
    exceedance_samples : the same per sample (who was judged against which value).
    correlation : pairwise Pearson and Spearman correlations per medium.
    """

    overview: pd.DataFrame
    summary: pd.DataFrame
    normality: pd.DataFrame
    outliers: pd.DataFrame
    exceedance: pd.DataFrame
    exceedance_samples: pd.DataFrame | None
    correlation: pd.DataFrame


def check(ctx: StageContext) -> list[str]:
    """Problems of the options against the data (none are data-dependent for this stage)."""
    n_min = 3  # Shapiro-Wilk needs three values
    problems = []
    for m in ctx.data.media:
        n = int((ctx.data.samples["medium"] == m).sum())
        if n < n_min:
            problems.append(f"data.samples: {n} {m} samples; expected at least {n_min} for descriptive statistics")
    return problems


def run(ctx: StageContext) -> Result:
    """Descriptive statistics, tests, exceedance and correlations of every medium."""
    data, o = ctx.data, ctx.options
    media = data.media
    summary = pd.concat([dq.summary_statistics(data.wide(m), censored=data.wide(m, values="censored").astype(bool),
                                               medium=m, unit=data.unit(m)) for m in media], ignore_index=True)
    normality = pd.concat([dq.normality_tests(data.wide(m), medium=m, alpha=o.alpha) for m in media],
                          ignore_index=True)
    outliers = pd.concat([dq.iqr_outliers(data.wide(m), factor=o.iqr_factor, log=True).sum().rename("n_outliers")
                          .rename_axis("metal").reset_index().assign(medium=m) for m in media], ignore_index=True)
    # exceedance: each sample against the value of its own land-use and pH class; non-detects whose detection
    # limit is above a threshold counted as "cannot tell" (hmlib.descriptive.exceedance_samples)
    exc_samples = pd.concat([_exceedance_samples(ctx, m) for m in media], ignore_index=True)
    exc = dq.exceedance_summary(exc_samples)
    corr = pd.concat([dq.correlation_table(data.wide(m), medium=m, log=o.correlation_log) for m in media],
                     ignore_index=True)
    return Result(overview=dq.data_overview(data), summary=summary, normality=normality, outliers=outliers,
                  exceedance=exc, exceedance_samples=exc_samples, correlation=corr)


def _exceedance_samples(ctx: StageContext, medium: str) -> pd.DataFrame:
    """Per-sample exceedance of one medium (conditions from data.ph_column / land_use_column)."""
    data, p = ctx.data, ctx.params
    refs = p.references
    cond, default, _ = dq.sample_conditions(data.sites(medium), ph_column=p.data.ph_column,
                                            land_use_column=p.data.land_use_column, land_use=refs.land_use,
                                            guideline_set=refs.guideline)
    return dq.exceedance_samples(data.wide(medium), background_set=refs.background, guideline_set=refs.guideline,
                                 water_standard_set=refs.water_standard, medium=medium, unit=data.unit(medium),
                                 conditions=cond, default_conditions=default,
                                 censored=data.wide(medium, values="censored").astype(bool),
                                 detection_limit=data.wide(medium, values="detection_limit"))


def _thresholds(exc: pd.DataFrame) -> dict:
    out: dict = {}
    for row in exc.itertuples():
        out.setdefault(row.medium, {}).setdefault(row.metal, {})[row.threshold_name] = row.threshold
    return out


def report(ctx: StageContext, result: Result) -> None:
    """The data-quality section: methods, overview, statistics, tests, exceedance, correlations, maps."""
    data, p, o, out = ctx.data, ctx.params, ctx.options, ctx.out
    refs = p.references
    out.markdown(dq.methods_text(background_set=refs.background, guideline_set=refs.guideline,
                                 iqr_factor=o.iqr_factor, alpha=o.alpha, substitution=p.non_detects.substitution,
                                 imputation=p.non_detects.imputation, correlation_log=o.correlation_log))
    ov = result.overview
    out.table("data_overview", ov, "Data overview: samples, metals, censored (non-detect) and missing values per "
              "medium.", display=ov.rename(columns={"medium": "Medium", "n_samples": "Samples", "metals": "Metals",
                                                    "unit": "Unit", "n_censored": "Non-detects", "n_missing": "Missing",
                                                    "n_imputed": "Imputed", "grid_cells": "Grid cells"}))
    out.table("summary_statistics", result.summary,
              "Descriptive statistics of total concentrations (GM: geometric mean; CV: coefficient of variation; "
              "skew and kurt: bias-corrected skewness and excess kurtosis).", display=dq.summary_display(result.summary))
    norm_wide = result.normality.pivot_table(index=["medium", "metal"], columns="scale", values="p").reset_index()
    norm_disp = norm_wide.merge(result.outliers, on=["medium", "metal"]).rename(
        columns={"metal": "Metal", "medium": "Medium", "raw": "Shapiro-Wilk p (raw)", "log": "Shapiro-Wilk p (log)",
                 "n_outliers": "IQR outliers (log scale, kept)"})
    out.table("normality", result.normality,
              f"Shapiro-Wilk normality tests on raw and log values, and the number of samples outside Tukey's fences "
              f"(k = {o.iqr_factor}, log scale). p < {o.alpha} rejects normality.", display=norm_disp)
    exc = result.exceedance
    _, default, cond_cols = dq.sample_conditions(data.sites(data.media[0]), ph_column=p.data.ph_column,
                                                 land_use_column=p.data.land_use_column, land_use=refs.land_use,
                                                 guideline_set=refs.guideline)
    out.markdown(dq.exceedance_text(exc, guideline_set=refs.guideline, default_conditions=default,
                                    condition_columns=cond_cols))
    value = [f"{a:.3g}" if a == b else f"{a:.3g}-{b:.3g}" for a, b in zip(exc["threshold"], exc["threshold_max"])]
    exc_disp = exc.assign(value=value, unit=exc["medium"].map(data.unit), share_pct=100 * exc["share_exceeding"]).rename(
        columns={"medium": "Medium", "metal": "Metal", "reference_set": "Reference set", "threshold_name": "Threshold",
                 "value": "Value", "unit": "Unit", "n": "Samples", "n_exceeding": "Samples above",
                 "share_pct": "Share above (%)", "n_cannot_tell": "Cannot tell (non-detect above the value)",
                 "n_fallback": "Judged against the strictest value"})
    cols = ["Medium", "Metal", "Reference set", "Threshold", "Value", "Unit", "Samples", "Samples above",
            "Share above (%)"]
    if (exc["n_cannot_tell"] > 0).any():
        cols.append("Cannot tell (non-detect above the value)")
    if (exc["n_fallback"] > 0).any():
        cols.append("Judged against the strictest value")
    out.table("exceedance", exc, "Samples above the selected background and guideline values; where a guideline set "
              "distinguishes land uses or pH classes each sample is judged against its own class's value (range of "
              "the values applied).", display=exc_disp[cols])
    if result.exceedance_samples is not None:
        out.table("exceedance_samples", result.exceedance_samples,
                  "Exceedance per sample: the value each sample was judged against, its condition, and the outcome.",
                  in_report=False)
    out.table("dq_correlation", result.correlation, "Pairwise correlations.", in_report=False)
    for m in data.media:
        w = data.wide(m)
        for method in ("pearson", "spearman"):
            c = result.correlation[(result.correlation.medium == m) & (result.correlation.method == method)]
            r, pv = dq.correlation_matrices(c, metals=list(w.columns))
            fig = plots.correlation_heatmap(r, pv, alpha=o.alpha, title=f"{method.title()} ({m})")
            out.figure(f"dq_corr_{method}_{m}", fig,
                       f"{method.title()} correlation coefficients between metals in {m} "
                       f"({'log10' if o.correlation_log else 'raw'} values); * p < {o.alpha}, ** p < {o.alpha / 5}.",
                       width="60%")
    thresholds = _thresholds(exc)
    for m in data.media:
        w = data.wide(m)
        fig = plots.histograms(w, unit=data.unit(m), ncols=o.map_columns, thresholds=thresholds.get(m, {}))
        out.figure(f"dq_histograms_{m}", fig, f"Distributions of log10 concentrations in {m}; dashed lines: "
                   "background (blue) and guideline values (red).")
        fig = plots.boxplots(w, unit=data.unit(m), thresholds=thresholds.get(m, {}))
        out.figure(f"dq_boxplots_{m}", fig, f"Box plots of concentrations in {m} (log scale; whiskers 1.5 IQR); "
                   "dashed blue: background, red: guideline values.", width="80%")
        s = data.sites(m)
        fig = plots.sample_maps(w, s["x"], s["y"], unit=data.unit(m), ncols=o.map_columns,
                                coordinate_unit=p.data.coordinate_unit, crs=p.data.crs)
        out.figure(f"dq_maps_{m}", fig, f"Sample locations in {m} coloured by concentration (log colour scale).")
