"""Structural equation models of cross-media geochemical systems: ML estimation equal to lavaan, fit indices, path diagram.

The model is written in lavaan syntax (``=~`` measurement, ``~`` regression, ``~~`` covariance)
and estimated by maximum likelihood (the Wishart ML discrepancy :math:`F_{ML}`) with lavaan's
``sem()`` defaults, on standardized inputs as in Wu et al. (2025, section 2.3, Text S2):

.. math::
    x = \\Lambda_x \\xi + \\delta, \\qquad y = \\Lambda_y \\eta + \\varepsilon, \\qquad
    \\eta = B \\eta + \\Gamma \\xi + \\zeta

Fit indices are computed here from the sample covariance :math:`S` (divisor :math:`N`) and the
model-implied covariance :math:`\\Sigma(\\hat\\theta)` so that every index a reviewer expects is
available with one documented convention (that of lavaan, the software used by Wu et al. 2025):

* :math:`F_{ML} = \\ln|\\Sigma| + \\mathrm{tr}(S\\Sigma^{-1}) - \\ln|S| - p`, :math:`\\chi^2 = N F_{ML}`;
* baseline (independence) model :math:`\\chi^2_b = N(\\sum_i \\ln s_{ii} - \\ln|S|)`, :math:`df_b = p(p-1)/2`;
* CFI :math:`= 1 - \\max(\\chi^2 - df, 0) / \\max(\\chi^2 - df, \\chi^2_b - df_b, 0)` (Bentler 1990);
* TLI :math:`= (\\chi^2_b/df_b - \\chi^2/df) / (\\chi^2_b/df_b - 1)` (Tucker & Lewis 1973);
* RMSEA :math:`= \\sqrt{\\max(\\chi^2 - df, 0) / (df N)}` with a 90% confidence interval from the
  noncentral chi-square (Steiger & Lind 1980; MacCallum et al. 1996) and the test of close fit
  :math:`P(\\mathrm{RMSEA} \\le 0.05)`; semopy gives neither the interval nor the test;
* SRMR :math:`= \\sqrt{\\sum_{i \\le j} ((s_{ij} - \\sigma_{ij}) / \\sqrt{s_{ii} s_{jj}})^2 / (p(p+1)/2)}`
  (Bentler 1995; Hu & Bentler 1999), which semopy lacks;
* AIC :math:`= -2 \\ln L + 2k` and BIC :math:`= -2\\ln L + k \\ln N` with the normal log-likelihood
  :math:`\\ln L = -\\tfrac N2 (p \\ln 2\\pi + \\ln|\\Sigma| + \\mathrm{tr}(S\\Sigma^{-1}))`, conditional on
  observed predictors (minus their own log-likelihood) as lavaan does with ``fixed.x = TRUE``.

The estimator is written here (RAM form, Fisher scoring; :func:`fit_sem`) rather than taken from
semopy, because semopy misplaces residual covariances of indicators that are also predictors,
standardizes residual covariances by total SDs and has no conditional AIC; tests check every
number against lavaan 0.6-14 on the Holzinger-Swineford CFA, Bollen's political-democracy SEM
and a MIMIC model.

Conventional cut-offs (Hu & Bentler 1999): CFI and TLI >= 0.95, RMSEA <= 0.06, SRMR <= 0.08.

References
----------
Bentler, P.M. (1990) Comparative fit indexes in structural models. Psychological Bulletin
107:238-246. doi:10.1037/0033-2909.107.2.238
Tucker, L.R., Lewis, C. (1973) A reliability coefficient for maximum likelihood factor analysis.
Psychometrika 38:1-10. doi:10.1007/BF02291170
Steiger, J.H. (1990) Structural model evaluation and modification: an interval estimation
approach. Multivariate Behavioral Research 25:173-180. doi:10.1207/s15327906mbr2502_4
MacCallum, R.C., Browne, M.W., Sugawara, H.M. (1996) Power analysis and determination of sample
size for covariance structure modeling. Psychological Methods 1:130-149. doi:10.1037/1082-989X.1.2.130
Hu, L., Bentler, P.M. (1999) Cutoff criteria for fit indexes in covariance structure analysis.
Structural Equation Modeling 6:1-55. doi:10.1080/10705519909540118
Igolkina, A.A., Meshcheryakov, G. (2020) semopy: a Python package for structural equation
modeling. Structural Equation Modeling 27:952-963. doi:10.1080/10705511.2019.1704289
Rosseel, Y. (2012) lavaan: an R package for structural equation modeling. Journal of Statistical
Software 48(2):1-36. doi:10.18637/jss.v048.i02
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = [
    "SEMResult",
    "parse_model",
    "drop_indicator",
    "prepare_data",
    "fit_sem",
    "fit_indices",
    "rmsea",
    "rmsea_ci",
    "rmsea_pclose",
    "srmr",
    "ml_discrepancy",
    "normal_loglik",
    "refine_sem",
    "path_diagram",
    "CUTOFFS",
]

log = logging.getLogger(__name__)

#: conventional cut-offs of Hu & Bentler (1999): index -> (direction, value)
CUTOFFS = {"CFI": (">=", 0.95), "TLI": (">=", 0.95), "RMSEA": ("<=", 0.06), "SRMR": ("<=", 0.08)}

_OPS = ("=~", "~~", "~")
_ESTIMATE_COLUMNS = ["lhs", "op", "rhs", "estimate", "std_estimate", "se", "p"]


# ---------------------------------------------------------------------------------------------
# model syntax
def _statements(model: str) -> list[str]:
    out = []
    for line in model.replace(";", "\n").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _term_var(term: str) -> str:
    return term.split("*")[-1].strip()


def _term_modifier(term: str) -> str | None:
    parts = term.split("*")
    return parts[0].strip() if len(parts) > 1 else None


def parse_model(model: str) -> dict:
    """Parse the lavaan subset used here.

    Parameters
    ----------
    model : lavaan syntax: ``=~`` (measurement), ``~`` (regression), ``~~`` (covariance), one
        statement per line or separated by ``;``; a numeric modifier fixes a parameter (``0*x``),
        ``NA*x`` frees it (e.g. a first loading).

    Returns
    -------
    dict
        ``latents`` (list, in order), ``indicators`` (latent -> list of indicators), ``observed``
        (every variable that is not a latent, in order of appearance), ``regressions`` (list of
        (lhs, rhs)), ``covariances`` (list of (lhs, rhs)), ``fixed`` ((lhs, op, rhs) -> value,
        None for an explicitly freed parameter).

    Raises
    ------
    ValueError
        For a statement without one of the operators ``=~``, ``~`` or ``~~``, an empty side, or a
        label modifier (equality constraints are not supported).
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"expected a model in lavaan syntax (a non-empty string), got {model!r}")
    latents, indicators, regs, covs, order, fixed = [], {}, [], [], [], {}
    for st in _statements(model):
        op = next((o for o in _OPS if o in st), None)
        if op is None:
            raise ValueError(f"model statement {st!r} has no operator; expected 'a =~ b + c', 'a ~ b' or 'a ~~ b'")
        lhs, rhs = (s.strip() for s in st.split(op, 1))
        terms = [t for t in rhs.split("+") if t.strip()]
        rhs_vars = [_term_var(t) for t in terms]
        lhs_vars = [v.strip() for v in lhs.split("+") if v.strip()]
        if not lhs_vars or not rhs_vars:
            raise ValueError(f"model statement {st!r} has an empty side")
        for t in terms:
            mod = _term_modifier(t)
            if mod is None:
                continue
            if mod.upper() == "NA":
                val = None
            elif _is_number(mod):
                val = float(mod)
            else:
                raise ValueError(f"model statement {st!r}: the label {mod!r} is not supported (equality "
                                 "constraints are not implemented); remove it or give a number")
            for a in lhs_vars:
                fixed[(a, op, _term_var(t))] = val
        if op == "=~":
            lv = lhs_vars[0]
            if lv not in latents:
                latents.append(lv)
            indicators.setdefault(lv, []).extend(v for v in rhs_vars if v not in indicators.get(lv, []))
        elif op == "~":
            regs.extend((a, b) for a in lhs_vars for b in rhs_vars)
        else:
            covs.extend((a, b) for a in lhs_vars for b in rhs_vars)
        order.extend(lhs_vars + rhs_vars)
    observed = [v for v in dict.fromkeys(order) if v not in latents and not _is_number(v)]
    return {"latents": latents, "indicators": indicators, "observed": observed, "regressions": regs,
            "covariances": covs, "fixed": fixed}


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def drop_indicator(model: str, *, latent: str, indicator: str) -> str:
    """The model without ``indicator`` as a measure of ``latent`` (and without covariances naming it
    when it is no longer used anywhere else).

    Parameters
    ----------
    model : str
        Model description in lavaan/semopy syntax.
    latent : str
        Latent variable whose measurement equation is edited.
    indicator : str
        Indicator to remove.

    Returns
    -------
    str
        The edited model description.
    """
    out = []
    for st in _statements(model):
        if "=~" in st:
            lhs, rhs = (s.strip() for s in st.split("=~", 1))
            if lhs == latent:
                terms = [t.strip() for t in rhs.split("+") if _term_var(t) != indicator]
                st = f"{lhs} =~ " + " + ".join(terms)
        out.append(st)
    still = any(indicator in parse_model_vars(s) for s in out if "~~" not in s)
    if not still:
        out = [s for s in out if not ("~~" in s and indicator in parse_model_vars(s))]
    return "\n".join(out)


