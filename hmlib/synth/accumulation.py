"""Seeded demo region for stage ``accumulation``: an industrial district with two surveys.

The region is an 8 km x 8 km square in local coordinates (metres) with

* two point sources (:data:`SOURCES`): an old Pb-Zn smelter (stack 40 m, active 1970-2040)
  and a coal-fired power plant (stack 120 m, active 1985-2040), emissions in kg/yr per metal
  (illustrative numbers chosen for the demo, not an inventory);
* a wind rose with prevailing south-westerly winds (:data:`WIND_ROSE`, 8 sectors, class D);
* land uses: residential (a town of radius 1.2 km around (2500, 5500)), forest (north-east,
  x > 4500 and y > 6300), grassland (a river band y < 1200), cultivated elsewhere;
* covariates: soil pH (a smooth field, 5.0-7.5) and the distance to a main road
  (the line y = 0.55 x + 800 m), ``road_dist_m``;
* 150 sites sampled in two surveys (2000 and 2015), with the same ``site_id``.

True relationships (the generator uses the package's own process model,
:func:`hmlib.accumulation.build_flux_model`, with the options of :func:`demo_options`, which
match ``params/industrial_demo.yml``):

.. math::

    C_{2000} = B \\cdot \\varepsilon_B + \\text{30 years of the process model from } B
    \\text{ (1970-1999)}

    M\\,\\frac{dC}{dt} = I_{proc} - k\\,C + b(d_{road}), \\qquad
    b_m(d) = a_m\\, e^{-d / 400\\,\\mathrm{m}}

between 2000 and 2015, where :math:`B` is a background per metal (geometric means Cd 0.4,
Cu 22, Pb 40, Zn 85 mg/kg) times a smooth log-normal field (sdlog 0.25), and :math:`b` is a
**traffic input that the process model does not contain** (the known flux bias the ML
calibration should learn): :math:`a` = Cd 2, Cu 60, Pb 150, Zn 400 mg/m2/yr at the road.
Both surveys carry multiplicative log-normal measurement noise (sdlog 0.03). The true bias per
site is written to ``truth_bias.csv``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["METALS", "SOURCES", "WIND_ROSE", "BIAS_AT_ROAD_MG_M2_YR", "BIAS_LENGTH_M", "demo_options",
           "generate", "write_region"]

DEFAULT_SEED = 20240901
METALS = ["Cd", "Cu", "Pb", "Zn"]
EXTENT_M = 8000.0
SURVEYS = (2000, 2015)

#: point sources (illustrative emissions, kg/yr)
SOURCES = pd.DataFrame({
    "source_id": ["smelter", "power_plant"], "x": [3000.0, 6000.0], "y": [4200.0, 2200.0],
    "stack_height_m": [40.0, 120.0], "Cd_kg_yr": [1000.0, 200.0], "Cu_kg_yr": [10000.0, 2000.0],
    "Pb_kg_yr": [40000.0, 5000.0], "Zn_kg_yr": [60000.0, 8000.0], "start_year": [1970, 1985],
    "end_year": [2040, 2040]})

#: wind rose: direction the wind blows from, speed, stability, frequency (prevailing SW)
WIND_ROSE = pd.DataFrame({"direction_deg": [0, 45, 90, 135, 180, 225, 270, 315],
                          "speed_m_s": [3.5, 3.0, 3.0, 3.5, 4.5, 5.5, 5.0, 4.0], "stability": "D",
                          "frequency": [0.08, 0.06, 0.06, 0.08, 0.16, 0.26, 0.18, 0.12]})

#: known flux bias: traffic input at the road (mg/m2/yr), decaying with distance
BIAS_AT_ROAD_MG_M2_YR = {"Cd": 2.0, "Cu": 60.0, "Pb": 150.0, "Zn": 400.0}
BIAS_LENGTH_M = 400.0
BACKGROUND_MG_KG = {"Cd": 0.4, "Cu": 22.0, "Pb": 40.0, "Zn": 85.0}


def demo_options():
    """The stage options used by the generator (same values as ``params/industrial_demo.yml``)."""
    from hmlib.stages.accumulation import Options

    return Options(background_deposition_g_ha_yr={"Cd": 2.0, "Cu": 30.0, "Pb": 40.0, "Zn": 150.0},
                               rain_fraction=0.08)


def _land_use(x, y):
    lu = np.full(x.shape, "cultivated", dtype=object)
    lu[y < 1200] = "grassland"
    lu[(x > 4500) & (y > 6300)] = "forest"
    lu[np.hypot(x - 2500, y - 5500) < 1200] = "residential"
    return lu


def _road_distance(x, y):
    # line y = 0.55 x + 800  ->  0.55 x - y + 800 = 0
    return np.abs(0.55 * x - y + 800.0) / np.hypot(0.55, 1.0)


def _fields(seed):
    """Smooth fields as functions of coordinates (fixed by the seed)."""
    rng = np.random.default_rng([seed, 1])
    params = [(rng.uniform(0, EXTENT_M, 10), rng.uniform(0, EXTENT_M, 10), rng.normal(0, 1, 10)) for _ in range(5)]
    ref = np.random.default_rng([seed, 2]).uniform(0, EXTENT_M, (4000, 2))

    def field(k, x, y, scale=1800.0):
        cx, cy, w = params[k]
        def raw(xx, yy):
            return sum(w[i] * np.exp(-((xx - cx[i]) ** 2 + (yy - cy[i]) ** 2) / (2 * scale ** 2)) for i in range(10))
        r = raw(ref[:, 0], ref[:, 1])
        return (raw(x, y) - r.mean()) / (r.std() + 1e-12)
    return field


def generate(seed: int = DEFAULT_SEED, *, n_sites: int = 150, cell_m: float = 200.0) -> dict[str, pd.DataFrame]:
    """Generate the demo region (see the module docstring for the true model).

    Returns
    -------
    dict with ``samples`` (two rows per site), ``grid``, ``point_sources``, ``wind_rose`` and
    ``truth_bias`` (site_id, metal, bias_mg_m2_yr).
    """
    from hmlib.accumulation import build_flux_model, run_model

    rng = np.random.default_rng(seed)
    field = _fields(seed)
    opts = demo_options()
    xs = rng.uniform(200, EXTENT_M - 200, n_sites)
    ys = rng.uniform(200, EXTENT_M - 200, n_sites)
    lu = _land_use(xs, ys)
    ph = np.clip(6.3 + 0.6 * field(0, xs, ys), 5.0, 7.5)
    road = _road_distance(xs, ys)
    # background: smooth log-normal field per metal
    bg = np.column_stack([BACKGROUND_MG_KG[m] * np.exp(0.25 * field(1 + j, xs, ys)) for j, m in enumerate(METALS)])
    model = build_flux_model(x_m=xs, y_m=ys, land_use=lu, metals=METALS, options=opts, sources=SOURCES,
                             wind_rose=WIND_ROSE)
    # 1970-1999: process model from the background
    c2000 = run_model(model, initial_mg_kg=bg, scenario={}, n_years=30, start_year=1970).concentration_mg_kg[:, :, -1]
    # 2000-2014 (15 annual steps to 2015): process model + traffic bias
    bias = np.column_stack([BIAS_AT_ROAD_MG_M2_YR[m] * np.exp(-road / BIAS_LENGTH_M) for m in METALS])
    c2015 = run_model(model, initial_mg_kg=c2000, scenario={}, n_years=SURVEYS[1] - SURVEYS[0], start_year=SURVEYS[0],
                      correction_mg_m2_yr=bias).concentration_mg_kg[:, :, -1]
    noise = lambda shape: np.exp(rng.normal(0, 0.03, shape))  # noqa: E731
    obs = {SURVEYS[0]: c2000 * noise(c2000.shape), SURVEYS[1]: c2015 * noise(c2015.shape)}
    site = np.array([f"S{i + 1:03d}" for i in range(n_sites)])
    rows = []
    for yr, c in obs.items():
        df = pd.DataFrame({"sample_id": [f"{s}_{yr}" for s in site], "site_id": site, "survey_year": yr,
                           "x": np.round(xs, 1), "y": np.round(ys, 1)})
        for j, m in enumerate(METALS):
            df[m] = np.round(c[:, j], 4)
        df["land_use"] = lu
        df["ph"] = np.round(ph, 2)
        df["road_dist_m"] = np.round(road, 1)
        rows.append(df)
    samples = pd.concat(rows, ignore_index=True)
    # grid
    g = np.arange(cell_m / 2, EXTENT_M, cell_m)
    gx, gy = np.meshgrid(g, g)
    gx, gy = gx.ravel(), gy.ravel()
    grid = pd.DataFrame({"cell_id": [f"C{i + 1:05d}" for i in range(gx.size)], "x": gx, "y": gy,
                         "land_use": _land_use(gx, gy), "ph": np.round(np.clip(6.3 + 0.6 * field(0, gx, gy), 5, 7.5), 2),
                         "road_dist_m": np.round(_road_distance(gx, gy), 1)})
    truth = pd.DataFrame({"site_id": np.repeat(site, len(METALS)), "metal": METALS * n_sites,
                          "bias_mg_m2_yr": bias.ravel()})
    return {"samples": samples, "grid": grid, "point_sources": SOURCES.copy(), "wind_rose": WIND_ROSE.copy(),
            "truth_bias": truth}


README = """# industrial_demo: generated data (not measurements)

