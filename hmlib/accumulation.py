"""Long-term accumulation of metals in the plough layer: flux model, ML calibration, carrying capacity.

An annual mass balance of the plough layer per grid cell (or per sample) following the
process-model + machine-learning framework of seed paper 001 [@seed001accumulation]:

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

The ML calibration learns a correction to the net flux with seeded gradient boosting
(scikit-learn's ``GradientBoostingRegressor``; Friedman 2001) from a hindcast between two
surveys or from the spatial residuals of one survey. Carrying capacity is the guideline minus
the projected concentration; years to overload and overload shares by land use follow. Monte
Carlo over lognormal multipliers of the uncertain flux parameters gives P5/P50/P95 bands, and a
one-at-a-time analysis ranks the parameters.

The plume and mass-balance numerics are written here with NumPy: no maintained Python library
provides long-term sector-averaged Gaussian deposition (AERMOD is a Fortran program, out of
scope), and the mass balance is a one-line explicit update that must conserve mass exactly.
Both are tested against hand-computed values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from .params import StageOptions
from .reference import load_reference

__all__ = [
    "AccumulationOptions",
    "LAND_USES",
    "SCENARIO_KEYS",
    "SECONDS_PER_YEAR",
    "soil_mass_kg_m2",
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


# ======================================================================================
# options
# ======================================================================================
class AccumulationOptions(StageOptions):
    """Options of stage ``accumulation`` (``stages: accumulation:`` in params)."""

    domain: Literal["auto", "grid", "samples"] = Field(
        default="auto", description="project per grid cell or per sample ('auto': grid when it has the land-use column)")
    medium: str | None = Field(default=None, description="medium of the surveys (default: the first medium)")
    depth_m: float = Field(default=0.2, gt=0, le=2.0, description="plough-layer depth (m)")
    bulk_density_kg_m3: float = Field(default=1300.0, ge=300, le=2200, description="dry bulk density (kg/m3)")
    horizon_years: int = Field(default=50, ge=1, le=500, description="projection horizon (years after the survey)")
    report_years: list[int] = Field(default_factory=lambda: [10, 20, 30, 50],
                                    description="years after the survey reported in tables and maps")
    start_year: int | None = Field(default=None, description="calendar year of the (last) survey; "
                                   "default: the last value of survey_column")
    scenarios: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {"baseline": {}, "emission_cut": {"emission_factor": 0.5},
                                 "fertilizer_change": {"agricultural_factor": 0.5}},
        description="scenario name -> multipliers (emission_factor, background_factor, agricultural_factor, "
                    "sediment_factor; 1 when not given)")
    point_sources: str | None = Field(default=None, description="CSV of point sources: source_id, x, y, "
                                      "stack_height_m, <metal>_kg_yr..., optional start_year, end_year")
    wind_rose: str | None = Field(default=None, description="CSV wind rose: direction_deg (from), speed_m_s, "
                                  "stability (A-F), frequency; default: uniform directions")
    wind_speed_m_s: float = Field(default=4.0, gt=0.5, le=30, description="wind speed of the uniform rose (m/s)")
    stability_class: Literal["A", "B", "C", "D", "E", "F"] = Field(default="D", description="stability of the uniform rose")
    n_wind_sectors: int = Field(default=16, ge=4, le=72, description="number of direction sectors of the uniform rose")
    terrain: Literal["rural", "urban"] = Field(default="rural", description="Briggs dispersion coefficients set")
    rain_fraction: float = Field(default=0.07, ge=0, le=1, description="fraction of the time with rain (wet deposition)")
    min_distance_m: float = Field(default=100.0, gt=0, description="receptors closer to a stack are set to this distance")
    background_deposition_g_ha_yr: dict[str, float] = Field(
        default_factory=dict, description="regional background atmospheric deposition per metal (g/ha/yr)")
    land_use_column: str | None = Field(default=None, description="column of land use in samples (and grid)")
    land_use_map: dict[str, str] = Field(default_factory=dict, description="raw land-use code -> class")
    default_land_use: str = Field(default="cultivated", description="class of samples without a land use")
    agricultural_inputs: str = Field(default="FieldScale_Nicholson2003", description="agricultural_input reference set")
    partition_coefficients: str = Field(default="SoilWater_Allison2005", description="partition_coefficient set (Kd)")
    transfer_factors: str = Field(default="SoilPlant_KabataPendias2011", description="transfer_factor set")
    enrichment_ratios: str = Field(default="Erosion_QuintonCatt2007", description="enrichment_ratio set")
    deposition_parameters: str = Field(default="Particulate_SeinfeldPandis2016", description="deposition set")
    dispersion_coefficients: str = Field(default="Briggs_1973", description="dispersion set")
    percolation_mm_yr: float = Field(default=250.0, ge=0, le=3000, description="annual percolation below the layer (mm)")
    runoff_mm_yr: dict[str, float] = Field(
        default_factory=lambda: {"cultivated": 50.0, "grassland": 30.0, "orchard": 30.0, "forest": 10.0,
                                 "residential": 150.0, "industrial": 200.0, "other": 50.0},
        description="surface runoff by land use (mm/yr)")
    soil_loss_t_ha_yr: dict[str, float] = Field(
        default_factory=lambda: {"cultivated": 2.0, "grassland": 0.3, "orchard": 0.5, "forest": 0.1,
                                 "residential": 0.2, "industrial": 0.2, "other": 0.5},
        description="RUSLE soil loss A (product R K LS C P) by land use (t/ha/yr)")
    crop_yield_t_ha_yr: dict[str, float] = Field(
        default_factory=lambda: {"cultivated": 6.0, "grassland": 8.0},
        description="harvested dry matter by land use (t/ha/yr); others 0")
    crop_by_land_use: dict[str, str] = Field(default_factory=lambda: {"cultivated": "cereal", "grassland": "grass"},
                                             description="crop of the transfer-factor set per land use")
    sediment_class_column: str | None = Field(default=None, description="column of the sediment-deposition class")
    sediment_deposition_kg_m2_yr: dict[str, float] = Field(
        default_factory=dict, description="sediment deposition per class (kg/m2/yr)")
    sediment_concentration_mg_kg: dict[str, float] = Field(
        default_factory=dict, description="metal concentration of the deposited sediment (mg/kg)")
    survey_column: str | None = Field(default=None, description="covariate holding the survey year (two surveys)")
    site_column: str | None = Field(default=None, description="covariate pairing the samples of the two surveys")
    calibration: Literal["auto", "hindcast", "residual", "none"] = Field(
        default="auto", description="ML calibration: hindcast between surveys, residuals of one survey, or none")
    history_years: int = Field(default=50, ge=1, le=1000,
                               description="residual calibration: years of accumulation from the background")
    calibration_features: list[str] = Field(default_factory=list,
                                            description="covariates used by the calibration model (plus x, y, fluxes)")
    apply_correction: bool = Field(default=True, description="add the learned flux correction to projections")
    test_fraction: float = Field(default=0.3, gt=0.05, lt=0.8, description="share of sites held out for skill")
    n_estimators: int = Field(default=300, ge=10, le=5000)
    max_depth: int = Field(default=3, ge=1, le=10)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    guideline_threshold: str | None = Field(default=None, description="threshold_name of the guideline set "
                                            "(default: references.guideline_threshold)")
    sensitivity_weights: dict[str, float] = Field(
        default_factory=dict, description="receptor-sensitivity weight by land use; the threshold is guideline / weight")
    n_monte_carlo: int = Field(default=200, ge=20, le=5000, description="Monte Carlo iterations")
    uncertainty_gsd: dict[str, float] = Field(
        default_factory=lambda: {"deposition": 1.5, "agricultural": 1.5, "sediment": 1.5, "kd": 2.0,
                                 "percolation": 1.3, "soil_loss": 1.5, "transfer_factor": 1.5},
        description="geometric standard deviation of each uncertain parameter group (lognormal multipliers)")
    map_metal: str | None = Field(default=None, description="metal shown in the maps (default: most overloaded)")
    assumptions: list[str] = Field(default_factory=list,
                                   description="assumptions of this application, listed in the report (with citations)")

    @field_validator("scenarios")
    @classmethod
    def _scenario_keys(cls, v):
        if not v:
            raise ValueError("at least one scenario is needed, e.g. {baseline: {}}")
        for name, spec in v.items():
            bad = set(spec) - set(SCENARIO_KEYS)
            if bad:
                raise ValueError(f"scenario {name!r} has unknown keys {sorted(bad)}; allowed: {list(SCENARIO_KEYS)}")
            for k, x in spec.items():
                if not x >= 0:
                    raise ValueError(f"scenario {name!r}: {k} must be >= 0, got {x}")
        return v

    @field_validator("land_use_map", "crop_by_land_use")
    @classmethod
    def _known_classes(cls, v, info):
        keys = v.values() if info.field_name == "land_use_map" else v.keys()
        bad = sorted(set(keys) - set(LAND_USES))
        if bad:
            raise ValueError(f"unknown land-use classes {bad}; expected one of {list(LAND_USES)}")
        return v

    @field_validator("uncertainty_gsd")
    @classmethod
    def _gsd(cls, v):
        bad = sorted(set(v) - set(UNCERTAIN_GROUPS))
        if bad:
            raise ValueError(f"unknown parameter groups {bad}; expected some of {list(UNCERTAIN_GROUPS)}")
        for k, x in v.items():
            if not x >= 1:
                raise ValueError(f"geometric SD of {k} must be >= 1, got {x}")
        return v

    @model_validator(mode="after")
    def _years(self):
        bad = [y for y in self.report_years if not 1 <= y <= self.horizon_years]
        if bad:
            raise ValueError(f"report_years {bad} outside 1..horizon_years ({self.horizon_years})")
        if self.default_land_use not in LAND_USES:
            raise ValueError(f"default_land_use {self.default_land_use!r} not one of {list(LAND_USES)}")
        return self


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
    """
    df = pd.read_csv(path, comment="#")
    need = ["source_id", "x", "y", "stack_height_m"]
    miss = [c for c in need if c not in df.columns]
    if miss:
        raise ValueError(f"{path}: missing column(s) {miss}; expected {need} plus <metal>_kg_yr columns")
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
    """
    df = pd.read_csv(path, comment="#")
    need = ["direction_deg", "speed_m_s", "stability", "frequency"]
    miss = [c for c in need if c not in df.columns]
    if miss:
        raise ValueError(f"{path}: missing column(s) {miss}; expected {need}")
    if (df["frequency"] < 0).any() or df["frequency"].sum() <= 0:
        raise ValueError(f"{path}: frequencies must be >= 0 with a positive sum")
    if (df["speed_m_s"] <= 0).any():
        raise ValueError(f"{path}: wind speeds must be > 0")
    out = df[need].copy()
    out["frequency"] = out["frequency"] / out["frequency"].sum()
    return out


def uniform_wind_rose(*, n_sectors: int = 16, speed_m_s: float = 4.0, stability: str = "D") -> pd.DataFrame:
    """A wind rose with equal frequency from ``n_sectors`` directions, one speed and stability."""
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

    def subset(self, idx) -> "FluxModel":
        """The model restricted to cells ``idx``."""
        return FluxModel(self.metals, self.soil_mass_kg_m2[idx], {k: v[idx] for k, v in self.constant_inputs.items()},
                         self.point_deposition[:, idx], self.source_years,
                         {k: v[idx] for k, v in self.output_rates.items()}, self.land_use[idx])

    def scaled(self, multipliers: dict[str, float]) -> "FluxModel":
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
    """Assemble the :class:`FluxModel` of a set of cells from the options and reference sets."""
    o = options
    lu = np.asarray(land_use, dtype=object)
    n = lu.size
    mass = np.full(n, soil_mass_kg_m2(o.depth_m, o.bulk_density_kg_m3))
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
    metrics : per metal: n_train, n_test, held-out and training RMSE / R2 of the process model
        and of the calibrated model (concentrations, mg/kg), mean target flux correction.
    predictions : held-out sites: site, metal, observed, process, calibrated (mg/kg).
    importance : per metal and feature, impurity importance of the gradient-boosting model.
    models : metal -> fitted GradientBoostingRegressor (refit on all sites).
    features : feature names used (one-hot for land use).
    fill_values : median of each feature, substituted for missing feature values.
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
                         scenario_input: dict[str, np.ndarray]) -> pd.DataFrame:
    """Feature table for the flux-correction model: coordinates, covariates, land use (one-hot) and
    the process model's input fluxes (log1p of the total per metal) and output rate constant."""
    feats = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float)})
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


