"""Benchmark of hmlib.spatial: per region, metal and method, the k-fold and spatial-block (held-out) MAE and
RMSE, their ratio to ordinary kriging, the method chosen and the seconds; then a generated case of many samples
and a large grid predicted in chunks.

A script, not a test:  .venv/bin/python benchmarks/spatial.py [REGION ...] [--skip-large] [--folds N]
    [--holdout-seeds N]
(default regions: jura, meuse and the generated arid_demo). Timings depend on the machine and its load; nothing
here is asserted.

``--splits N`` splits each region's real samples N times at random (``--validation`` kept out, default 100) and
prints, per split, the held-out MAE ratio to ordinary kriging of the chosen map, of every single method and of the
stacked ensemble (shrunk towards ordinary kriging as the map's, :func:`hmlib.spatial.stack_shrinkage`), and per method
the held-out MAE and RMSE themselves and the seconds of its fit and prediction. The
denominator is ordinary kriging on the scale the map's log rule chose; ``chosen_vs_raw_ok`` divides instead by
ordinary kriging of the original values with an isotropic variogram, the reference R gstat's default gives (and the
external evaluation used).

Held-out points take the grid's covariates at them (the nearest cell), as the evaluation reads the map, and the
cross-validation inside the choice scores with them as the stage does (:func:`hmlib.spatial.covariates_at_samples`).
Regression kriging and the random forest use, as the stage does, the map's class shares around each point
(:func:`hmlib.spatial.map_class_shares`), their radius calibrated on the training samples only.

``--nested N`` runs N repeats of a nested 10-fold cross-validation of the whole choice on the real samples (about
90 % fit and choose, the rest predicted as map points) and prints, per metal, the chosen map's MAE over all samples
divided by that of ordinary kriging on the original values.

Every map is scored by the value it shows, the median of each cell's predictive distribution (the default of
:func:`hmlib.spatial.map_metal` and of the stage); on the original values, as for the reference, it is the mean.

``--holdout-seeds N`` adds the design of the Jura validation on generated data: N seeded surveys of 359 samples
(:func:`hmlib.synth.survey.generate`, Jura-like rock and land-use classes and point sources), 259 used to fit
and choose, 100 kept out and predicted as map points; the chosen map's MAE at the 100 is divided by the ordinary
kriging map's (ratio < 1: the choice carried over to new places).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from hmlib import load_params, load_region
from hmlib import spatial as sp

ROOT = Path(__file__).resolve().parents[1]


def region_benchmark(region: str, *, n_folds: int, rf_trees: int) -> pd.DataFrame:
    """Every metal of ``region`` through :func:`hmlib.spatial.map_metal` with the stage's default methods."""
    params = load_params(ROOT / "params" / f"{region}.yml")
    data = load_region(params)
    medium = data.media[0]
    sites, wide, grid = data.sites(medium), data.wide(medium), data.grid
    drift = [c for c in params.data.covariates if c in grid.columns and c in sites.columns]
    rows = []
    for i, metal in enumerate(data.metals):
        others = [m for m in data.metals if m != metal]
        t0 = time.perf_counter()
        mm = sp.map_metal(metal, x=sites["x"], y=sites["y"], values=wide[metal], grid_x=grid["x"], grid_y=grid["y"],
                          sample_covariates=sites[drift].reset_index(drop=True) if drift else None,
                          grid_covariates=grid[drift] if drift else None, categorical=params.data.categorical,
                          secondary=wide[others].reset_index(drop=True), n_folds=n_folds, rf_trees=rf_trees,
                          log_mode="cv", seed=params.seed + i)
        total = time.perf_counter() - t0
        s = mm.cv_summary.copy()
        ok = s[s["method"] == "ok"].set_index("scheme")["mae"]
        s["ratio_mae_to_ok"] = s["mae"] / s["scheme"].map(ok)
        s["seconds"] = [mm.seconds.get(f"cv_{sc}_{m}", np.nan) for sc, m in zip(s["scheme"], s["method"])]
        s["region"], s["chosen"] = region, s["method"] == mm.best
        rows.append(s)
        for r in s.itertuples():
            print(f"{region:12s} {metal:3s} {r.scheme:6s} {r.method:5s} MAE {r.mae:10.4g} RMSE {r.rmse:10.4g} "
                  f"ratio to OK {r.ratio_mae_to_ok:5.3f}  {r.seconds:6.1f} s{'  <- chosen' if r.chosen else ''}",
                  flush=True)
        print(f"{region:12s} {metal:3s} total {total:.1f} s (prediction of {len(grid)} cells with "
              f"{mm.best}: {mm.seconds.get(f'predict_{mm.best}', np.nan):.1f} s)", flush=True)
    return pd.concat(rows, ignore_index=True)


