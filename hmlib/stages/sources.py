"""Stage ``sources``: source apportionment: correlation, PCA, PMF (EPA PMF 5.0 with robust fit, factor-count
criteria, bootstrap, DISP and BS-DISP) and Pb isotope mixing.

``run`` composes :mod:`hmlib.sources` (correlation, PCA, interpretation aid), :mod:`hmlib.pmf` (PMF around
esat) and :mod:`hmlib.isotopes` (two-end-member and Bayesian mixing with R-hat and ESS); ``report`` writes
the section.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from .. import isotopes as iso
from .. import pmf as pmf_lib
from .. import sources as src
from ..context import StageContext
from ..outputs import ref_id
from ..params import StageOptions
from ..progress import track
from .base import StageSpec

__all__ = ["Options", "SPEC", "Result", "PMFMedium", "check", "run", "report"]


class Options(StageOptions):
    """Options of the ``sources`` stage (``stages: sources:`` in params)."""

    pca_transform: Literal["log", "clr"] = Field(
        default="log", description="PCA input: log10 or centred log-ratio of concentrations, then standardized")
    pca_components: int | None = Field(default=None, ge=1, description="fixed PCA component count; None: Kaiser")
    signatures: dict[str, list[str]] = Field(
        default_factory=dict, description="source type -> marker metals, for labelling factors")
    signature_min_similarity: float = Field(default=0.7, gt=0, le=1,
                                            description="cosine similarity needed to name a factor")
    pmf: bool = Field(default=True, description="run PMF")
    pmf_factor_range: tuple[int, int] = Field(default=(2, 5), description="smallest and largest factor count")
    pmf_factors: int | None = Field(default=None, ge=1, description="fixed factor count; None: chosen by the "
                                                                    "change in Q and stability")
    pmf_dq_units_min: float = Field(default=2.0, gt=0, description="smallest drop in Q(robust), in units of the "
                                                                   "values a factor adds, that supports a factor")
    pmf_stability: bool = Field(default=True, description="check bootstrap mapping and DISP swaps of the chosen count")
    pmf_stability_bootstrap: int = Field(default=50, ge=2, description="bootstrap runs of the stability check")
    pmf_robust: bool = Field(default=True, description="robust fit (EPA PMF 5.0): down-weight scaled residuals "
                                                       "beyond 4")
    pmf_starts: int = Field(default=20, ge=2, description="seeded random starts per factor count (EPA: 20)")
    pmf_bootstrap: int = Field(default=100, ge=2, description="bootstrap runs")
    pmf_bootstrap_threshold: float = Field(default=0.6, gt=0, lt=1, description="min r to map a bootstrap factor")
    pmf_bootstrap_block: int | None = Field(default=None, ge=2, description="block length; None: single samples")
    pmf_disp: bool = Field(default=True, description="run DISP error estimation (rest of the solution refitted)")
    pmf_bs_disp: int = Field(default=10, ge=0, description="bootstrap runs of BS-DISP; 0: no BS-DISP")
    pmf_max_samples: int | None = Field(
        default=500, ge=50, description="largest number of samples PMF is fitted on; above it, PMF (factor-count "
        "scan, starts, bootstrap, DISP, BS-DISP, stability) is fitted on a spatially stratified subsample of this "
        "size and every sample's contributions are estimated by weighted non-negative least squares on the fitted "
        "profiles; None: all samples")
    pmf_jobs: int | None = Field(default=None, ge=1, description="worker processes for the PMF starts, bootstrap "
                                 "runs and isotope mixing (results do not depend on it); None: the CPUs available, "
                                 "at most 4")
    pmf_max_iter: int = Field(default=20000, ge=100, description="largest number of esat iterations per run")
    pmf_converge_delta: float = Field(default=0.1, gt=0, description="convergence: change of Q below this ...")
    pmf_converge_n: int = Field(default=100, ge=10, description="... over this many iterations")
    mdl: dict[str, float] = Field(
        default_factory=dict,
        description="laboratory method detection limit per metal (medium unit); default: params "
                    "non_detects.detection_limits, else estimated from the data")
    error_fraction: float | dict[str, float] = Field(default=0.1, description="error fraction EF (0.1 means 10 %)")
    uncertainty_file: str | None = Field(
        default=None, description="CSV of uncertainties: sample_id, medium (optional) and one column per metal")
    species_categories: dict[str, Literal["strong", "weak", "bad"]] = Field(
        default_factory=dict, description="metal -> category, overriding the S/N rule")
    isotope_ratios: dict[str, str] = Field(
        default_factory=dict, description="ratio label (e.g. '206Pb/207Pb') -> covariate column with the ratio")
    isotope_endmembers: str | None = Field(default=None, description="CSV: source, ratio, mean, sd")
    isotope_pair: list[str] = Field(default_factory=list, description="the two end-members for linear mixing")
    isotope_residual_sd: float = Field(default=0.002, gt=0, description="measurement sd of each ratio")
    isotope_steps: int = Field(default=4000, ge=500, description="Metropolis steps per chain")
    published_attribution: str | None = Field(
        default=None, description="what earlier work on the region concluded about its sources (a sentence with a "
                                  "citation), set beside the result in the text")
    known_truth: str | None = Field(
        default=None, description="generated regions only: folder of the generator's truth tables "
                                  "(truth_profiles.csv, truth_contributions.csv, truth_pb_shares.csv)")

    @field_validator("pmf_factor_range")
    @classmethod
    def _range(cls, v):
        if not 1 <= v[0] <= v[1]:
            raise ValueError(f"expected 1 <= first <= second, got {v}")
        return v

    @model_validator(mode="after")
    def _isotopes(self):
        if self.isotope_ratios and not self.isotope_endmembers:
            raise ValueError("isotope_ratios need isotope_endmembers (a CSV of source, ratio, mean, sd)")
        if self.isotope_pair and len(self.isotope_pair) != 2:
            raise ValueError(f"isotope_pair must name two end-members, got {self.isotope_pair}")
        return self


SPEC = StageSpec(
    name="sources",
    notebook="50_sources.ipynb",
    title="Source apportionment: correlation, PCA, PMF and Pb isotope mixing",
    options=Options,
)

RHAT_WARN = 1.01
ISOTOPE_CHUNK = 250  # samples per call of the isotope sampler (its memory grows with the samples)


@dataclass
class PMFMedium:
    """PMF of one medium.

    Attributes
    ----------
    fit : the chosen base run (:class:`hmlib.pmf.PMFResult`).
    criteria : one row per factor count: Q values, Q/Qexp, change in Q, support, stability.
    residuals : scaled-residual distribution per factor count.
    chosen, why : the factor count and the sentence saying why.
    boot : bootstrap of the chosen run; disp, bs_disp : DISP and BS-DISP tables (None when off).
    signal_to_noise, categories : S/N and category per metal.
    uncertainty_source : "file", "laboratory" or "estimated" (MDLs estimated from the data).
    mdl : the MDLs used (None with an uncertainty file).
    """

    fit: pmf_lib.PMFResult
    criteria: pd.DataFrame
    residuals: pd.DataFrame
    chosen: int
    why: str
    boot: pmf_lib.BootstrapResult
    disp: dict | None
    bs_disp: dict | None
    signal_to_noise: pd.Series
    categories: pd.Series
    uncertainty_source: str
    mdl: dict | None
    estimated_mdl_metals: list[str] = field(default_factory=list)
    n_fitted: int | None = None
    n_samples: int | None = None


@dataclass
class Result:
    """What the sources stage computed.

    Attributes
    ----------
    media : media analysed; dropped : samples left out per medium (a missing metal value).
    correlation : pairwise correlations (medium, method, metal_a, metal_b, r, p, n).
    pca : PCA per medium; pca_tests, pca_loadings : KMO/Bartlett and loadings tables.
    pmf : PMF per medium (:class:`PMFMedium`); empty when PMF is off.
    profiles, contributions, diagnostics, factor_count, bootstrap, disp, bs_disp, bs_disp_swaps,
    disp_swaps : tidy PMF tables over media.
    interpretation : factor interpretation aid (PCA and PMF).
    isotope_mixing, isotope_summary : isotope mixing per sample and averaged (None without ratios);
    isotope_convergence : R-hat and ESS per sample and share of the Bayesian model.
    """

    media: list[str]
    dropped: dict[str, int]
    correlation: pd.DataFrame
    pca: dict
    pca_tests: pd.DataFrame
    pca_loadings: pd.DataFrame
    pmf: dict[str, PMFMedium]
    profiles: pd.DataFrame | None
    contributions: pd.DataFrame | None
    diagnostics: pd.DataFrame | None
    factor_count: pd.DataFrame | None
    bootstrap: pd.DataFrame | None
    disp: pd.DataFrame | None
    disp_swaps: pd.DataFrame | None
    bs_disp: pd.DataFrame | None
    bs_disp_swaps: pd.DataFrame | None
    interpretation: pd.DataFrame
    isotope_mixing: pd.DataFrame | None = None
    isotope_summary: pd.DataFrame | None = None
    isotope_convergence: pd.DataFrame | None = None
    isotope_pair: tuple | None = None
    isotope_outside: int = 0
    above: dict = field(default_factory=dict)
    guideline_label: str | None = None
    association: pd.DataFrame | None = None
    share_intervals: dict = field(default_factory=dict)
    truth: pd.DataFrame | None = None
    isotope_truth: pd.DataFrame | None = None


def check(ctx: StageContext) -> list[str]:
    """Problems of the options against the data (metals, ratio columns and files that do not exist)."""
    o, data, p = ctx.options, ctx.data, ctx.params
    metals = set(data.metals)
    problems = []
    for key in ("mdl", "species_categories"):
        bad = [k for k in getattr(o, key) if k not in metals]
        if bad:
            problems.append(f"stages.sources.{key}: got {', '.join(bad)}; expected metals of the region "
                            f"({', '.join(sorted(metals))})")
    if isinstance(o.error_fraction, dict):
        missing = [m for m in data.metals if m not in o.error_fraction]
        if missing:
            problems.append(f"stages.sources.error_fraction: got no value for {', '.join(missing)}; expected one "
                            "error fraction per metal or a single number")
    for key in ("uncertainty_file", "isotope_endmembers"):
        f = getattr(o, key)
        if f and not p.resolve(f).is_file():
            problems.append(f"stages.sources.{key}: got {f}; expected an existing CSV file")
    if o.known_truth and not (p.resolve(o.known_truth) / "truth_profiles.csv").is_file():
        problems.append(f"stages.sources.known_truth: got {o.known_truth}; expected a folder with truth_profiles.csv")
    cols = set(data.samples.columns)
    bad = [c for c in o.isotope_ratios.values() if c not in cols]
    if bad:
        problems.append(f"stages.sources.isotope_ratios: got columns {', '.join(bad)}; expected sample columns "
                        "(add them to data.covariates)")
    if o.pmf_factors and o.pmf_factors > len(data.metals):
        problems.append(f"stages.sources.pmf_factors: got {o.pmf_factors}; expected at most the number of metals "
                        f"({len(data.metals)})")
    return problems


def run(ctx: StageContext) -> Result:
    """Correlation, PCA, PMF and isotope mixing of every medium."""
    o, data = ctx.options, ctx.data
    media = list(data.media)
    conc = {m: data.wide(m).dropna() for m in media}
    for m in media:
        conc[m].index = conc[m].index.astype(str)
    dropped = {m: int(data.wide(m).isna().any(axis=1).sum()) for m in media}
    corr = pd.concat([src.correlation_table(conc[m]).assign(medium=m) for m in media], ignore_index=True)
    pca, tests, loads, interp = {}, [], [], []
    for m in media:
        res = src.pca_varimax(conc[m], transform=o.pca_transform, n_components=o.pca_components)
        pca[m] = res
        loads.append(src.pca_loadings_table(res).assign(medium=m))
        t = res.tests
        tests.append({"medium": m, "n": len(conc[m]), "kmo": t["kmo"], "bartlett_chi2": t["bartlett_chi2"],
                      "bartlett_df": t["bartlett_df"], "bartlett_p": t["bartlett_p"],
                      "n_components": res.n_components, "criterion": res.criterion})
        weights = (res.rotated_loadings.clip(lower=0) ** 2 * 100).T
        interp.append(src.interpret_factors(weights, o.signatures, min_similarity=o.signature_min_similarity)
                      .assign(medium=m, method="PCA"))
    load = pd.concat(loads, ignore_index=True)[["medium", "component", "metal", "loading", "rotated_loading",
                                                "communality", "eigenvalue", "explained_variance_percent",
                                                "rotated_variance_percent"]]
    pmf_res: dict[str, PMFMedium] = {}
    if o.pmf:
        for mi, m in enumerate(media):
            pmf_res[m] = _pmf_medium(ctx, conc[m], m, mi)
            pct = pmf_lib.profile_table(pmf_res[m].fit).pivot(index="factor", columns="species",
                                                              values="percent_of_species")
            interp.append(src.interpret_factors(pct, o.signatures, min_similarity=o.signature_min_similarity)
                          .assign(medium=m, method="PMF"))
    interp_df = pd.concat(interp, ignore_index=True)[["medium", "method", "factor", "suggested_source", "similarity",
                                                      "best_signature", "top_metals", "reason"]]
    tabs = _pmf_tables(pmf_res) if pmf_res else dict.fromkeys(
        ["profiles", "contributions", "diagnostics", "factor_count", "bootstrap", "disp", "disp_swaps", "bs_disp",
         "bs_disp_swaps"])
    result = Result(media=media, dropped=dropped, correlation=corr, pca=pca, pca_tests=pd.DataFrame(tests),
                    pca_loadings=load, pmf=pmf_res, interpretation=interp_df, **tabs)
    if o.isotope_ratios:
        _isotopes(ctx, result)
    _attribution_inputs(ctx, result)
    if o.known_truth:
        _truth(ctx, result)
    return result


def _attribution_inputs(ctx: StageContext, result: Result) -> None:
    """Samples above the guideline value per metal, bootstrap intervals of the percent of species, and the
    association of the factors' contributions with the categorical covariates."""
    from .. import descriptive as dq

    data, p = ctx.data, ctx.params
    refs = p.references
    for m, r in result.pmf.items():
        result.share_intervals[m] = src.species_share_intervals(r.boot.profiles, n_factors=r.chosen)
    if refs.guideline:
        for m in result.media:
            try:
                cond, default, _ = dq.sample_conditions(data.sites(m), ph_column=p.data.ph_column,
                                                        land_use_column=p.data.land_use_column,
                                                        land_use=refs.land_use, guideline_set=refs.guideline)
                ex = dq.exceedance_samples(data.wide(m), background_set=None, guideline_set=refs.guideline,
                                           medium=m, unit=data.unit(m), conditions=cond, default_conditions=default)
            except Exception:  # noqa: BLE001 - no applicable guideline for this medium: no exceedance columns
                continue
            if ex.empty:
                continue
            g = ex[ex["reference_set"] == refs.guideline]
            names = list(dict.fromkeys(g["threshold_name"]))
            name = refs.guideline_threshold if refs.guideline_threshold in names else (names[0] if names else None)
            if name is None:
                continue
            g = g[(g["threshold_name"] == name) & (g["status"] == "above")]
            result.above[m] = {k: list(v.astype(str)) for k, v in g.groupby("metal")["sample_id"]}
            result.guideline_label = f"{str(name).replace('_', ' ')} value"
    cats = [c for c in (p.data.categorical or []) if c in data.samples.columns]
    if cats and result.pmf:
        parts = []
        for m, r in result.pmf.items():
            cov = data.samples[data.samples["medium"] == m] if "medium" in data.samples else data.samples
            cov = cov.assign(sample_id=cov["sample_id"].astype(str)).drop_duplicates("sample_id").set_index(
                "sample_id")[cats]
            G = r.fit.contributions.copy()
            G.index = G.index.astype(str)
            parts.append(src.covariate_association(G, cov).assign(medium=m))
        result.association = pd.concat(parts, ignore_index=True) if parts else None


