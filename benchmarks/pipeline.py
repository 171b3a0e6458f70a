"""Pipeline overhead benchmark.

Prints wall seconds per stage for a region (default jura) run through `hmlib run` (papermill,
one kernel per stage, no rendering), then the same hmlib calls made in one process for the
data-quality stage, and the ratio of the two (the overhead the notebooks add).

    .venv/bin/python benchmarks/pipeline.py [region]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def in_process_data_quality(params_file: Path, out_dir: Path) -> float:
    """The data-quality stage's hmlib calls without papermill (mirrors notebooks/00_data_quality.ipynb)."""
    import pandas as pd

    import hmlib
    from hmlib import descriptive as dq, plots

    t0 = time.perf_counter()
    ctx = hmlib.open_stage("data_quality", params_file=str(params_file), output_dir=str(out_dir), options={})
    data, refs = ctx.data, ctx.params.references
    ctx.out.table("data_overview", dq.data_overview(data), "overview")
    summary = pd.concat([dq.summary_statistics(data.wide(m), censored=data.wide(m, values="censored").astype(bool),
                                               medium=m, unit=data.unit(m)) for m in data.media])
    ctx.out.table("summary_statistics", summary, "summary", display=dq.summary_display(summary))
    pd.concat([dq.normality_tests(data.wide(m), medium=m) for m in data.media])
    exc = pd.concat([dq.exceedance(data.wide(m), background_set=refs.background, guideline_set=refs.guideline,
                                   medium=m, unit=data.unit(m)) for m in data.media])
    ctx.out.table("exceedance", exc, "exceedance")
    for m in data.media:
        w = data.wide(m)
        s = data.sites(m)
        ctx.out.figure(f"h_{m}", plots.histograms(w, unit=data.unit(m)), "h")
        ctx.out.figure(f"m_{m}", plots.sample_maps(w, s["x"], s["y"], unit=data.unit(m)), "m")
        matplotlib.pyplot.close("all")
    ctx.out.finish()
    return time.perf_counter() - t0


def main(region: str = "jura") -> None:
    from hmlib.runner import find_params, run_region

    params = find_params(region, params_dir=ROOT / "params")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run_region(str(params), reports_dir=Path(tmp) / "reports", render=False, force=True, quiet=True)
        total = time.perf_counter() - t0
        print(f"region {region}: {len(res.stages)} stage(s), pipeline wall time {total:.1f} s (no rendering)")
        print(f"{'stage':<18}{'status':<10}{'seconds':>9}")
        for s in res.stages:
            print(f"{s.name:<18}{s.status:<10}{s.seconds:>9.1f}")
        dq_nb = next(s.seconds for s in res.stages if s.name == "data_quality")
        t_ip = in_process_data_quality(params, Path(tmp) / "inproc")
        print(f"data_quality in one process: {t_ip:.1f} s; through papermill: {dq_nb:.1f} s; "
              f"ratio {dq_nb / t_ip:.2f} (notebook overhead {dq_nb - t_ip:.1f} s)")
        t0 = time.perf_counter()
        from hmlib.report import render_report
        from hmlib.params import load_params

        render_report(res.report_dir, params=load_params(params), manifest=res.manifest)
        print(f"rendering HTML + PDF: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:2])
