import pandas as pd
import pytest

from hmlib.errors import ReferenceDataError
from hmlib.reference import REQUIRED_COLUMNS, background_values, guideline_values, list_reference_sets, load_reference


def test_every_reference_file_has_required_columns_and_sources():
    sets = list_reference_sets()
    assert len(sets) >= 7
    for row in sets.itertuples():
        df = load_reference(row.kind, row.name)  # raises on a missing source or column
        assert df["source"].astype(str).str.len().min() > 10, f"{row.file}: source too short to be a citation"
        for c in REQUIRED_COLUMNS.get(row.kind, ()):
            assert c in df.columns


def test_published_values():
    """Spot checks against the cited tables (Rudnick & Gao 2014 Table 3; VROM 2000 Annex A; GB 15618-2018 Table 1;
    Zhao et al. 2026 Table 1)."""
    ucc = background_values("UCC_RudnickGao2014")
    assert ucc["Cd"] == 0.09 and ucc["Pb"] == 17 and ucc["Zn"] == 67 and ucc["Cr"] == 92
    xj = background_values("XinjiangSoil_CNEMC1990")
    assert xj.to_dict() == {"As": 11.2, "Cd": 0.12, "Pb": 19.4, "Cu": 26.7, "Zn": 68.8}
    nl = guideline_values("DutchSoil_VROM2000")
    iv = nl[(nl.threshold_name == "intervention")].set_index("metal")["value"]
    assert iv["Cd"] == 12 and iv["Zn"] == 720 and iv["Pb"] == 530
    gb = guideline_values("GB15618_2018")
    cd_paddy_alk = gb[(gb.metal == "Cd") & (gb.land_use == "paddy") & (gb.ph_min == 7.5)]["value"]
    assert cd_paddy_alk.tolist() == [0.8]


def test_unit_conversion_on_load():
    ucc_ug = background_values("UCC_RudnickGao2014", unit="ug/kg")
    assert ucc_ug["Cd"] == pytest.approx(90.0)


def test_unknown_set_lists_available():
    with pytest.raises(ReferenceDataError, match="available"):
        background_values("Nope_2000")


def test_loaded_frames_are_copies():
    a = load_reference("background", "UCC_RudnickGao2014")
    a.loc[:, "value"] = -1
    b = load_reference("background", "UCC_RudnickGao2014")
    assert (b["value"] > 0).all()


