"""Print SEM fit seconds for the three lavaan reference models (tests/data/lavaan).

Usage: .venv/bin/python benchmarks/sem.py [--repeat 5]
Fits each model ``--repeat`` times with :func:`hmlib.sem.fit_sem` (unstandardised data, as lavaan)
and prints the median wall-clock seconds and the chi2 next to lavaan 0.6-14's; never asserts a time.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd

from hmlib import sem

ROOT = Path(__file__).resolve().parents[1]
LAVAAN = ROOT / "tests" / "data" / "lavaan"
MODELS = {"hs_cfa": "HolzingerSwineford1939.csv", "poldem_sem": "PoliticalDemocracy.csv",
          "hs_mimic": "HolzingerSwineford1939.csv"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    ref = pd.read_csv(LAVAAN / "lavaan_fit_measures.csv")
    for name, csv in MODELS.items():
        data = pd.read_csv(LAVAAN / csv)
        model = (LAVAAN / f"{name}.lav").read_text()
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            res = sem.fit_sem(data, model, standardize=False)
            times.append(time.perf_counter() - t0)
        chi2_ref = ref.loc[(ref["model"] == name) & (ref["index"] == "chisq"), "value"].item()
        print(f"{name:<12} n={res.n:>4} fit {statistics.median(times):7.3f} s (median of {a.repeat})   "
              f"chi2 {res.fit_value('chi2'):.4f} (lavaan {chi2_ref:.4f})")


if __name__ == "__main__":
    main()
