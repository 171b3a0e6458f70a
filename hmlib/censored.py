"""Background statistics of left-censored data (non-detects) as US EPA ProUCL and Helsel's NADA compute them.

Regulators set background from statistics that treat a non-detect as "somewhere below its
detection limit" rather than as a substituted number [@helsel2012; @epa2022proucl]. Per
medium, stratum and metal this module computes

- the **Kaplan-Meier** (KM) mean and standard deviation for left-censored data with any
  number of detection limits (the product-limit estimator on flipped data, Helsel 2012,
  ch. 6);
- **robust regression on order statistics** (ROS) with Hirsch-Stedinger plotting positions
  (Helsel 2012, ch. 6): log detected values regressed on normal quantiles, non-detects imputed
  from the fit, statistics computed from detected plus imputed values;
- the **distribution** of the detected values chosen by goodness-of-fit tests in ProUCL's order
  (normal, gamma, lognormal, else nonparametric);
- the **UCL95** of the mean by rules modelled on ProUCL's recommendations;
- the background threshold values (**BTV**): upper tolerance limit UTL95-95, upper prediction
  limit UPL95 and upper simultaneous limit USL95, parametric (normal, lognormal, gamma by
  the Wilson-Hilferty cube-root approximation) or nonparametric (order statistics).

Differences from ProUCL 5.2, stated because a reader comparing numbers needs them:
the gamma goodness of fit is a Shapiro-Wilk (n <= 50) or Lilliefors test of the Wilson-Hilferty
cube roots (ProUCL: Anderson-Darling and Kolmogorov-Smirnov with simulated critical values);
the gamma UCL is the approximate gamma UCL for every n (ProUCL uses an adjusted level below
n = 50); the lognormal UCL is a KM Chebyshev or bootstrap UCL, never Land's H-UCL (which
ProUCL itself discourages for skewed data). All numbers are reproducible (seeded bootstrap).

References
----------
Helsel, D.R. (2012) Statistics for Censored Environmental Data Using Minitab and R, 2nd ed. Wiley.
doi:10.1002/9781118162729
Singh, A., Maichle, R. (2022) ProUCL Version 5.2 Technical Guide. US EPA, EPA/600/R-07/041.
Kaplan, E.L., Meier, P. (1958) Nonparametric estimation from incomplete observations. J. Am.
Stat. Assoc. 53, 457-481. doi:10.1080/01621459.1958.10501452
Hirsch, R.M., Stedinger, J.R. (1987) Plotting positions for historical floods and their precision.
Water Resour. Res. 23, 715-727. doi:10.1029/WR023i004p00715
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "KaplanMeier",
    "kaplan_meier",
    "ros_impute",
    "choose_distribution",
    "normal_tolerance_factor",
    "nonparametric_utl_rank",
    "ucl95",
    "btv",
    "group_statistics",
    "background_statistics",
    "STAT_COLUMNS",
]

STAT_COLUMNS = ["medium", "stratum", "metal", "n", "n_censored", "detection_limits", "distribution",
                "km_mean", "km_sd", "ros_mean", "ros_sd", "ucl95", "ucl95_method", "utl95_95", "upl95", "usl95",
                "btv_method", "bootstrap", "unit", "stratify_by", "note"]


# --------------------------------------------------------------------------------------------
# Kaplan-Meier for left-censored data
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KaplanMeier:
    """Kaplan-Meier estimate of a left-censored sample.

    Attributes
    ----------
    mean, sd : KM mean and standard deviation (sd with the n / (n - 1) correction, so that it
        equals the sample SD when nothing is censored).
    se : standard error of the KM mean (Kaplan & Meier 1958, with ProUCL's m / (m - 1) factor,
        m = number of detected values).
    support : distinct detected values (ascending) and, first, the lowest observation where
        probability mass is left below the smallest detect.
    mass : probability of each support value (sums to 1).
    cdf : :math:`\\hat F(x) = P(X \\le x)` at each support value.
    n, n_censored : sample size and number of non-detects.
    """

    mean: float
    sd: float
    se: float
    support: np.ndarray
    mass: np.ndarray
    cdf: np.ndarray
    n: int
    n_censored: int


def _check(values, censored) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(values, dtype=float)
    c = np.asarray(censored, dtype=bool)
    if x.ndim != 1 or x.shape != c.shape:
        raise ValueError(f"values and censored must be 1-D of equal length, got shapes {x.shape} and {c.shape}")
    ok = np.isfinite(x)
    x, c = x[ok], c[ok]
    if np.any(x < 0):
        raise ValueError(f"values must be >= 0 (non-detects carry their detection limit), got min {x.min():g}")
    if (~c).sum() < 1:
        raise ValueError("at least one detected value is needed")
    return x, c


def kaplan_meier(values, censored) -> KaplanMeier:
    """Kaplan-Meier mean, SD and SE of left-censored data with any number of detection limits.

    The product-limit estimator on flipped data (Helsel 2012, section 6.3): with the distinct
    detected values :math:`u_1 > u_2 > \\dots > u_J`, :math:`d_j` detects equal to :math:`u_j` and
    :math:`n_j` observations at or below :math:`u_j` (a non-detect counts with its detection limit),

    .. math::

        \\hat P(X < u_j) = \\prod_{k \\le j} \\Big(1 - \\frac{d_k}{n_k}\\Big),\\qquad
        \\hat\\mu = \\sum_j u_j\\,\\hat p_j + x_{\\min}\\,\\hat P(X < u_J)

    where :math:`\\hat p_j` is the jump of the estimated distribution at :math:`u_j`, and the mass
    left below the smallest detect sits at the smallest observation :math:`x_{\\min}` (the
    restricted mean of the flipped survival curve, as NADA's ``cenfit`` and survival software
    compute it). The SE is that of Kaplan & Meier (1958) on the flipped scale,
    :math:`\\widehat{\\mathrm{var}} = \\frac{m}{m-1}\\sum_j A_j^2 \\frac{d_j}{n_j (n_j - d_j)}`
    with :math:`A_j` the area under the flipped survival curve beyond :math:`u_j` (ProUCL 5.2).

    Parameters
    ----------
    values : detected concentrations, and the detection limit for each non-detect.
    censored : True for a non-detect.

    Returns
    -------
    KaplanMeier

    References
    ----------
    Kaplan, E.L., Meier, P. (1958) J. Am. Stat. Assoc. 53, 457-481. doi:10.1080/01621459.1958.10501452
    Helsel, D.R. (2012) Statistics for Censored Environmental Data, 2nd ed. doi:10.1002/9781118162729
    """
    x, c = _check(values, censored)
    n, m = x.size, int((~c).sum())
    u_asc, d_asc = np.unique(x[~c], return_counts=True)
    r_asc = np.searchsorted(np.sort(x), u_asc, side="right")  # observations at or below u (NDs at their DL)
    u, d, r = u_asc[::-1], d_asc[::-1].astype(float), r_asc[::-1].astype(float)  # descending
    surv = np.cumprod(1.0 - d / r)  # P(X < u_j)
    prev = np.r_[1.0, surv[:-1]]
    p = prev - surv  # mass at u_j
    x_min = float(x.min())
    rest = float(surv[-1])  # P(X < smallest detect): mass left at the smallest observation
    support, inv = np.unique(np.r_[x_min, u[::-1]], return_inverse=True)
    mass = np.bincount(inv, weights=np.r_[rest, p[::-1]], minlength=support.size)
    mean = float(np.sum(support * mass))
    var = float(np.sum(mass * (support - mean) ** 2))
    sd = float(np.sqrt(var * n / (n - 1))) if n > 1 else np.nan
    # SE on the flipped scale: A_j = area under the flipped survival curve beyond u_j
    #   = integral from x_min to u_j of P(X < x) dx = sum_{k >= j} surv_k (u_k - u_{k+1}), u_{J+1} = x_min
    lower = np.r_[u[1:], x_min]
    A = np.cumsum((surv * np.maximum(u - lower, 0.0))[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(r - d > 0, A ** 2 * d / (r * (r - d)), 0.0)
    se = float(np.sqrt(terms.sum() * m / (m - 1))) if m > 1 else np.nan
    cdf = np.cumsum(mass)
    return KaplanMeier(mean=mean, sd=sd, se=se, support=support, mass=mass, cdf=cdf, n=int(n),
                       n_censored=int(c.sum()))


# --------------------------------------------------------------------------------------------
# robust ROS
# --------------------------------------------------------------------------------------------
def _plotting_positions(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Hirsch-Stedinger plotting positions for detects and non-detects (Helsel 2012, section 6.4)."""
    dls = np.unique(x[c])
    # detects below the lowest detection limit get their own band [0, DL_1) (exceedance 1)
    bounds = np.r_[0.0, dls] if np.any(~c & (x < dls.min())) else dls
    J = bounds.size
    upper = np.r_[bounds[1:], np.inf]
    A = np.array([np.sum(~c & (x >= bounds[j]) & (x < upper[j])) for j in range(J)], dtype=float)
    B = np.array([np.sum(~c & (x < bounds[j])) + np.sum(c & (x <= bounds[j])) for j in range(J)], dtype=float)
    pe = np.zeros(J + 1)  # exceedance probability of bounds[j]; pe[J] = 0 above the top
    for j in range(J - 1, -1, -1):
        denom = A[j] + B[j]
        pe[j] = pe[j + 1] + (A[j] / denom if denom > 0 else 0.0) * (1.0 - pe[j + 1])
    pp = np.empty(x.size)
    for j in range(J):
        det = np.flatnonzero(~c & (x >= bounds[j]) & (x < upper[j]))
        det = det[np.argsort(x[det], kind="stable")]
        pp[det] = (1 - pe[j]) + (pe[j] - pe[j + 1]) * np.arange(1, det.size + 1) / (det.size + 1)
        nd = np.flatnonzero(c & (x == bounds[j]))
        pp[nd] = (1 - pe[j]) * np.arange(1, nd.size + 1) / (nd.size + 1)
    return pp


