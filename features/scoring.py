"""Scoring raw rows with a loaded model directory (:class:`nn_core.Predictor`), in chunks.

* :func:`score_table`: a session table read once, validated and scored chunk by chunk;
* :func:`score_events`: every user of an event log active before a cutoff;
* :func:`write_output`: the output table (id, kept columns, propensity, rank, decile,
  label) in file order, to a CSV that replaces its destination only when complete (or to
  stdout), and the top rows;
* :func:`rank_and_decile`: rank 1 = the most likely buyer, and deciles, of scores in memory.

Memory does not grow with the number of rows: the scores go to an anonymous temporary file
as sort keys (:class:`features.ranking.Spill`, 8 bytes a row) with the ids (their UTF-8
bytes), the ranks are computed exactly by an external sort
(:func:`features.ranking.exact_ranks`), and the output is written chunk by chunk from
the three files. ``--top K`` keeps K rows. ``predict.py`` is the command line over these.
"""

from __future__ import annotations

import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nn_core import Predictor
from nn_core.explain import ChunkExplainer
from nn_core.io import replace_temp, temp_file
from nn_core.onehot import InputSplit
from nn_core.preprocessing import Preprocessing, canonical_text, features_from_inputs

from .ranking import CHUNK, Spill, exact_ranks, score_keys, scores_of
from .tabular import (
    UCI_CATEGORICAL,
    UCI_NUMERIC,
    UCI_RANGES,
    UCI_TARGET,
    CsvTable,
    DataError,
    Rejected,
    Schema,
    check_columns,
    check_frame,
    iter_raw,
    iter_table,
    open_table,
)

DEFAULT_CHUNKSIZE = 100_000
#: Significant digits of the propensities written (``format(p, ".7g")``); the ranks are
#: computed from the full-precision scores.
SIGNIFICANT = 7
#: Bytes of the id matrix formatted at a time (a chunk with a very long id goes in parts).
MATRIX_BYTES = 1 << 24
#: Chunks ``score_table`` reads ahead of the one it scores, in a second thread (memory:
#: about 20 MB each at 100,000 rows of the bundled format).
READ_AHEAD = 2
#: Slices of rows ``_write_rows`` formats ahead of the one it writes.
WRITE_AHEAD = 2
#: What ``score_table`` and ``score_events`` may call with each chunk's raw inputs ``U``
#: (n, n_columns) and scores ``p`` (n,).
Observer = Callable[[np.ndarray, np.ndarray], None]


def scoring_schema(pre: Preprocessing, id_column: str | None = None) -> Schema:
    """The schema a table to score is checked against: the training roles, no target, the
    ranges training held the numeric columns to, and ``>= 0`` in log1p columns (log1p of a
    negative number is undefined).

    The ranges are those preprocess.json stores (``Preprocessing.column_ranges``: the
    schema's at training, e.g. a role file's ``ranges``), the same that the model's own
    check (``Preprocessing.inputs``) applies. A preprocess.json from before ranges were
    stored has none: a model of the UCI table (target ``Revenue``, exactly the UCI numeric
    and categorical columns: train.py's default roles) is then held to ``UCI_RANGES``, and
    other schemas get the log1p rule only.
    """
    columns = pre.columns
    numeric = tuple(c["name"] for c in columns if c["kind"] == "numeric")
    categorical = tuple(c["name"] for c in columns if c["kind"] == "categorical")
    stored = pre.column_ranges
    if stored is None:  # an older model directory
        uci = (pre.target == UCI_TARGET and numeric == UCI_NUMERIC
               and categorical == UCI_CATEGORICAL)
        stored = dict(UCI_RANGES) if uci else {}
    ranges = {}
    for c in columns:
        if c["kind"] != "numeric":
            continue
        low, high = stored.get(c["name"], (None, None))
        if c["log1p"]:
            low = 0.0 if low is None else max(low, 0.0)
        if (low, high) != (None, None):
            ranges[c["name"]] = (low, high)
    return Schema(None, numeric, categorical, id_column, ranges)