def holdout_benchmark(*, seed: int, n_folds: int, rf_trees: int, n_fit: int = 259, n_validation: int = 100
                      ) -> pd.DataFrame:
    """Generated survey (:func:`hmlib.synth.survey.generate`) split like the Jura data: ``n_fit`` samples to fit and
    choose by cross-validation, ``n_validation`` kept out and predicted as map points. Per metal: the chosen
    method, its k-fold and block ratios to OK, and the hold-out MAE ratio of its map to the OK map."""
    from hmlib.synth import survey

    gen = survey.generate(n_samples=n_fit + n_validation, n_grid=100, seed=seed)["samples"]
    idx = np.random.default_rng(seed).permutation(len(gen))
    fit, val = gen.iloc[idx[:n_fit]].reset_index(drop=True), gen.iloc[idx[n_fit:]].reset_index(drop=True)
    cats = ["Landuse", "Rock"]
    rows = []
    for i, metal in enumerate(survey.METALS):
        others = [m for m in survey.METALS if m != metal]
        kw = dict(x=fit["x_km"], y=fit["y_km"], values=fit[metal], grid_x=val["x_km"], grid_y=val["y_km"],
                  sample_covariates=fit[cats], grid_covariates=val[cats], categorical=cats,
                  secondary=fit[others], n_folds=n_folds, rf_trees=rf_trees, log_mode="cv", seed=seed + i)
        mm = sp.map_metal(metal, **kw)
        ok_map = mm if mm.best == "ok" else sp.map_metal(metal, **{**kw, "methods": ("ok",), "block_cv": False})
        obs = val[metal].to_numpy(float)
        mae = float(np.mean(np.abs(mm.grid["prediction"].to_numpy() - obs)))
        mae_ok = float(np.mean(np.abs(ok_map.grid["prediction"].to_numpy() - obs)))
        g = mm.gain.set_index("scheme")["ratio_mae_to_ok"]
        rows.append({"region": f"survey_holdout_{seed}", "metal": metal, "method": mm.best,
                     "kfold": float(g.get("kfold", np.nan)), "block": float(g.get("block", np.nan)),
                     "holdout": mae / mae_ok})
        r = rows[-1]
        print(f"hold-out {seed} {metal:3s} chosen {r['method']:5s} ratio to OK: k-fold {r['kfold']:.3f}, "
              f"block {r['block']:.3f}, hold-out {r['holdout']:.3f}", flush=True)
    return pd.DataFrame(rows)


def _real_samples(region: str):
    """The region's samples (first medium) with its trend covariates as recorded and as the map has them (the grid
    cell nearest to each sample): the evaluation reads the map at the cell nearest to a validation sample, so
    held-out points take the grid's covariates, and the cross-validation inside map_metal scores with them as
    the stage does."""
    params = load_params(ROOT / "params" / f"{region}.yml")
    data = load_region(params)
    medium = data.media[0]
    sites, wide = data.sites(medium).reset_index(drop=True), data.wide(medium).reset_index(drop=True)
    drift = [c for c in params.data.covariates if c in data.grid.columns and c in sites.columns]
    cats = [c for c in params.data.categorical if c in drift]
    gcov = sp.covariates_at_samples(sites["x"], sites["y"], sample_covariates=sites[drift], grid_x=data.grid["x"],
                                    grid_y=data.grid["y"], grid_covariates=data.grid[drift])
    return data, sites, wide, drift, cats, gcov