def _truth(ctx: StageContext, result: Result) -> None:
    """The recovered sources beside the generator's truth (generated demo regions only)."""
    folder = ctx.params.resolve(ctx.options.known_truth)
    prof = pd.read_csv(folder / "truth_profiles.csv").set_index("source")
    con_f = folder / "truth_contributions.csv"
    if result.pmf and con_f.is_file():
        con = pd.read_csv(con_f)
        con["sample_id"] = con["sample_id"].astype(str)
        rows = []
        for m, r in result.pmf.items():
            c = con[con["medium"] == m].set_index("sample_id").drop(columns=["medium"])
            share = result.bootstrap[result.bootstrap["medium"] == m].set_index("factor")["mean_share_percent"]
            rows.append(src.compare_pmf_with_truth(r.fit, prof, c, mean_share_percent=share).assign(medium=m))
        result.truth = pd.concat(rows, ignore_index=True)
    pb_f = folder / "truth_pb_shares.csv"
    if result.isotope_mixing is not None and pb_f.is_file():
        result.isotope_truth = src.compare_isotopes_with_truth(result.isotope_mixing, pd.read_csv(pb_f))


def _pmf_medium(ctx: StageContext, x: pd.DataFrame, m: str, mi: int) -> PMFMedium:
    o, p = ctx.options, ctx.params
    est_metals: list[str] = []
    mdl = None
    if o.uncertainty_file:
        unc = pmf_lib.read_uncertainty_file(p.resolve(o.uncertainty_file), concentration=x, medium=m)
        source = "file"
    else:
        given = {**p.non_detects.detection_limits, **o.mdl}
        est = pmf_lib.estimated_mdl(x)
        mdl = {k: float(given.get(k, est[k])) for k in x.columns}
        est_metals = [k for k in x.columns if k not in given]
        source = "estimated" if est_metals else "laboratory"
        unc = pmf_lib.pmf_uncertainty(x, mdl=mdl, error_fraction=o.error_fraction)
    sn = pmf_lib.signal_to_noise(x, unc)
    cats = pmf_lib.species_categories(sn, overrides=o.species_categories)
    V_all, U_all = pmf_lib.pmf_input(x, unc, cats)
    n_strong = int((cats[V_all.columns] == "strong").sum())
    base_seed = ctx.seed + 1000 * mi
    V, U = V_all, U_all
    if o.pmf_max_samples is not None and len(V_all) > o.pmf_max_samples:
        keep = _pmf_subsample(ctx.data.sites(m), V_all.index, n=o.pmf_max_samples, seed=base_seed + 900)
        V, U = V_all.iloc[keep], U_all.iloc[keep]
    lo, hi = o.pmf_factor_range
    hi = min(hi, max(V.shape[1] - 2, 1))  # with m species, at most m - 2 factors are worth resolving
    counts = list(range(min(lo, hi), hi + 1))
    solver = dict(max_iter=o.pmf_max_iter, converge_delta=o.pmf_converge_delta, converge_n=o.pmf_converge_n,
                  robust=o.pmf_robust)
    jobs = _n_jobs(o)
    fits = {}
    for k in track(counts, desc=f"PMF factor counts ({m})"):
        fits[k] = pmf_lib.fit_pmf(V, U, n_factors=k, seed=base_seed + k, n_starts=o.pmf_starts, n_strong=n_strong,
                                  n_jobs=jobs, **solver)
    scan = pd.DataFrame([{"n_factors": k, "q_true": r.q_true, "q_robust": r.q_robust, "q_expected": r.q_expected,
                          "q_true_over_expected": r.q_true / r.q_expected,
                          "q_robust_over_expected": r.q_robust / r.q_expected,
                          "n_downweighted": r.settings["n_downweighted"]} for k, r in fits.items()])
    if o.pmf_factors:
        k = o.pmf_factors
        if k not in fits:
            fits[k] = pmf_lib.fit_pmf(V, U, n_factors=k, seed=base_seed + k, n_starts=o.pmf_starts,
                                      n_strong=n_strong, n_jobs=jobs, **solver)
        _, _, crit = pmf_lib.choose_factor_count(scan, n_samples=V.shape[0], n_species=V.shape[1],
                                                 dq_units_min=o.pmf_dq_units_min)
        why = f"{k} factors: fixed in the region's parameters"
    else:
        k, why, crit = pmf_lib.choose_factor_count(scan, n_samples=V.shape[0], n_species=V.shape[1],
                                                   dq_units_min=o.pmf_dq_units_min)
        if o.pmf_stability and len(counts) > 1:
            rows = []
            q = k
            while q >= counts[0]:
                rows.append(pmf_lib.factor_stability(fits[q], n_boot=o.pmf_stability_bootstrap,
                                                     seed=base_seed + 300 + q, threshold=o.pmf_bootstrap_threshold,
                                                     block_size=o.pmf_bootstrap_block, n_jobs=jobs))
                last = rows[-1]
                if last["bs_min_mapping"] >= 0.8 and last["disp_swaps_dq4"] == 0:
                    break
                q -= 1
            k, why, crit = pmf_lib.choose_factor_count(scan, n_samples=V.shape[0], n_species=V.shape[1],
                                                       dq_units_min=o.pmf_dq_units_min, stability=pd.DataFrame(rows))
    crit = crit.assign(chosen=crit["n_factors"] == k)
    res = fits[k]
    boot = pmf_lib.bootstrap_pmf(res, n_runs=o.pmf_bootstrap, seed=base_seed + 500,
                                 threshold=o.pmf_bootstrap_threshold, block_size=o.pmf_bootstrap_block, n_jobs=jobs)
    disp = pmf_lib.disp_pmf(res) if o.pmf_disp else None
    bsd = (pmf_lib.bs_disp_pmf(res, n_runs=o.pmf_bs_disp, seed=base_seed + 700, threshold=o.pmf_bootstrap_threshold,
                               block_size=o.pmf_bootstrap_block, n_jobs=jobs) if o.pmf_bs_disp else None)
    sub = len(V) < len(V_all)
    if sub:  # every sample's contributions from the profiles fitted on the subsample
        res = pmf_lib.pmf_all_samples(res, V_all, U_all, n_strong=n_strong)
    return PMFMedium(fit=res, criteria=crit, residuals=pmf_lib.scaled_residual_summary(fits), chosen=k, why=why,
                     boot=boot, disp=disp, bs_disp=bsd, signal_to_noise=sn, categories=cats,
                     uncertainty_source=source, mdl=mdl, estimated_mdl_metals=est_metals,
                     n_fitted=len(V) if sub else None, n_samples=len(V_all))


