"""Explicit concentration units and conversion between them.

All conversions go through one table, :data:`UNIT_TABLE`, that maps each accepted unit
spelling to its dimension (``mass_fraction`` for solids, ``mass_concentration`` for water)
and its factor to the canonical unit of that dimension (mg/kg for solids, ug/L for water).
An unknown unit raises :class:`~hmlib.errors.UnitError`; a conversion across dimensions
(mg/kg to ug/L) raises as well, because it needs a partition coefficient, not a factor.
"""
from __future__ import annotations

import numpy as np

from .errors import UnitError

__all__ = ["UNIT_TABLE", "CANONICAL_UNIT", "normalize_unit", "dimension", "convert", "canonical_unit"]

# spelling -> (dimension, factor to canonical unit of that dimension)
UNIT_TABLE: dict[str, tuple[str, float]] = {
    "mg/kg": ("mass_fraction", 1.0),
    "ug/g": ("mass_fraction", 1.0),
    "ppm": ("mass_fraction", 1.0),
    "ug/kg": ("mass_fraction", 1e-3),
    "ng/g": ("mass_fraction", 1e-3),
    "ppb_solid": ("mass_fraction", 1e-3),
    "g/kg": ("mass_fraction", 1e3),
    "%": ("mass_fraction", 1e4),
    "ug/L": ("mass_concentration", 1.0),
    "ng/mL": ("mass_concentration", 1.0),
    "mg/L": ("mass_concentration", 1e3),
    "ng/L": ("mass_concentration", 1e-3),
    "g/L": ("mass_concentration", 1e6),
}

CANONICAL_UNIT = {"mass_fraction": "mg/kg", "mass_concentration": "ug/L"}

_ALIASES = {
    "mg kg-1": "mg/kg", "mg kg^-1": "mg/kg", "mg·kg-1": "mg/kg", "mg_kg": "mg/kg",
    "µg/g": "ug/g", "μg/g": "ug/g", "ug_g": "ug/g",
    "µg/kg": "ug/kg", "μg/kg": "ug/kg", "ug kg-1": "ug/kg", "ug_kg": "ug/kg",
    "µg/l": "ug/L", "μg/l": "ug/L", "ug/l": "ug/L", "ug l-1": "ug/L", "ug_l": "ug/L",
    "mg/l": "mg/L", "mg l-1": "mg/L", "mg_l": "mg/L",
    "ng/l": "ng/L", "g/l": "g/L", "ng/ml": "ng/mL",
}


def normalize_unit(unit: str) -> str:
    """Return the canonical spelling of ``unit`` or raise :class:`UnitError`.

    Parameters
    ----------
    unit : str
        Unit name or alias, e.g. ``'mg/kg'``, ``'ppm'`` (case-insensitive).

    Returns
    -------
    str
        Canonical spelling of the unit as a key of ``UNIT_TABLE``.
    """
    if not isinstance(unit, str):
        raise UnitError(f"unit must be a string such as 'mg/kg', got {unit!r}")
    u = unit.strip()
    if u in UNIT_TABLE:
        return u
    low = u.lower()
    if low in _ALIASES:
        return _ALIASES[low]
    for k in UNIT_TABLE:
        if k.lower() == low:
            return k
    raise UnitError(f"unknown unit {unit!r}; expected one of {sorted(UNIT_TABLE)}")


def dimension(unit: str) -> str:
    """``'mass_fraction'`` (solids) or ``'mass_concentration'`` (water) for ``unit``.

    Parameters
    ----------
    unit : str
        Unit name or alias.

    Returns
    -------
    str
        ``'mass_fraction'`` or ``'mass_concentration'``.
    """
    return UNIT_TABLE[normalize_unit(unit)][0]


def canonical_unit(unit: str) -> str:
    """The canonical unit of ``unit``'s dimension: mg/kg for solids, ug/L for water.

    Parameters
    ----------
    unit : str
        Unit name or alias.

    Returns
    -------
    str
        Canonical unit of the same dimension (``'mg/kg'`` or ``'ug/L'``).
    """
    return CANONICAL_UNIT[dimension(unit)]


def convert(values, from_unit: str, to_unit: str):
    """Convert ``values`` from ``from_unit`` to ``to_unit``.

    Works on scalars, NumPy arrays and pandas objects (returns the same kind; never
    mutates the input). Raises :class:`UnitError` for unknown units or across dimensions.

    Parameters
    ----------
    values : float, array-like, pandas.Series or pandas.DataFrame
        Concentration(s) expressed in ``from_unit``.
    from_unit : str
        Unit of ``values``.
    to_unit : str
        Target unit (same dimension as ``from_unit``).

    Returns
    -------
    float, numpy.ndarray, pandas.Series or pandas.DataFrame
        ``values`` converted to ``to_unit``; lists/tuples become a float ndarray.

    Examples
    --------
    >>> convert(250.0, "ug/kg", "mg/kg")
    0.25
    >>> convert(0.005, "mg/L", "ug/L")
    5.0
    """
    f = normalize_unit(from_unit)
    t = normalize_unit(to_unit)
    dim_f, fac_f = UNIT_TABLE[f]
    dim_t, fac_t = UNIT_TABLE[t]
    if dim_f != dim_t:
        raise UnitError(
            f"cannot convert {from_unit!r} ({dim_f}) to {to_unit!r} ({dim_t}): "
            "a solid-phase and a dissolved concentration differ by a partition coefficient, not a factor"
        )
    factor = fac_f / fac_t
    if factor == 1.0:
        return values.copy() if hasattr(values, "copy") else values
    if isinstance(values, (list, tuple)):
        return np.asarray(values, dtype=float) * factor
    return values * factor
