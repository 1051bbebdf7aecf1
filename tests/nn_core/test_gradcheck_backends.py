"""A bug planted in each backend's backward pass is caught, in the layer where it was planted.

``gradcheck`` checks the gradient the model's own backend computes, so a bug in any
backend's backward pass must fail it, and the report must name the array it is in:

* numpy: ``nn_core/reference.py: layer_backward`` returns one layer's ``dW`` or ``db``
  1 % off (a wrong factor in that layer's backward step);
* numba: the backward pass is compiled, so the bug is planted at its Python boundary,
  ``nn_core/kernels.py: train_epoch`` as ``NumbaBackend.loss_and_grad`` calls it: one
  layer's gradient comes back 1 % off, or without its L2 term;
* cupy, on the CPU stand-in ``tests/helpers/strict_cupy.py``: the reference code again,
  on device arrays, with the same planted bug as numpy.

Each network has layers of distinct shapes (4 -> 5 -> 3 -> 1), so a layer is recognised
by the shape of its ``W``.
"""

import numpy as np
import pytest
import strict_cupy

from nn_core import MLP, gradcheck, kernels, reference
from nn_core.testing import assert_gradients_match

HIDDEN = (5, 3)
SHAPES = [(4, 5), (5, 3), (3, 1)]  # W of layers 0, 1, 2
DTYPES = ["float64", "float32"]
ARRAYS = [(layer, name) for layer in range(3) for name in ("W", "b")]


@pytest.fixture
def cupy(monkeypatch):
    """``import cupy`` gives the strict stand-in (as in ``test_cupy_stand_in.py``)."""
    return strict_cupy.install(monkeypatch)


def _problem():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 4))
    y = (rng.random(12) < 0.4).astype(float)
    return X, y


def _model(backend, dtype, activation="tanh"):
    m = MLP(4, HIDDEN, activation, "sigmoid", dtype=dtype, seed=2, backend=backend)
    m.theta[:] = np.random.default_rng(3).normal(0.0, 0.8, m.n_params)
    return m


def plant_in_layer_backward(monkeypatch, layer, name, factor=1.01):
    """Make the reference's backward step of ``layer`` return ``dW`` or ``db`` times ``factor``."""
    original = reference.layer_backward

    def layer_backward(H_prev, W, delta):
        dW, db, dH = original(H_prev, W, delta)
        if W.shape == SHAPES[layer]:
            if name == "W":
                dW = dW * factor
            else:
                db = db * factor
        return dW, db, dH

    monkeypatch.setattr(reference, "layer_backward", layer_backward)


def plant_in_numba_kernel(monkeypatch, layer, name, bug="scaled", factor=1.01):
    """Make the compiled epoch kernel return one layer's gradient wrong (``factor`` times it,
    or without its L2 term).

    ``NumbaBackend.loss_and_grad`` runs one full-batch step of
    ``kernels.train_epoch`` with a learning rate of 0 and reads the gradient it
    leaves in ``grad``; the wrapper spoils that gradient after the compiled call,
    as a bug in that layer's backward code would.
    """
    original = kernels.train_epoch

    def train_epoch(X, y, s, order, theta, grad, layout, act, out, l2, *rest):
        result = original(X, y, s, order, theta, grad, layout, act, out, l2, *rest)
        w_off, b_off, _, fan_out = layout[layer]
        part = slice(w_off, b_off) if name == "W" else slice(b_off, b_off + fan_out)
        if bug == "scaled":
            grad[part] *= factor
        else:  # "missing_l2": the layer's dW without its l2 * W
            grad[part] -= l2 * theta[part]
        return result

    monkeypatch.setattr(kernels, "train_epoch", train_epoch)


def assert_caught_in(report, layer, name, error=None):
    """The check fails, its worst entry is in (layer, name), and every other array passes;
    the largest error 0.9 to 1.01 times ``error`` if given (a relative bug ``e`` gives
    ``e / (2 + e)`` at entries above the floor)."""
    assert not report.ok, report
    assert report.where[:2] == (layer, name), report
    others = {k: e for k, e in report.per_layer.items() if k != (layer, name)}
    assert all(e < report.tolerance for e in others.values()), report
    # 1 % off gives a relative error near 0.01 / 2: far beyond either dtype's tolerance.
    assert report.max_error > 20 * report.tolerance, report
    assert error is None or 0.9 * error < report.max_error < 1.01 * error, report
    with pytest.raises(AssertionError, match=f"at layer {layer} {name}\\["):
        assert_gradients_match(report)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_unbroken_backends_pass(backend, dtype):
    X, y = _problem()
    assert_gradients_match(_model(backend, dtype), X, y, l2=0.2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("layer", "name"), ARRAYS)
