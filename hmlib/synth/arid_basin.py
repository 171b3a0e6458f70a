"""Seeded generator of a demo arid-basin region: a multispectral image and soil and water samples.

The region imitates an arid inland basin such as the Tarim (Zhao et al. 2026): a braided river
crossing a desert, irrigated oasis cropland along the river and salt crusts away from it. Every
quantity is generated from a seed, so the truth is known and the methods can be checked
against it.

Landscape (pixel grid ``rows x cols``, ``pixel_m`` metres, UTM zone 44N, EPSG:32644)
---------------------------------------------------------------------------------------
* ``S``, ``G_salt``, ``G_veg``, ``G_turb``, ``G_elev``: independent smooth Gaussian random fields
  (white noise smoothed by a Gaussian kernel of ``corr_px`` pixels), each standardised to mean 0
  and standard deviation 1.
* River: centre line :math:`r_c(c) = 0.5\\,rows + 0.18\\,rows\\,\\sin(2\\pi \\cdot 1.3\\,c/cols + \\phi)`,
  3 pixels wide: land cover ``water`` (code 4).
* ``d``: distance to the nearest river pixel (m). Moisture :math:`M = e^{-d/300}`.
* Vegetation fraction :math:`V = e^{-d/900}\\,\\mathrm{logistic}(G_{veg} + 1)`; land cover
  ``oasis`` (code 2) where :math:`V > 0.3`.
* Salt crust ``salt`` :math:`= 1` where :math:`G_{salt} > 1` and :math:`d > 1500` m: land cover
  ``salt_crust`` (code 3). Everything else is ``desert`` (code 1).
* Elevation (m): :math:`1050 - 0.08\\,s + 15\\,G_{elev}`, with :math:`s` the distance (m) south of the top edge.

True surface reflectance of land pixels (0-1)::

    blue  = 0.11 + 0.025 S - 0.02 M - 0.03 V + 0.08 salt
    green = 0.14 + 0.030 S - 0.02 M + 0.00 V + 0.09 salt
    red   = 0.18 + 0.035 S - 0.03 M - 0.08 V + 0.09 salt
    nir   = 0.24 + 0.035 S - 0.03 M + 0.25 V + 0.07 salt

and of water pixels, with turbidity :math:`T = \\mathrm{logistic}(G_{turb})`::

    blue = 0.07 + 0.03 T;  green = 0.08 + 0.05 T;  red = 0.05 + 0.07 T;  nir = 0.02 + 0.04 T

The observed image adds independent sensor noise :math:`N(0, 0.006^2)` to every pixel and
band; cloud blobs (about 3 % of the scene) are bright (0.45-0.55 in every band) and flagged
in the cloud mask; the last ``nodata_cols`` columns are outside the swath (no-data -9999).

Concentrations: stated functions of the true reflectance of the sample's pixel
--------------------------------------------------------------------------------
With :math:`\\mathrm{NDVI} = (nir - red)/(nir + red)` and a multiplicative log-normal error
:math:`e^{\\varepsilon}` (soil :math:`\\varepsilon \\sim N(0, 0.08^2)`, water
:math:`N(0, 0.10^2)`), independent per sample and metal:

* soil (mg/kg): ``As = 5 + 90 blue``; ``Cd = 0.04 + 3.0 green^2 + 0.10 max(NDVI, 0)``;
  ``Pb = 12 + 30 nir``; ``Zn = 40 + 120 red``;
* water (ug/L): ``As = 1 + 40 red``; ``Cd = 0.02 + 1.5 green``; ``Pb = 0.3 + 20 nir``;
  ``Zn = 5 + 150 blue``.

So in soil As is driven by the blue band, Cd by green (and vegetation through NDVI), Pb by the
near infrared and Zn by red, as the band-metal associations reported by Zhao et al. (2026,
Fig. 4) suggest. The sample table also carries covariates for the ML driver stage: land cover,
distance to the river (m), elevation (m) and NDVI of the true reflectance.

Known truth for the models (:data:`BAND_TRUTH`, :data:`COVARIATE_TRUTH`, written as
``truth_bands.csv`` and ``truth_covariates.csv``)
---------------------------------------------------------------------------------------------
* each metal and medium has one generating band (above) and a log-normal error of stated sd;
* land cover, distance to the river and NDVI enter every soil concentration through the
  reflectance (moisture, vegetation and salt terms); elevation enters none: it is a trend to the
  south plus an independent random field. The soil-brightness field ``S``, which no covariate
  measures, carries most of the reflectance variation, so covariates alone predict the soil
  concentrations only weakly.

References
----------
Zhao, Y., Mu, Y., Luo, P. et al. (2026) Integrating multi-spectral remote sensing and machine
learning for quantifying and mapping heavy metal contamination in the Tarim River Basin, China.
Scientific Reports. https://doi.org/10.1038/s41598-026-38887-9
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["generate", "write_region", "write_truth", "LANDCOVER_CODES", "SOIL_FUNCTIONS", "WATER_FUNCTIONS",
           "DEFAULT_SEED", "BAND_TRUTH", "COVARIATE_TRUTH", "NOISE_SDLOG"]

DEFAULT_SEED = 20240611
LANDCOVER_CODES = {1: "desert", 2: "oasis", 3: "salt_crust", 4: "water"}
BANDS = ("blue", "green", "red", "nir")
NODATA = -9999.0
CRS = "EPSG:32644"


def _ndvi(b):
    return (b["nir"] - b["red"]) / (b["nir"] + b["red"])


SOIL_FUNCTIONS = {  # mg/kg, of true reflectance b (dict of arrays)
    "As": lambda b: 5.0 + 90.0 * b["blue"],
    "Cd": lambda b: 0.04 + 3.0 * b["green"] ** 2 + 0.10 * np.maximum(_ndvi(b), 0.0),
    "Pb": lambda b: 12.0 + 30.0 * b["nir"],
    "Zn": lambda b: 40.0 + 120.0 * b["red"],
}
WATER_FUNCTIONS = {  # ug/L
    "As": lambda b: 1.0 + 40.0 * b["red"],
    "Cd": lambda b: 0.02 + 1.5 * b["green"],
    "Pb": lambda b: 0.3 + 20.0 * b["nir"],
    "Zn": lambda b: 5.0 + 150.0 * b["blue"],
}


#: sd of the multiplicative log-normal error of the concentrations, per medium
NOISE_SDLOG = {"soil": 0.08, "water": 0.10}

#: the band each concentration is generated from (SOIL_FUNCTIONS, WATER_FUNCTIONS)
BAND_TRUTH = pd.DataFrame([
    ("soil", "As", "blue", "As = 5 + 90 blue (mg/kg)"),
    ("soil", "Cd", "green", "Cd = 0.04 + 3 green^2 + 0.1 max(NDVI, 0) (mg/kg)"),
    ("soil", "Pb", "nir", "Pb = 12 + 30 NIR (mg/kg)"),
    ("soil", "Zn", "red", "Zn = 40 + 120 red (mg/kg)"),
    ("water", "As", "red", "As = 1 + 40 red (ug/L)"),
    ("water", "Cd", "green", "Cd = 0.02 + 1.5 green (ug/L)"),
    ("water", "Pb", "nir", "Pb = 0.3 + 20 NIR (ug/L)"),
    ("water", "Zn", "blue", "Zn = 5 + 150 blue (ug/L)"),
], columns=["medium", "metal", "band", "relationship"]).assign(
    noise_sdlog=lambda d: d["medium"].map(NOISE_SDLOG))

#: whether each sample covariate enters the generated soil concentrations
COVARIATE_TRUTH = pd.DataFrame([
    ("landcover", True, "oasis (vegetation) and salt-crust classes shift every band"),
    ("dist_river_m", True, "sets moisture and vegetation, which lower blue, green and red and raise NIR"),
    ("ndvi", True, "computed from the true red and NIR reflectance the concentrations are generated from"),
    ("elevation_m", False, "a southward trend plus an independent random field; enters no concentration"),
], columns=["covariate", "in_generator", "pathway"])


def _field(rng: np.random.Generator, shape, corr_px: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.standard_normal(shape), sigma=corr_px, mode="reflect")
    return (f - f.mean()) / f.std()


def _pixel_to_map(t, col, row):
    return t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f


def _logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


def generate(seed: int = DEFAULT_SEED, *, rows: int = 120, cols: int = 150, pixel_m: float = 60.0,
             n_soil: int = 80, n_water: int = 30, corr_px: float = 6.0, nodata_cols: int = 4,
             origin_xy: tuple[float, float] = (600_000.0, 4_560_000.0)) -> dict:
    """Generate the arid-basin demo region (see the module docstring for every relationship).

    Parameters
    ----------
    seed : seed of every random draw.
    rows, cols, pixel_m : raster size and pixel size (m).
    n_soil, n_water : numbers of soil and water samples.
    corr_px : smoothing length of the random fields (pixels).
    nodata_cols : columns at the right edge outside the swath (no-data).
    origin_xy : map coordinates of the upper-left corner (EPSG:32644, m).

    Returns
    -------
    dict with ``samples`` (DataFrame: sample_id, medium, x, y, landcover, dist_river_m,
    elevation_m, ndvi, As, Cd, Pb, Zn; soil in mg/kg, water in ug/L), ``grid`` (DataFrame of
    every second pixel centre with the covariates), ``image`` (float32 array (4, rows, cols),
    observed reflectance with clouds and no-data -9999), ``true_bands`` (float64, noise- and
    cloud-free), ``cloud`` (uint8 mask), ``landcover`` (uint8 codes, :data:`LANDCOVER_CODES`),
    ``transform`` (affine), ``crs`` and ``truth`` (DataFrame of the noise-free concentrations
    of each sample).
    """
    from affine import Affine
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    if rows < 20 or cols < 20:
        raise ValueError(f"rows and cols must be >= 20, got {rows} x {cols}")
    if n_soil < 1 or n_water < 1:
        raise ValueError(f"n_soil and n_water must be >= 1, got {n_soil}, {n_water}")
    rng = np.random.default_rng(seed)
    shape = (rows, cols)
    S, G_salt, G_veg, G_turb, G_elev = (_field(rng, shape, corr_px) for _ in range(5))
    rr, cc = np.mgrid[0:rows, 0:cols]
    phase = rng.uniform(0, 2 * np.pi)
    centre = 0.5 * rows + 0.18 * rows * np.sin(2 * np.pi * 1.3 * cc / cols + phase)
    water = np.abs(rr - centre) <= 1.5
    d = distance_transform_edt(~water) * pixel_m
    M = np.exp(-d / 300.0)
    V = np.exp(-d / 900.0) * _logistic(G_veg + 1.0)
    V[water] = 0.0
    salt = ((G_salt > 1.0) & (d > 1500.0)).astype(float)
    lc = np.ones(shape, dtype=np.uint8)
    lc[V > 0.3] = 2
    lc[salt > 0] = 3
    lc[water] = 4
    T = _logistic(G_turb)
    true = {
        "blue": 0.11 + 0.025 * S - 0.02 * M - 0.03 * V + 0.08 * salt,
        "green": 0.14 + 0.030 * S - 0.02 * M + 0.00 * V + 0.09 * salt,
        "red": 0.18 + 0.035 * S - 0.03 * M - 0.08 * V + 0.09 * salt,
        "nir": 0.24 + 0.035 * S - 0.03 * M + 0.25 * V + 0.07 * salt,
    }
    wat = {"blue": 0.07 + 0.03 * T, "green": 0.08 + 0.05 * T, "red": 0.05 + 0.07 * T, "nir": 0.02 + 0.04 * T}
    for k in BANDS:
        true[k] = np.where(water, wat[k], true[k])
    true_arr = np.stack([true[k] for k in BANDS])
    image = true_arr + rng.normal(0.0, 0.006, size=true_arr.shape)
    cloud_field = gaussian_filter(rng.standard_normal(shape), sigma=corr_px / 2)
    cloud = cloud_field > np.quantile(cloud_field, 0.97)
    image[:, cloud] = rng.uniform(0.45, 0.55, size=(4, int(cloud.sum())))
    nod = np.zeros(shape, dtype=bool)
    if nodata_cols:
        nod[:, cols - nodata_cols:] = True
    image[:, nod] = NODATA
    image = image.astype(np.float32)
    elev = 1050.0 - 0.08 * (rr * pixel_m) + 15.0 * G_elev
    ndvi = (true["nir"] - true["red"]) / (true["nir"] + true["red"])
    transform = Affine(pixel_m, 0.0, origin_xy[0], 0.0, -pixel_m, origin_xy[1])

    # sample points: uniform inside randomly chosen pixels (away from the edges and the no-data strip)
    inner = np.zeros(shape, dtype=bool)
    inner[2:rows - 2, 2:cols - 2 - nodata_cols] = True
    land_px = np.flatnonzero((~water & inner).ravel())
    water_px = np.flatnonzero((water & inner).ravel())
    if len(water_px) < n_water or len(land_px) < n_soil:
        raise ValueError("raster too small for the requested number of samples")
    recs = []
    truth = []
    for medium, pool, n, funcs, sd in (("soil", land_px, n_soil, SOIL_FUNCTIONS, NOISE_SDLOG["soil"]),
                                       ("water", water_px, n_water, WATER_FUNCTIONS, NOISE_SDLOG["water"])):
        pick = rng.choice(pool, size=n, replace=False)
        r, c = np.unravel_index(pick, shape)
        fr, fc = rng.uniform(0.05, 0.95, size=n), rng.uniform(0.05, 0.95, size=n)
        x, y = _pixel_to_map(transform, c + fc, r + fr)
        bvals = {k: true[k][r, c] for k in BANDS}
        for i in range(n):
            sid = f"{'S' if medium == 'soil' else 'W'}{i + 1:03d}"
            rec = {"sample_id": sid, "medium": medium, "x": round(float(x[i]), 1), "y": round(float(y[i]), 1),
                   "landcover": LANDCOVER_CODES[int(lc[r[i], c[i]])],
                   "dist_river_m": round(float(d[r[i], c[i]]), 1), "elevation_m": round(float(elev[r[i], c[i]]), 1),
                   "ndvi": round(float(ndvi[r[i], c[i]]), 4)}
            t = {"sample_id": sid, "medium": medium}
            for metal, f in funcs.items():
                mu = float(f({k: v[i] for k, v in bvals.items()}))
                t[metal] = mu
                rec[metal] = float(f"{mu * np.exp(rng.normal(0.0, sd)):.4g}")
            recs.append(rec)
            truth.append(t)
    samples = pd.DataFrame(recs)
    gr, gc = np.mgrid[0:rows:2, 0:cols - nodata_cols:2]
    gx, gy = _pixel_to_map(transform, gc + 0.5, gr + 0.5)
    grid = pd.DataFrame({"x": gx.ravel(), "y": gy.ravel(),
                         "landcover": [LANDCOVER_CODES[int(v)] for v in lc[gr, gc].ravel()],
                         "dist_river_m": np.round(d[gr, gc].ravel(), 1),
                         "elevation_m": np.round(elev[gr, gc].ravel(), 1),
                         "ndvi": np.round(ndvi[gr, gc].ravel(), 4)})
    return {"samples": samples, "grid": grid, "image": image, "true_bands": true_arr, "cloud": cloud.astype(np.uint8),
            "landcover": lc, "transform": transform, "crs": CRS, "truth": pd.DataFrame(truth)}


_README = """# arid_demo: generated arid-basin demo region

