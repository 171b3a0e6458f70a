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
    site_sem = cm.site_table(data, log10=o.sem_log10)
    r.sem_model = o.sem_model or cm.default_sem_model(site_sem, media=data.media, metals=data.metals)
    if o.sem_refine:
        r.sem_fit, r.sem_steps = sem.refine_sem(site_sem, r.sem_model, threshold=o.sem_refine_threshold)
    else:
        r.sem_fit = sem.fit_sem(site_sem, r.sem_model)
    return r


def report(ctx: StageContext, result: Result) -> None:
    """The crossmedia section: methods, Kd tables and figures, drivers, SEM fit, estimates and path diagram."""
    o, data, out = ctx.options, ctx.data, ctx.out
    if result.skipped:
        out.markdown(f"This analysis was not run: {result.skipped}.")
        return
    out.markdown(cm.methods_text(solid_medium=o.solid_medium, water_medium=o.water_medium, drivers=result.drivers,
                                 sem_log10=o.sem_log10, sem_refine=o.sem_refine, threshold=o.sem_refine_threshold,
                                 alpha=o.alpha, n_sites=result.n_sites, include_kd=result.has_kd))
    if not result.has_kd:
        out.markdown(f"The region has no {o.solid_medium}-{o.water_medium} pair (media: {', '.join(data.media)}), so "
                     "partition coefficients are not computed; only the structural equation model is reported.")
    else:
        _report_kd(ctx, result)
    _report_sem(ctx, result)


def _report_kd(ctx: StageContext, result: Result) -> None:
    o, out = ctx.options, ctx.out
    kd, summary, tests, alpha = result.kd, result.kd_summary, result.kd_tests, o.alpha
    out.table("kd", kd[["site_id", "metal", "kd", "log10_kd", "group"]],
              "Partition coefficient per site and metal (Wu et al. 2025 scale: Cs in mg/kg over Cw in µg/L, × 100).",
              in_report=False)
    out.table("kd_summary", summary,
              f"log10 Kd of each metal by group and over all sites ({o.solid_medium}/{o.water_medium}); the last "
              "column counts Kd values involving a non-detect (approximate).",
              display=summary.assign(group=summary["group"].astype(str).str.replace("_", " "))[
                  ["metal", "group", "n", "median_kd", "mean", "sd", "median", "p25", "p75", "n_non_detect"]
              ].rename(columns={"metal": "Metal", "group": "Group", "n": "n",
                                "median_kd": "Median Kd ((mg/kg)/(µg/L) × 100)", "mean": "Mean log10 Kd", "sd": "SD",
                                "median": "Median log10 Kd", "p25": "P25", "p75": "P75",
                                "n_non_detect": "Non-detect pairs"}), max_rows=60)
    out.figure("kd_boxplot", cm.kd_boxplot(kd), f"Distributions of log10 Kd ({o.solid_medium}/{o.water_medium}, Wu et "
               "al. 2025 scale) by group; boxes span the quartiles, whiskers 1.5 IQR, points beyond them are single "
               "sites.")
    sig = []
    if tests["n_groups"].max() >= 2:
        out.table("kd_group_tests", tests, f"Kruskal-Wallis tests of log10 Kd differences between groups; p < {alpha:g} "
                  "indicates that at least one group differs.",
                  display=tests.rename(columns={"metal": "Metal", "n": "Sites", "n_groups": "Groups"}))
        sig = tests.loc[tests["p"] < alpha, "metal"].tolist()
    allg = summary[summary["group"] == "all"].sort_values("median")
    lo, hi = allg.iloc[0], allg.iloc[-1]
    out.markdown(
        f"**Results: partitioning.** Median log10 Kd ranged from {lo['median']:.2f} for {lo['metal']} (weakest "
        f"affinity for {o.solid_medium}, most mobile) to {hi['median']:.2f} for {hi['metal']} (order: "
        f"{' < '.join(allg['metal'])}). "
        + (f"Kd differed between groups (Kruskal-Wallis p < {alpha:g}) for {', '.join(sig)}." if sig else
           "No metal's Kd differed significantly between groups." if tests["n_groups"].max() >= 2 else ""))
    drv = result.kd_drivers
    if drv is None:
        out.markdown("No numeric water-quality or sediment variables are available, so Kd drivers are not analysed.")
        return
    out.table("kd_drivers", drv,
              f"Spearman correlations of log10 Kd with water-quality and {o.solid_medium} variables, and the "
              "standardized coefficients (beta) of a multiple regression of log10 Kd on all of them (both sides "
              "z-scored); VIF: variance inflation factor; R² adj: adjusted R² of the metal's regression.",
              display=drv.assign(variable=drv["variable"].map(cm.variable_label))[
                  ["metal", "variable", "n", "spearman_rho", "spearman_p", "beta_std", "beta_p", "vif", "r2_adj"]
              ].rename(columns={"metal": "Metal", "variable": "Variable", "n": "Sites", "spearman_rho": "Spearman ρ",
                                "spearman_p": "p (ρ)", "beta_std": "β (standardized)", "beta_p": "p (β)",
                                "vif": "VIF", "r2_adj": "R² adj"}), max_rows=80)
    out.figure("kd_drivers_spearman", cm.drivers_heatmap(drv, value="spearman_rho", p="spearman_p", alpha=alpha,
                                                         title="Spearman ρ"),
               f"Spearman correlation of log10 Kd with each variable; * p < {alpha:g}, ** p < {alpha / 5:g}.",
               width="80%")
    out.figure("kd_drivers_beta", cm.drivers_heatmap(drv, value="beta_std", p="beta_p", alpha=alpha,
                                                     title="standardized β"),
               f"Standardized regression coefficients of log10 Kd on all variables jointly; * p < {alpha:g}, "
               f"** p < {alpha / 5:g}.", width="80%")
    top = drv.loc[drv["beta_std"].abs().groupby(drv["metal"], sort=False).idxmax().dropna()]
    lines = [f"- {r.metal}: {cm.variable_label(r.variable)} (β = {r.beta_std:.2f}, "
             f"{'p < 0.001' if r.beta_p < 0.001 else f'p = {r.beta_p:.2g}'}; Spearman ρ = {r.spearman_rho:.2f}, "
             f"{'p < 0.001' if r.spearman_p < 0.001 else f'p = {r.spearman_p:.2g}'}; R² adj of the regression = "
             f"{r.r2_adj:.2f})" for r in top.itertuples()]
    out.markdown("**Results: controls on partitioning.** For each metal, the variable with the largest absolute "
                 "standardized coefficient:\n\n" + "\n".join(lines))