def parse_model_vars(statement: str) -> set[str]:
    op = next((o for o in _OPS if o in statement), None)
    if op is None:
        return set()
    lhs, rhs = statement.split(op, 1)
    return {_term_var(t) for t in (lhs + "+" + rhs).split("+") if t.strip()}


# ---------------------------------------------------------------------------------------------
# data
def prepare_data(table: pd.DataFrame, variables: list[str], *, standardize: bool = True) -> pd.DataFrame:
    """Complete cases of ``variables``, z-scored (mean 0, sd 1 with divisor n-1) when ``standardize``.

    Raises
    ------
    ValueError
        If a variable is missing from ``table``, not numeric, or constant.

    Parameters
    ----------
    table : pandas.DataFrame
        Data with one column per model variable.
    variables : list of str
        Model variables to keep.
    standardize : bool, default True
        Whether to z-score the variables.

    Returns
    -------
    pandas.DataFrame
        Complete cases of ``variables`` as floats (z-scores when ``standardize``).
    """
    missing = [v for v in variables if v not in table.columns]
    if missing:
        raise ValueError(f"model variables {missing} are not columns of the data (columns: {list(table.columns)})")
    d = table[variables]
    bad = [v for v in variables if not pd.api.types.is_numeric_dtype(d[v])]
    if bad:
        raise ValueError(f"model variables must be numeric; got non-numeric {bad}")
    d = d.dropna().astype(float)
    const = [v for v in variables if d[v].std(ddof=1) == 0 or not np.isfinite(d[v].std(ddof=1))]
    if const:
        raise ValueError(f"model variables {const} are constant over the complete cases")
    if standardize:
        d = (d - d.mean()) / d.std(ddof=1)
    return d


# ---------------------------------------------------------------------------------------------
# fit statistics (hand-written: semopy lacks the RMSEA interval, SRMR and a normal-theory AIC)
def ml_discrepancy(sample_cov, implied_cov) -> float:
    """:math:`F_{ML} = \\ln|\\Sigma| + \\mathrm{tr}(S \\Sigma^{-1}) - \\ln|S| - p` (Joreskog 1969).

    Parameters
    ----------
    sample_cov : array-like, shape (p, p)
        Sample covariance matrix S.
    implied_cov : array-like, shape (p, p)
        Model-implied covariance matrix Sigma.

    Returns
    -------
    float
        The ML discrepancy F_ML (>= 0).

    References
    ----------
    Joreskog, K.G. (1969) A general approach to confirmatory maximum likelihood factor analysis.
    Psychometrika 34:183-202. doi:10.1007/BF02289343
    """
    s, sig = np.asarray(sample_cov, float), np.asarray(implied_cov, float)
    p = s.shape[0]
    _, ld_sig = np.linalg.slogdet(sig)
    _, ld_s = np.linalg.slogdet(s)
    return float(ld_sig + np.trace(s @ np.linalg.inv(sig)) - ld_s - p)


