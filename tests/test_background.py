"""Tests of hmlib.background: the adaptive background against exact Gaussian processes (scikit-learn)
and against the known truth of the seeded generator hmlib.synth.background."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlib import background as bg
from hmlib.synth import background as sb

CHEM = ["Fe2O3", "Al2O3", "CaO", "K2O", "som_pct"]


@pytest.fixture(scope="module")
def region():
    g = sb.generate(7, n_samples=500)
    sites = g["samples"].set_index("sample_id")
    r = bg.adaptive_background(g["concentrations"], sites, medium="soil", covariates=CHEM, seed=3)
    return g, r


def _exact(x, y, gp):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    k = ConstantKernel(gp.amplitude2) * RBF(gp.length_scales) + WhiteKernel(gp.noise2)
    return GaussianProcessRegressor(kernel=k, optimizer=None, normalize_y=False).fit(x, y - gp.y_mean)


def test_sparse_gp_with_all_points_inducing_is_the_exact_gp():
    """Checked against scikit-learn's exact GaussianProcessRegressor with the same fixed kernel: with at
    least as many inducing points as training points the sparse GP's mean and SD (nugget included) are
    equal."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] + rng.normal(0, 0.1, 120)
    gp = bg.fit_sparse_gp(x, y, n_inducing=500, seed=1)
    xq = rng.normal(size=(40, 3))
    mu, sd = gp.predict(xq)
    ref_mu, ref_sd = _exact(x, y, gp).predict(xq, return_std=True)
    assert np.allclose(mu, ref_mu + gp.y_mean, atol=1e-5)
    assert np.allclose(sd, ref_sd, atol=1e-5)