def calibrate_net_flux(*, model: FluxModel, features: pd.DataFrame, c_start_mg_kg: np.ndarray,
                       c_end_mg_kg: np.ndarray, years: np.ndarray | int, scenario_input_fn, mode: str,
                       seed: int, test_fraction: float = 0.3, n_estimators: int = 300, max_depth: int = 3,
                       learning_rate: float = 0.05, site_ids=None) -> CalibrationResult:
    """Learn a correction :math:`\\Delta F` to the process model's net flux with gradient boosting.

    For each site the target is the flux that closes the gap between the observed end state
    and the process model run from the start state over :math:`\\Delta t` years:

    .. math::

        \\Delta F = \\frac{M\\,(C^{obs}_{end} - C^{proc}_{end})}{\\Delta t}

    (hindcast: start = first survey, end = second survey; residual mode: start = background,
    end = current survey, :math:`\\Delta t` = ``history_years``). A seeded
    ``GradientBoostingRegressor`` (Friedman 2001; Pedregosa et al. 2011) learns
    :math:`\\Delta F` from the features on a training share of the sites; skill is the RMSE of
    the end-state concentration at held-out sites, process model alone vs. the process model
    re-run with the predicted correction. The models are then refit on all sites. Missing
    feature values are replaced by the feature's median over the sites.

    Parameters
    ----------
    model : the process model at the sites.
    features : one row per site (see :func:`calibration_features`).
    c_start_mg_kg, c_end_mg_kg : (n, m) start and observed end concentrations.
    years : Δt per site (int or (n,) ints).
    scenario_input_fn : callable(model_subset, n_years) -> inputs dict for the hindcast period.
    mode : "hindcast" or "residual" (recorded).
    seed : random seed of the split and the boosting.

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
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = max(int(round(test_fraction * n)), 3)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    fill = features.median(numeric_only=True).fillna(0.0).to_dict()
    X = features.fillna(fill).to_numpy(float)
    params = dict(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
                  subsample=0.8, min_samples_leaf=8, random_state=seed)
    corr_test = np.zeros((n_test, m))
    corr_train = np.zeros((len(train), m))
    for j in range(m):
        ok = np.isfinite(target[train, j])
        g = GradientBoostingRegressor(**params).fit(X[train][ok], target[train, j][ok])
        corr_test[:, j] = g.predict(X[test])
        corr_train[:, j] = g.predict(X[train])
    cal_test = _end(model.subset(test), c_start_mg_kg[test], corr_test, dt[test])
    cal_train = _end(model.subset(train), c_start_mg_kg[train], corr_train, dt[train])
    rows, preds, imps, models = [], [], [], {}
    sid = np.asarray(site_ids if site_ids is not None else np.arange(n))
    for j, metal in enumerate(model.metals):
        obs_t, pro_t, cal_t = c_end_mg_kg[test, j], proc_end[test, j], cal_test[:, j]
        rows.append({"metal": metal, "mode": mode, "n_train": len(train), "n_test": n_test,
                     "rmse_process_test": _rmse(obs_t, pro_t), "rmse_calibrated_test": _rmse(obs_t, cal_t),
                     "r2_process_test": _r2(obs_t, pro_t), "r2_calibrated_test": _r2(obs_t, cal_t),
                     "rmse_process_train": _rmse(c_end_mg_kg[train, j], proc_end[train, j]),
                     "rmse_calibrated_train": _rmse(c_end_mg_kg[train, j], cal_train[:, j]),
                     "mean_correction_mg_m2_yr": float(np.nanmean(target[:, j]))})
        preds.append(pd.DataFrame({"site": sid[test], "metal": metal, "observed": obs_t, "process": pro_t,
                                   "calibrated": cal_t}))
        ok = np.isfinite(target[:, j])
        g = GradientBoostingRegressor(**params).fit(X[ok], target[ok, j])
        models[metal] = g
        imps.append(pd.DataFrame({"metal": metal, "feature": list(features.columns),
                                  "importance": g.feature_importances_}))
    return CalibrationResult(mode, pd.DataFrame(rows), pd.concat(preds, ignore_index=True),
                             pd.concat(imps, ignore_index=True), models, list(features.columns), fill)


# ======================================================================================
# carrying capacity
# ======================================================================================
def effective_thresholds(*, guideline_mg_kg: pd.Series, metals: list[str], land_use,
                         sensitivity_weights: dict[str, float]) -> np.ndarray:
    """Guideline per cell and metal adjusted by the receptor-sensitivity weight of the land use.

    .. math:: T_{eff} = T / w_{LU}

    (a weight above 1 marks a more sensitive receptor and lowers the threshold; 1 when not given).

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
    """Remaining capacity :math:`T_{eff} - C` (mg/kg) per cell, metal (and year); negative = overloaded."""
    c = np.asarray(concentration_mg_kg, float)
    t = np.asarray(thresholds_mg_kg, float)
    return (t[..., None] if c.ndim == t.ndim + 1 else t) - c


