"""Remote-sensing inversion of metal concentrations: quantile regression forests on multispectral rasters.

The scheme follows Zhao et al. (2026), section 2.3.1 [@zhao2026tarim], with honest validation and
calibrated uncertainty added:

1. band values at each sample point are the mean of a 3 x 3 pixel window centred on the point
   (optionally bilinearly interpolated between pixel centres), with no-data and cloud pixels
   left out (:func:`focal_mean`, :func:`extract_at_points`);
2. a Random Forest regression [@breiman2001rf] of the concentration on the band values, grown as
   a quantile regression forest (Meinshausen 2006) so that conditional quantiles can be read
   off; hyperparameters tuned by grid search (trees, maximum depth, minimum leaf size);
3. nested, spatially blocked validation (:func:`fit_inversion`): whole k-means clusters of the
   samples are held out in the outer folds, and the tuning and the interval calibration happen on
   inner folds that also hold out whole clusters; the prediction interval is the conformalized
   quantile interval (Romano et al. 2019), whose coverage is measured on the outer held-out samples;
   permutation importance per band on the held-out folds. Zhao et al. used a random 70/30 split
   and random 10-fold CV, which overstate skill on spatially autocorrelated samples (Roberts et
   al. 2017), and the spread of the trees as uncertainty, which is not a predictive interval;
4. pixel-wise prediction in blocks of rows so that memory stays bounded for large rasters, with
   the calibrated interval per pixel (:func:`predict_raster`, :func:`predict_raster_interval`),
   only for a metal whose held-out skill is positive;
5. post-processing: a 5 x 5 median filter, clipping to [0, P99 of the training concentrations]
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

Meinshausen, N. (2006) Quantile regression forests. Journal of Machine Learning Research 7,
983-999. https://jmlr.org/papers/v7/meinshausen06a.html

Romano, Y., Patterson, E., Candès, E.J. (2019) Conformalized quantile regression. NeurIPS 32.
https://doi.org/10.48550/arXiv.1905.03222

Roberts, D.R. et al. (2017) Cross-validation strategies for data with temporal, spatial,
hierarchical, or phylogenetic structure. Ecography 40, 913-929. https://doi.org/10.1111/ecog.02881
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .ml import regression_metrics  # R2, RMSE, MAE (Zhao et al. 2026, eqs. 2-4), shared with the drivers stage

__all__ = [
    "RasterImage",
    "InversionResult",
    "read_multiband",
    "read_singleband",
    "focal_mean",
    "extract_at_points",
    "regression_metrics",
    "conformal_offset",
    "TunedForest",
    "tune_quantile_forest",
    "fit_inversion",
    "predict_raster_interval",
    "coverage_table",
    "r2_ceiling",
    "compare_with_truth",
    "truth_text",
    "results_text",
    "CV_SCHEME",
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
    """Band 1 of a GeoTIFF as an array, with its transform and CRS.

    Parameters
    ----------
    path : str or pathlib.Path
        GeoTIFF file.

    Returns
    -------
    tuple of (numpy.ndarray, affine.Affine, rasterio.crs.CRS)
        Band 1 values (rows x cols), the affine transform and the CRS (None when absent).
    """
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

    Returns
    -------
    RasterImage
        Bands (n_bands x rows x cols, NaN outside valid pixels), transform, CRS, band names and valid mask.
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

    Returns
    -------
    numpy.ndarray
        Window means, same shape as ``bands``.

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
def conformal_offset(scores, *, level: float) -> float:
    r"""Split-conformal correction: the :math:`\lceil (n+1)\,\text{level} \rceil`-th smallest score.

    For conformalized quantile regression (Romano et al. 2019) the scores are
    :math:`E_i = \max(\hat q_{lo}(x_i) - y_i,\ y_i - \hat q_{hi}(x_i))` on samples the quantile
    model did not see; widening the model's interval by this offset,
    :math:`[\hat q_{lo}(x) - c,\ \hat q_{hi}(x) + c]`, covers a new exchangeable sample with
    probability at least ``level``. When :math:`\lceil (n+1)\,\text{level} \rceil > n` the largest
    score is used (the guarantee then does not hold; with ``n`` of about 20 or more at level 0.9
    this does not happen).

    Parameters
    ----------
    scores : conformity scores of held-out samples.
    level : nominal coverage in (0, 1).

    Returns
    -------
    float (may be negative: the model's interval is then narrowed).

    References
    ----------
    Romano, Patterson and Candès (2019) Conformalized quantile regression. NeurIPS 32.
    https://doi.org/10.48550/arXiv.1905.03222
    """
    e = np.sort(np.asarray(scores, dtype=float))
    if e.ndim != 1 or len(e) == 0 or not np.all(np.isfinite(e)):
        raise ValueError(f"scores must be a non-empty 1-D array of finite values, got shape {e.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    k = int(np.ceil((len(e) + 1) * level))
    return float(e[min(k, len(e)) - 1])


def _qrf(params: dict, seed: int, n_jobs: int):
    from quantile_forest import RandomForestQuantileRegressor

    return RandomForestQuantileRegressor(random_state=seed, n_jobs=n_jobs, **params)


def _qrf_predict(model, X: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean prediction and the (1-level)/2, (1+level)/2 conditional quantiles of a quantile forest."""
    mean = np.asarray(model.predict(X, quantiles="mean"), dtype=float)
    q = np.asarray(model.predict(X, quantiles=[(1 - level) / 2, (1 + level) / 2]), dtype=float)
    return mean, q[:, 0], q[:, 1]


@dataclass
class TunedForest:
    """A quantile forest tuned by spatial-block inner CV, with its conformal correction.

    Attributes
    ----------
    model : the RandomForestQuantileRegressor refitted on all the given samples.
    params : the chosen hyperparameters.
    offset : conformal correction of the interval (:func:`conformal_offset` of the inner
        out-of-fold scores of the chosen hyperparameters).
    search : DataFrame one row per combination: hyperparameters, rmse_mean, rmse_sd (inner folds).
    """

    model: object
    params: dict
    offset: float
    search: pd.DataFrame


def tune_quantile_forest(X: np.ndarray, y: np.ndarray, *, groups, seed: int, level: float, n_trees=(100,),
                         max_depth=(30,), min_samples_leaf=(1, 5), inner_folds: int = 3,
                         n_jobs: int = 1) -> TunedForest:
    """Grid-search a quantile regression forest on inner spatial-block folds and calibrate its interval.

    Every combination of ``n_trees`` x ``max_depth`` x ``min_samples_leaf`` is fitted on the inner
    training folds (whole spatial blocks held out, :func:`hmlib.ml.inner_splits`) and scored by
    the RMSE of its mean prediction; the winner's out-of-fold conformity scores give the
    conformal correction of its ``level`` interval (conformalized quantile regression, Romano et
    al. 2019, with cross-fitted scores); the winner is refitted on all the given samples.
    The quantile forest is Meinshausen's (2006): the same trees as a Random Forest (Breiman 2001),
    whose leaves keep the training responses, so conditional quantiles can be read off
    (``quantile-forest`` package).

    Parameters
    ----------
    X, y : band values and concentrations (no NaN).
    groups : spatial block of each sample (inner folds hold out whole blocks).
    seed : seed of the forests.
    level : nominal coverage of the interval.
    n_trees, max_depth, min_samples_leaf : the grid.
    inner_folds : folds of the inner CV (at most the number of blocks).
    n_jobs : threads of each forest.

    Returns
    -------
    TunedForest

    References
    ----------
    Meinshausen (2006) https://jmlr.org/papers/v7/meinshausen06a.html ;
    Romano et al. (2019) https://doi.org/10.48550/arXiv.1905.03222 ;
    Breiman (2001) https://doi.org/10.1023/A:1010933404324
    """
    from sklearn.model_selection import ParameterGrid

    from .ml import inner_splits

    splits = inner_splits(len(y), groups=groups, inner_folds=inner_folds, seed=seed)
    grid = list(ParameterGrid({"n_estimators": list(n_trees), "max_depth": list(max_depth),
                               "min_samples_leaf": list(min_samples_leaf)}))
    rows, scores = [], []
    for params in grid:
        errs = []
        sc = np.empty(len(y))
        for tr, te in splits:
            m = _qrf(params, seed, n_jobs).fit(X[tr], y[tr])
            mean, lo, hi = _qrf_predict(m, X[te], level)
            errs.append(float(np.sqrt(np.mean((mean - y[te]) ** 2))))
            sc[te] = np.maximum(lo - y[te], y[te] - hi)
        rows.append({**params, "rmse_mean": float(np.mean(errs)), "rmse_sd": float(np.std(errs, ddof=1))})
        scores.append(sc)
    search = pd.DataFrame(rows)
    best = int(np.argmin(search["rmse_mean"].to_numpy()))
    model = _qrf(grid[best], seed, n_jobs).fit(X, y)
    return TunedForest(model=model, params=dict(grid[best]), offset=conformal_offset(scores[best], level=level),
                       search=search)


@dataclass
class InversionResult:
    """A fitted remote-sensing inversion for one metal and medium, with nested spatial-block validation.

    Attributes
    ----------
    model : quantile regression forest refitted on all samples with hyperparameters tuned by
        spatial-block inner CV (used for mapping).
    best_params : its hyperparameters.
    offset : its conformal interval correction (concentration units).
    level : nominal coverage of the prediction intervals.
    metrics : DataFrame split, r2, rmse, mae, rmse_baseline, n_train, n_test; split ``cv``
        (all out-of-fold predictions pooled) and ``cv_fold_NN``; ``rmse_baseline`` is the RMSE of
        predicting the training fold's mean.
    importance : DataFrame band, importance_mean, importance_sd (permutation importance: mean
        decrease of the pooled out-of-fold R2 when the band is shuffled in the test folds).
    predictions : DataFrame (index of X) observed, predicted, lower, upper, lower_raw, upper_raw,
        covered, fold, block: out-of-fold predictions and intervals (``_raw``: the forest's
        quantiles before the conformal correction).
    coverage : dict nominal, observed, observed_raw, n, mean_width.
    fold_params : DataFrame fold, n_estimators, max_depth, min_samples_leaf, offset (tuned per outer fold).
    clip_max : the ``clip_percentile`` percentile of the training concentrations.
    n_samples, n_predictors : sample and predictor counts.
    grid_results : the final model's hyperparameter search.
    n_folds, n_blocks : outer folds and spatial blocks.
    """

    model: object
    best_params: dict
    offset: float
    level: float
    metrics: pd.DataFrame
    importance: pd.DataFrame
    predictions: pd.DataFrame
    coverage: dict
    fold_params: pd.DataFrame
    clip_max: float
    n_samples: int
    n_predictors: int
    grid_results: pd.DataFrame = field(default_factory=pd.DataFrame)
    n_folds: int = 5
    n_blocks: int = 10

    @property
    def samples_per_predictor(self) -> float:
        return self.n_samples / self.n_predictors

    @property
    def skill(self) -> dict:
        """Pooled out-of-fold R2 and RMSE, the mean of the fold R2 values, and the baseline's RMSE."""
        t = self.metrics.set_index("split")
        m = t.loc["cv"]
        folds = t[t.index.str.startswith("cv_fold")]
        return {"r2": float(m["r2"]), "r2_fold_mean": float(folds["r2"].mean()), "rmse": float(m["rmse"]),
                "rmse_baseline": float(m["rmse_baseline"])}

    @property
    def has_skill(self) -> bool:
        """Held-out skill: pooled and mean fold R2 above 0, and RMSE below the training-mean baseline."""
        k = self.skill
        return bool(np.isfinite(k["r2"]) and k["r2"] > 0 and k["r2_fold_mean"] > 0 and k["rmse"] < k["rmse_baseline"])


def fit_inversion(X: pd.DataFrame, concentration, *, x, y, seed: int, n_trees=(100,), max_depth=(30,),
                  min_samples_leaf=(1, 5), n_folds: int = 5, n_blocks: int = 10, inner_folds: int = 3,
                  level: float = 0.9, clip_percentile: float = 99.0, n_repeats: int = 10,
                  n_jobs: int = 1) -> InversionResult:
    r"""Tune, validate (nested, spatially blocked) and fit a quantile-forest inversion with calibrated intervals.

    The point prediction is the Random Forest mean :math:`f(x) = \frac{1}{K}\sum_{k=1}^K T_k(x)`
    (Breiman 2001; Zhao et al. 2026, eq. 1); the interval is the conformalized quantile
    regression forest interval (Meinshausen 2006; Romano et al. 2019),
    :math:`[\hat q_{(1-\alpha)/2}(x) - c,\ \hat q_{(1+\alpha)/2}(x) + c]` with :math:`\alpha` =
    ``level``. Steps, all seeded by ``seed``:

    1. samples are grouped into ``n_blocks`` k-means clusters of their coordinates, assigned
       whole to ``n_folds`` outer folds (:func:`hmlib.ml.spatial_block_folds`);
    2. in each outer training set, :func:`tune_quantile_forest` tunes the grid and computes the
       conformal correction on inner folds that also hold out whole blocks, then refits; the
       outer test fold is predicted (mean and interval) and never influences any choice;
    3. pooled and per-fold R2, RMSE and MAE of the out-of-fold predictions, with the RMSE of
       predicting the training fold's mean as a baseline; interval coverage;
    4. permutation importance of each band: the decrease of the pooled out-of-fold R2 when the
       band is shuffled within the test folds (``n_repeats`` shuffles);
    5. the model for mapping: :func:`tune_quantile_forest` on all samples.

    Parameters
    ----------
    X : DataFrame of band values (rows without NaN).
    concentration : one value per row of X.
    x, y : sample coordinates (for the spatial blocks).
    seed : seed of the blocks, the forests and the permutations.
    n_trees, max_depth, min_samples_leaf : the hyperparameter grid.
    n_folds, n_blocks, inner_folds : outer folds, spatial blocks, inner folds.
    level : nominal coverage of the prediction interval.
    clip_percentile : percentile of the concentrations used to clip maps.
    n_repeats : shuffles per band for the permutation importance.
    n_jobs : threads per forest.

    Returns
    -------
    InversionResult

    References
    ----------
    Breiman (2001) https://doi.org/10.1023/A:1010933404324 ;
    Meinshausen (2006) https://jmlr.org/papers/v7/meinshausen06a.html ;
    Romano et al. (2019) https://doi.org/10.48550/arXiv.1905.03222 ;
    Roberts et al. (2017) https://doi.org/10.1111/ecog.02881 ;
    Zhao et al. (2026) https://doi.org/10.1038/s41598-026-38887-9
    """
    from .ml import spatial_block_folds

    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"X must be a DataFrame of band values, got {type(X).__name__}")
    yv = np.asarray(concentration, dtype=float)
    if yv.ndim != 1 or len(yv) != len(X):
        raise ValueError(f"concentration must be 1-D with one value per row of X ({len(X)}), got shape {yv.shape}")
    if X.isna().any().any() or not np.all(np.isfinite(yv)):
        raise ValueError("X and concentration must not contain NaN: drop samples whose window has no valid pixel first")
    n, p = X.shape
    if n < 2 * n_folds or n < 10:
        raise ValueError(f"need at least {max(10, 2 * n_folds)} samples for {n_folds}-fold nested cross-validation, "
                         f"got {n}")
    Xv = X.to_numpy(dtype=float)
    fold, block = spatial_block_folds(x, y, n_folds=n_folds, n_blocks=n_blocks, seed=seed)
    tune_kw = dict(seed=seed, level=level, n_trees=n_trees, max_depth=max_depth, min_samples_leaf=min_samples_leaf,
                   inner_folds=inner_folds, n_jobs=n_jobs)
    pred, lo, hi, lo_raw, hi_raw, base = (np.empty(n) for _ in range(6))
    rows, fparams, models = [], [], {}
    for k in np.unique(fold):
        te = fold == k
        tf = tune_quantile_forest(Xv[~te], yv[~te], groups=block[~te], **tune_kw)
        mean, ql, qh = _qrf_predict(tf.model, Xv[te], level)
        pred[te], lo_raw[te], hi_raw[te] = mean, ql, qh
        lo[te], hi[te] = ql - tf.offset, qh + tf.offset
        base[te] = yv[~te].mean()
        models[k] = tf.model
        m = regression_metrics(yv[te], mean)
        rows.append({"split": f"cv_fold_{int(k) + 1:02d}", **m,
                     "rmse_baseline": float(np.sqrt(np.mean((base[te] - yv[te]) ** 2))),
                     "n_train": int((~te).sum()), "n_test": int(te.sum())})
        fparams.append({"fold": int(k) + 1, **tf.params, "offset": tf.offset})
    pooled = regression_metrics(yv, pred)
    rows.insert(0, {"split": "cv", **pooled, "rmse_baseline": float(np.sqrt(np.mean((base - yv) ** 2))),
                    "n_train": int(round(n * (n_folds - 1) / n_folds)), "n_test": n})
    covered = (yv >= lo) & (yv <= hi)
    coverage = {"nominal": level, "observed": float(covered.mean()),
                "observed_raw": float(((yv >= lo_raw) & (yv <= hi_raw)).mean()), "n": n,
                "mean_width": float(np.mean(hi - lo))}
    # permutation importance on the outer test folds, each predicted by its own fold's model
    rng = np.random.default_rng(seed)
    sst = float(np.sum((yv - yv.mean()) ** 2))
    r2_ref = pooled["r2"]
    perm = np.empty((p, n_repeats, n))  # permuted-band predictions, one batched call per fold
    for k, model in models.items():
        te = np.flatnonzero(fold == k)
        stack = []
        for j in range(p):
            for _ in range(n_repeats):
                Xp = Xv[te].copy()
                Xp[:, j] = Xp[rng.permutation(len(te)), j]
                stack.append(Xp)
        pk = np.asarray(model.predict(np.vstack(stack), quantiles="mean"), dtype=float).reshape(p, n_repeats, len(te))
        perm[:, :, te] = pk
    drops = r2_ref - (1 - ((perm - yv) ** 2).sum(axis=2) / sst) if sst > 0 else np.full((p, n_repeats), np.nan)
    imp_mean = drops.mean(axis=1)
    imp_sd = drops.std(axis=1, ddof=1) if n_repeats > 1 else np.full(p, np.nan)
    importance = pd.DataFrame({"band": list(X.columns), "importance_mean": imp_mean, "importance_sd": imp_sd})
    final = tune_quantile_forest(Xv, yv, groups=block, **tune_kw)
    preds = pd.DataFrame({"observed": yv, "predicted": pred, "lower": lo, "upper": hi, "lower_raw": lo_raw,
                          "upper_raw": hi_raw, "covered": covered, "fold": fold + 1, "block": block + 1},
                         index=X.index)
    return InversionResult(model=final.model, best_params=final.params, offset=final.offset, level=level,
                           metrics=pd.DataFrame(rows), importance=importance, predictions=preds, coverage=coverage,
                           fold_params=pd.DataFrame(fparams), clip_max=float(np.percentile(yv, clip_percentile)),
                           n_samples=n, n_predictors=p, grid_results=final.search, n_folds=int(len(np.unique(fold))),
                           n_blocks=int(len(np.unique(block))))


