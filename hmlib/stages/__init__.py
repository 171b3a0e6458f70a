"""The stages of a report, in report order, each a module of this package (see :mod:`.base`).

``STAGES`` lists the stage modules in the order their sections appear in the report. The run
order is not this order: the runner derives it from what each stage reads (:class:`~.base.Read`),
see :mod:`hmlib.pipeline.plan`. To add a stage, write ``hmlib/stages/<name>.py`` and its notebook
(``hmlib new-stage NAME`` writes both from the template) and add the name here.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .base import (
    Read,
    StageSpec,
    needs_exposure_medium,
    needs_grid,
    needs_guideline,
    needs_option,
    needs_two_paired_media,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..params import RegionParams, StageOptions

__all__ = ["STAGES", "Read", "StageSpec", "REGISTRY", "stage_module", "get_stage", "stage_names", "options_model",
           "validate_stage_options", "skip_reason", "producers", "needs_grid", "needs_two_paired_media",
           "needs_exposure_medium", "needs_guideline", "needs_option"]

STAGES = ["data_quality", "baselines", "indices", "spatial", "health", "sources", "ml_drivers", "remote_sensing",
          "crossmedia", "accumulation", "mobility"]


def stage_module(name: str) -> ModuleType:
    """The module of stage ``name`` (``hmlib.stages.<name>``)."""
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}")
    return importlib.import_module(f"{__name__}.{name}")


class _Registry:
    """The stages' specs in report order (imported on first use)."""

    def __iter__(self):
        return iter([stage_module(n).SPEC for n in STAGES])

    def __len__(self):
        return len(STAGES)

    def __getitem__(self, i):
        return list(self)[i]


REGISTRY = _Registry()


def stage_names() -> list[str]:
    return list(STAGES)


def get_stage(name: str) -> StageSpec:
    return stage_module(name).SPEC


def options_model(stage: StageSpec | str) -> type[StageOptions]:
    return (get_stage(stage) if isinstance(stage, str) else stage).options


def producers() -> dict[str, str]:
    """Table name -> the stage that writes it (from the specs' ``writes``)."""
    out: dict[str, str] = {}
    for spec in REGISTRY:
        for t in spec.writes:
            if t in out:
                raise RuntimeError(f"table {t!r} is written by two stages: {out[t]} and {spec.name}")
            out[t] = spec.name
    return out


def validate_stage_options(stages: dict) -> list[str]:
    """Problems (one line each) with the ``stages:`` mapping of a params file."""
    from ..params import _explain

    problems: list[str] = []
    for name, opts in stages.items():
        if name not in STAGES:
            problems.append(f"stages.{name}: unknown stage; expected one of {', '.join(STAGES)}")
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


def skip_reason(stage: StageSpec, params: RegionParams) -> str | None:
    """Why the region cannot run ``stage`` (None when it can): its requirements and required reads."""
    for pred in stage.requires:
        reason = pred(params, stage.name)
        if reason:
            return reason
    made_by = producers()
    for r in stage.reads:
        src = made_by.get(r.table)
        if r.required and src is not None and src not in params.stages:
            return f"it needs the results of the {get_stage(src).title.split(':')[0].lower()} analysis, which is not enabled"
    return None
