"""Stage ``ml_drivers``: machine-learning risk drivers (XGBoost, SHAP) judged by spatial-block validation.

``run`` builds the target (an index of the indices stage's per-sample table, or a metal) and the
candidate drivers (sample covariates; the coordinates only as a separate spatial term), fits and
cross-validates the driver pipeline of :mod:`hmlib.ml` (random and spatial-block folds, inner
tuning folds that respect the blocks) and judges transferable skill on the spatial-block folds.
``report`` states the validation scheme and the skill before any interpretation; without skill it
reports no drivers and no map, and keeps the SHAP ranking in the appendix as exploratory. On a
generated demo region the recovered importance is compared with the generator's known truth.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from .. import ml
from ..context import StageContext
from ..outputs import ref_id
from ..params import StageOptions
from .base import Read, StageSpec

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]


class Options(StageOptions):
    """Options of the ``ml_drivers`` stage."""

    target: str = Field(default="PERI", description="an index of the indices table (PERI, or Igeo:Cd for one "
                                                     "metal's index), or a metal symbol (its concentration)")
    medium: str | None = Field(default=None, description="medium modelled; none: the region's first medium")
    predictors: list[str] = Field(default_factory=list, description="candidate drivers: sample covariates or metal "
                                                                     "symbols; empty: the region's covariates")
    spatial_term: bool = Field(default=False, description="also give the model the coordinates as a separate "
                                                          "spatial term, reported apart from the drivers")
    log_target: bool = Field(default=False, description="model log10 of the target (values must be positive)")
    fallback_metal: str | None = Field(default=None, description="metal modelled when the target index is not in "
                                                                 "the indices table; none: the first metal")
    correlation_threshold: float = Field(default=0.8, gt=0.0, le=1.0,
                                         description="absolute correlation at which candidates form a cluster")
    selection: Literal["gain_share", "top_k"] = Field(default="gain_share",
                                                      description="selection rule: gain_share or top_k")
    min_gain_share: float = Field(default=0.01, ge=0.0, lt=1.0, description="smallest gain share of a selected "
                                                                           "feature")
    top_k: int = Field(default=10, ge=1, description="largest number of selected features")
    n_folds: int = Field(default=5, ge=2, le=20, description="folds of the random and spatial-block validation")
    n_spatial_blocks: int = Field(default=20, ge=2, description="k-means clusters of the coordinates held out whole")
    n_search: int = Field(default=6, ge=1, le=60, description="hyperparameter combinations tried")
    rf_trees: int = Field(default=300, ge=10, description="trees of the comparison Random Forest")
    n_dependence: int = Field(default=3, ge=0, le=8, description="SHAP dependence plots (top drivers)")
    known_truth: str | None = Field(default=None, description="generated regions only: table of the covariates "
                                                              "the generator uses (covariate, in_generator, pathway)")


SPEC = StageSpec(
    name="ml_drivers",
    notebook="60_ml_drivers.ipynb",
    title="Machine-learning risk drivers: XGBoost, SHAP and spatial cross-validation",
    options=Options,
    reads=(Read("indices"),),
    writes=(),
    requires=(),
)


@dataclass
class Result:
    """What the ``ml_drivers`` stage computed.

    Attributes
    ----------
    data : the modelling table (:class:`hmlib.ml.DriverData`).
    analysis : the fitted, cross-validated and explained pipeline (None when skipped).
    grid_prediction : x, y, predicted (None unless the model has skill and the grid carries the drivers).
    grid_note : why there is no grid prediction (None when there is one).
    truth : recovered importance next to the generator's known truth (None unless given).
    skipped : why the model was not fitted (None when it was).
    """

    data: ml.DriverData
    analysis: ml.DriverAnalysis | None
    grid_prediction: pd.DataFrame | None
    grid_note: str | None
    truth: pd.DataFrame | None
    skipped: str | None

    @property
    def skill(self) -> ml.Skill | None:
        """Transferable skill of the interpreted model (spatial-block CV), None when skipped."""
        return None if self.analysis is None else self.analysis.skill

    @property
    def cv_summary(self) -> pd.DataFrame | None:
        """Reader's table of the cross-validated scores, None when skipped."""
        if self.analysis is None:
            return None
        return ml.cv_display(self.analysis.summary, unit_label=self.data.target_label)

    @property
    def drivers(self) -> pd.DataFrame | None:
        """The reported drivers (empty without transferable skill), None when skipped."""
        return None if self.analysis is None else self.analysis.drivers


