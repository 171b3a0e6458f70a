"""The report does not depend on ``--jobs``: the same region run with 1 and with 3 parallel stages.

Checked against the run itself with another schedule: every table (byte for byte) and the report
text (report.qmd without the run manifest, which records times) must be identical. The region
includes the health stage, which reads the spatial stage's grid predictions: with a schedule that
ignored declared reads, ``--jobs 3`` would start health before spatial finished.
"""
from __future__ import annotations

import hashlib
import re

import pytest
import yaml
from stage_settings import FAST_OPTIONS

from hmlib.runner import run_region

pytestmark = pytest.mark.slow

STAGES = ["data_quality", "spatial", "health"]


def _project(base):
    from conftest import MINI_PARAMS, make_mini_project

    params = yaml.safe_load(MINI_PARAMS)
    params["stages"] = {s: dict(FAST_OPTIONS.get(s, {})) for s in STAGES}
    return make_mini_project(base, params_text=yaml.safe_dump(params, sort_keys=False))


def _fingerprint(report_dir):
    tables = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((report_dir / "tables").glob("*.csv"))}
    qmd = (report_dir / "report.qmd").read_text(encoding="utf-8")
    qmd = re.split(r"\n#+ [^\n]*[Mm]anifest", qmd)[0]
    return tables, qmd


def test_tables_and_report_text_do_not_depend_on_jobs(tmp_path):
    one = _project(tmp_path / "one")
    three = _project(tmp_path / "three")
    r1 = run_region(str(one), reports_dir=tmp_path / "one" / "reports", jobs=1, quiet=True)
    r3 = run_region(str(three), reports_dir=tmp_path / "three" / "reports", jobs=3, quiet=True)
    assert [s.status for s in r1.stages] == [s.status for s in r3.stages]
    t1, q1 = _fingerprint(r1.report_dir)
    t3, q3 = _fingerprint(r3.report_dir)
    assert "health_grid.csv" in t1 or any("grid" in k for k in t1), "the health stage mapped no grid risk"
    assert t1 == t3, {k for k in t1 if t1.get(k) != t3.get(k)} | (set(t1) ^ set(t3))
    assert q1 == q3
