"""Tests of hmlib.remote_sensing and the arid-basin generator."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from affine import Affine

from hmlib import remote_sensing as rs
from hmlib.synth import arid_basin

T = Affine(10.0, 0.0, 1000.0, 0.0, -10.0, 2000.0)  # 10 m pixels, upper-left corner (1000, 2000)


def _raster():
    b1 = np.arange(30, dtype=float).reshape(5, 6)  # value = 6 r + c
    b2 = 100.0 + 2 * b1
    bands = np.stack([b1, b2])
    valid = np.ones((5, 6), dtype=bool)
    valid[1, 2] = False  # cloud
    bands[:, 3, 4] = np.nan  # no-data
    return bands, valid


def _map(col, row):
    return T.a * col + T.b * row + T.c, T.d * col + T.e * row + T.f


def _centre(r, c):
    return _map(c + 0.5, r + 0.5)


def test_window_extraction_matches_hand_computed_means():
    """3x3 window means by hand: around pixel (2,3) the valid pixels are rows 1-3, cols 2-4 minus
    (1,2) cloud and (3,4) no-data; at the corner (0,0) the window is cut to rows 0-1, cols 0-1."""
    bands, valid = _raster()
    x, y = zip(_centre(2, 3), _centre(0, 0), _map(2.3, 4.9))
    out = rs.extract_at_points(bands, T, np.array(x), np.array(y), band_names=["b1", "b2"], valid=valid)
    px = [(r, c) for r in (1, 2, 3) for c in (2, 3, 4) if (r, c) not in {(1, 2), (3, 4)}]
    hand = np.mean([6 * r + c for r, c in px])
    assert out.loc[0, "b1"] == pytest.approx(hand)
    assert out.loc[0, "b2"] == pytest.approx(100 + 2 * hand)
    assert out.loc[0, "n_valid_px"] == 7
    assert out.loc[1, "b1"] == pytest.approx(np.mean([0, 1, 6, 7]))
    assert out.loc[1, "n_valid_px"] == 4
    # point at column 2.3, row 4.9 lies in pixel (4, 2): rows 3-4, cols 1-3, all valid
    assert out.loc[2, "b1"] == pytest.approx(np.mean([6 * r + c for r in (3, 4) for c in (1, 2, 3)]))
    # outside the raster -> NaN
    far = rs.extract_at_points(bands, T, np.array([0.0]), np.array([0.0]), valid=valid)
    assert far[["b1", "b2"]].isna().all(axis=None)


def test_bilinear_extraction_hand_values():
    """Bilinear option: at a pixel centre it equals the window mean; halfway between the centres of
    pixels (2,1) and (2,2) it is the average of their two window means (hand calculation)."""
    bands, valid = _raster()
    fm = rs.focal_mean(bands, valid=valid)
    xc, yc = _centre(2, 1)
    xm, ym = _map(2.0, 2.5)  # halfway between the centres (2, 1.5) and (2, 2.5) in (row, col+0.5) terms
    out = rs.extract_at_points(bands, T, np.array([xc, xm]), np.array([yc, ym]), valid=valid, method="bilinear")
    assert out.loc[0, "b1"] == pytest.approx(fm[0, 2, 1])
    assert out.loc[1, "b1"] == pytest.approx((fm[0, 2, 1] + fm[0, 2, 2]) / 2)


def test_focal_mean_against_brute_force():
    """focal_mean (uniform_filter) equals a brute-force loop over windows of valid pixels."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(9, 11))
    valid = rng.uniform(size=a.shape) > 0.2
    got = rs.focal_mean(a, valid=valid, window_px=3)
    for r in range(9):
        for c in range(11):
            w = a[max(0, r - 1):r + 2, max(0, c - 1):c + 2][valid[max(0, r - 1):r + 2, max(0, c - 1):c + 2]]
            if w.size:
                assert got[r, c] == pytest.approx(w.mean())
            else:
                assert np.isnan(got[r, c])


def _fitted_forest(seed=0):
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(60, 3))
    y = 3 * X[:, 0] + X[:, 1] ** 2 + rng.normal(scale=0.1, size=60)
    return RandomForestRegressor(n_estimators=25, random_state=seed, n_jobs=2).fit(X, y)


