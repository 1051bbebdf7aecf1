"""Event logs beyond one machine: the Dask engine (``--engine dask``).

The same event log, the same features and the same scores as the pandas engine
(``features.events``, ``features.scoring``), computed on Dask's distributed scheduler: a
``LocalCluster`` by default, any cluster by its scheduler address. Dask (and pyarrow for
Parquet) are imported here only, lazily; ``pip install -e '.[scale]'``.

Pipeline
--------
1. **Scan** (one task per partition: a Parquet file's row groups, or a whole CSV file): each
   partition is read and validated by the pandas engine's own reader
   (``events._read_raw``/``_canonical_frame``), so messages name the same file, row and
   column. The client gathers, per partition, its invalid cells, whether its ids are
   integers, and per UTC hour the count, first and last timestamp of its valid events.
2. **Global decisions** on the client, as ``read_events`` makes them on one table: the first
   invalid cell (or the counts with ``drop_invalid``); int64 or text ids; the core time range
   from the exact order statistics located through the hour histogram (see
   ``core_range``).
3. **Canonical partitions, shuffled by user**: each partition is read again, validated and
   mapped to the canonical table with those decisions, tagged with its position in the log
   (``_order``: file, row) and a hash of its raw row; ``DataFrame.shuffle("user_id")`` puts
   every event of a user in one partition. There each partition is sorted by (user, time,
   position), which is ``read_events``' stable sort; duplicates are counted, out-of-range
   events dropped and sessions derived as there.
4. **Global statistics, then features per partition**: the only values of ``features_at``
   that depend on other users (the log's first time, item and category counts) are reduced
   over all partitions first, in a pass of their own (``global_stats``;
   ``events.event_stats``, ``EventStats.combine``) and passed to ``events.features_at`` of
   every partition. The feature rows (one per user and cutoff) are
   gathered into pandas, which then trains exactly as with the pandas engine; scoring runs
   the model in each partition (``map_partitions``) and gathers (user, probability).

With these, features equal the pandas engine's bit for bit and the scores agree within
1e-6 (the network scores each partition as one batch: float32 sums in another order; at
most 1.5e-7 apart on 10 M events); tests/features/test_dask_engine.py.

Several files are one log as in ``read_events``: the copies of an event found in several
files are dropped after the shuffle (all copies have the event's user), per partition by
``events._union``'s rule (``_drop_overlap``); the core range is then found from the
de-duplicated partitions (a pass of its own), so such a log costs the shuffle three times
(core range, global statistics, features) instead of once.

``write_parquet_parts`` writes the scores as a directory of Parquet part files, one per
partition, each written by a worker; only (user, probability) comes to the client, for
the global ranks.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import events as E

#: Rows per partition a Parquet file's row groups are gathered into (a partition is read,
#: validated and mapped in one piece; about 150 bytes a row while that happens).
ROWS_PER_PARTITION = 1_000_000

#: Workers of the default LocalCluster (one thread each: the features are NumPy code that
#: holds the GIL for much of the time).
DEFAULT_WORKERS = 2

#: Memory limit of each worker of the default LocalCluster: Dask spills to disk at 60 % of
#: it and pauses a worker at 80 %, so a machine needs about twice this per worker.
DEFAULT_MEMORY_LIMIT = "2.5GiB"

_ID_COLUMNS = ("user_id", "item_id", "category", "session_id")


def require_dask() -> None:
    """Raise ImportError with the install hint when dask.distributed or pyarrow is absent."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ImportError(f"--engine dask needs dask[distributed] and pyarrow ({e.name} is not "
                          "installed): pip install 'purchase-propensity[scale]'") from None


@contextlib.contextmanager
def connect(scheduler: str | None = None, n_workers: int = DEFAULT_WORKERS,
            memory_limit: str | int = DEFAULT_MEMORY_LIMIT) -> Iterator:
    """A ``distributed.Client``: to the scheduler at ``scheduler`` (``tcp://host:8786``), else
    to a new ``LocalCluster(n_workers, threads_per_worker=1, memory_limit)`` closed on exit.
    The client becomes Dask's default scheduler inside the ``with`` block."""
    require_dask()
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as e:
            raise ValueError(f"--scheduler {scheduler}: cannot connect ({e})") from None
        with client:
            yield client
        return
    import logging

    # The p2p shuffle logs each shuffle's start and end as warnings; a command line shows
    # errors only.
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, memory_limit=memory_limit,
                      processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