def _report_sem(ctx: StageContext, result: Result) -> None:
    o, out = ctx.options, ctx.out
    fit, model_txt, steps, alpha = result.sem_fit, result.sem_model, result.sem_steps, o.alpha
    out.markdown(("The model was specified in the region's parameters" if o.sem_model else
                  "No model was given in the parameters; the default model (one latent system per medium measured by "
                  "its metals, chained in media order) was fitted")
                 + f" ({'log10 concentrations, ' if o.sem_log10 else ''}z-scored, N = {fit.n} sites with complete "
                 "data):\n\n```\n" + model_txt.strip() + "\n```"
                 + ("" if fit.model.strip() == model_txt.strip() else
                    "\n\nThe model after refinement, on which the estimates below are based:\n\n```\n"
                    + fit.model.strip() + "\n```"))
    if steps is not None:
        out.table("sem_refinement", steps,
                  f"Model refinement: each step drops the indicator with the smallest |standardized loading| below "
                  f"{o.sem_refine_threshold:g} and refits; fit indices after the step. AIC compares models of the same "
                  "observed variables only (it changes when an indicator leaves the data).",
                  display=steps[["step", "action", "std_loading", "chi2", "df", "CFI", "TLI", "RMSEA", "SRMR",
                                 "AIC"]].rename(columns={"step": "Step", "action": "Action",
                                                         "std_loading": "Std. loading", "chi2": "χ²"}))
    if not fit.ok:
        out.markdown(f"**The structural equation model could not be reported.** {fit.message[0].upper() + fit.message[1:]}.")
        out.table("sem_estimates", pd.DataFrame(columns=["lhs", "op", "rhs", "estimate", "std_estimate", "se", "p"]),
                  "SEM estimates (none: the model was not estimated).", in_report=False)
        out.table("sem_fit", pd.DataFrame({"index": ["estimated"], "value": [0.0]}),
                  "SEM fit (none: the model was not estimated).", in_report=False)
        out.limitation(f"The structural equation model could not be estimated: {fit.message}.")
        return
    est = fit.estimates
    out.table("sem_estimates", est,
              "SEM estimates: =~ loading of an indicator on a latent system, ~ regression (lhs on rhs), ~~ "
              "(co)variance (between two variables: residual covariance, standardized as a residual correlation); "
              "estimate on z-scored inputs, std_estimate fully standardized (lavaan's std.all); SE and Wald p of "
              "the estimate (SE 0 and no p for fixed parameters).",
              display=est[~((est["op"] == "~~") & (est["lhs"] == est["rhs"]))].rename(
                  columns={"estimate": "Estimate", "std_estimate": "Std. estimate", "se": "SE"}), max_rows=80)
    fv = fit.fit.set_index("index")["value"]
    out.table("sem_fit", fit.fit,
              "Fit of the SEM (ML): χ² test of exact fit, CFI, TLI, RMSEA with 90% CI and p of close fit (RMSEA ≤ "
              "0.05), SRMR, AIC and BIC (conditional on observed predictors, as lavaan); conventional cut-offs CFI, "
              "TLI ≥ 0.95, RMSEA ≤ 0.06, SRMR ≤ 0.08.",
              display=fit.fit.rename(columns={"index": "Index", "value": "Value"}))
    verdict = {k: (fv[k] >= c if op == ">=" else fv[k] <= c) for k, (op, c) in sem.CUTOFFS.items()}
    met = [k for k, ok in verdict.items() if ok]
    unmet = [k for k, ok in verdict.items() if not ok]
    out.markdown(
        f"**Results: SEM fit.** χ² = {fv['chi2']:.1f} (df = {fv['df']:.0f}, p = {fv['p']:.3g}), CFI = {fv['CFI']:.3f}, "
        f"TLI = {fv['TLI']:.3f}, RMSEA = {fv['RMSEA']:.3f} (90% CI {fv['RMSEA_ci90_lower']:.3f}-"
        f"{fv['RMSEA_ci90_upper']:.3f}), SRMR = {fv['SRMR']:.3f}. "
        + ("All four indices meet the conventional cut-offs." if not unmet else
           f"{', '.join(unmet)} {'does' if len(unmet) == 1 else 'do'} not meet the conventional cut-offs"
           + (f" ({', '.join(met)} {'does' if len(met) == 1 else 'do'})" if met else "")
           + "; the model describes the cross-media structure only approximately and its path coefficients should be "
           "read with that in mind.")
        + ("" if not fit.warnings else " Note: " + "; ".join(fit.warnings) + "."))
    lab = cm.sem_labels(fit)
    paths = est[est["op"] == "~"]
    out.markdown("**Results: structural paths** (standardized): " + "; ".join(
        f"{cm.variable_label(r.rhs) if r.rhs in fit.observed else lab[r.rhs]} → "
        f"{cm.variable_label(r.lhs) if r.lhs in fit.observed else lab[r.lhs]} β = {r.std_estimate:.2f} "
        f"({'p < 0.001' if r.p < 0.001 else f'p = {r.p:.2g}'})" for r in paths.itertuples())
        + ". Standardized coefficients above 1 in absolute value can arise when correlated predictors act on the "
        "same variable; they are not errors but should not be read as correlations.")
    out.figure("sem_path_diagram", sem.path_diagram(fit, alpha=alpha, labels=lab),
               "Path diagram of the SEM: ellipses are latent geochemical systems, boxes observed variables. Arrows "
               "carry standardized estimates: blue positive, red negative, width proportional to magnitude, opaque "
               f"p < {alpha:g}, half-transparent p < 0.10, faint otherwise (* p < {alpha:g}); dashed curves are "
               "covariances.")
    out.finding(f"The structural equation model of the paired sites has CFI = {fv['CFI']:.3f} and RMSEA = "
                f"{fv['RMSEA']:.3f} (90% CI {fv['RMSEA_ci90_lower']:.3f}-{fv['RMSEA_ci90_upper']:.3f}, N = {fit.n}).",
                importance=0.5, refs=("sem_fit",))
