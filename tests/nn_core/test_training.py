"""Training behaviour: it learns, continues, stops on request; schedules follow their formulas."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nn_core import MLP
from nn_core.activations import ACTIVATIONS
from nn_core.optim import learning_rate


def _xor(n=800, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(float)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_learns_xor_which_logistic_regression_cannot(backend):
    X, y = _xor()
    net = MLP(2, (16, 16), seed=0, backend=backend)
    history = net.fit(X, y, epochs=60, batch_size=32, lr=1e-2)
    acc = ((net.predict_proba(X) > 0.5) == y).mean()
    logreg = MLP(2, (), seed=0, backend=backend)
    logreg.fit(X, y, epochs=60, batch_size=32, lr=1e-2)
    acc_lr = ((logreg.predict_proba(X) > 0.5) == y).mean()
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert acc > 0.95
    assert acc_lr < 0.7


def test_fit_continues_where_it_stopped():
    X, y = _xor(300)
    a = MLP(2, (8,), seed=1, backend="numpy", dtype="float64")
    a.fit(X, y, epochs=4, lr=1e-2)
    b = MLP(2, (8,), seed=1, backend="numpy", dtype="float64")
    b.fit(X, y, epochs=2, lr=1e-2)
    b.fit(X, y, epochs=2, lr=1e-2)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-12)


def test_callback_stops_training_and_sees_each_epoch():
    X, y = _xor(200)
    seen = []
    history = MLP(2, (4,)).fit(X, y, epochs=10, callback=lambda e, loss: seen.append(e) or e == 2)
    assert seen == [0, 1, 2]
    assert len(history["loss"]) == 3


def test_get_and_set_weights_restore_a_snapshot():
    X, y = _xor(200)
    m = MLP(2, (4,))
    snapshot = m.get_weights()
    p0 = m.predict_proba(X)
    m.fit(X, y, epochs=3)
    assert not np.array_equal(m.predict_proba(X), p0)
    m.set_weights(snapshot)
    assert np.array_equal(m.predict_proba(X), p0)


def test_pos_weight_raises_the_predicted_rate():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3))
    y = (rng.random(1000) < 0.15).astype(float)  # labels independent of X: p -> base rate
    plain, weighted = MLP(3, (), seed=0), MLP(3, (), seed=0)
    plain.fit(X, y, epochs=30, lr=1e-2)
    weighted.fit(X, y, epochs=30, lr=1e-2, pos_weight=85 / 15)
    assert plain.predict_proba(X).mean() == pytest.approx(0.15, abs=0.05)
    assert weighted.predict_proba(X).mean() == pytest.approx(0.5, abs=0.08)


def test_l2_and_weight_decay_shrink_the_weights():
    X, y = _xor(400)
    norms = {}
    for name, kw in {"none": {}, "l2": {"l2": 0.05}, "decay": {"weight_decay": 5.0}}.items():
        m = MLP(2, (16,), seed=0)
        m.fit(X, y, epochs=20, lr=1e-2, **kw)
        norms[name] = float(np.sum(m.theta[m.decay_mask == 1] ** 2))
    assert norms["l2"] < 0.8 * norms["none"]
    assert norms["decay"] < 0.8 * norms["none"]


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_lecun_initial_scales(activation):
    """W_l ~ N(0, 1 / fan_in) in every layer, whatever the activation; biases 0 (math.md §7)."""
    m = MLP(400, (300, 200), activation=activation, seed=0, dtype="float64")
    for (W, b), fan_in, rel in zip(m.params, (400, 300, 200), (0.02, 0.02, 0.15), strict=True):
        assert W.std() == pytest.approx(math.sqrt(1 / fan_in), rel=rel)
        assert abs(W.mean()) < 4 * math.sqrt(1 / fan_in / W.size)
        assert not b.any()
    assert np.array_equal(MLP(5, (3,), seed=7).theta, MLP(5, (3,), seed=7).theta)
    assert not np.array_equal(MLP(5, (3,), seed=7).theta, MLP(5, (3,), seed=8).theta)


def test_lecun_relu_logit_second_moment_halves_per_hidden_layer():
    """math.md §7: on standardised inputs, L ReLU hidden layers start with E[z^2] = 2^-L at
    the logit (He's scale would keep it at 1)."""
    X = np.random.default_rng(1).normal(size=(500, 100))
    for depth in (1, 2, 3):
        moments = []
        # The expectation is over the weights too: one network's logits share a random
        # offset (sum_j E[h_j] W_j), so the mean is taken over 32 draws.
        for seed in range(32):
            m = MLP(100, (128,) * depth, seed=seed, dtype="float64", backend="numpy")
            p = m.predict_proba(X)
            moments.append(np.mean((np.log(p) - np.log1p(-p)) ** 2))
        assert np.mean(moments) == pytest.approx(2.0**-depth, rel=0.2)


def test_schedules_follow_their_formulas():
    assert learning_rate("constant", 0.1, 7, 10) == 0.1
    assert learning_rate("step", 0.1, 9, 30, step_size=10, gamma=0.5) == 0.1
    assert learning_rate("step", 0.1, 25, 30, step_size=10, gamma=0.5) == pytest.approx(0.025)
    assert learning_rate("cosine", 0.1, 0, 10) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 5, 10) == pytest.approx(0.05)
    assert learning_rate("cosine", 0.1, 10, 10, lr_min=0.01) == pytest.approx(0.01)


