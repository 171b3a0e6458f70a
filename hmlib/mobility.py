"""Metal mobility: sequential-extraction fractions, mobility indices, a theory-guided model, scenarios.

The module works on the operationally defined fractions of a sequential extraction:

* **BCR** (three steps plus residual; Ure et al. 1993, revised by Rauret et al. 1999):
  F1 acid-soluble/exchangeable (0.11 M acetic acid), F2 reducible (hydroxylammonium chloride),
  F3 oxidizable (H2O2 then ammonium acetate), F4 residual (aqua regia on the residue).
* **Tessier** (five steps; Tessier, Campbell and Bisson 1979): T1 exchangeable (MgCl2),
  T2 bound to carbonates (NaOAc/HOAc, pH 5), T3 bound to Fe-Mn oxides (NH2OH.HCl in HOAc),
  T4 bound to organic matter (H2O2/HNO3, then NH4OAc), T5 residual.

Tessier data are mapped onto the BCR scheme by the reagent-based correspondence used when the
two schemes are compared (Gleyzes et al. 2002; Rauret 1998): T1 + T2 -> F1 (acetic acid
dissolves both the exchangeable pool and carbonates), T3 -> F2, T4 -> F3, T5 -> F4. The mapping
is approximate: the schemes use different reagents and conditions, so the mapped shares are
comparable in kind, not identical in value (:data:`TESSIER_TO_BCR`).

From the BCR fractions the module computes the mobility factors, the risk assessment code (RAC)
with the class table in ``hmlib/data/reference/index_classes/RAC_Perin1985.csv``, the ratio of
secondary to primary phases (RSP), the recovery against the total concentration, and fits a
theory-guided gradient-boosting model of the mobile share from soil properties (XGBoost with
monotone constraints where theory gives the sign, cross-validation with a fixed random state, TreeSHAP), the
mobilization risk (total x mobile share against a threshold) and the change under the
"4 per mille" soil-carbon scenario (Minasny et al. 2017; Qi et al. 2025).

References
----------
Tessier A., Campbell P.G.C., Bisson M. (1979) Anal. Chem. 51:844-851. doi:10.1021/ac50043a017
Ure A.M., Quevauviller Ph., Muntau H., Griepink B. (1993) Int. J. Environ. Anal. Chem. 51:135-151.
doi:10.1080/03067319308027619
Rauret G. (1998) Talanta 46:449-455. doi:10.1016/S0039-9140(97)00406-2
Rauret G. et al. (1999) J. Environ. Monit. 1:57-61. doi:10.1039/a807854h
Gleyzes C., Tellier S., Astruc M. (2002) TrAC 21:451-467. doi:10.1016/S0165-9936(02)00603-9
Qi C. et al. (2025) Global and regional patterns of soil metal(loid) mobility and associated risks.
Nat. Commun. doi:10.1038/s41467-025-58026-8
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .descriptive import count_of
from .errors import DataError, DataIssue, UnitError
from .io import parse_concentration
from .reference import load_reference
from .units import convert, dimension, normalize_unit

if TYPE_CHECKING:  # the options model is declared once, in the stage module
    from .stages.mobility import Options as MobilityOptions

__all__ = [
    "feature_label",
    "BCR_FRACTIONS",
    "BCR_NAMES",
    "TESSIER_FRACTIONS",
    "TESSIER_TO_BCR",
    "THEORY_SIGNS",
    "theory_signs",
    "MobilityModel",
    "read_fractions",
    "to_bcr",
    "recovery_check",
    "fractionation_indices",
    "rac_class",
    "rac_class_table",
    "rac_summary",
    "mobile_share",
    "theory_constraints",
    "fit_mobility_model",
    "compare_constraints",
    "monotonicity_check",
    "effect_sign",
    "shap_values",
    "shap_importance",
    "mobilization_risk",
    "soc_scenario",
    "scenario_change",
    "MobilityResults",
    "totals_long",
    "resolve_features",
    "model_frame",
    "indices_with_recovery",
    "fit_all",
    "spatial_folds",
    "read_effect_truth",
    "effect_truth_recovery",
    "risk_thresholds",
    "grid_frame",
    "scenario_tables",
    "fractionation_summary",
    "importance_display",
    "results_text",
    "plot_fractions",
    "plot_rac",
    "plot_shap",
    "plot_maps",
    "methods_text",
]

BCR_FRACTIONS: tuple[str, ...] = ("F1", "F2", "F3", "F4")
BCR_NAMES: dict[str, str] = {
    "F1": "acid-soluble/exchangeable",
    "F2": "reducible",
    "F3": "oxidizable",
    "F4": "residual",
}
TESSIER_FRACTIONS: tuple[str, ...] = ("T1", "T2", "T3", "T4", "T5")
#: Tessier step -> BCR fraction (Gleyzes et al. 2002, doi:10.1016/S0165-9936(02)00603-9; Rauret 1998).
TESSIER_TO_BCR: dict[str, str] = {"T1": "F1", "T2": "F1", "T3": "F2", "T4": "F3", "T5": "F4"}

# accepted spellings of fraction labels (lower case, spaces and hyphens read as underscores)
_BCR_ALIASES = {
    "f1": "F1", "acid_soluble": "F1", "acid_extractable": "F1", "exchangeable": "F1",
    "f2": "F2", "reducible": "F2",
    "f3": "F3", "oxidizable": "F3", "oxidisable": "F3",
    "f4": "F4", "residual": "F4",
}
_TESSIER_ALIASES = {
    "f1": "T1", "t1": "T1", "exchangeable": "T1",
    "f2": "T2", "t2": "T2", "carbonate": "T2", "carbonates": "T2", "carbonate_bound": "T2",
    "f3": "T3", "t3": "T3", "fe_mn_oxide": "T3", "fe_mn_oxides": "T3", "reducible": "T3",
    "f4": "T4", "t4": "T4", "organic": "T4", "organic_matter": "T4", "oxidizable": "T4", "oxidisable": "T4",
    "f5": "T5", "t5": "T5", "residual": "T5",
}

#: Reference set (``hmlib/data/reference/mobility_sign/``) of the constraint signs theory gives.
THEORY_SIGNS = "Theory_Sauve2000"

_METAL = re.compile(r"^[A-Z][a-z]?(\(?[IVX]+\)?)?$")


# ----------------------------------------------------------------------------------------------
# reading and validating fractions
# ----------------------------------------------------------------------------------------------
def _norm_label(text: str) -> str:
    return re.sub(r"[\s\-/]+", "_", str(text).strip().lower())


def read_fractions(path: str | Path, *, scheme: Literal["bcr", "tessier"] = "bcr",
                   known_samples: list[str] | None = None, known_metals: list[str] | None = None,
                   nondetect_factor: float = 0.5, encoding: str = "utf-8") -> pd.DataFrame:
    """Read and validate a long-format sequential-extraction file.

    Columns: ``sample_id, metal, fraction, value, unit``. ``fraction`` is F1-F4 (BCR) or
    F1-F5/T1-T5 (Tessier), or a name (``acid_soluble``, ``reducible``, ``oxidizable``,
    ``residual``; Tessier: ``exchangeable``, ``carbonate``, ``fe_mn_oxide``, ``organic``,
    ``residual``). ``value`` is a non-negative number or a non-detect ``<DL`` (replaced by
    ``nondetect_factor`` x DL). ``unit`` is a solid mass fraction unit (mg/kg, ug/g, ug/kg...).

    Parameters
    ----------
    path : the CSV file.
    scheme : ``'bcr'`` or ``'tessier'``.
    known_samples : sample ids of the region; other ids are errors (None: not checked).
    known_metals : metal symbols of the region; other metals are errors (None: not checked).
    nondetect_factor : multiple of the detection limit substituted for ``<DL`` cells.

    Returns
    -------
    DataFrame with ``sample_id, metal, fraction`` (scheme labels: F1-F4 or T1-T5),
    ``value_mg_kg, censored, source_row``.

    Raises
    ------
    DataError
        Listing every problem with file, row (header = row 1), column and value: missing
        columns, unknown fraction labels, non-numeric or negative values, unknown units,
        duplicated (sample, metal, fraction) rows and incomplete fraction sets.
    """
    if scheme not in ("bcr", "tessier"):
        raise ValueError(f"scheme must be 'bcr' or 'tessier', got {scheme!r}")
    path = Path(path)
    fname = str(path)
    if not path.is_file():
        raise DataError([DataIssue(fname, None, None, None, "fractions file not found")])
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
    except Exception as e:  # noqa: BLE001 - reported with the file name
        raise DataError([DataIssue(fname, None, None, None, f"cannot be read as CSV: {e}")]) from None
    df.columns = [c.strip() for c in df.columns]
    required = ["sample_id", "metal", "fraction", "value", "unit"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError([DataIssue(fname, 1, c, None, f"required column missing (columns present: {list(df.columns)})")
                         for c in missing])
    aliases = _BCR_ALIASES if scheme == "bcr" else _TESSIER_ALIASES
    labels = BCR_FRACTIONS if scheme == "bcr" else TESSIER_FRACTIONS
    names = sorted(k for k in aliases if not re.fullmatch(r"[ft]\d", k))
    issues: list[DataIssue] = []
    recs = []
    known_s = set(known_samples) if known_samples is not None else None
    known_m = set(known_metals) if known_metals is not None else None
    for i, r in df.iterrows():
        row = int(i) + 2
        ok = True
        sid = r["sample_id"].strip()
        if sid == "":
            issues.append(DataIssue(fname, row, "sample_id", r["sample_id"], "empty sample id"))
            ok = False
        elif known_s is not None and sid not in known_s:
            issues.append(DataIssue(fname, row, "sample_id", sid, "sample id not found in the region's samples"))
            ok = False
        metal = r["metal"].strip()
        if not _METAL.match(metal):
            issues.append(DataIssue(fname, row, "metal", metal, "not an element symbol such as 'Cd'"))
            ok = False
        elif known_m is not None and metal not in known_m:
            issues.append(DataIssue(fname, row, "metal", metal,
                                    f"metal not declared under metals in params (declared: {sorted(known_m)})"))
            ok = False
        frac = aliases.get(_norm_label(r["fraction"]))
        if frac is None:
            issues.append(DataIssue(fname, row, "fraction", r["fraction"],
                                    f"unknown {scheme.upper()} fraction; expected one of {list(labels)} "
                                    f"or {names}"))
            ok = False
        try:
            unit = normalize_unit(r["unit"].strip())
            if dimension(unit) != "mass_fraction":
                raise UnitError(f"{unit} is not a mass fraction")
        except UnitError as e:
            issues.append(DataIssue(fname, row, "unit", r["unit"], f"expected a solid unit such as mg/kg ({e})"))
            ok = False
            unit = None
        val, cens, dl, problem = parse_concentration(r["value"], nd_tokens=[], detection_limit=None)
        if problem:
            issues.append(DataIssue(fname, row, "value", r["value"], problem))
            ok = False
        elif np.isnan(val):
            issues.append(DataIssue(fname, row, "value", r["value"], "missing value; every fraction needs a value"))
            ok = False
        if ok:
            v = float(convert(val * (nondetect_factor if cens else 1.0), unit, "mg/kg"))
            recs.append((sid, metal, frac, v, bool(cens), row))
    out = pd.DataFrame(recs, columns=["sample_id", "metal", "fraction", "value_mg_kg", "censored", "source_row"])
    # duplicates and completeness
    dup = out.duplicated(["sample_id", "metal", "fraction"], keep="first")
    for _, r in out[dup].iterrows():
        first = out[(out.sample_id == r.sample_id) & (out.metal == r.metal) & (out.fraction == r.fraction)].source_row.min()
        issues.append(DataIssue(fname, int(r.source_row), "fraction", r.fraction,
                                f"duplicate fraction for sample {r.sample_id!r}, metal {r.metal} (first at row {first})"))
    if not issues:
        for (sid, metal), g in out.groupby(["sample_id", "metal"], sort=False):
            lack = [f for f in labels if f not in set(g.fraction)]
            if lack:
                issues.append(DataIssue(fname, int(g.source_row.min()), "fraction", None,
                                        f"sample {sid!r}, metal {metal}: fractions {lack} missing; "
                                        f"the {scheme.upper()} scheme needs all of {list(labels)}"))
    if issues:
        raise DataError(issues)
    return out.reset_index(drop=True)


def to_bcr(fractions: pd.DataFrame, *, scheme: Literal["bcr", "tessier"] = "bcr") -> pd.DataFrame:
    """Fractions in the BCR scheme, one row per (sample_id, metal), columns F1-F4 in mg/kg.

    Tessier steps are summed onto BCR fractions with :data:`TESSIER_TO_BCR`
    (T1 + T2 -> F1, T3 -> F2, T4 -> F3, T5 -> F4; Gleyzes et al. 2002).

    Parameters
    ----------
    fractions : output of :func:`read_fractions` (``sample_id, metal, fraction, value_mg_kg``).
    scheme : the scheme of ``fractions``.

    Returns
    -------
    pandas.DataFrame
        Columns sample_id, metal, F1, F2, F3, F4 (mg/kg).
    """
    need = {"sample_id", "metal", "fraction", "value_mg_kg"}
    if not need <= set(fractions.columns):
        raise ValueError(f"fractions must have columns {sorted(need)}, got {list(fractions.columns)}")
    f = fractions[["sample_id", "metal", "fraction", "value_mg_kg"]].copy()
    if scheme == "tessier":
        bad = set(f.fraction) - set(TESSIER_TO_BCR)
        if bad:
            raise ValueError(f"Tessier fractions must be {list(TESSIER_FRACTIONS)}, got {sorted(bad)}")
        f["fraction"] = f["fraction"].map(TESSIER_TO_BCR)
    elif scheme == "bcr":
        bad = set(f.fraction) - set(BCR_FRACTIONS)
        if bad:
            raise ValueError(f"BCR fractions must be {list(BCR_FRACTIONS)}, got {sorted(bad)}")
    else:
        raise ValueError(f"scheme must be 'bcr' or 'tessier', got {scheme!r}")
    w = f.pivot_table(index=["sample_id", "metal"], columns="fraction", values="value_mg_kg", aggfunc="sum",
                      sort=False)
    w = w.reindex(columns=list(BCR_FRACTIONS))
    w.columns.name = None
    return w.reset_index()


# ----------------------------------------------------------------------------------------------
# recovery and indices
# ----------------------------------------------------------------------------------------------
def recovery_check(bcr: pd.DataFrame, totals: pd.DataFrame, *, tolerance_percent: float = 20.0) -> pd.DataFrame:
    """Recovery of each sample-metal pair: sum of fractions against the independently measured total.

    .. math::

        R = 100\\,\\frac{F_1 + F_2 + F_3 + F_4}{C_\\mathrm{total}}, \\qquad
        \\text{accepted if } |R - 100| \\le \\text{tolerance}

    Parameters
    ----------
    bcr : output of :func:`to_bcr` (``sample_id, metal, F1..F4``, mg/kg).
    totals : ``sample_id, metal, total_mg_kg``.
    tolerance_percent : accepted deviation of the recovery from 100 %, in percent points.

    Returns
    -------
    DataFrame ``sample_id, metal, sum_mg_kg, total_mg_kg, recovery_percent, within_tolerance,
    status`` with status ``ok``, ``low recovery``, ``high recovery`` or ``no total``
    (within_tolerance is missing, not False, when there is no total).

    References
    ----------
    Rauret G. et al. (1999) J. Environ. Monit. 1:57-61 (recovery of the BCR sum against aqua regia).
    doi:10.1039/a807854h
    """
    if not tolerance_percent > 0:
        raise ValueError(f"tolerance_percent must be > 0, got {tolerance_percent}")
    need = {"sample_id", "metal", "total_mg_kg"}
    if not need <= set(totals.columns):
        raise ValueError(f"totals must have columns {sorted(need)}, got {list(totals.columns)}")
    s = bcr[["sample_id", "metal"]].copy()
    s["sum_mg_kg"] = bcr[list(BCR_FRACTIONS)].sum(axis=1, min_count=4).to_numpy()
    t = totals[["sample_id", "metal", "total_mg_kg"]].drop_duplicates(["sample_id", "metal"])
    s = s.merge(t, on=["sample_id", "metal"], how="left")
    tot = s["total_mg_kg"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = np.where(tot > 0, 100.0 * s["sum_mg_kg"].to_numpy(float) / tot, np.nan)
    s["recovery_percent"] = rec
    has = np.isfinite(rec)
    within = np.abs(rec - 100.0) <= tolerance_percent + 1e-9  # inclusive, robust to rounding of the ratio
    s["within_tolerance"] = pd.array(np.where(has, within, False), dtype="boolean")
    s.loc[~has, "within_tolerance"] = pd.NA
    s["status"] = np.select([~has, within, rec < 100.0], ["no total", "ok", "low recovery"], "high recovery")
    return s


def rac_class_table(name: str = "RAC_Perin1985") -> pd.DataFrame:
    """The RAC class table (reference set ``index_classes/<name>``): class, lower, upper, closed, source.

    Parameters
    ----------
    name : str, default 'RAC_Perin1985'
        Name of the ``index_classes`` reference set.

    Returns
    -------
    pandas.DataFrame
        RAC rows of the set ordered by rank (class, lower, upper, closed, source, ...; bounds in %).
    """
    t = load_reference("index_classes", name)
    t = t[t["index"] == "RAC"].sort_values("rank").reset_index(drop=True)
    if t.empty:
        raise ValueError(f"reference set {name!r} has no RAC rows")
    return t


def rac_class(f1_percent, *, table: pd.DataFrame | None = None) -> np.ndarray:
    """Risk assessment code class of F1 shares (percent of the sum of fractions).

    .. math:: \\mathrm{RAC} = 100\\,\\frac{F_1}{F_1 + F_2 + F_3 + F_4}

    classed as no risk (< 1 %), low (1-10 %), medium (10-30 %), high (30-50 %) and very high
    (> 50 %). Boundaries are explicit (``closed`` column of the table): exactly 1 % and 10 % are
    low, 10.5 % and 30 % medium, 50 % high, 50.01 % very high.

    Parameters
    ----------
    f1_percent : array-like of RAC values in percent, 0-100; NaN gives None.
    table : class table (default :func:`rac_class_table`).

    Returns
    -------
    object array of class names (None for NaN).

    References
    ----------
    Perin G. et al. (1985) Heavy Metals in the Environment, vol. 2, 454-456 (no DOI);
    Jain C.K. (2004) Water Research 38:569-578. doi:10.1016/j.watres.2003.10.042
    """
    x = np.asarray(f1_percent, dtype=float)
    bad = np.isfinite(x) & ((x < 0) | (x > 100 + 1e-9))
    if bad.any():
        raise ValueError(f"RAC values must be percentages in [0, 100], got {x[bad][:5].tolist()}")
    t = rac_class_table() if table is None else table
    out = np.full(x.shape, None, dtype=object)
    hits = np.zeros(x.shape, dtype=int)
    for r in t.to_dict("records"):
        if r["closed"] not in ("left", "right", "both", "neither"):
            raise ValueError(f"RAC class {r['class']!r}: closed must be left/right/both/neither, got {r['closed']!r}")
        lo = -np.inf if pd.isna(r["lower"]) else float(r["lower"])
        hi = np.inf if pd.isna(r["upper"]) else float(r["upper"])
        lo_ok = x >= lo if r["closed"] in ("left", "both") else x > lo
        hi_ok = x <= hi if r["closed"] in ("right", "both") else x < hi
        m = lo_ok & hi_ok & np.isfinite(x)
        out[m] = r["class"]
        hits += m
    if (hits[np.isfinite(x)] != 1).any():
        raise ValueError("the RAC class table does not partition [0, 100]: a value fell in 0 or 2 classes")
    return out


def fractionation_indices(bcr: pd.DataFrame, *, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Shares, mobility factors, RAC and RSP for each sample-metal pair.

    .. math::

        S = \\sum_{i=1}^4 F_i, \\quad p_i = 100\\,F_i / S, \\quad
        \\mathrm{MF}_1 = 100\\,F_1/S, \\quad \\mathrm{MF}_{12} = 100\\,(F_1+F_2)/S, \\quad
        \\mathrm{RSP} = \\frac{F_1 + F_2 + F_3}{F_4}

    The RAC is :math:`\\mathrm{MF}_1` classed with :func:`rac_class`. RSP (ratio of secondary
    to primary phases) is undefined (NaN) when the residual fraction is 0 (or so small that the
    ratio overflows).

    Parameters
    ----------
    bcr : output of :func:`to_bcr`.

    Returns
    -------
    DataFrame: the input columns plus ``sum_mg_kg, p_F1..p_F4 (%), mf1_percent, mf12_percent,
    rac_percent, rac_class, rsp``.

    References
    ----------
    Salbu B., Krekling T., Oughton D.H. (1998) Analyst 123:843-849 (mobility factor).
    doi:10.1039/a800314i; Kabala C., Singh B.R. (2001) J. Environ. Qual. 30:485-492.
    doi:10.2134/jeq2001.302485x; Perin et al. (1985) and Jain (2004) (RAC);
    Chen J.S., Wang F.Y., Li X.D., Song J.J. (2000) Environ. Geol. 39:1334-1340 (RSP).
    doi:10.1007/s002540000224
    """
    missing = [c for c in ("sample_id", "metal", *BCR_FRACTIONS) if c not in bcr.columns]
    if missing:
        raise ValueError(f"bcr must have columns sample_id, metal, F1..F4; missing {missing}")
    out = bcr[["sample_id", "metal", *BCR_FRACTIONS]].copy()
    F = out[list(BCR_FRACTIONS)].to_numpy(float)
    if (F < 0).any():
        raise ValueError("fractions must be non-negative")
    S = F.sum(axis=1)
    out["sum_mg_kg"] = S
    with np.errstate(divide="ignore", invalid="ignore"):
        P = np.where(S[:, None] > 0, 100.0 * F / S[:, None], np.nan)
        rsp = np.where(F[:, 3] > 0, F[:, :3].sum(axis=1) / F[:, 3], np.nan)
    rsp = np.where(np.isfinite(rsp), rsp, np.nan)  # a residual so small that the ratio overflows: undefined
    for j, f in enumerate(BCR_FRACTIONS):
        out[f"p_{f}"] = P[:, j]
    out["mf1_percent"] = P[:, 0]
    out["mf12_percent"] = P[:, 0] + P[:, 1]
    out["rac_percent"] = P[:, 0]
    out["rac_class"] = rac_class(np.clip(P[:, 0], 0, 100), table=table)
    out["rsp"] = rsp
    return out


