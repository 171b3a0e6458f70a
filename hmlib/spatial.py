"""Spatial interpolation: variograms, ordinary and regression kriging, Gaussian process regression.

The functions here map one variable (one metal) observed at sample points onto a set of
prediction points (the region's grid):

* :func:`experimental_variogram` and :func:`directional_variograms` (gstools' estimator) and
  :func:`fit_variogram` (spherical, exponential, Gaussian and Matern models fitted by weighted
  least squares with gstools, best model by weighted sum of squares);
* :func:`fit_spatial_model` fits ordinary kriging (``"ok"``), regression kriging on covariates
  (``"rk"``) or Gaussian process regression (``"gpr"``, scikit-learn) and returns a
  :class:`SpatialModel` whose ``predict`` uses a *moving neighbourhood* of the ``k`` nearest
  samples (:func:`local_kriging`), so that tens of thousands of samples and a million cells run
  on a laptop;
* :func:`cross_validate` (seeded k-fold or leave-one-out; every fold refits the variogram /
  kernel on the training samples only) and :func:`cv_metrics` (MAE, RMSE, MSSE);
* :func:`exceedance_probability` (Gaussian on the modelling scale) and :func:`area_share_above`.

Skewed variables can be modelled on the log scale (:func:`choose_log`) with the standard
lognormal back-transform (see :meth:`SpatialModel.predict`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import stats
from scipy.spatial import cKDTree

from .params import StageOptions

__all__ = [
    "SpatialOptions",
    "VARIOGRAM_MODELS",
    "METHOD_LABELS",
    "choose_log",
    "experimental_variogram",
    "directional_variograms",
    "anisotropy_summary",
    "VariogramFit",
    "fit_variogram",
    "local_kriging",
    "design_matrix",
    "SpatialModel",
    "fit_spatial_model",
    "cross_validate",
    "cv_metrics",
    "best_methods",
    "exceedance_probability",
    "area_share_above",
    "guideline_thresholds",
    "MetalMap",
    "map_metal",
    "variogram_figure",
    "map_figure",
    "methods_text",
    "variogram_tables",
    "results_text",
    "exceedance_text",
]

VARIOGRAM_MODELS = ("spherical", "exponential", "gaussian", "matern")
METHOD_LABELS = {"ok": "ordinary kriging", "rk": "regression kriging", "gpr": "Gaussian process regression"}


class SpatialOptions(StageOptions):
    """Options of the ``spatial`` stage (maps, hotspots and drivers)."""

    metals: list[str] | None = Field(default=None, description="metals to map; default: all of the region's metals")
    methods: list[Literal["ok", "rk", "gpr"]] = Field(default_factory=lambda: ["ok", "rk", "gpr"])
    log_transform: Literal["auto", "always", "never"] = Field(
        default="auto", description="model log values: 'auto' when the sample skewness exceeds skew_threshold")
    skew_threshold: float = Field(default=1.0, gt=0)
    variogram_models: list[Literal["spherical", "exponential", "gaussian", "matern"]] = Field(
        default_factory=lambda: list(VARIOGRAM_MODELS))
    n_lags: int = Field(default=15, ge=5, le=50)
    max_lag_fraction: float = Field(default=0.5, gt=0.1, le=1.0,
                                    description="largest lag as a fraction of the sampled area's diagonal")
    n_neighbours: int = Field(default=32, ge=4, le=200, description="samples in each local kriging neighbourhood")
    drift_covariates: list[str] | None = Field(
        default=None, description="grid covariates for regression kriging; default: covariates present in the grid")
    cv: Literal["kfold", "loo"] = "kfold"
    n_folds: int = Field(default=10, ge=2, le=50)
    guideline_threshold: str | None = Field(
        default=None, description="guideline threshold_name to map exceedance of; default: references.guideline_threshold")
    hotspot_k: int = Field(default=8, ge=2, le=50, description="nearest neighbours in the hotspot weights")
    n_permutations: int = Field(default=999, ge=99)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    driver_response: str | None = Field(default=None, description="metal modelled by MGWR; default: the first metal")
    driver_covariates: list[str] | None = Field(
        default=None, description="sample covariates or metals used as MGWR predictors; default: numeric covariates")
    mgwr_max_n: int = Field(default=1000, ge=50, description="MGWR is skipped above this many samples")
    write_files: bool = Field(default=True, description="write GeoTIFF and GeoPackage files")


# ------------------------------------------------------------------------------------------------
def _as_xy(x, y, name: str = "coordinates") -> np.ndarray:
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{name}: x and y must have the same length, got {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"{name}: expected finite coordinates, got NaN or infinite values")
    return np.column_stack([x, y])


def _as_values(values, n: int, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if v.size != n:
        raise ValueError(f"{name}: expected {n} values (one per sample), got {v.size}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: expected finite values, got {int((~np.isfinite(v)).sum())} NaN/infinite")
    return v


def choose_log(values, *, mode: str = "auto", skew_threshold: float = 1.0) -> bool:
    """Whether to model ``values`` on the log scale.

    ``mode='auto'`` logs when all values are positive and the sample skewness (Fisher-Pearson,
    bias-corrected, :func:`scipy.stats.skew`) exceeds ``skew_threshold``; ``'always'`` needs
    positive values; ``'never'`` keeps the original scale.
    """
    v = np.asarray(values, dtype=float)
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"mode: expected 'auto', 'always' or 'never', got {mode!r}")
    if mode == "never":
        return False
    if mode == "always":
        if (v <= 0).any():
            raise ValueError(f"log scale needs positive values; got {int((v <= 0).sum())} values <= 0")
        return True
    return bool((v > 0).all() and stats.skew(v, bias=False) > skew_threshold)


# ------------------------------------------------------------------------------------------------
def _lag_edges(xy: np.ndarray, n_lags: int, max_lag_fraction: float) -> np.ndarray:
    ext = xy.max(axis=0) - xy.min(axis=0)
    max_lag = max_lag_fraction * float(np.hypot(*ext))
    if not max_lag > 0:
        raise ValueError("coordinates: expected samples spread in space, got all at one point")
    return np.linspace(0.0, max_lag, n_lags + 1)


def experimental_variogram(x, y, values, *, n_lags: int = 15, max_lag_fraction: float = 0.5,
                           bin_edges=None, sampling_size: int | None = None, seed: int = 0) -> pd.DataFrame:
    r"""Omnidirectional experimental (Matheron) semivariogram.

    .. math::

        \hat\gamma(h) = \frac{1}{2N(h)} \sum_{|x_i - x_j| \in h} \left(z(x_i) - z(x_j)\right)^2

    Computed by :func:`gstools.vario_estimate`. ``sampling_size`` estimates it from a seeded
    random subset of samples (for very large data sets).

    Returns
    -------
    DataFrame with columns lag (bin centre), gamma, n_pairs; bins without pairs are dropped.

    References
    ----------
    Matheron, G. (1963). Principles of geostatistics. Economic Geology 58, 1246-1266.
    https://doi.org/10.2113/gsecongeo.58.8.1246
    """
    import gstools as gs

    xy = _as_xy(x, y)
    v = _as_values(values, len(xy))
    edges = _lag_edges(xy, n_lags, max_lag_fraction) if bin_edges is None else np.asarray(bin_edges, float)
    kw = {}
    if sampling_size is not None and sampling_size < len(xy):
        kw = {"sampling_size": int(sampling_size), "sampling_seed": int(seed)}
    centre, gamma, counts = gs.vario_estimate((xy[:, 0], xy[:, 1]), v, edges, return_counts=True, **kw)
    df = pd.DataFrame({"lag": centre, "gamma": gamma, "n_pairs": counts.astype(int)})
    return df[df["n_pairs"] > 0].reset_index(drop=True)


def directional_variograms(x, y, values, *, azimuths_deg=(0.0, 45.0, 90.0, 135.0), tolerance_deg: float = 22.5,
                           n_lags: int = 15, max_lag_fraction: float = 0.5, sampling_size: int | None = None,
                           seed: int = 0) -> pd.DataFrame:
    """Directional experimental semivariograms (gstools), for an anisotropy check.

    Azimuths are angles counter-clockwise from the +x (east) axis; each direction collects pairs
    whose separation vector lies within ``tolerance_deg`` of it.

    Returns
    -------
    DataFrame: azimuth_deg, lag, gamma, n_pairs (bins without pairs dropped).
    """
    import gstools as gs

    xy = _as_xy(x, y)
    v = _as_values(values, len(xy))
    edges = _lag_edges(xy, n_lags, max_lag_fraction)
    kw = {}
    if sampling_size is not None and sampling_size < len(xy):
        kw = {"sampling_size": int(sampling_size), "sampling_seed": int(seed)}
    ang = np.deg2rad(np.asarray(azimuths_deg, float))
    centre, gamma, counts = gs.vario_estimate((xy[:, 0], xy[:, 1]), v, edges, angles=ang,
                                              angles_tol=np.deg2rad(tolerance_deg), return_counts=True, **kw)
    rows = []
    for k, az in enumerate(azimuths_deg):
        for c, g, n in zip(centre, gamma[k], counts[k]):
            if n > 0:
                rows.append({"azimuth_deg": float(az), "lag": float(c), "gamma": float(g), "n_pairs": int(n)})
    return pd.DataFrame(rows, columns=["azimuth_deg", "lag", "gamma", "n_pairs"])


# ------------------------------------------------------------------------------------------------
@dataclass
class VariogramFit:
    """A fitted variogram model.

    Attributes
    ----------
    model : model name (spherical, exponential, gaussian, matern).
    nugget : nugget variance :math:`c_0` (modelling-scale units squared).
    partial_sill : structured variance :math:`c_1`; the sill is ``nugget + partial_sill``.
    len_scale : gstools length scale :math:`a` (coordinate units).
    effective_range : distance where the model reaches 95 % of its sill (the range itself for
        the spherical model).
    nu : Matern smoothness (NaN for other models).
    wsse : weighted sum of squared residuals of the fit (the selection criterion).
    candidates : DataFrame of every model tried (model, nugget, partial_sill, len_scale,
        effective_range, nu, wsse, r2), best first.
    gs_model : the gstools CovModel.
    """

    model: str
    nugget: float
    partial_sill: float
    len_scale: float
    effective_range: float
    nu: float
    wsse: float
    candidates: pd.DataFrame
    gs_model: object = field(repr=False)

    @property
    def sill(self) -> float:
        return self.nugget + self.partial_sill

    def variogram(self, h) -> np.ndarray:
        """Model semivariance at distances ``h`` (0 at h = 0)."""
        h = np.asarray(h, float)
        return np.where(h > 0, self.gs_model.vario_nugget(h), 0.0)

    def covariance(self, h) -> np.ndarray:
        """Covariance :math:`C(h) = c_0 + c_1 - \\gamma(h)` (``sill`` at h = 0)."""
        return self.sill - self.variogram(h)


def _gs_class(name: str):
    import gstools as gs

    return {"spherical": gs.Spherical, "exponential": gs.Exponential, "gaussian": gs.Gaussian,
            "matern": gs.Matern}[name]


def _effective_range(m, name: str) -> float:
    if name == "spherical":
        return float(m.len_scale)
    from scipy.optimize import brentq

    if m.var <= 0:
        return 0.0
    f = lambda h: m.covariance(h) / m.var - 0.05  # noqa: E731
    hi = m.len_scale
    while f(hi) > 0 and hi < 1e6 * m.len_scale:
        hi *= 2
    return float(brentq(f, 1e-12 * m.len_scale, hi))


def fit_variogram(experimental: pd.DataFrame, *, models=VARIOGRAM_MODELS, max_len_scale: float | None = None
                  ) -> VariogramFit:
    r"""Fit variogram models by weighted least squares and keep the best.

    Each model :math:`\gamma(h;\theta)` (nugget + spherical, exponential, Gaussian or Matern,
    gstools definitions) is fitted with :meth:`gstools.CovModel.fit_variogram` (linear loss)
    minimising

    .. math::

        \mathrm{WSS}(\theta) = \sum_j \frac{N(h_j)}{h_j^2}\left(\hat\gamma(h_j) - \gamma(h_j;\theta)\right)^2,

    the weights of gstat's ``fit.method = 7`` (more pairs and shorter lags weigh more). The model
    with the smallest WSS is returned. The Gaussian and Matern models keep a nugget of at least
    1 % of the largest experimental semivariance: without one, their parabolic behaviour at the
    origin makes kriging systems near-singular (Webster and Oliver 2007, sect. 6.3).

    Parameters
    ----------
    experimental : output of :func:`experimental_variogram` (lag, gamma, n_pairs).
    models : model names to try.
    max_len_scale : upper bound on the length scale (default: 3 x the largest lag).

    References
    ----------
    Cressie, N. (1985). Fitting variogram models by weighted least squares. Mathematical Geology
    17, 563-586. https://doi.org/10.1007/BF01032109
    Mueller, S. et al. (2022). GSTools v1.3: a toolbox for geostatistical modelling in Python.
    Geoscientific Model Development 15, 3161-3182. https://doi.org/10.5194/gmd-15-3161-2022
    """
    need = {"lag", "gamma", "n_pairs"}
    if not need <= set(experimental.columns):
        raise ValueError(f"experimental: expected columns {sorted(need)}, got {list(experimental.columns)}")
    e = experimental[(experimental["n_pairs"] > 0) & (experimental["lag"] > 0)]
    if len(e) < 4:
        raise ValueError(f"experimental: expected at least 4 lag bins with pairs, got {len(e)}")
    bad = [m for m in models if m not in VARIOGRAM_MODELS]
    if bad or not models:
        raise ValueError(f"models: expected a non-empty subset of {VARIOGRAM_MODELS}, got {list(models)}")
    h = e["lag"].to_numpy(float)
    g = e["gamma"].to_numpy(float)
    n = e["n_pairs"].to_numpy(float)
    w = n / h**2
    w = w / w.sum()
    gmax = float(np.max(g))
    lmax = float(max_len_scale) if max_len_scale else 3.0 * float(h.max())
    rows, fitted = [], {}
    for name in models:
        m = _gs_class(name)(dim=2)
        # smooth models (parabolic at the origin) without a nugget give near-singular kriging systems and
        # wild weights; keep a nugget of at least 1 % of the largest semivariance for them
        nug_min = 0.01 * gmax if name in ("gaussian", "matern") else 0.0
        bounds = {"var": [0.0, 5 * gmax + 1e-12], "len_scale": [1e-3 * float(h.min()), lmax],
                  "nugget": [nug_min, 2 * gmax + 1e-12]}
        if name == "matern":
            bounds["nu"] = [0.2, 5.0]
        m.set_arg_bounds(**bounds)
        init = {"var": 0.7 * gmax, "len_scale": float(h.max()) / 3, "nugget": 0.2 * gmax}
        if name == "matern":
            init["nu"] = 1.0
        try:
            _, _, r2 = m.fit_variogram(h, g, weights=np.sqrt(w), loss="linear", init_guess=init, return_r2=True)
        except (RuntimeError, ValueError):
            continue
        resid = g - m.variogram(h)
        wsse = float(np.sum(w * resid**2))
        fitted[name] = m
        rows.append({"model": name, "nugget": float(m.nugget), "partial_sill": float(m.var),
                     "len_scale": float(m.len_scale), "effective_range": _effective_range(m, name),
                     "nu": float(m.nu) if name == "matern" else np.nan, "wsse": wsse, "r2": float(r2)})
    if not rows:
        raise RuntimeError("no variogram model could be fitted to the experimental variogram")
    cand = pd.DataFrame(rows).sort_values("wsse", kind="stable").reset_index(drop=True)
    b = cand.iloc[0]
    return VariogramFit(model=b["model"], nugget=b["nugget"], partial_sill=b["partial_sill"],
                        len_scale=b["len_scale"], effective_range=b["effective_range"], nu=b["nu"],
                        wsse=b["wsse"], candidates=cand, gs_model=fitted[b["model"]])


def anisotropy_summary(directional: pd.DataFrame, fit: VariogramFit) -> pd.DataFrame:
    """Range of the fitted model per direction, with nugget and sill held at the omnidirectional fit.

    For each azimuth the length scale alone is refitted (same WLS weights) to the directional
    variogram; the anisotropy ratio is the longest over the shortest directional range. A ratio
    near 1 supports the isotropic model used for interpolation.

    Returns
    -------
    DataFrame: azimuth_deg, effective_range, n_pairs, ratio_to_min.
    """
    rows = []
    for az, d in directional.groupby("azimuth_deg"):
        d = d[d["lag"] > 0]
        if len(d) < 3:
            continue
        m = _gs_class(fit.model)(dim=2, var=fit.partial_sill, len_scale=fit.len_scale, nugget=fit.nugget)
        if fit.model == "matern":
            m.nu = fit.nu
        m.set_arg_bounds(len_scale=[1e-3 * float(d["lag"].min()), 10 * float(d["lag"].max())])
        w = d["n_pairs"].to_numpy(float) / d["lag"].to_numpy(float) ** 2
        try:
            fixed = {"var": False, "nugget": False, **({"nu": False} if fit.model == "matern" else {})}
            m.fit_variogram(d["lag"].to_numpy(float), d["gamma"].to_numpy(float), weights=np.sqrt(w / w.sum()),
                            loss="linear", **fixed)
        except (RuntimeError, ValueError):
            continue
        rows.append({"azimuth_deg": float(az), "effective_range": _effective_range(m, fit.model),
                     "n_pairs": int(d["n_pairs"].sum())})
    out = pd.DataFrame(rows, columns=["azimuth_deg", "effective_range", "n_pairs"])
    if len(out):
        out["ratio_to_min"] = out["effective_range"] / out["effective_range"].min()
    return out


# ------------------------------------------------------------------------------------------------
def _tabulated(covariance, c00: float, n_nodes: int = 16385):
    """Covariance evaluated through a dense table (linear interpolation) of the model.

    Evaluating Matern (Bessel) models on every (target, neighbour, neighbour) distance is slow;
    a table of ``n_nodes`` distances up to the largest distance asked for is exact at h = 0 and
    accurate to about (spacing / length scale)^2 / 8 relative elsewhere.
    """
    cache: dict = {}

    def cov(h):
        h = np.asarray(h, float)
        hmax = float(h.max()) if h.size else 0.0
        if hmax <= 0:
            return np.full(h.shape, c00)
        if "hmax" not in cache or cache["hmax"] < hmax:
            nodes = np.linspace(0.0, 2.0 * hmax, n_nodes)
            vals = np.asarray(covariance(np.maximum(nodes, nodes[1] * 1e-6)), float)
            cache.update(hmax=2.0 * hmax, nodes=nodes, vals=vals)
        nodes, vals = cache["nodes"], cache["vals"]
        u = h * ((len(nodes) - 1) / nodes[-1])      # uniform nodes: direct index, no search
        i = np.minimum(u.astype(np.int64), len(nodes) - 2)
        w = u - i
        out = vals[i] * (1.0 - w) + vals[i + 1] * w
        out[h == 0] = c00
        return out
    return cov


def local_kriging(train_xy, values, target_xy, *, covariance: Callable[[np.ndarray], np.ndarray],
                  n_neighbours: int = 32, mean: float | None = None, batch_size: int = 512,
                  workers: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Kriging in a moving neighbourhood of the ``n_neighbours`` nearest samples.

    Ordinary kriging (``mean=None``) solves, for each target :math:`x_0` and its neighbours,

    .. math::

        \sum_j \lambda_j C(x_i - x_j) + \mu = C(x_i - x_0),\quad \sum_j \lambda_j = 1,\qquad
        \hat z(x_0) = \sum_i \lambda_i z(x_i),\qquad
        \sigma^2(x_0) = C(0) - \sum_i \lambda_i C(x_i - x_0) - \mu .

    Simple kriging (known ``mean``) drops the constraint and :math:`\mu`:
    :math:`\hat z = m + \sum_i \lambda_i (z_i - m)`, :math:`\sigma^2 = C(0) - \sum_i \lambda_i C_{i0}`.
    ``covariance(h)`` must include the nugget at h = 0 (so kriging is exact at the samples).

    Hand-written (vectorised batches of small systems solved with :func:`numpy.linalg.solve`)
    because neither pykrige (its ``n_closest_points`` still builds all n^2 sample distances) nor
    gstools (global systems only) offers a neighbourhood search that scales to 50 000 samples;
    with ``n_neighbours`` >= the number of samples it equals global kriging (tested against
    pykrige and a hand-solved case).

    Returns
    -------
    prediction, variance, mu : arrays over targets (``mu`` is the Lagrange multiplier of the
    covariance form, 0 for simple kriging; the variogram-form multiplier is :math:`\psi=-\mu`).

    References
    ----------
    Webster, R. and Oliver, M.A. (2007). Geostatistics for Environmental Scientists, 2nd ed.
    Wiley, ch. 8. https://doi.org/10.1002/9780470517277
    """
    xy = np.asarray(train_xy, float)
    t = np.asarray(target_xy, float)
    if xy.ndim != 2 or xy.shape[1] != 2 or t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"train_xy and target_xy: expected (n, 2) arrays, got {xy.shape} and {t.shape}")
    z = _as_values(values, len(xy))
    k = int(min(n_neighbours, len(xy)))
    if k < 1:
        raise ValueError("train_xy: expected at least one sample")
    tree = cKDTree(xy)
    c00 = float(np.asarray(covariance(np.zeros(1)))[0])
    covariance = _tabulated(covariance, c00)
    pred = np.empty(len(t))
    var = np.empty(len(t))
    mus = np.zeros(len(t))
    ok = mean is None
    for s in range(0, len(t), batch_size):
        tb = t[s:s + batch_size]
        d0, idx = tree.query(tb, k=k, workers=workers)
        if k == 1:
            d0, idx = d0[:, None], idx[:, None]
        p = xy[idx]                                    # (m, k, 2)
        dx = p[:, :, None, 0] - p[:, None, :, 0]
        dy = p[:, :, None, 1] - p[:, None, :, 1]
        dd = np.sqrt(dx * dx + dy * dy)
        C = covariance(dd)
        c0 = covariance(d0)
        zz = z[idx]
        m = len(tb)
        if ok:
            A = np.ones((m, k + 1, k + 1))
            A[:, :k, :k] = C
            A[:, k, k] = 0.0
            b = np.ones((m, k + 1))
            b[:, :k] = c0
            sol = np.linalg.solve(A, b[..., None])[..., 0]
            lam, mu = sol[:, :k], sol[:, k]
            pred[s:s + m] = (lam * zz).sum(1)
            var[s:s + m] = c00 - (lam * c0).sum(1) - mu
            mus[s:s + m] = mu
        else:
            lam = np.linalg.solve(C, c0[..., None])[..., 0]
            pred[s:s + m] = mean + (lam * (zz - mean)).sum(1)
            var[s:s + m] = c00 - (lam * c0).sum(1)
    return pred, np.maximum(var, 0.0), mus


