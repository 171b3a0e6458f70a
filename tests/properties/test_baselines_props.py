"""Hypothesis invariants of the baseline methods."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hmlib import baselines as bl

# distinct values: RCF is undefined on heavily tied data (it raises; tested in test_baselines.py)
_values = arrays(np.float64, st.integers(12, 60), unique=True,
                 elements=st.floats(0.01, 1000.0, allow_nan=False, allow_infinity=False))
_scale = st.floats(1e-3, 1e3)
_FUNCS = [bl.iterative_mean_baseline, bl.iterative_median_baseline, bl.boxplot_baseline, bl.rcf_baseline]


@settings(max_examples=40, deadline=None)
@given(c=_values, k=_scale)
def test_scale_equivariance_on_log_values(c, k):
    """On log values a change of unit (C -> kC) shifts every log by ln k: baseline and upper limit
    scale by k and the retained set is unchanged (IMEA, IMED, boxplot, RCF)."""
    for f in _FUNCS:
        a, b = f(c), f(k * c)
        assert b.baseline == pytest.approx(k * a.baseline, rel=1e-6)
        assert b.upper_limit == pytest.approx(k * a.upper_limit, rel=1e-6)
        if f is not bl.rcf_baseline:  # RCF breakpoints are on a grid of quantiles: same set up to rounding
            assert b.n_retained == a.n_retained


@settings(max_examples=40, deadline=None)
@given(c=_values)
def test_ordering_and_counts(c):
    """Baseline <= upper limit; 1 <= n_retained <= n_total; the baseline lies in the data range
    (boxplot, IMED, IMEA: it is a centre of retained data)."""
    for f in _FUNCS:
        e = f(c)
        assert e.baseline <= e.upper_limit * (1 + 1e-12)
        assert 1 <= e.n_retained <= e.n_total == c.size
        if f is not bl.rcf_baseline:
            assert c.min() * (1 - 1e-9) <= e.baseline <= c.max() * (1 + 1e-9)


@settings(max_examples=25, deadline=None)
@given(c=_values)
def test_retained_values_are_a_contiguous_block(c):
    """Trimming only removes values: the retained values of IMEA and IMED are a contiguous block of
    the sorted data (no value inside the final band is excluded)."""
    for f in (bl.iterative_mean_baseline, bl.iterative_median_baseline):
        e = f(c)
        kept = np.sort(c[e.retained])
        dropped = c[~e.retained]
        assert not np.any((dropped > kept.min()) & (dropped < kept.max()))
