"""Remote-sensing inversion of metal concentrations: Random Forest on multispectral rasters.

The scheme follows Zhao et al. (2026), section 2.3.1 [@zhao2026tarim]:

1. band values at each sample point are the mean of a 3 x 3 pixel window centred on the point
   (optionally bilinearly interpolated between pixel centres), with no-data and cloud pixels
   left out (:func:`focal_mean`, :func:`extract_at_points`);
2. a Random Forest regression [@breiman2001rf] of the concentration on the band values, tuned by
   grid search over the number of trees (100-500), the maximum depth (10-30) and the minimum leaf
   size (1-5), validated on a 70/30 hold-out split and by 10-fold cross-validation, with
   permutation importance per band [@breiman2001rf] (:func:`fit_inversion`);
3. pixel-wise prediction in blocks of rows so that memory stays bounded for large rasters, with a
   per-pixel uncertainty from the spread of the trees' predictions (:func:`predict_raster`);
4. post-processing: a 5 x 5 median filter, clipping to [0, P99 of the training concentrations]
   and masking by a land-cover layer (:func:`postprocess`), written as GeoTIFF
   (:func:`write_geotiff`).

Zhao et al. (2026) themselves note that their sample-to-predictor ratio (about 3:1) is below
the 10:1 recommended for machine-learning models; :func:`samples_per_predictor_warning`
produces that warning in plain words whenever it applies.

References
----------
Zhao, Y., Mu, Y., Luo, P. et al. (2026) Integrating multi-spectral remote sensing and machine
learning for quantifying and mapping heavy metal contamination in the Tarim River Basin, China.
Scientific Reports. https://doi.org/10.1038/s41598-026-38887-9

Breiman, L. (2001) Random forests. Machine Learning 45, 5-32.
https://doi.org/10.1023/A:1010933404324
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from .params import StageOptions

__all__ = [
    "RemoteSensingOptions",
    "RasterImage",
    "InversionResult",
    "read_multiband",
    "read_singleband",
    "focal_mean",
    "extract_at_points",
    "regression_metrics",
    "fit_inversion",
    "predict_raster",
    "median_filter_nan",
    "postprocess",
    "write_geotiff",
    "samples_per_predictor_warning",
    "DEFAULT_BAND_NAMES",
    "InversionMap",
    "points_to_raster_crs",
    "invert_metal",
    "metrics_display",
    "importance_wide",
    "methods_text",
    "plot_metal_maps",
    "plot_importance",
    "plot_observed_predicted",
]

DEFAULT_BAND_NAMES = ("blue", "green", "red", "nir")


class RemoteSensingOptions(StageOptions):
    """Options of the ``remote_sensing`` stage."""

    raster: str | None = Field(default=None, description="multiband GeoTIFF of surface reflectance "
                                                           "(path relative to the project root)")
    band_names: list[str] = Field(default_factory=lambda: list(DEFAULT_BAND_NAMES),
                                  description="names of the raster's bands, in band order")
    cloud_mask: str | None = Field(default=None, description="single-band GeoTIFF on the same grid; "
                                                             "non-zero = cloud (pixel left out)")
    landcover: str | None = Field(default=None, description="single-band land-cover GeoTIFF on the same grid")
    landcover_classes: dict[str, list[int]] = Field(
        default_factory=dict, description="medium -> land-cover classes its map covers (others are masked)")
    media: list[str] = Field(default_factory=list, description="media to model; empty = all of the region's")
    metals: list[str] = Field(default_factory=list, description="metals to model; empty = all of the region's")
    extraction: Literal["window", "bilinear"] = "window"
    window_px: int = Field(default=3, ge=1, le=15, description="side of the extraction window (odd)")
    n_trees: list[int] = Field(default_factory=lambda: [100, 500])
    max_depth: list[int] = Field(default_factory=lambda: [10, 30])
    min_samples_leaf: list[int] = Field(default_factory=lambda: [1, 5])
    test_fraction: float = Field(default=0.3, gt=0.05, lt=0.6)
    n_cv_folds: int = Field(default=10, ge=2, le=20)
    median_filter_px: int = Field(default=5, ge=1, le=15)
    clip_percentile: float = Field(default=99.0, gt=50, le=100)
    block_pixels: int = Field(default=262_144, ge=1024, description="pixels predicted at once (memory bound)")

    @field_validator("window_px", "median_filter_px")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 != 1:
            raise ValueError(f"an odd number of pixels (window centred on a pixel), got {v}")
        return v

    @field_validator("n_trees", "max_depth", "min_samples_leaf")
    @classmethod
    def _nonempty_positive(cls, v: list[int]) -> list[int]:
        if not v or any(x < 1 for x in v):
            raise ValueError(f"a non-empty list of positive integers, got {v}")
        return v


@dataclass
class RasterImage:
    """A multiband raster in memory.

    Attributes
    ----------
    bands : float32 array (n_bands, rows, cols); no-data and cloud pixels are NaN.
    transform : affine.Affine pixel -> map transform (of the pixel corner).
    crs : rasterio CRS (or None).
    band_names : names of the bands, in order.
    valid : bool array (rows, cols): True where every band has data and no cloud.
    """

    bands: np.ndarray
    transform: object
    crs: object
    band_names: list[str]
    valid: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.bands.shape[1], self.bands.shape[2]


def read_singleband(path: str | Path) -> tuple[np.ndarray, object, object]:
    """Band 1 of a GeoTIFF as an array, with its transform and CRS."""
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1), src.transform, src.crs


def read_multiband(path: str | Path, *, band_names: list[str] | None = None,
                   cloud_mask: str | Path | None = None) -> RasterImage:
    """Read a multiband GeoTIFF; no-data (and cloud, when a mask is given) pixels become NaN.

    Parameters
    ----------
    path : the GeoTIFF.
    band_names : one name per band; default ``blue, green, red, nir`` for a 4-band file, else
        ``b1, b2, ...``.
    cloud_mask : optional single-band GeoTIFF on the same grid; non-zero pixels are clouds.
    """
    import rasterio

    with rasterio.open(path) as src:
        arr = src.read(masked=True).astype(np.float32)  # float32 halves memory; the forest works in float32
        transform, crs, n = src.transform, src.crs, src.count
        shape = (src.height, src.width)
    if band_names is None:
        band_names = list(DEFAULT_BAND_NAMES) if n == 4 else [f"b{i + 1}" for i in range(n)]
    if len(band_names) != n:
        raise ValueError(f"band_names has {len(band_names)} names {band_names}; the raster {path} has {n} bands")
    bands = arr.filled(np.nan)
    valid = np.all(np.isfinite(bands), axis=0)
    if cloud_mask is not None:
        cm, ctr, _ = read_singleband(cloud_mask)
        if cm.shape != shape or not np.allclose(tuple(ctr), tuple(transform)):
            raise ValueError(f"cloud mask {cloud_mask} is {cm.shape} pixels with transform {tuple(ctr)[:6]}; "
                             f"expected the image grid {shape} with transform {tuple(transform)[:6]}")
        valid &= cm == 0
    bands[:, ~valid] = np.nan
    return RasterImage(bands=bands, transform=transform, crs=crs, band_names=list(band_names), valid=valid)


# --- extraction -----------------------------------------------------------------------------

def _valid_mask(b: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Pixels where every band of ``b`` (n_bands, rows, cols) is finite and ``valid`` (if given) is True."""
    v = np.all(np.isfinite(b), axis=0)
    if valid is not None:
        if np.shape(valid) != b.shape[1:]:
            raise ValueError(f"valid has shape {np.shape(valid)}; expected the raster shape {b.shape[1:]}")
        v &= np.asarray(valid, dtype=bool)
    return v

