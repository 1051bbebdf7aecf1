"""Train the purchase-propensity MLP and a logistic-regression baseline; write a run directory.

Default: the bundled UCI online-shoppers table (``data/online_shoppers_intention.csv``),
a seeded stratified 70/15/15 train/dev/test split, early stopping on dev ROC-AUC, and a run
directory ``runs/<timestamp>/`` (``runs/latest`` points at it) holding

- the model: ``model.json`` + ``weights.npz`` (``MLP.save``) + ``preprocess.json``, so
  ``python predict.py --model runs/latest ...`` works; the baseline model in ``baseline/``;
- ``metrics.json``: ``{"model": {"dev": {...}, "test": {...}}, "baseline": {...}, ...}`` and,
  with several seeds, ``"runs"``, ``"mean"`` and ``"std"`` (sample standard deviation) of
  the same shape; top-level ``model``/``baseline`` are the first seed's (the saved model);
- ``history.csv``: per epoch the training objective, train and dev log-loss and dev ROC-AUC,
  per seed and model;
- ``loss_curves.png``, ``roc.png``, ``pr.png``, ``reliability.png``, ``gains.png`` (test set,
  first seed); ``tune_trials.csv`` with ``--tune``.

Other session tables: ``--data FILE --target COL --numeric a,b --categorical c,d`` or a JSON
``--config``. Event logs: ``--events FILE --format taobao --horizon 1d`` (time-based splits
from ``features.events.load_event_splits``).

The run directory is built under a temporary name and renamed at the end: an interrupted or
failed run leaves no partial output.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent
DEFAULT_DATA = REPO / "data" / "online_shoppers_intention.csv"
MONITORS = ("roc_auc", "loss")

# Random-search space of --tune (log-uniform for the rates, choices for the rest).
TUNE_HIDDEN = ((16,), (32,), (64,), (128,), (32, 32), (64, 32), (64, 64), (128, 64))
TUNE_LR = (3e-4, 3e-3)
TUNE_L2 = (1e-5, 1e-2)
TUNE_BATCH = (32, 64, 128, 256)
TUNE_DROPOUT = (0.0, 0.1, 0.2, 0.3)


class UsageError(ValueError):
    """A command-line mistake; reported as one line, exit status 2."""


@dataclass(frozen=True)
class NetConfig:
    """Architecture and training hyper-parameters of one network."""

    hidden: tuple[int, ...] = (64,)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 200
    l2: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    dropout: float = 0.0
    pos_weight: str = "1"  # a number, or "auto" = n_negative / n_positive on train
    schedule: str = "constant"
    monitor: str = "roc_auc"
    patience: int = 10
    restore_best: bool = True
    dtype: str = "float32"
    backend: str = "numba"
    threads: int | None = None

    def resolved_pos_weight(self, y_train: np.ndarray) -> float:
        if self.pos_weight == "auto":
            n1 = int(y_train.sum())
            return (len(y_train) - n1) / n1
        return float(self.pos_weight)


# --------------------------------------------------------------------------- arguments


def _int_list(text: str) -> tuple[int, ...]:
    text = text.strip()
    if text in ("", "none", "()"):
        return ()
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    return values


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _pos_weight(text: str) -> str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"pos-weight must be > 0, got {text!r}")
    return text


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 0.7,0.15,0.15, got {text!r}") from None
    if len(values) != 3 or min(values) <= 0 or abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError("--split needs 3 positive fractions summing to 1")
    return values


def build_parser() -> argparse.ArgumentParser:
    d = NetConfig()
    ap = argparse.ArgumentParser(
        description="Train the purchase-propensity MLP (and a logistic-regression baseline).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = ap.add_argument_group("data (session table)")
    data.add_argument("--data", type=Path, default=DEFAULT_DATA, help="session-table CSV")
    data.add_argument("--config", type=Path, help="JSON file with target/numeric/categorical/"
                      "id_column/ranges (flags below override it)")
    data.add_argument("--target", help="0/1 (or TRUE/FALSE) target column [UCI: Revenue]")
    data.add_argument("--numeric", type=_name_list, help="comma-separated numeric columns")
    data.add_argument("--categorical", type=_name_list, help="comma-separated categorical columns")
    data.add_argument("--id-column", help="row id column (kept out of the features)")
    ev = ap.add_argument_group("data (event log)")
    ev.add_argument("--events", type=Path, help="event-log CSV (instead of --data)")
    ev.add_argument("--format", choices=("taobao", "rees46", "canonical"), default="canonical")
    ev.add_argument("--horizon", default="1d", help="label window after each cutoff")
    ev.add_argument("--cutoff", help="ISO time of the test cutoff (default: log end - horizon)")
    ev.add_argument("--drop-invalid", action="store_true", help="drop and count invalid events")
    sp = ap.add_argument_group("split and seeds")
    sp.add_argument("--seeds", type=_int_list, default=(0,), help="e.g. 0,1,2,3,4: repeat "
                    "split + training per seed, report mean and std")
    sp.add_argument("--split", type=_fractions, default=(0.7, 0.15, 0.15), help="train,dev,test")
    hp = ap.add_argument_group("network and training")
    hp.add_argument("--hidden", type=_int_list, default=d.hidden, help="hidden widths, e.g. "
                    "64,32 ('none' = logistic regression)")
    hp.add_argument("--activation", default=d.activation,
                    choices=("relu", "leaky_relu", "tanh", "sigmoid"))
    hp.add_argument("--optimizer", default=d.optimizer,
                    choices=("adam", "sgd", "momentum", "nesterov"))
    hp.add_argument("--lr", type=float, default=d.lr)
    hp.add_argument("--momentum", type=float, default=d.momentum,
                    help="mu of the momentum and nesterov optimizers")
    hp.add_argument("--batch-size", type=int, default=d.batch_size)
    hp.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs")
    hp.add_argument("--l2", type=float, default=d.l2, help="L2 penalty (l2/2)*sum ||W||^2")
    hp.add_argument("--weight-decay", type=float, default=d.weight_decay, help="decoupled decay")
    hp.add_argument("--dropout", type=float, default=d.dropout, help="hidden-unit dropout")
    hp.add_argument("--pos-weight", type=_pos_weight, default=d.pos_weight,
                    help="loss weight of positives: a number or auto (= n_neg / n_pos)")
    hp.add_argument("--schedule", default=d.schedule, choices=("constant", "step", "cosine"))
    hp.add_argument("--monitor", default=d.monitor, choices=MONITORS,
                    help="early stopping on dev ROC-AUC or dev log-loss")
    hp.add_argument("--patience", type=int, default=d.patience,
                    help="stop after this many epochs without dev improvement")
    hp.add_argument("--no-restore-best", action="store_true",
                    help="keep the last epoch's weights instead of the best dev epoch's")
    hp.add_argument("--dtype", default=d.dtype, choices=("float32", "float64"))
    hp.add_argument("--backend", default=d.backend, choices=("numba", "numpy", "cupy"))
    hp.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    hp.add_argument("--tune", type=int, default=0, metavar="N",
                    help="random search of N trials (architecture, lr, L2, batch, dropout), "
                    "selected on dev of the first seed's split")
    out = ap.add_argument_group("output")
    out.add_argument("--out", type=Path, help="run directory (default runs/<timestamp>/, "
                     "and runs/latest then points at it)")
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def config_from_args(args: argparse.Namespace) -> NetConfig:
    """The NetConfig of the command line, checked for impossible values."""
    cfg = NetConfig(
        hidden=args.hidden,
        activation=args.activation,
        optimizer=args.optimizer,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        l2=args.l2,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        dropout=args.dropout,
        pos_weight=args.pos_weight,
        schedule=args.schedule,
        monitor=args.monitor,
        patience=args.patience,
        restore_best=not args.no_restore_best,
        dtype=args.dtype,
        backend=args.backend,
        threads=args.threads,
    )
    checks = [
        (cfg.lr > 0 and math.isfinite(cfg.lr), f"--lr must be > 0, got {cfg.lr}"),
        (cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}"),
        (cfg.epochs >= 1, f"--epochs must be >= 1, got {cfg.epochs}"),
        (cfg.l2 >= 0, f"--l2 must be >= 0, got {cfg.l2}"),
        (cfg.weight_decay >= 0, f"--weight-decay must be >= 0, got {cfg.weight_decay}"),
        (0 <= cfg.momentum < 1, f"--momentum must be in [0, 1), got {cfg.momentum}"),
        (0 <= cfg.dropout < 1, f"--dropout must be in [0, 1), got {cfg.dropout}"),
        (cfg.patience >= 1, f"--patience must be >= 1, got {cfg.patience}"),
        (all(h >= 1 for h in cfg.hidden), f"--hidden widths must be >= 1, got {cfg.hidden}"),
        (cfg.threads is None or cfg.threads >= 1, "--threads must be >= 1"),
        (args.tune >= 0, "--tune must be >= 0"),
        (len(args.seeds) >= 1, "--seeds needs at least one seed"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    return cfg


# --------------------------------------------------------------------------- data


@dataclass
class Split:
    """Feature matrices and labels of one train/dev/test split."""

    X: dict[str, np.ndarray]  # "train"/"dev"/"test" -> (n, d)
    y: dict[str, np.ndarray]  # "train"/"dev"/"test" -> (n,)
    pre: object  # the fitted Preprocessor of the network
    baseline_X: dict[str, np.ndarray]
    baseline_pre: object


def resolve_schema(args: argparse.Namespace):
    """Column roles: UCI defaults, overridden by --config, overridden by flags."""
    from features.tabular import Schema, schema_from_config

    uci = Schema.uci()
    roles = {
        "target": uci.target,
        "numeric": uci.numeric,
        "categorical": uci.categorical,
        "id_column": None,
        "ranges": dict(uci.ranges),
    }
    custom = {}
    if args.config is not None:
        custom.update(schema_from_config(args.config))
    for key in ("target", "numeric", "categorical", "id_column"):
        value = getattr(args, key)
        if value is not None:
            custom[key] = value
    if "numeric" in custom or "categorical" in custom:
        # Other roles: the UCI columns and ranges no longer apply.
        roles.update(numeric=(), categorical=(), ranges={})
    roles.update(custom)
    try:
        return Schema(**roles)
    except ValueError as exc:
        raise UsageError(f"column roles: {exc}") from None


class TableData:
    """A validated session table; ``split(seed)`` gives the preprocessed split."""

    def __init__(self, args: argparse.Namespace) -> None:
        from features.tabular import Schema, load_table

        self.schema: Schema = resolve_schema(args)
        hint = "" if args.config or args.numeric or args.categorical else (
            "; for a table other than the UCI one give --target, --numeric, --categorical "
            "or --config"
        )
        self.frame = load_table(args.data, self.schema, with_target=True, hint=hint)
        self.y = self.frame[self.schema.target].to_numpy(dtype=np.int8)
        self.fractions = args.split
        self.info = {
            "kind": "table",
            "path": str(args.data),
            "rows": len(self.frame),
            "positive_rate": float(self.y.mean()),
            "target": self.schema.target,
            "numeric": list(self.schema.numeric),
            "categorical": list(self.schema.categorical),
        }

    def split(self, seed: int) -> Split:
        from features.tabular import Preprocessor, stratified_split

        parts = dict(zip(("train", "dev", "test"), stratified_split(self.y, seed, self.fractions),
                         strict=True))
        for name, rows in parts.items():
            n1 = int(self.y[rows].sum())
            if n1 == 0 or n1 == len(rows):
                raise UsageError(
                    f"{self.info['path']}: the {name} part of the split has {n1} buyers among "
                    f"{len(rows)} rows; it needs both classes (more data or other --split)"
                )
        pre = Preprocessor(
            self.schema.numeric,
            self.schema.categorical,
            target=self.schema.target,
            id_column=self.schema.id_column,
        ).fit(self.frame.iloc[parts["train"]])
        X = {k: pre.transform(self.frame.iloc[rows]) for k, rows in parts.items()}
        y = {k: self.y[rows] for k, rows in parts.items()}
        return Split(X, y, pre, X, pre)


class EventData:
    """Time-based splits of an event log (the same for every seed)."""

    def __init__(self, args: argparse.Namespace) -> None:
        import features.events as events  # lazy: table mode must not need it

        splits = events.load_event_splits(
            args.events,
            format=args.format,
            horizon=args.horizon,
            cutoff=args.cutoff,
            drop_invalid=args.drop_invalid,
        )
        self.frames = {"train": splits.train, "dev": splits.dev, "test": splits.test}
        self.baseline_columns = list(splits.baseline_columns)
        self.source = {"kind": "events", "format": args.format, "horizon": args.horizon}
        for name, (_, y) in self.frames.items():
            if len(y) == 0 or y.nunique() < 2:
                raise UsageError(
                    f"{args.events}: the {name} snapshot needs buyers and non-buyers "
                    f"(got {int(y.sum())} of {len(y)} users buying); try another --horizon"
                )
        self.info = {"kind": "events", **self.source, "path": str(args.events),
                     "splits": _jsonable(splits.info)}
        self._split: Split | None = None

    def split(self, seed: int) -> Split:
        del seed  # the split is fixed by time; seeds only change initialisation and order
        if self._split is None:
            from features.tabular import Preprocessor

            columns = list(self.frames["train"][0].columns)
            pre = Preprocessor(columns, [], target="label", id_column="user_id",
                               source=self.source)
            pre.fit(self.frames["train"][0])
            base = Preprocessor(self.baseline_columns, [], target="label", id_column="user_id",
                                source=self.source)
            base.fit(self.frames["train"][0])
            X = {k: pre.transform(f[0]) for k, f in self.frames.items()}
            Xb = {k: base.transform(f[0]) for k, f in self.frames.items()}
            y = {k: f[1].to_numpy(dtype=np.int8) for k, f in self.frames.items()}
            self._split = Split(X, y, pre, Xb, base)
        return self._split


def _jsonable(obj):
    """Convert NumPy / pandas scalars and timestamps inside ``obj`` to JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


