"""Online scoring inputs: request rows and events -> the same frames and features as in batch.

Two things a scoring service (``propensity/serve.py``) needs and that must not drift from the
batch path (``predict.py``):

* :func:`rows_frame`: session rows given as JSON objects (a body parsed with :func:`loads`)
  -> the validated, typed frame that ``predict.py`` builds from a CSV, through the same
  parser (``features.tabular.parse_frame`` with ``features.scoring.scoring_schema``), so a
  bad cell is refused with the same rule; the message names the row (1-based, in request
  order) and the column.
* :class:`OnlineState`: per-user event histories updated event by event, from which a
  user's feature row at a time ``T`` is computed with ``features.events.user_features``,
  the very function ``features.events.features_at`` computes every user's row with. What a
  row needs of other users (the first event of the log, item and category counts) is kept
  as exact integer counts per entity, so the online row equals the batch snapshot's row at
  the same cutoff, bit for bit (``tests/cli/test_serve.py`` replays the Taobao and REES46
  samples).

Time: a feature row "at ``T``" reads the events with ``timestamp < T``, like a batch
cutoff. Events may arrive in any order; a user's events with the same timestamp are ordered
by arrival (the batch reader orders them by file position), so a log replayed in file
order, or in time order with file order breaking ties, gives the batch snapshot.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nn_core.preprocessing import Preprocessing

from . import events as ev
from .scoring import scoring_schema
from .tabular import DataError, parse_frame, quoted

#: The optional columns of an event (besides ``user_id``, ``timestamp``, ``event_type``).
EVENT_OPTIONAL = ("session_id", "item_id", "category", "price")


class RequestError(ValueError):
    """A request value that cannot be used; the message names the row (or event) and column.

    Attributes ``row`` (1-based position in the request, or ``None``) and ``column`` (or
    ``None``).
    """

    def __init__(self, message: str, row: int | None = None, column: str | None = None):
        super().__init__(message)
        self.row, self.column = row, column


class StateFull(RequestError):
    """Events refused because the online state would exceed its ``max_events``."""


def _json_float(token: str) -> float | str:
    """A JSON number with a fraction or exponent as a float, or, when no float holds it
    (``1e400``: ``float`` gives an infinity), as its text (:func:`loads`)."""
    x = float(token)
    return token if math.isinf(x) else x


def loads(body: bytes | str) -> object:
    """A request body parsed as JSON, as :func:`rows_frame` and :func:`events_frame` take it.

    A number beyond float range (``1e400``, ``-2.5E+999``) is kept as the text of its token
    (``json.loads`` would make it an infinity, refused as ``'Infinity'``, a token the
    request does not have): the parsers then read that text as they read a CSV cell, and
    refuse it with their message for it (``value beyond float range (value: '1e400')``),
    as an integer beyond float range is. Every other value is ``json.loads``'s.

    Raises
    ------
    ValueError
        ``json.JSONDecodeError`` (or ``UnicodeDecodeError``) for a body that is not JSON.
    """
    return json.loads(body, parse_float=_json_float)


def _cell_text(value: object, what: str, i: int, column: str) -> str:
    """A JSON value as the text of a CSV cell: ``null`` -> empty (missing), a boolean as
    ``TRUE``/``FALSE``, a number as JSON writes it (``NaN``, ``Infinity`` and ``-Infinity``,
    which Python's JSON parser accepts, as these tokens: the CSV parser reads them as a
    missing and an infinite value); a list or object is refused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return json.dumps(value)
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits() (not from JSON)
            raise RequestError(f"{what} {i}, column {column!r}: an integer of "
                               f"{value.bit_length():,} bits is too long to read", i,
                               column) from None
    if isinstance(value, str):
        return value
    raise RequestError(f"{what} {i}, column {column!r}: expected a number or a string, got "
                       f"a JSON {'array' if isinstance(value, list) else 'object'}", i, column)


def _numbers(values: list) -> np.ndarray | None:
    """The values as float64 when every one is a JSON number that is finite as a float, else
    ``None`` (the column then goes to the CSV parser as text, which names the bad cell with
    the CSV's rule: an integer beyond float range is a value beyond float range, as in a
    file)."""
    if not all(type(v) in (int, float) for v in values):
        return None
    try:
        x = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None
    return x if np.isfinite(x).all() else None


