"""The ``cupy`` backend's code on the CPU, with ``tests/strict_cupy.py`` standing in for CuPy.

The stand-in keeps CuPy's rules (no implicit device -> host conversion, no host
arrays in device expressions, 0-d device arrays from reductions, NEP 18
dispatch only to functions CuPy has) and logs every device <-> host copy, so
these tests catch the usual CuPy mistakes without a GPU. Its arithmetic is
NumPy's, so the ``cupy`` backend must agree with ``numpy`` to the last bit here;
on a real GPU ``tests/test_backends.py: test_cupy_matches_numpy`` applies the
documented tolerances instead.
"""

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import strict_cupy

from nn_core import MLP, activations
from nn_core.testing import OPTION_CASES, assert_backends_agree

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cupy(monkeypatch):
    """``import cupy`` gives the strict stand-in (one fake device), with an empty transfer log."""
    return strict_cupy.install(monkeypatch)


# --------------------------------------------------------------------------- the stand-in itself


def test_stand_in_refuses_what_cupy_refuses(cupy):
    d = cupy.asarray(np.arange(6.0).reshape(2, 3))
    host = np.ones(3)
    refused = {
        "np.asarray(device)": lambda: np.asarray(d),
        "device + host": lambda: d + host,
        "host + device": lambda: host + d,
        "device + 0-d host array": lambda: d + np.array(1.0),
        "device + list": lambda: np.add(d, [1.0, 2.0, 3.0]),
        "host out=": lambda: np.add(d, 1.0, out=np.empty((2, 3))),
        "in-place host into device": lambda: d.__iadd__(host),
        "ufunc method other than __call__": lambda: np.add.reduce(d),
        "a NumPy function CuPy lacks here": lambda: np.median(d),
        "concatenate host and device": lambda: np.concatenate([d.ravel(), host]),
        "index with a host array": lambda: d[np.array([0, 1])],
        "float32 times a float64 NumPy scalar": lambda: d.astype(np.float32) * np.float64(2),
    }
    for what, call in refused.items():
        with pytest.raises(TypeError):
            call()
            pytest.fail(f"accepted: {what}")
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.array(d)


def test_stand_in_accepts_what_cupy_accepts(cupy):
    d = cupy.asarray(np.arange(6.0).reshape(2, 3))
    assert type(d).__module__ == "cupy" and not isinstance(d, np.ndarray)
    total = d.sum()
    assert type(total) is cupy.ndarray and total.shape == ()  # 0-d device array, not a scalar
    assert type(d[0, 0]) is cupy.ndarray
    assert type(np.exp(d)) is cupy.ndarray  # NumPy ufunc -> CuPy (__array_ufunc__)
    assert type(np.concatenate([d.ravel(), d.ravel()])) is cupy.ndarray  # NEP 18
    assert (d * np.float64(2.0)).dtype == np.float64  # same dtype: no ambiguity
    assert (d.astype(np.float32) * 2.5).dtype == np.float32  # Python scalars are weak
    u = cupy.arange(3, dtype=cupy.uint64) + np.uint64(2**63)
    assert u.dtype == np.uint64
    row = d[1]
    row[0] = 30.0  # a basic slice is a view: the write shows in the base
    flat = d.ravel()
    flat -= 1.0
    assert cupy.transfer_counts() == {"h2d": 1}
    assert float(d[1, 0]) == 29.0 and d.sum().item() == 36.0
    np.testing.assert_array_equal(cupy.asnumpy(d), [[-1.0, 0.0, 1.0], [29.0, 3.0, 4.0]])
    assert cupy.transfer_counts() == {"h2d": 1, "d2h": 3}


# --------------------------------------------------------------------------- backend agreement


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output", ["sigmoid", "identity"])
@pytest.mark.parametrize("activation", list(activations.ACTIVATIONS))
def test_cupy_matches_numpy_on_the_stand_in(cupy, activation, output, dtype):
    """Forward, loss, every gradient, predictions and one epoch of Adam with dropout, sample
    weights, pos_weight (sigmoid) and L2: the helper compares host results (``np.asarray``
    inside it would raise on a device array), and the same NumPy arithmetic gives the same bits."""
    errors = assert_backends_agree(
        "numpy", "cupy", dtype, activation=activation, output=output, dropout=0.2
    )
    assert max(errors.values()) == 0.0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", OPTION_CASES, ids=repr)
