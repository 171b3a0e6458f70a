"""Build a report in a staging folder and swap it in only when everything succeeded."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

__all__ = ["new_staging", "publish", "STALE_SECONDS"]

#: staging folders older than this are left-overs of killed runs and are removed
STALE_SECONDS = 6 * 3600


def new_staging(reports_dir: Path, region: str) -> Path:
    """A fresh staging folder next to ``reports_dir/region`` (removing stale ones of killed runs)."""
    staging = reports_dir / f".staging-{region}-{os.getpid()}-{time.time_ns()}"
    staging.mkdir(parents=True)
    for leftover in reports_dir.glob(f".staging-{region}-*"):
        if leftover != staging and time.time() - leftover.stat().st_mtime > STALE_SECONDS:
            shutil.rmtree(leftover, ignore_errors=True)
    (staging / "notebooks").mkdir()
    return staging


def publish(staging: Path, final: Path) -> None:
    """Swap the staging folder in for ``final`` (two renames on one filesystem)."""
    old = final.parent / f".old-{final.name}-{os.getpid()}-{time.time_ns()}"
    if final.exists():
        failed = final / "_failed"
        if failed.is_dir():  # keep the notebooks of earlier failures beside the new report
            shutil.copytree(failed, staging / "_failed", dirs_exist_ok=True)
        final.rename(old)
    try:
        staging.rename(final)
    except BaseException:
        if old.exists() and not final.exists():
            old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)
