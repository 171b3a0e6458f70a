"""Command line interface: ``hmlib run | render | validate | regions | new-region | references``.

Exit status: 0 success; 2 invalid parameters or data (the message names file, row, column and
value, or the params key); 1 a failed stage or rendering (the previous report is untouched).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from . import __version__
from .errors import HmlibError

__all__ = ["main", "build_parser", "EXTENSIONS"]

# modules that add subcommands: each provides add_parser(subparsers) and run(args) -> int
EXTENSIONS = ["hmlib.health_cli"]


def _cmd_run(args) -> int:
    from .runner import run_region

    res = run_region(args.region, stages=args.stages, jobs=args.jobs, render=not args.no_render, force=args.force,
                     reports_dir=args.reports_dir, params_dir=args.params_dir)
    failed = [s for s in res.stages if s.status == "failed"]
    return 1 if failed else 0


def _cmd_render(args) -> int:
    from .params import load_params
    from .report import render_report
    from .runner import find_params

    params = load_params(find_params(args.region, params_dir=args.params_dir))
    report_dir = Path(args.reports_dir) / params.region.id
    manifest_path = report_dir / "manifest.json"
    if not manifest_path.is_file():
        raise HmlibError(f"no report to render at {report_dir}: run `hmlib run {params.region.id}` first")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    html, pdf = render_report(report_dir, params=params, manifest=manifest)
    print(html)
    print(pdf)
    return 0


def _cmd_validate(args) -> int:
    from .io import load_region
    from .params import load_params
    from .runner import find_params

    path = find_params(args.params)
    params = load_params(path)
    data = load_region(params)
    n = {m: int((data.samples["medium"] == m).sum()) for m in data.media}
    grid = f", grid of {len(data.grid)} cells" if data.grid is not None else ""
    print(f"{path}: OK ({', '.join(f'{k}: {v} samples' for k, v in n.items())}, "
          f"{len(data.metals)} metals{grid}; stages: {', '.join(params.stages)})")
    return 0


def _cmd_regions(args) -> int:
    from .params import load_params

    base = Path(args.params_dir)
    rows = []
    for f in sorted(base.glob("*.yml")):
        try:
            p = load_params(f)
            rows.append(f"{p.region.id:<16} {p.region.title}  [{', '.join(p.stages)}]")
        except HmlibError as e:
            rows.append(f"{f.stem:<16} INVALID: {str(e).splitlines()[0]}")
    print("\n".join(rows) if rows else f"no params files in {base}")
    return 0


def _cmd_new_region(args) -> int:
    from .scaffold import starter_params

    text = starter_params(args.name, args.data, grid=args.grid)
    out = Path(args.params_dir) / f"{args.name}.yml"
    if out.exists() and not args.overwrite:
        raise HmlibError(f"{out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: check the guessed metals, coordinates and CRS, then run `hmlib validate {out}`")
    return 0


def _cmd_references(args) -> int:
    from .reference import list_reference_sets

    df = list_reference_sets(args.kind)
    print(df[["kind", "name", "n_rows"]].to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hmlib", description="Regional heavy metal(loid) assessment reports.")
    ap.add_argument("--version", action="version", version=f"hmlib {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a region's stages and render its report")
    r.add_argument("region", help="region id (params/<region>.yml) or a params file")
    r.add_argument("--stages", nargs="+", help="run only these stages (default: all stages in params)")
    r.add_argument("--jobs", type=int, default=1, help="independent stages run at once (default 1)")
    r.add_argument("--no-render", action="store_true", help="skip rendering HTML/PDF")
    r.add_argument("--force", action="store_true", help="re-run stages even when inputs are unchanged")
    r.add_argument("--reports-dir", default="reports", help="parent folder of reports (default reports/)")
    r.add_argument("--params-dir", default=None, help="folder of params files (default params/)")
    r.set_defaults(func=_cmd_run)

    r = sub.add_parser("render", help="re-render an existing report's HTML and PDF")
    r.add_argument("region")
    r.add_argument("--reports-dir", default="reports")
    r.add_argument("--params-dir", default=None)
    r.set_defaults(func=_cmd_render)

    r = sub.add_parser("validate", help="check a region's params and data without running anything")
    r.add_argument("params", help="params file (or region id)")
    r.set_defaults(func=_cmd_validate)

    r = sub.add_parser("regions", help="list the regions in params/")
    r.add_argument("--params-dir", default="params")
    r.set_defaults(func=_cmd_regions)

    r = sub.add_parser("new-region", help="write a starter params file from a CSV's columns")
    r.add_argument("name", help="region id (lower case, digits, underscore)")
    r.add_argument("--data", required=True, help="samples CSV")
    r.add_argument("--grid", default=None, help="optional prediction grid CSV")
    r.add_argument("--params-dir", default="params")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(func=_cmd_new_region)

    r = sub.add_parser("references", help="list the reference data sets (backgrounds, guidelines, ...)")
    r.add_argument("--kind", default=None)
    r.set_defaults(func=_cmd_references)

    for mod in EXTENSIONS:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        p = m.add_parser(sub)
        if p is not None and p.get_default("func") is None:
            p.set_defaults(func=m.run)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HmlibError as e:
        print(f"hmlib: error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 1)
    except KeyboardInterrupt:
        print("hmlib: interrupted; the previous report is untouched", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