def focal_mean(bands: np.ndarray, *, valid: np.ndarray | None = None, window_px: int = 3) -> np.ndarray:
    """Mean of the valid pixels in a ``window_px`` x ``window_px`` window around each pixel.

    .. math::

        \\bar b(r, c) = \\frac{\\sum_{(i,j) \\in W(r,c)} v_{ij}\\, b_{ij}}{\\sum_{(i,j) \\in W(r,c)} v_{ij}}

    where :math:`W(r,c)` is the window centred on pixel :math:`(r, c)` (cut at the raster edge)
    and :math:`v_{ij}` is 1 for a valid pixel, 0 for no-data or cloud. NaN where the window
    holds no valid pixel. The window mean follows Zhao et al. (2026), section 2.3.1.

    Parameters
    ----------
    bands : array (n_bands, rows, cols) or (rows, cols).
    valid : bool array (rows, cols); default: pixels where every band is finite.
    window_px : odd window side in pixels.

    References
    ----------
    Zhao et al. (2026) https://doi.org/10.1038/s41598-026-38887-9
    """
    from scipy.ndimage import uniform_filter

    b = np.asarray(bands, dtype=np.float64)
    squeeze = b.ndim == 2
    if squeeze:
        b = b[None]
    if b.ndim != 3:
        raise ValueError(f"bands must be (n_bands, rows, cols) or (rows, cols), got shape {np.shape(bands)}")
    if window_px < 1 or window_px % 2 != 1:
        raise ValueError(f"window_px must be an odd positive integer, got {window_px}")
    v = _valid_mask(b, valid)
    w = v.astype(np.float64)
    # uniform_filter gives window means with zero padding; multiply by the window area for sums
    area = float(window_px * window_px)
    count = np.rint(uniform_filter(w, size=window_px, mode="constant", cval=0.0) * area)
    out = np.empty_like(b)
    for k in range(b.shape[0]):
        s = uniform_filter(np.where(v, b[k], 0.0), size=window_px, mode="constant", cval=0.0) * area
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.where(count > 0, s / np.maximum(count, 1.0), np.nan)
    return out[0] if squeeze else out


