"""Tests of hmlib.crossmedia: Kd with unit conversion, group summaries, drivers, both data layouts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from hmlib.crossmedia import (
    default_drivers,
    default_sem_model,
    kd_drivers,
    kd_group_summary,
    kd_group_tests,
    kd_l_per_kg,
    kd_table,
    partition_coefficient,
    site_metals,
    site_table,
)
from hmlib.errors import UnitError
from hmlib.io import load_region
from hmlib.params import load_params
from hmlib.stages.crossmedia import Options as CrossmediaOptions
from hmlib.synth import coastal


def test_partition_coefficient_hand_computed():
    """Kd = Cs/Cw x 100 (Wu et al. 2025, eq. 1), values computed by hand:
    2.0 mg/kg / 0.5 ug/L x 100 = 400; 25 / 1.25 x 100 = 2000; 0.3 / 0.012 x 100 = 2500."""
    kd = partition_coefficient([2.0, 25.0, 0.3], [0.5, 1.25, 0.012])
    np.testing.assert_allclose(kd, [400.0, 2000.0, 2500.0], rtol=1e-12)


def test_partition_coefficient_undefined_and_bad_input():
    kd = partition_coefficient([1.0, 1.0, np.nan], [0.0, np.nan, 1.0])
    assert np.isnan(kd).all()
    with pytest.raises(ValueError, match="same shape"):
        partition_coefficient([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        partition_coefficient([-1.0], [1.0])


def test_kd_table_converts_units():
    """Concentrations given in ug/kg and mg/L are converted before Eq. 1. By hand:
    2000 ug/kg = 2 mg/kg; 0.0005 mg/L = 0.5 ug/L; Kd = 2 / 0.5 x 100 = 400, log10 = 2.60206.
    In L/kg (independent route): 2 mg/kg / 0.0005 mg/L = 4000 L/kg = 10 x 400."""
    solid = pd.DataFrame({"Cd": [2000.0, 300.0]}, index=["A", "B"])
    water = pd.DataFrame({"Cd": [0.0005, 0.000012]}, index=["A", "B"])
    kd = kd_table(solid, water, solid_unit="ug/kg", water_unit="mg/L", groups=pd.Series({"A": "g1", "B": "g2"}))
    assert list(kd.columns) == ["site_id", "metal", "kd", "log10_kd", "group"]
    np.testing.assert_allclose(kd["kd"], [400.0, 2500.0], rtol=1e-12)
    np.testing.assert_allclose(kd["log10_kd"], [2.6020599913, 3.3979400087], rtol=1e-9)
    assert kd["group"].tolist() == ["g1", "g2"]
    np.testing.assert_allclose(kd_l_per_kg(kd["kd"].iloc[0]), 2.0 / 0.0005)
    # the same data in canonical units give the same Kd
    same = kd_table(solid / 1000, water * 1000, solid_unit="mg/kg", water_unit="ug/L")
    np.testing.assert_allclose(same["kd"], kd["kd"], rtol=1e-12)


def test_kd_table_rejects_swapped_units():
    s = pd.DataFrame({"Pb": [10.0]}, index=["A"])
    with pytest.raises(UnitError, match="solid_unit"):
        kd_table(s, s, solid_unit="ug/L", water_unit="ug/L")
    with pytest.raises(UnitError, match="water_unit"):
        kd_table(s, s, solid_unit="mg/kg", water_unit="mg/kg")
    with pytest.raises(UnitError):
        kd_table(s, s, solid_unit="furlongs", water_unit="ug/L")
    with pytest.raises(ValueError, match="no metal in common"):
        kd_table(s, pd.DataFrame({"Cd": [1.0]}, index=["A"]), solid_unit="mg/kg", water_unit="ug/L")


def _toy_kd(rng, n=40):
    rows = []
    for metal, shift in (("Cd", 2.0), ("Pb", 3.5)):
        for g, dg in (("a", 0.0), ("b", 0.5)):
            v = shift + dg + rng.normal(0, 0.2, n)
            rows.append(pd.DataFrame({"site_id": [f"{g}{i}" for i in range(n)], "metal": metal, "kd": 10 ** v,
                                      "log10_kd": v, "group": g}))
    return pd.concat(rows, ignore_index=True)


def test_kd_group_summary_and_tests():
    """Group means/medians against numpy; Kruskal-Wallis against scipy on the same groups."""
    from scipy import stats

    rng = np.random.default_rng(3)
    kd = _toy_kd(rng)
    summ = kd_group_summary(kd)
    row = summ[(summ.metal == "Cd") & (summ.group == "b")].iloc[0]
    v = kd[(kd.metal == "Cd") & (kd.group == "b")]["log10_kd"].to_numpy()
    assert row["n"] == 40
    np.testing.assert_allclose([row["mean"], row["median"], row["sd"]], [v.mean(), np.median(v), v.std(ddof=1)])
    assert set(summ.group) == {"a", "b", "all"}
    assert summ[(summ.metal == "Pb") & (summ.group == "all")]["n"].item() == 80
    tests = kd_group_tests(kd)
    a = kd[(kd.metal == "Cd") & (kd.group == "a")]["log10_kd"]
    h, p = stats.kruskal(a, v)
    np.testing.assert_allclose(tests.loc[tests.metal == "Cd", ["H", "p"]].to_numpy().ravel(), [h, p])
    assert (tests["p"] < 1e-6).all()  # a 0.5 log-unit shift with sd 0.2 is unmistakable


def test_kd_drivers_standardized_betas_against_normal_equations():
    """Standardized betas equal R_xx^{-1} r_xy (normal equations on correlations), computed here
    independently of statsmodels; Spearman rho equals the Pearson correlation of ranks."""
    rng = np.random.default_rng(11)
    n = 300
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    x2 = 0.4 * x1 + np.sqrt(1 - 0.16) * x2
    y = 0.6 * x1 - 0.5 * x2 + rng.normal(0, 0.6, n)
    sites = [f"S{i}" for i in range(n)]
    kd = pd.DataFrame({"site_id": sites, "metal": "Cd", "kd": 10 ** y, "log10_kd": y, "group": "g"})
    drivers = pd.DataFrame({"salinity": x1 * 3 + 20, "ph": x2 * 0.3 + 8}, index=sites)
    out = kd_drivers(kd, drivers)
    r = np.corrcoef(np.c_[drivers.to_numpy(), y], rowvar=False)
    beta = np.linalg.solve(r[:2, :2], r[:2, 2])
    np.testing.assert_allclose(out["beta_std"], beta, rtol=1e-8)
    rank_r = pd.Series(y).rank().corr(pd.Series(x1).rank())
    np.testing.assert_allclose(out.loc[out.variable == "salinity", "spearman_rho"].item(), rank_r, rtol=1e-10)
    assert (out["beta_p"] < 1e-6).all()
    np.testing.assert_allclose(out["vif"], 1 / (1 - r[0, 1] ** 2), rtol=1e-8)
    assert out["r2"].iloc[0] == pytest.approx(beta @ r[:2, 2], rel=1e-8)


def test_kd_drivers_too_few_sites_gives_nan_not_error():
    kd = pd.DataFrame({"site_id": ["a", "b", "c"], "metal": "Cd", "kd": [1.0, 2, 3], "log10_kd": [0, .3, .5],
                       "group": "g"})
    out = kd_drivers(kd, pd.DataFrame({"s": [1.0, 2, 4], "t": [3.0, 1, 2]}, index=["a", "b", "c"]))
    assert out["beta_std"].isna().all()
    with pytest.raises(ValueError, match="Kd table"):
        kd_drivers(kd.drop(columns="group"), pd.DataFrame({"s": [1.0, 2, 3]}, index=["a", "b", "c"]))


def test_options_defaults_and_validation():
    o = CrossmediaOptions()
    assert o.solid_medium == "sediment" and o.water_medium == "water" and o.sem_model is None
    with pytest.raises(ValidationError):
        CrossmediaOptions(sem_model="   ")
    with pytest.raises(ValidationError):
        CrossmediaOptions(sem_refine_threshold=1.5)


# ---------------------------------------------------------------------------------------------
# both data layouts through the loader
def _params(tmp_path, samples, *, water_unit="ug/L", medium_column=None):
    p = {
        "region": {"id": "coastal_test", "title": "coastal test"},
        "data": {"samples": samples, "id_column": "sample_id", "site_column": "site_id", "group_column": "estuary",
                 "x_column": "x_m", "y_column": "y_m", "crs": "local", "coordinate_unit": "m",
                 "coordinate_bounds": [0.0, 0.0, 80000.0, 25000.0],
                 "covariates": ["om_pct", "ph", "do_mg_l", "salinity_psu"]},
        "media": {"soil": {"unit": "mg/kg"}, "sediment": {"unit": "mg/kg"}, "water": {"unit": water_unit}},
        "metals": {m: m for m in coastal.METALS},
        "references": {"background": "ChinaSoil_CNEMC1990"},
        "stages": {"data_quality": {}},
    }
    if medium_column:
        p["data"]["medium_column"] = medium_column
    (tmp_path / "params").mkdir(exist_ok=True)
    path = tmp_path / "params" / "r.yml"
    path.write_text(yaml.safe_dump(p), encoding="utf-8")
    return load_params(path)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("coastal")
    coastal.write_region(root / "data" / "long", seed=5, sites_per_estuary=8, layout="long")
    coastal.write_region(root / "data" / "per", seed=5, sites_per_estuary=8, layout="per_medium")
    # a copy of the per-medium files with water in mg/L (values / 1000, detection limits too)
    mgl = root / "data" / "mgl"
    mgl.mkdir(parents=True)
    for m in ("soil", "sediment"):
        (mgl / f"{m}.csv").write_text((root / "data" / "per" / f"{m}.csv").read_text())
    w = pd.read_csv(root / "data" / "per" / "water.csv", dtype=str, keep_default_na=False)
    for metal in coastal.METALS:
        w[metal] = [f"<{float(v[1:]) / 1000:.6g}" if v.startswith("<") else f"{float(v) / 1000:.6g}"
                    for v in w[metal]]
    w.to_csv(mgl / "water.csv", index=False)
    long = load_region(_params(root, "data/long/samples.csv", medium_column="medium"))
    per = load_region(_params(root, {m: f"data/per/{m}.csv" for m in ("soil", "sediment", "water")}))
    mg = load_region(_params(root, {m: f"data/mgl/{m}.csv" for m in ("soil", "sediment", "water")}, water_unit="mg/L"))
    truth = pd.read_csv(root / "data" / "long" / "truth_log10_kd.csv")
    return long, per, mg, truth


def _kd(data):
    t = site_table(data)
    return kd_table(site_metals(data, "sediment"), site_metals(data, "water"), solid_unit=data.unit("sediment"),
                    water_unit=data.unit("water"), groups=t["group"])


def test_both_layouts_give_the_same_kd_and_recover_the_truth(layouts):
    """Long (one file, medium column) and one-file-per-medium layouts load to the same Kd; water
    reported in mg/L is converted by the loader (hmlib.units) to ug/L and gives the same Kd; where the
    water value is not a non-detect, log10 Kd equals the generator's true value up to the 4
    significant digits written to the CSV (|error| <= 2 x log10(1 + 5e-4) ~ 4.3e-4)."""
    long, per, mg, truth = layouts
    k_long, k_per, k_mg = _kd(long), _kd(per), _kd(mg)
    pd.testing.assert_frame_equal(k_long, k_per)
    np.testing.assert_allclose(k_mg["kd"], k_long["kd"], rtol=2e-3)
    assert mg.unit("water") == "ug/L"
    cens = long.concentrations.query("medium == 'water'").assign(
        site_id=lambda d: d["sample_id"].str[:4])[["site_id", "metal", "censored"]]
    m = k_long.merge(truth, on=["site_id", "metal"], suffixes=("", "_true")).merge(cens, on=["site_id", "metal"])
    ok = m[~m["censored"]]
    assert len(ok) > 0.9 * len(m)
    assert (ok["log10_kd"] - ok["log10_kd_true"]).abs().max() < 4.5e-4
    assert set(k_long["group"]) == set(coastal.ESTUARIES)


def test_site_table_pairs_media_by_site(layouts):
    long, *_ = layouts
    t = site_table(long, log10=True)
    assert len(t) == 32 and t.index.is_unique
    for col in ("Cd_soil", "Cd_sediment", "Cd_water", "om_pct_sediment", "salinity_psu_water", "ph_water"):
        assert col in t.columns
    assert "salinity_psu_soil" not in t.columns  # not measured in soil: left out, not a column of NaN
    raw = long.wide("water")["Pb"].iloc[0]
    assert t["Pb_water"].iloc[0] == pytest.approx(np.log10(raw))
    assert t.attrs["units"]["Pb_water"] == "log10 ug/L"
    drv = default_drivers(t, covariates=["om_pct", "ph", "do_mg_l", "salinity_psu"], media=["water", "sediment"])
    assert drv == ["ph_water", "do_mg_l_water", "salinity_psu_water", "om_pct_sediment", "ph_sediment"]
    model = default_sem_model(t, media=["soil", "sediment", "water"], metals=["Cd", "Pb", "Cu"])
    assert "sediment_sys ~ soil_sys" in model and "water_sys =~ Cd_water + Pb_water + Cu_water" in model


def test_site_metals_rejects_unknown_medium(layouts):
    long, *_ = layouts
    with pytest.raises(ValueError, match="medium 'dust'"):
        site_metals(long, "dust")


@pytest.mark.slow
def test_stage_end_to_end_two_and_one_media(tmp_path):
    """The notebook runs through hmlib's runner on a small tri-media region (per-medium files) and
    writes the exact tables; a one-medium region is skipped with the registry's reason."""
    from hmlib.runner import run_region

    coastal.write_region(tmp_path / "data" / "r", seed=2, sites_per_estuary=6, layout="per_medium")
    p = _params(tmp_path, {m: f"data/r/{m}.csv" for m in ("soil", "sediment", "water")})
    raw = yaml.safe_load(open(p.path))
    raw["stages"] = {"crossmedia": {"sem_model": "soil_sys =~ Pb_soil + Cu_soil + Zn_soil\n"
                                                  "sediment_sys =~ Pb_sediment + Cu_sediment + Zn_sediment\n"
                                                  "sediment_sys ~ soil_sys"}}
    p.path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    run_region(str(p.path), stages=["crossmedia"], render=False, reports_dir=tmp_path / "reports", quiet=True)
    out = tmp_path / "reports" / "coastal_test" / "tables"
    assert list(pd.read_csv(out / "kd.csv").columns) == ["site_id", "metal", "kd", "log10_kd", "group"]
    assert list(pd.read_csv(out / "sem_estimates.csv").columns) == ["lhs", "op", "rhs", "estimate", "std_estimate",
                                                                   "se", "p"]
    fit = pd.read_csv(out / "sem_fit.csv")
    assert list(fit.columns) == ["index", "value"]
    assert {"chi2", "df", "p", "CFI", "TLI", "RMSEA", "RMSEA_ci90_lower", "RMSEA_ci90_upper", "SRMR",
            "AIC"} <= set(fit["index"])
    assert (out / "kd_drivers.csv").is_file()
    one = dict(raw, media={"soil": {"unit": "mg/kg"}}, region={"id": "one_medium", "title": "one medium"})
    one["data"] = dict(raw["data"], samples="data/r/soil.csv")
    (tmp_path / "params" / "one.yml").write_text(yaml.safe_dump(one), encoding="utf-8")
    res = run_region(str(tmp_path / "params" / "one.yml"), stages=["crossmedia"], render=False,
                     reports_dir=tmp_path / "reports", quiet=True)
    frag = (tmp_path / "reports" / "one_medium" / "fragments" / "crossmedia.json").read_text()
    assert "one medium" in frag and "two or more paired media" in frag
    assert res is not None


