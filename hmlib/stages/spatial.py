"""Stage ``spatial``: maps of each metal by the interpolation method chosen by cross-validation,
exceedance probability, hotspots (Moran's I, LISA, Getis-Ord Gi*) and MGWR drivers.

``run`` composes :mod:`hmlib.spatial` (variograms, candidate methods, k-fold and spatial-block
cross-validation, one-standard-error choice, chunked grid prediction), :mod:`hmlib.hotspots` and
:mod:`hmlib.drivers`; ``report`` writes the section and the GeoTIFF/GeoPackage files.

``grid_predictions`` (read by the health stage) holds, for every metal, the predictions of the
method chosen for it: columns x, y, metal, method (the chosen method's code), chosen (True on
every row), prediction (the mapped value: the median of the predictive distribution, or its mean when so set),
mean, median, variance, exceedance_probability. The choice per metal
is also in the table ``spatial_choice``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from .. import drivers as dr
from .. import hotspots as hs
from .. import spatial as sp
from ..descriptive import _and
from ..params import StageOptions
from .base import StageSpec, needs_grid

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]

Method = Literal["ok", "rk", "sklm", "ck", "rfk", "gpr", "oks", "stack"]


class Options(StageOptions):
    """Options of the ``spatial`` stage (maps, hotspots and drivers)."""

    metals: list[str] | None = Field(default=None, description="metals to map (none: all of the region's metals)")
    methods: list[Method] = Field(
        default_factory=lambda: list(sp.DEFAULT_METHODS),
        description="methods compared: ordinary kriging, regression kriging, simple kriging with local means, "
                    "cokriging, random forest with residual kriging, Gaussian process, kriging in space and the map's "
                    "class shares (one candidate per categorical covariate), stacked ensemble")
    log_transform: Literal["cv", "auto", "always", "never"] = Field(
        default="cv", description="model log values: cv when ordinary kriging predicts better on that scale, "
                                  "auto when the sample skewness exceeds skew_threshold")
    skew_threshold: float = Field(default=1.0, gt=0, description="skewness above which auto models log values")
    mapped_value: Literal["median", "mean"] = Field(
        default="median", description="value mapped, scored and chosen by: the median of each cell's predictive "
                                      "distribution (smallest expected absolute error) or its mean (unbiased for "
                                      "areal averages); they differ only for metals modelled on the log scale")
    variogram_models: list[Literal["spherical", "exponential", "gaussian", "matern"]] = Field(
        default_factory=lambda: list(sp.VARIOGRAM_MODELS), description="variogram models fitted")
    variogram_weights: Literal["npairs_h2", "cressie", "npairs"] = Field(
        default="npairs_h2", description="fit weights: N/h2 (gstat default), Cressie 1985 N/gamma2, or N")
    anisotropy: Literal["auto", "none"] = Field(
        default="auto", description="model geometric anisotropy when the directional check finds it")
    anisotropy_min_ratio: float = Field(default=1.5, ge=1.0, description="range ratio from which anisotropy is modelled")
    n_lags: int = Field(default=15, ge=5, le=50, description="lag bins of the experimental variogram")
    max_lag_fraction: float = Field(default=0.5, gt=0.1, le=1.0,
                                    description="largest lag as a fraction of the sampled area's diagonal")
    n_neighbours: int = Field(default=32, ge=4, le=200, description="samples in each local kriging neighbourhood")
    drift_covariates: list[str] | None = Field(
        default=None, description="covariates of the trends (none: the covariates present in the grid)")
    secondary_metals: list[str] | None = Field(
        default=None, description="metals that may serve cokriging (none: all other metals of the region)")
    cv: Literal["kfold", "loo"] = Field(default="kfold", description="random cross-validation: kfold or loo")
    cv_covariates: Literal["map", "samples"] = Field(
        default="map", description="covariates at held-out samples in cross-validation: map (those of the nearest "
                                   "grid cell, as the map uses them) or samples (as recorded at the sample)")
    class_shares: bool = Field(
        default=True, description="also score regression kriging and the random forest with the map's share of each "
                                  "class around a place (radius calibrated on the recorded classes) in place of its "
                                  "class, and use the form with the smaller error")
    n_folds: int = Field(default=10, ge=2, le=50, description="folds of the k-fold cross-validation")
    block_cv: bool = Field(default=True, description="also score by spatial-block cross-validation")
    n_block_folds: int = Field(default=5, ge=2, le=50, description="folds of the spatial-block cross-validation")
    rf_trees: int = Field(default=60, ge=50, le=2000, description="trees of the random forest")
    grid_chunk_size: int = Field(default=20000, ge=100,
                                 description="grid cells per prediction tile (on the Dask cluster with --cluster)")
    metal_jobs: int | None = Field(
        default=None, ge=1, description="metals mapped at once in worker processes (none: one per core); the maps "
                                        "are the same for any number")
    stack_min_weight: float = Field(
        default=1e-3, ge=0, lt=0.5, description="members of the stacked ensemble with a smaller weight are left out of "
                                                "the map and the other weights rescaled to sum to one")
    cv_max_samples: int | None = Field(
        default=1000, ge=100, description="above this many samples, cross-validation runs on a spatially stratified "
                                          "subsample of this size (none: always on all samples)")
    guideline_threshold: str | None = Field(
        default=None, description="guideline threshold name to map exceedance of (none: the region's)")
    hotspot_k: int = Field(default=8, ge=2, le=50, description="nearest neighbours in the hotspot weights")
    n_permutations: int = Field(default=999, ge=99, description="permutations for Moran's I, LISA and Gi*")
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="significance level for hotspot classes")
    driver_response: str | None = Field(default=None, description="metal modelled by MGWR (none: the first metal)")
    driver_covariates: list[str] | None = Field(
        default=None, description="sample covariates or metals used as MGWR predictors (none: the numeric covariates)")
    mgwr_max_n: int = Field(default=1000, ge=50, description="MGWR is skipped above this many samples")
    write_files: bool = Field(default=True, description="write GeoTIFF and GeoPackage files")


SPEC = StageSpec(
    name="spatial",
    notebook="30_spatial.ipynb",
    title="Spatial mapping, hotspots and drivers",
    options=Options,
    reads=(),
    writes=("grid_predictions",),
    requires=(needs_grid,),
)


@dataclass
class Result:
    """What the spatial stage computed.

    Attributes
    ----------
    maps : metal -> :class:`hmlib.spatial.MetalMap` (variograms, cross-validation, choice, grid).
    metals, drift, secondary_pool : metals mapped, trend covariates, metals offered to cokriging.
    threshold_name, thresholds : guideline threshold mapped and its value per metal.
    cv_table : metal, method, scheme, mae, rmse, msse, n, selectable.
    selection : per metal and method: mean loss, standard error to the best, chosen.
    choice : per metal and scheme: chosen method, its MAE and OK's, ratio with 95 % interval.
    grid_predictions : x, y, metal, method, chosen, prediction (the mapped value), mean, median, variance,
        exceedance_probability (the chosen method per metal).
    shares : per metal: threshold, expected share, median-map share, mean-map share, P > 0.5/0.9.
    variograms, anisotropy, variogram_summary : variogram tables.
    moran, hotspots : global Moran's I per metal; LISA and Gi* per sample.
    covariate_agreement : per trend covariate, how often the grid's value at a sample (nearest cell) agrees
        with the one recorded there (:func:`hmlib.spatial.covariate_agreement`; empty when not used).
    share_calibration : per categorical trend covariate and candidate radius, the Brier score of the map's class
        shares against the recorded classes and the radius chosen (:func:`hmlib.spatial.map_class_shares`; empty
        when not used).
    covariate_forms : per metal, method (rk, rfk) and form of the categorical covariates (classes or the map's
        shares), the MAE averaged over the cross-validation schemes and the form chosen (empty when not used).
    share_scales : per metal and mapped candidate of kriging in space and class shares, the scale of the shares
        chosen (``MetalMap.share_scales``; empty when none is mapped).
    mgwr : MGWR result (None when not run) and ``mgwr_note`` (why not).
    """

    maps: dict
    metals: list
    drift: list
    secondary_pool: list
    threshold_name: str | None
    thresholds: pd.Series
    cv_table: pd.DataFrame
    selection: pd.DataFrame
    choice: pd.DataFrame
    grid_predictions: pd.DataFrame
    shares: pd.DataFrame
    variograms: pd.DataFrame
    anisotropy: pd.DataFrame
    variogram_summary: pd.DataFrame
    moran: pd.DataFrame
    hotspots: pd.DataFrame
    covariate_agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    share_calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    covariate_forms: pd.DataFrame = field(default_factory=pd.DataFrame)
    share_scales: pd.DataFrame = field(default_factory=pd.DataFrame)
    mgwr: object | None = None
    mgwr_note: str | None = None
    driver_labels: list = field(default_factory=list)
    driver_index: object = None


def _drift(ctx) -> list[str]:
    o, p, grid = ctx.options, ctx.params, ctx.data.grid
    sites = ctx.data.sites(ctx.data.media[0])
    d = o.drift_covariates if o.drift_covariates is not None else [c for c in p.data.covariates if c in grid.columns]
    return [c for c in d if c in grid.columns and c in sites.columns]


def check(ctx) -> list[str]:
    """Options against the data: metals, covariates, secondary metals, MGWR variables and the guideline value."""
    o, p, data = ctx.options, ctx.params, ctx.data
    probs = []
    if data.grid is None:
        return probs
    sites = data.sites(data.media[0])
    bad = [m for m in (o.metals or []) if m not in data.metals]
    if bad:
        probs.append(f"stages.spatial.metals: got {', '.join(bad)}; expected metals of the region ({', '.join(data.metals)})")
    for key, cols in (("drift_covariates", o.drift_covariates),):
        if cols:
            miss = [c for c in cols if c not in data.grid.columns or c not in sites.columns]
            if miss:
                probs.append(f"stages.spatial.{key}: got {', '.join(miss)}; expected columns present in both the "
                             "samples and the grid")
    bad = [m for m in (o.secondary_metals or []) if m not in data.metals]
    if bad:
        probs.append(f"stages.spatial.secondary_metals: got {', '.join(bad)}; expected metals of the region")
    if o.driver_response is not None and o.driver_response not in data.metals:
        probs.append(f"stages.spatial.driver_response: got {o.driver_response}; expected one of {', '.join(data.metals)}")
    if o.driver_covariates:
        miss = [c for c in o.driver_covariates if c not in sites.columns and c not in data.metals]
        if miss:
            probs.append(f"stages.spatial.driver_covariates: got {', '.join(miss)}; expected sample covariates or metals")
    name = o.guideline_threshold or p.references.guideline_threshold
    if name and p.references.guideline:
        try:
            sp.guideline_thresholds(p.references.guideline, name, medium=data.media[0], unit=data.unit(data.media[0]))
        except ValueError as err:
            probs.append(f"stages.spatial.guideline_threshold: got {name}; expected a threshold of the set ({err})")
    return probs


def run(ctx) -> Result:
    """Map every metal with the method chosen by cross-validation; hotspots and MGWR."""
    from ..progress import track

    data, p, o = ctx.data, ctx.params, ctx.options
    medium = data.media[0]
    unit = data.unit(medium)
    sites = data.sites(medium)
    wide = data.wide(medium)
    grid = data.grid
    metals = o.metals or data.metals
    drift = _drift(ctx)
    pool = o.secondary_metals if o.secondary_metals is not None else list(data.metals)
    threshold_name = o.guideline_threshold or p.references.guideline_threshold
    thresholds = sp.guideline_thresholds(p.references.guideline, threshold_name, medium=medium, unit=unit)
    grid_sec = grid[[m for m in pool if m in grid.columns]] if any(m in grid.columns for m in pool) else None
    # the covariates the map has at each sample (nearest grid cell): cross-validation predicts held-out samples
    # from them, so that its scores are the map's
    map_cov = (sp.covariates_at_samples(sites["x"], sites["y"], sample_covariates=sites[drift], grid_x=grid["x"],
                                        grid_y=grid["y"], grid_covariates=grid[drift])
               if drift and o.cv_covariates == "map" else None)
    agreement = (sp.covariate_agreement(sites[drift], map_cov, categorical=p.data.categorical)
                 if map_cov is not None else pd.DataFrame())
    # the map's class shares around each sample and cell, for the trends of regression kriging and the forest
    share_s = share_g = None
    share_cal = pd.DataFrame()
    if o.class_shares and sp.categorical_columns(sites[drift], p.data.categorical):
        share_s, share_g, share_cal = sp.map_class_shares(sites["x"], sites["y"], recorded=sites[drift],
                                                          grid_x=grid["x"], grid_y=grid["y"],
                                                          grid_covariates=grid[drift], categorical=p.data.categorical)

    def one(i: int, metal: str) -> dict:
        others = [m for m in pool if m != metal and m in wide.columns]
        return dict(
            metal=metal, x=sites["x"], y=sites["y"], values=wide[metal], grid_x=grid["x"], grid_y=grid["y"],
            sample_covariates=sites[drift].reset_index(drop=True) if drift else None,
            grid_covariates=grid[drift] if drift else None, sample_map_covariates=map_cov,
            sample_shares=share_s, grid_shares=share_g,
            categorical=p.data.categorical, secondary=wide[others].reset_index(drop=True) if others else None,
            grid_secondary=grid_sec,
            methods=o.methods, log_mode=o.log_transform, skew_threshold=o.skew_threshold, models=o.variogram_models,
            weights=o.variogram_weights, anisotropy=o.anisotropy, anisotropy_min_ratio=o.anisotropy_min_ratio,
            n_lags=o.n_lags, max_lag_fraction=o.max_lag_fraction, n_neighbours=o.n_neighbours, scheme=o.cv,
            n_folds=o.n_folds, block_cv=o.block_cv, n_block_folds=o.n_block_folds, rf_trees=o.rf_trees, threshold=thresholds.get(metal, np.nan),
            seed=ctx.seed + i, chunk_size=o.grid_chunk_size, cv_max_n=o.cv_max_samples,
            stack_min_weight=o.stack_min_weight, point=o.mapped_value)

    # each metal is seeded by its position (ctx.seed + i) and mapped by a pure function, so mapping metals in
    # worker processes gives the numbers of the serial loop
    n_jobs = min(o.metal_jobs or (os.cpu_count() or 1), len(metals))
    if n_jobs > 1:
        from joblib import Parallel, delayed

        run_all = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
            delayed(sp.map_metal)(**one(i, metal)) for i, metal in enumerate(metals))
        maps = dict(zip(metals, track(run_all, desc="spatial: metals", unit="metal", total=len(metals))))
    else:
        maps = {metal: sp.map_metal(**one(i, metal))
                for i, metal in enumerate(track(metals, desc="spatial: metals", unit="metal"))}
    cv_table = pd.concat([mm.cv_summary for mm in maps.values()], ignore_index=True)
    selection = pd.concat([mm.selection for mm in maps.values()], ignore_index=True)
    choice = sp.choice_table(maps)
    cols = ["x", "y", "metal", "method", "chosen", "prediction", "mean", "median", "variance",
            "exceedance_probability"]
    grid_pred = pd.concat([mm.grid[cols] for mm in maps.values()], ignore_index=True)
    shares = pd.DataFrame([{"metal": m, "method": mm.best, "threshold_name": threshold_name, "threshold": mm.threshold,
                            "n_cells": len(mm.grid), **mm.shares,
                            **sp.sample_shares(sites["x"], sites["y"], wide[m], threshold=mm.threshold,
                                               grid_x=grid["x"], grid_y=grid["y"])}
                           for m, mm in maps.items() if np.isfinite(mm.threshold)])
    vg, aniso, vg_disp = sp.variogram_tables(maps, coordinate_unit=p.data.coordinate_unit)
    # hotspots on each metal's modelling scale
    w = hs.knn_weights(sites["x"], sites["y"], k=o.hotspot_k)
    glob_rows, local_parts = [], []
    for i, (m, mm) in enumerate(track(list(maps.items()), desc="spatial: hotspots", unit="metal")):
        z = wide[m].to_numpy(float)
        z = np.log(z) if mm.log else z
        ok = np.isfinite(z)
        if not ok.all():
            continue   # the weights are built on all samples; a metal with gaps is left out of the hotspot analysis
        glob_rows.append({"metal": m, "scale": "ln" if mm.log else "raw",
                          **hs.global_moran(z, w, n_permutations=o.n_permutations, seed=ctx.seed + 100 + i)})
        loc = hs.local_hotspots(z, w, n_permutations=o.n_permutations, alpha=o.alpha, seed=ctx.seed + 200 + i)
        local_parts.append(pd.concat([pd.DataFrame({"metal": m, "sample_id": sites.index, "x": sites["x"].to_numpy(),
                                                    "y": sites["y"].to_numpy(), "value": wide[m].to_numpy(float)}),
                                      loc], axis=1))
    moran = pd.DataFrame(glob_rows)
    hot = pd.concat(local_parts, ignore_index=True) if local_parts else pd.DataFrame()
    res = Result(maps=maps, metals=list(metals), drift=drift, secondary_pool=pool, threshold_name=threshold_name,
                 thresholds=thresholds, cv_table=cv_table, selection=selection, choice=choice,
                 grid_predictions=grid_pred, shares=shares, variograms=vg, anisotropy=aniso,
                 variogram_summary=vg_disp, moran=moran, hotspots=hot, covariate_agreement=agreement,
                 share_calibration=share_cal,
                 covariate_forms=pd.concat([mm.form_cv for mm in maps.values()], ignore_index=True),
                 share_scales=pd.concat([mm.share_scales for mm in maps.values()], ignore_index=True))
    # drivers (MGWR)
    numeric_cov = [c for c in p.data.covariates if c not in p.data.categorical]
    resp = o.driver_response or metals[0]
    dcov = o.driver_covariates if o.driver_covariates is not None else numeric_cov
    if not dcov:
        res.mgwr_note = ("MGWR was not run: the region has no numeric sample covariates and no predictors were named "
                         "for it.")
    elif len(sites) > o.mgwr_max_n:
        res.mgwr_note = (f"MGWR was not run: {len(sites)} samples exceed the limit of {o.mgwr_max_n}; "
                         f"{dr.MGWR_COST_NOTE}.")
    else:
        yv, X, labels = dr.driver_table(sites, wide, response=resp, covariates=dcov, log_metals=True,
                                        categorical=p.data.categorical)
        labels = [p.data.covariate_label(c) if c.partition("=")[0] in p.data.covariate_labels else c for c in labels]
        res.mgwr = dr.mgwr_drivers(sites.loc[yv.index, "x"], sites.loc[yv.index, "y"], yv, X.set_axis(labels, axis=1),
                                   response_name=f"ln {resp}", max_n=o.mgwr_max_n)
        res.driver_labels, res.driver_index = labels, yv.index
    return res


def report(ctx, result: Result) -> None:
    """The spatial section: methods, cross-validation and choice, variograms, maps, exceedance, hotspots, MGWR, files."""
    import matplotlib.pyplot as plt

    from .. import geo
    from ..descriptive import reference_label

    data, p, o, out = ctx.data, ctx.params, ctx.options, ctx.out
    r = result
    medium = data.media[0]
    unit = data.unit(medium)
    cu = p.data.coordinate_unit
    sites, wide = data.sites(medium), data.wide(medium)
    maps = r.maps
    used = [m for m in o.methods if any(m in {sp.method_code(c) for c in mm.cv_summary["method"]} for mm in maps.values())]
    covlab = {c: p.data.covariate_label(c) for c in (r.drift or [])}
    # candidates scored per metal (kriging in space and class shares counts once per categorical covariate)
    n_candidates = max(len(set(mm.cv_summary["method"]) - {"ckc"}) for mm in maps.values())
    used_shares = not r.share_calibration.empty and not r.covariate_forms.empty
    has_thr = len(r.shares) > 0
    gset = p.references.guideline
    tname = str(r.threshold_name or "").replace("_", " ")
    classes = sp.guideline_classes(gset, r.threshold_name, medium=medium, unit=unit) if has_thr else None
    n_samples = max(mm.n_samples for mm in maps.values())
    n_cv = min(mm.n_cv for mm in maps.values())
    scheme_label = "leave-one-out" if o.cv == "loo" else f"{o.n_folds}-fold"
    # what the section answers, before the methods
    out.markdown(
        f"This section maps each metal over the prediction grid ({len(next(iter(maps.values())).grid):,} cells) from "
        f"the {n_samples:,} samples, with the interpolation method that predicted held-out samples best, and "
        + (f"estimates where and over how much of the area the {tname} value of {reference_label(gset)} is exceeded. "
           if has_thr else "shows where concentrations are high. ")
        + "It then tests whether high values cluster (hotspots)"
        + (" and how the drivers' effects vary in space." if r.mgwr is not None else "."))
    cv_txt = (f"{scheme_label} and spatial-block cross-validation" if o.block_cv else f"{scheme_label} cross-validation")
    out.markdown(
        f"**Methods in brief.** Each metal was interpolated by up to {n_candidates} candidate methods (ordinary "
        "kriging, and methods that add the covariates, the map's classes, correlated metals or a random forest to it), "
        "each scored by "
        f"{cv_txt} with every fold refitted. The map is their stacked ensemble (weights from out-of-fold predictions, "
        "shrunk towards ordinary kriging by the share that predicts held-out samples best) when its error, averaged "
        "over the schemes, is below ordinary kriging's; otherwise ordinary kriging, unless one method beats it by "
        "more than one standard error under every scheme. "
        + _mapped_value_text(o.mapped_value, any(mm.log for mm in maps.values())) +
        "The probability that a cell exceeds the guideline value comes from the prediction and its standard error, "
        "and the expected share of the area above the value is the mean of that probability over the cells. "
        + sp.covariate_agreement_text(r.covariate_agreement, labels=covlab)
        + (sp.class_share_text(r.share_calibration, forms=r.covariate_forms,
                               labels=covlab, coordinate_unit=cu,
                               share_kriging="oks" in used)
           if used_shares else "")
        + " Formulas, the candidate methods and the choice rule are in the appendix (@sec-appendix-spatial).")
    out.markdown(appendix=True, text=sp.methods_text(
        methods=used, log_mode=o.log_transform, skew_threshold=o.skew_threshold, models=o.variogram_models,
        weights=o.variogram_weights, anisotropy=o.anisotropy, anisotropy_min_ratio=o.anisotropy_min_ratio,
        n_neighbours=o.n_neighbours, scheme=o.cv, n_folds=o.n_folds, block_cv=o.block_cv,
        guideline_set=gset if has_thr else None, threshold_name=tname if has_thr else None,
        drift_covariates=[p.data.covariate_label(c) for c in r.drift or []], secondary={m: mm.secondary for m, mm in maps.items()}, crs=p.data.crs,
        n_samples=n_samples, cv_max_n=n_cv if n_cv < n_samples else None, classes=classes,
        guideline_label=reference_label(gset) if gset else None, map_covariates=not r.covariate_agreement.empty,
        class_shares=used_shares, point=o.mapped_value))
    if n_cv < n_samples:
        out.limitation(f"Spatial interpolation: cross-validation used a spatially stratified subsample of {n_cv:,} of "
                       f"the {n_samples:,} samples, so its errors describe a sparser sampling than the maps'.")
    if used_shares:
        cal = r.share_calibration
        out.table("spatial_class_shares", cal,
                  "Calibration of the map's class shares used by regression kriging, the random forest"
                  + (" and kriging in space and class shares" if "oks" in used else "") + ": for each "
                  "categorical covariate and radius, the Brier score of the shares of the grid cells within the radius "
                  "as probabilities of the class recorded at the samples (smaller is better; radius 0: the nearest "
                  "cell), the share of samples whose most likely class is the recorded one, and the radius chosen.",
                  display=cal.assign(covariate=cal["covariate"].map(p.data.covariate_label)).rename(
                      columns={"covariate": "Covariate", "spacings": "Grid spacings", "radius": f"Radius ({cu})",
                               "brier": "Brier score", "agreement": "Agreement", "chosen": "Chosen"}),
                  appendix=True)
        fm = r.covariate_forms
        out.table("spatial_covariate_forms", fm,
                  "Regression kriging and the random forest with the map's classes or with its class shares: mean "
                  "absolute error averaged over the cross-validation schemes, and the form used for the map.",
                  display=fm.assign(method=fm["method"].map(sp.METHOD_LABELS),
                                    form=fm["form"].map({"classes": "classes", "shares": "class shares"})).rename(
                      columns={"metal": "Metal", "method": "Method", "form": "Covariates", "mae": f"MAE ({unit})",
                               "chosen": "Used"}), appendix=True)
    if not r.share_scales.empty:
        sc = r.share_scales
        out.table("spatial_share_scales", sc,
                  "Kriging in space and mapped class shares, for each metal and covariate whose candidate is mapped "
                  "(in the stacked ensemble or alone): the scale of the class shares as extra coordinates, chosen by "
                  "cross-validation on all samples, in multiples of the effective range of the method's exponential "
                  "variogram and in distance units (0: ordinary kriging).",
                  display=pd.DataFrame({"Metal": sc["metal"], "Covariate": sc["covariate"].map(p.data.covariate_label),
                                        "Scale (effective ranges)": sc["range_multiple"].map(lambda v: f"{v:g}"),
                                        f"Effective range ({cu})": sc["effective_range"],
                                        f"Scale ({cu})": sc["scale"]}), appendix=True)
    cvd = r.cv_table.copy()
    cvd["scheme"] = cvd["scheme"].map({"kfold": scheme_label, "loo": "leave-one-out", "block": "spatial blocks"})
    cvd["method"] = cvd["method"].map(lambda m: "collocated cokriging" if m == "ckc" else sp.method_label(m, labels=covlab))
    out.table("spatial_cv", r.cv_table,
              f"Cross-validation ({scheme_label}{' and spatial blocks' if o.block_cv else ''}) of the interpolation "
              f"methods: mean absolute and root mean squared error of the {o.mapped_value} prediction (the value "
              "mapped), and mean standardised "
              "squared error on the modelling scale (ideal 1; above 1: the method understates its uncertainty). "
              "Collocated cokriging uses the held-out samples' secondary metals and cannot map the grid.",
              display=cvd[["metal", "scheme", "method", "mae", "rmse", "msse"]].rename(
                  columns={"metal": "Metal", "scheme": "Scheme", "method": "Method", "mae": f"MAE ({unit})",
                           "rmse": f"RMSE ({unit})", "msse": "MSSE"}), appendix=True, max_rows=200)
    out.table("spatial_selection", r.selection, "Mean absolute error per method averaged over the cross-validation "
              "schemes, standard error of its paired difference to the best, whether it was eligible (ordinary kriging, "
              "or a method that beat ordinary kriging by more than one standard error under every scheme), and the "
              "method chosen (the stacked ensemble, shrunk towards ordinary kriging, when its error relative to ordinary "
              "kriging's, averaged over the schemes, is below one, else by the one-standard-error rule).", in_report=False)
    ch = r.choice.copy()
    chd = pd.DataFrame({
        "Metal": ch["metal"],
        "Chosen method": [sp.method_label(c, labels=covlab) for c in ch["chosen"]],
        # the share of the stacked ensemble's weight moved to ordinary kriging by the chosen shrinkage
        "Shrinkage": [f"{maps[m].stack_shrinkage:.2g}" if c == "stack" and m in maps
                      and np.isfinite(maps[m].stack_shrinkage) else "–" for m, c in zip(ch["metal"], ch["chosen"])],
        "Scheme": ch["scheme"].map({"kfold": scheme_label, "loo": "leave-one-out", "block": "spatial blocks"}),
        f"MAE chosen ({unit})": ch["mae_chosen"], f"MAE ordinary kriging ({unit})": ch["mae_ok"],
        "Ratio to ordinary kriging": ch["ratio_mae_to_ok"],
        "95 % interval": [f"{a:.2f}–{b:.2f}" for a, b in zip(ch["ratio_low"], ch["ratio_high"])]})
    out.table("spatial_choice", ch, "Method mapped per metal (the stacked ensemble, shrunk towards ordinary kriging, when its "
              "error averaged over the schemes was below ordinary kriging's; otherwise the simplest within one standard "
              "error of the best) and "
              "its mean absolute error relative to ordinary kriging (below 1: better), with a 95 % paired bootstrap "
              "interval, per cross-validation scheme. Shrinkage: the share of the ensemble's weight moved to ordinary "
              "kriging, chosen by cross-validation (0: the fitted weights; a dash: not an ensemble).", display=chd)
    if len(r.choice):
        out.markdown(f"**Which method maps best.** {out.ref('spatial_choice')} gives the method chosen per metal and "
                     f"its error relative to ordinary kriging; every method's scores are in {out.ref('spatial_cv')} "
                     "(appendix). " + sp.results_text(r.choice, r.cv_table, scheme_label=scheme_label, labels=covlab))
        first = r.choice[r.choice["scheme"] == r.choice["scheme"].iloc[0]]
        blk = r.choice[r.choice["scheme"] == "block"]
        txt = (f"Across the {len(first)} mapped metals, the method chosen by cross-validation has a median mean "
               f"absolute error of {first['ratio_mae_to_ok'].median():.2f} times that of ordinary kriging "
               f"({scheme_label}")
        if len(blk):
            txt += f"; {blk['ratio_mae_to_ok'].median():.2f} under spatial-block cross-validation"
        txt += f"; per-metal 95 % intervals in {out.ref('spatial_choice')})."
        out.finding(txt, importance=0.5, refs=("tbl-spatial_choice",))
    out.table("spatial_variograms", r.variograms, "Fitted variogram models (all candidates).", in_report=False)
    out.table("spatial_anisotropy", r.anisotropy, "Directional effective ranges.", in_report=False)
    vs = r.variogram_summary
    out.table("spatial_variogram_summary", vs,
              "Selected variogram model per metal (weighted least squares; nugget and sills in squared modelling-scale "
              "units: of ln concentration where the scale is ln). Anisotropy ratio: longest over shortest directional "
              "range (azimuth counter-clockwise from east); the last column gives the anisotropy used by ordinary "
              "kriging, kept only where it lowered ordinary kriging's cross-validated error (a ratio from "
              "noisy directional variograms often does not). A nugget/sill ratio above 0.75 indicates weak spatial dependence at the sampling scale.",
              display=vs)
    rng_col = f"Effective range ({cu})"
    weak = vs.loc[vs["Nugget/sill"] > 0.75, "Metal"].tolist()
    strong = vs.loc[vs["Nugget/sill"] < 0.25, "Metal"].tolist()
    vtxt = (f"**Spatial structure.** The variograms ({out.ref('spatial_variogram_summary')}; per metal in the appendix) "
            f"give effective ranges from {vs[rng_col].min():.3g} to {vs[rng_col].max():.3g} {cu}: samples closer than "
            "this inform each other's prediction. ")
    if strong:
        vtxt += (f"{_and(strong)} {'has' if len(strong) == 1 else 'have'} a small nugget (below a quarter of the "
                 f"sill), so {'its map follows' if len(strong) == 1 else 'their maps follow'} the samples closely. ")
    if weak:
        vtxt += (f"For {_and(weak)} most variance is nugget (above three quarters of the sill): variation at "
                 "distances shorter than the sample spacing or measurement error, so their maps are smooth and carry "
                 "wide prediction intervals. ")
    out.markdown(vtxt)
    for m, mm in maps.items():
        fig = sp.variogram_figure(mm, unit=unit, coordinate_unit=cu)
        out.figure(f"spatial_variogram_{m}", fig,
                   f"{m}: experimental semivariogram of {'ln ' if mm.log else ''}{m} (point size: number of pairs) "
                   f"with the fitted models (selected: {mm.variogram.model}), and directional variograms.",
                   group="spatial_variograms", appendix=True)
        plt.close(fig)
    # maps: the mapped value (main), exceedance probabilities (main), standard deviations (appendix)
    samples = pd.concat([sites[["x", "y"]].reset_index(drop=True), wide[list(maps)].reset_index(drop=True)], axis=1)
    methods_used = sorted({sp.method_label(mm.best, labels=covlab) for mm in maps.values()})
    fig, _ = sp.grid_maps_figure(maps, kind="prediction", unit=unit, crs=p.data.crs, coordinate_unit=cu, samples=samples)
    out.figure("spatial_maps_prediction", fig,
               f"{o.mapped_value.capitalize()} prediction of each metal ({unit}) by the method chosen for it "
               f"({', '.join(methods_used)}; {out.ref('spatial_choice')}), with the samples as dots on the same colour "
               "scale. " + ("This is the median map: at each cell the concentration is as likely to lie above it as "
                            "below; for metals modelled on the log scale the mean (in the grid prediction files) is higher."
                            if o.mapped_value == "median" else
                            "This is the mean map; for metals modelled on the log scale it lies above the median and "
                            "is not the map to compare with a guideline value."))
    hi_where = {m: sp._where(mm.grid["x"], mm.grid["y"], mm.grid["prediction"] >= mm.grid["prediction"].quantile(0.9))
                for m, mm in maps.items()}
    mtxt = (f"**Maps.** {out.ref('spatial_maps_prediction', 'fig')} shows the {o.mapped_value} predictions. The highest "
            "predicted "
            "concentrations (top tenth of the cells) lie "
            + "; ".join(f"in the {w} for {_and(ms)}" for w, ms in _group_by_value(hi_where).items()) + ". "
            + f"Their prediction standard deviations are mapped in {out.ref('spatial_maps_sd', 'fig')} (appendix): "
            "uncertainty grows away from the samples and, for metals modelled on the log scale, with the "
            "concentration.")
    below = _cells_per_metal({m: mm.n_below_zero for m, mm in maps.items()})
    if below:
        mtxt += (f" Interpolated on the original scale, the prediction fell below zero in {below} (between high and "
                 "low samples); a concentration cannot be negative, so the map shows zero there.")
    held = _cells_per_metal({m: mm.n_covariates_held for m, mm in maps.items()})
    if held:
        mtxt += (f" Regression kriging held the covariates within the range the samples cover in {held} (cells whose "
                 "covariate values, or mix of classes, no sample has); the map there is an extrapolation that new "
                 "samples should check.")
    out.markdown(mtxt)
    fig, _ = sp.grid_maps_figure(maps, kind="sd", unit=unit, crs=p.data.crs, coordinate_unit=cu)
    out.figure("spatial_maps_sd", fig, f"Prediction standard deviation of each metal ({unit}) on the grid, from the "
               "method mapped for it.", appendix=True)
    out.table("grid_predictions", r.grid_predictions,
              f"Predictions on the grid by the method chosen per metal: the value mapped ({o.mapped_value}; {unit}), "
              f"mean ({unit}), median ({unit}), variance "
              f"({unit}²) and probability of exceeding the guideline value.", in_report=False)
    if has_thr:
        s = r.shares
        fig, left_out = sp.grid_maps_figure(maps, kind="probability", unit=unit, crs=p.data.crs, coordinate_unit=cu)
        where = {}
        for m, mm in maps.items():
            if np.isfinite(mm.threshold):
                pr = mm.grid["exceedance_probability"]
                if (pr > 0.5).any() and (pr <= 0.5).any() and pr.mean() < 0.5:   # where it is local, not general
                    where[m] = sp._where(mm.grid["x"], mm.grid["y"], pr > 0.5)
        gl_short = reference_label(gset, cite=False, short=True)
        if fig is not None:
            out.figure("spatial_exceedance", fig,
                       f"Probability that each metal exceeds the {tname} value of the {gl_short} (values in the "
                       f"panel titles; {unit}), from the chosen method's prediction and its standard error; black "
                       "line: probability 0.5 (the median map's boundary).")
        def pct(v):
            return [("<0.1" if 0 < 100 * x < 0.05 else f"{100 * x:.1f}") for x in v]

        s_disp = pd.DataFrame({"Metal": s["metal"], f"Value ({unit})": s["threshold"],
                               "Method": s["method"].map(lambda c: sp.method_label(c, labels=covlab)),
                               "Samples above (%)": pct(s["share_samples"]),
                               "Samples above, area-weighted (%)": pct(s["share_samples_area"]),
                               "Expected area share (%)": pct(s["share_expected"]),
                               "Median map above (%)": pct(s["share_median"]),
                               "Mean map above (%)": pct(s["share_mean_map"]),
                               "Area with P > 0.9 (%)": pct(s["share_p90"])})
        out.table("exceedance_shares", s,
                  f"Exceedance of the {tname} value of the {gl_short}: share of the samples above it (raw and "
                  "weighted by the area each represents), expected share of the mapped area (mean exceedance "
                  "probability, the headline figure), share of cells whose median prediction exceeds it, share of "
                  "cells whose mean prediction exceeds it (for comparison only: the mean of a skewed distribution "
                  "lies above its median), and the area with probability above 0.9.", display=s_disp)
        etxt = f"**Exceedance of the {tname} value.** "
        if fig is not None:
            etxt += f"{out.ref('spatial_exceedance', 'fig')} maps the probability of exceedance. "
        etxt += f"{out.ref('exceedance_shares')} compares the area and the samples. "
        etxt += sp.exceedance_text(s, threshold_name=tname, guideline_set=f"the {gl_short}", where=where)
        if left_out:
            etxt += " Not mapped: " + "; ".join(f"{m}, because {why}" for m, why in left_out.items()) + "."
        out.markdown(etxt)
        top = s.sort_values("share_expected", ascending=False).iloc[0]
        from statsmodels.stats.proportion import proportion_confint

        n_top = int(wide[top["metal"]].notna().sum())
        k_top = int(round(top["share_samples"] * n_top))
        lo_s, hi_s = proportion_confint(k_top, max(n_top, 1), alpha=0.05, method="wilson")
        # the same quantity as data_quality's exceedance finding (topic): this sentence, which adds the mapped
        # area, is the stronger one, so the key findings give the sample share once
        out.finding(f"{top['metal']} exceeds the {tname} value of the {gl_short} in {100 * top['share_samples']:.0f} % "
                    f"of the {medium} samples (95 % CI {100 * lo_s:.0f}–{100 * hi_s:.0f} %) and on an expected "
                    f"{100 * top['share_expected']:.0f} % of the mapped area; {100 * top['share_p90']:.0f} % of the cells "
                    "exceed it with a probability above 0.9.",
                    importance=0.72, refs=("tbl-exceedance_shares",),
                    topic=("exceedance share", medium, top["metal"], r.threshold_name))
        pt = maps[top["metal"]].grid["exceedance_probability"]
        unsure = float(((pt > 0.1) & (pt < 0.9)).mean())
        hi_max = r.choice.groupby("metal")["ratio_high"].max()
        hi_min = r.choice.groupby("metal")["ratio_high"].min()
        clear = [m for m in hi_max.index if hi_max[m] < 1 and maps[m].best != "ok"]
        partial_ = [m for m in hi_min.index if hi_min[m] < 1 <= hi_max[m] and maps[m].best != "ok"]
        rest = [m for m in hi_max.index if m not in clear and m not in partial_]
        out.conclusion(
            f"{top['metal']} exceeds the {tname} value over an expected {100 * top['share_expected']:.0f} % of the "
            f"mapped area; {100 * unsure:.0f} % of the cells have "
            "a probability between 0.1 and 0.9, where the map cannot say whether the value is exceeded. "
            + (f"Methods using covariates or other metals mapped {_and(clear)} better than ordinary kriging "
               "under every cross-validation scheme" if clear else
               "No alternative beat ordinary kriging clearly under every cross-validation scheme")
            + (f"; for {_and(partial_)} the gain held under one scheme only, which may not carry to new "
               "places" if partial_ else "")
            + (f"; for {_and(rest)} no method did clearly better than ordinary kriging."
               if (clear or partial_) and rest else "."))
    # hotspots
    if len(r.moran):
        out.markdown(hs.methods_text(k=o.hotspot_k, n_permutations=o.n_permutations, alpha=o.alpha,
                                     log_note="on the same scale as its interpolation"), appendix=True)
        out.table("global_moran", r.moran, "Global Moran's I.", in_report=False)
        out.table("hotspots", r.hotspots, "Local Moran (LISA) and Getis-Ord Gi* per sample.", in_report=False)
        hot_disp = hs.hotspot_summary(r.moran, r.hotspots)
        out.markdown(f"**Hotspots.** Global Moran's I, local Moran (LISA) and Getis-Ord Gi* on the {o.hotspot_k} "
                     f"nearest neighbours (methods in the appendix, @sec-appendix-spatial). "
                     f"{out.ref('hotspot_summary')} counts the "
                     f"clusters per metal; {out.ref('spatial_gi', 'fig')} maps the Gi* hot and cold spots (LISA "
                     f"clusters in {out.ref('spatial_lisa', 'fig')}, appendix). "
                     + hs.results_text(r.moran, r.hotspots, alpha=o.alpha)
                     + " Hot spots mark where high values sit next to high values; whether they exceed a guideline "
                       "value is read from the exceedance maps above, and whether they are natural or anthropogenic "
                       "from the source apportionment.")
        out.table("hotspot_summary", hot_disp,
                  f"Global Moran's I (permutation p-value) and the number of samples in LISA clusters and outliers and "
                  f"Gi* hot and cold spots (pseudo p < {o.alpha:g}; last column: hot spots that remain after "
                  "Benjamini-Hochberg correction). Per-sample results: [hotspots.csv](tables/hotspots.csv).",
                  display=hot_disp)
        for kind, title in (("lisa", "Local Moran (LISA) clusters and outliers"), ("gi", "Getis-Ord Gi* hot and cold spots")):
            fig = hs.hotspot_figure(r.hotspots, kind=kind, coordinate_unit=cu, outline=data.grid)
            out.figure(f"spatial_{kind}", fig, f"{title} of each metal (k = {o.hotspot_k} nearest neighbours, "
                       f"{o.n_permutations} permutations, p < {o.alpha:g}); grey background: the prediction grid.",
                       appendix=kind == "lisa")
            plt.close(fig)
    # drivers
    if r.mgwr is None:
        out.markdown(f"**Drivers.** {r.mgwr_note}")
    else:
        res, labels = r.mgwr, r.driver_labels
        resp = o.driver_response or r.metals[0]
        out.markdown(dr.methods_text(response_label=f"ln {resp}", covariate_labels=labels, max_n=o.mgwr_max_n),
                     appendix=True)
        out.table("mgwr_comparison", res.comparison,
                  f"Global OLS, GWR and MGWR of ln {resp} on {', '.join(labels)} (n = {len(r.driver_index)}): corrected "
                  "Akaike information criterion (lower is better) and R². GWR bandwidth: number of nearest neighbours.",
                  display=res.comparison.rename(columns={"model": "Model", "aicc": "AICc", "r2": "R²",
                                                         "adj_r2": "Adjusted R²", "bandwidth": "Bandwidth (neighbours)"}))
        out.table("mgwr_coefficients", res.coefficients,
                  "Standardised coefficients: global OLS estimate and p-value; MGWR bandwidth (nearest neighbours) and "
                  "the distribution of local coefficients; share of samples where the local coefficient is significant "
                  "(|t| above the corrected critical value).",
                  # the variables are standardised, so the OLS intercept is zero by construction (up to rounding)
                  display=res.coefficients.assign(
                      ols_beta=res.coefficients["ols_beta"].where(res.coefficients["covariate"] != "intercept", 0.0),
                      ols_p=res.coefficients["ols_p"].where(res.coefficients["covariate"] != "intercept"))[
                      ["covariate", "ols_beta", "ols_p", "mgwr_bandwidth", "mgwr_min",
                                            "mgwr_median", "mgwr_max", "share_significant"]].rename(
                      columns={"covariate": "Covariate", "ols_beta": "OLS β", "ols_p": "OLS p",
                               "mgwr_bandwidth": "MGWR bandwidth", "mgwr_min": "Local β min",
                               "mgwr_median": "Local β median", "mgwr_max": "Local β max",
                               "share_significant": "Share significant"}))
        out.table("mgwr_local", res.local.assign(sample_id=np.asarray(r.driver_index)),
                  "MGWR local coefficients and t-values.", in_report=False)
        out.markdown(f"**Drivers.** A multiscale geographically weighted regression of ln {resp} (methods in the "
                     f"appendix, @sec-appendix-spatial): {out.ref('mgwr_comparison')} compares the global and local models and "
                     f"{out.ref('mgwr_coefficients')} and {out.ref('spatial_mgwr', 'fig')} show how each predictor's "
                     "effect varies over the region. " + dr.results_text(res))
        fig = dr.coefficient_figure(res, coordinate_unit=cu)
        out.figure("spatial_mgwr", fig, f"MGWR local standardised coefficients for ln {resp} (title: bandwidth in "
                   "nearest neighbours); filled: significant at the corrected level, hollow: not significant.")
        plt.close(fig)
    if o.write_files:
        crs = geo.crs_or_none(p.data.crs)
        for m, mm in maps.items():
            bands = {"mean": mm.grid["mean"], "median": mm.grid["median"], "variance": mm.grid["variance"]}
            if np.isfinite(mm.threshold):
                bands["exceedance_probability"] = mm.grid["exceedance_probability"]
            try:
                geo.write_geotiff(out.file(f"spatial_{m}.tif"), x=mm.grid["x"], y=mm.grid["y"], bands=bands, crs=crs)
            except ValueError:   # an irregular grid: points only (GeoPackage below)
                out.files.remove(f"files/spatial_{m}.tif")
        gp = r.grid_predictions.pivot_table(index=["x", "y"], columns="metal",
                                            values=["mean", "median", "variance", "exceedance_probability"])
        gp.columns = [f"{metal}_{what}" for what, metal in gp.columns]
        layers = {"grid_predictions": gp.reset_index()}
        if len(r.hotspots):
            layers["sample_hotspots"] = r.hotspots.drop(columns=["lisa_quadrant"], errors="ignore")
        geo.write_geopackage(out.file("spatial.gpkg"), layers, crs=crs)


def _mapped_value_text(point: str, any_log: bool) -> str:
    """The sentence of the methods in brief on the value the maps show."""
    if point == "median":
        return ("The maps show each cell's median prediction, the value that minimises the expected absolute "
                "error by which the methods are scored" + ("; for metals modelled on the log scale it lies below "
                                                          "the mean, which the grid prediction files also give. " if any_log
                                                          else ". "))
    return ("The maps show each cell's mean prediction" + ("; for metals modelled on the log scale it lies above the "
                                                           "median, which the grid prediction files also give. " if any_log
                                                           else ". "))


def _cells_per_metal(counts: dict) -> str:
    """``{"Cd": 12, "Co": 0, "Zn": 12, "Cr": 3}`` as ``"12 cells for Cd and Zn; 3 cells for Cr"`` (metals with no
    cell dropped; empty when none has one)."""
    return "; ".join(f"{n:,} cells for {_and(ms)}" for n, ms in _group_by_value(counts).items())


def _group_by_value(d: dict) -> dict:
    """``{"Cd": "east", "Co": "east", "Cr": "centre"}`` as ``{"east": ["Cd", "Co"], "centre": ["Cr"]}`` (first-seen
    order; empty values dropped), so that a sentence names each place once."""
    out: dict = {}
    for k, v in d.items():
        if v:
            out.setdefault(v, []).append(k)
    return out
