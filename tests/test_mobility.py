"""Tests of hmlib.mobility (fractions, RAC, recovery, theory-guided model, scenario) and its demo region."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hmlib.mobility as mb
from hmlib.errors import DataError
from hmlib.stages.mobility import Options
from hmlib.synth import mobility as synth

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# RAC classes
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (0.0, "no risk"), (0.999, "no risk"), (1.0, "low risk"), (5.0, "low risk"), (10.0, "low risk"),
    (10.5, "medium risk"), (11.0, "medium risk"), (30.0, "medium risk"), (30.01, "high risk"),
    (31.0, "high risk"), (50.0, "high risk"), (50.01, "very high risk"), (100.0, "very high risk"),
])
def test_rac_class_boundaries(value, expected):
    """Classes of Perin et al. (1985) as tabulated by Jain (2004, doi:10.1016/j.watres.2003.10.042):
    <1 no, 1-10 low, 11-30 medium, 31-50 high, >50 very high; the gaps between the published
    integer limits are closed as documented in RAC_Perin1985.csv (10.5 -> medium, 50 -> high)."""
    assert mb.rac_class([value])[0] == expected


def test_rac_class_rejects_out_of_range_and_keeps_nan():
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        mb.rac_class([120.0])
    with pytest.raises(ValueError):
        mb.rac_class([-1.0])
    assert mb.rac_class([np.nan, 20.0]).tolist() == [None, "medium risk"]


def test_rac_table_partitions_and_broken_table_is_caught():
    """Every value on a fine grid of [0, 100] falls in exactly one class; a table with a gap raises."""
    x = np.linspace(0, 100, 100001)
    cls = mb.rac_class(x)
    assert all(c is not None for c in cls)
    t = mb.rac_class_table()
    assert t["source"].str.contains("Perin").all()
    broken = t.copy()
    broken.loc[broken["class"] == "medium risk", "lower"] = 12.0
    with pytest.raises(ValueError, match="partition"):
        mb.rac_class([11.0], table=broken)


# ------------------------------------------------------------------------------------------------
# indices and recovery
# ------------------------------------------------------------------------------------------------
def test_fractionation_indices_against_hand_calculation():
    """F = (2, 3, 1, 4) mg/kg: S = 10, MF1 = 20 %, MF12 = 50 %, RSP = (2+3+1)/4 = 1.5 (hand calculation);
    a zero residual gives an undefined RSP rather than infinity."""
    bcr = pd.DataFrame({"sample_id": ["a", "b"], "metal": ["Cd", "Cd"], "F1": [2.0, 1.0], "F2": [3.0, 1.0],
                        "F3": [1.0, 0.0], "F4": [4.0, 0.0]})
    ind = mb.fractionation_indices(bcr)
    r = ind.iloc[0]
    assert r.sum_mg_kg == pytest.approx(10.0)
    assert r.mf1_percent == pytest.approx(20.0)
    assert r.mf12_percent == pytest.approx(50.0)
    assert r.rsp == pytest.approx(1.5)
    assert r.rac_class == "medium risk"
    assert [r[f"p_{f}"] for f in mb.BCR_FRACTIONS] == pytest.approx([20, 30, 10, 40])
    assert np.isnan(ind.iloc[1].rsp) and ind.iloc[1].rac_class == "high risk"  # exactly 50 %
    assert bcr.shape == (2, 6)  # input not mutated


def test_recovery_outside_tolerance_is_reported():
    """Recovery = 100 * sum / total (hand values): 10/10 = 100 % ok, 10/20 = 50 % low, 10/8 = 125 % high,
    12/10 = 120 % exactly at a 20 % tolerance is accepted, and a pair without a total is 'no total'."""
    bcr = pd.DataFrame({"sample_id": list("abcde"), "metal": "Pb",
                        "F1": [1.0, 1.0, 1.0, 1.2, 1.0], "F2": [2.0, 2.0, 2.0, 2.4, 2.0],
                        "F3": [3.0, 3.0, 3.0, 3.6, 3.0], "F4": [4.0, 4.0, 4.0, 4.8, 4.0]})
    totals = pd.DataFrame({"sample_id": list("abcd"), "metal": "Pb", "total_mg_kg": [10.0, 20.0, 8.0, 10.0]})
    rec = mb.recovery_check(bcr, totals, tolerance_percent=20).set_index("sample_id")
    assert rec.loc["a", "recovery_percent"] == pytest.approx(100.0)
    assert rec.loc["b", "recovery_percent"] == pytest.approx(50.0)
    assert rec.loc["c", "recovery_percent"] == pytest.approx(125.0)
    assert rec["status"].to_dict() == {"a": "ok", "b": "low recovery", "c": "high recovery", "d": "ok",
                                       "e": "no total"}
    assert not rec.loc["b", "within_tolerance"] and rec.loc["a", "within_tolerance"]
    assert pd.isna(rec.loc["e", "within_tolerance"])
    strict = mb.recovery_check(bcr, totals, tolerance_percent=19.9).set_index("sample_id")
    assert strict.loc["d", "status"] == "high recovery"


def test_demo_region_bad_recoveries_are_found():
    """The four pairs the generator spoils (BAD_RECOVERY) and only those fail a 20 % tolerance."""
    d = synth.generate(seed=7, n_samples=60)
    fr = d["fractions"].rename(columns={"value": "value_mg_kg"})
    bcr = mb.to_bcr(fr)
    tot = d["samples"].melt(id_vars="sample_id", value_vars=list(synth.METALS), var_name="metal",
                            value_name="total_mg_kg")
    rec = mb.recovery_check(bcr, tot, tolerance_percent=20)
    bad = {(r.sample_id, r.metal) for r in rec[rec.status != "ok"].itertuples()}
    assert bad == {(f"M{i + 1:03d}", m) for i, m, _ in synth.BAD_RECOVERY}


# ------------------------------------------------------------------------------------------------
# reading fractions
# ------------------------------------------------------------------------------------------------
def _write(tmp_path, text):
    p = tmp_path / "fractions.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_read_fractions_reports_file_row_column_value(tmp_path):
    p = _write(tmp_path, "sample_id,metal,fraction,value,unit\n"
                         "S1,Cd,F1,0.1,mg/kg\n"       # row 2
                         "S1,Cd,F2,-0.2,mg/kg\n"      # row 3 negative
                         "S1,Cd,F9,0.1,mg/kg\n"       # row 4 unknown fraction
                         "S1,Cd,F3,abc,mg/kg\n"       # row 5 not a number
                         "S1,Cd,F4,0.3,furlongs\n"    # row 6 bad unit
                         "S1,Cd,F1,0.1,mg/kg\n")      # row 7 duplicate of row 2
    with pytest.raises(DataError) as ei:
        mb.read_fractions(p, scheme="bcr")
    issues = {(i.row, i.column): i for i in ei.value.issues}
    assert set(issues) == {(3, "value"), (4, "fraction"), (5, "value"), (6, "unit"), (7, "fraction")}
    assert issues[(3, "value")].value == "-0.2" and "negative" in issues[(3, "value")].message
    assert issues[(4, "fraction")].value == "F9"
    assert "first at row 2" in issues[(7, "fraction")].message
    assert all(i.file == str(p) for i in ei.value.issues)


def test_read_fractions_incomplete_set_unknown_sample_and_missing_column(tmp_path):
    p = _write(tmp_path, "sample_id,metal,fraction,value,unit\nS1,Cd,F1,0.1,mg/kg\nS1,Cd,F2,0.1,mg/kg\n")
    with pytest.raises(DataError, match=r"fractions \['F3', 'F4'\] missing"):
        mb.read_fractions(p)
    p2 = _write(tmp_path, "sample_id,metal,fraction,value,unit\nS9,Cd,F1,0.1,mg/kg\n")
    with pytest.raises(DataError, match="not found in the region"):
        mb.read_fractions(p2, known_samples=["S1"])
    p3 = _write(tmp_path, "sample_id,metal,fraction,value\nS1,Cd,F1,0.1\n")
    with pytest.raises(DataError) as ei:
        mb.read_fractions(p3)
    assert ei.value.issues[0].column == "unit" and ei.value.issues[0].row == 1


def test_tessier_mapped_to_bcr_with_unit_conversion(tmp_path):
    """Tessier T1+T2 -> F1, T3 -> F2, T4 -> F3, T5 -> F4 (Gleyzes et al. 2002); ug/kg converted to mg/kg
    (1000 ug/kg = 1 mg/kg); '<0.2' non-detect substituted by 0.5 x DL = 0.1."""
    p = _write(tmp_path, "sample_id,metal,fraction,value,unit\n"
                         "S1,Zn,exchangeable,1000,ug/kg\nS1,Zn,carbonate,2,mg/kg\nS1,Zn,fe_mn_oxide,3,mg/kg\n"
                         "S1,Zn,organic,<0.2,mg/kg\nS1,Zn,residual,5,mg/kg\n")
    fr = mb.read_fractions(p, scheme="tessier")
    assert set(fr.fraction) == set(mb.TESSIER_FRACTIONS)
    bcr = mb.to_bcr(fr, scheme="tessier").iloc[0]
    assert [bcr[f] for f in mb.BCR_FRACTIONS] == pytest.approx([3.0, 3.0, 0.1, 5.0])


# ------------------------------------------------------------------------------------------------
# model: monotone constraints and effect signs
# ------------------------------------------------------------------------------------------------
def test_monotone_constraint_holds_on_predictions():
    """y falls with x1 overall but with a superimposed wave (non-monotone truth, as in the XGBoost
    monotonic tutorial). With constraint x1:-1, predictions on a grid of x1 (others fixed) never rise;
    the unconstrained fit does rise somewhere, so the check can fail."""
    rng = np.random.default_rng(3)
    n = 300
    X = pd.DataFrame({"x1": rng.uniform(0, 1, n), "x2": rng.uniform(0, 1, n)})
    y = 50 - 30 * X.x1 + 8 * np.sin(10 * np.pi * X.x1) + 10 * X.x2 + rng.normal(0, 1, n)
    y = np.clip(y, 0, 100)
    kw = dict(seed=11, n_splits=3, n_estimators=150, max_depth=3, learning_rate=0.1)
    con = mb.fit_mobility_model(X, y, constraints={"x1": -1}, **kw)
    unc = mb.fit_mobility_model(X, y, constraints=None, **kw)
    grid = np.linspace(0, 1, 101)
    for x2 in (0.1, 0.5, 0.9):
        G = pd.DataFrame({"x1": grid, "x2": x2})
        assert (np.diff(con.predict(G)) <= 1e-9).all()
    rises = max(np.diff(unc.predict(pd.DataFrame({"x1": grid, "x2": x2}))).max() for x2 in (0.1, 0.5, 0.9))
    assert rises > 0.1
    assert mb.monotonicity_check(con, X, "x1")["holds"]
    assert not mb.monotonicity_check(unc, X, "x1", sign=-1)["holds"]


@pytest.fixture(scope="module")
def demo():
    d = synth.generate(seed=20240611, n_samples=200)
    fr = d["fractions"].rename(columns={"value": "value_mg_kg"})
    ind = mb.fractionation_indices(mb.to_bcr(fr))
    return d, ind


def _xy(d, ind, metal):
    g = ind[ind.metal == metal].merge(d["samples"], on="sample_id")
    X = g[["ph", "soc_percent", "clay_percent", "cec_cmol_kg"]].copy()
    X["total_mg_kg"] = g[metal].to_numpy()
    return X, mb.mobile_share(g).to_numpy()


@pytest.mark.parametrize("metal", ["Cd", "As"])
def test_unconstrained_model_recovers_known_ph_sign(demo, metal):
    """The generator's true pH coefficient is negative for Cd and positive for As (synth.TRUTH);
    an unconstrained model must find that sign in the partial dependence and in the SHAP values,
    and reach a useful cross-validated R2."""
    d, ind = demo
    X, y = _xy(d, ind, metal)
    m = mb.fit_mobility_model(X, y, metal=metal, seed=5, n_splits=3, n_estimators=150, learning_rate=0.1)
    true_sign = int(np.sign(synth.TRUTH.set_index("metal").loc[metal, "b_ph"]))
    assert mb.effect_sign(m, X, "ph")["sign"] == true_sign
    imp = mb.shap_importance(m, X).set_index("feature")
    assert imp.loc["ph", "direction"] == true_sign
    assert imp.loc["ph", "rank"] == 1
    assert m.cv_metrics["r2"].mean() > 0.4


def test_theory_constraints_and_comparison(demo):
    """Theory signs from the cited CSV: Cd pH -1 and total +1, As pH +1; overrides win; CV is seeded."""
    feats = ["ph", "soc_percent", "total_mg_kg"]
    assert mb.theory_constraints("Cd", feats, ph_feature="ph", total_feature="total_mg_kg") == {
        "ph": -1, "total_mg_kg": 1}
    assert mb.theory_constraints("As", feats, ph_feature="ph", total_feature="total_mg_kg") == {"ph": 1}
    assert mb.theory_constraints("Cd", feats, ph_feature="ph", total_feature=None,
                                 overrides={"ph": 0, "soc_percent": 1}) == {"soc_percent": 1}
    with pytest.raises(ValueError, match="not a model feature"):
        mb.theory_constraints("Cd", feats, ph_feature="ph", total_feature=None, overrides={"om": 1})
    d, ind = demo
    X, y = _xy(d, ind, "Zn")
    kw = dict(metal="Zn", constraints={"ph": -1}, seed=2, n_splits=3, n_estimators=80, learning_rate=0.1)
    con, unc, tab = mb.compare_constraints(X, y, **kw)
    assert list(tab.variant) == ["constrained", "unconstrained"]
    assert tab.loc[0, "max_theory_violation_pp"] == 0.0
    _, _, tab2 = mb.compare_constraints(X, y, **kw)
    pd.testing.assert_frame_equal(tab, tab2)


# ------------------------------------------------------------------------------------------------
# risk and scenario
# ------------------------------------------------------------------------------------------------
def test_mobilization_risk_hand_values():
    """Mobile = total x share / 100: 10 x 20 % = 2, 5 x 50 % = 2.5; at risk only strictly above T = 2."""
    r = mb.mobilization_risk([10.0, 5.0, np.nan], [20.0, 50.0, 10.0], threshold_mg_kg=2.0)
    assert r.mobile_mg_kg.iloc[:2].tolist() == pytest.approx([2.0, 2.5])
    assert r.at_risk.tolist() == [False, True, False]
    with pytest.raises(ValueError):
        mb.mobilization_risk([1.0], [120.0], threshold_mg_kg=1.0)


def test_soc_scenario_compounds():
    """4 per mille for 26 years: independent year-by-year loop gives 2 x 1.004^26 = 2.21874;
    (Minasny et al. 2017 define the target as +0.4 % of the stock per year)."""
    soc = 2.0
    for _ in range(26):
        soc = soc + soc * 0.004
    assert mb.soc_scenario([2.0], rate_per_year=0.004, years=26)[0] == pytest.approx(soc, rel=1e-12)
    assert soc == pytest.approx(2.21874, abs=1e-5)
    assert mb.soc_scenario([2.0], rate_per_year=0.004, years=0)[0] == 2.0


def test_scenario_change_moves_only_soc(demo):
    """Only SOC changes; with a positive true SOC effect (synth.TRUTH) the mean mobile share rises."""
    d, ind = demo
    X, y = _xy(d, ind, "Cd")
    m = mb.fit_mobility_model(X, y, metal="Cd", constraints={"ph": -1}, seed=1, n_splits=3, n_estimators=150,
                              learning_rate=0.1)
    sc = mb.scenario_change(m, X, soc_feature="soc_percent", total_mg_kg=X.total_mg_kg, threshold_mg_kg=0.2,
                            rate_per_year=0.01, years=30)
    assert sc.soc_scenario.to_numpy() == pytest.approx(X.soc_percent.to_numpy() * 1.01 ** 30)
    assert sc.delta_share_pp.mean() > 0
    assert sc.soc_beyond_training.any()
    base = m.predict(X)
    assert sc.share_base_percent.to_numpy() == pytest.approx(base)


# ------------------------------------------------------------------------------------------------
# demo region and options
# ------------------------------------------------------------------------------------------------
def test_demo_files_reproduce_generator():
    """data/mobility_demo was written by write_region(seed=20240611); the stored CSVs equal a fresh run."""
    folder = ROOT / "data" / "mobility_demo"
    d = synth.generate(seed=20240611, n_samples=200)
    for name in ("samples", "fractions", "grid", "truth_effects"):
        stored = pd.read_csv(folder / f"{name}.csv")
        pd.testing.assert_frame_equal(stored, d[name].reset_index(drop=True), check_dtype=False, rtol=1e-9)
    assert "generated" in (folder / "README.md").read_text()
    mb.read_fractions(folder / "fractions.csv", known_samples=list(d["samples"].sample_id),
                      known_metals=list(synth.METALS))


def test_stage_helpers_end_to_end():
    """The notebook's path on a small generated region: all metals modelled, thresholds from the 0.75
    quantile put 25 % of samples at risk today (by construction), scenario rows for samples and grid,
    per district and for the whole region, and a clear reason when the grid lacks a metal's total column."""
    d = synth.generate(seed=3, n_samples=80)
    fr = d["fractions"].rename(columns={"value": "value_mg_kg"})
    sites = d["samples"].set_index("sample_id").assign(x=lambda t: t.x_km, y=lambda t: t.y_km,
                                                        group=lambda t: t.district)
    ind = mb.fractionation_indices(mb.to_bcr(fr)).merge(
        mb.totals_long(sites[list(synth.METALS)]), on=["sample_id", "metal"])
    grid = d["grid"].assign(x=lambda t: t.x_km, y=lambda t: t.y_km)
    o = Options(fractions="f.csv", ph_feature="ph", soc_feature="soc_percent", n_splits=3, n_estimators=40,
                           grid_total_columns={m: f"{m}_total" for m in synth.METALS if m != "As"})
    feats = mb.resolve_features(o, ["ph", "soc_percent", "clay_percent", "cec_cmol_kg"], [], sites)
    res = mb.fit_all(ind, sites, features=feats, options=o, seed=9)
    assert set(res.models) == set(synth.METALS) and not res.skipped
    assert res.monotonicity["holds"].all()
    assert len(res.comparison) == 2 * len(synth.METALS)
    thr = mb.risk_thresholds(res, options=o)
    summary, cells, notes = mb.scenario_tables(res, sites=sites, grid=grid, options=o, thresholds=thr,
                                               grid_area_column="district")
    assert set(summary[summary.metal == "Cd"].area) == {"whole region", "west", "centre", "east"}
    cd_grid = summary[(summary.metal == "Cd") & (summary.domain == "grid")].set_index("area")
    assert cd_grid.loc[["west", "centre", "east"], "n"].sum() == cd_grid.loc["whole region", "n"] == len(grid)
    summary = summary[summary.area == "whole region"]
    s = summary.set_index(["metal", "domain"])
    assert s.loc[("Cd", "samples"), "at_risk_base_percent"] == pytest.approx(25.0, abs=1.5)
    assert ("Cd", "grid") in s.index and ("As", "grid") not in s.index
    assert "grid_total_columns" in notes["As"]
    assert len(cells[(cells.metal == "Cd") & (cells.domain == "grid")]) == len(grid)
    text = mb.results_text(ind, res.comparison, res.importance, summary, horizon_years=o.horizon_years)
    assert "Cd" in text and "grid cells" in text and f"{o.horizon_years} years" in text
    with pytest.raises(ValueError, match="not numeric sample covariates"):
        mb.resolve_features(Options(features=["om"]), ["ph"], [], sites)


