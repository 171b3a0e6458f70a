"""End-to-end: a small region through papermill and the renderer; reuse; atomic publish on failure."""
from __future__ import annotations

import hashlib
import json
import re
import shutil

import nbformat
import pandas as pd
import pytest

import hmlib.runner as runner
from hmlib.errors import StageError
from hmlib.runner import run_region

pytestmark = pytest.mark.slow


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from conftest import make_mini_project

    base = tmp_path_factory.mktemp("proj")
    params = make_mini_project(base)
    res = run_region(str(params), reports_dir=base / "reports", quiet=True)
    return base, params, res


def test_tables_have_the_documented_columns_and_values(built):
    base, _, res = built
    rep = res.report_dir
    summ = pd.read_csv(rep / "tables" / "summary_statistics.csv")
    assert list(summ.columns) == ["medium", "metal", "statistic", "value", "unit"]
    s = summ.set_index(["metal", "statistic"])["value"]
    raw = pd.read_csv(base / "data" / "mini" / "samples.csv")
    pb = raw["Pb"].astype(float)
    # independent computation with pandas
    assert s[("Pb", "n")] == 60
    assert s[("Pb", "mean")] == pytest.approx(pb.mean(), rel=1e-6)
    assert s[("Pb", "median")] == pytest.approx(pb.median(), rel=1e-6)
    assert s[("Pb", "sd")] == pytest.approx(pb.std(ddof=1), rel=1e-6)
    assert s[("Cd", "n_censored")] == 2
    exc = pd.read_csv(rep / "tables" / "exceedance.csv")
    assert {"medium", "metal", "reference_set", "threshold_name", "threshold", "n_exceeding",
            "share_exceeding"} <= set(exc.columns)
    guide_pb = exc[(exc.metal == "Pb") & (exc.threshold_name == "guide")].iloc[0]
    assert guide_pb.threshold == 50 and guide_pb.n_exceeding == int((pb > 50).sum())


def test_figures_notebooks_and_manifest(built):
    base, params, res = built
    rep = res.report_dir
    assert len(list((rep / "figures").glob("*.png"))) >= 4
    nb = nbformat.read(rep / "notebooks" / "00_data_quality.ipynb", as_version=4)
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # executed copy has outputs
    man = json.loads((rep / "manifest.json").read_text())
    assert man["inputs"]["samples"]["sha256"] == _sha(base / "data" / "mini" / "samples.csv")
    assert man["inputs"]["grid"]["sha256"] == _sha(base / "data" / "mini" / "grid.csv")
    assert man["stages"][0]["name"] == "data_quality" and man["stages"][0]["status"] == "ok"
    assert "pandas" in man["packages"] and "papermill" in man["packages"]
    assert len(man["params_sha256"]) == 64


def test_html_is_self_contained_and_numbered(built):
    _, _, res = built
    html = (res.report_dir / "report.html").read_text(encoding="utf-8")
    assert "Mini test region" in html
    assert not re.search(r"<script[^>]+src=[\"']https?://", html)
    assert not re.search(r"<link[^>]+href=[\"']https?://", html)
    assert "@import" not in html and "fonts.googleapis" not in html
    assert re.search(r"<img[^>]+src=\"data:image/png;base64,", html)
    assert 'id="TOC"' in html
    assert "Table 1." in html and "Figure 1." in html
    assert "Appendix: run manifest" in html
    assert "Shapiro" in html and "References" in html  # citations resolved by citeproc


def test_pdf_is_rendered(built):
    _, _, res = built
    pdf = (res.report_dir / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 50_000
    qmd = (res.report_dir / "report.qmd").read_text()
    assert "{#tbl-summary-statistics}" in qmd and "{#fig-dq-maps-soil" in qmd  # Quarto cross-ref ids


def test_unchanged_stages_are_reused(built):
    base, params, res = built
    again = run_region(str(params), reports_dir=base / "reports", quiet=True, render=False)
    assert [s.status for s in again.stages] == ["reused"]
    assert (again.report_dir / "tables" / "summary_statistics.csv").is_file()
    forced = run_region(str(params), reports_dir=base / "reports", quiet=True, render=False, force=True)
    assert [s.status for s in forced.stages] == ["ok"]


def test_failing_stage_keeps_previous_report(built, tmp_path, monkeypatch):
    base, params, res = built
    rep = res.report_dir
    before = {p.relative_to(rep): _sha(p) for p in rep.rglob("*") if p.is_file()}
    nbdir = tmp_path / "notebooks"
    shutil.copytree(runner.notebooks_dir(), nbdir)
    nb = nbformat.read(nbdir / "00_data_quality.ipynb", as_version=4)
    nb.cells.insert(4, nbformat.v4.new_code_cell("raise RuntimeError('injected failure for the test')"))
    nbformat.write(nb, nbdir / "00_data_quality.ipynb")
    monkeypatch.setattr(runner, "notebooks_dir", lambda: nbdir)
    with pytest.raises(StageError) as e:
        run_region(str(params), reports_dir=base / "reports", quiet=True, force=True)
    msg = str(e.value)
    assert "data_quality" in msg and "RuntimeError" in msg and "injected failure" in msg and "code cell 5 of the executed notebook" in msg
    assert "raise RuntimeError" in msg  # the failing cell's first line
    after = {p.relative_to(rep): _sha(p) for p in rep.rglob("*") if p.is_file() and "_failed" not in p.parts}
    assert after == before, "the previous report changed after a failed run"
    assert (rep / "_failed" / "00_data_quality.ipynb").is_file()
    assert not list((base / "reports").glob(".staging-*"))


def test_stage_kernels_are_shut_down_without_an_interrupt(monkeypatch):
    """jupyter_client sends SIGINT before every shutdown (checked here with its own manager), which
    ipykernel logs as "KeyboardInterrupt caught in kernel" when the signal lands inside a handler;
    the manager ``hmlib run`` gives papermill sends no signal at all when it shuts a kernel down.
    Checked against the signals jupyter_client itself records sending (its ``_async_signal_kernel``)."""
    import asyncio

    from jupyter_client import AsyncKernelManager
    from jupyter_client.manager import KernelManager

    from hmlib.pipeline.execute import KERNEL_ARGS, kernel_manager_class

    sent = []
    original = KernelManager._async_signal_kernel

    async def record(self, signum):
        sent.append((type(self).__name__, int(signum)))
        await original(self, signum)

    monkeypatch.setattr(KernelManager, "_async_signal_kernel", record)

    async def start_and_shut_down(cls):
        km = cls(kernel_name="python3")
        await km.start_kernel(extra_arguments=KERNEL_ARGS)
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=120)
        kc.stop_channels()
        await km.shutdown_kernel()

    import signal

    asyncio.run(start_and_shut_down(AsyncKernelManager))
    assert ("AsyncKernelManager", int(signal.SIGINT)) in sent, "jupyter_client no longer interrupts at shutdown"
    sent.clear()
    asyncio.run(start_and_shut_down(kernel_manager_class()))
    assert sent == []
