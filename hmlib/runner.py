"""``hmlib run``: execute a region's stages with papermill and publish the report atomically.

A run builds everything in a staging folder next to ``reports/<region>/`` and swaps it in only
when every stage and the rendering succeeded, so a failed run never replaces a good report. A
failing stage's executed notebook is kept under ``reports/<region>/_failed/``.

Stages whose inputs did not change (same notebook, options, params, input files, hmlib
source and upstream stages) are reused from the previous report instead of re-run; ``force``
re-runs everything. Independent stages run in parallel with ``jobs > 1``.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from . import __version__
from .errors import HmlibError, StageError
from .io import load_region
from .params import RegionParams, load_params, params_hash
from .stages import Stage, get_stage, options_model, skip_reason, stage_names

__all__ = ["RunResult", "run_region", "find_params", "project_root", "notebooks_dir", "library_hash",
           "KEY_PACKAGES"]

KEY_PACKAGES = ["hmlib", "numpy", "pandas", "scipy", "scikit-learn", "statsmodels", "matplotlib", "seaborn",
                "xgboost-cpu", "xgboost", "shap", "semopy", "esat", "esda", "libpysal", "mgwr", "pykrige", "gstools",
                "rasterio", "geopandas", "pyproj", "pydantic", "papermill", "nbclient", "pypandoc-binary", "typst"]


def project_root() -> Path:
    """The repository root holding ``notebooks/`` (the parent of the hmlib package)."""
    return Path(__file__).resolve().parent.parent


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def find_params(region: str, *, params_dir: str | Path | None = None) -> Path:
    """``params/<region>.yml`` (or ``region`` itself if it is a path to a YAML file)."""
    p = Path(region)
    if p.suffix in (".yml", ".yaml") and p.is_file():
        return p
    for base in ([Path(params_dir)] if params_dir else [Path.cwd() / "params", project_root() / "params"]):
        cand = base / f"{region}.yml"
        if cand.is_file():
            return cand
    raise HmlibError(f"no parameters for region {region!r}: expected params/{region}.yml")


_LIB_HASH: str | None = None


def library_hash() -> str:
    """SHA-256 over hmlib's source and data files (a stage is re-run when the library changes)."""
    global _LIB_HASH
    if _LIB_HASH is None:
        h = hashlib.sha256()
        pkg = Path(__file__).resolve().parent
        for f in sorted(pkg.rglob("*")):
            if f.is_file() and f.suffix in {".py", ".csv", ".bib", ".lua", ".css", ".typ", ".json", ".yml"} \
                    and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(pkg)).encode())
                h.update(f.read_bytes())
        _LIB_HASH = h.hexdigest()
    return _LIB_HASH


def _git_commit() -> str | None:
    root = project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _package_versions() -> dict[str, str]:
    out = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out


@dataclass
class StageRecord:
    name: str
    notebook: str
    status: str = "pending"  # ok | reused | skipped | failed
    seconds: float = 0.0
    key: str = ""
    reason: str | None = None


@dataclass
class RunResult:
    """Outcome of :func:`run_region`.

    Attributes
    ----------
    region : region id.
    report_dir : the published report folder.
    stages : per-stage records (name, status, seconds, key, reason).
    manifest : the manifest written to ``manifest.json``.
    """

    region: str
    report_dir: Path
    stages: list[StageRecord] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)


def _stage_options(stage: Stage, params: RegionParams) -> dict:
    raw = params.stages.get(stage.name) or {}
    return options_model(stage).model_validate(raw).model_dump(mode="json")


def _option_files(options: dict, base_dir: Path) -> dict[str, str]:
    """Files named by a stage's options (e.g. a fractions CSV or a raster): name -> SHA-256."""
    from .io import file_sha256

    found = {}

    def visit(v, key):
        if isinstance(v, str) and 0 < len(v) < 1024 and not v.startswith(("http:", "https:")):
            p = Path(v) if Path(v).is_absolute() else base_dir / v
            try:
                if p.is_file():
                    found[key] = file_sha256(p)
            except OSError:
                pass
        elif isinstance(v, dict):
            for k, x in v.items():
                visit(x, f"{key}.{k}")
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                visit(x, f"{key}[{i}]")

    for k, v in options.items():
        visit(v, k)
    return found


