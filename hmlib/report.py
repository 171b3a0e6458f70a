"""Assemble a region's report from stage fragments and render it to HTML and PDF.

The report source is a Quarto document, ``report.qmd``, written next to the tables and figures:
figures as ``![caption](figures/x.png){#fig-x}``, tables as pipe tables with a ``{#tbl-x}``
caption, citations ``[@key]`` resolved against ``references.bib``. With ``quarto`` on PATH it is
rendered by ``quarto render``; otherwise by the engines Quarto itself uses: pandoc (from
``pypandoc-binary``) to a self-contained HTML (figures embedded, MathML, no external scripts or
fonts) and pandoc to Typst, compiled to PDF by the ``typst`` package.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import date
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import HmlibError
from .stages import stage_names

__all__ = ["build_qmd", "render_report", "render_html", "render_pdf", "pandoc_path", "assets_dir"]


def assets_dir() -> Path:
    return Path(str(resources.files("hmlib") / "report_assets"))


def pandoc_path() -> str:
    """Path of the pandoc binary shipped with pypandoc-binary (or on PATH)."""
    try:
        import pypandoc

        return pypandoc.get_pandoc_path()
    except (ImportError, OSError):
        p = shutil.which("pandoc")
        if not p:
            raise HmlibError("pandoc not found: install pypandoc-binary (pip install pypandoc-binary)") from None
        return p


def _yaml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _fragments(report_dir: Path) -> list[dict]:
    frags = {}
    for f in (report_dir / "fragments").glob("*.json"):
        d = json.loads(f.read_text(encoding="utf-8"))
        frags[d["stage"]] = d
    order = stage_names()
    return [frags[n] for n in order if n in frags] + [v for k, v in frags.items() if k not in order]


def _caption(text: str) -> str:
    return " ".join(text.split())


def _stage_markdown(frag: dict) -> str:
    out = [f"# {frag['title']} {{#sec-{frag['stage'].replace('_', '-')}}}", ""]
    if frag.get("skipped"):
        out += ["::: {.skipped}", f"This stage was not run for this region: {frag['skipped']}.", ":::", ""]
    for it in frag["items"]:
        if it["type"] == "markdown":
            if frag.get("skipped") and it["text"].lstrip("*").startswith("This stage was not run"):
                continue
            out += [it["text"], ""]
        elif it["type"] == "table":
            tid = "tbl-" + it["name"].replace("_", "-")
            out += [it["markdown"], "", f": {_caption(it['caption'])} {{#{tid}}}", ""]
            if it.get("note"):
                out += ["::: {.table-note}", it["note"], ":::", ""]
        elif it["type"] == "figure":
            fid = "fig-" + it["name"].replace("_", "-")
            out += [f"![{_caption(it['caption'])}]({it['path']}){{#{fid} width=\"{it.get('width', '100%')}\"}}", ""]
    return "\n".join(out)


def _manifest_markdown(manifest: dict) -> str:
    lines = ["# Appendix: run manifest {#sec-manifest .unnumbered}", "",
             "Every number in this report can be traced to the inputs and software listed here; the "
             "machine-readable version is `manifest.json` next to this report, and each stage's executed "
             "notebook is under `notebooks/`.", ""]
    rows = [("Region", f"`{manifest['region']}`"), ("Created (UTC)", manifest["created"]),
            ("hmlib version", manifest["hmlib_version"]), ("Git commit", f"`{manifest.get('git_commit') or 'n/a'}`"),
            ("Parameters file", f"`{manifest['params_file']}`"),
            ("Parameters SHA-256", f"`{manifest['params_sha256'][:16]}…`"),
            ("Library SHA-256", f"`{manifest['library_sha256'][:16]}…`"), ("Random seed", str(manifest["seed"])),
            ("Platform", manifest.get("platform", ""))]
    lines += ["| Item | Value |", "|:--|:--|", *[f"| {a} | {b} |" for a, b in rows], "",
              ": Run identification {#tbl-manifest-run}", ""]
    lines += ["| Input | File | SHA-256 |", "|:--|:--|:--|",
              *[f"| {k} | `{v['path']}` | `{v['sha256'][:16]}…` |" for k, v in manifest["inputs"].items()], "",
              ": Input files and their hashes {#tbl-manifest-inputs}", ""]
    lines += ["| Stage | Notebook | Status | Seconds | Note |", "|:--|:--|:--|--:|:--|",
              *[f"| {s['name']} | `{s['notebook']}` | {s['status']} | {s['seconds']:.1f} | {s.get('reason') or ''} |"
                for s in manifest["stages"]], "", ": Stages of this run {#tbl-manifest-stages}", ""]
    pk = manifest.get("packages", {})
    lines += ["| Package | Version |", "|:--|:--|", *[f"| {k} | {v} |" for k, v in pk.items()], "",
              ": Software versions {#tbl-manifest-packages}", ""]
    return "\n".join(lines)


def _summary_markdown(params, manifest: dict, frags: list[dict]) -> str:
    lines = ["# Summary {#sec-summary .unnumbered}", ""]
    if params.region.data_citation:
        lines += [f"Data: {params.region.data_citation}.", ""]
    ran = [s for s in manifest["stages"] if s["status"] in ("ok", "reused", "kept")]
    skipped = [s for s in manifest["stages"] if s["status"] == "skipped"]
    lines += [f"This report was generated by hmlib {__version__} from `{manifest['params_file']}`; "
              f"{len(ran)} analysis stage(s) ran" + (f" and {len(skipped)} were skipped for lack of the data they need"
                                                     if skipped else "") + ". "
              "Tables are rounded for reading; the full-precision tables are the CSV files named under each table.", ""]
    lines += ["| Section | Stage | Status |", "|:--|:--|:--|"]
    for f in frags:
        st = next((s for s in manifest["stages"] if s["name"] == f["stage"]), {})
        status = st.get("status", "")
        if status == "skipped":
            status = f"skipped: {st.get('reason')}"
        lines.append(f"| [{f['title']}](#sec-{f['stage'].replace('_', '-')}) | `{f['stage']}` | {status} |")
    lines += ["", ": Analysis stages {#tbl-stages}", ""]
    return "\n".join(lines)


def _bibliography(report_dir: Path) -> Path:
    out = report_dir / "references.bib"
    parts = []
    for f in sorted((Path(str(resources.files("hmlib") / "data" / "bib"))).glob("*.bib")):
        parts.append(f"% --- {f.name}\n" + f.read_text(encoding="utf-8"))
    text = "\n".join(parts)
    # drop duplicate keys (the first definition wins) so that pandoc does not warn
    seen, chunks = set(), []
    for chunk in re.split(r"(?=^@)", text, flags=re.M):
        m = re.match(r"@\w+\{([^,]+),", chunk)
        if m:
            if m.group(1).strip() in seen:
                continue
            seen.add(m.group(1).strip())
        chunks.append(chunk)
    out.write_text("".join(chunks), encoding="utf-8")
    return out


def _data_summary(report_dir: Path, manifest: dict) -> str:
    """One sentence on the data (from the data-quality stage's overview table) and the stages run."""
    import pandas as pd

    parts = []
    ov = report_dir / "tables" / "data_overview.csv"
    if ov.is_file():
        overview = pd.read_csv(ov)
        for r in overview.itertuples():
            parts.append(f"{r.n_samples} {r.medium} samples ({r.metals}; {r.unit}"
                         + (f"; {r.n_censored} non-detects" if r.n_censored else "") + ")")
        grid = int(overview["grid_cells"].max())
        if grid:
            parts.append(f"a prediction grid of {grid} cells")
    ran = [s["name"] for s in manifest["stages"] if s["status"] in ("ok", "reused", "kept")]
    data = ("Data: " + ", ".join(parts) + ". ") if parts else ""
    return data + f"Analysis stages: {', '.join(ran) if ran else 'none'}."


def build_qmd(report_dir: Path, *, params, manifest: dict) -> Path:
    """Write ``report.qmd`` (Quarto markdown) and ``references.bib`` into ``report_dir``."""
    report_dir = Path(report_dir)
    frags = _fragments(report_dir)
    _bibliography(report_dir)
    abstract = (f"{params.region.description.strip()} " if params.region.description else "") + \
        _data_summary(report_dir, manifest)
    front = [
        "---",
        f"title: {_yaml_str(params.region.title)}",
        f"subtitle: {_yaml_str('Heavy metal(loid) assessment report')}",
        f"date: {_yaml_str(date.today().isoformat())}",
        f"author: {_yaml_str(f'hmlib {__version__}')}",
        f"region-id: {_yaml_str(params.region.id)}",
        f"abstract: {_yaml_str(abstract)}",
        "bibliography: references.bib",
        "link-citations: true",
        "lang: en",
        "format:",
        "  html:",
        "    embed-resources: true",
        "    toc: true",
        "    toc-depth: 2",
        "    number-sections: true",
        "    html-math-method: mathml",
        "  typst:",
        "    toc: true",
        "    section-numbering: \"1.1\"",
        "    papersize: a4",
        "---",
        "",
    ]
    body = [_summary_markdown(params, manifest, frags)]
    body += [_stage_markdown(f) for f in frags]
    body += ["# References {.unnumbered}", "", "::: {#refs}", ":::", "", _manifest_markdown(manifest)]
    path = report_dir / "report.qmd"
    path.write_text("\n".join(front) + "\n".join(body) + "\n", encoding="utf-8")
    return path


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise HmlibError(f"{what} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")


def render_html(qmd: Path) -> Path:
    """Self-contained HTML via pandoc: embedded figures and CSS, MathML, numbered captions."""
    qmd = Path(qmd)
    out = qmd.with_suffix(".html")
    a = assets_dir()
    _run([pandoc_path(), qmd.name, "--from", "markdown", "--to", "html5", "--standalone", "--embed-resources",
          "--toc", "--toc-depth=2", "--number-sections", "--mathml", "--citeproc",
          f"--css={a / 'report.css'}", f"--lua-filter={a / 'number-captions.lua'}",
          f"--metadata=pagetitle:{qmd.parent.name}", "-o", out.name], qmd.parent, "pandoc (HTML)")
    return out


def render_pdf(qmd: Path) -> Path:
    """PDF via pandoc (markdown to Typst, hmlib's template) and the typst compiler."""
    import typst

    qmd = Path(qmd)
    typ = qmd.with_suffix(".typ")
    _run([pandoc_path(), qmd.name, "--from", "markdown", "--to", "typst", "--standalone", "--citeproc",
          f"--template={assets_dir() / 'hmlib.typst'}", "-o", typ.name], qmd.parent, "pandoc (Typst)")
    out = qmd.with_suffix(".pdf")
    try:
        typst.compile(str(typ), output=str(out), root=str(qmd.parent))
    except Exception as e:  # typst raises its own error types
        raise HmlibError(f"typst compile failed: {e}") from None
    return out


def render_report(report_dir: Path, *, params, manifest: dict) -> tuple[Path, Path]:
    """Write report.qmd and render report.html and report.pdf in ``report_dir``."""
    qmd = build_qmd(Path(report_dir), params=params, manifest=manifest)
    quarto = shutil.which("quarto")
    if quarto:
        _run([quarto, "render", qmd.name, "--to", "html"], qmd.parent, "quarto render (HTML)")
        _run([quarto, "render", qmd.name, "--to", "typst"], qmd.parent, "quarto render (PDF)")
        return qmd.with_suffix(".html"), qmd.with_suffix(".pdf")
    return render_html(qmd), render_pdf(qmd)
