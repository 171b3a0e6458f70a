"""Tests of hmlib.baselines: hand-computed values for every method on small arrays."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from hmlib import baselines as bl

RAW = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 100], dtype=float)


# --- IMEA ---------------------------------------------------------------------------------------
def test_imea_hand_computed_raw():
    """By hand: pass 1 mean 14.5, SD 30.07 -> 100 is beyond 14.5 + 60.1 and is dropped; pass 2 on
    1..9: mean 5, SD sqrt(7.5) = 2.7386, band [-0.48, 10.48] keeps all -> stop."""
    e = bl.iterative_mean_baseline(RAW, log_transform=False)
    assert e.baseline == pytest.approx(5.0)
    assert e.upper_limit == pytest.approx(5.0 + 2 * np.sqrt(7.5))
    assert (e.n_retained, e.n_total) == (9, 10)
    assert e.retained.tolist() == [True] * 9 + [False]


def test_imea_log_back_transforms():
    """Same numbers on the log scale: the baseline is exp(5) (geometric mean of the retained)."""
    e = bl.iterative_mean_baseline(np.exp(RAW), log_transform=True)
    assert e.baseline == pytest.approx(np.exp(5.0))
    assert e.upper_limit == pytest.approx(np.exp(5.0 + 2 * np.sqrt(7.5)))


# --- IMED ---------------------------------------------------------------------------------------
def test_imed_hand_computed_raw():
    """By hand: median 5.5, |deviations| median 2.5, MAD = 1.4826 * 2.5 = 3.7065, band
    5.5 +/- 7.41 drops 100; then on 1..9: median 5, |dev| median 2, MAD 2.9652, all kept."""
    e = bl.iterative_median_baseline(RAW, log_transform=False)
    mad = 2.0 * 1.482602218505602
    assert e.baseline == pytest.approx(5.0)
    assert e.upper_limit == pytest.approx(5.0 + 2 * mad)
    assert e.n_retained == 9
    # the scale factor is scipy's 'normal' scaling (independent implementation)
    assert stats.median_abs_deviation(RAW[:9], scale="normal") == pytest.approx(mad)


def test_imed_mad_zero_falls_back_and_flags():
    """40 of 70 values tied at a substituted detection limit: the MAD of the first pass is 0. By hand
    the fallback scale sqrt(pi/2) * mean|t - median| is positive, so the upper limit exceeds the
    baseline and the fallback is flagged; when every retained value ties (all 20 equal) the method
    is undefined and raises rather than returning baseline = upper limit."""
    rng = np.random.default_rng(5)
    c = np.r_[np.full(40, 0.05), np.exp(rng.normal(-1.5, 0.4, 30))]
    t = np.log(c)
    scale0 = np.sqrt(np.pi / 2) * np.mean(np.abs(t - np.median(t)))
    assert stats.median_abs_deviation(t) == 0.0 and scale0 > 0
    e = bl.iterative_median_baseline(c)
    assert e.details["mad_zero_fallback"]
    assert e.upper_limit > e.baseline
    with pytest.raises(ValueError, match="IMED undefined"):
        bl.iterative_median_baseline(np.r_[np.full(20, 0.05), 0.5, 0.6, 5.0])


# --- Boxplot ------------------------------------------------------------------------------------
def test_boxplot_hand_computed_raw():
    """Type-7 quartiles of 1..9,100: Q1 = 3 + 0.25 = 3.25, Q3 = 7 + 0.75 = 7.75, IQR 4.5;
    fences -3.5 and 14.5; 100 is out; median of 1..9 = 5; upper limit = 14.5."""
    e = bl.boxplot_baseline(RAW, log_transform=False)
    assert e.baseline == pytest.approx(5.0)
    assert e.upper_limit == pytest.approx(14.5)
    assert e.n_retained == 9


def test_boxplot_log():
    e = bl.boxplot_baseline(np.exp(RAW))
    assert e.baseline == pytest.approx(np.exp(5.0))
    assert e.upper_limit == pytest.approx(np.exp(14.5))


# --- RCF ----------------------------------------------------------------------------------------
def _three_segment_ecdf():
    """x with 10 points on [0, 1), 60 on [1, 2), 10 on [2, 3): the cumulative frequency 100 i/80
    is then exactly continuous piecewise linear with breakpoints at x = 1 and x = 2 (slopes
    12.5, 75 and 12.5 % per unit; worked out by hand)."""
    return np.r_[np.arange(10) / 10, 1 + np.arange(60) / 60, 2 + np.arange(10) / 10]


def test_segmented_fit_recovers_exact_breakpoints():
    x = _three_segment_ecdf()
    y = 100 * np.arange(1, 81) / 80
    f = bl.segmented_fit(x, y)
    assert f["psi1"] == pytest.approx(1.0, abs=0.005)
    assert f["psi2"] == pytest.approx(2.0, abs=0.005)
    assert f["coefficients"][1] == pytest.approx(12.5, rel=0.02)
    assert f["rss"] == pytest.approx(0.0, abs=1.0)


def test_segmented_fit_rss_matches_statsmodels_ols():
    """For the breakpoints found, the RSS equals an independent OLS (statsmodels) on the hinge design."""
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 10, 120))
    y = 2 + 0.5 * x + 3 * np.maximum(x - 3, 0) - 3.2 * np.maximum(x - 7, 0) + rng.normal(0, 0.3, x.size)
    f = bl.segmented_fit(x, y)
    X = sm.add_constant(np.column_stack([x, np.maximum(x - f["psi1"], 0), np.maximum(x - f["psi2"], 0)]))
    ols = sm.OLS(y, X).fit()
    assert f["rss"] == pytest.approx(ols.ssr, rel=1e-6)
    assert np.allclose(f["coefficients"], ols.params, rtol=1e-5, atol=1e-6)
    assert f["psi1"] == pytest.approx(3, abs=0.4) and f["psi2"] == pytest.approx(7, abs=0.4)


def test_rcf_baseline_reads_the_break_closing_the_background_segment():
    """Exact three-segment curve (breaks at x = 1 and 2, 60 of 80 values in the middle segment): the
    middle segment is the background population, so the baseline is the break at its upper end,
    e^2, and the upper limit the same break (Matschullat et al. 2000: values below the break in slope
    belong to the background population). Truth worked out by hand from the construction."""
    x = _three_segment_ecdf()
    e = bl.rcf_baseline(np.exp(x))
    assert e.details["background_segment"] == 2
    assert e.details["psi1"] == pytest.approx(1.0, abs=0.01)
    assert e.baseline == pytest.approx(np.e ** 2, rel=0.03)
    assert e.upper_limit == pytest.approx(np.e ** 2, rel=0.03)
    assert e.n_retained == int((x <= np.log(e.baseline)).sum())
    curve = bl.relative_cumulative_frequency(np.exp(x))
    assert curve["cumulative_frequency_pct"].iloc[-1] == pytest.approx(100.0)
    assert curve["transformed"].is_monotonic_increasing


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rcf_baseline_lies_between_two_populations(seed):
    """Seeded generator with known truth: 800 background values ln C ~ N(2, 0.3) and 200 anomalous
    ln C ~ N(4.5, 0.3). The RCF baseline separates the populations: above the background's upper
    quartile (2 + 0.674 * 0.3) and below the anomalous population's 5th percentile (4.5 - 1.645 * 0.3).
    The previous reading (lower breakpoint) put it near the background's 15th percentile."""
    rng = np.random.default_rng(seed)
    t = np.r_[rng.normal(2.0, 0.3, 800), rng.normal(4.5, 0.3, 200)]
    b = np.log(bl.rcf_baseline(np.exp(t)).baseline)
    assert 2.0 + 0.674 * 0.3 < b < 4.5 - 1.645 * 0.3


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_rcf_is_highest_method_on_data_like_wu2025(seed):
    """Data like Wu et al. (2025, Table 1): a log-normal background with a small enriched share
    (90 % ln C ~ N(3, 0.35), 10 % ~ N(3.8, 0.5)). There the RCF baseline is the highest of IMEA,
    IMED, RCF and boxplot for every metal; the published ratio RCF / IMEA is 1.02-2.5. Checked
    against that published ordering."""
    rng = np.random.default_rng(seed)
    c = np.exp(np.r_[rng.normal(3.0, 0.35, 270), rng.normal(3.8, 0.5, 30)])
    others = [f(c).baseline for f in (bl.iterative_mean_baseline, bl.iterative_median_baseline,
                                        bl.boxplot_baseline)]
    r = bl.rcf_baseline(c).baseline
    assert r > max(others)
    assert 1.02 < r / others[0] < 2.5


