"""Spatial interpolation: variograms, kriging, cokriging, machine learning with residual kriging, stacking.

The functions here map one variable (one metal) observed at sample points onto a set of
prediction points (the region's grid):

* :func:`experimental_variogram` (lags at the mean pair distance, as gstat) and
  :func:`directional_variograms`; :func:`fit_variogram` (spherical, exponential, Gaussian and
  Matern models by weighted least squares with gstat's N/h^2 or Cressie's weights, best model by
  a penalised criterion); :func:`detect_anisotropy` (geometric anisotropy from the directional
  check);
* :func:`fit_spatial_model` fits ordinary kriging (``"ok"``), regression kriging (``"rk"``),
  simple kriging with local means by class (``"sklm"``), ordinary cokriging with correlated
  metals (``"ck"``, :func:`fit_coregionalisation`, :func:`local_cokriging`), a random forest with
  residual kriging (``"rfk"``) or a Gaussian process (``"gpr"``) and returns a
  :class:`SpatialModel` whose ``predict`` works in chunks with a *moving neighbourhood* of the
  ``k`` nearest samples (:func:`local_kriging`), so memory does not grow with the grid;
* :func:`cross_validate` (seeded k-fold, leave-one-out or spatial blocks,
  :func:`spatial_block_folds`; every fold refits the whole method), :func:`cv_metrics`,
  :func:`stacked_cv` (stacked ensemble), :func:`stack_shrinkage` (its shrinkage towards ordinary
  kriging), :func:`select_method` (one-standard-error rule) and
  :func:`ratio_interval` (gain over ordinary kriging with a bootstrap interval);
* :func:`exceedance_probability` (Gaussian on the modelling scale) and :func:`area_share_above`;
* :func:`map_metal` runs all of it for one metal.

Skewed variables can be modelled on the log scale (:func:`choose_log`) with the lognormal
back-transform including the Lagrange term (see :meth:`SpatialModel.predict`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import cKDTree

__all__ = [
    "VARIOGRAM_MODELS", "VARIOGRAM_WEIGHTS", "METHOD_LABELS", "METHOD_SHORT", "METHOD_COMPLEXITY", "DEFAULT_METHODS",
    "SHARE_DISTANCE_SCALES", "method_code", "method_covariate", "method_label", "share_coordinates", "share_groups",
    "choose_log", "experimental_variogram", "directional_variograms", "anisotropy_summary", "VariogramFit",
    "fit_variogram", "Anisotropy", "detect_anisotropy", "cross_variograms", "Coregionalisation",
    "fit_coregionalisation", "local_cokriging", "oblique_coordinates", "local_kriging", "design_matrix",
    "SpatialModel", "choose_secondary", "fit_spatial_model", "random_folds", "spatial_block_folds",
    "cross_validate", "cv_metrics", "stack_weights", "stacked_cv", "STACK_SHRINKAGE",
    "stack_shrinkage", "select_method", "ratio_interval",
    "best_methods", "exceedance_probability", "area_share_above", "guideline_thresholds", "MetalMap",
    "block_size_for", "map_metal", "variogram_figure", "map_figure", "methods_text", "variogram_tables",
    "choice_table", "results_text", "exceedance_text", "spatial_subsample", "guideline_classes", "sample_shares",
    "grid_maps_figure", "combine_members", "covariates_at_samples", "categorical_columns", "class_shares",
    "share_radius", "share_column", "map_class_shares", "SHARE_RADII", "class_share_text", "covariate_agreement", "covariate_agreement_text",
]

VARIOGRAM_MODELS = ("spherical", "exponential", "gaussian", "matern")
#: weights of the variogram fit: gstat fit.method 7 (N/h^2), 2 (Cressie 1985: N/gamma^2) and 1 (N)
VARIOGRAM_WEIGHTS = ("npairs_h2", "cressie", "npairs")
METHOD_LABELS = {"ok": "ordinary kriging", "rk": "regression kriging",
                 "sklm": "simple kriging with local means by class", "ck": "ordinary cokriging",
                 "rfk": "random forest with residual kriging", "gpr": "Gaussian process regression",
                 "oks": "kriging in space and mapped class shares", "stack": "stacked ensemble",
                 "ckc": "ordinary cokriging with the secondary metals known at the point (collocated)"}
#: short labels for figure titles
METHOD_SHORT = {"ok": "OK", "rk": "RK", "sklm": "SKlm", "ck": "cokriging", "rfk": "RF + kriging", "gpr": "GPR",
                "oks": "kriging in space and shares", "stack": "stack", "ckc": "collocated cokriging"}
#: complexity rank used by the one-standard-error rule (lower is simpler)
METHOD_COMPLEXITY = {"ok": 0, "sklm": 1, "rk": 2, "gpr": 2, "oks": 2, "ck": 3, "rfk": 4, "stack": 5}
# the candidates compared by default (the spatial stage's and map_metal's). The Gaussian process is offered but not
# among them: in nested cross-validation of the whole choice (benchmarks/spatial.py --nested, December 2026) adding it
# lowered the map MAE relative to isotropic ordinary kriging, averaged over the metals, on Jura by 0.000-0.009
# (repeats 4-7: 0.978 -> 0.969, 0.961 -> 0.957, 0.955 -> 0.950, 0.971 -> 0.971; Cd most) and changed it by at most
# 0.004 on Meuse (repeats 0 and 1: 0.787 -> 0.786, 0.784 -> 0.787) and on two generated Jura-design hold-outs (0.988
# -> 0.992, 0.981 -> 0.980): a gain too small, and too specific to one data set, for its extra fitting time. With the
# median mapped (map_metal's point), Jura repeats 4 and 5: mean over metals 0.967 -> 0.953 and 0.950 -> 0.947, median
# over metals 0.969 -> 0.968 and 0.953 -> 0.961 (the gain is Cd's, about four times the fitting time per metal)
# Kriging in space and the map's class shares ('oks') is among them: as a member of the stack it moved the Jura nested
# medians over the metals from a mean over 6 repeats of 0.956 to 0.946 and Meuse's from 0.767 to 0.764 (README,
# "Measured map accuracy at new places")
DEFAULT_METHODS = ("ok", "rk", "sklm", "ck", "rfk", "oks", "stack")

#: separates a method's code from the covariate it is applied to in a candidate's name (``'oks:Rock'``: kriging in
#: space and the map's shares of the classes of Rock; :func:`map_metal` makes one such candidate per categorical
#: covariate)
FOR_COVARIATE = ":"


def method_code(candidate: str) -> str:
    """The method code of a candidate's name (``'oks:Rock'`` -> ``'oks'``; other names are codes).

    Parameters
    ----------
    candidate : a candidate's name (a method code, or a code, :data:`FOR_COVARIATE` and a covariate).

    Returns
    -------
    str
    """
    return str(candidate).partition(FOR_COVARIATE)[0]


def method_covariate(candidate: str) -> str:
    """The covariate a candidate applies its method to (``'oks:Rock'`` -> ``'Rock'``; ``''`` for a plain code).

    Parameters
    ----------
    candidate : a candidate's name.

    Returns
    -------
    str
    """
    return str(candidate).partition(FOR_COVARIATE)[2]


def method_label(candidate: str, *, short: bool = False, labels: dict | None = None) -> str:
    """Reader's name of a candidate (:data:`METHOD_LABELS`, or :data:`METHOD_SHORT` with ``short``), naming the
    covariate a method is applied to by its reader's name in ``labels`` (``'oks:Rock'`` with ``{'Rock': 'rock
    type'}`` -> 'kriging in space and mapped class shares (rock type)').

    Parameters
    ----------
    candidate : a candidate's name.
    short : the short label (figure titles).
    labels : covariate -> reader's name.

    Returns
    -------
    str
    """
    code, cov = method_code(candidate), method_covariate(candidate)
    label = (METHOD_SHORT if short else METHOD_LABELS).get(code, code)
    return f"{label} ({(labels or {}).get(cov, cov)})" if cov else label


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

    Parameters
    ----------
    values : array-like
        Sample values (concentrations).
    mode : {'auto', 'always', 'never'}, default 'auto'
        How to decide.
    skew_threshold : float, default 1.0
        Skewness above which ``'auto'`` chooses the log scale.

    Returns
    -------
    bool
        True to model on the log scale.
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


def _pair_sums(xy: np.ndarray, v: np.ndarray, edges: np.ndarray, *, azimuths_rad=None, tol_rad: float = 0.0,
               max_pairs_per_chunk: int = 4_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per lag bin (and direction): number of pairs, sum of their distances and of their squared differences.

    Every unordered pair i < j at distance d, with ``edges[k] < d <= edges[k+1]`` (d > 0), is counted once;
    with ``azimuths_rad`` a pair goes to the first direction within ``tol_rad`` of its separation vector
    (either orientation). Rows are processed in chunks of about ``max_pairs_per_chunk`` pairs, so memory
    stays bounded while the work is vectorised. Hand-written because gstools' estimator took a minute for
    3,600 samples on a busy machine where this takes about a second (results equal, tested).
    Returns arrays of shape (n_bins,) or (n_directions, n_bins).
    """
    n = len(xy)
    nb = len(edges) - 1
    nd = 1 if azimuths_rad is None else len(azimuths_rad)
    cnt = np.zeros(nd * nb)
    dsum = np.zeros(nd * nb)
    gsum = np.zeros(nd * nb)
    hmax = float(edges[-1])
    chunk = max(1, int(max_pairs_per_chunk // max(n, 1)))
    for s0 in range(0, n - 1, chunk):
        s1 = min(s0 + chunk, n - 1)
        dx = xy[s0:s1, None, 0] - xy[None, s0:, 0]
        dy = xy[s0:s1, None, 1] - xy[None, s0:, 1]
        d = np.hypot(dx, dy)
        upper = np.arange(s0, n)[None, :] > np.arange(s0, s1)[:, None]
        ok = upper & (d > 0) & (d <= hmax)
        dd = d[ok]
        b = np.searchsorted(edges, dd, side="left") - 1        # edges[k] < d <= edges[k+1]
        keep = (b >= 0) & (b < nb)
        sq = (v[s0:s1, None] - v[None, s0:])[ok] ** 2
        if azimuths_rad is not None:
            ang = np.arctan2(dy[ok], dx[ok])
            dirn = np.full(len(dd), -1)
            for k in range(nd - 1, -1, -1):                    # the first matching direction wins
                off = np.abs((ang - azimuths_rad[k] + np.pi / 2) % np.pi - np.pi / 2)
                dirn = np.where(off <= tol_rad, k, dirn)
            keep &= dirn >= 0
            b = b + nb * np.maximum(dirn, 0)
        b, dd, sq = b[keep], dd[keep], sq[keep]
        cnt += np.bincount(b, minlength=nd * nb)
        dsum += np.bincount(b, weights=dd, minlength=nd * nb)
        gsum += np.bincount(b, weights=sq, minlength=nd * nb)
    if azimuths_rad is None:
        return cnt, dsum, gsum
    return cnt.reshape(nd, nb), dsum.reshape(nd, nb), gsum.reshape(nd, nb)


def experimental_variogram(x, y, values, *, n_lags: int = 15, max_lag_fraction: float = 0.5,
                           bin_edges=None, sampling_size: int | None = None, seed: int = 0,
                           lag_estimate: str = "auto") -> pd.DataFrame:
    r"""Omnidirectional experimental (Matheron) semivariogram.

    .. math::

        \hat\gamma(h) = \frac{1}{2N(h)} \sum_{|x_i - x_j| \in h} \left(z(x_i) - z(x_j)\right)^2

    Each bin is reported at the mean distance of its pairs (``"mean_distance"``, as gstat does;
    ``"auto"`` is the same) or at its centre (``"bin_centre"``, as :func:`gstools.vario_estimate`).
    Pairs are binned in chunks of rows (memory bounded; equal to gstools' estimator, tested).
    ``sampling_size`` estimates the variogram from a seeded random subset of samples.

    Parameters
    ----------
    x, y, values : sample coordinates and values.
    n_lags, max_lag_fraction : number of bins up to ``max_lag_fraction`` of the diagonal.
    bin_edges : explicit bin edges (override ``n_lags``/``max_lag_fraction``).
    sampling_size, seed : seeded subsample size for large data sets.
    lag_estimate : ``"auto"``, ``"mean_distance"`` or ``"bin_centre"``.

    Returns
    -------
    DataFrame
        Columns lag, gamma, n_pairs; bins without pairs are dropped.

    References
    ----------
    Matheron, G. (1963). Principles of geostatistics. Economic Geology 58, 1246-1266.
    https://doi.org/10.2113/gsecongeo.58.8.1246
    """
    xy = _as_xy(x, y)
    v = _as_values(values, len(xy))
    edges = _lag_edges(xy, n_lags, max_lag_fraction) if bin_edges is None else np.asarray(bin_edges, float)
    if lag_estimate not in ("auto", "mean_distance", "bin_centre"):
        raise ValueError(f"lag_estimate: expected 'auto', 'mean_distance' or 'bin_centre', got {lag_estimate!r}")
    if sampling_size is not None and sampling_size < len(xy):
        idx = np.sort(np.random.default_rng(seed).choice(len(xy), int(sampling_size), replace=False))
        xy, v = xy[idx], v[idx]
    cnt, dsum, gsum = _pair_sums(xy, v, edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        lag = dsum / cnt if lag_estimate != "bin_centre" else (edges[:-1] + edges[1:]) / 2
        gamma = gsum / (2 * cnt)
    df = pd.DataFrame({"lag": lag, "gamma": gamma, "n_pairs": cnt.astype(int)})
    return df[df["n_pairs"] > 0].reset_index(drop=True)


def directional_variograms(x, y, values, *, azimuths_deg=(0.0, 45.0, 90.0, 135.0), tolerance_deg: float = 22.5,
                           n_lags: int = 15, max_lag_fraction: float = 0.5, sampling_size: int | None = None,
                           seed: int = 0) -> pd.DataFrame:
    """Directional experimental semivariograms, for an anisotropy check.

    Azimuths are angles counter-clockwise from the +x (east) axis; each direction collects pairs
    whose separation vector lies within ``tolerance_deg`` of it (a pair on the border of two
    directions goes to the first). Same binning as :func:`gstools.vario_estimate` with ``angles``
    (bin centres reported; equal to it, tested), computed in chunks of rows.

    Parameters
    ----------
    x, y : array-like
        Sample coordinates (projected, same length unit).
    values : array-like
        Sample values (modelling scale).
    azimuths_deg : sequence of float, default (0, 45, 90, 135)
        Directions in degrees counter-clockwise from east.
    tolerance_deg : float, default 22.5
        Angular tolerance in degrees.
    n_lags : int, default 15
        Number of lag bins.
    max_lag_fraction : float, default 0.5
        Largest lag as a fraction of the maximum sample separation.
    sampling_size : int or None, optional
        Number of samples (seeded random subset) for large data sets; None uses all.
    seed : int, default 0
        Seed of the sub-sampling.

    Returns
    -------
    DataFrame: azimuth_deg, lag, gamma, n_pairs (bins without pairs dropped).
    """
    xy = _as_xy(x, y)
    v = _as_values(values, len(xy))
    edges = _lag_edges(xy, n_lags, max_lag_fraction)
    if sampling_size is not None and sampling_size < len(xy):
        idx = np.sort(np.random.default_rng(seed).choice(len(xy), int(sampling_size), replace=False))
        xy, v = xy[idx], v[idx]
    ang = np.deg2rad(np.asarray(azimuths_deg, float))
    cnt, _, gsum = _pair_sums(xy, v, edges, azimuths_rad=ang, tol_rad=float(np.deg2rad(tolerance_deg)))
    centre = (edges[:-1] + edges[1:]) / 2
    rows = []
    for k, az in enumerate(azimuths_deg):
        for c, g2, n in zip(centre, gsum[k], cnt[k]):
            if n > 0:
                rows.append({"azimuth_deg": float(az), "lag": float(c), "gamma": float(g2 / (2 * n)),
                             "n_pairs": int(n)})
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


def _effective_range(name: str, len_scale: float, var: float, nu: float = 1.0) -> float:
    """Distance where the structure reaches 95 % of its sill (the range itself for the spherical model)."""
    if name == "spherical":
        return float(len_scale)
    if var <= 0:
        return 0.0
    from scipy.optimize import brentq

    f = lambda h: float(_cor(name, np.array([h / len_scale]), nu)[0]) - 0.05  # noqa: E731
    hi = len_scale
    while f(hi) > 0 and hi < 1e6 * len_scale:
        hi *= 2
    return float(brentq(f, 1e-12 * len_scale, hi))


def _cor(name: str, h, nu: float = 1.0) -> np.ndarray:
    """Unit-sill correlation of gstools' models at distance/len_scale ``h`` (same definitions as gstools)."""
    h = np.abs(np.asarray(h, float))
    if name == "spherical":
        u = np.minimum(h, 1.0)
        return 1.0 - 1.5 * u + 0.5 * u**3
    if name == "exponential":
        return np.exp(-h)
    if name == "gaussian":
        return np.exp(-np.pi / 4.0 * h**2)
    from scipy import special

    out = np.ones_like(h)
    pos = h > 0
    a = np.sqrt(nu) * h[pos]
    with np.errstate(all="ignore"):
        r = np.exp((1.0 - nu) * np.log(2) - special.loggamma(nu) + nu * np.log(a)) * special.kv(nu, a)
    r[~np.isfinite(r)] = 0.0
    out[pos] = np.maximum(r, 0.0)
    return out


def _model_gamma(name: str, h, p) -> np.ndarray:
    """Semivariance nugget + var (1 - cor(h/len_scale)) at h > 0; p = (nugget, var, len_scale[, nu])."""
    return p[0] + p[1] * (1.0 - _cor(name, np.asarray(h, float) / p[2], p[3] if name == "matern" else 1.0))


def _sills_given_range(basis: np.ndarray, g: np.ndarray, w: np.ndarray, nug_min: float):
    """Weighted least squares nugget >= nug_min and partial sill >= 0 for fixed structure shapes.

    ``basis`` is (L, m): the unit-sill structure at the m lags for L candidate ranges. With two
    unknowns the normal equations are solved in closed form, vectorised over the candidates: the
    unconstrained optimum where feasible, else the better of the two boundary fits (nugget at its
    bound, or no structure). Returns arrays (nugget, partial sill, WSS) over the candidates.
    """
    x = np.atleast_2d(basis)
    y = g - nug_min
    S, Sy, Syy = w.sum(), (w * y).sum(), (w * y * y).sum()
    Sx, Sxx, Sxy = (w * x).sum(1), (w * x * x).sum(1), (w * x * y).sum(1)

    def wss(a, b):
        return Syy - 2 * a * Sy - 2 * b * Sxy + a * a * S + 2 * a * b * Sx + b * b * Sxx
    det = S * Sxx - Sx**2
    with np.errstate(divide="ignore", invalid="ignore"):
        b_u = np.where(det > 0, (S * Sxy - Sx * Sy) / det, -1.0)
        a_u = (Sy - b_u * Sx) / S
        b_0 = np.maximum(np.where(Sxx > 0, Sxy / Sxx, 0.0), 0.0)     # nugget at its bound
    a_1 = np.full_like(b_0, max(Sy / S, 0.0))                          # no structure
    cands = [(np.zeros_like(b_0), b_0), (a_1, np.zeros_like(b_0))]
    feas = (a_u >= 0) & (b_u >= 0)
    best_a, best_b = cands[0]
    best = wss(*cands[0])
    for a, b in cands[1:]:
        v = wss(a, b)
        better = v < best
        best_a, best_b, best = np.where(better, a, best_a), np.where(better, b, best_b), np.where(better, v, best)
    vu = wss(a_u, b_u)
    use = feas & (vu <= best)
    best_a, best_b, best = np.where(use, a_u, best_a), np.where(use, b_u, best_b), np.where(use, vu, best)
    return best_a + nug_min, best_b, np.maximum(best, 0.0)


def _wls_profile(name: str, h, g, w, *, nug_min: float, lmin: float, lmax: float, nu_grid=(0.5, 1.0, 1.5, 2.5)):
    """Weighted least squares fit of nugget + one structure by profiling the range.

    The sills enter linearly: for each length scale they are solved exactly
    (:func:`_sills_given_range`), so only the length scale (and, for Matern, the smoothness
    from a grid like gstat's ``fit.kappa``) is searched: 60 log-spaced values, then two finer
    grids of 41 values around the best (relative resolution about 3e-4). This is the approach of
    gstat (non-linear in the range only); hand-written because gstools' fit spends most of its
    time in per-evaluation attribute checks. Tested to reproduce gstat's published fit of the
    Meuse ln(zinc) variogram and the optimum of :meth:`gstools.CovModel.fit_variogram`.

    Returns (nugget, partial sill, len_scale, nu, WSS).
    """
    best = None
    for nu in (nu_grid if name == "matern" else (1.0,)):
        grid = np.linspace(np.log(lmin), np.log(lmax), 60)
        for _ in range(3):
            basis = 1.0 - _cor(name, h[None, :] / np.exp(grid)[:, None], nu)
            a, b, wss = _sills_given_range(basis, g, w, nug_min)
            i = int(np.argmin(wss))
            step = grid[1] - grid[0]
            cand = (float(a[i]), float(b[i]), float(np.exp(grid[i])), nu, float(wss[i]))
            grid = np.linspace(grid[i] - step, grid[i] + step, 41)
        if best is None or cand[4] < best[4]:
            best = cand
    return best


def _gs_model(name: str, p):
    m = _gs_class(name)(dim=2, var=float(p[1]), len_scale=float(p[2]), nugget=float(p[0]))
    if name == "matern":
        m.nu = float(p[3])
    return m


def fit_variogram(experimental: pd.DataFrame, *, models=VARIOGRAM_MODELS, max_len_scale: float | None = None,
                  weights: str = "npairs_h2", criterion: str = "aic", n_iter: int = 5) -> VariogramFit:
    r"""Fit variogram models by weighted least squares and keep the best.

    Each model :math:`\gamma(h;\theta)` (nugget + spherical, exponential, Gaussian or Matern,
    gstools definitions) is fitted by weighted least squares (scipy's trust-region reflective
    solver with bounds, the solver gstools uses) minimising
    :math:`\mathrm{WSS}(\theta) = \sum_j w_j (\hat\gamma(h_j) - \gamma(h_j;\theta))^2`
    with the weights

    * ``"npairs_h2"``: :math:`w_j = N(h_j)/h_j^2`, gstat's default ``fit.method = 7``
      (Pebesma 2004; an empirical choice: more pairs and shorter lags weigh more);
    * ``"cressie"``: :math:`w_j = N(h_j)/\gamma(h_j;\theta)^2`, the weights of Cressie (1985),
      gstat's ``fit.method = 2``; they depend on the model, so the fit is iterated ``n_iter``
      times with the weights from the previous fit (started from the ``npairs_h2`` fit), and the
      WSS reported (and compared between models) is Cressie's criterion
      :math:`\sum_j N_j (\hat\gamma_j/\gamma(h_j;\theta) - 1)^2 / \sum_j N_j`;
    * ``"npairs"``: :math:`w_j = N(h_j)`, gstat's ``fit.method = 1``.

    The model kept minimises the penalised criterion ``criterion``: ``"aic"`` (default),
    :math:`m \ln(\mathrm{WSS}/m) + 2p` over the :math:`m` lag bins with :math:`p` fitted
    parameters (3 for the nugget + spherical/exponential/Gaussian models, 4 for Matern, whose
    extra smoothness parameter must pay for itself), or ``"wsse"`` (no penalty). The Gaussian
    and Matern models keep a nugget of at least 1 % of the largest experimental semivariance:
    without one, their parabolic behaviour at the origin makes kriging systems near-singular
    (Webster and Oliver 2007, sect. 6.3).

    Parameters
    ----------
    experimental : output of :func:`experimental_variogram` (lag, gamma, n_pairs).
    models : model names to try.
    max_len_scale : upper bound on the length scale (default: 3 x the largest lag).
    weights : ``"npairs_h2"``, ``"cressie"`` or ``"npairs"`` (see above).
    criterion : ``"aic"`` or ``"wsse"``.
    n_iter : reweighting iterations for the Cressie weights.

    Returns
    -------
    VariogramFit
        The selected model, with every candidate in ``candidates``.

    References
    ----------
    Cressie, N. (1985). Fitting variogram models by weighted least squares. Mathematical Geology
    17, 563-586. https://doi.org/10.1007/BF01032109
    Pebesma, E.J. (2004). Multivariable geostatistics in S: the gstat package. Computers &
    Geosciences 30, 683-691. https://doi.org/10.1016/j.cageo.2004.03.012
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
    if weights not in VARIOGRAM_WEIGHTS:
        raise ValueError(f"weights: expected one of {list(VARIOGRAM_WEIGHTS)}, got {weights!r}")
    if criterion not in ("aic", "wsse"):
        raise ValueError(f"criterion: expected 'aic' or 'wsse', got {criterion!r}")
    h = e["lag"].to_numpy(float)
    g = e["gamma"].to_numpy(float)
    n = e["n_pairs"].to_numpy(float)
    w = n if weights == "npairs" else n / h**2
    w = w / w.sum()
    gmax = float(np.max(g))
    lmax = float(max_len_scale) if max_len_scale else 3.0 * float(h.max())
    rows, fitted = [], {}
    for name in models:
        # smooth models (parabolic at the origin) without a nugget give near-singular kriging systems and
        # wild weights; keep a nugget of at least 1 % of the largest semivariance for them
        nug_min = 0.01 * gmax if name in ("gaussian", "matern") else 0.0
        lower = [nug_min, 0.0, 1e-3 * float(h.min())]
        upper = [2 * gmax + 1e-12, 5 * gmax + 1e-12, lmax]
        init = [max(0.2 * gmax, nug_min), 0.7 * gmax, float(h.max()) / 3]
        if name == "matern":
            lower, upper, init = lower + [0.2], upper + [5.0], init + [1.0]
        wj = w
        try:
            a_, b_, l_, nu_, _ = _wls_profile(name, h, g, wj, nug_min=nug_min, lmin=lower[2], lmax=lmax)
            p = [a_, b_, l_] + ([nu_] if name == "matern" else [])
            if weights == "cressie":
                # Cressie (1985): weights N_j / gamma(h_j; theta)^2 depend on the model; iterate as gstat does
                for _ in range(n_iter):
                    gm = np.maximum(_model_gamma(name, h, p), 1e-12 * gmax)
                    wj = n / gm**2
                    wj = wj / wj.sum()
                    a_, b_, l_, nu_, _ = _wls_profile(name, h, g, wj, nug_min=nug_min, lmin=lower[2], lmax=lmax)
                    p = [a_, b_, l_] + ([nu_] if name == "matern" else [])
        except (RuntimeError, ValueError, np.linalg.LinAlgError):
            continue
        resid = g - _model_gamma(name, h, p)
        if weights == "cressie":
            # Cressie's criterion sum N_j (g_j / gamma_j - 1)^2 over sum N_j: the weights depend on the model, so they
            # are normalised by a model-free constant, or the WSS (and AIC) of different models would not compare
            wj = n / np.maximum(_model_gamma(name, h, p), 1e-12 * gmax) ** 2 / n.sum()
        wsse = float(np.sum(wj * resid**2))
        n_par = 4 if name == "matern" else 3
        aic = float(len(h) * np.log(max(wsse, 1e-300) / len(h)) + 2 * n_par)
        fitted[name] = p
        r2 = 1.0 - float(np.sum(resid**2)) / (float(np.sum((g - g.mean()) ** 2)) or 1.0)
        rows.append({"model": name, "nugget": float(p[0]), "partial_sill": float(p[1]),
                     "len_scale": float(p[2]),
                     "effective_range": _effective_range(name, p[2], p[1], p[3] if name == "matern" else 1.0),
                     "nu": float(p[3]) if name == "matern" else np.nan, "n_parameters": n_par, "wsse": wsse,
                     "aic": aic, "r2": r2, "weights": weights})
    if not rows:
        raise RuntimeError("no variogram model could be fitted to the experimental variogram")
    cand = pd.DataFrame(rows).sort_values(criterion, kind="stable").reset_index(drop=True)
    b = cand.iloc[0]
    return VariogramFit(model=b["model"], nugget=b["nugget"], partial_sill=b["partial_sill"],
                        len_scale=b["len_scale"], effective_range=b["effective_range"], nu=b["nu"],
                        wsse=b["wsse"], candidates=cand, gs_model=_gs_model(b["model"], fitted[b["model"]]))


def anisotropy_summary(directional: pd.DataFrame, fit: VariogramFit) -> pd.DataFrame:
    """Range of the fitted model per direction, with nugget and sill held at the omnidirectional fit.

    For each azimuth the length scale alone is refitted (weights :math:`N/h^2`) to the
    directional variogram; the anisotropy ratio is the longest over the shortest directional
    range. A ratio near 1 supports an isotropic model.

    Parameters
    ----------
    directional : output of :func:`directional_variograms`.
    fit : the omnidirectional fit.

    Returns
    -------
    DataFrame
        azimuth_deg, effective_range, n_pairs, ratio_to_min.
    """
    rows = []
    for az, d in directional.groupby("azimuth_deg"):
        d = d[d["lag"] > 0]
        if len(d) < 3:
            continue
        h = d["lag"].to_numpy(float)
        w = d["n_pairs"].to_numpy(float) / h**2
        gam = d["gamma"].to_numpy(float)
        w = w / w.sum()
        nu = fit.nu if fit.model == "matern" else 1.0

        grid = np.linspace(np.log(1e-3 * float(h.min())), np.log(10 * float(h.max())), 60)
        for _ in range(3):    # nested grids over the length scale alone (sills held), vectorised
            model = fit.nugget + fit.partial_sill * (1.0 - _cor(fit.model, h[None, :] / np.exp(grid)[:, None], nu))
            vals = ((gam[None, :] - model) ** 2 * w[None, :]).sum(1)
            i = int(np.argmin(vals))
            q, step = grid[i], grid[1] - grid[0]
            grid = np.linspace(q - step, q + step, 41)
        p = [fit.nugget, fit.partial_sill, float(np.exp(q))] + ([fit.nu] if fit.model == "matern" else [])
        rows.append({"azimuth_deg": float(az), "effective_range": _effective_range(fit.model, p[2], p[1], nu),
                     "n_pairs": int(d["n_pairs"].sum())})
    out = pd.DataFrame(rows, columns=["azimuth_deg", "effective_range", "n_pairs"])
    if len(out):
        out["ratio_to_min"] = out["effective_range"] / out["effective_range"].min()
    return out


# ------------------------------------------------------------------------------------------------
def _table_extent(xy: np.ndarray, k: int) -> float:
    """Distance up to which :func:`_tabulated` tabulates: 8 times the radius holding ``k`` samples at the
    samples' mean density in their bounding box (about twice the largest distance between two neighbours of
    a neighbourhood), at most the box's diagonal; the box's diagonal for more than two coordinates. A function of
    the samples only, so the table (and every kriged number) is the same whichever targets are predicted together
    (tiles, chunks, batches)."""
    ext = xy.max(axis=0) - xy.min(axis=0) if len(xy) else np.zeros(xy.shape[1] if xy.ndim == 2 else 2)
    diag = float(np.sqrt(np.sum(ext * ext)))
    if not diag > 0:
        return 1.0
    if len(ext) > 2:
        # extra coordinates (kriging in space and class shares): the table spans the whole box, whose diagonal is
        # not much longer than the spatial one
        return diag
    area = float(ext[0] * ext[1]) or diag * diag
    return float(min(diag, 8.0 * np.sqrt(area * k / (np.pi * len(xy)))))


def _tabulated(covariance, c00: float, extent: float, n_nodes: int = 32769):
    """Covariance evaluated through a dense table (linear interpolation) of the model.

    Evaluating Matern (Bessel) models on every (target, neighbour, neighbour) distance is slow;
    a table of ``n_nodes`` distances on [0, ``extent``] (:func:`_table_extent`, fixed by the samples so
    that no number depends on which targets are asked for together) is exact at h = 0 and accurate to
    about (spacing / length scale)^2 / 8 relative elsewhere; distances beyond ``extent`` are evaluated
    directly.
    """
    extent = float(extent)
    nodes = np.linspace(0.0, extent, n_nodes)
    vals = np.asarray(covariance(np.maximum(nodes, nodes[1] * 1e-6)), float)
    scale = (n_nodes - 1) / extent                  # uniform nodes: direct index, no search

    def cov(h):
        h = np.asarray(h, float)
        u = h * scale
        i = np.minimum(u.astype(np.int64), n_nodes - 2)
        w = u - i
        out = vals[i] * (1.0 - w) + vals[i + 1] * w
        far = h > extent
        if far.any():
            out[far] = np.asarray(covariance(h[far]), float)
        out[h == 0] = c00
        return out
    # the table itself, for the compiled assembly of the kriging systems (:func:`_fill_kriging`), which repeats
    # these operations entry by entry
    cov.table = (vals, scale, extent, c00)
    return cov


def _table_value_py(h, extent, at_zero, scale, vals):
    """Tabulated covariance (or correlogram) at distance ``h``: ``at_zero`` at h = 0, linear interpolation
    between the table's nodes below ``extent``; (value, beyond) with value 0 and beyond True past the table
    (there the caller evaluates the model itself). The same operations as the vectorised lookup of
    :func:`_tabulated`."""
    if h > extent:
        return 0.0, True
    if h == 0.0:
        return at_zero, False
    u = h * scale
    i = min(np.int64(u), vals.shape[0] - 2)
    w = u - i
    return vals[i] * (1.0 - w) + vals[i + 1] * w, False


def _fill_kriging_py(xy, idx, d0, vals, scale, extent, c00, ordinary, A, b, far):
    """Kriging systems of a batch from the covariance table: ``A`` (m, k[+1], k[+1]) and ``b`` (m, k[+1]).

    The entry-by-entry form of the vectorised assembly in :func:`local_kriging` (the same floating-point
    operations per entry, in the same order: distance, table index and weight, linear interpolation, C(0) at
    h = 0), compiled with numba so that no (m, k, k) temporaries are built. A target with a distance beyond the
    table (``h > extent``, where the model itself is evaluated) is flagged in ``far`` and left to the vectorised
    assembly.
    """
    m, k = idx.shape
    nd = xy.shape[1]
    for t in range(m):
        for a in range(k):
            pa = idx[t, a]
            A[t, a, a] = c00
            for c in range(a + 1, k):
                pc = idx[t, c]
                dx = xy[pa, 0] - xy[pc, 0]
                h2 = dx * dx
                for q in range(1, nd):   # in two dimensions dx*dx + dy*dy, as the vectorised assembly
                    dq = xy[pa, q] - xy[pc, q]
                    h2 = h2 + dq * dq
                v, beyond = _table_value(np.sqrt(h2), extent, c00, scale, vals)
                if beyond:
                    far[t] = True
                A[t, a, c] = v
                A[t, c, a] = v
            v, beyond = _table_value(d0[t, a], extent, c00, scale, vals)
            if beyond:
                far[t] = True
            b[t, a] = v
        if ordinary:
            for a in range(k):
                A[t, a, k] = 1.0
                A[t, k, a] = 1.0
            A[t, k, k] = 0.0
            b[t, k] = 1.0


def _fill_cokriging_py(xy, idx, d0, vals, scale, extent, B0, B1, ridge, A, b, far):
    """Cokriging systems of a batch (no collocated data): ``A`` (m, kV+1, kV+1), ``b`` (m, kV+1).

    Entry ((i,a),(j,b)) = B1_ab rho(h_ij) + B0_ab [h_ij = 0] (+ ``ridge`` on the diagonal), bordered by the
    unbiasedness row; the same operations per entry as the vectorised assembly in :func:`local_cokriging`,
    compiled with numba. Targets with a distance beyond the correlogram table are flagged in ``far``.
    """
    m, k = idx.shape
    V = B0.shape[0]
    N = k * V
    for t in range(m):
        for i in range(k):
            pi = idx[t, i]
            for j in range(i, k):
                if i == j:
                    r = 1.0
                    same = True
                else:
                    pj = idx[t, j]
                    dx = xy[pi, 0] - xy[pj, 0]
                    dy = xy[pi, 1] - xy[pj, 1]
                    h = np.sqrt(dx * dx + dy * dy)
                    same = h == 0.0
                    r, beyond = _table_value(h, extent, 1.0, scale, vals)
                    if beyond:
                        far[t] = True
                for a in range(V):
                    for c in range(V):
                        v = B1[a, c] * r + B0[a, c] if same else B1[a, c] * r + 0.0
                        A[t, i * V + a, j * V + c] = v
                        if j > i:   # entry ((j,a),(i,c)): rho is symmetric, B taken as given
                            A[t, j * V + a, i * V + c] = v
            h = d0[t, i]
            r, beyond = _table_value(h, extent, 1.0, scale, vals)
            if beyond:
                far[t] = True
            for a in range(V):
                b[t, i * V + a] = B1[a, 0] * r + B0[a, 0] if h == 0.0 else B1[a, 0] * r + 0.0
        for a in range(N):
            A[t, a, a] += ridge
            A[t, a, N] = 1.0
            A[t, N, a] = 1.0
        A[t, N, N] = 0.0
        b[t, N] = 1.0


def _solve_spd_py(A, b, n, ordinary, lam, mu, failed):
    r"""Kriging weights of a batch by Cholesky factorisation of the covariance block.

    ``A[:, :n, :n]`` (the covariance matrix C, symmetric positive definite) is factorised as
    :math:`C = LL^\top` (only its lower triangle is read; ``A`` is left as it is). Simple kriging:
    :math:`\lambda = C^{-1}c_0` with :math:`c_0` = ``b[:, :n]``. Ordinary kriging (the bordered system with
    one unbiasedness row) through the Schur complement: :math:`x = C^{-1}c_0`, :math:`u = C^{-1}\mathbf 1`,
    :math:`\mu = (\mathbf 1^\top x - 1)/(\mathbf 1^\top u)`, :math:`\lambda = x - \mu u` (then
    :math:`C\lambda + \mu\mathbf 1 = c_0` and :math:`\sum\lambda = 1`). Half the work of the LU
    factorisation of the bordered matrix; a system whose C is not numerically positive definite is flagged in
    ``failed`` and left to the caller (LU with pivoting).
    """
    m = A.shape[0]
    L = np.empty((n, n))
    x = np.empty(n)
    u = np.empty(n)
    for t in range(m):
        ok = True
        for j in range(n):
            Lj = L[j]                     # row j of L, complete up to column j - 1
            d = A[t, j, j]
            for q in range(j):
                d -= Lj[q] * Lj[q]
            if not d > 0.0:
                ok = False
                break
            d = np.sqrt(d)
            Lj[j] = d
            for i in range(j + 1, n):
                Li = L[i]
                if j == 0:
                    for q in range(i):    # load row i of C (lower part) once
                        Li[q] = A[t, i, q]
                v = Li[j]
                for q in range(j):
                    v -= Li[q] * Lj[q]
                Li[j] = v / d
        if not ok:
            failed[t] = True
            continue
        # forward substitution L y = rhs, then back substitution L^T x = y, for c0 (and the vector of ones)
        for i in range(n):
            Li = L[i]
            v = b[t, i]
            w = 1.0
            for q in range(i):
                v -= Li[q] * x[q]
                w -= Li[q] * u[q]
            x[i] = v / Li[i]
            u[i] = w / Li[i]
        for i in range(n - 1, -1, -1):
            v = x[i]
            w = u[i]
            for q in range(i + 1, n):
                v -= L[q, i] * x[q]
                w -= L[q, i] * u[q]
            x[i] = v / L[i, i]
            u[i] = w / L[i, i]
        if ordinary:
            sx = 0.0
            su = 0.0
            for i in range(n):
                sx += x[i]
                su += u[i]
            mu_t = (sx - 1.0) / su
            for i in range(n):
                lam[t, i] = x[i] - mu_t * u[i]
            mu[t] = mu_t
        else:
            for i in range(n):
                lam[t, i] = x[i]
            mu[t] = 0.0


try:
    from numba import njit

    _table_value = njit(cache=True, nogil=True, inline="always")(_table_value_py)
    _fill_kriging = njit(cache=True, nogil=True)(_fill_kriging_py)
    _fill_cokriging = njit(cache=True, nogil=True)(_fill_cokriging_py)
    # reassociation lets the compiler vectorise the dot products of the factorisation (per-target results stay
    # independent of the batch; they differ from LU by rounding only)
    _solve_spd = njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})(_solve_spd_py)
except ImportError:  # pragma: no cover - numba is a dependency
    _table_value = _table_value_py
    _fill_kriging, _fill_cokriging, _solve_spd = None, None, None


def _kriging_weights(A, b, n, *, ordinary: bool, cholesky: bool):
    """Weights (m, n) and Lagrange multipliers (m,) of a batch of kriging systems ``A`` x = ``b`` whose
    first ``n`` rows and columns hold the covariance matrix (then, when ``ordinary``, one unbiasedness row).
    ``cholesky``: through :func:`_solve_spd` (compiled), with LU (:func:`numpy.linalg.solve`) for the systems it
    cannot factorise; otherwise LU for all. The two agree to rounding (tested)."""
    m = A.shape[0]
    if cholesky and _solve_spd is not None:
        lam, mu, failed = np.empty((m, n)), np.zeros(m), np.zeros(m, bool)
        _solve_spd(A, b, n, ordinary, lam, mu, failed)
        if failed.any():
            lam[failed], mu[failed] = _kriging_weights(A[failed], b[failed], n, ordinary=ordinary, cholesky=False)
        return lam, mu
    try:
        sol = np.linalg.solve(A, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        # a singular system: samples at the same place under a variogram without nugget. The minimum-norm
        # least-squares solution shares the weight equally between the coincident samples (the system of the
        # merged samples, see the tests)
        sol = np.stack([np.linalg.lstsq(a, bb, rcond=None)[0] for a, bb in zip(A, b)])
    return (sol[:, :n], sol[:, n]) if ordinary else (sol, np.zeros(m))


def local_kriging(train_xy, values, target_xy, *, covariance: Callable[[np.ndarray], np.ndarray],
                  n_neighbours: int = 32, mean: float | None = None, batch_size: int = 512,
                  workers: int = 2, neighbours: tuple[np.ndarray, np.ndarray] | None = None,
                  compiled: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

    Parameters
    ----------
    train_xy : array-like, shape (n, 2)
        Sample coordinates; (n, d) for kriging in d > 2 coordinates (space and class shares, see
        :func:`fit_spatial_model`), where the distance is Euclidean over all d.
    values : array-like, shape (n,)
        Sample values (modelling scale).
    target_xy : array-like, shape (m, 2) or (m, d)
        Target coordinates.
    covariance : callable
        Covariance function C(h) of the separation distance, including the nugget at h = 0.
    n_neighbours : int, default 32
        Number of nearest samples used per target.
    mean : float or None, optional
        Known mean for simple kriging; None for ordinary kriging.
    batch_size : int, default 512
        Targets solved per vectorised batch.
    workers : int, default 2
        Worker threads of the nearest-neighbour search.
    neighbours : (distances, indices) or None, optional
        The ``n_neighbours`` nearest samples of every target, as ``cKDTree(train_xy).query(target_xy,
        k=n_neighbours)`` returns them (shapes (m, k)); searched when None. Lets several models kriging the same
        samples at the same targets (the members of a stacked ensemble) share one search.
    compiled : bool, default True
        Assemble the systems with the compiled entry-by-entry loop (:func:`_fill_kriging`, numba) when the
        covariance is tabulated, and solve them by Cholesky factorisation of the covariance matrix
        (:func:`_solve_spd`; LU for a system it cannot factorise). False: the straightforward path, vectorised
        numpy assembly and LU (:func:`numpy.linalg.solve`) of the whole system. The assembly performs the same
        floating-point operations per entry; the two solutions agree to rounding (tested to 1e-9 relative). The
        compiled path builds no (m, k, k) temporaries and is about three times faster.

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
    if xy.ndim != 2 or xy.shape[1] < 2 or t.ndim != 2 or t.shape[1] != xy.shape[1]:
        raise ValueError(f"train_xy and target_xy: expected (n, 2) arrays (or (n, d), d > 2, alike), got {xy.shape} "
                         f"and {t.shape}")
    z = _as_values(values, len(xy))
    k = int(min(n_neighbours, len(xy)))
    if k < 1:
        raise ValueError("train_xy: expected at least one sample")
    c00 = float(np.asarray(covariance(np.zeros(1)))[0])
    covariance = _tabulated(covariance, c00, _table_extent(xy, k))
    pred = np.empty(len(t))
    var = np.empty(len(t))
    mus = np.zeros(len(t))
    ok = mean is None
    # one neighbour search for all targets (threads started once, not per batch); the results per target
    # do not depend on the batching
    if neighbours is None:
        d0_all, idx_all = cKDTree(xy).query(t, k=k, workers=workers)
    else:
        d0_all, idx_all = neighbours
    if k == 1 and np.ndim(idx_all) == 1:
        d0_all, idx_all = d0_all[:, None], idx_all[:, None]
    d0_all, idx_all = np.asarray(d0_all, float), np.asarray(idx_all, np.int64)
    if idx_all.shape != (len(t), k):
        raise ValueError(f"neighbours: expected arrays of shape ({len(t)}, {k}), got {idx_all.shape}")
    iu, ju = np.triu_indices(k, 1)
    diag = np.arange(k)
    n_sys = k + 1 if ok else k
    table = getattr(covariance, "table", None)
    fast = compiled and _fill_kriging is not None and table is not None

    def assemble(d0, idx):
        """The systems of a batch, vectorised: A (m, n_sys, n_sys) and right-hand sides b (m, n_sys)."""
        m = len(idx)
        # C is symmetric: distances and covariances of the k(k-1)/2 pairs above the diagonal only (the same
        # floating-point operations per pair as the full matrix, so the same numbers at half the cost)
        p = xy[idx]                                    # (m, k, d)
        dx = p[:, iu, 0] - p[:, ju, 0]
        h2 = dx * dx
        for q in range(1, p.shape[2]):
            dq = p[:, iu, q] - p[:, ju, q]
            h2 = h2 + dq * dq
        cu = covariance(np.sqrt(h2))                   # (m, k(k-1)/2)
        A = np.empty((m, n_sys, n_sys))
        A[:, iu, ju] = cu
        A[:, ju, iu] = cu
        A[:, diag, diag] = c00
        b = np.ones((m, n_sys))
        b[:, :k] = covariance(d0)
        if ok:
            A[:, :k, k] = 1.0
            A[:, k, :k] = 1.0
            A[:, k, k] = 0.0
        return A, b

    for s in range(0, len(t), batch_size):
        d0, idx = d0_all[s:s + batch_size], idx_all[s:s + batch_size]
        m = len(idx)
        if fast:
            A, b = np.empty((m, n_sys, n_sys)), np.empty((m, n_sys))
            far = np.zeros(m, bool)
            _fill_kriging(xy, idx, d0, table[0], table[1], table[2], c00, ok, A, b, far)
            if far.any():   # distances beyond the table: the model itself, through the vectorised assembly
                A[far], b[far] = assemble(d0[far], idx[far])
        else:
            A, b = assemble(d0, idx)
        c0 = b[:, :k]
        zz = z[idx]
        lam, mu = _kriging_weights(A, b, k, ordinary=ok, cholesky=compiled)
        if ok:
            pred[s:s + m] = (lam * zz).sum(1)
            var[s:s + m] = c00 - (lam * c0).sum(1) - mu
            mus[s:s + m] = mu
        else:
            pred[s:s + m] = mean + (lam * (zz - mean)).sum(1)
            var[s:s + m] = c00 - (lam * c0).sum(1)
    return pred, np.maximum(var, 0.0), mus


# ------------------------------------------------------------------------------------------------
def categorical_columns(frame: pd.DataFrame, categorical=()) -> list[str]:
    """The columns of ``frame`` treated as categorical: those named in ``categorical`` and every non-numeric one.

    Parameters
    ----------
    frame : covariates.
    categorical : names declared categorical (numeric class codes, for example).

    Returns
    -------
    list of str
        In the frame's column order.
    """
    return [c for c in frame.columns if c in categorical or not pd.api.types.is_numeric_dtype(frame[c])]


def design_matrix(covariates: pd.DataFrame, *, categorical=(), levels: dict | None = None,
                  centre: dict | None = None) -> tuple[np.ndarray, list[str], dict, dict]:
    """Trend design matrix: intercept, numeric covariates (centred), treatment dummies.

    Categorical levels are taken from ``levels`` (the training samples' levels) when given, so
    that prediction rows get the same columns; a level not seen in training gets all-zero
    dummies (the reference level). Returns (X, column names, levels, centres).

    Parameters
    ----------
    covariates : pandas.DataFrame
        Covariate columns (numeric or categorical) of the rows.
    categorical : iterable of str, default ()
        Names of categorical columns.
    levels : dict or None, optional
        Levels per categorical column from training; None derives them from ``covariates``.
    centre : dict or None, optional
        Centre per numeric column from training; None uses the column means.

    Returns
    -------
    tuple of (numpy.ndarray, list of str, dict, dict)
        Design matrix X (rows x columns), column names, levels per categorical column and centres
        per numeric column.
    """
    if not isinstance(covariates, pd.DataFrame):
        raise ValueError(f"covariates: expected a DataFrame, got {type(covariates).__name__}")
    fit = levels is None
    levels = {} if fit else levels
    centre = {} if centre is None else dict(centre)
    cols, names = [np.ones(len(covariates))], ["intercept"]
    cats = set(categorical_columns(covariates, categorical)) if fit else set(levels)
    for c in covariates.columns:
        s = covariates[c]
        is_cat = c in cats
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


SHARE_OF = ": share of "   # the map's class-share columns are named "<covariate>: share of <class>" (share_column)


def covariate_cover(covariates: pd.DataFrame, *, categorical=()) -> dict:
    """What the samples cover of the numeric trend covariates, for :func:`hold_covariates`.

    Parameters
    ----------
    covariates : trend covariates at the samples; the map's class shares (:func:`share_column`) are recognised by
        their names.
    categorical : names of categorical columns (not held: an unseen class takes the reference level).

    Returns
    -------
    dict
        ``ranges``: numeric column -> (lowest, highest) at the samples; ``shares``: categorical covariate ->
        ``columns`` (its class shares), ``largest`` (column -> largest share at the samples) and ``common`` (the
        column of its most common class, the largest sum of shares).
    """
    num = [c for c in covariates.columns if c not in categorical_columns(covariates, categorical)]
    groups = share_groups(num)
    in_groups = {c for cols in groups.values() for c in cols}
    ranges = {c: (float(np.nanmin(covariates[c])), float(np.nanmax(covariates[c]))) for c in num if c not in in_groups}
    shares = {g: {"columns": cols, "largest": {c: float(np.nanmax(covariates[c])) for c in cols},
                  "common": max(cols, key=lambda c: float(np.nansum(covariates[c])))} for g, cols in groups.items()}
    return {"ranges": ranges, "shares": shares}


def share_groups(columns) -> dict[str, list[str]]:
    """The map's class-share columns among ``columns`` (:func:`share_column`), grouped by categorical covariate in
    the order they come; other columns are left out.

    Parameters
    ----------
    columns : column names.

    Returns
    -------
    dict
        covariate -> its class-share columns.
    """
    groups: dict[str, list[str]] = {}
    for c in columns:
        if SHARE_OF in c:
            groups.setdefault(c.split(SHARE_OF)[0], []).append(c)
    return groups


def hold_covariates(covariates: pd.DataFrame, *, cover: dict) -> tuple[pd.DataFrame, np.ndarray]:
    r"""Covariates held within what the samples cover, so that a linear trend is not extrapolated.

    A numeric covariate is clamped to its range at the samples, as the species-distribution model Maxent clamps
    environmental variables outside their training range (Phillips and Dudik 2008). A class share above the
    largest share of that class at any sample is cut to it, and the excess is given to the covariate's most common
    class, so the shares still sum to one:

    .. math:: p'_k = \min(p_k, \max_i p_{ik}),\qquad p'_c = p_c + \sum_k (p_k - p'_k)

    with :math:`c` the most common class. A class the samples barely touch (the largest share a few hundredths)
    thus contributes no more to a point's trend than it does at the samples, instead of its least-squares
    coefficient, resting on those few hundredths, being multiplied by up to one.

    Parameters
    ----------
    covariates : covariates at the prediction points, with every column of ``cover`` (others untouched).
    cover : :func:`covariate_cover` of the samples.

    Returns
    -------
    tuple of (DataFrame, numpy.ndarray)
        The held covariates (a copy) and, per point, whether any of its covariates was held.

    References
    ----------
    Phillips, S.J. and Dudik, M. (2008). Modeling of species distributions with Maxent: new extensions and a
    comprehensive evaluation. Ecography 31, 161-175. https://doi.org/10.1111/j.0906-7590.2008.5203.x
    """
    out = covariates.copy()
    held = np.zeros(len(out), bool)
    for c, (lo, hi) in cover["ranges"].items():
        v = out[c].to_numpy(float)
        held |= (v < lo) | (v > hi)
        out[c] = np.clip(v, lo, hi)
    for g in cover["shares"].values():
        cols = g["columns"]
        P = out[cols].to_numpy(float)
        excess = np.clip(P - np.array([g["largest"][c] for c in cols]), 0.0, None)
        cut = excess.sum(axis=1)
        held |= cut > 1e-12
        P = P - excess
        P[:, cols.index(g["common"])] += cut
        out[cols] = P
    return out, held


# ------------------------------------------------------------------------------------------------
# geometric anisotropy
@dataclass
class Anisotropy:
    """Geometric anisotropy: the direction of the longest range and the ratio of the ranges.

    Attributes
    ----------
    azimuth_deg : direction of the longest range, counter-clockwise from +x (east).
    ratio : longest range over the range in the perpendicular direction (>= 1).
    """

    azimuth_deg: float
    ratio: float

    def transform(self, xy: np.ndarray) -> np.ndarray:
        r"""Coordinates in which the anisotropic model is isotropic.

        Rotate by :math:`-\theta` so that the major axis lies along the first axis, then stretch
        the minor axis by the ratio (Webster and Oliver 2007, sect. 6.8): distances along the
        major axis are unchanged, distances across it grow by ``ratio``.
        """
        a = np.deg2rad(self.azimuth_deg)
        c, s = np.cos(a), np.sin(a)
        u = xy[:, 0] * c + xy[:, 1] * s
        v = -xy[:, 0] * s + xy[:, 1] * c
        return np.column_stack([u, v * self.ratio])


def detect_anisotropy(x, y, values, fit: VariogramFit, *, min_ratio: float = 1.5, n_lags: int = 15,
                      max_lag_fraction: float = 0.5, sampling_size: int | None = None,
                      seed: int = 0) -> Anisotropy | None:
    """Geometric anisotropy from the directional check, or None when the ranges are similar.

    The directional ranges of :func:`anisotropy_summary` (azimuths 0, 45, 90 and 135 degrees) give
    the direction of the longest range; the ratio is that range over the range at right angles
    to it. Anisotropy is modelled when the ratio reaches ``min_ratio``.

    Parameters
    ----------
    x, y, values : samples (modelling scale).
    fit : the omnidirectional fit (nugget and sills are kept).
    min_ratio : smallest ratio that is modelled.
    n_lags, max_lag_fraction : binning of the directional variograms.
    sampling_size, seed : seeded subsample of the directional variograms for large data sets.

    Returns
    -------
    Anisotropy or None
    """
    dv = directional_variograms(x, y, values, n_lags=n_lags, max_lag_fraction=max_lag_fraction,
                                sampling_size=sampling_size, seed=seed)
    an = anisotropy_summary(dv, fit)
    if len(an) < 4:
        return None
    an = an.set_index("azimuth_deg")
    major = float(an["effective_range"].idxmax())
    minor = (major + 90.0) % 180.0
    if minor not in an.index or an.loc[minor, "effective_range"] <= 0:
        return None
    ratio = float(an.loc[major, "effective_range"] / an.loc[minor, "effective_range"])
    return Anisotropy(major, min(ratio, 10.0)) if ratio >= min_ratio else None


# ------------------------------------------------------------------------------------------------
# linear model of coregionalisation and cokriging
def cross_variograms(x, y, values: np.ndarray, *, bin_edges) -> pd.DataFrame:
    r"""Direct and cross experimental semivariograms of several variables sampled at the same points.

    .. math::

        \hat\gamma_{ab}(h) = \frac{1}{2N(h)}\sum_{|x_i-x_j|\in h}
        \left(z_a(x_i)-z_a(x_j)\right)\left(z_b(x_i)-z_b(x_j)\right)

    Each bin is reported at the mean distance of its pairs. Hand-written (scipy ``pdist``)
    because gstools estimates direct variograms only.

    Parameters
    ----------
    x, y : coordinates of n samples.
    values : (n, V) array, every variable known at every sample.
    bin_edges : lag bin edges.

    Returns
    -------
    DataFrame
        lag, n_pairs, a, b, gamma (one row per bin and pair of variables a <= b).

    References
    ----------
    Goovaerts, P. (1997). Geostatistics for Natural Resources Evaluation, sect. 4.2.3. Oxford
    University Press.
    """
    from scipy.spatial.distance import pdist

    xy = _as_xy(x, y)
    z = np.asarray(values, float)
    if z.ndim != 2 or len(z) != len(xy) or not np.isfinite(z).all():
        raise ValueError(f"values: expected a finite (n, V) array with n = {len(xy)}, got shape {z.shape}")
    edges = np.asarray(bin_edges, float)
    d = pdist(xy)
    b = np.digitize(d, edges, right=True) - 1
    ok = (b >= 0) & (b < len(edges) - 1) & (d > 0)
    bb, dd = b[ok], d[ok]
    nb = len(edges) - 1
    cnt = np.bincount(bb, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        lag = np.bincount(bb, weights=dd, minlength=nb) / cnt
    i, j = np.triu_indices(len(xy), k=1)
    i, j = i[ok], j[ok]
    rows = []
    V = z.shape[1]
    for a in range(V):
        da = z[i, a] - z[j, a]
        for c in range(a, V):
            dc = z[i, c] - z[j, c]
            with np.errstate(invalid="ignore", divide="ignore"):
                g = np.bincount(bb, weights=da * dc, minlength=nb) / (2 * cnt)
            for k in range(nb):
                if cnt[k] > 0:
                    rows.append({"lag": lag[k], "n_pairs": int(cnt[k]), "a": a, "b": c, "gamma": g[k]})
    return pd.DataFrame(rows)


@dataclass
class Coregionalisation:
    r"""Linear model of coregionalisation with a nugget and one basic structure.

    .. math:: \Gamma(h) = B_0\,[h > 0] + B_1\,g(h)

    with :math:`g` the unit-sill basic model (``basic``) and :math:`B_0, B_1` positive
    semi-definite coregionalisation matrices (variables in the order of ``names``).

    Attributes
    ----------
    names : variable names (primary first).
    b0, b1 : (V, V) coregionalisation matrices of the nugget and of the basic structure.
    basic : gstools CovModel with var = 1 and no nugget (the shape and range).
    """

    names: list[str]
    b0: np.ndarray
    b1: np.ndarray
    basic: object = field(repr=False)

    def correlogram(self, h) -> np.ndarray:
        """Unit-sill covariance of the basic structure, :math:`1 - g(h)`."""
        h = np.asarray(h, float)
        return np.asarray(self.basic.correlation(h), float)


def fit_coregionalisation(experimental: pd.DataFrame, *, basic, names, weights: str = "npairs_h2",
                          n_iter: int = 50, min_nugget_share: float | None = None) -> Coregionalisation:
    r"""Fit the coregionalisation matrices of a nugget + one-structure LMC (Goulard and Voltz 1992).

    With the basic structure fixed (shape and range from the primary variable's variogram),
    the sills enter linearly. The iterative algorithm of Goulard and Voltz (1992) fits each
    matrix :math:`B_s` by weighted least squares to the residual matrix of experimental
    direct/cross variograms and projects it on the positive semi-definite cone (negative
    eigenvalues set to 0), alternating between the structures until convergence. Hand-written:
    no maintained Python library fits an LMC (gstools and scikit-gstat fit direct variograms
    only).

    Parameters
    ----------
    experimental : output of :func:`cross_variograms` (lag, n_pairs, a, b, gamma).
    basic : gstools CovModel of the basic structure (its var and nugget are ignored).
    names : variable names, primary first.
    weights : ``"npairs_h2"`` (:math:`N/h^2`, gstat's default) or ``"npairs"``; the Cressie
        weights are not used here (one weight per lag is common to all matrix entries, as the
        algorithm requires).
    n_iter : maximum number of iterations.
    min_nugget_share : smallest nugget share :math:`\epsilon`: every linear combination
        :math:`\sum_i c_i Z_i` of the variables keeps a nugget :math:`c^\top B_0 c \ge \epsilon \sum_i c_i^2 s_i`
        (:math:`s_i` the variables' total sills, so each variable's own nugget is at least :math:`\epsilon s_i`):
        the eigenvalues of :math:`S^{-1/2} B_0 S^{-1/2}`, :math:`S = \mathrm{diag}(s_i)`, are raised to
        :math:`\epsilon` (the matrix stays positive semi-definite). Default: 0.05 for a Gaussian basic
        structure, else 0. Kriging matrices of the infinitely smooth Gaussian covariance are ill-conditioned
        without a nugget (Posa 1989); with near-collinear secondary metals whose fitted nugget is almost 0 the cokriging weights
        then explode (on 159 Jura samples, Cr cokriged with Ni and Zn gave predictions from -244 to 2,400
        mg/kg). Raising only each variable's own nugget is not enough: the fitted :math:`B_0` can still be
        singular, leaving a combination of the metals without nugget (on 210 Jura samples, ln Cr cokriged
        with ln Ni and ln Zn then predicted 2e7 mg/kg at one held-out sample).

    Returns
    -------
    Coregionalisation

    References
    ----------
    Goulard, M. and Voltz, M. (1992). Linear coregionalization model: tools for estimation and
    choice of cross-variogram matrix. Mathematical Geology 24, 269-286.
    https://doi.org/10.1007/BF00893750
    Posa, D. (1989). Conditioning of the stationary kriging matrices for some well-known covariance
    models. Mathematical Geology 21, 755-765. https://doi.org/10.1007/BF00893320
    """
    V = len(names)
    e = experimental
    lags = np.sort(e["lag"].unique())
    G = np.zeros((len(lags), V, V))
    npair = np.zeros(len(lags))
    for r in e.itertuples():
        k = int(np.searchsorted(lags, r.lag))
        G[k, r.a, r.b] = G[k, r.b, r.a] = r.gamma
        npair[k] = r.n_pairs
    w = npair / lags**2 if weights != "npairs" else npair
    w = w / w.sum()
    m = basic.__class__(dim=2, var=1.0, len_scale=basic.len_scale, nugget=0.0,
                        **({"nu": basic.nu} if hasattr(basic, "nu") and basic.name == "Matern" else {}))
    g1 = np.asarray(m.variogram(lags), float)           # unit-sill structure
    g0 = np.ones_like(g1)                               # nugget structure for h > 0
    gs_ = [g0, g1]
    B = [np.zeros((V, V)), np.zeros((V, V))]

    def psd(a):
        a = (a + a.T) / 2
        val, vec = np.linalg.eigh(a)
        return (vec * np.maximum(val, 0.0)) @ vec.T

    for _ in range(n_iter):
        old = [b.copy() for b in B]
        for s in range(2):
            other = sum(B[t][None] * gs_[t][:, None, None] for t in range(2) if t != s)
            R = G - other
            num = np.einsum("k,k,kab->ab", w, gs_[s], R)
            den = float(np.sum(w * gs_[s] ** 2))
            B[s] = psd(num / den)
        if max(np.abs(B[s] - old[s]).max() for s in range(2)) < 1e-9 * max(1.0, float(np.abs(G).max())):
            break
    share = (0.05 if getattr(basic, "name", "") == "Gaussian" else 0.0) if min_nugget_share is None \
        else float(min_nugget_share)
    if share > 0:
        # every combination sum_i c_i Z_i keeps a nugget c'B0c of at least ``share`` * sum_i c_i^2 s_i (s_i the
        # sills): the eigenvalues of the nugget matrix scaled to unit sills are raised to ``share`` (raising its
        # diagonal alone can leave a combination of near-collinear metals without nugget: B0 singular, and the
        # Gaussian cokriging systems with it)
        sd = np.sqrt(np.maximum(np.diag(B[0] + B[1]), np.finfo(float).tiny))
        val, vec = np.linalg.eigh(B[0] / np.outer(sd, sd))
        B[0] = (vec * np.maximum(val, share)) @ vec.T * np.outer(sd, sd)
    return Coregionalisation(list(names), B[0], B[1], m)


def local_cokriging(train_xy, values: np.ndarray, target_xy, *, lmc: Coregionalisation, n_neighbours: int = 24,
                    target_secondary: np.ndarray | None = None, batch_size: int = 256, compiled: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Standardised ordinary cokriging of the first variable in a moving neighbourhood.

    All variables are first rescaled to the primary's mean and standard deviation
    (done by the caller), so a single unbiasedness constraint suffices (Isaaks and Srivastava
    1989, p. 416; Goovaerts 1997, sect. 6.2.2):

    .. math::

        \sum_{j,b} \lambda_{jb} C_{ab}(x_i - x_j) + \mu = C_{a1}(x_i - x_0),\quad
        \sum_{j,b}\lambda_{jb} = 1,\qquad
        \sigma^2 = C_{11}(0) - \sum \lambda_{ia} C_{a1}(x_i - x_0) - \mu

    with :math:`C_{ab}(h) = B_{0,ab}[h=0] + B_{1,ab}\rho(h)` from the LMC. The data are the
    ``n_neighbours`` nearest samples with all V variables; with ``target_secondary`` (the
    secondary variables at the target, the *collocated* case) they are added as data at
    distance 0. Hand-written like :func:`local_kriging` (no maintained Python library offers
    full cokriging with an LMC; gstools' collocated cokriging needs the secondary variable at
    every target).

    Parameters
    ----------
    train_xy : (n, 2) sample coordinates.
    values : (n, V) rescaled values, primary first.
    target_xy : (m, 2) targets.
    lmc : fitted :class:`Coregionalisation`.
    n_neighbours : samples per neighbourhood.
    target_secondary : optional (m, V-1) rescaled secondary values at the targets.
    batch_size : targets solved together.
    compiled : assemble the block systems with the compiled entry-by-entry loop (:func:`_fill_cokriging`,
        numba; without collocated data) and solve them by Cholesky factorisation (:func:`_solve_spd`, LU where it
        fails); False: vectorised numpy assembly and LU of the whole system (the straightforward path). They
        agree to rounding (tested); the compiled path is several times faster.

    Returns
    -------
    prediction, variance, mu : arrays over targets (modelling scale; ``mu`` the Lagrange multiplier).

    References
    ----------
    Isaaks, E.H. and Srivastava, R.M. (1989). An Introduction to Applied Geostatistics. Oxford
    University Press.
    """
    xy = np.asarray(train_xy, float)
    t = np.asarray(target_xy, float)
    z = np.asarray(values, float)
    V = z.shape[1]
    k = int(min(n_neighbours, len(xy)))
    B0, B1 = lmc.b0, lmc.b1
    c00 = float(B0[0, 0] + B1[0, 0])
    coll = target_secondary is not None
    pred = np.empty(len(t))
    var = np.empty(len(t))
    mus = np.empty(len(t))
    # the correlogram through a table fixed by the samples (as in local_kriging), one neighbour search for all
    # targets, and the symmetric distance matrix from the pairs above its diagonal
    correlogram = _tabulated(lmc.correlogram, 1.0, _table_extent(xy, k))
    d0_all, idx_all = cKDTree(xy).query(t, k=k)
    if k == 1:
        d0_all, idx_all = d0_all[:, None], idx_all[:, None]
    iu, ju = np.triu_indices(k, 1)
    diag = np.arange(k)
    table = getattr(correlogram, "table", None)
    fast = compiled and not coll and _fill_cokriging is not None and table is not None
    ridge = 1e-10 * c00
    N0 = k * V

    def assemble(d0, idx, s):
        """The systems of a batch, vectorised: A (m, N+1, N+1), right-hand sides b (m, N+1) and the data."""
        m = len(idx)
        p = xy[idx]
        hu = np.sqrt(((p[:, iu, :] - p[:, ju, :]) ** 2).sum(-1))              # (m, k(k-1)/2)
        ru = correlogram(hu)
        rho = np.empty((m, k, k))
        rho[:, iu, ju] = ru
        rho[:, ju, iu] = ru
        rho[:, diag, diag] = 1.0
        same = np.zeros((m, k, k), bool)
        su = hu == 0
        same[:, iu, ju] = su
        same[:, ju, iu] = su
        same[:, diag, diag] = True
        # block matrix (m, k*V, k*V): entry ((i,a),(j,b)) = B0_ab [d=0] + B1_ab rho
        C = (B1[None, None, :, None, :] * rho[:, :, None, :, None]
             + B0[None, None, :, None, :] * same[:, :, None, :, None]).reshape(m, k * V, k * V)
        r0 = correlogram(d0)
        c0 = (B1[None, None, :, 0] * r0[:, :, None] + B0[None, None, :, 0] * (d0 == 0)[:, :, None]).reshape(m, k * V)
        data = z[idx].reshape(m, k * V)
        if coll:
            ts = np.asarray(target_secondary, float)[s:s + m]                       # (m, V-1)
            # covariances of the collocated secondaries with the neighbours and each other
            cs = (B1[None, None, :, 1:] * r0[:, :, None, None]
                  + B0[None, None, :, 1:] * (d0 == 0)[:, :, None, None]).reshape(m, k * V, V - 1)
            css = np.broadcast_to(B0[1:, 1:] + B1[1:, 1:], (m, V - 1, V - 1))
            C = np.concatenate([np.concatenate([C, cs], 2),
                                np.concatenate([np.transpose(cs, (0, 2, 1)), css], 2)], 1)
            c0 = np.concatenate([c0, np.broadcast_to(B0[1:, 0] + B1[1:, 0], (m, V - 1))], 1)
            data = np.concatenate([data, ts], 1)
        N = C.shape[1]
        A = np.ones((m, N + 1, N + 1))
        A[:, :N, :N] = C
        A[:, N, N] = 0.0
        A[:, :N, :N] += np.eye(N)[None] * 1e-10 * c00
        b = np.ones((m, N + 1))
        b[:, :N] = c0
        return A, b, data

    for s in range(0, len(t), batch_size):
        d0, idx = d0_all[s:s + batch_size], idx_all[s:s + batch_size]
        m = len(idx)
        if fast:
            A, b = np.empty((m, N0 + 1, N0 + 1)), np.empty((m, N0 + 1))
            far = np.zeros(m, bool)
            _fill_cokriging(xy, idx, d0, table[0], table[1], table[2], np.ascontiguousarray(B0, float),
                            np.ascontiguousarray(B1, float), ridge, A, b, far)
            if far.any():   # distances beyond the table: the model itself, through the vectorised assembly
                A[far], b[far], _ = assemble(d0[far], idx[far], s)
            data = z[idx].reshape(m, N0)
        else:
            A, b, data = assemble(d0, idx, s)
        N = A.shape[1] - 1
        c0 = b[:, :N]
        lam, mu = _kriging_weights(A, b, N, ordinary=True, cholesky=compiled)
        pred[s:s + m] = (lam * data).sum(1)
        var[s:s + m] = c00 - (lam * c0).sum(1) - mu
        mus[s:s + m] = mu
    return pred, np.maximum(var, 0.0), mus


# ------------------------------------------------------------------------------------------------
def oblique_coordinates(xy: np.ndarray, *, n_angles: int = 6) -> np.ndarray:
    r"""Coordinates projected on ``n_angles`` axes at angles :math:`\theta_k = k\pi/n`.

    :math:`x\cos\theta_k + y\sin\theta_k`: features that let a tree ensemble split in oblique
    directions (Moeller et al. 2020), available at any point without a distance matrix.

    Parameters
    ----------
    xy : numpy.ndarray, shape (n, 2)
        Coordinates.
    n_angles : int, default 6
        Number of projection axes.

    Returns
    -------
    numpy.ndarray, shape (n, n_angles)
        Projected coordinates (same unit as ``xy``).

    References
    ----------
    Moeller, A.B. et al. (2020). Oblique geographic coordinates as covariates for digital soil
    mapping. SOIL 6, 269-289. https://doi.org/10.5194/soil-6-269-2020
    """
    th = np.arange(n_angles) * np.pi / n_angles
    return xy[:, [0]] * np.cos(th)[None] + xy[:, [1]] * np.sin(th)[None]


def _rf_features(xy: np.ndarray, covariates: pd.DataFrame | None, *, categorical, levels: dict | None,
                 n_angles: int) -> tuple[np.ndarray, dict]:
    parts = [oblique_coordinates(xy, n_angles=n_angles)]
    levels = {} if levels is None else levels
    fit = not levels
    if covariates is not None:
        cats = set(categorical_columns(covariates, categorical)) if fit else set(levels)
        for c in covariates.columns:
            s = covariates[c]
            is_cat = c in cats
            if is_cat:
                s = s.astype(str)
                if fit:
                    levels[c] = sorted(s.unique())
                parts.append(np.column_stack([(s == lev).to_numpy(float) for lev in levels[c]]))
            else:
                parts.append(s.to_numpy(float)[:, None])
    X = np.column_stack(parts)
    if not np.isfinite(X).all():
        raise ValueError("covariates: expected no missing values in the covariates of the random forest")
    return X, levels


# ------------------------------------------------------------------------------------------------
@dataclass
class SpatialModel:
    """A fitted spatial predictor for one variable.

    Attributes
    ----------
    method : one of :data:`METHOD_LABELS` except ``'stack'``.
    log : True when modelled on the natural-log scale.
    train_xy : (n, 2) sample coordinates (in the anisotropy-corrected frame when ``anisotropy``).
    target : modelling-scale values kriged at the samples (values for ok; trend residuals for
        rk, sklm and rfk; rescaled primary for ck).
    variogram : fitted :class:`VariogramFit` of ``target`` (None for gpr and ck).
    anisotropy : :class:`Anisotropy` modelled, or None.
    n_neighbours : neighbourhood size for prediction.
    beta, beta_cov, trend_names, levels, centre, categorical, drift_columns : regression-kriging trend.
    cover : regression kriging: what the samples cover (:func:`covariate_cover`); the covariates at a prediction
        point are held within it (:func:`hold_covariates`).
    class_column, class_means : simple kriging with local means (the class column and its means).
    rf, rf_levels, n_angles : random forest trend (fitted regressor, category levels, oblique axes).
    lmc, secondary_names, secondary_log, scaling : cokriging (LMC, secondary metals, their log
        flags, and the (mean, sd) of every variable used to rescale it to the primary's).
    gpr, scale : Gaussian process (fitted regressor; coordinate scaling).
    share_columns, share_scale, share_cv : kriging in space and class shares (the class-share columns, the scale
        lambda of their coordinates, in the coordinates' unit, and the inner cross-validation that chose it: MAE
        and MSSE per candidate scale; ``variogram`` is rescaled by the chosen scale's MSSE).
    """

    method: str
    log: bool
    train_xy: np.ndarray
    target: np.ndarray
    variogram: VariogramFit | None = None
    n_neighbours: int = 32
    anisotropy: Anisotropy | None = None
    beta: np.ndarray | None = None
    beta_cov: np.ndarray | None = None
    trend_names: list[str] | None = None
    levels: dict | None = None
    centre: dict | None = None
    categorical: tuple = ()
    drift_columns: list[str] | None = None
    class_column: str | None = None
    class_means: dict | None = None
    rf: object | None = None
    rf_levels: dict | None = None
    n_angles: int = 6
    lmc: Coregionalisation | None = None
    secondary_names: list[str] | None = None
    secondary_log: list[bool] | None = None
    scaling: list[tuple[float, float]] | None = None
    gpr: object | None = None
    scale: tuple | None = None
    gpr_global_max: int = 3000
    cover: dict | None = None
    share_columns: list[str] | None = None
    share_scale: float = 0.0
    share_cv: pd.DataFrame | None = field(default=None, repr=False)
    raw_xy: np.ndarray | None = field(default=None, repr=False)

    def _frame(self, xy: np.ndarray) -> np.ndarray:
        return self.anisotropy.transform(xy) if self.anisotropy is not None else xy

    def _trend(self, xy: np.ndarray, covariates: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        """Trend mean and its variance at prediction points (zeros for ok)."""
        n = len(xy)
        if self.method in ("ok", "ck", "gpr", "oks"):
            return np.zeros(n), np.zeros(n)
        if self.method == "rfk":
            X, _ = _rf_features(xy, None if covariates is None else covariates[self.drift_columns].reset_index(drop=True),
                                categorical=self.categorical, levels=self.rf_levels, n_angles=self.n_angles)
            return self.rf.predict(X), np.zeros(n)
        if covariates is None:
            raise ValueError(f"{METHOD_LABELS[self.method]}: expected covariates at the prediction points, got None")
        missing = [c for c in self.drift_columns if c not in covariates.columns]
        if missing:
            raise ValueError(f"covariates: expected columns {self.drift_columns}, missing {missing}")
        if self.method == "sklm":
            s = covariates[self.class_column].astype(str).to_numpy()
            gm = self.class_means["__all__"]
            return np.array([self.class_means.get(c, gm) for c in s], float), np.zeros(n)
        X0 = self._design(covariates)
        return X0 @ self.beta, np.einsum("ij,jk,ik->i", X0, self.beta_cov, X0)

    def _held(self, covariates: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """The trend covariates at the points, held within what the samples cover, and where they were held."""
        cov = covariates[self.drift_columns].reset_index(drop=True)
        if self.cover is None:
            return cov, np.zeros(len(cov), bool)
        return hold_covariates(cov, cover=self.cover)

    def _design(self, covariates: pd.DataFrame) -> np.ndarray:
        X0, _, _, _ = design_matrix(self._held(covariates)[0], categorical=self.categorical, levels=self.levels,
                                    centre=self.centre)
        return X0

    def covariates_held(self, covariates: pd.DataFrame) -> np.ndarray:
        """Regression kriging: True where the covariates at a point lie outside what the samples cover and its trend
        is computed from them held within it (:func:`hold_covariates`); all False for other methods."""
        if self.method != "rk":
            return np.zeros(len(covariates), bool)
        return self._held(covariates)[1]

    def predict(self, x, y, covariates: pd.DataFrame | None = None, *, secondary: pd.DataFrame | None = None,
                chunk_size: int = 20000, neighbours: tuple[np.ndarray, np.ndarray] | None = None,
                point: str = "mean") -> pd.DataFrame:
        r"""Predict at points (x, y), in chunks of ``chunk_size`` points (working memory bounded by the chunk).

        ``covariates`` holds the trend covariates at the points (rk, sklm, rfk); ``secondary``
        (ck only) the secondary metals at the points where they are measured (collocated
        cokriging). Returns a DataFrame with ``prediction`` (the point prediction: the mean, or the median with
        ``point='median'``), ``mean``, ``median``, ``variance`` on the original scale, ``mean_t``/``sd_t`` on the
        modelling scale and ``psi``. On the log scale the mean and the median are the lognormal back-transforms

        .. math:: \hat z = \exp\left(\hat y + \sigma^2/2 - \psi\right),\qquad
                  \tilde z = \exp(\hat y)

        with :math:`\psi` the variogram-form Lagrange multiplier of the (residual) ordinary
        kriging or cokriging system (0 for simple kriging and GPR; for regression kriging the
        multiplier of the residual kriging, the trend's uncertainty being in :math:`\sigma^2`),
        and the variance :math:`\hat z^2(\exp(\sigma^2) - 1)`.

        ``neighbours`` (kriging methods, points predicted in one chunk): the points' nearest samples in the
        model's frame, as :func:`local_kriging` takes them, so that models kriging the same samples share one
        search (:func:`_shared_neighbours`).

        References
        ----------
        Journel, A.G. (1980). The lognormal approach to predicting local distributions of
        selective mining unit grades. Mathematical Geology 12, 285-303.
        https://doi.org/10.1007/BF01029417
        """
        t = _as_xy(x, y, "prediction points")
        if len(t) > chunk_size:
            parts = []
            for s in range(0, len(t), chunk_size):
                sl = slice(s, s + chunk_size)
                parts.append(self.predict(t[sl, 0], t[sl, 1],
                                          None if covariates is None else covariates.iloc[sl].reset_index(drop=True),
                                          secondary=None if secondary is None else secondary.iloc[sl].reset_index(drop=True),
                                          chunk_size=chunk_size, point=point))
            return pd.concat(parts, ignore_index=True)
        psi = np.zeros(len(t))
        if self.method in ("ok", "rk", "rfk"):
            mean_t, var_t, mu = local_kriging(self.train_xy, self.target, self._frame(t),
                                              covariance=self.variogram.covariance, n_neighbours=self.n_neighbours,
                                              neighbours=neighbours)
            psi = -mu
        elif self.method == "oks":
            if covariates is None or any(c not in covariates.columns for c in self.share_columns):
                raise ValueError(f"{METHOD_LABELS['oks']}: expected the class-share columns {self.share_columns} at "
                                 "the prediction points")
            mean_t, var_t, mu = local_kriging(self.train_xy, self.target, self._augment(t, covariates),
                                              covariance=self.variogram.covariance, n_neighbours=self.n_neighbours)
            psi = -mu
        elif self.method == "sklm":
            mean_t, var_t, _ = local_kriging(self.train_xy, self.target, self._frame(t),
                                             covariance=self.variogram.covariance, n_neighbours=self.n_neighbours,
                                             mean=0.0, neighbours=neighbours)
        elif self.method == "ck":
            ts = None
            if secondary is not None:
                ts = np.column_stack([self._rescale(secondary[n].to_numpy(float), i + 1)
                                      for i, n in enumerate(self.secondary_names)])
            mean_t, var_t, mu = local_cokriging(self.train_xy, self.target, self._frame(t), lmc=self.lmc,
                                                n_neighbours=self.n_neighbours, target_secondary=ts)
            psi = -mu
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
        tr, tv = self._trend(t, covariates)
        mean_t = mean_t + tr
        var_t = var_t + tv
        return _back_transform(mean_t, var_t, psi, log=self.log, point=point)

    def _augment(self, xy: np.ndarray, covariates: pd.DataFrame) -> np.ndarray:
        """Kriging in space and class shares: the points' coordinates followed by lambda times their class shares."""
        return share_coordinates(xy, covariates[self.share_columns].to_numpy(float), scale=self.share_scale)

    def _rescale(self, v: np.ndarray, i: int) -> np.ndarray:
        """Secondary variable i (1-based among all variables) on its modelling scale, rescaled to the primary's."""
        if self.secondary_log[i - 1]:
            v = np.log(v)
        (m1, s1), (mi, si) = self.scaling[0], self.scaling[i]
        return (v - mi) / si * s1 + m1


POINTS = ("median", "mean")


def _check_point(point: str) -> str:
    if point not in POINTS:
        raise ValueError(f"point: expected one of {list(POINTS)}, got {point!r}")
    return point


def _back_transform(mean_t, var_t, psi, *, log: bool, point: str = "mean") -> pd.DataFrame:
    """Original-scale mean, median and variance of a prediction on the modelling scale; ``prediction`` is the
    mean or the median (``point``), which are the same on the original scale."""
    _check_point(point)
    var_t = np.maximum(np.asarray(var_t, float), 0.0)
    sd_t = np.sqrt(var_t)
    if log:
        mean = np.exp(mean_t + var_t / 2.0 - psi)
        median = np.exp(mean_t)
        variance = mean**2 * np.expm1(var_t)
    else:
        mean, median, variance = mean_t, mean_t, var_t
    return pd.DataFrame({"prediction": median if point == "median" else mean, "mean": mean, "median": median,
                         "variance": variance, "mean_t": mean_t, "sd_t": sd_t, "psi": psi})


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


def _variogram_of(xy, v, *, models, n_lags, max_lag_fraction, variogram_sample, seed, weights, anisotropy,
                  anisotropy_min_ratio):
    """Fit the variogram of v, with geometric anisotropy when asked and found; returns (fit, anisotropy, xy used)."""
    ev = experimental_variogram(xy[:, 0], xy[:, 1], v, n_lags=n_lags, max_lag_fraction=max_lag_fraction,
                                sampling_size=variogram_sample, seed=seed)
    vf = fit_variogram(ev, models=models, weights=weights)
    an = None
    if anisotropy == "auto" and len(v) >= 50:
        an = detect_anisotropy(xy[:, 0], xy[:, 1], v, vf, min_ratio=anisotropy_min_ratio, n_lags=n_lags,
                               max_lag_fraction=max_lag_fraction, sampling_size=variogram_sample, seed=seed)
        if an is not None:
            txy = an.transform(xy)
            ev = experimental_variogram(txy[:, 0], txy[:, 1], v, n_lags=n_lags, max_lag_fraction=max_lag_fraction,
                                        sampling_size=variogram_sample, seed=seed)
            vf = fit_variogram(ev, models=models, weights=weights)
            return vf, an, txy
    return vf, None, xy


def choose_secondary(primary, candidates: pd.DataFrame, *, min_correlation: float = 0.5, max_secondary: int = 2,
                     skew_threshold: float = 1.0) -> list[str]:
    """Secondary variables for cokriging: the most correlated with the primary (modelling scales).

    Each candidate is taken on the log scale when positive and skewed (as :func:`choose_log`);
    those with absolute Pearson correlation of at least ``min_correlation`` with ``primary``
    are kept, strongest first, at most ``max_secondary``.

    Parameters
    ----------
    primary : modelling-scale primary values.
    candidates : other variables at the same samples (columns), original scale.
    min_correlation, max_secondary, skew_threshold : see above.

    Returns
    -------
    list of column names
    """
    p = np.asarray(primary, float)
    r = {}
    for c in candidates.columns:
        v = candidates[c].to_numpy(float)
        ok = np.isfinite(v) & np.isfinite(p)
        if ok.sum() < 10:
            continue
        vv = np.log(v[ok]) if choose_log(v[ok], skew_threshold=skew_threshold) else v[ok]
        if np.std(vv) > 0:
            r[c] = abs(float(np.corrcoef(p[ok], vv)[0, 1]))
    keep = sorted((c for c in r if r[c] >= min_correlation), key=lambda c: -r[c])
    return keep[:max_secondary]


#: candidate scales of the class-share coordinates of kriging in space and class shares, in effective ranges of the
#: variogram (0 is ordinary kriging), so that the candidates carry over between regions and coordinate units
SHARE_DISTANCE_SCALES = (0.0, 0.25, 0.5, 1.0, 2.0)


def share_coordinates(xy, shares, *, scale: float) -> np.ndarray:
    r"""Coordinates of kriging in space and class shares: each point's (x, y) followed by its class shares times
    ``scale``.

    The distance between two points is then

    .. math:: d_{ij} = \sqrt{\lVert x_i - x_j\rVert^2 + \lambda^2 \lVert p_i - p_j\rVert^2}

    with :math:`p` the map's shares of the classes of one categorical covariate around the point
    (:func:`map_class_shares`) and :math:`\lambda` = ``scale`` (coordinate units): samples in the same mapped unit
    are nearer than samples at the same distance in another one, by at most :math:`\sqrt 2\,\lambda`.
    :math:`\lambda = 0` is ordinary kriging; a large :math:`\lambda` kriges within each mapped unit (the
    stratification of Goovaerts 1997, sect. 6.2), softened where the units mix.

    Parameters
    ----------
    xy : (n, 2) coordinates.
    shares : (n, K) class shares (each between 0 and 1).
    scale : :math:`\lambda`, at least 0.

    Returns
    -------
    ndarray, shape (n, 2 + K)
    """
    xy = np.asarray(xy, float)
    S = np.asarray(shares, float)
    if S.ndim != 2 or len(S) != len(xy):
        raise ValueError(f"shares: expected ({len(xy)}, K) class shares, got shape {S.shape}")
    if not scale >= 0:
        raise ValueError(f"scale: expected >= 0, got {scale}")
    return np.column_stack([xy, float(scale) * S])


def _fit_share_kriging(xy: np.ndarray, v: np.ndarray, shares: pd.DataFrame, *, log: bool, n_lags: int,
                       max_lag_fraction: float, n_neighbours: int, seed: int, variogram_sample: int, weights: str,
                       cv_max_n: int) -> SpatialModel:
    """Kriging in space and class shares (:func:`fit_spatial_model`, ``'oks'``): exponential variogram of ``v`` in
    space, the shares' scale chosen among :data:`SHARE_DISTANCE_SCALES` by 10-fold cross-validation (MAE on the
    modelling scale, on a stratified subsample of at most ``cv_max_n`` samples).

    The variogram's nugget and sill are then multiplied by the mean standardised squared error (MSSE) of that
    cross-validation at the chosen scale, so that the kriging variance matches the errors (MSSE 1; Oliver and
    Webster 2014): fitted in space, the model's variance need not describe distances in space and shares (and an
    exponential fit often leaves too small a nugget). Scaling the covariance leaves the kriging weights, and so the
    predictions on the modelling scale, unchanged."""
    S = shares.to_numpy(float)
    if not np.isfinite(S).all():
        raise ValueError("class shares: expected a share of every class at every sample, got missing values")
    if ((S < -1e-9) | (S > 1 + 1e-9)).any():
        raise ValueError("class shares: expected values between 0 and 1")
    # the exponential model is a valid covariance in any number of dimensions (the spherical one is not beyond
    # three), so the variogram fitted in space can be used on the distances in space and shares. The Gaussian and
    # Matern models are valid too but smooth across a mapped boundary: offered them, the fit chose the Gaussian for Ni
    # in 9 of the 10 folds of Jura nested repeat 4, and the method's error rose from 0.955 to 1.011 of ordinary
    # kriging's (December 2026)
    ev = experimental_variogram(xy[:, 0], xy[:, 1], v, n_lags=n_lags, max_lag_fraction=max_lag_fraction,
                                sampling_size=variogram_sample, seed=seed)
    vf = fit_variogram(ev, models=("exponential",), weights=weights)
    sub = (spatial_subsample(xy[:, 0], xy[:, 1], n=int(cv_max_n), seed=seed) if len(v) > cv_max_n
           else np.arange(len(v)))
    rows = []
    if len(sub) >= 4:
        folds = random_folds(len(sub), n_folds=min(10, len(sub)), seed=seed)
        for c in SHARE_DISTANCE_SCALES:
            X = share_coordinates(xy[sub], S[sub], scale=c * vf.effective_range)
            z = v[sub]
            pred, var = np.empty(len(sub)), np.empty(len(sub))
            for f in np.unique(folds):
                te = folds == f
                pred[te], var[te], _ = local_kriging(X[~te], z[~te], X[te], covariance=vf.covariance,
                                                     n_neighbours=n_neighbours)
            pos = var > 0
            rows.append({"range_multiple": c, "scale": c * vf.effective_range, "mae": float(np.mean(np.abs(pred - z))),
                         "msse": float(np.mean((pred - z)[pos] ** 2 / var[pos])) if pos.any() else float("nan")})
    cvt = pd.DataFrame(rows, columns=["range_multiple", "scale", "mae", "msse"])
    lam, factor = 0.0, 1.0
    if len(cvt):
        # the first smallest error: ties go to the smaller scale (ordinary kriging first)
        best = int(np.argmin(cvt["mae"].to_numpy()))
        lam = float(cvt["scale"].iloc[best])
        msse = float(cvt["msse"].iloc[best])
        factor = msse if np.isfinite(msse) and msse > 0 else 1.0
    cvt["chosen"] = cvt["scale"] == lam
    if factor != 1.0:
        p = [factor * vf.nugget, factor * vf.partial_sill, vf.len_scale]
        vf = replace(vf, nugget=p[0], partial_sill=p[1], gs_model=_gs_model(vf.model, p))
    return SpatialModel("oks", log, share_coordinates(xy, S, scale=lam), v, variogram=vf, n_neighbours=n_neighbours,
                        share_columns=list(shares.columns), share_scale=lam, share_cv=cvt, raw_xy=xy)


def fit_spatial_model(method: str, *, x, y, values, covariates: pd.DataFrame | None = None, categorical=(),
                      secondary: pd.DataFrame | None = None, log: bool = False, models=VARIOGRAM_MODELS,
                      n_lags: int = 15, max_lag_fraction: float = 0.5, n_neighbours: int = 32, seed: int = 0,
                      variogram_sample: int = 2000, gpr_fit_max: int = 1000, weights: str = "npairs_h2",
                      anisotropy: str = "auto", anisotropy_min_ratio: float = 1.5, rf_trees: int = 60,
                      n_angles: int = 6, skew_threshold: float = 1.0, share_cv_max_n: int = 1000) -> SpatialModel:
    r"""Fit one interpolation method to samples.

    * ``ok`` - ordinary kriging with the best WLS variogram (:func:`fit_variogram`), with
      geometric anisotropy when ``anisotropy='auto'`` and the directional check finds a range
      ratio of at least ``anisotropy_min_ratio`` (:func:`detect_anisotropy`).
    * ``rk`` - regression kriging: OLS trend :math:`m(x) = q(x)^\top\beta` on ``covariates``
      (numeric centred, categorical as treatment dummies), ordinary kriging of the OLS residuals
      with their own variogram; the prediction variance is the residual kriging variance plus
      the trend's :math:`q_0^\top \mathrm{Cov}(\hat\beta) q_0` (Hengl et al. 2007, eq. 5,
      neglecting the covariance between the two parts). RK and kriging with external drift
      give equal predictions for the same model (Hengl et al. 2007).
      The covariates at a prediction point are held within what the samples cover (:func:`hold_covariates`).
    * ``sklm`` - simple kriging with varying local means (Goovaerts 1997, sect. 6.1.1): the
      local mean is the training mean of the sample's class in the categorical covariate that
      explains most variance (largest adjusted :math:`R^2`); residuals from it are simple-kriged
      with mean 0.
    * ``ck`` - standardised ordinary cokriging (:func:`local_cokriging`) with the metals of
      ``secondary`` most correlated with the primary (:func:`choose_secondary`); LMC of a nugget
      and the primary's variogram structure (:func:`fit_coregionalisation`), in the frame of the
      primary's geometric anisotropy when one is found.
    * ``rfk`` - random forest (scikit-learn, ``rf_trees`` trees, leaves of at least 5 samples)
      on the covariates and oblique coordinates (:func:`oblique_coordinates`), plus ordinary
      kriging of its out-of-bag residuals (residuals of trees that did not see the sample, so
      their variogram is not shrunk by over-fitting; Hengl et al. 2018).
    * ``gpr`` - scikit-learn Gaussian process regression on scaled coordinates with kernel
      :math:`C\,\mathrm{Matern}_{3/2}(\ell) + \sigma^2_n` (hyperparameters by maximum
      marginal likelihood on at most ``gpr_fit_max`` seeded samples); prediction is exact for
      up to 3000 samples and a local simple-kriging neighbourhood with the fitted kernel beyond.
    * ``oks`` - kriging in space and class shares: ordinary kriging in the coordinates (x, y, lambda p) of
      :func:`share_coordinates`, with ``covariates`` the map's shares of the classes of one categorical covariate
      (:func:`map_class_shares`) at the samples and at the prediction points. This is a Gaussian process with an
      isotropic covariance on joint inputs (Rasmussen and Williams 2006, ch. 4): an exponential variogram fitted
      in space (valid in any dimension) and lambda chosen among :data:`SHARE_DISTANCE_SCALES` times its effective
      range by 10-fold cross-validation of the training samples (at most ``share_cv_max_n`` of them, a stratified
      subsample above), whose MSSE at the chosen lambda rescales the variogram's nugget and sill. lambda = 0 is
      ordinary kriging; a large lambda kriges within each mapped unit (stratification, Goovaerts 1997).

    Parameters
    ----------
    method : method code.
    x, y, values : samples (original scale).
    covariates : trend covariates at the samples (rk, sklm, rfk).
    categorical : names of categorical covariates.
    secondary : other metals at the samples, original scale (ck).
    log : model natural-log values.
    models, n_lags, max_lag_fraction, weights : variogram estimation and fit.
    n_neighbours : samples per kriging neighbourhood.
    seed : seed of every random step.
    variogram_sample, gpr_fit_max : subsample sizes for large data sets (the experimental, directional and cross
        variograms use a seeded subset of ``variogram_sample`` samples, about 2 million pairs for 2,000, which
        estimates them precisely while keeping every cross-validation fold fast).
    anisotropy, anisotropy_min_ratio : ``'auto'`` models geometric anisotropy when found; ``'none'``.
    rf_trees, n_angles : random forest size and number of oblique coordinate axes.
    skew_threshold : log rule for secondary metals.
    share_cv_max_n : oks: largest number of samples in the cross-validation that chooses lambda.

    Returns
    -------
    SpatialModel

    References
    ----------
    Hengl, T., Heuvelink, G.B.M. and Rossiter, D.G. (2007). About regression-kriging: from
    equations to case studies. Computers & Geosciences 33, 1301-1315.
    https://doi.org/10.1016/j.cageo.2007.05.001
    Hengl, T. et al. (2018). Random forest as a generic framework for predictive modeling of
    spatial and spatio-temporal variables. PeerJ 6, e5518. https://doi.org/10.7717/peerj.5518
    Rasmussen, C.E. and Williams, C.K.I. (2006). Gaussian Processes for Machine Learning. MIT Press.
    https://doi.org/10.7551/mitpress/3206.001.0001
    Goovaerts, P. (1997). Geostatistics for Natural Resources Evaluation. Oxford University Press.
    """
    if method not in METHOD_LABELS or method == "stack":
        raise ValueError(f"method: expected one of {[m for m in METHOD_LABELS if m != 'stack']}, got {method!r}")
    xy = _as_xy(x, y)
    v = _as_values(values, len(xy))
    if log:
        if (v <= 0).any():
            raise ValueError(f"log scale needs positive values; got {int((v <= 0).sum())} values <= 0")
        v = np.log(v)
    rng = np.random.default_rng(seed)
    vkw = dict(models=models, n_lags=n_lags, max_lag_fraction=max_lag_fraction, variogram_sample=variogram_sample,
               seed=seed, weights=weights, anisotropy=anisotropy, anisotropy_min_ratio=anisotropy_min_ratio)
    if method in ("rk", "sklm", "oks"):
        if covariates is None or covariates.shape[1] == 0:
            raise ValueError(f"{METHOD_LABELS[method]}: expected a DataFrame of covariates, got none")
    if covariates is not None and len(covariates) != len(xy):
        raise ValueError(f"covariates: expected {len(xy)} rows (one per sample), got {len(covariates)}")
    if method == "ok":
        vf, an, txy = _variogram_of(xy, v, **vkw)
        return SpatialModel("ok", log, txy, v, variogram=vf, n_neighbours=n_neighbours, anisotropy=an, raw_xy=xy)
    if method == "rk":
        X, names, levels, centre = design_matrix(covariates.reset_index(drop=True), categorical=categorical)
        beta, *_ = np.linalg.lstsq(X, v, rcond=None)
        resid = v - X @ beta
        dof = max(len(v) - np.linalg.matrix_rank(X), 1)
        s2 = float(resid @ resid) / dof
        beta_cov = s2 * np.linalg.pinv(X.T @ X)
        vf, an, txy = _variogram_of(xy, resid, **vkw)
        num = [c for c in covariates.columns if c not in levels]
        return SpatialModel("rk", log, txy, resid, variogram=vf, n_neighbours=n_neighbours, anisotropy=an, beta=beta,
                            beta_cov=beta_cov, trend_names=names, levels=levels,
                            cover=covariate_cover(covariates.reset_index(drop=True), categorical=categorical),
                            centre={c: centre[c] for c in num}, categorical=tuple(categorical),
                            drift_columns=list(covariates.columns), raw_xy=xy)
    if method == "oks":
        return _fit_share_kriging(xy, v, covariates, log=log, n_lags=n_lags, max_lag_fraction=max_lag_fraction,
                                  n_neighbours=n_neighbours, seed=seed, variogram_sample=variogram_sample,
                                  weights=weights, cv_max_n=share_cv_max_n)
    if method == "sklm":
        cats = categorical_columns(covariates, categorical)
        if not cats:
            raise ValueError("simple kriging with local means: expected a categorical covariate, got none")
        best, best_r2, best_means = None, -np.inf, None
        for c in cats:
            s = covariates[c].astype(str).to_numpy()
            df = pd.DataFrame({"c": s, "v": v})
            means = df.groupby("c")["v"].mean()
            fitted = means.reindex(s).to_numpy()
            ss = float(np.sum((v - v.mean()) ** 2)) or 1.0
            r2 = 1 - float(np.sum((v - fitted) ** 2)) / ss
            p = len(means) - 1
            adj = 1 - (1 - r2) * (len(v) - 1) / max(len(v) - p - 1, 1)
            if adj > best_r2:
                best, best_r2, best_means = c, adj, means
        cm = {str(k): float(val) for k, val in best_means.items()}
        cm["__all__"] = float(v.mean())
        resid = v - best_means.reindex(covariates[best].astype(str).to_numpy()).to_numpy()
        vf, an, txy = _variogram_of(xy, resid, **vkw)
        return SpatialModel("sklm", log, txy, resid, variogram=vf, n_neighbours=n_neighbours, anisotropy=an,
                            class_column=best, class_means=cm, drift_columns=[best], categorical=tuple(categorical),
                            raw_xy=xy)
    if method == "rfk":
        from sklearn.ensemble import RandomForestRegressor

        cov = None if covariates is None or covariates.shape[1] == 0 else covariates.reset_index(drop=True)
        X, levels = _rf_features(xy, cov, categorical=categorical, levels=None, n_angles=n_angles)
        rf = RandomForestRegressor(n_estimators=rf_trees, min_samples_leaf=5, max_features=0.5, oob_score=True,
                                   random_state=int(rng.integers(2**31 - 1)), n_jobs=1).fit(X, v)
        resid = v - rf.oob_prediction_
        vf, an, txy = _variogram_of(xy, resid, **vkw)
        return SpatialModel("rfk", log, txy, resid, variogram=vf, n_neighbours=n_neighbours, anisotropy=an, rf=rf,
                            rf_levels=levels, n_angles=n_angles, categorical=tuple(categorical),
                            drift_columns=[] if cov is None else list(cov.columns), raw_xy=xy)
    if method == "ck":
        if secondary is None or secondary.shape[1] == 0:
            raise ValueError("cokriging: expected a DataFrame of secondary variables, got none")
        if len(secondary) != len(xy):
            raise ValueError(f"secondary: expected {len(xy)} rows (one per sample), got {len(secondary)}")
        sec = secondary.reset_index(drop=True)
        names = choose_secondary(v, sec, skew_threshold=skew_threshold)
        # the basic structure (and the geometric anisotropy, when found) from the primary's variogram; the LMC
        # is fitted and the cokriging solved in the frame where that structure is isotropic
        vf, an, txy = _variogram_of(xy, v, **vkw)
        if not names:   # nothing correlated: cokriging reduces to ordinary kriging
            return SpatialModel("ok", log, txy, v, variogram=vf, n_neighbours=n_neighbours, anisotropy=an, raw_xy=xy)
        cols, logs = [v], []
        keep = np.ones(len(v), bool)
        for n in names:
            s = sec[n].to_numpy(float)
            lg = choose_log(s[np.isfinite(s)], skew_threshold=skew_threshold)
            logs.append(lg)
            keep &= np.isfinite(s) & ((s > 0) if lg else True)
            cols.append(np.log(np.where(s > 0, s, np.nan)) if lg else s)
        Z = np.column_stack(cols)[keep]
        scaling = [(float(Z[:, i].mean()), float(Z[:, i].std()) or 1.0) for i in range(Z.shape[1])]
        m1, s1 = scaling[0]
        Zs = np.column_stack([Z[:, 0]] + [(Z[:, i] - scaling[i][0]) / scaling[i][1] * s1 + m1
                                          for i in range(1, Z.shape[1])])
        edges = _lag_edges(txy[keep], n_lags, max_lag_fraction)
        sub = np.arange(keep.sum())
        if len(sub) > variogram_sample:
            sub = np.sort(rng.choice(len(sub), variogram_sample, replace=False))
        ev = cross_variograms(txy[keep][sub, 0], txy[keep][sub, 1], Zs[sub], bin_edges=edges)
        lmc = fit_coregionalisation(ev, basic=vf.gs_model, names=["primary"] + names,
                                    weights="npairs" if weights == "npairs" else "npairs_h2")
        return SpatialModel("ck", log, txy[keep], Zs, variogram=vf, n_neighbours=max(8, n_neighbours // 2), lmc=lmc,
                            anisotropy=an, secondary_names=names, secondary_log=logs, scaling=scaling,
                            raw_xy=xy[keep])
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
    return SpatialModel("gpr", log, xy, v, n_neighbours=n_neighbours, gpr=gpr, scale=(c[0], c[1], f), raw_xy=xy)


# ------------------------------------------------------------------------------------------------
def random_folds(n: int, *, n_folds: int, seed: int) -> np.ndarray:
    """Seeded random partition of n samples into ``n_folds`` folds of (almost) equal size.

    Parameters
    ----------
    n : int
        Number of samples.
    n_folds : int
        Number of folds (2..n).
    seed : int
        Random seed.

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Fold index (0..n_folds-1) of each sample.
    """
    if not 2 <= n_folds <= n:
        raise ValueError(f"n_folds: expected 2..{n} (number of samples), got {n_folds}")
    return np.random.default_rng(seed).permutation(np.arange(n) % n_folds)


def spatial_block_folds(x, y, *, block_size: float, n_folds: int, seed: int) -> np.ndarray:
    """Folds made of square blocks of side ``block_size``: every sample of a block is held out together.

    Blocks (a regular tiling from the lower-left sample) are shuffled with the seed and each is
    given to the fold with the fewest samples so far; with fewer blocks than ``n_folds`` each
    block is a fold. Choose ``block_size`` larger than the variogram range so that held-out
    samples have no correlated neighbour in the training set at short distance (Roberts et al. 2017).

    Parameters
    ----------
    x, y : sample coordinates.
    block_size : side of the blocks (coordinate units).
    n_folds : number of folds wanted.
    seed : seed of the block shuffle.

    Returns
    -------
    ndarray of int
        Fold per sample (0 .. number of folds - 1).

    References
    ----------
    Roberts, D.R. et al. (2017). Cross-validation strategies for data with temporal, spatial,
    hierarchical, or phylogenetic structure. Ecography 40, 913-929. https://doi.org/10.1111/ecog.02881
    """
    xy = _as_xy(x, y)
    if not block_size > 0:
        raise ValueError(f"block_size: expected > 0, got {block_size}")
    ij = np.floor((xy - xy.min(axis=0)) / block_size).astype(np.int64)
    _, block = np.unique(ij, axis=0, return_inverse=True)
    block = block.ravel()
    nb = int(block.max()) + 1
    if nb < 2:
        raise ValueError(f"block_size: {block_size:g} leaves all samples in one block; expected at least 2 blocks")
    order = np.random.default_rng(seed).permutation(nb)
    k = min(n_folds, nb)
    sizes = np.bincount(block, minlength=nb)
    load = np.zeros(k)
    fold_of_block = np.empty(nb, int)
    for b in order:
        f = int(np.argmin(load))
        fold_of_block[b] = f
        load[f] += sizes[b]
    return fold_of_block[block]


def cross_validate(method: str, *, x, y, values, covariates: pd.DataFrame | None = None, categorical=(),
                   secondary: pd.DataFrame | None = None, collocated: bool = False, log: bool = False,
                   scheme: str = "kfold", n_folds: int = 10, seed: int = 0, folds=None,
                   predict_covariates: pd.DataFrame | None = None, point: str = "mean",
                   fit: Callable[..., SpatialModel] | None = None, **fit_kwargs) -> pd.DataFrame:
    """Seeded k-fold, leave-one-out or given-fold cross-validation of one method.

    Each fold refits the whole method (variogram, anisotropy, trend, forest, LMC or GP kernel)
    on the training samples only and predicts the held-out samples, so no held-out value
    informs its own prediction. For cokriging the held-out samples' secondary values are
    withheld too, unless ``collocated`` (the design where the secondary metals are measured at
    the prediction points).

    Parameters
    ----------
    method : method code (see :func:`fit_spatial_model`).
    x, y, values, covariates, categorical, secondary, log : as :func:`fit_spatial_model`.
    collocated : cokriging uses the held-out samples' secondary values.
    scheme : 'kfold' (seeded random partition into ``n_folds``) or 'loo'; ignored with ``folds``.
    folds : fold label per sample (e.g. :func:`spatial_block_folds`).
    seed : seed of the partition and of each fold's fit (seed + fold).
    predict_covariates : covariates used at the held-out samples (default ``covariates``): those of the map at
        each sample (:func:`covariates_at_samples`), so that the score is the map's; the models are fitted on
        ``covariates``.
    point : the point prediction scored: 'mean' or 'median' of the predictive distribution
        (:meth:`SpatialModel.predict`).
    fit : fitting function (default :func:`fit_spatial_model`).
    fit_kwargs : passed to ``fit``.

    Returns
    -------
    DataFrame
        Per sample: index (position in the input), fold, observed, predicted (the ``point`` prediction), median,
        variance (original scale), observed_t, mean_t, sd_t, psi (modelling scale).
    """
    xy = _as_xy(x, y)
    v = _as_values(values, len(xy))
    n = len(v)
    _check_point(point)
    if folds is not None:
        folds = np.asarray(folds)
        if len(folds) != n:
            raise ValueError(f"folds: expected {n} labels (one per sample), got {len(folds)}")
    elif scheme == "loo":
        folds = np.arange(n)
    elif scheme == "kfold":
        folds = random_folds(n, n_folds=n_folds, seed=seed)
    else:
        raise ValueError(f"scheme: expected 'kfold' or 'loo', got {scheme!r}")
    fit = fit or fit_spatial_model
    cov = None if covariates is None else covariates.reset_index(drop=True)
    pcov = cov if predict_covariates is None or cov is None else predict_covariates.reset_index(drop=True)
    if pcov is not None and len(pcov) != n:
        raise ValueError(f"predict_covariates: expected {n} rows (one per sample), got {len(pcov)}")
    sec = None if secondary is None else secondary.reset_index(drop=True)
    parts = []
    for f in np.unique(folds):
        test = np.flatnonzero(folds == f)
        train = np.flatnonzero(folds != f)
        kw = dict(fit_kwargs)
        if sec is not None:
            kw["secondary"] = sec.iloc[train].reset_index(drop=True)
        model = fit(method, x=xy[train, 0], y=xy[train, 1], values=v[train],
                    covariates=None if cov is None else cov.iloc[train].reset_index(drop=True),
                    categorical=categorical, log=log, seed=seed + int(f), **kw)
        pkw = {}
        if collocated and sec is not None and model.method == "ck":
            pkw["secondary"] = sec.iloc[test].reset_index(drop=True)
        p = model.predict(xy[test, 0], xy[test, 1], None if pcov is None else pcov.iloc[test].reset_index(drop=True),
                          point=point, **pkw)
        parts.append(pd.DataFrame({"index": test, "fold": int(f), "observed": v[test],
                                   "predicted": p["prediction"].to_numpy(), "median": p["median"].to_numpy(),
                                   "variance": p["variance"].to_numpy(),
                                   "observed_t": np.log(v[test]) if log else v[test],
                                   "mean_t": p["mean_t"].to_numpy(), "sd_t": p["sd_t"].to_numpy(),
                                   "psi": p["psi"].to_numpy()}))
    return pd.concat(parts, ignore_index=True).sort_values("index").reset_index(drop=True)


def cv_metrics(cv: pd.DataFrame) -> dict:
    r"""MAE, RMSE and MSSE of cross-validation predictions.

    .. math::

        \mathrm{MAE} = \frac1n\sum|z_i-\hat z_i|,\quad
        \mathrm{RMSE} = \sqrt{\frac1n\sum (z_i-\hat z_i)^2},\quad
        \mathrm{MSSE} = \frac1n\sum \frac{(y_i-\hat y_i)^2}{\sigma_i^2}

    MAE and RMSE are on the original scale, of the ``predicted`` column (the point prediction that
    :func:`cross_validate` was asked for, the mean or the median); the MSSE on the modelling
    scale (log values when logged), where the kriging / GP variance :math:`\sigma_i^2` applies; an
    MSSE near 1 means the stated uncertainty is about right.

    Parameters
    ----------
    cv : output of :func:`cross_validate`.

    Returns
    -------
    dict
        mae, rmse, msse, n.

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


def stack_weights(mean_t: np.ndarray, observed_t, *, shrink: float = 0.0, reference: int | None = None) -> np.ndarray:
    r"""Stacking weights: non-negative, summing to one, minimising the squared out-of-fold error.

    .. math:: \hat w = \arg\min_{w \ge 0,\ \sum w = 1} \sum_i \left(y_i - \sum_m w_m \hat y_{im}\right)^2

    (Breiman 1996), solved with :func:`scipy.optimize.nnls` on the system augmented by a heavily
    weighted row :math:`\sum_m w_m = 1`. With ``shrink`` :math:`= \lambda` the weights are shrunk
    towards the ``reference`` method (column :math:`r`),
    :math:`w_\lambda = (1 - \lambda)\,\hat w + \lambda\, e_r`, still non-negative and summing to
    one: with a few hundred samples the fitted weights are noisy, and :math:`\lambda` (chosen by
    out-of-fold error in :func:`stack_shrinkage`) trades that noise against the gain.

    Parameters
    ----------
    mean_t : (n, M) out-of-fold predictions of M methods (modelling scale).
    observed_t : n observed values (modelling scale).
    shrink : :math:`\lambda` in [0, 1]; 0 leaves the fitted weights, 1 gives the reference alone.
    reference : column of the reference method (needed when ``shrink`` > 0).

    Returns
    -------
    ndarray
        M weights.

    References
    ----------
    Breiman, L. (1996). Stacked regressions. Machine Learning 24, 49-64.
    https://doi.org/10.1007/BF00117832
    """
    from scipy.optimize import nnls

    P = np.asarray(mean_t, float)
    y = np.asarray(observed_t, float)
    big = 1e3 * max(1.0, float(np.abs(P).max()))
    A = np.vstack([P, big * np.ones(P.shape[1])])
    b = np.r_[y, big]
    if not 0.0 <= shrink <= 1.0:
        raise ValueError(f"shrink: expected a value in [0, 1], got {shrink}")
    if shrink > 0 and reference is None:
        raise ValueError("reference: expected the column of the method the weights are shrunk towards, got None")
    w, _ = nnls(A, b)
    w = w / w.sum() if w.sum() > 0 else np.full(P.shape[1], 1.0 / P.shape[1])
    if shrink > 0:
        w = (1.0 - shrink) * w
        w[reference] += shrink
    return w


def stacked_cv(cvs: dict[str, pd.DataFrame], *, log: bool, shrink: float = 0.0,
               reference: str = "ok", point: str = "mean") -> tuple[pd.DataFrame, np.ndarray]:
    """Honest out-of-fold predictions of the stacked ensemble, and its weights on all samples.

    For the samples of each fold the weights come from the other folds' out-of-fold
    predictions only (:func:`stack_weights`, shrunk by ``shrink`` towards ``reference``); the stacked modelling-scale mean and variance are
    :math:`\\sum_m w_m \\hat y_m` and :math:`\\sum_m w_m \\sigma^2_m` (an upper bound on the
    variance of a convex combination), back-transformed as in :meth:`SpatialModel.predict` with
    :math:`\\psi = \\sum_m w_m \\psi_m`. The base methods' out-of-fold predictions were made by
    models that saw the other folds, so the stack's score is slightly optimistic (the usual
    approximation of cross-validated stacking).

    Parameters
    ----------
    cvs : method -> output of :func:`cross_validate` (same samples and folds).
    log : modelled on the log scale.
    shrink, reference : shrinkage of the weights towards the reference method (:func:`stack_weights`);
        ``reference`` must be among ``cvs`` when ``shrink`` > 0.
    point : the point prediction ('mean' or 'median'), as :func:`cross_validate`.

    Returns
    -------
    (DataFrame like :func:`cross_validate`, weights on all samples)
    """
    names = list(cvs)
    ref = names.index(reference) if reference in names else None
    first = cvs[names[0]]
    P = np.column_stack([cvs[m]["mean_t"].to_numpy(float) for m in names])
    Vv = np.column_stack([cvs[m]["sd_t"].to_numpy(float) ** 2 for m in names])
    S = np.column_stack([cvs[m]["psi"].to_numpy(float) for m in names])
    y = first["observed_t"].to_numpy(float)
    folds = first["fold"].to_numpy()
    W = np.empty_like(P)
    for f in np.unique(folds):
        te = folds == f
        W[te] = stack_weights(P[~te], y[~te], shrink=shrink, reference=ref)[None]
    bt = _back_transform((W * P).sum(1), (W * Vv).sum(1), (W * S).sum(1), log=log, point=point)
    out = first[["index", "fold", "observed", "observed_t"]].copy()
    out["predicted"] = bt["prediction"].to_numpy()
    out["median"] = bt["median"].to_numpy()
    out["variance"] = bt["variance"].to_numpy()
    out["mean_t"], out["sd_t"], out["psi"] = bt["mean_t"].to_numpy(), bt["sd_t"].to_numpy(), bt["psi"].to_numpy()
    return out[["index", "fold", "observed", "predicted", "median", "variance", "observed_t", "mean_t", "sd_t",
                "psi"]], stack_weights(P, y, shrink=shrink, reference=ref)


STACK_SHRINKAGE = (0.0, 0.25, 0.5, 0.75, 1.0)


def stack_shrinkage(by_scheme: dict[str, dict[str, pd.DataFrame]], *, members, log: bool, reference: str = "ok",
                    grid=STACK_SHRINKAGE, point: str = "mean") -> tuple[float, pd.DataFrame]:
    r"""Shrinkage of the stacked ensemble towards the reference method, chosen by out-of-fold error.

    For every :math:`\lambda` of ``grid`` the fold-honest stacked predictions (:func:`stacked_cv`,
    weights shrunk by :math:`\lambda`) are scored in every cross-validation scheme by their mean absolute
    error relative to the reference's; the :math:`\lambda` with the smallest ratio averaged over the
    schemes is chosen (the largest, i.e. the one nearest the reference, on ties).

    .. math:: \lambda^* = \arg\min_{\lambda} \frac{1}{S}\sum_s \frac{\mathrm{MAE}_s(\lambda)}{\mathrm{MAE}_s(\mathrm{ref})}

    With :math:`\lambda = 1` in the grid the ensemble is the reference itself, so the chosen ensemble
    is never worse than the reference on that average. Shrinking towards a simple method regularises
    weights fitted on few samples (the shrinkage towards a fixed combination of Breiman 1996, sect. 7;
    LeBlanc and Tibshirani 1996). Measured with ``benchmarks/spatial.py --splits`` (held-out MAE ratio to
    ordinary kriging's map), mapping this ensemble against the previous rule (the unshrunk stack only
    when no worse than ordinary kriging in every scheme), with the covariates recorded at the held-out samples
    (before the split benchmark read the map's): ten random 159/100 splits of the Jura samples
    0.966 -> 0.960 (mean over splits and metals), eight 105/50 splits of the Meuse samples
    0.763 -> 0.761, five generated 259/100 surveys 0.989 -> 0.987.

    Parameters
    ----------
    by_scheme : scheme -> method -> output of :func:`cross_validate` (same samples in every scheme).
    members : methods of the ensemble (``reference`` among them).
    log : modelled on the log scale.
    reference : the method the weights are shrunk towards.
    grid : candidate values of :math:`\lambda` in [0, 1].
    point : the point prediction scored ('mean' or 'median'), as in ``by_scheme``.

    Returns
    -------
    (float, DataFrame)
        The chosen :math:`\lambda`, and per :math:`\lambda` and scheme the MAE ratio (columns shrink,
        scheme, ratio_mae_to_reference).

    References
    ----------
    Breiman, L. (1996). Stacked regressions. Machine Learning 24, 49-64.
    https://doi.org/10.1007/BF00117832
    LeBlanc, M. and Tibshirani, R. (1996). Combining estimates in regression and classification. Journal of
    the American Statistical Association 91, 1641-1650. https://doi.org/10.1080/01621459.1996.10476733
    """
    members = list(members)
    if reference not in members:
        raise ValueError(f"members: expected the reference {reference!r} among them, got {members}")
    rows = []
    for lam in sorted({float(g) for g in grid}):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"grid: expected values in [0, 1], got {lam}")
        for sname, d in by_scheme.items():
            st, _ = stacked_cv({m: d[m] for m in members}, log=log, shrink=lam, reference=reference, point=point)
            mae = float(np.mean(np.abs(st["observed"] - st["predicted"])))
            ref = float(np.mean(np.abs(d[reference]["observed"] - d[reference]["predicted"])))
            rows.append({"shrink": lam, "scheme": sname, "ratio_mae_to_reference": mae / ref})
    tab = pd.DataFrame(rows)
    avg = tab.groupby("shrink")["ratio_mae_to_reference"].mean()
    best, best_v = 1.0, np.inf
    for lam in sorted(avg.index, reverse=True):   # ties: the largest shrinkage (nearest the reference)
        if avg[lam] < best_v - 1e-12:
            best, best_v = float(lam), float(avg[lam])
    return best, tab


def select_method(losses: pd.DataFrame, *, complexity: dict | None = None, reference: str = "ok",
                  scheme_losses: dict[str, pd.DataFrame] | None = None, n_se: float = 1.0,
                  ensemble: str | None = None, ensemble_rule: str = "every_scheme") -> dict:
    r"""Choose a method by out-of-fold error with the one-standard-error rule.

    ``losses`` holds one column per method with each sample's out-of-fold absolute error (the
    mean over the cross-validation schemes). The method with the smallest mean loss sets the
    bar; the least complex method whose mean loss is within one standard error of the best is
    chosen, the standard error being that of the paired per-sample differences to the best
    (Hastie et al. 2009, sect. 7.10). A method must pay for its complexity with a gain larger
    than the noise of the estimate.

    With ``scheme_losses`` (scheme -> per-sample losses, e.g. k-fold and spatial blocks) a method
    competes with the ``reference`` only when it beats it in *every* scheme by more than
    ``n_se`` standard errors of the paired differences,
    :math:`\bar d + n_{se}\, s_d/\sqrt{n} < 0` with :math:`d_i = L_{m,i} - L_{\mathrm{ref},i}`:
    a gain that holds both between samples and in new places, and is not the noise of one
    partition. Selecting the best of several noisy scores is optimistic (Cawley and Talbot
    2010); this guard keeps the reference unless the evidence is clear.

    ``ensemble`` names a column that is a convex combination of the candidates, the reference
    among them, with weights from out-of-fold predictions (the stacked ensemble of
    :func:`stacked_cv`). It does not replace the reference by a competing model: it shrinks the
    others towards it, and a cross-validated convex combination does asymptotically as well as
    the best one (the oracle inequality of the Super Learner, van der Laan et al. 2007). It is
    therefore chosen whenever its mean loss is no larger than the reference's in every scheme,
    without the margin a single method needs (``ensemble_rule='every_scheme'``). With
    ``ensemble_rule='mean_ratio'`` it is chosen when its mean loss relative to the reference's,
    averaged over the schemes, is below one: :func:`map_metal` uses this for the ensemble shrunk towards
    the reference by :func:`stack_shrinkage`, whose shrinkage was chosen on that average with the
    reference itself (shrinkage 1) among the candidates. Held-out MAE relative to ordinary kriging's
    (``benchmarks/spatial.py --splits``), this rule against the single-method rule alone: on five
    random 159/100 splits of the Jura samples, mean 0.97 (worst metal 1.04) against 1.00 (worst
    1.17); on four 105/50 splits of the Meuse samples, mean 0.73 (worst 0.95) against 0.75
    (worst 1.03).

    Parameters
    ----------
    losses : per-sample losses, one column per method.
    complexity : method -> rank (lower is simpler); default :data:`METHOD_COMPLEXITY`.
    reference : the method the chosen one is compared with.
    scheme_losses : optional per-scheme per-sample losses (same method columns; a method missing
        from a scheme is not checked there).
    n_se : standard errors a gain over the reference must exceed in every scheme.
    ensemble : optional column of the out-of-fold weighted ensemble (see above).
    ensemble_rule : ``'every_scheme'`` (no worse than the reference in every scheme) or ``'mean_ratio'``
        (mean-loss ratio to the reference, averaged over the schemes, below one).

    Returns
    -------
    dict
        chosen, best (smallest mean loss), mean_loss (per method), se_to_best (per method),
        eligible (methods that may replace the reference; all methods without ``scheme_losses``)
        and rule (``'ensemble'`` when the ensemble was chosen as no worse than the reference,
        else ``'one_se'``).

    References
    ----------
    Hastie, T., Tibshirani, R. and Friedman, J. (2009). The Elements of Statistical Learning,
    2nd ed. Springer. https://doi.org/10.1007/978-0-387-84858-7
    Cawley, G.C. and Talbot, N.L.C. (2010). On over-fitting in model selection and subsequent
    selection bias in performance evaluation. Journal of Machine Learning Research 11, 2079-2107.
    van der Laan, M.J., Polley, E.C. and Hubbard, A.E. (2007). Super learner. Statistical
    Applications in Genetics and Molecular Biology 6(1), 25. https://doi.org/10.2202/1544-6115.1309
    """
    if ensemble_rule not in ("every_scheme", "mean_ratio"):
        raise ValueError(f"ensemble_rule: expected 'every_scheme' or 'mean_ratio', got {ensemble_rule!r}")
    cx = complexity or METHOD_COMPLEXITY
    L = losses
    eligible = list(L.columns)
    ens_ok = False
    if ensemble is not None and ensemble in L.columns and reference in L.columns:
        schemes = [S for S in (scheme_losses.values() if scheme_losses is not None else [L])
                   if ensemble in S.columns and reference in S.columns]
        if ensemble_rule == "every_scheme":
            ens_ok = all(float((S[ensemble] - S[reference]).mean()) <= 0 for S in schemes)
        else:
            ens_ok = bool(schemes) and float(np.mean([S[ensemble].mean() / S[reference].mean()
                                                       for S in schemes])) < 1.0
    if scheme_losses is not None and reference in L.columns:
        def clear_gain(m):
            for S in scheme_losses.values():
                if m not in S.columns or reference not in S.columns:
                    continue
                d = (S[m] - S[reference]).to_numpy(float)
                if not d.mean() + n_se * d.std(ddof=1) / np.sqrt(len(d)) < 0:
                    return False
            return True
        eligible = [m for m in L.columns if m == reference or clear_gain(m) or (m == ensemble and ens_ok)]
        L = L[eligible]
    mean = L.mean()
    best = str(mean.idxmin())
    n = len(L)
    se = {m: float((L[m] - L[best]).std(ddof=1) / np.sqrt(n)) if m != best else 0.0 for m in L.columns}
    ok = [m for m in L.columns if mean[m] <= mean[best] + se[m]]
    chosen = ensemble if ens_ok else min(ok, key=lambda m: (cx.get(m, 99), mean[m]))
    full = losses.mean()
    se_all = {m: se.get(m, float((losses[m] - losses[best]).std(ddof=1) / np.sqrt(n))) for m in losses.columns}
    return {"chosen": chosen, "best": best, "mean_loss": full.to_dict(), "se_to_best": se_all, "eligible": eligible,
            "rule": "ensemble" if ens_ok else "one_se"}


def ratio_interval(loss_a, loss_b, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Ratio of mean losses a/b with a paired bootstrap percentile interval (samples resampled with their pair).

    Parameters
    ----------
    loss_a, loss_b : per-sample losses of two methods on the same samples.
    n_boot, seed, level : bootstrap size, seed and interval level.

    Returns
    -------
    (ratio, lower, upper)

    References
    ----------
    Efron, B. and Tibshirani, R.J. (1993). An Introduction to the Bootstrap. Chapman & Hall.
    https://doi.org/10.1201/9780429246593
    """
    a = np.asarray(loss_a, float)
    b = np.asarray(loss_b, float)
    idx = np.random.default_rng(seed).integers(0, len(a), (n_boot, len(a)))
    r = a[idx].mean(1) / b[idx].mean(1)
    q = (1 - level) / 2
    return float(a.mean() / b.mean()), float(np.quantile(r, q)), float(np.quantile(r, 1 - q))


def best_methods(cv_table: pd.DataFrame, *, metric: str = "rmse") -> pd.DataFrame:
    """Best method per metal by ``metric`` (smallest), with the margin over the runner-up.

    Parameters
    ----------
    cv_table : metal, method and the metric.
    metric : column to rank by.

    Returns
    -------
    DataFrame
        metal, best, <metric>, runner_up, runner_up_<metric>, improvement_pct.
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

    Parameters
    ----------
    mean_t : array-like
        Predicted mean on the modelling scale.
    sd_t : array-like
        Prediction standard deviation on the modelling scale.
    threshold : float
        Threshold on the original concentration scale.
    log : bool
        Whether the modelling scale is the natural log.

    Returns
    -------
    numpy.ndarray
        Exceedance probability (0-1) per target.

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


def area_share_above(prediction, probability, *, threshold: float, median=None) -> dict:
    """Share of the (equal-area) cells above ``threshold``.

    Parameters
    ----------
    prediction : mean map (original scale).
    probability : exceedance probability per cell.
    threshold : guideline value.
    median : median map (the mean map when the variable is modelled on its original scale).

    Returns
    -------
    dict
        share_expected (mean exceedance probability: the expected share of the area above the
        value, the headline figure), share_median (cells whose median prediction exceeds it,
        equal to the share with probability > 0.5), share_mean_map (cells whose mean
        prediction exceeds it: larger than the median share for skewed variables), share_p50
        and share_p90 (cells with probability > 0.5 / > 0.9).
    """
    p = np.asarray(probability, float)
    z = np.asarray(prediction, float)
    md = z if median is None else np.asarray(median, float)
    return {"share_expected": float(np.mean(p)), "share_median": float(np.mean(md > threshold)),
            "share_mean_map": float(np.mean(z > threshold)),
            "share_p50": float(np.mean(p > 0.5)), "share_p90": float(np.mean(p > 0.9))}


# ------------------------------------------------------------------------------------------------
# stage helpers: one metal end to end, figures, methods text
def guideline_thresholds(guideline_set: str | None, threshold_name: str | None, *, medium: str = "soil",
                         unit: str = "mg/kg") -> pd.Series:
    """Guideline value per metal for ``threshold_name`` (the strictest where the set has several).

    Returns an empty Series when no set or threshold is selected.

    Parameters
    ----------
    guideline_set : str or None
        Name of the guideline reference set.
    threshold_name : str or None
        Threshold to select.
    medium : str, default 'soil'
        Medium of the guideline rows.
    unit : str, default 'mg/kg'
        Unit to convert the values to.

    Returns
    -------
    pandas.Series
        Guideline value per metal in ``unit``, named ``'threshold'``.
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
    variogram : the fitted :class:`VariogramFit` (ordinary-kriging variogram, all samples).
    anisotropy_model : the :class:`Anisotropy` ordinary kriging models on all samples, or None.
    cv : per-sample out-of-fold predictions of every method and scheme (columns method, scheme).
    cv_summary : metal, method, scheme, mae, rmse, msse, n, selectable.
    selection : metal, method, mean_loss, se_to_best, eligible, within_one_se, chosen (one row per method;
        ``eligible``: ordinary kriging, and the methods that beat it by more than one standard error in every
        scheme; only those can be within one SE of the best).
    best : the chosen method (the stacked ensemble, shrunk towards OK by :func:`stack_shrinkage`, when its
        mean absolute error relative to OK's averaged over the schemes is below one, else the
        one-standard-error rule on the mean of the k-fold and block losses; :func:`select_method`).
    gain : metal, scheme, method, ratio_mae_to_ok, ratio_low, ratio_high (paired bootstrap 95 %).
    stack_weights : method -> weight of the stacked ensemble (all samples, after the shrinkage; empty
        without a stack).
    secondary : secondary metals of cokriging (empty when none is correlated enough).
    block_size : side of the spatial blocks of the block cross-validation.
    grid : x, y, metal, method, chosen, prediction (the mapped value: the ``point`` prediction), mean, median,
        variance, mean_t, sd_t, psi, exceedance_probability (NaN without a threshold), for the chosen method.
    point : the mapped and scored point prediction, 'median' or 'mean' of the predictive distribution (the same
        on the original scale).
    threshold : guideline value (NaN when none) and ``shares`` (dict of :func:`area_share_above`).
    seconds : cross-validation and prediction time per method.
    n_samples, n_cv : samples used by the maps and by the cross-validation (fewer above
        ``cv_max_n``: a spatially stratified subsample, :func:`spatial_subsample`).
    scale_cv : with ``log_mode='cv'``, ordinary kriging's k-fold MAE on the raw and ln scales (the
        smaller decides the modelling scale); empty otherwise.
    anisotropy_cv : with ``anisotropy='auto'``, ordinary kriging's k-fold MAE with and without the
        detected anisotropy (kept only when it lowers the error); empty otherwise.
    n_below_zero : grid cells whose mean prediction on the original scale fell below zero; their mapped value,
        mean and median are truncated at zero in ``grid`` (always 0 on the log scale).
    n_covariates_held : grid cells whose covariates regression kriging, mapped alone or in the stack, held within what
        the samples cover (:func:`hold_covariates`; 0 when it is not mapped).
    stack_shrinkage : the stacked ensemble's shrinkage towards OK (:func:`stack_shrinkage`; NaN without a
        stack) and ``shrinkage_cv`` its table (MAE ratio to OK per shrinkage and scheme).
    covariate_forms : with the map's class shares, per method (rk, rfk) the form of the categorical covariates
        used ('classes' or 'shares'), and ``form_cv`` the MAE of each form averaged over the schemes.
    share_scales : per mapped candidate of kriging in space and class shares (``'oks:<covariate>'``): metal,
        candidate, covariate, the scale lambda of the shares chosen on all samples (:func:`share_coordinates`) in
        multiples of its exponential variogram's effective range (``range_multiple``), that range and lambda itself
        (``scale``, coordinate units).
    """

    metal: str
    log: bool
    experimental: pd.DataFrame
    directional: pd.DataFrame
    anisotropy: pd.DataFrame
    variogram: VariogramFit
    anisotropy_model: Anisotropy | None
    cv: pd.DataFrame
    cv_summary: pd.DataFrame
    selection: pd.DataFrame
    best: str
    gain: pd.DataFrame
    stack_weights: dict
    secondary: list
    block_size: float
    grid: pd.DataFrame
    threshold: float
    shares: dict
    seconds: dict
    scale_cv: dict = field(default_factory=dict)
    anisotropy_cv: dict = field(default_factory=dict)
    n_samples: int = 0
    n_cv: int = 0
    n_below_zero: int = 0
    n_covariates_held: int = 0
    stack_shrinkage: float = float("nan")
    shrinkage_cv: pd.DataFrame = field(default_factory=pd.DataFrame)
    covariate_forms: dict = field(default_factory=dict)
    form_cv: pd.DataFrame = field(default_factory=pd.DataFrame)
    point: str = "mean"
    share_scales: pd.DataFrame = field(default_factory=pd.DataFrame)


def spatial_subsample(x, y, *, n: int, seed: int) -> np.ndarray:
    """Positions of a spatially stratified subsample of ``n`` samples (all samples when there are no more).

    The bounding box is cut into about ``n / 4`` squares (strata), the strata are ordered in a
    serpentine (boustrophedon) sweep, the samples by stratum and randomly within it, and every
    ``N / n``-th sample is taken from a random start (systematic sampling of the stratified
    order). Each stratum thus contributes in proportion to its samples (to within one), so the
    subsample keeps the survey's spatial layout and density pattern at a lower density.

    Parameters
    ----------
    x, y : array-like
        Sample coordinates.
    n : int
        Subsample size.
    seed : int
        Seed of the within-stratum order and of the systematic start.

    Returns
    -------
    numpy.ndarray of int
        Sorted positions of the selected samples.

    References
    ----------
    Cochran, W.G. (1977). Sampling Techniques, 3rd ed. Wiley, ch. 8 (systematic sampling of a
    stratified list). ISBN 978-0-471-16240-7.
    """
    xy = _as_xy(x, y)
    n_all = len(xy)
    if n < 1:
        raise ValueError(f"n: expected at least 1, got {n}")
    if n >= n_all:
        return np.arange(n_all)
    lo = xy.min(axis=0)
    ext = np.maximum(xy.max(axis=0) - lo, 1e-12)
    side = float(np.sqrt(ext[0] * ext[1] / max(n / 4.0, 1.0)))
    ij = np.minimum(np.floor((xy - lo) / side).astype(np.int64), np.ceil(ext / side).astype(np.int64))
    ncol = int(ij[:, 0].max()) + 1
    col = np.where(ij[:, 1] % 2 == 0, ij[:, 0], ncol - 1 - ij[:, 0])   # serpentine: neighbouring strata stay adjacent
    key = ij[:, 1] * ncol + col
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n_all), key))
    step = n_all / n
    pos = np.floor(rng.uniform(0, step) + step * np.arange(n)).astype(np.int64)
    return np.sort(order[np.minimum(pos, n_all - 1)])


def _shared_neighbours(models: dict, xy: np.ndarray) -> dict:
    """Nearest samples of the points ``xy`` for every kriging model of ``models`` (ok, rk, sklm, rfk), searched once
    per distinct set of samples, frame (anisotropy) and neighbourhood size: the members of a stacked ensemble
    krige their own residuals at the same sample locations, so they share the search. Method code -> (distances,
    indices) as :func:`local_kriging` takes them; the same arrays each model's own search would give."""
    out, done = {}, []
    for m, model in models.items():
        if model.method not in ("ok", "rk", "sklm", "rfk"):
            continue
        for train, an, k, nb in done:
            if k == model.n_neighbours and an == model.anisotropy and np.array_equal(train, model.train_xy):
                out[m] = nb
                break
        else:
            nb = cKDTree(model.train_xy).query(model._frame(xy), k=int(min(model.n_neighbours, len(model.train_xy))),
                                               workers=2)
            done.append((model.train_xy, model.anisotropy, model.n_neighbours, nb))
            out[m] = nb
    return out


def combine_members(preds: dict, weights: dict, *, log: bool, point: str = "mean") -> pd.DataFrame:
    r"""The stacked ensemble's prediction from its members' predictions.

    With weights :math:`w_m` rescaled to sum to one over the members given, the modelling-scale mean, variance
    and multiplier are :math:`\sum_m w_m\hat y_m`, :math:`\sum_m w_m\sigma^2_m` and :math:`\sum_m w_m\psi_m`,
    back-transformed as in :meth:`SpatialModel.predict` (as :func:`stacked_cv` does for the out-of-fold
    predictions).

    Parameters
    ----------
    preds : method -> DataFrame of :meth:`SpatialModel.predict` (same points).
    weights : method -> stacking weight (:func:`stack_weights`).
    log : modelled on the log scale.
    point : the point prediction ('mean' or 'median').

    Returns
    -------
    DataFrame
        prediction, mean, median, variance, mean_t, sd_t, psi.

    References
    ----------
    Breiman, L. (1996). Stacked regressions. Machine Learning 24, 49-64.
    https://doi.org/10.1007/BF00117832
    """
    members = list(preds)
    wsum = sum(weights[m] for m in members)
    mt = sum(weights[m] / wsum * preds[m]["mean_t"].to_numpy() for m in members)
    vt = sum(weights[m] / wsum * preds[m]["sd_t"].to_numpy() ** 2 for m in members)
    ps = sum(weights[m] / wsum * preds[m]["psi"].to_numpy() for m in members)
    return _back_transform(mt, vt, ps, log=log, point=point)


def _predict_tile(tile: pd.DataFrame, *, models: dict, weights: dict, log: bool, covariate_columns: list,
                  secondary_columns: list, threshold: float, point: str = "mean") -> pd.DataFrame:
    """Grid prediction of one tile: the chosen method (or the stack's members, weighted), back-transform and
    exceedance probability. Pure and deterministic (no random draws), so a tile gives the same numbers in
    any process; :func:`hmlib.parallel.map_tiles` sends it to the Dask workers."""
    xs, ys = tile["x"].to_numpy(float), tile["y"].to_numpy(float)
    cov = (tile[[f"cov:{c}" for c in covariate_columns]].set_axis(covariate_columns, axis=1).reset_index(drop=True)
           if covariate_columns else None)
    sec = (tile[[f"sec:{c}" for c in secondary_columns]].set_axis(secondary_columns, axis=1).reset_index(drop=True)
           if secondary_columns else None)
    preds = {}
    nbrs = _shared_neighbours(models, np.column_stack([xs, ys])) if len(models) > 1 else {}
    for m, model in models.items():
        kw = {"secondary": sec} if m == "ckc" else {}
        preds[m] = model.predict(xs, ys, cov if method_code(m) in ("rk", "sklm", "rfk", "oks") else None, chunk_size=len(tile) + 1,
                                 neighbours=nbrs.get(m), point=point, **kw)
    pr = next(iter(preds.values())) if len(models) == 1 else combine_members(preds, weights, log=log, point=point)
    pr = pr.reset_index(drop=True)
    if np.isfinite(threshold):
        pr["exceedance_probability"] = exceedance_probability(pr["mean_t"], pr["sd_t"], threshold=threshold, log=log)
    else:
        pr["exceedance_probability"] = np.nan
    return pr


def block_size_for(x, y, effective_range: float) -> float:
    """Side of the cross-validation blocks: the variogram's effective range, kept between a sixth and
    half of the longer side of the sampled area (so that there are at least 4 and not too many blocks).

    Parameters
    ----------
    x, y : array-like
        Sample coordinates (projected).
    effective_range : float
        Effective range of the fitted variogram (coordinate unit).

    Returns
    -------
    float
        Block side length in the coordinate unit.
    """
    xy = _as_xy(x, y)
    ext = float((xy.max(axis=0) - xy.min(axis=0)).max())
    r = float(effective_range) if np.isfinite(effective_range) and effective_range > 0 else ext / 4
    return float(np.clip(r * 1.0001, ext / 6, ext / 2))


def _grid_spacing(tree: cKDTree, gxy: np.ndarray) -> float:
    """The grid's spacing: median distance between a cell and its nearest other cell (on at most 20,000 cells)."""
    if len(gxy) < 2:
        return np.inf
    probe = gxy[:: max(1, len(gxy) // 20000)]
    return float(np.median(tree.query(probe, k=2)[0][:, 1]))


def covariates_at_samples(x, y, *, sample_covariates: pd.DataFrame, grid_x, grid_y,
                          grid_covariates: pd.DataFrame) -> pd.DataFrame:
    """The covariates the map has at each sample: those of the grid cell nearest to it.

    A map predicts from the grid's covariates (a land-use or geological map), which near class boundaries can
    disagree with what was recorded at the sample. Cross-validation that predicts held-out samples from these
    values scores the map as it will be used, instead of a map drawn from field records nobody has between
    the samples. A sample farther from its nearest cell than the grid's spacing (outside the mapped area), or
    whose nearest cell lacks a value, keeps its own.

    Parameters
    ----------
    x, y : sample coordinates.
    sample_covariates : covariates recorded at the samples (one row per sample).
    grid_x, grid_y, grid_covariates : the prediction grid and its covariates (the same columns).

    Returns
    -------
    DataFrame
        One row per sample, the columns of ``sample_covariates``.
    """
    sxy, gxy = _as_xy(x, y, "samples"), _as_xy(grid_x, grid_y, "grid")
    own = sample_covariates.reset_index(drop=True)
    if len(own) != len(sxy):
        raise ValueError(f"sample_covariates: expected {len(sxy)} rows (one per sample), got {len(own)}")
    tree = cKDTree(gxy)
    dist, near = tree.query(sxy)
    spacing = _grid_spacing(tree, gxy)
    out = own.copy()
    for c in own.columns:
        mapped = grid_covariates[c].reset_index(drop=True).iloc[near].reset_index(drop=True)
        use = (dist <= spacing) & mapped.notna().to_numpy()
        out[c] = mapped.where(use, own[c])
    return out


#: candidate radii of the map's class shares, in grid spacings (0: the nearest cell alone)
SHARE_RADII = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0)


def class_shares(x, y, *, grid_x, grid_y, grid_classes, levels, radius: float, chunk_size: int = 20000) -> np.ndarray:
    r"""Share of each class of a categorical map among the grid cells within ``radius`` of each point.

    .. math:: p_k(s) = \frac{\#\{g : \lVert g - s \rVert \le r,\ c(g) = k\}}{\#\{g : \lVert g - s \rVert \le r\}}

    over the cells :math:`g` with a class. A point with no such cell within ``radius`` (and every point when
    ``radius`` is 0) takes the class of its nearest cell with one (a share of 1). Cells are searched in chunks of
    ``chunk_size`` points, so memory depends on the chunk, not on the grid.

    Parameters
    ----------
    x, y : points (samples or grid cells).
    grid_x, grid_y, grid_classes : the map: cell coordinates and class (missing where unknown).
    levels : classes reported, in column order; a cell of another class counts in the denominator only.
    radius : search radius, in the coordinates' unit.
    chunk_size : points searched at a time.

    Returns
    -------
    numpy.ndarray, shape (n points, n levels)
    """
    index = _class_index(grid_x, grid_y, grid_classes, levels)
    return _shares_at(index, _as_xy(x, y, "points"), radius=radius, chunk_size=chunk_size)


def _class_index(grid_x, grid_y, grid_classes, levels) -> tuple[cKDTree, np.ndarray, int]:
    """The cells of a categorical map that have a class: their search tree, their class codes (-1: a class not in
    ``levels``) and the number of levels, built once for every search of :func:`_shares_at`."""
    gxy = _as_xy(grid_x, grid_y, "grid")
    cls = pd.Series(grid_classes).reset_index(drop=True)
    have = cls.notna().to_numpy()
    if not have.any():
        raise ValueError("grid_classes: expected at least one grid cell with a class, got none")
    code = pd.Categorical(cls[have].astype(str), categories=[str(v) for v in levels]).codes
    return cKDTree(gxy[have]), code, len(levels)


def _shares_at(index: tuple[cKDTree, np.ndarray, int], pxy: np.ndarray, *, radius: float,
               chunk_size: int = 20000) -> np.ndarray:
    """:func:`class_shares` at the points ``pxy`` from a map's :func:`_class_index`."""
    tree, code, n_levels = index
    n_cells = len(code)
    out = np.zeros((len(pxy), n_levels))
    for s0 in range(0, len(pxy), chunk_size):
        pts = pxy[s0:s0 + chunk_size]
        block = out[s0:s0 + chunk_size]
        counts = (tree.query_ball_point(pts, radius, return_length=True) if radius > 0
                  else np.zeros(len(pts), int))
        lone = counts == 0
        if lone.any():
            c = code[tree.query(pts[lone])[1]]
            rows = np.flatnonzero(lone)[c >= 0]
            block[rows, c[c >= 0]] = 1.0
        if (~lone).any():
            k = max(int(counts.max()), 1)
            idx = tree.query(pts[~lone], k=k, distance_upper_bound=radius * (1 + 1e-9))[1].reshape(-1, k)
            valid = idx < n_cells
            cc = np.where(valid, code[np.minimum(idx, n_cells - 1)], -2)
            n = valid.sum(axis=1)
            block[~lone] = np.column_stack([(cc == j).sum(axis=1) for j in range(n_levels)]) / n[:, None]
    return out


def _brier_table(index, sxy: np.ndarray, recorded: pd.Series, levels, *, spacing: float, radii) -> pd.DataFrame:
    """:func:`share_radius`'s table from a map's :func:`_class_index` and the grid's spacing."""
    ok = recorded.notna().to_numpy()
    rec = recorded[ok].astype(str).to_numpy()
    onehot = (rec[:, None] == np.asarray(levels)[None]).astype(float)
    rows = []
    for m in radii:
        p = _shares_at(index, sxy[ok], radius=float(m) * spacing)
        rows.append({"spacings": float(m), "radius": float(m) * spacing,
                     "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1))),
                     "agreement": float(np.mean(p.argmax(axis=1) == onehot.argmax(axis=1)))})
    out = pd.DataFrame(rows)
    out["chosen"] = np.arange(len(out)) == int(out["brier"].to_numpy().argmin())
    return out


def _levels(recorded: pd.Series, grid_classes: pd.Series) -> list[str]:
    """The classes recorded at the samples or present in the map, sorted."""
    return sorted(set(recorded.dropna().astype(str)) | set(grid_classes.dropna().astype(str)))


def share_radius(x, y, *, recorded, grid_x, grid_y, grid_classes, radii=SHARE_RADII) -> pd.DataFrame:
    r"""How well the map's class shares at the samples predict the class recorded there, per radius.

    The score is the Brier score (Brier 1950) of the shares :math:`p_k` (:func:`class_shares`) as
    probabilities of the recorded class :math:`c`:

    .. math:: B = \frac{1}{n}\sum_{i=1}^{n}\sum_k \left(p_{ik} - [c_i = k]\right)^2

    The radius with the smallest score is the scale at which the map's classes are right on average: where its
    boundaries are misplaced by a few cells, shares over a neighbourhood give the recorded class a better
    probability than the nearest cell does. Only the covariates are used, not the metals.

    Parameters
    ----------
    x, y : sample coordinates.
    recorded : the class recorded at each sample (missing values are left out).
    grid_x, grid_y, grid_classes : the map.
    radii : candidate radii in grid spacings (0: the nearest cell).

    Returns
    -------
    DataFrame
        spacings, radius (coordinates' unit), brier, agreement (share of samples whose most likely class is the
        recorded one) and chosen (the smallest score).

    References
    ----------
    Brier, G.W. (1950). Verification of forecasts expressed in terms of probability. Monthly Weather Review 78,
    1-3. https://doi.org/10.1175/1520-0493(1950)078<0001:VOFEIT>2.0.CO;2
    """
    rec = pd.Series(recorded).reset_index(drop=True)
    gcls = pd.Series(grid_classes).reset_index(drop=True)
    levels = _levels(rec, gcls)
    gxy = _as_xy(grid_x, grid_y, "grid")
    return _brier_table(_class_index(grid_x, grid_y, gcls, levels), _as_xy(x, y, "samples"), rec, levels,
                        spacing=_grid_spacing(cKDTree(gxy), gxy), radii=radii)


def share_column(covariate: str, level) -> str:
    """Name of the column holding the map's share of class ``level`` of ``covariate``.

    Parameters
    ----------
    covariate : name of the categorical covariate.
    level : one of its classes.

    Returns
    -------
    str
    """
    return f"{covariate}{SHARE_OF}{level}"


def map_class_shares(x, y, *, recorded: pd.DataFrame, grid_x, grid_y, grid_covariates: pd.DataFrame,
                     categorical=(), radii=SHARE_RADII, at: tuple | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The map's class shares of every categorical covariate, at the samples and at the grid cells.

    For each categorical covariate the radius is the one whose shares best predict the recorded classes
    (:func:`share_radius`); the shares at the samples and at the grid cells are then taken from the map alike
    (:func:`class_shares`), so that a trend fitted on them predicts the grid from what it was fitted on. A sample
    farther from the grid than its spacing (outside the map) keeps its recorded class (a share of 1).

    Parameters
    ----------
    x, y : sample coordinates.
    recorded : covariates recorded at the samples.
    grid_x, grid_y, grid_covariates : the grid and its covariates (the same columns).
    categorical : names of the categorical covariates (non-numeric columns are categorical too).
    radii : candidate radii in grid spacings.
    at : (x, y) of the points where the map's shares are wanted besides the samples (default: the grid cells),
        for example held-out samples predicted as map points.

    Returns
    -------
    tuple of DataFrame
        Shares at the samples and at the grid cells (or at ``at``), columns :func:`share_column` (one per class),
        and the calibration: :func:`share_radius`'s table with a ``covariate`` column.
    """
    gxy, sxy = _as_xy(grid_x, grid_y, "grid"), _as_xy(x, y, "samples")
    pxy = gxy if at is None else _as_xy(at[0], at[1], "points")
    tree = cKDTree(gxy)
    spacing = _grid_spacing(tree, gxy)
    outside = tree.query(sxy)[0] > spacing
    rec = recorded.reset_index(drop=True)
    s_parts, g_parts, cal = [], [], []
    for c in categorical_columns(rec, categorical):
        gcls = grid_covariates[c].reset_index(drop=True)
        levels = _levels(rec[c], gcls)
        index = _class_index(grid_x, grid_y, gcls, levels)   # one search tree for the calibration and both maps
        tab = _brier_table(index, sxy, rec[c], levels, spacing=spacing, radii=radii)
        r = float(tab.loc[tab["chosen"], "radius"].iloc[0])
        names = [share_column(c, lev) for lev in levels]
        ps = _shares_at(index, sxy, radius=r)
        own = rec[c].astype(str).to_numpy()[:, None] == np.asarray(levels)[None]
        ps = np.where(outside[:, None], own, ps)
        ps[rec[c].isna().to_numpy()] = np.nan
        pg = _shares_at(index, pxy, radius=r)
        s_parts.append(pd.DataFrame(ps, columns=names))
        g_parts.append(pd.DataFrame(pg, columns=names))
        cal.append(tab.assign(covariate=c))
    if not s_parts:
        return pd.DataFrame(index=range(len(sxy))), pd.DataFrame(index=range(len(pxy))), pd.DataFrame()
    return (pd.concat(s_parts, axis=1), pd.concat(g_parts, axis=1),
            pd.concat(cal, ignore_index=True)[["covariate", "spacings", "radius", "brier", "agreement", "chosen"]])


def covariate_agreement(recorded: pd.DataFrame, mapped: pd.DataFrame, *, categorical=()) -> pd.DataFrame:
    """How well the map's covariates at the samples agree with those recorded there.

    Parameters
    ----------
    recorded : covariates recorded at the samples.
    mapped : the map's covariates at the same samples (:func:`covariates_at_samples`).
    categorical : names of the categorical covariates (non-numeric columns are treated as categorical too).

    Returns
    -------
    DataFrame
        covariate, kind ('class' or 'value'), n, agreement: the share of samples in the same class (categorical)
        or the Pearson correlation (numeric).
    """
    rows = []
    cats = categorical_columns(recorded, categorical)
    for c in recorded.columns:
        a, b = recorded[c].reset_index(drop=True), mapped[c].reset_index(drop=True)
        ok = a.notna() & b.notna()
        if c in cats:
            agree = float((a[ok].astype(str) == b[ok].astype(str)).mean()) if ok.any() else np.nan
            rows.append({"covariate": c, "kind": "class", "n": int(ok.sum()), "agreement": agree})
        else:
            r = float(np.corrcoef(a[ok].astype(float), b[ok].astype(float))[0, 1]) if ok.sum() > 2 else np.nan
            rows.append({"covariate": c, "kind": "value", "n": int(ok.sum()), "agreement": r})
    return pd.DataFrame(rows, columns=["covariate", "kind", "n", "agreement"])


def covariate_agreement_text(agreement: pd.DataFrame, *, labels: dict | None = None) -> str:
    """Sentence on how the map's covariates at the samples agree with those recorded there (empty without them).

    Parameters
    ----------
    agreement : output of :func:`covariate_agreement`.
    labels : covariate -> name for the reader.

    Returns
    -------
    str
        One to three sentences (pandoc markdown), or an empty string.
    """
    if agreement is None or agreement.empty:
        return ""
    from .descriptive import _and

    labels = labels or {}
    cls = [(labels.get(r.covariate, r.covariate), 100 * r.agreement) for r in agreement.itertuples()
           if r.kind == "class" and np.isfinite(r.agreement)]
    num = [f"{labels.get(r.covariate, r.covariate)} (correlation {r.agreement:.2f})"
           for r in agreement.itertuples() if r.kind == "value" and np.isfinite(r.agreement)]
    txt = ("In cross-validation each held-out sample was predicted from the covariates of the map at its place (the "
           "nearest grid cell), as the map predicts, not from those recorded at the sample, so the scores are the "
           "map's.")
    if cls:
        parts = [f"{cls[0][0]} is the one recorded at {cls[0][1]:.0f} % of the samples"]
        parts += [f"its {lab} at {pct:.0f} %" for lab, pct in cls[1:]]
        txt += f" The map's {_and(parts)}."
    if num:
        txt += f" The map's numeric covariates follow the recorded values: {_and(num)}."
    return txt


def class_share_text(calibration: pd.DataFrame, *, forms: pd.DataFrame | None = None, labels: dict | None = None,
                     coordinate_unit: str = "", share_kriging: bool = False) -> str:
    """Sentences on the map's class shares offered to regression kriging and the random forest (empty without them).

    Parameters
    ----------
    calibration : the calibration table of :func:`map_class_shares`.
    forms : per metal and method, the form of the covariates chosen (concatenated ``MetalMap.form_cv``).
    labels : covariate -> name for the reader.
    coordinate_unit : unit of the coordinates (and of the radii).
    share_kriging : kriging in space and class shares was a candidate (it uses the same shares).

    Returns
    -------
    str
        Two or three sentences (pandoc markdown), or an empty string.
    """
    if calibration is None or calibration.empty:
        return ""
    from .descriptive import _and

    labels = labels or {}
    unit = f" {coordinate_unit}" if coordinate_unit else ""
    uses, scores, base = [], [], []
    for c, tab in calibration.groupby("covariate", sort=False):
        lab = labels.get(c, c)
        ch = tab[tab["chosen"]].iloc[0]
        nearest = tab.loc[tab["spacings"] == 0, "brier"]
        if ch["radius"] > 0:
            uses.append(f"the share of each {lab} class within {ch['radius']:.3g}{unit}")
            if len(nearest):
                scores.append(f"{ch['brier']:.2f} for {lab}")
                base.append(f"{float(nearest.iloc[0]):.2f}")
        else:
            uses.append(f"the {lab} of the nearest cell")
    txt = (" Regression kriging and the random forest were also scored with the map's classes replaced by "
           f"{_and(uses)} around each sample and grid cell, fitted and predicting alike from the map, and each uses "
           "the form with the smaller cross-validated error.")
    txt += (" Each radius is the one at which the map's shares best predict the classes recorded at the samples "
            f"(Brier score{'s' if len(scores) > 1 else ''} {_and(scores)}, against {_and(base)} with the nearest "
            "cell's class)." if scores else
            " The nearest cell's class predicted the classes recorded at the samples better than shares over a wider "
            "radius.")
    if forms is not None and not forms.empty:
        ch = forms[forms["chosen"]]
        parts = []
        for m, name in (("rfk", "the random forest"), ("rk", "regression kriging")):
            metals = ch.loc[(ch["method"] == m) & (ch["form"] == "shares"), "metal"].tolist()
            if metals:
                every = len(metals) > 1 and len(metals) == int((ch["method"] == m).sum())
                parts.append(f"by {name} for {'every metal' if every else _and(metals)}")
        txt += (f" The shares were used {_and(parts)}, the classes elsewhere." if parts else
                " The classes did better for every metal and were used.")
    if share_kriging:
        txt += " The same shares are the extra coordinates of kriging in space and mapped class shares."
    return txt


def map_metal(metal: str, *, x, y, values, grid_x, grid_y, sample_covariates: pd.DataFrame | None = None,
              grid_covariates: pd.DataFrame | None = None, sample_map_covariates: pd.DataFrame | None = None,
              sample_shares: pd.DataFrame | None = None, grid_shares: pd.DataFrame | None = None,
              categorical=(), secondary: pd.DataFrame | None = None,
              grid_secondary: pd.DataFrame | None = None, methods=DEFAULT_METHODS,
              log_mode: str = "auto", skew_threshold: float = 1.0, models=VARIOGRAM_MODELS,
              weights: str = "npairs_h2", anisotropy: str = "auto", anisotropy_min_ratio: float = 1.5,
              n_lags: int = 15, max_lag_fraction: float = 0.5, n_neighbours: int = 32, scheme: str = "kfold",
              n_folds: int = 10, block_cv: bool = True, n_block_folds: int = 5, rf_trees: int = 60, collocated_check: bool = True,
              threshold: float | None = None, seed: int = 0, progress: Callable | None = None,
              chunk_size: int = 20000, cv_max_n: int | None = 1000, scheduler: str | None = None,
              variogram_sample: int = 2000, stack_min_weight: float = 1e-3,
              stack_shrink_grid=STACK_SHRINKAGE, point: str = "median") -> MetalMap:
    """Variograms, cross-validation of ``methods``, choice, prediction and exceedance: one metal.

    Every method is scored by k-fold (or leave-one-out) cross-validation and, with
    ``block_cv``, by spatial-block cross-validation (blocks of :func:`block_size_for`); every
    fold refits the whole method. The stacked ensemble (``stack``) combines the other methods
    with out-of-fold weights (:func:`stacked_cv`), shrunk towards ordinary kriging by the amount of
    ``stack_shrink_grid`` that gives the smallest out-of-fold error averaged over the schemes
    (:func:`stack_shrinkage`); it is mapped when its MAE relative to ordinary kriging's, averaged over the
    schemes, is below one (:func:`select_method`, ``ensemble_rule='mean_ratio'``). Otherwise the chosen
    method is the simplest within one
    standard error of the best by the per-sample absolute error averaged over the schemes
    (:func:`select_method`); its advantage over ordinary kriging is reported with a paired
    bootstrap interval (:func:`ratio_interval`). Only methods that beat ordinary kriging by more than one
    standard error of the paired per-sample differences under every scheme compete with it. Methods that need covariates (rk, sklm) or
    correlated secondary metals (ck) are dropped when there are none; samples with a missing
    value of the metal or of a covariate are left out. With ``collocated_check`` cokriging is
    also scored with the held-out samples' secondary metals known (``ckc``); it is chosen for the
    map only when ``grid_secondary`` gives the secondary metals at every grid cell.

    Cost. Above ``cv_max_n`` samples every cross-validation (scale, anisotropy, methods) runs on a
    spatially stratified subsample of ``cv_max_n`` samples (:func:`spatial_subsample`), so its cost
    stays bounded; the variograms and the maps use all samples. The grid is predicted in tiles of
    ``chunk_size`` cells through :func:`hmlib.parallel.map_tiles` (on a Dask cluster when
    ``scheduler`` or ``HMLIB_SCHEDULER`` names one), each cell from its ``n_neighbours`` nearest
    samples, so working memory depends on the tile, not on the grid. In a tile the members of a stacked ensemble
    that krige the same samples share one neighbour search (:func:`_shared_neighbours`), members with a stacking
    weight of at most ``stack_min_weight`` are not predicted, and the kriging systems are assembled and solved by
    compiled loops (:func:`local_kriging`, ``compiled``). Ordinary kriging's k-fold cross-validation is run once
    for the scale check, the anisotropy check and the scoring of the methods, which ask for the same one.

    Parameters
    ----------
    metal : metal symbol.
    x, y, values : samples (original scale).
    grid_x, grid_y : prediction points.
    sample_covariates, grid_covariates : trend covariates at the samples and the grid.
    sample_map_covariates : the grid's covariates at the samples (:func:`covariates_at_samples`); with them the
        cross-validation predicts each held-out sample from the covariates the map has there, so that the scores,
        the choice and the stacking weights are those of the map. The models are fitted on ``sample_covariates``.
    sample_shares, grid_shares : the map's class shares of the categorical covariates at the samples and at the
        grid cells (:func:`map_class_shares`); when given, regression kriging and the random forest are each
        cross-validated with the classes and with the shares in their place (fitted and predicting alike from the
        map), and use the form with the smaller MAE averaged over the schemes (simple kriging with local means keeps
        the classes). With them, ``'oks'`` in ``methods`` offers kriging in space and class shares once per
        categorical covariate, as the candidate ``'oks:<covariate>'`` (:func:`method_label`); without them it is
        dropped.
    categorical : names of categorical covariates.
    secondary, grid_secondary : other metals at the samples (and, if measured, at the grid).
    methods : methods to compare (codes of :data:`METHOD_LABELS`).
    log_mode, skew_threshold : ``'cv'`` models ln values when ordinary kriging's k-fold MAE of the
        ``point`` prediction is smaller on that scale; ``'auto'``, ``'always'``, ``'never'`` as :func:`choose_log`.
    models, weights, anisotropy, anisotropy_min_ratio, n_lags, max_lag_fraction : variograms; with
        ``anisotropy='auto'`` the anisotropy found by the directional check is used by ordinary kriging
        (refitted in every fold) only when it lowers ordinary kriging's k-fold MAE; the other methods use
        isotropic variograms, their own directional check being untested by cross-validation.
    n_neighbours : kriging neighbourhood.
    scheme, n_folds, block_cv, n_block_folds : cross-validation (random scheme and its folds; spatial
        blocks and their folds).
    rf_trees : trees of the random forest.
    collocated_check : also score collocated cokriging.
    threshold : guideline value for the exceedance probability.
    seed : seed of every random step.
    progress : optional callable(str) told each step (console progress).
    chunk_size : grid points predicted at a time (one tile).
    cv_max_n : largest number of samples cross-validated (None: all).
    scheduler : Dask scheduler address for the grid tiles (default: ``HMLIB_SCHEDULER`` or serial).
    stack_min_weight : members of the stacked ensemble with a weight of at most this are left out of the map (each
        costs a full grid prediction) and the others' weights rescaled to sum to one.
    stack_shrink_grid : candidate shrinkages of the stacked ensemble's weights towards ordinary kriging (0: none;
        1: ordinary kriging alone).
    variogram_sample : above this many samples the experimental and directional variograms (and those of
        every fit) use a seeded random subset of this size (about 2 million pairs for 2,000).
    point : the point prediction that is scored, chosen and mapped: ``'median'`` of the predictive distribution
        (the value that minimises the expected absolute error, the criterion of the choice; Gneiting 2011) or
        its ``'mean'`` (unbiased, for areal averages). They differ only on the log scale, where the median
        exp(y) of the log-scale prediction y lies below the lognormal mean; the grid keeps both.

    Returns
    -------
    MetalMap

    References
    ----------
    Gneiting, T. (2011). Making and evaluating point forecasts. Journal of the American Statistical Association
    106, 746-762. https://doi.org/10.1198/jasa.2011.r10138
    """
    import time
    from functools import partial

    from .parallel import map_tiles

    _check_point(point)
    v = np.asarray(values, float)
    xv, yv = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(v)
    methods = [m for m in methods]
    has_cov = sample_covariates is not None and sample_covariates.shape[1] > 0
    cats = []
    if not has_cov:
        methods = [m for m in methods if m not in ("rk", "sklm")]
    else:
        keep &= sample_covariates.notna().all(axis=1).to_numpy()
        cats = categorical_columns(sample_covariates, categorical)
        if not cats:
            methods = [m for m in methods if m != "sklm"]
    base = [m for m in methods if m != "stack"]
    xv, yv, v = xv[keep], yv[keep], v[keep]
    cov = sample_covariates.loc[keep].reset_index(drop=True) if has_cov else None
    mcov = (sample_map_covariates.reset_index(drop=True).loc[keep, list(cov.columns)].reset_index(drop=True)
            if has_cov and sample_map_covariates is not None else None)
    sec = secondary.loc[keep].reset_index(drop=True) if secondary is not None and secondary.shape[1] else None
    # the share methods' covariates: the numeric covariates and the map's class shares in place of the classes
    use_shares = (has_cov and bool(cats) and sample_shares is not None and sample_shares.shape[1] > 0
                  and grid_shares is not None)
    scov = smcov = None
    if use_shares:
        shr = sample_shares.reset_index(drop=True).loc[keep].reset_index(drop=True)
        if shr.isna().any().any():
            raise ValueError("sample_shares: expected a share of every class at every sample with covariates")
        num = [c for c in cov.columns if c not in cats]
        scov = pd.concat([cov[num], shr], axis=1)
        smcov = pd.concat([(mcov if mcov is not None else cov)[num], shr], axis=1)
    # kriging in space and class shares: one candidate per categorical covariate whose map shares are given
    share_cands: dict[str, list[str]] = {}
    if "oks" in base:
        at = base.index("oks")
        base.remove("oks")
        if use_shares:
            by_covariate = share_groups(shr.columns)
            share_cands = {f"oks{FOR_COVARIATE}{c}": by_covariate[c] for c in cats if c in by_covariate}
            base[at:at] = list(share_cands)
    if not base:
        raise ValueError("methods: expected at least one usable method besides the stacked ensemble")
    # cross-validation on a spatially stratified subsample above cv_max_n samples (bounded cost); maps on all
    cvi = (spatial_subsample(xv, yv, n=int(cv_max_n), seed=seed) if cv_max_n is not None and len(v) > cv_max_n
           else np.arange(len(v)))
    xc, yc, vc = xv[cvi], yv[cvi], v[cvi]
    covc = cov.iloc[cvi].reset_index(drop=True) if cov is not None else None
    mcovc = mcov.iloc[cvi].reset_index(drop=True) if mcov is not None else None
    secc = sec.iloc[cvi].reset_index(drop=True) if sec is not None else None
    scovc = scov.iloc[cvi].reset_index(drop=True) if scov is not None else None
    shrc = shr.iloc[cvi].reset_index(drop=True) if use_shares else None
    smcovc = smcov.iloc[cvi].reset_index(drop=True) if smcov is not None else None
    # ordinary kriging's k-fold cross-validation on a given scale and anisotropy setting, run once: the scale check,
    # the anisotropy check and the scoring of the methods below ask for the same one (same samples, folds, seed and
    # settings, so the same table)
    ok_runs: dict[tuple[bool, str], pd.DataFrame] = {}

    def ok_cv(lg: bool, an: str) -> pd.DataFrame:
        if (lg, an) not in ok_runs:
            ok_runs[(lg, an)] = cross_validate(
                "ok", x=xc, y=yc, values=vc, log=lg, scheme=scheme, n_folds=n_folds, seed=seed, models=models,
                n_lags=n_lags, max_lag_fraction=max_lag_fraction, n_neighbours=n_neighbours, weights=weights,
                anisotropy=an, anisotropy_min_ratio=anisotropy_min_ratio, variogram_sample=int(variogram_sample),
                point=point)
        return ok_runs[(lg, an)]

    scale_cv = {}
    if log_mode == "cv":
        # the modelling scale chosen by ordinary kriging's k-fold MAE (of the point prediction mapped) on both scales
        log = False
        if (v > 0).all():
            for lg in (False, True):
                c = ok_cv(lg, "none")
                scale_cv["ln" if lg else "raw"] = float(np.mean(np.abs(c["observed"] - c["predicted"])))
            log = scale_cv["ln"] < scale_cv["raw"]
    else:
        log = choose_log(v, mode=log_mode, skew_threshold=skew_threshold)
    aniso_cv = {}
    if anisotropy == "auto":
        # geometric anisotropy is kept only when it improves ordinary kriging's k-fold MAE: the directional check
        # on a few hundred samples often finds ratios that are sampling noise
        for a in ("none", "auto"):
            c = ok_cv(log, a)
            aniso_cv["isotropic" if a == "none" else "anisotropic"] = float(np.mean(np.abs(c["observed"] - c["predicted"])))
        if aniso_cv["anisotropic"] >= aniso_cv["isotropic"]:
            anisotropy = "none"
    vt = np.log(v) if log else v
    vs = int(variogram_sample) if len(v) > variogram_sample else None
    ev = experimental_variogram(xv, yv, vt, n_lags=n_lags, max_lag_fraction=max_lag_fraction, sampling_size=vs,
                                seed=seed)
    vf = fit_variogram(ev, models=models, weights=weights)
    dv = directional_variograms(xv, yv, vt, n_lags=n_lags, max_lag_fraction=max_lag_fraction, sampling_size=vs,
                                seed=seed)
    an = anisotropy_summary(dv, vf)
    an_model = (detect_anisotropy(xv, yv, vt, vf, min_ratio=anisotropy_min_ratio, n_lags=n_lags,
                                  max_lag_fraction=max_lag_fraction, sampling_size=vs, seed=seed)
                if anisotropy == "auto" else None)
    sec_names = choose_secondary(vt, sec, skew_threshold=skew_threshold) if sec is not None else []
    if "ck" in base and not sec_names:
        base.remove("ck")
    kw = dict(models=models, n_lags=n_lags, max_lag_fraction=max_lag_fraction, n_neighbours=n_neighbours,
              weights=weights, anisotropy=anisotropy, anisotropy_min_ratio=anisotropy_min_ratio,
              skew_threshold=skew_threshold, variogram_sample=int(variogram_sample))
    bsize = block_size_for(xv, yv, vf.effective_range)
    schemes = {scheme: None}
    if block_cv:
        schemes["block"] = spatial_block_folds(xc, yc, block_size=bsize, n_folds=n_block_folds, seed=seed)
    cvs, rows, secs = [], [], {}

    # the form of the categorical covariates of regression kriging and the forest: the recorded classes, or the map's
    # class shares when given and cross-validation favours them (chosen per method below)
    forms: dict[str, str] = {}

    def args(m, full: bool = False, form: str | None = None):
        a = dict(kw)
        if m in ("rk", "rfk") and use_shares and (form or forms.get(m, "classes")) == "shares":
            # fitted on the map's class shares at the samples and predicting from them: the same as on the grid
            a["covariates"] = scov if full else scovc
            a["categorical"] = ()
            if not full:
                a["predict_covariates"] = smcovc
        elif m in share_cands:
            # the map's shares at the samples, as at the grid cells (fitted and predicting alike from the map)
            a["covariates"] = (shr if full else shrc)[share_cands[m]]
            a["categorical"] = ()
        elif m in ("rk", "sklm", "rfk"):
            a["covariates"] = cov if full else covc
            a["categorical"] = categorical
            if not full and mcovc is not None:
                a["predict_covariates"] = mcovc   # held-out samples predicted from the map's covariates
        if m == "rfk":
            a["rf_trees"] = rf_trees
        if m in ("ck", "ckc"):
            a["secondary"] = (sec if full else secc)[sec_names]
        if m != "ok":
            # the anisotropy check above is ordinary kriging's: the other methods krige their residuals (cokriging
            # its values) isotropically rather than on a directional check of their own that no cross-validation
            # has tested (GPR's Matern kernel is isotropic whatever this says)
            a["anisotropy"] = "none"
        return a

    extra = ["ckc"] if collocated_check and "ck" in base else []
    # the collocated check refits, fold by fold, the cokriging models the k-fold scoring of cokriging has just fitted
    # (same training samples, secondary metals, settings and seed): each fold's model is fitted once and kept for it
    ck_models: dict[tuple, SpatialModel] = {}

    def ck_fit(method, **a):
        key = (method, a["seed"], a["log"], np.asarray(a["x"], float).tobytes(), np.asarray(a["y"], float).tobytes(),
               np.asarray(a["values"], float).tobytes())
        if key not in ck_models:
            ck_models[key] = fit_spatial_model(method, **a)
        return ck_models[key]

    by_scheme: dict[str, dict[str, pd.DataFrame]] = {}
    form_cv: dict[tuple[str, str, str], pd.DataFrame] = {}
    for sname, folds in schemes.items():
        by_scheme[sname] = {}
        for m in base + (extra if sname == scheme else []):
            if progress is not None:
                progress(f"{metal}: {method_label(m)}, {sname} cross-validation")
            t0 = time.perf_counter()
            if m == "ok" and folds is None and (log, anisotropy) in ok_runs:
                c = ok_runs[(log, anisotropy)]   # the same run as the scale or anisotropy check
            elif m in ("rk", "rfk") and use_shares:
                for form in ("classes", "shares"):
                    form_cv[(sname, m, form)] = cross_validate(m, x=xc, y=yc, values=vc, log=log, scheme=scheme,
                                                               n_folds=n_folds, seed=seed, folds=folds, point=point,
                                                               **args(m, form=form))
                c = None
            else:
                c = cross_validate("ck" if m == "ckc" else method_code(m), x=xc, y=yc, values=vc, log=log, scheme=scheme,
                                   n_folds=n_folds, seed=seed, folds=folds, collocated=m == "ckc", point=point,
                                   fit=ck_fit if m in ("ck", "ckc") and folds is None else None, **args(m))
            secs[f"cv_{sname}_{m}"] = time.perf_counter() - t0
            by_scheme[sname][m] = c
    # per method, the form of the categorical covariates with the smaller MAE averaged over the schemes; the other
    # form's scores are kept for the report
    form_rows = []
    for m in sorted({k[1] for k in form_cv}):
        err = {form: float(np.mean([np.mean(np.abs(form_cv[(sn, m, form)]["observed"]
                                                   - form_cv[(sn, m, form)]["predicted"])) for sn in by_scheme]))
               for form in ("classes", "shares")}
        forms[m] = "shares" if err["shares"] < err["classes"] else "classes"
        for sn in by_scheme:
            by_scheme[sn][m] = form_cv[(sn, m, forms[m])]
        form_rows += [{"metal": metal, "method": m, "form": f, "mae": e, "chosen": f == forms[m]}
                      for f, e in err.items()]
    form_table = pd.DataFrame(form_rows, columns=["metal", "method", "form", "mae", "chosen"])
    lam, shrink_tab = float("nan"), pd.DataFrame()
    if "stack" in methods and len(base) > 1:
        # the stack's shrinkage towards OK, chosen on the out-of-fold error averaged over the schemes (no shrinkage
        # without OK among the members)
        lam, shrink_tab = (stack_shrinkage(by_scheme, members=base, log=log, grid=stack_shrink_grid, point=point)
                           if "ok" in base else (0.0, pd.DataFrame()))
        for sname in by_scheme:
            st, _ = stacked_cv({m: by_scheme[sname][m] for m in base}, log=log, shrink=lam, point=point)
            by_scheme[sname]["stack"] = st
    grid_has_secondary = grid_secondary is not None and all(c in grid_secondary.columns for c in sec_names) and \
        len(sec_names) > 0 and grid_secondary[sec_names].notna().all().all()
    for sname, d in by_scheme.items():
        for m, c in d.items():
            cvs.append(c.assign(method=m, scheme=sname))
            rows.append({"metal": metal, "method": m, "scheme": sname, **cv_metrics(c),
                         "selectable": m != "ckc" or grid_has_secondary})
    summ = pd.DataFrame(rows)
    selectable = [m for m in by_scheme[scheme] if m != "ckc" or grid_has_secondary]
    if "ok" in selectable:
        # a single method replaces ordinary kriging only if it is no worse than OK under every scheme; the stacked
        # ensemble, shrunk towards OK, is judged on its error averaged over the schemes (select_method)
        mae = {(m, sn): float(np.mean(np.abs(d[m]["observed"] - d[m]["predicted"])))
               for sn, d in by_scheme.items() for m in d}
        selectable = [m for m in selectable if m in ("ok", "stack") or all(mae[(m, sn)] <= mae[("ok", sn)]
                                                                 for sn in by_scheme if (m, sn) in mae)]
    losses = pd.DataFrame({m: np.mean([np.abs(d[m]["observed"] - d[m]["predicted"]).to_numpy() for d in by_scheme.values()
                                       if m in d], axis=0) for m in selectable})
    sel = select_method(losses, ensemble="stack", ensemble_rule="mean_ratio", scheme_losses={sn: pd.DataFrame({m: np.abs(d[m]["observed"] - d[m]["predicted"]).to_numpy()
                                                                 for m in selectable if m in d})
                                               for sn, d in by_scheme.items()})
    best = sel["chosen"]
    selection = pd.DataFrame({"metal": metal, "method": list(losses.columns),
                              "mean_loss": [sel["mean_loss"][m] for m in losses.columns],
                              "se_to_best": [sel["se_to_best"][m] for m in losses.columns]})
    # within one SE of the best of the methods that beat OK clearly in every scheme (select_method's eligible ones)
    elig = selection["method"].isin(sel["eligible"])
    selection["eligible"] = elig
    selection["within_one_se"] = elig & (selection["mean_loss"] <= selection.loc[elig, "mean_loss"].min()
                                         + selection["se_to_best"])
    selection["chosen"] = selection["method"] == best
    gains = []
    if "ok" in by_scheme[scheme]:
        for i, (sname, d) in enumerate(by_scheme.items()):
            la = np.abs(d[best]["observed"] - d[best]["predicted"]).to_numpy()
            lb = np.abs(d["ok"]["observed"] - d["ok"]["predicted"]).to_numpy()
            r, lo, hi = ratio_interval(la, lb, seed=seed + 17 + i)
            gains.append({"metal": metal, "scheme": sname, "method": best, "ratio_mae_to_ok": r, "ratio_low": lo,
                          "ratio_high": hi})
    gain = pd.DataFrame(gains, columns=["metal", "scheme", "method", "ratio_mae_to_ok", "ratio_low", "ratio_high"])
    # final fit(s) on all samples; grid prediction in tiles (map_tiles: serial, or on the Dask cluster)
    t0 = time.perf_counter()
    gx, gy = np.asarray(grid_x, float), np.asarray(grid_y, float)
    sw = {}
    if best == "stack":
        P = np.column_stack([by_scheme[scheme][m]["mean_t"] for m in base])
        yobs = by_scheme[scheme][base[0]]["observed_t"].to_numpy(float)
        sw = dict(zip(base, stack_weights(P, yobs, shrink=lam, reference=base.index("ok") if "ok" in base else None)))
        members = [m for m in base if sw[m] > stack_min_weight]   # the tiles rescale their weights to sum to one
    else:
        members = [best]
    fitted = {}
    for m in members:
        if progress is not None:
            progress(f"{metal}: {method_label(m)}, fit on all samples")
        fitted[m] = fit_spatial_model("ck" if m == "ckc" else method_code(m), x=xv, y=yv, values=v, log=log, seed=seed,
                                      **args(m, full=True))
    cov_cols = list(cov.columns) if (cov is not None and grid_covariates is not None
                                     and any(m in ("rk", "sklm", "rfk") for m in members)) else []
    grid_cov = grid_covariates.reset_index(drop=True) if cov_cols else None
    if use_shares and (any(forms.get(m) == "shares" for m in members if m in ("rk", "rfk"))
                       or any(m in share_cands for m in members)):
        cov_cols += list(shr.columns)
        grid_cov = pd.concat(([grid_cov] if grid_cov is not None else [])
                             + [grid_shares[list(shr.columns)].reset_index(drop=True)], axis=1)
    sec_cols = list(sec_names) if "ckc" in members else []
    tile_grid = pd.DataFrame({"x": gx, "y": gy})
    if cov_cols:
        tile_grid = pd.concat([tile_grid, grid_cov[cov_cols].add_prefix("cov:")], axis=1)
    if sec_cols:
        tile_grid = pd.concat([tile_grid, grid_secondary[sec_cols].reset_index(drop=True).add_prefix("sec:")], axis=1)
    thr = float(threshold) if threshold is not None and np.isfinite(threshold) else np.nan
    fn = partial(_predict_tile, models=fitted, weights=sw, log=log, covariate_columns=cov_cols,
                 secondary_columns=sec_cols, threshold=thr, point=point)
    pr = map_tiles(fn, tile_grid, tile_rows=int(chunk_size), scheduler=scheduler, desc=f"spatial: {metal} grid tiles")
    del tile_grid
    n_held = int(fitted["rk"].covariates_held(grid_cov).sum()) if "rk" in fitted else 0
    secs[f"predict_{best}"] = time.perf_counter() - t0
    g = pd.DataFrame({"x": gx, "y": gy, "metal": metal, "method": best, "chosen": True})
    g = pd.concat([g, pr.reset_index(drop=True)], axis=1)
    # kriging on the original scale can undershoot below zero between high and low samples; a
    # concentration cannot, so the mapped mean and median are truncated at zero (the exceedance
    # probability of a positive threshold does not change) and the cells are counted for the report
    n_below = 0 if log else int((g["prediction"] < 0).sum())
    if n_below:
        for col in ("prediction", "mean", "median"):
            g[col] = g[col].clip(lower=0.0)
    if np.isfinite(thr):
        shares = area_share_above(g["mean"], g["exceedance_probability"], threshold=thr, median=g["median"])
    else:
        shares = {}
    return MetalMap(metal=metal, log=log, experimental=ev, directional=dv, anisotropy=an, variogram=vf,
                    anisotropy_model=an_model, cv=pd.concat(cvs, ignore_index=True), cv_summary=summ,
                    selection=selection, best=best, gain=gain, stack_weights=sw, secondary=sec_names,
                    block_size=bsize, grid=g, threshold=thr, shares=shares, seconds=secs, scale_cv=scale_cv,
                    anisotropy_cv=aniso_cv, n_samples=int(len(v)), n_cv=int(len(vc)), n_below_zero=n_below,
                    n_covariates_held=n_held, stack_shrinkage=lam, shrinkage_cv=shrink_tab,
                    covariate_forms=dict(forms), form_cv=form_table, point=point,
                    share_scales=pd.DataFrame(
                        [{"metal": metal, "candidate": m, "covariate": method_covariate(m),
                          "range_multiple": (fitted[m].share_scale / fitted[m].variogram.effective_range
                                             if fitted[m].variogram.effective_range > 0 else 0.0),
                          "effective_range": fitted[m].variogram.effective_range, "scale": fitted[m].share_scale}
                         for m in fitted if m in share_cands],
                        columns=["metal", "candidate", "covariate", "range_multiple", "effective_range", "scale"]))


def variogram_figure(mm: MetalMap, *, unit: str, coordinate_unit: str):
    """Omnidirectional variogram with every fitted model (left) and directional variograms (right).

    Parameters
    ----------
    mm : MetalMap
        Mapping result of one metal.
    unit : str
        Concentration unit (axis labels).
    coordinate_unit : str
        Coordinate unit (lag axis label).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6.7, 2.8), sharey=True)   # the text width: no shrinking below 7 pt
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
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"{mm.metal}: omnidirectional")
    ax = axes[1]
    for az, d in mm.directional.groupby("azimuth_deg"):
        ax.plot(d["lag"], d["gamma"], "o-", ms=3, lw=0.9, label=f"{az:.0f}°")
    ax.set_xlabel(f"lag ({coordinate_unit})")
    ax.legend(title="azimuth (ccw from E)", fontsize=7, title_fontsize=7, frameon=False)
    ax.set_title(f"{mm.metal}: directional (±22.5°)")
    fig.tight_layout()
    return fig


def map_figure(mm: MetalMap, *, sample_x, sample_y, sample_values, unit: str, coordinate_unit: str):
    """Prediction (samples overlaid, same colour scale), prediction standard deviation and
    probability of exceeding the guideline value (when one is set), on the grid.

    Parameters
    ----------
    mm : MetalMap
        Mapping result of one metal.
    sample_x, sample_y : array-like
        Sample coordinates.
    sample_values : array-like
        Sample concentrations (original scale).
    unit : str
        Concentration unit (colour bar label).
    coordinate_unit : str
        Coordinate unit (axis labels).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    from .plots import grid_image

    g = mm.grid
    panels = [("prediction", f"{mm.metal} {mm.point} ({unit}), {method_label(mm.best, short=True)}", "viridis"),
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
        r = grid_image(g["x"], g["y"], v)
        if r is not None:
            im = ax.imshow(r[0], extent=r[1], origin="lower", cmap=cmap, norm=norm, interpolation="nearest")
        else:
            im = ax.scatter(g["x"], g["y"], c=v, s=2, cmap=cmap, norm=norm, marker="s", linewidths=0)
        if key == "prediction":
            ax.scatter(sample_x, sample_y, c=sv, cmap=cmap, norm=norm, s=9, edgecolors="k", linewidths=0.4)
        else:
            ax.scatter(sample_x, sample_y, s=2, c="k", linewidths=0)
        if key == "exceedance_probability":
            try:
                if r is not None:
                    ax.contour(r[0], levels=[0.5], colors="k", linewidths=0.7, extent=r[1], origin="lower")
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


def guideline_classes(guideline_set: str | None, threshold_name: str | None, *, medium: str = "soil",
                      unit: str = "mg/kg") -> pd.DataFrame:
    """Per metal, the guideline value mapped (the strictest of the set's classes) and the class it belongs to.

    Guideline sets such as China's GB 15618-2018 give a value per land use and soil-pH class; the
    exceedance maps use one value per metal (:func:`guideline_thresholds`: the smallest), and the
    report must say which class that is.

    Parameters
    ----------
    guideline_set, threshold_name : the set and the threshold mapped (None: an empty table).
    medium, unit : as :func:`guideline_thresholds`.

    Returns
    -------
    DataFrame
        metal, threshold, condition (the class of the strictest value; several joined by "; "),
        n_classes (classes the set distinguishes for the metal), value_min, value_max.
    """
    from .reference import guideline_values

    cols = ["metal", "threshold", "condition", "n_classes", "value_min", "value_max"]
    if not guideline_set or not threshold_name:
        return pd.DataFrame(columns=cols)
    gl = guideline_values(guideline_set, medium=medium, unit=unit)
    gl = gl[gl["threshold_name"] == threshold_name]
    if "condition" not in gl.columns:
        gl = gl.assign(condition="all uses")
    rows = []
    for m, d in gl.groupby("metal", sort=True):
        vmin = float(d["value"].min())
        conds = [str(c) for c in d.loc[d["value"] == vmin, "condition"].fillna("all uses").unique()]
        rows.append({"metal": m, "threshold": vmin, "condition": "; ".join(conds), "n_classes": int(len(d)),
                     "value_min": vmin, "value_max": float(d["value"].max())})
    return pd.DataFrame(rows, columns=cols)


def sample_shares(x, y, values, *, threshold: float, grid_x, grid_y) -> dict:
    """Share of the samples above ``threshold``, raw and weighted by the area each sample represents.

    The area weight of a sample is the number of grid cells whose nearest sample it is (polygonal
    declustering on the prediction grid; Isaaks and Srivastava 1989, ch. 10), so a cluster of samples
    counts for the area it covers rather than for its number.

    Parameters
    ----------
    x, y, values : samples (original scale; missing values are ignored).
    threshold : guideline value.
    grid_x, grid_y : prediction grid (equal-area cells).

    Returns
    -------
    dict
        share_samples (fraction of samples above), share_samples_area (area-weighted fraction).

    References
    ----------
    Isaaks, E.H. and Srivastava, R.M. (1989). An Introduction to Applied Geostatistics. Oxford
    University Press. ISBN 978-0-19-505013-4.
    """
    xy = _as_xy(x, y)
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    xy, v = xy[ok], v[ok]
    if not len(v):
        return {"share_samples": np.nan, "share_samples_area": np.nan}
    g = _as_xy(grid_x, grid_y, "grid")
    _, near = cKDTree(xy).query(g, k=1, workers=2)
    w = np.bincount(near, minlength=len(v)).astype(float)
    above = v > threshold
    return {"share_samples": float(above.mean()), "share_samples_area": float(w[above].sum() / w.sum())}


def _where(x, y, mask) -> str:
    """Compass position ("north-east", "centre"...) of the cells in ``mask`` relative to the grid's centre."""
    x, y, mask = np.asarray(x, float), np.asarray(y, float), np.asarray(mask, bool)
    if not mask.any():
        return ""
    cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    dx, dy = (x[mask].mean() - cx) / max(np.ptp(x), 1e-12), (y[mask].mean() - cy) / max(np.ptp(y), 1e-12)
    ns = "north" if dy > 0.1 else "south" if dy < -0.1 else ""
    ew = "east" if dx > 0.1 else "west" if dx < -0.1 else ""
    return f"{ns}-{ew}" if ns and ew else (ns or ew or "centre")


GRID_MAP_KINDS = ("prediction", "sd", "probability")


def grid_maps_figure(maps: dict, *, kind: str, unit: str, crs: str | None, coordinate_unit: str,
                     samples: pd.DataFrame | None = None):
    """Small multiples of one grid quantity for every metal, laid out for the region's shape.

    Each panel has its own colour bar; the first carries a scale bar, a north arrow and the
    coordinate-system note (:func:`hmlib.plots.decorate_map`). A metal whose panel would read as one
    colour (for probabilities: below 0.25, or above 0.75, in all but 0.5 % of the cells) is left out
    and named in the returned dict instead.

    Parameters
    ----------
    maps : metal -> :class:`MetalMap`.
    kind : ``"prediction"`` (the mapped value, the median or the mean of each cell's predictive distribution as
        :attr:`MetalMap.point` says; log colour scale for log-modelled metals, samples drawn as dots on the same
        scale), ``"sd"`` (prediction standard deviation) or ``"probability"`` (probability of exceeding the
        guideline value, 0-1, with the 0.5 contour).
    unit : concentration unit.
    crs, coordinate_unit : coordinate system (``"local"`` for a local grid) and unit.
    samples : x, y and one column per metal (the sample values), for ``kind="prediction"``.

    Returns
    -------
    (Figure or None, dict)
        The figure (None when every panel would be uniform) and metal -> why it was left out.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    from .plots import MIN_FONT_PT, PRINT_RC, _log_colorbar, decorate_map, grid_image, map_axes, print_style

    if kind not in GRID_MAP_KINDS:
        raise ValueError(f"kind: expected one of {', '.join(GRID_MAP_KINDS)}, got {kind!r}")
    left_out, panels = {}, []
    for m, mm in maps.items():
        g = mm.grid
        if kind == "probability":
            if not np.isfinite(mm.threshold):
                continue
            p = g["exceedance_probability"].to_numpy(float)
            # a panel that would read as one colour is a sentence instead: (nearly) every cell far from even odds
            low, high = float(np.nanmean(p > 0.25)), float(np.nanmean(p < 0.75))
            if np.nanmax(p) < 0.01:
                left_out[m] = f"the probability of exceeding {mm.threshold:g} {unit} is below 0.01 in every cell"
                continue
            if low < 0.005:
                left_out[m] = (f"the probability of exceeding {mm.threshold:g} {unit} is below 0.25 in "
                               + ("every cell" if low == 0 else f"all but {100 * low:.1g} % of the cells")
                               + f" (at most {np.nanmax(p):.2f})")
                continue
            if np.nanmin(p) > 0.99:
                left_out[m] = f"the probability of exceeding {mm.threshold:g} {unit} is above 0.99 in every cell"
                continue
            if high < 0.005:
                left_out[m] = (f"the probability of exceeding {mm.threshold:g} {unit} is above 0.75 in "
                               + ("every cell" if high == 0 else f"all but {100 * high:.1g} % of the cells")
                               + f" (at least {np.nanmin(p):.2f})")
                continue
            panels.append((m, p, f"{m}: P(> {mm.threshold:g} {unit})"))
        elif kind == "sd":
            panels.append((m, np.sqrt(g["variance"].to_numpy(float)), f"{m}: SD ({unit})"))
        else:
            panels.append((m, g["prediction"].to_numpy(float), f"{m}: {mm.point} ({unit})"))
    if not panels:
        return None, left_out
    g0 = next(iter(maps.values())).grid
    gx, gy = g0["x"].to_numpy(float), g0["y"].to_numpy(float)
    with print_style():
        fig, axes = map_axes(len(panels), x=gx, y=gy)
        for ax, (m, v, title) in zip(axes, panels):
            mm = maps[m]
            sv = None
            if kind == "prediction" and samples is not None and m in samples.columns:
                sv = samples[m].to_numpy(float)
            if kind == "probability":
                norm, cmap = Normalize(0.0, 1.0), "RdYlBu_r"
            else:
                allv = v[np.isfinite(v)] if sv is None else np.r_[v[np.isfinite(v)], sv[np.isfinite(sv)]]
                lo, hi = float(allv.min()), float(allv.max())
                if hi <= lo:
                    hi = lo + 1e-9
                log = kind == "prediction" and mm.log and lo > 0
                norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
                cmap = "viridis" if kind == "prediction" else "magma_r"
            r = grid_image(gx, gy, v)
            if r is not None:
                im = ax.imshow(r[0], extent=r[1], origin="lower", cmap=cmap, norm=norm, interpolation="nearest")
            else:
                im = ax.scatter(gx, gy, c=v, s=2, cmap=cmap, norm=norm, marker="s", linewidths=0)
            if sv is not None:
                ok = np.isfinite(sv)
                ax.scatter(samples["x"].to_numpy(float)[ok], samples["y"].to_numpy(float)[ok], c=sv[ok], cmap=cmap,
                           norm=norm, s=float(np.clip(600 / max(ok.sum(), 1), 0.3, 6)), edgecolors="k",
                           linewidths=0.2)
            if kind == "probability" and r is not None and np.nanmin(v) < 0.5 < np.nanmax(v):
                ax.contour(r[0], levels=[0.5], colors="k", linewidths=0.6, extent=r[1], origin="lower")
            ax.set_title(title, fontsize=PRINT_RC["axes.titlesize"])
            cb = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.03)
            cb.ax.tick_params(labelsize=MIN_FONT_PT)
            if isinstance(norm, LogNorm):
                _log_colorbar(cb)
        decorate_map(axes[0], crs=crs, coordinate_unit=coordinate_unit)
        fig.tight_layout(rect=(0, 0.035, 1, 1))
    plt.close(fig)
    return fig, left_out


def methods_text(*, methods, log_mode: str, skew_threshold: float, models, weights: str, anisotropy: str,
                 anisotropy_min_ratio: float, n_neighbours: int, scheme: str, n_folds: int, block_cv: bool,
                 guideline_set: str | None, threshold_name: str | None, drift_covariates, secondary: dict,
                 crs: str, n_samples: int | None = None, cv_max_n: int | None = None,
                 classes: pd.DataFrame | None = None, guideline_label: str | None = None,
                 map_covariates: bool = False, class_shares: bool = False, point: str = "mean") -> str:
    """Methods text (pandoc markdown with math and citations) for the report.

    Parameters
    ----------
    methods : method codes compared.
    log_mode, skew_threshold : log rule.
    models, weights, anisotropy, anisotropy_min_ratio : variogram choices.
    n_neighbours : kriging neighbourhood.
    scheme, n_folds, block_cv : cross-validation.
    guideline_set, threshold_name : the exceedance threshold (None: none).
    drift_covariates : trend covariates.
    secondary : metal -> secondary metals of cokriging.
    crs : the region's CRS ('local' for none).
    n_samples, cv_max_n : samples mapped and the largest number cross-validated (a stratified subsample above).
    classes : output of :func:`guideline_classes` (the class of each mapped guideline value).
    guideline_label : the guideline set as the reader should see it (default: ``guideline_set``).
    map_covariates : held-out samples were predicted from the grid's covariates at them
        (:func:`covariates_at_samples`).
    class_shares : regression kriging and the random forest use the map's class shares (:func:`map_class_shares`).
    point : the value mapped, scored and chosen by ('median' or 'mean'; :func:`map_metal`).

    Returns
    -------
    str
    """
    _check_point(point)
    gname = guideline_label or guideline_set
    cv = "leave-one-out" if scheme == "loo" else f"{n_folds}-fold (seeded random partition)"
    meth = "; ".join(METHOD_LABELS[m] for m in methods)
    meth = meth[:1].upper() + meth[1:]
    model_names = ", ".join({"gaussian": "Gaussian", "matern": "Matérn"}.get(m, m) for m in models)
    drift = ", ".join(drift_covariates) if drift_covariates else "none"
    logtxt = {"cv": "on natural-log values when ordinary kriging's cross-validated mean absolute error (of the "
                    f"back-transformed {point}) is smaller on that scale than on the original one, else on the original "
                    "values (the scale per metal is in the variogram table)",
              "auto": f"on natural-log values when the sample skewness exceeds {skew_threshold:g}",
              "always": "on natural-log values", "never": "on the original values"}[log_mode]
    wtxt = {"npairs_h2": "weights $N(h_j)/h_j^2$ (the default of the gstat package, its fitting method 7 "
                         "[@pebesma2004gstat]; an empirical choice, not the weights of @cressie1985)",
            "cressie": "the weights $N(h_j)/\\gamma(h_j;\\theta)^2$ of @cressie1985 (gstat's fitting method 2), "
                       "iterated because they depend on the fitted model",
            "npairs": "weights $N(h_j)$ (gstat's fitting method 1 [@pebesma2004gstat])"}[weights]
    antxt = (f"When the ratio of the longest directional range to the range at right angles reaches "
             f"{anisotropy_min_ratio:g}, the interpolation uses a geometric anisotropy: coordinates are rotated to the "
             "direction of the longest range and stretched across it by the ratio, and the variogram is refitted in "
             "that frame [@webster2007]. Because directional variograms from a few hundred samples are noisy, the anisotropy is "
             "kept for a metal only when it lowers ordinary kriging's cross-validated error; the check is then repeated in "
             "every fold. The anisotropy applies to ordinary kriging; the other methods use isotropic variograms, "
             "because only ordinary kriging's anisotropy is checked by cross-validation."
             if anisotropy == "auto" else "The interpolation uses isotropic models.")
    gpr_txt = (" Gaussian process regression (GPR) [@rasmussen2006] models the values as a Gaussian process on the "
               "coordinates with a Matérn covariance of smoothness 3/2 plus a nugget, whose parameters maximise the "
               "marginal likelihood of the samples (rather than a least-squares fit to the binned semivariances); "
               "its prediction is the posterior mean, i.e. simple kriging around the sample mean with that "
               "covariance." if "gpr" in methods else "")
    gpr_sk = " and GPR" if "gpr" in methods else ""
    oks_txt = (" Kriging in space and mapped class shares takes the map's shares of the classes of one categorical "
               "covariate around each point ($p$, defined below) as further coordinates: the distance between two "
               "points is $d_{ij} = \\sqrt{\\lVert x_i-x_j\\rVert^2 + \\lambda^2\\lVert p_i-p_j\\rVert^2}$, so "
               "that samples in the same mapped unit count as nearer than samples as far away in another unit, and "
               "ordinary kriging is solved with these distances: a Gaussian process with one covariance on the joint "
               "inputs [@rasmussen2006]. Its variogram is exponential, fitted in space, a valid covariance in any "
               "number of dimensions, with its nugget and sill multiplied by the mean standardised squared error of the "
               "cross-validation that chooses $\\lambda$ (below), so that the kriging variance matches the errors "
               "there [@oliver2014]; the weights, and so the predictions, do not change. $\\lambda = 0$ is ordinary "
               "kriging and a large $\\lambda$ kriging within each "
               "mapped unit, a stratification [@goovaerts1997]; $\\lambda$ is chosen among 0, ¼, ½, 1 and 2 times the "
               "variogram's effective range by 10-fold cross-validation within the training samples. There is one "
               "such candidate per categorical covariate." if "oks" in methods else "")
    by_rank: dict[int, list[str]] = {}   # the one-standard-error rule's order; ties joined by "and"
    for m in methods:
        by_rank.setdefault(METHOD_COMPLEXITY[m], []).append({"rfk": "random forest"}.get(m, METHOD_SHORT[m]))
    order = ", ".join(" and ".join(v) for _, v in sorted(by_rank.items()))
    sec = "; ".join(f"{m} with {', '.join(s)}" for m, s in secondary.items() if s) or "none (no metal correlated enough)"
    crs_txt = ("The coordinates are in a local system (no EPSG code), so the GeoTIFF and GeoPackage files carry "
               "no CRS; in QGIS set the layer CRS to none / unknown." if crs == "local" else
               f"The GeoTIFF and GeoPackage files carry the region's CRS ({crs}).")
    cls_txt = ""
    if classes is not None and len(classes):
        multi = classes[classes["n_classes"] > 1]
        if len(multi):
            cls_txt = (" The set gives different values by land use or soil class; one value per metal is mapped, the "
                       "strictest: " + "; ".join(f"{r.metal} {r.threshold:g} (class: {r.condition}; the set's values "
                                                  f"range {r.value_min:g}-{r.value_max:g})" for r in multi.itertuples())
                       + ". Where a cell belongs to a less strict class, its map overstates the exceedance.")
        else:
            conds = sorted(set(classes["condition"]))
            cls_txt = f" The set gives one value per metal ({'; '.join(conds)})."
    thr = (f"Exceedance is mapped against the {threshold_name} value of {gname}.{cls_txt} The probability that a "
           "cell exceeds it is $P(Z>t) = 1-\\Phi\\left((g(t)-\\hat y)/\\sigma\\right)$, "
           "with $g$ the log or identity, $\\hat y$ and $\\sigma$ the prediction and its standard error on the "
           "modelling scale (multi-Gaussian approach [@goovaerts1997]). The share of the area above the value is "
           "reported as the mean probability over the cells (the expected share, the headline figure) and as the "
           "share of cells whose median prediction exceeds it (equal to the share with probability above 0.5). The "
           + ("share of cells whose mean prediction exceeds the value is larger for log-modelled metals (the mean lies "
              "above the median) and is given only for comparison. " if point == "median" else
              "mapped prediction is the mean; for log-modelled metals it lies above the median, so the share of cells "
              "whose mean exceeds the value is larger and is given only for comparison. ")
           + "The share of the samples above the "
           "value is given raw and weighted by the area each sample represents (the grid cells nearest to it) "
           "[@isaaks1989]."
           if guideline_set and threshold_name else "No guideline threshold is selected, so no exceedance map is drawn.")
    sub = ""
    if cv_max_n is not None and n_samples is not None and n_samples > cv_max_n:
        sub = (f" With {n_samples:,} samples, the cross-validation ran on a spatially stratified subsample of "
               f"{cv_max_n:,} (squares of about four samples each, every square contributing in proportion to its "
               "samples) so that its cost does not grow with the survey; the variograms and maps use all samples. "
               "Errors from the sparser subsample overstate those of the full-density map; they serve to compare "
               "the methods.")
    mcov = (" A held-out sample is predicted from the covariates of the grid cell nearest to it, the values the map "
            "uses there, while the models are fitted on the values recorded at the training samples: where the "
            "covariate map and the field records disagree, the score includes the error this causes in the map."
            if map_covariates else "")
    if class_shares:
        mcov += (" Regression kriging and the random forest are also scored with each categorical covariate replaced "
                 "by the map's share of each of its classes around the point, $p_k(s) = \\#\\{g: \\lVert g-s\\rVert \\le r,\\ c(g)=k\\}"
                 "/\\#\\{g: \\lVert g-s\\rVert \\le r\\}$ over the grid cells $g$ with a class, computed alike at the "
                 "samples and at the grid cells: they are fitted on what the map shows, the only values available "
                 "between the samples, so they learn how reliable its classes are. The radius $r$ (0, 1, 1.5, 2, 3 or 4 "
                 "grid spacings; 0: the nearest cell alone) is the one whose shares, taken as probabilities of the "
                 "class recorded at the samples, have the smallest Brier score [@brier1950]; it uses the covariates "
                 "only, not the metals. Each of the two methods uses, per metal, the form (classes or shares) with "
                 "the smaller mean absolute error averaged over the schemes; simple kriging with local means keeps "
                 "the classes.")
    point_txt = ("The value mapped, scored and compared between the methods is the median of each cell's predictive "
                 "distribution: it minimises the expected absolute error, the criterion of the choice [@gneiting2011]. "
                 "For a metal modelled on the log scale it lies below the mean, which is unbiased but, the distribution "
                 "being skewed, has a larger expected absolute error; on the original scale the two coincide. The grid "
                 "prediction files give both."
                 if point == "median" else
                 "The value mapped, scored and compared between the methods is the mean of each cell's predictive "
                 "distribution; the grid prediction files also give the median.")
    blk = (" and by spatial-block cross-validation, in which square blocks with a side of about the variogram's "
           "effective range are held out whole, so that a held-out sample has no close neighbour in the training "
           "set and the score reflects prediction at new places [@roberts2017cv]" if block_cv else "")
    return f"""
**Variograms.** For each metal, modelled {logtxt}, the experimental semivariogram
$\\hat\\gamma(h) = \\frac{{1}}{{2N(h)}}\\sum (z_i - z_j)^2$ [@matheron1963] was computed with lags at the mean
distance of the pairs in each bin (as gstat), and the {model_names} models (with nugget) were fitted by weighted
least squares with {wtxt}. The model kept minimises $m\\ln(\\mathrm{{WSS}}/m) + 2p$ over the $m$ lag bins, so that
the Matérn model's extra smoothness parameter ($p = 4$ against 3) must pay for itself. Directional variograms
(azimuths 0, 45, 90 and 135° counter-clockwise from east, tolerance ±22.5°) check for anisotropy. {antxt}

**Candidate methods.** {meth}. Ordinary kriging (OK) solves
$\\sum_j \\lambda_j C(x_i-x_j) + \\mu = C(x_i-x_0)$, $\\sum_j\\lambda_j = 1$ in a moving neighbourhood of the
{n_neighbours} nearest samples [@webster2007]. Regression kriging (RK) adds an ordinary-least-squares trend on the
grid covariates ({drift}) and kriges its residuals with their own variogram; it predicts as kriging with external drift
[@hengl2007]. Its trend is not extrapolated: a numeric covariate outside its range at the samples is taken at the
nearer end of that range [@phillips2008maxent], and a class's share above the largest share of that class at any
sample is cut to it and the rest given to the most common class, so that a class the samples barely touch weighs no
more at a grid cell than at the samples. Simple kriging with varying local means (SKlm) takes as local mean the mean of
the sample's class in the categorical covariate that explains most variance, and simple-kriges the residuals [@goovaerts1997]. Ordinary
cokriging uses the metals most correlated with the target (absolute Pearson correlation at least 0.5 on the
modelling scale, at most two: {sec}), rescaled to the target's mean and variance, with one unbiasedness constraint
and a linear model of coregionalisation (nugget plus the target's variogram structure) fitted by the algorithm of
@goulard1992; with a Gaussian structure every combination of the metals keeps a nugget of at least 5 % of its
parts' sills, without which the cokriging systems are ill-conditioned [@posa1989]. The secondary metals are measured
at the samples only, so at a grid cell cokriging uses them at the neighbouring samples. Its score with the held-out sample's secondary metals known (collocated cokriging) is shown for
information: the grid has no metal values, so it cannot map. The random forest [@breiman2001rf] uses the covariates
and coordinates projected on six oblique axes [@moller2020oblique]; its out-of-bag residuals are kriged and added
[@hengl2018rfsp].{gpr_txt}{oks_txt} The stacked ensemble averages the methods with non-negative weights summing to one that minimise
the out-of-fold squared error [@breiman1996stacking], shrunk towards OK as described below. On the log scale, predictions are back-transformed to the mean
as $\\hat z = \\exp(\\hat y + \\sigma^2/2 - \\psi)$, with $\\psi$ the Lagrange multiplier of the (residual) ordinary
kriging or cokriging system and 0 for simple kriging{gpr_sk} [@journel1980]; the median is $\\exp(\\hat y)$.
{point_txt}

**Cross-validation and choice.** Each method was assessed by {cv} cross-validation{blk}; the variogram, anisotropy,
trend, forest and coregionalisation are refitted on the training samples of every fold, so no held-out value informs
its own prediction.{mcov} We report the mean absolute error (MAE) and root mean squared error (RMSE) of the {point}
prediction on the concentration scale and the mean standardised squared error
$\\mathrm{{MSSE}} = \\frac1n\\sum (y_i - \\hat y_i)^2/\\sigma_i^2$ on the modelling scale (ideally 1) [@oliver2014].
Only methods whose mean absolute error is below OK's by more than one standard error of the paired per-sample
differences under every scheme compete with OK, so that a gain must hold between samples and in new places and not be
the noise of one partition [@cawley2010]; the method mapped for
each metal is the simplest of them (in the order {order}) whose mean absolute
error, averaged over the schemes, is within one standard error of the best, the standard error
being that of the paired per-sample differences [@hastie2009esl]: a more complex method must beat the simpler ones by
more than the noise of the estimate. The stacked ensemble is the exception: it does not replace OK but combines the
other methods with it, and a cross-validated combination does asymptotically as well as the best one
[@vanderlaan2007superlearner]. Its weights, fitted on a few hundred samples, are noisy, so they are shrunk towards OK
by the share (0, 0.25, 0.5, 0.75 or 1; a share of 1 is OK itself) whose out-of-fold mean absolute error relative to
OK's, averaged over the schemes, is smallest; the ensemble is mapped whenever that averaged ratio is below one. Its
error relative to OK is given with a 95 % paired bootstrap interval; because the choice and the score use the same
folds, the chosen method's advantage is slightly optimistic. How the whole choice (scale, method, covariate form,
weights and shrinkage) predicts new places was measured outside this report, by nested cross-validation on two
public data sets: every tenth of the samples was predicted by a map chosen again on the other nine tenths. Its
mean absolute error was 0.946 of that of OK on the original values with an isotropic variogram on the Swiss Jura data
(median over the 7 metals, mean over 6 repeats; Pb, Cu and Cd 0.90 to 0.92, Ni 0.95, Cr, Zn and Co 0.97 to 0.99, no
metal above 1.02 in any repeat) and 0.764 on the Meuse floodplain data (4 metals, 5 repeats).{sub}

**Exceedance.** {thr}

**Files.** Per metal, a GeoTIFF (bands: mean, median, variance, exceedance probability) and one GeoPackage
with the grid predictions and the sample hotspot classes are written under `files/`. {crs_txt}
"""


def variogram_tables(maps: dict[str, MetalMap], *, coordinate_unit: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tables of the variogram analysis of several metals.

    Parameters
    ----------
    maps : metal -> :class:`MetalMap`.
    coordinate_unit : unit of the coordinates (for headers).

    Returns
    -------
    candidates : every fitted model (metal, scale, model, selected, nugget, partial_sill, len_scale,
        effective_range, nu, n_parameters, wsse, aic, r2, weights).
    anisotropy : directional ranges (metal, azimuth_deg, effective_range, n_pairs, ratio_to_min).
    display : one row per metal (selected model, nugget/sill ratio, anisotropy ratio, direction of
        the longest range, anisotropy modelled), with units in the headers.
    """
    cand = pd.concat([mm.variogram.candidates.assign(metal=m, scale="ln" if mm.log else "raw",
                                                     selected=mm.variogram.candidates["model"] == mm.variogram.model)
                      for m, mm in maps.items()], ignore_index=True)
    cand = cand[["metal", "scale", "model", "selected", "nugget", "partial_sill", "len_scale", "effective_range", "nu",
                 "n_parameters", "wsse", "aic", "r2", "weights"]]
    an = pd.concat([mm.anisotropy.assign(metal=m) for m, mm in maps.items()], ignore_index=True)
    rows = []
    for m, mm in maps.items():
        a = mm.anisotropy
        vf = mm.variogram
        am = mm.anisotropy_model
        rows.append({"Metal": m, "Scale": "ln" if mm.log else "raw", "Model": vf.model, "Nugget": vf.nugget,
                     "Partial sill": vf.partial_sill, f"Effective range ({coordinate_unit})": vf.effective_range,
                     "Nugget/sill": vf.nugget / vf.sill if vf.sill > 0 else np.nan,
                     "Anisotropy ratio": float(a["ratio_to_min"].max()) if len(a) else np.nan,
                     "Longest range at (°)": float(a.loc[a["effective_range"].idxmax(), "azimuth_deg"]) if len(a) else np.nan,
                     "Anisotropy modelled": f"{am.ratio:.2f} at {am.azimuth_deg:.0f}°" if am is not None else "no"})
    return cand, an, pd.DataFrame(rows)


def choice_table(maps: dict[str, MetalMap]) -> pd.DataFrame:
    """One row per metal: chosen method, its MAE and OK's per scheme, and the ratio to OK with its interval.

    Parameters
    ----------
    maps : metal -> :class:`MetalMap`.

    Returns
    -------
    DataFrame
        metal, chosen, best_by_mean, scheme, mae_chosen, mae_ok, ratio_mae_to_ok, ratio_low, ratio_high.
    """
    rows = []
    for m, mm in maps.items():
        s = mm.cv_summary.set_index(["method", "scheme"])["mae"]
        bestm = str(mm.selection.sort_values("mean_loss").iloc[0]["method"])
        for g in mm.gain.itertuples():
            rows.append({"metal": m, "chosen": mm.best, "best_by_mean": bestm, "scheme": g.scheme,
                         "mae_chosen": float(s[(mm.best, g.scheme)]), "mae_ok": float(s[("ok", g.scheme)]),
                         "ratio_mae_to_ok": g.ratio_mae_to_ok, "ratio_low": g.ratio_low, "ratio_high": g.ratio_high})
    return pd.DataFrame(rows, columns=["metal", "chosen", "best_by_mean", "scheme", "mae_chosen", "mae_ok",
                                       "ratio_mae_to_ok", "ratio_low", "ratio_high"])


def _pct_change(ratio: float) -> str:
    """A ratio as a signed percentage change ("-8 %", "+3 %", "0 %": never "-0 %")."""
    v = int(round(100 * (float(ratio) - 1)))
    return f"{v:+d} %" if v else "0 %"


def results_text(choice: pd.DataFrame, cv_table: pd.DataFrame, *, scheme_label: str,
                 labels: dict | None = None) -> str:
    """Results paragraph: which method won per metal, by how much and how surely, grouped by the strength of the gain.

    Metals are grouped by their 95 % intervals of the MAE ratio to ordinary kriging: a gain under every scheme
    (every interval below 1), under one scheme only, or none distinguishable from the noise.

    Parameters
    ----------
    choice : output of :func:`choice_table`.
    cv_table : cross-validation summary (metal, method, scheme, mae, rmse, msse).
    scheme_label : name of the random scheme ('10-fold', 'leave-one-out').
    labels : reader's names of the covariates (:func:`method_label`).

    Returns
    -------
    str
    """
    if not len(choice):
        return ""

    from .descriptive import _and
    kept, clear, partial_, noise = [], [], [], []
    by_method: dict[str, list[str]] = {}
    for metal, d in choice.groupby("metal", sort=False):
        m = d["chosen"].iloc[0]
        if m == "ok":
            kept.append(metal)
            continue
        by_method.setdefault(m, []).append(metal)
        segs = [f"{scheme_label if r.scheme != 'block' else 'block'} MAE {_pct_change(r.ratio_mae_to_ok)}"
                for r in d.itertuples()]
        below = [bool(r.ratio_high < 1) for r in d.itertuples()]
        (clear if all(below) else partial_ if any(below) else noise).append((metal, ", ".join(segs)))
    n_metals = choice["metal"].nunique()
    parts = []
    if by_method:
        said = [f"the {method_label(m, labels=labels)} for " + ("every metal" if len(v) == n_metals else _and(v))
                for m, v in by_method.items()]
        parts.append("The map is " + _and(said) + ".")
    if clear:
        parts.append("Its gain over ordinary kriging held under every scheme (every 95 % interval below no change) "
                     "for " + _and(f"{m} ({g})" for m, g in clear) + ".")
    if partial_:
        parts.append("It beat ordinary kriging under one scheme only, a gain that may not carry to new data, for "
                     + _and(m for m, _ in partial_) + ".")
    if noise:
        parts.append("The gain is within the noise of the cross-validation (every interval reaches no change) for "
                     + _and(m for m, _ in noise) + ".")
    if kept:
        parts.append(f"Ordinary kriging was kept for {_and(kept)}: no alternative beat it by more than one "
                     "standard error of the per-sample differences, and no share of the stacked ensemble lowered its "
                     "error averaged over the schemes, so the extra covariates or metals do not pay for their "
                     "complexity there.")
    txt = " ".join(parts) + " "
    ratios = choice[choice["scheme"] == choice["scheme"].iloc[0]].set_index("metal")["ratio_mae_to_ok"]
    txt += (f"Over the {len(ratios)} metals the median ratio of the chosen method's MAE to ordinary kriging's is "
            f"{ratios.median():.2f} ({scheme_label}). ")
    ms = cv_table.loc[cv_table["method"] != "ckc", "msse"]
    txt += (f"MSSE ranged from {ms.min():.2f} to {ms.max():.2f} across methods, metals and schemes (1 means the stated "
            "uncertainty matches the errors; above 1 the maps understate their uncertainty, so exceedance "
            "probabilities are too confident; block cross-validation, which predicts farther from the data, usually "
            "shows larger values).")
    return txt


def exceedance_text(shares: pd.DataFrame, *, threshold_name: str, guideline_set: str,
                    where: dict | None = None) -> str:
    """Results sentences on the share of the area above the guideline value, reconciled with the samples.

    Parameters
    ----------
    shares : metal, share_expected, share_median, share_p90 (fractions); optionally share_mean_map,
        share_samples and share_samples_area (:func:`sample_shares`).
    threshold_name, guideline_set : the value mapped (reader's names).
    where : metal -> where the probable exceedance lies (e.g. "north-east"), optional.

    Returns
    -------
    str
    """
    if shares is None or not len(shares):
        return ""
    from .descriptive import _and

    s = shares.sort_values("share_expected", ascending=False)
    parts = []
    for r in s[s["share_expected"] >= 0.05].itertuples():
        loc = (where or {}).get(r.metal, "") if r.share_p90 >= 0.0005 else ""
        p90 = ("nowhere" if r.share_p90 == 0 else "on less than 0.1 %" if r.share_p90 < 0.0005
               else f"on {100 * r.share_p90:.1f} %")
        parts.append(f"{r.metal} {100 * r.share_expected:.1f} % (median map {100 * r.share_median:.1f} %; "
                     f"probability above 0.9 {p90}{', mostly in the ' + loc if loc else ''})")
    txt = (f"Expected share of the mapped area above the {threshold_name} value of {guideline_set} (mean exceedance "
           "probability of the chosen method's map): " + "; ".join(parts) + ". ") if parts else ""
    wide = s[s["share_expected"] >= 0.5]["metal"].tolist()
    rare = s[s["share_expected"] < 0.05]["metal"].tolist()
    if wide:
        txt += (f"For {_and(wide)} exceeding the value is the rule rather than the exception, which points to "
                "a diffuse, regional level (geogenic or diffuse input) rather than to local point sources. ")
    if rare:
        txt += f"For {_and(rare)} exceedance is rare (expected share below 5 %). "
    if "share_samples" in s.columns:
        for k in [s.index[0]]:   # the headline metal (largest expected share)
            r = s.loc[k]
            ss, sa, se = 100 * r["share_samples"], 100 * r["share_samples_area"], 100 * r["share_expected"]
            smd = 100 * r["share_median"]
            txt += f"For {r['metal']}, {ss:.0f} % of the samples exceed the value, {sa:.0f} % when each sample is " \
                   "weighted by the area it represents"
            if ss - sa >= 5:
                txt += " (samples are denser where concentrations are high)"
            elif sa - ss >= 5:
                txt += " (samples are denser where concentrations are low)"
            txt += f", against an expected area share of {se:.0f} % and {smd:.0f} % of the cells on the median map"
            if abs(smd - se) >= 5:
                txt += (". The median map counts a cell as above once its probability passes one half, so "
                        + (f"where many cells lie just above the value it overstates the area ({smd:.0f} % against "
                           f"{se:.0f} %)" if smd > se else
                           f"where many cells lie just below the value it understates the area ({smd:.0f} % against "
                           f"{se:.0f} %)")
                        + "; the expected share counts each cell by its probability")
            if abs(sa - se) >= 5:
                txt += (". Between the samples the prediction reverts towards the local mean and the probability is "
                        "spread by the prediction error, which moves the expected share "
                        + ("below" if se < sa else "above") + " the area-weighted sample share")
            txt += ". "
    if "share_mean_map" in s.columns:
        d = s["share_mean_map"] - s["share_median"]
        if d.max() >= 0.05:
            r = s.loc[d.idxmax()]
            txt += (f"Reading the mean map against the value would put {100 * r['share_mean_map']:.0f} % of the area "
                    f"above it for {r['metal']} (median map {100 * r['share_median']:.0f} %), because the mean of a "
                    "skewed distribution lies above its median; the expected share is the figure to use.")
    return txt.strip()
