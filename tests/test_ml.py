"""Tests of hmlib.ml: XGBoost risk drivers, SHAP, pruning, selection and spatial cross-validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlib import ml


def _driver_data(seed: int = 3, n: int = 160):
    """Known truth: y = 2.5 * driver + 0.5 * [land == 'a'] + N(0, 0.5^2); 'driver_copy' = driver + N(0, 0.15^2)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.uniform(0, 10, n), "y": rng.uniform(0, 10, n), "driver": rng.normal(size=n),
        "noise1": rng.normal(size=n), "noise2": rng.lognormal(size=n), "land": rng.choice(["a", "b", "c"], n),
    })
    df["driver_copy"] = df["driver"] + rng.normal(scale=0.15, size=n)
    target = 2.5 * df["driver"] + 0.5 * (df["land"] == "a") + rng.normal(scale=0.5, size=n)
    X, levels = ml.encode_features(df, numeric=["x", "y", "driver", "noise1", "noise2", "driver_copy"],
                                   categorical=["land"])
    return df, X, levels, target.to_numpy()


def test_known_driver_is_selected_and_ranked_first_by_shap():
    """Generated data with a known driver (truth by construction): the driver survives pruning
    (its noisy copy, |r| ~ 0.99, is pruned), is selected, and has the largest mean |SHAP|."""
    df, X, levels, target = _driver_data()
    fit = ml.fit_driver_pipeline(X, target, seed=11, n_search=2, rf_trees=50)
    pr = fit.pruning.set_index("feature")
    assert pr.loc["driver", "cluster"] == pr.loc["driver_copy", "cluster"]
    assert pr.loc["driver", "kept"] and not pr.loc["driver_copy", "kept"]
    assert "driver" in fit.selected
    sv = ml.shap_values(fit.xgb, fit.transform(X))
    imp = ml.importance_table(fit, sv)
    assert imp.iloc[0]["feature"] == "driver"
    assert list(imp.columns) == ["feature", "gain", "mean_abs_shap", "selected", "spatial"]
    assert imp["gain"].sum() == pytest.approx(1.0)
    # noise features carry at most a small share of the gain
    assert imp.set_index("feature").loc["noise1", "gain"] < 0.05


def test_shap_local_accuracy():
    """SHAP local accuracy (Lundberg et al. 2020): expected value + sum of SHAP values = the model's prediction."""
    df, X, levels, target = _driver_data(n=80)
    fit = ml.fit_driver_pipeline(X, target, seed=2, n_search=1, rf_trees=20)
    Z = fit.transform(X)
    sv = ml.shap_values(fit.xgb, Z)
    np.testing.assert_allclose(sv.sum(axis=1) + sv.attrs["expected_value"], fit.xgb.predict(Z.to_numpy(float)),
                               atol=1e-4)


def test_spatial_block_cv_error_not_lower_than_random_cv_on_autocorrelated_data():
    """Target = smooth spatial field (range ~ 1/3 of the domain) + small noise, predictors the coordinates
    and a pure-noise covariate: random folds interpolate between neighbours, spatial blocks must
    extrapolate, so the block CV RMSE must be at least the random CV RMSE (Roberts et al. 2017)."""
    rng = np.random.default_rng(5)
    n = 120
    x, y = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    field = np.sin(x / 16.0) + np.cos(y / 13.0) + 0.5 * np.sin((x + y) / 9.0)
    target = field + rng.normal(scale=0.1, size=n)
    df = pd.DataFrame({"x": x, "y": y, "noise": rng.normal(size=n)})
    X, _ = ml.encode_features(df, numeric=["x", "y", "noise"], categorical=[])
    folds = {"random": ml.random_folds(n, n_folds=5, seed=1),
             "spatial_block": ml.spatial_block_folds(x, y, n_folds=5, n_blocks=15, seed=1)[0]}
    cv = ml.cross_validate(X, target, folds, seed=1, n_search=1, rf_trees=30)
    s = ml.summarize_cv(cv.metrics).set_index(["model", "cv_scheme"])
    for model in ("xgb", "rf"):
        assert s.loc[(model, "spatial_block"), "rmse_mean"] >= s.loc[(model, "random"), "rmse_mean"]
    # the table has exactly the documented columns, one row per model x scheme x fold
    assert list(cv.metrics.columns) == ["model", "cv_scheme", "fold", "r2", "rmse", "mae"]
    assert len(cv.metrics) == 4 * 2 * 5  # xgb, rf, linear and the training-mean baseline
    # every sample is predicted exactly once per scheme
    assert cv.predictions.groupby("cv_scheme")["row"].apply(lambda r: sorted(r) == list(range(n))).all()


