"""Clickstream event logs -> leakage-free per-user purchase-propensity features.

The path is ``read_events`` (a raw log in one of three formats -> the canonical
event table) -> ``features_at`` / ``snapshot`` (events strictly before a cutoff
``T`` -> one feature row per user, plus a label from ``[T, T + horizon)``) ->
``load_event_splits`` (time-based train / dev / test snapshots).

Canonical event table
---------------------
One row per event, sorted by ``user_id`` then ``timestamp`` (file order breaks
ties):

============  ===========================================================
column        meaning
============  ===========================================================
user_id       int64 when every id is an integer of <= 18 digits, else str
timestamp     ``datetime64[ns, UTC]``
event_type    categorical over ``EVENT_TYPES``
session_id    int64 or str; derived from a 30-minute inactivity gap when
              the log has none (``derive_sessions``)
item_id       optional, int64 or str (missing: <NA> / NaN)
category      optional, int64 or str
price         optional, float64 (missing: NaN)
============  ===========================================================

Leakage guard
-------------
``features_at(events, T)`` first keeps the events with ``timestamp < T`` and only
then sorts, groups and counts, so every number in its output (including the
item and category popularity tables) is a function of the pre-cutoff events
alone: adding, removing or altering any event at or after ``T`` cannot change
it. ``tests/features/test_events_leakage.py`` checks exactly that.

Everything is vectorised (NumPy ``bincount`` / ``reduceat`` / ``ufunc.at`` over
integer codes); there is no Python loop over users, sessions or events.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: The canonical event types, in the order used for the type codes 0..4.
EVENT_TYPES = ("view", "cart", "remove_from_cart", "fav", "purchase")
VIEW, CART, REMOVE, FAV, PURCHASE = range(5)

#: Default inactivity gap that starts a new session when the log has none.
SESSION_GAP = pd.Timedelta("30min")

#: Recent-activity windows ``[T - w, T)`` for the windowed counts.
WINDOWS = {"1h": pd.Timedelta("1h"), "1d": pd.Timedelta("1D"), "3d": pd.Timedelta("3D")}

#: Recencies are capped at 30 days (720 h); "never happened" is filled with the
#: cap itself and flagged by the matching ``has_*`` indicator. The cap keeps the
#: features finite and on the same scale whatever the length of the log.
RECENCY_CAP_HOURS = 720.0

#: Pseudo-count of the shrinkage ``(buys + A p0) / (views + A)`` used for item and
#: category conversion rates: an item seen twice gets (almost) the global rate p0.
CONVERSION_PSEUDO_COUNT = 20.0

#: Out-of-range rule: the log's core range is the [q, 1 - q] timestamp quantile
#: range widened outward to whole hours (logs are collected over whole hours/days).
RANGE_QUANTILE = 0.0005

_NS_PER_S = 1_000_000_000
_NS_PER_H = 3600 * _NS_PER_S
_NS_PER_DAY = 24 * _NS_PER_H
# 1970-01-01 was a Thursday: weekday (Monday = 0) = (days since epoch + 3) mod 7.
_EPOCH_WEEKDAY = 3

_FORMATS = {
    "taobao": {
        "columns": ["user_id", "item_id", "category_id", "behavior_type", "timestamp"],
        "types": {"pv": "view", "cart": "cart", "fav": "fav", "buy": "purchase"},
    },
    "rees46": {
        "columns": ["event_time", "event_type", "product_id", "category_id", "category_code",
                    "brand", "price", "user_id", "user_session"],
        "types": {t: t for t in EVENT_TYPES if t != "fav"},
    },
    "canonical": {
        "columns": ["user_id", "timestamp", "event_type"],
        "types": {t: t for t in EVENT_TYPES},
    },
}

_INT_RE = r"-?\d{1,18}"


class EventFileError(ValueError):
    """An event-log file that cannot be read at all (missing, a directory, not UTF-8 text, not
    CSV); the message names the file."""


class EventLogError(ValueError):
    """A row of an event log failed validation.

    Attributes ``path``, ``row`` (1-based data row: the first row after the
    header is row 1; in a Parquet file (``header=None``) the row index + 1), ``column``
    and ``value`` name the first offending cell.
    """

    def __init__(self, path, row: int, column: str, value: str, reason: str, n_invalid: int,
                 header: bool | None = True):
        line = row + 1 if header else row
        where = ("1-based data row = Parquet row index + 1" if header is None
                 else f"1-based data row, header not counted; file line {line}")
        value = _cell(value)  # a typed Parquet cell as text
        msg = f"{path}: row {row} ({where}), column '{column}': {reason}: {value!r}"
        if n_invalid > 1:
            msg += f" ({n_invalid} invalid rows in total)"
        msg += ("; drop_invalid=True (train.py --drop-invalid) drops and counts invalid "
                "rows instead")
        super().__init__(msg)
        self.path, self.row, self.column, self.value = str(path), row, column, value
        self.reason = reason


# --------------------------------------------------------------------------- reading


def _is_text(s: pd.Series) -> bool:
    """Whether a raw column holds text (any CSV column; a Parquet string column), not typed
    numbers or times (a Parquet int, float or timestamp column)."""
    return not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s))


def _present(s: pd.Series) -> np.ndarray:
    """Cells that are not missing: not empty text, not null in a typed column."""
    return (s != "").to_numpy() if _is_text(s) else s.notna().to_numpy()


def _integral(s: pd.Series) -> np.ndarray:
    """Typed cells holding an integer (an int column; a whole, finite float)."""
    if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
        return np.zeros(len(s), dtype=bool)
    x = s.to_numpy(dtype=float, na_value=np.nan)
    return np.isfinite(x) & (x == np.floor(x)) & (np.abs(x) < 2.0**63)


class _Validator:
    """Collects per-cell problems of a raw table as boolean masks. Cells are text (CSV,
    Parquet strings) or typed (Parquet numbers and times): a typed cell is checked by its
    value (an int column holds integers), a text cell by its text, with the same messages."""

    def __init__(self, raw: pd.DataFrame):
        self.raw = raw
        self.problems: list[tuple[str, str, np.ndarray]] = []  # (column, reason, bad mask)

    def flag(self, column: str, reason: str, bad) -> None:
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            self.problems.append((column, reason, bad))

    def required(self, column: str) -> np.ndarray:
        """Flag empty cells; return the non-empty mask."""
        s = self.raw[column]
        present = (s.str.strip() != "").to_numpy() if _is_text(s) else s.notna().to_numpy()
        self.flag(column, f"missing {column}", ~present)
        return present

    def integer(self, column: str, required: bool = True) -> None:
        s = self.raw[column]
        present = self.required(column) if required else _present(s)
        is_int = (s.str.strip().str.fullmatch(r"-?\d+").to_numpy(dtype=bool) if _is_text(s)
                  else _integral(s))
        self.flag(column, "not an integer", present & ~is_int)

    def choice(self, column: str, allowed) -> None:
        present = self.required(column)
        known = self.raw[column].isin(list(allowed)).to_numpy()
        self.flag(column, f"unknown event type (expected one of {sorted(allowed)})",
                  present & ~known)

    def invalid_rows(self) -> np.ndarray:
        bad = np.zeros(len(self.raw), dtype=bool)
        for _, _, mask in self.problems:
            bad |= mask
        return bad


def _as_id(s: pd.Series) -> pd.Series:
    """Ids as int64 when all present values are short integers, else as strings."""
    if not _is_text(s):  # a typed Parquet column: already validated as integers
        if s.notna().all() and (np.abs(s.to_numpy(dtype=float)) < 1e18).all():
            return s.astype("int64")
        s = s.astype("Int64").astype(str).where(s.notna(), "")
    s = s.str.strip()
    present = s != ""
    if present.all() and s.str.fullmatch(_INT_RE).all():
        return s.astype("int64")
    return s.where(present, None).astype(object)


#: The unix seconds a ``datetime64[ns]`` can hold (1677-09-21 to 2262-04-11): a timestamp
#: outside is an invalid value, never wrapped around into the log's range.
MIN_UNIX_SECONDS = -(-pd.Timestamp.min.value // _NS_PER_S)
MAX_UNIX_SECONDS = pd.Timestamp.max.value // _NS_PER_S
OUT_OF_RANGE_TIMESTAMP = (f"timestamp out of range (times must lie in "
                          f"{pd.Timestamp.min.year + 1} to {pd.Timestamp.max.year - 1}: unix "
                          f"seconds in [{MIN_UNIX_SECONDS}, {MAX_UNIX_SECONDS}])")


def _unix_seconds_range(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Which cells are unix seconds (an optional minus and 1 to 19 digits; a typed cell:
    an integer) and which of those lie inside the ``datetime64[ns]`` range."""
    if not _is_text(s):
        digits = _integral(s)
        secs = s.to_numpy(dtype=float, na_value=np.nan)
        return digits, digits & (secs >= MIN_UNIX_SECONDS) & (secs <= MAX_UNIX_SECONDS)
    digits = s.str.strip().str.fullmatch(r"-?\d{1,19}").to_numpy(dtype=bool)
    secs = pd.to_numeric(s.where(digits, "0"), errors="coerce").to_numpy(dtype=np.float64)
    inside = digits & (secs >= MIN_UNIX_SECONDS) & (secs <= MAX_UNIX_SECONDS)
    return digits, inside


