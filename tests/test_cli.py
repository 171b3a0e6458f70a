"""The console script: exit statuses and messages."""
from __future__ import annotations

import shutil
import subprocess
import sys

import yaml

from hmlib.cli import main
from hmlib.params import load_params


def test_validate_ok(mini_project, capsys):
    assert main(["validate", str(mini_project)]) == 0
    assert "OK" in capsys.readouterr().out


def test_validate_bad_data_exits_2_and_names_cell(mini_project, capsys):
    csv = mini_project.parent.parent / "data" / "mini" / "samples.csv"
    lines = csv.read_text().splitlines()
    cells = lines[5].split(",")
    cells[-1] = "lots"
    lines[5] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    assert main(["validate", str(mini_project)]) == 2
    err = capsys.readouterr().err
    assert "samples.csv, row 6, column 'Zn': value 'lots'" in err


def test_validate_bad_params_exits_2(mini_project, capsys):
    p = yaml.safe_load(mini_project.read_text())
    p["data"]["crs"] = "WGS84"
    mini_project.write_text(yaml.safe_dump(p))
    assert main(["validate", str(mini_project)]) == 2
    assert "data.crs: got 'WGS84'" in capsys.readouterr().err


def test_console_script_entry_point(mini_project):
    exe = shutil.which("hmlib") or str(__import__("pathlib").Path(sys.executable).parent / "hmlib")
    out = subprocess.run([exe, "validate", str(mini_project)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_new_region_writes_params_that_validate(tmp_path, root, capsys):
    (tmp_path / "data").mkdir()
    shutil.copy(root / "data" / "meuse" / "meuse_samples.csv", tmp_path / "data" / "meuse_samples.csv")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["new-region", "stein", "--data", "data/meuse_samples.csv"]) == 0
        text = (tmp_path / "params" / "stein.yml").read_text()
        p = load_params(tmp_path / "params" / "stein.yml")
        assert p.metals == {"Cd": "cadmium", "Cu": "copper", "Pb": "lead", "Zn": "zinc"}
        assert (p.data.x_column, p.data.y_column, p.data.id_column) == ("x", "y", "sample_id")
        assert "GUESS" in text
        assert main(["validate", "params/stein.yml"]) == 0
        assert main(["new-region", "stein", "--data", "data/meuse_samples.csv"]) == 2  # no silent overwrite
    finally:
        os.chdir(cwd)


def test_regions_lists_shipped_regions(root, capsys):
    assert main(["regions", "--params-dir", str(root / "params")]) == 0
    out = capsys.readouterr().out
    assert "jura" in out and "meuse" in out


def test_unknown_stage_on_command_line(mini_project, capsys):
    assert main(["run", str(mini_project), "--stages", "nonsense", "--no-render",
                 "--reports-dir", str(mini_project.parent.parent / "reports")]) == 2
    err = capsys.readouterr().err
    assert "--stages: got 'nonsense'" in err and "data_quality" in err and "Traceback" not in err
