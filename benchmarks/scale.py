"""How the pipeline scales with the survey size: seconds and peak memory per stage, and growth exponents.

Generates seeded surveys (``hmlib.synth.survey``) of 500, 2,000, 4,000 and 20,000 samples with grids
of 20k, 100k, 100k and 1M cells and runs every stage the Jura params enable (with the Jura options)
without rendering. Per stage it prints the wall seconds, the CPU seconds and the peak resident
memory, then the fitted growth exponent b of seconds ~ n^b (CPU seconds where measured, else wall).

Two modes:

- ``--mode pipeline`` (default): ``hmlib run`` as a user runs it (one notebook kernel per stage,
  ``--jobs`` stages at once). Wall seconds and peak memory per stage come from the stage's
  fragment; CPU seconds per stage are those of the stage's kernel process (sampled with psutil).
- ``--mode inprocess``: each stage's ``run`` and ``report`` in this process, one after the other
  (``hmlib.pipeline.execute.execute_in_process``), with CPU seconds from ``time.process_time`` and
  the stage's own peak memory sampled by a psutil thread. On a shared, loaded machine the CPU
  seconds are the comparable figure: wall time then measures the other work as much as hmlib.

    .venv/bin/python benchmarks/scale.py [--sizes 500 2000 4000 20000] [--jobs 2] [--mode pipeline]
                                         [--stages data_quality baselines ...] [--keep DIR]

Targets (issue: survey-scale runs): 4,000 samples / 100k cells within 10 minutes and 6 GB; 20,000 /
1M within 30 minutes, on a 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRIDS = {500: 20_000, 2000: 100_000, 4000: 100_000, 20000: 1_000_000}


class _Sampler(threading.Thread):
    """Samples RSS and CPU seconds of this process's descendants (or of this process) every ``every`` s."""

    def __init__(self, *, children: bool, every: float = 0.5):
        super().__init__(daemon=True)
        import psutil

        self.me, self.children, self.every = psutil.Process(), children, every
        self.peak_rss: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.cmd: dict[int, str] = {}
        self._halt = threading.Event()

    def procs(self):
        return self.me.children(recursive=True) if self.children else [self.me]

    def sample(self) -> None:
        import psutil

        for p in self.procs():
            try:
                with p.oneshot():
                    rss = p.memory_info().rss / 2**20
                    t = p.cpu_times()
                    self.cpu[p.pid] = t.user + t.system
                    self.peak_rss[p.pid] = max(self.peak_rss.get(p.pid, 0.0), rss)
                    if p.pid not in self.cmd:
                        self.cmd[p.pid] = " ".join(p.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_pipeline(params: Path, reports: Path, *, jobs: int, stages: list[str] | None) -> dict[str, dict]:
    """``hmlib run`` without rendering; per stage wall s and peak MB (its fragment); CPU s in total only.

    The notebook kernels are sampled with psutil; a kernel cannot be told apart by its command
    line, so their CPU seconds are summed into the total (use ``--mode inprocess`` per stage).
    """
    from hmlib.runner import run_region

    sampler = _Sampler(children=True)
    sampler.start()
    t0 = time.perf_counter()
    res = run_region(str(params), reports_dir=reports, render=False, force=True, quiet=False, jobs=jobs,
                     stages=stages)
    wall = time.perf_counter() - t0
    sampler.stop()
    kernels = {pid: (sampler.cpu[pid], sampler.peak_rss[pid]) for pid, cmd in sampler.cmd.items()
               if "ipykernel" in cmd}
    out = {s.name: {"wall": s.seconds, "cpu": float("nan"), "mb": s.peak_memory_mb or float("nan")}
           for s in res.stages if s.status == "ok"}
    out["_total"] = {"wall": wall, "cpu": sum(c for c, _ in kernels.values()),
                     "mb": max((m for _, m in kernels.values()), default=float("nan"))}
    return out


def run_inprocess(params: Path, out_dir: Path, *, stages: list[str] | None) -> dict[str, dict]:
    """Each stage's run and report in this process, in plan order; per stage wall s, CPU s, peak MB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hmlib.params import load_params
    from hmlib.pipeline.execute import execute_in_process
    from hmlib.pipeline.plan import build_plan

    os.environ.setdefault("HMLIB_PIPELINE", "1")  # progress to the console
    plan = build_plan(load_params(params), selected=stages)
    out: dict[str, dict] = {}
    t_all, c_all = time.perf_counter(), time.process_time()
    for name in plan.order:
        if plan.stages[name].skip:
            continue
        sampler = _Sampler(children=False, every=0.2)
        sampler.start()
        w0, c0 = time.perf_counter(), time.process_time()
        print(f"  running {name} ...", file=sys.stderr, flush=True)
        execute_in_process(name, params_file=params, output_dir=out_dir)
        plt.close("all")
        out[name] = {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}
        sampler.stop()
        sampler.sample()
        out[name]["mb"] = max(sampler.peak_rss.values(), default=float("nan"))
        print(f"  {name:<14} {out[name]['wall']:8.1f} s wall {out[name]['cpu']:8.1f} s CPU "
              f"{out[name]['mb']:8.0f} MB (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    out["_total"] = {"wall": time.perf_counter() - t_all, "cpu": time.process_time() - c_all,
                     "mb": max((v["mb"] for v in out.values()), default=float("nan"))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 4000, 20000])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--mode", choices=["pipeline", "inprocess"], default="pipeline")
    ap.add_argument("--stages", nargs="+", default=None, help="a subset of the Jura stages")
    ap.add_argument("--keep", type=Path, default=None, help="generate into (and keep) this folder")
    args = ap.parse_args()
    from hmlib.synth.survey import write_region

    table: dict[int, dict[str, dict]] = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            base = (args.keep / f"survey_{n}") if args.keep else Path(tmp)
            c0 = time.process_time()
            params = write_region(base, n_samples=n, n_grid=GRIDS.get(n, 100_000))
            gen = time.process_time() - c0
            if args.mode == "pipeline":
                table[n] = run_pipeline(params, base / "reports", jobs=args.jobs, stages=args.stages)
            else:
                table[n] = run_inprocess(params, base / "out", stages=args.stages)
            tot = table[n]["_total"]
            print(f"n = {n:>6}, grid = {GRIDS.get(n, 100_000):>9,}: {tot['wall']:8.1f} s wall, {tot['cpu']:8.1f} s CPU "
                  f"({args.mode}, jobs={args.jobs if args.mode == 'pipeline' else 1}), largest stage peak "
                  f"{tot['mb'] / 1024:.2f} GB, generator {gen:.1f} s CPU, load {os.getloadavg()[0]:.1f}",
                  flush=True)
    stages = [s for s in dict.fromkeys(s for t in table.values() for s in t) if s != "_total"] + ["_total"]
    head = "".join(f"{f'{n} wall':>11}{f'{n} CPU':>11}{f'{n} MB':>9}" for n in args.sizes)
    print(f"\n{'stage':<14}{head}{'exponent':>10}")
    for s in stages:
        row = f"{'total' if s == '_total' else s:<14}"
        secs = []
        for n in args.sizes:
            v = table[n].get(s, {"wall": np.nan, "cpu": np.nan, "mb": np.nan})
            secs.append(v["cpu"] if np.isfinite(v["cpu"]) else v["wall"])
            row += f"{v['wall']:>11.1f}{v['cpu']:>11.1f}{v['mb']:>9.0f}"
        ok = [(n, v) for n, v in zip(args.sizes, secs) if np.isfinite(v) and v > 0]
        b = np.polyfit(np.log([n for n, _ in ok]), np.log([v for _, v in ok]), 1)[0] if len(ok) >= 2 else np.nan
        print(row + f"{b:>10.2f}")
    print("\nexponent: slope of log seconds (CPU where measured, else wall) on log samples.")


if __name__ == "__main__":
    main()