def test_a_bug_in_the_numpy_backward_pass_is_located(monkeypatch, layer, name, dtype):
    X, y = _problem()
    m = _model("numpy", dtype)
    plant_in_layer_backward(monkeypatch, layer, name)
    assert_caught_in(gradcheck(m, X, y), layer, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("layer", "name"), ARRAYS)
def test_a_bug_in_the_numba_backward_pass_is_located(monkeypatch, layer, name, dtype):
    X, y = _problem()
    m = _model("numba", dtype)
    plant_in_numba_kernel(monkeypatch, layer, name)
    assert_caught_in(gradcheck(m, X, y), layer, name)
    # The float64 reference is not what is broken: the reference-only check passes.
    assert gradcheck(m, X, y, reference=True).ok


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("layer", "name"), ARRAYS)
def test_a_bug_is_located_in_a_fresh_relu_network_on_its_kinks(monkeypatch, layer, name, dtype):
    """A fresh 6 -> 5 -> 4 -> 1 ReLU network (zero biases, the weights as drawn): an entry
    whose step +h crosses a kink (here layer 1's b[2], on it at a row) is compared with the
    backward difference, and a 1 % bug is caught in every array, that one included."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 6)), (rng.random(20) > 0.5).astype(float)
    m = MLP(6, (5, 4), "relu", "sigmoid", dtype=dtype, seed=18, backend="numba")
    assert [(str(k), k.side) for k in gradcheck(m, X, y).kinks] == [("layer 1 b[2]", -1)]
    plant_in_numba_kernel(monkeypatch, layer, name)
    report = gradcheck(m, X, y)
    assert_caught_in(report, layer, name)
    assert [(str(k), k.side) for k in report.kinks] == [("layer 1 b[2]", -1)]


@pytest.mark.parametrize(("layer", "name"), ARRAYS)
def test_a_1e4_bug_is_located_in_float64_above_the_rounding_noise(monkeypatch, layer, name):
    """A fresh float64 ReLU network whose floor the loss's rounding raises to 2.4e-5 (it failed
    with correct gradients before, the floor held at 1e-6): every array's gradient 1e-4 too
    large (a relative error of 5e-5) is still caught, and located, layer 1's b too, whose
    four entries are on their kinks at a row and compared one-sided (left out before, the
    bug there passed). (The float32 check, whose tolerance is 1e-4, cannot see so small a
    bug; its float64 copy can.)"""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 6)), (rng.random(60) > 0.5).astype(float)
    m = MLP(6, (5, 4), "relu", "sigmoid", dtype="float64", seed=0, backend="numba")
    clean = gradcheck(m, X, y)
    assert clean.ok and clean.floor > 20 * clean.tolerance, clean
    plant_in_numba_kernel(monkeypatch, layer, name, factor=1 + 1e-4)
    report = gradcheck(m, X, y)
    assert_caught_in(report, layer, name, error=1e-4 / 2)
    assert [(str(k), k.side) for k in report.kinks] == [(f"layer 1 b[{j}]", -1) for j in range(4)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_a_missing_l2_term_in_the_numba_kernel_is_located(monkeypatch, layer, dtype):
    X, y = _problem()
    m = _model("numba", dtype)
    plant_in_numba_kernel(monkeypatch, layer, "W", bug="missing_l2")
    assert gradcheck(m, X, y).ok  # without L2 there is nothing to miss
    assert_caught_in(gradcheck(m, X, y, l2=0.5), layer, "W")


def test_the_check_is_of_the_backend_not_of_the_reference(monkeypatch):
    """A bug in the reference's backward breaks the numpy model and the reference-only
    check, not the numba model's check: what is checked is what trains the model."""
    X, y = _problem()
    plant_in_layer_backward(monkeypatch, 1, "W")
    assert not gradcheck(_model("numpy", "float64"), X, y).ok
    numba_model = _model("numba", "float32")
    assert_gradients_match(numba_model, X, y)
    assert not gradcheck(numba_model, X, y, reference=True).ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_cupy_backend_passes_on_the_stand_in(cupy, dtype):
    X, y = _problem()
    report = assert_gradients_match(_model("cupy", dtype), X, y, l2=0.2)
    assert (report.backend, report.dtype) == ("cupy", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("layer", "name"), ARRAYS)
def test_a_bug_in_the_cupy_backward_pass_is_located(cupy, monkeypatch, layer, name, dtype):
    X, y = _problem()
    m = _model("cupy", dtype)
    plant_in_layer_backward(monkeypatch, layer, name)
    assert_caught_in(gradcheck(m, X, y), layer, name)
