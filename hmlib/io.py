"""Loading and validating a region's input data.

:func:`load_region` reads the CSV file(s) named in a region's params, checks every cell and
returns a :class:`RegionData`. All problems are collected and raised together as one
:class:`~hmlib.errors.DataError`; each names the file, the row number as shown in the file
(header = row 1), the column and the value.

Checks: required columns present; metal values numeric, non-negative, or non-detects
(``<0.05`` = censored at 0.05; a token such as ``ND`` = censored at the configured detection
limit); coordinates numeric and inside the CRS's valid range; ids unique per medium. Metal
values are converted to the canonical unit of their medium (mg/kg for solids, ug/L for water)
through :func:`hmlib.units.convert`; non-detects are substituted by the configured rule.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, DataIssue
from .params import RegionParams, load_params
from .units import canonical_unit, convert

__all__ = ["RegionData", "load_region", "parse_concentration", "file_sha256", "SUBSTITUTION_FACTORS"]

SUBSTITUTION_FACTORS = {"half_dl": 0.5, "dl": 1.0, "dl_sqrt2": 1.0 / np.sqrt(2.0), "zero": 0.0}
_MISSING_TOKENS = {"", "na", "nan", "n/a", "null", "none", "-"}
_LT = re.compile(r"^<\s*=?\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_concentration(text: str, *, nd_tokens, detection_limit: float | None):
    """Parse one concentration cell.

    Returns ``(value, censored, detection_limit, problem)``: value is NaN for a missing cell;
    for a non-detect, value is the detection limit and censored is True; ``problem`` is None
    or a message for a bad cell.
    """
    t = str(text).strip()
    if t.lower() in _MISSING_TOKENS:
        return np.nan, False, np.nan, None
    m = _LT.match(t)
    if m:
        dl = float(m.group(1))
        if dl <= 0:
            return np.nan, True, np.nan, "detection limit must be > 0"
        return dl, True, dl, None
    if t in nd_tokens or t.lower() in {x.lower() for x in nd_tokens}:
        if detection_limit is None:
            return np.nan, True, np.nan, ("non-detect without a detection limit: write it as '<DL' (e.g. '<0.05') "
                                          "or set non_detects.detection_limits for this metal")
        return float(detection_limit), True, float(detection_limit), None
    try:
        v = float(t.replace(",", ".")) if t.count(",") == 1 and "." not in t else float(t)
    except ValueError:
        return np.nan, False, np.nan, "not a number (expected a number, '<DL' for a non-detect, or blank)"
    if not np.isfinite(v):
        return np.nan, False, np.nan, "not a finite number"
    if v < 0:
        return np.nan, False, np.nan, ("negative concentration; a non-detect is written '<DL', "
                                       "and sentinel values such as -999 are not accepted")
    return v, False, np.nan, None


@dataclass
class RegionData:
    """A region's validated input data.

    Attributes
    ----------
    params : RegionParams
    samples : DataFrame, one row per (sample_id, medium): sample_id, medium, x, y, plus site_id,
        group and covariate columns when configured, and ``source_file``/``source_row``.
    concentrations : long DataFrame: sample_id, medium, metal, value (canonical unit), unit,
        censored, detection_limit, imputed, reported (value as in the file, its own unit).
    grid : DataFrame of prediction cells (x, y, covariates) or None.
    files : dict name -> path of every input file read.
    missing : DataFrame of missing metal values (medium, metal, n_missing, imputation).
    """

    params: RegionParams
    samples: pd.DataFrame
    concentrations: pd.DataFrame
    grid: pd.DataFrame | None
    files: dict[str, str] = field(default_factory=dict)
    missing: pd.DataFrame | None = None

    @property
    def metals(self) -> list[str]:
        return list(self.params.metals)

    @property
    def media(self) -> list[str]:
        return list(self.params.media)

    def unit(self, medium: str) -> str:
        """Canonical unit of ``medium``'s concentrations (mg/kg for solids, ug/L for water)."""
        return canonical_unit(self.params.media[medium].unit)

    def wide(self, medium: str | None = None, *, values: str = "value") -> pd.DataFrame:
        """Concentrations of one medium as samples x metals (canonical unit; ``.attrs['unit']``)."""
        medium = medium or self.media[0]
        c = self.concentrations[self.concentrations["medium"] == medium]
        w = c.pivot(index="sample_id", columns="metal", values=values)
        w = w.reindex(columns=[m for m in self.metals if m in w.columns])
        order = self.samples.loc[self.samples["medium"] == medium, "sample_id"]
        w = w.reindex(order.to_numpy())
        w.columns.name = None
        w.attrs["unit"] = self.unit(medium)
        w.attrs["medium"] = medium
        return w

    def sites(self, medium: str | None = None) -> pd.DataFrame:
        """Sample attributes (coordinates, covariates) of one medium, indexed by sample_id."""
        medium = medium or self.media[0]
        return self.samples[self.samples["medium"] == medium].set_index("sample_id")

    def input_hashes(self) -> dict[str, str]:
        return {k: file_sha256(v) for k, v in self.files.items()}


