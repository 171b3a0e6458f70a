"""Command line interface: ``hmlib run | render | validate | regions | new-region | references``.

Exit status: 0 success; 2 invalid input: parameters, data, command-line arguments or paths (the
message names the file, row, column and value, or the params key, value and what was expected);
1 an internal error such as a failed stage or rendering (the message says so; the previous
report is untouched); 130 interrupted. ``--debug`` (or ``HMLIB_DEBUG=1``) prints the traceback.
``--data-root FOLDER`` lets data and option files come from a folder outside the project.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import sys
import traceback
from pathlib import Path

from . import __version__
from .errors import HmlibError, InputError, short_repr

__all__ = ["main", "build_parser", "EXTENSIONS"]

# modules that add subcommands: each provides add_parser(subparsers) and run(args) -> int
EXTENSIONS = ["hmlib.health_cli"]


_REGION_ID = re.compile(r"[a-z][a-z0-9_]*")
_MAX_MESSAGE = 12_000  # characters of an error message shown (every value in it is cut already)


def _params_path(region: str, params_dir: str | None = None) -> Path:
    """The params file of ``region``: a path to a ``.yml`` file, or a region id looked up in params/.

    Raises :class:`InputError` (exit 2) for a missing file or an argument that is neither, so
    that a region id cannot name a file outside ``params/``.
    """
    p = Path(region)
    if p.suffix in (".yml", ".yaml") or len(p.parts) > 1:
        if p.is_dir():
            raise InputError(f"{region}: is a folder; expected a params file (params/<region>.yml) or a region id")
        if not p.is_file():
            raise InputError(f"{region}: params file not found")
        return p
    if not _REGION_ID.fullmatch(region):
        raise InputError(f"region {short_repr(region)}: expected a region id (lower case letters, digits and "
                         "underscores, as in params/<region>.yml) or the path of a params file")
    bases = [Path(params_dir)] if params_dir else [Path.cwd() / "params", Path(__file__).resolve().parent.parent / "params"]
    for base in bases:
        cand = base / f"{region}.yml"
        if cand.is_file():
            return cand
    known = sorted({f.stem for b in bases if b.is_dir() for f in b.glob("*.yml")})
    near = difflib.get_close_matches(region, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else (f"; regions: {', '.join(known)}" if known else "")
    raise InputError(f"no parameters for region {region!r}: expected {bases[0] / (region + '.yml')}{hint}")


def _check_stage_names(stages: list[str], params_path: Path) -> None:
    """``--stages`` names registered stages enabled in the params (checked before any data are read)."""
    from .params import load_params
    from .stages import stage_names

    names = stage_names()
    unknown = [s for s in stages if s not in names]
    if unknown:
        near = [difflib.get_close_matches(s, names, n=1) for s in unknown]
        hint = "".join(f"; did you mean {n[0]!r} for {s!r}?" for s, n in zip(unknown, near) if n)
        raise InputError(f"--stages: got {', '.join(map(short_repr, unknown))}; expected stages among "
                         f"{', '.join(names)}{hint}")
    enabled = load_params(params_path).stages
    off = [s for s in stages if s not in enabled]
    if off:
        raise InputError(f"--stages: {', '.join(map(repr, off))} not enabled in {params_path}; expected stages "
                         f"listed under stages there ({', '.join(enabled)})")


def _cmd_run(args) -> int:
    from .runner import run_region

    if args.jobs < 1:
        raise InputError(f"--jobs: got {args.jobs}; expected a whole number of at least 1")
    regions = [str(_params_path(r, args.params_dir)) for r in args.region]
    if args.stages:
        for r in regions:
            _check_stage_names(args.stages, Path(r))
    kw = dict(stages=args.stages, jobs=args.jobs, render=not args.no_render, force=args.force,
              reports_dir=args.reports_dir, params_dir=args.params_dir)
    if len(regions) == 1 and not args.cluster:
        results = [run_region(regions[0], **kw)]
    else:
        from .parallel import run_regions

        results = run_regions(regions, cluster=args.cluster, **kw)
    failed = [s for res in results for s in res.stages if s.status == "failed"]
    return 1 if failed else 0


def _cmd_render(args) -> int:
    from .params import load_params
    from .report import render_report

    params = load_params(_params_path(args.region, args.params_dir))
    report_dir = Path(args.reports_dir) / params.region.id
    manifest_path = report_dir / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(f"no report to render at {report_dir}: run `hmlib run {params.region.id}` first")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{manifest_path}: not a report manifest ({short_repr(str(e), limit=120)}); "
                         f"run `hmlib run {params.region.id} --force` to rebuild the report") from None
    html, pdf = render_report(report_dir, params=params, manifest=manifest)
    print(html)
    print(pdf)
    return 0


def _cmd_validate(args) -> int:
    from .io import load_region
    from .params import load_params
    path = _params_path(args.params)
    params = load_params(path)
    data = load_region(params)
    from .errors import ParamsError
    from .pipeline.plan import build_plan
    from .runner import check_stages

    plan = build_plan(params)
    problems = check_stages(params, [s for s in plan.order if plan.stages[s].skip is None])
    if problems:
        raise ParamsError(str(path), problems)
    n = {m: int((data.samples["medium"] == m).sum()) for m in data.media}
    grid = f", grid of {len(data.grid)} cells" if data.grid is not None else ""
    print(f"{path}: OK ({', '.join(f'{k}: {v} samples' for k, v in n.items())}, "
          f"{len(data.metals)} metals{grid}; stages: {', '.join(params.stages)})")
    return 0


def _cmd_regions(args) -> int:
    from .params import load_params

    base = Path(args.params_dir)
    if not base.is_dir():
        raise InputError(f"--params-dir: got {short_repr(args.params_dir)}; expected a folder of params files")
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
    from .params import data_roots_from_env
    from .scaffold import project_folder, starter_params

    if not _REGION_ID.fullmatch(args.name):
        raise InputError(f"region name {short_repr(args.name)}: expected lower case letters, digits and "
                         "underscores, starting with a letter (it names params/<name>.yml and reports/<name>/)")
    out = Path(args.params_dir) / f"{args.name}.yml"
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    text = starter_params(args.name, args.data, grid=args.grid, base_dir=project_folder(args.params_dir),
                          data_roots=data_roots_from_env(), encoding=args.encoding, delimiter=args.delimiter)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: check the guessed metals, coordinates and CRS, then run `hmlib validate {out}`")
    return 0


def _cmd_new_stage(args) -> int:
    from .runner import project_root
    from .stages.template import new_stage

    module, notebook = new_stage(args.name, title=args.title, number=args.number, root=project_root())
    print(f"wrote {module} and {notebook}: add '{args.name}' to STAGES in hmlib/stages/__init__.py, "
          "then write its options, run and report")
    return 0


def _cmd_references(args) -> int:
    from .reference import list_reference_sets, reference_dir

    kinds = sorted(p.name for p in reference_dir().iterdir() if p.is_dir())
    if args.kind is not None and args.kind not in kinds:
        near = difflib.get_close_matches(args.kind, kinds, n=1)
        raise InputError(f"--kind: got {short_repr(args.kind)}; expected one of {', '.join(kinds)}"
                         + (f" (did you mean {near[0]!r}?)" if near else ""))
    df = list_reference_sets(args.kind)
    print(df[["kind", "name", "n_rows"]].to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hmlib", description="Regional heavy metal(loid) assessment reports.")
    ap.add_argument("--version", action="version", version=f"hmlib {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a region's stages and render its report")
    r.add_argument("region", nargs="+", help="region ids (params/<region>.yml) or params files")
    r.add_argument("--stages", nargs="+", help="run only these stages (default: all stages in params)")
    r.add_argument("--jobs", type=int, default=1, help="independent stages run at once (default 1)")
    r.add_argument("--cluster", default=None, metavar="local|ADDRESS",
                   help="run the regions (and grid tiles) on Dask: 'local' starts a cluster on this machine, "
                        "an address such as tcp://host:8786 connects to a running scheduler")
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
    r.add_argument("--encoding", default="utf-8", help="text encoding of the CSV (default utf-8)")
    r.add_argument("--delimiter", default=",", help="field separator of the CSV: ',', ';', tab or '|' (default ',')")
    r.set_defaults(func=_cmd_new_region)

    r = sub.add_parser("new-stage", help="write a new analysis stage's module and notebook from the template")
    r.add_argument("name", help="stage name (lower case, digits, underscore)")
    r.add_argument("--title", required=True, help="section title in the report")
    r.add_argument("--number", type=int, default=95, help="notebook number (its place in notebooks/)")
    r.set_defaults(func=_cmd_new_stage)

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
    _add_common_options(ap, sub)
    return ap


def _add_common_options(ap: argparse.ArgumentParser, sub) -> None:
    """``--debug`` on every command; ``--data-root`` on the commands that read a region's files."""
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    for name, p in sub.choices.items():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error")
        if name in ("run", "validate", "render", "new-region"):
            p.add_argument("--data-root", action="append", default=None, metavar="FOLDER",
                           help="a folder outside the project that data and option files may come from "
                                "(repeatable; default: only the project folder)")


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else f"{text[:_MAX_MESSAGE]}\n... (message cut at {_MAX_MESSAGE:,} characters)"


