"""Reuse keys: a stage is reused from the previous report when nothing it depends on changed.

The key covers the stage's notebook, its options, the files its options name, the params, the
input data, hmlib's source and data files, and the keys of the stages whose tables it reads.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

__all__ = ["library_hash", "stage_key", "option_files", "copy_outputs"]

_LIB_HASH: str | None = None


def library_hash() -> str:
    """SHA-256 over hmlib's source and data files (a stage is re-run when the library changes)."""
    global _LIB_HASH
    if _LIB_HASH is None:
        h = hashlib.sha256()
        pkg = Path(__file__).resolve().parents[1]
        for f in sorted(pkg.rglob("*")):
            if f.is_file() and f.suffix in {".py", ".csv", ".bib", ".lua", ".css", ".typ", ".json", ".yml", ".js",
                                            ".html"} and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(pkg)).encode())
                h.update(f.read_bytes())
        _LIB_HASH = h.hexdigest()
    return _LIB_HASH


def option_files(options: dict, base_dir: Path) -> dict[str, str]:
    """Files named by a stage's options (e.g. a fractions CSV or a raster): option -> SHA-256."""
    from ..io import file_sha256
    from ..params import option_strings

    found = {}
    for name, value in options.items():
        for key, v in option_strings(value, name):
            if 0 < len(v) < 1024 and not v.startswith(("http:", "https:")):
                p = Path(v) if Path(v).is_absolute() else base_dir / v
                try:
                    if p.is_file():
                        found[key] = file_sha256(p)
                except OSError:
                    pass
    return found


def stage_key(*, notebook: Path, options: dict, params_sha256: str, input_hashes: dict,
              upstream: dict[str, str], base_dir: Path) -> str:
    """SHA-256 of everything a stage's outputs depend on.

    Parameters
    ----------
    notebook : the stage's notebook.
    options : the stage's options (JSON-able).
    params_sha256 : hash of the region's params.
    input_hashes : input file -> SHA-256.
    upstream : producing stage -> its key, for the stages whose tables this stage reads.
    base_dir : folder relative option paths are resolved against.

    Returns
    -------
    str : hex digest.
    """
    h = hashlib.sha256()
    h.update(notebook.read_bytes())
    h.update(json.dumps(options, sort_keys=True).encode())
    h.update(json.dumps(option_files(options, base_dir), sort_keys=True).encode())
    h.update(params_sha256.encode())
    h.update(json.dumps(input_hashes, sort_keys=True).encode())
    h.update(library_hash().encode())
    h.update(json.dumps(upstream, sort_keys=True).encode())
    return h.hexdigest()


def copy_outputs(frag_path: Path, src: Path, dst: Path) -> bool:
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
