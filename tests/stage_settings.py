"""Reduced settings the tests run each stage with (fewer bootstrap runs, iterations, folds...).

Chosen by the tests, not by weakening the stages' defaults: the defaults are what a report uses.
Each stage's owner keeps its entry here; the values must stay valid for the stage's options model.
"""
from __future__ import annotations

FAST_OPTIONS: dict[str, dict] = {
    "data_quality": {},
    "baselines": {"n_bootstrap": 500, "ucl_bootstrap": 200, "n_folds": 3, "n_inducing": 60, "max_exact": 80,
                  "compare_em": False},
    "indices": {},
    "spatial": {"n_folds": 3, "rf_trees": 50, "n_permutations": 99, "methods": ["ok", "sklm", "ck", "rfk", "stack"],
                "variogram_models": ["spherical", "exponential"], "anisotropy": "none"},
    "health": {},
    "sources": {"pmf_starts": 2, "pmf_factor_range": (2, 3), "pmf_bootstrap": 4, "pmf_stability": False,
                "pmf_disp": True, "pmf_bs_disp": 0, "isotope_steps": 600},
    "ml_drivers": {"n_folds": 3, "n_spatial_blocks": 6, "n_search": 1, "rf_trees": 30, "n_dependence": 2},
    "remote_sensing": {"metals": ["As", "Zn"], "n_trees": [30], "min_samples_leaf": [3], "n_folds": 3,
                       "n_spatial_blocks": 6, "inner_folds": 2, "n_permutations": 2},
    "crossmedia": {},
    "accumulation": {"n_monte_carlo": 20, "n_estimators": 40, "horizon_years": 30, "report_years": [10, 30]},
    "mobility": {"n_estimators": 40, "n_splits": 3},
}
