"""``hmlib run``: run a region's stages and publish its report atomically.

:func:`run_region` composes the parts in :mod:`hmlib.pipeline`: the plan (which stages run, in an
order derived from the tables each stage declares it reads), the cache (a stage whose inputs did
not change is reused from the previous report), execution (one papermill notebook per stage),
the manifest and the publication (a staging folder swapped in only when every stage and the
rendering succeeded; a failing stage's executed notebook is kept under ``_failed/``).

The report does not depend on ``jobs``: a stage waits for the stages whose tables it reads, and
every stage kernel uses the same number of BLAS/OpenMP threads (``HMLIB_THREADS``, default 1)
whatever the number of stages running at once.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import ParamsError, StageError
from .io import load_region
from .params import RegionParams, load_params, params_hash
from .pipeline import cache, execute, publish
from .pipeline.cache import library_hash
from .pipeline.manifest import KEY_PACKAGES, build_manifest
from .pipeline.plan import RunPlan, build_plan, find_params, notebooks_dir, project_root, ready
from .stages import STAGES, stage_module

__all__ = ["RunResult", "StageRecord", "run_region", "find_params", "project_root", "notebooks_dir", "library_hash",
           "KEY_PACKAGES", "check_stages"]


@dataclass
class StageRecord:
    name: str
    notebook: str
    status: str = "pending"  # ok | reused | kept | skipped | failed
    seconds: float = 0.0
    key: str = ""
    reason: str | None = None
    peak_memory_mb: float | None = None


@dataclass
class RunResult:
    """Outcome of :func:`run_region`.

    Attributes
    ----------
    region : region id.
    report_dir : the published report folder.
    stages : per-stage records (name, status, seconds, key, reason) in report order.
    manifest : the manifest written to ``manifest.json``.
    """

    region: str
    report_dir: Path
    stages: list[StageRecord] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)


def check_stages(params: RegionParams, names: list[str]) -> list[str]:
    """Every enabled stage's own checks of its options against the data (``check(ctx)``)."""
    from .context import open_stage

    problems: list[str] = []
    for name in names:
        mod = stage_module(name)
        check = getattr(mod, "check", None)
        if check is None:
            continue
        ctx = open_stage(name, params_file=params.path, output_dir=None)
        problems += check(ctx)
        shutil.rmtree(ctx.output_dir, ignore_errors=True)
    return problems


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _previous(final: Path) -> dict[str, dict]:
    try:
        man = json.loads((final / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return {s["name"]: s for s in man.get("stages", []) if (final / "fragments" / f"{s['name']}.json").is_file()}


def _stage_parameters(name: str, params: RegionParams, params_path: Path, staging: Path) -> dict:
    from .context import stage_options

    opts = stage_options(name, params).model_dump(mode="json")
    return {"region": params.region.id, "params_file": str(params_path), "output_dir": str(staging), **opts}


def run_region(region: str, *, stages: list[str] | None = None, jobs: int = 1, render: bool = True,
               force: bool = False, reports_dir: str | Path = "reports", params_dir: str | Path | None = None,
               quiet: bool = False, kernel_name: str = "python3", timeout: int | None = 3600) -> RunResult:
    """Run a region's stages and publish ``<reports_dir>/<region>/``.

    Parameters
    ----------
    region : region id (``params/<region>.yml``) or a path to a params file.
    stages : subset of the params' stages to run (default: all stages listed in params); the others
        keep their previous outputs.
    jobs : stages run at once (a stage still waits for the stages whose tables it reads).
    render : render report.html and report.pdf.
    force : re-run stages even when their inputs are unchanged.
    reports_dir : parent folder of the region's report.

    Returns
    -------
    RunResult

    Raises
    ------
    ParamsError, DataError : bad parameters or data (nothing is run).
    StageError : a stage failed; the previous report is untouched.
    """
    params_path = find_params(region, params_dir=params_dir).resolve()
    params = load_params(params_path)
    reports_dir = Path(reports_dir).resolve()
    final = reports_dir / params.region.id
    prev = _previous(final)
    plan = build_plan(params, selected=stages, previous=set(prev))
    data = load_region(params)  # validates every input before anything runs
    problems = check_stages(params, [n for n in plan.order if plan.stages[n].skip is None])
    if problems:
        raise ParamsError(str(params_path), problems)

    # the same threads per stage whatever `jobs` is, so that results do not depend on it
    threads = os.environ.get("HMLIB_THREADS", "1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    os.environ.setdefault("MPLBACKEND", "Agg")

    reports_dir.mkdir(parents=True, exist_ok=True)
    staging = publish.new_staging(reports_dir, params.region.id)
    try:
        records, seconds = _run_stages(plan, params=params, params_path=params_path, data=data, staging=staging, final=final,
                              prev=prev, jobs=jobs, force=force, quiet=quiet, kernel_name=kernel_name,
                              timeout=timeout)
        ordered = [records[n] for n in STAGES if n in records]
        manifest = build_manifest(params=params, params_path=params_path, params_sha256=params_hash(params),
                                  files=data.files, input_hashes=data.input_hashes(),
                                  records=[vars(r) for r in ordered], seconds_total=seconds)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        shutil.copy2(params_path, staging / "params.yml")
        if render:
            from .report import render_report

            t0 = time.time()
            _log("  rendering report.html and report.pdf ...", quiet)
            render_report(staging, params=params, manifest=manifest)
            _log(f"  rendered in {time.time() - t0:.1f} s", quiet)
        publish.publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _log(f"report: {final}", quiet)
    return RunResult(region=params.region.id, report_dir=final, stages=ordered, manifest=manifest)


def _run_stages(plan: RunPlan, *, params: RegionParams, params_path: Path, data, staging: Path, final: Path,
                prev: dict, jobs: int, force: bool, quiet: bool, kernel_name: str, timeout: int | None
                ) -> tuple[dict[str, StageRecord], float]:
    phash = params_hash(params)
    input_hashes = data.input_hashes()
    records: dict[str, StageRecord] = {}
    t_run = time.time()
    lock = threading.Lock()

    for name in plan.kept:  # enabled but not selected: the previous run's outputs stay
        old = prev[name]
        if not cache.copy_outputs(final / "fragments" / f"{name}.json", final, staging):
            raise StageError(name, None, "MissingOutputs", "the previous report lacks this stage's outputs; "
                             f"run it with --stages {name}", str(final))
        records[name] = StageRecord(name=name, notebook=old.get("notebook", ""), status="kept",
                                    seconds=old.get("seconds", 0.0), key=old.get("key", ""),
                                    reason="not re-run in this run; outputs of the previous run kept")

    def run_one(name: str) -> StageRecord:
        sp = plan.stages[name]
        rec = StageRecord(name=name, notebook=sp.spec.notebook)
        t0 = time.time()
        if sp.skip:
            rec.status, rec.reason = "skipped", sp.skip
            execute.write_skip_fragment(staging, sp.spec, sp.skip)
            return rec
        parameters = _stage_parameters(name, params, params_path, staging)
        opts = {k: v for k, v in parameters.items() if k not in ("region", "params_file", "output_dir")}
        rec.key = cache.stage_key(notebook=notebooks_dir() / sp.spec.notebook, options=opts, params_sha256=phash,
                                  input_hashes=input_hashes, upstream={d: records[d].key for d in sp.depends_on},
                                  base_dir=params.base_dir)
        old = prev.get(name)
        if (not force and old and old.get("key") == rec.key and old.get("status") in ("ok", "reused", "kept")
                and cache.copy_outputs(final / "fragments" / f"{name}.json", final, staging)):
            rec.status, rec.seconds = "reused", old.get("seconds", 0.0)
            rec.peak_memory_mb = old.get("peak_memory_mb")
            return rec
        executed = staging / "notebooks" / sp.spec.notebook
        execute.execute_notebook(sp.spec, notebook=notebooks_dir() / sp.spec.notebook, executed=executed,
                                 parameters=parameters, cwd=project_root(), failed_dir=final / "_failed",
                                 kernel_name=kernel_name, timeout=timeout)
        frag_path = staging / "fragments" / f"{name}.json"
        if not frag_path.is_file():
            raise StageError(name, None, "MissingFragment", "the notebook did not call ctx.out.finish()", str(executed))
        frag = json.loads(frag_path.read_text(encoding="utf-8"))
        frag["executed_notebook"] = f"notebooks/{sp.spec.notebook}"
        frag_path.write_text(json.dumps(frag, indent=1), encoding="utf-8")
        rec.status = "skipped" if frag.get("skipped") else "ok"
        rec.reason = frag.get("skipped")
        rec.peak_memory_mb = frag.get("peak_memory_mb")
        rec.seconds = round(time.time() - t0, 2)
        return rec

    n_total = len(plan.order)

    def finished(rec: StageRecord) -> None:
        with lock:
            records[rec.name] = rec
            extra = f": {rec.reason}" if rec.reason else ""
            _log(f"[{sum(1 for n in plan.order if n in records)}/{n_total}] {rec.name:<16} {rec.status:<8} "
                 f"{rec.seconds:7.1f} s{extra}", quiet)

    _log(f"hmlib {__version__}: region {params.region.id}, {n_total} stages: {', '.join(plan.order)}"
         + (f" (kept from the previous run: {', '.join(plan.kept)})" if plan.kept else ""), quiet)
    done: set[str] = set()
    started: set[str] = set()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running = {}
        while len(done) < n_total:
            for n in ready(plan, done, started):
                if len(running) >= max(1, jobs):
                    break
                started.add(n)
                _log(f"  running {n} ...", quiet)
                running[pool.submit(run_one, n)] = n
            finished_now, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished_now:
                n = running.pop(fut)
                finished(fut.result())  # re-raises StageError
                done.add(n)
    return records, time.time() - t_run
