"""Geochemical baselines: five statistical methods, bootstrap intervals and a recommendation rule.

A geochemical baseline is the concentration range of an element that the natural (and
diffuse, ubiquitous) sources of a region explain; values above its upper limit point to an
additional, usually anthropogenic, input. This module estimates a baseline and its upper
limit per medium, stratum and metal with five methods, on log-transformed values unless told
otherwise [@reimann2005; @matschullat2000]:

========  ===================================================================================
method    rule (on transformed values :math:`t = \\ln c`)
========  ===================================================================================
imea      iterative mean: drop values outside :math:`\\bar t \\pm 2s` until none is dropped;
          baseline :math:`= \\bar t`, upper limit :math:`= \\bar t + 2s` [@zhang2020fuxin]
imed      iterative median: the same with the median and the scaled median absolute
          deviation (MAD); baseline = median, upper limit = median + 2 MAD [@reimann2005]
rcf       relative cumulative frequency curve; two breakpoints by segmented regression;
          baseline = the breakpoint closing the segment that holds most values (the break
          between background and anomalous populations), upper limit = upper breakpoint
          [@matschullat2000; @xian2022pinqing]
boxplot   Tukey fences :math:`Q_1 - 1.5\\,IQR`, :math:`Q_3 + 1.5\\,IQR`; baseline = median of the
          values inside the fences, upper limit = :math:`Q_3 + 1.5\\,IQR` [@tukey1977]
em        Gaussian mixture (expectation-maximisation), 1-4 components chosen by BIC; the
          background is the low dominant component; baseline = its geometric mean, upper
          limit = its 97.5th percentile [@sun2025adaptive]
========  ===================================================================================

Results are back-transformed to concentration units (:math:`c = e^{t}`). Percentile bootstrap
intervals come from seeded resampling with replacement (at least 500 resamples). Every method
has a batched implementation that treats all bootstrap resamples at once; the point estimate
uses the same code with one "resample" (the data), so estimate and interval come from one
estimator.

The recommendation rule follows Wu et al. (2025) [@wu2025tracing], who preferred the
method whose values lay inside the range spanned by the other methods: per medium, stratum and
metal, the recommended method is the one whose baseline is the median of the method baselines
(for an even number of methods, of the two middle ones, the one with the narrower relative
bootstrap interval).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from .descriptive import _and

__all__ = [
    "METHODS",
    "METHOD_LABELS",
    "column_words",
    "BaselineEstimate",
    "EMFit",
    "iterative_mean_baseline",
    "iterative_median_baseline",
    "rcf_baseline",
    "boxplot_baseline",
    "em_baseline",
    "fit_em",
    "em_background_probability",
    "bootstrap_baseline",
    "segmented_fit",
    "relative_cumulative_frequency",
    "baseline_table",
    "recommend_methods",
    "compare_with_literature",
    "methods_text",
    "display_table",
    "literature_comparison",
    "strata_table",
    "plot_cumulative_frequency",
    "plot_method_comparison",
]

METHODS: tuple[str, ...] = ("imea", "imed", "rcf", "boxplot", "em")
METHOD_LABELS = {"imea": "Iterative mean (IMEA)", "imed": "Iterative median (IMED)",
                 "rcf": "Relative cumulative frequency (RCF)", "boxplot": "Boxplot (Tukey)",
                 "em": "Gaussian mixture (EM)"}
#: reader names of the methods on figure axes (no abbreviations)
_AXIS_LABELS = {"imea": "iterative mean", "imed": "iterative median", "rcf": "cumulative frequency",
                "boxplot": "boxplot", "em": "mixture model"}
_MAD_SCALE = 1.0 / stats.norm.ppf(0.75)  # 1.4826: makes the MAD a consistent estimator of sigma


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BaselineEstimate:
    """One method's baseline for one sample of concentrations.

    Attributes
    ----------
    method : method key (imea, imed, rcf, boxplot, em).
    baseline : baseline concentration (input unit; back-transformed when log_transform).
    upper_limit : upper limit of the baseline range (input unit).
    n_retained : values the method counts as background (within the final range).
    n_total : finite values used.
    retained : boolean mask over the finite input values, in input order.
    log_transform : whether the method worked on natural-log values.
    details : method-specific values (breakpoints, mixture parameters, iterations...).
    """

    method: str
    baseline: float
    upper_limit: float
    n_retained: int
    n_total: int
    retained: np.ndarray
    log_transform: bool
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EMFit:
    """A Gaussian mixture fitted to (log) concentrations with the number of components by BIC.

    Attributes
    ----------
    model : the fitted :class:`sklearn.mixture.GaussianMixture`.
    n_components : components chosen by BIC.
    bic : BIC of each number of components tried, index 1..max.
    background_component : index (into ``model.means_``) of the background component.
    means, sds, weights : component parameters on the transformed scale, sorted by mean.
    log_transform : whether the mixture was fitted to natural-log values.
    """

    model: object
    n_components: int
    bic: pd.Series
    background_component: int
    means: np.ndarray
    sds: np.ndarray
    weights: np.ndarray
    log_transform: bool


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _as_values(concentration, *, log_transform: bool, name: str = "concentration") -> tuple[np.ndarray, np.ndarray]:
    """Finite values (1-D) and their transform; raises for non-positive values under log."""
    c = np.asarray(concentration, dtype=float)
    if c.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got an array of shape {c.shape}")
    c = c[np.isfinite(c)]
    if c.size < 3:
        raise ValueError(f"{name} needs at least 3 finite values, got {c.size}")
    if log_transform and np.any(c <= 0):
        raise ValueError(f"{name} must be > 0 for log_transform=True, got min {c.min():g} "
                         "(use log_transform=False or a non-zero non-detect substitution)")
    return c, (np.log(c) if log_transform else c.copy())


def _back(t, log_transform: bool):
    return np.exp(t) if log_transform else np.asarray(t, dtype=float)


# --------------------------------------------------------------------------------------------
# batched estimators: t has shape (B, n); each returns (baseline_t, upper_t, n_retained, keep)
# --------------------------------------------------------------------------------------------
def _count_below(xs: np.ndarray, v: np.ndarray, *, strict: bool) -> np.ndarray:
    """Per sorted row of ``xs`` (B, n): how many values are < ``v`` (``strict``) or <= ``v``.

    ``(xs < v[:, None]).sum(axis=1)`` by bisection on the sorted rows (``numpy.searchsorted`` has
    no row-wise form): O(B log n) instead of O(B n). NaN ``v`` counts as above every value
    for neither comparison, like the direct sum.
    """
    B, n = xs.shape
    r = np.arange(B)
    lo, hi = np.zeros(B, dtype=int), np.full(B, n)  # answer in [lo, hi]
    while True:
        act = lo < hi
        if not act.any():
            return lo
        mid = (lo + hi) // 2
        x = xs[r, np.minimum(mid, n - 1)]
        below = (x < v) if strict else (x <= v)
        lo = np.where(act & below, mid + 1, lo)
        hi = np.where(act & ~below, mid, hi)


def _imea_batch(t: np.ndarray, k: float = 2.0, max_iter: int = 200):
    # The kept set is always an interval of values (the intersection of bands), i.e. a contiguous
    # range [lo, hi) of each sorted row: mean and SD come from prefix sums, the new range from two
    # counts, so an iteration costs O(n) per resample instead of masked reductions.
    B, n = t.shape
    xs = np.sort(t, axis=1)
    c = xs - xs.mean(axis=1, keepdims=True)  # centred: prefix sums of squares without cancellation
    s1 = np.concatenate([np.zeros((B, 1)), np.cumsum(c, axis=1)], axis=1)
    s2 = np.concatenate([np.zeros((B, 1)), np.cumsum(c * c, axis=1)], axis=1)
    r = np.arange(B)
    lo, hi = np.zeros(B, dtype=int), np.full(B, n)

    def moments(lo, hi):
        m_ = hi - lo
        sum1 = s1[r, hi] - s1[r, lo]
        mean_c = sum1 / m_
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.maximum(s2[r, hi] - s2[r, lo] - m_ * mean_c ** 2, 0.0) / (m_ - 1)
        return mean_c, np.sqrt(var)

    for it in range(max_iter):  # noqa: B007 - the count is returned
        mc, sd = moments(lo, hi)
        new_lo = np.maximum(lo, _count_below(c, mc - k * sd, strict=True))
        new_hi = np.minimum(hi, _count_below(c, mc + k * sd, strict=False))
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        lo, hi = new_lo, new_hi
    mc, sd = moments(lo, hi)
    m = mc + xs.mean(axis=1)
    keep = (t >= xs[r, lo][:, None]) & (t <= xs[r, np.maximum(hi - 1, lo)][:, None])
    return m, m + k * sd, keep.sum(axis=1), keep, it


def _nanmedian_rows(x: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN, (B, 1). Sorting puts NaN last, so the median is read at
    the middle of each row's valid count; several times faster than ``np.nanmedian`` on (B, n)."""
    xs = np.sort(x, axis=1)
    k = np.isfinite(x).sum(axis=1)
    r = np.arange(x.shape[0])
    lo = xs[r, np.maximum((k - 1) // 2, 0)]
    hi = xs[r, np.maximum(k // 2, 0)]
    return np.where(k > 0, (lo + hi) / 2, np.nan)[:, None]


def _robust_scale(x: np.ndarray, med: np.ndarray):
    """Scaled MAD of the rows of ``x`` (NaN = dropped), with a documented fallback where it is 0.

    When more than half of the values are tied at the median (typically non-detects substituted
    by one value) the MAD is 0 and the band median +/- k MAD would keep only the ties. There the
    scale falls back to the scaled mean absolute deviation from the median,
    :math:`\\sqrt{\\pi/2}\\,\\mathrm{mean}|t_i - \\tilde t|` (also consistent for the normal SD),
    the fallback of the modified z-score of Iglewicz & Hoaglin (1993). Returns the scale and a
    boolean "fallback used" per row.
    """
    dev = np.abs(x - med)
    mad = _MAD_SCALE * _nanmedian_rows(dev)
    zero = ~(mad > 0)
    if zero.any():
        mean_ad = np.sqrt(np.pi / 2) * np.nanmean(dev, axis=1, keepdims=True)
        mad = np.where(zero, mean_ad, mad)
    return mad, zero[:, 0]


def _kth_of_two(dev: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray, k: np.ndarray) -> np.ndarray:
    """k-th smallest (0-based) of ``dev[r, lo:hi]`` per row r, where ``dev`` decreases on [lo, p)
    and increases on [p, hi) (absolute deviations of sorted values from a point inside).

    The two monotone runs are two sorted arrays, A[j] = dev[p-1-j] and B[j] = dev[p+j]; the
    k-th smallest of their union is found by the usual bisection on how many of the k+1
    smallest come from A (O(log n) steps for all rows at once, instead of sorting each row).
    """
    r = np.arange(dev.shape[0])
    a, b = p - lo, hi - p
    lo_i = np.maximum(0, k + 1 - b)
    hi_i = np.minimum(a, k + 1)
    while True:
        act = lo_i < hi_i
        if not act.any():
            break
        i = (lo_i + hi_i) // 2
        j = k + 1 - i
        ai = dev[r, np.clip(p - 1 - i, 0, dev.shape[1] - 1)]  # A[i]
        bj = dev[r, np.clip(p + j - 1, 0, dev.shape[1] - 1)]  # B[j-1]
        small = act & (ai < bj)
        lo_i = np.where(small, i + 1, lo_i)
        hi_i = np.where(act & ~small, i, hi_i)
    i = lo_i
    j = k + 1 - i
    from_a = np.where(i > 0, dev[r, np.clip(p - i, 0, dev.shape[1] - 1)], -np.inf)  # A[i-1]
    from_b = np.where(j > 0, dev[r, np.clip(p + j - 1, 0, dev.shape[1] - 1)], -np.inf)  # B[j-1]
    return np.maximum(from_a, from_b)


#: rows longer than this find the IMED band ends by bisection (same comparisons, O(log n) of them)
_BISECT_ABOVE = 1000


class _Deviations:
    """``|xs - med[:, None]|`` evaluated only at the (row, index) pairs asked for: ``dev[r, i]``."""

    def __init__(self, xs: np.ndarray, med: np.ndarray):
        self.xs, self.med, self.shape = xs, med, xs.shape

    def __getitem__(self, key):
        r, i = key
        return np.abs(self.xs[r, i] - self.med[r])


def _prefix_end(pred, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row, the end of the prefix of [lo, hi) where ``pred(index)`` holds (it holds on a prefix)."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        act = lo < hi
        if not act.any():
            return lo
        mid = (lo + hi) // 2
        yes = pred(np.minimum(mid, np.maximum(hi - 1, 0)))
        lo = np.where(act & yes, mid + 1, lo)
        hi = np.where(act & ~yes, mid, hi)


def _range_mask(t: np.ndarray, xs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mask of the values of ``t`` (B, n) inside the range [lo, hi) of their sorted rows ``xs``."""
    r, n = np.arange(t.shape[0]), t.shape[1]
    return ((hi > lo)[:, None] & (t >= xs[r, np.minimum(lo, n - 1)][:, None])
            & (t <= xs[r, np.maximum(hi - 1, 0)][:, None]))


def _imed_batch(t: np.ndarray, k: float = 2.0, max_iter: int = 200):
    # The retained set is an intersection of bands |t - median| <= k MAD, so it is a contiguous
    # range [lo, hi) of each sorted row (ties are never split: the bands are defined on values).
    # The median is then read at the middle of the range and the MAD is the median of two
    # monotone runs of deviations (:func:`_kth_of_two`), so an iteration costs O(n) per resample
    # instead of two sorts; the retained sets, medians and MADs are those of the masked
    # reductions over the unsorted rows (tests/test_scale.py checks it against them).
    B, n = t.shape
    xs = np.sort(t, axis=1)
    r = np.arange(B)
    lo, hi = np.zeros(B, dtype=int), np.full(B, n)
    frozen = np.zeros(B, dtype=bool)  # rows whose MAD hit 0: trimmed once with the fallback, then stop

    def centre_scale(lo, hi):
        m = hi - lo
        ok = m > 0
        i1 = np.where(ok, lo + (m - 1) // 2, 0)
        i2 = np.where(ok, lo + m // 2, 0)
        med = np.where(ok, (xs[r, i1] + xs[r, i2]) / 2, np.nan)
        dev = _Deviations(xs, med)  # |xs - med| read where needed, never the whole (B, n) array
        p0 = _count_below(xs, med, strict=True)
        p = np.clip(p0, lo, hi)
        mad = _MAD_SCALE * np.where(ok, (_kth_of_two(dev, p, lo, hi, np.maximum((m - 1) // 2, 0))
                                         + _kth_of_two(dev, p, lo, hi, np.maximum(m // 2, 0))) / 2, np.nan)
        zero = ~(mad > 0)
        if zero.any():  # fallback scale, on the unsorted rows as the masked reduction sums them
            z = np.flatnonzero(zero)
            x = np.where(_range_mask(t[z], xs[z], lo[z], hi[z]), t[z], np.nan)
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mad[z] = np.sqrt(np.pi / 2) * np.nanmean(np.abs(x - med[z, None]), axis=1)
        return med, mad, zero, dev, p0

    for it in range(max_iter):  # noqa: B007 - the count is returned
        med, mad, zero, dev, p0 = centre_scale(lo, hi)
        # the band |t - med| <= k MAD is contiguous in each sorted row: the deviations do not increase
        # below p0 (values < med) and do not decrease from p0 on, so both ends are found by bisection
        # on the same comparison (O(log n) per row instead of comparing every value)
        kmad = k * mad
        if n > _BISECT_ABOVE:
            b_lo = _prefix_end(lambda i, d=dev, km=kmad: ~(d[r, i] <= km), np.zeros(B, dtype=int), p0)
            b_hi = _prefix_end(lambda i, d=dev, km=kmad: d[r, i] <= km, p0, np.full(B, n))
            any_in = b_hi > b_lo
        else:  # small rows: comparing every value is cheaper than bisection steps
            band = np.abs(xs - med[:, None]) <= kmad[:, None]
            any_in = band.any(axis=1)
            b_lo, b_hi = band.argmax(axis=1), n - band[:, ::-1].argmax(axis=1)
        b_lo = np.where(any_in, b_lo, n)
        b_hi = np.where(any_in, b_hi, n)
        new_lo, new_hi = np.maximum(lo, b_lo), np.minimum(hi, b_hi)
        new_hi = np.maximum(new_hi, new_lo)  # empty range
        new_lo, new_hi = np.where(frozen, lo, new_lo), np.where(frozen, hi, new_hi)
        frozen = frozen | zero
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        lo, hi = new_lo, new_hi
    med, mad, fallback, _, _ = centre_scale(lo, hi)
    keep = _range_mask(t, xs, lo, hi)
    # all retained values identical: no scale at all, the method is undefined (NaN, not b = u)
    collapsed = ~(mad > 0)
    base = np.where(collapsed, np.nan, med)
    up = np.where(collapsed, np.nan, med + k * mad)
    return base, up, keep.sum(axis=1), keep, (it, fallback)


def _boxplot_batch(t: np.ndarray, whisker: float = 1.5):
    # One sort per row: the quartiles are order statistics (the same on sorted rows), and the values
    # inside the fences are a contiguous range [a, b) of the sorted row, whose median is read at its
    # middle exactly as :func:`_nanmedian_rows` reads it after masking and sorting again.
    xs = np.sort(t, axis=1)
    q1, q3 = np.percentile(xs, [25.0, 75.0], axis=1)
    iqr = q3 - q1
    lo, hi = q1 - whisker * iqr, q3 + whisker * iqr
    keep = (t >= lo[:, None]) & (t <= hi[:, None])
    a = _count_below(xs, lo, strict=True)
    m = _count_below(xs, hi, strict=False) - a
    r = np.arange(t.shape[0])
    base = np.where(m > 0, (xs[r, np.clip(a + np.maximum((m - 1) // 2, 0), 0, t.shape[1] - 1)]
                            + xs[r, np.clip(a + np.maximum(m // 2, 0), 0, t.shape[1] - 1)]) / 2, np.nan)
    return base, hi, keep.sum(axis=1), keep, (q1, q3, lo)


def _segmented_rss(x: np.ndarray, y: np.ndarray, c1: np.ndarray, c2: np.ndarray, min_points: int):
    """RSS of continuous 3-segment linear fits for every breakpoint pair.

    ``x``, ``y``: (B, n); ``c1``: (B, G1) candidates of the first breakpoint, ``c2``: (B, G2)
    of the second. Returns RSS (B, G1, G2), +inf where psi1 >= psi2 or a segment has fewer
    than ``min_points`` values, and a function of (rows, i1, i2) giving the coefficients (B, 4).

    The least-squares fit is computed from sums (no design matrices): the line part
    :math:`[1, x]` is projected out (Frisch-Waugh-Lovell), which leaves a 2 x 2 system in the
    two hinge coefficients, solved in closed form for all pairs of all resamples at once.
    This is the direct form (hinge sums over all values, O(G1 G2 n) per row); the search uses
    :func:`_segmented_rss_fast`, the same algebra from tail sums of sorted rows.
    """
    # centre x (better conditioning of the sums); hinge terms are shift-invariant
    xm = x.mean(axis=1, keepdims=True)
    x, c1, c2 = x - xm, c1 - xm, c2 - xm
    h1 = np.maximum(x[:, None, :] - c1[:, :, None], 0.0)  # (B, G1, n)
    h2 = np.maximum(x[:, None, :] - c2[:, :, None], 0.0)  # (B, G2, n)
    n = x.shape[1]
    sx, sxx = x.sum(1), (x * x).sum(1)
    sy, sxy, syy = y.sum(1), (x * y).sum(1), (y * y).sum(1)
    s1, s2 = h1.sum(2), h2.sum(2)
    sx1, sx2 = np.einsum("bn,bgn->bg", x, h1), np.einsum("bn,bgn->bg", x, h2)
    sy1, sy2 = np.einsum("bn,bgn->bg", y, h1), np.einsum("bn,bgn->bg", y, h2)
    s11, s22 = (h1 * h1).sum(2), (h2 * h2).sum(2)
    s12 = np.einsum("bgn,bhn->bgh", h1, h2)
    k1 = (x[:, None, :] <= c1[:, :, None]).sum(2)  # (B, G1): values up to each candidate
    k2 = (x[:, None, :] <= c2[:, :, None]).sum(2)
    return _segmented_solve(n, xm, sx, sxx, sy, sxy, syy, s1, s2, sx1, sx2, sy1, sy2, s11, s22, s12,
                            k1, k2, c1, c2, min_points)


def _segmented_solve(n, xm, sx, sxx, sy, sxy, syy, s1, s2, sx1, sx2, sy1, sy2, s11, s22, s12, n_le1, n_le2,
                     c1, c2, min_points):
    """RSS of every breakpoint pair from the sums of :func:`_segmented_rss` (centred x), and a
    function giving the coefficients of chosen pairs (the search needs them for one pair per row)."""
    det_m = n * sxx - sx * sx  # (B,)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi00, mi01, mi11 = sxx / det_m, -sx / det_m, n / det_m  # inverse of [[n, sx], [sx, sxx]]

        def proj(a0, a1, b0, b1):  # a' M^-1 b
            return a0 * (mi00 * b0 + mi01 * b1) + a1 * (mi01 * b0 + mi11 * b1)

        e = lambda v: v[:, None]  # noqa: E731 - broadcast helper over candidates
        mi00e, mi01e, mi11e = e(mi00), e(mi01), e(mi11)
        p11 = s11 - (s1 * (mi00e * s1 + mi01e * sx1) + sx1 * (mi01e * s1 + mi11e * sx1))
        p22 = s22 - (s2 * (mi00e * s2 + mi01e * sx2) + sx2 * (mi01e * s2 + mi11e * sx2))
        m00, m01, m11 = mi00[:, None, None], mi01[:, None, None], mi11[:, None, None]
        p12 = s12 - (s1[:, :, None] * (m00 * s2[:, None, :] + m01 * sx2[:, None, :])
                     + sx1[:, :, None] * (m01 * s2[:, None, :] + m11 * sx2[:, None, :]))
        ly0 = mi00e * e(sy) + mi01e * e(sxy)  # M^-1 [sy, sxy]
        ly1 = mi01e * e(sy) + mi11e * e(sxy)
        u1 = sy1 - (s1 * ly0 + sx1 * ly1)
        u2 = sy2 - (s2 * ly0 + sx2 * ly1)
        rss0 = syy - proj(sy, sxy, sy, sxy)
        P11, P22, U1, U2 = p11[:, :, None], p22[:, None, :], u1[:, :, None], u2[:, None, :]
        det = P11 * P22 - p12 * p12
        b2 = (P22 * U1 - p12 * U2) / det
        b3 = (P11 * U2 - p12 * U1) / det
        rss = rss0[:, None, None] - (b2 * U1 + b3 * U2)
    scale = np.maximum(P11 * P22, np.finfo(float).tiny)
    ok = ((c1[:, :, None] < c2[:, None, :]) & (n_le1[:, :, None] >= min_points)
          & ((n_le2[:, None, :] - n_le1[:, :, None]) >= min_points) & ((n - n_le2[:, None, :]) >= min_points)
          & np.isfinite(rss) & (det > 1e-12 * scale))

    def coefficients(bi, i1, i2):
        """(B, 4) b0..b3 of pair (i1, i2) of each row (same formulas, on the chosen pairs only)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            g2, g3 = b2[bi, i1, i2], b3[bi, i1, i2]
            # line coefficients: [b0, b1] = M^-1 ([sy, sxy] - b2 [s1, sx1] - b3 [s2, sx2])
            r0 = sy - g2 * s1[bi, i1] - g3 * s2[bi, i2]
            r1 = sxy - g2 * sx1[bi, i1] - g3 * sx2[bi, i2]
            b0 = mi00 * r0 + mi01 * r1
            b1 = mi01 * r0 + mi11 * r1
            return np.stack([b0 - b1 * xm[:, 0], b1, g2, g3], axis=-1)  # intercept on the uncentred x

    return np.where(ok, np.maximum(rss, 0.0), np.inf), coefficients


def _segmented_rss_fast(x: np.ndarray, y: np.ndarray, c1: np.ndarray, c2: np.ndarray, min_points: int):
    """:func:`_segmented_rss` for rows of ``x`` sorted ascending, in O(n + G1 G2) per row instead of O(G1 G2 n).

    The same least-squares algebra (same centring, same closed-form 2 x 2 solve, same admissibility
    rules); only the hinge sums are formed differently. On a sorted row the hinge
    :math:`h = (x - c)_+` is non-zero exactly from index :math:`k = \\#\\{x_i \\le c\\}` on, so with
    the tail sums :math:`T_p = \\sum_{i \\ge k} x_i^p`, :math:`T_y`, :math:`T_{xy}` and :math:`m = n - k`

    .. math::

        \\sum h = T_1 - c\\,m,\\quad \\sum x h = T_2 - c\\,T_1,\\quad \\sum y h = T_{xy} - c\\,T_y,\\quad
        \\sum h^2 = T_2 - 2c\\,T_1 + c^2 m,

    and, as both hinges are non-zero only above the larger breakpoint, for :math:`c_1 < c_2`

    .. math:: \\sum h_1 h_2 = \\sum h_2^2 + (c_2 - c_1) \\sum h_2

    (symmetrically for :math:`c_1 \\ge c_2`, pairs the search rejects anyway). The direct form builds
    these sums over all n values for every candidate and pair of every resample, which was most of
    the stage's time at survey sizes. Hand-written (exact algebra, not an approximation); the
    breakpoints equal those of the direct sums up to rounding, which decides only between pairs
    whose RSS agree to about 1e-12, i.e. where the RSS surface is flat (tests/test_survey_scale_baselines.py
    compares the two). Used above ``_DIRECT_RSS_UP_TO`` values, so small regions keep the direct sums.
    """
    B, n = x.shape
    same = c2 is c1  # the coarse grid pairs the candidates with themselves: count once
    xm = x.mean(axis=1, keepdims=True)
    x, c1, c2 = x - xm, c1 - xm, c2 - xm

    def tails(v):  # (B, n + 1): sum of v[i:] for i = 0..n
        return np.concatenate([np.cumsum(v[:, ::-1], axis=1)[:, ::-1], np.zeros((B, 1))], axis=1)

    t1, t2, ty, txy = tails(x), tails(x * x), tails(y), tails(x * y)
    r = np.arange(B)[:, None]
    k1 = (x[:, None, :] <= c1[:, :, None]).sum(2)  # (B, G1): values up to each candidate (the direct count)
    k2 = k1 if same else (x[:, None, :] <= c2[:, :, None]).sum(2)

    def hinge_sums(c, k):
        m_, T1, T2, Ty, Txy = n - k, t1[r, k], t2[r, k], ty[r, k], txy[r, k]
        return T1 - c * m_, T2 - c * T1, Txy - c * Ty, T2 - 2 * c * T1 + c * c * m_

    s1, sx1, sy1, s11 = hinge_sums(c1, k1)
    s2, sx2, sy2, s22 = hinge_sums(c2, k2)
    C1, C2 = c1[:, :, None], c2[:, None, :]
    s12 = np.where(C1 < C2, s22[:, None, :] + (C2 - C1) * s2[:, None, :],
                   s11[:, :, None] + (C1 - C2) * s1[:, :, None])
    sx, sxx = x.sum(1), (x * x).sum(1)
    sy, sxy, syy = y.sum(1), (x * y).sum(1), (y * y).sum(1)
    return _segmented_solve(n, xm, sx, sxx, sy, sxy, syy, s1, s2, sx1, sx2, sy1, sy2, s11, s22, s12,
                            k1, k2, c1, c2, min_points)


#: up to this many values the breakpoint search forms the hinge sums directly (the earlier code, so
#: regions of the size of the shipped ones, Jura 259 and Meuse 155 samples, keep their numbers to the
#: last digit); above, from tail sums (:func:`_segmented_rss_fast`): the same estimator up to rounding
_DIRECT_RSS_UP_TO = 300


def _rss_for(n_values: int):
    """RSS function of the breakpoint search for a sample of ``n_values`` values (see _DIRECT_RSS_UP_TO)."""
    return _segmented_rss if n_values <= _DIRECT_RSS_UP_TO else _segmented_rss_fast


def _rcf_xy(t_sorted: np.ndarray) -> np.ndarray:
    n = t_sorted.shape[1]
    return np.broadcast_to(100.0 * np.arange(1, n + 1) / n, t_sorted.shape)


def _segmented_search(x: np.ndarray, y: np.ndarray, *, n_grid: int = 30, n_fine: int = 9, n_refine: int = 3,
                      min_points: int = 3, rss_fn=None):
    """Batched breakpoint search on sorted ``x`` (B, n): coarse grid of quantile candidates,
    then ``n_refine`` zoom rounds, each on a fine grid spanning one step either side of the
    current best pair. Returns psi1, psi2, rss, beta (NaN / inf where no pair is admissible).
    ``rss_fn``: the RSS of the candidate pairs (default :func:`_segmented_rss_fast`; the tests
    pass the direct :func:`_segmented_rss`)."""
    rss_fn = _segmented_rss_fast if rss_fn is None else rss_fn
    B = x.shape[0]
    bi = np.arange(B)
    qs = np.linspace(0.03, 0.97, n_grid)
    cand = np.quantile(x, qs, axis=1).T  # (B, G)
    rss, beta = rss_fn(x, y, cand, cand, min_points)
    i1, i2 = np.unravel_index(rss.reshape(B, -1).argmin(1), rss.shape[1:])
    p1, p2 = cand[bi, i1], cand[bi, i2]
    best_rss, best_beta = rss[bi, i1, i2], beta(bi, i1, i2)
    step1 = (cand[bi, np.minimum(i1 + 1, n_grid - 1)] - cand[bi, np.maximum(i1 - 1, 0)]) / 2
    step2 = (cand[bi, np.minimum(i2 + 1, n_grid - 1)] - cand[bi, np.maximum(i2 - 1, 0)]) / 2
    f = np.linspace(-1.0, 1.0, n_fine)
    for _ in range(n_refine):
        c1 = p1[:, None] + step1[:, None] * f
        c2 = p2[:, None] + step2[:, None] * f
        r2, b2 = rss_fn(x, y, c1, c2, min_points)
        j1, j2 = np.unravel_index(r2.reshape(B, -1).argmin(1), r2.shape[1:])
        better = r2[bi, j1, j2] < best_rss
        p1 = np.where(better, c1[bi, j1], p1)
        p2 = np.where(better, c2[bi, j2], p2)
        best_beta = np.where(better[:, None], b2(bi, j1, j2), best_beta)
        best_rss = np.where(better, r2[bi, j1, j2], best_rss)
        step1, step2 = step1 * 2 / (n_fine - 1), step2 * 2 / (n_fine - 1)
    finite = np.isfinite(best_rss)
    return np.where(finite, p1, np.nan), np.where(finite, p2, np.nan), best_rss, best_beta


def _rcf_pick(x_sorted: np.ndarray, p1: np.ndarray, p2: np.ndarray):
    """Background segment and the breakpoint that closes it, per resample.

    The three segments of the fitted curve hold ``n1, n2, n3`` values; the background population
    is the segment holding the most values (the steep part of the curve, where the bulk of the
    samples lies). The baseline is the breakpoint at its upper end, i.e. the break in slope that
    separates the background population from the values above it (Matschullat et al. 2000); the
    upper limit is the next breakpoint above it (or the same one when none is left). When the
    top segment holds most values there is no break above it, and its lower breakpoint is used.
    Returns baseline_t, upper_t, background_segment (1, 2, 3; 0 where undefined).
    """
    n1 = (x_sorted <= p1[:, None]).sum(1)
    n2 = (x_sorted <= p2[:, None]).sum(1) - n1
    n3 = x_sorted.shape[1] - n1 - n2
    seg = np.argmax(np.stack([n1, n2, n3], axis=1), axis=1) + 1  # ties: the lower segment
    base = np.where(seg == 1, p1, p2)
    up = p2.copy()
    ok = np.isfinite(p1) & np.isfinite(p2)
    return np.where(ok, base, np.nan), np.where(ok, up, np.nan), np.where(ok, seg, 0)


def _rcf_batch(t: np.ndarray, n_grid: int = 30, min_points: int = 3, max_points: int = 250):
    x = np.sort(t, axis=1)
    y = _rcf_xy(x)
    if x.shape[1] > max_points:
        # the fit uses the curve at max_points evenly spaced ranks (order statistics): the curve is
        # smooth at this resolution and the cost no longer grows with n
        cols = np.round(np.linspace(0, x.shape[1] - 1, max_points)).astype(int)
        xf, yf = x[:, cols], y[:, cols]
    else:
        xf, yf = x, y
    p1, p2, _, _ = _segmented_search(xf, yf, n_grid=n_grid, min_points=min_points, rss_fn=_rss_for(t.shape[1]))
    base, up, seg = _rcf_pick(x, p1, p2)
    keep = t <= base[:, None]
    return base, up, keep.sum(axis=1), keep, (p1, p2, seg)


# --------------------------------------------------------------------------------------------
# public single-sample estimators
# --------------------------------------------------------------------------------------------
def _estimate(method, batch_fn, concentration, log_transform, **kw) -> BaselineEstimate:
    c, t = _as_values(concentration, log_transform=log_transform)
    base_t, up_t, n_ret, keep, extra = batch_fn(t[None, :], **kw)
    details = {"baseline_transformed": float(base_t[0]), "upper_transformed": float(up_t[0])}
    if method == "imea":
        details["iterations"] = int(extra)
    if method == "imed":
        details["iterations"] = int(extra[0])
        details["mad_zero_fallback"] = bool(extra[1][0])
    return BaselineEstimate(method=method, baseline=float(_back(base_t[0], log_transform)),
                            upper_limit=float(_back(up_t[0], log_transform)), n_retained=int(n_ret[0]),
                            n_total=int(c.size), retained=keep[0].copy(), log_transform=log_transform,
                            details=details)


def iterative_mean_baseline(concentration, *, log_transform: bool = True, k: float = 2.0) -> BaselineEstimate:
    """Iterative mean (IMEA): trim values outside mean ± k SD until none is trimmed.

    .. math::

        R_0 = \\{t_i\\},\\quad R_{j+1} = \\{t \\in R_j : |t - \\bar t_{R_j}| \\le k\\, s_{R_j}\\};\\qquad
        b = g^{-1}(\\bar t_{R}),\\quad u = g^{-1}(\\bar t_{R} + k\\, s_{R})

    with :math:`t = g(c) = \\ln c` (or :math:`t = c` when ``log_transform`` is False), :math:`s` the
    sample standard deviation (ddof = 1) and :math:`R` the set once no value is trimmed.

    Parameters
    ----------
    concentration : 1-D array of concentrations (any unit; NaN ignored).
    log_transform : work on natural logarithms (baseline = geometric mean of retained values).
    k : width of the retained band in standard deviations.

    Returns
    -------
    BaselineEstimate
        Baseline b and upper limit u (unit of the input), retained/total counts and the retained mask.

    References
    ----------
    Zhang, H. et al. (2020) Geochemical baseline determination and contamination of heavy metals in
    the urban topsoil of Fuxin City, China. J. Arid Land 12, 1001-1017. doi:10.1007/s40333-020-0029-2
    """
    return _estimate("imea", _imea_batch, concentration, log_transform, k=k)


def iterative_median_baseline(concentration, *, log_transform: bool = True, k: float = 2.0) -> BaselineEstimate:
    """Iterative median (IMED): trim values outside median ± k MAD until none is trimmed.

    .. math::

        \\mathrm{MAD} = 1.4826\\,\\mathrm{median}_i |t_i - \\tilde t|,\\qquad
        b = g^{-1}(\\tilde t_R),\\quad u = g^{-1}(\\tilde t_R + k\\,\\mathrm{MAD}_R)

    The factor :math:`1/\\Phi^{-1}(0.75) = 1.4826` makes the MAD estimate the standard deviation of
    normal data (the "scaled MAD", ``scipy.stats.median_abs_deviation(scale='normal')``).

    MAD = 0 (more than half of the values tied at the median, e.g. substituted non-detects):
    that pass trims with the fallback scale and the iteration stops there (further passes would
    only concentrate the ties); the scale falls back to :math:`\\sqrt{\\pi/2}\\,\\mathrm{mean}|t_i - \\tilde t|` (Iglewicz &
    Hoaglin 1993) and ``details['mad_zero_fallback']`` is True. If the iteration ends with all
    retained values identical the method is undefined and a ``ValueError`` is raised (never
    baseline = upper limit).

    Parameters
    ----------
    concentration : 1-D array of concentrations (NaN ignored).
    log_transform : work on natural logarithms.
    k : width of the retained band in scaled MADs.

    Returns
    -------
    BaselineEstimate

    References
    ----------
    Reimann, C., Filzmoser, P., Garrett, R.G. (2005) Background and threshold: critical comparison of
    methods of determination. Sci. Total Environ. 346, 1-16. doi:10.1016/j.scitotenv.2004.11.023
    """
    est = _estimate("imed", _imed_batch, concentration, log_transform, k=k)
    if not np.isfinite(est.baseline):
        raise ValueError("IMED undefined: the iteration kept only values tied at one level (MAD and mean absolute "
                         "deviation are 0), typically non-detects substituted by one value; use the censored-data "
                         "statistics instead")
    return est


def boxplot_baseline(concentration, *, log_transform: bool = True, whisker: float = 1.5) -> BaselineEstimate:
    """Boxplot (Tukey) baseline: median of the values inside the fences; upper limit = upper fence.

    .. math::

        F_{lo} = Q_1 - 1.5\\,IQR,\\quad F_{hi} = Q_3 + 1.5\\,IQR,\\qquad
        b = g^{-1}(\\mathrm{median}\\{t : F_{lo} \\le t \\le F_{hi}\\}),\\quad u = g^{-1}(F_{hi})

    Quartiles by linear interpolation (Hyndman-Fan type 7, NumPy's and R's default).

    Parameters
    ----------
    concentration : array-like of float
        1-D concentrations (any unit; NaN ignored).
    log_transform : bool, default True
        Work on natural logarithms.
    whisker : float, default 1.5
        Fence multiplier of the interquartile range.

    Returns
    -------
    BaselineEstimate
        Baseline b and upper limit u (unit of the input), retained/total counts and the retained mask.

    References
    ----------
    Tukey, J.W. (1977) Exploratory Data Analysis. Addison-Wesley. ISBN 978-0201076165.
    Reimann, C. et al. (2005) Sci. Total Environ. 346, 1-16. doi:10.1016/j.scitotenv.2004.11.023
    """
    return _estimate("boxplot", _boxplot_batch, concentration, log_transform, whisker=whisker)


def relative_cumulative_frequency(concentration, *, log_transform: bool = True) -> pd.DataFrame:
    """The relative cumulative frequency curve: sorted (transformed) values and frequency in %.

    .. math:: F(t_{(i)}) = 100\\, i / n

    Parameters
    ----------
    concentration : array-like of float
        1-D concentrations (any unit; NaN ignored).
    log_transform : bool, default True
        Transform with the natural logarithm.

    Returns
    -------
    DataFrame
        Sorted values: concentration (input unit), transformed (ln or raw), cumulative_frequency_pct (%).
    """
    c, t = _as_values(concentration, log_transform=log_transform)
    order = np.argsort(t, kind="stable")
    n = t.size
    return pd.DataFrame({"concentration": c[order], "transformed": t[order],
                         "cumulative_frequency_pct": 100.0 * np.arange(1, n + 1) / n})


def segmented_fit(x, y, *, n_grid: int = 30, n_fine: int = 9, n_refine: int = 3, min_points: int = 3) -> dict:
    """Continuous three-segment linear regression of ``y`` on ``x`` (two breakpoints).

    .. math::

        y = \\beta_0 + \\beta_1 x + \\beta_2 (x - \\psi_1)_+ + \\beta_3 (x - \\psi_2)_+ + \\varepsilon

    The breakpoints minimise the residual sum of squares: an exhaustive search over pairs of
    ``n_grid`` candidates (quantiles 3-97 % of ``x``), then ``n_refine`` zoom rounds over a fine
    grid (``n_fine`` points per breakpoint) spanning one step either side of the best pair; each
    segment keeps at least ``min_points`` values.
    For fixed breakpoints the model is linear, so the search profiles the exact least-squares
    fit (the estimator of Muggeo 2003 reaches the same optimum by iteration; the grid form is
    used because it evaluates all bootstrap resamples in one batched computation).

    Parameters
    ----------
    x, y : array-like of float
        1-D predictor and response of equal length.
    n_grid : int, default 30
        Candidate breakpoints of the exhaustive search.
    n_fine : int, default 9
        Points per breakpoint in each zoom round.
    n_refine : int, default 3
        Number of zoom rounds.
    min_points : int, default 3
        Fewest values per segment.

    Returns
    -------
    dict with psi1, psi2, coefficients (b0, b1, b2, b3), rss, fitted (array).

    References
    ----------
    Muggeo, V.M.R. (2003) Estimating regression models with unknown break-points. Stat. Med. 22,
    3055-3071. doi:10.1002/sim.1545
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if x.size < 3 * min_points + 1:
        raise ValueError(f"need at least {3 * min_points + 1} points for two breakpoints, got {x.size}")
    order = np.argsort(x, kind="stable")
    xs, ys = x[order][None, :], y[order][None, :]
    p1, p2, rss, beta = _segmented_search(xs, ys, n_grid=n_grid, n_fine=n_fine, n_refine=n_refine,
                                          min_points=min_points, rss_fn=_rss_for(x.size))
    if not np.isfinite(rss[0]):
        raise ValueError("no breakpoint pair leaves min_points values in every segment")
    rss_best, p1, p2, b = float(rss[0]), float(p1[0]), float(p2[0]), beta[0]
    fitted = b[0] + b[1] * x + b[2] * np.maximum(x - p1, 0) + b[3] * np.maximum(x - p2, 0)
    return {"psi1": float(p1), "psi2": float(p2), "coefficients": tuple(float(v) for v in b),
            "rss": rss_best, "fitted": fitted}


def rcf_baseline(concentration, *, log_transform: bool = True, n_grid: int = 30) -> BaselineEstimate:
    """Relative cumulative frequency (RCF) baseline: the break in slope that closes the background.

    The cumulative frequency curve :math:`F(t_{(i)}) = 100\\,i/n` is fitted by a continuous
    three-segment linear model (:func:`segmented_fit`) with breakpoints :math:`\\psi_1 < \\psi_2`.
    The segment holding the most values is the background population (the steep part of the
    curve); the baseline is the breakpoint at its upper end, where the curve bends away from the
    background population towards the anomalous values:

    .. math::

        b = g^{-1}(\\psi_{k}),\\qquad k = \\begin{cases} 1 & n_1 \\ge \\max(n_2, n_3)\\\\
        2 & \\text{otherwise} \\end{cases},\\qquad u = g^{-1}(\\psi_2)

    with :math:`n_j` the values in segment :math:`j`. For a single log-normal population the
    bulk lies in the middle segment and :math:`b = \\psi_2` (about the 85th percentile); for a
    background population followed by a gap and an anomalous one, the first segment is the
    background and :math:`b = \\psi_1` lies between the two populations. This is the reading of
    Matschullat et al. (2000) and of the studies that apply it to soils and sediments (Xian et
    al. 2022): values below the break belong to the natural background, above it to the mixed or
    anthropogenic population, which is why the RCF value is the highest of the usual methods
    (Wu et al. 2025, Table 1). The upper limit is :math:`\\psi_2` (equal to the baseline when
    the background segment ends at :math:`\\psi_2`). ``n_retained`` counts the values at or below
    the baseline. ``details`` carries ``psi1``, ``psi2`` and ``background_segment``.

    Parameters
    ----------
    concentration : 1-D array of positive concentrations (NaN ignored).
    log_transform : fit the curve on natural-log values.
    n_grid : candidate breakpoints of the coarse search.

    Returns
    -------
    BaselineEstimate

    References
    ----------
    Matschullat, J., Ottenstein, R., Reimann, C. (2000) Geochemical background - can we calculate it?
    Environ. Geol. 39, 990-1000. doi:10.1007/s002549900084
    Xian, H. et al. (2022) Geochemical baseline establishment and pollution assessment of heavy metals
    in the largest coastal lagoon (Pinqing Lagoon) in China mainland. Mar. Pollut. Bull. 177, 113459.
    doi:10.1016/j.marpolbul.2022.113459
    """
    c, t = _as_values(concentration, log_transform=log_transform)
    base_t, up_t, n_ret, keep, (p1, p2, seg) = _rcf_batch(t[None, :], n_grid=n_grid)
    if not np.isfinite(base_t[0]):
        raise ValueError("RCF undefined: no pair of breakpoints leaves 3 values in each of the three "
                         f"segments ({c.size} values, {np.unique(c).size} distinct)")
    details = {"baseline_transformed": float(base_t[0]), "upper_transformed": float(up_t[0]),
               "psi1": float(p1[0]), "psi2": float(p2[0]), "background_segment": int(seg[0])}
    return BaselineEstimate(method="rcf", baseline=float(_back(base_t[0], log_transform)),
                            upper_limit=float(_back(up_t[0], log_transform)), n_retained=int(n_ret[0]),
                            n_total=int(c.size), retained=keep[0].copy(), log_transform=log_transform,
                            details=details)


# --------------------------------------------------------------------------------------------
# EM (Gaussian mixture by BIC)
# --------------------------------------------------------------------------------------------
def _background_index(means: np.ndarray, weights: np.ndarray, min_weight: float) -> int:
    """Lowest-mean component among those with weight >= min_weight (else the heaviest)."""
    ok = np.flatnonzero(weights >= min_weight)
    if ok.size == 0:
        return int(np.argmax(weights))
    return int(ok[np.argmin(means[ok])])


def fit_em(concentration, *, log_transform: bool = True, max_components: int = 4, min_weight: float = 0.4,
           seed: int = 0, n_init: int = 3) -> EMFit:
    """Fit Gaussian mixtures with 1..``max_components`` components and keep the lowest BIC.

    .. math::

        f(t) = \\sum_{k=1}^{K} \\pi_k\\, \\mathcal N(t; \\mu_k, \\sigma_k^2),\\qquad
        \\mathrm{BIC}_K = -2 \\ln \\hat L_K + (3K - 1) \\ln n

    Fitted by expectation-maximisation (:class:`sklearn.mixture.GaussianMixture`, ``n_init``
    seeded starts). The background component is the one with the lowest mean among the
    components whose weight :math:`\\pi_k` is at least ``min_weight`` ("the dominant low
    component"); with no such component, the heaviest one. The default ``min_weight = 0.4``
    requires the background to hold a large share of the samples: smaller low components are
    usually natural sub-populations (a poorer lithology, a cluster of values at the detection
    limit), not the regional background.

    Parameters
    ----------
    concentration : array-like of float
        1-D concentrations (any unit; NaN ignored).
    log_transform : bool, default True
        Fit on natural logarithms.
    max_components : int, default 4
        Largest number of mixture components tried.
    min_weight : float, default 0.4
        Smallest weight of a component eligible as background.
    seed : int, default 0
        Random seed of the starts.
    n_init : int, default 3
        Number of seeded starts per fit.

    Returns
    -------
    EMFit
        Selected mixture (means, SDs, weights on the transformed scale), BIC per number of
        components and the index of the background component.

    References
    ----------
    Dempster, A.P., Laird, N.M., Rubin, D.B. (1977) Maximum likelihood from incomplete data via the EM
    algorithm. J. R. Stat. Soc. B 39, 1-38. doi:10.1111/j.2517-6161.1977.tb01600.x
    Schwarz, G. (1978) Estimating the dimension of a model. Ann. Stat. 6, 461-464.
    doi:10.1214/aos/1176344136
    """
    c, t = _as_values(concentration, log_transform=log_transform)
    with threadpool_limits(limits=1):  # tiny matrices: BLAS threads only oversubscribe the cores
        return _fit_em(t, log_transform=log_transform, max_components=max_components, min_weight=min_weight,
                       seed=seed, n_init=n_init)


def _fit_em(t, *, log_transform, max_components, min_weight, seed, n_init) -> EMFit:
    from sklearn.mixture import GaussianMixture

    kmax = int(max(1, min(max_components, t.size // 5)))
    X = t[:, None]
    fits, bics = {}, {}
    for k in range(1, kmax + 1):
        g = GaussianMixture(n_components=k, covariance_type="full", n_init=n_init, random_state=seed,
                            reg_covar=1e-6, max_iter=500).fit(X)
        fits[k], bics[k] = g, float(g.bic(X))
    k_best = min(bics, key=bics.get)
    g = fits[k_best]
    means = g.means_[:, 0]
    sds = np.sqrt(g.covariances_[:, 0, 0])
    order = np.argsort(means)
    bg = _background_index(means, g.weights_, min_weight)
    return EMFit(model=g, n_components=k_best, bic=pd.Series(bics, name="bic"), background_component=bg,
                 means=means[order], sds=sds[order], weights=g.weights_[order], log_transform=log_transform)


def em_background_probability(fit: EMFit, concentration) -> np.ndarray:
    """Posterior probability that each value is not above the background (NaN for missing values).

    .. math:: p_i = \\sum_{k:\\,\\mu_k \\le \\mu_{bg}} \\frac{\\pi_k \\mathcal N(t_i; \\mu_k, \\sigma_k^2)}
              {\\sum_j \\pi_j \\mathcal N(t_i; \\mu_j, \\sigma_j^2)}

    i.e. the posterior of the background component plus that of any lower component (natural
    sub-populations). Samples with :math:`p_i > 0.5` are "classified as background".

    Parameters
    ----------
    fit : EMFit
        Mixture from :func:`fit_em`.
    concentration : array-like of float
        Concentrations (same unit as the fit).

    Returns
    -------
    numpy.ndarray
        Probability (0-1) per value, same shape as ``concentration``.
    """
    c = np.asarray(concentration, dtype=float)
    out = np.full(c.shape, np.nan)
    ok = np.isfinite(c) & ((c > 0) if fit.log_transform else True)
    t = np.log(c[ok]) if fit.log_transform else c[ok]
    if t.size:
        mu = fit.model.means_[:, 0]
        low = mu <= mu[fit.background_component]
        out[ok] = fit.model.predict_proba(t[:, None])[:, low].sum(axis=1)
    return out


def _em_from_fit(fit: EMFit, t: np.ndarray):
    g = fit.model
    j = fit.background_component
    mu, sd = float(g.means_[j, 0]), float(np.sqrt(g.covariances_[j, 0, 0]))
    z = stats.norm.ppf(0.975)
    # values whose most probable component is the background or a lower one are "not above
    # background" (lower components are natural sub-populations, e.g. a poorer lithology)
    comp = g.predict(t[:, None])
    keep = g.means_[comp, 0] <= g.means_[j, 0]
    return mu, mu + z * sd, keep


def em_baseline(concentration, *, log_transform: bool = True, max_components: int = 4, min_weight: float = 0.4,
                seed: int = 0) -> BaselineEstimate:
    """EM baseline: geometric mean and 97.5th percentile of the background mixture component.

    .. math:: b = g^{-1}(\\mu_{bg}),\\qquad u = g^{-1}(\\mu_{bg} + z_{0.975}\\,\\sigma_{bg})

    See :func:`fit_em` for the mixture and the choice of the background component.
    ``n_retained`` counts the values whose most probable component is the background or a
    component with a lower mean (values not above the background).

    Parameters
    ----------
    concentration : array-like of float
        1-D concentrations (any unit; NaN ignored).
    log_transform : bool, default True
        Fit on natural logarithms.
    max_components : int, default 4
        Largest number of mixture components tried.
    min_weight : float, default 0.4
        Smallest weight of a component eligible as background.
    seed : int, default 0
        Random seed.

    Returns
    -------
    BaselineEstimate
        Baseline b and upper limit u (unit of the input), counts, retained mask and mixture details.

    References
    ----------
    Sun et al. (2025), sequential adaptive EM + GPR background workflow.
    Dempster, A.P. et al. (1977) J. R. Stat. Soc. B 39, 1-38. doi:10.1111/j.2517-6161.1977.tb01600.x
    """
    c, t = _as_values(concentration, log_transform=log_transform)
    fit = fit_em(c, log_transform=log_transform, max_components=max_components, min_weight=min_weight, seed=seed)
    mu, up, keep = _em_from_fit(fit, t)
    return BaselineEstimate(method="em", baseline=float(_back(mu, log_transform)),
                            upper_limit=float(_back(up, log_transform)), n_retained=int(keep.sum()),
                            n_total=int(c.size), retained=keep, log_transform=log_transform,
                            details={"n_components": fit.n_components, "means": fit.means.tolist(),
                                     "sds": fit.sds.tolist(), "weights": fit.weights.tolist(),
                                     "bic": fit.bic.to_dict(), "fit": fit,
                                     "baseline_transformed": mu, "upper_transformed": up})


def _em_batch(tb: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray, *,
              max_iter: int = 300, tol: float = 1e-3, reg_covar: float = 1e-6, counts: np.ndarray | None = None):
    """EM for one-dimensional Gaussian mixtures, run on all resamples (rows of ``tb``) at once.

    Same updates as :class:`sklearn.mixture.GaussianMixture` (``covariance_type='full'`` in one
    dimension, ``reg_covar`` added to each variance), started from the given parameters and
    stopped when the mean log-likelihood of every resample changes by less than ``tol`` (the
    criterion and default of scikit-learn).
    Hand-written because looping the library fit over 1000 resamples per group and metal
    costs several times more; checked against scikit-learn in the tests.

    ``counts`` (B, m): weighted form for binned data, ``tb`` then holds the m bin centres
    (shape (1, m) or (B, m)) and each row's values are the centres repeated ``counts`` times.

    Returns weights, means, variances, each (B, K).
    """
    if counts is None:
        B, n = tb.shape
        c = np.ones((1, tb.shape[1], 1))
    else:
        B = counts.shape[0]
        n = counts.sum(axis=1)[:, None]
        c = counts[:, :, None].astype(float)
    W = np.tile(weights, (B, 1))
    MU = np.tile(means, (B, 1))
    VAR = np.tile(variances, (B, 1))
    tt = tb[:, :, None]
    nn = np.broadcast_to(np.asarray(n, dtype=float).reshape(-1, 1), (B, 1))
    cc = np.broadcast_to(c, (B, *c.shape[1:])) if counts is not None else c
    prev = np.full(B, -np.inf)
    act = np.arange(B)  # resamples not yet converged (each stops on its own criterion)
    for _ in range(max_iter):
        t = tt if tt.shape[0] == 1 else tt[act]
        c_a = cc if counts is None else cc[act]
        w, mu, var = W[act], MU[act], VAR[act]
        logp = np.log(w)[:, None, :] - 0.5 * (np.log(2 * np.pi * var)[:, None, :]
                                              + (t - mu[:, None, :]) ** 2 / var[:, None, :])
        mx = logp.max(axis=2, keepdims=True)
        lse = mx + np.log(np.exp(logp - mx).sum(axis=2, keepdims=True))
        resp = np.exp(logp - lse) * c_a
        ll = (lse * c_a)[:, :, 0].sum(axis=1) / nn[act, 0]
        nk = resp.sum(axis=1) + 10 * np.finfo(float).eps
        W[act] = nk / nn[act]
        MU[act] = (resp * t).sum(axis=1) / nk
        VAR[act] = (resp * (t - MU[act][:, None, :]) ** 2).sum(axis=1) / nk + reg_covar
        done = np.abs(ll - prev[act]) < tol
        prev[act] = ll
        act = act[~done]
        if act.size == 0:
            break
    return W, MU, VAR


def _em_boot(fit: EMFit, t: np.ndarray, idx: np.ndarray, min_weight: float, seed: int, chunk: int = 250,
             n_bins: int = 256):
    """EM on each resample with the number of components fixed at the full-data choice,
    started from the full-data fit (conditional bootstrap; documented in the report).

    Above ``n_bins`` values the resamples are binned: each value is replaced by the centre of
    its bin (``n_bins`` equal bins over the data range, width range / n_bins, far below the
    component SDs) and EM runs on bin counts, which makes the cost independent of n.
    """
    g0 = fit.model
    z = stats.norm.ppf(0.975)
    if fit.n_components == 1:
        tb = t[idx]
        mu = tb.mean(axis=1)
        return mu, mu + z * tb.std(axis=1)
    binned = t.size > n_bins
    if binned:
        edges = np.linspace(t.min(), t.max(), n_bins + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        b_of = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
    base, up = [], []
    for i in range(0, idx.shape[0], chunk):
        part = idx[i:i + chunk]
        if binned:
            B = part.shape[0]
            flat = b_of[part] + n_bins * np.arange(B)[:, None]
            counts = np.bincount(flat.ravel(), minlength=B * n_bins).reshape(B, n_bins)
            w, mu, var = _em_batch(centres[None, :], g0.weights_, g0.means_[:, 0], g0.covariances_[:, 0, 0],
                                   counts=counts)
        else:
            w, mu, var = _em_batch(t[part], g0.weights_, g0.means_[:, 0], g0.covariances_[:, 0, 0])
        j = np.array([_background_index(mu[b], w[b], min_weight) for b in range(mu.shape[0])])
        r = np.arange(mu.shape[0])
        base.append(mu[r, j])
        up.append(mu[r, j] + z * np.sqrt(var[r, j]))
    return np.concatenate(base), np.concatenate(up)


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------
_BATCH = {"imea": _imea_batch, "imed": _imed_batch, "boxplot": _boxplot_batch, "rcf": _rcf_batch}


def bootstrap_baseline(concentration, *, method: str, n_bootstrap: int = 1000, confidence: float = 0.95,
                       seed: int = 0, log_transform: bool = True, em_fit: EMFit | None = None,
                       em_min_weight: float = 0.4, chunk: int | None = None) -> dict:
    """Percentile bootstrap interval of a method's baseline and upper limit.

    Resamples the values with replacement ``n_bootstrap`` times (``numpy.random.default_rng(seed)``),
    re-estimates, and returns the :math:`(1-\\alpha)/2` and :math:`(1+\\alpha)/2` percentiles
    (:math:`\\alpha` = ``confidence``) of the back-transformed estimates. Resamples where the method
    is undefined (e.g. no breakpoint pair) are dropped and counted in ``n_failed``.

    For ``method='em'`` the number of components is held at the full-data BIC choice
    (``em_fit``) and each resample's mixture is started from the full-data fit.

    Parameters
    ----------
    concentration : array-like of float
        1-D concentrations (any unit; NaN ignored).
    method : str
        One of :data:`METHODS`.
    n_bootstrap : int, default 1000
        Number of resamples.
    confidence : float, default 0.95
        Confidence level of the interval.
    seed : int, default 0
        Random seed.
    log_transform : bool, default True
        Work on natural logarithms.
    em_fit : EMFit, optional
        Full-data mixture for ``method='em'`` (fitted when None).
    em_min_weight : float, default 0.4
        Smallest weight of the background component (EM).
    chunk : int, optional
        Resamples evaluated per batch (memory only: the estimates do not depend on it). Default:
        as many as keep one batch near 8 million values (100 to 1,000 resamples).

    Returns
    -------
    dict: ci_low, ci_high (baseline), upper_ci_low, upper_ci_high, n_boot, n_failed.

    References
    ----------
    Efron, B., Tibshirani, R.J. (1993) An Introduction to the Bootstrap. Chapman & Hall.
    doi:10.1201/9780429246593
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    c, t = _as_values(concentration, log_transform=log_transform)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, t.size, size=(n_bootstrap, t.size))
    if method == "em":
        if em_fit is None:
            em_fit = fit_em(c, log_transform=log_transform, min_weight=em_min_weight, seed=seed)
        base, up = _em_boot(em_fit, t, idx, em_min_weight, seed)
    else:
        fn = _BATCH[method]
        if chunk is None:  # larger batches: fewer Python-level steps of the vectorised iterations
            chunk = int(np.clip(8_000_000 // t.size, 100, 1000))
        parts = [fn(t[idx[i:i + chunk]])[:2] for i in range(0, n_bootstrap, chunk)]  # memory: one chunk
        base = np.concatenate([p[0] for p in parts])
        up = np.concatenate([p[1] for p in parts])
    ok = np.isfinite(base) & np.isfinite(up)
    a = (1.0 - confidence) / 2.0
    qb = _back(np.quantile(base[ok], [a, 1 - a]), log_transform) if ok.any() else (np.nan, np.nan)
    qu = _back(np.quantile(up[ok], [a, 1 - a]), log_transform) if ok.any() else (np.nan, np.nan)
    return {"ci_low": float(qb[0]), "ci_high": float(qb[1]), "upper_ci_low": float(qu[0]),
            "upper_ci_high": float(qu[1]), "n_boot": int(ok.sum()), "n_failed": int((~ok).sum())}


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
_ESTIMATORS = {"imea": iterative_mean_baseline, "imed": iterative_median_baseline, "rcf": rcf_baseline,
               "boxplot": boxplot_baseline}

TABLE_COLUMNS = ["medium", "stratum", "metal", "method", "baseline", "upper_limit", "ci_low", "ci_high",
                 "n_retained", "n_total", "unit", "recommended", "upper_ci_low", "upper_ci_high",
                 "stratify_by", "log_transform", "note"]


def _one_group(values: np.ndarray, *, methods, log_transform, n_bootstrap, confidence, seed, fit_seed,
               em_max_components, em_min_weight) -> tuple[list[dict], list[tuple[str, str]]]:
    rows, failed = [], []
    for mi, m in enumerate(methods):
        try:
            rows.append(_one_method(values, m, mi, log_transform=log_transform, n_bootstrap=n_bootstrap,
                                    confidence=confidence, seed=seed, fit_seed=fit_seed,
                                    em_max_components=em_max_components, em_min_weight=em_min_weight))
        except ValueError as e:  # a method undefined for these values (e.g. RCF on tied values)
            failed.append((m, str(e)))
    return rows, failed


def _one_method(values, m, mi, *, log_transform, n_bootstrap, confidence, seed, fit_seed, em_max_components,
                em_min_weight) -> dict:
    s = int(np.random.SeedSequence([seed, mi]).generate_state(1)[0])
    if m == "em":
        # the mixture itself is fitted with the base seed, so that it equals fit_em(..., seed=seed)
        # as used by the adaptive background; only the bootstrap draws get group-specific seeds
        fit = fit_em(values, log_transform=log_transform, max_components=em_max_components,
                     min_weight=em_min_weight, seed=fit_seed)
        _, t = _as_values(values, log_transform=log_transform)
        mu, up, keep = _em_from_fit(fit, t)
        est = dict(baseline=float(_back(mu, log_transform)), upper_limit=float(_back(up, log_transform)),
                   n_retained=int(keep.sum()))
        ci = bootstrap_baseline(values, method="em", n_bootstrap=n_bootstrap, confidence=confidence, seed=s,
                                log_transform=log_transform, em_fit=fit, em_min_weight=em_min_weight)
    else:
        e = _ESTIMATORS[m](values, log_transform=log_transform)
        est = dict(baseline=e.baseline, upper_limit=e.upper_limit, n_retained=e.n_retained)
        if e.details.get("mad_zero_fallback"):
            est["note"] = ("more than half of the values tie at the median (MAD = 0); scale from the scaled "
                           "mean absolute deviation")
        if m == "rcf" and e.details.get("background_segment") == 3:
            est["note"] = "the top segment holds most values; baseline at its lower breakpoint"
        ci = bootstrap_baseline(values, method=m, n_bootstrap=n_bootstrap, confidence=confidence, seed=s,
                                log_transform=log_transform)
    return {"method": m, **est, "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
            "upper_ci_low": ci["upper_ci_low"], "upper_ci_high": ci["upper_ci_high"]}


def baseline_table(concentrations: pd.DataFrame, *, methods=METHODS, log_transform: bool = True,
                   strata: pd.DataFrame | None = None, n_bootstrap: int = 1000, confidence: float = 0.95,
                   seed: int = 0, em_max_components: int = 4, em_min_weight: float = 0.4,
                   min_samples: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Baselines of every medium, metal, stratum and method, with bootstrap intervals.

    Parameters
    ----------
    concentrations : long table with columns sample_id, medium, metal, value, unit (as
        :attr:`hmlib.io.RegionData.concentrations`).
    methods : methods to run (subset of :data:`METHODS`).
    strata : optional table indexed like the samples with columns sample_id, medium and one column
        per stratification variable; each column adds rows ``stratum = '<column>=<value>'``.
    n_bootstrap, confidence, seed : bootstrap settings; each group and method gets its own seed
        derived from ``seed``.
    min_samples : groups with fewer finite values are not estimated.

    Returns
    -------
    table : columns :data:`TABLE_COLUMNS` (``recommended`` from :func:`recommend_methods`).
    skipped : medium, stratum, metal, n_total, reason for every group not estimated.
    """
    need = {"sample_id", "medium", "metal", "value", "unit"}
    miss = need - set(concentrations.columns)
    if miss:
        raise ValueError(f"concentrations needs columns {sorted(need)}; missing {sorted(miss)}")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown {'method' if len(bad) == 1 else 'methods'} {', '.join(map(str, bad))}; expected "
                         f"some of {', '.join(METHODS)}")
    groups = [("all", "", concentrations)]
    if strata is not None:
        scols = [c for c in strata.columns if c not in ("sample_id", "medium")]
        merged = concentrations.merge(strata, on=["sample_id", "medium"], how="left")
        for col in scols:
            for val, sub in merged.groupby(col, sort=True):
                groups.append((f"{col}={val}", col, sub))
    rows, skipped = [], []
    gi = 0
    for stratum, col, sub in groups:
        for (medium, metal), g in sub.groupby(["medium", "metal"], sort=False):
            gi += 1
            v = g["value"].to_numpy(float)
            v = v[np.isfinite(v)]
            unit = str(g["unit"].iloc[0])
            if v.size < min_samples:
                skipped.append({"medium": medium, "stratum": stratum, "metal": metal, "n_total": int(v.size),
                                "reason": f"fewer than {min_samples} values"})
                continue
            if log_transform and np.any(v <= 0):
                skipped.append({"medium": medium, "stratum": stratum, "metal": metal, "n_total": int(v.size),
                                "reason": "zero values cannot be log-transformed"})
                continue
            seed_g = int(np.random.SeedSequence([seed, gi]).generate_state(1)[0])
            got, failed = _one_group(v, methods=list(methods), log_transform=log_transform,
                                     n_bootstrap=n_bootstrap, confidence=confidence, seed=seed_g, fit_seed=seed,
                                     em_max_components=em_max_components, em_min_weight=em_min_weight)
            for m, why in failed:
                skipped.append({"medium": medium, "stratum": stratum, "metal": metal, "n_total": int(v.size),
                                "reason": f"{m}: {why}"})
            for r in got:
                rows.append({"medium": medium, "stratum": stratum, "metal": metal, "note": "", **r,
                             "n_total": int(v.size), "unit": unit, "stratify_by": col, "log_transform": log_transform})
    table = pd.DataFrame(rows)
    if table.empty:
        table = pd.DataFrame(columns=TABLE_COLUMNS)
    else:
        table = recommend_methods(table)
    return table[TABLE_COLUMNS].reset_index(drop=True), pd.DataFrame(
        skipped, columns=["medium", "stratum", "metal", "n_total", "reason"])


def recommend_methods(table: pd.DataFrame) -> pd.DataFrame:
    """Mark one recommended method per (medium, stratum, metal): the median of the methods.

    Rule (after Wu et al. 2025, who chose the method whose baselines lay inside the range of
    the other methods): rank the methods' baselines; with an odd number of methods, recommend
    the middle one; with an even number, of the two middle ones the one with the narrower
    relative bootstrap interval :math:`(c_{hi} - c_{lo}) / b`. With one or two methods the
    narrower relative interval decides among all. Returns a copy with boolean ``recommended``.

    Parameters
    ----------
    table : DataFrame
        Baselines table with medium, stratum, metal, method, baseline, ci_low, ci_high.

    Returns
    -------
    pd.DataFrame
        A copy with boolean ``recommended``.

    References
    ----------
    Wu, Q. et al. (2025) Tracing threats across the land-marine transition areas (Wu et al. 2025, of
    this project), section 3.1.
    """
    need = {"medium", "stratum", "metal", "method", "baseline", "ci_low", "ci_high"}
    if not need <= set(table.columns):
        raise ValueError(f"table needs columns {sorted(need)}; got {list(table.columns)}")
    out = table.copy()
    out["recommended"] = False
    for _, g in out.groupby(["medium", "stratum", "metal"], sort=False):
        g = g[np.isfinite(g["baseline"])]
        if g.empty:
            continue
        g = g.sort_values("baseline", kind="stable")
        rel = ((g["ci_high"] - g["ci_low"]) / g["baseline"]).fillna(np.inf)
        n = len(g)
        if n <= 2:
            pick = rel.idxmin()
        elif n % 2 == 1:
            pick = g.index[n // 2]
        else:
            mid = g.index[[n // 2 - 1, n // 2]]
            pick = rel.loc[mid].idxmin()
        out.loc[pick, "recommended"] = True
    return out


def compare_with_literature(table: pd.DataFrame, literature: pd.Series) -> pd.DataFrame:
    """Baselines beside a literature background: ratio baseline / literature per row.

    Parameters
    ----------
    table : output of :func:`baseline_table`.
    literature : background values indexed by metal (same unit as the table), e.g. from
        :func:`hmlib.reference.background_values`.

    Returns
    -------
    Copy of ``table`` with ``literature`` and ``ratio_to_literature`` (NaN where the set has no value).
    """
    out = table.copy()
    lit = pd.Series(literature, dtype=float)
    out["literature"] = out["metal"].map(lit)
    out["ratio_to_literature"] = out["baseline"] / out["literature"]
    return out


# --------------------------------------------------------------------------------------------
# report helpers: methods text, reader tables, figures
# --------------------------------------------------------------------------------------------
def methods_text(*, methods, log_transform: bool, n_bootstrap: int, confidence: float, em_max_components: int,
                 em_min_weight: float, stratify_by, min_samples: int, reference_set: str | None) -> str:
    """Methods paragraph of the baselines section (pandoc markdown with math and citations).

    Parameters
    ----------
    methods : sequence of str
        Methods used (keys of :data:`METHODS`).
    log_transform : bool
        Whether estimation was on natural logs.
    n_bootstrap : int
        Number of bootstrap resamples.
    confidence : float
        Confidence level of the intervals.
    em_max_components : int
        Largest number of mixture components.
    em_min_weight : float
        Smallest weight of the EM background component.
    stratify_by : sequence of str
        Stratification columns (empty: none).
    min_samples : int
        Fewest samples for a stratum to be estimated.
    reference_set : str or None
        Literature background set compared with.

    Returns
    -------
    str
        Methods paragraphs (pandoc markdown).
    """
    scale = "natural-log" if log_transform else "raw"
    g = "e^{t}" if log_transform else "t"
    strat = (f" The estimation was repeated within each class of {_and(column_words(c) for c in stratify_by)}"
             f" (classes with fewer than {min_samples} samples are listed, not estimated)." if stratify_by else "")
    lines = {
        "imea": "**Iterative mean (IMEA)** [@zhang2020fuxin]: values outside $\\bar t \\pm 2s$ are dropped and "
                "the mean and SD recomputed until no value is dropped; $b = \\bar t$, $u = \\bar t + 2s$.",
        "imed": "**Iterative median (IMED)** [@reimann2005]: the same with the median $\\tilde t$ and the scaled "
                "median absolute deviation $\\mathrm{MAD} = 1.4826\\,\\mathrm{median}|t_i - \\tilde t|$; "
                "$b = \\tilde t$, $u = \\tilde t + 2\\,\\mathrm{MAD}$. Where more than half of the values tie "
                "at the median (non-detects substituted by one value), the MAD is zero; that pass then uses "
                "$1.2533\\,\\mathrm{mean}|t_i - \\tilde t|$ as the scale [@iglewicz1993], the iteration stops "
                "there, and the table notes it.",
        "rcf": "**Relative cumulative frequency (RCF)** [@matschullat2000; @xian2022pinqing]: the curve "
               "$F(t_{(i)}) = 100\\,i/n$ is fitted by a continuous three-segment linear regression "
               "$F = \\beta_0 + \\beta_1 t + \\beta_2 (t-\\psi_1)_+ + \\beta_3 (t-\\psi_2)_+$ whose breakpoints "
               "minimise the residual sum of squares (exhaustive search over pairs of candidate breakpoints, "
               "then three zoom rounds; the least-squares criterion of @muggeo2003). The segment holding most samples is "
               "the background population; the baseline is the breakpoint at its upper end, where the curve bends "
               "away from the background towards the anomalous values ($b = \\psi_1$ when the first segment holds "
               "most samples, else $b = \\psi_2$), and $u = \\psi_2$. Read this way, the RCF value is a threshold "
               "between populations rather than a central value, and is usually the highest of the methods "
               "[@wu2025tracing].",
        "boxplot": "**Boxplot** [@tukey1977]: Tukey's fences $Q_1 - 1.5\\,\\mathrm{IQR}$ and $Q_3 + 1.5\\,\\mathrm{IQR}$; "
                   "$b$ = median of the values inside the fences, $u = Q_3 + 1.5\\,\\mathrm{IQR}$.",
        "em": f"**Gaussian mixture (EM)** [@dempster1977; @sun2025adaptive]: mixtures of 1 to {em_max_components} "
              "normal components are fitted to $t$ by expectation-maximisation and the number of components "
              f"is chosen by the Bayesian information criterion [@schwarz1978]. The background component is the "
              f"one with the lowest mean among the components holding at least {em_min_weight:.0%} of the samples "
              "(smaller low components are usually natural sub-populations such as a poorer lithology); "
              "$b = \\mu_{bg}$, $u = \\mu_{bg} + 1.96\\,\\sigma_{bg}$ (its 97.5th percentile).",
    }
    items = "\n".join(f"- {lines[m]}" for m in methods)
    if reference_set:
        from .descriptive import reference_label

        lit = f" Baselines are compared with the natural background of {reference_label(reference_set)}."
    else:
        lit = ""
    return f"""
Geochemical baselines, the concentration range that natural and diffuse sources explain
[@matschullat2000; @reimann2005], were estimated per medium and metal with {len(methods)} methods on
{scale} values $t$; baseline $b$ and upper limit $u$ are back-transformed, $c = {g}$.{strat}

{items}

Confidence intervals ({confidence:.0%}) are percentile bootstrap intervals [@efron1993] from {n_bootstrap}
seeded resamples with replacement of each group's values; for EM the number of components is held at the
full-data choice and each resample's mixture starts from the full-data fit. **Recommendation rule**: after
@wu2025tracing, who preferred the method whose baselines fell inside the range spanned by the others, the
recommended method of each medium, stratum and metal is the one whose baseline is the median of the
methods' baselines (of an even number, the middle one with the narrower relative interval).{lit}
"""


def column_words(column: str) -> str:
    """A data column's name as words for prose (``Landuse`` -> "land use", ``road_dist_m`` -> "road dist m").

    Parameters
    ----------
    column : column name of the samples file.

    Returns
    -------
    str
        Lower-case words.
    """
    import re

    if str(column).lower() in ("ph", "ph_water", "ph_soil"):  # a symbol, not two words
        return "pH" + str(column)[2:].replace("_", " ")
    w = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(column)).replace("_", " ").lower()
    return {"landuse": "land use", "rock": "rock type", "soil": "soil type"}.get(w, w)



def display_table(table: pd.DataFrame, *, stratum: str | None = "all") -> pd.DataFrame:
    """Reader's version of the baselines table (units in headers, CI as text).

    Parameters
    ----------
    table : DataFrame
        Baselines table (medium, stratum, metal, method, baseline, ci_low, ci_high, upper_limit,
        n_retained, n_total, recommended, unit, optional note).
    stratum : str or None, default "all"
        Stratum shown (None: all strata, with a Stratum column).

    Returns
    -------
    DataFrame
        Formatted table: Medium, Metal, Method, Baseline, 95% CI, Upper limit, Retained / total,
        Recommended (and Note); single-valued Medium and Stratum columns dropped.
    """
    t = table if stratum is None else table[table["stratum"] == stratum]
    unit = t["unit"].iloc[0] if len(t) else ""
    from .outputs import format_table

    f = format_table(t[["baseline", "ci_low", "ci_high", "upper_limit"]])
    out = pd.DataFrame({
        "Medium": t["medium"].to_numpy(), "Stratum": t["stratum"].to_numpy(), "Metal": t["metal"].to_numpy(),
        "Method": t["method"].map(lambda m: METHOD_LABELS.get(m, m)).to_numpy(),
        f"Baseline ({unit})": f["baseline"].to_numpy(),
        "95% CI": (f["ci_low"] + "–" + f["ci_high"]).to_numpy(),
        f"Upper limit ({unit})": f["upper_limit"].to_numpy(),
        "Retained / total": (t["n_retained"].astype(int).astype(str) + " / " + t["n_total"].astype(int).astype(str)).to_numpy(),
        "Recommended": t["recommended"].map({True: "✔", False: ""}).to_numpy(),
    })
    if "note" in t.columns and t["note"].fillna("").astype(str).str.len().gt(0).any():
        out["Note"] = t["note"].fillna("").astype(str).to_numpy()
    if stratum is not None:
        out = out.drop(columns=["Stratum"])
    if out["Medium"].nunique() == 1:
        out = out.drop(columns=["Medium"])
    return out


def literature_comparison(table: pd.DataFrame, literature: pd.Series, *, stratum: str = "all") -> pd.DataFrame:
    """Per medium and metal: range of the methods, recommended baseline, literature value and ratio.

    Parameters
    ----------
    table : DataFrame
        Baselines table with a ``recommended`` column.
    literature : Series
        Literature background per metal (same unit).
    stratum : str, default "all"
        Stratum compared.

    Returns
    -------
    DataFrame
        One row per medium and metal: min/max_baseline, recommended_method, recommended_baseline,
        ci_low, ci_high, literature, ratio_to_literature, n_methods_above_literature, unit.
    """
    t = compare_with_literature(table[table["stratum"] == stratum], literature)
    rows = []
    for (medium, metal), g in t.groupby(["medium", "metal"], sort=False):
        rec = g[g["recommended"]].iloc[0]
        rows.append({"medium": medium, "metal": metal, "min_baseline": g["baseline"].min(),
                     "max_baseline": g["baseline"].max(), "recommended_method": rec["method"],
                     "recommended_baseline": rec["baseline"], "ci_low": rec["ci_low"], "ci_high": rec["ci_high"],
                     "literature": rec["literature"], "ratio_to_literature": rec["ratio_to_literature"],
                     "n_methods_above_literature": int((g["baseline"] > g["literature"]).sum()),
                     "unit": rec["unit"]})
    return pd.DataFrame(rows)


def _plain_log_ticks(axis) -> None:
    """Log axis with at most a few plain-number labels (no overlapping 2x10^1 minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=6))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_cumulative_frequency(values_by_metal: dict[str, np.ndarray], *, unit: str, log_transform: bool = True,
                              ncols: int = 4):
    """RCF curve per metal with the fitted three-segment line and its breakpoints (baseline, upper limit).

    Parameters
    ----------
    values_by_metal : dict of str to numpy.ndarray
        Concentrations per metal.
    unit : str
        Concentration unit, for the axis labels.
    log_transform : bool, default True
        Fit on natural logs and use a log x axis.
    ncols : int, default 4
        Number of panel columns.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per metal.
    """
    import matplotlib.pyplot as plt

    from .plots import small_multiples

    fig, axes = small_multiples(len(values_by_metal), ncols=ncols, panel_size=(1.75, 1.6))
    for ax, (metal, v) in zip(axes, values_by_metal.items()):
        curve = relative_cumulative_frequency(v, log_transform=log_transform)
        x, y = curve["transformed"].to_numpy(), curve["cumulative_frequency_pct"].to_numpy()
        ax.plot(curve["concentration"], y, ".", ms=2.2, color="0.45", label="samples")
        try:
            f = segmented_fit(x, y)
        except ValueError:
            f = None
        if f is not None:
            xs = np.linspace(x.min(), x.max(), 200)
            b = f["coefficients"]
            ys = b[0] + b[1] * xs + b[2] * np.maximum(xs - f["psi1"], 0) + b[3] * np.maximum(xs - f["psi2"], 0)
            ax.plot(_back(xs, log_transform), ys, color="C0", lw=1.0, label="segmented fit")
            for psi, col in ((f["psi1"], "C2"), (f["psi2"], "C3")):
                ax.axvline(float(_back(psi, log_transform)), color=col, lw=0.8, ls="--")
        if log_transform:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
        ax.set_title(metal, fontsize=8)
        ax.set_xlabel(f"{metal} ({unit})", fontsize=7)
        ax.set_ylabel("Cumulative frequency (%)", fontsize=7)
        ax.tick_params(labelsize=7)
    handles = [plt.Line2D([], [], color="0.45", marker=".", ls=""), plt.Line2D([], [], color="C0"),
               plt.Line2D([], [], color="C2", ls="--"), plt.Line2D([], [], color="C3", ls="--")]
    fig.legend(handles, ["samples", "segmented fit", "lower breakpoint", "upper breakpoint"],
               loc="lower center", ncol=4, fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_method_comparison(table: pd.DataFrame, *, literature: pd.Series | None = None, stratum: str = "all",
                           ncols: int = 4, literature_label: str = "literature background"):
    """Baseline (with bootstrap CI) and upper limit of each method per metal; literature value dashed.

    Parameters
    ----------
    table : DataFrame
        Baselines table (stratum, metal, method, baseline, ci_low, ci_high, upper_limit, recommended, unit).
    literature : Series, optional
        Literature background per metal.
    stratum : str, default "all"
        Stratum plotted.
    ncols : int, default 4
        Number of panel columns.
    literature_label : str, default "literature background"
        Legend name of the dashed literature line (e.g. "upper continental crust").

    Returns
    -------
    matplotlib.figure.Figure
        One panel per metal, log y axis.
    """
    import matplotlib.pyplot as plt

    from .plots import small_multiples

    t = table[table["stratum"] == stratum]
    metals = list(dict.fromkeys(t["metal"]))
    fig, axes = small_multiples(len(metals), ncols=ncols, panel_size=(1.75, 2.5))  # room for the method names
    for ax, metal in zip(axes, metals):
        g = t[t["metal"] == metal].reset_index(drop=True)
        xs = np.arange(len(g))
        err = np.vstack([g["baseline"] - g["ci_low"], g["ci_high"] - g["baseline"]]).clip(min=0)
        colors = ["C3" if r else "C0" for r in g["recommended"]]
        for i in range(len(g)):
            ax.errorbar(xs[i], g["baseline"][i], yerr=err[:, [i]], fmt="o", ms=3.5, color=colors[i], capsize=2, lw=0.9)
        ax.plot(xs, g["upper_limit"], "^", ms=3.2, mfc="none", color="0.35")
        if literature is not None and metal in literature.index and np.isfinite(literature[metal]):
            ax.axhline(literature[metal], color="0.2", ls="--", lw=0.8)
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set_xticks(xs, [_AXIS_LABELS.get(m, m) for m in g["method"]], fontsize=6, rotation=45, ha="right",
                      rotation_mode="anchor")
        ax.set_title(f"{metal} ({g['unit'].iloc[0]})", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    handles = [plt.Line2D([], [], color="C0", marker="o", ls=""), plt.Line2D([], [], color="C3", marker="o", ls=""),
               plt.Line2D([], [], color="0.35", marker="^", mfc="none", ls=""), plt.Line2D([], [], color="0.2", ls="--")]
    fig.legend(handles, ["baseline ± CI", "recommended", "upper limit", literature_label],
               loc="lower center", ncol=4, fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def strata_table(table: pd.DataFrame) -> pd.DataFrame:
    """Recommended baseline per stratum (rows) and metal (columns), for the report.

    Parameters
    ----------
    table : DataFrame
        Baselines table with medium, stratum, metal, baseline, recommended.

    Returns
    -------
    DataFrame
        Columns medium, stratum, then the recommended baseline of each metal (concentration unit).
    """
    rec = table[table["recommended"]]
    out = rec.pivot_table(index=["medium", "stratum"], columns="metal", values="baseline", aggfunc="first", sort=False)
    out = out.reindex(columns=list(dict.fromkeys(table["metal"])))
    return out.reset_index()


def background_values_table(table: pd.DataFrame, statistics: pd.DataFrame, *, stratum: str = "all") -> pd.DataFrame:
    """Per medium and metal: the recommended baseline beside the censored-data statistics and BTVs.

    Parameters
    ----------
    table : output of :func:`baseline_table` (with ``recommended``).
    statistics : output of :func:`hmlib.censored.background_statistics`.
    stratum : rows used.

    Returns
    -------
    DataFrame: medium, metal, unit, baseline, baseline_method, ci_low, ci_high, km_mean, ucl95,
    utl95_95, upl95, usl95, distribution, n, n_censored.
    """
    rec = table[(table["stratum"] == stratum) & table["recommended"].astype(bool)]
    rec = rec[["medium", "metal", "unit", "baseline", "method", "ci_low", "ci_high"]].rename(
        columns={"method": "baseline_method"})
    st = statistics[statistics["stratum"] == stratum][["medium", "metal", "km_mean", "ucl95", "utl95_95", "upl95",
                                                        "usl95", "distribution", "n", "n_censored"]]
    return rec.merge(st, on=["medium", "metal"], how="left").reset_index(drop=True)