def normal_loglik(sample_cov, implied_cov, n: int) -> float:
    """Multivariate normal log-likelihood at the sample means:
    :math:`\\ln L = -\\tfrac N2 (p \\ln 2\\pi + \\ln|\\Sigma| + \\mathrm{tr}(S\\Sigma^{-1}))`.

    Parameters
    ----------
    sample_cov : array-like, shape (p, p)
        Sample covariance matrix S.
    implied_cov : array-like, shape (p, p)
        Model-implied covariance matrix Sigma.
    n : int
        Number of observations N.

    Returns
    -------
    float
        Log-likelihood ln L.
    """
    s, sig = np.asarray(sample_cov, float), np.asarray(implied_cov, float)
    p = s.shape[0]
    _, ld = np.linalg.slogdet(sig)
    return float(-0.5 * n * (p * np.log(2 * np.pi) + ld + np.trace(s @ np.linalg.inv(sig))))


def srmr(sample_cov, implied_cov) -> float:
    """Standardized root mean square residual (Bentler 1995; lavaan's ``srmr``).

    .. math:: \\mathrm{SRMR} = \\sqrt{\\frac{\\sum_{i \\le j} \\left((s_{ij} - \\sigma_{ij}) /
              \\sqrt{s_{ii} s_{jj}}\\right)^2}{p(p+1)/2}}

    Parameters
    ----------
    sample_cov : array-like, shape (p, p)
        Sample covariance matrix S.
    implied_cov : array-like, shape (p, p)
        Model-implied covariance matrix Sigma.

    Returns
    -------
    float
        SRMR (dimensionless, 0 = perfect fit).

    References
    ----------
    Hu, L., Bentler, P.M. (1999) doi:10.1080/10705519909540118
    """
    s, sig = np.asarray(sample_cov, float), np.asarray(implied_cov, float)
    if s.shape != sig.shape or s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"expected two square matrices of the same shape, got {s.shape} and {sig.shape}")
    sd = np.sqrt(np.diag(s))
    r = (s - sig) / np.outer(sd, sd)
    iu = np.triu_indices_from(r)
    return float(np.sqrt(np.mean(r[iu] ** 2)))


def rmsea(chi2: float, df: int, n: int) -> float:
    """:math:`\\sqrt{\\max(\\chi^2 - df, 0) / (df\\,N)}` (Steiger 1990; lavaan's N convention).

    Parameters
    ----------
    chi2 : float
        Model chi-square statistic.
    df : int
        Model degrees of freedom.
    n : int
        Number of observations N.

    Returns
    -------
    float
        RMSEA (NaN when ``df <= 0``).
    """
    if df <= 0:
        return np.nan
    return float(np.sqrt(max(chi2 - df, 0.0) / (df * n)))


def _ncp_for(prob: float, chi2: float, df: int) -> float:
    """Noncentrality :math:`\\lambda` with :math:`P(\\chi^2_{df,\\lambda} \\le \\chi^2) = prob` (0 if none)."""
    def f(lam):
        return (stats.ncx2.cdf(chi2, df, lam) if lam > 0 else stats.chi2.cdf(chi2, df)) - prob
    if f(0.0) <= 0:
        return 0.0
    hi = max(chi2, 1.0)
    while f(hi) > 0:
        hi *= 2.0
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-10, rtol=1e-12))