def years_to_overload(concentration_mg_kg: np.ndarray, thresholds_mg_kg: np.ndarray) -> np.ndarray:
    """First year index at which :math:`C \\ge T_{eff}` (0: already overloaded; inf: not within the horizon).

    Parameters
    ----------
    concentration_mg_kg : (n, m, T+1).
    thresholds_mg_kg : (n, m).
    """
    over = np.asarray(concentration_mg_kg) >= np.asarray(thresholds_mg_kg)[..., None]
    first = np.argmax(over, axis=2).astype(float)
    first[~over.any(axis=2)] = np.inf
    first[np.isnan(thresholds_mg_kg)] = np.nan
    return first


def overload_summary(*, concentration_mg_kg: np.ndarray, thresholds_mg_kg: np.ndarray, land_use, metals: list[str],
                     years: list[int], scenario: str) -> pd.DataFrame:
    """Share of cells overloaded (:math:`C \\ge T_{eff}`) by land use at reported years.

    Returns rows metal, scenario, year, land_use ("all" for the domain), share_overloaded
    (fraction 0-1), median_years_to_overload (median over cells, cells never overloaded within
    the horizon counted as beyond it; NaN when the median lies beyond the horizon), n_cells,
    mean_capacity_mg_kg.
    """
    lu = np.asarray(land_use, dtype=object)
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
                rows.append({"metal": metal, "scenario": scenario, "year": int(yr), "land_use": gname,
                             "share_overloaded": float(np.mean(c >= t)),
                             "median_years_to_overload": med if np.isfinite(med) else np.nan,
                             "n_cells": int(mask.sum()), "mean_capacity_mg_kg": float(np.mean(t - c))})
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
        for i in range(n_iter):
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
                 n_sources: int, guideline: str, threshold: str) -> str:
    """Methods paragraph (pandoc markdown with formulas and citations)."""
    o = options
    M = soil_mass_kg_m2(o.depth_m, o.bulk_density_kg_m3)
    scen = "; ".join(f"*{k}*: " + (", ".join(f"{a} = {b:g}" for a, b in v.items()) or "current rates")
                     for k, v in o.scenarios.items())
    txt = [
        "**Mass balance.** The metal stock of the plough layer was followed year by year "
        f"per {'grid cell' if domain == 'grid' else 'sample'} ({n_cells} {'cells' if domain == 'grid' else 'samples'}) "
        "with a process model of input and output fluxes coupled to a machine-learning correction, "
        "following the framework of [@seed001accumulation]:",
        "$$C_{t+1} = C_t + \\frac{\\sum_i I_{i,t} - \\sum_j k_j\\,C_t + \\Delta F}{M}, \\qquad M = d\\,\\rho_b$$",
        f"with depth $d$ = {o.depth_m:g} m and bulk density $\\rho_b$ = {o.bulk_density_kg_m3:g} kg/m³ "
        f"($M$ = {M:g} kg/m²), fluxes in mg/m²/yr and $\\Delta F$ the learned correction. ",
        "**Inputs.** "
        + (f"Atmospheric deposition from {n_sources} point source(s) used a Gaussian plume with ground reflection and "
           f"Briggs {o.terrain} dispersion coefficients by Pasquill-Gifford stability class [@briggs1973; "
           "@seinfeld2016], averaged over the wind rose in the sector-averaged long-term form [@turner1970]: "
           "$\\bar C(r,0) = \\sqrt{2/\\pi}\\, f Q / (u\\,\\sigma_z\\,r\\,\\Delta\\theta)\\, "
           "\\exp(-H^2/2\\sigma_z^2)$; deposition is $v_d \\bar C(r,0) + \\Lambda f_{rain} \\int \\bar C dz$ "
           f"(dry deposition velocity and scavenging coefficient from set `{o.deposition_parameters}` [@sehmel1980; "
           f"@seinfeld2016]; rain {100 * o.rain_fraction:g} % of the time; no plume depletion or plume rise). "
           if n_sources else "No point sources were given. ")
        + ("Regional background deposition: "
           + ", ".join(f"{k} {v:g}" for k, v in o.background_deposition_g_ha_yr.items()) + " g/ha/yr. "
           if o.background_deposition_g_ha_yr else "")
        + f"Agricultural inputs (fertilizer, manure, irrigation) by land use came from set `{o.agricultural_inputs}` "
          "[@nicholson2003]"
        + (f"; floodplain sediment deposition by class of `{o.sediment_class_column}` "
           f"({', '.join(f'{k}: {v:g}' for k, v in o.sediment_deposition_kg_m2_yr.items())} kg/m²/yr) times the "
           "metal concentration of the deposited sediment" if o.sediment_class_column else "") + ".",
        "**Outputs** are linear in $C$: leaching $P\\,C/K_d$ and dissolved runoff $R\\,C/K_d$ "
        f"(percolation $P$ = {o.percolation_mm_yr:g} mm/yr, runoff by land use, $K_d$ from `{o.partition_coefficients}` "
        "[@allison2005kd]), erosion $A \\cdot ER \\cdot C$ (RUSLE soil loss $A = R K LS C P$ by land use "
        f"[@renard1997], enrichment ratio from `{o.enrichment_ratios}` [@quinton2007]) and crop offtake "
        f"$Y \\cdot TF \\cdot C$ (transfer factors from `{o.transfer_factors}` [@kabatapendias2011]).",
        "**Calibration.** "
        + {"hindcast": "The process model was run from the first to the second survey at every site; the gap to the "
                       "observed second survey, converted to a flux $\\Delta F = M (C^{obs} - C^{proc})/\\Delta t$, "
                       "was learned from covariates, coordinates and the modelled fluxes",
           "residual": f"The process model was run for {o.history_years} years from the background reference "
                       "concentrations; the spatial residual of the current survey, converted to a flux "
                       f"$\\Delta F = M (C^{{obs}} - C^{{proc}})/{o.history_years}$, was learned from covariates, "
                       "coordinates and the modelled fluxes",
           "none": "No calibration was made (no second survey and residual calibration switched off)"}[calibration_mode]
        + ("" if calibration_mode == "none" else
           f" by gradient boosting [@friedman2001; @pedregosa2011sklearn] ({o.n_estimators} trees, depth "
           f"{o.max_depth}, learning rate {o.learning_rate:g}, seeded); {100 * o.test_fraction:g} % of the sites "
           "were held out to measure skill, then the model was refit on all sites"
           + (" and its correction added to the projections." if o.apply_correction else
              "; the correction is reported as a diagnostic and not added to the projections.")),
        f"**Scenarios** over {o.horizon_years} years: {scen}. "
        f"**Carrying capacity** is $T/w_{{LU}} - C_t$ with $T$ the `{threshold}` value of guideline set "
        f"`{guideline}` and $w_{{LU}}$ the receptor-sensitivity weight of the land use"
        + (" (" + ", ".join(f"{k} {v:g}" for k, v in o.sensitivity_weights.items()) + ")"
           if o.sensitivity_weights else " (1 for all land uses)")
        + "; a cell is overloaded when $C_t \\ge T/w$, and the years to overload are the first such year. "
        f"**Uncertainty**: {o.n_monte_carlo} seeded Monte Carlo runs with lognormal multipliers (median 1; geometric SD "
        + ", ".join(f"{k} {v:g}" for k, v in o.uncertainty_gsd.items())
        + ") give P5/P50/P95 bands; a one-at-a-time analysis multiplies and divides each group by its geometric SD.",
    ]
    return "\n\n".join(txt)


