"""Source apportionment, stage ``sources``: correlation, PCA with varimax, factor interpretation.

PMF lives in :mod:`hmlib.pmf` and isotope mixing in :mod:`hmlib.isotopes`; this module holds
the correlation and PCA analyses, the factor interpretation aid, the plots and the prose of the
stage (its options and driver are in :mod:`hmlib.stages.sources`).

References
----------
.. [1] Kaiser, H. F. (1958). The varimax criterion for analytic rotation in factor analysis.
   Psychometrika 23, 187-200. https://doi.org/10.1007/BF02289233
.. [2] Kaiser, H. F. (1960). The application of electronic computers to factor analysis.
   Educ. Psychol. Meas. 20, 141-151. https://doi.org/10.1177/001316446002000116
.. [3] Kaiser, H. F. (1974). An index of factorial simplicity. Psychometrika 39, 31-36.
   https://doi.org/10.1007/BF02291575
.. [4] Bartlett, M. S. (1950). Tests of significance in factor analysis. Br. J. Stat. Psychol. 3,
   77-85. https://doi.org/10.1111/j.2044-8317.1950.tb00285.x
.. [5] Aitchison, J. (1982). The statistical analysis of compositional data. J. R. Stat. Soc. B
   44, 139-177. https://doi.org/10.1111/j.2517-6161.1982.tb01195.x
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "correlation_table",
    "correlation_matrices",
    "significance_mark",
    "plot_correlation_heatmap",
    "transform_for_pca",
    "kmo_bartlett",
    "PCAResult",
    "pca_varimax",
    "pca_loadings_table",
    "plot_scree",
    "plot_biplot",
    "signature_similarity",
    "interpret_factors",
    "signature_apart_from",
    "plot_pmf_profiles",
    "plot_q_scan",
    "plot_contribution_maps",
    "plot_isotopes",
    "methods_text",
    "methods_summary",
    "subsample_text",
    "correlation_display",
    "pmf_results_text",
    "species_share_intervals",
    "sample_species_shares",
    "attribution_table",
    "attribution_display",
    "log_correlation",
    "attribution_text",
    "covariate_association",
    "compare_pmf_with_truth",
    "compare_isotopes_with_truth",
]



def _class_name(level) -> str:
    """A class level for prose: a bare code such as ``1`` or ``W`` reads "class 1", a name stays as it is."""
    text = str(level)
    return f"class {text}" if text.replace(".", "", 1).isdigit() or len(text) <= 2 else text

def _printed(func):
    """Draw the figure with the report's print settings (no text under 7 pt; :func:`hmlib.plots.print_style`)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .plots import print_style

        with print_style():
            return func(*args, **kwargs)

    return wrapper


# ------------------------------------------------------------------------------------- correlation
def significance_mark(p: float) -> str:
    """``**`` for p < 0.01, ``*`` for p < 0.05, else empty.

    Parameters
    ----------
    p : float
        p-value.

    Returns
    -------
    str
        ``'**'``, ``'*'`` or ``''`` (also for a non-finite p).
    """
    if not np.isfinite(p):
        return ""
    return "**" if p < 0.01 else ("*" if p < 0.05 else "")


def _check_conc(concentration: pd.DataFrame, *, positive: bool) -> pd.DataFrame:
    if not isinstance(concentration, pd.DataFrame):
        raise ValueError(f"expected a DataFrame of samples x metals, got {type(concentration).__name__}")
    if concentration.shape[1] < 2 or concentration.shape[0] < 3:
        raise ValueError(f"need >= 3 samples and >= 2 metals, got shape {concentration.shape}")
    if positive and (concentration <= 0).any().any():
        bad = concentration.columns[(concentration <= 0).any()].tolist()
        raise ValueError(f"log/clr need concentrations > 0; metals with values <= 0: {bad}")
    return concentration


def correlation_table(concentration: pd.DataFrame, *, methods=("pearson", "pearson_log", "spearman")) -> pd.DataFrame:
    """Pairwise correlation coefficients and two-tailed p-values (long table).

    ``pearson``: Pearson r of the raw values; ``pearson_log``: of log10 values;
    ``spearman``: Spearman rho (rank-based, so identical for raw and log values). p-values
    from scipy's ``pearsonr``/``spearmanr`` (t distribution with n - 2 degrees of freedom).
    Pairs use the samples where both metals are present.

    .. math:: r = \\frac{\\sum (x_i-\\bar x)(y_i-\\bar y)}{\\sqrt{\\sum (x_i-\\bar x)^2 \\sum (y_i-\\bar y)^2}},
        \\quad t = r\\sqrt{\\frac{n-2}{1-r^2}}

    Returns columns method, metal_a, metal_b, r, p, n (one row per unordered pair).

    Parameters
    ----------
    concentration : pandas.DataFrame
        Concentrations, samples x metals.
    methods : iterable of str, default ("pearson", "pearson_log", "spearman")
        Correlation methods to compute.

    Returns
    -------
    pandas.DataFrame
        Columns method, metal_a, metal_b, r, p, n.
    """
    x = _check_conc(concentration, positive=False)
    rows = []
    cols = list(x.columns)
    for method in methods:
        if method not in ("pearson", "pearson_log", "spearman"):
            raise ValueError(f"method must be pearson, pearson_log or spearman, got {method!r}")
        for i, a in enumerate(cols):
            for b in cols[i + 1:]:
                ok = x[a].notna() & x[b].notna()
                va, vb = x.loc[ok, a].to_numpy(float), x.loc[ok, b].to_numpy(float)
                if method == "pearson_log":
                    pos = (va > 0) & (vb > 0)
                    va, vb = np.log10(va[pos]), np.log10(vb[pos])
                if len(va) < 3 or np.std(va) == 0 or np.std(vb) == 0:
                    r, p = np.nan, np.nan
                elif method == "spearman":
                    r, p = stats.spearmanr(va, vb)
                else:
                    r, p = stats.pearsonr(va, vb)
                rows.append({"method": method, "metal_a": a, "metal_b": b, "r": float(r), "p": float(p),
                             "n": int(len(va))})
    return pd.DataFrame(rows)