# ------------------------------------------------------------------------------------------------
def design_matrix(covariates: pd.DataFrame, *, categorical=(), levels: dict | None = None,
                  centre: dict | None = None) -> tuple[np.ndarray, list[str], dict, dict]:
    """Trend design matrix: intercept, numeric covariates (centred), treatment dummies.

    Categorical levels are taken from ``levels`` (the training samples' levels) when given, so
    that prediction rows get the same columns; a level not seen in training gets all-zero
    dummies (the reference level). Returns (X, column names, levels, centres).
    """
    if not isinstance(covariates, pd.DataFrame):
        raise ValueError(f"covariates: expected a DataFrame, got {type(covariates).__name__}")
    fit = levels is None
    levels = {} if fit else levels
    centre = {} if centre is None else dict(centre)
    cols, names = [np.ones(len(covariates))], ["intercept"]
    for c in covariates.columns:
        s = covariates[c]
        is_cat = (c in categorical or not pd.api.types.is_numeric_dtype(s)) if fit else c in levels
        if is_cat:
            s = s.astype(str)
            if fit:
                levels[c] = sorted(s.unique())
            for lev in levels[c][1:]:
                cols.append((s == lev).to_numpy(float))
                names.append(f"{c}[{lev}]")
        else:
            v = s.to_numpy(float)
            if c not in centre:
                centre[c] = float(np.nanmean(v))
            cols.append(v - centre[c])
            names.append(c)
    X = np.column_stack(cols)
    if not np.isfinite(X).all():
        raise ValueError("covariates: expected no missing values in the drift covariates")
    return X, names, levels, centre


