"""Seeded generator of a region with known sources: profiles, contributions and Pb isotopes.

The generated data follow the PMF bilinear model exactly (before noise), so source
apportionment methods can be checked against the truth:

.. math::

    x_{ij} = \\Big(\\sum_{k=1}^{p} g_{ik} f_{kj}\\Big)\\,\\varepsilon_{ij},
    \\qquad \\ln \\varepsilon_{ij} \\sim N(0, \\sigma^2)

with :math:`f_{kj}` the profile of source *k* (mg/kg of metal *j* per unit contribution),
:math:`g_{ik} \\ge 0` the contribution of source *k* to sample *i* (mean about 1) and
:math:`\\sigma` the ``noise`` argument (multiplicative log-normal noise).

Sources (default profiles, :data:`DEFAULT_PROFILES`; illustrative numbers chosen for the demo,
not measurements):

* ``geogenic``: parent material; Co, Cr and Ni dominate, with background Cu, Pb, Zn and Cd.
  Contribution log-normal around 1 (``sdlog`` 0.3), times 0.1 on a sandy terrace west of
  x = 1 km that carries little parent-material metal. (Without samples where each source is
  nearly absent, PMF solutions are rotationally ambiguous and the truth is not recoverable.)
  The profiles likewise have zeros (e.g. no Co, Cr, Ni in the smelter and agriculture
  profiles, little Pb in agriculture, almost no Cd in the geogenic profile): each source has a
  species another lacks, which makes the true factorization the unique one up to scaling.
* ``smelter``: a point source at ``SMELTER_XY``; Pb, Zn, Cd and Cu dominate. Contribution
  decays exponentially with distance, :math:`g = 3\\,e^{-d/1.2\\,\\mathrm{km}}` times
  log-normal scatter (``sdlog`` 0.3).
* ``agriculture``: fertiliser and manure on fields east of x = 2.5 km; Cd, Cu and Zn.
  Contribution gamma-distributed (shape 2, mean 1.5) on fields and 0.05 elsewhere.

Two media are generated: ``soil`` (all sites) and ``sediment`` (stream sediments at a subset
of sites, with a stronger smelter contribution, factor 1.5, because runoff concentrates
smelter dust). Each medium follows the same profiles.

Pb isotope ratios (206Pb/207Pb and 208Pb/206Pb) mix linearly by each source's share of the
sample's Pb (the generator assumes equal abundance of the denominator isotope per unit Pb in
all sources, so that the share of the denominator isotope equals the Pb share):

.. math::

    R_i = \\sum_k s_{ik} R_k, \\qquad s_{ik} = \\frac{g_{ik} f_{k,\\mathrm{Pb}}}{\\sum_{k'} g_{ik'} f_{k',\\mathrm{Pb}}}

with end-member ratios :data:`DEFAULT_ENDMEMBERS` (illustrative values in the range reported
for natural and ore-derived Pb) and Gaussian measurement noise (``isotope_noise``). The true
Pb shares are returned so mixing models can be checked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_PROFILES", "DEFAULT_ENDMEMBERS", "SMELTER_XY", "generate", "write_demo_region",
           "FOUR_SOURCE_PROFILES", "FOUR_SOURCE_MDL", "generate_four_sources"]

METALS = ["Cd", "Co", "Cr", "Cu", "Ni", "Pb", "Zn"]

#: True source profiles, mg/kg per unit contribution (illustrative, chosen for the demo).
DEFAULT_PROFILES = pd.DataFrame(
    {
        "Cd": [0.02, 1.5, 0.6],
        "Co": [10.0, 0.0, 0.0],
        "Cr": [40.0, 0.0, 0.0],
        "Cu": [12.0, 2.0, 25.0],
        "Ni": [25.0, 0.0, 0.0],
        "Pb": [15.0, 100.0, 3.0],
        "Zn": [50.0, 120.0, 45.0],
    },
    index=pd.Index(["geogenic", "smelter", "agriculture"], name="source"),
)

#: Pb isotope end-members: mean and standard deviation of each ratio (illustrative values).
DEFAULT_ENDMEMBERS = pd.DataFrame(
    {
        "source": ["geogenic", "geogenic", "smelter", "smelter", "agriculture", "agriculture"],
        "ratio": ["206Pb/207Pb", "208Pb/206Pb"] * 3,
        "mean": [1.200, 2.065, 1.160, 2.110, 1.175, 2.040],
        "sd": [0.004, 0.006, 0.003, 0.005, 0.004, 0.006],
    }
)

#: Location of the smelter in the demo's local grid (km).
SMELTER_XY = (1.5, 3.0)

_RATIO_COLUMNS = {"206Pb/207Pb": "pb206_207", "208Pb/206Pb": "pb208_206"}


def _contributions(x_km: np.ndarray, y_km: np.ndarray, rng: np.random.Generator, smelter_factor: float) -> np.ndarray:
    n = len(x_km)
    geo = rng.lognormal(mean=0.0, sigma=0.3, size=n) * np.where(x_km < 1.0, 0.1, 1.0)
    d = np.hypot(x_km - SMELTER_XY[0], y_km - SMELTER_XY[1])
    smelter = smelter_factor * 3.0 * np.exp(-d / 1.2) * rng.lognormal(0.0, 0.3, size=n)
    fields = x_km > 2.5
    agri = np.where(fields, rng.gamma(shape=2.0, scale=0.75, size=n), 0.05)
    return np.column_stack([geo, smelter, agri])


def generate(
    *,
    seed: int = 1,
    n_soil: int = 160,
    n_sediment: int = 60,
    noise: float = 0.05,
    isotope_noise: float = 0.001,
    profiles: pd.DataFrame | None = None,
    endmembers: pd.DataFrame | None = None,
    extent_km: tuple[float, float] = (5.0, 5.0),
) -> dict[str, pd.DataFrame]:
    """Generate a region with known source profiles, contributions and Pb isotope ratios.

    Parameters
    ----------
    seed : seed of the generator (every random draw comes from ``numpy.random.default_rng(seed)``).
    n_soil, n_sediment : number of soil sites and of sediment samples (sediments are taken at
        the first ``n_sediment`` soil sites' neighbourhood, jittered by up to 100 m).
    noise : standard deviation of the multiplicative log-normal noise (0.05 = about 5 %).
    isotope_noise : standard deviation of the Gaussian noise on each isotope ratio.
    profiles : sources x metals profile matrix (mg/kg per unit contribution); default
        :data:`DEFAULT_PROFILES`. Must contain a ``Pb`` column when isotopes are generated.
    endmembers : long table (source, ratio, mean, sd); default :data:`DEFAULT_ENDMEMBERS`.
    extent_km : width and height of the square study area (local grid, km).

    Returns
    -------
    dict of DataFrames
        ``samples``: sample_id, medium, site_id, x, y, one column per metal (mg/kg), pb206_207,
        pb208_206; ``profiles``: the true profile matrix; ``contributions``: sample_id, medium
        and one column per source (the true g); ``pb_shares``: sample_id, medium and the true
        Pb share of each source; ``endmembers``: the end-member table used.
    """
    if noise < 0 or isotope_noise < 0:
        raise ValueError(f"noise and isotope_noise must be >= 0, got {noise} and {isotope_noise}")
    if n_soil < 1 or n_sediment < 0 or n_sediment > n_soil:
        raise ValueError(f"expected n_soil >= 1 and 0 <= n_sediment <= n_soil, got {n_soil} and {n_sediment}")
    prof = DEFAULT_PROFILES if profiles is None else profiles
    em = DEFAULT_ENDMEMBERS if endmembers is None else endmembers
    if "Pb" not in prof.columns:
        raise ValueError(f"profiles must include a Pb column for the isotopes; got {list(prof.columns)}")
    missing = set(prof.index) - set(em["source"])
    if missing:
        raise ValueError(f"endmembers lack sources {sorted(missing)} that the profiles define")
    rng = np.random.default_rng(seed)
    F = prof.to_numpy(float)
    x = rng.uniform(0.0, extent_km[0], n_soil)
    y = rng.uniform(0.0, extent_km[1], n_soil)
    sed_x = x[:n_sediment] + rng.uniform(-0.1, 0.1, n_sediment)
    sed_y = y[:n_sediment] + rng.uniform(-0.1, 0.1, n_sediment)
    rows, contrib_rows, share_rows = [], [], []
    for medium, xs, ys, factor in (("soil", x, y, 1.0), ("sediment", sed_x, sed_y, 1.5)):
        if len(xs) == 0:
            continue
        G = _contributions(xs, ys, rng, factor)
        X = (G @ F) * rng.lognormal(0.0, noise, size=(len(xs), F.shape[1])) if noise > 0 else G @ F
        pb = G * F[:, list(prof.columns).index("Pb")][None, :]
        share = pb / pb.sum(axis=1, keepdims=True)
        prefix = "S" if medium == "soil" else "D"
        ids = [f"{prefix}{i + 1:03d}" for i in range(len(xs))]
        sites = [f"T{i + 1:03d}" for i in range(len(xs))]
        df = pd.DataFrame({"sample_id": ids, "medium": medium, "site_id": sites,
                           "x": np.round(np.clip(xs, 0, extent_km[0]), 4),
                           "y": np.round(np.clip(ys, 0, extent_km[1]), 4)})
        for j, m in enumerate(prof.columns):
            df[m] = X[:, j]
        for ratio, col in _RATIO_COLUMNS.items():
            sub = em[em["ratio"] == ratio].set_index("source").reindex(prof.index)
            r = share @ sub["mean"].to_numpy(float)
            df[col] = r + rng.normal(0.0, isotope_noise, size=len(xs))
        rows.append(df)
        contrib_rows.append(pd.DataFrame(G, columns=prof.index).assign(sample_id=ids, medium=medium))
        share_rows.append(pd.DataFrame(share, columns=prof.index).assign(sample_id=ids, medium=medium))
    samples = pd.concat(rows, ignore_index=True)
    contributions = pd.concat(contrib_rows, ignore_index=True)
    shares = pd.concat(share_rows, ignore_index=True)
    lead = ["sample_id", "medium"]
    contributions = contributions[lead + list(prof.index)]
    shares = shares[lead + list(prof.index)]
    return {"samples": samples, "profiles": prof.copy(), "contributions": contributions, "pb_shares": shares,
            "endmembers": em.copy()}


_README = """# smelter_demo: generated data (not measurements)

Every file in this folder was generated by `hmlib.synth.sources.write_demo_region(seed={seed})`
(module `hmlib/synth/sources.py`), which draws all random numbers from
`numpy.random.default_rng({seed})`. The data are synthetic: they follow the PMF bilinear model
with three known sources (geogenic, smelter at x = {sx} km, y = {sy} km, agriculture east of
x = 2.5 km), multiplicative log-normal noise (sdlog {noise}), and Pb isotope ratios mixed
linearly by each source's Pb share from known end-members plus Gaussian noise (sd {inoise}).
See the module docstring for the exact model.

Files:

- `samples.csv`: {n} rows (soil and sediment); sample_id, medium, site_id, x, y (local grid,
  km), Cd Co Cr Cu Ni Pb Zn (mg/kg), pb206_207 and pb208_206 (isotope ratios, dimensionless).
- `isotope_endmembers.csv`: source, ratio, mean, sd of the Pb isotope end-members used.
- `truth_profiles.csv`, `truth_contributions.csv`, `truth_pb_shares.csv`: the true source
  profiles (mg/kg per unit contribution), contributions and Pb shares, for checking results.

Regenerate with:

    .venv/bin/python -c "from hmlib.synth.sources import write_demo_region; write_demo_region('data/smelter_demo')"
"""


def write_demo_region(folder: str | Path, *, seed: int = 20240601, noise: float = 0.05) -> dict[str, Path]:
    """Write the ``smelter_demo`` region's CSV files (and a README saying how) into ``folder``.

    Returns the paths written, keyed by short name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = generate(seed=seed, noise=noise)
    paths = {
        "samples": folder / "samples.csv",
        "endmembers": folder / "isotope_endmembers.csv",
        "profiles": folder / "truth_profiles.csv",
        "contributions": folder / "truth_contributions.csv",
        "pb_shares": folder / "truth_pb_shares.csv",
        "readme": folder / "README.md",
    }
    d["samples"].to_csv(paths["samples"], index=False, float_format="%.6g")
    d["endmembers"].to_csv(paths["endmembers"], index=False)
    d["profiles"].to_csv(paths["profiles"], float_format="%.6g")
    d["contributions"].to_csv(paths["contributions"], index=False, float_format="%.6g")
    d["pb_shares"].to_csv(paths["pb_shares"], index=False, float_format="%.6g")
    paths["readme"].write_text(_README.format(seed=seed, sx=SMELTER_XY[0], sy=SMELTER_XY[1], noise=noise,
                                              inoise=0.001, n=len(d["samples"])), encoding="utf-8")
    return paths


# ----------------------------------------------------------------------------------------------
# four-source generator with laboratory-like noise (for the PMF factor-count and profile checks)
FOUR_SOURCE_METALS = ["As", "Cd", "Co", "Cr", "Cu", "Hg", "Ni", "Pb", "Sb", "V", "Zn"]

#: True profiles of the four-source generator, mg/kg per unit contribution (illustrative numbers
#: chosen for the tests, not measurements). Each source lacks species that another carries, so the
#: true factorization is unique up to scaling.
FOUR_SOURCE_PROFILES = pd.DataFrame(
    {
        "As": [6.0, 4.0, 0.0, 3.0], "Cd": [0.03, 1.2, 0.1, 0.5], "Co": [12.0, 0.0, 0.0, 0.0],
        "Cr": [50.0, 0.0, 8.0, 0.0], "Cu": [10.0, 8.0, 40.0, 20.0], "Hg": [0.0, 0.4, 0.0, 0.0],
        "Ni": [30.0, 0.0, 3.0, 0.0], "Pb": [12.0, 90.0, 25.0, 1.0], "Sb": [0.0, 2.0, 3.0, 0.0],
        "V": [60.0, 0.0, 0.0, 0.0], "Zn": [45.0, 110.0, 80.0, 40.0],
    },
    index=pd.Index(["geogenic", "smelter", "traffic", "agriculture"], name="source"),
)

#: Laboratory method detection limits of the four-source generator (mg/kg, typical ICP-MS/AAS values).
FOUR_SOURCE_MDL = pd.Series({"As": 0.5, "Cd": 0.02, "Co": 0.5, "Cr": 1.0, "Cu": 0.5, "Hg": 0.005, "Ni": 0.5,
                             "Pb": 0.5, "Sb": 0.05, "V": 1.0, "Zn": 1.0}, name="mdl")


def generate_four_sources(*, seed: int = 1, n: int = 150, noise: float = 0.1,
                          extent_km: tuple[float, float] = (5.0, 5.0)) -> dict[str, pd.DataFrame]:
    """Soil samples from four known sources with laboratory-like measurement error.

    .. math::

        x_{ij} = \\max\\Big(\\sum_k g_{ik} f_{kj}\\,(1 + \\sigma\\,z_{ij}) + \\tfrac{\\mathrm{MDL}_j}{3}\\,z'_{ij},\\;
        \\tfrac{\\mathrm{MDL}_j}{2}\\Big), \\qquad z, z' \\sim N(0, 1)

    i.e. a relative error ``noise`` (:math:`\\sigma`) plus an additive error of one third of the
    detection limit (a detection limit of three blank standard deviations), and values below the
    MDL reported as MDL/2 (the usual substitution). Sources: ``geogenic`` (parent material; almost
    absent on a sandy terrace west of x = 1 km), ``smelter`` (exponential decay, 1.2 km, from
    :data:`SMELTER_XY`), ``traffic`` (exponential decay, 0.4 km, from a road along y = 4 km) and
    ``agriculture`` (fields east of x = 3 km; gamma-distributed inputs).

    Parameters
    ----------
    seed : seed of ``numpy.random.default_rng``; every draw comes from it.
    n : number of samples.
    noise : relative measurement error (0.05, 0.1, 0.2 are realistic laboratory levels).
    extent_km : size of the study area (local grid, km).

    Returns
    -------
    dict of DataFrames
        ``samples`` (sample_id, medium, site_id, x, y and one column per metal, mg/kg),
        ``profiles`` (the true profiles), ``contributions`` (sample_id and the true g of each
        source), ``mdl`` (metal, mdl).
    """
    if noise < 0 or n < 10:
        raise ValueError(f"expected noise >= 0 and n >= 10, got {noise} and {n}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, extent_km[0], n)
    y = rng.uniform(0.0, extent_km[1], n)
    geo = rng.lognormal(0.0, 0.3, n) * np.where(x < 1.0, 0.05, 1.0)
    smelter = 3.0 * np.exp(-np.hypot(x - SMELTER_XY[0], y - SMELTER_XY[1]) / 1.2) * rng.lognormal(0.0, 0.3, n)
    traffic = 2.5 * np.exp(-np.abs(y - 4.0) / 0.4) * rng.lognormal(0.0, 0.3, n)
    agri = np.where(x > 3.0, rng.gamma(2.0, 0.75, n), 0.02)
    G = np.column_stack([geo, smelter, traffic, agri])
    F = FOUR_SOURCE_PROFILES.to_numpy(float)
    mdl = FOUR_SOURCE_MDL[FOUR_SOURCE_PROFILES.columns].to_numpy(float)
    clean = G @ F
    X = clean * (1.0 + noise * rng.standard_normal(clean.shape)) + mdl / 3.0 * rng.standard_normal(clean.shape)
    X = np.where(X < mdl, mdl / 2.0, X)
    ids = [f"S{i + 1:03d}" for i in range(n)]
    samples = pd.DataFrame({"sample_id": ids, "medium": "soil", "site_id": [f"T{i + 1:03d}" for i in range(n)],
                            "x": np.round(x, 4), "y": np.round(y, 4)})
    for j, m in enumerate(FOUR_SOURCE_PROFILES.columns):
        samples[m] = X[:, j]
    contributions = pd.DataFrame(G, columns=FOUR_SOURCE_PROFILES.index).assign(sample_id=ids)
    return {"samples": samples, "profiles": FOUR_SOURCE_PROFILES.copy(),
            "contributions": contributions[["sample_id", *FOUR_SOURCE_PROFILES.index]],
            "mdl": FOUR_SOURCE_MDL.rename_axis("metal").reset_index()}
