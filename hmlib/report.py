"""Assemble a region's report from stage fragments and render it to HTML and PDF.

Assembly (:func:`build_qmd`) writes ``report.qmd``, a Quarto/pandoc markdown document, next to the
tables and figures:

1. title block (report title, subtitle, date, abstract: region description, the data and its
   source cited from the bibliography);
2. **Key findings**: 5-8 numbered findings picked from what the stages propose (see
   :func:`select_findings` for the rule) and a one-paragraph overall conclusion;
3. one section per stage that ran (stages that did not run get no section: they are listed in
   the table "Analyses not run and why");
4. **Conclusions and limitations**: the stages' conclusions, their limitations, model skill
   caveats, and the table of analyses not run;
5. references, then appendices: supplementary tables and figures (items a stage marked
   ``appendix``, and tables too long for the main text), then the run manifest.

Fragment keys understood (``fragments/<stage>.json``, written by :class:`hmlib.outputs.StageOutputs`):

``findings``
    list of ``{"text", "importance", "refs"}``; ``importance`` a number (higher is stronger) or
    ``"high"``/``"medium"``/``"low"``; ``refs`` ids (``"tbl-x"``, ``"fig-x"``) or table/figure names.
``limitations``
    list of sentences for the Limitations section.
``conclusion``
    optional one-paragraph take-home of the stage for the Conclusions section.
items
    ``markdown`` (``text``), ``table`` (``markdown``, ``caption``, ``csv``, ``note``), ``figure``
    (``path``, ``caption``, ``width``), ``callout`` (``text``, optional ``kind``: note, warning,
    important, tip, caution; optional ``title``). Any item may carry ``"appendix": true`` (moved to
    the supplementary appendix, still numbered and cross-referenced); figures may carry ``"group"``
    (consecutive figures of one group become tabs in the HTML, e.g. one tab per metal) and ``"tab"``
    (the tab's label; default: the part of the name after the group).

Cross-references: every table and figure has an id (``#tbl-<name>``, ``#fig-<name>``, underscores
as hyphens) and stage prose refers to them as ``@tbl-...``/``@fig-...``/``@sec-<stage>``. Quarto
resolves these itself; without Quarto, the Lua filter ``report_assets/crossref.lua`` turns them
into numbered links ("Table 3") in HTML and native references in Typst.

Rendering (:func:`render_report`): with ``quarto`` on PATH, ``quarto render``; otherwise pandoc
(from ``pypandoc-binary``) to one self-contained offline HTML (figures embedded, MathML, a small
inline script for sortable/filterable tables and figure tabs, floating table of contents) and
pandoc to Typst, compiled to PDF by the ``typst`` package. The format options live in
:data:`FORMAT` only.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from datetime import date
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import HmlibError
from .stages import stage_names

__all__ = ["build_qmd", "render_report", "render_html", "render_pdf", "pandoc_path", "assets_dir",
           "select_findings", "states_uncertainty", "data_source_keys", "unreferenced", "page_counts", "jargon", "FORMAT", "MAX_FINDINGS",
           "MIN_FINDINGS", "MAX_MAIN_TABLE_ROWS", "MAIN_TEXT_PAGES_TARGET"]

#: The one place for the report's format options (front matter for Quarto, pandoc arguments otherwise).
FORMAT = {
    "toc_depth": 3,
    "html_math": "mathml",
    "papersize": "a4",
    "section_numbering": "1.1",
}
#: Key findings shown at the top of the report.
MAX_FINDINGS = 8
MIN_FINDINGS = 5
#: Tables with more display rows than this move to the supplementary appendix.
MAX_MAIN_TABLE_ROWS = 20
#: Main-text pages (Key findings to the end of Conclusions and limitations) a report should not exceed.
MAIN_TEXT_PAGES_TARGET = 30
#: Figures wider than this many pixels are downscaled for the HTML only (the PDF keeps full resolution).
HTML_FIGURE_MAX_PX = 1500

_IMPORTANCE_WORDS = {"high": 3.0, "medium": 2.0, "low": 1.0}
_RAN = ("ok", "reused", "kept")


def assets_dir() -> Path:
    return Path(str(resources.files("hmlib") / "report_assets"))


def _bib_dir() -> Path:
    return Path(str(resources.files("hmlib") / "data" / "bib"))


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


def _slug(name: str) -> str:
    return name.replace("_", "-")


def _fragments(report_dir: Path) -> list[dict]:
    frags = {}
    for f in (report_dir / "fragments").glob("*.json"):
        d = json.loads(f.read_text(encoding="utf-8"))
        for it in d.get("items", []):
            it["_dir"] = report_dir
        frags[d["stage"]] = d
    order = stage_names()
    return [frags[n] for n in order if n in frags] + [v for k, v in frags.items() if k not in order]


def _caption(text: str) -> str:
    return " ".join(str(text).split())


def _item_id(it: dict) -> str | None:
    if it["type"] == "table":
        return "tbl-" + _slug(it["name"])
    if it["type"] == "figure":
        return "fig-" + _slug(it["name"])
    return None


def _table_shape(markdown: str) -> tuple[int, int]:
    """(display rows, columns) of a pipe table."""
    lines = [ln for ln in markdown.strip().splitlines() if ln.strip().startswith("|")]
    ncol = max(lines[0].count("|") - 1, 1) if lines else 0
    return max(len(lines) - 2, 0), ncol


def _in_appendix(it: dict) -> bool:
    """An item goes to the appendix when its stage marks it so, or when a table is too long for the main text."""
    if it.get("appendix"):
        return True
    if it["type"] == "table":
        return _table_shape(it.get("markdown", ""))[0] > MAX_MAIN_TABLE_ROWS
    return False


# ---------------------------------------------------------------------------------------------
# findings
def _importance(v) -> float:
    if isinstance(v, str):
        return _IMPORTANCE_WORDS.get(v.strip().lower(), 0.0)
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def _ref_ids(refs, frag: dict) -> list[str]:
    """Normalise a finding's refs to cross-reference ids that exist in its fragment (or look like ids)."""
    if refs is None:
        return []
    if isinstance(refs, str):
        refs = [refs]
    names = {it.get("name"): _item_id(it) for it in frag.get("items", []) if _item_id(it)}
    out = []
    for r in refs:
        r = str(r).lstrip("@").strip()
        if r.startswith(("tbl-", "fig-", "sec-")):
            out.append(r[:4] + _slug(r[4:]))  # "tbl-spatial_choice" is "tbl-spatial-choice"
        elif r in names:
            out.append(names[r])
        elif _slug(r) in {v.split("-", 1)[1] for v in names.values()}:
            out.append(next(v for v in names.values() if v.split("-", 1)[1] == _slug(r)))
    return out


