"""Shared fixtures: a small region built from the first Jura samples, in a temporary project."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]

MINI_PARAMS = """
region:
  id: mini
  title: "Mini test region"
  description: "First 60 Jura samples, with two non-detects."
data:
  samples: data/mini/samples.csv
  grid: data/mini/grid.csv
  id_column: sample_id
  x_column: Xloc
  y_column: Yloc
  crs: local
  coordinate_unit: km
  coordinate_bounds: [0.0, 0.0, 6.0, 6.5]
  covariates: [Landuse, Rock]
  categorical: [Landuse, Rock]
media:
  soil: {unit: mg/kg}
metals:
  Cd: Cd
  Cu: Cu
  Pb: Pb
  Zn: Zn
non_detects:
  substitution: half_dl
references:
  background: UCC_RudnickGao2014
  guideline: VBBo_Swiss1998
  guideline_threshold: guide
stages:
  data_quality: {}
"""


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def make_mini_project(base: Path, *, params_text: str = MINI_PARAMS, n: int = 60) -> Path:
    """A project folder with params/mini.yml and data/mini/{samples,grid}.csv."""
    (base / "params").mkdir(parents=True, exist_ok=True)
    (base / "data" / "mini").mkdir(parents=True, exist_ok=True)
    s = pd.read_csv(ROOT / "data" / "jura" / "jura_samples.csv", dtype=str).head(n)
    s.loc[0, "Cd"] = "<0.1"
    s.loc[1, "Cd"] = "<0.1"
    s.to_csv(base / "data" / "mini" / "samples.csv", index=False)
    g = pd.read_csv(ROOT / "data" / "jura" / "jura_grid.csv").iloc[::20]
    g.to_csv(base / "data" / "mini" / "grid.csv", index=False)
    (base / "params" / "mini.yml").write_text(params_text, encoding="utf-8")
    return base / "params" / "mini.yml"


@pytest.fixture
def mini_project(tmp_path) -> Path:
    """Path of params/mini.yml in a fresh temporary project."""
    return make_mini_project(tmp_path)


@pytest.fixture
def write_csv(tmp_path):
    """Write a CSV from text (dedented) and return its path."""
    import textwrap

    def _w(text: str, name: str = "samples.csv") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return p

    return _w
