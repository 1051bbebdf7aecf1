"""A training run as a run directory: what ``train.py`` does once its command line is read.

* :class:`RunOptions`: what a run does besides training one network (seeds, tuning,
  ensembles, fusion, calibration, importance, and what it records);
* :func:`train_run`: the whole run into a new run directory, built under a temporary name
  and renamed at the end (a failed run leaves nothing); :class:`RunResult`;
  :class:`RunDirError` when the directory cannot be created;
* :func:`write_run`: tune, train and evaluate per seed and write every file of a run
  directory into a folder; returns the content of ``metrics.json``;
* :func:`write_reproduction`: ``config.json``, ``splits.json``, ``test_predictions.csv``;
* :func:`drift_reference`: the training distributions a saved model is checked against
  (``drift_reference.json``);
* :func:`write_importance`: ``importance.csv`` and ``importance.png`` of one seed's models;
* :func:`data_name`: the data's short name in plot titles;
* :func:`summary_lines`: a run's report, as ``train.py`` prints it.

The data is a ``features.datasets`` source (:class:`~features.datasets.TableData` or
:class:`~features.datasets.EventData`); training, evaluation and tuning are
``nn_core.selection``'s. This module imports nothing from the command lines
(``propensity``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nn_core import precompile, selection
from nn_core.importance import DEFAULT_REPEATS
from nn_core.io import RunDir, atomic_write, describe_os_error, new_run_dir, point_latest
from nn_core.selection import NetConfig, SeedRun

from .views import view_columns

if TYPE_CHECKING:
    from nn_core.drift import Reference
    from nn_core.ensemble import Ensemble
    from nn_core.network import MLP
    from nn_core.preprocessing import Preprocessing

    from .datasets import EventData, Split, TableData


@dataclass(frozen=True)
class RunOptions:
    """What a training run does besides training one network (``train.py``'s flags of the
    same names; the network itself is a ``nn_core.selection.NetConfig``).

    Attributes
    ----------
    seeds : tuple of int
        One split and training per seed, each in [0, 2**32); the first seed's models are
        saved, and ``metrics.json`` adds the mean and standard deviation over several.
    tune : int
        Trials of the random search (``nn_core/selection.py: tune``) on the first seed's
        split, selected on dev, before training; its winner replaces the ``NetConfig``.
        0: none.
    ensemble : int
        Networks per seed whose logits are averaged, in [1, ``nn_core.ensemble.MAX_ENSEMBLE``].
    views : tuple of str
        Numeric encodings contained in the data's (``features/views.py``), at most
        ``ensemble``: member ``k`` is trained on the columns of view ``k mod V`` alone
        (``view_columns`` of each split's preprocessing) and saved with zero first-layer
        rows on the others; ``tune`` searches on view 0's columns. Empty: every member
        sees every column.
    fuse : {"none", "blend", "stack"}
        How the logistic regression joins the network(s) (``nn_core.ensemble.combine``).
    calibrate : {"none", "platt", "isotonic"}
        The calibration fitted on dev.
    importance_repeats : int
        Permutations per column of ``importance.csv`` / ``.png`` (0: neither is written).
    verbose : int
        0: silent; 1: "compiling kernels (first run only)" when Numba's cache lacks them,
        and progress per model, on stderr.
    settings : mapping or None
        The run's settings, written as ``config.json`` (``train.py``: every flag's value,
        ``propensity/config.py: resolved``, which ``train.py --config`` reads back).
        None: no ``config.json``.
    command : str or None
        ``metrics.json``'s ``"command"``: how the run was started. None: left out.
    """

    seeds: tuple[int, ...] = (0,)
    tune: int = 0
    ensemble: int = 1
    views: tuple[str, ...] = ()
    fuse: str = "none"
    calibrate: str = "none"
    importance_repeats: int = DEFAULT_REPEATS
    verbose: int = 0
    settings: Mapping[str, object] | None = None
    command: str | None = None


class RunDirError(OSError):
    """The run directory cannot be created (exists and is not empty, is being written by
    another run, or its folder cannot be made); the message names it and says why."""


@dataclass(frozen=True)
class RunResult:
    """What :func:`train_run` did.

    Attributes
    ----------
    metrics : dict
        The content of ``metrics.json`` (:func:`write_run`).
    out : Path
        The run directory.
    latest : str or None
        How ``latest`` beside a default run directory now points at it
        (``nn_core/io.py: point_latest``); None when ``output`` was given.
    """

    metrics: dict
    out: Path
    latest: str | None


def train_run(cfg: NetConfig, data: TableData | EventData,
              output: str | os.PathLike | None = None, options: RunOptions = RunOptions(),
              started: float | None = None) -> RunResult:
    """Train, evaluate and save a whole run into a new run directory, all or nothing.

    The directory is reserved at the start (``nn_core/io.py: new_run_dir``: of several
    runs given the same ``output`` only one proceeds), the files are written into a
    temporary sibling (:func:`write_run`) and renamed onto it at the end; whatever fails
    (an error, Ctrl-C) removes the temporary directory, so nothing is left.

    Parameters
    ----------
    cfg : NetConfig
        The network's settings.
    data : TableData or EventData
        The data source (``features.datasets``).
    output : path-like, optional
        The run directory: new, or an empty directory. None: ``runs/<timestamp>/`` in the
        working directory, and ``runs/latest`` then points at it.
    options : RunOptions
        Seeds, tuning, combination, importance, what the run records.
    started : float, optional
        ``time.perf_counter()`` when the run began (default: now).

    Returns
    -------
    RunResult
        The metrics, the run directory and how ``latest`` points at it.

    Raises
    ------
    RunDirError
        When the run directory cannot be created; nothing is trained.
    OSError
        When a file cannot be written (named under ``output``, not under the temporary
        directory); nothing is left.
    """
    started = time.perf_counter() if started is None else started
    output = None if output is None else Path(output)
    try:
        run_dir = new_run_dir(output)
    except OSError as exc:
        if isinstance(exc, FileExistsError) and output is not None and (
                output.is_symlink() or (output.exists() and not output.is_dir())):
            what = ("a symbolic link (a run directory must be new or an empty directory, "
                    "not a link)" if output.is_symlink() else "a file, not a directory (a run "
                    "directory must be new or an empty directory)")
            raise RunDirError(f"{output}: is {what}") from None
        if isinstance(exc, FileExistsError) and exc.filename is None:
            raise RunDirError(str(exc)) from None  # new_run_dir's message names it
        problem = describe_os_error(exc)
        if exc.filename is not None and os.path.lexists(exc.filename) \
                and not os.path.isdir(exc.filename):
            problem = f"{exc.filename} exists and is not a directory"
        where = output if output is not None else "run directory runs/<timestamp>"
        raise RunDirError(f"{where}: cannot create it: {problem}") from None
    try:
        metrics = write_run(run_dir.tmp, cfg, data, options, started)
    except OSError as exc:
        run_dir.discard()
        if exc.filename is None:
            raise
        raise _in_out(exc, run_dir) from None
    except BaseException:
        run_dir.discard()
        raise
    run_dir.commit()
    latest = point_latest(run_dir.out) if run_dir.default else None
    return RunResult(metrics, run_dir.out, latest)


def _in_out(exc: OSError, run_dir: RunDir) -> OSError:
    """``exc`` naming the file under the run directory the user asked for, not under the
    temporary directory that no longer exists."""
    name = exc.filename
    if name is not None and Path(name).is_relative_to(run_dir.tmp):
        name = str(run_dir.out / Path(name).relative_to(run_dir.tmp))
    return OSError(exc.errno, exc.strerror, name)


def write_run(folder: Path, cfg: NetConfig, data: TableData | EventData,
              options: RunOptions = RunOptions(), started: float | None = None) -> dict:
    """Tune, train and evaluate per seed; write every file of a run directory into ``folder``.

    The files (docs/architecture.md, "The run directory"): the first seed's model
    (``model.json``, ``weights.npz``, ``preprocess.json``, ``drift_reference.json``) and
    baseline (``baseline/``), both with the F1 threshold chosen on dev; ``history.csv``;
    :func:`write_reproduction`'s files; the plots (``nn_core/selection.py: write_plots``);
    :func:`write_importance`'s; ``tune_trials.csv`` with ``options.tune``; and, last,
    ``metrics.json``. Each file is written atomically, but not the folder as a whole:
    :func:`train_run` builds a run directory under a temporary name.

    Parameters
    ----------
    folder : Path
        An existing folder.
    cfg : NetConfig
        The network's settings (the baseline's are ``nn_core.selection.BASELINE``).
    data : TableData or EventData
        The data source (``features.datasets``): ``data.split(seed)`` per seed.
    options : RunOptions
        Seeds, tuning, combination, importance, and what the run records.
    started : float, optional
        ``time.perf_counter()`` when the run began (``metrics.json``'s ``"seconds"``
        counts from it; default: now).

    Returns
    -------
    dict
        The content of ``metrics.json``: ``{"model": {"dev": {...}, "test": {...}},
        "baseline": {...}}`` of the first seed, ``"mean"``, ``"std"`` and ``"runs"`` over
        several seeds, then the seeds, settings, data, combination, file names, time.
    """
    started = time.perf_counter() if started is None else started
    result = _train_all(folder, cfg, data, options)
    result["seconds"] = round(time.perf_counter() - started, 2)
    atomic_write(folder / "metrics.json",
                 json.dumps(selection.jsonable(result), indent=2) + "\n")
    return result


def _split(data: TableData | EventData, seed: int) -> Split:
    """``data.split(seed)``, with a ``ValueError`` of fitting the preprocessing on the
    training rows (``features.tabular.Preprocessor.fit``: a column too large to standardise,
    one with no value to impute from), which names the column but cannot name the file, as
    a :class:`~features.tabular.DataError` naming the data's file(s)."""
    from .datasets import DatasetError
    from .tabular import DataError

    try:
        return data.split(seed)
    except (DataError, DatasetError):  # they name the file already
        raise
    except ValueError as exc:
        raise DataError(data.info["path"], str(exc)) from None