def _map_shares(data, sites, drift, cats, train, points):
    """The map's class shares (:func:`hmlib.spatial.map_class_shares`) calibrated on the training samples only: at
    the training samples and at the held-out points (predicted as map points), each covariate at its chosen radius."""
    g = data.grid
    ss, sv, _ = sp.map_class_shares(sites.loc[train, "x"], sites.loc[train, "y"],
                                    recorded=sites.loc[train, drift].reset_index(drop=True), grid_x=g["x"],
                                    grid_y=g["y"], grid_covariates=g[drift], categorical=cats,
                                    at=(sites.loc[points, "x"].to_numpy(float), sites.loc[points, "y"].to_numpy(float)))
    return ss, sv


def _gstat_ok(sites, wide, metal, train, points, *, seed: int) -> pd.DataFrame:
    """The reference map of the external evaluation: ordinary kriging of the original values with an isotropic
    variogram, as R gstat's ``krige`` does by default, fitted on ``train`` (hmlib's variogram fit and 32-sample
    neighbourhood, not gstat's global one) and predicted at ``points``. hmlib's own
    ordinary kriging may instead model a geometric anisotropy the directional check finds: on Jura that weaker
    reference would flatter the ratios (nested MAE of the anisotropic fit 0.99-1.17 times the isotropic one over
    6 repeats, Cu 1.12-1.17)."""
    return sp.fit_spatial_model("ok", x=sites.loc[train, "x"], y=sites.loc[train, "y"], values=wide.loc[train, metal],
                                log=False, seed=seed, anisotropy="none").predict(sites.loc[points, "x"],
                                                                                 sites.loc[points, "y"], None)


