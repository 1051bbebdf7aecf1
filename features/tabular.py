"""Session tables: schema, CSV loading with exact error locations, and the Preprocessor.

A *session table* is a CSV with one row per browsing session (or per user), a 0/1 target
column and feature columns that play one of two roles:

- numeric: a quantity (count, duration, rate); optionally ``log1p``-transformed, then
  standardised with the training mean and standard deviation;
- categorical: a code or label; one-hot encoded over the training categories plus one
  explicit *unseen* bucket for values never seen in training.

Row numbers in every error message are **1-based data rows**: the first row below the header
is row 1. The line given beside it is the physical line of the file where the row starts
(line ``r + 1`` unless a quoted field holds a line break or a line is blank), found by
reading the file again once an error names the row (:class:`CsvTable`); a pipe cannot be
read again, and its messages give the data row only. The fitted state is stored as
``preprocess.json`` (format in ``docs/architecture.md``): plain JSON, never a pickle.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from nn_core.network import MAX_INPUTS
from nn_core.preprocessing import (
    DEFAULT_RANK_KNOTS,
    ENCODING_KINDS,
    MAX_PLE_BINS,
    MAX_RANK_KNOTS,
    MIN_RANK_KNOTS,
    MISSING,
    MISSING_TOKENS,
    NUMERIC_ENCODINGS,
    ON_INVALID,
    PLE_BINNINGS,
    RANK_CLIP,
    TARGET_LABELS,
    Preprocessing,
    above_maximum,
    below_minimum,
    block_width,
    canonical_series,
    canonical_text,
    missing_mask,
)

# The UCI "Online Shoppers Purchasing Intention" columns (data/README.md).
UCI_TARGET = "Revenue"
UCI_NUMERIC = (
    "Administrative",
    "Administrative_Duration",
    "Informational",
    "Informational_Duration",
    "ProductRelated",
    "ProductRelated_Duration",
    "BounceRates",
    "ExitRates",
    "PageValues",
    "SpecialDay",
)
# OperatingSystems, Browser, Region and TrafficType are integer *codes*, not quantities.
UCI_CATEGORICAL = (
    "Month",
    "OperatingSystems",
    "Browser",
    "Region",
    "TrafficType",
    "VisitorType",
    "Weekend",
)
# Counts and durations cannot be negative; rates and the SpecialDay closeness are in [0, 1].
UCI_RANGES: dict[str, tuple[float | None, float | None]] = {
    **{name: (0.0, None) for name in UCI_NUMERIC},
    "BounceRates": (0.0, 1.0),
    "ExitRates": (0.0, 1.0),
    "SpecialDay": (0.0, 1.0),
}

_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


class DataError(ValueError):
    """A problem in an input file, located by file, data row and column.

    Parameters
    ----------
    path : str or Path
        The file the problem is in.
    problem : str
        What is wrong, in words.
    row : int, optional
        1-based data row (row 1 is the first row below the header, i.e. file line 2).
    column : str, optional
        Column name.
    value : object, optional
        The offending cell text.
    line : int, optional
        The physical line where the row starts (:meth:`CsvTable.__exit__` finds it); by
        default ``row + 1``; 0: unknown (a pipe), not shown.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        problem: str,
        row: int | None = None,
        column: str | None = None,
        value: object = None,
        line: int | None = None,
    ) -> None:
        self.path = str(path)
        self.problem = problem
        self.row = row
        self.column = column
        self.value = value
        self.line = line
        where = [self.path]
        if row is None and line:
            where.append(f"line {line}")
        elif row is not None and is_parquet(self.path):
            where.append(f"data row {row} (Parquet row index {row - 1})")
        elif row is not None and line == 0:
            where.append(f"data row {row} (row 1 is the first row below the header)")
        elif row is not None:
            where.append(f"data row {row} (line {row + 1 if line is None else line}; row 1 "
                         "is the first row below the header)")
        if column is not None:
            where.append(f"column {column!r}")
        message = ", ".join(where) + ": " + problem
        if value is not None:
            message += f" (value: {value!r})"
        super().__init__(message)


@dataclass(frozen=True)
class Schema:
    """Column roles and allowed ranges of a session table.

    Parameters
    ----------
    target : str or None
        Name of the 0/1 target column (``None`` when scoring unlabelled data).
    numeric, categorical : tuple of str
        Feature columns by role, in feature order (numeric first).
    id_column : str or None
        Optional column that identifies a row (written by predict.py); not a feature.
    ranges : mapping of str to (low, high)
        Inclusive bounds for numeric columns; ``None`` means unbounded on that side.
    """

    target: str | None
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    id_column: str | None = None
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [*self.numeric, *self.categorical]
        if not names:
            raise ValueError("the schema has no feature columns (give numeric and/or categorical)")
        seen: set[str] = set()
        for name in names + [c for c in (self.target, self.id_column) if c is not None]:
            if name in seen:
                raise ValueError(f"column {name!r} is given more than one role")
            seen.add(name)
        _check_range_columns(self.ranges, self.numeric)

    @classmethod
    def uci(cls) -> Schema:
        """The UCI online-shoppers schema (the default roles of train.py)."""
        return cls(UCI_TARGET, UCI_NUMERIC, UCI_CATEGORICAL, None, dict(UCI_RANGES))

    @property
    def features(self) -> tuple[str, ...]:
        """Feature columns in feature order."""
        return (*self.numeric, *self.categorical)

    def required(self, with_target: bool) -> list[str]:
        """Columns a file must have (the id column is checked separately)."""
        cols = list(self.features)
        if with_target and self.target is not None:
            cols.append(self.target)
        return cols


def schema_from_config(path: str | os.PathLike) -> dict:
    """Read a JSON role file: ``{"target", "numeric", "categorical", "id_column", "ranges"}``.

    Every key is optional; the result is a dict of the keys present (checked for type), so
    command-line flags can override single entries. ``ranges`` maps a column to
    ``[low, high]`` with ``null`` for an open side.

    Raises
    ------
    DataError
        Naming the file and key when the file is missing, not JSON or has a wrong type.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(path, f"cannot read config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting too deep
        raise DataError(path, f"not valid JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise DataError(path, "the config must be a JSON object")
    allowed = {"target", "numeric", "categorical", "id_column", "ranges"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DataError(path, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    out: dict = {}
    for key in ("target", "id_column"):
        if key in raw:
            if raw[key] is not None and not isinstance(raw[key], str):
                raise DataError(path, f"key {key!r} must be a string or null")
            out[key] = raw[key]
    for key in ("numeric", "categorical"):
        if key in raw:
            value = raw[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DataError(path, f"key {key!r} must be a list of column names")
            out[key] = tuple(value)
    if "ranges" in raw:
        try:
            out["ranges"] = parse_ranges(raw["ranges"])
        except ValueError as exc:
            raise DataError(path, str(exc)) from None
    return out


def parse_ranges(ranges) -> dict[str, tuple]:
    """The ``ranges`` of a role file, ``{column: [low, high]}`` (``None``: an open side),
    as ``{column: (low, high)}``; ValueError saying what is wrong."""
    if not isinstance(ranges, dict):
        raise ValueError("key 'ranges' must be an object {column: [low, high]}")
    return {name: _range_bounds(f"ranges[{name!r}]", bounds) for name, bounds in ranges.items()}


def _real_bound(b) -> bool:
    """Whether ``b`` is a real number a float holds, not NaN (a bool or a complex is not;
    an integer of 400 digits overflows float)."""
    if isinstance(b, bool) or not isinstance(b, int | float | np.integer | np.floating):
        return False
    try:
        return not math.isnan(float(b))
    except OverflowError:
        return False


def quoted(value: object, limit: int = 60) -> str:
    """``repr`` of a bad value for an error message, cut after ``limit`` characters (a long
    string or a 400-digit integer is named, not echoed in full)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(value)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def _range_bounds(label: str, bounds) -> tuple:
    """``bounds`` as ``(low, high)``: two numbers or ``None`` (an open side), not NaN, with
    ``low <= high``; ValueError starting with ``label`` (``"ranges['x']"``) otherwise. The
    one check of a range's form, for a role file's ranges, a schema's and a Preprocessor's.
    """
    ok = isinstance(bounds, list | tuple) and len(bounds) == 2 and all(
        b is None or _real_bound(b) for b in bounds)
    if not ok:
        raise ValueError(f"{label} must be [low, high] (numbers or null; not NaN, within "
                         f"float range), got {quoted(bounds)}")
    low, high = bounds
    if low is not None and high is not None and low > high:
        raise ValueError(f"{label}: low {low} is above high {high}")
    return low, high


def _check_range_columns(ranges: Mapping, numeric: Sequence[str]) -> None:
    """ValueError when ``ranges`` names a column that is not in ``numeric``."""
    for name in ranges:
        if name not in numeric:
            raise ValueError(f"range given for {name!r}, which is not a numeric column")


# --------------------------------------------------------------------------- reading

#: The longest header row read (bytes). A longer one is refused rather than read whole: a
#: binary file without line breaks would otherwise be read into memory looking for its end.
MAX_HEADER_BYTES = 16 * 2**20

