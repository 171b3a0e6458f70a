"""Survey-size paths of the baselines stage against the exact computations, on small seeded data."""
from __future__ import annotations

import numpy as np
import pytest
from test_scale import _imed_direct  # the by-the-book IMED iteration (np.median, scaled MAD)

from hmlib import baselines as bl
from hmlib.plots import grid_image


@pytest.mark.parametrize("ties", [False, True])
def test_imed_bisection_band_matches_direct_iteration(ties, monkeypatch):
    """IMED on rows longer than the bisection size (band ends found by bisection) against the direct
    per-resample iteration with np.median and against the dense comparison of every value: the same
    retained samples and identical baselines and upper limits."""
    rng = np.random.default_rng(5)
    n = 1500
    t = rng.normal(0, 1, (12, n))
    t[:, :40] += 6  # outliers to trim
    if ties:
        t[:, : n // 2 + 1] = -1.0
        t = np.round(t, 1)
    assert n > bl._BISECT_ABOVE
    base, up, n_ret, keep, _ = bl._imed_batch(t)
    for b in range(t.shape[0]):
        m, u, kp = _imed_direct(t[b])
        assert keep[b].tolist() == kp.tolist()
        if np.isfinite(base[b]):
            assert base[b] == pytest.approx(m, abs=1e-12)
            assert up[b] == pytest.approx(u, abs=1e-12)
    monkeypatch.setattr(bl, "_BISECT_ABOVE", 10**9)
    base_d, up_d, n_d, keep_d, _ = bl._imed_batch(t)
    np.testing.assert_array_equal(keep, keep_d)
    np.testing.assert_array_equal(np.nan_to_num(base, nan=-9), np.nan_to_num(base_d, nan=-9))
    np.testing.assert_array_equal(np.nan_to_num(up, nan=-9), np.nan_to_num(up_d, nan=-9))


def test_grid_map_as_image_shows_the_cell_values():
    """The image drawn for large grids against the cell values themselves: every cell of a seeded
    regular grid with rounded coordinates (as written to CSV files) lands in its own pixel with its
    value, empty pixels only where the grid has no cell; an irregular point set is not rasterised."""
    rng = np.random.default_rng(2)
    gx, gy = np.meshgrid(np.arange(40) * 0.39905 + 0.1995, np.arange(30) * 0.39905 + 0.1995)
    x, y = np.round(gx.ravel(), 4), np.round(gy.ravel(), 4)
    drop = rng.random(x.size) < 0.2  # holes, as outside a region's boundary
    v = rng.random(x.size)
    arr, extent = grid_image(x[~drop], y[~drop], v[~drop])
    assert arr.shape == (30, 40)
    np.testing.assert_array_equal(arr.ravel()[~drop], v[~drop])
    assert np.isnan(arr.ravel()[drop]).all()
    assert extent[0] < x.min() < x.max() < extent[1] and extent[2] < y.min() < y.max() < extent[3]
    assert grid_image(rng.random(500), rng.random(500), rng.random(500)) is None


def _boxplot_direct(t, whisker=1.5):
    """Tukey fences and the median inside them by the book, per row: np.percentile on the unsorted row,
    a mask and np.median of the kept values."""
    q1, q3 = np.percentile(t, [25.0, 75.0])
    lo, hi = q1 - whisker * (q3 - q1), q3 + whisker * (q3 - q1)
    kept = t[(t >= lo) & (t <= hi)]
    return np.median(kept), hi, kept.size


@pytest.mark.parametrize("ties", [False, True])
def test_boxplot_on_sorted_rows_equals_masked_median(ties):
    """The batched boxplot (one sort, median read inside the fences on the sorted row) against the
    by-the-book computation per resample (np.percentile, mask, np.median): identical numbers."""
    rng = np.random.default_rng(3)
    t = np.r_[rng.normal(0, 1, 400), rng.normal(5, 0.5, 30)][rng.integers(0, 430, (50, 430))]
    if ties:
        t = np.round(t, 1)
    base, up, n_ret, keep, _ = bl._boxplot_batch(t)
    for b in range(t.shape[0]):
        m, u, k = _boxplot_direct(t[b])
        assert base[b] == m and up[b] == u and n_ret[b] == k == keep[b].sum()


def test_bootstrap_intervals_do_not_depend_on_the_batch_size():
    """Seeded intervals of every method with the default batch (all resamples at once here) against
    batches of 100 (the earlier default): identical, since each resample is estimated on its own."""
    rng = np.random.default_rng(6)
    c = np.exp(np.r_[rng.normal(2.0, 0.4, 250), rng.normal(3.5, 0.3, 30)])
    for m in ("imea", "imed", "rcf", "boxplot"):
        a = bl.bootstrap_baseline(c, method=m, n_bootstrap=600, seed=4)
        b = bl.bootstrap_baseline(c, method=m, n_bootstrap=600, seed=4, chunk=100)
        assert a == b, m


@pytest.mark.parametrize("n", [259, 2000])
def test_fast_breakpoint_search_matches_the_direct_sums(n):
    """The breakpoint search from tail sums of sorted rows (O(n + G^2) per resample) against the same
    search with the hinge sums formed directly over all values (O(G^2 n), the earlier code), on 300
    seeded bootstrap resamples of a two-population sample: the same two breakpoints for at least
    299 of 300 resamples, and the same minimum RSS to 1e-6 relative where they agree. Rounding can
    only decide between breakpoint pairs whose RSS agree to about 1e-12 (a flat RSS surface); see
    tests/test_baselines.py for the fit against statsmodels OLS."""
    rng = np.random.default_rng(n)
    t = np.r_[rng.normal(2, 0.4, n - n // 5), rng.normal(3.5, 0.5, n // 5)]
    x = np.sort(t[rng.integers(0, n, (300, n))], axis=1)
    if n > 250:  # the search runs on 250 order statistics (as _rcf_batch)
        x = x[:, np.round(np.linspace(0, n - 1, 250)).astype(int)]
    y = bl._rcf_xy(x)
    d1, d2, d_rss, d_beta = bl._segmented_search(x, y, rss_fn=bl._segmented_rss)
    f1, f2, f_rss, f_beta = bl._segmented_search(x, y)
    same = (d1 == f1) & (d2 == f2)
    assert same.sum() >= 299
    np.testing.assert_allclose(f_rss[same], d_rss[same], rtol=1e-6)
    np.testing.assert_allclose(f_beta[same], d_beta[same], rtol=1e-6, atol=1e-6)


def test_small_samples_keep_the_direct_breakpoint_sums():
    """Samples up to the size of the shipped regions (Jura 259, Meuse 155 values) use the direct hinge
    sums (the earlier code), so their intervals are the earlier numbers to the last digit; checked
    against the search forced onto the direct sums for a seeded 259-value sample."""
    assert bl._rss_for(259) is bl._segmented_rss and bl._rss_for(5000) is bl._segmented_rss_fast
    rng = np.random.default_rng(9)
    t = np.sort(np.r_[rng.normal(2, 0.4, 207), rng.normal(3.5, 0.5, 52)][rng.integers(0, 259, (200, 259))], axis=1)
    base, up, _, _, (p1, p2, _) = bl._rcf_batch(t)
    cols = np.round(np.linspace(0, 258, 250)).astype(int)  # the 250 order statistics the search runs on
    d1, d2, _, _ = bl._segmented_search(t[:, cols], bl._rcf_xy(t)[:, cols], rss_fn=bl._segmented_rss)
    np.testing.assert_array_equal(p1, d1)
    np.testing.assert_array_equal(p2, d2)