def _train_all(tmp: Path, cfg: NetConfig, data: TableData | EventData,
               options: RunOptions) -> dict:
    """:func:`write_run` but ``metrics.json``: its content, without ``"seconds"``."""
    from nn_core import save_model
    seeds, verbose = tuple(options.seeds), options.verbose
    base_cfg, trials = selection.baseline_config(cfg), None
    if verbose and cfg.backend == "numba":
        from nn_core.training import kernels_cached

        answers = [kernels_cached(c.dtype, c.batch_size, c.threads, c.activation,
                                  c.optimizer, c.dropout > 0) for c in (cfg, base_cfg)]
        cached = None if None in answers else all(answers)
        if not cached:
            print("compiling kernels (first run only)" if cached is False
                  else "compiling or loading kernels", file=sys.stderr, flush=True)
    if cfg.backend == "numba":  # from an empty cache, prediction compiles in a child process
        # (and then the one-hot kernel predict.py will score the saved model with)
        precompile.start(cfg.dtype, {cfg.activation, base_cfg.activation}, [cfg.activation])
    if options.tune:
        tuning = _split(data, seeds[0])
        X = tuning.X
        if options.views:
            cols = view_columns(tuning.pre, options.views[0])
            X = {part: X[part][:, cols] for part in ("train", "dev")}
        cfg, trials = selection.tune(cfg, X, tuning.y, seeds[0], options.tune, verbose)
        atomic_write(tmp / "tune_trials.csv", selection.csv_text(trials))
    runs, split, ids = [], None, []  # split: the first seed's (its models are saved)
    for seed in seeds:
        s = _split(data, seed)
        split = s if split is None else split
        ids.append((s.id_name, s.ids, s.y["test"]))
        column_sets = [view_columns(s.pre, view) for view in options.views]
        runs.append(selection.train_and_evaluate(cfg, base_cfg, s.X, s.y, s.baseline_X, seed,
                                                  verbose, options.ensemble, options.fuse,
                                                  options.calibrate, column_sets))
    r = runs[0]
    # each with the F1 threshold chosen on dev (predict.py's label column)
    save_model(tmp, r.model, split.pre, threshold=r.metrics["dev"]["threshold"],
               reference=drift_reference(r.model, split.pre, split, split.X))
    save_model(tmp / "baseline", r.baseline, split.baseline_pre,
               threshold=r.baseline_metrics["dev"]["threshold"],
               reference=drift_reference(r.baseline, split.baseline_pre, split,
                                         split.baseline_X))
    rows = [row for s in runs for row in s.history_rows()]
    atomic_write(tmp / "history.csv", selection.csv_text(rows))
    write_reproduction(tmp, options.settings, data, seeds, ids, runs)
    caption = f"{data_name(data.info)}, seed {seeds[0]}"
    files = selection.write_plots(tmp, r.history, r.best_epoch, r.baseline_history,
                                  split.y["test"], r.p_model["test"], r.p_baseline["test"],
                                  cfg.monitor, caption)
    if options.importance_repeats:
        files += write_importance(tmp, r, split, options.importance_repeats, seeds[0],
                                  cfg.threads, caption)
    result: dict = {"model": r.metrics, "baseline": r.baseline_metrics}
    if len(seeds) > 1:
        result["mean"], result["std"] = selection.summarise([s.summary() for s in runs])
        result["runs"] = [s.summary() for s in runs]
    result.update({
        "seeds": list(seeds),
        "saved_seed": seeds[0],
        "best_epoch": r.best_epoch,
        "config": {**asdict(cfg), "hidden": list(cfg.hidden),
                   "pos_weight_value": cfg.resolved_pos_weight(split.y["train"])},
        "baseline_config": {**asdict(base_cfg), "hidden": []},
        "data": {**data.info, "split_sizes": {k: len(v) for k, v in split.y.items()}},
        "n_features": int(split.X["train"].shape[1]),
        "combination": {"ensemble": options.ensemble, "views": list(options.views),
                        "view_features": [len(view_columns(split.pre, v))
                                          for v in options.views],
                        "fuse": options.fuse,
                        "calibrate": options.calibrate,
                        "chosen": [s.combination for s in runs]},  # per seed
        "files": ["model.json", "weights.npz", "preprocess.json", "baseline/", "history.csv",
                  *(["config.json"] if options.settings is not None else []),
                  "splits.json", "test_predictions.csv",
                  *files, *(["tune_trials.csv"] if trials else [])],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **({"command": options.command} if options.command is not None else {}),
    })
    if trials:
        result["tune"] = {"n_trials": len(trials),
                          "selected": next(t for t in trials if t["selected"])}
    precompile.wait_all()  # the one-hot kernel cached before train.py exits (mostly done)
    return result


