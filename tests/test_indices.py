"""Pollution indices: hand-computed values on small arrays, class tables, input checks.

Every expected number below was worked out by hand from the formula in the cited paper
(independent of the code); the arithmetic is written out next to each assertion.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlib import indices as ix
from hmlib.reference import REQUIRED_COLUMNS, list_reference_sets, load_reference


@pytest.fixture(scope="module")
def class_tables():
    return {k: ix.load_index_classes(v, k) for k, v in ix.DEFAULT_CLASS_SETS.items()}


def wide(d, index=("s1", "s2")):
    return pd.DataFrame(d, index=pd.Index(list(index), name="sample_id"))


# --- single-metal indices -------------------------------------------------------------------
def test_contamination_factor_hand_values():
    """CF = C/B (Hakanson 1980): 0.6/0.2 = 3, 0.1/0.2 = 0.5, 60/20 = 3, 10/20 = 0.5."""
    c = wide({"Cd": [0.6, 0.1], "Pb": [60.0, 10.0]})
    cf = ix.contamination_factor(c, pd.Series({"Pb": 20.0, "Cd": 0.2, "Zn": 70.0}))
    np.testing.assert_allclose(cf.to_numpy(), [[3.0, 3.0], [0.5, 0.5]])
    assert list(cf.columns) == ["Cd", "Pb"] and list(cf.index) == ["s1", "s2"]


def test_contamination_factor_per_sample_background_and_no_mutation():
    """Adaptive (per-sample) background: CF = 0.6/0.3 = 2 and 0.1/0.05 = 2."""
    c = wide({"Cd": [0.6, 0.1]})
    b = wide({"Cd": [0.05, 0.3]}, index=("s2", "s1"))  # other row order: aligned on the index
    before = c.copy()
    cf = ix.contamination_factor(c, b)
    np.testing.assert_allclose(cf["Cd"], [2.0, 2.0])
    pd.testing.assert_frame_equal(c, before)


def test_contamination_factor_arrays():
    np.testing.assert_allclose(ix.contamination_factor(np.array([2.0, 4.0]), 2.0), [1.0, 2.0])


def test_geoaccumulation_index_hand_values():
    """Igeo = log2(C / (1.5 B)) (Mueller 1969): log2(1.2/0.3) = 2, log2(0.3/0.3) = 0, log2(0.15/0.3) = -1."""
    c = wide({"Cd": [1.2, 0.3, 0.15]}, index=("a", "b", "c"))
    ig = ix.geoaccumulation_index(c, pd.Series({"Cd": 0.2}))
    np.testing.assert_allclose(ig["Cd"], [2.0, 0.0, -1.0], atol=1e-12)
    # k = 1: log2(1.2/0.2) = log2(6) = 2.5849625
    np.testing.assert_allclose(ix.geoaccumulation_index(c, pd.Series({"Cd": 0.2}), k=1.0)["Cd"].iloc[0],
                               2.584962500721156)


def test_enrichment_factor_hand_values():
    """EF = (C_Cu/C_Al) / (B_Cu/B_Al) (Sutherland 2000): (40/80000)/(20/80000) = 2; (40/40000)/(20/80000) = 4."""
    c = wide({"Cu": [40.0, 40.0], "Al": [80000.0, 40000.0]})
    ef = ix.enrichment_factor(c, pd.Series({"Cu": 20.0, "Al": 80000.0}), reference_element="Al")
    assert list(ef.columns) == ["Cu"]
    np.testing.assert_allclose(ef["Cu"], [2.0, 4.0])


def test_enrichment_factor_needs_reference_element():
    with pytest.raises(ValueError, match="reference element 'Al'"):
        ix.enrichment_factor(wide({"Cu": [1.0, 2.0]}), pd.Series({"Cu": 1.0}), reference_element="Al")


def test_ecological_risk_factor_and_peri_hand_values():
    """Er = Tr CF with Hakanson's Tr (Cd 30, Pb 5, Zn 1): CF (2, 4, 3) -> Er (60, 20, 3); PERI = 83; Cdeg = 9."""
    cf = wide({"Cd": [2.0], "Pb": [4.0], "Zn": [3.0]}, index=("s1",))
    tr = ix.toxic_response_factors()
    er = ix.ecological_risk_factor(cf, tr)
    np.testing.assert_allclose(er.iloc[0].to_numpy(), [60.0, 20.0, 3.0])
    assert ix.potential_ecological_risk_index(er).iloc[0] == pytest.approx(83.0)
    assert ix.degree_of_contamination(cf).iloc[0] == pytest.approx(9.0)


