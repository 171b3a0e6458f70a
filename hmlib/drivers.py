"""Spatially varying drivers: multiscale geographically weighted regression (MGWR).

:func:`mgwr_drivers` regresses a response (e.g. log Cd) on covariates with PySAL's ``mgwr``:
a global OLS model, a GWR (one bandwidth for all covariates) and an MGWR (one bandwidth per
covariate), compared by AICc and R2, with local coefficients and their significance at the
multiple-testing-corrected t threshold of da Silva and Fotheringham (2016).
"""
from __future__ import annotations

import contextlib
import io
import re
import textwrap
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["MGWR_COST_NOTE", "DriverResult", "mgwr_drivers", "driver_table", "coefficient_figure", "methods_text",
           "results_text"]

MGWR_COST_NOTE = ("MGWR's back-fitting fits n local regressions per covariate per iteration and its "
                  "bandwidth search repeats that for every candidate bandwidth; time and memory grow "
                  "with n^2 (Li and Fotheringham 2020)")


@dataclass
class DriverResult:
    """Result of :func:`mgwr_drivers`.

    Attributes
    ----------
    comparison : DataFrame, one row per model (OLS, GWR, MGWR): aicc, r2, adj_r2, bandwidth
        (GWR: the single bandwidth, in neighbours).
    coefficients : DataFrame, one row per covariate (incl. intercept): ols_beta, ols_p,
        mgwr_bandwidth, mgwr_mean, mgwr_sd, mgwr_min, mgwr_median, mgwr_max, share_significant,
        t_critical.
    local : DataFrame per sample: x, y, then for each covariate c: ``beta_<c>``, ``t_<c>``,
        ``sig_<c>`` (|t| above the corrected critical value).
    covariates : covariate names (standardised), without the intercept.
    response : the response's name.
    """

    comparison: pd.DataFrame
    coefficients: pd.DataFrame
    local: pd.DataFrame
    covariates: list[str]
    response: str


def _standardise(a: np.ndarray) -> np.ndarray:
    sd = a.std(axis=0)
    if (sd == 0).any():
        raise ValueError("MGWR: a covariate or the response is constant; expected variation")
    return (a - a.mean(axis=0)) / sd


