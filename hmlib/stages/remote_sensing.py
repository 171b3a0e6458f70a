"""Stage ``remote_sensing``: quantile-forest inversion of metal concentrations from multispectral imagery.

``run`` reads the image (clouds and no-data masked), extracts the band values at the samples and,
for each medium and metal, fits the inversion of :mod:`hmlib.remote_sensing`: nested
spatial-block validation (tuning and interval calibration inside the outer training folds),
conformalized quantile-forest prediction intervals with their held-out coverage, permutation
importance, and maps only for the models with held-out skill. ``report`` states the validation
scheme and skill first, the interval coverage (``rs_interval_coverage``), then importance and maps;
on a generated demo region it compares what was recovered with the generator's known truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from .. import remote_sensing as rs
from ..context import StageContext
from ..descriptive import count_of
from ..outputs import ref_id
from ..params import StageOptions
from ..progress import track
from .base import StageSpec, needs_option

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]


class Options(StageOptions):
    """Options of the ``remote_sensing`` stage."""

    raster: str | None = Field(default=None, description="multiband GeoTIFF of surface reflectance (path from the "
                                                           "project root)")
    band_names: list[str] = Field(default_factory=lambda: list(rs.DEFAULT_BAND_NAMES),
                                  description="names of the raster's bands, in band order")
    cloud_mask: str | None = Field(default=None, description="single-band GeoTIFF on the same grid; non-zero means "
                                                             "cloud (pixel left out)")
    landcover: str | None = Field(default=None, description="single-band land-cover GeoTIFF on the same grid")
    landcover_classes: dict[str, list[int]] = Field(
        default_factory=dict, description="medium to the land-cover classes its map covers (others are masked)")
    media: list[str] = Field(default_factory=list, description="media to model; empty: all of the region's")
    metals: list[str] = Field(default_factory=list, description="metals to model; empty: all of the region's")
    extraction: Literal["window", "bilinear"] = Field(default="window", description="window mean, or bilinear "
                                                                                   "between pixel centres")
    window_px: int = Field(default=3, ge=1, le=15, description="side of the extraction window (odd, pixels)")
    n_trees: list[int] = Field(default_factory=lambda: [100], description="grid of the number of trees")
    max_depth: list[int] = Field(default_factory=lambda: [30], description="grid of the maximum tree depth")
    min_samples_leaf: list[int] = Field(default_factory=lambda: [1, 5], description="grid of the minimum leaf size")
    n_folds: int = Field(default=5, ge=2, le=20, description="outer folds of the nested spatial-block validation")
    n_spatial_blocks: int = Field(default=10, ge=2, description="k-means clusters of the samples held out whole")
    inner_folds: int = Field(default=3, ge=2, le=10, description="inner folds for tuning and interval calibration")
    interval_level: float = Field(default=0.9, gt=0.5, lt=1.0, description="nominal coverage of the prediction "
                                                                           "intervals")
    n_permutations: int = Field(default=10, ge=2, le=100, description="shuffles per band for permutation importance")
    median_filter_px: int = Field(default=5, ge=1, le=15, description="side of the median filter applied to the "
                                                                     "maps (odd, pixels)")
    clip_percentile: float = Field(default=99.0, gt=50, le=100, description="maps clipped to 0 and this percentile "
                                                                           "of the training values")
    block_pixels: int = Field(default=65_536, ge=1024, description="pixels predicted at once (bounds memory)")
    known_truth: str | None = Field(default=None, description="generated regions only: table of the band each metal "
                                                              "is generated from (medium, metal, band, relationship, "
                                                              "noise_sdlog)")

    @field_validator("window_px", "median_filter_px")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 != 1:
            raise ValueError(f"an odd number of pixels (window centred on a pixel), got {v}")
        return v

    @field_validator("n_trees", "max_depth", "min_samples_leaf")
    @classmethod
    def _nonempty_positive(cls, v: list[int]) -> list[int]:
        if not v or any(x < 1 for x in v):
            raise ValueError(f"a non-empty list of positive integers, got {v}")
        return v


SPEC = StageSpec(
    name="remote_sensing",
    notebook="65_remote_sensing.ipynb",
    title="Remote-sensing inversion: quantile-forest maps from multispectral imagery",
    options=Options,
    reads=(),
    writes=(),
    requires=(needs_option("raster", "multiband image of surface reflectance"),),
)


@dataclass
class Result:
    """What the ``remote_sensing`` stage computed.

    Attributes
    ----------
    image : the multiband image (clouds and no-data masked); None when no image was given.
    landcover : the land-cover raster, or None.
    maps : one :class:`hmlib.remote_sensing.InversionMap` per modelled metal and medium.
    metrics : nested spatial-block CV scores (rs_metrics rows).
    coverage : held-out interval coverage per metal and medium (rs_interval_coverage rows).
    notes : reader's notes on samples left out and metals not modelled.
    crs_note : how the sample coordinates relate to the raster's.
    truth : recovered bands and skill next to the generator's known truth (None unless given).
    skipped : why nothing was modelled (None otherwise).
    """

    image: rs.RasterImage | None
    landcover: np.ndarray | None
    maps: list[rs.InversionMap]
    metrics: pd.DataFrame
    coverage: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    crs_note: str = ""
    truth: pd.DataFrame | None = None
    skipped: str | None = None


def check(ctx: StageContext) -> list[str]:
    """Problems of the options against the region's data and files."""
    o, data, p = ctx.options, ctx.data, ctx.params
    out = []
    for key in ("raster", "cloud_mask", "landcover", "known_truth"):
        v = getattr(o, key)
        if v is not None and not p.resolve(v).is_file():
            out.append(f"stages.remote_sensing.{key}: got {v}; expected an existing file")
    for m in o.media:
        if m not in data.media:
            out.append(f"stages.remote_sensing.media: got {m}; expected one of {', '.join(data.media)}")
    for m in o.metals:
        if m not in data.metals:
            out.append(f"stages.remote_sensing.metals: got {m}; expected one of {', '.join(data.metals)}")
    for m in o.landcover_classes:
        if m not in data.media:
            out.append(f"stages.remote_sensing.landcover_classes: got medium {m}; expected one of "
                       f"{', '.join(data.media)}")
    if o.n_spatial_blocks <= o.n_folds:
        out.append(f"stages.remote_sensing.n_spatial_blocks: got {o.n_spatial_blocks}; expected more than n_folds "
                   f"({o.n_folds}), so that every training set spans several blocks for the inner tuning folds")
    return out