def test_toxic_response_factors_are_the_published_ones():
    """Hakanson (1980): Hg 40, Cd 30, As 10, Pb 5, Cu 5, Cr 2, Zn 1; later literature: Ni 5, Co 5."""
    tr = ix.toxic_response_factors("Hakanson_1980")
    assert tr.to_dict() == {"Hg": 40, "Cd": 30, "As": 10, "Pb": 5, "Cu": 5, "Cr": 2, "Zn": 1, "Ni": 5, "Co": 5}
    src = load_reference("toxic_response", "Hakanson_1980").set_index("metal")["source"]
    assert "10.1016/0043-1354(80)90143-8" in src["Cd"]
    assert "Hakanson" not in src["Ni"].split("not in")[0] and "Xu" in src["Ni"]


def test_missing_toxic_response_is_an_error():
    with pytest.raises(ValueError, match="no toxic response factor for \\['V'\\]"):
        ix.ecological_risk_factor(wide({"V": [1.0]}, index=("s1",)), ix.toxic_response_factors())


# --- integrated indices --------------------------------------------------------------------
def test_pollution_load_index_hand_values():
    """PLI = (prod CF)^(1/n) (Tomlinson et al. 1980): (2*8)^(1/2) = 4; (1*2*4)^(1/3) = 2."""
    cf = wide({"a": [2.0, 1.0], "b": [8.0, 2.0], "c": [4.0, 4.0]})
    np.testing.assert_allclose(ix.pollution_load_index(cf[["a", "b"]]).iloc[0], 4.0)
    np.testing.assert_allclose(ix.pollution_load_index(cf).iloc[1], 2.0)


def test_pollution_load_index_missing_value_propagates():
    cf = wide({"a": [2.0, np.nan], "b": [8.0, 2.0]})
    pli = ix.pollution_load_index(cf)
    assert pli.iloc[0] == pytest.approx(4.0) and np.isnan(pli.iloc[1])


def test_nemerow_hand_values():
    """P_N = sqrt((mean^2 + max^2)/2): P = (1, 3) -> sqrt((4 + 9)/2) = sqrt(6.5) = 2.5495098."""
    p = wide({"a": [1.0], "b": [3.0]}, index=("s1",))
    assert ix.nemerow_index(p).iloc[0] == pytest.approx(2.5495097567963922)


def test_hpi_hand_values():
    """HPI (Mohan et al. 1996), I = 0: Q_Pb = 100*20/10 = 200, Q_Cd = 100*1.5/3 = 50; W = 1/10, 1/3;
    HPI = (0.1*200 + 50/3) / (0.1 + 1/3) = 36.6667/0.43333 = 84.6154."""
    m = wide({"Pb": [20.0], "Cd": [1.5]}, index=("w1",))
    hpi = ix.heavy_metal_pollution_index(m, pd.Series({"Pb": 10.0, "Cd": 3.0}))
    assert hpi.iloc[0] == pytest.approx(84.61538461538461)


def test_hpi_with_ideal_values():
    """With I_Pb = 5: Q_Pb = 100*|20-5|/(10-5) = 300; single metal -> HPI = Q = 300."""
    m = wide({"Pb": [20.0]}, index=("w1",))
    hpi = ix.heavy_metal_pollution_index(m, pd.Series({"Pb": 10.0}), ideal_ug_l=pd.Series({"Pb": 5.0}))
    assert hpi.iloc[0] == pytest.approx(300.0)


def test_hpi_checks_standard_coverage():
    with pytest.raises(ValueError, match="no value for Zn;"):
        ix.heavy_metal_pollution_index(wide({"Zn": [1.0]}, index=("w",)), pd.Series({"Pb": 10.0}))


def test_water_standard_units_converted():
    """GB 5749-2022 lists mg/L: Cd 0.005 mg/L = 5 ug/L; WHO 2022 Cd 3 ug/L."""
    assert ix.water_standard_values("GB5749_2022")["Cd"] == pytest.approx(5.0)
    assert ix.water_standard_values("WHO_2022")["Cd"] == pytest.approx(3.0)


