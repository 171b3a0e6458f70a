"""Stage ``mobility``: metal mobility: sequential-extraction fractions, RAC and a theory-guided mobility model.

Composes :mod:`hmlib.mobility`: fractions and recovery, fractionation indices and RAC, a theory-guided
XGBoost model of the mobile share (validated by spatial-block cross-validation and interpreted only
where it has skill), mobilization risk and the soil-carbon scenario. See :mod:`hmlib.stages.base`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from pydantic import Field, field_validator

from .. import mobility as mb
from ..context import StageContext
from ..io import SUBSTITUTION_FACTORS
from ..params import StageOptions
from .base import StageSpec, needs_option

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]


class Options(StageOptions):
    """Options of the ``mobility`` stage (``stages: mobility:`` in params)."""

    fractions: str | None = Field(default=None, description="CSV of sequential-extraction fractions "
                                  "(long format: sample_id, metal, fraction, value, unit)")
    scheme: Literal["bcr", "tessier"] = Field(default="bcr", description="extraction scheme of the fractions file")
    medium: str | None = Field(default=None, description="medium whose totals the fractions belong to (default: first)")
    recovery_tolerance_percent: float = Field(default=20.0, gt=0, le=100,
                                              description="accepted |sum of fractions / total - 1| in percent")
    exclude_bad_recovery: bool = Field(default=False, description="drop sample-metal pairs outside the tolerance")
    mobile_fraction: Literal["F1", "F1+F2"] = Field(default="F1", description="fractions counted as mobile")
    features: list[str] = Field(default_factory=list,
                                description="numeric sample covariates used as predictors (empty: all numeric)")
    soc_feature: str | None = Field(default=None, description="covariate holding SOC or OM (scenario)")
    ph_feature: str | None = Field(default=None, description="covariate holding soil pH (theory constraint)")
    include_total: bool = Field(default=True, description="use the total concentration as a predictor")
    theory_constraints: bool = Field(default=True, description="apply the pH and total-concentration signs from theory")
    monotone_constraints: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="metal -> {feature: -1|0|1}; overrides the theory signs")
    n_splits: int = Field(default=5, ge=2, le=20, description="cross-validation folds")
    cv_scheme: Literal["spatial_block", "random"] = Field(
        default="spatial_block", description="cross-validation folds: whole spatial blocks (k-means clusters of "
                                             "the coordinates) or random samples")
    n_spatial_blocks: int = Field(default=20, ge=2, le=200, description="number of spatial blocks of the folds")
    n_estimators: int = Field(default=300, ge=10, le=5000, description="boosting rounds of the mobility model")
    max_depth: int = Field(default=3, ge=1, le=10, description="tree depth of the mobility model")
    learning_rate: float = Field(default=0.05, gt=0, le=1, description="shrinkage of the mobility model")
    min_samples: int = Field(default=30, ge=10, description="metals with fewer samples are not modelled")
    soc_increase_per_year: float = Field(default=0.004, ge=0, le=0.1,
                                         description="relative SOC increase per year (4 per mille is 0.004)")
    horizon_years: int = Field(default=26, ge=1, le=200, description="years of compounding SOC increase")
    risk_threshold_mg_kg: dict[str, float] = Field(
        default_factory=dict, description="metal -> threshold of the mobile concentration (mg/kg)")
    risk_quantile: float = Field(default=0.75, gt=0, lt=1,
                                 description="for metals without a threshold: this quantile of today's mobile concentration")
    grid_total_columns: dict[str, str] = Field(default_factory=dict,
                                               description="metal -> grid column with its total concentration (mg/kg)")
    known_truth: str | None = Field(default=None, description="generated demo regions only: CSV of the generator's "
                                    "true effects (metal, feature, true_effect_pp_per_unit, true_sign), compared "
                                    "with what the model recovered")

    @field_validator("monotone_constraints")
    @classmethod
    def _signs(cls, v: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for metal, cons in v.items():
            for feat, s in cons.items():
                if s not in (-1, 0, 1):
                    raise ValueError(f"constraint of {metal}.{feat} must be -1, 0 or 1, got {s!r}")
        return v

    @field_validator("risk_threshold_mg_kg")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        for metal, t in v.items():
            if not t > 0:
                raise ValueError(f"risk threshold of {metal} must be > 0 mg/kg, got {t}")
        return v


SPEC = StageSpec(
    name="mobility",
    notebook="90_mobility.ipynb",
    title="Metal mobility: sequential-extraction fractions, RAC and a theory-guided mobility model",
    options=Options,
    reads=(),
    writes=(),
    requires=(needs_option("fractions", "sequential-extraction fractions file"),),
)


@dataclass
class Result:
    """What the mobility stage computed.

    Attributes
    ----------
    medium : the medium the fractions belong to.
    features : covariate predictors used.
    fractions : the fractions as read (scheme labels, mg/kg).
    recovery : sum of fractions against the total per sample-metal pair (:func:`hmlib.mobility.recovery_check`).
    indices : shares, mobility factors, RAC and RSP per pair, with total and recovery.
    rac : samples per metal and RAC class.
    models : :class:`hmlib.mobility.MobilityResults` (None when no metal could be modelled).
    thresholds : mobilization threshold per metal (or None).
    scenario : soil-carbon scenario summary per metal, domain and area (or None).
    scenario_cells : scenario predictions per sample and grid cell (or None).
    scenario_notes : metal -> why a domain or metal was left out of the scenario.
    truth : generated demo regions: recovered against true effects (:func:`hmlib.mobility.effect_truth_recovery`).
    """

    medium: str
    features: list
    fractions: pd.DataFrame
    recovery: pd.DataFrame
    indices: pd.DataFrame
    rac: pd.DataFrame
    models: mb.MobilityResults | None
    thresholds: pd.DataFrame | None = None
    scenario: pd.DataFrame | None = None
    scenario_cells: pd.DataFrame | None = None
    scenario_notes: dict = field(default_factory=dict)
    truth: pd.DataFrame | None = None

    @property
    def skill(self) -> pd.DataFrame | None:
        """Cross-validated skill of the models with and without constraints (None without models)."""
        return None if self.models is None else self.models.comparison


def check(ctx: StageContext) -> list[str]:
    """Problems of the options against the region's data: files, medium, predictor and grid columns."""
    o, p, data = ctx.options, ctx.params, ctx.data
    key = "stages.mobility"
    problems = []
    medium = o.medium or data.media[0]
    if medium not in data.media:
        return [f"{key}.medium: got {medium!r}; expected one of {', '.join(data.media)}"]
    for name in ("fractions", "known_truth"):
        f = getattr(o, name)
        if f and not p.resolve(f).is_file():
            problems.append(f"{key}.{name}: got {f!r}; expected an existing CSV file")
    sites = data.sites(medium)
    try:
        feats = mb.resolve_features(o, p.data.covariates, p.data.categorical, sites)
    except ValueError:
        numeric = [c for c in p.data.covariates if c in sites.columns and pd.api.types.is_numeric_dtype(sites[c])]
        problems.append(f"{key}.features: got {list(o.features)}; expected numeric sample covariates "
                        f"({', '.join(numeric)})")
        feats = []
    for name in ("ph_feature", "soc_feature"):
        c = getattr(o, name)
        if c and feats and c not in feats:
            problems.append(f"{key}.{name}: got {c!r}; expected one of the predictors ({', '.join(feats)})")
    if o.grid_total_columns:
        cols = set(data.grid.columns) if data.grid is not None else set()
        bad = {m: c for m, c in o.grid_total_columns.items() if c not in cols}
        if bad:
            problems.append(f"{key}.grid_total_columns: got {bad}; expected columns of the prediction grid")
    return problems


