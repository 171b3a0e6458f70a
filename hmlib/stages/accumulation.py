"""Stage ``accumulation``: long-term accumulation: flux model, ML calibration and environmental carrying capacity.

Composes the numerics of :mod:`hmlib.accumulation` (process model, calibration, projections,
carrying capacity, Monte Carlo, sensitivity) and presents them: validation and skill of the
calibration first, then fluxes, projections, carrying capacity (mg/kg and kg/ha) and uncertainty.
See :mod:`hmlib.stages.base` for the contract.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from .. import accumulation as acc
from ..accumulation import LAND_USES, SCENARIO_KEYS, UNCERTAIN_GROUPS
from ..context import StageContext
from ..params import StageOptions
from .base import Read, StageSpec, needs_guideline

__all__ = ["Options", "SPEC", "Result", "check", "model_run", "run", "report"]


class Options(StageOptions):
    """Options of the ``accumulation`` stage (``stages: accumulation:`` in params)."""

    domain: Literal["auto", "grid", "samples"] = Field(
        default="auto", description="project per grid cell or per sample ('auto': grid when it has the land-use column)")
    medium: str | None = Field(default=None, description="medium of the surveys (default: the first medium)")
    soil_layer: str = Field(default="Topsoil_Orgiazzi2018",
                            description="soil_layer reference set giving the plough-layer depth and bulk density")
    depth_m: float | None = Field(default=None, gt=0, le=2.0,
                                  description="plough-layer depth (m); default: the soil_layer reference set (0.2 m)")
    bulk_density_kg_m3: float | None = Field(default=None, ge=300, le=2200,
                                             description="dry bulk density (kg/m3); default: the soil_layer "
                                                         "reference set (1300 kg/m3)")
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
        default="auto", description="ML calibration: hindcast between two surveys, residuals of one survey "
                                    "against the region's own background, or none ('auto': hindcast when two "
                                    "surveys pair the sites, otherwise none)")
    history_years: int = Field(default=50, ge=1, le=1000,
                               description="residual calibration: years of accumulation from the background")
    calibration_features: list[str] = Field(default_factory=list,
                                            description="covariates used by the calibration model (plus the "
                                                        "modelled fluxes and land use)")
    calibration_coordinates: bool = Field(default=False, description="also give the coordinates to the "
                                          "calibration model (they carry spatial autocorrelation, not mechanisms)")
    apply_correction: bool | None = Field(
        default=None, description="add the learned flux correction to projections (default: yes for the hindcast "
                                  "calibration, no for the residual one, which is a diagnostic)")
    cv_scheme: Literal["spatial_block", "random"] = Field(
        default="spatial_block", description="cross-validation folds that measure the calibration's skill: whole "
                                             "spatial blocks (k-means clusters of the coordinates) or random sites")
    n_folds: int = Field(default=5, ge=3, le=20, description="cross-validation folds of the calibration")
    n_spatial_blocks: int = Field(default=20, ge=3, le=200,
                                  description="number of spatial blocks of the cross-validation")
    n_estimators: int = Field(default=300, ge=10, le=5000, description="boosting rounds of the calibration model")
    max_depth: int = Field(default=3, ge=1, le=10, description="tree depth of the calibration model")
    learning_rate: float = Field(default=0.05, gt=0, le=1, description="shrinkage of the calibration model")
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
    known_truth: str | None = Field(default=None, description="generated demo regions only: CSV of the generator's "
                                    "true flux bias (site_id, metal, bias_mg_m2_yr), compared with what the "
                                    "calibration recovered")

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


SPEC = StageSpec(
    name="accumulation",
    notebook="80_accumulation.ipynb",
    title="Long-term accumulation: flux model, ML calibration and environmental carrying capacity",
    options=Options,
    # the residual diagnostic starts from the region's own background (adaptive, else the baselines)
    reads=(Read("adaptive_background", required=False), Read("baselines", required=False)),
    writes=(),
    requires=(needs_guideline,),
)


@dataclass
class Result:
    """What the accumulation stage computed.

    Attributes
    ----------
    run : :class:`hmlib.accumulation.AccumulationRun` (process model, calibration, projections).
    budget : flux budget of the first scenario (:func:`hmlib.accumulation.flux_budget`).
    projection : concentration per cell, metal, scenario and reported year (long).
    capacity : overload and capacity by land use (:func:`hmlib.accumulation.capacity_tables`).
    carrying_capacity : the tidy carrying-capacity table (mg/kg and kg/ha, Monte Carlo P5-P95,
        years to overload; :func:`hmlib.accumulation.carrying_capacity_table`).
    capacity_cells : per cell and metal: headroom today (mg/kg, kg/ha) and years to overload.
    monte_carlo : :class:`hmlib.accumulation.MonteCarloResult`.
    sensitivity : one-at-a-time sensitivity.
    truth : generated demo regions: the learned correction against the generator's known flux
        bias (:func:`hmlib.accumulation.flux_truth_recovery`), else None.
    map_metal : metal shown in the maps.
    """

    run: acc.AccumulationRun
    budget: pd.DataFrame
    projection: pd.DataFrame
    capacity: pd.DataFrame
    carrying_capacity: pd.DataFrame
    capacity_cells: pd.DataFrame
    monte_carlo: acc.MonteCarloResult
    sensitivity: pd.DataFrame
    truth: pd.DataFrame | None
    map_metal: str

    @property
    def calibration_skill(self) -> pd.DataFrame | None:
        """The reader's table of the calibration's cross-validated skill (None without a calibration)."""
        cal = self.run.calibration
        return None if cal is None else acc.calibration_display(cal)


def check(ctx: StageContext) -> list[str]:
    """Problems of the options against the region's data: columns, files, medium, calibration needs."""
    o, p, data = ctx.options, ctx.params, ctx.data
    key = "stages.accumulation"
    problems = []
    medium = o.medium or data.media[0]
    if medium not in data.media:
        problems.append(f"{key}.medium: got {medium!r}; expected one of {', '.join(data.media)}")
        return problems
    if p.data.coordinate_unit == "degree":
        problems.append("data.coordinate_unit: got 'degree'; expected projected coordinates in m or km for the "
                        "plume and the mass balance")
    cols = set(data.sites(medium).columns)
    for name in ("land_use_column", "survey_column", "site_column", "sediment_class_column"):
        c = getattr(o, name)
        if c and c not in cols:
            problems.append(f"{key}.{name}: got {c!r}; expected a sample column ({', '.join(sorted(p.data.covariates))})")
    bad = [c for c in o.calibration_features if c not in cols]
    if bad:
        problems.append(f"{key}.calibration_features: got {bad}; expected sample columns "
                        f"({', '.join(sorted(p.data.covariates))})")
    if o.calibration == "hindcast" and not (o.survey_column and o.site_column):
        problems.append(f"{key}.calibration: got 'hindcast'; expected survey_column and site_column naming the "
                        "survey year and the site pairing two surveys")
    for name in ("point_sources", "wind_rose", "known_truth"):
        f = getattr(o, name)
        if f and not p.resolve(f).is_file():
            problems.append(f"{key}.{name}: got {f!r}; expected an existing CSV file")
    if o.domain == "grid" and (data.grid is None or (o.land_use_column and o.land_use_column not in data.grid.columns)):
        problems.append(f"{key}.domain: got 'grid'; expected a prediction grid with the land-use column")
    try:
        acc.guideline_series(p, threshold=o.guideline_threshold, medium=medium, metals=data.metals)
    except ValueError as e:
        problems.append(f"{key}.guideline_threshold: got {o.guideline_threshold!r}; expected {e}")
    return problems


