"""The stage contract: every stage's ``run`` and ``report`` run in process on every shipped region.

Each region's enabled stages run in the order the run plan derives from their declared reads,
with the reduced settings of ``tests/stage_settings.py``, into one folder per region (so stages
read their upstream tables as in ``hmlib run``). What is checked against what:

- the tables a stage declares in ``SPEC.writes`` exist and match their schemas in
  ``hmlib/tables.py`` (an independent declaration of the columns consumers rely on);
- the fragment lists every table and figure the stage wrote, and they exist on disk;
- reading a table the stage did not declare raises (the contract itself);
- ``check`` accepts every shipped region's options (they are valid by construction of the params
  files, which the stage owners wrote against the data).
Numbers are checked against independent references in each method family's own tests.
"""
from __future__ import annotations

import json
import shutil
import traceback
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from stage_settings import FAST_OPTIONS

from hmlib.context import UndeclaredReadError, open_stage
from hmlib.params import load_params
from hmlib.pipeline.plan import build_plan
from hmlib.stages import STAGES, stage_module
from hmlib.tables import validate_table

ROOT = Path(__file__).resolve().parents[1]
REGIONS = sorted(p.stem for p in (ROOT / "params").glob("*.yml"))
CASES = [pytest.param(r, s, id=f"{r}-{s}", marks=pytest.mark.xdist_group(r))
         for r in REGIONS for s in STAGES if s in load_params(ROOT / "params" / f"{r}.yml").stages]

pytestmark = pytest.mark.slow

_RUNS: dict[str, tuple[Path, dict]] = {}


def _converted(name: str) -> bool:
    return hasattr(stage_module(name), "run")


def _run_region(region: str, base: Path) -> tuple[Path, dict]:
    """Run every converted, runnable stage of ``region`` in plan order; stage -> result or error text."""
    if region in _RUNS:
        return _RUNS[region]
    params_file = ROOT / "params" / f"{region}.yml"
    params = load_params(params_file)
    out_dir = base / region
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = build_plan(params)
    outcome: dict = {}
    for name in plan.order:
        sp = plan.stages[name]
        if sp.skip:
            outcome[name] = ("skipped", sp.skip)
            continue
        if not _converted(name):
            outcome[name] = ("unconverted", None)
            continue
        if any(outcome.get(d, ("",))[0] == "error" for d in sp.depends_on):
            outcome[name] = ("error", "an upstream stage failed")
            continue
        mod = stage_module(name)
        try:
            ctx = open_stage(name, params_file=params_file, output_dir=out_dir, overrides=FAST_OPTIONS.get(name))
            problems = mod.check(ctx) if hasattr(mod, "check") else []
            result = mod.run(ctx)
            mod.report(ctx, result)
            ctx.out.finish()
            outcome[name] = ("ok", (result, problems))
        except Exception:  # noqa: BLE001 - reported by the stage's own test case
            outcome[name] = ("error", traceback.format_exc())
        finally:
            plt.close("all")
    _RUNS[region] = (out_dir, outcome)
    return _RUNS[region]


@pytest.fixture(scope="session")
def contract_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("contract")
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(("region", "stage"), CASES)
def test_stage_runs_in_process(region, stage, contract_base):
    """run() and report() succeed; declared tables exist and match their schemas; fragment lists real files."""
    if not _converted(stage):
        pytest.skip(f"stage {stage} is not converted to the stage contract yet")
    out_dir, outcome = _run_region(region, contract_base)
    status, detail = outcome[stage]
    if status == "skipped":
        pytest.skip(f"{region} cannot run {stage}: {detail}")
    assert status == "ok", f"{stage} on {region} failed:\n{detail}"
    _, problems = detail
    assert problems == [], f"check() rejected the shipped params of {region}: {problems}"
    frag = json.loads((out_dir / "fragments" / f"{stage}.json").read_text())
    assert frag["stage"] == stage
    for rel in [*frag["tables"], *frag["figures"], *frag["files"]]:
        assert (out_dir / rel).exists(), f"{stage} lists {rel} but did not write it"
    spec = stage_module(stage).SPEC
    for t in spec.writes:
        path = out_dir / "tables" / f"{t}.csv"
        if path.is_file():
            validate_table(t, pd.read_csv(path, dtype={"sample_id": str}), stage=stage, action="read")


def test_undeclared_read_raises(tmp_path):
    """The contract: a stage cannot read a table it did not declare (data_quality declares none)."""
    ctx = open_stage("data_quality", params_file=ROOT / "params" / "jura.yml", output_dir=tmp_path)
    with pytest.raises(UndeclaredReadError, match="grid_predictions"):
        ctx.read_table("grid_predictions")


def test_notebook_namespace_overrides_params(tmp_path):
    """open_stage(globals()) takes options from params and lets a non-None notebook value override them.

    Checked against the values written in params/jura.yml (baselines.stratify_by) and the model defaults.
    """
    ns = {"region": "jura", "params_file": None, "output_dir": str(tmp_path), "stratify_by": None,
          "n_bootstrap": None}
    ctx = open_stage("baselines", ns)
    assert list(ctx.options.stratify_by) == ["Rock", "Landuse"]  # from params/jura.yml
    ns["stratify_by"] = ["Rock"]
    assert list(open_stage("baselines", ns).options.stratify_by) == ["Rock"]


def test_scratch_output_when_opened_as_is():
    """Opened without output_dir, a stage writes into a new scratch folder, never the published report."""
    ctx = open_stage("data_quality", {"region": "jura", "params_file": None, "output_dir": None})
    try:
        assert ROOT / "reports" not in ctx.output_dir.parents
        assert ctx.input_dir == ROOT / "reports" / "jura"
    finally:
        shutil.rmtree(ctx.output_dir, ignore_errors=True)


@pytest.mark.xdist_group("jura")  # on the worker that runs Jura's stages once for the contract cases
@pytest.mark.parametrize("stage", ["data_quality", "baselines", "indices"])
def test_sections_cross_reference_their_displays_and_propose_findings(stage, contract_base):
    """Jura: every main-text table and figure of the section is referred to from its prose, the section
    proposes at least one key finding with an uncertainty, and its text has no internal words.

    Checked against the issue's rules as ``hmlib.report`` encodes them independently of the stage
    (``unreferenced`` searches the fragment's prose for ``@tbl-``/``@fig-`` ids; ``jargon`` applies
    the developer guide's patterns; ``states_uncertainty`` looks for a CI, interval or range).
    """
    from hmlib.report import _stage_markdown, jargon, states_uncertainty, unreferenced

    out_dir, outcome = _run_region("jura", contract_base)
    assert outcome[stage][0] == "ok", outcome[stage][1]
    frag = json.loads((out_dir / "fragments" / f"{stage}.json").read_text())
    assert unreferenced(frag) == []
    assert frag["findings"], f"{stage} proposes no key finding"
    assert all(states_uncertainty(f["text"]) for f in frag["findings"]), frag["findings"]
    text = _stage_markdown(frag) + "\n".join(f["text"] for f in frag["findings"])
    assert jargon(text) == []