#: The largest price taken (a price is a money amount per event; sums over a user's events
#: must stay finite); above it, or negative, NaN or infinite, a price is an invalid value.
MAX_PRICE = 1e12
PRICE_RULE = f"not a number in [0, {MAX_PRICE:g}]"


def _valid_price(price: pd.Series) -> np.ndarray:
    return ((price >= 0) & (price <= MAX_PRICE)).to_numpy()


def _price(s: pd.Series) -> pd.Series:
    """Prices as float64 (a missing cell NaN, text that is not a number NaN too)."""
    if _is_text(s):
        return pd.to_numeric(s.where(s != "", None), errors="coerce")
    return s.astype("float64") if not pd.api.types.is_bool_dtype(s) else s.where(False)


def _parse_unix_seconds(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Timestamps of unix-seconds cells, and the mask of those that are valid: digits inside
    ``[MIN_UNIX_SECONDS, MAX_UNIX_SECONDS]`` (a cell outside is NaT, not wrapped)."""
    _, ok = _unix_seconds_range(s)
    secs = (pd.to_numeric(s.where(ok, "0"), errors="coerce").fillna(0).astype("int64")
            if _is_text(s) else pd.Series(np.where(ok, s.to_numpy(dtype=float, na_value=0),
                                                   0).astype("int64")))
    ts = pd.to_datetime(secs.to_numpy() * _NS_PER_S, utc=True).as_unit("ns")
    return pd.Series(ts, index=s.index).where(ok), ok


def _parse_timestamp(s: pd.Series, fmt: str | None
                     ) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse strings to UTC timestamps; returns (timestamps, ok mask, out-of-range mask).

    ``fmt=None`` accepts unix seconds (all-digit cells) or ISO 8601 strings; an
    ISO string without offset is taken as UTC. A time that parses but lies outside what
    ``datetime64[ns]`` holds (years 1677 to 2262) is NaT, not ok, and marked out of range.
    Typed cells (Parquet): a timestamp column is taken as it is (naive = UTC), a number
    column as unix seconds.
    """
    if pd.api.types.is_datetime64_any_dtype(s):
        ts = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        lo, hi = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
        outside = (ts.notna() & ((ts < lo) | (ts > hi))).to_numpy()
        ts = ts.where(~outside)
        return ts.dt.as_unit("ns"), ts.notna().to_numpy(), outside
    if not _is_text(s):
        digits, inside = _unix_seconds_range(s)
        ts, ok = _parse_unix_seconds(s)
        return ts, ok, digits & ~inside
    digits, inside = _unix_seconds_range(s)
    if fmt is None and digits.all():
        ts, ok = _parse_unix_seconds(s)
        return ts, ok, ~inside
    if fmt is None:
        ts = pd.to_datetime(s.where(~digits, ""), format="ISO8601", utc=True, errors="coerce")
        outside_secs = digits & ~inside
    else:
        ts = pd.to_datetime(s, format=fmt, utc=True, errors="coerce")
        outside_secs = np.zeros(len(s), dtype=bool)
    # pandas parses into microseconds; times beyond the nanosecond range cannot be kept.
    lo, hi = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    outside = (ts.notna() & ((ts < lo) | (ts > hi))).to_numpy()
    ts = ts.where(~outside)
    ok = ts.notna().to_numpy() & (~digits if fmt is None else True)
    return ts.dt.as_unit("ns"), ok, outside | outside_secs


#: File name endings read as Parquet (anything else is CSV).
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path) -> bool:
    """Whether ``path`` is read (or written) as Parquet: its name ends in .parquet or .pq."""
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def _read_raw(path: Path, fmt: str) -> tuple[pd.DataFrame, bool | None]:
    """Read every cell as a string (so validation sees the text as written); a Parquet file
    keeps its typed columns (``header`` None: a Parquet file has no lines)."""
    expected = _FORMATS[fmt]["columns"]
    if is_parquet(path) and not path.is_dir():
        return _parquet_raw(path, fmt, read_parquet(path)), None
    try:
        if path.is_dir():
            raise EventFileError(f"{path}: is a directory, not an event-log file")
        with open(path, encoding="utf-8") as f:
            first = f.readline(1 << 20).strip().lstrip("\ufeff")
            if not first:
                raise EventFileError(f"{path}: the event log is empty")
            # The original Taobao UserBehavior.csv has no header; the shared sample has one.
            header = not (fmt == "taobao" and first.split(",")[0].strip().isdigit())
            names = [c.strip() for c in next(csv.reader([first]))] if header else []
            twice = sorted({c for c in names if names.count(c) > 1})
            if twice:
                raise EventFileError(f"{path}: column(s) {twice} appear more than once in the "
                                     "header")
            f.seek(0)
            raw = pd.read_csv(f, dtype=str, keep_default_na=False,
                              header=0 if header else None,
                              names=None if header else expected, skipinitialspace=True)
    except FileNotFoundError:
        raise EventFileError(f"{path}: no such event-log file") from None
    except UnicodeDecodeError as e:
        raise EventFileError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); is it "
                             "a compressed or binary file?") from None
    except (pd.errors.ParserError, csv.Error) as e:
        raise EventFileError(f"{path}: cannot read it as CSV ({' '.join(str(e).split())})") \
            from None
    except OSError as e:
        raise EventFileError(f"{path}: cannot read the event log: {e.strerror or e}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} for format '{fmt}'; "
                         f"found {list(raw.columns)}")
    return raw, header