def test_spatial_block_folds_keep_blocks_whole_and_balanced():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, 200), rng.uniform(0, 1, 200)
    fold, block = ml.spatial_block_folds(x, y, n_folds=5, n_blocks=20, seed=4)
    assert set(fold) == set(range(5))
    # no block is split across folds
    assert (pd.DataFrame({"f": fold, "b": block}).groupby("b")["f"].nunique() == 1).all()
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= np.bincount(block).max()
    with pytest.raises(ValueError, match="n_blocks"):
        ml.spatial_block_folds(x, y, n_folds=5, n_blocks=3, seed=1)


def test_prune_correlated_keeps_most_informative_member():
    """Hand-built case: b = a + tiny noise (|r| ~ 1), y depends on b only -> b kept, a pruned; c independent kept."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=100)
    b = a + rng.normal(scale=0.05, size=100)
    c = rng.normal(size=100)
    y = np.exp(b) + rng.normal(scale=0.01, size=100)  # monotone in b: Spearman |rho| of b ~ 1
    out = ml.prune_correlated(pd.DataFrame({"a": a, "b": b, "c": c}), y, threshold=0.8).set_index("feature")
    assert out.loc["a", "cluster"] == out.loc["b", "cluster"] != out.loc["c", "cluster"]
    assert out.loc["b", "kept"] and not out.loc["a", "kept"] and out.loc["c", "kept"]
    # threshold 1.0: nothing is merged unless perfectly correlated
    out1 = ml.prune_correlated(pd.DataFrame({"a": a, "b": b, "c": c}), y, threshold=1.0)
    assert out1["kept"].all()


def test_standardizer_matches_independent_calculation():
    """x' = (x - mean)/sd (Wu et al. 2025 eq. 3-2), checked against numpy with ddof=1."""
    X = pd.DataFrame({"u": [1.0, 2.0, 4.0, 8.0], "v": [3.0, 3.5, 2.0, 0.5]})
    Z = ml.fit_standardizer(X).transform(X)
    for c in X:
        v = X[c].to_numpy()
        np.testing.assert_allclose(Z[c], (v - v.mean()) / v.std(ddof=1))
    with pytest.raises(ValueError, match="constant"):
        ml.fit_standardizer(pd.DataFrame({"k": [1.0, 1.0, 1.0]}))


def test_selection_rules():
    shares = pd.Series({"a": 0.6, "b": 0.3, "c": 0.095, "d": 0.005})
    assert ml.select_features(shares, selection="gain_share", min_gain_share=0.01) == ["a", "b", "c"]
    assert ml.select_features(shares, selection="gain_share", min_gain_share=0.01, top_k=2) == ["a", "b"]
    assert ml.select_features(shares, selection="top_k", top_k=3) == ["a", "b", "c"]
    assert ml.select_features(pd.Series({"a": 0.0, "b": 0.0}), min_gain_share=0.01) == ["a"]


def test_regression_metrics_hand_values():
    """obs (1,2,3,4), pred (1.5,2,2.5,5): SSE 1.5, SST 5 -> R2 0.7; RMSE sqrt(1.5/4); MAE 0.5 (hand calculation)."""
    m = ml.regression_metrics([1, 2, 3, 4], [1.5, 2, 2.5, 5])
    assert m["r2"] == pytest.approx(0.7)
    assert m["rmse"] == pytest.approx(np.sqrt(1.5 / 4))
    assert m["mae"] == pytest.approx(0.5)