def run(ctx: StageContext) -> Result:
    """Fractions, recovery, indices, RAC, the mobility models (skill first), scenario and known-truth check."""
    o, p, data = ctx.options, ctx.params, ctx.data
    medium = o.medium or data.media[0]
    sites = data.sites(medium)
    features = mb.resolve_features(o, p.data.covariates, p.data.categorical, sites)
    frac = mb.read_fractions(p.resolve(o.fractions), scheme=o.scheme, known_samples=list(sites.index),
                             known_metals=data.metals, nondetect_factor=SUBSTITUTION_FACTORS[p.non_detects.substitution],
                             encoding=p.data.encoding)
    bcr = mb.to_bcr(frac, scheme=o.scheme)
    rec = mb.recovery_check(bcr, mb.totals_long(data.wide(medium)), tolerance_percent=o.recovery_tolerance_percent)
    ind = mb.indices_with_recovery(bcr, rec, exclude_bad=o.exclude_bad_recovery)
    res = mb.fit_all(ind, sites, features=features, options=o, seed=ctx.seed)
    out = Result(medium=medium, features=features, fractions=frac, recovery=rec, indices=ind, rac=mb.rac_summary(ind),
                 models=res if res.models else None)
    if res.models and o.soc_feature and o.soc_feature in features:
        out.thresholds = mb.risk_thresholds(res, options=o)
        out.scenario, out.scenario_cells, out.scenario_notes = mb.scenario_tables(
            res, sites=sites, grid=data.grid, options=o, thresholds=out.thresholds,
            grid_area_column=p.data.group_column)
    if o.known_truth and res.models:
        out.truth = mb.effect_truth_recovery(res, mb.read_effect_truth(p.resolve(o.known_truth)))
    return out