def samples_per_predictor_warning(n_samples: int, n_predictors: int, *, minimum: float = 10.0) -> str | None:
    """A plain-words warning when there are fewer than ``minimum`` samples per predictor, else None.

    Zhao et al. (2026, section 4.1.1) note that a sample-to-predictor ratio below the 10:1
    recommended for machine-learning models compromises generalisation.

    Parameters
    ----------
    n_samples : int
        Number of training samples.
    n_predictors : int
        Number of predictors (>= 1).
    minimum : float, default 10.0
        Recommended minimum number of samples per predictor.

    Returns
    -------
    str or None
        Warning text, or None when the ratio is sufficient.
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


def predict_raster_interval(model, bands, *, level: float, offset: float, valid: np.ndarray | None = None,
                            block_pixels: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-wise conformalized quantile-forest interval, computed in blocks of rows.

    For each valid pixel the interval is
    :math:`[\\hat q_{(1-\\alpha)/2}(x) - c,\\ \\hat q_{(1+\\alpha)/2}(x) + c]` (Romano et al.
    2019), with :math:`\\alpha` = ``level``, the forest's conditional quantiles
    (Meinshausen 2006) and ``offset`` :math:`c` from :func:`tune_quantile_forest`. Each pixel's
    interval depends on that pixel only, so the result does not depend on the block size.

    Parameters
    ----------
    model : a fitted ``quantile_forest.RandomForestQuantileRegressor``.
    bands : array (n_bands, rows, cols) or an open rasterio dataset.
    level : nominal coverage.
    offset : conformal correction.
    valid : optional bool array (rows, cols) of pixels to predict.
    block_pixels : pixels per block.

    Returns
    -------
    (lower, upper) : float64 arrays (rows, cols), NaN outside valid pixels.

    References
    ----------
    Meinshausen (2006) https://jmlr.org/papers/v7/meinshausen06a.html ;
    Romano et al. (2019) https://doi.org/10.48550/arXiv.1905.03222
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
    step = max(1, block_pixels // cols)
    lower = np.full((rows, cols), np.nan)
    upper = np.full((rows, cols), np.nan)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        blk = _read_rows(bands, r0, r1)
        ok = np.all(np.isfinite(blk), axis=0)
        if valid is not None:
            ok &= np.asarray(valid[r0:r1], dtype=bool)
        if not ok.any():
            continue
        q = np.asarray(model.predict(blk[:, ok].T, quantiles=[(1 - level) / 2, (1 + level) / 2]), dtype=float)
        lv, uv = lower[r0:r1], upper[r0:r1]
        lv[ok] = q[:, 0] - offset
        uv[ok] = q[:, 1] + offset
    return lower, upper


def median_filter_nan(array: np.ndarray, *, size: int = 5, block_rows: int = 256) -> np.ndarray:
    """Median of the finite values in a ``size`` x ``size`` window; NaN pixels stay NaN.

    .. math:: \\tilde y(r, c) = \\operatorname{median}\\{ y_{ij} : (i, j) \\in W(r, c),\\ y_{ij}\\ \\text{finite} \\}

    Written with numpy's ``sliding_window_view`` and ``nanmedian`` (scipy's ``median_filter``
    does not skip NaN, which would spread masks); rows are processed ``block_rows`` at a time
    to bound memory. The 5 x 5 median filter is the post-processing of Zhao et al. (2026).

    Parameters
    ----------
    array : numpy.ndarray
        2-D raster (rows x cols); NaN = no-data.
    size : int, default 5
        Window side in pixels.
    block_rows : int, default 256
        Rows processed per block.

    Returns
    -------
    numpy.ndarray
        Filtered raster, same shape as ``array``.

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

    Parameters
    ----------
    prediction : numpy.ndarray
        Predicted concentration raster (rows x cols).
    clip_max : float
        Upper clipping value (concentration unit, e.g. the training 99th percentile).
    median_px : int, default 5
        Median filter window side in pixels.
    landcover : numpy.ndarray or None, optional
        Land-cover class raster on the same grid.
    landcover_classes : list of int or None, optional
        Land-cover classes to keep; other pixels become NaN.

    Returns
    -------
    numpy.ndarray
        Post-processed raster (NaN = masked or no-data).

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
    """Write one float32 band (NaN = no-data) as a compressed GeoTIFF.

    Parameters
    ----------
    path : str or pathlib.Path
        Output file.
    array : numpy.ndarray
        2-D array to write (NaN = no-data).
    transform : affine.Affine
        Affine transform of the grid.
    crs : rasterio.crs.CRS or str or None
        Coordinate reference system.
    description : str, default ''
        Band description.

    Returns
    -------
    pathlib.Path
        The written file.
    """
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
    """One metal's inversion in one medium, with its maps when the model has held-out skill.

    Attributes
    ----------
    metal, medium, unit : what was modelled.
    result : the :class:`InversionResult`.
    prediction : raw per-pixel forest mean (NaN outside valid pixels); None without skill.
    lower, upper : calibrated per-pixel prediction interval (:func:`predict_raster_interval`,
        masked like ``processed``, lower bound at least 0); None without skill.
    processed : the post-processed map (median filter, clipping, land-cover mask); None without skill.
    n_points, n_dropped : samples used, and samples dropped (no valid pixel in the window or no value).
    """

    metal: str
    medium: str
    unit: str
    result: InversionResult
    prediction: np.ndarray | None
    lower: np.ndarray | None
    upper: np.ndarray | None
    processed: np.ndarray | None
    n_points: int
    n_dropped: int

    @property
    def mapped(self) -> bool:
        return self.processed is not None

    def metrics_table(self) -> pd.DataFrame:
        """The rows of ``tables/rs_metrics.csv`` (metal, medium, split, r2, rmse, mae, rmse_baseline, n_train, n_test)."""
        m = self.result.metrics.assign(metal=self.metal, medium=self.medium)
        return m[["metal", "medium", "split", "r2", "rmse", "mae", "rmse_baseline", "n_train", "n_test"]]