def run(ctx: StageContext) -> Result:
    """Read the image, extract the samples' band values, fit and validate one inversion per metal and medium."""
    o, p, data = ctx.options, ctx.params, ctx.data
    if o.raster is None:
        return Result(image=None, landcover=None, maps=[], metrics=pd.DataFrame(), coverage=pd.DataFrame(),
                      skipped="no multiband image of surface reflectance was given")
    img = rs.read_multiband(p.resolve(o.raster), band_names=o.band_names,
                            cloud_mask=p.resolve(o.cloud_mask) if o.cloud_mask else None)
    lc = None
    if o.landcover:
        lc, _, _ = rs.read_singleband(p.resolve(o.landcover))
        if lc.shape != img.shape:
            raise ValueError(f"land-cover raster {o.landcover} is {lc.shape} pixels; the image is {img.shape}")
    media = list(o.media) or data.media
    metals = list(o.metals) or data.metals
    n_min = max(10, 2 * o.n_folds)
    maps, notes, crs_notes = [], [], set()
    jobs = [(med, metal) for med in media for metal in metals]
    feats_by = {}
    for medium in media:
        sites = data.sites(medium)
        px, py, crs_note = rs.points_to_raster_crs(sites["x"], sites["y"], from_crs=p.data.crs, raster_crs=img.crs)
        crs_notes.add(crs_note)
        feats = rs.extract_at_points(img.bands, img.transform, px, py, band_names=img.band_names, valid=img.valid,
                                     window_px=o.window_px, method=o.extraction)
        n_out = int(feats[img.band_names].isna().any(axis=1).sum())
        if n_out:
            notes.append(f"{n_out} of {len(feats)} {medium} samples have no valid pixel in their window (outside the "
                         "image, no-data or cloud) and are left out.")
        feats_by[medium] = (feats, px, py, data.wide(medium).reindex(sites.index))
    for medium, metal in track(jobs, desc="inversions", unit="model"):
        feats, px, py, wide = feats_by[medium]
        values = wide[metal].to_numpy(float)
        usable = int((feats[img.band_names].notna().all(axis=1).to_numpy() & np.isfinite(values)).sum())
        if usable < n_min:
            notes.append(f"{metal} in {medium}: {usable} usable samples, fewer than the {n_min} the nested "
                         "validation needs; not modelled.")
            continue
        maps.append(rs.invert_metal(img, feats, values, x=px, y=py, metal=metal, medium=medium,
                                    unit=data.unit(medium), seed=ctx.seed, n_trees=o.n_trees, max_depth=o.max_depth,
                                    min_samples_leaf=o.min_samples_leaf, n_folds=o.n_folds,
                                    n_blocks=o.n_spatial_blocks, inner_folds=o.inner_folds, level=o.interval_level,
                                    clip_percentile=o.clip_percentile, median_filter_px=o.median_filter_px,
                                    landcover=lc, landcover_classes=o.landcover_classes.get(medium),
                                    block_pixels=o.block_pixels, n_repeats=o.n_permutations, n_jobs=1))
    if not maps:
        return Result(image=img, landcover=lc, maps=[], metrics=pd.DataFrame(), coverage=pd.DataFrame(), notes=notes,
                      crs_note="; ".join(sorted(crs_notes)),
                      skipped="no metal and medium had enough samples with valid pixels to fit a model")
    truth = None
    if o.known_truth:
        truth = rs.compare_with_truth(maps, pd.read_csv(p.resolve(o.known_truth)))
    return Result(image=img, landcover=lc, maps=maps, metrics=pd.concat([m.metrics_table() for m in maps],
                                                                        ignore_index=True),
                  coverage=rs.coverage_table(maps), notes=notes, crs_note="; ".join(sorted(crs_notes)), truth=truth)