def _records(items: object, what: str) -> list[Mapping]:
    if not isinstance(items, list):
        raise RequestError(f"expected a JSON array of {what}s")
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise RequestError(f"{what} {i}: expected a JSON object, got "
                               f"{type(item).__name__}", i)
    return items


def rows_frame(rows: object, pre: Preprocessing) -> pd.DataFrame:
    """Validate session rows given as JSON objects and parse them as ``predict.py`` does.

    Parameters
    ----------
    rows : list of dict
        Column name -> value (number, string, boolean or ``null`` for missing); every
        input column of the model, extra keys ignored.
    pre : Preprocessing
        The model's preprocessing (its input columns and the scoring schema).

    Returns
    -------
    DataFrame (n_rows, ...)
        ``features.tabular.parse_frame``'s typed frame, which ``Predictor.predict_proba``
        takes.

    Raises
    ------
    RequestError
        Naming the row (1-based) and column of the first problem: a missing column, a list
        or object as a value, a missing value, not a number, out of range.
    """
    rows = _records(rows, "row")
    columns = pre.input_columns
    for i, row in enumerate(rows, 1):
        missing = [c for c in columns if c not in row]
        if missing:
            raise RequestError(f"row {i}, column {missing[0]!r}: missing (the model was "
                               "trained with it)", i, missing[0])
    numeric = {c["name"] for c in pre.columns if c["kind"] == "numeric"}
    cells: dict[str, np.ndarray] = {}
    for c in columns:
        values = [row[c] for row in rows]
        # JSON numbers: a number column, as the CSV parser gives one whose cells are all
        # numbers (parse_frame then checks it without scanning text)
        x = _numbers(values) if c in numeric else None
        if x is not None:
            cells[c] = x
        else:
            cells[c] = np.array([_cell_text(v, "row", i, c) for i, v in enumerate(values, 1)],
                                dtype=object)
    raw = pd.DataFrame(cells, index=pd.RangeIndex(len(rows)))
    try:
        return parse_frame(raw, scoring_schema(pre), "request", 1, with_target=False)
    except DataError as exc:
        value = "" if exc.value is None else f" (value: {quoted(exc.value)})"
        raise RequestError(f"row {exc.row}, column {exc.column!r}: {exc.problem}{value}",
                           exc.row, exc.column) from None


def events_frame(events: object) -> pd.DataFrame:
    """Validate events given as JSON objects (the canonical event-log columns) and map them
    to canonical columns, as ``features.events.read_events`` reads a canonical CSV.

    Each event has ``user_id``, ``timestamp`` (ISO 8601, or unix seconds in every event of
    the request) and ``event_type`` (one of ``EVENT_TYPES``), optionally ``session_id``,
    ``item_id``, ``category`` and ``price``.

    Returns
    -------
    DataFrame
        ``user_id``, ``timestamp`` (UTC), ``event_type`` and the optional columns (text;
        empty where an event lacks one; ``price`` float64 with NaN), in request order.

    Raises
    ------
    RequestError
        Naming the event (1-based) and column of the first bad value.
    """
    events = _records(events, "event")
    # An optional column is a column of the request when some event has it; like a column
    # of a CSV, every event must then give it (a session_id; the others may be empty).
    names = ["user_id", "timestamp", "event_type",
             *(c for c in EVENT_OPTIONAL if any(c in e for e in events))]
    raw = pd.DataFrame({c: [_cell_text(e.get(c), "event", i, c) for i, e in
                            enumerate(events, 1)] for c in names},
                       index=pd.RangeIndex(len(events)), dtype=object)
    try:
        return ev.parse_canonical(raw, "request")
    except ev.EventLogError as exc:
        raise RequestError(f"event {exc.row}, column {exc.column!r}: {exc.reason}: "
                           f"{quoted(exc.value)}", exc.row, exc.column) from None


def _key(text: str) -> int | str | None:
    """An id as the batch reader keys it: an integer of at most 18 digits as that integer
    (``read_events`` reads an all-integer id column as int64), else the text; empty: None."""
    text = text.strip()
    if not text:
        return None
    return int(text) if re.fullmatch(ev._INT_RE, text) else text


def _keys(column: pd.Series) -> list:
    """``_key`` of every cell of a column of texts (vectorised)."""
    text = column.astype(str).str.strip()
    keys = text.to_numpy(dtype=object)
    is_int = text.str.fullmatch(ev._INT_RE).to_numpy(dtype=bool)
    keys[np.flatnonzero(is_int)] = text[is_int].astype(np.int64).tolist()
    keys[(text == "").to_numpy()] = None
    return keys.tolist()


