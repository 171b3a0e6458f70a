"""Tests of hmlib.sem: recovery of a known path model, fit indices, RMSEA interval, failures, diagram."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hmlib import sem
from hmlib.sem import (
    CUTOFFS,
    drop_indicator,
    fit_indices,
    fit_sem,
    ml_discrepancy,
    normal_loglik,
    parse_model,
    path_diagram,
    refine_sem,
    rmsea,
    rmsea_ci,
    rmsea_pclose,
    srmr,
)

# true standardized model: SOIL -> SED (0.6), SED -> WAT (0.5); loadings 0.8, 0.7, 0.6 per latent
TRUE_PATHS = {("SED", "SOIL"): 0.6, ("WAT", "SED"): 0.5}
TRUE_LOADINGS = [0.8, 0.7, 0.6]
MODEL = """
SOIL =~ s0 + s1 + s2
SED =~ d0 + d1 + d2
WAT =~ w0 + w1 + w2
SED ~ SOIL
WAT ~ SED
"""


def simulate(n: int, seed: int, *, weak: float | None = None, negative: bool = False) -> pd.DataFrame:
    """Data from the linear model above with unit-variance latents, so the generating
    coefficients are the standardized ones. ``weak`` adds a fourth soil indicator with that loading;
    ``negative`` flips the sign of the SED -> WAT path."""
    rng = np.random.default_rng(seed)
    soil = rng.normal(size=n)
    sed = 0.6 * soil + np.sqrt(1 - 0.36) * rng.normal(size=n)
    b = -0.5 if negative else 0.5
    wat = b * sed + np.sqrt(1 - 0.25) * rng.normal(size=n)
    d = {}
    for name, lv in (("s", soil), ("d", sed), ("w", wat)):
        for i, lam in enumerate(TRUE_LOADINGS):
            d[f"{name}{i}"] = lam * lv + np.sqrt(1 - lam * lam) * rng.normal(size=n)
    if weak is not None:
        d["s3"] = weak * soil + np.sqrt(1 - weak * weak) * rng.normal(size=n)
    # arbitrary scales and offsets: the fit standardizes
    return pd.DataFrame({k: 5.0 + 3.0 * v for k, v in d.items()})


@pytest.fixture(scope="module")
def big():
    return simulate(2000, seed=42)


@pytest.fixture(scope="module")
def fitted(big):
    return fit_sem(big, MODEL)


def test_standardized_paths_recover_truth(fitted):
    """Standardized path and loading estimates within 0.05 of the generating values (N = 2000)."""
    r = fitted
    assert r.ok, r.message
    est = r.estimates
    for (lhs, rhs), truth in TRUE_PATHS.items():
        v = est[(est.lhs == lhs) & (est.op == "~") & (est.rhs == rhs)]["std_estimate"].item()
        assert abs(v - truth) < 0.05, (lhs, rhs, v)
    for lv, pre in (("SOIL", "s"), ("SED", "d"), ("WAT", "w")):
        for i, lam in enumerate(TRUE_LOADINGS):
            v = est[(est.lhs == lv) & (est.op == "=~") & (est.rhs == f"{pre}{i}")]["std_estimate"].item()
            assert abs(v - lam) < 0.05, (lv, i, v)
    assert list(est.columns) == ["lhs", "op", "rhs", "estimate", "std_estimate", "se", "p"]
    free = est[est["p"].notna()]  # fixed parameters: se 0 and no p-value, as in lavaan
    assert (free["se"] > 0).all() and free["p"].between(0, 1).all()
    assert (est.loc[est["p"].isna(), "se"] == 0).all()


def test_observed_path_model_recovers_truth():
    """A path analysis with observed variables only: x -> m (0.5), m -> y (0.4), x -> y (0.3).
    True standardized effects follow from the covariance algebra of the generating model."""
    rng = np.random.default_rng(7)
    n = 3000
    x = rng.normal(size=n)
    m = 0.5 * x + np.sqrt(0.75) * rng.normal(size=n)
    # var(0.4 m + 0.3 x) = 0.16 + 0.09 + 2*0.4*0.3*0.5 = 0.37 -> residual variance 0.63 gives var(y) = 1
    y = 0.4 * m + 0.3 * x + np.sqrt(0.63) * rng.normal(size=n)
    r = fit_sem(pd.DataFrame({"x": x, "m": m, "y": y}), "m ~ x\ny ~ m + x")
    assert r.ok, r.message
    e = r.estimates.set_index(["lhs", "op", "rhs"])["std_estimate"]
    assert abs(e[("m", "~", "x")] - 0.5) < 0.05
    assert abs(e[("y", "~", "m")] - 0.4) < 0.05
    assert abs(e[("y", "~", "x")] - 0.3) < 0.05
    assert r.fit_value("df") == 0  # saturated (lavaan, fixed.x: 6 moments - 1 fixed x variance - 5 free)
    assert r.fit_value("CFI") == pytest.approx(1.0)


def test_degrees_of_freedom_follow_lavaan_fixed_x():
    """m ~ x; y ~ m + x + z with observed predictors x, z: p = 4 gives 10 moments; the 3 (co)variances
    of x and z are fixed at their sample values (lavaan fixed.x), 6 free parameters (4 paths, 2
    residual variances): df = 10 - 3 - 6 = 1 (by hand). semopy's calc_stats reports 4 because it
    counts the fixed moments; chi2 itself agrees with semopy."""
    import semopy

    rng = np.random.default_rng(7)
    n = 400
    x = rng.normal(size=n)
    z = 0.3 * x + rng.normal(size=n)
    m = 0.5 * x + rng.normal(size=n)
    y = 0.4 * m + 0.3 * x + 0.2 * z + rng.normal(size=n)
    d = pd.DataFrame({"x": x, "m": m, "y": y, "z": z})
    desc = "m ~ x\ny ~ m + x + z"
    r = fit_sem(d, desc)
    assert r.ok and r.fit_value("df") == 1 and r.fit_value("df_baseline") == 6 - 1
    mod = semopy.Model(desc)
    mod.fit((d - d.mean()) / d.std(ddof=1))
    st = semopy.calc_stats(mod).T["Value"]
    assert st["DoF"] == 4
    assert r.fit_value("chi2") == pytest.approx(st["chi2"], rel=1e-3, abs=1e-6)
    # an explicit covariance between the predictors makes them ordinary variables (lavaan's ov.x rule):
    # their 3 (co)variances become free parameters estimated at the sample values, so chi2 and df are
    # unchanged and the likelihood becomes the joint one: AIC grows by -2 ln L(x, z) + 2 * 3
    r2 = fit_sem(d, desc + "\nx ~~ z")
    assert r2.fit_value("df") == 1 and r2.fit_value("chi2") == pytest.approx(r.fit_value("chi2"), rel=1e-6)
    z = (d - d.mean()) / d.std(ddof=1)
    ll_xz = stats.multivariate_normal(mean=[0, 0], cov=np.cov(z[["x", "z"]].T, bias=True)).logpdf(z[["x", "z"]]).sum()
    assert r2.fit_value("AIC") == pytest.approx(r.fit_value("AIC") - 2 * ll_xz + 6, rel=1e-6)


def _passes(r) -> dict:
    out = {}
    for k, (op, cut) in CUTOFFS.items():
        v = r.fit_value(k)
        out[k] = v >= cut if op == ">=" else v <= cut
    return out


def test_fit_indices_correct_model_pass_misspecified_fail():
    """Conventional cut-offs (Hu & Bentler 1999): the true model passes all four; a one-factor model
    of the same nine indicators (three correlated systems forced onto one factor) fails all four."""
    d = simulate(800, seed=5)
    good = fit_sem(d, MODEL)
    assert good.ok
    assert all(_passes(good).values()), good.fit
    bad = fit_sem(d, "ALL =~ s0 + s1 + s2 + d0 + d1 + d2 + w0 + w1 + w2")
    assert bad.ok
    assert not any(_passes(bad).values()), bad.fit
    assert bad.fit_value("p") < 1e-6
    # a subtler misspecification (no SED -> WAT path) is also caught by CFI, RMSEA and SRMR
    miss = fit_sem(d, MODEL.replace("WAT ~ SED", "WAT ~~ 0*SED\nWAT ~~ 0*SOIL"))
    assert miss.ok
    p = _passes(miss)
    assert not p["CFI"] and not p["RMSEA"] and not p["SRMR"], miss.fit


def test_fit_indices_match_semopy(fitted, big):
    """chi2, df, baseline chi2, CFI and TLI computed here agree with semopy's calc_stats (an
    independent implementation; semopy fits the baseline model numerically, we use its closed
    form); semopy's RMSEA uses N - 1, ours N (lavaan), so ours = semopy's x sqrt((N-1)/N)."""
    import semopy

    z = (big - big.mean()) / big.std(ddof=1)
    m = semopy.Model(MODEL)
    m.fit(z, obj="MLW")
    s = semopy.calc_stats(m).T["Value"]
    f = fitted.fit.set_index("index")["value"]
    n = len(big)
    np.testing.assert_allclose(f["chi2"], s["chi2"], rtol=1e-4)
    assert f["df"] == s["DoF"]
    np.testing.assert_allclose(f["chi2_baseline"], s["chi2 Baseline"], rtol=1e-5)
    np.testing.assert_allclose(f["TLI"], s["TLI"], atol=1e-4)
    np.testing.assert_allclose(f["CFI"], min(s["CFI"], 1.0), atol=1e-4)
    np.testing.assert_allclose(f["RMSEA"], s["RMSEA"] * np.sqrt((n - 1) / n), atol=1e-4)


def test_loglik_and_aic_against_scipy(fitted, big):
    """ln L equals the sum of scipy multivariate normal log-densities at the sample mean with the
    model-implied covariance, and chi2 = 2 (ln L_saturated - ln L_model)."""
    import semopy

    z = (big - big.mean()) / big.std(ddof=1)
    m = semopy.Model(MODEL)
    m.fit(z, obj="MLW")
    order = m.vars["observed"]
    sigma = m.calc_sigma()[0]
    x = z[order].to_numpy()
    s = np.cov(x, rowvar=False, bias=True)
    ll = stats.multivariate_normal(mean=x.mean(0), cov=sigma).logpdf(x).sum()
    n = len(x)
    assert normal_loglik(s, sigma, n) == pytest.approx(ll, rel=1e-9)
    chi2 = 2 * (normal_loglik(s, s, n) - normal_loglik(s, sigma, n))
    assert chi2 == pytest.approx(n * ml_discrepancy(s, sigma), rel=1e-9)
    k = len(m.param_vals)
    f = fit_indices(s, sigma, n=n, n_params=k).set_index("index")["value"]
    assert f["AIC"] == pytest.approx(-2 * ll + 2 * k, rel=1e-9)
    assert f["BIC"] == pytest.approx(-2 * ll + k * np.log(n), rel=1e-9)


def test_srmr_hand_computed():
    """S = [[1, .5], [.5, 1]], Sigma = [[1, .3], [.3, 1]]: residuals 0, 0.2, 0 over 3 elements,
    SRMR = sqrt(0.04 / 3) = 0.115470."""
    assert srmr([[1, .5], [.5, 1]], [[1, .3], [.3, 1]]) == pytest.approx(np.sqrt(0.04 / 3), rel=1e-12)
    # scale invariance: covariances instead of correlations
    d = np.diag([2.0, 0.5])
    assert srmr(d @ [[1, .5], [.5, 1]] @ d, d @ [[1, .3], [.3, 1]] @ d) == pytest.approx(np.sqrt(0.04 / 3))
    with pytest.raises(ValueError, match="square"):
        srmr(np.eye(2), np.eye(3))


def test_rmsea_ci_matches_published_lavaan_values():
    """Wu et al. (2025) Table S3 (lavaan): df = 105, RMSEA = 0.036, 90% CI [0.000, 0.067], p(RMSEA <= .05) = 0.732.
    N for the SEM is not reported (103 sites, fewer complete cases); chi2 follows from RMSEA and N.
    Among the N whose upper bound reproduces 0.067, the close-fit p-value (a second, independent
    quantity) must reproduce 0.732 to within the rounding of the published RMSEA (0.005)."""
    df = 105
    matches = []
    for n in range(60, 104):
        chi2 = df + 0.036 ** 2 * df * n
        assert rmsea(chi2, df, n) == pytest.approx(0.036, abs=1e-12)
        lo, hi = rmsea_ci(chi2, df, n)
        if round(hi, 3) == 0.067:
            assert lo == 0.0
            matches.append((n, rmsea_pclose(chi2, df, n)))
    assert matches, "no N reproduces the published upper bound"
    assert min(abs(pc - 0.732) for _, pc in matches) <= 0.005, matches


def test_rmsea_ci_inversion_by_simulation():
    """The interval bounds are the noncentralities at which the observed chi2 sits at the 95th and
    5th percentiles; checked with draws from numpy's noncentral chi-square generator."""
    chi2, df, n = 180.0, 100, 250
    lo, hi = rmsea_ci(chi2, df, n)
    rng = np.random.default_rng(0)
    for r, q in ((lo, 0.95), (hi, 0.05)):
        draws = rng.noncentral_chisquare(df, r * r * df * n, size=200_000)
        assert np.mean(draws <= chi2) == pytest.approx(q, abs=0.004)
    assert lo < rmsea(chi2, df, n) < hi
    assert rmsea_ci(50.0, 100, 250) == (0.0, 0.0)  # chi2 far below df: both bounds 0