def ros_impute(values, censored) -> np.ndarray:
    """Robust regression on order statistics: non-detects imputed from a lognormal fit to the detects.

    .. math::

        \\ln x_i = \\beta_0 + \\beta_1\\,\\Phi^{-1}(p_i) \\text{ (detects)},\\qquad
        \\hat x_k = e^{\\beta_0 + \\beta_1 \\Phi^{-1}(p_k)} \\text{ (non-detects)}

    with Hirsch-Stedinger plotting positions :math:`p` that handle several detection limits.
    Detected values are kept as they are ("robust" ROS). Hand-written (rather than
    ``statsmodels.imputation.ros.impute_ros``) to keep the input order and several detection
    limits per group in a NumPy interface; checked against statsmodels in the tests.

    Parameters
    ----------
    values : detected concentrations and detection limits (positive).
    censored : True for a non-detect.

    Returns
    -------
    ndarray of the values with the non-detects imputed, in input order (finite inputs only).

    References
    ----------
    Helsel, D.R. (2012) Statistics for Censored Environmental Data, 2nd ed., ch. 6.
    doi:10.1002/9781118162729
    Helsel, D.R., Cohn, T.A. (1988) Estimation of descriptive statistics for multiply censored water
    quality data. Water Resour. Res. 24, 1997-2004. doi:10.1029/WR024i012p01997
    """
    x, c = _check(values, censored)
    if not c.any():
        return x.copy()
    if np.any(x <= 0):
        raise ValueError("ROS needs positive values (log scale)")
    if (~c).sum() < 2:
        raise ValueError("ROS needs at least 2 detected values")
    pp = _plotting_positions(x, c)
    z = stats.norm.ppf(pp)
    b1, b0 = np.polyfit(z[~c], np.log(x[~c]), 1)
    out = x.copy()
    out[c] = np.exp(b0 + b1 * z[c])
    return out


