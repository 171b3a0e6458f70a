"""The run plan: which stages run, which are skipped and why, and what each waits for.

The order comes from the stages' declared reads (``SPEC.reads``): a stage waits for the stages
that write the tables it reads, whenever those stages are enabled for the region. The section order
of the report is the registry order (:data:`hmlib.stages.STAGES`), independent of the run order,
so the report is the same whatever the number of parallel jobs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HmlibError, InputError, ParamsError
from ..params import RegionParams
from ..stages import STAGES, StageSpec, get_stage, producers, skip_reason

__all__ = ["StagePlan", "RunPlan", "build_plan", "find_params", "project_root", "notebooks_dir", "ready"]


def project_root() -> Path:
    """The repository root holding ``notebooks/`` (the parent of the hmlib package)."""
    return Path(__file__).resolve().parents[2]


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def find_params(region: str, *, params_dir: str | Path | None = None) -> Path:
    """``params/<region>.yml`` (or ``region`` itself if it is a path to a YAML file)."""
    p = Path(region)
    if p.suffix in (".yml", ".yaml"):
        if p.is_file():
            return p
        raise ParamsError(str(p), [f"file not found: {p}"])
    for base in ([Path(params_dir)] if params_dir else [Path.cwd() / "params", project_root() / "params"]):
        cand = base / f"{region}.yml"
        if cand.is_file():
            return cand
    raise InputError(f"no parameters for region {region!r}: expected params/{region}.yml")


@dataclass
class StagePlan:
    """One stage in a run.

    Attributes
    ----------
    spec : the stage's declaration.
    depends_on : enabled stages whose tables this stage reads (it waits for them).
    skip : why the region cannot run the stage (None: it runs).
    """

    spec: StageSpec
    depends_on: tuple[str, ...] = ()
    skip: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class RunPlan:
    """Stages to run (in a valid sequential order) and stages kept from the previous report."""

    stages: dict[str, StagePlan] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _depends_on(spec: StageSpec, enabled: set[str]) -> tuple[str, ...]:
    made_by = producers()
    deps = []
    for r in spec.reads:
        src = made_by.get(r.table)
        if src and src in enabled and src != spec.name and src not in deps:
            deps.append(src)
    return tuple(deps)


def build_plan(params: RegionParams, *, selected: list[str] | None = None,
               previous: set[str] | frozenset[str] = frozenset()) -> RunPlan:
    """The plan for ``params``' enabled stages (or the ``selected`` subset).

    Parameters
    ----------
    params : region parameters; ``params.stages`` lists the enabled stages.
    selected : stages to (re)run; default all enabled. A selected stage whose producer is enabled but
        has no outputs in the previous report (``previous``) brings the producer into the run.
    previous : stages with outputs in the previous report (kept when not selected).

    Raises
    ------
    HmlibError : an unknown stage, or one not enabled in params.
    """
    enabled = [n for n in STAGES if n in params.stages]
    if selected:
        unknown = [s for s in selected if s not in STAGES]
        if unknown:
            raise ParamsError(str(params.path), [f"--stages: got {', '.join(unknown)}; expected one of "
                                                 f"{', '.join(STAGES)}"])
        off = [s for s in selected if s not in params.stages]
        if off:
            raise ParamsError(str(params.path), [f"--stages: {', '.join(off)} not enabled in this params file; "
                                                 "expected stages listed under 'stages:'"])
        run = set(selected)
    else:
        run = set(enabled)
    if not run:
        raise HmlibError("no stages to run: list stages under 'stages:' in the params file")
    deps = {n: _depends_on(get_stage(n), set(enabled)) for n in enabled}
    changed = True
    while changed:  # pull in producers a selected stage needs and the previous report lacks
        changed = False
        for n in list(run):
            for d in deps[n]:
                if d not in run and d not in previous:
                    run.add(d)
                    changed = True
    order: list[str] = []
    todo = [n for n in enabled if n in run]
    while todo:
        nxt = next((n for n in todo if all(d in order or d not in run for d in deps[n])), None)
        if nxt is None:
            raise HmlibError(f"stages read each other's tables in a cycle: {', '.join(todo)}")
        order.append(nxt)
        todo.remove(nxt)
    plan = RunPlan(order=order, kept=[n for n in enabled if n not in run and n in previous])
    for n in order:
        spec = get_stage(n)
        plan.stages[n] = StagePlan(spec=spec, depends_on=deps[n], skip=skip_reason(spec, params))
    return plan


def ready(plan: RunPlan, done: set[str], started: set[str]) -> list[str]:
    """Stages of ``plan`` not started whose dependencies in this run are done (registry order)."""
    return [n for n in plan.order if n not in started
            and all(d in done or d not in plan.stages for d in plan.stages[n].depends_on)]