# The first bytes of compressed and archive formats, which are refused by name.
_MAGIC = {
    b"\x1f\x8b": "gzip-compressed",
    b"PK\x03\x04": "a zip archive",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ\x00": "xz-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
}
_BOM = b"\xef\xbb\xbf"


class _Prefixed(io.RawIOBase):
    """A stream of ``head`` followed by the rest of ``rest``: the header row, read once
    (a pipe cannot be read twice), handed back to the CSV parser in front of the data."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if len(self._head):
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(buffer)


def _header_record(fh: io.BufferedReader, path) -> bytes:
    """The bytes of the header row (up to and including its line break), read from ``fh``.

    A row continues over a line break inside quotes, so lines are read until the quotes
    balance (a quote inside a quoted field is doubled, which keeps the count even).
    """
    head = fh.peek(8)[:8]
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise DataError(path, f"the file is {what}, not a CSV text file (decompress it "
                            "first)")
    record = b""
    while True:
        line = fh.readline(MAX_HEADER_BYTES + 1 - len(record))
        record += line
        if len(record) > MAX_HEADER_BYTES:
            raise DataError(path, f"the header row is longer than {MAX_HEADER_BYTES:,} bytes "
                            "(is this a CSV file?)")
        if not line or record.count(b'"') % 2 == 0:
            return record


def _parse_header(record: bytes, path) -> list[str]:
    """The stripped column names of a header row, checked: text, not empty, no empty or
    duplicate names."""
    if b"\x00" in record:
        raise DataError(path, "the file is binary (NUL bytes in the first row), not a CSV "
                        "text file")
    try:
        text = record.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a UTF-8 text file (header row, byte {exc.start + 1}: "
                        f"{exc.reason})") from None
    if not text.strip(" \t\r\n"):
        raise DataError(path, "the file is empty (no header row)")
    # The csv module limits a field to 128 KiB by default; the header was read with a
    # bound of its own (MAX_HEADER_BYTES), which is the limit that applies here.
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, MAX_HEADER_BYTES))
    try:
        header = next(csv.reader(io.StringIO(text), skipinitialspace=True), [])
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV header row: {exc}") from None
    finally:
        csv.field_size_limit(limit)
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for i, name in enumerate(names, start=1):
        if not name:
            raise DataError(path, f"header field {i} is empty")
        if name in seen:
            raise DataError(path, "column name appears twice in the header", column=name)
        seen.add(name)
    return names


def _open_error(path, exc: OSError) -> DataError:
    if isinstance(exc, FileNotFoundError):
        return DataError(path, "file not found")
    if isinstance(exc, IsADirectoryError):
        return DataError(path, "is a directory, not a CSV file")
    return DataError(path, f"cannot read file: {exc.strerror or exc}")


class CsvTable:
    """One pass over a CSV file: opened once, header checked, then chunks of cells.

    The file is opened and read exactly once, so a pipe (``--data <(zcat f.gz)``) works as
    well as a file. The header row is checked on opening (:attr:`header`); iterating
    yields ``(first_row, cells)``: ``first_row`` is the 1-based data row of the chunk's
    first row, and ``cells`` has every column under its stripped name, as text (a
    ``pd.Categorical`` of the cells' texts, which holds each distinct text once), except
    the columns named in ``numeric``, which the CSV parser converts where it can: such a
    column comes as int64 or float64 when every cell of the chunk is a number, and as
    text otherwise (``parse_frame`` then scans it cell by cell).

    A row with fewer fields than the header (the parser fills it with empty cells) is
    malformed, as one with more: at the end of a regular file whose last column had an
    empty cell, the file's commas outside quotes are counted (only too few of them make it
    read again with the csv module) and the first such row raises; earlier, a cell error
    at or after it names it instead (:meth:`__exit__`). A pipe cannot be read again: its
    short rows are found only where their empty cells are errors (missing values).

    Parameters
    ----------
    path : path-like
        The CSV file (or a named pipe, ``/dev/stdin``).
    chunksize : int
        Rows per chunk.
    numeric : iterable of str
        Columns to read as numbers.

    Raises
    ------
    DataError
        When the file is missing, unreadable, compressed, binary, not UTF-8, empty, has an
        empty or duplicate column name, or a malformed row (naming the row).
    """

    def __init__(self, path: str | os.PathLike, chunksize: int,
                 numeric: Iterable[str] = ()) -> None:
        self._reread: Iterator[tuple[int, list[str]]] | None = None  # _data_records
        self.path = path
        self.chunksize = chunksize
        try:
            self._fh = open(path, "rb", buffering=2**20)  # closed by close()
        except OSError as exc:
            raise _open_error(path, exc) from None
        try:
            self._head = _header_record(self._fh, path)
            self.header = _parse_header(self._head, path)
        except OSError as exc:
            self.close()
            raise _open_error(path, exc) from None
        except BaseException:
            self.close()
            raise
        wanted = set(numeric)
        # text as categories: one string per distinct cell, not one per cell
        self._dtype = {name: "category" for name in self.header if name not in wanted}
        self._numeric = wanted & set(self.header)
        self._skipinitialspace = True  # the parser's dialect, set when iterating
        self._records: Iterator[tuple[int, tuple[int, list[str]]]] = iter(())
        self._record_row = 0  # the data row self._records gave last

    def read_as_text(self, names: Iterable[str]) -> None:
        """Read these (non-numeric) columns as each cell's exact text, one ``str`` per cell:
        pandas infers the type of a categorical column's categories (``007`` becomes the
        number 7, ``TRUE`` the boolean True), which is harmless for a feature compared as
        canonical text but not for an id or a column copied to an output. Call it before
        iterating."""
        for name in names:
            if self._dtype.get(name) == "category":
                self._dtype[name] = str

    def __enter__(self) -> CsvTable:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close the file. A :class:`DataError` about one of its data rows leaving the
        ``with`` block is replaced by the same error located in the file read again
        (:meth:`locate`): the line where the row starts, an earlier row with too few or
        too many fields instead, the text of a cell the parser read as infinite."""
        try:
            located = (self.locate(exc) if isinstance(exc, DataError) and exc.line is None
                       and exc.row is not None and exc.path == str(self.path) else None)
        finally:
            self.close()
        if located is not None:
            raise located from None

    def close(self) -> None:
        if self._reread is not None:
            self._reread.close()  # its csv field size limit restored
        self._fh.close()

    def locate(self, exc: DataError, ragged: bool = False) -> DataError | None:
        """``exc`` (an error naming data row ``exc.row`` of this file) with the line where
        the row starts, found by :func:`_located` in the parser's dialect. For a pipe:
        ``exc`` without a line. ``None`` when the file cannot be read again as the parser
        read it."""
        fd = self._fh.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return DataError(exc.path, exc.problem, exc.row, exc.column, exc.value, line=0)
        return _located(fd, self.header, self._skipinitialspace, exc, self.path, ragged)

    def _as_written(self, first_row: int, chunk: pd.DataFrame) -> None:
        """Turn each numeric column of ``chunk`` that has a cell the parser read as
        infinite into text, such a cell as written in the file (read again: ``1e400`` is a
        number beyond float range, not ``inf``) and the others as ``parse_frame`` quotes
        them; a pipe, which cannot be read again, keeps its numbers."""
        for name in self._numeric:
            values = chunk[name].to_numpy()
            if values.dtype.kind != "f" or not np.isinf(values).any():
                continue
            rows = np.flatnonzero(np.isinf(values))
            written = self._fields(first_row + rows)
            if written is None:
                return
            number = _number_text(values)
            cells = np.array([number(i) for i in range(len(values))], dtype=object)
            cells[rows] = [fields[self.header.index(name)] for fields in written]
            chunk[name] = cells

    def _fields(self, rows: np.ndarray) -> list[list[str]] | None:
        """The fields of these data rows (increasing) of a regular file as the csv module
        reads them again, going on from the rows asked for last (``None``: a pipe, or a
        row that is not there with the header's field count)."""
        fd = self._fh.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if self._reread is None or self._record_row >= rows[0]:
            if self._reread is not None:
                self._reread.close()
            self._reread = _data_records(fd, self._skipinitialspace)
            self._records = enumerate(self._reread, 1)
        found: list[list[str]] = []
        for row, (_, fields) in self._records:
            self._record_row = row
            if row == rows[len(found)]:
                if len(fields) != len(self.header):
                    return None
                found.append(fields)
                if len(found) == len(rows):
                    return found
        return None

    def _check_row_lengths(self, rows: int) -> None:
        """Raise the malformed-CSV error of the first data row with fewer fields than the
        header, if any (a regular file of ``rows`` data rows). The commas that separate
        fields are counted (:func:`_separating_commas`); only when there are fewer than
        ``(F - 1) * rows`` is the file read again with the csv module, to find the row."""
        fd = self._fh.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        if _separating_commas(fd, len(self._head), skipinitialspace=self._skipinitialspace
                              ) == (len(self.header) - 1) * rows:
            return
        width = len(self.header)
        for row, (line, fields) in enumerate(_data_records(fd, self._skipinitialspace), 1):
            if len(fields) < width:
                raise DataError(self.path, f"malformed CSV: expected {width} fields, found "
                                f"{len(fields)}", row, line=line)

    def __iter__(self) -> Iterator[tuple[int, pd.DataFrame]]:
        head = self._head[len(_BOM):] if self._head.startswith(_BOM) else self._head
        stream = io.BufferedReader(_Prefixed(head, self._fh), buffer_size=2**20)
        first_row = 1
        last = self.header[-1]
        short = False  # an empty cell in the last column: maybe a row with too few fields
        try:
            # All columns are parsed, not only those needed: pandas checks the field count
            # of every row only when it parses them all, and a ragged row must be an error.
            # na_filter=False: no text is turned into NaN; "" and "NA" stay text, so a
            # number column holding one is read as text and scanned (missing value).
            # skipinitialspace (blanks before a field dropped) costs the parser about a
            # quarter of its time; every reader of the cells strips them anyway, and
            # numbers parse with or without them, so it is needed only where a blank
            # precedes a quote (` "a,b"` is one field with it, two without).
            self._skipinitialspace = _blank_before_quote(self._fh)
            reader = pd.read_csv(stream, header=0, names=self.header, dtype=self._dtype,
                                 na_filter=False, encoding="utf-8", chunksize=self.chunksize,
                                 skipinitialspace=self._skipinitialspace)
            with reader:
                for chunk in reader:
                    short = short or _has_empty(chunk[last])
                    self._as_written(first_row, chunk)
                    yield first_row, chunk
                    first_row += len(chunk)
            if short:
                self._check_row_lengths(first_row - 1)
        except pd.errors.ParserError as exc:
            ragged = _RAGGED.search(str(exc))
            if ragged:  # the parser's line counts blank lines, not those inside quotes
                expected, line, found = (int(g) for g in ragged.groups())
                error = DataError(self.path, f"malformed CSV: expected {expected} fields, "
                                  f"found {found}", row=line - 1)  # at or after the row
                located = self.locate(error, ragged=True)
                raise (located if located is not None and located.line else
                       DataError(self.path, error.problem, line=line)) from None
            raise DataError(self.path, f"malformed CSV: {exc}".strip()) from None
        except UnicodeDecodeError as exc:
            row = _first_undecodable_row(self.path)
            raise DataError(self.path, f"not a UTF-8 text file ({exc.reason})",
                            row=row) from None
        except OSError as exc:
            raise DataError(self.path, f"cannot read file: {exc.strerror or exc}") from None


