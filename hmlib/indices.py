"""Pollution indices of soils, sediments and water, with their class tables.

Single-metal indices (one value per sample and metal): contamination factor CF, geoaccumulation
index Igeo, enrichment factor EF and Hakanson's potential ecological risk factor Er.
Integrated indices (one value per sample, written with metal ``"all"``): degree of
contamination Cdeg, pollution load index PLI, Nemerow integrated index, Hakanson's potential
ecological risk index PERI and, for water, the heavy metal pollution index HPI.

Every formula is a short NumPy/pandas expression written here (no maintained library offers
these indices with cited class tables); each is tested against hand-computed values. The
background ``B`` of the indices is an argument: a Series (one value per metal: a reference
set or a static baseline) or a DataFrame shaped like the concentrations (one value per
sample and metal: the adaptive background). Class tables, toxic response factors and water
standards are cited CSV files under ``hmlib/data/reference`` (kinds ``index_classes``,
``toxic_response``, ``water_standard``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .errors import plural
from .reference import load_reference
from .units import convert

__all__ = [
    "SINGLE_METAL_INDICES",
    "INTEGRATED_INDICES",
    "DEFAULT_CLASS_SETS",
    "contamination_factor",
    "degree_of_contamination",
    "geoaccumulation_index",
    "enrichment_factor",
    "pollution_load_index",
    "nemerow_index",
    "ecological_risk_factor",
    "potential_ecological_risk_index",
    "heavy_metal_pollution_index",
    "load_index_classes",
    "classify",
    "toxic_response_factors",
    "water_standard_values",
    "compute_indices",
    "MAJOR_ELEMENTS",
    "assessed_metals",
    "scaled_first_limits",
    "integrated_class_tables",
    "compute_water_indices",
    "index_class_shares",
    "index_summary",
    "baseline_background",
    "stratified_baseline_background",
    "adaptive_background_wide",
    "solid_backgrounds",
    "methods_text",
    "plot_class_maps",
    "plot_class_shares",
]

SINGLE_METAL_INDICES = ("CF", "Igeo", "EF", "Er")
INTEGRATED_INDICES = ("Cdeg", "PLI", "Nemerow", "PERI", "HPI")

#: index -> reference set (kind ``index_classes``) holding its default class table
DEFAULT_CLASS_SETS: dict[str, str] = {
    "CF": "Hakanson_1980",
    "Cdeg": "Hakanson_1980",
    "Er": "Hakanson_1980",
    "PERI": "Hakanson_1980",
    "Igeo": "Igeo_Mueller1969",
    "EF": "EF_Sutherland2000",
    "PLI": "PLI_Tomlinson1980",
    "Nemerow": "Nemerow_SEPA2004",
    "HPI": "HPI_Mohan1996",
}



# --------------------------------------------------------------------------------------------
# input checks and alignment
def _as_frame_or_array(x, name: str):
    if isinstance(x, (pd.DataFrame, pd.Series)):
        return x
    arr = np.asarray(x, dtype=float)
    return arr


def _check_concentration(c, name: str) -> None:
    vals = np.asarray(c, dtype=float)
    bad = np.isfinite(vals) & (vals < 0)
    if bad.any():
        raise ValueError(f"{name} must be >= 0 (NaN for missing); got {plural(int(bad.sum()), 'negative value')}, "
                         f"e.g. {vals[bad].ravel()[0]}")
    if np.isinf(vals).any():
        raise ValueError(f"{name} must be finite or NaN; got an infinite value")


def _check_background(b, name: str) -> None:
    """Backgrounds must be > 0 and finite; NaN (unknown, e.g. no adaptive prediction) gives NaN indices."""
    vals = np.asarray(b, dtype=float)
    bad = np.isinf(vals) | (np.isfinite(vals) & (vals <= 0))
    if bad.any():
        raise ValueError(f"{name} must be finite and > 0 (NaN for unknown); got {vals[bad].ravel()[0]!r} "
                         f"({plural(int(bad.sum()), 'bad value')})")


def _ratio(concentration, background, *, c_name: str, b_name: str):
    """``concentration / background`` with pandas alignment and shape checks.

    A DataFrame of concentrations (samples x metals) is divided by a Series (per metal) or by
    a DataFrame with the same index and columns (per sample and metal).
    """
    c = _as_frame_or_array(concentration, c_name)
    b = _as_frame_or_array(background, b_name)
    _check_concentration(c, c_name)
    if isinstance(c, pd.DataFrame):
        if isinstance(b, pd.Series):
            missing = [m for m in c.columns if m not in b.index]
            if missing:
                raise ValueError(f"{b_name} has no value for {', '.join(map(str, missing))}; expected one per column of "
                                 f"{c_name} ({', '.join(map(str, c.columns))}), got {', '.join(map(str, b.index))}")
            b = b.reindex(c.columns).astype(float)
            _check_background(b, b_name)
            return c.astype(float).div(b, axis=1)
        if isinstance(b, pd.DataFrame):
            missing_cols = [m for m in c.columns if m not in b.columns]
            missing_rows = [i for i in c.index if i not in b.index]
            if missing_cols or missing_rows:
                raise ValueError(f"{b_name} must cover every sample and metal of {c_name}; missing metals "
                                 f"{missing_cols}, missing samples {missing_rows[:5]}"
                                 f"{' ...' if len(missing_rows) > 5 else ''}")
            b = b.reindex(index=c.index, columns=c.columns).astype(float)
            _check_background(b.to_numpy(), b_name)
            return c.astype(float) / b
        b_arr = np.asarray(b, dtype=float)
        _check_background(b_arr, b_name)
        if b_arr.ndim == 0 or b_arr.shape == (c.shape[1],) or b_arr.shape == c.shape:
            return c.astype(float) / b_arr
        raise ValueError(f"{b_name} of shape {b_arr.shape} does not match {c_name} of shape {c.shape}; expected "
                         f"a scalar, one value per metal ({c.shape[1]},) or one per cell {c.shape}")
    _check_background(b, b_name)
    if isinstance(c, pd.Series):
        return c.astype(float) / (b.reindex(c.index) if isinstance(b, pd.Series) else np.asarray(b, float))
    try:
        return np.asarray(c, float) / np.asarray(b, float)
    except ValueError:
        raise ValueError(f"{c_name} of shape {np.shape(c)} and {b_name} of shape {np.shape(b)} do not "
                         "broadcast") from None


def _check_wide(df, name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a DataFrame of samples (rows) x metals (columns), got {type(df).__name__}")
    if df.shape[1] == 0:
        raise ValueError(f"{name} has no metal columns")


# --------------------------------------------------------------------------------------------
# single-metal indices
def contamination_factor(concentration_mg_kg, background_mg_kg):
    r"""Contamination factor of Hakanson (1980).

    .. math:: CF_i = \frac{C_i}{B_i}

    Parameters
    ----------
    concentration_mg_kg : DataFrame (samples x metals), Series or array of concentrations C >= 0.
    background_mg_kg : background B > 0: a Series per metal, a DataFrame per sample and metal
        (same index and columns), a scalar or a broadcastable array, in the same unit as C.

    Returns
    -------
    Same kind as ``concentration_mg_kg``: CF (dimensionless). Inputs are not modified.

    References
    ----------
    Hakanson L. (1980) An ecological risk index for aquatic pollution control. A sedimentological
    approach. Water Research 14:975-1001. doi:10.1016/0043-1354(80)90143-8
    """
    return _ratio(concentration_mg_kg, background_mg_kg, c_name="concentration_mg_kg",
                  b_name="background_mg_kg")


def geoaccumulation_index(concentration_mg_kg, background_mg_kg, *, k: float = 1.5):
    r"""Geoaccumulation index of Mueller (1969).

    .. math:: I_{geo} = \log_2\left(\frac{C_i}{k\,B_i}\right), \quad k = 1.5

    The factor ``k`` allows for natural fluctuation of the background. A concentration of 0 gives
    :math:`-\infty` (class 0).

    Parameters
    ----------
    concentration_mg_kg, background_mg_kg : as in :func:`contamination_factor`.
    k : background correction factor (> 0), 1.5 after Mueller (1969).

    Returns
    -------
    DataFrame, Series or numpy.ndarray
        Same kind as ``concentration_mg_kg``: Igeo (dimensionless, log2 units).

    References
    ----------
    Mueller G. (1969) Index of geoaccumulation in sediments of the Rhine River. GeoJournal 2:108-118.
    Zhao Y. et al. (2026) Sci Rep, Eq. 13. doi:10.1038/s41598-026-38887-9
    """
    if not (isinstance(k, (int, float)) and np.isfinite(k) and k > 0):
        raise ValueError(f"k must be a finite number > 0, got {k!r}")
    cf = contamination_factor(concentration_mg_kg, background_mg_kg)
    with np.errstate(divide="ignore"):
        return np.log2(cf / k)


def enrichment_factor(concentration_mg_kg: pd.DataFrame, background_mg_kg, *, reference_element: str):
    r"""Enrichment factor normalised to a conservative reference element.

    .. math:: EF_i = \frac{(C_i / C_{ref})_{sample}}{(B_i / B_{ref})_{background}}

    Parameters
    ----------
    concentration_mg_kg : DataFrame samples x elements, including ``reference_element``.
    background_mg_kg : Series per element (or DataFrame per sample) including ``reference_element``.
    reference_element : column of the conservative element (Al, Fe, Sc, Ti, Li...).

    Returns
    -------
    DataFrame of EF for every column except the reference element.

    References
    ----------
    Sutherland R.A. (2000) Bed sediment-associated trace metals in an urban stream, Oahu, Hawaii.
    Environmental Geology 39:611-627. doi:10.1007/s002540050473
    """
    _check_wide(concentration_mg_kg, "concentration_mg_kg")
    if reference_element not in concentration_mg_kg.columns:
        raise ValueError(f"reference element {reference_element!r} is not a column of concentration_mg_kg "
                         f"(columns {list(concentration_mg_kg.columns)})")
    cf = contamination_factor(concentration_mg_kg, background_mg_kg)
    ref = cf[reference_element]
    if ((ref <= 0) & ref.notna()).any():
        raise ValueError(f"reference element {reference_element!r} has zero concentrations; EF is undefined there")
    return cf.drop(columns=[reference_element]).div(ref, axis=0)


def ecological_risk_factor(contamination_factor_: pd.DataFrame, toxic_response: pd.Series) -> pd.DataFrame:
    r"""Hakanson's potential ecological risk factor of each metal.

    .. math:: E_r^i = T_r^i \cdot CF_i

    Parameters
    ----------
    contamination_factor_ : DataFrame samples x metals of CF.
    toxic_response : Series metal -> toxic response factor :math:`T_r` (see :func:`toxic_response_factors`).

    Returns
    -------
    DataFrame
        Samples x metals of Er (dimensionless).

    References
    ----------
    Hakanson L. (1980) Water Research 14:975-1001. doi:10.1016/0043-1354(80)90143-8
    """
    _check_wide(contamination_factor_, "contamination_factor_")
    missing = [m for m in contamination_factor_.columns if m not in toxic_response.index]
    if missing:
        raise ValueError(f"no toxic response factor for {missing}; available for {list(toxic_response.index)}")
    return contamination_factor_.mul(toxic_response.reindex(contamination_factor_.columns).astype(float), axis=1)


# --------------------------------------------------------------------------------------------
# integrated indices (one value per sample)
def degree_of_contamination(contamination_factor_: pd.DataFrame) -> pd.Series:
    r"""Degree of contamination (Hakanson 1980): the sum of the metals' CF.

    .. math:: C_{deg} = \sum_{i=1}^{n} CF_i

    A sample with a missing CF gets NaN (the sum is over a fixed set of metals).

    Parameters
    ----------
    contamination_factor_ : DataFrame
        Samples x metals of CF (dimensionless).

    Returns
    -------
    Series
        Cdeg per sample (dimensionless), named ``Cdeg``.

    References
    ----------
    Hakanson L. (1980) Water Research 14:975-1001. doi:10.1016/0043-1354(80)90143-8
    """
    _check_wide(contamination_factor_, "contamination_factor_")
    return contamination_factor_.sum(axis=1, skipna=False).rename("Cdeg")


def potential_ecological_risk_index(ecological_risk: pd.DataFrame) -> pd.Series:
    r"""Hakanson's potential ecological risk index (PERI, RI): the sum of the metals' Er.

    .. math:: PERI = \sum_{i=1}^{n} E_r^i = \sum_{i=1}^{n} T_r^i \, \frac{C_i}{B_i}

    Parameters
    ----------
    ecological_risk : DataFrame
        Samples x metals of Er (:func:`ecological_risk_factor`).

    Returns
    -------
    Series
        PERI per sample (dimensionless), named ``PERI``; NaN when a metal is missing.

    References
    ----------
    Hakanson L. (1980) Water Research 14:975-1001. doi:10.1016/0043-1354(80)90143-8
    Wu Q. et al. (2025) Mar Pollut Bull, Eq. 3-1. doi:10.1016/j.marpolbul.2025.118969
    """
    _check_wide(ecological_risk, "ecological_risk")
    return ecological_risk.sum(axis=1, skipna=False).rename("PERI")


def pollution_load_index(contamination_factor_: pd.DataFrame) -> pd.Series:
    r"""Pollution load index of Tomlinson et al. (1980): geometric mean of the metals' CF.

    .. math:: PLI = \left(\prod_{i=1}^{n} CF_i\right)^{1/n}

    Computed with :func:`scipy.stats.gmean` (on logs, so products of many factors do not
    overflow). A sample with a missing CF gets NaN; a CF of 0 gives PLI 0.

    Parameters
    ----------
    contamination_factor_ : DataFrame
        Samples x metals of CF (dimensionless).

    Returns
    -------
    Series
        PLI per sample (dimensionless), named ``PLI``.

    References
    ----------
    Tomlinson D.L., Wilson J.G., Harris C.R., Jeffrey D.W. (1980) Helgolaender Meeresuntersuchungen
    33:566-575. doi:10.1007/BF02414780
    """
    _check_wide(contamination_factor_, "contamination_factor_")
    x = contamination_factor_.to_numpy(float)
    with np.errstate(divide="ignore"):
        g = stats.gmean(x, axis=1, nan_policy="propagate")
    return pd.Series(g, index=contamination_factor_.index, name="PLI")


def nemerow_index(single_factor_index: pd.DataFrame) -> pd.Series:
    r"""Nemerow integrated pollution index.

    .. math:: P_N = \sqrt{\frac{\bar{P}^2 + P_{max}^2}{2}}, \quad
              \bar P = \frac{1}{n}\sum_i P_i, \; P_{max} = \max_i P_i

    where :math:`P_i = C_i / S_i` is the single-factor index of metal i (here the contamination
    factor, :math:`S_i` = background). A sample with a missing :math:`P_i` gets NaN.

    Parameters
    ----------
    single_factor_index : DataFrame
        Samples x metals of single-factor indices P_i (dimensionless).

    Returns
    -------
    Series
        P_N per sample (dimensionless), named ``Nemerow``.

    References
    ----------
    Nemerow N.L. (1974) Scientific Stream Pollution Analysis. Scripta Book Co., Washington DC.
    HJ/T 166-2004 Technical specification for soil environmental monitoring (grades).
    """
    _check_wide(single_factor_index, "single_factor_index")
    p = single_factor_index.astype(float)
    mean = p.mean(axis=1, skipna=False)
    mx = p.max(axis=1, skipna=False)
    return np.sqrt((mean ** 2 + mx ** 2) / 2.0).rename("Nemerow")


def heavy_metal_pollution_index(concentration_ug_l: pd.DataFrame, standard_ug_l: pd.Series,
                                ideal_ug_l: pd.Series | float = 0.0) -> pd.Series:
    r"""Heavy metal pollution index of water (Mohan et al. 1996).

    .. math::
        Q_i = 100\,\frac{|M_i - I_i|}{S_i - I_i}, \qquad W_i = \frac{1}{S_i}, \qquad
        HPI = \frac{\sum_{i=1}^{n} W_i Q_i}{\sum_{i=1}^{n} W_i}

    :math:`M_i` measured concentration, :math:`S_i` standard (highest permissible value),
    :math:`I_i` ideal (highest desirable) value, 0 by default. Unit weights are inversely
    proportional to the standard (proportionality constant 1). Metals without a standard are
    not allowed: subset the columns first. A sample with a missing metal gets NaN. The critical
    value is 100.

    Parameters
    ----------
    concentration_ug_l : DataFrame samples x metals (ug/L).
    standard_ug_l : Series metal -> standard S (ug/L) covering every column.
    ideal_ug_l : Series metal -> ideal value I (ug/L, < S), or a scalar; default 0.

    Returns
    -------
    Series
        HPI per sample (dimensionless; critical value 100), named ``HPI``.

    References
    ----------
    Mohan S.V., Nithila P., Reddy S.J. (1996) Estimation of heavy metals in drinking water and
    development of heavy metal pollution index. J Environ Sci Health A 31:283-289.
    doi:10.1080/10934529609376357
    Zhao Y. et al. (2026) Sci Rep, Eq. 14. doi:10.1038/s41598-026-38887-9
    """
    _check_wide(concentration_ug_l, "concentration_ug_l")
    _check_concentration(concentration_ug_l, "concentration_ug_l")
    missing = [m for m in concentration_ug_l.columns if m not in standard_ug_l.index]
    if missing:
        raise ValueError(f"standard_ug_l has no value for {', '.join(map(str, missing))}; subset concentration_ug_l to the metals "
                         f"with a standard ({list(standard_ug_l.index)})")
    s = standard_ug_l.reindex(concentration_ug_l.columns).astype(float)
    _check_background(s, "standard_ug_l")
    if isinstance(ideal_ug_l, pd.Series):
        ideal = ideal_ug_l.reindex(concentration_ug_l.columns).fillna(0.0).astype(float)
    else:
        ideal = pd.Series(float(ideal_ug_l), index=concentration_ug_l.columns)
    if ((ideal < 0) | (ideal >= s)).any():
        raise ValueError(f"ideal values must satisfy 0 <= I < S; got I={ideal.to_dict()}, S={s.to_dict()}")
    q = 100.0 * (concentration_ug_l.astype(float) - ideal).abs() / (s - ideal)
    w = 1.0 / s
    return (q.mul(w, axis=1).sum(axis=1, skipna=False) / w.sum()).rename("HPI")


# --------------------------------------------------------------------------------------------
# reference data
def load_index_classes(name: str, index: str | None = None) -> pd.DataFrame:
    """Class table(s) of reference set ``name`` (kind ``index_classes``), sorted by index and rank.

    Columns index, scheme, rank, class, lower, upper, closed, source. ``closed='left'`` means
    ``lower <= value < upper``, ``'right'`` means ``lower < value <= upper``; a blank bound is
    unbounded. Raises ValueError when ``index`` is given and the set has no table for it.

    Parameters
    ----------
    name : str
        Reference set name (kind ``index_classes``).
    index : str, optional
        Keep only the table of this index.

    Returns
    -------
    DataFrame
        Columns index, scheme, rank, class, lower, upper, closed, source.
    """
    df = load_reference("index_classes", name)
    if index is not None:
        df = df[df["index"] == index]
        if df.empty:
            raise ValueError(f"class set {name!r} has no table for index {index!r}")
    return df.sort_values(["index", "rank"]).reset_index(drop=True)


def _check_class_table(classes: pd.DataFrame) -> tuple[np.ndarray, str]:
    if classes["index"].nunique() != 1:
        raise ValueError(f"classes must hold one index's table, got indices {sorted(classes['index'].unique())}")
    c = classes.sort_values("rank")
    closed = set(c["closed"])
    if len(closed) != 1 or not closed <= {"left", "right"}:
        raise ValueError(f"column 'closed' must be 'left' or 'right' for every class, got {sorted(closed)}")
    lower = c["lower"].to_numpy(float)
    upper = c["upper"].to_numpy(float)
    if not np.isnan(lower[0]) or not np.isnan(upper[-1]):
        raise ValueError("the first class must have no lower bound and the last no upper bound")
    if not np.array_equal(lower[1:], upper[:-1]) or np.any(np.diff(upper[:-1]) <= 0):
        raise ValueError(f"class bounds must be contiguous and increasing; got lower {lower}, upper {upper}")
    if list(c["rank"]) != list(range(len(c))):
        raise ValueError(f"class ranks must be 0..{len(c) - 1}, got {list(c['rank'])}")
    return upper[:-1], closed.pop()


def classify(values, classes: pd.DataFrame) -> pd.DataFrame:
    """Class of each value from a class table (one index's rows of :func:`load_index_classes`).

    Values within a relative 1e-12 of a class bound are treated as equal to it (floating-point
    rounding of ratios). Returns a DataFrame (same index as ``values`` when it is a Series) with
    columns ``class_rank`` (0 = lowest class; nullable integer, missing for NaN values) and ``class``.

    Parameters
    ----------
    values : Series or array-like of float
        Index values to classify.
    classes : DataFrame
        Class table of one index (rank, class, lower, upper, closed).

    Returns
    -------
    pd.DataFrame
        A DataFrame (same index as ``values`` when it is a Series) with columns ``class_rank`` (0 = lowest
        class; nullable integer, missing for NaN values) and ``class``.
    """
    bounds, closed = _check_class_table(classes)
    labels = classes.sort_values("rank")["class"].to_numpy(object)
    v = values.to_numpy(float) if isinstance(values, pd.Series) else np.asarray(values, float).ravel()
    # snap values within 1e-12 (relative) of a class bound onto it, so that rounding error in
    # C/B (0.6/0.2 = 2.9999999999999996) does not move a sample across a class bound
    near = np.isclose(v[:, None], bounds[None, :], rtol=1e-12, atol=1e-12)
    hit = near.any(axis=1)
    v = np.where(hit, bounds[np.argmax(near, axis=1)], v)
    rank = np.searchsorted(bounds, v, side="right" if closed == "left" else "left")
    ok = ~np.isnan(v)
    idx = values.index if isinstance(values, pd.Series) else None
    out = pd.DataFrame({"class_rank": pd.array(np.where(ok, rank, 0), dtype="Int64"),
                        "class": np.where(ok, labels[np.minimum(rank, len(labels) - 1)], None)}, index=idx)
    out.loc[~ok, "class_rank"] = pd.NA
    return out


def toxic_response_factors(name: str = "Hakanson_1980") -> pd.Series:
    """Toxic response factors :math:`T_r` of set ``name`` as a Series metal -> Tr.

    Parameters
    ----------
    name : str, default "Hakanson_1980"
        Reference set name (kind ``toxic_response``).

    Returns
    -------
    Series
        Metal -> Tr (dimensionless), named ``Tr``.
    """
    df = load_reference("toxic_response", name)
    return pd.Series(df["tr"].to_numpy(float), index=df["metal"].to_numpy(), name="Tr")


def water_standard_values(name: str, unit: str = "ug/L") -> pd.Series:
    """Water standard ``name`` (kind ``water_standard``) as a Series metal -> value in ``unit``.

    Parameters
    ----------
    name : str
        Reference set name (kind ``water_standard``).
    unit : str, default "ug/L"
        Unit of the returned values.

    Returns
    -------
    Series
        Metal -> standard value in ``unit``.
    """
    df = load_reference("water_standard", name)
    vals = {r.metal: float(convert(float(r.value), r.unit, unit)) for r in df.itertuples()}
    return pd.Series(vals, name=f"{name} ({unit})", dtype=float)


# --------------------------------------------------------------------------------------------
# tidy tables
def _tidy(values, *, index: str, medium: str, background_used: str, classes: pd.DataFrame | None,
          metal: str | None = None) -> pd.DataFrame:
    if isinstance(values, pd.DataFrame):
        long = values.rename_axis(index="sample_id", columns="metal").stack(future_stack=True).rename("value")
        long = long.reset_index()
    else:
        long = values.rename("value").rename_axis("sample_id").reset_index()
        long.insert(1, "metal", metal or "all")
    long.insert(1, "medium", medium)
    long.insert(3, "index", index)
    if classes is not None:
        cl = classify(long["value"], classes)
        long["class"] = cl["class"].to_numpy()
        long["class_rank"] = pd.array(cl["class_rank"].to_numpy(), dtype="Int64")
    else:
        long["class"] = None
        long["class_rank"] = pd.array([pd.NA] * len(long), dtype="Int64")
    long["background_used"] = background_used
    return long[["sample_id", "medium", "metal", "index", "value", "class", "background_used", "class_rank"]]


def compute_indices(concentration_mg_kg: pd.DataFrame, background_mg_kg, *, medium: str, background_used: str,
                    toxic_response: pd.Series, class_tables: dict[str, pd.DataFrame],
                    indices=("CF", "Igeo", "EF", "Er", "Cdeg", "PLI", "Nemerow", "PERI"),
                    ef_reference_element: str | None = None, igeo_factor: float = 1.5,
                    integrated_metals=None, nemerow_standard_mg_kg: pd.DataFrame | None = None
                    ) -> tuple[pd.DataFrame, list[str]]:
    """All requested indices of one solid medium as a tidy table, plus notes on what was skipped.

    Parameters
    ----------
    concentration_mg_kg : DataFrame samples (index = sample_id) x metals.
    background_mg_kg : Series per metal or DataFrame per sample and metal (see
        :func:`contamination_factor`), covering every column.
    medium, background_used : written into the table (e.g. ``"soil"``, ``"baseline: boxplot"``).
    toxic_response : Series metal -> Tr; Er and PERI use the metals that have one.
    class_tables : index -> class table (rows of :func:`load_index_classes` for that index, or
        the scaled tables of :func:`integrated_class_tables`). An index without a table has
        values but no classes.
    indices : any of CF, Igeo, EF, Er, Cdeg, PLI, Nemerow, PERI.
    ef_reference_element : reference element of EF; EF is skipped (with a note) when None, not
        among the columns, or without a usable background value.
    integrated_metals : metals summed by the integrated indices Cdeg, PLI, Nemerow and PERI
        (None: every column except the EF reference element; see :func:`assessed_metals`).
    nemerow_standard_mg_kg : per sample and metal guideline values S (DataFrame like the
        concentrations): the Nemerow single-factor index is then :math:`P_i = C_i/S_i`, graded
        after HJ/T 166-2004. None: :math:`P_i = CF_i` (C over background) and Nemerow is
        reported without grades, because the HJ/T 166 grades are defined for C/S.

    Returns
    -------
    (table, notes): table columns sample_id, medium, metal (``all`` for integrated indices),
    index, value, class, background_used, class_rank.
    """
    _check_wide(concentration_mg_kg, "concentration_mg_kg")
    unknown = sorted(set(indices) - set(SINGLE_METAL_INDICES) - set(INTEGRATED_INDICES))
    if unknown:
        raise ValueError(f"unknown indices {unknown}; expected some of {SINGLE_METAL_INDICES + INTEGRATED_INDICES}")
    notes: list[str] = []
    metals = [m for m in concentration_mg_kg.columns if m != ef_reference_element]
    conc = concentration_mg_kg[metals]
    cf = contamination_factor(conc, background_mg_kg)
    if integrated_metals is None:
        integ = list(metals)
    else:
        integ = [m for m in metals if m in set(integrated_metals)]
        left_out = [m for m in metals if m not in integ]
        if left_out and any(i in indices for i in ("Cdeg", "PLI", "Nemerow", "PERI")):
            notes.append(f"The integrated indices sum over {', '.join(integ) or 'no metal'}; "
                         f"{', '.join(left_out)} {'is' if len(left_out) == 1 else 'are'} not among the assessed "
                         "trace metals.")
    parts = []
    tc = class_tables.get

    if "CF" in indices:
        parts.append(_tidy(cf, index="CF", medium=medium, background_used=background_used, classes=tc("CF")))
    if "Igeo" in indices:
        ig = geoaccumulation_index(conc, background_mg_kg, k=igeo_factor)
        parts.append(_tidy(ig, index="Igeo", medium=medium, background_used=background_used, classes=tc("Igeo")))
    if "EF" in indices:
        has_bg = (ef_reference_element in background_mg_kg.columns if isinstance(background_mg_kg, pd.DataFrame)
                  else ef_reference_element in getattr(background_mg_kg, "index", ()))
        if ef_reference_element is None:
            notes.append("The enrichment factor was not computed: no reference element is configured.")
        elif ef_reference_element not in concentration_mg_kg.columns:
            notes.append(f"The enrichment factor was not computed: the reference element {ef_reference_element} "
                         "was not measured in this region.")
        elif not has_bg:
            notes.append(f"The enrichment factor was not computed: the background ({background_used}) has no value "
                         f"for the reference element {ef_reference_element}.")
        else:
            try:
                ef = enrichment_factor(concentration_mg_kg, background_mg_kg, reference_element=ef_reference_element)
                parts.append(_tidy(ef, index="EF", medium=medium, background_used=background_used,
                                   classes=tc("EF")))
            except ValueError as e:  # a zero or unusable reference value: skip EF, keep the other indices
                notes.append(f"The enrichment factor was not computed: {e}.")
    with_tr = [m for m in metals if m in toxic_response.index]
    if ("Er" in indices or "PERI" in indices) and len(with_tr) < len(metals):
        notes.append(f"No toxic response factor for {', '.join(sorted(set(metals) - set(with_tr)))}: Er and PERI "
                     f"use {', '.join(with_tr)}.")
    er = ecological_risk_factor(cf[with_tr], toxic_response) if with_tr else None
    if "Er" in indices and er is not None:
        parts.append(_tidy(er, index="Er", medium=medium, background_used=background_used, classes=tc("Er")))
    er_integ = [m for m in with_tr if m in integ]
    if nemerow_standard_mg_kg is not None:
        have_s = [m for m in integ if m in nemerow_standard_mg_kg.columns]
        p_single = (conc[have_s].astype(float) / nemerow_standard_mg_kg.reindex(index=conc.index, columns=have_s)
                    if have_s else None)
        if have_s and len(have_s) < len(integ):
            notes.append(f"The Nemerow index uses {', '.join(have_s)} (guideline values exist for these only).")
        nem_classes = tc("Nemerow")
    else:
        p_single, nem_classes = cf[integ], None
    integrated = {
        "Cdeg": lambda: degree_of_contamination(cf[integ]) if integ else None,
        "PLI": lambda: pollution_load_index(cf[integ]) if integ else None,
        "Nemerow": lambda: nemerow_index(p_single) if p_single is not None and p_single.shape[1] else None,
        "PERI": lambda: potential_ecological_risk_index(er[er_integ]) if er is not None and er_integ else None,
    }
    for name, fn in integrated.items():
        if name in indices:
            v = fn()
            if v is not None:
                parts.append(_tidy(v, index=name, medium=medium, background_used=background_used,
                                   classes=nem_classes if name == "Nemerow" else tc(name)))
    table = pd.concat(parts, ignore_index=True) if parts else _tidy(
        pd.Series(dtype=float), index="CF", medium=medium, background_used=background_used, classes=None)
    return table, notes


#: major and conservative elements: measured for normalisation (EF) or as covariates, not assessed as pollutants
MAJOR_ELEMENTS = ("Al", "Ca", "Fe", "K", "Mg", "Mn", "Na", "Sc", "Si", "Ti", "V", "Li", "Zr", "Rb", "Sr", "P", "S")


def assessed_metals(metals, *, integrated_metals=None, ef_reference_element: str | None = None) -> list[str]:
    """Metals summed by the integrated indices: ``integrated_metals`` when given, else the measured
    metals except the major and conservative elements (:data:`MAJOR_ELEMENTS`) and the EF reference element.

    Parameters
    ----------
    metals : iterable of str
        Measured metals, in order.
    integrated_metals : iterable of str, optional
        Metals to assess explicitly.
    ef_reference_element : str, optional
        EF reference element (excluded).

    Returns
    -------
    list of str
        Assessed metals in the order of ``metals``.
    """
    if integrated_metals is not None:
        return [m for m in metals if m in set(integrated_metals)]
    return [m for m in metals if m not in MAJOR_ELEMENTS and m != ef_reference_element]


#: Hakanson's (1980) eight pollutants (PCB, Hg, Cd, As, Pb, Cu, Cr, Zn) have toxic response factors summing to 133;
#: he set the first PERI limit at 150 and the first Cdeg limit at 8 (eight substances with CF = 1)
HAKANSON_TR_SUM = 133.0
HAKANSON_PERI_FIRST = 150.0
HAKANSON_N = 8


def scaled_first_limits(toxic_response: pd.Series, metals) -> dict[str, float]:
    r"""First class limits of PERI and Cdeg for the metals assessed.

    .. math::
        L_1^{PERI} = \mathrm{round}_{10}\Big(\frac{150}{133} \sum_{i \in M} T_r^i\Big), \qquad
        L_1^{C_{deg}} = |M|

    Hakanson (1980) set the first PERI limit at 150, the sum of the toxic response factors of his
    eight pollutants (133) rounded up, and the first Cdeg limit at 8, eight substances each at
    CF = 1; the next limits double (300, 600; 16, 32). The scaled limits keep his ratio of first
    limit to summed factors for the metals ``M`` actually assessed (rounded to the nearest ten,
    at least 10), and double in the same way.

    Parameters
    ----------
    toxic_response : Series
        Metal -> toxic response factor Tr.
    metals : iterable of str
        Metals assessed.

    Returns
    -------
    dict with keys ``PERI`` and ``Cdeg`` (first limits), ``tr_sum`` and ``n``.

    References
    ----------
    Hakanson L. (1980) Water Research 14:975-1001. doi:10.1016/0043-1354(80)90143-8
    """
    metals = list(metals)
    tr = toxic_response.reindex([m for m in metals if m in toxic_response.index]).astype(float)
    s = float(tr.sum())
    peri = max(10.0, float(np.round(s * HAKANSON_PERI_FIRST / HAKANSON_TR_SUM / 10.0) * 10.0))
    return {"PERI": peri, "Cdeg": float(len(metals)), "tr_sum": s, "n": len(metals)}


def _scale_table(table: pd.DataFrame, factor: float, scheme: str) -> pd.DataFrame:
    t = table.copy()
    t["lower"] = np.round(t["lower"] * factor, 9)  # no float residue on the class bounds (110, not 109.999...)
    t["upper"] = np.round(t["upper"] * factor, 9)
    t["scheme"] = scheme
    return t


def integrated_class_tables(*, toxic_response: pd.Series, metals, limits: str = "scaled",
                            peri_metals=None) -> tuple[dict[str, pd.DataFrame], dict]:
    """Class tables of Cdeg and PERI: Hakanson's limits scaled to the metals assessed, or as published.

    Parameters
    ----------
    toxic_response : Series metal -> Tr.
    metals : metals summed by Cdeg (the assessed metals).
    limits : ``scaled`` (:func:`scaled_first_limits`, the default), ``Hakanson_1980`` (150/300/600
        and 8/16/32 whatever the metals) or ``PERI_Wu2025`` (PERI 100/200/400 of Wu et al. 2025,
        Cdeg scaled).
    peri_metals : metals summed by PERI (default: ``metals`` with a Tr).

    Returns
    -------
    (tables, info): tables index -> class table for ``Cdeg`` and ``PERI``; info holds the
    first limits and the rule used.
    """
    if limits not in ("scaled", "Hakanson_1980", "PERI_Wu2025"):
        raise ValueError(f"limits must be 'scaled', 'Hakanson_1980' or 'PERI_Wu2025', got {limits!r}")
    hk_peri = load_index_classes("Hakanson_1980", "PERI")
    hk_cdeg = load_index_classes("Hakanson_1980", "Cdeg")
    peri_metals = [m for m in (peri_metals if peri_metals is not None else metals) if m in toxic_response.index]
    first = scaled_first_limits(toxic_response, peri_metals)
    first_c = scaled_first_limits(toxic_response, metals)
    info = {"limits": limits, "tr_sum": first["tr_sum"], "n": first_c["n"], "peri_metals": peri_metals}
    if limits == "Hakanson_1980":
        tables = {"PERI": hk_peri, "Cdeg": hk_cdeg}
        info.update(peri_first=HAKANSON_PERI_FIRST, cdeg_first=float(HAKANSON_N))
    else:
        cdeg = _scale_table(hk_cdeg, first_c["Cdeg"] / HAKANSON_N, "scaled to the metals assessed")
        if limits == "PERI_Wu2025":
            peri = load_index_classes("PERI_Wu2025", "PERI")
            info.update(peri_first=100.0)
        else:
            peri = _scale_table(hk_peri, first["PERI"] / HAKANSON_PERI_FIRST, "scaled to the metals assessed")
            info.update(peri_first=first["PERI"])
        info.update(cdeg_first=first_c["Cdeg"])
        tables = {"PERI": peri, "Cdeg": cdeg}
    return tables, info


def compute_water_indices(concentration_ug_l: pd.DataFrame, *, standard_ug_l: pd.Series, medium: str,
                          standard_name: str, classes: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    """HPI of a water medium over the metals that have a standard, as a tidy table plus notes.

    Parameters
    ----------
    concentration_ug_l : DataFrame
        Samples x metals (ug/L).
    standard_ug_l : Series
        Metal -> water standard (ug/L).
    medium : str
        Medium name written to the table.
    standard_name : str
        Name of the standard, for the notes and ``background_used``.
    classes : DataFrame or None
        HPI class table (None: no classes).

    Returns
    -------
    tuple of (DataFrame, list of str)
        Tidy table (sample_id, medium, metal, index, value, class, background_used, class_rank)
        and notes on metals without a standard.
    """
    _check_wide(concentration_ug_l, "concentration_ug_l")
    have = [m for m in concentration_ug_l.columns if m in standard_ug_l.index]
    notes = []
    if len(have) < concentration_ug_l.shape[1]:
        notes.append(f"{standard_name} {'give' if 'guidelines' in standard_name else 'gives'} no value for "
                     f"{', '.join(sorted(set(concentration_ug_l.columns) - set(have)))}; HPI uses "
                     f"{', '.join(have) or 'no metal'}.")
    if not have:
        return _tidy(pd.Series(dtype=float), index="HPI", medium=medium, background_used=standard_name,
                     classes=None).iloc[:0], notes
    hpi = heavy_metal_pollution_index(concentration_ug_l[have], standard_ug_l)
    return _tidy(hpi, index="HPI", medium=medium, background_used=f"standard: {standard_name}",
                 classes=classes), notes


def index_class_shares(indices_table: pd.DataFrame, class_tables: dict[str, pd.DataFrame] | None = None
                       ) -> pd.DataFrame:
    """Number and share of samples in each class per medium, metal and index.

    With ``class_tables`` (index -> class table) every class of the table is listed, zero
    counts included; without, the classes that occur for the index. Returns medium, metal,
    index, class_rank, class, n, share (of samples with a value).

    Parameters
    ----------
    indices_table : DataFrame
        Tidy indices table (medium, metal, index, value, class, class_rank).
    class_tables : dict of str to DataFrame, optional
        Index -> class table.

    Returns
    -------
    pd.DataFrame
        Medium, metal, index, class_rank, class, n, share (of samples with a value).
    """
    need = {"medium", "metal", "index", "class", "class_rank", "value"}
    if not need <= set(indices_table.columns):
        raise ValueError(f"indices_table needs columns {sorted(need)}, got {list(indices_table.columns)}")
    t = indices_table[indices_table["class"].notna()]
    rows = []
    for (medium, metal, index), g in t.groupby(["medium", "metal", "index"], sort=False):
        if class_tables is not None and index in class_tables:
            classes = class_tables[index].sort_values("rank").rename(columns={"rank": "class_rank"})
            classes = classes[["class_rank", "class"]]
        else:
            classes = (indices_table.loc[(indices_table["index"] == index) & indices_table["class"].notna(),
                                         ["class_rank", "class"]].drop_duplicates().sort_values("class_rank"))
        counts = g.groupby("class_rank").size()
        n = len(g)
        for r in classes.itertuples(index=False):
            k = int(counts.get(r.class_rank, 0))
            rows.append({"medium": medium, "metal": metal, "index": index, "class_rank": int(r.class_rank),
                         "class": r[1], "n": k, "share": k / n})
    return pd.DataFrame(rows, columns=["medium", "metal", "index", "class_rank", "class", "n", "share"])


# --------------------------------------------------------------------------------------------
# backgrounds from earlier stages
def baseline_background(baselines: pd.DataFrame, *, medium: str, method: str = "recommended",
                        stratum: str = "all") -> tuple[pd.Series, pd.Series]:
    """Static background per metal from ``tables/baselines.csv`` (stage ``baselines``).

    Parameters
    ----------
    baselines : columns medium, stratum, metal, method, baseline, recommended.
    medium, stratum : rows used (``stratum='all'``: unstratified baselines).
    method : a method name, or ``'recommended'`` for the recommended method of each metal.

    Returns
    -------
    (background, method_used): Series metal -> baseline and Series metal -> method name.
    Metals without a row are absent (the caller notes them).
    """
    need = {"medium", "stratum", "metal", "method", "baseline", "recommended"}
    if not need <= set(baselines.columns):
        raise ValueError(f"baselines table needs columns {sorted(need)}, got {list(baselines.columns)}")
    b = baselines[(baselines["medium"] == medium) & (baselines["stratum"].astype(str) == stratum)]
    if method == "recommended":
        rec = b["recommended"]
        if rec.dtype != bool:
            rec = rec.astype(str).str.lower().isin(["true", "1", "yes"])
        b = b[rec]
    else:
        b = b[b["method"] == method]
    b = b[np.isfinite(b["baseline"].astype(float)) & (b["baseline"].astype(float) > 0)]
    b = b.drop_duplicates("metal")
    return (pd.Series(b["baseline"].astype(float).to_numpy(), index=b["metal"].to_numpy(), name="baseline"),
            pd.Series(b["method"].to_numpy(), index=b["metal"].to_numpy(), name="method"))


def stratified_baseline_background(baselines: pd.DataFrame, strata: pd.Series, *, medium: str, column: str,
                                   method: str = "recommended") -> tuple[pd.DataFrame, list[str]]:
    """Per-sample static background: each sample gets the baseline of its stratum.

    Parameters
    ----------
    baselines : ``tables/baselines.csv`` with stratified rows ``stratum = '<column>=<value>'``
        (stage ``baselines`` with ``stratify_by``).
    strata : Series sample_id -> stratum value (e.g. the ``Rock`` covariate).
    medium, method : as in :func:`baseline_background`.
    column : the stratification column (``Rock``).

    Returns
    -------
    (background, notes): DataFrame samples x metals; a stratum or metal without a stratified
    baseline falls back to the unstratified (``all``) baseline, and a note says which.
    """
    overall, _ = baseline_background(baselines, medium=medium, method=method, stratum="all")
    metals = list(overall.index)
    out = pd.DataFrame(np.nan, index=strata.index, columns=metals, dtype=float)
    fallback = []
    for value in pd.unique(strata.dropna()):
        b, _ = baseline_background(baselines, medium=medium, method=method, stratum=f"{column}={value}")
        rows = (strata == value).to_numpy()
        lacking = [m for m in metals if m not in b.index]
        for m in metals:
            out.loc[rows, m] = b[m] if m in b.index else overall[m]
        if lacking:
            what = "any metal" if len(lacking) == len(metals) else ", ".join(lacking)
            fallback.append(f"{what} in {column}={value}")
    missing_stratum = strata.isna().to_numpy()
    if missing_stratum.any():
        out.loc[missing_stratum, metals] = overall.to_numpy()
        k = int(missing_stratum.sum())
        fallback.append(f"{k} sample{'s' if k != 1 else ''} without a {column} value")
    notes = ([f"No stratified baseline for {', '.join(fallback)}; the unstratified baseline is used there."]
             if fallback else [])
    return out, notes


def solid_backgrounds(*, sample_ids, sites: pd.DataFrame, medium: str, unit: str, reference_set: str,
                      source: str, baseline_method: str, baseline_stratum: str | None,
                      baselines: pd.DataFrame | None, adaptive: pd.DataFrame | None) -> tuple[dict, list[str]]:
    """The backgrounds of one solid medium: reference set, static baseline, adaptive, and the one used.

    Parameters
    ----------
    sample_ids : the medium's sample ids (rows of the per-sample backgrounds).
    sites : sample attributes indexed by sample_id (for ``baseline_stratum``).
    reference_set : background reference set (kind ``background``).
    source : ``reference``, ``baseline`` or ``adaptive``: the background of the indices.
    baseline_method, baseline_stratum : as in :func:`baseline_background` /
        :func:`stratified_baseline_background`.
    baselines, adaptive : tables of the baselines stage (None when it did not run).

    Returns
    -------
    (backgrounds, notes): backgrounds maps ``used``, ``static``, ``reference`` and, when available,
    ``adaptive`` to (values, label); values are a Series per metal or a DataFrame per sample.
    Falls back (with a note) to the static background when no adaptive one exists, and to the
    reference set when no baselines exist.
    """
    from .reference import background_values

    ids = pd.Index([str(i) for i in sample_ids])
    notes: list[str] = []
    from .baselines import METHOD_LABELS, column_words
    from .descriptive import reference_label

    ref = (background_values(reference_set, medium=medium, unit=unit),
           f"the natural background of {reference_label(reference_set)}")
    out = {"reference": ref, "static": ref}
    if baselines is not None:
        bl, used = baseline_background(baselines, medium=medium, method=baseline_method)
        if len(bl):
            def words(m):
                w = METHOD_LABELS.get(m, str(m)).split(" (")[0]
                return (w[0].lower() + w[1:]).replace("gaussian", "Gaussian").replace("boxplot", "Tukey boxplot")

            if baseline_method == "recommended":
                out["static"] = (bl, "the recommended regional geochemical baseline of each metal")
            else:
                out["static"] = (bl, f"the regional geochemical baseline by the {words(baseline_method)} method")
            if baseline_stratum:
                if baseline_stratum not in sites.columns:
                    notes.append(f"The stratification column {baseline_stratum} is not a sample attribute; the "
                                 "unstratified baseline is used.")
                else:
                    strata = sites[baseline_stratum].copy()
                    strata.index = strata.index.astype(str)
                    sbg, sn = stratified_baseline_background(baselines, strata.reindex(ids), medium=medium,
                                                             column=baseline_stratum, method=baseline_method)
                    out["static"] = (sbg, f"the regional geochemical baseline of each {column_words(baseline_stratum)} "
                                          "class")
                    notes += sn
    if adaptive is not None:
        aw = adaptive_background_wide(adaptive, medium=medium)
        if not aw.empty:
            out["adaptive"] = (aw.reindex(ids), "the adaptive, sample-specific background")
    if source == "reference":
        out["used"] = ref
    elif source == "adaptive" and "adaptive" in out:
        out["used"] = out["adaptive"]
    else:
        out["used"] = out["static"]
        if source == "adaptive":
            notes.append(f"No adaptive background exists for {medium}; the indices use the {out['static'][1]}.")
        elif baselines is None:
            notes.append("No geochemical baselines were computed; the indices use the natural background of "
                         f"{reference_label(reference_set)}.")
    return out, notes


def adaptive_background_wide(adaptive: pd.DataFrame, *, medium: str) -> pd.DataFrame:
    """Per-sample background of ``medium`` from ``tables/adaptive_background.csv`` as samples x metals.

    Parameters
    ----------
    adaptive : DataFrame
        Adaptive background table (sample_id, medium, metal, background).
    medium : str
        Medium to extract.

    Returns
    -------
    DataFrame
        Samples (index sample_id, str) x metals of background (concentration unit of the table).
    """
    need = {"sample_id", "medium", "metal", "background"}
    if not need <= set(adaptive.columns):
        raise ValueError(f"adaptive background table needs columns {sorted(need)}, got {list(adaptive.columns)}")
    a = adaptive[adaptive["medium"] == medium]
    w = a.pivot_table(index="sample_id", columns="metal", values="background", aggfunc="first")
    w.index = w.index.astype(str)
    w.columns.name = None
    return w


# --------------------------------------------------------------------------------------------
# report text and figures
def methods_text(*, background_label: str, igeo_factor: float, ef_reference_element: str | None,
                 class_info: dict, toxic_response: pd.Series, water_standard: str | None,
                 has_water: bool, nemerow_guideline: str | None = None, integrated_metals=None) -> str:
    """Methods paragraph of the indices section (pandoc markdown with citations).

    ``class_info`` is the info dict of :func:`integrated_class_tables`; ``nemerow_guideline`` names
    the guideline set Nemerow's single-factor indices are computed against (None: background).

    Parameters
    ----------
    background_label : str
        Description of the background used.
    igeo_factor : float
        Igeo background factor k.
    ef_reference_element : str or None
        EF reference element (None: EF not reported).
    class_info : dict
        Info dict of :func:`integrated_class_tables`.
    toxic_response : Series
        Metal -> Tr.
    water_standard : str or None
        Water standard set name.
    has_water : bool
        Whether a water medium is present (adds the HPI sentence).
    nemerow_guideline : str, optional
        Guideline set of the Nemerow single-factor indices.
    integrated_metals : list of str, optional
        Metals summed by the integrated indices.

    Returns
    -------
    str
        Methods paragraphs (pandoc markdown).
    """
    tr = ", ".join(f"{m} {v:g}" for m, v in toxic_response.items())
    later = [m for m in ("Ni", "Co") if m in toxic_response.index]
    tr_cite = ("@hakanson1980; " + " and ".join(later) + " after @xu2008toxicity") if later else "@hakanson1980"
    ef = (f"The enrichment factor normalises to {ef_reference_element} "
          "[$EF_i = (C_i/C_{ref})/(B_i/B_{ref})$, classes of @sutherland2000]."
          if ef_reference_element else
          "The enrichment factor needs a conservative reference element (Al, Fe, Sc...); none is configured, "
          "so EF is not reported.")
    lim = class_info.get("limits", "scaled")
    p1, c1 = class_info.get("peri_first", 150.0), class_info.get("cdeg_first", 8.0)
    if lim == "Hakanson_1980":
        cls = ("The class limits of $C_{deg}$ (8, 16, 32) and PERI (150, 300, 600) are Hakanson's, set for eight "
               "pollutants including PCB; with fewer or less toxic metals they understate the classes "
               "[@hakanson1980].")
    else:
        peri_txt = ("PERI classes are bounded at 100, 200 and 400 as revised by @wu2025tracing"
                    if lim == "PERI_Wu2025" else
                    f"PERI classes are bounded at {p1:g}, {2 * p1:g} and {4 * p1:g}: Hakanson set his first limit, "
                    f"150, at the sum of his eight toxic response factors (133) rounded up, so here the first limit "
                    f"is the sum for the metals assessed ({class_info.get('tr_sum', 0):g}) times 150/133, rounded "
                    "to the nearest ten, and the next limits double as in Hakanson's table")
        cls = (f"{peri_txt}; the degree of contamination is classed at {c1:g}, {2 * c1:g} and {4 * c1:g} (one unit of "
               f"contamination factor per metal assessed, as Hakanson's 8, 16 and 32 for eight substances) "
               "[@hakanson1980].")
    integ = (f" The integrated indices ($C_{{deg}}$, PLI, Nemerow, PERI) sum over the assessed trace metals "
             f"{', '.join(list(integrated_metals)[:-1])} and {list(integrated_metals)[-1]}."
             if integrated_metals and len(integrated_metals) > 1 else
             f" The integrated indices cover {integrated_metals[0]} only." if integrated_metals else "")
    from .descriptive import reference_label

    nem_name = reference_label(nemerow_guideline) if nemerow_guideline else ""
    nem = (f"the single-factor index $P_i = C_i/S_i$ against the value $S_i$ of {nem_name} that applies to the "
           "sample, graded after HJ/T 166-2004 [@hjt166_2004]" if nemerow_guideline else
           "the contamination factor as single-factor index ($P_i = C_i/B_i$); HJ/T 166-2004 grades it against "
           "quality standards, not backgrounds, so no grade is given here [@hjt166_2004]")
    if water_standard:  # a set code becomes the reader's name of the standard, cited once
        water_standard = reference_label(water_standard)
    water = (f" For water, the heavy metal pollution index of @mohan1996 weights each metal by the inverse of its "
             f"standard in {water_standard}: $Q_i = 100\\,M_i/S_i$, $W_i = 1/S_i$, "
             "$HPI = \\sum W_i Q_i / \\sum W_i$; 100 is the critical value." if has_water else "")
    return f"""
Pollution indices compare each concentration $C_i$ with a background $B_i$; here the background is
**{background_label}**. The contamination factor $CF_i = C_i/B_i$ and the degree of contamination
$C_{{deg}} = \\sum_i CF_i$ follow @hakanson1980. The geoaccumulation index

$$I_{{geo}} = \\log_2\\left(\\frac{{C_i}}{{{igeo_factor:g}\\,B_i}}\\right)$$

is classed in the seven classes of @mueller1969. {ef} The pollution load index is the geometric mean of
the contamination factors, $PLI = (\\prod_i CF_i)^{{1/n}}$, with 1 marking baseline levels
[@tomlinson1980]; the Nemerow integrated index $P_N = \\sqrt{{(\\overline{{P}}^2 + P_{{max}}^2)/2}}$ uses
{nem}. Hakanson's potential ecological risk factor $E_r^i = T_r^i\\,CF_i$ and index $PERI = \\sum_i E_r^i$ use the
toxic response factors {tr} [{tr_cite}]. {cls}{integ}{water}
Class tables, toxic response factors and standards are cited data files shipped with hmlib.
""".strip()


def plot_class_maps(indices_table: pd.DataFrame, sites: pd.DataFrame, *, index: str, class_table: pd.DataFrame,
                    coordinate_unit: str = "m", ncols: int = 4, title_suffix: str = "", crs: str | None = None):
    """Sample maps of one index, one panel per metal, samples coloured by class.

    ``sites`` is indexed by sample_id with columns x, y. Returns the matplotlib figure.

    Parameters
    ----------
    indices_table : DataFrame
        Tidy indices table (sample_id, metal, index, class_rank).
    sites : DataFrame
        Coordinates x, y indexed by sample_id.
    index : str
        Index mapped.
    class_table : DataFrame
        Class table of the index (rank, class).
    coordinate_unit : str, default "m"
        Unit of the coordinates.
    ncols : int, default 4
        Largest number of panel columns.
    title_suffix : str, default ""
        Text appended to each title.
    crs : str, optional
        ``"EPSG:<code>"`` or None/``"local"``: printed under the maps, which carry a scale bar and a
        north arrow instead of coordinate ticks (:func:`hmlib.plots.decorate_map`).

    Returns
    -------
    object
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    from .plots import decorate_map

    t = indices_table[indices_table["index"] == index]
    metals = list(dict.fromkeys(t["metal"]))
    if not metals:
        raise ValueError(f"no rows of index {index!r} in indices_table")
    ct = class_table.sort_values("rank")
    n_cls = len(ct)
    cmap = ListedColormap(plt.get_cmap("turbo")(np.linspace(0.1, 0.95, n_cls)))
    norm = BoundaryNorm(np.arange(-0.5, n_cls + 0.5), n_cls)
    ncols = max(1, min(ncols, len(metals)))
    nrows = int(np.ceil(len(metals) / ncols))
    panel = 1.9 if len(metals) > 1 else 3.4
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(7.0, panel * ncols + 1.6), panel * nrows + 0.4), squeeze=False)
    flat = axes.ravel()
    for ax in flat[len(metals):]:
        ax.set_visible(False)
    for ax, metal in zip(flat, metals):
        g = t[t["metal"] == metal].set_index("sample_id")
        xy = sites.reindex(g.index)
        ok = g["class_rank"].notna().to_numpy()
        ax.scatter(xy["x"][ok], xy["y"][ok], c=g["class_rank"][ok].astype(int), cmap=cmap, norm=norm, s=7,
                   linewidths=0)
        ax.set_title(f"{index} {metal}{title_suffix}" if metal != "all" else f"{index}{title_suffix}", fontsize=8)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for i, ax in enumerate(flat[:len(metals)]):
        decorate_map(ax, crs=crs, coordinate_unit=coordinate_unit, scalebar=i == 0, north=i == 0, note=i == 0)
    handles = [plt.Line2D([], [], marker="o", ls="", color=cmap(i), label=lab, markersize=5)
               for i, lab in enumerate(ct["class"])]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, n_cls), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.035 * np.ceil(n_cls / 4)))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_class_shares(shares: pd.DataFrame, *, index: str, medium: str):
    """Stacked horizontal bars of class shares per metal for one index and medium.

    Parameters
    ----------
    shares : DataFrame
        Class shares from :func:`index_class_shares`.
    index : str
        Index plotted.
    medium : str
        Medium plotted.

    Returns
    -------
    matplotlib.figure.Figure
        Stacked bars of class shares (%) per metal.
    """
    import matplotlib.pyplot as plt

    s = shares[(shares["index"] == index) & (shares["medium"] == medium)]
    if s.empty:
        raise ValueError(f"no class shares for index {index!r} in {medium!r}")
    piv = s.pivot_table(index="metal", columns="class_rank", values="share", aggfunc="sum", sort=False).fillna(0)
    labels = s.drop_duplicates("class_rank").set_index("class_rank")["class"]
    colors = plt.get_cmap("turbo")(np.linspace(0.1, 0.95, len(piv.columns)))
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(piv) + 1.4))
    left = np.zeros(len(piv))
    for col, color in zip(piv.columns, colors):
        if piv[col].sum() == 0:  # a class no sample falls in gets no legend entry (colours stay fixed per class)
            continue
        ax.barh(piv.index, 100 * piv[col], left=left, color=color, label=labels[col], edgecolor="white", lw=0.4)
        left += 100 * piv[col].to_numpy()
    ax.set_xlabel("share of samples (%)")
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    ax.set_title(f"{index} classes in {medium}")
    fig.tight_layout()
    return fig


