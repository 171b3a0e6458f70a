"""Seeded survey-scale region: ``n`` topsoil samples with 7 metals, land use and rock type, and a grid.

Used to measure how the pipeline scales (``benchmarks/scale.py``): any number of samples and grid
cells, with the structure of a regional geochemical survey such as the Swiss Jura data (Atteia et
al. 1994) and the 3,916-sample survey of the adaptive-background study (Sun et al. 2025). Every
number is a choice made for this generator; it describes no real place.

The generative model
--------------------
Area: a square of side ``L = 2 sqrt(n)`` km (about one sample per 4 km2), local coordinates in km.

Rock type (5 classes) and land use (4 classes) are Voronoi cells of seeded random centres (rock:
``max(5, n/200)`` centres; land use: ``max(8, n/100)``), so both are spatially contiguous and known
at every grid cell.

Natural (geogenic) log background of metal ``m`` at location ``s`` on rock ``r``::

    ln B_m(s) = ln b_m + rho_m[r] + 0.35 Z_1(s) + 0.15 Z_m(s)

``b_m``: :data:`BACKGROUND_MG_KG`; ``rho_m[r]``: rock effects in :data:`ROCK_EFFECT` (Co, Cr, Ni
follow the parent rock most); ``Z_1`` a shared and ``Z_m`` a metal-specific stationary Gaussian
field with unit variance and exponential-like covariance of range ``L/8``, drawn by random Fourier
features (400 features; Rahimi and Recht 2007) so that any number of points costs O(n).

Anthropogenic input (Cd, Cu, Pb, Zn only) around ``max(3, n/500)`` point sources ``k`` with
strength ``a_k ~ LN(0, 0.5)`` and land-use factor ``u`` (tillage 1.5, meadow and pasture 1.0,
forest 0.4)::

    E_m(s) = e_m u(s) sum_k a_k exp(-d_k(s) / (L/20))

Observed concentration: ``C_m = (B_m + E_m) LN(0, 0.10)`` (analytical noise), in mg/kg.

The truth (``B_m``, ``E_m`` per sample) is returned beside the samples.

References
----------
Atteia, O., Dubois, J.-P., Webster, R. (1994) Geostatistical analysis of soil contamination in the
Swiss Jura. Environmental Pollution 86:315-327. doi:10.1016/0269-7491(94)90172-4
Rahimi, A., Recht, B. (2007) Random features for large-scale kernel machines. NIPS 20.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["METALS", "BACKGROUND_MG_KG", "ROCK_EFFECT", "generate", "write_region"]

METALS = ["Cd", "Co", "Cr", "Cu", "Ni", "Pb", "Zn"]
ROCKS = ["Argovian", "Kimmeridgian", "Sequanian", "Portlandian", "Quaternary"]
LANDUSES = ["Forest", "Pasture", "Meadow", "Tillage"]
BACKGROUND_MG_KG = {"Cd": 0.8, "Co": 9.0, "Cr": 32.0, "Cu": 14.0, "Ni": 18.0, "Pb": 40.0, "Zn": 65.0}
ANTHROPOGENIC_MG_KG = {"Cd": 0.8, "Co": 0.0, "Cr": 0.0, "Cu": 20.0, "Ni": 0.0, "Pb": 35.0, "Zn": 45.0}
ROCK_EFFECT = {  # log-scale shift per rock, in ROCKS order
    "Cd": [0.0, 0.25, 0.1, 0.2, -0.2], "Co": [0.0, 0.35, 0.2, 0.1, -0.4], "Cr": [0.0, 0.3, 0.2, 0.1, -0.35],
    "Cu": [0.0, 0.1, 0.05, 0.05, -0.1], "Ni": [0.0, 0.4, 0.25, 0.1, -0.45], "Pb": [0.0, 0.05, 0.05, 0.0, -0.05],
    "Zn": [0.0, 0.15, 0.1, 0.05, -0.15]}
LANDUSE_FACTOR = {"Forest": 0.4, "Pasture": 1.0, "Meadow": 1.0, "Tillage": 1.5}


def _field(rng: np.random.Generator, xy: list[np.ndarray], length: float, n_features: int = 400):
    """One draw of a unit-variance stationary field at each point set in ``xy`` (random Fourier features)."""
    w = rng.standard_cauchy((n_features, 2)) / length  # Cauchy frequencies: exponential-type covariance
    b = rng.uniform(0, 2 * np.pi, n_features)
    out = []
    for pts in xy:
        vals = np.empty(len(pts))
        for i in range(0, len(pts), 200_000):  # chunks keep memory flat for a million cells
            vals[i:i + 200_000] = np.sqrt(2.0 / n_features) * np.cos(pts[i:i + 200_000] @ w.T + b).sum(axis=1)
        out.append(vals)
    return out


def _voronoi(centres: np.ndarray, labels: np.ndarray, pts: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    return labels[cKDTree(centres).query(pts)[1]]


def generate(n_samples: int = 4000, n_grid: int = 100_000, *, seed: int = 20261204) -> dict[str, pd.DataFrame]:
    """Samples, grid and truth of a survey of ``n_samples`` points and about ``n_grid`` grid cells.

    Parameters
    ----------
    n_samples : number of topsoil samples.
    n_grid : approximate number of grid cells (a square lattice covering the area).
    seed : seed of every random draw.

    Returns
    -------
    dict with ``samples`` (sample_id, x_km, y_km, Landuse, Rock, one column per metal in mg/kg),
    ``grid`` (x_km, y_km, Landuse, Rock) and ``truth`` (sample_id, metal, background_mg_kg,
    anthropogenic_mg_kg).
    """
    rng = np.random.default_rng(seed)
    side = 2.0 * np.sqrt(n_samples)
    xy = rng.uniform(0, side, (n_samples, 2))
    k = int(np.ceil(np.sqrt(n_grid)))
    g = (np.arange(k) + 0.5) * side / k
    gx, gy = np.meshgrid(g, g)
    gxy = np.column_stack([gx.ravel(), gy.ravel()])
    n_rock_c, n_lu_c = max(5, n_samples // 200), max(8, n_samples // 100)
    rock_c, lu_c = rng.uniform(0, side, (n_rock_c, 2)), rng.uniform(0, side, (n_lu_c, 2))
    rock_l = np.array(ROCKS)[np.r_[np.arange(5), rng.integers(0, 5, n_rock_c - 5)]]
    lu_l = np.array(LANDUSES)[np.r_[np.arange(4), rng.integers(0, 4, n_lu_c - 4)]]
    rock, grock = _voronoi(rock_c, rock_l, xy), _voronoi(rock_c, rock_l, gxy)
    lu, glu = _voronoi(lu_c, lu_l, xy), _voronoi(lu_c, lu_l, gxy)
    z1 = _field(rng, [xy], side / 8)[0]
    n_src = max(3, n_samples // 500)
    src, strength = rng.uniform(0, side, (n_src, 2)), rng.lognormal(0, 0.5, n_src)
    d = np.sqrt(((xy[:, None, :] - src[None, :, :]) ** 2).sum(-1))
    intensity = (strength * np.exp(-d / (side / 20))).sum(axis=1) * pd.Series(lu).map(LANDUSE_FACTOR).to_numpy()
    rock_idx = pd.Series(rock).map({r: i for i, r in enumerate(ROCKS)}).to_numpy()
    ids = [f"S{i + 1:05d}" for i in range(n_samples)]
    samples = pd.DataFrame({"sample_id": ids, "x_km": xy[:, 0].round(4), "y_km": xy[:, 1].round(4),
                            "Landuse": lu, "Rock": rock})
    truth = []
    for m in METALS:
        zm = _field(rng, [xy], side / 8)[0]
        ln_b = np.log(BACKGROUND_MG_KG[m]) + np.array(ROCK_EFFECT[m])[rock_idx] + 0.35 * z1 + 0.15 * zm
        b = np.exp(ln_b)
        e = ANTHROPOGENIC_MG_KG[m] * intensity
        samples[m] = ((b + e) * rng.lognormal(0, 0.10, n_samples)).round(4)
        truth.append(pd.DataFrame({"sample_id": ids, "metal": m, "background_mg_kg": b, "anthropogenic_mg_kg": e}))
    grid = pd.DataFrame({"x_km": gxy[:, 0].round(4), "y_km": gxy[:, 1].round(4), "Landuse": glu, "Rock": grock})
    return {"samples": samples, "grid": grid, "truth": pd.concat(truth, ignore_index=True)}


def write_region(project: Path, *, n_samples: int, n_grid: int, seed: int = 20261204, region: str | None = None,
                 stages_from: Path | None = None) -> Path:
    """Write ``data/<region>/`` and ``params/<region>.yml`` into ``project``; returns the params path.

    The stages (and their options) are those of ``stages_from`` (default: the Jura params), so the
    generated survey runs the same analyses as the Jura report.
    """
    import yaml

    region = region or f"survey_{n_samples}"
    d = generate(n_samples, n_grid, seed=seed)
    data_dir = project / "data" / region
    data_dir.mkdir(parents=True, exist_ok=True)
    d["samples"].to_csv(data_dir / "samples.csv", index=False)
    d["grid"].to_csv(data_dir / "grid.csv", index=False)
    d["truth"].to_csv(data_dir / "truth.csv", index=False)
    side = 2.0 * np.sqrt(n_samples)
    src = yaml.safe_load(Path(stages_from or Path(__file__).resolve().parents[2] / "params" / "jura.yml").read_text())
    params = {
        "region": {"id": region, "title": f"Generated survey of {n_samples:,} topsoil samples",
                   "description": "Seeded survey-scale test region (hmlib.synth.survey); no real place."},
        "data": {"samples": f"data/{region}/samples.csv", "grid": f"data/{region}/grid.csv",
                 "id_column": "sample_id", "x_column": "x_km", "y_column": "y_km", "crs": "local",
                 "coordinate_unit": "km", "coordinate_bounds": [0.0, 0.0, float(np.ceil(side)), float(np.ceil(side))],
                 "covariates": ["Landuse", "Rock"], "categorical": ["Landuse", "Rock"]},
        "media": {"soil": {"unit": "mg/kg"}},
        "metals": {m: m for m in METALS},
        "non_detects": {"substitution": "half_dl", "imputation": "none"},
        "references": src["references"],
        "seed": seed,
        "stages": src["stages"],
    }
    (project / "params").mkdir(parents=True, exist_ok=True)
    path = project / "params" / f"{region}.yml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path