# --- class tables ---------------------------------------------------------------------------
@pytest.mark.parametrize("index,value,rank", [
    ("CF", 0.99, 0), ("CF", 1.0, 1), ("CF", 5.99, 2), ("CF", 6.0, 3),          # Hakanson: <1, 1-3, 3-6, >=6
    ("Igeo", -3.0, 0), ("Igeo", 0.0, 0), ("Igeo", 0.01, 1), ("Igeo", 5.0, 5), ("Igeo", 5.01, 6),  # Mueller
    ("Er", 39.9, 0), ("Er", 40.0, 1), ("Er", 160.0, 3), ("Er", 320.0, 4),
    ("PERI", 149.0, 0), ("PERI", 150.0, 1), ("PERI", 600.0, 3),
    ("Cdeg", 8.0, 1), ("Cdeg", 32.0, 3),
    ("EF", 1.9, 0), ("EF", 2.0, 1), ("EF", 40.0, 4),                              # Sutherland 2000
    ("PLI", 1.0, 0), ("PLI", 1.01, 1),                                            # Tomlinson 1980
    ("Nemerow", 0.7, 0), ("Nemerow", 0.71, 1), ("Nemerow", 3.0, 3), ("Nemerow", 3.1, 4),  # HJ/T 166-2004
    ("HPI", 99.9, 0), ("HPI", 100.0, 1),                                          # Mohan 1996
])
def test_class_boundaries(class_tables, index, value, rank):
    out = ix.classify(pd.Series([value]), class_tables[index])
    assert out["class_rank"].iloc[0] == rank


def test_classify_tolerates_rounding_at_bounds(class_tables):
    """0.6/0.2 is 2.9999999999999996 in floating point; CF = 3 belongs to 'considerable' (3 <= CF < 6)."""
    out = ix.classify(pd.Series([0.6 / 0.2, 2.99]), class_tables["CF"])
    assert list(out["class_rank"]) == [2, 1]


def test_classify_nan_and_labels(class_tables):
    out = ix.classify(pd.Series([np.nan, 2.5], index=["a", "b"]), class_tables["Igeo"])
    assert out["class_rank"].isna().iloc[0] and out["class"].iloc[0] is None
    assert out.loc["b", "class"] == "class 3: moderately to heavily polluted"


def test_igeo_has_seven_classes(class_tables):
    assert len(class_tables["Igeo"]) == 7


def test_peri_revised_scheme():
    """Wu et al. (2025) Table S8: RI < 100 low, 100-200 moderate, 200-400 considerable, >= 400 very high."""
    t = ix.load_index_classes("PERI_Wu2025", "PERI")
    assert list(ix.classify(pd.Series([99.0, 100.0, 399.0, 400.0]), t)["class_rank"]) == [0, 1, 2, 3]


def test_bad_class_table_rejected(class_tables):
    t = class_tables["CF"].copy()
    t.loc[t["rank"] == 2, "lower"] = 4.0
    with pytest.raises(ValueError, match="contiguous"):
        ix.classify(pd.Series([1.0]), t)


def test_index_classes_kind_registered_and_sourced():
    assert "index_classes" in REQUIRED_COLUMNS
    sets = list_reference_sets("index_classes")
    assert len(sets) >= 7 and (sets["sources"].str.len() > 0).all()


# --- input checks ---------------------------------------------------------------------------
def test_negative_concentration_rejected():
    with pytest.raises(ValueError, match="must be >= 0"):
        ix.contamination_factor(wide({"Cd": [-1.0, 1.0]}), pd.Series({"Cd": 0.2}))


def test_nonpositive_background_rejected():
    with pytest.raises(ValueError, match="finite and > 0"):
        ix.contamination_factor(wide({"Cd": [1.0, 1.0]}), pd.Series({"Cd": 0.0}))


def test_background_must_cover_metals():
    with pytest.raises(ValueError, match="no value for Pb;"):
        ix.contamination_factor(wide({"Cd": [1.0, 1.0], "Pb": [1.0, 2.0]}), pd.Series({"Cd": 0.2}))


def test_per_sample_background_must_cover_samples():
    with pytest.raises(ValueError, match="missing samples"):
        ix.contamination_factor(wide({"Cd": [1.0, 1.0]}), wide({"Cd": [0.2]}, index=("s1",)))


def test_bad_igeo_factor():
    with pytest.raises(ValueError, match="k must be"):
        ix.geoaccumulation_index(np.array([1.0]), 1.0, k=0)


