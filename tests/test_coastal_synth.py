"""Tests of the seeded tri-media generator hmlib.synth.coastal (the coastal_demo region)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hmlib.crossmedia import kd_drivers, kd_table, partition_coefficient
from hmlib.synth import coastal


@pytest.fixture(scope="module")
def tables():
    return coastal.generate(seed=20251121)


def test_deterministic_given_seed(tables):
    again = coastal.generate(seed=20251121)
    for k in tables:
        pd.testing.assert_frame_equal(tables[k], again[k])
    other = coastal.generate(seed=1)
    assert not np.allclose(other["soil"]["Cd"], tables["soil"]["Cd"])


def test_shapes_units_and_pairing(tables):
    n = 26 * 4
    for medium in ("soil", "sediment", "water"):
        t = tables[medium]
        assert len(t) == n and t["sample_id"].is_unique
        assert list(t["site_id"]) == list(tables["sites"]["site_id"])
        for m in coastal.METALS:
            assert (t[m] > 0).all(), (medium, m)
    # solids in mg/kg: sediment Pb of a few tens mg/kg; water in ug/L: dissolved Pb around 1 ug/L
    assert 5 < tables["sediment"]["Pb"].median() < 100
    assert 0.1 < tables["water"]["Pb"].median() < 10
    assert set(tables["sites"]["group"]) == set(coastal.ESTUARIES)
    with pytest.raises(ValueError, match="seed"):
        coastal.generate(seed=-1)
    with pytest.raises(ValueError, match="sites_per_estuary"):
        coastal.generate(sites_per_estuary=2)


def test_true_kd_is_eq1_of_the_drawn_concentrations(tables):
    """The water was drawn as C_w = 100 C_s / Kd, so Eq. 1 applied to the drawn values returns
    the stored truth exactly (no rounding before writing)."""
    kd = partition_coefficient(tables["sediment"]["Cd"], tables["water"]["Cd"])
    truth = tables["kd_true"].query("metal == 'Cd'")["log10_kd"].to_numpy()
    np.testing.assert_allclose(np.log10(kd), truth, rtol=1e-12)


def test_stated_relationships_hold(tables):
    """Docstring relationships: salinity-driven Cd desorption (Kd_Cd falls with salinity, much more
    than other metals), OM retention (Kd rises with sediment OM), soil-sediment inheritance, and
    DO acting only through pH."""
    sites = tables["sites"].set_index("site_id")
    kd = kd_table(tables["sediment"].set_index("site_id")[list(coastal.METALS)],
                  tables["water"].set_index("site_id")[list(coastal.METALS)],
                  solid_unit="mg/kg", water_unit="ug/L", groups=sites["group"])
    drivers = pd.DataFrame({"salinity": sites["salinity_psu"],
                            "ph_water": tables["water"].set_index("site_id")["ph"],
                            "do": sites["do_mg_l"],
                            "om_sed": tables["sediment"].set_index("site_id")["om_pct"]})
    out = kd_drivers(kd, drivers).set_index(["metal", "variable"])
    assert out.loc[("Cd", "salinity"), "spearman_rho"] < -0.6
    assert out.loc[("Cd", "salinity"), "beta_p"] < 1e-6
    others = [m for m in coastal.METALS if m != "Cd"]
    assert out.loc[("Cd", "salinity"), "beta_std"] < min(out.loc[(m, "salinity"), "beta_std"] for m in others)
    for m in coastal.METALS:
        assert out.loc[(m, "om_sed"), "beta_std"] > 0 and out.loc[(m, "om_sed"), "beta_p"] < 0.01
        rho, _ = stats.spearmanr(tables["soil"][m], tables["sediment"][m])
        assert rho > 0.5, m
    # DO has no direct effect on Kd given pH: its standardized beta is small for every metal
    assert out.xs("do", level="variable")["beta_std"].abs().max() < 0.25
    # estuaries differ in Cd Kd (salinity gradient), ordered a > d
    g = kd[kd.metal == "Cd"].groupby("group")["log10_kd"].median()
    assert g["estuary_a"] > g["estuary_d"] + 0.4


def test_write_region_layouts(tmp_path: Path):
    w = coastal.write_region(tmp_path / "long", seed=3, sites_per_estuary=5, layout="long")
    long = pd.read_csv(w["samples"], dtype=str, keep_default_na=False)
    assert len(long) == 3 * 20 and set(long["medium"]) == {"soil", "sediment", "water"}
    assert (long.loc[long.medium == "soil", "salinity_psu"] == "").all()
    readme = w["readme"].read_text()
    assert "seed 3" in readme and "simulated" in readme.lower()
    p = coastal.write_region(tmp_path / "per", seed=3, sites_per_estuary=5, layout="per_medium")
    soil = pd.read_csv(p["soil"], dtype=str, keep_default_na=False)
    assert "medium" not in soil.columns and len(soil) == 20
    pd.testing.assert_frame_equal(soil.reset_index(drop=True),
                                  long[long.medium == "soil"].drop(columns="medium").reset_index(drop=True))
    with pytest.raises(ValueError, match="layout"):
        coastal.write_region(tmp_path / "x", layout="wide")


def test_censoring_written_as_less_than_detection_limit():
    t = coastal.generate(seed=20251121)
    long = coastal.to_long(t)
    water = long[long.medium == "water"]
    for m, dl in coastal.WATER_DETECTION_LIMITS_UG_L.items():
        below = t["water"][m].to_numpy() < dl
        assert (water[m].str.startswith("<").to_numpy() == below).all()
        assert (water.loc[below, m] == f"<{dl:g}").all()


def test_demo_region_files_match_the_generator():
    """data/coastal_demo/ is exactly what write_region writes with the documented seed."""
    root = Path(__file__).resolve().parent.parent / "data" / "coastal_demo"
    if not (root / "samples.csv").is_file():
        pytest.skip("data/coastal_demo not present")
    expected = coastal.to_long(coastal.generate(seed=20251121, sites_per_estuary=26))
    got = pd.read_csv(root / "samples.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(got, expected.astype(str).reset_index(drop=True), check_dtype=False)
