"""Tests of hmlib.censored against independent implementations, published tables and seeded truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlib import censored as cz


def _multi_dl(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(0.0, 1.0, n))
    dl = rng.choice([0.3, 0.6, 1.0], n)
    c = x < dl
    return np.where(c, dl, x), c


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_km_matches_lifelines_on_flipped_data(seed):
    """Checked against lifelines (independent Kaplan-Meier): left-censored data flipped to
    right-censored T = M - x; the KM mean is M minus lifelines' restricted mean survival time up to
    the largest flipped time, and the estimated P(X < u) equals lifelines' survival function."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import restricted_mean_survival_time

    x, c = _multi_dl(seed)
    M = x.max() + 1.0
    T = M - x
    kmf = KaplanMeierFitter().fit(T, event_observed=~c)
    rmst = restricted_mean_survival_time(kmf, t=T.max())
    km = cz.kaplan_meier(x, c)
    assert km.mean == pytest.approx(M - rmst, rel=1e-9)
    u = np.unique(x[~c])
    sf = kmf.survival_function_at_times(M - u).to_numpy()  # P(T > M - u) = P(X < u)
    cdf_below = np.array([km.mass[km.support < v].sum() for v in u])
    assert np.allclose(cdf_below, sf, atol=1e-12)


def test_km_without_censoring_is_sample_mean_sd_se():
    """No non-detects: KM mean, SD and SE equal numpy's mean, SD (ddof 1) and SD / sqrt(n)."""
    x = np.random.default_rng(5).gamma(2.0, 3.0, 37)
    km = cz.kaplan_meier(x, np.zeros(x.size, bool))
    assert km.mean == pytest.approx(x.mean())
    assert km.sd == pytest.approx(x.std(ddof=1))
    assert km.se == pytest.approx(x.std(ddof=1) / np.sqrt(x.size))


def test_km_single_dl_hand_computed():
    """Data 1, 2, 3, <2 (one DL of 2): by hand, at u = 3: 4 at risk, 1 event -> P(X<3) = 3/4; at u = 2:
    3 at risk (1, 2 and <2), 1 event -> P(X<2) = 3/4 * 2/3 = 1/2; at u = 1: 1 at risk, 1 event -> 0.
    Masses: 3 -> 1/4, 2 -> 1/4, 1 -> 1/2; mean = 0.75 + 0.5 + 0.5 = 1.75."""
    km = cz.kaplan_meier([1.0, 2.0, 3.0, 2.0], [False, False, False, True])
    assert km.mean == pytest.approx(1.75)
    assert dict(zip(km.support.tolist(), km.mass.tolist())) == pytest.approx({1.0: 0.5, 2.0: 0.25, 3.0: 0.25})


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ros_matches_statsmodels_with_several_dls(seed):
    """Checked against statsmodels.imputation.ros.impute_ros (independent robust ROS with
    Hirsch-Stedinger plotting positions): identical sorted values for three detection limits."""
    from statsmodels.imputation.ros import impute_ros

    x, c = _multi_dl(seed)
    ours = cz.ros_impute(x, c)
    assert np.allclose(np.sort(ours), np.sort(impute_ros(x, c)), rtol=1e-10)
    assert np.array_equal(ours[~c], x[~c])  # detects untouched, input order kept


@pytest.mark.parametrize("n, k", [(10, 2.911), (20, 2.396), (30, 2.220), (50, 2.065)])
def test_tolerance_factor_matches_published_table(n, k):
    """One-sided 95 % coverage / 95 % confidence normal tolerance factors as tabulated by
    Natrella (1963, NBS Handbook 91, Table A-7) and in the ProUCL 5.2 guide."""
    assert cz.normal_tolerance_factor(n) == pytest.approx(k, abs=1.5e-3)


def test_nonparametric_utl_ranks_known_sample_sizes():
    """Known results (Conover 1999; ProUCL 5.2 guide): the maximum of 59 values is a 95-95 UTL
    (confidence 1 - 0.95^59 = 0.9515); 58 values fall short; the second largest needs n = 93."""
    assert cz.nonparametric_utl_rank(59) == (59, pytest.approx(1 - 0.95 ** 59))
    r, conf = cz.nonparametric_utl_rank(58)
    assert r == 58 and conf < 0.95
    assert cz.nonparametric_utl_rank(93)[0] == 92
    assert cz.nonparametric_utl_rank(92)[0] == 92


def test_ucl_and_utl_coverage_on_seeded_normal_and_gamma_samples():
    """Seeded truth: for normal samples (mu 10, sd 2, n 25) the UCL95 covers the mean and the UTL95-95
    exceeds the true 95th percentile in about 95 % of 400 repetitions; for gamma samples (shape 3, scale 2)
    the gamma UCL covers the true mean 6 in 90-99 % of them (the approximate gamma UCL is approximate)."""
    rng = np.random.default_rng(11)
    cov_ucl = cov_utl = cov_g = 0
    q95 = 10 + 1.6448536 * 2
    for _ in range(400):
        x = rng.normal(10, 2, 25)
        no = np.zeros(x.size, bool)
        cov_ucl += cz.ucl95(x, no, distribution="normal")[0] >= 10
        cov_utl += cz.btv(x, no, distribution="normal")["utl95_95"] >= q95
        g = rng.gamma(3.0, 2.0, 25)
        cov_g += cz.ucl95(g, no, distribution="gamma")[0] >= 6.0
    assert 0.92 <= cov_ucl / 400 <= 0.98
    assert 0.92 <= cov_utl / 400 <= 0.98
    assert 0.90 <= cov_g / 400 <= 0.99


def test_choose_distribution_on_seeded_samples():
    """Seeded truth: normal data -> normal; strongly skewed lognormal data (sd log 1.2) -> lognormal."""
    rng = np.random.default_rng(2)
    assert cz.choose_distribution(rng.normal(50, 5, 40))[0] == "normal"
    assert cz.choose_distribution(np.exp(rng.normal(0, 1.2, 80)))[0] == "lognormal"


def test_background_statistics_table_and_dl_recovery():
    """Schema of the table; without a detection_limit column the DL is value / factor (DL/2 rule),
    which gives the same statistics as the explicit DL (checked against the direct call)."""
    x, c = _multi_dl(4, n=50)
    long = pd.DataFrame({"sample_id": [f"S{i}" for i in range(50)], "medium": "soil", "metal": "Cd",
                         "value": np.where(c, 0.5 * x, x), "unit": "mg/kg", "censored": c,
                         "detection_limit": np.where(c, x, np.nan)})
    t1 = cz.background_statistics(long, n_bootstrap=200, seed=1)
    t2 = cz.background_statistics(long.drop(columns="detection_limit"), substitution_factor=0.5,
                                  n_bootstrap=200, seed=1)
    assert list(t1.columns) == cz.STAT_COLUMNS
    pd.testing.assert_frame_equal(t1, t2)
    row = t1.iloc[0]
    assert row["n"] == 50 and row["n_censored"] == int(c.sum())
    assert row["detection_limits"] == "0.3; 0.6; 1"
    assert row["km_mean"] == pytest.approx(cz.kaplan_meier(x, c).mean)
    assert row["distribution"] in {"normal", "gamma", "lognormal", "nonparametric"}
    assert row["km_mean"] < row["ucl95"] and row["upl95"] <= row["utl95_95"] <= row["usl95"]
