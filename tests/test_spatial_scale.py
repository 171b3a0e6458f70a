"""Grid prediction at survey scale: fast paths of hmlib.spatial give the numbers of the previous code path.

Checked against (a) numbers computed by the code before the speed changes (the commit before issue 19's
prediction work), stored in ``tests/data/spatial_reference/jura_kriging_head.csv`` for Jura Cd with hand-set
models; (b) the exact covariance model solved without the covariance table; (c) the same prediction made in one
pass (tiles, chunks and batches must not change a number).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hmlib import spatial as sp

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "data" / "spatial_reference" / "jura_kriging_head.csv"


def _vf(mod, name: str, nugget: float, psill: float, len_scale: float, nu: float = np.nan):
    """A VariogramFit with hand-set parameters (close to those fitted to Jura Cd) built with module ``mod``."""
    import gstools as gs

    cls = {"spherical": gs.Spherical, "exponential": gs.Exponential, "matern": gs.Matern}[name]
    kw = {"nu": nu} if name == "matern" else {}
    g = cls(dim=2, var=psill, len_scale=len_scale, nugget=nugget, **kw)
    return mod.VariogramFit(name, nugget, psill, len_scale, len_scale, nu, 0.0, pd.DataFrame(), g)


def jura_cases(mod):
    """Jura Cd (ln), every 10th grid cell: ordinary kriging (spherical, Matern), simple kriging (exponential) and
    cokriging with Zn and Cr (spherical LMC), each as a zero-argument callable of module ``mod``."""
    import gstools as gs

    s = pd.read_csv(ROOT / "data" / "jura" / "jura_samples.csv")
    g = pd.read_csv(ROOT / "data" / "jura" / "jura_grid.csv").iloc[::10]
    xy = s[["Xloc", "Yloc"]].to_numpy(float)
    t = g[["Xloc", "Yloc"]].to_numpy(float)
    z = np.log(s["Cd"].to_numpy(float))
    sph = _vf(mod, "spherical", 0.187, 0.317, 1.12)
    mat = _vf(mod, "matern", 0.15, 0.35, 0.5, 1.5)
    exp_ = _vf(mod, "exponential", 0.214, 0.232, 0.849)
    zs = np.column_stack([z] + [(np.log(s[c]) - np.log(s[c]).mean()) / np.log(s[c]).std() * z.std() + z.mean()
                                for c in ("Zn", "Cr")])
    lmc = mod.Coregionalisation(["primary", "Zn", "Cr"],
                                np.array([[0.187, 0.075, 0.069], [0.075, 0.121, 0.057], [0.069, 0.057, 0.141]]),
                                np.array([[0.317, 0.284, 0.299], [0.284, 0.407, 0.326], [0.299, 0.326, 0.403]]),
                                gs.Spherical(dim=2, var=1.0, len_scale=1.12))
    cases = {
        "ok_spherical": lambda: mod.local_kriging(xy, z, t, covariance=sph.covariance, n_neighbours=32),
        "ok_matern": lambda: mod.local_kriging(xy, z, t, covariance=mat.covariance, n_neighbours=32),
        "sk_exponential": lambda: mod.local_kriging(xy, z - z.mean(), t, covariance=exp_.covariance,
                                                    n_neighbours=24, mean=0.0),
        "ck_spherical": lambda: mod.local_cokriging(xy, zs, t, lmc=lmc, n_neighbours=16),
    }
    return cases, t


def test_jura_kriging_equals_the_previous_code_path_within_the_table_tolerance():
    """Against the numbers of the code before the change (stored CSV): predictions, variances and multipliers
    agree to 1e-5 relative (atol 1e-7). Both code paths interpolate the covariance in a table of about 0.2 m
    spacing; the old table's extent was the largest distance of the first batch of targets, the new one's is set
    by the sample geometry, so the interpolation nodes differ and the numbers move by the interpolation error
    (measured at most 5e-6 relative on Jura and Meuse, amplified by the conditioning of the kriging systems)."""
    ref = pd.read_csv(REF, float_precision="round_trip")
    cases, t = jura_cases(sp)
    np.testing.assert_allclose(t, ref[["x", "y"]].to_numpy(), rtol=0, atol=1e-12)
    for name, fn in cases.items():
        pred, var, mu = fn()
        np.testing.assert_allclose(pred, ref[f"{name}_prediction"], rtol=1e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(var, ref[f"{name}_variance"], rtol=1e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(mu, ref[f"{name}_mu"], rtol=1e-5, atol=1e-7, err_msg=name)


def test_tabulated_covariance_is_close_to_the_exact_model():
    """Against the exact model (covariance evaluated directly, no table): the Jura ordinary kriging with a
    Matern and a spherical variogram agrees to 1e-5 relative; beyond the table's extent the model itself is
    evaluated, so a target far outside the samples gets the exact covariance."""
    cases, t = jura_cases(sp)
    orig = sp._tabulated
    try:
        sp._tabulated = lambda cov, c00, extent, n_nodes=0: (
            lambda h: np.where(np.asarray(h) == 0, c00, cov(np.asarray(h, float))))
        exact = {n: cases[n]() for n in ("ok_spherical", "ok_matern")}
    finally:
        sp._tabulated = orig
    for n, (pe, ve, _) in exact.items():
        p, v, _ = cases[n]()
        np.testing.assert_allclose(p, pe, rtol=1e-5, atol=1e-7, err_msg=n)
        np.testing.assert_allclose(v, ve, rtol=1e-5, atol=1e-7, err_msg=n)
    vf = _vf(sp, "exponential", 0.1, 1.0, 2.0)
    tab = sp._tabulated(vf.covariance, vf.sill, 5.0)
    h = np.array([0.0, 4.9, 5.0, 7.5, 40.0])
    np.testing.assert_allclose(tab(h)[3:], vf.covariance(h[3:]), rtol=0, atol=0)
    assert tab(h)[0] == vf.sill


def test_tiles_chunks_and_batches_do_not_change_a_number():
    """The same targets (inside and far outside the samples) predicted in one pass and in chunks of 37, batches
    of 5, or reversed order: identical arrays (assert_array_equal) for ordinary, simple and cokriging, as the
    covariance table is fixed by the samples, not by the targets asked for together."""
    cases, t = jura_cases(sp)
    rng = np.random.default_rng(4)
    far = rng.uniform(-20, 30, (40, 2))
    tt = np.vstack([t, far])
    s = pd.read_csv(ROOT / "data" / "jura" / "jura_samples.csv")
    xy = s[["Xloc", "Yloc"]].to_numpy(float)
    z = np.log(s["Cd"].to_numpy(float))
    mat = _vf(sp, "matern", 0.15, 0.35, 0.5, 1.5)
    model = sp.SpatialModel("ok", True, xy, z, variogram=mat, n_neighbours=32)
    one = model.predict(tt[:, 0], tt[:, 1])
    chunked = model.predict(tt[:, 0], tt[:, 1], chunk_size=37)
    pd.testing.assert_frame_equal(one, chunked, check_exact=True)
    rev = model.predict(tt[::-1, 0], tt[::-1, 1], chunk_size=50)
    pd.testing.assert_frame_equal(one, rev.iloc[::-1].reset_index(drop=True), check_exact=True)
    for kw in ({}, {"mean": 0.0}):
        a = sp.local_kriging(xy, z - z.mean(), tt, covariance=mat.covariance, **kw)
        b = sp.local_kriging(xy, z - z.mean(), tt, covariance=mat.covariance, batch_size=5, **kw)
        c = [sp.local_kriging(xy, z - z.mean(), tt[i:i + 37], covariance=mat.covariance, **kw)
             for i in range(0, len(tt), 37)]
        for j in range(3):
            np.testing.assert_array_equal(a[j], b[j])
            np.testing.assert_array_equal(a[j], np.concatenate([x[j] for x in c]))
    import gstools as gs

    zs = np.column_stack([z, z * 0.5 + rng.normal(0, 0.1, len(z))])
    lmc = sp.Coregionalisation(["a", "b"], np.array([[0.1, 0.02], [0.02, 0.05]]),
                               np.array([[0.4, 0.18], [0.18, 0.12]]), gs.Matern(dim=2, var=1.0, len_scale=0.6, nu=1.5))
    a = sp.local_cokriging(xy, zs, tt, lmc=lmc, n_neighbours=12)
    b = sp.local_cokriging(xy, zs, tt, lmc=lmc, n_neighbours=12, batch_size=7)
    c = [sp.local_cokriging(xy, zs, tt[i:i + 37], lmc=lmc, n_neighbours=12) for i in range(0, len(tt), 37)]
    for j in range(3):
        np.testing.assert_array_equal(a[j], b[j])
        np.testing.assert_array_equal(a[j], np.concatenate([x[j] for x in c]))


def test_metals_mapped_in_worker_processes_equal_the_serial_loop():
    """Against the serial loop in this process: two metals of a seeded survey mapped in two loky worker
    processes (as the spatial stage does with ``metal_jobs`` > 1) give identical grids, cross-validation
    tables and choices (each metal is seeded by its position and mapped by a pure function)."""
    from joblib import Parallel, delayed

    rng = np.random.default_rng(12)
    n = 150
    xy = rng.uniform(0, 30, (n, 2))
    cls = np.where(xy[:, 0] > 15, "B", "A")
    z = {"P": np.exp(1 + 0.5 * (cls == "B") + np.sin(xy[:, 1] / 6) + rng.normal(0, 0.2, n)),
         "Q": 3 + np.cos(xy[:, 0] / 5) + rng.normal(0, 0.3, n)}
    gx, gy = np.meshgrid(np.linspace(0.5, 29.5, 25), np.linspace(0.5, 29.5, 20))
    grid = pd.DataFrame({"x": gx.ravel(), "y": gy.ravel()})
    grid["cls"] = np.where(grid["x"] > 15, "B", "A")

    def kw(i, m):
        return dict(metal=m, x=xy[:, 0], y=xy[:, 1], values=z[m], grid_x=grid["x"], grid_y=grid["y"],
                    sample_covariates=pd.DataFrame({"cls": cls}), grid_covariates=grid[["cls"]], categorical=["cls"],
                    methods=["ok", "sklm", "stack"], n_folds=3, n_block_folds=3, models=["exponential"],
                    anisotropy="none", log_mode="cv", threshold=4.0, seed=7 + i, chunk_size=130)
    serial = [sp.map_metal(**kw(i, m)) for i, m in enumerate(z)]
    workers = list(Parallel(n_jobs=2, backend="loky")(delayed(sp.map_metal)(**kw(i, m)) for i, m in enumerate(z)))
    for a, b in zip(serial, workers):
        assert a.best == b.best and a.log == b.log
        pd.testing.assert_frame_equal(a.grid, b.grid, check_exact=True)
        pd.testing.assert_frame_equal(a.cv_summary, b.cv_summary, check_exact=True)
