"""Exception types raised by hmlib.

Every user-facing error names where the problem is: for data, the file, the row number as
shown in the file (header = line 1), the column and the value; for parameters, the key path,
the bad value and what was expected. The command line turns these into exit status 2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "HmlibError",
    "InputError",
    "short_repr",
    "plural",
    "UnitError",
    "ParamsError",
    "DataIssue",
    "DataError",
    "ReferenceDataError",
    "StageError",
]


class HmlibError(Exception):
    """Base class of all errors hmlib raises on purpose (bad input, failed stage)."""

    exit_status = 1


#: longest echo of a user-supplied value in a message (a YAML bomb or a binary cell is cut)
MAX_ECHO = 80


def short_repr(value: object, *, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to ``limit`` characters (with its full length) so messages stay readable."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still reported
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``'1 problem'``, ``'3 problems'``: counts in messages without '(s)'."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


class InputError(HmlibError, ValueError):
    """Bad input that is neither a params key nor a data cell: a command-line argument, a path.

    The message names the argument or file, the value and what was expected.
    """

    exit_status = 2


class UnitError(HmlibError, ValueError):
    """An unknown unit, or a conversion between incompatible units."""

    exit_status = 2


class ReferenceDataError(HmlibError, KeyError):
    """A reference set or a value in it that does not exist."""

    exit_status = 2

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ParamsError(HmlibError, ValueError):
    """Region parameters that fail validation.

    Attributes
    ----------
    path : str
        The params file.
    problems : list of str
        One line per problem: ``key.path: bad value -> expected``.
    """

    exit_status = 2

    def __init__(self, path: str, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems[:50])
        if len(self.problems) > 50:
            lines += f"\n  ... and {len(self.problems) - 50} more"
        super().__init__(f"{self.path}: invalid parameters ({plural(len(self.problems), 'problem')}):\n{lines}")


@dataclass(frozen=True)
class DataIssue:
    """One bad cell (or row) of an input file.

    ``row`` is the line number as shown in the file by a text editor or spreadsheet:
    the header is row 1, the first data row is row 2. ``row`` is None for file-level
    problems (a missing column).
    """

    file: str
    row: int | None
    column: str | None
    value: object
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        val = "" if self.value is None else f" value {short_repr(self.value)}:"
        return f"{', '.join(where)}:{val} {self.message}"


@dataclass
class DataError(HmlibError, ValueError):
    """Input data that fail validation; carries every problem found, not just the first."""

    issues: list[DataIssue] = field(default_factory=list)
    exit_status = 2

    def __post_init__(self):
        ValueError.__init__(self, str(self))

    def __str__(self) -> str:
        n = len(self.issues)
        shown = self.issues[:50]
        more = f"\n  ... and {n - 50} more" if n > 50 else ""
        return f"invalid input data ({plural(n, 'problem')}):\n" + "\n".join(f"  - {i}" for i in shown) + more


class StageError(HmlibError, RuntimeError):
    """A stage notebook that failed; names the stage, the cell and the error."""

    def __init__(self, stage: str, cell: str | int | None, ename: str, evalue: str, notebook: str):
        self.stage, self.cell, self.ename, self.evalue, self.notebook = stage, cell, ename, evalue, notebook
        cell_txt = (f"cell {cell}" if isinstance(cell, int) else cell) if cell is not None else "an unknown cell"
        super().__init__(
            f"stage '{stage}' failed in {cell_txt}: {ename}: {evalue}\n  executed notebook kept at {notebook}"
        )