def mgwr_drivers(x, y, response, covariates: pd.DataFrame, *, response_name: str = "response",
                 max_n: int = 1000) -> DriverResult:
    r"""OLS, GWR and MGWR of a response on covariates, all standardised (mean 0, sd 1).

    MGWR fits

    .. math:: y_i = \sum_{k} \beta_{bw_k}(u_i, v_i)\, x_{ik} + \varepsilon_i

    with a bisquare kernel over an adaptive number of nearest neighbours :math:`bw_k` chosen per
    covariate by AICc (golden-section search, back-fitting); GWR uses one bandwidth for all
    covariates, OLS none. Local coefficients are significant where
    :math:`|t| > t_{crit}` with the family-wise correction based on each covariate's effective
    number of parameters (``mgwr``'s ``critical_tval``).

    Parameters
    ----------
    x, y : sample coordinates (projected; not degrees).
    response : values of the response (already on the intended scale, e.g. log).
    covariates : numeric covariates, one column each (categorical ones one-hot beforehand).
    max_n : refuse (ValueError) above this many samples, see :data:`MGWR_COST_NOTE`.

    Returns
    -------
    DriverResult
        Model comparison (OLS, GWR, MGWR: aicc, r2, adj_r2, bandwidth), per-covariate coefficient
        summary and per-sample local coefficients, t-values and significance flags.

    References
    ----------
    Fotheringham, A.S., Yang, W. and Kang, W. (2017). Multiscale geographically weighted
    regression (MGWR). Annals of the AAG 107, 1247-1265. https://doi.org/10.1080/24694452.2017.1352480
    Oshan, T.M., Li, Z., Kang, W., Wolf, L.J. and Fotheringham, A.S. (2019). mgwr: a Python
    implementation of multiscale geographically weighted regression. ISPRS Int. J. Geo-Inf. 8, 269.
    https://doi.org/10.3390/ijgi8060269
    da Silva, A.R. and Fotheringham, A.S. (2016). The multiple testing issue in geographically
    weighted regression. Geographical Analysis 48, 233-247. https://doi.org/10.1111/gean.12084
    """
    import statsmodels.api as sm
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings():   # tqdm.auto warns about missing ipywidgets inside notebooks
        warnings.simplefilter("ignore")
        from mgwr.gwr import GWR, MGWR
        from mgwr.sel_bw import Sel_BW

    coords = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    yv = np.asarray(response, float).reshape(-1, 1)
    n = len(yv)
    if n > max_n:
        raise ValueError(f"MGWR: {n} samples is above the limit max_n={max_n}; {MGWR_COST_NOTE}")
    if not isinstance(covariates, pd.DataFrame) or covariates.shape[1] == 0:
        raise ValueError("covariates: expected a DataFrame with at least one numeric column")
    if len(covariates) != n or len(coords) != n:
        raise ValueError(f"expected {n} rows in coordinates and covariates, got {len(coords)} and {len(covariates)}")
    X = covariates.to_numpy(float)
    if not (np.isfinite(X).all() and np.isfinite(yv).all() and np.isfinite(coords).all()):
        raise ValueError("MGWR: expected finite response, covariates and coordinates (drop missing rows first)")
    names = list(covariates.columns)
    if n < 10 * (len(names) + 1):
        raise ValueError(f"MGWR: expected at least {10 * (len(names) + 1)} samples for {len(names)} covariates, got {n}")
    Xs, ys = _standardise(X), _standardise(yv)
    # mgwr draws tqdm progress bars on stderr; keep notebooks and logs clean
    with threadpool_limits(limits=1, user_api="blas"), contextlib.redirect_stderr(io.StringIO()):
        ols = sm.OLS(ys[:, 0], sm.add_constant(Xs)).fit()
        gsel = Sel_BW(coords, ys, Xs, n_jobs=1)
        gbw = gsel.search()
        gwr = GWR(coords, ys, Xs, gbw, n_jobs=1).fit()
        msel = Sel_BW(coords, ys, Xs, multi=True, n_jobs=1)
        mbw = msel.search(init_multi=gbw)   # start the back-fitting from the GWR bandwidth found above
        mg = MGWR(coords, ys, Xs, msel, n_jobs=1).fit()
    k = len(names) + 1
    # mgwr's AICc, -2 llf + 2 n (tr S + 1)/(n - tr S - 2), with tr S = k for OLS (Hurvich et al. 1998)
    ols_aicc = float(-2.0 * ols.llf + 2.0 * n * (k + 1) / (n - k - 2))
    comparison = pd.DataFrame([
        {"model": "OLS", "aicc": ols_aicc, "r2": float(ols.rsquared), "adj_r2": float(ols.rsquared_adj),
         "bandwidth": np.nan},
        {"model": "GWR", "aicc": float(gwr.aicc), "r2": float(gwr.R2), "adj_r2": float(gwr.adj_R2),
         "bandwidth": float(gbw)},
        {"model": "MGWR", "aicc": float(mg.aicc), "r2": float(mg.R2), "adj_r2": float(mg.adj_R2),
         "bandwidth": np.nan},
    ])
    allnames = ["intercept", *names]
    tcrit = np.atleast_1d(mg.critical_tval())
    params, tvals = np.asarray(mg.params), np.asarray(mg.tvalues)
    local = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1]})
    coef_rows = []
    for j, nm in enumerate(allnames):
        b, t = params[:, j], tvals[:, j]
        sig = np.abs(t) > tcrit[j]
        local[f"beta_{nm}"], local[f"t_{nm}"], local[f"sig_{nm}"] = b, t, sig
        coef_rows.append({"covariate": nm, "ols_beta": float(ols.params[j]), "ols_p": float(ols.pvalues[j]),
                          "mgwr_bandwidth": float(np.asarray(mbw).ravel()[j]), "mgwr_mean": float(b.mean()),
                          "mgwr_sd": float(b.std()), "mgwr_min": float(b.min()), "mgwr_median": float(np.median(b)),
                          "mgwr_max": float(b.max()), "share_significant": float(sig.mean()),
                          "t_critical": float(tcrit[j])})
    return DriverResult(comparison=comparison, coefficients=pd.DataFrame(coef_rows), local=local,
                        covariates=names, response=response_name)


