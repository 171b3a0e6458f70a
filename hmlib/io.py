"""Loading and validating a region's input data.

:func:`load_region` reads the CSV file(s) named in a region's params, checks every cell and
returns a :class:`RegionData`. All problems are collected and raised together as one
:class:`~hmlib.errors.DataError`; each names the file, the row number as shown in the file
(header = row 1), the column and the value.

Checks: the file decodes in ``data.encoding`` (a failure names the row and column), splits on
``data.delimiter`` (a header that is one column naming several is reported with the delimiter
it seems to use), has a header with unique, non-empty names and at least
:data:`MIN_SAMPLES` data rows per medium, and every row has as many values as the header;
required columns present; metal values numeric, non-negative, below the physical bound of
their unit (:data:`MAX_CANONICAL`: no sample holds more than 10^6 mg/kg), or non-detects
(``<0.05`` = censored at 0.05; a token such as ``ND`` = censored at the configured detection
limit); coordinates numeric and inside the CRS's valid range; ids unique per medium.

Numbers are read strictly (ASCII digits, one decimal mark, optional exponent). A comma in a
number is never guessed: ``1,250`` may be 1250 or 1.25, so it is an error unless the params
declare ``data.decimal: ','`` or ``data.thousands: ','``. Metal values are converted to the
canonical unit of their medium (mg/kg for solids, ug/L for water) through
:func:`hmlib.units.convert`; non-detects are substituted by the configured rule.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, DataIssue, plural, short_repr
from .params import RegionParams, load_params
from .units import canonical_unit, convert, dimension

__all__ = ["RegionData", "load_region", "parse_concentration", "parse_number", "read_table", "file_sha256",
           "SUBSTITUTION_FACTORS", "MIN_SAMPLES", "MAX_CANONICAL"]

SUBSTITUTION_FACTORS = {"half_dl": 0.5, "dl": 1.0, "dl_sqrt2": 1.0 / np.sqrt(2.0), "zero": 0.0}
#: fewest samples of a medium the loader accepts: the data-quality summary needs four (the
#: bias-corrected kurtosis is undefined below n = 4; the Shapiro-Wilk test needs three)
MIN_SAMPLES = 4
#: physical upper bound of a concentration in each canonical unit: 10^6 mg/kg is the whole sample;
#: 10^9 ug/L is one kilogram per litre, beyond any dissolved concentration
MAX_CANONICAL = {"mg/kg": 1e6, "ug/L": 1e9}
_MISSING_TOKENS = {"", "na", "nan", "n/a", "null", "none", "-"}
#: every upper/lower-case spelling of the missing tokens: ``col.isin`` then matches as ``str.lower()`` would
_MISSING_SPELLINGS = frozenset("".join(t) for tok in _MISSING_TOKENS
                               for t in itertools.product(*[(ch.lower(), ch.upper()) for ch in tok]))
_LT = re.compile(r"^<\s*=?\s*(.*)$")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_COMMA_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", re.ASCII)
_COMMA_DECIMAL = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?", re.ASCII)
_SPACE_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:[ \u00a0\u202f']\d{3})+(?:[.,]\d+)?", re.ASCII)
_NOT_PLAIN = re.compile(r"[^0-9eE+\-.]")
_DELIMITER_CANDIDATES = [",", ";", "\t", "|"]
_DELIM_NAME = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_number(text: str, *, decimal: str = ".", thousands: str | None = None) -> tuple[float, str | None]:
    """Parse one numeric cell strictly.

    Parameters
    ----------
    text : str
        The cell as written in the file (surrounding blanks are ignored).
    decimal : {'.', ','}
        The decimal mark the params declare (``data.decimal``).
    thousands : str or None
        The thousands separator the params declare (``data.thousands``); None: none allowed.

    Returns
    -------
    tuple
        ``(value, problem)``: ``problem`` is None, or a message saying why the cell is not a
        number; a separator that could be a thousands separator or a decimal mark is a problem
        unless declared, never guessed.
    """
    t = str(text).strip()
    s = t
    if thousands:
        grp, dec = re.escape(thousands), re.escape(decimal)
        if re.fullmatch(rf"[+-]?\d{{1,3}}(?:{grp}\d{{3}})+(?:{dec}\d*)?(?:[eE][+-]?\d+)?", s, re.ASCII):
            s = s.replace(thousands, "")
    if decimal == ",":
        if "." in s:
            return np.nan, ("contains '.' although the decimal mark is ',' (data.decimal); a '.' used to group "
                            "thousands must be declared with data.thousands: '.'")
        if s.count(",") == 1:
            s = s.replace(",", ".")
    elif "," in s:
        if _COMMA_THOUSANDS.fullmatch(s):
            return np.nan, ("the comma may be a thousands separator (1,250 = 1250) or a decimal comma (1,250 = 1.25); "
                            "hmlib does not guess: remove it, or declare data.thousands: ',' or data.decimal: ','")
        if _COMMA_DECIMAL.fullmatch(s):
            return np.nan, ("has a decimal comma; declare data.decimal: ',' (with data.delimiter: ';' when fields "
                            "are separated by semicolons) or write the number with a '.'")
    if not _NUMBER.fullmatch(s):
        if thousands is None and _SPACE_THOUSANDS.fullmatch(s):
            return np.nan, "a blank or an apostrophe groups the digits; remove it or declare data.thousands"
        return np.nan, "not a number"
    v = float(s)
    if not np.isfinite(v):
        return np.nan, "not a finite number"
    return v, None


def _parse_column(col: pd.Series, *, decimal: str, thousands: str | None) -> tuple[pd.Series, dict]:
    """Numbers of a text column: ``(values, {index: problem})``; missing (NaN) cells stay NaN.

    Plain numbers take a vectorised path (the same strict pattern as :func:`parse_number`); every
    other cell goes through :func:`parse_number`, so both give the same value or problem.
    """
    present = col.notna()
    if decimal == "." and present.any():
        # whole column of plain numbers (digits, sign, '.', exponent only): float() accepts exactly the
        # strings of _NUMBER among these, so one C-level conversion gives the same values
        vals = col[present]
        joined = "".join(vals.tolist())
        if not _NOT_PLAIN.search(joined):
            try:
                num = vals.to_numpy(dtype=object).astype(float)
            except ValueError:
                num = None
            if num is not None and np.isfinite(num).all():
                out = pd.Series(np.nan, index=col.index, dtype=float)
                out[present.to_numpy()] = num
                return out, {}
    out = pd.Series(np.nan, index=col.index, dtype=float)
    s = col[present].astype(str).str.strip()
    problems: dict = {}
    if decimal == ".":
        fast = s.str.fullmatch(_NUMBER.pattern, flags=re.ASCII).fillna(False).astype(bool)
        vals = s[fast].astype(float)
        finite = np.isfinite(vals.to_numpy())
        out.loc[vals.index[finite]] = vals.to_numpy()[finite]
        rest = s[~fast].index.append(vals.index[~finite])
    else:
        rest = s.index
    for i in rest:
        v, problem = parse_number(s.at[i], decimal=decimal, thousands=thousands)
        if problem:
            problems[i] = problem
        else:
            out.at[i] = v
    return out, problems


def parse_concentration(text: str, *, nd_tokens, detection_limit: float | None, decimal: str = ".",
                        thousands: str | None = None):
    """Parse one concentration cell.

    Returns ``(value, censored, detection_limit, problem)``: value is NaN for a missing cell;
    for a non-detect, value is the detection limit and censored is True; ``problem`` is None
    or a message for a bad cell. ``decimal`` and ``thousands`` are as in :func:`parse_number`.
    """
    t = str(text).strip()
    if t.lower() in _MISSING_TOKENS:
        return np.nan, False, np.nan, None
    m = _LT.match(t)
    if m:
        dl, problem = parse_number(m.group(1), decimal=decimal, thousands=thousands)
        if problem:
            return np.nan, True, np.nan, f"detection limit after '<' {problem}; expected e.g. '<0.05'"
        if dl <= 0:
            return np.nan, True, np.nan, "detection limit must be > 0"
        return dl, True, dl, None
    if t in nd_tokens or t.lower() in {x.lower() for x in nd_tokens}:
        if detection_limit is None:
            return np.nan, True, np.nan, ("non-detect without a detection limit: write it as '<DL' (e.g. '<0.05') "
                                          "or set non_detects.detection_limits for this metal")
        return float(detection_limit), True, float(detection_limit), None
    v, problem = parse_number(t, decimal=decimal, thousands=thousands)
    if problem == "not a number":
        hint = " (values above a limit such as '>100' are not supported)" if t.startswith(">") else ""
        return np.nan, False, np.nan, f"not a number (expected a number, '<DL' for a non-detect, or blank){hint}"
    if problem:
        return np.nan, False, np.nan, problem
    if v < 0:
        return np.nan, False, np.nan, ("negative concentration; a non-detect is written '<DL', "
                                       "and sentinel values such as -999 are not accepted")
    return v, False, np.nan, None


@dataclass
class RegionData:
    """A region's validated input data.

    Attributes
    ----------
    params : RegionParams
    samples : DataFrame, one row per (sample_id, medium): sample_id, medium, x, y, plus site_id,
        group and covariate columns when configured, and ``source_file``/``source_row``.
    concentrations : long DataFrame: sample_id, medium, metal, value (canonical unit), unit,
        censored, detection_limit, imputed, reported (value as in the file, its own unit).
    grid : DataFrame of prediction cells (x, y, covariates) or None.
    files : dict name -> path of every input file read.
    missing : DataFrame of missing metal values (medium, metal, n_missing, imputation).
    """

    params: RegionParams
    samples: pd.DataFrame
    concentrations: pd.DataFrame
    grid: pd.DataFrame | None
    files: dict[str, str] = field(default_factory=dict)
    missing: pd.DataFrame | None = None

    @property
    def metals(self) -> list[str]:
        return list(self.params.metals)

    @property
    def media(self) -> list[str]:
        return list(self.params.media)

    def unit(self, medium: str) -> str:
        """Canonical unit of ``medium``'s concentrations (mg/kg for solids, ug/L for water)."""
        return canonical_unit(self.params.media[medium].unit)

    def wide(self, medium: str | None = None, *, values: str = "value") -> pd.DataFrame:
        """Concentrations of one medium as samples x metals (canonical unit; ``.attrs['unit']``)."""
        medium = medium or self.media[0]
        c = self.concentrations[self.concentrations["medium"] == medium]
        w = c.pivot(index="sample_id", columns="metal", values=values)
        w = w.reindex(columns=[m for m in self.metals if m in w.columns])
        order = self.samples.loc[self.samples["medium"] == medium, "sample_id"]
        w = w.reindex(order.to_numpy())
        w.columns.name = None
        w.attrs["unit"] = self.unit(medium)
        w.attrs["medium"] = medium
        return w

    def sites(self, medium: str | None = None) -> pd.DataFrame:
        """Sample attributes (coordinates, covariates) of one medium, indexed by sample_id."""
        medium = medium or self.media[0]
        return self.samples[self.samples["medium"] == medium].set_index("sample_id")

    def input_hashes(self) -> dict[str, str]:
        return {k: file_sha256(v) for k, v in self.files.items()}


