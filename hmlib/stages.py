"""Stage registry: stage name -> notebook, report title, options schema, data requirements.

A stage is one parameterized notebook under ``notebooks/``. The registry order is the report's
section order and the order stages run in. To add a stage, append one :class:`Stage` to
:data:`REGISTRY` (see ``docs/developing.md``): its options model is given as an import string
so that validating a params file does not import heavy libraries.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pydantic import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from .params import RegionParams, StageOptions

__all__ = ["Stage", "REGISTRY", "get_stage", "stage_names", "options_model", "validate_stage_options",
           "skip_reason"]


# --- requirement predicates --------------------------------------------------------------------------
# Each takes the region's params and the stage's name and returns None when the region can run the
# stage, else the reason it cannot.
def needs_grid(params: "RegionParams", stage: str) -> str | None:
    return None if params.data.grid else "the region has no prediction grid (data.grid is not set)"


def needs_two_paired_media(params: "RegionParams", stage: str) -> str | None:
    if len(params.media) < 2:
        return f"the region has one medium ({', '.join(params.media)}); this stage needs two or more paired media"
    if not params.data.site_column:
        return "the region has several media but no data.site_column to pair them by site"
    return None


def needs_exposure_medium(params: "RegionParams", stage: str) -> str | None:
    if {"soil", "dust", "water", "groundwater"} & set(params.media):
        return None
    return "no soil, dust or water medium: the US EPA exposure equations need one"


def needs_guideline(params: "RegionParams", stage: str) -> str | None:
    if params.references.guideline:
        return None
    return "the region names no guideline set (references.guideline), which the carrying capacity needs"


def needs_option(key: str, what: str) -> Callable[["RegionParams", str], str | None]:
    """Requirement: the stage's own options must set ``key`` (e.g. a fractions file)."""
    def check(params: "RegionParams", stage: str) -> str | None:
        if (params.stages.get(stage) or {}).get(key):
            return None
        return f"stages.{stage}.{key} is not set ({what})"
    return check


@dataclass(frozen=True)
class Stage:
    """One analysis stage.

    Attributes
    ----------
    name : registry key and the key under ``stages:`` in params.
    notebook : file name under ``notebooks/``.
    title : section title in the report.
    options : import string ``'module:Class'`` of the stage's options model (a StageOptions).
    after : stages whose tables this stage reads; they run first when selected.
    requires : predicates ``(params, stage_name) -> None | reason``; the stage is skipped with the
        first reason any of them gives.
    """

    name: str
    notebook: str
    title: str
    options: str
    after: tuple[str, ...] = ()
    requires: tuple[Callable[["RegionParams", str], str | None], ...] = field(default=())


REGISTRY: list[Stage] = [
    Stage(
        name="data_quality",
        notebook="00_data_quality.ipynb",
        title="Data quality and descriptive statistics",
        options="hmlib.descriptive:DataQualityOptions",
    ),
    # --- stages added by the stage issues go below, in report order (keep one entry per stage) ---
    Stage(
        name="baselines",
        notebook="10_baselines.ipynb",
        title="Geochemical baselines and adaptive background",
        options="hmlib.baselines:BaselinesOptions",
        after=("data_quality",),
    ),
    Stage(
        name="indices",
        notebook="20_indices.ipynb",
        title="Pollution indices, static vs adaptive background, dual-media zoning and bearing capacity",
        options="hmlib.indices:IndicesOptions",
        after=("baselines",),
    ),
    Stage(
        name="spatial",
        notebook="30_spatial.ipynb",
        title="Spatial mapping, hotspots and drivers: kriging, regression kriging, GPR, LISA and MGWR",
        options="hmlib.spatial:SpatialOptions",
        after=("data_quality",),
        requires=(needs_grid,),
    ),
    Stage(
        name="health",
        notebook="40_health.ipynb",
        title="Human health risk: US EPA deterministic and Monte Carlo assessment",
        options="hmlib.health:HealthOptions",
        after=("data_quality",),
        requires=(needs_exposure_medium,),
    ),
    Stage(
        name="sources",
        notebook="50_sources.ipynb",
        title="Source apportionment: correlation, PCA, PMF and Pb isotope mixing",
        options="hmlib.sources:SourcesOptions",
        after=("data_quality",),
    ),
    Stage(
        name="ml_drivers",
        notebook="60_ml_drivers.ipynb",
        title="Machine-learning risk drivers: XGBoost, SHAP and spatial cross-validation",
        options="hmlib.ml:MLDriversOptions",
        after=("indices",),
    ),
    Stage(
        name="remote_sensing",
        notebook="65_remote_sensing.ipynb",
        title="Remote-sensing inversion: Random Forest maps from multispectral imagery",
        options="hmlib.remote_sensing:RemoteSensingOptions",
        after=("data_quality",),
        requires=(needs_option("raster", "a multiband GeoTIFF of surface reflectance"),),
    ),
    Stage(
        name="crossmedia",
        notebook="70_crossmedia.ipynb",
        title="Cross-media behaviour: sediment-water partitioning and structural equation model",
        options="hmlib.crossmedia:CrossmediaOptions",
        after=("data_quality",),
        requires=(needs_two_paired_media,),
    ),
    Stage(
        name="accumulation",
        notebook="80_accumulation.ipynb",
        title="Long-term accumulation: flux model, ML calibration and environmental carrying capacity",
        options="hmlib.accumulation:AccumulationOptions",
        after=("data_quality",),
        requires=(needs_guideline,),
    ),
    Stage(
        name="mobility",
        notebook="90_mobility.ipynb",
        title="Metal mobility: sequential-extraction fractions, RAC and a theory-guided mobility model",
        options="hmlib.mobility:MobilityOptions",
        after=("data_quality",),
        requires=(needs_option("fractions", "a sequential-extraction fractions file"),),
    ),
]


def stage_names() -> list[str]:
    return [s.name for s in REGISTRY]


def get_stage(name: str) -> Stage:
    for s in REGISTRY:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; registered stages: {stage_names()}")


def options_model(stage: Stage | str) -> type["StageOptions"]:
    st = get_stage(stage) if isinstance(stage, str) else stage
    mod, cls = st.options.split(":")
    return getattr(importlib.import_module(mod), cls)


def validate_stage_options(stages: dict) -> list[str]:
    """Problems (one line each) with the ``stages:`` mapping of a params file."""
    from .params import _explain

    problems: list[str] = []
    names = stage_names()
    for name, opts in stages.items():
        if name not in names:
            problems.append(f"stages.{name}: unknown stage; expected one of {names}")
            continue
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            problems.append(f"stages.{name}: got {opts!r}; expected a mapping of options (or {{}})")
            continue
        try:
            options_model(name).model_validate(opts)
        except ValidationError as e:
            for err in e.errors():
                err = dict(err)
                err["loc"] = ("stages", name, *err["loc"])
                problems.append(_explain(err, opts))
    return problems


def skip_reason(stage: Stage, params: "RegionParams") -> str | None:
    """Why the region cannot run ``stage`` (None when it can)."""
    for pred in stage.requires:
        reason = pred(params, stage.name)
        if reason:
            return reason
    return None