@dataclass
class _Entity:
    """Sorted timestamps (ns) of one item's or category's events: all, views, purchases."""

    times: list[int] = field(default_factory=list)
    views: list[int] = field(default_factory=list)
    buys: list[int] = field(default_factory=list)

    def add(self, t: int, typ: int) -> None:
        bisect.insort(self.times, t)
        if typ == ev.VIEW:
            bisect.insort(self.views, t)
        elif typ == ev.PURCHASE:
            bisect.insort(self.buys, t)

    def before(self, T: int) -> tuple[int, int, int]:
        """Events, views and purchases with ``t < T``."""
        return (bisect.bisect_left(self.times, T), bisect.bisect_left(self.views, T),
                bisect.bisect_left(self.buys, T))


@dataclass
class _Entities:
    """One entity kind (items or categories): per entity its event times, and the times of
    every view and purchase with a known entity (``p0``'s numerator and denominator)."""

    by_key: dict = field(default_factory=dict)
    views: list[int] = field(default_factory=list)
    buys: list[int] = field(default_factory=list)

    def add(self, key, t: int, typ: int) -> None:
        if key is None:
            return
        self.by_key.setdefault(key, _Entity()).add(t, typ)
        if typ == ev.VIEW:
            bisect.insort(self.views, t)
        elif typ == ev.PURCHASE:
            bisect.insort(self.buys, t)

    def codes_and_counts(self, keys: list, T: int) -> tuple[np.ndarray, ev.EntityCounts]:
        """Dense codes (-1: missing) of these entity keys (None: missing), and their
        ``EntityCounts`` over the events before ``T``, exactly as
        ``features.events.entity_counts`` counts a log."""
        codes, uniques = pd.factorize(np.array(keys, dtype=object))
        per = np.array([self.by_key[key].before(T) for key in uniques],
                       dtype=np.int64).reshape(-1, 3)
        n = per[np.where(codes >= 0, codes, 0)] if len(per) else np.zeros((len(keys), 3),
                                                                         dtype=np.int64)
        views = np.int64(bisect.bisect_left(self.views, T))
        buys = np.int64(bisect.bisect_left(self.buys, T))
        return (codes.astype(np.int64),
                ev.EntityCounts(n[:, 0], n[:, 1], n[:, 2], float(buys / max(views, 1))))


@dataclass
class _UserLog:
    """One user's events in arrival order (``seq`` numbers the arrivals of every user)."""

    t: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    typ: list[int] = field(default_factory=list)
    item: list = field(default_factory=list)
    category: list = field(default_factory=list)
    session: list = field(default_factory=list)
    price: list[float] = field(default_factory=list)