def extract_at_points(bands: np.ndarray, transform, x, y, *, band_names: list[str] | None = None,
                      valid: np.ndarray | None = None, window_px: int = 3,
                      method: Literal["window", "bilinear"] = "window") -> pd.DataFrame:
    """Band values at points: window mean of valid pixels, or its bilinear interpolation.

    ``method='window'``: the :func:`focal_mean` of the pixel that contains the point (computed on
    that pixel's window only, so the cost grows with the number of points, not the raster size).
    ``method='bilinear'``: the focal means at the four pixel centres around the point,
    interpolated bilinearly,

    .. math::

        b(x, y) = \\sum_{k=1}^{4} w_k \\bar b_k, \\qquad
        w = \\{(1-f_c)(1-f_r),\\ f_c(1-f_r),\\ (1-f_c) f_r,\\ f_c f_r\\}

    with :math:`f_c, f_r` the fractional offsets of the point from the upper-left pixel
    centre; neighbours without a value get weight 0 and the others are renormalised
    (Zhao et al. 2026, section 2.3.1: "bilinear interpolation for sites located between
    pixels"). Points outside the raster get NaN.

    Parameters
    ----------
    bands : (n_bands, rows, cols) array; invalid pixels NaN or flagged by ``valid``.
    transform : affine.Affine of the raster (pixel corner convention, as rasterio).
    x, y : point coordinates in the raster's CRS.
    band_names : column names (default b1, b2, ...).

    Returns
    -------
    DataFrame with one column per band and ``n_valid_px`` (valid pixels in the point's window).

    References
    ----------
    Zhao et al. (2026) https://doi.org/10.1038/s41598-026-38887-9
    """
    b = np.asarray(bands)
    if b.ndim != 3:
        raise ValueError(f"bands must be (n_bands, rows, cols), got shape {b.shape}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    names = list(band_names) if band_names is not None else [f"b{i + 1}" for i in range(b.shape[0])]
    if len(names) != b.shape[0]:
        raise ValueError(f"{len(names)} band names for {b.shape[0]} bands")
    if method not in ("window", "bilinear"):
        raise ValueError(f"method must be 'window' or 'bilinear', got {method!r}")
    v = _valid_mask(b, valid)
    if window_px < 1 or window_px % 2 != 1:
        raise ValueError(f"window_px must be an odd positive integer, got {window_px}")
    rows, cols = b.shape[1:]
    h = window_px // 2

    def window_mean(r: int, c: int) -> tuple[np.ndarray, int]:
        # the focal mean of one pixel, computed on its window only (no full-raster filter)
        ra, rb, ca, cb = max(0, r - h), min(rows, r + h + 1), max(0, c - h), min(cols, c + h + 1)
        m = v[ra:rb, ca:cb]
        n = int(m.sum())
        if n == 0:
            return np.full(b.shape[0], np.nan), 0
        return b[:, ra:rb, ca:cb][:, m].astype(np.float64).mean(axis=1), n

    inv = ~transform  # fractional pixel coordinates (pixel corners at integers)
    colf = inv.a * x + inv.b * y + inv.c
    rowf = inv.d * x + inv.e * y + inv.f
    inside = (colf >= 0) & (colf < cols) & (rowf >= 0) & (rowf < rows)
    out = np.full((len(x), b.shape[0]), np.nan)
    nvalid = np.zeros(len(x), dtype=int)
    r0 = np.floor(np.where(inside, rowf, 0)).astype(int)
    c0 = np.floor(np.where(inside, colf, 0)).astype(int)
    for i in np.flatnonzero(inside):
        mean, nvalid[i] = window_mean(r0[i], c0[i])
        if method == "window":
            out[i] = mean
            continue
        # pixel-centre coordinates: centre of pixel (r, c) is at (r + 0.5, c + 0.5)
        rc, cc = rowf[i] - 0.5, colf[i] - 0.5
        ra, ca = int(np.floor(rc)), int(np.floor(cc))
        fr, fc = rc - ra, cc - ca
        acc = np.zeros(b.shape[0])
        wsum = 0.0
        for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)),
                            (1, 1, fr * fc)):
            rr, cc2 = ra + dr, ca + dc
            if wgt == 0 or not (0 <= rr < rows and 0 <= cc2 < cols):
                continue
            val = window_mean(rr, cc2)[0]
            if np.all(np.isfinite(val)):
                acc += wgt * val
                wsum += wgt
        if wsum > 0:
            out[i] = acc / wsum
    df = pd.DataFrame(out, columns=names)
    df["n_valid_px"] = nvalid
    return df


# --- model ------------------------------------------------------------------------------------
def regression_metrics(observed, predicted) -> dict[str, float]:
    """R2, RMSE and MAE of predictions.

    .. math::

        R^2 = 1 - \\frac{\\sum (y_i - \\hat y_i)^2}{\\sum (y_i - \\bar y)^2},\\quad
        \\mathrm{RMSE} = \\sqrt{\\tfrac{1}{n}\\sum (y_i - \\hat y_i)^2},\\quad
        \\mathrm{MAE} = \\tfrac{1}{n}\\sum |y_i - \\hat y_i|

    (Zhao et al. 2026, eqs. 2-4). R2 is NaN for fewer than two observations or constant
    observations. Computed with scikit-learn's metrics.

    References
    ----------
    Zhao et al. (2026) https://doi.org/10.1038/s41598-026-38887-9
    """
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    yo = np.asarray(observed, dtype=float)
    yp = np.asarray(predicted, dtype=float)
    if yo.shape != yp.shape or yo.ndim != 1 or len(yo) == 0:
        raise ValueError(f"observed and predicted must be 1-D of equal non-zero length, got {yo.shape}, {yp.shape}")
    r2 = float(r2_score(yo, yp)) if len(yo) >= 2 and np.ptp(yo) > 0 else float("nan")
    return {"r2": r2, "rmse": float(np.sqrt(mean_squared_error(yo, yp))), "mae": float(mean_absolute_error(yo, yp))}