class IdSpool:
    """Ids as UTF-8 bytes in anonymous temporary files, appended chunk by chunk.

    A chunk of ``c`` ids is stored as their byte lengths (int64) and their bytes one after
    the other (no padding: one long id costs its own length only).
    """

    def __init__(self) -> None:
        self._lengths = Spill(np.int64)
        self._bytes = Spill(np.uint8)
        self._counts: list[int] = []

    def append(self, ids: Sequence) -> None:
        encoded = [str(i).encode("utf-8") for i in ids]
        self._lengths.append(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
        self._bytes.append(np.frombuffer(b"".join(encoded), dtype=np.uint8))
        self._counts.append(len(encoded))

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(bytes, lengths (c,))`` of each chunk, in order."""
        self._lengths.rewind()
        self._bytes.rewind()
        for count in self._counts:
            lengths = self._lengths.read(count)
            yield self._bytes.read(int(lengths.sum())), lengths

    def close(self) -> None:
        self._lengths.close()
        self._bytes.close()


@dataclass
class Scored:
    """The result of scoring: every row's score on disk, in file order.

    Attributes
    ----------
    keys : Spill of uint64
        ``features.ranking.score_keys`` of the propensities (they are its inverse).
    sizes : list of int
        Rows per chunk, in order.
    id_name : str
        The id column's name (``row`` for 1-based data row numbers).
    ids : IdSpool or None
        The ids per chunk (``None`` for row numbers).
    unseen : Counter
        Rows per categorical column that fell into the unseen bucket.
    what : str
        What was scored, for messages (``"N rows of FILE"``).
    rejected : Rejected
        The bad cells of the rows left out (``--on-invalid skip``).
    kept : dict of str to IdSpool
        Input columns copied to the output (``--keep-columns``), as text, per chunk.
    threshold : float or None
        Where the output's ``label`` column turns 1 (``p >= threshold``); ``None``: no
        label column.
    """

    keys: Spill = field(default_factory=lambda: Spill(np.uint64))
    sizes: list[int] = field(default_factory=list)
    id_name: str = "row"
    ids: IdSpool | None = None
    unseen: Counter = field(default_factory=Counter)
    what: str = ""
    rejected: Rejected = field(default_factory=Rejected)
    kept: dict[str, IdSpool] = field(default_factory=dict)
    threshold: float | None = None

    @property
    def n(self) -> int:
        return self.keys.n

    def append(self, p: np.ndarray, ids: Sequence | None = None,
               kept: Mapping[str, Sequence[str]] | None = None) -> None:
        """Add a chunk's propensities (and ids, when the ids are not row numbers, and the
        texts of the kept columns)."""
        self.keys.append(score_keys(p))
        if self.ids is not None:
            self.ids.append(ids)
        for name, spool in self.kept.items():
            spool.append(kept[name])
        self.sizes.append(len(p))

    def scores(self) -> np.ndarray:
        """Every propensity in file order (in memory: for tests and small tables)."""
        return scores_of(np.concatenate(list(self.keys.chunks()) or [np.empty(0, np.uint64)]))

    def close(self) -> None:
        self.keys.close()
        if self.ids is not None:
            self.ids.close()
        for spool in self.kept.values():
            spool.close()

    def __enter__(self) -> Scored:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def score_table(
    path: str | os.PathLike,
    model: Predictor,
    id_column: str | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
    threads: int | None = None,
    on_invalid: str = "error",
    keep_columns: Sequence[str] = (),
    observe: Observer | None = None,
    explain: ChunkExplainer | None = None,
) -> Scored:
    """Read, validate and score a session table, chunk by chunk, in one pass.

    Parameters
    ----------
    path : path-like
        CSV with every input column of the model (any order; extra columns ignored); a
        pipe works too (the file is read once).
    model : Predictor
        A loaded model directory with its preprocessing.
    id_column : str, optional
        A column that must be present (it is written as the id). By default the training
        id column when the file has it, else the 1-based data row number (``row``).
    chunksize : int
        Rows read, validated and scored at a time.
    threads : int, optional
        Threads for the ``numba`` backend.
    on_invalid : {"error", "skip", "impute"}
        What a bad cell does: raise (the default); leave its row out (``Scored.rejected``
        lists its bad cells, and the ``row`` ids stay the file's data rows); or, for a
        missing cell, impute it (the model must have been trained with imputation).
    keep_columns : sequence of str
        Input columns copied to the output (``Scored.kept``) as text: a cell's stripped text,
        or, in a column the parser reads as numbers (the model's numeric columns), the
        number (``3``, ``0.25``).
    observe : callable, optional
        Called with each chunk's raw inputs ``U`` (``Preprocessing.inputs``) and scores
        ``p`` (n,), e.g. ``nn_core.drift.DriftMonitor.update``.
    explain : nn_core.explain.ChunkExplainer, optional
        Called with each chunk's data-row numbers and features (``predict.py --explain``);
        the text columns it returns (``explain.names``) follow the kept columns.

    Returns
    -------
    Scored
        The scores on disk (the caller closes it).

    Raises
    ------
    DataError
        Naming file, row, column and value of the first problem, or "no data rows".
    """
    pre = model.preprocessing
    columns = pre.columns
    dtype = np.dtype(model.network.dtype)
    with open_table(path, chunksize, [c["name"] for c in columns if c["kind"] == "numeric"]) \
            as table:
        check_columns(path, table.header, pre.input_columns, " (the model was trained with it)")
        if id_column is not None:
            check_columns(path, table.header, [id_column], " (given as --id-column)")
        elif pre.id_column and pre.id_column in table.header:
            id_column = pre.id_column
        if on_invalid == "impute" and not pre.imputes:
            raise ValueError(f"{model.path}: the model was not trained with --on-invalid "
                             "impute; it has no values to impute")
        check_keep_columns(path, table.header, keep_columns, id_column or "row")
        table.read_as_text([c for c in [id_column, *keep_columns]
                            if c is not None and c not in pre.input_columns])
        scored = Scored(id_name=id_column or "row", ids=IdSpool() if id_column else None,
                        kept={name: IdSpool() for name in
                              [*keep_columns, *(explain.names if explain else ())]})
        schema = scoring_schema(pre, id_column)
        # The one-hot blocks' share of the first layer as gathered rows of W_0
        # (nn_core/onehot.py), for a model that is one network (a plain one, or an
        # ensemble whose members merge into one: Ensemble.merged); any other scores
        # the feature matrix (Predictor.proba).
        one_hot = InputSplit(columns) if model.one_network else None
        if one_hot is not None and not one_hot.useful:
            one_hot = None
        ahead = _ReadAhead(table, READ_AHEAD)  # the next chunks read while this one is scored
        source = _LastChunk(ahead) if keep_columns else ahead
        if on_invalid == "error":
            chunks = iter_table(source, schema, False)
        else:  # off the default path: every bad cell found, row numbers kept as ids
            chunks = _checked_chunks(source, schema, on_invalid, scored)
            if id_column is None:
                scored.ids, id_column = IdSpool(), ROW_KEY
        try:
            ahead.start()
            if one_hot is not None:  # the kernel loaded while the first chunks are read
                _load_kernel(model, one_hot, threads)
            for first_row, frame in chunks:
                U = pre.inputs(frame, first_row)
                for i, c in enumerate(columns):
                    if c["kind"] == "categorical":
                        unseen = int(np.count_nonzero(U[:, i] == len(c["categories"])))
                        scored.unseen[c["name"]] += unseen
                p = None
                if one_hot is not None:  # one network: its first layer from the codes
                    p = model.proba_inputs(one_hot, U, threads)
                if p is None:
                    X = features_from_inputs(columns, U, dtype)[0]
                    p = model.proba(X, threads=threads)  # members, bias, calibration
                if observe is not None:
                    observe(U, p)
                kept = {name: _cell_texts(source.raw[name].loc[frame.index])
                        for name in keep_columns}
                if explain is not None:  # float64 features (the one-hot path builds none)
                    rows = (frame[ROW_KEY].to_numpy() if ROW_KEY in frame
                            else first_row + np.arange(len(frame)))
                    kept.update(explain(rows, features_from_inputs(columns, U)[0]))
                scored.append(np.asarray(p, dtype=np.float64),
                              frame[id_column].to_numpy() if id_column else None, kept)
        except BaseException:
            scored.close()
            raise
        finally:
            ahead.close()  # before the table closes: no read left in flight
        if scored.n == 0 and len(scored.rejected.row):  # in the block: the table locates it
            scored.close()
            r = scored.rejected
            i = int(np.argmin(r.row))
            raise DataError(path, f"every data row has an invalid cell ({len(r.rows):,} rows; "
                            f"the first: {r.reason[i]})", int(r.row[i]), r.column[i], r.value[i])
    scored.unseen = +scored.unseen  # drop the zero counts
    if scored.n == 0:
        scored.close()
        raise DataError(path, "the file has a header but no data rows")
    scored.what = f"{scored.n} rows of {path}"
    return scored


#: Columns every output table has (a kept column may not take one of these names).
OUTPUT_COLUMNS = ("propensity", "rank", "decile", "label")


def check_keep_columns(path, header: Sequence[str], keep: Sequence[str], id_name: str
                       ) -> None:
    """Refuse a ``--keep-columns`` list naming a column the file lacks (DataError), a column
    twice, the id column or an output column (ValueError)."""
    check_columns(path, header, keep, " (given in --keep-columns)")
    for i, name in enumerate(keep):
        if name in keep[:i]:
            raise ValueError(f"--keep-columns: {name!r} is listed twice")
        if name == id_name or name in OUTPUT_COLUMNS:
            raise ValueError(f"--keep-columns: {name!r} is already a column of the output "
                             f"({', '.join([id_name, *OUTPUT_COLUMNS])})")


class _ReadAhead:
    """A table's ``(first_row, cells)`` chunks, the next ``depth`` read in a second thread
    while the caller works on this one.

    pandas' C parser tokenises without holding the GIL, as NumPy and the compiled kernels
    compute on large arrays, so on two cores reading chunks ``k + 1 ... k + depth`` overlaps
    validating and scoring chunk ``k`` (wall time; the CPU time is the same), and the reads
    go on while the kernel is loaded before the first chunk. The chunks come in the table's
    order, and a reading error is raised where the table would raise it: when its chunk is
    asked for. :meth:`close` waits for the read in flight, if any, and closes the table's
    iterator: call it before the table itself closes.

    Only the reading is in the second thread: with the checks there too (``parse_frame``,
    ``Preprocessing.inputs``), it had the most work of the two and set the pace (measured,
    docs/benchmarks.md, "Issue 14.2, session 5").
    """

    def __init__(self, table: CsvTable, depth: int = 1) -> None:
        self.table, self.path, self.header = table, table.path, table.header
        self._depth = depth
        self._pool = self._chunks = None
        self._pending: deque = deque()

    def start(self) -> None:
        """Start reading the first chunks (iterating starts it too)."""
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._chunks = iter(self.table)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
            for _ in range(self._depth):  # one thread: read one after the other, in order
                self._pending.append(self._pool.submit(next, self._chunks, None))

    def __iter__(self) -> Iterator[tuple[int, pd.DataFrame]]:
        self.start()
        while (chunk := self._pending.popleft().result()) is not None:
            self._pending.append(self._pool.submit(next, self._chunks, None))
            yield chunk

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._chunks.close()
            self._pool = None


def _load_kernel(model: Predictor, one_hot: InputSplit, threads: int | None) -> None:
    """Score one made-up row through the one-hot path and discard it, so that the compiled
    kernel is loaded from Numba's cache (with the BLAS it calls) while the read-ahead
    reads the first chunks, not after them. Every raw input is 0: a valid number in every
    numeric column (``log1p`` included) and a valid category position."""
    model.proba_inputs(one_hot, np.zeros((1, len(one_hot.columns))), threads)


class _LastChunk:
    """A table's ``(first_row, cells)`` chunks passed on, the current one kept as ``raw``
    (the parsed frame keeps the cells' index, so ``raw.loc[frame.index]`` are its rows)."""

    def __init__(self, table: CsvTable) -> None:
        self.table, self.path, self.header = table, table.path, table.header
        self.raw: pd.DataFrame | None = None

    def __iter__(self) -> Iterator[tuple[int, pd.DataFrame]]:
        for first_row, raw in self.table:
            self.raw = raw
            yield first_row, raw


def _cell_texts(column: pd.Series) -> list[str]:
    """A column of a chunk as the texts written for ``--keep-columns``: the stripped cell
    text of a column read as text; in a column of the model, the value the model reads:
    a number the parser read as such (an integral one without decimals), a category's
    canonical text (``canonical_text``: ``TRUE``, ``7``)."""
    if column.dtype.kind in "iu":
        return column.astype(str).tolist()
    if column.dtype.kind == "f":
        return [str(int(v)) if v.is_integer() else repr(v) if v == v else ""
                for v in column.tolist()]
    if isinstance(column.dtype, pd.CategoricalDtype):
        texts = [canonical_text(str(c)) for c in column.cat.categories]
        codes = column.cat.codes.to_numpy()
        return [texts[k] if k >= 0 else "" for k in codes.tolist()]
    return column.astype(object).fillna("").astype(str).str.strip().tolist()


#: The frame column that carries the data-row numbers when rows are skipped (not a CSV name:
#: a header name is stripped text, never with a NUL).
ROW_KEY = "\0row"


def _checked_chunks(table: CsvTable, schema: Schema, on_invalid: str, scored: Scored
                    ) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(first_row, frame)`` of each chunk through ``check_frame``: the rows without a bad
    cell (``skip``; their bad cells go to ``scored.rejected``) with their data-row numbers
    in :data:`ROW_KEY`, or every row with NaN for a missing cell (``impute``)."""
    for first_row, raw in iter_raw(table, schema, False):
        frame, bad = check_frame(raw, schema, table.path, first_row, False, on_invalid)
        scored.rejected.extend(bad)
        keep = np.ones(len(raw), dtype=bool)
        keep[bad.row - first_row] = False
        frame = frame.assign(**{ROW_KEY: first_row + np.flatnonzero(keep)})
        if len(frame):
            yield first_row, frame


def score_events(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    model: Predictor,
    cutoff: str | None = None,
    format: str | None = None,
    threads: int | None = None,
    observe: Observer | None = None,
    explain: ChunkExplainer | None = None,
    engine: str = "pandas",
    scheduler: str | None = None,
) -> Scored:
    """Score every user of an event log with events before ``cutoff``.

    Parameters
    ----------
    path : path-like or sequence of path-like
        The log, or several files read as one (``features.events.read_events``).
    cutoff : str, optional
        Default: the log's end (the end of its core time range, as in training: the last
        timestamp rounded up to a whole hour), so every event of the log counts.
    format : {"taobao", "rees46", "canonical"}, optional
        The log's format; default the one the model was trained on.
    observe : callable, optional
        Called once with the users' raw inputs ``U`` and scores ``p``, as in
        :func:`score_table`.
    explain : nn_core.explain.ChunkExplainer, optional
        As in :func:`score_table`; the users' data-row numbers are 1, 2, ... in output order.
    engine : {"pandas", "dask"}
        ``"dask"``: read the log, compute the features and score on a Dask cluster
        (``features.dask_engine``; ``scheduler`` its address, default a LocalCluster); the
        same users and, within 1e-6, the same scores (``observe`` and ``explain`` are the
        pandas engine's only).

    Returns
    -------
    Scored
        One row per user (``user_id``); none when nobody was active before the cutoff.
        Its ``what`` names the time scored at.
    """
    from . import events  # lazy: table mode must not need it

    fmt = format or model.preprocessing.source.get("format", "canonical")
    if engine == "dask":
        return _score_events_dask(path, model, cutoff, fmt, threads, scheduler)
    log = events.read_events(path, format=fmt)
    if cutoff is None:
        if log.attrs["report"]["time_range"] is None:
            raise ValueError(f"{log.attrs['report']['path']}: no valid events")
        cutoff = log.attrs["report"]["time_range"][1]
    X_frame = events.features_at(log, cutoff)
    del log
    names = ", ".join(map(str, [path] if isinstance(path, str | os.PathLike) else path))
    scored = Scored(id_name="user_id", ids=IdSpool(), what=f"{len(X_frame)} users of {names} "
                    f"at {cutoff}", kept={name: IdSpool() for name in
                                          (explain.names if explain else ())})
    if len(X_frame):
        p = model.predict_proba(X_frame, threads=threads)
        if observe is not None:
            observe(model.preprocessing.inputs(X_frame), p)
        kept = ({} if explain is None
                else explain(np.arange(1, len(X_frame) + 1), model.features(X_frame)))
        scored.append(p, X_frame.index, kept)
    return scored


def _score_events_dask(path, model: Predictor, cutoff, fmt: str, threads: int | None,
                       scheduler: str | None) -> Scored:
    """``score_events`` with ``engine="dask"``."""
    from . import dask_engine

    with dask_engine.connect(scheduler):
        p, T, _ = dask_engine.score(path, model, cutoff, fmt, threads)
    names = ", ".join(map(str, [path] if isinstance(path, str | os.PathLike) else path))
    scored = Scored(id_name="user_id", ids=IdSpool(), what=f"{len(p)} users of {names} at "
                    f"{cutoff if cutoff is not None else T.isoformat()}")
    if len(p):
        scored.append(p.to_numpy(), p.index)
    return scored


def write_events_parts(path, model: Predictor, output: Path, cutoff: str | None = None,
                       format: str | None = None, threads: int | None = None,
                       scheduler: str | None = None, threshold: float | None = None,
                       top: int | None = None) -> tuple[int, str, pd.DataFrame | None]:
    """Score an event log with the Dask engine into a new directory ``output`` of Parquet
    part files, one per partition, written by the workers
    (``features.dask_engine.write_parquet_parts``): the columns and ranks of
    :func:`write_output`'s Parquet file, split by partition (``pandas.read_parquet(output)``
    reads them back, in partition order). Nothing is written when no user was scored.

    Returns
    -------
    (n, what, top): the users scored, what was scored (for messages), and the rows of rank
    <= ``top`` by rank (as :func:`write_output` returns them; ``None`` without ``top``).
    """
    from . import dask_engine

    fmt = format or model.preprocessing.source.get("format", "canonical")
    with dask_engine.connect(scheduler):
        p, rank, T, _ = dask_engine.write_parquet_parts(path, model, output, cutoff, fmt,
                                                        threads, threshold)
    names = ", ".join(map(str, [path] if isinstance(path, str | os.PathLike) else path))
    what = (f"{len(p)} users of {names} at "
            f"{cutoff if cutoff is not None else T.isoformat()}")
    if top is None or not len(p):
        return len(p), what, None
    take = np.flatnonzero(rank <= top)
    take = take[np.argsort(rank[take])]
    q, r = p.to_numpy()[take], rank[take]
    table = {"user_id": [str(i) for i in p.index[take]], "propensity": q, "rank": r,
             "decile": (r - 1) * 10 // len(p) + 1}
    if threshold is not None:
        table["label"] = (q >= threshold).astype(np.int64)
    return len(p), what, pd.DataFrame(table)


def rank_and_decile(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1 = highest propensity (ties in file order); decile ``floor(10 (rank-1) / n) + 1``."""
    n = len(p)
    order = np.argsort(-p, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    decile = (rank - 1) * 10 // n + 1
    return rank, decile


# --------------------------------------------------------------------------- output


#: The two ASCII digits of 0..99 as one uint16 each (in memory order, so that a uint16
#: array of them viewed as bytes reads as text).
_PAIRS = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)],
                  dtype=np.uint8).view(np.uint16).ravel()