def test_blockwise_prediction_equals_whole_raster_prediction_exactly(tmp_path):
    """Block-wise prediction (5 rows at a time, and 1 row at a time, from an array and from a GeoTIFF
    read window by window) is bit-identical to whole-raster prediction."""
    import rasterio

    model = _fitted_forest()
    rng = np.random.default_rng(1)
    bands = rng.uniform(size=(3, 37, 23)).astype(np.float32).astype(float)
    bands[:, 4, 7] = np.nan
    valid = np.ones((37, 23), dtype=bool)
    valid[10:12, 3:9] = False
    whole_p, whole_u = rs.predict_raster(model, bands, valid=valid, block_pixels=10**9)
    for bp in (23 * 5, 1):
        p, u = rs.predict_raster(model, bands, valid=valid, block_pixels=bp)
        assert np.array_equal(p, whole_p, equal_nan=True) and np.array_equal(u, whole_u, equal_nan=True)
    assert np.isnan(whole_p[4, 7]) and np.isnan(whole_p[10, 5]) and np.isfinite(whole_p[0, 0])
    # the mean over trees equals the forest's own prediction (up to summation order)
    X = bands[:, 0, :].T
    np.testing.assert_allclose(whole_p[0], model.predict(X), rtol=1e-12)
    np.testing.assert_allclose(whole_u[0], np.std([t.predict(X) for t in model.estimators_], axis=0), rtol=1e-10)
    path = tmp_path / "img.tif"
    with rasterio.open(path, "w", driver="GTiff", height=37, width=23, count=3, dtype="float32", nodata=np.nan,
                       transform=T, crs="EPSG:32644") as dst:
        dst.write(bands.astype(np.float32))
    with rasterio.open(path) as src:
        pf, uf = rs.predict_raster(model, src, valid=valid, block_pixels=23 * 4)
    assert np.array_equal(pf, whole_p, equal_nan=True) and np.array_equal(uf, whole_u, equal_nan=True)


def test_median_filter_nan_against_scipy_and_by_hand():
    """Interior pixels of a NaN-free array equal scipy.ndimage.median_filter; a window holding NaN
    takes the median of its finite values (hand check); NaN pixels stay NaN."""
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(2)
    a = rng.normal(size=(12, 14))
    got = rs.median_filter_nan(a, size=5, block_rows=4)
    np.testing.assert_array_equal(got[2:-2, 2:-2], median_filter(a, size=5)[2:-2, 2:-2])
    b = a.copy()
    b[5, 5] = np.nan
    gb = rs.median_filter_nan(b, size=5)
    assert np.isnan(gb[5, 5])
    w = b[4:9, 3:8]
    assert gb[6, 5] == pytest.approx(np.median(w[np.isfinite(w)]))


def test_postprocess_clips_and_masks():
    pred = np.array([[-1.0, 2.0, 50.0], [3.0, np.nan, 4.0]])
    lc = np.array([[1, 1, 1], [1, 4, 4]])
    out = rs.postprocess(pred, clip_max=10.0, median_px=1, landcover=lc, landcover_classes=[1])
    np.testing.assert_array_equal(out, np.array([[0.0, 2.0, 10.0], [3.0, np.nan, np.nan]]))
    assert pred[0, 0] == -1.0  # input not modified
    with pytest.raises(ValueError, match="clip_max"):
        rs.postprocess(pred, clip_max=np.nan)


FAST = dict(n_trees=(30,), max_depth=(30,), min_samples_leaf=(3,), n_folds=5, n_blocks=10, inner_folds=3,
            n_repeats=3)


def test_fit_inversion_structure_and_known_band():
    """Seeded generator with known truth: y = 10 blue + N(0, 0.3^2) at 80 scattered points, other bands
    pure noise. The nested spatial-block CV must show skill (R2 > 0.7, RMSE below the training-mean
    baseline), blue must have the largest permutation importance, the metrics table has the pooled and
    the 5 fold rows, clip_max = P99(y) (numpy), and every sample gets exactly one out-of-fold interval."""
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.uniform(size=(80, 4)), columns=["blue", "green", "red", "nir"])
    y = 10 * X["blue"].to_numpy() + rng.normal(scale=0.3, size=80)
    cx, cy = rng.uniform(0, 1000, 80), rng.uniform(0, 1000, 80)
    res = rs.fit_inversion(X, y, x=cx, y=cy, seed=1, **FAST)
    m = res.metrics.set_index("split")
    assert "cv" in m.index and sum(s.startswith("cv_fold") for s in m.index) == 5
    assert m.loc["cv", "n_test"] == 80 and m.loc["cv", "r2"] > 0.7
    assert m.loc["cv", "rmse"] < m.loc["cv", "rmse_baseline"] and res.has_skill
    assert res.importance.sort_values("importance_mean").iloc[-1]["band"] == "blue"
    assert res.clip_max == pytest.approx(np.percentile(y, 99))
    p = res.predictions
    assert len(p) == 80 and (p["lower"] <= p["predicted"]).all() and (p["upper"] >= p["lower"]).all()
    assert set(p["fold"]) == {1, 2, 3, 4, 5}
    # whole spatial blocks per fold
    assert p.groupby("block")["fold"].nunique().max() == 1
    with pytest.raises(ValueError, match="NaN"):
        rs.fit_inversion(X.assign(blue=np.nan), y, x=cx, y=cy, seed=1)


