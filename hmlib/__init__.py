"""hmlib: regional assessment reports for heavy metal(loid)s in soil, sediment and water."""
from __future__ import annotations

__version__ = "0.1.0"

from .context import StageContext, open_stage  # noqa: E402
from .errors import DataError, HmlibError, ParamsError, UnitError  # noqa: E402
from .io import RegionData, load_region  # noqa: E402
from .params import RegionParams, load_params  # noqa: E402

__all__ = ["open_stage", "StageContext", "load_region", "RegionData", "load_params", "RegionParams",
           "HmlibError", "DataError", "ParamsError", "UnitError", "__version__"]