# --- tidy table -----------------------------------------------------------------------------
def test_compute_indices_table(class_tables):
    """Cd 0.6 / Pb 60 over B (0.2, 20): CF 3 and 3, Er 90 and 15, PERI 105, PLI 3, Nemerow 3, Cdeg 6."""
    c = wide({"Cd": [0.6, 0.1], "Pb": [60.0, 10.0]})
    b = pd.Series({"Cd": 0.2, "Pb": 20.0})
    t, notes = ix.compute_indices(c, b, medium="soil", background_used="test", class_tables=class_tables,
                                  toxic_response=ix.toxic_response_factors())
    assert list(t.columns[:7]) == ["sample_id", "medium", "metal", "index", "value", "class", "background_used"]
    v = t.set_index(["sample_id", "metal", "index"])["value"]
    assert v[("s1", "Cd", "Er")] == pytest.approx(90.0)
    assert v[("s1", "Pb", "Er")] == pytest.approx(15.0)
    assert v[("s1", "all", "PERI")] == pytest.approx(105.0)
    assert v[("s1", "all", "PLI")] == pytest.approx(3.0)
    assert v[("s1", "all", "Nemerow")] == pytest.approx(3.0)
    assert v[("s1", "all", "Cdeg")] == pytest.approx(6.0)
    assert set(t["index"]) == {"CF", "Igeo", "Er", "Cdeg", "PLI", "Nemerow", "PERI"}
    assert any("enrichment factor was not computed" in n for n in notes)
    shares = ix.index_class_shares(t, class_tables)
    cf_cd = shares[(shares["metal"] == "Cd") & (shares["index"] == "CF")]
    assert len(cf_cd) == 4 and cf_cd["share"].sum() == pytest.approx(1.0)
    assert cf_cd.set_index("class_rank").loc[2, "n"] == 1  # CF 3 -> considerable


def test_compute_indices_ef_with_reference_element(class_tables):
    c = wide({"Cu": [40.0, 40.0], "Al": [80000.0, 40000.0]})
    t, notes = ix.compute_indices(c, pd.Series({"Cu": 20.0, "Al": 80000.0}), medium="sediment",
                                  background_used="x", class_tables=class_tables, indices=("CF", "EF"),
                                  toxic_response=ix.toxic_response_factors(), ef_reference_element="Al")
    ef = t[t["index"] == "EF"]
    assert list(ef["value"]) == pytest.approx([2.0, 4.0]) and set(ef["metal"]) == {"Cu"}
    assert set(t.loc[t["index"] == "CF", "metal"]) == {"Cu"}
    assert notes == []


def test_compute_indices_notes_metals_without_tr(class_tables):
    c = wide({"Cd": [0.6, 0.1], "V": [60.0, 10.0]})
    t, notes = ix.compute_indices(c, pd.Series({"Cd": 0.2, "V": 20.0}), medium="soil", background_used="x",
                                  class_tables=class_tables, toxic_response=ix.toxic_response_factors(),
                                  indices=("Er", "PERI"))
    assert set(t.loc[t["index"] == "Er", "metal"]) == {"Cd"}
    assert any("No toxic response factor for V:" in n for n in notes)


def test_compute_water_indices(class_tables):
    m = wide({"Pb": [20.0, 1.0], "Cd": [1.5, 0.3], "Co": [1.0, 1.0]}, index=("w1", "w2"))
    t, notes = ix.compute_water_indices(m, standard_ug_l=ix.water_standard_values("WHO_2022"), medium="water",
                                        standard_name="WHO_2022", classes=class_tables["HPI"])
    assert t["value"].iloc[0] == pytest.approx(84.61538461538461)
    assert list(t["class_rank"]) == [0, 0] and set(t["metal"]) == {"all"}
    assert any("Co" in n for n in notes)


def test_options_defaults():
    from pydantic import ValidationError

    from hmlib.stages.indices import Options

    o = Options()
    assert o.background_source == "baseline" and o.ef_reference_element is None
    with pytest.raises(ValidationError):
        Options(background_source="static")
    with pytest.raises(ValidationError):
        Options(zoning_media=["soil"])
    assert Options(zoning_media=["soil", "sediment"]).zoning_media == ["soil", "sediment"]
    assert o.class_limits == "scaled" and o.nemerow_reference == "guideline"