def test_encode_features_reuses_training_levels():
    train = pd.DataFrame({"n": [1.0, 2.0, 3.0], "k": ["x", "y", "x"]})
    X, lev = ml.encode_features(train, numeric=["n"], categorical=["k"])
    assert list(X.columns) == ["n", "k=x", "k=y"] and lev == {"k": ["x", "y"]}
    grid = pd.DataFrame({"n": [5.0], "k": ["z"]})  # unseen level -> all indicators 0
    G, _ = ml.encode_features(grid, numeric=["n"], categorical=["k"], levels=lev)
    assert G.iloc[0].tolist() == [5.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="not found"):
        ml.encode_features(train, numeric=["missing"], categorical=[])
    with pytest.raises(ValueError, match="categorical"):
        ml.encode_features(pd.DataFrame({"n": ["a", "b"]}), numeric=["n"], categorical=[])


def test_predict_frame_on_grid_matches_training_predictions():
    df, X, levels, target = _driver_data(n=80)
    fit = ml.fit_driver_pipeline(X, target, seed=2, n_search=1, rf_trees=20)
    num = ["x", "y", "driver", "noise1", "noise2", "driver_copy"]
    p = ml.predict_frame(fit, df, numeric=num, categorical=["land"], levels=levels)
    np.testing.assert_allclose(p, fit.predict(X), rtol=1e-6)
    g = df.head(3).copy()
    g.loc[g.index[0], "driver"] = np.nan
    pg = ml.predict_frame(fit, g, numeric=num, categorical=["land"], levels=levels)
    assert np.isnan(pg[0]) and np.isfinite(pg[1:]).all()
    # a level never seen in training (even of an unselected predictor) is outside the model's domain
    g2 = df.head(2).assign(land=["a", "water"])
    pg2 = ml.predict_frame(fit, g2, numeric=num, categorical=["land"], levels=levels)
    assert np.isfinite(pg2[0]) and np.isnan(pg2[1])


def test_target_from_indices_and_parse_target():
    ind = pd.DataFrame({"sample_id": ["s1", "s2", "s1"], "medium": "soil", "metal": ["all", "all", "Cd"],
                        "index": ["PERI", "PERI", "Igeo"], "value": [120.0, 80.0, 1.2], "class": "x",
                        "background_used": "UCC"})
    t = ml.target_from_indices(ind, index="PERI", medium="soil")
    assert t.to_dict() == {"s1": 120.0, "s2": 80.0}
    with pytest.raises(ValueError, match="present"):
        ml.target_from_indices(ind, index="RI", medium="soil")
    assert ml.parse_target("PERI", metals=["Cd"]) == {"kind": "index", "index": "PERI", "metal": "all"}
    assert ml.parse_target("Igeo:Cd", metals=["Cd"]) == {"kind": "index", "index": "Igeo", "metal": "Cd"}
    assert ml.parse_target("Cd", metals=["Cd"])["kind"] == "metal"


def test_compare_learners_names_winner_and_margin():
    rows = []
    for fold in (1, 2):
        for model, rmse in (("xgb", 1.0), ("rf", 2.0), ("linear", 4.0)):
            rows.append({"model": model, "cv_scheme": "random", "fold": fold, "r2": 0.5, "rmse": rmse, "mae": rmse})
    text = ml.compare_learners(pd.DataFrame(rows))
    assert "XGBoost has the lowest mean RMSE" in text and "50.0 % below Random Forest" in text
    assert "2 of 2 folds" in text