def test_cupy_matches_numpy_options_on_the_stand_in(cupy, case, dtype):
    errors = assert_backends_agree("numpy", "cupy", dtype, **case)
    assert max(errors.values()) == 0.0


def test_stand_in_catches_host_arrays_in_the_reference(cupy, monkeypatch):
    """Not vacuous: dropout masks drawn with NumPy instead of the array module are refused."""
    from nn_core import reference

    monkeypatch.setattr(reference, "array_module", lambda *arrays: np)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    MLP(3, (4,), backend="numpy", dropout=0.2).fit(X, y, epochs=1)  # fine on the host
    with pytest.raises(TypeError, match="Unsupported type"):
        MLP(3, (4,), backend="cupy", dropout=0.2).fit(X, y, epochs=1)


# --------------------------------------------------------------------------- fused kernels


def _refused_inside_fuse(cupy):
    """Bodies that CuPy's fusion tracer cannot trace (``cupy/_core/fusion.pyx``)."""
    return {
        "NumPy's ufunc": lambda x, y: np.exp(x),
        "indexing": lambda x, y: x[0],
        ".shape": lambda x, y: x * x.shape[0],
        "a reduction method": lambda x, y: x.sum(),
        "two reductions": lambda x, y: cupy.sum(x) + cupy.sum(y),
        "@": lambda x, y: x @ y,
        "a Python if on values": lambda x, y: x if x > 0 else y,
        "creating an array": lambda x, y: x + cupy.zeros(3),
    }


def test_stand_in_fuse_refuses_what_the_fusion_tracer_cannot_trace(cupy):
    x, y = cupy.asarray(np.arange(3.0)), cupy.asarray(np.ones(3))
    for what, body in _refused_inside_fuse(cupy).items():
        with pytest.raises(TypeError, match=r"not supported inside cupy\.fuse"):
            cupy.fuse(kernel_name="body")(body)(x, y)
            pytest.fail(f"accepted inside cupy.fuse: {what}")
    add = cupy.fuse(lambda a, b: a + b)
    for argument in (np.ones(3), np.float64(1.0), [1.0, 1.0, 1.0]):
        with pytest.raises(TypeError, match=r"cupy\.fuse argument"):
            add(x, argument)
    assert not cupy.FUSED_CALLS


def test_stand_in_fuse_runs_what_the_fusion_tracer_traces(cupy):
    @cupy.fuse(kernel_name="update")
    def update(theta, g, lr):
        theta -= lr * cupy.sqrt(g * g).astype(theta.dtype)
        return cupy.sum(theta * theta) / 2

    theta = cupy.asarray(np.arange(4.0, dtype=np.float32))
    half_norm = update(theta, cupy.asarray(np.full(4, -2.0, dtype=np.float32)), 0.5)
    np.testing.assert_array_equal(theta.get(), [-1.0, 0.0, 1.0, 2.0])  # written in place
    assert half_norm.dtype == np.float32 and half_norm.item() == 3.0
    assert cupy.FUSED_CALLS == {"update": 1}
    assert cupy.fuse(lambda a: a)(theta) is not theta  # results are new arrays


def _epoch_kernels(cupy, n=100, batch_size=25, **fit):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] > 0).astype(float)
    model = MLP(5, (4, 3), backend="cupy", dropout=fit.pop("dropout", 0.0))
    cupy.FUSED_CALLS.clear()
    model.fit(X, y, epochs=1, batch_size=batch_size, **fit)
    return dict(cupy.FUSED_CALLS), model