# --------------------------------------------------------------------------- training


def train_network(cfg: NetConfig, X: dict, y: dict, seed: int, label: str, quiet: bool,
                  leave: bool = True):
    """Train one network with early stopping on dev.

    After each epoch the callback scores dev, records ``(train_loss, dev_loss, dev_auc)``
    and remembers the weights of the best dev epoch (highest ROC-AUC or lowest log-loss);
    training stops after ``patience`` epochs without improvement and, with
    ``restore_best``, the best weights are put back.

    Returns
    -------
    model : MLP
    history : list of dict
        One row per epoch: epoch (1-based), train_objective (what ``fit`` minimises,
        averaged over the epoch's mini-batches), train_loss and dev_loss (log-loss of the
        weights at the end of the epoch), dev_roc_auc.
    best_epoch : int
        1-based epoch whose weights the model holds.
    """
    from tqdm import tqdm

    from nn_core import MLP
    from nn_core.metrics import log_loss, roc_auc

    model = MLP(X["train"].shape[1], hidden=cfg.hidden, activation=cfg.activation,
                dtype=cfg.dtype, seed=seed, backend=cfg.backend, dropout=cfg.dropout)
    history: list[dict] = []
    best = {"score": -math.inf, "epoch": 0, "weights": model.get_weights()}
    bar = tqdm(total=cfg.epochs, desc=label, disable=quiet, leave=leave, unit="ep",
               dynamic_ncols=True)

    def on_epoch(epoch: int, objective: float) -> bool:
        # The objective fit reports includes pos-weighting, the L2 term and dropout; the
        # plain log-loss of train and dev after the epoch are the comparable curves.
        train_loss = log_loss(y["train"], model.predict_proba(X["train"], threads=cfg.threads))
        p_dev = model.predict_proba(X["dev"], threads=cfg.threads)
        dev_loss, dev_auc = log_loss(y["dev"], p_dev), roc_auc(y["dev"], p_dev)
        history.append({"epoch": epoch + 1, "train_objective": float(objective),
                        "train_loss": train_loss, "dev_loss": dev_loss, "dev_roc_auc": dev_auc})
        score = dev_auc if cfg.monitor == "roc_auc" else -dev_loss
        if score > best["score"]:
            best.update(score=score, epoch=epoch + 1, weights=model.get_weights())
        bar.update(1)
        bar.set_postfix_str(f"train {train_loss:.4f} dev {dev_loss:.4f} "
                            f"dev AUC {dev_auc:.4f} best@{best['epoch']}")
        return epoch + 1 - best["epoch"] >= cfg.patience

    # MLP.fit spells Nesterov momentum as optimizer="momentum", nesterov=True.
    optimizer = "momentum" if cfg.optimizer == "nesterov" else cfg.optimizer
    try:
        model.fit(X["train"], y["train"], epochs=cfg.epochs, batch_size=cfg.batch_size,
                  optimizer=optimizer, nesterov=cfg.optimizer == "nesterov", lr=cfg.lr,
                  pos_weight=cfg.resolved_pos_weight(y["train"]), l2=cfg.l2,
                  weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                  schedule=cfg.schedule, shuffle_seed=seed,
                  threads=cfg.threads, callback=on_epoch)
    finally:
        bar.close()
    if cfg.restore_best:
        model.set_weights(best["weights"])
        return model, history, best["epoch"]
    return model, history, len(history)


