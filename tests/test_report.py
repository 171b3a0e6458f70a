"""Report assembly and rendering: key findings, cross-references, appendices, tabs, callouts, tables
that fit the page, title metadata, data-source citations, and the print rules of the figure helpers.

Most tests build a small report folder with :class:`hmlib.outputs.StageOutputs` (the writer the
stages use), in a known order, and render it once; the expected figure/table numbers, appendix
placement and findings are derived by hand from that construction and the documented rules.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from hmlib import plots
from hmlib.outputs import StageOutputs
from hmlib.report import MAX_MAIN_TABLE_ROWS, _with_refs, build_qmd, data_source_keys, render_report, select_findings

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Cadmium and lead in the demonstration valley"
REGION_ID = "demo_valley"


def _fig(label: str, width_in: float = 4):
    fig, ax = plt.subplots(figsize=(width_in, 2.5))
    ax.plot([0, 1, 2], [0, 1, 0])
    ax.set_title(label)
    return fig


def build_report_dir(d: Path):
    """A report folder with two stages that ran and one that was skipped; returns (params, manifest).

    Document order (hence numbering) by construction: tables summary (1), wide (2), not-run (3, in
    the Limitations), long (4, appendix: more than MAX_MAIN_TABLE_ROWS rows); figures maps Cd, Pb,
    Zn (1-3, one tab group), trend (4), qq (5, appendix).
    """
    d.mkdir(parents=True, exist_ok=True)
    out = StageOutputs(d, "data_quality", "Data and their quality")
    out.markdown("## Methods\n\nSummary statistics follow @atteia1994. @tbl-demo-summary lists them; "
                 "@fig-maps-cd shows where cadmium is high, and [@fig-maps-pb; @fig-maps-zn] the other metals. "
                 "All samples are in @tbl-demo-long; @sec-sources interprets the sources.")
    out.table("demo_summary", pd.DataFrame({"metal": ["Cd", "Pb", "Zn"], "mean (mg/kg)": [1.31, 53.9, 75.1],
                                            "n": [259, 259, 259]}), "Summary statistics of the topsoil samples")
    wide = pd.DataFrame({f"Sediment concentration column {i} (mg/kg)": np.round(np.linspace(1, 2, 6) * i, 3)
                         for i in range(1, 13)})
    wide.insert(0, "sampling site description", ["intertidal sediment near the estuary mouth"] * 6)
    out.table("demo_wide", wide, "A wide table with thirteen columns")
    n_long = MAX_MAIN_TABLE_ROWS + 15
    out.table("demo_long", pd.DataFrame({"sample": [f"S{i:03d}" for i in range(n_long)],
                                         "Cd (mg/kg)": np.linspace(0.1, 5, n_long)}),
              "All samples with their cadmium concentration")
    for m in ["Cd", "Pb", "Zn"]:
        out.figure(f"maps_{m.lower()}", _fig(m), f"Map of {m}", group="maps")
    out.callout("Detection limits were not reported for Pb.", kind="warning", title="Caveat")
    out.figure("qq", _fig("QQ"), "Diagnostic QQ plot", appendix=True)
    out.finding("Cd exceeds the guide value in 66 % of samples (95 % CI 60-72 %).", importance=0.9,
                refs=["tbl-demo-summary"])
    out.finding("Pb is below the guide value in every sample (95 % upper confidence limit of the mean 56 mg/kg).",
                importance=0.2, refs=["tbl-demo-summary"])
    out.limitation("detection limits were not reported for Pb")
    plt.close("all")
    out.finish()
    src = StageOutputs(d, "sources", "Sources of the metals")
    src.markdown("Cd co-varies with Ni (@fig-trend), as the summary (@tbl-demo-summary) suggested; isotopes "
                 "would settle it (@sec-isotopes-demo).")
    src.figure("trend", _fig("trend", width_in=9), "Cd against Ni")  # 1800 px: downscaled for the HTML
    src.markdown("The factor model's rotation and its bootstrap are detailed here.", appendix=True)
    src.conclusion("Most Cd is geogenic: it shares a factor with Ni (share 0.61, 90 % interval 0.52-0.70).")
    src.finding("Cd and Ni share one geogenic factor (share 0.61, 90 % interval 0.52-0.70).", importance=0.7,
                refs=["fig-trend"])
    plt.close("all")
    src.finish()
    StageOutputs(d, "isotopes_demo", "Isotope mixing").finish(skipped="no isotope ratios in the data")
    pd.DataFrame({"medium": ["soil"], "n_samples": [259], "metals": ["Cd, Pb, Zn"], "unit": ["mg/kg"],
                  "n_censored": [2], "grid_cells": [0]}).to_csv(d / "tables" / "data_overview.csv", index=False)
    params = SimpleNamespace(region=SimpleNamespace(
        id=REGION_ID, title=TITLE, description="Topsoils of a demonstration valley.",
        data_citation="Atteia et al. (1994) doi:10.1016/0269-7491(94)90172-4; Goovaerts (1997) Geostatistics"))
    manifest = {"created": "2026-01-01T00:00:00", "hmlib_version": "0.1", "git_commit": "abc",
                "params_file": "params/demo_valley.yml", "params_sha256": "0" * 64, "library_sha256": "1" * 64,
                "seed": 1, "platform": "linux", "inputs": {"samples": {"path": "data/x.csv", "sha256": "2" * 64}},
                "stages": [{"name": "data_quality", "notebook": "00_data_quality.ipynb", "status": "ok", "seconds": 1.0},
                           {"name": "sources", "notebook": "50_sources.ipynb", "status": "ok", "seconds": 1.0},
                           {"name": "isotopes_demo", "notebook": "99_isotopes.ipynb", "status": "skipped",
                            "seconds": 0.1, "reason": "no isotope ratios in the data"}],
                "packages": {"pandas": "2.2"}}
    return params, manifest


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    params, manifest = build_report_dir(d)
    html, pdf = render_report(d, params=params, manifest=manifest)
    return d, html.read_text(encoding="utf-8"), pdf


# ---------------------------------------------------------------------------------------------
def test_select_findings_follows_the_documented_rule():
    """Checked against the picks derived by hand from the rule (best of each stage, then the strongest)."""
    def f(label, imp):
        return {"text": f"{label}: 12 % (95 % CI 8-16 %)", "importance": imp}

    frags = [{"stage": "a", "findings": [f("a1", 0.9), f("a2", 0.8), f("a3", 0.7)]},
             {"stage": "b", "findings": [f("b1", 0.3), {"text": "b2 is high", "importance": 0.95},
                                         {"text": "b3: 12 % of samples", "importance": 0.95}]},
             {"stage": "c", "findings": [f("c1", 0.0)]},
             {"stage": "d", "skipped": "no data", "findings": [f("d1", 1.0)]}]
    picks = [f["text"].split(":")[0] for f in select_findings(frags, max_n=3)]
    assert picks == ["a1", "a2", "b1"]  # b2 (no number) and b3 (no uncertainty) are never shown
    one = select_findings([{"stage": "s", "items": [], "findings": [
        {"text": "Cd 12 % (95 % CI 8-16 %; @tbl-spatial-choice)", "importance": 0.5, "refs": ["tbl-spatial_choice"]}]}])
    assert one[0]["refs"] == ["tbl-spatial-choice"]
    assert _with_refs(one[0]["text"], one[0]["refs"]) == one[0]["text"]  # already referenced: not repeated
    assert [f["text"].split(":")[0] for f in select_findings(frags, max_n=2)] == ["a1", "b1"]
    assert [f["text"].split(":")[0] for f in select_findings(frags)] == ["a1", "a2", "a3", "b1"]


def test_select_findings_states_each_quantity_once():
    """Checked against the picks derived by hand from the documented rule: of two findings with one topic
    (the Cd sample exceedance share, from two stages) only the stronger is shown, whichever stage it
    comes from; a finding without a topic, or with another topic, is unaffected; topics compare
    without regard to case and spacing; a tie goes to the first in report order."""
    def f(label, imp, topic=None):
        return {"text": f"{label}: 66 % (95 % CI 60-72 %)", "importance": imp, "topic": topic}

    cd = ["exceedance share", "soil", "Cd", "guide"]
    frags = [{"stage": "data_quality", "findings": [f("dq_cd", 0.7, cd), f("dq_other", 0.4)]},
             {"stage": "indices", "findings": [f("ix", 0.65)]},
             {"stage": "spatial", "findings": [f("sp_cd", 0.72, ["Exceedance  share", "soil", "cd", "GUIDE"]),
                                               f("sp_pb", 0.3, ["exceedance share", "soil", "Pb", "guide"])]}]
    picks = [x["text"].split(":")[0] for x in select_findings(frags)]
    assert picks == ["sp_cd", "ix", "dq_other", "sp_pb"]
    assert all("topic" not in x and "_topic" not in x for x in select_findings(frags))
    frags[2]["findings"][0]["importance"] = 0.7  # a tie: the earlier stage's finding stays
    assert [x["text"].split(":")[0] for x in select_findings(frags)] == ["dq_cd", "ix", "dq_other", "sp_pb"]


def test_finding_topic_is_stored_in_the_fragment(tmp_path):
    """Checked against the fragment JSON written by StageOutputs: a tuple topic is kept as a list of strings,
    a finding without one has no topic key."""
    out = StageOutputs(tmp_path, "spatial", "Spatial")
    out.finding("Cd above the guide value in 66 % (95 % CI 60-72 %).", importance=0.7,
                topic=("exceedance share", "soil", "Cd", "guide"))
    out.finding("Pb 12 % (95 % CI 8-16 %).", importance=0.2)
    out.finish()
    frag = json.loads(next((tmp_path / "fragments").glob("*.json")).read_text(encoding="utf-8"))
    assert frag["findings"][0]["topic"] == ["exceedance share", "soil", "Cd", "guide"]
    assert "topic" not in frag["findings"][1]


@pytest.mark.parametrize("text, ok", [
    ("Cd exceeds the guide value in 66 % of samples (95 % CI 60-72 %).", True),
    ("The geogenic factor explains 0.61 of Cd (90 % interval 0.52-0.70).", True),
    ("The Cd map has R² = 0.52 in spatial cross-validation.", True),
    ("Exceedance probability above 0.5 covers 41 % of the area.", True),
    ("Mean Igeo of Cd is 0.4 ± 0.2.", True),
    ("Cd exceeds the guide value in 66 % of samples.", False),
    ("Cd and Ni share a source (@fig-pmf-2).", False),
    ("Cd is likely natural.", False),
])
def test_states_uncertainty(text, ok):
    """Checked against hand-classified sentences: a number with an interval, skill or probability passes."""
    from hmlib.report import states_uncertainty

    assert states_uncertainty(text) is ok


def test_data_sources_of_the_shipped_regions_are_cited_from_the_bibliography():
    """Checked against the keys of the works each region's citation names (read by hand from params/)."""
    files = sorted((ROOT / "hmlib" / "data" / "bib").glob("*.bib"), key=lambda f: (f.name != "studies.bib", f.name))
    bib = "\n".join(p.read_text(encoding="utf-8") for p in files)  # the order hmlib.report uses
    cite = {r: yaml.safe_load((ROOT / "params" / f"{r}.yml").read_text())["region"]["data_citation"]
            for r in ("jura", "meuse", "coastal_demo", "arid_demo")}
    assert data_source_keys(cite["jura"], bib) == ["atteia1994", "goovaerts1997"]
    assert data_source_keys(cite["meuse"], bib)[:2] == ["rikken1993", "burrough1998"]
    assert data_source_keys(cite["arid_demo"], bib) == ["zhao2026tarim"]
    assert data_source_keys(cite["coastal_demo"], bib)[0].startswith("wu2025")