@dataclass
class SpatialModel:
    """A fitted spatial predictor for one variable.

    Attributes
    ----------
    method : 'ok', 'rk' or 'gpr'.
    log : True when modelled on the natural-log scale.
    train_xy : (n, 2) sample coordinates.
    target : modelling-scale values at the samples (log values when ``log``; OLS residuals for rk).
    variogram : fitted :class:`VariogramFit` (ok: of the values; rk: of the OLS residuals; gpr: None).
    n_neighbours : neighbourhood size for prediction.
    beta, beta_cov, trend_names, levels, centre, categorical, drift_columns : regression-kriging trend
        (OLS coefficients, their covariance, design column names and encodings).
    gpr : fitted :class:`sklearn.gaussian_process.GaussianProcessRegressor` (gpr only).
    scale : coordinate scaling (centre x, centre y, factor) used by the GPR.
    """

    method: str
    log: bool
    train_xy: np.ndarray
    target: np.ndarray
    variogram: VariogramFit | None = None
    n_neighbours: int = 32
    beta: np.ndarray | None = None
    beta_cov: np.ndarray | None = None
    trend_names: list[str] | None = None
    levels: dict | None = None
    centre: dict | None = None
    categorical: tuple = ()
    drift_columns: list[str] | None = None
    gpr: object | None = None
    scale: tuple | None = None
    gpr_global_max: int = 3000

    def predict(self, x, y, covariates: pd.DataFrame | None = None) -> pd.DataFrame:
        r"""Predict at points (x, y); ``covariates`` (rk only) holds the drift covariates there.

        Returns a DataFrame with ``prediction`` and ``variance`` on the original scale and
        ``mean_t``/``sd_t`` on the modelling scale (used for exceedance probabilities and the
        MSSE). On the log scale the back-transform is the lognormal one: for ordinary kriging

        .. math:: \hat z = \exp\left(\hat y + \sigma^2_{OK}/2 - \psi\right)

        (:math:`\psi` the Lagrange multiplier of the variogram form), otherwise
        :math:`\hat z = \exp(\hat y + \sigma^2/2)`; the variance is
        :math:`\hat z^2\,(\exp(\sigma^2) - 1)`.

        References
        ----------
        Journel, A.G. (1980). The lognormal approach to predicting local distributions of
        selective mining unit grades. Mathematical Geology 12, 285-303.
        https://doi.org/10.1007/BF01029417
        """
        t = _as_xy(x, y, "prediction points")
        psi = np.zeros(len(t))
        if self.method in ("ok", "rk"):
            mean_t, var_t, mu = local_kriging(self.train_xy, self.target, t, covariance=self.variogram.covariance,
                                              n_neighbours=self.n_neighbours)
            if self.method == "ok":
                psi = -mu
            else:
                if covariates is None:
                    raise ValueError("regression kriging: expected covariates at the prediction points, got None")
                missing = [c for c in self.drift_columns if c not in covariates.columns]
                if missing:
                    raise ValueError(f"covariates: expected columns {self.drift_columns}, missing {missing}")
                X0, _, _, _ = design_matrix(covariates[self.drift_columns].reset_index(drop=True),
                                            categorical=self.categorical, levels=self.levels, centre=self.centre)
                mean_t = mean_t + X0 @ self.beta
                var_t = var_t + np.einsum("ij,jk,ik->i", X0, self.beta_cov, X0)
        elif self.method == "gpr":
            ts = (t - np.asarray(self.scale[:2])) / self.scale[2]
            if len(self.train_xy) <= self.gpr_global_max:
                from threadpoolctl import threadpool_limits

                with threadpool_limits(limits=1, user_api="blas"):
                    mean_t, sd = self.gpr.predict(ts, return_std=True)
                var_t = sd**2
            else:
                mean_t, var_t = _gpr_local(self, ts)
        else:  # pragma: no cover - guarded in fit_spatial_model
            raise ValueError(self.method)
        sd_t = np.sqrt(np.maximum(var_t, 0.0))
        if self.log:
            pred = np.exp(mean_t + var_t / 2.0 - psi)
            variance = pred**2 * np.expm1(var_t)
        else:
            pred, variance = mean_t, var_t
        return pd.DataFrame({"prediction": pred, "variance": variance, "mean_t": mean_t, "sd_t": sd_t})