def split_benchmark(region: str, *, split: int, n_validation: int, n_folds: int, rf_trees: int) -> pd.DataFrame:
    """Real samples of ``region`` split at random (seeded by ``split``): ``n_validation`` kept out and predicted as map
    points, the rest used to fit and choose. Per metal: the held-out MAE of the chosen map and of every single
    method and the stacked ensemble (weights from the k-fold out-of-fold predictions), each divided by ordinary
    kriging's, with the k-fold and block cross-validation ratios that the choice saw."""
    data, sites, wide, drift, cats, gcov = _real_samples(region)
    idx = np.random.default_rng(100 + split).permutation(len(sites))
    tr, va = idx[:len(idx) - n_validation], idx[len(idx) - n_validation:]
    rows = []
    for i, metal in enumerate(data.metals):
        others = [m for m in data.metals if m != metal]
        ok_rows = wide[metal].notna().to_numpy() & sites[drift].notna().all(axis=1).to_numpy()
        t, v = tr[ok_rows[tr]], va[ok_rows[va]]
        cov_t, cov_v = sites.loc[t, drift].reset_index(drop=True), gcov.loc[v, drift].reset_index(drop=True)
        obs = wide.loc[v, metal].to_numpy(float)
        seed = 10 * split + i
        sh_t, sh_v = _map_shares(data, sites, drift, cats, t, v) if cats else (None, None)
        mm = sp.map_metal(metal, x=sites.loc[t, "x"], y=sites.loc[t, "y"], values=wide.loc[t, metal],
                          grid_x=sites.loc[v, "x"], grid_y=sites.loc[v, "y"], sample_covariates=cov_t,
                          sample_map_covariates=gcov.loc[t, drift].reset_index(drop=True),
                          sample_shares=sh_t, grid_shares=sh_v,
                          grid_covariates=cov_v, categorical=cats, secondary=wide.loc[t, others].reset_index(drop=True),
                          n_folds=n_folds, rf_trees=rf_trees, log_mode="cv", seed=seed)
        an = "auto" if mm.anisotropy_cv and mm.anisotropy_cv["anisotropic"] < mm.anisotropy_cv["isotropic"] else "none"
        cv, preds, mae, rmse, secs = mm.cv, {}, {}, {}, {}
        # the stack's members in map_metal's order (kriging in space and shares: one per categorical covariate)
        base = [m for m in dict.fromkeys(cv["method"]) if m not in ("stack", "ckc")]
        for m in base:
            a = dict(x=sites.loc[t, "x"], y=sites.loc[t, "y"], values=wide.loc[t, metal], log=mm.log, seed=seed,
                     anisotropy=an, rf_trees=rf_trees)
            pv = cov_v if m in ("rk", "sklm", "rfk") else None
            if sp.method_code(m) == "oks":
                cols = sp.share_groups(sh_t.columns)[sp.method_covariate(m)]
                a.update(covariates=sh_t[cols])
                pv = sh_v[cols]
            elif m in ("rk", "rfk") and mm.covariate_forms.get(m) == "shares":   # the form map_metal chose for it
                num = [c for c in drift if c not in cats]
                a.update(covariates=pd.concat([cov_t[num], sh_t], axis=1), categorical=())
                pv = pd.concat([cov_v[num], sh_v], axis=1)
            elif m in ("rk", "sklm", "rfk"):
                a.update(covariates=cov_t, categorical=cats)
            if m == "ck":
                a.update(secondary=wide.loc[t, others].reset_index(drop=True))
            t0 = time.perf_counter()
            preds[m] = sp.fit_spatial_model(sp.method_code(m), **a).predict(sites.loc[v, "x"], sites.loc[v, "y"], pv,
                                                            point=mm.point)   # the value the map shows
            secs[m] = time.perf_counter() - t0
            mae[m] = float(np.mean(np.abs(preds[m]["prediction"].to_numpy() - obs)))
            rmse[m] = float(np.sqrt(np.mean((preds[m]["prediction"].to_numpy() - obs) ** 2)))
        k = cv[cv["scheme"] == "kfold"]
        lam = float(mm.stack_shrinkage) if np.isfinite(mm.stack_shrinkage) else 0.0
        w = sp.stack_weights(np.column_stack([k.loc[k["method"] == m, "mean_t"].to_numpy() for m in base]),
                             k.loc[k["method"] == base[0], "observed_t"].to_numpy(), shrink=lam,
                             reference=base.index("ok"))   # the mapped stack: shrunk towards OK as map_metal does
        bt = sp.combine_members(preds, dict(zip(base, w)), log=mm.log, point=mm.point)   # as the map's tiles do
        mae["stack"] = float(np.mean(np.abs(bt["prediction"].to_numpy() - obs)))
        rmse["stack"] = float(np.sqrt(np.mean((bt["prediction"].to_numpy() - obs) ** 2)))
        secs["stack"] = sum(secs[m] for m in base)
        # the external evaluation divides by R gstat's ordinary kriging, which works on the original values
        # (not on ln values where this map's log rule chose them): the same denominator, for comparison
        raw_ok = _gstat_ok(sites, wide, metal, t, v, seed=seed)
        chosen_mae = float(np.mean(np.abs(mm.grid["prediction"].to_numpy() - obs)))
        row = {"region": region, "split": split, "metal": metal, "chosen": mm.best, "stack_shrinkage": lam,
               "chosen_holdout": chosen_mae / mae["ok"],
               "chosen_vs_raw_ok": chosen_mae / float(np.mean(np.abs(raw_ok["prediction"].to_numpy() - obs)))}
        row.update({f"holdout_{m}": mae[m] / mae["ok"] for m in mae if m != "ok"})
        row.update({f"mae_{m}": mae[m] for m in mae})
        row.update({f"rmse_{m}": rmse[m] for m in rmse})
        row.update({f"seconds_{m}": secs[m] for m in secs})
        g = mm.gain.set_index("scheme")["ratio_mae_to_ok"]
        row.update({"kfold": float(g.get("kfold", np.nan)), "block": float(g.get("block", np.nan))})
        rows.append(row)
        print(f"{region} split {split} {metal:8s} chosen {mm.best:5s} hold-out ratio to OK {row['chosen_holdout']:.3f} "
              "(" + ", ".join(f"{m} {mae[m] / mae['ok']:.3f}" for m in mae if m != "ok") + ")", flush=True)
        for m in mae:
            print(f"{region} split {split} {metal:8s} {m:5s} hold-out MAE {mae[m]:10.4g} RMSE {rmse[m]:10.4g} "
                  f"fit and predict {secs[m]:6.1f} s", flush=True)
    return pd.DataFrame(rows)


