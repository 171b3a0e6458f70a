"""Committed notebooks are thin views, parameterized and stored without outputs; each matches its stage's options.

The parameters cell is compared with the stage's options model (the one declaration of options) and
the code outside it is measured: at most 40 lines, no function or class definitions.
"""
from __future__ import annotations

import ast

import nbformat
import papermill as pm
import pytest

from hmlib.runner import notebooks_dir
from hmlib.stages import REGISTRY, options_model, stage_module
from hmlib.stages.template import example_region, parameters_source

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


def _converted(stage) -> bool:
    return hasattr(stage_module(stage.name), "run")


@pytest.mark.parametrize("stage", list(REGISTRY), ids=lambda s: s.name)
def test_notebook_is_a_view(stage):
    """A converted stage's notebook: the generated parameters cell, then at most 40 short code lines."""
    if not _converted(stage):
        pytest.skip(f"{stage.name} is not converted to the stage contract yet")
    nb = nbformat.read(notebooks_dir() / stage.notebook, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    assert tagged[0].source.strip() == parameters_source(stage.options, region=example_region(stage.name)).strip(), (
        f"{stage.notebook}: the parameters cell differs from the options model; regenerate it with "
        "hmlib.stages.template.parameters_source")
    lines = [ln for c in nb.cells if c.cell_type == "code" and c is not tagged[0]
             for ln in c.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) <= 40, f"{stage.notebook}: {len(lines)} code lines outside the parameters cell"
    assert any(f'open_stage("{stage.name}", globals())' in c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("stage", list(REGISTRY), ids=lambda s: s.name)
def test_notebook_opens_on_a_region_that_runs_the_stage(stage):
    """Opened as is, a notebook's default region runs its stage: checked against the shipped params file
    itself (the stage is listed under ``stages`` and the run plan does not skip it)."""
    from hmlib.params import load_params
    from hmlib.pipeline.plan import build_plan, find_params

    inferred = pm.inspect_notebook(str(notebooks_dir() / stage.notebook))
    region = ast.literal_eval(inferred["region"]["default"])
    plan = build_plan(load_params(find_params(region)))
    assert stage.name in plan.stages and plan.stages[stage.name].skip is None, (
        f"{stage.notebook} opens on region {region!r}, which does not run {stage.name}")


@pytest.mark.parametrize("stage", list(REGISTRY), ids=lambda s: s.name)
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
    if _converted(stage):  # options default to None: the region's params value
        assert all(inferred[n]["default"] == "None" for n in fields)
        return
    for name in fields:
        declared = inferred[name]["default"]
        assert ast.literal_eval(declared) == defaults[name] if declared not in ("None",) else defaults[name] is None, (
            f"{path.name}: default of {name} is {declared}, the options model says {defaults[name]!r}")
        assert inferred[name]["help"], f"{path.name}: parameter {name} needs a comment saying what it is"


def test_every_read_has_a_producer_and_every_shared_table_a_schema():
    """Declared reads name tables some stage writes; every written shared table has a schema (hmlib/tables.py)."""
    from hmlib.stages import producers
    from hmlib.tables import SCHEMAS

    made = producers()
    for s in REGISTRY:
        for r in s.reads:
            assert r.table in made, f"{s.name} reads {r.table!r}, which no stage writes"
        for t in s.writes:
            assert t in SCHEMAS, f"{s.name} writes {t!r} for other stages but hmlib/tables.py has no schema for it"
