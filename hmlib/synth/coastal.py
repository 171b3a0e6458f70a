"""Seeded tri-media demo region ``coastal_demo``: paired soil, sediment and water samples.

The design follows the paired sampling of Wu et al. (2025): at each
sediment-water site one surface-sediment and one surface-water sample are taken, and one
composite topsoil sample is taken on land within 500 m. Sites lie in four estuaries that
differ in salinity. Every number below is a choice made for this demo (no real survey is
reproduced); the relationships are built in on purpose so that the cross-media methods can be
checked against a known truth.

The generative model (site ``i`` in estuary ``g``; ``N`` normal, ``LN`` log-normal noise)
-----------------------------------------------------------------------------------------
Environment
    * salinity (psu, water): ``S_i = clip(mu_g + N(0, 3), 0.5, 34)`` with estuary means
      ``mu = 6, 14, 22, 29`` for ``estuary_a .. estuary_d``.
    * dissolved oxygen (mg/L, water): ``DO_i = clip(N(7, 1), 3, 11)``, the same in all estuaries.
    * water pH: ``pH_w = 7.3 + 0.02 S + 0.15 (DO - 7) + N(0, 0.15)`` (DO acts on Kd only through pH).
    * organic matter (%, soil and sediment): ``OM_soil = 2.0 exp(0.5 T_i + N(0, 0.2))``,
      ``OM_sed = 1.5 exp(0.4 T_i + N(0, 0.25))`` with a shared terrestrial-input factor ``T_i ~ N(0, 1)``.
    * pH of soil ``N(6.8, 0.7)`` and sediment ``N(7.6, 0.35)`` (clipped to 4.5-8.8).
Source mixing (soil)
    A lithogenic factor ``L_i ~ N(0, 1)`` (parent material, shared by soil and sediment) and an
    anthropogenic intensity ``A_i = sum_k exp(-d_ik / 6 km) + 0.05 LN(0, 0.5)`` around two
    industrial point sources. Per metal ``m`` with lithogenic background ``B_m`` and anthropogenic
    load ``E_m`` (:data:`METALS`)::

        C_soil = (B_m exp(0.25 L_i) + E_m A_i) (OM_soil / 2)^0.3 exp(b_m (pH_soil - 6.8)) LN(0, 0.15)

    *OM retention*: exponent 0.3 on organic matter; *pH solubility*: ``b_m`` (0.25 for Cd, 0.15
    for Zn, 0.08 otherwise) lowers retained metal in acid soils.
Sediment (inherits soil, plus direct inputs)
    ``C_sed = (0.6 C_soil + 0.4 (B_m exp(0.25 L_i) + E_m A_i)) (OM_sed / 1.5)^0.5 LN(0, 0.15)``
Water (dissolved phase from the true partition coefficient)
    With the Wu et al. (2025) convention ``Kd = C_sed [mg/kg] / C_w [ug/L] x 100``::

        log10 Kd = k0_m + 0.15 (OM_sed - 1.5) + p_m (pH_w - 8) - s_m (S - 18) / 10 - 0.12 D_i + N(0, 0.12)
        C_w      = 100 C_sed / Kd            (ug/L)

    ``D_i ~ N(0, 1)`` is an unmeasured water-column factor shared by all metals at a site (e.g.
    dissolved organic carbon complexing metals in solution), so water concentrations co-vary
    beyond what sediment and the measured water quality explain.

    *Salinity-driven Cd desorption*: ``s_Cd = 0.35`` (per 10 psu) against ``s_m = 0.04`` for the
    other metals; pH effect ``p_Cd = 0.30``, ``p_m = 0.15`` otherwise. Water values below a
    detection limit (:data:`WATER_DETECTION_LIMITS_UG_L`) are reported as ``<DL``.

Consequences a method should recover: Spearman rho(Kd_Cd, salinity) clearly negative and the
salinity beta of Cd the largest in magnitude; Kd rises with sediment OM and water pH; soil and
sediment metal levels are positively related (shared sources and erosion), sediment and water
through the partitioning.

Units: soil and sediment mg/kg (dry weight), water ug/L (dissolved). Coordinates are metres in a
local frame (``crs: local``), 0-80 km along the coast, 0-25 km inland.

References
----------
Wu, Q. et al. (2025) Tracing threats across the land-marine transition areas: decoding heavy
metal sources and risks in soil-water-sediment systems of northern and eastern coastal China.
(Wu et al. 2025).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["METALS", "ESTUARIES", "WATER_DETECTION_LIMITS_UG_L", "COVARIATES", "generate", "to_long",
           "kd_effects", "write_region"]

#: metal -> (lithogenic background B_m mg/kg, anthropogenic load E_m mg/kg, log10 Kd intercept k0_m)
METALS: dict[str, tuple[float, float, float]] = {
    "Cd": (0.12, 0.35, 2.3),
    "Pb": (22.0, 30.0, 3.4),
    "Cu": (20.0, 25.0, 3.0),
    "Zn": (65.0, 90.0, 2.9),
    "Cr": (60.0, 10.0, 3.7),
    "Ni": (28.0, 5.0, 3.2),
    "As": (8.0, 4.0, 2.6),
    "Hg": (0.04, 0.08, 2.4),
}
#: estuary -> mean salinity (psu) and x centre (m) of its sites
ESTUARIES: dict[str, tuple[float, float]] = {
    "estuary_a": (6.0, 10_000.0),
    "estuary_b": (14.0, 30_000.0),
    "estuary_c": (22.0, 50_000.0),
    "estuary_d": (29.0, 70_000.0),
}
WATER_DETECTION_LIMITS_UG_L: dict[str, float] = {"Cd": 0.02, "Pb": 0.05, "Cu": 0.1, "Zn": 0.5, "Cr": 0.05,
                                                 "Ni": 0.05, "As": 0.1, "Hg": 0.01}
#: covariate columns and the media in which they are measured
COVARIATES: dict[str, tuple[str, ...]] = {"om_pct": ("soil", "sediment"), "ph": ("soil", "sediment", "water"),
                                          "do_mg_l": ("water",), "salinity_psu": ("water",)}
_SOURCES_M = np.array([[22_000.0, 9_000.0], [58_000.0, 12_000.0]])
_PH_SOIL_EXP = {"Cd": 0.25, "Zn": 0.15}
_SAL_KD = {"Cd": 0.35}
_PH_KD = {"Cd": 0.30}


def generate(*, seed: int = 20251121, sites_per_estuary: int = 26) -> dict[str, pd.DataFrame]:
    """Draw one realisation of the tri-media coastal region.

    Parameters
    ----------
    seed : seed of the random generator (``numpy.random.default_rng``).
    sites_per_estuary : paired sites per estuary (4 estuaries).

    Returns
    -------
    dict of DataFrames
        ``sites``: site_id, group, x, y, salinity_psu, do_mg_l, latent factors (L, A, T, D);
        ``soil``, ``sediment``, ``water``: one row per sample with sample_id, site_id, group, x, y,
        covariates and one column per metal (mg/kg for solids, ug/L for water; water values are
        floats, censoring is applied by :func:`to_long`);
        ``kd_true``: site_id, metal, log10_kd (the partition coefficient used to draw the water).
        The relationships are stated in the module docstring.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(sites_per_estuary, (int, np.integer)) or sites_per_estuary < 5:
        raise ValueError(f"sites_per_estuary must be an integer >= 5, got {sites_per_estuary!r}")
    rng = np.random.default_rng(seed)
    n = sites_per_estuary * len(ESTUARIES)
    group = np.repeat(list(ESTUARIES), sites_per_estuary)
    mu_s = np.repeat([v[0] for v in ESTUARIES.values()], sites_per_estuary)
    xc = np.repeat([v[1] for v in ESTUARIES.values()], sites_per_estuary)
    x = np.clip(xc + rng.normal(0, 4_000, n), 500, 79_500)
    y = np.clip(rng.normal(8_000, 3_000, n), 500, 19_000)
    site_id = np.array([f"S{i + 1:03d}" for i in range(n)])

    salinity = np.clip(mu_s + rng.normal(0, 3, n), 0.5, 34.0)
    do = np.clip(rng.normal(7.0, 1.0, n), 3.0, 11.0)
    ph_w = 7.3 + 0.02 * salinity + 0.15 * (do - 7.0) + rng.normal(0, 0.15, n)
    t_fac = rng.normal(0, 1, n)
    om_soil = 2.0 * np.exp(0.5 * t_fac + rng.normal(0, 0.2, n))
    om_sed = 1.5 * np.exp(0.4 * t_fac + rng.normal(0, 0.25, n))
    ph_soil = np.clip(rng.normal(6.8, 0.7, n), 4.5, 8.8)
    ph_sed = np.clip(rng.normal(7.6, 0.35, n), 4.5, 8.8)
    lith = rng.normal(0, 1, n)
    doc = rng.normal(0, 1, n)
    d = np.sqrt(((np.c_[x, y][:, None, :] - _SOURCES_M[None, :, :]) ** 2).sum(-1))
    anth = np.exp(-d / 6_000.0).sum(1) + 0.05 * rng.lognormal(0, 0.5, n)

    soil_xy = np.c_[x, y] + rng.uniform(-350, 350, (n, 2))
    soil_xy[:, 1] = soil_xy[:, 1] + 400.0  # on land, inland of the site
    soil = pd.DataFrame({"sample_id": [f"{s}-SO" for s in site_id], "site_id": site_id, "group": group,
                         "x": soil_xy[:, 0], "y": soil_xy[:, 1], "om_pct": om_soil, "ph": ph_soil})
    sed = pd.DataFrame({"sample_id": [f"{s}-SE" for s in site_id], "site_id": site_id, "group": group,
                        "x": x, "y": y, "om_pct": om_sed, "ph": ph_sed})
    wat = pd.DataFrame({"sample_id": [f"{s}-WA" for s in site_id], "site_id": site_id, "group": group,
                        "x": x, "y": y, "ph": ph_w, "do_mg_l": do, "salinity_psu": salinity})
    kd_rows = []
    for m, (b_m, e_m, k0) in METALS.items():
        source = b_m * np.exp(0.25 * lith) + e_m * anth
        c_soil = (source * (om_soil / 2.0) ** 0.3 * np.exp(_PH_SOIL_EXP.get(m, 0.08) * (ph_soil - 6.8))
                  * rng.lognormal(0, 0.15, n))
        c_sed = (0.6 * c_soil + 0.4 * source) * (om_sed / 1.5) ** 0.5 * rng.lognormal(0, 0.15, n)
        log_kd = (k0 + 0.15 * (om_sed - 1.5) + _PH_KD.get(m, 0.15) * (ph_w - 8.0)
                  - _SAL_KD.get(m, 0.04) * (salinity - 18.0) / 10.0 - 0.12 * doc + rng.normal(0, 0.12, n))
        c_w = 100.0 * c_sed / 10.0 ** log_kd
        soil[m], sed[m], wat[m] = c_soil, c_sed, c_w
        kd_rows.append(pd.DataFrame({"site_id": site_id, "metal": m, "log10_kd": log_kd}))
    sites = pd.DataFrame({"site_id": site_id, "group": group, "x": x, "y": y, "salinity_psu": salinity,
                          "do_mg_l": do, "lithogenic": lith, "anthropogenic": anth, "terrestrial_om": t_fac,
                          "water_factor": doc})
    return {"sites": sites, "soil": soil, "sediment": sed, "water": wat,
            "kd_true": pd.concat(kd_rows, ignore_index=True)}