@lru_cache(maxsize=32)
def _crs_bounds(crs: str):
    """Valid (xmin, ymin, xmax, ymax) of an EPSG CRS in its own coordinates (None if unknown)."""
    from pyproj import CRS, Transformer

    c = CRS.from_user_input(crs)
    if c.is_geographic:
        return (-180.0, -90.0, 180.0, 90.0)
    aou = c.area_of_use
    if aou is None:
        return None
    t = Transformer.from_crs("EPSG:4326", c, always_xy=True)
    xmin, ymin, xmax, ymax = t.transform_bounds(aou.west, aou.south, aou.east, aou.north, densify_pts=21)
    # tolerate a margin of 10% of the extent: areas of use are drawn tight to borders
    dx, dy = 0.1 * (xmax - xmin), 0.1 * (ymax - ymin)
    return (xmin - dx, ymin - dy, xmax + dx, ymax + dy)


def _read_csv(path: Path, encoding: str, issues: list[DataIssue]) -> pd.DataFrame | None:
    if not path.is_file():
        issues.append(DataIssue(str(path), None, None, None, "file not found"))
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
    except Exception as e:  # noqa: BLE001 - reported to the user with the file name
        issues.append(DataIssue(str(path), None, None, None, f"cannot be read as CSV: {e}"))
        return None
    df.columns = [c.strip() for c in df.columns]
    dup = df.columns[df.columns.duplicated()].tolist()
    if dup:
        issues.append(DataIssue(str(path), 1, dup[0], None, "column name appears more than once in the header"))
    return df


def _check_columns(df, path, required, issues) -> bool:
    missing = [c for c in required if c not in df.columns]
    for c in missing:
        issues.append(DataIssue(str(path), 1, c, None,
                                f"required column missing from the header (columns present: {list(df.columns)})"))
    return not missing


def _parse_coords(df, path, p: RegionParams, issues):
    xs, ys = {}, {}
    bounds = p.data.coordinate_bounds
    if bounds is None and p.data.crs != "local":
        bounds = _crs_bounds(p.data.crs)
    for col, store in ((p.data.x_column, xs), (p.data.y_column, ys)):
        for i, raw in df[col].items():
            row = int(i) + 2
            t = str(raw).strip()
            try:
                v = float(t)
                if not np.isfinite(v):
                    raise ValueError
            except ValueError:
                issues.append(DataIssue(str(path), row, col, raw, "coordinate is not a finite number"))
                continue
            store[i] = v
    if bounds is not None:
        xmin, ymin, xmax, ymax = bounds
        where = f"CRS {p.data.crs}" if p.data.coordinate_bounds is None else "data.coordinate_bounds"
        for i, v in xs.items():
            if not xmin <= v <= xmax:
                issues.append(DataIssue(str(path), int(i) + 2, p.data.x_column, v,
                                        f"x coordinate outside the valid range [{xmin:.6g}, {xmax:.6g}] of {where}"))
        for i, v in ys.items():
            if not ymin <= v <= ymax:
                issues.append(DataIssue(str(path), int(i) + 2, p.data.y_column, v,
                                        f"y coordinate outside the valid range [{ymin:.6g}, {ymax:.6g}] of {where}"))
    return pd.Series(xs, dtype=float).reindex(df.index), pd.Series(ys, dtype=float).reindex(df.index)


