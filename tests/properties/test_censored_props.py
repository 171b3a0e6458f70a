"""Hypothesis properties of hmlib.censored."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hmlib import censored as cz

_values = st.lists(st.floats(min_value=1e-3, max_value=1e4, allow_nan=False), min_size=2, max_size=60)


@settings(max_examples=150, deadline=None)
@given(_values)
def test_km_mean_equals_sample_mean_without_censoring(v):
    """Checked against numpy's mean and SD: without non-detects the Kaplan-Meier estimate is the
    empirical distribution, so its mean and SD (ddof 1) are the sample's."""
    x = np.asarray(v)
    km = cz.kaplan_meier(x, np.zeros(x.size, bool))
    assert np.isclose(km.mean, x.mean(), rtol=1e-9)
    assert np.isclose(km.sd, x.std(ddof=1), rtol=1e-7, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(_values, st.floats(min_value=1e-3, max_value=1e4))
def test_km_mean_between_bounds_of_substitution(v, dl):
    """Bounds by construction of the data: replacing every value below ``dl`` by a non-detect at ``dl``,
    the KM mean lies between the means with the non-detects set to 0 and set to the DL."""
    x = np.asarray(v)
    c = x < dl
    if c.all():
        return
    xx = np.where(c, dl, x)
    km = cz.kaplan_meier(xx, c)
    assert np.where(c, 0.0, x).mean() - 1e-9 <= km.mean <= xx.mean() + 1e-9 * max(1.0, xx.mean())
