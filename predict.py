"""Score sessions (or users) with a model directory written by train.py.

    python predict.py --model runs/latest --input sessions.csv --output scores.csv --top 10

Writes one row per input row: the id (the ``--id-column``, else the training id column when
the file has it, else ``row`` = the 1-based data row number), ``propensity`` (the predicted
purchase probability), ``rank`` (1 = most likely buyer; ties keep file order) and ``decile``
(1 = the top 10 % by rank). Without ``--output`` the table goes to stdout (unless ``--top``
is given, which prints only the K most likely buyers).

The input is read and scored in chunks and only the scores (one float per row) are held in
memory; a second pass over the file fetches the ids while the output is streamed to a
temporary file that replaces ``--output`` only when complete. Input columns are matched by
name against the training schema (any order; extra columns are ignored). Missing columns,
wrong types, missing values, an empty file or a missing model directory produce one message
naming file, row and column, exit status 1 and no output file.

Event-log models (trained with ``train.py --events``): ``--events LOG --cutoff T`` scores
every user active before ``T``; the id written is ``user_id``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_CHUNKSIZE = 100_000


class UsageError(ValueError):
    """A command-line mistake (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Score purchase propensity with a model directory written by train.py.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--model", type=Path, required=True, help="model directory (e.g. runs/latest)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, help="session-table CSV to score")
    src.add_argument("--events", type=Path, help="event log to score (event-log models)")
    ap.add_argument("--output", type=Path, help="output CSV (default: stdout)")
    ap.add_argument("--id-column", help="input column written as the id (default: the training "
                    "id column if present, else the row number)")
    ap.add_argument("--top", type=int, metavar="K", help="print the K most likely buyers")
    ap.add_argument("--chunksize", type=int, default=DEFAULT_CHUNKSIZE, help="rows per chunk")
    ap.add_argument("--cutoff", help="with --events: score with the events before this time")
    ap.add_argument("--format", choices=("taobao", "rees46", "canonical"),
                    help="with --events: log format (default: the one the model was trained on)")
    ap.add_argument("--threads", type=int, help="numba threads")
    return ap


# --------------------------------------------------------------------------- scoring


def load_model(model_dir: Path):
    """The MLP and its Preprocessor; ModelFileError naming the file when either is bad."""
    from features.tabular import Preprocessor
    from nn_core import MLP
    from nn_core.io import ModelFileError

    pre = Preprocessor.load(model_dir)
    model = MLP.load(model_dir)
    if model.n_inputs != pre.n_features:
        raise ModelFileError(
            f"{model_dir}: model.json expects {model.n_inputs} inputs but preprocess.json "
            f"builds {pre.n_features} features (files from different runs?)"
        )
    return model, pre


def scoring_schema(pre, id_column: str | None):
    """The schema predict.py checks: training roles, no target, and ``>= 0`` in log1p columns
    (log1p of a negative number is undefined)."""
    from features.tabular import Schema

    ranges = {c["name"]: (0.0, None) for c in pre.columns if c["kind"] == "numeric" and c["log1p"]}
    return Schema(None, tuple(pre.numeric), tuple(pre.categorical), id_column, ranges)


def score_table(path: Path, model, pre, id_column: str | None, chunksize: int, threads):
    """First pass: validated, chunked scoring of a session table.

    Returns
    -------
    p : ndarray, shape (n,), float64
        Propensities in file order.
    unseen : Counter
        Rows per categorical column that fell into the unseen bucket.
    """
    from features.tabular import DataError, check_columns, iter_raw_chunks, parse_frame, read_header

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
        X = pre.transform(frame, first_row=first_row)
        scores.append(np.asarray(model.predict_proba(X, threads=threads), dtype=np.float64))
    if not scores or sum(len(s) for s in scores) == 0:
        raise DataError(path, "the file has a header but no data rows")
    return np.concatenate(scores), unseen