def _lu_colors(classes):
    pal = {"cultivated": "#d4a017", "grassland": "#6aa84f", "orchard": "#b45f06", "forest": "#274e13",
           "residential": "#cc0000", "industrial": "#674ea7", "other": "#999999", "all": "#000000"}
    return {c: pal.get(c, "#555555") for c in classes}


def plot_timeseries(bands: pd.DataFrame, *, scenario: str, metals: list[str], thresholds: dict[str, float]):
    """Mean concentration per land use over time with the Monte Carlo P5-P95 band, one panel per metal."""
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
            ax.axhline(t, color="k", ls="--", lw=0.8)
        ax.set_title(metal)
        ax.set_xlabel("years after survey")
        ax.set_ylabel("mg/kg")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def plot_maps(*, x, y, concentration_mg_kg: np.ndarray, thresholds_mg_kg: np.ndarray, years: list[int], metal: str,
              metals: list[str], sources: pd.DataFrame | None = None, grid: bool = True):
    """Maps of C / T_eff for one metal at year 0 and the reported years (baseline)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    j = metals.index(metal)
    yrs = [0] + list(years)
    ncol = min(len(yrs), 3)
    nrow = int(np.ceil(len(yrs) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(7, 2.4 * nrow + 0.3), squeeze=False)
    ratio = concentration_mg_kg[:, j, :] / thresholds_mg_kg[:, j][:, None]
    vmax = max(float(np.nanpercentile(ratio[:, yrs], 99)), 1.05)
    norm = TwoSlopeNorm(vmin=0, vcenter=1.0, vmax=vmax)
    for ax, yr in zip(axes.flat, yrs):
        sc = ax.scatter(x, y, c=ratio[:, yr], s=6 if grid else 14, marker="s" if grid else "o", cmap="RdYlGn_r",
                        norm=norm, linewidths=0)
        if sources is not None and len(sources):
            ax.plot(sources["x"], sources["y"], "k^", ms=5)
        ax.set_title(f"year {yr}")
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(yrs):]:
        ax.axis("off")
    fig.colorbar(sc, ax=axes, shrink=0.8, label=f"{metal} / threshold")
    return fig


def plot_flux_budget(budget: pd.DataFrame, *, metals: list[str]):
    """Stacked bars of mean inputs (positive) and outputs (negative) by land use, one panel per metal."""
    import matplotlib.pyplot as plt

    n = len(metals)
    ncol = min(n, 3)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(7, 2.5 * nrow + 0.5), squeeze=False)
    b = budget[budget["direction"].isin(["input", "output"]) & (budget["land_use"] != "all")]
    fluxes = list(dict.fromkeys(b["flux"]))
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
                ax.bar(classes, v, bottom=pos, color=colors[f], label=f)
                pos += v
            else:
                ax.bar(classes, -v, bottom=neg, color=colors[f], label=f)
                neg -= v
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(metal)
        ax.set_ylabel("mg/m²/yr")
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    h, lab = axes.flat[0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_calibration(pred: pd.DataFrame, *, metals: list[str]):
    """Observed vs predicted end-state concentrations at held-out sites: process model and calibrated model."""
    import matplotlib.pyplot as plt

    n = len(metals)
    fig, axes = plt.subplots(1, n, figsize=(min(7, 2.0 * n + 0.5), 2.4), squeeze=False)
    for ax, metal in zip(axes.flat, metals):
        s = pred[pred["metal"] == metal]
        ax.scatter(s["observed"], s["process"], s=8, color="#999999", label="process")
        ax.scatter(s["observed"], s["calibrated"], s=8, color="#1f77b4", label="calibrated")
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
    """Tornado chart of the one-at-a-time sensitivity (percent change of the mean at the horizon)."""
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
        ax.barh(yy, s["low_change_percent"], color="#6fa8dc", label="÷ GSD")
        ax.barh(yy, s["high_change_percent"], color="#e06666", label="× GSD")
        ax.set_yticks(yy, s["parameter"], fontsize=7)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(metal)
        ax.set_xlabel("change of mean C (%)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def plot_overload(cc: pd.DataFrame, bands: pd.DataFrame, *, metal: str, scenarios: list[str]):
    """Overloaded share by land use and year for one metal, per scenario, with Monte Carlo P5-P95 whiskers."""
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
        ax.set_title(sc, fontsize=9)
        ax.set_xlabel("years after survey")
    axes.flat[0].set_ylabel(f"{metal} overloaded (% of cells)")
    axes.flat[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# ======================================================================================
# stage driver: everything the notebook needs, from validated region data
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


def _map_land_use(raw: pd.Series, o: AccumulationOptions, notes: list[str]) -> np.ndarray:
    s = raw.astype(object)
    out = []
    unknown = set()
    for v in s:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(o.default_land_use)
            continue
        key = str(v).strip()
        cls = o.land_use_map.get(key, key if key in LAND_USES else None)
        if cls is None:
            unknown.add(key)
            cls = "other"
        out.append(cls)
    if unknown:
        notes.append(f"Land-use codes without a class were counted as 'other': {', '.join(sorted(unknown))}.")
    n_missing = int(s.isna().sum())
    if n_missing:
        notes.append(f"{n_missing} location(s) without a land use were taken as '{o.default_land_use}'.")
    return np.array(out, dtype=object)


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


def run_accumulation(*, data, params, options: AccumulationOptions, seed: int) -> AccumulationRun:
    """Build the process model, calibrate it and project every scenario (stage ``accumulation``).

    Parameters
    ----------
    data : :class:`hmlib.io.RegionData`.
    params : :class:`hmlib.params.RegionParams`.
    options : validated :class:`AccumulationOptions`.
    seed : seed of the calibration split and boosting.
    """
    o = options
    notes: list[str] = []
    medium = o.medium or data.media[0]
    if medium not in data.media:
        raise ValueError(f"stages.accumulation.medium {medium!r} is not a medium of the region {data.media}")
    unit = params.data.coordinate_unit
    if unit == "degree":
        raise ValueError("the accumulation stage needs projected coordinates in m or km (data.coordinate_unit), "
                         "got 'degree'")
    to_m = 1000.0 if unit == "km" else 1.0
    sites = data.sites(medium)
    conc = data.wide(medium)
    metals = [m for m in data.metals if m in conc.columns]
    for c in (o.land_use_column, o.survey_column, o.site_column, o.sediment_class_column):
        if c and c not in sites.columns:
            raise ValueError(f"column {c!r} named in stages.accumulation is not a sample covariate; "
                             f"expected one of {sorted(set(sites.columns) - {'medium', 'source_file', 'source_row'})}")
    ok = conc[metals].notna().all(axis=1)
    if (~ok).any():
        notes.append(f"{int((~ok).sum())} sample(s) with a missing metal value were left out.")
    sites, conc = sites[ok.to_numpy()], conc[ok]
    # surveys
    if o.survey_column:
        yrs = pd.to_numeric(sites[o.survey_column], errors="raise")
        last, first = int(yrs.max()), int(yrs.min())
        current = (yrs == last).to_numpy()
    else:
        last = first = None
        current = np.ones(len(sites), bool)
    start_year = o.start_year if o.start_year is not None else last
    cur_sites, cur_conc = sites[current], conc[current]
    sources = read_point_sources(params.resolve(o.point_sources), metals=metals) if o.point_sources else None
    if sources is not None:
        sources[["x", "y"]] = sources[["x", "y"]] * 1.0
    rose = read_wind_rose(params.resolve(o.wind_rose)) if o.wind_rose else None
    src_m = None
    if sources is not None:
        src_m = sources.copy()
        src_m["x"], src_m["y"] = sources["x"] * to_m, sources["y"] * to_m
    # domain
    grid = data.grid
    grid_ok = grid is not None and all(c is None or c in grid.columns
                                       for c in (o.land_use_column, o.sediment_class_column))
    if o.domain == "grid" and not grid_ok:
        raise ValueError("stages.accumulation.domain is 'grid' but the region has no grid or the grid lacks "
                         f"the land-use / sediment-class columns ({o.land_use_column}, {o.sediment_class_column})")
    domain = "grid" if (o.domain == "grid" or (o.domain == "auto" and grid_ok)) else "samples"

    def _lu(frame):
        if o.land_use_column:
            return _map_land_use(frame[o.land_use_column], o, notes)
        return np.full(len(frame), o.default_land_use, dtype=object)

    def _model(frame, lu):
        return build_flux_model(x_m=frame["x"].to_numpy(float) * to_m, y_m=frame["y"].to_numpy(float) * to_m,
                                land_use=lu, metals=metals, options=o, sources=src_m, wind_rose=rose,
                                sediment_class=(frame[o.sediment_class_column].to_numpy()
                                                if o.sediment_class_column else None))

    cur_lu = _lu(cur_sites)
    cur_model = _model(cur_sites, cur_lu)
    if domain == "grid":
        ids = grid["cell_id"].astype(str).to_numpy() if "cell_id" in grid else np.array(
            [f"C{i + 1:05d}" for i in range(len(grid))])
        dom_frame = grid.reset_index(drop=True)
        dom_lu = _lu(dom_frame)
        dom_model = _model(dom_frame, dom_lu)
        initial = idw_interpolate(x_from=cur_sites["x"].to_numpy(float), y_from=cur_sites["y"].to_numpy(float),
                                  values=cur_conc[metals].to_numpy(float), x_to=dom_frame["x"].to_numpy(float),
                                  y_to=dom_frame["y"].to_numpy(float))
        notes.append("Grid cells start from an inverse-distance-weighted interpolation (8 nearest samples, power 2) "
                     "of the last survey.")
    else:
        ids = cur_sites.index.astype(str).to_numpy()
        dom_frame, dom_lu, dom_model = cur_sites.reset_index(), cur_lu, cur_model
        initial = cur_conc[metals].to_numpy(float)
    # calibration
    mode = o.calibration
    has_pairs = o.survey_column is not None and o.site_column is not None and first != last
    if mode == "auto":
        mode = "hindcast" if has_pairs else "residual"
    if mode == "hindcast" and not has_pairs:
        raise ValueError("calibration 'hindcast' needs survey_column and site_column with two survey years")
    feat_cols = list(o.calibration_features)
    miss = [c for c in feat_cols if c not in sites.columns]
    if miss:
        raise ValueError(f"calibration_features {miss} are not sample covariates")
    if domain == "grid":
        dropped = [c for c in feat_cols if c not in dom_frame.columns]
        if dropped:
            notes.append(f"Calibration features not on the grid were not used: {', '.join(dropped)}.")
            feat_cols = [c for c in feat_cols if c in dom_frame.columns]
    calib = None
    if mode == "hindcast":
        a = sites[(yrs == first).to_numpy()].reset_index().set_index(o.site_column)
        b = sites[(yrs == last).to_numpy()].reset_index().set_index(o.site_column)
        common = a.index.intersection(b.index)
        if len(common) < 10:
            raise ValueError(f"only {len(common)} sites were sampled in both surveys {first} and {last}; "
                             "the hindcast calibration needs at least 10")
        a, b = a.loc[common], b.loc[common]
        ca = conc.loc[a["sample_id"], metals].to_numpy(float)
        cb = conc.loc[b["sample_id"], metals].to_numpy(float)
        lu_a = _lu(a)
        m_a = _model(a, lu_a)
        inp = scenario_inputs(m_a, scenario={}, n_years=last - first, start_year=first)
        feats = calibration_features(x=a["x"], y=a["y"], covariates=a[feat_cols] if feat_cols else None,
                                     land_use=lu_a, model=m_a, scenario_input=inp)
        calib = calibrate_net_flux(
            model=m_a, features=feats, c_start_mg_kg=ca, c_end_mg_kg=cb, years=last - first,
            scenario_input_fn=lambda mm, T: scenario_inputs(mm, scenario={}, n_years=T, start_year=first),
            mode="hindcast", seed=seed, test_fraction=o.test_fraction, n_estimators=o.n_estimators,
            max_depth=o.max_depth, learning_rate=o.learning_rate, site_ids=np.asarray(common))
    elif mode == "residual":
        from .reference import background_values

        bg = background_values(params.references.background, medium="soil" if medium != "sediment" else medium)
        missing_bg = [m for m in metals if m not in bg.index]
        if missing_bg:
            raise ValueError(f"background set {params.references.background} lacks {missing_bg} (residual calibration)")
        c_start = np.broadcast_to(bg.reindex(metals).to_numpy(float), (len(cur_sites), len(metals))).copy()
        h0 = None if start_year is None else start_year - o.history_years
        inp = scenario_inputs(cur_model, scenario={}, n_years=o.history_years, start_year=h0)
        feats = calibration_features(x=cur_sites["x"], y=cur_sites["y"],
                                     covariates=cur_sites[feat_cols] if feat_cols else None, land_use=cur_lu,
                                     model=cur_model, scenario_input=inp)
        calib = calibrate_net_flux(
            model=cur_model, features=feats, c_start_mg_kg=c_start, c_end_mg_kg=initial if domain == "samples"
            else cur_conc[metals].to_numpy(float), years=o.history_years,
            scenario_input_fn=lambda mm, T: scenario_inputs(mm, scenario={}, n_years=T, start_year=h0),
            mode="residual", seed=seed, test_fraction=o.test_fraction, n_estimators=o.n_estimators,
            max_depth=o.max_depth, learning_rate=o.learning_rate, site_ids=cur_sites.index.to_numpy())
    correction = None
    if calib is not None and o.apply_correction:
        inp_dom = scenario_inputs(dom_model, scenario={}, n_years=o.horizon_years, start_year=start_year)
        dfeats = calibration_features(x=dom_frame["x"], y=dom_frame["y"],
                                      covariates=dom_frame[feat_cols] if feat_cols else None, land_use=dom_lu,
                                      model=dom_model, scenario_input=inp_dom)
        correction = calib.predict(dfeats, metals)
    guide, thr = guideline_series(params, threshold=o.guideline_threshold, medium=medium, metals=metals)
    thresholds = effective_thresholds(guideline_mg_kg=guide, metals=metals, land_use=dom_lu,
                                      sensitivity_weights=o.sensitivity_weights)
    projections = {}
    for i, (name, spec) in enumerate(o.scenarios.items()):
        projections[name] = run_model(dom_model, initial_mg_kg=initial, scenario=spec, n_years=o.horizon_years,
                                      start_year=start_year, correction_mg_m2_yr=correction, return_fluxes=(i == 0))
    run = AccumulationRun(domain, "cell_id" if domain == "grid" else "sample_id", ids,
                          dom_frame["x"].to_numpy(float), dom_frame["y"].to_numpy(float), dom_lu, metals, dom_model,
                          initial, start_year, calib, correction, thresholds, guide, projections, sources, mode,
                          list(dict.fromkeys(notes)),
                          threshold_name=thr)
    return run


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
    """Overload summary (see :func:`overload_summary`) for every scenario."""
    return pd.concat([overload_summary(concentration_mg_kg=pr.concentration_mg_kg, thresholds_mg_kg=run.thresholds_mg_kg,
                                       land_use=run.land_use, metals=run.metals, years=[0] + list(years), scenario=s)
                      for s, pr in run.projections.items()], ignore_index=True)


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


__all__ += ["AccumulationRun", "guideline_series", "run_accumulation", "projection_table",
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
    return t.reset_index().rename(columns={"flux": "Flux"})


def calibration_display(cal: CalibrationResult) -> pd.DataFrame:
    """Reader's calibration table (held-out and training RMSE, held-out R²)."""
    return cal.metrics[["metal", "n_train", "n_test", "rmse_process_test", "rmse_calibrated_test", "r2_process_test",
                        "r2_calibrated_test", "rmse_process_train", "rmse_calibrated_train",
                        "mean_correction_mg_m2_yr"]].rename(columns={
        "metal": "Metal", "n_train": "n train", "n_test": "n test",
        "rmse_process_test": "Held-out RMSE, process (mg/kg)", "rmse_calibrated_test": "Held-out RMSE, calibrated (mg/kg)",
        "r2_process_test": "Held-out R², process", "r2_calibrated_test": "Held-out R², calibrated",
        "rmse_process_train": "Training RMSE, process (mg/kg)",
        "rmse_calibrated_train": "Training RMSE, calibrated (mg/kg)",
        "mean_correction_mg_m2_yr": "Mean ΔF (mg/m²/yr)"})


