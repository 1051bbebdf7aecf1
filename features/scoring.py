"""Scoring raw rows with a loaded model directory (:class:`nn_core.Predictor`), in chunks.

* :func:`score_table`: a session table read, validated and scored chunk by chunk; only the
  scores (one float per row) are kept;
* :func:`score_events`: every user of an event log active before a cutoff;
* :func:`rank_and_decile`: rank 1 = the most likely buyer, and deciles of the ranks;
* :func:`iter_output_chunks`, :func:`write_output`: the output table (id, propensity, rank,
  decile) streamed in file order to a CSV that replaces its destination only when complete.

``predict.py`` is the command line over these.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from nn_core import Predictor
from nn_core.io import umask
from nn_core.preprocessing import Preprocessing
from nn_core.validation import FeatureValueError

from .tabular import (
    UCI_CATEGORICAL,
    UCI_NUMERIC,
    UCI_RANGES,
    UCI_TARGET,
    DataError,
    Schema,
    check_columns,
    iter_raw_chunks,
    parse_frame,
    read_header,
)

DEFAULT_CHUNKSIZE = 100_000


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


def score_table(
    path: str | os.PathLike,
    model: Predictor,
    id_column: str | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
    threads: int | None = None,
) -> tuple[np.ndarray, Counter]:
    """First pass: validated, chunked scoring of a session table.

    Parameters
    ----------
    path : path-like
        CSV with every input column of the model (any order; extra columns ignored).
    model : Predictor
        A loaded model directory with its preprocessing.
    id_column : str, optional
        A column that must be present (it is written as the id).
    chunksize : int
        Rows read, validated and scored at a time.
    threads : int, optional
        Threads for the ``numba`` backend.

    Returns
    -------
    p : ndarray, shape (n,), float64
        Propensities in file order.
    unseen : Counter
        Rows per categorical column that fell into the unseen bucket.

    Raises
    ------
    DataError
        Naming file, row, column and value of the first problem, or "no data rows".
    """
    pre = model.preprocessing
    header = read_header(path)
    check_columns(path, header, pre.input_columns, " (the model was trained with it)")
    if id_column is not None:
        check_columns(path, header, [id_column], " (given as --id-column)")
    schema = scoring_schema(pre, id_column)
    needed = set(pre.input_columns) | ({id_column} if id_column else set())
    usecols = [c for c in header if c in needed]
    scores, unseen = [], Counter()
    for first_row, raw in iter_raw_chunks(path, usecols, chunksize):
        if len(raw) == 0:  # a header-only file still yields one empty chunk
            continue
        frame = parse_frame(raw, schema, path, first_row, with_target=False)
        unseen.update(pre.unseen_counts(frame))
        try:
            scores.append(model.predict_proba(frame, first_row=first_row, threads=threads))
        except FeatureValueError as exc:  # a value beyond the training scale
            raise DataError(path, exc.problem, exc.row, exc.column, exc.value) from None
    if not scores or sum(len(s) for s in scores) == 0:
        raise DataError(path, "the file has a header but no data rows")
    return np.concatenate(scores), unseen


def score_events(
    path: str | os.PathLike,
    model: Predictor,
    cutoff: str,
    format: str | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, pd.Index]:
    """Score every user of an event log with events before ``cutoff``.

    Parameters
    ----------
    format : {"taobao", "rees46", "canonical"}, optional
        The log's format; default the one the model was trained on.

    Returns
    -------
    p : ndarray, shape (n_users,), float64
    ids : Index
        The users, named ``user_id``; empty when nobody was active before the cutoff.
    """
    from . import events  # lazy: table mode must not need it

    fmt = format or model.preprocessing.source.get("format", "canonical")
    X_frame = events.features_at(events.read_events(path, format=fmt), cutoff)
    ids = X_frame.index.rename("user_id")
    if len(X_frame) == 0:
        return np.empty(0), ids
    return model.predict_proba(X_frame, threads=threads), ids


def rank_and_decile(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1 = highest propensity (ties in file order); decile ``floor(10 (rank-1) / n) + 1``."""
    n = len(p)
    order = np.argsort(-p, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    decile = (rank - 1) * 10 // n + 1
    return rank, decile


def iter_output_chunks(
    p: np.ndarray, rank: np.ndarray, decile: np.ndarray, ids_source, chunksize: int,
) -> Iterator[pd.DataFrame]:
    """Yield output DataFrames (id, propensity, rank, decile) in file order.

    ``ids_source`` is ``(path, column)`` for a second pass that reads only the id column,
    ``(path, None)`` for row numbers (column ``row``, 1-based), or an array or Index of
    ids already in memory.

    Raises
    ------
    DataError
        When the second pass finds another number of rows (the file changed).
    """
    n = len(p)
    if isinstance(ids_source, np.ndarray | pd.Index):
        name = ids_source.name if getattr(ids_source, "name", None) else "user_id"
        for start in range(0, n, chunksize):
            stop = min(start + chunksize, n)
            yield _frame(name, np.asarray(ids_source[start:stop]), p, rank, decile, start, stop)
        return
    path, column = ids_source
    if column is None:
        for start in range(0, n, chunksize):
            stop = min(start + chunksize, n)
            yield _frame("row", np.arange(start + 1, stop + 1), p, rank, decile, start, stop)
        return
    start = 0
    for _, raw in iter_raw_chunks(path, [column], chunksize):
        stop = start + len(raw)
        if stop > n:
            raise DataError(path, "the file changed while it was being scored")
        ids = raw[column].fillna("").astype(str).str.strip().to_numpy()
        yield _frame(column, ids, p, rank, decile, start, stop)
        start = stop
    if start != n:
        raise DataError(path, "the file changed while it was being scored")


def _frame(name, ids, p, rank, decile, start, stop) -> pd.DataFrame:
    return pd.DataFrame({
        name: ids,
        "propensity": p[start:stop],
        "rank": rank[start:stop],
        "decile": decile[start:stop],
    })


def write_output(
    chunks: Iterable[pd.DataFrame], output: Path | None, top: int | None = None,
) -> pd.DataFrame | None:
    """Stream the chunks to ``output`` atomically (or stdout); return the top-K rows.

    The output can be larger than memory, so instead of ``nn_core.io.atomic_write`` (which
    takes the whole content) the chunks go to a temporary file in the same directory that
    replaces ``output`` with ``os.replace`` only after the last chunk. A symbolic link is
    followed first (the link stays a link; its target is replaced). An existing output that
    is not a regular file (a pipe, ``/dev/stdout``, ``/dev/null``, or a link to one) is
    opened and written directly: renaming over it would replace the device or pipe. Without
    ``output`` and with ``top``, nothing is written: only the top rows are returned.

    Returns
    -------
    DataFrame or None
        The rows of rank <= ``top``, sorted by rank (``None`` without ``top``).
    """
    best = []
    if output is None and top is not None:
        for chunk in chunks:
            best.append(chunk[chunk["rank"] <= top])
        return pd.concat(best).sort_values("rank")
    if output is None:
        header = True
        for chunk in chunks:
            chunk.to_csv(sys.stdout, index=False, header=header)
            header = False
        return None
    output = Path(output)
    if output.exists() and not output.is_file():  # follows links: a FIFO, a device
        with open(output, "w", newline="") as fh:
            _write_chunks(fh, chunks, top, best)
        return pd.concat(best).sort_values("rank") if best else None
    if output.is_symlink():
        output = Path(os.path.realpath(output))
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            _write_chunks(fh, chunks, top, best)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp files are private; scores are an ordinary file
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return pd.concat(best).sort_values("rank") if best else None


def _write_chunks(fh, chunks: Iterable[pd.DataFrame], top: int | None, best: list) -> None:
    """Write the chunks as one CSV to ``fh``; collect the rows of rank <= ``top`` in ``best``."""
    header = True
    for chunk in chunks:
        chunk.to_csv(fh, index=False, header=header)
        header = False
        if top is not None:
            best.append(chunk[chunk["rank"] <= top])
