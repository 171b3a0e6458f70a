"""Seeded soils whose natural background is a known function of soil chemistry, with known contamination.

Built to check the adaptive background (:mod:`hmlib.background`): a method must recover the
natural background of every sample, flag the contaminated samples and leave the naturally
high soils (mafic parent material, high Ni and Cr) alone. Every number is a choice made for
this test region; no real survey is reproduced.

The generative model (sample ``i``)
-----------------------------------
Parent material
    Four parent materials (granite, basalt, limestone, shale) occupy Voronoi zones around
    seeded centres in a 40 x 40 km square; each sample takes the zone it falls in.
Soil chemistry (the covariates)
    Per parent material ``g`` a mean vector of ``Fe2O3`` (%), ``Al2O3`` (%), ``CaO`` (%),
    ``K2O`` (%) and ``som_pct`` (soil organic matter, %), :data:`CHEMISTRY`; each sample draws
    ``ln v = ln mu_g + N(0, 0.15)`` per variable, plus a shared weathering factor
    ``W ~ N(0, 1)`` that raises Fe2O3 and Al2O3 together (``+0.10 W``).
Natural background
    ``ln B_true[m] = a_m + sum_v b_mv ln v`` over the chemistry variables (:data:`BACKGROUND_MODEL`);
    so the background changes with parent material only through the chemistry (the Ni and Cr
    backgrounds of basalt soils are about four times those of limestone soils).
Observed concentration
    ``ln C = ln B_true + N(0, 0.12)`` (natural scatter), plus for contaminated samples an
    enrichment ``ln U(2, 8)`` (a factor of 2 to 8). Contamination: samples within 4 km of three
    seeded point sources with probability 0.7, elsewhere with probability 0.04; only the
    anthropogenic metals Pb, Cd, Cu, Zn and As are contaminated (Ni and Cr are all natural).

Outputs: sample table (sample_id, x, y, parent_material and chemistry), concentrations
(samples x metals, mg/kg), the true background and the contamination mask.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["CHEMISTRY", "BACKGROUND_MODEL", "ANTHROPOGENIC", "generate", "write_region", "DEFAULT_SEED"]

DEFAULT_SEED = 20260412
PARENT_MATERIALS = ("granite", "basalt", "limestone", "shale")
#: mean chemistry per parent material: Fe2O3, Al2O3, CaO, K2O (%), soil organic matter (%)
CHEMISTRY = pd.DataFrame(
    {"Fe2O3": [3.0, 9.0, 2.0, 5.0], "Al2O3": [14.0, 15.0, 6.0, 16.0], "CaO": [1.2, 6.0, 18.0, 1.5],
     "K2O": [4.0, 1.0, 0.8, 3.0], "som_pct": [2.5, 3.0, 2.0, 3.5]}, index=list(PARENT_MATERIALS))
#: ln B_true = a + sum_v b_v ln v (v in CHEMISTRY columns)
BACKGROUND_MODEL = pd.DataFrame(
    {"a": [1.2, -3.2, 1.0, 2.2, 1.3, 0.1, 0.0],
     "Fe2O3": [0.2, 0.2, 0.5, 0.4, 1.0, 1.1, 0.5],
     "Al2O3": [0.4, 0.1, 0.3, 0.3, 0.3, 0.2, 0.1],
     "CaO": [0.0, 0.25, 0.0, 0.05, 0.0, 0.0, 0.05],
     "K2O": [0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
     "som_pct": [0.1, 0.3, 0.2, 0.2, 0.0, 0.0, 0.15]},
    index=["Pb", "Cd", "Cu", "Zn", "Ni", "Cr", "As"])
ANTHROPOGENIC = ("Pb", "Cd", "Cu", "Zn", "As")


def generate(seed: int = DEFAULT_SEED, *, n_samples: int = 600, natural_sd: float = 0.12,
             p_near: float = 0.7, p_far: float = 0.04) -> dict[str, pd.DataFrame]:
    """Draw one region.

    Parameters
    ----------
    seed : seed of ``numpy.random.default_rng``.
    n_samples : number of soil samples.
    natural_sd : SD of ln C around ln B_true for clean samples.
    p_near, p_far : probability that a sample within 4 km of a source (or elsewhere) is contaminated.

    Returns
    -------
    dict with ``samples`` (sample_id, x, y, parent_material and the chemistry columns),
    ``concentrations`` (samples x metals, mg/kg, index sample_id), ``background_true`` (same
    shape) and ``contaminated`` (same shape, bool).
    """
    rng = np.random.default_rng(seed)
    n = int(n_samples)
    x, y = rng.uniform(0, 40_000, n), rng.uniform(0, 40_000, n)
    centres = rng.uniform(0, 40_000, (len(PARENT_MATERIALS) * 2, 2))
    zone = np.argmin((x[:, None] - centres[:, 0]) ** 2 + (y[:, None] - centres[:, 1]) ** 2, axis=1)
    pm = np.array(PARENT_MATERIALS)[zone % len(PARENT_MATERIALS)]
    w = rng.normal(0, 1, n)
    chem = {}
    for v in CHEMISTRY.columns:
        mu = np.log(CHEMISTRY.loc[pm, v].to_numpy(float))
        chem[v] = np.exp(mu + rng.normal(0, 0.15, n) + (0.10 * w if v in ("Fe2O3", "Al2O3") else 0.0))
    ids = [f"BG{i:05d}" for i in range(n)]
    samples = pd.DataFrame({"sample_id": ids, "x": x.round(1), "y": y.round(1), "parent_material": pm,
                            **{k: np.round(v, 4) for k, v in chem.items()}})
    sources = rng.uniform(5_000, 35_000, (3, 2))
    d = np.sqrt((x[:, None] - sources[:, 0]) ** 2 + (y[:, None] - sources[:, 1]) ** 2).min(axis=1)
    p_cont = np.where(d < 4_000, p_near, p_far)
    conc, truth, cont = {}, {}, {}
    for metal, row in BACKGROUND_MODEL.iterrows():
        # ln B_true from the rounded chemistry, so that the covariates a method sees carry it exactly
        ln_b = row["a"] + sum(row[v] * np.log(samples[v].to_numpy(float)) for v in CHEMISTRY.columns)
        is_c = (rng.uniform(size=n) < p_cont) if metal in ANTHROPOGENIC else np.zeros(n, bool)
        enrich = np.where(is_c, np.log(rng.uniform(2.0, 8.0, n)), 0.0)
        conc[metal] = np.exp(ln_b + rng.normal(0, natural_sd, n) + enrich)
        truth[metal], cont[metal] = np.exp(ln_b), is_c
    idx = pd.Index(ids, name="sample_id")
    return {"samples": samples, "concentrations": pd.DataFrame(conc, index=idx).round(4),
            "background_true": pd.DataFrame(truth, index=idx), "contaminated": pd.DataFrame(cont, index=idx)}


_PARAMS = """# Generated region (hmlib.synth.background, seed {seed}): {n} soils, natural background a known
# function of soil chemistry. Generated data, not a survey.
region:
  id: {region}
  title: "Soils over four parent materials with a chemistry-driven background (synthetic)"
  description: >-
    Simulated soils whose natural background follows soil chemistry; see hmlib/synth/background.py.
  data_citation: "Synthetic data generated by hmlib.synth.background.write_region (seed {seed})"