def rac_summary(indices: pd.DataFrame, *, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Number and share of samples per metal and RAC class (all classes listed, zeros included).

    Parameters
    ----------
    indices : pandas.DataFrame
        Fractionation indices with metal, rac_class, rac_percent.
    table : pandas.DataFrame or None, optional
        RAC class table; None uses :func:`rac_class_table`.

    Returns
    -------
    pandas.DataFrame
        Columns metal, rac_class, lower_percent, upper_percent, closed, n_samples, share_percent,
        median_rac_percent.
    """
    t = rac_class_table() if table is None else table
    rows = []
    for metal, g in indices.groupby("metal", sort=False):
        n = int(g["rac_class"].notna().sum())
        for r in t.to_dict("records"):
            cls = r["class"]
            k = int((g["rac_class"] == cls).sum())
            rows.append({"metal": metal, "rac_class": cls, "lower_percent": r["lower"], "upper_percent": r["upper"],
                         "closed": r["closed"], "n_samples": k, "share_percent": 100.0 * k / n if n else np.nan,
                         "median_rac_percent": float(g["rac_percent"].median())})
    return pd.DataFrame(rows)


def mobile_share(indices: pd.DataFrame, *, mobile_fraction: Literal["F1", "F1+F2"] = "F1") -> pd.Series:
    """Mobile share in percent: :math:`100F_1/S` or :math:`100(F_1+F_2)/S` (from :func:`fractionation_indices`).

    Parameters
    ----------
    indices : pandas.DataFrame
        Output of :func:`fractionation_indices` (mf1_percent, mf12_percent).
    mobile_fraction : {'F1', 'F1+F2'}, default 'F1'
        Fractions counted as mobile.

    Returns
    -------
    pandas.Series
        Mobile share (%) per row of ``indices``.
    """
    if mobile_fraction == "F1":
        return indices["mf1_percent"]
    if mobile_fraction == "F1+F2":
        return indices["mf12_percent"]
    raise ValueError(f"mobile_fraction must be 'F1' or 'F1+F2', got {mobile_fraction!r}")


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------
def theory_signs(name: str = THEORY_SIGNS) -> pd.DataFrame:
    """Constraint signs from theory (reference set ``mobility_sign/<name>``): metal, feature, sign, source.

    Parameters
    ----------
    name : str, optional
        Name of the ``mobility_sign`` reference set (default :data:`THEORY_SIGNS`).

    Returns
    -------
    pandas.DataFrame
        Columns metal, feature (``ph`` or ``total``), sign (-1 or 1), source.
    """
    t = load_reference("mobility_sign", name)
    bad = t[~t["sign"].isin([-1, 1]) | ~t["feature"].isin(["ph", "total"])]
    if not bad.empty:
        raise ValueError(f"mobility_sign/{name}: rows {[int(i) + 2 for i in bad.index]} need feature ph|total "
                         "and sign -1|1")
    return t


def theory_constraints(metal: str, features: list[str], *, ph_feature: str | None, total_feature: str | None,
                       overrides: dict[str, int] | None = None, signs: pd.DataFrame | None = None) -> dict[str, int]:
    """Monotone constraints for one metal: theory signs, then user overrides.

    * pH: cations -1 (mobility falls as pH rises; Sauve et al. 2000, doi:10.1021/es9907764),
      oxyanion-forming elements +1 (Smith et al. 1998, doi:10.1016/S0065-2113(08)60504-0).
    * total concentration: +1 for the cations of Sauve et al. (2000) (the labile share rises
      with the metal burden).
    * SOC/OM: no sign: solid organic matter binds metals while dissolved organic carbon
      mobilizes them, so theory does not give one sign (Qi et al. 2025).

    Signs are read from :func:`theory_signs`. Features not in ``features`` are ignored; a 0 in
    ``overrides`` removes a constraint.

    Parameters
    ----------
    metal : str
        Metal symbol.
    features : list of str
        Model features.
    ph_feature : str or None
        Feature holding soil pH, if any.
    total_feature : str or None
        Feature holding the total concentration, if any.
    overrides : dict of str to int or None, optional
        Feature mapped to a sign (-1, 0, +1) replacing the theory sign.
    signs : pandas.DataFrame or None, optional
        Theory sign table; None uses :func:`theory_signs`.

    Returns
    -------
    dict of str to int
        Feature mapped to its monotone constraint (-1 or +1); unconstrained features omitted.
    """
    t = theory_signs() if signs is None else signs
    tm = {r["feature"]: int(r["sign"]) for r in t[t["metal"] == metal].to_dict("records")}
    cons: dict[str, int] = {}
    if ph_feature and ph_feature in features and "ph" in tm:
        cons[ph_feature] = tm["ph"]
    if total_feature and total_feature in features and "total" in tm:
        cons[total_feature] = tm["total"]
    for k, v in (overrides or {}).items():
        if k not in features:
            raise ValueError(f"constraint on {k!r} for {metal}: not a model feature; features are {features}")
        if v not in (-1, 0, 1):
            raise ValueError(f"constraint of {metal}.{k} must be -1, 0 or 1, got {v!r}")
        cons[k] = int(v)
    return {k: v for k, v in cons.items() if v != 0}


@dataclass
class MobilityModel:
    """A fitted model of the mobile share (percent) of one metal.

    Attributes
    ----------
    metal : element symbol.
    features : predictor columns, in order.
    constraints : feature -> +1/-1 monotone constraint (absent = unconstrained).
    model : the XGBoost regressor refitted on all rows.
    cv_metrics : one row per fold: fold, n_test, r2, rmse, mae (percent points).
    oof_prediction : out-of-fold predictions (percent), aligned with the training rows.
    seed : the seed of the folds and of XGBoost's row subsampling.
    hyper : the XGBoost parameters used.
    feature_max : largest training value of each feature (to flag extrapolation).
    """

    metal: str
    features: list[str]
    constraints: dict[str, int]
    model: object
    cv_metrics: pd.DataFrame
    oof_prediction: np.ndarray
    seed: int
    hyper: dict = field(default_factory=dict)
    feature_max: dict = field(default_factory=dict)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted mobile share in percent, clipped to [0, 100] (clipping keeps monotonicity)."""
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise ValueError(f"X lacks model features {missing}; expected {self.features}")
        return np.clip(self.model.predict(X[self.features].astype(float)), 0.0, 100.0)

    def summary(self) -> dict:
        m = self.cv_metrics
        return {"metal": self.metal, "n": int(len(self.oof_prediction)),
                "r2_mean": float(m["r2"].mean()), "r2_sd": float(m["r2"].std(ddof=1)),
                "rmse_mean": float(m["rmse"].mean()), "mae_mean": float(m["mae"].mean()),
                "constraints": ", ".join(f"{k}:{'+' if v > 0 else '-'}" for k, v in self.constraints.items()) or "none"}


def _xgb(constraints: dict[str, int], features: list[str], seed: int, n_estimators: int, max_depth: int,
         learning_rate: float):
    import xgboost as xgb

    cons = tuple(int(constraints.get(f, 0)) for f in features)
    return xgb.XGBRegressor(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
                            subsample=0.8, colsample_bytree=1.0, min_child_weight=2.0, reg_lambda=1.0,
                            monotone_constraints=cons, tree_method="hist", random_state=seed, n_jobs=1)


def fit_mobility_model(X: pd.DataFrame, y_percent, *, metal: str = "", constraints: dict[str, int] | None = None,
                       seed: int, n_splits: int = 5, n_estimators: int = 300, max_depth: int = 3,
                       learning_rate: float = 0.05, folds=None) -> MobilityModel:
    """Fit XGBoost to the mobile share with optional monotone constraints; seeded k-fold CV.

    Gradient-boosted trees (Chen and Guestrin 2016) with monotone constraints: for a feature
    with sign :math:`s`, predictions satisfy :math:`s\\,(f(\\ldots,x',\\ldots)-f(\\ldots,x,\\ldots))
    \\ge 0` whenever :math:`x' \\ge x`, all other features fixed (enforced by XGBoost at every
    split). Cross-validation: the given ``folds`` (e.g. spatial blocks, :func:`spatial_folds`) or
    :math:`k` shuffled folds seeded by ``seed``; per fold
    :math:`R^2 = 1 - \\sum (y-\\hat y)^2 / \\sum (y-\\bar y)^2`, RMSE and MAE.

    Parameters
    ----------
    X : numeric predictors (rows = samples); missing values allowed (XGBoost's default direction).
    y_percent : mobile share in percent (0-100), one per row.
    metal : label stored in the result.
    constraints : feature -> -1/+1 (see :func:`theory_constraints`); None: unconstrained.
    seed : seeds the folds and XGBoost.
    n_splits : number of shuffled folds when ``folds`` is None.
    n_estimators, max_depth, learning_rate : XGBoost settings.
    folds : optional fold label per row of X (e.g. spatial blocks); overrides ``n_splits``.

    Returns
    -------
    :class:`MobilityModel`.

    References
    ----------
    Chen T., Guestrin C. (2016) XGBoost: a scalable tree boosting system. KDD '16, 785-794.
    doi:10.1145/2939672.2939785; Qi C. et al. (2025) Nat. Commun. doi:10.1038/s41467-025-58026-8
    """
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import KFold

    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"X must be a DataFrame of predictors, got {type(X).__name__}")
    y = np.asarray(y_percent, dtype=float)
    if y.shape != (len(X),):
        raise ValueError(f"y_percent must have one value per row of X ({len(X)}), got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y_percent has missing or infinite values; drop those rows first")
    if ((y < 0) | (y > 100)).any():
        raise ValueError(f"y_percent must be within [0, 100], got range [{y.min():.3g}, {y.max():.3g}]")
    nonnum = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if nonnum:
        raise ValueError(f"X columns must be numeric; not numeric: {nonnum}")
    features = list(X.columns)
    constraints = dict(constraints or {})
    unknown = set(constraints) - set(features)
    if unknown:
        raise ValueError(f"constraints name {sorted(unknown)}, which are not columns of X {features}")
    if folds is None:
        if len(X) < 2 * n_splits:
            raise ValueError(f"need at least {2 * n_splits} rows for {n_splits}-fold CV, got {len(X)}")
        splits = list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.arange(len(X))))
    else:
        fl = np.asarray(folds)
        if fl.shape != (len(X),):
            raise ValueError(f"folds must give one fold per row of X ({len(X)}), got shape {fl.shape}")
        labels = np.unique(fl)
        if len(labels) < 2:
            raise ValueError("folds must contain at least two folds")
        splits = [(np.flatnonzero(fl != k), np.flatnonzero(fl == k)) for k in labels]
    Xf = X.astype(float).reset_index(drop=True)
    hyper = dict(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate)
    oof = np.empty(len(y))
    rows = []
    for k, (tr, te) in enumerate(splits):
        m = _xgb(constraints, features, seed, **hyper).fit(Xf.iloc[tr], y[tr])
        p = np.clip(m.predict(Xf.iloc[te]), 0, 100)
        oof[te] = p
        rows.append({"fold": k + 1, "n_test": len(te), "r2": r2_score(y[te], p),
                     "rmse": float(np.sqrt(mean_squared_error(y[te], p))), "mae": mean_absolute_error(y[te], p)})
    full = _xgb(constraints, features, seed, **hyper).fit(Xf, y)
    return MobilityModel(metal=metal, features=features, constraints={k: v for k, v in constraints.items() if v},
                         model=full, cv_metrics=pd.DataFrame(rows), oof_prediction=oof, seed=seed, hyper=hyper,
                         feature_max={f: float(Xf[f].max()) for f in features})


