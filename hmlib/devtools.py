"""Maintenance of the committed notebooks (used by the pre-commit hook).

``python -m hmlib.devtools sync-notebooks [FILE ...]``: clear outputs and execution counts, and
rewrite each converted stage notebook's parameters cell from its options model
(:func:`hmlib.stages.template.parameters_source`). Exit status 1 when a file changed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

__all__ = ["sync_notebook", "main"]


def sync_notebook(path: Path) -> bool:
    """Clean one notebook in place; True if it changed."""
    from .stages import REGISTRY, stage_module
    from .stages.template import example_region, parameters_source

    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    spec = next((s for s in REGISTRY if s.notebook == path.name), None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if spec is not None and hasattr(stage_module(spec.name), "run") \
                and "parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = parameters_source(spec.options, region=example_region(spec.name))
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + "\n", encoding="utf-8")
    return after != before


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "sync-notebooks":
        print("usage: python -m hmlib.devtools sync-notebooks [FILE ...]", file=sys.stderr)
        return 2
    from .pipeline.plan import notebooks_dir

    files = [Path(f) for f in argv[1:]] or sorted(notebooks_dir().glob("*.ipynb"))
    changed = [f for f in files if sync_notebook(f)]
    for f in changed:
        print(f"rewrote {f}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