_UNCERTAINTY = re.compile(
    r"\bCI\b|\bPI\b|\binterval|±|\+/-|\bprobabilit|\bp\s*[<=≤]|\bcredible|\bconfidence|\brange\b|\bIQR\b"
    r"|\bSD\b|\bstandard (?:error|deviation)|\bbootstrap|\bquantile|\bpercentile|\bP\d{1,2}\b"
    r"|\d\s*(?:-|–|—|to)\s*-?\d|\bR²|\bR2\b|\bRMSE\b|\bskill\b|\blikely\b", flags=re.I)


def states_uncertainty(text: str) -> bool:
    """Whether a finding's sentence states a number and an uncertainty for it.

    The uncertainty may be a confidence, credible or prediction interval ("95 % CI 60-72 %"), a range
    ("0.52-0.70"), ± or a standard error/deviation, a probability or p-value, or the validated skill of
    a model (R², RMSE) its number rests on.

    Parameters
    ----------
    text : the finding's sentence.

    Returns
    -------
    bool
    """
    plain = re.sub(r"@(?:tbl|fig|sec)-[\w-]+|\[[^\]]*@[^\]]*\]", "", text)  # reference ids carry digits of their own
    return bool(re.search(r"\d", plain)) and bool(_UNCERTAINTY.search(plain))


def select_findings(frags: list[dict], *, max_n: int = MAX_FINDINGS) -> list[dict]:
    """Pick the key findings from the stages' proposals.

    Rule: (1) each stage that ran contributes its most important finding, so every analysis that
    found something is represented; (2) the remaining places, up to ``max_n``, go to the next
    most important findings of any stage; (3) the list is shown strongest first (ties keep report
    order). Findings whose importance is zero or below are never picked, nor findings that state
    no number or no uncertainty (:func:`states_uncertainty`): a key finding is a number with its
    confidence or credible interval, range, standard error or probability. A finding that states
    the same quantity as a stronger one (the same ``topic``, e.g. the share of soil samples above
    the Cd guide value, proposed by two stages) is dropped before (1), so no number is given twice;
    of equally strong findings of one topic the first in report order is kept.

    Parameters
    ----------
    frags : fragments in report order, each with an optional ``findings`` list of
        ``{"text", "importance", "refs", "topic" (optional)}``.
    max_n : largest number of findings returned.

    Returns
    -------
    list of dict
        ``{"text", "importance", "refs" (ids), "stage"}``, strongest first.
    """
    pool = []
    for si, fr in enumerate(frags):
        if fr.get("skipped"):
            continue
        for fi, f in enumerate(fr.get("findings") or []):
            imp = _importance(f.get("importance"))
            text = str(f.get("text", "")).strip()
            if imp <= 0 or not text or not states_uncertainty(text):
                continue
            pool.append({"text": text, "importance": imp, "refs": _ref_ids(f.get("refs"), fr),
                         "stage": fr["stage"], "_order": (si, fi), "_topic": _topic(f.get("topic"))})
    by_strength, topics = [], set()
    for f in sorted(pool, key=lambda f: (-f["importance"], f["_order"])):  # one finding per topic
        if f["_topic"] is not None:
            if f["_topic"] in topics:
                continue
            topics.add(f["_topic"])
        by_strength.append(f)
    chosen, seen_stage = [], set()
    for f in by_strength:  # (1) best of each stage
        if f["stage"] not in seen_stage:
            seen_stage.add(f["stage"])
            chosen.append(f)
    chosen = sorted(chosen, key=lambda f: (-f["importance"], f["_order"]))[:max_n]
    for f in by_strength:  # (2) fill
        if len(chosen) >= max_n:
            break
        if f not in chosen:
            chosen.append(f)
    chosen.sort(key=lambda f: (-f["importance"], f["_order"]))
    return [{k: v for k, v in f.items() if not k.startswith("_")} for f in chosen]


def _topic(v) -> tuple[str, ...] | None:
    """A finding's topic as a comparable key (case and spacing ignored); ``None`` when it has none."""
    if v is None or v == "" or v == []:
        return None
    parts = (v,) if isinstance(v, str) else tuple(v)
    return tuple(" ".join(str(p).lower().split()) for p in parts)


def _with_refs(text: str, refs: list[str]) -> str:
    """The finding's sentence with its cross-references appended unless the text already has them."""
    missing = [r for r in refs if not re.search(rf"@{re.escape(r)}(?![\w-])", text.replace("_", "-"))]
    if not missing:
        return text
    body = text.rstrip()
    end = body[-1] if body and body[-1] in ".!?" else ""
    body = body[:-1] if end else body
    cites = "; ".join("@" + r for r in missing)
    if body.endswith(")"):  # "(95 % CI 7–19 %; Table 15)" rather than "(95 % CI 7–19 %) (Table 15)"
        return f"{body[:-1]}; {cites}){end or '.'}"
    return f"{body} ({cites}){end or '.'}"


