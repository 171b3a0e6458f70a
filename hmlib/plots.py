"""Shared figure helpers (matplotlib/seaborn) used by several stages."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["small_multiples", "sample_maps", "histograms", "boxplots", "correlation_heatmap"]


def small_multiples(n: int, *, ncols: int = 4, panel_size: tuple[float, float] = (1.75, 1.6),
                    sharex: bool = False, sharey: bool = False):
    """A figure with ``n`` panels in rows of ``ncols`` (unused panels hidden), sized for a page."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                             squeeze=False, sharex=sharex, sharey=sharey)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def sample_maps(conc: pd.DataFrame, x: pd.Series, y: pd.Series, *, unit: str, ncols: int = 4,
                coordinate_unit: str = "m", cmap: str = "viridis", log: bool = True):
    """One map panel per metal: samples coloured by concentration (log colour scale by default)."""
    from matplotlib.colors import LogNorm, Normalize

    fig, axes = small_multiples(conc.shape[1], ncols=ncols, panel_size=(1.85, 1.85))
    for ax, metal in zip(axes, conc.columns):
        v = conc[metal].to_numpy(float)
        ok = np.isfinite(v) & (v > 0 if log else True)
        norm = LogNorm(v[ok].min(), v[ok].max()) if log and ok.any() else Normalize()
        sc = ax.scatter(x[ok], y[ok], c=v[ok], s=7, cmap=cmap, norm=norm, linewidths=0)
        ax.set_title(f"{metal} ({unit})", fontsize=8)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
        cb = fig.colorbar(sc, ax=ax, shrink=0.8)
        if log:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            cb.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda val, _pos: f"{val:g}"))
            cb.ax.yaxis.set_minor_formatter(NullFormatter())
        cb.ax.tick_params(labelsize=6)
    fig.supxlabel(f"x ({coordinate_unit})", fontsize=8)
    fig.supylabel(f"y ({coordinate_unit})", fontsize=8)
    fig.tight_layout()
    return fig


def histograms(conc: pd.DataFrame, *, unit: str, ncols: int = 4, thresholds: dict | None = None):
    """Histogram of log10 concentration per metal, with optional vertical threshold lines."""
    fig, axes = small_multiples(conc.shape[1], ncols=ncols)
    for ax, metal in zip(axes, conc.columns):
        v = conc[metal].dropna()
        v = v[v > 0]
        ax.hist(np.log10(v), bins=20, color="0.55", edgecolor="white", linewidth=0.4)
        ax.set_title(metal, fontsize=8)
        ax.set_xlabel(f"log10 {metal} ({unit})", fontsize=7)
        ax.tick_params(labelsize=6)
        for name, val in (thresholds or {}).get(metal, {}).items():
            ax.axvline(np.log10(val), color="C3" if name != "background" else "C0", lw=0.9, ls="--")
    fig.tight_layout()
    return fig


def correlation_heatmap(corr: pd.DataFrame, pvals: pd.DataFrame | None = None, *, alpha: float = 0.05,
                        title: str = ""):
    """Lower-triangle heatmap of a correlation matrix; * marks p < alpha, ** p < alpha/5."""
    import seaborn as sns

    mask = np.triu(np.ones_like(corr, dtype=bool), k=1)
    annot = corr.round(2).astype(str)
    if pvals is not None:
        stars = pvals.map(lambda p: "**" if p < alpha / 5 else ("*" if p < alpha else ""))
        annot = annot + stars
    fig, ax = plt.subplots(figsize=(0.55 * len(corr) + 1.6, 0.5 * len(corr) + 1.0))
    sns.heatmap(corr, mask=mask, annot=annot, fmt="", cmap="RdBu_r", vmin=-1, vmax=1, square=True,
                cbar_kws={"shrink": 0.7, "label": "r"}, annot_kws={"fontsize": 7}, ax=ax)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def boxplots(conc: pd.DataFrame, *, unit: str, thresholds: dict | None = None, log: bool = True):
    """Box plots of every metal on a shared log axis (Tukey whiskers), with threshold ticks.

    Each metal's values are divided by nothing: metals differ by orders of magnitude, so a log
    axis keeps them readable in one panel. Threshold markers: background (blue), guideline (red).
    """
    fig, ax = plt.subplots(figsize=(min(1.0 + 0.7 * conc.shape[1], 7.0), 3.2))
    vals = [conc[m].dropna().to_numpy(float) for m in conc.columns]
    ax.boxplot(vals, whis=1.5, widths=0.55, flierprops={"markersize": 2.5, "alpha": 0.6},
               medianprops={"color": "black"})
    ax.set_xticks(range(1, conc.shape[1] + 1), conc.columns)
    if log:
        ax.set_yscale("log")
    for i, metal in enumerate(conc.columns, start=1):
        for name, val in (thresholds or {}).get(metal, {}).items():
            ax.plot([i - 0.35, i + 0.35], [val, val], color="C0" if name == "background" else "C3", lw=1.2,
                    ls="--" if name == "background" else "-")
    ax.set_ylabel(f"concentration ({unit})")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