def points_to_raster_crs(x, y, *, from_crs: str, raster_crs) -> tuple[np.ndarray, np.ndarray, str]:
    """Sample coordinates in the raster's CRS (pyproj), and a note on what was done.

    With ``from_crs='local'`` or a raster without CRS the coordinates are used as they are.

    Parameters
    ----------
    x, y : array-like
        Sample coordinates in ``from_crs``.
    from_crs : str
        CRS of the samples (anything pyproj accepts) or ``'local'``.
    raster_crs : rasterio.crs.CRS or str or None
        CRS of the raster.

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray, str)
        x and y in the raster CRS, and a note for the report.
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


def invert_metal(image: RasterImage, features: pd.DataFrame, values, *, x, y, metal: str, medium: str, unit: str,
                 seed: int, n_trees=(100,), max_depth=(30,), min_samples_leaf=(1, 5), n_folds: int = 5,
                 n_blocks: int = 10, inner_folds: int = 3, level: float = 0.9, clip_percentile: float = 99.0,
                 median_filter_px: int = 5, landcover: np.ndarray | None = None,
                 landcover_classes: list[int] | None = None, block_pixels: int = 65_536, n_repeats: int = 10,
                 n_jobs: int = 1) -> InversionMap:
    """Fit :func:`fit_inversion` on the extracted band values and, when it has held-out skill, map the metal.

    ``features`` holds the band columns from :func:`extract_at_points` (one row per sample);
    ``values`` the concentrations; ``x``, ``y`` the sample coordinates (spatial blocks). Samples
    with a missing band value or concentration are dropped. When the nested spatial-block CV
    shows skill (:attr:`InversionResult.has_skill`), the map is :func:`predict_raster` of the
    forest refitted on all samples, then :func:`postprocess`, with the calibrated interval of
    :func:`predict_raster_interval`; without skill no map is made (a map of a model that does
    worse than the mean on held-out areas would show noise as pattern).

    Parameters
    ----------
    image : the multiband image.
    features, values, x, y : band values, concentrations and coordinates of the samples.
    metal, medium, unit : labels.
    seed : seed of the blocks, forests and permutations.
    n_trees, max_depth, min_samples_leaf, n_folds, n_blocks, inner_folds, level, clip_percentile,
    n_repeats, n_jobs : passed to :func:`fit_inversion`.
    median_filter_px, landcover, landcover_classes : passed to :func:`postprocess`.
    block_pixels : pixels predicted at once.

    Returns
    -------
    InversionMap
    """
    yv = np.asarray(values, dtype=float)
    X = features[image.band_names]
    ok = X.notna().all(axis=1).to_numpy() & np.isfinite(yv)
    res = fit_inversion(X[ok], yv[ok], x=np.asarray(x, float)[ok], y=np.asarray(y, float)[ok], seed=seed,
                        n_trees=n_trees, max_depth=max_depth, min_samples_leaf=min_samples_leaf, n_folds=n_folds,
                        n_blocks=n_blocks, inner_folds=inner_folds, level=level, clip_percentile=clip_percentile,
                        n_repeats=n_repeats, n_jobs=n_jobs)
    pred = lower = upper = proc = None
    if res.has_skill:
        pred, _ = predict_raster(res.model, image.bands, valid=image.valid, block_pixels=block_pixels)
        proc = postprocess(pred, clip_max=res.clip_max, median_px=median_filter_px, landcover=landcover,
                           landcover_classes=landcover_classes)
        lower, upper = predict_raster_interval(res.model, image.bands, level=res.level, offset=res.offset,
                                               valid=image.valid, block_pixels=block_pixels)
        mask = ~np.isfinite(proc)
        lower = np.where(mask, np.nan, np.maximum(lower, 0.0))  # concentrations are not negative
        upper = np.where(mask, np.nan, upper)
    return InversionMap(metal=metal, medium=medium, unit=unit, result=res, prediction=pred, lower=lower, upper=upper,
                        processed=proc, n_points=int(ok.sum()), n_dropped=int((~ok).sum()))


def _sig2(v: float) -> str:
    """Two significant digits without exponent notation (220, 0.0045)."""
    return f"{float(f'{v:.2g}'):g}"


CV_SCHEME = "nested_spatial_block"


def coverage_table(maps: list[InversionMap]) -> pd.DataFrame:
    """Held-out coverage of the prediction intervals: the rows of ``tables/rs_interval_coverage.csv``.

    Parameters
    ----------
    maps : the fitted inversions.

    Returns
    -------
    DataFrame metal, medium, nominal, observed, n, cv_scheme, observed_uncalibrated (the
    forest's own quantiles before the conformal correction), mean_width, unit.
    """
    rows = []
    for m in maps:
        c = m.result.coverage
        rows.append({"metal": m.metal, "medium": m.medium, "nominal": c["nominal"], "observed": c["observed"],
                     "n": c["n"], "cv_scheme": CV_SCHEME, "observed_uncalibrated": c["observed_raw"],
                     "mean_width": c["mean_width"], "unit": m.unit})
    return pd.DataFrame(rows)


def metrics_display(maps: list[InversionMap]) -> pd.DataFrame:
    """Reader's table: nested spatial-block CV scores, baseline, interval coverage, per metal and medium.

    Parameters
    ----------
    maps : the fitted inversions.

    Returns
    -------
    DataFrame (display strings and numbers).
    """
    rows = []
    for m in maps:
        t = m.result.metrics.set_index("split")
        folds = t[t.index.str.startswith("cv_fold")]
        c = m.result.coverage
        rows.append({
            "Metal": m.metal, "Medium": m.medium, "Unit": m.unit, "n": m.n_points,
            "R² (pooled)": t.loc["cv", "r2"],
            "R² (mean ± sd of folds)": f"{folds['r2'].mean():.2f} ± {folds['r2'].std(ddof=1):.2f}",
            "RMSE": t.loc["cv", "rmse"], "RMSE of the mean": t.loc["cv", "rmse_baseline"],
            "Skill": "yes" if m.result.has_skill else "no",
            f"Coverage of the {100 * c['nominal']:.0f} % interval": f"{100 * c['observed']:.0f} %",
            "Mean interval width": c["mean_width"],
        })
    return pd.DataFrame(rows)


def importance_wide(maps: list[InversionMap]) -> pd.DataFrame:
    """Permutation importance (mean decrease of the out-of-fold R2) as metal-medium rows x band columns.

    Parameters
    ----------
    maps : list of InversionMap
        Fitted inversion maps.

    Returns
    -------
    pandas.DataFrame
        Columns metal, medium and one importance column per band.
    """
    rows = []
    for m in maps:
        r = {"metal": m.metal, "medium": m.medium}
        r.update(dict(zip(m.result.importance["band"], m.result.importance["importance_mean"])))
        rows.append(r)
    return pd.DataFrame(rows)


def r2_ceiling(values, *, noise_sdlog: float) -> float:
    r"""Expected :math:`R^2` of a perfect model when the values carry a log-normal error of known sd.

    With :math:`y = \mu(x)\,e^{\varepsilon}`, :math:`\varepsilon \sim N(0, \sigma^2)`, the best
    predictor :math:`E[y \mid x] = \mu(x) e^{\sigma^2/2}` leaves the error
    :math:`E[\mathrm{Var}(y \mid x)] = E[y^2]\,(1 - e^{-\sigma^2})`, so

    .. math:: R^2_{\max} = 1 - \frac{\overline{y^2}\,(1 - e^{-\sigma^2})}{\mathrm{Var}(y)}

    (moments of the log-normal distribution; estimated from the sample). An expectation, not a
    bound: on a finite sample the realised error can be smaller and a model can exceed it by
    chance. Used to compare a demo region's validated skill with what its generator allows.

    Parameters
    ----------
    values : the observed concentrations.
    noise_sdlog : :math:`\sigma`, the sd of the log error stated by the generator.

    Returns
    -------
    float

    References
    ----------
    Aitchison and Brown (1957) The Lognormal Distribution. Cambridge University Press.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) < 2:
        raise ValueError(f"values must be 1-D with at least 2 entries, got shape {v.shape}")
    return float(1.0 - np.mean(v ** 2) * (1.0 - np.exp(-noise_sdlog ** 2)) / np.var(v))