def _key_findings_markdown(frags: list[dict], skipped_rows: list[tuple[str, str]]) -> str:
    findings = select_findings(frags)
    vague = [f"{fr['stage']}: {str(f.get('text', ''))[:80]}" for fr in frags for f in fr.get("findings") or []
             if _importance(f.get("importance")) > 0 and not states_uncertainty(str(f.get("text", "")))]
    if vague:  # the stage's owner should add the number's uncertainty; the reader never sees these
        warnings.warn("findings without a number and its uncertainty are not shown: " + " | ".join(vague),
                      stacklevel=2)
    out = ["# Key findings {#sec-key-findings .unnumbered}", ""]
    if findings:
        for i, f in enumerate(findings, start=1):
            out.append(f"{i}. {_with_refs(f['text'], f['refs'])}")
        out.append("")
        if len(findings) < MIN_FINDINGS:
            out += [f"The analyses support {_count(len(findings), 'finding', 'findings')} with a stated uncertainty; "
                    "the sections below give the remaining results.", ""]
    else:
        out += ["The analyses of this report did not propose findings for this summary; each section states "
                "its results with their uncertainty.", ""]
    conclusions = _ranked_conclusions(frags)
    if conclusions:
        overall = " ".join(_overall_sentence(c, findings) for c in conclusions[:3])
    else:
        ran = [fr for fr in frags if not fr.get("skipped")]
        overall = (f"This report presents {_count(len(ran), 'analysis', 'analyses')} of the region's data; the "
                   "findings above are the strongest results they support, each with its uncertainty and the "
                   "table or figure it comes from.")
    if skipped_rows:
        n = len(skipped_rows)
        phrase = _count(n, 'further analysis', 'further analyses')
        overall += (f" {phrase[0].upper() + phrase[1:]} {'was' if n == 1 else 'were'} not run; "
                    "@tbl-not-run lists " + ("it" if n == 1 else "them") + " with the reason.")
    out += ["::: {.overall}", f"**Overall.** {overall}", ":::", ""]
    return "\n".join(out)


def _count(n: int, one: str, many: str) -> str:
    words = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    return f"{words[n] if n < len(words) else n} {one if n == 1 else many}"


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", re.sub(r"@[\w-]+", "", text.lower())))


def _overall_sentence(conclusion: str, findings: list[dict]) -> str:
    """A stage's conclusion as it enters the overall paragraph. Where it repeats a key finding shown just above
    (most of its words the same), only its verdict (the clause after the last colon) is kept, with a pointer to
    the finding, so the paragraph concludes instead of repeating the list."""
    c = conclusion.rstrip()
    c = c if c.endswith(".") else c + "."
    w = _words(c)
    for i, f in enumerate(findings, start=1):
        fw = _words(f["text"])
        if w and fw and len(w & fw) / len(w | fw) > 0.6 and ": " in c:
            verdict = c.rsplit(": ", 1)[1].rstrip(".").strip()
            return f"{verdict[0].upper()}{verdict[1:]} (finding {i})."
    return c


def _ranked_conclusions(frags: list[dict]) -> list[str]:
    """Stage conclusions, strongest stage first (by its best finding's importance, then report order)."""
    ranked = []
    for si, fr in enumerate(frags):
        c = str(fr.get("conclusion") or "").strip()
        if c and not fr.get("skipped"):
            best = max((_importance(f.get("importance")) for f in fr.get("findings") or []), default=0.0)
            ranked.append((-best, si, c))
    return [c for _, _, c in sorted(ranked)]


# ---------------------------------------------------------------------------------------------
# sections
def _table_note(it: dict) -> str:
    csv = it.get("csv") or f"tables/{it['name']}.csv"
    link = f"[{Path(csv).name}]({csv})"
    m = re.search(r"Showing (\d+) of (\d+) rows", it.get("note") or "")
    if m:
        return f"The first {m.group(1)} of {m.group(2)} rows are shown; the full table is {link}."
    return f"Full table: {link}."


def _item_markdown(it: dict) -> list[str]:
    t = it["type"]
    if t == "markdown":
        return [it["text"], ""]
    if t == "callout":
        kind = it.get("kind", "note")
        title = it.get("title")
        head = f"::: {{.callout-{kind}}}"
        body = ([f"[{title}]{{.callout-title}}", ""] if title else []) + [it["text"]]
        return [head, *body, ":::", ""]
    if t == "table":
        return [it["markdown"], "", f": {_caption(it['caption'])} {{#{_item_id(it)}}}", "",
                "::: {.table-note}", _table_note(it), ":::", ""]
    if t == "figure":
        width = _print_width(it)
        return [f"![{_caption(it['caption'])}]({it['path']}){{#{_item_id(it)} width=\"{width}\"}}", ""]
    return []


def _print_width(it: dict) -> str:
    """Width of a figure on the page: its natural size (PNG pixels / dpi), at most the text width.

    Printing every figure at 100 % of the size it was drawn at keeps its fonts at the size they
    were set (hmlib.plots keeps them at 7 pt or more); a stage's smaller ``width`` would shrink
    the text below that, so the natural size wins.
    """
    from .plots import PAGE_WIDTH_IN

    try:
        from PIL import Image

        from .outputs import FIGURE_DPI

        with Image.open(it["_dir"] / it["path"]) as im:
            dpi = im.info.get("dpi", (FIGURE_DPI, FIGURE_DPI))[0] or FIGURE_DPI
            natural_in = im.width / float(dpi)
    except Exception:  # no readable image: keep the stage's width
        return it.get("width", "100%")
    return f"{min(100.0, 100.0 * natural_in / PAGE_WIDTH_IN):.0f}%"


def _tab_labels(items: list[dict]) -> list[str]:
    """Tab labels of a group: an item's ``tab`` key, else its name without the part all names share."""
    names = [str(it.get("name", "")) for it in items]
    prefix = names[0]
    for n in names[1:]:
        while not n.startswith(prefix):
            prefix = prefix[:-1]
    suffix = names[0]
    for n in names[1:]:
        while not n.endswith(suffix):
            suffix = suffix[1:]
    # cut at word boundaries: "igeo_soil"/"igeo_sediment" share "igeo_s", but the labels are "soil", "sediment"
    prefix = prefix[:prefix.rfind("_") + 1]
    suffix = suffix[suffix.find("_"):] if "_" in suffix else ""
    labels = []
    for it, n in zip(items, names):
        if it.get("tab"):
            labels.append(str(it["tab"]))
            continue
        core = n[len(prefix):len(n) - len(suffix) if suffix else None].strip("_") or n
        core = core.replace("_", " ")
        labels.append(core.capitalize() if len(core) <= 3 and core.isalpha() else core)
    return labels


def _items_markdown(items: list[dict]) -> list[str]:
    """Markdown of a run of items; consecutive items of one ``group`` become a tab set in the HTML."""
    out, i = [], 0
    while i < len(items):
        it = items[i]
        g = it.get("group") if it["type"] in ("figure", "table") else None
        if g:
            j = i
            while j < len(items) and items[j]["type"] in ("figure", "table") and items[j].get("group") == g:
                j += 1
            if j - i >= 2:
                members = items[i:j]
                out += ["::: {.hm-tabs}", ""]
                for f, lab in zip(members, _tab_labels(members)):
                    lab = lab.replace('"', "'")
                    out += [f'::: {{.hm-tab data-tab="{lab}"}}', "", *_item_markdown(f), ":::", ""]
                out += [":::", ""]
                i = j
                continue
        out += _item_markdown(it)
        i += 1
    return out