# --- EM -----------------------------------------------------------------------------------------
def test_em_recovers_two_population_mixture():
    """80 % background ln C ~ N(2, 0.3), 20 % contaminated ln C ~ N(4, 0.4): BIC picks two
    components; the background component's parameters are recovered; baseline = exp(mu) and
    upper = exp(mu + 1.95996 sd) by hand from the fitted parameters."""
    rng = np.random.default_rng(11)
    t = np.r_[rng.normal(2.0, 0.3, 800), rng.normal(4.0, 0.4, 200)]
    fit = bl.fit_em(np.exp(t), seed=1)
    assert fit.n_components == 2
    j = fit.background_component
    mu, sd = fit.model.means_[j, 0], np.sqrt(fit.model.covariances_[j, 0, 0])
    assert mu == pytest.approx(2.0, abs=0.05)
    assert sd == pytest.approx(0.3, abs=0.04)
    assert fit.model.weights_[j] == pytest.approx(0.8, abs=0.04)
    e = bl.em_baseline(np.exp(t), seed=1)
    assert e.baseline == pytest.approx(np.exp(mu))
    assert e.upper_limit == pytest.approx(np.exp(mu + 1.959963985 * sd))
    # classification: almost all of the first 800 are background, almost none of the last 200
    p = bl.em_background_probability(fit, np.exp(t))
    assert (p[:800] > 0.5).mean() > 0.97 and (p[800:] > 0.5).mean() < 0.05