def _label_rests_on_lead(source: str, weights: pd.Series, signatures: dict) -> bool:
    """True when a factor's suggested source rests on its leading metal alone (a marker by assumption): left out,
    the factor matches that signature no longer (:func:`hmlib.sources.signature_apart_from`)."""
    top = str(weights.idxmax())
    return (bool(source) and top in signatures.get(source, [])
            and src.signature_apart_from(weights, signatures, top)[0] != source)


def _label_words(source: str, weights: pd.Series, signatures: dict) -> str:
    """How a factor's suggested source reads in the text: with the caveat when the label rests on the factor's
    leading metal alone, so the label says nothing about where that metal comes from."""
    if not source:
        return "no matching signature)"
    if _label_rests_on_lead(source, weights, signatures):
        top = str(weights.idxmax())
        return (f"resembles the {source} signature only because {top} is listed as one of its markers; apart from "
                f"{top} it matches no signature)")
    return f"resembles the {source} signature)"


def _factor_word(factor: str, names: dict) -> str:
    n = names.get(factor) if names else None
    return f"{factor} ({n})" if n and n != "unassigned" else str(factor)


def _pmf_subsample(sites: pd.DataFrame, ids: pd.Index, *, n: int, seed: int):
    """Positions (in ``ids``) of the samples PMF is fitted on: a spatially stratified subsample of ``n``
    (:func:`hmlib.spatial.spatial_subsample`) of the samples with coordinates, a seeded random one of those
    without, each in proportion to its number."""
    from ..spatial import spatial_subsample

    s = sites.copy()
    s.index = s.index.astype(str)
    s = s[~s.index.duplicated()].reindex(ids)
    xy = (s[["x", "y"]].apply(pd.to_numeric, errors="coerce").to_numpy(float) if {"x", "y"} <= set(s.columns)
          else np.full((len(ids), 2), np.nan))
    has = np.isfinite(xy).all(axis=1)
    pos_xy, pos_no = np.flatnonzero(has), np.flatnonzero(~has)
    n_xy = int(round(n * len(pos_xy) / len(ids)))
    rng = np.random.default_rng(seed)
    pick = [pos_xy[spatial_subsample(xy[has, 0], xy[has, 1], n=n_xy, seed=seed)]] if n_xy else []
    if n - n_xy:
        pick.append(np.sort(rng.choice(pos_no, size=n - n_xy, replace=False)))
    return np.sort(np.concatenate(pick)) if pick else np.arange(0)