def _stage_key(stage: Stage, options: dict, phash: str, input_hashes: dict, upstream: list[str],
               base_dir: Path | None = None) -> str:
    h = hashlib.sha256()
    h.update((notebooks_dir() / stage.notebook).read_bytes())
    h.update(json.dumps(options, sort_keys=True).encode())
    if base_dir is not None:  # files named in the options (fractions, rasters...) are inputs too
        h.update(json.dumps(_option_files(options, base_dir), sort_keys=True).encode())
    h.update(phash.encode())
    h.update(json.dumps(input_hashes, sort_keys=True).encode())
    h.update(library_hash().encode())
    for u in upstream:
        h.update(u.encode())
    return h.hexdigest()


def _copy_outputs(frag_path: Path, src: Path, dst: Path) -> bool:
    """Copy a stage's outputs (listed in its fragment) from a previous report; False if any is missing."""
    frag = json.loads(frag_path.read_text(encoding="utf-8"))
    rels = [*frag.get("tables", []), *frag.get("figures", []), *frag.get("files", []),
            f"fragments/{frag['stage']}.json"]
    nb = frag.get("executed_notebook")
    if nb:
        rels.append(nb)
    if not all((src / r).exists() for r in rels):
        return False
    for r in rels:
        (dst / r).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / r, dst / r)
    return True


def _failed_cell(nb_path: Path) -> tuple[str | None, str, str]:
    """(where, ename, evalue) of the first error in an executed notebook.

    ``where`` is "code cell N of the executed notebook" plus the cell's first source line.
    """
    import nbformat

    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception:  # noqa: BLE001 - best effort; the caller reports what it has
        return None, "Error", "executed notebook could not be read"
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        n += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")[:80]
                return f"code cell {n} of the executed notebook (`{first}`)", out.get("ename", "Error"), \
                    out.get("evalue", "")
    return None, "Error", "unknown error"