def kd_effects() -> pd.DataFrame:
    """The generator's true effects on log10 Kd, per metal and measured driver (the demo's known truth).

    From the partition equation of the module docstring: the slope of log10 Kd per unit of water
    salinity (``-s_m / 10`` per psu), water pH (``p_m``), sediment organic matter (0.15 per %)
    and dissolved oxygen (0: DO acts on Kd only through water pH, so with pH held fixed its
    effect is nil). The unmeasured water-column factor ``D_i`` is independent of the drivers, so
    a multiple regression of log10 Kd on these four variables estimates these slopes without bias
    (apart from the non-detects in water).

    Returns
    -------
    pandas.DataFrame
        metal, variable (site-table column ``<covariate>_<medium>``), true_slope_per_unit, unit.
    """
    rows = []
    for m in METALS:
        rows += [
            {"metal": m, "variable": "salinity_psu_water", "true_slope_per_unit": -_SAL_KD.get(m, 0.04) / 10.0,
             "unit": "log10 Kd per psu"},
            {"metal": m, "variable": "ph_water", "true_slope_per_unit": _PH_KD.get(m, 0.15),
             "unit": "log10 Kd per pH unit"},
            {"metal": m, "variable": "do_mg_l_water", "true_slope_per_unit": 0.0, "unit": "log10 Kd per mg/L"},
            {"metal": m, "variable": "om_pct_sediment", "true_slope_per_unit": 0.15, "unit": "log10 Kd per % OM"},
        ]
    return pd.DataFrame(rows)