# --------------------------------------------------------------------------------------------
# goodness of fit, UCL, BTV
# --------------------------------------------------------------------------------------------
def _normality_p(v: np.ndarray) -> float:
    """Shapiro-Wilk p (n <= 50) or Lilliefors p (n > 50), ProUCL's choice of normality test."""
    if v.size < 3 or np.ptp(v) == 0:
        return np.nan
    if v.size <= 50:
        return float(stats.shapiro(v).pvalue)
    from statsmodels.stats.diagnostic import lilliefors

    return float(lilliefors(v, dist="norm", pvalmethod="table")[1])


def choose_distribution(detects, *, alpha: float = 0.05) -> tuple[str, dict]:
    """Distribution of the detected values by goodness of fit, in ProUCL's order of preference.

    Normal (Shapiro-Wilk for n <= 50, Lilliefors above), then gamma (the same test on the
    Wilson-Hilferty cube roots :math:`x^{1/3}`, approximately normal for gamma data), then
    lognormal (the test on :math:`\\ln x`); the first not rejected at level ``alpha`` is chosen,
    else ``nonparametric``. Fewer than 3 distinct detected values: ``nonparametric``.

    Parameters
    ----------
    detects : detected values (positive).
    alpha : level of the tests.

    Returns
    -------
    (distribution, p-values by distribution)

    References
    ----------
    Singh, A., Maichle, R. (2022) ProUCL 5.2 Technical Guide, EPA/600/R-07/041, ch. 2 and 3.
    Wilson, E.B., Hilferty, M.M. (1931) The distribution of chi-square. PNAS 17, 684-688.
    doi:10.1073/pnas.17.12.684
    """
    v = np.asarray(detects, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    p = {"normal": _normality_p(v), "gamma": _normality_p(np.cbrt(v)), "lognormal": _normality_p(np.log(v))}
    for dist in ("normal", "gamma", "lognormal"):
        if np.isfinite(p[dist]) and p[dist] > alpha:
            return dist, p
    return "nonparametric", p


def normal_tolerance_factor(n: int, *, coverage: float = 0.95, confidence: float = 0.95) -> float:
    """One-sided normal tolerance factor :math:`K` of :math:`\\bar x + K s` (exact, noncentral t).

    .. math:: K = \\frac{t'_{n-1,\\,\\gamma}\\big(z_{p}\\sqrt n\\big)}{\\sqrt n}

    with :math:`t'` the :math:`\\gamma`-quantile of the noncentral t distribution with
    :math:`n-1` degrees of freedom and noncentrality :math:`z_p \\sqrt n` (``scipy.stats.nct``).

    Parameters
    ----------
    n : sample size (>= 2).
    coverage : proportion p of the population below the limit.
    confidence : confidence level gamma.

    Returns
    -------
    float

    References
    ----------
    Krishnamoorthy, K., Mathew, T. (2009) Statistical Tolerance Regions. Wiley. doi:10.1002/9780470473900
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    return float(stats.nct.ppf(confidence, n - 1, stats.norm.ppf(coverage) * np.sqrt(n)) / np.sqrt(n))


def nonparametric_utl_rank(n: int, *, coverage: float = 0.95, confidence: float = 0.95) -> tuple[int, float]:
    """Rank r of the order statistic :math:`x_{(r)}` that is a nonparametric UTL, and its confidence.

    :math:`P\\{F(x_{(r)}) \\ge p\\} = P\\{\\mathrm{Bin}(n, p) \\le r - 1\\}`; r is the smallest rank with
    this probability >= ``confidence``; if even :math:`x_{(n)}` falls short (n < 59 for 95-95), r = n
    and the achieved confidence is returned.

    Parameters
    ----------
    n : sample size.
    coverage, confidence : p and the confidence level.

    Returns
    -------
    (r, achieved confidence)

    References
    ----------
    Conover, W.J. (1999) Practical Nonparametric Statistics, 3rd ed. Wiley, section 3.2.
    """
    ranks = np.arange(1, n + 1)
    conf = stats.binom.cdf(ranks - 1, n, coverage)
    ok = np.flatnonzero(conf >= confidence)
    r = int(ranks[ok[0]]) if ok.size else n
    return r, float(conf[r - 1])


def _km_mean_rows(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Kaplan-Meier mean of each row of ``x`` (non-detect flags ``c``), as :func:`kaplan_meier`.

    The same product-limit estimator on the rows sorted once: at the last position k of each
    group of tied values, :math:`r = k + 1` observations lie at or below the value and :math:`d`
    detects equal it; the factor :math:`1 - d/r` (1 elsewhere) is multiplied from the top down.
    Vectorised over rows for the bootstrap and its BCa jackknife, which otherwise call
    :func:`kaplan_meier` once per resample (and n times for the jackknife). A row without detects
    gets its smallest value. Checked against :func:`kaplan_meier` in tests/test_scale.py.
    """
    order = np.argsort(x, axis=-1, kind="stable")
    xs = np.take_along_axis(x, order, axis=-1)
    det = ~np.take_along_axis(c, order, axis=-1)
    n = xs.shape[-1]
    k = np.arange(n)
    last = np.ones(xs.shape, bool)
    last[..., :-1] = xs[..., 1:] != xs[..., :-1]
    cd = np.cumsum(det, axis=-1)
    prev_last = np.maximum.accumulate(np.where(last, k, -1), axis=-1)  # last position of the group so far
    prev_last = np.concatenate([np.full((*xs.shape[:-1], 1), -1), prev_last[..., :-1]], axis=-1)
    cd_prev = np.where(prev_last >= 0, np.take_along_axis(cd, np.maximum(prev_last, 0), axis=-1), 0)
    d = np.where(last, cd - cd_prev, 0)
    factor = np.where(d > 0, 1.0 - d / (k + 1.0), 1.0)
    surv = np.cumprod(factor[..., ::-1], axis=-1)[..., ::-1]  # P(X < value at k)
    above = np.concatenate([surv[..., 1:], np.ones((*xs.shape[:-1], 1))], axis=-1)
    return (xs * (above - surv)).sum(axis=-1) + xs[..., 0] * surv[..., 0]


def _gamma_ucl(mean: float, sd: float, n: int, alpha: float) -> float:
    """Approximate gamma UCL :math:`2 n k^* \\bar x / \\chi^2_{2nk^*,\\alpha}` with ProUCL's
    bias-corrected shape :math:`k^* = (n-3)\\hat k / n + 2/(3n)`, :math:`\\hat k = \\bar x^2 / s^2`."""
    k = mean ** 2 / sd ** 2
    k_star = max((n - 3) * k / n + 2 / (3 * n), 1e-3)
    nu = 2 * n * k_star
    return float(nu * mean / stats.chi2.ppf(alpha, nu))


def ucl95(values, censored, *, distribution: str, confidence: float = 0.95, n_bootstrap: int = 2000,
          seed: int = 0) -> tuple[float, str, str]:
    """Upper confidence limit of the mean by rules modelled on ProUCL 5.2.

    ========================  ===============================================================
    distribution (detects)    UCL
    ========================  ===============================================================
    normal                    KM (t): :math:`\\hat\\mu_{KM} + t_{0.95,n-1}\\,\\mathrm{SE}_{KM}`
    gamma                     gamma KM: approximate gamma UCL with :math:`\\hat k = \\hat\\mu_{KM}^2/\\hat\\sigma_{KM}^2`
    lognormal, nonparametric  sd of ln(detects) < 0.5: KM BCa bootstrap; < 1: 95 % KM
                              Chebyshev; < 2: 97.5 % KM Chebyshev; else 99 % KM Chebyshev
    ========================  ===============================================================

    Chebyshev: :math:`\\hat\\mu_{KM} + \\sqrt{1/\\alpha - 1}\\,\\mathrm{SE}_{KM}`. Without
    non-detects the KM statistics equal the sample mean, SD and SE, so the same rules give
    Student's t, the approximate gamma and Chebyshev UCLs of uncensored data.

    Parameters
    ----------
    values, censored : as in :func:`kaplan_meier`.
    distribution : from :func:`choose_distribution`.
    confidence : 1 - alpha of the UCL (0.95).
    n_bootstrap, seed : resamples and seed of the BCa bootstrap (where used).

    Returns
    -------
    (ucl, method label, bootstrap description or "")

    References
    ----------
    Singh, A., Maichle, R. (2022) ProUCL Version 5.2 Technical Guide, EPA/600/R-07/041, ch. 2 and 4.
    """
    x, c = _check(values, censored)
    km = kaplan_meier(x, c)
    n, alpha = x.size, 1 - confidence
    pre = "KM " if c.any() else ""
    if distribution == "normal":
        return km.mean + stats.t.ppf(confidence, n - 1) * km.se, f"{pre}Student's t", ""
    if distribution == "gamma" and km.sd > 0:
        return _gamma_ucl(km.mean, km.sd, n, alpha), f"{'gamma KM' if c.any() else 'approximate gamma'}", ""
    det = x[~c]
    s_log = float(np.std(np.log(det[det > 0]), ddof=1)) if (det > 0).sum() > 1 else np.inf
    if s_log < 0.5:
        rng = np.random.default_rng(seed)
        if c.any():  # the KM mean of each resample and jackknife sample at once (_km_mean_rows)
            res = stats.bootstrap((x, c.astype(float)), lambda a, b, axis=-1: _km_mean_rows(a, b > 0.5),
                                  paired=True, vectorized=True, n_resamples=n_bootstrap,
                                  confidence_level=1 - 2 * alpha, method="BCa", random_state=rng, batch=200)
        else:
            # no non-detects: the KM mean is the sample mean, so the statistic is vectorised (the same
            # resamples; the BCa jackknife no longer costs n KM fits, which made this O(n^2 log n)),
            # in batches of 200 resamples (memory independent of n_bootstrap). Same interval to
            # rounding (tests/test_scale.py checks it against the KM statistic).
            res = stats.bootstrap((x,), np.mean, vectorized=True, n_resamples=n_bootstrap,
                                  confidence_level=1 - 2 * alpha, method="BCa", random_state=rng, batch=200)
        hi = float(res.confidence_interval.high)
        if np.isfinite(hi):
            return hi, f"{pre}BCa bootstrap", f"BCa, {n_bootstrap} resamples"
    level = 0.95 if s_log < 1 else 0.975 if s_log < 2 else 0.99
    a = 1 - level
    return km.mean + np.sqrt(1 / a - 1) * km.se, f"{level:.1%} {pre}Chebyshev".replace(".0%", "%"), ""


def btv(values, censored, *, distribution: str, coverage: float = 0.95, confidence: float = 0.95) -> dict:
    """Background threshold values: UTL95-95, UPL95 and USL95 (ProUCL 5.2, ch. 3 and 5).

    With :math:`m, s` the mean and SD on the distribution's scale (normal: KM mean and SD;
    lognormal: of :math:`\\ln x`; gamma: of :math:`x^{1/3}`, the Wilson-Hilferty approximation;
    lognormal and gamma from ROS-imputed values when there are non-detects):

    .. math::

        \\mathrm{UTL} = g^{-1}(m + K s),\\quad
        \\mathrm{UPL} = g^{-1}\\big(m + t_{0.95,n-1}\\, s\\sqrt{1 + 1/n}\\big),\\quad
        \\mathrm{USL} = g^{-1}(m + d_{\\max}\\, s)

    with :math:`K` from :func:`normal_tolerance_factor` and :math:`d_{\\max}` the 5 % critical
    value of the largest normed residual (Grubbs), :math:`d_{\\max} = \\frac{n-1}{\\sqrt n}
    \\sqrt{t^2/(n - 2 + t^2)}`, :math:`t = t_{1 - 0.05/n,\\,n-2}`. Nonparametric: UTL = the order
    statistic of :func:`nonparametric_utl_rank`, UPL = :math:`x_{(\\lceil 0.95 (n+1) \\rceil)}`
    (at most the maximum), USL = the maximum; order statistics of the ROS-imputed values.

    Parameters
    ----------
    values, censored : as in :func:`kaplan_meier`.
    distribution : normal, gamma, lognormal or nonparametric.
    coverage, confidence : of the UTL (95 % coverage with 95 % confidence).

    Returns
    -------
    dict: utl95_95, upl95, usl95, btv_method, note.

    References
    ----------
    Singh, A., Maichle, R. (2022) ProUCL Version 5.2 Technical Guide, EPA/600/R-07/041, ch. 3.
    Grubbs, F.E. (1969) Procedures for detecting outlying observations in samples. Technometrics 11,
    1-21. doi:10.1080/00401706.1969.10490657
    """
    x, c = _check(values, censored)
    n = x.size
    note = ""
    filled = ros_impute(x, c) if c.any() and (~c).sum() >= 2 and np.all(x > 0) else x
    if distribution == "normal":
        km = kaplan_meier(x, c)
        m, s, back = km.mean, km.sd, (lambda v: v)
    elif distribution in ("lognormal", "gamma"):
        fwd, back = (np.log, np.exp) if distribution == "lognormal" else (np.cbrt, lambda v: np.maximum(v, 0) ** 3)
        y = fwd(filled)
        m, s = float(np.mean(y)), float(np.std(y, ddof=1))
    else:
        xs = np.sort(filled)
        r, conf = nonparametric_utl_rank(n, coverage=coverage, confidence=confidence)
        if conf < confidence:
            note = f"nonparametric UTL is the maximum, with {conf:.0%} confidence only ({n} values; 59 give 95%)"
        upl_rank = min(int(np.ceil(coverage * (n + 1))), n)
        return {"utl95_95": float(xs[r - 1]), "upl95": float(xs[upl_rank - 1]), "usl95": float(xs[-1]),
                "btv_method": "order statistics", "note": note}
    k = normal_tolerance_factor(n, coverage=coverage, confidence=confidence)
    t = stats.t.ppf(1 - 0.05 / n, n - 2) if n > 2 else np.nan
    dmax = (n - 1) / np.sqrt(n) * np.sqrt(t ** 2 / (n - 2 + t ** 2)) if n > 2 else np.nan
    label = {"normal": "normal" + (" (KM)" if c.any() else ""),
             "lognormal": "lognormal" + (" (ROS)" if c.any() else ""),
             "gamma": "gamma, Wilson-Hilferty" + (" (ROS)" if c.any() else "")}[distribution]
    return {"utl95_95": float(back(m + k * s)),
            "upl95": float(back(m + stats.t.ppf(confidence, n - 1) * s * np.sqrt(1 + 1 / n))),
            "usl95": float(back(m + dmax * s)), "btv_method": label, "note": note}


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def group_statistics(values, censored, *, confidence: float = 0.95, coverage: float = 0.95,
                     n_bootstrap: int = 2000, seed: int = 0, min_detects: int = 3) -> dict:
    """Every statistic of one group (one medium, stratum and metal) as a dict of the table's columns.

    Parameters
    ----------
    values : detected values and detection limits of the non-detects.
    censored : True for a non-detect.
    confidence, coverage : of the UCL and BTVs (95 %, 95-95).
    n_bootstrap, seed : of the bootstrap UCL where the rules choose it.
    min_detects : fewer detected values: only n, n_censored, detection limits and KM (if any
        detect) are given, and ``note`` says why.

    Returns
    -------
    dict with the columns of :data:`STAT_COLUMNS` except medium, stratum, metal, unit, stratify_by.
    """
    x, c = _check(values, censored)
    dls = np.unique(x[c])
    row = {"n": int(x.size), "n_censored": int(c.sum()),
           "detection_limits": "; ".join(f"{v:g}" for v in dls), "distribution": None, "km_mean": np.nan,
           "km_sd": np.nan, "ros_mean": np.nan, "ros_sd": np.nan, "ucl95": np.nan, "ucl95_method": "",
           "utl95_95": np.nan, "upl95": np.nan, "usl95": np.nan, "btv_method": "", "bootstrap": "", "note": ""}
    km = kaplan_meier(x, c)
    row.update(km_mean=km.mean, km_sd=km.sd)
    det = x[~c]
    if det.size < min_detects or np.unique(det).size < 3:
        row["note"] = (f"{det.size} detected value{'s' if det.size != 1 else ''}: too few for a distribution, "
                       "UCL or threshold values")
        return row
    if np.all(x > 0):
        filled = ros_impute(x, c)
        row.update(ros_mean=float(filled.mean()), ros_sd=float(filled.std(ddof=1)))
    dist, _ = choose_distribution(det)
    row["distribution"] = dist
    u, how, boot = ucl95(x, c, distribution=dist, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed)
    row.update(ucl95=u, ucl95_method=how, bootstrap=boot)
    b = btv(x, c, distribution=dist, coverage=coverage, confidence=confidence)
    row.update(utl95_95=b["utl95_95"], upl95=b["upl95"], usl95=b["usl95"], btv_method=b["btv_method"], note=b["note"])
    if c.mean() > 0.5:
        row["note"] = "; ".join(filter(None, [row["note"], f"{c.mean():.0%} non-detects: statistics uncertain"]))
    return row


def detection_limits_of(concentrations: pd.DataFrame, *, substitution_factor: float | None = None) -> np.ndarray:
    """Detection limit of each row of a long concentration table (NaN for detected values).

    Uses the ``detection_limit`` column (kept by :func:`hmlib.io.load_region`); without it, the
    substituted value divided by ``substitution_factor`` (DL/2 substitution: factor 0.5).
    """
    cens = concentrations["censored"].astype(bool).to_numpy()
    if "detection_limit" in concentrations.columns:
        dl = concentrations["detection_limit"].to_numpy(float)
    elif substitution_factor:
        dl = concentrations["value"].to_numpy(float) / substitution_factor
    else:
        raise ValueError("non-detects need a detection_limit column or a non-zero substitution factor")
    return np.where(cens, dl, np.nan)


def background_statistics(concentrations: pd.DataFrame, *, strata: pd.DataFrame | None = None,
                          substitution_factor: float | None = None, confidence: float = 0.95,
                          coverage: float = 0.95, n_bootstrap: int = 2000, seed: int = 0,
                          min_samples: int = 8) -> pd.DataFrame:
    """Censored-data background statistics per medium, stratum and metal (``background_statistics.csv``).

    Parameters
    ----------
    concentrations : long table with sample_id, medium, metal, value, unit, censored and
        (preferably) detection_limit; ``value`` of a non-detect is the substituted value.
    strata : optional sample_id, medium and stratification columns; each column adds rows with
        ``stratum = '<column>=<class>'`` besides the ``all`` rows.
    substitution_factor : value = DL x factor for non-detects, used only without a
        detection_limit column.
    confidence, coverage, n_bootstrap : of the UCL and BTVs.
    seed : seed of the bootstrap UCLs (one derived seed per group).
    min_samples : groups with fewer values are left out.

    Returns
    -------
    DataFrame with columns :data:`STAT_COLUMNS`.

    References
    ----------
    Singh, A., Maichle, R. (2022) ProUCL Version 5.2 Technical Guide, EPA/600/R-07/041.
    Helsel, D.R. (2012) Statistics for Censored Environmental Data, 2nd ed. doi:10.1002/9781118162729
    """
    need = {"sample_id", "medium", "metal", "value", "censored"}
    if not need <= set(concentrations.columns):
        raise ValueError(f"concentrations need columns {sorted(need)}, got {list(concentrations.columns)}")
    conc = concentrations.copy()
    dl = detection_limits_of(conc, substitution_factor=substitution_factor)
    cens = conc["censored"].astype(bool).to_numpy()
    conc["_x"] = np.where(cens, dl, conc["value"].to_numpy(float))
    conc["_c"] = cens
    groups = [("all", None, conc.assign(_stratum="all"))]
    if strata is not None:
        for col in [c for c in strata.columns if c not in ("sample_id", "medium")]:
            s = conc.merge(strata[["sample_id", "medium", col]], on=["sample_id", "medium"], how="left")
            s = s[s[col].notna()]
            groups.append((col, col, s.assign(_stratum=col + "=" + s[col].astype(str))))
    rows = []
    gi = 0
    for _, col, tab in groups:
        for (medium, stratum, metal), g in tab.groupby(["medium", "_stratum", "metal"], sort=False):
            g = g[np.isfinite(g["_x"])]
            if len(g) < min_samples or (~g["_c"]).sum() == 0:
                continue
            gi += 1
            s_g = int(np.random.SeedSequence([seed, gi]).generate_state(1)[0])
            r = group_statistics(g["_x"].to_numpy(float), g["_c"].to_numpy(bool), confidence=confidence,
                                 coverage=coverage, n_bootstrap=n_bootstrap, seed=s_g)
            rows.append({"medium": medium, "stratum": stratum, "metal": metal, **r,
                         "unit": g["unit"].iloc[0] if "unit" in g else "", "stratify_by": col})
    return pd.DataFrame(rows, columns=STAT_COLUMNS)


# --------------------------------------------------------------------------------------------
# report helpers
# --------------------------------------------------------------------------------------------
def methods_text(*, confidence: float = 0.95, coverage: float = 0.95, n_bootstrap: int = 2000,
                 substitution: str | None = None) -> str:
    """Methods paragraph of the censored-data background statistics (pandoc markdown)."""
    sub = (f" Elsewhere in this report non-detects are replaced by a substituted value ({substitution}); these "
           "statistics instead use each detection limit as a censoring point." if substitution else "")
    return f"""
**Background statistics with non-detects.** Following US EPA practice [@epa2022proucl] and @helsel2012, a
non-detect is treated as an unknown value below its own detection limit.{sub} Kaplan-Meier (KM) estimates
[@kaplan1958] give the mean and SD, and robust regression on order statistics (ROS) [@helsel1988ros] a second
pair. The distribution of the detected values (normal, gamma, lognormal, else nonparametric) is chosen by
goodness-of-fit tests in ProUCL's order, and it selects the {confidence:.0%} upper confidence limit of the mean
(UCL95: Student's t, approximate gamma, a BCa bootstrap of {n_bootstrap} seeded resamples, or KM Chebyshev
limits as skewness grows) and the background threshold values: the upper tolerance limit with {coverage:.0%}
coverage and {confidence:.0%} confidence (UTL95-95, $\\bar x + K s$ with $K$ from the noncentral $t$
distribution), the upper prediction limit for one new sample (UPL95) and the upper simultaneous limit
(USL95), on the scale of the chosen distribution or from order statistics. Where ProUCL uses adjusted gamma
levels or simulated critical values, simpler approximations are used, so values can differ slightly from
ProUCL's.
"""


def display(stats_table: pd.DataFrame, *, stratum: str | None = "all") -> pd.DataFrame:
    """Reader's version of the background statistics table."""
    t = stats_table if stratum is None else stats_table[stats_table["stratum"] == stratum]
    unit = t["unit"].iloc[0] if len(t) else ""
    out = pd.DataFrame({
        "Medium": t["medium"].to_numpy(), "Stratum": t["stratum"].to_numpy(), "Metal": t["metal"].to_numpy(),
        "Samples": t["n"].astype(int).to_numpy(), "Non-detects": t["n_censored"].astype(int).to_numpy(),
        "Distribution": t["distribution"].fillna("").to_numpy(),
        f"KM mean ({unit})": t["km_mean"].to_numpy(), f"KM SD ({unit})": t["km_sd"].to_numpy(),
        f"UCL95 ({unit})": t["ucl95"].to_numpy(), "UCL95 method": t["ucl95_method"].to_numpy(),
        f"UTL95-95 ({unit})": t["utl95_95"].to_numpy(), f"UPL95 ({unit})": t["upl95"].to_numpy(),
        f"USL95 ({unit})": t["usl95"].to_numpy()})
    if stratum is not None:
        out = out.drop(columns=["Stratum"])
    if out["Medium"].nunique() <= 1:
        out = out.drop(columns=["Medium"])
    if (out["Non-detects"] == 0).all():
        out = out.drop(columns=["Non-detects"])
    return out