class OnlineState:
    """Per-user event histories, updated event by event, and each user's features at a time.

    ``features(user, T)`` equals the user's row of ``features.events.features_at(log, T)``
    bit for bit, where ``log`` holds every event added so far (any arrival order; a user's
    events with equal timestamps in arrival order). Sessions come from the events'
    ``session_id`` when every event of the user before ``T`` has one, else from the
    inactivity gap ``session_gap``, as the batch reader derives them.

    Parameters
    ----------
    session_gap : str or Timedelta
        The inactivity gap that starts a new session (``features.events.SESSION_GAP``).
    max_events : int
        The most events the state holds; ``add`` refuses a batch that would exceed it.

    Notes
    -----
    Memory is a few hundred bytes per event (Python lists: per user its events; per item
    and category the sorted times of its events). Adding an event costs O(log n) when
    events come in about time order, as they happen; one that arrives m events late is
    inserted m places before the end of those sorted lists (O(m), a memory move). A query
    costs O(k log n) for a user with k events: the item and category counts before ``T``
    are binary searches in the sorted lists, then ``user_features`` on the k events.
    """

    def __init__(self, session_gap=ev.SESSION_GAP, max_events: int = 10_000_000) -> None:
        self.session_gap = pd.Timedelta(session_gap)
        self.max_events = max_events
        self.n_events = 0
        self._users: dict = {}
        self._items = _Entities()
        self._categories = _Entities()
        self._first: int | None = None  # the earliest timestamp (ns) of any event

    @property
    def n_users(self) -> int:
        return len(self._users)

    def add(self, events: pd.DataFrame) -> int:
        """Add validated events (``events_frame``), in their row order; returns how many.

        Raises
        ------
        StateFull
            When the state would hold more than ``max_events`` events (nothing is added).
        """
        if self.n_events + len(events) > self.max_events:
            raise StateFull(f"the online state holds {self.n_events:,} events; "
                               f"{len(events):,} more exceed its limit of "
                               f"{self.max_events:,} (--max-events)")
        t = events["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64").tolist()
        typ = pd.Categorical(events["event_type"], categories=ev.EVENT_TYPES).codes.tolist()
        n = len(t)
        keys = {c: _keys(events[c]) if c in events.columns else [None] * n
                for c in ("user_id", "item_id", "category", "session_id")}
        price = (events["price"].to_numpy(dtype=np.float64).tolist()
                 if "price" in events.columns else [np.nan] * n)
        for i in range(len(t)):
            log = self._users.get(keys["user_id"][i])
            if log is None:
                log = self._users[keys["user_id"][i]] = _UserLog()
            log.t.append(t[i])
            log.seq.append(self.n_events)
            log.typ.append(typ[i])
            log.item.append(keys["item_id"][i])
            log.category.append(keys["category"][i])
            log.session.append(keys["session_id"][i])
            log.price.append(price[i])
            self._items.add(keys["item_id"][i], t[i], typ[i])
            self._categories.add(keys["category"][i], t[i], typ[i])
            self._first = t[i] if self._first is None else min(self._first, t[i])
            self.n_events += 1
        return len(t)

    def features(self, users: Sequence, cutoff) -> pd.DataFrame:
        """The feature rows of these users from their events before ``cutoff``.

        Parameters
        ----------
        users : sequence of int or str
            As sent with the events (an integer id and its text are the same user).
        cutoff : timestamp (naive = UTC)

        Returns
        -------
        DataFrame (n, len(feature_columns(True)))
            One row per user with events before ``cutoff`` (the others are left out), in
            the order given, indexed by ``user_id``; every feature column, the price block
            included (0 where no event has a price), so it serves a model trained with or
            without prices.
        """
        T = ev._utc(cutoff).value
        ids, parts = [], []
        for user_id in users:
            log = self._users.get(_key(str(user_id)))
            t = np.array(log.t if log is not None else [], dtype=np.int64)
            keep = np.flatnonzero(t < T)
            if len(keep):  # by time, then arrival
                parts.append((log, keep[np.lexsort((np.array(log.seq)[keep], t[keep]))]))
                ids.append(user_id)
        columns = ev.feature_columns(True)
        if not parts:
            return pd.DataFrame(np.zeros((0, len(columns))), columns=columns,
                                index=pd.Index([], name="user_id"))

        def gather(name: str) -> list:
            return [getattr(log, name)[i] for log, keep in parts for i in keep.tolist()]

        lengths = [len(keep) for _, keep in parts]
        t = np.array(gather("t"), dtype=np.int64)
        item, items = self._items.codes_and_counts(gather("item"), T)
        category, categories = self._categories.codes_and_counts(gather("category"), T)
        events = ev.UserEvents(u=np.repeat(np.arange(len(parts)), lengths), n_users=len(parts),
                               t=t, typ=np.array(gather("typ"), dtype=np.int64), item=item,
                               category=category, session=self._sessions(parts, t),
                               price=np.array(gather("price"), dtype=np.float64))
        # The first event of the log is before T: these users have one.
        row = ev.user_features(events, ev.LogContext(T, self._first, items, categories),
                               self.session_gap)
        return pd.DataFrame(row, columns=columns, index=pd.Index(ids, name="user_id"))

    def _sessions(self, parts: list, t: np.ndarray) -> np.ndarray:
        """Dense session codes of the gathered events, numbered in order of first event
        within each user (as the batch numbers them): the events' ``session_id`` where every
        event of the user has one, else sessions derived from the inactivity gap."""
        sid = np.empty(len(t), dtype=np.int64)
        start = n_sessions = 0
        for log, keep in parts:
            keys = [log.session[i] for i in keep.tolist()]
            span = slice(start, start + len(keys))
            if any(key is None for key in keys):
                local = ev.derive_sessions(np.zeros(len(keys), dtype=np.int64), t[span],
                                           self.session_gap)
            else:
                local = ev._codes(np.array(keys, dtype=object))[0]
            sid[span] = local + n_sessions
            n_sessions += int(local.max()) + 1
            start += len(keys)
        return sid