def test_kd_drivers_slopes_and_intervals_against_least_squares():
    """The unscaled slopes equal numpy's least-squares solution, and their 95 % intervals equal
    b ± t(0.975, n - p - 1) SE(b) with SE from sigma² (X'X)⁻¹, computed here without statsmodels."""
    from scipy import stats as st

    rng = np.random.default_rng(5)
    n = 120
    sal = rng.uniform(2, 32, n)
    ph = 7.3 + 0.02 * sal + rng.normal(0, 0.15, n)
    y = 2.3 - 0.035 * (sal - 18) + 0.30 * (ph - 8) + rng.normal(0, 0.12, n)
    sites = [f"S{i}" for i in range(n)]
    kd = pd.DataFrame({"site_id": sites, "metal": "Cd", "kd": 10 ** y, "log10_kd": y, "group": "g"})
    out = kd_drivers(kd, pd.DataFrame({"sal": sal, "ph": ph}, index=sites)).set_index("variable")
    X = np.c_[np.ones(n), sal, ph]
    b, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ b
    s2 = resid @ resid / (n - 3)
    se = np.sqrt(np.diag(s2 * np.linalg.inv(X.T @ X)))
    t = st.t.ppf(0.975, n - 3)
    np.testing.assert_allclose(out.loc[["sal", "ph"], "slope"], b[1:], rtol=1e-9)
    np.testing.assert_allclose(out.loc[["sal", "ph"], "slope_ci_low"], b[1:] - t * se[1:], rtol=1e-8)
    np.testing.assert_allclose(out.loc[["sal", "ph"], "slope_ci_high"], b[1:] + t * se[1:], rtol=1e-8)


