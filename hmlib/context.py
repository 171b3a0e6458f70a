"""The object a stage notebook works with: validated params, options, data and outputs.

A stage notebook's first code cell after ``parameters`` is::

    ctx = hmlib.open_stage("baselines", params_file=params_file, output_dir=output_dir,
                           options=dict(methods=methods, n_bootstrap=n_bootstrap))

which validates the options against the stage's schema, loads and validates the region's data
and prepares the output folders.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .io import RegionData, load_region
from .outputs import StageOutputs
from .params import RegionParams, StageOptions, load_params
from .stages import get_stage, options_model

__all__ = ["StageContext", "open_stage"]


@dataclass
class StageContext:
    """Everything one stage needs.

    Attributes
    ----------
    stage : registry name.
    params : validated region parameters.
    options : validated stage options (the stage's StageOptions model).
    data : validated region data (lazy: loaded on first access).
    out : the stage's :class:`~hmlib.outputs.StageOutputs`.
    output_dir : the region's report folder (staging folder during a run).
    """

    stage: str
    params: RegionParams
    options: StageOptions
    out: StageOutputs
    output_dir: Path
    _data: RegionData | None = None

    @property
    def data(self) -> RegionData:
        if self._data is None:
            self._data = load_region(self.params)
        return self._data

    @property
    def seed(self) -> int:
        return self.params.seed

    def rng(self, offset: int = 0) -> np.random.Generator:
        """A seeded generator for this stage (seed from params plus ``offset``)."""
        return np.random.default_rng([self.params.seed, offset])

    def read_table(self, name: str) -> pd.DataFrame:
        """A table written by an earlier stage of the same run (``tables/<name>.csv``)."""
        path = self.output_dir / "tables" / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"table {name!r} not found at {path}: run the stage that writes it first")
        return pd.read_csv(path)

    def has_table(self, name: str) -> bool:
        return (self.output_dir / "tables" / f"{name}.csv").is_file()


def open_stage(stage: str, *, params_file: str, output_dir: str, options: dict | None = None) -> StageContext:
    """Validate params and this stage's options, and prepare the outputs.

    Options given here (the notebook's parameters) are validated with the stage's options
    model; an invalid option raises :class:`~hmlib.errors.ParamsError` naming it.
    """
    from pydantic import ValidationError

    from .errors import ParamsError
    from .params import _explain

    params = load_params(params_file)
    st = get_stage(stage)
    model = options_model(st)
    try:
        opts = model.model_validate(options or {})
    except ValidationError as e:
        problems = []
        for err in e.errors():
            err = dict(err)
            err["loc"] = ("stages", stage, *err["loc"])
            problems.append(_explain(err, options))
        raise ParamsError(params_file, problems) from None
    out = StageOutputs(Path(output_dir), stage=stage, title=st.title)
    import matplotlib

    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 200, "font.size": 9,
                                "axes.titlesize": 10, "figure.figsize": (7.0, 4.2)})
    return StageContext(stage=stage, params=params, options=opts, out=out, output_dir=Path(output_dir))