def compare_with_truth(maps: list[InversionMap], truth: pd.DataFrame) -> pd.DataFrame:
    """What the inversions recovered next to the generator's known truth (demo regions).

    Parameters
    ----------
    maps : the fitted inversions.
    truth : one row per medium and metal: ``medium``, ``metal``, ``band`` (the band the generator
        makes the concentration depend on), ``relationship`` (text), ``noise_sdlog``.

    Returns
    -------
    DataFrame metal, medium, true_band, top_band (largest permutation importance), band_recovered,
    has_skill, r2_cv (pooled nested spatial-block), r2_ceiling (:func:`r2_ceiling`), relationship.
    """
    need = {"medium", "metal", "band", "relationship", "noise_sdlog"}
    if not need <= set(truth.columns):
        raise ValueError(f"truth table must have columns {sorted(need)}, got {list(truth.columns)}")
    t = truth.set_index(["medium", "metal"])
    rows = []
    for m in maps:
        if (m.medium, m.metal) not in t.index:
            continue
        tr = t.loc[(m.medium, m.metal)]
        imp = m.result.importance.sort_values("importance_mean", ascending=False)
        top = str(imp["band"].iloc[0])
        rows.append({"metal": m.metal, "medium": m.medium, "true_band": tr["band"], "top_band": top,
                     "band_recovered": top == tr["band"], "has_skill": m.result.has_skill,
                     "r2_cv": m.result.skill["r2"],
                     "r2_ceiling": r2_ceiling(m.result.predictions["observed"], noise_sdlog=float(tr["noise_sdlog"])),
                     "relationship": tr["relationship"]})
    return pd.DataFrame(rows)