def _pmf_tables(pmf_res: dict[str, PMFMedium]) -> dict:
    prof, con, diag, crit, boot, disp, dsw, bsd, bsw = [], [], [], [], [], [], [], [], []
    for m, r in pmf_res.items():
        res = r.fit
        prof.append(pmf_lib.profile_table(res, r.boot).rename(columns={"species": "metal"}).assign(medium=m))
        con.append(pmf_lib.contribution_table(res).assign(medium=m))
        dg = pmf_lib.species_diagnostics(res).rename(columns={"species": "metal"})
        dg = dg.merge(pd.DataFrame({"metal": r.signal_to_noise.index, "signal_to_noise": r.signal_to_noise.to_numpy(),
                                    "category": r.categories.to_numpy()}), on="metal", how="right")
        diag.append(dg.assign(medium=m, n_factors=r.chosen, q_true=res.q_true, q_robust=res.q_robust,
                              q_expected=res.q_expected))
        crit.append(r.criteria.merge(r.residuals, on="n_factors", how="left").assign(medium=m))
        bmap = r.boot.mapping.assign(medium=m)
        if r.disp is not None:
            sw = r.disp["swaps"]
            bmap = bmap.merge(sw[sw["dQmax"] == 4][["factor", "swap_percent"]].rename(
                columns={"swap_percent": "disp_swap_percent_dq4"}), on="factor")
            disp.append(r.disp["intervals"].assign(medium=m))
            dsw.append(sw.assign(medium=m))
        if r.bs_disp is not None:
            bsd.append(r.bs_disp["intervals"].assign(medium=m))
            bsw.append(r.bs_disp["swaps"].assign(medium=m))
        boot.append(bmap)
    con_df = pd.concat(con, ignore_index=True)[["sample_id", "medium", "factor", "contribution", "share"]]
    share = con_df.groupby(["medium", "factor"])["share"].mean().mul(100).rename("mean_share_percent").reset_index()
    boot_df = pd.concat(boot, ignore_index=True).merge(share, on=["medium", "factor"])
    boot_df = boot_df[["medium"] + [c for c in boot_df.columns if c != "medium"]]

    def cat(lst):
        return pd.concat(lst, ignore_index=True) if lst else None

    return {"profiles": pd.concat(prof, ignore_index=True)[["medium", "factor", "metal", "concentration",
                                                            "percent_of_species", "ci_low", "ci_high"]],
            "contributions": con_df, "diagnostics": pd.concat(diag, ignore_index=True),
            "factor_count": pd.concat(crit, ignore_index=True), "bootstrap": boot_df, "disp": cat(disp),
            "disp_swaps": cat(dsw), "bs_disp": cat(bsd), "bs_disp_swaps": cat(bsw)}


def _n_jobs(o: Options) -> int:
    """Worker processes: the option, else the CPUs available to this process, at most 4."""
    return o.pmf_jobs or min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 4)