def test_reference_sets_name_their_authors_and_year_once_when_rendered(tmp_path):
    """Checked against pandoc's citeproc: each shipped reference set's cited name, rendered with the
    report's bibliography, names its year exactly once (no "Rudnick and Gao (2014) (Rudnick and Gao 2014)")
    and leaves no unresolved citation key."""
    import pypandoc

    from hmlib.descriptive import REFERENCE_SET_LABELS, reference_label
    from hmlib.report import _bibliography

    bib = _bibliography(tmp_path)
    names = sorted(REFERENCE_SET_LABELS)
    text = "\n\n".join(f"{i}. Compared with {reference_label(n)}." for i, n in enumerate(names))
    out = pypandoc.convert_text(text, "plain", format="markdown",
                                extra_args=["--citeproc", f"--bibliography={bib}", "--wrap=none"])
    lines = [ln for ln in out.splitlines() if ln.strip() and ln.strip()[0].isdigit()][:len(names)]
    assert len(lines) == len(names), out
    for name, line in zip(names, lines):
        assert "@" not in line and "???" not in line, line
        years = re.findall(r"(?<!\d)(19|20)\d\d(?!\d)", re.sub(r"GB \d+-\d{4}", "", line))  # a standard's number is not a year
        assert len(years) == 1 + ("Zhao" in line), (name, line)


