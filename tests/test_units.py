import numpy as np
import pandas as pd
import pytest

from hmlib.errors import UnitError
from hmlib.units import canonical_unit, convert, dimension, normalize_unit


@pytest.mark.parametrize("value,src,dst,expected", [
    (250.0, "ug/kg", "mg/kg", 0.25),
    (1.0, "ug/g", "mg/kg", 1.0),
    (0.005, "mg/L", "ug/L", 5.0),
    (5.0, "ug/L", "mg/L", 0.005),
    (2.0, "g/kg", "mg/kg", 2000.0),
    (1.0, "%", "mg/kg", 10000.0),
    (1500.0, "ng/L", "ug/L", 1.5),
])
def test_convert_factors(value, src, dst, expected):
    """Factors from the SI definitions (1 mg/kg = 1000 ug/kg = 1 ug/g; 1 mg/L = 1000 ug/L)."""
    assert convert(value, src, dst) == pytest.approx(expected)


def test_aliases_and_round_trip():
    assert normalize_unit("µg/l") == "ug/L"
    assert normalize_unit("mg kg-1") == "mg/kg"
    x = np.array([0.1, 2.0, 35.0])
    np.testing.assert_allclose(convert(convert(x, "mg/kg", "ug/kg"), "ug/kg", "mg/kg"), x)


def test_pandas_input_not_mutated():
    s = pd.Series([1.0, 2.0])
    out = convert(s, "mg/L", "ug/L")
    assert s.tolist() == [1.0, 2.0]
    assert out.tolist() == [1000.0, 2000.0]


def test_unknown_unit_raises_with_choices():
    with pytest.raises(UnitError, match="unknown unit 'ppt'"):
        convert(1.0, "ppt", "mg/kg")


def test_cross_dimension_raises():
    with pytest.raises(UnitError, match="partition coefficient"):
        convert(1.0, "mg/kg", "ug/L")


def test_dimension_and_canonical():
    assert dimension("ug/L") == "mass_concentration"
    assert canonical_unit("ug/kg") == "mg/kg"
    assert canonical_unit("mg/L") == "ug/L"