def driver_table(samples: pd.DataFrame, concentrations: pd.DataFrame, *, response: str, covariates: list[str],
                 log_metals: bool = True, categorical=()) -> tuple[pd.Series, pd.DataFrame, list[str]]:
    """Response and predictor columns for :func:`mgwr_drivers` from sample attributes and metals.

    Each name in ``covariates`` is a numeric sample covariate or a metal (wide concentration
    column; natural log when ``log_metals``). The response is a metal (logged likewise). Rows
    with a missing value are dropped. Returns (response, covariates, labels) with the labels
    saying which were logged.

    Parameters
    ----------
    samples : DataFrame
        Sample attributes (numeric covariates), indexed like ``concentrations``.
    concentrations : DataFrame
        Wide concentrations, one column per metal (mg/kg).
    response : str
        Metal used as response.
    covariates : list of str
        Numeric sample covariates and/or metals used as predictors.
    log_metals : bool, default True
        Take the natural log of metal concentrations.
    categorical : collection of str, default ()
        Names of categorical covariates (refused).

    Returns
    -------
    tuple[pd.Series, pd.DataFrame, list[str]]
        (response, covariates, labels) with the labels saying which were logged.

    Raises
    ------
    ValueError
        For an unknown name or a categorical covariate (dummy variables are locally constant
        and make the local regressions singular).
    """
    if response not in concentrations.columns:
        raise ValueError(f"driver response: expected a metal in {list(concentrations.columns)}, got {response!r}")
    cols, labels = {}, []
    for c in covariates:
        if c in categorical:
            raise ValueError(f"driver covariate {c!r} is categorical; MGWR needs numeric covariates "
                             "(local dummy variables are often constant and make local fits singular)")
        if c in concentrations.columns:
            v = concentrations[c].to_numpy(float)
            cols[c] = np.log(v) if log_metals else v
            labels.append(f"ln {c}" if log_metals else c)
        elif c in samples.columns and pd.api.types.is_numeric_dtype(samples[c]):
            cols[c] = samples[c].to_numpy(float)
            labels.append(c)
        else:
            raise ValueError(f"driver covariate {c!r}: expected a numeric sample covariate or a metal; "
                             f"numeric covariates: {[k for k in samples.columns if pd.api.types.is_numeric_dtype(samples[k])]}, "
                             f"metals: {list(concentrations.columns)}")
    X = pd.DataFrame(cols, index=samples.index)
    yv = concentrations[response].to_numpy(float)
    y = pd.Series(np.log(yv) if log_metals else yv, index=samples.index, name=response)
    ok = X.notna().all(axis=1) & y.notna() & np.isfinite(y)
    return y[ok], X[ok], labels


def coefficient_figure(res: DriverResult, *, coordinate_unit: str):
    """Maps of MGWR local coefficients; samples where |t| is below the corrected critical value are hollow.

    Parameters
    ----------
    res : DriverResult
        Result of :func:`mgwr_drivers`.
    coordinate_unit : str
        Unit of the coordinates, for the axis label.

    Returns
    -------
    matplotlib.figure.Figure
        One map panel per coefficient (intercept and covariates), titled with the MGWR bandwidth.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    from .plots import MIN_FONT_PT, decorate_map

    names = ["intercept", *res.covariates]
    ncols = min(4, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0, 2.0 * nrows + 0.3), squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    L = res.local
    for ax, nm in zip(axes.ravel(), names):
        b, sig = L[f"beta_{nm}"].to_numpy(), L[f"sig_{nm}"].to_numpy(bool)
        lim = max(float(np.abs(b).max()), 1e-9)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
        sc = ax.scatter(L["x"][sig], L["y"][sig], c=b[sig], cmap="RdBu_r", norm=norm, s=12, linewidths=0)
        ax.scatter(L["x"][~sig], L["y"][~sig], facecolors="none", edgecolors=plt.cm.RdBu_r(norm(b[~sig])),
                   s=12, linewidths=0.6)
        bw = res.coefficients.set_index("covariate").loc[nm, "mgwr_bandwidth"]
        # long reader labels ("distance to the river (normalised)") wrap instead of running into the next panel
        ax.set_title(textwrap.fill(f"{nm} (bw {bw:.0f})", width=max(14, int(62 / ncols))), fontsize=8)
        ax.set_aspect("equal")
        # no coordinate ticks (unreadable below 7 pt in four panels): a scale bar and north arrow instead
        ax.set_xticks([])
        ax.set_yticks([])
        cb = fig.colorbar(sc, ax=ax, shrink=0.75, pad=0.02)
        cb.ax.tick_params(labelsize=MIN_FONT_PT)
        cb.ax.locator_params(nbins=4)
    decorate_map(axes.ravel()[0], crs=None, coordinate_unit=coordinate_unit, note=False)
    fig.supxlabel("filled: significant, hollow: not significant", fontsize=MIN_FONT_PT)
    fig.tight_layout()
    return fig


def methods_text(*, response_label: str, covariate_labels: list[str], max_n: int) -> str:
    """Methods paragraph for the driver analysis (pandoc markdown).

    Parameters
    ----------
    response_label : str
        Label of the response (e.g. ``'ln Pb'``).
    covariate_labels : list of str
        Labels of the covariates.
    max_n : int
        Sample count above which the analysis is skipped.

    Returns
    -------
    str
        Methods paragraph (pandoc markdown with citation keys).
    """
    return rf"""
