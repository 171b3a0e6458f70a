"""Write a stage's notebook parameters cell from its options, and a new stage from the template.

``hmlib new-stage NAME`` calls :func:`new_stage`; the tests compare every committed notebook's
parameters cell with :func:`parameters_source` so the notebook signature and the options model
cannot drift apart.
"""
from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from ..errors import HmlibError

__all__ = ["parameters_source", "default_text", "new_stage", "example_region"]

#: the region a notebook opened as is uses when it enables the stage (the README's example region)
PREFERRED_REGION = "jura"


def default_text(value) -> str:
    """A default value as the notebook comment shows it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(default_text(v) for v in value) + "]" if value else "[]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {default_text(v)}" for k, v in value.items()) + "}" if value else "{}"
    return str(value)


@cache
def example_region(stage: str, *, params_dir: str | Path | None = None) -> str:
    """The shipped region a stage's notebook opens by default: one whose params run the stage.

    Jura when its params enable the stage and it can run there, else the first such region of
    ``params/`` in alphabetical order (so a notebook of a stage Jura lacks, such as accumulation,
    runs as is); Jura when no shipped region runs the stage.

    Parameters
    ----------
    stage : the stage's name.
    params_dir : folder of the shipped params files (default: the project's ``params/``).

    Returns
    -------
    str
        The region id (the params file's stem).
    """
    from ..params import load_params
    from ..pipeline.plan import project_root
    from . import get_stage, skip_reason

    base = Path(params_dir) if params_dir is not None else project_root() / "params"
    files = sorted(base.glob("*.yml"), key=lambda f: (f.stem != PREFERRED_REGION, f.stem))
    spec = get_stage(stage)
    for f in files:
        try:
            params = load_params(f)
        except HmlibError:
            continue
        if stage in params.stages and skip_reason(spec, params) is None:
            return f.stem
    return PREFERRED_REGION


def parameters_source(options_model, *, region: str = PREFERRED_REGION) -> str:
    """The source of a stage notebook's ``parameters`` cell.

    ``region``, ``params_file`` and ``output_dir`` first, then every option of ``options_model`` set
    to ``None`` (= the region's params value, else the default given in the comment). Stage
    notebooks take ``region`` from :func:`example_region`, so each opens on a region that runs it.
    """
    lines = [
        f'region = "{region}"  # region: its parameters are params/<region>.yml',
        "params_file = None  # a params file to use instead of params/<region>.yml",
        "output_dir = None  # folder for tables, figures and the report section (none: a new scratch folder)",
        "# The options of this analysis. None keeps the value in the region's params file, else the default.",
    ]
    for name, field in options_model.model_fields.items():
        desc = (field.description or name.replace("_", " ")).rstrip(".")
        default = field.default if field.default_factory is None else field.default_factory()
        lines.append(f"{name} = None  # {desc} (default {default_text(default)})")
    return "\n".join(lines)


_MODULE = '''"""Stage ``{name}``: {title}.

See :mod:`hmlib.stages.base` for the contract and :mod:`hmlib.stages.data_quality` for an example.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pydantic import Field

from ..context import StageContext
from ..params import StageOptions
from .base import Read, StageSpec  # noqa: F401

__all__ = ["Options", "SPEC", "Result", "check", "run", "report"]


class Options(StageOptions):
    """Options of the ``{name}`` stage."""

    example: float = Field(default=1.0, gt=0, description="what this option sets")


SPEC = StageSpec(
    name="{name}",
    notebook="{notebook}",
    title="{title}",
    options=Options,
    reads=(),  # e.g. (Read("baselines", required=False),)
    writes=(),  # tables other stages may read; give each a schema in hmlib/tables.py
)


@dataclass
class Result:
    """What the stage computed.

    Attributes
    ----------
    table : ...
    """

    table: pd.DataFrame


def check(ctx: StageContext) -> list[str]:
    """Problems of the options against the region's data ("stages.{name}.<key>: got ...; expected ...")."""
    return []


def run(ctx: StageContext) -> Result:
    """All computation of the stage (numerics in a method module, composed here)."""
    raise NotImplementedError


def report(ctx: StageContext, result: Result) -> None:
    """The stage's report section through ``ctx.out``."""
    ctx.out.markdown("Methods ...")
'''


def _notebook(name: str, title: str, params_src: str) -> dict:
    def code(src, tags=None):
        return {"cell_type": "code", "execution_count": None, "metadata": {"tags": tags} if tags else {},
                "outputs": [], "source": src}

    intro = (f"# {title}\n\nRun as is, this notebook reads the region's parameters, takes the options of this "
             "analysis from them (a value set below overrides one) and writes into a scratch folder; "
             "`hmlib run` runs it for the report.")
    cells = [{"cell_type": "markdown", "metadata": {}, "source": intro},
             code(params_src, ["parameters"]),
             code(f'import hmlib\nfrom hmlib.stages import {name} as stage\n\n'
                  f'ctx = hmlib.open_stage("{name}", globals())\nctx.options'),
             code("result = stage.run(ctx)\nresult"),
             code("stage.report(ctx, result)\nctx.out.finish()")]
    for i, c in enumerate(cells):
        c["id"] = f"{name}-{i}"
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                         "name": "python3"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def new_stage(name: str, *, title: str, number: int, root: Path) -> tuple[Path, Path]:
    """Write ``hmlib/stages/<name>.py`` and ``notebooks/<number>_<name>.ipynb`` from the template.

    Returns the two paths. The stage still has to be added to :data:`hmlib.stages.STAGES`.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise HmlibError(f"stage name: got {name!r}; expected lower-case letters, digits and underscores")
    module = root / "hmlib" / "stages" / f"{name}.py"
    notebook = root / "notebooks" / f"{number:02d}_{name}.ipynb"
    for p in (module, notebook):
        if p.exists():
            raise HmlibError(f"{p} exists; choose another stage name")
    module.write_text(_MODULE.format(name=name, title=title, notebook=notebook.name), encoding="utf-8")
    from pydantic import Field

    from ..params import StageOptions

    class _Example(StageOptions):
        example: float = Field(default=1.0, gt=0, description="what this option sets")

    nb = _notebook(name, title, parameters_source(_Example))
    notebook.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    return module, notebook