def report(ctx: StageContext, result: Result) -> None:
    """The mobility section: methods, recovery, fractionation and RAC, model skill before interpretation,
    known truth of a demo, exploratory importance, scenario and results."""
    o, out = ctx.options, ctx.out
    res = result.models
    out.markdown("## Methods")
    out.markdown(mb.methods_text(scheme=o.scheme, tolerance_percent=o.recovery_tolerance_percent,
                                 mobile_fraction=o.mobile_fraction, features=result.features,
                                 include_total=o.include_total, n_splits=o.n_splits, rate_per_year=o.soc_increase_per_year,
                                 years=o.horizon_years, soc_feature=o.soc_feature, risk_quantile=o.risk_quantile,
                                 validation=res.validation if res is not None else None))
    out.markdown("## Fractionation and risk assessment code")
    rec = result.recovery
    bad = rec[rec["status"] != "ok"]
    out.markdown(
        f"**Input and recovery** ({out.ref('fraction_recovery')}). {result.fractions['sample_id'].nunique()} samples and "
        f"{result.fractions['metal'].nunique()} metals ({len(rec)} sample-metal pairs, {o.scheme.upper()} scheme) were "
        f"read. The median recovery was {rec['recovery_percent'].median():.1f} %; {len(bad)} "
        f"pair{'s' if len(bad) != 1 else ''} fall outside 100 ± {o.recovery_tolerance_percent:g} % or have no total "
        + ("and were excluded from what follows." if o.exclude_bad_recovery else "and are kept but listed."))
    out.table("fraction_recovery", rec,
              f"Sample-metal pairs whose sum of fractions departs from the total concentration by more than "
              f"{o.recovery_tolerance_percent:g} % (or lack a total). The full table lists every pair.",
              display=bad.rename(columns={"sample_id": "Sample", "metal": "Metal", "sum_mg_kg": "Sum of fractions (mg/kg)",
                                          "total_mg_kg": "Total (mg/kg)", "recovery_percent": "Recovery (%)",
                                          "status": "Status"}).drop(columns=["within_tolerance"]),
              appendix=len(bad) > 10)
    out.table("fractionation", result.indices,
              "Mean shares of the BCR fractions (F1 acid-soluble/exchangeable, F2 reducible, F3 oxidizable, "
              "F4 residual; percent of their sum), mean mobility factor MF = 100 (F1+F2)/S, median RAC and median "
              "RSP = (F1+F2+F3)/F4 per metal. The full table gives every sample.",
              display=mb.fractionation_summary(result.indices))
    out.figure("fractions_stacked", mb.plot_fractions(result.indices),
               "Fractionation per metal: mean shares of F1-F4 (top) and each sample's fractions, sorted by the "
               "F1 share (bottom panels).")
    rac = result.rac
    rac_disp = rac.pivot_table(index="metal", columns="rac_class", values="share_percent", sort=False)
    rac_disp = rac_disp.reindex(columns=list(dict.fromkeys(rac["rac_class"]))).reset_index()
    rac_disp.columns = ["Metal"] + [f"{c} (% of samples)" for c in rac_disp.columns[1:]]
    out.table("rac", rac, "Risk assessment code: share of samples per class (RAC = F1 share: no risk < 1 %, low "
              "1-10 %, medium > 10-30 %, high > 30-50 %, very high > 50 %) [@perin1985; @jain2004].", display=rac_disp)
    out.figure("rac_classes", mb.plot_rac(rac), "Share of samples in each RAC class per metal.", width="85%")
    out.markdown(mb.fractionation_text(result.indices, result.rac,
                                       refs=f"{out.ref('fractionation')}, {out.ref('fractions_stacked', 'fig')}, "
                                            f"{out.ref('rac')}, {out.ref('rac_classes', 'fig')}"))
    out.markdown("## Mobility model: skill, drivers and the soil-carbon scenario")
    if res is None:
        out.markdown("No metal could be modelled (too few samples with fractions and predictors).")
    else:
        _report_models(ctx, result)
    _findings(ctx, result)