**Drivers.** To see which covariates go with {response_label} and at what spatial scale, {response_label} was
regressed on {", ".join(covariate_labels)} (all standardised) with a global ordinary least squares model, a
geographically weighted regression (GWR, one bandwidth) and a multiscale GWR (MGWR, one bandwidth per covariate)
[@fotheringham2017mgwr; @oshan2019mgwr]: $y_i = \sum_k \beta_{{bw_k}}(u_i,v_i)\,x_{{ik}} + \varepsilon_i$,
bisquare kernel over an adaptive number of nearest neighbours chosen by AICc [@hurvich1998]. A small bandwidth
means a relation that changes over short distances; a bandwidth near the number of samples, a global one. Local
coefficients are significant where $|t|$ exceeds the critical value corrected for the effective number of
parameters [@dasilva2016]. The analysis is skipped above {max_n} samples because MGWR's cost grows with the square
of the number of samples [@li2020mgwr]. Associations are not causal.
"""


def _signed(x: float) -> str:
    """A coefficient for prose with a typographic minus (−0.78, not -0.78)."""
    return f"{x:.2f}".replace("-", "\u2212")


def results_text(res: DriverResult) -> str:
    """Results sentences: model comparison by AICc and the scale of each covariate's relation.

    Parameters
    ----------
    res : DriverResult
        Result of :func:`mgwr_drivers`.

    Returns
    -------
    str
        Sentences comparing OLS/GWR/MGWR by AICc and R² and giving each covariate's bandwidth,
        coefficient range and share of significant samples.
    """
    from .descriptive import _and

    c = res.comparison.set_index("model")
    best = c["aicc"].idxmin()
    others = [m for m in ("OLS", "GWR", "MGWR") if m != best]
    txt = (f"By AICc the {best} model fitted best (AICc {c.loc[best, 'aicc']:.1f} against "
           f"{c.loc[others[0], 'aicc']:.1f} for {others[0]} and {c.loc[others[1], 'aicc']:.1f} for {others[1]}; "
           f"R² {c.loc[best, 'r2']:.2f}, global OLS {c.loc['OLS', 'r2']:.2f}).")
    n = len(res.local)

    def where(share: float) -> str:
        return ("at every sample" if share >= 0.995 else "at no sample" if share == 0
                else f"at {100 * share:.0f} % of the samples")

    glob, loc, none_ = [], [], []
    for r in res.coefficients.itertuples():
        if r.covariate == "intercept":
            continue
        # the coefficients are standardised, so a unit in the label adds nothing but a second parenthesis
        r = r._replace(covariate=re.sub(r"\s*\([^)]*\)$", "", str(r.covariate)))
        if r.mgwr_bandwidth >= 0.9 * (n - 1) and r.share_significant == 0:
            none_.append(r.covariate)
        elif r.mgwr_bandwidth >= 0.9 * (n - 1):
            glob.append(f"{r.covariate} (coefficient {_signed(r.mgwr_median)}, significant {where(r.share_significant)})")
        else:
            sign = (", changing sign across the region" if r.mgwr_min < 0 < r.mgwr_max else "")
            loc.append(f"{r.covariate} (bandwidth {r.mgwr_bandwidth:.0f} of {n} samples, "
                       f"{100 * r.mgwr_bandwidth / n:.0f} %; coefficients {_signed(r.mgwr_min)} to "
                       f"{_signed(r.mgwr_max)}{sign}; significant {where(r.share_significant)})")

    if glob:
        txt += (f" {_and(glob)} {'acts' if len(glob) == 1 else 'act'} at the scale of the whole region (bandwidth "
                "close to the number of samples): one coefficient fits everywhere.")
    if none_:
        txt += f" {_and(none_)} {'is' if len(none_) == 1 else 'are'} significant at no sample."
    if loc:
        txt += (f" The relation with {_and(loc)} {'varies' if len(loc) == 1 else 'vary'} within the region: "
                "a local process, or a covariate missing from the model, changes it from place to place.")
    return txt
