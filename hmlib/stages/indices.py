"""Stage ``indices``: pollution indices, static vs adaptive background, dual-media zoning and bearing capacity.

``run`` composes the method modules :mod:`hmlib.indices` (indices, class tables, backgrounds) and
:mod:`hmlib.zoning` (misjudgment, dual-media zones, bearing capacity); ``report`` writes the
section. The indices' background comes from the baselines stage when it ran (optional reads of
``baselines`` and ``adaptive_background``), else from the region's reference set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from pydantic import Field

from .. import indices as ix
from .. import zoning as zn
from ..descriptive import _and
from ..errors import ReferenceDataError
from ..params import StageOptions
from ..reference import guideline_values
from .base import Read, StageSpec

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]

_Index = Literal["CF", "Igeo", "EF", "Er", "Cdeg", "PLI", "Nemerow", "PERI"]
_Method = Literal["imea", "imed", "rcf", "boxplot", "em"]


class Options(StageOptions):
    """Options of stage ``indices`` (``stages: indices:`` in params)."""

    background_source: Literal["reference", "baseline", "adaptive"] = Field(
        default="baseline",
        description="background B of the indices: the params' reference set, a static baseline of stage "
                    "'baselines', or the per-sample adaptive background (EM + GPR)")
    baseline_method: Literal["recommended", "imea", "imed", "rcf", "boxplot", "em"] = Field(
        default="recommended", description="baseline method used when background_source is 'baseline', and as "
                                           "the static side of the static-vs-adaptive comparison")
    baseline_stratum: str | None = Field(
        default=None, description="stratification column (a covariate the baselines stage stratified by, e.g. Rock): "
                                  "each sample gets its stratum's baseline; None: the unstratified baseline")
    reference_background: str | None = Field(
        default=None, description="background reference set; default: references.background of the params")
    indices: list[_Index] = Field(
        default_factory=lambda: ["CF", "Igeo", "EF", "Er", "Cdeg", "PLI", "Nemerow", "PERI"],
        description="indices computed for solid media")
    ef_reference_element: str | None = Field(
        default=None, description="conservative reference element of the enrichment factor (Al, Fe, Sc, Ti...); "
                                  "EF is skipped when unset, not measured or without a background value")
    igeo_factor: float = Field(default=1.5, gt=0, description="the constant k of the geoaccumulation index, log2(C / (k B))")
    toxic_response: str = Field(default="Hakanson_1980", description="toxic response factor set")
    class_limits: Literal["scaled", "Hakanson_1980", "PERI_Wu2025"] = Field(
        default="scaled",
        description="class limits of PERI and Cdeg: Hakanson's scaled to the metals assessed (first PERI limit: "
                    "sum of Tr x 150/133; first Cdeg limit: number of metals), Hakanson's original 150/300/600 and "
                    "8/16/32, or PERI 100/200/400 of Wu et al. (2025)")
    integrated_metals: list[str] | None = Field(
        default=None, description="metals summed by Cdeg, PLI, Nemerow and PERI; None: the measured trace metals "
                                  "(major and conservative elements such as Al, Fe, Mn, Ti, V, Sc left out)")
    nemerow_reference: Literal["guideline", "background"] = Field(
        default="guideline", description="single-factor index of Nemerow: C over the sample's guideline value "
                                         "(graded after HJ/T 166-2004; needs references.guideline) or C over the "
                                         "background (not graded)")
    water_standard: str | None = Field(
        default=None, description="water standard of HPI; default: references.water_standard, else WHO_2022")
    misjudgment_indices: list[_Index] = Field(
        default_factory=lambda: ["CF", "Igeo", "Er", "PERI"],
        description="indices compared between the static and the adaptive background")
    zoning_methods: list[_Method] = Field(
        default_factory=lambda: ["imea", "imed", "rcf", "boxplot"],
        description="baseline methods whose min and max bound the dual-media zones (Wu et al. 2025 used four)")
    zoning_media: list[str] | None = Field(
        default=None, min_length=2, max_length=2,
        description="two media paired by site for dual-media zoning (x axis, y axis); default: the first two solid media")
    guideline_threshold: str | None = Field(
        default=None, description="guideline threshold of the bearing capacity and of Nemerow; default: "
                                  "references.guideline_threshold")


SPEC = StageSpec(
    name="indices",
    notebook="20_indices.ipynb",
    title="Pollution indices, static vs adaptive background, dual-media zoning and bearing capacity",
    options=Options,
    reads=(Read("baselines", required=False), Read("adaptive_background", required=False)),
    writes=("indices",),
    requires=(),
)

_WATER_LABEL = {"WHO_2022": "WHO guidelines for drinking-water quality (2022)", "GB5749_2022": "GB 5749-2022"}


@dataclass
class Result:
    """What the indices stage computed.

    Attributes
    ----------
    indices : tidy table sample_id, medium, metal (``all``: integrated), index, value, class,
        background_used, class_rank.
    summary, shares : :func:`hmlib.indices.index_summary`, :func:`hmlib.indices.index_class_shares`.
    class_tables : index -> class table used (Cdeg and PERI scaled unless the options say otherwise).
    class_info : first limits and rule of the Cdeg/PERI classes (:func:`hmlib.indices.integrated_class_tables`).
    backgrounds : medium -> label of the background used.
    assessed : metals summed by the integrated indices.
    notes : reader's notes on what was skipped or substituted.
    misjudgment : class changes static vs adaptive background (None without an adaptive background).
    zoning_sites, zoning_bounds, zoning_shares : dual-media zoning (None when not applicable).
    zoning_media, zoning_reason : the media paired, or why zoning was not done.
    capacity, capacity_summary, capacity_notes : bearing capacity (None without a guideline set).
    nemerow_media : media whose Nemerow index is computed against guideline values (else the background).
    """

    indices: pd.DataFrame
    summary: pd.DataFrame
    shares: pd.DataFrame
    class_tables: dict
    class_info: dict
    backgrounds: dict
    assessed: list
    notes: list = field(default_factory=list)
    misjudgment: pd.DataFrame | None = None
    misjudgment_media: list = field(default_factory=list)
    static_labels: dict = field(default_factory=dict)
    zoning_sites: pd.DataFrame | None = None
    zoning_bounds: pd.DataFrame | None = None
    zoning_shares: pd.DataFrame | None = None
    zoning_media: tuple | None = None
    zoning_reason: str | None = None
    capacity: pd.DataFrame | None = None
    capacity_summary: pd.DataFrame | None = None
    capacity_notes: list = field(default_factory=list)
    nemerow_media: list = field(default_factory=list)
    guideline_set: str | None = None
    threshold: str | None = None
    water_standard: str | None = None
    nemerow_guideline: str | None = None


def _solid_media(data) -> list[str]:
    return [m for m in data.media if data.unit(m) == "mg/kg"]


def _water_media(data) -> list[str]:
    return [m for m in data.media if data.unit(m) == "ug/L"]


def check(ctx) -> list[str]:
    """Options against the region: stratum column, EF element, integrated metals, zoning media."""
    o, p = ctx.options, ctx.params
    probs = []
    cols = set(p.data.covariates)
    if o.baseline_stratum and o.baseline_stratum not in cols:
        probs.append(f"stages.indices.baseline_stratum: got {o.baseline_stratum!r}; expected one of the covariates "
                     f"{sorted(cols)}")
    if o.ef_reference_element and o.ef_reference_element not in p.metals:
        probs.append(f"stages.indices.ef_reference_element: got {o.ef_reference_element!r}; expected a measured "
                     f"element ({', '.join(p.metals)})")
    if o.integrated_metals is not None:
        bad = [m for m in o.integrated_metals if m not in p.metals]
        if bad:
            probs.append(f"stages.indices.integrated_metals: got {bad}; expected measured metals "
                         f"({', '.join(p.metals)})")
    if o.zoning_media is not None:
        bad = [m for m in o.zoning_media if m not in p.media]
        if bad:
            probs.append(f"stages.indices.zoning_media: got {bad}; expected media of the region ({', '.join(p.media)})")
    if p.data.ph_column and p.data.ph_column not in cols:
        probs.append(f"data.ph_column: got {p.data.ph_column!r}; expected one of the covariates {sorted(cols)}")
    if p.data.land_use_column and p.data.land_use_column not in cols:
        probs.append(f"data.land_use_column: got {p.data.land_use_column!r}; expected one of the covariates "
                     f"{sorted(cols)}")
    return probs


def _conditions(ctx, medium):
    from ..descriptive import sample_conditions

    p = ctx.params
    return sample_conditions(ctx.data.sites(medium), ph_column=p.data.ph_column,
                             land_use_column=p.data.land_use_column, land_use=p.references.land_use,
                             guideline_set=p.references.guideline)


def _sample_guidelines(ctx, medium: str, threshold: str | None):
    """Per-sample guideline values of ``threshold`` for one medium and the reader's notes on them:
    ``(table, notes)``; ``(None, [why])`` when no value applies; ``(None, None)`` when the guideline set has no
    values for the medium at all (the caller writes one sentence for all such media)."""
    gset = ctx.params.references.guideline
    try:
        gl = guideline_values(gset, medium=medium, unit=ctx.data.unit(medium))
    except ReferenceDataError:  # a set without values for this medium: reported, not raised
        return None, None
    cond, default, _ = _conditions(ctx, medium)
    try:
        return zn.sample_guidelines(gl, cond, threshold_name=threshold, default=default)
    except ValueError as e:
        why = str(e)
        return None, [_in_medium(medium, why[:1].upper() + why[1:].rstrip(".") + ".",
                                 multi=len(_solid_media(ctx.data)) + len(_water_media(ctx.data)) > 1)]


def _in_medium(medium: str, text: str, *, multi: bool) -> str:
    """``text`` (a sentence) as said of one medium: "In sediment, no guideline value applies ..." when the
    region has several media, else unchanged."""
    if not multi:
        return text
    keep = text[:2].isupper()  # an acronym such as "WHO" keeps its case
    return f"In {medium}, " + (text if keep else text[:1].lower() + text[1:])


def _no_values_sentence(gset: str, media: list[str]) -> str:
    """One sentence for the media a guideline set gives no values for."""
    from ..descriptive import reference_label

    name = reference_label(gset, cite=False)
    return (f"{name[0].upper() + name[1:]} gives no values for {_or(media)}, so no bearing capacity is computed "
            f"for {'it' if len(media) == 1 else 'them'}.")


def _or(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def run(ctx) -> Result:
    """Indices per solid and water medium, misjudgment, dual-media zoning and bearing capacity."""
    o, data, p = ctx.options, ctx.data, ctx.params
    solid, water = _solid_media(data), _water_media(data)
    ref_set = o.reference_background or p.references.background
    tr = ix.toxic_response_factors(o.toxic_response)
    assessed = ix.assessed_metals(data.metals, integrated_metals=o.integrated_metals,
                                  ef_reference_element=o.ef_reference_element)
    class_tables = {k: ix.load_index_classes(v, k) for k, v in ix.DEFAULT_CLASS_SETS.items()}
    scaled, class_info = ix.integrated_class_tables(toxic_response=tr, metals=assessed, limits=o.class_limits)
    class_tables.update(scaled)
    baselines = ctx.read_table("baselines")
    adaptive = ctx.read_table("adaptive_background")
    threshold = o.guideline_threshold or p.references.guideline_threshold
    gset = p.references.guideline
    notes: list[str] = []
    multi = len(solid) + len(water) > 1
    parts, backgrounds, all_bg = [], {}, {}
    nemerow_guideline, nemerow_media = None, []
    for m in solid:
        conc = data.wide(m)
        conc.index = conc.index.astype(str)
        bgs, n = ix.solid_backgrounds(sample_ids=conc.index, sites=data.sites(m), medium=m, unit=data.unit(m),
                                      reference_set=ref_set, source=o.background_source,
                                      baseline_method=o.baseline_method, baseline_stratum=o.baseline_stratum,
                                      baselines=baselines, adaptive=adaptive)
        notes += n
        all_bg[m] = bgs
        bg, label = bgs["used"]
        backgrounds[m] = label
        have = [c for c in conc.columns if c in (bg.columns if isinstance(bg, pd.DataFrame) else bg.index)]
        if len(have) < conc.shape[1]:
            notes.append(f"No background for {', '.join(sorted(set(conc.columns) - set(have)))} in {m} ({label}); "
                         "these metals have no indices.")
        nem_std = None
        if "Nemerow" in o.indices and o.nemerow_reference == "guideline":
            if gset:
                per, _ = _sample_guidelines(ctx, m, threshold)
                if per is not None and len(per):
                    nem_std = per.pivot_table(index="sample_id", columns="metal", values="threshold", aggfunc="first")
                    nem_std.columns.name = None
                    nemerow_guideline = gset
                    nemerow_media.append(m)
            if nem_std is None:
                notes.append(_in_medium(m, "No guideline value applies, so the Nemerow index is computed against "
                                           "the background and not graded.", multi=multi))
        t, n = ix.compute_indices(conc[have], bg[have] if isinstance(bg, pd.DataFrame) else bg, medium=m,
                                  background_used=label, toxic_response=tr, class_tables=class_tables,
                                  indices=tuple(o.indices), ef_reference_element=o.ef_reference_element,
                                  igeo_factor=o.igeo_factor, integrated_metals=assessed,
                                  nemerow_standard_mg_kg=nem_std)
        parts.append(t)
        notes += [_in_medium(m, x, multi=multi) for x in n]
    wstd = o.water_standard or p.references.water_standard or "WHO_2022"
    for m in water:
        conc = data.wide(m)
        conc.index = conc.index.astype(str)
        t, n = ix.compute_water_indices(conc, standard_ug_l=ix.water_standard_values(wstd), medium=m,
                                        standard_name=_WATER_LABEL.get(wstd, wstd), classes=class_tables["HPI"])
        parts.append(t)
        notes += [_in_medium(m, x, multi=multi) for x in n]
    table = pd.concat(parts, ignore_index=True)
    res = Result(indices=table, summary=ix.index_summary(table), shares=ix.index_class_shares(table, class_tables),
                 class_tables=class_tables, class_info=class_info, backgrounds=backgrounds, assessed=assessed,
                 notes=list(dict.fromkeys(notes)), guideline_set=gset, threshold=threshold, water_standard=wstd,
                 nemerow_guideline=nemerow_guideline, nemerow_media=nemerow_media)

    # static vs adaptive background (Sun et al. 2025)
    mis_media = [m for m in solid if "adaptive" in all_bg[m]]
    if mis_media:
        static_t, adaptive_t = [], []
        for m in mis_media:
            conc = data.wide(m)
            conc.index = conc.index.astype(str)
            sb = all_bg[m]["static"][0]
            ab = all_bg[m]["adaptive"][0]
            cols = [c for c in conc.columns if c in ab.columns
                    and c in (sb.columns if isinstance(sb, pd.DataFrame) else sb.index)]
            for _which, (bg, label), out in (("static", all_bg[m]["static"], static_t),
                                            ("adaptive", all_bg[m]["adaptive"], adaptive_t)):
                t, _ = ix.compute_indices(conc[cols], bg[cols] if isinstance(bg, pd.DataFrame) else bg, medium=m,
                                          background_used=label, toxic_response=tr, class_tables=class_tables,
                                          indices=tuple(o.misjudgment_indices), igeo_factor=o.igeo_factor,
                                          integrated_metals=assessed)
                out.append(t)
        res.misjudgment = zn.background_misjudgment(pd.concat(static_t, ignore_index=True),
                                                    pd.concat(adaptive_t, ignore_index=True),
                                                    indices=tuple(o.misjudgment_indices))
        res.misjudgment_media = mis_media
        res.static_labels = {m: all_bg[m]["static"][1] for m in mis_media}

    # dual-media zoning (Wu et al. 2025, section 2.1)
    pair = list(o.zoning_media or solid[:2])
    if len(pair) != 2:
        res.zoning_reason = "the region has fewer than two solid media"
    elif not p.data.site_column:
        res.zoning_reason = "no column pairs the media by site"
    elif baselines is None:
        res.zoning_reason = "no geochemical baselines were computed"
    else:
        sites, bounds, shares = zn.dual_media_zoning(data.samples, data.concentrations, baselines,
                                                     medium_a=pair[0], medium_b=pair[1], methods=o.zoning_methods)
        res.zoning_sites, res.zoning_bounds, res.zoning_shares = sites, bounds, shares
        res.zoning_media = tuple(pair)

    # bearing capacity: each sample against its own guideline value
    if gset:
        caps, cnotes, no_values = [], [], []
        for m in solid + water:
            per, n = _sample_guidelines(ctx, m, threshold)
            if n is None:
                no_values.append(m)
            else:
                cnotes += n
            if per is None or per.empty:
                continue
            conc = data.wide(m)
            missing = [x for x in conc.columns if x not in set(per["metal"])]
            if missing:
                from ..descriptive import reference_label, threshold_header

                name = reference_label(gset, cite=False)
                cnotes.append(f"{name[0].upper() + name[1:]} gives no {threshold_header(threshold).lower()} for "
                              f"{', '.join(missing)} in {m}, so no capacity is computed for "
                              f"{'it' if len(missing) == 1 else 'them'}.")
            caps.append(zn.bearing_capacity(conc, per, medium=m, unit=data.unit(m)))
        res.capacity_notes = ([_no_values_sentence(gset, no_values)] if no_values else []) + list(dict.fromkeys(cnotes))
        if caps:
            res.capacity = pd.concat(caps, ignore_index=True)
            res.capacity_summary = zn.bearing_capacity_summary(res.capacity)
    return res




def _wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of k / n (statsmodels)."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(int(k), max(int(n), 1), alpha=0.05, method="wilson")
    return float(lo), float(hi)


def _title(r: Result) -> str:
    parts = ["Pollution indices"]
    if r.misjudgment is not None:
        parts.append("static and adaptive background")
    if r.zoning_sites is not None:
        parts.append("dual-media zoning")
    if r.capacity is not None:
        parts.append("bearing capacity")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _overview(r: Result) -> pd.DataFrame:
    """Per medium and metal: CF median (90th percentile) and the shares above the lowest Igeo, Er (and EF) class."""
    sm = r.summary[r.summary["metal"] != "all"]
    rows = {}
    for x in sm.itertuples():
        row = rows.setdefault((x.medium, x.metal), {"Medium": x.medium, "Metal": x.metal})
        if x.index == "CF":
            row["CF, median (90th percentile)"] = f"{x.median:.2f} ({x.p90:.2f})"
            row["CF above 1 (%)"] = x.pct_above_lowest
        elif x.index == "Igeo":
            row["Igeo above class 0 (%)"] = x.pct_above_lowest
        elif x.index == "EF":
            row["EF above 2 (%)"] = x.pct_above_lowest
        elif x.index == "Er":
            row["Er, median"] = x.median
            row["Er above low risk (%)"] = x.pct_above_lowest
        elif x.index == "HPI":
            row["HPI, median (90th percentile)"] = f"{x.median:.3g} ({x.p90:.3g})"
    out = pd.DataFrame(list(rows.values()))
    if len(out) and out["Medium"].nunique() == 1:
        out = out.drop(columns=["Medium"])
    return out


def report(ctx, result: Result) -> None:
    """Methods, an overview of the indices, static vs adaptive background, zoning and bearing capacity."""
    import matplotlib.pyplot as plt

    from .. import plots
    from ..descriptive import reference_label
    from ..reference import background_values

    out, o, data, p = ctx.out, ctx.options, ctx.data, ctx.params
    r = result
    out.title = _title(r)
    tr = ix.toxic_response_factors(o.toxic_response)
    multi = len(set(r.backgrounds.values())) > 1  # the same kind of background in every medium is named once
    bg_label = ("; ".join(f"in {m}, {b}" for m, b in r.backgrounds.items()) if multi else
                next(iter(r.backgrounds.values()), "none (water only)"))
    out.markdown("## Methods\n\n" + ix.methods_text(background_label=bg_label, igeo_factor=o.igeo_factor,
                                 ef_reference_element=o.ef_reference_element, class_info=r.class_info,
                                 toxic_response=tr.reindex([c for c in tr.index if c in data.metals]),
                                 water_standard=r.water_standard,
                                 has_water=bool(_water_media(data)), nemerow_guideline=r.nemerow_guideline,
                                 integrated_metals=r.assessed))
    notes = [n for n in r.notes if "enrichment factor was not computed" not in n.lower()]
    if notes:
        out.markdown(" ".join(notes))
    # --- overview of the indices ---------------------------------------------------------------
    out.table("indices", r.indices, "Pollution indices per medium, metal and index: median, 90th percentile, "
              "maximum and the share of samples above the lowest class (metal 'all': the integrated indices). The "
              "CSV gives every sample's value, class and background.",
              display=r.summary.rename(columns={"medium": "Medium", "metal": "Metal", "index": "Index", "n": "n",
                                                "median": "Median", "p90": "90th percentile", "max": "Maximum",
                                                "pct_above_lowest": "Samples above the lowest class (%)"}),
              max_rows=80, appendix=True)
    sh = r.shares
    disp = sh.assign(pct=100 * sh["share"]).pivot_table(index=["medium", "index", "metal"], columns="class_rank",
                                                        values="pct", sort=False).reset_index()
    disp.columns = ["Medium", "Index", "Metal"] + [f"Class {int(c)} (%)" for c in disp.columns[3:]]
    if disp["Medium"].nunique() == 1:
        disp = disp.drop(columns=["Medium"])
    out.table("index_class_shares", sh, "Share of samples per index class (class 0 is the lowest; class names in "
              "the CSV and in the class tables of the cited sources).", display=disp, max_rows=80, appendix=True)
    ov = _overview(r)
    solid = _solid_media(data)
    if len(ov):
        out.table("index_overview", r.summary, "Single-metal indices against the background named in the methods: "
                  "median (90th percentile) contamination factor and the share of samples above the lowest class of "
                  "each index (Igeo class 0: practically unpolluted; Er below 40: low ecological risk).", display=ov)
    txt = []
    for m in solid:
        try:
            ref = background_values(o.reference_background or p.references.background, medium=m, unit=data.unit(m))
        except Exception:  # noqa: BLE001 - a set without values for the medium: no comparison sentence
            ref = pd.Series(dtype=float)
        w = data.wide(m)
        ig = r.summary[(r.summary["medium"] == m) & (r.summary["index"] == "Igeo")].set_index("metal")
        if len(ig):
            top = ig["pct_above_lowest"].sort_values(ascending=False)
            head = top.head(3)
            part = (f"Against {r.backgrounds[m]}, the share of {m} samples above Igeo class 0 is highest for "
                    + _and(f"{k} ({v:.0f} %)" for k, v in head.items())
                    + f" and below {max(top.iloc[3:].max(), 0) + 0.5:.0f} % for the other metals" if len(top) > 3 else
                    f"Against {r.backgrounds[m]}, the share of {m} samples above Igeo class 0 is "
                    + _and(f"{v:.0f} % for {k}" for k, v in head.items()))
            part += f" ({out.ref('index_overview')}, {out.ref(f'index_shares_igeo_{m}', 'fig')}). "
            bg_is_ref = r.backgrounds[m].startswith("the natural background of")
            if len(ref) and not bg_is_ref:
                above_ref = {k: float((w[k] > ref[k]).mean()) for k in head.index if k in ref.index and k in w}
                hi = {k: v for k, v in above_ref.items() if v > 0.9}
                if hi:
                    part += (f"Yet {_and(hi)} exceed{'s' if len(hi) == 1 else ''} the value of the "
                             f"{reference_label(p.references.background, cite=False, short=True)} in "
                             + ("every sample" if min(hi.values()) >= 0.995 else
                                _and(f"{100 * v:.0f} %" for v in hi.values()) + " of the samples")
                             + ". The two statements "
                             "do not conflict: Igeo is computed here against the regional baseline times 1.5, so it "
                             "measures enrichment above the level of the bulk of this region's samples, whereas the "
                             "crustal average lies far below that level. The regional baseline is the appropriate "
                             "background where it reflects the region's parent rock, and class 0 then means a "
                             "concentration within the natural range; where the bulk of the region is itself enriched, "
                             "the baseline contains that enrichment and the indices understate it, which the adaptive "
                             "background and the source analysis tell apart (see the baselines section). ")
            txt.append(part.strip())
        cf = r.summary[(r.summary["medium"] == m) & (r.summary["metal"] == "all")].set_index("index")
        integ = []
        if "PLI" in cf.index:
            integ.append(f"the pollution load index has a median of {cf.loc['PLI', 'median']:.2f} "
                         f"({cf.loc['PLI', 'pct_above_lowest']:.0f} % of samples above 1)")
        if "PERI" in cf.index:
            integ.append(f"the potential ecological risk index a median of {cf.loc['PERI', 'median']:.0f} "
                         f"(90th percentile {cf.loc['PERI', 'p90']:.0f}; {cf.loc['PERI', 'pct_above_lowest']:.0f} % "
                         f"above the low-risk class, first limit {r.class_info.get('peri_first', 150):g})")
        if "Nemerow" in cf.index:
            against = "the guideline values" if m in r.nemerow_media else "the background"
            integ.append(f"the Nemerow index against {against} a median of {cf.loc['Nemerow', 'median']:.2f}")
        er = r.summary[(r.summary["medium"] == m) & (r.summary["index"] == "Er")].set_index("metal")
        er_txt = ""
        if len(er):
            er_hi = er[er["pct_above_lowest"] > 1]
            er_txt = ((" Of the single-metal risk factors only " + _and(er_hi.index) + " reach"
                       + ("es" if len(er_hi) == 1 else "") + " above low risk in more than 1 % of the samples, "
                       "so the ecological risk index is driven by "
                       + _and(er_hi.index) + f" and {'its' if len(er_hi) == 1 else 'their'} toxic response "
                       + f"factor{'' if len(er_hi) == 1 else 's'}.") if len(er_hi) else
                      " No single-metal risk factor reaches above low risk in more than 1 % of the samples.")
        if integ:
            txt.append("Over all metals, " + "; ".join(integ) + f" ({out.ref('indices')})." + er_txt)
    if txt:
        out.markdown("## Results\n\n**What the indices say.** " + " ".join(txt))
    present = set(r.indices["index"])
    for m in solid:
        tm = r.indices[r.indices["medium"] == m]
        if "Igeo" in present:
            fig = ix.plot_class_shares(sh, index="Igeo", medium=m)
            out.figure(f"index_shares_igeo_{m}", fig, f"Share of {m} samples per geoaccumulation class and metal "
                       "[@mueller1969].", width="85%", group="index_shares_igeo" if len(solid) > 1 else None)
            plt.close(fig)
        if "Er" in present:
            fig = ix.plot_class_shares(sh, index="Er", medium=m)
            out.figure(f"index_shares_er_{m}", fig, f"Share of {m} samples per ecological risk class and metal "
                       "[@hakanson1980].", width="85%", appendix=True,
                       group="index_shares_er" if len(solid) > 1 else None)
            plt.close(fig)
        s = data.sites(m)
        s.index = s.index.astype(str)
        if "Igeo" in set(tm["index"]):
            fig = ix.plot_class_maps(tm, s, index="Igeo", class_table=r.class_tables["Igeo"],
                                     coordinate_unit=p.data.coordinate_unit, crs=p.data.crs)
            out.figure(f"igeo_map_{m}", fig, f"Geoaccumulation index classes [@mueller1969] of the {m} samples "
                       f"(background: {r.backgrounds[m]}).", appendix=True,
                       group="igeo_map" if len(solid) > 1 else None)
            plt.close(fig)
        if "PERI" in set(tm["index"]):
            why = plots.uninformative(tm.loc[tm["index"] == "PERI", "class"])
            if why:
                out.markdown(f"A map of the potential ecological risk classes of the {m} samples is not shown: {why}.")
            else:
                lim = ("class limits scaled to the metals assessed" if r.class_info["limits"] == "scaled" else
                       "Hakanson's original class limits" if r.class_info["limits"] == "Hakanson_1980" else
                       "class limits of @wu2025tracing")
                fig = ix.plot_class_maps(tm, s, index="PERI", class_table=r.class_tables["PERI"],
                                         coordinate_unit=p.data.coordinate_unit, ncols=1, crs=p.data.crs)
                out.figure(f"peri_map_{m}", fig, f"Potential ecological risk index (PERI) classes of the {m} samples "
                           f"[@hakanson1980], {lim}.", width="60%", appendix=True,
                           group="peri_map" if len(solid) > 1 else None)
                plt.close(fig)
    _findings(ctx, r)
    _report_misjudgment(out, r)
    _report_zoning(out, r, data, o)
    _report_capacity(out, r, data, p)


def _findings(ctx, r: Result) -> None:
    ig = r.indices[(r.indices["index"] == "Igeo") & r.indices["class_rank"].notna()]
    if ig.empty:
        return
    g = ig.groupby(["medium", "metal"])["class_rank"].agg(k=lambda x: int((x > 0).sum()), n="size").reset_index()
    g["share"] = g["k"] / g["n"]
    x = g.sort_values("share", ascending=False).iloc[0]
    lo, hi = _wilson(x["k"], x["n"])
    lo_all = g["share"].min()
    if x["share"] < 0.5:
        ctx.out.conclusion(f"Against the region's own baseline most samples are in geoaccumulation class 0 "
                           f"({100 * (1 - x['share']):.0f} to {100 * (1 - lo_all):.0f} % of the samples, depending "
                           f"on the metal); enrichment is concentrated in a minority of samples, most often for "
                           f"{x['metal']}{' in ' + x['medium'] if g['medium'].nunique() > 1 else ''} "
                           f"({100 * x['share']:.0f} %, 95 % CI {100 * lo:.0f}–{100 * hi:.0f} %).")
    else:
        ctx.out.conclusion(f"Even against the region's own baseline, {100 * x['share']:.0f} % of the samples (95 % CI "
                           f"{100 * lo:.0f}–{100 * hi:.0f} %) are above geoaccumulation class 0 for {x['metal']}: "
                           "enrichment is widespread, not confined to a few samples.")
    ctx.out.finding(f"Against the regional background, {100 * x['share']:.0f} % of the {x['medium']} samples "
                    f"(95 % CI {100 * lo:.0f}–{100 * hi:.0f} %) are above geoaccumulation class 0 for {x['metal']}, "
                    f"the highest share of any metal; "
                    f"{100 * (1 - x['share']):.0f} % are in class 0, within the range of the region's bulk of samples.",
                    importance=0.7, refs=["index_overview", f"index_shares_igeo_{x['medium']}"])


def _report_misjudgment(out, r: Result) -> None:
    import matplotlib.pyplot as plt

    if r.misjudgment is None:
        return
    mis = r.misjudgment
    tot = mis.groupby("index", sort=False)[["n_class_changed", "n_under", "n_over", "n"]].sum()
    changes = _and(f"{100 * x.n_class_changed / x.n:.0f} % of the {i} classes" for i, x in tot.iterrows())
    worst = mis.sort_values("share_class_changed", ascending=False).iloc[0]
    under = int(tot["n_under"].sum())
    over = int(tot["n_over"].sum())
    figs = ", ".join(out.ref(f"background_misjudgment_{m}", "fig") for m in r.misjudgment_media)
    out.markdown(f"""**Static against adaptive background.** The indices were recomputed with the per-sample