def _map_land_use(raw: pd.Series, o: Options, notes: list[str]) -> np.ndarray:
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
        notes.append(f"{n_missing} {'location' if n_missing == 1 else 'locations'} without a land use "
                     f"{'was' if n_missing == 1 else 'were'} taken as {o.default_land_use}"
                     f"{'' if o.default_land_use.endswith('land') else ' land'}.")
    return np.array(out, dtype=object)


def model_run(*, data, params, options: Options, seed: int,
                     background_samples: pd.DataFrame | None = None,
                     background_baselines: pd.DataFrame | None = None) -> acc.AccumulationRun:
    """Build the process model, calibrate it and project every scenario (from the region's data).

    Calibration: ``auto`` makes a hindcast when two surveys pair the sites and no calibration
    otherwise. The residual calibration (only when asked for) starts the history run from the
    region's own background (:func:`hmlib.accumulation.region_background`), never from a crustal reference, and its
    correction is a diagnostic: it is added to projections only with ``apply_correction=True``.
    A learned correction is applied only for metals where it lowered the held-out error.

    Parameters
    ----------
    data : :class:`hmlib.io.RegionData`.
    params : :class:`hmlib.params.RegionParams`.
    options : validated :class:`Options`.
    seed : seed of the calibration hold-out and boosting.
    background_samples : the baselines section's ``adaptive_background`` table, or None.
    background_baselines : the baselines section's ``baselines`` table, or None.

    Returns
    -------
    :class:`hmlib.accumulation.AccumulationRun`.
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
        n_out = int((~ok).sum())
        notes.append(f"{n_out} {'sample' if n_out == 1 else 'samples'} with a missing metal value "
                     f"{'was' if n_out == 1 else 'were'} left out.")
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
    sources = acc.read_point_sources(params.resolve(o.point_sources), metals=metals) if o.point_sources else None
    if sources is not None:
        sources[["x", "y"]] = sources[["x", "y"]] * 1.0
    rose = acc.read_wind_rose(params.resolve(o.wind_rose)) if o.wind_rose else None
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
        return acc.build_flux_model(x_m=frame["x"].to_numpy(float) * to_m, y_m=frame["y"].to_numpy(float) * to_m,
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
        initial = acc.idw_interpolate(x_from=cur_sites["x"].to_numpy(float), y_from=cur_sites["y"].to_numpy(float),
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
        mode = "hindcast" if has_pairs else "none"
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
    background_source = None
    cal_kw = dict(seed=seed, n_folds=o.n_folds, n_estimators=o.n_estimators, max_depth=o.max_depth,
                  learning_rate=o.learning_rate, cv_scheme=o.cv_scheme, n_spatial_blocks=o.n_spatial_blocks)
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
        inp = acc.scenario_inputs(m_a, scenario={}, n_years=last - first, start_year=first)
        feats = acc.calibration_features(x=a["x"], y=a["y"], covariates=a[feat_cols] if feat_cols else None,
                                     land_use=lu_a, model=m_a, scenario_input=inp,
                                     coordinates=o.calibration_coordinates)
        calib = acc.calibrate_net_flux(
            model=m_a, features=feats, c_start_mg_kg=ca, c_end_mg_kg=cb, years=last - first,
            scenario_input_fn=lambda mm, T: acc.scenario_inputs(mm, scenario={}, n_years=T, start_year=first),
            mode="hindcast", site_ids=np.asarray(common), x=a["x"].to_numpy(float), y=a["y"].to_numpy(float),
            **cal_kw)
    elif mode == "residual":
        try:
            c_start, background_source = acc.region_background(
                sample_ids=cur_sites.index, metals=metals, medium=medium, adaptive=background_samples,
                baselines=background_baselines)
        except ValueError as e:
            notes.append("The residual diagnostic was not run: it starts from the region's own background (the "
                         "adaptive background or the geochemical baselines of the baselines section), and "
                         f"{str(e)[0].lower() + str(e)[1:]}.")
            mode = "none"
    if mode == "residual":
        h0 = None if start_year is None else start_year - o.history_years
        inp = acc.scenario_inputs(cur_model, scenario={}, n_years=o.history_years, start_year=h0)
        feats = acc.calibration_features(x=cur_sites["x"], y=cur_sites["y"],
                                     covariates=cur_sites[feat_cols] if feat_cols else None, land_use=cur_lu,
                                     model=cur_model, scenario_input=inp, coordinates=o.calibration_coordinates)
        calib = acc.calibrate_net_flux(
            model=cur_model, features=feats, c_start_mg_kg=c_start, c_end_mg_kg=cur_conc[metals].to_numpy(float),
            years=o.history_years,
            scenario_input_fn=lambda mm, T: acc.scenario_inputs(mm, scenario={}, n_years=T, start_year=h0),
            mode="residual", site_ids=cur_sites.index.to_numpy(), x=cur_sites["x"].to_numpy(float),
            y=cur_sites["y"].to_numpy(float), **cal_kw)
    apply = (mode == "hindcast") if o.apply_correction is None else bool(o.apply_correction)
    correction = None
    if calib is not None and apply:
        inp_dom = acc.scenario_inputs(dom_model, scenario={}, n_years=o.horizon_years, start_year=start_year)
        dfeats = acc.calibration_features(x=dom_frame["x"], y=dom_frame["y"],
                                      covariates=dom_frame[feat_cols] if feat_cols else None, land_use=dom_lu,
                                      model=dom_model, scenario_input=inp_dom, coordinates=o.calibration_coordinates)
        correction = calib.predict(dfeats, metals)
        skilled = calib.metrics.set_index("metal")["skilled"].reindex(metals).fillna(False).to_numpy(bool)
        if not skilled.all():
            notes.append("The learned correction was not applied to "
                         + ", ".join(m for m, k in zip(metals, skilled) if not k)
                         + ": it did not lower the held-out error of the process model.")
            correction[:, ~skilled] = 0.0
        if not skilled.any():
            correction = None
    guide, thr = acc.guideline_series(params, threshold=o.guideline_threshold, medium=medium, metals=metals)
    thresholds = acc.effective_thresholds(guideline_mg_kg=guide, metals=metals, land_use=dom_lu,
                                      sensitivity_weights=o.sensitivity_weights)
    projections = {}
    for i, (name, spec) in enumerate(o.scenarios.items()):
        projections[name] = acc.run_model(dom_model, initial_mg_kg=initial, scenario=spec, n_years=o.horizon_years,
                                      start_year=start_year, correction_mg_m2_yr=correction, return_fluxes=(i == 0))
    run = acc.AccumulationRun(domain, "cell_id" if domain == "grid" else "sample_id", ids,
                          dom_frame["x"].to_numpy(float), dom_frame["y"].to_numpy(float), dom_lu, metals, dom_model,
                          initial, start_year, calib, correction, thresholds, guide, projections, sources, mode,
                          list(dict.fromkeys(notes)),
                          threshold_name=thr, correction_applied=correction is not None,
                          background_source=background_source,
                          soil_layer=acc.soil_layer_values(o.soil_layer, depth_m=o.depth_m,
                                                       bulk_density_kg_m3=o.bulk_density_kg_m3))
    return run


def run(ctx: StageContext) -> Result:
    """Process model, calibration, scenario projections, carrying capacity, Monte Carlo and sensitivity."""
    o, p = ctx.options, ctx.params
    residual = o.calibration == "residual"
    r = model_run(data=ctx.data, params=p, options=o, seed=ctx.seed,
                             background_samples=ctx.read_table("adaptive_background") if residual else None,
                             background_baselines=ctx.read_table("baselines") if residual else None)
    base, H = list(o.scenarios)[0], o.horizon_years
    budget = acc.flux_budget(r.projections[base], metals=r.metals, land_use=r.land_use,
                             soil_mass_kg_m2=r.model.soil_mass_kg_m2)
    cc = acc.capacity_tables(r, years=o.report_years)
    mc = acc.monte_carlo(model=r.model, initial_mg_kg=r.initial_mg_kg, scenarios=o.scenarios, n_years=H,
                         start_year=r.start_year, thresholds_mg_kg=r.thresholds_mg_kg, report_years=o.report_years,
                         gsd=o.uncertainty_gsd, n_iter=o.n_monte_carlo, rng=ctx.rng(80),
                         correction_mg_m2_yr=r.correction_mg_m2_yr, cell_ids=r.ids)
    oat = acc.oat_sensitivity(model=r.model, initial_mg_kg=r.initial_mg_kg, scenario=o.scenarios[base], n_years=H,
                              start_year=r.start_year, gsd=o.uncertainty_gsd, correction_mg_m2_yr=r.correction_mg_m2_yr)
    truth = None
    if o.known_truth and r.calibration is not None:
        truth = acc.flux_truth_recovery(r.calibration, acc.read_flux_truth(p.resolve(o.known_truth)))
    return Result(run=r, budget=budget, projection=acc.projection_table(r, years=o.report_years), capacity=cc,
                  carrying_capacity=acc.carrying_capacity_table(cc, mc.overload_bands, soil_layer=r.soil_layer),
                  capacity_cells=acc.capacity_cells(r, scenario=base), monte_carlo=mc, sensitivity=oat, truth=truth,
                  map_metal=acc.choose_map_metal(cc, scenario=base, year=H, preferred=o.map_metal))


def report(ctx: StageContext, result: Result) -> None:
    """The accumulation section: methods; calibration skill (before any interpretation) and a demo's known
    truth; fluxes; projections and carrying capacity with their Monte Carlo ranges; what drives the
    uncertainty. Diagnostics, long tables and the sensitivity chart go to the appendix."""
    o, p, out = ctx.options, ctx.params, ctx.out
    r = result.run
    base, H = list(o.scenarios)[0], o.horizon_years
    base_txt = base.replace("_", " ")
    unit_word = "cells" if r.domain == "grid" else "samples"
    thr = f"{acc.threshold_label(r.threshold_name)}"
    out.markdown("## Methods")
    out.markdown(acc.methods_text(options=o, domain=r.domain, n_cells=len(r.ids), calibration_mode=r.calibration_mode,
                                  n_sources=0 if r.sources is None else len(r.sources), guideline=p.references.guideline,
                                  threshold=r.threshold_name, soil_layer=r.soil_layer,
                                  correction_applied=r.correction_applied, background_source=r.background_source,
                                  feature_labels={f: p.data.covariate_label(f) for f in o.calibration_features}))
    if o.assumptions:
        out.markdown("**Assumptions of this application.**\n\n" + "\n".join(f"- {a}" for a in o.assumptions))
    if r.notes:
        out.markdown("**Notes.** " + " ".join(r.notes))
    if r.calibration is not None:
        out.markdown("## Calibration against the second survey" if r.calibration.mode == "hindcast" else
                     "## Residual diagnostic of the process model")
        _report_calibration(ctx, result)
    out.markdown("## Input and output fluxes")
    out.figure("accumulation_flux_budget", acc.plot_flux_budget(result.budget, metals=r.metals),
               f"Mean input (above zero) and output (below zero) fluxes by land use, {base_txt} scenario (mg/m²/yr).")
    out.table("accumulation_flux_budget", result.budget,
              f"Flux budget of the {base_txt} scenario: mean over {unit_word} and the {H} projected years "
              "(mg/m²/yr; outputs negative). The stock change M ΔC / T equals inputs minus outputs (plus the "
              "correction where applied); the full table gives every land use and each flux's share.",
              display=acc.budget_display(result.budget), appendix=True)
    out.markdown(acc.flux_text(result.budget, ref=f"{out.ref('accumulation_flux_budget', 'fig')}; the budget in "
                                                  f"{out.ref('accumulation_flux_budget')}"))
    out.markdown("## Projections and carrying capacity")
    fig = acc.plot_maps(x=r.x, y=r.y, concentration_mg_kg=r.projections[base].concentration_mg_kg,
                        thresholds_mg_kg=r.thresholds_mg_kg, years=o.report_years, metal=result.map_metal,
                        metals=r.metals, sources=r.sources, grid=r.domain == "grid", crs=p.data.crs,
                        coordinate_unit=p.data.coordinate_unit)
    out.figure("accumulation_maps", fig,
               f"{result.map_metal} relative to its sensitivity-adjusted {thr} at the survey and after "
               f"{', '.join(map(str, o.report_years))} years ({base_txt} scenario); above 1 (red) is overloaded"
               + ("; triangles mark point sources." if r.sources is not None else "."))
    mc = result.monte_carlo
    out.table("carrying_capacity", result.carrying_capacity,
              f"Carrying capacity after {H} years by land use: share of {unit_word} overloaded (at or above the "
              f"sensitivity-adjusted {thr}) per scenario with the Monte Carlo P5-P95 range, the median years to "
              "overload, and today's remaining capacity as concentration headroom (mg/kg) and as the metal mass the "
              f"plough layer can still take (kg/ha; depth {r.soil_layer['depth_m']:g} m, bulk density "
              f"{r.soil_layer['bulk_density_kg_m3']:g} kg/m³). The full table gives every reported year.",
              display=acc.carrying_capacity_display(result.carrying_capacity, year=H))
    out.figure("accumulation_overload", acc.plot_overload(result.capacity, mc.overload_bands, metal=result.map_metal,
                                                          scenarios=list(o.scenarios), unit_word=unit_word),
               f"{result.map_metal}: share of {unit_word} overloaded by land use at the reported years for each "
               "scenario; whiskers: Monte Carlo P5-P95.")
    out.markdown(acc.overload_text(result.capacity, horizon=H, overload_bands=mc.overload_bands, threshold=thr,
                                   unit_word=unit_word,
                                   refs=f"{out.ref('carrying_capacity')}, {out.ref('accumulation_maps', 'fig')}, "
                                        f"{out.ref('accumulation_overload', 'fig')}"))
    out.table("carrying_capacity_cells", result.capacity_cells,
              "Per cell or sample: threshold, concentration today and at the horizon, remaining capacity today "
              "(mg/kg and kg/ha) and years to overload.", in_report=False)
    out.table("accumulation_projection", result.projection,
              f"Projected concentration (mg/kg) at the survey (year 0) and the reported years after it; shown: the "
              f"mean over all {unit_word}; the full table gives every {unit_word[:-1]}.",
              display=acc.projection_display(result.projection), appendix=True)
    out.figure("accumulation_timeseries", acc.plot_timeseries(mc.landuse_bands, scenario=base, metals=r.metals,
                                                              thresholds=r.guideline_mg_kg.to_dict()),
               f"Mean concentration by land use over {H} years ({base_txt} scenario): Monte Carlo median and "
               f"P5-P95 band ({o.n_monte_carlo} runs); dashed: the {thr} (before sensitivity weights).",
               appendix=True)
    lb = mc.landuse_bands[mc.landuse_bands["year"].isin([0] + list(o.report_years))]
    out.table("accumulation_uncertainty", lb,
              f"Monte Carlo P5/P50/P95 of the mean concentration (mg/kg) after {H} years, whole domain; the full "
              "table gives every land use, scenario and reported year.",
              display=lb[(lb["land_use"] == "all") & (lb["year"] == H)].assign(
                  scenario=lambda d: d["scenario"].str.replace("_", " ")).drop(columns=["land_use"]).rename(columns={
                      "scenario": "Scenario", "metal": "Metal", "year": "Year",
                      "p5": "P5 (mg/kg)", "p50": "P50 (mg/kg)", "p95": "P95 (mg/kg)"}), appendix=True)
    out.table("accumulation_cell_uncertainty", mc.cell_bands,
              "Monte Carlo P5/P50/P95 per cell or sample at the reported years.", in_report=False)
    out.table("accumulation_sensitivity", result.sensitivity,
              f"One-at-a-time sensitivity: change (%) of the mean concentration after {H} years when a parameter "
              "group is divided (low) or multiplied (high) by its geometric SD.",
              display=result.sensitivity.assign(parameter=lambda d: d["parameter"].map(acc.flux_label)).rename(
                  columns={"metal": "Metal", "parameter": "Parameter", "factor": "Geometric SD",
                           "low_change_percent": "Low (%)", "high_change_percent": "High (%)"}), appendix=True)
    out.figure("accumulation_sensitivity", acc.plot_sensitivity(result.sensitivity, metals=r.metals),
               f"One-at-a-time sensitivity of the mean concentration after {H} years ({base_txt} scenario).",
               appendix=True)
    out.markdown(acc.sensitivity_text(result.sensitivity, horizon=H,
                                      ref=f"{out.ref('accumulation_sensitivity', 'fig')}; the trajectories by land use "
                                          f"in {out.ref('accumulation_timeseries', 'fig')}"))
    _findings(ctx, result)


def _report_calibration(ctx: StageContext, result: Result) -> None:
    """Calibration skill (validation scheme first), the known truth of a demo, then exploratory importance."""
    out, r, p = ctx.out, result.run, ctx.params
    cal = r.calibration
    m = cal.metrics
    if cal.mode == "residual":
        out.callout("The residual correction is a diagnostic: it measures what the process model, run from the "
                    "region's own background, does not explain today (historic inputs, other sources, an uncertain "
                    "background), not a measured present-day flux"
                    + (", and it was added to the projections only because this region asks for it."
                       if r.correction_applied else ", and it is not added to the projections."),
                    kind="warning", title="Residual diagnostic")
    out.table("accumulation_calibration", m,
              f"Skill of the {'calibration' if cal.mode == 'hindcast' else 'residual diagnostic'} "
              f"({m['validation'].iloc[0]}): error of the end-state concentration of the process model alone and, "
              "out of fold, of the process model plus the learned flux correction ΔF; the in-sample RMSE of the "
              "final model shows how much the fit flatters itself.",
              display=acc.calibration_display(cal))
    out.table("accumulation_calibration_predictions", cal.predictions,
              "Out-of-fold predictions of the calibration.", in_report=False)
    out.figure("accumulation_calibration", acc.plot_calibration(cal.predictions, metals=r.metals),
               "Observed against predicted concentrations, each site predicted out of fold: process model (grey) and "
               "calibrated model (blue); the line is 1:1.", appendix=True)
    out.markdown(acc.calibration_text(r, budget=result.budget,
                                      refs=f"{out.ref('accumulation_calibration')}; the predictions in "
                                           f"{out.ref('accumulation_calibration', 'fig')}"))
    if result.truth is not None and len(result.truth):
        t = result.truth
        out.table("accumulation_truth_recovery", t,
                  "Check against the generator (generated data only): the out-of-fold flux correction against the "
                  "generator's known flux bias (the traffic input the process model lacks), per metal.",
                  display=t.rename(columns={"metal": "Metal", "n_sites": "Sites",
                                            "true_mean_mg_m2_yr": "True mean (mg/m²/yr)",
                                            "recovered_mean_mg_m2_yr": "Recovered mean (mg/m²/yr)",
                                            "recovered_to_true_ratio": "Recovered / true",
                                            "correlation": "Correlation", "rmse_mg_m2_yr": "RMSE (mg/m²/yr)"}))
        out.markdown(acc.truth_check_text(t, ref=out.ref("accumulation_truth_recovery")))
    skilled = m.loc[m["skilled"], "metal"].tolist()
    if skilled:
        imp = cal.importance[cal.importance["metal"].isin(skilled)].sort_values(["metal", "importance"],
                                                                                ascending=[True, False])
        out.table("accumulation_calibration_importance", imp,
                  "Exploratory: impurity importance of the features of the flux-correction model (refit on all "
                  "sites), for the metals where the correction has out-of-fold skill; importance describes the fitted "
                  "model, not a measured cause.",
                  display=imp.groupby("metal").head(4).assign(feature=lambda d: d["feature"].map(
                      lambda f: ("land use " + f.split("=", 1)[1]) if f.startswith("land_use=")
                      else p.data.covariate_label(f) if f.partition("=")[0] in p.data.covariate_labels
                      else acc.flux_label(f.replace("=", "_")))).rename(
                      columns={"metal": "Metal", "feature": "Feature", "importance": "Importance"}),
                  appendix=True)


def _findings(ctx: StageContext, result: Result) -> None:
    """Key findings (overload of the map metal at the horizon with its Monte Carlo range; the best scenario's
    effect; the calibration's held-out skill) and limitations."""
    o, out, r = ctx.options, ctx.out, result.run
    base, H = list(o.scenarios)[0], o.horizon_years
    cap = result.carrying_capacity
    thr = acc.threshold_label(r.threshold_name)
    unit_word = "cells" if r.domain == "grid" else "samples"
    sel = cap[(cap["metal"] == result.map_metal) & (cap["year"] == H) & (cap["land_use"] == "all")].set_index("scenario")
    now = cap[(cap["metal"] == result.map_metal) & (cap["year"] == 0) & (cap["land_use"] == "all")
              & (cap["scenario"] == base)]
    if base in sel.index:
        x = sel.loc[base]
        rng_txt = (f" ({acc.share_range_text(x.share_overloaded_p5, x.share_overloaded_p95)})"
                   if pd.notna(x.share_overloaded_p5) else "")
        now_txt = f", against {100 * now['share_overloaded'].iloc[0]:.0f} % today" if len(now) else ""
        out.finding(f"After {H} years at current input rates, {100 * x.share_overloaded:.0f} % of the {unit_word} "
                    f"would exceed the sensitivity-adjusted {thr} for {result.map_metal}{rng_txt}{now_txt}.",
                    importance=0.6, refs=["tbl-carrying-capacity", "fig-accumulation-maps"])
        out.conclusion(f"At current input rates the share of {unit_word} above the sensitivity-adjusted {thr} for "
                       f"{result.map_metal} would be {100 * x.share_overloaded:.0f} %{rng_txt} after {H} years"
                       f"{now_txt}.")
        others = sel.drop(index=base)
        if len(others):
            best = others["share_overloaded"].idxmin()
            y = others.loc[best]
            rng2 = (f" ({acc.share_range_text(y.share_overloaded_p5, y.share_overloaded_p95, label='P5–P95')})"
                    if pd.notna(y.share_overloaded_p5) else "")
            out.finding(f"The {best.replace('_', ' ')} scenario would lower that share to "
                        f"{100 * y.share_overloaded:.0f} %{rng2} after {H} years, a smaller change than the Monte "
                        "Carlo range of the current-rates projection."
                        if pd.notna(x.share_overloaded_p5) and y.share_overloaded_p95 >= x.share_overloaded_p5 else
                        f"The {best.replace('_', ' ')} scenario would lower that share to "
                        f"{100 * y.share_overloaded:.0f} %{rng2} after {H} years.",
                        importance=0.45, refs=["fig-accumulation-overload", "tbl-carrying-capacity"])
    cal = r.calibration
    if cal is not None and cal.mode == "hindcast":
        m = cal.metrics
        red = 100 * (1 - m["rmse_calibrated_test"] / m["rmse_process_test"])
        out.finding(f"Calibrated against the second survey, the accumulation model predicts held-out sites with "
                    f"{red.min():.0f}-{red.max():.0f} % lower error than the process model alone (out-of-fold R² of "
                    f"the learned correction {m['r2_correction_test'].min():.2f}-{m['r2_correction_test'].max():.2f}).",
                    importance=0.35, refs=["tbl-accumulation-calibration"])
    out.limitation("The accumulation projections rest on a process model with literature parameters (Kd, transfer "
                   "factors, enrichment ratios, soil loss) and constant future rates; the Monte Carlo bands cover "
                   "the parameter uncertainty, not changes of land use or climate.")
    if cal is not None and cal.mode == "residual":
        out.limitation("The residual correction of the accumulation model is a diagnostic of what the process model "
                       "does not explain, not a measured flux.")