def capacity_display(cc: pd.DataFrame, bands: pd.DataFrame, *, year: int) -> pd.DataFrame:
    """Reader's overload table at ``year``: metal x land use rows, one column per scenario (percent, P5-P95)."""
    a = cc[cc["year"] == year].copy()
    if len(bands):
        a = a.merge(bands.rename(columns={"p5": "s5", "p50": "s50", "p95": "s95"}),
                    on=["scenario", "metal", "land_use", "year"], how="left")
    else:
        a["s5"] = a["s95"] = np.nan
    a["cell"] = [f"{100 * v:.0f} ({100 * lo:.0f}-{100 * hi:.0f})" if np.isfinite(lo) else f"{100 * v:.0f}"
                 for v, lo, hi in zip(a["share_overloaded"], a["s5"], a["s95"])]
    t = a.pivot_table(index=["metal", "land_use"], columns="scenario", values="cell", aggfunc="first", sort=False)
    med = a[a["scenario"] == a["scenario"].iloc[0]].set_index(["metal", "land_use"])["median_years_to_overload"]
    t.columns = [f"{c}: overloaded % (P5-P95)" for c in t.columns]
    t["Median years to overload (first scenario)"] = med.reindex(t.index).to_numpy()
    t["Cells"] = a[a["scenario"] == a["scenario"].iloc[0]].set_index(["metal", "land_use"])["n_cells"].reindex(
        t.index).to_numpy()
    return t.reset_index().rename(columns={"metal": "Metal", "land_use": "Land use"})