def _data_roots(args) -> str | None:
    roots = getattr(args, "data_root", None) or []
    out = []
    for r in roots:
        if not Path(r).is_dir():
            raise InputError(f"--data-root: got {short_repr(r)}; expected an existing folder")
        out.append(str(Path(r).resolve()))
    return os.pathsep.join(out) if out else None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 1 internal error, 130 interrupted)."""
    from .params import DATA_ROOT_ENV

    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version (0) or a bad argument (2, usage printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("HMLIB_DEBUG", "") not in ("", "0")
    saved_root = os.environ.get(DATA_ROOT_ENV)
    try:
        roots = _data_roots(args)
        if roots:  # seen by load_params here and in the stage kernels, which inherit the environment
            os.environ[DATA_ROOT_ENV] = roots
        return int(args.func(args) or 0)
    except HmlibError as e:
        status = getattr(e, "exit_status", 1)
        if debug:
            traceback.print_exc()
        if status == 2:
            print(f"hmlib: error: {_cut(str(e))}", file=sys.stderr)
        else:
            print(f"hmlib: error: {_cut(str(e))}\nhmlib: this is not a problem with the parameters or data"
                  + ("" if debug else "; run again with --debug for details"), file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print("hmlib: interrupted; the previous report is untouched", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - anything else is a bug: say so, exit 1, traceback with --debug
        if debug:
            traceback.print_exc()
        print(f"hmlib: internal error: {type(e).__name__}: {_cut(short_repr(str(e), limit=2000)[1:-1])}\n"
              "hmlib: this is a bug in hmlib, not a problem with the input"
              + ("" if debug else "; run again with --debug to see the traceback"), file=sys.stderr)
        return 1
    finally:
        if saved_root is None:
            os.environ.pop(DATA_ROOT_ENV, None)
        else:
            os.environ[DATA_ROOT_ENV] = saved_root


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
