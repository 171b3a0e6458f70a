"""Regions and grid tiles on Dask distributed (``hmlib run A B --cluster local|ADDRESS``).

Two levels of parallel work, both with results identical to the serial run:

- **regions**: :func:`run_regions` submits one :func:`hmlib.runner.run_region` per region to a Dask
  cluster (each region keeps its own seed, so the schedule cannot change a number);
- **grid tiles**: inside a stage, :func:`map_tiles` applies a function to consecutive tiles of a
  prediction grid, on the cluster named by ``HMLIB_SCHEDULER`` when set (``hmlib run --cluster``
  sets it for the stage kernels) and serially otherwise; tiles are concatenated in grid order, and a
  function that draws random numbers gets a seed per tile (:func:`tile_seed`), never a shared stream.

``--cluster local`` starts a :class:`distributed.LocalCluster` with one single-threaded worker
process per core; ``--cluster tcp://host:8786`` connects to a running scheduler whose workers have
the same environment (the same hmlib, data and params paths).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SCHEDULER_ENV", "cluster_client", "run_regions", "tiles", "tile_seed", "map_tiles"]

#: environment variable holding the scheduler address stage kernels send grid tiles to
SCHEDULER_ENV = "HMLIB_SCHEDULER"


@contextlib.contextmanager
def cluster_client(cluster: str, *, n_workers: int | None = None) -> Iterator[Any]:
    """A Dask client: ``"local"`` starts a LocalCluster (closed on exit), anything else is an address."""
    from distributed import Client, LocalCluster

    if cluster == "local":
        n = n_workers or os.cpu_count() or 1
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
                Client(lc) as client:
            yield client
    else:
        with Client(cluster, timeout="30s") as client:
            yield client


def _set_env(name: str, value: str) -> None:
    os.environ[name] = value


def run_regions(regions: list[str], *, cluster: str | None = None, **run_kw) -> list:
    """Run several regions, on a Dask cluster when ``cluster`` is given; results in the order given.

    Parameters
    ----------
    regions : region ids or params files.
    cluster : None (one after the other in this process), ``"local"`` or a scheduler address.
    **run_kw : passed to :func:`hmlib.runner.run_region` (``jobs``, ``render``, ``reports_dir``...).

    Returns
    -------
    list of :class:`hmlib.runner.RunResult`
    """
    from .runner import run_region

    if cluster is None:
        return [run_region(r, **run_kw) for r in regions]
    with cluster_client(cluster) as client:
        address = client.scheduler.address
        client.run(_set_env, SCHEDULER_ENV, address)  # stage kernels started by the workers inherit it
        futures = [client.submit(_run_region_task, r, pure=False, key=f"hmlib-run-{i}-{r}", **run_kw)
                   for i, r in enumerate(regions)]
        return client.gather(futures)


def _run_region_task(region: str, **run_kw):
    """One region on a Dask worker, out of the worker's thread pool.

    The region's stage kernels send their grid tiles back to the same cluster; a region task that
    held its worker's only thread would leave no thread for them (one region on a one-worker cluster
    would wait for ever), so the task secedes: its thread no longer counts as a worker slot.
    """
    from distributed import secede

    from .runner import run_region

    secede()
    return run_region(region, **run_kw)


def tiles(n_rows: int, tile_rows: int) -> list[slice]:
    """Consecutive row slices of at most ``tile_rows`` rows covering ``n_rows`` rows."""
    if tile_rows < 1:
        raise ValueError(f"tile_rows must be at least 1, got {tile_rows}")
    return [slice(i, min(i + tile_rows, n_rows)) for i in range(0, n_rows, tile_rows)]


def tile_seed(seed: int, tile: int) -> int:
    """The seed of tile ``tile`` of a run seeded with ``seed`` (independent streams per tile)."""
    return int(np.random.SeedSequence([seed, tile]).generate_state(1)[0])


def map_tiles(fn: Callable[[pd.DataFrame], pd.DataFrame], grid: pd.DataFrame, *, tile_rows: int = 50_000,
              scheduler: str | None = None, desc: str = "grid tiles") -> pd.DataFrame:
    """``fn`` applied to consecutive tiles of ``grid``; the results concatenated in grid order.

    Parameters
    ----------
    fn : tile -> result frame (pure: the same tile gives the same result wherever it runs).
    grid : the grid's rows.
    tile_rows : rows per tile (memory per task is proportional to it, not to the grid).
    scheduler : Dask scheduler address; default ``HMLIB_SCHEDULER`` when set, else serial.
    desc : label of the console progress bar.

    Returns
    -------
    DataFrame, identical to ``fn`` applied tile by tile in one process.
    """
    from .progress import track

    parts = tiles(len(grid), tile_rows)
    address = scheduler or os.environ.get(SCHEDULER_ENV)
    if not address or len(parts) == 1:
        return pd.concat([fn(grid.iloc[s]) for s in track(parts, desc=desc, total=len(parts))], ignore_index=True)
    from distributed import Client

    with Client(address, timeout="30s") as client:
        futures = client.map(fn, [grid.iloc[s] for s in parts], pure=False)
        results = [f.result() for f in track(futures, desc=desc, total=len(futures))]
    return pd.concat(results, ignore_index=True)