def check(ctx: StageContext) -> list[str]:
    """Problems of the options against the region's data."""
    o, data = ctx.options, ctx.data
    out = []
    if o.medium is not None and o.medium not in data.media:
        out.append(f"stages.ml_drivers.medium: got {o.medium}; expected one of {', '.join(data.media)}")
    covs = list(ctx.params.data.covariates)
    for c in o.predictors:
        if c in ("x", "y"):
            out.append(f"stages.ml_drivers.predictors: got {c}; expected a covariate or metal (coordinates are not "
                       "drivers; set spatial_term instead)")
        elif c not in covs and c not in data.metals:
            out.append(f"stages.ml_drivers.predictors: got {c}; expected a covariate ({', '.join(covs) or 'none'}) "
                       f"or a metal ({', '.join(data.metals)})")
    if o.fallback_metal is not None and o.fallback_metal not in data.metals:
        out.append(f"stages.ml_drivers.fallback_metal: got {o.fallback_metal}; expected one of "
                   f"{', '.join(data.metals)}")
    if o.n_spatial_blocks <= o.n_folds:
        out.append(f"stages.ml_drivers.n_spatial_blocks: got {o.n_spatial_blocks}; expected more than n_folds "
                   f"({o.n_folds}), so that every training set spans several blocks for the inner tuning folds")
    if o.known_truth is not None and not ctx.params.resolve(o.known_truth).is_file():
        out.append(f"stages.ml_drivers.known_truth: got {o.known_truth}; expected an existing CSV file")
    return out


def run(ctx: StageContext) -> Result:
    """Assemble the data, fit and cross-validate the driver pipeline, judge skill, predict the grid if earned."""
    o, data = ctx.options, ctx.data
    indices = ctx.read_table("indices")
    ds = ml.assemble_dataset(data, target=o.target, medium=o.medium, predictors=o.predictors,
                             spatial_term=o.spatial_term, log_target=o.log_target, fallback_metal=o.fallback_metal,
                             indices=indices)
    if ds.skip_reason:
        return Result(data=ds, analysis=None, grid_prediction=None, grid_note=None, truth=None,
                      skipped=ds.skip_reason)
    sites = data.sites(ds.medium).loc[ds.frame.index]
    res = ml.analyse_drivers(ds, x=sites["x"], y=sites["y"], seed=ctx.seed, n_folds=o.n_folds,
                             n_spatial_blocks=o.n_spatial_blocks, correlation_threshold=o.correlation_threshold,
                             selection=o.selection, min_gain_share=o.min_gain_share, top_k=o.top_k,
                             n_search=o.n_search, rf_trees=o.rf_trees)
    grid, note = None, None
    need = ml.needed_predictors(res.fit, categorical=ds.categorical)
    if not res.map_allowed:
        note = "the model has no transferable skill"
    elif data.grid is None:
        note = "the region has no prediction grid"
    elif not set(need) <= set(data.grid.columns):
        miss = [ctx.params.data.covariate_label(c) for c in sorted(set(need) - set(data.grid.columns))]
        note = "the prediction grid lacks " + (", ".join(miss[:-1]) + " and " + miss[-1] if len(miss) > 1 else miss[0])
    else:
        pred = ml.predict_frame(res.fit, data.grid, numeric=ds.numeric, categorical=ds.categorical,
                                levels=res.levels)
        grid = data.grid[["x", "y"]].assign(predicted=pred)
    truth = None
    if o.known_truth:
        truth = ml.compare_with_truth(res.importance, pd.read_csv(ctx.params.resolve(o.known_truth)),
                                      source=res.X.attrs.get("source"))
    return Result(data=ds, analysis=res, grid_prediction=grid, grid_note=note, truth=truth, skipped=None)


def _feature_labeller(data_spec):
    """Reader's name of a model feature: the region's covariate label (``ffreq=1`` -> "flooding frequency
    class 1"), else :func:`hmlib.ml.readable_feature` (``Landuse=Pasture`` -> "Pasture (Landuse)")."""
    labels = getattr(data_spec, "covariate_labels", None) or {}

    def lab(feature) -> str:
        if str(feature).partition("=")[0] in labels:
            return data_spec.covariate_label(str(feature))
        return ml.readable_feature(feature)
    return lab


