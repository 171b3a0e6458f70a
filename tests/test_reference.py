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