def evaluate_model(model, X: dict, y: dict, threads) -> tuple[dict, dict]:
    """Dev and test metrics; the F1-optimal threshold is chosen on dev and used on both."""
    from nn_core.metrics import best_f1_threshold, evaluate

    p = {k: model.predict_proba(X[k], threads=threads).astype(np.float64) for k in ("dev", "test")}
    threshold = best_f1_threshold(y["dev"], p["dev"])
    return {k: evaluate(y[k], p[k], threshold) for k in ("dev", "test")}, p


def tune(cfg: NetConfig, split: Split, seed: int, n_trials: int, quiet: bool):
    """Random search selected on dev (never test). Trial 0 is ``cfg`` itself.

    Returns the best NetConfig and the trials table (list of dicts).
    """
    rng = np.random.default_rng(10_000 + seed)
    trials = []
    best_cfg, best_score, best_trial = cfg, -math.inf, 0
    for t in range(n_trials):
        if t == 0:
            trial_cfg = cfg
        else:
            trial_cfg = replace(
                cfg,
                hidden=TUNE_HIDDEN[rng.integers(len(TUNE_HIDDEN))],
                lr=float(np.exp(rng.uniform(*np.log(TUNE_LR)))),
                l2=float(np.exp(rng.uniform(*np.log(TUNE_L2)))),
                batch_size=int(TUNE_BATCH[rng.integers(len(TUNE_BATCH))]),
                dropout=float(TUNE_DROPOUT[rng.integers(len(TUNE_DROPOUT))]),
            )
        start = time.perf_counter()
        _, history, best_epoch = train_network(trial_cfg, split.X, split.y, seed,
                                               f"tune {t + 1}/{n_trials}", quiet, leave=False)
        row = history[best_epoch - 1]
        score = row["dev_roc_auc"] if cfg.monitor == "roc_auc" else -row["dev_loss"]
        trials.append({
            "trial": t,
            "hidden": ",".join(map(str, trial_cfg.hidden)) or "none",
            "lr": trial_cfg.lr,
            "l2": trial_cfg.l2,
            "batch_size": trial_cfg.batch_size,
            "dropout": trial_cfg.dropout,
            "best_epoch": best_epoch,
            "dev_roc_auc": row["dev_roc_auc"],
            "dev_loss": row["dev_loss"],
            "seconds": round(time.perf_counter() - start, 2),
        })
        if score > best_score:
            best_cfg, best_score, best_trial = trial_cfg, score, t
    for row in trials:
        row["selected"] = row["trial"] == best_trial
    return best_cfg, trials


