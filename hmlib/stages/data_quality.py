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
from ..descriptive import _and, count_of
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
    # 95 % Wilson score intervals of the shares above each value (statsmodels)
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(exc["n_exceeding"].to_numpy(), exc["n"].clip(lower=1).to_numpy(), alpha=0.05,
                                method="wilson")
    exc = exc.assign(ci_low=lo, ci_high=hi)
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


def _pairs_text(corr: pd.DataFrame, medium: str, *, method: str = "spearman", r_min: float = 0.5) -> str:
    """The strongest correlations of one medium as words: 'Co–Ni (0.78), Cr–Ni (0.69)'."""
    c = corr[(corr["medium"] == medium) & (corr["method"] == method)].dropna(subset=["r"])
    c = c.reindex(c["r"].abs().sort_values(ascending=False).index)
    strong = c[c["r"].abs() >= r_min].head(6)
    return ", ".join(f"{r.metal_a}–{r.metal_b} ({r.r:.2f})" for r in strong.itertuples())


def report(ctx: StageContext, result: Result) -> None:
    """The data-quality section: methods, overview, statistics, exceedance, correlations; diagnostics in the appendix."""
    import matplotlib.pyplot as plt

    data, p, o, out = ctx.data, ctx.params, ctx.options, ctx.out
    refs = p.references
    media = list(data.media)
    out.markdown("## Methods\n\n" + dq.methods_text(background_set=refs.background, guideline_set=refs.guideline,
                                 water_standard_set=refs.water_standard if any(data.unit(m) == "ug/L" for m in media)
                                 else None, iqr_factor=o.iqr_factor, alpha=o.alpha,
                                 substitution=p.non_detects.substitution, imputation=p.non_detects.imputation,
                                 correlation_log=o.correlation_log))
    ov = result.overview
    out.table("data_overview", ov, "Samples, metals, non-detects and missing values per medium.", in_report=False)
    # --- overview and distributions ------------------------------------------------------
    parts = []
    for r in ov.itertuples():
        extra = [f"{r.n_censored} non-detects" if r.n_censored else "no non-detects",
                 f"{r.n_missing} missing values" if r.n_missing else "no missing values"]
        parts.append(f"{r.n_samples} {r.medium} samples ({r.unit}) with {_n_metals(r.metals)}, {' and '.join(extra)}")
    grid = int(ov["grid_cells"].max()) if len(ov) else 0
    s = result.summary
    wide = s.pivot_table(index=["medium", "metal"], columns="statistic", values="value", sort=False)
    skewed = wide[wide["skewness"] > 1].reset_index()
    norm = result.normality.pivot_table(index=["medium", "metal"], columns="scale", values="p", sort=False)
    lognormal = int((norm["log"] >= o.alpha).sum()) if "log" in norm else 0
    raw_normal = int((norm["raw"] >= o.alpha).sum()) if "raw" in norm else 0
    n_out = int(result.outliers["n_outliers"].sum())
    ratio = (wide["max"] / wide["median"]).replace([float("inf")], float("nan")).dropna()
    top = ratio.sort_values(ascending=False).head(2)
    box_refs = ", ".join(out.ref(f"dq_boxplots_{m}", "fig") for m in media)
    text = ("## Results\n\nThe data set holds " + "; ".join(parts) + (f", and a prediction grid of {grid:,} cells" if grid else "")
            + ". ")
    if len(skewed):
        text += (f"Concentrations are right-skewed (skewness above 1 for {_and(skewed['metal'].unique())}; "
                 f"{out.ref('summary_statistics')}, {box_refs}), with maxima up to "
                 + _and(f"{v:.1f} times the median for {k[1]}" + (f" in {k[0]}" if len(media) > 1 else "")
                        for k, v in top.items())
                 + ": a few samples carry much higher values than the rest, as expected where local inputs add to "
                   "a natural background. ")
    else:
        text += f"Distributions are roughly symmetric ({out.ref('summary_statistics')}, {box_refs}). "
    what = "metal and medium combinations" if len(media) > 1 else "metals"
    if lognormal > raw_normal:
        lead = ((f"Normality was rejected for all {len(norm)} {what} on raw values, but for "
                 + ("none of them" if lognormal == len(norm) else f"only {len(norm) - lognormal} of them")
                 + " on log values") if raw_normal == 0 else
                (f"Normality was not rejected for {raw_normal} of {len(norm)} {what} on raw values but for "
                 f"{lognormal} on log values"))
        text += (lead + f" (Shapiro-Wilk; {out.ref('normality')}), so geometric means and log-scale methods are "
                 "used below. ")
    else:
        raw_rej, log_rej = len(norm) - raw_normal, len(norm) - lognormal
        where = (f"{count_of(raw_rej, len(norm), what)} on both raw and log values" if raw_rej == log_rej else
                 f"{count_of(raw_rej, len(norm), what)} on raw values and {log_rej} on log values")
        text += (f"The Shapiro-Wilk test rejected normality for {where} ({out.ref('normality')}); with this many "
                 "samples it detects small departures, and the log scale remains the closer approximation used "
                 "below. ")
    if "subsampled" in result.normality and result.normality["subsampled"].any():
        text += (f"Where a metal has more than {dq.SHAPIRO_MAX_N:,} values the test was run on a random subsample "
                 f"of {dq.SHAPIRO_MAX_N:,}, the largest sample for which its p-value is accurate (Royston 1995). ")
    text += (f"{n_out} values lie outside Tukey's fences on the log scale and were kept as possible contamination."
             if n_out else "No value lies outside Tukey's fences on the log scale.")
    out.markdown(text)
    out.table("summary_statistics", result.summary,
              "Descriptive statistics of total concentrations (GM: geometric mean; CV: coefficient of variation; "
              "skew: bias-corrected skewness). Excess kurtosis and missing values are in the CSV.",
              display=_summary_display(result.summary))
    norm_wide = result.normality.pivot_table(index=["medium", "metal"], columns="scale", values="p").reset_index()
    norm_disp = norm_wide.merge(result.outliers, on=["medium", "metal"]).rename(
        columns={"metal": "Metal", "medium": "Medium", "raw": "Shapiro-Wilk p (raw)", "log": "Shapiro-Wilk p (log)",
                 "n_outliers": "Outside Tukey's fences (log scale, kept)"})
    if norm_disp["Medium"].nunique() == 1:
        norm_disp = norm_disp.drop(columns=["Medium"])
    out.table("normality", result.normality,
              f"Shapiro-Wilk normality tests on raw and log values, and the number of samples outside Tukey's fences "
              f"(k = {o.iqr_factor:g}, log scale). p < {o.alpha:g} rejects normality.", display=norm_disp,
              appendix=True)
    # --- exceedance ------------------------------------------------------------------------
    exc = result.exceedance
    if len(exc):
        _, default, cond_cols = dq.sample_conditions(data.sites(media[0]), ph_column=p.data.ph_column,
                                                     land_use_column=p.data.land_use_column, land_use=refs.land_use,
                                                     guideline_set=refs.guideline)
        disp, never = dq.exceedance_display(exc, units={m: data.unit(m) for m in media})
        out.markdown(_exceedance_text(ctx, exc, never)
                     + " " + dq.exceedance_text(exc, guideline_set=refs.guideline, default_conditions=default,
                                                condition_columns=cond_cols))
        sets = [dq.reference_label(x, cite=False, short=True) for x in dict.fromkeys(exc["reference_set"])]
        out.table("exceedance", exc, "Share of samples above the background and guideline values, with 95 % "
                  "Wilson confidence intervals (" + "; ".join(sets) + "). Where a guideline distinguishes land uses "
                  "or pH classes each sample is judged against its own class's value (range given)."
                  + (f" No sample exceeded the {_and(never)}." if never else ""), display=disp)
        _exceedance_findings(ctx, exc)
    else:
        out.markdown("No background, guideline or water-standard value applies to these media, so no exceedance "
                     "is reported.")
    if result.exceedance_samples is not None:
        out.table("exceedance_samples", result.exceedance_samples,
                  "Exceedance per sample: the value each sample was judged against, its condition, and the outcome.",
                  in_report=False)
    # --- correlations: one figure per medium, both coefficients ------------------------------
    out.table("dq_correlation", result.correlation, "Pairwise correlations.", in_report=False)
    corr_refs, corr_txt, panels = [], [], {}
    scale = "log10" if o.correlation_log else "raw"
    for m in media:
        w = data.wide(m)
        c = result.correlation[result.correlation.medium == m]
        if w.shape[1] < 2 or c.empty:
            continue
        rp, pp = dq.correlation_matrices(c[c.method == "pearson"], metals=list(w.columns))
        rs, ps = dq.correlation_matrices(c[c.method == "spearman"], metals=list(w.columns))
        panels[m] = (rp, rs, pp, ps)
        pairs = _pairs_text(result.correlation, m)
        diff = (c[c.method == "pearson"].set_index(["metal_a", "metal_b"])["r"]
                - c[c.method == "spearman"].set_index(["metal_a", "metal_b"])["r"]).abs()
        corr_txt.append((f"in {m}, " if len(media) > 1 else "")
                        + (f"the strongest associations are {pairs}" if pairs else
                           "no pair of metals has a rank correlation of 0.5 or more")
                        + (f"; Pearson and Spearman coefficients differ by at most {diff.max():.2f}"
                           if len(diff.dropna()) else ""))
    if len(panels) == 1:
        (m, (rp, rs, pp, ps)), = panels.items()
        fig = dq.plot_correlations(rp, rs, pearson_p=pp, spearman_p=ps, alpha=o.alpha, scale=scale)
        what = f"in {m}"
    elif panels:  # one figure with a panel per medium: a full page per medium repeats one kind of display
        fig = dq.plot_correlations_by_medium(panels, alpha=o.alpha, scale=scale)
        what = "in each medium (coefficients without the leading zero, .82 = 0.82)"
    if panels:
        name = "dq_correlations"
        out.figure(name, fig, f"Correlations between metals {what}: Pearson r above the diagonal, Spearman ρ below "
                   f"({scale} values); * p < {o.alpha:g}, ** p < {o.alpha / 5:g}.",
                   width="70%" if len(panels) == 1 else "100%")
        plt.close(fig)
        corr_refs.append(out.ref(name, "fig"))
    if corr_refs:
        out.markdown("**Associations between metals.** " + "; ".join(corr_txt)[0].upper() + "; ".join(corr_txt)[1:]
                     + f" ({', '.join(corr_refs)}). Metals that rise and fall together share a source or a carrier "
                     "(parent rock, clay and oxides, or the same input); the source analysis below separates "
                     "them. Correlation is not causation, and with many samples weak correlations are significant.")
    # --- figures: box plots in the main text, histograms and sample maps in the appendix ------
    thresholds = _thresholds(exc)
    for m in media:
        w = data.wide(m)
        fig = plots.boxplots(w, unit=data.unit(m), thresholds=thresholds.get(m, {}))
        names = {k for v in thresholds.get(m, {}).values() for k in v}
        lines = ((["the background" + (f" ({dq.reference_label(refs.background, cite=False, short=True)})"
                                       if refs.background else "")] if "background" in names else [])
                 + (["the guideline values"] if names - {"background"} else []))
        out.figure(f"dq_boxplots_{m}", fig, f"Concentrations in {m} (log scale; boxes: quartiles; whiskers: 1.5 "
                   "times the interquartile range)"
                   + (" with " + " and ".join(lines) + " named in the legend." if lines else "."),
                   width="80%", group="dq_boxplots" if len(media) > 1 else None)
        plt.close(fig)
        fig = plots.histograms(w, unit=data.unit(m), ncols=o.map_columns, thresholds=thresholds.get(m, {}))
        out.figure(f"dq_histograms_{m}", fig, f"Distributions of log10 concentrations in {m} with the background and "
                   "guideline values named in the legend.", appendix=True,
                   group="dq_histograms" if len(media) > 1 else None)
        plt.close(fig)
        s_ = data.sites(m)
        fig = plots.sample_maps(w, s_["x"], s_["y"], unit=data.unit(m), ncols=o.map_columns,
                                coordinate_unit=p.data.coordinate_unit, crs=p.data.crs)
        out.figure(f"dq_maps_{m}", fig, f"Sample locations in {m} coloured by concentration (log colour scale).",
                   appendix=True, group="dq_maps" if len(media) > 1 else None)
        plt.close(fig)


