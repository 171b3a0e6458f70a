"""Tests of hmlib.background: the adaptive (EM + GPR) background recovers a known background."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlib import background as bg


def _synthetic(seed: int = 0, n: int = 160):
    """Known truth: ln B = 2 + 1.2 z + 0.8 [rock == 'mafic'] + 0.6 sin(x / 2); observed ln C = ln B +
    N(0, 0.08) for 80 % of samples and ln B + U(1.2, 2.5) (anthropogenic excess) for 20 %."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 10, n), rng.uniform(0, 10, n)
    z = rng.uniform(0, 1, n)
    rock = rng.choice(["felsic", "mafic"], n)
    ln_b = 2 + 1.2 * z + 0.8 * (rock == "mafic") + 0.6 * np.sin(x / 2)
    polluted = rng.uniform(size=n) < 0.2
    ln_c = ln_b + rng.normal(0, 0.08, n) + np.where(polluted, rng.uniform(1.2, 2.5, n), 0.0)
    ids = [f"S{i:03d}" for i in range(n)]
    sites = pd.DataFrame({"x": x, "y": y, "z": z, "rock": rock}, index=ids)
    wide = pd.DataFrame({"Pb": np.exp(ln_c)}, index=ids)
    return sites, wide, ln_b, polluted


def test_gpr_background_beats_any_static_value():
    """The adaptive background is closer to the true background than the best possible static
    value (the constant minimising the RMSE against the truth, i.e. the mean of ln B), on the log
    and on the concentration scale; and the contaminated samples get a positive excess."""
    sites, wide, ln_b, polluted = _synthetic()
    r = bg.adaptive_background(wide, sites, medium="soil", covariates=["z", "rock"], categorical=["rock"], seed=1)
    s = r["samples"]
    pred = s["log_background"].to_numpy()
    rmse_gpr = np.sqrt(np.mean((pred - ln_b) ** 2))
    rmse_static_best = np.sqrt(np.mean((ln_b - ln_b.mean()) ** 2))  # oracle static value
    assert rmse_gpr < 0.5 * rmse_static_best
    b_true = np.exp(ln_b)
    rmse_c = np.sqrt(np.mean((s["background"].to_numpy() - b_true) ** 2))
    assert rmse_c < 0.5 * b_true.std()
    # EM classified most contaminated samples out of the training set
    assert s.loc[polluted, "in_training"].mean() < 0.2
    assert s.loc[~polluted, "in_training"].mean() > 0.85
    # excess: positive for contaminated samples, small for the others
    assert (s.loc[polluted, "excess"] > 0).mean() > 0.9
    assert s.loc[~polluted, "excess"].median() < 0.1 * s.loc[polluted, "excess"].median()
    summ = r["summary"].iloc[0]
    assert summ["cv_rmse_gpr_log"] < summ["cv_rmse_static_log"]
    assert set(s.columns) >= {"sample_id", "medium", "metal", "background", "background_sd", "excess"}


def test_grid_prediction_uses_grid_covariates_only():
    sites, wide, ln_b, _ = _synthetic(seed=2, n=100)
    grid = pd.DataFrame({"x": [1.0, 5.0, 9.0], "y": [1.0, 5.0, 9.0], "rock": ["mafic", "felsic", "other"]})
    r = bg.adaptive_background(wide, sites, medium="soil", covariates=["z", "rock"], categorical=["rock"],
                               grid=grid, seed=0)
    g = r["grid"]
    assert len(g) == 3 and (g["background"] > 0).all() and (g["background_sd"] > 0).all()
    assert r["grid_inputs"] == ["rock", "x", "y"]
    assert "z" not in r["summary"].iloc[0]["grid_inputs"]


def test_metal_covariates_exclude_target():
    sites = pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]}, index=["a", "b"])
    wide = pd.DataFrame({"Ni": [10.0, 20.0], "Cu": [5.0, 6.0]}, index=["a", "b"])
    f, num, cat = bg.build_features(sites, covariates=["Ni", "Cu"], concentrations_wide=wide, exclude_metal="Cu")
    assert num == ["log_Ni", "x", "y"] and cat == []
    assert f["log_Ni"].tolist() == pytest.approx(np.log([10.0, 20.0]).tolist())
    with pytest.raises(ValueError, match="neither a sample column"):
        bg.build_features(sites, covariates=["pH"], concentrations_wide=wide)


def test_lognormal_background_hand_computed():
    """mu = ln 10, s = 0.5: median 10; SD = exp(mu + s^2/2) sqrt(exp(s^2) - 1) = 10 * 1.1331 * 0.5329
    = 6.039 (by hand)."""
    b, sd = bg.lognormal_background(np.log(10.0), 0.5)
    assert b == pytest.approx(10.0)
    assert sd == pytest.approx(10 * np.exp(0.125) * np.sqrt(np.exp(0.25) - 1))
    assert sd == pytest.approx(6.039, abs=1e-3)


def test_anthropogenic_excess():
    e = bg.anthropogenic_excess(np.array([5.0, 12.0, np.nan]), np.array([10.0, 10.0, 10.0]))
    assert e[0] == 0.0 and e[1] == pytest.approx(2.0) and np.isnan(e[2])
    with pytest.raises(ValueError, match="same shape"):
        bg.anthropogenic_excess(np.ones(2), np.ones(3))
