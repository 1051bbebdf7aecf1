"""The run's figures show what they claim: legends clear of the curves, bin counts under the
reliability diagram, the early-stopping score and best epoch on the loss plot, titles naming
data and seed (``nn_core/plots.py``, ``nn_core/selection.py: write_plots``)."""

from __future__ import annotations

import numpy as np
import pytest

from nn_core import metrics, plots
from nn_core.selection import write_plots


@pytest.fixture()
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p_good = np.clip(rng.random(400) * 0.5 + 0.45 * y, 0, 1)
    return {"MLP": (y, p_good), "logistic regression": (y, np.clip(p_good + 0.1, 0, 1))}


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


@pytest.mark.parametrize("build", [plots.pr_figure, plots.roc_figure, plots.gains_figure])
def test_legends_sit_outside_the_axes(build, scores):
    fig = build(scores)
    renderer = _drawn(fig)
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend is not None and len(legend.get_texts()) >= 3
    box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.y1 <= area.y0  # below the plotting area: it can hide no curve
    assert any("MLP" in t.get_text() for t in legend.get_texts())


def test_reliability_diagram_shows_the_rows_in_each_bin(scores):
    fig = plots.reliability_figure(scores, n_bins=10)
    curve_ax, counts_ax = fig.axes
    assert counts_ax.get_ylabel() == "rows per bin" and counts_ax.get_yscale() == "log"
    heights = [bar.get_height() for bar in counts_ax.patches]
    expected = np.concatenate([metrics.reliability_curve(y, p, 10)[2]
                               for y, p in scores.values()])
    assert heights == expected.tolist() and sum(heights) == 2 * 400
    assert [line.get_label().split(" (")[0] for line in curve_ax.get_lines()] == [
        "perfect calibration", "MLP", "logistic regression"]


def test_loss_plot_shows_the_watched_score_and_marks_the_best_epoch():
    curves = {"MLP train": [0.5, 0.4, 0.35, 0.33], "MLP dev": [0.5, 0.42, 0.41, 0.43]}
    auc = [0.80, 0.86, 0.85, 0.84]
    fig = plots.loss_figure(curves, best_epoch=2, watched=("dev ROC-AUC", auc), title="t")
    loss_ax, score_ax = fig.axes
    assert score_ax.get_ylabel() == "dev ROC-AUC"
    lines = {line.get_label(): line for line in score_ax.get_lines()}
    assert list(lines["dev ROC-AUC (early stopping watched it)"].get_ydata()) == auc
    star = lines["best epoch 2: dev ROC-AUC 0.8600"]
    assert list(star.get_xdata()) == [2] and list(star.get_ydata()) == [0.86]
    assert any(line.get_label() == "weights kept" and list(line.get_xdata()) == [2, 2]
               for line in loss_ax.get_lines())
    # watching the dev loss itself: the star sits on that curve, no second axis
    fig = plots.loss_figure(curves, best_epoch=3, watched=("MLP dev", curves["MLP dev"]))
    assert len(fig.axes) == 1
    assert "best epoch 3: MLP dev 0.4100" in [line.get_label() for line in fig.axes[0].get_lines()]


def test_write_plots_titles_name_the_data_and_the_seed(tmp_path, scores, monkeypatch):
    titles = []
    real_save = plots._save

    def keep_title(fig, path):
        titles.append(fig.axes[0].get_title())
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", keep_title)
    y, p = scores["MLP"]
    history = [{"train_loss": 0.5, "dev_loss": 0.5, "dev_roc_auc": 0.8},
               {"train_loss": 0.4, "dev_loss": 0.45, "dev_roc_auc": 0.85}]
    files = write_plots(tmp_path, history, 2, history, y, p, scores["logistic regression"][1],
                        monitor="roc_auc", caption="shop.csv, seed 3")
    assert len(titles) == len(files) == 5
    assert all(t.endswith("(shop.csv, seed 3)") for t in titles), titles
    assert all((tmp_path / f).read_bytes()[:4] == b"\x89PNG" for f in files)


@pytest.mark.parametrize("name, magic", [
    ("w.png", b"\x89PNG"), ("w.pdf", b"%PDF"), ("w.svg", b"<?xml"), ("W.PDF", b"%PDF"),
    ("w", b"\x89PNG"),  # no suffix: PNG
])
def test_a_figure_is_written_in_the_format_its_suffix_names(tmp_path, name, magic, capfd):
    bars = plots.waterfall_bars(0.2, 0.5, ["a", "b"], np.array([0.2, 0.1]))
    assert plots.plot_waterfall(bars, tmp_path / name) == tmp_path / name
    assert (tmp_path / name).read_bytes().startswith(magic)
    drift = plots.drift_figure({"a": 0.3, "(scores)": 0.05}, 0.2)
    assert plots.figure_bytes(drift, tmp_path / name).startswith(magic)
    assert capfd.readouterr() == ("", "")  # no backend warning: a command's stderr is one line


def test_an_unknown_suffix_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    bars = plots.waterfall_bars(0.2, 0.5, ["a"], np.array([0.3]))
    with pytest.raises(ValueError) as caught:
        plots.plot_waterfall(bars, tmp_path / "w.jpgg")
    assert str(caught.value) == (f"{tmp_path / 'w.jpgg'}: a figure cannot be written as "
                                 "'.jpgg'; the name's suffix gives the format: .png, .pdf, "
                                 ".svg (none: PNG)")
    assert list(tmp_path.iterdir()) == []
