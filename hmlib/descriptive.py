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

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import stats

from .params import StageOptions
from .reference import background_values, guideline_values, load_reference
from .units import convert, dimension

__all__ = [
    "DataQualityOptions",
    "summary_statistics",
    "normality_tests",
    "iqr_outliers",
    "exceedance",
    "correlation_table",
    "STATISTICS",
]

STATISTICS = ["n", "n_censored", "n_missing", "min", "p25", "median", "mean", "geometric_mean", "p75", "max",
              "sd", "cv", "skewness", "kurtosis"]


class DataQualityOptions(StageOptions):
    """Options of the ``data_quality`` stage."""

    iqr_factor: float = Field(default=1.5, gt=0, description="Tukey fence multiplier for outlier flags")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="significance level for tests and marks")
    correlation_log: bool = Field(default=True, description="correlations on log10 values (else raw)")
    map_columns: int = Field(default=4, ge=1, le=6, description="panels per row in the sample maps")


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


def normality_tests(conc: pd.DataFrame, *, medium: str = "soil", alpha: float = 0.05) -> pd.DataFrame:
    """Shapiro-Wilk W and p on raw and natural-log values per metal.

    Returns columns medium, metal, scale (``raw``/``log``), w, p, normal (p >= alpha).
    """
    _check_wide(conc)
    rows = []
    for metal in conc.columns:
        v = conc[metal].dropna().to_numpy(float)
        for scale, y in (("raw", v), ("log", np.log(v[v > 0]))):
            if y.size >= 3:
                w, p = stats.shapiro(y)
            else:
                w = p = np.nan
            rows.append({"medium": medium, "metal": metal, "scale": scale, "w": float(w), "p": float(p),
                         "normal": bool(p >= alpha) if np.isfinite(p) else False})
    return pd.DataFrame(rows)


def iqr_outliers(conc: pd.DataFrame, *, factor: float = 1.5, log: bool = False) -> pd.DataFrame:
    """Boolean samples x metals table, True outside [Q1 - k IQR, Q3 + k IQR] (Tukey's fences).

    With ``log=True`` the fences are computed on log values (appropriate for right-skewed
    concentrations).
    """
    _check_wide(conc)
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    x = np.log(conc.where(conc > 0)) if log else conc
    q1, q3 = x.quantile(0.25), x.quantile(0.75)
    iqr = q3 - q1
    return (x < q1 - factor * iqr) | (x > q3 + factor * iqr)


def _strictest(gl: pd.DataFrame) -> pd.DataFrame:
    return gl.groupby(["metal", "threshold_name"], as_index=False, sort=False)["value"].min()


def exceedance(conc: pd.DataFrame, *, background_set: str | None, guideline_set: str | None,
               medium: str = "soil", unit: str = "mg/kg", water_standard_set: str | None = None) -> pd.DataFrame:
    """Counts and shares of samples above background and guideline values.

    Where a guideline set gives several values for one metal and threshold (by land use or
    pH class) the strictest (lowest) is used; the report says so. A set with no values for the
    medium (a soil background for water) contributes no rows; water media are compared with
    ``water_standard_set`` when given.

    Returns columns medium, metal, reference_set, threshold_name, threshold, n_exceeding,
    share_exceeding (share of non-missing samples strictly above the threshold).
    """
    _check_wide(conc)
    from .errors import ReferenceDataError

    refs = []
    # a set without values for this medium (e.g. a soil background for water) contributes no rows
    if background_set:
        try:
            bg = background_values(background_set, medium=medium, unit=unit)
            refs += [(background_set, "background", m, float(v)) for m, v in bg.items()]
        except ReferenceDataError:
            pass
    if guideline_set:
        try:
            gl = _strictest(guideline_values(guideline_set, medium=medium, unit=unit))
            refs += [(guideline_set, r.threshold_name, r.metal, float(r.value)) for r in gl.itertuples()]
        except ReferenceDataError:
            pass
    if water_standard_set and dimension(unit) == "mass_concentration":
        ws = load_reference("water_standard", water_standard_set)
        ws = ws[ws["unit"].map(dimension) == "mass_concentration"]
        refs += [(water_standard_set, "water_standard", r.metal, float(convert(float(r.value), r.unit, unit)))
                 for r in ws.itertuples()]
    rows = []
    for ref, name, metal, thr in refs:
        if metal not in conc.columns:
            continue
        v = conc[metal].dropna()
        n_exc = int((v > thr).sum())
        rows.append({"medium": medium, "metal": metal, "reference_set": ref, "threshold_name": name,
                     "threshold": thr, "n_exceeding": n_exc, "share_exceeding": n_exc / len(v) if len(v) else np.nan})
    return pd.DataFrame(rows, columns=["medium", "metal", "reference_set", "threshold_name", "threshold",
                                       "n_exceeding", "share_exceeding"])


def correlation_table(conc: pd.DataFrame, *, medium: str = "soil", log: bool = True) -> pd.DataFrame:
    """Pearson and Spearman coefficients with two-tailed p-values for every pair of metals.

    Pairwise complete observations. Returns medium, method, scale, metal_a, metal_b, r, p, n.
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
                 substitution: str, correlation_log: bool, imputation: str = "none") -> str:
    """Methods paragraph of the data-quality section (pandoc markdown)."""
    sub = {"half_dl": "half the detection limit (DL/2)", "dl": "the detection limit",
           "dl_sqrt2": "DL/$\\sqrt{2}$", "zero": "zero"}[substitution]
    refs = []
    if background_set:
        refs.append(f"the background set `{background_set}`")
    if guideline_set:
        refs.append(f"the guideline set `{guideline_set}`")
    scale = "log10-transformed" if correlation_log else "raw"
    imp = {"none": "left missing; statistics use the available values",
           "median": "replaced by the median of the medium and flagged as imputed",
           "drop": "samples with a missing metal value were dropped"}[imputation]
    return f"""
Every input value was checked before analysis (numeric, non-negative, coordinates inside the stated
reference system, unique sample ids); non-detects were replaced by {sub}, and missing values are
counted below ({imp}). Location and spread are given on the raw concentrations together with the geometric
mean; skewness and excess kurtosis are bias-corrected moment coefficients. Normality was tested with
the Shapiro-Wilk test [@shapiro1965] on raw and natural-log values (significance level {alpha}).
Samples outside Tukey's fences $[Q_1 - k\\,\\mathrm{{IQR}},\\ Q_3 + k\\,\\mathrm{{IQR}}]$ with $k = {iqr_factor}$ on
log values are flagged as outliers and kept, because in geochemical surveys extreme values are often
the contamination of interest rather than errors [@reimann2005]. Exceedance counts compare each sample
with {' and '.join(refs) if refs else 'no reference set'}; where a guideline set distinguishes land uses or
pH classes, the strictest value is used here. Pearson and Spearman coefficients were computed on
{scale} concentrations with two-tailed p-values.
"""