@dataclass
class InversionResult:
    """A fitted remote-sensing inversion for one metal and medium.

    Attributes
    ----------
    model : RandomForestRegressor refitted on all samples with the tuned hyperparameters
        (used for mapping).
    holdout_model : the forest fitted on the training part of the 70/30 split.
    best_params : tuned hyperparameters (n_estimators, max_depth, min_samples_leaf).
    metrics : DataFrame split, r2, rmse, mae, n_train, n_test; splits ``train``, ``test``
        (hold-out), ``cv`` (pooled out-of-fold) and ``cv_fold_NN`` (each fold).
    importance : DataFrame band, importance_mean, importance_sd (permutation importance on the
        hold-out set: mean decrease of R2 over ``n_repeats`` shuffles).
    predictions : DataFrame observed, holdout_predicted (NaN on training rows), cv_predicted,
        split ('train'/'test').
    clip_max : the ``clip_percentile`` percentile of the training concentrations.
    n_samples, n_predictors : sample and predictor counts.
    grid_results : DataFrame of the grid search (params, mean and sd of the inner-CV RMSE).
    """

    model: object
    holdout_model: object
    best_params: dict
    metrics: pd.DataFrame
    importance: pd.DataFrame
    predictions: pd.DataFrame
    clip_max: float
    n_samples: int
    n_predictors: int
    grid_results: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def samples_per_predictor(self) -> float:
        return self.n_samples / self.n_predictors


