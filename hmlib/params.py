"""Region parameters (``params/<region>.yml``) and their schema.

The schema is a set of pydantic models with ``extra='forbid'`` so that a misspelled key is
an error, not a silently ignored setting. :func:`load_params` turns every validation failure
into one line ``key.path: got <value>; expected <what>`` and raises
:class:`~hmlib.errors.ParamsError` with all of them.

Per-stage options are validated by the options model each stage declares in the stage
registry (:mod:`hmlib.stages`); the ``stages`` mapping of a params file may only name
registered stages.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import ParamsError
from .units import normalize_unit

__all__ = [
    "StrictModel",
    "StageOptions",
    "RegionInfo",
    "DataSpec",
    "MediumSpec",
    "NonDetectSpec",
    "ReferenceSpec",
    "RegionParams",
    "load_params",
    "params_hash",
]

_METAL_SYMBOL = re.compile(r"^[A-Z][a-z]?(\(?[IVX]+\)?)?$")


class StrictModel(BaseModel):
    """Base model: unknown keys are errors; values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StageOptions(StrictModel):
    """Base class of every stage's options model (see :mod:`hmlib.stages`)."""


class RegionInfo(StrictModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="region id: lower case, digits, underscore")
    title: str = Field(min_length=3)
    description: str = ""
    data_citation: str = ""


class MediumSpec(StrictModel):
    unit: str = Field(description="unit of this medium's concentrations, e.g. mg/kg or ug/L")

    @field_validator("unit")
    @classmethod
    def _unit_known(cls, v: str) -> str:
        return normalize_unit(v)


class DataSpec(StrictModel):
    samples: str | dict[str, str] = Field(
        description="CSV of samples; or a mapping medium -> CSV for one file per medium")
    grid: str | None = Field(default=None, description="optional CSV of prediction cells")
    id_column: str = "sample_id"
    x_column: str
    y_column: str
    crs: str = Field(description="'EPSG:<code>' or 'local' (then give coordinate_bounds)")
    coordinate_bounds: tuple[float, float, float, float] | None = Field(
        default=None, description="xmin, ymin, xmax, ymax accepted for coordinates (required for crs 'local')")
    coordinate_unit: Literal["m", "km", "degree"] = "m"
    medium_column: str | None = Field(default=None, description="column naming each row's medium (long format)")
    site_column: str | None = Field(default=None, description="column pairing samples of different media")
    group_column: str | None = Field(default=None, description="column of sample groups (e.g. estuary)")
    covariates: list[str] = Field(default_factory=list, description="sample covariate columns (numeric or categorical)")
    categorical: list[str] = Field(default_factory=list, description="covariates to treat as categorical")
    encoding: str = "utf-8"

    @field_validator("crs")
    @classmethod
    def _crs_form(cls, v: str) -> str:
        if v == "local" or re.fullmatch(r"EPSG:\d{4,6}", v):
            return v
        raise ValueError("expected 'EPSG:<code>' (e.g. EPSG:28992) or 'local'")

    @model_validator(mode="after")
    def _local_needs_bounds(self):
        if self.crs == "local" and self.coordinate_bounds is None:
            raise ValueError("crs 'local' needs coordinate_bounds [xmin, ymin, xmax, ymax]")
        if self.coordinate_bounds is not None:
            xmin, ymin, xmax, ymax = self.coordinate_bounds
            if not (xmin < xmax and ymin < ymax):
                raise ValueError(f"coordinate_bounds must be xmin < xmax and ymin < ymax, got {self.coordinate_bounds}")
        if self.categorical and not set(self.categorical) <= set(self.covariates):
            raise ValueError(f"categorical {sorted(set(self.categorical) - set(self.covariates))} not in covariates")
        return self


