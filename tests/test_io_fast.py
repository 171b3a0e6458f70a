"""The vectorised reading path of :mod:`hmlib.io` against its row-by-row checking path.

Large grids (a million cells) are read through pandas' C parser and whole-column number
conversion; every test here forces the row-by-row reader and cell-by-cell parser (the reference
implementation, which names each bad cell) and compares frames and messages.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hmlib import io as hio

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "data").glob("*/*.csv"))


@pytest.fixture
def slow(monkeypatch):
    """Switch every vectorised path off: the row-by-row reader and the cell-by-cell parser."""
    def force():
        monkeypatch.setattr(hio, "_read_regular", lambda text, delimiter: None)
        monkeypatch.setattr(hio, "_NOT_PLAIN", re.compile(r"[\s\S]|^$"))
        monkeypatch.setattr(hio, "_plain_concentrations", lambda df, med, p: dict.fromkeys(p.metals.values()))
    return force


def _read(path, **kw):
    issues = []
    df = hio.read_table(path, issues=issues, **kw)
    return df, [(i.file, i.row, i.column, i.value, i.message) for i in issues]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fast_reader_same_frame_on_shipped_files(path, slow):
    """Checked against the row-by-row csv.reader path: identical frame (values, dtypes, file-row index)."""
    fast, _ = _read(path)
    slow()
    ref, _ = _read(path)
    pd.testing.assert_frame_equal(fast, ref)


VARIANTS = {
    "plain": "id,x,y\nA,1,2\nB,3,4\n",
    "crlf": "id,x,y\r\nA,1,2\r\nB,3,4\r\n",
    "no_final_newline": "id,x,y\nA,1,2\nB,3,4",
    "blank_line": "id,x,y\nA,1,2\n\nB,3,4\n",
    "row_of_empty_cells": "id,x,y\nA,1,2\n,,\nB,3,4\n",
    "blanks_in_cells": "id , x,y\n A ,1 , 2\nB,3,4 \n",
    "blank_inside_value": "id,x,y\nA b,1,2\nB,3,4\n",
    "blank_empty_row": "id,x,y\nA,1,2\n , , \nB,3,4\n",
    "quoted": 'id,x,y\n"A, b",1,2\nB,3,4\n',
    "short_row": "id,x,y\nA,1\nB,3,4\n",
    "long_row": "id,x,y\nA,1,2,5\nB,3,4\n",
    "trailing_separator": "id,x,y,\nA,1,2,\nB,3,4,\n",
    "duplicate_header": "id,x,x\nA,1,2\nB,3,4\n",
    "semicolon_file": "id;x;y\nA;1;2\nB;3;4\n",
    "header_only": "id,x,y\n",
    "nbsp": "id,x,y\nA\u00a0,1,2\nB,3,4\n",
    "lone_cr": "id,x,y\rA,1,2\rB,3,4\r",
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fast_reader_same_frame_and_messages_on_irregular_text(name, tmp_path, slow):
    """Checked against the row-by-row csv.reader path: same frame (or None) and the same messages
    (file, row, column, value, text) for blank lines, blanks in cells, quotes, ragged rows, bad headers."""
    f = tmp_path / "t.csv"
    f.write_bytes(VARIANTS[name].encode("utf-8"))
    fast, fast_issues = _read(f)
    slow()
    ref, ref_issues = _read(f)
    assert fast_issues == ref_issues
    if ref is None:
        assert fast is None
    else:
        pd.testing.assert_frame_equal(fast, ref)


@pytest.mark.parametrize("region", ["jura", "meuse"])
def test_fast_loader_same_region_data(region, slow):
    """Checked against the cell-by-cell loader: samples, concentrations, grid and missing-value table
    of the shipped Jura and Meuse data are identical (values, dtypes, order)."""
    fast = hio.load_region(ROOT / "params" / f"{region}.yml")
    slow()
    ref = hio.load_region(ROOT / "params" / f"{region}.yml")
    pd.testing.assert_frame_equal(fast.samples, ref.samples)
    pd.testing.assert_frame_equal(fast.concentrations, ref.concentrations)
    pd.testing.assert_frame_equal(fast.grid, ref.grid)
    pd.testing.assert_frame_equal(fast.missing, ref.missing)


@pytest.mark.parametrize("cells", [["1.5", "2", "3e2", "-.5", "+4."], ["1.5", "1e999", "2"], ["1,5", "2", "3"],
                                   ["1.5", "", "2"], ["1_0", "2", "3"], ["inf", "2", "3"], ["-", "2", "3"],
                                   ["1.5", None, "2"]])
def test_parse_column_fast_path_same_values_and_problems(cells, monkeypatch):
    """Checked against :func:`hmlib.io.parse_number` cell by cell (the strict reference parser):
    same numbers, NaN for missing cells, and the same problem per bad cell."""
    col = pd.Series(cells, dtype=object)
    vals, problems = hio._parse_column(col, decimal=".", thousands=None)
    for i, c in col.items():
        if c is None:
            assert np.isnan(vals[i]) and i not in problems
            continue
        v, problem = hio.parse_number(c)
        assert problems.get(i) == problem
        if problem is None:
            assert vals[i] == v
