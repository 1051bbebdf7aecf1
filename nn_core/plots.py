"""PNG plots of a training run: loss curves, ROC, PR, reliability diagram, cumulative gains.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot state, no
display needed) and written atomically, so a crashed run never leaves half a PNG.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nn_core import metrics
from nn_core.io import atomic_write

#: A curve set: label -> (y, p), e.g. {"MLP": (y_test, p_mlp), "baseline": (y_test, p_lr)}.
Scores = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _new_axes(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=(5.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write(path, buf.getvalue())
    return path


def plot_loss_curves(
    curves: Mapping[str, Sequence[float]], path: str | os.PathLike, best_epoch: int | None = None
) -> Path:
    """Per-epoch loss curves, e.g. ``{"train": [...], "dev": [...]}``; epochs count from 1.

    ``best_epoch`` (1-based) draws a vertical line at the epoch whose weights were kept.
    """
    fig, ax = _new_axes("Loss per epoch", "epoch", "loss (binary cross-entropy)")
    for label, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=label)
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
    ax.legend()
    return _save(fig, path)


def plot_roc(scores: Scores, path: str | os.PathLike, title: str = "ROC curve") -> Path:
    """ROC curves with their AUC in the legend, and the chance diagonal."""
    fig, ax = _new_axes(title, "false positive rate", "true positive rate")
    for label, (y, p) in scores.items():
        fpr, tpr, _ = metrics.roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{label} (AUC {metrics.roc_auc(y, p):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(scores: Scores, path: str | os.PathLike, title: str = "Precision-recall") -> Path:
    """Precision-recall step curves with average precision, and the positive-rate baseline."""
    fig, ax = _new_axes(title, "recall", "precision")
    rate = None
    for label, (y, p) in scores.items():
        precision, recall, _ = metrics.precision_recall_curve(y, p)
        ap = metrics.pr_auc(y, p)
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre",
                label=f"{label} (AP {ap:.3f})")
        rate = float(np.mean(y))
    if rate is not None:
        ax.axhline(rate, color="grey", linestyle=":", label=f"positive rate {rate:.3f}")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_reliability(
    scores: Scores, path: str | os.PathLike, n_bins: int = 10, title: str = "Reliability diagram"
) -> Path:
    """Observed positive rate against mean predicted probability per bin (ECE in legend)."""
    fig, ax = _new_axes(title, "mean predicted probability", "observed positive rate")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for label, (y, p) in scores.items():
        mean_p, rate, _ = metrics.reliability_curve(y, p, n_bins)
        ece = metrics.expected_calibration_error(y, p, n_bins)
        ax.plot(mean_p, rate, marker="o", label=f"{label} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_gains(scores: Scores, path: str | os.PathLike, title: str = "Cumulative gains") -> Path:
    """Share of buyers captured against share of users targeted, best-scored first."""
    fig, ax = _new_axes(title, "share of users targeted", "share of buyers captured")
    rate = None
    for label, (y, p) in scores.items():
        x, g = metrics.cumulative_gains_curve(y, p)
        ax.plot(x, g, label=f"{label} (top 10 %: {metrics.gains_at(y, p, 0.10):.2f})")
        rate = float(np.mean(y))
    if rate is not None:
        ax.plot([0, rate, 1], [0, 1, 1], color="grey", linestyle="--", label="perfect")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.legend(loc="lower right")
    return _save(fig, path)