def read_parquet(path: Path, row_groups: list[int] | None = None) -> pd.DataFrame:
    """A Parquet file (or some of its row groups) as a DataFrame: string columns as text
    (null = ``""``, as an empty CSV cell), number and timestamp columns typed (pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise EventFileError(f"{path}: reading Parquet needs pyarrow (pip install "
                             "'purchase-propensity[scale]')") from None
    try:
        f = pq.ParquetFile(path)
        table = f.read() if row_groups is None else f.read_row_groups(row_groups)
    except FileNotFoundError:
        raise EventFileError(f"{path}: no such event-log file") from None
    except (OSError, pa.ArrowException) as e:  # e.g. ArrowInvalid: not a Parquet file
        raise EventFileError(f"{path}: cannot read it as Parquet "
                             f"({' '.join(str(e).split())})") from None
    df = table.to_pandas()
    for c in df.columns:
        if _is_text(df[c]):
            df[c] = df[c].astype(str).where(df[c].notna(), "")
    return df


def _parquet_raw(path: Path, fmt: str, raw: pd.DataFrame) -> pd.DataFrame:
    """Check a Parquet event log's columns as ``_read_raw`` checks a CSV header."""
    raw.columns = [str(c).strip() for c in raw.columns]
    expected = _FORMATS[fmt]["columns"]
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} for format '{fmt}'; "
                         f"found {list(raw.columns)}")
    return raw


def _canonical_frame(raw: pd.DataFrame, fmt: str, v: _Validator) -> pd.DataFrame:
    """Validate ``raw`` (flags go to ``v``) and map it to canonical columns."""
    types = _FORMATS[fmt]["types"]
    out = {}
    if fmt == "taobao":
        for c in ("user_id", "item_id", "category_id"):
            v.integer(c)
        v.required("timestamp")
        v.choice("behavior_type", types)
        digits, inside = _unix_seconds_range(raw["timestamp"])
        ts, _ = _parse_unix_seconds(raw["timestamp"])
        v.flag("timestamp", "unparsable timestamp (expected unix seconds)",
               ~digits & _present(raw["timestamp"]))
        v.flag("timestamp", OUT_OF_RANGE_TIMESTAMP, digits & ~inside)
        out = {"user_id": raw["user_id"], "timestamp": ts,
               "event_type": raw["behavior_type"].map(types),
               "item_id": raw["item_id"], "category": raw["category_id"]}
    elif fmt == "rees46":
        for c in ("user_id", "product_id", "category_id"):
            v.integer(c)
        v.choice("event_type", types)
        v.required("user_session")
        present = v.required("event_time")
        ts, ok, outside = _parse_timestamp(raw["event_time"], "%Y-%m-%d %H:%M:%S UTC")
        v.flag("event_time", "unparsable timestamp (expected 'YYYY-MM-DD HH:MM:SS UTC')",
               present & ~ok & ~outside)
        v.flag("event_time", OUT_OF_RANGE_TIMESTAMP, present & outside)
        price = _price(raw["price"])
        v.flag("price", PRICE_RULE, _present(raw["price"]) & ~_valid_price(price))
        out = {"user_id": raw["user_id"], "timestamp": ts, "event_type": raw["event_type"],
               "session_id": raw["user_session"], "item_id": raw["product_id"],
               "category": raw["category_id"], "price": price}
    else:
        v.required("user_id")
        v.choice("event_type", types)
        present = v.required("timestamp")
        ts, ok, outside = _parse_timestamp(raw["timestamp"], None)
        v.flag("timestamp", "unparsable timestamp (expected ISO 8601 or unix seconds)",
               present & ~ok & ~outside)
        v.flag("timestamp", OUT_OF_RANGE_TIMESTAMP, present & outside)
        out = {"user_id": raw["user_id"], "timestamp": ts, "event_type": raw["event_type"]}
        if "session_id" in raw.columns:
            v.required("session_id")
            out["session_id"] = raw["session_id"]
        for c in ("item_id", "category"):
            if c in raw.columns:
                out[c] = raw[c]
        if "price" in raw.columns:
            price = _price(raw["price"])
            v.flag("price", PRICE_RULE, _present(raw["price"]) & ~_valid_price(price))
            out["price"] = price
    return pd.DataFrame(out)


def parse_canonical(raw: pd.DataFrame, where: str = "events") -> pd.DataFrame:
    """Validate canonical-format events given as text cells rather than read from a file (the
    events of a request, ``features.online``) and map them to canonical columns, with the
    rules ``read_events`` applies to a canonical file. Ids stay text, rows keep their order,
    no session is derived.

    Raises
    ------
    EventLogError
        For the first invalid row (``row`` 1-based; ``where`` takes the file name's place).
    """
    v = _Validator(raw)
    df = _canonical_frame(raw, "canonical", v)
    bad = v.invalid_rows()
    if bad.any():
        i = int(np.argmax(bad))
        column, reason = next((c, r) for c, r, m in v.problems if m[i])
        raise EventLogError(where, i + 1, column, raw[column].iloc[i], reason, int(bad.sum()))
    return df


