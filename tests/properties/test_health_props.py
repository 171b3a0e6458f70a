"""Hypothesis invariants of hmlib.health.

* HI equals the sum of the HQs over pathways and metals (checked against an independent sum of
  concentration x per-unit HQ factors).
* Every quantity (ADD, LADD, HQ, CR) is linear in concentration.
* A Monte Carlo run with degenerate (fixed) distributions equals the deterministic result.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from hmlib import health as h

EXPOSURE = {k: h.load_exposure_parameters(k) for k in h.PARAMETER_SETS}
TOX = {m: h.load_toxicity(medium=m) for m in ("soil", "water")}
METALS = ["As", "Cd", "Co", "Cr", "Cu", "Hg", "Mn", "Ni", "Pb", "Zn"]

conc = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False, allow_subnormal=False)
metal_sets = st.lists(st.sampled_from(METALS), min_size=1, max_size=5, unique=True)


@st.composite
def tables(draw):
    metals = draw(metal_sets)
    n = draw(st.integers(min_value=1, max_value=5))
    data = {m: draw(st.lists(conc, min_size=n, max_size=n)) for m in metals}
    return pd.DataFrame(data, index=[f"s{i}" for i in range(n)])


common = dict(params=st.sampled_from(sorted(h.PARAMETER_SETS)), medium=st.sampled_from(["soil", "water"]),
              receptor=st.sampled_from(list(h.RECEPTORS)), frac=st.floats(min_value=0.0, max_value=1.0))


@settings(max_examples=40, deadline=None)
@given(w=tables(), **common)
def test_hi_is_sum_of_hq(w, params, medium, receptor, frac):
    risk = h.risk_table(w, medium=medium, exposure=EXPOSURE[params], toxicity=TOX[medium],
                        receptors=(receptor,), cr_vi_fraction=frac)
    idx = h.sample_indices(risk).set_index("sample_id")
    uf = h.unit_factors(medium=medium, receptor=receptor, exposure=EXPOSURE[params], toxicity=TOX[medium])
    hq_per_unit = uf.groupby("metal")["hq"].sum(min_count=1)
    sp = h.speciate_chromium(w, cr_vi_fraction=frac)
    for sid, row in sp.iterrows():
        terms = [row[m] * hq_per_unit[m] for m in sp.columns if m in hq_per_unit.index]
        terms = [t for t in terms if np.isfinite(t)]
        if not terms:
            continue
        assert np.isclose(idx.loc[sid, "hi"], sum(terms), rtol=1e-10, atol=1e-300)


@settings(max_examples=40, deadline=None)
@given(w=tables(), k=st.floats(min_value=0.0, max_value=1e3), **common)
def test_risk_linear_in_concentration(w, k, params, medium, receptor, frac):
    kw = dict(medium=medium, exposure=EXPOSURE[params], toxicity=TOX[medium], receptors=(receptor,),
              cr_vi_fraction=frac)
    a = h.risk_table(w, **kw)
    b = h.risk_table(w * k, **kw)
    for col in ("add", "ladd", "hq", "cr"):
        np.testing.assert_allclose(b[col].to_numpy(), k * a[col].to_numpy(), rtol=1e-10, atol=1e-300)


@settings(max_examples=25, deadline=None)
@given(w=tables(), **common)
def test_degenerate_monte_carlo_equals_deterministic(w, params, medium, receptor, frac):
    """Fixed distributions at the point values and a single sample: every iteration = deterministic."""
    w = w.iloc[[0]]
    exp = EXPOSURE[params]
    det = h.risk_table(w, medium=medium, exposure=exp, toxicity=TOX[medium], receptors=(receptor,),
                       cr_vi_fraction=frac)
    if det.empty:
        return
    dist = h.load_distributions()
    fixed = dist.assign(distribution="fixed",
                        p1=[float(exp.loc["child" if r == "all" else r, p]) for p, r in zip(dist.parameter, dist.receptor)])
    mc = h.monte_carlo(w, medium=medium, receptor=receptor, exposure=exp, toxicity=TOX[medium],
                       distributions=fixed, n_iter=200, seed=0, cr_vi_fraction=frac)
    hi_det = det["hq"].sum(min_count=1)
    tcr_det = det["cr"].sum(min_count=1)
    if np.isfinite(hi_det):
        np.testing.assert_allclose(mc.hi, hi_det, rtol=1e-10, atol=1e-300)
    if np.isfinite(tcr_det):
        np.testing.assert_allclose(mc.tcr, tcr_det, rtol=1e-10, atol=1e-300)