def nested_benchmark(region: str, *, repeat: int, n_outer: int, n_folds: int, rf_trees: int,
                     shares: bool = True) -> pd.DataFrame:
    """Nested cross-validation of the whole choice: the real samples of ``region`` split into ``n_outer`` folds
    (seeded by ``repeat``); each fold is predicted as map points by :func:`hmlib.spatial.map_metal` fitted and
    chosen on the others (about 90 % of the samples, close to the Jura validation's 259 of 359), with the grid's
    covariates at the held-out points as the evaluation reads the map. Per metal: the MAE over all samples of the
    chosen map and of ordinary kriging on the original values (gstat's default), and their ratio."""
    data, sites, wide, drift, cats, gcov = _real_samples(region)
    fold_of = np.empty(len(sites), int)
    fold_of[np.random.default_rng(1000 + repeat).permutation(len(sites))] = np.arange(len(sites)) % n_outer
    rows = []
    for i, metal in enumerate(data.metals):
        others = [m for m in data.metals if m != metal]
        usable = wide[metal].notna().to_numpy() & sites[drift].notna().all(axis=1).to_numpy()
        err, err_ok = [], []
        for f in range(n_outer):
            t, v = np.flatnonzero((fold_of != f) & usable), np.flatnonzero((fold_of == f) & usable)
            seed = 100 * repeat + 10 * f + i
            sh_t, sh_v = _map_shares(data, sites, drift, cats, t, v) if cats and shares else (None, None)
            mm = sp.map_metal(metal, x=sites.loc[t, "x"], y=sites.loc[t, "y"], values=wide.loc[t, metal],
                              grid_x=sites.loc[v, "x"], grid_y=sites.loc[v, "y"],
                              sample_covariates=sites.loc[t, drift].reset_index(drop=True),
                              sample_map_covariates=gcov.loc[t, drift].reset_index(drop=True),
                              sample_shares=sh_t, grid_shares=sh_v,
                              grid_covariates=gcov.loc[v, drift].reset_index(drop=True), categorical=cats,
                              secondary=wide.loc[t, others].reset_index(drop=True), n_folds=n_folds,
                              rf_trees=rf_trees, log_mode="cv", seed=seed)
            ok = _gstat_ok(sites, wide, metal, t, v, seed=seed)
            obs = wide.loc[v, metal].to_numpy(float)
            err.append(np.abs(mm.grid["prediction"].to_numpy() - obs))
            err_ok.append(np.abs(ok["prediction"].to_numpy() - obs))
        e, eo = np.concatenate(err), np.concatenate(err_ok)
        rows.append({"region": region, "repeat": repeat, "metal": metal, "n": len(e), "mae_chosen": e.mean(),
                     "mae_raw_ok": eo.mean(), "chosen_vs_raw_ok": e.mean() / eo.mean()})
        print(f"{region} repeat {repeat} {metal:8s} chosen map / OK on original values {rows[-1]['chosen_vs_raw_ok']:.3f}",
              flush=True)
    return pd.DataFrame(rows)