def _write_skip_fragment(staging: Path, stage: Stage, reason: str) -> None:
    (staging / "fragments").mkdir(parents=True, exist_ok=True)
    frag = {"stage": stage.name, "title": stage.title, "skipped": reason,
            "items": [{"type": "markdown", "text": f"*This stage was not run for this region: {reason}.*"}],
            "tables": [], "figures": [], "files": [], "seconds": 0.0}
    (staging / "fragments" / f"{stage.name}.json").write_text(json.dumps(frag, indent=1), encoding="utf-8")


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def run_region(region: str, *, stages: list[str] | None = None, jobs: int = 1, render: bool = True,
               force: bool = False, reports_dir: str | Path = "reports", params_dir: str | Path | None = None,
               quiet: bool = False, kernel_name: str = "python3", timeout: int | None = 3600) -> RunResult:
    """Run a region's stages and publish ``<reports_dir>/<region>/``.

    Parameters
    ----------
    region : region id (``params/<region>.yml``) or a path to a params file.
    stages : subset of the params' stages to run (default: all stages listed in params).
    jobs : stages run at once (independent stages only).
    render : render report.html and report.pdf.
    force : re-run stages even when their inputs are unchanged.
    reports_dir : parent folder of the region's report.

    Raises
    ------
    ParamsError, DataError : bad parameters or data (nothing is run).
    StageError : a stage failed; the previous report is untouched.
    """
    import papermill as pm

    params_path = find_params(region, params_dir=params_dir).resolve()
    params = load_params(params_path)
    data = load_region(params)  # validates every input before anything runs
    rid = params.region.id
    reports_dir = Path(reports_dir).resolve()
    final = reports_dir / rid
    reports_dir.mkdir(parents=True, exist_ok=True)

    selected = [n for n in stage_names() if n in params.stages]
    if stages:
        unknown = [s for s in stages if s not in stage_names()]
        if unknown:
            raise HmlibError(f"unknown stage(s) {unknown}; registered: {stage_names()}")
        not_in_params = [s for s in stages if s not in params.stages]
        if not_in_params:
            raise HmlibError(f"stage(s) {not_in_params} are not enabled in {params_path} (add them under 'stages:')")
        selected = [n for n in selected if n in stages]
    if not selected:
        raise HmlibError("no stages to run")

    # stage kernels inherit the environment: share the cores between parallel stages instead of
    # letting every BLAS/OpenMP pool claim all of them (oversubscription slows GPR fits ~8x)
    threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    os.environ.setdefault("MPLBACKEND", "Agg")

    staging = reports_dir / f".staging-{rid}-{os.getpid()}-{int(time.time())}"
    staging.mkdir(parents=True)
    for leftover in reports_dir.glob(f".staging-{rid}-*"):  # from a run that was killed
        if leftover != staging and time.time() - leftover.stat().st_mtime > 6 * 3600:
            shutil.rmtree(leftover, ignore_errors=True)
    (staging / "notebooks").mkdir()
    prev_manifest = {}
    if (final / "manifest.json").is_file():
        try:
            prev_manifest = json.loads((final / "manifest.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            prev_manifest = {}
    prev_keys = {s["name"]: s for s in prev_manifest.get("stages", [])}

    phash = params_hash(params)
    input_hashes = data.input_hashes()
    records: dict[str, StageRecord] = {}
    lock = threading.Lock()
    t_run = time.time()
    n_total = len(selected)
    counter = {"done": 0}

    def run_one(name: str) -> StageRecord:
        st = get_stage(name)
        rec = StageRecord(name=name, notebook=st.notebook)
        t0 = time.time()
        reason = skip_reason(st, params)
        if reason:
            rec.status, rec.reason = "skipped", reason
            _write_skip_fragment(staging, st, reason)
            return rec
        opts = _stage_options(st, params)
        upstream = [records[u].key for u in st.after if u in records]
        rec.key = _stage_key(st, opts, phash, input_hashes, upstream, base_dir=params.base_dir)
        old = prev_keys.get(name)
        if (not force and old and old.get("key") == rec.key and old.get("status") in ("ok", "reused", "kept")
                and (final / "fragments" / f"{name}.json").is_file()
                and _copy_outputs(final / "fragments" / f"{name}.json", final, staging)):
            rec.status = "reused"
            rec.seconds = old.get("seconds", 0.0)
            return rec
        out_nb = staging / "notebooks" / st.notebook
        parameters = {"region": rid, "params_file": str(params_path), "output_dir": str(staging), **opts}
        try:
            pm.execute_notebook(str(notebooks_dir() / st.notebook), str(out_nb), parameters=parameters,
                                cwd=str(project_root()), kernel_name=kernel_name, progress_bar=False,
                                log_output=False, execution_timeout=timeout)
        except Exception as exc:  # papermill raises PapermillExecutionError; kernels may die differently
            failed_dir = final / "_failed"
            failed_dir.mkdir(parents=True, exist_ok=True)
            kept = failed_dir / st.notebook
            if out_nb.is_file():
                shutil.copy2(out_nb, kept)
            cell, ename, evalue = _failed_cell(out_nb) if out_nb.is_file() else (None, type(exc).__name__, str(exc))
            rec.status, rec.seconds, rec.reason = "failed", round(time.time() - t0, 2), f"{ename}: {evalue}"
            raise StageError(name, cell, ename, evalue, str(kept)) from None
        frag_path = staging / "fragments" / f"{name}.json"
        if not frag_path.is_file():
            raise StageError(name, None, "MissingFragment", "the notebook did not call ctx.out.finish()", str(out_nb))
        frag = json.loads(frag_path.read_text(encoding="utf-8"))
        frag["executed_notebook"] = f"notebooks/{st.notebook}"
        frag_path.write_text(json.dumps(frag, indent=1), encoding="utf-8")
        rec.status = "skipped" if frag.get("skipped") else "ok"
        rec.reason = frag.get("skipped")
        rec.seconds = round(time.time() - t0, 2)
        return rec

    def report_progress(rec: StageRecord) -> None:
        with lock:
            counter["done"] += 1
            extra = f": {rec.reason}" if rec.reason and rec.status != "failed" else ""
            _log(f"[{counter['done']}/{n_total}] {rec.name:<16} {rec.status:<8} {rec.seconds:7.1f} s{extra}", quiet)

    # stages enabled in params but not selected this time keep their previous outputs (so that a
    # selected stage can read the tables of an upstream stage run earlier)
    kept = []
    for name in stage_names():
        if name in params.stages and name not in selected and name in prev_keys \
                and (final / "fragments" / f"{name}.json").is_file() \
                and _copy_outputs(final / "fragments" / f"{name}.json", final, staging):
            old = prev_keys[name]
            records[name] = StageRecord(name=name, notebook=old.get("notebook", ""), status="kept",
                                        seconds=old.get("seconds", 0.0), key=old.get("key", ""),
                                        reason="not re-run in this run; outputs of the previous run kept")
            kept.append(name)

    try:
        _log(f"hmlib {__version__}: region {rid}, {n_total} stage(s): {', '.join(selected)}"
             + (f" (kept from the previous run: {', '.join(kept)})" if kept else ""), quiet)
        pending = list(selected)
        if jobs <= 1:
            for name in pending:
                _log(f"  running {name} ...", quiet)
                rec = run_one(name)
                records[name] = rec
                report_progress(rec)
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                running = {}
                while pending or running:
                    ready = [n for n in pending
                             if all(u in records or u not in selected for u in get_stage(n).after)]
                    for n in ready:
                        pending.remove(n)
                        running[pool.submit(run_one, n)] = n
                    if not running:
                        raise HmlibError(f"stage dependency cycle among {pending}")
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        n = running.pop(fut)
                        rec = fut.result()  # re-raises StageError
                        records[n] = rec
                        report_progress(rec)
        manifest = {
            "region": rid,
            "title": params.region.title,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "hmlib_version": __version__,
            "git_commit": _git_commit(),
            "params_file": str(params_path.relative_to(params.base_dir) if params_path.is_relative_to(params.base_dir) else params_path),
            "params_sha256": phash,
            "library_sha256": library_hash(),
            "inputs": {k: {"path": str(Path(v).resolve().relative_to(params.base_dir.resolve()))
                           if Path(v).resolve().is_relative_to(params.base_dir.resolve()) else str(v),
                           "sha256": input_hashes[k]} for k, v in data.files.items()},
            "packages": _package_versions(),
            "platform": f"{platform.system()} {platform.machine()}",
            "seed": params.seed,
            "stages": [vars(records[n]) for n in stage_names() if n in records],
            "seconds_total": round(time.time() - t_run, 2),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        shutil.copy2(params_path, staging / "params.yml")
        if render:
            from .report import render_report

            t0 = time.time()
            _log("  rendering report.html and report.pdf ...", quiet)
            render_report(staging, params=params, manifest=manifest)
            _log(f"  rendered in {time.time() - t0:.1f} s", quiet)
        _publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _log(f"report: {final}", quiet)
    return RunResult(region=rid, report_dir=final, stages=[records[n] for n in selected if n in records],
                     manifest=manifest)


def _publish(staging: Path, final: Path) -> None:
    """Swap the staging folder in for ``final`` (two renames on one filesystem)."""
    old = final.parent / f".old-{final.name}-{os.getpid()}-{int(time.time())}"
    if final.exists():
        final.rename(old)
    try:
        staging.rename(final)
    except BaseException:
        if old.exists() and not final.exists():
            old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)
