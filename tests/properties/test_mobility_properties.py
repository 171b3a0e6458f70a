"""Hypothesis invariants of hmlib.mobility: RAC classes partition [0, 100]; shares and indices are consistent."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import hmlib.mobility as mb

_ORDER = ["no risk", "low risk", "medium risk", "high risk", "very high risk"]
# a fraction is 0 (not detected) or a reportable amount (>= 1e-9 mg/kg)
_frac = st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=1e4, allow_nan=False, allow_infinity=False))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=100.0, allow_nan=False), min_size=1, max_size=50))
def test_rac_class_is_total_and_monotone(values):
    """Every value gets exactly one class, and a larger RAC never gets a lower class."""
    x = np.sort(np.asarray(values))
    cls = mb.rac_class(x)
    ranks = [_ORDER.index(c) for c in cls]
    assert all(a <= b for a, b in zip(ranks, ranks[1:]))


@settings(max_examples=150, deadline=None)
@given(st.tuples(_frac, _frac, _frac, _frac).filter(lambda f: sum(f) > 1e-6))
def test_shares_sum_to_100_and_indices_consistent(f):
    bcr = pd.DataFrame([{"sample_id": "s", "metal": "Zn", "F1": f[0], "F2": f[1], "F3": f[2], "F4": f[3]}])
    r = mb.fractionation_indices(bcr).iloc[0]
    shares = [r[f"p_{k}"] for k in mb.BCR_FRACTIONS]
    assert abs(sum(shares) - 100.0) < 1e-9
    assert r.mf1_percent <= r.mf12_percent + 1e-12
    assert r.rac_percent == r.mf1_percent
    if f[3] > 0:
        assert abs(r.rsp - (f[0] + f[1] + f[2]) / f[3]) <= 1e-9 * max(1.0, r.rsp)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.01, max_value=1e3), st.floats(min_value=0.0, max_value=100.0),
       st.floats(min_value=0.0, max_value=0.1), st.integers(min_value=0, max_value=100))
def test_risk_and_scenario_invariants(total, share, rate, years):
    r = mb.mobilization_risk([total], [share], threshold_mg_kg=1.0).iloc[0]
    assert abs(r.mobile_mg_kg - total * share / 100) <= 1e-12 * max(1.0, total)
    assert bool(r.at_risk) == (r.mobile_mg_kg > 1.0)
    soc = mb.soc_scenario([2.0], rate_per_year=rate, years=years)[0]
    assert soc >= 2.0