#: File name endings of session tables read as Parquet (anything else is CSV).
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: str | os.PathLike) -> bool:
    """Whether a table is read as Parquet: its name ends in .parquet or .pq."""
    return str(path).lower().endswith(PARQUET_SUFFIXES)


class ParquetTable:
    """:class:`CsvTable`'s interface over a Parquet file (pyarrow), read in row batches.

    Each chunk holds what the CSV reader would give for the same values, so that the same
    checks (``parse_frame``, ``check_frame``) and messages apply: a column named in
    ``numeric`` whose Parquet type is an integer or float, with no null and no NaN in the
    chunk, comes as int64 or float64; any other cell comes as text (``str`` of the value,
    null as ``""``: a missing value), so text in a number column is still an error naming
    its row and column. Rows are numbered as in a CSV: data row ``r`` is the Parquet row
    with index ``r - 1`` (there is no header line).

    Raises
    ------
    DataError
        When the file is missing, not Parquet, or has an empty or duplicate column name.
    """

    def __init__(self, path: str | os.PathLike, chunksize: int,
                 numeric: Iterable[str] = ()) -> None:
        self.path = path
        self.chunksize = chunksize
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(path, "reading Parquet needs pyarrow (pip install "
                            "'purchase-propensity[scale]')") from None
        try:
            self._file = pq.ParquetFile(path)  # closed by close()
        except OSError as exc:
            raise _open_error(path, exc) from None
        except pa.ArrowException as exc:
            raise DataError(path, f"cannot read it as Parquet ({' '.join(str(exc).split())})"
                            ) from None
        self.header = [str(name).strip() for name in self._file.schema_arrow.names]
        seen: set[str] = set()
        for i, name in enumerate(self.header, start=1):
            if not name:
                raise DataError(path, f"column {i} has an empty name")
            if name in seen:
                raise DataError(path, "column name appears twice", column=name)
            seen.add(name)
        self._numeric = set(numeric)
        self._as_text: set[str] = set()

    def read_as_text(self, names: Iterable[str]) -> None:
        """As :meth:`CsvTable.read_as_text`: these columns come as ``str`` cells."""
        self._as_text.update(names)

    def __enter__(self) -> ParquetTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _cells(self, name: str, column) -> pd.Series | pd.Categorical | np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        kind = column.type
        if name in self._numeric and (pa.types.is_integer(kind) or pa.types.is_floating(kind)) \
                and column.null_count == 0:
            values = column.to_numpy(zero_copy_only=False)
            values = values.astype(np.int64 if pa.types.is_integer(kind) else np.float64)
            if values.dtype.kind == "i" or not np.isnan(values).any():
                return values
        if not pa.types.is_string(kind) and not pa.types.is_large_string(kind):
            column = pc.cast(column, pa.large_string())
        text = column.fill_null("").to_numpy(zero_copy_only=False).astype(object)
        if name in self._numeric or name in self._as_text:
            return text
        return pd.Categorical(text)

    def __iter__(self) -> Iterator[tuple[int, pd.DataFrame]]:
        import pyarrow as pa

        first_row = 1
        try:
            for batch in self._file.iter_batches(batch_size=self.chunksize):
                chunk = pd.DataFrame({name: self._cells(name, batch.column(i))
                                      for i, name in enumerate(self.header)})
                chunk.index = pd.RangeIndex(first_row - 1, first_row - 1 + len(chunk))
                yield first_row, chunk
                first_row += len(chunk)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(self.path, f"cannot read it as Parquet "
                            f"({' '.join(str(exc).split())})") from None


def open_table(path: str | os.PathLike, chunksize: int, numeric: Iterable[str] = ()
               ) -> CsvTable | ParquetTable:
    """A :class:`ParquetTable` for a name ending in .parquet or .pq, else a :class:`CsvTable`."""
    return (ParquetTable if is_parquet(path) else CsvTable)(path, chunksize, numeric)


def _blank_before_quote(fh: io.BufferedReader) -> bool:
    """Whether the open file has a space or tab right before a double quote; True also when
    it is not a regular file (a pipe cannot be read twice to find out). The file is read
    with ``os.pread``, which leaves its position alone; a quote-free block costs one
    ``memchr`` pass."""
    fd = fh.fileno()
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return True
    offset, before = 0, b"\n"
    while block := os.pread(fd, 1 << 22, offset):
        if block.find(b'"') >= 0:
            data = np.frombuffer(before + block, dtype=np.uint8)
            quotes = np.flatnonzero(data[1:] == ord('"'))  # data[quotes]: the byte before
            if np.isin(data[quotes], (ord(" "), ord("\t"))).any():
                return True
        offset += len(block)
        before = block[-1:]
    return False


#: The bytes that may stand before a quote opening a field and after one closing it (a
#: ``"`` there: a doubled quote inside the field), and those that may stand before the
#: spaces skipped before an opening quote (skipinitialspace).
_FIELD_BOUNDS = b',\n\r"'
_FIELD_ENDS = b',\n\r'


def _separating_commas(fd: int, offset: int, block_size: int = 1 << 22,
                       skipinitialspace: bool = False) -> int:
    """The commas of a regular file from byte ``offset`` (a record's start) on that are
    outside quotes, read with ``os.pread`` in blocks of ``block_size`` bytes; -1 when a
    quote is not where a quoted field opens or closes (the count cannot be trusted).

    A comma at byte ``i`` is inside quotes when the number of ``"`` bytes before it is odd,
    its quote parity ``p_i = (sum_{j < i} [b_j = '"']) mod 2``, carried from block to block:
    a quoted field opens and closes with one quote each, and a doubled ``""`` inside it
    flips the parity twice. Line breaks inside quotes change nothing. A quote that the
    parser reads as text (``1,x"y,2``: one inside an unquoted field) would flip the parity
    too, and the commas of a later quoted field could then make up for a missing one; so
    every quote is checked where it stands: one that opens (parity 0 before it) must start
    a field (the byte before it ``,``, ``\n``, ``\r``, ``"`` (the second of a doubled
    quote) or the data start; with ``skipinitialspace`` also spaces after one of these
    but ``"``), one that closes must end it (the byte after it ``,``, ``\r``, ``\n``,
    ``"`` or the end of the file). A block without a quote costs one ``count`` pass; one
    with quotes a few NumPy passes (the cumulative sum of its quotes in uint8, which wraps
    harmlessly: only its parity matters) and a look at the bytes around its quotes.
    """
    commas, parity = 0, 0
    bound = np.zeros(256, dtype=bool)  # bound[b]: byte b is in _FIELD_BOUNDS
    bound[np.frombuffer(_FIELD_BOUNDS, dtype=np.uint8)] = True
    before = ord("\n")  # the byte before the block (the data start is a field start)
    field_start = True  # whether the block starts a field after spaces (skipinitialspace)
    closing = False  # the previous block ends with a closing quote: its next byte is due
    while block := os.pread(fd, block_size, offset):
        offset += len(block)
        if closing and block[0] not in _FIELD_BOUNDS:
            return -1
        closing = False
        if parity == 0 and block.find(b'"') < 0:
            commas += block.count(b",")
            before = block[-1]
            tail = block.rstrip(b" ")
            field_start = tail[-1] in _FIELD_ENDS if tail else field_start
            continue
        data = np.frombuffer(block, dtype=np.uint8)
        quote = data == ord('"')
        at = np.flatnonzero(quote)  # quote k opens when parity + k is even
        opening, closes = at[parity::2], at[1 - parity::2]
        prior = np.empty(len(opening), dtype=np.uint8)
        inner = opening > 0
        prior[inner] = data[opening[inner] - 1]
        prior[~inner] = before
        bad = ~bound[prior]
        if skipinitialspace and bad.any():
            # a quote after spaces opens a field when a field start precedes the spaces
            position = np.arange(len(data))
            last = np.maximum.accumulate(np.where(data != ord(" "), position, -1))
            for k in np.flatnonzero(bad & (prior == ord(" "))):
                j = last[opening[k] - 1] if opening[k] > 0 else -1
                bad[k] = not (data[j] in _FIELD_ENDS if j >= 0 else field_start)
        if bad.any():
            return -1
        if len(closes):
            inner = closes < len(data) - 1
            if not bound[data[closes[inner] + 1]].all():
                return -1
            closing = not inner.all()
        inside = np.cumsum(quote, dtype=np.uint8)  # quotes up to and including byte i
        inside &= 1
        if parity:
            inside ^= 1
        commas += int(np.count_nonzero((data == ord(",")) & (inside == 0)))
        parity = int(inside[-1])
        before = block[-1]
        tail = block.rstrip(b" ")
        field_start = tail[-1] in _FIELD_ENDS if tail else field_start
    return commas