def test_parse_and_drop_indicator():
    spec = parse_model(MODEL + "\nd0 ~~ w0  # residual covariance\n")
    assert spec["latents"] == ["SOIL", "SED", "WAT"]
    assert spec["indicators"]["SED"] == ["d0", "d1", "d2"]
    assert ("WAT", "SED") in spec["regressions"] and ("d0", "w0") in spec["covariances"]
    m2 = drop_indicator(MODEL + "\nd0 ~~ w0", latent="SED", indicator="d0")
    assert "SED =~ d1 + d2" in m2 and "d0" not in m2
    with pytest.raises(ValueError, match="no operator"):
        parse_model("SOIL is s0")


def test_refinement_drops_weak_indicator_and_logs_fit():
    d = simulate(600, seed=9, weak=0.1)
    res, log = refine_sem(d, MODEL.replace("s0 + s1 + s2", "s0 + s1 + s2 + s3"), threshold=0.3)
    assert res.ok
    assert list(log["action"]) == ["initial model", "dropped s3 from SOIL"]
    assert abs(log["std_loading"].iloc[1]) < 0.3
    assert log[["chi2", "df", "CFI", "RMSEA", "SRMR"]].notna().all().all()
    assert "s3" not in res.observed


def test_failures_give_messages_not_exceptions(big, monkeypatch):
    r = fit_sem(big, "A =~ s0\nB =~ d0 + d1 + d2")
    assert not r.ok and "not identified" in r.message and "'A'" in r.message
    r = fit_sem(big, "A =~ s0 + s1 + s2\nB =~ s0 + s1 + s2\nA ~~ B")
    assert not r.ok and "df = " in r.message
    r = fit_sem(big, "A =~ s0 + nope + s1")
    assert not r.ok and "nope" in r.message
    r = fit_sem(big.head(5), MODEL)
    assert not r.ok and "complete observations" in r.message
    r = fit_sem(big, "this is not lavaan")
    assert not r.ok and "could not be read" in r.message

    def _not_converged(model, s, **kw):
        return np.array([q.value for q in model.params if q.free]), False, np.eye(len(model.free))

    monkeypatch.setattr(sem, "_fit_ram", _not_converged)
    r = fit_sem(big, MODEL)
    assert not r.ok and "did not converge" in r.message
    with pytest.raises(ValueError, match="not estimated"):
        path_diagram(r)