def _report_models(ctx: StageContext, result: Result) -> None:
    o, p, out = ctx.options, ctx.params, ctx.out
    res = result.models
    if res.skipped:
        out.markdown("Metals not modelled: " + "; ".join(f"{m}: {r}" for m, r in res.skipped.items()) + ".")
    comp = res.comparison
    out.table("mobility_model_comparison", comp,
              f"Skill first: {res.validation} of the mobile-share model ({o.mobile_fraction} share, percent) with "
              "and without monotone constraints (same folds); the last column is the largest rise (percent points) "
              "of the prediction along a constrained feature in the wrong direction, on a grid with the other "
              "features fixed (0 means the model follows theory).",
              display=comp.assign(constraints=comp["constraints"].map(mb.constraints_label)).rename(
                  columns={"metal": "Metal", "variant": "Model", "r2_mean": "CV R²", "r2_sd": "CV R² SD",
                                           "rmse_mean": "CV RMSE (pp)", "mae_mean": "CV MAE (pp)",
                                           "constraints": "Constraints",
                                           "max_theory_violation_pp": "Largest step against theory (pp)"}))
    out.table("mobility_cv", res.cv_folds, "Per-fold cross-validation metrics.", in_report=False)
    out.markdown(mb.skill_text(comp, validation=res.validation, no_skill=res.no_skill,
                               ref=out.ref("mobility_model_comparison")))
    if res.no_skill:
        out.callout(f"{', '.join(res.no_skill)}: the cross-validated R² is not above 0, so the model has no "
                    "transferable skill; its predictors are not interpreted and its scenario is not shown.",
                    kind="warning", title="No skill")
    if result.truth is not None and len(result.truth):
        t = result.truth
        ph = t[t["feature"] == o.ph_feature] if o.ph_feature else t.iloc[0:0]
        shown = ph if len(ph) else t
        out.table("mobility_truth_recovery", t,
                  "Check against the generator (generated data only): the effect of "
                  + ("soil pH" if len(ph) else "each predictor") + " on the mobile share recovered by the models "
                  "(partial-dependence slope, percent points per unit) against the generator's true average marginal "
                  "effect; the sign is judged on the unconstrained model, which is free to find either sign. The full "
                  "table adds the other predictors.",
                  display=shown.assign(feature=lambda d: d["feature"].map(mb.feature_label)).rename(columns={
                      "metal": "Metal", "feature": "Predictor", "true_effect_pp_per_unit": "True effect (pp per unit)",
                      "true_sign": "True sign",
                      "recovered_unconstrained_pp_per_unit": "Recovered, unconstrained (pp per unit)",
                      "recovered_constrained_pp_per_unit": "Recovered, constrained (pp per unit)",
                      "sign_recovered": "Sign recovered"}))
        out.markdown(mb.truth_text(t, ph_feature=o.ph_feature, ref=out.ref("mobility_truth_recovery")))
    skilled = [m for m in res.models if m not in res.no_skill]
    imp = res.importance[res.importance["metal"].isin(skilled)]
    if len(imp):
        out.table("mobility_importance", imp,
                  "Feature importance of the constrained models with skill: mean absolute SHAP value (percent points "
                  "of mobile share) and, in brackets, the direction of the effect (sign of the Spearman correlation "
                  "between a feature and its SHAP values); * marks a monotone constraint.",
                  display=mb.importance_display(imp))
        out.figure("mobility_shap", mb.plot_shap(res, metals=skilled),
                   "SHAP values of the constrained models with skill: each point is a sample; the colour shows the "
                   "feature value (rank); features with a monotone constraint are marked (+) or (-).", appendix=True)
        out.markdown(mb.drivers_text(imp, ref=f"{out.ref('mobility_importance')}; each sample's contributions in "
                                               f"{out.ref('mobility_shap', 'fig')}"))
    out.table("mobility_effects", res.effects, "Sign and range of the partial dependence of the mobile share on "
              "each feature, constrained and unconstrained models.", in_report=False)
    if not res.monotonicity.empty:
        out.table("mobility_monotonicity", res.monotonicity, "Monotonicity check of the constraints.", in_report=False)
    if result.scenario is None:
        out.markdown("The soil-carbon scenario was not run: it needs fitted models and a SOC or organic-matter "
                     "covariate among the predictors.")
        return
    scen, cells = result.scenario, result.scenario_cells
    if result.scenario_notes:
        out.markdown("Scenario notes: " + "; ".join(f"{m}: {r}" for m, r in result.scenario_notes.items()) + ".")
    if scen.empty:
        return
    domain = "grid" if (scen["domain"] == "grid").any() else "samples"
    where = "on the prediction grid" if domain == "grid" else "at the samples (no grid with all predictors)"
    cols = ["metal"] + [
        "n", "threshold_mg_kg", "share_mean_base_percent", "share_mean_scenario_percent", "delta_share_mean_pp",
        "at_risk_base_percent", "at_risk_scenario_percent", "soc_beyond_training_percent"]
    out.table("mobility_scenario", scen,
              f"Soil-carbon scenario: SOC raised by {100 * o.soc_increase_per_year:g} % per year for "
              f"{o.horizon_years} years; mean predicted mobile share, its change (percent points), the share of "
              "samples (or grid cells) whose mobile concentration exceeds the threshold T, today and after the "
              "scenario, and the share whose scenario SOC exceeds the largest SOC of the training data; "
              f"shown {where} for the whole region (the full table adds each area and the other domain).",
              display=scen.loc[(scen["domain"] == domain) & (scen["area"] == "whole region"), cols].rename(columns={
                  "metal": "Metal", "area": "Area", "threshold_mg_kg": "T (mg/kg)",
                  "share_mean_base_percent": "Share today (%)",
                  "share_mean_scenario_percent": f"Share {o.horizon_years} yr (%)",
                  "delta_share_mean_pp": "Change (pp)", "at_risk_base_percent": "At risk today (%)",
                  "at_risk_scenario_percent": f"At risk {o.horizon_years} yr (%)",
                  "soc_beyond_training_percent": "SOC > training (%)"}))
    out.table("mobility_predictions", cells, "Predictions per sample and grid cell.", in_report=False)
    cu = p.data.coordinate_unit
    crs = p.data.crs
    out.figure("mobility_map", mb.plot_maps(cells, "share_base_percent",
                                            label=f"Predicted mobile share today (%), {where}", coordinate_unit=cu,
                                            domain=domain, crs=crs),
               f"Predicted mobile ({o.mobile_fraction}) share of each metal with a skilled model today, {where}.")
    out.figure("mobility_scenario_change",
               mb.plot_maps(cells, "delta_share_pp", label=f"Change of the mobile share after {o.horizon_years} years (pp)",
                            coordinate_unit=cu, diverging=True, domain=domain, crs=crs),
               f"Change of the predicted mobile share (percent points) after {o.horizon_years} years of "
               f"{100 * o.soc_increase_per_year:g} % per year SOC increase, {where}; red: more mobile.")
    out.markdown(mb.scenario_text(scen, horizon_years=o.horizon_years, domain=domain, comparison=res.comparison,
                                  refs=f"{out.ref('mobility_scenario')}, {out.ref('mobility_map', 'fig')}, "
                                       f"{out.ref('mobility_scenario_change', 'fig')}"))