def test_em_single_population_is_background():
    rng = np.random.default_rng(2)
    t = rng.normal(1.0, 0.5, 300)
    fit = bl.fit_em(np.exp(t), seed=0)
    assert fit.n_components == 1
    e = bl.em_baseline(np.exp(t), seed=0)
    assert e.baseline == pytest.approx(np.exp(t.mean()), rel=1e-6)
    assert e.n_retained == 300


def test_background_component_rule():
    # lowest-mean component with weight >= 0.4, else the heaviest
    assert bl._background_index(np.array([1.0, 2.0, 3.0]), np.array([0.3, 0.5, 0.2]), 0.4) == 1
    assert bl._background_index(np.array([1.0, 2.0, 3.0]), np.array([0.45, 0.35, 0.2]), 0.4) == 0
    assert bl._background_index(np.array([1.0, 2.0, 3.0]), np.array([0.3, 0.3, 0.39]), 0.4) == 2


# --- bootstrap ----------------------------------------------------------------------------------
def test_bootstrap_is_seeded_and_brackets_estimate():
    rng = np.random.default_rng(5)
    c = np.exp(rng.normal(3, 0.5, 150))
    for m in bl.METHODS:
        a = bl.bootstrap_baseline(c, method=m, n_bootstrap=200, seed=7)
        b = bl.bootstrap_baseline(c, method=m, n_bootstrap=200, seed=7)
        assert a == b
        assert a["ci_low"] < a["ci_high"]
        assert a["n_boot"] + a["n_failed"] == 200


def _imea_reference(t, k=2.0):
    """Plain-loop IMEA (independent of the batched implementation)."""
    kept = np.asarray(t, dtype=float)
    while True:
        m, s = kept.mean(), kept.std(ddof=1)
        new = kept[np.abs(kept - m) <= k * s]
        if new.size == kept.size:
            return m
        kept = new


def test_bootstrap_imea_matches_plain_loop():
    """The batched bootstrap equals a plain loop over the same resamples (same seeded draws:
    numpy default_rng(seed).integers(0, n, (B, n))) with a reference IMEA written for this test."""
    rng = np.random.default_rng(8)
    c = np.exp(np.r_[rng.normal(2.0, 0.4, 120), rng.normal(3.5, 0.3, 15)])
    B = 300
    ci = bl.bootstrap_baseline(c, method="imea", n_bootstrap=B, seed=1)
    t = np.log(c)
    idx = np.random.default_rng(1).integers(0, t.size, size=(B, t.size))
    ref = np.array([_imea_reference(t[i]) for i in idx])
    lo, hi = np.exp(np.quantile(ref, [0.025, 0.975]))
    assert ci["ci_low"] == pytest.approx(lo, rel=1e-9)
    assert ci["ci_high"] == pytest.approx(hi, rel=1e-9)


