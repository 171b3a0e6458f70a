"""Schemas of the tables one stage writes and another reads (``tables/<name>.csv``).

A table listed in a stage's ``SPEC.writes`` has a schema here. It is checked when the producing
stage writes it (:meth:`hmlib.outputs.StageOutputs.table`) and when a consumer reads it
(:meth:`hmlib.context.StageContext.read_table`), so a change in one stage's output that another
stage depends on fails where it happens, not three stages later. The schemas name the columns
consumers rely on; producers may add columns (``strict=False``).
"""
from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from .errors import HmlibError

__all__ = ["SCHEMAS", "TableSchemaError", "validate_table"]


class TableSchemaError(HmlibError):
    """A table passed between stages does not have the declared columns or types."""

    exit_status = 1


def _text(nullable: bool = False) -> pa.Column:
    return pa.Column(str, coerce=True, nullable=nullable)


def _number(nullable: bool = True, **checks) -> pa.Column:
    return pa.Column(float, coerce=True, nullable=nullable)


SCHEMAS: dict[str, pa.DataFrameSchema] = {
    # baselines stage: one row per medium, stratum, metal and method
    "baselines": pa.DataFrameSchema({
        "medium": _text(), "stratum": _text(), "metal": _text(), "method": _text(),
        "baseline": _number(), "upper_limit": _number(), "unit": _text(),
        "recommended": pa.Column(bool, coerce=True),
    }, strict=False),
    # baselines stage: adaptive background per sample and metal (out-of-fold prediction)
    "adaptive_background": pa.DataFrameSchema({
        "sample_id": _text(), "medium": _text(), "metal": _text(),
        "background": _number(), "background_sd": _number(), "concentration": _number(), "unit": _text(),
    }, strict=False),
    # baselines stage: censored-data statistics and background threshold values per medium, stratum, metal
    "background_statistics": pa.DataFrameSchema({
        "medium": _text(), "stratum": _text(), "metal": _text(), "n": pa.Column(int, coerce=True),
        "n_censored": pa.Column(int, coerce=True), "km_mean": _number(), "ucl95": _number(),
        "utl95_95": _number(), "upl95": _number(), "usl95": _number(), "unit": _text(),
    }, strict=False),
    # indices stage: index values per sample (long format)
    "indices": pa.DataFrameSchema({
        "sample_id": _text(), "medium": _text(),
    }, strict=False),
    # spatial stage: predictions per grid cell, metal and method
    "grid_predictions": pa.DataFrameSchema({
        "x": _number(nullable=False), "y": _number(nullable=False), "metal": _text(), "method": _text(),
        "prediction": _number(), "variance": _number(),
    }, strict=False),
}


def validate_table(name: str, df: pd.DataFrame, *, stage: str, action: str) -> pd.DataFrame:
    """``df`` checked (and coerced) against the schema of table ``name``; unchanged if it has none.

    Raises
    ------
    TableSchemaError : naming the table, the stage and what is wrong.
    """
    schema = SCHEMAS.get(name)
    if schema is None:
        return df
    try:
        return schema.validate(df, lazy=True)
    except (pa.errors.SchemaErrors, pa.errors.SchemaError) as e:
        cases = getattr(e, "failure_cases", None)
        detail = (cases[["column", "check"]].drop_duplicates().head(10).to_string(index=False)
                  if cases is not None and {"column", "check"} <= set(cases.columns) else str(e)[:800])
        raise TableSchemaError(f"table {name!r} {action} by stage {stage!r} does not match its schema "
                               f"(hmlib/tables.py):\n{detail}") from None
