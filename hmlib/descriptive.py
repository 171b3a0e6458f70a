"""Data quality and descriptive statistics (the first stage of every report).

Pure functions on a samples x metals table (one medium, canonical unit). Statistics follow
common practice in regional geochemical surveys: location and spread on raw values, the
geometric mean, moment skewness and excess kurtosis, Shapiro-Wilk normality tests on raw and
log values, and Tukey's IQR rule to flag (not remove) outliers.

References
----------
Reimann, C., Filzmoser, P., Garrett, R.G. (2005) Background and threshold: critical comparison
of methods of determination. Science of the Total Environment 346:1-16.
doi:10.1016/j.scitotenv.2004.11.023
Shapiro, S.S., Wilk, M.B. (1965) An analysis of variance test for normality (complete samples).
Biometrika 52:591-611. doi:10.1093/biomet/52.3-4.591
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .reference import background_values, guideline_values, load_reference
from .units import convert, dimension

__all__ = [
    "summary_statistics",
    "normality_tests",
    "iqr_outliers",
    "exceedance",
    "exceedance_samples",
    "exceedance_summary",
    "exceedance_text",
    "sample_conditions",
    "EXCEEDANCE_COLUMNS",
    "correlation_table",
    "correlation_matrices",
    "STATISTICS",
    "REFERENCE_SET_LABELS",
    "reference_label",
    "threshold_header",
    "exceedance_display",
    "plot_correlations",
    "methods_text",
]

STATISTICS = ["n", "n_censored", "n_missing", "min", "p25", "median", "mean", "geometric_mean", "p75", "max",
              "sd", "cv", "skewness", "kurtosis"]


def _check_wide(conc: pd.DataFrame) -> None:
    if not isinstance(conc, pd.DataFrame):
        raise TypeError(f"expected a DataFrame of samples x metals, got {type(conc).__name__}")
    bad = [c for c in conc.columns if not pd.api.types.is_numeric_dtype(conc[c])]
    if bad:
        raise TypeError(f"expected numeric metal columns, got non-numeric {bad}")


def summary_statistics(conc: pd.DataFrame, *, censored: pd.DataFrame | None = None, medium: str = "soil",
                       unit: str = "mg/kg") -> pd.DataFrame:
    """Descriptive statistics per metal, as a tidy table (medium, metal, statistic, value, unit).

    Parameters
    ----------
    conc : samples x metals, canonical unit; NaN = missing.
    censored : same shape, True where the value is a substituted non-detect.

    Returns
    -------
    DataFrame
        Long table with columns medium, metal, statistic, value, unit (one row per metal and statistic).

    Notes
    -----
    ``cv`` is SD/mean (a ratio, unit ``1``); ``skewness`` is the moment coefficient and
    ``kurtosis`` the excess kurtosis (0 for a normal distribution), both bias-corrected
    (``scipy.stats.skew(bias=False)``, ``kurtosis(bias=False)``). The geometric mean uses the
    positive values only.
    """
    _check_wide(conc)
    rows = []
    for metal in conc.columns:
        x = conc[metal].to_numpy(float)
        v = x[np.isfinite(x)]
        pos = v[v > 0]
        n = v.size
        vals = {
            "n": n,
            "n_censored": int(censored[metal].sum()) if censored is not None else 0,
            "n_missing": int(np.isnan(x).sum()),
            "min": v.min() if n else np.nan,
            "p25": np.percentile(v, 25) if n else np.nan,
            "median": np.median(v) if n else np.nan,
            "mean": v.mean() if n else np.nan,
            "geometric_mean": float(np.exp(np.log(pos).mean())) if pos.size else np.nan,
            "p75": np.percentile(v, 75) if n else np.nan,
            "max": v.max() if n else np.nan,
            "sd": v.std(ddof=1) if n > 1 else np.nan,
            "cv": v.std(ddof=1) / v.mean() if n > 1 and v.mean() != 0 else np.nan,
            "skewness": float(stats.skew(v, bias=False)) if n > 2 else np.nan,
            "kurtosis": float(stats.kurtosis(v, bias=False)) if n > 3 else np.nan,
        }
        for s in STATISTICS:
            u = unit if s in {"min", "p25", "median", "mean", "geometric_mean", "p75", "max", "sd"} else "1"
            rows.append({"medium": medium, "metal": metal, "statistic": s, "value": float(vals[s]), "unit": u})
    return pd.DataFrame(rows, columns=["medium", "metal", "statistic", "value", "unit"])


#: largest sample the Shapiro-Wilk test is run on: scipy's p-value (Royston 1995) is accurate up to 5,000
SHAPIRO_MAX_N = 5000


def normality_tests(conc: pd.DataFrame, *, medium: str = "soil", alpha: float = 0.05,
                    max_n: int = SHAPIRO_MAX_N, seed: int = 0) -> pd.DataFrame:
    """Shapiro-Wilk W and p on raw and natural-log values per metal.

    Returns columns medium, metal, scale (``raw``/``log``), w, p, normal (p >= alpha), n_tested,
    subsampled.
    Above ``max_n`` values the test runs on a seeded simple random subsample of ``max_n`` values
    (``numpy.random.default_rng(seed)``, drawn once per metal and used for both scales): the
    p-value approximation of Royston (1995) that scipy uses is accurate up to 5,000 values; at
    that size the test already rejects departures from normality far too small to matter.

    Parameters
    ----------
    conc : DataFrame
        Samples x metals concentrations; NaN = missing.
    medium : str, default "soil"
        Medium name written to the table.
    alpha : float, default 0.05
        Significance level of the test.
    max_n : int, default 5000
        Largest number of values tested; more are subsampled.
    seed : int, default 0
        Seed of the subsample.

    Returns
    -------
    pd.DataFrame
        Columns medium, metal, scale (``raw``/``log``), w, p, normal (p >= alpha), n_tested, subsampled.

    References
    ----------
    Royston, P. (1995) Remark AS R94: a remark on algorithm AS 181: the W-test for normality.
    Applied Statistics 44, 547-551. doi:10.2307/2986146
    """
    _check_wide(conc)
    rows = []
    for metal in conc.columns:
        v = conc[metal].dropna().to_numpy(float)
        sub = v.size > max_n
        if sub:
            v = v[np.sort(np.random.default_rng(seed).choice(v.size, max_n, replace=False))]
        for scale, y in (("raw", v), ("log", np.log(v[v > 0]))):
            if y.size >= 3:
                w, p = stats.shapiro(y)
            else:
                w = p = np.nan
            rows.append({"medium": medium, "metal": metal, "scale": scale, "w": float(w), "p": float(p),
                         "normal": bool(p >= alpha) if np.isfinite(p) else False, "n_tested": int(y.size),
                         "subsampled": sub})
    return pd.DataFrame(rows)


def iqr_outliers(conc: pd.DataFrame, *, factor: float = 1.5, log: bool = False) -> pd.DataFrame:
    """Boolean samples x metals table, True outside [Q1 - k IQR, Q3 + k IQR] (Tukey's fences).

    With ``log=True`` the fences are computed on log values (appropriate for right-skewed
    concentrations).

    Parameters
    ----------
    conc : DataFrame
        Samples x metals concentrations.
    factor : float, default 1.5
        Fence multiplier k of the interquartile range (> 0).
    log : bool, default False
        Compute the fences on natural-log values (non-positive values become NaN).

    Returns
    -------
    DataFrame
        Boolean samples x metals table, True for outliers.
    """
    _check_wide(conc)
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    x = np.log(conc.where(conc > 0)) if log else conc
    q1, q3 = x.quantile(0.25), x.quantile(0.75)
    iqr = q3 - q1
    return (x < q1 - factor * iqr) | (x > q3 + factor * iqr)


_EXC_SAMPLE_COLUMNS = ["sample_id", "medium", "metal", "reference_set", "threshold_name", "threshold", "condition",
                       "exceeds", "status", "concentration", "censored", "detection_limit", "fallback",
                       "fallback_reason"]
EXCEEDANCE_COLUMNS = ["medium", "metal", "reference_set", "threshold_name", "threshold", "threshold_max", "n",
                      "n_exceeding", "n_cannot_tell", "n_fallback", "share_exceeding"]


def exceedance_samples(conc: pd.DataFrame, *, background_set: str | None, guideline_set: str | None,
                       medium: str = "soil", unit: str = "mg/kg", water_standard_set: str | None = None,
                       conditions: pd.DataFrame | None = None, default_conditions: dict | None = None,
                       censored: pd.DataFrame | None = None, detection_limit: pd.DataFrame | None = None
                       ) -> pd.DataFrame:
    """Each sample judged against each applicable background, guideline and water-standard value.

    Guideline sets with conditions (land use, pH class: GB 15618-2018) give every sample the
    value of its own class (:func:`hmlib.reference.applicable_guidelines`); where a condition
    is unknown the strictest value the known conditions leave is used (``fallback``).

    A non-detect (``censored``) is below its detection limit DL. It is ``not above`` a threshold
    when DL <= threshold, and ``cannot tell`` when DL > threshold (its true value may lie on either
    side), never counted as below [@helsel2012]. A detected value is ``above`` when strictly
    greater than the threshold. Missing concentrations give no row.

    Parameters
    ----------
    conc : samples (index sample_id) x metals in ``unit``.
    background_set, guideline_set, water_standard_set : reference set names (None: not used).
        A set without values for the medium contributes no rows.
    conditions : DataFrame indexed by sample_id with condition columns (``ph``, ``land_use``).
    default_conditions : condition -> value for the whole region where ``conditions`` has no column.
    censored, detection_limit : same shape as ``conc``: non-detect flags and detection limits
        (``unit``); None: every value is a detect.

    Returns
    -------
    DataFrame sample_id, medium, metal, reference_set, threshold_name, threshold, condition,
    exceeds (nullable boolean; missing = cannot tell), status (``above``, ``not above``,
    ``cannot tell``), concentration, censored, detection_limit, fallback, fallback_reason.
    """
    _check_wide(conc)
    from .errors import ReferenceDataError
    from .reference import applicable_guidelines

    ids = conc.index.astype(str)
    c = conc.copy()
    c.index = ids
    cond = conditions.copy() if conditions is not None else pd.DataFrame(index=ids)
    cond.index = cond.index.astype(str)
    cond = cond.reindex(ids)
    parts = []

    def flat(ref: str, name: str, values: pd.Series, condition: str) -> pd.DataFrame:
        rows = [pd.DataFrame({"sample_id": ids, "metal": m, "threshold_name": name, "threshold": float(v),
                              "condition": condition, "fallback": False, "fallback_reason": ""})
                for m, v in values.items() if m in c.columns]
        return pd.concat(rows, ignore_index=True).assign(reference_set=ref) if rows else None

    if background_set:
        try:
            bg = background_values(background_set, medium=medium, unit=unit)
            parts.append(flat(background_set, "background", bg, ""))
        except ReferenceDataError:
            pass
    if guideline_set:
        try:
            gl = guideline_values(guideline_set, medium=medium, unit=unit)
            gl = gl[gl["metal"].isin(c.columns)]
            if len(gl):
                parts.append(applicable_guidelines(gl, cond, default=default_conditions)
                             .assign(reference_set=guideline_set))
        except ReferenceDataError:
            pass
    if water_standard_set and dimension(unit) == "mass_concentration":
        ws = load_reference("water_standard", water_standard_set)
        ws = ws[ws["unit"].map(dimension) == "mass_concentration"]
        vals = pd.Series({r.metal: float(convert(float(r.value), r.unit, unit)) for r in ws.itertuples()})
        parts.append(flat(water_standard_set, "water_standard", vals, ""))
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return pd.DataFrame({k: pd.Series(dtype=object) for k in _EXC_SAMPLE_COLUMNS})
    t = pd.concat(parts, ignore_index=True)
    long = c.rename_axis(index="sample_id", columns="metal").stack(future_stack=True).rename("concentration")
    t = t.merge(long.reset_index(), on=["sample_id", "metal"], how="left")
    if censored is not None:
        cen = censored.copy()
        cen.index = cen.index.astype(str)
        cen = cen.rename_axis(index="sample_id", columns="metal").stack(future_stack=True).rename("censored")
        t = t.merge(cen.reset_index(), on=["sample_id", "metal"], how="left")
        t["censored"] = t["censored"].fillna(False).astype(bool)
    else:
        t["censored"] = False
    if detection_limit is not None:
        dl = detection_limit.copy()
        dl.index = dl.index.astype(str)
        dl = dl.rename_axis(index="sample_id", columns="metal").stack(future_stack=True).rename("detection_limit")
        t = t.merge(dl.reset_index(), on=["sample_id", "metal"], how="left")
    else:
        t["detection_limit"] = np.nan
    t = t[t["concentration"].notna() & t["threshold"].notna()].copy()
    # a non-detect without a recorded limit: its reported (substituted) value bounds nothing; use it as the limit
    dlv = t["detection_limit"].astype(float).where(t["detection_limit"].notna(), t["concentration"])
    cannot = t["censored"] & (dlv > t["threshold"])
    above = ~t["censored"] & (t["concentration"] > t["threshold"])
    t["status"] = np.where(cannot, "cannot tell", np.where(above, "above", "not above"))
    t["exceeds"] = pd.array(np.where(cannot, None, above), dtype="boolean")
    t.insert(1, "medium", medium)
    return t[_EXC_SAMPLE_COLUMNS].reset_index(drop=True)


def exceedance_summary(samples: pd.DataFrame) -> pd.DataFrame:
    """Counts per medium, metal, reference set and threshold from :func:`exceedance_samples`.

    ``threshold``/``threshold_max``: lowest and highest value applied (equal unless the set
    has conditions); ``n``: samples with a value; ``n_exceeding``: above; ``n_cannot_tell``:
    non-detects whose detection limit is above the threshold; ``n_fallback``: samples judged
    against the strictest value because a condition (pH, land use) was unknown;
    ``share_exceeding`` = n_exceeding / n.

    Parameters
    ----------
    samples : DataFrame
        Per-sample judgements from :func:`exceedance_samples`.

    Returns
    -------
    DataFrame
        One row per medium, metal, reference set and threshold, with columns :data:`EXCEEDANCE_COLUMNS`.
    """
    rows = []
    for (medium, metal, ref, name), g in samples.groupby(["medium", "metal", "reference_set", "threshold_name"],
                                                         sort=False):
        n = len(g)
        k = int((g["status"] == "above").sum())
        rows.append({"medium": medium, "metal": metal, "reference_set": ref, "threshold_name": name,
                     "threshold": float(g["threshold"].min()), "threshold_max": float(g["threshold"].max()),
                     "n": n, "n_exceeding": k, "n_cannot_tell": int((g["status"] == "cannot tell").sum()),
                     "n_fallback": int(g["fallback"].sum()), "share_exceeding": k / n if n else np.nan})
    return pd.DataFrame(rows, columns=EXCEEDANCE_COLUMNS)


def exceedance(conc: pd.DataFrame, *, background_set: str | None, guideline_set: str | None,
               medium: str = "soil", unit: str = "mg/kg", water_standard_set: str | None = None,
               conditions: pd.DataFrame | None = None, default_conditions: dict | None = None,
               censored: pd.DataFrame | None = None, detection_limit: pd.DataFrame | None = None) -> pd.DataFrame:
    """Counts and shares of samples above background and guideline values.

    The per-sample judgement of :func:`exceedance_samples` (each sample against the value of
    its own land-use and pH class; non-detects with a detection limit above the threshold
    counted as ``cannot tell``) summarised by :func:`exceedance_summary`. Arguments as in
    :func:`exceedance_samples`.

    Parameters
    ----------
    conc : DataFrame
        Samples (index sample_id) x metals in ``unit``.
    background_set, guideline_set, water_standard_set : str or None
        Reference set names (None: not used).
    medium : str, default "soil"
        Medium of the concentrations.
    unit : str, default "mg/kg"
        Unit of ``conc`` and ``detection_limit``.
    conditions : DataFrame, optional
        Per-sample condition columns (``ph``, ``land_use``), indexed by sample_id.
    default_conditions : dict, optional
        Condition -> value for the whole region.
    censored, detection_limit : DataFrame, optional
        Non-detect flags and detection limits, same shape as ``conc``.

    Returns
    -------
    DataFrame with columns :data:`EXCEEDANCE_COLUMNS`.
    """
    return exceedance_summary(exceedance_samples(
        conc, background_set=background_set, guideline_set=guideline_set, medium=medium, unit=unit,
        water_standard_set=water_standard_set, conditions=conditions, default_conditions=default_conditions,
        censored=censored, detection_limit=detection_limit))


def exceedance_text(summary: pd.DataFrame, *, guideline_set: str | None, default_conditions: dict | None,
                    condition_columns: dict | None) -> str:
    """Methods sentence on how each sample was judged (conditions used, fallbacks, non-detects).

    Parameters
    ----------
    summary : DataFrame
        Exceedance summary (:func:`exceedance`).
    guideline_set : str or None
        Guideline set used.
    default_conditions : dict or None
        Region-wide condition values.
    condition_columns : dict or None
        Condition -> sample column that gives it per sample.

    Returns
    -------
    str
        Methods sentences.
    """
    parts = []
    if guideline_set:
        from .reference import guideline_condition_variables

        variables = guideline_condition_variables(guideline_values_any(guideline_set))
        if variables:
            own, given = [], []   # "its own pH and the land use class 'other' (...)": own classes first
            for var in variables:
                label = {"ph": "pH", "land_use": "land use"}.get(var, var.replace("_", " "))
                col = (condition_columns or {}).get(var)
                val = (default_conditions or {}).get(var)
                if col:
                    own.append(f"its own {label}")
                elif val is not None:
                    given.append(f"the {label} class '{val}' (no {label} is given per sample, so this class applies "
                                 "to the whole region)")
                else:
                    given.append(f"the strictest {label} class (no {label} is given)")
            how = own + given
            name = reference_label(guideline_set, cite=False)
            parts.append(f"{name[0].upper() + name[1:]} sets values by {' and '.join(label_of(v) for v in variables)}; each sample "
                         f"was judged against the value for {' and '.join(how)}.")
            g = summary[summary["reference_set"] == guideline_set]
            nf = int(g.groupby("medium")["n_fallback"].max().sum()) if len(g) else 0
            if nf:
                parts.append(f"{nf} sample{'s' if nf != 1 else ''} without the needed condition "
                             f"{'were' if nf != 1 else 'was'} judged against the strictest value.")
    nc = int(summary["n_cannot_tell"].sum()) if len(summary) else 0
    if nc:
        parts.append("A non-detect counts as above no threshold; where its detection limit exceeds the threshold it "
                     f"cannot be told whether the sample is above or below, and it is counted apart ({nc} such "
                     "judgements in all).")
    return " ".join(parts)


def sample_conditions(sites: pd.DataFrame, *, ph_column: str | None, land_use_column: str | None,
                      land_use: str | None, guideline_set: str | None) -> tuple[pd.DataFrame, dict, dict]:
    """Condition table of the samples for :func:`exceedance_samples` and the guideline conditions used.

    Parameters
    ----------
    sites : sample attributes indexed by sample_id (:meth:`hmlib.io.RegionData.sites`).
    ph_column, land_use_column : sample columns holding pH and land use (None: not given).
    land_use : one land use for the whole region when ``land_use_column`` is None; None: the
        set's ``other`` class where it has one (GB 15618-2018), else unknown (strictest value).
    guideline_set : the guideline set (to find its ``other`` class).

    Returns
    -------
    (conditions, default_conditions, condition_columns): conditions indexed by sample_id with
    columns ``ph``/``land_use`` where given; the region-wide defaults; variable -> column used.
    """
    cond = pd.DataFrame(index=sites.index.astype(str))
    cols = {}
    if ph_column:
        cond["ph"] = pd.to_numeric(sites[ph_column], errors="coerce").to_numpy()
        cols["ph"] = ph_column
    if land_use_column:
        cond["land_use"] = sites[land_use_column].astype(object).to_numpy()
        cols["land_use"] = land_use_column
    default = {}
    if not land_use_column:
        if land_use is not None:
            default["land_use"] = land_use
        elif guideline_set:
            g = guideline_values_any(guideline_set)
            if "land_use" in g.columns and "other" in set(g["land_use"].dropna().astype(str)):
                default["land_use"] = "other"
    return cond, default, cols


#: Reader's names of the shipped reference sets (set name -> (name, BibTeX key or None)).
REFERENCE_SET_LABELS = {
    "UCC_RudnickGao2014": ("the upper continental crust of Rudnick and Gao (2014)", "rudnick2014"),
    "ChinaSoil_CNEMC1990": ("the soil background values of China (CNEMC 1990)", "cnemc1990"),
    "XinjiangSoil_CNEMC1990": ("the soil background values of Xinjiang (CNEMC 1990, as tabulated by Zhao et al. "
                               "2026)", "cnemc1990"),
    "VBBo_Swiss1998": ("the Swiss Ordinance on Soil Pollution (VBBo 1998)", "vbbo1998"),
    "VSBo_Swiss1986": ("the Swiss Ordinance on Pollutants in Soil (VSBo 1986)", "vsbo1986"),
    "GB15618_2018": ("the Chinese agricultural soil standard GB 15618-2018", "gb15618_2018"),
    "DutchSoil_VROM2000": ("the Dutch soil target and intervention values (VROM 2000)", "vrom2000"),
    "WHO_2022": ("the WHO guidelines for drinking-water quality (2022)", "who2022dwq"),
    "GB5749_2022": ("the Chinese drinking-water standard GB 5749-2022", "gb5749_2022"),
}

#: The same names with their citation, written so that the rendered text names author and year once
#: ("Rudnick and Gao (2014)", not "Rudnick and Gao (2014) (Rudnick and Gao 2014)").
_CITED_LABELS = {
    "UCC_RudnickGao2014": "the upper continental crust of Rudnick and Gao [-@rudnick2014]",
    "ChinaSoil_CNEMC1990": "the soil background values of China [@cnemc1990]",
    "XinjiangSoil_CNEMC1990": "the soil background values of Xinjiang [@cnemc1990; as tabulated by @zhao2026tarim]",
    "VBBo_Swiss1998": "the Swiss Ordinance on Soil Pollution [VBBo, @vbbo1998]",
    "VSBo_Swiss1986": "the Swiss Ordinance on Pollutants in Soil [VSBo, @vsbo1986]",
    "GB15618_2018": "the Chinese agricultural soil standard GB 15618-2018 [@gb15618_2018]",
    "DutchSoil_VROM2000": "the Dutch soil target and intervention values [@vrom2000]",
    "WHO_2022": "the WHO guidelines for drinking-water quality [@who2022dwq]",
    "GB5749_2022": "the Chinese drinking-water standard GB 5749-2022 [@gb5749_2022]",
}


def reference_label(name: str | None, *, cite: bool = True, short: bool = False) -> str:
    """The reader's name of reference set ``name`` for report prose, never its file code.

    Parameters
    ----------
    name : set name as in ``params.references`` (e.g. ``"UCC_RudnickGao2014"``).
    cite : append the citation ``[@key]`` where the set has a BibTeX entry.
    short : drop the leading article ("upper continental crust of Rudnick and Gao (2014)"), for
        captions and table cells.

    Returns
    -------
    str
        E.g. ``"the upper continental crust of Rudnick and Gao [-@rudnick2014]"`` (rendered "... of
        Rudnick and Gao (2014)"); a set
        without a known name is described from its file name (``Set_AuthorYear`` -> "Set (Author Year)").
    """
    if not name:
        return "no reference set"
    label, key = REFERENCE_SET_LABELS.get(name, (None, None))
    if label is None:
        import re

        stem, _, who = str(name).partition("_")
        m = re.match(r"([A-Za-z]+?)(\d{4})$", who)
        words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem).replace("_", " ")
        label = f"the {words} reference values" + (f" ({m.group(1)} {m.group(2)})" if m else "")
    if cite and name in _CITED_LABELS:
        label = _CITED_LABELS[name]
    elif cite and key:
        label = f"{label} [@{key}]"
    if short and label.startswith("the "):
        label = label[4:]
    return label


def label_of(var: str) -> str:
    """Reader's name of a guideline condition variable."""
    return {"ph": "pH class", "land_use": "land use"}.get(var, var.replace("_", " "))


def guideline_values_any(name: str) -> pd.DataFrame:
    """All rows of guideline set ``name`` (every medium and unit), as loaded."""
    return load_reference("guideline", name)


def correlation_table(conc: pd.DataFrame, *, medium: str = "soil", log: bool = True) -> pd.DataFrame:
    """Pearson and Spearman coefficients with two-tailed p-values for every pair of metals.

    Pairwise complete observations. Returns medium, method, scale, metal_a, metal_b, r, p, n.

    Parameters
    ----------
    conc : DataFrame
        Samples x metals concentrations.
    medium : str, default "soil"
        Medium name written to the table.
    log : bool, default True
        Correlate log10 values (non-positive values dropped) instead of raw values.

    Returns
    -------
    pd.DataFrame
        Medium, method, scale, metal_a, metal_b, r, p, n.
    """
    _check_wide(conc)
    x = np.log10(conc.where(conc > 0)) if log else conc
    rows = []
    cols = list(x.columns)
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            ok = x[[a, b]].dropna()
            for method, fn in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
                if len(ok) >= 3:
                    res = fn(ok[a], ok[b])
                    r, p = float(res[0]), float(res[1])
                else:
                    r = p = np.nan
                rows.append({"medium": medium, "method": method, "scale": "log10" if log else "raw",
                             "metal_a": a, "metal_b": b, "r": r, "p": p, "n": len(ok)})
    return pd.DataFrame(rows)


def correlation_matrices(pairs: pd.DataFrame, *, metals: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Square matrices of r and p from the pair rows of :func:`correlation_table` (one method, one medium).

    Parameters
    ----------
    pairs : rows of :func:`correlation_table` for one medium and one method.
    metals : row and column order of the matrices.

    Returns
    -------
    (r, p) : DataFrames metals x metals; the diagonal is r = 1, p = 0.
    """
    r = pd.DataFrame(1.0, index=metals, columns=metals)
    pv = pd.DataFrame(0.0, index=metals, columns=metals)
    for row in pairs.itertuples():
        r.loc[row.metal_a, row.metal_b] = r.loc[row.metal_b, row.metal_a] = row.r
        pv.loc[row.metal_a, row.metal_b] = pv.loc[row.metal_b, row.metal_a] = row.p
    return r, pv


def data_overview(data) -> pd.DataFrame:
    """One row per medium: samples, metals, censored and missing values, unit, grid cells."""
    rows = []
    for m in data.media:
        c = data.concentrations[data.concentrations["medium"] == m]
        rows.append({
            "medium": m,
            "n_samples": int(c["sample_id"].nunique()),
            "metals": ", ".join(c["metal"].unique()),
            "unit": data.unit(m),
            "n_censored": int(c["censored"].sum()),
            "n_missing": int(c["value"].isna().sum()),
            "n_imputed": int(c["imputed"].sum()),
            "grid_cells": int(len(data.grid)) if data.grid is not None else 0,
        })
    return pd.DataFrame(rows)


def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Reader's version of :func:`summary_statistics`: one row per medium and metal, units in headers."""
    wide = summary.pivot_table(index=["medium", "metal"], columns="statistic", values="value", sort=False)
    units = summary.loc[summary["unit"] != "1"].groupby("medium", sort=False)["unit"].first()
    one_unit = units.nunique() == 1
    u = f" ({units.iloc[0]})" if one_unit else ""
    cols = {"n": "n", "n_censored": "censored", "n_missing": "missing", "min": f"min{u}", "p25": f"P25{u}",
            "median": f"median{u}", "mean": f"mean{u}", "geometric_mean": f"GM{u}",
            "p75": f"P75{u}", "max": f"max{u}", "sd": f"SD{u}", "cv": "CV",
            "skewness": "skew", "kurtosis": "kurt"}
    out = wide[list(cols)].rename(columns=cols).reset_index()
    if not one_unit:  # media in different units (mg/kg solids, ug/L water): a unit column per row
        out.insert(2, "unit", out["medium"].map(units))
    out["n"] = out["n"].astype(int)
    out["censored"] = out["censored"].astype(int)
    out["missing"] = out["missing"].astype(int)
    if out["medium"].nunique() == 1:
        out = out.drop(columns="medium")
    return out.rename(columns={"metal": "Metal", "medium": "Medium", "unit": "Unit"})


def methods_text(*, background_set: str | None, guideline_set: str | None, iqr_factor: float, alpha: float,
                 substitution: str, correlation_log: bool, imputation: str = "none",
                 water_standard_set: str | None = None) -> str:
    """Methods paragraph of the data-quality section (pandoc markdown).

    Parameters
    ----------
    background_set, guideline_set, water_standard_set : reference sets compared with (None: not used);
        named in the text by :func:`reference_label`, never by their file codes.
    iqr_factor : Tukey fence multiplier.
    alpha : significance level of the tests.
    substitution : how non-detects were replaced (``half_dl``, ``dl``, ``dl_sqrt2``, ``zero``).
    correlation_log : correlations on log10 values (else raw).
    imputation : how missing values were handled (``none``, ``median``, ``drop``).

    Returns
    -------
    str
        Methods paragraph.
    """
    sub = {"half_dl": "half the detection limit", "dl": "the detection limit",
           "dl_sqrt2": "the detection limit divided by $\\sqrt{2}$", "zero": "zero"}[substitution]
    refs = []
    if background_set:
        refs.append(f"the natural background of {reference_label(background_set)}")
    if guideline_set:
        refs.append(f"the values of {reference_label(guideline_set)}")
    if water_standard_set:
        refs.append(f"for water, {reference_label(water_standard_set)}")
    scale = "log10" if correlation_log else "raw"
    imp = {"none": "left missing (statistics use the available values)",
           "median": "replaced by the median of the medium and flagged as imputed",
           "drop": "dropped with their sample"}[imputation]
    compare = (f" Each sample was compared with {_and(refs)}; where a guideline set distinguishes land uses or "
               "pH classes, each sample is judged against the value of its own class." if refs else "")
    return f"""
Every input value was checked before analysis (numeric, non-negative, coordinates inside the stated
reference system, unique sample identifiers); non-detects were replaced by {sub} and missing values were
{imp}. Normality was tested with the Shapiro-Wilk test [@shapiro1965] on raw and log values (significance
level {alpha:g}). Samples outside Tukey's fences $[Q_1 - k\\,\\mathrm{{IQR}},\\ Q_3 + k\\,\\mathrm{{IQR}}]$,
$k = {iqr_factor:g}$, on log values are flagged and kept, because in geochemical surveys extreme values are
often the contamination of interest rather than errors [@reimann2005].{compare} Pearson and Spearman
coefficients were computed on {scale} concentrations with two-tailed p-values.
"""


def _and(items) -> str:
    """Words joined as a reader lists them: "Cd", "Cd and Pb", "Cd, Pb and Zn"."""
    items = [str(i) for i in items]
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def by_medium(items, *, n_metals: dict | None = None) -> list[str]:
    """(medium, words) pairs grouped as a reader lists them, one phrase per medium in order of first
    appearance: [("soil", "As"), ("soil", "Hg"), ("water", "Cd")] -> ["As and Hg in soil", "Cd in water"].

    Parameters
    ----------
    items : iterable of (str, str)
        Medium and the words for one of its metals.
    n_metals : dict, optional
        Medium -> its number of metals; where every one is listed the phrase is "every metal in water"
        (the words must then be bare metal names).

    Returns
    -------
    list of str
        One phrase per medium.
    """
    groups: dict[str, list[str]] = {}
    for medium, words in items:
        groups.setdefault(str(medium), []).append(str(words))
    return [f"every metal in {m}" if n_metals and len(w) == n_metals.get(m, -1) and len(w) > 1
            else f"{_and(w)} in {m}" for m, w in groups.items()]


def count_of(k: int, n: int, noun: str) -> str:
    """How many of ``n`` things as a reader says it: "all 4 metals", "both metals", "none of the 4 metals",
    "3 of 4 metals" (never "4 of 4 metals").

    Parameters
    ----------
    k, n : int
        How many, of how many.
    noun : str
        The things, plural ("metals"; "the one metal" when ``n`` is 1).

    Returns
    -------
    str
    """
    k, n = int(k), int(n)
    if n == 1:
        one = noun[:-1] if noun.endswith("s") and not noun.endswith("ss") else noun
        return f"the one {one}" if k else f"no {one}"
    if k == n:
        return f"both {noun}" if n == 2 else f"all {n} {noun}"
    if k == 0:
        return f"none of the {n} {noun}"
    return f"{k} of {n} {noun}"


_THRESHOLD_HEADERS = {"background": "Background", "guide": "Guide value", "trigger": "Trigger value",
                      "clean_up": "Clean-up value", "risk_screening": "Risk screening value",
                      "risk_intervention": "Risk intervention value", "target": "Target value",
                      "intervention": "Intervention value", "water_standard": "Water standard",
                      "tolerance": "Tolerance value"}


def threshold_header(name: str) -> str:
    """Reader's name of a threshold.

    Parameters
    ----------
    name : threshold name of a reference set (``guide``, ``clean_up``, ``risk_screening``...).

    Returns
    -------
    str
        E.g. ``"Clean-up value"``.
    """
    return _THRESHOLD_HEADERS.get(str(name), str(name).replace("_", " ").capitalize())


def exceedance_display(summary: pd.DataFrame, *, units: dict, drop_never_exceeded: bool = True
                       ) -> tuple[pd.DataFrame, list[str]]:
    """Reader's version of the exceedance summary: one row per medium and metal, a value and a share per threshold.

    Parameters
    ----------
    summary : :func:`exceedance_summary` output, optionally with ``ci_low``/``ci_high`` (fractions).
    units : medium -> concentration unit (water in ug/L, solids in mg/kg).
    drop_never_exceeded : leave out thresholds no sample of any metal exceeded (named in the
        returned list instead, for one sentence).

    Returns
    -------
    (DataFrame, list of str)
        The display table (a Unit column when media differ in unit) and the thresholds left out.
    """
    from .outputs import format_table

    s = summary.copy()
    one_unit = len({units.get(m, "") for m in s["medium"].unique()}) == 1
    u = f" ({units.get(s['medium'].iloc[0], '')})" if one_unit and len(s) else ""
    names = list(dict.fromkeys(s["threshold_name"]))
    dropped = [n for n in names if drop_never_exceeded and n != "background"
               and s.loc[s["threshold_name"] == n, "n_exceeding"].sum() == 0]
    keep = [n for n in names if n not in dropped]
    rows = {}
    for r in s.itertuples():
        if r.threshold_name not in keep:
            continue
        row = rows.setdefault((r.medium, r.metal), {"Medium": r.medium, "Metal": r.metal,
                                                      "Unit": units.get(r.medium, "")})
        lo, hi = format_table(pd.DataFrame({"a": [r.threshold], "b": [r.threshold_max]})).iloc[0]
        h = threshold_header(r.threshold_name)
        row[f"{h}{u}"] = lo if r.threshold == r.threshold_max else f"{lo}–{hi}"
        share = 100 * r.share_exceeding
        ci = ""
        if hasattr(r, "ci_low") and np.isfinite(getattr(r, "ci_low", np.nan)):
            ci = f" ({100 * r.ci_low:.0f}–{100 * r.ci_high:.0f})"
        row[f"Above {h.replace(' value', '').lower()} (%)"] = f"{share:.0f}{ci}" if share >= 1 or share == 0 \
            else f"{share:.1f}{ci}"
    out = pd.DataFrame(list(rows.values())).fillna("–")
    if one_unit:
        out = out.drop(columns=["Unit"])
    if out["Medium"].nunique() == 1:
        out = out.drop(columns=["Medium"])
    return out, [threshold_header(n).lower() for n in dropped]


def plot_correlations(pearson: pd.DataFrame, spearman: pd.DataFrame, *, pearson_p: pd.DataFrame | None = None,
                      spearman_p: pd.DataFrame | None = None, alpha: float = 0.05, scale: str = "log10"):
    """One heatmap of both coefficients: Pearson above the diagonal, Spearman below.

    Parameters
    ----------
    pearson, spearman : square correlation matrices (same metal order).
    pearson_p, spearman_p : their p-values; * marks p < alpha, ** p < alpha/5.
    alpha : significance level of the marks.
    scale : the scale the coefficients were computed on, for the axis note.

    Returns
    -------
    matplotlib.figure.Figure
        At most a page wide, text at least 7 pt.
    """
    import matplotlib.pyplot as plt

    from .plots import PAGE_WIDTH_IN, print_style

    n = len(pearson.index)
    with print_style():
        side = min(0.5 * n + 1.9, PAGE_WIDTH_IN * 0.7)
        fig, ax = plt.subplots(figsize=(side + 0.6, side))
        im = _draw_correlations(ax, pearson, spearman, pearson_p=pearson_p, spearman_p=spearman_p, alpha=alpha)
        ax.set_xlabel(f"above the diagonal: Pearson r; below: Spearman ρ ({scale} values)")
        cb = fig.colorbar(im, ax=ax, shrink=0.75, pad=0.02)
        cb.set_label("correlation coefficient")
        fig.tight_layout()
    return fig


def plot_correlations_by_medium(panels: dict, *, alpha: float = 0.05, scale: str = "log10"):
    """The heatmap of :func:`plot_correlations` for several media in one figure, two panels a row, one colour bar.

    Parameters
    ----------
    panels : medium -> ``(pearson, spearman, pearson_p, spearman_p)`` as for :func:`plot_correlations`.
    alpha, scale : as for :func:`plot_correlations`.

    Returns
    -------
    matplotlib.figure.Figure
        A page wide, text at least 7 pt.
    """
    import matplotlib.pyplot as plt

    from .plots import PAGE_WIDTH_IN, print_style

    k = len(panels)
    ncol = min(k, 2)
    nrow = -(-k // ncol)
    with print_style():
        w = PAGE_WIDTH_IN
        fig, axes = plt.subplots(nrow, ncol, figsize=(w, nrow * (w / ncol) + 0.6), squeeze=False,
                                 layout="constrained")
        im = None
        for ax, (medium, (rp, rs, pp, ps)) in zip(axes.ravel(), panels.items()):
            im = _draw_correlations(ax, rp, rs, pearson_p=pp, spearman_p=ps, alpha=alpha, compact=True)
            ax.set_title(medium[:1].upper() + medium[1:])
        for ax in axes.ravel()[k:]:
            ax.set_visible(False)
        if im is not None:  # one horizontal colour bar under the panels, so that they keep the page's width
            cb = fig.colorbar(im, ax=list(axes.ravel()), orientation="horizontal", shrink=0.5, aspect=40)
            cb.set_label(f"correlation coefficient: above the diagonal Pearson r, below Spearman ρ ({scale} values)")
    return fig


def _draw_correlations(ax, pearson: pd.DataFrame, spearman: pd.DataFrame, *, pearson_p=None, spearman_p=None,
                       alpha: float = 0.05, compact: bool = False):
    """Draw one Pearson/Spearman heatmap on ``ax``; returns the image (for a colour bar). ``compact`` writes
    coefficients without the leading zero (".82", "−.35"), as journals do where cells are small."""
    from .plots import MIN_FONT_PT

    metals = list(pearson.index)
    n = len(metals)
    m = np.full((n, n), np.nan)
    pv = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            if i < j:
                m[i, j] = pearson.iloc[i, j]
                pv[i, j] = pearson_p.iloc[i, j] if pearson_p is not None else np.nan
            elif i > j:
                m[i, j] = spearman.iloc[i, j]
                pv[i, j] = spearman_p.iloc[i, j] if spearman_p is not None else np.nan
    im = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1)
    for i in range(n):
        for j in range(n):
            if i == j:
                ax.text(j, i, metals[i], ha="center", va="center", fontsize=MIN_FONT_PT + 1, fontweight="bold")
                continue
            if not np.isfinite(m[i, j]):
                continue
            star = "" if not np.isfinite(pv[i, j]) else ("**" if pv[i, j] < alpha / 5 else
                                                          "*" if pv[i, j] < alpha else "")
            num = f"{m[i, j]:.2f}"
            if compact:
                num = num.replace("0.", ".", 1).replace("-", "\u2212")
            ax.text(j, i, f"{num}{star}", ha="center", va="center", fontsize=MIN_FONT_PT,
                    color="white" if abs(m[i, j]) > 0.6 else "black")
    ax.set_xticks(range(n), metals)
    ax.set_yticks(range(n), metals)
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)
    return im
