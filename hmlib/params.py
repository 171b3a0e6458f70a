"""Region parameters (``params/<region>.yml``) and their schema.

The schema is a set of pydantic models with ``extra='forbid'`` so that a misspelled key is
an error, not a silently ignored setting. :func:`load_params` turns every validation failure
into one line ``key.path: got <value>; expected <what>`` and raises
:class:`~hmlib.errors.ParamsError` with all of them.

Per-stage options are validated by the options model each stage declares in the stage
registry (:mod:`hmlib.stages`); the ``stages`` mapping of a params file may only name
registered stages.

The YAML is read defensively (:func:`read_yaml`): UTF-8 only, at most
:data:`MAX_PARAMS_BYTES`, at most :data:`MAX_ALIASES` aliases and :data:`MAX_NODES` values
once aliases are expanded (a "billion laughs" file fails at once), and a key given twice in
one mapping is an error instead of the last one silently winning. Element symbols are
checked against the periodic table, reference-set names against the shipped sets, units
against their medium (a solid's mg/kg for water is an error), and every data or option file
must lie inside the project folder or a folder named by ``--data-root``
(environment variable ``HMLIB_DATA_ROOT``).
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import ParamsError, UnitError, short_repr
from .units import dimension, normalize_unit

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
    "read_yaml",
    "params_hash",
    "element_symbols",
    "KeyedProblem",
    "DATA_ROOT_ENV",
    "SOLID_MEDIA",
    "WATER_MEDIA",
]

_METAL_SYMBOL = re.compile(r"^([A-Z][a-z]?)(\(?[IVX]+\)?)?$")

#: environment variable holding extra folders (``os.pathsep``-separated) data files may come from;
#: ``hmlib --data-root DIR`` sets it so that stage kernels see the same permission
DATA_ROOT_ENV = "HMLIB_DATA_ROOT"
#: limits of a params file: bytes, YAML aliases, and values once aliases are expanded
MAX_PARAMS_BYTES = 1_000_000
MAX_ALIASES = 100
MAX_NODES = 100_000
SOLID_MEDIA = frozenset({"soil", "sediment", "dust", "crop"})
WATER_MEDIA = frozenset({"water", "groundwater", "porewater"})
_DIMENSION_OF_MEDIUM = {**{m: "mass_fraction" for m in SOLID_MEDIA}, **{m: "mass_concentration" for m in WATER_MEDIA}}
_DIMENSION_WORDS = {"mass_fraction": "a solid-phase unit such as mg/kg, ug/kg or ppm",
                    "mass_concentration": "a dissolved-concentration unit such as ug/L, mg/L or ng/L"}
_DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "|": "|"}


class KeyedProblem(ValueError):
    """A validation problem of a sub-key (``key`` relative to where the validator runs).

    Validators raise it so the message names the exact key (``data.coordinate_bounds``) instead of
    the enclosing mapping, and echoes only the offending value. ``problems`` holds one or more
    ``(key, got, expected)`` triples.
    """

    def __init__(self, *problems: tuple[str | None, Any, str]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{k}: got {short_repr(g)}; expected {e}" for k, g, e in self.problems))


@lru_cache(maxsize=1)
def element_symbols() -> frozenset[str]:
    """The 118 element symbols of the periodic table (from the ``periodictable`` package)."""
    import periodictable

    return frozenset(el.symbol for el in periodictable.elements if el.number > 0)


@cache
def _reference_names(kind: str) -> tuple[str, ...]:
    from .reference import list_reference_sets

    return tuple(list_reference_sets(kind)["name"])


@cache
def _threshold_names(guideline: str) -> tuple[str, ...]:
    from .reference import load_reference

    df = load_reference("guideline", guideline)
    return tuple(dict.fromkeys(str(x) for x in df["threshold_name"])) if "threshold_name" in df else ()


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
    covariate_labels: dict[str, str] = Field(
        default_factory=dict, description="reader's name of each covariate in figures and tables, e.g. "
                                          "dist: distance to the river (default: the column name)")
    category_labels: dict[str, dict[str | int, str]] = Field(
        default_factory=dict, description="reader's name of each class of a categorical covariate, e.g. "
                                          "landuse: {W: pasture, Ga: home gardens} (default: the code)")
    ph_column: str | None = Field(default=None, description="covariate holding each sample's soil pH (guideline pH classes)")
    land_use_column: str | None = Field(
        default=None, description="categorical covariate holding each sample's land use (guideline land-use classes)")
    encoding: str = Field(default="utf-8", description="text encoding of the CSV files, e.g. utf-8, latin-1, cp1252")
    delimiter: str = Field(default=",", description="field separator of the CSV files: ',', ';', tab or '|'")
    decimal: Literal[".", ","] = Field(default=".", description="decimal mark of numbers in the CSV files")
    thousands: Literal[",", ".", " ", "'"] | None = Field(
        default=None, description="thousands separator used in the CSV files (default: none; refused when found)")

    def covariate_label(self, column: str) -> str:
        """The reader's name of a covariate (``covariate_labels``, else the column name). A one-hot column
        ``name=level`` becomes ``"<label of name> <level>"``, e.g. ``ffreq=1`` -> "flooding frequency class 1",
        or ``"<label of name>: <label of level>"`` where ``category_labels`` names the class
        ("flooding frequency class: once in two years")."""
        base, sep, level = str(column).partition("=")
        if sep:
            name = self.class_label(base, level)
            return (f"{self.covariate_labels.get(base, base)}: {name}" if name is not None
                    else f"{self.covariate_labels.get(base, base)} {level}")
        return self.covariate_labels.get(base, base)

    def class_label(self, column: str, level) -> str | None:
        """The reader's name of class ``level`` of categorical covariate ``column`` (``category_labels``),
        ``None`` where the region gives none. A level read as a number matches its integer code ("1.0", 1)."""
        names = {str(k): v for k, v in self.category_labels.get(column, {}).items()}
        key = str(level)
        if key not in names:
            try:
                f = float(key)
                key = str(int(f)) if f.is_integer() else key
            except ValueError:
                pass
        return names.get(key)

    @field_validator("crs")
    @classmethod
    def _crs_form(cls, v: str) -> str:
        if v == "local" or re.fullmatch(r"EPSG:\d{4,6}", v):
            return v
        raise ValueError("'EPSG:<code>' (e.g. EPSG:28992) or 'local'")

    @field_validator("encoding")
    @classmethod
    def _encoding_known(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError("a known text encoding such as utf-8, latin-1 or cp1252") from None
        return v

    @field_validator("delimiter")
    @classmethod
    def _delimiter_known(cls, v: str) -> str:
        if v in _DELIMITERS:
            return _DELIMITERS[v]
        raise ValueError("one of ',', ';', '|' or tab")

    @field_validator("coordinate_bounds")
    @classmethod
    def _bounds_ordered(cls, v):
        if v is not None:
            xmin, ymin, xmax, ymax = v
            if not all(abs(b) < 1e12 for b in v):
                raise ValueError("four finite numbers [xmin, ymin, xmax, ymax]")
            if not (xmin < xmax and ymin < ymax):
                raise ValueError("[xmin, ymin, xmax, ymax] with xmin < xmax and ymin < ymax")
        return v

    @model_validator(mode="after")
    def _local_needs_bounds(self):
        problems = []
        if self.crs == "local" and self.coordinate_bounds is None:
            problems.append(("coordinate_bounds", None, "[xmin, ymin, xmax, ymax] when crs is 'local'"))
        for c in self.categorical:
            if c not in self.covariates:
                problems.append(("categorical", c, "a column also listed under covariates "
                                                   f"({', '.join(self.covariates) or 'none listed'})"))
        for c in self.category_labels:
            if c not in self.categorical:
                problems.append(("category_labels", c, "a column also listed under categorical "
                                                       f"({', '.join(self.categorical) or 'none listed'})"))
        for c in self.covariate_labels:
            if c not in self.covariates:
                problems.append(("covariate_labels", c, "a column also listed under covariates "
                                                        f"({', '.join(self.covariates) or 'none listed'})"))
        if self.thousands is not None and self.thousands == self.decimal:
            problems.append(("thousands", self.thousands, "a separator different from the decimal mark"))
        if self.decimal == self.delimiter:  # a thousands ',' can live in quoted cells; a decimal ',' is everywhere
            problems.append(("decimal", self.decimal, "a mark different from the field separator (declare "
                                                      "delimiter ';' when numbers are written with a decimal ',')"))
        if problems:
            raise KeyedProblem(*problems)
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

    @field_validator("background", "guideline", "water_standard")
    @classmethod
    def _set_exists(cls, v: str | None, info) -> str | None:
        if v is None:
            return v
        kind = info.field_name
        names = _reference_names(kind)
        if v not in names:
            raise ValueError(f"one of the shipped {kind.replace('_', ' ')} sets: {', '.join(names)} "
                             f"(see `hmlib references --kind {kind}`)")
        return v

    @model_validator(mode="after")
    def _threshold_exists(self):
        if self.guideline_threshold is not None:
            if self.guideline is None:
                raise KeyedProblem(("guideline_threshold", self.guideline_threshold,
                                    "no threshold unless references.guideline names a guideline set"))
            names = _threshold_names(self.guideline)
            if names and self.guideline_threshold not in names:
                raise KeyedProblem(("guideline_threshold", self.guideline_threshold,
                                    f"a threshold of {self.guideline}: {', '.join(names)}"))
        return self
    land_use: str | None = Field(
        default=None, description="one guideline land-use class for the whole region when data.land_use_column is "
                                  "not set (GB 15618-2018: paddy or other; default: 'other' where the set has it)")


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
    _data_roots: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("metals")
    @classmethod
    def _metal_symbols(cls, v: dict[str, str]) -> dict[str, str]:
        problems = []
        first_use: dict[str, str] = {}
        for sym, col in v.items():
            m = _METAL_SYMBOL.match(str(sym))
            if not m:
                problems.append((sym, sym, "an element symbol such as 'Cd' or 'Cr(VI)' as the key"))
            elif m.group(1) not in element_symbols():
                problems.append((sym, sym, "an element symbol of the periodic table as the key (such as Cd, Pb, Zn)"))
            if not str(col).strip():
                problems.append((sym, col, "the name of the column holding this metal"))
            elif col in first_use:
                problems.append((sym, col, f"a column of its own (the column is already used for {first_use[col]})"))
            first_use.setdefault(col, sym)
        if problems:
            raise KeyedProblem(*problems)
        return v

    @field_validator("media")
    @classmethod
    def _media_names(cls, v: dict[str, MediumSpec]) -> dict[str, MediumSpec]:
        allowed = sorted(_DIMENSION_OF_MEDIUM)
        problems = []
        for m, spec in v.items():
            if m not in _DIMENSION_OF_MEDIUM:
                problems.append((m, m, f"a medium among {', '.join(allowed)}"))
                continue
            want = _DIMENSION_OF_MEDIUM[m]
            if dimension(spec.unit) != want:
                problems.append((f"{m}.unit", spec.unit, f"{_DIMENSION_WORDS[want]} for {m}"))
        if problems:
            raise KeyedProblem(*problems)
        return v

    @model_validator(mode="after")
    def _consistency(self):
        if len(self.media) > 1 and self.data.medium_column is None and not isinstance(self.data.samples, dict):
            raise KeyedProblem(("data.medium_column", None, "a column naming each row's medium when several media "
                                                            "share one samples file (or one file per medium under "
                                                            "data.samples)"))
        unknown_dl = [m for m in self.non_detects.detection_limits if m not in self.metals]
        if unknown_dl:
            raise KeyedProblem(*[(f"non_detects.detection_limits.{m}", m, "a metal listed under metals "
                                                                           f"({', '.join(self.metals)})")
                                 for m in unknown_dl])
        if isinstance(self.data.samples, dict):
            extra = [m for m in self.data.samples if m not in self.media]
            if extra:
                raise KeyedProblem(*[(f"data.samples.{m}", m, f"a medium declared under media "
                                                              f"({', '.join(self.media)})") for m in extra])
            lacking = [m for m in self.media if m not in self.data.samples]
            if lacking:
                raise KeyedProblem(*[(f"data.samples.{m}", None, f"a samples file for {m}, which media declares")
                                     for m in lacking])
        return self

    # convenience -------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        return Path(self._base_dir)

    @property
    def path(self) -> Path:
        """The params file these parameters were read from."""
        return Path(self._path)

    @property
    def allowed_roots(self) -> list[Path]:
        """Folders data and option files may come from: the project folder and any ``--data-root``."""
        return [self.base_dir, *(Path(r) for r in self._data_roots)]

    def resolve(self, rel: str) -> Path:
        """Path of a data file named in params, relative to the project root.

        Raises
        ------
        ParamsError
            When the path leads outside the project folder (and outside every ``--data-root``).
        """
        p = Path(rel)
        full = p if p.is_absolute() else (self.base_dir / p)
        if not _inside(full, self.allowed_roots):
            raise ParamsError(self._path or "parameters", [_outside_message(None, rel, self.allowed_roots)])
        return full


def _fmt_loc(loc: tuple) -> str:
    return ".".join(str(x) for x in loc if x not in ("function-after", "function-before")) or "(top level)"


_PYDANTIC_EXPECT = {
    "float_parsing": "a number", "float_type": "a number", "int_parsing": "a whole number",
    "int_type": "a whole number", "int_from_float": "a whole number", "string_type": "text",
    "bool_parsing": "true or false", "bool_type": "true or false", "dict_type": "a mapping of keys",
    "list_type": "a list", "tuple_type": "a list", "model_type": "a mapping of keys",
    "finite_number": "a finite number",
}


def _explain_all(err: dict, raw: Any = None) -> list[str]:
    """Problem lines (``key: got <value>; expected <what>``) of one pydantic error."""
    loc = tuple(x for x in err["loc"] if not str(x).startswith(("function-", "tagged-union")))
    # drop pydantic's union branch labels such as 'str' or 'dict[str,str]'
    loc = tuple(x for x in loc if x not in ("str", "dict[str,str]", "tuple[float,float,float,float]", "none",
                                            "literal[',','.',' ',\"'\"]", "float", "int"))
    key = _fmt_loc(loc)
    typ = err["type"]
    val = err.get("input")
    exc = (err.get("ctx") or {}).get("error")
    if isinstance(exc, KeyedProblem):
        out = []
        for sub, got, expected in exc.problems:
            k = ".".join(str(x) for x in (None if key == "(top level)" else key, sub) if x) or "(top level)"
            out.append(f"{k}: got {short_repr(got)}; expected {expected}")
        return out
    if typ == "extra_forbidden":
        return [f"{key}: unknown key (value {short_repr(val)}); remove it or check its spelling"]
    if typ == "missing" and loc and isinstance(loc[-1], int):
        parent = _fmt_loc(loc[:-1])
        return [f"{parent}: item {loc[-1] + 1} is missing; expected "
                + ("four numbers [xmin, ymin, xmax, ymax]" if parent.endswith("coordinate_bounds") else "more items")]
    if typ == "missing":
        return [f"{key}: required key is missing"]
    if typ in _PYDANTIC_EXPECT:
        return [f"{key}: got {short_repr(val)}; expected {_PYDANTIC_EXPECT[typ]}"]
    if isinstance(exc, UnitError):
        return [f"{key}: got {short_repr(val)}; expected a known unit ({exc})"]
    msg = err["msg"].removeprefix("Value error, ").removeprefix("Input should be ").removeprefix("expected ")
    if typ == "string_pattern_mismatch" and key.endswith("id"):
        msg = "lower case letters, digits and underscores, starting with a letter"
    if typ in ("too_short", "too_long"):
        n = (err.get("ctx") or {}).get("min_length" if typ == "too_short" else "max_length", 1)
        msg = f"{'at least' if typ == 'too_short' else 'at most'} {n} {'entry' if n == 1 else 'entries'}"
    msg = msg[0].lower() + msg[1:] if msg else msg
    return [f"{key}: got {short_repr(val)}; expected {msg}"]


def _explain(err: dict, raw: Any = None) -> str:
    """One problem line per pydantic error (several lines joined for a multi-key problem)."""
    return "\n  - ".join(_explain_all(err, raw))


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that counts aliases (bounded) and keeps node marks for messages."""

    def __init__(self, stream):
        super().__init__(stream)
        self.n_aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.n_aliases += 1
            if self.n_aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _YamlLimit(f"line {mark.line + 1}: more than {MAX_ALIASES} aliases ('*name'); "
                                 "a params file needs none")
        return super().compose_node(parent, index)