def summarise(runs: list[dict]) -> tuple[dict, dict]:
    """Mean and sample standard deviation (ddof=1; 0 for one run) of every metric."""

    def collect(key_path):
        values = []
        for r in runs:
            node = r
            for k in key_path:
                node = node[k]
            values.append(node)
        return np.asarray(values, dtype=np.float64)

    mean: dict = {}
    std: dict = {}
    for model in ("model", "baseline"):
        mean[model], std[model] = {}, {}
        for part in ("dev", "test"):
            keys = runs[0][model][part].keys()
            vals = {k: collect((model, part, k)) for k in keys}
            mean[model][part] = {k: float(v.mean()) for k, v in vals.items()}
            std[model][part] = {
                k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in vals.items()
            }
    return mean, std


# --------------------------------------------------------------------------- output


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def prepare_out(out: Path | None) -> tuple[Path, Path, bool]:
    """Final run directory, a fresh temporary sibling to build it in, and whether it is the
    default (so runs/latest should be updated). Refuses a non-empty existing --out."""
    default = out is None
    if default:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / stamp
        k = 1
        while out.exists():
            out = Path("runs") / f"{stamp}-{k}"
            k += 1
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: already exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a run directory is not secret
    return out, tmp, default


def point_latest(out: Path) -> str:
    """Make ``runs/latest`` point at ``out``: a relative symlink, replaced atomically; where
    symlinks are not allowed, a text file holding the run directory's name."""
    from nn_core.io import atomic_write

    latest = out.parent / "latest"
    tmp_link = out.parent / f".latest.{os.getpid()}"
    try:
        if tmp_link.is_symlink():
            tmp_link.unlink()
        os.symlink(out.name, tmp_link, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            raise OSError("runs/latest is a real directory")
        os.replace(tmp_link, latest)
        return "symlink"
    except OSError:
        if tmp_link.is_symlink():
            tmp_link.unlink()
        if latest.is_symlink():
            latest.unlink()
        if latest.is_dir():
            return "unchanged (runs/latest is a directory)"
        atomic_write(latest, out.name + "\n")
        return "text pointer"


def write_plots(tmp: Path, history: list[dict], best_epoch: int, base_history: list[dict],
                y_test: np.ndarray, p_model: np.ndarray, p_base: np.ndarray) -> list[str]:
    from nn_core import plots

    curves = {
        "MLP train": [h["train_loss"] for h in history],
        "MLP dev": [h["dev_loss"] for h in history],
        "baseline dev": [h["dev_loss"] for h in base_history],
    }
    scores = {"MLP": (y_test, p_model), "logistic regression": (y_test, p_base)}
    plots.plot_loss_curves(curves, tmp / "loss_curves.png", best_epoch=best_epoch)
    plots.plot_roc(scores, tmp / "roc.png", title="ROC (test)")
    plots.plot_pr(scores, tmp / "pr.png", title="Precision-recall (test)")
    plots.plot_reliability(scores, tmp / "reliability.png", title="Reliability (test)")
    plots.plot_gains(scores, tmp / "gains.png", title="Cumulative gains (test)")
    return ["loss_curves.png", "roc.png", "pr.png", "reliability.png", "gains.png"]


def print_summary(result: dict, seeds: tuple[int, ...]) -> None:
    keys = ("roc_auc", "pr_auc", "log_loss", "brier", "f1", "lift_at_10", "ece")
    multi = len(seeds) > 1
    src_mean = result["mean"] if multi else result
    src_std = result["std"] if multi else None
    title = f"test metrics, mean ± std over seeds {','.join(map(str, seeds))}" if multi else \
        f"test metrics (seed {seeds[0]})"
    print(title)
    print(f"{'':22s}" + "".join(f"{k:>17s}" for k in keys))
    for name, label in (("model", "MLP"), ("baseline", "logistic regression")):
        cells = []
        for k in keys:
            v = src_mean[name]["test"][k]
            cells.append(f"{v:.4f} ± {src_std[name]['test'][k]:.4f}" if multi else f"{v:.4f}")
        print(f"{label:22s}" + "".join(f"{c:>17s}" for c in cells))


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    cfg = config_from_args(args)
    if args.events is not None and args.config is not None:
        raise UsageError("--events and --config cannot be combined (an event log has fixed roles)")
    data = EventData(args) if args.events is not None else TableData(args)
    out, tmp, default_out = prepare_out(args.out)
    try:
        result = train_all(args, cfg, data, tmp)
        result["seconds"] = round(time.perf_counter() - started, 2)
        from nn_core.io import atomic_write

        atomic_write(tmp / "metrics.json", json.dumps(_jsonable(result), indent=2) + "\n")
        if out.exists():
            out.rmdir()  # an empty directory given as --out
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    latest = point_latest(out) if default_out else None
    print_summary(result, tuple(args.seeds))
    print(f"run directory: {out}" + (f" (runs/latest: {latest})" if latest else ""))
    print(f"done in {result['seconds']:.1f} s")
    return result


def train_all(args: argparse.Namespace, cfg: NetConfig, data, tmp: Path) -> dict:
    from nn_core.io import atomic_write

    seeds = tuple(args.seeds)
    # Logistic regression is convex and has few parameters: it takes (and
    # needs, to converge before early stopping ends it) a 10x larger step.
    base_cfg = replace(cfg, hidden=(), dropout=0.0, lr=cfg.lr * 10)
    trials = None
    if args.tune:
        cfg, trials = tune(cfg, data.split(seeds[0]), seeds[0], args.tune, args.quiet)
        atomic_write(tmp / "tune_trials.csv", _csv_text(trials))
    history_rows, runs = [], []
    first = None
    for seed in seeds:
        split = data.split(seed)
        model, hist, best_epoch = train_network(cfg, split.X, split.y, seed,
                                                f"seed {seed} MLP", args.quiet)
        base_split = split.baseline_X
        base, base_hist, base_best = train_network(
            base_cfg, base_split, split.y, seed, f"seed {seed} baseline", args.quiet)
        m_metrics, p_model = evaluate_model(model, split.X, split.y, cfg.threads)
        b_metrics, p_base = evaluate_model(base, base_split, split.y, cfg.threads)
        runs.append({"seed": seed, "best_epoch": best_epoch, "baseline_best_epoch": base_best,
                     "model": m_metrics, "baseline": b_metrics})
        for name, h in (("mlp", hist), ("baseline", base_hist)):
            history_rows.extend({"seed": seed, "model": name, **row} for row in h)
        if first is None:
            first = (model, base, split, hist, best_epoch, base_hist, p_model, p_base)

    model, base, split, hist, best_epoch, base_hist, p_model, p_base = first
    model.save(tmp)
    split.pre.save(tmp)
    base.save(tmp / "baseline")
    split.baseline_pre.save(tmp / "baseline")
    atomic_write(tmp / "history.csv", _csv_text(history_rows))
    files = write_plots(tmp, hist, best_epoch, base_hist, split.y["test"], p_model["test"],
                        p_base["test"])

    result: dict = {
        "model": runs[0]["model"],
        "baseline": runs[0]["baseline"],
    }
    if len(seeds) > 1:
        result["mean"], result["std"] = summarise(runs)
        result["runs"] = runs
    result.update({
        "seeds": list(seeds),
        "saved_seed": seeds[0],
        "best_epoch": runs[0]["best_epoch"],
        "config": {**asdict(cfg), "hidden": list(cfg.hidden),
                   "pos_weight_value": cfg.resolved_pos_weight(split.y["train"])},
        "baseline_config": {**asdict(base_cfg), "hidden": []},
        "data": {**data.info, "split_sizes": {k: len(v) for k, v in split.y.items()}},
        "n_features": int(split.X["train"].shape[1]),
        "files": ["model.json", "weights.npz", "preprocess.json", "baseline/", "history.csv",
                  *files, *(["tune_trials.csv"] if trials else [])],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "train.py", *sys.argv[1:]]),
    })
    if trials:
        result["tune"] = {"n_trials": len(trials), "selected": next(
            t for t in trials if t["selected"])}
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from features.tabular import DataError
    from nn_core.backends import BackendUnavailableError
    from nn_core.io import ModelFileError

    try:
        run(args)
    except UsageError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except (DataError, ModelFileError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    except (FloatingPointError, BackendUnavailableError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad values found in the data or options by the libraries
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("train.py: interrupted; no run directory written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
