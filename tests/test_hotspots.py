"""Tests of hmlib.hotspots (global Moran's I, LISA, Getis-Ord Gi*)."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from hmlib import hotspots as hs


def _lattice(n_side: int = 12):
    xs, ys = np.meshgrid(np.arange(n_side, dtype=float), np.arange(n_side, dtype=float))
    return xs.ravel(), ys.ravel()


def test_global_moran_hand_computed_line():
    """Four points on a line, values (1, 2, 3, 4), k = 1 nearest neighbour (ties broken by libpysal),
    row-standardised: I = n/S0 * sum_ij w_ij d_i d_j / sum d_i^2 computed independently from the weights
    matrix in the test; esda's value and ours must agree with it."""
    x = np.array([0.0, 1.0, 2.1, 3.3])
    y = np.zeros(4)
    z = np.array([1.0, 2.0, 3.0, 4.0])
    w = hs.knn_weights(x, y, k=1)
    W = w.full()[0]
    d = z - z.mean()
    expected = 4 / W.sum() * (d @ W @ d) / (d @ d)
    res = hs.global_moran(z, w, n_permutations=99, seed=1)
    assert res["I"] == pytest.approx(expected)
    assert res["expected_I"] == pytest.approx(-1 / 3)


def test_global_moran_permutation_p_detects_clustering_and_is_seeded():
    x, y = _lattice()
    rng = np.random.default_rng(0)
    smooth = x + y + rng.normal(0, 1, x.size)
    w = hs.knn_weights(x, y, k=4)
    r = hs.global_moran(smooth, w, n_permutations=199, seed=3)
    assert r["I"] > 0.5 and r["p_perm"] == pytest.approx(1 / 200)
    noise = rng.normal(0, 1, x.size)
    r1 = hs.global_moran(noise, w, n_permutations=199, seed=3)
    assert r1["p_perm"] > 0.01
    assert r1 == hs.global_moran(noise, w, n_permutations=199, seed=3)


def test_local_statistics_equal_esda_and_find_a_planted_hotspot():
    """LISA I_i equals esda.Moran_Local; our Gi* z equals esda.G_Local(star=True, binary).Zs for positive
    data; a block of high values is a High-High cluster and a Gi* hot spot; a low block a cold spot."""
    from esda import G_Local, Moran_Local

    x, y = _lattice()
    rng = np.random.default_rng(1)
    z = rng.lognormal(0, 0.3, x.size)
    hot = (x < 4) & (y < 4)
    cold = (x > 7) & (y > 7)
    z[hot] *= 4
    z[cold] /= 4
    w = hs.knn_weights(x, y, k=8)
    res = hs.local_hotspots(z, w, n_permutations=199, seed=2)
    np.testing.assert_allclose(res["lisa_I"], Moran_Local(z, w, permutations=0).Is)
    np.testing.assert_allclose(res["gi_z"], G_Local(z, copy.deepcopy(w), transform="B", star=True,
                                                    permutations=0).Zs)
    assert w.transform == "R"      # the caller's weights are left as they were
    inner_hot = (x > 0) & (x < 3) & (y > 0) & (y < 3)
    assert (res.loc[inner_hot, "lisa_cluster"] == "High-High").all()
    assert (res.loc[inner_hot, "gi_class"] == "hot spot").all()
    inner_cold = (x > 8) & (x < 11) & (y > 8) & (y < 11)
    assert (res.loc[inner_cold, "gi_class"] == "cold spot").all()


def test_local_p_values_are_calibrated_under_randomness():
    """Under spatial randomness pseudo p-values are roughly uniform: about 5 % below 0.05."""
    x, y = _lattice(15)
    z = np.random.default_rng(4).normal(0, 1, x.size)
    res = hs.local_hotspots(z, hs.knn_weights(x, y, k=6), n_permutations=199, seed=5)
    assert (res["lisa_p"] < 0.05).mean() < 0.12
    assert (res["gi_p"] < 0.05).mean() < 0.12
    assert res["lisa_p"].between(1 / 200, 1).all()


def test_conditional_draws_never_include_the_focal_sample():
    """Conditional randomisation draws neighbours from the other n - 1 samples only."""
    n = 30
    vals = np.zeros(n)
    vals[7] = 1e6
    nbr = [np.arange(5) for _ in range(n)]
    wts = [np.ones(5) for _ in range(n)]
    sims = hs._conditional_sums(vals, nbr, wts, n_permutations=300, rng=np.random.default_rng(0))
    assert sims[7].max() == 0.0
    assert sims[0].max() == 1e6        # other samples can draw sample 7


def test_summary_and_input_checks():
    x, y = _lattice(6)
    w = hs.knn_weights(x, y, k=4)
    with pytest.raises(ValueError, match="expected 36 values"):
        hs.global_moran(np.ones(5), w)
    with pytest.raises(ValueError, match="fewer neighbours"):
        hs.knn_weights([0, 1], [0, 1], k=4)
    z = x * 1.0 + 1
    loc = hs.local_hotspots(z, w, n_permutations=99, seed=0).assign(metal="Cd")
    mo = pd.DataFrame([{"metal": "Cd", "scale": "raw", **hs.global_moran(z, w, n_permutations=99)}])
    s = hs.hotspot_summary(mo, loc)
    assert s.loc[0, "High-High"] == (loc["lisa_cluster"] == "High-High").sum()
