"""How the pipeline scales with the survey size: seconds and peak memory per stage, and growth exponents.

Generates seeded surveys (``hmlib.synth.survey``) of 500, 2,000, 4,000 and 20,000 samples with grids
of 20k, 100k, 100k and 1M cells, runs every stage the Jura params enable (with the Jura options)
through ``hmlib run`` without rendering, and prints per stage the wall seconds and the peak
resident memory of the stage's kernel, then the fitted growth exponent b of seconds ~ n^b.

    .venv/bin/python benchmarks/scale.py [--sizes 500 2000 4000 20000] [--jobs 2]

Targets (issue: survey-scale runs): 4,000 samples / 100k cells within 10 minutes and 6 GB; 20,000 /
1M within 30 minutes, on a 2-core machine.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRIDS = {500: 20_000, 2000: 100_000, 4000: 100_000, 20000: 1_000_000}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 4000, 20000])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--stages", nargs="+", default=None, help="a subset of the Jura stages")
    args = ap.parse_args()
    from hmlib.runner import run_region
    from hmlib.synth.survey import write_region

    table: dict[int, dict[str, tuple[float, float]]] = {}
    totals = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            params = write_region(Path(tmp), n_samples=n, n_grid=GRIDS.get(n, 100_000))
            t0 = time.perf_counter()
            res = run_region(str(params), reports_dir=Path(tmp) / "reports", render=False, force=True, quiet=False,
                             jobs=args.jobs, stages=args.stages)
            totals[n] = time.perf_counter() - t0
            table[n] = {s.name: (s.seconds, s.peak_memory_mb or float("nan")) for s in res.stages if s.status == "ok"}
            peak = max((m for _, m in table[n].values()), default=float("nan"))
            print(f"n = {n:>6}, grid = {GRIDS.get(n, 100_000):>9,}: {totals[n]:8.1f} s wall (jobs={args.jobs}), "
                  f"largest stage peak {peak / 1024:.2f} GB", flush=True)
    stages = sorted({s for t in table.values() for s in t})
    print(f"\n{'stage':<16}" + "".join(f"{n:>10} s{n:>8} MB" for n in args.sizes) + f"{'exponent':>10}")
    for s in stages:
        row = f"{s:<16}"
        secs = []
        for n in args.sizes:
            sec, mb = table[n].get(s, (float("nan"), float("nan")))
            secs.append(sec)
            row += f"{sec:>12.1f}{mb:>11.0f}"
        ok = [(n, v) for n, v in zip(args.sizes, secs) if np.isfinite(v) and v > 0]
        b = np.polyfit(np.log([n for n, _ in ok]), np.log([v for _, v in ok]), 1)[0] if len(ok) >= 2 else float("nan")
        print(row + f"{b:>10.2f}")
    print(f"{'total (wall)':<16}" + "".join(f"{totals[n]:>12.1f}{'':>11}" for n in args.sizes))


if __name__ == "__main__":
    main()