class NonDetectSpec(StrictModel):
    substitution: Literal["half_dl", "dl", "dl_sqrt2", "zero"] = Field(
        default="half_dl", description="value substituted for a non-detect: DL/2 (default), DL, DL/sqrt(2) or 0")
    tokens: list[str] = Field(default_factory=lambda: ["ND", "n.d.", "nd", "BDL", "<DL", "<LOD"],
                              description="cell texts meaning 'not detected' (detection limit from detection_limits)")
    detection_limits: dict[str, float] = Field(
        default_factory=dict, description="metal symbol -> detection limit in the medium's unit, for bare ND cells")
    imputation: Literal["none", "median", "drop"] = Field(
        default="none", description="missing (blank) metal values: keep as missing, median of the medium, or drop the row")

    @field_validator("detection_limits")
    @classmethod
    def _dl_positive(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not x > 0:
                raise ValueError(f"detection limit of {k} must be > 0, got {x}")
        return v


class ReferenceSpec(StrictModel):
    background: str = Field(description="background reference set, e.g. UCC_RudnickGao2014")
    guideline: str | None = Field(default=None, description="guideline reference set, e.g. VBBo_Swiss1998")
    guideline_threshold: str | None = Field(default=None, description="threshold_name used where one value is needed")
    water_standard: str | None = None


class RegionParams(StrictModel):
    region: RegionInfo
    data: DataSpec
    media: dict[str, MediumSpec] = Field(min_length=1, description="medium name -> unit")
    metals: dict[str, str] = Field(min_length=1, description="metal symbol -> column name in the data")
    non_detects: NonDetectSpec = Field(default_factory=NonDetectSpec)
    references: ReferenceSpec
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"data_quality": {}}, description="stage name -> options (ordered)")
    seed: int = Field(default=20240601, ge=0, description="seed for every random step of every stage")
    _base_dir: str = PrivateAttr(default=".")
    _path: str = PrivateAttr(default="")

    @field_validator("metals")
    @classmethod
    def _metal_symbols(cls, v: dict[str, str]) -> dict[str, str]:
        for sym in v:
            if not _METAL_SYMBOL.match(sym):
                raise ValueError(f"metal key {sym!r} is not an element symbol such as 'Cd' or 'Cr(VI)'")
        return v

    @field_validator("media")
    @classmethod
    def _media_names(cls, v: dict[str, MediumSpec]) -> dict[str, MediumSpec]:
        allowed = {"soil", "sediment", "water", "dust", "groundwater", "porewater", "crop"}
        for m in v:
            if m not in allowed:
                raise ValueError(f"medium {m!r} unknown; expected one of {sorted(allowed)}")
        return v

    @model_validator(mode="after")
    def _consistency(self):
        if len(self.media) > 1 and self.data.medium_column is None and not isinstance(self.data.samples, dict):
            raise ValueError("several media need data.medium_column (one table) or data.samples as medium -> file")
        if isinstance(self.data.samples, dict):
            extra = set(self.data.samples) - set(self.media)
            if extra:
                raise ValueError(f"data.samples names media {sorted(extra)} not declared under media")
        return self

    # convenience -------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        return Path(self._base_dir)

    @property
    def path(self) -> Path:
        """The params file these parameters were read from."""
        return Path(self._path)

    def resolve(self, rel: str) -> Path:
        """Path of a data file named in params, relative to the project root."""
        p = Path(rel)
        return p if p.is_absolute() else (self.base_dir / p)


def _fmt_loc(loc: tuple) -> str:
    return ".".join(str(x) for x in loc if x not in ("function-after", "function-before")) or "(top level)"


def _explain(err: dict, raw: Any) -> str:
    loc = tuple(x for x in err["loc"] if not str(x).startswith(("function-", "tagged-union")))
    # drop pydantic's union branch labels such as 'str' or 'dict[str,str]'
    loc = tuple(x for x in loc if x not in ("str", "dict[str,str]", "tuple[float,float,float,float]"))
    key = _fmt_loc(loc)
    typ = err["type"]
    val = err.get("input")
    if typ == "extra_forbidden":
        return f"{key}: unknown key (value {val!r}); remove it or check its spelling"
    if typ == "missing":
        return f"{key}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{key}: got {val!r}; expected {msg[0].lower() + msg[1:] if msg else msg}"


def load_params(path: str | Path, *, base_dir: str | Path | None = None) -> RegionParams:
    """Read and validate ``params/<region>.yml``.

    Parameters
    ----------
    path : path to the YAML file.
    base_dir : folder data paths are relative to; default: the parent of the ``params/`` folder.

    Raises
    ------
    ParamsError
        With one line per problem naming the key, the bad value and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(str(path), [f"file not found: {path}"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ParamsError(str(path), [f"not valid YAML: {e}"]) from None
    if not isinstance(raw, dict):
        raise ParamsError(str(path), [f"(top level): got {type(raw).__name__}; expected a mapping of keys"])
    try:
        params = RegionParams.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(str(path), [_explain(err, raw) for err in e.errors()]) from None
    # stage names and options
    from .stages import validate_stage_options  # late import: stages import params

    problems = validate_stage_options(params.stages)
    if problems:
        raise ParamsError(str(path), problems)
    if base_dir is None:
        base_dir = path.resolve().parent.parent if path.resolve().parent.name == "params" else path.resolve().parent
    params._base_dir = str(base_dir)
    params._path = str(path)
    return params


def params_hash(params: RegionParams) -> str:
    """SHA-256 of the validated parameters (stable key order)."""
    blob = json.dumps(params.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