@lru_cache(maxsize=32)
def _crs_bounds(crs: str):
    """Valid (xmin, ymin, xmax, ymax) of an EPSG CRS in its own coordinates (None if unknown)."""
    from pyproj import CRS, Transformer

    c = CRS.from_user_input(crs)
    if c.is_geographic:
        return (-180.0, -90.0, 180.0, 90.0)
    aou = c.area_of_use
    if aou is None:
        return None
    t = Transformer.from_crs("EPSG:4326", c, always_xy=True)
    xmin, ymin, xmax, ymax = t.transform_bounds(aou.west, aou.south, aou.east, aou.north, densify_pts=21)
    # tolerate a margin of 10% of the extent: areas of use are drawn tight to borders
    dx, dy = 0.1 * (xmax - xmin), 0.1 * (ymax - ymin)
    return (xmin - dx, ymin - dy, xmax + dx, ymax + dy)


def _decode(blob: bytes, encoding: str, fname: str, delimiter: str, issues: list[DataIssue]) -> str | None:
    """Bytes -> text in ``encoding`` (a UTF-8 byte-order mark is dropped); a failure names row and column."""
    enc = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        text = blob.decode(enc)
    except UnicodeDecodeError as e:
        row = blob[: e.start].count(b"\n") + 1
        line_start = blob.rfind(b"\n", 0, e.start) + 1
        header = blob.split(b"\n", 1)[0].decode(enc, errors="replace").lstrip("\ufeff").rstrip("\r")
        names = [c.strip() for c in next(csv.reader([header], delimiter=delimiter), [])]
        k = blob[line_start: e.start].decode(enc, errors="replace").count(delimiter)
        col = names[k] if row > 1 and k < len(names) else None
        utf16 = blob[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or blob[:200].count(b"\x00") > 20
        guess = "UTF-16 (declare data.encoding: utf-16)" if utf16 else \
            "often latin-1 or cp1252 for files saved by Excel: save the file as UTF-8 or declare e.g. data.encoding: cp1252"
        issues.append(DataIssue(fname, row, col, None,
                                f"byte 0x{blob[e.start]:02x} cannot be read as {encoding}; the file uses another "
                                f"text encoding ({guess})"))
        return None
    return text.lstrip("\ufeff")


_BLANK_BYTE = np.zeros(256, dtype=bool)
_BLANK_BYTE[[9, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # ASCII characters str.strip() removes, but '\n'


def _edge_blanks(b: np.ndarray, delimiter: str) -> bool:
    """Whether any cell of the UTF-8 bytes ``b`` may start or end with a blank (conservative).

    Any non-ASCII byte counts as a possible blank (Unicode spaces); an ASCII blank counts when it
    touches a delimiter, a line end or an end of the text.
    """
    if (b >= 128).any():
        return True
    pos = np.flatnonzero(_BLANK_BYTE[b])
    if not len(pos):
        return False
    if pos[0] == 0 or pos[-1] == len(b) - 1:
        return True
    stop = (b == 10) | (b == ord(delimiter))
    return bool(stop[pos - 1].any() or stop[pos + 1].any())


def _read_regular(text: str, delimiter: str) -> pd.DataFrame | None:
    """The table of a regular CSV text through pandas' C parser, or None to take the checking reader.

    Regular means: no quote character and no lone carriage return (so one line is one record),
    every line holding the header's number of fields, a header of unique non-empty names and at
    least one data row. Such a text gives the same frame as the row-by-row reader of
    :func:`read_table` (cells stripped, rows of empty cells dropped, index = file row - 2); any other
    text returns None and the row-by-row reader reports its problems with file, row and column.
    Hand-written check rather than a csv dialect option: pandas does not report the row-length or
    blank-line problems the reader must name, so irregular files must not reach it.
    """
    if '"' in text or len(delimiter) != 1 or not delimiter.isascii() or delimiter in "\r\n":
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            return None
    if not text.endswith("\n"):
        text += "\n"
    # fields per line from the bytes (vectorised): delimiters between consecutive line ends
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    ends = np.flatnonzero(b == 10)
    if len(ends) < 2:
        return None
    n_delim = np.diff(np.searchsorted(np.flatnonzero(b == ord(delimiter)), ends), prepend=0)
    if n_delim[0] < 1 or not (n_delim == n_delim[0]).all():
        return None
    line_len = np.diff(ends, prepend=-1) - 1
    if line_len.max() >= csv.field_size_limit():  # the reader rejects a field this long: let it say so
        return None
    header = [c.strip() for c in text[: text.index("\n")].split(delimiter)]
    if "" in header or len(set(header)) != len(header):
        return None
    try:
        raw = pd.read_csv(io.StringIO(text), sep=delimiter, header=None, dtype=str, keep_default_na=False,
                          na_filter=False, skip_blank_lines=False, quoting=csv.QUOTE_NONE, engine="c",
                          skiprows=1)
    except (pd.errors.ParserError, ValueError):
        return None
    if raw.shape != (len(ends) - 1, len(header)):
        return None
    # blanks at the edge of a cell (next to a delimiter or a line end): strip every cell as the reader does
    if _edge_blanks(b, delimiter):
        out = pd.DataFrame({name: raw[j].str.strip() for j, name in enumerate(header)})
        keep = (out != "").any(axis=1).to_numpy()
    else:
        out = raw.set_axis(header, axis=1)
        # no blanks at cell edges: a row of empty cells is a line of delimiters only
        keep = (line_len != n_delim)[1:]
    if not keep.any():
        return None
    out = out[keep] if not keep.all() else out
    # data row k (0-based) is file row k + 2: the index is the file row minus 2
    out.index = pd.Index(np.flatnonzero(keep), dtype=int)
    return out


def read_table(path: str | Path, *, encoding: str = "utf-8", delimiter: str = ",",
               issues: list[DataIssue], what: str = "sample") -> pd.DataFrame | None:
    """Read a CSV file as text cells, checking its structure.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    encoding : str
        Its text encoding (``data.encoding``).
    delimiter : str
        Its field separator (``data.delimiter``).
    issues : list of DataIssue
        Problems found are appended here (file, row as shown in the file, column, value).
    what : str
        What one row holds, for messages ("sample", "grid cell").

    Returns
    -------
    DataFrame or None
        Every cell as stripped text; the index is the row number in the file minus 2 (so
        ``index + 2`` is the row a spreadsheet shows, the header being row 1). None when the
        file cannot be read as a table (the reasons are in ``issues``).
    """
    path = Path(path)
    fname = str(path)
    if path.is_dir():
        issues.append(DataIssue(fname, None, None, None, "is a folder; expected a CSV file"))
        return None
    if not path.is_file():
        issues.append(DataIssue(fname, None, None, None, "file not found"))
        return None
    try:
        blob = path.read_bytes()
    except OSError as e:
        issues.append(DataIssue(fname, None, None, None, f"cannot be read: {e.strerror or e}"))
        return None
    if not blob.strip():
        issues.append(DataIssue(fname, None, None, None,
                                f"file is empty; expected a header row naming the columns and one row per {what}"))
        return None
    text = _decode(blob, encoding, fname, delimiter, issues)
    if text is None:
        return None
    if "\x00" in text:
        row = text[: text.index("\x00")].count("\n") + 1
        issues.append(DataIssue(fname, row, None, None, "contains a NUL character; expected a text file "
                                                        "(a UTF-16 file needs data.encoding: utf-16)"))
        return None
    fast = _read_regular(text, delimiter)
    if fast is not None:
        return fast
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for rec in reader:
            line, start = start, reader.line_num + 1
            if not any(c.strip() for c in rec):
                continue  # blank line, or a row of empty cells left by a spreadsheet
            records.append((line, rec))
    except csv.Error as e:
        msg = "contains a NUL byte; expected a text file" if "NUL" in str(e) else f"cannot be read as CSV: {e}"
        issues.append(DataIssue(fname, start, None, None, msg))
        return None
    if not records:
        issues.append(DataIssue(fname, None, None, None,
                                f"file is empty; expected a header row naming the columns and one row per {what}"))
        return None
    head_line, header = records[0]
    header = [c.strip() for c in header]
    # a header that is one column naming several: the fields are separated by another character
    if len(header) == 1:
        for cand in _DELIMITER_CANDIDATES:
            if cand != delimiter and header[0].count(cand) >= 1:
                issues.append(DataIssue(fname, head_line, None, short_repr(header[0], limit=60),
                                        f"the header is one column, so fields are not separated by "
                                        f"{_DELIM_NAME[delimiter]}; the file seems to use {_DELIM_NAME[cand]}: "
                                        f"declare data.delimiter: {_DELIM_NAME[cand] if cand != chr(9) else 'tab'}"))
                return None
    n = len(header)
    bad = False
    rows = records[1:]
    # columns without a name: dropped when empty (a trailing separator), an error otherwise
    unnamed = [j for j, c in enumerate(header) if c == ""]
    keep = [j for j in range(n) if j not in unnamed]
    for j in unnamed:
        if any(j < len(r) and r[j].strip() for _, r in rows):
            issues.append(DataIssue(fname, head_line, None, None,
                                    f"column {j + 1} has values but no name in the header; expected a name"))
            bad = True
    seen: dict[str, int] = {}
    for j, c in enumerate(header):
        if c == "":
            continue
        if c in seen:
            issues.append(DataIssue(fname, head_line, c, None,
                                    f"column name appears more than once in the header (columns {seen[c] + 1} "
                                    f"and {j + 1}); expected unique names"))
            bad = True
        else:
            seen[c] = j
    if not rows:
        issues.append(DataIssue(fname, None, None, None,
                                f"the file has a header but no data rows; expected one row per {what}"))
        return None
    cells, index = [], []
    for line, rec in rows:
        if len(rec) > n and not any(c.strip() for c in rec[n:]):
            rec = rec[:n]  # trailing empty fields
        if len(rec) != n:
            hint = ""
            if len(rec) > n and delimiter == ",":
                hint = ("; a decimal comma or a comma inside an unquoted value splits a field: quote such values, "
                        "or use ';' between fields and declare data.delimiter: ';'")
            issues.append(DataIssue(fname, line, None, None,
                                    f"row has {len(rec)} values but the header has {n} columns{hint}"))
            bad = True
            continue
        cells.append([rec[j].strip() for j in keep])
        index.append(line - 2)
    if bad:
        return None
    return pd.DataFrame(cells, columns=[header[j] for j in keep], index=pd.Index(index, dtype=int), dtype=str)


def _read_csv(path: Path, p: RegionParams, issues: list[DataIssue], what: str = "sample") -> pd.DataFrame | None:
    return read_table(path, encoding=p.data.encoding, delimiter=p.data.delimiter, issues=issues, what=what)


def _check_columns(df, path, required, issues) -> bool:
    missing = [c for c in required if c not in df.columns]
    lower = {c.lower(): c for c in df.columns}
    for c in missing:
        near = lower.get(c.lower())
        hint = f"; a column {near!r} differs only in upper/lower case" if near else ""
        issues.append(DataIssue(str(path), 1, c, None,
                                f"required column missing from the header (columns present: "
                                f"{short_repr(', '.join(df.columns), limit=300)[1:-1]}){hint}"))
    return not missing


def _parse_coords(df, path, p: RegionParams, issues):
    out = {}
    bounds = p.data.coordinate_bounds
    if bounds is None and p.data.crs != "local":
        bounds = _crs_bounds(p.data.crs)
    for col in (p.data.x_column, p.data.y_column):
        vals, problems = _parse_column(df[col], decimal=p.data.decimal, thousands=p.data.thousands)
        for i, problem in problems.items():
            raw = df.at[i, col]
            what = "coordinate is missing" if str(raw).strip() == "" else f"coordinate: {problem}"
            issues.append(DataIssue(str(path), int(i) + 2, col, raw, what))
        if problems:
            vals = vals.copy()
            vals.loc[list(problems)] = np.nan
        out[col] = vals
    if bounds is not None:
        xmin, ymin, xmax, ymax = bounds
        where = f"CRS {p.data.crs}" if p.data.coordinate_bounds is None else "data.coordinate_bounds"
        for col, lo, hi, axis in ((p.data.x_column, xmin, xmax, "x"), (p.data.y_column, ymin, ymax, "y")):
            v = out[col]
            outside = v.notna() & ~v.between(lo, hi)
            for i in v.index[outside.to_numpy()]:
                issues.append(DataIssue(str(path), int(i) + 2, col, df[col].at[i],
                                        f"{axis} coordinate outside the valid range [{lo:.6g}, {hi:.6g}] of {where}"))
    return out[p.data.x_column], out[p.data.y_column]


def _numeric_column(col: pd.Series, name: str, fname: str, p: RegionParams, issues: list[DataIssue]) -> pd.Series:
    """Numbers of a covariate column (missing cells stay NaN); each bad cell becomes an issue."""
    out, problems = _parse_column(col, decimal=p.data.decimal, thousands=p.data.thousands)
    for i, problem in problems.items():
        if problem == "not a number":
            problem = "covariate is not a number (list it under data.categorical if it is a class)"
        issues.append(DataIssue(fname, int(i) + 2, name, col.at[i], problem))
    return out


def _implausible(value: float, unit: str, medium: str) -> str | None:
    """A message when ``value`` (in ``unit``) exceeds the physical bound of its dimension, else None."""
    if not np.isfinite(value):
        return None
    canon = canonical_unit(unit)
    v = float(convert(value, unit, canon))
    bound = MAX_CANONICAL[canon]
    if v > bound:
        what = "the whole sample" if dimension(unit) == "mass_fraction" else "one kilogram per litre"
        return (f"{v:.3g} {canon} is above {bound:,.0f} {canon} ({what}), which is impossible; "
                f"check the value and the unit declared for {medium} under media")
    return None


def _load_table(path: Path, medium_fixed: str | None, p: RegionParams, issues: list[DataIssue]):
    d = p.data
    df = _read_csv(path, p, issues)
    if df is None:
        return None, None
    # with one file per medium, covariates may be measured in some media only (salinity in water)
    covs_required = [] if isinstance(p.data.samples, dict) else list(d.covariates)
    required = [d.id_column, d.x_column, d.y_column, *p.metals.values(), *covs_required]
    for c in (d.medium_column if medium_fixed is None else None, d.site_column, d.group_column):
        if c:
            required.append(c)
    if not _check_columns(df, path, list(dict.fromkeys(required)), issues):
        return None, None
    fname = str(path)
    # medium
    if medium_fixed is None and d.medium_column:
        med = df[d.medium_column].str.strip()
        for i, m in med.items():
            if m not in p.media:
                issues.append(DataIssue(fname, int(i) + 2, d.medium_column, m,
                                        f"unknown medium; expected one of {', '.join(p.media)} (as declared under media)"))
    else:
        med = pd.Series(medium_fixed or next(iter(p.media)), index=df.index)
    # ids
    ids = df[d.id_column].str.strip()
    for i, v in ids.items():
        if v == "":
            issues.append(DataIssue(fname, int(i) + 2, d.id_column, v, "empty sample id"))
    dup_mask = pd.DataFrame({"id": ids, "medium": med}).duplicated(keep=False) & (ids != "")
    for (sid, _m), grp in pd.DataFrame({"id": ids, "medium": med})[dup_mask].groupby(["id", "medium"]):
        rows = [int(i) + 2 for i in grp.index]
        for r in rows[1:]:
            issues.append(DataIssue(fname, r, d.id_column, sid, f"duplicate sample id (first at row {rows[0]})"))
    x, y = _parse_coords(df, path, p, issues)
    samples = pd.DataFrame({"sample_id": ids, "medium": med, "x": x, "y": y})
    if d.site_column:
        samples["site_id"] = df[d.site_column].str.strip()
    if d.group_column:
        samples["group"] = df[d.group_column].str.strip()
    for c in d.covariates:
        if c not in df.columns:  # one file per medium: a covariate measured in another medium only
            samples[c] = np.nan
            continue
        col = df[c].str.strip()
        col = col.where(~col.isin(_MISSING_SPELLINGS))
        if c in d.categorical:
            samples[c] = col
        else:
            samples[c] = _numeric_column(col, c, fname, p, issues)
    samples["source_file"] = fname
    samples["source_row"] = df.index.to_numpy() + 2
    # concentrations
    nd = p.non_detects
    recs = []
    parts = []
    plain_all = _plain_concentrations(df, med, p)
    for metal, col in p.metals.items():
        plain = plain_all[col]
        if plain is not None:  # every cell a plain, plausible number: one vectorised block
            ok = med.isin(list(p.media)).to_numpy()
            parts.append(pd.DataFrame({"sample_id": ids.to_numpy()[ok], "medium": med.to_numpy()[ok], "metal": metal,
                                       "reported": plain[ok], "unit_reported": [p.media[m].unit for m in med[ok]],
                                       "censored": False, "detection_limit": np.nan, "raw": df[col].to_numpy()[ok]}))
            continue
        for i, raw in df[col].items():
            medium = med.at[i]
            if medium not in p.media:
                continue
            unit = p.media[medium].unit
            dl_cfg = nd.detection_limits.get(metal)
            val, cens, dl, problem = parse_concentration(raw, nd_tokens=nd.tokens, detection_limit=dl_cfg,
                                                         decimal=d.decimal, thousands=d.thousands)
            if problem:
                issues.append(DataIssue(fname, int(i) + 2, col, raw, problem))
                continue
            problem = _implausible(val, unit, medium)
            if problem:
                issues.append(DataIssue(fname, int(i) + 2, col, raw, problem))
                continue
            recs.append((ids.at[i], medium, metal, val, unit, cens, dl, raw))
        parts.append(pd.DataFrame(recs, columns=_CONC_COLUMNS))
        recs = []
    conc = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(recs, columns=_CONC_COLUMNS)
    conc = conc.astype({"censored": bool, "reported": float, "detection_limit": float})
    return samples, conc


_CONC_COLUMNS = ["sample_id", "medium", "metal", "reported", "unit_reported", "censored", "detection_limit", "raw"]


def _plain_concentrations(df: pd.DataFrame, med: pd.Series, p: RegionParams) -> dict:
    """Per metal column, its values when every cell is a plain non-negative plausible number, else None.

    The vectorised path for the common case; a column with any other cell (blank, non-detect, comma,
    bad value) is parsed cell by cell by :func:`parse_concentration`, which names each problem.
    """
    out = {}
    numeric_tokens = any(_NUMBER.fullmatch(str(t).strip()) for t in p.non_detects.tokens)
    for col in p.metals.values():
        out[col] = None
        if p.data.decimal != "." or numeric_tokens:
            continue
        vals, problems = _parse_column(df[col], decimal=".", thousands=None)
        if problems or vals.isna().any() or (vals < 0).any():
            continue
        ok = True
        for medium in p.media:
            sel = (med == medium).to_numpy()
            if not sel.any():
                continue
            unit = p.media[medium].unit
            canon = canonical_unit(unit)
            if (np.asarray(convert(vals.to_numpy()[sel], unit, canon)) > MAX_CANONICAL[canon]).any():
                ok = False
        if ok:
            out[col] = vals.to_numpy()
    return out


def _check_sample_counts(tables, files: dict[str, str], p: RegionParams, issues: list[DataIssue]) -> None:
    """Every declared medium needs at least :data:`MIN_SAMPLES` samples."""
    samples = pd.concat([t[0] for t in tables], ignore_index=True)
    one_file = not isinstance(p.data.samples, dict)
    for medium in p.media:
        fname = files["samples"] if one_file else files.get(f"samples:{medium}", "data.samples")
        n = int((samples["medium"] == medium).sum())
        col = p.data.medium_column if one_file and p.data.medium_column else None
        if n < MIN_SAMPLES:
            issues.append(DataIssue(fname, None, col, None,
                                    f"{plural(n, 'sample')} of {medium}; expected at least {MIN_SAMPLES} "
                                    "(the summary statistics of the data-quality section need four values)"))


def load_region(params: RegionParams | str | Path) -> RegionData:
    """Load and validate the data of a region.

    Parameters
    ----------
    params : validated :class:`RegionParams` or the path of a params YAML file.

    Raises
    ------
    DataError
        Listing every bad cell with file, row, column and value.
    """
    p = load_params(params) if not isinstance(params, RegionParams) else params
    issues: list[DataIssue] = []
    files: dict[str, str] = {}
    tables = []
    if isinstance(p.data.samples, dict):
        for medium, rel in p.data.samples.items():
            path = p.resolve(rel)
            files[f"samples:{medium}"] = str(path)
            tables.append(_load_table(path, medium, p, issues))
    else:
        path = p.resolve(p.data.samples)
        files["samples"] = str(path)
        tables.append(_load_table(path, None, p, issues))
    grid = None
    if p.data.grid:
        gpath = p.resolve(p.data.grid)
        files["grid"] = str(gpath)
        g = _read_csv(gpath, p, issues, what="grid cell")
        if g is not None and _check_columns(g, gpath, [p.data.x_column, p.data.y_column], issues):
            gx, gy = _parse_coords(g, gpath, p, issues)
            grid = g.drop(columns=[p.data.x_column, p.data.y_column]).copy()
            for c in grid.columns:
                if c in p.data.categorical:
                    continue
                col = grid[c].where(~grid[c].isin(_MISSING_SPELLINGS))
                if c in p.data.covariates:  # declared numeric: every cell must be a number
                    grid[c] = _numeric_column(col, c, str(gpath), p, issues)
                    continue
                num = pd.to_numeric(col, errors="coerce")
                if num.notna().sum() == col.notna().sum():
                    grid[c] = num
            grid.insert(0, "y", gy)
            grid.insert(0, "x", gx)
    if not issues:
        _check_sample_counts(tables, files, p, issues)
    if issues:
        raise DataError(issues)
    samples = pd.concat([t[0] for t in tables], ignore_index=True)
    conc = pd.concat([t[1] for t in tables], ignore_index=True)
    # unit conversion to the canonical unit of each medium, then non-detect substitution
    conc["unit"] = [canonical_unit(u) for u in conc["unit_reported"]]
    value = np.empty(len(conc))
    dl = np.empty(len(conc))
    for (u_from, u_to), idx in conc.groupby(["unit_reported", "unit"]).groups.items():
        value[conc.index.get_indexer(idx)] = convert(conc.loc[idx, "reported"].to_numpy(float), u_from, u_to)
        dl[conc.index.get_indexer(idx)] = convert(conc.loc[idx, "detection_limit"].to_numpy(float), u_from, u_to)
    factor = SUBSTITUTION_FACTORS[p.non_detects.substitution]
    conc["detection_limit"] = dl
    conc["value"] = np.where(conc["censored"], dl * factor, value)
    conc["imputed"] = False
    miss_rows = []
    for (medium, metal), grp in conc.groupby(["medium", "metal"], sort=False):
        n_miss = int(grp["value"].isna().sum())
        miss_rows.append({"medium": medium, "metal": metal, "n_missing": n_miss,
                          "imputation": p.non_detects.imputation if n_miss else "none needed"})
        if n_miss and p.non_detects.imputation == "median":
            med = grp["value"].median()
            idx = grp.index[grp["value"].isna()]
            conc.loc[idx, "value"] = med
            conc.loc[idx, "imputed"] = True
    if p.non_detects.imputation == "drop":
        bad = conc.loc[conc["value"].isna(), ["sample_id", "medium"]].drop_duplicates()
        key = set(map(tuple, bad.to_numpy()))
        conc = conc[[(s, m) not in key for s, m in zip(conc["sample_id"], conc["medium"])]]
        samples = samples[[(s, m) not in key for s, m in zip(samples["sample_id"], samples["medium"])]]
    conc = conc[["sample_id", "medium", "metal", "value", "unit", "censored", "detection_limit", "imputed",
                 "reported", "unit_reported", "raw"]].reset_index(drop=True)
    return RegionData(params=p, samples=samples.reset_index(drop=True), concentrations=conc, grid=grid,
                      files=files, missing=pd.DataFrame(miss_rows))
