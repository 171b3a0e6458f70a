"""Survey-size paths of the baselines stage against the exact computations, on small seeded data."""
from __future__ import annotations

import numpy as np
import pytest
from test_scale import _imed_direct  # the by-the-book IMED iteration (np.median, scaled MAD)

from hmlib import background as bg
from hmlib import baselines as bl


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
    arr, extent = bg._raster(x[~drop], y[~drop], v[~drop])
    assert arr.shape == (30, 40)
    np.testing.assert_array_equal(arr.ravel()[~drop], v[~drop])
    assert np.isnan(arr.ravel()[drop]).all()
    assert extent[0] < x.min() < x.max() < extent[1] and extent[2] < y.min() < y.max() < extent[3]
    assert bg._raster(rng.random(500), rng.random(500), rng.random(500)) is None