def _digit_matrix(v: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers below ``10**width`` as zero-padded ASCII digits, (n, width)
    uint8: two digits per division by 100."""
    x = v.astype(np.uint32 if width <= 9 else np.uint64)  # uint32 divides fastest
    pairs = np.empty((len(v), (width + 1) // 2), dtype=np.uint16)
    for j in range(pairs.shape[1] - 1, -1, -1):
        x, r = np.divmod(x, 100)
        pairs[:, j] = _PAIRS[r]
    return pairs.view(np.uint8)[:, 2 * pairs.shape[1] - width :]


def _digits(v: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative integers below ``10**width`` as right-aligned ASCII digits:
    ``(matrix (n, width) uint8, valid)``."""
    length = np.ones(len(v), dtype=np.int64)
    for t in range(1, width):
        length += v >= 10**t
    return _digit_matrix(v, width), np.arange(width) >= width - length[:, None]


def _propensity_text(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Propensities as ``format(p, ".7g")`` text (``SIGNIFICANT`` = 7 significant digits,
    trailing zeros dropped: ``0.5720903``, ``1``, ``0.0001234568``, ``1.5e-07``).

    Values in [1e-300, 1] and 0 are formatted for the whole column at once: with ``e`` the
    decimal exponent of ``p``, the mantissa ``m = rint(p 10^(6 - e))`` has 7 digits, written
    positionally for ``e >= -4`` and as ``d.dddddde-XX`` below, as ``%g`` does. The product
    is rounded once, so ``m`` is the correctly rounded mantissa unless ``p 10^(6 - e)`` lies
    within 1e-6 of a half-way point; those values, and any outside [0, 1] (a model with an
    identity output), NaN or infinity, go through ``format`` one by one.

    Returns
    -------
    (matrix (n, w) uint8, valid (n, w) bool)
        The bytes of each text, in order, are the row's valid bytes (see ``format_rows``);
        ``w`` is 12, or 17 when some text has an exponent.
    """
    n = len(p)
    fast = (p >= 1e-300) & (p <= 1.0)  # False for NaN
    q = np.where(fast, p, 1.0)
    e = np.floor(np.log10(q)).astype(np.int64)
    x = q * 10.0 ** (6 - e)
    for _ in range(2):  # log10 may be one off next to a power of ten
        fast &= np.abs(x - np.floor(x) - 0.5) > 1e-6  # not next to a rounding tie
        off = (x >= 9_999_999.5).astype(np.int64) - (x < 999_999.5)
        if not off.any():
            break
        e += off
        x = q * 10.0 ** (6 - e)
    m = np.rint(x).astype(np.int64)
    digits = _digit_matrix(m, SIGNIFICANT)  # d1 ... d7
    significant = np.full(n, SIGNIFICANT)  # digits up to the last non-zero one
    for j in range(1, SIGNIFICANT):
        significant -= (m % 10**j == 0)
    positional = e >= -4
    scientific = bool((~positional & fast).any())
    width = 17 if scientific else 12
    M = np.empty((n, width), dtype=np.uint8)
    valid = np.zeros((n, width), dtype=bool)
    small = positional & (e < 0)  # 0.[000]ddddddd; otherwise d.dddddd[e-XX]
    # column 0: "0" of 0.ddd, else d1; column 1: the point; 2-4: zeros; 5-11: digits
    M[:, 0] = np.where(small, ord("0"), digits[:, 0])
    M[:, 1] = ord(".")
    M[:, 2:5] = ord("0")
    M[:, 5:12] = digits
    M[~small, 5:11] = digits[~small, 1:]
    valid[:, 0] = True
    valid[:, 1] = small | (significant > 1)
    valid[:, 2:5] = np.arange(3) < np.where(small, -e - 1, 0)[:, None]
    valid[:, 5:12] = np.arange(7) < (significant - ~small)[:, None]
    if scientific:  # columns 12-16: e-XX or e-XXX
        M[:, 12], M[:, 13], M[:, 14:17] = ord("e"), ord("-"), _digit_matrix(-e, 3)
        valid[:, 12:14] = ~positional[:, None]
        valid[:, 14] = ~positional & (e <= -100)
        valid[:, 15:17] = ~positional[:, None]
    zero = (p == 0.0) & ~np.signbit(p)
    M[zero, 0], valid[zero] = ord("0"), np.arange(width) == 0
    slow = np.flatnonzero(~fast & ~zero)
    if len(slow):
        texts = [format(v, ".7g").encode() for v in p[slow].tolist()]
        M, valid = _widen(M, valid, max(map(len, texts)))
        for i, text in zip(slow.tolist(), texts, strict=True):
            M[i, : len(text)] = np.frombuffer(text, dtype=np.uint8)
            valid[i] = np.arange(M.shape[1]) < len(text)
    return M, valid


def _widen(M: np.ndarray, valid: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``(matrix, valid)`` pair at least ``width`` columns wide (new columns not valid)."""
    extra = max(0, width - M.shape[1])
    return (np.pad(M, ((0, 0), (0, extra))), np.pad(valid, ((0, 0), (0, extra))))


def _text_matrix(encoded: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as a left-aligned ``(matrix, valid)`` pair."""
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    width = max(1, int(lengths.max(initial=0)))
    M = np.array(encoded, dtype=f"S{width}").view(np.uint8).reshape(len(encoded), width)
    return M, np.arange(width) < lengths[:, None]


def _split(data: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """Consecutive byte strings of the given lengths."""
    ends = np.cumsum(lengths).tolist()
    return [bytes(data[e - n : e]) for e, n in zip(ends, lengths.tolist(), strict=True)]


def _csv_ids(data: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids (their bytes one after the other) as a left-aligned ``(matrix, valid)`` pair of
    CSV fields: quoted (``"`` doubled) where one holds ``,`` ``"`` or a line break, as
    pandas and the csv module write them."""
    if np.isin(data, np.frombuffer(b',"\r\n', dtype=np.uint8)).any():
        return _text_matrix([b'"' + r.replace(b'"', b'""') + b'"'
                             if any(c in r for c in (b",", b'"', b"\r", b"\n")) else r
                             for r in _split(data, lengths)])
    width = max(1, int(lengths.max(initial=0)))
    valid = np.arange(width) < lengths[:, None]
    M = np.zeros(valid.shape, dtype=np.uint8)
    M[valid] = data  # row-major order of the valid bytes is the order of the ids
    return M, valid


def format_rows(fields: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """CSV rows of fields given as ``(matrix (n, w_f) uint8, valid (n, w_f) bool)``.

    The fields are laid side by side with a comma (a line break after the last) into one
    byte matrix; keeping the valid bytes, row by row, is the CSV text: no cell is
    formatted on its own.
    """
    n = len(fields[0][0])
    parts, masks = [], []
    for k, (M, valid) in enumerate(fields):
        sep = b"\n" if k == len(fields) - 1 else b","
        parts += [M, np.full((n, 1), sep[0], dtype=np.uint8)]
        masks += [np.broadcast_to(valid, M.shape), np.ones((n, 1), dtype=bool)]
    return np.concatenate(parts, axis=1)[np.concatenate(masks, axis=1)].tobytes()


def _output_chunks(scored: Scored, ranks: Spill | None) -> Iterator[tuple]:
    """``(first, keys, ranks or None, texts)`` per chunk: ``texts`` holds the id column's
    ``(bytes, lengths)`` (``None`` for row numbers), then each kept column's."""
    scored.keys.rewind()
    if ranks is not None:
        ranks.rewind()
    ids = scored.ids.chunks() if scored.ids is not None else None
    kept = [spool.chunks() for spool in scored.kept.values()]
    first = 0
    for size in scored.sizes:
        yield (first, scored.keys.read(size), ranks.read(size) if ranks is not None else None,
               [next(ids) if ids is not None else None, *(next(k) for k in kept)])
        first += size


class TopK:
    """The ``k`` rows of smallest ``(key, row)``, kept as rows arrive in file order."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.keys = np.empty(0, dtype=np.uint64)
        self.rows = np.empty(0, dtype=np.int64)
        self.texts: list[tuple] = []  # per kept row: the id, then the kept columns' texts

    def offer(self, keys: np.ndarray, first: int, texts: list) -> None:
        """Consider rows ``first, first + 1, ...`` with these keys (``texts`` as
        ``_output_chunks`` gives them)."""
        if len(self.keys) == self.k:  # a later row must beat the worst kept one strictly
            take = np.flatnonzero(keys < self.keys.max())
        else:
            take = np.arange(len(keys))
        if len(take) > self.k:
            take = take[np.argsort(keys[take], kind="stable")[: self.k]]
        if not len(take):
            return
        columns = [(first + take + 1).tolist() if texts[0] is None else None]
        for field_ in texts[1:] if texts[0] is None else texts:
            data, lengths = field_
            ends = np.cumsum(lengths)
            columns.append([bytes(data[ends[i] - lengths[i] : ends[i]]).decode("utf-8")
                            for i in take.tolist()])
        all_keys = np.concatenate([self.keys, keys[take]])
        all_rows = np.concatenate([self.rows, first + take])
        all_texts = self.texts + list(zip(*[c for c in columns if c is not None],
                                          strict=True))
        keep = np.lexsort((all_rows, all_keys))[: self.k]
        self.keys, self.rows = all_keys[keep], all_rows[keep]
        self.texts = [all_texts[i] for i in keep.tolist()]

    def frame(self, scored: Scored) -> pd.DataFrame:
        """The kept rows by rank, with the output table's columns."""
        rank = np.arange(1, len(self.keys) + 1)
        names = [scored.id_name, *scored.kept]
        texts = list(zip(*self.texts, strict=True)) or [() for _ in names]
        table = {name: list(t) for name, t in zip(names, texts, strict=True)}
        p = scores_of(self.keys)
        table.update({"propensity": p, "rank": rank, "decile": (rank - 1) * 10 // scored.n + 1})
        if scored.threshold is not None:
            table["label"] = (p >= scored.threshold).astype(np.int64)
        return pd.DataFrame(table)


def write_output(scored: Scored, output: Path | None, top: int | None = None
                 ) -> pd.DataFrame | None:
    """Write the output table of ``scored`` to ``output`` atomically (or stdout); return
    the top-``top`` rows.

    The table has one row per scored row, in file order: the id, the kept columns
    (``scored.kept``), ``propensity`` (``SIGNIFICANT`` significant digits), ``rank`` (1 = most
    likely buyer, ties in file order; from the full-precision scores), ``decile``
    (``floor(10 (rank - 1) / n) + 1``) and, when ``scored.threshold`` is set, ``label``
    (1 where ``p >= threshold``, on the full-precision score). It can be larger than memory, so
    instead of ``nn_core.io.atomic_write`` (which takes the whole content) it goes to a
    temporary file beside ``output`` (``nn_core.io.temp_file``) that replaces ``output``
    with ``os.replace`` only after the last row. A symbolic link is followed first (the
    link stays a link; its target is replaced). An existing output that is not a regular
    file (a pipe, ``/dev/stdout``, ``/dev/null``, or a link to one) is opened and written
    directly: renaming over it would replace the device or pipe. Without ``output`` and
    with ``top``, nothing is written and no rank is computed beyond the top rows.

    Returns
    -------
    DataFrame or None
        The rows of rank <= ``top``, by rank (``None`` without ``top``).
    """
    best = TopK(top) if top is not None else None
    if output is None and best is not None:
        for first, keys, _, texts in _output_chunks(scored, None):
            best.offer(keys, first, texts)
        return best.frame(scored)
    ranks = exact_ranks(scored.keys, chunk=CHUNK)
    try:
        if output is None:
            sys.stdout.flush()
            binary = getattr(sys.stdout, "buffer", None)  # None: a text stream (StringIO)
            _write_rows(binary or _TextSink(sys.stdout), scored, ranks, best)
            (binary or sys.stdout).flush()
            return None
        output = Path(output)
        if output.exists() and not output.is_file():  # follows links: a FIFO, a device
            with open(output, "wb") as fh:
                _write_rows(fh, scored, ranks, best)
        else:
            if output.is_symlink():
                output = Path(os.path.realpath(output))
            fd, tmp = temp_file(output)
            write = _write_parquet if is_parquet_path(output) else _write_rows
            try:
                with os.fdopen(fd, "wb") as fh:
                    write(fh, scored, ranks, best)
                replace_temp(tmp, output)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
    finally:
        ranks.close()
    return best.frame(scored) if best is not None else None


def write_output_and_rejected(scored: Scored, output: Path | None, rejected: Path,
                              top: int | None = None) -> pd.DataFrame | None:
    """``write_output``, and ``scored.rejected`` as a CSV ``row,column,value,reason`` (one
    line per bad cell, by row) to ``rejected``.

    The rejected file is written in full to a temporary file beside it first, the output
    then (``write_output``), and the rejected file renamed last: a failure before that
    leaves neither file changed. A ``rejected`` that exists and is not a regular file (a
    pipe, ``/dev/stderr``) is written directly, after the output.
    """
    text = scored.rejected.frame().to_csv(index=False, lineterminator="\n").encode("utf-8")
    rejected = Path(rejected)
    if rejected.exists() and not rejected.is_file():
        best = write_output(scored, output, top)
        with open(rejected, "wb") as fh:
            fh.write(text)
        return best
    if rejected.is_symlink():
        rejected = Path(os.path.realpath(rejected))
    fd, tmp = temp_file(rejected)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text)
        best = write_output(scored, output, top)
        replace_temp(tmp, rejected)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return best


class _TextSink:
    """A binary ``write`` onto a text stream (stdout replaced by a ``StringIO``)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode("utf-8"))


def _write_rows(fh, scored: Scored, ranks: Spill, best: TopK | None) -> None:
    """Write the header and every row of ``scored`` to the binary file ``fh``.

    The rows are formatted a slice at a time (:func:`_row_texts`) by two threads (NumPy
    releases the GIL on large arrays) and written in order as each slice is done; at most
    :data:`WRITE_AHEAD` slices are formatted but not yet written.
    """
    from concurrent.futures import ThreadPoolExecutor

    names = [scored.id_name, *scored.kept, "propensity", "rank", "decile"]
    if scored.threshold is not None:
        names.append("label")
    fh.write(",".join(_csv_field(name) for name in names).encode() + b"\n")
    pending: deque = deque()
    with ThreadPoolExecutor(2, thread_name_prefix="format") as pool:
        for first, keys, rank, texts in _output_chunks(scored, ranks):
            if best is not None:
                best.offer(keys, first, texts)
            # rows at a time so that the byte matrix stays small even with a very long text
            longest = sum(int(t[1].max(initial=0)) for t in texts if t is not None)
            step = max(1, MATRIX_BYTES // max(1, longest)) if longest else len(keys)
            ends = [None if t is None else np.cumsum(t[1]) for t in texts]
            for s in range(0, len(keys), step):
                e = min(s + step, len(keys))
                fields = []
                for t, end in zip(texts, ends, strict=True):
                    if t is None:  # row numbers
                        fields.append(np.arange(first + s + 1, first + e + 1))
                    else:
                        lo = int(end[s] - t[1][s])
                        fields.append((t[0][lo : int(end[e - 1])], t[1][s:e]))
                pending.append(pool.submit(_row_texts, fields, keys[s:e], rank[s:e],
                                           scored.n, scored.threshold))
                while len(pending) > WRITE_AHEAD:
                    fh.write(pending.popleft().result())
        while pending:
            fh.write(pending.popleft().result())


def _row_texts(texts: list, keys: np.ndarray, rank: np.ndarray, n: int,
               threshold: float | None) -> bytes:
    """The CSV lines of a slice of rows: ``texts`` holds the id column's row numbers (an
    int array) or ``(bytes, lengths)``, then each kept column's ``(bytes, lengths)``; the
    score keys, ranks, the number of rows ``n`` and the label's threshold (``None``: no
    label)."""
    width = len(str(n))
    fields = [_digits(t, width) if isinstance(t, np.ndarray) else _csv_ids(*t) for t in texts]
    p = scores_of(keys)
    fields += [_propensity_text(p), _digits(rank, width), _digits((rank - 1) * 10 // n + 1, 2)]
    if threshold is not None:  # on the full-precision score
        fields.append(_digits((p >= threshold).astype(np.int64), 1))
    return format_rows(fields)


def is_parquet_path(path: Path) -> bool:
    """Whether an output is written as Parquet: its name ends in .parquet or .pq."""
    return Path(path).suffix.lower() in (".parquet", ".pq")


def _write_parquet(fh, scored: Scored, ranks: Spill, best: TopK | None) -> None:
    """``_write_rows``' table as Parquet (pyarrow; one row group per chunk) to ``fh``: the
    same columns, the id and kept columns as the same text (row numbers as int64),
    ``propensity`` the float64 score itself (the 7 significant digits are the CSV's),
    rank and decile int64, label int8."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("a Parquet --output needs pyarrow: pip install "
                         "'purchase-propensity[scale]'") from None
    text = pa.large_string()  # 64-bit offsets: no limit on a chunk's bytes
    schema = pa.schema([(scored.id_name, pa.int64() if scored.ids is None else text),
                        *((k, text) for k in scored.kept), ("propensity", pa.float64()),
                        ("rank", pa.int64()), ("decile", pa.int64()),
                        *([("label", pa.int8())] if scored.threshold is not None else [])])
    n = scored.n
    with pq.ParquetWriter(fh, schema) as writer:
        for first, keys, rank, texts in _output_chunks(scored, ranks):
            if best is not None:
                best.offer(keys, first, texts)
            cols: list = []
            for t in texts:
                if t is None:  # row numbers
                    cols.append(pa.array(np.arange(first + 1, first + len(keys) + 1)))
                    continue
                data, lengths = t  # UTF-8 bytes one after the other, and their lengths
                offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
                cols.append(pa.Array.from_buffers(text, len(lengths), [
                    None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]))
            p = scores_of(keys)
            cols += [pa.array(p), pa.array(rank), pa.array((rank - 1) * 10 // n + 1)]
            if scored.threshold is not None:  # on the full-precision score
                cols.append(pa.array((p >= scored.threshold).astype(np.int8)))
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))


def _csv_field(text: str) -> str:
    """``text`` as one CSV field: quoted (``"`` doubled) where it holds ``,``, ``"`` or a
    line break."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
