"""``hmlib new-region``: a starter params file guessed from a CSV's columns.

The guesses (metal columns, coordinates, CRS, id column, covariates) are written as YAML with
comments for the user to check; nothing is guessed silently: every guess is marked. The CSV is
read by the same checked reader as a region's data (:func:`hmlib.io.read_table`), so an empty,
undecodable or wrongly delimited file gets the same precise message; the file must lie inside
the project folder (or a ``--data-root``) and every column name is quoted in the YAML.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from .errors import DataError, InputError, short_repr

__all__ = ["ELEMENT_NAMES", "guess_metals", "guess_coordinates", "starter_params", "project_folder"]

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


def project_folder(params_dir: str | Path) -> Path:
    """The project folder of a params folder: its parent when it is called ``params``, else itself.

    Mirrors :func:`hmlib.params.load_params`, which resolves data paths against this folder.
    """
    d = Path(params_dir).resolve()
    return d.parent if d.name == "params" else d


def _q(text: str) -> str:
    """A YAML scalar for ``text`` (JSON strings are valid YAML): column names may hold ':', '#' or quotes."""
    return json.dumps(str(text), ensure_ascii=False)


def _relative_to_project(path: Path, base: Path, roots: tuple[str, ...], option: str) -> str:
    full = path.resolve()
    if full.is_relative_to(base):
        return Path(os.path.relpath(full, base)).as_posix()
    if any(full.is_relative_to(Path(r).resolve()) for r in roots):
        return full.as_posix()
    raise InputError(f"{option}: got {short_repr(str(path))}; expected a file inside the project folder {base} "
                     "(pass --data-root FOLDER to read data from another folder)")


def starter_params(name: str, data_csv: str | Path, *, grid: str | Path | None = None,
                   base_dir: str | Path | None = None, data_roots: tuple[str, ...] = (),
                   encoding: str = "utf-8", delimiter: str = ",") -> str:
    """YAML text of a starter params file for the samples in ``data_csv``.

    Parameters
    ----------
    name : str
        Region id (lower case letters, digits, underscores).
    data_csv : str or Path
        The samples CSV.
    grid : str or Path, optional
        A prediction grid CSV.
    base_dir : str or Path, optional
        The project folder data paths are written relative to (default: the current folder).
    data_roots : tuple of str
        Further folders the CSVs may come from (``--data-root``).
    encoding, delimiter : str
        How the CSV is written (``data.encoding``, ``data.delimiter``).

    Returns
    -------
    str
        The YAML text, every guess marked ``GUESS``.

    Raises
    ------
    InputError
        A bad name, a file outside the project, or a CSV without metal or coordinate columns.
    DataError
        A CSV that cannot be read (empty, undecodable, wrong delimiter, duplicate header names).
    """
    from .io import read_table
    from .params import DataSpec

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise InputError(f"region name {short_repr(name)}: expected lower case letters, digits and underscores")
    try:
        spec = DataSpec(samples="x", x_column="x", y_column="y", crs="EPSG:4326", encoding=encoding,
                        delimiter=delimiter)
    except Exception as e:  # noqa: BLE001 - pydantic's ValidationError: report the two options
        raise InputError(f"--encoding {short_repr(encoding)} / --delimiter {short_repr(delimiter)}: expected a "
                         f"known encoding (utf-8, latin-1, cp1252...) and one of ',', ';', tab or '|' ({type(e).__name__})") from None
    base = Path(base_dir).resolve() if base_dir is not None else Path.cwd().resolve()
    path = Path(data_csv)
    if not path.is_file():
        raise InputError(f"--data: {path}: file not found" if not path.is_dir() else f"--data: {path}: is a folder; expected a CSV file")
    rel = _relative_to_project(path, base, data_roots, "--data")
    grid_rel = _relative_to_project(Path(grid), base, data_roots, "--grid") if grid else None
    if grid and not Path(grid).is_file():
        raise InputError(f"--grid: {grid}: file not found")
    issues: list = []
    df = read_table(path, encoding=spec.encoding, delimiter=spec.delimiter, issues=issues)
    if df is None:
        raise DataError(issues)
    metals = guess_metals(df.columns)
    if not metals:
        raise InputError(f"{path}: no column looks like a metal (expected names such as Cd, Pb, cadmium, Zn_mg_kg)")
    x, y = guess_coordinates(df)
    if not (x and y):
        raise InputError(f"{path}: no coordinate columns found (expected x/y, lon/lat, easting/northing); "
                         f"columns are {short_repr(', '.join(df.columns), limit=300)[1:-1]}")
    idc = next((c for c in df.columns if _norm(c) in map(_norm, _ID)), None)
    xs, ys = pd.to_numeric(df[x], errors="coerce"), pd.to_numeric(df[y], errors="coerce")
    if xs.notna().sum() == 0 or ys.notna().sum() == 0:
        raise InputError(f"{path}: the coordinate columns {x!r} and {y!r} hold no numbers; expected x/y, "
                         "lon/lat or easting/northing values")
    geographic = xs.between(-180, 180).all() and ys.between(-90, 90).all() and _norm(x) in ("lon", "long", "longitude")
    used = set(metals.values()) | {x, y, idc}
    covs = [c for c in df.columns if c not in used and c not in ("long", "lat", "lon")]

    def numeric(c):
        s = df[c].where(df[c] != "")
        return pd.to_numeric(s, errors="coerce").notna().sum() == s.notna().sum()

    cats = [c for c in covs if not numeric(c) or df[c].nunique() <= 6]
    pad_x, pad_y = 0.05 * (xs.max() - xs.min()) or 1.0, 0.05 * (ys.max() - ys.min()) or 1.0
    lines = [
        f"# Starter parameters for region '{name}', guessed by `hmlib new-region` from {path.name}.",
        "# CHECK every line marked GUESS, then run: hmlib validate params/" + f"{name}.yml",
        "region:",
        f"  id: {name}",
        f"  title: \"{name.replace('_', ' ').title()} heavy metal assessment\"   # edit",
        "  description: \"\"",
        "data:",
        f"  samples: {_q(rel)}",
    ]
    if grid_rel:
        lines.append(f"  grid: {_q(grid_rel)}")
    if spec.encoding != "utf-8":
        lines.append(f"  encoding: {_q(spec.encoding)}")
    if spec.delimiter != ",":
        lines.append(f"  delimiter: {_q(spec.delimiter)}")
    lines += [
        f"  id_column: {_q(idc or 'sample_id')}" + ("" if idc else "   # GUESS: no id column found; add one to the CSV"),
        f"  x_column: {_q(x)}   # GUESS",
        f"  y_column: {_q(y)}   # GUESS",
    ]
    if geographic:
        lines += ["  crs: \"EPSG:4326\"   # GUESS: coordinates look like degrees", "  coordinate_unit: degree"]
    else:
        b = [xs.min() - pad_x, ys.min() - pad_y, xs.max() + pad_x, ys.max() + pad_y]
        lines += ["  crs: local   # GUESS: replace with the EPSG code of the coordinates, e.g. \"EPSG:32650\"",
                  f"  coordinate_bounds: [{', '.join(f'{v:.6g}' for v in b)}]   # data extent + 5%",
                  "  coordinate_unit: m   # GUESS"]
    lines += [f"  covariates: [{', '.join(map(_q, covs))}]   # GUESS: drop what is not a covariate",
              f"  categorical: [{', '.join(map(_q, cats))}]   # GUESS",
              "media:",
              "  soil: {unit: mg/kg}   # GUESS: medium and unit of the concentrations",
              "metals:   # GUESS: symbol: column"]
    lines += [f"  {sym}: {_q(col)}" for sym, col in metals.items()]
    lines += ["non_detects:", "  substitution: half_dl", "  imputation: none",
              "references:", "  background: UCC_RudnickGao2014   # see `hmlib references`",
              "  guideline: null", "seed: 20240601", "stages:", "  data_quality: {}", ""]
    return "\n".join(lines)
