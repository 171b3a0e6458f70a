"""Pipeline overhead benchmark: `hmlib run` (papermill, one kernel per stage) against the same
stages' ``run`` + ``report`` called in one process, per stage and in total, with their ratio.

    .venv/bin/python benchmarks/pipeline.py [region] [--jobs N]

Both paths call the same library functions (the notebooks are views of ``hmlib.stages.<name>``),
so the ratio is the cost of notebooks and kernels, not of a different computation.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def in_process(params_file: Path, order: list[str], out_dir: Path) -> dict[str, float]:
    """Seconds per stage for ``run`` + ``report`` in this process, in the plan's order."""
    import matplotlib.pyplot as plt

    from hmlib.pipeline.execute import execute_in_process

    seconds = {}
    for name in order:
        t0 = time.perf_counter()
        execute_in_process(name, params_file=params_file, output_dir=out_dir)
        plt.close("all")
        seconds[name] = time.perf_counter() - t0
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("region", nargs="?", default="jura")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    from hmlib.params import load_params
    from hmlib.runner import find_params, run_region

    params_file = find_params(args.region, params_dir=ROOT / "params")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run_region(str(params_file), reports_dir=Path(tmp) / "reports", render=False, force=True, quiet=True,
                         jobs=args.jobs)
        total_nb = time.perf_counter() - t0
        ran = [s.name for s in res.stages if s.status == "ok"]
        t0 = time.perf_counter()
        ip = in_process(params_file, ran, Path(tmp) / "inproc")
        total_ip = time.perf_counter() - t0
        print(f"region {args.region}: {len(ran)} stages run, jobs={args.jobs} (no rendering)")
        print(f"{'stage':<18}{'papermill s':>12}{'in process s':>14}{'ratio':>8}")
        for s in res.stages:
            if s.name in ip:
                print(f"{s.name:<18}{s.seconds:>12.1f}{ip[s.name]:>14.1f}{s.seconds / ip[s.name]:>8.2f}")
            else:
                print(f"{s.name:<18}{s.status:>12}")
        print(f"{'total (wall)':<18}{total_nb:>12.1f}{total_ip:>14.1f}{total_nb / total_ip:>8.2f}")
        from hmlib.report import render_report

        t0 = time.perf_counter()
        render_report(res.report_dir, params=load_params(params_file), manifest=res.manifest)
        print(f"rendering HTML + PDF: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
