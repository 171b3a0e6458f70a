"""Dual-media zoning, bearing capacity and background misjudgment on hand-made examples.

Expected zones follow the rectangle description of Wu et al. (2025, section 2.1, Fig. S5);
expected capacities and counts are worked out by hand.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlib import zoning as z


def zones(x, y, **kw):
    bounds = dict(baseline_min_a=10.0, baseline_max_a=20.0, baseline_min_b=1.0, baseline_max_b=4.0)
    bounds.update(kw)
    return list(z.dual_media_zones(np.asarray(x, float), np.asarray(y, float), medium_a="soil",
                                   medium_b="sediment", **bounds))


def test_zones_unambiguous_rectangles():
    """Soil baselines 10-20, sediment 1-4.

    (5, 0.5): both below their minimum -> Background; (30, 8): both above maximum -> Pollution;
    (30, 0.5) and (30, 2): soil above its max, sediment not -> soil-dominated;
    (5, 8) and (15, 8): sediment above its max, soil not -> sediment-dominated;
    (15, 0.5): soil inside its range, sediment below min -> soil-dominated;
    (5, 2): sediment inside its range, soil below min -> sediment-dominated.
    """
    x = [5, 30, 30, 30, 5, 15, 15, 5]
    y = [0.5, 8, 0.5, 2, 8, 8, 0.5, 2]
    assert zones(x, y) == ["Background", "Pollution", "soil-dominated", "soil-dominated",
                           "sediment-dominated", "sediment-dominated", "soil-dominated", "sediment-dominated"]


def test_zones_overlap_split_on_log_position():
    """Inside both ranges: t_soil = ln(x/10)/ln 2, t_sed = ln(y/1)/ln 4.
    (17, 1.5): t = 0.766 vs 0.292 -> soil; (11, 3.5): 0.138 vs 0.904 -> sediment."""
    assert zones([17, 11], [1.5, 3.5]) == ["soil-dominated", "sediment-dominated"]


def test_zones_on_boundaries_and_nan():
    """x = min and y = min is Background (<=); x = max and y = max is not Pollution (needs >)."""
    out = zones([10, 20, np.nan], [1, 4, 2])
    assert out[0] == "Background" and out[1] != "Pollution" and out[2] is None


def test_zones_degenerate_range():
    out = zones([30, 5], [1.5, 8], baseline_min_a=10.0, baseline_max_a=10.0)
    assert out == ["soil-dominated", "sediment-dominated"]


def test_zones_input_checks():
    with pytest.raises(ValueError, match="same length"):
        zones([1, 2], [1])
    with pytest.raises(ValueError, match="must not exceed"):
        zones([1], [1], baseline_min_a=30.0)
    with pytest.raises(ValueError, match="> 0"):
        zones([1], [1], baseline_min_b=0.0)


def test_pair_media_by_site_and_shares():
    """Site A: soil (10 + 30)/2 = 20, sediment 5; site B: soil 2, sediment 0.5; site C: soil only."""
    samples = pd.DataFrame({"sample_id": ["s1", "s2", "d1", "s3", "d2", "s4"],
                            "medium": ["soil", "soil", "sediment", "soil", "sediment", "soil"],
                            "site_id": ["A", "A", "A", "B", "B", "C"]})
    conc = pd.DataFrame({"sample_id": ["s1", "s2", "d1", "s3", "d2", "s4"],
                         "medium": ["soil", "soil", "sediment", "soil", "sediment", "soil"],
                         "metal": "Cd", "value": [10.0, 30.0, 5.0, 2.0, 0.5, 9.0]})
    p = z.pair_media_by_site(samples, conc, medium_a="soil", medium_b="sediment")
    assert list(p["site_id"]) == ["A", "B"]
    assert list(p["soil"]) == [20.0, 2.0] and list(p["sediment"]) == [5.0, 0.5]
    assert list(p["n_a"]) == [2, 1]
    p["zone"] = z.dual_media_zones(p["soil"], p["sediment"], baseline_min_a=10, baseline_max_a=15,
                                   baseline_min_b=1, baseline_max_b=4, medium_a="soil", medium_b="sediment")
    sh = z.zone_shares(p, medium_a="soil", medium_b="sediment").set_index("zone")
    assert len(sh) == 4
    assert sh.loc["Pollution", "n"] == 1 and sh.loc["Background", "share"] == pytest.approx(0.5)
    assert sh.loc["soil-dominated", "n"] == 0


def test_pair_media_needs_site_column():
    with pytest.raises(ValueError, match="site_id"):
        z.pair_media_by_site(pd.DataFrame({"sample_id": [], "medium": []}), pd.DataFrame(),
                             medium_a="soil", medium_b="sediment")


# --- bearing capacity -----------------------------------------------------------------------
def test_bearing_capacity_hand_values():
    """G_Pb = 50: C = 10 -> R = 40 (80 %); C = 60 -> R = -10 (-20 %, overloaded). Share overloaded 1/2."""
    c = pd.DataFrame({"Pb": [10.0, 60.0], "Co": [5.0, 5.0]}, index=pd.Index(["a", "b"], name="sample_id"))
    cap = z.bearing_capacity(c, pd.Series({"Pb": 50.0, "Cd": 0.8}))
    assert set(cap["metal"]) == {"Pb"}
    assert list(cap["remaining"]) == [40.0, -10.0]
    assert list(cap["remaining_pct"]) == pytest.approx([80.0, -20.0])
    assert list(cap["overloaded"]) == [False, True]
    s = z.bearing_capacity_summary(cap).iloc[0]
    assert s["n_overloaded"] == 1 and s["share_overloaded"] == pytest.approx(0.5)
    assert s["min_remaining_pct"] == pytest.approx(-20.0)


def test_bearing_capacity_at_guideline_not_overloaded():
    c = pd.DataFrame({"Pb": [50.0]}, index=pd.Index(["a"], name="sample_id"))
    cap = z.bearing_capacity(c, pd.Series({"Pb": 50.0}))
    assert not cap["overloaded"].iloc[0] and cap["remaining"].iloc[0] == 0.0


def test_bearing_capacity_rejects_bad_guideline():
    with pytest.raises(ValueError, match="finite and > 0"):
        z.bearing_capacity(pd.DataFrame({"Pb": [1.0]}), pd.Series({"Pb": 0.0}))


def test_select_guideline_strictest():
    g = pd.DataFrame({"metal": ["Pb", "Pb", "Cd", "Cd"], "threshold_name": ["trigger", "trigger", "trigger", "guide"],
                      "value": [200.0, 300.0, 2.0, 0.8]})
    s, notes = z.select_guideline(g, threshold_name="trigger")
    assert s.to_dict() == {"Pb": 200.0, "Cd": 2.0}
    assert notes and "Pb" in notes[0]
    with pytest.raises(ValueError, match="name one"):
        z.select_guideline(g, threshold_name=None)
    with pytest.raises(ValueError, match="available"):
        z.select_guideline(g, threshold_name="clean_up")


# --- misjudgment ----------------------------------------------------------------------------
def _table(ranks, bg):
    n = len(ranks)
    return pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "medium": "soil", "metal": "Cd",
                         "index": "Igeo", "value": np.arange(n, dtype=float), "class": "x",
                         "background_used": bg, "class_rank": pd.array(ranks, dtype="Int64")})


def test_background_misjudgment_counts():
    """Static ranks (0, 1, 2, 2, NA) vs adaptive (0, 2, 1, 0, 1): changed 3 of 4 comparable,
    under (static lower) 1 (s1), over 2 (s2, s3)."""
    s = _table([0, 1, 2, 2, None], "static")
    a = _table([0, 2, 1, 0, 1], "adaptive")
    m = z.background_misjudgment(s, a, indices=("Igeo",))
    assert list(m.columns[:6]) == ["metal", "index", "n_class_changed", "share_class_changed", "n_under", "n_over"]
    r = m.iloc[0]
    assert (r["n"], r["n_class_changed"], r["n_under"], r["n_over"]) == (4, 3, 1, 2)
    assert r["share_class_changed"] == pytest.approx(0.75)


def test_background_misjudgment_filters_indices():
    s = _table([0, 1], "static")
    assert z.background_misjudgment(s, s, indices=("CF",)).empty


def test_figures_build():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = _table([0, 1, 2], "static")
    a = _table([1, 1, 0], "adaptive")
    fig = z.plot_misjudgment(z.background_misjudgment(s, a, indices=("Igeo",)))
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == pytest.approx([100 / 3, 100 / 3])  # one under, one over of three samples
    paired = pd.DataFrame({"metal": ["Cd", "Cd"], "soil": [5.0, 30.0], "sediment": [0.5, 8.0]})
    paired["zone"] = z.dual_media_zones(paired["soil"], paired["sediment"], baseline_min_a=10, baseline_max_a=20,
                                        baseline_min_b=1, baseline_max_b=4)
    bounds = pd.DataFrame({"metal": ["Cd"], "min_a": [10.0], "max_a": [20.0], "min_b": [1.0], "max_b": [4.0]})
    fig = z.plot_dual_media_zones(paired, bounds, medium_a="soil", medium_b="sediment")
    assert len(fig.axes[0].lines) == 4  # two vertical and two horizontal zone boundaries
    cap = z.bearing_capacity(pd.DataFrame({"Pb": [10.0, 60.0]}, index=pd.Index(["a", "b"], name="sample_id")),
                             pd.Series({"Pb": 50.0}))
    z.plot_bearing_capacity(cap, medium="soil")
    plt.close("all")


def test_bearing_capacity_per_sample_guideline():
    """Hand values from GB 15618-2018 Table 1 ('other' land): Cd 0.3 at pH 6.0 and 0.6 at pH 8.0, so Cd 0.45 is
    overloaded (R = -0.15, -50 %) at pH 6.0 and not at pH 8.0 (R = 0.15, 25 %); a sample without pH gets the
    strictest value 0.3 and is counted in the notes."""
    from hmlib.reference import guideline_values

    conc = pd.DataFrame({"Cd": [0.45, 0.45, 0.45]}, index=["a", "b", "c"])
    cond = pd.DataFrame({"ph": [6.0, 8.0, np.nan]}, index=conc.index)
    per, notes = z.sample_guidelines(guideline_values("GB15618_2018"), cond, threshold_name="risk_screening",
                                     default={"land_use": "other"})
    cap = z.bearing_capacity(conc, per, medium="soil").set_index("sample_id")
    assert cap["guideline"].to_dict() == {"a": 0.3, "b": 0.6, "c": 0.3}
    assert cap.loc["a", "remaining"] == pytest.approx(-0.15) and cap.loc["a", "remaining_pct"] == pytest.approx(-50)
    assert cap.loc["b", "remaining_pct"] == pytest.approx(25) and not cap.loc["b", "overloaded"]
    assert any("1 sample (pH missing)" in n for n in notes)
    s = z.bearing_capacity_summary(cap.reset_index())
    assert (s["guideline"].iloc[0], s["guideline_max"].iloc[0], s["n_overloaded"].iloc[0]) == (0.3, 0.6, 2)