def test_assemble_dataset_uses_indices_and_falls_back_with_a_note():
    """On the arid demo region: with an indices table the target is its PERI; without one the first metal's
    concentration is modelled and a note says so; a metal target cannot be its own predictor."""
    from pathlib import Path

    from hmlib import load_region

    data = load_region(Path(__file__).resolve().parents[1] / "params" / "arid_demo.yml")
    ds = ml.assemble_dataset(data, target="PERI", medium="soil", indices=None)
    assert ds.target_name == "As" and "Fallback target" in ds.notes[0]
    assert ds.categorical == ["landcover"] and "ndvi" in ds.numeric
    # coordinates are not candidate drivers by default; with the spatial term they are kept apart
    assert not {"x", "y"} & set(ds.numeric) and ds.spatial == []
    dsp = ml.assemble_dataset(data, target="PERI", medium="soil", indices=None, spatial_term=True)
    assert dsp.spatial == ["x", "y"] and not {"x", "y"} & set(dsp.drivers)
    with pytest.raises(ValueError, match="cannot be candidate drivers"):
        ml.assemble_dataset(data, target="Cd", medium="soil", predictors=["ndvi", "x"])
    np.testing.assert_allclose(ds.y.to_numpy(), data.wide("soil")["As"].loc[ds.frame.index].to_numpy())
    ids = data.sites("soil").index
    ind = pd.DataFrame({"sample_id": ids, "medium": "soil", "metal": "all", "index": "PERI",
                        "value": np.arange(len(ids), dtype=float) + 1.0})
    ds2 = ml.assemble_dataset(data, target="PERI", medium="soil", indices=ind, log_target=True)
    assert ds2.target_name == "PERI" and not ds2.notes
    np.testing.assert_allclose(ds2.y.to_numpy(), np.log10(np.arange(len(ids)) + 1.0))
    with pytest.raises(ValueError, match="cannot also be a predictor"):
        ml.assemble_dataset(data, target="Cd", medium="soil", predictors=["Cd", "ndvi"])
    with pytest.raises(ValueError, match="neither covariates"):
        ml.assemble_dataset(data, target="Cd", medium="soil", predictors=["nope"])


def _arid_data():
    from pathlib import Path

    from hmlib import load_region

    return load_region(Path(__file__).resolve().parents[1] / "params" / "arid_demo.yml")


FAST = dict(n_folds=5, n_spatial_blocks=10, n_search=2, rf_trees=40)


@pytest.mark.parametrize("spatial_term", [False, True])
def test_pure_noise_target_yields_no_drivers_and_a_no_skill_statement(spatial_term):
    """Checked against a seeded generator's known truth: the target is i.i.d. log-normal noise drawn
    independently of every covariate and of the coordinates (which are available), so nothing can
    predict it. The spatial-block CV must show no skill, no driver may be reported, the results
    must open with the no-skill statement, no map is allowed, and the coordinates are never drivers."""
    data = _arid_data()
    ids = data.sites("soil").index
    noise = np.random.default_rng(1).lognormal(size=len(ids))
    ind = pd.DataFrame({"sample_id": ids, "medium": "soil", "metal": "all", "index": "PERI", "value": noise})
    ds = ml.assemble_dataset(data, target="PERI", medium="soil", indices=ind, spatial_term=spatial_term)
    sites = data.sites("soil").loc[ds.frame.index]
    res = ml.analyse_drivers(ds, x=sites["x"], y=sites["y"], seed=3, **FAST)
    assert not res.skill.has_skill and res.skill.r2_mean <= 0
    assert res.drivers.empty and not res.map_allowed
    text = ml.results_text(res, ds)
    assert text.startswith("**No transferable skill.**")
    assert "Drivers." not in text
    assert "exploratory" in ml.exploratory_text(res, ds).lower()
    assert not {"x", "y"} & set(res.fit.pruning["feature"])  # never candidates
    if spatial_term:
        assert set(res.fit.spatial) == {"x", "y"} and 0 <= res.spatial_share <= 1
        assert "spatial term" in text
    else:
        assert np.isnan(res.spatial_share)


def test_known_driver_is_reported_after_the_skill_statement_and_coordinates_are_not_drivers():
    """Checked against a seeded generator's known truth: y = 2 driver + 1.5 sin(x/20) + N(0, 0.5^2)
    on 150 scattered points, with a pure-noise covariate. With the spatial term the model must show
    transferable skill, report 'driver' as the first driver (the noise covariate below it), keep x and y
    out of the driver table, and the text must state the skill before naming any driver."""
    rng = np.random.default_rng(8)
    n = 150
    x, y = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    frame = pd.DataFrame({"driver": rng.normal(size=n), "noise": rng.normal(size=n), "x": x, "y": y},
                         index=[f"s{i}" for i in range(n)])
    target = 2.0 * frame["driver"] + 1.5 * np.sin(x / 20.0) + rng.normal(scale=0.5, size=n)
    ds = ml.DriverData(frame=frame, y=target, numeric=["driver", "noise", "x", "y"], categorical=[],
                       target_name="T", target_label="T", medium="soil", spatial=["x", "y"])
    res = ml.analyse_drivers(ds, x=x, y=y, seed=4, **FAST)
    assert res.skill.has_skill and res.skill.r2_mean > 0.3
    assert res.drivers["feature"].iloc[0] == "driver"
    assert not {"x", "y"} & set(res.drivers["feature"])
    text = ml.results_text(res, ds)
    assert text.startswith("**Validation and skill.**")
    assert text.index("Drivers.") > text.index("R²")


