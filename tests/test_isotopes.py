"""Tests of hmlib.isotopes: binary linear mixing and Bayesian mixing (emcee and batch Metropolis)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlib import isotopes as iso
from hmlib.synth.sources import generate

EM = pd.DataFrame({"source": ["A", "A", "B", "B", "C", "C"],
                   "ratio": ["206Pb/207Pb", "208Pb/206Pb"] * 3,
                   "mean": [1.20, 2.06, 1.16, 2.11, 1.18, 2.00],
                   "sd": [0.004, 0.006, 0.003, 0.005, 0.004, 0.006]})


def test_two_endmember_exact_on_constructed_data():
    """R = f R_A + (1 - f) R_B constructed exactly; the shares come back exactly (float precision)."""
    f = np.array([0.0, 0.1, 0.37, 0.5, 0.99, 1.0])
    for ra, rb in ((1.20, 1.16), (2.06, 2.11)):
        r = f * ra + (1 - f) * rb
        assert np.allclose(iso.two_endmember_share(r, ratio_a=ra, ratio_b=rb), f, atol=1e-12)
    samples = pd.DataFrame({"sample_id": list("uvwxyz"), "medium": "soil",
                            "r1": f * 1.20 + (1 - f) * 1.16, "r2": f * 2.06 + (1 - f) * 2.11})
    tab = iso.two_endmember_table(samples, EM, ratio_columns={"206Pb/207Pb": "r1", "208Pb/206Pb": "r2"},
                                  pair=("A", "B"))
    a = tab[tab.source == "A"]
    assert np.allclose(a["share"].to_numpy(), np.tile(f, 2), atol=1e-12)
    b = tab[tab.source == "B"]
    assert np.allclose(b["share"].to_numpy(), 1 - np.tile(f, 2), atol=1e-12)
    assert not tab["outside_range"].any()
    with pytest.raises(ValueError, match="differ"):
        iso.two_endmember_share([1.0], ratio_a=1.1, ratio_b=1.1)


def test_bayesian_interval_covers_true_share_emcee():
    """One sample mixed 30/70 from end-members A and B (two ratios): the emcee posterior's 95 %
    interval covers 0.3, and the posterior mean is near it."""
    srcs, mu, sd = iso.endmember_matrices(EM, ratios=["206Pb/207Pb", "208Pb/206Pb"], sources=["A", "B"])
    y = 0.3 * mu[0] + 0.7 * mu[1]
    post = iso.bayesian_mixing(y, endmember_mean=mu, endmember_sd=sd, residual_sd=0.001, seed=7, sources=srcs)
    assert post.ci_low[0] <= 0.3 <= post.ci_high[0]
    assert abs(post.mean[0] - 0.3) < 0.1
    assert np.allclose(post.draws.sum(axis=1), 1)
    assert 0.1 < post.acceptance < 0.9
    again = iso.bayesian_mixing(y, endmember_mean=mu, endmember_sd=sd, residual_sd=0.001, seed=7, sources=srcs)
    assert np.array_equal(post.draws, again.draws)  # seeded


def test_batch_metropolis_agrees_with_emcee_and_covers_truth():
    """Generated region (hmlib.synth.sources), two Pb-bearing sources: the batch Metropolis
    posterior means agree with emcee's within 0.03 and 95 % intervals cover >= 90 % of the true
    Pb shares."""
    d = generate(seed=4, n_soil=60, n_sediment=0, isotope_noise=0.001)
    s = d["samples"]
    em = d["endmembers"]
    ratios = {"206Pb/207Pb": "pb206_207", "208Pb/206Pb": "pb208_206"}
    tab = iso.bayesian_mixing_table(s, em, ratio_columns=ratios, residual_sd=0.001, seed=3,
                                    sources=["geogenic", "smelter"], n_steps=3000, burn=1000)
    truth = d["pb_shares"].melt(id_vars=["sample_id", "medium"], var_name="source", value_name="true")
    m = tab.merge(truth, on=["sample_id", "medium", "source"])
    cover = ((m["true"] >= m["ci_low"]) & (m["true"] <= m["ci_high"])).mean()
    assert cover >= 0.9
    srcs, mu, sd = iso.endmember_matrices(em, ratios=list(ratios), sources=["geogenic", "smelter"])
    for i in range(3):
        y = s.loc[i, list(ratios.values())].to_numpy(float)
        post = iso.bayesian_mixing(y, endmember_mean=mu, endmember_sd=sd, residual_sd=0.001, seed=i)
        batch = tab[(tab.sample_id == s.loc[i, "sample_id"]) & (tab.source == "geogenic")]["share"].iloc[0]
        assert abs(post.mean[0] - batch) < 0.03


def test_three_endmembers_and_input_checks():
    srcs, mu, sd = iso.endmember_matrices(EM, ratios=["206Pb/207Pb", "208Pb/206Pb"])
    f = np.array([0.2, 0.5, 0.3])
    y = f @ mu
    out = iso.metropolis_mixing_batch(y[None, :], endmember_mean=mu, endmember_sd=sd * 0.2, residual_sd=0.0005,
                                      seed=1, n_steps=3000, burn=1000)
    assert np.allclose(out["mean"].sum(axis=1), 1)
    assert (out["ci_low"][0] <= f).all() and (f <= out["ci_high"][0]).all()
    with pytest.raises(ValueError, match="lacks"):
        iso.endmember_matrices(EM, ratios=["207Pb/204Pb"])
    with pytest.raises(ValueError):
        iso.bayesian_mixing([1.2], endmember_mean=mu, endmember_sd=sd, residual_sd=0.001, seed=1)


def _ar1(phi: float, *, chains: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((chains, n + 500))
    x = np.zeros_like(e)
    for t in range(1, n + 500):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x[:, 500:, None]


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ess_matches_ar1_theory(phi):
    """Stationary AR(1) chains have the known effective sample size M N (1 - phi) / (1 + phi) (the
    integrated autocorrelation time of AR(1)); the rank-normalised bulk ESS is within 12 % of it, and
    R-hat of such well-mixed chains stays below 1.01 (Vehtari et al. 2021)."""
    x = _ar1(phi, chains=4, n=4000, seed=int(10 * phi))
    truth = 4 * 4000 * (1 - phi) / (1 + phi)
    assert iso.ess_bulk(x)[0] == pytest.approx(truth, rel=0.12)
    assert iso.rhat(x)[0] < 1.01


def test_rhat_flags_a_chain_that_did_not_mix():
    """One of four independent N(0, 1) chains shifted by 0.5: the variance of the split-chain means is
    0.25 * (2/8)(6/8) * 8/7 = 0.054 against a within-chain variance of 1, so R-hat = sqrt(1 + 0.054)
    = 1.026 (by hand), above the 1.01 warning level."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 4000, 1))
    x[0] += 0.5
    assert iso.rhat(x)[0] == pytest.approx(np.sqrt(1 + 0.25 * (2 / 8) * (6 / 8) * 8 / 7), abs=0.006)
    assert iso.rhat(x)[0] > 1.01


def test_mixing_table_reports_rhat_and_ess():
    """The Bayesian mixing table carries R-hat and ESS per sample and share (values computed by the
    functions checked above; here only their presence, range and agreement with a direct call)."""
    g = generate(seed=3, n_soil=12, n_sediment=0)
    tab = iso.bayesian_mixing_table(g["samples"], g["endmembers"],
                                    ratio_columns={"206Pb/207Pb": "pb206_207", "208Pb/206Pb": "pb208_206"},
                                    residual_sd=0.001, seed=5, n_steps=3000, burn=1000)
    assert {"rhat", "ess"} <= set(tab.columns)
    assert (tab["ess"] > 0).all() and (tab["ess"] <= 4 * 2000).all()
    assert (tab["rhat"] > 0.99).all() and np.isfinite(tab["rhat"]).all()
