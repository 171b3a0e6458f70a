"""Seeded demo region for stage ``mobility``: soils with BCR fractions generated from stated relationships.

The region is a 10 km x 10 km square in local coordinates (km), split into three reporting
districts (west, centre, east thirds by x) used as areas in the scenario summary. Four smooth random fields
:math:`g_1..g_4` (sums of seeded Gaussian bumps, scaled to mean 0 and standard deviation 1)
drive the soil properties; samples add independent noise, the grid does not.

True relationships (all logs natural)
-------------------------------------
* pH :math:`= 6.3 + 0.9\\,g_1 + \\varepsilon` (:math:`\\sigma=0.2`), clipped to [4, 8.5].
* SOC (%) :math:`= 1.8\\,\\exp(0.45\\,g_2 + \\varepsilon)` (:math:`\\sigma=0.15`).
* clay (%) :math:`= 25 + 8\\,g_3 + \\varepsilon` (:math:`\\sigma=2`), clipped to [5, 60].
* CEC (cmol/kg) :math:`= 0.45\\,\\mathrm{clay} + 2.5\\,\\mathrm{SOC} + \\varepsilon` (:math:`\\sigma=1`).
* total (mg/kg) of metal *m*: :math:`B_m\\,\\exp(0.3\\,g_4 + \\varepsilon)\\,(1 + H_m\\,e^{-d^2/(2\\cdot1.5^2)})`
  with :math:`\\sigma=0.25`, background medians :math:`B_m` (:data:`BACKGROUND_MG_KG`) and a
  point-source hotspot of strength :math:`H_m` at distance *d* (km) from (7, 3).
* F1 share :math:`p_1 = \\mathrm{logistic}(a_m + b^{pH}_m(\\mathrm{pH}-6.5)
  + b^{SOC}\\ln(\\mathrm{SOC}/2) + b^{clay}(\\mathrm{clay}-25)/10 + b^{tot}\\ln(C/B_m) + \\varepsilon)`
  with :math:`\\sigma=0.25` and the coefficients of :data:`TRUTH`. **The pH effect is negative
  for the cations Cd, Cu, Pb, Zn and positive for As** (the sign tests recover). The SOC
  effect is positive (dissolved organic carbon complexation, as Qi et al. 2025 report at the
  global scale); it is an assumption of this demo, not a finding.
* F2, F3, F4 split the remainder :math:`1-p_1` by a Dirichlet draw (concentration 40) around
  the metal's mean proportions (:data:`REMAINDER_SPLIT`).
* Measured fractions = total x share x recovery, recovery ~ N(1, 0.04), except for
  :data:`BAD_RECOVERY` sample-metal pairs whose recovery is set to 0.60 or 1.45 so that the
  recovery check has something to report.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["METALS", "BACKGROUND_MG_KG", "TRUTH", "REMAINDER_SPLIT", "BAD_RECOVERY", "true_effects", "generate",
           "write_region"]

METALS = ("Cd", "Cu", "Pb", "Zn", "As")
BACKGROUND_MG_KG = {"Cd": 0.35, "Cu": 22.0, "Pb": 35.0, "Zn": 80.0, "As": 9.0}
HOTSPOT = {"Cd": 3.0, "Cu": 1.5, "Pb": 2.5, "Zn": 2.0, "As": 1.0}
#: logit-scale coefficients of the F1 share: intercept a, pH, SOC, clay, total.
TRUTH = pd.DataFrame({
    "metal": list(METALS),
    "a": [-1.10, -2.90, -2.70, -2.00, -3.40],
    "b_ph": [-0.90, -0.50, -0.60, -0.70, 0.50],
    "b_soc": [0.35] * 5,
    "b_clay": [-0.20] * 5,
    "b_total": [0.30] * 5,
})
#: mean proportions of F2, F3, F4 in the non-F1 remainder.
REMAINDER_SPLIT = {"Cd": (0.35, 0.15, 0.50), "Cu": (0.20, 0.45, 0.35), "Pb": (0.50, 0.20, 0.30),
                   "Zn": (0.30, 0.15, 0.55), "As": (0.30, 0.10, 0.60)}
#: (sample index, metal, recovery) of deliberately bad recoveries.
BAD_RECOVERY = ((3, "Cd", 0.60), (10, "Pb", 1.45), (25, "Zn", 0.60), (40, "Cu", 1.45))
_SOURCE_XY = (7.0, 3.0)


def _fields(rng: np.random.Generator, n_bumps: int = 12):
    """Four smooth fields on [0, 10]^2 as functions of (x, y), standardized on a reference grid."""
    specs = []
    ref = np.stack(np.meshgrid(np.linspace(0, 10, 50), np.linspace(0, 10, 50)), -1).reshape(-1, 2)
    for _ in range(4):
        c = rng.uniform(-1, 11, size=(n_bumps, 2))
        w = rng.normal(size=n_bumps)
        s = rng.uniform(1.5, 4.0, size=n_bumps)
        specs.append((c, w, s))

    def raw(k, xy):
        c, w, s = specs[k]
        d2 = ((xy[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        return (w[None, :] * np.exp(-d2 / (2 * s[None, :] ** 2))).sum(1)

    stats = [(raw(k, ref).mean(), raw(k, ref).std()) for k in range(4)]

    def field(k, xy):
        m, sd = stats[k]
        return (raw(k, xy) - m) / sd

    return field


def _soil(field, xy, rng, noise: bool):
    n = len(xy)
    e = (lambda sd: rng.normal(0, sd, n)) if noise else (lambda sd: np.zeros(n))
    ph = np.clip(6.3 + 0.9 * field(0, xy) + e(0.2), 4.0, 8.5)
    soc = 1.8 * np.exp(0.45 * field(1, xy) + e(0.15))
    clay = np.clip(25 + 8 * field(2, xy) + e(2.0), 5, 60)
    cec = np.clip(0.45 * clay + 2.5 * soc + e(1.0), 1.0, None)
    d = np.hypot(xy[:, 0] - _SOURCE_XY[0], xy[:, 1] - _SOURCE_XY[1])
    g4 = field(3, xy)
    totals = {m: BACKGROUND_MG_KG[m] * np.exp(0.3 * g4 + e(0.25)) * (1 + HOTSPOT[m] * np.exp(-d ** 2 / (2 * 1.5 ** 2)))
              for m in METALS}
    return ph, soc, clay, cec, totals


def true_effects(samples: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """The true average marginal effect of each predictor on the F1 share (percent points per unit).

    With :math:`p = \\mathrm{logistic}(\\eta)`, :math:`\\partial p / \\partial x = p(1-p)\\,
    \\partial\\eta/\\partial x`, and from the generator's linear predictor
    :math:`\\partial\\eta/\\partial \\mathrm{pH} = b^{pH}`,
    :math:`\\partial\\eta/\\partial \\mathrm{SOC} = b^{SOC}/\\mathrm{SOC}`,
    :math:`\\partial\\eta/\\partial \\mathrm{clay} = b^{clay}/10`,
    :math:`\\partial\\eta/\\partial C = b^{tot}/C`; CEC has no effect (0). The effect is averaged
    over the samples with their true shares (100 :math:`p(1-p)` per unit of :math:`\\eta`).

    Parameters
    ----------
    samples : the generated samples (ph, soc_percent, clay_percent, totals per metal).
    shares : true F1 share per sample and metal (``f1_share_percent``).

    Returns
    -------
    DataFrame metal, feature (ph, soc_percent, clay_percent, cec_cmol_kg, total_mg_kg),
    true_logit_coefficient, true_effect_pp_per_unit, true_sign.
    """
    s = samples.set_index("sample_id")
    rows = []
    for t in TRUTH.itertuples():
        p = shares[shares.metal == t.metal].set_index("sample_id")["f1_share_percent"].reindex(s.index).to_numpy() / 100
        w = 100 * p * (1 - p)
        deriv = {"ph": (t.b_ph, np.full(len(s), t.b_ph)),
                 "soc_percent": (t.b_soc, t.b_soc / s["soc_percent"].to_numpy()),
                 "clay_percent": (t.b_clay, np.full(len(s), t.b_clay / 10)),
                 "cec_cmol_kg": (0.0, np.zeros(len(s))),
                 "total_mg_kg": (t.b_total, t.b_total / s[t.metal].to_numpy())}
        for feat, (coef, d) in deriv.items():
            ame = float(np.mean(w * d))
            rows.append({"metal": t.metal, "feature": feat, "true_logit_coefficient": coef,
                         "true_effect_pp_per_unit": ame, "true_sign": int(np.sign(coef))})
    return pd.DataFrame(rows)


def _district(x_km: np.ndarray) -> np.ndarray:
    """Three reporting districts by x: west (< 10/3 km), centre, east (>= 20/3 km)."""
    return np.select([x_km < 10 / 3, x_km < 20 / 3], ["west", "centre"], "east")


def generate(seed: int = 20240611, *, n_samples: int = 200, grid_step_km: float = 0.25) -> dict[str, pd.DataFrame]:
    """Generate the demo region (see the module docstring for the true relationships).

    Parameters
    ----------
    seed : seeds every random draw.
    n_samples : number of soil samples (uniform random locations).
    grid_step_km : spacing of the prediction grid.

    Returns
    -------
    dict with ``samples`` (sample_id, x_km, y_km, district, ph, soc_percent, clay_percent, cec_cmol_kg and
    totals Cd..As in mg/kg), ``fractions`` (long: sample_id, metal, fraction F1-F4, value, unit),
    ``grid`` (x_km, y_km, district, the covariates and ``<metal>_total`` columns, noise-free),
    ``truth`` (:data:`TRUTH`), ``shares`` (true F1 share per sample and metal, percent) and
    ``truth_effects`` (:func:`true_effects`: the true average marginal effects, written to
    ``truth_effects.csv`` for the report's truth-recovery table).
    """
    if n_samples < 50:
        raise ValueError(f"n_samples must be >= 50 (bad-recovery pairs use sample 40), got {n_samples}")
    rng = np.random.default_rng(seed)
    field = _fields(rng)
    xy = rng.uniform(0, 10, size=(n_samples, 2))
    ph, soc, clay, cec, totals = _soil(field, xy, rng, noise=True)
    ids = [f"M{i + 1:03d}" for i in range(n_samples)]
    samples = pd.DataFrame({"sample_id": ids, "x_km": xy[:, 0].round(4), "y_km": xy[:, 1].round(4),
                            "district": _district(xy[:, 0]), "ph": ph.round(2), "soc_percent": soc.round(3), "clay_percent": clay.round(1),
                            "cec_cmol_kg": cec.round(2)})
    for m in METALS:
        samples[m] = totals[m].round(4)
    # use the rounded values so that the stored data reproduce the truth exactly
    ph_r, soc_r, clay_r = samples["ph"].to_numpy(), samples["soc_percent"].to_numpy(), samples["clay_percent"].to_numpy()
    bad = {(i, m): r for i, m, r in BAD_RECOVERY}
    recs, shares = [], []
    for t in TRUTH.itertuples():
        m = t.metal
        tot = samples[m].to_numpy()
        eta = (t.a + t.b_ph * (ph_r - 6.5) + t.b_soc * np.log(soc_r / 2.0) + t.b_clay * (clay_r - 25) / 10
               + t.b_total * np.log(tot / BACKGROUND_MG_KG[m]) + rng.normal(0, 0.25, n_samples))
        p1 = 1.0 / (1.0 + np.exp(-eta))
        rest = rng.dirichlet(40 * np.asarray(REMAINDER_SPLIT[m]), size=n_samples)
        P = np.column_stack([p1, (1 - p1)[:, None] * rest])
        rec = rng.normal(1.0, 0.04, n_samples)
        for i in range(n_samples):
            r = bad.get((i, m), rec[i])
            for j, f in enumerate(("F1", "F2", "F3", "F4")):
                recs.append((ids[i], m, f, round(float(tot[i] * P[i, j] * r), 5), "mg/kg"))
        shares.append(pd.DataFrame({"sample_id": ids, "metal": m, "f1_share_percent": 100 * p1}))
    fractions = pd.DataFrame(recs, columns=["sample_id", "metal", "fraction", "value", "unit"])
    g = np.arange(grid_step_km / 2, 10, grid_step_km)
    gxy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    gph, gsoc, gclay, gcec, gtot = _soil(field, gxy, rng, noise=False)
    grid = pd.DataFrame({"x_km": gxy[:, 0].round(4), "y_km": gxy[:, 1].round(4), "district": _district(gxy[:, 0]),
                         "ph": gph.round(2),
                         "soc_percent": gsoc.round(3), "clay_percent": gclay.round(1), "cec_cmol_kg": gcec.round(2)})
    for m in METALS:
        grid[f"{m}_total"] = gtot[m].round(4)
    shares = pd.concat(shares, ignore_index=True)
    return {"samples": samples, "fractions": fractions, "grid": grid, "truth": TRUTH.copy(),
            "shares": shares, "truth_effects": true_effects(samples, shares)}


_README = """# mobility_demo: generated demo region for stage `mobility`

**These data are generated, not measured.** They were written by
`hmlib.synth.mobility.write_region(seed={seed})` (equivalently
`python -c "from hmlib.synth.mobility import write_region; write_region('data/mobility_demo', seed={seed})"`),
and are reproduced exactly by the same seed.

- `samples.csv`: {n} topsoil samples on a 10 km x 10 km square (local coordinates `x_km`, `y_km`),
  a reporting `district` (west / centre / east thirds of the square, by x), with pH, SOC (%), clay (%), CEC (cmol/kg) and total Cd, Cu, Pb, Zn, As (mg/kg).
- `fractions.csv`: BCR sequential-extraction fractions in long format
  (`sample_id, metal, fraction, value, unit`; F1 acid-soluble, F2 reducible, F3 oxidizable, F4 residual).
- `truth_effects.csv`: the generator's true average marginal effect of each predictor on the F1 share
  (percent points per unit; `hmlib.synth.mobility.true_effects`), compared in the report with what the
  mobility model recovered.
- `grid.csv`: {ng} prediction cells (0.25 km) with the district, the same covariates (noise-free fields) and
  `<metal>_total` columns (mg/kg).

The true relationships (module docstring of `hmlib/synth/mobility.py`): pH, SOC, clay and the
totals are smooth seeded random fields plus noise; the F1 share is logistic in pH, ln SOC,
clay and ln total, with a **negative pH effect for Cd, Cu, Pb, Zn and a positive one for As**;
F2-F4 split the rest by a Dirichlet draw; measured fractions carry a recovery ~ N(1, 0.04)
except four deliberately bad sample-metal pairs (M004 Cd 60 %, M011 Pb 145 %, M026 Zn 60 %,
M041 Cu 145 %) that the recovery check must report.
"""


def write_region(folder: str | Path = "data/mobility_demo", *, seed: int = 20240611, n_samples: int = 200) -> dict:
    """Write ``samples.csv``, ``fractions.csv``, ``grid.csv``, ``truth_effects.csv`` and ``README.md`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = generate(seed=seed, n_samples=n_samples)
    d["samples"].to_csv(folder / "samples.csv", index=False)
    d["fractions"].to_csv(folder / "fractions.csv", index=False)
    d["grid"].to_csv(folder / "grid.csv", index=False)
    d["truth_effects"].to_csv(folder / "truth_effects.csv", index=False)
    (folder / "README.md").write_text(_README.format(seed=seed, n=n_samples, ng=len(d["grid"])), encoding="utf-8")
    return d
