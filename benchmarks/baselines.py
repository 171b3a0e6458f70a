"""Benchmark of the baselines stage: seconds of run() + report() for 500, 2,000 and 4,000 generated soils.

The soils come from :mod:`hmlib.synth.background` (natural background a known function of soil
chemistry over four parent materials, seven metals, known contamination); the stage runs with its
default options (1,000 bootstrap resamples, 5 folds, 200 inducing points, EM comparison on).
Also prints the recovery of the known background (median |ln B / B_true| on clean samples) and the
flag rates, so a speed-up that breaks the method shows here.

A script, not a test:  .venv/bin/python benchmarks/baselines.py [--sizes 500 2000 4000]
Timings depend on the machine and its load; nothing here is asserted.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hmlib.context import open_stage  # noqa: E402
from hmlib.stages import baselines as stage  # noqa: E402
from hmlib.synth.background import write_region  # noqa: E402


def one(n: int, seed: int, folder: Path) -> dict:
    paths = write_region(folder / f"n{n}", seed=seed, n_samples=n, region=f"background_{n}")
    ctx = open_stage("baselines", params_file=paths["params"], output_dir=folder / f"out{n}")
    t0, c0 = time.perf_counter(), time.process_time()
    result = stage.run(ctx)
    t_run = time.perf_counter() - t0
    stage.report(ctx, result)
    ctx.out.finish()
    t_all = time.perf_counter() - t0
    cpu = time.process_time() - c0
    truth = pd.read_csv(paths["truth_background"], index_col=0)
    cont = pd.read_csv(paths["truth_contaminated"], index_col=0).astype(bool)
    a = result.adaptive
    rec, fc, fk = [], [], []
    for metal in truth.columns:
        s = a[a["metal"] == metal].set_index("sample_id")
        c = cont[metal].reindex(s.index)
        err = np.abs(np.log(s["background"] / truth[metal].reindex(s.index)))
        rec.append(err[~c].median())
        fc.append(s.loc[~c, "flagged"].mean())
        if c.any():
            fk.append(s.loc[c, "flagged"].mean())
    return {"n_samples": n, "run_s": round(t_run, 1), "run_and_report_s": round(t_all, 1), "cpu_s": round(cpu, 1),
            "median_abs_log_error_max": round(max(rec), 3), "clean_flagged_max": round(max(fc), 3),
            "contaminated_flagged_min": round(min(fk), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 4000])
    ap.add_argument("--seed", type=int, default=20260412)
    a = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            r = one(n, a.seed, Path(tmp))
            rows.append(r)
            print(f"{n:5d} samples: baselines stage {r['run_and_report_s']:7.1f} s (run {r['run_s']:.1f} s, "
                  f"CPU {r['cpu_s']:.1f} s); "
                  f"recovery max median |ln B/B_true| {r['median_abs_log_error_max']:.3f}, clean flagged max "
                  f"{r['clean_flagged_max']:.1%}, contaminated flagged min {r['contaminated_flagged_min']:.1%}",
                  flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
