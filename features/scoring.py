"""Scoring raw rows with a loaded model directory (:class:`nn_core.Predictor`), in chunks.

* :func:`score_table`: a session table read once, validated and scored chunk by chunk;
* :func:`score_events`: every user of an event log active before a cutoff;
* :func:`write_output`: the output table (id, propensity, rank, decile) in file order, to a
  CSV that replaces its destination only when complete (or to stdout), and the top rows;
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
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nn_core import Predictor
from nn_core.io import temp_file, umask
from nn_core.preprocessing import Preprocessing, features_from_inputs

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
)

DEFAULT_CHUNKSIZE = 100_000
#: Decimals of the propensities written (an absolute resolution of 1e-15).
DECIMALS = 15
#: Bytes of the id matrix formatted at a time (a chunk with a very long id goes in parts).
MATRIX_BYTES = 1 << 24


def scoring_schema(pre: Preprocessing, id_column: str | None = None) -> Schema:
    """The schema a table to score is checked against: the training roles, no target, and
    ``>= 0`` in log1p columns (log1p of a negative number is undefined).

    A model of the UCI table (target ``Revenue``, exactly the UCI numeric and categorical
    columns: train.py's default roles) is also held to the ranges train.py checked,
    ``UCI_RANGES`` (e.g. ``BounceRates`` in [0, 1]), so that scoring refuses what training
    refuses. preprocess.json does not store ranges, so other schemas get the log1p rule only.
    """
    columns = pre.columns
    numeric = tuple(c["name"] for c in columns if c["kind"] == "numeric")
    categorical = tuple(c["name"] for c in columns if c["kind"] == "categorical")
    ranges = {c["name"]: (0.0, None) for c in columns if c["kind"] == "numeric" and c["log1p"]}
    if (pre.target == UCI_TARGET and numeric == UCI_NUMERIC
            and categorical == UCI_CATEGORICAL):
        ranges.update(UCI_RANGES)
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
    """

    keys: Spill = field(default_factory=lambda: Spill(np.uint64))
    sizes: list[int] = field(default_factory=list)
    id_name: str = "row"
    ids: IdSpool | None = None
    unseen: Counter = field(default_factory=Counter)
    what: str = ""
    rejected: Rejected = field(default_factory=Rejected)

    @property
    def n(self) -> int:
        return self.keys.n

    def append(self, p: np.ndarray, ids: Sequence | None = None) -> None:
        """Add a chunk's propensities (and ids, when the ids are not row numbers)."""
        self.keys.append(score_keys(p))
        if self.ids is not None:
            self.ids.append(ids)
        self.sizes.append(len(p))

    def scores(self) -> np.ndarray:
        """Every propensity in file order (in memory: for tests and small tables)."""
        return scores_of(np.concatenate(list(self.keys.chunks()) or [np.empty(0, np.uint64)]))

    def close(self) -> None:
        self.keys.close()
        if self.ids is not None:
            self.ids.close()

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
    with CsvTable(path, chunksize, [c["name"] for c in columns if c["kind"] == "numeric"]) \
            as table:
        check_columns(path, table.header, pre.input_columns, " (the model was trained with it)")
        if id_column is not None:
            check_columns(path, table.header, [id_column], " (given as --id-column)")
        elif pre.id_column and pre.id_column in table.header:
            id_column = pre.id_column
        if on_invalid == "impute" and not pre.imputes:
            raise ValueError(f"{model.path}: the model was not trained with --on-invalid "
                             "impute; it has no values to impute")
        scored = Scored(id_name=id_column or "row", ids=IdSpool() if id_column else None)
        schema = scoring_schema(pre, id_column)
        if on_invalid == "error":
            chunks = iter_table(table, schema, False)
        else:  # off the default path: every bad cell found, row numbers kept as ids
            chunks = _checked_chunks(table, schema, on_invalid, scored)
            if id_column is None:
                scored.ids, id_column = IdSpool(), ROW_KEY
        try:
            for first_row, frame in chunks:
                U = pre.inputs(frame, first_row)
                for i, c in enumerate(columns):
                    if c["kind"] == "categorical":
                        unseen = int(np.count_nonzero(U[:, i] == len(c["categories"])))
                        scored.unseen[c["name"]] += unseen
                X = features_from_inputs(columns, U, dtype)[0]
                p = model.network.predict_proba(X, threads=threads)
                scored.append(np.asarray(p, dtype=np.float64),
                              frame[id_column].to_numpy() if id_column else None)
        except BaseException:
            scored.close()
            raise
    scored.unseen = +scored.unseen  # drop the zero counts
    if scored.n == 0 and len(scored.rejected.row):
        scored.close()
        r = scored.rejected
        i = int(np.argmin(r.row))
        raise DataError(path, f"every data row has an invalid cell ({len(r.rows):,} rows; the "
                        f"first: {r.reason[i]})", int(r.row[i]), r.column[i], r.value[i])
    if scored.n == 0:
        scored.close()
        raise DataError(path, "the file has a header but no data rows")
    scored.what = f"{scored.n} rows of {path}"
    return scored


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
    path: str | os.PathLike,
    model: Predictor,
    cutoff: str,
    format: str | None = None,
    threads: int | None = None,
) -> Scored:
    """Score every user of an event log with events before ``cutoff``.

    Parameters
    ----------
    format : {"taobao", "rees46", "canonical"}, optional
        The log's format; default the one the model was trained on.

    Returns
    -------
    Scored
        One row per user (``user_id``); none when nobody was active before the cutoff.
    """
    from . import events  # lazy: table mode must not need it

    fmt = format or model.preprocessing.source.get("format", "canonical")
    X_frame = events.features_at(events.read_events(path, format=fmt), cutoff)
    scored = Scored(id_name="user_id", ids=IdSpool(), what=f"{len(X_frame)} users of {path} "
                    f"at {cutoff}")
    if len(X_frame):
        scored.append(model.predict_proba(X_frame, threads=threads), X_frame.index)
    return scored


