"""Size limits of the data-quality statistics against the exact computation on small seeded data."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from hmlib import descriptive as dq


def _wide(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"Cd": np.exp(rng.normal(size=n)), "Pb": np.exp(rng.normal(3, 0.5, size=n))})


def test_normality_below_limit_is_the_full_test():
    """Checked against scipy.stats.shapiro on all values: below the size limit nothing is subsampled."""
    w = _wide(400)
    t = dq.normality_tests(w, medium="soil")
    for r in t.itertuples():
        v = w[r.metal].to_numpy()
        y = v if r.scale == "raw" else np.log(v)
        ref = stats.shapiro(y)
        assert r.n_tested == 400 and not r.subsampled
        assert np.isclose(r.w, ref.statistic, rtol=0, atol=0) and np.isclose(r.p, ref.pvalue, rtol=0, atol=0)


def test_normality_above_limit_tests_the_documented_subsample():
    """Checked against scipy.stats.shapiro on the documented subsample (numpy default_rng(seed), max_n
    values without replacement, in file order), and against the full test's decision on lognormal data
    generated with known truth (normal on the log scale, not on the raw scale)."""
    w = _wide(1200)
    t = dq.normality_tests(w, medium="soil", max_n=500, seed=7)
    sub = np.sort(np.random.default_rng(7).choice(1200, 500, replace=False))
    for r in t.itertuples():
        v = w[r.metal].to_numpy()[sub]
        y = v if r.scale == "raw" else np.log(v)
        ref = stats.shapiro(y)
        assert r.n_tested == 500 and r.subsampled
        assert r.w == ref.statistic and r.p == ref.pvalue
    full = dq.normality_tests(w, medium="soil")
    assert (t["normal"].to_numpy() == full["normal"].to_numpy()).all()
    assert not t.loc[t["scale"] == "raw", "normal"].any()