def _stage_markdown(frag: dict) -> str:
    sid = f"sec-{_slug(frag['stage'])}"
    out = [f"# {frag['title']} {{#{sid}}}", ""]
    main = [it for it in frag["items"] if not _in_appendix(it)]
    appx = [it for it in frag["items"] if _in_appendix(it)]
    out += _items_markdown(main)
    if appx:
        text = "\n".join(it.get("text", "") for it in main if it["type"] in ("markdown", "callout"))
        unref = [_item_id(it) for it in appx if _item_id(it) and f"@{_item_id(it)}" not in text]
        if unref:
            out += ["Supplementary material for this section, in the appendix: "
                    + ", ".join(f"@{r}" for r in unref) + ".", ""]
        sid_appx = f"@sec-appendix-{_slug(frag['stage'])}"
        if any(it["type"] == "markdown" for it in appx) and sid_appx not in text:
            out += [f"Details of the methods are in the appendix ({sid_appx}).", ""]
    return "\n".join(out)


def unreferenced(frag: dict) -> list[str]:
    """Ids of a fragment's main-text tables and figures that its prose never refers to.

    The issue's rule is that every table and figure in the main text is cross-referenced from the
    text (``@tbl-...``/``@fig-...`` in a markdown item, a callout or a finding). Appendix items are
    referred to automatically from their section, so they are not listed.

    Parameters
    ----------
    frag : one stage fragment (``fragments/<stage>.json``).

    Returns
    -------
    list of str
        Cross-reference ids without a reference, in report order.
    """
    text = "\n".join(str(it.get("text", "")) for it in frag.get("items", []) if it["type"] in ("markdown", "callout"))
    text += "\n" + "\n".join(str(f.get("text", "")) + " " + " ".join("@" + str(r) for r in f.get("refs") or [])
                              for f in frag.get("findings") or [])
    ids = [_item_id(it) for it in frag.get("items", []) if _item_id(it) and not _in_appendix(it)]
    return [i for i in ids if not re.search(rf"@{re.escape(i)}(?![\w-])", text)]


def _appendix_markdown(frags: list[dict]) -> str:
    parts = []
    for fr in frags:
        appx = [it for it in fr["items"] if _in_appendix(it)]
        if appx:
            parts += [f"## {fr['title']} {{#sec-appendix-{_slug(fr['stage'])} .unnumbered}}", "",
                      *_items_markdown(appx)]
    if not parts:
        return ""
    return "\n".join(["# Appendix: supplementary tables and figures {#sec-appendix .unnumbered}", "",
                      "Long tables and diagnostic figures that support the sections above; each is referred "
                      "to from its section.", "", *parts])


def _stage_title(name: str, frags: list[dict]) -> str:
    for fr in frags:
        if fr["stage"] == name:
            return fr["title"]
    try:
        from .stages import get_stage

        return get_stage(name).title
    except Exception:  # a stage module mid-edit must not break the report of the others
        return name.replace("_", " ").capitalize()


def _not_run_rows(manifest: dict, frags: list[dict], params=None) -> list[tuple[str, str]]:
    """(analysis title, reason) for every registered analysis that did not run for this region.

    Sources, in order: the manifest's stages that did not run (with their reason), fragments that
    say they were skipped, and registered stages the region's parameters do not select.
    """
    rows: dict[str, tuple[str, str]] = {}
    listed = set()
    for s in manifest.get("stages", []):
        listed.add(s["name"])
        if s["status"] not in _RAN:
            reason = s.get("reason") or ("it failed" if s["status"] == "failed" else s["status"])
            rows[s["name"]] = (_stage_title(s["name"], frags), _sentence(reason))
    for fr in frags:
        if fr.get("skipped") and fr["stage"] not in rows:
            rows[fr["stage"]] = (fr["title"], _sentence(fr["skipped"]))
            listed.add(fr["stage"])
    for name in stage_names():
        if name not in listed:
            rows[name] = (_stage_title(name, frags), _sentence(_unselected_reason(name, params)))
    return list(rows.values())


def _unselected_reason(name: str, params) -> str:
    """Why a registered stage is absent: what the region's data lack, else that it was not selected."""
    try:
        from .stages import get_stage, skip_reason

        reason = skip_reason(get_stage(name), params)
    except Exception:  # params without the full schema (tests) or a stage module mid-edit
        reason = None
    return reason or "not selected in this region's parameters"


def _sentence(s: str) -> str:
    s = " ".join(str(s).split())
    if not s:
        return s
    s = s[0].upper() + s[1:]
    return s if s.endswith((".", "!", "?")) else s + "."


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _conclusions_markdown(frags: list[dict], not_run: list[tuple[str, str]]) -> str:
    out = ["# Conclusions and limitations {#sec-conclusions}", ""]
    ran = [fr for fr in frags if not fr.get("skipped")]
    concl = [(fr, str(fr.get("conclusion")).strip()) for fr in ran if fr.get("conclusion")]
    out += ["## Conclusions {#sec-conclusions-main}", ""]
    if concl:
        for fr, c in concl:
            out += [f"{_sentence(c).rstrip('.')} (@sec-{_slug(fr['stage'])}).", ""]
    else:
        out += ["The key findings at the start of this report are the conclusions the analyses support; each "
                "section interprets its own results.", ""]
    out += ["## Limitations {#sec-limitations}", ""]
    lims = []
    for fr in ran:
        for lim in fr.get("limitations") or []:
            lims.append(f"- {_sentence(lim).rstrip('.')} (@sec-{_slug(fr['stage'])}).")
    if lims:
        out += [*lims, ""]
    else:
        out += ["The sections state the assumptions of each method next to its results.", ""]
    if not_run:
        out += ["Analyses that did not run leave their questions open for this region; @tbl-not-run lists them "
                "with the reason.", "",
                "| Analysis | Why it was not run |", "|:------------------------------|:----------------------------------------|",
                *[f"| {_cell(a)} | {_cell(_sentence(r))} |" for a, r in not_run], "",
                ": Analyses not run and why {#tbl-not-run}", ""]
    return "\n".join(out)