**These data are generated, not measured.** They were written by
`hmlib.synth.arid_basin.write_region(seed={seed})` (hmlib {version}); regenerate them with

```
.venv/bin/python -c "from hmlib.synth.arid_basin import write_region; write_region('data/arid_demo')"
```

The generator (see the docstring of `hmlib/synth/arid_basin.py` for every function and
constant) imitates an arid inland river basin such as the Tarim basin described by Zhao et al.
(2026, https://doi.org/10.1038/s41598-026-38887-9): a river crossing a desert, irrigated oasis
cropland along it and salt crusts away from it.

Files
- `arid_image.tif`: 4-band float32 GeoTIFF (blue, green, red, NIR surface reflectance, 0-1),
  {rows} x {cols} pixels of {pixel_m:g} m, EPSG:32644 (UTM 44N); sensor noise N(0, 0.006^2);
  bright cloud blobs; the last {nodata_cols} columns are no-data (-9999).
- `arid_cloud.tif`: uint8 cloud mask (1 = cloud) on the same grid.
- `arid_landcover.tif`: uint8 land cover on the same grid: 1 desert, 2 oasis, 3 salt crust, 4 water.
- `arid_samples.csv`: {n_soil} soil samples (mg/kg) and {n_water} water samples (ug/L) of As, Cd,
  Pb, Zn with x, y (EPSG:32644, m), medium, and covariates landcover, dist_river_m,
  elevation_m, ndvi. Concentrations are stated functions of the true (noise- and cloud-free)
  reflectance of the sample's pixel times a log-normal error, e.g. soil As = 5 + 90 blue,
  soil Cd = 0.04 + 3 green^2 + 0.1 max(NDVI, 0) (mg/kg); water As = 1 + 40 red (ug/L).
- `arid_grid.csv`: every second pixel centre (x, y) with the same covariates, for maps.
- `truth_bands.csv`: the band each metal is generated from in each medium, the relationship and the sd of
  the log-normal error; `truth_covariates.csv`: whether each covariate enters the soil concentrations.
  The report compares what the models recover with these.
"""


def write_truth(out_dir: str | Path = "data/arid_demo") -> dict[str, Path]:
    """Write the known-truth tables (:data:`BAND_TRUTH`, :data:`COVARIATE_TRUTH`) into ``out_dir``.

    Parameters
    ----------
    out_dir : the region's data folder.

    Returns
    -------
    dict name -> path (``truth_bands``, ``truth_covariates``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"truth_bands": out / "truth_bands.csv", "truth_covariates": out / "truth_covariates.csv"}
    BAND_TRUTH.to_csv(paths["truth_bands"], index=False)
    COVARIATE_TRUTH.to_csv(paths["truth_covariates"], index=False)
    return paths


def write_region(out_dir: str | Path = "data/arid_demo", *, seed: int = DEFAULT_SEED, **kwargs) -> dict[str, Path]:
    """Write the demo region's files (image, masks, samples, grid, README) into ``out_dir``.

    Returns a mapping name -> path of the files written. ``kwargs`` go to :func:`generate`.
    """
    import rasterio

    from .. import __version__

    g = generate(seed, **kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, cols = g["landcover"].shape
    prof = dict(driver="GTiff", height=rows, width=cols, crs=g["crs"], transform=g["transform"], compress="deflate")
    paths = {"image": out / "arid_image.tif", "cloud": out / "arid_cloud.tif", "landcover": out / "arid_landcover.tif",
             "samples": out / "arid_samples.csv", "grid": out / "arid_grid.csv", "readme": out / "README.md"}
    with rasterio.open(paths["image"], "w", count=4, dtype="float32", nodata=NODATA, **prof) as dst:
        dst.write(g["image"])
        for i, name in enumerate(BANDS, start=1):
            dst.set_band_description(i, name)
    for key in ("cloud", "landcover"):
        with rasterio.open(paths[key], "w", count=1, dtype="uint8", **prof) as dst:
            dst.write(g[key].astype(np.uint8), 1)
    g["samples"].to_csv(paths["samples"], index=False)
    g["grid"].to_csv(paths["grid"], index=False)
    defaults = dict(rows=rows, cols=cols, pixel_m=kwargs.get("pixel_m", 60.0),
                    nodata_cols=kwargs.get("nodata_cols", 4),
                    n_soil=int((g["samples"]["medium"] == "soil").sum()),
                    n_water=int((g["samples"]["medium"] == "water").sum()))
    paths["readme"].write_text(_README.format(seed=seed, version=__version__, **defaults), encoding="utf-8")
    paths.update(write_truth(out))
    return paths
