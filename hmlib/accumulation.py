"""Long-term accumulation of metals in the plough layer: flux model, ML calibration, carrying capacity.

An annual mass balance of the plough layer per grid cell (or per sample) following the
process-model + machine-learning framework of the accumulation study published in 2026, "An integrated
framework coupling process driven model and machine learning to simulate soil heavy metal(loid)s
accumulation and predict regional risk" [@framework2026accumulation]:

.. math::

    M \\frac{dC}{dt} = I - O, \\qquad M = d\\,\\rho_b,

with :math:`C` the total concentration (mg/kg), :math:`M` the soil mass per area (kg/m2) of a
layer of depth :math:`d` (m) and bulk density :math:`\\rho_b` (kg/m3), :math:`I` and
:math:`O` the input and output fluxes (mg/m2/yr). It is integrated with annual steps
(:math:`C_{t+1} = C_t + (I_t - O_t)/M`, outputs evaluated at the start of each year), so the
change of stock equals inputs minus outputs exactly.

Inputs
    * atmospheric deposition from point sources: a Gaussian plume with ground reflection,
      Briggs (1973) open-country or urban dispersion coefficients by Pasquill-Gifford stability
      class, averaged over a wind rose with the sector-averaged long-term form (Turner 1970;
      Seinfeld & Pandis 2016, ch. 18); dry deposition :math:`v_d C(x, y, 0)` and wet deposition
      :math:`\\Lambda f_{rain} \\int C\\,dz`; no plume depletion or plume rise (effective
      height = stack height unless given);
    * a regional background deposition rate per metal;
    * agricultural inputs by land use and pathway (fertilizer, manure, irrigation), from a cited
      reference set (kind ``agricultural_input``);
    * optionally sediment deposition (floodplains) by a class column: rate x concentration.

Outputs (all linear in :math:`C`, so :math:`O = k\\,C` with :math:`k` in kg/m2/yr)
    * leaching: percolation x dissolved concentration, :math:`C_w = C / K_d`;
    * surface runoff (dissolved): runoff depth x :math:`C / K_d`;
    * erosion: RUSLE soil loss x enrichment ratio x :math:`C` (Renard et al. 1997);
    * crop offtake: yield x transfer factor x :math:`C`.

The ML calibration learns a correction to the net flux with gradient boosting (fixed random state)
(scikit-learn's ``GradientBoostingRegressor``; Friedman 2001) from a hindcast between two
surveys; its skill is measured first, by spatial-block cross-validation with training-fold
feature fills, and a correction is applied only where it lowers the out-of-fold error. A
residual diagnostic (one survey) starts from the region's own background, never from a crustal
reference, and is not projected forward unless asked. Carrying capacity is the
sensitivity-adjusted guideline minus the projected concentration, in mg/kg and as the mass the
plough layer can still take in kg/ha (:func:`mass_capacity_kg_ha`, with the depth and bulk density
of a cited ``soil_layer`` reference set); years to overload and overload shares by land use
follow. Monte Carlo over lognormal multipliers of the uncertain flux parameters gives
P5/P50/P95 bands, and a one-at-a-time analysis ranks the parameters.

The plume and mass-balance numerics are written here with NumPy: no maintained Python library
provides long-term sector-averaged Gaussian deposition (AERMOD is a Fortran program, out of
scope), and the mass balance is a one-line explicit update that must conserve mass exactly.
Both are tested against hand-computed values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .descriptive import _and, count_of, reference_label
from .progress import track
from .reference import load_reference

if TYPE_CHECKING:  # the options model is declared once, in the stage module
    from .stages.accumulation import Options as AccumulationOptions

__all__ = [
    "LAND_USES",
    "share_range_text",
    "SCENARIO_KEYS",
    "SECONDS_PER_YEAR",
    "soil_mass_kg_m2",
    "soil_layer_values",
    "dispersion_sigmas",
    "plume_ground_concentration",
    "sector_average_concentration",
    "read_point_sources",
    "read_wind_rose",
    "uniform_wind_rose",
    "point_source_deposition",
    "agricultural_inputs",
    "output_rate_constants",
    "FluxModel",
    "build_flux_model",
    "scenario_inputs",
    "Projection",
    "project",
    "idw_interpolate",
    "flux_budget",
    "CalibrationResult",
    "calibrate_net_flux",
    "effective_thresholds",
    "carrying_capacity",
    "years_to_overload",
    "mass_capacity_kg_ha",
    "overload_summary",
    "MonteCarloResult",
    "monte_carlo",
    "oat_sensitivity",
    "methods_text",
    "plot_timeseries",
    "plot_maps",
    "plot_flux_budget",
    "plot_calibration",
    "plot_sensitivity",
    "plot_overload",
]

SECONDS_PER_YEAR = 365.25 * 24 * 3600.0
#: land-use classes the stage knows (raw codes are mapped to these with ``land_use_map``)
LAND_USES = ("cultivated", "grassland", "orchard", "forest", "residential", "industrial", "other")
#: scenario multipliers: point-source emissions, background deposition, agricultural inputs, sediment
SCENARIO_KEYS = ("emission_factor", "background_factor", "agricultural_factor", "sediment_factor")
#: parameter groups varied in the Monte Carlo and one-at-a-time analyses
UNCERTAIN_GROUPS = ("deposition", "agricultural", "sediment", "kd", "percolation", "soil_loss", "transfer_factor")
INPUT_GROUP = {"point_deposition": "deposition", "background_deposition": "deposition", "fertilizer": "agricultural",
               "manure": "agricultural", "irrigation": "agricultural", "sediment": "sediment"}
SCENARIO_GROUP = {"point_deposition": "emission_factor", "background_deposition": "background_factor",
                  "fertilizer": "agricultural_factor", "manure": "agricultural_factor",
                  "irrigation": "agricultural_factor", "sediment": "sediment_factor"}


def _sig3(x: float) -> str:
    """Three significant digits as a reader writes them: 1060 not 1.06e+03 (thousands with a comma)."""
    x = float(x)
    if not np.isfinite(x) or x == 0 or 1e-3 <= abs(x) < 1e3:
        return f"{x:.3g}"
    if abs(x) >= 1e3:
        return f"{float(f'{x:.3g}'):,.0f}"
    m, e = f"{x:.2e}".split("e")
    return f"{m} × 10^{int(e)}^"


def _columns(names) -> str:
    """``'the column a'`` or ``'the columns a, b'`` for error messages."""
    names = [str(n) for n in names]
    return f"the {'column' if len(names) == 1 else 'columns'} {', '.join(names)}"


# ======================================================================================
# soil mass and Gaussian plume
# ======================================================================================
def soil_mass_kg_m2(depth_m, bulk_density_kg_m3):
    """Dry soil mass per area of a layer.

    .. math:: M = d \\, \\rho_b

    Parameters
    ----------
    depth_m : layer depth (m), > 0.
    bulk_density_kg_m3 : dry bulk density (kg/m3), > 0.

    Returns
    -------
    ndarray or float, kg/m2 (0.2 m x 1300 kg/m3 = 260 kg/m2).
    """
    d = np.asarray(depth_m, dtype=float)
    rho = np.asarray(bulk_density_kg_m3, dtype=float)
    if np.any(~(d > 0)) or np.any(~(rho > 0)):
        raise ValueError(f"depth_m and bulk_density_kg_m3 must be > 0, got {depth_m} and {bulk_density_kg_m3}")
    out = d * rho
    return float(out) if out.ndim == 0 else out


def soil_layer_values(name: str = "Topsoil_Orgiazzi2018", *, depth_m: float | None = None,
                      bulk_density_kg_m3: float | None = None) -> dict:
    """Plough-layer depth, bulk density and soil mass per area, from a cited reference set unless given.

    .. math:: M = d\\,\\rho_b

    Parameters
    ----------
    name : ``soil_layer`` reference set (rows ``depth`` in m and ``bulk_density`` in kg/m3).
    depth_m, bulk_density_kg_m3 : values set for the region; ``None`` takes the reference value.

    Returns
    -------
    dict with depth_m, bulk_density_kg_m3, soil_mass_kg_m2, depth_source, bulk_density_source
    (the reference's citation, or "set for this region").

    References
    ----------
    Orgiazzi A. et al. (2018) LUCAS Soil, the largest expandable soil dataset for Europe: a review.
    European Journal of Soil Science 69:140-153, https://doi.org/10.1111/ejss.12499
    """
    ref = load_reference("soil_layer", name).set_index("parameter")
    need = {"depth": "m", "bulk_density": "kg/m3"}
    for key, unit in need.items():
        if key not in ref.index or str(ref.loc[key, "unit"]) != unit:
            raise ValueError(f"soil_layer set {name} needs a row {key!r} in {unit}")
    d = float(ref.loc["depth", "value"]) if depth_m is None else float(depth_m)
    rho = float(ref.loc["bulk_density", "value"]) if bulk_density_kg_m3 is None else float(bulk_density_kg_m3)
    return {"depth_m": d, "bulk_density_kg_m3": rho, "soil_mass_kg_m2": soil_mass_kg_m2(d, rho),
            "depth_source": str(ref.loc["depth", "source"]) if depth_m is None else "set for this region",
            "bulk_density_source": (str(ref.loc["bulk_density", "source"]) if bulk_density_kg_m3 is None
                                    else "set for this region")}


def _dispersion_table(name: str) -> pd.DataFrame:
    return load_reference("dispersion", name)


def dispersion_sigmas(distance_m, stability: str, *, terrain: str = "rural", coefficients: str = "Briggs_1973"):
    """Horizontal and vertical dispersion coefficients of a Gaussian plume.

    .. math:: \\sigma = a\\,x\\,(1 + b\\,x)^{p}

    with :math:`x` the downwind distance (m) and :math:`a, b, p` per stability class, axis and
    terrain from the reference set (Briggs 1973 formulas as tabulated by Seinfeld & Pandis 2016,
    Table 18.3; valid for 100 m - 10 km).

    Parameters
    ----------
    distance_m : downwind distance(s), m, > 0.
    stability : Pasquill-Gifford class A (very unstable) to F (stable).
    terrain : "rural" (open country) or "urban".
    coefficients : name of the ``dispersion`` reference set.

    Returns
    -------
    (sigma_y, sigma_z) in m, arrays shaped like ``distance_m``.

    References
    ----------
    Briggs, G.A. (1973) Diffusion estimation for small emissions. ATDL Contribution 79.
    Seinfeld, J.H. & Pandis, S.N. (2016) Atmospheric Chemistry and Physics, 3rd ed., Wiley.
    Hanna, Briggs & Hosker (1982) Handbook on Atmospheric Diffusion, https://doi.org/10.2172/5591108
    """
    x = np.asarray(distance_m, dtype=float)
    if np.any(~(x > 0)):
        raise ValueError("distance_m must be > 0 (downwind receptors only)")
    tab = _dispersion_table(coefficients)
    sel = tab[(tab["terrain"] == terrain) & (tab["stability"] == stability)]
    if set(sel["axis"]) != {"y", "z"}:
        raise ValueError(f"no {terrain!r} coefficients for stability {stability!r} in {coefficients}; "
                         f"expected stability in A-F and terrain rural/urban")
    out = []
    for axis in ("y", "z"):
        r = sel[sel["axis"] == axis].iloc[0]
        out.append(float(r["a"]) * x * (1.0 + float(r["b"]) * x) ** float(r["p"]))
    return out[0], out[1]


def plume_ground_concentration(*, emission_g_s, wind_speed_m_s, downwind_m, crosswind_m, height_m,
                               stability: str, terrain: str = "rural", coefficients: str = "Briggs_1973"):
    """Ground-level concentration of a continuous point source (Gaussian plume, ground reflection).

    .. math::

        C(x, y, 0) = \\frac{Q}{\\pi u \\sigma_y \\sigma_z}
                     \\exp\\!\\left(-\\frac{y^2}{2\\sigma_y^2}\\right)
                     \\exp\\!\\left(-\\frac{H^2}{2\\sigma_z^2}\\right)

    (Seinfeld & Pandis 2016, eq. 18.60 with z = 0). Zero upwind (x <= 0).

    Parameters
    ----------
    emission_g_s : emission rate Q (g/s).
    wind_speed_m_s : wind speed u at stack height (m/s).
    downwind_m, crosswind_m : receptor coordinates x and y along and across the wind (m).
    height_m : effective source height H (m).
    stability, terrain, coefficients : see :func:`dispersion_sigmas`.

    Returns
    -------
    ndarray, g/m3.

    References
    ----------
    Seinfeld & Pandis (2016) Atmospheric Chemistry and Physics, 3rd ed., Wiley, ch. 18.
    """
    if not wind_speed_m_s > 0:
        raise ValueError(f"wind_speed_m_s must be > 0, got {wind_speed_m_s}")
    x = np.asarray(downwind_m, dtype=float)
    y = np.asarray(crosswind_m, dtype=float)
    out = np.zeros(np.broadcast(x, y).shape)
    xb, yb = np.broadcast_arrays(x, y)
    m = xb > 0
    if m.any():
        sy, sz = dispersion_sigmas(xb[m], stability, terrain=terrain, coefficients=coefficients)
        out[m] = (emission_g_s / (np.pi * wind_speed_m_s * sy * sz) * np.exp(-yb[m] ** 2 / (2 * sy ** 2))
                  * np.exp(-height_m ** 2 / (2 * sz ** 2)))
    return out


def sector_average_concentration(*, emission_g_s, frequency, wind_speed_m_s, distance_m, height_m,
                                 sector_width_rad, stability: str, terrain: str = "rural",
                                 coefficients: str = "Briggs_1973"):
    """Long-term ground-level concentration and vertical integral, sector-averaged (ISCLT form).

    The crosswind Gaussian is replaced by a uniform distribution over a sector of width
    :math:`\\Delta\\theta`, so the wind blows into the receptor's sector a fraction :math:`f` of
    the time (Turner 1970; Seinfeld & Pandis 2016, section 18.10):

    .. math::

        \\bar C(r, 0) = \\sqrt{\\frac{2}{\\pi}}\\,\\frac{f\\,Q}{u\\,\\sigma_z(r)\\,r\\,\\Delta\\theta}
                        \\exp\\!\\left(-\\frac{H^2}{2\\sigma_z^2}\\right), \\qquad
        \\int_0^\\infty \\bar C\\,dz = \\frac{f\\,Q}{u\\,r\\,\\Delta\\theta}

    Parameters
    ----------
    emission_g_s : float or array-like
        Emission rate Q (g/s).
    frequency : float or array-like
        Fraction f of the time the wind blows into the sector (0-1).
    wind_speed_m_s : float or array-like
        Wind speed u (m/s).
    distance_m : array-like of float
        Downwind distance r (m).
    height_m : float or array-like
        Effective release height H (m).
    sector_width_rad : float
        Sector width (radians).
    stability : str
        Pasquill-Gifford stability class (A-F).
    terrain : str, default "rural"
        Terrain of the dispersion coefficients.
    coefficients : str, default "Briggs_1973"
        Dispersion coefficient set.

    Returns
    -------
    (concentration_g_m3, column_g_m2) arrays shaped like ``distance_m``.
    """
    r = np.asarray(distance_m, dtype=float)
    _, sz = dispersion_sigmas(r, stability, terrain=terrain, coefficients=coefficients)
    base = frequency * emission_g_s / (wind_speed_m_s * r * sector_width_rad)
    conc = np.sqrt(2.0 / np.pi) * base / sz * np.exp(-height_m ** 2 / (2 * sz ** 2))
    return conc, base


def read_point_sources(path, *, metals: list[str]) -> pd.DataFrame:
    """Read and check the point-source CSV.

    Columns: ``source_id, x, y, stack_height_m`` and one ``<metal>_kg_yr`` per emitted metal
    (missing metals count as 0); optional ``effective_height_m`` (stack plus plume rise),
    ``start_year`` and ``end_year`` (calendar years active, inclusive).

    Parameters
    ----------
    path : str or Path
        CSV file (``#`` comment lines allowed).
    metals : list of str
        Metals of the assessment.

    Returns
    -------
    DataFrame
        The sources with one ``<metal>_kg_yr`` column per metal (kg/yr), ``effective_height_m`` (m)
        and ``start_year``/``end_year`` (NaN when not given).
    """
    df = pd.read_csv(path, comment="#")
    need = ["source_id", "x", "y", "stack_height_m"]
    miss = [c for c in need if c not in df.columns]
    if miss:
        raise ValueError(f"{path}: missing {_columns(miss)}; expected the columns {', '.join(need)} plus one "
                         "<metal>_kg_yr column per metal")
    out = df.copy()
    for m in metals:
        col = f"{m}_kg_yr"
        out[col] = pd.to_numeric(out[col], errors="raise") if col in out else 0.0
        if (out[col] < 0).any():
            raise ValueError(f"{path}: {col} must be >= 0")
    if not [c for c in df.columns if c.endswith("_kg_yr")]:
        raise ValueError(f"{path}: no emission columns; expected <metal>_kg_yr such as Cd_kg_yr")
    if "effective_height_m" not in out:
        out["effective_height_m"] = out["stack_height_m"]
    if (out["effective_height_m"] < 0).any():
        raise ValueError(f"{path}: stack heights must be >= 0")
    for c in ("start_year", "end_year"):
        if c not in out:
            out[c] = np.nan
    return out


def read_wind_rose(path) -> pd.DataFrame:
    """Read a wind rose CSV (direction_deg the wind blows FROM, speed_m_s, stability, frequency).

    Frequencies are normalised to sum to 1; directions must be equally spaced sectors.

    Parameters
    ----------
    path : str or Path
        CSV file (``#`` comment lines allowed).

    Returns
    -------
    DataFrame
        direction_deg (degrees), speed_m_s (m/s), stability, frequency (fraction, sums to 1).
    """
    df = pd.read_csv(path, comment="#")
    need = ["direction_deg", "speed_m_s", "stability", "frequency"]
    miss = [c for c in need if c not in df.columns]
    if miss:
        raise ValueError(f"{path}: missing {_columns(miss)}; expected the columns {', '.join(need)}")
    if (df["frequency"] < 0).any() or df["frequency"].sum() <= 0:
        raise ValueError(f"{path}: frequencies must be >= 0 with a positive sum")
    if (df["speed_m_s"] <= 0).any():
        raise ValueError(f"{path}: wind speeds must be > 0")
    out = df[need].copy()
    out["frequency"] = out["frequency"] / out["frequency"].sum()
    return out


def uniform_wind_rose(*, n_sectors: int = 16, speed_m_s: float = 4.0, stability: str = "D") -> pd.DataFrame:
    """A wind rose with equal frequency from ``n_sectors`` directions, one speed and stability.

    Parameters
    ----------
    n_sectors : int, default 16
        Number of equally spaced directions.
    speed_m_s : float, default 4.0
        Wind speed (m/s).
    stability : str, default "D"
        Pasquill-Gifford stability class.

    Returns
    -------
    DataFrame
        direction_deg, speed_m_s, stability, frequency (1 / n_sectors each).
    """
    return pd.DataFrame({"direction_deg": np.arange(n_sectors) * 360.0 / n_sectors, "speed_m_s": speed_m_s,
                         "stability": stability, "frequency": 1.0 / n_sectors})


def point_source_deposition(*, receptor_x_m, receptor_y_m, sources: pd.DataFrame, metals: list[str],
                            wind_rose: pd.DataFrame, deposition: pd.DataFrame, rain_fraction: float,
                            terrain: str = "rural", coefficients: str = "Briggs_1973",
                            min_distance_m: float = 100.0) -> np.ndarray:
    """Annual deposition from each point source at each receptor, wind-rose averaged.

    .. math::

        D = \\Big[v_d\\,\\bar C(r, 0) + \\Lambda\\,f_{rain}\\int_0^\\infty \\bar C\\,dz\\Big]\\,
            \\times 3.156\\times 10^{10}\\ \\mathrm{mg\\,s/(g\\,yr)}

    summed over the wind-rose rows whose downwind sector contains the receptor
    (:func:`sector_average_concentration`). The plume is not depleted by deposition (an upper
    bound near the source) and rain is assumed to follow the same wind rose.

    Parameters
    ----------
    receptor_x_m, receptor_y_m : receptor coordinates (m, projected).
    sources : from :func:`read_point_sources` (coordinates in m).
    metals : metals (emission columns ``<metal>_kg_yr``).
    wind_rose : from :func:`read_wind_rose` / :func:`uniform_wind_rose`.
    deposition : ``deposition`` reference set (metal, dry_deposition_velocity_m_s, scavenging_coefficient_s).
    rain_fraction : fraction of time with rain.

    Returns
    -------
    ndarray (n_sources, n_receptors, n_metals), mg/m2/yr while the source is active.

    References
    ----------
    Turner, D.B. (1970) Workbook of atmospheric dispersion estimates, US EPA AP-26.
    Seinfeld & Pandis (2016) Atmospheric Chemistry and Physics, 3rd ed., ch. 18-20.
    """
    rx = np.asarray(receptor_x_m, dtype=float)
    ry = np.asarray(receptor_y_m, dtype=float)
    dep = deposition.set_index("metal")
    miss = [m for m in metals if m not in dep.index]
    if miss:
        raise ValueError(f"deposition parameters missing for metals {miss}")
    vd = dep.loc[metals, "dry_deposition_velocity_m_s"].to_numpy(float)
    lam = dep.loc[metals, "scavenging_coefficient_s"].to_numpy(float)
    sources = sources.copy()
    if "effective_height_m" not in sources:
        sources["effective_height_m"] = sources["stack_height_m"]
    for m in metals:
        if f"{m}_kg_yr" not in sources:
            sources[f"{m}_kg_yr"] = 0.0
    dirs = np.sort(wind_rose["direction_deg"].unique())
    width = 2 * np.pi / len(dirs)
    out = np.zeros((len(sources), rx.size, len(metals)))
    for s, src in enumerate(sources.itertuples(index=False)):
        dx, dy = rx - float(src.x), ry - float(src.y)
        r = np.maximum(np.hypot(dx, dy), min_distance_m)
        bearing = np.degrees(np.arctan2(dx, dy)) % 360.0  # direction from source to receptor, clockwise from N
        conc = np.zeros(rx.size)
        column = np.zeros(rx.size)
        for row in wind_rose.itertuples(index=False):
            to_dir = (float(row.direction_deg) + 180.0) % 360.0
            diff = np.abs((bearing - to_dir + 180.0) % 360.0 - 180.0)
            inside = diff < np.degrees(width) / 2 + 1e-9
            if not inside.any():
                continue
            c, col = sector_average_concentration(
                emission_g_s=1.0, frequency=float(row.frequency), wind_speed_m_s=float(row.speed_m_s),
                distance_m=r[inside], height_m=float(src.effective_height_m), sector_width_rad=width,
                stability=str(row.stability), terrain=terrain, coefficients=coefficients)
            conc[inside] += c
            column[inside] += col
        q_g_s = np.array([getattr(src, f"{m}_kg_yr") for m in metals], dtype=float) * 1000.0 / SECONDS_PER_YEAR
        flux_g_m2_s = (conc[:, None] * vd[None, :] + column[:, None] * lam[None, :] * rain_fraction) * q_g_s[None, :]
        out[s] = flux_g_m2_s * SECONDS_PER_YEAR * 1000.0
    return out


# ======================================================================================
# agricultural inputs and output rate constants
# ======================================================================================
def agricultural_inputs(*, land_use: np.ndarray, metals: list[str], rates: pd.DataFrame) -> dict[str, np.ndarray]:
    """Agricultural inputs per pathway (mg/m2/yr) for each cell's land use.

    Rates come from an ``agricultural_input`` reference set in g/ha/yr
    (1 g/ha/yr = 0.1 mg/m2/yr); land uses or metals not listed get 0.

    Parameters
    ----------
    land_use : numpy.ndarray
        Land-use class per cell.
    metals : list of str
        Metals, in column order.
    rates : DataFrame
        Reference rates (land_use, metal, pathway, value, unit g/ha/yr).

    Returns
    -------
    dict pathway -> ndarray (n_cells, n_metals).
    """
    if not set(rates["unit"]) <= {"g/ha/yr"}:
        raise ValueError(f"agricultural input rates must be in g/ha/yr, got units {sorted(set(rates['unit']))}")
    lu = np.asarray(land_use, dtype=object)
    out = {}
    for pathway in ("fertilizer", "manure", "irrigation"):
        sub = rates[rates["pathway"] == pathway]
        arr = np.zeros((lu.size, len(metals)))
        for (cls, metal), v in sub.groupby(["land_use", "metal"])["value"].sum().items():
            if metal in metals:
                arr[lu == cls, metals.index(metal)] = float(v) * 0.1
        out[pathway] = arr
    return out


def output_rate_constants(*, land_use: np.ndarray, metals: list[str], kd_l_kg: pd.Series, percolation_mm_yr: float,
                          runoff_mm_yr: dict[str, float], soil_loss_t_ha_yr: dict[str, float],
                          enrichment_ratio: pd.Series, crop_yield_t_ha_yr: dict[str, float],
                          transfer_factor: dict[str, pd.Series]) -> dict[str, np.ndarray]:
    """Output rate constants :math:`k` (kg/m2/yr) so that each output flux is :math:`k\\,C` (mg/m2/yr).

    .. math::

        k_{leach} = \\frac{P}{K_d}, \\quad k_{runoff} = \\frac{R}{K_d}, \\quad
        k_{eros} = A \\cdot ER, \\quad k_{crop} = Y \\cdot TF

    with percolation :math:`P` and runoff :math:`R` in L/m2/yr (= mm/yr), :math:`K_d` in L/kg
    (so :math:`C/K_d` is the dissolved concentration in mg/L), RUSLE soil loss :math:`A` in
    kg/m2/yr (1 t/ha/yr = 0.1 kg/m2/yr; Renard et al. 1997), enrichment ratio :math:`ER`,
    harvested dry matter :math:`Y` in kg/m2/yr and the soil-to-plant transfer factor
    :math:`TF` (plant dry-weight concentration / soil concentration).

    Parameters
    ----------
    land_use : class per cell.
    kd_l_kg, enrichment_ratio : Series indexed by metal.
    transfer_factor : crop -> Series indexed by metal; land uses map to crops through the
        keys of ``crop_yield_t_ha_yr`` (yield) and the caller's crop choice.

    Returns
    -------
    dict name -> ndarray (n_cells, n_metals), kg/m2/yr.

    References
    ----------
    Renard, K.G. et al. (1997) Predicting soil erosion by water: RUSLE. USDA Agriculture Handbook 703.
    """
    lu = np.asarray(land_use, dtype=object)
    n, m = lu.size, len(metals)
    for name, s in (("Kd", kd_l_kg), ("enrichment ratio", enrichment_ratio)):
        miss = [x for x in metals if x not in s.index]
        if miss:
            raise ValueError(f"{name} missing for metals {miss}")
    kd = kd_l_kg.reindex(metals).to_numpy(float)
    if np.any(~(kd > 0)):
        raise ValueError("Kd values must be > 0 L/kg")
    er = enrichment_ratio.reindex(metals).to_numpy(float)
    per_lu = lambda d: np.array([float(d.get(c, 0.0)) for c in lu])  # noqa: E731
    runoff = per_lu(runoff_mm_yr)
    loss = per_lu(soil_loss_t_ha_yr) * 0.1
    yld = per_lu(crop_yield_t_ha_yr) * 0.1
    tf = np.zeros((n, m))
    for cls, series in transfer_factor.items():
        miss = [x for x in metals if x not in series.index]
        if miss:
            raise ValueError(f"transfer factors missing for metals {miss}")
        tf[lu == cls] = series.reindex(metals).to_numpy(float)
    return {
        "leaching": np.broadcast_to(percolation_mm_yr / kd, (n, m)).copy(),
        "runoff": runoff[:, None] / kd[None, :],
        "erosion": loss[:, None] * er[None, :],
        "crop_offtake": yld[:, None] * tf,
    }


@dataclass
class FluxModel:
    """Process model of one domain (cells or samples).

    Attributes
    ----------
    metals : metal order of the last axis.
    soil_mass_kg_m2 : (n,) soil mass per area.
    constant_inputs : name -> (n, m) mg/m2/yr (background deposition, fertilizer, manure,
        irrigation, sediment).
    point_deposition : (n_sources, n, m) mg/m2/yr per source while active.
    source_years : (n_sources, 2) first and last calendar year active (NaN: always).
    output_rates : name -> (n, m) kg/m2/yr (leaching, runoff, erosion, crop_offtake).
    land_use : (n,) land-use class.
    """

    metals: list[str]
    soil_mass_kg_m2: np.ndarray
    constant_inputs: dict[str, np.ndarray]
    point_deposition: np.ndarray
    source_years: np.ndarray
    output_rates: dict[str, np.ndarray]
    land_use: np.ndarray

    @property
    def n(self) -> int:
        return int(self.soil_mass_kg_m2.size)

    def subset(self, idx) -> FluxModel:
        """The model restricted to cells ``idx``."""
        return FluxModel(self.metals, self.soil_mass_kg_m2[idx], {k: v[idx] for k, v in self.constant_inputs.items()},
                         self.point_deposition[:, idx], self.source_years,
                         {k: v[idx] for k, v in self.output_rates.items()}, self.land_use[idx])

    def scaled(self, multipliers: dict[str, float]) -> FluxModel:
        """A copy with parameter groups scaled (Monte Carlo / sensitivity).

        ``deposition``, ``agricultural`` and ``sediment`` scale inputs; ``kd`` divides leaching and
        runoff; ``percolation`` scales leaching; ``soil_loss`` erosion; ``transfer_factor`` crop offtake.
        """
        g = {k: float(multipliers.get(k, 1.0)) for k in UNCERTAIN_GROUPS}
        ci = {k: v * g[INPUT_GROUP[k]] for k, v in self.constant_inputs.items()}
        o = self.output_rates
        out = {"leaching": o["leaching"] * g["percolation"] / g["kd"], "runoff": o["runoff"] / g["kd"],
               "erosion": o["erosion"] * g["soil_loss"], "crop_offtake": o["crop_offtake"] * g["transfer_factor"]}
        return FluxModel(self.metals, self.soil_mass_kg_m2, ci, self.point_deposition * g["deposition"],
                         self.source_years, out, self.land_use)


def build_flux_model(*, x_m, y_m, land_use, metals: list[str], options: AccumulationOptions,
                     sources: pd.DataFrame | None = None, wind_rose: pd.DataFrame | None = None,
                     sediment_class=None) -> FluxModel:
    """Assemble the :class:`FluxModel` of a set of cells from the options and reference sets.

    Parameters
    ----------
    x_m, y_m : array-like of float
        Cell coordinates (m).
    land_use : array-like
        Land-use class per cell.
    metals : list of str
        Metals modelled.
    options : AccumulationOptions
        Stage options (soil layer, reference sets, rates).
    sources : DataFrame, optional
        Point sources from :func:`read_point_sources`.
    wind_rose : DataFrame, optional
        Wind rose (default: uniform from the options).
    sediment_class : array-like, optional
        Sediment deposition class per cell.

    Returns
    -------
    FluxModel
        Soil mass (kg/m2), constant inputs and point deposition (mg/m2/yr), source years and
        output rate constants per cell and metal.
    """
    o = options
    lu = np.asarray(land_use, dtype=object)
    n = lu.size
    layer = soil_layer_values(o.soil_layer, depth_m=o.depth_m, bulk_density_kg_m3=o.bulk_density_kg_m3)
    mass = np.full(n, layer["soil_mass_kg_m2"])
    ci: dict[str, np.ndarray] = {}
    bg = np.array([float(o.background_deposition_g_ha_yr.get(m, 0.0)) * 0.1 for m in metals])
    ci["background_deposition"] = np.broadcast_to(bg, (n, len(metals))).copy()
    ci.update(agricultural_inputs(land_use=lu, metals=metals,
                                  rates=load_reference("agricultural_input", o.agricultural_inputs)))
    if o.sediment_class_column and o.sediment_deposition_kg_m2_yr:
        if sediment_class is None:
            raise ValueError(f"sediment deposition is configured but column {o.sediment_class_column!r} is missing")
        cls = pd.Series(np.asarray(sediment_class)).astype(str).str.replace(r"\.0$", "", regex=True)
        rate = cls.map({str(k): float(v) for k, v in o.sediment_deposition_kg_m2_yr.items()}).fillna(0.0).to_numpy()
        sc = np.array([float(o.sediment_concentration_mg_kg.get(m, 0.0)) for m in metals])
        ci["sediment"] = rate[:, None] * sc[None, :]
    if sources is not None and len(sources):
        rose = wind_rose if wind_rose is not None else uniform_wind_rose(
            n_sectors=o.n_wind_sectors, speed_m_s=o.wind_speed_m_s, stability=o.stability_class)
        pdep = point_source_deposition(
            receptor_x_m=x_m, receptor_y_m=y_m, sources=sources, metals=metals, wind_rose=rose,
            deposition=load_reference("deposition", o.deposition_parameters), rain_fraction=o.rain_fraction,
            terrain=o.terrain, coefficients=o.dispersion_coefficients, min_distance_m=o.min_distance_m)
        years = sources.reindex(columns=["start_year", "end_year"]).to_numpy(float)
    else:
        pdep = np.zeros((0, n, len(metals)))
        years = np.zeros((0, 2))
    kd = load_reference("partition_coefficient", o.partition_coefficients)
    if not set(kd["unit"]) <= {"L/kg"}:
        raise ValueError(f"Kd set {o.partition_coefficients} must be in L/kg")
    tf = load_reference("transfer_factor", o.transfer_factors)
    tfs = {lu_cls: tf[tf["crop"] == crop].set_index("metal")["value"] for lu_cls, crop in o.crop_by_land_use.items()}
    er = load_reference("enrichment_ratio", o.enrichment_ratios).set_index("metal")["value"]
    rates = output_rate_constants(land_use=lu, metals=metals, kd_l_kg=kd.set_index("metal")["value"],
                                  percolation_mm_yr=o.percolation_mm_yr, runoff_mm_yr=o.runoff_mm_yr,
                                  soil_loss_t_ha_yr=o.soil_loss_t_ha_yr, enrichment_ratio=er,
                                  crop_yield_t_ha_yr=o.crop_yield_t_ha_yr, transfer_factor=tfs)
    return FluxModel(list(metals), mass, ci, pdep, years, rates, lu)


def scenario_inputs(model: FluxModel, *, scenario: dict[str, float], n_years: int,
                    start_year: int | None) -> dict[str, np.ndarray]:
    """Input fluxes (mg/m2/yr) per component for years 0..n_years-1 of a scenario.

    Constant components are (n, m) arrays; ``point_deposition`` is (n_years, n, m) when sources
    have active years (a source counts in year t if start_year + t lies in [start, end]).

    Parameters
    ----------
    model : FluxModel
        Process model.
    scenario : dict of str to float
        Multipliers per scenario group (missing: 1).
    n_years : int
        Number of projected years.
    start_year : int or None
        Calendar year of year 0 (needed when sources have active years).

    Returns
    -------
    dict of str to numpy.ndarray
        Component -> input flux (mg/m2/yr), shaped as described above.
    """
    f = {k: float(scenario.get(k, 1.0)) for k in SCENARIO_KEYS}
    out = {k: v * f[SCENARIO_GROUP[k]] for k, v in model.constant_inputs.items()}
    if model.point_deposition.shape[0]:
        yrs = model.source_years
        if np.isnan(yrs).all() or start_year is None:
            if start_year is None and not np.isnan(yrs).all():
                raise ValueError("point sources have active years but the projection has no start_year "
                                 "(set stages.accumulation.start_year or survey_column)")
            out["point_deposition"] = model.point_deposition.sum(axis=0) * f["emission_factor"]
        else:
            cal = start_year + np.arange(n_years)
            lo = np.where(np.isnan(yrs[:, 0]), -np.inf, yrs[:, 0])
            hi = np.where(np.isnan(yrs[:, 1]), np.inf, yrs[:, 1])
            active = ((cal[:, None] >= lo[None, :]) & (cal[:, None] <= hi[None, :])).astype(float)  # (T, S)
            out["point_deposition"] = np.einsum("ts,snm->tnm", active, model.point_deposition) * f["emission_factor"]
    return out


# ======================================================================================
# projection
# ======================================================================================
@dataclass
class Projection:
    """Result of :func:`project`.

    Attributes
    ----------
    concentration_mg_kg : (n, m, T+1) concentrations at the start of years 0..T.
    inputs_mg_m2_yr : name -> (n, m, T) input fluxes per year (only with ``return_fluxes``).
    outputs_mg_m2_yr : name -> (n, m, T) output fluxes per year (only with ``return_fluxes``).
    correction_mg_m2_yr : (n, m, T) ML correction applied per year (zero without correction).
    """

    concentration_mg_kg: np.ndarray
    inputs_mg_m2_yr: dict[str, np.ndarray] = field(default_factory=dict)
    outputs_mg_m2_yr: dict[str, np.ndarray] = field(default_factory=dict)
    correction_mg_m2_yr: np.ndarray | None = None


def project(*, initial_mg_kg, soil_mass_kg_m2, inputs_mg_m2_yr: dict[str, np.ndarray],
            output_rates_kg_m2_yr: dict[str, np.ndarray], n_years: int, correction_mg_m2_yr=None,
            return_fluxes: bool = False) -> Projection:
    """Annual mass balance of the plough layer, vectorized over cells x metals.

    .. math::

        C_{t+1} = C_t + \\frac{\\sum_i I_{i,t} - \\sum_j k_j C_t + \\Delta F}{M}

    where :math:`\\Delta F` is the (optional) ML correction of the net flux. Without correction
    the stock change :math:`M (C_T - C_0)` equals :math:`\\sum_t (I_t - O_t)` exactly. With a
    negative correction the concentration is floored at 0 and the applied correction is
    reduced accordingly (reported in ``correction_mg_m2_yr``). The explicit annual step needs
    :math:`\\sum_j k_j / M < 1` (outputs smaller than the stock); otherwise a ValueError.

    Parameters
    ----------
    initial_mg_kg : (n, m) concentrations at year 0.
    soil_mass_kg_m2 : (n,) soil mass per area.
    inputs_mg_m2_yr : name -> (n, m) or (T, n, m) input fluxes.
    output_rates_kg_m2_yr : name -> (n, m) output rate constants.
    n_years : number of annual steps T.
    correction_mg_m2_yr : (n, m) constant flux correction, or None.

    Returns
    -------
    :class:`Projection`.
    """
    c0 = np.asarray(initial_mg_kg, dtype=float)
    if c0.ndim != 2:
        raise ValueError(f"initial_mg_kg must be 2-D (cells x metals), got shape {c0.shape}")
    if np.any(~np.isfinite(c0)) or np.any(c0 < 0):
        raise ValueError("initial_mg_kg must be finite and >= 0 (impute or drop missing values first)")
    n, m = c0.shape
    mass = np.asarray(soil_mass_kg_m2, dtype=float).reshape(-1)
    if mass.size != n or np.any(~(mass > 0)):
        raise ValueError(f"soil_mass_kg_m2 must have {n} positive values, got {mass.size}")
    if n_years < 1:
        raise ValueError(f"n_years must be >= 1, got {n_years}")
    ktot = np.zeros((n, m))
    for k, v in output_rates_kg_m2_yr.items():
        if np.shape(v) != (n, m):
            raise ValueError(f"output rate {k!r} has shape {np.shape(v)}, expected {(n, m)}")
        ktot = ktot + v
    if np.any(ktot / mass[:, None] >= 1):
        raise ValueError("annual outputs exceed the soil stock (sum of k / M >= 1); expected smaller "
                         "output parameters (Kd, percolation, soil loss, yield)")
    const = np.zeros((n, m))
    series = {}
    for k, v in inputs_mg_m2_yr.items():
        v = np.asarray(v, dtype=float)
        if v.shape == (n, m):
            const = const + v
        elif v.shape == (n_years, n, m):
            series[k] = v
        else:
            raise ValueError(f"input {k!r} has shape {v.shape}, expected {(n, m)} or {(n_years, n, m)}")
    corr = None if correction_mg_m2_yr is None else np.asarray(correction_mg_m2_yr, dtype=float)
    if corr is not None and corr.shape != (n, m):
        raise ValueError(f"correction_mg_m2_yr has shape {corr.shape}, expected {(n, m)}")
    C = np.empty((n, m, n_years + 1))
    C[:, :, 0] = c0
    applied = np.zeros((n, m, n_years)) if corr is not None else None
    M = mass[:, None]
    for t in range(n_years):
        inp = const + sum((s[t] for s in series.values()), np.zeros((n, m)))
        net = inp - ktot * C[:, :, t]
        nxt = C[:, :, t] + net / M
        if corr is not None:
            nxt_c = np.maximum(nxt + corr / M, 0.0)
            applied[:, :, t] = (nxt_c - nxt) * M
            nxt = nxt_c
        C[:, :, t + 1] = nxt
    res = Projection(C, correction_mg_m2_yr=applied)
    if return_fluxes:
        T = n_years
        for k, v in inputs_mg_m2_yr.items():
            v = np.asarray(v, dtype=float)
            res.inputs_mg_m2_yr[k] = (np.repeat(v[:, :, None], T, axis=2) if v.ndim == 2
                                      else np.moveaxis(v, 0, 2))
        for k, v in output_rates_kg_m2_yr.items():
            res.outputs_mg_m2_yr[k] = v[:, :, None] * C[:, :, :T]
    return res


def run_model(model: FluxModel, *, initial_mg_kg, scenario: dict[str, float], n_years: int,
              start_year: int | None, correction_mg_m2_yr=None, return_fluxes: bool = False) -> Projection:
    """:func:`project` with the inputs of ``model`` under ``scenario``."""
    inp = scenario_inputs(model, scenario=scenario, n_years=n_years, start_year=start_year)
    return project(initial_mg_kg=initial_mg_kg, soil_mass_kg_m2=model.soil_mass_kg_m2, inputs_mg_m2_yr=inp,
                   output_rates_kg_m2_yr=model.output_rates, n_years=n_years,
                   correction_mg_m2_yr=correction_mg_m2_yr, return_fluxes=return_fluxes)


__all__.append("run_model")


def idw_interpolate(*, x_from, y_from, values, x_to, y_to, k: int = 8, power: float = 2.0) -> np.ndarray:
    """Inverse-distance-weighted interpolation of sample values to cells (k nearest neighbours).

    .. math:: \\hat z_0 = \\frac{\\sum_i d_i^{-p} z_i}{\\sum_i d_i^{-p}}

    Used only to give grid cells an initial state when no kriged map is available (Shepard 1968,
    https://doi.org/10.1145/800186.810616). Uses :class:`scipy.spatial.cKDTree`.

    Parameters
    ----------
    x_from, y_from : array-like of float
        Sample coordinates.
    values : array-like of float
        Sample values, (n_from,) or (n_from, n_columns).
    x_to, y_to : array-like of float
        Target coordinates (same unit).
    k : int, default 8
        Number of nearest neighbours.
    power : float, default 2.0
        Distance exponent p.

    Returns
    -------
    ndarray (n_to, n_columns of values).
    """
    from scipy.spatial import cKDTree

    v = np.asarray(values, dtype=float)
    v = v[:, None] if v.ndim == 1 else v
    xy = np.column_stack([x_from, y_from])
    tree = cKDTree(xy)
    kk = min(k, len(xy))
    d, idx = tree.query(np.column_stack([x_to, y_to]), k=kk)
    d = d.reshape(len(d), -1)
    idx = idx.reshape(len(idx), -1)
    w = 1.0 / np.maximum(d, 1e-9) ** power
    w = w / w.sum(axis=1, keepdims=True)
    return np.einsum("ij,ijk->ik", w, v[idx])


# ======================================================================================
# flux budget
# ======================================================================================
def flux_budget(proj: Projection, *, metals: list[str], land_use: np.ndarray, soil_mass_kg_m2,
                years: tuple[int, int] | None = None) -> pd.DataFrame:
    """Mean input and output fluxes by land use and metal, with the mass-balance check.

    Returns a long table: land_use ("all" for the whole domain), metal, flux, direction
    (input/output/correction), mean_mg_m2_yr (mean over cells and years), share_percent (of
    the direction's total), and one row per metal-land use with flux "stock_change" checking
    :math:`M\\,\\Delta C / T`.

    Parameters
    ----------
    proj : Projection
        Projection made with ``return_fluxes=True``.
    metals : list of str
        Metals, in the projection's order.
    land_use : numpy.ndarray
        Land-use class per cell.
    soil_mass_kg_m2 : float or array-like
        Soil mass of the layer per cell (kg/m2).
    years : tuple of int, optional
        Year range [t0, t1) averaged (default: the whole projection).

    Returns
    -------
    pd.DataFrame
        A long table: land_use ("all" for the whole domain), metal, flux, direction
        (input/output/correction), mean_mg_m2_yr (mean over cells and years), share_percent (of the
        direction's total), and one row per metal-land use with flux "stock_change" checking
        :math:`M\\,\\Delta C / T`.
    """
    if not proj.inputs_mg_m2_yr:
        raise ValueError("flux_budget needs a projection made with return_fluxes=True")
    T = next(iter(proj.outputs_mg_m2_yr.values())).shape[2]
    t0, t1 = years if years is not None else (0, T)
    lu = np.asarray(land_use, dtype=object)
    mass = np.asarray(soil_mass_kg_m2, dtype=float).reshape(-1)
    groups = [("all", np.ones(lu.size, bool))] + [(c, lu == c) for c in pd.unique(lu)]
    rows = []
    for gname, mask in groups:
        if not mask.any():
            continue
        for j, metal in enumerate(metals):
            rec = {}
            for direction, d in (("input", proj.inputs_mg_m2_yr), ("output", proj.outputs_mg_m2_yr)):
                tot = 0.0
                for k, arr in d.items():
                    v = float(arr[mask, j, t0:t1].mean())
                    rec[(k, direction)] = v
                    tot += v
                for k in d:
                    v = rec[(k, direction)]
                    rows.append({"land_use": gname, "metal": metal, "flux": k, "direction": direction,
                                 "mean_mg_m2_yr": v, "share_percent": 100 * v / tot if tot > 0 else np.nan})
            if proj.correction_mg_m2_yr is not None:
                rows.append({"land_use": gname, "metal": metal, "flux": "ml_correction", "direction": "correction",
                             "mean_mg_m2_yr": float(proj.correction_mg_m2_yr[mask, j, t0:t1].mean()),
                             "share_percent": np.nan})
            dC = proj.concentration_mg_kg[mask, j, t1] - proj.concentration_mg_kg[mask, j, t0]
            rows.append({"land_use": gname, "metal": metal, "flux": "stock_change", "direction": "balance",
                         "mean_mg_m2_yr": float((mass[mask] * dC).mean() / (t1 - t0)), "share_percent": np.nan})
    return pd.DataFrame(rows)


# ======================================================================================
# ML calibration
# ======================================================================================
@dataclass
class CalibrationResult:
    """ML correction of the net flux.

    Attributes
    ----------
    mode : "hindcast" or "residual".
    metrics : per metal: validation scheme, n_folds, n_train (per fold), n_test (all sites, each
        held out once), out-of-fold RMSE / R2 of the process model and of the calibrated model
        (concentrations, mg/kg; ``*_test``), out-of-fold R2 of the correction itself, in-sample
        RMSE of the final model (``*_train``), mean target flux correction, and ``skilled``
        (out-of-fold RMSE of the calibrated model below the process model's).
    predictions : every site: site, fold, metal, observed, process, calibrated (out-of-fold,
        mg/kg), target and predicted correction (mg/m2/yr; predicted by the model fitted without
        the site's fold).
    importance : per metal and feature, impurity importance of the gradient-boosting model.
    models : metal -> fitted GradientBoostingRegressor (refit on all sites).
    features : feature names used (one-hot for land use).
    fill_values : median of each feature over all sites, substituted for missing feature values
        when the final model predicts (the skill estimate used training-site medians).
    """

    mode: str
    metrics: pd.DataFrame
    predictions: pd.DataFrame
    importance: pd.DataFrame
    models: dict
    features: list[str]
    fill_values: dict = field(default_factory=dict)

    def predict(self, features: pd.DataFrame, metals: list[str]) -> np.ndarray:
        """Flux correction (n, m) in mg/m2/yr for rows of ``features`` (0 for uncalibrated metals)."""
        X = features.reindex(columns=self.features, fill_value=0.0).fillna(self.fill_values).to_numpy(float)
        out = np.zeros((len(features), len(metals)))
        for j, metal in enumerate(metals):
            if metal in self.models:
                out[:, j] = self.models[metal].predict(X)
        return out


def calibration_features(*, x, y, covariates: pd.DataFrame | None, land_use, model: FluxModel,
                         scenario_input: dict[str, np.ndarray], coordinates: bool = False) -> pd.DataFrame:
    """Feature table for the flux-correction model: covariates, land use (one-hot), the process
    model's input fluxes (log1p of the total per metal) and output rate constant, and the
    coordinates only when ``coordinates`` is true (they carry spatial autocorrelation rather than a
    mechanism, so they are not candidate features by default).

    Parameters
    ----------
    x, y : site coordinates (used only with ``coordinates=True``).
    covariates : numeric or categorical covariates (categorical ones are one-hot encoded), or None.
    land_use : class per site.
    model : the process model at the sites.
    scenario_input : input fluxes of the calibration period (:func:`scenario_inputs`).
    coordinates : add ``x`` and ``y`` as features.

    Returns
    -------
    DataFrame, one row per site.
    """
    n = len(np.asarray(land_use))
    feats = (pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float)}) if coordinates
             else pd.DataFrame(index=pd.RangeIndex(n)))
    if covariates is not None:
        for c in covariates.columns:
            s = covariates[c]
            if pd.api.types.is_numeric_dtype(s):
                feats[c] = s.to_numpy(float)
            else:
                for lev in sorted(s.dropna().astype(str).unique()):
                    feats[f"{c}={lev}"] = (s.astype(str) == lev).to_numpy(float)
    for cls in sorted(pd.unique(np.asarray(land_use, dtype=object))):
        feats[f"land_use={cls}"] = (np.asarray(land_use, dtype=object) == cls).astype(float)
    tot = sum((v if v.ndim == 2 else v.mean(axis=0)) for v in scenario_input.values())
    for j, metal in enumerate(model.metals):
        feats[f"input_{metal}"] = np.log1p(tot[:, j])
    feats["k_total"] = sum(model.output_rates.values())[:, 0]
    return feats


__all__.append("calibration_features")


def _rmse(a, b):
    return float(np.sqrt(np.nanmean((np.asarray(a) - np.asarray(b)) ** 2)))


def _r2(obs, pred):
    obs, pred = np.asarray(obs, float), np.asarray(pred, float)
    ss = np.sum((obs - obs.mean()) ** 2)
    return float(1 - np.sum((obs - pred) ** 2) / ss) if ss > 0 else np.nan


def calibration_folds(x, y, *, n_folds: int = 5, scheme: str = "spatial_block", n_blocks: int = 20,
                      seed: int) -> np.ndarray:
    """Cross-validation fold (0..n_folds-1) of each site of the calibration.

    ``spatial_block``: the sites are grouped into ``n_blocks`` k-means clusters of their
    coordinates (scikit-learn ``KMeans``, seeded) and whole clusters are assigned to folds, the
    largest first to the currently smallest fold (:func:`hmlib.ml.spatial_block_folds`), so that a held-out site has no training
    neighbour from its own block (block cross-validation, Roberts et al. 2017,
    https://doi.org/10.1111/ecog.02881). ``random``: a seeded permutation of the sites dealt into
    folds.

    Parameters
    ----------
    x, y : site coordinates.
    n_folds : number of folds (>= 2).
    scheme : ``'spatial_block'`` or ``'random'``.
    n_blocks : number of k-means blocks (spatial_block only; at least ``n_folds``).
    seed : seeds the clustering and the permutation.

    Returns
    -------
    ndarray of int, one fold per site.
    """
    xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    n = len(xy)
    if n_folds < 2 or n < 2 * n_folds:
        raise ValueError(f"need n_folds >= 2 and at least {2 * n_folds} sites, got {n_folds} folds and {n} sites")
    rng = np.random.default_rng(seed)
    if scheme == "random":
        fold = np.empty(n, dtype=int)
        fold[rng.permutation(n)] = np.arange(n) % n_folds
        return fold
    if scheme != "spatial_block":
        raise ValueError(f"cv scheme must be 'spatial_block' or 'random', got {scheme!r}")
    from .ml import spatial_block_folds

    k = int(min(max(n_blocks, n_folds), len(np.unique(xy, axis=0))))
    if k < n_folds:
        raise ValueError(f"spatial-block folds need at least {n_folds} distinct site locations, got {k}")
    fold, _ = spatial_block_folds(xy[:, 0], xy[:, 1], n_folds=n_folds, n_blocks=k, seed=seed)
    return fold


def training_fill(features: pd.DataFrame, train) -> tuple[np.ndarray, dict]:
    """Feature matrix with missing values replaced by each feature's median over the training rows only.

    Parameters
    ----------
    features : one row per site.
    train : indices of the training rows.

    Returns
    -------
    (X, fill) : the filled matrix of all rows (float) and feature -> fill value (0 when a feature
    has no training value).
    """
    f = features.reset_index(drop=True)
    fill = f.iloc[np.asarray(train, dtype=int)].median(numeric_only=True).fillna(0.0).to_dict()
    return f.fillna(fill).to_numpy(float), fill


__all__ += ["calibration_folds", "training_fill"]


def calibrate_net_flux(*, model: FluxModel, features: pd.DataFrame, c_start_mg_kg: np.ndarray,
                       c_end_mg_kg: np.ndarray, years: np.ndarray | int, scenario_input_fn, mode: str,
                       seed: int, n_folds: int = 5, n_estimators: int = 300, max_depth: int = 3,
                       learning_rate: float = 0.05, site_ids=None, x=None, y=None,
                       cv_scheme: str = "spatial_block", n_spatial_blocks: int = 20) -> CalibrationResult:
    """Learn a correction :math:`\\Delta F` to the process model's net flux with gradient boosting.

    For each site the target is the flux that closes the gap between the observed end state
    and the process model run from the start state over :math:`\\Delta t` years:

    .. math::

        \\Delta F = \\frac{M\\,(C^{obs}_{end} - C^{proc}_{end})}{\\Delta t}

    (hindcast: start = first survey, end = second survey; residual mode: start = the region's
    background, end = current survey, :math:`\\Delta t` = ``history_years``). A seeded
    ``GradientBoostingRegressor`` (Friedman 2001; Pedregosa et al. 2011) learns
    :math:`\\Delta F` from the features. Skill is measured by cross-validation
    (:func:`calibration_folds`: whole spatial blocks, or random sites): in each fold the model is
    fitted on the other folds, with missing feature values filled by the *training* medians
    (:func:`training_fill`), and the process model is re-run at the held-out sites with the
    predicted correction; the out-of-fold RMSE of the end-state concentration is compared with the
    process model's. The final model is refit on all sites (fill: medians over all sites).

    Parameters
    ----------
    model : the process model at the sites.
    features : one row per site (see :func:`calibration_features`).
    c_start_mg_kg, c_end_mg_kg : (n, m) start and observed end concentrations.
    years : Δt per site (int or (n,) ints).
    scenario_input_fn : callable(model_subset, n_years) -> inputs dict for the calibration period.
    mode : "hindcast" or "residual" (recorded).
    seed : random seed of the folds and the boosting.
    n_folds : number of cross-validation folds.
    n_estimators, max_depth, learning_rate : boosting settings.
    site_ids : labels of the sites (default 0..n-1).
    x, y : site coordinates (needed for spatial-block folds).
    cv_scheme : ``'spatial_block'`` or ``'random'``.
    n_spatial_blocks : number of spatial blocks.

    Returns
    -------
    :class:`CalibrationResult`.

    References
    ----------
    Friedman, J.H. (2001) Greedy function approximation: a gradient boosting machine.
    Annals of Statistics 29:1189-1232, https://doi.org/10.1214/aos/1013203451
    """
    from sklearn.ensemble import GradientBoostingRegressor

    n, m = c_start_mg_kg.shape
    if len(features) != n or c_end_mg_kg.shape != (n, m):
        raise ValueError(f"features ({len(features)} rows), start {c_start_mg_kg.shape} and end "
                         f"{c_end_mg_kg.shape} must describe the same {n} sites")
    if n < 10:
        raise ValueError(f"calibration needs at least 10 sites, got {n}")
    dt = np.broadcast_to(np.asarray(years, dtype=int), (n,)).copy()
    if np.any(dt < 1):
        raise ValueError("the calibration period must be >= 1 year at every site")
    T = int(dt.max())

    def _end(submodel, c0, corr, dts):
        inp = scenario_input_fn(submodel, T)
        pr = project(initial_mg_kg=c0, soil_mass_kg_m2=submodel.soil_mass_kg_m2, inputs_mg_m2_yr=inp,
                     output_rates_kg_m2_yr=submodel.output_rates, n_years=T, correction_mg_m2_yr=corr)
        return pr.concentration_mg_kg[np.arange(len(dts)), :, dts]

    proc_end = _end(model, c_start_mg_kg, None, dt)
    target = model.soil_mass_kg_m2[:, None] * (c_end_mg_kg - proc_end) / dt[:, None]
    if cv_scheme == "spatial_block" and (x is None or y is None):
        raise ValueError("spatial-block folds need the site coordinates x and y")
    fold = calibration_folds(x if x is not None else np.zeros(n), y if y is not None else np.zeros(n),
                             n_folds=n_folds, scheme=cv_scheme, n_blocks=n_spatial_blocks, seed=seed)
    feats = features.reset_index(drop=True)
    params = dict(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
                  subsample=0.8, min_samples_leaf=8, random_state=seed)
    oof_corr = np.zeros((n, m))
    oof_end = np.zeros((n, m))
    for k in range(n_folds):
        te, tr = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        Xk, _ = training_fill(feats, tr)
        for j in range(m):
            ok = np.isfinite(target[tr, j])
            g = GradientBoostingRegressor(**params).fit(Xk[tr][ok], target[tr, j][ok])
            oof_corr[te, j] = g.predict(Xk[te])
        oof_end[te] = _end(model.subset(te), c_start_mg_kg[te], oof_corr[te], dt[te])
    X, fill = training_fill(feats, np.arange(n))
    full_corr = np.zeros((n, m))
    preds, imps, models = [], [], {}
    for j, metal in enumerate(model.metals):
        ok = np.isfinite(target[:, j])
        g = GradientBoostingRegressor(**params).fit(X[ok], target[ok, j])
        models[metal] = g
        full_corr[:, j] = g.predict(X)
        imps.append(pd.DataFrame({"metal": metal, "feature": list(feats.columns),
                                  "importance": g.feature_importances_}))
    insample_end = _end(model, c_start_mg_kg, full_corr, dt)
    sid = np.asarray(site_ids if site_ids is not None else np.arange(n))
    scheme = (f"{n_folds}-fold spatial-block cross-validation ({n_spatial_blocks} k-means blocks)"
              if cv_scheme == "spatial_block" else f"{n_folds}-fold random cross-validation")
    n_train = int(np.median([np.sum(fold != k) for k in range(n_folds)]))
    rows = []
    for j, metal in enumerate(model.metals):
        obs = c_end_mg_kg[:, j]
        rows.append({"metal": metal, "mode": mode, "validation": scheme, "n_folds": n_folds, "n_train": n_train,
                     "n_test": n,
                     "rmse_process_test": _rmse(obs, proc_end[:, j]), "rmse_calibrated_test": _rmse(obs, oof_end[:, j]),
                     "r2_process_test": _r2(obs, proc_end[:, j]), "r2_calibrated_test": _r2(obs, oof_end[:, j]),
                     "r2_correction_test": _r2(target[:, j], oof_corr[:, j]),
                     "rmse_process_train": _rmse(obs, proc_end[:, j]),
                     "rmse_calibrated_train": _rmse(obs, insample_end[:, j]),
                     "mean_correction_mg_m2_yr": float(np.nanmean(target[:, j]))})
        preds.append(pd.DataFrame({"site": sid, "fold": fold + 1, "metal": metal, "observed": obs,
                                   "process": proc_end[:, j], "calibrated": oof_end[:, j],
                                   "target_correction_mg_m2_yr": target[:, j],
                                   "predicted_correction_mg_m2_yr": oof_corr[:, j]}))
    met = pd.DataFrame(rows)
    met["skilled"] = met["rmse_calibrated_test"] < met["rmse_process_test"]
    return CalibrationResult(mode, met, pd.concat(preds, ignore_index=True),
                             pd.concat(imps, ignore_index=True), models, list(feats.columns), fill)


# ======================================================================================
# carrying capacity
# ======================================================================================
def effective_thresholds(*, guideline_mg_kg: pd.Series, metals: list[str], land_use,
                         sensitivity_weights: dict[str, float]) -> np.ndarray:
    """Guideline per cell and metal adjusted by the receptor-sensitivity weight of the land use.

    .. math:: T_{eff} = T / w_{LU}

    (a weight above 1 marks a more sensitive receptor and lowers the threshold; 1 when not given).

    Parameters
    ----------
    guideline_mg_kg : Series
        Guideline per metal (mg/kg).
    metals : list of str
        Metals, in column order.
    land_use : array-like
        Land-use class per cell.
    sensitivity_weights : dict of str to float
        Land use -> weight (> 0).

    Returns
    -------
    ndarray (n, m); NaN for metals without a guideline.
    """
    lu = np.asarray(land_use, dtype=object)
    w = np.array([float(sensitivity_weights.get(c, 1.0)) for c in lu])
    if np.any(~(w > 0)):
        raise ValueError("sensitivity weights must be > 0")
    T = guideline_mg_kg.reindex(metals).to_numpy(float)
    return T[None, :] / w[:, None]


def carrying_capacity(concentration_mg_kg: np.ndarray, thresholds_mg_kg: np.ndarray) -> np.ndarray:
    """Remaining capacity :math:`T_{eff} - C` (mg/kg) per cell, metal (and year); negative = overloaded.

    Parameters
    ----------
    concentration_mg_kg : numpy.ndarray
        Concentration (mg/kg), (n, m) or (n, m, T+1).
    thresholds_mg_kg : numpy.ndarray
        Effective thresholds (mg/kg), (n, m).

    Returns
    -------
    numpy.ndarray
        Remaining capacity (mg/kg), shaped like ``concentration_mg_kg``.
    """
    c = np.asarray(concentration_mg_kg, float)
    t = np.asarray(thresholds_mg_kg, float)
    return (t[..., None] if c.ndim == t.ndim + 1 else t) - c


def mass_capacity_kg_ha(headroom_mg_kg, soil_mass_kg_m2):
    """Mass carrying capacity: the metal mass per hectare the plough layer can still take.

    .. math::

        Q = M\\,(T_{eff} - C) \\times 10^{-2}, \\qquad M = d\\,\\rho_b

    with :math:`M` in kg/m2 and :math:`T_{eff} - C` in mg/kg, so :math:`M (T_{eff} - C)` is in
    mg/m2 and the factor :math:`10^4\\,\\mathrm{m^2/ha} \\times 10^{-6}\\,\\mathrm{kg/mg} = 10^{-2}`
    gives kg/ha (the soil environmental capacity :math:`M (S - C)` of the carrying-capacity
    framework this module follows; see the module docstring).
    Example: Pb threshold 85 mg/kg, 40 mg/kg today, 0.2 m at 1300 kg/m3 (M = 260 kg/m2):
    45 x 260 = 11 700 mg/m2 = 117 kg/ha.

    Parameters
    ----------
    headroom_mg_kg : :math:`T_{eff} - C` (negative when overloaded), any shape.
    soil_mass_kg_m2 : :math:`M`, broadcastable to ``headroom_mg_kg``.

    Returns
    -------
    ndarray (kg/ha), negative when overloaded.
    """
    h = np.asarray(headroom_mg_kg, dtype=float)
    mass = np.asarray(soil_mass_kg_m2, dtype=float)
    if np.any(~(mass > 0)):
        raise ValueError("soil_mass_kg_m2 must be > 0")
    return h * mass * 1e-2


def years_to_overload(concentration_mg_kg: np.ndarray, thresholds_mg_kg: np.ndarray) -> np.ndarray:
    """First year index at which :math:`C \\ge T_{eff}` (0: already overloaded; inf: not within the horizon).

    Parameters
    ----------
    concentration_mg_kg : (n, m, T+1).
    thresholds_mg_kg : (n, m).

    Returns
    -------
    numpy.ndarray
        (n, m) first year index (float; inf when never, NaN without threshold).
    """
    over = np.asarray(concentration_mg_kg) >= np.asarray(thresholds_mg_kg)[..., None]
    first = np.argmax(over, axis=2).astype(float)
    first[~over.any(axis=2)] = np.inf
    first[np.isnan(thresholds_mg_kg)] = np.nan
    return first


def overload_summary(*, concentration_mg_kg: np.ndarray, thresholds_mg_kg: np.ndarray, land_use, metals: list[str],
                     years: list[int], scenario: str, soil_mass_kg_m2=None) -> pd.DataFrame:
    """Carrying capacity and overload by land use at reported years.

    Parameters
    ----------
    concentration_mg_kg : (n, m, T+1) projected concentrations.
    thresholds_mg_kg : (n, m) sensitivity-adjusted thresholds.
    land_use : (n,) class per cell.
    metals : metal names of the second axis.
    years : year indices reported.
    scenario : scenario name (copied into the rows).
    soil_mass_kg_m2 : (n,) soil mass per area; adds the mass capacity (:func:`mass_capacity_kg_ha`).

    Returns
    -------
    DataFrame with rows metal, scenario, year, land_use ("all" for the domain), n_cells,
    mean_threshold_mg_kg, mean_concentration_mg_kg, share_overloaded (fraction 0-1),
    median_years_to_overload (median over cells, cells never overloaded within the horizon
    counted as beyond it; NaN when the median lies beyond the horizon), mean_capacity_mg_kg and
    median_capacity_mg_kg (headroom :math:`T_{eff} - C`, negative = overloaded), and with
    ``soil_mass_kg_m2`` mean_capacity_kg_ha and median_capacity_kg_ha.
    """
    lu = np.asarray(land_use, dtype=object)
    mass = None if soil_mass_kg_m2 is None else np.asarray(soil_mass_kg_m2, dtype=float).reshape(-1)
    yto = years_to_overload(concentration_mg_kg, thresholds_mg_kg)
    rows = []
    for gname, mask in [("all", np.ones(lu.size, bool))] + [(c, lu == c) for c in sorted(pd.unique(lu))]:
        for j, metal in enumerate(metals):
            if np.isnan(thresholds_mg_kg[mask, j]).all():
                continue
            med = float(np.median(yto[mask, j]))
            for yr in years:
                c = concentration_mg_kg[mask, j, yr]
                t = thresholds_mg_kg[mask, j]
                r = {"metal": metal, "scenario": scenario, "year": int(yr), "land_use": gname,
                     "share_overloaded": float(np.mean(c >= t)),
                     "median_years_to_overload": med if np.isfinite(med) else np.nan,
                     "n_cells": int(mask.sum()), "mean_threshold_mg_kg": float(np.mean(t)),
                     "mean_concentration_mg_kg": float(np.mean(c)),
                     "mean_capacity_mg_kg": float(np.mean(t - c)), "median_capacity_mg_kg": float(np.median(t - c))}
                if mass is not None:
                    q = mass_capacity_kg_ha(t - c, mass[mask])
                    r["mean_capacity_kg_ha"] = float(np.mean(q))
                    r["median_capacity_kg_ha"] = float(np.median(q))
                rows.append(r)
    return pd.DataFrame(rows)


# ======================================================================================
# uncertainty
# ======================================================================================
@dataclass
class MonteCarloResult:
    """Monte Carlo bands.

    Attributes
    ----------
    landuse_bands : scenario, metal, land_use, year, p5, p50, p95 of the mean concentration (mg/kg).
    cell_bands : scenario, cell, metal, year (reported years), p5, p50, p95 (mg/kg).
    overload_bands : scenario, metal, land_use, year, p5, p50, p95 of the overloaded share.
    multipliers : the drawn multipliers (one row per iteration).
    """

    landuse_bands: pd.DataFrame
    cell_bands: pd.DataFrame
    overload_bands: pd.DataFrame
    multipliers: pd.DataFrame


def relevant_groups(model: FluxModel) -> list[str]:
    """Uncertain parameter groups that affect ``model`` (e.g. no ``sediment`` without sediment deposition)."""
    out = []
    for g in UNCERTAIN_GROUPS:
        if g in ("deposition", "agricultural", "sediment"):
            comps = [k for k, v in INPUT_GROUP.items() if v == g]
            used = any(np.any(model.constant_inputs.get(k, 0) != 0) for k in comps)
            if g == "deposition":
                used = used or bool(np.any(model.point_deposition != 0))
        else:
            name = {"kd": "leaching", "percolation": "leaching", "soil_loss": "erosion",
                    "transfer_factor": "crop_offtake"}[g]
            used = bool(np.any(model.output_rates[name] != 0))
        if used:
            out.append(g)
    return out


def monte_carlo(*, model: FluxModel, initial_mg_kg: np.ndarray, scenarios: dict[str, dict[str, float]],
                n_years: int, start_year: int | None, thresholds_mg_kg: np.ndarray, report_years: list[int],
                gsd: dict[str, float], n_iter: int, rng: np.random.Generator, correction_mg_m2_yr=None,
                cell_ids=None) -> MonteCarloResult:
    """Monte Carlo over lognormal multipliers of the uncertain parameter groups.

    Each iteration draws one multiplier per group, :math:`\\ln m_g \\sim N(0, \\ln^2 GSD_g)`
    (median 1), scales the process model (:meth:`FluxModel.scaled`) and projects every
    scenario; the P5/P50/P95 over iterations are reported (Helton & Davis 2003,
    https://doi.org/10.1016/S0951-8320(03)00058-9 for sampling-based uncertainty analysis).

    Parameters
    ----------
    model : FluxModel
        Process model.
    initial_mg_kg : numpy.ndarray
        Initial concentration per cell and metal (mg/kg).
    scenarios : dict of str to dict
        Scenario name -> multipliers per scenario group.
    n_years : int
        Projection horizon (years).
    start_year : int or None
        Calendar year of year 0.
    thresholds_mg_kg : numpy.ndarray
        Effective thresholds (n, m) (mg/kg).
    report_years : list of int
        Year indices reported per cell and for the overloaded share.
    gsd : dict of str to float
        Geometric standard deviation per parameter group (<= 1: fixed).
    n_iter : int
        Number of iterations.
    rng : numpy.random.Generator
        Random generator.
    correction_mg_m2_yr : numpy.ndarray, optional
        Calibrated flux correction (mg/m2/yr).
    cell_ids : array-like, optional
        Cell identifiers (default 0..n-1).

    Returns
    -------
    MonteCarloResult
        P5/P50/P95 bands per land use (mg/kg), per cell (mg/kg) and of the overloaded share, and the
        drawn multipliers.
    """
    groups = [g for g in relevant_groups(model) if gsd.get(g, 1.0) > 1.0]
    draws = np.exp(rng.standard_normal((n_iter, len(groups))) * np.log([gsd[g] for g in groups]))
    mult = pd.DataFrame(draws, columns=groups)
    lu = np.asarray(model.land_use, dtype=object)
    classes = ["all"] + sorted(pd.unique(lu))
    masks = [np.ones(lu.size, bool)] + [lu == c for c in classes[1:]]
    cells = np.asarray(cell_ids if cell_ids is not None else np.arange(model.n))
    lub, cb, ob = [], [], []
    for sname, spec in scenarios.items():
        means = np.empty((n_iter, len(classes), len(model.metals), n_years + 1))
        shares = np.empty((n_iter, len(classes), len(model.metals), len(report_years)))
        atyears = np.empty((n_iter, model.n, len(model.metals), len(report_years)), dtype=np.float32)
        for i in track(range(n_iter), desc=f"accumulation Monte Carlo ({sname})", unit="run"):
            sm = model.scaled(dict(zip(groups, draws[i])))
            C = run_model(sm, initial_mg_kg=initial_mg_kg, scenario=spec, n_years=n_years, start_year=start_year,
                          correction_mg_m2_yr=correction_mg_m2_yr).concentration_mg_kg
            atyears[i] = C[:, :, report_years]
            for g, mask in enumerate(masks):
                means[i, g] = C[mask].mean(axis=0)
                shares[i, g] = (C[mask][:, :, report_years] >= thresholds_mg_kg[mask][:, :, None]).mean(axis=0)
        q = np.percentile(means, [5, 50, 95], axis=0)
        qs = np.percentile(shares, [5, 50, 95], axis=0)
        qc = np.percentile(atyears, [5, 50, 95], axis=0)
        for g, cls in enumerate(classes):
            for j, metal in enumerate(model.metals):
                lub.append(pd.DataFrame({"scenario": sname, "metal": metal, "land_use": cls,
                                         "year": np.arange(n_years + 1), "p5": q[0, g, j], "p50": q[1, g, j],
                                         "p95": q[2, g, j]}))
                if not np.isnan(thresholds_mg_kg[masks[g], j]).all():
                    ob.append(pd.DataFrame({"scenario": sname, "metal": metal, "land_use": cls, "year": report_years,
                                            "p5": qs[0, g, j], "p50": qs[1, g, j], "p95": qs[2, g, j]}))
        for j, metal in enumerate(model.metals):
            for k, yr in enumerate(report_years):
                cb.append(pd.DataFrame({"scenario": sname, "cell": cells, "metal": metal, "year": yr,
                                        "p5": qc[0, :, j, k], "p50": qc[1, :, j, k], "p95": qc[2, :, j, k]}))
    return MonteCarloResult(pd.concat(lub, ignore_index=True), pd.concat(cb, ignore_index=True),
                            pd.concat(ob, ignore_index=True) if ob else pd.DataFrame(), mult)


def oat_sensitivity(*, model: FluxModel, initial_mg_kg: np.ndarray, scenario: dict[str, float], n_years: int,
                    start_year: int | None, gsd: dict[str, float], correction_mg_m2_yr=None) -> pd.DataFrame:
    """One-at-a-time sensitivity: each parameter group multiplied and divided by its GSD.

    Returns metal, parameter, low_change_percent, high_change_percent: the change of the
    domain-mean concentration at the horizon relative to the central run (percent).

    Parameters
    ----------
    model : FluxModel
        Process model.
    initial_mg_kg : numpy.ndarray
        Initial concentration per cell and metal (mg/kg).
    scenario : dict of str to float
        Scenario multipliers.
    n_years : int
        Projection horizon (years).
    start_year : int or None
        Calendar year of year 0.
    gsd : dict of str to float
        Geometric standard deviation per parameter group (<= 1: skipped).
    correction_mg_m2_yr : numpy.ndarray, optional
        Calibrated flux correction (mg/m2/yr).

    Returns
    -------
    pd.DataFrame
        Metal, parameter, low_change_percent, high_change_percent: the change of the domain-mean
        concentration at the horizon relative to the central run (percent).
    """
    base = run_model(model, initial_mg_kg=initial_mg_kg, scenario=scenario, n_years=n_years, start_year=start_year,
                     correction_mg_m2_yr=correction_mg_m2_yr).concentration_mg_kg[:, :, -1].mean(axis=0)
    rows = []
    for g in relevant_groups(model):
        f = float(gsd.get(g, 1.0))
        if f <= 1.0:
            continue
        res = {}
        for label, mult in (("low", 1.0 / f), ("high", f)):
            C = run_model(model.scaled({g: mult}), initial_mg_kg=initial_mg_kg, scenario=scenario, n_years=n_years,
                          start_year=start_year, correction_mg_m2_yr=correction_mg_m2_yr).concentration_mg_kg
            res[label] = C[:, :, -1].mean(axis=0)
        for j, metal in enumerate(model.metals):
            rows.append({"metal": metal, "parameter": g, "factor": f,
                         "low_change_percent": 100 * (res["low"][j] / base[j] - 1) if base[j] > 0 else np.nan,
                         "high_change_percent": 100 * (res["high"][j] / base[j] - 1) if base[j] > 0 else np.nan})
    return pd.DataFrame(rows)


# ======================================================================================
# report text and figures
# ======================================================================================
def methods_text(*, options: AccumulationOptions, domain: str, n_cells: int, calibration_mode: str,
                 n_sources: int, guideline: str, threshold: str, soil_layer: dict | None = None,
                 correction_applied: bool = False, background_source: str | None = None,
                 feature_labels: dict[str, str] | None = None) -> str:
    """Methods paragraph (pandoc markdown with formulas and citations).

    Parameters
    ----------
    options : the stage options.
    domain : "grid" or "samples".
    n_cells : number of cells or samples projected.
    calibration_mode : "hindcast", "residual" or "none" (as run).
    n_sources : number of point sources.
    guideline, threshold : guideline set and threshold name.
    soil_layer : :func:`soil_layer_values` (default: from the options).
    correction_applied : whether the learned correction entered the projections.
    background_source : residual calibration: the background used (:func:`region_background`).
    feature_labels : reader's names of calibration features (the region's covariate labels); others are
        named by :func:`flux_label`.

    Returns
    -------
    str (markdown).
    """
    o = options
    labels = feature_labels or {}
    lay = soil_layer or soil_layer_values(o.soil_layer, depth_m=o.depth_m, bulk_density_kg_m3=o.bulk_density_kg_m3)
    M = lay["soil_mass_kg_m2"]
    depth_cite = "[@orgiazzi2018lucas]" if o.depth_m is None else "(set for this region)"
    bd_cite = ("(an assumed value for mineral arable topsoil, within the range measured in European topsoils "
               "[@chen2024bulkdensity])" if o.bulk_density_kg_m3 is None else "(set for this region)")
    scen = "; ".join(f"*{k.replace('_', ' ')}*: " + (", ".join(f"{a.replace('_', ' ')} × {b:g}" for a, b in v.items())
                                                     or "current rates")
                     for k, v in o.scenarios.items())
    unit_word = "cells" if domain == "grid" else "samples"
    validation = (f"{o.n_folds}-fold spatial-block cross-validation was used: the sites were grouped into "
                  f"{o.n_spatial_blocks} k-means clusters of their coordinates and whole clusters were held out "
                  "together, so that a held-out site has no training neighbour in its block [@roberts2017cv]"
                  if o.cv_scheme == "spatial_block" else
                  f"{o.n_folds}-fold random cross-validation was used (not spatially blocked, so the skill may be "
                  "optimistic where neighbouring sites share the missing flux)")
    feats = ("the covariates " + ", ".join(labels.get(f) or flux_label(f) for f in o.calibration_features)
             if o.calibration_features
             else "no covariates")
    feats += ", land use and the modelled fluxes" + (" and the coordinates" if o.calibration_coordinates else "")
    txt = [
        "**Mass balance.** The metal stock of the plough layer was followed year by year "
        f"per {'grid cell' if domain == 'grid' else 'sample'} ({n_cells} {unit_word}) "
        "with a process model of input and output fluxes, optionally coupled to a machine-learning correction, "
        "following the framework of the 2026 accumulation study [@framework2026accumulation]:",
        "$$C_{t+1} = C_t + \\frac{\\sum_i I_{i,t} - \\sum_j k_j\\,C_t + \\Delta F}{M}, \\qquad M = d\\,\\rho_b$$",
        f"with depth $d$ = {lay['depth_m']:g} m {depth_cite} and bulk density $\\rho_b$ = "
        f"{lay['bulk_density_kg_m3']:g} kg/m³ {bd_cite} ($M$ = {M:g} kg/m²), fluxes in mg/m²/yr and $\\Delta F$ the "
        "learned correction where one is applied.",
        "**Inputs.** "
        + (f"Atmospheric deposition from {n_sources} point source{'s' if n_sources != 1 else ''} used a Gaussian "
           f"plume with ground reflection and Briggs {o.terrain} dispersion coefficients by Pasquill-Gifford "
           "stability class [@briggs1973; @seinfeld2016], averaged over the wind rose in the sector-averaged "
           "long-term form [@turner1970]: "
           "$\\bar C(r,0) = \\sqrt{2/\\pi}\\, f Q / (u\\,\\sigma_z\\,r\\,\\Delta\\theta)\\, "
           "\\exp(-H^2/2\\sigma_z^2)$; deposition is $v_d \\bar C(r,0) + \\Lambda f_{rain} \\int \\bar C dz$ "
           "(dry deposition velocities and scavenging coefficients from Sehmel (1980) and Seinfeld & Pandis (2016) "
           f"[@sehmel1980; @seinfeld2016]; rain {100 * o.rain_fraction:g} % of the time; no plume depletion or "
           "plume rise). " if n_sources else "No point sources were given. ")
        + ("Regional background deposition: "
           + ", ".join(f"{k} {v:g}" for k, v in o.background_deposition_g_ha_yr.items()) + " g/ha/yr. "
           if o.background_deposition_g_ha_yr else "")
        + "Agricultural inputs (fertilizer, manure, irrigation) by land use came from "
          "@nicholson2003"
        + ("; floodplain sediment deposition by class "
           f"({', '.join(f'{k}: {v:g}' for k, v in o.sediment_deposition_kg_m2_yr.items())} kg/m²/yr) times the "
           "metal concentration of the deposited sediment" if o.sediment_class_column else "") + ".",
        "**Outputs** are linear in $C$: leaching $P\\,C/K_d$ and dissolved runoff $R\\,C/K_d$ "
        f"(percolation $P$ = {o.percolation_mm_yr:g} mm/yr, runoff by land use, $K_d$ from "
        "@allison2005kd), erosion $A \\cdot ER \\cdot C$ (RUSLE soil loss $A = R K LS C P$ by land use "
        "[@renard1997], enrichment ratios from @quinton2007) and crop offtake "
        "$Y \\cdot TF \\cdot C$ (transfer factors from @kabatapendias2011).",
    ]
    if calibration_mode == "hindcast":
        txt.append(
            "**Calibration (validation first).** The process model was run from the first to the second survey at "
            "every site; the gap to the observed second survey, converted to a flux "
            "$\\Delta F = M (C^{obs} - C^{proc})/\\Delta t$, was learned from " + feats
            + f" by gradient boosting [@friedman2001; @pedregosa2011sklearn] ({o.n_estimators} trees, depth "
            f"{o.max_depth}, learning rate {o.learning_rate:g}). To measure skill, {validation}; in each fold the model "
            "was fitted on the other folds (missing feature values filled with training-site medians) and the "
            "held-out error of the second survey was compared between the process model alone and the calibrated "
            "model. "
            "The model was then refit on all sites. "
            + ("The correction is added to the projections only for metals where it lowered the held-out error."
               if correction_applied else "The correction was not added to the projections."))
    elif calibration_mode == "residual":
        txt.append(
            "**Residual diagnostic.** The process model was run for "
            f"{o.history_years} years from the region's own background ({background_source or 'regional background'}) "
            "to the survey; the residual of the survey, converted to a flux "
            f"$\\Delta F = M (C^{{obs}} - C^{{proc}})/{o.history_years}$, was learned from " + feats
            + f" by gradient boosting [@friedman2001; @pedregosa2011sklearn] and validated as above ({validation}). "
            "This residual is a diagnostic of what the process model does not explain (historic inputs, other "
            "sources, or a background that is itself uncertain), not a measured present-day flux: "
            + ("it was nevertheless added to the projections as a constant future flux, as set for this region."
               if correction_applied else "it is not added to the projections."))
    else:
        txt.append("**Calibration.** No machine-learning calibration was made: the region has no second survey "
                   "pairing the sites, and the residual diagnostic was not requested or had no regional "
                   "background; projections follow the process model alone.")
    txt.append(
        f"**Scenarios** over {o.horizon_years} years: {scen}. "
        f"**Carrying capacity** is given both as the concentration headroom $T/w_{{LU}} - C_t$ (mg/kg), with $T$ the "
        f"{threshold_label(threshold)} of {reference_label(guideline)} and $w_{{LU}}$ the receptor-sensitivity "
        "weight of the land use"
        + (" (" + ", ".join(f"{k} {v:g}" for k, v in o.sensitivity_weights.items()) + ")"
           if o.sensitivity_weights else " (1 for all land uses)")
        + ", and as the mass the plough layer can still take, $Q = M\\,(T/w_{LU} - C_t)$, in kg/ha "
        f"($M$ = {M:g} kg/m², so 1 mg/kg of headroom is {M * 1e-2:g} kg/ha); a "
        f"{'cell' if domain == 'grid' else 'sample'} is overloaded when $C_t \\ge T/w$, and the years to overload "
        "are the first such year. "
        f"**Uncertainty**: {o.n_monte_carlo} Monte Carlo runs (reproducible random draws) with lognormal multipliers (median 1; geometric SD "
        + ", ".join(f"{GROUP_LABELS.get(k, k.replace('_', ' '))} {v:g}" for k, v in o.uncertainty_gsd.items())
        + ") give P5/P50/P95 bands [@helton2003]; a one-at-a-time analysis multiplies and divides each group by "
          "its geometric SD.")
    return "\n\n".join(txt)


#: reader's names of the fluxes, parameter groups and calibration features
FLUX_LABELS = {"point_deposition": "point-source deposition", "background_deposition": "background deposition",
               "fertilizer": "fertilizer", "manure": "manure", "irrigation": "irrigation water",
               "sediment": "sediment deposition", "leaching": "leaching", "runoff": "runoff (dissolved)",
               "erosion": "erosion", "crop_offtake": "crop offtake", "ml_correction": "learned correction",
               "stock_change": "stock change"}
GROUP_LABELS = {"deposition": "deposition", "agricultural": "agricultural inputs", "sediment": "sediment deposition",
                "kd": "partition coefficient Kd", "percolation": "percolation", "soil_loss": "soil loss",
                "transfer_factor": "soil-plant transfer factor"}


def flux_label(name: str) -> str:
    """Reader's name of a flux, parameter group or calibration feature (``point_deposition`` -> "point-source
    deposition", ``input_Cd`` -> "modelled Cd input", ``road_dist_m`` -> "road dist (m)").

    Parameters
    ----------
    name : str
        Internal name.

    Returns
    -------
    str
        Words for the report.
    """
    if name in FLUX_LABELS:
        return FLUX_LABELS[name]
    if name in GROUP_LABELS:
        return GROUP_LABELS[name]
    if name.lower() == "ph":
        return "pH"
    if name.startswith("input_"):
        return f"modelled {name[6:]} input"
    if name.startswith("output_"):
        return f"modelled {name[7:]} output rate"
    if name.startswith("lu_"):
        return f"land use {name[3:].replace('_', ' ')}"
    for suffix, unit in (("_m", "m"), ("_km", "km"), ("_percent", "%"), ("_pct", "%")):
        if name.endswith(suffix):
            words = name[: -len(suffix)].replace("_", " ").replace(" dist", " distance").replace("dist ", "distance ")
            return f"{words} ({unit})"
    return name.replace("_", " ")


def share_range_text(p5: float, p95: float, *, label: str = "Monte Carlo P5–P95") -> str:
    """A Monte Carlo band of a share as printed: "Monte Carlo P5–P95 14–27 %", or one value when both ends
    round to the same per cent ("1 %", not "1–1 %").

    Parameters
    ----------
    p5, p95 : float
        The band's ends as fractions.
    label : str
        Words before the numbers.

    Returns
    -------
    str
    """
    a, b = f"{100 * p5:.0f}", f"{100 * p95:.0f}"
    return f"{label} {a} %" if a == b else f"{label} {a}–{b} %"


def threshold_label(name: str | None) -> str:
    """Reader's name of a guideline threshold (``target`` -> "target value", ``risk_screening`` -> "risk screening
    value").

    Parameters
    ----------
    name : str or None
        threshold_name of the guideline set.

    Returns
    -------
    str
        Words for the report.
    """
    if not name:
        return "guideline value"
    words = str(name).replace("_", " ")
    return words if words.endswith("value") else f"{words} value"


def _lu_colors(classes):
    pal = {"cultivated": "#d4a017", "grassland": "#6aa84f", "orchard": "#b45f06", "forest": "#274e13",
           "residential": "#cc0000", "industrial": "#674ea7", "other": "#999999", "all": "#000000"}
    return {c: pal.get(c, "#555555") for c in classes}


def plot_timeseries(bands: pd.DataFrame, *, scenario: str, metals: list[str], thresholds: dict[str, float]):
    """Mean concentration per land use over time with the Monte Carlo P5-P95 band, one panel per metal.

    Parameters
    ----------
    bands : DataFrame
        Land-use bands (scenario, metal, land_use, year, p5, p50, p95; mg/kg).
    scenario : str
        Scenario plotted.
    metals : list of str
        Metals, one panel each.
    thresholds : dict of str to float
        Metal -> threshold (mg/kg), drawn dashed.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per metal.
    """
    import matplotlib.pyplot as plt

    n = len(metals)
    ncol = min(n, 3)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(7, 2.3 * nrow + 0.4), squeeze=False)
    sub = bands[bands["scenario"] == scenario]
    classes = [c for c in sub["land_use"].unique() if c != "all"]
    col = _lu_colors(classes)
    for ax, metal in zip(axes.flat, metals):
        for cls in classes:
            s = sub[(sub["metal"] == metal) & (sub["land_use"] == cls)]
            ax.fill_between(s["year"], s["p5"], s["p95"], color=col[cls], alpha=0.2, lw=0)
            ax.plot(s["year"], s["p50"], color=col[cls], lw=1.3, label=cls)
        t = thresholds.get(metal)
        if t is not None and np.isfinite(t):
            ax.axhline(t, color="k", ls="--", lw=0.8, label="threshold (before sensitivity weights)")
        ax.set_title(metal)
        ax.set_xlabel("years after survey")
        ax.set_ylabel("mg/kg")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    h, lab = axes.flat[0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=min(len(lab), 4), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def plot_maps(*, x, y, concentration_mg_kg: np.ndarray, thresholds_mg_kg: np.ndarray, years: list[int], metal: str,
              metals: list[str], sources: pd.DataFrame | None = None, grid: bool = True, crs: str | None = "local",
              coordinate_unit: str = "m"):
    """Maps of C / T_eff for one metal at year 0 and the reported years (baseline).

    Parameters
    ----------
    x, y : array-like of float
        Cell or sample coordinates.
    concentration_mg_kg : numpy.ndarray
        Projected concentrations (n, m, T+1) (mg/kg).
    thresholds_mg_kg : numpy.ndarray
        Effective thresholds (n, m) (mg/kg).
    years : list of int
        Year indices mapped after year 0.
    metal : str
        Metal mapped.
    metals : list of str
        Metals, in array order.
    sources : DataFrame, optional
        Point sources (x, y), drawn as triangles.
    grid : bool, default True
        Draw grid cells (squares) rather than points.
    crs, coordinate_unit : the coordinate system (for the note, scale bar and north arrow).

    Returns
    -------
    matplotlib.figure.Figure
        One map of C / T_eff per year, laid out for the region's shape.
    """
    from matplotlib.colors import TwoSlopeNorm

    from .plots import MIN_FONT_PT, decorate_map, map_axes, print_style

    j = metals.index(metal)
    yrs = [0] + list(years)
    ratio = concentration_mg_kg[:, j, :] / thresholds_mg_kg[:, j][:, None]
    vmax = max(float(np.nanpercentile(ratio[:, yrs], 99)), 1.05)
    norm = TwoSlopeNorm(vmin=0, vcenter=1.0, vmax=vmax)
    xx = np.asarray(x, float)
    yy = np.asarray(y, float)
    with print_style():
        fig, axes = map_axes(len(yrs), x=xx, y=yy, max_height_in=4.8)
        size = 6.0
        if grid:
            ux = np.unique(np.round(xx, 9))
            step = np.median(np.diff(ux)) if len(ux) > 1 else 1.0
            x0, x1 = axes[0].get_xlim()
            w_pt = axes[0].get_position().width * fig.get_figwidth() * 72
            size = max((step / (x1 - x0) * w_pt) ** 2, 0.5)
        for ax, yr in zip(axes, yrs):
            sc = ax.scatter(xx, yy, c=ratio[:, yr], s=size if grid else 14, marker="s" if grid else "o",
                            cmap="RdYlGn_r", norm=norm, linewidths=0)
            if sources is not None and len(sources):
                ax.plot(sources["x"], sources["y"], "k^", ms=5, label="point source")
            ax.set_title("at the survey" if yr == 0 else f"after {yr} years", fontsize=8)
            decorate_map(ax, crs=crs, coordinate_unit=coordinate_unit, note=ax is axes[0])
        cb = fig.colorbar(sc, ax=axes, shrink=0.8)
        cb.set_label(f"{metal} / threshold (above 1: overloaded)", fontsize=MIN_FONT_PT)
        cb.ax.tick_params(labelsize=MIN_FONT_PT)
    return fig


def plot_flux_budget(budget: pd.DataFrame, *, metals: list[str]):
    """Stacked bars of mean inputs (positive) and outputs (negative) by land use, one panel per metal.

    Parameters
    ----------
    budget : DataFrame
        Table from :func:`flux_budget`.
    metals : list of str
        Metals, one panel each.

    Returns
    -------
    matplotlib.figure.Figure
        Stacked bars of fluxes (mg/m2/yr) by land use.
    """
    import matplotlib.pyplot as plt

    n = len(metals)
    ncol = min(n, 4)  # four metals in one row: half the height of a 3 + 1 layout
    nrow = int(np.ceil(n / ncol))
    b = budget[budget["direction"].isin(["input", "output"]) & (budget["land_use"] != "all")]
    fluxes = list(dict.fromkeys(b["flux"]))
    leg_rows = int(np.ceil(len(fluxes) / 4))
    leg_in = 0.2 * leg_rows + 0.1
    fig_h = 2.4 * nrow + leg_in
    fig, axes = plt.subplots(nrow, ncol, figsize=(7, fig_h), squeeze=False)
    cmap = plt.get_cmap("tab10")
    colors = {f: cmap(i % 10) for i, f in enumerate(fluxes)}
    for ax, metal in zip(axes.flat, metals):
        s = b[b["metal"] == metal]
        classes = list(dict.fromkeys(s["land_use"]))
        pos = np.zeros(len(classes))
        neg = np.zeros(len(classes))
        for f in fluxes:
            v = s[s["flux"] == f].set_index("land_use")["mean_mg_m2_yr"].reindex(classes).fillna(0).to_numpy()
            sign = -1 if (s[s["flux"] == f]["direction"] == "output").any() else 1
            if sign > 0:
                ax.bar(classes, v, bottom=pos, color=colors[f], label=flux_label(f))
                pos += v
            else:
                ax.bar(classes, -v, bottom=neg, color=colors[f], label=flux_label(f))
                neg -= v
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(metal)
        if ax in axes[:, 0]:
            ax.set_ylabel("mg/m²/yr")
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    h, lab = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, leg_in / fig_h, 1, 1))
    fig.legend(h, lab, loc="lower center", ncol=4, fontsize=7, frameon=False)
    return fig


def plot_calibration(pred: pd.DataFrame, *, metals: list[str]):
    """Observed vs predicted end-state concentrations at held-out sites: process model and calibrated model.

    Parameters
    ----------
    pred : DataFrame
        Held-out predictions (metal, observed, process, calibrated; mg/kg).
    metals : list of str
        Metals, one panel each.

    Returns
    -------
    matplotlib.figure.Figure
        One scatter panel per metal.
    """
    import matplotlib.pyplot as plt

    n = len(metals)
    fig, axes = plt.subplots(1, n, figsize=(min(7, 2.0 * n + 0.5), 2.4), squeeze=False)
    for ax, metal in zip(axes.flat, metals):
        s = pred[pred["metal"] == metal]
        ax.scatter(s["observed"], s["process"], s=8, color="#999999", label="process model")
        ax.scatter(s["observed"], s["calibrated"], s=8, color="#1f77b4", label="calibrated, out of fold")
        lo, hi = float(np.nanmin(s[["observed", "process", "calibrated"]].to_numpy())), \
            float(np.nanmax(s[["observed", "process", "calibrated"]].to_numpy()))
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
        ax.set_title(metal)
        ax.set_xlabel("observed (mg/kg)")
    axes.flat[0].set_ylabel("predicted (mg/kg)")
    axes.flat[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def plot_sensitivity(oat: pd.DataFrame, *, metals: list[str]):
    """Tornado chart of the one-at-a-time sensitivity (percent change of the mean at the horizon).

    Parameters
    ----------
    oat : DataFrame
        Table from :func:`oat_sensitivity`.
    metals : list of str
        Metals, one panel each.

    Returns
    -------
    matplotlib.figure.Figure
        One tornado panel per metal.
    """
    import matplotlib.pyplot as plt

    n = len(metals)
    ncol = min(n, 3)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(7, 2.2 * nrow + 0.3), squeeze=False)
    for ax, metal in zip(axes.flat, metals):
        s = oat[oat["metal"] == metal].copy()
        s["span"] = (s["high_change_percent"] - s["low_change_percent"]).abs()
        s = s.sort_values("span")
        yy = np.arange(len(s))
        ax.barh(yy, s["low_change_percent"], color="#6fa8dc", label="parameter ÷ its geometric SD")
        ax.barh(yy, s["high_change_percent"], color="#e06666", label="parameter × its geometric SD")
        ax.set_yticks(yy, [flux_label(v) for v in s["parameter"]], fontsize=7)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(metal)
        ax.set_xlabel("change of mean C (%)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    # one legend under the panels, where it covers no bar
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def plot_overload(cc: pd.DataFrame, bands: pd.DataFrame, *, metal: str, scenarios: list[str],
                  unit_word: str = "cells"):
    """Overloaded share by land use and year for one metal, per scenario, with Monte Carlo P5-P95 whiskers.

    Parameters
    ----------
    cc : DataFrame
        Carrying-capacity summary (scenario, metal, land_use, year, share_overloaded).
    bands : DataFrame
        Monte Carlo overload bands (scenario, metal, land_use, year, p5, p95).
    metal : str
        Metal plotted.
    scenarios : list of str
        Scenarios, one panel each.
    unit_word : str, default "cells"
        What was projected ("cells" of the grid or "samples"), for the axis label.

    Returns
    -------
    matplotlib.figure.Figure
        Bars of the overloaded share (%) by land use and year; the land-use legend below the panels
        (inside a panel it covered bars).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scenarios), figsize=(7, 2.6), sharey=True, squeeze=False)
    for ax, sc in zip(axes.flat, scenarios):
        s = cc[(cc["metal"] == metal) & (cc["scenario"] == sc) & (cc["land_use"] != "all")]
        classes = list(dict.fromkeys(s["land_use"]))
        years = sorted(s["year"].unique())
        w = 0.8 / max(len(classes), 1)
        col = _lu_colors(classes)
        for i, cls in enumerate(classes):
            v = s[s["land_use"] == cls].set_index("year")["share_overloaded"].reindex(years).to_numpy()
            xpos = np.arange(len(years)) + i * w
            ax.bar(xpos, 100 * v, width=w, color=col[cls], label=cls)
            if len(bands):
                b = bands[(bands["metal"] == metal) & (bands["scenario"] == sc) & (bands["land_use"] == cls)]
                b = b.set_index("year").reindex(years)
                ax.vlines(xpos, 100 * b["p5"], 100 * b["p95"], color="k", lw=0.7)
        ax.set_xticks(np.arange(len(years)) + 0.4 - w / 2, [str(y) for y in years])
        ax.set_title(sc.replace("_", " "), fontsize=9)
        ax.set_xlabel("years after survey")
    axes.flat[0].set_ylabel(f"{metal} overloaded (% of {unit_word})")
    h, lab = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(h, lab, loc="lower center", ncol=min(len(lab), 6), fontsize=7, frameon=False)
    return fig


# ======================================================================================
# results of a run, the regional background, guideline values (composed by hmlib.stages.accumulation)
# ======================================================================================
@dataclass
class AccumulationRun:
    """All results of stage ``accumulation`` for one region.

    Attributes
    ----------
    domain : "grid" or "samples".
    id_column : "cell_id" or "sample_id".
    ids, x, y, land_use : per cell (x, y in the region's coordinates).
    metals : metals modelled.
    model : process :class:`FluxModel` of the domain.
    initial_mg_kg : (n, m) state at year 0 (last survey; IDW to the grid).
    start_year : calendar year of year 0 (or None).
    calibration : :class:`CalibrationResult` or None.
    correction_mg_m2_yr : (n, m) correction added to projections, or None.
    thresholds_mg_kg : (n, m) sensitivity-adjusted guideline per cell.
    guideline_mg_kg : Series metal -> guideline value.
    projections : scenario -> :class:`Projection` (baseline with fluxes).
    sources : point-source table or None.
    calibration_mode : "hindcast", "residual" or "none".
    notes : plain-language notes for the report (assumptions, dropped rows).
    threshold_name : guideline threshold used.
    correction_applied : whether the learned correction enters the projections.
    background_source : residual calibration: which regional background started the history run.
    soil_layer : depth, bulk density, soil mass and their sources (:func:`soil_layer_values`).
    """

    domain: str
    id_column: str
    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    land_use: np.ndarray
    metals: list[str]
    model: FluxModel
    initial_mg_kg: np.ndarray
    start_year: int | None
    calibration: CalibrationResult | None
    correction_mg_m2_yr: np.ndarray | None
    thresholds_mg_kg: np.ndarray
    guideline_mg_kg: pd.Series
    projections: dict[str, Projection]
    sources: pd.DataFrame | None
    calibration_mode: str
    notes: list[str] = field(default_factory=list)
    threshold_name: str = ""
    correction_applied: bool = False
    background_source: str | None = None
    soil_layer: dict = field(default_factory=dict)


def region_background(*, sample_ids, metals: list[str], medium: str, adaptive: pd.DataFrame | None = None,
                      baselines: pd.DataFrame | None = None) -> tuple[np.ndarray, str]:
    """The region's own background per sample and metal, for the residual calibration.

    The adaptive background of each sample (table ``adaptive_background``: sample_id, medium,
    metal, background) is used where available; otherwise the recommended baseline of the metal
    over all samples (table ``baselines``: medium, stratum ``all``, metal, recommended, baseline).

    Parameters
    ----------
    sample_ids : the samples of the current survey, in order.
    metals : metals, in order.
    medium : the medium of the samples.
    adaptive, baselines : the two tables of the baselines section, or None.

    Returns
    -------
    (background (n, m) in mg/kg, description for the report).

    Raises
    ------
    ValueError
        When neither table covers every metal.
    """
    if (adaptive is None or not len(adaptive)) and (baselines is None or not len(baselines)):
        raise ValueError("this run has neither an adaptive background nor geochemical baselines")
    ids = pd.Index(np.asarray(sample_ids).astype(str))
    out = np.full((len(ids), len(metals)), np.nan)
    used = set()
    if adaptive is not None and len(adaptive):
        a = adaptive[adaptive["medium"] == medium] if "medium" in adaptive.columns else adaptive
        w = a.assign(sample_id=a["sample_id"].astype(str)).pivot_table(
            index="sample_id", columns="metal", values="background", aggfunc="first")
        w = w.reindex(index=ids, columns=metals)
        out = w.to_numpy(float)
        if np.isfinite(out).any():
            used.add("adaptive")
    if baselines is not None and len(baselines) and np.isnan(out).any():
        b = baselines
        if "medium" in b.columns:
            b = b[b["medium"] == medium]
        if "stratum" in b.columns:
            b = b[b["stratum"] == "all"]
        if "recommended" in b.columns:
            b = b[b["recommended"].astype(str).str.lower().isin(["true", "1"])]
        per_metal = b.groupby("metal")["baseline"].first().reindex(metals).to_numpy(float)
        fill = np.broadcast_to(per_metal, out.shape)
        miss = np.isnan(out) & np.isfinite(fill)
        if miss.any():
            used.add("baseline")
        out = np.where(miss, fill, out)
    bad = [m for j, m in enumerate(metals) if np.isnan(out[:, j]).any()]
    if bad:
        raise ValueError(f"the region's background lacks {', '.join(bad)} for some samples")
    desc = {frozenset({"adaptive"}): "the adaptive (covariate-dependent) background of each sample",
            frozenset({"baseline"}): "the recommended geochemical baseline of each metal",
            frozenset({"adaptive", "baseline"}): "the adaptive background of each sample, or the recommended "
                                                 "baseline where the adaptive background was missing"}[frozenset(used)]
    return out, desc


def guideline_series(params, *, threshold: str | None, medium: str, metals: list[str]) -> tuple[pd.Series, str]:
    """Guideline per metal from the region's guideline set (``hmlib.reference.guideline_values``).

    Where a set gives several values of the threshold for one metal (land-use or pH classes),
    the lowest (most protective) value is used.
    """
    from .reference import guideline_values

    gl = guideline_values(params.references.guideline, medium="soil" if medium not in ("sediment",) else medium)
    names = list(dict.fromkeys(gl["threshold_name"]))
    thr = threshold or params.references.guideline_threshold or names[0]
    if thr not in names:
        raise ValueError(f"guideline set {params.references.guideline} has no threshold {thr!r}; available: {names}")
    s = gl[gl["threshold_name"] == thr].groupby("metal")["value"].min()
    return s.reindex(metals), thr


def projection_table(run: AccumulationRun, *, years: list[int]) -> pd.DataFrame:
    """Long table (id, metal, scenario, year, concentration) at year 0 and the reported years."""
    yrs = [0] + [y for y in years if y != 0]
    parts = []
    for sname, pr in run.projections.items():
        C = pr.concentration_mg_kg[:, :, yrs]  # (n, m, k)
        n, m, k = C.shape
        parts.append(pd.DataFrame({run.id_column: np.repeat(run.ids, m * k),
                                   "metal": np.tile(np.repeat(run.metals, k), n), "scenario": sname,
                                   "year": np.tile(yrs, n * m), "concentration": C.ravel()}))
    return pd.concat(parts, ignore_index=True)


def capacity_tables(run: AccumulationRun, *, years: list[int]) -> pd.DataFrame:
    """Carrying capacity and overload summary (see :func:`overload_summary`) for every scenario,
    with the mass capacity in kg/ha from the domain's soil mass."""
    return pd.concat([overload_summary(concentration_mg_kg=pr.concentration_mg_kg, thresholds_mg_kg=run.thresholds_mg_kg,
                                       land_use=run.land_use, metals=run.metals, years=[0] + list(years), scenario=s,
                                       soil_mass_kg_m2=run.model.soil_mass_kg_m2)
                      for s, pr in run.projections.items()], ignore_index=True)


def carrying_capacity_table(cc: pd.DataFrame, overload_bands: pd.DataFrame | None, *,
                            soil_layer: dict) -> pd.DataFrame:
    """The tidy carrying-capacity table of the report (``tables/carrying_capacity.csv``).

    One row per metal, scenario, year and land use: the mean threshold and concentration, the
    concentration headroom (mg/kg) and mass capacity (kg/ha) with the depth and bulk density
    they assume, the overloaded share with its Monte Carlo P5-P95 and the median years to
    overload.

    Parameters
    ----------
    cc : :func:`capacity_tables`.
    overload_bands : :attr:`MonteCarloResult.overload_bands` (or None).
    soil_layer : :func:`soil_layer_values`.

    Returns
    -------
    DataFrame.
    """
    out = cc.copy()
    if overload_bands is not None and len(overload_bands):
        b = overload_bands.rename(columns={"p5": "share_overloaded_p5", "p50": "share_overloaded_p50",
                                           "p95": "share_overloaded_p95"})
        out = out.merge(b, on=["scenario", "metal", "land_use", "year"], how="left")
    else:
        out["share_overloaded_p5"] = out["share_overloaded_p50"] = out["share_overloaded_p95"] = np.nan
    out["depth_m"] = soil_layer["depth_m"]
    out["bulk_density_kg_m3"] = soil_layer["bulk_density_kg_m3"]
    cols = ["metal", "scenario", "year", "land_use", "n_cells", "mean_threshold_mg_kg", "mean_concentration_mg_kg",
            "mean_capacity_mg_kg", "median_capacity_mg_kg", "mean_capacity_kg_ha", "median_capacity_kg_ha",
            "share_overloaded", "share_overloaded_p5", "share_overloaded_p95", "median_years_to_overload",
            "depth_m", "bulk_density_kg_m3"]
    return out[cols]


def capacity_cells(run: AccumulationRun, *, scenario: str) -> pd.DataFrame:
    """Per cell (or sample) and metal: threshold, concentration today and at the horizon, headroom
    today in mg/kg and kg/ha (:func:`mass_capacity_kg_ha`) and years to overload
    (:func:`years_to_overload`; inf = not within the horizon) under ``scenario``."""
    C = run.projections[scenario].concentration_mg_kg
    T = run.thresholds_mg_kg
    yto = years_to_overload(C, T)
    n, m = T.shape
    head = T - C[:, :, 0]
    return pd.DataFrame({run.id_column: np.repeat(run.ids, m), "land_use": np.repeat(run.land_use, m),
                         "metal": np.tile(run.metals, n), "scenario": scenario,
                         "threshold_mg_kg": T.ravel(), "concentration_now_mg_kg": C[:, :, 0].ravel(),
                         "concentration_horizon_mg_kg": C[:, :, -1].ravel(), "capacity_now_mg_kg": head.ravel(),
                         "capacity_now_kg_ha": mass_capacity_kg_ha(head, run.model.soil_mass_kg_m2[:, None]).ravel(),
                         "years_to_overload": yto.ravel()})


def read_flux_truth(path) -> pd.DataFrame:
    """Read a generator's known flux bias (``site_id, metal, bias_mg_m2_yr``) of a demo region."""
    t = pd.read_csv(path)
    need = ["site_id", "metal", "bias_mg_m2_yr"]
    miss = [c for c in need if c not in t.columns]
    if miss:
        raise ValueError(f"{path}: missing {_columns(miss)}; expected the columns {', '.join(need)}")
    return t.assign(site_id=t["site_id"].astype(str))


def flux_truth_recovery(calibration: CalibrationResult, truth: pd.DataFrame) -> pd.DataFrame:
    """Compare the correction learned at held-out sites with a generator's known flux bias.

    Out-of-fold predictions are used: each site's correction comes from the model fitted without
    the site's cross-validation fold.
    Per metal: n_sites (every site, out of fold), mean true and mean recovered flux (mg/m2/yr), their ratio,
    Pearson correlation and RMSE of recovered against true.

    Parameters
    ----------
    calibration : :class:`CalibrationResult` (its ``predictions`` carry the held-out corrections).
    truth : site_id, metal, bias_mg_m2_yr (:func:`read_flux_truth`).

    Returns
    -------
    DataFrame, one row per metal.
    """
    p = calibration.predictions.assign(site=lambda d: d["site"].astype(str))
    j = p.merge(truth, left_on=["site", "metal"], right_on=["site_id", "metal"], how="inner")
    rows = []
    for metal, g in j.groupby("metal", sort=False):
        t, r = g["bias_mg_m2_yr"].to_numpy(float), g["predicted_correction_mg_m2_yr"].to_numpy(float)
        rows.append({"metal": metal, "n_sites": len(g), "true_mean_mg_m2_yr": float(t.mean()),
                     "recovered_mean_mg_m2_yr": float(r.mean()),
                     "recovered_to_true_ratio": float(r.mean() / t.mean()) if t.mean() != 0 else np.nan,
                     "correlation": float(np.corrcoef(t, r)[0, 1]) if len(g) > 2 and np.std(t) > 0 and np.std(r) > 0
                     else np.nan,
                     "rmse_mg_m2_yr": _rmse(t, r)})
    return pd.DataFrame(rows)


def dominant_fluxes(budget: pd.DataFrame) -> pd.DataFrame:
    """Largest input and output per metal over the whole domain, with their shares (percent)."""
    a = budget[budget["land_use"] == "all"]
    rows = []
    for metal, s in a.groupby("metal", sort=False):
        r = {"metal": metal}
        for d in ("input", "output"):
            sd = s[s["direction"] == d].sort_values("mean_mg_m2_yr", ascending=False)
            r[f"main_{d}"] = sd["flux"].iloc[0] if len(sd) else None
            r[f"main_{d}_share_percent"] = sd["share_percent"].iloc[0] if len(sd) else np.nan
            r[f"total_{d}_mg_m2_yr"] = sd["mean_mg_m2_yr"].sum()
        rows.append(r)
    return pd.DataFrame(rows)


__all__ += ["carrying_capacity_table", "carrying_capacity_display", "capacity_cells", "read_flux_truth", "flux_truth_recovery"]
__all__ += ["AccumulationRun", "region_background", "guideline_series", "projection_table",
            "capacity_tables", "dominant_fluxes"]


def choose_map_metal(cc: pd.DataFrame, *, scenario: str, year: int, preferred: str | None = None) -> str:
    """The metal shown in maps: ``preferred`` or the one with the largest overloaded share at ``year``."""
    if preferred:
        return preferred
    a = cc[(cc["scenario"] == scenario) & (cc["year"] == year) & (cc["land_use"] == "all")]
    return str(a.sort_values(["share_overloaded", "metal"], ascending=[False, True])["metal"].iloc[0])


def budget_display(budget: pd.DataFrame) -> pd.DataFrame:
    """Reader's table: flux (rows) x metal (columns), domain mean in mg/m²/yr, outputs negative."""
    a = budget[budget["land_use"] == "all"].copy()
    a.loc[a["direction"] == "output", "mean_mg_m2_yr"] *= -1
    order = list(dict.fromkeys(a["flux"]))
    t = a.pivot_table(index="flux", columns="metal", values="mean_mg_m2_yr", sort=False).reindex(order)
    t.columns = [f"{c} (mg/m²/yr)" for c in t.columns]
    t.index = [flux_label(f) for f in t.index]
    return t.reset_index(names="Flux")


def calibration_display(cal: CalibrationResult) -> pd.DataFrame:
    """Reader's calibration table (held-out and training RMSE, held-out R², skill)."""
    return cal.metrics[["metal", "n_train", "n_test", "rmse_process_test", "rmse_calibrated_test", "r2_process_test",
                        "r2_calibrated_test", "r2_correction_test", "rmse_calibrated_train",
                        "mean_correction_mg_m2_yr"]].rename(columns={
        "metal": "Metal", "n_train": "n train per fold", "n_test": "n sites (each held out once)",
        "rmse_process_test": "RMSE, process (mg/kg)", "rmse_calibrated_test": "Out-of-fold RMSE, calibrated (mg/kg)",
        "r2_process_test": "R², process", "r2_calibrated_test": "Out-of-fold R², calibrated",
        "r2_correction_test": "Out-of-fold R² of ΔF",
        "rmse_calibrated_train": "In-sample RMSE, calibrated (mg/kg)",
        "mean_correction_mg_m2_yr": "Mean ΔF (mg/m²/yr)"})


def carrying_capacity_display(cap: pd.DataFrame, *, year: int) -> pd.DataFrame:
    """Reader's carrying-capacity table at ``year``: metal x land use rows, the overloaded share per scenario
    (percent, Monte Carlo P5-P95), median years to overload and today's median headroom in mg/kg and kg/ha
    (first scenario).

    Parameters
    ----------
    cap : :func:`carrying_capacity_table`.
    year : the reported year shown.

    Returns
    -------
    DataFrame.
    """
    a = cap[cap["year"] == year].copy()
    a["cell"] = [f"{100 * v:.0f} ({100 * lo:.0f}-{100 * hi:.0f})" if np.isfinite(lo) else f"{100 * v:.0f}"
                 for v, lo, hi in zip(a["share_overloaded"], a["share_overloaded_p5"], a["share_overloaded_p95"])]
    t = a.pivot_table(index=["metal", "land_use"], columns="scenario", values="cell", aggfunc="first", sort=False)
    t.columns = [f"{str(c).replace('_', ' ')}: overloaded % (P5-P95)" for c in t.columns]
    first = cap["scenario"].iloc[0]
    now = cap[(cap["year"] == 0) & (cap["scenario"] == first)].set_index(["metal", "land_use"])
    horizon = a[a["scenario"] == first].set_index(["metal", "land_use"])
    t["Median years to overload"] = horizon["median_years_to_overload"].reindex(t.index).to_numpy()
    t["Headroom today, median (mg/kg)"] = now["median_capacity_mg_kg"].reindex(t.index).to_numpy()
    t["Mass capacity today, median (kg/ha)"] = now["median_capacity_kg_ha"].reindex(t.index).to_numpy()
    t["Cells"] = horizon["n_cells"].reindex(t.index).to_numpy()
    t = t.reset_index().rename(columns={"metal": "Metal", "land_use": "Land use"})
    t["Land use"] = t["Land use"].replace({"all": "all land uses"})
    return t


def projection_display(proj: pd.DataFrame) -> pd.DataFrame:
    """Domain mean concentration by scenario, metal and year (reader's version)."""
    t = proj.groupby(["metal", "scenario", "year"], sort=False)["concentration"].mean().unstack("year")
    t.columns = [f"year {c} (mg/kg)" for c in t.columns]
    t = t.reset_index().rename(columns={"metal": "Metal", "scenario": "Scenario"})
    t["Scenario"] = t["Scenario"].str.replace("_", " ")
    return t


def _horizon_tables(cc: pd.DataFrame, *, horizon: int, overload_bands: pd.DataFrame | None):
    """The whole-region rows of the capacity projection at the horizon, the first scenario's rows at year 0 (by
    metal) and the overload bands at the horizon (by metal and scenario; None without bands)."""
    first = cc["scenario"].iloc[0]
    a = cc[(cc["year"] == horizon) & (cc["land_use"] == "all")]
    a0 = cc[(cc["year"] == 0) & (cc["land_use"] == "all") & (cc["scenario"] == first)].set_index("metal")
    bands = None
    if overload_bands is not None and len(overload_bands):
        bands = overload_bands[(overload_bands["land_use"] == "all") & (overload_bands["year"] == horizon)
                               ].set_index(["metal", "scenario"])
    return first, a, a0, bands


def results_text(run: AccumulationRun, *, budget: pd.DataFrame, cc: pd.DataFrame, horizon: int,
                 overload_bands: pd.DataFrame | None = None, truth: pd.DataFrame | None = None) -> str:
    """Results paragraphs: calibration skill first (validation scheme, held-out errors), then the
    dominant fluxes, the correction, overload and capacity at the horizon (with Monte Carlo
    ranges) and, for a generated demo, what the calibration recovered of the known truth.

    Parameters
    ----------
    run : :class:`AccumulationRun`.
    budget : :func:`flux_budget` of the first scenario.
    cc : :func:`capacity_tables`.
    horizon : projection horizon (years).
    overload_bands : Monte Carlo bands of the overloaded share (or None).
    truth : :func:`flux_truth_recovery` (or None).

    Returns
    -------
    str (markdown).
    """
    parts = []
    if run.calibration is not None:
        m = run.calibration.metrics
        better = m[m["skilled"]]["metal"].tolist()
        label = "Calibration" if run.calibration.mode == "hindcast" else "Residual diagnostic"
        parts.append(
            f"**{label}: skill before interpretation.** Validation: {m['validation'].iloc[0]}, "
            f"every one of {int(m['n_test'].iloc[0])} sites held out once ({int(m['n_train'].iloc[0])} training sites "
            "per fold). The out-of-fold RMSE "
            f"of the calibrated model was lower than the process model's for {count_of(len(better), len(m), 'metals')}"
            + (f" ({_and(better)})" if better and len(better) < len(m) else "") + ": "
            + "; ".join(f"{r.metal} {r.rmse_process_test:.3g} → {r.rmse_calibrated_test:.3g} mg/kg "
                        f"(out-of-fold R² of the correction {r.r2_correction_test:.2f})" for r in m.itertuples()) + "."
            + ("" if better else " The correction has no held-out skill and is not interpreted further."))
    dom = dominant_fluxes(budget)
    parts.append("**Dominant fluxes** (process model). " + "; ".join(
        f"{r.metal}: inputs mainly {str(r.main_input).replace('_', ' ')} ({r.main_input_share_percent:.0f} %), "
        f"outputs mainly {str(r.main_output).replace('_', ' ')} ({r.main_output_share_percent:.0f} %)"
        for r in dom.itertuples()) + ".")
    a = budget[(budget["land_use"] == "all") & (budget["flux"] == "ml_correction")]
    if len(a) and run.correction_applied:
        tot = budget[(budget["land_use"] == "all") & (budget["direction"] == "input")].groupby("metal")["mean_mg_m2_yr"].sum()
        parts.append("The applied correction added " + ", ".join(
            f"{r.metal} {r.mean_mg_m2_yr:.3g} mg/m²/yr ({100 * r.mean_mg_m2_yr / tot[r.metal]:.0f} % of the process "
            "inputs)" for r in a.itertuples()) + " on average: flux missing from the process model.")
    if truth is not None and len(truth):
        parts.append("**Known truth (generated data).** Out of fold, the learned correction had a mean of "
                     + "; ".join(f"{r.metal} {r.recovered_mean_mg_m2_yr:.3g} against a true {r.true_mean_mg_m2_yr:.3g} "
                                 f"mg/m²/yr (correlation {r.correlation:.2f})" for r in truth.itertuples()) + ".")
    first, a, a0, bands = _horizon_tables(cc, horizon=horizon, overload_bands=overload_bands)
    txt = []
    for metal, s in a.groupby("metal", sort=False):
        cells = []
        for sc, v in zip(s["scenario"], s["share_overloaded"]):
            rng = ""
            if bands is not None and (metal, sc) in bands.index:
                b = bands.loc[(metal, sc)]
                rng = ", " + share_range_text(b["p5"], b["p95"], label="P5–P95")
            cells.append(f"{100 * v:.0f} % ({sc.replace('_', ' ')}{rng})")
        txt.append(f"{metal} {100 * a0.loc[metal, 'share_overloaded']:.0f} % now, " + ", ".join(cells)
                   + f" after {horizon} years")
    unit = "cells" if run.domain == "grid" else "samples"
    parts.append(f"**Overload** (share of {unit} at or above the sensitivity-adjusted {run.threshold_name} value): "
                 + "; ".join(txt) + ".")
    if "median_capacity_kg_ha" in a0.columns:
        def _f(v):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        parts.append("**Remaining capacity today** (median over " + unit + "): " + "; ".join(
            f"{metal} {_f(r.median_capacity_mg_kg)} mg/kg, i.e. {_f(r.median_capacity_kg_ha)} kg/ha"
            for metal, r in a0.iterrows()) + " (negative: already above the threshold).")
    return "\n\n".join(parts)


__all__ += ["flux_label", "threshold_label", "FLUX_LABELS", "GROUP_LABELS"]
__all__ += ["relevant_groups", "choose_map_metal", "budget_display", "calibration_display", "projection_display",
            "results_text"]


# ======================================================================================
# reader's text, one paragraph per part of the section (composed by hmlib.stages.accumulation)
# ======================================================================================
def calibration_text(run: AccumulationRun, *, budget: pd.DataFrame | None = None, refs: str = "") -> str:
    """The calibration's held-out skill (validation scheme first) and what it means for the projections: how
    much flux the process model misses and how far the learned correction can be trusted.

    Parameters
    ----------
    run : :class:`AccumulationRun` with a calibration.
    budget : :func:`flux_budget` of the first scenario (for the size of the applied correction), or None.
    refs : cross-references to the displays.

    Returns
    -------
    str (markdown).
    """
    cal = run.calibration
    m = cal.metrics
    better = m[m["skilled"]]
    weak = better[better["r2_correction_test"] < 0.2]
    # a change of the held-out error under half a per cent is no change ("1.81 -> 1.81 mg/kg, 0 % lower" is not a fall)
    fell = m[m["rmse_calibrated_test"] < 0.995 * m["rmse_process_test"]]

    def _change(r) -> str:
        pct = 100 * (1 - r.rmse_calibrated_test / r.rmse_process_test)
        return "unchanged" if abs(pct) < 0.5 else f"{pct:.0f} % lower" if pct > 0 else f"{-pct:.0f} % higher"

    label = "the calibration" if cal.mode == "hindcast" else "the residual diagnostic"
    txt = (f"**Skill first.** {m['validation'].iloc[0][0].upper() + m['validation'].iloc[0][1:]}: each of the "
           f"{int(m['n_test'].iloc[0])} sites was predicted by a model fitted without its block ({refs}). "
           f"With {label}, the held-out error of the end-state concentration fell for "
           f"{count_of(len(fell), len(m), 'metals')} ("
           + "; ".join(f"{r.metal} {r.rmse_process_test:.3g} → {r.rmse_calibrated_test:.3g} mg/kg, {_change(r)}"
                       for r in m.itertuples()) + "). ")
    if len(better):
        txt += ("How much of the missing flux itself is predicted at held-out sites is the sharper test: the "
                "out-of-fold R² of the correction is "
                + ", ".join(f"{r.metal} {r.r2_correction_test:.2f}" for r in m.itertuples()) + ". ")
        if len(weak):
            txt += (f"For {'every metal' if len(weak) == len(m) else _and(weak['metal'])} it is below 0.2: the flux missing at a site, read from the "
                    "difference of two surveys, is mostly survey noise at this scale, so the data cannot confirm the "
                    "correction site by site, and it mainly restores the regional level the process model misses. ")
    if budget is not None and run.correction_applied:
        a = budget[(budget["land_use"] == "all") & (budget["flux"] == "ml_correction")]
        tot = budget[(budget["land_use"] == "all") & (budget["direction"] == "input")].groupby("metal")[
            "mean_mg_m2_yr"].sum()
        if len(a):
            share = {r.metal: 100 * r.mean_mg_m2_yr / tot[r.metal] for r in a.itertuples() if tot.get(r.metal, 0) > 0}
            big = [k for k, v in share.items() if v >= 50]
            txt += ("The applied correction adds " + ", ".join(f"{k} {v:.0f} %" for k, v in share.items())
                    + " to the modelled inputs")
            txt += (f"; for {', '.join(big)} the process model misses at least half of the input (a source it does "
                    "not contain), and the projections of "
                    + ("this metal" if len(big) == 1 else "these metals")
                    + " rest as much on the learned correction, held constant into the future, as on the process "
                      "model." if big else ".")
    return txt


def truth_check_text(truth: pd.DataFrame, *, ref: str) -> str:
    """Generated demo regions: the learned correction against the generator's known flux bias, in words.

    Parameters
    ----------
    truth : :func:`flux_truth_recovery`.
    ref : cross-reference to the table.

    Returns
    -------
    str (markdown).
    """
    t = truth.copy()
    t["err"] = 100 * (t["recovered_to_true_ratio"] - 1)
    close = t[t["err"].abs() <= 15]
    far = t[t["err"].abs() > 15]
    return ("**Check against the generator.** These data contain a traffic input along a road that the process "
            f"model lacks, with a known size at every site ({ref}). Out of fold, the learned correction recovers "
            f"its mean within 15 % for {', '.join(close['metal']) if len(close) else 'no metal'}"
            + (" and overestimates it for " + ", ".join(f"{r.metal} (by {r.err:.0f} %)" for r in far.itertuples())
               if len(far) else "")
            + f"; its site-by-site correlation with the true bias is {_span(t['correlation'])}. The correction "
              "therefore locates the missing input better than its held-out R² against the noisy survey difference "
              "suggests: that R² is limited by the noise of the surveys, not by the correction.")


def _span(v, fmt=".2f") -> str:
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}} to {hi:{fmt}}"


def flux_text(budget: pd.DataFrame, *, ref: str) -> str:
    """The dominant inputs and outputs per metal, grouped where metals share them, and what that implies for
    the scenarios.

    Parameters
    ----------
    budget : :func:`flux_budget`.
    ref : cross-reference to the figure or table.

    Returns
    -------
    str (markdown).
    """
    dom = dominant_fluxes(budget)
    parts = []
    for (fi, fo), g in dom.groupby(["main_input", "main_output"], sort=False):
        parts.append(f"{', '.join(g['metal'])}: mainly {flux_label(fi)} in ("
                     + ", ".join(f"{p:.0f} %" for p in g["main_input_share_percent"]) + f" of inputs) and "
                     f"{flux_label(fo)} out (" + ", ".join(f"{p:.0f} %" for p in g["main_output_share_percent"])
                     + " of outputs)")
    dep = dom[dom["main_input"] == "point_deposition"]["metal"].tolist()
    agr = dom[dom["main_input"].isin(["fertilizer", "manure", "irrigation"])]["metal"].tolist()
    txt = f"**Fluxes** (process model; {ref}). " + "; ".join(parts) + ". "
    if dep:
        txt += (f"Cutting point-source emissions acts most on {', '.join(dep)}"
                + (f", and changing agricultural inputs on {', '.join(agr)}" if agr else "") + ". ")
    net = dom.assign(net=dom["total_input_mg_m2_yr"] - dom["total_output_mg_m2_yr"])
    up = net[net["net"] > 0]["metal"].tolist()
    if up:
        txt += (f"Inputs exceed outputs for {', '.join(up)}, so "
                + ("its" if len(up) == 1 else "their") + " concentrations keep rising under current rates.")
    return txt


def overload_text(cc: pd.DataFrame, *, horizon: int, overload_bands: pd.DataFrame | None, threshold: str,
                  unit_word: str, refs: str) -> str:
    """Overload now and at the horizon for each scenario, with the Monte Carlo ranges, and whether the
    scenarios can be told apart given that uncertainty.

    Parameters
    ----------
    cc : :func:`capacity_tables`.
    horizon : projection horizon (years).
    overload_bands : Monte Carlo bands of the overloaded share, or None.
    threshold : reader's name of the threshold.
    unit_word : "cells" or "samples".
    refs : cross-references to the displays.

    Returns
    -------
    str (markdown).
    """
    first, a, a0, bands = _horizon_tables(cc, horizon=horizon, overload_bands=overload_bands)
    rows = []
    for metal, s in a.groupby("metal", sort=False):
        s = s.set_index("scenario")
        now, base = a0.loc[metal, "share_overloaded"], s.loc[first, "share_overloaded"]
        rng = ""
        if bands is not None and (metal, first) in bands.index:
            b = bands.loc[(metal, first)]
            rng = f" ({share_range_text(b['p5'], b['p95'])})"
        best = s["share_overloaded"].idxmin()
        rows.append((metal, now, base, rng, best, s.loc[best, "share_overloaded"]))
    rows.sort(key=lambda r: -r[2])
    m0 = rows[0]
    txt = (f"**Overload and carrying capacity** ({refs}). {m0[0]} is the metal that most limits the soil: "
           f"{100 * m0[1]:.0f} % of the {unit_word} are at or above the sensitivity-adjusted {threshold} today and "
           f"{100 * m0[2]:.0f} %{m0[3]} would be after {horizon} years at current rates. ")
    others = [f"{r[0]} {100 * r[1]:.0f} % → {100 * r[2]:.0f} %{r[3]}" for r in rows[1:]]
    if others:
        txt += "For the other metals: " + "; ".join(others) + ". "
    if bands is not None:
        sep = []
        for metal, _, base, _, best, v in rows:
            if best == first:
                continue
            b0, b1 = bands.loc[(metal, first)], bands.loc[(metal, best)]
            overlap = b1["p95"] >= b0["p5"]
            sep.append(f"{metal}: {best.replace('_', ' ')} {100 * v:.0f} % against {100 * base:.0f} %"
                       + (" (Monte Carlo ranges overlap)" if overlap else " (ranges apart)"))
        if sep:
            txt += ("The best scenario lowers the horizon share as follows: " + "; ".join(sep) + ". Where the ranges "
                    "overlap, the parameter uncertainty is larger than the scenario's effect, so the scenario slows "
                    "the accumulation but the model cannot promise that it changes the outcome; a learned correction, "
                    "when applied, is held constant in every scenario, which also limits what they can change.")
    if "median_capacity_kg_ha" in a0.columns:
        neg = [m for m, r in a0.iterrows() if r.median_capacity_mg_kg < 0]
        txt += (" Median remaining capacity today: "
                + "; ".join(f"{m} {_sig3(r.median_capacity_mg_kg)} mg/kg ({_sig3(r.median_capacity_kg_ha)} kg/ha)"
                            for m, r in a0.iterrows())
                + (f"; a negative value ({', '.join(neg)}) means that the median {unit_word[:-1]} is already above "
                   "the threshold." if neg else "."))
    return txt


def sensitivity_text(oat: pd.DataFrame, *, horizon: int, ref: str) -> str:
    """Which uncertain parameter group moves each metal's projection most (one-at-a-time analysis).

    Parameters
    ----------
    oat : :func:`oat_sensitivity`.
    horizon : projection horizon (years).
    ref : cross-reference to the appendix display.

    Returns
    -------
    str (markdown).
    """
    s = oat.assign(span=(oat["high_change_percent"] - oat["low_change_percent"]).abs())
    top = s.loc[s.groupby("metal", sort=False)["span"].idxmax()]
    parts = [f"{flux_label(p)} for " + ", ".join(f"{r.metal} ({min(r.low_change_percent, r.high_change_percent):+.0f} "
                                                 f"to {max(r.low_change_percent, r.high_change_percent):+.0f} %)"
                                                 for r in g.itertuples())
             for p, g in top.groupby("parameter", sort=False)]
    return (f"**Which parameters matter.** Dividing and multiplying each parameter group by its geometric SD changes "
            f"the mean concentration after {horizon} years most through " + "; ".join(parts)
            + f" ({ref}); better values of these parameters would narrow the Monte Carlo ranges the most.")


__all__ += ["calibration_text", "truth_check_text", "flux_text", "overload_text", "sensitivity_text"]
