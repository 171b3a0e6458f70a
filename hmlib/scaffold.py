"""``hmlib new-region``: a starter params file guessed from a CSV's columns.

The guesses (metal columns, coordinates, CRS, id column, covariates) are written as YAML with
comments for the user to check; nothing is guessed silently: every guess is marked.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import HmlibError

__all__ = ["ELEMENT_NAMES", "guess_metals", "guess_coordinates", "starter_params"]

ELEMENT_NAMES = {
    "cadmium": "Cd", "lead": "Pb", "arsenic": "As", "mercury": "Hg", "copper": "Cu", "zinc": "Zn",
    "chromium": "Cr", "nickel": "Ni", "cobalt": "Co", "manganese": "Mn", "vanadium": "V", "antimony": "Sb",
    "thallium": "Tl", "molybdenum": "Mo", "selenium": "Se", "barium": "Ba", "iron": "Fe", "aluminium": "Al",
    "aluminum": "Al", "scandium": "Sc", "titanium": "Ti", "silver": "Ag", "tin": "Sn", "uranium": "U",
}
_SYMBOLS = set(ELEMENT_NAMES.values())
_X = ["x", "xloc", "easting", "east", "lon", "long", "longitude", "x_coord", "xcoord", "utm_x"]
_Y = ["y", "yloc", "northing", "north", "lat", "latitude", "y_coord", "ycoord", "utm_y"]
_ID = ["sample_id", "id", "sample", "site_id", "site", "station", "code"]


def _norm(c: str) -> str:
    return re.sub(r"[^a-z0-9]", "", c.lower())


def guess_metals(columns) -> dict[str, str]:
    """Map metal symbols to columns named like ``Cd``, ``cd_mg_kg``, ``cadmium`` or ``Pb (mg/kg)``."""
    out: dict[str, str] = {}
    for c in columns:
        head = re.split(r"[\s_(\[/.]", c.strip())[0]
        sym = None
        if head in _SYMBOLS:
            sym = head
        elif head.capitalize() in _SYMBOLS and len(head) <= 2:
            sym = head.capitalize()
        elif head.lower() in ELEMENT_NAMES:
            sym = ELEMENT_NAMES[head.lower()]
        if sym and sym not in out:
            out[sym] = c
    return out


def guess_coordinates(df: pd.DataFrame) -> tuple[str | None, str | None]:
    cols = {_norm(c): c for c in df.columns}
    x = next((cols[k] for k in map(_norm, _X) if k in cols), None)
    y = next((cols[k] for k in map(_norm, _Y) if k in cols), None)
    if x and y and _norm(x) in ("x", "xloc") and "long" in cols and "lat" in cols:
        return x, y  # prefer projected/local over geographic when both exist
    return x, y


def starter_params(name: str, data_csv: str | Path, *, grid: str | Path | None = None) -> str:
    """YAML text of a starter params file for the samples in ``data_csv``."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise HmlibError(f"region name {name!r}: expected lower case letters, digits and underscores")
    path = Path(data_csv)
    if not path.is_file():
        raise HmlibError(f"{path}: file not found")
    df = pd.read_csv(path)
    metals = guess_metals(df.columns)
    if not metals:
        raise HmlibError(f"{path}: no column looks like a metal (expected names such as Cd, Pb, cadmium, Zn_mg_kg)")
    x, y = guess_coordinates(df)
    if not (x and y):
        raise HmlibError(f"{path}: no coordinate columns found (expected x/y, lon/lat, easting/northing); "
                         f"columns are {list(df.columns)}")
    idc = next((c for c in df.columns if _norm(c) in map(_norm, _ID)), None)
    xs, ys = pd.to_numeric(df[x], errors="coerce"), pd.to_numeric(df[y], errors="coerce")
    geographic = xs.between(-180, 180).all() and ys.between(-90, 90).all() and _norm(x) in ("lon", "long", "longitude")
    used = set(metals.values()) | {x, y, idc}
    covs = [c for c in df.columns if c not in used and c not in ("long", "lat", "lon")]
    cats = [c for c in covs if not pd.api.types.is_numeric_dtype(df[c]) or df[c].nunique() <= 6]
    pad_x, pad_y = 0.05 * (xs.max() - xs.min()), 0.05 * (ys.max() - ys.min())
    rel = path.as_posix()
    lines = [
        f"# Starter parameters for region '{name}', guessed by `hmlib new-region` from {path.name}.",
        "# CHECK every line marked GUESS, then run: hmlib validate params/" + f"{name}.yml",
        "region:",
        f"  id: {name}",
        f"  title: \"{name.replace('_', ' ').title()} heavy metal assessment\"   # edit",
        "  description: \"\"",
        "data:",
        f"  samples: {rel}",
    ]
    if grid:
        lines.append(f"  grid: {Path(grid).as_posix()}")
    lines += [
        f"  id_column: {idc or 'sample_id'}" + ("" if idc else "   # GUESS: no id column found; add one to the CSV"),
        f"  x_column: {x}   # GUESS",
        f"  y_column: {y}   # GUESS",
    ]
    if geographic:
        lines += ["  crs: \"EPSG:4326\"   # GUESS: coordinates look like degrees", "  coordinate_unit: degree"]
    else:
        b = [xs.min() - pad_x, ys.min() - pad_y, xs.max() + pad_x, ys.max() + pad_y]
        lines += ["  crs: local   # GUESS: replace with the EPSG code of the coordinates, e.g. \"EPSG:32650\"",
                  f"  coordinate_bounds: [{', '.join(f'{v:.6g}' for v in b)}]   # data extent + 5%",
                  "  coordinate_unit: m   # GUESS"]
    lines += [f"  covariates: [{', '.join(covs)}]   # GUESS: drop what is not a covariate",
              f"  categorical: [{', '.join(cats)}]   # GUESS",
              "media:",
              "  soil: {unit: mg/kg}   # GUESS: medium and unit of the concentrations",
              "metals:   # GUESS: symbol: column"]
    lines += [f"  {sym}: {col}" for sym, col in metals.items()]
    lines += ["non_detects:", "  substitution: half_dl", "  imputation: none",
              "references:", "  background: UCC_RudnickGao2014   # see `hmlib references`",
              "  guideline: null", "seed: 20240601", "stages:", "  data_quality: {}", ""]
    return "\n".join(lines)
