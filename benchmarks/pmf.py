"""Print PMF base-run and bootstrap wall-clock seconds for the Jura data and the generated region.

Usage: .venv/bin/python benchmarks/pmf.py [--starts 20] [--bootstrap 100]
Settings match the `sources` stage defaults (EPA PMF 5.0 uncertainty with EF 0.1 and a stand-in MDL,
3 factors, esat ls-nmf). Prints one line per data set; never asserts a time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from hmlib import pmf
from hmlib.synth.sources import generate

ROOT = Path(__file__).resolve().parents[1]
METALS = ["Cd", "Co", "Cr", "Cu", "Ni", "Pb", "Zn"]


def bench(name: str, x: pd.DataFrame, *, starts: int, n_boot: int, seed: int = 1) -> None:
    u = pmf.pmf_uncertainty(x, mdl=pmf.stand_in_mdl(x).to_dict(), error_fraction=0.1)
    t0 = time.perf_counter()
    res = pmf.fit_pmf(x, u, n_factors=3, seed=seed, n_starts=starts)
    t1 = time.perf_counter()
    pmf.bootstrap_pmf(res, n_runs=n_boot, seed=seed + 1)
    t2 = time.perf_counter()
    print(f"{name:<22} n={x.shape[0]:>4} m={x.shape[1]}  base run ({starts} starts): {t1 - t0:7.2f} s   "
          f"bootstrap ({n_boot} runs): {t2 - t1:7.2f} s   esat {pmf.ESAT_VERSION}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--bootstrap", type=int, default=100)
    a = ap.parse_args()
    jura = pd.read_csv(ROOT / "data" / "jura" / "jura_samples.csv").set_index("sample_id")[METALS]
    bench("jura soil", jura, starts=a.starts, n_boot=a.bootstrap)
    s = generate(seed=20240601)["samples"]
    for medium in ("soil", "sediment"):
        x = s[s["medium"] == medium].set_index("sample_id")[METALS]
        bench(f"smelter_demo {medium}", x, starts=a.starts, n_boot=a.bootstrap)


if __name__ == "__main__":
    main()
