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

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
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
    "CATEGORY_CONDITIONS",
    "guideline_condition_variables",
    "applicable_guidelines",
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
    **{"dispersion": ("terrain", "stability", "axis", "a", "b", "p", "source"), "deposition": ("metal", "dry_deposition_velocity_m_s", "scavenging_coefficient_s", "source"), "agricultural_input": ("land_use", "pathway", "metal", "value", "unit", "source"), "partition_coefficient": ("metal", "value", "unit", "source"), "transfer_factor": ("metal", "crop", "value", "source"), "enrichment_ratio": ("metal", "value", "source"), "soil_layer": ("parameter", "value", "unit", "source")},  # accumulation stage
}


# kinds whose ``unit`` column is a concentration unit, checked and converted with hmlib.units
CONCENTRATION_KINDS = {"background", "guideline", "water_standard"}


def reference_dir() -> Path:
    """Folder holding the reference CSV files shipped with hmlib.

    Returns
    -------
    pathlib.Path
        Path of ``hmlib/data/reference``.
    """
    return Path(str(resources.files("hmlib") / "data" / "reference"))


def list_reference_sets(kind: str | None = None) -> pd.DataFrame:
    """Table of available reference sets: kind, name, file, n_rows, sources.

    Parameters
    ----------
    kind : str or None, optional
        Reference kind (sub-folder, e.g. ``'background'``, ``'guideline'``); None lists all kinds.

    Returns
    -------
    pandas.DataFrame
        One row per CSV file with columns kind, name, file, n_rows, sources.
    """
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


@cache
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
        raise ReferenceDataError(f"{path}: missing the required {'column' if len(missing) == 1 else 'columns'} "
                                 f"{', '.join(missing)}; expected the columns {', '.join(req)}")
    bad = df["source"].isna() | (df["source"].astype(str).str.strip() == "")
    if bad.any():
        rows = [int(i) + 2 for i in df.index[bad]]
        raise ReferenceDataError(f"{path}: rows {rows} have no source; every reference value needs a citation")
    if "unit" in df.columns and kind in CONCENTRATION_KINDS:
        df["unit"] = [normalize_unit(u) for u in df["unit"]]  # raises on an unknown concentration unit
    return df


def load_reference(kind: str, name: str) -> pd.DataFrame:
    """Load reference set ``name`` of ``kind`` as a fresh DataFrame (a copy; safe to modify).

    Parameters
    ----------
    kind : str
        Reference kind (e.g. ``'background'``, ``'guideline'``).
    name : str
        Name of the set (CSV file stem).

    Returns
    -------
    pandas.DataFrame
        Copy of the reference table.
    """
    return _read(kind, name).copy()


def background_values(name: str, medium: str = "soil", unit: str = "mg/kg") -> pd.Series:
    """Background concentration per metal from set ``name``, converted to ``unit``.

    Rows whose ``medium`` is ``medium`` or ``any`` and whose unit has the dimension of ``unit``
    (solid or dissolved) are used; none raises :class:`ReferenceDataError`. Returns a Series indexed by
    metal symbol, named ``'<name> (<unit>)'``.

    Parameters
    ----------
    name : str
        Name of the background set.
    medium : str, default 'soil'
        Medium to select (rows with medium ``'any'`` are also used).
    unit : str, default 'mg/kg'
        Unit to convert values to.

    Returns
    -------
    pandas.Series
        Background concentration (in ``unit``) indexed by metal symbol.
    """
    df = load_reference("background", name)
    df = df[df["medium"].isin([medium, "any"]) & (df["unit"].map(dimension) == dimension(unit))]
    if df.empty:
        raise ReferenceDataError(f"background set {name!r} has no values for medium {medium!r}")
    vals = {r.metal: float(convert(float(r.value), r.unit, unit)) for r in df.itertuples()}
    return pd.Series(vals, name=f"{name} ({unit})", dtype=float)