def truth_text(table: pd.DataFrame, *, ref: str = "") -> str:
    """Plain-words summary of :func:`compare_with_truth`.

    Band recovery is judged only for models with held-out skill: the importance ranking of a model
    that does not predict held-out samples carries no information about the truth.

    Parameters
    ----------
    table : :func:`compare_with_truth`.
    ref : cross-reference to the table.

    Returns
    -------
    str (markdown)
    """
    if table.empty:
        return ""
    sk = table[table["has_skill"]]
    ok = sk[sk["band_recovered"]]
    miss = sk[~sk["band_recovered"]]
    return (f"**Check against the generator**{f' ({ref})' if ref else ''}. These data are generated, so the band "
            "each concentration depends on, and the skill a "
            "perfect model would be expected to reach given the generator's error, are known. Among the "
            f"{len(sk)} models with held-out skill, the most important band was the generating band for {len(ok)}"
            + (" (otherwise: " + "; ".join(f"{a} in {b}, {c} instead of {d}" for a, b, c, d in
                                           zip(miss["metal"], miss["medium"], miss["top_band"], miss["true_band"]))
               + "; the bands are correlated through the shared surface brightness, so importance is shared among "
               "them)" if len(miss) else "")
            + ". Validated R² against that of a perfect model: "
            + "; ".join(f"{a} in {b} {c:.2f} of {d:.2f}" for a, b, c, d in
                        zip(table["metal"], table["medium"], table["r2_cv"], table["r2_ceiling"]))
            + " (an expectation: on a finite sample a model can exceed it by chance).")