def test_effect_truth_recovery_on_the_coastal_generator():
    """Against the generator's known slopes (hmlib.synth.coastal.kd_effects): the salinity slope of Cd
    is recovered with an interval that contains the truth and excludes 0, DO (true slope 0) gets no
    sign score, and the reader's table summarises the other metals in one row per driver."""
    from hmlib.crossmedia import effect_truth_display, effect_truth_recovery

    tables = coastal.generate(seed=20251121)
    sites = tables["sites"].set_index("site_id")
    water, sed = tables["water"].set_index("site_id"), tables["sediment"].set_index("site_id")
    kd = kd_table(sed[list(coastal.METALS)], water[list(coastal.METALS)], solid_unit="mg/kg", water_unit="ug/L",
                  groups=sites["group"])
    drivers = pd.DataFrame({"salinity_psu_water": water["salinity_psu"], "ph_water": water["ph"],
                            "do_mg_l_water": water["do_mg_l"], "om_pct_sediment": sed["om_pct"]})
    rec = effect_truth_recovery(kd_drivers(kd, drivers), coastal.kd_effects()).set_index(["metal", "variable"])
    cd = rec.loc[("Cd", "salinity_psu_water")]
    assert cd["true_slope"] == pytest.approx(-0.035)
    assert cd["within_ci"] and cd["sign_recovered"] is True
    assert rec.xs("do_mg_l_water", level="variable")["sign_recovered"].isna().all()
    assert rec["within_ci"].mean() >= 0.8  # 95 % intervals: most contain the truth
    disp = effect_truth_display(rec.reset_index())
    assert len(disp) == 4 + 4 and (disp["Metal"].iloc[:4] == "Cd").all()


def test_sem_model_table_reads_lavaan_statements():
    """Each statement of a lavaan model becomes one row with its part and the variables in words."""
    from hmlib.crossmedia import sem_model_table

    t = sem_model_table("soil_sys =~ Pb_soil + om_pct_soil\n# comment\nCd_water ~ salinity_psu_water\n"
                        "Pb_soil ~~ Pb_sediment\n")
    assert list(t["part"]) == ["measurement", "regression", "covariance"]
    assert t.loc[0, "left"] == "the soil system" and t.loc[0, "right"] == "Pb in soil, soil organic matter"
    assert t.loc[1, "right"] == "water salinity"