def write_reproduction(folder: Path, settings: Mapping[str, object] | None,
                       data: TableData | EventData, seeds: Sequence[int],
                       ids: Sequence[tuple[str, Mapping[str, np.ndarray], np.ndarray]],
                       runs: Sequence[SeedRun]) -> None:
    """Write the files that let a run be checked and repeated.

    Parameters
    ----------
    folder : Path
        Where they go.
    settings : mapping or None
        Written as ``config.json`` (every setting; ``train.py --config`` it to repeat the
        run); None: not written.
    data : TableData or EventData
        The data source: ``splits.json`` names its file (absolute for a table) and, for an
        event log, its cutoffs and horizon.
    seeds : sequence of int
        The run's seeds, in order.
    ids : sequence of (str, dict, ndarray)
        Per seed ``(split.id_name, split.ids, split.y["test"])``: what each row of
        ``"train"``, ``"dev"`` and ``"test"`` is (a 0-based data row of the table, or a
        user id), and the test labels.
    runs : sequence of SeedRun
        Per seed, the test probabilities of the model and the baseline.

    Notes
    -----
    ``splits.json``: per seed the 0-based data rows of train, dev and test; for an event
    log the snapshot cutoffs, the same for every seed. ``test_predictions.csv``: per seed
    and test row: row or user id, label, the MLP's and the baseline's probability.
    """
    if settings is not None:
        atomic_write(folder / "config.json", json.dumps(settings, indent=2) + "\n")
    if data.info["kind"] == "table":
        splits = {"kind": "table", "path": str(Path(data.info["path"]).absolute()),
                  "rows": "0-based data rows of the file (the header is not a row)",
                  "seeds": {str(seed): {k: v.tolist() for k, v in part.items()}
                            for seed, (_, part, _) in zip(seeds, ids, strict=True)}}
    else:
        splits = {"kind": "events", "path": data.info["path"], "seeds": list(seeds),
                  "note": "time-based snapshots, the same for every seed: the users active "
                  "before each cutoff, labelled by a purchase within the horizon after it",
                  "horizon": data.info["splits"]["horizon"],
                  "cutoffs": data.info["splits"]["cutoffs"]}
    atomic_write(folder / "splits.json", json.dumps(selection.jsonable(splits)) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["seed", ids[0][0], "label", "probability", "baseline_probability"])
    for seed, (_, part, y), r in zip(seeds, ids, runs, strict=True):
        writer.writerows(zip([seed] * len(y), part["test"].tolist(), y.tolist(),
                             r.p_model["test"].tolist(), r.p_baseline["test"].tolist(),
                             strict=True))
    atomic_write(folder / "test_predictions.csv", buf.getvalue())