# --- backgrounds from the baselines stage and figures -----------------------------------------
def _baselines():
    return pd.DataFrame({
        "medium": ["soil"] * 5 + ["sediment"],
        "stratum": ["all", "all", "all", "all", "Rock=x", "all"],
        "metal": ["Cd", "Cd", "Pb", "Pb", "Cd", "Cd"],
        "method": ["imea", "boxplot", "imea", "boxplot", "boxplot", "boxplot"],
        "baseline": [0.2, 0.3, 20.0, 25.0, 9.0, 7.0],
        "recommended": [False, True, True, False, True, True],
    })


def test_baseline_background_recommended_and_named_method():
    b, used = ix.baseline_background(_baselines(), medium="soil")
    assert b.to_dict() == {"Cd": 0.3, "Pb": 20.0} and used.to_dict() == {"Cd": "boxplot", "Pb": "imea"}
    b, _ = ix.baseline_background(_baselines(), medium="soil", method="boxplot")
    assert b.to_dict() == {"Cd": 0.3, "Pb": 25.0}
    b, _ = ix.baseline_background(_baselines().astype({"recommended": str}), medium="sediment")
    assert b.to_dict() == {"Cd": 7.0}


def test_baseline_background_checks_columns():
    with pytest.raises(ValueError, match="recommended"):
        ix.baseline_background(_baselines().drop(columns="recommended"), medium="soil")


def test_adaptive_background_wide():
    a = pd.DataFrame({"sample_id": ["a", "a", "b", "b", "c"], "medium": ["soil"] * 4 + ["water"],
                      "metal": ["Cd", "Pb", "Cd", "Pb", "Cd"], "background": [0.1, 10.0, 0.2, 20.0, 1.0]})
    w = ix.adaptive_background_wide(a, medium="soil")
    assert w.loc["b", "Pb"] == 20.0 and list(w.index) == ["a", "b"]
    # per-sample CF against it: 0.3/0.1 = 3 and 0.3/0.2 = 1.5
    cf = ix.contamination_factor(wide({"Cd": [0.3, 0.3]}, index=("a", "b")), w[["Cd"]])
    np.testing.assert_allclose(cf["Cd"], [3.0, 1.5])


def test_nan_background_gives_nan_index():
    cf = ix.contamination_factor(wide({"Cd": [0.3, 0.3]}), wide({"Cd": [np.nan, 0.1]}))
    assert np.isnan(cf["Cd"].iloc[0]) and cf["Cd"].iloc[1] == pytest.approx(3.0)


def test_methods_text_cites_sources():
    _, info = ix.integrated_class_tables(toxic_response=ix.toxic_response_factors(), metals=["Cd", "Pb"],
                                         limits="PERI_Wu2025")
    txt = ix.methods_text(background_label="reference set X", igeo_factor=1.5, ef_reference_element=None,
                          class_info=info, toxic_response=ix.toxic_response_factors(),
                          water_standard="WHO_2022", has_water=True)
    for key in ("@hakanson1980", "@mueller1969", "@tomlinson1980", "@mohan1996", "@wu2025tracing"):
        assert key in txt
    assert "EF is not reported" in txt and "Cd 30" in txt


def test_bib_has_every_cited_key():
    import re
    from importlib import resources
    # the report's bibliography is built from every topic file (the guideline sets are cited from data_quality.bib)
    bib = "\n".join(f.read_text(encoding="utf-8") for f in (resources.files("hmlib") / "data" / "bib").iterdir()
                     if f.name.endswith(".bib"))
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M))
    for limits in ("scaled", "Hakanson_1980", "PERI_Wu2025"):
        _, info = ix.integrated_class_tables(toxic_response=ix.toxic_response_factors(), metals=["Cd", "Pb"],
                                             limits=limits)
        for nem in (None, "GB15618_2018"):
            txt = ix.methods_text(background_label="b", igeo_factor=1.5, ef_reference_element="Al",
                                  class_info=info, toxic_response=ix.toxic_response_factors(),
                                  water_standard="WHO_2022", has_water=True, nemerow_guideline=nem)
            cited = set(re.findall(r"@([A-Za-z0-9_]+)", txt))
            assert cited <= keys, cited - keys


