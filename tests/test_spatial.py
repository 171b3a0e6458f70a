"""Tests of hmlib.spatial (variograms, kriging, GPR, cross-validation, exceedance) and hmlib.geo."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hmlib import geo
from hmlib import spatial as sp

DATA = Path(__file__).resolve().parents[1] / "data"


def _exp_cov(nugget: float, psill: float, a: float):
    """Exponential covariance with nugget, written out by hand: C(0) = c0 + c1, C(h) = c1 exp(-h/a)."""
    def cov(h):
        h = np.asarray(h, float)
        return np.where(h == 0, nugget + psill, psill * np.exp(-h / a))
    return cov


# --- kriging -------------------------------------------------------------------------------------
def test_ordinary_kriging_hand_checked_two_samples():
    """Two samples at (0,0) and (2,0), target at the midpoint (1,0), exponential model c0=0.5, c1=1, a=1.

    By symmetry lambda = (1/2, 1/2); the first OK equation gives
    mu = C(1) - (C(0) + C(2))/2 and sigma^2 = C(0) - (C(1)/2 + C(1)/2) - mu. Worked by hand:
    C(0) = 1.5, C(1) = e^-1 = 0.367879, C(2) = e^-2 = 0.135335;
    mu = 0.367879 - 0.817668 = -0.449788; sigma^2 = 1.5 - 0.367879 + 0.449788 = 1.581909.
    """
    cov = _exp_cov(0.5, 1.0, 1.0)
    pred, var, mu = sp.local_kriging(np.array([[0.0, 0.0], [2.0, 0.0]]), [3.0, 5.0], np.array([[1.0, 0.0]]),
                                     covariance=cov, n_neighbours=2)
    assert pred[0] == pytest.approx(4.0, abs=1e-9)
    assert mu[0] == pytest.approx(-0.449788, abs=2e-6)
    assert var[0] == pytest.approx(1.581909, abs=2e-6)


def test_ordinary_kriging_is_exact_at_a_sample_and_matches_a_dense_solve():
    """Three unequally spaced samples: at a sample the prediction is its value with zero variance; elsewhere
    the result equals an independent dense solve of the full OK system with numpy (written in the test)."""
    cov = _exp_cov(0.2, 2.0, 1.5)
    xy = np.array([[0.0, 0.0], [1.0, 0.3], [0.2, 2.0]])
    z = np.array([1.0, 4.0, 2.5])
    t = np.array([[1.0, 0.3], [0.6, 0.9]])
    pred, var, _ = sp.local_kriging(xy, z, t, covariance=cov, n_neighbours=3)
    assert pred[0] == pytest.approx(4.0, abs=1e-6) and var[0] == pytest.approx(0.0, abs=1e-6)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    A = np.ones((4, 4))
    A[:3, :3] = cov(d)
    A[3, 3] = 0
    c0 = cov(np.linalg.norm(xy - t[1], axis=1))
    sol = np.linalg.solve(A, np.r_[c0, 1.0])
    assert pred[1] == pytest.approx(sol[:3] @ z, abs=1e-5)
    assert var[1] == pytest.approx(2.2 - sol[:3] @ c0 - sol[3], abs=1e-5)


def test_local_kriging_with_all_samples_equals_pykrige():
    """With the neighbourhood holding every sample, local OK equals pykrige's global OK (spherical model,
    psill 1.5, range 4, nugget 0.3) in prediction and kriging variance."""
    import gstools as gs
    from pykrige.ok import OrdinaryKriging

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 10, (40, 2))
    z = rng.normal(size=40)
    t = rng.uniform(0, 10, (15, 2))
    m = gs.Spherical(dim=2, var=1.5, len_scale=4.0, nugget=0.3)
    vf = sp.VariogramFit("spherical", 0.3, 1.5, 4.0, 4.0, np.nan, 0.0, pd.DataFrame(), m)
    pred, var, _ = sp.local_kriging(xy, z, t, covariance=vf.covariance, n_neighbours=40)
    ok = OrdinaryKriging(xy[:, 0], xy[:, 1], z, variogram_model="spherical",
                         variogram_parameters={"psill": 1.5, "range": 4.0, "nugget": 0.3})
    pp, ss = ok.execute("points", t[:, 0], t[:, 1])
    np.testing.assert_allclose(pred, pp, atol=1e-5)
    np.testing.assert_allclose(var, ss, atol=1e-5)


def test_small_neighbourhood_differs_from_global_but_stays_close():
    """A moving neighbourhood is a real approximation: not identical to global kriging, but close when it
    spans the range (guards against the neighbourhood silently being ignored)."""
    cov = _exp_cov(0.1, 1.0, 1.0)
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 16, (250, 2))
    z = np.sin(xy[:, 0] / 3) + rng.normal(0, 0.3, 250)
    t = rng.uniform(2, 14, (30, 2))
    full, _, _ = sp.local_kriging(xy, z, t, covariance=cov, n_neighbours=250)
    loc, _, _ = sp.local_kriging(xy, z, t, covariance=cov, n_neighbours=24)
    diff = np.abs(full - loc)
    assert diff.max() > 0 and diff.mean() < 0.1 and diff.max() < 0.3


def test_lognormal_back_transform_pure_nugget():
    """Pure nugget (variance s) on ln values, n samples, target away from them: OK gives ybar with
    sigma^2 = s + s/n and psi = s/n, so z = exp(ybar + s/2 - s/(2n)), the unbiased estimate of a lognormal
    mean (exp(mu + s/2) with E[exp(ybar)] = exp(mu + s/(2n))); derivation in the test docstring."""
    import gstools as gs

    s, n = 0.4, 5
    xy = np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    z = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    m = gs.Exponential(dim=2, var=1e-12, len_scale=1e-6, nugget=s)
    vf = sp.VariogramFit("exponential", s, 1e-12, 1e-6, 3e-6, np.nan, 0.0, pd.DataFrame(), m)
    model = sp.SpatialModel("ok", True, xy, np.log(z), variogram=vf, n_neighbours=n)
    out = model.predict([100.0], [100.0])
    ybar = np.log(z).mean()
    assert out["mean_t"].iloc[0] == pytest.approx(ybar, abs=1e-6)
    assert out["sd_t"].iloc[0] ** 2 == pytest.approx(s + s / n, rel=1e-5)
    assert out["prediction"].iloc[0] == pytest.approx(np.exp(ybar + s / 2 - s / (2 * n)), rel=1e-5)


# --- variograms ----------------------------------------------------------------------------------
def test_fitted_variogram_recovers_known_range_and_sill():
    """Data simulated (gstools SRF, seeded) from an exponential model with sill 1 (nugget 0.1 + 0.9) and
    length scale 5 (effective range 3*5 = 15) on a 150 x 150 area: the fitted sill is within 20 % and the
    effective range within 35 % of the truth (one realisation; tolerances cover its sampling variation)."""
    import gstools as gs

    rng = np.random.default_rng(11)
    xy = rng.uniform(0, 150, (1500, 2))
    truth = gs.Exponential(dim=2, var=0.9, len_scale=5.0)
    field = gs.SRF(truth, seed=20240601)((xy[:, 0], xy[:, 1])) + rng.normal(0, np.sqrt(0.1), len(xy))
    ev = sp.experimental_variogram(xy[:, 0], xy[:, 1], field, n_lags=20, max_lag_fraction=0.25)
    fit = sp.fit_variogram(ev, models=["exponential"])
    assert fit.sill == pytest.approx(1.0, rel=0.2)
    assert fit.effective_range == pytest.approx(15.0, rel=0.35)
    best = sp.fit_variogram(ev)
    assert set(best.candidates["model"]) == set(sp.VARIOGRAM_MODELS)
    assert best.wsse == best.candidates["wsse"].min()


def test_meuse_zinc_variogram_near_published_fit():
    """ln(zinc) of the Meuse data, gstat's default binning (cutoff = 1/3 of the diagonal, 15 bins) and
    weights (fit.method = 7): gstat's published fit is Nug 0.0507 + Sph(0.5906, 897 m) (sp/gstat vignette,
    Pebesma 2004, doi:10.1016/j.cageo.2004.03.012). gstools uses bin centres where gstat uses the mean pair
    distance, so we accept 0.1 absolute on nugget and 20 % on sill and range."""
    d = pd.read_csv(DATA / "meuse" / "meuse_samples.csv")
    ev = sp.experimental_variogram(d["x"], d["y"], np.log(d["zinc"]), n_lags=15, max_lag_fraction=1 / 3)
    fit = sp.fit_variogram(ev, models=["spherical"])
    assert fit.nugget == pytest.approx(0.0507, abs=0.1)
    assert fit.sill == pytest.approx(0.0507 + 0.5906, rel=0.2)
    assert fit.len_scale == pytest.approx(897.0, rel=0.2)


def test_directional_check_detects_geometric_anisotropy():
    """A field stretched 4x along x has a longer range at azimuth 0 than at 90 degrees."""
    import gstools as gs

    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 120, (1200, 2))
    model = gs.Exponential(dim=2, var=1.0, len_scale=[12.0, 3.0])  # anisotropic: long along x
    f = gs.SRF(model, seed=7)((xy[:, 0], xy[:, 1]))
    fit = sp.fit_variogram(sp.experimental_variogram(xy[:, 0], xy[:, 1], f, max_lag_fraction=0.3))
    an = sp.anisotropy_summary(sp.directional_variograms(xy[:, 0], xy[:, 1], f, max_lag_fraction=0.3), fit).set_index("azimuth_deg")
    assert an.loc[0.0, "effective_range"] > 2 * an.loc[90.0, "effective_range"]


# --- cross-validation ----------------------------------------------------------------------------
def test_cv_uses_held_out_points_only():
    """Pure noise has nothing to interpolate: honest CV error is about the noise SD, while predicting the
    samples from a model that contains them (leakage) gives almost no error with an exact interpolator.
    A spy fit function also checks no held-out location is in its own fold's training data."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 10, (120, 2))
    z = rng.normal(10, 2, 120)
    seen = []

    def spy(method, **kw):
        seen.append(set(zip(np.round(kw["x"], 12), np.round(kw["y"], 12))))
        return sp.fit_spatial_model(method, **kw)

    cv = sp.cross_validate("ok", x=xy[:, 0], y=xy[:, 1], values=z, n_folds=5, seed=3, fit=spy)
    for f, train in enumerate(seen):
        held = cv[cv["fold"] == f]["index"].to_numpy()
        assert not train & set(zip(np.round(xy[held, 0], 12), np.round(xy[held, 1], 12)))
    honest = sp.cv_metrics(cv)["rmse"]
    assert honest > 0.85 * z.std()
    leaky = sp.fit_spatial_model("ok", x=xy[:, 0], y=xy[:, 1], values=z).predict(xy[:, 0], xy[:, 1])
    assert np.sqrt(np.mean((leaky["prediction"] - z) ** 2)) < 0.1 * honest