def test_options_validate():
    o = Options(fractions="data/x.csv", monotone_constraints={"Cd": {"ph": -1}})
    assert o.scheme == "bcr" and o.soc_increase_per_year == 0.004
    with pytest.raises(Exception, match="-1, 0 or 1"):
        Options(monotone_constraints={"Cd": {"ph": 2}})
    with pytest.raises(ValueError, match="must be > 0"):
        Options(risk_threshold_mg_kg={"Cd": 0.0})


# ------------------------------------------------------------------------------------------------
# issue 17: skill before interpretation, truth recovery against the generator
# ------------------------------------------------------------------------------------------------
def _demo_stage_inputs(d):
    fr = d["fractions"].rename(columns={"value": "value_mg_kg"})
    sites = d["samples"].set_index("sample_id").assign(x=lambda t: t.x_km, y=lambda t: t.y_km,
                                                        group=lambda t: t.district)
    ind = mb.fractionation_indices(mb.to_bcr(fr)).merge(
        mb.totals_long(sites[list(synth.METALS)]), on=["sample_id", "metal"])
    return sites, ind


def test_models_recover_the_generators_ph_effect():
    """Checked against the generator's known truth (synth.true_effects: average marginal effect of pH on the F1
    share, from the true logistic coefficients and true shares): under spatial-block cross-validation every metal
    has skill, the unconstrained model finds the sign of the pH effect for all five metals (negative for the
    cations, positive for As), and its partial-dependence slope is within a factor 2 of the true effect."""
    d = synth.generate(seed=20240611, n_samples=200)
    sites, ind = _demo_stage_inputs(d)
    o = Options(fractions="f.csv", ph_feature="ph", soc_feature="soc_percent", n_estimators=150)
    res = mb.fit_all(ind, sites, features=["ph", "soc_percent", "clay_percent", "cec_cmol_kg"], options=o,
                     seed=20240611)
    assert "spatial-block" in res.validation and res.no_skill == []
    rec = mb.effect_truth_recovery(res, d["truth_effects"])
    ph = rec[rec.feature == "ph"].set_index("metal")
    assert ph["sign_recovered"].all() and len(ph) == 5
    ratio = ph["recovered_unconstrained_pp_per_unit"] / ph["true_effect_pp_per_unit"]
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio
    assert rec.loc[rec.true_sign == 0, "sign_recovered"].isna().all()  # CEC has no true effect: not scored
    text = mb.results_text(ind, res.comparison, res.importance, None, horizon_years=26, validation=res.validation,
                           no_skill=res.no_skill, truth=rec)
    assert text.index("skill first") < text.index("most important predictor") < text.index("Known truth")


