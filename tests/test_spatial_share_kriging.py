"""Kriging in space and the map's class shares (hmlib.spatial 'oks'): ordinary kriging with distances over the
coordinates and lambda times the shares of one categorical covariate's classes, one candidate per covariate in
map_metal."""
import numpy as np
import pandas as pd
import pytest

from hmlib import spatial as sp


def test_kriging_in_more_than_two_coordinates_matches_gstools():
    """Checked against gstools' global ordinary kriging (``gs.krige.Ordinary`` with an exponential model in five
    dimensions, exact at the samples): hmlib's neighbourhood kriging on the coordinates and scaled shares of
    :func:`share_coordinates`, with every sample in the neighbourhood, gives the same predictions and variances,
    by the compiled and by the vectorised assembly."""
    gs = pytest.importorskip("gstools")
    rng = np.random.default_rng(1)
    n = 60
    xy, S, z = rng.uniform(0, 10, (n, 2)), rng.dirichlet([1, 1, 1], n), rng.normal(size=n)
    P, SP = rng.uniform(0, 10, (25, 2)), rng.dirichlet([1, 1, 1], 25)
    X, Xp = sp.share_coordinates(xy, S, scale=3.0), sp.share_coordinates(P, SP, scale=3.0)
    nug, ln = 0.2, 2.0

    def cov(h):
        h = np.asarray(h, float)
        return (1 - nug) * np.exp(-h / ln) + nug * (h == 0)

    ref = gs.krige.Ordinary(gs.Exponential(dim=5, var=1 - nug, len_scale=ln, nugget=nug), cond_pos=X.T,
                            cond_val=z, exact=True)
    gm, gv = ref(Xp.T, return_var=True)
    for compiled in (True, False):
        m, v, _ = sp.local_kriging(X, z, Xp, covariance=cov, n_neighbours=n, compiled=compiled)
        np.testing.assert_allclose(m, gm, atol=1e-6)
        np.testing.assert_allclose(v, gv, atol=1e-6)


def _units_survey(seed: int, n: int, effect: float):
    """Seeded generator with a known truth: on a 40 x 40 grid of unit spacing rock B lies where
    x > 20 + 6 sin(y / 5), rock A elsewhere, and the map draws it so; values are a Gaussian random field with an
    exponential covariance (variance 1, length scale 4; gstools) plus ``effect`` on rock B plus noise of standard
    deviation 0.3."""
    gs = pytest.importorskip("gstools")
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(40, dtype=float), np.arange(40, dtype=float))
    gx, gy = gx.ravel(), gy.ravel()

    def rock(x, y):
        return np.where(x > 20 + 6 * np.sin(y / 5), "B", "A")

    x, y = rng.uniform(0, 39, n), rng.uniform(0, 39, n)
    field = gs.SRF(gs.Exponential(dim=2, var=1.0, len_scale=4.0), seed=seed)((x, y))
    v = field + effect * (rock(x, y) == "B") + rng.normal(0, 0.3, n)
    return x, y, v, gx, gy, pd.DataFrame({"rock": rock(gx, gy)}), pd.DataFrame({"rock": rock(x, y)})


def _held_out_mae(effect: float, seed: int = 3, n_fit: int = 250, n: int = 350):
    x, y, v, gx, gy, grid, rec = _units_survey(seed, n, effect)
    t, h = np.arange(n_fit), np.arange(n_fit, n)
    ss, sh, _ = sp.map_class_shares(x[t], y[t], recorded=rec.iloc[t], grid_x=gx, grid_y=gy, grid_covariates=grid,
                                    categorical=["rock"], at=(x[h], y[h]))
    oks = sp.fit_spatial_model("oks", x=x[t], y=y[t], values=v[t], covariates=ss, seed=1)
    ok = sp.fit_spatial_model("ok", x=x[t], y=y[t], values=v[t], seed=1, anisotropy="none")
    e_oks = np.mean(np.abs(oks.predict(x[h], y[h], sh)["prediction"] - v[h]))
    e_ok = np.mean(np.abs(ok.predict(x[h], y[h])["prediction"] - v[h]))
    return e_oks, e_ok, oks


def test_share_kriging_recovers_a_mapped_unit_effect_and_costs_nothing_without_one():
    """Checked against the known truth of a seeded generator (four surveys): with a step of 3 between two mapped rock
    units on a spatially correlated field, kriging in space and shares chooses a positive scale of the shares in
    every survey and its error at 100 held-out points is on average below 0.96 of ordinary kriging's (0.943
    measured: samples across the boundary inform a prediction less); without a step its error stays within 2 % of
    ordinary kriging's in every survey (at most 1.008 measured)."""
    with_step, without = [], []
    for seed in (3, 4, 5, 6):
        e_oks, e_ok, model = _held_out_mae(3.0, seed=seed)
        assert model.share_scale > 0
        assert set(model.share_cv["range_multiple"]) == set(sp.SHARE_DISTANCE_SCALES)
        with_step.append(e_oks / e_ok)
        e_oks0, e_ok0, _ = _held_out_mae(0.0, seed=seed)
        without.append(e_oks0 / e_ok0)
    assert np.mean(with_step) < 0.96
    assert max(without) < 1.02


