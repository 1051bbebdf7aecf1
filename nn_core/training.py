"""What :meth:`nn_core.MLP.fit` does after each epoch: validation, early stopping, reporting.

Keras' ``fit(validation_data=..., callbacks=[EarlyStopping(restore_best_weights=True)])``
and scikit-learn's ``early_stopping`` in one place:

* :class:`History`: what ``fit`` returns: per epoch the training objective ``loss`` and,
  with validation data, ``val_loss`` (log-loss) and ``val_roc_auc`` of the dev rows, the
  best epoch and whether training stopped early. It reads like the dict ``fit`` used to
  return: ``history["loss"]``.
* :class:`EpochEnd`: called after each epoch, it scores the dev rows, remembers the weights
  of the best epoch (highest ROC-AUC or lowest log-loss, strict improvement), says when
  ``patience`` epochs have passed without improvement, reports progress (``verbose``) and
  puts the best weights back at the end.
* :func:`kernels_cached`: whether Numba's on-disk cache already holds the training kernels,
  so that a command can say "compiling kernels (first run only)" before a first run.

This module never imports ``nn_core.network`` (the network imports it): the model is seen
only through the callables it is given.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .metrics import log_loss, roc_auc

#: The monitored quantities and the score each maximises.
MONITORS: dict[str, Callable[[float, float], float]] = {
    "val_loss": lambda val_loss, val_roc_auc: -val_loss,
    "val_roc_auc": lambda val_loss, val_roc_auc: val_roc_auc,
}
VERBOSITY = (0, 1, 2)


class History(Mapping):
    """Per-epoch record of one :meth:`nn_core.MLP.fit` call.

    Reads like a dict of lists (``history["loss"]``, ``"val_loss" in history``,
    ``dict(history)``); the same lists are attributes.

    Attributes
    ----------
    history : dict of str to list of float
        ``loss``: the training objective of each epoch (mean over its mini-batches, with
        ``pos_weight``, the L2 term and dropout); with validation data ``val_loss`` (the
        log-loss of ``predict_proba`` on the dev rows after the epoch) and ``val_roc_auc``;
        with ``metrics_on_train`` also ``train_loss`` (the same log-loss on the training
        rows).
    monitor : str or None
        ``"val_loss"`` or ``"val_roc_auc"``; ``None`` without validation data.
    best_epoch : int or None
        1-based epoch (of this call) with the best monitored score; 0 when no epoch improved
        on ``-inf``; ``None`` without validation data.
    stopped_early : bool
        Training stopped because ``patience`` epochs passed without improvement.
    restored : bool
        The best epoch's weights were put back at the end (``restore_best``).
    """

    def __init__(self, keys: tuple[str, ...] = ("loss",), monitor: str | None = None) -> None:
        self.history: dict[str, list[float]] = {k: [] for k in keys}
        self.monitor = monitor
        self.best_epoch: int | None = None if monitor is None else 0
        self.stopped_early = False
        self.restored = False

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.history)

    def __len__(self) -> int:
        return len(self.history)

    @property
    def epochs(self) -> int:
        """Number of epochs run in this call."""
        return len(self.history["loss"])

    @property
    def loss(self) -> list[float]:
        """Training objective of each epoch."""
        return self.history["loss"]

    @property
    def val_loss(self) -> list[float]:
        """Dev log-loss after each epoch (empty without validation data)."""
        return self.history.get("val_loss", [])

    @property
    def val_roc_auc(self) -> list[float]:
        """Dev ROC-AUC after each epoch (empty without validation data)."""
        return self.history.get("val_roc_auc", [])

    @property
    def train_loss(self) -> list[float]:
        """Training-row log-loss after each epoch (empty without ``metrics_on_train``)."""
        return self.history.get("train_loss", [])

    def rows(self) -> list[dict[str, float]]:
        """One dict per epoch: ``{"epoch": 1-based, <key>: value, ...}``."""
        return [
            {"epoch": i + 1, **{k: v[i] for k, v in self.history.items()}}
            for i in range(self.epochs)
        ]

    def __repr__(self) -> str:
        return (
            f"History(epochs={self.epochs}, keys={list(self.history)}, monitor={self.monitor!r}, "
            f"best_epoch={self.best_epoch}, stopped_early={self.stopped_early})"
        )


def check_options(
    has_validation: bool,
    monitor: str | None,
    patience: int | None,
    restore_best: bool,
    verbose: int,
    metrics_on_train: bool,
) -> str | None:
    """Validate the validation and reporting arguments of ``fit``; return the monitor.

    Raises
    ------
    ValueError
        Naming the argument: an unknown ``monitor``, ``patience`` < 1, ``monitor`` or
        ``patience`` without ``validation_data``, a non-bool flag, ``verbose`` not 0, 1, 2.
    """
    if monitor is not None and monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {list(MONITORS)}, got {monitor!r}")
    if patience is not None:
        if isinstance(patience, bool) or not isinstance(patience, int | np.integer):
            raise ValueError(f"patience must be an int >= 1 or None, got {patience!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1 (or None: no early stopping), got {patience}")
    if not has_validation:
        for name, value in (("monitor", monitor), ("patience", patience)):
            if value is not None:
                raise ValueError(f"{name}={value!r} needs validation_data=(X_dev, y_dev)")
    for name, flag in (("restore_best", restore_best), ("metrics_on_train", metrics_on_train)):
        if not isinstance(flag, bool | np.bool_):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if isinstance(verbose, bool) or verbose not in VERBOSITY:
        raise ValueError(f"verbose must be 0 (silent), 1 (progress bar) or 2 (one line per "
                         f"epoch), got {verbose!r}")
    if not has_validation:
        return None
    return "val_loss" if monitor is None else monitor


class EpochEnd:
    """Called by ``fit`` after each epoch; :meth:`finish` ends training.

    Parameters
    ----------
    predict : callable
        ``predict(X) -> p``: the model's ``predict_proba`` with the weights of the moment.
    get_weights, set_weights : callable
        Snapshot and restore of the model's weights (``MLP.get_weights`` / ``set_weights``).
    validation : (X, y), optional
        Checked dev rows; enables ``val_loss``, ``val_roc_auc``, the best epoch, early
        stopping and restoring.
    train : (X, y), optional
        Checked training rows, for ``train_loss`` (``metrics_on_train``).
    monitor : {"val_loss", "val_roc_auc"} or None
    patience : int or None
        Stop after this many epochs without strict improvement of the monitored score.
    restore_best : bool
        At the end, put back the weights of the best epoch.
    verbose : {0, 1, 2}
        0 silent; 1 a progress bar (tqdm, on stderr) when stderr is a terminal, its
        estimated time left counted from the end of the first epoch (which may include
        compiling the kernels), and otherwise one line per call on stderr at the end
        (epochs, best epoch, the monitored dev score, seconds; no carriage returns); 2 one
        line per epoch (stdout).
    epochs : int
        Epochs asked for (the bar's length, the lines' ``/epochs``).
    desc : str, optional
        Label of the progress bar and prefix of the epoch lines.
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        get_weights: Callable[[], Any],
        set_weights: Callable[[Any], None],
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        train: tuple[np.ndarray, np.ndarray] | None = None,
        monitor: str | None = None,
        patience: int | None = None,
        restore_best: bool = True,
        verbose: int = 0,
        epochs: int = 0,
        desc: str | None = None,
    ) -> None:
        self.predict = predict
        self.set_weights = set_weights
        self.validation = validation
        self.train = train
        self.patience = patience
        self.restore_best = restore_best
        self.verbose = verbose
        self.total = epochs
        self.desc = desc
        keys = ("loss",)
        if train is not None:
            keys += ("train_loss",)
        if validation is not None:
            keys += ("val_loss", "val_roc_auc")
        self.history = History(keys, monitor if validation is not None else None)
        self.score = MONITORS[self.history.monitor] if validation is not None else None
        self.best_score = -math.inf
        # Before the first epoch the best weights are the starting ones.
        self.best_weights = get_weights() if validation is not None else None
        self.get_weights = get_weights
        self.bar = None
        self.started = time.perf_counter()
        self.on_terminal = verbose == 1 and sys.stderr.isatty()
        if self.on_terminal:
            # No rate and no time left until an epoch has run: the first call may spend
            # its time compiling, and an estimate from it would be wildly off.
            self.bar = self._new_bar(0, "{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                        "[{elapsed}, first epoch{postfix}]", leave=False)

    def __call__(self, loss: float) -> bool:
        """Record epoch ``len(history) + 1`` whose objective is ``loss``; True: stop."""
        h = self.history.history
        h["loss"].append(loss)
        epoch = len(h["loss"])
        if self.train is not None:
            X, y = self.train
            h["train_loss"].append(log_loss(y, self.predict(X)))
        stop = False
        if self.validation is not None:
            X, y = self.validation
            p = self.predict(X)
            val_loss, val_auc = log_loss(y, p), roc_auc(y, p)
            h["val_loss"].append(val_loss)
            h["val_roc_auc"].append(val_auc)
            score = self.score(val_loss, val_auc)
            if score > self.best_score:  # strict: a tie keeps the earlier epoch
                self.best_score = score
                self.history.best_epoch = epoch
                self.best_weights = self.get_weights()
            if self.patience is not None and epoch - self.history.best_epoch >= self.patience:
                stop = self.history.stopped_early = True
        self._report(epoch)
        return stop

    def _report(self, epoch: int) -> None:
        if self.verbose == 0:
            return
        last = {k: v[-1] for k, v in self.history.history.items()}
        best = self.history.best_epoch
        if self.verbose == 1:
            if self.bar is None:
                return  # off a terminal: one line at the end (finish)
            text = " ".join(f"{k} {v:.4f}" for k, v in last.items())
            if epoch == 1:  # from here on the rate (and time left) counts epochs 2, 3, ...
                self.bar.close()
                self.bar = self._new_bar(1, None, leave=True)
            else:
                self.bar.update(1)
            self.bar.set_postfix_str(text + ("" if best is None else f" best@{best}"))
            return
        prefix = f"{self.desc}: " if self.desc else ""
        cells = "".join(f" - {k}: {v:.4f}" for k, v in last.items())
        mark = " *" if best == epoch else ""
        print(f"{prefix}Epoch {epoch}/{self.total}{cells}{mark}", file=sys.stdout, flush=True)

    def _new_bar(self, initial: int, bar_format: str | None, leave: bool):
        from tqdm import tqdm

        # smoothing=0: the rate is the mean since the bar began, not a jumpy recent one.
        return tqdm(total=self.total, initial=initial, desc=self.desc, unit="ep",
                    dynamic_ncols=True, smoothing=0, bar_format=bar_format, leave=leave,
                    file=sys.stderr)

    def summary_line(self) -> str:
        """One line for the whole call, e.g. ``"seed 0 MLP: 23 epochs, stopped early, best
        epoch 13, dev roc_auc 0.9312, 1.8 s"``."""
        h = self.history
        parts = [f"{h.epochs} epoch" + ("" if h.epochs == 1 else "s")]
        if h.stopped_early:
            parts.append("stopped early")
        if h.monitor is not None and h.best_epoch:
            key = h.monitor.removeprefix("val_")
            value = h.history[h.monitor][h.best_epoch - 1]
            parts.append(f"best epoch {h.best_epoch}, dev {key} {value:.4f}")
        parts.append(f"{time.perf_counter() - self.started:.2f} s")
        return (f"{self.desc}: " if self.desc else "") + ", ".join(parts)

    def close(self) -> None:
        """Close the progress bar (also when training raised)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def finish(self) -> History:
        """Restore the best weights (``restore_best``), write the one-line summary where
        ``verbose`` is 1 off a terminal, and return the History."""
        self.close()
        if self.verbose == 1 and not self.on_terminal:
            print(self.summary_line(), file=sys.stderr, flush=True)
        if self.validation is not None and self.restore_best:
            self.set_weights(self.best_weights)
            self.history.restored = True
        return self.history


def kernels_cached(dtype: str, batch_size: int, threads: int | None = None,
                   activation: str = "relu", optimizer: str = "adam",
                   dropout: bool = False) -> bool | None:
    """Whether training a ``dtype`` network with this hidden ``activation``, ``optimizer``
    and dropout (on or off) on the numba backend can skip compiling.

    True when the epoch kernel of that rule set (serial or parallel, as ``batch_size`` and
    the thread count choose) and the prediction kernel of that activation are compiled in
    this process already, or Numba's on-disk cache holds them for this machine, this source
    and this dtype (what Numba itself checks before it loads a cached kernel, read from the
    cache's index); False when one must be compiled; None when it cannot tell (a Numba
    cache laid out otherwise).
    """
    try:
        import numba

        from . import kernels
        from .backends import parallel_chunks
        from .precompile import has_kernel

        n_threads = threads or numba.get_num_threads()
        parallel = parallel_chunks(batch_size, n_threads) > 1
        act, opt = kernels.activation_index(activation), kernels.optimizer_index(optimizer)
        needed = [kernels.entry("epoch_parallel" if parallel else "epoch", act, opt,
                                int(dropout)),
                  kernels.entry("blocks", act)]
        return all(has_kernel(d, dtype) for d in needed)
    except Exception:  # Numba's cache internals moved: say so rather than guess
        return None