def rank_and_decile(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1 = highest propensity (ties in file order); decile ``floor(10 (rank-1) / n) + 1``."""
    n = len(p)
    order = np.argsort(-p, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    decile = (rank - 1) * 10 // n + 1
    return rank, decile


def iter_output_chunks(p, rank, decile, ids_source, chunksize: int):
    """Yield output DataFrames in file order.

    ``ids_source`` is ``(path, column)`` for a second pass that reads only the id column,
    ``("row", None)`` for row numbers, or an array of ids already in memory.
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
    from features.tabular import DataError, iter_raw_chunks

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


def write_output(chunks, output: Path | None, top: int | None) -> pd.DataFrame | None:
    """Stream the chunks to ``output`` atomically (or stdout); return the top-K rows.

    The output can be larger than memory, so instead of ``nn_core.io.atomic_write`` (which
    takes the whole content) the chunks go to a temporary file in the same directory that
    replaces ``output`` with ``os.replace`` only after the last chunk.
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
    if output.is_dir():
        raise UsageError(f"--output {output}: is a directory")
    if not output.parent.exists():
        raise UsageError(f"--output {output}: directory {output.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            header = True
            for chunk in chunks:
                chunk.to_csv(fh, index=False, header=header)
                header = False
                if top is not None:
                    best.append(chunk[chunk["rank"] <= top])
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp files are private; scores are an ordinary file
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return pd.concat(best).sort_values("rank") if best else None


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> None:
    if args.top is not None and args.top < 1:
        raise UsageError(f"--top must be >= 1, got {args.top}")
    if args.chunksize < 1:
        raise UsageError(f"--chunksize must be >= 1, got {args.chunksize}")
    model, pre = load_model(args.model)
    kind = pre.source.get("kind", "table")
    if args.events is not None:
        if kind != "events":
            raise UsageError(f"{args.model} was trained on a session table; use --input, "
                             "not --events")
        if args.cutoff is None:
            raise UsageError("--events needs --cutoff (score with the events before this time)")
        import features.events as events  # lazy: table mode must not need it

        fmt = args.format or pre.source.get("format", "canonical")
        log = events.read_events(args.events, format=fmt)
        X_frame = events.features_at(log, args.cutoff)
        if len(X_frame) == 0:
            raise UsageError(f"{args.events}: no user has events before {args.cutoff}")
        X = pre.transform(X_frame)
        p = np.asarray(model.predict_proba(X, threads=args.threads), dtype=np.float64)
        ids = X_frame.index.rename("user_id")
        unseen = Counter()
        ids_source = ids
        n_source = f"{len(p)} users of {args.events} at {args.cutoff}"
    else:
        if kind != "table":
            raise UsageError(f"{args.model} was trained on event-log features; use --events "
                             "and --cutoff, not --input")
        if args.cutoff is not None or args.format is not None:
            raise UsageError("--cutoff and --format only apply to --events")
        from features.tabular import read_header

        id_column = args.id_column
        if id_column is None and pre.id_column and pre.id_column in read_header(args.input):
            id_column = pre.id_column
        p, unseen = score_table(args.input, model, pre, id_column, args.chunksize, args.threads)
        ids_source = (args.input, id_column)
        n_source = f"{len(p)} rows of {args.input}"
    rank, decile = rank_and_decile(p)
    top = write_output(iter_output_chunks(p, rank, decile, ids_source, args.chunksize),
                       args.output, args.top)
    if unseen:
        detail = ", ".join(f"{col}: {n} row{'' if n == 1 else 's'}"
                           for col, n in sorted(unseen.items()))
        print(f"predict.py: warning: {sum(unseen.values())} values not seen in training were "
              f"scored through the unseen bucket ({detail})", file=sys.stderr)
    if top is not None:
        print(f"top {min(args.top, len(p))} of {n_source}:")
        print(top.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.output is not None:
        print(f"wrote {len(p)} scores to {args.output}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from features.tabular import DataError
    from nn_core.io import ModelFileError

    try:
        run(args)
    except UsageError as exc:
        print(f"predict.py: error: {exc}", file=sys.stderr)
        return 2
    except (DataError, ModelFileError, ValueError) as exc:
        print(f"predict.py: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `python predict.py ... | head`
        sys.stderr.close()
        return 1
    except KeyboardInterrupt:
        print("predict.py: interrupted; no output written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