def test_class_map_and_share_figures(class_tables):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    c = wide({"Cd": [0.6, 0.1, 0.3], "Pb": [60.0, 10.0, 30.0]}, index=("a", "b", "c"))
    t, _ = ix.compute_indices(c, pd.Series({"Cd": 0.2, "Pb": 20.0}), medium="soil", background_used="x",
                              toxic_response=ix.toxic_response_factors(), class_tables=class_tables)
    sites = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 0.5]}, index=["a", "b", "c"])
    fig = ix.plot_class_maps(t, sites, index="Igeo", class_table=class_tables["Igeo"])
    assert sum(ax.get_visible() for ax in fig.axes) == 2
    shares = ix.index_class_shares(t, class_tables)
    fig2 = ix.plot_class_shares(shares, index="Er", medium="soil")
    er = shares[(shares["index"] == "Er") & (shares["medium"] == "soil")]
    occupied = er.groupby("class_rank")["share"].sum().gt(0).sum()  # classes no sample falls in are not drawn
    assert len(fig2.axes[0].patches) == 2 * occupied  # 2 metals x the occupied Er classes
    plt.close("all")


def test_index_summary(class_tables):
    """CF of Cd (3, 0.5, 1.5): median 1.5, max 3; classes (2, 0, 1) -> 2 of 3 above the lowest class."""
    c = wide({"Cd": [0.6, 0.1, 0.3]}, index=("a", "b", "c"))
    t, _ = ix.compute_indices(c, pd.Series({"Cd": 0.2}), medium="soil", background_used="x", indices=("CF",),
                              toxic_response=ix.toxic_response_factors(), class_tables=class_tables)
    s = ix.index_summary(t).iloc[0]
    assert (s["n"], s["median"], s["max"]) == (3, pytest.approx(1.5), pytest.approx(3.0))
    assert s["pct_above_lowest"] == pytest.approx(200 / 3)


def test_compute_water_indices_without_any_standard(class_tables):
    m = wide({"Co": [1.0, 2.0]}, index=("w1", "w2"))
    t, notes = ix.compute_water_indices(m, standard_ug_l=ix.water_standard_values("WHO_2022"), medium="water",
                                        standard_name="WHO_2022", classes=class_tables["HPI"])
    assert t.empty and "HPI uses no metal" in notes[0]


def test_stratified_baseline_background():
    """Stratum Rock=x has a Cd baseline (9) but no Pb baseline -> Pb falls back to 'all' (20);
    stratum y has no rows -> both metals fall back; a sample without a stratum gets 'all'."""
    strata = pd.Series(["x", "y", None], index=["a", "b", "c"])
    bg, notes = ix.stratified_baseline_background(_baselines(), strata, medium="soil", column="Rock")
    assert bg.loc["a"].to_dict() == {"Cd": 9.0, "Pb": 20.0}
    assert bg.loc["b"].to_dict() == {"Cd": 0.3, "Pb": 20.0}
    assert bg.loc["c"].to_dict() == {"Cd": 0.3, "Pb": 20.0}
    assert notes and "Pb in Rock=x" in notes[0] and "any metal in Rock=y" in notes[0] and "without a Rock" in notes[0]


# --- class limits scaled to the metals assessed (issue: PERI 150/300/600 used unadjusted) -------------------------
@pytest.mark.parametrize("metals,peri_first,cdeg_first", [
    # Hakanson's own seven metals (+ PCB 40 = 133 -> 150): Hg 40 + Cd 30 + As 10 + Pb 5 + Cu 5 + Cr 2 + Zn 1 = 93
    # -> 93 * 150/133 = 104.9 -> 100
    (["Hg", "Cd", "As", "Pb", "Cu", "Cr", "Zn"], 100.0, 7.0),
    # Jura: Cd 30 + Co 5 + Cr 2 + Cu 5 + Ni 5 + Pb 5 + Zn 1 = 53 -> 59.8 -> 60
    (["Cd", "Co", "Cr", "Cu", "Ni", "Pb", "Zn"], 60.0, 7.0),
    # arid_demo: As 10 + Cd 30 + Pb 5 + Zn 1 = 46 -> 51.9 -> 50
    (["As", "Cd", "Pb", "Zn"], 50.0, 4.0),
    # coastal_demo (eight metals): 30 + 5 + 5 + 1 + 2 + 5 + 10 + 40 = 98 -> 110.5 -> 110
    (["Cd", "Pb", "Cu", "Zn", "Cr", "Ni", "As", "Hg"], 110.0, 8.0),
])
def test_scaled_class_limits_hand_values(metals, peri_first, cdeg_first):
    """Checked against hand arithmetic of Hakanson's (1980) rule: his first PERI limit 150 is the sum of the eight
    toxic response factors (133) rounded up, and the first Cdeg limit 8 is one CF unit per substance; the scaled
    limits keep those ratios for the metals assessed and double as his table does (sums computed by hand above)."""
    tables, info = ix.integrated_class_tables(toxic_response=ix.toxic_response_factors(), metals=metals)
    peri = tables["PERI"].sort_values("rank")
    assert peri["upper"].tolist()[:3] == [peri_first, 2 * peri_first, 4 * peri_first]
    cdeg = tables["Cdeg"].sort_values("rank")
    assert cdeg["upper"].tolist()[:3] == [cdeg_first, 2 * cdeg_first, 4 * cdeg_first]
    assert info["peri_first"] == peri_first


