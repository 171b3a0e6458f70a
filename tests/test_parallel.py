"""Regions and grid tiles on a 2-worker Dask LocalCluster give what the serial run gives.

Checked against the serial run of the same inputs: the tables of two regions byte for byte, and
ordinary-kriging predictions of a tiled grid (pykrige, an independent implementation) value for
value.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from hmlib.parallel import cluster_client, map_tiles, run_regions, tile_seed, tiles

pytestmark = pytest.mark.slow


def _tables(report_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((report_dir / "tables").glob("*.csv"))}


def test_two_regions_on_a_local_cluster_match_the_serial_run(tmp_path):
    from conftest import MINI_PARAMS, make_mini_project

    params = []
    for rid, n in (("mini", 60), ("minib", 45)):
        base = tmp_path / rid
        params.append(make_mini_project(base, params_text=MINI_PARAMS.replace("id: mini", f"id: {rid}"), n=n))
    serial = run_regions([str(p) for p in params], cluster=None, reports_dir=tmp_path / "serial", render=False,
                         quiet=True)
    parallel = run_regions([str(p) for p in params], cluster="local", reports_dir=tmp_path / "dask", render=False,
                           quiet=True)
    assert [r.region for r in parallel] == ["mini", "minib"]
    for a, b in zip(serial, parallel):
        assert _tables(a.report_dir) == _tables(b.report_dir)


def test_tiled_kriging_on_a_cluster_equals_one_pass():
    from pykrige.ok import OrdinaryKriging

    rng = np.random.default_rng(7)
    x, y = rng.uniform(0, 10, 80), rng.uniform(0, 10, 80)
    z = np.sin(x / 2) + np.cos(y / 3) + rng.normal(0, 0.1, 80)
    ok = OrdinaryKriging(x, y, z, variogram_model="spherical", variogram_parameters=[0.5, 4.0, 0.01])
    gx, gy = np.meshgrid(np.linspace(0, 10, 60), np.linspace(0, 10, 50))
    grid = pd.DataFrame({"x": gx.ravel(), "y": gy.ravel()})

    def predict(tile: pd.DataFrame) -> pd.DataFrame:
        zp, ss = ok.execute("points", tile["x"].to_numpy(), tile["y"].to_numpy())
        return pd.DataFrame({"prediction": np.asarray(zp), "variance": np.asarray(ss)})

    one = predict(grid)
    with cluster_client("local", n_workers=2) as client:
        tiled = map_tiles(predict, grid, tile_rows=700, scheduler=client.scheduler.address)
    assert len(tiles(len(grid), 700)) == 5
    np.testing.assert_allclose(tiled["prediction"], one["prediction"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tiled["variance"], one["variance"], rtol=1e-12, atol=1e-12)


def test_tile_seeds_are_distinct_and_reproducible():
    """Per-tile seeds come from numpy's SeedSequence: distinct per tile, the same on every call."""
    seeds = [tile_seed(20240601, k) for k in range(100)]
    assert len(set(seeds)) == 100
    assert seeds == [tile_seed(20240601, k) for k in range(100)]


def test_spatial_grid_tiles_on_a_cluster_equal_the_serial_tiles():
    """One metal mapped by :func:`hmlib.spatial.map_metal` (cross-validation, choice, then the grid in 6 tiles):
    the tiles predicted on a 2-worker LocalCluster give exactly the numbers of the same tiles predicted in this
    process (checked against the serial run, value for value)."""
    from hmlib import spatial as sp

    rng = np.random.default_rng(21)
    xy = rng.uniform(0, 30, (150, 2))
    z = np.exp(1.0 + np.sin(xy[:, 0] / 5) + 0.5 * np.cos(xy[:, 1] / 4) + rng.normal(0, 0.2, 150))
    gx, gy = np.meshgrid(np.linspace(0, 30, 30), np.linspace(0, 30, 20))
    kw = dict(x=xy[:, 0], y=xy[:, 1], values=z, grid_x=gx.ravel(), grid_y=gy.ravel(), methods=["ok"], n_folds=3,
              block_cv=False, models=["exponential"], anisotropy="none", log_mode="always", threshold=5.0, seed=4,
              chunk_size=100)
    serial = sp.map_metal("X", scheduler=None, **kw)
    with cluster_client("local", n_workers=2) as client:
        dask = sp.map_metal("X", scheduler=client.scheduler.address, **kw)
    cols = ["prediction", "median", "variance", "exceedance_probability"]
    pd.testing.assert_frame_equal(dask.grid[cols], serial.grid[cols], check_exact=True)