def _load_table(path: Path, medium_fixed: str | None, p: RegionParams, issues: list[DataIssue]):
    d = p.data
    df = _read_csv(path, d.encoding, issues)
    if df is None:
        return None, None
    # with one file per medium, covariates may be measured in some media only (salinity in water)
    covs_required = [] if isinstance(p.data.samples, dict) else list(d.covariates)
    required = [d.id_column, d.x_column, d.y_column, *p.metals.values(), *covs_required]
    for c in (d.medium_column if medium_fixed is None else None, d.site_column, d.group_column):
        if c:
            required.append(c)
    if not _check_columns(df, path, list(dict.fromkeys(required)), issues):
        return None, None
    fname = str(path)
    # medium
    if medium_fixed is None and d.medium_column:
        med = df[d.medium_column].str.strip()
        for i, m in med.items():
            if m not in p.media:
                issues.append(DataIssue(fname, int(i) + 2, d.medium_column, m,
                                        f"unknown medium; expected one of {list(p.media)}"))
    else:
        med = pd.Series(medium_fixed or next(iter(p.media)), index=df.index)
    # ids
    ids = df[d.id_column].str.strip()
    for i, v in ids.items():
        if v == "":
            issues.append(DataIssue(fname, int(i) + 2, d.id_column, v, "empty sample id"))
    dup_mask = pd.DataFrame({"id": ids, "medium": med}).duplicated(keep=False) & (ids != "")
    for (sid, _m), grp in pd.DataFrame({"id": ids, "medium": med})[dup_mask].groupby(["id", "medium"]):
        rows = [int(i) + 2 for i in grp.index]
        for r in rows[1:]:
            issues.append(DataIssue(fname, r, d.id_column, sid, f"duplicate sample id (first at row {rows[0]})"))
    x, y = _parse_coords(df, path, p, issues)
    samples = pd.DataFrame({"sample_id": ids, "medium": med, "x": x, "y": y})
    if d.site_column:
        samples["site_id"] = df[d.site_column].str.strip()
    if d.group_column:
        samples["group"] = df[d.group_column].str.strip()
    for c in d.covariates:
        if c not in df.columns:  # one file per medium: a covariate measured in another medium only
            samples[c] = np.nan
            continue
        col = df[c].str.strip()
        col = col.where(~col.isin(["", "NA", "NaN", "nan", "na"]))
        if c in d.categorical:
            samples[c] = col
        else:
            num = pd.to_numeric(col, errors="coerce")
            bad = num.isna() & col.notna()
            for i in bad[bad].index:
                issues.append(DataIssue(fname, int(i) + 2, c, df.at[i, c],
                                        "covariate is not a number (list it under data.categorical if it is a class)"))
            samples[c] = num
    samples["source_file"] = fname
    samples["source_row"] = df.index.to_numpy() + 2
    # concentrations
    nd = p.non_detects
    recs = []
    for metal, col in p.metals.items():
        for i, raw in df[col].items():
            medium = med.at[i]
            if medium not in p.media:
                continue
            unit = p.media[medium].unit
            dl_cfg = nd.detection_limits.get(metal)
            val, cens, dl, problem = parse_concentration(raw, nd_tokens=nd.tokens, detection_limit=dl_cfg)
            if problem:
                issues.append(DataIssue(fname, int(i) + 2, col, raw, problem))
                continue
            recs.append((ids.at[i], medium, metal, val, unit, cens, dl, raw))
    conc = pd.DataFrame(recs, columns=["sample_id", "medium", "metal", "reported", "unit_reported", "censored",
                                       "detection_limit", "raw"])
    return samples, conc


