"""Spatial autocorrelation and hotspots: global Moran's I, local Moran (LISA) and Getis-Ord Gi*.

All statistics use PySAL (esda with libpysal k-nearest-neighbour weights, row-standardised).
Statistics come from esda; permutation p-values are drawn here with a seeded
:class:`numpy.random.Generator`: :class:`esda.Moran` draws from numpy's global random state
(which hmlib never uses), and esda's local permutation kernels take close to a minute of numba
compilation in each new process.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .descriptive import count_of

__all__ = ["knn_weights", "global_moran", "local_hotspots", "LISA_LABELS", "hotspot_figure", "hotspot_summary",
           "methods_text", "results_text"]

LISA_LABELS = {1: "High-High", 2: "Low-High", 3: "Low-Low", 4: "High-Low"}



def _check_values(values, w) -> np.ndarray:
    """``values`` as a float array with one finite value per observation of the weights ``w``."""
    z = np.asarray(values, float)
    if z.size != w.n:
        raise ValueError(f"values: expected {w.n} values (one per weights observation), got {z.size}")
    if not np.isfinite(z).all():
        raise ValueError("values: expected finite values, got NaN or infinite")
    return z

def knn_weights(x, y, *, k: int = 8):
    """Row-standardised k-nearest-neighbour weights (:class:`libpysal.weights.KNN`).

    Parameters
    ----------
    x, y : array-like of float
        Sample coordinates (projected).
    k : int, default 8
        Number of nearest neighbours (fewer than the samples).

    Returns
    -------
    libpysal.weights.KNN
        Row-standardised k-nearest-neighbour spatial weights.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from libpysal.weights import KNN

    xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    if len(xy) <= k:
        raise ValueError(f"k: expected fewer neighbours than samples ({len(xy)}), got k={k}")
    if not np.isfinite(xy).all():
        raise ValueError("coordinates: expected finite x and y, got NaN or infinite values")
    w = KNN.from_array(xy, k=k)
    w.transform = "r"
    return w


def global_moran(values, w, *, n_permutations: int = 999, seed: int = 0) -> dict:
    r"""Global Moran's I with a seeded permutation p-value.

    .. math::

        I = \frac{n}{S_0}\,\frac{\sum_i\sum_j w_{ij}(z_i-\bar z)(z_j-\bar z)}{\sum_i (z_i-\bar z)^2},
        \qquad E[I] = -\frac{1}{n-1}

    The pseudo p-value is :math:`(1 + \#\{|I^*-E[I]| \ge |I-E[I]|\})/(1 + R)` over ``R`` random
    permutations :math:`I^*` of the values (two-sided).

    Parameters
    ----------
    values : array-like of float
        One value per sample (e.g. log concentration), ordered as the weights.
    w : libpysal.weights.W
        Spatial weights, e.g. from :func:`knn_weights`.
    n_permutations : int, default 999
        Number of random permutations for the pseudo p-value.
    seed : int, default 0
        Seed of the permutation generator.

    Returns
    -------
    dict: I, expected_I, z_norm, p_norm (normality assumption, esda), p_perm, n.

    References
    ----------
    Moran, P.A.P. (1950). Notes on continuous stochastic phenomena. Biometrika 37, 17-23.
    https://doi.org/10.2307/2332142
    Rey, S.J. and Anselin, L. (2007). PySAL: a Python library of spatial analytical methods.
    Review of Regional Studies 37, 5-27. https://doi.org/10.52324/001c.8285
    """
    with warnings.catch_warnings():   # tqdm.auto (imported by PySAL) warns about ipywidgets in notebooks
        warnings.simplefilter("ignore")
        from esda import Moran

    z = _check_values(values, w)
    mi = Moran(z, w, permutations=0)
    W = w.sparse.tocsr()
    d = z - z.mean()
    s0 = W.sum()
    n = len(z)
    rng = np.random.default_rng(seed)

    def stat(v):
        return n / s0 * float(v @ (W @ v)) / float(v @ v)

    obs = stat(d)
    perm = np.array([stat(rng.permutation(d)) for _ in range(n_permutations)])
    ei = -1.0 / (n - 1)
    p = (1 + np.sum(np.abs(perm - ei) >= abs(obs - ei))) / (1 + n_permutations)
    return {"I": float(mi.I), "expected_I": float(mi.EI), "z_norm": float(mi.z_norm),
            "p_norm": float(mi.p_norm), "p_perm": float(p), "n": int(n)}