def guideline_values(name: str, medium: str = "soil", unit: str = "mg/kg") -> pd.DataFrame:
    """Guideline thresholds of set ``name`` as rows (metal, threshold_name, value, ...) in ``unit``.

    Parameters
    ----------
    name : str
        Name of the guideline set.
    medium : str, default 'soil'
        Medium to select (rows with medium ``'any'`` are also used).
    unit : str, default 'mg/kg'
        Unit to convert values to.

    Returns
    -------
    pandas.DataFrame
        Guideline rows (metal, threshold_name, value, unit, conditions, ...) with ``value`` in ``unit``.
    """
    df = load_reference("guideline", name)
    df = df[df["medium"].isin([medium, "any"]) & (df["unit"].map(dimension) == dimension(unit))].copy()
    if df.empty:
        raise ReferenceDataError(f"guideline set {name!r} has no values for medium {medium!r}")
    df["value"] = [float(convert(float(v), u, unit)) for v, u in zip(df["value"], df["unit"])]
    df["unit"] = unit
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# conditional guideline values (land use, pH class, ...)
#: categorical condition columns a guideline set may carry; a row value ``all`` applies to every class
CATEGORY_CONDITIONS = ("land_use",)
_VAR_LABEL = {"ph": "pH", "land_use": "land use", "om": "organic matter", "clay": "clay"}


def guideline_condition_variables(guidelines: pd.DataFrame) -> dict[str, str]:
    """Condition variables of a guideline table: name -> ``'category'`` or ``'range'``.

    A categorical condition is a column of :data:`CATEGORY_CONDITIONS` (``land_use``); a range
    condition is a pair of columns ``<var>_min``/``<var>_max`` (``ph_min``/``ph_max``:
    ``ph_min < pH <= ph_max``, a blank bound unbounded). Only columns with at least one value count.

    Parameters
    ----------
    guidelines : pandas.DataFrame
        Guideline table, e.g. from :func:`guideline_values`.

    Returns
    -------
    dict of str to str
        Condition variable name mapped to ``'category'`` or ``'range'``.
    """
    out: dict[str, str] = {}
    for c in CATEGORY_CONDITIONS:
        if c in guidelines.columns and guidelines[c].notna().any():
            out[c] = "category"
    for c in guidelines.columns:
        if c.endswith("_min") and f"{c[:-4]}_max" in guidelines.columns:
            var = c[:-4]
            if guidelines[[c, f"{var}_max"]].notna().any().any():
                out[var] = "range"
    return out