def load_region(params: RegionParams | str | Path) -> RegionData:
    """Load and validate the data of a region.

    Parameters
    ----------
    params : validated :class:`RegionParams` or the path of a params YAML file.

    Raises
    ------
    DataError
        Listing every bad cell with file, row, column and value.
    """
    p = load_params(params) if not isinstance(params, RegionParams) else params
    issues: list[DataIssue] = []
    files: dict[str, str] = {}
    tables = []
    if isinstance(p.data.samples, dict):
        for medium, rel in p.data.samples.items():
            path = p.resolve(rel)
            files[f"samples:{medium}"] = str(path)
            tables.append(_load_table(path, medium, p, issues))
    else:
        path = p.resolve(p.data.samples)
        files["samples"] = str(path)
        tables.append(_load_table(path, None, p, issues))
    grid = None
    if p.data.grid:
        gpath = p.resolve(p.data.grid)
        files["grid"] = str(gpath)
        g = _read_csv(gpath, p.data.encoding, issues)
        if g is not None and _check_columns(g, gpath, [p.data.x_column, p.data.y_column], issues):
            gx, gy = _parse_coords(g, gpath, p, issues)
            grid = g.drop(columns=[p.data.x_column, p.data.y_column]).copy()
            for c in grid.columns:
                if c in p.data.categorical:
                    continue
                num = pd.to_numeric(grid[c], errors="coerce")
                if num.notna().sum() == (grid[c].str.strip() != "").sum():
                    grid[c] = num
            grid.insert(0, "y", gy)
            grid.insert(0, "x", gx)
    if issues:
        raise DataError(issues)
    samples = pd.concat([t[0] for t in tables], ignore_index=True)
    conc = pd.concat([t[1] for t in tables], ignore_index=True)
    # unit conversion to the canonical unit of each medium, then non-detect substitution
    conc["unit"] = [canonical_unit(u) for u in conc["unit_reported"]]
    value = np.empty(len(conc))
    dl = np.empty(len(conc))
    for (u_from, u_to), idx in conc.groupby(["unit_reported", "unit"]).groups.items():
        value[conc.index.get_indexer(idx)] = convert(conc.loc[idx, "reported"].to_numpy(float), u_from, u_to)
        dl[conc.index.get_indexer(idx)] = convert(conc.loc[idx, "detection_limit"].to_numpy(float), u_from, u_to)
    factor = SUBSTITUTION_FACTORS[p.non_detects.substitution]
    conc["detection_limit"] = dl
    conc["value"] = np.where(conc["censored"], dl * factor, value)
    conc["imputed"] = False
    miss_rows = []
    for (medium, metal), grp in conc.groupby(["medium", "metal"], sort=False):
        n_miss = int(grp["value"].isna().sum())
        miss_rows.append({"medium": medium, "metal": metal, "n_missing": n_miss,
                          "imputation": p.non_detects.imputation if n_miss else "none needed"})
        if n_miss and p.non_detects.imputation == "median":
            med = grp["value"].median()
            idx = grp.index[grp["value"].isna()]
            conc.loc[idx, "value"] = med
            conc.loc[idx, "imputed"] = True
    if p.non_detects.imputation == "drop":
        bad = conc.loc[conc["value"].isna(), ["sample_id", "medium"]].drop_duplicates()
        key = set(map(tuple, bad.to_numpy()))
        conc = conc[[(s, m) not in key for s, m in zip(conc["sample_id"], conc["medium"])]]
        samples = samples[[(s, m) not in key for s, m in zip(samples["sample_id"], samples["medium"])]]
    conc = conc[["sample_id", "medium", "metal", "value", "unit", "censored", "detection_limit", "imputed",
                 "reported", "unit_reported", "raw"]].reset_index(drop=True)
    return RegionData(params=p, samples=samples.reset_index(drop=True), concentrations=conc, grid=grid,
                      files=files, missing=pd.DataFrame(miss_rows))