class _ParsedNumber(str):
    """The text of a number the CSV parser read (``_number_text``), not of the cell as
    written: a message quotes the file's text instead once the row is read again
    (:func:`_located`; ``1e308``, not its 309 digits)."""


def _located(fd: int, header: Sequence[str], skipinitialspace: bool, exc: DataError,
             path, ragged: bool = False) -> DataError | None:
    """``exc`` (an error naming data row ``exc.row`` of the CSV file open as ``fd``, whose
    stripped column names are ``header``) with the line where the row starts, read again
    from the file's start with the csv module in the parser's dialect (blank lines skipped,
    a quoted field may hold line breaks); a value that is the parser's number
    (:class:`_ParsedNumber`) becomes the cell as written. An error at an earlier row whose
    field count is not the header's instead (the parser fills a short row with empty
    cells). ``ragged``: ``exc`` is the parser's error for a row with too many fields, at
    ``exc.row`` or before (the parser's line count includes blank lines). ``None`` when the
    file cannot be read again as the parser read it."""
    width = len(header)
    for row, (line, fields) in enumerate(_data_records(fd, skipinitialspace), 1):
        if len(fields) < width or (len(fields) > width and ragged):
            return DataError(path, f"malformed CSV: expected {width} fields, found "
                             f"{len(fields)}", row, line=line)
        if len(fields) > width:  # the parser read it whole: another dialect
            return None
        if row == exc.row:
            if ragged:  # no row with too many fields: the parser read it otherwise
                return None
            value = exc.value
            if isinstance(value, _ParsedNumber) and exc.column in header:
                value = fields[list(header).index(exc.column)].strip()
            return DataError(path, exc.problem, row, exc.column, value, line=line)
    return None


def locate_row(error: DataError, parsed: bool = False) -> DataError:
    """``error``, naming data row ``error.row`` of a CSV file read and closed earlier, with
    the physical line where the row starts, found by reading the file again
    (:func:`_located`, as :meth:`CsvTable.locate` does while the table is open).
    ``parsed``: ``error.value`` is the parser's number, quoted as the cell is written.
    Where the line cannot be known (a pipe, a file that no longer reads as it did) the
    error comes without one; a Parquet file's error (rows, no lines) as it is."""
    if error.row is None or is_parquet(error.path):
        return error
    value = error.value
    if parsed and isinstance(value, str):
        value = _ParsedNumber(value)
    exc = DataError(error.path, error.problem, error.row, error.column, value)
    try:
        with open(error.path, "rb") as fh:
            if stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                header = _parse_header(_header_record(fh, error.path), error.path)
                located = _located(fh.fileno(), header, _blank_before_quote(fh), exc,
                                   error.path)
                if located is not None:
                    return located
    except (OSError, DataError):
        pass
    return DataError(error.path, error.problem, error.row, error.column, error.value, line=0)


class _Pread(io.RawIOBase):
    """A regular file's bytes from the start, read with ``os.pread`` on an open descriptor
    (its position, where the parser reads, is left alone)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd, self._at = fd, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = os.pread(self._fd, len(buffer), self._at)
        buffer[:len(data)] = data
        self._at += len(data)
        return len(data)


def _data_records(fd: int, skipinitialspace: bool) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` of each data row of the CSV file open as ``fd``, read from its
    start with the csv module as the parser reads it: ``line`` is the physical line where
    the row starts; the header and blank lines (empty or blanks only), which the parser
    skips, are not rows. Stops at a field the csv module will not read (one beyond
    ``MAX_HEADER_BYTES``)."""
    text = io.TextIOWrapper(io.BufferedReader(_Pread(fd), 2**20), encoding="utf-8-sig",
                            errors="replace", newline="")
    reader = csv.reader(text, skipinitialspace=skipinitialspace)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, MAX_HEADER_BYTES))
    try:
        end, header = 0, True
        for fields in reader:
            start, end = end + 1, reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip(" \t")):
                continue
            if not header:
                yield start, fields
            header = False
    except csv.Error:
        return
    finally:
        csv.field_size_limit(limit)


def _has_empty(cells: pd.Series) -> bool:
    """Whether a column of a chunk has an empty cell (what the parser puts in the missing
    fields of a short row), without a scan where it cannot: categories hold each text once,
    numbers are never empty."""
    if isinstance(cells.dtype, pd.CategoricalDtype):
        return "" in cells.cat.categories
    if cells.dtype.kind in "iufb":
        return False
    return bool((cells.to_numpy() == "").any())


def _first_undecodable_row(path) -> int | None:
    """The data row of the first byte that is not UTF-8, for a regular file (None for a
    pipe, which cannot be read again): the scan runs only once the error is known."""
    try:
        if not Path(path).is_file():
            return None
        decoder = codecs.getincrementaldecoder("utf-8")()
        lines = 0
        with open(path, "rb") as fh:
            while block := fh.read(2**20):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    lines += block.count(b"\n", 0, max(exc.start, 0))
                    return lines if lines >= 1 else None  # line lines + 1 = data row lines
                lines += block.count(b"\n")
    except OSError:
        return None
    return None


def read_header(path: str | os.PathLike) -> list[str]:
    """Return the stripped column names of a CSV file.

    Raises
    ------
    DataError
        When the file is missing, empty, not text or has empty or duplicate column names.
    """
    with open_table(path, 1) as table:
        return table.header


def check_columns(path, header: Sequence[str], required: Iterable[str], hint: str = "") -> None:
    """Raise ``DataError`` naming the first required column missing from ``header``."""
    present = set(header)
    missing = [c for c in required if c not in present]
    if missing:
        more = f" ({len(missing)} missing in all: {missing})" if len(missing) > 1 else ""
        raise DataError(path, f"required column is missing{more}{hint}", column=missing[0])


def _first_error(candidates: list[tuple[int, int, str, str, object]], path) -> None:
    """Raise the candidate error with the smallest (row, column position), if any."""
    if candidates:
        row, _, column, problem, value = min(candidates, key=lambda c: (c[0], c[1]))
        raise DataError(path, problem, row=row, column=column, value=value)


def _stripped(column: pd.Series) -> pd.Series:
    """A column's cells as stripped text (what the per-cell scan and the messages show)."""
    return column.astype(object).fillna("").astype(str).str.strip()


def parse_frame(
    raw: pd.DataFrame,
    schema: Schema,
    path: str | os.PathLike,
    first_row: int = 1,
    with_target: bool = True,
) -> pd.DataFrame:
    """Validate the cells of a table and convert them to typed columns.

    The checks are vectorised; a column is scanned cell by cell (to name the row, column
    and value) only when it holds a problem: a numeric column that the CSV parser could
    not read as numbers, or whose numbers break a rule.

    Parameters
    ----------
    raw : DataFrame
        Cells as text (:class:`CsvTable`; ``pd.read_csv(dtype=str, keep_default_na=False)``);
        numeric columns may already be numbers (int or float dtype); missing trailing
        fields may be NaN.
    schema : Schema
        Roles and ranges; every feature column (and the target when ``with_target``)
        must be present.
    path : str or Path
        File name for error messages.
    first_row : int
        1-based data row number of ``raw``'s first row (chunks start later than 1).
    with_target : bool
        Parse and require the target column.

    Returns
    -------
    DataFrame
        Numeric columns as float64, categorical columns as ``pd.Categorical`` of canonical
        texts, the target as int8 in {0, 1}, the id column (if present) as stripped
        strings.

    Raises
    ------
    DataError
        For the earliest bad cell: missing value, non-number, infinite value, value out of
        range, or a target that is not TRUE/FALSE/1/0.
    """
    checks: list[tuple[np.ndarray, str, str, object]] = []
    out = _parse_cells(raw, schema, with_target, checks, missing_ok=False)
    errors = []
    columns = list(raw.columns)
    for mask, name, problem, cells in checks:
        if mask.any():
            i = int(np.argmax(mask))
            value = cells(i) if callable(cells) else cells.iloc[i]
            errors.append((first_row + i, columns.index(name), name, problem, value))
    _first_error(errors, path)
    return _typed_frame(raw, out, schema, with_target)