def index_summary(indices_table: pd.DataFrame) -> pd.DataFrame:
    """Per medium, metal and index: n, median, 90th percentile, maximum and the percentage of
    samples above the lowest class (``pct_above_lowest``; NaN for indices without classes).

    Parameters
    ----------
    indices_table : DataFrame
        Tidy indices table (medium, metal, index, value, class_rank).

    Returns
    -------
    DataFrame
        Columns medium, metal, index, n, median, p90, max, pct_above_lowest (%).
    """
    need = {"medium", "metal", "index", "value", "class_rank"}
    if not need <= set(indices_table.columns):
        raise ValueError(f"indices_table needs columns {sorted(need)}, got {list(indices_table.columns)}")
    rows = []
    for (medium, metal, index), g in indices_table.groupby(["medium", "metal", "index"], sort=False):
        r = g["class_rank"].dropna()
        rows.append({"medium": medium, "metal": metal, "index": index, "n": int(g["value"].notna().sum()),
                     "median": float(g["value"].median()), "p90": float(g["value"].quantile(0.9)),
                     "max": float(g["value"].max()),
                     "pct_above_lowest": float(100 * (r > 0).mean()) if len(r) else np.nan})
    return pd.DataFrame(rows, columns=["medium", "metal", "index", "n", "median", "p90", "max", "pct_above_lowest"])