@pytest.mark.parametrize(
    "fit, update",
    [
        ({}, "adam_update"),
        ({"optimizer": "sgd", "weight_decay": 0.01}, "sgd_update"),
        ({"optimizer": "momentum", "dropout": 0.2}, "momentum_update"),
        ({"optimizer": "momentum", "nesterov": True}, "nesterov_update"),
    ],
)
def test_each_batch_runs_its_elementwise_work_as_fused_kernels(cupy, fit, update):
    """Per batch of a 5 -> 4 -> 3 -> 1 ReLU network: one kernel for each hidden layer's
    ReLU, one per backward rule, one for the output function, one for the per-sample loss,
    one for the optimizer (and one for decoupled weight decay, one per dropout mask); the
    bias additions, the output delta and the loss's sum are CuPy's own kernels."""
    calls, _ = _epoch_kernels(cupy, **fit)
    batches = 4
    expected = {
        "relu": 2 * batches,
        "relu_backward": 2 * batches,
        "sigmoid": batches,
        "bce_with_logits": batches,
        update: batches,
    }
    if fit.get("weight_decay"):
        expected["decay_weights"] = batches
    if fit.get("dropout"):
        expected["inverted_dropout"] = 2 * batches
    assert calls == expected


def test_unfused_rules_give_the_same_bits(cupy, monkeypatch):
    """``fusion.FUSE = False`` (what gpu_check times against) runs the same rules op by op."""
    from nn_core import fusion

    _, fused_model = _epoch_kernels(cupy, dropout=0.2, weight_decay=0.01)
    monkeypatch.setattr(fusion, "FUSE", False)
    calls, unfused_model = _epoch_kernels(cupy, dropout=0.2, weight_decay=0.01)
    assert calls == {}
    np.testing.assert_array_equal(fused_model.theta, unfused_model.theta)


# --------------------------------------------------------------------------- transfers