def _sentence(text: str) -> str:
    """A reason as a sentence: capital first letter, one full stop at the end."""
    text = str(text).strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


# ---------------------------------------------------------------------------------------------
# title block, data, bibliography
def _bib_entries(text: str) -> dict[str, str]:
    out = {}
    for chunk in re.split(r"(?=^@)", text, flags=re.M):
        m = re.match(r"@\w+\{([^,]+),", chunk)
        if m:
            out.setdefault(m.group(1).strip(), chunk)
    return out


def _bibliography(report_dir: Path) -> Path:
    """Write ``references.bib``: ``studies.bib`` first (its entries win), then the topic files."""
    out = report_dir / "references.bib"
    files = sorted(_bib_dir().glob("*.bib"), key=lambda f: (f.name != "studies.bib", f.name))
    text = "\n".join(f"% --- {f.name}\n" + f.read_text(encoding="utf-8") for f in files)
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


def _first_author_year(entry: str) -> tuple[str, str]:
    a = re.search(r"author\s*=\s*\{(.+?)\}\s*,?\s*\n", entry, flags=re.S)
    y = re.search(r"year\s*=\s*\{?(\d{4})", entry)
    surname = ""
    if a:
        first = a.group(1).split(" and ")[0].strip().strip("{}")
        surname = first.split(",")[0].strip() if "," in first else first.split()[-1]
    return surname.lower(), (y.group(1) if y else "")


def data_source_keys(citation: str, bib_text: str) -> list[str]:
    """Bibliography keys of the works a region's free-text ``data_citation`` names.

    A work is recognised by its DOI, or by a first author's surname followed (within the same
    clause) by the year in parentheses, e.g. ``Atteia et al. (1994)``.

    Parameters
    ----------
    citation : the region's data citation as written in its parameters.
    bib_text : BibTeX text to search.

    Returns
    -------
    list of str
        Matching keys, in the order the citation names them, without duplicates.
    """
    entries = _bib_entries(bib_text)
    found: list[tuple[int, str]] = []
    for m in re.finditer(r"10\.\d{4,9}/[^\s;,]+[^\s;,.)]", citation):
        doi = m.group(0).lower()
        for k, e in entries.items():
            d = re.search(r"doi\s*=\s*\{([^}]+)\}", e)
            if d and d.group(1).strip().lower() == doi:
                found.append((m.start(), k))
                break
    for m in re.finditer(r"([A-Z][A-Za-z\-']+)[^();]*?\((\d{4})\)", citation):
        name, year = m.group(1).lower(), m.group(2)
        for k, e in entries.items():
            if _first_author_year(e) == (name, year):
                found.append((m.start(), k))
                break
    keys = []
    for _, k in sorted(found):
        if k not in keys:
            keys.append(k)
    return keys


def _is_synthetic(citation: str) -> bool:
    return bool(re.search(r"\b(synthetic|generated)\b", citation, flags=re.I))


def _data_source_sentence(params, bib_text: str) -> str:
    cit = (params.region.data_citation or "").strip()
    if not cit:
        return ""
    keys = data_source_keys(cit, bib_text)
    refs = "; ".join(f"@{k}" for k in keys)  # in-text form: "Rikken and Van Rijn (1993)"
    if _is_synthetic(cit):
        s = f"The data are synthetic, generated by hmlib {__version__} with known ground truth"
        return s + (f"; the design follows {refs}." if keys else ".")
    if keys:
        return f"Data source: {refs}."
    # no bibliography entry: keep the reader's text but never code or random-number details
    clean = re.sub(r"\(?\bseed\s*=?\s*\d+\)?", "", cit)
    return f"Data source: {' '.join(clean.split())}."


def _data_summary(report_dir: Path) -> str:
    """One sentence on the data, from the data-quality stage's overview table."""
    import pandas as pd

    parts = []
    ov = report_dir / "tables" / "data_overview.csv"
    if ov.is_file():
        overview = pd.read_csv(ov)
        for r in overview.itertuples():
            nd = int(getattr(r, "n_censored", 0) or 0)
            parts.append(f"{int(r.n_samples):,} {r.medium} samples ({r.metals}; {r.unit}"
                         + (f"; {nd} values below detection limits" if nd else "") + ")")
        grid = int(overview["grid_cells"].max()) if "grid_cells" in overview else 0
        if grid:
            parts.append(f"a prediction grid of {grid:,} cells")
    if len(parts) > 1:
        parts = [", ".join(parts[:-1]) + " and " + parts[-1]]
    return ("The data comprise " + parts[0] + ". ") if parts else ""


_TYPST_PAGEBREAK = "```{=typst}\n#pagebreak(weak: true)\n```\n"
# in the appendix figures stay where they are written, each after its heading (a float could rise above
# the appendix heading onto the first page or mix the sections of a list of displays), and the long tables
# there may run over several pages (main-text tables are kept whole by hmlib.typst)
_TYPST_FIGURES_IN_PLACE = ("```{=typst}\n#show figure.where(kind: image): set figure(placement: none)\n"
                           "#show figure.where(kind: table): set block(breakable: true)\n```\n")


