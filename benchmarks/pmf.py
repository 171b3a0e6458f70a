"""Print PMF base-run, bootstrap, DISP and BS-DISP wall-clock seconds for Jura and a generated region.

Usage: .venv/bin/python benchmarks/pmf.py [--starts 20] [--bootstrap 100] [--bs-disp 10] [--factors 3]

Data: the Jura topsoil metals (data/jura) and the four-source generated soil of
:func:`hmlib.synth.sources.generate_four_sources` (150 samples, 10 % noise, laboratory MDLs).
Settings match the ``sources`` stage defaults (EPA PMF 5.0 uncertainty with EF 0.1, robust fit,
esat ls-nmf; DISP at dQmax 4, 8, 16, 32 with the rest of the solution refitted; BS-DISP at 0.5, 1, 2, 4).
Prints one line per data set, then the seconds of the survey-scale step (weighted NNLS contributions of
20,000 generated samples on fixed profiles, :func:`hmlib.pmf.weighted_nnls_contributions`); never asserts a
time. ``--jobs`` runs the starts and bootstrap runs in that many worker processes (same numbers).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from hmlib import pmf
from hmlib.synth.sources import FOUR_SOURCE_PROFILES, generate_four_sources

ROOT = Path(__file__).resolve().parents[1]
JURA_METALS = ["Cd", "Co", "Cr", "Cu", "Ni", "Pb", "Zn"]


def bench(name: str, x: pd.DataFrame, u: pd.DataFrame, *, factors: int, starts: int, n_boot: int, n_bsd: int,
          seed: int = 1, jobs: int = 1) -> None:
    t0 = time.perf_counter()
    res = pmf.fit_pmf(x, u, n_factors=factors, seed=seed, n_starts=starts, n_jobs=jobs)
    t1 = time.perf_counter()
    pmf.bootstrap_pmf(res, n_runs=n_boot, seed=seed + 1, n_jobs=jobs)
    t2 = time.perf_counter()
    pmf.disp_pmf(res)
    t3 = time.perf_counter()
    if n_bsd:
        pmf.bs_disp_pmf(res, n_runs=n_bsd, seed=seed + 2, n_jobs=jobs)
    t4 = time.perf_counter()
    print(f"{name:<26} n={x.shape[0]:>4} m={x.shape[1]:>2} p={factors}  base ({starts} starts) {t1 - t0:7.1f} s   "
          f"bootstrap ({n_boot}) {t2 - t1:7.1f} s   DISP {t3 - t2:7.1f} s   BS-DISP ({n_bsd}) {t4 - t3:7.1f} s   "
          f"esat {pmf.ESAT_VERSION}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--bs-disp", type=int, default=10)
    ap.add_argument("--factors", type=int, default=3, help="factors for Jura (the generated region uses 4)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for starts and bootstrap runs")
    a = ap.parse_args()
    jura = pd.read_csv(ROOT / "data" / "jura" / "jura_samples.csv").set_index("sample_id")[JURA_METALS]
    u = pmf.pmf_uncertainty(jura, mdl=pmf.estimated_mdl(jura).to_dict(), error_fraction=0.1)
    bench("jura soil", jura, u, factors=a.factors, starts=a.starts, n_boot=a.bootstrap, n_bsd=a.bs_disp, jobs=a.jobs)
    g = generate_four_sources(seed=20240601, n=150, noise=0.1)
    x = g["samples"].set_index("sample_id")[list(FOUR_SOURCE_PROFILES.columns)]
    u = pmf.pmf_uncertainty(x, mdl=g["mdl"].set_index("metal")["mdl"].to_dict(), error_fraction=0.1)
    bench("generated soil (4 sources)", x, u, factors=4, starts=a.starts, n_boot=a.bootstrap, n_bsd=a.bs_disp,
          jobs=a.jobs)
    big = generate_four_sources(seed=7, n=20_000, noise=0.1)
    xb = big["samples"].set_index("sample_id")[list(FOUR_SOURCE_PROFILES.columns)]
    ub = pmf.pmf_uncertainty(xb, mdl=big["mdl"].set_index("metal")["mdl"].to_dict(), error_fraction=0.1)
    t0 = time.perf_counter()
    pmf.weighted_nnls_contributions(xb, ub, FOUR_SOURCE_PROFILES, robust_alpha=4.0)
    print(f"{'weighted NNLS (robust)':<26} n={len(xb):>5} p={len(FOUR_SOURCE_PROFILES)}  {time.perf_counter() - t0:7.1f} s",
          flush=True)


if __name__ == "__main__":
    main()