def test_path_diagram_colours_and_arrows():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    r = fit_sem(simulate(500, seed=3, negative=True), MODEL)
    assert r.ok
    fig = path_diagram(r)
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    est = r.estimates
    n_expected = int(((est.op == "=~") | (est.op == "~")).sum())
    assert len(arrows) == n_expected
    reds = [a for a in arrows if matplotlib.colors.to_hex(a.get_edgecolor()) == "#b2182b"]
    assert len(reds) == 1  # the negative SED -> WAT path
    widths = sorted(a.get_linewidth() for a in arrows)
    assert widths[0] < widths[-1]
    plt.close(fig)


def test_module_all_exports_exist():
    for name in sem.__all__:
        assert hasattr(sem, name)


# ---------------------------------------------------------------------------------------------
# lavaan 0.6-14 reference results (tests/data/lavaan, PROVENANCE.md there)
LAVAAN = Path(__file__).parent / "data" / "lavaan"
LAVAAN_MODELS = {"hs_cfa": "HolzingerSwineford1939.csv", "poldem_sem": "PoliticalDemocracy.csv",
                 "hs_mimic": "HolzingerSwineford1939.csv"}
LAVAAN_INDEX = {"chisq": "chi2", "df": "df", "cfi": "CFI", "tli": "TLI", "rmsea": "RMSEA",
                "rmsea.ci.lower": "RMSEA_ci90_lower", "rmsea.ci.upper": "RMSEA_ci90_upper", "srmr": "SRMR",
                "aic": "AIC", "bic": "BIC", "ntotal": "n", "pvalue": "p"}


