"""Score sessions (or users) with a model directory written by train.py.

    python predict.py --model runs/latest --input sessions.csv --output scores.csv --top 10

Writes one row per input row: the id (the ``--id-column``, else the training id column when
the file has it, else ``row`` = the 1-based data row number), the ``--keep-columns COL,...``
(input columns copied as text; a column of the model as the model reads it: ``3``,
``TRUE``), ``propensity`` (the predicted purchase probability, 7 significant digits),
``rank`` (1 = most likely buyer, from the full-precision scores; ties keep file order),
``decile`` (1 = the top 10 % by rank) and ``label`` (1 where ``propensity >= T``, compared at
full precision: ``T`` is ``--threshold``, else the threshold saved with the model, the best
F1 on dev; without either, as for a model directory written before thresholds were saved,
there is no label column). Without ``--output`` the table goes to stdout (unless ``--top``
is given, which prints only the K most likely buyers).

The input is read once (a pipe such as ``--input <(zcat f.gz)`` works) and scored in
chunks; memory does not grow with the number of rows: the scores and ids go to anonymous
temporary files (``$TMPDIR``: 8 bytes a row and the ids; up to 4 times that while
ranking), the ranks are computed exactly by an external sort (``features.ranking``), and
the output is streamed to a temporary file that replaces ``--output`` only when complete.
Input columns are matched by name against the training schema (any order; extra columns
are ignored). Missing columns, wrong types,
missing values, an empty, binary, compressed or non-UTF-8 file, or a missing model
directory produce one message naming file, row and column, exit status 1 and no output
file.

``--output`` may not name the input file (``--input`` or ``--events``; also through a
symbolic or hard link) nor a file of ``--model`` (``nn_core.modeldir.MODEL_FILES``:
``model.json``, ``weights.npz``, ``preprocess.json``, ``drift_reference.json``), and ``-``
is no name for stdout (here, or for ``--rejected``, ``--drift-output``, ``--plot``): one
message, exit status 2, nothing written. An
``--output`` that exists and is not a regular file (``/dev/stdout``, ``/dev/null``, a named
pipe, or a link to one) is written directly instead of being replaced.

``--on-invalid`` says what a bad cell does (docs/architecture.md, "Invalid cells"):
``error`` (the default) stops at the first; ``skip`` scores every other row and writes the
bad cells of the rows left out (``row,column,value,reason``, ``row`` = the data row of the
input) to ``--rejected PATH``, by default ``OUTPUT`` with ``.csv`` replaced by
``.rejected.csv`` beside it (with the output on stdout, ``--rejected`` must be given); the
``row`` ids and the ranks are those of the rows scored. ``impute`` fills in missing cells
with the values a model trained with ``--on-invalid impute`` stored; other bad cells stay
errors.

Event-log models (trained with ``train.py --events``): ``--events LOG --cutoff T`` scores
every user active before ``T``; the id written is ``user_id``. Without ``--cutoff``, ``T`` is
the log's end (the end of its core time range, as in training), so every event counts; a line
on stderr says which time was used. ``--events`` takes several files or a glob pattern, read
as one log (``features.events.read_events``); ``--events-format`` (old spelling ``--format``)
names their format.

``--explain K`` adds each row's K main reasons after the kept columns: ``reason_1,
contribution_1, ..., reason_K, contribution_K``, the raw columns of largest integrated
gradient (``nn_core.explain``; one-hot groups and encodings summed per column) and their
signed contributions to the uncalibrated probability relative to a baseline row (the
training medians and most frequent categories; the calibration is not explained). One line
on stderr gives the baseline's probability and the rows whose contributions miss
completeness (sum = p - p(baseline) within 1 %). ``--explain-row N --plot FILE`` draws data
row N's reasons (the N-th user with ``--events``) as a waterfall PNG. Both cost an
integration of the network's input gradient per row (32 nodes or more): much slower than
scoring alone.

Parquet: an ``--input`` or ``--events`` file named ``*.parquet`` or ``*.pq`` is read with
pyarrow (the same checks and messages; the row is the Parquet row index + 1), and an
``--output`` so named is written as Parquet (the same columns; ``propensity`` the float64
score). ``--engine dask`` (``--events`` only) reads the log, computes the features and scores
on a Dask cluster (``features.dask_engine``; a local one of 2 workers, or ``--scheduler
ADDRESS``): the same users and scores within 1e-6; no drift check (one line says so;
``--drift-output`` and ``--drift-plot`` are usage errors). With ``--partitioned``,
``--output DIR`` is a new directory of Parquet part files ``DIR/part.NNNNN.parquet``, one
per partition, written by the workers (the one-file Parquet output's columns and global
ranks; ``pandas.read_parquet(DIR)`` reads them back); it never replaces an existing path
(exit status 2), and is written to a temporary directory beside it renamed at the end.

Input drift: with a model directory that has ``drift_reference.json`` (train.py writes it),
every input is compared with the training rows: the population stability index (PSI) of each
input column and of the scores (``nn_core.drift``), counted chunk by chunk, goes to
``OUTPUT.drift.json`` beside ``--output`` (``--drift-output PATH``, or ``DIR/drift.json`` for
a directory; none when the output goes to stdout), ``--drift-plot`` adds the bar chart
``OUTPUT.drift.png``, and one warning line on stderr names the columns whose PSI is above
``--drift-threshold`` (0.2). ``--no-drift`` turns it off; an older model directory without
a reference is scored with one line saying that no drift check was possible.

The model directory is read with ``nn_core.load_model``; the scoring, ranking and output
streaming are ``features.scoring``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from nn_core.drift import DEFAULT_THRESHOLD
from nn_core.io import DefaultsHelpFormatter, OneLineArgumentParser
from nn_core.modeldir import MODEL_FILES
from nn_core.preprocessing import ON_INVALID

from . import UsageError, check_threads, program_name, run_command

DEFAULT_CHUNKSIZE = 100_000
#: Why ``--engine dask`` scores without a drift check (the line predict.py prints).
DASK_NO_DRIFT = "--engine dask has none (the pandas engine's; --no-drift silences this line)"


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineArgumentParser(
        prog=program_name("predict"),
        description="Score purchase propensity with a model directory written by train.py.",
        formatter_class=DefaultsHelpFormatter,
    )
    ap.add_argument("--model", type=Path, required=True, help="model directory (e.g. runs/latest)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, help="session-table CSV to score")
    src.add_argument("--events", type=Path, nargs="+", action="extend", metavar="PATH",
                     help="event log to score (event-log models): repeatable, several files "
                     "or a quoted glob pattern, read as one log")
    ap.add_argument("--output", type=Path, help="output CSV, or Parquet when the name ends in "
                    ".parquet or .pq (default: CSV on stdout)")
    ap.add_argument("--id-column", help="input column written as the id (default: the training "
                    "id column if present, else the row number)")
    ap.add_argument("--top", type=int, metavar="K", help="print the K most likely buyers")
    ap.add_argument("--threshold", type=float, metavar="T",
                    help="label = 1 where propensity >= T (default: the threshold saved with "
                    "the model, the best F1 on dev; no label column when it has none)")
    ap.add_argument("--keep-columns", metavar="COL,...",
                    help="with --input: input columns copied to the output, after the id")
    ap.add_argument("--chunksize", type=int, default=DEFAULT_CHUNKSIZE, help="rows per chunk")
    ap.add_argument("--cutoff", help="with --events: score with the events before this time "
                    "(default: the log's end, so every event counts)")
    ap.add_argument("--events-format", choices=("taobao", "rees46", "canonical"),
                    help="with --events: log format (default: the one the model was trained on)")
    ap.add_argument("--threads", type=int, help="numba threads (default: all)")
    ap.add_argument("--engine", choices=("pandas", "dask"), default="pandas",
                    help="with --events: dask reads the log, computes the features and "
                    "scores on a Dask cluster (pip install '.[scale]')")
    ap.add_argument("--scheduler", metavar="ADDRESS", help="with --engine dask: the "
                    "scheduler of an existing cluster, e.g. tcp://host:8786 (default: a "
                    "local cluster of 2 workers)")
    ap.add_argument("--partitioned", action="store_true", help="with --engine dask: "
                    "--output DIR is a new directory of Parquet part files "
                    "(DIR/part.NNNNN.parquet, one per partition, written by the workers)")
    ap.add_argument("--on-invalid", choices=ON_INVALID, default="error",
                    help="a bad cell: stop with an error; skip its row (listed in "
                    "--rejected); or impute a missing one (models trained with it)")
    ap.add_argument("--rejected", type=Path, help="with --on-invalid skip: CSV of the rows "
                    "left out (default: OUTPUT.rejected.csv beside --output)")
    drift = ap.add_argument_group("input drift (models with drift_reference.json)")
    drift.add_argument("--drift-output", type=Path, metavar="PATH",
                       help="drift report: PSI per column and of the scores, bins, flagged "
                       "columns (default: OUTPUT.drift.json beside --output; none with the "
                       "output on stdout; a directory: DIR/drift.json)")
    drift.add_argument("--drift-threshold", type=float, default=DEFAULT_THRESHOLD, metavar="T",
                       help="warn (one line on stderr) about the columns whose PSI is above T")
    drift.add_argument("--drift-plot", action="store_true",
                       help="also draw the PSI per column as a bar chart beside the drift "
                       "report (REPORT.png)")
    drift.add_argument("--no-drift", action="store_true",
                       help="no drift check (no counting, report or warning)")
    ap.add_argument("--explain", type=int, default=0, metavar="K",
                    help="add each row's K main reasons: reason_1, contribution_1, ... (raw "
                    "columns and signed integrated-gradient contributions to the "
                    "uncalibrated probability)")
    ap.add_argument("--explain-row", type=int, metavar="N",
                    help="draw data row N's reasons (the output's row N with --events) as a "
                    "waterfall to --plot")
    ap.add_argument("--plot", type=Path, metavar="FILE",
                    help="the waterfall figure of --explain-row: PNG, PDF or SVG by FILE's "
                    "suffix (none: PNG)")
    ap.add_deprecated_alias("--format", "--events-format")
    return ap


def drift_paths(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """Where the drift report and its chart go (``None``: not written); UsageError for
    drift options that contradict each other."""
    import math

    given = args.drift_output is not None or args.drift_plot
    if args.no_drift:
        if given:
            raise UsageError("--no-drift: --drift-output and --drift-plot need the drift check")
        return None, None
    if not (math.isfinite(args.drift_threshold) and args.drift_threshold >= 0):
        raise UsageError(f"--drift-threshold must be a finite number >= 0, got "
                         f"{args.drift_threshold}")
    report = args.drift_output
    if report is not None and report.is_dir():
        report = report / "drift.json"
    elif report is None and args.output is not None and (args.output.is_file()
                                                          or not args.output.exists()):
        report = args.output.with_name(args.output.name.removesuffix(".csv") + ".drift.json")
    if report is None and args.drift_plot:
        raise UsageError("--drift-plot draws beside the drift report: give --drift-output "
                         "(the output goes to stdout)")
    return report, (report.with_name(report.name.removesuffix(".json") + ".png")
                    if args.drift_plot else None)


def rejected_path(args: argparse.Namespace) -> Path | None:
    """Where ``--on-invalid skip`` writes the rows it leaves out (None: no skipping)."""
    if args.rejected is not None and args.on_invalid != "skip":
        raise UsageError("--rejected only applies to --on-invalid skip")
    if args.on_invalid == "skip" and args.events is not None:
        raise UsageError("--on-invalid applies to --input tables, not --events")
    if args.on_invalid != "skip":
        return None
    if args.rejected is not None:
        return args.rejected
    if args.output is None or (args.output.exists() and not args.output.is_file()):
        where = "stdout" if args.output is None else f"{args.output}, not a regular file"
        raise UsageError("--on-invalid skip writes the rows it leaves out to a file: give "
                         f"--rejected PATH (the output goes to {where})")
    name = args.output.name.removesuffix(".csv") + ".rejected.csv"
    return args.output.with_name(name)


def keep_columns(args: argparse.Namespace) -> list[str]:
    """The column names of ``--keep-columns`` (comma-separated; UsageError for an empty
    name, or with ``--events``, whose output rows are users, not input rows)."""
    if args.keep_columns is None:
        return []
    if args.events is not None:
        raise UsageError("--keep-columns only applies to --input tables (the rows of an "
                         "--events output are users, not rows of the log)")
    from features.scoring import OUTPUT_COLUMNS

    names = [name.strip() for name in args.keep_columns.split(",")]
    if not all(names):
        raise UsageError(f"--keep-columns {args.keep_columns!r}: an empty column name "
                         "(give COL,COL,...)")
    for i, name in enumerate(names):
        if name in names[:i]:
            raise UsageError(f"--keep-columns: {name!r} is listed twice")
        if name in OUTPUT_COLUMNS:
            raise UsageError(f"--keep-columns: {name!r} is already a column of the output "
                             f"({', '.join(OUTPUT_COLUMNS)})")
    return names


def check_output(output: Path | None, source: Path, model_dir: Path,
                 flag: str = "--output") -> None:
    """Refuse an ``--output`` (or another output ``flag``) that would replace the input, a
    file of the model directory, a directory, or that lies in a directory that does not
    exist (UsageError)."""
    from nn_core.io import same_file

    if output is None:
        return
    if output.is_dir():
        raise UsageError(f"{flag} {output}: is a directory")
    if not output.parent.exists():
        raise UsageError(f"{flag} {output}: directory {output.parent} does not exist")
    if same_file(output, source):
        raise UsageError(f"{flag} {output}: is the input file {source}; refusing to "
                         "overwrite it (choose another output path)")
    for name in MODEL_FILES:
        if same_file(output, model_dir / name):
            raise UsageError(f"{flag} {output}: is {model_dir / name} of the model; "
                             "refusing to overwrite it (choose another output path)")


def no_reference(args: argparse.Namespace) -> str:
    """Why a model directory without a reference has no drift check."""
    return (f"{args.model} has no drift_reference.json (saved before train.py stored the "
            "training distributions)")


def drift_monitor(args: argparse.Namespace, model):
    """The ``nn_core.drift.DriftMonitor`` of the model's reference; ``None`` with
    ``--no-drift`` or for a model directory without a reference (``run`` then says in one
    line, after the output, that no drift check was possible; UsageError if a drift file
    was asked for)."""
    from nn_core.drift import DriftMonitor

    if args.no_drift:
        return None
    if model.reference is None:
        if args.drift_output is not None or args.drift_plot:
            raise UsageError(f"--drift-output/--drift-plot: {no_reference(args)}")
        return None
    return DriftMonitor(model.reference)


@contextlib.contextmanager
def drift_files(monitor, threshold: float, report_path: Path | None, plot_path: Path | None):
    """Around writing the output: yields the drift warning line (``None``: no drift above
    ``threshold``, or no monitor). The drift report (JSON) and chart (PNG) are written to
    temporary files beside their paths first and renamed over them only when the block
    succeeds, so a failed output leaves neither."""
    if monitor is None:
        yield None
        return
    from nn_core import drift
    from nn_core.io import replace_temp, temp_file

    report = monitor.report(threshold)
    contents = {}
    if report_path is not None:
        contents[report_path] = json.dumps(report, indent=2, allow_nan=False) + "\n"
    if plot_path is not None:
        from nn_core import plots

        psi = {name: c["psi"] for name, c in report["columns"].items()}
        psi["(scores)"] = report["scores"]["psi"]
        contents[plot_path] = plots.figure_bytes(plots.drift_figure(psi, threshold), plot_path)
    staged = []
    try:
        for path, data in contents.items():
            fd, tmp = temp_file(path)
            staged.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            except OSError as exc:  # a full disk: write() names no file
                raise OSError(exc.errno, exc.strerror, str(path)) from None
        yield drift.warning_line(report)
        for tmp, path in staged:
            replace_temp(tmp, path)
    finally:
        for tmp, _ in staged:
            if os.path.lexists(tmp):
                os.unlink(tmp)


def check_explain(args: argparse.Namespace, keep: list[str]) -> None:
    """Refuse ``--explain`` below 0, ``--explain-row`` without ``--plot`` (or the reverse) or
    below 1, a ``--plot`` over the input, the model or ``--output`` or with a suffix no figure
    format has, and a kept column named like an explanation column (UsageError)."""
    from nn_core.io import same_file

    if args.explain < 0:
        raise UsageError(f"--explain must be >= 1 (or 0: no reasons), got {args.explain}")
    if (args.explain_row is None) != (args.plot is None):
        raise UsageError("--explain-row N and --plot FILE go together")
    if args.explain_row is not None:
        if args.explain_row < 1:
            raise UsageError(f"--explain-row must be >= 1 (a data row), got {args.explain_row}")
        for source in [args.input] if args.input is not None else args.events:
            check_output(args.plot, source, args.model, "--plot")
        if args.output is not None and same_file(args.plot, args.output):
            raise UsageError(f"--plot {args.plot}: is the --output file")
        from nn_core.plots import figure_format  # matplotlib: imported only for a figure

        try:  # the suffix gives the format: refused here, before any output is written
            figure_format(args.plot)
        except ValueError as exc:
            raise UsageError(f"--plot {exc}") from None
    clash = [name for name in keep if name.startswith(("reason_", "contribution_"))]
    if clash and args.explain:
        raise UsageError(f"--keep-columns: {clash[0]!r} is also a name of --explain's columns")


def write_waterfall(e, row: int, plot: Path) -> None:
    """Draw the waterfall of data row ``row``'s explanation ``e``
    (``nn_core.explain.Explanation``) to ``plot`` (atomically)."""
    from nn_core.plots import plot_waterfall, waterfall_bars

    bars = waterfall_bars(e.baseline_value, e.value[0], e.columns, e.contributions[0])
    note = "" if not e.failed[0] else " (completeness missed)"
    plot_waterfall(bars, plot, f"Row {row}: p = {e.value[0]:.4f}, baseline "
                   f"{e.baseline_value:.4f}{note}")
    print(f"{program_name('predict')}: wrote the reasons of row {row} to {plot}",
          file=sys.stderr)


def check_engine(args: argparse.Namespace) -> None:
    """Refuse ``--scheduler`` without ``--engine dask``, and ``--engine dask`` for what it
    does not do (a session table; explanations; a drift report or chart); check that Dask is
    installed."""
    if args.scheduler is not None and args.engine != "dask":
        raise UsageError("--scheduler only applies to --engine dask")
    if args.engine != "dask":
        return
    if args.events is None:
        raise UsageError("--engine dask scores event logs (--events); a session table "
                         "(--input) is scored by the pandas engine, in chunks")
    if args.explain or args.explain_row is not None:
        raise UsageError("--explain and --explain-row apply to the pandas engine only (not "
                         "--engine dask)")
    drift = [flag for flag, given in (("--drift-output", args.drift_output is not None),
                                      ("--drift-plot", args.drift_plot)) if given]
    if drift:
        raise UsageError(f"{' and '.join(drift)}: --engine dask has no input drift check "
                         "(the pandas engine's)")
    from features.dask_engine import require_dask

    try:
        require_dask()
    except ImportError as exc:
        raise UsageError(str(exc)) from None


def check_partitioned(args: argparse.Namespace) -> None:
    """``--partitioned`` needs ``--engine dask`` and an ``--output DIR`` naming nothing that
    exists: a partitioned output never replaces a file or directory (UsageError)."""
    if not args.partitioned:
        return
    if args.engine != "dask":
        raise UsageError("--partitioned only applies to --engine dask (the pandas engine "
                         "writes one file)")
    if args.output is None:
        raise UsageError("--partitioned writes a directory: give --output DIR")
    if os.path.lexists(args.output):
        raise UsageError(f"--output {args.output}: exists; --partitioned writes a new "
                         "directory and never replaces one (remove it or choose another name)")


def run_partitioned(args: argparse.Namespace, model, threshold: float | None) -> None:
    """``--engine dask --partitioned``: score ``--events`` into the directory ``--output``
    (``features.scoring.write_events_parts``); the messages of ``run``."""
    from features import scoring

    n, what, top = scoring.write_events_parts(args.events, model, args.output, args.cutoff,
                                              args.events_format, args.threads,
                                              args.scheduler, threshold, args.top)
    if n == 0:
        raise UsageError(f"{', '.join(map(str, args.events))}: no user has events before "
                         f"{args.cutoff or 'the end of the log'}")
    if args.cutoff is None:
        print(f"{program_name('predict')}: no --cutoff: scoring {what} (the log's end)",
              file=sys.stderr)
    if top is not None:
        print(f"top {min(args.top, n)} of {what}:")
        print(top.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if not args.no_drift:
        print(f"{program_name('predict')}: no drift check: {DASK_NO_DRIFT}", file=sys.stderr)
    print(f"wrote {n} scores to {args.output}/ (Parquet parts)", file=sys.stderr)


def run(args: argparse.Namespace) -> None:
    from features import scoring
    from nn_core import load_model
    from nn_core.io import same_file
    from nn_core.modeldir import check_threshold

    for flag, path in (("--output", args.output), ("--rejected", args.rejected),
                       ("--drift-output", args.drift_output), ("--plot", args.plot)):
        if path is not None and str(path) == "-":
            raise UsageError(f"{flag} -: '-' is not stdout here; give a file name"
                             + (" (without --output the table goes to stdout)"
                                if flag == "--output" else ""))
    check_threads(args.threads)  # train.py's rule and message
    if args.top is not None and args.top < 1:
        raise UsageError(f"--top must be >= 1, got {args.top}")
    if args.chunksize < 1:
        raise UsageError(f"--chunksize must be >= 1, got {args.chunksize}")
    if args.events is not None:
        from features.events import expand_paths

        args.events = expand_paths(args.events)
    check_partitioned(args)
    for source in [args.input] if args.input is not None else args.events:
        check_output(args.output, source, args.model)
    rejected = args.rejected = rejected_path(args)  # resolved: _run_main names it too
    if rejected is not None:
        check_output(rejected, args.input, args.model, "--rejected")
        if args.output is not None and same_file(rejected, args.output):
            raise UsageError(f"--rejected {rejected}: is the --output file")
    if args.on_invalid == "impute" and args.events is not None:
        raise UsageError("--on-invalid applies to --input tables, not --events")
    check_engine(args)
    keep = keep_columns(args)
    check_explain(args, keep)
    drift_report, drift_plot = drift_paths(args)
    for path, flag in ((drift_report, "--drift-output"), (drift_plot, "--drift-plot")):
        for source in ([] if path is None else [args.input] if args.input is not None
                       else args.events):
            check_output(path, source, args.model, flag)
        if path is not None and any(other is not None and same_file(path, other)
                                    for other in (args.output, rejected)):
            raise UsageError(f"{flag} {path}: is the --output or --rejected file")
    model = load_model(args.model, require_preprocessing=True)  # predict.py scores raw rows
    monitor = drift_monitor(args, model) if args.engine == "pandas" else None
    threshold = model.threshold if args.threshold is None else args.threshold
    if threshold is not None:
        try:
            threshold = check_threshold(threshold, model.network.output, "--threshold")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.on_invalid == "impute" and not model.preprocessing.imputes:
        raise UsageError(f"--on-invalid impute: {args.model} was not trained with "
                         "--on-invalid impute (it has no values to impute)")
    explainer = None
    if args.explain or args.explain_row is not None:
        from nn_core.explain import ChunkExplainer

        try:
            explainer = ChunkExplainer(model, args.explain, args.explain_row)
        except ValueError as exc:
            raise UsageError(f"--explain {args.explain}: {exc}") from None
    pre = model.preprocessing
    kind = pre.source.get("kind", "table")
    observe = None if monitor is None else monitor.update
    if args.events is not None:
        if kind != "events":
            raise UsageError(f"{args.model} was trained on a session table; use --input, "
                             "not --events")
        if args.partitioned:
            return run_partitioned(args, model, threshold)
        scored = scoring.score_events(args.events, model, args.cutoff, args.events_format,
                                      args.threads, observe, explainer, engine=args.engine,
                                      scheduler=args.scheduler)
        if scored.n == 0:
            scored.close()
            raise UsageError(f"{', '.join(map(str, args.events))}: no user has events before "
                             f"{args.cutoff or 'the end of the log'}")
        if args.cutoff is None:
            print(f"{program_name('predict')}: no --cutoff: scoring {scored.what} (the log's "
                  "end)", file=sys.stderr)
    else:
        if kind != "table":
            raise UsageError(f"{args.model} was trained on event-log features; use --events "
                             "(and --cutoff), not --input")
        if args.cutoff is not None or args.events_format is not None:
            raise UsageError("--cutoff and --events-format only apply to --events")
        scored = scoring.score_table(args.input, model, args.id_column, args.chunksize,
                                     args.threads, args.on_invalid, keep, observe, explainer)
    scored.threshold = threshold
    if args.explain_row is not None and explainer.row_explanation is None:
        scored.close()  # before the output: a row that is not there leaves nothing written
        raise UsageError(f"--explain-row {args.explain_row}: no such row was scored "
                         f"({scored.what})")
    with scored, drift_files(monitor, args.drift_threshold, drift_report, drift_plot) as warn:
        if rejected is None:
            top = scoring.write_output(scored, args.output, args.top)
        else:
            top = scoring.write_output_and_rejected(scored, args.output, rejected, args.top)
    if rejected is not None:
        r = scored.rejected
        reasons = ", ".join(f"{why}: {n:,}" for why, n in r.counts().items())
        print(f"{program_name('predict')}: --on-invalid skip: left out {len(r.rows):,} of "
              f"{len(r.rows) + scored.n:,} data rows ({reasons or 'none'}); their cells are "
              f"in {rejected}", file=sys.stderr)
    if warn is not None:
        where = f" (bins in {drift_report})" if drift_report is not None else ""
        print(f"{program_name('predict')}: warning: {warn}{where}", file=sys.stderr)
    elif monitor is None and not args.no_drift:  # after the output: an error stays one line
        why = no_reference(args) if args.engine == "pandas" else DASK_NO_DRIFT
        print(f"{program_name('predict')}: no drift check: {why}", file=sys.stderr)
    if scored.unseen:
        detail = ", ".join(f"{col}: {n} row{'' if n == 1 else 's'}"
                           for col, n in sorted(scored.unseen.items()))
        print(f"{program_name('predict')}: warning: {sum(scored.unseen.values())} values not "
              f"seen in training were scored through the unseen bucket ({detail})",
              file=sys.stderr)
    if explainer is not None:
        if args.explain_row is not None:
            write_waterfall(explainer.row_explanation, args.explain_row, args.plot)
        print(f"{program_name('predict')}: --explain: {explainer.summary()}", file=sys.stderr)
    if top is not None:
        print(f"top {min(args.top, scored.n)} of {scored.what}:")
        print(top.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.output is not None:
        print(f"wrote {scored.n} scores to {args.output}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status: 0, 1 (bad data or model, an OS error, out
    of memory), 2 (a usage mistake), 130 (Ctrl-C) or 143 (SIGTERM); every error is one line
    on stderr and no output file is written."""
    from nn_core.io import sigterm_as_interrupt

    args = build_parser().parse_args(argv)
    with sigterm_as_interrupt():
        return _run_main(args)


def program() -> int:
    """The installed command ``propensity-predict``: :func:`main` started as a program, as
    ``python predict.py`` starts it (``propensity.run_program``: freed memory kept for
    reuse, the imported libraries frozen out of the garbage collector's work)."""
    from . import run_program

    return run_program(__name__)


def _run_main(args: argparse.Namespace) -> int:
    import errno

    source = args.input if args.input is not None else ", ".join(map(str, args.events))
    write_errors = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)

    def name_output(exc: OSError) -> OSError:  # a full disk while the output is written
        if args.output is not None and exc.filename is None and exc.errno in write_errors:
            return OSError(exc.errno, exc.strerror, str(args.output))  # a write of the output
        return exc

    return run_command("predict", lambda: run(args), source=source,
                       nothing_written="no output written", os_error=name_output)


if __name__ == "__main__":
    sys.exit(main())