def fit_inversion(X: pd.DataFrame, y, *, seed: int, n_trees=(100, 500), max_depth=(10, 30),
                  min_samples_leaf=(1, 5), test_fraction: float = 0.3, n_cv_folds: int = 10,
                  inner_folds: int = 3, clip_percentile: float = 99.0, n_repeats: int = 10,
                  n_jobs: int = 1) -> InversionResult:
    """Tune, validate and fit a Random Forest inversion (Zhao et al. 2026, section 2.3.1).

    The forest is :math:`f(x) = \\frac{1}{K}\\sum_{k=1}^K T_k(x)` (Breiman 2001; Zhao et al.
    2026, eq. 1). Steps, all seeded by ``seed``:

    1. 70/30 split (``test_fraction``); grid search over ``n_trees`` x ``max_depth`` x
       ``min_samples_leaf`` by ``inner_folds``-fold CV on the training part (RMSE);
    2. hold-out metrics on the test part; permutation importance of each band on the test part
       (``n_repeats`` shuffles, decrease of R2);
    3. ``n_cv_folds``-fold CV of the tuned forest on all samples (pooled and per-fold metrics);
    4. refit on all samples for mapping; ``clip_max`` = ``clip_percentile`` of all training values.

    Parameters
    ----------
    X : DataFrame of band values (rows without NaN).
    y : concentrations, one per row of X.
    seed : seed of the split, the folds, the forests and the permutations.

    References
    ----------
    Breiman (2001) https://doi.org/10.1023/A:1010933404324 ;
    Zhao et al. (2026) https://doi.org/10.1038/s41598-026-38887-9
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import GridSearchCV, KFold, train_test_split

    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"X must be a DataFrame of band values, got {type(X).__name__}")
    yv = np.asarray(y, dtype=float)
    if yv.ndim != 1 or len(yv) != len(X):
        raise ValueError(f"y must be 1-D with one value per row of X ({len(X)}), got shape {yv.shape}")
    if X.isna().any().any() or not np.all(np.isfinite(yv)):
        raise ValueError("X and y must not contain NaN: drop samples whose window has no valid pixel first")
    n, p = X.shape
    n_test = int(round(test_fraction * n))
    if n < 8 or n_test < 2 or n - n_test < 4:
        raise ValueError(f"need at least 8 samples for a 70/30 split with CV, got {n}")
    Xv = X.to_numpy(dtype=float)
    idx_train, idx_test = train_test_split(np.arange(n), test_size=n_test, random_state=seed)
    grid = {"n_estimators": list(n_trees), "max_depth": list(max_depth), "min_samples_leaf": list(min_samples_leaf)}
    inner = KFold(n_splits=min(inner_folds, len(idx_train)), shuffle=True, random_state=seed)
    gs = GridSearchCV(RandomForestRegressor(random_state=seed, n_jobs=n_jobs), grid, cv=inner,
                      scoring="neg_root_mean_squared_error", refit=True)
    gs.fit(Xv[idx_train], yv[idx_train])
    best = dict(gs.best_params_)
    holdout_model = gs.best_estimator_
    res = pd.DataFrame(gs.cv_results_)
    grid_results = pd.DataFrame({
        "n_estimators": res["param_n_estimators"].astype(int), "max_depth": res["param_max_depth"].astype(int),
        "min_samples_leaf": res["param_min_samples_leaf"].astype(int),
        "rmse_mean": -res["mean_test_score"], "rmse_sd": res["std_test_score"], "rank": res["rank_test_score"]})
    rows = []
    for split, ids in (("train", idx_train), ("test", idx_test)):
        m = regression_metrics(yv[ids], holdout_model.predict(Xv[ids]))
        rows.append({"split": split, **m, "n_train": len(idx_train), "n_test": len(ids) if split == "test" else 0})
    pi = permutation_importance(holdout_model, Xv[idx_test], yv[idx_test], n_repeats=n_repeats,
                                random_state=seed, scoring="r2")
    importance = pd.DataFrame({"band": list(X.columns), "importance_mean": pi.importances_mean,
                               "importance_sd": pi.importances_std})
    # k-fold CV of the tuned forest on all samples
    k = min(n_cv_folds, n)
    cv = KFold(n_splits=k, shuffle=True, random_state=seed)
    cv_pred = np.empty(n)
    for f, (tr, te) in enumerate(cv.split(Xv), start=1):
        rf = RandomForestRegressor(random_state=seed, n_jobs=n_jobs, **best).fit(Xv[tr], yv[tr])
        cv_pred[te] = rf.predict(Xv[te])
        m = regression_metrics(yv[te], cv_pred[te])
        rows.append({"split": f"cv_fold_{f:02d}", **m, "n_train": len(tr), "n_test": len(te)})
    rows.insert(2, {"split": "cv", **regression_metrics(yv, cv_pred), "n_train": n - n // k, "n_test": n})
    model = RandomForestRegressor(random_state=seed, n_jobs=n_jobs, **best).fit(Xv, yv)
    hold_pred = np.full(n, np.nan)
    hold_pred[idx_test] = holdout_model.predict(Xv[idx_test])
    split = np.array(["train"] * n, dtype=object)
    split[idx_test] = "test"
    preds = pd.DataFrame({"observed": yv, "holdout_predicted": hold_pred, "cv_predicted": cv_pred, "split": split},
                         index=X.index)
    return InversionResult(model=model, holdout_model=holdout_model, best_params=best,
                           metrics=pd.DataFrame(rows), importance=importance, predictions=preds,
                           clip_max=float(np.percentile(yv, clip_percentile)), n_samples=n, n_predictors=p,
                           grid_results=grid_results)


def samples_per_predictor_warning(n_samples: int, n_predictors: int, *, minimum: float = 10.0) -> str | None:
    """A plain-words warning when there are fewer than ``minimum`` samples per predictor, else None.

    Zhao et al. (2026, section 4.1.1) note that a sample-to-predictor ratio below the 10:1
    recommended for machine-learning models compromises generalisation.
    """
    if n_predictors < 1:
        raise ValueError(f"n_predictors must be >= 1, got {n_predictors}")
    ratio = n_samples / n_predictors
    if ratio >= minimum:
        return None
    return (f"Warning: only {n_samples} samples for {n_predictors} predictors ({ratio:.1f} per predictor, "
            f"below the {minimum:g} per predictor recommended for machine-learning models). The model may fit "
            f"noise, its validation scores are unreliable, and the map should be read as a rough pattern, "
            f"not as concentrations.")


# --- prediction over the raster -------------------------------------------------------------------
def _read_rows(source, r0: int, r1: int) -> np.ndarray:
    """Bands of rows r0:r1 from an array (n_bands, rows, cols) or an open rasterio dataset."""
    if isinstance(source, np.ndarray):
        return source[:, r0:r1, :].astype(np.float64)
    from rasterio.windows import Window

    block = source.read(window=Window(0, r0, source.width, r1 - r0), masked=True).astype(np.float64)
    return block.filled(np.nan)


def predict_raster(model, bands, *, valid: np.ndarray | None = None,
                   block_pixels: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-wise forest prediction and its per-pixel spread, computed in blocks of rows.

    For each valid pixel, :math:`\\hat y = \\frac1K \\sum_k T_k(x)` and the uncertainty
    :math:`s = \\sqrt{\\frac1K \\sum_k (T_k(x) - \\hat y)^2}`, the standard deviation of the
    individual trees' predictions (the "RF ensemble variance" of Zhao et al. 2026). Rows are
    processed ``block_pixels // cols`` at a time (at least one row), reading them from the array
    or the open rasterio dataset, so the tree-prediction matrix never exceeds
    ``n_trees x block_pixels`` values. The mean over trees is computed from the stacked tree
    predictions (not ``model.predict``, whose multi-threaded accumulation order may vary), so
    the result does not depend on the block size: block-wise prediction equals whole-raster
    prediction exactly.

    Parameters
    ----------
    model : a fitted sklearn RandomForestRegressor (anything with ``estimators_``).
    bands : array (n_bands, rows, cols) or an open rasterio dataset (no-data read as NaN).
    valid : optional bool array (rows, cols); pixels where it is False are NaN in the output
        (pixels with any NaN band are always NaN).
    block_pixels : pixels per block.

    Returns
    -------
    (prediction, uncertainty) : two float64 arrays (rows, cols), NaN outside valid pixels.

    References
    ----------
    Breiman (2001) https://doi.org/10.1023/A:1010933404324 ;
    Zhao et al. (2026) https://doi.org/10.1038/s41598-026-38887-9
    """
    if isinstance(bands, np.ndarray):
        if bands.ndim != 3:
            raise ValueError(f"bands must be (n_bands, rows, cols), got shape {bands.shape}")
        rows, cols = bands.shape[1:]
    else:
        rows, cols = bands.height, bands.width
    if valid is not None and np.shape(valid) != (rows, cols):
        raise ValueError(f"valid has shape {np.shape(valid)}; expected {(rows, cols)}")
    if block_pixels < 1:
        raise ValueError(f"block_pixels must be >= 1, got {block_pixels}")
    trees = getattr(model, "estimators_", None)
    if not trees:
        raise ValueError("model must be a fitted forest with estimators_ (e.g. RandomForestRegressor)")
    step = max(1, block_pixels // cols)
    pred = np.full((rows, cols), np.nan)
    unc = np.full((rows, cols), np.nan)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        blk = _read_rows(bands, r0, r1)  # (n_bands, h, cols)
        ok = np.all(np.isfinite(blk), axis=0)
        if valid is not None:
            ok &= np.asarray(valid[r0:r1], dtype=bool)
        if not ok.any():
            continue
        X = blk[:, ok].T
        tp = np.stack([t.predict(X) for t in trees])  # (K, n_px)
        mean = tp.mean(axis=0)
        sd = np.sqrt(((tp - mean) ** 2).mean(axis=0))
        pv, uv = pred[r0:r1], unc[r0:r1]
        pv[ok] = mean
        uv[ok] = sd
    return pred, unc


def median_filter_nan(array: np.ndarray, *, size: int = 5, block_rows: int = 256) -> np.ndarray:
    """Median of the finite values in a ``size`` x ``size`` window; NaN pixels stay NaN.

    .. math:: \\tilde y(r, c) = \\operatorname{median}\\{ y_{ij} : (i, j) \\in W(r, c),\\ y_{ij}\\ \\text{finite} \\}

    Written with numpy's ``sliding_window_view`` and ``nanmedian`` (scipy's ``median_filter``
    does not skip NaN, which would spread masks); rows are processed ``block_rows`` at a time
    to bound memory. The 5 x 5 median filter is the post-processing of Zhao et al. (2026).

    References
    ----------
    Zhao et al. (2026) https://doi.org/10.1038/s41598-026-38887-9
    """
    from numpy.lib.stride_tricks import sliding_window_view

    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"array must be 2-D (rows, cols), got shape {a.shape}")
    if size < 1 or size % 2 != 1:
        raise ValueError(f"size must be an odd positive integer, got {size}")
    h = size // 2
    pad = np.pad(a, h, mode="constant", constant_values=np.nan)
    out = np.full_like(a, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows -> NaN, as intended
        for r0 in range(0, a.shape[0], block_rows):
            r1 = min(a.shape[0], r0 + block_rows)
            win = sliding_window_view(pad[r0:r1 + 2 * h], (size, size))
            out[r0:r1] = np.nanmedian(win, axis=(-2, -1))
    out[~np.isfinite(a)] = np.nan
    return out


def postprocess(prediction: np.ndarray, *, clip_max: float, median_px: int = 5,
                landcover: np.ndarray | None = None, landcover_classes: list[int] | None = None) -> np.ndarray:
    """Median filter, clip to [0, ``clip_max``], mask land-cover classes outside ``landcover_classes``.

    The three post-processing steps of Zhao et al. (2026, section 2.3.1 (4)): median filtering
    (5 x 5) against random noise; removal of implausible values above the 99th percentile of the
    training data (here: clipped to it, and to 0 below); masking of non-target surfaces by land
    cover. Returns a new array.

    References
    ----------
    Zhao et al. (2026) https://doi.org/10.1038/s41598-026-38887-9
    """
    if not np.isfinite(clip_max) or clip_max < 0:
        raise ValueError(f"clip_max must be a finite number >= 0, got {clip_max}")
    out = median_filter_nan(prediction, size=median_px) if median_px > 1 else np.array(prediction, dtype=float)
    out = np.clip(out, 0.0, clip_max)
    if landcover is not None and landcover_classes:
        lc = np.asarray(landcover)
        if lc.shape != out.shape:
            raise ValueError(f"landcover has shape {lc.shape}; expected the prediction's {out.shape}")
        out[~np.isin(lc, list(landcover_classes))] = np.nan
    return out


def write_geotiff(path: str | Path, array: np.ndarray, *, transform, crs, description: str = "") -> Path:
    """Write one float32 band (NaN = no-data) as a compressed GeoTIFF."""
    import rasterio

    a = np.asarray(array, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"array must be 2-D, got shape {a.shape}")
    path = Path(path)
    with rasterio.open(path, "w", driver="GTiff", height=a.shape[0], width=a.shape[1], count=1, dtype="float32",
                       crs=crs, transform=transform, nodata=np.nan, compress="deflate") as dst:
        dst.write(a, 1)
        if description:
            dst.set_band_description(1, description)
    return path


# --- stage helpers -------------------------------------------------------------------------------
@dataclass
class InversionMap:
    """One metal's inversion in one medium, with its maps.

    Attributes
    ----------
    metal, medium, unit : what was modelled.
    result : the :class:`InversionResult`.
    prediction, uncertainty : raw per-pixel forest mean and tree spread (NaN outside valid pixels).
    processed : the post-processed map (median filter, clipping, land-cover mask).
    n_points, n_dropped : samples used, and samples dropped (no valid pixel in the window or no value).
    """

    metal: str
    medium: str
    unit: str
    result: InversionResult
    prediction: np.ndarray
    uncertainty: np.ndarray
    processed: np.ndarray
    n_points: int
    n_dropped: int

    def metrics_table(self) -> pd.DataFrame:
        """The rows of ``tables/rs_metrics.csv`` (metal, medium, split, r2, rmse, mae, n_train, n_test)."""
        m = self.result.metrics.assign(metal=self.metal, medium=self.medium)
        return m[["metal", "medium", "split", "r2", "rmse", "mae", "n_train", "n_test"]]


def points_to_raster_crs(x, y, *, from_crs: str, raster_crs) -> tuple[np.ndarray, np.ndarray, str]:
    """Sample coordinates in the raster's CRS (pyproj), and a note on what was done.

    With ``from_crs='local'`` or a raster without CRS the coordinates are used as they are.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if from_crs == "local" or raster_crs is None:
        return x, y, "sample coordinates used as given (no CRS to compare with the raster's)"
    from pyproj import CRS, Transformer

    src, dst = CRS.from_user_input(from_crs), CRS.from_user_input(str(raster_crs))
    if src == dst:
        return x, y, f"samples and raster share {from_crs}"
    tx, ty = Transformer.from_crs(src, dst, always_xy=True).transform(x, y)
    note = f"sample coordinates transformed from {from_crs} to the raster's {dst.to_string()}"
    return np.asarray(tx), np.asarray(ty), note


def invert_metal(image: RasterImage, features: pd.DataFrame, values, *, metal: str, medium: str, unit: str, seed: int,
                 n_trees=(100, 500), max_depth=(10, 30), min_samples_leaf=(1, 5), test_fraction: float = 0.3,
                 n_cv_folds: int = 10, clip_percentile: float = 99.0, median_filter_px: int = 5,
                 landcover: np.ndarray | None = None, landcover_classes: list[int] | None = None,
                 block_pixels: int = 262_144, n_repeats: int = 10, n_jobs: int = 1) -> InversionMap:
    """Fit :func:`fit_inversion` on the extracted band values and map the metal over the raster.

    ``features`` holds the band columns from :func:`extract_at_points` (one row per sample);
    ``values`` the concentrations. Samples with a missing band value or concentration are
    dropped. The map is :func:`predict_raster` of the forest refitted on all samples, then
    :func:`postprocess`.
    """
    yv = np.asarray(values, dtype=float)
    X = features[image.band_names]
    ok = X.notna().all(axis=1).to_numpy() & np.isfinite(yv)
    res = fit_inversion(X[ok], yv[ok], seed=seed, n_trees=n_trees, max_depth=max_depth,
                        min_samples_leaf=min_samples_leaf, test_fraction=test_fraction, n_cv_folds=n_cv_folds,
                        clip_percentile=clip_percentile, n_repeats=n_repeats, n_jobs=n_jobs)
    pred, unc = predict_raster(res.model, image.bands, valid=image.valid, block_pixels=block_pixels)
    proc = postprocess(pred, clip_max=res.clip_max, median_px=median_filter_px, landcover=landcover,
                       landcover_classes=landcover_classes)
    return InversionMap(metal=metal, medium=medium, unit=unit, result=res, prediction=pred, uncertainty=unc,
                        processed=proc, n_points=int(ok.sum()), n_dropped=int((~ok).sum()))


def _sig2(v: float) -> str:
    """Two significant digits without exponent notation (220, 0.0045)."""
    return f"{float(f'{v:.2g}'):g}"


def metrics_display(maps: list[InversionMap]) -> pd.DataFrame:
    """Reader's table: hold-out and 10-fold CV scores with the fold spread, per metal and medium."""
    rows = []
    for m in maps:
        t = m.result.metrics.set_index("split")
        folds = t[t.index.str.startswith("cv_fold")]
        bp = m.result.best_params
        rows.append({
            "Metal": m.metal, "Medium": m.medium, "Unit": m.unit, "n": m.n_points,
            "Samples per band": m.result.samples_per_predictor,
            "Trees / depth / leaf": f"{bp['n_estimators']} / {bp['max_depth']} / {bp['min_samples_leaf']}",
            "Hold-out R²": t.loc["test", "r2"], "Hold-out RMSE": t.loc["test", "rmse"],
            "Hold-out MAE": t.loc["test", "mae"], "CV R² (pooled)": t.loc["cv", "r2"],
            "CV RMSE (mean ± sd of folds)": f"{folds['rmse'].mean():.3g} ± {_sig2(folds['rmse'].std(ddof=1))}",
        })
    return pd.DataFrame(rows)


def importance_wide(maps: list[InversionMap]) -> pd.DataFrame:
    """Permutation importance (mean decrease of hold-out R2) as metal-medium rows x band columns."""
    rows = []
    for m in maps:
        r = {"metal": m.metal, "medium": m.medium}
        r.update(dict(zip(m.result.importance["band"], m.result.importance["importance_mean"])))
        rows.append(r)
    return pd.DataFrame(rows)


def methods_text(*, n_trees, max_depth, min_samples_leaf, test_fraction: float, n_cv_folds: int, window_px: int,
                 extraction: str, median_filter_px: int, clip_percentile: float, landcover: bool,
                 band_names: list[str], raster_name: str, shape: tuple[int, int], pixel_size: float,
                 crs_note: str, n_repeats: int = 10, pixel_unit: str = "map units") -> str:
    """Methods paragraph of the ``remote_sensing`` report section (formulas and citations)."""
    ext = (f"the mean of the valid pixels in a {window_px} × {window_px} window centred on the sample's pixel"
           if extraction == "window" else
           f"the {window_px} × {window_px} window means at the four pixel centres around the sample, interpolated "
           "bilinearly")
    return f"""
**Methods.** Concentrations were mapped from the multispectral image `{raster_name}` ({', '.join(band_names)};
{shape[0]} × {shape[1]} pixels of {pixel_size:g} {pixel_unit}) following the Random Forest inversion scheme of
Zhao et al. [@zhao2026tarim]. The band values of each sample were {ext}; no-data and cloud-flagged pixels were
left out ({crs_note}). A Random Forest regression [@breiman2001rf], $f(\\mathbf x) = \\frac1K\\sum_{{k=1}}^K
T_k(\\mathbf x)$, related each metal's concentration to the band values. Its hyperparameters were tuned by grid
search (trees {'/'.join(map(str, n_trees))}, maximum depth {'/'.join(map(str, max_depth))}, minimum leaf size
{'/'.join(map(str, min_samples_leaf))}; 3-fold CV, RMSE) on a random {100 * (1 - test_fraction):.0f} % training
split, and scored on the remaining {100 * test_fraction:.0f} % (hold-out) and by {n_cv_folds}-fold
cross-validation of the tuned forest on all samples (scikit-learn [@pedregosa2011sklearn]). The importance of
each band is its permutation importance: the mean decrease of the hold-out $R^2$ when the band's values are
shuffled ({n_repeats} repeats). The forest refitted on all samples was applied to every valid pixel in
blocks of rows; the per-pixel uncertainty is the standard deviation of the individual trees' predictions,
$s(\\mathbf x) = \\sqrt{{\\frac1K\\sum_k (T_k(\\mathbf x) - f(\\mathbf x))^2}}$. The maps were smoothed by a
{median_filter_px} × {median_filter_px} median filter, clipped to $[0, P_{{{clip_percentile:g}}}]$ of the
training concentrations{', and restricted to the land-cover classes of each medium' if landcover else ''}.
Scores: $R^2$, RMSE and MAE as in Zhao et al. [@zhao2026tarim], eqs. 2-4.
"""


def plot_metal_maps(maps: list[InversionMap], image: RasterImage, *, coordinate_unit: str = "m"):
    """One row per medium: post-processed prediction (left) and tree-spread uncertainty (right)."""
    import matplotlib.pyplot as plt

    rows, cols = image.shape
    t = image.transform
    extent = (t.c, t.c + t.a * cols, t.f + t.e * rows, t.f)
    fig, axes = plt.subplots(len(maps), 2, figsize=(7.0, 2.9 * len(maps)), squeeze=False)
    for (ax1, ax2), m in zip(axes, maps):
        unc = np.where(np.isfinite(m.processed), m.uncertainty, np.nan)
        for ax, arr, cmap, lab in ((ax1, m.processed, "viridis", f"{m.metal} ({m.unit})"),
                                   (ax2, unc, "magma", f"tree spread ({m.unit})")):
            im = ax.imshow(arr, extent=extent, cmap=cmap, interpolation="nearest")
            fig.colorbar(im, ax=ax, label=lab, shrink=0.85)
            ax.set_xticks([])
            ax.set_yticks([])
        ax1.set_title(f"{m.metal} in {m.medium}: prediction")
        ax2.set_title(f"{m.metal} in {m.medium}: uncertainty")
    fig.tight_layout()
    return fig


def plot_importance(maps: list[InversionMap]):
    """Permutation importance of each band (bars, error: sd over repeats), one panel per medium."""
    import matplotlib.pyplot as plt

    media = list(dict.fromkeys(m.medium for m in maps))
    fig, axes = plt.subplots(1, len(media), figsize=(3.5 * len(media), 3.0), squeeze=False, sharey=True)
    for ax, med in zip(axes[0], media):
        ms = [m for m in maps if m.medium == med]
        bands = list(ms[0].result.importance["band"])
        w = 0.8 / len(ms)
        for i, m in enumerate(ms):
            imp = m.result.importance
            ax.bar(np.arange(len(bands)) + (i - (len(ms) - 1) / 2) * w, imp["importance_mean"], width=w * 0.95,
                   yerr=imp["importance_sd"], capsize=1.5, label=m.metal, error_kw={"lw": 0.6})
        ax.set_xticks(range(len(bands)), bands)
        ax.axhline(0, color="0.4", lw=0.6)
        ax.set_title(med)
    axes[0][0].set_ylabel("permutation importance (decrease of R²)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_observed_predicted(maps: list[InversionMap]):
    """Observed vs 10-fold CV predicted concentrations, one panel per metal and medium (hold-out points marked)."""
    import matplotlib.pyplot as plt

    n = len(maps)
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.75 * ncol + 0.3, 1.8 * nrow + 0.3), squeeze=False)
    for ax, m in zip(axes.ravel(), maps):
        p = m.result.predictions
        ax.scatter(p["observed"], p["cv_predicted"], s=7, color="tab:blue", label="CV")
        te = p["split"] == "test"
        ax.scatter(p.loc[te, "observed"], p.loc[te, "holdout_predicted"], s=9, facecolor="none",
                   edgecolor="tab:red", lw=0.7, label="hold-out")
        lo, hi = float(p[["observed", "cv_predicted"]].min().min()), float(p[["observed", "cv_predicted"]].max().max())
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.6, ls="--")
        ax.set_title(f"{m.metal}, {m.medium} ({m.unit})", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes[0][0].legend(fontsize=6)
    fig.supxlabel("observed", fontsize=8)
    fig.supylabel("predicted", fontsize=8)
    fig.tight_layout()
    return fig
