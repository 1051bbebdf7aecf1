"""Model selection and evaluation on a train/dev/test split: what ``train.py`` runs.

* :class:`NetConfig`: architecture and training hyper-parameters of one network;
* :func:`train_network`: build an :class:`~nn_core.MLP` and fit it with early stopping on
  dev (``MLP.fit(validation_data=...)``), returning the per-epoch table of ``history.csv``;
* :func:`evaluate_model`: dev and test metrics with the F1 threshold chosen on dev;
* :func:`tune`: random search over architecture, learning rate, L2, batch size and dropout,
  selected on dev (never test);
* :func:`summarise`: mean and sample standard deviation of the metrics over seeds;
* :func:`csv_text`, :func:`jsonable`: the run directory's CSV tables and JSON values
  (the directory itself is built with ``nn_core/io.py: new_run_dir``).

A split is given as two dicts, ``X`` and ``y``, keyed ``"train"``, ``"dev"``, ``"test"``
(``features.datasets.Split`` holds them). This module imports only ``nn_core``.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .ensemble import Ensemble, combine, embed_inputs, member_seed
from .metrics import best_f1_threshold, evaluate, expected_calibration_error
from .network import MLP

#: ``NetConfig.monitor`` values and the ``MLP.fit`` monitor each one means.
MONITORS = {"roc_auc": "val_roc_auc", "loss": "val_loss"}

# Random-search space of ``tune`` (log-uniform for the rates, choices for the rest).
TUNE_HIDDEN = ((16,), (32,), (64,), (128,), (32, 32), (64, 32), (64, 64), (128, 64))
TUNE_LR = (3e-4, 3e-3)
TUNE_L2 = (1e-5, 1e-2)
TUNE_BATCH = (32, 64, 128, 256)
TUNE_DROPOUT = (0.0, 0.1, 0.2, 0.3)


@dataclass(frozen=True)
class NetConfig:
    """Architecture and training hyper-parameters of one network.

    ``optimizer`` is one of ``adam``, ``sgd``, ``momentum``, ``nesterov``; ``pos_weight`` is
    a number as text or ``"auto"`` (``n_negative / n_positive`` on train); ``monitor`` is
    ``"roc_auc"`` or ``"loss"`` (dev ROC-AUC or dev log-loss); ``threads`` the numba
    threads (``None``: all).
    """

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
        """The positive-class weight: ``float(pos_weight)``, or n_neg / n_pos for "auto"."""
        if self.pos_weight == "auto":
            n1 = int(y_train.sum())
            return (len(y_train) - n1) / n1
        return float(self.pos_weight)


def train_network(
    cfg: NetConfig,
    X: Mapping[str, np.ndarray],
    y: Mapping[str, np.ndarray],
    seed: int,
    label: str | None = None,
    verbose: int = 0,
) -> tuple[MLP, list[dict], int]:
    """Train one network on ``X["train"]`` with early stopping on ``X["dev"]``.

    ``MLP.fit(validation_data=(X["dev"], y["dev"]), monitor=..., patience=cfg.patience,
    restore_best=cfg.restore_best)``: after each epoch dev is scored, the weights of the
    best dev epoch (highest ROC-AUC or lowest log-loss, strict improvement) are kept,
    training stops after ``patience`` epochs without improvement and, with
    ``restore_best``, the best weights are put back.

    Parameters
    ----------
    cfg : NetConfig
    X, y : mapping
        ``"train"`` and ``"dev"`` feature matrices and 0/1 labels.
    seed : int
        Seed of the initial weights and of the row orders (and dropout masks).
    label : str, optional
        Label of the progress bar.
    verbose : {0, 1, 2}
        As ``MLP.fit``.

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
    if cfg.monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {list(MONITORS)}, got {cfg.monitor!r}")
    model = MLP(X["train"].shape[1], hidden=cfg.hidden, activation=cfg.activation,
                dtype=cfg.dtype, seed=seed, backend=cfg.backend, dropout=cfg.dropout)
    # MLP.fit spells Nesterov momentum as optimizer="momentum", nesterov=True.
    optimizer = "momentum" if cfg.optimizer == "nesterov" else cfg.optimizer
    h = model.fit(X["train"], y["train"], epochs=cfg.epochs, batch_size=cfg.batch_size,
                  optimizer=optimizer, nesterov=cfg.optimizer == "nesterov", lr=cfg.lr,
                  pos_weight=cfg.resolved_pos_weight(y["train"]), l2=cfg.l2,
                  weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                  schedule=cfg.schedule, shuffle_seed=seed, threads=cfg.threads,
                  validation_data=(X["dev"], y["dev"]), monitor=MONITORS[cfg.monitor],
                  patience=cfg.patience, restore_best=cfg.restore_best,
                  metrics_on_train=True, verbose=verbose, desc=label)
    # The objective fit reports includes pos-weighting, the L2 term and dropout; the plain
    # log-loss of train and dev after the epoch are the comparable curves.
    history = [
        {"epoch": i + 1, "train_objective": float(h.loss[i]), "train_loss": h.train_loss[i],
         "dev_loss": h.val_loss[i], "dev_roc_auc": h.val_roc_auc[i]}
        for i in range(h.epochs)
    ]
    return model, history, h.best_epoch if cfg.restore_best else h.epochs


