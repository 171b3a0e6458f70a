"""The stage contract: what a stage declares (:class:`StageSpec`) and what it reads (:class:`Read`).

A stage is one module under :mod:`hmlib.stages` with

``Options``
    the stage's options model (a :class:`~hmlib.params.StageOptions`): the only place options are
    declared. The notebook's parameters cell lists the same names (checked by a test) and params
    files set them under ``stages: <name>:``.
``SPEC``
    a :class:`StageSpec`: notebook, report title, options model, the tables the stage reads from
    other stages (:class:`Read`, required or optional) and the tables it writes for other stages.
    The runner builds the run order, the parallel schedule and the reuse keys from these
    declarations, so an undeclared dependency cannot exist: :meth:`StageContext.read_table`
    refuses a table the stage did not declare.
``check(ctx) -> list[str]``
    problems of the options against the region's data (a column that does not exist...), one line
    each in the form ``stages.<stage>.<key>: got <value>; expected <what>``. ``hmlib validate`` and
    ``hmlib run`` call it for every enabled stage before anything executes.
``run(ctx) -> Result``
    all computation; returns a dataclass of tidy frames and fitted objects.
``report(ctx, result) -> None``
    the report section: methods and results prose, display tables and figures through ``ctx.out``.

Requirement predicates (``requires``) decide whether a region can run a stage at all; a stage the
region cannot run is skipped and the report lists it with the reason.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..params import RegionParams, StageOptions

__all__ = ["Read", "StageSpec", "Requirement", "needs_grid", "needs_two_paired_media", "needs_exposure_medium",
           "needs_guideline", "needs_option"]

Requirement = Callable[["RegionParams", str], "str | None"]


@dataclass(frozen=True)
class Read:
    """A table a stage reads from another stage of the same run.

    Attributes
    ----------
    table : name of the table (``tables/<table>.csv``), written by the stage whose ``SPEC.writes``
        lists it.
    required : a required read makes the producing stage a prerequisite (the stage is skipped with a
        reason when the producer is not enabled); an optional read only orders the stage after the
        producer when the producer is enabled for the region.
    """

    table: str
    required: bool = True


@dataclass(frozen=True)
class StageSpec:
    """What a stage declares.

    Attributes
    ----------
    name : key under ``stages:`` in params, and the stage module's name.
    notebook : file name under ``notebooks/``.
    title : section title in the report.
    options : the options model (a :class:`~hmlib.params.StageOptions` subclass).
    reads : tables read from other stages.
    writes : tables other stages may read (each has a schema in :mod:`hmlib.tables`).
    requires : predicates ``(params, stage_name) -> None | reason``.
    """

    name: str
    notebook: str
    title: str
    options: type[StageOptions]
    reads: tuple[Read, ...] = ()
    writes: tuple[str, ...] = ()
    requires: tuple[Requirement, ...] = field(default=())

    def read(self, table: str) -> Read | None:
        return next((r for r in self.reads if r.table == table), None)


# --- requirement predicates ---------------------------------------------------------------------
# Each takes the region's params and the stage's name and returns None when the region can run the
# stage, else the reason it cannot (a sentence for the report's "analyses not run" table).
def needs_grid(params: RegionParams, stage: str) -> str | None:
    return None if params.data.grid else "the region has no prediction grid"


def needs_two_paired_media(params: RegionParams, stage: str) -> str | None:
    if len(params.media) < 2:
        return f"the region has one medium ({', '.join(params.media)}); this analysis needs two or more paired media"
    if not params.data.site_column:
        return "the region has several media but no column pairing them by site"
    return None


def needs_exposure_medium(params: RegionParams, stage: str) -> str | None:
    if {"soil", "dust", "water", "groundwater"} & set(params.media):
        return None
    return "no soil, dust or water medium: the US EPA exposure equations need one"


def needs_guideline(params: RegionParams, stage: str) -> str | None:
    if params.references.guideline:
        return None
    return "the region names no guideline set, which the carrying capacity needs"


def needs_option(key: str, what: str) -> Requirement:
    """Requirement: the stage's own options must set ``key`` (e.g. a fractions file)."""
    def check(params: RegionParams, stage: str) -> str | None:
        if (params.stages.get(stage) or {}).get(key):
            return None
        return f"no {what} was given"
    return check