def test_share_kriging_at_scale_zero_is_ordinary_kriging():
    """Checked against hmlib's ordinary kriging with the same exponential variogram: with lambda = 0 the shares
    add nothing to the distances, so the predictions and variances are those of ordinary kriging in space."""
    x, y, v, gx, gy, grid, rec = _units_survey(5, 120, 0.0)
    S = np.column_stack([rec["rock"] == "A", rec["rock"] == "B"]).astype(float)
    vf = sp.fit_variogram(sp.experimental_variogram(x, y, v), models=("exponential",))
    a = sp.local_kriging(sp.share_coordinates(np.column_stack([x, y]), S, scale=0.0), v,
                         sp.share_coordinates(np.column_stack([x, y]) + 0.5, S, scale=0.0), covariance=vf.covariance)
    b = sp.local_kriging(np.column_stack([x, y]), v, np.column_stack([x, y]) + 0.5, covariance=vf.covariance)
    for p, q in zip(a, b):
        np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)


def test_map_metal_offers_one_share_kriging_candidate_per_categorical_covariate():
    """Checked against the candidates listed by hand: with the map's shares of two categorical covariates,
    map_metal scores 'oks:rock' and 'oks:landuse' (named for the reader with the covariates' labels); without
    shares it offers none; a mapped candidate's scale is one of the listed multiples of the effective range."""
    x, y, v, gx, gy, grid, rec = _units_survey(11, 160, 3.0)
    land = lambda xx, yy: np.where(yy > 20, "forest", "meadow")  # noqa: E731
    grid["landuse"], rec["landuse"] = land(gx, gy), land(x, y)
    ss, sg, _ = sp.map_class_shares(x, y, recorded=rec, grid_x=gx, grid_y=gy, grid_covariates=grid,
                                    categorical=["rock", "landuse"])
    kw = dict(x=x, y=y, values=v, grid_x=gx, grid_y=gy, sample_covariates=rec, grid_covariates=grid,
              categorical=["rock", "landuse"], methods=("ok", "oks", "stack"), log_mode="never", anisotropy="none",
              block_cv=False, collocated_check=False, seed=2)
    mm = sp.map_metal("Cd", sample_shares=ss, grid_shares=sg, **kw)
    assert set(mm.cv_summary["method"]) == {"ok", "oks:rock", "oks:landuse", "stack"}
    assert np.isfinite(mm.grid["prediction"]).all()
    assert set(mm.share_scales["candidate"]) <= {"oks:rock", "oks:landuse"}
    assert all(s in sp.SHARE_DISTANCE_SCALES for s in np.round(mm.share_scales["range_multiple"], 12))
    assert sp.method_label("oks:rock", labels={"rock": "rock type"}) == "kriging in space and mapped class shares (rock type)"
    assert sp.method_code("oks:rock") == "oks"
    plain = sp.map_metal("Cd", **kw)
    assert set(plain.cv_summary["method"]) <= {"ok", "stack"}


def test_share_kriging_variance_matches_its_held_out_errors():
    """Checked against the known truth of a seeded generator (eight surveys, with and without a step between the
    mapped units): the mean standardised squared error of kriging in space and shares at 100 held-out points, whose
    variance is rescaled by the inner cross-validation's MSSE, lies between 0.8 and 1.25 on average (ideal 1; 1.08
    measured, against 1.06 for ordinary kriging), and its predictions are those of the unrescaled model (the
    rescaling multiplies the covariance, which leaves the kriging weights unchanged)."""
    msse = []
    for effect in (3.0, 0.0):
        for seed in (3, 4, 5, 6):
            x, y, v, gx, gy, grid, rec = _units_survey(seed, 350, effect)
            t, h = np.arange(250), np.arange(250, 350)
            ss, sh, _ = sp.map_class_shares(x[t], y[t], recorded=rec.iloc[t], grid_x=gx, grid_y=gy,
                                            grid_covariates=grid, categorical=["rock"], at=(x[h], y[h]))
            model = sp.fit_spatial_model("oks", x=x[t], y=y[t], values=v[t], covariates=ss, seed=1)
            p = model.predict(x[h], y[h], sh)
            msse.append(float(np.mean((p["mean_t"] - v[h]) ** 2 / p["sd_t"] ** 2)))
            if effect and seed == 3:
                vf = sp.fit_variogram(sp.experimental_variogram(x[t], y[t], v[t]), models=("exponential",))
                raw = sp.local_kriging(model.train_xy, v[t], model._augment(np.column_stack([x[h], y[h]]), sh),
                                       covariance=vf.covariance)[0]
                np.testing.assert_allclose(p["mean_t"], raw, rtol=1e-9, atol=1e-9)
    assert 0.8 < np.mean(msse) < 1.25
