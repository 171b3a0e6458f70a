"""Tests of the ``hmlib risk`` calculator (hmlib.health_cli) through hmlib.cli.main and argparse."""
from __future__ import annotations

import argparse
import json

import pytest

from hmlib import health_cli


def _run(argv, capsys):
    ap = argparse.ArgumentParser(prog="hmlib")
    health_cli.add_parser(ap.add_subparsers(dest="command"))
    args = ap.parse_args(argv)
    rc = health_cli.run(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_json_resident_arsenic_at_rsl(capsys):
    """As 0.68 mg/kg is the resident soil RSL (TR 1e-6, November 2024): total CR = 1e-6 within 2%."""
    rc, out, _ = _run(["risk", "--medium", "soil", "--metal", "As", "--concentration", "0.68",
                       "--receptor", "resident", "--parameters", "epa_rsl", "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    rows = {r["pathway"]: r for r in d["rows"]}
    assert set(rows) == {"ingestion", "dermal", "inhalation", "total"}
    assert rows["total"]["cr"] == pytest.approx(1e-6, rel=0.02)
    assert rows["total"]["hq"] == pytest.approx(sum(rows[p]["hq"] for p in ("ingestion", "dermal", "inhalation")))
    assert d["concentration_unit"] == "mg/kg"


def test_text_output_child_and_adult(capsys):
    rc, out, _ = _run(["risk", "--medium", "soil", "--metal", "Cd", "--concentration", "71", "--receptor", "child"],
                      capsys)
    assert rc == 0
    assert "ingestion" in out and "total" in out and "HQ" in out
    total = [line for line in out.splitlines() if line.split()[:2] == ["Cd", "total"]][0]
    assert float(total.split()[-2]) == pytest.approx(1.0, rel=0.02)  # HQ at the RSL (child noncancer)
    rc, out_a, _ = _run(["risk", "--medium", "soil", "--metal", "Cd", "--concentration", "71", "--receptor",
                         "adult"], capsys)
    total_a = [line for line in out_a.splitlines() if line.split()[:2] == ["Cd", "total"]][0]
    assert float(total_a.split()[-2]) < float(total.split()[-2])  # an adult's HQ is lower than a child's


def test_water_chromium_split(capsys):
    rc, out, _ = _run(["risk", "--medium", "water", "--metal", "Cr", "--concentration", "7",
                       "--cr-vi-fraction", "0.5", "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    assert {r["metal"] for r in d["rows"]} == {"Cr(III)", "Cr(VI)"}
    assert d["cr_vi_fraction"] == 0.5


def test_bad_metal_exit_2(capsys):
    rc, _, err = _run(["risk", "--medium", "soil", "--metal", "Pb", "--concentration", "100"], capsys)
    assert rc == 2 and "no toxicity values" in err


def test_wired_into_main_cli(capsys):
    cli = pytest.importorskip("hmlib.cli")
    rc = cli.main(["risk", "--medium", "soil", "--metal", "Zn", "--concentration", "23000", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0
    tot = [r for r in d["rows"] if r["pathway"] == "total"][0]
    assert tot["hq"] == pytest.approx(1.0, rel=0.02)