def results_text(maps: list[InversionMap]) -> str:
    """Results paragraph: validation and skill first, then coverage, then what is mapped and what is not.

    Parameters
    ----------
    maps : the fitted inversions.

    Returns
    -------
    str (markdown)
    """
    skilled = [m for m in maps if m.result.has_skill]
    unskilled = [m for m in maps if not m.result.has_skill]
    r2 = [m.result.skill["r2"] for m in maps]
    cov = coverage_table(maps)
    dev = (cov["observed"] - cov["nominal"]).abs().max()
    lvl = 100 * cov["nominal"].iloc[0]
    txt = (f"**Validation and skill.** All scores below come from nested spatial-block cross-validation: the samples "
           f"held out in each of the {maps[0].result.n_folds} folds are whole clusters of neighbouring samples, and "
           "every modelling choice was made without them. Of {n} models, {k} had held-out skill: positive R², pooled and "
           "on average over the folds, and an RMSE below that of the mean of the training samples (pooled R² of all "
           "models from {lo:.2f} to {hi:.2f}).").format(
        n=len(maps), k=len(skilled), lo=min(r2), hi=max(r2))
    if unskilled:
        txt += (" No map is shown for " + ", ".join(f"{m.metal} in {m.medium} (R² {m.result.skill['r2']:.2f})"
                                                    for m in unskilled)
                + ": the band values do not predict these concentrations in areas away from the samples, so a map "
                "would show noise as pattern.")
    txt += (f" The {lvl:.0f} % prediction intervals covered between {100 * cov['observed'].min():.0f} % and "
            f"{100 * cov['observed'].max():.0f} % of the held-out samples (at most {100 * dev:.0f} points from "
            f"nominal; the forest's own quantiles before calibration covered {100 * cov['observed_uncalibrated'].min():.0f}"
            f"-{100 * cov['observed_uncalibrated'].max():.0f} %). With n held-out samples a coverage estimate has a "
            f"standard error of about $\\sqrt{{p(1-p)/n}}$, {100 * np.sqrt(0.9 * 0.1 / cov['n'].max()):.0f} to "
            f"{100 * np.sqrt(0.9 * 0.1 / cov['n'].min()):.0f} points here.")
    return txt