@pytest.fixture(scope="module")
def lavaan_fits():
    if not LAVAAN.is_dir():
        pytest.skip("lavaan reference data tests/data/lavaan not present")
    return {m: fit_sem(pd.read_csv(LAVAAN / f), (LAVAAN / f"{m}.lav").read_text(), standardize=False)
            for m, f in LAVAAN_MODELS.items()}


def _close(ours: float, ref: float, rel: float = 1e-3) -> bool:
    """Relative difference within ``rel``; values that are 0 in lavaan (an RMSEA bound, a fixed
    parameter's SE) must be within ``rel`` in absolute terms."""
    return abs(ours - ref) <= rel * max(abs(ref), 1.0 if ref == 0 else abs(ref))


@pytest.mark.parametrize("model", list(LAVAAN_MODELS))
def test_fit_measures_equal_lavaan(lavaan_fits, model):
    """chi2, df, p, CFI, TLI, RMSEA and its 90 % interval, SRMR, AIC, BIC (conditional on the observed
    predictors, fixed.x) and N within 1e-3 relative of lavaan 0.6-14's fitMeasures()."""
    r = lavaan_fits[model]
    assert r.ok, r.message
    ref = pd.read_csv(LAVAAN / "lavaan_fit_measures.csv")
    ours = r.fit.set_index("index")["value"]
    bad = [(row["index"], ours[LAVAAN_INDEX[row["index"]]], row["value"])
           for _, row in ref[ref["model"] == model].iterrows()
           if not _close(ours[LAVAAN_INDEX[row["index"]]], row["value"])]
    assert not bad, bad


