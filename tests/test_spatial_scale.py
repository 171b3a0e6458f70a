"""Grid prediction at survey scale: fast paths of hmlib.spatial give the numbers of the previous code path.

Checked against (a) numbers computed by the code before the speed changes (the commit before issue 19's
prediction work), stored in ``tests/data/spatial_reference/jura_kriging_head.csv`` for Jura Cd with hand-set
models; (b) the exact covariance model solved without the covariance table; (c) the same prediction made in one
pass (tiles, chunks and batches must not change a number); (d) the straightforward path (vectorised numpy
assembly, LU of the whole bordered system), each member's own neighbour search and separate cross-validation runs,
for the compiled kriging, the shared search of the stacked ensemble's members and the reused cross-validations.
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


def test_compiled_kriging_equals_the_straightforward_numpy_path():
    """Against the straightforward path (``compiled=False``: vectorised numpy assembly of every system and LU of
    the whole bordered system with numpy.linalg.solve): the compiled assembly and Cholesky solve give the same
    ordinary, simple and cokriging predictions, variances and multipliers to 1e-9 relative (rounding), on Jura
    targets inside and far outside the samples (where the covariance model itself is evaluated)."""
    cases, t = jura_cases(sp)
    rng = np.random.default_rng(5)
    tt = np.vstack([t, rng.uniform(-20, 30, (40, 2))])
    s = pd.read_csv(ROOT / "data" / "jura" / "jura_samples.csv")
    xy = s[["Xloc", "Yloc"]].to_numpy(float)
    z = np.log(s["Cd"].to_numpy(float))
    for vf in (_vf(sp, "matern", 0.15, 0.35, 0.5, 1.5), _vf(sp, "spherical", 0.187, 0.317, 1.12)):
        for kw in ({}, {"mean": 0.0}):
            fast = sp.local_kriging(xy, z - z.mean(), tt, covariance=vf.covariance, **kw)
            slow = sp.local_kriging(xy, z - z.mean(), tt, covariance=vf.covariance, compiled=False, **kw)
            for a, b in zip(fast, slow):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    import gstools as gs

    zs = np.column_stack([z, z * 0.5 + rng.normal(0, 0.1, len(z)), z * 0.2 + rng.normal(0, 0.3, len(z))])
    lmc = sp.Coregionalisation(["a", "b", "c"], np.array([[0.1, 0.02, -0.01], [0.02, 0.05, 0.0], [-0.01, 0.0, 0.08]]),
                               np.array([[0.4, 0.18, 0.1], [0.18, 0.12, 0.05], [0.1, 0.05, 0.2]]),
                               gs.Matern(dim=2, var=1.0, len_scale=0.6, nu=1.5))
    fast = sp.local_cokriging(xy, zs, tt, lmc=lmc, n_neighbours=12)
    slow = sp.local_cokriging(xy, zs, tt, lmc=lmc, n_neighbours=12, compiled=False)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_cholesky_weights_solve_the_bordered_system_and_fall_back_to_lu():
    """Against numpy.linalg.solve of the full bordered ordinary-kriging system (and of C for simple kriging):
    the Cholesky / Schur-complement weights agree to 1e-10; a system whose covariance block is not positive
    definite is solved by LU and gives numpy's solution."""
    rng = np.random.default_rng(8)
    n, m = 10, 6
    X = rng.normal(size=(m, n, n + 3))
    C = X @ X.transpose(0, 2, 1) / n + 0.1 * np.eye(n)
    C[2] = np.diag(np.r_[-1.0, np.ones(n - 1)])                          # indefinite: Cholesky fails
    A = np.ones((m, n + 1, n + 1))
    A[:, :n, :n] = C
    A[:, n, n] = 0.0
    b = np.ones((m, n + 1))
    b[:, :n] = rng.normal(size=(m, n))
    lam, mu = sp._kriging_weights(A, b, n, ordinary=True, cholesky=True)
    ref = np.linalg.solve(A, b[..., None])[..., 0]
    np.testing.assert_allclose(lam, ref[:, :n], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mu, ref[:, n], rtol=1e-10, atol=1e-12)
    ok = np.arange(m) != 2
    lam, mu = sp._kriging_weights(C[ok], b[ok, :n], n, ordinary=False, cholesky=True)
    np.testing.assert_allclose(lam, np.linalg.solve(C[ok], b[ok, :n, None])[..., 0], rtol=1e-10, atol=1e-12)
    assert (mu == 0).all()