# --- conditional guideline values (GB 15618-2018 by land use and pH class) --------------------------------------
def _gb15618_by_hand(metal, land_use, ph):
    """Independent reading of the shipped GB 15618-2018 file with the csv module and explicit pH classes
    (Table 1: pH <= 5.5, 5.5 < pH <= 6.5, 6.5 < pH <= 7.5, pH > 7.5); 'all' rows apply to every land use."""
    import csv

    from hmlib.reference import reference_dir

    with open(reference_dir() / "guideline" / "GB15618_2018.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    if ph <= 5.5:
        cls = ("", "5.5")
    elif ph <= 6.5:
        cls = ("5.5", "6.5")
    elif ph <= 7.5:
        cls = ("6.5", "7.5")
    else:
        cls = ("7.5", "")
    listed = {r["land_use"] for r in rows if r["metal"] == metal}
    if land_use not in listed:  # GB 15618 'other': every land use the table does not list for this metal
        land_use = "other"
    hits = [float(r["value"]) for r in rows if r["metal"] == metal and r["land_use"] in (land_use, "all")
            and (r["ph_min"], r["ph_max"]) == cls]
    assert len(hits) == 1, (metal, land_use, ph, hits)
    return hits[0]


def test_applicable_guidelines_match_hand_lookup():
    """Each sample's value equals an independent csv-module lookup of the shipped table; pH on a class bound
    (5.5, 6.5, 7.5) belongs to the lower class, as GB 15618 writes 'pH <= 5.5', '5.5 < pH <= 6.5'."""
    from hmlib.reference import applicable_guidelines

    gb = guideline_values("GB15618_2018")
    ph = [4.9, 5.5, 5.51, 6.5, 7.0, 7.5, 8.2]
    lu = ["other", "paddy", "other", "paddy", "orchard", "other", "paddy"]
    cond = pd.DataFrame({"ph": ph, "land_use": lu}, index=[f"s{i}" for i in range(len(ph))])
    out = applicable_guidelines(gb, cond).set_index(["sample_id", "metal"])
    for i, (p, u) in enumerate(zip(ph, lu)):
        for metal in ("Cd", "Hg", "As", "Pb", "Cr", "Cu", "Ni", "Zn"):
            assert out.loc[(f"s{i}", metal), "threshold"] == _gb15618_by_hand(metal, u, p), (metal, p, u)
    assert not out["fallback"].any()


def test_missing_ph_falls_back_to_strictest_with_flag():
    """Hand value: Cd for 'other' land without pH: strictest of 0.3, 0.3, 0.3, 0.6 = 0.3; Hg: min(1.3, 1.8, 2.4, 3.4)."""
    from hmlib.reference import applicable_guidelines

    gb = guideline_values("GB15618_2018")
    out = applicable_guidelines(gb, pd.DataFrame({"ph": [float("nan")]}, index=["a"]),
                                default={"land_use": "other"}).set_index("metal")
    assert out.loc["Cd", "threshold"] == 0.3 and out.loc["Hg", "threshold"] == 1.3
    assert out["fallback"].all() and (out["fallback_reason"] == "pH missing").all()


def test_exceedance_counts_coastal_demo_against_independent_count():
    """coastal_demo soil, 'other' land, each sample's own pH class: counts from an independent loop over the raw
    samples CSV and the hand lookup above (issue 15 measured Cd 12, Cu 1, Cr 0 against 20, 3, 1 with the strictest
    value over all classes)."""
    import csv
    from pathlib import Path

    from hmlib import descriptive as dq

    root = Path(__file__).resolve().parents[1]
    with open(root / "data" / "coastal_demo" / "samples.csv", encoding="utf-8") as f:
        raw = [r for r in csv.DictReader(f) if r["medium"] == "soil"]
    metals = ["Cd", "Pb", "Cu", "Zn", "Cr", "Ni", "As", "Hg"]
    expect = {m: sum(float(r[m]) > _gb15618_by_hand(m, "other", float(r["ph"])) for r in raw) for m in metals}
    conc = pd.DataFrame({m: [float(r[m]) for r in raw] for m in metals}, index=[r["sample_id"] for r in raw])
    cond = pd.DataFrame({"ph": [float(r["ph"]) for r in raw]}, index=conc.index)
    exc = dq.exceedance(conc, background_set=None, guideline_set="GB15618_2018", conditions=cond,
                        default_conditions={"land_use": "other"}).set_index("metal")
    assert exc["n_exceeding"].to_dict() == expect
    assert (expect["Cd"], expect["Cu"], expect["Cr"]) == (12, 1, 0)
    assert (exc["n_fallback"] == 0).all() and (exc["n"] == len(raw)).all()


def test_non_detect_above_threshold_is_cannot_tell():
    """A non-detect with DL 2 against a threshold 0.8 cannot be judged (Helsel 2012, ch. 1: a '<2' may lie on either
    side of 0.8); one with DL 0.5 is below; a detect of 1.0 is above. Counts by hand: above 1, cannot tell 1."""
    from hmlib import descriptive as dq

    conc = pd.DataFrame({"Cd": [1.0, 1.0, 0.25, 0.5]}, index=["a", "b", "c", "d"])  # b: DL 2 substituted by DL/2
    cens = pd.DataFrame({"Cd": [False, True, True, False]}, index=conc.index)
    dl = pd.DataFrame({"Cd": [float("nan"), 2.0, 0.5, float("nan")]}, index=conc.index)
    s = dq.exceedance_samples(conc, background_set=None, guideline_set="VBBo_Swiss1998", censored=cens,
                              detection_limit=dl)
    g = s[s["threshold_name"] == "guide"].set_index("sample_id")
    assert g["status"].to_dict() == {"a": "above", "b": "cannot tell", "c": "not above", "d": "not above"}
    assert pd.isna(g.loc["b", "exceeds"]) and bool(g.loc["a", "exceeds"])
    summ = dq.exceedance_summary(s).set_index("threshold_name")
    assert summ.loc["guide", "n_exceeding"] == 1 and summ.loc["guide", "n_cannot_tell"] == 1