def evaluate_model(
    model: MLP | Ensemble, X: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray],
    threads: int | None = None,
) -> tuple[dict, dict]:
    """Dev and test metrics; the F1-optimal threshold is chosen on dev and used on both.

    An :class:`~nn_core.ensemble.Ensemble` with a calibration is evaluated calibrated, and
    each part also gets ``ece_uncalibrated``, the ECE of ``sigma(z)`` before calibration.

    Returns
    -------
    metrics : dict
        ``{"dev": nn_core.metrics.evaluate(...), "test": ...}``.
    p : dict
        ``{"dev": p_dev, "test": p_test}``, float64 propensities.
    """
    p = {k: model.predict_proba(X[k], threads=threads).astype(np.float64) for k in ("dev", "test")}
    threshold = best_f1_threshold(y["dev"], p["dev"])
    metrics = {k: evaluate(y[k], p[k], threshold) for k in ("dev", "test")}
    if isinstance(model, Ensemble) and model.calibration is not None:
        for k in ("dev", "test"):
            before = model.predict_proba(X[k], threads=threads, calibrated=False)
            metrics[k]["ece_uncalibrated"] = expected_calibration_error(y[k], before)
    return metrics, p


def tune(
    cfg: NetConfig,
    X: Mapping[str, np.ndarray],
    y: Mapping[str, np.ndarray],
    seed: int,
    n_trials: int,
    verbose: int = 0,
) -> tuple[NetConfig, list[dict]]:
    """Random search selected on dev (never test). Trial 0 is ``cfg`` itself.

    Trials ``1..n_trials-1`` draw ``hidden``, ``lr``, ``l2``, ``batch_size`` and ``dropout``
    from ``TUNE_*`` with ``numpy.random.default_rng(10_000 + seed)``; each is trained with
    :func:`train_network` and scored at its best epoch by ``cfg.monitor`` on dev. The first
    trial with the highest score is selected.

    Returns
    -------
    best : NetConfig
    trials : list of dict
        One row per trial (the ``tune_trials.csv`` table), with ``selected``.
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
        _, history, best_epoch = train_network(trial_cfg, X, y, seed,
                                               f"tune {t + 1}/{n_trials}", verbose)
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


def summarise(runs: Sequence[Mapping]) -> tuple[dict, dict]:
    """Mean and sample standard deviation (ddof=1; 0 for one run) of every metric.

    Parameters
    ----------
    runs : sequence of dict
        Per seed ``{"model": {"dev": {...}, "test": {...}}, "baseline": {...}}``.

    Returns
    -------
    mean, std : dict
        Of the same shape as one run's ``model``/``baseline`` part.
    """

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


def write_plots(
    out: Path, history: Sequence[Mapping], best_epoch: int, base_history: Sequence[Mapping],
    y_test: np.ndarray, p_model: np.ndarray, p_base: np.ndarray, monitor: str = "roc_auc",
    caption: str = "",
) -> list[str]:
    """The run's figures (loss curves; ROC, PR, reliability and gains on test) in ``out``.

    ``monitor`` is what early stopping watched (``NetConfig.monitor``), drawn on the loss
    plot with the best epoch marked; ``caption`` (e.g. ``"data.csv, seed 0"``) ends every
    title. Returns the file names written.
    """
    from . import plots  # matplotlib: only when plotting

    def title(what: str) -> str:
        return f"{what} ({caption})" if caption else what

    curves = {
        "MLP train": [h["train_loss"] for h in history],
        "MLP dev": [h["dev_loss"] for h in history],
        "baseline dev": [h["dev_loss"] for h in base_history],
    }
    watched = (("dev ROC-AUC", [h["dev_roc_auc"] for h in history]) if monitor == "roc_auc"
               else ("MLP dev", curves["MLP dev"]))
    scores = {"MLP": (y_test, p_model), "logistic regression": (y_test, p_base)}
    plots.plot_loss_curves(curves, out / "loss_curves.png", best_epoch=best_epoch,
                           watched=watched, title=title("MLP training"))
    plots.plot_roc(scores, out / "roc.png", title=title("ROC, test"))
    plots.plot_pr(scores, out / "pr.png", title=title("Precision-recall, test"))
    plots.plot_reliability(scores, out / "reliability.png", title=title("Reliability, test"))
    plots.plot_gains(scores, out / "gains.png", title=title("Cumulative gains, test"))
    return ["loss_curves.png", "roc.png", "pr.png", "reliability.png", "gains.png"]


def csv_text(rows: Sequence[Mapping]) -> str:
    """A CSV table (header from the first row's keys, ``\\n`` line ends) as text."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def jsonable(obj):
    """Convert NumPy / pandas scalars and timestamps inside ``obj`` to JSON types."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


#: The logistic-regression baseline's hyper-parameters: fixed, whatever the network's flags
#: (``--lr 0.05`` must not weaken the yardstick). Chosen once: the highest dev ROC-AUC on seed
#: 0's split of the bundled table over a grid of learning rates and L2 penalties
#: (``benchmarks/sweep_baseline.py``; the sweep is in docs/results.md).
BASELINE = NetConfig(hidden=(), optimizer="adam", lr=3e-2, batch_size=128, epochs=200,
                     l2=1e-4, weight_decay=0.0, dropout=0.0, pos_weight="1",
                     schedule="constant", monitor="roc_auc", patience=10, restore_best=True)


def baseline_config(cfg: NetConfig) -> NetConfig:
    """The logistic-regression baseline run beside ``cfg``: :data:`BASELINE`, computed
    with ``cfg``'s ``dtype``, ``backend`` and ``threads`` (how it is computed, never what:
    the features are already in ``cfg``'s dtype)."""
    return replace(BASELINE, dtype=cfg.dtype, backend=cfg.backend, threads=cfg.threads)


def describe_config(cfg: NetConfig) -> str:
    """``cfg``'s hyper-parameters in one short line, e.g. ``"hidden 64 relu, adam lr 0.001,
    batch 128, l2 0.001"`` (options at their default left out)."""
    d = NetConfig()
    layers = ("hidden " + ",".join(map(str, cfg.hidden)) + f" {cfg.activation}"
              if cfg.hidden else "no hidden layer")
    parts = [layers, f"{cfg.optimizer} lr {cfg.lr:.3g}", f"batch {cfg.batch_size}",
             f"l2 {cfg.l2:.3g}"]
    extras = ((cfg.optimizer in ("momentum", "nesterov"), f"momentum {cfg.momentum:g}"),
              (cfg.dropout != d.dropout, f"dropout {cfg.dropout:g}"),
              (cfg.weight_decay != d.weight_decay, f"weight decay {cfg.weight_decay:.3g}"),
              (cfg.pos_weight != d.pos_weight, f"pos-weight {cfg.pos_weight}"),
              (cfg.schedule != d.schedule, f"{cfg.schedule} schedule"))
    parts += [text for differs, text in extras if differs]
    return ", ".join(parts)


@dataclass
class SeedRun:
    """The network (or the combined model) and the baseline trained and evaluated on one
    seed's split."""

    seed: int
    model: MLP | Ensemble
    baseline: MLP
    history: list[dict]
    best_epoch: int
    baseline_history: list[dict]
    baseline_best_epoch: int
    metrics: dict  # {"dev": {...}, "test": {...}} of the network
    baseline_metrics: dict
    p_model: dict  # {"dev": p, "test": p}
    p_baseline: dict
    #: The histories of ensemble members 1..K-1 (member 0's is ``history``).
    member_histories: list[list[dict]] = field(default_factory=list)
    #: How the members were combined (``nn_core.ensemble.combine``); empty for one network.
    combination: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The ``metrics.json`` entry of this seed."""
        return {"seed": self.seed, "best_epoch": self.best_epoch,
                "baseline_best_epoch": self.baseline_best_epoch,
                "model": self.metrics, "baseline": self.baseline_metrics,
                **({"combination": self.combination} if self.combination else {})}

    def history_rows(self) -> list[dict]:
        """The ``history.csv`` rows of this seed: the network's (``mlp``; ensemble members
        ``mlp1``, ``mlp2``, ... after it), then the baseline's."""
        parts = [("mlp", self.history),
                 *((f"mlp{k}", h) for k, h in enumerate(self.member_histories, 1)),
                 ("baseline", self.baseline_history)]
        return [{"seed": self.seed, "model": name, **row} for name, h in parts for row in h]