def _arid_soil(seed: int, n_soil: int):
    g = arid_basin.generate(seed, rows=80, cols=100, n_soil=n_soil, n_water=5)
    bands = g["image"].astype(float)
    bands[bands == arid_basin.NODATA] = np.nan
    valid = np.all(np.isfinite(bands), axis=0) & (g["cloud"] == 0)
    soil = g["samples"][g["samples"]["medium"] == "soil"].reset_index(drop=True)
    X = rs.extract_at_points(bands, g["transform"], soil["x"], soil["y"], band_names=list(arid_basin.BANDS),
                             valid=valid)
    ok = X[list(arid_basin.BANDS)].notna().all(axis=1).to_numpy()
    return X.loc[ok, list(arid_basin.BANDS)], soil.loc[ok].reset_index(drop=True), g


def test_interval_coverage_on_generated_data_is_within_tolerance_of_nominal():
    """Seeded arid-basin generator (known truth: soil Pb = (12 + 30 NIR) e^eps, eps ~ N(0, 0.08^2); soil As =
    (5 + 90 blue) e^eps): on 160 samples, the held-out coverage of the calibrated 90 % intervals is within
    0.075 (3 binomial standard errors at n = 160) of nominal, while the forest's own uncalibrated quantiles
    are allowed to miss; the most important band is the generating band."""
    X, soil, g = _arid_soil(11, 170)
    for metal, band in (("Pb", "nir"), ("As", "blue")):
        res = rs.fit_inversion(X.reset_index(drop=True), soil[metal], x=soil["x"], y=soil["y"], seed=5, level=0.9,
                               **FAST)
        c = res.coverage
        assert c["n"] >= 150
        assert abs(c["observed"] - 0.9) <= 0.075, (metal, c)
        assert res.importance.sort_values("importance_mean").iloc[-1]["band"] == band
        assert res.has_skill


def test_pure_noise_concentration_has_no_skill_and_no_map():
    """Seeded known truth: the concentrations are i.i.d. log-normal noise, independent of the image, so the
    nested spatial-block CV must show no held-out skill and invert_metal must not produce a map."""
    X, soil, g = _arid_soil(12, 60)
    noise = np.random.default_rng(4).lognormal(size=len(soil))
    bands = g["image"].astype(float)
    bands[bands == arid_basin.NODATA] = np.nan
    img = rs.RasterImage(bands=bands, transform=g["transform"], crs=None, band_names=list(arid_basin.BANDS),
                         valid=np.all(np.isfinite(bands), axis=0))
    m = rs.invert_metal(img, X.reset_index(drop=True), noise, x=soil["x"], y=soil["y"], metal="Zn", medium="soil",
                        unit="mg/kg", seed=2, **FAST)
    assert not m.result.has_skill and m.result.skill["r2"] <= 0
    assert not m.mapped and m.processed is None and m.lower is None
    text = rs.results_text([m])
    assert text.startswith("**Validation and skill.**") and "No map is shown for Zn in soil" in text
    cov = rs.coverage_table([m])
    assert list(cov.columns[:6]) == ["metal", "medium", "nominal", "observed", "n", "cv_scheme"]


def test_conformal_offset_hand_values():
    """Hand calculation (Romano et al. 2019): scores 1..10 at level 0.9 -> the ceil(11 * 0.9) = 10th smallest = 10;
    at level 0.5 -> the ceil(5.5) = 6th smallest = 6; 19 scores 1..19 at 0.9 -> the 18th."""
    assert rs.conformal_offset(np.arange(1, 11), level=0.9) == 10
    assert rs.conformal_offset(np.arange(10, 0, -1), level=0.5) == 6
    assert rs.conformal_offset(np.arange(1, 20), level=0.9) == 18
    with pytest.raises(ValueError, match="level"):
        rs.conformal_offset([1.0, 2.0], level=1.0)


def test_r2_ceiling_matches_simulation():
    """Against a Monte-Carlo simulation of y = mu e^eps, eps ~ N(0, 0.1^2): the R2 of the best predictor
    mu e^(sigma^2/2) (computed directly) equals the closed-form ceiling within 0.01."""
    rng = np.random.default_rng(0)
    mu = rng.uniform(5, 8, 200_000)
    y = mu * np.exp(rng.normal(0, 0.1, mu.size))
    best = mu * np.exp(0.1 ** 2 / 2)
    direct = 1 - np.mean((y - best) ** 2) / np.var(y)
    assert rs.r2_ceiling(y, noise_sdlog=0.1) == pytest.approx(direct, abs=0.01)