def rank_and_decile(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1 = highest propensity (ties in file order); decile ``floor(10 (rank-1) / n) + 1``."""
    n = len(p)
    order = np.argsort(-p, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    decile = (rank - 1) * 10 // n + 1
    return rank, decile


# --------------------------------------------------------------------------- output


def _digits(v: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative integers below ``10**width`` as right-aligned ASCII digits:
    ``(matrix (n, width) uint8, valid)``."""
    M = np.empty((len(v), width), dtype=np.uint8)
    x = v.astype(np.uint32 if width <= 9 else np.uint64)  # uint32 divides fastest
    for j in range(width - 1, -1, -1):
        x, M[:, j] = np.divmod(x, 10)
    M += ord("0")
    length = np.ones(len(v), dtype=np.int64)
    for t in range(1, width):
        length += v >= 10**t
    return M, np.arange(width) >= width - length[:, None]


def _propensity_text(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Propensities as text: ``d.ddddddddddddddd`` (``DECIMALS`` decimals) for values in
    [0, 1], computed for the whole column at once; ``repr`` for anything else (a model
    with an identity output)."""
    if len(p) and (np.isfinite(p).all() and p.min() >= 0.0 and p.max() <= 1.0):
        scaled = np.rint(p * 10.0**DECIMALS).astype(np.int64)
        whole, frac = np.divmod(scaled, 10**DECIMALS)
        M = np.empty((len(p), DECIMALS + 2), dtype=np.uint8)
        M[:, 0] = whole + 48
        M[:, 1] = ord(".")
        high, low = np.divmod(frac, 10**8)  # two halves: uint32 arithmetic is faster
        M[:, 2 : DECIMALS - 6] = _digits(high, DECIMALS - 8)[0]
        M[:, DECIMALS - 6 :] = _digits(low, 8)[0]
        return M, np.ones(M.shape, dtype=bool)
    return _text_matrix([repr(float(v)).encode() for v in p])


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
    """``(first, keys, ranks or None, ids (matrix, lengths) or None)`` per chunk."""
    scored.keys.rewind()
    if ranks is not None:
        ranks.rewind()
    ids = scored.ids.chunks() if scored.ids is not None else None
    first = 0
    for size in scored.sizes:
        yield (first, scored.keys.read(size), ranks.read(size) if ranks is not None else None,
               next(ids) if ids is not None else None)
        first += size


class TopK:
    """The ``k`` rows of smallest ``(key, row)``, kept as rows arrive in file order."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.keys = np.empty(0, dtype=np.uint64)
        self.rows = np.empty(0, dtype=np.int64)
        self.ids: list = []

    def offer(self, keys: np.ndarray, first: int, ids) -> None:
        """Consider rows ``first, first + 1, ...`` with these keys (ids as the bytes and
        lengths of a chunk, or None for row numbers)."""
        if len(self.keys) == self.k:  # a later row must beat the worst kept one strictly
            take = np.flatnonzero(keys < self.keys.max())
        else:
            take = np.arange(len(keys))
        if len(take) > self.k:
            take = take[np.argsort(keys[take], kind="stable")[: self.k]]
        if not len(take):
            return
        if ids is None:
            new_ids = (first + take + 1).tolist()
        else:
            data, lengths = ids
            ends = np.cumsum(lengths)
            new_ids = [bytes(data[ends[i] - lengths[i] : ends[i]]).decode("utf-8")
                       for i in take.tolist()]
        all_keys = np.concatenate([self.keys, keys[take]])
        all_rows = np.concatenate([self.rows, first + take])
        all_ids = self.ids + new_ids
        keep = np.lexsort((all_rows, all_keys))[: self.k]
        self.keys, self.rows = all_keys[keep], all_rows[keep]
        self.ids = [all_ids[i] for i in keep.tolist()]

    def frame(self, id_name: str, n: int) -> pd.DataFrame:
        rank = np.arange(1, len(self.keys) + 1)
        return pd.DataFrame({id_name: self.ids, "propensity": scores_of(self.keys),
                             "rank": rank, "decile": (rank - 1) * 10 // n + 1})


def write_output(scored: Scored, output: Path | None, top: int | None = None
                 ) -> pd.DataFrame | None:
    """Write the output table of ``scored`` to ``output`` atomically (or stdout); return
    the top-``top`` rows.

    The table has one row per scored row, in file order: the id, ``propensity`` (with
    ``DECIMALS`` decimals), ``rank`` (1 = most likely buyer, ties in file order) and
    ``decile`` (``floor(10 (rank - 1) / n) + 1``). It can be larger than memory, so
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
        for first, keys, _, ids in _output_chunks(scored, None):
            best.offer(keys, first, ids)
        return best.frame(scored.id_name, scored.n)
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
            try:
                with os.fdopen(fd, "wb") as fh:
                    _write_rows(fh, scored, ranks, best)
                os.chmod(tmp, 0o666 & ~umask())  # temp files are private; scores are not
                os.replace(tmp, output)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
    finally:
        ranks.close()
    return best.frame(scored.id_name, scored.n) if best is not None else None


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
        os.chmod(tmp, 0o666 & ~umask())
        best = write_output(scored, output, top)
        os.replace(tmp, rejected)
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
    """Write the header and every row of ``scored`` to the binary file ``fh``."""
    fh.write(f"{scored.id_name},propensity,rank,decile\n".encode())
    n = scored.n
    width = len(str(n))
    for first, keys, rank, ids in _output_chunks(scored, ranks):
        if best is not None:
            best.offer(keys, first, ids)
        # rows at a time so that the byte matrix stays small even with a very long id
        step = len(keys) if ids is None else max(1, MATRIX_BYTES // max(
            1, int(ids[1].max(initial=0))))
        ends = None if ids is None else np.cumsum(ids[1])
        for s in range(0, len(keys), step):
            e = min(s + step, len(keys))
            if ids is None:
                id_field = _digits(np.arange(first + s + 1, first + e + 1), width)
            else:
                lo = int(ends[s] - ids[1][s])
                id_field = _csv_ids(ids[0][lo : int(ends[e - 1])], ids[1][s:e])
            decile = (rank[s:e] - 1) * 10 // n + 1
            fh.write(format_rows([id_field, _propensity_text(scores_of(keys[s:e])),
                                  _digits(rank[s:e], width), _digits(decile, 2)]))
