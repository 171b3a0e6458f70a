"""PMF at survey scale: fitted on a spatially stratified subsample, contributions of all samples by weighted NNLS."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import nnls

from hmlib import pmf
from hmlib.spatial import spatial_subsample
from hmlib.synth.sources import DEFAULT_PROFILES, generate

ROOT = Path(__file__).resolve().parents[1]
METALS = list(DEFAULT_PROFILES.columns)


def _random_problem(seed: int, n: int = 400, p: int = 4, m: int = 7):
    rng = np.random.default_rng(seed)
    F = rng.gamma(1.0, 1.0, (p, m))
    F[rng.random((p, m)) < 0.3] = 0.0
    G = rng.gamma(0.5, 1.0, (n, p))
    G[rng.random((n, p)) < 0.25] = 0.0
    X = G @ F
    U = 0.1 * X + 0.05
    X = np.maximum(X + U * rng.standard_normal((n, m)) * 2.0, 0.0)
    X[:5] *= 8.0  # a few gross outliers for the robust reweighting
    return (pd.DataFrame(X, columns=list("ABCDEFG")[:m]), pd.DataFrame(U, columns=list("ABCDEFG")[:m]),
            pd.DataFrame(F, index=[f"F{k + 1}" for k in range(p)], columns=list("ABCDEFG")[:m]))


@pytest.mark.parametrize("p", [1, 3, 5])
def test_weighted_nnls_equals_scipy_row_by_row(p):
    """Checked against scipy.optimize.nnls (Lawson-Hanson active set), one call per sample on the rows
    scaled by 1/u: the batched solution equals it to 1e-9 (relative), zeros in profiles and contributions
    included."""
    x, u, f = _random_problem(p, p=p)
    g = pmf.weighted_nnls_contributions(x, u, f)
    assert list(g.columns) == list(f.index) and g.index.equals(x.index)
    A, b, F = x.to_numpy(), u.to_numpy(), f.to_numpy()
    ref = np.vstack([nnls(F.T / b[i][:, None], A[i] / b[i])[0] for i in range(len(x))])
    np.testing.assert_allclose(g.to_numpy(), ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    assert (g.to_numpy() >= 0).all()


def test_robust_nnls_is_a_fixed_point_of_scipy_nnls():
    """Robust mode checked against scipy.optimize.nnls: with the down-weighted uncertainties it returns,
    each sample's contributions are scipy's NNLS solution, and exactly the values with scaled residual
    beyond 4 (against the original uncertainties) carry the inflated uncertainty u*sqrt(|r|/4)."""
    x, u, f = _random_problem(7, p=3)
    g = pmf.weighted_nnls_contributions(x, u, f, robust_alpha=4.0)
    ur = g.attrs["uncertainty"].to_numpy()
    A, U, F = x.to_numpy(), u.to_numpy(), f.to_numpy()
    assert (ur > U).any()  # the outliers were down-weighted
    ref = np.vstack([nnls(F.T / ur[i][:, None], A[i] / ur[i])[0] for i in range(len(x))])
    np.testing.assert_allclose(g.to_numpy(), ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())
    r = np.abs((A - g.to_numpy() @ F) / U)
    inflated = ~np.isclose(ur, U)
    # the weights come from the previous round's residuals; at convergence the down-weighted set is stable
    assert (inflated == (r > 4.0)).mean() > 0.995


@pytest.fixture(scope="module")
def survey():
    """3,000 soil samples of the smelter generator (known profiles and contributions, 5 % noise)."""
    d = generate(seed=5, n_soil=3000, n_sediment=0, noise=0.05)
    s = d["samples"].set_index("sample_id")
    return d, s


def test_subsample_fit_and_nnls_recover_truth(survey):
    """Seeded generator's known truth (hmlib.synth.sources, three sources): PMF fitted on a spatially
    stratified subsample of 500 of 3,000 samples, then weighted NNLS for all samples, recovers every true
    profile (cosine >= 0.95 after one-to-one matching) and the true contributions of all 3,000 samples
    and of the 2,500 samples outside the subsample (Pearson r >= 0.9)."""
    d, s = survey
    X = s[METALS]
    U = pmf.pmf_uncertainty(X, mdl=0.01, error_fraction=0.05)
    keep = spatial_subsample(s["x"].to_numpy(), s["y"].to_numpy(), n=500, seed=3)
    assert len(keep) == 500
    sub = pmf.fit_pmf(X.iloc[keep], U.iloc[keep], n_factors=3, seed=11, n_starts=4)
    full = pmf.pmf_all_samples(sub, X, U)
    assert full.contributions.shape == (3000, 3) and full.settings["n_fitted"] == 500
    assert full.profiles.equals(sub.profiles)
    m = pmf.match_factors(full.profiles, d["profiles"])
    assert (m["cosine"] >= 0.95).all(), m
    truth = d["contributions"].set_index("sample_id").loc[full.contributions.index]
    out = np.setdiff1d(np.arange(3000), keep)
    for row in m.itertuples():
        assert np.corrcoef(full.contributions[row.factor], truth[row.source])[0, 1] >= 0.9, row
        assert np.corrcoef(full.contributions[row.factor].iloc[out], truth[row.source].iloc[out])[0, 1] >= 0.9
    # the fitted samples' NNLS contributions are the fit's own (the fit is a stationary point for fixed F)
    np.testing.assert_allclose(full.contributions.iloc[keep].to_numpy(), sub.contributions.to_numpy(),
                               rtol=0.05, atol=0.05)
    assert 0.9 < full.contributions.mean().min() and full.contributions.mean().max() < 1.1


def _stage(tmp_path, **over):
    from stage_settings import FAST_OPTIONS

    from hmlib.context import open_stage
    from hmlib.stages import sources as stage

    opts = {**FAST_OPTIONS["sources"], "pmf_factor_range": (3, 3), "pmf_bootstrap": 3, "pmf_disp": False,
            "isotope_ratios": {}, "isotope_endmembers": None, "isotope_pair": [], **over}
    ctx = open_stage("sources", params_file=ROOT / "params" / "smelter_demo.yml", output_dir=tmp_path, overrides=opts)
    import matplotlib.pyplot as plt

    res = stage.run(ctx)
    stage.report(ctx, res)
    plt.close("all")
    return ctx, res


@pytest.mark.slow
def test_below_the_limit_nothing_changes(tmp_path):
    """Regression against the full-fit code path (the limit switched off): with fewer samples than the
    limit (smelter demo, 160 soil and 60 sediment samples), profiles, contributions and Q are identical to
    the run without a limit, and the report says nothing about a subsample."""
    ctx_a, a = _stage(tmp_path / "a", pmf_max_samples=1000)
    ctx_b, b = _stage(tmp_path / "b", pmf_max_samples=None)
    pd.testing.assert_frame_equal(a.profiles, b.profiles)
    pd.testing.assert_frame_equal(a.contributions, b.contributions)
    pd.testing.assert_frame_equal(a.diagnostics, b.diagnostics)
    assert all(r.n_fitted is None for r in a.pmf.values())
    text = " ".join(i.get("text", "") for i in ctx_a.out.items) + " ".join(ctx_a.out.limitations)
    assert "subsample" not in text


@pytest.mark.slow
def test_above_the_limit_all_samples_get_contributions(tmp_path):
    """Stage path above the limit (smelter demo soil, 160 samples, limit 60), checked against the data:
    PMF is fitted on 60 soil samples, every soil sample gets contributions (equal to scipy's NNLS on the
    fitted profiles for a sample outside the subsample), the sediment (60 samples, at the limit) is fitted
    in full, and the methods text and limitations state the subsample in words (naming the medium, as the
    region has two)."""
    ctx, res = _stage(tmp_path, pmf_max_samples=60)
    soil, sed = res.pmf["soil"], res.pmf["sediment"]
    assert soil.n_fitted == 60 and soil.n_samples == 160 and sed.n_fitted is None
    con = res.contributions
    assert con[con["medium"] == "soil"]["sample_id"].nunique() == 160
    f = soil.fit
    i = 159
    ur = f.robust_uncertainty.to_numpy()[i]
    ref = nnls(f.profiles.to_numpy().T / ur[:, None], f.data.to_numpy()[i] / ur)[0]
    np.testing.assert_allclose(f.contributions.to_numpy()[i], ref, rtol=1e-8, atol=1e-10)
    sentence = ("PMF was fitted on a spatially stratified subsample of 60 of the 160 samples in soil; the contributions of "
                "all samples were then estimated by non-negative least squares on the fitted profiles.")
    main = [i["text"] for i in ctx.out.items if i.get("type") == "markdown" and not i["appendix"]]
    assert any(sentence in t for t in main)
    assert any(sentence in t for t in ctx.out.limitations)


def test_worker_processes_do_not_change_results():
    """Checked against the serial run (n_jobs=1) on the smelter generator: the random starts, bootstrap and
    BS-DISP run in two worker processes give identical numbers (every seed is drawn before the work is split)."""
    d = generate(seed=2, noise=0.02, n_soil=80, n_sediment=1)
    s = d["samples"]
    X = s[s["medium"] == "soil"].set_index("sample_id")[METALS]
    U = pmf.pmf_uncertainty(X, mdl=0.01, error_fraction=0.03)
    a = pmf.fit_pmf(X, U, n_factors=3, seed=4, n_starts=3, max_iter=2000)
    b = pmf.fit_pmf(X, U, n_factors=3, seed=4, n_starts=3, max_iter=2000, n_jobs=2)
    pd.testing.assert_frame_equal(a.profiles, b.profiles)
    pd.testing.assert_frame_equal(a.starts, b.starts)
    ba = pmf.bootstrap_pmf(a, n_runs=3, seed=1)
    bb = pmf.bootstrap_pmf(a, n_runs=3, seed=1, n_jobs=2)
    pd.testing.assert_frame_equal(ba.profiles, bb.profiles)
    da = pmf.bs_disp_pmf(a, n_runs=2, seed=1, dq_max=(4,), n_bisect=1, max_sweeps=50)
    db = pmf.bs_disp_pmf(a, n_runs=2, seed=1, dq_max=(4,), n_bisect=1, max_sweeps=50, n_jobs=2)
    pd.testing.assert_frame_equal(da["intervals"], db["intervals"])
    pd.testing.assert_frame_equal(da["swaps"], db["swaps"])


@pytest.mark.slow
def test_isotope_chunks(tmp_path, monkeypatch):
    """Checked against a direct call of hmlib.isotopes.bayesian_mixing_table on all samples: the stage's isotope
    mixing of the smelter demo (220 samples, one chunk) is identical to it; with chunks of 100 samples in two
    worker processes every sample is still mixed once and the mean shares agree with the one-chunk run within
    0.02 (the chunks use other seeds)."""
    from hmlib import isotopes as iso
    from hmlib.context import open_stage
    from hmlib.stages import sources as stage

    def mix(out, **over):
        ctx = open_stage("sources", params_file=ROOT / "params" / "smelter_demo.yml", output_dir=out,
                         overrides={"pmf": False, "isotope_steps": 600, **over})
        return ctx, stage.run(ctx).isotope_mixing

    ctx, one = mix(tmp_path / "a", pmf_jobs=1)
    o = ctx.options
    samp = ctx.data.samples.assign(sample_id=ctx.data.samples["sample_id"].astype(str))
    ref = iso.bayesian_mixing_table(samp, pd.read_csv(ctx.params.resolve(o.isotope_endmembers)),
                                    ratio_columns=o.isotope_ratios, residual_sd=o.isotope_residual_sd,
                                    seed=ctx.seed + 7, n_steps=600, burn=150)
    got = one[one["method"] == "bayesian"].reset_index(drop=True)
    np.testing.assert_array_equal(got["share"].to_numpy(), ref["share"].to_numpy())
    monkeypatch.setattr(stage, "ISOTOPE_CHUNK", 100)
    _, many = mix(tmp_path / "b", pmf_jobs=2)
    bay = many[many["method"] == "bayesian"]
    assert len(bay) == len(got) and bay.groupby(["sample_id", "source"]).size().eq(1).all()
    diff = bay.groupby("source")["share"].mean() - got.groupby("source")["share"].mean()
    assert diff.abs().max() < 0.02, diff
