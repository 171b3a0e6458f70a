"""The value the maps show: the median or the mean of each cell's predictive distribution."""
from importlib import resources

import numpy as np
import pytest
from scipy import stats

from hmlib import spatial as sp


def test_back_transform_matches_scipy_lognormal():
    """Checked against scipy.stats.lognorm: without a Lagrange term (simple kriging, GPR) a log-scale prediction
    N(m, s^2) back-transforms to the lognormal's mean exp(m + s^2/2), median exp(m) and variance; the point
    prediction is the one asked for, and on the original scale mean and median are the prediction itself."""
    m, s2 = np.array([0.3, 1.2, -0.5]), np.array([0.1, 0.8, 0.4])
    ref = stats.lognorm(s=np.sqrt(s2), scale=np.exp(m))
    med = sp._back_transform(m, s2, np.zeros(3), log=True, point="median")
    mean = sp._back_transform(m, s2, np.zeros(3), log=True, point="mean")
    np.testing.assert_allclose(med["median"], ref.median(), rtol=1e-12)
    np.testing.assert_allclose(med["mean"], ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(med["variance"], ref.var(), rtol=1e-12)
    np.testing.assert_allclose(med["prediction"], ref.median(), rtol=1e-12)
    np.testing.assert_allclose(mean["prediction"], ref.mean(), rtol=1e-12)
    raw = sp._back_transform(m, s2, np.zeros(3), log=False, point="median")
    np.testing.assert_allclose(raw[["prediction", "mean", "median"]].to_numpy(), np.column_stack([m, m, m]))
    with pytest.raises(ValueError, match="point"):
        sp._back_transform(m, s2, np.zeros(3), log=True, point="mode")


def test_median_map_has_the_smaller_absolute_error_on_a_generated_lognormal_field():
    """Checked against a seeded lognormal Gaussian field (gstools) whose values at the grid cells are known: the
    map of the median exp(y) has a smaller mean absolute error at the cells than the map of the lognormal mean
    (the median minimises the expected absolute error; Gneiting 2011), its cross-validation scores the median,
    and the grid keeps the mean beside it."""
    import gstools as gs

    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 50, (160, 2))
    gx, gy = np.meshgrid(np.linspace(1, 49, 25), np.linspace(1, 49, 25))
    gx, gy = gx.ravel(), gy.ravel()
    srf = gs.SRF(gs.Exponential(dim=2, var=1.0, len_scale=12.0), seed=11)
    f = srf((np.r_[xy[:, 0], gx], np.r_[xy[:, 1], gy]))
    z = np.exp(1.0 + f + rng.normal(0, 0.3, len(f)))   # with a nugget
    zs, zg = z[:160], z[160:]
    kw = dict(x=xy[:, 0], y=xy[:, 1], values=zs, grid_x=gx, grid_y=gy, methods=("ok",), log_mode="always",
              anisotropy="none", block_cv=False, n_folds=5, models=["exponential"], seed=2)
    med = sp.map_metal("X", point="median", **kw)
    mean = sp.map_metal("X", point="mean", **kw)
    mae_med = np.mean(np.abs(med.grid["prediction"] - zg))
    mae_mean = np.mean(np.abs(mean.grid["prediction"] - zg))
    assert mae_med < 0.99 * mae_mean   # 3.12 against 3.21
    np.testing.assert_allclose(med.grid["prediction"], np.exp(med.grid["mean_t"]), rtol=1e-12)
    np.testing.assert_allclose(med.grid["mean"], mean.grid["prediction"], rtol=1e-12)
    cv = med.cv[med.cv["method"] == "ok"]
    np.testing.assert_allclose(cv["predicted"], np.exp(cv["mean_t"]), rtol=1e-12)
    assert med.cv_summary["mae"].iloc[0] == pytest.approx(np.mean(np.abs(cv["observed"] - np.exp(cv["mean_t"]))))


def test_methods_text_states_the_mapped_value():
    """Checked against the sentences written out by hand: the median is named as the value mapped and scored,
    with its reference; with the mean there is no such reference."""
    kw = dict(methods=["ok"], log_mode="cv", skew_threshold=1.0, models=["spherical"], weights="npairs_h2",
              anisotropy="none", anisotropy_min_ratio=1.5, n_neighbours=32, scheme="kfold", n_folds=10,
              block_cv=False, guideline_set=None, threshold_name=None, drift_covariates=[], secondary={}, crs="local")
    med = sp.methods_text(point="median", **kw)
    assert "is the median of each cell's predictive distribution" in med and "[@gneiting2011]" in med
    assert "(of the back-transformed median)" in med
    mean = sp.methods_text(point="mean", **kw)
    assert "is the mean of each cell's predictive distribution" in mean and "gneiting2011" not in mean
    assert "(of the back-transformed mean)" in mean
    bib = (resources.files("hmlib") / "data" / "bib" / "spatial.bib").read_text(encoding="utf-8")
    assert "@article{gneiting2011," in bib