def test_stack_members_share_one_neighbour_search_without_changing_a_number():
    """Against each member predicting on its own (its own neighbour search) and the stacked combination written
    out (weights rescaled to sum to one, modelling-scale mean, variance and multiplier averaged, lognormal
    back-transform): a grid tile of a two-member stack (ordinary kriging and simple kriging with local means on
    the same samples) gives identical numbers with the shared search."""
    rng = np.random.default_rng(21)
    n = 300
    xy = rng.uniform(0, 30, (n, 2))
    cls = np.where(xy[:, 0] > 15, "B", "A")
    z = np.exp(1 + 0.5 * (cls == "B") + np.sin(xy[:, 1] / 6) + rng.normal(0, 0.2, n))
    cov = pd.DataFrame({"cls": cls})
    models = {m: sp.fit_spatial_model(m, x=xy[:, 0], y=xy[:, 1], values=z, covariates=cov if m == "sklm" else None,
                                      categorical=["cls"], log=True, models=["exponential"], anisotropy="none")
              for m in ("ok", "sklm")}
    gx, gy = np.meshgrid(np.linspace(0.5, 29.5, 30), np.linspace(0.5, 29.5, 20))
    tile = pd.DataFrame({"x": gx.ravel(), "y": gy.ravel()})
    tile["cov:cls"] = np.where(tile["x"] > 15, "B", "A")
    w = {"ok": 0.3, "sklm": 0.6}
    got = sp._predict_tile(tile, models=models, weights=w, log=True, covariate_columns=["cls"],
                           secondary_columns=[], threshold=4.0)
    own = {m: models[m].predict(tile["x"], tile["y"], tile[["cov:cls"]].set_axis(["cls"], axis=1) if m == "sklm"
                                else None) for m in models}
    a, b = w["ok"] / (w["ok"] + w["sklm"]), w["sklm"] / (w["ok"] + w["sklm"])
    mt = a * own["ok"]["mean_t"].to_numpy() + b * own["sklm"]["mean_t"].to_numpy()
    vt = a * own["ok"]["sd_t"].to_numpy() ** 2 + b * own["sklm"]["sd_t"].to_numpy() ** 2
    ps = a * own["ok"]["psi"].to_numpy() + b * own["sklm"]["psi"].to_numpy()
    want = sp._back_transform(mt, vt, ps, log=True)
    pd.testing.assert_frame_equal(got.drop(columns="exceedance_probability"), want, check_exact=True)
    pd.testing.assert_frame_equal(sp.combine_members(own, w, log=True), want, check_exact=True)
    nb = sp._shared_neighbours(models, tile[["x", "y"]].to_numpy())
    assert nb["ok"] is nb["sklm"]


def test_ordinary_kriging_cross_validation_run_once_equals_a_separate_run():
    """Against a separate call of cross_validate with the settings map_metal chose (scale and anisotropy): the
    ordinary-kriging k-fold table that map_metal reuses from its scale and anisotropy checks is identical to a
    fresh run, and the scale check's MAEs are those of fresh runs on both scales."""
    rng = np.random.default_rng(31)
    n = 160
    xy = rng.uniform(0, 30, (n, 2))
    z = np.exp(1 + np.sin(xy[:, 1] / 6) + 0.5 * np.cos(xy[:, 0] / 4) + rng.normal(0, 0.3, n))
    mm = sp.map_metal("P", x=xy[:, 0], y=xy[:, 1], values=z, grid_x=xy[:5, 0] + 0.1, grid_y=xy[:5, 1],
                      methods=["ok"], n_folds=4, block_cv=False, models=["exponential"], anisotropy="auto",
                      log_mode="cv", seed=3)
    an = "auto" if mm.anisotropy_cv["anisotropic"] < mm.anisotropy_cv["isotropic"] else "none"
    kw = dict(x=xy[:, 0], y=xy[:, 1], values=z, n_folds=4, seed=3, models=["exponential"], point=mm.point)
    fresh = sp.cross_validate("ok", log=mm.log, anisotropy=an, **kw)
    got = mm.cv[(mm.cv["method"] == "ok") & (mm.cv["scheme"] == "kfold")].drop(columns=["method", "scheme"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), fresh, check_exact=True)
    for lg, name in ((False, "raw"), (True, "ln")):
        c = sp.cross_validate("ok", log=lg, anisotropy="none", **kw)
        assert mm.scale_cv[name] == float(np.mean(np.abs(c["observed"] - c["predicted"])))