def _neighbour_lists(w):
    """Neighbour index arrays and weight arrays (in w.id_order positions)."""
    pos = {i: k for k, i in enumerate(w.id_order)}
    nbr = [np.array([pos[j] for j in w.neighbors[i]], dtype=np.int64) for i in w.id_order]
    wts = [np.asarray(w.weights[i], float) for i in w.id_order]
    return nbr, wts


def _conditional_sums(values: np.ndarray, nbr, wts, *, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    r"""Permutation draws of the weighted neighbour sum :math:`\sum_j w_{ij} z_j` with z_i held fixed.

    For each i the neighbours' values are replaced by a random draw without replacement from
    the other n - 1 values (conditional randomisation, Anselin 1995). Returns (n, R).
    """
    n = len(values)
    out = np.empty((n, n_permutations))
    for i in range(n):
        k = len(nbr[i])
        if k == 0:
            out[i] = 0.0
            continue
        draw = np.empty((n_permutations, k), dtype=np.int64)
        todo = np.arange(n_permutations)
        while todo.size:   # k << n: draw with replacement, redraw rows holding a duplicate
            d = rng.integers(0, n - 1, size=(todo.size, k))
            srt = np.sort(d, axis=1)
            dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1) if k > 1 else np.zeros(todo.size, bool)
            draw[todo[~dup]] = d[~dup]
            todo = todo[dup]
        draw = draw + (draw >= i)   # skip the focal observation
        out[i] = values[draw] @ wts[i]
    return out


