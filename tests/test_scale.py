"""Survey-scale shortcuts against the exact computations they replace, on small data.

Each fast path of the scale work (issue: survey-scale runs) is checked against an independent,
direct implementation of the same estimator (plain per-resample loops, ``np.median``, the
Kaplan-Meier statistic through ``scipy.stats.bootstrap`` as before), and the survey generator
against its own stated design.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hmlib import baselines as bl
from hmlib import censored as cz


def _imed_direct(row: np.ndarray, k: float = 2.0, max_iter: int = 200):
    """IMED by the book on one resample: np.median, scaled MAD, fallback to the mean absolute
    deviation when the MAD is 0 (then stop after that pass), trimming until nothing changes."""
    keep = np.ones(row.size, bool)
    scale = 1.0 / stats.norm.ppf(0.75)
    frozen = False
    for _ in range(max_iter):
        x = row[keep]
        med = np.median(x)
        mad = scale * np.median(np.abs(x - med))
        zero = not mad > 0
        if zero:
            mad = np.sqrt(np.pi / 2) * np.mean(np.abs(x - med))
        new = keep & (np.abs(row - med) <= k * mad)
        if frozen:
            new = keep
        frozen = frozen or zero
        if np.array_equal(new, keep):
            break
        keep = new
    x = row[keep]
    med = np.median(x)
    mad = scale * np.median(np.abs(x - med))
    if not mad > 0:
        mad = np.sqrt(np.pi / 2) * np.mean(np.abs(x - med))
    return med, med + k * mad, keep


@pytest.mark.parametrize("ties", [False, True])
def test_imed_range_form_matches_direct_iteration(ties):
    """The O(n)-per-pass IMED (retained range of the sorted rows, MAD as the median of two monotone
    runs) against the direct per-resample iteration with np.median: same retained samples, and
    baseline and upper limit equal to 1e-12 (ties: half the values at one substituted level)."""
    rng = np.random.default_rng(11)
    for n in (7, 40, 301):
        t = rng.normal(0, 1, (25, n))
        t[:, :2] += 6  # outliers to trim
        if ties:
            t[:, : n // 2 + 1] = -1.0
            t = np.round(t, 1)
        base, up, n_ret, keep, _ = bl._imed_batch(t)
        for b in range(t.shape[0]):
            m, u, kp = _imed_direct(t[b])
            assert keep[b].tolist() == kp.tolist()
            assert n_ret[b] == kp.sum()
            if np.isfinite(base[b]):
                assert base[b] == pytest.approx(m, abs=1e-12)
                assert up[b] == pytest.approx(u, abs=1e-12)


def test_count_below_matches_direct_count():
    """Row-wise bisection count against (xs < v).sum() and (xs <= v).sum(), with ties and NaN."""
    rng = np.random.default_rng(5)
    for n in (1, 2, 9, 200):
        xs = np.sort(np.round(rng.normal(0, 1, (30, n)), 1), axis=1)
        v = rng.normal(0, 1, 30)
        v[::7] = np.nan
        v[1] = xs[1, n // 2]
        assert np.array_equal(bl._count_below(xs, v, strict=True), (xs < v[:, None]).sum(1))
        assert np.array_equal(bl._count_below(xs, v, strict=False), (xs <= v[:, None]).sum(1))


def test_imea_bootstrap_unchanged_by_bisection_counts():
    """IMEA batch with bisection counts against the same iteration with direct masked counts
    (mean and SD of the retained values recomputed per resample with numpy)."""
    rng = np.random.default_rng(2)
    t = np.log(np.exp(rng.normal(3, 0.5, (40, 500))) + rng.exponential(5, (40, 500)) * (rng.random((40, 500)) < .2))
    base, up, n_ret, keep, _ = bl._imea_batch(t)
    for b in range(t.shape[0]):
        kp = np.ones(t.shape[1], bool)
        while True:
            x = t[b, kp]
            m, s = x.mean(), x.std(ddof=1)
            new = kp & (t[b] >= m - 2 * s) & (t[b] <= m + 2 * s)
            if np.array_equal(new, kp):
                break
            kp = new
        assert keep[b].tolist() == kp.tolist()
        assert base[b] == pytest.approx(t[b, kp].mean(), rel=1e-12)


@pytest.mark.parametrize("n", [30, 400])
def test_ucl_bca_without_non_detects_matches_km_statistic(n):
    """UCL95 by BCa bootstrap without non-detects (vectorised sample mean) against scipy's BCa
    bootstrap of the Kaplan-Meier mean with the same seed (the previous, O(n^2 log n) route):
    equal to 1e-12 relative."""
    rng = np.random.default_rng(n)
    x = np.exp(rng.normal(2.0, 0.3, n))
    c = np.zeros(n, bool)
    ucl, how, _ = cz.ucl95(x, c, distribution="lognormal", n_bootstrap=500, seed=9)
    ref = stats.bootstrap((x, c.astype(float)), lambda a, b: cz.kaplan_meier(a, b.astype(bool)).mean,
                          paired=True, vectorized=False, n_resamples=500, confidence_level=0.9, method="BCa",
                          random_state=np.random.default_rng(9))
    assert "BCa" in how
    assert ucl == pytest.approx(float(ref.confidence_interval.high), rel=1e-12)


def test_survey_generator_matches_its_stated_design():
    """The survey generator against its documented model: the sample and grid counts asked for,
    every sample's concentration equal to (background + anthropogenic input) times lognormal noise
    of log-SD 0.10, no anthropogenic input for Co, Cr and Ni, both covariates known at every grid
    cell, and the same tables from the same seed."""
    from hmlib.synth.survey import METALS, generate

    d = generate(n_samples=400, n_grid=2500, seed=3)
    s, g, tr = d["samples"], d["grid"], d["truth"]
    assert len(s) == 400 and len(g) == 2500
    assert set(METALS) <= set(s.columns) and {"Landuse", "Rock"} <= set(g.columns)
    assert g[["Landuse", "Rock"]].notna().all().all()
    for m in METALS:
        t = tr[tr["metal"] == m].set_index("sample_id")
        ratio = np.log(s.set_index("sample_id")[m] / (t["background_mg_kg"] + t["anthropogenic_mg_kg"]))
        assert abs(ratio.mean()) < 0.02 and ratio.std() == pytest.approx(0.10, abs=0.015)
        if m in ("Co", "Cr", "Ni"):
            assert (t["anthropogenic_mg_kg"] == 0).all()
    again = generate(n_samples=400, n_grid=2500, seed=3)
    assert again["samples"].equals(s)


def test_sparse_gp_prediction_in_chunks_equals_one_block():
    """Grid prediction of the sparse GP in chunks (memory independent of the grid size) against the
    same prediction in one block: equal to 1e-10 (the chunks only split the query points)."""
    from hmlib.background import fit_sparse_gp

    rng = np.random.default_rng(4)
    x = rng.uniform(0, 10, (300, 2))
    y = np.sin(x[:, 0]) + 0.1 * rng.normal(size=300)
    gp = fit_sparse_gp(x, y, n_inducing=50, max_exact=100, seed=1)
    q = rng.uniform(0, 10, (1000, 2))
    mu1, sd1 = gp.predict(q, chunk=10**9)
    mu2, sd2 = gp.predict(q, chunk=77)
    np.testing.assert_allclose(mu2, mu1, rtol=0, atol=1e-10)
    np.testing.assert_allclose(sd2, sd1, rtol=0, atol=1e-10)


def test_km_mean_rows_matches_kaplan_meier():
    """Row-wise Kaplan-Meier mean (bootstrap and jackknife at once) against ``kaplan_meier`` (itself
    checked against lifelines) on seeded rows with ties and several detection limits: 1e-12."""
    rng = np.random.default_rng(0)
    for t in range(200):
        n = int(rng.integers(3, 60))
        x = np.round(np.exp(rng.normal(1, 0.5, n)), 1)
        dl = rng.choice([1.5, 2.0, 2.5])
        c = (rng.random(n) < 0.3) | (x < dl)
        x = np.where(c, np.maximum(x, dl) if t % 2 else dl, x)
        if (~c).sum() < 1:
            continue
        assert cz._km_mean_rows(x[None], c[None])[0] == pytest.approx(cz.kaplan_meier(x, c).mean, rel=1e-12)


def test_ucl_bca_with_non_detects_matches_km_statistic():
    """UCL95 by BCa bootstrap with non-detects (row-wise KM) against scipy's BCa bootstrap calling
    ``kaplan_meier`` on each resample with the same seed: equal to 1e-12 relative."""
    rng = np.random.default_rng(1)
    x = np.exp(rng.normal(2.0, 0.3, 300))
    dl = np.quantile(x, 0.2)
    c = x < dl
    x = np.where(c, dl, x)
    ucl, how, _ = cz.ucl95(x, c, distribution="lognormal", n_bootstrap=300, seed=9)
    ref = stats.bootstrap((x, c.astype(float)), lambda a, b: cz.kaplan_meier(a, b.astype(bool)).mean,
                          paired=True, vectorized=False, n_resamples=300, confidence_level=0.9, method="BCa",
                          random_state=np.random.default_rng(9))
    assert how == "KM BCa bootstrap"
    assert ucl == pytest.approx(float(ref.confidence_interval.high), rel=1e-12)


def test_progress_label_names_the_stage_once(monkeypatch):
    """Console progress labels: the running stage's name once, whether or not the caller already
    wrote it (the doubled "spatial: spatial: metals" of the 4,000-sample benchmark log)."""
    from hmlib.progress import _label

    monkeypatch.setenv("HMLIB_STAGE", "spatial")
    assert _label("spatial: metals") == "spatial: metals"
    assert _label("metals") == "spatial: metals"
    monkeypatch.setenv("HMLIB_STAGE", "health")
    assert _label("health Monte Carlo") == "health Monte Carlo"
    monkeypatch.delenv("HMLIB_STAGE")
    assert _label("CV folds") == "CV folds"