def large_benchmark(*, n_samples: int, n_cells: int, n_neighbours: int, seed: int, chunk_size: int) -> pd.DataFrame:
    """Samples of a Gaussian field (gstools, exponential covariance) on a 100 x 100 km square; ordinary kriging
    and random forest + kriging fitted, then the grid predicted in chunks (peak traced memory reported)."""
    import gstools as gs

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100_000, (n_samples, 2))
    field = gs.SRF(gs.Exponential(dim=2, var=1.0, len_scale=8_000.0), seed=seed)((xy[:, 0], xy[:, 1]))
    z = np.exp(1.0 + 0.8 * field + rng.normal(0, 0.3, n_samples))
    side = int(round(np.sqrt(n_cells)))
    gx, gy = np.meshgrid(np.linspace(0, 100_000, side), np.linspace(0, 100_000, side))
    gx, gy = gx.ravel(), gy.ravel()
    rows = []
    for method in ("ok", "rfk"):
        t0 = time.perf_counter()
        model = sp.fit_spatial_model(method, x=xy[:, 0], y=xy[:, 1], values=z, log=True, seed=seed,
                                     n_neighbours=n_neighbours)
        t_fit = time.perf_counter() - t0
        tracemalloc.start()
        t0 = time.perf_counter()
        pred = model.predict(gx, gy, chunk_size=chunk_size)
        t_pred = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rows.append({"region": "synthetic", "method": method, "n_samples": n_samples, "n_cells": len(gx),
                     "fit_s": t_fit, "predict_s": t_pred, "peak_mib": peak,
                     "finite_share": float(np.isfinite(pred["prediction"]).mean())})
        print(f"synthetic {method:4s}: {n_samples} samples -> {len(gx)} cells, k = {n_neighbours}, chunks of "
              f"{chunk_size}: fit {t_fit:.1f} s, predict {t_pred:.1f} s, peak traced memory {peak:.0f} MiB", flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("regions", nargs="*", default=["jura", "meuse", "arid_demo"])
    ap.add_argument("--skip-large", action="store_true", help="skip the many-sample / large-grid case")
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--neighbours", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--trees", type=int, default=60)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", default=None, help="optional CSV of the per-method results")
    ap.add_argument("--holdout-seeds", type=int, default=0,
                    help="generated surveys split 259 / 100 like the Jura validation (0: none)")
    ap.add_argument("--splits", type=int, default=0,
                    help="random hold-out splits of each region's real samples (0: none)")
    ap.add_argument("--validation", type=int, default=100, help="samples kept out per split")
    ap.add_argument("--nested", type=int, default=0,
                    help="repeats of a nested 10-fold cross-validation of the whole choice on the real samples (0: none)")
    ap.add_argument("--nested-start", type=int, default=0,
                    help="number of the first nested repeat (each repeat's fold split is seeded by its number)")
    a = ap.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    parts = [region_benchmark(r, n_folds=a.folds, rf_trees=a.trees) for r in a.regions]
    res = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(res):
        ch = res[res["chosen"]]
        print("\nchosen method per metal, MAE ratio to ordinary kriging:")
        print(ch.pivot_table(index=["region", "metal", "method"], columns="scheme", values="ratio_mae_to_ok").round(3)
              .to_string())
        print("\nmedian ratio of the chosen method's MAE to OK's, per region and scheme:")
        print(ch.groupby(["region", "scheme"])["ratio_mae_to_ok"].median().round(3).to_string())
    if a.out and len(res):
        res.to_csv(a.out, index=False)
    if a.holdout_seeds:
        ho = pd.concat([holdout_benchmark(seed=a.seed + k, n_folds=a.folds, rf_trees=a.trees)
                        for k in range(a.holdout_seeds)], ignore_index=True)
        print("\ngenerated hold-out (Jura design), ratio of the chosen map's MAE to the OK map's:")
        print(ho.round(3).to_string(index=False))
        print(ho.groupby("region")[["kfold", "block", "holdout"]].median().round(3).to_string())
        if a.out:
            ho.to_csv(Path(a.out).with_name(Path(a.out).stem + "_holdout.csv"), index=False)
    if a.splits:
        sb = pd.concat([split_benchmark(r, split=k, n_validation=a.validation, n_folds=a.folds, rf_trees=a.trees)
                        for r in a.regions for k in range(a.splits)], ignore_index=True)
        cols = ["chosen_holdout", "chosen_vs_raw_ok"] + [c for c in sb.columns if c.startswith("holdout_")]
        print("\nreal-sample hold-out: median over metals of the MAE ratio to ordinary kriging, per split:")
        print(sb.groupby(["region", "split"])[cols].median().round(3).to_string())
        print("\nworst metal per split:")
        print(sb.groupby(["region", "split"])[cols].max().round(3).to_string())
        if a.out:
            sb.to_csv(Path(a.out).with_name(Path(a.out).stem + "_splits.csv"), index=False)
    if a.nested:
        nb = pd.concat([nested_benchmark(r, repeat=k, n_outer=10, n_folds=a.folds, rf_trees=a.trees)
                        for r in a.regions
                        for k in range(a.nested_start, a.nested_start + a.nested)], ignore_index=True)
        print("\nnested cross-validation, chosen map's MAE / ordinary kriging's on the original values:")
        print(nb.pivot_table(index=["region", "metal"], columns="repeat", values="chosen_vs_raw_ok").round(3).to_string())
        print(nb.groupby(["region", "repeat"])["chosen_vs_raw_ok"].agg(["median", "max"]).round(3).to_string())
        if a.out:
            nb.to_csv(Path(a.out).with_name(Path(a.out).stem + "_nested.csv"), index=False)
    if not a.skip_large:
        large_benchmark(n_samples=a.samples, n_cells=a.cells, n_neighbours=a.neighbours, seed=a.seed,
                        chunk_size=a.chunk)


if __name__ == "__main__":
    main()