class _YamlLimit(Exception):
    pass


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _node_problems(root) -> list[str]:
    """Duplicate keys (with their key path and lines) and an expanded size above :data:`MAX_NODES`."""
    problems: list[str] = []
    sizes: dict[int, int] = {}
    checked: set[int] = set()

    def size(node) -> int:  # expanded size, memoised per node so aliases cost nothing to count
        nid = id(node)
        if nid in sizes:
            return sizes[nid]
        sizes[nid] = 1  # a recursive alias counts once
        if isinstance(node, yaml.MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            n = 1 + sum(size(v) for v in node.value)
        else:
            n = 1
        sizes[nid] = min(n, 10 * MAX_NODES)
        return sizes[nid]

    def dups(node, path: str) -> None:
        if id(node) in checked:
            return
        checked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                if k.tag == _MERGE_TAG:
                    continue
                name = str(k.value) if isinstance(k, yaml.ScalarNode) else None
                line = k.start_mark.line + 1
                sub = f"{path}.{name}" if path else str(name)
                if name is not None:
                    if name in seen:
                        problems.append(f"{sub}: key given twice (lines {seen[name]} and {line}); "
                                        "expected each key once (remove one of them)")
                    else:
                        seen[name] = line
                dups(v, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                dups(v, f"{path}[{i}]")

    n = size(root)
    if n > MAX_NODES:
        return [f"(top level): the file expands to more than {MAX_NODES:,} values (aliases nested in aliases); "
                "expected a plain params file without aliases"]
    dups(root, "")
    return problems


def read_yaml(path: str | Path) -> Any:
    """Read a YAML params file defensively.

    UTF-8 (with or without byte-order mark) only; at most :data:`MAX_PARAMS_BYTES` bytes,
    :data:`MAX_ALIASES` aliases and :data:`MAX_NODES` values after alias expansion; duplicate
    keys are errors. Only plain YAML types are built (``yaml.SafeLoader``).

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    object
        The parsed document (a dict for a params file).

    Raises
    ------
    ParamsError
        Naming the file and the line, key or byte at fault.
    """
    path = Path(path)
    if path.is_dir():
        raise ParamsError(str(path), ["(file): got a folder; expected a params file (params/<region>.yml)"])
    if not path.is_file():
        raise ParamsError(str(path), ["(file): file not found"])
    size = path.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise ParamsError(str(path), [f"(file): {size:,} bytes; expected a params file of at most "
                                      f"{MAX_PARAMS_BYTES:,} bytes"])
    blob = path.read_bytes()
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = blob[: e.start].count(b"\n") + 1
        col = e.start - (blob.rfind(b"\n", 0, e.start) + 1) + 1
        raise ParamsError(str(path), [
            f"line {line}, character {col}: byte 0x{blob[e.start]:02x} is not UTF-8; expected a UTF-8 text file "
            "(save the params file as UTF-8; data files may use another encoding, declared by data.encoding)"
        ]) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ParamsError(str(path), [f"line {line}: contains a NUL character; expected a YAML text file"])
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except _YamlLimit as e:
            raise ParamsError(str(path), [str(e)]) from None
        except yaml.YAMLError as e:
            raise ParamsError(str(path), [f"not valid YAML: {_short_yaml_error(e)}"]) from None
        if node is None:
            return None
        problems = _node_problems(node)
        if problems:
            raise ParamsError(str(path), problems)
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as e:
            raise ParamsError(str(path), [f"not valid YAML: {_short_yaml_error(e)}"]) from None
        except RecursionError:
            raise ParamsError(str(path), ["(top level): aliases refer to themselves; expected a plain params "
                                          "file without aliases"]) from None
    finally:
        loader.dispose()


def _short_yaml_error(e: yaml.YAMLError) -> str:
    """PyYAML's message with its line (1-based) and without the echoed source snippet."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
    return where + (what if len(what) <= 200 else f"{what[:200]}... ({len(what)} characters)")


def _inside(path: Path, roots: list[Path]) -> bool:
    try:
        full = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return False
    return any(full.is_relative_to(Path(r).resolve()) for r in roots)


def _outside_message(key: str | None, value: str, roots: list[Path]) -> str:
    where = Path(roots[0]).resolve()
    extra = f" or {', '.join(str(Path(r).resolve()) for r in roots[1:])}" if len(roots) > 1 else ""
    shown = short_repr(value, limit=400)  # a path is read to its end: the file name matters
    head = f"{key}: got {shown}" if key else f"file {shown}"
    return (f"{head}; expected a file inside the project folder {where}{extra} "
            "(pass --data-root FOLDER to read data from another folder)")


_FILE_SUFFIXES = {".csv", ".tsv", ".txt", ".tif", ".tiff", ".json", ".yml", ".yaml", ".gpkg", ".geojson", ".shp",
                  ".nc", ".parquet", ".xls", ".xlsx", ".zip"}


def _looks_like_path(v: str) -> bool:
    if not (0 < len(v) < 4096) or v.startswith(("http:", "https:")) or "\n" in v:
        return False
    p = Path(v)
    return p.is_absolute() or ".." in p.parts or p.suffix.lower() in _FILE_SUFFIXES


def option_strings(value, key: str):
    """Every string inside nested option values, with its key path (``a.b[0]``), depth first."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, x in value.items():
            yield from option_strings(x, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, x in enumerate(value):
            yield from option_strings(x, f"{key}[{i}]")


def _path_problems(params: RegionParams) -> list[str]:
    """Data and option files that lead outside the allowed folders, one line each."""
    roots = params.allowed_roots
    items: list[tuple[str, str]] = []
    s = params.data.samples
    items += [(f"data.samples.{m}", v) for m, v in s.items()] if isinstance(s, dict) else [("data.samples", s)]
    if params.data.grid:
        items.append(("data.grid", params.data.grid))

    for stage, opts in params.stages.items():
        items += [(k, v) for k, v in option_strings(opts or {}, f"stages.{stage}") if _looks_like_path(v)]
    problems = []
    for key, v in items:
        p = Path(v)
        if not _inside(p if p.is_absolute() else params.base_dir / p, roots):
            problems.append(_outside_message(key, v, roots))
    return problems


def data_roots_from_env() -> tuple[str, ...]:
    """Folders named in ``HMLIB_DATA_ROOT`` (set by ``hmlib --data-root``)."""
    return tuple(x for x in os.environ.get(DATA_ROOT_ENV, "").split(os.pathsep) if x.strip())


def load_params(path: str | Path, *, base_dir: str | Path | None = None,
                data_roots: list[str | Path] | tuple | None = None) -> RegionParams:
    """Read and validate ``params/<region>.yml``.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    base_dir : str or Path, optional
        Folder data paths are relative to; default: the parent of the ``params/`` folder.
    data_roots : list of str or Path, optional
        Further folders data and option files may come from (default: ``HMLIB_DATA_ROOT``).

    Returns
    -------
    RegionParams
        The validated parameters.

    Raises
    ------
    ParamsError
        With one line per problem naming the key, the bad value and what was expected.
    """
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ParamsError(str(path), [f"(top level): got {_kind(raw)}; expected a mapping of keys "
                                      "(region, data, media, metals, references, stages)"])
    bad_keys = [k for k in raw if not isinstance(k, str)]
    if bad_keys:
        raise ParamsError(str(path), [f"(top level): got key {short_repr(k)}; expected text keys" for k in bad_keys])
    try:
        params = RegionParams.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(str(path), _merge_alternatives(
            [line for err in e.errors() for line in _explain_all(err, raw)])) from None
    # stage names and options
    from .stages import validate_stage_options  # late import: stages import params

    problems = validate_stage_options(params.stages)
    if problems:
        raise ParamsError(str(path), problems)
    if base_dir is None:
        base_dir = path.resolve().parent.parent if path.resolve().parent.name == "params" else path.resolve().parent
    params._base_dir = str(base_dir)
    params._path = str(path)
    roots = data_roots_from_env() if data_roots is None else tuple(str(r) for r in data_roots)
    params._data_roots = tuple(str(Path(r).resolve()) for r in roots)
    problems = _path_problems(params)
    if problems:
        raise ParamsError(str(path), problems)
    return params


def _merge_alternatives(lines: list[str]) -> list[str]:
    """One line per key and value: a union's branches ('text', 'a mapping') become 'text or a mapping'."""
    merged: dict[str, list[str]] = {}
    for ln in lines:
        head, sep, expected = ln.partition("; expected ")
        merged.setdefault(head if sep else ln, []).extend([expected] if sep else [])
    return [f"{h}; expected {' or '.join(dict.fromkeys(ex))}" if ex else h for h, ex in merged.items()]


def _kind(raw: Any) -> str:
    if raw is None:
        return "an empty file"
    return {"list": "a list", "str": f"the text {short_repr(raw)}", "int": "a number", "float": "a number",
            "bool": "true/false"}.get(type(raw).__name__, type(raw).__name__)


def params_hash(params: RegionParams) -> str:
    """SHA-256 of the validated parameters (stable key order)."""
    blob = json.dumps(params.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