def test_cv_is_seeded_and_loo_has_one_sample_per_fold():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 10, (40, 2))
    z = xy[:, 0] + rng.normal(0, 0.5, 40)
    kw = dict(x=xy[:, 0], y=xy[:, 1], values=z, models=["exponential"])
    a = sp.cross_validate("ok", n_folds=4, seed=9, **kw)
    b = sp.cross_validate("ok", n_folds=4, seed=9, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(sp.cross_validate("ok", n_folds=4, seed=10, **kw))
    loo = sp.cross_validate("ok", scheme="loo", **kw)
    assert loo["fold"].nunique() == 40


def test_cv_metrics_hand_computed():
    """observed (1, 2, 4), predicted (2, 2, 1), sd 1: MAE = 4/3, RMSE = sqrt(10/3), MSSE = 10/3."""
    cv = pd.DataFrame({"observed": [1.0, 2, 4], "predicted": [2.0, 2, 1], "observed_t": [1.0, 2, 4],
                       "mean_t": [2.0, 2, 1], "sd_t": [1.0, 1, 1]})
    m = sp.cv_metrics(cv)
    assert m["mae"] == pytest.approx(4 / 3) and m["rmse"] == pytest.approx(np.sqrt(10 / 3))
    assert m["msse"] == pytest.approx(10 / 3) and m["n"] == 3


def test_best_methods_margin():
    t = pd.DataFrame({"metal": ["Cd", "Cd", "Pb"], "method": ["ok", "gpr", "ok"], "rmse": [1.0, 0.8, 2.0]})
    b = sp.best_methods(t).set_index("metal")
    assert b.loc["Cd", "best"] == "gpr" and b.loc["Cd", "improvement_pct"] == pytest.approx(20.0)
    assert b.loc["Pb", "runner_up"] is None


# --- regression kriging and GPR ------------------------------------------------------------------
def test_regression_kriging_recovers_a_categorical_trend():
    """z = 10 + 5*[rock == B] + 0.5*elev + noise: the OLS trend recovers the coefficients, and RK beats OK
    in cross-validation because OK cannot see the rock boundary."""
    rng = np.random.default_rng(4)
    n = 200
    xy = rng.uniform(0, 10, (n, 2))
    rock = np.where(rng.random(n) < 0.5, "A", "B")
    elev = rng.normal(0, 2, n)
    z = 10 + 5 * (rock == "B") + 0.5 * elev + rng.normal(0, 0.5, n)
    cov = pd.DataFrame({"rock": rock, "elev": elev})
    m = sp.fit_spatial_model("rk", x=xy[:, 0], y=xy[:, 1], values=z, covariates=cov, categorical=["rock"])
    beta = dict(zip(m.trend_names, m.beta))
    assert beta["rock[B]"] == pytest.approx(5.0, abs=0.3)
    assert beta["elev"] == pytest.approx(0.5, abs=0.1)
    # prediction accepts the covariates in any column order
    p1 = m.predict(xy[:5, 0], xy[:5, 1], cov.iloc[:5])
    p2 = m.predict(xy[:5, 0], xy[:5, 1], cov.iloc[:5][["elev", "rock"]])
    pd.testing.assert_frame_equal(p1, p2)
    rk = sp.cv_metrics(sp.cross_validate("rk", x=xy[:, 0], y=xy[:, 1], values=z, covariates=cov,
                                         categorical=["rock"], n_folds=5))
    ok = sp.cv_metrics(sp.cross_validate("ok", x=xy[:, 0], y=xy[:, 1], values=z, n_folds=5))
    assert rk["rmse"] < 0.5 * ok["rmse"]


def test_gpr_local_predictor_equals_sklearn_when_it_sees_every_sample():
    """The large-n GPR path (local simple kriging with the fitted kernel) equals scikit-learn's exact GP
    posterior mean and predictive variance when its neighbourhood holds all samples."""
    rng = np.random.default_rng(6)
    xy = rng.uniform(0, 10, (150, 2))
    z = np.sin(xy[:, 0]) + np.cos(xy[:, 1] / 2) + rng.normal(0, 0.2, 150)
    m = sp.fit_spatial_model("gpr", x=xy[:, 0], y=xy[:, 1], values=z, n_neighbours=150, seed=1)
    t = rng.uniform(0, 10, (30, 2))
    exact = m.predict(t[:, 0], t[:, 1])
    m.gpr_global_max = 10   # force the local path
    local = m.predict(t[:, 0], t[:, 1])
    np.testing.assert_allclose(local["prediction"], exact["prediction"], atol=1e-4)
    np.testing.assert_allclose(local["variance"], exact["variance"], rtol=1e-3)


# --- exceedance ----------------------------------------------------------------------------------
def test_exceedance_probability_gaussian():
    """P(Z > t) = 1 - Phi((g(t) - m)/s): 0.5 at the median; 1 - Phi(1) = 0.158655 one SD above it
    (standard normal table); an indicator where the SD is 0."""
    p = sp.exceedance_probability([np.log(2.0), np.log(2.0) - 1.0, 0.0], [0.5, 1.0, 0.0], threshold=2.0, log=True)
    assert p[0] == pytest.approx(0.5) and p[1] == pytest.approx(0.158655, abs=1e-6) and p[2] == 0.0
    sh = sp.area_share_above([1.0, 3.0, 5.0, 0.5], [0.2, 0.6, 0.95, 0.0], threshold=2.0)
    assert sh == {"share_predicted": 0.5, "share_expected": pytest.approx(0.4375), "share_p50": 0.5, "share_p90": 0.25}


def test_choose_log_and_input_checks():
    rng = np.random.default_rng(0)
    assert sp.choose_log(rng.lognormal(0, 1, 300))
    assert not sp.choose_log(rng.normal(10, 1, 300))
    assert not sp.choose_log(rng.lognormal(0, 1, 300), mode="never")
    with pytest.raises(ValueError, match="positive"):
        sp.choose_log([1.0, -1.0], mode="always")
    with pytest.raises(ValueError, match="expected 3 values"):
        sp.fit_spatial_model("ok", x=[0, 1, 2], y=[0, 1, 2], values=[1, 2])
    with pytest.raises(ValueError, match="method"):
        sp.fit_spatial_model("idw", x=[0, 1, 2], y=[0, 1, 2], values=[1, 2, 3])


def test_map_metal_jura_cd_end_to_end():
    """Jura Cd on a subset of the grid: every method cross-validated on all 259 samples, the best one has the
    smallest RMSE, probabilities lie in [0, 1] and the VBBo guide value for Cd (0.8 mg/kg) is used."""
    d = pd.read_csv(DATA / "jura" / "jura_samples.csv")
    g = pd.read_csv(DATA / "jura" / "jura_grid.csv").iloc[::10]
    thr = sp.guideline_thresholds("VBBo_Swiss1998", "guide")
    assert thr["Cd"] == 0.8
    mm = sp.map_metal("Cd", x=d["Xloc"], y=d["Yloc"], values=d["Cd"], grid_x=g["Xloc"], grid_y=g["Yloc"],
                      sample_covariates=d[["Landuse", "Rock"]], grid_covariates=g[["Landuse", "Rock"]],
                      categorical=["Landuse", "Rock"], threshold=thr["Cd"], n_folds=5, seed=1)
    assert mm.log and set(mm.cv_summary["method"]) == {"ok", "rk", "gpr"}
    assert (mm.cv_summary["n"] == 259).all()
    assert mm.best == mm.cv_summary.sort_values("rmse").iloc[0]["method"]
    assert mm.grid["exceedance_probability"].between(0, 1).all()
    assert (mm.grid["prediction"] > 0).all() and len(mm.grid) == len(g)


# --- GIS files -----------------------------------------------------------------------------------
def test_geotiff_round_trip_transform_crs_and_values(tmp_path):
    """A 3 x 4 grid (40 m cells, one cell missing) written with EPSG:28992 reads back with transform
    (40, 0, xmin - 20, 0, -40, ymax + 20), that CRS, the values in the right pixels and NaN for the hole."""
    import rasterio

    xs, ys = np.meshgrid(181000.0 + 40 * np.arange(4), 333000.0 + 40 * np.arange(3))
    x, y = xs.ravel(), ys.ravel()
    keep = ~((x == 181040.0) & (y == 333080.0))
    x, y = x[keep], y[keep]
    val = x / 1000 + y / 1e5
    path = geo.write_geotiff(tmp_path / "a.tif", x=x, y=y, bands={"prediction": val, "variance": 2 * val},
                             crs="EPSG:28992")
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 28992
        assert tuple(src.transform)[:6] == pytest.approx((40.0, 0.0, 180980.0, 0.0, -40.0, 333100.0))
        assert src.descriptions == ("prediction", "variance")
        a = src.read(1)
        assert a.shape == (3, 4)
        r, c = src.index(181120.0, 333000.0)     # bottom-right cell centre
        assert (r, c) == (2, 3) and a[r, c] == pytest.approx(181.12 + 3.33, rel=1e-6)
        r, c = src.index(181040.0, 333080.0)
        assert np.isnan(a[r, c])
        assert np.isfinite(a).sum() == 11
    path = geo.write_geotiff(tmp_path / "b.tif", x=x, y=y, bands={"p": val}, crs="local")
    with rasterio.open(path) as src:
        assert src.crs is None


def test_geotiff_rejects_irregular_grid_and_geopackage_round_trip(tmp_path):
    import geopandas as gpd

    with pytest.raises(ValueError, match="regular lattice"):
        geo.write_geotiff(tmp_path / "x.tif", x=[0.0, 1.0, 2.5], y=[0.0, 0.0, 1.0], bands={"a": [1, 2, 3]}, crs=None)
    df = pd.DataFrame({"x": [181000.0, 181040.0], "y": [333000.0, 333040.0], "v": [1.0, 2.0]})
    path = geo.write_geopackage(tmp_path / "a.gpkg", {"pts": df, "pts2": df.assign(v=3.0)}, crs="EPSG:28992")
    back = gpd.read_file(path, layer="pts")
    assert back.crs.to_epsg() == 28992
    assert list(back.geometry.x) == [181000.0, 181040.0] and list(back["v"]) == [1.0, 2.0]
    assert gpd.read_file(path, layer="pts2")["v"].tolist() == [3.0, 3.0]


def test_report_sentences_name_the_winner_and_the_margin():
    cv = pd.DataFrame({"metal": ["Cd", "Cd"], "method": ["ok", "rk"], "mae": [1.0, 0.9], "rmse": [2.0, 1.5],
                       "msse": [1.1, 0.9], "n": [50, 50]})
    best = sp.best_methods(cv)
    txt = sp.results_text(cv, best, unit="mg/kg")
    assert "regression kriging" in txt and "25.0 % below ordinary kriging" in txt
    sh = pd.DataFrame({"metal": ["Cd", "Pb"], "share_predicted": [0.1, 0.5], "share_expected": [0.2, 0.4],
                       "share_p50": [0.1, 0.5], "share_p90": [0.0, 0.3]})
    t = sp.exceedance_text(sh, threshold_name="guide", guideline_set="X", unit="mg/kg")
    assert t.index("Pb 50.0 %") < t.index("Cd 10.0 %")
