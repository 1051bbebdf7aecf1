"""Train the purchase-propensity MLP and a logistic-regression baseline; write a run directory.

Default: the bundled UCI online-shoppers table (``data/online_shoppers_intention.csv``),
a seeded stratified 70/15/15 train/dev/test split, early stopping on dev ROC-AUC, and a run
directory ``runs/<timestamp>/`` (``runs/latest`` points at it) holding

- the model: ``model.json`` + ``weights.npz`` + ``preprocess.json`` (``nn_core.save_model``),
  so ``python predict.py --model runs/latest ...`` works, and ``drift_reference.json`` (the
  training rows' distribution of every input column and of the scores, which predict.py's
  drift check compares new data with); the baseline model in ``baseline/``;
- ``metrics.json``: ``{"model": {"dev": {...}, "test": {...}}, "baseline": {...}, ...}`` and,
  with several seeds, ``"runs"``, ``"mean"`` and ``"std"`` (sample standard deviation) of
  the same shape; top-level ``model``/``baseline`` are the first seed's (the saved model);
- ``history.csv``: per epoch the training objective, train and dev log-loss and dev ROC-AUC,
  per seed and model;
- ``loss_curves.png``, ``roc.png``, ``pr.png``, ``reliability.png``, ``gains.png`` (test set,
  first seed); ``tune_trials.csv`` with ``--tune``;
- ``importance.csv`` (``model,column,mean_drop,std_drop,rank``) and ``importance.png``: the
  permutation importance on dev of each input column, the first seed's network and baseline
  (``nn_core.importance``; ``--importance-repeats R`` permutations, 0 for none).

Combined models (docs/math.md#ensembles-fusion-and-calibration): ``--ensemble K`` trains K
networks per split seed (member ``k`` with seed ``seed + k 2**32``) and averages their logits;
``--fuse blend|stack`` adds the logistic regression (``BASELINE``'s settings, on the network's
features) with a blend weight or a stacked logistic regression chosen on dev; ``--calibrate
platt|isotonic`` fits a calibration on dev. The saved model, ``metrics.json`` and stdout are
the combined, calibrated model; ``metrics.json`` adds ``ece_uncalibrated`` and per seed the
``combination`` chosen.

Other session tables: ``--input FILE --target COL --numeric a,b --categorical c,d``. Event
logs: ``--events FILE [FILE ...] --events-format taobao --horizon 1d`` (time-based splits from
``features.events.load_event_splits``; ``--min-history``, ``--stride``). A file named
``*.parquet`` or ``*.pq`` is read as Parquet (table or log; pyarrow). ``--engine dask``
computes an event log's snapshots on a Dask cluster (``features.dask_engine``: a local one,
or ``--scheduler ADDRESS``) with the same features and ``metrics.json``. Any setting can come
from a JSON or TOML ``--config`` file (``propensity.config``); the run directory keeps the
resolved ``config.json``, which reproduces the run, and ``splits.json`` and
``test_predictions.csv``. Old spellings (``--data``, ``--out``, ``--format``) still work
with a deprecation line.

Printed: on stdout the winning trial of ``--tune``, dev metrics, then test metrics of the
MLP and the baseline, and both models' settings (the baseline's are fixed,
``nn_core.selection.BASELINE``), no line wider than 100 columns; on stderr, unless
``--quiet``, "compiling kernels (first run only)" when Numba's cache lacks them, then a
progress bar per model on a terminal or one line per model otherwise. A flag that does not
apply to the data given (``--horizon`` with a table, ``--numeric`` with ``--events``, ...)
is refused.

The script parses and checks the command line, then calls the packages and prints:
``features.datasets`` gives the splits, ``features.training_run.train_run`` runs the rest
(``nn_core.selection`` trains with early stopping in ``MLP.fit``, evaluates and tunes) and
builds the run directory under a temporary name, renamed at the end: a failed run leaves
nothing.

Errors are one line on stderr naming the file, row, column or flag, with exit status 2 for a
usage mistake, 1 for bad data, a bad model file, an OS error (a full disk, ``EFBIG``, a path
that cannot be created) or too little memory, 130 for Ctrl-C and 143 for SIGTERM. The run
directory is reserved at the start (``nn_core.io.new_run_dir``): concurrent runs get distinct
directories, or the second run given the same ``--output`` is refused; what a killed run left is
removed by the next run in the same folder. Limits: docs/architecture.md#limits.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path

from features.training_run import RunDirError, RunOptions, summary_lines, train_run
from nn_core import selection
from nn_core.activations import ACTIVATIONS
from nn_core.backends import BACKENDS
from nn_core.calibration import CALIBRATIONS
from nn_core.ensemble import FUSIONS, MAX_ENSEMBLE
from nn_core.importance import DEFAULT_REPEATS
from nn_core.io import (
    DefaultsHelpFormatter,
    OneLineArgumentParser,
    options_given,
    sigterm_as_interrupt,
    stdout_may_close,
)
from nn_core.network import DTYPES, MAX_HIDDEN_LAYERS, MAX_WIDTH
from nn_core.optim import OPTIMIZERS, SCHEDULES
from nn_core.preprocessing import (
    DEFAULT_RANK_KNOTS,
    MAX_PLE_BINS,
    MAX_RANK_KNOTS,
    MIN_RANK_KNOTS,
    NUMERIC_ENCODINGS,
    ON_INVALID,
    PLE_BINNINGS,
)
from nn_core.selection import NetConfig

from . import UsageError, check_threads, config, program_name, run_command
from .bundled import bundled_table

# The checkout's data/ or, installed, the copy under <prefix>/share/ (propensity/bundled.py).
DEFAULT_DATA = bundled_table()


#: The largest --pos-weight: beyond it the positives' loss alone overflows float32 sums.
MAX_POS_WEIGHT = 1e6

#: ``--preset NAME``: settings (by flag destination) that replace the built-in defaults; a
#: ``--config`` file and the command line override them. ``dev-best``: the highest mean dev
#: ROC-AUC over seeds 0-4 of the candidates measured for issue 17.5 on the bundled table
#: (docs/results.md#presets; test never read for the choice). ``mixed``: the mixed-encoding
#: ensemble with the highest mean dev ROC-AUC of the session-5 encodings study
#: (docs/results.md, "Input encodings and mixed-encoding ensembles"; its dev gain over
#: dev-best was under that study's bar for a product): 5 networks on dev-best's features, 5
#: on the Gaussian rank and the bins (network k on view k mod 2), one model directory.
PRESETS: dict[str, dict[str, object]] = {
    "none": {},
    "dev-best": {"numeric_encoding": "standard+ple", "ple_bins": 4, "lr": 3e-3, "ensemble": 5},
    "mixed": {"numeric_encoding": "standard+quantile+ple",
              "ensemble_views": ("standard+ple", "quantile+ple"), "ple_bins": 4,
              "rank_knots": 16, "lr": 3e-3, "ensemble": 10},
}


#: Settings of a --config file that are no flag: the valid range of each numeric column.
FILE_ONLY = ("ranges",)


def _ranges(value, path: Path) -> dict:
    """A config file's ``ranges`` (``features.tabular.parse_ranges``)."""
    from features.tabular import parse_ranges

    return parse_ranges(value)


