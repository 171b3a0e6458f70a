"""Cross-media behaviour: sediment-water partition coefficients (Kd) and what controls them.

Pure functions on site-level tables. :func:`site_table` turns a region's validated data into
one row per paired site (metals and covariates of every medium, columns ``<var>_<medium>``);
:func:`kd_table` computes Kd per site and metal with the units checked and converted through
:mod:`hmlib.units`; :func:`kd_group_summary`, :func:`kd_group_tests` and :func:`kd_drivers`
describe the log10 Kd distributions by group and their relation to water-quality variables.
The structural equation model of the three media is in :mod:`hmlib.sem`.

Kd convention
-------------
Wu et al. (2025, Marine Pollution Bulletin, eq. 1) define

.. math:: K_d = \\frac{C_s}{C_w} \\times 100

with :math:`C_s` in mg/kg (sediment, dry weight) and :math:`C_w` in ug/L (dissolved). Because
1 mg/kg / 1 ug/L = 1000 L/kg, this Kd equals the conventional Kd in L/kg divided by 10
(:math:`K_d[\\mathrm{L/kg}] = 10 K_d`); :func:`kd_l_per_kg` gives the conventional value.
Values here always follow the Wu et al. (2025) convention unless named ``_l_kg``.

References
----------
Wu, Q. et al. (2025) Tracing threats across the land-marine transition areas: decoding heavy metal
sources and risks in soil-water-sediment systems of northern and eastern coastal China (Wu et al. 2025).
Allison, J.D., Allison, T.L. (2005) Partition coefficients for metals in surface water, soil, and
waste. US EPA/600/R-05/074. https://cfpub.epa.gov/si/si_public_record_report.cfm?Lab=NERL&dirEntryId=135783
Spearman, C. (1904) The proof and measurement of association between two things. American Journal
of Psychology 15:72-101. doi:10.2307/1412159
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .descriptive import _and
from .errors import UnitError
from .units import convert, dimension

__all__ = [
    "partition_coefficient",
    "kd_l_per_kg",
    "site_table",
    "site_metals",
    "kd_table",
    "kd_group_summary",
    "kd_group_tests",
    "kd_drivers",
    "read_effect_truth",
    "effect_truth_recovery",
    "effect_truth_display",
    "kd_group_display",
    "drivers_heatmaps",
    "partitioning_text",
    "drivers_text",
    "sem_fit_text",
    "sem_paths_text",
    "default_drivers",
    "default_sem_model",
    "kd_boxplot",
    "drivers_heatmap",
    "methods_text",
    "variable_label",
    "variable_phrase",
    "variable_unit",
    "sem_labels",
    "sem_model_table",
    "sem_methods_details",
]


# ---------------------------------------------------------------------------------------------
def partition_coefficient(solid_mg_kg, water_ug_l):
    """Sediment-water partition coefficient in the convention of Wu et al. (2025).

    .. math:: K_d = \\frac{C_s}{C_w} \\times 100

    Parameters
    ----------
    solid_mg_kg : array-like, solid-phase concentration :math:`C_s` in mg/kg (dry weight).
    water_ug_l : array-like, dissolved concentration :math:`C_w` in ug/L, same shape.

    Returns
    -------
    ndarray of float
        Kd; NaN where either value is missing or :math:`C_w \\le 0` (Kd undefined).

    References
    ----------
    Wu, Q. et al. (2025), eq. (1).
    """
    cs = np.asarray(solid_mg_kg, dtype=float)
    cw = np.asarray(water_ug_l, dtype=float)
    if cs.shape != cw.shape:
        raise ValueError(f"solid_mg_kg and water_ug_l must have the same shape, got {cs.shape} and {cw.shape}")
    if np.any(cs[np.isfinite(cs)] < 0) or np.any(cw[np.isfinite(cw)] < 0):
        raise ValueError("concentrations must be >= 0 (got a negative value)")
    with np.errstate(divide="ignore", invalid="ignore"):
        kd = np.where((cw > 0) & np.isfinite(cw) & np.isfinite(cs), cs / cw * 100.0, np.nan)
    return kd


def kd_l_per_kg(kd_wu2025):
    """Convert a Wu et al. (2025) Kd (``Cs[mg/kg] / Cw[ug/L] x 100``) to the conventional Kd in L/kg.

    .. math:: K_d[\\mathrm{L\\,kg^{-1}}] = \\frac{C_s[\\mathrm{mg/kg}]}{C_w[\\mathrm{mg/L}]}
              = \\frac{C_s}{C_w[\\mathrm{ug/L}] / 1000} = 10 \\, K_d^{(002)}

    Parameters
    ----------
    kd_wu2025 : array-like of float
        Kd on the Wu et al. (2025) scale (mg/kg over ug/L, times 100).

    Returns
    -------
    numpy.ndarray
        Kd in L/kg.
    """
    return np.asarray(kd_wu2025, dtype=float) * 10.0


# ---------------------------------------------------------------------------------------------
def site_metals(data, medium: str) -> pd.DataFrame:
    """Concentrations of one medium averaged per site: sites x metals (canonical unit in ``attrs['unit']``).

    Several samples of one medium at a site (e.g. three soil composites) are averaged
    (arithmetic mean of the canonical values).

    Parameters
    ----------
    data : region data object
        Loaded region data with ``media``, ``samples`` (with ``site_id``), ``wide``, ``sites`` and ``unit``.
    medium : str
        Medium to average.

    Returns
    -------
    DataFrame
        Sites (index site_id) x metals, mean concentration in the medium's canonical unit.
    """
    if medium not in data.media:
        raise ValueError(f"medium {medium!r} not in the region's media {data.media}")
    if "site_id" not in data.samples.columns:
        raise ValueError("the region has no data.site_column: samples of different media cannot be paired")
    w = data.wide(medium)
    site = data.sites(medium)["site_id"].reindex(w.index)
    out = w.groupby(site.to_numpy()).mean()
    out.index.name = "site_id"
    out.attrs["unit"] = data.unit(medium)
    out.attrs["medium"] = medium
    return out


def site_table(data, *, media: list[str] | None = None, log10: bool = False) -> pd.DataFrame:
    """One row per paired site: metals and numeric covariates of each medium as ``<var>_<medium>``.

    Parameters
    ----------
    data : :class:`hmlib.io.RegionData` with a site column.
    media : media to include (default: all of the region's).
    log10 : log10-transform the metal concentrations (not the covariates); values <= 0 become NaN.

    Returns
    -------
    DataFrame indexed by site_id with ``group`` (when configured), ``x``, ``y`` (mean over the
    site's samples) and the variables; only sites sampled in every listed medium are kept.
    ``attrs['units']`` maps each metal column to its unit.
    """
    media = list(media or data.media)
    if len(media) < 1:
        raise ValueError("expected at least one medium")
    parts, units = [], {}
    for m in media:
        met = site_metals(data, m)
        if log10:
            met = np.log10(met.where(met > 0))
        for c in met.columns:
            units[f"{c}_{m}"] = ("log10 " if log10 else "") + data.unit(m)
        parts.append(met.add_suffix(f"_{m}"))
        s = data.sites(m)
        num = [c for c in data.params.data.covariates
               if c not in data.params.data.categorical and c in s.columns and s[c].notna().any()]
        if num:
            parts.append(s.groupby("site_id")[num].mean().add_suffix(f"_{m}"))
    out = pd.concat(parts, axis=1, join="inner")
    first = data.samples[data.samples["medium"].isin(media)]
    geo = first.groupby("site_id")[["x", "y"]].mean()
    head = geo.reindex(out.index)
    if "group" in first.columns:
        head.insert(0, "group", first.groupby("site_id")["group"].first().reindex(out.index))
    out = pd.concat([head, out], axis=1)
    out.index.name = "site_id"
    out.attrs["units"] = units
    return out


def kd_table(solid: pd.DataFrame, water: pd.DataFrame, *, solid_unit: str, water_unit: str,
             groups: pd.Series | None = None) -> pd.DataFrame:
    """Kd per site and metal from paired solid and water concentrations.

    .. math:: K_d = \\frac{C_s[\\mathrm{mg/kg}]}{C_w[\\mathrm{ug/L}]} \\times 100, \\qquad
              \\log_{10} K_d

    Parameters
    ----------
    solid : sites x metals, solid-phase concentrations in ``solid_unit``.
    water : sites x metals, dissolved concentrations in ``water_unit`` (same site index).
    solid_unit : unit of ``solid``; must be a mass fraction (converted to mg/kg).
    water_unit : unit of ``water``; must be a mass concentration (converted to ug/L).
    groups : optional site -> group (e.g. estuary).

    Returns
    -------
    DataFrame with columns site_id, metal, kd, log10_kd, group (NaN group when none is given);
    only sites present in both tables and metals in both tables; Kd is NaN where undefined.

    Raises
    ------
    UnitError
        If ``solid_unit`` is not a solid-phase unit or ``water_unit`` not a water unit.

    References
    ----------
    Wu, Q. et al. (2025), eq. (1).
    """
    if dimension(solid_unit) != "mass_fraction":
        raise UnitError(f"solid_unit must be a solid-phase unit such as mg/kg, got {solid_unit!r}")
    if dimension(water_unit) != "mass_concentration":
        raise UnitError(f"water_unit must be a water concentration unit such as ug/L, got {water_unit!r}")
    for name, t in (("solid", solid), ("water", water)):
        if not isinstance(t, pd.DataFrame):
            raise TypeError(f"{name} must be a DataFrame of sites x metals, got {type(t).__name__}")
    metals = [m for m in solid.columns if m in water.columns]
    if not metals:
        raise ValueError(f"no metal in common: solid has {list(solid.columns)}, water has {list(water.columns)}")
    sites = solid.index.intersection(water.index)
    cs = convert(solid.loc[sites, metals].astype(float), solid_unit, "mg/kg")
    cw = convert(water.loc[sites, metals].astype(float), water_unit, "ug/L")
    kd = pd.DataFrame(partition_coefficient(cs.to_numpy(), cw.to_numpy()), index=sites, columns=metals)
    long = kd.rename_axis("site_id").reset_index().melt(id_vars="site_id", var_name="metal", value_name="kd")
    with np.errstate(divide="ignore", invalid="ignore"):
        long["log10_kd"] = np.log10(long["kd"].where(long["kd"] > 0))
    long["group"] = long["site_id"].map(groups) if groups is not None else np.nan
    return long[["site_id", "metal", "kd", "log10_kd", "group"]]


def kd_group_summary(kd: pd.DataFrame) -> pd.DataFrame:
    """Distribution of log10 Kd per metal and group (and over all sites, group ``all``).

    Returns metal, group, n, mean, sd, median, p25, p75, min, max of log10 Kd, plus the median Kd.

    Parameters
    ----------
    kd : DataFrame
        Kd table (site_id, metal, kd, log10_kd, group) from ``kd_table``.

    Returns
    -------
    pd.DataFrame
        Metal, group, n, mean, sd, median, p25, p75, min, max of log10 Kd, plus the median Kd.
    """
    _check_kd(kd)
    d = kd.dropna(subset=["log10_kd"])
    frames = [d.assign(group="all")]
    if d["group"].notna().any():
        frames.insert(0, d[d["group"].notna()])
    both = pd.concat(frames, ignore_index=True)
    g = both.groupby(["metal", "group"], sort=False)["log10_kd"]
    out = pd.DataFrame({"n": g.size(), "mean": g.mean(), "sd": g.std(ddof=1), "median": g.median(),
                        "p25": g.quantile(0.25), "p75": g.quantile(0.75), "min": g.min(), "max": g.max()})
    out["median_kd"] = 10.0 ** out["median"]
    out = out.reset_index()
    order = {m: i for i, m in enumerate(kd["metal"].drop_duplicates())}
    return out.sort_values(["metal", "group"], key=lambda s: s.map(order) if s.name == "metal" else
                           s.map(lambda v: (v == "all", str(v)))).reset_index(drop=True)


def kd_group_tests(kd: pd.DataFrame) -> pd.DataFrame:
    """Kruskal-Wallis test of log10 Kd differences between groups, per metal.

    Returns metal, n, n_groups, H, p (NaN when fewer than two groups have data).

    Parameters
    ----------
    kd : DataFrame
        Kd table (site_id, metal, kd, log10_kd, group) from ``kd_table``.

    Returns
    -------
    pd.DataFrame
        Metal, n, n_groups, H, p (NaN when fewer than two groups have data).

    References
    ----------
    Kruskal, W.H., Wallis, W.A. (1952) Use of ranks in one-criterion variance analysis. Journal of
    the American Statistical Association 47:583-621. doi:10.1080/01621459.1952.10483441
    """
    _check_kd(kd)
    rows = []
    for metal, d in kd.dropna(subset=["log10_kd", "group"]).groupby("metal", sort=False):
        samples = [g["log10_kd"].to_numpy() for _, g in d.groupby("group") if len(g) > 0]
        if len(samples) >= 2 and all(len(s) >= 2 for s in samples):
            h, p = stats.kruskal(*samples)
        else:
            h, p = np.nan, np.nan
        rows.append({"metal": metal, "n": len(d), "n_groups": len(samples), "H": h, "p": p})
    return pd.DataFrame(rows, columns=["metal", "n", "n_groups", "H", "p"])


def _check_kd(kd: pd.DataFrame) -> None:
    need = {"site_id", "metal", "kd", "log10_kd", "group"}
    if not isinstance(kd, pd.DataFrame) or not need <= set(kd.columns):
        got = list(kd.columns) if isinstance(kd, pd.DataFrame) else type(kd).__name__
        raise ValueError(f"expected a Kd table with columns {sorted(need)} (from kd_table), got {got}")


def default_drivers(site: pd.DataFrame, *, covariates: list[str], media: list[str],
                    min_fraction: float = 0.8) -> list[str]:
    """Covariate columns ``<covariate>_<medium>`` of ``media`` present in ``site`` for most sites.

    Parameters
    ----------
    site : DataFrame
        Site table with ``<covariate>_<medium>`` columns.
    covariates : list of str
        Covariate base names.
    media : list of str
        Media whose covariates are considered.
    min_fraction : float, default 0.8
        Smallest share of sites with a value.

    Returns
    -------
    list of str
        Numeric columns with enough values and more than two distinct values.
    """
    out = []
    for m in media:
        for c in covariates:
            col = f"{c}_{m}"
            if col in site.columns and pd.api.types.is_numeric_dtype(site[col]) \
                    and site[col].notna().mean() >= min_fraction and site[col].nunique() > 2:
                out.append(col)
    return out


def kd_drivers(kd: pd.DataFrame, drivers: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlations and a standardized multiple regression of log10 Kd on drivers, per metal.

    For each metal, over the sites with Kd and all drivers observed:

    * Spearman :math:`\\rho` between log10 Kd and each driver, with its two-sided p-value
      (:func:`scipy.stats.spearmanr`);
    * ordinary least squares (:class:`statsmodels.regression.linear_model.OLS`) of
      :math:`z(\\log_{10} K_d)` on the z-scored drivers, so each coefficient is a standardized
      beta :math:`\\beta_j = b_j s_{x_j} / s_y`, with its t-test p-value, and the model's
      :math:`R^2` and adjusted :math:`R^2`; ``vif`` is each driver's variance inflation factor
      :math:`1 / (1 - R_j^2)`;
    * the same regression on the unscaled variables gives the slope :math:`b_j` (change of
      log10 Kd per unit of the driver, the others held fixed) with its 95 % confidence interval
      :math:`b_j \\pm t_{0.975,\\,n-p-1}\\,\\mathrm{SE}(b_j)`.

    Parameters
    ----------
    kd : table from :func:`kd_table`.
    drivers : site_id-indexed numeric columns (e.g. salinity, DO, pH of water; OM of sediment).

    Returns
    -------
    DataFrame: metal, variable, n, spearman_rho, spearman_p, beta_std, beta_se, beta_p, vif, r2, r2_adj,
    slope, slope_ci_low, slope_ci_high.

    References
    ----------
    Spearman (1904) doi:10.2307/1412159; Wu et al. (2025) Marine Pollution Bulletin, section 3.2
    (salinity as the dominant predictor of Cd Kd).
    """
    import statsmodels.api as sm

    _check_kd(kd)
    if not isinstance(drivers, pd.DataFrame) or drivers.shape[1] == 0:
        raise ValueError("drivers must be a DataFrame with at least one numeric column indexed by site_id")
    bad = [c for c in drivers.columns if not pd.api.types.is_numeric_dtype(drivers[c])]
    if bad:
        raise ValueError(f"drivers must be numeric; non-numeric columns {bad}")
    cols = list(drivers.columns)
    rows = []
    for metal, d in kd.groupby("metal", sort=False):
        y = d.set_index("site_id")["log10_kd"]
        both = pd.concat([y.rename("__y"), drivers.reindex(y.index)], axis=1).dropna()
        n = len(both)
        res = raw = None
        if n >= len(cols) + 3 and both["__y"].std() > 0 and (both[cols].std() > 0).all():
            z = (both - both.mean()) / both.std(ddof=1)
            res = sm.OLS(z["__y"], sm.add_constant(z[cols])).fit()
            raw = sm.OLS(both["__y"], sm.add_constant(both[cols])).fit()
            ci = raw.conf_int(alpha=0.05)
            corr = z[cols].corr().to_numpy()
            try:
                vif = np.diag(np.linalg.inv(corr))
            except np.linalg.LinAlgError:
                vif = np.full(len(cols), np.inf)
        for j, c in enumerate(cols):
            pair = pd.concat([y, drivers[c].reindex(y.index)], axis=1).dropna()
            if len(pair) >= 3 and pair.iloc[:, 0].nunique() > 1 and pair.iloc[:, 1].nunique() > 1:
                rho, p_rho = stats.spearmanr(pair.iloc[:, 0], pair.iloc[:, 1])
            else:
                rho, p_rho = np.nan, np.nan
            rows.append({"metal": metal, "variable": c, "n": n, "spearman_rho": float(rho),
                         "spearman_p": float(p_rho),
                         "beta_std": float(res.params[c]) if res is not None else np.nan,
                         "beta_se": float(res.bse[c]) if res is not None else np.nan,
                         "beta_p": float(res.pvalues[c]) if res is not None else np.nan,
                         "vif": float(vif[j]) if res is not None else np.nan,
                         "r2": float(res.rsquared) if res is not None else np.nan,
                         "r2_adj": float(res.rsquared_adj) if res is not None else np.nan,
                         "slope": float(raw.params[c]) if raw is not None else np.nan,
                         "slope_ci_low": float(ci.loc[c, 0]) if raw is not None else np.nan,
                         "slope_ci_high": float(ci.loc[c, 1]) if raw is not None else np.nan})
    return pd.DataFrame(rows, columns=["metal", "variable", "n", "spearman_rho", "spearman_p", "beta_std",
                                       "beta_se", "beta_p", "vif", "r2", "r2_adj", "slope", "slope_ci_low",
                                       "slope_ci_high"])


def read_effect_truth(path) -> pd.DataFrame:
    """Read a generator's true slopes of log10 Kd on the drivers (generated demo regions only).

    Parameters
    ----------
    path : CSV with columns metal, variable (site-table column), true_slope_per_unit and
        optionally unit (e.g. ``data/coastal_demo/truth_kd_effects.csv`` from
        :func:`hmlib.synth.coastal.kd_effects`).

    Returns
    -------
    pandas.DataFrame
        The table, checked for its columns.
    """
    t = pd.read_csv(path)
    need = ["metal", "variable", "true_slope_per_unit"]
    miss = [c for c in need if c not in t.columns]
    if miss:
        raise ValueError(f"{path}: missing {'the column' if len(miss) == 1 else 'the columns'} {', '.join(miss)}; "
                         f"expected the columns {', '.join(need)}")
    return t


def effect_truth_recovery(drivers: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The slopes the regression of log10 Kd recovered next to a generator's true slopes.

    Parameters
    ----------
    drivers : :func:`kd_drivers` (with slope and its 95 % confidence interval).
    truth : :func:`read_effect_truth`.

    Returns
    -------
    pandas.DataFrame
        metal, variable, true_slope, slope, slope_ci_low, slope_ci_high, within_ci (the true slope
        lies inside the 95 % interval), sign_recovered (the estimate has the true sign and its
        interval excludes 0; NaN where the true slope is 0), unit; only pairs present in both.
    """
    j = drivers.merge(truth.rename(columns={"true_slope_per_unit": "true_slope"}), on=["metal", "variable"],
                      how="inner")
    j["within_ci"] = (j["slope_ci_low"] <= j["true_slope"]) & (j["true_slope"] <= j["slope_ci_high"])
    sig = (j["slope_ci_low"] > 0) | (j["slope_ci_high"] < 0)
    j["sign_recovered"] = (sig & (np.sign(j["slope"]) == np.sign(j["true_slope"]))).astype(object)
    j.loc[j["true_slope"] == 0, "sign_recovered"] = np.nan
    if "unit" not in j.columns:
        j["unit"] = "log10 Kd per unit"
    return j[["metal", "variable", "true_slope", "slope", "slope_ci_low", "slope_ci_high", "within_ci",
              "sign_recovered", "unit"]].reset_index(drop=True)


def effect_truth_display(table: pd.DataFrame, *, focus: str | None = None) -> pd.DataFrame:
    """Short reader's version of :func:`effect_truth_recovery`: every driver of the ``focus`` metal
    (the one with the largest true effect), then one row per driver for all other metals together.

    Parameters
    ----------
    table : :func:`effect_truth_recovery`.
    focus : metal shown row by row (default: the metal with the largest absolute true slope).

    Returns
    -------
    pandas.DataFrame
        Metal, Driver, True slope, Estimated slope (95 % CI), True slope inside the CI.
    """
    if table.empty:
        return pd.DataFrame()
    if focus is None:
        focus = str(table.loc[table["true_slope"].abs().idxmax(), "metal"])
    rows = []
    for r in table[table["metal"] == focus].itertuples():
        rows.append({"Metal": focus, "Driver": variable_label(r.variable), "Unit": r.unit,
                     "True slope": f"{r.true_slope:.3g}",
                     "Estimated slope (95 % CI)": _est_ci(r.slope, r.slope_ci_low, r.slope_ci_high),
                     "True slope inside the CI": "yes" if r.within_ci else "no"})
    rest = table[table["metal"] != focus]
    for var, g in rest.groupby("variable", sort=False):
        tv = g["true_slope"].unique()
        rows.append({"Metal": f"other {len(g)} metals", "Driver": variable_label(var), "Unit": g["unit"].iloc[0],
                     "True slope": f"{tv[0]:.3g}" if len(tv) == 1 else f"{tv.min():.3g} to {tv.max():.3g}",
                     "Estimated slope (95 % CI)": f"{g['slope'].min():.3g} to {g['slope'].max():.3g}",
                     "True slope inside the CI": f"{int(g['within_ci'].sum())} of {len(g)}"})
    return pd.DataFrame(rows)


def kd_group_display(summary: pd.DataFrame, tests: pd.DataFrame | None = None) -> pd.DataFrame:
    """Compact reader's table of log10 Kd: one row per metal (lowest median first), the median per
    group, the median and interquartile range over all sites, the Kruskal-Wallis p between groups
    and the number of Kd values involving a non-detect.

    Parameters
    ----------
    summary : :func:`kd_group_summary` (optionally with ``n_non_detect`` on the ``all`` rows).
    tests : :func:`kd_group_tests` or None.

    Returns
    -------
    pandas.DataFrame
        One row per metal.
    """
    a = summary[summary["group"] == "all"].set_index("metal")
    order = a.sort_values("median").index
    out = pd.DataFrame(index=order)
    groups = [g for g in summary["group"].drop_duplicates() if g != "all"]
    for g in groups:
        s = summary[summary["group"] == g].set_index("metal")["median"]
        out[f"{str(g).replace('_', ' ')}"] = s.reindex(order).to_numpy()
    out["All sites: median (IQR)"] = [f"{a.loc[m, 'median']:.2f} ({a.loc[m, 'p25']:.2f}-{a.loc[m, 'p75']:.2f})"
                                      for m in order]
    out["Median Kd"] = a.loc[order, "median_kd"].to_numpy()
    if tests is not None and len(groups) >= 2:
        out["Kruskal-Wallis p"] = tests.set_index("metal")["p"].reindex(order).to_numpy()
    if "n_non_detect" in a.columns:
        out["Kd from a non-detect"] = a.loc[order, "n_non_detect"].astype("Int64").to_numpy()
    return out.reset_index(names="Metal")


def default_sem_model(site: pd.DataFrame, *, media: list[str], metals: list[str], max_indicators: int = 4) -> str:
    """A default lavaan model: one latent ``<medium>_sys`` per medium, measured by up to
    ``max_indicators`` of its metals (in the region's order), and a chain of regressions in
    media order (``medium2_sys ~ medium1_sys``, ...).

    Parameters
    ----------
    site : DataFrame
        Site table with ``<metal>_<medium>`` columns.
    media : list of str
        Media in chain order.
    metals : list of str
        Metals in the region's order.
    max_indicators : int, default 4
        Largest number of indicators per latent variable.

    Returns
    -------
    str
        Model in lavaan syntax, one statement per line.
    """
    lines, names = [], []
    for m in media:
        ind = [f"{x}_{m}" for x in metals if f"{x}_{m}" in site.columns][:max_indicators]
        if len(ind) < 2:
            continue
        names.append(f"{m}_sys")
        lines.append(f"{m}_sys =~ " + " + ".join(ind))
    for a, b in zip(names[:-1], names[1:]):
        lines.append(f"{b} ~ {a}")
    if not lines:
        raise ValueError("no medium has two or more metals to build a default SEM; give stages.crossmedia.sem_model")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# figures and report text
_VAR_NAMES = {"om_pct": "OM (%)", "ph": "pH", "do_mg_l": "DO (mg/L)", "salinity_psu": "salinity (psu)"}


def variable_label(column: str, media: list[str] | tuple[str, ...] = ("soil", "sediment", "water", "dust",
                                                                          "groundwater", "porewater", "crop")) -> str:
    """Reader's label of a site-table column: ``salinity_psu_water`` -> ``salinity (psu), water``.

    Parameters
    ----------
    column : str
        Site-table column name.
    media : sequence of str
        Media suffixes recognised.

    Returns
    -------
    str
        Readable label (with unit and medium where known).
    """
    for m in media:
        if column.endswith(f"_{m}"):
            base = column[: -len(m) - 1]
            return f"{_VAR_NAMES.get(base, base)}, {m}"
    return _VAR_NAMES.get(column, column)


_VAR_PHRASES = {"om_pct": ("organic matter", "% organic matter"), "ph": ("pH", "pH unit"),
                "do_mg_l": ("dissolved oxygen", "mg/L"), "salinity_psu": ("salinity", "psu")}


def variable_phrase(column: str) -> str:
    """The variable in running text: ``salinity_psu_water`` -> ``water salinity``, ``Cd_water`` -> ``Cd in
    water``, ``water_sys`` -> ``the water system``.

    Parameters
    ----------
    column : str
        Site-table column or latent name.

    Returns
    -------
    str
        A phrase for prose.
    """
    if column.endswith("_sys"):
        return f"the {column[:-4]} system"
    base = _base(column)
    medium = column[len(base) + 1:] if base != column else ""
    if base in _VAR_PHRASES:
        return f"{medium} {_VAR_PHRASES[base][0]}".strip()
    return f"{base} in {medium}" if medium else base


def variable_unit(column: str) -> str:
    """Unit of one step of a driver in running text (``salinity_psu_water`` -> ``psu``; else ``unit``).

    Parameters
    ----------
    column : str
        Site-table column.

    Returns
    -------
    str
        The unit.
    """
    return _VAR_PHRASES.get(_base(column), (None, "unit"))[1]


def kd_boxplot(kd: pd.DataFrame, *, ncols: int = 4):
    """Box plots of log10 Kd per metal (one panel each), one box per group (or one box without groups).

    Parameters
    ----------
    kd : DataFrame
        Kd table (site_id, metal, kd, log10_kd, group) from ``kd_table``.
    ncols : int, default 4
        Largest number of panel columns.

    Returns
    -------
    matplotlib.figure.Figure
        One box-plot panel per metal.
    """
    import matplotlib.pyplot as plt

    _check_kd(kd)
    metals = list(kd["metal"].drop_duplicates())
    groups = sorted(kd["group"].dropna().unique().tolist()) or [None]
    ncols = min(ncols, len(metals))
    nrows = int(np.ceil(len(metals) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(7.0, 1.75 * ncols), 1.9 * nrows + 0.3), squeeze=False,
                             sharey=False)
    colors = plt.get_cmap("viridis")(np.linspace(0.15, 0.85, len(groups)))
    for ax, metal in zip(axes.ravel(), metals):
        d = kd[kd["metal"] == metal]
        vals = [d.loc[d["group"] == g, "log10_kd"].dropna().to_numpy() if g is not None
                else d["log10_kd"].dropna().to_numpy() for g in groups]
        bp = ax.boxplot(vals, patch_artist=True, widths=0.6, showfliers=True,
                        flierprops={"markersize": 2, "alpha": 0.6}, medianprops={"color": "black", "lw": 1})
        for patch, c in zip(bp["boxes"], colors):
            patch.set_facecolor(c)
            patch.set_alpha(0.8)
        ax.set_title(metal, fontsize=9)
        ax.set_xticks(range(1, len(groups) + 1))
        ax.set_xticklabels([str(g).replace("_", " ") if g is not None else "all" for g in groups], rotation=45,
                           ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.ravel()[len(metals):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("log$_{10}$ K$_d$", fontsize=8)
    fig.tight_layout()
    return fig


def _annotated_heatmap(ax, drivers: pd.DataFrame, *, metals, cols, value: str, p: str, alpha: float, fontsize: float):
    """Draw ``value`` (metals x drivers, in [-1, 1]) on ``ax`` with each cell's value and significance stars
    (``*`` p < alpha, ``**`` p < alpha/5); returns the image for a colour bar."""
    v = drivers.pivot(index="metal", columns="variable", values=value).reindex(index=metals, columns=cols)
    pv = drivers.pivot(index="metal", columns="variable", values=p).reindex(index=metals, columns=cols)
    im = ax.imshow(v.to_numpy(float), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(metals)):
        for j in range(len(cols)):
            x, q = v.iat[i, j], pv.iat[i, j]
            if np.isfinite(x):
                star = "**" if q < alpha / 5 else ("*" if q < alpha else "")
                ax.text(j, i, f"{x:.2f}{star}", ha="center", va="center", fontsize=fontsize,
                        color="white" if abs(x) > 0.6 else "black")
    return im


def drivers_heatmap(drivers: pd.DataFrame, *, value: str = "spearman_rho", p: str = "spearman_p",
                    alpha: float = 0.05, title: str = ""):
    """Metals x drivers heatmap of ``value`` (Spearman rho or standardized beta); * p < alpha, ** p < alpha/5.

    Parameters
    ----------
    drivers : DataFrame
        Kd-drivers table with columns metal, variable, ``value`` and ``p``.
    value : str, default "spearman_rho"
        Column shown as colour and number.
    p : str, default "spearman_p"
        Column of p-values for the stars.
    alpha : float, default 0.05
        Significance level.
    title : str, default ""
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        Heatmap, metals as rows and drivers as columns.
    """
    import matplotlib.pyplot as plt

    if not {"metal", "variable", value, p} <= set(drivers.columns):
        raise ValueError(f"expected a kd_drivers table with {value!r} and {p!r}, got {list(drivers.columns)}")
    metals = list(drivers["metal"].drop_duplicates())
    cols = list(drivers["variable"].drop_duplicates())
    fig, ax = plt.subplots(figsize=(min(7.0, 1.0 + 0.95 * len(cols)), 0.8 + 0.32 * len(metals)))
    # blue positive, red negative: the colours of the path diagram
    im = _annotated_heatmap(ax, drivers, metals=metals, cols=cols, value=value, p=p, alpha=alpha, fontsize=7)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([variable_label(c) for c in cols], rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(metals)))
    ax.set_yticklabels(metals, fontsize=7)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def methods_text(*, solid_medium: str, water_medium: str, drivers: list[str], sem_log10: bool, sem_refine: bool,
                 threshold: float, alpha: float, n_sites: int, include_kd: bool = True,
                 include_sem: bool = True) -> str:
    """Methods paragraphs of the crossmedia stage (pandoc markdown with math and citations);
    without ``include_kd`` only the SEM paragraph.

    Parameters
    ----------
    solid_medium, water_medium : str
        Media of the Kd pair.
    drivers : list of str
        Driver columns of the site table.
    sem_log10 : bool
        Whether concentrations entered the SEM as log10.
    sem_refine : bool
        Whether the SEM was refined by dropping weak indicators.
    threshold : float
        Standardized loading below which an indicator may be dropped.
    alpha : float
        Significance level.
    n_sites : int
        Number of paired sites.
    include_kd : bool, default True
        Include the partitioning paragraph.
    include_sem : bool, default True
        Include the structural-equation-model paragraph.

    Returns
    -------
    str
        Methods paragraphs (pandoc markdown).
    """
    drv = ", ".join(variable_phrase(d) for d in drivers) if drivers else "none available"
    refine = (f" The a priori model was refined by repeatedly removing the indicator with the smallest absolute "
              f"standardized loading below {threshold:g} (keeping at least two per latent variable) and refitting; "
              f"each step and the fit after it are reported." if sem_refine else "")
    kd_text = f"""
**Methods.** At each of the {n_sites} paired sites the partition coefficient of every metal between
{solid_medium} and {water_medium} was computed as in @wu2025tracing (their Eq. 1):

$$K_d = \\frac{{C_s}}{{C_w}} \\times 100,$$

with $C_s$ the {solid_medium} concentration in mg/kg and $C_w$ the dissolved concentration in µg/L, both
converted to these units from the units declared for the region before division. On this scale
$K_d$ equals the conventional coefficient in L/kg divided by 10 [cf. @allison2005kd]. Non-detects enter
with the substitution declared in the parameters, so $K_d$ at such sites is approximate. Distributions of
$\\log_{{10}} K_d$ are summarised by group and compared between groups with the Kruskal-Wallis test
[@kruskal1952]. Associations of $\\log_{{10}} K_d$ with the water-quality and sediment variables ({drv}) were
measured by Spearman's $\\rho$ [@spearman1904] and by an ordinary least-squares multiple regression of the
z-scored $\\log_{{10}} K_d$ on the z-scored variables [@seabold2010statsmodels], whose coefficients are
standardized betas $\\beta_j = b_j s_{{x_j}}/s_y$; variance inflation factors flag collinear drivers.
"""
    sem_text = f"""
**Methods.** Cross-media relations were modelled, as in @wu2025tracing, with a structural equation model: latent
geochemical systems measured by metals and properties (measurement part $x = \\Lambda \\xi + \\delta$) and
regressions between them and on observed drivers (structural part $\\eta = B\\eta + \\Gamma\\xi + \\zeta$).
Inputs were {"log10-transformed concentrations and" if sem_log10 else ""} covariates, z-scored over the sites with
complete data; the model was estimated by maximum likelihood with the defaults of lavaan [@rosseel2012lavaan],
whose estimates, standard errors and fit indices the estimator used here reproduces to within 0.001 on three
reference models. Fit is judged against the conventional cut-offs CFI and TLI $\\ge 0.95$, RMSEA $\\le 0.06$
and SRMR $\\le 0.08$ [@hu1999] before any path is interpreted.{refine} Significance level: {alpha:g}; details
of the estimation are in the appendix.
"""
    return (kd_text if include_kd else "") + (sem_text if include_sem else "")


def sem_methods_details() -> str:
    """Appendix paragraph: the estimation details of the structural equation model (lavaan's defaults, fit
    indices with their formulas and references).

    Returns
    -------
    str
        Markdown paragraph.
    """
    return """
**Structural equation model: estimation details.** As in lavaan's defaults [@rosseel2012lavaan], the first
loading of each latent variable is fixed at 1, residuals of pure outcomes are correlated, the moments of
observed predictors are fixed at their sample values (and not counted in the degrees of freedom), and standard
errors come from the expected information. Indicators that also act as predictors are modelled as in lavaan,
residual covariances are standardized as residual correlations (lavaan's std.all), and AIC and BIC are
conditional on the observed predictors. Standardized estimates are reported with the standard errors and Wald
p-values of the unstandardized estimates. Fit indices: $\\chi^2 = N F_{ML}$ [@joreskog1969], CFI [@bentler1990],
TLI [@tucker1973], RMSEA $= \\sqrt{\\max(\\chi^2 - df, 0)/(df\\,N)}$ with its 90 % confidence interval from
the noncentral $\\chi^2$ distribution and the test of close fit [@steiger1990; @maccallum1996; @browne1993],
and SRMR.
"""


def sem_labels(result) -> dict[str, str]:
    """Display labels for a path diagram: an indicator of a latent system shows only its metal or
    property (its medium is the latent's), other variables their full label; ``<medium>_sys``
    latents read ``<medium> system``.

    Parameters
    ----------
    result : SEM result
        Fitted model with ``estimates``, ``observed`` and ``latents``.

    Returns
    -------
    dict of str to str
        Variable name -> display label.
    """
    est = result.estimates
    ind = set(est.loc[est["op"] == "=~", "rhs"])
    out = {}
    for v in result.observed:
        lab = variable_label(v)
        if v in ind and ", " in lab:
            lab = lab.split(", ")[0]
        out[v] = lab
    for lv in result.latents:
        out[lv] = lv[:-4] + " system" if lv.endswith("_sys") else lv
    return out


def drivers_heatmaps(drivers: pd.DataFrame, *, alpha: float = 0.05):
    """Two heatmaps side by side (metals x drivers): Spearman rho (left) and the standardized beta of the
    multiple regression (right); * p < alpha, ** p < alpha/5. Blue positive, red negative (the colours of the
    path diagram).

    Parameters
    ----------
    drivers : DataFrame
        :func:`kd_drivers` (metal, variable, spearman_rho, spearman_p, beta_std, beta_p).
    alpha : float, default 0.05
        Significance level of the stars.

    Returns
    -------
    matplotlib.figure.Figure
        One figure, print width, all text at 7 pt or larger.
    """
    import matplotlib.pyplot as plt

    from .plots import MIN_FONT_PT, PAGE_WIDTH_IN

    metals = list(drivers["metal"].drop_duplicates())
    cols = list(drivers["variable"].drop_duplicates())
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 1.6 + 0.3 * len(metals)), sharey=True)
    im = None
    for ax, (value, p, title) in zip(axes, (("spearman_rho", "spearman_p", "Spearman ρ (one variable at a time)"),
                                            ("beta_std", "beta_p", "standardized β (all variables jointly)"))):
        im = _annotated_heatmap(ax, drivers, metals=metals, cols=cols, value=value, p=p, alpha=alpha,
                                fontsize=MIN_FONT_PT)
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels([variable_label(c).replace(", ", "\n") for c in cols], fontsize=MIN_FONT_PT)
        ax.set_yticks(range(len(metals)))
        ax.set_yticklabels(metals, fontsize=8)
        ax.set_title(title, fontsize=8)
    cb = fig.colorbar(im, ax=list(axes), shrink=0.85, pad=0.02)
    cb.ax.tick_params(labelsize=MIN_FONT_PT)
    return fig


_MECHANISM = {
    ("salinity_psu", -1): "chloride complexation and competition from seawater cations keep the metal in solution",
    ("om_pct", 1): "organic matter binds the metal to the solid phase",
    ("ph", 1): "surfaces carry more negative charge at higher pH and bind more cations",
    ("do_mg_l", 1): "oxidized iron and manganese oxyhydroxides scavenge metals",
}


def _base(column: str) -> str:
    for m in ("soil", "sediment", "water", "dust", "groundwater", "porewater", "crop"):
        if column.endswith(f"_{m}"):
            return column[: -len(m) - 1]
    return column


def _est_ci(est: float, lo: float, hi: float) -> str:
    """``-0.032 (-0.037 to -0.027)``: the estimate to 3 significant digits and its interval to the same decimals."""
    e = f"{est:.3g}"
    if "e" in e or not np.isfinite(est):
        return f"{est:.3g} ({lo:.3g} to {hi:.3g})"
    dec = len(e.split(".")[1]) if "." in e else 0
    return f"{est:.{dec}f} ({lo:.{dec}f} to {hi:.{dec}f})"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _range(vals, fmt=".2f") -> str:
    lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}} to {hi:{fmt}}"


def partitioning_text(summary: pd.DataFrame, tests: pd.DataFrame | None, *, solid_medium: str, water_medium: str,
                      alpha: float, refs: str) -> str:
    """Results paragraph on the partition coefficients: which metals stay in the solid, which move to the water,
    and which differ between groups (judged after a Bonferroni adjustment for the number of metals).

    Parameters
    ----------
    summary : :func:`kd_group_summary`.
    tests : :func:`kd_group_tests` or None.
    solid_medium, water_medium : the Kd pair.
    alpha : significance level.
    refs : cross-references to the displays (e.g. ``"@tbl-kd-by-group, @fig-kd-boxplot"``).

    Returns
    -------
    str
        Markdown paragraph.
    """
    allg = summary[summary["group"] == "all"].sort_values("median")
    lo, hi = allg.iloc[0], allg.iloc[-1]
    span = hi["median"] - lo["median"]
    txt = (f"{lo['metal']} is the metal most readily found in the {water_medium}: its median "
           f"log10 Kd is {lo['median']:.2f} (interquartile range {lo['p25']:.2f}-{lo['p75']:.2f}), against "
           f"{hi['median']:.2f} ({hi['p25']:.2f}-{hi['p75']:.2f}) for {hi['metal']}, which is held most strongly by "
           f"the {solid_medium} ({refs}). The gap of {span:.1f} log units means that, for the same {solid_medium} "
           f"concentration, about {10 ** span:,.0f} times more {lo['metal']} than {hi['metal']} is dissolved. "
           f"The order from most mobile to most retained is {', '.join(allg['metal'])}.")
    if tests is None or not (tests["n_groups"] >= 2).any():
        return txt
    k = int(tests["p"].notna().sum())
    adj = alpha / max(k, 1)
    strong = tests[tests["p"] < adj]
    nominal = tests[(tests["p"] >= adj) & (tests["p"] < alpha)]
    parts = []
    for r in strong.itertuples():
        g = summary[(summary["metal"] == r.metal) & (summary["group"] != "all")].sort_values("median")
        parts.append(f"{r.metal} ({_p(r.p)}; group medians from {g['median'].iloc[0]:.2f} in "
                     f"{str(g['group'].iloc[0]).replace('_', ' ')} to {g['median'].iloc[-1]:.2f} in "
                     f"{str(g['group'].iloc[-1]).replace('_', ' ')}, a factor of "
                     f"{10 ** (g['median'].iloc[-1] - g['median'].iloc[0]):.1f} in Kd)")
    txt += (f" Between groups, with {k} metals tested, a difference is read only below p = {adj:.2g} (Bonferroni). "
            + (f"Kd differs clearly for {'; '.join(parts)}." if parts else "No metal's Kd differs clearly between "
               "groups.")
            + (f" {', '.join(nominal['metal'])} {'is' if len(nominal) == 1 else 'are'} below {alpha:g} only before "
               f"this adjustment ({', '.join(_p(p) for p in nominal['p'])}) and "
               f"{'is' if len(nominal) == 1 else 'are'} not read as a group difference." if len(nominal) else ""))
    return txt


def drivers_text(drivers: pd.DataFrame, *, alpha: float, refs: str) -> str:
    """Results paragraph on what controls log10 Kd: the dominant driver of each metal (largest |standardized
    beta|), grouped where metals share it, with the direction interpreted; simple correlations that disagree
    in sign with the joint regression are reconciled.

    Parameters
    ----------
    drivers : :func:`kd_drivers`.
    alpha : significance level.
    refs : cross-references to the displays.

    Returns
    -------
    str
        Markdown paragraph(s).
    """
    d = drivers.dropna(subset=["beta_std"])
    if d.empty:
        return ("**Controls on partitioning.** Too few sites have every variable to fit the regression of "
                "log10 Kd on them; only the simple correlations are shown " f"({refs}).")
    top = d.loc[d["beta_std"].abs().groupby(d["metal"], sort=False).idxmax()]
    top = top[top["beta_p"] < alpha]
    parts = []
    for (var, sign), g in top.groupby([top["variable"], np.sign(top["beta_std"])], sort=False):
        mech = _MECHANISM.get((_base(var), int(sign)))
        label = variable_phrase(var)
        direction = "rises" if sign > 0 else "falls"
        if len(g) == 1:
            r = g.iloc[0]
            slope = (f"; {r.slope:+.3f} log10 units per {variable_unit(var)}, 95 % CI {r.slope_ci_low:+.3f} to "
                     f"{r.slope_ci_high:+.3f}" if "slope" in g.columns and np.isfinite(r.slope) else "")
            parts.append(f"For {r.metal}, {label} dominates: Kd {direction} with it (β = {r.beta_std:.2f}, "
                         f"{_p(r.beta_p)}{slope}), and the variables together explain "
                         f"{100 * r.r2_adj:.0f} % of the variance (adjusted R²)" + (f"; {mech}" if mech else "") + ".")
        else:
            parts.append(f"For {', '.join(g['metal'])}, {label} is the main control: Kd {direction} with it "
                         f"(β {_range(g['beta_std'])}, all {_p(g['beta_p'].max())}), but the variables together "
                         f"explain only {_range(100 * g['r2_adj'], '.0f')} % of the variance, so factors not "
                         "measured here (dissolved organic carbon, particle size) also matter"
                         + (f"; {mech}" if mech else "") + ".")
    if top.empty:
        parts.append(f"No variable has a standardized coefficient with p < {alpha:g} for any metal.")
    # simple correlation against joint coefficient
    conflict = d[(d["spearman_p"] < alpha) & (np.sign(d["spearman_rho"]) != np.sign(d["beta_std"]))]
    conflict2 = d[(d["beta_p"] < alpha) & (d["spearman_p"] >= alpha)]
    notes = []
    for r in conflict.itertuples():
        notes.append(f"for {r.metal} the simple correlation with {variable_phrase(r.variable)} is "
                     f"{'negative' if r.spearman_rho < 0 else 'positive'} (ρ = {r.spearman_rho:.2f}) while the "
                     f"coefficient with the other variables held fixed is {'positive' if r.beta_std > 0 else 'negative'}"
                     f" (β = {r.beta_std:.2f}, {_p(r.beta_p)})")
    vif = float(d["vif"].max())
    txt = f"**Controls on partitioning** ({refs}). " + " ".join(parts)
    if notes:
        txt += (" The two panels disagree in sign in one place or more: " + "; ".join(notes) + ". The variables are "
                f"correlated with each other (largest variance inflation factor {vif:.1f}), so a simple correlation "
                "also carries the effect of the variables that move with it; the joint coefficient is the one to "
                "read.")
    elif len(conflict2):
        txt += (f" Some effects appear only when the other variables are held fixed ({len(conflict2)} metal-variable "
                f"pairs; largest variance inflation factor {vif:.1f}).")
    return txt


def sem_fit_text(fit, *, ref: str) -> str:
    """The SEM's fit, stated before its paths are interpreted: the indices against the conventional cut-offs
    of Hu and Bentler (1999) and what that means for reading the paths.

    Parameters
    ----------
    fit : :class:`hmlib.sem.SEMResult` (estimated).
    ref : cross-reference to the fit table.

    Returns
    -------
    str
        Markdown paragraph.
    """
    from .sem import CUTOFFS

    fv = fit.fit.set_index("index")["value"]
    verdict = {k: (fv[k] >= c if op == ">=" else fv[k] <= c) for k, (op, c) in CUTOFFS.items()}
    met = [k for k, ok in verdict.items() if ok]
    unmet = [k for k, ok in verdict.items() if not ok]
    txt = (f"**Fit first.** χ² = {fv['chi2']:.1f} on {fv['df']:.0f} degrees of freedom ({_p(fv['p'])}), "
           f"CFI = {fv['CFI']:.3f}, TLI = {fv['TLI']:.3f}, RMSEA = {fv['RMSEA']:.3f} (90 % CI "
           f"{fv['RMSEA_ci90_lower']:.3f}–{fv['RMSEA_ci90_upper']:.3f}), SRMR = {fv['SRMR']:.3f}, N = {fit.n} sites "
           f"({ref}). ")
    if not unmet:
        txt += ("All four indices meet the conventional cut-offs: the model reproduces the observed covariances "
                "well. A good fit does not prove the causal order of the paths; other models may fit as well.")
    else:
        txt += ((f"All four indices ({_and(unmet)})" if len(unmet) == len(CUTOFFS) == 4 else _and(unmet))
                + f" {'misses' if len(unmet) == 1 else 'miss'} the conventional cut-offs"
                + (f" ({', '.join(met)} {'meets' if len(met) == 1 else 'meet'} {'its' if len(met) == 1 else 'theirs'})"
                   if met else "")
                + ". The model reproduces the main covariances only approximately, so its paths are read below as "
                  "a description of how the media co-vary, not as confirmed pathways, and their exact sizes should "
                  "not be relied on.")
    if fit.warnings:
        txt += " Note: " + "; ".join(fit.warnings) + "."
    return txt


def sem_paths_text(fit, *, labels: dict[str, str], drivers: pd.DataFrame | None, water_medium: str, alpha: float,
                   ref: str) -> str:
    """The structural paths of the SEM in words, each compared with the Kd analysis where both speak about the
    same variable: a driver that lowers Kd should raise the dissolved metal, and vice versa.

    Parameters
    ----------
    fit : :class:`hmlib.sem.SEMResult` (estimated).
    labels : :func:`sem_labels`.
    drivers : :func:`kd_drivers` or None.
    water_medium : the water medium of the Kd pair.
    alpha : significance level.
    ref : cross-reference to the path diagram.

    Returns
    -------
    str
        Markdown paragraph.
    """
    est = fit.estimates
    paths = est[est["op"] == "~"]
    if paths.empty:
        return ""
    ind = est[est["op"] == "=~"]

    def lab(v):
        return variable_phrase(v)

    def kd_sign(outcome: str, var: str) -> tuple[float, list[str]]:
        """Mean sign of the Kd slopes on ``var`` of the metals measured by ``outcome`` in water."""
        if drivers is None or var not in set(drivers["variable"]):
            return np.nan, []
        if outcome in fit.latents:
            mets = [r[: -len(water_medium) - 1] for r in ind.loc[ind["lhs"] == outcome, "rhs"]
                    if r.endswith(f"_{water_medium}")]
        elif outcome.endswith(f"_{water_medium}"):
            mets = [outcome[: -len(water_medium) - 1]]
        else:
            return np.nan, []
        d = drivers[(drivers["variable"] == var) & drivers["metal"].isin(mets) & (drivers["beta_p"] < alpha)]
        return (float(np.sign(d["beta_std"]).mean()) if len(d) else np.nan), list(d["metal"])

    items, agree, disagree = [], [], []
    for r in paths.itertuples():
        items.append(f"{lab(r.rhs)} → {lab(r.lhs)} β = {r.std_estimate:.2f} ({_p(r.p)})")
        s, mets = kd_sign(r.lhs, r.rhs)
        if np.isfinite(s) and abs(s) == 1 and r.p < alpha:
            (agree if np.sign(r.std_estimate) == -s else disagree).append(
                f"{lab(r.rhs)} {'raises' if r.std_estimate > 0 else 'lowers'} {lab(r.lhs)} while it "
                f"{'lowers' if s < 0 else 'raises'} the Kd of {', '.join(mets)}")
    txt = f"**Paths** (standardized; {ref}): " + "; ".join(items) + "."
    if agree:
        txt += (" Where the model and the partition coefficients speak about the same variable they agree: "
                + "; ".join(agree) + " (what keeps a metal in the solid lowers its dissolved concentration, and "
                "vice versa).")
    if disagree:
        txt += (" They disagree for " + "; ".join(disagree) + "; the Kd regression, which uses every site's "
                "paired values directly, is the more direct evidence.")
    if (paths["std_estimate"].abs() > 1).any():
        big = paths[paths["std_estimate"].abs() > 1]
        txt += (" A standardized coefficient above 1 in absolute value ("
                + ", ".join(f"{lab(r.rhs)} → {lab(r.lhs)}" for r in big.itertuples())
                + ") is a warning sign of near-collinear predictors acting on the same variable: its magnitude is not "
                  "interpreted, only its sign.")
    return txt


_OP_WORDS = {"=~": "measured by", "~": "regressed on", "~~": "covaries with"}


def sem_model_table(model: str) -> pd.DataFrame:
    """A lavaan model as a reader's table: one row per statement, with the variables in words.

    Parameters
    ----------
    model : str
        Model in lavaan syntax (``=~`` measurement, ``~`` regression, ``~~`` covariance), one
        statement per line; blank lines and ``#`` comments are ignored.

    Returns
    -------
    pandas.DataFrame
        part (measurement, regression, covariance), lhs, op, rhs (the statement as written) and
        the reader's ``left``, ``relation`` and ``right``.
    """
    rows = []
    for line in model.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        op = next((o for o in ("=~", "~~", "~") if o in line), None)
        if op is None:
            continue
        lhs, rhs = (x.strip() for x in line.split(op, 1))
        terms = [t.strip().split("*")[-1].strip() for t in rhs.split("+") if t.strip()]
        part = {"=~": "measurement", "~": "regression", "~~": "covariance"}[op]
        rows.append({"part": part, "lhs": lhs, "op": op, "rhs": " + ".join(terms), "left": variable_phrase(lhs),
                     "relation": _OP_WORDS[op], "right": ", ".join(variable_phrase(t) for t in terms)})
    return pd.DataFrame(rows, columns=["part", "lhs", "op", "rhs", "left", "relation", "right"])