data:
  samples: {samples}
  id_column: sample_id
  x_column: x
  y_column: y
  crs: local
  coordinate_unit: m
  coordinate_bounds: [0.0, 0.0, 40000.0, 40000.0]
  covariates: [parent_material, Fe2O3, Al2O3, CaO, K2O, som_pct]
  categorical: [parent_material]
media:
  soil: {{unit: mg/kg}}
metals: {{Pb: Pb, Cd: Cd, Cu: Cu, Zn: Zn, Ni: Ni, Cr: Cr, As: As}}
references:
  background: UCC_RudnickGao2014
  guideline: GB15618_2018
  guideline_threshold: risk_screening
seed: {seed}
stages:
  data_quality: {{}}
  baselines:
    adaptive_covariates: [Fe2O3, Al2O3, CaO, K2O, som_pct]
"""


def write_region(folder: str | Path, *, seed: int = DEFAULT_SEED, n_samples: int = 600,
                 region: str = "background_demo") -> dict[str, Path]:
    """Write ``samples.csv``, the truth tables and a parameter file into ``folder``.

    Parameters
    ----------
    folder : target folder (created if missing).
    seed, n_samples : passed to :func:`generate`.
    region : region id written into the parameter file.

    Returns
    -------
    dict: samples, truth_background, truth_contaminated, params -> path written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g = generate(seed, n_samples=n_samples)
    table = g["samples"].merge(g["concentrations"].reset_index(), on="sample_id")
    paths = {"samples": folder / "samples.csv", "truth_background": folder / "truth_background.csv",
             "truth_contaminated": folder / "truth_contaminated.csv", "params": folder / f"{region}.yml"}
    table.to_csv(paths["samples"], index=False)
    g["background_true"].round(5).to_csv(paths["truth_background"])
    g["contaminated"].to_csv(paths["truth_contaminated"])
    paths["params"].write_text(_PARAMS.format(seed=seed, n=n_samples, region=region,
                                              samples=paths["samples"].resolve()), encoding="utf-8")
    return paths