def _folded_p(obs: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """esda's pseudo p-value: (1 + #sims at least as extreme, on the observed side) / (R + 1)."""
    r = sims.shape[1]
    larger = (sims >= obs[:, None]).sum(axis=1)
    larger = np.where(r - larger < larger, r - larger, larger)
    return (larger + 1.0) / (r + 1.0)


def local_hotspots(values, w, *, n_permutations: int = 999, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    r"""Local Moran (LISA) clusters and Getis-Ord Gi* hot/cold spots.

    Local Moran :math:`I_i = \frac{z_i - \bar z}{m_2}\sum_j w_{ij}(z_j-\bar z)` with
    :math:`m_2 = \sum_i (z_i-\bar z)^2/n` (value from :class:`esda.Moran_Local`); a sample is
    in a High-High / Low-Low cluster or a High-Low / Low-High outlier when its pseudo p < alpha.
    Gi* with binary weights including the sample itself is

    .. math:: G_i^* = \frac{\sum_j w_{ij} z_j - \bar z \sum_j w_{ij}}
        {s\sqrt{\left(n\sum_j w_{ij}^2 - (\sum_j w_{ij})^2\right)/(n-1)}}

    (:math:`s` the standard deviation with divisor n; Ord and Getis 1995, eq. 12; equal to
    esda's ``G_Local(star=True).Zs`` for positive values, and unlike the ratio form it does not
    change sign for log values below 0); hot spot when :math:`G_i^* > 0` and p < alpha, cold
    spot when < 0. Benjamini-Hochberg q-values are given too (many local tests).

    Pseudo p-values use conditional randomisation (neighbour values drawn without replacement
    from the other samples, the focal value held fixed) and esda's folded count. The draws are
    hand-written with a seeded numpy Generator because esda's numba kernels take close to a
    minute to compile in every new process, longer than this whole analysis.

    Parameters
    ----------
    values : array-like of float
        One value per sample (e.g. log concentration), ordered as the weights.
    w : libpysal.weights.W
        Spatial weights, e.g. from :func:`knn_weights`.
    n_permutations : int, default 999
        Conditional-randomisation draws per sample.
    alpha : float, default 0.05
        Significance level for the cluster and hot/cold spot classes.
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    DataFrame per sample: lisa_I, lisa_p, lisa_q, lisa_quadrant, lisa_cluster, gi_z, gi_p,
    gi_q, gi_class (hot spot / cold spot / not significant).

    References
    ----------
    Anselin, L. (1995). Local indicators of spatial association - LISA. Geographical Analysis
    27, 93-115. https://doi.org/10.1111/j.1538-4632.1995.tb00338.x
    Ord, J.K. and Getis, A. (1995). Local spatial autocorrelation statistics: distributional
    issues and an application. Geographical Analysis 27, 286-306.
    https://doi.org/10.1111/j.1538-4632.1995.tb00912.x
    Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57,
    289-300. https://doi.org/10.1111/j.2517-6161.1995.tb02031.x
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from esda import Moran_Local
    from statsmodels.stats.multitest import multipletests

    z = _check_values(values, w)
    n = z.size
    rng = np.random.default_rng(seed)
    lm = Moran_Local(z, w, permutations=0)
    quad = np.asarray(lm.q, int)
    d = z - z.mean()
    m2 = float(d @ d) / n
    nbr, wts = _neighbour_lists(w)
    lag = np.array([d[nb] @ wt for nb, wt in zip(nbr, wts)])
    lisa_I = d / m2 * lag
    sims = _conditional_sums(d, nbr, wts, n_permutations=n_permutations, rng=rng) * (d / m2)[:, None]
    lisa_p = _folded_p(lisa_I, sims)
    # Gi*: binary weights including self
    ones = [np.ones(len(nb)) for nb in nbr]
    local_sum = np.array([z[nb].sum() for nb in nbr]) + z
    wi = np.array([len(nb) + 1.0 for nb in nbr])
    s = z.std()
    gz = (local_sum - z.mean() * wi) / (s * np.sqrt((n * wi - wi**2) / (n - 1)))
    gsims = _conditional_sums(z, nbr, ones, n_permutations=n_permutations, rng=rng) + z[:, None]
    gi_p = _folded_p(local_sum, gsims)
    sig = lisa_p < alpha
    cluster = np.where(sig, [LISA_LABELS[q] for q in quad], "not significant")
    gsig = gi_p < alpha
    gclass = np.where(gsig & (gz > 0), "hot spot", np.where(gsig & (gz < 0), "cold spot", "not significant"))
    return pd.DataFrame({
        "lisa_I": np.asarray(lm.Is, float), "lisa_p": lisa_p, "lisa_q": multipletests(lisa_p, method="fdr_bh")[1],
        "lisa_quadrant": [LISA_LABELS[q] for q in quad], "lisa_cluster": cluster,
        "gi_z": gz, "gi_p": gi_p, "gi_q": multipletests(gi_p, method="fdr_bh")[1], "gi_class": gclass,
    })


_LISA_COLOURS = {"High-High": "#d7191c", "Low-Low": "#2c7bb6", "High-Low": "#fdae61", "Low-High": "#abd9e9",
                 "not significant": "#d9d9d9"}
_GI_COLOURS = {"hot spot": "#d7191c", "cold spot": "#2c7bb6", "not significant": "#d9d9d9"}


def hotspot_figure(table: pd.DataFrame, *, kind: str, coordinate_unit: str, ncols: int = 4,
                   outline: pd.DataFrame | None = None):
    """Small multiples (one panel per metal) of LISA clusters (``kind='lisa'``) or Gi* classes ('gi').

    ``table`` is the hotspots table (metal, x, y, lisa_cluster, gi_class); ``outline`` optional
    grid cells (x, y) drawn in light grey for orientation.

    Parameters
    ----------
    table : DataFrame
        Hotspots table with columns metal, x, y, lisa_cluster, gi_class.
    kind : {'lisa', 'gi'}
        Map LISA clusters or Gi* classes.
    coordinate_unit : str
        Unit of the coordinates, for the axis label.
    ncols : int, default 4
        Largest number of panel columns.
    outline : DataFrame, optional
        Grid cells (x, y) drawn in light grey.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per metal with a shared legend.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .plots import decorate_map

    if kind not in ("lisa", "gi"):
        raise ValueError(f"kind: expected 'lisa' or 'gi', got {kind!r}")
    col, colours = ("lisa_cluster", _LISA_COLOURS) if kind == "lisa" else ("gi_class", _GI_COLOURS)
    metals = list(dict.fromkeys(table["metal"]))
    ncols = min(ncols, len(metals))
    nrows = int(np.ceil(len(metals) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0, 1.9 * nrows + 0.5), squeeze=False)
    for ax in axes.ravel()[len(metals):]:
        ax.axis("off")
    for ax, m in zip(axes.ravel(), metals):
        t = table[table["metal"] == m]
        if outline is not None:
            ax.scatter(outline["x"], outline["y"], s=0.3, c="#f0f0f0", marker="s", linewidths=0, rasterized=True)
        for cls, c in colours.items():
            sel = t[t[col] == cls]
            ax.scatter(sel["x"], sel["y"], s=5 if cls == "not significant" else 10, c=c, linewidths=0)
        ax.set_title(m, fontsize=8)
        ax.set_aspect("equal")
        # no coordinate ticks (unreadable below 7 pt in small panels): a scale bar and north arrow instead
        ax.set_xticks([])
        ax.set_yticks([])
    decorate_map(axes.ravel()[0], crs=None, coordinate_unit=coordinate_unit, note=False)
    handles = [Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in colours.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def methods_text(*, k: int, n_permutations: int, alpha: float, log_note: str) -> str:
    """Methods paragraph for the hotspot analysis (pandoc markdown).

    Parameters
    ----------
    k : int
        Number of nearest neighbours in the weights.
    n_permutations : int
        Number of permutations/draws.
    alpha : float
        Significance level.
    log_note : str
        Phrase saying on which scale the values were analysed (e.g. ``'log-transformed'``).

    Returns
    -------
    str
        Methods paragraph (pandoc markdown with citation keys).
    """
    return f"""
**Hotspots.** Spatial autocorrelation of each metal ({log_note}) was measured on row-standardised
{k}-nearest-neighbour weights (libpysal) with global Moran's $I$ [@moran1950; @rey2007pysal] and its
two-sided permutation p-value ({n_permutations} permutations). Local Moran's $I_i$ (LISA) classifies samples into
High-High and Low-Low clusters and High-Low / Low-High outliers, and the Getis-Ord $G_i^*$ statistic (binary
weights including the sample) marks hot and cold spots [@anselin1995; @ord1995]; both use conditional-permutation
pseudo p-values ({n_permutations} draws) and a sample is classed when $p < {alpha:g}$. Because every sample is a
separate test, Benjamini-Hochberg q-values [@benjamini1995] are listed in `tables/hotspots.csv`; classes at
$p<{alpha:g}$ without that correction are exploratory.
"""


def hotspot_summary(moran: pd.DataFrame, local: pd.DataFrame) -> pd.DataFrame:
    """Per metal: global Moran's I and its p-value, and counts of LISA classes and Gi* spots.

    ``moran`` has one row per metal (metal, scale, I, p_perm, ...); ``local`` is the per-sample
    table (metal, lisa_cluster, gi_class, gi_q).

    Parameters
    ----------
    moran : DataFrame
        Global Moran results, one row per metal (metal, scale, I, p_perm).
    local : DataFrame
        Per-sample local results (metal, lisa_cluster, gi_class, gi_q).

    Returns
    -------
    DataFrame
        One row per metal: Metal, Scale, Moran's I, p (perm.), High-High, Low-Low,
        Outliers (HL/LH), Hot spots, Cold spots, Hot spots (FDR q<0.05) (counts of samples).
    """
    rows = []
    for r in moran.itertuples():
        t = local[local["metal"] == r.metal]
        rows.append({"Metal": r.metal, "Scale": r.scale, "Moran's I": r.I, "p (perm.)": r.p_perm,
                     "High-High": int((t["lisa_cluster"] == "High-High").sum()),
                     "Low-Low": int((t["lisa_cluster"] == "Low-Low").sum()),
                     "Outliers (HL/LH)": int(t["lisa_cluster"].isin(["High-Low", "Low-High"]).sum()),
                     "Hot spots": int((t["gi_class"] == "hot spot").sum()),
                     "Cold spots": int((t["gi_class"] == "cold spot").sum()),
                     "Hot spots (FDR q<0.05)": int(((t["gi_class"] == "hot spot") & (t["gi_q"] < 0.05)).sum())})
    return pd.DataFrame(rows)


def results_text(moran: pd.DataFrame, local: pd.DataFrame, *, alpha: float = 0.05) -> str:
    """Results sentence: global autocorrelation and the metals with most FDR-robust hot spots.

    Parameters
    ----------
    moran : DataFrame
        Global Moran results, one row per metal (metal, I, p_perm).
    local : DataFrame
        Per-sample local results (metal, gi_class, gi_q).
    alpha : float, default 0.05
        Significance level for global autocorrelation.

    Returns
    -------
    str
        Results sentences (range of Moran's I, significant metals, FDR-robust hot spots per metal).
    """
    sig = moran[moran["p_perm"] < alpha]
    txt = (f"Global Moran's I ranged from {moran['I'].min():.2f} to {moran['I'].max():.2f}; "
           f"{count_of(len(sig), len(moran), 'metals')} were significantly autocorrelated (permutation p < {alpha:g}).")
    hot = local[(local["gi_class"] == "hot spot") & (local["gi_q"] < 0.05)].groupby("metal").size()
    if len(hot):
        hot = hot.sort_values(ascending=False)
        txt += (" Gi* hot spots that survive the false-discovery-rate correction: "
                + ", ".join(f"{m} ({n} samples)" for m, n in hot.items()) + ".")
    else:
        txt += " No Gi* hot spot survives the false-discovery-rate correction."
    return txt