def _isotope_chunk(args) -> pd.DataFrame:
    """The Bayesian isotope mixing of one chunk of samples (top-level so that a process pool can pickle it)."""
    samples, em, ratios, residual_sd, seed, steps = args
    return iso.bayesian_mixing_table(samples, em, ratio_columns=ratios, residual_sd=residual_sd, seed=seed,
                                     n_steps=steps, burn=steps // 4)


def _isotopes(ctx: StageContext, result: Result) -> None:
    o, data, p = ctx.options, ctx.data, ctx.params
    em = pd.read_csv(p.resolve(o.isotope_endmembers))
    samp = data.samples.copy()
    samp["sample_id"] = samp["sample_id"].astype(str)
    srcs_all = list(dict.fromkeys(em["source"]))
    pair = tuple(o.isotope_pair) if o.isotope_pair else tuple(srcs_all[:2])
    lin = iso.two_endmember_table(samp, em, ratio_columns=o.isotope_ratios, pair=pair)
    # the sampler keeps every chain of every sample in memory (samples x 4 chains x kept steps x sources), so
    # large surveys go through it in chunks of ISOTOPE_CHUNK samples (the first chunk keeps the stage's seed,
    # so a region of at most ISOTOPE_CHUNK samples gives what one call gives)
    has = samp[list(o.isotope_ratios.values())].notna().all(axis=1).to_numpy()
    chunks = [samp[has].iloc[i:i + ISOTOPE_CHUNK] for i in range(0, max(int(has.sum()), 1), ISOTOPE_CHUNK)]
    jobs = [(c, em, dict(o.isotope_ratios), o.isotope_residual_sd, ctx.seed + 7 + 7919 * i, o.isotope_steps)
            for i, c in enumerate(chunks)]
    bay = pd.concat(pmf_lib._pool_map(_isotope_chunk, jobs, _n_jobs(o)), ignore_index=True)
    mix = pd.concat([lin.drop(columns=["outside_range"]), bay.drop(columns=["acceptance", "rhat", "ess"])],
                    ignore_index=True)
    summ = mix.groupby(["medium", "method", "source"]).agg(
        mean_share=("share", "mean"), median_share=("share", "median"), mean_ci_low=("ci_low", "mean"),
        mean_ci_high=("ci_high", "mean"), n=("share", "size")).reset_index()
    conv = bay.groupby(["medium", "source"]).agg(
        max_rhat=("rhat", "max"), median_rhat=("rhat", "median"), min_ess=("ess", "min"),
        median_ess=("ess", "median"), n_rhat_above=("rhat", lambda s: int((s > RHAT_WARN).sum())),
        n=("rhat", "size"), acceptance=("acceptance", "mean")).reset_index()
    result.isotope_mixing = mix[["sample_id", "medium", "method", "source", "share", "ci_low", "ci_high"]].merge(
        bay[["sample_id", "medium", "source", "rhat", "ess"]].assign(method="bayesian"),
        on=["sample_id", "medium", "method", "source"], how="left")
    result.isotope_summary = summ
    result.isotope_convergence = conv
    result.isotope_pair = pair
    result.isotope_outside = int(lin["outside_range"].sum())


# ------------------------------------------------------------------------------------------ report
def report(ctx: StageContext, result: Result) -> None:
    """The sources section: methods; PCA; PMF factors and their stability; where the metals above the guideline
    come from (the reconciliation of PCA, PMF and correlation); isotopes; the generator's truth on demos.
    Diagnostics (factor count, Q, DISP, BS-DISP, scree, biplot, profiles) go to the appendix."""
    o, data, out = ctx.options, ctx.data, ctx.out
    if result.isotope_mixing is None:  # the title names only what ran
        out.title = "Source apportionment: correlation, PCA and PMF"
    media = result.media
    units = {m: data.unit(m) for m in media}
    unit_label = units[media[0]] if len(set(units.values())) == 1 else "medium unit"
    sub = {m: (r.n_fitted, r.n_samples) for m, r in result.pmf.items() if r.n_fitted}
    out.markdown(src.methods_summary(o, media=media, appendix_ref="@sec-appendix-sources", subsample=sub))
    out.markdown(src.methods_text(o, media=media, seed=ctx.seed, esat_version=pmf_lib.ESAT_VERSION,
                                  mdl_notes=_mdl_notes(result), subsample=sub), appendix=True)
    if any(result.dropped.values()):
        out.markdown("Samples with a missing metal value were left out of this analysis: "
                     + ", ".join(f"{n} in {m}" for m, n in result.dropped.items() if n) + ".")
    _report_correlation(ctx, result)
    _report_pca(ctx, result)
    if result.pmf:
        _report_pmf(ctx, result, unit_label, units)
    else:
        out.markdown("PMF was not run for this region (switched off in its parameters).")
    if result.isotope_mixing is not None:
        _report_isotopes(ctx, result)
    if result.truth is not None or result.isotope_truth is not None:
        _report_truth(ctx, result)
    if sub:
        out.limitation(src.subsample_text(sub, name_media=len(media) > 1) + " Samples outside the subsample do "
                       "not shape the profiles, so a source confined to a few of them can be missed.")
    out.limitation("PCA and PMF describe how the metals co-vary; they name sources only through the marker "
                   "metals given for the region, and a factor's label is an interpretation, not a measurement of "
                   "origin.")


def _mdl_notes(result: Result) -> dict[str, str]:
    notes = {}
    for m, r in result.pmf.items():
        if r.uncertainty_source == "laboratory":
            notes[m] = "laboratory MDLs from the region's parameters"
        elif r.uncertainty_source == "estimated":
            notes[m] = ("no laboratory MDL for " + ", ".join(r.estimated_mdl_metals) + f" in {m}, so the MDL was "
                        "estimated as 0.33 times the smallest reported value (a value is reported at or above the "
                        "limit of quantification, 10 blank standard deviations, and the detection limit is 3.3 of "
                        "them) [@ich2005q2]; this bounds the detection-limit term without inflating the uncertainty")
    return notes


def _report_correlation(ctx: StageContext, result: Result) -> None:
    """The correlation matrix is shown once, in the data-quality section; here only the full table (CSV)."""
    out = ctx.out
    out.table("correlation", result.correlation[["medium", "method", "metal_a", "metal_b", "r", "p"]],
              "Correlation coefficients and two-tailed p-values for every pair of metals (Pearson of raw and of log10 "
              "values, Spearman of ranks).", in_report=False)
    for m in result.media:
        t = result.correlation[result.correlation["medium"] == m]
        r_log, p_log = src.correlation_matrices(t, method="pearson_log")
        r_sp, p_sp = src.correlation_matrices(t, method="spearman")
        out.table(f"correlation_matrix_{m}", src.correlation_display(r_log, p_log, r_sp, p_sp),
                  f"Correlation matrix, {m}.", in_report=False)
    if "data_quality" in ctx.params.stages:
        out.markdown("The correlations between the metals, on which PCA and PMF build, are shown in the data-quality "
                     f"section (@{ref_id('fig', 'dq_correlations')}).")


_NUM = {2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six"}


def _single_component_summary(result: Result) -> str | None:
    """One paragraph instead of one per medium when every medium kept a single component on which every
    metal loads most (the per-medium paragraphs would repeat each other); None otherwise."""
    if len(result.pca) < 2:
        return None
    rows = []
    for m, res in result.pca.items():
        L = res.rotated_loadings
        names = {k: v for k, v in _pca_names(result, m).items() if v and v != "unassigned"}
        if res.n_components != 1 or L.shape[1] != 1 or names:  # a named component keeps its own paragraph
            return None
        t = result.pca_tests[result.pca_tests["medium"] == m].iloc[0]
        rows.append((m, L.columns[0], float(res.rotated_variance[L.columns[0]]), float(t["kmo"]),
                     float(t["bartlett_p"])))
    kmo = "; ".join(f"{m} {k:.2f}" for m, _, _, k, _ in rows)
    adequate = all(k >= 0.6 for *_, k, _ in rows)
    bart = ("< 0.001 in each" if all(b < 0.001 for *_, b in rows)
            else "; ".join(f"{m} {'< 0.001' if b < 0.001 else f'= {b:.2g}'}" for m, *_, b in rows))
    var = [f"{v:.0f} % of the variance in {m}" for m, _, v, _, _ in rows]
    var_txt = ", ".join(var[:-1]) + " and " + var[-1]
    return (f"**PCA.** In every medium the correlations suit a PCA (KMO {kmo}"
            + (", all adequate" if adequate else "") + f"; Bartlett's test p {bart}), and one component was kept "
            f"(eigenvalue above 1), on which every metal loads most: it explains {var_txt}. The metals rise and fall "
            "together, so PCA does not separate sources here; with a single component there is no biplot "
            f"(@{ref_id('tbl', 'pca_loadings')}).")


def _pca_names(result: Result, m: str) -> dict[str, str]:
    it = result.interpretation
    d = it[(it["medium"] == m) & (it["method"] == "PCA")]
    return dict(zip(d["factor"], d["suggested_source"]))


def _report_pca(ctx: StageContext, result: Result) -> None:
    o, out = ctx.options, ctx.out
    load = result.pca_loadings
    texts = []
    for m, res in result.pca.items():
        t = result.pca_tests[result.pca_tests["medium"] == m].iloc[0]
        names = {k: v for k, v in _pca_names(result, m).items() if v and v != "unassigned"}
        L = res.rotated_loadings
        comps = []
        for c in L.columns:
            hi = [x for x in L.index if L.loc[x].abs().idxmax() == c]
            lab = f" ({names[c]})" if c in names else ""
            comps.append(f"{c}{lab}, {res.rotated_variance[c]:.0f} % of the variance: "
                         + (", ".join(hi) if hi else "no metal loads most on it"))
        adequacy = "adequate" if t["kmo"] >= 0.6 else "poor"
        bp = t["bartlett_p"]
        bp_txt = "< 0.001" if bp < 0.001 else f"= {bp:.2g}"
        texts.append(f"**PCA, {m}.** The correlations suit a PCA (KMO = {t['kmo']:.2f}, {adequacy}; Bartlett's test "
                     f"p {bp_txt}). "
                     + (f"{_NUM.get(res.n_components, res.n_components)} components were kept (eigenvalue above "
                        "1): " + "; ".join(comps)
                        if res.n_components > 1 else f"One component was kept (eigenvalue above 1): {comps[0]}; "
                        "with a single component there is no biplot")
                     + f" (@{ref_id('tbl', 'pca_loadings')}).")
        out.figure(f"pca_scree_{m}", src.plot_scree(res, title=f"Scree plot, {m}"),
                   f"Eigenvalues of the correlation matrix of standardized {o.pca_transform} concentrations in {m}, "
                   "with the Kaiser criterion (eigenvalue 1) and the cumulative explained variance.",
                   appendix=True, group="pca_diagnostics" if len(result.pca) > 1 else None)
        if L.shape[1] >= 2:
            out.figure(f"pca_biplot_{m}", src.plot_biplot(res, title=f"Biplot, {m}"),
                       f"Biplot of the first two varimax-rotated components in {m}: sample scores (grey) and metal "
                       "loadings (arrows, scaled to the scores).", appendix=True,
                       group="pca_biplots" if len(result.pca) > 1 else None)
    single = _single_component_summary(result)
    out.markdown(single if single else "\n\n".join(texts))
    wide = load.pivot_table(index=["medium", "metal"], columns="component", values="rotated_loading").reset_index()
    if len(result.media) == 1:
        wide = wide.drop(columns=["medium"])
    var = load.drop_duplicates(["medium", "component"])
    note = "; ".join((f"{r.medium} " if len(result.media) > 1 else "") + f"{r.component}: "
                     f"{r.rotated_variance_percent:.1f} %" for r in var.itertuples())
    out.table("pca_loadings", load, f"Varimax-rotated PCA loadings (RC: rotated component) of standardized "
              f"{o.pca_transform} concentrations. Variance explained after rotation: {note}.",
              display=wide.rename(columns={"medium": "Medium", "metal": "Metal"}), sig=2)
    tests = result.pca_tests
    out.table("pca_tests", tests, "Sampling adequacy: Kaiser-Meyer-Olkin measure (KMO; > 0.6 acceptable) and "
              "Bartlett's test of sphericity (small p: correlations suitable for PCA), and the components kept.",
              display=tests.drop(columns=["criterion"]).rename(
                  columns={"medium": "Medium", "n": "n", "kmo": "KMO", "bartlett_chi2": "Bartlett chi2",
                           "bartlett_df": "df", "bartlett_p": "p", "n_components": "Components"}), appendix=True)


def _stability(r: PMFMedium, bootstrap_runs: int) -> tuple[bool, str]:
    ms = float(r.boot.mapping["mapping_share"].min())
    swaps = None
    if r.disp is not None:
        sw = r.disp["swaps"]
        swaps = int(sw[sw["dQmax"] == 4]["n_swaps"].sum())
    stable = ms >= 0.8 and (swaps in (None, 0))
    n_runs = int(r.boot.mapping["n_runs"].max()) if "n_runs" in r.boot.mapping else bootstrap_runs
    note = ((f"every factor found again in all {n_runs} bootstrap runs" if ms >= 1 else
             f"every factor found again in at least {100 * ms:.0f} % of {n_runs} bootstrap runs")
            + ((", no factor swap under displacement at dQmax = 4" if swaps == 0 else
                f", {swaps} factor swap{'s' if swaps != 1 else ''} under displacement at dQmax = 4")
               if swaps is not None else ""))
    return stable, note


def _report_pmf(ctx: StageContext, result: Result, unit_label: str, units: dict) -> None:
    o, data, p, out = ctx.options, ctx.data, ctx.params, ctx.out
    multi = len(result.pmf) > 1
    it = result.interpretation
    for m, r in result.pmf.items():
        res = r.fit
        stable, note = _stability(r, o.pmf_bootstrap)
        names = dict(zip(it[(it["medium"] == m) & (it["method"] == "PMF")]["factor"],
                         it[(it["medium"] == m) & (it["method"] == "PMF")]["suggested_source"]))
        names = {k: ("" if v == "unassigned" else v) for k, v in names.items()}
        pmf_it = it[(it["medium"] == m) & (it["method"] == "PMF")].set_index("factor")
        lead = {f: "–".join(x.split()[0] for x in str(pmf_it.at[f, "top_metals"]).split(", ")[:2])
                for f in names}
        pct = result.profiles[result.profiles["medium"] == m].pivot(index="factor", columns="metal",
                                                                      values="percent_of_species")
        named = [f"{f} ({lead[f]}; " + _label_words(v, pct.loc[f], o.signatures) for f, v in names.items()]
        # figure titles: the source label only where it does not rest on the factor's leading metal alone
        shown = {f: (lead[f] if _label_rests_on_lead(v, pct.loc[f], o.signatures) else v) for f, v in names.items()}
        why = r.why.split(": ", 1)[-1]
        tbl, figm, app = ref_id("tbl", "pmf_factors"), ref_id("fig", f"pmf_maps_{m}"), ref_id("tbl", "pmf_factor_count")
        out.markdown(f"**PMF factor count, {m}.** {why[0].upper() + why[1:]}.", appendix=True)
        how = ("as fixed for the region" if "fixed" in r.why else
               "the largest number that lowered Q clearly and stayed stable under bootstrap and displacement")
        txt = (f"**PMF, {m}.** {_NUM.get(r.chosen, r.chosen)} factors were kept, {how} (@{app}): "
               f"{', '.join(named)} (@{tbl}). The solution is "
               + ("stable" if stable else "not fully stable") + f": {note}. The fit leaves Q(robust)/Q(expected) = "
               f"{res.q_robust / res.q_expected:.2f}"
               + ("; with detection limits estimated from the data this ratio is only indicative"
                  if r.uncertainty_source == "estimated" else "")
               + ". ")
        sites = data.sites(m).reset_index()
        sites["sample_id"] = sites["sample_id"].astype(str)
        has_xy = bool(sites[["x", "y"]].notna().all().all())
        if has_xy:
            txt += f"Where each factor dominates is mapped in @{figm}."
        out.markdown(txt)
        est = [mm for mm, rr in result.pmf.items() if rr.uncertainty_source == "estimated"]
        if est and m == est[0]:  # one limitation naming every medium, not one per medium
            est_w = est[0] if len(est) == 1 else ", ".join(est[:-1]) + " and " + est[-1]
            out.limitation(f"No laboratory detection limits were given for {est_w}; the PMF uncertainties of the "
                           "source apportionment use limits estimated from the data, so Q/Q(expected) is only "
                           "indicative.")
        if has_xy:
            con = result.contributions[result.contributions["medium"] == m]
            fig = src.plot_contribution_maps(con, sites, title="", coord_unit=p.data.coordinate_unit,
                                             names=shown, crs=p.data.crs)
            out.figure(f"pmf_maps_{m}", fig, f"Share of each PMF factor in the modelled concentrations of each {m} "
                       "sample (mean over metals), at the sample locations.", group="pmf_maps" if multi else None)
        # attribution: which factor carries each metal, with the bootstrap interval
        prof = result.profiles[result.profiles["medium"] == m]
        shares = src.sample_species_shares(res.contributions, res.profiles)
        att = src.attribution_table(prof, result.share_intervals.get(m, pd.DataFrame(
            columns=["factor", "species", "pct_low", "pct_high"])), shares, names=names,
            above=result.above.get(m) if result.guideline_label else None)
        aname = "pmf_attribution" + (f"_{m}" if multi else "")
        out.table(aname, att.assign(medium=m),
                  f"Share of each metal's modelled concentration in {m} carried by each PMF factor, with the bootstrap "
                  "90 % interval (5th-95th percentile over the bootstrap runs that mapped every factor; a base value "
                  "at a bound, 0 or 100 %, or one the refits do not reproduce can lie outside it)"
                  + (f"; the samples above the {result.guideline_label} and the factor carrying most of their "
                     "concentration (median share over those samples)"
                     if result.guideline_label and result.above.get(m) else "") + ".",
                  display=src.attribution_display(att, guideline_label=result.guideline_label if
                                                  result.above.get(m) else None, labels=lead),
                  group="pmf_attribution" if multi else None)
        assoc = None if result.association is None else result.association[result.association["medium"] == m]
        if assoc is not None:  # reader's names of the covariates and their classes (land use, pasture; not W)
            spec = ctx.params.data
            assoc = assoc.assign(
                highest_class=[spec.class_label(c, k) or k for c, k in zip(assoc["covariate"], assoc["highest_class"])],
                covariate=[re.sub(r"(\s*\([^)]*\)|\s+class(es)?)\s*$", "", spec.covariate_label(c))
                           for c in assoc["covariate"]])
        pca_l = result.pca[m].rotated_loadings if m in result.pca else None
        conc = data.wide(m).dropna()
        text, finds = src.attribution_text(
            att, medium=m, signatures=o.signatures, pca_loadings=pca_l, pca_names=_pca_names(result, m),
            concentration=conc, association=assoc, stable=stable, stability_note=note,
            guideline_label=result.guideline_label if result.above.get(m) else None,
            refs={"table": ref_id("tbl", aname), "pca": ref_id("tbl", "pca_loadings"),
                  "maps": figm if has_xy else None},
            published=o.published_attribution, labels=lead)
        if text:
            out.markdown(text)
        else:
            main = att.sort_values("percent").groupby("metal", sort=False).tail(1)
            by = {f: list(g["metal"]) for f, g in main.groupby("factor", sort=True)}
            out.markdown(f"In {m}, " + "; ".join(
                f"{_factor_word(f, names)} carries the largest share of " + (", ".join(ms[:-1]) + " and " + ms[-1]
                                                                    if len(ms) > 1 else ms[0])
                for f, ms in by.items()) + f" (@{ref_id('tbl', aname)}).")
        for f in finds:
            out.finding(f["text"], importance=f["importance"], refs=f["refs"], topic=f.get("topic"))
        if finds and m == next(iter(result.pmf)):
            out.conclusion(finds[0]["text"])
        if not finds and m == next(iter(result.pmf)):
            top = result.bootstrap[result.bootstrap["medium"] == m].sort_values("mean_share_percent").iloc[-1]
            out.finding(f"In {m}, PMF resolved {r.chosen} factors ({', '.join(named)}); the largest, {top.factor}, "
                        f"carries {top.mean_share_percent:.0f} % of the modelled concentrations on average; "
                        f"{note}.", importance=0.5, refs=[ref_id("tbl", "pmf_factors")])
        # appendix diagnostics
        fig = src.plot_q_scan(r.criteria, chosen=r.chosen, title="")
        out.figure(f"pmf_q_{m}", fig, f"Q(true)/Q(expected) and Q(robust)/Q(expected) of the best of {o.pmf_starts} "
                   f"random starts per factor count in {m}, and the drop in Q(robust) per added factor.",
                   appendix=True, group="pmf_q" if multi else None)
        fig = src.plot_pmf_profiles(prof.rename(columns={"metal": "species"}), unit=units[m], title="")
        out.figure(f"pmf_profiles_{m}", fig, f"PMF factor profiles in {m} ({r.chosen} factors): concentration "
                   f"({units[m]}, bars, log scale) with bootstrap 5th-95th percentiles ({o.pmf_bootstrap} runs), and "
                   "percent of each metal's modelled concentration (diamonds, right axis).", appendix=True,
                   group="pmf_profiles" if multi else None)
    if len(data.metals) <= 4:
        out.markdown(f"This region has {len(data.metals)} metals, so at most {max(len(data.metals) - 2, 1)} factors "
                     "can be resolved meaningfully; PMF results with so few species are coarse and should be read "
                     "with the correlation and PCA results.")
    # one factor table: interpretation (PMF rows) with stability and share
    bt = result.bootstrap
    pm = it[it["method"] == "PMF"].merge(bt, on=["medium", "factor"], how="left")
    disp_cols = {"medium": "Medium", "factor": "Factor", "suggested_source": "Suggested source",
                 "similarity": "Cosine similarity", "top_metals": "Largest shares of metals (%)",
                 "mapping_share": "Bootstrap mapping", "disp_swap_percent_dq4": "DISP swaps, dQmax 4 (%)",
                 "mean_share_percent": "Mean share of the samples (%)"}
    pct_all = result.profiles.pivot_table(index=["medium", "factor"], columns="metal", values="percent_of_species")

    def _shown_source(row) -> str:
        v = row["suggested_source"]
        if v == "unassigned":
            return "none matches"
        w = pct_all.loc[(row["medium"], row["factor"])].dropna()
        return f"{v} (through {w.idxmax()} alone)" if _label_rests_on_lead(v, w, o.signatures) else v

    pm_disp = pm.assign(mapping_share=100 * pm["mapping_share"], suggested_source=pm.apply(_shown_source, axis=1))
    disp_cols["mapping_share"] = "Found again in bootstrap runs (%)"
    show = pm_disp[[c for c in disp_cols if c in pm_disp.columns]].rename(columns=disp_cols)
    if not multi:
        show = show.drop(columns=["Medium"])
    out.table("pmf_factors", pm.drop(columns=["reason"], errors="ignore"),
              "PMF factors: the source type whose marker metals match the factor's shares of metals best (named at "
              f"cosine similarity of at least {o.signature_min_similarity:g}; signatures: "
              + ("; ".join(f"{k}: {', '.join(v)}" for k, v in o.signatures.items()) or "none given")
              + "), the share of bootstrap runs in which the factor was found again, the factor swaps under "
              "displacement, and the factor's mean share of the samples' modelled concentrations.", display=show)
    out.table("factor_interpretation", it, "Factor interpretation aid for the PCA components and PMF factors: "
              "cosine similarity with the marker-metal signatures and the largest weights.",
              display=it.drop(columns=["reason"]).rename(
                  columns={"medium": "Medium", "method": "Method", "factor": "Factor",
                           "suggested_source": "Suggested source", "similarity": "Cosine similarity",
                           "best_signature": "Closest signature", "top_metals": "Largest weights (%)"}),
              appendix=True)
    prof = result.profiles
    out.table("pmf_profiles", prof, "PMF factor profiles: concentration (medium unit, contributions scaled to mean 1), "
              "percent of species, and bootstrap 5th-95th percentiles of the concentration.",
              display=prof.rename(columns={"medium": "Medium", "factor": "Factor", "metal": "Metal",
                                           "concentration": f"Concentration ({unit_label})",
                                           "percent_of_species": "% of species", "ci_low": f"BS 5th ({unit_label})",
                                           "ci_high": f"BS 95th ({unit_label})"}), max_rows=60, appendix=True)
    out.table("pmf_contributions", result.contributions, "PMF factor contributions per sample (dimensionless, mean 1 "
              "per factor) and share of the sample's modelled concentrations (mean over metals).", in_report=False)
    fc = result.factor_count
    cols = ["medium", "n_factors", "q_true", "q_robust", "q_expected", "q_robust_over_expected", "dq_units",
            "share_abs_gt3", "chosen"]
    extra = [c for c in ("bs_min_mapping", "disp_swaps_dq4") if c in fc.columns]
    out.table("pmf_factor_count", fc, "PMF factor-count criteria: Q(true) and Q(robust) of the best start, "
              "Q(robust)/Q(expected), the drop in Q(robust) from one fewer factor in units of the n + m values a "
              "factor adds (scaled by the noise level of the largest model; about 1 when the factor fits noise), the "
              "share of scaled residuals beyond 3, and, where checked, the smallest bootstrap mapping share and the "
              "DISP swaps at dQmax = 4.",
              display=fc[cols + extra].rename(columns={
                  "medium": "Medium", "n_factors": "Factors", "q_true": "Q(true)", "q_robust": "Q(robust)",
                  "q_expected": "Q(exp)", "q_robust_over_expected": "Q(robust)/Q(exp)", "dq_units": "ΔQ / (s(n+m))",
                  "share_abs_gt3": "|res/u| > 3", "chosen": "Chosen", "bs_min_mapping": "Min. BS mapping",
                  "disp_swaps_dq4": "DISP swaps dQ=4"}), appendix=True)
    dg = result.diagnostics
    out.table("pmf_diagnostics", dg, "PMF diagnostics per metal: S/N and category, observed vs predicted regression "
              "(r2, slope), Lilliefors test of scaled residuals (KS statistic, p) and the share of |scaled residual| "
              "> 3; model Q values repeated per row.",
              display=dg[["medium", "metal", "category", "signal_to_noise", "r2", "slope", "ks_statistic", "ks_p",
                          "share_scaled_residual_gt3"]].rename(
                  columns={"medium": "Medium", "metal": "Metal", "category": "Category", "signal_to_noise": "S/N",
                           "slope": "Slope", "ks_statistic": "KS D", "ks_p": "KS p",
                           "share_scaled_residual_gt3": "|res/u| > 3 (share)"}), appendix=True)
    out.table("pmf_bootstrap", bt, "PMF bootstrap mapping per factor.", in_report=False)
    if result.disp is not None:
        out.table("pmf_disp_swaps", result.disp_swaps, "DISP factor swaps per factor and dQmax (EPA levels 4, 8, 16, "
                  "32): displacements (two per metal) after which a refitted profile matched another factor better.",
                  display=result.disp_swaps.rename(columns={"medium": "Medium", "dQmax": "dQmax", "factor": "Factor",
                                                            "n_swaps": "Swaps", "n_displacements": "Displacements",
                                                            "swap_percent": "Swaps (%)"}), appendix=True)
        out.table("pmf_disp", result.disp, "DISP intervals of every profile value for dQmax = 4, 8, 16, 32, with the "
                  "rest of the solution refitted at each displaced value.", in_report=False)
    if result.bs_disp is not None:
        out.table("pmf_bs_disp_swaps", result.bs_disp_swaps, "BS-DISP swaps per factor and dQmax (0.5, 1, 2, 4) over "
                  f"{o.pmf_bs_disp} bootstrap runs.", display=result.bs_disp_swaps.rename(
                      columns={"medium": "Medium", "factor": "Factor", "n_swaps": "Swaps",
                               "n_displacements": "Displacements", "swap_percent": "Swaps (%)"}), appendix=True)
        out.table("pmf_bs_disp", result.bs_disp, "BS-DISP intervals of every profile value (range over bootstrap "
                  "runs of the displaced bounds).", in_report=False)
    if result.association is not None and len(result.association):
        a = result.association
        out.table("pmf_covariates", a, "Difference of each PMF factor's contributions between the classes of each "
                  "categorical covariate: Kruskal-Wallis H, p and effect size ε² (0: no difference, 1: classes fully "
                  "separated), and the class with the largest median contribution.",
                  display=a[["medium", "factor", "covariate", "h", "p", "epsilon2", "highest_class"]].assign(
                      covariate=a["covariate"].map(ctx.params.data.covariate_label)).rename(
                      columns={"medium": "Medium", "factor": "Factor", "covariate": "Covariate", "h": "H",
                               "epsilon2": "ε²", "highest_class": "Highest class"}), appendix=True)


def _report_isotopes(ctx: StageContext, result: Result) -> None:
    o, out = ctx.options, ctx.out
    pair = result.isotope_pair
    out.table("isotope_mixing", result.isotope_mixing,
              "Pb source shares per sample: linear two-end-member mixing per ratio (point estimates) and the "
              "Bayesian mixing model (posterior mean, 95 % interval, R-hat and effective sample size).",
              in_report=False)
    summ = result.isotope_summary
    conv = result.isotope_convergence
    n_bad = int(conv["n_rhat_above"].sum())
    bay = summ[summ["method"] == "bayesian"]
    multi = bay["medium"].nunique() > 1
    parts = "; ".join((f"in {med}, " if multi else "") + ", ".join(
        f"{r.source} {100 * r.mean_share:.0f} % ({100 * r.mean_ci_low:.0f} to {100 * r.mean_ci_high:.0f} %)"
        for r in g.itertuples()) for med, g in bay.groupby("medium", sort=False))
    parts += " (in brackets: the mean of the samples' 95 % interval bounds)"
    conv_txt = (f"{n_bad} of {int(conv['n'].sum())} posterior shares have R-hat above {RHAT_WARN}, so their chains had "
                "not mixed and those shares are less reliable" if n_bad else
                f"all posterior shares have R-hat at most {RHAT_WARN} (largest {conv['max_rhat'].max():.3f}; smallest "
                f"effective sample size {conv['min_ess'].min():.0f}), so the chains converged")
    out.markdown(f"**Pb isotopes.** The samples lie between the end-members in the ratio plot "
                 f"(@{ref_id('fig', 'isotope_ratios')}). The Bayesian mixing model gives average Pb shares"
                 f"{': ' if multi else ' of '}{parts} (@{ref_id('tbl', 'isotope_mixing_summary')}); {conv_txt} "
                 f"(@{ref_id('tbl', 'isotope_convergence')}). Linear mixing of {pair[0]} and {pair[1]} alone puts "
                 f"{result.isotope_outside} estimates outside 0-1, where a sample lies beyond the two end-members.")
    if n_bad:
        out.callout(f"{n_bad} posterior shares have R-hat above {RHAT_WARN}: more steps per chain would help.",
                    kind="warning", title="Isotope mixing: chains not converged")
    out.table("isotope_mixing_summary", summ, f"Pb source shares averaged over samples (linear mixing of {pair[0]} and "
              f"{pair[1]}; Bayesian model with all end-members).",
              display=summ.rename(columns={"medium": "Medium", "method": "Method", "source": "Source",
                                           "mean_share": "Mean share", "median_share": "Median share",
                                           "mean_ci_low": "Mean 2.5 %", "mean_ci_high": "Mean 97.5 %", "n": "n"}))
    out.table("isotope_convergence", conv, "Convergence of the Bayesian mixing model per source: largest and median "
              "rank-normalised split R-hat and smallest and median bulk effective sample size (ESS) over samples, "
              f"samples with R-hat above {RHAT_WARN}, and the mean acceptance rate.",
              display=conv.rename(columns={"medium": "Medium", "source": "Source", "max_rhat": "Max R-hat",
                                           "median_rhat": "Median R-hat", "min_ess": "Min ESS",
                                           "median_ess": "Median ESS", "n_rhat_above": f"R-hat > {RHAT_WARN}",
                                           "n": "Samples", "acceptance": "Acceptance"}), appendix=True)
    samp = ctx.data.samples.copy()
    em = pd.read_csv(ctx.params.resolve(o.isotope_endmembers))
    cols = list(o.isotope_ratios.values())
    fig = src.plot_isotopes(samp.dropna(subset=cols), em, ratio_columns=o.isotope_ratios, title="")
    out.figure("isotope_ratios", fig, "Pb isotope ratios of the samples and the end-member means (squares, error "
               "bars ± 2 sd).")
    if result.isotope_truth is None:
        b = bay.sort_values("mean_share").iloc[-1]
        out.finding(f"Pb isotopes attribute on average {100 * b.mean_share:.0f} % of the Pb to the {b.source} "
                    f"end-member (mean 95 % interval {100 * b.mean_ci_low:.0f} to {100 * b.mean_ci_high:.0f} %).",
                    importance=0.55, refs=[ref_id("tbl", "isotope_mixing_summary")])


def _report_truth(ctx: StageContext, result: Result) -> None:
    """Generated demo regions: the recovered sources and Pb shares beside the generator's truth."""
    out = ctx.out
    rows, txt = [], []
    if result.truth is not None:
        t = result.truth
        for r in t.itertuples():
            rows.append({"Medium": r.medium, "Quantity": f"PMF factor for {r.source}",
                         "Truth": f"{r.true_share_percent:.0f} % mean share",
                         "Recovered": (f"{r.factor}: {r.recovered_share_percent:.0f} % mean share" if r.factor else
                                       "no factor"),
                         "Agreement": (f"profile cosine {r.profile_cosine:.2f}; contributions r = "
                                       f"{r.contribution_r:.2f}" if r.factor else "–")})
        worst = t["profile_cosine"].min()
        err = (t["recovered_share_percent"] - t["true_share_percent"]).abs().max()
        txt.append(f"PMF recovered every generated source with a profile cosine similarity of at least {worst:.2f} "
                   f"and mean shares within {err:.0f} percentage points of the truth"
                   if t["factor"].astype(bool).all() else
                   f"PMF did not recover every generated source ({int((~t['factor'].astype(bool)).sum())} missed)")
    if result.isotope_truth is not None:
        it = result.isotope_truth
        for r in it.itertuples():
            rows.append({"Medium": r.medium, "Quantity": f"Pb share of {r.source}",
                         "Truth": f"{100 * r.true_mean_share:.0f} %",
                         "Recovered": f"{100 * r.estimated_mean_share:.0f} %",
                         "Agreement": (f"mean absolute error {100 * r.mean_abs_error:.1f} points; true share inside "
                                       f"the 95 % interval in {100 * r.coverage:.0f} % of samples")})
        txt.append(f"the Bayesian isotope model recovered the mean Pb shares within "
                   f"{100 * (it['estimated_mean_share'] - it['true_mean_share']).abs().max():.1f} percentage points, "
                   f"its 95 % intervals holding the true share in {100 * it['coverage'].min():.0f} to "
                   f"{100 * it['coverage'].max():.0f} % of the samples")
    disp = pd.DataFrame(rows)
    full = pd.concat([x for x in (result.truth, result.isotope_truth) if x is not None], ignore_index=True)
    out.table("sources_truth", full, "Known truth of the generated data: the generator's source shares and Pb shares "
              "beside what PMF and the isotope model recovered (mean share: the source's share of the samples' "
              "modelled concentrations, averaged over metals and samples).", display=disp)
    sent = "; ".join(txt)
    out.markdown(f"**Known truth.** These data are generated, so the sources are known: {sent} "
                 f"(@{ref_id('tbl', 'sources_truth')}).")
    out.finding(sent[0].upper() + sent[1:] + ".", importance=0.7, refs=[ref_id("tbl", "sources_truth")])