def _n_metals(metals: str) -> str:
    n = len([x for x in str(metals).split(",") if x.strip()])
    return f"{n} metal{'s' if n != 1 else ''} ({metals})"




def _summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """The reader's summary: location, spread and shape; counts of non-detects only where there are some."""
    d = dq.summary_display(summary)
    drop = [c for c in d.columns if c.startswith(("P25", "P75", "SD")) or c in ("kurt", "missing")]
    if "censored" in d and (d["censored"] == 0).all():
        drop.append("censored")
    d = d.drop(columns=drop).rename(columns={"censored": "non-detects"})
    return d


def _pct(k: int, n: int) -> str:
    v = 100 * k / n if n else float("nan")
    return f"{v:.0f} %" if v >= 1 or v == 0 else f"{v:.1f} %"


def _exceedance_text(ctx: StageContext, exc: pd.DataFrame, never: list[str]) -> str:
    """Interpretation of the exceedance table: crustal background versus legal values."""
    out = ctx.out
    refs = ctx.params.references
    txt = []
    bgr = exc[exc["threshold_name"] == "background"]
    if len(bgr):
        all_above = bgr[bgr["share_exceeding"] >= 0.99]["metal"].unique().tolist()
        few = bgr[bgr["share_exceeding"] < 0.05]["metal"].unique().tolist()
        txt.append("**Exceedance.** "
                   + (f"{_and(all_above)} exceed{'s' if len(all_above) == 1 else ''} the natural background of "
                      f"{dq.reference_label(refs.background)} in (nearly) every sample"
                      if all_above else f"No metal exceeds the natural background of "
                                        f"{dq.reference_label(refs.background)} in every sample")
                   + (f", while {_and(few)} exceed{'s' if len(few) == 1 else ''} it in fewer than 5 %" if few else "")
                   + f" ({out.ref('exceedance')}). A global average of the crust is not the natural level of one "
                     "region's soils, which follow their parent rock: a metal above it everywhere points either to a "
                     "naturally rich region or to enrichment throughout, and which of the two is judged against the "
                     "region's own baseline and each sample's adaptive background in the next section.")
    legal = exc[~exc["threshold_name"].isin(["background"])].sort_values(["medium", "metal", "threshold"], kind="stable")
    if len(legal):
        first = legal.groupby(["medium", "metal"], sort=False).first().reset_index()  # lowest legal value per metal
        first = first.sort_values("share_exceeding", ascending=False)
        hits = first[first["n_exceeding"] > 0]
        if len(hits):
            items = [f"{r.metal}{f' in {r.medium}' if exc['medium'].nunique() > 1 else ''} "
                     f"({_pct(r.n_exceeding, r.n)}{' of the samples' if i == 0 else ''})"
                     for i, r in enumerate(hits.head(4).itertuples())]
            names = first["threshold_name"].unique()   # media judged against different sets name no one kind
            kind = dq.threshold_header(names[0]).lower() + "s" if len(names) == 1 else "guideline values"
            txt.append(f"The lowest {kind} were exceeded most often by {_and(items)}.")
        higher = legal[legal["n_exceeding"] > 0].groupby(["medium", "metal"], sort=False).nth(slice(1, None))
        if len(higher):
            items = [f"the {dq.threshold_header(r.threshold_name).lower()} of {r.metal} by "
                     f"{_pct(r.n_exceeding, r.n)}" for r in higher.sort_values("share_exceeding", ascending=False)
                     .head(3).itertuples()]
            txt.append(f"Stricter action levels were exceeded less often: {_and(items)}.")
        if never:
            txt.append(f"No sample reached the {_and(never)}.")
    return " ".join(txt)