def build_qmd(report_dir: Path, *, params, manifest: dict) -> Path:
    """Write ``report.qmd`` (Quarto markdown) and ``references.bib`` into ``report_dir``.

    Parameters
    ----------
    report_dir : the report folder (fragments, tables, figures).
    params : the region's parameters (title, description, data citation).
    manifest : the run manifest (stage statuses and reasons, inputs, versions).

    Returns
    -------
    Path
        ``report_dir / "report.qmd"``.
    """
    report_dir = Path(report_dir)
    all_frags = _fragments(report_dir)
    frags = [fr for fr in all_frags if not fr.get("skipped")]
    bib = _bibliography(report_dir)
    bib_text = bib.read_text(encoding="utf-8")
    data_sentence = _data_source_sentence(params, bib_text)
    abstract = " ".join(x for x in [(params.region.description or "").strip(), _data_summary(report_dir).strip(),
                                    data_sentence] if x)
    not_run = _not_run_rows(manifest, all_frags, params)
    front = [
        "---",
        f"title: {_yaml_str(params.region.title)}",
        f"pagetitle: {_yaml_str(params.region.title)}",
        f"subtitle: {_yaml_str('Assessment of heavy metal(loid)s')}",
        f"date: {_yaml_str(date.today().isoformat())}",
        f"author: {_yaml_str(f'hmlib {__version__}')}",
        f"abstract: {_yaml_str(abstract)}",
        "bibliography: references.bib",
        "link-citations: true",
        "lang: en",
        "format:",
        "  html:",
        "    embed-resources: true",
        "    toc: true",
        "    toc-location: left",
        f"    toc-depth: {FORMAT['toc_depth']}",
        "    number-sections: true",
        f"    html-math-method: {FORMAT['html_math']}",
        "  typst:",
        "    toc: true",
        f"    section-numbering: \"{FORMAT['section_numbering']}\"",
        f"    papersize: {FORMAT['papersize']}",
        "---",
        "",
    ]
    body = [_key_findings_markdown(frags, not_run)]
    body += [_stage_markdown(f) for f in frags]
    body += [_conclusions_markdown(frags, not_run)]
    # the PDF starts the references and the appendices on a new page (page_counts relies on it)
    body += [_TYPST_PAGEBREAK, "# References {#sec-references .unnumbered}", "", "::: {#refs}", ":::", ""]
    appx = _appendix_markdown(frags)
    if appx:
        body += [_TYPST_PAGEBREAK, _TYPST_FIGURES_IN_PLACE, appx]
    body += [_TYPST_PAGEBREAK, _manifest_markdown(manifest, all_frags)]
    text = "\n".join(body)
    # a reference to the section of an analysis that did not run points to the table saying why
    # ids are hyphenated (tbl-exceedance-shares); prose written with the table's name keeps working
    text = re.sub(r"@(tbl|fig|sec)-([\w-]*\w)", lambda m: f"@{m.group(1)}-{m.group(2).replace('_', '-')}", text)
    sections = set(re.findall(r"\{#(sec-[\w-]+)", text))
    text = re.sub(r"@(sec-[\w-]*\w)", lambda m: "@" + (m.group(1) if m.group(1) in sections or not not_run
                                                         else "tbl-not-run"), text)
    text = _reader_typography(text)
    path = report_dir / "report.qmd"
    path.write_text("\n".join(front) + text + "\n", encoding="utf-8")
    return path


def _reader_typography(text: str) -> str:
    """The assembled text in the reader's typography, whatever each stage's formatting:
    a no-break space before a per cent sign ("95 %", never "95%" or a line break before "%"),
    a minus sign for a negative number, an en dash in a range of numbers and µg/L for the data files'
    unit code ug/L."""
    # a number and its per cent sign never end up on two lines ("62" / "%)"): a no-break space between them
    # and one style throughout: "95 %" also where a stage formatted "95%" (not inside attributes, width=100%)
    text = re.sub(r"(?<=\d) ?%(?=[\s)\].,;:\u2013-]|$)", "\u00a0%", text, flags=re.M)
    # a hyphen right after a superscript is a range ("5.2 × 10^−4^–0.012"); any other hyphen before a number
    # is a negative number's sign, a minus ("to −0.027", "10^−4^"), wherever a stage formatted it with "-"
    text = re.sub(r"(\^[^^\s]+\^)-(?=\d)", "\\1\u2013", text)
    text = re.sub(r"(?<=[\s(=\[;:,^])-(?=\d)", "\u2212", text)
    # a range takes an en dash ("0.60–0.73", "5th–95th", "P5–P95"); a standard's number ("GB 15618-2018",
    # "HJ/T 166-2004"), a date, a name such as UTL95-95 and anything inside a path or code keep the hyphen
    text = re.sub(r"(?<![\w/.\-\u2212])(\d+(?:\.\d+)?(?:st|nd|rd|th)?)-(\d+(?:\.\d+)?(?:st|nd|rd|th)?)(?![\d.]\d|\d)(?![\w/\-.]\w)",
                  lambda m: m.group(0) if re.search(r"(?:[A-Z]{2,}|/T)\s*$", text[max(0, m.start() - 8):m.start()])
                  else f"{m.group(1)}\u2013{m.group(2)}", text)
    text = re.sub(r"\bP(\d+)-P(\d+)\b", "P\\1\u2013P\\2", text)
    # the unit's code (data files, option values) in the reader's form
    text = re.sub(r"(?<![\w/])ug/L\b", "µg/L", text)
    return text


