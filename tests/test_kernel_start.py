"""A stage whose kernel stops before running any cell is started again; a stage that ran a cell never is."""
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from hmlib.errors import StageError
from hmlib.pipeline import execute


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("y = x + 1")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _fake_papermill(outcomes):
    """papermill.execute_notebook stand-in: per call, 'dead' (the kernel dies before replying, no cell started, as
    jupyter_client raises it), 'cell' (the second cell fails after the first ran) or 'ok'."""
    calls = []

    def run(input_path, output_path, **kw):
        calls.append(kw)
        what = outcomes[len(calls) - 1]
        nb = nbformat.read(input_path, as_version=4)
        for c in nb.cells:
            c.metadata["papermill"] = {"start_time": None, "status": "completed", "exception": None}
        if what == "dead":
            nbformat.write(nb, output_path)
            raise RuntimeError("Kernel died before replying to kernel_info")
        nb.cells[0].execution_count = 1
        nb.cells[0].metadata["papermill"]["start_time"] = "2026-12-05T00:00:00"
        if what == "cell":
            nb.cells[1].execution_count = 2
            nb.cells[1].metadata["papermill"]["start_time"] = "2026-12-05T00:00:01"
            nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="bad value",
                                                          traceback=[])]
            nbformat.write(nb, output_path)
            raise RuntimeError("cell failed")
        nbformat.write(nb, output_path)

    return run, calls


def _run(tmp_path):
    nb = _notebook(tmp_path / "00_stage.ipynb")
    execute.execute_notebook(SimpleNamespace(name="stage"), notebook=nb, executed=tmp_path / "out.ipynb",
                             parameters={}, cwd=tmp_path, failed_dir=tmp_path / "_failed")


def test_a_kernel_that_dies_before_its_first_cell_is_started_again(tmp_path, monkeypatch):
    """Checked against papermill's notebook format: a kernel that dies twice before replying (the port race of
    concurrent kernel starts) leaves no cell with a start time; the third start runs the notebook, and the stage
    succeeds."""
    import papermill

    run, calls = _fake_papermill(["dead", "dead", "ok"])
    monkeypatch.setattr(papermill, "execute_notebook", run)
    _run(tmp_path)
    assert len(calls) == 3 and not (tmp_path / "_failed").exists()


def test_a_stage_that_failed_in_a_cell_is_not_rerun(tmp_path, monkeypatch):
    """Checked against the failing cell written in the executed notebook: a cell ran, so the stage is not started
    again, and the error names that cell and its error."""
    import papermill

    run, calls = _fake_papermill(["cell", "ok"])
    monkeypatch.setattr(papermill, "execute_notebook", run)
    with pytest.raises(StageError) as err:
        _run(tmp_path)
    assert len(calls) == 1
    assert "code cell 2 of the executed notebook (`y = x + 1`)" in str(err.value)
    assert "ValueError: bad value" in str(err.value)


def test_a_kernel_that_never_starts_is_reported_with_its_cause(tmp_path):
    """Checked against papermill itself (no stand-in): with a kernel that does not exist no cell starts, the stage
    is tried KERNEL_START_ATTEMPTS times, and the error says that the kernel stopped before the first cell and
    gives papermill's cause instead of an unknown error."""
    nb = _notebook(tmp_path / "00_stage.ipynb")
    with pytest.raises(StageError) as err:
        execute.execute_notebook(SimpleNamespace(name="stage"), notebook=nb, executed=tmp_path / "out.ipynb",
                                 parameters={}, cwd=tmp_path, failed_dir=tmp_path / "_failed",
                                 kernel_name="no-such-kernel")
    msg = str(err.value)
    assert f"its kernel before the first cell ({execute.KERNEL_START_ATTEMPTS} attempts)" in msg
    assert "NoSuchKernel" in msg and "unknown error" not in msg
    assert not execute.ran_a_cell(tmp_path / "out.ipynb")
