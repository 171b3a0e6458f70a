"""Writing maps as GIS files: GeoTIFF rasters (rasterio) and GeoPackage layers (geopandas/pyogrio).

Prediction grids are given as cell centres (x, y). :func:`regular_grid` recovers the lattice
(origin, spacing, rows, columns) and checks that every cell lies on it; :func:`write_geotiff`
writes one band per variable with the north-up affine transform

.. math:: X = x_{min} - \\Delta x/2 + (c + 1/2)\\,\\Delta x,\\qquad Y = y_{max} + \\Delta y/2 - (r + 1/2)\\,\\Delta y

for pixel centre (row r, column c); cells not in the grid are nodata (NaN).

CRS: an EPSG code is written as such. A region whose coordinates are in a *local* system
(crs 'local' in params, e.g. the Swiss Jura data set in km) is written **without a CRS**: GIS
software then shows the layer in its own unitless coordinates (QGIS asks for or assumes a CRS;
choose none / "unknown"). No engineering CRS is invented for it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["RegularGrid", "regular_grid", "grid_to_array", "write_geotiff", "write_geopackage", "crs_or_none"]


def crs_or_none(crs: str | None) -> str | None:
    """``'EPSG:<code>'`` unchanged; ``'local'`` or None -> None (no CRS is written).

    Parameters
    ----------
    crs : str or None
        ``'EPSG:<code>'``, ``'local'`` or None.

    Returns
    -------
    str or None
        The EPSG string unchanged, or None for ``'local'``/None.
    """
    if crs is None or crs == "local":
        return None
    if not str(crs).upper().startswith("EPSG:"):
        raise ValueError(f"crs: expected 'EPSG:<code>' or 'local', got {crs!r}")
    return str(crs)


@dataclass
class RegularGrid:
    """A north-up lattice of cell centres.

    Attributes
    ----------
    xmin, ymax : centre of the top-left cell.
    dx, dy : cell size (positive).
    ncols, nrows : lattice size.
    col, row : column and row index of each input cell.
    """

    xmin: float
    ymax: float
    dx: float
    dy: float
    ncols: int
    nrows: int
    col: np.ndarray
    row: np.ndarray

    @property
    def transform(self):
        """rasterio/affine transform of the pixel corners."""
        from rasterio.transform import from_origin

        return from_origin(self.xmin - self.dx / 2, self.ymax + self.dy / 2, self.dx, self.dy)


def _spacing(v: np.ndarray) -> float:
    u = np.unique(v)
    if len(u) < 2:
        raise ValueError("grid: expected at least two distinct x and y values")
    d = np.diff(u)
    return float(f"{np.min(d[d > 1e-9 * max(1.0, np.abs(u).max())]):.10g}")  # drop float noise


def regular_grid(x, y, *, tolerance: float = 1e-3) -> RegularGrid:
    """Recover the regular lattice of cell centres ``x, y``.

    Parameters
    ----------
    x, y : array-like of float
        Cell-centre coordinates (equal length, coordinate units of the grid).
    tolerance : float, default 1e-3
        Largest allowed offset from the lattice, in cell sizes.

    Returns
    -------
    RegularGrid
        Lattice origin (top-left cell centre), cell size, shape and the column/row of each cell.

    Raises
    ------
    ValueError
        When a cell is off the lattice by more than ``tolerance`` cell sizes or two cells share
        a position (the grid is not regular; write a GeoPackage of points instead).
    """
    xv = np.asarray(x, float)
    yv = np.asarray(y, float)
    if xv.shape != yv.shape or xv.size == 0:
        raise ValueError(f"grid: expected equal-length non-empty x and y, got {xv.size} and {yv.size}")
    dx, dy = _spacing(xv), _spacing(yv)
    xmin, ymax = float(xv.min()), float(yv.max())
    cf = (xv - xmin) / dx
    rf = (ymax - yv) / dy
    col, row = np.rint(cf).astype(np.int64), np.rint(rf).astype(np.int64)
    off = max(np.abs(cf - col).max(), np.abs(rf - row).max())
    if off > tolerance:
        raise ValueError(f"grid: cells are not on a regular lattice (largest offset {off:.3g} cells; "
                         f"spacing {dx:.6g} x {dy:.6g})")
    ncols, nrows = int(col.max()) + 1, int(row.max()) + 1
    flat = row * ncols + col
    if len(np.unique(flat)) != len(flat):
        raise ValueError("grid: two or more cells share the same position")
    return RegularGrid(xmin, ymax, dx, dy, ncols, nrows, col, row)


def grid_to_array(grid: RegularGrid, values) -> np.ndarray:
    """Values of the grid's cells as a (nrows, ncols) float array, NaN where there is no cell.

    Parameters
    ----------
    grid : RegularGrid
        Lattice from :func:`regular_grid`.
    values : array-like of float
        One value per grid cell, in the order of the cells given to :func:`regular_grid`.

    Returns
    -------
    numpy.ndarray
        (nrows, ncols) float array, north-up, NaN where there is no cell.
    """
    v = np.asarray(values, float)
    if v.size != grid.col.size:
        raise ValueError(f"values: expected {grid.col.size} (one per grid cell), got {v.size}")
    a = np.full((grid.nrows, grid.ncols), np.nan)
    a[grid.row, grid.col] = v
    return a


def write_geotiff(path, *, x, y, bands: dict[str, np.ndarray], crs: str | None) -> Path:
    """Write ``bands`` (name -> values per cell) as a float32 GeoTIFF (one band each, NaN nodata).

    Band names are stored as band descriptions. ``crs`` is an EPSG string or None/'local' (no
    CRS written; see the module notes). Returns the path.

    Parameters
    ----------
    path : str or Path
        Output file; parent folders are created.
    x, y : array-like of float
        Cell-centre coordinates of a regular grid.
    bands : dict of str to array-like
        Band name -> one value per cell.
    crs : str or None
        ``'EPSG:<code>'``, or None/``'local'`` for no CRS.

    Returns
    -------
    Path
        The path.
    """
    import rasterio

    if not bands:
        raise ValueError("bands: expected at least one band")
    g = regular_grid(x, y)
    arrays = [grid_to_array(g, v).astype("float32") for v in bands.values()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": g.nrows, "width": g.ncols, "count": len(arrays), "dtype": "float32",
               "transform": g.transform, "nodata": np.nan, "compress": "deflate"}
    c = crs_or_none(crs)
    if c is not None:
        profile["crs"] = c
    with rasterio.open(path, "w", **profile) as dst:
        for i, (name, a) in enumerate(zip(bands, arrays), start=1):
            dst.write(a, i)
            dst.set_band_description(i, str(name))
    return path


def write_geopackage(path, layers: dict[str, pd.DataFrame], *, crs: str | None, x: str = "x", y: str = "y") -> Path:
    """Write point layers (DataFrames with ``x``/``y`` columns) to one GeoPackage (pyogrio engine).

    ``crs`` is an EPSG string, or None/'local' for layers without a CRS. An existing file is
    replaced. Returns the path.

    Parameters
    ----------
    path : str or Path
        Output file; parent folders are created, an existing file is replaced.
    layers : dict of str to DataFrame
        Layer name -> points table with coordinate columns ``x`` and ``y``.
    crs : str or None
        ``'EPSG:<code>'``, or None/``'local'`` for no CRS.
    x, y : str, default "x", "y"
        Names of the coordinate columns.

    Returns
    -------
    Path
        The path.
    """
    import geopandas as gpd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    c = crs_or_none(crs)
    for name, df in layers.items():
        if x not in df.columns or y not in df.columns:
            raise ValueError(f"layer {name!r}: expected columns {x!r} and {y!r}, got {list(df.columns)}")
        gdf = gpd.GeoDataFrame(df.copy(), geometry=gpd.points_from_xy(df[x], df[y]), crs=c)
        with warnings.catch_warnings():
            # a local coordinate system is written without a CRS on purpose (see the module notes)
            warnings.filterwarnings("ignore", message=".*'crs' was not provided.*", category=UserWarning)
            gdf.to_file(path, layer=name, driver="GPKG", engine="pyogrio")
    return path