def report(ctx: StageContext, result: Result) -> None:
    """The section: validation scheme and skill first; drivers, SHAP and map only with skill."""
    o, out, cu = ctx.options, ctx.out, ctx.params.data.coordinate_unit
    ds, res = result.data, result.analysis
    lab = _feature_labeller(ctx.params.data)
    if result.skipped:
        out.markdown(f"This analysis was not run: {result.skipped}.")
        return
    methods = ml.methods_text(ds, n_folds=o.n_folds, n_spatial_blocks=o.n_spatial_blocks,
                              correlation_threshold=o.correlation_threshold, selection=o.selection,
                              min_gain_share=o.min_gain_share, top_k=o.top_k, n_search=o.n_search,
                              feature_label=lab)
    scheme, _, model = methods.partition("**Model.**")
    out.markdown(scheme.strip() + f" The target, {ds.target_label} in {ds.medium} (n = {len(ds.y)}), was modelled by "
                 "extreme gradient boosting (XGBoost) [@chen2016xgboost] after @wu2025tracing and "
                 "explained with SHAP values [@lundberg2020tree]; the model is described in the appendix "
                 "(@sec-appendix-ml-drivers).")
    out.markdown("**Model.**" + model, appendix=True)
    for note in ds.notes:
        out.markdown(note)
    sk = res.skill
    out.markdown(ml.results_text(res, ds, refs={
        "cv": ref_id("tbl", "ml_cv_metrics"), "obs": ref_id("fig", "ml_observed_predicted"),
        "drivers": ref_id("tbl", "ml_drivers") if sk.has_skill else None,
        "shap": ref_id("fig", "ml_shap_beeswarm") if sk.has_skill else None}, label=lab))
    out.table("ml_cv_metrics", res.cv.metrics[["model", "cv_scheme", "fold", "r2", "rmse", "mae"]],
              f"Cross-validated performance for {ds.target_label} ({o.n_folds} folds; mean ± standard deviation over "
              "folds). Spatial-block folds judge skill; random folds are shown for comparison. Every learner was "
              "trained and tested on the same folds, the whole pipeline refitted in each training fold; the baseline "
              "predicts the mean of the training samples.",
              display=ml.cv_display(res.summary, unit_label=ds.target_label).assign(
                  **{"CV folds": lambda d: d["CV folds"].replace({"random": "random (comparison)",
                                                                  "spatial-block": "spatial blocks"})}))
    out.figure("ml_folds", ml.plot_folds(res.folds, coordinate_unit=cu),
               f"Cross-validation folds of the {len(ds.y)} {ds.medium} samples: random folds (left) and spatial-block "
               f"folds, {res.n_blocks} k-means clusters of the coordinates assigned whole to {o.n_folds} folds "
               "(right).", appendix=True)
    out.figure("ml_observed_predicted", ml.plot_observed_vs_predicted(res.cv.predictions, model="xgb",
                                                                      label=ds.target_name),
               f"Observed vs out-of-fold predicted {ds.target_label} (XGBoost) with random (left) and spatial-block "
               "folds (right); scores in the titles pooled over all folds; dashed: 1:1 line.")
    out.figure("ml_cv_comparison", ml.plot_cv_comparison(res.cv.metrics[res.cv.metrics["model"] != "mean"]),
               "RMSE and R² of each learner per fold (points) and their mean (bars), for random and spatial-block "
               "folds.", appendix=True)
    imp = res.importance
    out.table("ml_feature_importance", imp, "Feature importance of the final model: share of the total gain in the "
              "screening model, mean absolute SHAP value, whether selected, whether part of the spatial term.",
              in_report=False)
    score = f"R² {sk.r2_mean:.2f} ± {sk.r2_sd:.2f}".replace("-", "\u2212") + " under spatial-block cross-validation"
    if sk.has_skill:
        d = res.drivers
        out.table("ml_drivers", d, f"Drivers of {ds.target_label}: selected candidates ranked by mean absolute SHAP "
                  f"value in the final XGBoost model (model skill: {score}).",
                  display=pd.DataFrame({"Rank": d["rank"], "Driver": d["feature"].map(lab),
                                        f"Mean absolute SHAP ({ds.target_label})": d["mean_abs_shap"],
                                        "Share of the drivers (%)": 100 * d["share"], "Gain share": d["gain"]}))
        out.figure("ml_shap_beeswarm", ml.plot_shap_summary(res.shap, res.fit.transform(res.X),
                                                         feature_labels={c: lab(c) for c in res.shap.columns}),
                   "SHAP beeswarm: each dot is a sample, its position the feature's contribution to the prediction and "
                   "its colour the (standardised) feature value.", width="85%")
        top = d["feature"].head(o.n_dependence).tolist()
        if top:
            out.figure("ml_shap_dependence", ml.plot_dependence(res.shap, res.X, top, feature_labels={c: lab(c) for c in top}),
                       f"SHAP dependence of the {len(top)} most important drivers: contribution to the prediction "
                       "against the driver's value (original units; 0/1 indicators jittered).", appendix=True)
        if result.grid_prediction is not None:
            g = result.grid_prediction
            out.table("ml_grid_prediction", g, "Predicted target on the grid.", in_report=False)
            sites = ctx.data.sites(ds.medium).loc[ds.frame.index]
            fig = ml.plot_grid_map(g["x"], g["y"], g["predicted"], samples_xy=(sites["x"], sites["y"]),
                                   label=f"predicted {ds.target_label}", title=f"XGBoost prediction of {ds.target_label}",
                                   coordinate_unit=cu)
            blank = int((~np.isfinite(g["predicted"])).sum())
            out.figure("ml_prediction_map", fig, f"Predicted {ds.target_label} (final XGBoost model; {score}) over "
                       f"the grid; circles: samples" + (f"; {blank} cells outside the model's domain are blank"
                                                        if blank else "")
                       + ". The map shows what the drivers explain, not a kriged surface of the observations.")
            out.markdown(f"The drivers' prediction over the grid is mapped in @{ref_id('fig', 'ml_prediction_map')}; "
                         "it shows the pattern the drivers explain, with the model's limited skill.")
        else:
            out.markdown(f"No prediction map is drawn: {result.grid_note}.")
        out.conclusion(f"The covariates carry {ds.target_label} into areas without samples with {score}; "
                       f"{lab(d['feature'].iloc[0])} is the leading driver, an association rather than a proven cause.")
        out.finding(f"A model of {ds.target_label} in {ds.medium} has transferable skill ({score}); its leading "
                    f"driver, with {100 * d['share'].iloc[0]:.0f} % of the drivers' mean absolute SHAP value, is "
                    # the label without its unit, so that the sentence does not end in two parentheses
                    + re.sub(r"\s*\([^)]*\)$", "", lab(d["feature"].iloc[0])) + ".",
                    importance=0.45 if sk.r2_mean < 0.2 else 0.55,
                    refs=[ref_id("tbl", "ml_cv_metrics"), ref_id("tbl", "ml_drivers")])
        if sk.r2_mean < 0.2:
            out.limitation(f"The model of {ds.target_label} has weak skill in held-out areas "
                           f"({score}); its drivers explain a small part of the variation.")
    else:
        sel = imp[imp["selected"]]
        out.markdown(ml.exploratory_text(res, ds, label=lab))
        out.table("ml_shap_exploratory", sel, "Exploratory only, not drivers: mean absolute SHAP value of the features "
                  f"used by a model without transferable skill ({score}).",
                  display=pd.DataFrame({"Feature": sel["feature"].map(lab),
                                        "Mean absolute SHAP": sel["mean_abs_shap"],
                                        "Gain share": sel["gain"], "Spatial term": sel["spatial"]}), appendix=True)
        out.figure("ml_shap_beeswarm", ml.plot_shap_summary(res.shap, res.fit.transform(res.X),
                                                         feature_labels={c: lab(c) for c in res.shap.columns}),
                   "Exploratory only: SHAP beeswarm of a model without transferable skill; it shows how the model "
                   "fits the sampled points, not what drives the target.", width="85%", appendix=True)
        out.finding(f"{ds.target_label} in {ds.medium} cannot be predicted in areas away from the samples from the "
                    f"available covariates ({score}); no drivers are reported.", importance=0.4,
                    refs=[ref_id("tbl", "ml_cv_metrics")])
        out.conclusion(f"The available covariates do not predict {ds.target_label} away from the samples ({score}), "
                       "so no drivers of it can be named from these data.")
        out.limitation(f"The covariates do not predict {ds.target_label} in held-out areas ({score}); drivers of the "
                       "risk could not be identified with them.")
    if result.truth is not None:
        t = result.truth
        out.markdown(ml.truth_text(t, has_skill=sk.has_skill))
        out.table("ml_truth_comparison", t, "Known truth of the generated data: whether the generator makes the "
                  "target depend on each covariate, and the covariate's mean absolute SHAP value and rank in the model.",
                  display=pd.DataFrame({"Covariate": t["covariate"], "Used by the generator": t["in_generator"],
                                        "How": t["pathway"], "Mean absolute SHAP": t["mean_abs_shap"],
                                        "Rank": t["rank"], "On the right side": t["recovered"]}),
                  appendix=not sk.has_skill)