def test_sparse_gp_approximation_close_to_exact_on_small_data():
    """Checked against the exact GP (scikit-learn) on 600 points: with 100 inducing points the mean
    differs by less than 0.1 predictive SD at 95 % of 200 query points and the SD by less than 10 %
    (the documented accuracy of the approximation)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(600, 4))
    y = np.sin(1.5 * x[:, 0]) + 0.4 * x[:, 1] * x[:, 2] + rng.normal(0, 0.15, 600)
    gp = bg.fit_sparse_gp(x, y, n_inducing=100, seed=2)
    xq = rng.normal(size=(200, 4))
    mu, sd = gp.predict(xq)
    ref_mu, ref_sd = _exact(x, y, gp).predict(xq, return_std=True)
    assert np.quantile(np.abs(mu - ref_mu - gp.y_mean) / ref_sd, 0.95) < 0.1
    assert np.quantile(np.abs(sd / ref_sd - 1), 0.95) < 0.10


def test_recovers_known_background_and_flags_contamination(region):
    """Seeded generator with known truth (hmlib.synth.background: background a known function of soil
    chemistry over four parent materials, contamination known): on clean samples the out-of-fold
    background is within 10 % (median |ln B / B_true| <= 0.10), >= 85 % of contaminated samples are
    flagged and no metal has more than 10 % of its clean samples flagged (naturally high Ni and Cr of
    basalt soils included)."""
    g, r = region
    s = r["samples"]
    for metal in g["concentrations"].columns:
        ss = s[s["metal"] == metal].set_index("sample_id")
        cont = g["contaminated"][metal]
        err = np.abs(np.log(ss["background"] / g["background_true"][metal]))
        assert err[~cont].median() <= 0.10, metal
        assert ss.loc[~cont, "flagged"].mean() <= 0.10, metal
        if cont.any():
            assert ss.loc[cont, "flagged"].mean() >= 0.85, metal
    summ = r["summary"]
    assert (summ["skill"] > 0.5).all()  # out-of-fold skill against a static value
    assert not summ["inputs"].str.contains(r"\bx\b|\by\b").any()  # coordinates are not inputs by default


def test_background_is_out_of_fold(region):
    """By construction of the folds (checked against the definition): multiplying one clean sample's
    concentration by 50 changes its own predicted log background by less than 0.02 (it enters its own
    prediction only through the kernel hyperparameters of the full fit, which the folds reuse; its
    selection, trend and conditioning never see it), and the sample is flagged."""
    g, r = region
    conc = g["concentrations"].copy()
    sid = g["contaminated"].index[~g["contaminated"]["Pb"]][0]
    conc.loc[sid, "Pb"] *= 50
    sites = g["samples"].set_index("sample_id")
    r2 = bg.adaptive_background(conc[["Pb"]], sites, medium="soil", covariates=CHEM, seed=3)
    a = r["samples"].query("metal == 'Pb'").set_index("sample_id")
    b = r2["samples"].set_index("sample_id")
    assert b.loc[sid, "log_background"] == pytest.approx(a.loc[sid, "log_background"], abs=0.02)
    assert b.loc[sid, "flagged"]


def test_em_training_alternative_runs_and_differs():
    """The EM selection (Sun et al. 2025) stays available: it trains on a different sample set than the
    robust selection on the same generated soils (truth: contamination known, so both exclude most
    contaminated samples from training)."""
    g = sb.generate(3, n_samples=300)
    sites = g["samples"].set_index("sample_id")
    cols = ["Pb"]
    rr = bg.adaptive_background(g["concentrations"][cols], sites, medium="soil", covariates=CHEM, seed=1)
    re = bg.adaptive_background(g["concentrations"][cols], sites, medium="soil", covariates=CHEM, seed=1,
                                training="em")
    cont = g["contaminated"]["Pb"].to_numpy()
    for r in (rr, re):
        assert r["samples"]["in_training"].to_numpy()[cont].mean() < 0.2
    assert not np.array_equal(rr["samples"]["in_training"], re["samples"]["in_training"])
    assert re["summary"]["training"].iloc[0] == "em"


def test_grid_prediction_uses_grid_covariates_only():
    g = sb.generate(2, n_samples=150)
    sites = g["samples"].set_index("sample_id")
    grid = pd.DataFrame({"x": [1e3, 2e4, 3.9e4], "y": [1e3, 2e4, 3.9e4], "Fe2O3": [3.0, 9.0, 5.0]})
    r = bg.adaptive_background(g["concentrations"][["Ni"]], sites, medium="soil", covariates=CHEM, grid=grid, seed=0)
    gr = r["grid"]
    assert len(gr) == 3 and (gr["background"] > 0).all() and (gr["background_sd"] > 0).all()
    assert r["grid_inputs"] == ["Fe2O3"]
    # more Fe2O3, more natural Ni (truth: ln B_Ni rises with ln Fe2O3)
    assert gr["background"].iloc[1] > gr["background"].iloc[0]


def test_metal_covariates_exclude_target():
    sites = pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]}, index=["a", "b"])
    wide = pd.DataFrame({"Ni": [10.0, 20.0], "Cu": [5.0, 6.0]}, index=["a", "b"])
    f, num, cat = bg.build_features(sites, covariates=["Ni", "Cu"], concentrations_wide=wide, exclude_metal="Cu",
                                    coordinates=True)
    assert num == ["log_Ni", "x", "y"] and cat == []
    assert f["log_Ni"].tolist() == pytest.approx(np.log([10.0, 20.0]).tolist())
    with pytest.raises(ValueError, match="neither a sample column"):
        bg.build_features(sites, covariates=["pH"], concentrations_wide=wide)


def test_lognormal_background_hand_computed():
    """mu = ln 10, s = 0.5: median 10; SD = exp(mu + s^2/2) sqrt(exp(s^2) - 1) = 10 * 1.1331 * 0.5329
    = 6.039 (by hand)."""
    b, sd = bg.lognormal_background(np.log(10.0), 0.5)
    assert b == pytest.approx(10.0)
    assert sd == pytest.approx(6.039, abs=1e-3)


def test_anthropogenic_excess():
    e = bg.anthropogenic_excess(np.array([5.0, 12.0, np.nan]), np.array([10.0, 10.0, 10.0]))
    assert e[0] == 0.0 and e[1] == pytest.approx(2.0) and np.isnan(e[2])
    with pytest.raises(ValueError, match="same shape"):
        bg.anthropogenic_excess(np.ones(2), np.ones(3))


def test_grid_cells_with_the_same_inputs_get_the_prediction_of_each_cell():
    """The grid is predicted once per distinct input row and copied to the cells sharing it; checked
    against predicting every cell on its own with the same fitted model (the straightforward path):
    a grid of 600 cells with 3 distinct Fe2O3 values, in shuffled order, gives the same background and SD
    per cell (to 1e-12 relative: only the order of the BLAS sums may differ)."""
    g = sb.generate(2, n_samples=150)
    sites = g["samples"].set_index("sample_id")
    rng = np.random.default_rng(0)
    fe = rng.choice([3.0, 5.0, 9.0], 600)
    grid = pd.DataFrame({"x": rng.uniform(0, 4e4, 600), "y": rng.uniform(0, 4e4, 600), "Fe2O3": fe})
    r = bg.adaptive_background(g["concentrations"][["Ni"]], sites, medium="soil", covariates=CHEM, grid=grid, seed=0)
    gr = r["grid"]
    assert len(gr) == 600 and gr["cell"].tolist() == list(range(600))
    # the straightforward path: the same grid model (same seed of the metal), every cell predicted on its own
    feats, num, cat = bg.build_features(sites, covariates=["Fe2O3"], concentrations_wide=None, log_covariates=True)
    pre, X, names = bg.encode_features(feats, numeric=num, categorical=cat)
    c = g["concentrations"]["Ni"].to_numpy(float)
    y = np.log(c)
    sel = r["samples"]["in_training"].to_numpy()
    s_i = int(np.random.SeedSequence([0, 0]).generate_state(1)[0] % (2**31))
    model = bg.fit_background_model(X[sel], y[sel], seed=s_i, inputs=names)
    gq = pre.transform(bg.build_features(grid, covariates=["Fe2O3"], concentrations_wide=None, log_covariates=True)[0])
    ref = bg.predict_background(model, gq)
    np.testing.assert_allclose(gr["background"], ref["background"], rtol=1e-12)
    np.testing.assert_allclose(gr["background_sd"], ref["background_sd"], rtol=1e-12)
    assert gr.groupby(fe)["background"].nunique().eq(1).all()
