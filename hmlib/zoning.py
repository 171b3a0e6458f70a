"""Dual-media baseline zoning, bearing capacity against guidelines, and background misjudgment.

* :func:`dual_media_zones` places each site of two paired media (soil and sediment, say) in
  one of four zones bounded by the lowest and highest geochemical baselines of each medium
  (Wu et al. 2025, section 2.1 and Fig. S5).
* :func:`bearing_capacity` gives, per sample and metal, the capacity left below a guideline
  value and whether the sample is overloaded.
* :func:`background_misjudgment` counts the samples whose index class changes when a static
  background is replaced by a spatially adaptive one (the headline comparison of Sun et al. 2025).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "ZONES",
    "dual_media_zones",
    "pair_media_by_site",
    "zone_shares",
    "zoning_bounds",
    "dual_media_zoning",
    "bearing_capacity",
    "bearing_capacity_summary",
    "select_guideline",
    "sample_guidelines",
    "background_misjudgment",
    "plot_misjudgment",
    "plot_dual_media_zones",
    "plot_bearing_capacity",
]

#: zone names in plotting order; ``{a}``/``{b}`` are replaced by the media names
ZONES = ("Background", "{a}-dominated", "{b}-dominated", "Pollution")


def _finite_positive(x: float, name: str) -> float:
    x = float(x)
    if not (np.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}")
    return x


def dual_media_zones(concentration_a, concentration_b, *, baseline_min_a: float, baseline_max_a: float,
                     baseline_min_b: float, baseline_max_b: float, medium_a: str = "soil",
                     medium_b: str = "sediment") -> np.ndarray:
    r"""Zone of each paired site in the plane (medium A concentration, medium B concentration).

    Following Wu et al. (2025, section 2.1), with :math:`\underline{B}_A, \overline{B}_A` the
    lowest and highest geochemical baselines of medium A over the baseline methods (same for B):

    * **Background**: :math:`x \le \underline{B}_A` and :math:`y \le \underline{B}_B`;
    * **Pollution**: :math:`x > \overline{B}_A` and :math:`y > \overline{B}_B` (dual-media pollution);
    * otherwise the site is **A-dominated** or **B-dominated**. The paper describes these as the
      bands between the lowest baseline of one medium and the highest of the other; they overlap
      where both media lie inside their baseline ranges. We split the plane by the relative
      position of each medium inside its own baseline range (on the log scale),

      .. math:: t_A = \frac{\ln x - \ln \underline{B}_A}{\ln \overline{B}_A - \ln \underline{B}_A},

      and call the site A-dominated when :math:`t_A > t_B`, else B-dominated. This reproduces the
      paper's bands where they do not overlap (e.g. :math:`x > \overline{B}_A`,
      :math:`y \le \overline{B}_B` is A-dominated) and splits the overlap along the diagonal of
      the baseline box. When a medium's range is degenerate (min = max) its position is
      :math:`\ln(x / \underline{B}_A)` for both.

    Parameters
    ----------
    concentration_a, concentration_b : arrays of equal length, concentrations of the paired
        sites in media A (x axis) and B (y axis); NaN gives zone None.
    baseline_min_a, baseline_max_a, baseline_min_b, baseline_max_b : baseline bounds (> 0, min <= max)
        in the units of the concentrations.
    medium_a, medium_b : names used in the zone labels.

    Returns
    -------
    Array of zone labels (object dtype): ``Background``, ``<A>-dominated``, ``<B>-dominated``,
    ``Pollution`` or None.

    References
    ----------
    Wu Q. et al. (2025) Tracing threats across the land-marine transition areas. Mar Pollut Bull.
    doi:10.1016/j.marpolbul.2025.118969
    """
    x = np.asarray(concentration_a, dtype=float).ravel()
    y = np.asarray(concentration_b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"concentration_a and concentration_b must have the same length, got {x.size} and {y.size}")
    if np.any(x[np.isfinite(x)] < 0) or np.any(y[np.isfinite(y)] < 0):
        raise ValueError("concentrations must be >= 0")
    lo_a, hi_a = _finite_positive(baseline_min_a, "baseline_min_a"), _finite_positive(baseline_max_a, "baseline_max_a")
    lo_b, hi_b = _finite_positive(baseline_min_b, "baseline_min_b"), _finite_positive(baseline_max_b, "baseline_max_b")
    if lo_a > hi_a or lo_b > hi_b:
        raise ValueError(f"baseline minimum must not exceed maximum; got A [{lo_a}, {hi_a}], B [{lo_b}, {hi_b}]")

    def position(v, lo, hi):
        with np.errstate(divide="ignore"):
            lv = np.log(v)
        return (lv - np.log(lo)) / (np.log(hi) - np.log(lo)) if hi > lo else lv - np.log(lo)

    ta, tb = position(x, lo_a, hi_a), position(y, lo_b, hi_b)
    zone = np.where(ta > tb, f"{medium_a}-dominated", f"{medium_b}-dominated").astype(object)
    zone[(x <= lo_a) & (y <= lo_b)] = "Background"
    zone[(x > hi_a) & (y > hi_b)] = "Pollution"
    zone[~(np.isfinite(x) & np.isfinite(y))] = None
    return zone


def pair_media_by_site(samples: pd.DataFrame, concentrations: pd.DataFrame, *, medium_a: str,
                       medium_b: str) -> pd.DataFrame:
    """Site means of two media side by side.

    Parameters
    ----------
    samples : DataFrame with sample_id, medium, site_id (as :attr:`hmlib.io.RegionData.samples`).
    concentrations : long DataFrame sample_id, medium, metal, value.
    medium_a, medium_b : the two media.

    Returns
    -------
    Long DataFrame site_id, metal, ``<medium_a>``, ``<medium_b>``, n_a, n_b: the arithmetic mean
    concentration of each medium at each site (several samples of one medium at a site, as the
    three soil composites per site of Wu et al. 2025, are averaged); only sites with both media.
    """
    for col in ("sample_id", "medium", "site_id"):
        if col not in samples.columns:
            raise ValueError(f"samples needs column {col!r} (data.site_column in params); got {list(samples.columns)}")
    for m in (medium_a, medium_b):
        if m not in set(samples["medium"]):
            raise ValueError(f"medium {m!r} has no samples; media present: {sorted(set(samples['medium']))}")
    c = concentrations.merge(samples[["sample_id", "medium", "site_id"]], on=["sample_id", "medium"], how="inner")
    c = c[c["medium"].isin([medium_a, medium_b]) & c["site_id"].notna()]
    g = c.groupby(["site_id", "metal", "medium"])["value"].agg(["mean", "count"]).reset_index()
    wide = g.pivot_table(index=["site_id", "metal"], columns="medium", values=["mean", "count"])
    out = pd.DataFrame({medium_a: wide[("mean", medium_a)], medium_b: wide[("mean", medium_b)],
                        "n_a": wide[("count", medium_a)], "n_b": wide[("count", medium_b)]}).dropna()
    out[["n_a", "n_b"]] = out[["n_a", "n_b"]].astype(int)
    return out.reset_index()


def zone_shares(zones: pd.DataFrame, *, medium_a: str, medium_b: str) -> pd.DataFrame:
    """Number and share of sites per metal and zone (all four zones listed, zeros included).

    ``zones`` needs columns metal and zone. Returns metal, zone, n, share.

    Parameters
    ----------
    zones : pandas.DataFrame
        Site table with columns metal and zone.
    medium_a : str
        Name of the first medium (used in the zone labels).
    medium_b : str
        Name of the second medium.

    Returns
    -------
    pandas.DataFrame
        Columns metal, zone, n (number of sites), share (fraction 0-1 of the metal's zoned sites).
    """
    if not {"metal", "zone"} <= set(zones.columns):
        raise ValueError(f"zones needs columns metal and zone, got {list(zones.columns)}")
    names = [z.format(a=medium_a, b=medium_b) for z in ZONES]
    rows = []
    for metal, g in zones.groupby("metal", sort=False):
        g = g[g["zone"].notna()]
        for z in names:
            k = int((g["zone"] == z).sum())
            rows.append({"metal": metal, "zone": z, "n": k, "share": k / len(g) if len(g) else np.nan})
    return pd.DataFrame(rows, columns=["metal", "zone", "n", "share"])


def zoning_bounds(baselines: pd.DataFrame, *, medium_a: str, medium_b: str, methods) -> pd.DataFrame:
    """Lowest and highest unstratified baseline of ``methods`` per metal in each medium.

    ``baselines`` is the baselines stage's table (medium, stratum, metal, method, baseline).
    Returns metal, min_a, max_a, min_b, max_b for the metals with baselines in both media.

    Parameters
    ----------
    baselines : pandas.DataFrame
        Baselines table (medium, stratum, metal, method, baseline).
    medium_a : str
        Name of the first medium.
    medium_b : str
        Name of the second medium.
    methods : iterable of str
        Baseline methods whose values span the bounds.

    Returns
    -------
    pandas.DataFrame
        Columns metal, min_a, max_a, min_b, max_b (baseline concentrations in the baselines' units).
    """
    need = {"medium", "stratum", "metal", "method", "baseline"}
    if not need <= set(baselines.columns):
        raise ValueError(f"baselines need columns {sorted(need)}, got {list(baselines.columns)}")
    b = baselines[(baselines["stratum"].astype(str) == "all") & baselines["method"].isin(list(methods))]
    b = b[np.isfinite(b["baseline"].astype(float)) & (b["baseline"].astype(float) > 0)]
    rng = b.groupby(["medium", "metal"])["baseline"].agg(["min", "max"])
    metals = list(dict.fromkeys(b["metal"]))
    rows = [{"metal": mt, "min_a": float(rng.loc[(medium_a, mt), "min"]), "max_a": float(rng.loc[(medium_a, mt), "max"]),
             "min_b": float(rng.loc[(medium_b, mt), "min"]), "max_b": float(rng.loc[(medium_b, mt), "max"])}
            for mt in metals if (medium_a, mt) in rng.index and (medium_b, mt) in rng.index]
    return pd.DataFrame(rows, columns=["metal", "min_a", "max_a", "min_b", "max_b"])


def dual_media_zoning(samples: pd.DataFrame, concentrations: pd.DataFrame, baselines: pd.DataFrame, *,
                      medium_a: str, medium_b: str, methods) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Zone of every paired site (Wu et al. 2025, section 2.1): site means, bounds and zone shares.

    Composes :func:`pair_media_by_site`, :func:`zoning_bounds`, :func:`dual_media_zones` and
    :func:`zone_shares`. Returns (paired sites with a ``zone`` column, bounds, shares).

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table (site and medium of each sample).
    concentrations : pandas.DataFrame
        Concentration table of the samples.
    baselines : pandas.DataFrame
        Baselines table (medium, stratum, metal, method, baseline).
    medium_a : str
        Name of the first medium (x axis of the zoning).
    medium_b : str
        Name of the second medium.
    methods : iterable of str
        Baseline methods whose values span the bounds.

    Returns
    -------
    tuple of (pandas.DataFrame, pandas.DataFrame, pandas.DataFrame)
        Paired site means with a ``zone`` column; bounds (see :func:`zoning_bounds`); zone shares
        (see :func:`zone_shares`).
    """
    paired = pair_media_by_site(samples, concentrations, medium_a=medium_a, medium_b=medium_b)
    bounds = zoning_bounds(baselines, medium_a=medium_a, medium_b=medium_b, methods=methods)
    paired = paired[paired["metal"].isin(bounds["metal"])].copy()
    paired["zone"] = None
    bb = bounds.set_index("metal")
    for mt, g in paired.groupby("metal", sort=False):
        r = bb.loc[mt]
        paired.loc[g.index, "zone"] = dual_media_zones(g[medium_a], g[medium_b], baseline_min_a=r.min_a,
                                                       baseline_max_a=r.max_a, baseline_min_b=r.min_b,
                                                       baseline_max_b=r.max_b, medium_a=medium_a, medium_b=medium_b)
    return paired.reset_index(drop=True), bounds, zone_shares(paired, medium_a=medium_a, medium_b=medium_b)


# --------------------------------------------------------------------------------------------
def select_guideline(guidelines: pd.DataFrame, *, threshold_name: str | None) -> tuple[pd.Series, list[str]]:
    """One guideline value per metal from rows of :func:`hmlib.reference.guideline_values`.

    Keeps rows of ``threshold_name`` (all rows when None and only one threshold exists). Where
    several values remain for a metal (land-use or pH conditions), the strictest (lowest) is
    used and a note says so. Returns (Series metal -> value, notes).

    Parameters
    ----------
    guidelines : pandas.DataFrame
        Guideline rows with columns metal, threshold_name, value.
    threshold_name : str or None
        Threshold to keep; None when the set has a single threshold.

    Returns
    -------
    tuple of (pandas.Series, list of str)
        Guideline value per metal (in the table's unit, named ``threshold_name``) and report notes.
    """
    need = {"metal", "threshold_name", "value"}
    if not need <= set(guidelines.columns):
        raise ValueError(f"guidelines need columns {sorted(need)}, got {list(guidelines.columns)}")
    names = list(dict.fromkeys(guidelines["threshold_name"]))
    if threshold_name is None:
        if len(names) != 1:
            raise ValueError(f"the guideline set has thresholds {names}; name one (references.guideline_threshold)")
        threshold_name = names[0]
    g = guidelines[guidelines["threshold_name"] == threshold_name]
    if g.empty:
        raise ValueError(f"no guideline rows with threshold_name {threshold_name!r}; available: {names}")
    notes = []
    counts = g.groupby("metal").size()
    multi = sorted(counts[counts > 1].index)
    if multi:
        notes.append(f"Several {threshold_name} values (by land use or soil condition) exist for "
                     f"{', '.join(multi)}; the strictest (lowest) is used.")
    return g.groupby("metal", sort=False)["value"].min().astype(float).rename(threshold_name), notes


def sample_guidelines(guidelines: pd.DataFrame, conditions: pd.DataFrame, *, threshold_name: str | None,
                      default: dict | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The guideline value of ``threshold_name`` that applies to each sample and metal.

    Rows of :func:`hmlib.reference.guideline_values` are resolved per sample by
    :func:`hmlib.reference.applicable_guidelines` (land use, pH class; strictest value where a
    condition is unknown). Returns (long table sample_id, metal, threshold_name, threshold,
    condition, fallback, fallback_reason; notes for the report).

    Parameters
    ----------
    guidelines : pandas.DataFrame
        Guideline rows with columns metal, threshold_name, value and condition columns.
    conditions : pandas.DataFrame
        Per-sample condition values (sample_id, land use, pH, ...).
    threshold_name : str or None
        Threshold to keep; None when the set has a single threshold.
    default : dict or None, optional
        Default condition values for samples lacking them.

    Returns
    -------
    tuple of (pandas.DataFrame, list of str)
        Long table (sample_id, metal, threshold_name, threshold, condition, fallback,
        fallback_reason) and report notes.
    """
    from .reference import applicable_guidelines

    need = {"metal", "threshold_name", "value"}
    if not need <= set(guidelines.columns):
        raise ValueError(f"guidelines need columns {sorted(need)}, got {list(guidelines.columns)}")
    names = list(dict.fromkeys(guidelines["threshold_name"]))
    if threshold_name is None:
        if len(names) != 1:
            raise ValueError(f"the guideline set has thresholds {names}; name one (references.guideline_threshold)")
        threshold_name = names[0]
    g = guidelines[guidelines["threshold_name"] == threshold_name]
    if g.empty:
        raise ValueError(f"no guideline rows with threshold_name {threshold_name!r}; available: {names}")
    out = applicable_guidelines(g, conditions, default=default)
    notes = []
    nf = out.loc[out["fallback"]].groupby("fallback_reason")["sample_id"].nunique()
    for reason, k in nf.items():
        notes.append(f"{k} sample{'s' if k != 1 else ''} ({reason}) {'were' if k != 1 else 'was'} judged against the "
                     f"strictest {threshold_name} value.")
    strict = out.loc[~out["fallback"] & out["condition"].astype(str).str.startswith("strictest")]
    if len(strict):
        notes.append(f"Several {threshold_name} values exist for {', '.join(sorted(strict['metal'].unique()))} "
                     "without a condition the data can select; the strictest (lowest) is used.")
    return out, notes


def bearing_capacity(concentration_mg_kg: pd.DataFrame, guideline_mg_kg, *, medium: str = "soil",
                     unit: str = "mg/kg") -> pd.DataFrame:
    r"""Remaining capacity of each sample below a guideline value.

    .. math::
        R_{ij} = G_{ij} - C_{ij}, \qquad R^{\%}_{ij} = 100\,\frac{G_{ij} - C_{ij}}{G_{ij}}

    A sample is overloaded when :math:`C_{ij} > G_{ij}` (negative remaining capacity). Metals
    without a guideline are left out (the caller reports them).

    Parameters
    ----------
    concentration_mg_kg : DataFrame samples (index sample_id) x metals.
    guideline_mg_kg : Series metal -> guideline value G (> 0), one value for every sample; or the
        long per-sample table of :func:`sample_guidelines` (sample_id, metal, threshold,
        condition), each sample against the value of its own land-use and pH class.
    medium, unit : written into the table.

    Returns
    -------
    Long DataFrame sample_id, medium, metal, concentration, guideline, condition, remaining,
    remaining_pct, overloaded, unit (rows with a missing concentration are dropped).

    Notes
    -----
    Environmental bearing capacity as the gap between a quality standard and the present
    concentration, as used (with adaptive backgrounds) by the EM + GPR workflow of Sun et al.
    (2025); a simple difference, checked in the tests against hand-computed values.
    """
    if not isinstance(concentration_mg_kg, pd.DataFrame):
        raise ValueError(f"concentration_mg_kg must be a DataFrame samples x metals, got "
                         f"{type(concentration_mg_kg).__name__}")
    if isinstance(guideline_mg_kg, pd.DataFrame):
        need = {"sample_id", "metal", "threshold"}
        if not need <= set(guideline_mg_kg.columns):
            raise ValueError(f"per-sample guidelines need columns {sorted(need)}, got {list(guideline_mg_kg.columns)}")
        per = guideline_mg_kg.assign(sample_id=guideline_mg_kg["sample_id"].astype(str))
        gvals = per["threshold"].astype(float)
    else:
        per = None
        gvals = guideline_mg_kg.astype(float)
    bad = gvals[~(np.isfinite(gvals) & (gvals > 0))]
    if len(bad):
        raise ValueError(f"guideline values must be finite and > 0, got {bad.head().to_dict()}")
    have = set(per["metal"]) if per is not None else set(gvals.index)
    metals = [m for m in concentration_mg_kg.columns if m in have]
    c = concentration_mg_kg[metals].copy()
    c.index = c.index.astype(str)
    long = c.rename_axis(index="sample_id", columns="metal").stack().rename("concentration").reset_index()
    if (long["concentration"] < 0).any():
        raise ValueError("concentrations must be >= 0")
    long.insert(1, "medium", medium)
    if per is None:
        long["guideline"] = long["metal"].map(gvals)
        long["condition"] = ""
    else:
        cols = ["sample_id", "metal", "threshold"] + (["condition"] if "condition" in per.columns else [])
        long = long.merge(per[cols].rename(columns={"threshold": "guideline"}), on=["sample_id", "metal"],
                          how="inner")
        if "condition" not in long.columns:
            long["condition"] = ""
    long["remaining"] = long["guideline"] - long["concentration"]
    long["remaining_pct"] = 100.0 * long["remaining"] / long["guideline"]
    long["overloaded"] = long["concentration"] > long["guideline"]
    long["unit"] = unit
    return long[["sample_id", "medium", "metal", "concentration", "guideline", "condition", "remaining",
                 "remaining_pct", "overloaded", "unit"]]


def bearing_capacity_summary(capacity: pd.DataFrame) -> pd.DataFrame:
    """Per medium and metal: lowest and highest guideline applied, n, n_overloaded, share_overloaded,
    median and minimum remaining %.

    Parameters
    ----------
    capacity : pandas.DataFrame
        Bearing capacity table with medium, metal, guideline, overloaded, remaining_pct.

    Returns
    -------
    pandas.DataFrame
        Columns medium, metal, guideline, guideline_max, n, n_overloaded, share_overloaded
        (fraction), median_remaining_pct, min_remaining_pct (% of the guideline).
    """
    rows = []
    for (medium, metal), g in capacity.groupby(["medium", "metal"], sort=False):
        n = len(g)
        k = int(g["overloaded"].sum())
        rows.append({"medium": medium, "metal": metal, "guideline": float(g["guideline"].min()),
                     "guideline_max": float(g["guideline"].max()), "n": n,
                     "n_overloaded": k, "share_overloaded": k / n if n else np.nan,
                     "median_remaining_pct": float(g["remaining_pct"].median()),
                     "min_remaining_pct": float(g["remaining_pct"].min())})
    return pd.DataFrame(rows, columns=["medium", "metal", "guideline", "guideline_max", "n", "n_overloaded",
                                       "share_overloaded", "median_remaining_pct", "min_remaining_pct"])


# --------------------------------------------------------------------------------------------
def background_misjudgment(static: pd.DataFrame, adaptive: pd.DataFrame, *,
                           indices=("CF", "Igeo", "Er", "PERI")) -> pd.DataFrame:
    """How many samples change class when the static background is replaced by the adaptive one.

    Both tables are tidy index tables of :func:`hmlib.indices.compute_indices` (columns
    sample_id, medium, metal, index, class_rank). Samples are matched on sample_id, medium,
    metal and index; rows without a class on either side are left out.

    ``n_under``: the static background puts the sample in a *lower* class than the adaptive one
    (the static assessment underestimates the pollution or risk, taking the adaptive background
    as the better estimate); ``n_over``: a higher class (overestimate).

    Parameters
    ----------
    static : pandas.DataFrame
        Index table computed with the static background.
    adaptive : pandas.DataFrame
        Index table computed with the adaptive background.
    indices : tuple of str, default ("CF", "Igeo", "Er", "PERI")
        Indices to compare.

    Returns
    -------
    DataFrame metal, index, n_class_changed, share_class_changed, n_under, n_over, medium, n,
    static_background, adaptive_background.
    """
    need = {"sample_id", "medium", "metal", "index", "class_rank", "background_used"}
    for name, t in (("static", static), ("adaptive", adaptive)):
        if not need <= set(t.columns):
            raise ValueError(f"{name} table needs columns {sorted(need)}, got {list(t.columns)}")
    key = ["sample_id", "medium", "metal", "index"]
    s = static[static["index"].isin(indices)]
    a = adaptive[adaptive["index"].isin(indices)]
    m = s[key + ["class_rank", "background_used"]].merge(
        a[key + ["class_rank", "background_used"]], on=key, suffixes=("_static", "_adaptive"))
    m = m[m["class_rank_static"].notna() & m["class_rank_adaptive"].notna()]
    rows = []
    for (medium, metal, index), g in m.groupby(["medium", "metal", "index"], sort=False):
        rs = g["class_rank_static"].astype(int).to_numpy()
        ra = g["class_rank_adaptive"].astype(int).to_numpy()
        n = len(g)
        changed = int((rs != ra).sum())
        rows.append({"medium": medium, "metal": metal, "index": index, "n": n, "n_class_changed": changed,
                     "share_class_changed": changed / n, "n_under": int((rs < ra).sum()),
                     "n_over": int((rs > ra).sum()),
                     "static_background": g["background_used_static"].iloc[0],
                     "adaptive_background": g["background_used_adaptive"].iloc[0]})
    return pd.DataFrame(rows, columns=["metal", "index", "n_class_changed", "share_class_changed", "n_under",
                                       "n_over", "medium", "n", "static_background", "adaptive_background"])


# --------------------------------------------------------------------------------------------
# figures
def plot_misjudgment(misjudgment: pd.DataFrame, *, medium: str | None = None):
    """Share of samples whose class is lower (under) or higher (over) with the static background.

    One panel per index, one pair of bars per metal (as % of the compared samples).

    Parameters
    ----------
    misjudgment : pandas.DataFrame
        Output of :func:`background_misjudgment`.
    medium : str or None, optional
        Medium to plot; None uses all rows.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    m = misjudgment if medium is None else misjudgment[misjudgment["medium"] == medium]
    if m.empty:
        raise ValueError("no misjudgment rows to plot")
    idx = list(dict.fromkeys(m["index"]))
    fig, axes = plt.subplots(1, len(idx), figsize=(min(7.0, 1.9 * len(idx) + 0.8), 3.0), squeeze=False,
                             sharey=True)
    for ax, index in zip(axes[0], idx):
        g = m[m["index"] == index]
        pos = np.arange(len(g))
        under = 100 * g["n_under"] / g["n"]
        over = 100 * g["n_over"] / g["n"]
        ax.bar(pos, under, color="#c0392b", label="static class lower (underestimate)")
        ax.bar(pos, over, bottom=under, color="#2e86c1", label="static class higher (overestimate)")
        ax.set_xticks(pos, g["metal"].replace({"all": "all metals"}), fontsize=7, rotation=0 if len(g) < 6 else 45)
        if len(g) == 1:  # an integrated index: one narrow bar, not a full-width block
            ax.set_xlim(-1.5, 1.5)
        ax.set_title(index, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    axes[0][0].set_ylabel("samples changing class (%)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return fig


def plot_dual_media_zones(paired: pd.DataFrame, bounds: pd.DataFrame, *, medium_a: str, medium_b: str,
                          unit_a: str = "mg/kg", unit_b: str = "mg/kg", ncols: int = 4):
    """Bivariate scatter (medium A on x, medium B on y, log axes) per metal with the zone boundaries.

    ``paired`` needs metal, ``<medium_a>``, ``<medium_b>``, zone; ``bounds`` metal, min_a, max_a,
    min_b, max_b.

    Parameters
    ----------
    paired : pandas.DataFrame
        Paired sites from :func:`dual_media_zoning`.
    bounds : pandas.DataFrame
        Zoning bounds from :func:`zoning_bounds`.
    medium_a : str
        Medium on the x axis.
    medium_b : str
        Medium on the y axis.
    unit_a : str, default 'mg/kg'
        Concentration unit of medium A (axis label).
    unit_b : str, default 'mg/kg'
        Concentration unit of medium B (axis label).
    ncols : int, default 4
        Number of panel columns.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    metals = list(dict.fromkeys(paired["metal"]))
    names = [zz.format(a=medium_a, b=medium_b) for zz in ZONES]
    colors = dict(zip(names, ["#27ae60", "#e67e22", "#2e86c1", "#c0392b"]))
    ncols = max(1, min(ncols, len(metals)))
    nrows = int(np.ceil(len(metals) / ncols))
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    panel = 2.6 if len(metals) <= 3 else 1.9
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(7.0, panel * ncols + 0.6), panel * nrows + 0.6), squeeze=False)
    for ax in axes.ravel()[len(metals):]:
        ax.set_visible(False)
    for ax, metal in zip(axes.ravel(), metals):
        g = paired[paired["metal"] == metal]
        b = bounds.set_index("metal").loc[metal]
        for zname in names:
            h = g[g["zone"] == zname]
            ax.scatter(h[medium_a], h[medium_b], s=8, color=colors[zname], label=zname, linewidths=0)
        for v in (b["min_a"], b["max_a"]):
            ax.axvline(v, color="0.3", lw=0.7, ls="--")
        for v in (b["min_b"], b["max_b"]):
            ax.axhline(v, color="0.3", lw=0.7, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(metal, fontsize=8)
        ax.tick_params(which="both", labelsize=6)
    fig.supxlabel(f"{medium_a} ({unit_a})", fontsize=8)
    fig.supylabel(f"{medium_b} ({unit_b})", fontsize=8)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[n], label=n, markersize=5) for n in names]
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=7, frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


def plot_bearing_capacity(capacity: pd.DataFrame, *, medium: str):
    """Box plots of the remaining capacity (% of the guideline) per metal; below 0 = overloaded.

    Parameters
    ----------
    capacity : pandas.DataFrame
        Bearing capacity table with medium, metal, remaining_pct.
    medium : str
        Medium to plot.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    c = capacity[capacity["medium"] == medium]
    if c.empty:
        raise ValueError(f"no bearing capacity rows for {medium!r}")
    metals = list(dict.fromkeys(c["metal"]))
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    data = [c.loc[c["metal"] == m, "remaining_pct"].to_numpy() for m in metals]
    ax.boxplot(data, tick_labels=metals, showfliers=True, flierprops={"markersize": 2})
    ax.axhline(0, color="#c0392b", lw=0.9, ls="--")
    ax.set_ylabel("remaining capacity (% of guideline)")
    ax.set_title(f"Bearing capacity in {medium} (below the dashed line: overloaded)", fontsize=9)
    fig.tight_layout()
    return fig