def test_blockwise_interval_equals_whole_raster_interval():
    """predict_raster_interval per block of rows equals the whole-raster call exactly, and equals the
    quantile forest's own quantiles shifted by the offset (quantile-forest's predict)."""
    from quantile_forest import RandomForestQuantileRegressor

    rng = np.random.default_rng(1)
    Xt = rng.uniform(size=(50, 3))
    model = RandomForestQuantileRegressor(n_estimators=10, random_state=0).fit(Xt, Xt[:, 0] + rng.normal(0, .1, 50))
    bands = rng.uniform(size=(3, 9, 7))
    valid = np.ones((9, 7), dtype=bool)
    valid[2, 3] = False
    whole = rs.predict_raster_interval(model, bands, level=0.8, offset=0.05, valid=valid, block_pixels=10**6)
    part = rs.predict_raster_interval(model, bands, level=0.8, offset=0.05, valid=valid, block_pixels=7)
    assert np.array_equal(whole[0], part[0], equal_nan=True) and np.array_equal(whole[1], part[1], equal_nan=True)
    q = model.predict(bands[:, 0, :].T, quantiles=[0.1, 0.9])
    np.testing.assert_allclose(whole[0][0], q[:, 0] - 0.05)
    np.testing.assert_allclose(whole[1][0], q[:, 1] + 0.05)
    assert np.isnan(whole[0][2, 3])


def test_samples_per_predictor_warning():
    w = rs.samples_per_predictor_warning(30, 4)
    assert w is not None and "7.5 per predictor" in w and "10" in w
    assert rs.samples_per_predictor_warning(40, 4) is None


def test_arid_generator_is_seeded_and_follows_its_stated_functions():
    """Same seed -> identical data; the noise-free concentrations equal the documented functions of the
    true reflectance (independent re-evaluation); observed / true has log-sd close to the stated 0.08."""
    g1 = arid_basin.generate(7, rows=40, cols=50, n_soil=60, n_water=15)
    g2 = arid_basin.generate(7, rows=40, cols=50, n_soil=60, n_water=15)
    pd.testing.assert_frame_equal(g1["samples"], g2["samples"])
    np.testing.assert_array_equal(g1["image"], g2["image"])
    s = g1["samples"].set_index("sample_id")
    t = g1["truth"].set_index("sample_id")
    soil = s[s["medium"] == "soil"]
    # independent evaluation of the stated soil As function at each sample's pixel
    inv = ~g1["transform"]
    for sid, row in soil.head(10).iterrows():
        c = int(np.floor(inv.a * row["x"] + inv.b * row["y"] + inv.c))
        r = int(np.floor(inv.d * row["x"] + inv.e * row["y"] + inv.f))
        blue = g1["true_bands"][0, r, c]
        assert t.loc[sid, "As"] == pytest.approx(5 + 90 * blue, rel=1e-9)
    lr = np.log(soil["As"] / t.loc[soil.index, "As"])
    assert 0.05 < lr.std() < 0.11
    assert set(s["medium"]) == {"soil", "water"}
    assert (s.loc[s["medium"] == "water", "landcover"] == "water").all()


def test_arid_write_region_and_inversion_recovers_nir_for_pb(tmp_path):
    """Files written by write_region read back (clouds and the no-data strip masked); soil Pb, generated
    as 12 + 30 NIR, is inverted with NIR as the most important band."""
    paths = arid_basin.write_region(tmp_path, seed=arid_basin.DEFAULT_SEED)
    img = rs.read_multiband(paths["image"], cloud_mask=paths["cloud"])
    assert img.band_names == ["blue", "green", "red", "nir"]
    assert not img.valid[:, -1].any()
    cloud, _, _ = rs.read_singleband(paths["cloud"])
    assert not img.valid[cloud == 1].any()
    s = pd.read_csv(paths["samples"])
    soil = s[s["medium"] == "soil"].reset_index(drop=True)
    X = rs.extract_at_points(img.bands, img.transform, soil["x"], soil["y"], band_names=img.band_names,
                             valid=img.valid)
    ok = X[img.band_names].notna().all(axis=1)
    res = rs.fit_inversion(X.loc[ok, img.band_names], soil.loc[ok, "Pb"], x=soil.loc[ok, "x"], y=soil.loc[ok, "y"],
                           seed=2, **FAST)
    assert res.importance.sort_values("importance_mean").iloc[-1]["band"] == "nir"
    truth = pd.read_csv(paths["truth_bands"])
    assert truth.set_index(["medium", "metal"]).loc[("soil", "Pb"), "band"] == "nir"
    assert "README" in paths["readme"].name and "generated" in paths["readme"].read_text()
