"""The object a stage works with: validated params, merged options, data, declared reads and outputs.

A stage notebook opens its stage with its own parameters::

    ctx = hmlib.open_stage("baselines", globals())

which takes ``region``, ``params_file``, ``output_dir`` and the stage's options from the
notebook's parameters cell. Options come from the region's params file (``stages: baselines:``);
an option set to something other than ``None`` in the notebook overrides it. Opened this way, a
notebook computes what ``hmlib run`` computes for the region, and writes into a scratch folder
unless ``output_dir`` is given (tables of other stages are then read from the published report).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import HmlibError, ParamsError
from .io import RegionData, load_region
from .outputs import StageOutputs
from .params import RegionParams, StageOptions, load_params
from .stages import StageSpec, get_stage, producers
from .tables import validate_table

__all__ = ["StageContext", "open_stage", "stage_options", "NOTEBOOK_PARAMETERS"]

#: names of a stage notebook's parameters cell besides the stage's options
NOTEBOOK_PARAMETERS = ("region", "params_file", "output_dir")


class UndeclaredReadError(HmlibError):
    """A stage read a table it did not declare in ``SPEC.reads``."""

    exit_status = 1


@dataclass
class StageContext:
    """Everything one stage needs.

    Attributes
    ----------
    spec : the stage's declaration (name, options model, reads, writes).
    params : validated region parameters.
    options : the stage's options: the params file's ``stages: <name>:`` merged with overrides.
    out : the stage's :class:`~hmlib.outputs.StageOutputs` (tables, figures, prose).
    output_dir : the folder this stage writes into (the staging folder during ``hmlib run``).
    input_dir : the folder other stages' tables are read from (``output_dir`` during a run; the
        published report when a notebook is opened on its own).
    """

    spec: StageSpec
    params: RegionParams
    options: StageOptions
    out: StageOutputs
    output_dir: Path
    input_dir: Path
    _data: RegionData | None = field(default=None, repr=False)

    @property
    def stage(self) -> str:
        return self.spec.name

    @property
    def data(self) -> RegionData:
        """The region's validated data (loaded on first use)."""
        if self._data is None:
            self._data = load_region(self.params)
        return self._data

    @property
    def seed(self) -> int:
        return self.params.seed

    def rng(self, offset: int = 0) -> np.random.Generator:
        """A seeded generator for this stage: the region's seed, the stage's name and ``offset``."""
        stage_key = int.from_bytes(self.spec.name.encode()[:8].ljust(8, b"\0"), "little")
        return np.random.default_rng([self.params.seed, stage_key, offset])

    def _declared(self, name: str):
        read = self.spec.read(name)
        if read is None:
            raise UndeclaredReadError(
                f"stage {self.spec.name!r} read table {name!r}, which its SPEC.reads does not declare; "
                f"declare it (hmlib/stages/{self.spec.name}.py) so the runner orders and keys the stage by it")
        return read

    def has_table(self, name: str) -> bool:
        """Whether the declared input table ``name`` exists (an optional read may be absent)."""
        self._declared(name)
        return (self.input_dir / "tables" / f"{name}.csv").is_file()

    def read_table(self, name: str) -> pd.DataFrame | None:
        """A table written by another stage, checked against its schema (:mod:`hmlib.tables`).

        Returns None for an optional read whose table does not exist; raises for a missing required
        one, or for a table the stage did not declare.
        """
        read = self._declared(name)
        path = self.input_dir / "tables" / f"{name}.csv"
        if not path.is_file():
            if not read.required:
                return None
            src = producers().get(name, "?")
            raise HmlibError(f"the {self.spec.name} stage needs table {name!r} from the {src} stage, which is not "
                             f"at {path}: run `hmlib run {self.params.region.id} --stages {src}` first")
        df = pd.read_csv(path, dtype={"sample_id": str})
        return validate_table(name, df, stage=self.spec.name, action="read")


def stage_options(stage: str, params: RegionParams, overrides: Mapping[str, Any] | None = None) -> StageOptions:
    """The stage's options: ``params.stages[stage]`` merged with ``overrides`` (None values ignored).

    Raises
    ------
    ParamsError : an unknown or invalid option, naming the key, the value and what was expected.
    """
    from pydantic import ValidationError

    from .params import _explain

    model = get_stage(stage).options
    raw = dict(params.stages.get(stage) or {})
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            err = dict(err)
            err["loc"] = ("stages", stage, *err["loc"])
            problems.append(_explain(err, raw))
        raise ParamsError(str(params.path), problems) from None


def _notebook_parameters(stage: str, namespace: Mapping[str, Any]) -> tuple[dict, dict]:
    fields = set(get_stage(stage).options.model_fields)
    base = {k: namespace.get(k) for k in NOTEBOOK_PARAMETERS}
    overrides = {k: namespace[k] for k in fields if k in namespace}
    return base, overrides


def open_stage(stage: str, namespace: Mapping[str, Any] | None = None, /, *, region: str | None = None,
               params_file: str | Path | None = None, output_dir: str | Path | None = None,
               overrides: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None
               ) -> StageContext:
    """Open ``stage`` for a region: validated params, merged options, outputs folder.

    Parameters
    ----------
    stage : the stage's name.
    namespace : a notebook's ``globals()``: its parameters ``region``, ``params_file``, ``output_dir``
        and any of the stage's options (``None`` = take the params file's value).
    region : region id; its parameters are ``params/<region>.yml`` (when ``params_file`` is None).
    params_file : the params file.
    output_dir : where the stage writes; None: a new scratch folder.
    overrides : option values that replace the params file's.
    options : older name of ``overrides``.

    Returns
    -------
    StageContext
    """
    if namespace is not None:
        base, ns_over = _notebook_parameters(stage, namespace)
        region = region or base["region"]
        params_file = params_file or base["params_file"]
        output_dir = output_dir or base["output_dir"]
        overrides = {**ns_over, **(overrides or {})}
    overrides = {**(options or {}), **(overrides or {})}
    if params_file is None:
        if region is None:
            raise HmlibError("open_stage needs a region or a params file")
        from .pipeline.plan import find_params

        params_file = find_params(region)
    params = load_params(params_file)
    spec = get_stage(stage)
    opts = stage_options(stage, params, overrides)
    if output_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix=f"hmlib-{params.region.id}-{stage}-"))
        input_dir = params.base_dir / "reports" / params.region.id
    else:
        out_dir = input_dir = Path(output_dir)
    out = StageOutputs(out_dir, stage=stage, title=spec.title)
    os.environ["HMLIB_STAGE"] = stage  # labels console progress (hmlib.progress)
    import matplotlib

    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 200, "font.size": 9,
                                "axes.titlesize": 10, "figure.figsize": (7.0, 4.2)})
    return StageContext(spec=spec, params=params, options=opts, out=out, output_dir=out_dir, input_dir=input_dir)