def drift_reference(model: MLP | Ensemble, pre: Preprocessing, split: Split,
                    X: Mapping[str, np.ndarray]) -> Reference:
    """The training distributions of a saved model's raw inputs and of its scores.

    Parameters
    ----------
    model : MLP or Ensemble
        The model saved with ``pre``.
    pre : Preprocessing
        Its fitted preprocessing (``split.pre``, or ``split.baseline_pre`` for the baseline).
    split : Split
        The split it was trained on: ``split.train_frame`` holds the raw training rows.
    X : mapping
        ``X["train"]``: the model's feature matrix (n, d) of those rows.

    Returns
    -------
    Reference
        For ``drift_reference.json`` (``nn_core/drift.py: fit_reference``): per raw column
        of ``split.train_frame`` and for the scores ``p = Predictor.proba(X["train"])``
        (what ``predict.py`` would score), the distribution ``predict.py``'s drift check
        compares new data with.
    """
    from nn_core.drift import fit_reference
    from nn_core.modeldir import Predictor

    scores = Predictor(model, pre, Path()).proba(X["train"])  # what predict.py would score
    return fit_reference(pre.columns, pre.inputs(split.train_frame), scores)


def write_importance(folder: Path, run: SeedRun, split: Split, repeats: int, seed: int,
                     threads: int | None, caption: str) -> list[str]:
    """Write ``importance.csv`` and ``importance.png`` for one seed's network and baseline.

    The permutation importance on dev of each raw column
    (``nn_core/importance.py: permutation_importance``: the drop of dev ROC-AUC when the
    column's features are shuffled, ``repeats`` permutations seeded with ``seed``).

    Parameters
    ----------
    folder : Path
        Where the two files go.
    run : SeedRun
        The seed's trained models (``run.model``, ``run.baseline``).
    split : Split
        That seed's split: the dev rows of both models' feature matrices.
    repeats : int
        Permutations per column (>= 1).
    seed : int
        Seed of the permutations.
    threads : int or None
        Numba threads of the scoring (None: all).
    caption : str
        The end of the plot's title, e.g. ``"data.csv, seed 0"``.

    Returns
    -------
    list of str
        The names of the files written: ``importance.csv`` (columns ``model, column,
        mean_drop, std_drop, rank``; ``model`` is ``mlp`` or ``baseline``) and
        ``importance.png``.
    """
    from nn_core import plots
    from nn_core.importance import permutation_importance

    results = {}
    for label, model, X, pre in (("MLP", run.model, split.X, split.pre),
                                 ("logistic regression", run.baseline, split.baseline_X,
                                  split.baseline_pre)):
        results[label] = permutation_importance(
            lambda X_, m=model: m.predict_proba(X_, threads=threads), X["dev"],
            split.y["dev"], pre.column_slices(), repeats, seed)
    rows = [row for key, imp in zip(("mlp", "baseline"), results.values(), strict=True)
            for row in imp.rows(key)]
    atomic_write(folder / "importance.csv", selection.csv_text(rows))
    plots.plot_importance({label: (imp.columns, imp.mean, imp.std)
                           for label, imp in results.items()}, folder / "importance.png",
                          title=f"Permutation importance, dev ({caption})")
    return ["importance.csv", "importance.png"]