def rmsea_ci(chi2: float, df: int, n: int, *, level: float = 0.90) -> tuple[float, float]:
    """Confidence interval of the RMSEA by inverting the noncentral chi-square distribution.

    The bounds are :math:`\\sqrt{\\lambda / (df N)}` with :math:`\\lambda_L` solving
    :math:`F(\\chi^2; df, \\lambda_L) = (1 + \\mathrm{level})/2` and :math:`\\lambda_U` solving
    :math:`F(\\chi^2; df, \\lambda_U) = (1 - \\mathrm{level})/2` (0 when no solution exists),
    :math:`F` the noncentral chi-square CDF (:data:`scipy.stats.ncx2`). Written here because
    semopy does not give the interval.

    Parameters
    ----------
    chi2 : float
        Model chi-square statistic.
    df : int
        Model degrees of freedom.
    n : int
        Number of observations N.
    level : float, default 0.90
        Confidence level, in (0, 1).

    Returns
    -------
    tuple of (float, float)
        Lower and upper RMSEA bounds (NaN, NaN when ``df <= 0`` or chi2 not finite).

    References
    ----------
    Steiger (1990) doi:10.1207/s15327906mbr2502_4; MacCallum, Browne & Sugawara (1996)
    doi:10.1037/1082-989X.1.2.130
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if df <= 0 or not np.isfinite(chi2):
        return (np.nan, np.nan)
    lam_lo = _ncp_for((1 + level) / 2, chi2, df)
    lam_hi = _ncp_for((1 - level) / 2, chi2, df)
    return (float(np.sqrt(lam_lo / (df * n))), float(np.sqrt(lam_hi / (df * n))))


def rmsea_pclose(chi2: float, df: int, n: int, *, rmsea0: float = 0.05) -> float:
    """p-value of the test of close fit, H0: RMSEA <= ``rmsea0`` (Browne & Cudeck 1993):
    :math:`1 - F(\\chi^2; df, \\lambda_0 = \\mathrm{RMSEA}_0^2\\, df\\, N)`.

    Parameters
    ----------
    chi2 : float
        Model chi-square statistic.
    df : int
        Model degrees of freedom.
    n : int
        Number of observations N.
    rmsea0 : float, default 0.05
        RMSEA under the null hypothesis.

    Returns
    -------
    float
        p-value of close fit (NaN when ``df <= 0``).

    References
    ----------
    Browne, M.W., Cudeck, R. (1993) Alternative ways of assessing model fit. In Bollen & Long (eds)
    Testing Structural Equation Models, Sage, 136-162. MacCallum et al. (1996) doi:10.1037/1082-989X.1.2.130
    """
    if df <= 0:
        return np.nan
    return float(stats.ncx2.sf(chi2, df, rmsea0 ** 2 * df * n))


def fit_indices(sample_cov, implied_cov, *, n: int, n_params: int, fixed_x=()) -> pd.DataFrame:
    """Fit indices of an ML-estimated covariance structure (conventions in the module docstring).

    Parameters
    ----------
    sample_cov : p x p sample covariance with divisor N.
    implied_cov : p x p model-implied covariance at the estimates.
    n : number of observations N.
    n_params : number of free parameters k, not counting (co)variances among ``fixed_x``.
    fixed_x : positions of observed exogenous variables whose variances and covariances are fixed
        at their sample values (semopy does this, as lavaan's default ``fixed.x = TRUE``). As in
        lavaan, their :math:`q(q+1)/2` moments are not counted in the degrees of freedom and the
        baseline model keeps their covariances (:math:`\\chi^2_b = N(\\ln|S_{xx}| + \\sum_{i \\notin x}
        \\ln s_{ii} - \\ln|S|)`, :math:`df_b = p(p-1)/2 - q(q-1)/2`). semopy's own ``calc_stats``
        counts those fixed moments as degrees of freedom, which inflates df, CFI and TLI and
        deflates RMSEA for models with observed predictors.

    Returns
    -------
    DataFrame (index, value) with rows chi2, df, p, chi2_baseline, df_baseline, CFI, TLI, RMSEA,
    RMSEA_ci90_lower, RMSEA_ci90_upper, RMSEA_pclose, SRMR, AIC, BIC, loglik, n, n_params.
    """
    s = np.asarray(sample_cov, float)
    p = s.shape[0]
    fx = sorted({int(i) for i in fixed_x})
    if any(i < 0 or i >= p for i in fx):
        raise ValueError(f"fixed_x must be positions 0..{p - 1}, got {fx}")
    q = len(fx)
    df = p * (p + 1) // 2 - q * (q + 1) // 2 - int(n_params)
    chi2 = n * ml_discrepancy(s, implied_cov)
    chi2 = max(chi2, 0.0)
    pval = float(stats.chi2.sf(chi2, df)) if df > 0 else np.nan
    _, ld_s = np.linalg.slogdet(s)
    rest = [i for i in range(p) if i not in fx]
    ld_xx = np.linalg.slogdet(s[np.ix_(fx, fx)])[1] if q else 0.0
    chi2_b = float(n * (ld_xx + np.sum(np.log(np.diag(s)[rest])) - ld_s))
    df_b = p * (p - 1) // 2 - q * (q - 1) // 2
    denom = max(chi2 - df, chi2_b - df_b, 0.0)
    cfi = 1.0 - max(chi2 - df, 0.0) / denom if denom > 0 else 1.0
    tli = ((chi2_b / df_b - chi2 / df) / (chi2_b / df_b - 1.0)) if df > 0 and df_b > 0 else np.nan
    lo, hi = rmsea_ci(chi2, df, n) if df > 0 else (np.nan, np.nan)
    ll = normal_loglik(s, implied_cov, n)
    if q:
        # lavaan (fixed.x = TRUE): the likelihood is conditional on the observed predictors, i.e. the
        # joint log-likelihood minus that of the predictors at their (fixed) sample moments
        sxx = s[np.ix_(fx, fx)]
        ll = ll - normal_loglik(sxx, sxx, n)
    rows = {"chi2": chi2, "df": df, "p": pval, "chi2_baseline": chi2_b, "df_baseline": df_b, "CFI": cfi,
            "TLI": tli, "RMSEA": rmsea(chi2, df, n), "RMSEA_ci90_lower": lo, "RMSEA_ci90_upper": hi,
            "RMSEA_pclose": rmsea_pclose(chi2, df, n), "SRMR": srmr(s, implied_cov),
            "AIC": -2 * ll + 2 * n_params, "BIC": -2 * ll + n_params * np.log(n), "loglik": ll, "n": n,
            "n_params": n_params}
    return pd.DataFrame({"index": list(rows), "value": [float(v) for v in rows.values()]})


# ---------------------------------------------------------------------------------------------
@dataclass
class SEMResult:
    """A fitted (or failed) structural equation model.

    Attributes
    ----------
    ok : True when the model was estimated, converged and is identified; otherwise the
        estimates and fit may be empty and ``message`` says why.
    message : None, or a reader's explanation (not converged, not identified, bad syntax...).
    warnings : list of notes that do not invalidate the fit (e.g. a variance at its bound).
    model : the lavaan model fitted.
    n : number of complete observations used.
    estimates : lhs, op, rhs, estimate, std_estimate, se, p (lavaan orientation: ``L =~ x``).
    fit : index, value (see :func:`fit_indices`).
    latents : latent variable names.
    observed : observed variable names.
    """

    ok: bool
    message: str | None
    model: str
    n: int
    estimates: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_ESTIMATE_COLUMNS))
    fit: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["index", "value"]))
    latents: list[str] = field(default_factory=list)
    observed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def fit_value(self, index: str) -> float:
        """One fit index by name (NaN when absent)."""
        v = self.fit.loc[self.fit["index"] == index, "value"]
        return float(v.iloc[0]) if len(v) else np.nan


def _failed(msg: str, model: str, n: int, spec: dict | None = None) -> SEMResult:
    return SEMResult(ok=False, message=msg, model=model, n=n, latents=(spec or {}).get("latents", []),
                     observed=(spec or {}).get("observed", []))


def fit_sem(data: pd.DataFrame, model: str, *, standardize: bool = True, min_n: int = 10) -> SEMResult:
    """Fit a lavaan-syntax SEM by maximum likelihood with lavaan's defaults.

    The defaults are those of lavaan's ``sem()`` (Rosseel 2012): the first loading of each latent
    fixed at 1; free (residual) variances of every variable; exogenous latents covary; the
    residuals of pure outcomes (latent or observed) covary; observed exogenous predictors keep
    their sample (co)variances (``fixed.x = TRUE``); sample covariance with divisor N; standard
    errors from the expected information, :math:`\\mathrm{ACOV} = (\\tfrac N2 H)^{-1}` with
    :math:`H_{ab} = \\mathrm{tr}(\\Sigma^{-1}\\partial_a\\Sigma\\,\\Sigma^{-1}\\partial_b\\Sigma)`;
    standardized estimates as lavaan's ``std.all`` (residual covariances divided by the square
    root of the two residual variances). An indicator may also be a predictor or an outcome of a
    regression (lavaan's phantom-variable case): the RAM form handles it directly. The estimator is
    hand-written (scipy/numpy, Fisher scoring) because semopy does not reproduce lavaan in that
    case; tests check it against lavaan 0.6-14 on three reference models.

    Parameters
    ----------
    data : observations x variables; needs every observed variable of ``model``. Incomplete rows
        are dropped (listwise); variables are z-scored first when ``standardize``.
    model : lavaan syntax (``=~``, ``~``, ``~~``; fixed values as ``0*x``, a freed marker as ``NA*x``).
    standardize : z-score the inputs (as in Wu et al. 2025).
    min_n : fewest complete observations accepted.

    Returns
    -------
    SEMResult
        Never raises for a model that cannot be estimated: ``ok`` is False and ``message`` says
        why (syntax, unknown variables, too few observations, negative degrees of freedom, no
        convergence, singular information matrix).

    References
    ----------
    Rosseel (2012) doi:10.18637/jss.v048.i02; McArdle, J.J., McDonald, R.P. (1984) Some algebraic
    properties of the reticular action model for moment structures. British Journal of Mathematical
    and Statistical Psychology 37:234-251. doi:10.1111/j.2044-8317.1984.tb00802.x
    """
    from threadpoolctl import threadpool_limits

    try:
        spec = parse_model(model)
    except ValueError as e:
        return _failed(f"the SEM could not be read: {e}", model, 0)
    try:
        d = prepare_data(data, spec["observed"], standardize=standardize)
    except ValueError as e:
        return _failed(f"the SEM could not be estimated: {e}", model, 0, spec)
    n = len(d)
    if n < min_n:
        return _failed(f"the SEM could not be estimated: {n} complete observations, at least {min_n} needed",
                       model, n, spec)
    for lv, ind in spec["indicators"].items():
        others = [a for a, b in spec["regressions"] + spec["covariances"] if lv in (a, b)]
        if len(ind) < 2 or (len(ind) == 2 and not others):
            return _failed(f"the SEM is not identified: latent '{lv}' has {len(ind)} {'indicator' if len(ind) == 1 else 'indicators'} "
                           f"({', '.join(ind)}); a latent needs three, or two when related to another latent",
                           model, n, spec)
    p = len(spec["observed"])
    x = d[spec["observed"]].to_numpy()
    s = np.cov(x, rowvar=False, bias=True).reshape(p, p)
    names, params, classes = _ram_table(spec, s)
    ram = _RamModel(names, params, p)
    k = len(ram.free)
    q = len(classes["ov_x"])
    df = p * (p + 1) // 2 - q * (q + 1) // 2 - k
    if df < 0:
        return _failed(f"the SEM is not identified: {k} free parameters for {p * (p + 1) // 2 - q * (q + 1) // 2} "
                       f"variances and covariances of {p} variables (df = {df})", model, n, spec)
    # one BLAS thread: the matrices are small and threading only adds overhead (up to 10x slower)
    with threadpool_limits(limits=1):
        try:
            theta, converged, h = _fit_ram(ram, s)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as e:
            return _failed(f"the SEM could not be estimated ({type(e).__name__}: {e}); simplify the model "
                           "or check the indicators", model, n, spec)
        if not converged:
            return _failed("the SEM did not converge (the maximum-likelihood iterations stopped before the "
                           "gradient vanished); simplify the model or check the indicators", model, n, spec)
        try:
            acov = np.linalg.inv(0.5 * n * h)
        except np.linalg.LinAlgError:
            acov = np.full_like(h, np.nan)
        se_free = np.sqrt(np.where(np.diag(acov) > 0, np.diag(acov), np.nan))
        if not np.all(np.isfinite(se_free)) or np.linalg.cond(h) > 1e12:
            return _failed("the SEM is empirically not identified: standard errors could not be computed "
                           "(singular information matrix)", model, n, spec)
        sigma, full, _, pm = ram.implied(theta)
    est = _estimates(ram, theta, se_free, full, pm, spec)
    notes = []
    var = est[(est["op"] == "~~") & (est["lhs"] == est["rhs"])]
    at_bound = var.loc[var["estimate"] <= 1e-6, "lhs"].tolist()
    if at_bound:
        notes.append(f"{'the variance' if len(at_bound) == 1 else 'the variances'} of {', '.join(at_bound)} at or below 0 "
                         "(Heywood case): interpret with care")
    fit = fit_indices(s, sigma, n=n, n_params=k, fixed_x=classes["ov_x_pos"])
    return SEMResult(ok=True, message=None, model=model, n=n, estimates=est, fit=fit,
                     latents=spec["latents"], observed=spec["observed"], warnings=notes)


def _estimates(ram: _RamModel, theta, se_free, full, pm, spec) -> pd.DataFrame:
    vals = np.array([q.value for q in ram.params], float)
    vals[ram.free] = theta
    se = np.zeros(len(ram.params))
    se[ram.free] = se_free
    sd = np.sqrt(np.clip(np.diag(full), 0, None))
    rows = []
    for q, v, e in zip(ram.params, vals, se):
        if q.op == "=~":
            std = v * sd[q.j] / sd[q.i]
        elif q.op == "~":
            std = v * sd[q.j] / sd[q.i]
        elif q.i == q.j:
            std = v / full[q.i, q.i]
        else:
            den = pm[q.i, q.i] * pm[q.j, q.j]
            std = v / np.sqrt(den) if den > 0 else np.nan
        z = v / e if q.free and e > 0 else np.nan
        pval = float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else np.nan
        rows.append({"lhs": q.lhs, "op": q.op, "rhs": q.rhs, "estimate": float(v), "std_estimate": float(std),
                     "se": float(e), "p": pval})
    out = pd.DataFrame(rows, columns=_ESTIMATE_COLUMNS)
    rank = {"=~": 0, "~": 1, "~~": 2}
    key = [(rank.get(o, 3), i) for i, o in enumerate(out["op"])]
    out = out.iloc[sorted(range(len(out)), key=key.__getitem__)]
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# the ML estimator (hand-written: semopy cannot reproduce lavaan when an indicator is also a
# predictor, standardises residual covariances by total SDs and has no conditional AIC; see the
# module docstring). RAM form (McArdle & McDonald 1984): all variables v = A v + u, Cov(u) = P,
# Sigma = F (I - A)^-1 P (I - A)^-T F'.
@dataclass
class _Param:
    lhs: str
    op: str
    rhs: str
    kind: str  # "A" (directed) or "P" (undirected)
    i: int
    j: int
    free: bool
    value: float
    exo: bool = False  # a fixed.x (co)variance of observed exogenous variables


def _ram_table(spec: dict, sample_cov: np.ndarray) -> tuple[list[str], list[_Param], dict]:
    """lavaan's default parameter table (``sem()``: auto.var, auto.fix.first, auto.cov.lv.x,
    auto.cov.y, fixed.x) in RAM coordinates; variable classes as lavaan's ``lavNames``."""
    lv = list(spec["latents"])
    regs, covs, fixed = spec["regressions"], spec["covariances"], spec["fixed"]
    v_ind = {v for ind in spec["indicators"].values() for v in ind}
    eqs_y = list(dict.fromkeys(a for a, _ in regs))
    eqs_x = list(dict.fromkeys(b for _, b in regs))
    ov_ind = [v for v in v_ind if v not in lv]
    ov_y_any = [v for v in eqs_y if v not in lv and v not in ov_ind]
    user_cov_vars = {v for pair in covs for v in pair}
    ov_x = [v for v in eqs_x if v not in lv and v not in ov_ind and v not in ov_y_any and v not in user_cov_vars]
    ov_y = [v for v in eqs_y if v not in v_ind and v not in eqs_x and v not in lv]
    lv_y = [v for v in eqs_y if v in lv and v not in v_ind and v not in eqs_x]
    lv_x = [v for v in lv if v not in v_ind and v not in eqs_y]
    obs = list(spec["observed"])
    names = obs + lv
    idx = {v: k for k, v in enumerate(names)}
    params: list[_Param] = []
    seen: set = set()

    def add(lhs, op, rhs, kind, free, value, exo=False):
        key = (op, *sorted((lhs, rhs))) if op == "~~" else (lhs, op, rhs)
        if key in seen:
            return
        seen.add(key)
        i, j = (idx[rhs], idx[lhs]) if op == "=~" else (idx[lhs], idx[rhs])
        params.append(_Param(lhs, op, rhs, kind, i, j, free, value, exo))

    for f in lv:
        for k, v in enumerate(spec["indicators"][f]):
            fx = fixed[(f, "=~", v)] if (f, "=~", v) in fixed else (1.0 if k == 0 else None)
            add(f, "=~", v, "A", fx is None, 1.0 if fx is None else fx)
    for a, b in regs:
        fx = fixed.get((a, "~", b))
        add(a, "~", b, "A", fx is None, 0.0 if fx is None else fx)
    ox = [obs.index(v) for v in ov_x]
    for a, b in covs:
        fx = fixed.get((a, "~~", b), fixed.get((b, "~~", a)))
        start = 0.5 * sample_cov[obs.index(a), obs.index(a)] if a == b and a in obs else (0.05 if a == b else 0.0)
        add(a, "~~", b, "P", fx is None, start if fx is None else fx)
    for v in [v for v in obs if v not in ov_x] + lv:
        start = 0.5 * sample_cov[obs.index(v), obs.index(v)] if v in obs else 0.05
        add(v, "~~", v, "P", True, start)
    for group in (lv_x, lv_y + ov_y):
        for a_i, a in enumerate(group):
            for b in group[a_i + 1:]:
                add(a, "~~", b, "P", True, 0.0)
    for a_i, a in enumerate(ov_x):
        for b in ov_x[a_i:]:
            add(a, "~~", b, "P", False, float(sample_cov[obs.index(a), obs.index(b)]), exo=True)
    classes = {"ov_x": ov_x, "ov_x_pos": ox, "lv_x": lv_x, "lv_y": lv_y, "ov_y": ov_y, "ov_ind": ov_ind}
    return names, params, classes


