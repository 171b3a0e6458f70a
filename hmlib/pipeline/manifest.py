"""The manifest: what a report was made from (inputs, params, library, packages, stages)."""
from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from .. import __version__
from .cache import library_hash
from .plan import project_root

__all__ = ["KEY_PACKAGES", "package_versions", "git_commit", "build_manifest"]

KEY_PACKAGES = ["hmlib", "numpy", "pandas", "scipy", "scikit-learn", "statsmodels", "matplotlib", "seaborn",
                "xgboost-cpu", "xgboost", "shap", "esat", "esda", "libpysal", "mgwr", "pykrige", "gstools",
                "rasterio", "geopandas", "pyproj", "pydantic", "pandera", "papermill", "nbclient", "pypandoc-binary",
                "typst"]


def git_commit() -> str | None:
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


def package_versions() -> dict[str, str]:
    out = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out


def _rel(path: Path, base: Path) -> str:
    p, b = Path(path).resolve(), base.resolve()
    return str(p.relative_to(b)) if p.is_relative_to(b) else str(path)


def build_manifest(*, params, params_path: Path, params_sha256: str, files: dict, input_hashes: dict,
                   records: list[dict], seconds_total: float) -> dict:
    """The manifest of a run (written to ``manifest.json`` and shown in the report's appendix)."""
    return {
        "region": params.region.id,
        "title": params.region.title,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "hmlib_version": __version__,
        "git_commit": git_commit(),
        "params_file": _rel(params_path, params.base_dir),
        "params_sha256": params_sha256,
        "library_sha256": library_hash(),
        "inputs": {k: {"path": _rel(Path(v), params.base_dir), "sha256": input_hashes[k]} for k, v in files.items()},
        "packages": package_versions(),
        "platform": f"{platform.system()} {platform.machine()}",
        "seed": params.seed,
        "stages": records,
        "seconds_total": round(seconds_total, 2),
    }
