"""Human health risk of metal(loid)s in soil and water: US EPA deterministic and Monte Carlo.

Exposure doses, hazard quotients and cancer risks per sample, metal, pathway and receptor follow
the US EPA Superfund equations [@USEPA1989RAGSA; @USEPA2004RAGSE; @USEPA2009RAGSF] as written in
Zhao et al. (2026, Scientific Reports; eq. 5-12, [@zhao2026tarim]) and in the Regional Screening Level (RSL) User's
Guide [@USEPA2024RSL], whose resident equations (age-adjusted intake for cancer, child for
noncancer effects) are reproduced exactly, so that a concentration equal to a published resident
RSL gives a hazard quotient of 1 or a cancer risk of 1e-6 (tested).

Pathways. Soil (also dust): incidental ingestion, dermal contact, inhalation of resuspended
particulates. Water (also groundwater): drinking-water ingestion and dermal contact while
bathing. For one age group :math:`g` (child or adult) and a concentration :math:`C` (mg/kg in
soil, ug/L in water) the daily contact per unit concentration :math:`R_g` is

.. math::

    R^{ing,soil} = \\frac{IRS \\cdot 10^{-6} \\cdot RBA}{BW},\\quad
    R^{derm,soil} = \\frac{SA \\cdot AF \\cdot ABS \\cdot 10^{-6}}{BW},\\quad
    R^{inh} = \\frac{1}{PEF}\\frac{ET}{24},\\quad
    R^{ing,w} = \\frac{IRW \\cdot 10^{-3}}{BW},\\quad
    R^{derm,w} = \\frac{K_p\\, t_{event}\\, EV\\, SA \\cdot 10^{-6}}{BW}

and the average daily dose (noncancer) and lifetime average daily dose (cancer) are

.. math::

    ADD_g = C R_g \\frac{EF \\cdot ED_g}{ED_g \\cdot 365},\\qquad
    LADD_g = C R_g \\frac{EF \\cdot W_g}{LT \\cdot 365}

with :math:`W_g = ED_g` years, or for mutagens (Cr(VI)) the ADAF-weighted years
:math:`\\int ADAF(a)\\,da` over the group's ages (ADAF 10 below 2 years, 3 from 2 to 16, 1 above;
[@USEPA2005ADAF]). For inhalation the "dose" is the exposure concentration in air (mg/m3)
[@USEPA2009RAGSF]. Then

.. math::

    HQ = \\frac{ADD}{T_{nc}},\\quad CR = LADD \\cdot T_{c},\\quad HI = \\sum HQ,\\quad TCR = \\sum CR

with :math:`T_{nc}` = RfD (ingestion), RfD x GIABS (dermal), RfC (inhalation) and :math:`T_c` =
SF (ingestion), SF / GIABS (dermal), IUR x 1000 (inhalation). Receptor ``child`` and ``adult``
use their own group; ``resident`` uses the child for noncancer effects and the sum of child
and adult LADD (the RSL age-adjusted factors IFS_adj, DFS_adj, IFW_adj, DFW_adj) for cancer.

Chromium is assessed as Cr(III) and Cr(VI) separately; total Cr is split by a stated Cr(VI)
share (default 1/7, the 1:6 Cr(VI):Cr(III) ratio the RSL tables assume for total chromium).
Lead has no RfD or slope factor in the RSL tables (blood-lead models) and is not assessed.

Reference data: ``data/reference/exposure/`` (RSL resident defaults, Zhao et al. 2026, China HJ
25.3-2019), ``data/reference/toxicity/`` (RSL toxicity values, GIABS, ABS, RBA, Kp) and
``data/reference/exposure_distribution/`` (Monte Carlo distributions).

The arithmetic is hand-written with NumPy because no maintained Python library implements the
US EPA RSL equations; it is checked against published RSLs (soil and tapwater) in the tests.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import ReferenceDataError
from .reference import load_reference

__all__ = [
    "PARAMETER_SETS",
    "TOXICITY_SETS",
    "DISTRIBUTION_SETS",
    "RECEPTORS",
    "PATHWAYS",
    "DEFAULT_CR_VI_FRACTION",
    "load_exposure_parameters",
    "load_toxicity",
    "load_distributions",
    "exposure_medium",
    "speciate_chromium",
    "adaf_years",
    "unit_factors",
    "risk_table",
    "sample_indices",
    "hazard_summary",
    "risk_calculator",
    "sample_distribution",
    "sample_exposure_parameters",
    "MonteCarloResult",
    "monte_carlo",
    "rank_sensitivity",
    "montecarlo_table",
    "grid_methods",
    "grid_risk",
    "methods_caption",
    "format_probability",
    "distribution_median",
    "central_values_table",
    "central_values_text",
    "methods_text",
    "methods_summary",
    "results_text",
    "receptor_table",
    "sci_text",
    "montecarlo_text",
    "plot_contributions",
    "plot_montecarlo",
    "plot_tornado",
    "plot_grid_risk",
]

#: parameter-set key (params/CLI) -> exposure reference file stem
PARAMETER_SETS: dict[str, str] = {
    "epa_rsl": "RSLResident_USEPA2024",
    "zhao2026": "TarimRiverBasin_Zhao2026",
    "hj25_3": "HJ253_MEE2019",
}
#: toxicity-set key -> toxicity reference file stem
TOXICITY_SETS: dict[str, str] = {"epa_rsl": "RSL_USEPA2024", "epa_rsl_iris2024": "RSLIRIS2024CrVI_USEPA2024"}
#: Monte Carlo distribution-set key -> file stem
DISTRIBUTION_SETS: dict[str, str] = {"usepa_efh2011": "MonteCarlo_USEPA2011"}
RECEPTORS = ("child", "adult", "resident")
PATHWAYS: dict[str, tuple[str, ...]] = {"soil": ("ingestion", "dermal", "inhalation"),
                                        "water": ("ingestion", "dermal")}
#: Cr(VI) share of total Cr: the RSL tables' 1:6 Cr(VI):Cr(III) ratio for "Chromium, Total" [@USEPA2024RSL]
DEFAULT_CR_VI_FRACTION = 1.0 / 7.0
_GROUPS = ("child", "adult")
_Z95 = 1.6448536269514722  # standard normal 95th percentile
_SOIL_PARAMS = ("BW", "IRS", "EF", "ED", "age_start", "ET", "SA_soil", "AF", "PEF", "LT")
_WATER_PARAMS = ("BW", "IRW", "EF", "ED", "age_start", "SA_water", "t_event", "EV", "LT")


# ------------------------------------------------------------------------------------------------
# reference data
# ------------------------------------------------------------------------------------------------
def _read_reference(kind: str, stem: str) -> pd.DataFrame:
    """``data/reference/<kind>/<stem>.csv`` through :func:`hmlib.reference.load_reference` (columns and sources checked)."""
    return load_reference(kind, stem)


def _stem(name: str, table: Mapping[str, str], kind: str) -> str:
    if name in table:
        return table[name]
    if name in table.values():
        return name
    raise ValueError(f"unknown {kind} set {name!r}; expected one of {sorted(table)}")


def load_exposure_parameters(name: str = "epa_rsl") -> pd.DataFrame:
    """Point values of an exposure parameter set.

    Parameters
    ----------
    name : key of :data:`PARAMETER_SETS` (``epa_rsl``, ``zhao2026``, ``hj25_3``) or a file stem.

    Returns
    -------
    DataFrame indexed by age group (``child``, ``adult``), one float column per parameter
    (BW kg, IRS mg/day, EF day/yr, ED yr, age_start yr, ET h/day, SA_soil cm2, AF mg/cm2,
    PEF m3/kg, LT yr, IRW L/day, SA_water cm2, t_event h/event, EV event/day); rows with
    receptor ``all`` apply to both groups.
    """
    df = _read_reference("exposure", _stem(name, PARAMETER_SETS, "exposure parameter"))
    out = pd.DataFrame(index=list(_GROUPS), dtype=float)
    for r in df.itertuples():
        groups = _GROUPS if r.receptor == "all" else (r.receptor,)
        for g in groups:
            if g not in _GROUPS:
                raise ReferenceDataError(f"exposure set {name!r}: receptor {r.receptor!r}; expected child, adult or all")
            out.loc[g, r.parameter] = float(r.value)
    out.attrs["name"] = name
    return out


def load_toxicity(name: str = "epa_rsl", *, medium: str = "soil") -> pd.DataFrame:
    """Toxicity values per metal for ``medium`` (``soil`` or ``water``).

    Medium-specific rows (e.g. cadmium diet vs water RfD) take precedence over ``any`` rows.
    Columns: rfd_oral (mg/kg-day), sf_oral ((mg/kg-day)^-1), rfc (mg/m3), iur ((ug/m3)^-1),
    giabs, abs_soil, rba_soil, kp_water (cm/h), mutagen (bool), rsl_name, source; NaN = no value.

    Parameters
    ----------
    name : str, default "epa_rsl"
        Toxicity reference set.
    medium : str, default "soil"
        Sampled medium (soil, dust, water or groundwater).

    Returns
    -------
    DataFrame
        Toxicity values indexed by metal, columns as listed above.
    """
    med = exposure_medium(medium)
    df = _read_reference("toxicity", _stem(name, TOXICITY_SETS, "toxicity"))
    df = df[df["medium"].isin([med, "any"])].copy()
    df["_rank"] = (df["medium"] == "any").astype(int)
    df = df.sort_values(["metal", "_rank"]).drop_duplicates("metal").drop(columns="_rank").set_index("metal")
    df["mutagen"] = df["mutagen"].astype(str).str.lower().eq("true")
    return df


def load_distributions(name: str = "usepa_efh2011") -> pd.DataFrame:
    """Exposure-factor distributions for :func:`monte_carlo` (one row per parameter and receptor).

    Parameters
    ----------
    name : str, default "usepa_efh2011"
        Distribution reference set.

    Returns
    -------
    DataFrame
        Rows of parameter, receptor, distribution, p1, p2, p3 (and unit, basis); ``attrs['name']`` = ``name``.
    """
    df = _read_reference("exposure_distribution", _stem(name, DISTRIBUTION_SETS, "distribution")).copy()
    df.attrs["name"] = name
    return df


def exposure_medium(medium: str) -> str:
    """Exposure equations used for a sampled medium: ``soil`` (soil, dust) or ``water`` (water, groundwater).

    Parameters
    ----------
    medium : str
        Sampled medium: soil, dust, water or groundwater.

    Returns
    -------
    str
        ``'soil'`` or ``'water'``.
    """
    m = {"soil": "soil", "dust": "soil", "water": "water", "groundwater": "water"}.get(medium)
    if m is None:
        raise ValueError(f"medium {medium!r} has no human exposure model here; expected soil, dust, water or groundwater")
    return m


# ------------------------------------------------------------------------------------------------
# deterministic
# ------------------------------------------------------------------------------------------------
def speciate_chromium(concentrations: pd.DataFrame, *, cr_vi_fraction: float = DEFAULT_CR_VI_FRACTION) -> pd.DataFrame:
    """Split a total ``Cr`` column into ``Cr(III)`` and ``Cr(VI)``.

    .. math:: C_{Cr(VI)} = f\\,C_{Cr},\\qquad C_{Cr(III)} = (1 - f)\\,C_{Cr}

    Parameters
    ----------
    concentrations : wide table (samples x metals); returned unchanged when it has no ``Cr``.
    cr_vi_fraction : :math:`f`, the Cr(VI) share of total Cr in [0, 1]. Default 1/7: the 1:6
        Cr(VI):Cr(III) ratio of the RSL "Chromium, Total" entry (US EPA RSL User's Guide).

    Returns
    -------
    DataFrame
        Copy of ``concentrations`` with ``Cr`` replaced by ``Cr(III)`` and ``Cr(VI)`` (same unit).

    References
    ----------
    US EPA (2024) Regional Screening Levels User's Guide, section on chromium.
    https://www.epa.gov/risk/regional-screening-levels-rsls-users-guide
    """
    if not 0.0 <= cr_vi_fraction <= 1.0:
        raise ValueError(f"cr_vi_fraction must be in [0, 1], got {cr_vi_fraction}")
    if "Cr" not in concentrations.columns:
        return concentrations.copy()
    out = concentrations.copy()
    pos = list(out.columns).index("Cr")
    cr = out.pop("Cr")
    out.insert(pos, "Cr(VI)", cr * cr_vi_fraction)
    out.insert(pos, "Cr(III)", cr * (1.0 - cr_vi_fraction))
    return out


def adaf_years(start_yr, duration_yr):
    """Age-dependent-adjustment-factor weighted exposure years over ages [start, start + duration).

    .. math:: W = \\int_{a_0}^{a_0 + ED} ADAF(a)\\,da,\\quad ADAF = 10\\ (a < 2),\\ 3\\ (2 \\le a < 16),\\ 1\\ (a \\ge 16)

    For the RSL resident (child 0-6, adult 6-26) this gives 32 and 40 years, i.e. the mutagenic
    intake factor IFSM_adj = 166,833 mg/kg of the RSL User's Guide.

    Parameters
    ----------
    start_yr : float or array-like
        Age at the start of exposure (years).
    duration_yr : float or array-like
        Exposure duration (years).

    Returns
    -------
    float or numpy.ndarray
        ADAF-weighted exposure duration (years).

    References
    ----------
    US EPA (2005) Supplemental Guidance for Assessing Susceptibility from Early-Life Exposure to
    Carcinogens, EPA/630/R-03/003F.
    """
    a0 = np.asarray(start_yr, dtype=float)
    a1 = a0 + np.asarray(duration_yr, dtype=float)

    def seg(lo, hi):
        return np.clip(np.minimum(a1, hi) - np.maximum(a0, lo), 0.0, None)

    return 10.0 * seg(0.0, 2.0) + 3.0 * seg(2.0, 16.0) + 1.0 * seg(16.0, np.inf)


def _contact(medium: str, pathway: str, p: Mapping[str, object], tox: pd.Series, default_abs_soil):
    """Daily contact per unit concentration (R_g of the module docstring); None if not quantified."""
    if medium == "soil":
        if pathway == "ingestion":
            rba = tox.get("rba_soil", 1.0)
            rba = 1.0 if pd.isna(rba) else float(rba)
            return np.asarray(p["IRS"]) * 1e-6 * rba / np.asarray(p["BW"])
        if pathway == "dermal":
            abs_d = tox.get("abs_soil", np.nan)
            if pd.isna(abs_d):
                if default_abs_soil is None:
                    return None
                abs_d = default_abs_soil
            return np.asarray(p["SA_soil"]) * np.asarray(p["AF"]) * float(abs_d) * 1e-6 / np.asarray(p["BW"])
        if pathway == "inhalation":
            return (1.0 / np.asarray(p["PEF"])) * np.asarray(p["ET"]) / 24.0
    else:
        if pathway == "ingestion":
            return np.asarray(p["IRW"]) * 1e-3 / np.asarray(p["BW"])
        if pathway == "dermal":
            kp = tox.get("kp_water", np.nan)
            if pd.isna(kp):
                return None
            return (float(kp) * np.asarray(p["t_event"]) * np.asarray(p["EV"]) * np.asarray(p["SA_water"]) * 1e-6
                    / np.asarray(p["BW"]))
    raise ValueError(f"unknown pathway {pathway!r} for medium {medium!r}; expected one of {PATHWAYS[medium]}")


def _toxicity_divisors(pathway: str, tox: pd.Series):
    """(noncancer denominator T_nc, cancer multiplier T_c); NaN where no value exists."""
    rfd, sf, giabs = tox.get("rfd_oral", np.nan), tox.get("sf_oral", np.nan), tox.get("giabs", 1.0)
    giabs = 1.0 if pd.isna(giabs) else float(giabs)
    if pathway == "ingestion":
        return float(rfd), float(sf)
    if pathway == "dermal":
        return float(rfd) * giabs, float(sf) / giabs
    return float(tox.get("rfc", np.nan)), float(tox.get("iur", np.nan)) * 1000.0


def _factors(medium: str, receptor: str, pathway: str, params: Mapping[str, Mapping[str, object]],
             tox: pd.Series, default_abs_soil=None):
    """Per-unit-concentration (add, ladd, hq, cr) for one receptor, metal and pathway, or None.

    ``params`` maps 'child'/'adult' to parameter mappings whose values may be scalars or arrays
    (Monte Carlo); the result broadcasts accordingly.
    """
    t_nc, t_c = _toxicity_divisors(pathway, tox)
    if np.isnan(t_nc) and np.isnan(t_c):
        return None
    mutagen = bool(tox.get("mutagen", False))
    groups = {"child": ("child",), "adult": ("adult",), "resident": ("child", "adult")}[receptor]
    ladd = 0.0
    for g in groups:
        p = params[g]
        r = _contact(medium, pathway, p, tox, default_abs_soil)
        if r is None:
            return None
        w = adaf_years(p["age_start"], p["ED"]) if mutagen else np.asarray(p["ED"], dtype=float)
        ladd = ladd + r * np.asarray(p["EF"]) * w / (np.asarray(p["LT"]) * 365.0)
    pnc = params["adult" if receptor == "adult" else "child"]
    add = _contact(medium, pathway, pnc, tox, default_abs_soil) * np.asarray(pnc["EF"]) / 365.0
    hq = add / t_nc if not np.isnan(t_nc) else np.full(np.shape(add), np.nan)
    cr = ladd * t_c if not np.isnan(t_c) else np.full(np.shape(ladd), np.nan)
    return add, ladd, hq, cr


def _param_dict(exposure: pd.DataFrame) -> dict[str, dict[str, float]]:
    return {g: {k: float(v) for k, v in exposure.loc[g].items() if pd.notna(v)} for g in _GROUPS}


def unit_factors(*, medium: str, receptor: str, exposure: pd.DataFrame, toxicity: pd.DataFrame,
                 metals=None, default_abs_soil: float | None = None) -> pd.DataFrame:
    """ADD, LADD, HQ and CR for a concentration of 1 (mg/kg or ug/L), per metal and pathway.

    Every quantity is linear in concentration, so the risk of a concentration :math:`C` is
    :math:`C` times these factors (see the module docstring for the equations).

    Parameters
    ----------
    medium : 'soil' or 'water' (or a medium mapped by :func:`exposure_medium`).
    receptor : 'child', 'adult' or 'resident'.
    exposure : from :func:`load_exposure_parameters`.
    toxicity : from :func:`load_toxicity` for the same medium.
    metals : metals to include (default: every metal of ``toxicity``); unknown metals are skipped.
    default_abs_soil : dermal absorption for metals without ABS (None: dermal soil not quantified).

    Returns
    -------
    DataFrame with columns metal, pathway, add, ladd, hq, cr (per unit concentration).

    References
    ----------
    US EPA (1989) RAGS Part A, EPA/540/1-89/002; US EPA (2004) RAGS Part E, EPA/540/R/99/005;
    US EPA (2009) RAGS Part F, EPA-540-R-070-002; US EPA (2024) RSL User's Guide;
    Zhao et al. (2026) doi:10.1038/s41598-026-38887-9 eq. 5-12.
    """
    med = exposure_medium(medium)
    if receptor not in RECEPTORS:
        raise ValueError(f"receptor must be one of {RECEPTORS}, got {receptor!r}")
    needed = _SOIL_PARAMS if med == "soil" else _WATER_PARAMS
    miss = [f"{k} ({g})" for g in _GROUPS for k in needed if k not in exposure.columns or pd.isna(exposure.loc[g, k])]
    if miss:
        raise ValueError(f"exposure parameter set lacks {miss} needed for {med} exposure")
    params = _param_dict(exposure)
    rows = []
    for metal in (toxicity.index if metals is None else metals):
        if metal not in toxicity.index:
            continue
        tox = toxicity.loc[metal]
        for pw in PATHWAYS[med]:
            f = _factors(med, receptor, pw, params, tox, default_abs_soil)
            if f is None:
                continue
            rows.append({"metal": metal, "pathway": pw, "add": float(f[0]), "ladd": float(f[1]),
                         "hq": float(f[2]), "cr": float(f[3])})
    return pd.DataFrame(rows, columns=["metal", "pathway", "add", "ladd", "hq", "cr"])


def risk_table(concentrations: pd.DataFrame, *, medium: str, exposure: pd.DataFrame, toxicity: pd.DataFrame,
               receptors=RECEPTORS, cr_vi_fraction: float = DEFAULT_CR_VI_FRACTION,
               default_abs_soil: float | None = None) -> pd.DataFrame:
    """Deterministic risk per sample, receptor, metal and pathway.

    Parameters
    ----------
    concentrations : wide table, index sample ids, one column per metal, in mg/kg (soil) or
        ug/L (water). A total ``Cr`` column is split by :func:`speciate_chromium`.
    medium, exposure, toxicity, default_abs_soil : as in :func:`unit_factors`.
    receptors : subset of ('child', 'adult', 'resident').
    cr_vi_fraction : Cr(VI) share of total Cr.

    Returns
    -------
    Long DataFrame: sample_id, medium, receptor, metal, pathway, concentration, add, ladd, hq, cr.
    ``add``/``ladd`` are doses in mg/kg-day, except for inhalation where they are exposure
    concentrations in mg/m3 (RAGS F). ``hq`` (``cr``) is NaN where the metal has no noncancer
    (cancer) toxicity value. Metals without any toxicity value (e.g. Pb) are left out and listed
    in ``result.attrs['not_assessed']``.

    References
    ----------
    See :func:`unit_factors`.
    """
    if not isinstance(concentrations, pd.DataFrame):
        raise ValueError(f"concentrations must be a wide DataFrame (samples x metals), got {type(concentrations).__name__}")
    wide = speciate_chromium(concentrations, cr_vi_fraction=cr_vi_fraction)
    metals = [m for m in wide.columns if m in toxicity.index]
    not_assessed = [m for m in wide.columns if m not in toxicity.index]
    frames = []
    ids = np.asarray(wide.index.astype(str))
    for rec in receptors:
        uf = unit_factors(medium=medium, receptor=rec, exposure=exposure, toxicity=toxicity, metals=metals,
                          default_abs_soil=default_abs_soil)
        for r in uf.itertuples(index=False):
            c = wide[r.metal].to_numpy(float)
            frames.append(pd.DataFrame({
                "sample_id": ids, "medium": medium, "receptor": rec, "metal": r.metal, "pathway": r.pathway,
                "concentration": c, "add": c * r.add, "ladd": c * r.ladd, "hq": c * r.hq, "cr": c * r.cr}))
    cols = ["sample_id", "medium", "receptor", "metal", "pathway", "concentration", "add", "ladd", "hq", "cr"]
    if frames:
        out = pd.concat(frames, ignore_index=True)[cols]
    else:  # no assessable metal: an empty table with the documented columns and dtypes
        out = pd.DataFrame({c: pd.Series(dtype=object if c in cols[:5] else float) for c in cols})
    out.attrs["not_assessed"] = not_assessed
    return out


def sample_indices(risk: pd.DataFrame, *, by_metal: bool = False) -> pd.DataFrame:
    """HI (sum of HQ) and TCR (sum of CR) per sample and receptor (and metal when ``by_metal``).

    .. math:: HI = \\sum_{metals}\\sum_{pathways} HQ,\\qquad TCR = \\sum_{metals}\\sum_{pathways} CR

    Sums skip missing values; TCR is NaN for a group without any cancer value.

    Parameters
    ----------
    risk : DataFrame
        Risk table (sample_id, medium, receptor, metal, pathway, hq, cr).
    by_metal : bool, default False
        Also group by metal.

    Returns
    -------
    DataFrame
        sample_id, medium, receptor (, metal), hi, tcr (dimensionless).
    """
    keys = ["sample_id", "medium", "receptor"] + (["metal"] if by_metal else [])
    g = risk.groupby(keys, sort=False)
    return pd.DataFrame({"hi": g["hq"].sum(min_count=1), "tcr": g["cr"].sum(min_count=1)}).reset_index()


def hazard_summary(risk: pd.DataFrame) -> pd.DataFrame:
    """Summary per receptor and metal (plus metal ``all`` for the sum over metals).

    Columns: receptor, metal, hi_mean, hi_max, share_hi_gt_1, tcr_mean, share_cr_gt_1e-4,
    share_cr_gt_1e-6 (shares of samples, 0-1; NaN where the metal has no such toxicity value).

    Parameters
    ----------
    risk : DataFrame
        Risk table (sample_id, medium, receptor, metal, pathway, hq, cr).

    Returns
    -------
    DataFrame
        One row per receptor and metal, columns as listed above.
    """
    per_metal = sample_indices(risk, by_metal=True)
    total = sample_indices(risk).assign(metal="all")
    both = pd.concat([per_metal, total], ignore_index=True)
    rows = []
    for (rec, metal), d in both.groupby(["receptor", "metal"], sort=False):
        hi, tcr = d["hi"], d["tcr"]
        rows.append({
            "receptor": rec, "metal": metal,
            "hi_mean": hi.mean(), "hi_max": hi.max(),
            "share_hi_gt_1": (hi > 1).mean() if hi.notna().any() else np.nan,
            "tcr_mean": tcr.mean(),
            "share_cr_gt_1e-4": (tcr > 1e-4).mean() if tcr.notna().any() else np.nan,
            "share_cr_gt_1e-6": (tcr > 1e-6).mean() if tcr.notna().any() else np.nan,
        })
    return pd.DataFrame(rows, columns=["receptor", "metal", "hi_mean", "hi_max", "share_hi_gt_1", "tcr_mean",
                                       "share_cr_gt_1e-4", "share_cr_gt_1e-6"])


def risk_calculator(*, medium: str, metal: str, concentration: float, receptor: str = "resident",
                    parameters: str = "epa_rsl", toxicity: str = "epa_rsl",
                    cr_vi_fraction: float = DEFAULT_CR_VI_FRACTION,
                    default_abs_soil: float | None = None) -> pd.DataFrame:
    """ADD, LADD, HQ and CR per pathway and in total for one concentration (the ``hmlib risk`` command).

    Parameters
    ----------
    medium : 'soil' (concentration in mg/kg) or 'water' (ug/L).
    metal : element symbol as in the toxicity set (``Cr`` is split into Cr(III) and Cr(VI)).
    concentration : >= 0.
    receptor, parameters, toxicity, cr_vi_fraction, default_abs_soil : see :func:`risk_table`.

    Returns
    -------
    DataFrame: metal, pathway ('total' rows sum the pathways), add, ladd, hq, cr.
    """
    if not np.isfinite(concentration) or concentration < 0:
        raise ValueError(f"concentration must be a finite number >= 0, got {concentration}")
    tox = load_toxicity(toxicity, medium=medium)
    known = sorted(set(tox.index) | ({"Cr"} if {"Cr(III)", "Cr(VI)"} <= set(tox.index) else set()))
    if metal not in known:
        raise ValueError(f"no toxicity values for metal {metal!r} in set {toxicity!r}; expected one of {known}")
    risk = risk_table(pd.DataFrame({metal: [float(concentration)]}, index=["input"]), medium=medium,
                      exposure=load_exposure_parameters(parameters), toxicity=tox, receptors=(receptor,),
                      cr_vi_fraction=cr_vi_fraction, default_abs_soil=default_abs_soil)
    rows = risk[["metal", "pathway", "add", "ladd", "hq", "cr"]]
    tot = rows.groupby("metal", sort=False)[["hq", "cr"]].sum(min_count=1).reset_index().assign(pathway="total")
    out = pd.concat([rows, tot], ignore_index=True)
    out["_o"] = out["pathway"].eq("total")
    out = out.sort_values(["metal", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    return out[["metal", "pathway", "add", "ladd", "hq", "cr"]]


# ------------------------------------------------------------------------------------------------
# Monte Carlo
# ------------------------------------------------------------------------------------------------
def sample_distribution(distribution: str, p1: float, p2: float = np.nan, p3: float = np.nan, *, n: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` values from one exposure-factor distribution.

    ``lognormal``: p1 = median, p2 = 95th percentile, :math:`\\sigma = \\ln(p_2/p_1)/z_{0.95}`;
    ``normal``: mean p1, sd p2, truncated below at p3 (scipy.stats.truncnorm);
    ``triangular``: min p1, mode p2, max p3; ``uniform``: [p1, p2]; ``fixed``: p1.

    Parameters
    ----------
    distribution : str
        fixed, lognormal, normal, triangular or uniform.
    p1, p2, p3 : float
        Distribution parameters as above (unit of the exposure factor).
    n : int
        Number of draws.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        ``n`` draws (unit of the exposure factor).
    """
    d = str(distribution).strip().lower()
    if d == "fixed":
        return np.full(n, float(p1))
    if d == "lognormal":
        if not (p1 > 0 and p2 >= p1):
            raise ValueError(f"lognormal needs 0 < median <= p95, got median {p1}, p95 {p2}")
        sigma = np.log(p2 / p1) / _Z95
        return np.exp(rng.normal(np.log(p1), sigma, n))
    if d == "normal":
        from scipy.stats import truncnorm

        if not p2 > 0:
            raise ValueError(f"normal needs sd > 0, got {p2}")
        lo = -np.inf if pd.isna(p3) else (float(p3) - p1) / p2
        return truncnorm.rvs(lo, np.inf, loc=p1, scale=p2, size=n, random_state=rng)
    if d == "triangular":
        if not p1 <= p2 <= p3 or p1 == p3:
            raise ValueError(f"triangular needs min <= mode <= max and min < max, got {p1}, {p2}, {p3}")
        return rng.triangular(p1, p2, p3, n)
    if d == "uniform":
        if not p1 < p2:
            raise ValueError(f"uniform needs min < max, got {p1}, {p2}")
        return rng.uniform(p1, p2, n)
    raise ValueError(f"unknown distribution {distribution!r}; expected fixed, lognormal, normal, triangular or uniform")


def sample_exposure_parameters(exposure: pd.DataFrame, distributions: pd.DataFrame | None, *, n: int,
                               rng: np.random.Generator) -> tuple[dict[str, dict[str, np.ndarray]], pd.DataFrame]:
    """Draw exposure parameters for both age groups.

    Parameters not in ``distributions`` stay at their point value. A row with receptor ``all``
    draws one value per iteration shared by child and adult (e.g. exposure frequency).

    Parameters
    ----------
    exposure : DataFrame
        Point values, index child/adult, one column per parameter.
    distributions : DataFrame or None
        Distribution rows (parameter, receptor, distribution, p1, p2, p3); None: no parameter varies.
    n : int
        Number of iterations.
    rng : numpy.random.Generator
        The seeded generator of the draws.

    Returns
    -------
    tuple of (dict, DataFrame)
        ``params`` maps 'child'/'adult' to {parameter: array(n)}; ``varied`` is a DataFrame of the
        drawn (non-constant) inputs, columns '<parameter> (<receptor>)'.
    """
    params = {g: {k: np.full(n, float(v)) for k, v in exposure.loc[g].items() if pd.notna(v)} for g in _GROUPS}
    varied = {}
    if distributions is not None:
        for r in distributions.itertuples(index=False):
            vals = sample_distribution(r.distribution, float(r.p1), float(r.p2) if pd.notna(r.p2) else np.nan,
                                       float(r.p3) if pd.notna(r.p3) else np.nan, n=n, rng=rng)
            groups = _GROUPS if r.receptor == "all" else (r.receptor,)
            for g in groups:
                if g not in _GROUPS:
                    raise ValueError(f"distribution receptor must be child, adult or all, got {r.receptor!r}")
                params[g][r.parameter] = vals
            if np.ptp(vals) > 0:
                varied[f"{r.parameter} ({r.receptor})"] = vals
    return params, pd.DataFrame(varied)


@dataclass
class MonteCarloResult:
    """Monte Carlo risk for one medium and receptor.

    Attributes
    ----------
    medium, receptor : what was simulated.
    n_iter, seed : iterations and the seed of the generator.
    hi, tcr : arrays (n_iter,) of hazard index and total cancer risk (TCR NaN if no carcinogen).
    hi_by_metal, tcr_by_metal : DataFrames (n_iter x metals).
    inputs : DataFrame of the varied inputs (exposure factors and drawn concentrations 'C <metal>' as
        measured, i.e. total Cr rather than its species).
    sensitivity : Spearman rank correlation of each input with HI and TCR (:func:`rank_sensitivity`).
    """

    medium: str
    receptor: str
    n_iter: int
    seed: int
    hi: np.ndarray
    tcr: np.ndarray
    hi_by_metal: pd.DataFrame
    tcr_by_metal: pd.DataFrame
    inputs: pd.DataFrame
    sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self) -> pd.DataFrame:
        """Mean, P5, P50, P95 and exceedance probabilities of HI (> 1) and TCR (> 1e-4, > 1e-6)."""
        rows = []
        for metric, v, thr in (("HI", self.hi, 1.0), ("TCR", self.tcr, 1e-4), ("TCR", self.tcr, 1e-6)):
            ok = np.isfinite(v)
            if not ok.any():
                continue
            p5, p50, p95 = np.percentile(v[ok], [5, 50, 95])
            rows.append({"medium": self.medium, "receptor": self.receptor, "metric": metric, "mean": float(v[ok].mean()),
                         "p5": p5, "p50": p50, "p95": p95, "threshold": thr,
                         "prob_gt_threshold": float((v[ok] > thr).mean()), "n_iter": self.n_iter, "seed": self.seed})
        return pd.DataFrame(rows)