def correlation_matrices(table: pd.DataFrame, *, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Square r and p matrices (metals x metals) of one method from :func:`correlation_table`.

    Parameters
    ----------
    table : pandas.DataFrame
        Long table of :func:`correlation_table`.
    method : str
        Method to extract.

    Returns
    -------
    tuple of (pandas.DataFrame, pandas.DataFrame)
        Correlation matrix r (diagonal 1) and p-value matrix (diagonal 0), metals x metals.
    """
    t = table[table["method"] == method]
    metals = list(dict.fromkeys(list(t["metal_a"]) + list(t["metal_b"])))
    r = pd.DataFrame(np.eye(len(metals)), index=metals, columns=metals)
    p = pd.DataFrame(np.zeros((len(metals), len(metals))), index=metals, columns=metals)
    for _, row in t.iterrows():
        r.at[row.metal_a, row.metal_b] = r.at[row.metal_b, row.metal_a] = row.r
        p.at[row.metal_a, row.metal_b] = p.at[row.metal_b, row.metal_a] = row.p
    return r, p


def plot_correlation_heatmap(r: pd.DataFrame, p: pd.DataFrame, *, title: str = ""):
    """Clustered heatmap of a correlation matrix with significance marks; returns the figure.

    Rows and columns are ordered by average-linkage hierarchical clustering on the distance
    :math:`1 - r` (scipy), so metals that vary together sit together.

    Parameters
    ----------
    r : pandas.DataFrame
        Correlation matrix, metals x metals.
    p : pandas.DataFrame
        p-value matrix of the same shape.
    title : str, default ''
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    d = np.clip(1 - r.to_numpy(float), 0, 2)
    np.fill_diagonal(d, 0)
    d = (d + d.T) / 2
    order = list(r.index)
    fig = plt.figure(figsize=(5.6, 4.8))
    if len(order) > 2:
        Z = linkage(squareform(d, checks=False), method="average")
        ax_d = fig.add_axes([0.08, 0.78, 0.62, 0.14])
        dn = dendrogram(Z, labels=order, ax=ax_d, color_threshold=0, above_threshold_color="0.3", no_labels=True)
        ax_d.set_axis_off()
        order = [order[i] for i in dn["leaves"]]
    ax = fig.add_axes([0.08, 0.08, 0.62, 0.68])
    rr = r.loc[order, order].to_numpy(float)
    im = ax.imshow(rr, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(order)):
        for j in range(len(order)):
            if i == j:
                continue
            mark = significance_mark(float(p.loc[order[i], order[j]]))
            ax.text(j, i, f"{rr[i, j]:.2f}{mark}", ha="center", va="center", fontsize=7,
                    color="white" if abs(rr[i, j]) > 0.6 else "black")
    ax.set_xticks(range(len(order)), order)
    ax.set_yticks(range(len(order)), order)
    cax = fig.add_axes([0.73, 0.08, 0.03, 0.68])
    fig.colorbar(im, cax=cax, label="r")
    if title:
        fig.suptitle(title, x=0.39, y=0.98, fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------- PCA
def transform_for_pca(concentration: pd.DataFrame, *, transform: Literal["log", "clr"] = "log") -> pd.DataFrame:
    """log10 or centred log-ratio [5]_ of concentrations, then z-scores per metal.

    .. math:: \\mathrm{clr}(x)_j = \\ln x_j - \\frac{1}{m}\\sum_{l=1}^{m} \\ln x_l, \\qquad
        z_{ij} = \\frac{t_{ij} - \\bar t_j}{s_j}

    Parameters
    ----------
    concentration : pandas.DataFrame
        Positive concentrations, samples x metals (rows with missing values dropped).
    transform : {'log', 'clr'}, default 'log'
        Log-ratio transform.

    Returns
    -------
    pandas.DataFrame
        z-scores of the transformed values, samples x metals.
    """
    x = _check_conc(concentration.dropna(), positive=True)
    if transform == "log":
        t = np.log10(x)
    elif transform == "clr":
        lx = np.log(x)
        t = lx.sub(lx.mean(axis=1), axis=0)
    else:
        raise ValueError(f"transform must be 'log' or 'clr', got {transform!r}")
    sd = t.std(ddof=1)
    if (sd == 0).any():
        raise ValueError(f"metals without variation cannot be standardized: {sd[sd == 0].index.tolist()}")
    return (t - t.mean()) / sd


def kmo_bartlett(z: pd.DataFrame) -> dict:
    """Kaiser-Meyer-Olkin measure [3]_ and Bartlett's sphericity test [4]_ (factor_analyzer).

    .. math::

        \\mathrm{KMO} = \\frac{\\sum_{j\\ne l} r_{jl}^2}{\\sum_{j\\ne l} r_{jl}^2 + \\sum_{j\\ne l} a_{jl}^2},
        \\qquad \\chi^2 = -\\Big(n - 1 - \\frac{2m+5}{6}\\Big)\\ln|R|, \\quad \\nu = \\frac{m(m-1)}{2}

    with :math:`a_{jl}` the partial correlations. Returns kmo (overall), kmo_per_variable
    (Series), bartlett_chi2, bartlett_df, bartlett_p. Note: with clr data the correlation
    matrix is singular (rows sum to zero), so KMO and Bartlett are computed on the log data.

    Parameters
    ----------
    z : pandas.DataFrame
        Standardized data, samples x variables.

    Returns
    -------
    dict
        Keys kmo, kmo_per_variable, bartlett_chi2, bartlett_df, bartlett_p.
    """
    from factor_analyzer.factor_analyzer import calculate_bartlett_sphericity, calculate_kmo

    kmo_per, kmo_all = calculate_kmo(z)
    chi2, p = calculate_bartlett_sphericity(z)
    m = z.shape[1]
    return {"kmo": float(kmo_all), "kmo_per_variable": pd.Series(kmo_per, index=z.columns),
            "bartlett_chi2": float(chi2), "bartlett_df": int(m * (m - 1) // 2), "bartlett_p": float(p)}


@dataclass
class PCAResult:
    """Principal components of standardized data, with varimax-rotated loadings.

    Attributes
    ----------
    eigenvalues : Series, eigenvalues of the correlation matrix (all components, descending).
    explained_variance : Series, percent of total variance per component.
    loadings : DataFrame metals x retained components (unrotated, eigenvector * sqrt(eigenvalue)).
    rotated_loadings : DataFrame metals x retained components after varimax (Kaiser normalization).
    rotated_variance : Series, percent of total variance carried by each rotated component.
    scores : DataFrame samples x retained components (regression scores of the rotated solution).
    n_components : retained count; ``criterion`` says how it was chosen.
    transform : 'log' or 'clr'. ``tests`` : KMO and Bartlett results (see :func:`kmo_bartlett`).
    """

    eigenvalues: pd.Series
    explained_variance: pd.Series
    loadings: pd.DataFrame
    rotated_loadings: pd.DataFrame
    rotated_variance: pd.Series
    scores: pd.DataFrame
    n_components: int
    criterion: str
    transform: str
    tests: dict


def pca_varimax(concentration: pd.DataFrame, *, transform: Literal["log", "clr"] = "log",
                n_components: int | None = None) -> PCAResult:
    """PCA on standardized log or clr data, Kaiser criterion [2]_ or fixed count, varimax [1]_.

    Loadings :math:`L = V_q \\Lambda_q^{1/2}` from the eigen-decomposition of the correlation
    matrix; components with eigenvalue > 1 are kept unless ``n_components`` is given. Varimax
    maximises :math:`\\sum_k \\big[\\frac{1}{m}\\sum_j l_{jk}^4 - (\\frac{1}{m}\\sum_j l_{jk}^2)^2\\big]`
    over orthogonal rotations of the row-normalized loadings (factor_analyzer's ``Rotator``).
    Each component's sign is set so that its largest absolute loading is positive.

    Parameters
    ----------
    concentration : pandas.DataFrame
        Positive concentrations, samples x metals.
    transform : {'log', 'clr'}, default 'log'
        Transform before standardizing (see :func:`transform_for_pca`).
    n_components : int or None, optional
        Number of components to keep; None applies the Kaiser criterion.

    Returns
    -------
    PCAResult
        Eigenvalues, explained variance (%), unrotated and rotated loadings, rotated variance and scores.
    """
    from factor_analyzer.rotator import Rotator

    z = transform_for_pca(concentration, transform=transform)
    R = np.corrcoef(z.to_numpy(float), rowvar=False)
    evals, evecs = np.linalg.eigh(R)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    m = z.shape[1]
    if n_components is None:
        q = max(int((evals > 1).sum()), 1)
        criterion = f"Kaiser criterion: {q} {'eigenvalue' if q == 1 else 'eigenvalues'} > 1"
    else:
        if n_components > m:
            raise ValueError(f"n_components ({n_components}) exceeds the number of metals ({m})")
        q = int(n_components)
        criterion = f"fixed count: {q}"
    L = evecs[:, :q] * np.sqrt(evals[:q])[None, :]
    L = L * np.sign(L[np.argmax(np.abs(L), axis=0), range(q)])[None, :]
    if q >= 2:
        # tighter tolerance than the default 1e-5, which stops visibly short of the optimum
        Lr = Rotator(method="varimax", normalize=True, max_iter=2000, tol=1e-12).fit_transform(L)
    else:
        Lr = L.copy()
    Lr = Lr * np.sign(Lr[np.argmax(np.abs(Lr), axis=0), range(q)])[None, :]
    names = [f"PC{k + 1}" for k in range(q)]
    rnames = [f"RC{k + 1}" for k in range(q)]
    # regression (Thurstone) scores: Z R^-1 L (pseudo-inverse: clr correlation matrices are singular)
    scores = z.to_numpy(float) @ np.linalg.pinv(R) @ Lr
    log_data = transform_for_pca(concentration, transform="log") if transform == "clr" else z
    return PCAResult(
        eigenvalues=pd.Series(evals, index=[f"PC{k + 1}" for k in range(m)], name="eigenvalue"),
        explained_variance=pd.Series(100 * evals / evals.sum(), index=[f"PC{k + 1}" for k in range(m)]),
        loadings=pd.DataFrame(L, index=z.columns, columns=names),
        rotated_loadings=pd.DataFrame(Lr, index=z.columns, columns=rnames),
        rotated_variance=pd.Series(100 * (Lr ** 2).sum(axis=0) / m, index=rnames),
        scores=pd.DataFrame(scores, index=z.index, columns=rnames),
        n_components=q, criterion=criterion, transform=transform, tests=kmo_bartlett(log_data),
    )


def pca_loadings_table(res: PCAResult) -> pd.DataFrame:
    """Tidy loadings: component, metal, loading, rotated_loading, eigenvalue, explained_variance_percent,
    rotated_variance_percent, communality.

    Parameters
    ----------
    res : PCAResult
        Result of :func:`pca_varimax`.

    Returns
    -------
    pandas.DataFrame
        One row per component and metal with the columns listed above (variances in %).
    """
    rows = []
    comm = (res.rotated_loadings ** 2).sum(axis=1)
    for pc, rc in zip(res.loadings.columns, res.rotated_loadings.columns):
        for metal in res.loadings.index:
            rows.append({"component": rc, "metal": metal, "loading": res.loadings.at[metal, pc],
                         "rotated_loading": res.rotated_loadings.at[metal, rc],
                         "eigenvalue": res.eigenvalues[pc], "explained_variance_percent": res.explained_variance[pc],
                         "rotated_variance_percent": res.rotated_variance[rc], "communality": comm[metal]})
    return pd.DataFrame(rows)


@_printed
def plot_scree(res: PCAResult, *, title: str = ""):
    """Scree plot: eigenvalues with the Kaiser line and cumulative explained variance (%).

    Parameters
    ----------
    res : PCAResult
        Result of :func:`pca_varimax`.
    title : str, default ''
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    k = np.arange(1, len(res.eigenvalues) + 1)
    ax.plot(k, res.eigenvalues.to_numpy(), "o-", color="C0", label="eigenvalue")
    ax.axhline(1.0, color="0.5", ls="--", lw=1, label="Kaiser criterion (1)")
    ax.set_xlabel("component")
    ax.set_ylabel("eigenvalue")
    ax.set_xticks(k)
    ax2 = ax.twinx()
    ax2.plot(k, np.cumsum(res.explained_variance.to_numpy()), "s:", color="C1", label="cumulative variance")
    ax2.set_ylabel("cumulative variance (%)")
    ax2.set_ylim(0, 105)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


@_printed
def plot_biplot(res: PCAResult, *, title: str = ""):
    """Scores and rotated loadings of the first two rotated components (one panel).

    Parameters
    ----------
    res : PCAResult
        Result of :func:`pca_varimax`.
    title : str, default ''
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    L = res.rotated_loadings
    if L.shape[1] < 2:
        ax.text(0.5, 0.5, "one component retained: no biplot", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    S = res.scores.iloc[:, :2].to_numpy()
    LL = np.abs(L.iloc[:, :2].to_numpy()).max(axis=0)
    scale = float(np.min(np.abs(S).max(axis=0) / np.maximum(LL, 1e-9)))
    ax.scatter(S[:, 0], S[:, 1], s=8, color="0.6", alpha=0.6, label="samples (scores)")
    arrows = L.iloc[:, :2].to_numpy() * scale * 0.9
    for x, y in arrows:
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="C3", lw=1.2))
    tips = L.iloc[:, :2].to_numpy() * scale * 1.1
    pts = np.vstack([S, tips, [[0, 0]]])
    # metals whose arrow tips nearly coincide share one label ("Co, Ni") instead of printing over each other
    span = np.maximum(pts.max(axis=0) - pts.min(axis=0), 1e-12)
    groups: list[list[int]] = []
    for i in np.argsort(-np.hypot(*arrows.T)):
        near = [g for g in groups if any(np.all(np.abs(arrows[i] - arrows[j]) / span < [0.09, 0.06]) for j in g)]
        if near:
            near[0].append(i)
        else:
            groups.append([i])
    for g in groups:
        x, y = arrows[g[0]] * 1.08 + np.sign(arrows[g[0]]) * span * [0.03 * (len(g) > 1), 0]
        ax.text(x, y, ", ".join(str(L.index[j]) for j in sorted(g)), color="C3", fontsize=9,
                ha="left" if len(g) > 1 and x > 0 else "right" if len(g) > 1 else "center", va="center")
    pad = 0.08 * (pts.max(axis=0) - pts.min(axis=0))
    ax.set_xlim(pts[:, 0].min() - pad[0], pts[:, 0].max() + pad[0])
    ax.set_ylim(pts[:, 1].min() - pad[1], pts[:, 1].max() + pad[1])
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.set_xlabel(f"{L.columns[0]} ({res.rotated_variance.iloc[0]:.1f} %)")
    ax.set_ylabel(f"{L.columns[1]} ({res.rotated_variance.iloc[1]:.1f} %)")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ interpretation aid
def signature_similarity(factor_weights: pd.DataFrame, signatures: dict[str, list[str]]) -> pd.DataFrame:
    """Cosine similarity of each factor's metal weights with each signature's marker indicator.

    ``factor_weights`` is factors x metals, non-negative (e.g. PMF percent of species, or
    squared rotated PCA loadings of positive sign). A signature is a set of marker metals; its
    vector is 1 for markers and 0 otherwise.

    .. math:: \\cos(w, s) = \\frac{\\sum_j w_j s_j}{\\lVert w \\rVert\\,\\lVert s \\rVert}

    Returns a factors x signatures DataFrame (NaN when a signature has no metal in the data).

    Parameters
    ----------
    factor_weights : pandas.DataFrame
        Non-negative weights, factors x metals (negatives clipped to 0).
    signatures : dict of str to list of str
        Signature name mapped to its marker metals.

    Returns
    -------
    pandas.DataFrame
        Cosine similarity (0-1), factors x signatures.
    """
    metals = list(factor_weights.columns)
    W = factor_weights.to_numpy(float).clip(min=0)
    out = {}
    for name, markers in signatures.items():
        s = np.array([1.0 if m in markers else 0.0 for m in metals])
        if s.sum() == 0:
            out[name] = np.full(W.shape[0], np.nan)
            continue
        nw = np.linalg.norm(W, axis=1)
        out[name] = np.where(nw > 0, W @ s / (np.where(nw > 0, nw, 1) * np.linalg.norm(s)), np.nan)
    return pd.DataFrame(out, index=factor_weights.index)


def interpret_factors(factor_weights: pd.DataFrame, signatures: dict[str, list[str]], *,
                      min_similarity: float = 0.7, top: int = 3) -> pd.DataFrame:
    """Suggest a source type for each factor, always with the reason.

    A factor is labelled with the signature of highest cosine similarity (see
    :func:`signature_similarity`) only when it reaches ``min_similarity``; otherwise it stays
    ``unassigned``. ``reason`` gives the similarity, the signature's markers and the factor's
    ``top`` metals by weight.

    Returns columns factor, suggested_source, similarity, best_signature, markers, top_metals,
    reason.

    Parameters
    ----------
    factor_weights : pandas.DataFrame
        Non-negative weights, factors x metals.
    signatures : dict of str to list of str
        Signature name mapped to its marker metals.
    min_similarity : float, default 0.7
        Cosine similarity needed to assign a source.
    top : int, default 3
        Number of top metals listed in the reason.

    Returns
    -------
    pandas.DataFrame
        Columns factor, suggested_source, similarity, best_signature, markers, top_metals, reason.
    """
    sim = signature_similarity(factor_weights, signatures) if signatures else pd.DataFrame(index=factor_weights.index)
    rows = []
    for f in factor_weights.index:
        w = factor_weights.loc[f].clip(lower=0).sort_values(ascending=False)
        topm = ", ".join(f"{m} {v:.0f}" for m, v in w.head(top).items())
        if sim.shape[1] == 0 or sim.loc[f].isna().all():
            rows.append({"factor": f, "suggested_source": "unassigned", "similarity": np.nan, "best_signature": "",
                         "markers": "", "top_metals": topm,
                         "reason": "no source signatures configured (stages.sources.signatures)"})
            continue
        best = sim.loc[f].idxmax()
        val = float(sim.at[f, best])
        markers = ", ".join(signatures[best])
        label = best if val >= min_similarity else "unassigned"
        verdict = ("meets" if val >= min_similarity else "is below") + f" the threshold {min_similarity:g}"
        rows.append({"factor": f, "suggested_source": label, "similarity": val, "best_signature": best,
                     "markers": markers, "top_metals": topm,
                     "reason": f"cosine similarity {val:.2f} with '{best}' (markers {markers}) {verdict}; "
                               f"largest weights: {topm}"})
    return pd.DataFrame(rows)


def signature_apart_from(weights: pd.Series, signatures: dict[str, list[str]], metal: str, *,
                         min_similarity: float = 0.7, min_share: float = 50.0) -> tuple[str | None, float]:
    """The source type a factor resembles when ``metal`` is left out, so that a metal listed as a marker
    cannot make its own factor look like that source (a circular label).

    The factor's weights of the other metals (PMF: the percent of each metal the factor carries) are
    compared with each signature's other markers by cosine similarity (:func:`signature_similarity`); the
    best signature is kept when it reaches ``min_similarity`` and the factor also carries at least
    ``min_share`` % of one of those other markers, i.e. when the factor is where another marker of that
    source mostly goes. A factor that carries little of every other metal isolates the metal's own variation
    and is not labelled.

    Parameters
    ----------
    weights : pandas.Series
        The factor's weight of every metal (percent of species), indexed by metal.
    signatures : dict of str to list of str
        Source type mapped to its marker metals.
    metal : str
        The metal whose origin is in question (left out).
    min_similarity : float, default 0.7
        Cosine similarity needed.
    min_share : float, default 50
        Percent of at least one other marker the factor must carry.

    Returns
    -------
    (str or None, float)
        The source type (None: none qualifies) and the factor's largest weight among the other metals.
    """
    w = weights.drop(labels=[metal], errors="ignore").astype(float).clip(lower=0)
    top = float(w.max()) if len(w) else 0.0
    sig = {k: [x for x in v if x != metal and x in w.index] for k, v in signatures.items()}
    sig = {k: v for k, v in sig.items() if v}
    if not sig or not len(w):
        return None, top
    sim = signature_similarity(pd.DataFrame([w.to_numpy()], index=["f"], columns=w.index), sig).loc["f"]
    for k in sim.sort_values(ascending=False).index:
        if not np.isfinite(sim[k]) or sim[k] < min_similarity:
            break
        if (w[sig[k]] >= min_share).any():
            return k, top
    return None, top


# ------------------------------------------------------------------------------------- PMF figures
@_printed
def plot_pmf_profiles(profiles: pd.DataFrame, *, title: str = "", unit: str = "mg/kg"):
    """Profile bars (log scale, concentration) with bootstrap 5-95 % ranges, and percent of species.

    ``profiles`` is the tidy table of :func:`hmlib.pmf.profile_table` for one medium.

    Parameters
    ----------
    profiles : pandas.DataFrame
        Tidy profile table of one medium.
    title : str, default ''
        Figure title.
    unit : str, default 'mg/kg'
        Concentration unit (axis label).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    factors = list(dict.fromkeys(profiles["factor"]))
    metals = list(dict.fromkeys(profiles["species"]))
    fig, axes = plt.subplots(len(factors), 1, figsize=(6.6, 1.45 * len(factors) + 0.6), sharex=True, squeeze=False)
    x = np.arange(len(metals))
    twins = []
    for ax, f in zip(axes[:, 0], factors):
        d = profiles[profiles["factor"] == f].set_index("species").reindex(metals)
        conc = d["concentration"].clip(lower=1e-6)
        ax.bar(x, conc, color="C0", alpha=0.75, label=f"concentration ({unit})")
        if d["ci_low"].notna().any():
            lo = (conc - d["ci_low"].clip(lower=1e-6)).clip(lower=0)
            hi = (d["ci_high"].clip(lower=1e-6) - conc).clip(lower=0)
            ax.errorbar(x, conc, yerr=[lo, hi], fmt="none", ecolor="k", elinewidth=0.9, capsize=2,
                        label="bootstrap 5-95 %")
        ax.set_yscale("log")
        ax.set_ylabel(f"{f}\n({unit})", fontsize=8)
        ax2 = ax.twinx()
        twins.append(ax2)
        ax2.plot(x, d["percent_of_species"], "D", color="C3", ms=4, label="% of species")
        ax2.set_ylim(0, 105)
        ax2.set_ylabel("% of species", fontsize=7, color="C3")
    axes[-1, 0].set_xticks(x, metals)
    h1, l1 = axes[0, 0].get_legend_handles_labels()
    h2, l2 = twins[0].get_legend_handles_labels()
    fig.legend(h1 + h2, l1 + l2, loc="upper center", ncol=3, fontsize=7, bbox_to_anchor=(0.5, 1.0))
    if title:
        fig.suptitle(title, y=1.04, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


@_printed
def plot_q_scan(scan: pd.DataFrame, *, chosen: int | None = None, title: str = ""):
    """Q/Q(expected) against the factor count and, when the scan has ``dq_units``, the drop in Q(robust)
    per added factor in units of the values it adds (the factor-count criterion of :mod:`hmlib.pmf`).

    Parameters
    ----------
    scan : pandas.DataFrame
        Factor-count scan table (n_factors, Q ratios, optionally dq_units).
    chosen : int or None, optional
        Chosen factor count to highlight.
    title : str, default ''
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    two = "dq_units" in scan.columns
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(6.6 if two else 4.6, 3.0), squeeze=False)
    ax = axes[0, 0]
    ax.plot(scan["n_factors"], scan["q_true_over_expected"], "o-", label="Q(true) / Q(expected)")
    ax.plot(scan["n_factors"], scan["q_robust_over_expected"], "s--", label="Q(robust) / Q(expected)")
    ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
    ax.set_ylabel("Q / Q(expected)")
    if two:
        bx = axes[0, 1]
        bx.bar(scan["n_factors"], scan["dq_units"].fillna(0.0), color="0.6")
        bx.axhline(1.0, color="0.4", lw=0.8, ls=":", label="expected for a noise factor")
        bx.set_ylabel("drop in Q(robust) / (s (n + m))")
        bx.set_yscale("symlog", linthresh=1.0)
        top = float(np.nanmax(np.r_[scan["dq_units"].to_numpy(float), 1.0]))
        bx.set_ylim(0, top * 3 if top > 1 else 2.0)   # headroom above the bars for the legend (symlog axis)
        bx.legend(fontsize=7, loc="upper right")
    for a in axes[0]:
        if chosen is not None:
            a.axvline(chosen, color="C3", lw=1, alpha=0.6, label=f"chosen: {chosen}")
        a.set_xlabel("number of factors")
        a.set_xticks(scan["n_factors"])
    ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def correlation_display(r_log: pd.DataFrame, p_log: pd.DataFrame, r_sp: pd.DataFrame, p_sp: pd.DataFrame) -> pd.DataFrame:
    """Reader's correlation matrix: Pearson r of log values below the diagonal, Spearman rho above, with
    significance marks (:func:`significance_mark`).

    Parameters
    ----------
    r_log : pandas.DataFrame
        Pearson r matrix of log values.
    p_log : pandas.DataFrame
        p-values of ``r_log``.
    r_sp : pandas.DataFrame
        Spearman rho matrix.
    p_sp : pandas.DataFrame
        p-values of ``r_sp``.

    Returns
    -------
    pandas.DataFrame
        Column metal then one string column per metal (formatted coefficient and mark).
    """
    metals = list(r_log.index)
    disp = pd.DataFrame("", index=metals, columns=metals)
    for i, a in enumerate(metals):
        for j, b in enumerate(metals):
            if i > j:
                disp.at[a, b] = f"{r_log.at[a, b]:.2f}{significance_mark(p_log.at[a, b])}"
            elif i < j:
                disp.at[a, b] = f"{r_sp.at[a, b]:.2f}{significance_mark(p_sp.at[a, b])}"
            else:
                disp.at[a, b] = "1"
    return disp.rename_axis("metal").reset_index()


def pmf_results_text(medium: str, r, result, *, bootstrap_runs: int) -> str:
    """Results paragraph of the PMF of one medium: the factor count and why, both Q values, bootstrap
    mapping, DISP and BS-DISP swaps and intervals, fit per species.

    ``r`` is a :class:`hmlib.stages.sources.PMFMedium`, ``result`` the stage result.

    Parameters
    ----------
    medium : str
        Medium name.
    r : hmlib.stages.sources.PMFMedium
        PMF outputs of the medium.
    result : object
        Stage result.
    bootstrap_runs : int
        Number of bootstrap runs (for the text).

    Returns
    -------
    str
        The paragraph (Markdown).
    """
    res = r.fit
    cats = r.categories
    weak = [c for c in cats.index if cats[c] == "weak"]
    bad = [c for c in cats.index if cats[c] == "bad"]
    dg = result.diagnostics[result.diagnostics["medium"] == medium]
    txt = (f"**PMF, {medium}.** {r.why[0].upper() + r.why[1:]}. For the {r.chosen}-factor solution Q(true) = "
           f"{res.q_true:.0f} and Q(robust) = {res.q_robust:.0f} against Q(expected) = {res.q_expected:.0f} "
           f"(Q(robust)/Q(expected) = {res.q_robust / res.q_expected:.2f}); {res.settings.get('n_downweighted', 0)} "
           "values had scaled residuals beyond 4 and were down-weighted. Species: "
           f"{len(cats) - len(weak) - len(bad)} strong" + (f", weak: {', '.join(weak)}" if weak else "")
           + (f", bad (excluded): {', '.join(bad)}" if bad else "") + ". Bootstrap: "
           + ", ".join(f"{f.factor} mapped in {100 * f.mapping_share:.0f} %" for f in r.boot.mapping.itertuples())
           + f" of {bootstrap_runs} runs.")
    if r.disp is not None:
        sw = r.disp["swaps"]
        iv = r.disp["intervals"]
        iv4 = iv[iv["dQmax"] == 4]
        rel = ((iv4["conc_max"] - iv4["conc_min"]) / iv4["concentration"].where(iv4["concentration"] > 0)).median()
        txt += (" DISP (rest of the solution refitted): "
                + ", ".join(f"dQmax {int(d)}: {int(g['n_swaps'].sum())} swaps" for d, g in sw.groupby("dQmax"))
                + f"; the median dQmax-4 interval spans {100 * rel:.0f} % of the base value.")
    if r.bs_disp is not None:
        bsw = r.bs_disp["swaps"]
        runs = r.bs_disp["runs"]
        txt += (f" BS-DISP over {int(runs['mapped'].sum())} mapped of {len(runs)} bootstrap runs: "
                + ", ".join(f"dQmax {d:g}: {int(g['n_swaps'].sum())} swaps" for d, g in bsw.groupby("dQmax")) + ".")
    txt += (f" Observed vs predicted r2 ranged {dg['r2'].min():.2f}-{dg['r2'].max():.2f}; scaled residuals of "
            f"{int((~dg['residuals_normal'].fillna(True).astype(bool)).sum())} of {len(dg.dropna(subset=['r2']))} "
            "species departed from normality (Lilliefors p < 0.05).")
    return txt


def plot_contribution_maps(contrib: pd.DataFrame, sites: pd.DataFrame, *, title: str = "", coord_unit: str = "",
                           names: dict[str, str] | None = None, crs: str | None = None):
    """One map panel per factor: samples at (x, y) coloured by the factor's share (%).

    Panels are laid out for the region's shape and carry a scale bar, a north arrow and the
    coordinate note (:func:`hmlib.plots.map_axes`, :func:`hmlib.plots.decorate_map`).

    Parameters
    ----------
    contrib : pandas.DataFrame
        Contribution table with sample_id, factor, share (fraction 0-1).
    sites : pandas.DataFrame
        Sample coordinates with sample_id, x, y.
    title : str, default ''
        Figure title.
    coord_unit : str, default ''
        Coordinate unit (scale bar).
    names : dict, optional
        factor -> suggested source, added to the panel titles.
    crs : str, optional
        Coordinate reference system (None or "local": a local grid).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """

    from .plots import decorate_map, map_axes, print_style

    names = names or {}
    factors = list(dict.fromkeys(contrib["factor"]))
    with print_style():
        fig, axes = map_axes(len(factors), x=sites["x"], y=sites["y"], max_height_in=4.0)
        sc = None
        vmax = float(min(100.0, 10 * np.ceil(10 * np.nanmax(contrib["share"].to_numpy(float)))))  # fit the data
        for k, (ax, f) in enumerate(zip(axes, factors)):
            d = contrib[contrib["factor"] == f].merge(sites[["sample_id", "x", "y"]], on="sample_id")
            # smaller markers for dense surveys, so that neighbouring samples do not hide each other
            sc = ax.scatter(d["x"], d["y"], c=100 * d["share"], cmap="viridis", vmin=0, vmax=vmax,
                            s=9 if len(d) <= 2000 else max(1.0, 9 * np.sqrt(2000 / len(d))), linewidths=0)
            ax.set_title(f"{f} ({names[f]})" if names.get(f) else str(f), loc="left")
            decorate_map(ax, crs=crs, coordinate_unit=coord_unit or "m", note=(k == 0))
        if sc is not None:
            fig.colorbar(sc, ax=axes, shrink=0.8, label="factor share (%)")
        if title:
            fig.suptitle(title)
    return fig


@_printed
def plot_isotopes(samples: pd.DataFrame, endmembers: pd.DataFrame, *, ratio_columns: dict[str, str], title: str = ""):
    """206Pb/207Pb vs 208Pb/206Pb of the samples with end-member means +- 2 sd.

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table with medium and the ratio columns.
    endmembers : pandas.DataFrame
        Long end-member table (source, ratio, mean, sd).
    ratio_columns : dict of str to str
        Ratio name mapped to its column in ``samples``; the first two are plotted (x, y).
    title : str, default ''
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    (rx, cx), (ry, cy) = list(ratio_columns.items())[:2]
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    for k, (med, d) in enumerate(samples.groupby("medium", sort=False)):
        ax.scatter(d[cx], d[cy], s=9, alpha=0.6, color=f"C{k}", label=f"{med} samples")
    for j, (src, e) in enumerate(endmembers.groupby("source", sort=False)):
        e = e.set_index("ratio")
        if rx in e.index and ry in e.index:
            ax.errorbar(e.at[rx, "mean"], e.at[ry, "mean"], xerr=2 * e.at[rx, "sd"], yerr=2 * e.at[ry, "sd"],
                        fmt="s", color="k", mfc=f"C{j + 3}", ms=7, capsize=3)
            ax.annotate(src, (e.at[rx, "mean"], e.at[ry, "mean"]), textcoords="offset points", xytext=(6, 6),
                        fontsize=8)
    ax.set_xlabel(rx)
    ax.set_ylabel(ry)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------- report text
def methods_text(options, *, media: list[str], seed: int, esat_version: str,
                 mdl_notes: dict[str, str], subsample: dict[str, tuple[int, int]] | None = None) -> str:
    """Methods paragraph of the stage (pandoc markdown with citations).

    Parameters
    ----------
    options : the stage's options (:class:`hmlib.stages.sources.Options`).
    media, seed, esat_version : what was analysed and with which seed and esat version.
    mdl_notes : medium -> how the detection limits were obtained.
    subsample : medium -> (samples PMF was fitted on, all samples), for media fitted on a subsample.

    Returns
    -------
    str
    """
    o = options
    lo, hi = o.pmf_factor_range
    mdl_txt = "; ".join(f"{m}: {t}" for m, t in mdl_notes.items()) if mdl_notes else ""
    unc = ("Uncertainties were read from the uncertainty file given for the region" if o.uncertainty_file else
           "Uncertainties follow the EPA PMF 5.0 equations [@norris2014pmf]: "
           "$u_{ij} = \\tfrac{5}{6}\\mathrm{MDL}_j$ for $x_{ij} \\le \\mathrm{MDL}_j$ and "
           "$u_{ij} = \\sqrt{(\\mathrm{EF}_j x_{ij})^2 + (0.5\\,\\mathrm{MDL}_j)^2}$ above, with error fraction "
           f"EF = {o.error_fraction if not isinstance(o.error_fraction, dict) else 'given per metal'}"
           + (f"; detection limits: {mdl_txt}" if mdl_txt else ""))
    parts = [
        "**PCA.** Concentrations were "
        + ("log10-transformed " if o.pca_transform == "log" else "clr-transformed [@aitchison1982] ")
        + "and standardized; sampling adequacy was checked with the Kaiser-Meyer-Olkin measure [@kaiser1974kmo] "
        "and Bartlett's sphericity test [@bartlett1950] (computed on the log data). Components were "
        + ("retained by the Kaiser criterion (eigenvalue > 1) [@kaiser1960]" if o.pca_components is None
           else f"fixed at {o.pca_components}")
        + " and rotated by varimax with Kaiser normalization [@kaiser1958varimax]; loadings are "
        "$L = V\\Lambda^{1/2}$ of the correlation matrix.",
    ]
    if o.pmf:
        parts.append(
            f"**PMF.** Positive matrix factorization [@paatero1994pmf] minimises "
            "$Q = \\sum_{i,j} \\big((x_{ij} - \\sum_k g_{ik} f_{kj})/u_{ij}\\big)^2$ with $g, f \\ge 0$; it was "
            f"solved with EPA's ESAT (version {esat_version}, least-squares NMF) [@esat2025]. Each medium was "
            f"modelled separately ({', '.join(media)}). " + unc + ". Species were classed by signal-to-noise "
            "ratio [@norris2014pmf] as strong (S/N ≥ 1), weak (0.5 ≤ S/N < 1, uncertainty tripled) or bad "
            f"(S/N < 0.5, excluded). Factor counts {lo} to {hi} were fitted from {o.pmf_starts} random "
            "starts each, keeping the start of lowest Q and finishing it by exact weighted coordinate descent "
            "[@cichocki2009hals] (ESAT stops when Q changes little, short of the minimum)"
            + (". The fit is robust as in EPA PMF 5.0: values with scaled residual $|r_{ij}| > 4$ get the "
               "uncertainty $u_{ij}\\sqrt{|r_{ij}|/4}$ and the model is refitted until the down-weighted set no "
               "longer changes (ESAT itself minimises the non-robust Q, so this reweighting is done around it); "
               "both $Q_\\mathrm{true} = \\sum r_{ij}^2$ and $Q_\\mathrm{robust}$ (terms $4|r_{ij}|$ beyond 4) are "
               "reported" if o.pmf_robust else "") + ". "
            + (f"The factor count was fixed at {o.pmf_factors}. " if o.pmf_factors else
               "The factor count was chosen by several criteria of the EPA guide [@norris2014pmf]: a factor is kept "
               "when adding it lowers $Q_\\mathrm{robust}$ by at least "
               f"{o.pmf_dq_units_min:g} times $s(n+m)$, the drop expected from a factor that only fits noise "
               "($n + m$ values added, $s = Q_\\mathrm{robust}/Q_\\mathrm{exp}$ of the largest model, which makes "
               "the rule independent of a misstated uncertainty scale, unlike a fixed $Q/Q_\\mathrm{exp}$ target); "
               + ("the count must also be stable, every factor mapped in at least 80 % of "
                  f"{o.pmf_stability_bootstrap} bootstrap runs and no DISP swap at dQmax = 4, else the next "
                  "smaller stable count is taken; " if o.pmf_stability else "")
               + "$Q/Q_\\mathrm{exp}$ with $Q_\\mathrm{exp} = n\\,m_\\mathrm{strong} - p(n+m)$ and the share of "
               "scaled residuals beyond 3 are reported per count. ")
            + f"Contributions are scaled to a mean of 1 so profiles are in concentration units. Uncertainty: "
            f"{o.pmf_bootstrap} bootstrap runs [@paatero2014error] resampling "
            + ("single samples" if o.pmf_bootstrap_block is None else f"blocks of {o.pmf_bootstrap_block} samples")
            + ", each fitted from a random start and finished as the base run is, so that the intervals cover the "
            "equally good solutions the base run is one of (EPA PMF 5.0 starts them from the base profiles, with "
            "which they settled at a different split of the metals than the base run at the same Q); a "
            "bootstrap factor maps to the base factor whose contributions correlate best with it if "
            f"$r \\ge {o.pmf_bootstrap_threshold:g}$, and profile intervals are the 5th-95th percentiles over mapped runs"
            + ("; displacement (DISP) [@paatero2014error] holds each profile value at displaced levels while the "
               "rest of the solution is refitted (the displaced factor keeping contributions of mean 1), and reports "
               "the range over which Q rises by at most dQmax = 4, 8, 16 and 32, with a factor swap counted when a "
               "refitted profile then matches another factor better (ESAT's own DISP holds everything else fixed, "
               "which cannot show rotational ambiguity, so the refits are done here by weighted coordinate descent "
               "[@cichocki2009hals])"
               if o.pmf_disp else "")
            + (f"; BS-DISP applies the same displacement to {o.pmf_bs_disp} bootstrap solutions at dQmax = 0.5, 1, "
               "2 and 4" if o.pmf_bs_disp else "")
            + ". Fit: $r^2$ of observed on predicted concentrations per species and the Lilliefors test "
            "[@lilliefors1967] of scaled residuals $(x - \\hat x)/u$ for normality."
        + (" " + subsample_text(subsample, details=True, name_media=len(media) > 1) if subsample else "")
        )
    parts.append(
        "**Factor interpretation.** Each factor's weights (PMF: percent of species; PCA: squared positive "
        "rotated loadings) are compared with the marker-metal signatures given for the region by cosine similarity "
        "with the markers' indicator vector; a factor is named only when the similarity reaches "
        f"{o.signature_min_similarity:g}, and the similarity and largest weights are always shown."
        + ("" if o.signatures else " No signatures were configured for this region, so factors are not named.")
    )
    if o.isotope_ratios:
        parts.append(
            "**Pb isotopes.** Two-end-member mixing gives the share of end-member A from each ratio, "
            "$f_A = (R - R_B)/(R_A - R_B)$ [@faure2005isotopes]. The Bayesian mixing model "
            "[@parnell2010siar; @moore2008mixsir] uses all ratios and end-members: "
            "$R_t \\sim N(\\sum_k f_k\\mu_{kt}, \\sum_k f_k^2\\sigma_{kt}^2 + \\sigma_t^2)$, "
            f"$f \\sim \\mathrm{{Dirichlet}}(1,\\dots,1)$, $\\sigma_t = {o.isotope_residual_sd:g}$; it was sampled by "
            f"random-walk Metropolis [@metropolis1953] on additive log-ratio coordinates ({o.isotope_steps} "
            "steps, 4 chains per sample, first quarter discarded). Posterior means and equal-tailed 95 % intervals are reported, with the "
            "rank-normalised split R-hat and the bulk effective sample size of every share [@vehtari2021rhat]; "
            "R-hat above 1.01 is flagged."
        )
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------ attribution (report)
def species_share_intervals(boot_profiles: pd.DataFrame, *, n_factors: int, lower: float = 5.0,
                            upper: float = 95.0) -> pd.DataFrame:
    """Bootstrap percentile interval of each factor's percent of species.

    In every bootstrap run in which all ``n_factors`` base factors were mapped, the percent of
    species is recomputed from that run's profiles,

    .. math:: \\%_{kj}^{(b)} = 100\\, f^{(b)}_{kj} / \\sum_{k'} f^{(b)}_{k'j},

    and its percentiles over those runs are returned (EPA PMF 5.0 reports 5th-95th percentiles of
    the bootstrap profiles; Paatero et al. 2014, doi:10.5194/amt-7-781-2014).

    Parameters
    ----------
    boot_profiles : pandas.DataFrame
        :attr:`hmlib.pmf.BootstrapResult.profiles` (run, factor, species, concentration).
    n_factors : int
        Factors of the base run.
    lower, upper : float
        Percentiles (0-100).

    Returns
    -------
    pandas.DataFrame
        factor, species, pct_low, pct_high, n_runs (runs used).
    """
    cols = ["factor", "species", "pct_low", "pct_high", "n_runs"]
    if boot_profiles is None or boot_profiles.empty:
        return pd.DataFrame(columns=cols)
    full = boot_profiles.groupby("run")["factor"].nunique()
    runs = full.index[full == n_factors]
    d = boot_profiles[boot_profiles["run"].isin(runs)].copy()
    if d.empty:
        return pd.DataFrame(columns=cols)
    tot = d.groupby(["run", "species"])["concentration"].transform("sum")
    d["pct"] = np.where(tot > 0, 100 * d["concentration"] / tot.where(tot > 0, 1.0), np.nan)
    g = d.groupby(["factor", "species"], sort=False)["pct"]
    return pd.DataFrame({"pct_low": g.quantile(lower / 100), "pct_high": g.quantile(upper / 100),
                         "n_runs": g.count()}).reset_index()[cols]


def sample_species_shares(contributions: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    """Share of each factor in each sample's modelled concentration of each species.

    .. math:: s_{ikj} = g_{ik} f_{kj} / \\sum_{k'} g_{ik'} f_{k'j}

    Parameters
    ----------
    contributions : pandas.DataFrame
        Samples x factors (:attr:`hmlib.pmf.PMFResult.contributions`).
    profiles : pandas.DataFrame
        Factors x species (:attr:`hmlib.pmf.PMFResult.profiles`).

    Returns
    -------
    pandas.DataFrame
        sample_id, factor, species, share (0-1).
    """
    G = contributions.to_numpy(float)
    F = profiles.loc[contributions.columns].to_numpy(float)
    parts = G[:, :, None] * F[None, :, :]
    tot = parts.sum(axis=1, keepdims=True)
    share = np.where(tot > 0, parts / np.where(tot > 0, tot, 1.0), np.nan)
    n, p, m = share.shape
    return pd.DataFrame({"sample_id": np.repeat(contributions.index.astype(str).to_numpy(), p * m),
                         "factor": np.tile(np.repeat(contributions.columns.to_numpy(), m), n),
                         "species": np.tile(profiles.columns.to_numpy(), n * p),
                         "share": share.reshape(-1)})


def attribution_table(profiles: pd.DataFrame, intervals: pd.DataFrame, sample_shares: pd.DataFrame, *,
                      names: dict[str, str] | None = None, above: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Which factor carries each metal: percent of species with its bootstrap interval, and, for the
    samples above a guideline value, the factor's median share of their modelled concentration.

    Parameters
    ----------
    profiles : pandas.DataFrame
        :func:`hmlib.pmf.profile_table` of one medium (factor, species or metal, percent_of_species).
    intervals : pandas.DataFrame
        :func:`species_share_intervals`.
    sample_shares : pandas.DataFrame
        :func:`sample_species_shares`.
    names : dict, optional
        factor -> suggested source (empty string or missing: unnamed).
    above : dict, optional
        metal -> ids of the samples above the guideline value.

    Returns
    -------
    pandas.DataFrame
        metal, factor, source, percent, pct_low, pct_high, n_above, median_share_above (percent; NaN
        without samples above).
    """
    names, above = names or {}, above or {}
    prof = profiles.rename(columns={"species": "metal"})
    iv = intervals.rename(columns={"species": "metal"})
    t = prof[["factor", "metal", "percent_of_species"]].merge(iv[["factor", "metal", "pct_low", "pct_high"]],
                                                               on=["factor", "metal"], how="left")
    ss = sample_shares.rename(columns={"species": "metal"})
    rows = []
    groups = dict(tuple(ss.groupby(["metal", "factor"], sort=False)))  # one pass over the samples, not one per row
    for r in t.itertuples(index=False):
        ids = [str(i) for i in above.get(r.metal, [])]
        g = groups.get((r.metal, r.factor))
        s = g["share"][g["sample_id"].isin(ids)] if g is not None else pd.Series([], dtype=float)
        rows.append({"metal": r.metal, "factor": r.factor, "source": names.get(r.factor) or "",
                     "percent": float(r.percent_of_species), "pct_low": r.pct_low, "pct_high": r.pct_high,
                     "n_above": len(ids), "median_share_above": 100 * float(s.median()) if len(s) else np.nan})
    return pd.DataFrame(rows, columns=["metal", "factor", "source", "percent", "pct_low", "pct_high", "n_above",
                                       "median_share_above"])


def _factor_label(factor: str, source: str) -> str:
    return f"{factor} ({source})" if source else str(factor)


def attribution_display(table: pd.DataFrame, *, guideline_label: str | None = None,
                        labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Reader's version of :func:`attribution_table`: one row per metal, one column per factor
    ("62 % (48-75)"), and the samples above the guideline value with the share of the factor that
    carries most of their concentration.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`attribution_table` of one medium.
    guideline_label : str, optional
        Name of the guideline value (column header); None: no guideline columns.
    labels : dict, optional
        factor -> words shown after the factor (e.g. its leading metals) instead of its suggested source:
        a source label based on marker metals would name, in the row of a marker metal, the very origin
        that row is meant to show.

    Returns
    -------
    pandas.DataFrame
        Metal, one column per factor, and optionally the guideline columns.
    """
    if labels is not None:
        table = table.assign(source=table["factor"].map(lambda f: labels.get(f, "")))
    out = []
    for metal, d in table.groupby("metal", sort=False):
        row = {"Metal": metal}
        for r in d.itertuples(index=False):
            iv = (f" ({r.pct_low:.0f}-{r.pct_high:.0f})" if np.isfinite(r.pct_low) and np.isfinite(r.pct_high)
                  else "")
            row[_factor_label(r.factor, r.source) + ", %"] = f"{r.percent:.0f}{iv}"
        if guideline_label is not None:
            n = int(d["n_above"].iloc[0])
            row[f"Samples above the {guideline_label}"] = str(n)
            if n and d["median_share_above"].notna().any():
                top = d.sort_values("median_share_above").iloc[-1]
                row["Their main factor (median share)"] = (f"{_factor_label(top.factor, top.source)} "
                                                           f"({top.median_share_above:.0f} %)")
            else:
                row["Their main factor (median share)"] = "–"
        out.append(row)
    return pd.DataFrame(out)


def log_correlation(x, y) -> dict:
    """Pearson r of log10 values with its 95 % confidence interval (Fisher z, via scipy).

    Parameters
    ----------
    x, y : array-like
        Positive concentrations (pairs with a non-positive or missing value are dropped).

    Returns
    -------
    dict
        r, low, high, p, n.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 4:
        return {"r": np.nan, "low": np.nan, "high": np.nan, "p": np.nan, "n": int(ok.sum())}
    res = stats.pearsonr(np.log10(x[ok]), np.log10(y[ok]))
    ci = res.confidence_interval(0.95)
    return {"r": float(res.statistic), "low": float(ci.low), "high": float(ci.high), "p": float(res.pvalue),
            "n": int(ok.sum())}


def covariate_association(contributions: pd.DataFrame, covariates: pd.DataFrame) -> pd.DataFrame:
    """How much each factor's contributions differ between the classes of each categorical covariate.

    Kruskal-Wallis H test (:func:`scipy.stats.kruskal`) with the rank effect size
    :math:`\\varepsilon^2 = (H - k + 1)/(n - k)` (Tomczak and Tomczak 2014, Trends Sport Sci. 21, 19-25),
    for ``k`` classes and ``n`` samples; e.g. a factor that follows the parent rock differs between rock types.

    Parameters
    ----------
    contributions : pandas.DataFrame
        Samples x factors (index sample_id as str).
    covariates : pandas.DataFrame
        Samples (index sample_id as str) x categorical covariates.

    Returns
    -------
    pandas.DataFrame
        factor, covariate, h, p, epsilon2, n, n_classes, highest_class (class with the largest median among
        the classes of at least 10 samples).
    """
    rows = []
    ids = [i for i in contributions.index if i in covariates.index]
    for cov in covariates.columns:
        c = covariates.loc[ids, cov]
        ok = c.notna()
        classes = [k for k, n in c[ok].value_counts().items() if n >= 3]
        if len(classes) < 2:
            continue
        for f in contributions.columns:
            g = contributions.loc[ids, f][ok]
            groups = [g[c[ok] == k].to_numpy(float) for k in classes]
            h, pv = stats.kruskal(*groups)
            n = sum(len(x) for x in groups)
            k = len(groups)
            med = {kk: float(np.median(x)) for kk, x in zip(classes, groups) if len(x) >= 10} or \
                {kk: float(np.median(x)) for kk, x in zip(classes, groups)}
            rows.append({"factor": f, "covariate": cov, "h": float(h), "p": float(pv),
                         "epsilon2": float(max((h - k + 1) / (n - k), 0.0)), "n": n, "n_classes": k,
                         "highest_class": max(med, key=med.get)})
    return pd.DataFrame(rows, columns=["factor", "covariate", "h", "p", "epsilon2", "n", "n_classes",
                                       "highest_class"])


_NATURAL_WORDS = ("geogen", "natural", "lithogen", "parent", "crust", "rock")


def _is_natural(source: str) -> bool:
    return any(w in str(source).lower() for w in _NATURAL_WORDS)


def attribution_text(table: pd.DataFrame, *, medium: str, signatures: dict[str, list[str]],
                     pca_loadings: pd.DataFrame | None, pca_names: dict[str, str] | None,
                     concentration: pd.DataFrame, association: pd.DataFrame | None, stable: bool,
                     stability_note: str, guideline_label: str | None, refs: dict[str, str],
                     published: str | None = None, max_metals: int = 2,
                     labels: dict[str, str] | None = None) -> tuple[str, list[dict]]:
    """Where the metals above the guideline value come from, and how strongly the methods support it.

    For the metals with the most samples above the guideline value (at most ``max_metals``; all
    metals are considered when no guideline applies, the one with the largest share on a named
    factor first): the PMF factor carrying most of the metal, with its bootstrap interval and its
    median share in the samples above the guideline; the PCA component the metal loads on and the
    metals loading with it; its strongest log correlation; how the factor's contributions differ
    between covariate classes; and a verdict that says whether PCA and PMF agree on a natural
    origin, stated only as strongly as the stability of the PMF solution allows.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`attribution_table` of one medium.
    medium : str
        Medium.
    signatures : dict
        Source type -> marker metals (the region's options).
    pca_loadings : pandas.DataFrame or None
        Rotated loadings of the medium (metals x components).
    pca_names : dict or None
        Component -> suggested source (unnamed: empty or "unassigned").
    concentration : pandas.DataFrame
        Samples x metals of the medium (for the log correlations).
    association : pandas.DataFrame or None
        :func:`covariate_association` of the PMF factors.
    stable : bool
        Every factor mapped in at least 80 % of the bootstrap runs and no DISP swap at dQmax = 4.
    stability_note : str
        The bootstrap and DISP numbers, as words.
    guideline_label : str or None
        Name of the guideline value (None: no guideline applies).
    refs : dict
        Cross-references: ``table`` (attribution table), ``pca`` (loadings), ``maps`` (factor maps).
    published : str, optional
        What earlier work on the region concluded about its sources (markdown with a citation).
    max_metals : int, default 2
        Metals discussed.
    labels : dict, optional
        Factor -> the name the tables and figures give it ("Pb–Cu" for "F2 (Pb–Cu)"); the prose then
        calls the factor by the same name. Without it a factor is named after the metal discussed and
        the factor's next-largest metal.

    Returns
    -------
    (str, list of dict)
        The paragraphs (markdown) and the proposed findings (text, importance, refs).
    """
    pca_names = {k: v for k, v in (pca_names or {}).items() if v and v != "unassigned"}
    first = table.groupby("metal", sort=False)["n_above"].first()
    if guideline_label and (first > 0).any():
        metals = list(first[first > 0].sort_values(ascending=False).index[:max_metals])
    else:
        return "", []
    paras, findings = [], []
    published_used = False
    tref = f"@{refs['table']}" if refs.get("table") else ""
    pref = f" (@{refs['pca']})" if refs.get("pca") else ""
    n_samples = len(concentration)
    for k_metal, metal in enumerate(metals):
        d = table[table["metal"] == metal]
        top = d.sort_values("percent").iloc[-1]
        n_above = int(d["n_above"].iloc[0])
        # the factor's resemblance to a source type judged without the metal in question, so that a metal
        # listed as a marker cannot make its own factor look like that source (a circular label)
        w_all = table[table["factor"] == top.factor].set_index("metal")["percent"]
        w = w_all.drop(labels=[metal], errors="ignore")
        lead = list(w.sort_values(ascending=False).index[:2])
        label = (labels[top.factor] if labels and labels.get(top.factor) else "–".join([metal] + lead[:1])) + " factor"
        src_wo, other_max = signature_apart_from(w_all, signatures, metal)
        own = other_max < 50  # the factor carries less than half of every other metal: the metal's own factor
        top = top.copy()
        top["source"] = src_wo or ""
        if src_wo:
            fname = f"{top.factor}, the {label}, which apart from {metal} resembles the {src_wo} signature"
        elif own:
            fname = f"{top.factor}, a factor largely of its own"
        elif not signatures:
            fname = f"{top.factor}, the {label}"
        else:
            fname = f"{top.factor}, the {label}, which apart from {metal} matches no source signature"
        # the base value and the interval are the same quantity (percent of species, contributions of mean 1);
        # a base run outside its own bootstrap range means the refits settle on another split between the
        # factors, so the split is stated as undetermined rather than with an interval that excludes it
        has_iv = bool(np.isfinite(top.pct_low) and np.isfinite(top.pct_high))
        gap = (max(round(top.pct_low) - round(top.percent), round(top.percent) - round(top.pct_high), 0)
               if has_iv else 0)
        # a base value a few points outside the refits' range is stated with the range and the gap; only a
        # clear gap makes the split undetermined
        near = 0 < gap <= 3
        outside = has_iv and gap > 3
        iv_body = (f"{top.pct_low:.0f} to {top.pct_high:.0f} %"
                   + (f"; the base run lies {gap} point{'s' if gap > 1 else ''} "
                      f"{'above' if top.percent > top.pct_high else 'below'} it" if near else ""))
        iv = f" (bootstrap 5th-95th percentile {iv_body})" if has_iv and not outside else ""
        split = (f" The bootstrap refits of the same model, however, give {top.factor} only {top.pct_low:.0f} to "
                 f"{top.pct_high:.0f} % of the {metal} (5th-95th percentile), outside the base run's value: how the "
                 f"{metal} divides between the factors is not well determined by these data."
                 if outside and top.percent > top.pct_high else
                 f" The bootstrap refits of the same model give {top.factor} {top.pct_low:.0f} to {top.pct_high:.0f} % "
                 f"of the {metal} (5th-95th percentile), more than the base run." if outside else "")
        s = (f"**Where the metals above the {guideline_label} come from.** {n_above} of the {n_samples} {medium} "
             f"samples exceed the {guideline_label} for {metal}. PMF"
             + ("'s base run" if outside else "") + f" attributes {top.percent:.0f} % of the modelled "
             f"{metal}{iv} to {fname}")
        if np.isfinite(top.median_share_above):
            s += f", and a median {top.median_share_above:.0f} % in the samples above the {guideline_label}"
        s += (f" ({tref})." if tref else ".") + split
        if has_iv and not outside and top.pct_high - top.pct_low >= 30:
            s += (f" The interval is wide: on resampled data other divisions of the {metal} between the factors fit "
                  "almost as well, so the share is known only to within that range.")
        if own and not src_wo:
            s += (f" {top.factor} carries at most {other_max:.0f} % of any other metal, so it separates part of the "
                  f"{metal}'s variation from the other metals without pointing to a source.")
        # PCA
        pca_src = None
        if pca_loadings is not None and metal in pca_loadings.index:
            comp = pca_loadings.loc[metal].abs().idxmax()
            with_ = [m for m in pca_loadings.index if m != metal and pca_loadings.loc[m].abs().idxmax() == comp]
            pca_src = pca_names.get(comp)
            s += (f" In the PCA, {metal} loads {pca_loadings.at[metal, comp]:.2f} on {comp}"
                  + (f" together with {', '.join(with_)}" if with_ else "")
                  + (f", the component identified as {pca_src}" if pca_src else "") + f"{pref}.")
        # strongest log correlation: with a marker of the PCA component's source, else with any metal
        partners = [m for m in signatures.get(pca_src or "", []) if m in concentration.columns and m != metal]
        best = None
        for m in partners or list(concentration.columns):
            if m == metal:
                continue
            c = log_correlation(concentration[metal], concentration[m])
            if np.isfinite(c["r"]) and (best is None or c["r"] > best[1]["r"]):
                best = (m, c)
        if best:
            m, c = best
            s += (f" Its log concentrations track those of {m}" + (f", of the {pca_src} markers the closest,"
                                                                     if partners else " most closely,")
                  + f" with Pearson r = {c['r']:.2f} (95 % CI {c['low']:.2f} to {c['high']:.2f}).")
        # covariates
        if association is not None and len(association):
            a = association[association["factor"] == top.factor].sort_values("epsilon2", ascending=False)
            if len(a):
                bits = [f"{r.covariate} (ε² = {r.epsilon2:.2f}, p {'< 0.001' if r.p < 0.001 else f'= {r.p:.2g}'}; "
                        f"highest for {_class_name(r.highest_class)})" for r in a.itertuples()]
                s += (f" The contributions of {top.factor} differ between classes of " + " and of ".join(bits)
                      + (f" (@{refs['maps']})" if refs.get("maps") else "") + ".")
        # verdict
        pmf_nat = bool(top.source) and _is_natural(top.source) and top.percent >= 50
        pca_nat = bool(pca_src) and _is_natural(pca_src)
        if pmf_nat and pca_nat:
            verdict = (f"PCA and PMF agree: most of the {metal}, including most of the exceedances, is "
                       + ("likely" if stable else "possibly") + " natural, from the parent material.")
            imp, claim = (0.85 if stable else 0.65), "likely natural" if stable else "possibly natural"
        elif pca_nat and not pmf_nat:
            verdict = (f"The methods disagree. The co-variation (PCA, correlation) ties {metal} to the {pca_src} "
                       f"metals and so supports a natural origin, but PMF, which can separate sources whose "
                       f"contributions co-vary, does not assign most of the {metal} to the {pca_src} factor"
                       + f". A natural origin of the {metal} exceedances is therefore plausible but not established "
                       "by these data.")
            imp, claim = 0.8, "plausibly but not demonstrably natural"
        elif pmf_nat:
            verdict = (f"PMF assigns most of the {metal} to the {top.source} factor, which suggests a natural origin; "
                       "PCA does not separate it as clearly.")
            imp, claim = 0.7, "possibly natural"
        elif not signatures:
            verdict = (f"No marker-metal signatures were given for this region, so the factors carry no source label: "
                       f"the data show which metals share {metal}'s pattern, not whether it is natural.")
            imp, claim = 0.45, (f"of a common origin with {best[0]} that the data do not label" if best
                                else "of an origin the data do not label")
        else:
            verdict = (f"Neither method ties {metal} to a natural component: its exceedances are more likely from "
                       "inputs than from the parent material.")
            imp, claim = 0.75, "more likely from inputs than natural"
        if published and not published_used and (re.search(rf"\b{re.escape(metal)}\b", published)
                                                  or metal == metals[-1]):
            s += f" {published}"
            published_used = True
        s += " " + verdict + ("" if stable else
                              f" The PMF solution is not fully stable ({stability_note}), which weakens this reading.")
        if k_metal == 0:
            paras.append(s)
        else:  # the next metal in one contrasting sentence; its numbers are in the table
            paras.append(f"For {metal} ({n_above} {'sample' if n_above == 1 else 'samples'} above the {guideline_label}), PMF attributes "
                         f"{top.percent:.0f} % of it"
                         + (f" (bootstrap refits {top.pct_low:.0f} to {top.pct_high:.0f} %, outside the base run's value)"
                            if outside else f" (bootstrap {iv_body})"
                            if near else "") + f" to {fname}"
                         + (f", and in the PCA it loads on {comp} with {', '.join(with_)}" if pca_loadings is not None
                            and metal in pca_loadings.index and with_ else "")
                         + f"; {verdict[0].lower() + verdict[1:]}")
        # the finding states the attribution, not the exceedance count (the data-quality and spatial findings do)
        fdesc = (f"a factor that apart from {metal} resembles the {top.source} signature ({top.factor})"
                 if top.source and top.source != "unassigned" else
                 f"a factor largely of its own ({top.factor}, at most {other_max:.0f} % of any other metal)" if own
                 else f"the {label} ({top.factor})" if not signatures
                 else f"a factor that apart from {metal} matches no source signature ({top.factor})")
        ftxt = ((f"PMF attributes {top.percent:.0f} % of the {medium} {metal}{iv} to {fdesc}"
                 + (f", and a median {top.median_share_above:.0f} % in the samples above the {guideline_label}"
                    if np.isfinite(top.median_share_above) else "")) if not outside else
                (f"PMF's base run attributes {top.percent:.0f} % of the {medium} {metal} to {fdesc}, but its bootstrap "
                 f"refits give {top.pct_low:.0f} to {top.pct_high:.0f} % (5th-95th percentile), so how the {metal} "
                 "divides between the factors is not well determined"))
        ftxt += ((f"; in the PCA it loads with the {pca_src} metals" if pca_src and not pmf_nat else "")
                 + (f"{'; its' if not (pca_src and not pmf_nat) else ' and its'} log concentrations track {best[0]} "
                    f"(r = {best[1]['r']:.2f}, 95 % CI {best[1]['low']:.2f} to {best[1]['high']:.2f})" if best else "")
                 + f": the {metal} exceedances are {claim}.")
        if outside:
            imp = round(imp - 0.1, 2)
        findings.append({"text": ftxt, "importance": imp, "refs": [refs[k] for k in ("table",) if refs.get(k)],
                         "topic": ("source attribution", medium, metal)})
    return "\n\n".join(paras), findings


# ------------------------------------------------------------------------------ known truth (demos)
def compare_pmf_with_truth(fit, truth_profiles: pd.DataFrame, truth_contributions: pd.DataFrame, *,
                           mean_share_percent: pd.Series | None = None) -> pd.DataFrame:
    """Recovered PMF factors beside the generator's true sources (generated demo regions only).

    Factors are matched one to one to the true sources by the cosine similarity of their profiles,
    each metal expressed relative to its total over the true sources (Hungarian assignment,
    :func:`hmlib.pmf.match_factors`; the cosine does not depend on the scale of a factor). For each pair:
    the cosine similarity of the profiles, the correlation of the contributions over samples, and
    the mean share of the samples' modelled concentrations (as :func:`hmlib.pmf.contribution_table`)
    of the true source and of the factor.

    Parameters
    ----------
    fit : hmlib.pmf.PMFResult
        The chosen PMF solution of one medium.
    truth_profiles : pandas.DataFrame
        True profiles, sources x metals (the generator's ``truth_profiles.csv`` indexed by source).
    truth_contributions : pandas.DataFrame
        True contributions, samples (sample_id index) x sources, of the same medium.
    mean_share_percent : pandas.Series, optional
        factor -> recovered mean share (%); default: computed from ``fit``.

    Returns
    -------
    pandas.DataFrame
        source, factor, profile_cosine, contribution_r, true_share_percent, recovered_share_percent
        (sources without a matching factor have NaN factor values; factors without a source are left out).
    """
    from .pmf import match_factors

    metals = [m for m in fit.profiles.columns if m in truth_profiles.columns]
    est = fit.profiles[metals]
    tru = truth_profiles[metals].astype(float)
    # each metal in units of its total over the true sources (the same scale for both, so that Zn or Cr do not
    # dominate the cosine); the cosine is then independent of how each factor's profile is scaled
    col = tru.sum(axis=0).replace(0, np.nan)
    m = match_factors((est / col).fillna(0.0), (tru / col).fillna(0.0))
    ids = [i for i in fit.contributions.index.astype(str) if i in set(truth_contributions.index.astype(str))]
    tc = truth_contributions.copy()
    tc.index = tc.index.astype(str)
    tc = tc.loc[ids, list(tru.index)]
    G = fit.contributions.copy()
    G.index = G.index.astype(str)
    G = G.loc[ids]
    # true mean share: the share each source has of the samples' noise-free concentrations, averaged over metals
    parts = tc.to_numpy(float)[:, :, None] * tru.to_numpy(float)[None, :, :]
    tot = parts.sum(axis=1, keepdims=True)
    true_share = (np.where(tot > 0, parts / np.where(tot > 0, tot, 1.0), 0.0).mean(axis=2)).mean(axis=0) * 100
    true_share = pd.Series(true_share, index=tru.index)
    if mean_share_percent is None:
        from .pmf import contribution_table

        ct = contribution_table(fit)
        mean_share_percent = ct.groupby("factor")["share"].mean() * 100
    rows = []
    for src in tru.index:
        hit = m[m["source"] == src]
        if len(hit):
            f = hit["factor"].iloc[0]
            r = float(np.corrcoef(G[f].to_numpy(float), tc[src].to_numpy(float))[0, 1]) if len(ids) > 2 else np.nan
            rows.append({"source": src, "factor": f, "profile_cosine": float(hit["cosine"].iloc[0]),
                         "contribution_r": r, "true_share_percent": float(true_share[src]),
                         "recovered_share_percent": float(mean_share_percent.get(f, np.nan))})
        else:
            rows.append({"source": src, "factor": "", "profile_cosine": np.nan, "contribution_r": np.nan,
                         "true_share_percent": float(true_share[src]), "recovered_share_percent": np.nan})
    return pd.DataFrame(rows)


def compare_isotopes_with_truth(mixing: pd.DataFrame, truth_shares: pd.DataFrame) -> pd.DataFrame:
    """Mean Pb source shares of the Bayesian mixing model beside the generator's true Pb shares.

    Parameters
    ----------
    mixing : pandas.DataFrame
        Per-sample shares (sample_id, medium, method, source, share, ci_low, ci_high); the ``bayesian`` rows are used.
    truth_shares : pandas.DataFrame
        The generator's true Pb shares (sample_id, medium, one column per source).

    Returns
    -------
    pandas.DataFrame
        medium, source, true_mean_share, estimated_mean_share, mean_abs_error, coverage (share of samples whose
        95 % interval holds the true share), n.
    """
    b = mixing[mixing["method"] == "bayesian"].copy()
    b["sample_id"] = b["sample_id"].astype(str)
    t = truth_shares.copy()
    t["sample_id"] = t["sample_id"].astype(str)
    srcs = [c for c in t.columns if c not in ("sample_id", "medium")]
    tl = t.melt(id_vars=["sample_id", "medium"], value_vars=srcs, var_name="source", value_name="true_share")
    m = b.merge(tl, on=["sample_id", "medium", "source"], how="inner")
    rows = []
    for (med, src), d in m.groupby(["medium", "source"], sort=False):
        rows.append({"medium": med, "source": src, "true_mean_share": float(d["true_share"].mean()),
                     "estimated_mean_share": float(d["share"].mean()),
                     "mean_abs_error": float((d["share"] - d["true_share"]).abs().mean()),
                     "coverage": float(((d["ci_low"] <= d["true_share"]) & (d["true_share"] <= d["ci_high"])).mean()),
                     "n": len(d)})
    return pd.DataFrame(rows, columns=["medium", "source", "true_mean_share", "estimated_mean_share",
                                       "mean_abs_error", "coverage", "n"])


def methods_summary(options, *, media: list[str], appendix_ref: str = "",
                    subsample: dict[str, tuple[int, int]] | None = None) -> str:
    """The main-text summary of the source-apportionment methods (details go to the appendix).

    Parameters
    ----------
    options : the stage's options (:class:`hmlib.stages.sources.Options`).
    media : list of str
        Media analysed.
    appendix_ref : str, default ''
        Cross-reference to the appendix part with the details (e.g. ``@sec-appendix-sources``).
    subsample : dict or None, optional
        Medium -> (samples PMF was fitted on, all samples), for media fitted on a subsample.

    Returns
    -------
    str
        One paragraph (markdown).
    """
    o = options
    txt = ("Two views of the sources were compared. PCA with varimax rotation [@kaiser1958varimax] groups metals "
           "whose log concentrations vary together; positive matrix factorization (PMF) as in EPA PMF 5.0 "
           "[@paatero1994pmf; @norris2014pmf] splits each sample's concentrations into non-negative factor "
           "contributions and profiles, weighting each value by its uncertainty, so it can separate sources whose "
           "contributions co-vary. The number of factors was chosen by the drop in Q and the stability of the "
           "solution; bootstrap and displacement runs [@paatero2014error] give the uncertainty of each factor. "
           "Factors are named after the source type whose marker metals they match"
           + (" (" + "; ".join(f"{k}: " + ", ".join(v) for k, v in o.signatures.items()) + ")" if o.signatures else "")
           + ".")
    if subsample:
        txt += " " + subsample_text(subsample, name_media=len(media) > 1)
    if o.isotope_ratios:
        txt += (" Pb isotope ratios were mixed between measured end-members with a Bayesian model "
                "[@parnell2010siar].")
    if appendix_ref:
        txt += f" Equations and settings are in the appendix ({appendix_ref})."
    return txt


def subsample_text(subsample: dict[str, tuple[int, int]], *, details: bool = False,
                   name_media: bool | None = None) -> str:
    """The sentence saying that PMF was fitted on a subsample and the contributions estimated for all samples.

    Parameters
    ----------
    subsample : dict
        Medium -> (samples PMF was fitted on, all samples).
    details : bool, default False
        Add how the subsample was drawn and how the contributions were estimated (for the appendix).
    name_media : bool or None, optional
        Name the medium of each count (default: when more than one medium was subsampled).

    Returns
    -------
    str
        One or two sentences (markdown).
    """
    multi = len(subsample) > 1 if name_media is None else name_media
    parts = [f"{n:,} of the {m:,} samples" + (f" in {med}" if multi else "") for med, (n, m) in subsample.items()]
    txt = ("PMF was fitted on a spatially stratified subsample of " + "; ".join(parts) + "; the contributions of all "
           "samples were then estimated by non-negative least squares on the fitted profiles.")
    if details:
        txt += (" The subsample keeps the survey's spatial layout: the area is cut into squares of about four "
                "subsample points each, the samples are ordered square by square in a serpentine sweep, and every "
                "k-th of them is taken from a random start, k being the ratio of all samples to the subsample size "
                "(systematic sampling of a stratified list; samples without coordinates are drawn at random in "
                "proportion). The factor-count scan, random starts, "
                "bootstrap, DISP and BS-DISP all use the subsample; each sample's contributions are then "
                "$\\hat g_i = \\arg\\min_{g \\ge 0} \\sum_j ((x_{ij} - \\sum_k g_k f_{kj})/u_{ij})^2$ with the "
                "profiles held fixed (the robust down-weighting applied as in the fit) [@paatero1994pmf; "
                "@norris2014pmf], and the contribution tables, maps and attributions use all samples.")
    return txt