def _findings(ctx: StageContext, result: Result) -> None:
    """Key findings (highest mean RAC with its spread; the model's held-out skill; the scenario's change) and
    limitations."""
    o, out = ctx.options, ctx.out
    ind = result.indices
    g = ind.groupby("metal")["rac_percent"]
    top = g.mean().idxmax()
    q = g.quantile([0.25, 0.75]).unstack()
    out.finding(f"{top} is the most mobile metal: its acid-soluble share (RAC) averages {g.mean()[top]:.1f} % "
                f"(interquartile range {q.loc[top, 0.25]:.1f}-{q.loc[top, 0.75]:.1f} % over "
                f"{int(g.size()[top])} samples).", importance=0.4, refs=["tbl-fractionation"])
    out.conclusion(f"{top} is the most mobile metal (mean acid-soluble share {g.mean()[top]:.1f} %, interquartile "
                   f"range {q.loc[top, 0.25]:.1f}-{q.loc[top, 0.75]:.1f} %): a larger part of its total "
                   "concentration is available to plants and water than for any other metal.")
    res = result.models
    if res is not None and not res.comparison.empty:
        c = res.comparison[res.comparison["variant"] == "constrained"]
        sk = c[~c["metal"].isin(res.no_skill)]
        if len(sk):
            b, w = sk.loc[sk["r2_mean"].idxmax()], c.loc[c["r2_mean"].idxmin()]
            out.finding(f"Soil properties predict the mobile share of {b.metal} in held-out spatial blocks with "
                        f"cross-validated R² {b.r2_mean:.2f} (fold SD {b.r2_sd:.2f})"
                        + (f"; for {w.metal} the skill is {'negligible' if w.r2_mean < 0.1 else 'weaker'} "
                           f"({w.r2_mean:.2f} ± {w.r2_sd:.2f})." if w.metal != b.metal else "."),
                        importance=0.35, refs=["tbl-mobility-model-comparison"])
    scen = result.scenario
    if scen is not None and not scen.empty:
        w = scen[scen["area"] == "whole region"]
        dom = "grid" if (w["domain"] == "grid").any() else "samples"
        w = w[w["domain"] == dom]
        if len(w):
            r = w.loc[w["delta_share_mean_pp"].abs().idxmax()]
            out.finding(f"Raising soil carbon by {100 * o.soc_increase_per_year:g} % a year for {o.horizon_years} "
                        f"years changes the mean mobile share of {r.metal} by {r.delta_share_mean_pp:+.2f} percent "
                        f"points and the share of {'cells' if dom == 'grid' else 'samples'} at risk from "
                        f"{r.at_risk_base_percent:.1f} to {r.at_risk_scenario_percent:.1f} % (a model prediction; "
                        f"{r.soc_beyond_training_percent:.0f} % of them leave the range of the training data).",
                        importance=0.3, refs=["tbl-mobility-scenario"])
    out.limitation("Sequential-extraction fractions are operationally defined; the mobility model predicts the "
                   "extractable share, not a measured flux, and tree models do not extrapolate beyond the "
                   "training range of soil carbon.")
