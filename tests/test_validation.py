"""Schema and loader errors: each bad input gives a message naming the key, or the file, row, column and value."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from hmlib.errors import DataError, ParamsError
from hmlib.io import load_region
from hmlib.params import load_params

BASE = {
    "region": {"id": "t", "title": "Test region"},
    "data": {"samples": "s.csv", "id_column": "sample_id", "x_column": "x", "y_column": "y",
             "crs": "local", "coordinate_bounds": [0, 0, 100, 100]},
    "media": {"soil": {"unit": "mg/kg"}},
    "metals": {"Cd": "Cd", "Pb": "Pb"},
    "references": {"background": "UCC_RudnickGao2014"},
}

GOOD_CSV = """sample_id,x,y,Cd,Pb
S1,10,10,0.5,20
S2,20,20,0.7,25
S3,30,30,<0.1,30
S4,40,40,0.6,22
"""


def write_params(tmp_path: Path, mutate=None, csv: str = GOOD_CSV) -> Path:
    p = copy.deepcopy(BASE)
    if mutate:
        mutate(p)
    (tmp_path / "s.csv").write_text(csv, encoding="utf-8")
    path = tmp_path / "region.yml"
    path.write_text(yaml.safe_dump(p), encoding="utf-8")
    return path


def params_error(tmp_path, mutate) -> str:
    with pytest.raises(ParamsError) as e:
        load_params(write_params(tmp_path, mutate))
    return str(e.value)


def data_error(tmp_path, csv, mutate=None) -> str:
    with pytest.raises(DataError) as e:
        load_region(load_params(write_params(tmp_path, mutate, csv=csv)))
    return str(e.value)


# ---------------------------------------------------------------- params (schema) errors
def test_good_params_and_data_load(tmp_path):
    d = load_region(load_params(write_params(tmp_path)))
    w = d.wide("soil")
    assert w.loc["S3", "Cd"] == pytest.approx(0.05)  # <0.1 -> DL/2
    assert d.concentrations.set_index(["sample_id", "metal"]).loc[("S3", "Cd"), "censored"]


def test_unknown_top_level_key(tmp_path):
    msg = params_error(tmp_path, lambda p: p.update(colour="blue"))
    assert "colour: unknown key" in msg and "'blue'" in msg


def test_unknown_nested_key(tmp_path):
    msg = params_error(tmp_path, lambda p: p["data"].update(x_col="x"))
    assert "data.x_col: unknown key" in msg


def test_missing_required_key(tmp_path):
    msg = params_error(tmp_path, lambda p: p["data"].pop("x_column"))
    assert "data.x_column: required key is missing" in msg


def test_bad_unit(tmp_path):
    msg = params_error(tmp_path, lambda p: p["media"]["soil"].update(unit="mg/kgg"))
    assert "media.soil.unit" in msg and "'mg/kgg'" in msg and "unknown unit" in msg


def test_bad_crs(tmp_path):
    msg = params_error(tmp_path, lambda p: p["data"].update(crs="RD New"))
    assert "data.crs" in msg and "'RD New'" in msg and "EPSG" in msg


def test_local_crs_needs_bounds(tmp_path):
    msg = params_error(tmp_path, lambda p: p["data"].pop("coordinate_bounds"))
    assert "coordinate_bounds" in msg


def test_bad_metal_symbol(tmp_path):
    msg = params_error(tmp_path, lambda p: p["metals"].update(cadmium="cadmium"))
    assert "metals" in msg and "'cadmium'" in msg and "element symbol" in msg


def test_bad_region_id(tmp_path):
    msg = params_error(tmp_path, lambda p: p["region"].update(id="My Region"))
    assert "region.id" in msg and "'My Region'" in msg


def test_unknown_stage(tmp_path):
    msg = params_error(tmp_path, lambda p: p.update(stages={"data_quality": {}, "kriging": {}}))
    assert "stages.kriging: unknown stage" in msg and "data_quality" in msg


def test_bad_stage_option(tmp_path):
    msg = params_error(tmp_path, lambda p: p.update(stages={"data_quality": {"alpha": 2}}))
    assert "stages.data_quality.alpha" in msg and "2" in msg


def test_unknown_stage_option(tmp_path):
    msg = params_error(tmp_path, lambda p: p.update(stages={"data_quality": {"alpah": 0.1}}))
    assert "stages.data_quality.alpah: unknown key" in msg


def test_bad_substitution_rule(tmp_path):
    msg = params_error(tmp_path, lambda p: p.update(non_detects={"substitution": "half"}))
    assert "non_detects.substitution" in msg and "'half'" in msg and "half_dl" in msg


def test_unknown_medium(tmp_path):
    msg = params_error(tmp_path, lambda p: p["media"].update(air={"unit": "ug/L"}))
    assert "media" in msg and "'air'" in msg


def test_not_a_mapping(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_params(path)


# ---------------------------------------------------------------- data (loader) errors
def test_missing_column(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd\nS1,1,1,0.5\n")
    assert "s.csv" in msg and "row 1" in msg and "column 'Pb'" in msg and "required column missing" in msg


def test_non_numeric_value(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd,Pb\nS1,1,1,0.5,20\nS2,2,2,abc,21\n")
    assert "row 3" in msg and "column 'Cd'" in msg and "'abc'" in msg and "not a number" in msg


def test_negative_value(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd,Pb\nS1,1,1,0.5,20\nS2,2,2,0.4,-999\n")
    assert "row 3" in msg and "column 'Pb'" in msg and "'-999'" in msg and "negative" in msg


def test_nd_without_detection_limit(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd,Pb\nS1,1,1,ND,20\n")
    assert "row 2" in msg and "column 'Cd'" in msg and "'ND'" in msg and "detection limit" in msg


def test_nd_with_configured_detection_limit(tmp_path):
    path = write_params(tmp_path, lambda p: p.update(non_detects={"detection_limits": {"Cd": 0.2}, "substitution": "dl"}),
                        csv="sample_id,x,y,Cd,Pb\nS1,1,1,ND,20\nS2,2,2,0.3,10\nS3,3,3,0.4,12\nS4,4,4,0.5,13\n")
    d = load_region(load_params(path))
    assert d.wide().loc["S1", "Cd"] == pytest.approx(0.2)


def test_duplicate_ids(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd,Pb\nS1,1,1,0.5,20\nS2,2,2,0.4,21\nS1,3,3,0.1,1\n")
    assert "row 4" in msg and "column 'sample_id'" in msg and "'S1'" in msg and "first at row 2" in msg


def test_coordinate_out_of_bounds(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd,Pb\nS1,1,1,0.5,20\nS2,250,2,0.4,21\n")
    assert "row 3" in msg and "column 'x'" in msg and "250" in msg and "outside the valid range" in msg


def test_coordinate_out_of_epsg_range(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd,Pb\nS1,181072,333611,0.5,20\nS2,5,1e8,0.4,21\n",
                     lambda p: (p["data"].update(crs="EPSG:28992"), p["data"].pop("coordinate_bounds")))
    assert "row 3" in msg and "column 'y'" in msg and "EPSG:28992" in msg


def test_geographic_range(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd,Pb\nS1,6.8,47.1,0.5,20\nS2,6.8,97.0,0.4,21\n",
                     lambda p: (p["data"].update(crs="EPSG:4326", coordinate_unit="degree"),
                                p["data"].pop("coordinate_bounds")))
    assert "row 3" in msg and "column 'y'" in msg and "97" in msg


def test_non_numeric_coordinate(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd,Pb\nS1,1,1,0.5,20\nS2,north,2,0.4,21\n")
    assert "row 3" in msg and "column 'x'" in msg and "'north'" in msg


def test_missing_file(tmp_path):
    path = write_params(tmp_path, lambda p: p["data"].update(samples="nope.csv"))
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_region(load_params(path))


def test_all_errors_reported_together(tmp_path):
    msg = data_error(tmp_path, "sample_id,x,y,Cd,Pb\nS1,1,1,x,20\nS2,2,2,0.4,-1\n")
    assert "2 problems" in msg


def test_unit_conversion_on_load(tmp_path):
    path = write_params(tmp_path, lambda p: p["media"]["soil"].update(unit="ug/kg"),
                        csv="sample_id,x,y,Cd,Pb\nS1,1,1,500,20000\nS2,2,2,<100,1000\nS3,3,3,200,900\nS4,4,4,300,800\n")
    d = load_region(load_params(path))
    w = d.wide()
    assert w.attrs["unit"] == "mg/kg"
    assert w.loc["S1", "Cd"] == pytest.approx(0.5) and w.loc["S1", "Pb"] == pytest.approx(20.0)
    assert w.loc["S2", "Cd"] == pytest.approx(0.05)  # <100 ug/kg = <0.1 mg/kg, DL/2


def test_missing_values_and_median_imputation(tmp_path):
    csv = "sample_id,x,y,Cd,Pb\nS1,1,1,0.5,20\nS2,2,2,,21\nS3,3,3,0.7,22\nS4,4,4,0.9,23\n"
    d = load_region(load_params(write_params(tmp_path, csv=csv)))
    assert np.isnan(d.wide().loc["S2", "Cd"])
    assert d.missing.set_index("metal").loc["Cd", "n_missing"] == 1
    d2 = load_region(load_params(write_params(tmp_path, lambda p: p.update(non_detects={"imputation": "median"}), csv=csv)))
    assert d2.wide().loc["S2", "Cd"] == pytest.approx(0.7)  # median of 0.5, 0.7, 0.9


def test_long_format_multi_media(tmp_path):
    def mut(p):
        p["media"] = {"soil": {"unit": "mg/kg"}, "water": {"unit": "mg/L"}}
        p["data"].update(medium_column="medium", site_column="site")
    csv = ("sample_id,site,medium,x,y,Cd,Pb\nA,1,soil,1,1,0.5,20\nA,1,water,1,1,0.001,0.002\n"
           "B,2,soil,2,2,0.6,21\nB,2,water,2,2,0.002,0.003\nC,3,soil,3,3,0.7,22\nC,3,water,3,3,0.003,0.004\n"
           "D,4,soil,4,4,0.8,23\nD,4,water,4,4,0.004,0.005\n")
    d = load_region(load_params(write_params(tmp_path, mut, csv=csv)))
    assert d.wide("water").loc["A", "Cd"] == pytest.approx(1.0)  # mg/L -> ug/L
    assert d.unit("water") == "ug/L" and d.unit("soil") == "mg/kg"
    assert set(d.samples["site_id"]) == {"1", "2", "3", "4"}


def test_unknown_medium_in_data(tmp_path):
    def mut(p):
        p["media"] = {"soil": {"unit": "mg/kg"}, "water": {"unit": "ug/L"}}
        p["data"].update(medium_column="medium")
    csv = "sample_id,medium,x,y,Cd,Pb\nA,soil,1,1,0.5,20\nA,sludge,1,1,1,2\n"
    msg = data_error(tmp_path, csv, mut)
    assert "row 3" in msg and "column 'medium'" in msg and "'sludge'" in msg
