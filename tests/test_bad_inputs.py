"""A corpus of malformed inputs built from the shipped regions: each exits 2 with a precise message.

Every case copies a shipped region (params and the first rows of its data files) into a
temporary project, breaks one thing, runs the command line in process (``hmlib.cli.main``) and
checks the exit status (2), that the message names the file row and column or the params key
(the expected text is written out by hand here, from the edit the case made, not computed by
hmlib), and that no traceback reaches the user. Accepted variants (byte-order mark, CRLF,
padded numbers, declared encodings and separators, ``<0.05``, ``ND`` with a limit) are checked
against pandas' own reading of the unmodified shipped file, an independent CSV reader.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hmlib.cli import main
from hmlib.io import load_region, parse_number
from hmlib.params import load_params

ROOT = Path(__file__).resolve().parents[1]
N_ROWS = 40  # data rows kept per medium: enough for every check, fast to validate


# ---------------------------------------------------------------------------------- projects
class Project:
    """A region copied from the repository into ``tmp_path/proj`` with its data cut to N_ROWS."""

    def __init__(self, tmp_path: Path, region: str = "jura", n: int = N_ROWS):
        self.tmp = tmp_path
        self.root = tmp_path / "proj"
        self.region = region
        raw = yaml.safe_load((ROOT / "params" / f"{region}.yml").read_text(encoding="utf-8"))
        raw["stages"] = {"data_quality": {}}
        self.raw = raw
        d = raw["data"]
        assert isinstance(d["samples"], str)
        self.samples = self._copy(d["samples"], n, medium_column=d.get("medium_column"))
        self.grid = self._copy(d["grid"], n) if d.get("grid") else None
        self.params = self.root / "params" / f"{region}.yml"
        self.write_params()

    def _copy(self, rel: str, n: int, medium_column: str | None = None) -> Path:
        src, dst = ROOT / rel, self.root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        lines = src.read_text(encoding="utf-8").splitlines()
        if medium_column:  # first n rows of every medium (long format)
            j = lines[0].split(",").index(medium_column)
            seen: dict[str, int] = {}
            keep = []
            for ln in lines[1:]:
                m = ln.split(",")[j]
                seen[m] = seen.get(m, 0) + 1
                if seen[m] <= n:
                    keep.append(ln)
            lines = [lines[0], *keep]
        else:
            lines = lines[: n + 1]
        dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return dst

    # params
    def write_params(self, mutate: Callable[[dict], None] | None = None) -> Path:
        if mutate:
            mutate(self.raw)
        self.params.parent.mkdir(parents=True, exist_ok=True)
        self.params.write_text(yaml.safe_dump(self.raw, sort_keys=False), encoding="utf-8")
        return self.params

    def params_text(self) -> str:
        return self.params.read_text(encoding="utf-8")

    # data
    def rows(self, path: Path | None = None) -> list[list[str]]:
        return list(csv.reader(io.StringIO((path or self.samples).read_text(encoding="utf-8"))))

    def write_rows(self, rows, path: Path | None = None, *, delimiter: str = ",", encoding: str = "utf-8",
                   newline: str = "\n") -> None:
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, lineterminator=newline).writerows(rows)
        (path or self.samples).write_bytes(buf.getvalue().encode(encoding))

    def set_cell(self, row: int, column: str, value: str, path: Path | None = None) -> None:
        """Set the cell at ``row`` (as shown in the file: header = 1) of ``column``."""
        rows = self.rows(path)
        rows[row - 1][rows[0].index(column)] = value
        self.write_rows(rows, path)


def validate(p: Project) -> list[str]:
    return ["validate", str(p.params)]


@dataclass
class Case:
    id: str
    setup: Callable[[Project], list[str] | None]  # breaks the project; returns argv (default: validate)
    expect: list[str]  # every one must appear in stderr
    region: str = "jura"


CASES: list[Case] = []


def case(id: str, *expect: str, region: str = "jura"):
    def deco(fn):
        CASES.append(Case(id, fn, list(expect), region))
        return fn
    return deco


def params_edit(fn: Callable[[dict], None]) -> Callable[[Project], None]:
    return lambda p: (p.write_params(fn), None)[1]


def text_edit(fn: Callable[[str], str]) -> Callable[[Project], None]:
    return lambda p: (p.params.write_text(fn(p.params_text()), encoding="utf-8"), None)[1]


def add(id, setup, *expect, region="jura"):
    CASES.append(Case(id, setup, list(expect), region))


# ---------------------------------------------------------------------------------- YAML
add("yaml_syntax", text_edit(lambda t: t + "\nbroken: [1, 2\n"), "not valid YAML", "line")
add("yaml_tab_indent", text_edit(lambda t: t.replace("  id: jura", "\tid: jura")), "not valid YAML", "line")
add("yaml_duplicate_top_key", text_edit(lambda t: t + "\nseed: 7\n"), "seed: key given twice")
add("yaml_duplicate_nested_key", text_edit(lambda t: t.replace("  Co: Co\n", "  Co: Co\n  Cd: Cu\n")),
    "metals.Cd: key given twice")
add("yaml_duplicate_region_key", text_edit(lambda t: t.replace("  id: jura\n", "  id: jura\n  id: jura2\n")),
    "region.id: key given twice")
add("yaml_empty", text_edit(lambda t: ""), "got an empty file", "expected a mapping")
add("yaml_list", text_edit(lambda t: "- a\n- b\n"), "got a list", "expected a mapping")
add("yaml_scalar", text_edit(lambda t: "just text\n"), "expected a mapping")
add("yaml_many_aliases", text_edit(lambda t: t + "x0: &a 1\n" + "".join(f"x{i}: *a\n" for i in range(1, 150))),
    "more than 100 aliases")


def _bomb(p: Project) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    p.params.write_text("\n".join(lines) + "\n", encoding="utf-8")


add("yaml_billion_laughs", _bomb, "expands to more than")
add("yaml_not_utf8", lambda p: p.params.write_bytes(p.params_text().replace(
    "Heavy metals", "Métaux lourds").encode("latin-1")), "is not UTF-8", "line 3")
add("yaml_nul_byte", lambda p: p.params.write_bytes(p.params_text().encode() + b"\x00\n"), "NUL")
add("yaml_too_big", lambda p: p.params.write_text(p.params_text() + "#" + "x" * 1_100_000 + "\n"),
    "expected a params file of at most")
add("yaml_non_text_key", text_edit(lambda t: t + "1: one\n"), "expected text keys")

# ---------------------------------------------------------------------------------- params schema
add("unknown_top_key", params_edit(lambda r: r.update(colour="blue")), "colour: unknown key")
add("unknown_nested_key", params_edit(lambda r: r["data"].update(x_col="Xloc")), "data.x_col: unknown key")
add("missing_x_column", params_edit(lambda r: r["data"].pop("x_column")), "data.x_column: required key is missing")
add("missing_references", params_edit(lambda r: r.pop("references")), "references: required key is missing")
add("metal_unknown_element", params_edit(lambda r: r["metals"].update(Xx="Cd")), "metals.Xx", "periodic table")
add("metal_not_symbol", params_edit(lambda r: r["metals"].update(cadmium="Cd")), "metals.cadmium",
    "element symbol")
add("metal_column_twice", params_edit(lambda r: r["metals"].update(Pb="Cd")), "metals.Pb", "already used for Cd")
add("metals_empty", params_edit(lambda r: r.update(metals={})), "metals: got {}", "at least 1")
add("reference_background_unknown",
    params_edit(lambda r: r["references"].update(background="UCC_Rudnick2003")),
    "references.background: got 'UCC_Rudnick2003'", "UCC_RudnickGao2014", "ChinaSoil_CNEMC1990")
add("reference_guideline_unknown", params_edit(lambda r: r["references"].update(guideline="VBBO")),
    "references.guideline: got 'VBBO'", "VBBo_Swiss1998")
add("reference_water_unknown", params_edit(lambda r: r["references"].update(water_standard="WHO2022")),
    "references.water_standard: got 'WHO2022'", "WHO_2022")
add("reference_threshold_unknown",
    params_edit(lambda r: r["references"].update(guideline_threshold="trigger_value")),
    "references.guideline_threshold: got 'trigger_value'", "guide")
add("unit_water_for_soil", params_edit(lambda r: r["media"]["soil"].update(unit="ug/L")),
    "media.soil.unit: got 'ug/L'", "solid-phase unit")
add("unit_unknown", params_edit(lambda r: r["media"]["soil"].update(unit="mg/kgg")), "media.soil.unit",
    "'mg/kgg'")
add("medium_unknown", params_edit(lambda r: r["media"].update(air={"unit": "ug/L"})), "media.air", "soil")
add("medium_empty", params_edit(lambda r: r.update(media={})), "media: got {}")
add("crs_bad", params_edit(lambda r: r["data"].update(crs="WGS84")), "data.crs: got 'WGS84'; expected 'EPSG:")
add("bounds_inverted", params_edit(lambda r: r["data"].update(coordinate_bounds=[6.0, 0.0, 0.0, 6.5])),
    "data.coordinate_bounds: got [6.0, 0.0, 0.0, 6.5]", "xmin < xmax")
add("bounds_short", params_edit(lambda r: r["data"].update(coordinate_bounds=[0.0, 0.0, 6.0])),
    "data.coordinate_bounds: item 4 is missing; expected four numbers")
add("yaml_missing_colon", text_edit(lambda t: t.replace("title:", "title", 1)), "could not find expected ':'")
add("bounds_missing_local", params_edit(lambda r: r["data"].pop("coordinate_bounds")),
    "data.coordinate_bounds: got None", "crs is 'local'")
add("bounds_text", params_edit(lambda r: r["data"].update(coordinate_bounds=["a", 0, 6, 6.5])),
    "data.coordinate_bounds.0: got 'a'; expected a number")
add("categorical_not_covariate", params_edit(lambda r: r["data"].update(categorical=["Landuse", "Soil"])),
    "data.categorical: got 'Soil'", "covariates")
add("encoding_unknown", params_edit(lambda r: r["data"].update(encoding="utf9")), "data.encoding: got 'utf9'")
add("delimiter_unknown", params_edit(lambda r: r["data"].update(delimiter="::")), "data.delimiter: got '::'")
add("decimal_equals_delimiter", params_edit(lambda r: r["data"].update(decimal=",")), "data.decimal: got ','")
add("thousands_equals_decimal", params_edit(lambda r: r["data"].update(thousands=".")),
    "data.thousands: got '.'")
add("thousands_unknown", params_edit(lambda r: r["data"].update(thousands="_")), "data.thousands: got '_'")
add("decimal_unknown", params_edit(lambda r: r["data"].update(decimal=":")), "data.decimal: got ':'")
add("seed_negative", params_edit(lambda r: r.update(seed=-1)), "seed: got -1")
add("seed_text", params_edit(lambda r: r.update(seed="abc")), "seed: got 'abc'; expected a whole number")
add("substitution_bad", params_edit(lambda r: r["non_detects"].update(substitution="half")),
    "non_detects.substitution: got 'half'", "half_dl")
add("detection_limit_negative", params_edit(lambda r: r["non_detects"].update(detection_limits={"Cd": -0.1})),
    "non_detects.detection_limits")
add("detection_limit_unknown_metal", params_edit(lambda r: r["non_detects"].update(detection_limits={"Hg": 0.1})),
    "non_detects.detection_limits.Hg: got 'Hg'", "a metal listed under metals")
add("stage_unknown", params_edit(lambda r: r.update(stages={"data_quality": {}, "kriging": {}})),
    "stages.kriging: unknown stage", "data_quality")
add("stage_option_bad", params_edit(lambda r: r.update(stages={"data_quality": {"alpha": 2}})),
    "stages.data_quality.alpha")
add("stage_option_unknown", params_edit(lambda r: r.update(stages={"data_quality": {"alpah": 0.1}})),
    "stages.data_quality.alpah: unknown key")
add("stage_options_not_mapping", params_edit(lambda r: r.update(stages={"data_quality": 5})),
    "stages.data_quality: got 5")
add("region_id_bad", params_edit(lambda r: r["region"].update(id="My Region")), "region.id: got 'My Region'",
    "lower case")
add("region_id_escape", params_edit(lambda r: r["region"].update(id="../../etc")), "region.id: got '../../etc'")
add("title_short", params_edit(lambda r: r["region"].update(title="J")), "region.title: got 'J'")
add("long_value_echo_cut", params_edit(lambda r: r.update(seed="9" * 5000 + "x")), "seed:", "characters)")
add("samples_number", params_edit(lambda r: r["data"].update(samples=5)),
    "data.samples: got 5; expected text or a mapping of keys")
add("samples_medium_without_file",
    params_edit(lambda r: (r["data"].update(samples={"soil": r["data"]["samples"]}),
                           r["media"].update(water={"unit": "ug/L"}))),
    "data.samples.water: got None", "a samples file for water")
add("data_null", params_edit(lambda r: r.update(data=None)), "data: got None; expected a mapping of keys")
add("metal_column_null", params_edit(lambda r: r["metals"].update(Cd=None)), "metals.Cd: got None; expected text")
add("stages_list", params_edit(lambda r: r.update(stages=["data_quality"])), "stages: got ['data_quality']")
add("bounds_infinite", params_edit(lambda r: r["data"].update(coordinate_bounds=[0, 0, 1e300, 6.5])),
    "data.coordinate_bounds", "finite numbers")
add("several_media_no_medium_column",
    params_edit(lambda r: r.update(media={"soil": {"unit": "mg/kg"}, "sediment": {"unit": "mg/kg"}})),
    "data.medium_column: got None")
add("samples_medium_undeclared",
    params_edit(lambda r: r["data"].update(samples={"soil": r["data"]["samples"], "water": "data/w.csv"})),
    "data.samples.water: got 'water'")

# water medium with a solid unit (coastal demo: soil, sediment and water)
add("unit_solid_for_water", params_edit(lambda r: r["media"]["water"].update(unit="mg/kg")),
    "media.water.unit: got 'mg/kg'", "dissolved", region="coastal_demo")
add("unit_ppm_for_water", params_edit(lambda r: r["media"]["water"].update(unit="ppm")),
    "media.water.unit: got 'ppm'", region="coastal_demo")


# ---------------------------------------------------------------------------------- paths
def _outside_file(p: Project) -> Path:
    f = p.tmp / "outside.csv"
    shutil.copy(p.samples, f)
    return f


add("samples_absolute_outside", lambda p: p.write_params(lambda r: r["data"].update(samples=str(_outside_file(p)))),
    "data.samples: got '", "outside.csv'", "inside the project folder", "--data-root")
add("samples_etc_passwd", params_edit(lambda r: r["data"].update(samples="/etc/passwd")),
    "data.samples: got '/etc/passwd'", "inside the project folder")
add("samples_dotdot", lambda p: (_outside_file(p), p.write_params(lambda r: r["data"].update(
    samples="../outside.csv")))[0] and None, "data.samples: got '../outside.csv'")
add("grid_outside", lambda p: p.write_params(lambda r: r["data"].update(grid=str(_outside_file(p)))),
    "data.grid: got '")


def _symlink_out(p: Project):
    link = p.root / "data" / "jura" / "link.csv"
    link.symlink_to(_outside_file(p))
    p.write_params(lambda r: r["data"].update(samples="data/jura/link.csv"))


add("samples_symlink_outside", _symlink_out, "data.samples: got 'data/jura/link.csv'", "inside the project")
add("stage_option_file_outside",
    params_edit(lambda r: r.update(stages={"data_quality": {}, "mobility": {"fractions": "/etc/hosts.csv"}})),
    "stages.mobility.fractions: got '/etc/hosts.csv'", "inside the project folder")


# ---------------------------------------------------------------------------------- command line
def _cli(*args: str) -> Callable[[Project], list[str]]:
    return lambda p: [a.format(params=p.params, root=p.root, tmp=p.tmp) for a in args]


add("validate_missing_params_path", _cli("validate", "{root}/params/nope.yml"), "params/nope.yml: params file not found")
add("validate_missing_region", lambda p: (os.chdir(p.root), ["validate", "nope"])[1],
    "no parameters for region 'nope'")
add("validate_region_misspelt", lambda p: (os.chdir(p.root), ["validate", "jurra"])[1], "did you mean 'jura'")
add("validate_region_not_id", _cli("validate", "Jura!"), "region 'Jura!'", "expected a region id")
add("validate_params_is_folder", _cli("validate", "{root}/params"), "is a folder")
add("run_region_escape", _cli("run", "../../etc/passwd", "--no-render"), "params file not found")
add("run_unknown_stage", _cli("run", "{params}", "--stages", "data_qualty", "--no-render",
                              "--reports-dir", "{tmp}/reports"),
    "--stages: got 'data_qualty'", "did you mean 'data_quality'")
add("run_stage_not_enabled", _cli("run", "{params}", "--stages", "baselines", "--no-render",
                                  "--reports-dir", "{tmp}/reports"), "'baselines' not enabled")
add("run_jobs_zero", _cli("run", "{params}", "--jobs", "0", "--no-render"), "--jobs: got 0")
add("run_bad_params", lambda p: (p.write_params(lambda r: r["data"].update(crs="RD")),
                                 ["run", str(p.params), "--no-render", "--reports-dir", str(p.tmp / "r")])[1],
    "data.crs: got 'RD'")
add("render_no_report", _cli("render", "{params}", "--reports-dir", "{tmp}/reports"), "no report to render")


def _bad_manifest(p: Project):
    d = p.tmp / "reports" / "jura"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text("{not json", encoding="utf-8")
    return ["render", str(p.params), "--reports-dir", str(p.tmp / "reports")]


add("render_bad_manifest", _bad_manifest, "manifest.json: not a report manifest")
add("data_root_missing", _cli("validate", "{params}", "--data-root", "{tmp}/nowhere"), "--data-root: got")
add("regions_dir_missing", _cli("regions", "--params-dir", "{tmp}/nowhere"), "--params-dir: got")
add("references_kind_unknown", _cli("references", "--kind", "backgrounds"), "--kind: got 'backgrounds'",
    "did you mean 'background'")
add("risk_nan", _cli("risk", "--medium", "soil", "--metal", "As", "--concentration", "nan"), "--concentration")
add("risk_negative", _cli("risk", "--medium", "soil", "--metal", "As", "--concentration", "-1"), "--concentration")
add("risk_implausible", _cli("risk", "--medium", "soil", "--metal", "As", "--concentration", "1e9"),
    "--concentration", "impossible")
add("risk_unknown_metal", _cli("risk", "--medium", "soil", "--metal", "Xx", "--concentration", "1"), "Xx")
add("risk_fraction", _cli("risk", "--medium", "soil", "--metal", "Cr", "--concentration", "1",
                          "--cr-vi-fraction", "1.5"), "--cr-vi-fraction")
add("risk_not_number", _cli("risk", "--medium", "soil", "--metal", "As", "--concentration", "abc"),
    "--concentration", "invalid float value")


def _new_region(*extra: str, data: str = "{root}/data/jura/jura_samples.csv"):
    return lambda p: ["new-region", *[a.format(root=p.root, tmp=p.tmp) for a in extra],
                      "--data", data.format(root=p.root, tmp=p.tmp), "--params-dir", str(p.root / "params")]


add("new_region_escape_name", _new_region("../evil"), "region name '../evil'")
add("new_region_bad_name", _new_region("Stein Am Rhein"), "region name 'Stein Am Rhein'")
add("new_region_exists", _new_region("jura"), "jura.yml exists")
add("new_region_data_outside", lambda p: (_outside_file(p), _new_region("stein", data="{tmp}/outside.csv")(p))[1],
    "--data: got", "inside the project folder")
add("new_region_data_missing", _new_region("stein", data="{root}/data/nope.csv"), "--data:", "file not found")
add("new_region_empty_csv", lambda p: ((p.root / "data" / "e.csv").write_text(""),
                                       _new_region("stein", data="{root}/data/e.csv")(p))[1],
    "e.csv", "file is empty")
add("new_region_not_utf8", lambda p: ((p.root / "data" / "l.csv").write_bytes(
    p.samples.read_text().replace("Meadow", "Prairie é").encode("latin-1")),
    _new_region("stein", data="{root}/data/l.csv")(p))[1], "l.csv, row 2, column 'Landuse'", "data.encoding")
add("new_region_no_metals", lambda p: ((p.root / "data" / "m.csv").write_text("sample_id,x,y,ph\nA,1,1,7\n"),
                                       _new_region("stein", data="{root}/data/m.csv")(p))[1],
    "no column looks like a metal")
add("new_region_no_coords", lambda p: ((p.root / "data" / "c.csv").write_text("sample_id,Cd\nA,1\n"),
                                       _new_region("stein", data="{root}/data/c.csv")(p))[1],
    "no coordinate columns")
add("new_region_bad_encoding_flag", _new_region("stein", "--encoding", "klingon"), "--encoding 'klingon'")


# ---------------------------------------------------------------------------------- data files
S = "data/jura/jura_samples.csv"


def cell(row: int, column: str, value: str) -> Callable[[Project], None]:
    return lambda p: p.set_cell(row, column, value)


def data_case(id: str, row: int, column: str, value: str, *expect: str, region: str = "jura"):
    add(id, cell(row, column, value), f"row {row}, column '{column}': value {value!r}", *expect, region=region)


data_case("value_text", 5, "Zn", "abc", "not a number")
data_case("value_negative", 6, "Pb", "-999", "negative")
data_case("value_thousands", 7, "Zn", "1,250", "thousands separator", "data.thousands")
data_case("value_decimal_comma", 8, "Cd", "1,25", "decimal comma", "data.decimal")
data_case("value_huge", 9, "Cu", "1e30", "impossible")
data_case("value_above_sample", 10, "Zn", "2000000", "above 1,000,000 mg/kg")
data_case("value_inf", 11, "Ni", "inf", "not a number")
data_case("value_underscore", 12, "Ni", "1_000", "not a number")
data_case("value_arabic_digits", 13, "Co", "\u0661\u0662", "not a number")
data_case("value_nd_no_limit", 14, "Cd", "ND", "detection limit")
data_case("value_lt_zero", 15, "Cd", "<0", "detection limit must be > 0")
data_case("value_lt_text", 16, "Cd", "<abc", "detection limit after '<'")
data_case("value_greater_than", 17, "Pb", ">100", "not supported")
data_case("value_space_thousands", 18, "Zn", "1 250", "data.thousands")
data_case("value_with_unit", 19, "Pb", "25 mg/kg", "not a number")
data_case("value_lt_huge", 20, "Cd", "<1e30", "impossible")
data_case("value_excel_error", 21, "Cu", "#N/A", "not a number")
add("value_huge_cell", cell(22, "Cu", "9" * 200_000), "row 22: cannot be read as CSV", "field larger than field limit")
data_case("coord_text", 21, "Xloc", "north", "coordinate")
data_case("coord_decimal_comma", 22, "Yloc", "3,5", "decimal comma")
data_case("coord_outside_bounds", 23, "Xloc", "250", "outside the valid range")
data_case("coord_missing", 24, "Yloc", "", "coordinate is missing")
data_case("id_duplicate", 25, "sample_id", "P001", "duplicate sample id (first at row 2)")
data_case("id_empty", 26, "sample_id", "", "empty sample id")
data_case("covariate_text", 5, "elev", "high", "covariate is not a number", region="meuse")
data_case("covariate_decimal_comma", 6, "om", "3,5", "decimal comma", region="meuse")
data_case("meuse_coord_outside_epsg", 7, "y", "1e8", "outside the valid range", "EPSG:28992", region="meuse")
data_case("medium_unknown_in_data", 4, "medium", "sludge", "unknown medium", region="coastal_demo")


def _water_huge(p: Project):
    rows = p.rows()
    p.set_cell(1 + next(i for i, r in enumerate(rows) if r[2] == "water"), "Pb", "5e12")


add("water_value_huge", _water_huge, "column 'Pb': value '5e12'", "5e+12 ug/L is above", region="coastal_demo")
add("samples_missing_file", params_edit(lambda r: r["data"].update(samples="data/jura/nope.csv")),
    "nope.csv: file not found")
add("samples_is_folder", params_edit(lambda r: r["data"].update(samples="data/jura")), "is a folder")
add("samples_empty", lambda p: p.samples.write_text(""), "jura_samples.csv: file is empty")
add("samples_blank_lines_only", lambda p: p.samples.write_text("\n\n  \n"), "file is empty")
add("samples_header_only", lambda p: p.samples.write_text(p.samples.read_text().splitlines()[0] + "\n"),
    "header but no data rows")
add("samples_two_rows", lambda p: p.samples.write_text("\n".join(p.samples.read_text().splitlines()[:3]) + "\n"),
    "2 samples of soil; expected at least 4")
add("samples_one_row", lambda p: p.samples.write_text("\n".join(p.samples.read_text().splitlines()[:2]) + "\n"),
    "1 sample of soil; expected at least 4")
add("water_two_rows", lambda p: p.write_rows([r for r in p.rows() if r[2] != "water"] +
                                             [r for r in p.rows() if r[2] == "water"][:2]),
    "2 samples of water; expected at least 4", region="coastal_demo")
add("water_no_rows", lambda p: p.write_rows([r for r in p.rows() if r[2] != "water"]),
    "0 samples of water", region="coastal_demo")


def _latin1(p: Project):
    rows = p.rows()
    rows[9][rows[0].index("Landuse")] = "Prairie fauchée"
    p.write_rows(rows, encoding="latin-1")


add("encoding_latin1_undeclared", _latin1, "row 10, column 'Landuse'", "cannot be read as utf-8",
    "data.encoding")
add("encoding_utf16_undeclared", lambda p: p.samples.write_bytes(p.samples.read_text().encode("utf-16")),
    "utf-16")
add("encoding_declared_wrong", lambda p: (p.write_rows(p.rows(), encoding="utf-16"),
                                          p.write_params(lambda r: r["data"].update(encoding="ascii")))[0],
    "cannot be read as ascii")
add("delimiter_semicolon_undeclared", lambda p: p.write_rows(p.rows(), delimiter=";"),
    "row 1", "';'", "data.delimiter", "(1 problem)")
add("delimiter_tab_undeclared", lambda p: p.write_rows(p.rows(), delimiter="\t"), "data.delimiter: tab")
add("delimiter_declared_wrong", lambda p: p.write_params(lambda r: r["data"].update(delimiter=";")),
    "the file seems to use ','", "data.delimiter: ','")


def _semicolon_decimal_comma(p: Project):
    rows = [[c.replace(".", ",") if i else c for c in r] for i, r in enumerate(p.rows())]
    p.write_rows(rows, delimiter=";")
    p.write_params(lambda r: r["data"].update(delimiter=";"))


add("decimal_comma_undeclared", _semicolon_decimal_comma, "row 2, column 'Xloc'", "data.decimal")


def _dot_with_decimal_comma(p: Project):
    _semicolon_decimal_comma(p)
    p.write_params(lambda r: r["data"].update(decimal=","))
    rows = list(csv.reader(io.StringIO(p.samples.read_text()), delimiter=";"))
    rows[4][rows[0].index("Zn")] = "1.250"
    p.write_rows(rows, delimiter=";")


add("dot_where_decimal_comma", _dot_with_decimal_comma, "row 5, column 'Zn'", "contains '.'")


def _header_edit(fn):
    def go(p: Project):
        lines = p.samples.read_text().splitlines()
        lines[0] = fn(lines[0])
        p.samples.write_text("\n".join(lines) + "\n")
    return go


add("header_duplicate", _header_edit(lambda h: h.replace("Co,", "Cd,")), "row 1, column 'Cd'",
    "more than once")
add("header_duplicate_padded", _header_edit(lambda h: h.replace("Co,", " Cd ,")), "column 'Cd'", "more than once")
add("header_unnamed_column", _header_edit(lambda h: h.replace("long,", ",")), "column 4 has values but no name")
add("header_missing_metal", _header_edit(lambda h: h.replace("Pb,", "Pbx,")), "column 'Pb'",
    "required column missing")
add("header_case", _header_edit(lambda h: h.replace(",Cd,", ",cd,")), "column 'Cd'", "differs only in upper/lower case")


def _line_edit(i: int, fn):
    def go(p: Project):
        lines = p.samples.read_text().splitlines()
        lines[i] = fn(lines[i])
        p.samples.write_text("\n".join(lines) + "\n")
    return go


add("row_extra_field", _line_edit(6, lambda ln: ln + ",12.5"), "row 7", "15 values but the header has 14")
add("row_missing_field", _line_edit(7, lambda ln: ln.rsplit(",", 1)[0]), "row 8", "13 values but the header has 14")
add("row_unquoted_decimal_comma", _line_edit(8, lambda ln: ln.replace(".", ",", 1)), "row 9", "decimal comma")
add("row_nul_byte", lambda p: p.samples.write_bytes(p.samples.read_bytes().replace(b"Meadow", b"Mea\x00dow", 1)),
    "NUL")
add("row_after_blank_lines", lambda p: (_line_edit(3, lambda ln: ln + "\n\n")(p), p.set_cell(9, "Cu", "x")),
    "row 9, column 'Cu'")

G = "data/jura/jura_grid.csv"
add("grid_missing_x", lambda p: p.grid.write_text(p.grid.read_text().replace("Xloc", "Xlocation", 1)),
    "jura_grid.csv, row 1, column 'Xloc'", "required column missing")
add("grid_bad_coordinate", lambda p: p.set_cell(4, "Yloc", "abc", path=p.grid), "jura_grid.csv, row 4, column 'Yloc'")
add("grid_header_only", lambda p: p.grid.write_text(p.grid.read_text().splitlines()[0] + "\n"),
    "jura_grid.csv", "header but no data rows")
add("grid_covariate_thousands", lambda p: p.set_cell(5, "dist", "1,250", path=p.grid),
    "meuse_grid.csv, row 5, column 'dist'", "thousands", region="meuse")


# ---------------------------------------------------------------------------------- the corpus
def test_corpus_is_large_enough():
    """The issue asks for at least 80 malformed inputs (checked against the count written here)."""
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_precise_message(c: Case, tmp_path, capsys, monkeypatch):
    """Each malformed input: exit status 2, the hand-written row/column or key text in the message, no traceback."""
    monkeypatch.chdir(tmp_path)
    p = Project(tmp_path, c.region)
    argv = c.setup(p)
    argv = argv if isinstance(argv, list) else validate(p)
    t0 = time.time()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    for e in c.expect:
        assert e in err, f"{e!r} not in:\n{err}"
    assert "Traceback" not in err
    assert "expected expected" not in err and "(s)" not in err
    assert len(err) < 20_000  # values echoed are cut
    assert time.time() - t0 < 30


# ---------------------------------------------------------------------------------- accepted variants
def _truth(region: str = "jura") -> pd.DataFrame:
    """The first N_ROWS samples as pandas reads the unmodified shipped file (the independent reader)."""
    raw = yaml.safe_load((ROOT / "params" / f"{region}.yml").read_text())
    return pd.read_csv(ROOT / raw["data"]["samples"]).head(N_ROWS).set_index(raw["data"]["id_column"])


def _loaded(p: Project):
    return load_region(load_params(p.params))


def _assert_same_values(p: Project):
    d = _loaded(p)
    w, truth = d.wide("soil"), _truth()
    for metal in ("Cd", "Pb", "Zn"):
        pd.testing.assert_series_equal(w[metal], truth[metal].astype(float), check_names=False)
    pd.testing.assert_series_equal(d.sites("soil")["x"], truth["Xloc"], check_names=False)
    return d


def test_accepts_utf8_byte_order_mark(tmp_path):
    """A UTF-8 BOM (Excel's 'CSV UTF-8') is not part of the first column name; values equal pandas' reading."""
    p = Project(tmp_path)
    p.samples.write_bytes(b"\xef\xbb\xbf" + p.samples.read_bytes())
    _assert_same_values(p)


def test_accepts_crlf_line_endings(tmp_path):
    """Windows line endings: values equal pandas' reading; row numbers in messages still match the file."""
    p = Project(tmp_path)
    p.write_rows(p.rows(), newline="\r\n")
    _assert_same_values(p)
    p.set_cell(7, "Zn", "oops")
    p.write_rows(p.rows(), newline="\r\n")
    with pytest.raises(Exception, match="row 7, column 'Zn'"):
        _loaded(p)


def test_accepts_padded_numbers_and_quotes(tmp_path):
    """Blanks around numbers and quoted numbers are read as the number itself."""
    p = Project(tmp_path)
    rows = p.rows()
    for r in rows[1:]:
        r[rows[0].index("Zn")] = f"  {r[rows[0].index('Zn')]}  "
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
    p.samples.write_text(buf.getvalue())
    _assert_same_values(p)


def test_accepts_declared_latin1_and_semicolons_with_decimal_comma(tmp_path):
    """A European export (latin-1, ';' between fields, ',' as decimal mark) declared in the params reads the same values."""
    p = Project(tmp_path)
    rows = p.rows()
    rows[3][rows[0].index("Landuse")] = "Prairie fauchée"
    out = [rows[0]] + [[c.replace(".", ",") for c in r] for r in rows[1:]]
    p.write_rows(out, delimiter=";", encoding="latin-1")
    p.write_rows([r if i == 0 else [c.replace(".", ",") for c in r] for i, r in enumerate(p.rows(p.grid))],
                 p.grid, delimiter=";", encoding="latin-1")
    p.write_params(lambda r: r["data"].update(encoding="latin-1", delimiter=";", decimal=","))
    d = _assert_same_values(p)
    assert d.sites("soil").iloc[2]["Landuse"] == "Prairie fauchée"


def test_accepts_declared_thousands_separator(tmp_path):
    """'1,250' is 1250 when the params declare data.thousands: ','."""
    p = Project(tmp_path)
    p.set_cell(2, "Zn", "1,250.5")
    p.write_params(lambda r: r["data"].update(thousands=","))
    assert _loaded(p).wide("soil").iloc[0]["Zn"] == 1250.5


def test_accepts_tab_delimiter_declared_as_tab(tmp_path):
    """'tab' is accepted as data.delimiter; values equal pandas' reading."""
    p = Project(tmp_path)
    p.write_rows(p.rows(), delimiter="\t")
    p.write_rows(p.rows(p.grid), p.grid, delimiter="\t")
    p.write_params(lambda r: r["data"].update(delimiter="tab"))
    _assert_same_values(p)


def test_non_detects_less_than_and_nd_with_limit(tmp_path):
    """'<0.05' is censored at 0.05 (DL/2 = 0.025 substituted); 'ND' takes the declared limit (0.2, rule 'dl')."""
    p = Project(tmp_path)
    p.set_cell(2, "Cd", "<0.05")
    p.set_cell(3, "Cd", "nd")
    p.write_params(lambda r: r["non_detects"].update(detection_limits={"Cd": 0.2}))
    d = _loaded(p)
    c = d.concentrations.set_index(["sample_id", "metal"])
    truth = _truth()
    first, second = truth.index[0], truth.index[1]
    assert c.loc[(first, "Cd"), "censored"] and c.loc[(first, "Cd"), "value"] == pytest.approx(0.025)
    assert c.loc[(second, "Cd"), "censored"] and c.loc[(second, "Cd"), "value"] == pytest.approx(0.1)
    p.write_params(lambda r: r["non_detects"].update(substitution="dl"))
    c = _loaded(p).concentrations.set_index(["sample_id", "metal"])
    assert c.loc[(second, "Cd"), "value"] == pytest.approx(0.2)


def test_trailing_separators_and_blank_lines_are_accepted(tmp_path):
    """A trailing comma on every line and blank lines (spreadsheet leftovers) change nothing."""
    p = Project(tmp_path)
    lines = p.samples.read_text().splitlines()
    p.samples.write_text("\n".join(ln + "," for ln in lines[:10]) + "\n\n,,,,\n" +
                         "\n".join(ln + "," for ln in lines[10:]) + "\n")
    _assert_same_values(p)


def test_quoted_newline_keeps_row_numbers(tmp_path):
    """A quoted value spanning two lines: a later bad cell is reported at its line in the file (counted by hand)."""
    p = Project(tmp_path)
    p.set_cell(3, "Landuse", "Mea\ndow")  # row 3 now spans lines 3-4
    p.set_cell(6, "Zn", "bad")  # the 6th record starts on line 7
    with pytest.raises(Exception, match="row 7, column 'Zn'"):
        _loaded(p)


def test_data_root_flag_allows_an_outside_folder(tmp_path, capsys):
    """Data outside the project are refused, and accepted once that folder is passed with --data-root."""
    p = Project(tmp_path)
    ext = tmp_path / "shared"
    ext.mkdir()
    shutil.copy(p.samples, ext / "jura.csv")
    p.write_params(lambda r: r["data"].update(samples=str(ext / "jura.csv")))
    assert main(["validate", str(p.params)]) == 2
    assert main(["validate", str(p.params), "--data-root", str(ext)]) == 0
    assert "OK (soil: 40 samples" in capsys.readouterr().out
    assert "HMLIB_DATA_ROOT" not in os.environ  # restored after the command


def test_internal_error_exits_1_and_says_so(tmp_path, capsys, monkeypatch):
    """An unexpected exception is an internal error: exit 1, said so, traceback only with --debug."""
    p = Project(tmp_path)
    import hmlib.io

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(hmlib.io, "load_region", boom)
    assert main(["validate", str(p.params)]) == 1
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError" in err and "not a problem with the input" in err
    assert "Traceback" not in err
    assert main(["validate", str(p.params), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    assert main(["--debug", "validate", str(p.params)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_input_error_traceback_only_with_debug(tmp_path, capsys):
    """--debug shows the traceback of an input error too; the exit status stays 2."""
    p = Project(tmp_path)
    p.write_params(lambda r: r["data"].update(crs="RD"))
    assert main(["validate", str(p.params), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_new_region_quotes_odd_column_names(tmp_path, capsys):
    """Column names with ':' or '#' are quoted in the starter YAML, so the params read back the same names."""
    p = Project(tmp_path)
    rows = p.rows()
    rows[0][rows[0].index("Pb")] = "Pb # total: HNO3"
    p.write_rows(rows)
    assert main(["new-region", "odd", "--data", str(p.samples), "--params-dir", str(p.root / "params")]) == 0
    params = load_params(p.root / "params" / "odd.yml")
    assert params.metals["Pb"] == "Pb # total: HNO3"
    assert params.data.samples == "data/jura/jura_samples.csv"


def test_new_region_with_declared_encoding_and_delimiter(tmp_path, capsys):
    """new-region on a latin-1, ';'-separated export writes params that declare both and validate (40 samples)."""
    p = Project(tmp_path)
    rows = p.rows()
    rows[3][rows[0].index("Landuse")] = "Prairie fauchée"
    p.write_rows(rows, delimiter=";", encoding="latin-1")
    assert main(["new-region", "eu", "--data", str(p.samples), "--params-dir", str(p.root / "params"),
                 "--encoding", "latin-1", "--delimiter", ";"]) == 0
    params = load_params(p.root / "params" / "eu.yml")
    assert (params.data.encoding, params.data.delimiter) == ("latin-1", ";")
    assert main(["validate", str(p.root / "params" / "eu.yml")]) == 0
    assert "OK (soil: 40 samples" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- subprocess
def _hmlib(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HMLIB_DEBUG", "HMLIB_DATA_ROOT")}
    return subprocess.run([sys.executable, "-m", "hmlib", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_subprocess_billion_laughs_is_fast_and_short(tmp_path):
    """The alias bomb is refused within seconds with a short message (measured: a minute and 8 MB before)."""
    p = Project(tmp_path)
    _bomb(p)
    t0 = time.time()
    out = _hmlib("validate", str(p.params), cwd=tmp_path)
    assert out.returncode == 2 and time.time() - t0 < 30
    assert "expands to more than" in out.stderr and len(out.stderr) < 2000 and "Traceback" not in out.stderr


def test_subprocess_latin1_data_and_unknown_stage(tmp_path):
    """Through the console: an undeclared latin-1 file names its row; a misspelt stage exits 2 before any data are read."""
    p = Project(tmp_path)
    _latin1(p)
    out = _hmlib("validate", str(p.params), cwd=tmp_path)
    assert out.returncode == 2 and "row 10, column 'Landuse'" in out.stderr and "Traceback" not in out.stderr
    out = _hmlib("run", str(p.params), "--stages", "nonsense", "--no-render", "--reports-dir", str(tmp_path / "r"),
                 cwd=tmp_path)
    assert out.returncode == 2 and "--stages: got 'nonsense'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists()  # nothing was started


def test_subprocess_missing_params_not_doubled(tmp_path):
    """A missing params path is named once (it used to become params/params/nope.yml.yml)."""
    (tmp_path / "params").mkdir()
    out = _hmlib("run", "params/nope.yml", "--no-render", cwd=tmp_path)
    assert out.returncode == 2 and "params/nope.yml: params file not found" in out.stderr
    assert "params/params" not in out.stderr and ".yml.yml" not in out.stderr


# ---------------------------------------------------------------------------------- smallest region
def test_smallest_accepted_region_runs_data_quality(tmp_path):
    """A region with the fewest samples the loader accepts (4) runs the data-quality stage to the end.

    Checked against the definition of the bias-corrected sample kurtosis (Joanes & Gill 1998,
    doi:10.1111/1467-9884.00122), which needs n >= 4: with 3 samples the stage would have no
    kurtosis column, which is why the loader refuses fewer than 4 (see the 'samples_*_row' cases).
    """
    import matplotlib.pyplot as plt
    from conftest import make_mini_project

    from hmlib.context import open_stage
    from hmlib.stages import stage_module

    pf = make_mini_project(tmp_path, n=4)
    ctx = open_stage("data_quality", params_file=pf, output_dir=tmp_path / "out")
    mod = stage_module("data_quality")
    result = mod.run(ctx)
    mod.report(ctx, result)
    ctx.out.finish()
    plt.close("all")
    assert (tmp_path / "out" / "fragments" / "data_quality.json").is_file()


# ---------------------------------------------------------------------------------- number parsing
_finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(_finite)
def test_parse_number_reads_python_formatting(x):
    """Numbers written by Python's own formatting (repr, fixed, exponent) read back as float() reads them."""
    for text in (repr(x), f"{x:.6f}", f"{x:.3e}", f"  {x:g} "):
        value, problem = parse_number(text)
        assert problem is None and value == float(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1000, max_value=10**12), st.integers(min_value=0, max_value=99))
def test_grouped_numbers_refused_unless_declared(n, cents):
    """'1,234,567.89' (Python's ',' grouping) is refused by default and read as 1234567.89 when declared;
    the European form '1.234.567,89' likewise with decimal ',' and thousands '.'."""
    text = f"{n:,}.{cents:02d}"
    assert parse_number(text)[1] is not None
    assert parse_number(text, thousands=",") == (float(f"{n}.{cents:02d}"), None)
    eu = text.replace(",", "_").replace(".", ",").replace("_", ".")
    assert parse_number(eu, decimal=",", thousands=".") == (float(f"{n}.{cents:02d}"), None)
    assert parse_number(eu, decimal=",")[1] is not None