def methods_text(*, n_trees, max_depth, min_samples_leaf, n_folds: int, n_blocks: int, inner_folds: int,
                 level: float, window_px: int, extraction: str, median_filter_px: int, clip_percentile: float,
                 landcover: bool, band_names: list[str], raster_name: str, shape: tuple[int, int], pixel_size: float,
                 crs_note: str, n_repeats: int = 10, pixel_unit: str = "map units") -> str:
    """Methods paragraph of the ``remote_sensing`` report section (validation first; formulas and citations).

    Parameters
    ----------
    n_trees, max_depth, min_samples_leaf : the hyperparameter grid.
    n_folds, n_blocks, inner_folds : outer folds, spatial blocks, inner folds.
    level : nominal interval coverage.
    window_px, extraction, median_filter_px, clip_percentile, landcover : extraction and post-processing.
    band_names, raster_name, shape, pixel_size, crs_note, pixel_unit : the image.
    n_repeats : permutation-importance shuffles.

    Returns
    -------
    str (markdown)
    """
    ext = (f"the mean of the valid pixels in a {window_px} × {window_px} window centred on the sample's pixel"
           if extraction == "window" else
           f"the {window_px} × {window_px} window means at the four pixel centres around the sample, interpolated "
           "bilinearly")
    return f"""
**Validation scheme.** Every score, interval coverage and importance in this section comes from nested,
spatially blocked cross-validation: the samples were grouped into {n_blocks} k-means clusters of their
coordinates and whole clusters were held out in {n_folds} outer folds, so test samples are not neighbours of
training samples [@roberts2017cv]. Inside each outer training set, the hyperparameters were tuned and the
prediction interval calibrated on {inner_folds} inner folds that also held out whole clusters; the outer test
fold never influenced any choice. A model is said to have held-out skill when its pooled out-of-fold $R^2$ and
the mean of its fold $R^2$ values are above 0 and its RMSE is below that of predicting the mean of the training
samples; only such models are mapped.

**Model.** Concentrations were mapped from the multispectral image {Path(str(raster_name)).name} ({', '.join(band_names)};
{shape[0]} × {shape[1]} pixels of {pixel_size:g} {pixel_unit}) following the Random Forest inversion scheme of
@zhao2026tarim. The band values of each sample were {ext}; no-data and cloud-flagged pixels were
left out ({crs_note}). A quantile regression forest [@meinshausen2006qrf] related each metal's concentration to
the band values: the same trees as a Random Forest [@breiman2001rf], whose prediction is the mean
$f(\\mathbf x) = \\frac1K\\sum_{{k=1}}^K T_k(\\mathbf x)$, with leaves that keep the training values so that
conditional quantiles $\\hat q_\\tau(\\mathbf x)$ can be read off. Hyperparameters were chosen by grid search
(trees {'/'.join(map(str, n_trees))}, maximum depth {'/'.join(map(str, max_depth))}, minimum leaf size
{'/'.join(map(str, min_samples_leaf))}; RMSE of the inner folds). The {100 * level:.0f} % prediction interval
is the conformalized quantile interval [@romano2019cqr],
$[\\hat q_{{{(1 - level) / 2:g}}}(\\mathbf x) - c,\\ \\hat q_{{{(1 + level) / 2:g}}}(\\mathbf x) + c]$, where $c$ is
the $\\lceil (n+1)\\,{level:g} \\rceil$-th smallest conformity score
$E_i = \\max(\\hat q_{{lo}}(\\mathbf x_i) - y_i,\\ y_i - \\hat q_{{hi}}(\\mathbf x_i))$ of the inner held-out samples;
its coverage was then measured on the outer held-out samples. The importance of each band is the decrease of the
out-of-fold $R^2$ when the band's values are shuffled within the test folds ({n_repeats} repeats). For the maps,
the forest tuned and calibrated on all samples was applied to every valid pixel in blocks of rows; the mean was
smoothed by a {median_filter_px} × {median_filter_px} median filter and clipped to
$[0, P_{{{clip_percentile:g}}}]$ of the training concentrations{', and restricted to the land-cover classes of each medium' if landcover else ''}.
Scores: $R^2$, RMSE and MAE as in @zhao2026tarim, eqs. 2-4 (scikit-learn [@pedregosa2011sklearn]).
"""


