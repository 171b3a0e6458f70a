"""Shared figure helpers (matplotlib/seaborn) used by several stages.

Print rules every helper follows (a report page is :data:`PAGE_WIDTH_IN` wide):

- figures at most :data:`PAGE_WIDTH_IN` wide, so they are printed at 100 % or larger and no text
  is smaller than :data:`MIN_FONT_PT` (use :func:`print_style` for figures drawn by hand);
- maps (:func:`map_panels`, :func:`decorate_map`) carry a coordinate note (the CRS, or "local
  grid"), a scale bar (matplotlib-scalebar) and a north arrow, keep equal axis scales, and choose
  the number of columns from the region's shape (:func:`map_layout`), so that a long coastal strip
  is drawn in one or two wide columns rather than as slivers;
- threshold lines (background, guide, trigger...) are named in a legend with their value; a
  threshold outside the data range is named in the legend but not allowed to stretch the axis;
- a panel that would be empty or uniform should not be drawn: :func:`uninformative` says why, so
  the stage can write one sentence instead of the figure.

Map API for stage owners::

    fig = plots.map_panels(values_wide, x, y, crs=p.data.crs, coordinate_unit=p.data.coordinate_unit,
                           unit="mg/kg", thresholds={"Cd": {"guide": 0.8}})
    fig, axes = plots.map_axes(n_panels, x=x, y=y)        # empty, page-sized, aspect-aware panels
    plots.decorate_map(axes[0], crs=..., coordinate_unit=...)  # scale bar + north arrow + CRS note
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import contextmanager

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["small_multiples", "sample_maps", "histograms", "boxplots", "correlation_heatmap", "map_panels",
           "map_axes", "map_layout", "decorate_map", "crs_note", "print_style", "threshold_style",
           "uninformative", "PAGE_WIDTH_IN", "MIN_FONT_PT", "MAP_MAX_HEIGHT_IN", "PRINT_RC"]

#: Width of the report's text block (A4, 2 cm margins) in inches: figures wider than this shrink in print.
PAGE_WIDTH_IN = 6.7
#: Smallest font size (points) at print size.
MIN_FONT_PT = 7
#: Tallest map figure by default (inches): about two thirds of the A4 text block, so that the figure, its
#: caption and some text share a page instead of a page per figure.
MAP_MAX_HEIGHT_IN = 6.0
#: Matplotlib settings for report figures (applied by :func:`print_style`).
PRINT_RC = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7,
            "ytick.labelsize": 7, "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 9,
            "figure.labelsize": 8}

_THRESHOLD_STYLES = {"background": ("#1f77b4", "--"), "guide": ("#d62728", "-"), "trigger": ("#ff7f0e", "-."),
                     "cleanup": ("#7b3294", ":"), "clean-up": ("#7b3294", ":"), "intervention": ("#7b3294", ":")}
_FALLBACK_STYLES = [("#d62728", "-"), ("#ff7f0e", "-."), ("#7b3294", ":"), ("#2ca02c", (0, (5, 1, 1, 1)))]


@contextmanager
def print_style():
    """Context manager: matplotlib settings that keep every text at least :data:`MIN_FONT_PT` at print size."""
    with plt.rc_context(PRINT_RC):
        yield


def threshold_style(name: str, index: int = 0) -> tuple[str, object]:
    """(colour, line style) of a named threshold line; the same name always gets the same style."""
    key = str(name).lower().replace(" value", "").strip()
    return _THRESHOLD_STYLES.get(key, _FALLBACK_STYLES[index % len(_FALLBACK_STYLES)])


def _threshold_name(name: str) -> str:
    n = str(name).replace("_", " ")
    n = n if "value" in n or "level" in n else f"{n} value"
    return n[0].upper() + n[1:]


def _threshold_label(name: str, value: float, unit: str | None) -> str:
    return f"{_threshold_name(name)} ({value:g}{' ' + unit if unit else ''})"


def uninformative(values, *, max_share_one_class: float = 0.95) -> str | None:
    """Why a panel of ``values`` would carry no information, or None if it is worth drawing.

    Parameters
    ----------
    values : numbers or class labels of one panel.
    max_share_one_class : for labels (or few distinct numbers), the largest share one value may
        have before the panel counts as uniform.

    Returns
    -------
    str or None
        A phrase such as ``"no values"`` or ``"99 % of cells in one class (low)"``, for a sentence
        that replaces the figure.
    """
    s = pd.Series(values).dropna()
    if s.empty:
        return "no values"
    if pd.api.types.is_numeric_dtype(s):
        s = s[np.isfinite(s.to_numpy(float))]
        if s.empty:
            return "no finite values"
        if s.nunique() == 1:
            return f"all values equal {s.iloc[0]:g}"
        if s.nunique() > 10:
            return None
    share = s.value_counts(normalize=True)
    if share.iloc[0] >= max_share_one_class:
        return f"{100 * share.iloc[0]:.0f} % of values in one class ({share.index[0]})"
    return None


def small_multiples(n: int, *, ncols: int = 4, panel_size: tuple[float, float] = (1.75, 1.6),
                    sharex: bool = False, sharey: bool = False):
    """A figure with ``n`` panels in rows of ``ncols`` (unused panels hidden), at most a page wide."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    w = min(panel_size[0] * ncols, PAGE_WIDTH_IN)
    h = panel_size[1] * nrows * (w / (panel_size[0] * ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False, sharex=sharex, sharey=sharey)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


# ---------------------------------------------------------------------------------------------
# maps
def crs_note(crs: str | None, coordinate_unit: str = "m") -> str:
    """A reader's note on the coordinates: ``"Local grid, km"`` (crs ``"local"``), ``"EPSG:28992
    (Amersfoort / RD New), m"``, or ``"Coordinates in m"`` when the caller gives no CRS (pass it)."""
    unit = {"degree": "degrees"}.get(coordinate_unit, coordinate_unit)
    if crs is None or str(crs).strip() == "":
        return f"Coordinates in {unit}"  # the caller did not say which system: claim none
    if str(crs).lower() in ("local", "none"):
        return f"Local grid, {unit}"
    name = ""
    try:
        from pyproj import CRS

        name = CRS.from_user_input(crs).name
    except Exception:  # an unknown code still gets its code printed
        name = ""
    return f"{crs}" + (f" ({name})" if name and name.lower() != "unknown" else "") + f", {unit}"


def _is_geographic(crs: str | None, coordinate_unit: str) -> bool:
    if coordinate_unit == "degree":
        return True
    if crs is None or str(crs).lower() in ("", "local", "none"):
        return False
    try:
        from pyproj import CRS

        return bool(CRS.from_user_input(crs).is_geographic)
    except Exception:
        return False


def map_layout(n: int, *, aspect: float, max_width_in: float = PAGE_WIDTH_IN, max_height_in: float | None = None,
               colorbar_in: float = 0.55, title_in: float = 0.3, max_cols: int = 4) -> tuple[int, int, tuple[float, float]]:
    """Rows, columns and figure size for ``n`` map panels of a region whose height/width is ``aspect``.

    The number of columns is the one that gives each map the largest area while the figure fits
    ``max_width_in`` x ``max_height_in``: a wide, flat region (small ``aspect``) gets one or two
    columns of wide maps, a compact one up to ``max_cols``.

    Parameters
    ----------
    n : number of panels.
    aspect : region height / width in map units (equal scales).
    max_width_in, max_height_in : page area for the figure, inches (height default
        :data:`MAP_MAX_HEIGHT_IN`: a map figure leaves room for its caption and text on its page).
    colorbar_in, title_in : room per panel for its colour bar (right) and title (top), inches.
    max_cols : most columns.

    Returns
    -------
    tuple
        ``(nrows, ncols, (width_in, height_in))``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    max_height_in = MAP_MAX_HEIGHT_IN if max_height_in is None else max_height_in
    aspect = float(min(max(aspect, 0.05), 20.0))
    best = None
    for ncols in range(1, min(n, max_cols) + 1):
        nrows = math.ceil(n / ncols)
        map_w = max_width_in / ncols - colorbar_in
        map_h = map_w * aspect
        if nrows * (map_h + title_in) > max_height_in:  # too tall: shrink maps to fit the height
            map_h = max_height_in / nrows - title_in
            map_w = map_h / aspect
        if map_w <= 0.6 or map_h <= 0.4:
            continue
        area = map_w * map_h
        if best is None or area > best[0] * 1.05:
            best = (area, nrows, ncols, map_w, map_h)
    if best is None:
        ncols = min(n, max_cols)
        nrows = math.ceil(n / ncols)
        return nrows, ncols, (max_width_in, max_height_in)
    _, nrows, ncols, map_w, map_h = best
    return nrows, ncols, (min(ncols * (map_w + colorbar_in), max_width_in), nrows * (map_h + title_in))


def _extent(x, y) -> tuple[float, float, float, float]:
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return 0.0, 1.0, 0.0, 1.0
    x0, x1, y0, y1 = x[ok].min(), x[ok].max(), y[ok].min(), y[ok].max()
    dx, dy = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
    pad = 0.03 * max(dx, dy)
    return x0 - pad, x1 + pad, y0 - pad, y1 + pad


def map_axes(n: int, *, x, y, max_height_in: float | None = None, colorbar: bool = True):
    """Empty map panels laid out for the region's shape (see :func:`map_layout`).

    Returns
    -------
    (Figure, list of Axes)
        Axes with equal scales, limits set to the data extent, ticks hidden.
    """
    x0, x1, y0, y1 = _extent(x, y)
    nrows, ncols, size = map_layout(n, aspect=(y1 - y0) / (x1 - x0), max_height_in=max_height_in,
                                    colorbar_in=0.55 if colorbar else 0.1)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    for ax in flat[:n]:
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xticks([])
        ax.set_yticks([])
        for sp in ax.spines.values():
            sp.set_linewidth(0.5)
            sp.set_color("0.4")
    return fig, flat[:n]


def decorate_map(ax, *, crs: str | None, coordinate_unit: str = "m", scalebar: bool = True, north: bool = True,
                 note: bool = True) -> None:
    """Add a scale bar (lower left), a north arrow (upper right) and the coordinate note (below) to ``ax``.

    The scale bar uses matplotlib-scalebar; it is left out for geographic coordinates (degrees),
    where one data unit has no fixed length, and the note says so. The north arrow assumes the y
    axis points north, as in every projected CRS and in the local grids hmlib accepts.
    """
    if scalebar and not _is_geographic(crs, coordinate_unit):
        from matplotlib_scalebar.scalebar import ScaleBar

        units = {"m": "m", "km": "km"}.get(coordinate_unit, "m")
        ax.add_artist(ScaleBar(1.0, units=units, location="lower left", length_fraction=0.3, width_fraction=0.035, box_alpha=0.75,
                               pad=0.3, border_pad=0.4, sep=2, frameon=True,
                               font_properties={"size": MIN_FONT_PT}))
    if north:
        ax.annotate("N", xy=(0.93, 0.97), xytext=(0.93, 0.78), xycoords="axes fraction", textcoords="axes fraction",
                    ha="center", va="center", fontsize=MIN_FONT_PT, fontweight="bold",
                    arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 0.9, "shrinkA": 4, "shrinkB": 0},
                    bbox={"boxstyle": "circle,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.7})
    if note:
        text = crs_note(crs, coordinate_unit)
        if scalebar and _is_geographic(crs, coordinate_unit):
            text += "; no scale bar (geographic coordinates)"
        ax.figure.text(0.01, 0.0, text, fontsize=MIN_FONT_PT, color="0.3", ha="left", va="bottom")


def _log_colorbar(cb) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    cb.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda val, _pos: f"{val:g}"))
    cb.ax.yaxis.set_minor_formatter(NullFormatter())


def grid_image(x, y, v):
    """Values of a regular grid as an image ``(array, extent)`` for ``imshow(origin="lower")``, or None when
    the cells are not regular.

    The cell step is the least-squares spacing of the distinct coordinates (near their median spacing);
    a grid whose coordinates are not on multiples of it (within 1 % of a step) is not regular. Cells without a value stay empty (NaN).
    """
    out = []
    x, y, v = np.asarray(x, float), np.asarray(y, float), np.asarray(v, float)
    for c in (x, y):
        u = np.unique(c)
        if len(u) < 2:
            return None
        med = float(np.median(np.diff(u)))
        k0 = np.round((u - u[0]) / med)
        step = float((u - u[0]) @ k0 / (k0 @ k0))  # least-squares spacing: coordinates are rounded in files
        k = (c - u[0]) / step
        if np.abs(k - np.round(k)).max() > 0.01 or np.round(k).max() > 20_000:
            return None
        out.append((np.round(k).astype(int), u[0], step))
    (ix, x0, dx), (iy, y0, dy) = out
    arr = np.full((iy.max() + 1, ix.max() + 1), np.nan)
    arr[iy, ix] = v
    return arr, (x0 - dx / 2, x0 + dx * (ix.max() + 0.5), y0 - dy / 2, y0 + dy * (iy.max() + 0.5))


def map_panels(values: pd.DataFrame, x, y, *, crs: str | None, coordinate_unit: str = "m",
               unit: str | Mapping[str, str] = "", titles: Mapping[str, str] | None = None, cmap: str = "viridis",
               log: bool = True, thresholds: Mapping[str, Mapping[str, float]] | None = None, grid: bool = False,
               marker_size: float | None = None, max_height_in: float | None = None):
    """One map per column of ``values`` (points or grid cells coloured by value), ready for the report.

    Parameters
    ----------
    values : one column per panel (e.g. per metal), rows aligned with ``x`` and ``y``.
    x, y : coordinates in ``coordinate_unit``.
    crs : ``"EPSG:<code>"`` or ``"local"``/None for a local grid (printed under the maps).
    coordinate_unit : ``"m"``, ``"km"`` or ``"degree"``.
    unit : unit of the values, one for all panels or per column (colour bar label).
    titles : panel titles per column (default: the column name).
    cmap : colour map.
    log : logarithmic colour scale (positive values only).
    thresholds : per column, ``{name: value}`` drawn on the colour bar and named in the legend.
    grid : values are grid cells (square markers sized to the grid spacing) rather than samples.
    marker_size : marker area in points squared (default: from the number of points).
    max_height_in : tallest figure allowed, inches.

    Returns
    -------
    matplotlib.figure.Figure
        At most :data:`PAGE_WIDTH_IN` wide; a panel with nothing to show carries a sentence instead.
    """
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.lines import Line2D

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    cols = list(values.columns)
    with print_style():
        fig, axes = map_axes(len(cols), x=x, y=y, max_height_in=max_height_in)
        if marker_size is None:
            if grid:
                ux = np.unique(np.round(x, 9))
                step = np.median(np.diff(ux)) if len(ux) > 1 else 1.0
                x0, x1 = axes[0].get_xlim()
                w_pt = axes[0].get_position().width * fig.get_figwidth() * 72
                marker_size = max((step / (x1 - x0) * w_pt) ** 2, 0.5)
            else:
                marker_size = float(np.clip(900 / max(len(x), 1), 2.0, 14.0))
        handles = {}
        for ax, col in zip(axes, cols):
            u = unit.get(col, "") if isinstance(unit, Mapping) else unit
            v = values[col].to_numpy(float)
            ok = np.isfinite(v) & ((v > 0) if log else True)
            ax.set_title((titles or {}).get(col, str(col)), fontsize=PRINT_RC["axes.titlesize"])
            why = uninformative(v[ok]) if ok.any() else "no values"
            if why is not None and (not ok.any() or np.nanmin(v[ok]) == np.nanmax(v[ok])):
                ax.text(0.5, 0.5, f"Not mapped: {why}", transform=ax.transAxes, ha="center", va="center",
                        fontsize=MIN_FONT_PT, wrap=True)
                continue
            norm = LogNorm(v[ok].min(), v[ok].max()) if log else Normalize(v[ok].min(), v[ok].max())
            img = grid_image(x, y, np.where(ok, v, np.nan)) if grid else None
            if img is not None:  # a regular grid as one image: square markers leave gaps at print size
                lim = ax.get_xlim(), ax.get_ylim()
                sc = ax.imshow(img[0], origin="lower", extent=img[1], cmap=cmap, norm=norm,
                               interpolation="nearest", aspect=ax.get_aspect())
                ax.set_xlim(*lim[0])
                ax.set_ylim(*lim[1])
            else:
                sc = ax.scatter(x[ok], y[ok], c=v[ok], s=marker_size, cmap=cmap, norm=norm, linewidths=0,
                                marker="s" if grid else "o")
            cb = fig.colorbar(sc, ax=ax, shrink=0.85, pad=0.03)
            cb.ax.tick_params(labelsize=MIN_FONT_PT)
            cb.set_label(u, fontsize=MIN_FONT_PT)
            if log:
                _log_colorbar(cb)
            for i, (name, val) in enumerate(((thresholds or {}).get(col) or {}).items()):
                color, ls = threshold_style(name, i)
                label = _threshold_label(name, float(val), u)
                if norm.vmin <= val <= norm.vmax:
                    cb.ax.axhline(val, color=color, ls=ls, lw=1.4)
                else:
                    label += ", outside the colour range"
                handles.setdefault(label, Line2D([], [], color=color, ls=ls, lw=1.4))
        decorate_map(axes[0], crs=crs, coordinate_unit=coordinate_unit)
        fig.tight_layout(rect=(0, 0.035, 1, 1))
        if handles:
            fig.legend(list(handles.values()), list(handles.keys()), loc="lower right", ncol=min(len(handles), 2),
                       frameon=False, fontsize=MIN_FONT_PT, bbox_to_anchor=(1.0, 0.0))
    return fig


def sample_maps(conc: pd.DataFrame, x: pd.Series, y: pd.Series, *, unit: str, ncols: int = 4,
                coordinate_unit: str = "m", cmap: str = "viridis", log: bool = True, crs: str | None = None,
                thresholds: Mapping[str, Mapping[str, float]] | None = None):
    """One map per metal: samples coloured by concentration (log colour scale by default).

    A thin wrapper of :func:`map_panels` (``ncols`` is kept for compatibility; the layout follows
    the region's shape).
    """
    return map_panels(conc, x, y, crs=crs, coordinate_unit=coordinate_unit, unit=unit, cmap=cmap, log=log,
                      thresholds=thresholds)


# ---------------------------------------------------------------------------------------------
# distributions
def _layout_with_legend(fig, handles: dict, *, right_note_in: float = 0.0) -> None:
    """``tight_layout`` leaving room below for a legend of ``handles`` (label: artist), then the legend."""
    if not handles:
        fig.tight_layout()
        return
    w_in, h_in = fig.get_size_inches()
    longest = max(len(k) for k in handles)
    per_col_in = longest * MIN_FONT_PT * 0.55 / 72 + 0.45  # rough width of one legend entry at 7 pt
    ncol = int(max(1, min(3, len(handles), (w_in - right_note_in) // per_col_in)))
    rows = math.ceil(len(handles) / ncol)
    bottom_in = rows * 0.16 + 0.08
    fig.set_size_inches(w_in, h_in + bottom_in)  # the legend adds height instead of squeezing the panels
    fig.tight_layout(rect=(0, bottom_in / (h_in + bottom_in), 1, 1))
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=ncol, frameon=False,
               fontsize=MIN_FONT_PT, bbox_to_anchor=(0.5, 0.0), handlelength=2.2, columnspacing=1.2)


def histograms(conc: pd.DataFrame, *, unit: str, ncols: int = 4, thresholds: dict | None = None):
    """Histogram of log10 concentration per metal, with named threshold lines.

    Threshold lines inside the data range are drawn; one far outside is named in the legend as
    outside the axis range instead of stretching the axis.
    """
    from matplotlib.lines import Line2D

    with print_style():
        fig, axes = small_multiples(conc.shape[1], ncols=ncols, panel_size=(1.7, 1.55))
        handles, outside = {}, {}
        for ax, metal in zip(axes, conc.columns):
            v = conc[metal].dropna()
            v = v[v > 0]
            ax.set_title(metal)
            if v.empty:
                ax.text(0.5, 0.5, "no positive values", transform=ax.transAxes, ha="center", fontsize=MIN_FONT_PT)
                continue
            lv = np.log10(v)
            ax.hist(lv, bins=20, color="0.6", edgecolor="white", linewidth=0.4)
            lo, hi = lv.min(), lv.max()
            span = max(hi - lo, 0.1)
            ax.set_xlim(lo - 0.08 * span, hi + 0.08 * span)
            ax.set_xlabel(f"log10 {metal} ({unit})")
            for i, (name, val) in enumerate((thresholds or {}).get(metal, {}).items()):
                color, ls = threshold_style(name, i)
                key = str(name)
                if val > 0 and lo - 0.15 * span <= np.log10(val) <= hi + 0.15 * span:
                    ax.axvline(np.log10(val), color=color, ls=ls, lw=1.1)
                    lo2, hi2 = ax.get_xlim()
                    ax.set_xlim(min(lo2, np.log10(val) - 0.03 * span), max(hi2, np.log10(val) + 0.03 * span))
                else:
                    outside.setdefault(key, []).append(metal)
                handles.setdefault(key, Line2D([], [], color=color, ls=ls, lw=1.1))
        labelled = {}
        for key, h in handles.items():
            lab = f"{_threshold_name(key)} of each metal"
            if key in outside:
                lab += f" (beyond the axis for {', '.join(outside[key])})"
            labelled[lab] = h
        handles = labelled
        _layout_with_legend(fig, handles)
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
    with print_style():
        size = (min(0.55 * len(corr) + 1.6, PAGE_WIDTH_IN), min(0.5 * len(corr) + 1.0, PAGE_WIDTH_IN))
        fig, ax = plt.subplots(figsize=size)
        sns.heatmap(corr, mask=mask, annot=annot, fmt="", cmap="RdBu_r", vmin=-1, vmax=1, square=True,
                    cbar_kws={"shrink": 0.7, "label": "r"}, annot_kws={"fontsize": MIN_FONT_PT}, ax=ax)
        ax.set_title(title)
        fig.tight_layout()
    return fig


def boxplots(conc: pd.DataFrame, *, unit: str, thresholds: dict | None = None, log: bool = True):
    """Box plots of every metal on a shared log axis (Tukey whiskers), with named threshold marks.

    Metals differ by orders of magnitude, so a log axis keeps them readable in one panel. Each
    threshold is a short horizontal mark over its metal's box, named in the legend; a threshold
    beyond the data range is listed in the legend rather than stretching the axis.
    """
    from matplotlib.lines import Line2D

    with print_style():
        fig, ax = plt.subplots(figsize=(min(1.2 + 0.6 * conc.shape[1], PAGE_WIDTH_IN), 3.2))
        vals = [conc[m].dropna().to_numpy(float) for m in conc.columns]
        ax.boxplot(vals, whis=1.5, widths=0.55, flierprops={"markersize": 2.5, "alpha": 0.6},
                   medianprops={"color": "black"})
        ax.set_xticks(range(1, conc.shape[1] + 1), conc.columns)
        if log:
            ax.set_yscale("log")
        finite = np.concatenate([v[np.isfinite(v) & ((v > 0) if log else True)] for v in vals] or [np.array([1.0])])
        lo, hi = (finite.min(), finite.max()) if finite.size else (1.0, 10.0)
        handles = {}
        for i, metal in enumerate(conc.columns, start=1):
            for k, (name, val) in enumerate((thresholds or {}).get(metal, {}).items()):
                color, ls = threshold_style(name, k)
                label = f"{_threshold_name(name)} of each metal"
                inside = (lo / 1.5 <= val <= hi * 1.5) if log else (lo <= val <= hi)
                if inside:
                    ax.plot([i - 0.35, i + 0.35], [val, val], color=color, lw=1.4, ls=ls)
                else:
                    label += " (some outside the axis range)"
                handles.setdefault(str(name), (label, Line2D([], [], color=color, ls=ls, lw=1.4)))
        ax.set_ylabel(f"concentration ({unit})")
        ax.grid(axis="y", alpha=0.3)
        hs = {lab: h for lab, h in handles.values()}
        _layout_with_legend(fig, hs)
    return fig
