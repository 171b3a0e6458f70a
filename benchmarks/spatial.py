"""Benchmark of hmlib.spatial: kriging / GPR seconds and cross-validation error (Jura, Meuse), and the
seconds for a generated case of 50,000 samples and 1,000,000 grid cells.

A script, not a test:  .venv/bin/python benchmarks/spatial.py [--skip-large] [--cells N] [--samples N]
Timings depend on the machine and its load; nothing here is asserted.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hmlib import load_params, load_region
from hmlib import spatial as sp

ROOT = Path(__file__).resolve().parents[1]


def region_benchmark(region: str, *, n_folds: int, seed: int) -> pd.DataFrame:
    params = load_params(ROOT / "params" / f"{region}.yml")
    data = load_region(params)
    medium = data.media[0]
    sites, wide, grid = data.sites(medium), data.wide(medium), data.grid
    drift = [c for c in params.data.covariates if c in grid.columns]
    rows = []
    for metal in data.metals:
        v = wide[metal].to_numpy(float)
        keep = np.isfinite(v) & sites[drift].notna().all(axis=1).to_numpy()
        s, v = sites.loc[keep], v[keep]
        log = sp.choose_log(v)
        for method in ("ok", "rk", "gpr"):
            cov = s[drift].reset_index(drop=True) if method == "rk" else None
            t0 = time.perf_counter()
            model = sp.fit_spatial_model(method, x=s["x"], y=s["y"], values=v, covariates=cov,
                                         categorical=params.data.categorical, log=log, seed=seed)
            t_fit = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.predict(grid["x"], grid["y"], grid[drift] if method == "rk" else None)
            t_pred = time.perf_counter() - t0
            t0 = time.perf_counter()
            cv = sp.cross_validate(method, x=s["x"], y=s["y"], values=v, covariates=cov,
                                   categorical=params.data.categorical, log=log, n_folds=n_folds, seed=seed)
            t_cv = time.perf_counter() - t0
            m = sp.cv_metrics(cv)
            rows.append({"region": region, "metal": metal, "method": method, "n_samples": len(v),
                         "n_cells": len(grid), "fit_s": t_fit, "predict_s": t_pred, "cv_s": t_cv,
                         "cv_rmse": m["rmse"], "cv_mae": m["mae"], "cv_msse": m["msse"]})
            print(f"{region:6s} {metal:3s} {method:3s}  fit {t_fit:6.2f} s  predict {t_pred:6.2f} s  "
                  f"{n_folds}-fold CV {t_cv:6.2f} s  RMSE {m['rmse']:9.3f}  MSSE {m['msse']:5.2f}", flush=True)
    return pd.DataFrame(rows)


def large_benchmark(*, n_samples: int, n_cells: int, n_neighbours: int, seed: int) -> pd.DataFrame:
    """Samples of a Gaussian field with an exponential covariance (gstools) on a 100 x 100 km square."""
    import gstools as gs

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100_000, (n_samples, 2))
    t0 = time.perf_counter()
    field = gs.SRF(gs.Exponential(dim=2, var=1.0, len_scale=8_000.0), seed=seed)((xy[:, 0], xy[:, 1]))
    z = np.exp(1.0 + 0.8 * field + rng.normal(0, 0.3, n_samples))     # lognormal concentrations
    print(f"generated {n_samples} samples in {time.perf_counter() - t0:.1f} s", flush=True)
    side = int(round(np.sqrt(n_cells)))
    gx, gy = np.meshgrid(np.linspace(0, 100_000, side), np.linspace(0, 100_000, side))
    gx, gy = gx.ravel(), gy.ravel()
    rows = []
    for method in ("ok", "gpr"):
        t0 = time.perf_counter()
        model = sp.fit_spatial_model(method, x=xy[:, 0], y=xy[:, 1], values=z, log=True, seed=seed,
                                     n_neighbours=n_neighbours)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = model.predict(gx, gy)
        t_pred = time.perf_counter() - t0
        rows.append({"region": "synthetic", "metal": "-", "method": method, "n_samples": n_samples,
                     "n_cells": len(gx), "fit_s": t_fit, "predict_s": t_pred,
                     "finite_share": float(np.isfinite(pred["prediction"]).mean())})
        print(f"synthetic {method:3s}: {n_samples} samples -> {len(gx)} cells, k = {n_neighbours}: "
              f"fit {t_fit:.1f} s, predict {t_pred:.1f} s", flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-large", action="store_true", help="skip the 50,000-sample / 1,000,000-cell case")
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--neighbours", type=int, default=32)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", default=None, help="optional CSV of the results")
    a = ap.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    parts = [region_benchmark(r, n_folds=a.folds, seed=a.seed) for r in ("jura", "meuse")]
    if not a.skip_large:
        parts.append(large_benchmark(n_samples=a.samples, n_cells=a.cells, n_neighbours=a.neighbours, seed=a.seed))
    res = pd.concat(parts, ignore_index=True)
    summary = res.groupby(["region", "method"])[["fit_s", "predict_s"]].sum().round(2)
    print("\nseconds summed over metals:\n", summary.to_string())
    if a.out:
        res.to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