def applicable_guidelines(guidelines: pd.DataFrame, conditions: pd.DataFrame, *,
                          default: dict[str, str] | None = None) -> pd.DataFrame:
    """The guideline value that applies to each sample, metal and threshold.

    Each sample is judged against the row of its own condition class: its land use (a row
    ``land_use = 'all'`` applies to every land use) and its position in every range condition
    (GB 15618-2018: ``ph_min < pH <= ph_max``). Where a sample's condition is unknown (pH
    missing, no land use given), the strictest (lowest) value over the rows the known conditions
    leave is used and the row is marked ``fallback``; a land use the set does not list is mapped
    to the set's ``other`` class when it has one (GB 15618: "other agricultural land"), else
    it falls back the same way. Rows without condition columns (one value per metal) apply to
    every sample; several unconditioned values for one metal and threshold also give the
    strictest.

    Parameters
    ----------
    guidelines : rows of :func:`guideline_values` (metal, threshold_name, value, optional
        ``condition`` text and condition columns, see :func:`guideline_condition_variables`).
    conditions : DataFrame indexed by sample_id with one column per condition variable
        (``land_use``, ``ph``); absent columns are unknown for every sample.
    default : condition variable -> value used for every sample where ``conditions`` has no
        column (e.g. ``{'land_use': 'other'}``: one land use for the whole region).

    Returns
    -------
    Long DataFrame sample_id, metal, threshold_name, threshold, condition (text of the applied
    row, or ``strictest of ...``), fallback (bool: a condition was unknown), fallback_reason.

    References
    ----------
    GB 15618-2018 Soil environmental quality: risk control standard for soil contamination of
    agricultural land, Table 1 (values by land use and pH class).
    """
    need = {"metal", "threshold_name", "value"}
    if not need <= set(guidelines.columns):
        raise ValueError(f"guidelines need columns {sorted(need)}, got {list(guidelines.columns)}")
    default = dict(default or {})
    ids = conditions.index.astype(str).to_numpy()
    n = len(ids)
    variables = guideline_condition_variables(guidelines)
    frames = []
    for (metal, thr), g in guidelines.groupby(["metal", "threshold_name"], sort=False):
        g = g.reset_index(drop=True)
        vals = g["value"].to_numpy(float)
        ok = np.ones((n, len(g)), dtype=bool)
        reason = np.full(n, "", dtype=object)
        for var, kind in variables.items():
            if kind == "category":
                col = g[var]
                if col.isna().all():
                    continue
                rowv = col.astype(object).where(col.notna(), "all").astype(str).to_numpy()
                if var in conditions.columns:
                    sv = conditions[var].astype(object).to_numpy()
                elif var in default and default[var] is not None:
                    sv = np.full(n, default[var], dtype=object)
                else:
                    sv = np.full(n, None, dtype=object)
                known = np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in sv])
                svs = np.where(known, sv.astype(str), "")
                listed = set(rowv) - {"all"}
                mapped = np.where(known & ~np.isin(svs, list(listed)) & ("other" in listed), "other", svs)
                match = (rowv[None, :] == mapped[:, None]) | (rowv[None, :] == "all")
                usable = known & (np.isin(mapped, list(listed)) | (rowv == "all").all())
                ok &= np.where(usable[:, None], match, True)
                reason = np.where(~usable, reason + f"{_VAR_LABEL.get(var, var)} unknown; ", reason)
            else:
                lo = g[f"{var}_min"].to_numpy(float)
                hi = g[f"{var}_max"].to_numpy(float)
                if np.isnan(lo).all() and np.isnan(hi).all():
                    continue
                if var in conditions.columns:
                    x = pd.to_numeric(conditions[var], errors="coerce").to_numpy(float)
                elif var in default and default[var] is not None:
                    x = np.full(n, float(default[var]))
                else:
                    x = np.full(n, np.nan)
                inside = ((np.isnan(lo)[None, :] | (x[:, None] > lo[None, :]))
                          & (np.isnan(hi)[None, :] | (x[:, None] <= hi[None, :])))
                known = np.isfinite(x)
                ok &= np.where(known[:, None], inside, True)
                reason = np.where(~known, reason + f"{_VAR_LABEL.get(var, var)} missing; ", reason)
        none = ~ok.any(axis=1)  # no class matches (a gap in the table): strictest over every row
        ok[none] = True
        reason = np.where(none, reason + "no class matches; ", reason)
        cand = np.where(ok, vals[None, :], np.inf)
        best = np.argmin(cand, axis=1)
        thr_v = cand[np.arange(n), best]
        n_cand = ok.sum(axis=1)
        ctext = (g["condition"].astype(str).to_numpy() if "condition" in g.columns
                 else np.full(len(g), "", dtype=object))
        cond = np.where(n_cand == 1, ctext[best],
                        np.array([f"strictest of {k} values" for k in n_cand], dtype=object))
        fallback = n_cand > 1
        frames.append(pd.DataFrame({
            "sample_id": ids, "metal": metal, "threshold_name": thr,
            "threshold": np.where(np.isfinite(thr_v), thr_v, np.nan), "condition": cond,
            "fallback": fallback & (np.char.str_len(reason.astype(str)) > 0) if variables else np.zeros(n, bool),
            "fallback_reason": np.array([r.rstrip("; ") for r in reason], dtype=object)}))
    cols = ["sample_id", "metal", "threshold_name", "threshold", "condition", "fallback", "fallback_reason"]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)[cols]
    out.loc[~out["fallback"], "fallback_reason"] = ""
    return out
