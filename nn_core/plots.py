"""Plots of a training run: loss curves, ROC, PR, reliability diagram, cumulative gains;
and of one row's explanation: a waterfall of its reasons (``predict.py --explain-row``).

Figures are built with matplotlib's object API on the Agg canvas (no pyplot state, no
display needed) and written atomically, so a crashed run never leaves half a file. Each
``*_figure`` function builds a figure (what the tests inspect); ``plot_*`` writes it in the
format its file name's suffix names (:data:`FIGURE_FORMATS`: PNG, PDF or SVG; PNG
without a suffix), :func:`figure_bytes` gives those bytes. Legends sit below the axes,
where they cannot hide a curve.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from nn_core import metrics
from nn_core.io import atomic_write

#: A curve set: label -> (y, p), e.g. {"MLP": (y_test, p_mlp), "baseline": (y_test, p_lr)}.
Scores = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _new_figure(height: float = 4.5) -> Figure:
    fig = Figure(figsize=(5.5, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _label(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _legend_below(ax, handles=None, below: float = 0.16) -> None:
    """The legend under the axes (outside them, ``below`` axes heights under its bottom, past
    the axis label), one entry per line."""
    kwargs = {} if handles is None else {"handles": handles}
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -below), frameon=False, fontsize="small",
              **kwargs)


#: The formats a figure is written in, named by its file's suffix (matplotlib's names).
FIGURE_FORMATS = ("png", "pdf", "svg")


def figure_format(path: str | os.PathLike) -> str:
    """The format of a figure written to ``path``: its suffix, in any case (``x.PDF``:
    ``"pdf"``), or ``"png"`` for a name without one.

    Raises
    ------
    ValueError
        ``PATH: ...`` for a suffix not in :data:`FIGURE_FORMATS` (a command adds its flag
        in front: ``--plot PATH: ...``).
    """
    suffix = Path(path).suffix.lower().removeprefix(".")
    if not suffix:
        return "png"
    if suffix not in FIGURE_FORMATS:
        names = ", ".join(f".{f}" for f in FIGURE_FORMATS)
        raise ValueError(f"{path}: a figure cannot be written as {Path(path).suffix!r}; the "
                         f"name's suffix gives the format: {names} (none: PNG)")
    return suffix


def figure_bytes(fig: Figure, path: str | os.PathLike) -> bytes:
    """The bytes of ``fig`` in the format of ``path``'s suffix (:func:`figure_format`), for
    a caller that writes them itself (e.g. with other files, all or nothing)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=figure_format(path), bbox_inches="tight")  # the legend included
    return buf.getvalue()


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format of its suffix."""
    path = Path(path)
    atomic_write(path, figure_bytes(fig, path))
    return path


def loss_figure(
    curves: Mapping[str, Sequence[float]],
    best_epoch: int | None = None,
    watched: tuple[str, Sequence[float]] | None = None,
    title: str = "Loss per epoch",
) -> Figure:
    """Per-epoch loss curves, e.g. ``{"train": [...], "dev": [...]}``; epochs count from 1.

    ``watched`` is ``(name, values)``, the dev score early stopping watched (e.g.
    ``("dev ROC-AUC", [...])``), drawn on its own right-hand axis unless it is one of
    ``curves``; ``best_epoch`` (1-based) draws a vertical line at the epoch whose weights
    were kept and marks the watched score there.
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    _label(ax, title, "epoch", "loss (binary cross-entropy)")
    for label, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=label)
    handles = list(ax.get_lines())
    if watched is not None:
        name, values = watched
        on = ax
        if name not in curves:
            on = ax.twinx()
            on.set_ylabel(name)
            handles += on.plot(np.arange(1, len(values) + 1), values, color="black",
                               linewidth=1, label=f"{name} (early stopping watched it)")
        if best_epoch:
            handles += on.plot([best_epoch], [values[best_epoch - 1]], marker="*",
                               markersize=14, color="red", linestyle="none",
                               label=f"best epoch {best_epoch}: {name} "
                                     f"{values[best_epoch - 1]:.4f}")
    if best_epoch:
        handles.append(ax.axvline(best_epoch, color="grey", linestyle="--",
                                  label="weights kept"))
    _legend_below(ax, handles)
    return fig


def plot_loss_curves(
    curves: Mapping[str, Sequence[float]], path: str | os.PathLike, best_epoch: int | None = None,
    watched: tuple[str, Sequence[float]] | None = None, title: str = "Loss per epoch",
) -> Path:
    """Write :func:`loss_figure` to ``path`` (:func:`figure_format`)."""
    return _save(loss_figure(curves, best_epoch, watched, title), path)


