"""What a stage writes: tidy CSV tables, PNG figures and report fragments.

A stage's ``report`` records, in order, the pieces of its report section through a
:class:`StageOutputs`: markdown text (methods, formulas, citations ``[@key]``, cross-references
``@tbl-<name>`` / ``@fig-<name>``, see :meth:`StageOutputs.ref`), tables, figures, callouts, and
the stage's proposed key findings and limitations. :meth:`StageOutputs.finish` writes
``fragments/<stage>.json``, which :mod:`hmlib.report` assembles into the report. Full tables go
to ``tables/<name>.csv``; the report shows a display version (rounded, units in the headers, at
most ``max_rows`` rows). Items marked ``appendix=True`` go to the report's appendices (still
cross-referenced); items with the same ``group`` are shown together (tabs in the HTML).

Fragment keys: ``stage``, ``title``, ``skipped``, ``items`` (each with ``type`` markdown | table |
figure | callout, and ``appendix``, ``group``), ``findings`` (``text``, ``importance`` in [0, 1],
``refs``), ``limitations`` (sentences), ``conclusion`` (the stage's take-home, or null), ``tables``,
``figures``, ``files``, ``seconds``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["StageOutputs", "format_table", "FIGURE_DPI", "ref_id"]

FIGURE_DPI = 200


def _round_sig(x: float, sig: int) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–" if x is None or np.isnan(x) else ("∞" if x > 0 else "−∞")
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e6 or ax < 1e-3:  # scientific notation as printed, 2.36 × 10^−14^, never Python's 2.36e-14
        mant, exp = f"{x:.{max(sig - 1, 0)}e}".split("e")
        return f"{mant.replace('-', '−')} × 10^{str(int(exp)).replace('-', '−')}^"
    digits = max(sig - int(np.floor(np.log10(ax))) - 1, 0)
    return f"{x:,.{digits}f}".replace(",", "\u2009") if ax >= 1e4 else f"{x:.{digits}f}"


def format_table(df: pd.DataFrame, sig: int = 3) -> pd.DataFrame:
    """Strings for display: floats to ``sig`` significant figures, integers as is, NaN as a dash."""
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s):
            out[c] = s.map({True: "yes", False: "no"})
        elif pd.api.types.is_integer_dtype(s):
            out[c] = s.map(lambda v: f"{v:d}")
        elif pd.api.types.is_float_dtype(s):
            if s.dropna().apply(float.is_integer).all() and s.abs().max() < 1e6 and s.notna().any():
                out[c] = s.map(lambda v: "–" if pd.isna(v) else f"{int(v):d}")
            else:
                out[c] = s.map(lambda v: _round_sig(float(v), sig))
        else:
            out[c] = s.astype(object).where(s.notna(), "–").astype(str)
    return out


def ref_id(kind: str, name: str) -> str:
    """The Quarto cross-reference id of a table (``kind="tbl"``) or figure (``"fig"``) named ``name``."""
    if kind not in ("tbl", "fig"):
        raise ValueError(f"kind must be 'tbl' or 'fig', got {kind!r}")
    return f"{kind}-" + name.replace("_", "-")


@dataclass
class StageOutputs:
    """Collects one stage's tables, figures and text, in report order.

    Parameters
    ----------
    output_dir : the region's report folder (a staging folder during a run).
    stage : stage name (registry key).
    title : section title.
    """

    output_dir: Path
    stage: str
    title: str
    items: list[dict] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    _conclusion: str | None = None
    _t0: float = field(default_factory=time.time)

    def __post_init__(self):
        self.output_dir = Path(self.output_dir)
        for sub in ("tables", "figures", "fragments", "files"):
            (self.output_dir / sub).mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------
    def markdown(self, text: str, *, appendix: bool = False) -> None:
        """Add report prose (pandoc markdown: ``$math$``, citations ``[@key]``).

        ``appendix=True`` moves the text to the section's part of the appendix (for method details,
        formulas and diagnostics the main text summarises in a sentence); the main text then needs no
        reference to it, but should say where the details are (``@sec-appendix-<stage>``).
        """
        self.items.append({"type": "markdown", "text": text.strip("\n"), "appendix": appendix})

    def ref(self, name: str, kind: str = "tbl") -> str:
        """A cross-reference to table (``kind="tbl"``) or figure (``"fig"``) ``name`` for prose: ``@tbl-name``."""
        return "@" + ref_id(kind, name)

    def callout(self, text: str, *, kind: str = "note", title: str | None = None, appendix: bool = False) -> None:
        """A boxed note for the reader (``kind``: note | warning | important), e.g. a caveat on a result."""
        if kind not in ("note", "warning", "important"):
            raise ValueError(f"callout kind must be note, warning or important, got {kind!r}")
        self.items.append({"type": "callout", "kind": kind, "title": title, "text": text.strip("\n"),
                           "appendix": appendix})

    def finding(self, text: str, *, importance: float, refs: tuple[str, ...] | list[str] = (),
                topic: str | tuple | list | None = None) -> None:
        """Propose a key finding for the report's summary.

        Parameters
        ----------
        text : one sentence with the number and its uncertainty (CI, interval or probability).
        importance : 0 (minor) to 1 (the report's main message); the report picks the strongest.
        refs : names of this stage's tables/figures it comes from, as cross-references
            (``"tbl-name"`` or ``"fig-name"``; see :func:`ref_id`).
        topic : the quantity the finding states, as a key other stages can build the same way, e.g.
            ``("exceedance share", "soil", "Cd", "guide")``. Of the findings of one topic, the report
            shows only the strongest (:func:`hmlib.report.select_findings`), so two stages that state
            the same number never both appear among the key findings. ``None``: a topic of its own.
        """
        if not 0 <= importance <= 1:
            raise ValueError(f"importance must be in [0, 1], got {importance}")
        rec = {"text": " ".join(text.split()), "importance": float(importance), "refs": list(refs)}
        if topic is not None:
            rec["topic"] = [str(k) for k in ((topic,) if isinstance(topic, str) else topic)]
        self.findings.append(rec)

    def conclusion(self, text: str) -> None:
        """The stage's take-home in one or two sentences, for the report's Conclusions (and, for the
        strongest stages, the overall conclusion after the key findings). Say what the results mean for
        the question, with the main number and its uncertainty; a second call replaces the first."""
        self._conclusion = " ".join(text.split())

    def limitation(self, text: str) -> None:
        """A limitation of this stage's results, listed in the report's Limitations section."""
        self.limitations.append(" ".join(text.split()))

    def table(self, name: str, df: pd.DataFrame, caption: str, *, display: pd.DataFrame | None = None,
              max_rows: int = 40, sig: int = 3, in_report: bool = True, appendix: bool = False,
              group: str | None = None) -> Path:
        """Write ``tables/<name>.csv`` (the full tidy table) and show ``display`` (or ``df``) in the report.

        ``display`` should be the reader's version: units in headers, only the useful columns.
        Tables longer than ``max_rows`` are cut in the report with a note naming the CSV. A table
        other stages read (:mod:`hmlib.tables`) is checked against its schema first.
        """
        from .tables import validate_table

        if not name.replace("_", "").isalnum():
            raise ValueError(f"table name must be letters, digits and underscores, got {name!r}")
        df = validate_table(name, df, stage=self.stage, action="written")
        path = self.output_dir / "tables" / f"{name}.csv"
        df.to_csv(path, index=False, float_format="%.6g")
        self.tables.append(f"tables/{name}.csv")
        if in_report:
            disp = (df if display is None else display)
            n = len(disp)
            shown = format_table(disp.head(max_rows), sig=sig)
            note = (f"Showing {max_rows} of {n} rows; the full table is `tables/{name}.csv`."
                    if n > max_rows else f"Full table: `tables/{name}.csv`.")
            self.items.append({"type": "table", "name": name, "caption": caption, "csv": f"tables/{name}.csv",
                               "markdown": shown.to_markdown(index=False, disable_numparse=True), "note": note,
                               "n_rows": n, "appendix": appendix, "group": group})
        return path

    def figure(self, name: str, fig, caption: str, *, width: str = "100%", appendix: bool = False,
               group: str | None = None) -> Path:
        """Save ``fig`` (matplotlib) as ``figures/<name>.png`` at :data:`FIGURE_DPI` and add it to the report."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"figure name must be letters, digits and underscores, got {name!r}")
        path = self.output_dir / "figures" / f"{name}.png"
        _reader_units(fig)
        fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": "hmlib"})
        self.figures.append(f"figures/{name}.png")
        self.items.append({"type": "figure", "name": name, "caption": caption, "path": f"figures/{name}.png",
                           "width": width, "appendix": appendix, "group": group})
        return path

    def file(self, relpath: str) -> Path:
        """Path for an extra output file (GeoTIFF, GeoPackage...) under ``files/``; recorded for reuse."""
        path = self.output_dir / "files" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files.append(f"files/{relpath}")
        return path

    def finish(self, *, skipped: str | None = None) -> Path:
        """Write ``fragments/<stage>.json``; call once at the end of the notebook."""
        import resource

        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
        frag = {"stage": self.stage, "title": self.title, "skipped": skipped, "items": self.items,
                "findings": self.findings, "limitations": self.limitations, "conclusion": self._conclusion,
                "tables": self.tables, "figures": self.figures, "files": self.files,
                "seconds": round(time.time() - self._t0, 2), "peak_memory_mb": round(peak_mb, 1)}
        path = self.output_dir / "fragments" / f"{self.stage}.json"
        path.write_text(json.dumps(frag, indent=1, default=str), encoding="utf-8")
        return path


def _reader_units(fig) -> None:
    """Write the unit code ``ug/L`` as ``µg/L`` in every text of ``fig`` (titles, labels, tick labels, legends)."""
    from matplotlib.text import Text

    for t in fig.findobj(Text):
        txt = t.get_text()
        if "ug/L" in txt:
            t.set_text(txt.replace("ug/L", "µg/L"))