def test_unit_code_is_written_for_readers_in_figures():
    """Checked against the SI symbol written by hand: a figure's axis label, title and legend say µg/L, never the
    data files' code ug/L."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hmlib.outputs import _reader_units

    fig, ax = plt.subplots()
    ax.plot([0, 1], label="As (ug/L)")
    ax.set_ylabel("concentration (ug/L)")
    ax.set_title("water, ug/L")
    ax.legend()
    _reader_units(fig)
    texts = [ax.get_ylabel(), ax.get_title(), ax.get_legend().get_texts()[0].get_text()]
    plt.close(fig)
    assert texts == ["concentration (µg/L)", "water, µg/L", "As (µg/L)"]


def test_finding_references_join_a_closing_parenthesis():
    """Checked against the house style written out by hand: a finding that ends in a parenthesis takes its
    cross-references inside it, never as a second parenthesis; one already citing its display is unchanged."""
    from hmlib.report import _with_refs

    assert _with_refs("Cd exceeded it in 12 % (95 % CI 7–19 %).", ["tbl-x"]) == \
        "Cd exceeded it in 12 % (95 % CI 7–19 %; @tbl-x)."
    assert _with_refs("Cd is high.", ["tbl-x", "fig-y"]) == "Cd is high (@tbl-x; @fig-y)."
    assert _with_refs("Cd is high (@tbl-x).", ["tbl-x"]) == "Cd is high (@tbl-x)."


def test_no_work_is_in_the_bibliography_under_two_keys(tmp_path):
    """Checked against the DOIs: every DOI of the merged bibliography belongs to exactly one key, so that a
    work is never listed twice as "1994a" and "1994b" (Atteia et al. 1994 once was, from two files)."""
    from hmlib.report import _bibliography

    text = _bibliography(tmp_path).read_text(encoding="utf-8")
    keys_by_doi: dict[str, set] = {}
    for chunk in re.split(r"(?=^@)", text, flags=re.M):
        key, doi = re.match(r"@\w+\{([^,]+),", chunk), re.search(r"doi\s*=\s*\{([^}]+)\}", chunk, flags=re.I)
        if key and doi:
            keys_by_doi.setdefault(doi.group(1).strip().lower(), set()).add(key.group(1).strip())
    assert {d: k for d, k in keys_by_doi.items() if len(k) > 1} == {}


def test_five_studies_are_in_the_bibliography_with_venue_and_year():
    """Checked against the studies' titles, venues and DOIs as published (looked up for this project)."""
    text = (ROOT / "hmlib" / "data" / "bib" / "studies.bib").read_text(encoding="utf-8")
    for doi in ("10.1016/j.marpolbul.2025.118969", "10.1038/s41598-026-38887-9", "10.1038/s41467-025-58026-8"):
        assert doi in text
    for title in ("sequential adaptive workflow", "coupling process driven model", "land--marine transition",
                  "Tarim River Basin", "soil metal(loid) mobility"):
        assert title in text
    assert "seed" not in text.lower()


def test_key_findings_come_first_strongest_first_with_cross_references(rendered):
    """Checked against the construction: findings 0.9 (stage 1), 0.7 (stage 2), 0.2 (stage 1), in that order."""
    d, html, _ = rendered
    qmd = (d / "report.qmd").read_text(encoding="utf-8")
    body = qmd.split("\n---\n", 1)[1]
    assert body.lstrip().startswith("# Key findings")
    kf = body.split("# Key findings", 1)[1].split("\n# ", 1)[0]
    items = re.findall(r"^\d+\. (.*)$", kf, flags=re.M)
    assert [i[:10] for i in items] == ["Cd exceeds", "Cd and Ni ", "Pb is belo"]
    assert "@tbl-demo-summary" in items[0] and "@fig-trend" in items[1]
    assert "**Overall.** Most Cd is geogenic: it shares a factor with Ni" in kf
    concl = body.split("## Conclusions", 1)[1].split("## Limitations", 1)[0]
    assert "Most Cd is geogenic" in concl and "(@sec-sources)" in concl


def _captions(html: str) -> dict[str, str]:
    """id -> caption label ("Table 3", "Figure 2") of every captioned table and figure of the HTML."""
    out = {}
    for m in re.finditer(r'<table id="([^"]+)"[^>]*>\s*<caption>\s*(?:<p>)?<strong>(Table \d+)\.</strong>', html):
        out[m.group(1)] = m.group(2)
    for m in re.finditer(r'<figure id="([^"]+)"[^>]*>.*?<figcaption>\s*(?:<p>)?<strong>(Figure \d+)\.</strong>',
                         html, flags=re.S):
        out[m.group(1)] = m.group(2)
    return out