# --------------------------------------------------------------------------- partitions


@dataclass(frozen=True)
class Part:
    """One partition of the log: rows ``offset .. offset + n_rows - 1`` (0-based) of file
    number ``file`` (``path``); ``row_groups`` of a Parquet file, None for a whole CSV."""

    file: int
    path: str
    row_groups: tuple[int, ...] | None
    offset: int
    n_rows: int | None


def partitions(paths: Sequence[Path], rows: int | None = None) -> list[Part]:
    """The partitions of the files of a log: consecutive row groups of a Parquet file up to
    ``rows`` rows (default ``ROWS_PER_PARTITION``; at least one group), a CSV file whole."""
    rows = ROWS_PER_PARTITION if rows is None else rows
    out: list[Part] = []
    for i, path in enumerate(paths):
        if not E.is_parquet(path) or Path(path).is_dir():
            out.append(Part(i, str(path), None, 0, None))
            continue
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path).metadata
        except FileNotFoundError:
            raise E.EventFileError(f"{path}: no such event-log file") from None
        except (OSError, pa.ArrowException) as e:
            raise E.EventFileError(f"{path}: cannot read it as Parquet "
                                   f"({' '.join(str(e).split())})") from None
        groups: list[int] = []
        offset = start = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            offset += meta.row_group(g).num_rows
            if offset - start >= rows or g == meta.num_row_groups - 1:
                out.append(Part(i, str(path), tuple(groups), start, offset - start))
                groups, start = [], offset
        if meta.num_row_groups == 0:
            out.append(Part(i, str(path), (), 0, 0))
    return out


def _validated(part: Part, fmt: str):
    """The partition's raw cells, header flag, validator, canonical frame and invalid mask."""
    if part.row_groups is None:
        raw, header = E._read_raw(Path(part.path), fmt)
    else:
        raw, header = E._parquet_raw(Path(part.path), fmt, E.read_parquet(
            Path(part.path), list(part.row_groups))), None
    v = E._Validator(raw)
    df = E._canonical_frame(raw, fmt, v)
    return raw, header, v, df, v.invalid_rows()


def _first_problem(v, i: int) -> tuple[str, str]:
    return next((col, reason) for col, reason, m in v.problems if m[i])


def _id_is_int(s: pd.Series) -> bool:
    """``events._as_id``'s choice for this column: int64 (True) or text."""
    return pd.api.types.is_integer_dtype(E._as_id(s.iloc[:0]) if len(s) == 0 else E._as_id(s))


def _scan(part: Part, fmt: str) -> dict:
    """Pass 1 over one partition: its invalid cells, id kinds, columns and hour histogram."""
    raw, header, v, df, bad = _validated(part, fmt)
    rows = np.flatnonzero(bad)
    by_reason: dict[str, int] = {}
    for col, reason, m in v.problems:
        by_reason[f"{col}: {reason}"] = by_reason.get(f"{col}: {reason}", 0) + int(m.sum())
    examples = []
    for i in rows[:5]:
        col, reason = _first_problem(v, int(i))
        examples.append({"row": part.offset + int(i) + 1, "column": col,
                         "value": E._cell(raw[col].iloc[i]), "reason": reason})
    df = df[~bad]
    ids = {c: _id_is_int(df[c]) for c in _ID_COLUMNS
           if c in df.columns and len(df)}
    return {"n_rows": len(raw), "header": header, "n_invalid": len(rows),
            "by_reason": by_reason, "examples": examples, "ids": ids,
            "columns": list(df.columns), "hours": _hours(df)}


def _hours(df: pd.DataFrame) -> pd.DataFrame:
    """The hour histogram of a partition's timestamps: per hour number ``t // 1 h`` the
    count, first and last time (int64 ns), as ``core_range`` takes it."""
    t = df["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    return pd.DataFrame({"h": t // E._NS_PER_H, "t": t}).groupby("h")["t"].agg(
        ["count", "min", "max"])