def _fmt(v: float, dl: float | None) -> str:
    if not np.isfinite(v):
        return ""
    if dl is not None and v < dl:
        return f"<{dl:g}"
    return f"{v:.4g}"


def to_long(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One table of all samples (long format: one row per sample and medium) as text cells.

    Covariates not measured in a medium are blank; water concentrations below
    :data:`WATER_DETECTION_LIMITS_UG_L` are written ``<DL``.
    """
    frames = []
    for medium in ("soil", "sediment", "water"):
        t = tables[medium]
        out = pd.DataFrame({"sample_id": t["sample_id"], "site_id": t["site_id"], "medium": medium,
                            "estuary": t["group"], "x_m": t["x"].round(1), "y_m": t["y"].round(1)})
        for cov, media in COVARIATES.items():
            out[cov] = t[cov].round(3).astype(str) if medium in media else ""
        for m in METALS:
            dl = WATER_DETECTION_LIMITS_UG_L[m] if medium == "water" else None
            out[m] = [_fmt(v, dl) for v in t[m].to_numpy(float)]
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


def write_region(folder: str | Path, *, seed: int = 20251121, sites_per_estuary: int = 26,
                 layout: str = "long") -> dict[str, Path]:
    """Write the demo region's CSV file(s) and README into ``folder``.

    Parameters
    ----------
    folder : target folder (created if missing), e.g. ``data/coastal_demo``.
    seed, sites_per_estuary : passed to :func:`generate`.
    layout : ``'long'`` writes ``samples.csv`` (one row per sample and medium, column ``medium``);
        ``'per_medium'`` writes ``soil.csv``, ``sediment.csv`` and ``water.csv`` (same columns).

    Returns
    -------
    dict medium-or-'samples' -> path written (plus ``'truth'``: the true log10 Kd per site and metal, and
    ``'truth_effects'``: the true slopes of log10 Kd on the drivers, :func:`kd_effects`).
    """
    if layout not in ("long", "per_medium"):
        raise ValueError(f"layout must be 'long' or 'per_medium', got {layout!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = generate(seed=seed, sites_per_estuary=sites_per_estuary)
    long = to_long(tables)
    written: dict[str, Path] = {}
    if layout == "long":
        p = folder / "samples.csv"
        long.to_csv(p, index=False)
        written["samples"] = p
    else:
        for medium, t in long.groupby("medium", sort=False):
            p = folder / f"{medium}.csv"
            t.drop(columns="medium").to_csv(p, index=False)
            written[medium] = p
    p = folder / "truth_log10_kd.csv"
    tables["kd_true"].round(4).to_csv(p, index=False)
    written["truth"] = p
    p = folder / "truth_kd_effects.csv"
    kd_effects().to_csv(p, index=False)
    written["truth_effects"] = p
    readme = folder / "README.md"
    readme.write_text(_README.format(seed=seed, n=sites_per_estuary * len(ESTUARIES), k=sites_per_estuary,
                                     layout=layout, files=", ".join(f"`{v.name}`" for v in written.values())),
                      encoding="utf-8")
    written["readme"] = readme
    return written


_README = """# coastal_demo: synthetic tri-media coastal region (generated, not measured)

These data are **simulated**. They were generated by `hmlib.synth.coastal.write_region`
(`hmlib/synth/coastal.py`) with seed {seed}, {k} sites per estuary ({n} paired sites), layout
`{layout}`:

```
.venv/bin/python -c "from hmlib.synth.coastal import write_region; write_region('data/coastal_demo', seed={seed}, sites_per_estuary={k}, layout='{layout}')"
```

Files: {files}.

- One surface-sediment (`-SE`), one surface-water (`-WA`) and one topsoil (`-SO`) sample per site,
  paired by `site_id`; `estuary` is the group (four estuaries of increasing salinity).
- Metals Cd, Pb, Cu, Zn, Cr, Ni, As, Hg: mg/kg dry weight in soil and sediment, ug/L dissolved
  in water; water values below the detection limit are written `<DL`.
- Covariates: `om_pct` (organic matter, %, soil and sediment), `ph` (all media), `do_mg_l`
  (dissolved oxygen, mg/L, water), `salinity_psu` (water). Blank where not measured.
- Coordinates `x_m`, `y_m`: metres in a local frame.
- `truth_log10_kd.csv`: the true log10 Kd (Wu et al. (2025) convention, Cs mg/kg / Cw ug/L x 100) used to
  draw each water sample, for checking the methods.
- `truth_kd_effects.csv`: the true slope of log10 Kd on each measured driver (salinity, water pH,
  dissolved oxygen, sediment organic matter) per metal; the report's cross-media section compares
  the regression estimates with them.

The relationships built in (organic-matter retention, pH solubility, salinity-driven Cd
desorption, mixing of a lithogenic and an anthropogenic source) are stated in the docstring of
`hmlib/synth/coastal.py`. Regenerating with the same seed reproduces these files exactly.
"""