def data_name(info: Mapping) -> str:
    """The data's short name for plot titles.

    Parameters
    ----------
    info : mapping
        The data source's ``info`` (``TableData.info``, ``EventData.info``).

    Returns
    -------
    str
        The file's name (for several event logs, the first file's and how many more), at
        most 40 characters.
    """
    paths = info["path"].split(", ") if info["kind"] == "events" else [info["path"]]
    name = Path(paths[0]).name + (f" +{len(paths) - 1} files" if len(paths) > 1 else "")
    return name if len(name) <= 40 else name[:39] + "…"


#: The metrics printed on stdout (metrics.json has them all); the widest line of the
#: summary, a test checks it.
SUMMARY_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "f1", "lift_at_10", "ece")
SUMMARY_WIDTH = 100


def summary_lines(result: Mapping) -> list[str]:
    """A run's report in a few lines: what ``train.py`` prints on stdout.

    Parameters
    ----------
    result : mapping
        A run's ``metrics.json`` content (:func:`write_run`, ``RunResult.metrics``).

    Returns
    -------
    list of str
        The tuning winner (``RunOptions.tune``), dev metrics, then test metrics
        (:data:`SUMMARY_METRICS`; mean and, below it, ± the standard deviation over several
        seeds) of the MLP and the baseline, what the MLP row combines
        (:func:`combination_lines`), then both models' settings; no line wider than
        :data:`SUMMARY_WIDTH`.
    """
    seeds = result["seeds"]
    multi = len(seeds) > 1
    src = result["mean"] if multi else result
    shown = ",".join(map(str, seeds)) if len(seeds) <= 8 else \
        f"{seeds[0]},{seeds[1]},...,{seeds[-1]} ({len(seeds)} seeds)"
    over = f"mean ± std over seeds {shown}" if multi else f"seed {seeds[0]}"

    def wrap(text: str) -> list[str]:
        return textwrap.wrap(text, SUMMARY_WIDTH, subsequent_indent="    ",
                             break_on_hyphens=False)

    lines = []
    if "tune" in result:
        won, n = result["tune"]["selected"], result["tune"]["n_trials"]
        monitor = result["config"]["monitor"]
        score = won["dev_roc_auc"] if monitor == "roc_auc" else won["dev_loss"]
        which = ", the command line's settings," if won["trial"] == 0 else ""
        lines += wrap(f"tune: trial {won['trial']} (of 0-{n - 1}){which} won on seed "
                      f"{seeds[0]}'s dev {monitor} {score:.4f}; its settings are the MLP's "
                      "below; every trial is in tune_trials.csv")
    for part in ("dev", "test"):
        lines.append(f"{part} metrics ({over})")
        lines.append(f"{'':21s}" + "".join(f"{k:>11s}" for k in SUMMARY_METRICS))
        for name, label in (("model", "MLP"), ("baseline", "logistic regression")):
            lines.append(f"{label:21s}" + "".join(f"{src[name][part][k]:11.4f}"
                                                  for k in SUMMARY_METRICS))
            if multi:
                lines.append(f"{'':21s}" + "".join(
                    f"{'±' + format(result['std'][name][part][k], '.4f'):>11s}"
                    for k in SUMMARY_METRICS))
    lines += combination_lines(result, src)
    fields = NetConfig.__dataclass_fields__
    cfg, base = (NetConfig(**{k: tuple(v) if k == "hidden" else v
                              for k, v in result[key].items() if k in fields})
                 for key in ("config", "baseline_config"))
    lines += wrap(f"MLP: {selection.describe_config(cfg)}")
    lines += wrap(f"logistic regression (fixed, docs/results.md): "
                  f"{selection.describe_config(base).removeprefix('no hidden layer, ')}")
    return lines