class _RamModel:
    def __init__(self, names, params, p):
        self.names, self.params, self.p = names, params, p
        self.m = len(names)
        self.free = [k for k, q in enumerate(params) if q.free]

    def matrices(self, theta):
        a = np.zeros((self.m, self.m))
        pm = np.zeros((self.m, self.m))
        vals = np.array([q.value for q in self.params], float)
        vals[self.free] = theta
        for q, v in zip(self.params, vals):
            if q.kind == "A":
                a[q.i, q.j] = v
            else:
                pm[q.i, q.j] = pm[q.j, q.i] = v
        return a, pm

    def implied(self, theta):
        a, pm = self.matrices(theta)
        b = np.linalg.inv(np.eye(self.m) - a)
        full = b @ pm @ b.T
        return full[: self.p, : self.p], full, b, pm

    def jacobian(self, theta):
        """d Sigma / d theta_k for the free parameters, shape (k, p, p)."""
        _, full, b, pm = self.implied(theta)
        fb = b[: self.p]  # F B
        g = (b @ pm @ b.T)[:, : self.p]  # B P B' F'
        out = np.empty((len(self.free), self.p, self.p))
        for r, k in enumerate(self.free):
            q = self.params[k]
            if q.kind == "A":
                d = np.outer(fb[:, q.i], g[q.j])
                out[r] = d + d.T
            elif q.i == q.j:
                out[r] = np.outer(fb[:, q.i], fb[:, q.i])
            else:
                d = np.outer(fb[:, q.i], fb[:, q.j])
                out[r] = d + d.T
        return out


