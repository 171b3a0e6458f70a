"""Hypothesis invariants of hmlib.remote_sensing (window means, median filter, block-wise prediction)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hmlib import remote_sensing as rs

shapes = st.tuples(st.integers(3, 12), st.integers(3, 12))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, value=st.floats(-1e3, 1e3, allow_nan=False), seed=st.integers(0, 2**16),
       window=st.sampled_from([1, 3, 5]))
def test_focal_mean_of_constant_is_constant_where_any_pixel_is_valid(shape, value, seed, window):
    rng = np.random.default_rng(seed)
    valid = rng.uniform(size=shape) > 0.3
    a = np.full(shape, value)
    out = rs.focal_mean(a, valid=valid, window_px=window)
    finite = np.isfinite(out)
    np.testing.assert_allclose(out[finite], value, rtol=1e-9, atol=1e-9)
    # NaN exactly where the window holds no valid pixel
    h = window // 2
    pad = np.pad(valid, h)
    any_valid = np.array([[pad[r:r + window, c:c + window].any() for c in range(shape[1])] for r in range(shape[0])])
    np.testing.assert_array_equal(finite, any_valid)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), block=st.integers(1, 12))
def test_median_filter_is_within_window_range_and_block_invariant(shape, seed, block):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=shape)
    a[rng.uniform(size=shape) < 0.2] = np.nan
    out = rs.median_filter_nan(a, size=3, block_rows=block)
    np.testing.assert_array_equal(out, rs.median_filter_nan(a, size=3, block_rows=10**6))
    fin = np.isfinite(a)
    assert np.all(np.isnan(out[~fin]))
    lo, hi = np.nanmin(a) if fin.any() else 0, np.nanmax(a) if fin.any() else 0
    assert np.all((out[fin] >= lo) & (out[fin] <= hi))


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), block=st.integers(1, 100), seed=st.integers(0, 2**16))
def test_blockwise_prediction_equals_whole_for_any_block_size(rows, cols, block, seed):
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(30, 2))
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, X[:, 0] + rng.normal(scale=0.1, size=30))
    bands = rng.uniform(size=(2, rows, cols))
    whole = rs.predict_raster(model, bands, block_pixels=10**9)
    part = rs.predict_raster(model, bands, block_pixels=block)
    assert np.array_equal(whole[0], part[0]) and np.array_equal(whole[1], part[1])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(19, 200), level=st.floats(0.5, 0.95), seed=st.integers(0, 2**16))
def test_conformal_offset_covers_at_least_level_of_its_scores(n, level, seed):
    """Against the definition of the split-conformal quantile (Romano et al. 2019): the offset is one of the
    scores, at least ceil((n+1) level) of the n scores are <= it (when that rank exists), so at least a share
    `level` of them, and raising the level never lowers it."""
    scores = np.random.default_rng(seed).normal(size=n)
    c = rs.conformal_offset(scores, level=level)
    k = int(np.ceil((n + 1) * level))
    assert c in scores
    if k <= n:
        assert (scores <= c).sum() >= k and (scores <= c).mean() >= level
    assert rs.conformal_offset(scores, level=min(0.99, level + 0.04)) >= c