def rank_sensitivity(inputs: pd.DataFrame, outputs: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Spearman rank correlation of each input with each output (scipy.stats.spearmanr).

    Returns a long DataFrame: output, input, rho. Constant inputs are skipped.

    Parameters
    ----------
    inputs : DataFrame
        Drawn inputs, one column per input, one row per iteration.
    outputs : mapping of str to numpy.ndarray
        Output name -> values per iteration.

    Returns
    -------
    pd.DataFrame
        A long DataFrame: output, input, rho. Constant inputs are skipped.
    """
    from scipy.stats import spearmanr

    rows = []
    cols = [c for c in inputs.columns if np.ptp(inputs[c].to_numpy(float)) > 0]
    for name, y in outputs.items():
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(y)
        if ok.sum() < 3 or np.ptp(y[ok]) == 0:
            continue
        for c in cols:
            rho = spearmanr(inputs[c].to_numpy(float)[ok], y[ok]).statistic
            rows.append({"output": name, "input": c, "rho": float(rho)})
    return pd.DataFrame(rows, columns=["output", "input", "rho"])


def monte_carlo(concentrations: pd.DataFrame, *, medium: str, receptor: str, exposure: pd.DataFrame,
                toxicity: pd.DataFrame, distributions: pd.DataFrame | None, n_iter: int = 10000, seed: int,
                cr_vi_fraction: float = DEFAULT_CR_VI_FRACTION, default_abs_soil: float | None = None
                ) -> MonteCarloResult:
    """Vectorized Monte Carlo of HI and TCR.

    Each iteration draws one sample (a row of ``concentrations``, so that the metals of a sample
    stay together) and one set of exposure factors from ``distributions``; the deterministic
    equations (:func:`unit_factors`) are then evaluated on arrays of length ``n_iter``
    [@USEPA2001RAGS3A].

    Parameters
    ----------
    concentrations : wide table (samples x metals) in mg/kg or ug/L; samples with a missing
        value of an assessed metal are not drawn.
    medium, receptor, exposure, toxicity, cr_vi_fraction, default_abs_soil : as in :func:`risk_table`.
    distributions : from :func:`load_distributions`, or None to keep every factor at its point value.
    n_iter : number of iterations (the stage uses >= 10,000).
    seed : seed of the numpy Generator.

    Returns
    -------
    MonteCarloResult
        HI and TCR per iteration (total and by metal), drawn inputs and their rank sensitivity.

    References
    ----------
    US EPA (2001) Risk Assessment Guidance for Superfund Volume III Part A: Process for
    Conducting Probabilistic Risk Assessment, EPA 540-R-02-002.
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    med = exposure_medium(medium)
    rng = np.random.default_rng(seed)
    wide = speciate_chromium(concentrations, cr_vi_fraction=cr_vi_fraction)
    metals = [m for m in wide.columns if m in toxicity.index]
    if not metals:
        raise ValueError(f"none of the metals {list(concentrations.columns)} has toxicity values")
    cmat = wide[metals].to_numpy(float)
    keep = np.isfinite(cmat).all(axis=1)
    cmat = cmat[keep]
    if len(cmat) == 0:
        raise ValueError("no sample has values for every assessed metal")
    # drawn concentrations as measured (total Cr rather than its two perfectly correlated species)
    measured = [c for c in concentrations.columns if c in metals or (c == "Cr" and "Cr(VI)" in metals)]
    mmat = concentrations[measured].to_numpy(float)[keep]
    params, varied = sample_exposure_parameters(exposure, distributions, n=n_iter, rng=rng)
    idx = rng.integers(0, len(cmat), n_iter)
    conc = cmat[idx]
    hi_m, tcr_m = {}, {}
    for j, metal in enumerate(metals):
        tox = toxicity.loc[metal]
        hq_sum = np.zeros(n_iter)
        cr_sum = np.zeros(n_iter)
        any_nc = any_c = False
        for pw in PATHWAYS[med]:
            f = _factors(med, receptor, pw, params, tox, default_abs_soil)
            if f is None:
                continue
            hq, cr = np.broadcast_to(f[2], (n_iter,)), np.broadcast_to(f[3], (n_iter,))
            if np.isfinite(hq).all():
                hq_sum += conc[:, j] * hq
                any_nc = True
            if np.isfinite(cr).all():
                cr_sum += conc[:, j] * cr
                any_c = True
        hi_m[metal] = hq_sum if any_nc else np.full(n_iter, np.nan)
        tcr_m[metal] = cr_sum if any_c else np.full(n_iter, np.nan)
    hi_by = pd.DataFrame(hi_m)
    tcr_by = pd.DataFrame(tcr_m)
    hi = hi_by.sum(axis=1, min_count=1).to_numpy()
    tcr = tcr_by.sum(axis=1, min_count=1).to_numpy()
    # keep the exposure factors this medium and receptor use (e.g. not the adult's for the child)
    used_params = set(_SOIL_PARAMS if med == "soil" else _WATER_PARAMS)
    used_groups = {"child": {"child"}, "adult": {"adult"}, "resident": {"child", "adult"}}[receptor] | {"all"}
    inputs = varied[[c for c in varied.columns
                     if c.split(" (")[0] in used_params and c.split(" (")[1].rstrip(")") in used_groups]].copy()
    for j, metal in enumerate(measured):
        inputs[f"C {metal}"] = mmat[idx, j]
    res = MonteCarloResult(medium=medium, receptor=receptor, n_iter=n_iter, seed=seed, hi=hi, tcr=tcr,
                           hi_by_metal=hi_by, tcr_by_metal=tcr_by, inputs=inputs)
    res.sensitivity = rank_sensitivity(inputs, {"HI": hi, "TCR": tcr})
    return res


def montecarlo_table(results) -> pd.DataFrame:
    """Concatenated :meth:`MonteCarloResult.summary` of several results.

    Parameters
    ----------
    results : iterable of MonteCarloResult
        Monte Carlo results.

    Returns
    -------
    DataFrame
        medium, receptor, metric, mean, p5, p50, p95, threshold, prob_gt_threshold, n_iter, seed.
    """
    return pd.concat([r.summary() for r in results], ignore_index=True)


# ------------------------------------------------------------------------------------------------
# grid
# ------------------------------------------------------------------------------------------------
def grid_methods(grid_predictions: pd.DataFrame, *, method: str | None = None) -> dict[str, str]:
    """Prediction method used per metal on the grid.

    The spatial stage writes, for each metal, the predictions of the method its cross-validation
    chose; a table holding several methods per metal marks the chosen one in a boolean column
    ``chosen`` (or ``best``/``selected``). With ``method`` given, that method is used for every
    metal that has it. Raises ValueError when a metal has several unmarked methods.

    Parameters
    ----------
    grid_predictions : DataFrame
        Grid predictions with metal and method columns (optionally chosen/best/selected).
    method : str, optional
        Method to use for every metal that has it.

    Returns
    -------
    dict of str to str
        Metal -> prediction method.
    """
    need = {"metal", "method"}
    if not need <= set(grid_predictions.columns):
        raise ValueError(f"grid predictions need columns {sorted(need)}, got {list(grid_predictions.columns)}")
    g = grid_predictions
    out = {}
    for metal, d in g.groupby("metal", sort=False):
        methods = list(dict.fromkeys(d["method"]))
        if method is not None:
            if method in methods:
                out[metal] = method
            continue
        flag = next((c for c in ("chosen", "best", "selected") if c in d.columns), None)
        if flag is not None:
            chosen = list(dict.fromkeys(d.loc[d[flag].astype(str).str.lower().isin(["true", "1"]), "method"]))
            if len(chosen) == 1:
                out[metal] = chosen[0]
                continue
        if len(methods) != 1:
            raise ValueError(f"grid predictions hold methods {methods} for {metal} and mark none as chosen; "
                             "name one (stages.health.grid_method)")
        out[metal] = methods[0]
    if method is not None and not out:
        avail = sorted(set(g["method"]))
        raise ValueError(f"grid method {method!r} not in the grid predictions; available: {avail}")
    return out


def grid_risk(grid_predictions: pd.DataFrame, *, exposure: pd.DataFrame, toxicity: pd.DataFrame,
              receptors=("child", "resident"), method: str | None = None,
              cr_vi_fraction: float = DEFAULT_CR_VI_FRACTION, default_abs_soil: float | None = None,
              medium: str = "soil") -> pd.DataFrame:
    """HI and TCR per grid cell from predicted concentrations (spatial stage output).

    The per-sample model (:func:`risk_table`: same exposure parameters, toxicity values, Cr(VI)
    share and dermal rule) applied to each metal's predictions by the method chosen for that
    metal (:func:`grid_methods`), so a cell at a sample with the sample's concentrations has the
    sample's HI and TCR.

    Parameters
    ----------
    grid_predictions : long table x, y, metal, method, prediction (canonical unit), variance, and optionally mean:
        the risk is computed from the mean concentration where the table gives it (the expected exposure; the
        spatial stage maps the median, which lies below the mean for metals modelled on the log scale), else from
        the prediction.
    method : one prediction method for every metal (default: the method chosen per metal).

    Returns
    -------
    DataFrame x, y, receptor, hi, tcr; ``attrs['methods']``: metal -> method used;
    ``attrs['cells_below_zero']``: metal -> number of cells whose predicted concentration was below
    zero (possible for predictions on the original scale) and was taken as zero.
    """
    need = {"x", "y", "metal", "method", "prediction"}
    if not need <= set(grid_predictions.columns):
        raise ValueError(f"grid predictions need columns {sorted(need)}, got {list(grid_predictions.columns)}")
    used = grid_methods(grid_predictions, method=method)
    g = grid_predictions[[m in used and k == used[m] for m, k in
                          zip(grid_predictions["metal"], grid_predictions["method"])]]
    value = "mean" if "mean" in g.columns else "prediction"
    wide = g.pivot_table(index=["x", "y"], columns="metal", values=value, aggfunc="mean")
    wide.columns.name = None
    cells = wide.reset_index()[["x", "y"]]
    wide = wide.reset_index(drop=True)
    wide.index = wide.index.astype(str)
    # interpolation on the original scale can undershoot below zero far from high samples; no dose
    # follows from a negative concentration, so such cells are taken as zero and counted for the text
    below = {str(m): int(n) for m, n in (wide < 0).sum().items() if n > 0}
    wide = wide.clip(lower=0.0)
    risk = risk_table(wide, medium=medium, exposure=exposure, toxicity=toxicity, receptors=receptors,
                      cr_vi_fraction=cr_vi_fraction, default_abs_soil=default_abs_soil)
    idx = sample_indices(risk)
    idx["cell"] = idx["sample_id"].astype(int)
    out = idx.merge(cells, left_on="cell", right_index=True)
    out = out[["x", "y", "receptor", "hi", "tcr"]].reset_index(drop=True)
    out.attrs["methods"] = used
    out.attrs["cells_below_zero"] = below
    return out


def methods_caption(methods: Mapping[str, str], labels: Mapping[str, str] | None = None) -> str:
    """Reader's list of the prediction method per metal, grouped: 'ordinary kriging (Cd, Zn), ...'.

    Parameters
    ----------
    methods : mapping of str to str
        Metal -> method key.
    labels : mapping of str to str, optional
        Method key -> label.

    Returns
    -------
    str
        Methods grouped with their metals, separated by semicolons.
    """
    labels = labels or {"ok": "ordinary kriging", "rk": "regression kriging", "gpr": "Gaussian process regression",
                        "idw": "inverse distance weighting"}
    by: dict[str, list[str]] = {}
    for metal, m in methods.items():
        by.setdefault(m, []).append(metal)
    return "; ".join(f"{labels.get(m, m)} for {', '.join(ms)}" for m, ms in by.items())


def format_probability(p: float, n_iter: int) -> str:
    """A Monte Carlo probability printed the same way in tables and text.

    Zero hits print as ``< 1/n`` (``< 0.0001`` for 10,000 iterations), probabilities below 0.001
    as printed scientific notation (``3.0 × 10^−4^``, :func:`sci_text`), others with three decimals.

    Parameters
    ----------
    p : float
        Probability (0-1).
    n_iter : int
        Number of Monte Carlo iterations.

    Returns
    -------
    str
        Formatted probability (``'–'`` for NaN).
    """
    if not np.isfinite(p):
        return "–"
    if p <= 0:
        return "< " + np.format_float_positional(1.0 / n_iter, precision=1, unique=False, fractional=False, trim="-")
    if p < 1e-3:
        return sci_text(p)
    return f"{p:.3f}"


def distribution_median(distribution: str, p1: float, p2: float = np.nan, p3: float = np.nan) -> float:
    """Median of an exposure-factor distribution of :func:`sample_distribution` (normal: its mean,
    truncation ignored; triangular: the closed form of the triangular median).

    Parameters
    ----------
    distribution : str
        fixed, lognormal, normal, triangular or uniform.
    p1, p2, p3 : float
        Distribution parameters as in :func:`sample_distribution`.

    Returns
    -------
    float
        Median (unit of the exposure factor).
    """
    d = str(distribution).strip().lower()
    if d in ("fixed", "lognormal", "normal"):
        return float(p1)
    if d == "uniform":
        return (float(p1) + float(p2)) / 2.0
    if d == "triangular":
        a, c, b = float(p1), float(p2), float(p3)
        if c >= (a + b) / 2:
            return a + np.sqrt((b - a) * (c - a) / 2.0)
        return b - np.sqrt((b - a) * (b - c) / 2.0)
    raise ValueError(f"unknown distribution {distribution!r}")


def central_values_table(exposure: pd.DataFrame, distributions: pd.DataFrame) -> pd.DataFrame:
    """Deterministic point value beside the Monte Carlo median of each varied exposure factor.

    Returns parameter, receptor, unit, deterministic, mc_median, ratio (median / point value), basis.

    Parameters
    ----------
    exposure : DataFrame
        Deterministic exposure factors indexed by receptor group.
    distributions : DataFrame
        Distributions from :func:`load_distributions`.

    Returns
    -------
    pd.DataFrame
        Parameter, receptor, unit, deterministic, mc_median, ratio (median / point value), basis.
    """
    rows = []
    for r in distributions.itertuples(index=False):
        groups = _GROUPS if r.receptor == "all" else (r.receptor,)
        point = float(exposure.loc[groups[0], r.parameter]) if r.parameter in exposure.columns else np.nan
        med = distribution_median(r.distribution, float(r.p1), float(r.p2) if pd.notna(r.p2) else np.nan,
                                  float(r.p3) if pd.notna(r.p3) else np.nan)
        rows.append({"parameter": r.parameter, "receptor": r.receptor, "unit": getattr(r, "unit", ""),
                     "deterministic": point, "mc_median": med, "ratio": med / point if point else np.nan,
                     "basis": getattr(r, "basis", "")})
    return pd.DataFrame(rows, columns=["parameter", "receptor", "unit", "deterministic", "mc_median", "ratio",
                                       "basis"])


_PARAM_LABEL = {"IRS": "soil ingestion rate", "AF": "skin adherence factor", "BW": "body weight",
                "EF": "exposure frequency", "IRW": "drinking-water intake", "ED": "exposure duration"}


def central_values_text(central: pd.DataFrame, *, tolerance: float = 0.05) -> str:
    """Why the deterministic and Monte Carlo central values differ (markdown), from :func:`central_values_table`.

    Parameters
    ----------
    central : DataFrame
        Table from :func:`central_values_table`.
    tolerance : float, default 0.05
        Relative difference below which values count as equal.

    Returns
    -------
    str
        Explanatory paragraph (markdown).
    """
    d = central[(central["ratio"] - 1).abs() > tolerance]
    if d["receptor"].isin(["child", "all"]).any():  # the child's values (and shared ones) tell the story
        d = d[d["receptor"].isin(["child", "all"])]
    if d.empty:
        return ("The Monte Carlo distributions are centred on the deterministic point values, so their medians and "
                "the deterministic results agree up to the sampled spread.")
    def u(r):
        unit = str(getattr(r, "unit", "") or "")
        return f" {unit.replace('day/yr', 'days per year')}" if unit and unit != "nan" else ""

    who = {"all": "all ages"}
    items = [f"{_PARAM_LABEL.get(r.parameter, r.parameter)} ({who.get(r.receptor, r.receptor)}) "
             f"{r.deterministic:g}{u(r)} against a median of {r.mc_median:.3g}"
             for r in d.itertuples()]
    lower = bool((d["ratio"] < 1).all())
    return ("The deterministic and probabilistic results answer different questions. The deterministic point values "
            "are the reasonable-maximum exposure (RME) defaults of the parameter set, upper-end values by design "
            "[@USEPA1989RAGSA], whereas the Monte Carlo distributions are centred on central-tendency values of the "
            "Exposure Factors Handbook and RAGS Part E [@USEPA2011EFH; @USEPA2004RAGSE] with the RME value near their "
            "95th percentile: " + "; ".join(items) + ". "
            + ("The Monte Carlo median is therefore lower than the deterministic estimate, which lies in the upper "
               "part of the simulated distribution." if lower else
               "Where the Monte Carlo median is below the point value the probabilistic central estimate is lower; "
               "where above, higher."))


# ------------------------------------------------------------------------------------------------
# report text and figures
# ------------------------------------------------------------------------------------------------
_SET_CITATION = {"epa_rsl": "the US EPA Regional Screening Level resident defaults [@USEPA2024RSL]",
                 "zhao2026": "the values of @zhao2026tarim, completed with RSL defaults where the study states none",
                 "hj25_3": "the Chinese technical guideline HJ 25.3-2019 [@MEE2019HJ253]"}


def _upright(markdown: str) -> str:
    """Set multi-letter symbols (ADD, RfD, ...) upright inside ``$...$`` math (they are names, not products)."""
    import re

    def fix(m):
        return re.sub(r"(?<![\\A-Za-z])([A-Z][A-Za-z]+)", r"\\mathrm{\1}", m.group(0))

    return re.sub(r"\$\$.+?\$\$|\$[^$]+\$", fix, markdown, flags=re.S)


def methods_text(*, parameters: str, receptors, cr_vi_fraction: float, n_iter: int, seed: int,
                 not_assessed=(), default_abs_soil: float | None = None, media=("soil",),
                 toxicity: str = "epa_rsl") -> str:
    """Methods section (markdown with formulas and citations) for the report.

    Parameters
    ----------
    parameters : str
        Exposure parameter set name.
    receptors : sequence of str
        Receptors assessed.
    cr_vi_fraction : float
        Cr(VI) share of total Cr (0-1).
    n_iter : int
        Monte Carlo iterations.
    seed : int
        Seed of the Monte Carlo generator (recorded in the run manifest, not printed in the text).
    not_assessed : sequence of str, default ()
        Metals without toxicity values.
    default_abs_soil : float, optional
        Dermal ABS for metals without a published value.
    media : sequence of str, default ("soil",)
        Media assessed.
    toxicity : str, default "epa_rsl"
        Toxicity set name.

    Returns
    -------
    str
        Methods section (markdown).
    """
    tox_note = (", except for Cr(VI), which takes the oral reference dose (9e-4 mg/kg-day), reference concentration "
                "(3e-5 mg/m3) and oral slope factor (0.27 per mg/kg-day) of the final IRIS assessment of August 2024 "
                "[@USEPA2024IRISCrVI]" if toxicity == "epa_rsl_iris2024" else
                "; these tables still carry the 1998 IRIS reference dose and reference concentration of Cr(VI) and an "
                "oral slope factor of 0.5 per mg/kg-day, while the final IRIS assessment of August 2024 gives 9e-4 "
                "mg/kg-day, 3e-5 mg/m3 and 0.27 per mg/kg-day [@USEPA2024IRISCrVI]")
    water = any(exposure_medium(m) == "water" for m in media)
    soil = any(exposure_medium(m) == "soil" for m in media)
    paths = []
    if soil:
        paths.append("soil ingestion, dermal contact with soil and inhalation of resuspended soil particles")
    if water:
        paths.append("drinking-water ingestion and dermal contact with water")
    na = (f" {', '.join(not_assessed)} {'has' if len(not_assessed) == 1 else 'have'} no oral reference dose or slope "
          "factor in the RSL tables (lead is evaluated with blood-lead models) and "
          f"{'is' if len(not_assessed) == 1 else 'are'} not assessed.") if not_assessed else ""
    dermal = ("Dermal absorption from soil is quantified only for metals with a published ABS (arsenic 0.03, "
              "cadmium 0.001), as in the RSLs." if default_abs_soil is None else
              f"Metals without a published ABS are given ABS = {default_abs_soil:g} (stage option).")
    return _upright(f"""
Human health risk was assessed with the US EPA Superfund approach [@USEPA1989RAGSA; @USEPA2004RAGSE;
@USEPA2009RAGSF] in the form used by @zhao2026tarim [eq. 5-12], for the pathways
{' and '.join(paths)}, and for the receptors {', '.join(receptors)}. Exposure parameters are
{_SET_CITATION.get(parameters, parameters)}; toxicity values (oral reference dose RfD, oral slope factor SF,
reference concentration RfC, inhalation unit risk IUR, gastrointestinal absorption GIABS, dermal absorption ABS,
relative bioavailability RBA, permeability $K_p$) are those of the RSL tables of November 2024 [@USEPA2024RSL]{tox_note}.
The average daily dose for noncancer effects and the lifetime average daily dose for cancer are

$$ADD = \\frac{{C \\cdot IR \\cdot CF \\cdot EF \\cdot ED}}{{BW \\cdot AT}},\\qquad
LADD = \\frac{{C \\cdot IR \\cdot CF \\cdot EF \\cdot ED}}{{BW \\cdot LT \\cdot 365}},$$

with $AT = ED \\times 365$ d; the dermal dose uses $SA \\cdot AF \\cdot ABS$ (soil) or $K_p\\,t_{{event}}\\,EV\\,SA$
(water) in place of $IR$, and inhalation uses the air concentration $C/PEF$ weighted by $ET/24$. Then
$HQ = ADD/RfD$ (dermal: $RfD \\cdot GIABS$; inhalation: $EC/RfC$), $CR = LADD \\cdot SF$ (dermal: $SF/GIABS$;
inhalation: $IUR \\cdot 1000 \\cdot EC$), $HI = \\sum HQ$ and $TCR = \\sum CR$. The resident is assessed as in the
RSLs: the child (0-6 years) for noncancer effects and the child plus the adult (6-26 years) for cancer
(age-adjusted intake); Cr(VI) is treated as a mutagen with age-dependent adjustment factors
[@USEPA2005ADAF]. HI > 1 indicates a possible noncancer effect; TCR is compared with 1e-6 and 1e-4, the
limits of the US EPA acceptable range. {dermal} Total chromium is split into Cr(VI) (share
{cr_vi_fraction:.3g}; default 1/7, the 1:6 Cr(VI):Cr(III) ratio the RSL tables assume for total chromium) and
Cr(III).{na}

The probabilistic assessment draws {n_iter:,} sets of exposure factors (soil ingestion rate and skin adherence
from the central and reasonable-maximum values of [@USEPA2011EFH] and [@USEPA2004RAGSE], body weight and
exposure frequency around the RSL defaults; the distribution table lists each choice and its basis) together
with a randomly drawn sample of the region (reproducible draws) [@USEPA2001RAGS3A], so that its spread
combines the variation between locations with that between people. It reports the 5th, 50th and 95th
percentiles of HI and TCR, the probabilities $P(HI>1)$ and $P(TCR>10^{{-4}})$, and the Spearman rank
correlation of each input with HI and TCR.
""".strip("\n"))


def methods_summary(*, parameters: str, receptors, n_iter: int, media=("soil",), appendix_ref: str = "") -> str:
    """The main-text summary of the methods (the full equations and tables go to the appendix).

    Parameters
    ----------
    parameters : str
        Exposure parameter set name.
    receptors : sequence of str
        Receptors assessed.
    n_iter : int
        Monte Carlo iterations.
    media : sequence of str, default ("soil",)
        Media assessed.
    appendix_ref : str, default ''
        Cross-reference to the appendix part with the equations (e.g. ``@sec-appendix-health``).

    Returns
    -------
    str
        One paragraph (markdown).
    """
    kinds = {exposure_medium(m) for m in media}
    paths = []
    if "soil" in kinds:
        paths.append("incidental ingestion of soil, skin contact and inhaled soil dust")
    if "water" in kinds:
        paths.append("drinking water and skin contact while bathing")
    who = {"child": "a child (0-6 years)", "adult": "an adult", "resident": "a resident from birth to 26 years"}
    recs = [who.get(r, r) for r in receptors]
    return (f"Health risk follows the US EPA residential approach [@USEPA1989RAGSA; @USEPA2024RSL] as used by "
            f"@zhao2026tarim: daily doses through {', and through '.join(paths)} for {', '.join(recs[:-1])}"
            + (f" and {recs[-1]}" if len(recs) > 1 else recs[0])
            + ", divided by reference doses to give hazard quotients, summed to the hazard index (HI; above 1 a "
            "noncancer effect cannot be ruled out), and multiplied by slope factors to give the lifetime cancer risk "
            "(TCR; the US EPA target range is 10^−6^ to 10^−4^). Exposure factors are "
            f"{_SET_CITATION.get(parameters, parameters)}, upper-end values by design; a Monte Carlo analysis of "
            f"{n_iter:,} draws of exposure factors and sample locations gives the spread around them"
            + (f". Equations, parameters and toxicity values are in the appendix ({appendix_ref})." if appendix_ref
               else "."))


_RECEPTOR_LABEL = {"child": "Child (0-6 years)", "adult": "Adult", "resident": "Resident (0-26 years)"}


def sci_text(x: float, sig: int = 2) -> str:
    """A number for reader text and tables: ``0.46``, ``17`` or ``1.7 × 10^−5^`` (pandoc superscript).

    Parameters
    ----------
    x : float
        The number.
    sig : int, default 2
        Significant figures.

    Returns
    -------
    str
        Formatted number ('–' for NaN).
    """
    if x is None or not np.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    ax = abs(x)
    if 1e-3 <= ax < 1e4:
        digits = max(sig - int(np.floor(np.log10(ax))) - 1, 0)
        return f"{x:.{digits}f}"
    e = int(np.floor(np.log10(ax)))
    mant = x / 10.0 ** e
    if round(abs(mant), sig - 1) >= 10:
        mant, e = mant / 10, e + 1
    m = f"{mant:.{sig - 1}f}"
    exp = str(e).replace("-", "\u2212")
    return f"10^{exp}^" if m == "1" else f"{m} × 10^{exp}^"


def _prob_text(p: float, n_iter: int) -> str:
    """A Monte Carlo probability for text: ``0.2 %`` or ``below 1 in 10,000`` (no iteration above)."""
    if not np.isfinite(p):
        return "–"
    if p <= 0:
        return f"below 1 in {n_iter:,}"
    return f"{100 * p:.2g} %"


def _pct_text(share: float) -> str:
    if not np.isfinite(share):
        return "–"
    v = 100 * share
    return f"{v:.0f} %" if v == 0 or v >= 10 or v == 100 else f"{v:.1f} %"


def _mc_row(mc: pd.DataFrame, receptor: str, metric: str, threshold: float):
    if mc is None or not len(mc):
        return None
    d = mc[(mc["receptor"] == receptor) & (mc["metric"] == metric) & np.isclose(mc["threshold"], threshold)]
    return d.iloc[0] if len(d) else None


def _leader(summary: pd.DataFrame, receptor: str, col: str) -> tuple[str, float] | None:
    d = summary[(summary["receptor"] == receptor) & (summary["metal"] != "all")].dropna(subset=[col])
    tot = d[col].sum()
    if not len(d) or not tot > 0:
        return None
    top = d.sort_values(col, ascending=False).iloc[0]
    return str(top["metal"]), float(top[col] / tot)


def receptor_table(summary: pd.DataFrame, indices: pd.DataFrame, montecarlo: pd.DataFrame | None = None, *,
                   medium: str = "soil") -> pd.DataFrame:
    """Reader's summary of one medium: one column per receptor, one row per measure.

    Deterministic mean and maximum over samples, share of samples above HI = 1 and TCR = 1e-6 and
    1e-4, the Monte Carlo median with its 5th-95th percentile interval and exceedance probability,
    and the metal contributing most. Replaces one paragraph per receptor.

    Parameters
    ----------
    summary : DataFrame
        :func:`hazard_summary` of the medium.
    indices : DataFrame
        :func:`sample_indices` (sample_id, medium, receptor, hi, tcr); rows of other media are ignored.
    montecarlo : DataFrame, optional
        :func:`montecarlo_table`; rows of other media are ignored.
    medium : str, default "soil"
        The medium summarised.

    Returns
    -------
    DataFrame
        Column ``Measure`` and one string column per receptor.
    """
    ind = indices[indices["medium"] == medium] if "medium" in indices else indices
    mc = None
    if montecarlo is not None and len(montecarlo):
        mc = montecarlo[montecarlo["medium"] == medium] if "medium" in montecarlo else montecarlo
    receptors = list(dict.fromkeys(summary["receptor"]))
    rows: dict[str, dict[str, str]] = {}

    def put(measure: str, rec: str, value: str) -> None:
        rows.setdefault(measure, {})[rec] = value

    for rec in receptors:
        d = ind[ind["receptor"] == rec]
        hi, tcr = d["hi"], d["tcr"]
        put("HI, mean of samples (maximum)", rec, f"{sci_text(hi.mean())} ({sci_text(hi.max())})")
        put("Samples with HI > 1", rec, _pct_text((hi > 1).mean()))
        m = _mc_row(mc, rec, "HI", 1.0)
        if m is not None:
            put("HI, Monte Carlo median (5th-95th percentile)", rec,
                f"{sci_text(m.p50)} ({sci_text(m.p5)}-{sci_text(m.p95)})")
            put("P(HI > 1), Monte Carlo", rec, format_probability(m.prob_gt_threshold, int(m.n_iter)))
        lead = _leader(summary, rec, "hi_mean")
        put("Largest share of the mean HI", rec, f"{lead[0]} ({_pct_text(min(lead[1], 0.99))})" if lead else "–")
        if tcr.notna().any():
            put("TCR, mean of samples (maximum)", rec, f"{sci_text(tcr.mean())} ({sci_text(tcr.max())})")
            put("Samples with TCR > 10^−6^", rec, _pct_text((tcr > 1e-6).mean()))
            put("Samples with TCR > 10^−4^", rec, _pct_text((tcr > 1e-4).mean()))
            m = _mc_row(mc, rec, "TCR", 1e-4)
            if m is not None:
                put("TCR, Monte Carlo median (5th-95th percentile)", rec,
                    f"{sci_text(m.p50)} ({sci_text(m.p5)}-{sci_text(m.p95)})")
                put("P(TCR > 10^−4^), Monte Carlo", rec, format_probability(m.prob_gt_threshold, int(m.n_iter)))
            lead = _leader(summary, rec, "tcr_mean")
            put("Largest share of the mean TCR", rec,
                f"{lead[0]} ({'> 99 %' if lead[1] > 0.995 else _pct_text(lead[1])})" if lead else "–")
    out = pd.DataFrame([{"Measure": k, **{_RECEPTOR_LABEL.get(r, r): v.get(r, "–") for r in receptors}}
                        for k, v in rows.items()])
    return out


def _tcr_band(t: float) -> str:
    if t > 1e-4:
        return ("above 10^−4^, the upper end of the US EPA's target range, where action to reduce exposure is "
                "generally warranted")
    if t >= 1e-6:
        return ("within the US EPA's target range of 10^−6^ to 10^−4^ (one to one hundred additional cancer cases "
                "per million people exposed), where the need for action is judged case by case")
    return "below 10^−6^, the level the US EPA regards as negligible"


def results_text(summary: pd.DataFrame, risk: pd.DataFrame, montecarlo: pd.DataFrame | None = None, *,
                 medium: str = "soil", indices: pd.DataFrame | None = None, cr_vi_fraction: float | None = None,
                 cr_vi_assumed: bool = False, refs: Mapping[str, str] | None = None) -> str:
    """What the hazard index and cancer risk mean for the people exposed, with the Monte Carlo uncertainty.

    One paragraph on noncancer hazard (the child, or the most exposed receptor assessed) and one on
    cancer risk (the resident, or the receptor with the largest risk), each with the deterministic
    result over the samples, the Monte Carlo median and 90 % interval and exceedance probability,
    the metal and pathway that carry it, and, where Cr(VI) carries the cancer risk and its share of
    total Cr was assumed, how the risk scales with that assumption.

    Parameters
    ----------
    summary : DataFrame
        :func:`hazard_summary` of the medium.
    risk : DataFrame
        Risk table of the medium (receptor, metal, pathway, hq, cr).
    montecarlo : DataFrame, optional
        :func:`montecarlo_table`.
    medium : str, default "soil"
        Medium described.
    indices : DataFrame, optional
        :func:`sample_indices` (default: computed from ``risk``).
    cr_vi_fraction : float, optional
        Cr(VI) share of total Cr used.
    cr_vi_assumed : bool, default False
        Whether that share is an assumption (Cr(VI) not measured).
    refs : mapping, optional
        Cross-references to cite: ``table`` (receptor summary), ``contributions``, ``montecarlo`` (figure),
        ``central`` (deterministic vs Monte Carlo central values).

    Returns
    -------
    str
        Results paragraphs (markdown).
    """
    refs = dict(refs or {})
    ind = sample_indices(risk) if indices is None else indices
    ind = ind[ind["medium"] == medium] if "medium" in ind else ind
    mc = None
    if montecarlo is not None and len(montecarlo):
        mc = montecarlo[montecarlo["medium"] == medium] if "medium" in montecarlo else montecarlo
    recs = list(dict.fromkeys(summary["receptor"]))
    if not recs or ind.empty:
        return f"No metal of the {medium} samples has toxicity values, so no risk was computed."
    n = int(ind["sample_id"].nunique())
    water = exposure_medium(medium) == "water"
    who = "a child drinking this water daily" if water else "a child living on the sampled soils"
    r_hi = "child" if "child" in recs else ("resident" if "resident" in recs else recs[0])
    d = ind[ind["receptor"] == r_hi]
    hi = d["hi"]
    paras = []
    tab = f" (@{refs['table']})" if refs.get("table") else ""
    share_gt = float((hi > 1).mean())
    txt = (f"**Noncancer hazard.** A hazard index (HI) below 1 means that the summed daily intake of the metals stays "
           "below their reference doses, the intakes at which no adverse effect is expected over a lifetime. For "
           f"{who if r_hi == 'child' else 'the ' + r_hi}, HI averaged {sci_text(hi.mean())} over the {n} {medium} "
           f"samples and reached at most {sci_text(hi.max())}{tab}; ")
    txt += ("no sample exceeded 1." if share_gt == 0 else
            f"{_pct_text(share_gt)} of the samples exceeded 1, where a noncancer effect cannot be ruled out.")
    lead = _leader(summary, r_hi, "hi_mean")
    if lead:
        rr = risk[(risk["receptor"] == r_hi) & (risk["metal"] == lead[0])]
        bp = rr.groupby("pathway")["hq"].sum()
        path = (f", mostly through {bp.idxmax()}" if bp.sum() > 0 and bp.max() / bp.sum() > 0.5 else "")
        cref = f" (@{refs['contributions']})" if refs.get("contributions") else ""
        txt += f" {lead[0]} carried {_pct_text(lead[1])} of the mean HI{path}{cref}."
    if "adult" in recs and r_hi != "adult":
        ha = ind.loc[ind["receptor"] == "adult", "hi"].mean()
        if ha > 0 and hi.mean() > 0:
            txt += f" The adult's HI was about {hi.mean() / ha:.0f} times lower (body weight and intake)."
    m = _mc_row(mc, r_hi, "HI", 1.0)
    if m is not None:
        fref = f", @{refs['montecarlo']}" if refs.get("montecarlo") else ""
        txt += (f" With exposure factors drawn from their distributions and one sample drawn per iteration "
                f"(Monte Carlo{fref}), the median HI was {sci_text(m.p50)} (90 % interval {sci_text(m.p5)} to "
                f"{sci_text(m.p95)}) and the probability of HI above 1 was "
                f"{_prob_text(m.prob_gt_threshold, int(m.n_iter))}.")
    paras.append(txt)
    tcr_recs = [r for r in recs if ind.loc[ind["receptor"] == r, "tcr"].notna().any()]
    if tcr_recs:
        r_c = "resident" if "resident" in tcr_recs else max(
            tcr_recs, key=lambda r: ind.loc[ind["receptor"] == r, "tcr"].mean())
        tc = ind.loc[ind["receptor"] == r_c, "tcr"]
        per_million = tc.mean() * 1e6
        who_c = ("the resident (exposed from birth for 26 years, child and adult intake combined)"
                 if r_c == "resident" else f"the {r_c}")
        txt = (f"**Cancer risk.** The total cancer risk (TCR) is the lifetime probability of an additional cancer "
               f"from the exposure. For {who_c} it averaged {sci_text(tc.mean())}"
               + (f", about {per_million:.2g} additional cases per million people," if 1 <= per_million < 1e6 else "")
               + f" and ranged from {sci_text(tc.min())} to {sci_text(tc.max())} over the samples: "
               + (("every sample lies " + _tcr_band(1e-5)) if tc.min() >= 1e-6 and tc.max() <= 1e-4 else
                  ("every sample lies " + _tcr_band(1e-7)) if tc.max() < 1e-6 else
                  ("every sample lies " + _tcr_band(1e-3)) if tc.min() > 1e-4 else
                  ("the mean lies " + _tcr_band(tc.mean()))) + "."
               + (f" {_pct_text(float((tc > 1e-4).mean()))} of the samples exceeded 10^−4^." if (tc > 1e-4).any()
                  else ""))
        m = _mc_row(mc, r_c, "TCR", 1e-4)
        if m is not None:
            txt += (f" In the Monte Carlo analysis the median TCR was {sci_text(m.p50)} (90 % interval "
                    f"{sci_text(m.p5)} to {sci_text(m.p95)}) and the probability of exceeding 10^−4^ was "
                    f"{_prob_text(m.prob_gt_threshold, int(m.n_iter))}.")
        lead = _leader(summary, r_c, "tcr_mean")
        if lead:
            txt += (f" {lead[0]} carried " + ("almost all" if lead[1] > 0.995 else _pct_text(lead[1]))
                    + " of the mean TCR.")
            if lead[0] == "Cr(VI)" and cr_vi_assumed and cr_vi_fraction:
                crv = summary[(summary["receptor"] == r_c) & (summary["metal"] == "Cr(VI)")]["tcr_mean"].iloc[0]
                tenth = tc.mean() - 0.9 * crv
                txt += (f" Cr(VI) was not measured: its share of total Cr ({cr_vi_fraction:.2g}, the ratio the US "
                        "EPA screening tables assume) is an assumption, and the cancer risk scales with it; if a "
                        f"tenth as much Cr were hexavalent, the mean TCR would be {sci_text(tenth)}.")
        paras.append(txt)
    return "\n\n".join(paras)


def _eq(formatted: str) -> str:
    """``= 0.012`` or ``< 0.0001`` (no '= <')."""
    return formatted if formatted.startswith("<") else f"= {formatted}"


def montecarlo_text(montecarlo: pd.DataFrame, *, medium: str = "soil") -> str:
    """A short paragraph (markdown) on the Monte Carlo summary (:func:`montecarlo_table`) of one medium.

    Parameters
    ----------
    montecarlo : DataFrame
        Monte Carlo summary (:func:`montecarlo_table`).
    medium : str, default "soil"
        Medium described.

    Returns
    -------
    str
        Paragraph (markdown) with percentiles and exceedance probabilities per receptor.
    """
    parts = []
    mc = montecarlo[montecarlo["medium"] == medium] if "medium" in montecarlo else montecarlo
    for rec in dict.fromkeys(mc["receptor"]):
        hi = mc[(mc["receptor"] == rec) & (mc["metric"] == "HI")]
        tc = mc[(mc["receptor"] == rec) & (mc["metric"] == "TCR") & (mc["threshold"] == 1e-4)]
        if not len(hi):
            continue
        h = hi.iloc[0]
        t = (f"In the Monte Carlo analysis ({int(h.n_iter):,} iterations) the {rec}'s HI had P5/P50/P95 = "
             f"{sci_text(h.p5)}/{sci_text(h.p50)}/{sci_text(h.p95)} and P(HI > 1) {_eq(format_probability(h.prob_gt_threshold, int(h.n_iter)))}")
        if len(tc):
            c = tc.iloc[0]
            t += (f"; TCR had P5/P50/P95 = {sci_text(c.p5)}/{sci_text(c.p50)}/{sci_text(c.p95)} and "
                  "P(TCR > 10^−4^) {_eq(format_probability(c.prob_gt_threshold, int(c.n_iter)))}")
        parts.append(t + ".")
    return " ".join(parts)


def _plot_receptors(risk: pd.DataFrame, receptors) -> tuple[str | None, str | None]:
    """The receptor whose HI is drawn (child, else the first) and the one whose TCR is drawn (resident, else the
    receptor with the largest mean CR)."""
    recs = [r for r in (receptors or dict.fromkeys(risk["receptor"])) if (risk["receptor"] == r).any()]
    if not recs:
        return None, None
    r_hi = "child" if "child" in recs else recs[0]
    with_cr = [r for r in recs if risk.loc[risk["receptor"] == r, "cr"].notna().any()]
    r_c = None
    if with_cr:
        r_c = "resident" if "resident" in with_cr else max(
            with_cr, key=lambda r: risk.loc[risk["receptor"] == r, "cr"].sum())
    return r_hi, r_c


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def plot_contributions(risk: pd.DataFrame, *, receptors=None):
    """Mean HI (most exposed receptor) and mean TCR (resident) per metal, stacked by pathway.

    The child's HI is the resident's (the RSL resident is the child for noncancer effects) and the
    adult's is about an order of magnitude lower, so one HI panel (child, else the first receptor)
    and one TCR panel (resident, else the receptor with the largest cancer risk) are drawn.

    Parameters
    ----------
    risk : DataFrame
        Risk table (receptor, metal, pathway, hq, cr).
    receptors : sequence of str, optional
        Receptors assessed (default: all in ``risk``).

    Returns
    -------
    matplotlib.figure.Figure
        Stacked horizontal bars of mean HQ and CR per metal.
    """
    import matplotlib.pyplot as plt

    from .plots import print_style

    r_hi, r_c = _plot_receptors(risk, receptors)
    pathways = list(dict.fromkeys(risk["pathway"]))
    colors = dict(zip(pathways, plt.get_cmap("Set2").colors))
    panels = [(r_hi, "hq", "mean hazard quotient")] + ([(r_c, "cr", "mean cancer risk")] if r_c else [])
    with print_style():
        fig, axes = plt.subplots(1, len(panels), figsize=(6.6, 2.6), squeeze=False)
        for ax, (rec, col, label) in zip(axes[0], panels):
            d = risk[risk["receptor"] == rec]
            m = d.groupby(["metal", "pathway"], sort=False)[col].mean().unstack("pathway")
            m = m.reindex(columns=[p for p in pathways if p in m.columns]).dropna(how="all")
            m = m.loc[m.fillna(0).sum(axis=1).sort_values().index]
            if m.empty or not (m.fillna(0).to_numpy() > 0).any():
                ax.text(0.5, 0.5, "no toxicity values", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            top = float(m.fillna(0).sum(axis=1).max())
            e = int(np.floor(np.log10(top))) if top < 1e-2 else 0  # axis in units of 10^e, named in the label
            left = np.zeros(len(m))
            for p in m.columns:
                v = m[p].fillna(0.0).to_numpy() / 10.0 ** e
                ax.barh(m.index, v, left=left, color=colors[p], label=p)
                left += v
            who = {"child": "child", "resident": "resident, 0-26 years"}.get(rec, rec)
            scale = f" (× 10{str(e).translate(_SUPERSCRIPT)})" if e else ""
            ax.set_xlabel(f"{label}{scale}, {who}")
            ax.set_title("HI by metal" if col == "hq" else "TCR by metal", loc="left")
        axes[0, 0].legend(title="pathway", loc="lower right")
        fig.tight_layout()
    return fig


def plot_montecarlo(results):
    """Distributions of log10 HI and log10 TCR per receptor, with the thresholds named in the legend.

    The x-axis covers the simulated values; a threshold far outside them is named in the legend
    ("off scale") instead of stretching the axis.

    Parameters
    ----------
    results : iterable of MonteCarloResult
        Monte Carlo results.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels of density histograms (log10 HI, log10 TCR).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .plots import print_style

    results = list(results)
    multi_medium = len({r.medium for r in results}) > 1
    specs = (("hi", "log10 hazard index (HI)", ((0.0, "HI = 1", "#d62728", "--"),)),
             ("tcr", "log10 total cancer risk (TCR)", ((-6.0, "TCR = 10⁻⁶ (lower end of the US EPA range)", "#ff7f0e", ":"),
                                                      (-4.0, "TCR = 10⁻⁴ (upper end)", "#d62728", "--"))))
    with print_style():
        fig, axes = plt.subplots(1, 2, figsize=(6.6, 2.9))
        for ax, (attr, xlabel, thresholds) in zip(axes, specs):
            lo, hi = np.inf, -np.inf
            for k, r in enumerate(results):
                v = np.asarray(getattr(r, attr), float)
                v = v[np.isfinite(v) & (v > 0)]
                if not len(v):
                    continue
                lv = np.log10(v)
                lo, hi = min(lo, np.percentile(lv, 0.1)), max(hi, np.percentile(lv, 99.9))
                lab = f"{r.receptor} ({r.medium})" if multi_medium else r.receptor
                ax.hist(lv, bins=60, histtype="step", density=True, label=lab, color=f"C{k % 10}")
            if not np.isfinite(lo):
                ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            pad = 0.05 * max(hi - lo, 0.5)
            x0, x1 = lo - pad, hi + pad
            handles, labels = ax.get_legend_handles_labels()
            for t, name, c, ls in thresholds:
                if x0 - 1.0 <= t <= x1 + 1.0:  # within a decade of the data: draw it and let the axis include it
                    ax.axvline(t, color=c, ls=ls, lw=1.1)
                    x0, x1 = min(x0, t - pad), max(x1, t + pad)
                    handles.append(Line2D([], [], color=c, ls=ls, lw=1.1))
                    labels.append(name)
                else:
                    handles.append(Line2D([], [], color="none"))
                    labels.append(f"{name}: off scale, {'right' if t > x1 else 'left'}")
            ax.set_xlim(x0, x1)
            ax.set_xlabel(xlabel)
            ax.legend(handles, labels, loc="upper left", frameon=False)
            ax.set_ylim(0, ax.get_ylim()[1] * (1.15 + 0.1 * len(labels)))  # room for the legend above the curves
        axes[0].set_ylabel("density")
        fig.tight_layout()
    return fig


def plot_tornado(result: MonteCarloResult, *, top: int = 10):
    """Tornado chart: Spearman rank correlation of the inputs with HI and TCR.

    Parameters
    ----------
    result : MonteCarloResult
        Monte Carlo result with ``sensitivity``.
    top : int, default 10
        Number of inputs shown per output.

    Returns
    -------
    matplotlib.figure.Figure
        One tornado panel per output (HI, TCR).
    """
    import matplotlib.pyplot as plt

    from .plots import print_style

    s = result.sensitivity
    outs = [o for o in ("HI", "TCR") if (s["output"] == o).any()]
    with print_style():
        fig, axes = plt.subplots(1, max(len(outs), 1), figsize=(6.6, 2.9), squeeze=False)
        for ax, o in zip(axes[0], outs):
            d = s[s["output"] == o].assign(a=lambda x: x["rho"].abs()).sort_values("a").tail(top)
            names = [str(i).replace("C ", "concentration ", 1) if str(i).startswith("C ") else str(i)
                     for i in d["input"]]
            ax.barh(names, d["rho"], color=np.where(d["rho"] > 0, "#c0392b", "#2e86c1"))
            ax.axvline(0, color="k", lw=0.6)
            ax.set_xlim(-1, 1)
            ax.set_xlabel(f"Spearman rank correlation with {o}")
            ax.set_title(f"{o}, {result.receptor}", loc="left")
        fig.tight_layout()
    return fig


def plot_grid_risk(grid: pd.DataFrame, *, coordinate_unit: str = "m", crs: str | None = None):
    """Maps of HI and TCR on the prediction grid (from :func:`grid_risk`).

    One HI panel (the child's, which is the resident's; else the first receptor's) and one TCR
    panel (the resident's, else the receptor with cancer values), with a scale bar, a north arrow
    and the coordinate note; the colour bars mark HI = 1 and TCR = 1e-6 and 1e-4 where they fall
    inside the mapped range. The colour scale is logarithmic where the values span more than a
    factor of 20, else linear.

    Parameters
    ----------
    grid : DataFrame
        Grid risk table (x, y, receptor, hi, tcr) from :func:`grid_risk`.
    coordinate_unit : str, default "m"
        Unit of the coordinates.
    crs : str, optional
        Coordinate reference system of the grid (None or "local": a local grid).

    Returns
    -------
    matplotlib.figure.Figure
        Log-scaled maps of HI and TCR.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    from .plots import decorate_map, map_axes, print_style

    recs = list(dict.fromkeys(grid["receptor"]))
    hi_rec = "child" if "child" in recs else recs[0]
    has_c = [r for r in recs if grid.loc[grid.receptor == r, "tcr"].notna().any()]
    panels = [(hi_rec, "hi")] + ([("resident" if "resident" in has_c else has_c[0], "tcr")] if has_c else [])
    with print_style():
        x0, x1 = float(grid["x"].min()), float(grid["x"].max())
        y0, y1 = float(grid["y"].min()), float(grid["y"].max())
        aspect = (y1 - y0) / max(x1 - x0, 1e-12)
        if aspect <= 1.6:  # side by side (the two panels share a row unless the region is tall and narrow)
            fig, axes = plt.subplots(1, len(panels), figsize=(6.6, min(3.6, 6.6 / len(panels) * aspect + 0.6)),
                                     squeeze=False)
            axes = list(axes[0])
            for ax in axes:
                ax.set_aspect("equal", adjustable="box")
                ax.set_xticks([])
                ax.set_yticks([])
        else:
            fig, axes = map_axes(len(panels), x=grid["x"], y=grid["y"])
        for k, (ax, (rec, col)) in enumerate(zip(axes, panels)):
            d = grid[grid.receptor == rec]
            z = d.pivot_table(index="y", columns="x", values=col, aggfunc="mean")
            v = z.to_numpy(float)
            ok = np.isfinite(v) & (v > 0)
            if not ok.any():
                ax.set_axis_off()
                continue
            v = np.where(ok, v, np.nan)
            vmin, vmax = np.nanmin(v), np.nanmax(v)
            if vmax <= vmin:
                vmax = vmin * 1.01
            log = vmax / vmin > 20  # a log scale only where the values span more than an order of magnitude or so
            e = 0 if log or vmax >= 1e-2 else int(np.floor(np.log10(vmax)))  # linear axis in units of 10^e
            v, vmin, vmax = v / 10.0 ** e, vmin / 10.0 ** e, vmax / 10.0 ** e
            norm = LogNorm(vmin, vmax) if log else Normalize(vmin, vmax)
            mesh = ax.pcolormesh(z.columns.to_numpy(float), z.index.to_numpy(float), v, shading="nearest",
                                 cmap="magma_r", norm=norm, rasterized=True)
            name = "Hazard index" if col == "hi" else "Total cancer risk"
            ax.set_title(f"{name} ({rec})", loc="left")
            cb = fig.colorbar(mesh, ax=ax, shrink=0.8, pad=0.02)
            marks = [1.0] if col == "hi" else [1e-6, 1e-4]
            for t in marks:
                if vmin <= t / 10.0 ** e <= vmax:
                    cb.ax.axhline(t / 10.0 ** e, color="#1f77b4", lw=1.5)
            scale = f" (× 10{str(e).translate(_SUPERSCRIPT)})" if e else ""
            cb.set_label(name + scale + (" (line: 1)" if col == "hi" and vmin <= 1 <= vmax else ""))
            decorate_map(ax, crs=crs, coordinate_unit=coordinate_unit, note=(k == 0))
        if aspect <= 1.6:
            fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