adaptive background of the baselines section in place of {'; '.join(dict.fromkeys(r.static_labels.values()))}
[@sun2025adaptive]. Over all metals {changes} change ({figs}; counts in {out.ref('background_misjudgment')}),
most often for {worst['index']} of {worst.metal} ({100 * worst.share_class_changed:.0f} %). The static
background put {under} sample classes too low (risk underestimated where the sample's own natural level is low)
and {over} too high (overestimated where it is naturally high): a single regional value misjudges samples in both
directions, and a class near a limit should be read with the sample's own background in mind.""")
    out.table("background_misjudgment", mis,
              "Samples whose index class changes when the static background is replaced by the adaptive one; "
              "underestimated: static class lower than adaptive; overestimated: static class higher.",
              display=mis.assign(pct=100 * mis["share_class_changed"]).rename(columns={
                  "medium": "Medium", "metal": "Metal", "index": "Index", "n": "Samples",
                  "n_class_changed": "Class changed", "pct": "Changed (%)", "n_under": "Underestimated (static)",
                  "n_over": "Overestimated (static)"})[["Medium", "Metal", "Index", "Samples", "Class changed",
                                                       "Changed (%)", "Underestimated (static)",
                                                       "Overestimated (static)"]], appendix=True, max_rows=80)
    for m in r.misjudgment_media:
        fig = zn.plot_misjudgment(mis, medium=m)
        out.figure(f"background_misjudgment_{m}", fig,
                   f"Share of {m} samples whose class changes with the static instead of the adaptive background: "
                   "red, the static background gives a lower class (risk underestimated); blue, a higher class "
                   "(overestimated).", group="background_misjudgment" if len(r.misjudgment_media) > 1 else None)
        plt.close(fig)
    k = int(tot["n_class_changed"].sum())
    n = int(tot["n"].sum())
    lo, hi = _wilson(k, n)
    out.finding(f"Replacing the static regional baseline by each sample's adaptive background changed "
                f"{100 * k / n:.0f} % of the index classes (95 % CI {100 * lo:.0f}–{100 * hi:.0f} %; {under} lower "
                f"and {over} higher with the static background), most often {worst['index']} of {worst.metal} "
                f"({100 * worst.share_class_changed:.0f} %).", importance=0.5,
                refs=[f"background_misjudgment_{r.misjudgment_media[0]}"])


def _report_zoning(out, r: Result, data, o) -> None:
    import matplotlib.pyplot as plt

    if r.zoning_sites is None:
        if len(_solid_media(data)) > 1:
            out.markdown(f"Dual-media zoning [@wu2025tracing] was not done: {r.zoning_reason}.")
        return
    ma, mb = r.zoning_media
    from ..baselines import METHOD_LABELS

    methods = _and(METHOD_LABELS.get(m, m).split(" (")[0].lower() for m in o.zoning_methods)
    z = r.zoning_shares
    zdisp = z.assign(pct=100 * z["share"]).pivot_table(index="metal", columns="zone", values="pct",
                                                       sort=False).reset_index()
    zdisp.columns = ["Metal"] + [f"{c[:1].upper() + c[1:]} (% of sites)" for c in zdisp.columns[1:]]
    zmain = z.groupby("zone", sort=False)["share"].mean().sort_values(ascending=False)
    out.markdown(f"""**Dual-media zoning.** Sites with both {ma} and {mb} samples (site means) were placed in four
zones bounded by the lowest and highest baselines of the {methods} methods in each medium [@wu2025tracing]:
Background (both below their lowest baseline), Pollution (both above their highest baseline), and {ma}- or
{mb}-dominated otherwise (where both lie inside their ranges, the medium relatively higher in its own range).
Averaged over the metals, the largest zone is {zmain.index[0]} ({100 * zmain.iloc[0]:.0f} % of sites) and
{100 * zmain.get('Pollution', 0):.0f} % of sites fall in the Pollution zone ({out.ref('dual_media_zones')},
{out.ref('dual_media_zones', 'fig')}).""")
    out.table("dual_media_zones", z, f"Share of paired sites per dual-media zone ({ma} against {mb}).", display=zdisp)
    out.table("dual_media_sites", r.zoning_sites, "Paired site means and zones.", in_report=False)
    fig = zn.plot_dual_media_zones(r.zoning_sites, r.zoning_bounds, medium_a=ma, medium_b=mb, unit_a=data.unit(ma),
                                   unit_b=data.unit(mb))
    out.figure("dual_media_zones", fig, f"Site means of {ma} (x) and {mb} (y) with the lowest and highest baselines "
               "of each medium (dashed) bounding the dual-media zones.")
    plt.close(fig)


def _report_capacity(out, r: Result, data, p) -> None:
    import matplotlib.pyplot as plt

    from ..descriptive import reference_label, threshold_header

    if not r.guideline_set or r.capacity is None:
        return
    gname = reference_label(r.guideline_set)
    thr = threshold_header(r.threshold or "guideline").lower()
    cs = r.capacity_summary
    units = {m: data.unit(m) for m in cs["medium"].unique()}
    one_unit = len(set(units.values())) == 1
    u = f" ({next(iter(units.values()))})" if one_unit else ""
    disp = cs.assign(pct=100 * cs["share_overloaded"], Unit=cs["medium"].map(units)).rename(columns={
        "medium": "Medium", "metal": "Metal", "guideline": f"Guideline, lowest{u}",
        "guideline_max": f"Guideline, highest{u}", "n": "Samples", "n_overloaded": "Overloaded",
        "pct": "Overloaded (%)", "median_remaining_pct": "Median remaining (% of guideline)",
        "min_remaining_pct": "Minimum remaining (% of guideline)"}).drop(columns=["share_overloaded"])
    if (disp[f"Guideline, lowest{u}"] == disp[f"Guideline, highest{u}"]).all():
        disp = disp.drop(columns=[f"Guideline, highest{u}"]).rename(columns={f"Guideline, lowest{u}": f"Guideline{u}"})
    if one_unit:
        disp = disp.drop(columns=["Unit"])
    if disp["Medium"].nunique() == 1:
        disp = disp.drop(columns=["Medium"])
    out.table("bearing_capacity", r.capacity, "Remaining capacity per sample and metal.", in_report=False)
    out.table("bearing_capacity_summary", cs, f"Bearing capacity per metal against the {thr}s of {gname} (value "
              "applied to each sample's own class).", display=disp, appendix=True)
    neg = cs[cs["median_remaining_pct"] < 0]
    tight = cs.sort_values("median_remaining_pct").head(3)
    figs = ", ".join(out.ref(f"bearing_capacity_{m}", "fig") for m in r.capacity["medium"].unique())
    out.markdown(f"""**Bearing capacity.** The capacity left below the {thr} that applies to each sample,
$100\\,(G - C)/G$ [@sun2025adaptive], is smallest for """
                 + _and(f"{x.metal}{f' in {x.medium}' if not one_unit or len(units) > 1 else ''} (median "
                        f"{x.median_remaining_pct:.0f} %)" for x in tight.itertuples())
                 + (f"; for {_and(neg['metal'])} the median sample has none left, so further inputs would add to an "
                    "existing exceedance" if len(neg) else "")
                 + f" ({figs}, {out.ref('bearing_capacity_summary')}; the shares above the values are those of the "
                   "exceedance table of the data-quality section)."
                 + (" " + " ".join(r.capacity_notes) if r.capacity_notes else ""))
    for m in r.capacity["medium"].unique():
        fig = zn.plot_bearing_capacity(r.capacity, medium=m)
        out.figure(f"bearing_capacity_{m}", fig, f"Remaining capacity of the {m} samples as % of the {thr}s of "
                   f"{reference_label(r.guideline_set, cite=False, short=True)}; below 0 the sample is overloaded.",
                   width="80%", appendix=True,
                   group="bearing_capacity" if r.capacity["medium"].nunique() > 1 else None)
        plt.close(fig)

