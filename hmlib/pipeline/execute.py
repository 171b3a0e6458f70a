"""Execute one stage: its notebook under papermill (``hmlib run``), or its functions in this process.

Both paths call the same library code (``stage.run`` then ``stage.report``); the notebook is the
readable view of the run and is kept, executed, in the report.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import StageError
from ..stages import StageSpec, stage_module

__all__ = ["execute_notebook", "execute_in_process", "write_skip_fragment", "failed_cell", "ran_a_cell", "KERNEL_ARGS",
           "KERNEL_START_ATTEMPTS", "kernel_manager_class"]

#: the kernel logs only errors (no transport warning per stage on the console)
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]
#: attempts at a stage whose kernel stops before it has run any cell. jupyter_client picks free ports for a new
#: kernel, which binds them a moment later; when several kernels start at once (``--jobs``, a Dask cluster, other
#: programs) another process can take a port in between, and the kernel dies before replying ("Address already in
#: use"). Nothing of the stage has run then, so starting it again is safe; a stage that ran a cell is never rerun.
KERNEL_START_ATTEMPTS = 3

_KERNEL_MANAGER = None


def kernel_manager_class():
    """jupyter_client's ``AsyncKernelManager`` without the interrupt it sends before a shutdown.

    ``shutdown_kernel`` first interrupts the kernel (SIGINT), then asks it to shut down. When the
    signal lands while the kernel is still inside a message handler (more likely on a loaded machine),
    ipykernel logs "KeyboardInterrupt caught in kernel" at ERROR level, which reached the console during
    ``hmlib run``. A kernel papermill shuts down has finished its cells, so there is nothing to
    interrupt: this manager skips the interrupt while shutting down. A kernel that ignores the
    shutdown request is still terminated, then killed, by jupyter_client after its wait time; cell
    timeouts (not a shutdown) still interrupt.
    """
    global _KERNEL_MANAGER
    if _KERNEL_MANAGER is None:
        from jupyter_client import AsyncKernelManager

        class QuietShutdownKernelManager(AsyncKernelManager):
            async def _async_interrupt_kernel(self) -> None:
                if self.shutting_down:
                    return
                await super()._async_interrupt_kernel()

            interrupt_kernel = _async_interrupt_kernel

        _KERNEL_MANAGER = QuietShutdownKernelManager
    return _KERNEL_MANAGER


def failed_cell(nb_path: Path) -> tuple[str | None, str, str]:
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


def ran_a_cell(nb_path: Path) -> bool:
    """Whether the kernel started any code cell of the (partly) executed notebook ``nb_path``.

    papermill records the start time of each cell it starts (its status is no guide: when the run fails, cells that
    never ran are marked "completed"); a notebook that cannot be read counts as run (it is then not retried)."""
    import nbformat

    if not nb_path.is_file():
        return False
    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable: assume the worst, that something ran
        return True
    return any(c.cell_type == "code" and (c.get("execution_count") is not None
                                          or c.get("metadata", {}).get("papermill", {}).get("start_time") is not None)
               for c in nb.cells)


def execute_notebook(spec: StageSpec, *, notebook: Path, executed: Path, parameters: dict, cwd: Path,
                     failed_dir: Path, kernel_name: str = "python3", timeout: int | None = 3600) -> None:
    """Run the stage's notebook with papermill into ``executed``.

    A kernel that stops before running any cell is started again, up to :data:`KERNEL_START_ATTEMPTS` times.

    Raises
    ------
    StageError : naming the stage, the failing cell and the error; the executed notebook is copied
        to ``failed_dir``.
    """
    import shutil

    import papermill as pm

    os.environ["HMLIB_PIPELINE"] = "1"  # kernels inherit it: progress goes to the console, not the notebook
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            pm.execute_notebook(str(notebook), str(executed), parameters=parameters, cwd=str(cwd),
                                kernel_name=kernel_name, progress_bar=False, log_output=False,
                                execution_timeout=timeout, extra_arguments=KERNEL_ARGS,
                                kernel_manager_class=kernel_manager_class())
            return
        except Exception as exc:  # papermill raises PapermillExecutionError; kernels may die differently
            ran = ran_a_cell(executed)
            if not ran and attempt < KERNEL_START_ATTEMPTS:
                continue
            failed_dir.mkdir(parents=True, exist_ok=True)
            kept = failed_dir / notebook.name
            if executed.is_file():
                shutil.copy2(executed, kept)
            cell, ename, evalue = failed_cell(executed) if executed.is_file() else (None, "Error", "unknown error")
            if cell is None:   # no cell holds the error: the kernel died, or never started (say so, with the cause)
                lines = str(exc).strip().splitlines()
                ename, evalue = type(exc).__name__, lines[0] if lines else evalue
                if not ran:
                    cell = f"its kernel before the first cell ({attempt} attempts)"
            raise StageError(spec.name, cell, ename, evalue, str(kept)) from None


def execute_in_process(name: str, *, params_file: Path, output_dir: Path, overrides: dict | None = None):
    """Run a stage's ``run`` and ``report`` in this process (tests, benchmarks); returns its result."""
    from ..context import open_stage

    mod = stage_module(name)
    ctx = open_stage(name, params_file=params_file, output_dir=output_dir, overrides=overrides)
    result = mod.run(ctx)
    mod.report(ctx, result)
    ctx.out.finish()
    return result


def write_skip_fragment(staging: Path, spec: StageSpec, reason: str) -> None:
    """The fragment of a stage the region cannot run: the report lists it with the reason."""
    (staging / "fragments").mkdir(parents=True, exist_ok=True)
    frag = {"stage": spec.name, "title": spec.title, "skipped": reason, "items": [], "tables": [],
            "figures": [], "files": [], "seconds": 0.0}
    (staging / "fragments" / f"{spec.name}.json").write_text(json.dumps(frag, indent=1), encoding="utf-8")