def monotonicity_check(model: MobilityModel, X: pd.DataFrame, feature: str, *, sign: int | None = None,
                       n_grid: int = 40, n_rows: int = 40, seed: int = 0) -> dict:
    """Check monotonicity of predictions along ``feature`` with all other features fixed.

    For ``n_rows`` rows of ``X`` (a seeded sample), ``feature`` is swept over ``n_grid`` points
    from its minimum to its maximum in ``X`` and the largest step against ``sign`` is recorded.

    Parameters
    ----------
    model : MobilityModel
        Fitted mobility model of one metal.
    X : pandas.DataFrame
        Predictor rows (the model's feature columns).
    feature : str
        Feature to sweep.
    sign : int or None, optional
        Expected sign (-1 or +1); None uses the model's constraint of ``feature``.
    n_grid : int, default 40
        Number of grid points of the sweep.
    n_rows : int, default 40
        Number of rows sampled from ``X``.
    seed : int, default 0
        Seed of the row sample.

    Returns
    -------
    dict: feature, sign, n_rows, n_grid, max_violation (percent points, >= 0),
    n_rows_violating, holds (max_violation <= 1e-9).
    """
    s = model.constraints.get(feature, 0) if sign is None else int(sign)
    if s not in (-1, 1):
        raise ValueError(f"give sign=+1/-1 for an unconstrained feature ({feature!r} has no constraint)")
    if feature not in model.features:
        raise ValueError(f"{feature!r} is not a model feature; features are {model.features}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(X), size=min(n_rows, len(X)), replace=False)
    base = X.iloc[idx][model.features].astype(float).reset_index(drop=True)
    col = X[feature].astype(float)
    grid = np.linspace(np.nanmin(col), np.nanmax(col), n_grid)
    big = base.loc[base.index.repeat(n_grid)].reset_index(drop=True)
    big[feature] = np.tile(grid, len(base))
    pred = model.predict(big).reshape(len(base), n_grid)
    steps = np.diff(pred, axis=1) * s  # should be >= 0
    viol = np.maximum(-steps, 0).max(axis=1)
    return {"metal": model.metal, "feature": feature, "sign": s, "n_rows": len(base), "n_grid": n_grid,
            "max_violation": float(viol.max()), "n_rows_violating": int((viol > 1e-9).sum()),
            "holds": bool(viol.max() <= 1e-9)}


def effect_sign(model: MobilityModel, X: pd.DataFrame, feature: str, *, n_grid: int = 30) -> dict:
    """Direction of the partial dependence of the prediction on ``feature``.

    The partial dependence :math:`\\bar f(v) = n^{-1}\\sum_i f(x_{i,-j}, v)` (Friedman 2001,
    doi:10.1214/aos/1013203451) is computed over a grid between the 5th and 95th percentiles of
    ``feature``; its least-squares slope gives the sign.

    Parameters
    ----------
    model : MobilityModel
        Fitted mobility model of one metal.
    X : pandas.DataFrame
        Predictor rows (the model's feature columns).
    feature : str
        Feature of the partial dependence.
    n_grid : int, default 30
        Number of grid points.

    Returns
    -------
    dict: feature, slope (percent points per unit), sign (-1, 0, +1), pd_range (max - min).
    """
    col = X[feature].astype(float)
    grid = np.linspace(np.nanpercentile(col, 5), np.nanpercentile(col, 95), n_grid)
    base = X[model.features].astype(float).reset_index(drop=True)
    big = base.loc[base.index.repeat(n_grid)].reset_index(drop=True)
    big[feature] = np.tile(grid, len(base))
    pdp = model.predict(big).reshape(len(base), n_grid).mean(axis=0)
    slope = float(np.polyfit(grid, pdp, 1)[0])
    return {"metal": model.metal, "feature": feature, "slope": slope, "sign": int(np.sign(slope)),
            "pd_range": float(pdp.max() - pdp.min())}


def compare_constraints(X: pd.DataFrame, y_percent, *, metal: str, constraints: dict[str, int], seed: int,
                        n_splits: int = 5, n_estimators: int = 300, max_depth: int = 3,
                        learning_rate: float = 0.05, folds=None) -> tuple[MobilityModel, MobilityModel, pd.DataFrame]:
    """Fit the model with and without ``constraints`` on the same folds; compare CV and theory checks.

    Parameters
    ----------
    X : pandas.DataFrame
        Predictors, samples x features.
    y_percent : array-like
        Mobile share (%) of the samples.
    metal : str
        Metal symbol.
    constraints : dict of str to int
        Monotone constraints (feature -> -1 or +1).
    seed : int
        Random seed.
    n_splits : int, default 5
        Number of CV folds.
    n_estimators : int, default 300
        Number of boosted trees.
    max_depth : int, default 3
        Maximum tree depth.
    learning_rate : float, default 0.05
        XGBoost learning rate.
    folds : array-like or None, optional
        Fold number of each sample; None draws random folds.

    Returns
    -------
    (constrained, unconstrained, table) where the table has one row per variant: metal, variant,
    n, r2_mean, r2_sd, rmse_mean, mae_mean, constraints, and for each constrained feature the
    largest violation of the theory sign found by :func:`monotonicity_check`.
    """
    kw = dict(metal=metal, seed=seed, n_splits=n_splits, n_estimators=n_estimators, max_depth=max_depth,
              learning_rate=learning_rate, folds=folds)
    con = fit_mobility_model(X, y_percent, constraints=constraints, **kw)
    unc = fit_mobility_model(X, y_percent, constraints=None, **kw)
    rows = []
    for variant, m in (("constrained", con), ("unconstrained", unc)):
        r = m.summary()
        r["variant"] = variant
        viol = [monotonicity_check(m, X, f, sign=s, seed=seed)["max_violation"] for f, s in constraints.items()]
        r["max_theory_violation_pp"] = max(viol) if viol else np.nan
        rows.append(r)
    tab = pd.DataFrame(rows)[["metal", "variant", "n", "r2_mean", "r2_sd", "rmse_mean", "mae_mean", "constraints",
                              "max_theory_violation_pp"]]
    return con, unc, tab


def shap_values(model: MobilityModel, X: pd.DataFrame) -> pd.DataFrame:
    """TreeSHAP values (percent points) of each feature for each row (Lundberg et al. 2020).

    Parameters
    ----------
    model : MobilityModel
        Fitted mobility model of one metal.
    X : pandas.DataFrame
        Predictor rows (the model's feature columns).

    Returns
    -------
    pandas.DataFrame
        SHAP values (percent points), index of ``X``, one column per model feature.

    References
    ----------
    Lundberg S.M. et al. (2020) From local explanations to global understanding with explainable
    AI for trees. Nat. Mach. Intell. 2:56-67. doi:10.1038/s42256-019-0138-9
    """
    import shap

    expl = shap.TreeExplainer(model.model)
    sv = expl.shap_values(X[model.features].astype(float))
    return pd.DataFrame(np.asarray(sv), columns=model.features, index=X.index)


def shap_importance(model: MobilityModel, X: pd.DataFrame, *, sv: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean absolute SHAP value per feature and the sign of its association with the feature.

    ``direction`` is the sign of the Spearman correlation between a feature's values and its SHAP
    values (+1: higher values raise the predicted mobile share).

    Parameters
    ----------
    model : MobilityModel
        Fitted mobility model of one metal.
    X : pandas.DataFrame
        Predictor rows (the model's feature columns).
    sv : pandas.DataFrame or None, optional
        Precomputed SHAP values; None computes them with :func:`shap_values`.

    Returns
    -------
    pandas.DataFrame
        Columns metal, feature, mean_abs_shap_pp (percent points), direction (-1, 0, +1),
        constraint, rank; sorted by decreasing importance.
    """
    from scipy.stats import spearmanr

    sv = shap_values(model, X) if sv is None else sv
    rows = []
    for f in model.features:
        x = X[f].astype(float).to_numpy()
        ok = np.isfinite(x)
        rho = spearmanr(x[ok], sv[f].to_numpy()[ok]).statistic if ok.sum() > 2 and np.ptp(x[ok]) > 0 else np.nan
        rows.append({"metal": model.metal, "feature": f, "mean_abs_shap_pp": float(np.abs(sv[f]).mean()),
                     "direction": int(np.sign(rho)) if np.isfinite(rho) else 0,
                     "constraint": model.constraints.get(f, 0)})
    out = pd.DataFrame(rows).sort_values("mean_abs_shap_pp", ascending=False).reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


# ----------------------------------------------------------------------------------------------
# risk and scenario
# ----------------------------------------------------------------------------------------------
def mobilization_risk(total_mg_kg, mobile_share_percent, *, threshold_mg_kg: float) -> pd.DataFrame:
    """Mobile concentration and its exceedance of a threshold.

    .. math:: C_\\mathrm{mob} = C_\\mathrm{total}\\,\\frac{p_\\mathrm{mob}}{100}, \\qquad
              \\text{at risk if } C_\\mathrm{mob} > T

    Parameters
    ----------
    total_mg_kg : total concentrations (mg/kg).
    mobile_share_percent : mobile share (percent, 0-100), same length.
    threshold_mg_kg : threshold T of the mobile concentration (mg/kg, > 0).

    Returns
    -------
    DataFrame: mobile_mg_kg, at_risk (bool; missing inputs give a missing mobile_mg_kg and False).

    References
    ----------
    Qi C. et al. (2025) Nat. Commun. doi:10.1038/s41467-025-58026-8
    """
    t = np.asarray(total_mg_kg, dtype=float)
    p = np.asarray(mobile_share_percent, dtype=float)
    if t.shape != p.shape:
        raise ValueError(f"total_mg_kg and mobile_share_percent differ in shape: {t.shape} vs {p.shape}")
    if not threshold_mg_kg > 0:
        raise ValueError(f"threshold_mg_kg must be > 0, got {threshold_mg_kg}")
    if (t[np.isfinite(t)] < 0).any():
        raise ValueError("total_mg_kg must be non-negative")
    if ((p[np.isfinite(p)] < 0) | (p[np.isfinite(p)] > 100)).any():
        raise ValueError("mobile_share_percent must be within [0, 100]")
    mob = t * p / 100.0
    return pd.DataFrame({"mobile_mg_kg": mob, "at_risk": np.where(np.isfinite(mob), mob > threshold_mg_kg, False)})


def soc_scenario(soc, *, rate_per_year: float = 0.004, years: int = 26) -> np.ndarray:
    """Soil organic carbon after ``years`` of a compounding relative increase.

    .. math:: \\mathrm{SOC}_t = \\mathrm{SOC}_0\\,(1 + r)^{t}

    with :math:`r = 0.004\\,\\mathrm{yr}^{-1}` for the "4 per mille" initiative (Minasny et al.
    2017). Organic matter scales with SOC by a constant factor, so the same relative change
    applies when the model uses OM instead of SOC.

    Parameters
    ----------
    soc : float or array-like
        Soil organic carbon today (any unit).
    rate_per_year : float, default 0.004
        Relative increase per year.
    years : int, default 26
        Number of years.

    Returns
    -------
    numpy.ndarray
        SOC after ``years`` (same unit as ``soc``).

    References
    ----------
    Minasny B. et al. (2017) Soil carbon 4 per mille. Geoderma 292:59-86.
    doi:10.1016/j.geoderma.2017.01.002
    """
    if rate_per_year < 0:
        raise ValueError(f"rate_per_year must be >= 0, got {rate_per_year}")
    if int(years) != years or years < 0:
        raise ValueError(f"years must be a non-negative integer, got {years}")
    s = np.asarray(soc, dtype=float)
    if (s[np.isfinite(s)] < 0).any():
        raise ValueError("soc must be non-negative")
    return s * (1.0 + rate_per_year) ** int(years)


def scenario_change(model: MobilityModel, X: pd.DataFrame, *, soc_feature: str, total_mg_kg,
                    threshold_mg_kg: float, rate_per_year: float = 0.004, years: int = 26) -> pd.DataFrame:
    """Predicted mobile share and mobilization risk today and after the SOC scenario.

    Only ``soc_feature`` changes (:func:`soc_scenario`); other predictors stay as they are.

    Parameters
    ----------
    model : MobilityModel
        Fitted mobility model of one metal.
    X : pandas.DataFrame
        Predictor rows (the model's feature columns).
    soc_feature : str
        Feature holding SOC (or OM).
    total_mg_kg : array-like
        Total concentration (mg/kg) of each row.
    threshold_mg_kg : float
        Mobile concentration (mg/kg) above which a row is at risk.
    rate_per_year : float, default 0.004
        Relative SOC increase per year.
    years : int, default 26
        Scenario length in years.

    Returns
    -------
    DataFrame (index of X): share_base_percent, share_scenario_percent, delta_share_pp,
    mobile_base_mg_kg, mobile_scenario_mg_kg, at_risk_base, at_risk_scenario, soc_base,
    soc_scenario, soc_beyond_training (scenario SOC above the largest SOC the model was fitted
    on: the tree model extrapolates flat there).
    """
    if soc_feature not in model.features:
        raise ValueError(f"soc_feature {soc_feature!r} is not a model feature; features are {model.features}")
    Xb = X[model.features].astype(float)
    Xs = Xb.copy()
    Xs[soc_feature] = soc_scenario(Xb[soc_feature].to_numpy(), rate_per_year=rate_per_year, years=years)
    pb, ps = model.predict(Xb), model.predict(Xs)
    rb = mobilization_risk(total_mg_kg, pb, threshold_mg_kg=threshold_mg_kg)
    rs = mobilization_risk(total_mg_kg, ps, threshold_mg_kg=threshold_mg_kg)
    return pd.DataFrame({
        "share_base_percent": pb, "share_scenario_percent": ps, "delta_share_pp": ps - pb,
        "mobile_base_mg_kg": rb["mobile_mg_kg"].to_numpy(), "mobile_scenario_mg_kg": rs["mobile_mg_kg"].to_numpy(),
        "at_risk_base": rb["at_risk"].to_numpy(), "at_risk_scenario": rs["at_risk"].to_numpy(),
        "soc_base": Xb[soc_feature].to_numpy(), "soc_scenario": Xs[soc_feature].to_numpy(),
        "soc_beyond_training": Xs[soc_feature].to_numpy() > model.feature_max.get(soc_feature, np.inf),
    }, index=X.index)


# ----------------------------------------------------------------------------------------------
# stage helpers: all metals at once
# ----------------------------------------------------------------------------------------------
def totals_long(wide: pd.DataFrame) -> pd.DataFrame:
    """Samples x metals totals (``RegionData.wide``) as ``sample_id, metal, total_mg_kg``.

    Parameters
    ----------
    wide : pandas.DataFrame
        Total concentrations (mg/kg), samples (index) x metals.

    Returns
    -------
    pandas.DataFrame
        Columns sample_id, metal, total_mg_kg.
    """
    w = wide.copy()
    w.index.name = "sample_id"
    return w.reset_index().melt(id_vars="sample_id", var_name="metal", value_name="total_mg_kg")


def resolve_features(options: MobilityOptions, covariates: list[str], categorical: list[str],
                     sites: pd.DataFrame) -> list[str]:
    """The covariate predictors: ``options.features`` or every numeric covariate of the region.

    Raises ValueError naming a requested feature that is not a numeric sample covariate.

    Parameters
    ----------
    options : MobilityOptions
        Stage options (``features`` may be empty).
    covariates : list of str
        Covariates declared for the region.
    categorical : list of str
        Categorical covariates.
    sites : pandas.DataFrame
        Sample table with the covariate columns.

    Returns
    -------
    list of str
        Numeric covariate names used as predictors.
    """
    numeric = [c for c in covariates if c not in categorical and c in sites.columns
               and pd.api.types.is_numeric_dtype(sites[c])]
    if not options.features:
        return numeric
    bad = [f for f in options.features if f not in numeric]
    if bad:
        raise ValueError(f"stages.mobility.features {bad} are not numeric sample covariates; "
                         f"numeric covariates declared under data.covariates: {numeric}")
    return list(options.features)


def indices_with_recovery(bcr: pd.DataFrame, recovery: pd.DataFrame, *, exclude_bad: bool,
                          table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fractionation indices (:func:`fractionation_indices`) with each pair's total and recovery.

    Parameters
    ----------
    bcr : :func:`to_bcr`.
    recovery : :func:`recovery_check` of the same pairs.
    exclude_bad : drop pairs whose recovery is outside the tolerance (pairs without a total are kept).
    table : RAC class table (default :func:`rac_class_table`).

    Returns
    -------
    DataFrame: the indices plus ``total_mg_kg, recovery_percent, recovery_status``.
    """
    r = recovery.set_index(["sample_id", "metal"])
    key = pd.MultiIndex.from_frame(bcr[["sample_id", "metal"]])
    status = r["status"].reindex(key).to_numpy()
    keep = ~np.isin(status, ["low recovery", "high recovery"]) if exclude_bad else np.ones(len(bcr), bool)
    ind = fractionation_indices(bcr[keep], table=table)
    return ind.merge(recovery[["sample_id", "metal", "total_mg_kg", "recovery_percent", "status"]],
                     on=["sample_id", "metal"], how="left").rename(columns={"status": "recovery_status"})


def model_frame(indices: pd.DataFrame, sites: pd.DataFrame, *, metal: str, features: list[str],
                include_total: bool, mobile_fraction: str) -> tuple[pd.DataFrame, np.ndarray, pd.Index]:
    """Predictors X (covariates, plus ``total_mg_kg``), target (mobile share, %) and sample ids of one metal.

    Rows with a missing target or total are dropped; missing covariates stay (XGBoost handles them).

    Parameters
    ----------
    indices : pandas.DataFrame
        Fractionation indices (sample_id, metal, mobile shares, total_mg_kg).
    sites : pandas.DataFrame
        Sample table with the covariate columns.
    metal : str
        Metal symbol.
    features : list of str
        Covariate predictors.
    include_total : bool
        Whether to add ``total_mg_kg`` as a predictor.
    mobile_fraction : str
        ``'F1'`` or ``'F1+F2'`` (see :func:`mobile_share`).

    Returns
    -------
    tuple of (pandas.DataFrame, numpy.ndarray, pandas.Index)
        Predictors X, target (mobile share, %) and sample ids.
    """
    g = indices[indices["metal"] == metal].set_index("sample_id")
    g = g[np.isfinite(mobile_share(g, mobile_fraction=mobile_fraction))]
    X = sites.reindex(g.index)[features].astype(float)
    if include_total:
        X["total_mg_kg"] = g["total_mg_kg"].astype(float)
        keep = X["total_mg_kg"].notna()
        X, g = X[keep], g[keep]
    y = mobile_share(g, mobile_fraction=mobile_fraction).to_numpy(float)
    return X, y, g.index


@dataclass
class MobilityResults:
    """Fitted mobility models of all metals of a region.

    Attributes
    ----------
    models : metal -> constrained (theory-guided) :class:`MobilityModel`.
    unconstrained : metal -> the same model without constraints.
    frames : metal -> (X, y, sample ids) used for fitting.
    comparison : one row per metal and variant (:func:`compare_constraints`).
    cv_folds : per-fold metrics of both variants.
    importance : mean |SHAP| per metal and feature of the constrained model.
    effects : partial-dependence sign of each feature (constrained and unconstrained).
    monotonicity : grid check of each constraint on the constrained model.
    shap : metal -> SHAP values of the constrained model (rows of X).
    skipped : metal -> reason the metal was not modelled.
    validation : the cross-validation scheme, in words.
    no_skill : metals whose constrained model has a cross-validated R² <= 0 (not interpreted).
    """

    models: dict
    unconstrained: dict
    frames: dict
    comparison: pd.DataFrame
    cv_folds: pd.DataFrame
    importance: pd.DataFrame
    effects: pd.DataFrame
    monotonicity: pd.DataFrame
    shap: dict
    skipped: dict
    validation: str = ""
    no_skill: list = field(default_factory=list)


def spatial_folds(x, y, *, n_splits: int, n_blocks: int, seed: int) -> np.ndarray:
    """Spatial-block folds of the samples: whole k-means clusters of the coordinates per fold.

    The project's one spatial-block fold helper (:func:`hmlib.ml.spatial_block_folds`, also used by
    the drivers, remote-sensing and accumulation cross-validation; block cross-validation, Roberts
    et al. 2017, https://doi.org/10.1111/ecog.02881).

    Parameters
    ----------
    x, y : sample coordinates.
    n_splits : number of folds.
    n_blocks : number of k-means blocks.
    seed : seeds the clustering.

    Returns
    -------
    ndarray of int, one fold per sample.
    """
    from .ml import spatial_block_folds

    if n_splits < 2 or len(np.asarray(x)) < 2 * n_splits:
        raise ValueError(f"need n_splits >= 2 and at least {2 * n_splits} samples, got {n_splits} folds and "
                         f"{len(np.asarray(x))} samples")
    return spatial_block_folds(x, y, n_folds=n_splits, n_blocks=max(n_blocks, n_splits), seed=seed)[0]


def fit_all(indices: pd.DataFrame, sites: pd.DataFrame, *, features: list[str], options: MobilityOptions,
            seed: int) -> MobilityResults:
    """Fit, cross-validate, compare and explain the mobility model of every metal in ``indices``.

    ``indices`` must carry ``total_mg_kg`` when ``options.include_total`` (merge the totals first).

    Parameters
    ----------
    indices : pandas.DataFrame
        Fractionation indices of all metals.
    sites : pandas.DataFrame
        Sample table with covariates (and x, y for spatial folds).
    features : list of str
        Covariate predictors.
    options : MobilityOptions
        Stage options.
    seed : int
        Random seed.

    Returns
    -------
    MobilityResults
        Models, unconstrained models, frames, constraint comparison, CV folds, importance, effects
        and monotonicity tables.
    """
    models, unc, frames, shaps, skipped = {}, {}, {}, {}, {}
    comp, folds, imp, eff, mono = [], [], [], [], []
    spatial = options.cv_scheme == "spatial_block"
    if spatial and not {"x", "y"} <= set(sites.columns):
        raise ValueError("spatial-block cross-validation needs the sample coordinates x and y in sites")
    for k, metal in enumerate(dict.fromkeys(indices["metal"])):
        X, y, ids = model_frame(indices, sites, metal=metal, features=features, include_total=options.include_total,
                                mobile_fraction=options.mobile_fraction)
        if X.shape[1] == 0:
            skipped[metal] = "no predictors (no numeric covariates and include_total is false)"
            continue
        if len(X) < max(options.min_samples, 2 * options.n_splits):
            skipped[metal] = f"{len(X)} samples with fractions and predictors; min_samples is {options.min_samples}"
            continue
        cons = theory_constraints(metal, list(X.columns), ph_feature=options.ph_feature if options.theory_constraints
                                  else None, total_feature="total_mg_kg" if options.theory_constraints else None,
                                  overrides=options.monotone_constraints.get(metal))
        s = seed + 1000 * k
        fl = None
        if spatial:
            xy = sites.reindex(ids)[["x", "y"]].to_numpy(float)
            fl = spatial_folds(xy[:, 0], xy[:, 1], n_splits=options.n_splits, n_blocks=options.n_spatial_blocks,
                               seed=seed)
        con, un, tab = compare_constraints(X, y, metal=metal, constraints=cons, seed=s, n_splits=options.n_splits,
                                           n_estimators=options.n_estimators, max_depth=options.max_depth,
                                           learning_rate=options.learning_rate, folds=fl)
        models[metal], unc[metal], frames[metal] = con, un, (X, y, ids)
        comp.append(tab)
        for variant, m in (("constrained", con), ("unconstrained", un)):
            folds.append(m.cv_metrics.assign(metal=metal, variant=variant))
            for f in m.features:
                eff.append({**effect_sign(m, X, f), "variant": variant, "constraint": cons.get(f, 0)})
        sv = shap_values(con, X)
        shaps[metal] = sv
        imp.append(shap_importance(con, X, sv=sv))
        for f in cons:
            mono.append(monotonicity_check(con, X, f, seed=s))

    def cat(parts):
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    folds_df = cat(folds)
    if not folds_df.empty:
        folds_df = folds_df[["metal", "variant", "fold", "n_test", "r2", "rmse", "mae"]]
    comparison = cat(comp)
    no_skill = []
    if not comparison.empty:
        c = comparison[comparison["variant"] == "constrained"]
        no_skill = c.loc[~(c["r2_mean"] > 0), "metal"].tolist()
    validation = (f"{options.n_splits}-fold spatial-block cross-validation ({options.n_spatial_blocks} k-means blocks "
                  "of the sample coordinates)" if spatial else f"{options.n_splits}-fold random cross-validation")
    return MobilityResults(models=models, unconstrained=unc, frames=frames, comparison=comparison, cv_folds=folds_df,
                           importance=cat(imp), effects=pd.DataFrame(eff), monotonicity=pd.DataFrame(mono),
                           shap=shaps, skipped=skipped, validation=validation, no_skill=no_skill)


def read_effect_truth(path) -> pd.DataFrame:
    """Read a generator's true effects (metal, feature, true_effect_pp_per_unit, true_sign) of a demo region.

    Parameters
    ----------
    path : str or path-like
        CSV file of true effects.

    Returns
    -------
    pandas.DataFrame
        The table (metal, feature, true_effect_pp_per_unit, true_sign, ...).
    """
    t = pd.read_csv(path)
    need = ["metal", "feature", "true_effect_pp_per_unit", "true_sign"]
    miss = [c for c in need if c not in t.columns]
    if miss:
        raise ValueError(f"{path}: missing {'the column' if len(miss) == 1 else 'the columns'} {', '.join(miss)}; "
                         f"expected the columns {', '.join(need)}")
    return t


def effect_truth_recovery(results: MobilityResults, truth: pd.DataFrame) -> pd.DataFrame:
    """Compare the effects the models recovered with a generator's known effects.

    The recovered effect is the least-squares slope of the partial dependence
    (:func:`effect_sign`, percent points per unit) of the unconstrained model (free to find either
    sign) and of the constrained model; the true effect is the generator's average marginal
    effect. Signs agree when both are non-zero and equal (a true sign of 0 is not scored).

    Parameters
    ----------
    results : :func:`fit_all`.
    truth : :func:`read_effect_truth`.

    Returns
    -------
    DataFrame metal, feature, true_effect_pp_per_unit, true_sign, recovered_unconstrained_pp_per_unit,
    recovered_constrained_pp_per_unit, sign_recovered (unconstrained; missing when the true sign is 0).
    """
    if results.effects.empty:
        return pd.DataFrame(columns=["metal", "feature", "true_effect_pp_per_unit", "true_sign",
                                     "recovered_unconstrained_pp_per_unit", "recovered_constrained_pp_per_unit",
                                     "sign_recovered"])
    e = results.effects.pivot_table(index=["metal", "feature"], columns="variant", values="slope").reset_index()
    e = e.rename(columns={"unconstrained": "recovered_unconstrained_pp_per_unit",
                          "constrained": "recovered_constrained_pp_per_unit"})
    j = truth[["metal", "feature", "true_effect_pp_per_unit", "true_sign"]].merge(e, on=["metal", "feature"],
                                                                                   how="inner")
    rec = np.sign(j["recovered_unconstrained_pp_per_unit"].to_numpy(float))
    j["sign_recovered"] = pd.array(np.where(j["true_sign"] != 0, rec == j["true_sign"].to_numpy(), False),
                                   dtype="boolean")
    j.loc[j["true_sign"] == 0, "sign_recovered"] = pd.NA
    return j[["metal", "feature", "true_effect_pp_per_unit", "true_sign", "recovered_unconstrained_pp_per_unit",
              "recovered_constrained_pp_per_unit", "sign_recovered"]]


def risk_thresholds(results: MobilityResults, *, options: MobilityOptions) -> pd.DataFrame:
    """Threshold of the mobile concentration per metal: the user's value or a quantile of today's.

    For a metal without ``risk_threshold_mg_kg``, the threshold is the ``risk_quantile`` of the
    predicted mobile concentration at the samples today, a relative (region-internal) threshold:
    the scenario then says how much of the region moves above today's upper quartile.

    Parameters
    ----------
    results : MobilityResults
        Fitted mobility models.
    options : MobilityOptions
        Stage options (risk_threshold_mg_kg, risk_quantile).

    Returns
    -------
    pandas.DataFrame
        Columns metal, threshold_mg_kg (mg/kg), basis.
    """
    rows = []
    for metal, m in results.models.items():
        X, _, _ = results.frames[metal]
        if metal in options.risk_threshold_mg_kg:
            rows.append({"metal": metal, "threshold_mg_kg": float(options.risk_threshold_mg_kg[metal]),
                         "basis": "set in params (stages.mobility.risk_threshold_mg_kg)"})
        elif "total_mg_kg" in X:
            mob = X["total_mg_kg"].to_numpy() * m.predict(X) / 100.0
            rows.append({"metal": metal, "threshold_mg_kg": float(np.nanquantile(mob, options.risk_quantile)),
                         "basis": f"quantile {options.risk_quantile:g} of today's predicted mobile concentration"})
    return pd.DataFrame(rows, columns=["metal", "threshold_mg_kg", "basis"])


def grid_frame(grid: pd.DataFrame | None, model: MobilityModel, *, total_column: str | None
               ) -> tuple[pd.DataFrame | None, str | None]:
    """Predictors of ``model`` on the grid, or (None, reason) when the grid lacks a covariate.

    Parameters
    ----------
    grid : pandas.DataFrame or None
        Prediction grid with covariate columns.
    model : MobilityModel
        Fitted model of one metal.
    total_column : str or None
        Grid column with the metal's total concentration (mg/kg).

    Returns
    -------
    tuple of (pandas.DataFrame or None, str or None)
        Predictors on the grid and None, or None and the reason.
    """
    if grid is None:
        return None, "the region has no prediction grid"
    X = pd.DataFrame(index=grid.index)
    for f in model.features:
        if f == "total_mg_kg":
            if not total_column or total_column not in grid.columns:
                return None, ("the grid has no total concentration column for this metal "
                              "(set stages.mobility.grid_total_columns)")
            X[f] = pd.to_numeric(grid[total_column], errors="coerce")
        elif f in grid.columns and pd.api.types.is_numeric_dtype(grid[f]):
            X[f] = grid[f].astype(float)
        else:
            return None, f"the grid has no numeric column {f!r}"
    return X, None


def scenario_tables(results: MobilityResults, *, sites: pd.DataFrame, grid: pd.DataFrame | None,
                    options: MobilityOptions, thresholds: pd.DataFrame, grid_area_column: str | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Baseline and SOC-scenario predictions at the samples and on the grid, summarized per metal and area.

    Parameters
    ----------
    results : MobilityResults
        Fitted mobility models.
    sites : pandas.DataFrame
        Sample table (x, y, group, covariates).
    grid : pandas.DataFrame or None
        Prediction grid, if any.
    options : MobilityOptions
        Stage options (scenario rate and years, grid total columns).
    thresholds : pandas.DataFrame
        Output of :func:`risk_thresholds`.
    grid_area_column : str or None, optional
        Grid column defining areas for the summary.

    Returns
    -------
    (summary, cells, notes): ``summary`` one row per metal, domain (samples/grid) and area
    (``whole region``, plus each ``group`` of the samples and each value of ``grid_area_column``
    on the grid when given): n, SOC today and after the scenario, mean
    mobile share today/scenario and its change (percent points), mean mobile concentration
    today/scenario, share of samples/cells at risk today/scenario (percent) and the share whose
    scenario SOC exceeds the training range; ``cells`` the per-row predictions with x, y;
    ``notes`` metal -> reason a domain was left out.
    """
    if options.soc_feature is None:
        raise ValueError("the scenario needs stages.mobility.soc_feature (the SOC or OM covariate)")
    thr = thresholds.set_index("metal")["threshold_mg_kg"].to_dict()
    rows, cells, notes = [], [], {}
    for metal, m in results.models.items():
        if metal in results.no_skill:
            notes[metal] = "the model has no cross-validated skill, so its scenario is not shown"
            continue
        if options.soc_feature not in m.features:
            notes[metal] = f"{options.soc_feature!r} is not a predictor of the model"
            continue
        if metal not in thr:
            notes[metal] = "no mobilization threshold (the model has no total concentration)"
            continue
        X, _, ids = results.frames[metal]
        domains = [("samples", X, sites.reindex(ids))]
        GX, why = grid_frame(grid, m, total_column=options.grid_total_columns.get(metal))
        if GX is not None:
            domains.append(("grid", GX, grid))
        else:
            notes[metal] = f"grid: {why}"
        for domain, DX, meta in domains:
            total = DX["total_mg_kg"].to_numpy()
            sc = scenario_change(m, DX, soc_feature=options.soc_feature, total_mg_kg=total,
                                 threshold_mg_kg=thr[metal], rate_per_year=options.soc_increase_per_year,
                                 years=options.horizon_years)
            sc.insert(0, "domain", domain)
            sc.insert(0, "metal", metal)
            sc["x"] = meta["x"].to_numpy()
            sc["y"] = meta["y"].to_numpy()
            acol = "group" if domain == "samples" else grid_area_column
            has_area = acol is not None and acol in meta.columns
            sc["area"] = meta[acol].astype(str).to_numpy() if has_area else "whole region"
            cells.append(sc)
            groups = [("whole region", sc)]
            if has_area:
                groups += list(sc.groupby("area", sort=True))
            for area, g in groups:
                rows.append({
                    "metal": metal, "domain": domain, "area": area, "n": len(g),
                    "soc_mean_base": g.soc_base.mean(), "soc_mean_scenario": g.soc_scenario.mean(),
                    "share_mean_base_percent": g.share_base_percent.mean(),
                    "share_mean_scenario_percent": g.share_scenario_percent.mean(),
                    "delta_share_mean_pp": g.delta_share_pp.mean(),
                    "delta_share_min_pp": g.delta_share_pp.min(), "delta_share_max_pp": g.delta_share_pp.max(),
                    "mobile_mean_base_mg_kg": g.mobile_base_mg_kg.mean(),
                    "mobile_mean_scenario_mg_kg": g.mobile_scenario_mg_kg.mean(),
                    "threshold_mg_kg": thr[metal],
                    "at_risk_base_percent": 100 * g.at_risk_base.mean(),
                    "at_risk_scenario_percent": 100 * g.at_risk_scenario.mean(),
                    "soc_beyond_training_percent": 100 * g.soc_beyond_training.mean(),
                })
    summary = pd.DataFrame(rows)
    return summary, (pd.concat(cells, ignore_index=True) if cells else pd.DataFrame()), notes


_FEATURE_WORDS = {"ph": "pH", "soc_percent": "SOC (%)", "soc_pct": "SOC (%)", "om_percent": "organic matter (%)",
                  "om_pct": "organic matter (%)", "clay_percent": "clay (%)", "clay_pct": "clay (%)",
                  "cec_cmol_kg": "CEC (cmol/kg)", "total_mg_kg": "total concentration (mg/kg)"}


def feature_label(name: str) -> str:
    """Reader's name of a predictor (``soc_percent`` -> "SOC (%)", ``total_mg_kg`` -> "total concentration
    (mg/kg)"); unknown names lose their underscores.

    Parameters
    ----------
    name : str
        Predictor column.

    Returns
    -------
    str
        Words for the report.
    """
    if name in _FEATURE_WORDS:
        return _FEATURE_WORDS[name]
    for suffix, unit in (("_percent", "%"), ("_pct", "%"), ("_mg_kg", "mg/kg"), ("_cmol_kg", "cmol/kg"), ("_m", "m")):
        if name.endswith(suffix):
            return f"{name[: -len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


def importance_display(importance: pd.DataFrame) -> pd.DataFrame:
    """Metal x feature table of mean |SHAP| (pp) with the effect direction, e.g. ``13.2 (-)``; constrained features marked ``*``.

    Parameters
    ----------
    importance : pandas.DataFrame
        Output of :func:`shap_importance` for all metals.

    Returns
    -------
    pandas.DataFrame
        Column Metal then one formatted string column per feature, ``'<feature> (pp)'``.
    """
    sym = {1: "+", -1: "\u2212", 0: "0"}
    cell = importance.assign(txt=[f"{v:.3g} ({sym[int(d)]}){'*' if c else ''}" for v, d, c in
                                  zip(importance["mean_abs_shap_pp"], importance["direction"], importance["constraint"])])
    order = importance.groupby("feature")["mean_abs_shap_pp"].mean().sort_values(ascending=False).index
    w = cell.pivot(index="metal", columns="feature", values="txt").reindex(
        index=list(dict.fromkeys(importance["metal"])), columns=order)
    w.columns = [f"{feature_label(c)}: pp" for c in w.columns]
    return w.reset_index().rename(columns={"metal": "Metal"})


def fractionation_summary(indices: pd.DataFrame) -> pd.DataFrame:
    """Per-metal means of the fraction shares and indices (reader's version of the fractionation table).

    Parameters
    ----------
    indices : pandas.DataFrame
        Fractionation indices (sample_id, metal, p_F1..p_F4, mf12_percent, rac_percent, rsp).

    Returns
    -------
    pandas.DataFrame
        Columns Metal, n, F1-F4 (%), MF (F1+F2) (%), RAC median (%), RSP median (-).
    """
    agg = indices.groupby("metal", sort=False).agg(
        n=("sample_id", "size"), F1=("p_F1", "mean"), F2=("p_F2", "mean"), F3=("p_F3", "mean"), F4=("p_F4", "mean"),
        MF12=("mf12_percent", "mean"), RAC_median=("rac_percent", "median"), RSP_median=("rsp", "median"))
    agg = agg.reset_index()
    agg.columns = ["Metal", "n", "F1 (%)", "F2 (%)", "F3 (%)", "F4 (%)", "MF (F1+F2) (%)", "RAC median (%)",
                   "RSP median (-)"]
    return agg


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------
_FRAC_COLORS = {"F1": "#d7301f", "F2": "#fc8d59", "F3": "#91bfdb", "F4": "#4575b4"}
_RAC_COLORS = ["#1a9850", "#a6d96a", "#fee08b", "#fc8d59", "#d73027"]


def plot_fractions(indices: pd.DataFrame):
    """Stacked bars of the mean share of F1-F4 per metal, and per-sample stacked bars per metal.

    Parameters
    ----------
    indices : pandas.DataFrame
        Fractionation indices with sample_id, metal, p_F1..p_F4.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    metals = list(dict.fromkeys(indices["metal"]))
    fig = plt.figure(figsize=(7.0, 2.2 + 1.1 * np.ceil(len(metals) / 3)))
    gs = fig.add_gridspec(1 + int(np.ceil(len(metals) / 3)), 3)
    ax0 = fig.add_subplot(gs[0, :])
    mean = indices.groupby("metal", sort=False)[[f"p_{f}" for f in BCR_FRACTIONS]].mean().reindex(metals)
    left = np.zeros(len(metals))
    for f in BCR_FRACTIONS:
        ax0.barh(metals, mean[f"p_{f}"], left=left, color=_FRAC_COLORS[f], label=f"{f} {BCR_NAMES[f]}")
        left += mean[f"p_{f}"].to_numpy()
    ax0.set_xlim(0, 100)
    ax0.invert_yaxis()
    ax0.set_xlabel("mean share of the sum of fractions (%)", fontsize=8)
    ax0.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax0.tick_params(labelsize=7)
    for i, metal in enumerate(metals):
        ax = fig.add_subplot(gs[1 + i // 3, i % 3])
        g = indices[indices.metal == metal].sort_values("p_F1", ascending=False)
        bottom = np.zeros(len(g))
        x = np.arange(len(g))
        for f in BCR_FRACTIONS:
            ax.bar(x, g[f"p_{f}"], bottom=bottom, width=1.0, color=_FRAC_COLORS[f], linewidth=0)
            bottom += g[f"p_{f}"].to_numpy()
        ax.set_title(f"{metal} (n = {len(g)})", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
        ax.set_xlabel("samples, by F1 share", fontsize=7)
        if i % 3 == 0:
            ax.set_ylabel("share (%)", fontsize=7)
    fig.tight_layout()
    return fig


def plot_rac(summary: pd.DataFrame):
    """Horizontal stacked bars: share of samples in each RAC class per metal.

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of :func:`rac_summary`.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    metals = list(dict.fromkeys(summary["metal"]))
    classes = list(dict.fromkeys(summary["rac_class"]))
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(metals) + 1.2))
    left = np.zeros(len(metals))
    for j, c in enumerate(classes):
        v = summary[summary.rac_class == c].set_index("metal").reindex(metals)["share_percent"].fillna(0).to_numpy()
        ax.barh(metals, v, left=left, color=_RAC_COLORS[j % len(_RAC_COLORS)], label=c)
        left += v
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("share of samples (%)", fontsize=8)
    ax.legend(fontsize=7, ncol=len(classes), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def plot_shap(results: MobilityResults, *, max_metals: int = 6, metals: list[str] | None = None):
    """SHAP summary per metal: each point is a sample, x = SHAP value, colour = feature value (rank-scaled).

    Parameters
    ----------
    results : :func:`fit_all`.
    max_metals : at most this many panels.
    metals : the metals shown (default: every modelled metal).

    Returns
    -------
    matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    metals = [m for m in (metals if metals is not None else list(results.shap)) if m in results.shap][:max_metals]
    ncols = min(3, len(metals))
    nrows = int(np.ceil(len(metals) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0, 2.2 * nrows + 0.4), squeeze=False, layout="constrained")
    rng = np.random.default_rng(0)  # vertical jitter only (display)
    sc = None
    for ax, metal in zip(axes.ravel(), metals):
        sv = results.shap[metal]
        X = results.frames[metal][0]
        order = sv.abs().mean().sort_values(ascending=True).index
        for j, f in enumerate(order):
            v = X[f].rank(pct=True).to_numpy()
            sc = ax.scatter(sv[f], j + rng.uniform(-0.25, 0.25, len(sv)), c=v, cmap="coolwarm", s=3, vmin=0, vmax=1,
                            linewidths=0)
        labels = [feature_label(f) + ("" if results.models[metal].constraints.get(f, 0) == 0 else
                       f" ({'+' if results.models[metal].constraints[f] > 0 else '-'})") for f in order]
        ax.set_yticks(range(len(order)), labels, fontsize=7)
        ax.axvline(0, color="0.5", lw=0.6)
        ax.set_title(metal, fontsize=8)
        ax.set_xlabel("SHAP value (percent points)", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes.ravel()[len(metals):]:
        ax.set_visible(False)
    if sc is not None:
        cb = fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.6, pad=0.02)
        cb.set_label("feature value (rank: low to high)", fontsize=7)
        cb.ax.tick_params(labelsize=7)
    return fig


def plot_maps(cells: pd.DataFrame, column: str, *, label: str, coordinate_unit: str = "m", diverging: bool = False,
              domain: str = "grid", crs: str | None = "local"):
    """One map panel per metal of ``column`` from :func:`scenario_tables` cells (grid, else samples).

    Parameters
    ----------
    cells : pandas.DataFrame
        Per-row predictions of :func:`scenario_tables` (metal, domain, x, y, ...).
    column : str
        Column to map.
    label : str
        Colour bar label.
    coordinate_unit : str, default 'm'
        Coordinate unit (axis labels).
    diverging : bool, default False
        Use a diverging colour map centred on 0.
    domain : str, default 'grid'
        Domain of the cells to map (``'grid'`` or ``'samples'``).
    crs : str or None, default 'local'
        Coordinate system of x and y (note, scale bar and north arrow of :func:`hmlib.plots.decorate_map`).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    from .plots import decorate_map

    c = cells[cells.domain == domain]
    metals = list(dict.fromkeys(c["metal"]))
    ncols = min(3, len(metals))
    nrows = int(np.ceil(len(metals) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0, 2.2 * nrows), squeeze=False)
    for ax, metal in zip(axes.ravel(), metals):
        g = c[c.metal == metal]
        v = g[column].to_numpy(float)
        if diverging:
            lim = max(float(np.nanmax(np.abs(v))), 1e-9)
            norm, cmap = TwoSlopeNorm(0.0, -lim, lim), "RdBu_r"
        else:
            norm, cmap = None, "viridis"
        ux, uy = np.unique(g.x), np.unique(g.y)
        if domain == "grid" and len(ux) * len(uy) == len(g) and len(ux) > 1 and len(uy) > 1:
            # a regular grid: draw cells edge to edge
            Z = pd.DataFrame({"x": g.x.to_numpy(), "y": g.y.to_numpy(), "v": v}).pivot(index="y", columns="x",
                                                                                       values="v")
            sc = ax.pcolormesh(Z.columns.to_numpy(), Z.index.to_numpy(), Z.to_numpy(), cmap=cmap, norm=norm,
                               shading="nearest")
        else:
            sc = ax.scatter(g.x, g.y, c=v, s=4 if domain == "grid" else 10, cmap=cmap, norm=norm, linewidths=0)
        ax.set_aspect("equal")
        ax.set_title(metal, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        cb = fig.colorbar(sc, ax=ax, shrink=0.8)
        cb.ax.tick_params(labelsize=7)
        decorate_map(ax, crs=crs, coordinate_unit=coordinate_unit, note=False)
    for ax in axes.ravel()[len(metals):]:
        ax.set_visible(False)
    fig.suptitle(label, fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    from .plots import crs_note

    fig.text(0.01, 0.0, crs_note(crs, coordinate_unit), fontsize=7, color="0.3", ha="left", va="bottom")
    return fig


def methods_text(*, scheme: str, tolerance_percent: float, mobile_fraction: str, features: list[str],
                 include_total: bool, n_splits: int, rate_per_year: float, years: int, soc_feature: str | None,
                 risk_quantile: float, validation: str | None = None) -> str:
    """Methods paragraph (markdown with formulas and citations) of the mobility section.

    Parameters
    ----------
    scheme : extraction scheme of the input ("bcr" or "tessier").
    tolerance_percent : accepted recovery deviation.
    mobile_fraction : "F1" or "F1+F2".
    features : covariate predictors.
    include_total : whether the total concentration is a predictor.
    n_splits : cross-validation folds.
    rate_per_year, years : the soil-carbon scenario.
    soc_feature : the SOC or OM covariate.
    risk_quantile : quantile of the default mobilization threshold.
    validation : the cross-validation scheme in words (default: random folds).

    Returns
    -------
    str (markdown).
    """
    validation = validation or f"{n_splits}-fold random cross-validation"
    spatial = "spatial-block" in validation
    mob = "F_1" if mobile_fraction == "F1" else "F_1 + F_2"
    feats = ", ".join(feature_label(f) for f in features) + (", total concentration" if include_total else "")
    tess = ("Fractions were reported with the five-step Tessier scheme [@tessier1979] and mapped onto the "
            "BCR fractions by reagent correspondence (exchangeable + carbonate-bound to F1, Fe-Mn oxide to F2, "
            "organic to F3, residual to F4) [@gleyzes2002; @rauret1998]; the mapping is approximate because "
            "the reagents differ. ") if scheme == "tessier" else ""
    factor = (1 + rate_per_year) ** years
    return f"""
**Fractionation.** Sequential-extraction fractions follow the BCR scheme [@ure1993; @rauret1999]: F1
acid-soluble/exchangeable, F2 reducible, F3 oxidizable, F4 residual. {tess}Fractions must be non-negative and
complete; the recovery $R = 100\\,(F_1+F_2+F_3+F_4)/C_\\mathrm{{total}}$ is checked against the total
concentration and pairs with $|R - 100| > {tolerance_percent:g}$ % are reported. With $S = \\sum_i F_i$, the mobility
factors are $\\mathrm{{MF}} = 100\\,F_1/S$ and $100\\,(F_1+F_2)/S$ [@salbu1998; @kabala2001]; the risk assessment
code $\\mathrm{{RAC}} = 100\\,F_1/S$ is classed as no risk (< 1 %), low (1-10 %), medium (> 10-30 %), high
(> 30-50 %) and very high (> 50 %) [@perin1985; @jain2004] (a value of exactly 10 % is low, 10.5 % medium); the ratio
of secondary to primary phases is $\\mathrm{{RSP}} = (F_1+F_2+F_3)/F_4$ [@chen2000rsp].

**Mobility model.** The mobile share $p = 100\\,({mob})/S$ was predicted from {feats} with gradient-boosted trees
(XGBoost) [@chen2016xgboost] following the theory-guided approach of @qi2025mobility: where theory gives the sign,
monotone constraints force the prediction to fall with pH for cations and rise with pH for oxyanion-forming
elements, and to rise with the total concentration [@sauve2000; @smith1998arsenic]; SOC is left unconstrained
because solid organic matter binds metals while dissolved organic carbon mobilizes them. Each model was assessed,
before any interpretation, by {validation}{" [@roberts2017cv], so that held-out samples have no training neighbours in their block" if spatial else ""}
($R^2$, RMSE, MAE; the same folds with and without constraints); only models with a cross-validated $R^2$ above 0
were explained, with TreeSHAP values [@lundberg2020tree] and partial dependence. Mobilization risk is the mobile concentration
$C_\\mathrm{{mob}} = C_\\mathrm{{total}}\\,p/100$ above a threshold (set per metal, otherwise the
{risk_quantile:g} quantile of today's predicted $C_\\mathrm{{mob}}$ at the samples).

**Soil-carbon scenario.** Following the "4 per mille" initiative [@minasny2017], SOC
({feature_label(soc_feature or "SOC")}) was raised by {100 * rate_per_year:g} % per year, compounding over {years} years
($\\mathrm{{SOC}}_t = \\mathrm{{SOC}}_0 (1 + {rate_per_year:g})^{{{years}}}$, a factor of {factor:.3f}), all other
predictors unchanged, and the models predicted the change of the mobile share and of the mobilization risk
[@qi2025mobility]. Tree models do not extrapolate: beyond the largest SOC of the training data the predicted
effect stays flat, so changes there are lower bounds.
"""


def results_text(indices: pd.DataFrame, comparison: pd.DataFrame, importance: pd.DataFrame,
                 scenario: pd.DataFrame | None, *, horizon_years: int, validation: str | None = None,
                 no_skill: list | None = None, truth: pd.DataFrame | None = None) -> str:
    """Results paragraphs written from the stage's tables (no numbers that are not in them).

    The model paragraph states the validation scheme and the cross-validated skill before any
    interpretation; metals without skill (R² <= 0) get no driver statement.

    Parameters
    ----------
    indices : :func:`fractionation_indices`.
    comparison : :attr:`MobilityResults.comparison`.
    importance : :attr:`MobilityResults.importance`.
    scenario : scenario summary (:func:`scenario_tables`) or None.
    horizon_years : scenario horizon.
    validation : cross-validation scheme in words.
    no_skill : metals without cross-validated skill.
    truth : :func:`effect_truth_recovery` (generated demo regions) or None.

    Returns
    -------
    str (markdown).
    """
    no_skill = list(no_skill or [])
    ms = indices.groupby("metal")["rac_percent"].mean().sort_values(ascending=False)
    parts = [f"**Fractionation.** Mean RAC (F1 share) ranked {' > '.join(ms.index)} "
             f"({', '.join(f'{m} {v:.1f} %' for m, v in ms.items())})."]
    if not comparison.empty:
        c = comparison[comparison.variant == "constrained"].set_index("metal")
        u = comparison[comparison.variant == "unconstrained"].set_index("metal")
        parts.append(f"**Mobility model: skill first.** Validation: {validation or 'cross-validation'}. "
                     "Cross-validated $R^2$ of the constrained models: "
                     + ", ".join(f"{m} {r:.2f} ± {sd:.2f}" for m, r, sd in zip(c.index, c.r2_mean, c.r2_sd))
                     + f"; the unconstrained models differed by at most {float((c.r2_mean - u.r2_mean).abs().max()):.3f} "
                     f"but moved against the theory sign by up to {float(u.max_theory_violation_pp.max()):.2f} "
                     "percentage points somewhere in the data range, which the constrained models cannot do."
                     + (f" {', '.join(no_skill)} showed no transferable skill ($R^2 \\le 0$): "
                        f"{'its' if len(no_skill) == 1 else 'their'} predictors are not interpreted and "
                        f"{'its' if len(no_skill) == 1 else 'their'} scenario is not shown." if no_skill else ""))
    if not importance.empty:
        top = importance[(importance["rank"] == 1) & ~importance["metal"].isin(no_skill)].set_index("metal")["feature"]
        if len(top):
            parts.append("Among the models with skill, the most important predictor (mean |SHAP|) was "
                         + "; ".join(f"{feature_label(f)} for {', '.join(top[top == f].index)}"
                                     for f in dict.fromkeys(top)) + ".")
    if truth is not None and not truth.empty:
        ph = truth[truth["feature"].str.lower().str.contains("ph")]
        if not ph.empty:
            parts.append("**Known truth (generated data).** The unconstrained models recovered the sign of the true "
                         f"pH effect for {count_of(ph['sign_recovered'].fillna(False).sum(), len(ph), 'metals')}: "
                         + ", ".join(f"{r.metal} {r.recovered_unconstrained_pp_per_unit:+.2f} against a true "
                                     f"{r.true_effect_pp_per_unit:+.2f} pp per pH unit" for r in ph.itertuples()) + ".")
    if scenario is not None and not scenario.empty:
        w = scenario[scenario.area == "whole region"]
        dom = "grid" if (w.domain == "grid").any() else "samples"
        w = w[w.domain == dom].set_index("metal")
        parts.append(f"After {horizon_years} years of the soil-carbon scenario the mean mobile share changed by "
                     + ", ".join(f"{m} {v:+.2f} pp" for m, v in w.delta_share_mean_pp.items())
                     + f" ({'grid cells' if dom == 'grid' else 'samples'}), and the share at risk by "
                     + ", ".join(f"{m} {b:.1f} → {s:.1f} %" for m, b, s in
                                 zip(w.index, w.at_risk_base_percent, w.at_risk_scenario_percent)) + ".")
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------
# reader's text, one paragraph per part of the section (composed by hmlib.stages.mobility)
# ----------------------------------------------------------------------------------------------
def fractionation_text(indices: pd.DataFrame, rac: pd.DataFrame, *, refs: str) -> str:
    """What the fractions mean: which metals sit in the exchangeable pool (high RAC) and which are locked in the
    residual fraction, and how the risk class follows from that.

    Parameters
    ----------
    indices : :func:`fractionation_indices` (with recovery columns).
    rac : :func:`rac_summary`.
    refs : cross-references to the displays.

    Returns
    -------
    str (markdown).
    """
    g = indices.groupby("metal", sort=False)
    mean_rac = g["rac_percent"].mean().sort_values(ascending=False)
    f4 = g["p_F4"].mean()
    hi = rac[rac["rac_class"].astype(str).str.contains("high")].groupby("metal")["share_percent"].sum()
    top, low = mean_rac.index[0], mean_rac.index[-1]
    txt = (f"**Results** ({refs}). {top} is the most mobile metal: on average {mean_rac[top]:.1f} % of it is "
           f"acid-soluble or exchangeable, and {hi.get(top, 0):.0f} % of the samples fall in the high or very high "
           f"risk class. {low} is the least mobile ({mean_rac[low]:.1f} % in F1, {f4[low]:.0f} % residual), so its "
           "total concentration overstates what plants and water can take up. The ranking by mean RAC is "
           + ", ".join(f"{m} {v:.1f} %" for m, v in mean_rac.items()) + ".")
    mid = [m for m in mean_rac.index if 10 < mean_rac[m] <= 30]
    if mid:
        txt += (f" {', '.join(mid)} {'is' if len(mid) == 1 else 'are'} in the medium class on average, but the "
                "class of a single sample can differ; the risk of a site follows its own fractions, not the mean.")
    return txt


def skill_text(comparison: pd.DataFrame, *, validation: str, no_skill: list | None, ref: str) -> str:
    """The mobility models' cross-validated skill, stated before any interpretation, and what the constraints
    cost or gain.

    Parameters
    ----------
    comparison : :attr:`MobilityResults.comparison`.
    validation : the cross-validation scheme in words.
    no_skill : metals without transferable skill.
    ref : cross-reference to the skill table.

    Returns
    -------
    str (markdown).
    """
    no_skill = list(no_skill or [])
    c = comparison[comparison.variant == "constrained"].set_index("metal")
    u = comparison[comparison.variant == "unconstrained"].set_index("metal")
    d = (c.r2_mean - u.r2_mean.reindex(c.index))
    txt = (f"**Skill first** ({ref}). {validation[0].upper() + validation[1:]}. Cross-validated R² of the "
           "constrained models (mean ± SD over folds): "
           + ", ".join(f"{m} {r:.2f} ± {sd:.2f}" for m, r, sd in zip(c.index, c.r2_mean, c.r2_sd)) + ". ")
    good = c[(c.r2_mean >= 0.5) & ~c.index.isin(no_skill)].index.tolist()
    fair = c[(c.r2_mean > 0) & (c.r2_mean < 0.5) & ~c.index.isin(no_skill)].index.tolist()
    if good:
        txt += f"Soil properties explain at least half of the variation of the mobile share of {', '.join(good)}"
        txt += (f"; for {', '.join(fair)} less than half, so their predictions and scenario are indicative only. "
                if fair else ". ")
    elif fair:
        txt += f"For {', '.join(fair)} the models explain less than half of the variation: predictions are indicative. "
    txt += (f"The monotone constraints changed R² by {d.min():+.3f} to {d.max():+.3f}, while the unconstrained "
            f"models moved against the theory sign by up to {float(u.max_theory_violation_pp.max()):.2f} percent "
            "points somewhere in the data range: the constraints cost no skill and remove effects that chemistry "
            "rules out.")
    if no_skill:
        txt += (f" {', '.join(no_skill)} showed no transferable skill ($R^2 \\le 0$): "
                f"{'its' if len(no_skill) == 1 else 'their'} predictors are not interpreted and "
                f"{'its' if len(no_skill) == 1 else 'their'} scenario is not shown.")
    return txt


def truth_text(truth: pd.DataFrame, *, ph_feature: str | None, ref: str) -> str:
    """Generated demo regions: the recovered pH effect (and the other predictors' signs) against the
    generator's truth, in words.

    Parameters
    ----------
    truth : :func:`effect_truth_recovery`.
    ph_feature : the pH covariate, or None.
    ref : cross-reference to the table.

    Returns
    -------
    str (markdown).
    """
    scored = truth[truth["true_sign"] != 0]
    ok = int(scored["sign_recovered"].fillna(False).astype(bool).sum())
    txt = (f"**Check against the generator** ({ref}). These data were generated with known effects of the soil "
           f"properties on the mobile share. Across all predictors with a true effect, the unconstrained models "
           f"recovered the sign in {ok} of {len(scored)} cases")
    ph = truth[truth["feature"] == ph_feature] if ph_feature else truth.iloc[0:0]
    if len(ph):
        ratio = (ph["recovered_unconstrained_pp_per_unit"] / ph["true_effect_pp_per_unit"]).replace([np.inf, -np.inf],
                                                                                                   np.nan)
        txt += ("; for pH, the effect the theory constrains, "
                + ", ".join(f"{r.metal} {r.recovered_unconstrained_pp_per_unit:+.1f} against a true "
                            f"{r.true_effect_pp_per_unit:+.1f} pp per pH unit" for r in ph.itertuples())
                + f". The recovered slopes are {100 * ratio.min():.0f}-{100 * ratio.max():.0f} % of the true ones: "
                  "tree models flatten effects at the edges of the data, so their partial-dependence slopes "
                  "understate strong effects, while the signs, which the interpretation relies on, are right")
    return txt + "."


def drivers_text(importance: pd.DataFrame, *, ref: str) -> str:
    """The most important predictors of the models with skill, with the direction of their effect.

    Parameters
    ----------
    importance : :attr:`MobilityResults.importance` restricted to the metals with skill.
    ref : cross-references to the displays.

    Returns
    -------
    str (markdown).
    """
    top = importance[importance["rank"] == 1]
    if top.empty:
        return ""
    parts = []
    for (f, dirn), g in top.groupby([top["feature"], top["direction"]], sort=False):
        word = {1: "rises", -1: "falls"}.get(int(dirn), "changes")
        parts.append(f"{feature_label(f)} for {', '.join(g['metal'])} (the mobile share {word} with it; mean "
                     f"|SHAP| {_rng(g['mean_abs_shap_pp'])} percent points)")
    return (f"**Drivers** ({ref}). Among the models with skill, the most important predictor is "
            + "; ".join(parts) + ". These are associations learned by the models under the stated constraints, "
            "consistent with the chemistry where the sign is constrained, not measured causes.")


def _rng(v) -> str:
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    return f"{lo:.2g}" if f"{lo:.2g}" == f"{hi:.2g}" else f"{lo:.2g}-{hi:.2g}"


def constraints_label(text: str) -> str:
    """Reader's version of a constraint list (``"ph:-, total_mg_kg:+"`` -> "pH falling, total concentration
    (mg/kg) rising"; ``"none"`` stays).

    Parameters
    ----------
    text : str
        Constraints as in :attr:`MobilityResults.comparison`.

    Returns
    -------
    str
        Words for the report.
    """
    if not isinstance(text, str) or ":" not in text:
        return text
    out = []
    for part in text.split(","):
        f, _, sign = part.strip().rpartition(":")
        out.append(f"{feature_label(f)} {'rising' if sign.strip() == '+' else 'falling'}")
    return ", ".join(out)


def scenario_text(scenario: pd.DataFrame, *, horizon_years: int, domain: str, refs: str,
                  comparison: pd.DataFrame | None = None) -> str:
    """The soil-carbon scenario's effect on the mobile share and on the share at risk, with the caveat of
    extrapolation.

    Parameters
    ----------
    scenario : :func:`scenario_tables` summary.
    horizon_years : scenario horizon.
    domain : "grid" or "samples" (the one shown).
    refs : cross-references to the displays.
    comparison : :attr:`MobilityResults.comparison` (the cross-validated RMSE the change is compared with).

    Returns
    -------
    str (markdown).
    """
    w = scenario[(scenario.area == "whole region") & (scenario.domain == domain)].set_index("metal")
    if w.empty:
        return ""
    unit = "grid cells" if domain == "grid" else "samples"
    big = w.delta_share_mean_pp.abs().idxmax()
    txt = (f"**Soil-carbon scenario** ({refs}). After {horizon_years} years the mean mobile share changes by "
           + ", ".join(f"{m} {v:+.2f}" for m, v in w.delta_share_mean_pp.items()) + " percent points, and the share "
           f"of {unit} at risk by " + ", ".join(f"{m} {b:.1f} → {s:.1f} %" for m, b, s in
                                               zip(w.index, w.at_risk_base_percent, w.at_risk_scenario_percent))
           + ".")
    if comparison is not None and not comparison.empty:
        rm = comparison[(comparison.variant == "constrained")].set_index("metal")["rmse_mean"]
        if big in rm.index:
            d = abs(w.loc[big, "delta_share_mean_pp"])
            txt += (f" The largest change, for {big} ({d:.2f} percent points), is "
                    f"{'well below' if d < 0.5 * rm[big] else 'comparable to'} the model's cross-validated error of a "
                    f"single prediction ({rm[big]:.2f} percent points); as a regional mean it is estimated more "
                    "precisely than that, but it rests on the model's learned soil-carbon effect.")
    beyond = w.soc_beyond_training_percent.max()
    if beyond > 0:
        txt += (f" Up to {beyond:.0f} % of the {unit} reach soil carbon beyond the training data, where the trees "
                "hold the effect flat, so the change there is a lower bound")
    return txt.rstrip(".") + "."


__all__ += ["constraints_label", "fractionation_text", "skill_text", "truth_text", "drivers_text", "scenario_text"]