def test_html_cross_references_are_links_to_the_numbered_captions(rendered):
    """Checked against the numbering implied by the construction order (see build_report_dir)."""
    _, html, _ = rendered
    caps = _captions(html)
    expected = {"tbl-demo-summary": "Table 1", "tbl-demo-wide": "Table 2", "tbl-not-run": "Table 3",
                "tbl-demo-long": "Table 4", "fig-maps-cd": "Figure 1", "fig-maps-pb": "Figure 2",
                "fig-maps-zn": "Figure 3", "fig-trend": "Figure 4", "fig-qq": "Figure 5"}
    assert {k: caps.get(k) for k in expected} == expected
    links = re.findall(r'<a href="#([^"]+)" class="xref">([^<]+)</a>', html)
    assert links, "no cross-reference links"
    for target, text in links:
        text = text.replace("\xa0", " ").replace("&nbsp;", " ")
        if target.startswith(("tbl-", "fig-")):
            assert caps[target] == text, (target, text)
        assert f'id="{target}"' in html
    assert ("sec-sources", "Section 2") in [(t, x.replace("\xa0", " ")) for t, x in links]
    assert "??" not in html


def test_html_title_is_the_report_title_and_reader_text_has_no_internal_words(rendered):
    """Checked against the issue's list of leaked words (staging folders, stage keys, seed, "(s)")."""
    _, html, _ = rendered
    assert re.search(r"<title>([^<]*)</title>", html).group(1) == TITLE
    reader = html.split('id="sec-manifest"')[0]  # the run manifest may name files and the random seed
    text = re.sub(r"<(script|style)\b.*?</\1>", "", reader, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    for word in ("staging", "data_quality", "isotopes_demo", REGION_ID, "(s)", "seed", "`"):
        assert word not in text, word
    assert "Atteia" in text and "Goovaerts" in text  # the data source, cited


def test_skipped_analyses_are_listed_with_reasons_and_get_no_section(rendered):
    """Checked against the manifest written by the test: one stage skipped with a reason."""
    d, html, _ = rendered
    qmd = (d / "report.qmd").read_text(encoding="utf-8")
    assert "# Isotope mixing" not in qmd
    assert "@sec-isotopes-demo" not in qmd and "settle it (@tbl-not-run)" in qmd  # no dangling reference
    nr = qmd.split("{#tbl-not-run}")[0].rsplit("| Analysis |", 1)[1]
    assert "| Isotope mixing | No isotope ratios in the data. |" in nr
    assert "Analyses not run and why" in html


def test_appendix_items_move_after_the_main_text_and_stay_referenced(rendered):
    """Checked against the construction: qq marked appendix, the long table longer than the main-text limit."""
    d, _, _ = rendered
    qmd = (d / "report.qmd").read_text(encoding="utf-8")
    appx = qmd.index("# Appendix: supplementary tables and figures")
    assert qmd.index("{#fig-qq") > appx and qmd.index("{#tbl-demo-long}") > appx
    assert qmd.index("{#tbl-demo-summary}") < appx and qmd.index("{#fig-trend") < appx
    main = qmd[:appx]
    assert "@fig-qq" in main and "@tbl-demo-long" in main  # still referenced from the text
    # method details marked appendix: under the stage's appendix heading, pointed to from its section
    assert qmd.index("rotation and its bootstrap") > qmd.index("{#sec-appendix-sources")
    assert "Details of the methods are in the appendix (@sec-appendix-sources)." in main


def test_grouped_figures_become_tabs_and_callouts_boxes(rendered):
    """Checked against the construction: three map figures in group "maps", one warning callout."""
    d, html, _ = rendered
    assert html.count('class="hm-tab"') == 3
    assert re.findall(r'data-tab="([^"]+)"', html) == ["Cd", "Pb", "Zn"]
    assert re.search(r'<div class="callout-warning">', html)
    typ = (d / "report.typ").read_text(encoding="utf-8")
    assert "#block(width: 100%, fill:" in typ and "Detection limits were not reported" in typ
    # in print the tab set is its figures in a row, each free to float: no block around any of them
    for m in ("cd", "pb", "zn"):
        i = typ.index(f"<fig-maps-{m}>")
        assert "#block[" not in typ[typ.rindex("#figure(", 0, i) - 12:i]


def test_tab_labels_cut_shared_parts_at_word_boundaries():
    """Checked against labels written by hand: names sharing a partial word ("igeo_s" of soil and sediment)
    keep the whole word; short element symbols are capitalised; an explicit tab key wins."""
    from hmlib.report import _tab_labels

    def names(*ns):
        return [{"name": n} for n in ns]

    assert _tab_labels(names("index_shares_igeo_soil", "index_shares_igeo_sediment")) == ["soil", "sediment"]
    assert _tab_labels(names("maps_cd", "maps_pb")) == ["Cd", "Pb"]
    assert _tab_labels(names("x_sediment_map", "x_basement_map")) == ["sediment", "basement"]
    assert _tab_labels([{"name": "a_soil", "tab": "Topsoil"}, {"name": "a_water"}]) == ["Topsoil", "water"]


def test_csv_links_are_relative_and_point_to_existing_files(rendered):
    """Checked against the files on disk: every tables/ link in the HTML names a CSV the stage wrote."""
    d, html, _ = rendered
    hrefs = re.findall(r'href="(tables/[^"]+)"', html)
    assert {"tables/demo_summary.csv", "tables/demo_long.csv"} <= set(hrefs)
    for h in hrefs:
        assert (d / h).is_file()


def test_pdf_metadata_cover_and_references(rendered):
    """Checked with pypdf (an independent PDF reader): title metadata, cover text, resolved references."""
    pypdf = pytest.importorskip("pypdf")
    _, _, pdf = rendered
    r = pypdf.PdfReader(str(pdf))
    assert r.metadata.title == TITLE
    cover = r.pages[0].extract_text()
    assert "demonstration valley" in cover and REGION_ID not in cover
    text = "\n".join(p.extract_text() for p in r.pages)
    assert "??" not in text
    assert re.search(r"Table\s1", text) and re.search(r"Figure\s5", text)


def test_pdf_text_stays_inside_the_page(rendered):
    """Checked with pypdf's text positions: no text run starts beyond the right margin or ends past the page."""
    pypdf = pytest.importorskip("pypdf")
    _, _, pdf = rendered
    r = pypdf.PdfReader(str(pdf))
    for i, page in enumerate(r.pages):
        width = float(page.mediabox.width)
        runs = []

        def visit(text, cm, tm, _font, size, runs=runs):
            if text.strip():
                scale = abs(tm[0] * cm[0]) or 1.0
                runs.append((tm[4] * cm[0] + cm[4], len(text.strip()) * 0.42 * size * scale, text))

        page.extract_text(visitor_text=visit)
        for x, w, t in runs:
            assert 0 <= x <= width - 40, (i, x, t)
            assert x + w <= width - 10, (i, x, w, t)


def test_wide_tables_go_landscape_at_7pt_without_hyphenation(rendered):
    """Checked against the Typst source and pypdf's page sizes: the 13-column table, whose longest words
    cannot fit the portrait text width at 7 pt (13 x "concentration"), is on a landscape page at 7 pt;
    hyphenation is off in table cells; the narrow tables keep automatic widths."""
    pypdf = pytest.importorskip("pypdf")
    d, _, pdf = rendered
    typ = (d / "report.typ").read_text(encoding="utf-8")
    i = typ.index("<tbl-demo-wide>")
    assert "#page(flipped: true)[#show figure.where(kind: table): set text(size: 7pt)" in typ[max(0, i - 4000):i]
    assert "set text(hyphenate: false)" in typ
    j = typ.index("<tbl-demo-summary>")
    assert "columns: 3," in typ[max(0, j - 600):j]
    pages = pypdf.PdfReader(str(pdf)).pages
    wide = [k for k, p in enumerate(pages) if "thirteen columns" in p.extract_text()]
    assert wide and all(float(pages[k].mediabox.width) > float(pages[k].mediabox.height) for k in wide)
    # no word of the table is broken with a hyphen at a line end (poppler's text, line by line)
    import shutil

    if shutil.which("pdftotext"):
        text = _pdftotext_pages(pdf)[wide[0]]
        assert "concentration" in text and not re.search(r"[a-z]-\s*\n\s*[a-z]", text)


def _font_sizes(page) -> list[tuple[float, str]]:
    """(size in pt as printed, text) of every text run of a pypdf page: the font size times the scale
    of the text and transformation matrices."""
    import math

    runs = []

    def visit(text, cm, tm, _font, size):
        if text.strip():
            runs.append((size * math.hypot(tm[0], tm[1]) * math.hypot(cm[0], cm[1]), text.strip()))

    page.extract_text(visitor_text=visit)
    return runs


def test_no_pdf_text_is_smaller_than_7pt(rendered):
    """Checked with pypdf's text matrices (an independent reader of the PDF): every text run on every
    page, tables, notes, code and the run manifest included, is set at 7 pt or more."""
    pypdf = pytest.importorskip("pypdf")
    _, _, pdf = rendered
    small = [(i, round(sz, 2), t) for i, p in enumerate(pypdf.PdfReader(str(pdf)).pages)
             for sz, t in _font_sizes(p) if sz < 7 - 1e-6]
    assert small == []


def _pdftotext_pages(pdf: Path) -> list[str]:
    import subprocess

    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def test_page_counts_agree_with_poppler(rendered):
    """Checked against poppler's pdftotext (independent of the pypdf bookmarks page_counts reads): the
    main text runs from the page whose text starts with the heading "Key findings" to the page before
    the one starting with "References" (each after the running header); the total is the page count."""
    import shutil

    from hmlib.report import page_counts

    if not shutil.which("pdftotext"):
        pytest.skip("poppler-utils (pdftotext) is not installed")
    _, _, pdf = rendered
    pages = _pdftotext_pages(pdf)

    def first_heading(name):  # a page whose first line after the running header is the heading
        for i, p in enumerate(pages):
            lines = [ln.strip() for ln in p.splitlines() if ln.strip()]
            if i > 1 and len(lines) > 1 and lines[1].startswith(name):
                return i
        raise AssertionError(name)

    counts = page_counts(pdf)
    assert counts["total"] == len(pages)
    assert counts["main_text"] == first_heading("References") - first_heading("Key findings")
    assert counts["front"] == first_heading("Key findings") == 2  # title page and contents
    assert counts["appendix"] == len(pages) - first_heading("Appendix")
    assert list(counts["sections"])[:2] == ["Key findings", "1 Data and their quality"]
    assert sum(counts["sections"].values()) == pytest.approx(len(pages) - counts["front"], abs=0.5)


def test_render_records_the_page_counts_in_the_manifest(tmp_path):
    """Checked against page_counts of the same PDF: render_report adds them to manifest.json."""
    from hmlib.report import page_counts

    params, manifest = build_report_dir(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    _, pdf = render_report(tmp_path, params=params, manifest=manifest)
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert written["report_pages"] == json.loads(json.dumps(page_counts(pdf)))
    assert written["stages"] == manifest["stages"]  # the rest of the manifest is kept


# ---------------------------------------------------------------------------------------------
# internal words in reader text
@pytest.mark.parametrize("text", [
    "As in seed 000, the background is adaptive.", "the seed-002 scale", "Seeds study 003 reports",
    "relative to UCC_RudnickGao2014", "guideline set GB15618_2018 gives", "set stages.sources.mdl to use it", "metals ['Zn'] exceed",
    "the metal(s) above", "written to .staging-jura-6804-1/report.html", "share: nan", "| Cd | None |", "Cd: boxplot, Co: clean_up",
    "the smelter\\_demo region",
])
def test_jargon_flags_internal_words(text):
    """Checked against hand-written sentences with each leak the issue lists (one per pattern)."""
    from hmlib.report import jargon

    assert jargon(text), text


@pytest.mark.parametrize("text", [
    "Seedlings and seedbeds were not sampled.", "the upper continental crust of Rudnick and Gao (2014) [@rudnick2003]",
    "Cd (mg/kg) [0.1, 2.3] in 95 % of samples", "the stages of the analysis", "see tables/exceedance_shares.csv",
    "Nanometre-scale particles; Nantes; False discovery rate; None of the samples exceeded it.",
    "the full table is [exceedance_shares.csv](tables/exceedance_shares.csv)",
])
def test_jargon_leaves_ordinary_text_alone(text):
    """Checked against hand-written reader sentences that resemble the patterns but are not leaks."""
    from hmlib.report import jargon

    assert jargon(text) == []


def test_assembled_report_has_no_internal_words(rendered):
    """Checked against the jargon patterns on the assembled report.qmd of the test report, whose
    bibliography keys and file names must not count as reader text."""
    from hmlib.report import jargon

    d, _, _ = rendered
    assert jargon((d / "report.qmd").read_text(encoding="utf-8")) == []


@pytest.mark.slow
# each region in the stage contract's xdist group: `make test` (-n 2 --dist loadgroup) then runs its
# stages once per session on one worker and both tests read that run (test_stage_contract._RUNS)
@pytest.mark.parametrize("region", [pytest.param(r, marks=pytest.mark.xdist_group(r))
                                    for r in ["jura", "meuse", "coastal_demo"]])
def test_region_report_text_has_no_internal_words(region, tmp_path_factory):
    """Every stage's run() and report() on a shipped region (reduced settings, as the stage contract
    runs them), assembled into report.qmd: no reader-facing sentence, caption or table cell matches
    the developer guide's list of internal words (seed, reference-set codes, configuration keys,
    Python syntax, "(s)" plurals)."""
    from test_stage_contract import _run_region

    from hmlib.params import load_params
    from hmlib.report import jargon

    out_dir, outcome = _run_region(region, tmp_path_factory.mktemp("jargon"))
    params = load_params(ROOT / "params" / f"{region}.yml")
    manifest = {"created": "2026-01-01T00:00:00", "hmlib_version": "0", "git_commit": None,
                "params_file": f"params/{region}.yml", "params_sha256": "0" * 64, "library_sha256": "0" * 64,
                "seed": 0, "platform": "", "inputs": {},
                "stages": [{"name": n, "notebook": "", "status": "ok" if st == "ok" else "skipped",
                            "seconds": 0.0, "reason": d if isinstance(d, str) else None}
                           for n, (st, d) in outcome.items()], "packages": {}}
    qmd = build_qmd(out_dir, params=params, manifest=manifest).read_text(encoding="utf-8")
    leaks = jargon(qmd)
    assert leaks == [], "\n".join(f"{what}: ...{x}..." for what, x in leaks)


def test_build_qmd_is_deterministic(tmp_path):
    """Checked against a second assembly of the same folder: identical text (no hidden state)."""
    params, manifest = build_report_dir(tmp_path)
    a = build_qmd(tmp_path, params=params, manifest=manifest).read_text(encoding="utf-8")
    b = build_qmd(tmp_path, params=params, manifest=manifest).read_text(encoding="utf-8")
    assert a == b
    json.loads((tmp_path / "fragments" / "data_quality.json").read_text())  # fragments untouched and valid


# ---------------------------------------------------------------------------------------------
# figure helpers
def _texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


@pytest.mark.parametrize("aspect, n, ncols", [(0.1, 4, 1), (1.08, 4, 2), (1.0, 1, 1), (3.0, 3, 3), (1.08, 2, 2),
                                              (1.08, 7, 3)])
def test_map_layout_follows_the_region_shape(aspect, n, ncols):
    """Checked against the layouts worked out by hand for a coastal strip, a square region (two maps side by
    side rather than stacked into a full page) and a tall one; no figure taller than MAP_MAX_HEIGHT_IN."""
    _, c, (w, h) = plots.map_layout(n, aspect=aspect)
    assert c == ncols
    assert w <= plots.PAGE_WIDTH_IN + 1e-9 and h <= plots.MAP_MAX_HEIGHT_IN + 1e-9


def test_map_panels_carry_scale_bar_north_arrow_crs_note_and_legible_text():
    """Checked against the print rules: >= 7 pt text, page width, scale bar artist, CRS note, named threshold."""
    from matplotlib_scalebar.scalebar import ScaleBar

    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 60_000, 80), rng.uniform(0, 5_000, 80)
    vals = pd.DataFrame({"Cd": np.exp(rng.normal(-1, 0.5, 80)), "Pb": np.exp(rng.normal(3, 0.5, 80))})
    fig = plots.map_panels(vals, x, y, crs="EPSG:28992", coordinate_unit="m", unit="mg/kg",
                           thresholds={"Cd": {"guide": 0.8}})
    fig.canvas.draw()
    assert fig.get_figwidth() <= plots.PAGE_WIDTH_IN + 1e-9
    assert any(isinstance(a, ScaleBar) for a in fig.axes[0].artists)
    texts = [t.get_text() for t in _texts(fig)]
    assert any(t.startswith("EPSG:28992 (Amersfoort / RD New)") for t in texts)
    assert "N" in texts and any("Guide value (0.8 mg/kg)" in t for t in texts)
    assert min(t.get_fontsize() for t in _texts(fig)) >= plots.MIN_FONT_PT
    local = plots.map_panels(vals, x / 1000, y / 1000, crs="local", coordinate_unit="km", unit="mg/kg")
    assert any(t.get_text() == "Local grid, km" for t in _texts(local))
    plt.close("all")


def test_distribution_plots_name_thresholds_and_keep_text_legible():
    """Checked against the print rules and the thresholds given: every threshold named, >= 7 pt text."""
    rng = np.random.default_rng(4)
    conc = pd.DataFrame({"Cd": np.exp(rng.normal(-1, 0.5, 100)), "Pb": np.exp(rng.normal(3, 0.5, 100))})
    th = {"Cd": {"background": 0.1, "guide": 0.8}, "Pb": {"guide": 50, "cleanup": 5000}}
    for fig in (plots.histograms(conc, unit="mg/kg", thresholds=th), plots.boxplots(conc, unit="mg/kg", thresholds=th)):
        fig.canvas.draw()
        texts = [t.get_text() for t in _texts(fig)]
        for name in ("Background value", "Guide value", "Cleanup value"):
            assert any(t.startswith(name) for t in texts), (name, texts)
        assert any("axis" in t for t in texts if t.startswith("Cleanup"))  # 5000 lies far outside the data
        assert min(t.get_fontsize() for t in _texts(fig)) >= plots.MIN_FONT_PT
        assert fig.get_figwidth() <= plots.PAGE_WIDTH_IN + 1e-9
    hist = plots.histograms(conc, unit="mg/kg", thresholds=th)
    assert hist.axes[1].get_xlim()[1] < np.log10(5000)  # the clean-up value does not stretch the axis
    plt.close("all")


def test_uninformative_panels_are_recognised():
    """Checked against hand-made inputs: empty, constant, 99 % one class, and a varied panel."""
    assert plots.uninformative([]) == "no values"
    assert plots.uninformative([2.0, 2.0, 2.0]) == "all values equal 2"
    assert plots.uninformative(["low"] * 99 + ["high"]).startswith("99 % of values in one class")
    assert plots.uninformative(np.linspace(0, 1, 50)) is None


def test_html_embeds_figures_at_screen_size(rendered):
    """Checked against the decoded images: every embedded PNG is at most HTML_FIGURE_MAX_PX wide,
    while the PDF's source figures keep their full resolution on disk."""
    import base64
    import io

    from PIL import Image

    from hmlib.report import HTML_FIGURE_MAX_PX

    d, html, _ = rendered
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == 5
    for b64 in imgs:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert im.width <= HTML_FIGURE_MAX_PX
    assert not (d / "_html").exists()  # the scratch copies are removed


def test_unreferenced_lists_main_text_items_the_prose_never_mentions(tmp_path):
    """Checked against the construction: the wide table is never referred to; everything else is."""
    from hmlib.report import unreferenced

    build_report_dir(tmp_path)
    frag = json.loads((tmp_path / "fragments" / "data_quality.json").read_text())
    assert unreferenced(frag) == ["tbl-demo-wide"]


def test_pdf_cross_references_and_csv_links_are_links(rendered):
    """Checked with pypdf's link annotations: the main text's references jump inside the document (to the
    page where pdftotext finds the caption of Table 1), and each table note links to an existing CSV."""
    pypdf = pytest.importorskip("pypdf")
    d, _, pdf = rendered
    r = pypdf.PdfReader(str(pdf))
    internal, uris = [], []
    for i, p in enumerate(r.pages):
        for a in p.get("/Annots") or []:
            a = a.get_object()
            if a.get("/Subtype") != "/Link":
                continue
            if "/Dest" in a:
                dest = a["/Dest"]
                target = (r.get_destination_page_number(r.named_destinations[dest]) if isinstance(dest, str)
                          else r.get_page_number(dest[0].get_object()))
                internal.append((i, target))
            elif "/A" in a and a["/A"].get("/URI"):
                uris.append(str(a["/A"]["/URI"]))
    kf = 2  # the page of Key findings (title page and contents before it)
    assert len([x for x in internal if x[0] >= kf]) >= 8
    table1 = next(i for i, p in enumerate(r.pages)
                  if i >= kf and re.search(r"Table\s1: Summary statistics", p.extract_text()))
    assert (kf, table1) in internal  # the key finding's "(Table 1)" jumps to the table
    csvs = [u for u in uris if u.startswith("tables/")]
    assert {"tables/demo_summary.csv", "tables/demo_long.csv"} <= set(csvs)
    assert all((d / u).is_file() for u in csvs)


def test_covariate_labels_name_model_features_for_the_reader():
    """Checked against the labels written in params/meuse.yml by hand: a plain column and a one-hot column
    ``name=level`` get the reader's name, a column without a label keeps its name, and a label for a
    column that is not a covariate is refused with the key named."""
    from hmlib.params import load_params

    d = load_params(ROOT / "params" / "meuse.yml").data
    assert d.covariate_label("dist") == "distance to the river (normalised)"
    assert d.covariate_label("ffreq=1") == "flooding frequency class: land flooded about every 2 years"
    # a code the data's documentation (R package sp, meuse help page: "DEN = ??") leaves open is said to be so
    assert d.covariate_label("landuse=DEN") == "land use: class DEN (not described)"
    assert d.covariate_label("landuse=Zz") == "land use Zz"            # a class without a label keeps its code
    assert d.class_label("landuse", "W") == "pasture" and d.class_label("lime", 1.0) == "lime present"
    assert d.covariate_label("Zn") == "Zn"
    raw = yaml.safe_load((ROOT / "params" / "meuse.yml").read_text(encoding="utf-8"))
    raw["data"]["covariate_labels"]["depth"] = "sampling depth"
    with pytest.raises(ValueError, match="covariate_labels: got 'depth'; expected a column also listed"):
        type(d).model_validate(raw["data"])
    raw["data"]["covariate_labels"].pop("depth")
    raw["data"]["category_labels"]["om"] = {"1": "low"}
    with pytest.raises(ValueError, match="category_labels: got 'om'; expected a column also listed under categorical"):
        type(d).model_validate(raw["data"])


def test_units_in_table_cells_never_wrap_after_the_slash(rendered):
    """Checked against the Typst source and poppler's text of the printed page: every "(mg/kg)" of the
    13-column table (12 headers, set in columns narrowed to their longest words) is in an unbreakable
    box and prints whole on one line, never as "(mg/" over "kg)"."""
    import shutil

    d, _, pdf = rendered
    typ = (d / "report.typ").read_text(encoding="utf-8")
    i = typ.index("<tbl-demo-wide>")
    assert typ[typ.rindex("#figure(", 0, i):i].count("#box[(mg/kg)]") == 12
    if not shutil.which("pdftotext"):
        pytest.skip("poppler-utils (pdftotext) is not installed")
    page = next(p for p in _pdftotext_pages(pdf) if "thirteen columns" in p)
    assert page.count("(mg/kg)") == 12 and not re.search(r"\(mg/\s", page)


def test_reader_typography_of_the_assembled_text():
    """Checked against strings written by hand in the report's typography: per cent signs after a no-break space,
    minus signs for negative numbers, en dashes in ranges, codes and attributes untouched, µg/L for the unit code."""
    from hmlib.report import _reader_typography

    nb = "\u00a0"
    assert _reader_typography("(95% CI 2.11–2.88) and 62 %) at least 40% of") == (
        f"(95{nb}% CI 2.11–2.88) and 62{nb}%) at least 40{nb}% of")
    assert _reader_typography("ranges from -0.037 to -0.027; 0.60-0.73.") == "ranges from −0.037 to −0.027; 0.60–0.73."
    assert _reader_typography("5th-95th percentile, P5-P95 14-27, child (0-6 years)") == (
        "5th–95th percentile, P5–P95 14–27, child (0–6 years)")
    assert _reader_typography("0.0022 (5.2 × 10^-4^-0.012)") == "0.0022 (5.2 × 10^−4^–0.012)"
    # a standard's number, a date, a statistic's name and a file name keep their hyphen
    kept = "GB 15618-2018, HJ/T 166-2004, 2026-12-05T02:42, UTL95-95, figures/a-1.png, 10-fold"
    assert _reader_typography(kept) == kept
    assert _reader_typography("![x](f.png){width=100%}") == "![x](f.png){width=100%}"
    assert _reader_typography("As (ug/L), ug/L") == "As (µg/L), µg/L"


def test_counts_read_as_a_reader_says_them():
    """Checked against phrases written by hand: never "4 of 4 metals" or "0 of 3"."""
    from hmlib.descriptive import count_of

    assert count_of(4, 4, "metals") == "all 4 metals"
    assert count_of(2, 2, "metals") == "both metals"
    assert count_of(0, 3, "metals") == "none of the 3 metals"
    assert count_of(3, 7, "metals") == "3 of 7 metals"
    assert count_of(1, 1, "metal and medium combinations") == "the one metal and medium combination"


def test_metal_and_medium_lists_are_grouped_by_medium():
    """Checked against phrases written by hand: pairs grouped per medium in order of first appearance, and a
    medium whose every metal is listed named as such."""
    from hmlib.descriptive import by_medium

    pairs = [("soil", "As"), ("water", "Cd"), ("soil", "Hg"), ("water", "Pb")]
    assert by_medium(pairs) == ["As and Hg in soil", "Cd and Pb in water"]
    assert by_medium(pairs, n_metals={"soil": 8, "water": 2}) == ["As and Hg in soil", "every metal in water"]


def test_probability_panel_that_would_read_as_one_colour_becomes_a_sentence():
    """Checked against probabilities set by hand: a metal whose exceedance probability stays below 0.25 in all but
    0.2 % of the cells, or below 0.01 everywhere, is left out with the reason; a metal with a real gradient is drawn."""
    from types import SimpleNamespace

    from hmlib.spatial import grid_maps_figure

    n = 1000
    x, y = np.meshgrid(np.arange(40.0), np.arange(25.0))
    grad = np.linspace(0, 1, n)
    nearly_flat = np.full(n, 0.05)
    nearly_flat[:2] = 0.53
    maps = {m: SimpleNamespace(threshold=1.0, grid=pd.DataFrame({"x": x.ravel(), "y": y.ravel(),
                                                                  "exceedance_probability": p}))
            for m, p in {"Cd": grad, "Zn": nearly_flat, "Ni": np.full(n, 0.001)}.items()}
    fig, left_out = grid_maps_figure(maps, kind="probability", unit="mg/kg", crs="local", coordinate_unit="km")
    assert fig is not None and set(left_out) == {"Zn", "Ni"}
    assert left_out["Zn"] == ("the probability of exceeding 1 mg/kg is below 0.25 in all but 0.2 % of the cells "
                              "(at most 0.53)")
    assert left_out["Ni"].endswith("below 0.01 in every cell")


def test_overall_paragraph_concludes_instead_of_repeating_a_finding():
    """Checked against sentences written by hand: a conclusion that repeats a key finding enters the overall
    paragraph as its verdict with a pointer to the finding; a conclusion that adds to the findings enters whole."""
    from hmlib.report import _overall_sentence

    pmf = ("PMF attributes 90 % of the soil Cd (bootstrap 77 to 100 %) to a factor of its own, and its log "
           "concentrations track Ni (r = 0.67): the Cd exceedances are plausibly but not demonstrably natural")
    findings = [{"text": "Cd exceeds the guide value in 66 % of the samples (95 % CI 60–71 %)."},
                {"text": pmf + " (@tbl-pmf-attribution)."}]
    assert _overall_sentence(pmf, findings) == ("The Cd exceedances are plausibly but not demonstrably natural "
                                                "(finding 2).")
    other = "Living on these soils poses no appreciable noncancer hazard (a child's hazard index at most 0.83)"
    assert _overall_sentence(other, findings) == other + "."