# ``check_frame``'s reason for a missing feature value (the cells ``impute`` covers) is
# ``MISSING``, and for a value out of its range ``below_minimum(low)`` or
# ``above_maximum(high)``: the words of ``nn_core.preprocessing``, which the model's own
# check (``Preprocessing.inputs``) uses too.

#: The reasons for a cell read as infinite: written so (``inf``, ``-Infinity``), or a number
#: beyond float64's range (``1e400``).
INFINITE, BEYOND_FLOAT = "infinite value", "value beyond float range"


def infinite_problem(text: str) -> str:
    """The reason for a numeric cell of text ``text`` read as infinite."""
    infinity = text.strip().lower().lstrip("+-") in ("inf", "infinity")
    return INFINITE if infinity else BEYOND_FLOAT


@dataclass
class Rejected:
    """The bad cells of a table: one entry per cell, rows 1-based data rows of the file.

    Attributes
    ----------
    row : ndarray of int64
    column, value, reason : list of str
    """

    row: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    column: list[str] = field(default_factory=list)
    value: list[str] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)

    @property
    def rows(self) -> np.ndarray:
        """The distinct rejected rows, in file order."""
        return np.unique(self.row)

    def extend(self, other: Rejected) -> None:
        self.row = np.concatenate([self.row, other.row])
        self.column += other.column
        self.value += other.value
        self.reason += other.reason

    def counts(self) -> dict[str, int]:
        """Rejected rows per reason (a row with two bad cells counts under both reasons)."""
        pairs = {(int(r), why) for r, why in zip(self.row.tolist(), self.reason, strict=True)}
        counts: dict[str, int] = {}
        for _, why in sorted(pairs):
            counts[why] = counts.get(why, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def frame(self) -> pd.DataFrame:
        """``row, column, value, reason``, by row then column (the side file's table)."""
        df = pd.DataFrame({"row": self.row, "column": self.column, "value": self.value,
                           "reason": self.reason})
        return df.sort_values("row", kind="stable").reset_index(drop=True)


def check_frame(
    raw: pd.DataFrame,
    schema: Schema,
    path: str | os.PathLike,
    first_row: int = 1,
    with_target: bool = True,
    on_invalid: str = "skip",
) -> tuple[pd.DataFrame, Rejected]:
    """``parse_frame`` for ``--on-invalid skip`` or ``impute``: every bad cell is found.

    The same rules as ``parse_frame``; only what happens to a bad cell differs.

    Parameters
    ----------
    on_invalid : {"skip", "impute"}
        ``skip``: the rows with a bad cell are left out of the frame (its index still
        counts the chunk's rows from 0) and every bad cell is listed. ``impute``: a missing
        feature cell (empty or a ``MISSING_TOKENS`` text) becomes NaN, which a preprocessing
        with imputation fills in; any other bad cell (text in a numeric column, an infinite
        or out-of-range value, a missing or malformed target) is still an error.

    Returns
    -------
    frame : DataFrame
        As ``parse_frame``'s (with NaN for missing cells under ``impute``).
    rejected : Rejected
        The bad cells (empty under ``impute``).

    Raises
    ------
    DataError
        ``impute``: the first bad cell that is not a missing feature value.
    """
    if on_invalid not in ("skip", "impute"):
        raise ValueError(f"on_invalid must be 'skip' or 'impute', got {on_invalid!r}")
    checks: list[tuple[np.ndarray, str, str, object]] = []
    out = _parse_cells(raw, schema, with_target, checks, missing_ok=on_invalid == "impute")
    rejected = Rejected()
    bad = np.zeros(len(raw), dtype=bool)
    columns = list(raw.columns)
    for mask, name, problem, cells in sorted(checks, key=lambda c: columns.index(c[1])):
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        values = [cells(i) if callable(cells) else str(cells.iloc[i]) for i in rows.tolist()]
        rejected.extend(Rejected(first_row + rows, [name] * len(rows), values,
                                 [problem] * len(rows)))
        bad[rows] = True
    if on_invalid == "impute" and len(rejected.row):
        i = int(np.argmin(rejected.row))  # the earliest row; its first column
        raise DataError(path, rejected.reason[i], int(rejected.row[i]), rejected.column[i],
                        rejected.value[i])
    frame = _typed_frame(raw, out, schema, with_target, keep=~bad if bad.any() else None)
    return frame, rejected


def _typed_frame(raw: pd.DataFrame, out: dict, schema: Schema, with_target: bool,
                 keep: np.ndarray | None = None) -> pd.DataFrame:
    """The checked columns as a frame (the rows of ``keep`` only, when given)."""
    frame = pd.DataFrame(out, index=raw.index)
    if schema.id_column is not None and schema.id_column in raw.columns:
        frame[schema.id_column] = _stripped(raw[schema.id_column])
    if keep is not None:
        frame = frame[keep]
    if with_target and schema.target is not None:
        frame[schema.target] = frame[schema.target].astype(np.int8)
    return frame


def _parse_cells(raw: pd.DataFrame, schema: Schema, with_target: bool,
                 checks: list, missing_ok: bool) -> dict[str, object]:
    """The typed columns of ``raw``; appends ``(mask, column, problem, cells)`` to
    ``checks`` for every rule (``cells(i)`` or ``cells.iloc[i]`` quotes cell ``i``). With
    ``missing_ok`` a missing feature cell is NaN and no problem."""

    def report(mask: np.ndarray, name: str, problem: str, cells) -> None:
        checks.append((mask, name, problem, cells))

    out: dict[str, object] = {}
    for name in schema.numeric:
        column = raw[name]
        if column.dtype.kind in "iuf":  # the parser read every cell as a number
            values = column.to_numpy(dtype=np.float64)
            missing = np.isnan(values)  # only from callers that pass NaN themselves
            text = _number_text(values)
        else:  # some cell is not a number: scan the column cell by cell
            text = _stripped(column)
            missing = text.str.lower().isin(MISSING_TOKENS).to_numpy()
            values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
            report(~missing & np.isnan(values), name, "not a number", text)
        if not missing_ok:
            report(missing, name, MISSING, column)
        infinite = np.isinf(values)
        if infinite.any() and not callable(text):  # the cells' texts: 1e400 is no "inf"
            beyond = infinite & (text.map(infinite_problem) == BEYOND_FLOAT).to_numpy()
            report(beyond, name, BEYOND_FLOAT, text)
            infinite &= ~beyond
        report(infinite, name, INFINITE, text)  # CsvTable gives 1e400 as text (a pipe: inf)
        low, high = schema.ranges.get(name, (None, None))
        with np.errstate(invalid="ignore"):
            if low is not None:
                report(values < low, name, below_minimum(low), text)
            if high is not None:
                report(values > high, name, above_maximum(high), text)
        out[name] = values

    for name in schema.categorical:
        codes, texts, missing = _canonical_codes(raw[name])
        if missing_ok and missing.any():  # missing cells become NaN (code -1)
            keep = np.flatnonzero(~missing)
            new = np.full(len(texts), -1, dtype=np.intp)
            new[keep] = np.arange(len(keep))
            codes, texts = new[codes], [texts[k] for k in keep.tolist()]
        else:
            report(missing[codes], name, MISSING, raw[name])
        out[name] = pd.Categorical.from_codes(codes, categories=texts)

    if with_target and schema.target is not None:
        name = schema.target
        codes, texts, missing = _canonical_codes(raw[name])
        labels = pd.Index(texts).map(TARGET_LABELS)
        labels = labels.to_numpy(dtype=np.float64, na_value=np.nan)[codes]
        report(missing[codes], name, "missing target value", raw[name])
        report(~missing[codes] & np.isnan(labels), name, "target must be TRUE/FALSE or 1/0",
               lambda i: _stripped(raw[name].iloc[i : i + 1]).iloc[0])
        out[name] = labels
    return out


def _number_text(values: np.ndarray):
    """The text of cell ``i`` of a column the parser read as numbers, for a message: the
    integer's digits below 2**53, else the shortest text of the float (``1e+308``, not 309
    digits); a :class:`_ParsedNumber`, which a message quotes as the cell is written where
    the file is read again."""

    def text(i: int) -> str:
        v = float(values[i])
        exact = v.is_integer() and abs(v) < 2.0**53  # its digits all mean something
        return _ParsedNumber(int(v) if exact else repr(v))

    return text


def _canonical_codes(column: pd.Series) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A text column as codes into its distinct canonical texts, computed once per
    distinct cell (``canonical_text``).

    Returns
    -------
    codes : ndarray of intp, shape (n,)
    texts : list of str
        The distinct canonical texts (``texts[codes]`` is the column).
    missing : ndarray of bool, shape (len(texts),)
        Which texts mean "no value" (``MISSING_TOKENS``).
    """
    cell_codes, cells = pd.factorize(column, use_na_sentinel=False)
    canonical = [canonical_text("" if isinstance(c, float) and math.isnan(c) else str(c))
                 for c in cells]
    text_codes, texts = pd.factorize(pd.Index(canonical, dtype=object))
    missing = np.array([t.lower() in MISSING_TOKENS for t in texts], dtype=bool)
    return text_codes[cell_codes], list(texts), missing


def iter_raw_chunks(
    path: str | os.PathLike, usecols: Sequence[str] | None, chunksize: int
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield ``(first_row, cells)`` chunks of a CSV; row numbers are 1-based.

    The cells are text (:class:`CsvTable`); ``usecols`` selects columns by their stripped
    header names (all when ``None``).

    Raises
    ------
    DataError
        When the CSV is malformed (e.g. a row with too many fields) or a column of
        ``usecols`` is missing.
    """
    with open_table(path, chunksize) as table:
        if usecols is not None:
            check_columns(path, table.header, usecols)
        for first_row, chunk in table:
            yield first_row, chunk if usecols is None else chunk[list(usecols)]


def iter_table(
    table: CsvTable, schema: Schema, with_target: bool = True
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield ``(first_row, parse_frame(chunk))`` for each chunk of an open table whose
    columns were checked; a header-only file yields nothing."""
    for first_row, raw in iter_raw(table, schema, with_target):
        yield first_row, parse_frame(raw, schema, table.path, first_row, with_target)


def iter_raw(
    table: CsvTable, schema: Schema, with_target: bool = True
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield ``(first_row, cells)`` of the columns ``schema`` needs, for each non-empty
    chunk of an open table whose columns were checked (``check_frame`` parses them)."""
    needed = set(schema.required(with_target)) | {schema.id_column}
    usecols = [c for c in table.header if c in needed]
    for first_row, raw in table:
        if len(raw):
            yield first_row, raw[usecols]


def load_table(
    path: str | os.PathLike, schema: Schema, with_target: bool = True, hint: str = "",
    chunksize: int = 200_000,
) -> pd.DataFrame:
    """Read and validate a whole session table (see ``parse_frame`` for the result).

    The file is read once, in chunks of ``chunksize`` rows (a pipe works too); the
    categorical columns of the chunks are joined as one ``pd.Categorical`` each.

    Raises
    ------
    DataError
        Naming file, row, column and value of the first problem, or "no data rows".
    """
    return read_table(path, schema, "error", with_target, hint, chunksize)[0]


def read_table(
    path: str | os.PathLike, schema: Schema, on_invalid: str = "error",
    with_target: bool = True, hint: str = "", chunksize: int = 200_000,
) -> tuple[pd.DataFrame, Rejected]:
    """``load_table`` with a choice of what a bad cell does (``ON_INVALID``).

    ``error``: the first bad cell raises (``load_table``); ``skip``: the rows with a bad
    cell are left out and listed; ``impute``: missing feature cells are NaN
    (``check_frame``). The frame's index is 0-based over the rows kept.

    Returns
    -------
    frame : DataFrame
    rejected : Rejected
        The bad cells (row numbers are the file's data rows); empty but for ``skip``.

    Raises
    ------
    DataError
        As ``load_table``; with ``skip``, also when every data row has a bad cell.
    """
    if on_invalid not in ON_INVALID:
        raise ValueError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    rejected = Rejected()
    with open_table(path, chunksize, schema.numeric) as table:
        check_columns(path, table.header, schema.required(with_target), hint)
        if schema.id_column is not None:
            check_columns(path, table.header, [schema.id_column], " (the id column)")
        if on_invalid == "error":
            parts = [frame for _, frame in iter_table(table, schema, with_target)]
        else:
            parts = []
            for first_row, raw in iter_raw(table, schema, with_target):
                frame, bad = check_frame(raw, schema, path, first_row, with_target, on_invalid)
                parts.append(frame)
                rejected.extend(bad)
        if not parts:
            raise DataError(path, "the file has a header but no data rows")
        if not sum(map(len, parts)):  # in the block: the table locates the row
            i = int(np.argmin(rejected.row))
            raise DataError(path, f"every data row has an invalid cell ({len(rejected.rows):,}"
                            f" rows; the first: {rejected.reason[i]})", int(rejected.row[i]),
                            rejected.column[i], rejected.value[i])
    if len(parts) == 1:
        return parts[0].reset_index(drop=True), rejected
    frame = pd.concat(parts, ignore_index=True)
    for name in schema.categorical:  # concat turns differing categories into objects
        frame[name] = union_categoricals([p[name].array for p in parts])
    return frame, rejected


# --------------------------------------------------------------------------- preprocessing


def _category_key(text: str) -> tuple:
    """Sort numbers numerically ("2" before "10"), then the other labels alphabetically."""
    try:
        number = float(text)
    except ValueError:
        return (1, 0.0, text)
    return (0, number, text) if math.isfinite(number) else (1, 0.0, text)


#: Most categories one categorical column may have in the training rows: each becomes a
#: one-hot feature (8 bytes per row in every matrix), and a column with more is usually an
#: id (a session or user id) that cannot generalise anyway.
MAX_CATEGORIES = 1_000


def range_entries(numeric: Sequence[str],
                  ranges: Mapping[str, tuple[float | None, float | None]] | None
                  ) -> dict[str, list[float | None]]:
    """The ``range`` entry of each numeric column, from a schema's ``ranges``: ``[low,
    high]`` with ``None`` for an open side (an infinite bound opens it; a column without
    an entry: both sides open).

    Raises
    ------
    ValueError
        A range of a column that is not numeric, a bound that is not a number or ``None``
        (or is NaN, or an infinity closing a side), or ``low > high``.
    """
    ranges = {} if ranges is None else ranges
    _check_range_columns(ranges, numeric)
    out = {}
    for name in numeric:
        bounds = _range_bounds(f"range of {name!r}", ranges.get(name, (None, None)))
        low, high = (None if b is None or b == side else float(b)
                     for b, side in zip(bounds, (-math.inf, math.inf), strict=True))
        if not all(b is None or math.isfinite(b) for b in (low, high)):
            raise ValueError(f"range of {name!r}: an infinity only as an open side, got "
                             f"{bounds!r}")
        out[name] = [low, high]
    return out


class Preprocessor(Preprocessing):
    """Fitted map from a session table to the MLP's feature matrix.

    For each numeric column ``x`` (with ``u = log1p(x)`` if the column is log-transformed,
    else ``u = x``) the feature is ``(u - mean_train(u)) / std_train(u)``; a constant column
    gets ``std = 1``. For each categorical column with training categories
    ``c_0 < ... < c_{K-1}`` the features are the one-hot vector of length ``K + 1`` whose
    last position is the unseen bucket. Columns appear in the order numeric, categorical.

    Parameters
    ----------
    numeric, categorical : sequence of str
        Column roles.
    log1p : "auto", bool or iterable of str
        Which numeric columns get ``log1p``. ``"auto"``: those whose training values are
        all >= 0 and whose maximum exceeds 1 (counts, durations, money; fractions in [0, 1]
        gain nothing since log1p(x) ~ x there). ``True``/``False``: all eligible / none.
        A list: exactly those (their training values must be >= 0).
    target, id_column : str or None
        Stored in preprocess.json so predict.py knows them.
    source : dict, optional
        Where the table came from, e.g. ``{"kind": "table"}`` (the default) or
        ``{"kind": "events", "format": "taobao", "horizon": "1d"}``.
    numeric_encoding : str
        A key of ``nn_core.preprocessing.NUMERIC_ENCODINGS``: which of the standardised
        value, the Gaussian rank (``quantile``) and the piecewise-linear encoding
        (``ple``) make each numeric column's block, in that order. ``"ple"``: every numeric
        column whose training values take at least two distinct values is encoded by the
        piecewise-linear encoding of ``x`` (``nn_core.preprocessing.piecewise_linear``) on
        ``ple_bins`` quantile bins of its training values (edges
        ``b_t = quantile(x, t / ple_bins)``, duplicates merged: a column with many equal
        values gets fewer bins) instead of its standardised value; ``"standard+ple"``:
        the encoding follows the standardised value in the block. ``"quantile"``: every
        numeric column is encoded by its Gaussian rank ``g(x)``
        (``nn_core.preprocessing.gaussian_rank``) on ``rank_knots`` training quantiles
        (:func:`gaussian_rank_knots`; a constant column: one knot, a constant feature)
        instead of its standardised value; ``"quantile+ple"``, ``"standard+quantile"``,
        ``"standard+quantile+ple"``: the named parts, in that order.
    ple_bins : int
        Number of bins (at least 1): quantile bins before duplicate edges merge, or the
        most leaves of the tree.
    ple_binning : {"quantile", "tree"}
        How the edges are chosen: quantiles of the training values, or the cuts of a
        regression tree of the training labels on ``x`` (:func:`tree_edges`; ``fit`` then
        needs the labels).
    rank_knots : int
        Quantile knots of the Gaussian rank before equal ones merge, in
        ``[MIN_RANK_KNOTS, MAX_RANK_KNOTS]``.
    impute : bool
        Learn imputation (``--on-invalid impute``): missing cells (NaN, or a
        ``MISSING_TOKENS`` text) of the fitted rows are left out of every statistic; each
        numeric column stores the median of its present training values and each
        categorical column its most frequent training category (ties: the first in category
        order), and a column with a missing training value gains a missing-indicator
        feature. The means and standard deviations are those of the imputed column (what
        the network sees). A column with no present training value cannot be imputed.
    ranges : mapping of str to (low, high), optional
        The allowed inclusive range of numeric columns (``Schema.ranges``; ``None`` or an
        infinite bound: an open side). Given (train.py gives its schema's), every numeric
        column stores its range in preprocess.json (``"range": [low, high]``, ``[null,
        null]`` where the mapping has none), and ``Preprocessing.inputs`` refuses a value
        outside it, at scoring too. ``None``: no range is stored, and scoring treats the
        model as one from before ranges were stored (``features/scoring.py:
        scoring_schema``).

    Notes
    -----
    It is a scikit-learn transformer too (``fit(X, y=None)``, ``transform``,
    ``fit_transform``, ``get_feature_names_out``, ``get_params``, ``set_params``), without
    importing scikit-learn: ``make_pipeline(Preprocessor(...),
    nn_core.sklearn.PropensityClassifier())`` fits and scores a raw DataFrame. The
    constructor keeps lists and dicts as given (``get_params`` returns the very objects,
    as ``sklearn.base.clone`` requires).
    """

    #: The constructor's arguments, which ``get_params`` returns and ``set_params`` sets.
    PARAMS = ("numeric", "categorical", "log1p", "target", "id_column", "source", "impute",
              "numeric_encoding", "ple_bins", "ple_binning", "rank_knots", "ranges")

    def __init__(
        self,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        log1p: str | bool | Iterable[str] = "auto",
        target: str | None = None,
        id_column: str | None = None,
        source: Mapping | None = None,
        impute: bool = False,
        numeric_encoding: str = "standard",
        ple_bins: int = 16,
        ple_binning: str = "quantile",
        rank_knots: int = DEFAULT_RANK_KNOTS,
        ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
    ) -> None:
        self.numeric = numeric if isinstance(numeric, list) else list(numeric)
        self.categorical = categorical if isinstance(categorical, list) else list(categorical)
        if not self.numeric and not self.categorical:
            raise ValueError("Preprocessor needs at least one numeric or categorical column")
        if isinstance(log1p, str) and log1p != "auto":
            raise ValueError(f"log1p must be 'auto', a bool or a list of columns, got {log1p!r}")
        self.log1p = log1p if isinstance(log1p, str | bool | list) else list(log1p)
        self.impute = bool(impute)
        if numeric_encoding not in NUMERIC_ENCODINGS:
            raise ValueError(f"numeric_encoding must be one of {list(NUMERIC_ENCODINGS)}, got "
                             f"{numeric_encoding!r}")
        if isinstance(ple_bins, bool) or not isinstance(ple_bins, int | np.integer) \
                or not 1 <= ple_bins <= MAX_PLE_BINS:
            raise ValueError(f"ple_bins must be an integer in [1, {MAX_PLE_BINS}], got "
                             f"{ple_bins!r}")
        self.numeric_encoding = numeric_encoding
        if ple_binning not in PLE_BINNINGS:
            raise ValueError(f"ple_binning must be one of {list(PLE_BINNINGS)}, got "
                             f"{ple_binning!r}")
        if isinstance(rank_knots, bool) or not isinstance(rank_knots, int | np.integer) \
                or not MIN_RANK_KNOTS <= rank_knots <= MAX_RANK_KNOTS:
            raise ValueError(f"rank_knots must be an integer in [{MIN_RANK_KNOTS}, "
                             f"{MAX_RANK_KNOTS}], got {rank_knots!r}")
        self.ple_bins = ple_bins
        self.ple_binning = ple_binning
        self.rank_knots = rank_knots
        self.ranges = ranges
        if ranges is not None:
            range_entries(self.numeric, ranges)  # checked here too, as the other arguments
        super().__init__(None, target, id_column, source)
        if isinstance(source, dict):
            self.source = source

    # ----------------------------------------------------------------- estimator protocol
    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments by name (scikit-learn's estimator protocol)."""
        return {name: getattr(self, name) for name in self.PARAMS}

    def set_params(self, **params) -> Preprocessor:
        """Set constructor arguments by name, checked as the constructor checks them.

        The fitted state is dropped (it depends on the arguments): ``fit`` again.
        """
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            raise ValueError(f"Preprocessor has no parameter {unknown[0]!r}; "
                             f"valid: {list(self.PARAMS)}")
        Preprocessor.__init__(self, **{**self.get_params(), **params})
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The names of the output features (``feature_names``), as scikit-learn asks."""
        return np.asarray(self.feature_names, dtype=object)

    def __sklearn_is_fitted__(self) -> bool:
        return self.fitted

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.PARAMS)
        return f"Preprocessor({args})"

    # ----------------------------------------------------------------- fitting
    def fit(self, df: pd.DataFrame, y=None) -> Preprocessor:
        """Learn log1p choices, means, standard deviations and categories from ``df``.

        ``y`` (0/1 labels of the rows) is used only by ``ple_binning="tree"`` (taken from
        ``df[target]`` when not given); otherwise it is ignored (scikit-learn passes it in
        a pipeline). Also sets ``n_features_in_`` and ``feature_names_in_`` (``df``'s
        columns).

        Raises
        ------
        ValueError
            When a column is missing, has non-finite values, has values so large that its
            mean or standard deviation is not a finite float64, or a requested log1p column
            has negative values; when a categorical column has more than
            ``MAX_CATEGORIES`` distinct values, or the features would be more than the
            network's ``nn_core.network.MAX_INPUTS`` (checked before anything is allocated).
        """
        if len(df) == 0:
            raise ValueError("cannot fit a Preprocessor on an empty table")
        self._require(df, self.numeric + self.categorical)
        bounds = None if self.ranges is None else range_entries(self.numeric, self.ranges)
        parts = NUMERIC_ENCODINGS[self.numeric_encoding]
        labels = self._tree_labels(df, y) if parts.ple and self.ple_binning == "tree" else None
        feature_names_in = np.asarray([str(c) for c in df.columns], dtype=object)
        imputes: dict[str, dict] = {}
        if self.impute:
            df, imputes = self._fit_imputation(df)
        columns: list[dict] = []
        for name in self.numeric:
            x = self._numeric_values(df, name, first_row=1)
            nonneg = bool((x >= 0).all())
            if self.log1p == "auto":
                use_log = nonneg and float(x.max()) > 1.0
            elif isinstance(self.log1p, bool):
                use_log = self.log1p and nonneg
            else:
                use_log = name in self.log1p
                if use_log and not nonneg:
                    raise ValueError(f"column {name!r}: log1p requested but it has negative values")
            u = np.log1p(x) if use_log else x
            with np.errstate(over="ignore", invalid="ignore"):
                mean, std = float(u.mean()), float(u.std())
            if not (math.isfinite(mean) and math.isfinite(std)):
                big = float(np.abs(x).max())
                raise ValueError(
                    f"column {name!r}: values too large to standardise (the "
                    f"{'mean' if not math.isfinite(mean) else 'standard deviation'} of "
                    f"{'log1p(x)' if use_log else 'x'} is not finite; largest |value| {big:g})")
            columns.append(
                {
                    "name": name,
                    "kind": "numeric",
                    "log1p": use_log,
                    "mean": mean,
                    "std": std if std > 0 else 1.0,
                }
            )
            if bounds is not None:
                columns[-1]["range"] = bounds[name]
                self._check_range(df, columns[-1], x, first_row=1)
            encoding = {}
            if parts.rank:  # a constant column: one knot, a constant g(x)
                knots, scores, ends = gaussian_rank_knots(x, self.rank_knots)
                encoding.update(knots=knots.tolist(), scores=scores.tolist(),
                                ends=ends.tolist())
            if parts.ple:
                edges = (tree_edges(x, labels, self.ple_bins) if labels is not None else
                         np.unique(np.quantile(x, np.linspace(0.0, 1.0, self.ple_bins + 1))))
                if len(edges) >= 2:  # a constant column has no bins
                    encoding["edges"] = [float(b) for b in edges]
            if encoding:  # a constant column with PLE alone keeps its (constant) z alone
                columns[-1]["encoding"] = {
                    "kind": ENCODING_KINDS["knots" in encoding, "edges" in encoding],
                    "value": parts.value,
                    **encoding}
        for name in self.categorical:
            texts = canonical_series(df[name].astype(str))
            distinct = pd.unique(texts)
            if len(distinct) > MAX_CATEGORIES:
                raise ValueError(
                    f"column {name!r}: {len(distinct):,} distinct values in the training rows; "
                    f"at most {MAX_CATEGORIES:,} categories per column are one-hot encoded (an "
                    "id-like column? give it as --id-column, or leave it out of --categorical)")
            categories = sorted(distinct, key=_category_key)
            columns.append({"name": name, "kind": "categorical", "categories": list(categories)})
        for column in columns:
            if column["name"] in imputes:
                column["impute"] = imputes[column["name"]]
        width = sum(block_width(c) for c in columns)
        if width > MAX_INPUTS:
            raise ValueError(f"the columns give {width:,} features; the network takes at most "
                             f"{MAX_INPUTS:,} (fewer categorical columns or categories)")
        self.columns = columns
        self.feature_names_in_ = feature_names_in
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def _tree_labels(self, df: pd.DataFrame, y) -> np.ndarray:
        """The 0/1 labels that tree binning fits the edges to (``y``, else ``df[target]``).

        Raises
        ------
        ValueError
            No labels, a count other than the rows', or values other than 0 and 1.
        """
        if y is None and self.target is not None and self.target in df.columns:
            y = df[self.target]
        if y is None:
            raise ValueError("ple_binning='tree' needs the labels (fit(df, y), or the target "
                             "column in df)")
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(y) != len(df) or not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(f"ple_binning='tree' needs one 0/1 label per row ({len(df)}), got "
                             f"{len(y)} values")
        return y

    def _fit_imputation(self, df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict]]:
        """The imputed copy of ``df``'s feature columns and each column's ``impute`` entry
        (median or most frequent category of the present values; indicator if any missing).

        Raises
        ------
        ValueError
            When every training value of a column is missing.
        """
        filled, imputes = {}, {}
        for name in self.numeric + self.categorical:
            missing = missing_mask(df[name])
            if missing.all():
                raise ValueError(f"column {name!r}: every training value is missing; nothing "
                                 "to impute from (leave the column out)")
            if name in self.numeric:
                x = self._numeric_values(df, name, first_row=1, missing_ok=True)
                value: float | str = float(np.median(x[~missing]))
                filled[name] = np.where(missing, value, x)
            else:
                texts = canonical_series(df[name][~missing].astype(str))
                counts = texts.value_counts(sort=False)
                top = counts[counts == counts.max()].index
                value = min(top, key=_category_key)
                column = canonical_series(df[name].astype(str)).to_numpy(dtype=object)
                column[missing] = value
                filled[name] = column
            imputes[name] = {"value": value, "indicator": bool(missing.any())}
        return pd.DataFrame(filled, index=df.index), imputes

    def fit_transform(self, df: pd.DataFrame, y=None) -> np.ndarray:
        """``fit(df)`` then ``transform(df)`` (``y`` is ignored)."""
        return self.fit(df).transform(df)


def gaussian_rank_knots(x: np.ndarray, n_knots: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knots, normal scores and end values of a column's Gaussian-rank encoding, fitted on
    ``x``.

    ``q_j = quantile(x, r_j)`` at ``r_j = j / (K - 1)``, ``j = 0..K-1``; each run of equal
    knots becomes one knot whose level is the mean ``r`` of the run; its score is
    ``Phi^-1(r)``, ``r`` clipped to ``[RANK_CLIP, 1 - RANK_CLIP]`` (``|s| <= 5.2``). The
    ends ``(lo, hi)`` are the clip bounds ``Phi^-1(RANK_CLIP)``, ``Phi^-1(1 - RANK_CLIP)``
    (scikit-learn's ``QuantileTransformer`` gives them to every value at or beyond the
    training minimum or maximum), ``(s_1, s_1)`` for a single knot. The encoding ``g`` is
    ``lo`` at or below ``q_1``, ``hi`` at or above ``q_m`` and interpolates the scores
    between the knots (``nn_core.preprocessing.gaussian_rank``; docs/math.md,
    "Gaussian-rank encoding of numeric inputs").

    Parameters
    ----------
    x : ndarray, shape (n,), float64
        The training values (raw: a rank does not depend on a monotone transform such as
        log1p), finite, n >= 1.
    n_knots : int
        ``K >= 2``.

    Returns
    -------
    q : ndarray, shape (m,), float64
        Strictly increasing knots, ``1 <= m <= K`` (a constant column: one).
    s : ndarray, shape (m,), float64
        Their non-decreasing scores.
    ends : ndarray, shape (2,), float64
        ``(lo, hi)``.
    """
    from scipy.special import ndtri  # only where a Gaussian rank is fitted

    r = np.linspace(0.0, 1.0, n_knots)
    q = np.maximum.accumulate(np.quantile(x, r))  # monotone even where interpolation rounds
    first = np.flatnonzero(np.r_[True, q[1:] > q[:-1]])  # the first knot of each run
    level = np.add.reduceat(r, first) / np.diff(np.r_[first, n_knots])
    s = ndtri(np.clip(level, RANK_CLIP, 1.0 - RANK_CLIP))
    ends = ndtri(np.array([RANK_CLIP, 1.0 - RANK_CLIP])) if len(first) > 1 else s[[0, 0]]
    return q[first], s, ends


def tree_edges(x: np.ndarray, y: np.ndarray, max_bins: int,
               min_leaf: int | None = None) -> np.ndarray:
    """Bin edges of ``x`` chosen by a regression tree on the labels ``y`` (the paper's
    target-aware bins, Gorishniy et al. 2022, section 3.2.2; docs/math.md).

    Best-first growth as a tree with at most ``max_bins`` leaves: each leaf is a range of
    ``x`` (a run of the sorted rows), and the split made next is the one, over all leaves,
    that lowers the squared error of ``y`` about the leaf means the most,
    ``s_L^2 / n_L + s_R^2 / n_R - s^2 / n`` for a leaf of ``n`` rows and ``s`` positives
    cut into ``L`` and ``R``. A cut lies between two distinct values (at their midpoint)
    and leaves at least ``min_leaf`` rows on each side; growth stops when no cut lowers
    the error.

    Parameters
    ----------
    x : ndarray, shape (n,), float64, finite
    y : ndarray, shape (n,), 0/1 labels
    max_bins : int
    min_leaf : int, optional
        Rows per leaf at least; default ``max(1, n // (2 max_bins))``.

    Returns
    -------
    ndarray, float64: ``[min(x), cuts in increasing order, max(x)]`` with equal values
    merged (a single value when ``x`` is constant)
    """
    n = len(x)
    min_leaf = max(1, n // (2 * max_bins)) if min_leaf is None else max(1, int(min_leaf))
    order = np.argsort(x, kind="stable")
    xs = np.asarray(x, dtype=np.float64)[order]
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(y, dtype=np.float64)[order])])

    def best_cut(lo: int, hi: int) -> tuple[float, int]:
        """(gain, position) of the best cut of the leaf xs[lo:hi]; gain 0 when none."""
        i = np.arange(lo + min_leaf, hi - min_leaf + 1)
        i = i[xs[i - 1] < xs[i]] if len(i) else i
        if not len(i):
            return 0.0, -1
        s_left, s_right = cum[i] - cum[lo], cum[hi] - cum[i]
        gain = (s_left**2 / (i - lo) + s_right**2 / (hi - i)
                - (cum[hi] - cum[lo]) ** 2 / (hi - lo))
        j = int(np.argmax(gain))
        return float(gain[j]), int(i[j])

    leaves = {(0, n): best_cut(0, n)}
    cuts = []
    while len(leaves) < max_bins:
        (lo, hi), (gain, at) = max(leaves.items(), key=lambda item: item[1][0])
        if gain <= 1e-12 * (hi - lo):  # no cut lowers the error (beyond rounding)
            break
        del leaves[(lo, hi)]
        leaves[(lo, at)], leaves[(at, hi)] = best_cut(lo, at), best_cut(at, hi)
        cuts.append((xs[at - 1] + xs[at]) / 2)
    return np.unique(np.array([xs[0], *cuts, xs[-1]]))


def stratified_split(
    y: np.ndarray, seed: int, fractions: Sequence[float] = (0.70, 0.15, 0.15)
) -> list[np.ndarray]:
    """Seeded stratified split of row indices into parts of the given fractions.

    Each class is shuffled on its own and cut at ``round(f_1 n_c)``, ``round((f_1 + f_2) n_c)``,
    ..., so every part keeps the class balance of ``y`` to within one row per class.

    Parameters
    ----------
    y : array of shape (n,)
        Class labels.
    seed : int
        Seed of the shuffle; the same seed gives the same split.
    fractions : sequence of float
        Positive shares summing to 1 (default train/dev/test 70/15/15).

    Returns
    -------
    list of ndarray
        Sorted row indices of each part; together they cover every row exactly once.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if (fractions <= 0).any() or not math.isclose(float(fractions.sum()), 1.0, abs_tol=1e-9):
        raise ValueError(f"split fractions must be positive and sum to 1, got {list(fractions)}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(fractions)[:-1]
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        bounds = np.round(cuts * len(rows)).astype(np.int64)
        for k, piece in enumerate(np.split(rows, bounds)):
            parts[k].append(piece)
    return [np.sort(np.concatenate(p)) for p in parts]