def _gpr_kernel_cov(gpr):
    """Covariance-of-distance function of a fitted C*Matern(+White) kernel (normalised y units)."""
    k = gpr.kernel_
    signal, noise = k.k1, k.k2.noise_level

    def cov(h):
        h = np.asarray(h, float)
        flat = h.reshape(-1, 1)
        c = signal(np.zeros((1, 1)), flat).reshape(h.shape)
        return c + np.where(h == 0, noise, 0.0)
    return cov


def _gpr_local(model: SpatialModel, ts: np.ndarray):
    g = model.gpr
    xs = (model.train_xy - np.asarray(model.scale[:2])) / model.scale[2]
    ynorm = (model.target - g._y_train_mean) / g._y_train_std
    m, v, _ = local_kriging(xs, ynorm, ts, covariance=_gpr_kernel_cov(g), n_neighbours=model.n_neighbours,
                            mean=0.0)
    return g._y_train_mean + m * g._y_train_std, v * g._y_train_std**2


def fit_spatial_model(method: str, *, x, y, values, covariates: pd.DataFrame | None = None, categorical=(),
                      log: bool = False, models=VARIOGRAM_MODELS, n_lags: int = 15, max_lag_fraction: float = 0.5,
                      n_neighbours: int = 32, seed: int = 0, variogram_sample: int = 5000,
                      gpr_fit_max: int = 1000) -> SpatialModel:
    r"""Fit one interpolation method to samples.

    * ``ok`` - ordinary kriging with the best WLS variogram (:func:`fit_variogram`).
    * ``rk`` - regression kriging: OLS trend :math:`m(x) = q(x)^\top\beta` on ``covariates``
      (numeric centred, categorical as treatment dummies), ordinary kriging of the OLS residuals
      with their own variogram; the prediction variance is the residual kriging variance plus
      the trend's :math:`q_0^\top \mathrm{Cov}(\hat\beta) q_0` (the OLS form of Hengl et al. 2007,
      eq. 5, neglecting the covariance between the two parts). RK and kriging with external
      drift give equal predictions for the same model (Hengl et al. 2007).
    * ``gpr`` - scikit-learn Gaussian process regression on scaled coordinates with kernel
      :math:`C\,\mathrm{Matern}_{3/2}(\ell) + \sigma^2_n` (hyperparameters by maximum
      marginal likelihood on at most ``gpr_fit_max`` seeded samples); prediction is exact for
      up to 3000 samples and a local simple-kriging neighbourhood with the fitted kernel beyond.

    References
    ----------
    Hengl, T., Heuvelink, G.B.M. and Rossiter, D.G. (2007). About regression-kriging: from
    equations to case studies. Computers & Geosciences 33, 1301-1315.
    https://doi.org/10.1016/j.cageo.2007.05.001
    Rasmussen, C.E. and Williams, C.K.I. (2006). Gaussian Processes for Machine Learning. MIT Press.
    https://doi.org/10.7551/mitpress/3206.001.0001
    """
    if method not in METHOD_LABELS:
        raise ValueError(f"method: expected one of {list(METHOD_LABELS)}, got {method!r}")
    xy = _as_xy(x, y)
    v = _as_values(values, len(xy))
    if log:
        if (v <= 0).any():
            raise ValueError(f"log scale needs positive values; got {int((v <= 0).sum())} values <= 0")
        v = np.log(v)
    rng = np.random.default_rng(seed)
    if method == "ok":
        ev = experimental_variogram(xy[:, 0], xy[:, 1], v, n_lags=n_lags, max_lag_fraction=max_lag_fraction,
                                    sampling_size=variogram_sample, seed=seed)
        vf = fit_variogram(ev, models=models)
        return SpatialModel("ok", log, xy, v, variogram=vf, n_neighbours=n_neighbours)
    if method == "rk":
        if covariates is None or covariates.shape[1] == 0:
            raise ValueError("regression kriging: expected a DataFrame of drift covariates, got none")
        if len(covariates) != len(xy):
            raise ValueError(f"covariates: expected {len(xy)} rows (one per sample), got {len(covariates)}")
        X, names, levels, centre = design_matrix(covariates.reset_index(drop=True), categorical=categorical)
        beta, *_ = np.linalg.lstsq(X, v, rcond=None)
        resid = v - X @ beta
        dof = max(len(v) - np.linalg.matrix_rank(X), 1)
        s2 = float(resid @ resid) / dof
        beta_cov = s2 * np.linalg.pinv(X.T @ X)
        ev = experimental_variogram(xy[:, 0], xy[:, 1], resid, n_lags=n_lags, max_lag_fraction=max_lag_fraction,
                                    sampling_size=variogram_sample, seed=seed)
        vf = fit_variogram(ev, models=models)
        num = [c for c in covariates.columns if c not in levels]
        return SpatialModel("rk", log, xy, resid, variogram=vf, n_neighbours=n_neighbours, beta=beta,
                            beta_cov=beta_cov, trend_names=names, levels=levels,
                            centre={c: centre[c] for c in num}, categorical=tuple(categorical),
                            drift_columns=list(covariates.columns))
    # gpr
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
    from threadpoolctl import threadpool_limits

    c = xy.mean(axis=0)
    f = float(np.hypot(*(xy.max(axis=0) - xy.min(axis=0)))) or 1.0
    xs = (xy - c) / f
    kern = (ConstantKernel(1.0, (1e-3, 1e2)) * Matern(length_scale=0.1, length_scale_bounds=(1e-3, 10.0), nu=1.5)
            + WhiteKernel(0.1, (1e-6, 1e1)))
    fit_idx = np.arange(len(v)) if len(v) <= gpr_fit_max else np.sort(rng.choice(len(v), gpr_fit_max, replace=False))
    gpr = GaussianProcessRegressor(kernel=kern, normalize_y=True, n_restarts_optimizer=0,
                                   random_state=int(rng.integers(2**31 - 1)))
    # small dense systems: multi-threaded BLAS only adds contention (10x slower on 2 busy cores)
    with threadpool_limits(limits=1, user_api="blas"):
        gpr.fit(xs[fit_idx], v[fit_idx])
        if len(fit_idx) < len(v) and len(v) <= 3000:
            gpr = GaussianProcessRegressor(kernel=gpr.kernel_, normalize_y=True, optimizer=None).fit(xs, v)
    if len(v) > 3000:
        # keep the fitted kernel; set the normalisation from all samples for the local predictor
        gpr._y_train_mean, gpr._y_train_std = float(v.mean()), float(v.std()) or 1.0
    return SpatialModel("gpr", log, xy, v, n_neighbours=n_neighbours, gpr=gpr, scale=(c[0], c[1], f))