def _int_list(text: str) -> tuple[int, ...]:
    text = text.strip()
    if text in ("", "none", "()"):
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _views(text: str) -> tuple[str, ...]:
    views = _name_list(text)
    for view in views:
        if view not in NUMERIC_ENCODINGS:
            raise argparse.ArgumentTypeError(f"unknown view {view!r}; views are numeric "
                                             f"encodings: {', '.join(NUMERIC_ENCODINGS)}")
    return views


def _pos_weight(text: str) -> str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None
    if not 0 < value <= MAX_POS_WEIGHT:
        raise argparse.ArgumentTypeError(f"pos-weight must be > 0 and at most "
                                         f"{MAX_POS_WEIGHT:g}, got {text!r}")
    return text


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 0.7,0.15,0.15, got {text!r}") from None
    if len(values) != 3 or not all(0 < v < 1 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError("--split needs 3 positive fractions summing to 1")
    return values


def build_parser() -> argparse.ArgumentParser:
    d = NetConfig()
    ap = OneLineArgumentParser(
        prog=program_name("train"),
        description="Train the purchase-propensity MLP (and a logistic-regression baseline).",
        formatter_class=DefaultsHelpFormatter)
    data = ap.add_argument_group("data (session table)")
    data.add_argument("--input", type=Path, default=DEFAULT_DATA,
                      help="session-table CSV (default: the bundled UCI table)")
    data.add_argument("--config", type=Path, help="JSON or TOML file of settings: any flag "
                      "(key = flag name) and the column roles incl. ranges; flags given on "
                      "the command line override it; a run's config.json reproduces it")
    data.add_argument("--target", help="0/1 (or TRUE/FALSE) target column [UCI: Revenue]")
    data.add_argument("--numeric", type=_name_list, help="comma-separated numeric columns")
    data.add_argument("--categorical", type=_name_list, help="comma-separated categorical columns")
    data.add_argument("--id-column", help="row id column (kept out of the features)")
    data.add_argument("--on-invalid", choices=ON_INVALID, default="error",
                      help="a bad cell: stop with an error; skip its row (counted per "
                      "reason); or impute a missing one (median / most frequent category of "
                      "the training rows, plus a missing indicator; stored with the model)")
    ev = ap.add_argument_group("data (event log)")
    ev.add_argument("--events", type=Path, nargs="+", action="extend", metavar="PATH",
                    help="event-log CSV(s) instead of --input: repeatable, several files or "
                    "a quoted glob pattern, read as one log")
    ev.add_argument("--events-format", choices=("taobao", "rees46", "canonical"),
                    default="canonical", help="the log's layout (docs/events.md)")
    ev.add_argument("--horizon", default="1d", help="label window after each cutoff")
    ev.add_argument("--cutoff", help="ISO time of the test cutoff (default: log end - horizon)")
    ev.add_argument("--drop-invalid", action="store_true", help="drop and count invalid events")
    ev.add_argument("--engine", choices=("pandas", "dask"), default="pandas",
                    help="dask: read the log and compute the snapshots on a Dask cluster "
                    "(pip install '.[scale]'); the same features and metrics")
    ev.add_argument("--scheduler", metavar="ADDRESS", help="with --engine dask: the "
                    "scheduler of an existing cluster, e.g. tcp://host:8786 (default: a "
                    "local cluster of 2 workers)")
    ev.add_argument("--min-history", default="1D",
                    help="log history required before the first training cutoff")
    ev.add_argument("--stride", help="spacing of the rolling training cutoffs "
                    "(default: min(horizon, 1 day))")
    fe = ap.add_argument_group("numeric features (tables and event logs)")
    fe.add_argument("--numeric-encoding", choices=NUMERIC_ENCODINGS, default="standard",
                    help="numeric columns as their standardised value, their Gaussian rank on "
                    "training quantiles (quantile), a piecewise-linear encoding on bins of "
                    "the training rows (ple), or several of them joined by +")
    fe.add_argument("--ple-bins", type=int, default=16, metavar="N",
                    help="bins of --numeric-encoding ple (quantile bins: equal edges merge; "
                    "tree: the most leaves)")
    fe.add_argument("--ple-binning", choices=PLE_BINNINGS, default="quantile",
                    help="edges of --numeric-encoding ple: quantiles of the training values, "
                    "or the cuts of a regression tree of the training labels on each column")
    fe.add_argument("--rank-knots", type=int, default=DEFAULT_RANK_KNOTS, metavar="N",
                    help="training quantiles of --numeric-encoding quantile's Gaussian rank "
                    "(equal ones merge)")
    sp = ap.add_argument_group("split and seeds")
    sp.add_argument("--seeds", type=_int_list, default=(0,), help="e.g. 0,1,2,3,4 (each "
                    "once): repeat split + training per seed, report mean and std")
    sp.add_argument("--split", type=_fractions, default=(0.7, 0.15, 0.15), help="train,dev,test")
    hp = ap.add_argument_group("network and training")
    hp.add_argument("--hidden", type=_int_list, default=d.hidden, help="hidden widths, e.g. "
                    "64,32 ('none' = logistic regression)")
    hp.add_argument("--activation", default=d.activation, choices=list(ACTIVATIONS),
                    help="hidden-layer activation")
    hp.add_argument("--optimizer", default=d.optimizer, choices=list(OPTIMIZERS),
                    help="update rule")
    hp.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    hp.add_argument("--momentum", type=float, default=d.momentum,
                    help="mu of the momentum and nesterov optimizers")
    hp.add_argument("--batch-size", type=int, default=d.batch_size, help="rows per update")
    hp.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs")
    hp.add_argument("--l2", type=float, default=d.l2, help="L2 penalty (l2/2)*sum ||W||^2")
    hp.add_argument("--weight-decay", type=float, default=d.weight_decay, help="decoupled decay")
    hp.add_argument("--dropout", type=float, default=d.dropout, help="hidden-unit dropout")
    hp.add_argument("--pos-weight", type=_pos_weight, default=d.pos_weight,
                    help="loss weight of positives: a number or auto (= n_neg / n_pos)")
    hp.add_argument("--schedule", default=d.schedule, choices=SCHEDULES,
                    help="learning rate over the epochs")
    hp.add_argument("--monitor", default=d.monitor, choices=list(selection.MONITORS),
                    help="early stopping on dev ROC-AUC or dev log-loss")
    hp.add_argument("--patience", type=int, default=d.patience,
                    help="stop after this many epochs without dev improvement")
    hp.add_argument("--no-restore-best", action="store_true",
                    help="keep the last epoch's weights instead of the best dev epoch's")
    hp.add_argument("--dtype", default=d.dtype, choices=DTYPES,
                    help="floating-point type of the weights and features")
    hp.add_argument("--backend", default=d.backend, choices=BACKENDS,
                    help="numba (compiled), numpy (the reference) or cupy (GPU)")
    hp.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    hp.add_argument("--tune", type=int, default=0, metavar="N",
                    help="random search of N trials (architecture, lr, L2, batch, dropout), "
                    "selected on dev of the first seed's split")
    cb = ap.add_argument_group("combination and calibration (chosen on dev)")
    cb.add_argument("--preset", choices=tuple(PRESETS), default="none",
                    help="named settings in place of the built-in ones (session tables; "
                    "flags and --config override them; docs/results.md#presets): dev-best = "
                    "--numeric-encoding standard+ple --ple-bins 4 --lr 0.003 --ensemble 5; "
                    "mixed = --numeric-encoding standard+quantile+ple --ensemble-views "
                    "standard+ple,quantile+ple --ple-bins 4 --rank-knots 16 --lr 0.003 "
                    "--ensemble 10")
    cb.add_argument("--ensemble", type=int, default=1, metavar="K",
                    help="K networks per split seed (member k: seed + k*2**32), logits "
                    "averaged")
    cb.add_argument("--ensemble-views", type=_views, default=(), metavar="V1,V2,...",
                    help="numeric encodings contained in --numeric-encoding: network k sees "
                    "the features of view k mod V alone (zero weights on the others' in the "
                    "saved model); needs --ensemble K >= V")
    cb.add_argument("--fuse", choices=FUSIONS, default="none",
                    help="add the logistic regression: a blend weight on a grid, or a "
                    "stacked logistic regression on the members' dev logits")
    cb.add_argument("--calibrate", choices=CALIBRATIONS, default="none",
                    help="fit a calibration of the combined logit on dev")
    out = ap.add_argument_group("output")
    out.add_argument("--importance-repeats", type=int, default=DEFAULT_REPEATS, metavar="R",
                     help="permutations per column of the permutation importance on dev "
                     "(importance.csv/.png, first seed; 0: none)")
    out.add_argument("--output", type=Path, help="run directory (default runs/<timestamp>/, "
                     "and runs/latest then points at it)")
    out.add_argument("--quiet", action="store_true",
                     help="no progress on stderr (bars on a terminal, else a line per model)")
    ap.set_defaults(ranges=None)  # a column-role setting of --config files only
    for old, new in (("--data", "--input"), ("--format", "--events-format"),
                     ("--out", "--output")):
        ap.add_deprecated_alias(old, new)
    return ap


def config_from_args(args: argparse.Namespace) -> NetConfig:
    """The NetConfig of the command line, checked for impossible values."""
    names = [n for n in NetConfig.__dataclass_fields__ if n != "restore_best"]
    cfg = NetConfig(**{n: getattr(args, n) for n in names},
                    restore_best=not args.no_restore_best)
    check_threads(cfg.threads)
    repeated = next((s for s, n in Counter(args.seeds).items() if n > 1), None)
    checks = [
        (0 < cfg.lr < math.inf, f"--lr must be > 0 and finite, got {cfg.lr}"),
        (cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}"),
        (cfg.epochs >= 1, f"--epochs must be >= 1, got {cfg.epochs}"),
        (0 <= cfg.l2 < math.inf, f"--l2 must be a finite number >= 0, got {cfg.l2}"),
        (0 <= cfg.weight_decay < math.inf,
         f"--weight-decay must be a finite number >= 0, got {cfg.weight_decay}"),
        (0 <= cfg.momentum < 1, f"--momentum must be in [0, 1), got {cfg.momentum}"),
        (0 <= cfg.dropout < 1, f"--dropout must be in [0, 1), got {cfg.dropout}"),
        (cfg.patience >= 1, f"--patience must be >= 1, got {cfg.patience}"),
        (all(h >= 1 for h in cfg.hidden), f"--hidden widths must be >= 1, got {cfg.hidden}"),
        (all(h <= MAX_WIDTH for h in cfg.hidden),
         f"--hidden widths must be <= {MAX_WIDTH:,} (the widest layer), got {cfg.hidden}"),
        (len(cfg.hidden) <= MAX_HIDDEN_LAYERS,
         f"--hidden has {len(cfg.hidden)} layers; at most {MAX_HIDDEN_LAYERS} are allowed"),
        (args.tune >= 0, f"--tune must be >= 0, got {args.tune}"),
        (1 <= args.ensemble <= MAX_ENSEMBLE,
         f"--ensemble must be in [1, {MAX_ENSEMBLE}], got {args.ensemble}"),
        (args.ensemble >= len(args.ensemble_views),
         f"--ensemble-views gives {len(args.ensemble_views)} views; --ensemble must be at "
         f"least that (one network per view), got {args.ensemble}"),
        (args.importance_repeats >= 0,
         f"--importance-repeats must be >= 0, got {args.importance_repeats}"),
        (1 <= args.ple_bins <= MAX_PLE_BINS,
         f"--ple-bins must be in [1, {MAX_PLE_BINS}], got {args.ple_bins}"),
        (MIN_RANK_KNOTS <= args.rank_knots <= MAX_RANK_KNOTS,
         f"--rank-knots must be in [{MIN_RANK_KNOTS}, {MAX_RANK_KNOTS}], got {args.rank_knots}"),
        (len(args.seeds) >= 1, "--seeds needs at least one seed"),
        (all(0 <= s < 2**32 for s in args.seeds),
         f"--seeds must be integers in [0, 2**32), got {','.join(map(str, args.seeds))}"),
        (repeated is None, f"--seeds: {repeated} is listed twice (a repeated seed would "
         "count one run twice in the mean and std)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if args.ensemble_views:
        from features.views import check_views

        try:
            check_views(args.ensemble_views, args.numeric_encoding)
        except ValueError as exc:
            raise UsageError(f"--ensemble-views: {exc}") from None
    return cfg


def load_data(args: argparse.Namespace):
    """The TableData or EventData of the command line."""
    from features.datasets import EventData, TableData, resolve_schema

    if args.events is not None:
        from features.events import expand_paths

        if args.on_invalid != "error":
            raise UsageError("--on-invalid applies to --input tables (an event log has "
                             "--drop-invalid)")
        args.events = expand_paths(args.events)  # config.json lists the files read
        if args.scheduler is not None and args.engine != "dask":
            raise UsageError("--scheduler only applies to --engine dask")
        if args.engine == "dask":
            from features.dask_engine import require_dask

            try:
                require_dask()
            except ImportError as exc:
                raise UsageError(str(exc)) from None
        return EventData(args.events, args.events_format, args.horizon, args.cutoff,
                         args.drop_invalid, args.stride, args.min_history,
                         engine=args.engine, scheduler=args.scheduler,
                         numeric_encoding=args.numeric_encoding, ple_bins=args.ple_bins,
                         ple_binning=args.ple_binning, rank_knots=args.rank_knots)
    schema = resolve_schema(None, args.target, args.numeric, args.categorical,
                            args.id_column, args.ranges)
    hint = "" if args.config or args.numeric or args.categorical else (
        "; for a table other than the UCI one give --target, --numeric, --categorical "
        "or --config")
    data = TableData(args.input, schema, args.split, hint, args.dtype, args.on_invalid,
                     args.numeric_encoding, args.ple_bins, args.ple_binning, args.rank_knots)
    if args.on_invalid == "skip" and len(data.rejected.row):
        reasons = ", ".join(f"{why}: {n:,}" for why, n in data.rejected.counts().items())
        print(f"{program_name('train')}: --on-invalid skip: left out "
              f"{len(data.rejected.rows):,} of {len(data.rejected.rows) + len(data.frame):,} "
              f"data rows ({reasons})", file=sys.stderr)
    return data


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    cfg = config_from_args(args)
    data = load_data(args)
    options = RunOptions(
        tuple(args.seeds), args.tune, args.ensemble, tuple(args.ensemble_views), args.fuse,
        args.calibrate, args.importance_repeats, verbose=0 if args.quiet else 1,
        settings=config.resolved(build_parser(), args, FILE_ONLY),  # config.json
        command=" ".join(["python", "train.py", *sys.argv[1:]]))
    try:
        outcome = train_run(cfg, data, args.output, options, started)
    except RunDirError as exc:  # its message names the directory
        raise UsageError(f"--output {exc}" if args.output is not None else str(exc)) from None
    result, out, latest = outcome.metrics, outcome.out, outcome.latest
    with stdout_may_close():  # the run is written; `train.py | head` must not undo that
        print("\n".join(summary_lines(result)))
        print(f"run directory: {out}" + (f" (runs/latest: {latest})" if latest else ""))
        print(f"done in {result['seconds']:.1f} s", flush=True)
    return result


#: Options that one kind of data alone uses; given with the other kind they are refused.
EVENTS_ONLY = ("events_format", "horizon", "cutoff", "drop_invalid", "min_history", "stride",
               "engine", "scheduler")
TABLE_ONLY = ("input", "target", "numeric", "categorical", "id_column", "split",
              "preset")


def apply_preset(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Make the settings of ``--preset`` (on the command line, else in the ``--config``
    file) the parser's defaults, so that the file and the flags still override them."""
    first = argparse.ArgumentParser(add_help=False, allow_abbrev=parser.allow_abbrev)
    first.add_argument("--preset")
    first.add_argument("--config", type=Path)
    known, _ = first.parse_known_args(argv)
    name = known.preset
    if name is None and known.config is not None:
        try:
            name = config.read_file(known.config).get("preset")
        except (config.ConfigError, OSError):
            return  # config.parse_args reports the file's problem in one line
    if name in PRESETS:  # an unknown name is refused by the parser (choices)
        parser.set_defaults(**PRESETS[name])


def inapplicable(args: argparse.Namespace, given: set[str]) -> str | None:
    """Why options typed on the command line (``given``, their destinations) do not apply
    to this run, in one line; None when they all do."""
    def flags(dests) -> str:
        return ", ".join("--" + d.replace("_", "-") for d in dests)

    events = args.events is not None
    wrong = [d for d in (TABLE_ONLY if events else EVENTS_ONLY) if d in given]
    if wrong:
        verb = "applies" if len(wrong) == 1 else "apply"
        return (f"{flags(wrong)} {verb} to session tables (--input) only, not to --events"
                if events else f"{flags(wrong)} {verb} to event logs (--events) only")
    ple_flags = [d for d in ("ple_bins", "ple_binning") if d in given]
    if ple_flags and not NUMERIC_ENCODINGS[args.numeric_encoding].ple:
        verb = "applies" if len(ple_flags) == 1 else "apply"
        return (f"{flags(ple_flags)} {verb} to --numeric-encoding "
                f"{' or '.join(e for e, parts in NUMERIC_ENCODINGS.items() if parts.ple)} only")
    if "rank_knots" in given and not NUMERIC_ENCODINGS[args.numeric_encoding].rank:
        return ("--rank-knots applies to --numeric-encoding "
                f"{' or '.join(e for e, parts in NUMERIC_ENCODINGS.items() if parts.rank)} only")
    if args.fuse == "stack" and args.calibrate == "platt":
        return ("--calibrate platt after --fuse stack changes nothing: the stack is already a "
                "logistic regression fitted on dev's log-loss")
    if "momentum" in given and args.optimizer not in ("momentum", "nesterov"):
        return (f"--momentum applies to --optimizer momentum or nesterov only, not "
                f"{args.optimizer}")
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status: 0, 1 (bad data or model, an OS error,
    out of memory), 2 (a usage mistake), 130 (Ctrl-C) or 143 (SIGTERM). Every error is one
    line on stderr, and a failed run leaves no run directory."""
    parser = build_parser()
    apply_preset(parser, sys.argv[1:] if argv is None else argv)
    args = config.parse_args(parser, argv, {"ranges": _ranges})
    problem = inapplicable(args, options_given(parser, sys.argv[1:] if argv is None else argv))
    if problem:
        parser.error(problem)
    with sigterm_as_interrupt():
        return _run_main(args)


def _run_main(args: argparse.Namespace) -> int:
    from features.datasets import DatasetError
    from nn_core.backends import BackendUnavailableError

    source = ", ".join(map(str, args.events)) if args.events is not None else args.input
    return run_command("train", lambda: run(args), source=source,
                       nothing_written="no run directory written",
                       usage_errors=(DatasetError,),
                       data_errors=(FloatingPointError, BackendUnavailableError))


if __name__ == "__main__":
    sys.exit(main())