# --- input checks -------------------------------------------------------------------------------
def test_input_checks():
    with pytest.raises(ValueError, match="must be > 0"):
        bl.iterative_mean_baseline([0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        bl.boxplot_baseline(np.ones((3, 3)))
    with pytest.raises(ValueError, match="at least 3"):
        bl.boxplot_baseline([1.0, np.nan])
    with pytest.raises(ValueError, match="RCF undefined"):
        bl.rcf_baseline(np.ones(20))
    with pytest.raises(ValueError, match="method must be one of"):
        bl.bootstrap_baseline(RAW, method="mean")


# --- tables and recommendation -------------------------------------------------------------------
def _long(values: dict[str, np.ndarray], medium="soil") -> pd.DataFrame:
    rows = []
    for metal, v in values.items():
        for i, x in enumerate(v):
            rows.append({"sample_id": f"S{i:03d}", "medium": medium, "metal": metal, "value": x, "unit": "mg/kg"})
    return pd.DataFrame(rows)


def test_baseline_table_schema_strata_and_skips():
    rng = np.random.default_rng(4)
    n = 60
    conc = _long({"Pb": np.exp(rng.normal(3, 0.4, n)), "Cd": np.exp(rng.normal(-1, 0.5, n))})
    strata = pd.DataFrame({"sample_id": [f"S{i:03d}" for i in range(n)], "medium": "soil",
                           "Rock": ["A"] * 52 + ["B"] * 8})
    table, skipped = bl.baseline_table(conc, strata=strata, n_bootstrap=50, seed=3, methods=["imea", "boxplot", "em"])
    for col in ["medium", "stratum", "metal", "method", "baseline", "upper_limit", "ci_low", "ci_high",
                "n_retained", "n_total", "unit", "recommended"]:
        assert col in table.columns
    assert set(table["stratum"]) == {"all", "Rock=A"}
    assert set(skipped["stratum"]) == {"Rock=B"} and (skipped["n_total"] == 8).all()
    assert (table.groupby(["stratum", "metal"])["recommended"].sum() == 1).all()
    assert (table["baseline"] <= table["upper_limit"]).all()
    # the 'all' rows equal the single-sample functions on the same values
    v = conc.loc[conc["metal"] == "Pb", "value"].to_numpy()
    row = table[(table["stratum"] == "all") & (table["metal"] == "Pb") & (table["method"] == "imea")].iloc[0]
    assert row["baseline"] == pytest.approx(bl.iterative_mean_baseline(v).baseline)
    assert row["n_total"] == n and row["unit"] == "mg/kg"


def test_recommend_median_method_and_even_tiebreak():
    t = pd.DataFrame({"medium": "soil", "stratum": "all", "metal": "Pb",
                      "method": ["imea", "imed", "rcf", "boxplot", "em"],
                      "baseline": [10.0, 12.0, 20.0, 11.0, 9.0],
                      "ci_low": [9, 11, 18, 10, 8.0], "ci_high": [11, 13, 22, 12, 10.0]})
    r = bl.recommend_methods(t)
    assert r.loc[r["recommended"], "method"].tolist() == ["boxplot"]  # sorted 9,10,11,12,20 -> 11
    t4 = t[t["method"] != "em"].copy()  # 10, 11, 12, 20: middle pair boxplot (11), imed (12)
    r4 = bl.recommend_methods(t4)
    assert r4.loc[r4["recommended"], "method"].tolist() == ["imed"]  # rel. CI 2/12 < 2/11
    t4.loc[t4["method"] == "boxplot", ["ci_low", "ci_high"]] = [10.9, 11.1]  # narrower relative CI
    r4 = bl.recommend_methods(t4)
    assert r4.loc[r4["recommended"], "method"].tolist() == ["boxplot"]  # middle pair: 11 and 12


def test_compare_with_literature():
    t = pd.DataFrame({"metal": ["Pb", "Cd"], "baseline": [34.0, 0.2]})
    out = bl.compare_with_literature(t, pd.Series({"Pb": 17.0}))
    assert out["ratio_to_literature"].iloc[0] == pytest.approx(2.0)
    assert np.isnan(out["literature"].iloc[1])
    assert "literature" not in t.columns


def test_options_model():
    from hmlib.stages.baselines import Options

    o = Options()
    assert o.n_bootstrap == 1000 and o.methods == list(bl.METHODS)
    assert o.adaptive_coordinates is False and o.adaptive_training == "robust"
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Options(n_bootstrap=100)
    with pytest.raises(ValidationError):
        Options(methods=["imea", "imea"])


def test_batched_em_matches_scikit_learn():
    """The batched EM of the bootstrap converges to the same mixture as scikit-learn's
    GaussianMixture started from the same parameters (independent implementation)."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(21)
    t = np.r_[rng.normal(1.0, 0.3, 150), rng.normal(2.5, 0.4, 50)]
    w0, mu0, var0 = np.array([0.5, 0.5]), np.array([0.8, 2.0]), np.array([0.2, 0.2])
    tb = np.vstack([t, t[rng.integers(0, t.size, t.size)]])
    w, mu, var = bl._em_batch(tb, w0, mu0, var0, tol=1e-10, max_iter=2000)
    for b in range(2):
        g = GaussianMixture(2, weights_init=w0, means_init=mu0[:, None], precisions_init=(1 / var0)[:, None, None],
                            tol=1e-10, max_iter=2000, reg_covar=1e-6).fit(tb[b][:, None])
        assert np.allclose(mu[b], g.means_[:, 0], atol=1e-5)
        assert np.allclose(var[b], g.covariances_[:, 0, 0], atol=1e-5)
        assert np.allclose(w[b], g.weights_, atol=1e-5)


def test_binned_em_matches_scikit_learn_on_repeated_values():
    """The weighted (binned) EM of the large-sample bootstrap equals scikit-learn's GaussianMixture
    fitted to the values repeated as often as their counts (independent implementation)."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(8)
    centres = np.linspace(0.0, 4.0, 60)
    dens = 0.7 * stats.norm.pdf(centres, 1.2, 0.4) + 0.3 * stats.norm.pdf(centres, 3.0, 0.5)
    counts = rng.multinomial(2000, dens / dens.sum())[None, :]
    w0, mu0, var0 = np.array([0.5, 0.5]), np.array([1.0, 2.5]), np.array([0.3, 0.3])
    w, mu, var = bl._em_batch(centres[None, :], w0, mu0, var0, counts=counts, tol=1e-10, max_iter=3000)
    g = GaussianMixture(2, weights_init=w0, means_init=mu0[:, None], precisions_init=(1 / var0)[:, None, None],
                        tol=1e-10, max_iter=3000, reg_covar=1e-6).fit(np.repeat(centres, counts[0])[:, None])
    assert np.allclose(mu[0], g.means_[:, 0], atol=1e-5)
    assert np.allclose(var[0], g.covariances_[:, 0, 0], atol=1e-5)
    assert np.allclose(w[0], g.weights_, atol=1e-5)


def test_imea_prefix_sum_batch_matches_masked_reference():
    """The prefix-sum IMEA of the bootstrap equals a plain masked implementation of the rule
    (numpy nanmean / nanstd over the kept values, written here) on 50 resamples of a mixture."""
    rng = np.random.default_rng(12)
    t = np.r_[rng.normal(3, 0.4, 900), rng.normal(4.5, 0.6, 100)]
    tb = t[rng.integers(0, t.size, (50, t.size))]
    keep = np.ones_like(tb, dtype=bool)
    while True:
        x = np.where(keep, tb, np.nan)
        m, s = np.nanmean(x, 1, keepdims=True), np.nanstd(x, 1, ddof=1, keepdims=True)
        new = keep & (np.abs(tb - m) <= 2 * s)
        if np.array_equal(new, keep):
            break
        keep = new
    x = np.where(keep, tb, np.nan)
    m, s = np.nanmean(x, 1), np.nanstd(x, 1, ddof=1)
    base, up, n_ret, kept, _ = bl._imea_batch(tb)
    assert np.allclose(base, m, atol=1e-12) and np.allclose(up, m + 2 * s, atol=1e-12)
    assert np.array_equal(kept, keep) and np.array_equal(n_ret, keep.sum(1))