def _f_ml(s, sig, ld_s):
    # Cholesky, not the sign of the determinant: two negative eigenvalues give a positive determinant
    try:
        c = np.linalg.cholesky(sig)
    except np.linalg.LinAlgError:
        return np.inf
    ld = 2.0 * np.sum(np.log(np.diag(c)))
    ci = np.linalg.inv(c)
    return float(ld + np.sum((ci @ s) * ci) - ld_s - s.shape[0])


def _fit_ram(model: _RamModel, s: np.ndarray, *, max_iter: int = 500, tol: float = 1e-10):
    """Minimise F_ML by Fisher scoring with step halving (the expected Hessian of F_ML is
    tr(Sigma^-1 dSigma_a Sigma^-1 dSigma_b)); BFGS from scipy first when scoring stalls."""
    ld_s = np.linalg.slogdet(s)[1]
    theta = np.array([model.params[k].value for k in model.free], float)

    def fun(t):
        try:
            return _f_ml(s, model.implied(t)[0], ld_s)
        except np.linalg.LinAlgError:
            return np.inf

    def grad_info(t):
        sig = model.implied(t)[0]
        si = np.linalg.inv(sig)
        w = si @ (sig - s) @ si
        dj = model.jacobian(t)
        g = np.einsum("ij,kji->k", w, dj)
        m = np.einsum("ij,kjl->kil", si, dj)
        h = np.einsum("aij,bji->ab", m, m)
        return g, h

    f0 = fun(theta)
    if not np.isfinite(f0):
        # the default start is not admissible: larger residual variances
        for q in model.params:
            if q.free and q.kind == "P" and q.i == q.j:
                q.value *= 2.0
        theta = np.array([model.params[k].value for k in model.free], float)
        f0 = fun(theta)
    converged = False
    for _ in range(max_iter):
        g, h = grad_info(theta)
        if np.max(np.abs(g)) < tol:
            converged = True
            break
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(h, g, rcond=None)[0]
        t = 1.0
        while t > 1e-8:
            cand = theta - t * step
            f1 = fun(cand)
            if np.isfinite(f1) and f1 <= f0 + 1e-14:
                break
            t /= 2
        else:
            break
        theta, f0 = cand, f1
    if not converged:
        res = optimize.minimize(fun, theta, jac=lambda t: grad_info(t)[0], method="BFGS",
                                options={"gtol": 1e-9, "maxiter": 5000})
        theta = res.x
        g, h = grad_info(theta)
        converged = bool(np.max(np.abs(g)) < 1e-6)
    return theta, converged, h