def _core_range(ts: np.ndarray) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Robust [start, end) of a log: quantile range widened outward to whole hours."""
    lo, hi = np.quantile(ts, [RANGE_QUANTILE, 1.0 - RANGE_QUANTILE]).astype("int64")
    start = pd.Timestamp(lo, tz="UTC").floor("h")
    end = pd.Timestamp(hi, tz="UTC").floor("h") + pd.Timedelta("1h")
    return start, end


def derive_sessions(user: np.ndarray, t_ns: np.ndarray, gap: pd.Timedelta = SESSION_GAP
                    ) -> np.ndarray:
    """Session numbers from an inactivity gap; input must be sorted by (user, time).

    A new session starts at a user's first event and after every gap ``> gap``
    between consecutive events of that user. An event's session depends only on
    the events before it, so sessions before a cutoff are unaffected by later events.

    Parameters
    ----------
    user : (n,) array of user codes or ids, grouped (sorted) by user.
    t_ns : (n,) int64 nanoseconds, non-decreasing within each user.
    gap : inactivity gap.

    Returns
    -------
    (n,) int64 session number, 0, 1, 2, ... in row order.
    """
    n = len(t_ns)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (np.diff(t_ns) > gap.value)
    return np.cumsum(new, dtype=np.int64) - 1


def expand_paths(patterns) -> list[Path]:
    """The event-log files of ``--events``: each item a file or a glob pattern.

    A pattern (an item with ``*``, ``?`` or ``[`` that is not itself an existing file)
    becomes its matching files in name order; a pattern that matches nothing is refused.
    A file given twice (also through two patterns) is read once.

    Raises
    ------
    EventFileError
        ``PATTERN: no file matches`` (the message names the pattern).
    """
    import glob

    out: list[Path] = []
    for item in [patterns] if isinstance(patterns, str | Path) else patterns:
        text = str(item)
        if glob.has_magic(text) and not Path(text).exists():
            found = sorted(glob.glob(text))
            if not found:
                raise EventFileError(f"{text}: no file matches this pattern (--events)")
            out.extend(Path(f) for f in found)
        else:
            out.append(Path(text))
    unique: dict[Path, Path] = {}  # absolute path -> the path as given, first time seen
    for path in out:
        unique.setdefault(path.absolute(), path)
    return list(unique.values())


def _read_one(path: Path, format: str, drop_invalid: bool) -> tuple[pd.DataFrame, dict]:
    """One file validated and mapped to canonical columns (ids still text, not sorted),
    and its part of the report."""
    raw, header = _read_raw(path, format)
    v = _Validator(raw)
    df = _canonical_frame(raw, format, v)
    bad = v.invalid_rows()
    report: dict = {"path": str(path), "format": format, "n_rows": len(raw),
                    "n_invalid": int(bad.sum()), "invalid_by_reason": {},
                    "invalid_examples": []}
    if bad.any():
        def first_problem(i: int) -> tuple[str, str]:
            return next((col, reason) for col, reason, m in v.problems if m[i])

        rows = np.flatnonzero(bad)
        if not drop_invalid:
            col, reason = first_problem(int(rows[0]))
            raise EventLogError(path, int(rows[0]) + 1, col, raw[col].iloc[rows[0]], reason,
                                len(rows), header)
        for col, reason, m in v.problems:
            by_reason = report["invalid_by_reason"]
            by_reason[f"{col}: {reason}"] = by_reason.get(f"{col}: {reason}", 0) + int(m.sum())
        for i in rows[:5]:
            col, reason = first_problem(int(i))
            report["invalid_examples"].append(
                {"row": int(i) + 1, "column": col, "value": _cell(raw[col].iloc[i]),
                 "reason": reason})
        df = df[~bad]
    report["n_duplicate_rows"] = int(raw[~bad].duplicated().sum())
    return df, report


def _cell(value) -> str:
    """A raw cell as text (a typed Parquet cell: ``str`` of its value, null ``""``)."""
    return value if isinstance(value, str) else "" if pd.isna(value) else str(value)


def _union(parts: list[tuple[pd.DataFrame, dict]], paths: list[Path]
           ) -> tuple[pd.DataFrame, dict]:
    """Several files' events as one log (``read_events``): same columns required, copies of
    an event across files dropped (each event kept as often as in the file with most)."""
    first = list(parts[0][0].columns)
    for (df, _), path in zip(parts[1:], paths[1:], strict=True):
        if list(df.columns) != first:
            raise EventFileError(f"{path}: its columns {list(df.columns)} differ from those of "
                                 f"{paths[0]} ({first}); the files of one log must match")
    # The k-th copy of an event within its file; across files, equal (event, k) are one.
    frames = [df.assign(_copy=df.groupby(first, dropna=False, sort=False).cumcount())
              for df, _ in parts]
    df = pd.concat(frames, ignore_index=True)
    overlap = df.duplicated([*first, "_copy"]).to_numpy()
    df = df[~overlap].drop(columns="_copy")
    reports = [r for _, r in parts]
    by_reason: dict[str, int] = {}
    for r in reports:
        for k, n in r["invalid_by_reason"].items():
            by_reason[k] = by_reason.get(k, 0) + n
    report = {"path": ", ".join(r["path"] for r in reports), "files": [str(p) for p in paths],
              "format": reports[0]["format"], "n_rows": sum(r["n_rows"] for r in reports),
              "n_invalid": sum(r["n_invalid"] for r in reports),
              "invalid_by_reason": by_reason,
              "invalid_examples": [{"file": r["path"], **e} for r in reports
                                   for e in r["invalid_examples"]][:5],
              "n_duplicate_rows": sum(r["n_duplicate_rows"] for r in reports),
              "n_overlap_dropped": int(overlap.sum())}
    return df, report


def read_events(path, format: str = "canonical", drop_invalid: bool = False,
                session_gap: pd.Timedelta | str = SESSION_GAP, out_of_range: str = "drop",
                time_range: tuple | None = None) -> pd.DataFrame:
    """Read an event log into the canonical event table (see the module docstring).

    Parameters
    ----------
    path : CSV file, or a list of CSV files read as one log (e.g. daily files; every
        file in ``format`` and with the same columns, or the first that differs is
        refused). Each file is validated on its own (a message names the file and its
        row). Events are concatenated in the order given, so file order breaks ties
        of equal (user, timestamp). Overlapping files: an event (every canonical column
        equal) found in several files is kept as often as the one file holding it most
        often has it, so a day present in two files is not counted twice while
        repeated events inside one file are kept as in a single-file log; the report
        counts the dropped copies (``n_overlap_dropped``).
    format : ``"taobao"`` (UserBehavior: user_id, item_id, category_id,
        behavior_type in pv/cart/fav/buy, unix-seconds timestamp; header optional),
        ``"rees46"`` (event_time ``YYYY-MM-DD HH:MM:SS UTC``, event_type, product_id,
        category_id, category_code, brand, price, user_id, user_session) or
        ``"canonical"`` (user_id, timestamp as ISO 8601 or unix seconds, event_type;
        optional session_id, item_id, category, price).
    drop_invalid : if False (default) the first invalid row raises ``EventLogError``
        (a ``ValueError``) naming the file, the row (1-based data row, header not
        counted), the column and the value. If True invalid rows are dropped and
        counted in the report.
    session_gap : inactivity gap for sessions when the log has no session id.
    out_of_range : events outside the log's core time range are always counted in
        the report; ``"drop"`` (default) removes them, ``"keep"`` keeps them.
    time_range : optional ``(start, end)``; default is the robust range: the
        [0.05 %, 99.95 %] timestamp quantiles widened outward to whole hours.

    Returns
    -------
    DataFrame in the canonical schema; ``df.attrs["report"]`` is a JSON-serialisable
    dict: ``path, format, n_rows, n_invalid, invalid_by_reason`` (``"column: reason"``
    -> count), ``invalid_examples`` (first 5: row, column, value, reason),
    ``time_range`` ([start, end) ISO), ``n_out_of_range``, ``out_of_range_examples``
    (first 5 timestamps), ``out_of_range_action``, ``n_duplicate_rows`` (kept),
    ``n_events``, ``n_users``, ``sessions_derived``; with several files also ``files``
    and ``n_overlap_dropped`` (``path`` then joins the names with ", ").
    """
    paths = [Path(p) for p in ([path] if isinstance(path, str | Path) else path)]
    if not paths:
        raise EventFileError("no event-log file given")
    if format not in _FORMATS:
        raise ValueError(f"unknown event-log format {format!r}; expected one of {list(_FORMATS)}")
    if out_of_range not in ("drop", "keep"):
        raise ValueError(f"out_of_range must be 'drop' or 'keep', got {out_of_range!r}")
    parts = [_read_one(p, format, drop_invalid) for p in paths]
    df, report = parts[0] if len(parts) == 1 else _union(parts, paths)

    for c in ("user_id", "item_id", "category", "session_id"):
        if c in df.columns:
            df[c] = _as_id(df[c].astype(str).where(df[c].notna(), "") if _is_text(df[c])
                           else df[c])
    df["event_type"] = pd.Categorical(df["event_type"], categories=EVENT_TYPES)

    ts = df["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    if len(df):
        if time_range is None:
            start, end = _core_range(ts)
        else:
            start, end = (pd.Timestamp(x, tz="UTC") if pd.Timestamp(x).tzinfo is None
                          else pd.Timestamp(x).tz_convert("UTC") for x in time_range)
        outside = (ts < start.value) | (ts >= end.value)
        report["time_range"] = [start.isoformat(), end.isoformat()]
    else:
        outside = np.zeros(0, dtype=bool)
        report["time_range"] = None
    report["n_out_of_range"] = int(outside.sum())
    report["out_of_range_examples"] = [
        pd.Timestamp(x, tz="UTC").isoformat() for x in np.sort(ts[outside])[:5]]
    report["out_of_range_action"] = out_of_range
    if out_of_range == "drop":
        df = df[~outside]

    df = df.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    report["sessions_derived"] = "session_id" not in df.columns
    if report["sessions_derived"]:
        user_codes = pd.factorize(df["user_id"])[0]
        t_ns = df["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
        df["session_id"] = derive_sessions(user_codes, t_ns, pd.Timedelta(session_gap))
    cols = ["user_id", "timestamp", "event_type", "session_id", "item_id", "category", "price"]
    df = df[[c for c in cols if c in df.columns]]
    report["n_events"] = len(df)
    report["n_users"] = int(df["user_id"].nunique())
    df.attrs["report"] = report
    return df


# --------------------------------------------------------------------------- features


def _utc(ts) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is taken to be UTC already.

    Raises
    ------
    ValueError
        For text that is not a time, or a time outside ``datetime64[ns]`` (1677 to 2262),
        quoting it (a cutoff: ``--cutoff``).
    """
    given = ts
    try:
        ts = pd.Timestamp(ts)
        if pd.isna(ts):
            raise ValueError("not a time")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.as_unit("ns")
    except (ValueError, TypeError, OverflowError) as e:
        too_far = isinstance(e, pd.errors.OutOfBoundsDatetime | OverflowError)
        raise ValueError(f"cutoff {given!r} (--cutoff): "
                         f"{'outside 1677 to 2262' if too_far else 'not a time'}; use ISO "
                         "8601, e.g. '2017-12-02' or '2017-12-02T12:00'") from None


def parse_horizon(horizon, name: str = "horizon", zero: bool = False) -> pd.Timedelta:
    """Parse ``"1d"``, ``"2d"``, ``"12h"`` (any ``pd.Timedelta`` string) or a Timedelta (> 0,
    or >= 0 with ``zero``); a message names the setting (``name``, its flag ``--name``)."""
    if isinstance(horizon, str):
        # "2d" is the natural spelling; pandas >= 3 wants "2D" for days.
        horizon = re.sub(r"(?<=\d)\s*d$", "D", horizon.strip())
    flag = "--" + name.replace("_", "-").replace(" ", "-")
    try:
        h = pd.Timedelta(horizon)
    except (ValueError, TypeError) as e:
        raise ValueError(f"cannot parse {name} {horizon!r} ({flag}; use e.g. '1d', '2d', "
                         "'12h')") from e
    if pd.isna(h) or h < pd.Timedelta(0) or (h == pd.Timedelta(0) and not zero):
        raise ValueError(f"{name} ({flag}) must be {'>= 0' if zero else 'positive'}, "
                         f"got {horizon!r}")
    return h


BASELINE_COLUMNS = ["hours_since_last_event", "hours_since_last_cart",
                    "hours_since_last_purchase", "has_cart", "has_purchase",
                    "n_open_carts", "has_open_cart"]


def feature_columns(with_price: bool) -> list[str]:
    """The ordered feature names ``features_at`` returns (price block only with prices)."""
    cols = [f"n_{t}" for t in EVENT_TYPES] + ["n_events"]
    cols += [f"n_{t}_per_day" for t in EVENT_TYPES] + ["n_events_per_day"]
    cols += [f"n_{t}_{w}" for w in WINDOWS for t in EVENT_TYPES]
    cols += ["n_items", "n_categories", "n_sessions", "session_length_mean",
             "session_duration_mean_s", "dwell_mean_s", "dwell_max_s"]
    cols += [*BASELINE_COLUMNS[:5], "hours_since_first_event"]
    cols += ["cart_per_view", "fav_per_view", "purchase_per_view", "purchase_per_cart"]
    cols += BASELINE_COLUMNS[5:]
    cols += ["frac_hour_00_06", "frac_hour_06_12", "frac_hour_12_18", "frac_hour_18_24",
             "frac_weekend"]
    cols += ["item_popularity_mean", "item_conversion_mean", "category_popularity_mean",
             "category_conversion_mean"]
    if with_price:
        cols += ["view_price_mean", "cart_price_mean", "spend", "open_cart_value"]
    return cols


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b`` where ``b > 0``, else 0 (a user with no views has no conversion)."""
    return np.divide(a, b, out=np.zeros(len(a)), where=b > 0)


def _codes(values) -> tuple[np.ndarray, int]:
    """Dense int64 codes (-1 for missing) and the number of distinct values."""
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64, copy=False), len(uniques)


def _mean_by(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-group mean of ``values`` (0 for an empty group)."""
    return _ratio(np.bincount(group, weights=values, minlength=n),
                  np.bincount(group, minlength=n).astype(float))


def _entity_counts(code: np.ndarray, typ: np.ndarray, m: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per entity code ``0..m-1`` (-1 = missing, skipped): events ``n_j``, views ``v_j`` and
    purchases ``b_j`` (int64)."""
    known = code >= 0
    code, typ = code[known], typ[known]
    return (np.bincount(code, minlength=m), np.bincount(code[typ == VIEW], minlength=m),
            np.bincount(code[typ == PURCHASE], minlength=m))


@dataclass
class EntityCounts:
    """What item (or category) popularity needs of the whole log, per event.

    For the entity ``j`` of each event, over every user's events before the cutoff: ``n``
    events, ``views`` views and ``buys`` purchases of ``j`` (any value where the event's
    entity is missing), and the global rate ``p0 = sum_j b_j / max(sum_j v_j, 1)`` over the
    events with a known entity. Built from a log by ``entity_counts``; an online state
    (``features.online``) keeps the same integer counts as events arrive.
    """

    n: np.ndarray
    views: np.ndarray
    buys: np.ndarray
    p0: float


def entity_counts(code: np.ndarray, typ: np.ndarray) -> EntityCounts:
    """``EntityCounts`` of events with entity codes ``code`` (-1: missing) and types ``typ``."""
    known = code >= 0
    kc, kt = code[known], typ[known]
    if len(kc) == 0:
        zeros = np.zeros(len(code), dtype=np.int64)
        return EntityCounts(zeros, zeros, zeros, 0.0)
    m = int(kc.max()) + 1
    n_j = np.bincount(kc, minlength=m)
    v_j = np.bincount(kc[kt == VIEW], minlength=m)
    b_j = np.bincount(kc[kt == PURCHASE], minlength=m)
    j = np.where(known, code, 0)
    return EntityCounts(n_j[j], v_j[j], b_j[j], float(b_j.sum() / max(v_j.sum(), 1)))


def _popularity(code: np.ndarray, counts: EntityCounts, u: np.ndarray, n_users: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-user mean popularity and mean shrunk conversion rate of the entities it touched.

    For entity j (item or category) over the (pre-cutoff) events of all users
    (``counts``): popularity ``log(1 + n_j)``, conversion ``(b_j + A p0) / (v_j + A)`` with
    n_j events, v_j views, b_j purchases, ``p0 = sum b / sum v`` and
    ``A = CONVERSION_PSEUDO_COUNT``. Each user's value is the mean over its events with a
    known entity (0 if none), summed in event order.
    """
    known = code >= 0
    if not known.any():
        return np.zeros(n_users), np.zeros(n_users)
    conv = ((counts.buys[known] + CONVERSION_PSEUDO_COUNT * counts.p0)
            / (counts.views[known] + CONVERSION_PSEUDO_COUNT))
    return (_mean_by(u[known], np.log1p(counts.n[known]), n_users),
            _mean_by(u[known], conv, n_users))


@dataclass(frozen=True)
class EventStats:
    """The log-wide part of ``LogContext`` by id, for a log split by user into partitions
    (``features.dask_engine``): the earliest time ``t_min`` (ns) of the events before the
    cutoff and, per item and per category id, their counts of events ``n``, views ``v`` and
    purchases ``b``. Each partition's ``event_stats``, combined (``EventStats.combine``),
    give the whole log's; ``features_at(partition, T, stats=...)`` then reads them instead
    of its own events' and its rows equal those of ``features_at(whole_log, T)``."""

    t_min: int | None
    entities: dict[str, pd.DataFrame]  # column -> DataFrame(n, v, b: int64) indexed by id

    @staticmethod
    def combine(parts: list[EventStats]) -> EventStats:
        """The statistics of the union of disjoint sets of events (partitions)."""
        t = [p.t_min for p in parts if p.t_min is not None]
        entities = {col: pd.concat([p.entities[col] for p in parts])
                    .groupby(level=0, sort=False).sum().astype(np.int64)
                    for col in parts[0].entities}
        return EventStats(min(t) if t else None, entities)

    def entity_counts(self, col: str, values: np.ndarray) -> EntityCounts:
        """``EntityCounts`` (aligned with ``values``, the ids of some events; missing: any
        value) from the whole log's counts of ``col``."""
        tab = self.entities[col]
        j = tab.index.get_indexer(pd.Index(values))
        known = j >= 0
        if (~known & pd.notna(values)).any():  # an internal invariant: stats of another log
            raise AssertionError(f"EventStats lack some {col} ids of these events")
        j = np.where(known, j, 0)
        n, v, b = (tab[c].to_numpy()[j] if len(tab) else np.zeros(len(j), np.int64)
                   for c in ("n", "v", "b"))
        return EntityCounts(n, v, b, float(int(tab["b"].sum()) / max(int(tab["v"].sum()), 1)))


def event_stats(events: pd.DataFrame, cutoff) -> EventStats:
    """``EventStats`` of the events strictly before ``cutoff`` (the leakage guard holds)."""
    T = _utc(cutoff).value
    t = events["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    keep = t < T
    typ = pd.Categorical(events["event_type"].to_numpy()[keep],
                         categories=EVENT_TYPES).codes.astype(np.int64)
    entities = {}
    for col in ("item_id", "category"):
        if col in events.columns:
            codes, uniques = pd.factorize(events[col].to_numpy()[keep])
            n, v, b = _entity_counts(codes.astype(np.int64), typ, len(uniques))
            entities[col] = pd.DataFrame({"n": n, "v": v, "b": b}, index=pd.Index(uniques),
                                         dtype=np.int64)
    return EventStats(int(t[keep].min()) if keep.any() else None, entities)


@dataclass
class UserEvents:
    """Events before a cutoff, sorted by (user, time, arrival): what ``user_features`` reads.

    Attributes
    ----------
    u : (n,) int64
        User codes ``0 .. n_users - 1``, non-decreasing.
    n_users : int
        Every user has at least one event.
    t : (n,) int64
        Nanoseconds since the epoch, non-decreasing within a user (ties in arrival order).
    typ : (n,) int64
        Codes into ``EVENT_TYPES``.
    item, category : (n,) int64 or None
        Dense codes (-1: missing); ``None`` when the log has no such column.
    session : (n,) int64 or None
        Dense session codes (a session belongs to one user); ``None``: derived from the
        inactivity gap (``derive_sessions``).
    price : (n,) float64 or None
        NaN where missing; ``None`` when the log has no prices (no price block).
    """

    u: np.ndarray
    n_users: int
    t: np.ndarray
    typ: np.ndarray
    item: np.ndarray | None = None
    category: np.ndarray | None = None
    session: np.ndarray | None = None
    price: np.ndarray | None = None


@dataclass
class LogContext:
    """What one user's features need of the other users' events before the cutoff.

    Attributes
    ----------
    cutoff : int
        ``T`` in nanoseconds since the epoch.
    first : int
        The earliest event before ``T`` of any user (the per-day rates' denominator).
    items, categories : EntityCounts or None
        Aligned with the ``UserEvents``' rows; ``None`` when the log has no such column.
    """

    cutoff: int
    first: int
    items: EntityCounts | None = None
    categories: EntityCounts | None = None


def features_at(events: pd.DataFrame, cutoff, session_gap=SESSION_GAP,
                stats: EventStats | None = None) -> pd.DataFrame:
    """Per-user features from the events strictly before ``cutoff``.

    Parameters
    ----------
    events : canonical event table (``read_events`` or ``synthetic.generate_events``);
        any row order. ``session_id`` is used if present, else derived by ``session_gap``.
    cutoff : timestamp ``T`` (naive = UTC).
    stats : the whole log's ``event_stats`` at ``cutoff`` when ``events`` holds only some
        users (every event of each): the log-wide quantities are then read from it, not
        from ``events`` (``features.dask_engine``). Default: from ``events``.

    Returns
    -------
    DataFrame (n_users, n_features) of float64, indexed by ``user_id`` (sorted), one
    row per user with at least one event before ``T``, columns ``feature_columns``
    (the price block only when ``events`` has a ``price`` column). All values finite.
    Times are hours for recency/tenure and seconds for sessions and dwell; windowed
    counts cover ``[T - w, T)``. See docs/events.md for the definition of each family.
    The log-wide quantities (``LogContext``) are computed here; each user's row is then
    ``user_features`` of its own events, which is what ``features.online`` computes too.
    """
    T = _utc(cutoff).value
    with_price = "price" in events.columns
    t_all = events["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    keep = t_all < T  # the leakage guard: nothing at or after T is read below
    t = t_all[keep]
    cols = feature_columns(with_price)
    if len(t) == 0:
        return pd.DataFrame(np.zeros((0, len(cols))), columns=cols,
                            index=pd.Index(events["user_id"].iloc[:0], name="user_id"))

    user_codes, users = pd.factorize(events["user_id"].to_numpy()[keep], sort=True)
    order = np.lexsort((t, user_codes))  # stable: file order breaks ties
    u = user_codes[order].astype(np.int64)
    del user_codes
    typ = pd.Categorical(events["event_type"].to_numpy()[keep][order],
                         categories=EVENT_TYPES).codes.astype(np.int64)
    if (typ < 0).any():
        raise ValueError("events['event_type'] has values outside " + str(EVENT_TYPES))
    ev = UserEvents(u, len(users), t[order], typ)
    ctx = LogContext(T, int(t.min()) if stats is None else stats.t_min)
    if "item_id" in events.columns:
        ids = events["item_id"].to_numpy()[keep][order]
        ev.item = _codes(ids)[0]
        ctx.items = (entity_counts(ev.item, typ) if stats is None
                     else stats.entity_counts("item_id", ids))
    if "category" in events.columns:
        ids = events["category"].to_numpy()[keep][order]
        ev.category = _codes(ids)[0]
        ctx.categories = (entity_counts(ev.category, typ) if stats is None
                          else stats.entity_counts("category", ids))
    if "session_id" in events.columns:
        s_codes, m = _codes(events["session_id"].to_numpy()[keep][order])
        ev.session = _codes(u * (m + 1) + s_codes)[0]  # a session belongs to one user
    if with_price:
        ev.price = events["price"].to_numpy(dtype=float)[keep][order]
    X = pd.DataFrame(user_features(ev, ctx, session_gap), columns=cols,
                     index=pd.Index(users, name="user_id"))
    if not np.isfinite(X.to_numpy()).all():  # an internal invariant, not a user error
        raise AssertionError("non-finite feature values: " +
                             str(X.columns[~np.isfinite(X.to_numpy()).all(axis=0)].tolist()))
    return X


def user_features(ev: UserEvents, ctx: LogContext, session_gap=SESSION_GAP) -> np.ndarray:
    """The feature rows of the users of ``ev`` (see ``features_at``).

    Every value of a user's row is a function of its own events and of ``ctx`` alone, and
    every sum runs over its events in their order: the rows of a few users computed here
    (``features.online``) equal, bit for bit, their rows in ``features_at`` of the whole log.

    Returns
    -------
    (n_users, len(feature_columns(ev.price is not None))) float64
    """
    T, u, U, t, typ = ctx.cutoff, ev.u, ev.n_users, ev.t, ev.typ
    age_ns = T - t  # > 0: time between an event and the cutoff
    age_h = age_ns / _NS_PER_H
    F: dict[str, np.ndarray] = {}

    # Counts per type, overall and in [T - w, T).
    counts = np.bincount(u * 5 + typ, minlength=U * 5).reshape(U, 5).astype(float)
    for k, name in enumerate(EVENT_TYPES):
        F[f"n_{name}"] = counts[:, k]
    n_ev = counts.sum(axis=1)
    F["n_events"] = n_ev
    # Per-day rates over the observed log before T (its first event to T): stacked
    # training snapshots have shorter histories than the test snapshot, and rates stay
    # comparable where raw counts do not. At least one hour, so rates stay finite.
    log_days = max(T - ctx.first, _NS_PER_H) / _NS_PER_DAY
    for k, name in enumerate(EVENT_TYPES):
        F[f"n_{name}_per_day"] = counts[:, k] / log_days
    F["n_events_per_day"] = n_ev / log_days
    for w, delta in WINDOWS.items():
        recent = age_ns <= delta.value
        c = np.bincount(u[recent] * 5 + typ[recent], minlength=U * 5).reshape(U, 5)
        for k, name in enumerate(EVENT_TYPES):
            F[f"n_{name}_{w}"] = c[:, k].astype(float)

    # Segment boundaries of each user in the (user, time)-sorted arrays.
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    ends = np.r_[starts[1:], len(u)] - 1

    # Distinct items and categories.
    for codes, name in ((ev.item, "n_items"), (ev.category, "n_categories")):
        if codes is None:
            F[name] = np.zeros(U)
            continue
        pair = pd.Series(u * (int(codes.max(initial=-1)) + 2) + codes)
        first = (~pair.duplicated()).to_numpy() & (codes >= 0)
        F[name] = np.bincount(u[first], minlength=U).astype(float)

    # Sessions: ids from the log, else inactivity-gap sessions of the pre-T events.
    if ev.session is not None:
        sid, n_s = ev.session, int(ev.session.max()) + 1
    else:
        sid = derive_sessions(u, t, pd.Timedelta(session_gap))
        n_s = int(sid[-1]) + 1
    s_first = np.full(n_s, np.iinfo(np.int64).max)
    s_last = np.full(n_s, np.iinfo(np.int64).min)
    np.minimum.at(s_first, sid, t)
    np.maximum.at(s_last, sid, t)
    s_user = np.empty(n_s, dtype=np.int64)
    s_user[sid] = u  # every event of a session has the same user
    n_sess = np.bincount(s_user, minlength=U).astype(float)
    F["n_sessions"] = n_sess
    F["session_length_mean"] = n_ev / n_sess
    F["session_duration_mean_s"] = (np.bincount(s_user, weights=(s_last - s_first) / _NS_PER_S,
                                                minlength=U) / n_sess)

    # Dwell: gaps between consecutive events of the same user and session.
    same = (u[1:] == u[:-1]) & (sid[1:] == sid[:-1])
    gaps = np.where(same, np.diff(t) / _NS_PER_S, 0.0)
    F["dwell_mean_s"] = _mean_by(u[1:][same], gaps[same], U)
    F["dwell_max_s"] = (np.maximum.reduceat(np.r_[gaps, 0.0], starts) if len(gaps)
                        else np.zeros(U))
    del gaps, same

    # Recency, capped at RECENCY_CAP_HOURS ("never" = the cap).
    F["hours_since_last_event"] = np.minimum(age_h[ends], RECENCY_CAP_HOURS)
    for k, name in ((CART, "cart"), (PURCHASE, "purchase")):
        last = np.full(U, RECENCY_CAP_HOURS)
        sel = typ == k
        np.minimum.at(last, u[sel], age_h[sel])
        F[f"hours_since_last_{name}"] = np.minimum(last, RECENCY_CAP_HOURS)
        F[f"has_{name}"] = (counts[:, k] > 0).astype(float)
    F["hours_since_first_event"] = np.minimum(age_h[starts], RECENCY_CAP_HOURS)

    # Conversion ratios.
    F["cart_per_view"] = _ratio(counts[:, CART], counts[:, VIEW])
    F["fav_per_view"] = _ratio(counts[:, FAV], counts[:, VIEW])
    F["purchase_per_view"] = _ratio(counts[:, PURCHASE], counts[:, VIEW])
    F["purchase_per_cart"] = _ratio(counts[:, PURCHASE], counts[:, CART])

    # Open carts: (user, item) pairs whose last cart is later than their last
    # purchase and last removal (a purchase at the very same second closes it).
    item, price = ev.item, ev.price
    open_value = np.zeros(U)
    n_open = np.zeros(U)
    if item is not None:
        sel = np.flatnonzero(np.isin(typ, (CART, REMOVE, PURCHASE)) & (item >= 0))
        if len(sel):
            pair, n_p = _codes(u[sel] * (int(item.max()) + 1) + item[sel])
            lo = np.iinfo(np.int64).min
            last = np.full((3, n_p), lo)
            for row, k in enumerate((CART, REMOVE, PURCHASE)):
                is_k = typ[sel] == k
                np.maximum.at(last[row], pair[is_k], t[sel][is_k])
            is_open = (last[0] > lo) & (last[0] > np.maximum(last[1], last[2]))
            p_user = np.empty(n_p, dtype=np.int64)
            p_user[pair] = u[sel]
            n_open = np.bincount(p_user[is_open], minlength=U).astype(float)
            if price is not None:
                # Value of an open cart: the highest price at which the item was carted.
                is_cart = (typ[sel] == CART) & ~np.isnan(price[sel])
                p_price = np.zeros(n_p)
                np.maximum.at(p_price, pair[is_cart], price[sel][is_cart])
                open_value = np.bincount(p_user[is_open], weights=p_price[is_open], minlength=U)
    F["n_open_carts"] = n_open
    F["has_open_cart"] = (n_open > 0).astype(float)

    # Time-of-day (UTC, four 6-hour blocks) and weekend profile: fractions of events.
    hour_block = (t // _NS_PER_H) % 24 // 6
    blocks = np.bincount(u * 4 + hour_block, minlength=U * 4).reshape(U, 4)
    for b, name in enumerate(("00_06", "06_12", "12_18", "18_24")):
        F[f"frac_hour_{name}"] = blocks[:, b] / n_ev
    weekend = (t // _NS_PER_DAY + _EPOCH_WEEKDAY) % 7 >= 5
    F["frac_weekend"] = np.bincount(u[weekend], minlength=U) / n_ev

    # Item / category popularity and conversion from pre-cutoff events only.
    for codes, counts_j, name in ((item, ctx.items, "item"),
                                  (ev.category, ctx.categories, "category")):
        if codes is None:
            F[f"{name}_popularity_mean"] = F[f"{name}_conversion_mean"] = np.zeros(U)
        else:
            F[f"{name}_popularity_mean"], F[f"{name}_conversion_mean"] = _popularity(
                codes, counts_j, u, U)

    if price is not None:
        has_p = ~np.isnan(price)
        for k, name in ((VIEW, "view_price_mean"), (CART, "cart_price_mean")):
            sel = has_p & (typ == k)
            F[name] = _mean_by(u[sel], price[sel], U)
        sel = has_p & (typ == PURCHASE)
        F["spend"] = np.bincount(u[sel], weights=price[sel], minlength=U)
        F["open_cart_value"] = open_value

    return np.column_stack([np.asarray(F[c], dtype=float)
                            for c in feature_columns(price is not None)])


def buyers_in(events: pd.DataFrame, start, end) -> pd.Index:
    """User ids with at least one purchase in ``[start, end)``."""
    t = events["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    sel = ((t >= _utc(start).value) & (t < _utc(end).value)
           & (events["event_type"].to_numpy() == "purchase"))
    return pd.Index(pd.unique(events["user_id"].to_numpy()[sel]))


def snapshot(events: pd.DataFrame, cutoff, horizon, stats: EventStats | None = None
             ) -> tuple[pd.DataFrame, pd.Series]:
    """Features before ``cutoff`` and the label "purchased in ``[cutoff, cutoff + horizon)``".

    Returns
    -------
    X : ``features_at(events, cutoff, stats=stats)``, indexed by user_id (users with >= 1
        event before T).
    y : int64 Series (name ``"purchased"``) aligned with ``X.index``.
    """
    T, h = _utc(cutoff), parse_horizon(horizon)
    X = features_at(events, T, stats=stats)
    y = pd.Series(X.index.isin(buyers_in(events, T, T + h)).astype(np.int64),
                  index=X.index, name="purchased")
    return X, y


# --------------------------------------------------------------------------- splits


@dataclass
class EventSplits:
    """Time-based splits of an event log (see ``load_event_splits``)."""

    train: tuple[pd.DataFrame, pd.Series]
    dev: tuple[pd.DataFrame, pd.Series]
    test: tuple[pd.DataFrame, pd.Series]
    baseline_columns: list[str]
    info: dict = field(default_factory=dict)


#: The most training cutoffs ``rolling_cutoffs`` makes (each is a snapshot of every user).
MAX_TRAIN_CUTOFFS = 1000


def rolling_cutoffs(start, end, horizon, cutoff=None, stride=None, min_history="1D"
                    ) -> dict[str, list[pd.Timestamp]]:
    """Cutoffs for a time-based split of a log covering ``[start, end)``.

    test ``T_test = cutoff`` or ``end - horizon``; dev ``T_dev = T_test - horizon``;
    train ``T_dev - horizon - k * stride`` for k = 0, 1, ... while at least
    ``min_history`` of log precedes the cutoff. Each label window ``[c, c + horizon)``
    therefore ends at or before the next split's cutoff: no label of a training row
    is observed after the dev cutoff, none of dev after the test cutoff.
    ``stride`` defaults to ``min(horizon, 1 day)``.
    """
    start, end, h = _utc(start), _utc(end), parse_horizon(horizon)
    stride = min(h, pd.Timedelta("1D")) if stride is None else parse_horizon(stride, "stride")
    min_history = parse_horizon(min_history, "min history", zero=True)
    t_test = end - h if cutoff is None else _utc(cutoff)
    if t_test + h > end:
        raise ValueError(f"test cutoff {t_test} + horizon {h} is after the log's end {end}: "
                         "its labels would be incomplete")
    t_dev = t_test - h
    first_train = t_dev - h
    earliest = start + pd.Timedelta(min_history)
    if first_train < earliest:
        need = pd.Timedelta(min_history) + 3 * h + (end - t_test - h)
        raise ValueError(f"log [{start}, {end}) spans {end - start}, too short for horizon {h}: "
                         f"needs {need} ({pd.Timedelta(min_history)} of history, then the "
                         "train, dev and test label windows)")
    n_train = int((first_train - earliest) // stride) + 1
    if n_train > MAX_TRAIN_CUTOFFS:
        raise ValueError(f"stride {stride} gives {n_train:,} training cutoffs over the log; at "
                         f"most {MAX_TRAIN_CUTOFFS:,} are allowed (a larger --stride or "
                         "--min-history)")
    train = [first_train - k * stride for k in range(n_train)][::-1]
    return {"train": train, "dev": [t_dev], "test": [t_test]}


def load_event_splits(path, format: str, horizon, cutoff=None, drop_invalid: bool = False,
                      stride=None, min_history="1D") -> EventSplits:
    """Read a log and build time-based train / dev / test snapshots.

    Train stacks the snapshots at all rolling train cutoffs (a user appears once per
    cutoff, so the train index may repeat user ids); dev and test are one snapshot
    each (see ``rolling_cutoffs``). The log's end is the end of its core time range
    (the last timestamp rounded up to a whole hour), so for the Taobao sample with
    horizon 2d the test cutoff is 2017-12-01T16:00Z, two days before the end.
    """
    events = read_events(path, format=format, drop_invalid=drop_invalid)
    report = events.attrs["report"]
    if len(events) == 0:
        raise ValueError(f"{report['path']}: no valid events")
    start, end = (pd.Timestamp(x) for x in report["time_range"])
    cuts = rolling_cutoffs(start, end, horizon, cutoff, stride, min_history)
    h = parse_horizon(horizon)
    every = [*cuts["train"], cuts["dev"][0], cuts["test"][0]]
    return event_splits([snapshot(events, c, h) for c in every], cuts, h, report, format)


def event_splits(snaps: list, cuts: dict, horizon: pd.Timedelta, report: dict, format: str
                 ) -> EventSplits:
    """The :class:`EventSplits` of ``snaps``, the ``(X, y)`` snapshots at every train cutoff,
    then dev's and test's (``cuts`` as from :func:`rolling_cutoffs`): the train snapshots
    stacked, and the info that train.py reports (shared by the pandas and Dask engines)."""
    n_train = len(cuts["train"])
    parts = snaps[:n_train]
    train = (pd.concat([p[0] for p in parts]), pd.concat([p[1] for p in parts]))
    dev, test = snaps[n_train], snaps[n_train + 1]

    def counts(Xy):
        return {"n_users": len(Xy[1]), "n_positive": int(Xy[1].sum())}

    info = {"path": report["path"], "format": format, "horizon": str(horizon),
            "cutoffs": {k: [c.isoformat() for c in v] for k, v in cuts.items()},
            "counts": {"train": counts(train), "dev": counts(dev), "test": counts(test)},
            "features": list(test[0].columns), "report": report}
    return EventSplits(train, dev, test, list(BASELINE_COLUMNS), info)