def roc_figure(scores: Scores, title: str = "ROC curve") -> Figure:
    """ROC curves with their AUC in the legend, and the chance diagonal."""
    fig = _new_figure()
    ax = fig.add_subplot()
    _label(ax, title, "false positive rate", "true positive rate")
    for label, (y, p) in scores.items():
        fpr, tpr, _ = metrics.roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{label} (AUC {metrics.roc_auc(y, p):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    _legend_below(ax)
    return fig


def plot_roc(scores: Scores, path: str | os.PathLike, title: str = "ROC curve") -> Path:
    """Write :func:`roc_figure` to ``path`` (:func:`figure_format`)."""
    return _save(roc_figure(scores, title), path)


def pr_figure(scores: Scores, title: str = "Precision-recall") -> Figure:
    """Precision-recall step curves with average precision, and the positive-rate baseline."""
    fig = _new_figure()
    ax = fig.add_subplot()
    _label(ax, title, "recall", "precision")
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
    _legend_below(ax)
    return fig


def plot_pr(scores: Scores, path: str | os.PathLike, title: str = "Precision-recall") -> Path:
    """Write :func:`pr_figure` to ``path`` (:func:`figure_format`)."""
    return _save(pr_figure(scores, title), path)


def reliability_figure(scores: Scores, n_bins: int = 10,
                       title: str = "Reliability diagram") -> Figure:
    """Observed positive rate against mean predicted probability per bin (ECE in the
    legend); below it, the number of rows in each bin (log scale), the weight each point
    carries."""
    fig = _new_figure(height=6.0)
    ax, counts_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    _label(ax, title, "", "observed positive rate")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    width = 1 / n_bins / (len(scores) + 1)
    for i, (label, (y, p)) in enumerate(scores.items()):
        mean_p, rate, counts = metrics.reliability_curve(y, p, n_bins)
        ece = metrics.expected_calibration_error(y, p, n_bins)
        line, = ax.plot(mean_p, rate, marker="o", label=f"{label} (ECE {ece:.3f})")
        bins = np.clip(np.floor(mean_p * n_bins), 0, n_bins - 1)  # the bin of each point
        counts_ax.bar(bins / n_bins + (i + 1) * width, counts, width=width,
                      color=line.get_color(), label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    _label(counts_ax, "", "mean predicted probability", "rows per bin")
    counts_ax.set_yscale("log")
    counts_ax.yaxis.set_minor_formatter(NullFormatter())  # labels at the powers of 10 only
    counts_ax.set_xticks(np.linspace(0, 1, n_bins + 1), minor=True)
    counts_ax.grid(which="minor", axis="x", alpha=0.3)
    _legend_below(counts_ax, ax.get_lines(), below=0.6)  # a short axes: a larger share
    return fig


def plot_reliability(
    scores: Scores, path: str | os.PathLike, n_bins: int = 10, title: str = "Reliability diagram"
) -> Path:
    """Write :func:`reliability_figure` to ``path`` (:func:`figure_format`)."""
    return _save(reliability_figure(scores, n_bins, title), path)


def gains_figure(scores: Scores, title: str = "Cumulative gains") -> Figure:
    """Share of buyers captured against share of users targeted, best-scored first."""
    fig = _new_figure()
    ax = fig.add_subplot()
    _label(ax, title, "share of users targeted", "share of buyers captured")
    rate = None
    for label, (y, p) in scores.items():
        x, g = metrics.cumulative_gains_curve(y, p)
        ax.plot(x, g, label=f"{label} (top 10 %: {metrics.gains_at(y, p, 0.10):.2f})")
        rate = float(np.mean(y))
    if rate is not None:
        ax.plot([0, rate, 1], [0, 1, 1], color="grey", linestyle="--", label="perfect")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    _legend_below(ax)
    return fig


def plot_gains(scores: Scores, path: str | os.PathLike, title: str = "Cumulative gains") -> Path:
    """Write :func:`gains_figure` to ``path`` (:func:`figure_format`)."""
    return _save(gains_figure(scores, title), path)


def _below(fig: Figure) -> float:
    """``_legend_below``'s offset that puts the legend 0.55 inch under the axes of a figure
    of any height (the axes take about 3/4 of it): just past the axis label."""
    return 0.55 / (0.75 * fig.get_figheight())


def importance_figure(importances: Mapping[str, tuple[Sequence[str], np.ndarray, np.ndarray]],
                      title: str = "Permutation importance") -> Figure:
    """Horizontal bars of the permutation importance of each raw column, one bar per model,
    with the standard deviation over the repeats as error bars.

    ``importances`` maps a model's label to ``(columns, mean_drop, std_drop)``
    (``nn_core/importance.py: Importance``); the columns are listed in the first model's
    order, most important at the top, then any column only a later model has.
    """
    order: list[str] = []
    for columns, _, _ in importances.values():
        order += [c for c in columns if c not in order]
    fig = _new_figure(height=1.5 + 0.22 * len(order) * max(1, len(importances)))
    ax = fig.add_subplot()
    _label(ax, title, "ROC-AUC drop when the column is shuffled (mean ± std)", "")
    height = 0.8 / len(importances)
    position = {c: len(order) - 1 - i for i, c in enumerate(order)}  # first at the top
    for k, (label, (columns, mean, std)) in enumerate(importances.items()):
        y = np.array([position[c] for c in columns]) + 0.4 - (k + 0.5) * height
        ax.barh(y, mean, height=height, xerr=std, capsize=2, label=label)
    ax.set_yticks(np.arange(len(order)), order[::-1], fontsize="small")
    ax.axvline(0, color="grey", linewidth=0.8)
    _legend_below(ax, below=_below(fig))
    return fig


def plot_importance(importances: Mapping[str, tuple[Sequence[str], np.ndarray, np.ndarray]],
                    path: str | os.PathLike, title: str = "Permutation importance") -> Path:
    """Write :func:`importance_figure` to ``path`` (:func:`figure_format`)."""
    return _save(importance_figure(importances, title), path)


def drift_figure(psi: Mapping[str, float], threshold: float,
                 title: str = "Input drift (PSI)") -> Figure:
    """Horizontal bars of the population stability index of each column (and of the scores),
    largest at the top, with the threshold drawn; bars above it in red."""
    names = sorted(psi, key=lambda name: psi[name])  # barh draws from the bottom up
    values = np.array([psi[name] for name in names])
    fig = _new_figure(height=1.5 + 0.22 * len(names))
    ax = fig.add_subplot()
    _label(ax, title, "PSI = sum (a - e) ln(a / e) over the bins", "")
    above = values > threshold
    ax.barh(np.arange(len(names)), values, color=np.where(above, "tab:red", "tab:blue"))
    ax.set_yticks(np.arange(len(names)), names, fontsize="small")
    ax.axvline(threshold, color="black", linestyle="--",
               label=f"threshold {threshold:g} ({int(above.sum())} above)")
    _legend_below(ax, below=_below(fig))
    return fig


def plot_drift(psi: Mapping[str, float], threshold: float, path: str | os.PathLike,
               title: str = "Input drift (PSI)") -> Path:
    """Write :func:`drift_figure` to ``path`` (:func:`figure_format`)."""
    return _save(drift_figure(psi, threshold, title), path)


class Bar(NamedTuple):
    """One bar of a waterfall: from ``start`` to ``end`` on the probability axis."""

    label: str
    start: float
    end: float


def waterfall_bars(baseline_value: float, value: float, columns: Sequence[str],
                   contributions: np.ndarray, k: int = 10) -> list[Bar]:
    """The bars of one row's waterfall: ``f(baseline)`` (from 0), then the ``k`` columns of
    largest ``|contribution|`` (each from where the previous one ended), then the sum of
    the others (``"other columns"``, when there are any), then ``f(x)`` (from 0).

    With complete attributions (``nn_core/explain.py``) the last step ends at ``f(x)``
    within the completeness tolerance.
    """
    c = np.asarray(contributions, dtype=np.float64)
    order = np.argsort(-np.abs(c), kind="stable")
    bars = [Bar("f(baseline)", 0.0, float(baseline_value))]
    level = float(baseline_value)
    for j in order[:k].tolist():
        bars.append(Bar(str(columns[j]), level, level + float(c[j])))
        level += float(c[j])
    if len(c) > k:
        bars.append(Bar("other columns", level, level + float(c[order[k:]].sum())))
    bars.append(Bar("f(x)", 0.0, float(value)))
    return bars


def waterfall_figure(bars: Sequence[Bar], title: str = "Reasons") -> Figure:
    """Horizontal waterfall of :func:`waterfall_bars`, first bar at the top: totals grey,
    contributions that raise the probability red, those that lower it blue, each labelled
    with its signed size."""
    fig = _new_figure(height=1.5 + 0.3 * len(bars))
    ax = fig.add_subplot()
    _label(ax, title, "probability (uncalibrated)", "")
    y = np.arange(len(bars))[::-1]  # the first bar on top
    for yi, bar in zip(y, bars, strict=True):
        total = bar.label in ("f(baseline)", "f(x)")
        color = "grey" if total else "tab:red" if bar.end >= bar.start else "tab:blue"
        ax.barh(yi, bar.end - bar.start, left=bar.start, color=color)
        text = f"{bar.end:.3f}" if total else f"{bar.end - bar.start:+.3f}"
        ax.annotate(text, (max(bar.start, bar.end), yi), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize="small")
    ax.set_yticks(y, [bar.label for bar in bars], fontsize="small")
    ax.margins(x=0.15)
    return fig


def plot_waterfall(bars: Sequence[Bar], path: str | os.PathLike, title: str = "Reasons"
                   ) -> Path:
    """Write :func:`waterfall_figure` to ``path`` (:func:`figure_format`)."""
    return _save(waterfall_figure(bars, title), path)