def combination_lines(result: Mapping, src: Mapping) -> list[str]:
    """The summary's lines on ``--ensemble``, ``--ensemble-views``, ``--fuse`` and
    ``--calibrate`` (none without them): what the "MLP" row is, and the ECE before and after
    calibration.

    Parameters
    ----------
    result : mapping
        A run's ``metrics.json`` content.
    src : mapping
        Where the metrics shown are: ``result`` for one seed, ``result["mean"]`` for several.

    Returns
    -------
    list of str
        Lines no wider than :data:`SUMMARY_WIDTH`.
    """
    c = result["combination"]
    lines = []
    views = c.get("views", [])
    on = (f" on {len(views)} views of the features ({', '.join(views)}; network k on view "
          f"k mod {len(views)})" if views else "")
    parts = ([f"{c['ensemble']} networks{on}, logits averaged"] if c["ensemble"] > 1
             else [f"the network on view {views[0]} of the features"] if views else [])
    if c["fuse"] == "blend":
        alphas = ", ".join(f"{r['blend_alpha']:g}" for r in c["chosen"])
        parts.append(f"blended with the logistic regression, weight {alphas} (per seed, "
                     "chosen on dev)")
    elif c["fuse"] == "stack":
        parts.append("stacked with the logistic regression (fitted on dev)")
    if c["calibrate"] != "none":
        parts.append(f"{c['calibrate']} calibration fitted on dev")
    if parts:
        lines.append("MLP row: " + "; ".join(parts))
    if c["calibrate"] != "none":
        lines.append("ECE before -> after calibration: " + ", ".join(
            f"{part} {src['model'][part]['ece_uncalibrated']:.4f} -> "
            f"{src['model'][part]['ece']:.4f}" for part in ("dev", "test")))
    return [short for line in lines
            for short in textwrap.wrap(line, SUMMARY_WIDTH, subsequent_indent="    ")]