def test_inner_tuning_folds_hold_out_whole_blocks():
    """Against the definition of block cross-validation (Roberts et al. 2017): with groups, no group
    appears on both sides of any inner split, and every sample is tested exactly once."""
    groups = np.repeat(np.arange(7), [5, 3, 8, 2, 6, 4, 5])
    splits = ml.inner_splits(len(groups), groups=groups, inner_folds=3, seed=0)
    assert len(splits) == 3
    seen = np.concatenate([te for _, te in splits])
    assert sorted(seen) == list(range(len(groups)))
    for tr, te in splits:
        assert not set(groups[tr]) & set(groups[te])
    with pytest.raises(ValueError, match="at least 2 blocks"):
        ml.inner_splits(4, groups=np.zeros(4), seed=0)


def test_skill_rule_against_hand_made_scores():
    """Hand-made fold scores (truth by construction): positive R2 but RMSE above the baseline is no
    skill; positive R2 and RMSE below the baseline is skill."""
    def frames(rmse_model):
        rows, preds = [], []
        for k in (1, 2):
            rows += [{"model": "xgb", "cv_scheme": "spatial_block", "fold": k, "r2": 0.2, "rmse": rmse_model, "mae": 1},
                     {"model": "mean", "cv_scheme": "spatial_block", "fold": k, "r2": -0.1, "rmse": 1.0, "mae": 1}]
        preds = pd.DataFrame({"cv_scheme": "spatial_block", "observed": [1.0, 2.0, 3.0], "xgb": [1.1, 2.0, 2.9]})
        return pd.DataFrame(rows), preds
    assert not ml.assess_skill(*frames(1.2)).has_skill
    sk = ml.assess_skill(*frames(0.8))
    assert sk.has_skill and sk.n_folds_better == 2 and sk.r2_pooled == pytest.approx(1 - 0.02 / 2)


def test_compare_with_truth_hand_example():
    """Hand-made importance (one-hot levels summed to their covariate) against a truth table: the unused
    covariate ranks last, so every covariate is on the right side of the divide."""
    imp = pd.DataFrame({"feature": ["a", "lc=1", "lc=2", "z", "x"], "mean_abs_shap": [0.5, 0.2, 0.15, 0.1, 0.9],
                        "spatial": [False, False, False, False, True]})
    truth = pd.DataFrame({"covariate": ["a", "lc", "z"], "in_generator": [True, True, False],
                          "pathway": ["direct", "via class", "none"]})
    t = ml.compare_with_truth(imp, truth).set_index("covariate")
    assert t.loc["lc", "mean_abs_shap"] == pytest.approx(0.35)
    assert t.loc["z", "rank"] == 3 and t["recovered"].all()
    assert "z, unused by the generator, ranks 3 of 3" in ml.truth_text(t.reset_index(), has_skill=True)


def test_stage_check_names_key_value_and_expectation(tmp_path):
    """The stage's check (against the arid demo's covariates, read from params/arid_demo.yml): coordinates
    and unknown names as predictors, and too few spatial blocks, are each reported as
    'stages.ml_drivers.<key>: got <value>; expected <what>'."""
    from pathlib import Path

    from hmlib.context import open_stage
    from hmlib.stages import ml_drivers

    params = Path(__file__).resolve().parents[1] / "params" / "arid_demo.yml"
    ctx = open_stage("ml_drivers", params_file=params, output_dir=tmp_path,
                     overrides={"predictors": ["x", "nope", "ndvi"], "n_spatial_blocks": 5, "n_folds": 5})
    problems = ml_drivers.check(ctx)
    assert len(problems) == 3
    assert any(p.startswith("stages.ml_drivers.predictors: got x;") for p in problems)
    assert any(p.startswith("stages.ml_drivers.predictors: got nope;") for p in problems)
    assert any(p.startswith("stages.ml_drivers.n_spatial_blocks: got 5;") for p in problems)