Every file in this folder was generated by `hmlib.synth.accumulation.write_region(seed={seed})`
(module `hmlib/synth/accumulation.py`), which draws all random numbers from
`numpy.random.default_rng({seed})` (and seeded sub-generators). The data are synthetic: an 8 km x 8 km
industrial district (local coordinates in metres) with a Pb-Zn smelter and a power plant
(`point_sources.csv`), a south-westerly wind rose (`wind_rose.csv`), four land uses, and 150 soil
sites sampled twice (2000 and 2015, same `site_id`). Concentrations follow the stage's own process
model (Gaussian-plume deposition, agricultural inputs, leaching, runoff, erosion, crop offtake)
with the options of `hmlib.synth.accumulation.demo_options()` (the same values as
`params/industrial_demo.yml`), **plus a traffic input along a main road that the process model
does not contain**: a known flux bias b = a exp(-d_road / 400 m) with a = Cd 2, Cu 60, Pb 150,
Zn 400 mg/m2/yr. The ML calibration of stage `accumulation` should learn it; the true bias per
site is in `truth_bias.csv`. Measurement noise: log-normal, sdlog 0.03. See the module docstring.

Files:

- `samples.csv`: 300 rows; sample_id, site_id, survey_year, x, y (m), Cd Cu Pb Zn (mg/kg),
  land_use, ph, road_dist_m.
- `grid.csv`: 200 m cells; cell_id, x, y, land_use, ph, road_dist_m.
- `point_sources.csv`: source_id, x, y, stack_height_m, <metal>_kg_yr, start_year, end_year.
- `wind_rose.csv`: direction_deg (from), speed_m_s, stability, frequency.
- `truth_bias.csv`: site_id, metal, bias_mg_m2_yr (the true flux not in the process model).

Regenerate with:

    .venv/bin/python -c "from hmlib.synth.accumulation import write_region; write_region('data/industrial_demo')"
"""


def write_region(folder: str | Path = "data/industrial_demo", *, seed: int = DEFAULT_SEED, **kwargs) -> dict[str, Path]:
    """Write the demo region's CSV files and README into ``folder``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tabs = generate(seed, **kwargs)
    out = {}
    for name, df in tabs.items():
        p = folder / f"{name}.csv"
        df.to_csv(p, index=False)
        out[name] = p
    (folder / "README.md").write_text(README.format(seed=seed), encoding="utf-8")
    out["README"] = folder / "README.md"
    return out