def test_dropout_changes_training_but_not_prediction():
    X, y = _xor(300)
    a = MLP(2, (8,), seed=0, dropout=0.5)
    b = MLP(2, (8,), seed=0)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    a.fit(X, y, epochs=2)
    b.fit(X, y, epochs=2)
    assert not np.array_equal(a.theta, b.theta)
    assert np.array_equal(a.predict_proba(X), a.predict_proba(X))


def test_dropout_masks_drop_the_right_share_and_match_across_backends():
    from nn_core import dropout, kernels

    D = dropout.dropout_mask(11, 3, 1, 400, 50, 0.3, np.dtype("float64"))
    assert set(np.unique(D)) == {0.0, 1 / 0.7}
    assert (D == 0).mean() == pytest.approx(0.3, abs=0.01)
    assert D.mean() == pytest.approx(1.0, abs=0.02)
    D_kernel = np.empty_like(D)
    kernels.fill_dropout_mask(dropout.dropout_key(11, 3, 1), 0.3, D_kernel)
    assert np.array_equal(D, D_kernel)
    assert not np.array_equal(
        D, dropout.dropout_mask(11, 4, 1, 400, 50, 0.3, np.dtype("float64"))
    )


# --------------------------------------------------------------------------- validation data


def _noisy(n=400, seed=0):
    """A weak signal plus label noise: dev scores peak early, then the network overfits."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] + 1.5 * rng.normal(size=n) > 0.8).astype(float)
    return X[: n // 2], y[: n // 2], X[n // 2 :], y[n // 2 :]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("monitor", ["val_roc_auc", "val_loss"])
def test_early_stopping_stops_after_patience_and_restores_the_best_epoch(backend, monitor):
    from nn_core.metrics import log_loss, roc_auc

    X, y, X_dev, y_dev = _noisy()
    m = MLP(6, (64,), seed=0, backend=backend)
    h = m.fit(X, y, epochs=200, lr=3e-2, validation_data=(X_dev, y_dev), monitor=monitor,
              patience=3)
    assert list(h) == ["loss", "val_loss", "val_roc_auc"] and h.monitor == monitor
    assert len(h["loss"]) == len(h["val_loss"]) == len(h["val_roc_auc"]) == h.epochs
    scores = h.val_roc_auc if monitor == "val_roc_auc" else [-v for v in h.val_loss]
    assert h.best_epoch == int(np.argmax(scores)) + 1  # strict improvement: the first best
    assert h.stopped_early and h.epochs == h.best_epoch + 3 < 200
    assert h.restored
    p = m.predict_proba(X_dev)
    assert roc_auc(y_dev, p) == h.val_roc_auc[h.best_epoch - 1]
    assert log_loss(y_dev, p) == h.val_loss[h.best_epoch - 1]


def test_restore_best_false_keeps_the_last_epoch_and_patience_none_runs_every_epoch():
    from nn_core.metrics import log_loss

    X, y, X_dev, y_dev = _noisy()
    keep = MLP(6, (64,), seed=0)
    h = keep.fit(X, y, epochs=12, lr=3e-2, validation_data=(X_dev, y_dev), restore_best=False,
                 metrics_on_train=True)
    assert h.epochs == 12 and not h.stopped_early and not h.restored
    assert log_loss(y_dev, keep.predict_proba(X_dev)) == h.val_loss[-1]
    assert log_loss(y, keep.predict_proba(X)) == h.train_loss[-1]
    # The same run, restoring: the weights of the best epoch by val_loss (the default).
    best = MLP(6, (64,), seed=0)
    h2 = best.fit(X, y, epochs=12, lr=3e-2, validation_data=(X_dev, y_dev))
    assert h2["loss"] == h["loss"] and h2.monitor == "val_loss"
    assert h2.best_epoch == int(np.argmin(h.val_loss)) + 1
    assert log_loss(y_dev, best.predict_proba(X_dev)) == h.val_loss[h2.best_epoch - 1]


def test_validation_does_not_change_what_is_trained():
    X, y, X_dev, y_dev = _noisy()
    a, b = MLP(6, (16,), seed=3), MLP(6, (16,), seed=3)
    ha = a.fit(X, y, epochs=5, lr=1e-2)
    hb = b.fit(X, y, epochs=5, lr=1e-2, validation_data=(X_dev, y_dev), restore_best=False,
               metrics_on_train=True)
    assert ha["loss"] == hb["loss"] and np.array_equal(a.theta, b.theta)


def test_history_without_validation_reads_like_the_old_dict():
    X, y = _xor(200)
    h = MLP(2, (4,)).fit(X, y, epochs=3)
    assert h == {"loss": h.loss} and dict(h) == {"loss": h["loss"]} and len(h["loss"]) == 3
    assert h.best_epoch is None and h.monitor is None and h.val_loss == []
    assert [r["epoch"] for r in h.rows()] == [1, 2, 3]


def test_callback_still_sees_each_epoch_and_stops_with_validation():
    X, y, X_dev, y_dev = _noisy()
    seen = []
    h = MLP(6, (8,)).fit(X, y, epochs=10, validation_data=(X_dev, y_dev), patience=50,
                         callback=lambda e, loss: seen.append(e) or e == 2)
    assert seen == [0, 1, 2] and h.epochs == 3 and not h.stopped_early


def test_verbose_2_prints_one_line_per_epoch(capsys):
    X, y, X_dev, y_dev = _noisy()
    MLP(6, (8,)).fit(X, y, epochs=4, validation_data=(X_dev, y_dev), verbose=2, desc="net")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    for k, line in enumerate(lines, start=1):
        assert line.startswith(f"net: Epoch {k}/4 - loss: ")
        assert " - val_loss: " in line and " - val_roc_auc: " in line
    MLP(6, (8,)).fit(X, y, epochs=2, verbose=0)
    MLP(6, (8,)).fit(X, y, epochs=2, verbose=1, desc="net")  # stderr is no terminal here
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("net: 2 epochs, ") and out.err.count("\n") == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"monitor": "val_auc", "validation_data": "dev"}, "monitor must be one of"),
        ({"patience": 0, "validation_data": "dev"}, "patience must be >= 1"),
        ({"patience": 2.5, "validation_data": "dev"}, "patience must be an int"),
        ({"patience": 3}, "patience=3 needs validation_data"),
        ({"monitor": "val_loss"}, "monitor='val_loss' needs validation_data"),
        ({"verbose": 3}, "verbose must be 0"),
        ({"restore_best": "yes"}, "restore_best must be True or False"),
        ({"validation_data": "one"}, "validation_data must be a pair"),
        ({"validation_data": "columns"}, "validation_data X has 5 columns"),
        ({"validation_data": "one class"}, "validation_data y needs both classes"),
        ({"validation_data": "labels"}, "validation_data y must hold 0/1 labels"),
    ],
)
def test_fit_rejects_bad_validation_arguments_before_training(kwargs, message):
    X, y, X_dev, y_dev = _noisy()
    data = {"dev": (X_dev, y_dev), "one": (X_dev,), "columns": (X_dev[:, 1:], y_dev),
            "one class": (X_dev, np.zeros(len(y_dev))), "labels": (X_dev, y_dev * 2)}
    if "validation_data" in kwargs:
        kwargs = {**kwargs, "validation_data": data[kwargs["validation_data"]]}
    m = MLP(6, (4,))
    theta = m.theta.copy()
    with pytest.raises(ValueError, match=message):
        m.fit(X, y, epochs=2, **kwargs)
    assert np.array_equal(m.theta, theta)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"epochs": 0}, r"^epochs must be >= 1, got 0$"),
     ({"lr": 0.0}, r"^lr must be a finite number > 0, got 0.0$"),
     ({"lr": -1e-3}, r"^lr must be a finite number > 0, got -0.001$")],
)
def test_no_epoch_and_no_learning_rate_are_refused_and_change_nothing(backend, kwargs, message):
    """``fit(epochs=0)`` used to return an empty History and ``lr=0`` to train in place:
    both are refused (the bounds of ``train.py``), and the model's state is untouched, so a
    fit that follows is that of a fresh model."""
    X, y = _xor(200)
    m = MLP(2, (8,), seed=1, backend=backend, dtype="float64")
    theta = m.theta.copy()
    with pytest.raises(ValueError, match=message):
        m.fit(X, y, **{"epochs": 2, "lr": 1e-2, **kwargs})
    assert np.array_equal(m.theta, theta)
    m.fit(X, y, epochs=2, lr=1e-2)
    fresh = MLP(2, (8,), seed=1, backend=backend, dtype="float64")
    fresh.fit(X, y, epochs=2, lr=1e-2)
    np.testing.assert_array_equal(m.theta, fresh.theta)


# --------------------------------------------------------------------------- selection

REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"


def uci_sample(path: Path, every: int) -> Path:
    """Header plus every ``every``-th UCI row."""
    lines = UCI.read_text().splitlines()
    path.write_text("\n".join([lines[0], *lines[1:][every - 1 :: every]]) + "\n")
    return path


@pytest.fixture(scope="module")
def uci_split(tmp_path_factory):
    from features.datasets import TableData, resolve_schema

    path = uci_sample(tmp_path_factory.mktemp("uci") / "s.csv", every=6)
    return TableData(path, resolve_schema()).split(0)


def test_train_network_is_fit_with_early_stopping_on_dev(uci_split):
    from nn_core.metrics import roc_auc
    from nn_core.selection import NetConfig, train_network

    split = uci_split
    cfg = NetConfig(patience=2, epochs=60)
    model, history, best = train_network(cfg, split.X, split.y, 0)
    assert list(history[0]) == ["epoch", "train_objective", "train_loss", "dev_loss",
                                "dev_roc_auc"]
    aucs = [h["dev_roc_auc"] for h in history]
    assert best == int(np.argmax(aucs)) + 1
    if len(history) < 60:  # stopped early: exactly `patience` epochs after the best one
        assert len(history) == best + 2
    restored = roc_auc(split.y["dev"], model.predict_proba(split.X["dev"]))
    assert restored == pytest.approx(aucs[best - 1], abs=1e-12)
    # Without restoring, the model is the last epoch's and that is the epoch reported.
    last, history_last, best_last = train_network(replace(cfg, restore_best=False), split.X,
                                                  split.y, 0)
    assert history_last == history and best_last == len(history)
    assert roc_auc(split.y["dev"], last.predict_proba(split.X["dev"])) == aucs[-1]


def test_tune_selects_on_dev_and_is_reproducible(uci_split):
    from nn_core.selection import NetConfig, tune

    cfg = NetConfig(epochs=2)
    best, trials = tune(cfg, uci_split.X, uci_split.y, 0, 3)
    assert [t["trial"] for t in trials] == [0, 1, 2]
    assert trials[0]["hidden"] == "64" and trials[0]["lr"] == cfg.lr  # trial 0 is cfg
    assert sum(t["selected"] for t in trials) == 1
    chosen = next(t for t in trials if t["selected"])
    assert chosen is max(trials, key=lambda t: t["dev_roc_auc"])  # first of the best
    assert ",".join(map(str, best.hidden)) == chosen["hidden"] and best.lr == chosen["lr"]
    assert best.epochs == 2  # only the searched fields change
    _, again = tune(cfg, uci_split.X, uci_split.y, 0, 3)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(again) == drop(trials)


def test_summarise_gives_mean_and_sample_std():
    from nn_core.selection import summarise

    def run(auc, loss):
        part = {"roc_auc": auc, "log_loss": loss}
        return {"model": {"dev": part, "test": part}, "baseline": {"dev": part, "test": part}}

    mean, std = summarise([run(0.9, 0.3), run(0.8, 0.5), run(0.7, 0.1)])
    assert mean["model"]["test"]["roc_auc"] == pytest.approx(0.8)
    assert std["baseline"]["dev"]["log_loss"] == pytest.approx(0.2)  # ddof=1
    mean1, std1 = summarise([run(0.9, 0.3)])
    assert mean1["model"]["dev"] == {"roc_auc": 0.9, "log_loss": 0.3}
    assert std1["model"]["test"] == {"roc_auc": 0.0, "log_loss": 0.0}


def test_csv_text_and_jsonable():
    from nn_core.selection import csv_text, jsonable

    assert csv_text([{"a": 1, "b": 0.5}, {"a": 2, "b": True}]) == "a,b\n1,0.5\n2,True\n"
    doc = jsonable({"n": np.int64(3), "x": (np.float32(0.5), None), 1: np.datetime64("2017")})
    assert doc == {"n": 3, "x": [0.5, None], "1": "2017"}
    assert type(doc["n"]) is int and type(doc["x"][0]) is float


def test_plot_functions_write_pngs(tmp_path):
    from nn_core import plots

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(rng.random(300) * 0.6 + 0.35 * y, 0, 1)
    scores = {"model": (y, p), "other": (y, rng.random(300))}
    paths = [
        plots.plot_loss_curves({"train": [0.5, 0.4, 0.35], "dev": [0.5, 0.45, 0.46]},
                               tmp_path / "loss.png", best_epoch=2),
        plots.plot_roc(scores, tmp_path / "roc.png"),
        plots.plot_pr(scores, tmp_path / "pr.png"),
        plots.plot_reliability(scores, tmp_path / "rel.png"),
        plots.plot_gains(scores, tmp_path / "gains.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5_000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


# --------------------------------------------------------------------------- data adapters


def test_table_data_splits_are_seeded_stratified_and_fitted_on_train(uci_split, tmp_path):
    from features.datasets import TableData, resolve_schema

    data = TableData(uci_sample(tmp_path / "s.csv", every=6), resolve_schema())
    assert data.info["rows"] == 2055 and data.info["target"] == "Revenue"
    split = data.split(0)
    sizes = {k: len(v) for k, v in split.y.items()}
    assert sum(sizes.values()) == 2055 and abs(sizes["train"] - 0.7 * 2055) <= 2
    for part in ("train", "dev", "test"):
        assert abs(split.y[part].mean() - data.y.mean()) < 0.01  # stratified
        assert split.X[part].shape == (sizes[part], split.pre.n_features)
        np.testing.assert_array_equal(split.X[part], uci_split.X[part])  # same seed, same split
    assert split.baseline_X is split.X and split.baseline_pre is split.pre
    means = [c["mean"] for c in split.pre.columns if c["kind"] == "numeric"]
    # The features are in the network's dtype (float32 by default): standardised on train,
    # their train means are 0 to float32 rounding; in float64 to 1e-9.
    assert split.X["train"].dtype == np.float32
    np.testing.assert_allclose(split.X["train"][:, : len(means)].mean(axis=0, dtype=np.float64),
                               0, atol=1e-6)
    X64 = TableData(tmp_path / "s.csv", resolve_schema(), dtype="float64").split(0).X["train"]
    np.testing.assert_allclose(X64[:, : len(means)].mean(axis=0), 0, atol=1e-9)
    assert not np.array_equal(data.split(1).y["dev"], split.y["dev"])


def test_schema_roles_and_split_errors(tmp_path):
    from features.datasets import RolesError, SplitError, TableData, resolve_schema
    from features.tabular import Schema

    assert resolve_schema() == Schema.uci()
    custom = resolve_schema(target="bought", numeric=("visits",), categorical=("channel",))
    assert custom.numeric == ("visits",) and custom.categorical == ("channel",)
    assert custom.ranges == {} and custom.target == "bought"
    cfg = tmp_path / "roles.json"
    cfg.write_text('{"target": "bought", "numeric": ["visits", "spend"]}')
    assert resolve_schema(cfg, numeric=("spend",)).numeric == ("spend",)  # arguments win
    with pytest.raises(RolesError, match=r"column roles: .*more than one role"):
        resolve_schema(numeric=("Administrative",), categorical=("Administrative",))
    path = uci_sample(tmp_path / "s.csv", every=32)
    with pytest.raises(SplitError) as err:
        TableData(path, resolve_schema(), (0.98, 0.01, 0.01)).split(0)
    assert str(err.value) == (f"{path}: the dev part of the split has 0 buyers among 3 rows; it "
                              "needs both classes (more data or other --split)")