@pytest.mark.parametrize("model", list(LAVAAN_MODELS))
def test_estimates_equal_lavaan(lavaan_fits, model):
    """Every parameter lavaan reports (including fixed markers and the fixed predictor (co)variances):
    unstandardised estimate, SE (expected information), std.all (residual covariances as residual
    correlations) and p-value within 1e-3 relative of lavaan 0.6-14; the same set of parameters."""
    r = lavaan_fits[model]
    ref = pd.read_csv(LAVAAN / "lavaan_estimates.csv")
    ref = ref[ref["model"] == model]
    est = r.estimates.copy()
    key = [(a, o, b) if o != "~~" else (o, *sorted((a, b))) for a, o, b in zip(est.lhs, est.op, est.rhs)]
    est.index = pd.Index(key)
    assert len(est) == len(ref)
    bad = []
    for _, row in ref.iterrows():
        k = (row.lhs, row.op, row.rhs) if row.op != "~~" else (row.op, *sorted((row.lhs, row.rhs)))
        o = est.loc[[k]].iloc[0]
        for ours, theirs, what in ((o.estimate, row.est, "est"), (o.se, row.se, "se"),
                                   (o.std_estimate, row["est.std"], "std.all")):
            if not _close(ours, theirs):
                bad.append((k, what, ours, theirs))
        # lavaan's p = 2 (1 - pnorm(|z|)) loses all digits below ~1e-10 (it prints 0 or 1.1e-15)
        if np.isfinite(row.pvalue) and row.pvalue > 1e-10 and not _close(o.p, row.pvalue):
            bad.append((k, "p", o.p, row.pvalue))
    assert not bad, bad