def _data(n=150, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(float)


@pytest.mark.parametrize("with_callback", [False, True])
@pytest.mark.parametrize("batch_size", [16, 150])
def test_fit_keeps_data_and_parameters_on_the_device(cupy, batch_size, with_callback):
    """Per epoch: the row order goes over and the loss (0-d) comes back, and theta too only
    when a callback may look at the weights; nothing per batch (10 batches or 1 give the same
    count). Once: data, theta, decay mask and optimizer state go over; theta (unless it came
    back after the last epoch) and the optimizer state come back at the end."""
    X, y = _data()
    m = MLP(5, (8, 4), backend="cupy", dtype="float64", dropout=0.1)
    epochs = 3
    callback = (lambda epoch, loss: False) if with_callback else None
    m.fit(X, y, epochs=epochs, batch_size=batch_size, sample_weight=np.ones(150), l2=1e-3,
          callback=callback)
    log = strict_cupy.TRANSFERS
    to_device = [t for t in log if t[0] == "h2d"]
    to_host = [t for t in log if t[0] == "d2h"]
    assert len(to_device) == 7 + epochs  # X, y, s, theta, decay mask, m, v; an order per epoch
    assert [shape for _, _, shape, _ in to_device[-epochs:]] == [(150,)] * epochs
    # the loss per epoch; theta per epoch or once; at the end Adam's m and v
    thetas = epochs if with_callback else 1
    shapes = Counter(shape for _, _, shape, _ in to_host)
    assert shapes == {(): epochs, (m.n_params,): thetas + 2}
    assert sum(nbytes for _, nbytes, _, _ in to_host) == 8 * (epochs + (thetas + 2) * m.n_params)


def test_callback_sees_the_current_weights_and_can_stop(cupy):
    X, y = _data()
    ref = MLP(5, (8,), backend="numpy", dtype="float64")
    ref_seen = []
    ref.fit(X, y, epochs=3, callback=lambda e, loss: ref_seen.append(ref.get_weights()) or e == 1)
    m = MLP(5, (8,), backend="cupy", dtype="float64")
    seen = []
    history = m.fit(X, y, epochs=3, callback=lambda e, loss: seen.append(m.get_weights()) or e == 1)
    assert len(history["loss"]) == len(seen) == 2
    for a, b in zip(seen, ref_seen, strict=True):
        for (W, bias), (W_ref, b_ref) in zip(a, b, strict=True):
            assert np.array_equal(W, W_ref) and np.array_equal(bias, b_ref)


def test_interrupted_fit_leaves_the_state_the_numpy_backend_leaves(cupy, monkeypatch):
    """An exception inside an epoch: theta, the optimizer's moments and step count on the host
    must belong together, as with the NumPy backend, which updates them in place."""
    from nn_core import optim

    step = optim.Optimizer.step

    def failing_step(self, theta, g, lr, decay_mask):
        if self.t == 13:
            raise KeyboardInterrupt
        step(self, theta, g, lr, decay_mask)

    monkeypatch.setattr(optim.Optimizer, "step", failing_step)
    X, y = _data()
    models = [MLP(5, (8,), backend=b, dtype="float64") for b in ("numpy", "cupy")]
    for m in models:
        with pytest.raises(KeyboardInterrupt):
            m.fit(X, y, epochs=3, batch_size=32)  # 5 steps per epoch: stops inside epoch 3
    a, b = models
    assert a._optimizer.t == b._optimizer.t == 13
    assert type(b._optimizer.m) is np.ndarray and type(b._optimizer.v) is np.ndarray
    assert np.array_equal(a._optimizer.m, b._optimizer.m)
    assert np.array_equal(a.theta, b.theta)


def test_continued_fit_and_backend_switch(cupy):
    """Optimizer state comes back to the host, so a later fit (any backend) continues it."""
    X, y = _data(100, 4)
    m = MLP(4, (3,), backend="cupy", dtype="float64")
    ref = MLP(4, (3,), backend="numpy", dtype="float64")
    for model in (m, ref):
        model.fit(X, y, epochs=1)
        model.fit(X, y, epochs=1)
    assert type(m._optimizer.m) is np.ndarray
    assert np.array_equal(m.theta, ref.theta)
    m.backend = ref.backend = "numba"
    m.fit(X, y, epochs=1)
    ref.fit(X, y, epochs=1)
    assert np.array_equal(m.theta, ref.theta)


# --------------------------------------------------------------------------- an ordinary model


def test_cupy_trained_model_saves_loads_predicts_and_exports(cupy, tmp_path):
    import pandas as pd
    from export_helpers import import_file

    from features.tabular import Preprocessor
    from nn_core import export as ex
    from nn_core import load_model, save_model

    rng = np.random.default_rng(2)
    n = 240
    df = pd.DataFrame({
        "amount": rng.normal(size=n),
        "visits": rng.poisson(3.0, size=n).astype(float),
        "channel": rng.choice(["web", "app", "shop"], size=n),
    })
    y = ((df["amount"] > 0) ^ (df["channel"] == "app")).astype(float).to_numpy()
    pre = Preprocessor(["amount", "visits"], ["channel"]).fit(df)
    X = pre.transform(df)
    gpu = MLP(X.shape[1], (6, 4), backend="cupy", seed=1)
    ref = MLP(X.shape[1], (6, 4), backend="numpy", seed=1)
    for model in (gpu, ref):
        model.fit(X, y, epochs=3, batch_size=32, lr=1e-2)
    assert np.array_equal(gpu.theta, ref.theta)
    p = gpu.predict_proba(X)
    assert type(p) is np.ndarray and p.dtype == np.float32 and p.shape == (n,)
    save_model(tmp_path / "m", gpu, pre)
    for backend in ("numba", "numpy", "cupy"):
        loaded = load_model(tmp_path / "m", backend=backend)
        assert np.max(np.abs(loaded.predict_proba(df) - p)) <= 1e-6
    model, _ = ex.load_model_dir(tmp_path / "m")
    files, _ = ex.export(model, "python", "gpu_model")
    ex.write_all(tmp_path / "out", files)
    mod = import_file(tmp_path / "out" / "gpu_model.py", "gpu_model")
    raw = ex.encode_table(model, df)
    assert np.max(np.abs(np.asarray(mod.predict_proba(raw.tolist())) - p)) <= 1e-6


# --------------------------------------------------------------------------- the GPU script


def test_gpu_check_runs_on_the_stand_in(cupy, monkeypatch, capsys, tmp_path):
    """benchmarks/gpu_check.py, the script meant for one run on a real GPU, runs end to end
    (cross-check, save/load, a small throughput table) and reports no failure."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_check

    report = tmp_path / "report.md"
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--rows", "3000", "--out", str(report)])
    assert gpu_check.main() == 0
    text = report.read_text()
    assert "| NO |" not in text and "cross-check failures: 0" in text
    assert text.count("| numba |") == 3
    assert text.count("| cupy, fused |") == 3 and text.count("| cupy, unfused |") == 3
