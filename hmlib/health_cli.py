"""``hmlib risk``: one-line US EPA health risk calculator for a single concentration.

Example::

    hmlib risk --medium soil --metal As --concentration 0.68 --receptor resident --parameters epa_rsl

prints the average daily dose (ADD, noncancer), the lifetime average daily dose (LADD, cancer),
the hazard quotient (HQ) and the cancer risk (CR) per pathway, and the totals HI and TCR, using
:func:`hmlib.health.risk_calculator`. ``--json`` prints the same as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``risk`` subcommand on an ``argparse`` subparsers object."""
    from .health import PARAMETER_SETS, RECEPTORS, TOXICITY_SETS

    p = subparsers.add_parser(
        "risk", help="US EPA health risk (ADD, HQ, CR) of one concentration",
        description="Deterministic US EPA health risk of one metal concentration in soil (mg/kg) or water (ug/L): "
                    "ADD, LADD, HQ and CR per pathway, HI and TCR in total.")
    p.add_argument("--medium", required=True, choices=["soil", "water"], help="soil (mg/kg) or water (ug/L)")
    p.add_argument("--metal", required=True, help="element symbol, e.g. As, Cd, Cr(VI); Cr is split into Cr(III)/Cr(VI)")
    p.add_argument("--concentration", required=True, type=float, help="concentration in mg/kg (soil) or ug/L (water)")
    p.add_argument("--receptor", default="resident", choices=list(RECEPTORS), help="receptor (default: resident)")
    p.add_argument("--parameters", default="epa_rsl", choices=sorted(PARAMETER_SETS),
                   help="exposure parameter set (default: epa_rsl)")
    p.add_argument("--toxicity", default="epa_rsl", choices=sorted(TOXICITY_SETS), help="toxicity value set")
    p.add_argument("--cr-vi-fraction", type=float, default=None,
                   help="Cr(VI) share of total Cr when --metal Cr (default 1/7, the RSL 1:6 ratio)")
    p.add_argument("--default-abs-soil", type=float, default=None,
                   help="dermal absorption fraction for metals without an ABS (default: none, as the RSLs)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)
    return p


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _argument_problems(args) -> list[str]:
    """Bad option values, each naming the option, the value and what is expected."""
    from .io import MAX_CANONICAL

    problems = []
    unit = "mg/kg" if args.medium == "soil" else "ug/L"
    c = args.concentration
    if not (math.isfinite(c) and c >= 0):
        problems.append(f"--concentration: got {c!r}; expected a finite number >= 0 ({unit})")
    elif c > MAX_CANONICAL[unit]:
        what = "the whole sample" if args.medium == "soil" else "one kilogram per litre"
        problems.append(f"--concentration: got {c:g} {unit}; expected at most {MAX_CANONICAL[unit]:,.0f} {unit} "
                        f"({what}): a larger value is impossible")
    for opt, v in (("--cr-vi-fraction", args.cr_vi_fraction), ("--default-abs-soil", args.default_abs_soil)):
        if v is not None and not (math.isfinite(v) and 0 <= v <= 1):
            problems.append(f"{opt}: got {v!r}; expected a fraction between 0 and 1")
    return problems


def run(args) -> int:
    """Execute ``hmlib risk``; returns the exit status (0 ok, 2 bad input)."""
    from .health import DEFAULT_CR_VI_FRACTION, risk_calculator

    problems = _argument_problems(args)
    if problems:
        print("\n".join(f"hmlib risk: {p}" for p in problems), file=sys.stderr)
        return 2
    frac = DEFAULT_CR_VI_FRACTION if args.cr_vi_fraction is None else args.cr_vi_fraction
    try:
        df = risk_calculator(medium=args.medium, metal=args.metal, concentration=args.concentration,
                             receptor=args.receptor, parameters=args.parameters, toxicity=args.toxicity,
                             cr_vi_fraction=frac, default_abs_soil=args.default_abs_soil)
    except (ValueError, KeyError) as e:  # unknown metal or parameter: the message names it
        print(f"hmlib risk: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    unit = "mg/kg" if args.medium == "soil" else "ug/L"
    if args.json:
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in df.to_dict(orient="records")]
        out = {"medium": args.medium, "metal": args.metal, "concentration": args.concentration,
               "concentration_unit": unit, "receptor": args.receptor, "parameters": args.parameters,
               "toxicity": args.toxicity, "units": {"add": "mg/kg-day (inhalation: mg/m3)",
                                                   "ladd": "mg/kg-day (inhalation: mg/m3)", "hq": "1", "cr": "1"},
               "rows": rows}
        if args.metal == "Cr":
            out["cr_vi_fraction"] = frac
        print(json.dumps(out, indent=1))
        return 0
    print(f"{args.metal} in {args.medium}: {args.concentration:g} {unit}; receptor {args.receptor}; "
          f"parameters {args.parameters}; toxicity {args.toxicity}")
    if args.metal == "Cr":
        print(f"total Cr split with Cr(VI) share {frac:.4g}")
    head = f"{'metal':<8} {'pathway':<11} {'ADD':>11} {'LADD':>11} {'HQ':>11} {'CR':>11}"
    print(head)
    print("-" * len(head))
    for r in df.itertuples(index=False):
        name = "total" if r.pathway == "total" else r.pathway
        print(f"{r.metal:<8} {name:<11} {_fmt(r.add):>11} {_fmt(r.ladd):>11} {_fmt(r.hq):>11} {_fmt(r.cr):>11}")
    print("ADD/LADD in mg/kg-day (inhalation: exposure concentration in mg/m3); total HQ = HI, total CR = TCR.")
    return 0