def test_collocated_cokriging_check_reusing_the_fold_models_equals_a_separate_run():
    """Against separate calls of cross_validate (each fitting its own cokriging models): the k-fold tables of
    cokriging and of the collocated check, whose fold models map_metal fits once, are identical."""
    rng = np.random.default_rng(41)
    n = 150
    xy = rng.uniform(0, 30, (n, 2))
    f = np.sin(xy[:, 1] / 6) + 0.5 * np.cos(xy[:, 0] / 4)
    z = 5 + f + rng.normal(0, 0.3, n)
    sec = pd.DataFrame({"Q": 2 + f + rng.normal(0, 0.2, n), "R": rng.normal(0, 1, n)})
    mm = sp.map_metal("P", x=xy[:, 0], y=xy[:, 1], values=z, secondary=sec, grid_x=xy[:5, 0] + 0.1,
                      grid_y=xy[:5, 1], methods=["ok", "ck"], n_folds=4, block_cv=False, models=["exponential"],
                      anisotropy="none", log_mode="never", seed=5)
    assert mm.secondary == ["Q"]
    kw = dict(x=xy[:, 0], y=xy[:, 1], values=z, secondary=sec[["Q"]], n_folds=4, seed=5, models=["exponential"],
              anisotropy="none", log=False)
    for m, coll in (("ck", False), ("ckc", True)):
        fresh = sp.cross_validate("ck", collocated=coll, **kw)
        got = mm.cv[(mm.cv["method"] == m) & (mm.cv["scheme"] == "kfold")].drop(columns=["method", "scheme"])
        pd.testing.assert_frame_equal(got.reset_index(drop=True), fresh, check_exact=True)


def test_anisotropy_checked_by_ordinary_kriging_is_used_by_it_alone(monkeypatch):
    """A field generated (gstools SRF, seeded) with length scales 12 along x and 3 across, plus a class effect:
    ordinary kriging keeps the anisotropy, in the generated direction (east) with a ratio of at least 2, because it
    lowers its k-fold error (the generated truth); every other method's fit, in the folds and on all samples, is
    asked for isotropic variograms, as the documented rule says (their own directional check is untested)."""
    import gstools as gs

    rng = np.random.default_rng(8)
    n = 300
    xy = rng.uniform(0, 90, (n, 2))
    cls = np.where(xy[:, 0] + rng.normal(0, 10, n) > 45, "b", "a")
    u = gs.SRF(gs.Exponential(dim=2, var=1.0, len_scale=[12.0, 3.0]), seed=9)((xy[:, 0], xy[:, 1]))
    z = 10 + 2 * u + np.where(cls == "b", 1.0, 0.0) + rng.normal(0, 0.1, n)
    calls = []
    real = sp.fit_spatial_model

    def spy(method, **kw):
        calls.append((method, kw.get("anisotropy", "auto")))
        return real(method, **kw)

    monkeypatch.setattr(sp, "fit_spatial_model", spy)
    cov = pd.DataFrame({"cls": cls})
    mm = sp.map_metal("P", x=xy[:, 0], y=xy[:, 1], values=z, grid_x=xy[:5, 0] + 0.1, grid_y=xy[:5, 1],
                      sample_covariates=cov, grid_covariates=cov.iloc[:5], categorical=["cls"],
                      methods=["ok", "rk", "sklm"], n_folds=4, block_cv=False, models=["exponential"],
                      anisotropy="auto", log_mode="never", max_lag_fraction=0.3, seed=2)
    assert mm.anisotropy_cv["anisotropic"] < mm.anisotropy_cv["isotropic"]
    assert mm.anisotropy_model is not None
    assert mm.anisotropy_model.azimuth_deg == 0.0 and mm.anisotropy_model.ratio >= 2.0
    assert {m for m, _ in calls} >= {"ok", "rk", "sklm"}
    assert "auto" in {a for m, a in calls if m == "ok"}   # and "none" in its check of the isotropic model
    assert {a for m, a in calls if m != "ok"} == {"none"}
