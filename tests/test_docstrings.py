"""Public functions of the method modules carry numpydoc Parameters and Returns sections.

Checked against numpydoc's own section grammar (the header followed by a dashed underline), read
from the source with ``ast``, so a docstring that only mentions the words does not pass.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHOD_MODULES = ["accumulation", "background", "baselines", "censored", "crossmedia", "descriptive", "drivers",
                  "geo", "health", "hotspots", "indices", "isotopes", "ml", "mobility", "pmf", "remote_sensing",
                  "sem", "sources", "spatial", "zoning", "units", "reference"]


def _section(doc: str, name: str) -> bool:
    return re.search(rf"^\s*{name}\s*\n\s*-{{3,}}\s*$", doc, flags=re.M) is not None


@pytest.mark.parametrize("module", METHOD_MODULES)
def test_public_functions_have_parameters_and_returns(module):
    tree = ast.parse((ROOT / "hmlib" / f"{module}.py").read_text(encoding="utf-8"))
    public = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__all__":
            public = {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    missing = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and (public is None or node.name in public):
            doc = ast.get_docstring(node) or ""
            takes_args = bool(node.args.args or node.args.kwonlyargs or node.args.vararg or node.args.kwarg)
            if (takes_args and not _section(doc, "Parameters")) or not _section(doc, "Returns"):
                missing.append(node.name)
    assert not missing, f"hmlib/{module}.py: no numpydoc Parameters/Returns in {missing}"