# ------------------------------------------------------------------------------------------------
def cross_validate(method: str, *, x, y, values, covariates: pd.DataFrame | None = None, categorical=(),
                   log: bool = False, scheme: str = "kfold", n_folds: int = 10, seed: int = 0,
                   fit: Callable[..., SpatialModel] | None = None, **fit_kwargs) -> pd.DataFrame:
    """Seeded k-fold or leave-one-out cross-validation of one method.

    Each fold refits the whole method (variogram or GP kernel, trend) on the training samples
    only and predicts the held-out samples, so no held-out value informs its own prediction.

    Parameters
    ----------
    scheme : 'kfold' (seeded random partition into ``n_folds``) or 'loo'.
    fit : fitting function (default :func:`fit_spatial_model`); receives ``method`` and keyword
        arguments x, y, values, covariates, categorical, log, seed and ``fit_kwargs``.

    Returns
    -------
    DataFrame per sample: index (position in the input), fold, observed, predicted,
    variance (original scale), observed_t, mean_t, sd_t (modelling scale).
    """
    xy = _as_xy(x, y)
    v = _as_values(values, len(xy))
    n = len(v)
    if scheme not in ("kfold", "loo"):
        raise ValueError(f"scheme: expected 'kfold' or 'loo', got {scheme!r}")
    if scheme == "loo":
        folds = np.arange(n)
    else:
        if not 2 <= n_folds <= n:
            raise ValueError(f"n_folds: expected 2..{n} (number of samples), got {n_folds}")
        folds = np.random.default_rng(seed).permutation(np.arange(n) % n_folds)
    fit = fit or fit_spatial_model
    cov = None if covariates is None else covariates.reset_index(drop=True)
    parts = []
    for f in np.unique(folds):
        test = np.flatnonzero(folds == f)
        train = np.flatnonzero(folds != f)
        model = fit(method, x=xy[train, 0], y=xy[train, 1], values=v[train],
                    covariates=None if cov is None else cov.iloc[train].reset_index(drop=True),
                    categorical=categorical, log=log, seed=seed + int(f), **fit_kwargs)
        p = model.predict(xy[test, 0], xy[test, 1], None if cov is None else cov.iloc[test].reset_index(drop=True))
        parts.append(pd.DataFrame({"index": test, "fold": int(f), "observed": v[test],
                                   "predicted": p["prediction"].to_numpy(), "variance": p["variance"].to_numpy(),
                                   "observed_t": np.log(v[test]) if log else v[test],
                                   "mean_t": p["mean_t"].to_numpy(), "sd_t": p["sd_t"].to_numpy()}))
    return pd.concat(parts, ignore_index=True).sort_values("index").reset_index(drop=True)