def train_and_evaluate(
    cfg: NetConfig,
    base_cfg: NetConfig,
    X: Mapping[str, np.ndarray],
    y: Mapping[str, np.ndarray],
    baseline_X: Mapping[str, np.ndarray],
    seed: int,
    verbose: int = 0,
    ensemble: int = 1,
    fuse: str = "none",
    calibrate: str = "none",
    column_sets: Sequence[np.ndarray] = (),
) -> SeedRun:
    """Train the network (``cfg``) and the baseline (``base_cfg``, e.g.
    :func:`baseline_config`, on ``baseline_X``) with early stopping on dev; evaluate both
    on dev and test.

    With ``ensemble`` K > 1, K networks are trained, member ``k`` with the seed
    ``nn_core.ensemble.member_seed(seed, k)`` (member 0: ``seed`` itself, so K = 1 is the
    single network). ``fuse`` (``"blend"``, ``"stack"``) adds a logistic regression
    (``base_cfg``) on the network's features (the baseline itself where ``baseline_X`` is
    ``X``) and ``calibrate`` (``"platt"``, ``"isotonic"``) a calibration, both chosen on
    dev (``nn_core.ensemble.combine``); the model evaluated is then the combination.

    ``column_sets`` (V <= K index arrays into the d columns of ``X``; empty: every member
    sees all of them): member ``k`` is trained on the columns ``cols = column_sets[k % V]``
    alone, ``X[part][:, cols]`` (n, len(cols)), and then widened to all d inputs with zero
    first-layer rows outside ``cols`` (``nn_core.ensemble.embed_inputs``), so that
    ``z_k(X) = z'_k(X[:, cols])`` and every member, fusion and calibration scores ``X``.
    """
    if len(column_sets) > ensemble:
        raise ValueError(f"{len(column_sets)} column sets for {ensemble} members: each set "
                         "needs a member")
    d = X["train"].shape[1]
    nets = []
    for k in range(ensemble):
        label = f"seed {seed} MLP" + (f" {k + 1}/{ensemble}" if ensemble > 1 else "")
        cols = column_sets[k % len(column_sets)] if column_sets else None
        if cols is None or np.array_equal(cols, np.arange(d)):
            nets.append(train_network(cfg, X, y, member_seed(seed, k), label, verbose))
            continue
        X_k = {part: X[part][:, cols] for part in ("train", "dev")}
        net, h, best_k = train_network(cfg, X_k, y, member_seed(seed, k), label, verbose)
        nets.append((embed_inputs(net, cols, d), h, best_k))
    model, hist, best = nets[0]
    base, base_hist, base_best = train_network(base_cfg, baseline_X, y, seed,
                                               f"seed {seed} baseline", verbose)
    combination: dict = {}
    if ensemble > 1 or fuse != "none" or calibrate != "none":
        lr = None
        if fuse != "none":
            lr = base if baseline_X is X else train_network(
                base_cfg, X, y, seed, f"seed {seed} fusion LR", verbose)[0]
        model, combination = combine([n for n, _, _ in nets], lr, X["dev"], y["dev"], fuse,
                                     calibrate, cfg.threads)
    m_metrics, p_model = evaluate_model(model, X, y, cfg.threads)
    b_metrics, p_base = evaluate_model(base, baseline_X, y, cfg.threads)
    return SeedRun(seed, model, base, hist, best, base_hist, base_best, m_metrics, b_metrics,
                   p_model, p_base, [h for _, h, _ in nets[1:]], combination)