def report(ctx: StageContext, result: Result) -> None:
    """The section: validation and skill, interval coverage, importance, maps of the skilled models only."""
    o, p, out = ctx.options, ctx.params, ctx.out
    if result.skipped:
        out.markdown(f"This analysis was not run: {result.skipped}.")
        for note in result.notes:
            out.markdown(note)
        return
    img, maps = result.image, result.maps
    t = img.transform
    out.markdown("## Methods")
    out.markdown(rs.methods_text(n_trees=o.n_trees, max_depth=o.max_depth, min_samples_leaf=o.min_samples_leaf,
                                 n_folds=o.n_folds, n_blocks=o.n_spatial_blocks, inner_folds=o.inner_folds,
                                 level=o.interval_level, window_px=o.window_px, extraction=o.extraction,
                                 median_filter_px=o.median_filter_px, clip_percentile=o.clip_percentile,
                                 landcover=bool(result.landcover is not None and o.landcover_classes),
                                 band_names=img.band_names, raster_name=o.raster, shape=img.shape,
                                 pixel_size=abs(t.a), crs_note=result.crs_note, n_repeats=o.n_permutations,
                                 pixel_unit=p.data.coordinate_unit if p.data.crs != "local" or img.crs is None
                                 else "map units"))
    for note in result.notes:
        out.markdown(note)
    for medium in dict.fromkeys(m.medium for m in maps):
        mm = [m for m in maps if m.medium == medium]
        w = rs.samples_per_predictor_warning(mm[0].n_points, len(img.band_names))
        if w:
            out.callout(w, kind="warning", title=f"{medium.capitalize()}: few samples per band")
    out.markdown("## Held-out skill and interval coverage")
    out.markdown(rs.results_text(maps) + f" Scores per model in {out.ref('rs_metrics')}, coverage in "
                 f"{out.ref('rs_interval_coverage')}, and each held-out prediction in "
                 f"{out.ref('rs_observed_predicted', 'fig')}.")
    lvl = 100 * o.interval_level
    out.table("rs_metrics", result.metrics,
              "Quantile-forest inversion scored by nested spatial-block cross-validation: pooled out-of-fold R² and "
              "RMSE (in the unit of the medium), the RMSE of predicting the training mean, whether the model has "
              f"held-out skill, and the held-out coverage of the {lvl:.0f} % prediction interval. The full table has "
              "the per-fold scores.", display=rs.metrics_display(maps))
    cov = result.coverage
    out.table("rs_interval_coverage", cov,
              f"Held-out coverage of the {lvl:.0f} % prediction intervals: share of the samples of each outer "
              "spatial-block fold that fell inside the interval of the model trained without their cluster, after "
              "the conformal calibration, and with the forest's own quantiles before it.",
              display=pd.DataFrame({"Metal": cov["metal"], "Medium": cov["medium"],
                                    "Nominal (%)": 100 * cov["nominal"], "Observed (%)": 100 * cov["observed"],
                                    "Before calibration (%)": 100 * cov["observed_uncalibrated"], "n": cov["n"],
                                    "Mean width": cov["mean_width"], "Unit": cov["unit"]}))
    out.table("rs_band_importance", rs.importance_wide(maps), "Permutation importance of each band (mean decrease of "
              "the out-of-fold R²).", in_report=False)
    out.figure("rs_band_importance", rs.plot_importance(maps),
               "Permutation importance of each band for each metal: mean decrease of the out-of-fold R² when the band "
               f"is shuffled within the held-out folds (bars: ± sd over {o.n_permutations} shuffles). Negative or "
               "near-zero values mean the band adds nothing the others do not carry.", appendix=True)
    out.figure("rs_observed_predicted", rs.plot_observed_predicted(maps),
               f"Observed vs held-out predicted concentrations with their {lvl:.0f} % intervals (nested spatial-block "
               "cross-validation; red: the interval misses the observation); dashed: 1:1 line.")
    out.markdown(rs.importance_text(maps, ref=out.ref("rs_band_importance", "fig")))
    if result.truth is not None and not result.truth.empty:
        tr = result.truth
        out.markdown(rs.truth_text(tr, ref=out.ref("rs_truth_comparison")))
        out.table("rs_truth_comparison", tr, "Check against the generator (generated data only): the band each "
                  "concentration is "
                  "generated from, the band the model found most important, and the validated R² against the R² a "
                  "perfect model would be expected to reach given the generator's error.",
                  display=pd.DataFrame({"Metal": tr["metal"], "Medium": tr["medium"], "Generating band": tr["true_band"],
                                        "Most important band": tr["top_band"],
                                        "Held-out skill": tr["has_skill"].map({True: "yes", False: "no"}),
                                        "R² (held out)": tr["r2_cv"], "R² of a perfect model": tr["r2_ceiling"],
                                        "Generator": tr["relationship"]}))
    mapped = [m for m in maps if m.mapped]
    if mapped:
        out.markdown("## Maps of the models with held-out skill")
        out.markdown(rs.maps_text(mapped, refs=", ".join(out.ref(f"rs_map_{mt}", "fig")
                                                         for mt in dict.fromkeys(m.metal for m in mapped))))
    for metal in dict.fromkeys(m.metal for m in mapped):
        mm = [m for m in mapped if m.metal == metal]
        files = []
        for m in mm:
            for kind, arr, desc in (("prediction", m.processed, "quantile-forest mean, post-processed"),
                                    ("lower", m.lower, f"lower bound of the {lvl:.0f} % prediction interval"),
                                    ("upper", m.upper, f"upper bound of the {lvl:.0f} % prediction interval")):
                path = out.file(f"rs_{m.medium}_{metal}_{kind}.tif")
                rs.write_geotiff(path, arr, transform=img.transform, crs=img.crs,
                                 description=f"{metal} in {m.medium} ({m.unit}), {desc}")
                files.append(f"`files/{path.name}`")
        where = "; ".join(f"{m.medium}: classes {', '.join(map(str, o.landcover_classes.get(m.medium)))}" for m in mm
                          if o.landcover_classes.get(m.medium)) if result.landcover is not None else ""
        skill = "; ".join(f"{m.medium} R² {m.result.skill['r2']:.2f}" for m in mm)
        out.figure(f"rs_map_{metal}", rs.plot_metal_maps(mm, img, coordinate_unit=p.data.coordinate_unit,
                                                         crs=p.data.crs),
                   f"{metal} ({skill}, nested spatial-block cross-validation): quantile-forest prediction (left; "
                   f"{o.median_filter_px} × {o.median_filter_px} median filter, clipped to [0, P{o.clip_percentile:g}] "
                   "of the training values" + (f", land cover {where}" if where else "")
                   + f") and width of the calibrated {lvl:.0f} % prediction interval (right). GeoTIFFs: "
                   + ", ".join(files) + ".", group="rs_maps")
    unskilled = [m for m in maps if not m.mapped]
    if unskilled:
        out.callout("No map is shown for " + ", ".join(f"{m.metal} in {m.medium} (held-out R² "
                                                        f"{m.result.skill['r2']:.2f})" for m in unskilled)
                    + ": the band values do not predict these concentrations in areas away from the samples.",
                    kind="important", title="Not mapped: no held-out skill")
        out.limitation("The image does not predict " + ", ".join(f"{m.metal} in {m.medium}" for m in unskilled)
                       + " in held-out areas; these are not mapped.")
    dev = float((cov["observed"] - cov["nominal"]).abs().max())
    best = max(maps, key=lambda m: m.result.skill["r2"])
    out.finding(f"Remote-sensing inversion: {count_of(len(mapped), len(maps), 'metal and medium models')} predict "
                "held-out "
                f"areas (best {best.metal} in {best.medium}, R² {best.result.skill['r2']:.2f}); their {lvl:.0f} % "
                f"intervals covered {100 * cov['observed'].min():.0f}-{100 * cov['observed'].max():.0f} % of held-out "
                f"samples (at most {100 * dev:.0f} points from nominal).", importance=0.45,
                refs=[ref_id("tbl", "rs_metrics"), ref_id("tbl", "rs_interval_coverage")])
    out.conclusion(f"The image predicts {count_of(len(mapped), len(maps), 'metal and medium combinations')} in "
                   "held-out areas "
                   f"(best {best.metal} in {best.medium}, R² {best.result.skill['r2']:.2f}), with calibrated "
                   f"{lvl:.0f} % intervals; only these are mapped.")
