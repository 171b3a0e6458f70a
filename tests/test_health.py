"""Tests of hmlib.health: US EPA deterministic and Monte Carlo health risk.

Published values used as independent checks:

* US EPA Regional Screening Levels, generic tables November 2024 (TR = 1E-06, THQ = 1.0),
  resident soil (mg/kg) and resident tapwater (ug/L), https://www.epa.gov/risk/regional-screening-levels-rsls-generic-tables
  (values quoted below; the RSL tables print two significant figures).
* US EPA RSL User's Guide (November 2024): age-adjusted intake factors IFS_adj = 36,750 mg/kg,
  DFS_adj = 103,390 mg/kg, mutagenic IFSM_adj = 166,833 mg/kg and DFSM_adj = 428,260 mg/kg.
* Zhao et al. (2026, Scientific Reports, doi:10.1038/s41598-026-38887-9) eq. 5 and 11 evaluated by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hmlib import health as h

# RSL November 2024, resident soil, mg/kg: (metal, endpoint, published SL)
RSL_SOIL = [
    ("As", "cancer", 0.68),
    ("As", "noncancer", 35.0),
    ("Cd", "noncancer", 71.0),
    ("Cu", "noncancer", 3100.0),
    ("Zn", "noncancer", 23000.0),
    ("Co", "noncancer", 23.0),
    ("Mn", "noncancer", 1800.0),
    ("Hg", "noncancer", 23.0),
    ("Cr(VI)", "cancer", 0.30),
    ("Ba", "noncancer", 15000.0),
    ("Sb", "noncancer", 31.0),
    ("V", "noncancer", 390.0),
]
# RSL November 2024, resident tapwater, ug/L
RSL_TAP = [
    ("As", "cancer", 0.052),
    ("Cd", "noncancer", 9.2),
    ("Co", "noncancer", 6.0),
    ("Cu", "noncancer", 800.0),
    ("Mn", "noncancer", 430.0),
    ("Ni", "noncancer", 390.0),
    ("Zn", "noncancer", 6000.0),
    ("Ba", "noncancer", 3800.0),
    ("Sb", "noncancer", 7.8),
    ("V", "noncancer", 86.0),
]


def _resident_risk(medium, metal, conc):
    tox = h.load_toxicity("epa_rsl", medium=medium)
    risk = h.risk_table(pd.DataFrame({metal: [conc]}, index=["s"]), medium=medium,
                        exposure=h.load_exposure_parameters("epa_rsl"), toxicity=tox, receptors=("resident",))
    return risk["hq"].sum(min_count=1), risk["cr"].sum(min_count=1)


def _sig2(x):
    """Round to two significant figures, as the RSL tables print."""
    e = math.floor(math.log10(abs(x)))
    return round(x, -e + 1)


@pytest.mark.parametrize("metal,endpoint,rsl", RSL_SOIL)
def test_rsl_resident_soil_within_2_percent(metal, endpoint, rsl):
    """At the published resident-soil RSL (November 2024) HQ = 1 or TR = 1e-6 within 2%."""
    hi, tcr = _resident_risk("soil", metal, rsl)
    value = hi if endpoint == "noncancer" else tcr / 1e-6
    assert value == pytest.approx(1.0, rel=0.02), f"{metal} {endpoint}: {value}"


def test_rsl_resident_soil_nickel_within_rounding():
    """Nickel soluble salts: RSL (Nov 2024) resident soil 1,500 mg/kg (printed to 2 significant figures).

    The unrounded screening level of the RSL equations is 1,545 mg/kg (ingestion 1,564 with
    RfD 0.02, inhalation 127,553 with RfC 9e-5 and PEF 1.359e9), so the printed 1,500 gives HQ = 0.971:
    a 2.9% difference that is the table's own rounding (half a unit of the second figure is 3.3%).
    We check the unrounded SL reproduces the printed value to two figures and lies within 2% of 1,545.
    """
    hi, _ = _resident_risk("soil", "Ni", 1500.0)
    sl = 1500.0 / hi
    assert _sig2(sl) == 1500.0
    assert sl == pytest.approx(1545.0, rel=0.02)
    assert abs(hi - 1.0) <= 50.0 / 1500.0


@pytest.mark.parametrize("metal,endpoint,rsl", RSL_SOIL + [("Ni", "noncancer", 1500.0), ("Cr(III)", "noncancer", 1.2e5)])
def test_rsl_resident_soil_rounds_to_published(metal, endpoint, rsl):
    """The screening level implied by our equations, rounded to two figures, equals the published RSL."""
    hi, tcr = _resident_risk("soil", metal, 1.0)
    sl = 1.0 / hi if endpoint == "noncancer" else 1e-6 / tcr
    assert _sig2(sl) == pytest.approx(rsl)


@pytest.mark.parametrize("metal,endpoint,rsl", RSL_TAP)
def test_rsl_resident_tapwater_within_2_percent(metal, endpoint, rsl):
    """Resident tapwater RSLs (November 2024; ingestion + dermal with Kp): HQ = 1 or TR = 1e-6 within 2%."""
    hi, tcr = _resident_risk("water", metal, rsl)
    value = hi if endpoint == "noncancer" else tcr / 1e-6
    assert value == pytest.approx(1.0, rel=0.02)


def test_age_adjusted_intake_factors_match_rsl_guide():
    """IFS_adj 36,750, DFS_adj 103,390, IFSM_adj 166,833, DFSM_adj 428,260 (RSL User's Guide)."""
    e = h.load_exposure_parameters("epa_rsl")
    c, a = e.loc["child"], e.loc["adult"]
    ifs = c.EF * c.ED * c.IRS / c.BW + a.EF * a.ED * a.IRS / a.BW
    dfs = c.EF * c.ED * c.SA_soil * c.AF / c.BW + a.EF * a.ED * a.SA_soil * a.AF / a.BW
    wc, wa = h.adaf_years(c.age_start, c.ED), h.adaf_years(a.age_start, a.ED)
    assert (wc, wa) == (32.0, 40.0)
    ifsm = c.EF * wc * c.IRS / c.BW + a.EF * wa * a.IRS / a.BW
    dfsm = c.EF * wc * c.SA_soil * c.AF / c.BW + a.EF * wa * a.SA_soil * a.AF / a.BW
    assert ifs == pytest.approx(36750, abs=1)
    assert dfs == pytest.approx(103390, abs=1)
    assert ifsm == pytest.approx(166833, abs=1)
    assert dfsm == pytest.approx(428260, abs=1)
    # and the library's resident cancer factor for As ingestion uses them
    tox = h.load_toxicity("epa_rsl", medium="soil")
    uf = h.unit_factors(medium="soil", receptor="resident", exposure=e, toxicity=tox, metals=["As"])
    ing = uf[uf.pathway == "ingestion"].iloc[0]
    assert ing.ladd == pytest.approx(36750 * 1e-6 * 0.6 / (70 * 365), rel=1e-9)
    assert ing.cr == pytest.approx(ing.ladd * 1.5, rel=1e-12)


def test_hand_computed_zhao2026_soil_child_cadmium():
    """Zhao et al. (2026) eq. 5 and 8 by hand: Cd 2 mg/kg, child, IngR 200 mg/d, EF 350, ED 6, BW 15, AT 2190 d.

    ADD = 2 * 200 * 1e-6 * 350 * 6 / (15 * 2190) = 2.5571e-5 mg/kg-d; HQ = ADD / 1e-3 = 0.025571.
    Dermal (ABS 0.001, SA 2373 cm2, AF 0.2): ADD = 2*2373*0.2*0.001*1e-6*350*6/(15*2190) = 6.0674e-8;
    HQ = ADD / (1e-3 * 0.025) = 2.42697e-3.
    """
    r = h.risk_table(pd.DataFrame({"Cd": [2.0]}, index=["a"]), medium="soil",
                     exposure=h.load_exposure_parameters("zhao2026"), toxicity=h.load_toxicity(medium="soil"),
                     receptors=("child",))
    ing = r[r.pathway == "ingestion"].iloc[0]
    der = r[r.pathway == "dermal"].iloc[0]
    assert ing["add"] == pytest.approx(2.5571e-5, rel=1e-4)
    assert ing["hq"] == pytest.approx(0.025571, rel=1e-4)
    assert der["add"] == pytest.approx(6.0674e-8, rel=1e-4)
    assert der["hq"] == pytest.approx(2.42697e-3, rel=1e-4)
    assert np.isnan(ing["cr"])  # Cd has no oral slope factor


def test_hand_computed_zhao2026_water_adult_arsenic():
    """Zhao et al. (2026) eq. 11-12 by hand: As 10 ug/L, adult IR 2.5 L/d, EF 350, ED 26, BW 70, AT 9490 d.

    ADD = 10e-3 * 2.5 * 350 * 26 / (70 * 9490) = 3.4247e-4 mg/kg-d; HQ = ADD / 3e-4 = 1.14155;
    LADD = 10e-3 * 2.5 * 350 * 26 / (70 * 25550) = 1.27202e-4; CR = LADD * 1.5 = 1.90802e-4.
    """
    r = h.risk_table(pd.DataFrame({"As": [10.0]}, index=["w"]), medium="water",
                     exposure=h.load_exposure_parameters("zhao2026"), toxicity=h.load_toxicity(medium="water"),
                     receptors=("adult",))
    ing = r[r.pathway == "ingestion"].iloc[0]
    assert ing["add"] == pytest.approx(3.4247e-4, rel=1e-4)
    assert ing["hq"] == pytest.approx(1.14155, rel=1e-4)
    assert ing["ladd"] == pytest.approx(1.27202e-4, rel=1e-4)
    assert ing["cr"] == pytest.approx(1.90802e-4, rel=1e-4)


def test_inhalation_exposure_concentration_by_hand():
    """RAGS F: EC = C / PEF * EF * ED * ET/24 / (ED * 365); As 100 mg/kg, child, RSL: 6.7424e-8 mg/m3; HQ = EC / 1.5e-5."""
    r = h.risk_table(pd.DataFrame({"As": [100.0]}, index=["a"]), medium="soil",
                     exposure=h.load_exposure_parameters("epa_rsl"), toxicity=h.load_toxicity(medium="soil"),
                     receptors=("child",))
    inh = r[r.pathway == "inhalation"].iloc[0]
    ec = 100.0 / 1359344438 * 350 / 365
    assert inh["add"] == pytest.approx(ec, rel=1e-12)
    assert inh["add"] == pytest.approx(7.0544e-8, rel=1e-4)
    assert inh["hq"] == pytest.approx(ec / 1.5e-5, rel=1e-12)
    # cancer: IUR (per ug/m3) * 1000 * EC over the lifetime (ED 6 of LT 70 years)
    assert inh["cr"] == pytest.approx(4.3e-3 * 1000 * 100.0 / 1359344438 * 350 * 6 / (70 * 365), rel=1e-12)


def test_chromium_speciation_and_defaults():
    w = pd.DataFrame({"Cd": [1.0, 2.0], "Cr": [70.0, 7.0]}, index=["a", "b"])
    s = h.speciate_chromium(w, cr_vi_fraction=1 / 7)
    assert list(s.columns) == ["Cd", "Cr(III)", "Cr(VI)"]
    assert s["Cr(VI)"].tolist() == pytest.approx([10.0, 1.0])
    assert (s["Cr(III)"] + s["Cr(VI)"]).tolist() == pytest.approx([70.0, 7.0])
    assert list(w.columns) == ["Cd", "Cr"]  # input not mutated
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        h.speciate_chromium(w, cr_vi_fraction=1.5)
    from hmlib.stages.health import Options

    opts = Options()
    assert opts.cr_vi_fraction == pytest.approx(1 / 7, abs=1e-6)
    # Cr(VI) cancer risk scales with the fraction; Cr(III) has no slope factor
    tox, exp = h.load_toxicity(medium="soil"), h.load_exposure_parameters("epa_rsl")
    r1 = h.risk_table(w, medium="soil", exposure=exp, toxicity=tox, receptors=("resident",), cr_vi_fraction=0.1)
    r2 = h.risk_table(w, medium="soil", exposure=exp, toxicity=tox, receptors=("resident",), cr_vi_fraction=0.2)
    c1 = r1[r1.metal == "Cr(VI)"]["cr"].sum()
    c2 = r2[r2.metal == "Cr(VI)"]["cr"].sum()
    assert c2 == pytest.approx(2 * c1)
    assert r1[r1.metal == "Cr(III)"]["cr"].isna().all()


def test_lead_not_assessed_and_listed():
    r = h.risk_table(pd.DataFrame({"Pb": [50.0], "Zn": [100.0]}, index=["a"]), medium="soil",
                     exposure=h.load_exposure_parameters(), toxicity=h.load_toxicity(medium="soil"))
    assert r.attrs["not_assessed"] == ["Pb"]
    assert set(r.metal) == {"Zn"}
    assert set(r.pathway) == {"ingestion"}  # Zn: no ABS, no RfC/IUR


def test_default_abs_soil_adds_dermal_pathway():
    tox, exp = h.load_toxicity(medium="soil"), h.load_exposure_parameters("zhao2026")
    uf = h.unit_factors(medium="soil", receptor="child", exposure=exp, toxicity=tox, metals=["Zn"],
                        default_abs_soil=0.001)
    der = uf[uf.pathway == "dermal"].iloc[0]
    assert der["add"] == pytest.approx(2373 * 0.2 * 0.001 * 1e-6 * 350 / 365 / 15, rel=1e-12)


def test_parameter_sets_load_and_cite():
    for key in h.PARAMETER_SETS:
        e = h.load_exposure_parameters(key)
        assert {"BW", "IRS", "EF", "ED", "PEF", "LT", "IRW"} <= set(e.columns)
        assert e.notna().all().all()
    hj = h.load_exposure_parameters("hj25_3")
    # HJ 25.3-2019 exposed skin area SAE = 239 H^0.417 BW^0.517 SER
    assert hj.loc["child", "SA_soil"] == pytest.approx(239 * 113.15 ** 0.417 * 19.2 ** 0.517 * 0.36, rel=1e-3)
    assert hj.loc["adult", "BW"] == 61.8
    zhao = h.load_exposure_parameters("zhao2026")
    assert zhao.loc["adult", "BW"] == 70 and zhao.loc["adult", "ED"] == 26 and zhao.loc["child", "IRW"] == 0.78
    tox_w, tox_s = h.load_toxicity(medium="water"), h.load_toxicity(medium="soil")
    assert tox_s.loc["Cd", "rfd_oral"] == 1e-3 and tox_w.loc["Cd", "rfd_oral"] == 5e-4
    assert bool(tox_s.loc["Cr(VI)", "mutagen"]) and not bool(tox_s.loc["As", "mutagen"])
    with pytest.raises(ValueError, match="expected one of"):
        h.load_exposure_parameters("nope")


def test_hazard_summary_shares():
    risk = h.risk_table(pd.DataFrame({"As": [0.1, 100.0, 1000.0]}, index=list("abc")), medium="soil",
                        exposure=h.load_exposure_parameters(), toxicity=h.load_toxicity(medium="soil"),
                        receptors=("child",))
    s = h.hazard_summary(risk)
    assert list(s.columns) == ["receptor", "metal", "hi_mean", "hi_max", "share_hi_gt_1", "tcr_mean",
                               "share_cr_gt_1e-4", "share_cr_gt_1e-6"]
    row = s[s.metal == "As"].iloc[0]
    # child HQ per mg/kg As = 1/34.90; 100 and 1000 mg/kg exceed 1
    assert row["share_hi_gt_1"] == pytest.approx(2 / 3)
    assert row["hi_max"] == pytest.approx(1000 / 34.9018, rel=1e-4)
    assert s[s.metal == "all"].iloc[0]["hi_mean"] == pytest.approx(row["hi_mean"])


def test_input_checks():
    with pytest.raises(ValueError, match="receptor"):
        h.unit_factors(medium="soil", receptor="worker", exposure=h.load_exposure_parameters(),
                       toxicity=h.load_toxicity())
    with pytest.raises(ValueError, match="medium"):
        h.exposure_medium("sediment")
    with pytest.raises(ValueError, match=">= 0"):
        h.risk_calculator(medium="soil", metal="As", concentration=-1.0)
    with pytest.raises(ValueError, match="no toxicity values"):
        h.risk_calculator(medium="soil", metal="Pb", concentration=1.0)
    with pytest.raises(ValueError, match="lognormal"):
        h.sample_distribution("lognormal", 2.0, 1.0, n=3, rng=np.random.default_rng(0))


def test_risk_calculator_totals():
    df = h.risk_calculator(medium="soil", metal="As", concentration=0.68, receptor="resident")
    tot = df[df.pathway == "total"].iloc[0]
    assert tot["cr"] == pytest.approx(df[df.pathway != "total"]["cr"].sum())
    assert tot["cr"] == pytest.approx(1e-6, rel=0.02)


# ------------------------------------------------------------------------------------------------
# Monte Carlo
# ------------------------------------------------------------------------------------------------
def _jura_like():
    rng = np.random.default_rng(1)
    return pd.DataFrame({"Cd": rng.lognormal(0.0, 0.6, 40), "Cr": rng.lognormal(3.5, 0.3, 40),
                         "Ni": rng.lognormal(3.0, 0.4, 40), "Pb": rng.lognormal(3.7, 0.5, 40)},
                        index=[f"s{i}" for i in range(40)])


def test_sample_distribution_moments():
    """Lognormal by median and P95; triangular bounds; truncated normal lower bound."""
    rng = np.random.default_rng(5)
    x = h.sample_distribution("lognormal", 100.0, 200.0, n=200_000, rng=rng)
    assert np.median(x) == pytest.approx(100.0, rel=0.01)
    assert np.percentile(x, 95) == pytest.approx(200.0, rel=0.015)
    t = h.sample_distribution("triangular", 180, 350, 365, n=10_000, rng=rng)
    assert t.min() >= 180 and t.max() <= 365
    nrm = h.sample_distribution("normal", 15, 3, 5, n=10_000, rng=rng)
    assert nrm.min() >= 5 and np.mean(nrm) == pytest.approx(15, rel=0.02)


def test_monte_carlo_seeded_and_summary():
    w, exp, tox = _jura_like(), h.load_exposure_parameters(), h.load_toxicity(medium="soil")
    dist = h.load_distributions()
    a = h.monte_carlo(w, medium="soil", receptor="child", exposure=exp, toxicity=tox, distributions=dist,
                      n_iter=10_000, seed=42)
    b = h.monte_carlo(w, medium="soil", receptor="child", exposure=exp, toxicity=tox, distributions=dist,
                      n_iter=10_000, seed=42)
    c = h.monte_carlo(w, medium="soil", receptor="child", exposure=exp, toxicity=tox, distributions=dist,
                      n_iter=10_000, seed=43)
    np.testing.assert_array_equal(a.hi, b.hi)
    assert not np.array_equal(a.hi, c.hi)
    s = a.summary()
    hi = s[s.metric == "HI"].iloc[0]
    assert hi.p5 < hi.p50 < hi.p95 and hi.n_iter == 10_000
    assert set(s.metric) == {"HI", "TCR"}
    # HI is the sum of the per-metal HI
    np.testing.assert_allclose(a.hi, a.hi_by_metal.sum(axis=1).to_numpy())
    # the soil ingestion rate drives the child's HI more than exposure frequency does (wider spread)
    sens = a.sensitivity[a.sensitivity.output == "HI"].set_index("input")["rho"]
    assert sens["IRS (child)"] > 0.3
    assert sens["BW (child)"] < 0
    assert sens["IRS (child)"] > abs(sens["EF (all)"])


def test_monte_carlo_median_below_rme_point_estimate():
    """The RSL point values are reasonable-maximum exposures, so the MC median HI for one sample is lower."""
    w = pd.DataFrame({"Cd": [5.0]}, index=["a"])
    exp, tox = h.load_exposure_parameters(), h.load_toxicity(medium="soil")
    det = h.risk_table(w, medium="soil", exposure=exp, toxicity=tox, receptors=("child",))["hq"].sum()
    mc = h.monte_carlo(w, medium="soil", receptor="child", exposure=exp, toxicity=tox,
                       distributions=h.load_distributions(), n_iter=10_000, seed=1)
    assert np.median(mc.hi) < det < np.percentile(mc.hi, 99.9)


def test_plots_and_grid_risk():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w, exp, tox = _jura_like(), h.load_exposure_parameters(), h.load_toxicity(medium="soil")
    risk = h.risk_table(w, medium="soil", exposure=exp, toxicity=tox)
    plt.close(h.plot_contributions(risk))
    mc = h.monte_carlo(w, medium="soil", receptor="resident", exposure=exp, toxicity=tox,
                       distributions=h.load_distributions(), n_iter=10_000, seed=3)
    plt.close(h.plot_montecarlo([mc]))
    plt.close(h.plot_tornado(mc))
    gp = pd.DataFrame({"x": [0, 1, 0, 1], "y": [0, 0, 1, 1]})
    gp = pd.concat([gp.assign(metal=m, method="ok", prediction=v, variance=0.1)
                    for m, v in (("Cd", 1.0), ("Ni", 30.0), ("Cr", 35.0))], ignore_index=True)
    g = h.grid_risk(gp, exposure=exp, toxicity=tox)
    assert len(g) == 8 and set(g.receptor) == {"child", "resident"}
    one = h.risk_table(pd.DataFrame({"Cd": [1.0], "Ni": [30.0], "Cr": [35.0]}, index=["c"]), medium="soil",
                       exposure=exp, toxicity=tox, receptors=("child",))
    assert g[g.receptor == "child"]["hi"].iloc[0] == pytest.approx(one["hq"].sum())
    plt.close(h.plot_grid_risk(g))


def test_methods_text_citations_are_in_health_bib():
    """Every [@key] of the methods text has an entry in hmlib/data/bib/health.bib."""
    import re
    from importlib import resources

    bib = (resources.files("hmlib") / "data" / "bib" / "health.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M))
    for params in h.PARAMETER_SETS:
        for tox in h.TOXICITY_SETS:
            text = h.methods_text(parameters=params, receptors=["child", "resident"], cr_vi_fraction=1 / 7,
                                  n_iter=10000, seed=1, not_assessed=["Pb"], media=("soil", "water"), toxicity=tox)
            cited = set(re.findall(r"@([A-Za-z0-9_]+)", text))
            assert cited and cited <= keys, cited - keys
            assert "\\mathrm{HQ}" in text
    cited = set(re.findall(r"@([A-Za-z0-9_]+)", h.central_values_text(
        h.central_values_table(h.load_exposure_parameters(), h.load_distributions()))))
    assert cited <= keys, cited - keys


def test_no_assessable_metal_gives_empty_typed_table():
    r = h.risk_table(pd.DataFrame({"Pb": [0.0, 10.0]}, index=["a", "b"]), medium="soil",
                     exposure=h.load_exposure_parameters(), toxicity=h.load_toxicity(medium="soil"))
    assert r.empty and r.attrs["not_assessed"] == ["Pb"]
    assert list(r.columns) == ["sample_id", "medium", "receptor", "metal", "pathway", "concentration", "add",
                               "ladd", "hq", "cr"]
    assert r["hq"].dtype == float
    assert h.hazard_summary(r).empty


# --- grid risk = the per-sample model on the chosen method per metal (issue 15) ------------------------------------
def test_grid_risk_equals_sample_risk_where_grid_sits_on_samples():
    """Checked against the per-sample path (risk_table + sample_indices, itself checked against the published RSLs
    above): a grid whose cells sit on the samples and predict their concentrations, each metal by a different
    method (as the spatial stage chooses per metal), gives every sample's HI and TCR, Cr(VI) included."""
    w = _jura_like()
    exp, tox = h.load_exposure_parameters(), h.load_toxicity(medium="soil")
    xy = pd.DataFrame({"x": np.arange(len(w), dtype=float), "y": np.zeros(len(w))}, index=w.index)
    methods = {"Cd": "gpr", "Cr": "ok", "Ni": "rk", "Cu": "ok", "Zn": "gpr", "Co": "ok", "Pb": "rk"}
    gp = pd.concat([xy.assign(metal=m, method=methods.get(m, "ok"), prediction=w[m].to_numpy(), variance=0.1)
                    for m in w.columns], ignore_index=True)
    for f in (1 / 7, 0.5):
        g = h.grid_risk(gp, exposure=exp, toxicity=tox, receptors=("child", "resident"), cr_vi_fraction=f)
        per = h.sample_indices(h.risk_table(w, medium="soil", exposure=exp, toxicity=tox,
                                            receptors=("child", "resident"), cr_vi_fraction=f))
        per = per.merge(xy.rename_axis("sample_id").reset_index().astype({"sample_id": str}), on="sample_id")
        m = per.merge(g, on=["x", "y", "receptor"], suffixes=("_sample", "_grid"))
        assert len(m) == len(per)
        np.testing.assert_allclose(m["hi_grid"], m["hi_sample"], rtol=1e-12)
        np.testing.assert_allclose(m["tcr_grid"], m["tcr_sample"], rtol=1e-12)
    assert g.attrs["methods"] == {m: methods.get(m, "ok") for m in w.columns}


def test_grid_cells_predicted_below_zero_carry_the_risk_of_zero_concentration():
    """Checked against the per-sample path with the concentration set to zero by hand: a cell whose Cd
    prediction undershoots to -0.3 mg/kg gets the HI and TCR of a sample with no Cd (never a negative
    risk), and the cell is counted for the report."""
    w = _jura_like().iloc[:3].copy()
    exp, tox = h.load_exposure_parameters(), h.load_toxicity(medium="soil")
    pred = w.copy()
    pred.iloc[0, pred.columns.get_loc("Cd")] = -0.3
    xy = pd.DataFrame({"x": np.arange(len(w), dtype=float), "y": np.zeros(len(w))}, index=w.index)
    gp = pd.concat([xy.assign(metal=m, method="ok", prediction=pred[m].to_numpy(), variance=0.1)
                    for m in w.columns], ignore_index=True)
    g = h.grid_risk(gp, exposure=exp, toxicity=tox, receptors=("child", "resident"))
    zero = w.copy()
    zero.iloc[0, zero.columns.get_loc("Cd")] = 0.0
    per = h.sample_indices(h.risk_table(zero, medium="soil", exposure=exp, toxicity=tox,
                                        receptors=("child", "resident")))
    per = per.merge(xy.rename_axis("sample_id").reset_index().astype({"sample_id": str}), on="sample_id")
    m = per.merge(g, on=["x", "y", "receptor"], suffixes=("_sample", "_grid"))
    np.testing.assert_allclose(m["hi_grid"], m["hi_sample"], rtol=1e-12)
    assert (g["hi"] >= 0).all() and (g["tcr"].dropna() >= 0).all()
    assert g.attrs["cells_below_zero"] == {"Cd": 1}


def test_grid_risk_uses_the_mean_concentration_where_the_map_shows_the_median():
    """Checked against the per-sample risk model at the mean concentrations: when the grid table gives a mean
    beside the mapped value (the spatial stage maps the median), a cell's HI and TCR are those of a sample with
    the mean concentrations (the expected exposure), not of one with the median."""
    w = _jura_like().iloc[:3].copy()
    exp, tox = h.load_exposure_parameters(), h.load_toxicity(medium="soil")
    xy = pd.DataFrame({"x": np.arange(len(w), dtype=float), "y": np.zeros(len(w))}, index=w.index)
    gp = pd.concat([xy.assign(metal=m, method="ok", prediction=0.5 * w[m].to_numpy(), mean=w[m].to_numpy(),
                              variance=0.1) for m in w.columns], ignore_index=True)
    g = h.grid_risk(gp, exposure=exp, toxicity=tox, receptors=("child", "resident"))
    per = h.sample_indices(h.risk_table(w, medium="soil", exposure=exp, toxicity=tox, receptors=("child", "resident")))
    per = per.merge(xy.rename_axis("sample_id").reset_index().astype({"sample_id": str}), on="sample_id")
    m = per.merge(g, on=["x", "y", "receptor"], suffixes=("_sample", "_grid"))
    assert len(m) == 2 * len(w)
    np.testing.assert_allclose(m["hi_grid"], m["hi_sample"], rtol=1e-12)


def test_grid_methods_marked_choice_and_ambiguity():
    """Several methods per metal need a 'chosen' mark or an explicit method; one method per metal is taken as is."""
    base = pd.DataFrame({"x": [0.0], "y": [0.0], "prediction": [1.0]})
    two = pd.concat([base.assign(metal="Cd", method="ok", chosen=False),
                     base.assign(metal="Cd", method="gpr", chosen=True)], ignore_index=True)
    assert h.grid_methods(two) == {"Cd": "gpr"}
    assert h.grid_methods(two, method="ok") == {"Cd": "ok"}
    with pytest.raises(ValueError, match="chosen"):
        h.grid_methods(two.drop(columns="chosen"))
    assert "ordinary kriging for Cd, Zn" in h.methods_caption({"Cd": "ok", "Zn": "ok", "Cr": "gpr"})


def test_probability_format_consistent():
    """Checked against hand-written strings: zero hits of 10,000 print as '< 0.0001', one hit as '1.0 × 10^−4^'
    (pandoc superscript; never Python's '1.0e-04', never '0.000' beside 1e-4)."""
    assert h.format_probability(0.0, 10_000) == "< 0.0001"
    assert h.format_probability(0.0, 2_000) == "< 0.0005"
    assert h.format_probability(1e-4, 10_000) == "1.0 × 10^−4^"
    assert h.format_probability(0.2345, 10_000) == "0.234" or h.format_probability(0.2345, 10_000) == "0.235"
    assert "0.000" not in h.format_probability(3e-4, 10_000)


def test_central_values_explain_deterministic_vs_monte_carlo():
    """Against the cited files: the RSL child soil ingestion is 200 mg/day (RME) and the EFH 2011 central value, the
    Monte Carlo median, 100 mg/day; the triangular exposure frequency (min 180, mode 350, max 365; mode above the
    midpoint) has median 180 + sqrt(185 * 170 / 2) = 305.40 d/yr (closed form of the triangular median), which a
    large seeded draw from numpy's triangular generator confirms."""
    c = h.central_values_table(h.load_exposure_parameters("epa_rsl"), h.load_distributions()).set_index(
        ["parameter", "receptor"])
    assert c.loc[("IRS", "child"), "deterministic"] == 200 and c.loc[("IRS", "child"), "mc_median"] == 100
    assert c.loc[("EF", "all"), "mc_median"] == pytest.approx(180 + np.sqrt(185 * 170 / 2))
    draw = np.random.default_rng(0).triangular(180, 350, 365, 400_000)
    assert np.median(draw) == pytest.approx(c.loc[("EF", "all"), "mc_median"], abs=0.3)
    txt = h.central_values_text(c.reset_index())
    assert "reasonable-maximum" in txt and "soil ingestion rate (child) 200" in txt


def test_iris2024_chromium_set():
    """iris.epa.gov (Chromium(VI), last updated 08/01/2024): RfD 9E-4 mg/kg-day, RfC 3E-5 mg/m3, OSF 0.27; the RSL
    November 2024 set keeps 3E-3, 1E-4 and 0.5 (resident soil cancer SL 0.30 mg/kg above)."""
    new = h.load_toxicity("epa_rsl_iris2024", medium="soil").loc["Cr(VI)"]
    old = h.load_toxicity("epa_rsl", medium="soil").loc["Cr(VI)"]
    assert (new.rfd_oral, new.rfc, new.sf_oral) == (9e-4, 3e-5, 0.27)
    assert (old.rfd_oral, old.rfc, old.sf_oral) == (3e-3, 1e-4, 0.5)
    assert "November 2024" in old.table_version


def test_sci_text_and_receptor_table_by_hand():
    """Hand-written expectations: reader numbers use two significant figures and pandoc superscripts; the receptor
    table of two hand-made samples (HI 0.5 and 1.5, TCR 2e-6 and 2e-4) gives mean 1.0, maximum 1.5, 50 % of samples
    above HI = 1, and 100 % and 50 % above 1e-6 and 1e-4."""
    assert h.sci_text(1.7e-5) == "1.7 × 10^−5^" and h.sci_text(1e-4, 1) == "10^−4^"
    assert h.sci_text(0.46) == "0.46" and h.sci_text(9.97e-7) == "1.0 × 10^−6^"
    ind = pd.DataFrame({"sample_id": ["a", "b"], "medium": "soil", "receptor": "child", "hi": [0.5, 1.5],
                        "tcr": [2e-6, 2e-4]})
    summ = pd.DataFrame({"receptor": ["child", "child"], "metal": ["Co", "all"], "hi_mean": [1.0, 1.0],
                         "hi_max": [1.5, 1.5], "share_hi_gt_1": [0.5, 0.5], "tcr_mean": [1.01e-4, 1.01e-4],
                         "share_cr_gt_1e-4": [0.5, 0.5], "share_cr_gt_1e-6": [1.0, 1.0]})
    t = h.receptor_table(summ, ind, None, medium="soil").set_index("Measure")["Child (0-6 years)"]
    assert t["HI, mean of samples (maximum)"] == "1.0 (1.5)"
    assert t["Samples with HI > 1"] == "50 %"
    assert t["Samples with TCR > 10^−6^"] == "100 %" and t["Samples with TCR > 10^−4^"] == "50 %"
