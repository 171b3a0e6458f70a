"""The report HTML in a real browser: headless Chromium, driven through the DevTools protocol.

The browser is the Debian ``chromium`` package (CI installs it in ``.ci/run``); it is driven over
``--remote-debugging-pipe`` (JSON messages on file descriptors 3 and 4), so no driver or
websocket package is needed. Checked against the browser's own behaviour: no console errors or
uncaught exceptions while the page loads and is used, clicking a header sorts the rows (compared
with Python's sort of the same cells), the figure tabs switch panels, the filter box hides rows.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get "
                                                          "install chromium, see .ci/run)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--remote-debugging-pipe"]


class Browser:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, profile: Path):
        import fcntl

        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # move the child's ends above fd 9 so that placing them on 3 and 4 cannot clobber one another
        hi_r, hi_w = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)
        to_child_r, from_child_w = hi_r, hi_w

        def fds():  # the protocol expects the pipe on fds 3 (browser reads) and 4 (browser writes)
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        # fds 3 and 4 are open in this process (at least the pipes above took the lowest free numbers),
        # so subprocess keeps them open in the child after preexec_fn placed the pipe ends there
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     preexec_fn=fds, pass_fds=(3, 4, to_child_r, from_child_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._id, self._buf, self.events = 0, b"", []

    def _read_message(self, timeout: float):
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], timeout)
            if not ready:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, *, session: str | None = None, timeout: float = 30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._read_message(max(deadline - time.time(), 0.1))
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30):
        for e in self.events:
            if e.get("method") == method:
                return e
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self._read_message(max(deadline - time.time(), 0.1))
            self.events.append(m)
            if m.get("method") == method:
                return m
        raise TimeoutError(method)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._w)
        os.close(self._r)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from test_report import build_report_dir

    from hmlib.report import render_report

    d = tmp_path_factory.mktemp("browser_report")
    params, manifest = build_report_dir(d)
    html, _ = render_report(d, params=params, manifest=manifest)
    b = Browser(tmp_path_factory.mktemp("chromium_profile"))
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            b.send(f"{domain}.enable", session=sid)
        b.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900, "deviceScaleFactor": 1,
                                                      "mobile": False}, session=sid)
        b.send("Page.navigate", {"url": html.as_uri()}, session=sid)
        b.wait_event("Page.loadEventFired")

        def js(expr: str):
            r = b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=sid)
            if "exceptionDetails" in r:
                raise AssertionError(f"script error: {r['exceptionDetails']}")
            return r["result"].get("value")

        yield b, sid, js, d
    finally:
        b.close()


def _errors(events) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(json.dumps(p.get("exceptionDetails", {}))[:300])
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(json.dumps(p.get("args", []))[:300])
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(p["entry"].get("text", "")[:300])
    return out


def test_report_loads_without_console_errors_and_the_script_ran(page):
    """Checked against the browser's console and exception events during load."""
    b, _, js, _ = page
    assert js("document.documentElement.classList.contains('hm-js')") is True
    assert js("document.title") == "Cadmium and lead in the demonstration valley"
    assert _errors(b.events) == []


def test_clicking_a_header_sorts_the_rows(page):
    """Checked against Python's sort of the same column values read from the page."""
    _, _, js, _ = page
    col = ("Array.from(document.querySelectorAll('#tbl-demo-long tbody tr'))"
           ".map(r => parseFloat(r.cells[1].textContent))")
    before = js(col)
    js("document.querySelectorAll('#tbl-demo-long thead th')[1].click()")
    asc = js(col)
    js("document.querySelectorAll('#tbl-demo-long thead th')[1].click()")
    desc = js(col)
    assert asc == sorted(before) and desc == sorted(before, reverse=True) and asc != desc
    assert js("document.querySelectorAll('#tbl-demo-long thead th')[1].getAttribute('aria-sort')") == "descending"


def test_filter_box_hides_rows(page):
    """Checked against the table's own cells: only rows containing the query stay visible."""
    _, _, js, _ = page
    n = js("(() => { const box = document.querySelector('#tbl-demo-long').closest('.table-scroll')"
           ".previousElementSibling;"
           " box.value = 'S03'; box.dispatchEvent(new Event('input'));"
           " return Array.from(document.querySelectorAll('#tbl-demo-long tbody tr'))"
           ".filter(r => r.style.display !== 'none').map(r => r.cells[0].textContent.trim()); })()")
    from hmlib.report import MAX_MAIN_TABLE_ROWS

    n_rows = MAX_MAIN_TABLE_ROWS + 15  # as test_report.build_report_dir writes the table
    expected = [f"S{i:03d}" for i in range(n_rows) if f"S{i:03d}".startswith("S03")]
    assert sorted(n) == expected  # any order: an earlier test may have sorted the table


def test_figure_tabs_switch_panels(page):
    """Checked against the construction: three map tabs (Cd, Pb, Zn); clicking Pb shows only the Pb figure."""
    b, _, js, _ = page
    labels = js("Array.from(document.querySelectorAll('.hm-tabbtn')).map(x => x.textContent)")
    assert labels == ["Cd", "Pb", "Zn"]
    visible = "Array.from(document.querySelectorAll('.hm-tab')).map(p => !p.hidden)"
    assert js(visible) == [True, False, False]
    js("document.querySelectorAll('.hm-tabbtn')[1].click()")
    assert js(visible) == [False, True, False]
    # a cross-reference link to a figure in a hidden tab opens that tab
    js("location.hash = '#fig-maps-zn'; window.dispatchEvent(new HashChangeEvent('hashchange'))")
    assert js(visible) == [False, False, True]
    assert _errors(b.events) == []


def test_cross_reference_links_resolve_and_screenshot(page):
    """Checked against the document: every in-page link has a target; a screenshot is written for review."""
    import base64

    b, sid, js, d = page
    missing = js("Array.from(document.querySelectorAll('a[href^=\"#\"]'))"
                 ".map(a => decodeURIComponent(a.getAttribute('href').slice(1)))"
                 ".filter(id => id && !document.getElementById(id))")
    assert missing == []
    assert js("getComputedStyle(document.getElementById('TOC')).position") == "fixed"  # floating at 1400 px
    assert js("document.querySelectorAll('#TOC ul ul').length") > 0  # subsections in the TOC
    # nothing, not even the 13-column table, makes the page scroll sideways
    assert js("document.documentElement.scrollWidth <= window.innerWidth") is True
    shot = b.send("Page.captureScreenshot", {"format": "png"}, session=sid)["data"]
    (d / "screenshot.png").write_bytes(base64.b64decode(shot))
    assert (d / "screenshot.png").stat().st_size > 5_000