def test_hakanson_original_limits_option():
    """The published 150/300/600 and 8/16/32 (Hakanson 1980, Water Research 14:975, classes of RI and Cdeg)."""
    tables, _ = ix.integrated_class_tables(toxic_response=ix.toxic_response_factors(), metals=["Cd"],
                                           limits="Hakanson_1980")
    assert tables["PERI"].sort_values("rank")["upper"].tolist()[:3] == [150, 300, 600]
    assert tables["Cdeg"].sort_values("rank")["upper"].tolist()[:3] == [8, 16, 32]


def test_integrated_indices_use_assessed_metals_only(class_tables):
    """Hand values: with Fe present but not assessed, Cdeg = CF_Cd + CF_Pb = 2 + 3 = 5 (not + CF_Fe)."""
    c = wide({"Cd": [0.4], "Pb": [60.0], "Fe": [40000.0]})
    b = pd.Series({"Cd": 0.2, "Pb": 20.0, "Fe": 20000.0})
    assert ix.assessed_metals(["Cd", "Pb", "Fe"]) == ["Cd", "Pb"]
    t, notes = ix.compute_indices(c, b, medium="soil", background_used="x", class_tables=class_tables,
                                  toxic_response=ix.toxic_response_factors(), indices=("CF", "Cdeg", "PLI"),
                                  integrated_metals=["Cd", "Pb"])
    cdeg = t[(t["index"] == "Cdeg")]["value"].iloc[0]
    assert cdeg == pytest.approx(5.0)
    assert t[(t["index"] == "PLI")]["value"].iloc[0] == pytest.approx(np.sqrt(6.0))
    assert any("Fe" in n for n in notes)


def test_ef_without_reference_background_is_skipped_with_note(class_tables):
    """EF needs B of the reference element; a background set without it skips EF (note) and keeps the other indices."""
    c = wide({"Cu": [40.0], "Al": [70000.0]})
    t, notes = ix.compute_indices(c, pd.Series({"Cu": 20.0}), medium="soil", background_used="set X",
                                  class_tables=class_tables, toxic_response=ix.toxic_response_factors(),
                                  indices=("CF", "EF"), ef_reference_element="Al")
    assert set(t["index"]) == {"CF"} and any("reference element Al" in n for n in notes)


def test_nemerow_against_guideline_and_ungraded_against_background(class_tables):
    """Hand values: P = C/S = (0.6/0.3, 50/100) = (2, 0.5): P_N = sqrt(((1.25)^2 + 2^2)/2) = 1.6677, graded
    'slightly polluted' (1 < P <= 2, HJ/T 166-2004); against the background it has no grade."""
    c = wide({"Cd": [0.6], "Pb": [50.0]})
    b = pd.Series({"Cd": 0.2, "Pb": 20.0})
    s = wide({"Cd": [0.3], "Pb": [100.0]})
    t, _ = ix.compute_indices(c, b, medium="soil", background_used="x", class_tables=class_tables,
                              toxic_response=ix.toxic_response_factors(), indices=("Nemerow",),
                              nemerow_standard_mg_kg=s)
    r = t[t["index"] == "Nemerow"].iloc[0]
    assert r["value"] == pytest.approx(np.sqrt((1.25 ** 2 + 2.0 ** 2) / 2))
    assert r["class"] == "slightly polluted"
    t2, _ = ix.compute_indices(c, b, medium="soil", background_used="x", class_tables=class_tables,
                               toxic_response=ix.toxic_response_factors(), indices=("Nemerow",))
    assert t2[t2["index"] == "Nemerow"]["class"].isna().all()