def projection_display(proj: pd.DataFrame) -> pd.DataFrame:
    """Domain mean concentration by scenario, metal and year (reader's version)."""
    t = proj.groupby(["metal", "scenario", "year"], sort=False)["concentration"].mean().unstack("year")
    t.columns = [f"year {c} (mg/kg)" for c in t.columns]
    return t.reset_index().rename(columns={"metal": "Metal", "scenario": "Scenario"})


def results_text(run: AccumulationRun, *, budget: pd.DataFrame, cc: pd.DataFrame, horizon: int) -> str:
    """Results paragraph: dominant fluxes, calibration skill, overload at the horizon."""
    dom = dominant_fluxes(budget)
    parts = ["**Dominant fluxes.** " + "; ".join(
        f"{r.metal}: inputs mainly {str(r.main_input).replace('_', ' ')} ({r.main_input_share_percent:.0f} %), "
        f"outputs mainly {str(r.main_output).replace('_', ' ')} ({r.main_output_share_percent:.0f} %)"
        for r in dom.itertuples()) + "."]
    a = budget[(budget["land_use"] == "all") & (budget["flux"] == "ml_correction")]
    if len(a):
        tot = budget[(budget["land_use"] == "all") & (budget["direction"] == "input")].groupby("metal")["mean_mg_m2_yr"].sum()
        parts.append("The learned ML correction added " + ", ".join(
            f"{r.metal} {r.mean_mg_m2_yr:.3g} mg/m²/yr ({100 * r.mean_mg_m2_yr / tot[r.metal]:.0f} % of the process inputs)"
            for r in a.itertuples()) + " on average: flux missing from the process model.")
    if run.calibration is not None:
        m = run.calibration.metrics
        better = m[m["rmse_calibrated_test"] < m["rmse_process_test"]]["metal"].tolist()
        parts.append(
            f"**Calibration ({run.calibration.mode}).** The held-out RMSE of the calibrated model was lower than the "
            f"process model's for {len(better)} of {len(m)} metals"
            + (f" ({', '.join(better)})" if better else "") + "; "
            + "; ".join(f"{r.metal} {r.rmse_process_test:.3g} → {r.rmse_calibrated_test:.3g} mg/kg"
                        for r in m.itertuples()) + ".")
    first = cc["scenario"].iloc[0]
    a = cc[(cc["year"] == horizon) & (cc["land_use"] == "all")]
    a0 = cc[(cc["year"] == 0) & (cc["land_use"] == "all") & (cc["scenario"] == first)].set_index("metal")
    txt = []
    for metal, s in a.groupby("metal", sort=False):
        txt.append(f"{metal} {100 * a0.loc[metal, 'share_overloaded']:.0f} % now, "
                   + ", ".join(f"{100 * v:.0f} % ({sc})" for sc, v in zip(s["scenario"], s["share_overloaded"]))
                   + f" after {horizon} years")
    parts.append(f"**Overload** (share of {'cells' if run.domain == 'grid' else 'samples'} at or above the "
                 f"sensitivity-adjusted {run.threshold_name} value): " + "; ".join(txt) + ".")
    return "\n\n".join(parts)


__all__ += ["relevant_groups", "choose_map_metal", "budget_display", "calibration_display", "capacity_display", "projection_display",
            "results_text"]
