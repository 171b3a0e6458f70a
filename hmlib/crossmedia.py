"""Cross-media behaviour: sediment-water partition coefficients (Kd) and what controls them.

Pure functions on site-level tables. :func:`site_table` turns a region's validated data into
one row per paired site (metals and covariates of every medium, columns ``<var>_<medium>``);
:func:`kd_table` computes Kd per site and metal with the units checked and converted through
:mod:`hmlib.units`; :func:`kd_group_summary`, :func:`kd_group_tests` and :func:`kd_drivers`
describe the log10 Kd distributions by group and their relation to water-quality variables.
The structural equation model of the three media is in :mod:`hmlib.sem`.

Kd convention
-------------
Seed paper 002 (Wu et al. 2025, eq. 1) defines

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
    "default_drivers",
    "default_sem_model",
    "kd_boxplot",
    "drivers_heatmap",
    "methods_text",
    "variable_label",
    "sem_labels",
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
      :math:`1 / (1 - R_j^2)`.

    Parameters
    ----------
    kd : table from :func:`kd_table`.
    drivers : site_id-indexed numeric columns (e.g. salinity, DO, pH of water; OM of sediment).

    Returns
    -------
    DataFrame: metal, variable, n, spearman_rho, spearman_p, beta_std, beta_se, beta_p, vif, r2, r2_adj.

    References
    ----------
    Spearman (1904) doi:10.2307/1412159; Wu et al. (2025) seed 002, section 3.2 (salinity as the
    dominant predictor of Cd Kd).
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
        res = None
        if n >= len(cols) + 3 and both["__y"].std() > 0 and (both[cols].std() > 0).all():
            z = (both - both.mean()) / both.std(ddof=1)
            res = sm.OLS(z["__y"], sm.add_constant(z[cols])).fit()
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
                         "r2_adj": float(res.rsquared_adj) if res is not None else np.nan})
    return pd.DataFrame(rows, columns=["metal", "variable", "n", "spearman_rho", "spearman_p", "beta_std",
                                       "beta_se", "beta_p", "vif", "r2", "r2_adj"])


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
                           ha="right", fontsize=6.5)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.ravel()[len(metals):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("log$_{10}$ K$_d$", fontsize=8)
    fig.tight_layout()
    return fig


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
    v = drivers.pivot(index="metal", columns="variable", values=value).reindex(index=metals, columns=cols)
    pv = drivers.pivot(index="metal", columns="variable", values=p).reindex(index=metals, columns=cols)
    fig, ax = plt.subplots(figsize=(min(7.0, 1.0 + 0.95 * len(cols)), 0.8 + 0.32 * len(metals)))
    # blue positive, red negative: the colours of the path diagram
    im = ax.imshow(v.to_numpy(float), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(metals)):
        for j in range(len(cols)):
            x, q = v.iat[i, j], pv.iat[i, j]
            if np.isfinite(x):
                star = "**" if q < alpha / 5 else ("*" if q < alpha else "")
                ax.text(j, i, f"{x:.2f}{star}", ha="center", va="center", fontsize=6.5,
                        color="white" if abs(x) > 0.6 else "black")
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
                 threshold: float, alpha: float, n_sites: int, include_kd: bool = True) -> str:
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

    Returns
    -------
    str
        Methods paragraphs (pandoc markdown).
    """
    drv = "; ".join(variable_label(d) for d in drivers) if drivers else "none available"
    refine = (f" The a priori model was refined by repeatedly removing the indicator with the smallest absolute "
              f"standardized loading below {threshold:g} (keeping at least two per latent variable) and refitting; "
              f"each step and the fit after it are reported." if sem_refine else "")
    kd_text = f"""
**Partitioning.** At each of the {n_sites} paired sites the partition coefficient of every metal between
{solid_medium} and {water_medium} was computed as in @wu2025crossmedia (their Eq. 1):

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
**Structural equation model.** Cross-media relations were modelled with a structural equation model
[@wu2025crossmedia; after @rosseel2012lavaan] with a measurement part $x = \\Lambda \\xi + \\delta$ (latent
geochemical systems measured by metals and properties) and a structural part
$\\eta = B\\eta + \\Gamma\\xi + \\zeta$, written in lavaan syntax (shown below). Inputs were
{"log10-transformed concentrations and" if sem_log10 else ""} covariates, z-scored over the sites with
complete data, and the model was estimated by maximum likelihood with lavaan's defaults [@rosseel2012lavaan]
(first loading of each latent fixed at 1, residuals of pure outcomes correlated, observed predictors'
moments fixed at their sample values, expected-information standard errors; the estimator is hmlib's own,
checked number for number against lavaan 0.6-14 on three reference models). Indicators that also act as
predictors are modelled as in lavaan, and residual covariances are standardized as residual correlations
(lavaan's std.all); AIC and BIC are conditional on the observed predictors.
Standardized estimates are reported with standard errors and Wald p-values of the unstandardized
estimates. Fit is judged by $\\chi^2 = N F_{{ML}}$ [@joreskog1969], CFI [@bentler1990], TLI [@tucker1973],
RMSEA $= \\sqrt{{\\max(\\chi^2 - df, 0)/(df\\,N)}}$ with its 90% confidence interval from the noncentral
$\\chi^2$ distribution and the test of close fit [@steiger1990; @maccallum1996; @browne1993], SRMR and AIC;
conventional cut-offs are CFI and TLI $\\ge 0.95$, RMSEA $\\le 0.06$ and SRMR $\\le 0.08$ [@hu1999].
As in lavaan, the variances and covariances of observed predictors are fixed at their sample values and
not counted in the degrees of freedom.{refine} Significance level: {alpha:g}.
"""
    return (kd_text if include_kd else "") + sem_text


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