def plot_metal_maps(maps: list[InversionMap], image: RasterImage, *, coordinate_unit: str = "m",
                    crs: str | None = None):
    """One row per mapped medium: post-processed prediction (left) and calibrated interval width (right).

    Parameters
    ----------
    maps : list of InversionMap
        Fitted inversion maps.
    image : RasterImage
        The image the maps were predicted on.
    coordinate_unit : str, default 'm'
        Coordinate unit (scale bar).
    crs : str or None
        Coordinate system of the image (note under the maps; default: the image's own).

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with scale bar, north arrow and coordinate note (:func:`hmlib.plots.decorate_map`).
    """
    import matplotlib.pyplot as plt

    from .plots import MIN_FONT_PT, decorate_map

    maps = [m for m in maps if m.mapped]
    if not maps:
        raise ValueError("no inversion has a map (none has held-out skill)")
    rows, cols = image.shape
    t = image.transform
    extent = (t.c, t.c + t.a * cols, t.f + t.e * rows, t.f)
    fig, axes = plt.subplots(len(maps), 2, figsize=(7.0, 2.9 * len(maps)), squeeze=False)
    for (ax1, ax2), m in zip(axes, maps):
        width = m.upper - m.lower
        lvl = 100 * m.result.level
        for ax, arr, cmap, lab in ((ax1, m.processed, "viridis", f"{m.metal} ({m.unit})"),
                                   (ax2, width, "magma", f"{lvl:.0f} % interval width ({m.unit})")):
            im = ax.imshow(arr, extent=extent, cmap=cmap, interpolation="nearest")
            cb = fig.colorbar(im, ax=ax, shrink=0.85)
            cb.set_label(lab, fontsize=MIN_FONT_PT)
            cb.ax.tick_params(labelsize=MIN_FONT_PT)
            ax.set_xticks([])
            ax.set_yticks([])
            decorate_map(ax, crs=crs if crs is not None else (str(image.crs) if image.crs else "local"),
                         coordinate_unit=coordinate_unit, note=False)
        ax1.set_title(f"{m.metal} in {m.medium}: prediction", fontsize=8)
        ax2.set_title(f"{m.metal} in {m.medium}: {lvl:.0f} % interval width", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    from .plots import crs_note

    fig.text(0.01, 0.0, crs_note(crs if crs is not None else (str(image.crs) if image.crs else "local"),
                                 coordinate_unit), fontsize=MIN_FONT_PT, color="0.3", ha="left", va="bottom")
    return fig


def plot_importance(maps: list[InversionMap]):
    """Permutation importance of each band (bars, error: sd over repeats), one panel per medium.

    Parameters
    ----------
    maps : list of InversionMap
        Fitted inversion maps.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
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
    axes[0][0].set_ylabel("permutation importance (decrease of out-of-fold R²)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_observed_predicted(maps: list[InversionMap]):
    """Observed vs out-of-fold predicted concentrations with their calibrated intervals, one panel per model.

    Parameters
    ----------
    maps : list of InversionMap
        Fitted inversion maps.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    n = len(maps)
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(min(1.75 * ncol + 0.3, 6.7), 1.8 * nrow + 0.5), squeeze=False)
    for ax, m in zip(axes.ravel(), maps):
        p = m.result.predictions
        cov = p["covered"].to_numpy(bool)
        for sel, color, lab in ((cov, "tab:blue", "interval covers"), (~cov, "tab:red", "interval misses")):
            q = p.loc[sel, ["observed", "predicted", "lower", "upper"]].to_numpy(float)
            ax.errorbar(q[:, 0], q[:, 1], yerr=np.vstack([q[:, 1] - q[:, 2], q[:, 3] - q[:, 1]]),
                        fmt="o", ms=2.2, lw=0.4, color=color, label=lab)
        lo = float(np.nanmin(p[["observed", "predicted"]].to_numpy()))
        hi = float(np.nanmax(p[["observed", "predicted"]].to_numpy()))
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.6, ls="--")
        ax.set_title(f"{m.metal}, {m.medium} ({m.unit}): R² {m.result.skill['r2']:.2f}", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.supxlabel("observed", fontsize=8, y=0.06)
    fig.supylabel("predicted (held-out fold)", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def importance_text(maps: list[InversionMap], *, ref: str) -> str:
    """Which band carries each skilled model (permutation importance), and what shared importance means.

    Parameters
    ----------
    maps : the fitted inversions.
    ref : cross-reference to the importance figure.

    Returns
    -------
    str (markdown)
    """
    sk = [m for m in maps if m.result.has_skill]
    if not sk:
        return ""
    parts = []
    for m in sk:
        imp = m.result.importance.sort_values("importance_mean", ascending=False)
        parts.append(f"{m.metal} in {m.medium}: {imp['band'].iloc[0]} "
                     f"({imp['importance_mean'].iloc[0]:.2f} ± {imp['importance_sd'].iloc[0]:.2f})")
    return ("**Bands.** Shuffling one band at a time shows which band each model with skill relies on (decrease of the "
            f"held-out R², {ref}): " + "; ".join(parts) + ". The bands are correlated through the overall surface "
            "brightness, so a band with low importance may still carry information that another band duplicates; "
            "the importance ranks the bands for this model, it does not identify a mechanism.")


def maps_text(maps: list[InversionMap], *, refs: str) -> str:
    """What the maps show and how far to trust them: the held-out skill and the typical interval width
    next to the range of the training values.

    Parameters
    ----------
    maps : the mapped inversions.
    refs : cross-references to the map figures.

    Returns
    -------
    str (markdown)
    """
    parts = []
    for m in maps:
        w = np.nanmedian(m.upper - m.lower)
        y = m.result.predictions["observed"].to_numpy(float)
        iqr = np.nanpercentile(y, 75) - np.nanpercentile(y, 25)
        parts.append(f"{m.metal} in {m.medium} (R² {m.result.skill['r2']:.2f}; median interval width {w:.3g} {m.unit}, "
                     f"{w / iqr:.1f} times the interquartile range of the samples)" if iqr > 0 else
                     f"{m.metal} in {m.medium} (R² {m.result.skill['r2']:.2f})")
    return (f"Maps are drawn only for the models with held-out skill ({refs}): " + "; ".join(parts) + ". Where the "
            "interval is wider than the spread of the samples, a map shows the broad pattern, not the value of a "
            "single pixel; the interval-width panel shows where the prediction is least certain.")


__all__ += ["importance_text", "maps_text"]