def core_range(hours: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``events._core_range`` of all timestamps from their hour histogram.

    ``hours`` (index: hour number ``t // 1 h``; columns count, min, max) locates the order
    statistics ``x_k, x_(k+1)`` around each quantile ``q`` (``k = floor(q (n - 1))``): in
    one hour they fix the hour of the quantile; in two, ``x_k`` is the last time of the
    first hour and ``x_(k+1)`` the first of the second, and the quantile is interpolated
    between them as ``np.quantile`` does (the same float64 value, unless it lies within an
    ulp (256 ns) of a whole hour).
    """
    hours = hours.sort_index()
    cum = hours["count"].cumsum().to_numpy()
    n = int(cum[-1])

    def order_stat(k: int) -> tuple[int, int, int]:  # (hour, that hour's min, max) of x_k
        j = int(np.searchsorted(cum, k + 1))
        return int(hours.index[j]), int(hours["min"].iloc[j]), int(hours["max"].iloc[j])

    def quantile_hour(q: float) -> int:
        v = q * (n - 1)
        k = math.floor(v)
        a, b = order_stat(k), order_stat(min(k + 1, n - 1))
        if a[0] == b[0]:
            return a[0]
        x = float(np.quantile(np.array([a[2], b[1]], dtype=np.int64), v - k))
        return int(np.int64(x)) // E._NS_PER_H

    lo, hi = quantile_hour(E.RANGE_QUANTILE), quantile_hour(1.0 - E.RANGE_QUANTILE)
    start = pd.Timestamp(lo * E._NS_PER_H, tz="UTC")
    return start, pd.Timestamp((hi + 1) * E._NS_PER_H, tz="UTC")


@dataclass
class _Plan:
    """What the scan decided: ids as int64 or text, the core range, the report so far;
    ``overlap``: several files, whose copies of an event are dropped (``_drop_overlap``)."""

    ids_int: dict[str, bool]
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    report: dict
    overlap: bool = False


def _plan(parts: list[Part], scans: list[dict], paths: Sequence[Path], fmt: str,
          drop_invalid: bool) -> _Plan:
    """The decisions of ``read_events`` from the scans of all partitions (pass 1)."""
    files = sorted({p.file for p in parts})
    per_file = {f: [s for p, s in zip(parts, scans, strict=True) if p.file == f]
                for f in files}
    for f in files:
        scans_f = per_file[f]
        n_invalid = sum(s["n_invalid"] for s in scans_f)
        if n_invalid and not drop_invalid:
            first = next(s["examples"][0] for s in scans_f if s["examples"])
            raise E.EventLogError(paths[f], first["row"], first["column"], first["value"],
                                  first["reason"], n_invalid, scans_f[0]["header"])
    columns = scans[0]["columns"]
    for p, s in zip(parts, scans, strict=True):
        if s["columns"] != columns:
            raise E.EventFileError(f"{p.path}: its columns {s['columns']} differ from those "
                                   f"of {paths[0]} ({columns}); the files of one log must "
                                   "match")
    reports = []
    for f in files:
        scans_f = per_file[f]
        by_reason: dict[str, int] = {}
        for s in scans_f:
            for k, c in s["by_reason"].items():
                by_reason[k] = by_reason.get(k, 0) + c
        reports.append({"path": str(paths[f]), "format": fmt,
                        "n_rows": sum(s["n_rows"] for s in scans_f),
                        "n_invalid": sum(s["n_invalid"] for s in scans_f),
                        "invalid_by_reason": by_reason,
                        "invalid_examples": [e for s in scans_f for e in s["examples"]][:5]})
    if len(reports) == 1:
        report = reports[0]
    else:
        by_reason = {}
        for r in reports:
            for k, c in r["invalid_by_reason"].items():
                by_reason[k] = by_reason.get(k, 0) + c
        report = {"path": ", ".join(r["path"] for r in reports),
                  "files": [str(p) for p in paths], "format": fmt,
                  "n_rows": sum(r["n_rows"] for r in reports),
                  "n_invalid": sum(r["n_invalid"] for r in reports),
                  "invalid_by_reason": by_reason,
                  "invalid_examples": [{"file": r["path"], **e} for r in reports
                                       for e in r["invalid_examples"]][:5],
                  "n_overlap_dropped": None}
    ids_int = {c: all(s["ids"].get(c, True) for s in scans) for c in _ID_COLUMNS
               if c in columns}
    start, end = _time_range([s["hours"] for s in scans])
    return _Plan(ids_int, start, end, report, overlap=len(files) > 1)


def _time_range(hours: list[pd.DataFrame]) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The core range of the partitions' hour histograms together ((None, None): no event)."""
    table = pd.concat(hours)
    if not len(table):
        return None, None
    return core_range(table.groupby(level=0).agg({"count": "sum", "min": "min", "max": "max"}))


# --------------------------------------------------------------------------- canonical log


def _canonical(part: Part, fmt: str, plan: _Plan) -> pd.DataFrame:
    """Pass 2 over one partition: its valid events in canonical columns (ids as the plan
    says), with ``_order`` (file, row: the log's row order), ``_raw`` (a hash of the file
    number and the raw row: equal rows of one file), ``_outside`` (outside the core range;
    none while ``plan.start`` is None) and, for several files, ``_event`` (a hash of the
    canonical values before the ids are converted: what ``events._union`` compares)."""
    raw, _, _, df, bad = _validated(part, fmt)
    raw, df = raw[~bad], df[~bad]
    # A 64-bit collision would count two different events as copies of one.
    event = pd.util.hash_pandas_object(df, index=False).to_numpy() if plan.overlap else None
    for c, as_int in plan.ids_int.items():
        s = df[c]
        if as_int:
            df[c] = E._as_id(s if not E._is_text(s) else s.astype(str).where(s.notna(), ""))
        else:
            s = s.astype("Int64").astype(str).where(s.notna(), "") if not E._is_text(s) \
                else s.astype(str).where(s.notna(), "").str.strip()
            df[c] = s.where(s != "", None).astype(object)
    df["event_type"] = pd.Categorical(df["event_type"], categories=E.EVENT_TYPES)
    rows = np.flatnonzero(~bad) + part.offset
    df["_order"] = (np.int64(part.file) << 40) + rows.astype(np.int64)
    # Equal raw rows of one file hash equally (CSV text, or Parquet values: a file has one
    # type per column); a 64-bit collision would count two rows as one duplicate.
    df["_raw"] = pd.util.hash_pandas_object(raw, index=False).to_numpy() ^ np.uint64(part.file)
    t = df["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    df["_outside"] = (t < plan.start.value) | (t >= plan.end.value) if plan.start is not None \
        else np.zeros(len(df), dtype=bool)
    if event is not None:
        df["_event"] = event
    return df.reset_index(drop=True)


def _drop_overlap(df: pd.DataFrame) -> pd.DataFrame:
    """``events._union`` on one partition shuffled by user (every copy of an event has its
    user, so the rule is exact here): in the log's row order, the k-th copy of an event in
    its file and the k-th in another file are one event, the first kept (an event stays as
    often as in the file holding it most often). ``attrs``: the duplicate rows (counted
    before, as each file's) and the copies dropped."""
    df = df.sort_values("_order", kind="stable")
    n_dup = int(df["_raw"].duplicated().sum())
    event = df["_event"].to_numpy()
    copy = pd.Series(event).groupby([df["_order"].to_numpy() >> 40, event],
                                    sort=False).cumcount().to_numpy()
    overlap = pd.DataFrame({"event": event, "copy": copy}).duplicated().to_numpy()
    df = df[~overlap].drop(columns="_event")
    df.attrs = {"n_duplicate_rows": n_dup, "n_overlap_dropped": int(overlap.sum())}
    return df


def _mark_outside(df: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """``_outside`` of a de-duplicated partition, from the core range of the whole union."""
    t = df["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    return df.assign(_outside=(t < start.value) | (t >= end.value))


def _by_user(df: pd.DataFrame, derive: bool, session_gap) -> pd.DataFrame:
    """One shuffled partition (every event of its users) as ``read_events`` leaves the
    log: sorted by (user, time, position), out-of-range events dropped, sessions derived;
    ``attrs``: its duplicate rows and out-of-range events."""
    given = dict(df.attrs)  # from _drop_overlap, with several files
    df = df.sort_values("_order", kind="stable").sort_values(["user_id", "timestamp"],
                                                             kind="stable")
    n_dup = (given["n_duplicate_rows"] if "n_duplicate_rows" in given
             else int(df["_raw"].duplicated().sum()))
    outside = df["_outside"].to_numpy()
    far = np.sort(df["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")[outside])
    df = df[~outside].drop(columns=["_order", "_raw", "_outside"]).reset_index(drop=True)
    if derive:
        t = df["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
        df["session_id"] = E.derive_sessions(pd.factorize(df["user_id"])[0], t,
                                             pd.Timedelta(session_gap))
    cols = ["user_id", "timestamp", "event_type", "session_id", "item_id", "category", "price"]
    df = df[[c for c in cols if c in df.columns]]
    df.attrs = {"n_duplicate_rows": n_dup, "n_out_of_range": int(outside.sum()),
                "out_of_range": far[:5].tolist(), "sessions_derived": derive,
                "n_overlap_dropped": given.get("n_overlap_dropped", 0)}
    return df


def _union(parts: list[Part], fmt: str, plan: _Plan, empty: pd.DataFrame):
    """Several files' canonical partitions as one log (``events._union``), shuffled by user:
    the copies of an event dropped per partition (``_drop_overlap``), then the core range
    of what is left found (a pass of its own, setting ``plan.start`` and ``plan.end``) and
    ``_outside`` marked. Returns (frame, users): the same
    partitions, by user, each computed from the files again when used (the global
    statistics and the features each run the shuffle once more)."""
    import dask
    import dask.dataframe as dd

    read = replace(plan, start=None, end=None)  # _outside: after the union
    canonical = dd.from_map(_canonical, parts, fmt=fmt, plan=read,
                            meta=empty.assign(_event=np.uint64(0)), enforce_metadata=False)
    union = canonical.shuffle("user_id", npartitions=len(parts)).map_partitions(
        _drop_overlap, meta=empty, enforce_metadata=False)  # an empty part keeps attrs
    hours = dask.compute(*[dask.delayed(_hours)(d) for d in union.to_delayed()])
    plan.start, plan.end = _time_range(list(hours))
    if plan.start is None:
        return union, union
    frame = union.map_partitions(_mark_outside, plan.start, plan.end, meta=empty,
                                 enforce_metadata=False)
    return frame, frame


@dataclass
class DaskLog:
    """An event log read by the Dask engine (lazy Dask DataFrames): ``frame`` (the canonical
    partitions before the shuffle; with several files, after it and ``_drop_overlap``),
    ``users`` (after it: the canonical event table
    partitioned by user), ``counts`` (one row of report counts per partition), ``report``
    (``read_events``' report as far as the scan knows it)."""

    frame: object
    users: object
    counts: object
    report: dict


def read_events(paths, format: str = "canonical", drop_invalid: bool = False,
                session_gap=E.SESSION_GAP, rows: int | None = None) -> DaskLog:
    """``events.read_events`` on the current Dask client: the same validation (and its
    messages), ids, core time range (out-of-range events dropped), sort order and
    sessions, with the log partitioned by user; several files as one log, the copies of an
    event across files dropped (``_union``). Computes pass 1 (the scan) only, and with
    several files the union's core range (a shuffle); the canonical partitions and the
    report's counts (``finish_report``) stay lazy, computed with the features (after the
    pass of ``global_stats``)."""
    import dask
    import dask.dataframe as dd

    paths = [Path(p) for p in ([paths] if isinstance(paths, str | os.PathLike) else paths)]
    if not paths:
        raise E.EventFileError("no event-log file given")
    if format not in E._FORMATS:
        raise ValueError(f"unknown event-log format {format!r}; expected one of "
                         f"{list(E._FORMATS)}")
    parts = partitions(paths, rows)
    scans = dask.compute(*[dask.delayed(_scan)(p, format) for p in parts])
    plan = _plan(parts, list(scans), paths, format, drop_invalid)
    first = parts[0] if parts[0].row_groups is None else Part(0, parts[0].path, (), 0, 0)
    empty = _canonical(first, format, plan).iloc[:0]  # Dask's meta (a Parquet file's schema)
    if plan.overlap:
        empty = empty.drop(columns="_event")
    derive = "session_id" not in plan.ids_int
    # Text ids stay Python strings (object), as in the pandas engine, not pyarrow strings.
    with dask.config.set({"dataframe.convert-string": False}):
        if not plan.overlap:
            frame = dd.from_map(_canonical, parts, fmt=format, plan=plan, meta=empty,
                                enforce_metadata=False)
            users = frame.shuffle("user_id", npartitions=len(parts))
        else:  # the copies are dropped after the shuffle; the range is the union's
            frame, users = _union(parts, format, plan, empty)
        # enforce_metadata would replace an empty result (all out of range) by the meta,
        # losing its counts (attrs)
        users = users.map_partitions(_by_user, derive, session_gap,
                                     meta=_by_user(empty, derive, session_gap),
                                     enforce_metadata=False)
        counts = users.map_partitions(_counts, meta=_counts(empty).iloc[:0])
    plan.report["time_range"] = (None if plan.start is None
                                 else [plan.start.isoformat(), plan.end.isoformat()])
    return DaskLog(frame, users, counts, plan.report)


def finish_report(log: DaskLog, counts: pd.DataFrame) -> dict:
    """``read_events``' report from the scan and the per-partition counts (computed)."""
    report = {k: v for k, v in log.report.items() if k not in ("n_overlap_dropped",
                                                                   "time_range")}
    report["n_duplicate_rows"] = int(counts["n_duplicate_rows"].sum())
    if "files" in report:  # in the order of read_events' report of several files
        report["n_overlap_dropped"] = int(counts["n_overlap_dropped"].sum())
    examples = sorted(t for ex in counts["out_of_range_examples"] for t in ex)[:5]
    report["time_range"] = log.report["time_range"]
    report["n_out_of_range"] = int(counts["n_out_of_range"].sum())
    report["out_of_range_examples"] = [pd.Timestamp(x, tz="UTC").isoformat() for x in examples]
    report["out_of_range_action"] = "drop"
    report["sessions_derived"] = bool(counts["sessions_derived"].all())
    report["n_events"] = int(counts["n_events"].sum())
    report["n_users"] = int(counts["n_users"].sum())
    return report


def _counts(df: pd.DataFrame) -> pd.DataFrame:
    """One partition's contribution to the report (one row)."""
    return pd.DataFrame({"n_events": [len(df)], "n_users": [df["user_id"].nunique()],
                         "n_duplicate_rows": [df.attrs.get("n_duplicate_rows", 0)],
                         "n_overlap_dropped": [df.attrs.get("n_overlap_dropped", 0)],
                         "n_out_of_range": [df.attrs.get("n_out_of_range", 0)],
                         "out_of_range_examples": [df.attrs.get("out_of_range", [])],
                         "sessions_derived": [df.attrs.get("sessions_derived", True)]})


# --------------------------------------------------------------------------- features


def _stats(df: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> list[E.EventStats]:
    """One (unshuffled) partition's ``EventStats`` at each cutoff (core-range events)."""
    df = df[~df["_outside"].to_numpy()]
    return [E.event_stats(df, c) for c in cutoffs]


def _combine(parts: list[list[E.EventStats]]) -> list[E.EventStats]:
    return [E.EventStats.combine([p[k] for p in parts]) for k in range(len(parts[0]))]


def global_stats(log: DaskLog, cutoffs: list[pd.Timestamp]):
    """The whole log's ``EventStats`` at each cutoff: a reduction over the partitions
    before the shuffle, computed now and kept in the cluster (a persisted Delayed).

    A pass of its own: computed in the same graph as the shuffle, every canonical partition
    would wait in memory for both its consumers (a 100 M-event log: 7 GB)."""
    import dask
    from distributed import futures_of, wait

    reduced = dask.delayed(_combine)([dask.delayed(_stats)(d, cutoffs)
                                      for d in log.frame.to_delayed()])
    reduced = dask.persist(reduced)[0]
    futures = futures_of(reduced)  # none on a local scheduler (tests: "sync")
    if futures:
        wait(futures)  # done before the shuffle's graph wants the same partitions
    return reduced


def _snapshots(df: pd.DataFrame, cutoffs: list[pd.Timestamp], horizon, stats) -> pd.DataFrame:
    """``events.snapshot`` of one partition at each cutoff: the features, ``_label`` and
    ``_cut`` (the cutoff's number), indexed by user_id."""
    frames = []
    for k, (c, st) in enumerate(zip(cutoffs, stats, strict=True)):
        X, y = E.snapshot(df, c, horizon, stats=st)
        frames.append(X.assign(_label=y.to_numpy(), _cut=np.int64(k)))
    return pd.concat(frames)


def snapshots(log: DaskLog, cutoffs: list[pd.Timestamp], horizon
              ) -> tuple[list[tuple[pd.DataFrame, pd.Series]], dict]:
    """``events.snapshot(events, c, horizon)`` of the whole log for each cutoff ``c``, and
    the log's report: (X, y) per cutoff, equal to the pandas engine's
    (rows sorted by user_id)."""
    import dask

    stats = global_stats(log, cutoffs)
    meta = _snapshots(log.users._meta, cutoffs, horizon, [None] * len(cutoffs))
    parts = log.users.map_partitions(_snapshots, cutoffs, horizon, stats, meta=meta)
    table, counts = dask.compute(parts, log.counts)
    out = []
    for k in range(len(cutoffs)):
        part = table[table["_cut"].to_numpy() == k].sort_index(kind="stable")
        y = part["_label"].astype(np.int64).rename("purchased")
        out.append((part.drop(columns=["_label", "_cut"]), y))
    return out, finish_report(log, counts)


def load_event_splits(path, format: str, horizon, cutoff=None, drop_invalid: bool = False,
                      stride=None, min_history="1D", rows: int | None = None
                      ) -> E.EventSplits:
    """``events.load_event_splits`` with the Dask engine (on the current client): the same
    cutoffs, snapshots and info (``rows``: rows per partition, ``partitions``)."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    log = read_events(paths, format=format, drop_invalid=drop_invalid, rows=rows)
    if log.report["time_range"] is None:
        raise ValueError(f"{log.report['path']}: no valid events")
    start, end = (pd.Timestamp(x) for x in log.report["time_range"])
    cuts = E.rolling_cutoffs(start, end, horizon, cutoff, stride, min_history)
    h = E.parse_horizon(horizon)
    every = [*cuts["train"], cuts["dev"][0], cuts["test"][0]]
    snaps, report = snapshots(log, every, h)
    return E.event_splits(snaps, cuts, h, report, format)


# --------------------------------------------------------------------------- scoring


def _score(df: pd.DataFrame, cutoff, stats, model, threads) -> pd.DataFrame:
    """One partition's users scored at ``cutoff``: ``propensity`` indexed by user_id."""
    X = E.features_at(df, cutoff, stats=stats[0])
    p = model.predict_proba(X, threads=threads) if len(X) else np.zeros(0)
    return pd.DataFrame({"propensity": np.asarray(p, dtype=np.float64)}, index=X.index)


def _scored(paths, model, cutoff, format: str, threads: int | None):
    """(log, cutoff as UTC, the lazy per-partition scores): each user with events before
    ``cutoff`` (default: the log's end) scored in its partition (``map_partitions``) with
    the log-wide statistics reduced first."""
    log = read_events(paths, format=format)
    if cutoff is None:
        if log.report["time_range"] is None:
            raise ValueError(f"{log.report['path']}: no valid events")
        cutoff = log.report["time_range"][1]
    T = E._utc(cutoff)
    stats = global_stats(log, [T])
    meta = pd.DataFrame({"propensity": pd.Series(dtype="float64")},
                        index=pd.Index(log.users._meta["user_id"].iloc[:0], name="user_id"))
    return log, T, log.users.map_partitions(_score, T, stats, model, threads, meta=meta)


def score(paths, model, cutoff=None, format: str = "canonical", threads: int | None = None
          ) -> tuple[pd.Series, pd.Timestamp, dict]:
    """Score every user with events before ``cutoff`` (default: the log's end) with the
    Dask engine: features and the model run in each partition (``map_partitions``); the
    scores are gathered, sorted by user_id (the pandas engine's order). Returns (scores,
    cutoff, report)."""
    import dask

    log, T, parts = _scored(paths, model, cutoff, format, threads)
    scores, counts = dask.compute(parts, log.counts)
    return scores["propensity"].sort_index(kind="stable"), T, finish_report(log, counts)


def write_parquet_parts(paths, model, output, cutoff=None, format: str = "canonical",
                        threads: int | None = None, threshold: float | None = None
                        ) -> tuple[pd.Series, np.ndarray, pd.Timestamp, dict]:
    """``score``, written as a new directory ``output`` of Parquet part files
    (``part.00000.parquet``, ...; one per partition, written by the worker holding it):
    the columns of ``predict.py --output x.parquet`` (user_id as text, propensity float64,
    rank and decile int64, label int8 where ``threshold`` is given).

    The ranks are global and those of the one-file output (1 = highest score, ties in
    user_id order): the scored partitions stay in the cluster (persisted), only (user,
    probability) comes to the client, which ranks them (``features.ranking.score_keys``,
    a stable sort) and sends each partition its ranks with the task that writes it. The
    parts go to a temporary directory beside ``output`` (``.NAME.XXXXXXXX``; the workers
    must see the same file system) renamed to ``output`` at the end; it is removed on
    failure. Nothing is written when no user was scored.

    Returns
    -------
    (scores, rank, cutoff, report): ``propensity`` indexed by user_id and each user's rank,
    in the order of the parts; the cutoff scored at; the log's report.

    Raises
    ------
    FileExistsError
        If ``output`` exists (a partitioned output never replaces anything).
    """
    import shutil
    import tempfile

    import dask

    from nn_core.io import umask

    from .ranking import score_keys

    output = Path(output)
    log, T, scored = _scored(paths, model, cutoff, format, threads)
    scored, counts = dask.persist(scored, log.counts)  # one pass; the scores stay there
    parts = scored.to_delayed()
    gathered = dask.compute(*parts)
    report = finish_report(log, counts.compute())
    sizes = [len(g) for g in gathered]
    scores = pd.concat(gathered)["propensity"]
    n = len(scores)
    rank = np.empty(n, dtype=np.int64)
    # positions in user_id order (the one-file output's row order, whose ties it keeps)
    by_user = pd.Series(np.arange(n), index=scores.index).sort_index(kind="stable").to_numpy()
    rank[by_user[np.argsort(score_keys(scores.to_numpy()[by_user]), kind="stable")]] = \
        np.arange(1, n + 1)
    if n == 0:
        return scores, rank, T, report
    if output.exists():
        raise FileExistsError(f"{output}: exists; a partitioned output is a new directory")
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        ends = np.cumsum([0, *sizes])
        dask.compute(*[dask.delayed(_write_part)(part, rank[ends[i]:ends[i + 1]], n, threshold,
                                                 str(tmp / f"part.{i:05d}.parquet"))
                       for i, part in enumerate(parts)])
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp's directory is private; scores are not
        if output.exists():  # made while the parts were written
            raise FileExistsError(f"{output}: exists; a partitioned output is a new directory")
        os.rename(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return scores, rank, T, report


def _write_part(df: pd.DataFrame, rank: np.ndarray, n: int, threshold: float | None,
                path: str) -> int:
    """One partition's rows of the output (on a worker): user_id (as the text the one-file
    output writes), propensity, rank, decile ``floor(10 (rank - 1) / n) + 1``, label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = df["propensity"].to_numpy(dtype=np.float64)
    columns = {"user_id": pa.array([str(i) for i in df.index], type=pa.large_string()),
               "propensity": pa.array(p), "rank": pa.array(rank),
               "decile": pa.array((rank - 1) * 10 // n + 1)}
    if threshold is not None:  # on the full-precision score
        columns["label"] = pa.array((p >= threshold).astype(np.int8))
    pq.write_table(pa.table(columns), path)
    return len(p)