def _manifest_markdown(manifest: dict, frags: list[dict]) -> str:
    lines = ["# Appendix: run manifest {#sec-manifest .unnumbered}", "",
             "Every number in this report can be traced to the inputs and software listed here; the "
             "machine-readable version is [manifest.json](manifest.json) next to this report, and each analysis's "
             "executed notebook is in the folder `notebooks`.", ""]
    rows = [("Created (UTC)", manifest["created"]),
            ("hmlib version", manifest["hmlib_version"]), ("Git commit", f"`{manifest.get('git_commit') or 'n/a'}`"),
            ("Parameters file", f"`{manifest['params_file']}`"),
            ("Parameters SHA-256", f"`{manifest['params_sha256'][:16]}…`"),
            ("Library SHA-256", f"`{manifest['library_sha256'][:16]}…`"), ("Random seed", str(manifest["seed"])),
            ("Platform", manifest.get("platform", ""))]
    lines += ["| Item | Value |", "|:--|:--|", *[f"| {a} | {_cell(b)} |" for a, b in rows], "",
              ": Run identification {#tbl-manifest-run}", ""]
    lines += ["| Input | File | SHA-256 |", "|:--|:--|:--|",
              *[f"| {k} | `{v['path']}` | `{v['sha256'][:16]}…` |" for k, v in manifest["inputs"].items()], "",
              ": Input files and their hashes {#tbl-manifest-inputs}", ""]
    status_words = {"ok": "ran", "reused": "reused (inputs unchanged)", "kept": "kept from the previous run",
                    "skipped": "not run", "failed": "failed"}
    lines += ["| Analysis | Notebook | Status | Seconds |", "|:--|:--|:--|--:|",
              *[f"| {_cell(_stage_title(s['name'], frags))} | `{s['notebook']}` | "
                f"{status_words.get(s['status'], s['status'])} | {s['seconds']:.1f} |"
                for s in manifest["stages"]], "", ": Analyses of this run {#tbl-manifest-stages}", ""]
    pk = manifest.get("packages", {})
    lines += ["| Package | Version |", "|:--|:--|", *[f"| {k} | {v} |" for k, v in pk.items()], "",
              ": Software versions {#tbl-manifest-packages}", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# checks on the reader's text and on the rendered PDF
#: Internal words that must never reach a reader (the developer guide's list): a pattern and what it is.
JARGON_PATTERNS = (
    (r"(?i)\bseeds?\b", "'seed' (cite the study by authors, year and venue; a random seed belongs in the run manifest)"),
    (r"\b[A-Za-z]+_[A-Z][A-Za-z]*\d{4}[a-z]?\b", "a reference-set code (name the reference and cite it)"),
    (r"\b[A-Z][A-Za-z0-9]*_\d{4}[a-z]?\b", "a reference-set code (name the reference and cite it)"),
    (r"\b(?:stages|options|params|region|data|references|media)\.[a-z_]+\b", "a configuration key"),
    (r"\[\s*'|'\s*\]|\[\s*\"|\"\s*\]", "Python list syntax"),
    (r"\w\(s\)", "an '(s)' plural"),
    (r"\.staging-", "a staging folder name"),
    (r"\b[a-z][a-z0-9]*(?:\\?_[a-z0-9]+)+\b(?!\.\w|/)", "a program identifier (a name with underscores)"),
    (r"\b(?:NaN|nan|None\b(?= *[|,;)\]]))\b", "a Python value"),
)


def _reader_text(qmd_text: str) -> str:
    """The words of an assembled ``report.qmd`` a reader sees, without markup the renderer removes.

    Kept: title, subtitle and abstract, headings, prose, tables, captions and the appendix of
    supplementary material. Removed: other front-matter keys, link targets and attributes
    (``{#tbl-x}``), citation and cross-reference keys (``@key``), code spans in the run manifest
    (which is a record of files and settings, not prose) and the manifest itself.
    """
    text = qmd_text
    if text.startswith("---"):
        front, text = text[3:].split("\n---\n", 1)
        keep = [ln.split(":", 1)[1] for ln in front.splitlines()
                if ln.split(":", 1)[0] in ("title", "subtitle", "abstract")]
        text = "\n".join(keep) + "\n" + text
    text = text.split("# Appendix: run manifest", 1)[0]
    text = re.sub(r"\]\([^)\s]*\)", "]", text)                     # link and image targets
    text = re.sub(r"\{[#.][^}]*\}|\{=\w+\}", "", text)               # attributes, raw-block markers
    text = re.sub(r"data-tab=\"[^\"]*\"", "", text)
    text = re.sub(r"-?@[\w:.#$%&+?<>~/-]*\w", "", text)                # citation and cross-reference keys
    text = re.sub(r"\$\$.+?\$\$|\$[^$\n]+\$", "", text, flags=re.S)      # math
    return text


def jargon(text: str) -> list[tuple[str, str]]:
    """Internal words in reader-facing text: (what it is, the text around it) for each occurrence.

    Pass the plain text a reader sees (an assembled ``report.qmd`` is reduced to it first: front
    matter other than title and abstract, link targets, ids, citation keys and the run manifest
    are not reader text). The patterns are :data:`JARGON_PATTERNS`, from the developer guide's
    rules for reader-facing text.

    Parameters
    ----------
    text : reader text, or the whole text of an assembled ``report.qmd`` (recognised by its
        front matter or its ``{#sec-`` ids).

    Returns
    -------
    list of tuple of str
        (description, excerpt of about 60 characters around the match), in text order.
    """
    if text.startswith("---") or "{#sec-" in text:
        text = _reader_text(text)
    found = []
    for pat, what in JARGON_PATTERNS:
        for m in re.finditer(pat, text):
            a, b = max(m.start() - 30, 0), min(m.end() + 30, len(text))
            found.append((m.start(), what, " ".join(text[a:b].split())))
    return [(w, x) for _, w, x in sorted(found)]


def _outline(reader) -> list[tuple[str, int, float]]:
    """(title, page index, position on the page from its top, 0-1) of every bookmark, in order."""
    out = []

    def walk(items):
        for it in items:
            if isinstance(it, list):
                walk(it)
                continue
            try:
                page = reader.get_destination_page_number(it)
            except Exception:  # a bookmark without a page (none in Typst output)
                continue
            height = float(reader.pages[page].mediabox.height)
            top = it.get("/Top")
            frac = 0.0 if top is None else min(max(1.0 - float(top) / height, 0.0), 1.0)
            out.append((" ".join(str(it.title).split()), page, frac))

    walk(reader.outline)
    return out


def page_counts(pdf: Path) -> dict:
    """Pages of a rendered report by part, read from the PDF's bookmarks (Typst writes one per heading).

    The main text runs from the heading "Key findings" to the end of "Conclusions and limitations",
    that is to the start of "References" (which Typst output starts on a new page); the appendix
    starts at the first heading beginning with "Appendix". Each top-level section's length is the
    distance from its heading to the next top-level heading, in pages (fractions from the headings'
    positions on their pages).

    Parameters
    ----------
    pdf : the report PDF.

    Returns
    -------
    dict
        ``total``, ``front`` (title page and contents), ``main_text``, ``references``, ``appendix``
        (whole pages) and ``sections`` (title -> pages, one decimal, in report order).
    """
    import pypdf

    reader = pypdf.PdfReader(str(pdf))
    total = len(reader.pages)
    marks = _outline(reader)
    top = [m for m in marks if m[0]]

    def start(prefix: str, default: int) -> int:
        return next((p for t, p, _ in top if re.sub(r"^[\d.]+\s+", "", t).startswith(prefix)), default)

    main0 = start("Key findings", 0)
    refs0 = start("References", total)
    appx0 = start("Appendix", total)
    # the part after the main text starts on a new page unless it shares the last main-text page
    main_end = min(refs0, appx0)
    first_after = [(p, f) for t, p, f in top if p == main_end
                   and re.sub(r"^[\d.]+\s+", "", t).startswith(("References", "Appendix"))]
    shares = bool(first_after) and first_after[0][1] > 0.2
    main = main_end - main0 + (1 if shares else 0)
    # level-1 sections: bookmarks of reader.outline's top level (nested lists hold subsections)
    level1 = []
    for it in reader.outline:
        if not isinstance(it, list):
            p = reader.get_destination_page_number(it)
            height = float(reader.pages[p].mediabox.height)
            t = it.get("/Top")
            level1.append((" ".join(str(it.title).split()), p + (0.0 if t is None else 1.0 - float(t) / height)))
    sections = {}
    for (t, pos), nxt in zip(level1, [*level1[1:], ("", float(total))]):
        sections[t] = round(max(nxt[1] - pos, 0.0), 1)
    return {"total": total, "front": main0, "main_text": main, "references": max(appx0 - refs0, 0),
            "appendix": max(total - appx0, 0), "sections": sections}


# ---------------------------------------------------------------------------------------------
# rendering
def _run(cmd: list[str], cwd: Path, what: str) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise HmlibError(f"{what} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
    for line in res.stderr.splitlines():
        if line.startswith("hmlib-crossref:"):  # shown as ??id in the report; tests fail on it
            warnings.warn(f"{what}: {line.split(': ', 1)[-1]}", stacklevel=2)
    return res.stderr


def _html_figures(qmd: Path) -> Path:
    """A copy of the document whose figures point to HTML-sized copies (keeps the HTML small).

    Each PNG is flattened on white, downscaled to at most :data:`HTML_FIGURE_MAX_PX` wide and
    reduced to a 256-colour palette; the PDF uses the full-resolution originals.
    """
    from PIL import Image

    text = qmd.read_text(encoding="utf-8")
    small = qmd.parent / "_html"
    small.mkdir(exist_ok=True)

    def repl(m):
        src = qmd.parent / m.group(2)
        if not src.is_file() or src.suffix.lower() != ".png":
            return m.group(0)
        dst = small / m.group(2).replace("/", "__")
        if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            with Image.open(src) as im:
                im = im.convert("RGBA")
                flat = Image.new("RGBA", im.size, "white")
                im = Image.alpha_composite(flat, im).convert("RGB")
                if im.width > HTML_FIGURE_MAX_PX:
                    h = round(im.height * HTML_FIGURE_MAX_PX / im.width)
                    im = im.resize((HTML_FIGURE_MAX_PX, h), Image.LANCZOS)
                # 256 colours without dithering: plots look the same on screen at ~40 % of the bytes
                im = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
                im.save(dst, optimize=True)
        return f"{m.group(1)}({dst.relative_to(qmd.parent).as_posix()})"

    out = qmd.parent / "_html" / "report_html.md"
    out.write_text(re.sub(r"(!\[[^\]]*\])\(([^)\s]+)\)", repl, text), encoding="utf-8")
    return out


def render_html(qmd: Path) -> Path:
    """One self-contained offline HTML via pandoc: embedded figures, CSS and script, MathML, numbered links."""
    qmd = Path(qmd)
    out = qmd.with_suffix(".html")
    a = assets_dir()
    src = _html_figures(qmd)
    script = qmd.parent / "_html" / "script.html"
    script.write_text("<script>\n" + (a / "report.js").read_text(encoding="utf-8") + "\n</script>\n", encoding="utf-8")
    try:
        _run([pandoc_path(), src.relative_to(qmd.parent).as_posix(), "--from", "markdown", "--to", "html5",
              "--standalone", "--embed-resources", "--toc", f"--toc-depth={FORMAT['toc_depth']}", "--number-sections",
              "--section-divs", "--mathml", f"--lua-filter={a / 'crossref.lua'}", "--citeproc",
              f"--css={a / 'report.css'}", f"--include-after-body={script.relative_to(qmd.parent).as_posix()}",
              f"--resource-path={qmd.parent}", "-o", out.name], qmd.parent, "pandoc (HTML)")
    finally:
        shutil.rmtree(qmd.parent / "_html", ignore_errors=True)
    return out


def render_pdf(qmd: Path) -> Path:
    """PDF via pandoc (markdown to Typst, hmlib's template and filter) and the typst compiler."""
    import typst

    qmd = Path(qmd)
    typ = qmd.with_suffix(".typ")
    a = assets_dir()
    _run([pandoc_path(), qmd.name, "--from", "markdown", "--to", "typst", "--standalone",
          f"--lua-filter={a / 'crossref.lua'}", "--citeproc", f"--template={a / 'hmlib.typst'}", "-o", typ.name],
         qmd.parent, "pandoc (Typst)")
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
        html, pdf = qmd.with_suffix(".html"), qmd.with_suffix(".pdf")
    else:
        html, pdf = render_html(qmd), render_pdf(qmd)
    _record_pages(Path(report_dir), pdf)
    return html, pdf


def _record_pages(report_dir: Path, pdf: Path) -> None:
    """Add the PDF's page counts (:func:`page_counts`) to ``manifest.json`` under ``report_pages``."""
    try:
        pages = page_counts(pdf)
    except Exception as e:  # noqa: BLE001 - a count is a convenience; a PDF without bookmarks must not fail the run
        warnings.warn(f"could not count the report's pages: {e}", stacklevel=2)
        return
    if pages["main_text"] > MAIN_TEXT_PAGES_TARGET:
        warnings.warn(f"the main text runs to {pages['main_text']} pages (at most {MAIN_TEXT_PAGES_TARGET}): "
                      "move per-metal and diagnostic displays to the appendix", stacklevel=2)
    path = report_dir / "manifest.json"
    if path.is_file():
        m = json.loads(path.read_text(encoding="utf-8"))
        m["report_pages"] = pages
        path.write_text(json.dumps(m, indent=1), encoding="utf-8")


def _main(argv: list[str] | None = None) -> int:
    """``python -m hmlib.report REPORT.pdf``: print the report's pages by part and by section."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m hmlib.report", description=_main.__doc__)
    ap.add_argument("pdf", type=Path)
    args = ap.parse_args(argv)
    pages = page_counts(args.pdf)
    print(f"{args.pdf}: {pages['total']} pages; main text {pages['main_text']} (target at most "
          f"{MAIN_TEXT_PAGES_TARGET}), references {pages['references']}, appendix {pages['appendix']}")
    for title, n in pages["sections"].items():
        print(f"  {n:5.1f}  {title}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
