"""Stage ``crossmedia``: cross-media behaviour: sediment-water partitioning and structural equation model.

``run`` composes :mod:`hmlib.crossmedia` (paired-site table, Kd, group tests, drivers) and :mod:`hmlib.sem`
(the SEM, estimated with lavaan's defaults and checked against lavaan); ``report`` writes the section.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from .. import crossmedia as cm
from .. import sem
from ..context import StageContext
from ..outputs import ref_id
from ..params import StageOptions
from .base import StageSpec, needs_two_paired_media

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]

MIN_SITES = 10


class Options(StageOptions):
    """Options of the ``crossmedia`` stage (``stages: crossmedia:`` in params)."""

    solid_medium: str = Field(default="sediment", description="solid medium of the Kd pair (mg/kg)")
    water_medium: str = Field(default="water", description="water medium of the Kd pair (ug/L)")
    kd_drivers: list[str] = Field(
        default_factory=list,
        description="site-table columns ('<covariate>_<medium>', e.g. salinity_psu_water) tested as Kd drivers; "
                    "empty: every numeric covariate measured in the water or the solid medium")
    sem_model: str | None = Field(
        default=None, description="SEM in lavaan syntax on site-table columns ('<metal or covariate>_<medium>'); "
                                  "None: one latent per medium measured by its metals, chained in media order")
    sem_log10: bool = Field(default=True, description="log10-transform concentrations before standardizing")
    sem_refine: bool = Field(default=False, description="drop indicators with small standardized loadings")
    sem_refine_threshold: float = Field(default=0.3, ge=0.0, lt=1.0,
                                        description="|standardized loading| below which an indicator is dropped")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="significance level for tests and marks")
    known_truth: str | None = Field(default=None, description="generated demo regions only: CSV of the generator's "
                                    "true slopes of log10 Kd on the drivers (metal, variable, true_slope_per_unit), "
                                    "compared with what the regression recovered")

    @field_validator("sem_model")
    @classmethod
    def _model_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("a non-empty lavaan model (or null for the default model)")
        return v


SPEC = StageSpec(
    name="crossmedia",
    notebook="70_crossmedia.ipynb",
    title="Cross-media behaviour: sediment-water partitioning and structural equation model",
    options=Options,
    requires=(needs_two_paired_media,),
)


@dataclass
class Result:
    """What the crossmedia stage computed.

    Attributes
    ----------
    skipped : None, or why the stage could not run (too few paired sites).
    n_sites : sites sampled in every medium.
    has_kd : whether the solid and water media of the Kd pair exist.
    drivers : Kd driver columns used.
    kd : Kd per site and metal (None without a Kd pair); kd_summary, kd_tests : by group.
    kd_drivers : Spearman and regression statistics of log10 Kd on the drivers (None without drivers).
    sem_model : the a priori model; sem_fit : the fitted (possibly refined) :class:`hmlib.sem.SEMResult`;
    sem_steps : the refinement log (None without refinement).
    truth : generated demo regions: recovered against true Kd slopes (:func:`hmlib.crossmedia.effect_truth_recovery`).
    """

    skipped: str | None
    n_sites: int
    has_kd: bool
    drivers: list[str]
    kd: pd.DataFrame | None = None
    kd_summary: pd.DataFrame | None = None
    kd_tests: pd.DataFrame | None = None
    kd_drivers: pd.DataFrame | None = None
    sem_model: str | None = None
    sem_fit: sem.SEMResult | None = None
    sem_steps: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None


def _kd_site(ctx: StageContext) -> pd.DataFrame | None:
    o, data = ctx.options, ctx.data
    if o.solid_medium in data.media and o.water_medium in data.media:
        return cm.site_table(data, media=[o.solid_medium, o.water_medium])
    return None


def check(ctx: StageContext) -> list[str]:
    """Problems of the options against the data: media and driver columns that do not exist, a model naming
    variables that are not site-table columns."""
    o, data = ctx.options, ctx.data
    problems = []
    if o.known_truth and not ctx.params.resolve(o.known_truth).is_file():
        problems.append(f"stages.crossmedia.known_truth: got {o.known_truth!r}; expected an existing CSV file")
    kd_site = _kd_site(ctx)
    if kd_site is not None:
        bad = [d for d in o.kd_drivers if d not in kd_site.columns]
        if bad:
            avail = [c for c in kd_site.columns if c not in ("group", "x", "y")]
            problems.append(f"stages.crossmedia.kd_drivers: got {', '.join(bad)}; expected site-table columns "
                            f"({', '.join(avail)})")
    if o.sem_model:
        try:
            spec = sem.parse_model(o.sem_model)
        except ValueError as e:
            return problems + [f"stages.crossmedia.sem_model: got a model that cannot be read ({e}); expected lavaan "
                               "syntax"]
        cols = set(cm.site_table(data).columns)
        bad = [v for v in spec["observed"] if v not in cols]
        if bad:
            problems.append(f"stages.crossmedia.sem_model: got variables {', '.join(bad)}; expected site-table "
                            "columns named <metal or covariate>_<medium>")
    return problems


def run(ctx: StageContext) -> Result:
    """Kd, its group differences and drivers, and the SEM of the paired sites."""
    o, data, p = ctx.options, ctx.data, ctx.params
    site = cm.site_table(data)
    kd_site = _kd_site(ctx)
    has_kd = kd_site is not None
    if len(site) < MIN_SITES:
        return Result(skipped=f"only {len(site)} sites are sampled in all of {', '.join(data.media)}; this analysis "
                              f"needs at least {MIN_SITES} paired sites", n_sites=len(site), has_kd=has_kd, drivers=[])
    drivers = list(o.kd_drivers) or (cm.default_drivers(kd_site, covariates=p.data.covariates,
                                                        media=[o.water_medium, o.solid_medium]) if has_kd else [])
    r = Result(skipped=None, n_sites=len(site), has_kd=has_kd, drivers=drivers)
    if has_kd:
        kd = cm.kd_table(cm.site_metals(data, o.solid_medium), cm.site_metals(data, o.water_medium),
                         solid_unit=data.unit(o.solid_medium), water_unit=data.unit(o.water_medium),
                         groups=kd_site["group"] if "group" in kd_site.columns else None)
        kd = kd[kd["site_id"].isin(kd_site.index)].reset_index(drop=True)
        conc = data.concentrations.merge(data.samples[["sample_id", "medium", "site_id"]], on=["sample_id", "medium"])
        nd = (conc[conc["medium"].isin([o.solid_medium, o.water_medium])]
              .groupby(["site_id", "metal"])["censored"].any().rename("from_non_detect").reset_index())
        n_nd = kd.merge(nd, on=["site_id", "metal"], how="left").groupby("metal")["from_non_detect"].sum().astype(int)
        summary = cm.kd_group_summary(kd).merge(n_nd.rename("n_non_detect").reset_index(), on="metal", how="left")
        summary.loc[summary["group"] != "all", "n_non_detect"] = np.nan
        r.kd, r.kd_summary, r.kd_tests = kd, summary, cm.kd_group_tests(kd)
        if drivers:
            r.kd_drivers = cm.kd_drivers(kd, kd_site[drivers])
            if o.known_truth:
                r.truth = cm.effect_truth_recovery(r.kd_drivers, cm.read_effect_truth(p.resolve(o.known_truth)))
    site_sem = cm.site_table(data, log10=o.sem_log10)
    r.sem_model = o.sem_model or cm.default_sem_model(site_sem, media=data.media, metals=data.metals)
    if o.sem_refine:
        r.sem_fit, r.sem_steps = sem.refine_sem(site_sem, r.sem_model, threshold=o.sem_refine_threshold)
    else:
        r.sem_fit = sem.fit_sem(site_sem, r.sem_model)
    return r


def report(ctx: StageContext, result: Result) -> None:
    """The crossmedia section: methods, partitioning (Kd by group, its controls, a demo's known truth), then the
    SEM with its fit stated before its paths; long tables and the model syntax in the appendix."""
    o, data, out = ctx.options, ctx.data, ctx.out
    if result.skipped:
        out.markdown(f"This analysis was not run: {result.skipped}.")
        return
    if not result.has_kd:
        out.title = "Cross-media behaviour: structural equation model (no sediment-water pair for partitioning)"
    kw = dict(solid_medium=o.solid_medium, water_medium=o.water_medium, drivers=result.drivers,
              sem_log10=o.sem_log10, sem_refine=o.sem_refine, threshold=o.sem_refine_threshold, alpha=o.alpha,
              n_sites=result.n_sites)
    if not result.has_kd:
        out.markdown(f"The region has no {o.solid_medium} and {o.water_medium} sampled at the same sites (media: "
                     f"{', '.join(data.media)}), so partition coefficients are not computed; only the structural "
                     "equation model is reported.")
    else:
        out.markdown(f"## Partitioning between {o.solid_medium} and {o.water_medium}")
        out.markdown(cm.methods_text(**kw, include_kd=True, include_sem=False))
        _report_kd(ctx, result)
    out.markdown("## Structural equation model of the media")
    out.markdown(cm.methods_text(**kw, include_kd=False, include_sem=True))
    out.markdown(cm.sem_methods_details(), appendix=True)
    _report_sem(ctx, result)


def _report_kd(ctx: StageContext, result: Result) -> None:
    o, out = ctx.options, ctx.out
    kd, summary, tests, alpha = result.kd, result.kd_summary, result.kd_tests, o.alpha
    out.table("kd", kd[["site_id", "metal", "kd", "log10_kd", "group"]],
              "Partition coefficient per site and metal (scale of Wu et al. 2025: Cs in mg/kg over Cw in µg/L, "
              "× 100).", in_report=False)
    has_groups = bool((tests["n_groups"] >= 2).any())
    out.table("kd_by_group", summary,
              f"Median log10 Kd ({o.solid_medium} over {o.water_medium}) of each metal"
              + (" in each group and" if has_groups else "") + " over all sites with the interquartile range (IQR), "
              "metals from the most mobile to the most retained; median Kd on the scale of Wu et al. (2025), "
              "(mg/kg)/(µg/L) × 100"
              + (f"; Kruskal-Wallis p of the difference between groups (read against {alpha:g} divided by the "
                 "number of metals)" if has_groups else "")
              + "; the last column counts Kd values computed from a non-detect (approximate). The full table adds "
                "the mean, SD and range per group.",
              display=cm.kd_group_display(summary, tests if has_groups else None))
    out.figure("kd_boxplot", cm.kd_boxplot(kd), f"Distributions of log10 Kd ({o.solid_medium} over {o.water_medium}) "
               "by group; boxes span the quartiles, whiskers 1.5 IQR, points beyond them are single sites.")
    if has_groups:
        out.table("kd_group_tests", tests, f"Kruskal-Wallis tests of log10 Kd differences between groups; p < "
                  f"{alpha:g} / (number of metals) indicates that at least one group differs.",
                  display=tests.rename(columns={"metal": "Metal", "n": "Sites", "n_groups": "Groups"}), appendix=True)
    refs = f"{out.ref('kd_by_group')}, {out.ref('kd_boxplot', 'fig')}"
    out.markdown("**Results.** " + cm.partitioning_text(summary, tests if has_groups else None, solid_medium=o.solid_medium,
                                      water_medium=o.water_medium, alpha=alpha, refs=refs))
    drv = result.kd_drivers
    if drv is None:
        out.markdown("No numeric water-quality or sediment variables are available, so the controls on Kd are not "
                     "analysed.")
        return
    out.figure("kd_drivers", cm.drivers_heatmaps(drv, alpha=alpha),
               f"log10 Kd against each water-quality and {o.solid_medium} variable: Spearman correlation one variable "
               "at a time (left) and standardized coefficients of the multiple regression on all variables jointly "
               f"(right); blue positive, red negative; * p < {alpha:g}, ** p < {alpha / 5:g}.")
    out.table("kd_drivers", drv,
              f"Spearman correlations of log10 Kd with the water-quality and {o.solid_medium} variables, the "
              "standardized coefficients (β) of a multiple regression of log10 Kd on all of them, the slope per unit "
              "of the variable with its 95 % confidence interval, the variance inflation factor (VIF) and the "
              "adjusted R² of each metal's regression.",
              display=drv.assign(variable=drv["variable"].map(cm.variable_label))[
                  ["metal", "variable", "n", "spearman_rho", "spearman_p", "beta_std", "beta_p", "slope",
                   "slope_ci_low", "slope_ci_high", "vif", "r2_adj"]
              ].rename(columns={"metal": "Metal", "variable": "Variable", "n": "Sites", "spearman_rho": "Spearman ρ",
                                "spearman_p": "p (ρ)", "beta_std": "β (standardized)", "beta_p": "p (β)",
                                "slope": "Slope (log10 Kd per unit)", "slope_ci_low": "95 % CI low",
                                "slope_ci_high": "95 % CI high", "vif": "VIF", "r2_adj": "R² adj"}),
              max_rows=80, appendix=True)
    out.markdown(cm.drivers_text(drv, alpha=alpha, refs=f"{out.ref('kd_drivers', 'fig')}; all coefficients in "
                                                        f"{out.ref('kd_drivers')}"))
    if result.truth is not None and len(result.truth):
        _report_truth(ctx, result)


def _report_truth(ctx: StageContext, result: Result) -> None:
    """Generated demo: the regression's slopes against the generator's true slopes."""
    out, t = ctx.out, result.truth
    focus = str(t.loc[t["true_slope"].abs().idxmax(), "metal"])
    inside, n = int(t["within_ci"].sum()), len(t)
    nz = t[t["true_slope"] != 0]
    out.table("crossmedia_truth_check", t,
              "Check against the generator (generated data only): the slope of log10 Kd on each variable estimated "
              f"by the regression, with its 95 % confidence interval, against the slope the data were generated "
              f"with; {focus} row by row, the other metals summarised per variable (their ranges). The full table "
              "lists every metal.",
              display=cm.effect_truth_display(t, focus=focus))
    out.markdown(
        f"**Check against the generator.** These data are generated with known partition coefficients, so the "
        f"regression can be checked ({out.ref('crossmedia_truth_check')}): the 95 % confidence interval contains the "
        f"true slope for {inside} of {n} metal-variable pairs (about {0.95 * n:.0f} expected by chance alone), and "
        f"the sign of {int((nz['sign_recovered'] == True).sum())} of {len(nz)} non-zero true "  # noqa: E712
        "effects is recovered with an interval that excludes zero. Dissolved oxygen has no effect of its own in the "
        "generator (it acts only through pH), and the regression finds none. The true effects not detected are a "
        f"matter of power: with {result.n_sites} sites, small true slopes (such as the weak salinity effect on "
        f"metals other than {focus}) are estimated with intervals that include zero, so an effect this analysis "
        "does not find may still exist.")
    out.limitation(f"With {result.n_sites} paired sites the regression of log10 Kd detects only the larger effects: "
                   f"in the generated data, {len(nz) - int((nz['sign_recovered'] == True).sum())} of {len(nz)} true "  # noqa: E712
                   "non-zero slopes were not distinguished from zero.")


def _report_sem(ctx: StageContext, result: Result) -> None:
    o, out = ctx.options, ctx.out
    fit, model_txt, steps, alpha = result.sem_fit, result.sem_model, result.sem_steps, o.alpha
    spec = ("the model specified for this region" if o.sem_model else
            "the default model (one latent system per medium measured by its metals, chained in media order)")
    out.markdown(f"**Model.** The model fitted is {spec}; it is listed statement by statement in "
                 f"{out.ref('sem_model')}"
                 + (f", with the {len(steps) - 1} refinement step{'s' if len(steps) != 2 else ''} that dropped weakly "
                    f"loading indicators ({out.ref('sem_refinement')})" if steps is not None and len(steps) > 1 else "")
                 + f". Inputs: {'log10 concentrations and covariates, ' if o.sem_log10 else ''}z-scored, N = {fit.n} "
                   "sites with complete data.")
    refined = fit.model.strip() != model_txt.strip()
    for name, txt, what in (("sem_model", model_txt, "a priori model"),
                            ("sem_model_refined", fit.model, "model after refinement, on which the estimates rest")):
        if name == "sem_model_refined" and not refined:
            continue
        path = out.file(f"{name}.lav")
        path.write_text(txt.strip() + "\n", encoding="utf-8")
        mt = cm.sem_model_table(txt)
        out.table(name, mt, f"The {what}, statement by statement: latent systems measured by their indicators, "
                  "regressions and covariances (the same model in lavaan syntax: "
                  f"[{path.name}](files/{path.name})).",
                  display=mt[["part", "left", "relation", "right"]].rename(columns={
                      "part": "Part", "left": "Variable", "relation": "Relation", "right": "Variables"}),
                  appendix=True)
    if steps is not None:
        disp = steps.assign(action=[
            "initial model" if pd.isna(r.indicator) else
            f"dropped {cm.variable_phrase(r.indicator)} from {cm.variable_phrase(r.latent)}"
            for r in steps.itertuples()])
        out.table("sem_refinement", steps,
                  f"Model refinement: each step drops the indicator with the smallest absolute standardized loading "
                  f"below {o.sem_refine_threshold:g} and refits; fit indices after the step. AIC compares models of "
                  "the same observed variables only (it changes when an indicator leaves the data).",
                  display=disp[["step", "action", "std_loading", "chi2", "df", "CFI", "TLI", "RMSEA", "SRMR",
                                "AIC"]].rename(columns={"step": "Step", "action": "Action",
                                                        "std_loading": "Std. loading", "chi2": "χ²"}),
                  appendix=True)
    if not fit.ok:
        out.markdown(f"**The structural equation model could not be estimated.** {fit.message[0].upper() + fit.message[1:]}.")
        out.table("sem_estimates", pd.DataFrame(columns=["lhs", "op", "rhs", "estimate", "std_estimate", "se", "p"]),
                  "SEM estimates (none: the model was not estimated).", in_report=False)
        out.table("sem_fit", pd.DataFrame({"index": ["estimated"], "value": [0.0]}),
                  "SEM fit (none: the model was not estimated).", in_report=False)
        out.limitation(f"The structural equation model could not be estimated: {fit.message}.")
        return
    est = fit.estimates
    fv = fit.fit.set_index("index")["value"]
    key = ["chi2", "df", "p", "CFI", "TLI", "RMSEA", "RMSEA_ci90_lower", "RMSEA_ci90_upper", "RMSEA_pclose", "SRMR",
           "n"]
    names = {"chi2": "χ²", "df": "degrees of freedom", "p": "p (exact fit)", "CFI": "CFI (≥ 0.95)",
             "TLI": "TLI (≥ 0.95)", "RMSEA": "RMSEA (≤ 0.06)", "RMSEA_ci90_lower": "RMSEA, 90 % CI low",
             "RMSEA_ci90_upper": "RMSEA, 90 % CI high", "RMSEA_pclose": "p (close fit, RMSEA ≤ 0.05)",
             "SRMR": "SRMR (≤ 0.08)", "n": "sites"}
    out.table("sem_fit", fit.fit,
              "Fit of the structural equation model (maximum likelihood), with the conventional cut-offs of Hu and "
              "Bentler (1999) in brackets. The full table adds the baseline model, AIC, BIC and the log-likelihood.",
              display=pd.DataFrame({"Index": [names[k] for k in key if k in fv.index],
                                    "Value": [fv[k] for k in key if k in fv.index]}))
    out.markdown(cm.sem_fit_text(fit, ref=out.ref("sem_fit")))
    lab = cm.sem_labels(fit)
    out.figure("sem_path_diagram", sem.path_diagram(fit, alpha=alpha, labels=lab),
               "Path diagram of the structural equation model: ellipses are latent geochemical systems, boxes observed "
               "variables. Arrows carry standardized estimates: blue positive, red negative, width proportional to "
               f"magnitude, opaque p < {alpha:g}, half-transparent p < 0.10, faint otherwise (* p < {alpha:g}); "
               "dashed curves are covariances.")
    out.markdown(cm.sem_paths_text(fit, labels=lab, drivers=result.kd_drivers, water_medium=o.water_medium,
                                   alpha=alpha, ref=f"{out.ref('sem_path_diagram', 'fig')}; all estimates in "
                                                    f"{out.ref('sem_estimates')}"))
    out.table("sem_estimates", est,
              "Estimates of the structural equation model: loadings of the indicators on their latent system "
              "(measured by), regressions (regressed on) and covariances (between two variables: residual "
              "covariance, standardized as a residual correlation); estimates on z-scored inputs, fully standardized estimates "
              "(as lavaan's std.all), standard error and Wald p (no SE or p for fixed parameters).",
              display=est[~((est["op"] == "~~") & (est["lhs"] == est["rhs"]))].assign(
                  lhs=lambda d: d["lhs"].map(cm.variable_phrase), rhs=lambda d: d["rhs"].map(cm.variable_phrase),
                  op=lambda d: d["op"].map({"=~": "measured by", "~": "regressed on", "~~": "covaries with"})
              ).rename(
                  columns={"lhs": "Variable", "op": "Relation", "rhs": "Other variable", "estimate": "Estimate",
                           "std_estimate": "Std. estimate", "se": "SE", "p": "p"}), max_rows=80, appendix=True)
    _findings(ctx, result)


def _findings(ctx: StageContext, result: Result) -> None:
    """Key findings: the strongest control on Kd (slope with CI), the most and least mobile metal (IQR), the
    SEM fit (CI of RMSEA); limitation on the fit when it misses the cut-offs."""
    o, out, fit = ctx.options, ctx.out, result.sem_fit
    drv = result.kd_drivers
    if drv is not None and drv["beta_std"].notna().any():
        r = drv.loc[drv["beta_std"].abs().idxmax()]
        if r.beta_p < o.alpha:
            phrase = cm.variable_phrase(r.variable)
            out.finding(f"{phrase[0].upper() + phrase[1:]} is the strongest control on how {r.metal} "
                        f"partitions between {o.solid_medium} and {o.water_medium}: log10 Kd changes by "
                        f"{r.slope:+.3f} per {cm.variable_unit(r.variable)} (95 % CI {r.slope_ci_low:+.3f} to {r.slope_ci_high:+.3f}; "
                        f"standardized β = {r.beta_std:.2f}, adjusted R² {r.r2_adj:.2f}).",
                        importance=0.55, refs=[ref_id("fig", "kd_drivers"), ref_id("tbl", "kd_drivers")])
            out.conclusion(f"{phrase[0].upper() + phrase[1:]} controls how {r.metal} partitions between "
                           f"{o.solid_medium} and {o.water_medium} (log10 Kd {r.slope:+.3f} per "
                           f"{cm.variable_unit(r.variable)}, 95 % CI {r.slope_ci_low:+.3f} to {r.slope_ci_high:+.3f}); "
                           "the structural equation model tells the same story but fits only approximately, so its "
                           "paths are descriptive.")
    if result.kd_summary is not None:
        a = result.kd_summary[result.kd_summary["group"] == "all"].sort_values("median")
        lo, hi = a.iloc[0], a.iloc[-1]
        out.finding(f"{lo['metal']} is the most mobile metal between {o.solid_medium} and {o.water_medium} (median "
                    f"log10 Kd {lo['median']:.2f}, interquartile range {lo['p25']:.2f}-{lo['p75']:.2f}) and "
                    f"{hi['metal']} the most retained ({hi['median']:.2f}, {hi['p25']:.2f}-{hi['p75']:.2f}).",
                    importance=0.45, refs=[ref_id("tbl", "kd_by_group")])
    if fit is not None and fit.ok:
        fv = fit.fit.set_index("index")["value"]
        good = fv["CFI"] >= 0.95 and fv["RMSEA"] <= 0.06
        out.finding(f"The structural equation model of the {fit.n} paired sites fits "
                    f"{'well' if good else 'only approximately'} (CFI {fv['CFI']:.3f}, RMSEA {fv['RMSEA']:.3f}, "
                    f"90 % CI {fv['RMSEA_ci90_lower']:.3f}-{fv['RMSEA_ci90_upper']:.3f})"
                    + ("." if good else ", so its paths describe co-variation between the media rather than "
                       "confirmed pathways."), importance=0.35, refs=[ref_id("tbl", "sem_fit")])
        if not good:
            out.limitation(f"The cross-media structural equation model misses the conventional fit cut-offs (CFI "
                           f"{fv['CFI']:.3f}, RMSEA {fv['RMSEA']:.3f}); its path coefficients are descriptive.")