def test_pure_noise_target_has_no_skill_and_no_drivers():
    """Checked against a seeded generator whose mobile share is pure noise (independent of every predictor): the
    spatial-block cross-validated R2 is <= 0, the metal is listed without skill, the results name no driver for it
    and its scenario is withheld."""
    rng = np.random.default_rng(4)
    n = 150
    ids = [f"N{i:03d}" for i in range(n)]
    sites = pd.DataFrame({"x": rng.uniform(0, 10, n), "y": rng.uniform(0, 10, n), "ph": rng.uniform(4, 8, n),
                          "soc": rng.uniform(0.5, 5, n)}, index=pd.Index(ids, name="sample_id"))
    F = rng.dirichlet([2, 2, 2, 4], size=n) * 100
    ind = mb.fractionation_indices(pd.DataFrame({"sample_id": ids, "metal": "Cd", "F1": F[:, 0], "F2": F[:, 1],
                                                 "F3": F[:, 2], "F4": F[:, 3]}))
    ind["total_mg_kg"] = rng.uniform(0.2, 2, n)
    o = Options(fractions="f.csv", ph_feature="ph", soc_feature="soc", n_estimators=60)
    res = mb.fit_all(ind, sites, features=["ph", "soc"], options=o, seed=1)
    assert res.no_skill == ["Cd"]
    thr = mb.risk_thresholds(res, options=o)
    summary, cells, notes = mb.scenario_tables(res, sites=sites, grid=None, options=o, thresholds=thr)
    assert summary.empty and "no cross-validated skill" in notes["Cd"]
    text = mb.results_text(ind, res.comparison, res.importance, None, horizon_years=26, validation=res.validation,
                           no_skill=res.no_skill)
    assert "no transferable skill" in text and "most important predictor" not in text


def test_check_names_the_key_the_value_and_the_expectation(tmp_path):
    """check() against the contract's format (stages.<stage>.<key>: got ...; expected ...) on the demo region with
    a missing fractions file, a predictor that is not a covariate and a grid column that does not exist."""
    from hmlib.context import open_stage
    from hmlib.stages import mobility as stage

    ctx = open_stage("mobility", params_file=ROOT / "params" / "mobility_demo.yml", output_dir=tmp_path,
                     overrides={"fractions": "data/mobility_demo/none.csv", "features": ["ph", "om"],
                                "grid_total_columns": {"Cd": "Cd_nope"}})
    problems = stage.check(ctx)
    assert any(p.startswith("stages.mobility.fractions: got 'data/mobility_demo/none.csv'; expected") for p in problems)
    assert any(p.startswith("stages.mobility.features: got ['ph', 'om']; expected") for p in problems)
    assert any(p.startswith("stages.mobility.grid_total_columns: got {'Cd': 'Cd_nope'}; expected") for p in problems)
    ok = open_stage("mobility", params_file=ROOT / "params" / "mobility_demo.yml", output_dir=tmp_path)
    assert stage.check(ok) == []