def cv_metrics(cv: pd.DataFrame) -> dict:
    r"""MAE, RMSE and MSSE of cross-validation predictions.

    .. math::

        \mathrm{MAE} = \frac1n\sum|z_i-\hat z_i|,\quad
        \mathrm{RMSE} = \sqrt{\frac1n\sum (z_i-\hat z_i)^2},\quad
        \mathrm{MSSE} = \frac1n\sum \frac{(y_i-\hat y_i)^2}{\sigma_i^2}

    MAE and RMSE are on the original scale; the MSSE on the modelling scale (log values when
    logged), where the kriging / GP variance :math:`\sigma_i^2` applies; an MSSE near 1 means
    the stated uncertainty is about right.

    References
    ----------
    Oliver, M.A. and Webster, R. (2014). A tutorial guide to geostatistics: computing and
    modelling variograms and kriging. Catena 113, 56-69. https://doi.org/10.1016/j.catena.2013.09.006
    """
    e = cv["observed"] - cv["predicted"]
    sd = cv["sd_t"].to_numpy(float)
    et = (cv["observed_t"] - cv["mean_t"]).to_numpy(float)
    ok = sd > 0
    return {"mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e**2))),
            "msse": float(np.mean(et[ok] ** 2 / sd[ok] ** 2)) if ok.any() else np.nan, "n": int(len(cv))}


def best_methods(cv_table: pd.DataFrame, *, metric: str = "rmse") -> pd.DataFrame:
    """Best method per metal by ``metric`` (smallest), with the margin over the runner-up.

    Returns
    -------
    DataFrame: metal, best, <metric>, runner_up, runner_up_<metric>, improvement_pct.
    """
    rows = []
    for metal, g in cv_table.groupby("metal", sort=False):
        g = g.sort_values(metric, kind="stable")
        r = {"metal": metal, "best": g.iloc[0]["method"], metric: float(g.iloc[0][metric])}
        if len(g) > 1:
            r.update({"runner_up": g.iloc[1]["method"], f"runner_up_{metric}": float(g.iloc[1][metric]),
                      "improvement_pct": 100 * (1 - g.iloc[0][metric] / g.iloc[1][metric])})
        else:
            r.update({"runner_up": None, f"runner_up_{metric}": np.nan, "improvement_pct": np.nan})
        rows.append(r)
    return pd.DataFrame(rows)


def exceedance_probability(mean_t, sd_t, *, threshold: float, log: bool) -> np.ndarray:
    r"""Probability that the value exceeds ``threshold`` (Gaussian on the modelling scale).

    .. math:: P(Z > t) = 1 - \Phi\left(\frac{g(t) - \hat y}{\sigma}\right)

    with :math:`g` the log (when modelled on the log scale) or the identity (multi-Gaussian
    approach; Goovaerts 1997, ch. 7). Where :math:`\sigma = 0` it is the indicator
    :math:`\hat y > g(t)`.

    References
    ----------
    Goovaerts, P. (1997). Geostatistics for Natural Resources Evaluation. Oxford University Press.
    ISBN 978-0-19-511538-3.
    """
    m = np.asarray(mean_t, float)
    s = np.asarray(sd_t, float)
    if not threshold > 0 and log:
        raise ValueError(f"threshold: expected > 0 on the log scale, got {threshold}")
    g = np.log(threshold) if log else threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        p = stats.norm.sf((g - m) / s)
    return np.where(s > 0, p, (m > g).astype(float))


def area_share_above(prediction, probability, *, threshold: float) -> dict:
    """Share of the (equal-area) cells above ``threshold``: by the prediction, and expected.

    Returns dict with share_predicted (fraction of cells whose prediction exceeds the threshold),
    share_expected (mean exceedance probability: the expected fraction of area above it) and
    share_p50/share_p90 (fraction of cells with probability > 0.5 / > 0.9).
    """
    p = np.asarray(probability, float)
    z = np.asarray(prediction, float)
    return {"share_predicted": float(np.mean(z > threshold)), "share_expected": float(np.mean(p)),
            "share_p50": float(np.mean(p > 0.5)), "share_p90": float(np.mean(p > 0.9))}


# ------------------------------------------------------------------------------------------------
# stage helpers: one metal end to end, figures, methods text
def guideline_thresholds(guideline_set: str | None, threshold_name: str | None, *, medium: str = "soil",
                         unit: str = "mg/kg") -> pd.Series:
    """Guideline value per metal for ``threshold_name`` (the strictest where the set has several).

    Returns an empty Series when no set or threshold is selected.
    """
    from .reference import guideline_values

    if not guideline_set or not threshold_name:
        return pd.Series(dtype=float, name="threshold")
    gl = guideline_values(guideline_set, medium=medium, unit=unit)
    names = sorted(gl["threshold_name"].unique())
    if threshold_name not in names:
        raise ValueError(f"guideline threshold {threshold_name!r} not in set {guideline_set!r}; expected one of {names}")
    return gl[gl["threshold_name"] == threshold_name].groupby("metal")["value"].min().rename("threshold")


@dataclass
class MetalMap:
    """Everything :func:`map_metal` computed for one metal.

    Attributes
    ----------
    metal, log : metal symbol; whether it was modelled on the log scale.
    experimental, directional, anisotropy : variogram tables (of the modelling-scale values).
    variogram : the fitted :class:`VariogramFit` (ordinary-kriging variogram).
    cv : per-sample cross-validation predictions of every method (method column added).
    cv_summary : metal, method, mae, rmse, msse, n.
    best : the method with the smallest cross-validation RMSE.
    grid : x, y, metal, method, prediction, variance, mean_t, sd_t, exceedance_probability
        (NaN without a threshold) for the best method.
    threshold : guideline value (NaN when none) and ``shares`` (dict of :func:`area_share_above`).
    seconds : fitting / prediction time per method.
    """

    metal: str
    log: bool
    experimental: pd.DataFrame
    directional: pd.DataFrame
    anisotropy: pd.DataFrame
    variogram: VariogramFit
    cv: pd.DataFrame
    cv_summary: pd.DataFrame
    best: str
    grid: pd.DataFrame
    threshold: float
    shares: dict
    seconds: dict


def map_metal(metal: str, *, x, y, values, grid_x, grid_y, sample_covariates: pd.DataFrame | None = None,
              grid_covariates: pd.DataFrame | None = None, categorical=(), methods=("ok", "rk", "gpr"),
              log_mode: str = "auto", skew_threshold: float = 1.0, models=VARIOGRAM_MODELS, n_lags: int = 15,
              max_lag_fraction: float = 0.5, n_neighbours: int = 32, scheme: str = "kfold", n_folds: int = 10,
              threshold: float | None = None, seed: int = 0) -> MetalMap:
    """Variograms, cross-validation of ``methods``, prediction with the best, exceedance: one metal.

    Regression kriging (``rk``) is dropped when no covariates are given. Samples with missing
    values (of the metal or of a covariate) are left out. See the functions used for formulas.
    """
    import time

    v = np.asarray(values, float)
    xv, yv = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(v)
    methods = list(methods)
    if sample_covariates is None or sample_covariates.shape[1] == 0:
        if "rk" in methods:
            methods.remove("rk")
    elif "rk" in methods:   # the methods are compared on the same samples
        keep &= sample_covariates.notna().all(axis=1).to_numpy()
    if not methods:
        raise ValueError("methods: expected at least one usable method")
    xv, yv, v = xv[keep], yv[keep], v[keep]
    cov = None if sample_covariates is None or "rk" not in methods else \
        sample_covariates.loc[keep].reset_index(drop=True)
    log = choose_log(v, mode=log_mode, skew_threshold=skew_threshold)
    vt = np.log(v) if log else v
    big = len(v) > 5000
    ev = experimental_variogram(xv, yv, vt, n_lags=n_lags, max_lag_fraction=max_lag_fraction,
                                sampling_size=5000 if big else None, seed=seed)
    vf = fit_variogram(ev, models=models)
    dv = directional_variograms(xv, yv, vt, n_lags=n_lags, max_lag_fraction=max_lag_fraction,
                                sampling_size=5000 if big else None, seed=seed)
    an = anisotropy_summary(dv, vf)
    kw = dict(models=models, n_lags=n_lags, max_lag_fraction=max_lag_fraction, n_neighbours=n_neighbours)
    cvs, rows, secs = [], [], {}
    for m in methods:
        t0 = time.perf_counter()
        c = cross_validate(m, x=xv, y=yv, values=v, covariates=cov if m == "rk" else None,
                           categorical=categorical, log=log, scheme=scheme, n_folds=n_folds, seed=seed, **kw)
        secs[f"cv_{m}"] = time.perf_counter() - t0
        cvs.append(c.assign(method=m))
        rows.append({"metal": metal, "method": m, **cv_metrics(c)})
    summ = pd.DataFrame(rows, columns=["metal", "method", "mae", "rmse", "msse", "n"])
    best = str(summ.sort_values("rmse", kind="stable").iloc[0]["method"])
    t0 = time.perf_counter()
    model = fit_spatial_model(best, x=xv, y=yv, values=v, covariates=cov if best == "rk" else None,
                              categorical=categorical, log=log, seed=seed, **kw)
    gc = None
    if best == "rk":
        gc = grid_covariates[list(cov.columns)].reset_index(drop=True)
    pr = model.predict(grid_x, grid_y, gc)
    secs[f"predict_{best}"] = time.perf_counter() - t0
    g = pd.DataFrame({"x": np.asarray(grid_x, float), "y": np.asarray(grid_y, float), "metal": metal, "method": best})
    g = pd.concat([g, pr], axis=1)
    thr = float(threshold) if threshold is not None and np.isfinite(threshold) else np.nan
    if np.isfinite(thr):
        g["exceedance_probability"] = exceedance_probability(g["mean_t"], g["sd_t"], threshold=thr, log=log)
        shares = area_share_above(g["prediction"], g["exceedance_probability"], threshold=thr)
    else:
        g["exceedance_probability"] = np.nan
        shares = {}
    return MetalMap(metal=metal, log=log, experimental=ev, directional=dv, anisotropy=an, variogram=vf,
                    cv=pd.concat(cvs, ignore_index=True), cv_summary=summ, best=best, grid=g, threshold=thr,
                    shares=shares, seconds=secs)


