"""Reference constants kept as cited data files.

Every reference set is a CSV file under ``hmlib/data/reference/<kind>/`` named
``<Set>_<AuthorYear>.csv`` (the pyrolite convention). Each row carries a ``source`` column
(citation, with DOI or URL where one exists); a row without a source is an error. Values
carry their unit in a ``unit`` column and are converted on load with :mod:`hmlib.units`.

Kinds and their required columns are listed in :data:`REQUIRED_COLUMNS` (background,
guideline, toxic_response, toxicity, exposure, exposure_distribution, water_standard,
index_classes, mobility_sign, ...); ``hmlib references`` lists the sets shipped. Concentration
kinds (:data:`CONCENTRATION_KINDS`) have their ``unit`` checked and converted on load.

Stage modules add kinds by placing files in a new folder and registering the required
columns in :data:`REQUIRED_COLUMNS`.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from .errors import ReferenceDataError
from .units import convert, dimension, normalize_unit

__all__ = [
    "REQUIRED_COLUMNS",
    "reference_dir",
    "list_reference_sets",
    "load_reference",
    "background_values",
    "guideline_values",
]

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "background": ("metal", "value", "unit", "medium", "source"),
    "guideline": ("metal", "threshold_name", "value", "unit", "medium", "source"),
    "toxic_response": ("metal", "tr", "source"),
    "toxicity": ("metal", "source"),
    "exposure": ("parameter", "receptor", "value", "unit", "source"),
    "exposure_distribution": ("parameter", "receptor", "distribution", "p1", "p2", "p3", "unit", "basis", "source"),
    "water_standard": ("metal", "value", "unit", "source"),
    "index_classes": ("index", "scheme", "rank", "class", "lower", "upper", "closed", "source"),
    "mobility_sign": ("metal", "feature", "sign", "source"),
    **{"dispersion": ("terrain", "stability", "axis", "a", "b", "p", "source"), "deposition": ("metal", "dry_deposition_velocity_m_s", "scavenging_coefficient_s", "source"), "agricultural_input": ("land_use", "pathway", "metal", "value", "unit", "source"), "partition_coefficient": ("metal", "value", "unit", "source"), "transfer_factor": ("metal", "crop", "value", "source"), "enrichment_ratio": ("metal", "value", "source")},  # accumulation stage
}


# kinds whose ``unit`` column is a concentration unit, checked and converted with hmlib.units
CONCENTRATION_KINDS = {"background", "guideline", "water_standard"}


def reference_dir() -> Path:
    """Folder holding the reference CSV files shipped with hmlib."""
    return Path(str(resources.files("hmlib") / "data" / "reference"))


def list_reference_sets(kind: str | None = None) -> pd.DataFrame:
    """Table of available reference sets: kind, name, file, n_rows, sources."""
    rows = []
    base = reference_dir()
    kinds = [kind] if kind else sorted(p.name for p in base.iterdir() if p.is_dir())
    for k in kinds:
        folder = base / k
        if not folder.is_dir():
            raise ReferenceDataError(f"unknown reference kind {k!r}; expected one of {sorted(REQUIRED_COLUMNS)}")
        for f in sorted(folder.glob("*.csv")):
            df = pd.read_csv(f, comment="#")
            rows.append({
                "kind": k, "name": f.stem, "file": str(f.relative_to(base)), "n_rows": len(df),
                "sources": "; ".join(sorted(set(df["source"].dropna().astype(str))))[:300] if "source" in df else "",
            })
    return pd.DataFrame(rows, columns=["kind", "name", "file", "n_rows", "sources"])


@lru_cache(maxsize=None)
def _read(kind: str, name: str) -> pd.DataFrame:
    folder = reference_dir() / kind
    path = folder / f"{name}.csv"
    if not path.is_file():
        avail = sorted(p.stem for p in folder.glob("*.csv")) if folder.is_dir() else []
        raise ReferenceDataError(f"no {kind} reference set named {name!r}; available: {avail}")
    df = pd.read_csv(path, comment="#")
    req = REQUIRED_COLUMNS.get(kind, ("source",))
    missing = [c for c in req if c not in df.columns]
    if missing:
        raise ReferenceDataError(f"{path}: missing required column(s) {missing}; expected {list(req)}")
    bad = df["source"].isna() | (df["source"].astype(str).str.strip() == "")
    if bad.any():
        rows = [int(i) + 2 for i in df.index[bad]]
        raise ReferenceDataError(f"{path}: rows {rows} have no source; every reference value needs a citation")
    if "unit" in df.columns and kind in CONCENTRATION_KINDS:
        df["unit"] = [normalize_unit(u) for u in df["unit"]]  # raises on an unknown concentration unit
    return df


def load_reference(kind: str, name: str) -> pd.DataFrame:
    """Load reference set ``name`` of ``kind`` as a fresh DataFrame (a copy; safe to modify)."""
    return _read(kind, name).copy()


def background_values(name: str, medium: str = "soil", unit: str = "mg/kg") -> pd.Series:
    """Background concentration per metal from set ``name``, converted to ``unit``.

    Rows whose ``medium`` is ``medium`` or ``any`` and whose unit has the dimension of ``unit``
    (solid or dissolved) are used; none raises :class:`ReferenceDataError`. Returns a Series indexed by
    metal symbol, named ``'<name> (<unit>)'``.
    """
    df = load_reference("background", name)
    df = df[df["medium"].isin([medium, "any"]) & (df["unit"].map(dimension) == dimension(unit))]
    if df.empty:
        raise ReferenceDataError(f"background set {name!r} has no values for medium {medium!r}")
    vals = {r.metal: float(convert(float(r.value), r.unit, unit)) for r in df.itertuples()}
    return pd.Series(vals, name=f"{name} ({unit})", dtype=float)


def guideline_values(name: str, medium: str = "soil", unit: str = "mg/kg") -> pd.DataFrame:
    """Guideline thresholds of set ``name`` as rows (metal, threshold_name, value, ...) in ``unit``."""
    df = load_reference("guideline", name)
    df = df[df["medium"].isin([medium, "any"]) & (df["unit"].map(dimension) == dimension(unit))].copy()
    if df.empty:
        raise ReferenceDataError(f"guideline set {name!r} has no values for medium {medium!r}")
    df["value"] = [float(convert(float(v), u, unit)) for v, u in zip(df["value"], df["unit"])]
    df["unit"] = unit
    return df.reset_index(drop=True)
