"""Committed notebooks are thin, parameterized and stored without outputs; each matches its stage's options."""
from __future__ import annotations

import ast

import nbformat
import papermill as pm
import pytest

from hmlib.runner import notebooks_dir
from hmlib.stages import REGISTRY, options_model

NOTEBOOKS = sorted(notebooks_dir().glob("*.ipynb"))
BASE_PARAMETERS = {"region", "params_file", "output_dir"}


def test_every_notebook_is_registered_and_every_stage_has_a_notebook():
    registered = {s.notebook for s in REGISTRY}
    assert {p.name for p in NOTEBOOKS} == registered
    assert len({s.name for s in REGISTRY}) == len(REGISTRY)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_no_functions(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert not cell.get("outputs"), f"{path.name} cell {i} has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, f"{path.name} cell {i} defines a function/class: logic belongs in hmlib"


@pytest.mark.parametrize("stage", REGISTRY, ids=lambda s: s.name)
def test_parameters_cell_matches_options_model(stage):
    path = notebooks_dir() / stage.notebook
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters'"
    inferred = pm.inspect_notebook(str(path))
    names = set(inferred)
    model = options_model(stage)
    fields = set(model.model_fields)
    assert BASE_PARAMETERS <= names, f"{path.name}: parameters must include {BASE_PARAMETERS}"
    assert names - BASE_PARAMETERS == fields, (
        f"{path.name}: parameters {sorted(names - BASE_PARAMETERS)} differ from {model.__name__} fields {sorted(fields)}")
    defaults = model().model_dump(mode="json")
    for name in fields:
        declared = inferred[name]["default"]
        assert ast.literal_eval(declared) == defaults[name] if declared not in ("None",) else defaults[name] is None, (
            f"{path.name}: default of {name} is {declared}, the options model says {defaults[name]!r}")
        assert inferred[name]["help"], f"{path.name}: parameter {name} needs a comment saying what it is"


def test_registry_order_respects_dependencies():
    """A stage runs after the stages whose tables it reads: they must come earlier in the registry."""
    names = [s.name for s in REGISTRY]
    for i, s in enumerate(REGISTRY):
        for dep in s.after:
            assert dep in names, f"{s.name}: after={dep!r} is not a registered stage"
            assert names.index(dep) < i, f"{s.name} is registered before {dep}, which it depends on"