def variogram_figure(mm: MetalMap, *, unit: str, coordinate_unit: str):
    """Omnidirectional variogram with every fitted model (left) and directional variograms (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.9), sharey=True)
    e = mm.experimental
    ax = axes[0]
    ax.scatter(e["lag"], e["gamma"], s=12 + 40 * e["n_pairs"] / e["n_pairs"].max(), color="k", zorder=3,
               label="experimental")
    h = np.linspace(0, e["lag"].max() * 1.05, 200)
    for r in mm.variogram.candidates.itertuples():
        m = _gs_class(r.model)(dim=2, var=r.partial_sill, len_scale=r.len_scale, nugget=r.nugget)
        if r.model == "matern":
            m.nu = r.nu
        best = r.model == mm.variogram.model
        ax.plot(h, np.where(h > 0, m.vario_nugget(h), 0), lw=2.0 if best else 0.9, ls="-" if best else "--",
                label=f"{r.model}{' (selected)' if best else ''}")
    scale = "ln " if mm.log else ""
    ax.set_xlabel(f"lag ({coordinate_unit})")
    ax.set_ylabel(f"semivariance of {scale}{mm.metal}" + ("" if mm.log else f" ({unit})²"))
    ax.legend(fontsize=6.5, frameon=False)
    ax.set_title(f"{mm.metal}: omnidirectional")
    ax = axes[1]
    for az, d in mm.directional.groupby("azimuth_deg"):
        ax.plot(d["lag"], d["gamma"], "o-", ms=3, lw=0.9, label=f"{az:.0f}°")
    ax.set_xlabel(f"lag ({coordinate_unit})")
    ax.legend(title="azimuth (ccw from E)", fontsize=6.5, title_fontsize=6.5, frameon=False)
    ax.set_title(f"{mm.metal}: directional (±22.5°)")
    fig.tight_layout()
    return fig


def _raster(x, y, values):
    from .geo import grid_to_array, regular_grid

    try:
        g = regular_grid(x, y)
    except ValueError:
        return None
    a = grid_to_array(g, values)
    ext = (g.xmin - g.dx / 2, g.xmin + (g.ncols - 0.5) * g.dx, g.ymax - (g.nrows - 0.5) * g.dy, g.ymax + g.dy / 2)
    return a, ext


def map_figure(mm: MetalMap, *, sample_x, sample_y, sample_values, unit: str, coordinate_unit: str):
    """Prediction (samples overlaid, same colour scale), prediction standard deviation and
    probability of exceeding the guideline value (when one is set), on the grid."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    g = mm.grid
    panels = [("prediction", f"{mm.metal} ({unit}), {mm.best.upper()}", "viridis"),
              ("sd", f"prediction SD ({unit})", "magma_r")]
    if np.isfinite(mm.threshold):
        panels.append(("exceedance_probability", f"P({mm.metal} > {mm.threshold:g} {unit})", "RdYlBu_r"))
    fig, axes = plt.subplots(1, len(panels), figsize=(7.0, 2.9 if len(panels) == 3 else 3.3))
    sv = np.asarray(sample_values, float)
    vals = {"prediction": g["prediction"].to_numpy(), "sd": np.sqrt(g["variance"].to_numpy()),
            "exceedance_probability": g["exceedance_probability"].to_numpy()}
    for ax, (key, title, cmap) in zip(np.atleast_1d(axes), panels):
        v = vals[key]
        if key == "prediction":
            lo = np.nanmin(np.r_[v, sv])
            hi = np.nanmax(np.r_[v, sv])
            norm = LogNorm(max(lo, 1e-6), hi) if mm.log and lo > 0 else Normalize(lo, hi)
        elif key == "exceedance_probability":
            norm = Normalize(0, 1)
        else:
            norm = Normalize(np.nanmin(v), np.nanmax(v))
        r = _raster(g["x"], g["y"], v)
        if r is not None:
            im = ax.imshow(r[0], extent=r[1], origin="upper", cmap=cmap, norm=norm, interpolation="nearest")
        else:
            im = ax.scatter(g["x"], g["y"], c=v, s=2, cmap=cmap, norm=norm, marker="s", linewidths=0)
        if key == "prediction":
            ax.scatter(sample_x, sample_y, c=sv, cmap=cmap, norm=norm, s=9, edgecolors="k", linewidths=0.4)
        else:
            ax.scatter(sample_x, sample_y, s=2, c="k", linewidths=0)
        if key == "exceedance_probability":
            try:
                if r is not None:
                    ax.contour(r[0], levels=[0.5], colors="k", linewidths=0.7, extent=r[1], origin="upper")
            except (ValueError, TypeError):
                pass
        cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
        cb.ax.tick_params(labelsize=6)
        if isinstance(norm, LogNorm):
            from matplotlib.ticker import LogLocator, ScalarFormatter

            cb.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            cb.ax.yaxis.set_minor_formatter(plt.NullFormatter())
            cb.ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.set_title(title, fontsize=8)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
        ax.set_xlabel(f"x ({coordinate_unit})", fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel(f"y ({coordinate_unit})", fontsize=7)
    fig.tight_layout()
    return fig


def methods_text(*, methods, log_mode: str, skew_threshold: float, models, n_neighbours: int, scheme: str,
                 n_folds: int, guideline_set: str | None, threshold_name: str | None, drift_covariates,
                 crs: str) -> str:
    """Methods paragraph (pandoc markdown with math and citations) for the report."""
    cv = "leave-one-out" if scheme == "loo" else f"{n_folds}-fold (seeded random partition)"
    meth = ", ".join(METHOD_LABELS[m] for m in methods)
    drift = ", ".join(drift_covariates) if drift_covariates else "none"
    logtxt = {"auto": f"on natural-log values when the sample skewness exceeds {skew_threshold:g}",
              "always": "on natural-log values", "never": "on the original values"}[log_mode]
    crs_txt = ("The coordinates are in a local system (no EPSG code), so the GeoTIFF and GeoPackage files carry "
               "no CRS; in QGIS set the layer CRS to none / unknown." if crs == "local" else
               f"The GeoTIFF and GeoPackage files carry the region's CRS ({crs}).")
    thr = (f"The probability that a cell exceeds the `{threshold_name}` value of the `{guideline_set}` set (the strictest "
           "where the set distinguishes land uses) is $P(Z>t) = 1-\\Phi\\left((g(t)-\\hat y)/\\sigma\\right)$, "
           "with $g$ the log or identity, $\\hat y$ and $\\sigma$ the prediction and its standard error on the "
           "modelling scale (multi-Gaussian approach [@goovaerts1997]); the share of the area above the value is "
           "given both as the share of cells whose prediction exceeds it and as the mean probability (the expected share)."
           if guideline_set and threshold_name else "No guideline threshold is selected, so no exceedance map is drawn.")
    return f"""
**Variograms.** For each metal, modelled {logtxt}, the experimental semivariogram
$\\hat\\gamma(h) = \\frac{{1}}{{2N(h)}}\\sum (z_i - z_j)^2$ [@matheron1963] was computed with GSTools
[@mueller2022gstools] and the {', '.join(models)} models (with nugget) were fitted by weighted least squares with
weights $N(h_j)/h_j^2$ [@cressie1985]; the model with the smallest weighted residual sum of squares was kept.
Directional variograms (azimuths 0, 45, 90 and 135° counter-clockwise from east, tolerance ±22.5°) check for
anisotropy: the range is refitted per direction and the ratio of the longest to the shortest is reported. The
interpolation itself uses isotropic models.

**Interpolation.** The methods compared were {meth}. Ordinary kriging (OK) solves
$\\sum_j \\lambda_j C(x_i-x_j) + \\mu = C(x_i-x_0)$, $\\sum_j\\lambda_j = 1$ in a moving neighbourhood of the
{n_neighbours} nearest samples [@webster2007]. Regression kriging (RK) adds an ordinary-least-squares trend on the
grid covariates ({drift}) and kriges its residuals with their own variogram [@hengl2007]. Gaussian process
regression (GPR) uses a constant × Matérn ($\\nu=3/2$) + white-noise kernel on the coordinates, with
hyperparameters by maximum marginal likelihood (scikit-learn) [@rasmussen2006]. On the log scale predictions are
back-transformed with the lognormal correction, $\\hat z = \\exp(\\hat y + \\sigma^2_{{OK}}/2 - \\psi)$ for OK
($\\psi$ the Lagrange multiplier) and $\\exp(\\hat y + \\sigma^2/2)$ otherwise [@journel1980].

**Cross-validation.** Each method was assessed by {cv} cross-validation in which the variogram, trend and GP
kernel are refitted on the training samples of every fold, so no held-out value informs its own prediction. We
report the mean absolute error (MAE) and root mean squared error (RMSE) on the concentration scale and the mean
standardised squared error $\\mathrm{{MSSE}} = \\frac1n\\sum (y_i - \\hat y_i)^2/\\sigma_i^2$ on the modelling scale
(ideally 1) [@oliver2014]. The method with the smallest RMSE maps each metal.

**Exceedance.** {thr}

**Files.** Per metal, a GeoTIFF (bands: prediction, variance, exceedance probability) and one GeoPackage with the
grid predictions and the sample hotspot classes are written under `files/`. {crs_txt}
"""


def variogram_tables(maps: dict[str, MetalMap], *, coordinate_unit: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tables of the variogram analysis of several metals.

    Returns
    -------
    candidates : every fitted model (metal, scale, model, selected, nugget, partial_sill, len_scale,
        effective_range, nu, wsse, r2).
    anisotropy : directional ranges (metal, azimuth_deg, effective_range, n_pairs, ratio_to_min).
    display : one row per metal (selected model, nugget/sill ratio, anisotropy ratio, direction of
        the longest range), with units in the headers.
    """
    cand = pd.concat([mm.variogram.candidates.assign(metal=m, scale="ln" if mm.log else "raw",
                                                     selected=mm.variogram.candidates["model"] == mm.variogram.model)
                      for m, mm in maps.items()], ignore_index=True)
    cand = cand[["metal", "scale", "model", "selected", "nugget", "partial_sill", "len_scale", "effective_range", "nu",
                 "wsse", "r2"]]
    an = pd.concat([mm.anisotropy.assign(metal=m) for m, mm in maps.items()], ignore_index=True)
    rows = []
    for m, mm in maps.items():
        a = mm.anisotropy
        vf = mm.variogram
        rows.append({"Metal": m, "Scale": "ln" if mm.log else "raw", "Model": vf.model, "Nugget": vf.nugget,
                     "Partial sill": vf.partial_sill, f"Effective range ({coordinate_unit})": vf.effective_range,
                     "Nugget/sill": vf.nugget / vf.sill if vf.sill > 0 else np.nan,
                     "Anisotropy ratio": float(a["ratio_to_min"].max()) if len(a) else np.nan,
                     "Longest range at (°)": float(a.loc[a["effective_range"].idxmax(), "azimuth_deg"]) if len(a) else np.nan})
    return cand, an, pd.DataFrame(rows)


def results_text(cv_table: pd.DataFrame, best: pd.DataFrame, *, unit: str) -> str:
    """One results paragraph: which method won per metal and by how much."""
    def sig3(v: float) -> str:
        return f"{v:#.3g}".rstrip(".")

    parts = []
    for r in best.itertuples():
        if r.runner_up is None or not np.isfinite(r.improvement_pct):
            parts.append(f"{r.metal}: {METHOD_LABELS[r.best]} (RMSE {sig3(r.rmse)} {unit})")
        else:
            parts.append(f"{r.metal}: {METHOD_LABELS[r.best]} (RMSE {sig3(r.rmse)} {unit}, {r.improvement_pct:.1f} % "
                         f"below {METHOD_LABELS[r.runner_up]})")
    wins = best["best"].value_counts()
    lead = ", ".join(f"{METHOD_LABELS[m]} for {n} metal{'s' if n > 1 else ''}" for m, n in wins.items())
    ms = cv_table["msse"]
    close = []
    if len(best) and (best["improvement_pct"] < 5).any():
        close = list(best.loc[best["improvement_pct"] < 5, "metal"])
    txt = (f"Cross-validation favoured {lead}. Per metal, the chosen method was " + "; ".join(parts) + ". ")
    if close:
        txt += (f"For {', '.join(close)} the margin over the runner-up is below 5 %, within the sampling variability "
                "of a cross-validation estimate, so the methods are practically equivalent there. ")
    txt += (f"MSSE ranged from {ms.min():.2f} to {ms.max():.2f} across methods and metals (1 means the stated "
            "uncertainty matches the errors).")
    return txt


def exceedance_text(shares: pd.DataFrame, *, threshold_name: str, guideline_set: str, unit: str) -> str:
    """Results sentence on the share of the area above the guideline value, per metal."""
    if shares is None or not len(shares):
        return ""
    s = shares.sort_values("share_expected", ascending=False)
    parts = [f"{r.metal} {100 * r.share_predicted:.1f} % (expected {100 * r.share_expected:.1f} %; "
             f"P > 0.9 on {100 * r.share_p90:.1f} %)" for r in s.itertuples()]
    return (f"Share of the mapped area whose prediction exceeds the {threshold_name} value of {guideline_set}: "
            + "; ".join(parts) + ". The expected share (mean exceedance probability) accounts for the prediction "
            "uncertainty; where it differs strongly from the predicted share, the map is uncertain near the threshold.")