# ---------------------------------------------------------------------------------------------
def refine_sem(data: pd.DataFrame, model: str, *, threshold: float = 0.3, min_indicators: int = 2,
               max_steps: int = 20, standardize: bool = True) -> tuple[SEMResult, pd.DataFrame]:
    """Fit, then repeatedly drop the indicator with the smallest |standardized loading| below
    ``threshold`` (keeping at least ``min_indicators`` per latent) and refit.

    Parameters
    ----------
    data : pandas.DataFrame
        Data with one column per model variable.
    model : str
        Model description in lavaan/semopy syntax.
    threshold : float, default 0.3
        Minimum |standardized loading| to keep an indicator.
    min_indicators : int, default 2
        Minimum number of indicators kept per latent.
    max_steps : int, default 20
        Maximum number of drop-and-refit steps.
    standardize : bool, default True
        Whether to z-score the variables before fitting.

    Returns
    -------
    (SEMResult, DataFrame)
        The last model that was estimated, and a log with one row per step: step, action,
        latent, indicator, std_loading, ok, chi2, df, CFI, TLI, RMSEA, SRMR, AIC, message.
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    rows = []
    res = fit_sem(data, model, standardize=standardize)
    rows.append(_log_row(0, "initial model", None, None, np.nan, res))
    step = 0
    while res.ok and step < max_steps:
        ld = res.estimates[res.estimates["op"] == "=~"].copy()
        counts = ld.groupby("lhs")["rhs"].transform("size")
        cand = ld[(ld["std_estimate"].abs() < threshold) & (counts > min_indicators)]
        if cand.empty:
            break
        worst = cand.loc[cand["std_estimate"].abs().idxmin()]
        step += 1
        new_model = drop_indicator(res.model, latent=worst["lhs"], indicator=worst["rhs"])
        new = fit_sem(data, new_model, standardize=standardize)
        rows.append(_log_row(step, f"dropped {worst['rhs']} from {worst['lhs']}", worst["lhs"], worst["rhs"],
                             float(worst["std_estimate"]), new))
        log.info("SEM refinement step %d: dropped %s from %s (std loading %.3f); ok=%s",
                 step, worst["rhs"], worst["lhs"], worst["std_estimate"], new.ok)
        if not new.ok:
            break
        res = new
    return res, pd.DataFrame(rows)


def _log_row(step, action, latent, indicator, loading, res: SEMResult) -> dict:
    row = {"step": step, "action": action, "latent": latent, "indicator": indicator, "std_loading": loading,
           "ok": res.ok}
    for k in ("chi2", "df", "CFI", "TLI", "RMSEA", "SRMR", "AIC"):
        row[k] = res.fit_value(k) if res.ok else np.nan
    row["message"] = res.message
    return row


# ---------------------------------------------------------------------------------------------
def _alpha_for(p: float, alpha: float) -> float:
    if not np.isfinite(p):
        return 0.9  # fixed parameter (e.g. the reference loading)
    if p < alpha:
        return 0.95
    if p < 0.1:
        return 0.55
    return 0.22


def _spread(xs: list[float], widths: list[float], gap: float) -> list[float]:
    """Positions as close as possible to ``xs`` (already sorted) with boxes of ``widths`` not overlapping."""
    out = list(xs)
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + (widths[i - 1] + widths[i]) / 2 + gap)
    shift = (np.mean(xs) - np.mean(out)) if out else 0.0
    return [x + shift for x in out]


def path_diagram(result: SEMResult, *, alpha: float = 0.05, labels: dict[str, str] | None = None,
                 figsize: tuple[float, float] = (7.0, 4.6)):
    """Path diagram of a fitted SEM (matplotlib), in the style of Wu et al. (2025) Fig. 6.

    Latent variables are ellipses in one row (model order), their indicators boxes in a row above
    them; other observed variables (predictors, single outcomes) sit in a row below, near the
    variables they connect to. Regressions are solid arrows, covariances between different
    variables dashed curved double arrows. Arrow colour gives the sign of the standardized estimate
    (blue positive, red negative), width its magnitude, opacity its significance (opaque
    p < ``alpha``, half p < 0.10, faint otherwise); arrows are labelled with the standardized
    estimate (* p < ``alpha``).

    Parameters
    ----------
    result : a fitted :class:`SEMResult` (``ok``).
    alpha : significance level for opacity and stars.
    labels : optional variable -> display label.
    figsize : figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch

    if not result.ok:
        raise ValueError(f"cannot draw a model that was not estimated: {result.message}")
    labels = labels or {}
    est = result.estimates
    latents = list(result.latents)
    char, pad, box_h = 0.085, 0.18, 0.26
    lat_w = max([1.25] + [0.105 * len(labels.get(lv, lv)) + 0.35 for lv in latents])
    lat_h = 0.5

    def width(v):
        return lat_w if v in latents else char * len(labels.get(v, v)) + pad

    pos: dict[str, np.ndarray] = {}
    inds = {lv: est.loc[(est["op"] == "=~") & (est["lhs"] == lv), "rhs"].tolist() for lv in latents}
    # latents in a row, spaced so that their indicator rows do not collide
    row_w = {lv: max(sum(width(v) for v in inds[lv]) + 0.12 * max(len(inds[lv]) - 1, 0), lat_w) for lv in latents}
    x = 0.0
    for i, lv in enumerate(latents):
        if i:
            x += (row_w[latents[i - 1]] + row_w[lv]) / 2 + 0.7
        pos[lv] = np.array([x, 0.0])
    y_top, y_bot = 1.35, -1.45
    for lv in latents:
        ws = [width(v) for v in inds[lv]]
        xs = [pos[lv][0] - row_w[lv] / 2 + sum(ws[:j]) + 0.12 * j + ws[j] / 2 for j in range(len(ws))]
        for v, xv in zip(inds[lv], xs):
            pos.setdefault(v, np.array([xv, y_top]))
    endo = {a for a, o in zip(est["lhs"], est["op"]) if o == "~"}
    outcomes = [v for v in result.observed if v not in pos and v in endo]
    x_out = (max(pos[lv][0] for lv in latents) + row_w[latents[-1]] / 2 + 0.6) if latents else 0.0
    for v in outcomes:
        x_out += width(v) / 2
        pos[v] = np.array([x_out, 0.0])
        x_out += width(v) / 2 + 0.3
    rest = [v for v in result.observed if v not in pos]
    if rest:
        links = {v: [] for v in rest}
        for a, b in zip(est["lhs"], est["rhs"]):
            if a in links and b in pos:
                links[a].append(pos[b][0])
            if b in links and a in pos:
                links[b].append(pos[a][0])
        want = {v: (np.mean(links[v]) if links[v] else 0.0) for v in rest}
        order = sorted(rest, key=lambda v: want[v])
        xs = _spread([want[v] for v in order], [width(v) for v in order], 0.15)
        for v, xv in zip(order, xs):
            pos[v] = np.array([xv, y_bot])
    xy = np.array(list(pos.values()))
    fig, ax = plt.subplots(figsize=figsize)
    ax.axis("off")
    blue, red = "#2166ac", "#b2182b"

    def half(v):
        return (lat_w / 2, lat_h / 2) if v in latents else (width(v) / 2, box_h / 2)

    def edge(v, u):
        hw, hh = half(v)
        if v in latents:
            t = 1.0 / np.sqrt((u[0] / hw) ** 2 + (u[1] / hh) ** 2)
        else:
            t = min(hw / abs(u[0]) if abs(u[0]) > 1e-9 else np.inf, hh / abs(u[1]) if abs(u[1]) > 1e-9 else np.inf)
        return pos[v] + (t + 0.03) * u

    def draw(a, b, row, *, style="-|>", rad=0.0, dashed=False, t_label=None):
        val = row["std_estimate"]
        col = blue if val >= 0 else red
        d = pos[b] - pos[a]
        u = d / max(np.linalg.norm(d), 1e-9)
        if abs(d[1]) < 1e-9 and not rad and any(abs(pos[v][1] - pos[a][1]) < 1e-9 and
                                                min(pos[a][0], pos[b][0]) < pos[v][0] < max(pos[a][0], pos[b][0])
                                                for v in pos if v not in (a, b)):
            rad = 0.3  # same row with nodes in between: curve around them
        lw = 0.5 + 3.0 * min(abs(val), 1.0) if not dashed else 0.5 + 1.5 * min(abs(val), 1.0)
        arr = FancyArrowPatch(edge(a, u), edge(b, -u), arrowstyle=style, mutation_scale=9,
                              connectionstyle=f"arc3,rad={rad}", lw=lw, color=col,
                              alpha=_alpha_for(row["p"], alpha), shrinkA=0, shrinkB=0,
                              linestyle="--" if dashed else "-", zorder=1)
        ax.add_patch(arr)
        t = t_label if t_label is not None else (0.5 if dashed or rad else 0.42)
        mid = pos[a] + t * d
        if rad:
            mid = mid + rad * np.array([d[1], -d[0]]) * 0.5
        stars = "*" if np.isfinite(row["p"]) and row["p"] < alpha else ""
        ax.text(mid[0], mid[1], f"{val:.2f}{stars}", fontsize=5.5, ha="center", va="center", zorder=3,
                color="0.15", bbox=dict(boxstyle="round,pad=0.08", fc="white", ec="none", alpha=0.85))

    for _, row in est.iterrows():
        if not np.isfinite(row["std_estimate"]):
            continue
        if row["op"] == "=~":
            j = inds[row["lhs"]].index(row["rhs"]) if row["rhs"] in inds.get(row["lhs"], []) else 0
            draw(row["lhs"], row["rhs"], row, t_label=0.78 if j % 2 == 0 else 0.58)
        elif row["op"] == "~" and row["lhs"] in pos and row["rhs"] in pos:
            draw(row["rhs"], row["lhs"], row)
        elif row["op"] == "~~" and row["lhs"] != row["rhs"] and row["lhs"] in pos and row["rhs"] in pos:
            same_row = abs(pos[row["lhs"]][1] - pos[row["rhs"]][1]) < 1e-9
            rad = (-0.35 if pos[row["lhs"]][1] > 0 else 0.35) if same_row else 0.25
            if same_row and pos[row["lhs"]][0] > pos[row["rhs"]][0]:
                rad = -rad
            draw(row["lhs"], row["rhs"], row, style="<|-|>", rad=rad, dashed=True)
    for v, xy_v in pos.items():
        txt = labels.get(v, v)
        if v in latents:
            ax.add_patch(Ellipse(xy_v, lat_w, lat_h, fc="#fdf6e3", ec="0.2", lw=1.0, zorder=2))
            ax.text(*xy_v, txt, ha="center", va="center", fontsize=7.5, weight="bold", zorder=4)
        else:
            w = width(v)
            ax.add_patch(FancyBboxPatch(xy_v - np.array([w / 2, box_h / 2]), w, box_h, boxstyle="round,pad=0.02",
                                        fc="white", ec="0.35", lw=0.7, zorder=2))
            ax.text(*xy_v, txt, ha="center", va="center", fontsize=6, zorder=4)
    lefts = [pos[v][0] - half(v)[0] for v in pos]
    rights = [pos[v][0] + half(v)[0] for v in pos]
    ax.set_xlim(min(lefts) - 0.3, max(rights) + 0.3)
    ax.set_ylim(min(xy[:, 1].min(), -0.5) - 0.9, max(xy[:, 1].max(), 0.5) + 0.9)
    handles = [Line2D([], [], color=blue, lw=2.5, label="positive"),
               Line2D([], [], color=red, lw=2.5, label="negative"),
               Line2D([], [], color="0.3", lw=2.5, alpha=0.95, label=f"p < {alpha:g}"),
               Line2D([], [], color="0.3", lw=2.5, alpha=0.55, label="p < 0.10"),
               Line2D([], [], color="0.3", lw=2.5, alpha=0.22, label="p ≥ 0.10"),
               Line2D([], [], color="0.3", lw=1.2, ls="--", label="covariance")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=6.5, frameon=False, ncol=6)
    fig.tight_layout()
    return fig