def _exceedance_findings(ctx: StageContext, exc: pd.DataFrame) -> None:
    """Key finding: the legal value exceeded most often, with its 95 % interval."""
    legal = exc[(exc["threshold_name"] != "background") & (exc["n_exceeding"] > 0)]
    if legal.empty:
        return
    r = legal.sort_values(["share_exceeding", "threshold"], ascending=[False, True]).iloc[0]
    unit = ctx.data.unit(r["medium"])
    val = f"{r['threshold']:.3g}" + (f"–{r['threshold_max']:.3g}" if r["threshold_max"] != r["threshold"] else "")
    name = dq.reference_label(r["reference_set"], cite=False)
    higher = exc[(exc["medium"] == r["medium"]) & (exc["metal"] == r["metal"]) & (exc["threshold"] > r["threshold"])
                 & (exc["reference_set"] == r["reference_set"])].sort_values("threshold")
    extra = ""
    if len(higher):
        h = higher.iloc[0]
        extra = (f", and {100 * h['share_exceeding']:.1f} % (95 % CI {100 * h['ci_low']:.1f}–{100 * h['ci_high']:.1f} %) "
                 f"its {dq.threshold_header(h['threshold_name']).lower()} of {h['threshold']:.3g} {unit}")
    others = legal[(legal["threshold_name"] == r["threshold_name"]) & (legal.index != r.name)]
    others = others.sort_values("share_exceeding", ascending=False).head(2)
    never = exc[(exc["threshold_name"] != "background")].groupby("threshold_name")["n_exceeding"].sum()
    never = [dq.threshold_header(k).lower() for k, v in never.items() if v == 0]
    ctx.out.conclusion(
        f"{r['metal']} is the metal most often above its {dq.threshold_header(r['threshold_name']).lower()} "
        f"({100 * r['share_exceeding']:.0f} % of the {r['medium']} samples, 95 % CI {100 * r['ci_low']:.0f}–"
        f"{100 * r['ci_high']:.0f} %)"
        + (", followed by " + _and(f"{x.metal} ({100 * x.share_exceeding:.0f} %)" for x in others.itertuples())
           if len(others) else "")
        + (f"; no sample reached a {_and(never)}" if never else "")
        + ". An exceedance alone does not say whether the metal is natural or added: that is judged against the "
          "region's own background and from the sources.")
    ctx.out.finding(f"{r['metal']} exceeded the {dq.threshold_header(r['threshold_name']).lower()} of {val} {unit}, "
                    f"from {name}, in {100 * r['share_exceeding']:.1f} % of the {r['medium']} samples "
                    f"(95 % CI {100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f} %){extra}.",
                    importance=0.7, refs=["exceedance"],
                    topic=("exceedance share", r["medium"], r["metal"], r["threshold_name"]))