def test_indicator_that_is_also_a_predictor_recovers_truth():
    """An indicator (c of F) that also predicts an observed outcome (y ~ c + x), with residual
    covariances c ~~ b2 and a1 ~~ b1 across the two latents (lavaan's phantom-variable case).
    Generated with known parameters (N = 20000, seeded): every unstandardised estimate within 4 SE
    of its generating value, the residual correlation of c and b2 equal to 0.15 / sqrt(0.4 * 0.6),
    and the correct model not rejected (p > 0.001)."""
    rng = np.random.default_rng(11)
    n = 20000
    f = rng.normal(size=n)
    g = 0.6 * f + np.sqrt(0.64) * rng.normal(size=n)
    x = rng.normal(size=n)
    e_ab = rng.multivariate_normal([0, 0], [[0.5, 0.2], [0.2, 0.5]], size=n)
    e_cb = rng.multivariate_normal([0, 0], [[0.4, 0.15], [0.15, 0.6]], size=n)
    d = pd.DataFrame({"a1": f + e_ab[:, 0], "a2": 0.8 * f + np.sqrt(0.3) * rng.normal(size=n),
                      "a3": 0.7 * f + np.sqrt(0.3) * rng.normal(size=n), "c": 0.9 * f + e_cb[:, 0],
                      "b1": g + e_ab[:, 1], "b2": 0.8 * g + e_cb[:, 1],
                      "b3": 0.7 * g + np.sqrt(0.3) * rng.normal(size=n), "x": x})
    d["y"] = 0.5 * d["c"] + 0.3 * x + np.sqrt(0.5) * rng.normal(size=n)
    model = "F =~ a1 + a2 + a3 + c\nG =~ b1 + b2 + b3\nG ~ F\ny ~ c + x\nc ~~ b2\na1 ~~ b1"
    r = fit_sem(d, model, standardize=False)
    assert r.ok, r.message
    truth = {("F", "=~", "a2"): 0.8, ("F", "=~", "a3"): 0.7, ("F", "=~", "c"): 0.9, ("G", "=~", "b2"): 0.8,
             ("G", "=~", "b3"): 0.7, ("G", "~", "F"): 0.6, ("y", "~", "c"): 0.5, ("y", "~", "x"): 0.3,
             ("c", "~~", "b2"): 0.15, ("a1", "~~", "b1"): 0.2, ("c", "~~", "c"): 0.4, ("b2", "~~", "b2"): 0.6,
             ("y", "~~", "y"): 0.5, ("F", "~~", "F"): 1.0, ("G", "~~", "G"): 0.64}
    e = r.estimates.set_index(["lhs", "op", "rhs"])
    for k, v in truth.items():
        assert abs(e.loc[k, "estimate"] - v) < 4 * e.loc[k, "se"], (k, e.loc[k, "estimate"], v)
    assert e.loc[("c", "~~", "b2"), "std_estimate"] == pytest.approx(0.15 / np.sqrt(0.4 * 0.6), abs=0.03)
    assert r.fit_value("p") > 0.001


def test_fit_runs_with_one_blas_thread(monkeypatch, big):
    """The estimation runs inside threadpoolctl's limit of one BLAS thread (checked with
    threadpoolctl's own report during the fit)."""
    from threadpoolctl import threadpool_info

    seen = []
    orig = sem._fit_ram

    def spy(model, s, **kw):
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return orig(model, s, **kw)

    monkeypatch.setattr(sem, "_fit_ram", spy)
    assert fit_sem(big, MODEL).ok
    assert seen and set(seen) == {1}
