"""Finite-difference gradient checks over every activation, depth, output and loss option.

Each configuration is checked on the float64 reference (numpy), and on the numba
backend in both dtypes: the gradient checked is the one the backend computes, at the
tolerance of its dtype (``nn_core/gradcheck.py: TOLERANCES``). Planted bugs in each
backend's backward pass are in ``test_gradcheck_backends.py``.
"""

import dataclasses
import importlib
import itertools
import math

import numpy as np
import pytest
from rule_sets import DTYPE_OF

from nn_core import MLP, GradcheckReport, activations, check_gradients, gradcheck, reference
from nn_core.gradcheck import (
    NOISE_FACTOR,
    ONE_SIDED_NOISE_FACTOR,
    TOLERANCES,
    UNIT_ROUNDOFF,
    Kink,
    input_gradcheck,
    kink_crossings,
    numerical_gradient,
    rounding_noise,
)
from nn_core.testing import assert_gradients_match

# ``nn_core.gradcheck`` the module (the package's ``gradcheck`` is the function).
GRADCHECK = importlib.import_module("nn_core.gradcheck")

ACTS = list(activations.ACTIVATIONS)
OPTIONS = {
    "plain": {},
    "sample_weight": {"sample_weight": np.random.default_rng(7).uniform(0.2, 2.0, 12)},
    "pos_weight": {"pos_weight": 4.0},
    "l2": {"l2": 0.3},
}
# pos_weight weighs the 0/1 labels of the sigmoid output; MLP.loss_and_grad refuses it
# for the identity output (test_pos_weight_is_refused_for_the_identity_output).
CONFIGURATIONS = [
    (act, n_hidden, output, option)
    for act, n_hidden, output, option in itertools.product(
        ACTS, [0, 1, 2, 3], ["sigmoid", "identity"], OPTIONS
    )
    if not (output == "identity" and option == "pos_weight")
]
BACKENDS = [("numpy", "float64"), ("numba", "float64"), ("numba", "float32")]


def _problem(output):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 4))
    y = (rng.random(12) < 0.4).astype(float) if output == "sigmoid" else rng.normal(size=12)
    return X, y


def _model(activation, n_hidden, output, backend="numpy", dtype="float64"):
    m = MLP(4, (3,) * n_hidden, activation, output, dtype=dtype, seed=2, backend=backend)
    # Check at a generic point: with zero biases, a ReLU unit whose inputs are
    # all zero sits exactly on its kink, where no derivative exists.
    m.theta[:] = np.random.default_rng(3).normal(0.0, 0.8, m.n_params)
    return m


# The numba backend compiles a kernel per activation and dtype (nn_core/kernels.py: entry):
# it checks each activation in one dtype, both dtypes used (tests/helpers/rule_sets.py).
CHECKS = [
    (*configuration, backend, dtype)
    for configuration in CONFIGURATIONS
    for backend, dtype in BACKENDS
    if backend == "numpy" or dtype == DTYPE_OF[configuration[0]]
]


@pytest.mark.parametrize(("activation", "n_hidden", "output", "option", "backend", "dtype"), CHECKS)
def test_gradcheck_every_configuration(activation, n_hidden, output, option, backend, dtype):
    X, y = _problem(output)
    m = _model(activation, n_hidden, output, backend, dtype)
    report = assert_gradients_match(m, X, y, **OPTIONS[option])
    assert (report.backend, report.dtype) == (backend, dtype)
    assert report.tolerance == TOLERANCES[dtype].tolerance
    assert report.kinks == ()  # at this generic point every entry is compared


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reference_mode_is_the_float64_check_whatever_the_backend(dtype):
    """``reference=True`` differentiates the float64 reference, for a numba model too: the
    same numbers as the numpy backend's check on the same (float64) weights."""
    X, y = _problem("sigmoid")
    m = _model("gelu", 2, "sigmoid", "numba", dtype)
    report = gradcheck(m, X, y, reference=True, l2=0.3)
    assert (report.backend, report.dtype, report.tolerance) == ("reference", "float64", 1e-6)
    assert report < 1e-6, report
    twin = _model("gelu", 2, "sigmoid", "numpy", "float64")
    twin.theta[:] = m.theta
    assert report.blocks == gradcheck(twin, X, y, l2=0.3).blocks


def test_pos_weight_is_refused_for_the_identity_output():
    X, y = _problem("identity")
    m = _model("tanh", 1, "identity")
    with pytest.raises(ValueError, match="pos_weight"):
        gradcheck(m, X, y, pos_weight=4.0)
    # The reference mode keeps its old leniency (no label is 1, so nothing changes).
    assert gradcheck(m, X, y, pos_weight=4.0, reference=True).ok


def test_gradcheck_catches_a_wrong_derivative(monkeypatch):
    """The check must fail when backprop is wrong: tanh's derivative off by a factor.

    The rule is applied in both hidden layers, so layer 1's gradients are 1 % off and
    layer 0's (two applications) 2 %; the output layer's are untouched.
    """
    X, y = _problem("sigmoid")
    m = _model("tanh", 2, "sigmoid")
    assert gradcheck(m, X, y) < 1e-6
    wrong = dataclasses.replace(
        activations.ACTIVATIONS["tanh"], backward=lambda Z, H, dH: dH * (1 - H * H) * 1.01
    )
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", wrong)
    report = gradcheck(m, X, y)
    assert report > 1e-3 and not report.ok
    assert report.where[0] == 0
    assert report.per_layer[(1, "W")] > 1e-3
    assert report.per_layer[(2, "W")] < 1e-6 and report.per_layer[(2, "b")] < 1e-6
    with pytest.raises(AssertionError, match=r"(?s)layer 0 .*FAILED"):
        assert_gradients_match(report)


def test_gradcheck_catches_a_missing_l2_term(monkeypatch):
    """Dropping the L2 term from dW (but not from the loss) must be detected, in W only."""
    X, y = _problem("sigmoid")
    m = _model("relu", 1, "sigmoid")
    original = reference.backward
    monkeypatch.setattr(
        reference,
        "backward",
        lambda p, H, Z, A, d, r, l2, masks=None: original(p, H, Z, A, d, r, 0.0),
    )
    report = gradcheck(m, X, y, l2=0.5)
    assert report > 1e-3
    assert report.where[1] == "W"
    assert max(report.per_layer[(layer, "b")] for layer in (0, 1)) < 1e-6


# --------------------------------------------------------------------------- the report


def test_the_report_locates_the_worst_entry_and_compares_as_a_number():
    X, y = _problem("sigmoid")
    m = _model("tanh", 1, "sigmoid")
    report = gradcheck(m, X, y)
    assert isinstance(report, GradcheckReport)
    assert set(report.per_layer) == {(0, "W"), (0, "b"), (1, "W"), (1, "b")}
    assert report.max_error == max(report.per_layer.values()) == float(report)
    layer, name, index = report.where
    assert report.per_layer[(layer, name)] == report.max_error
    assert len(index) == (2 if name == "W" else 1)
    grads = m.loss_and_grad(X, y)[1]
    assert report.worst.analytic == grads[layer][0 if name == "W" else 1][index]
    assert report < 1e-6 and report <= 1e-6 and not report > 1e-6 and not report >= 1e-6
    assert report < np.float32(1e-6) and np.float32(1e-6) > report  # NumPy scalars too
    assert report.ok and math.isclose(report.tolerance, 1e-6)
    text = str(report)
    assert "numpy (float64)" in text and text.endswith("ok")
    assert text.count("\n") == 1 + 1 + 4 + 0  # title, header, 4 arrays, verdict last
    assert "max_error" in repr(report)


def test_a_nan_gradient_is_the_worst_and_never_ok():
    report = check_gradients(
        lambda x: float((x * x).sum()), lambda x: np.where(x > 1.5, np.nan, 2 * x), [1.0, 2.0]
    )
    assert math.isnan(report.max_error) and not report.ok
    assert report.where == (None, "x", (1,))


def test_the_report_does_not_change_the_model():
    X, y = _problem("sigmoid")
    m = _model("relu", 2, "sigmoid", "numba", "float32")
    before = m.theta.copy()
    gradcheck(m, X, y, l2=0.1)
    np.testing.assert_array_equal(m.theta, before)


# --------------------------------------------------------------------------- check_gradients


@pytest.mark.parametrize("activation", ACTS)
def test_check_gradients_confirms_every_activation_rule(activation):
    """How a new activation is checked before it joins the table: ``f`` and its backward
    rule, through a random upstream gradient ``w`` (``sum(w * f(z))`` has gradient
    ``w * f'(z)``)."""
    act = activations.ACTIVATIONS[activation]
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, (4, 5))
    w = rng.normal(size=z.shape)
    report = assert_gradients_match(
        lambda z: (w * act.forward(z)).sum(), lambda z: act.backward(z, act.forward(z), w), z
    )
    assert report.backend == "function" and set(report.per_layer) == {(None, "x")}


def test_check_gradients_points_at_the_wrong_entry():
    """A derivative wrong in one region (here for z > 1) is reported at an entry there."""
    z = np.array([[-2.0, -0.5], [0.3, 1.7]])
    silu = activations.ACTIVATIONS["silu"]

    def wrong_backward(z):
        dz = silu.backward(z, silu.forward(z), np.ones_like(z))
        return np.where(z > 1, dz * 1.01, dz)

    report = check_gradients(lambda z: silu.forward(z).sum(), wrong_backward, z)
    assert not report.ok and report.where == (None, "x", (1, 1))
    with pytest.raises(AssertionError, match=r"x\[1, 1\], tolerance 1e-06: FAILED"):
        assert_gradients_match(report)


def test_check_gradients_takes_its_tolerance_from_the_gradient_dtype():
    x = np.linspace(-1.0, 1.0, 5)
    report = check_gradients(lambda x: (x**3).sum(), lambda x: (3 * x**2).astype(np.float32), x)
    assert report.dtype == "float32" and report.tolerance == TOLERANCES["float32"].tolerance
    assert report.ok
    with pytest.raises(ValueError, match="shape"):
        check_gradients(lambda x: x.sum(), lambda x: np.ones(3), np.zeros(4))


def test_one_numerical_routine_is_fourth_order():
    """Richardson's step leaves an O(h^4) error: sin' = cos to ~1e-12 at h = 1e-4."""
    x = np.array([0.3, 1.1, -2.0])
    np.testing.assert_allclose(numerical_gradient(lambda x: np.sin(x).sum(), x), np.cos(x),
                               rtol=0, atol=1e-11)
    # Any shape and memory order; the point itself is left alone.
    x = np.asfortranarray(np.arange(6.0).reshape(2, 3) / 4)
    before = x.copy()
    np.testing.assert_allclose(numerical_gradient(lambda x: np.sin(x).sum(), x), np.cos(x),
                               rtol=0, atol=1e-11)
    np.testing.assert_array_equal(x, before)


# --------------------------------------------------------------------------- kinks


def _fresh_problem():
    """The review's case: a fresh 6 -> 5 -> 4 -> 1 ReLU network (zero biases) on 20 rows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 6))
    y = (rng.random(20) > 0.5).astype(float)
    return X, y


def _on_a_kink(m, X):
    """``{(layer, "b", (j,))}`` for every hidden unit ``j`` whose ``Z`` is exactly 0 on some
    row: moving its bias by ``+h`` puts that row on the other side of the kink, ``-h`` not."""
    Z = reference.forward(m.unflatten(m.theta.astype(np.float64)), X,
                          reference.rules(m.activation, m.output))[1]
    return {(l, "b", (int(j),))
            for l, Z_l in enumerate(Z) for j in np.flatnonzero((Z_l == 0).any(axis=0))}


def _central_only(monkeypatch):
    """The check as it was before it looked for kinks: central differences everywhere."""
    monkeypatch.setattr(GRADCHECK, "_sides", lambda activation, layer_Z, x, h: (
        np.zeros(np.shape(x), dtype=np.int8), np.zeros(np.shape(x), dtype=bool)))


def test_only_the_relu_family_has_kinks():
    assert {name for name, a in activations.ACTIVATIONS.items() if a.kinks} == {"relu",
                                                                                "leaky_relu"}
    assert activations.ACTIVATIONS["relu"].kinks == (0.0,)


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_the_pieces_split_where_the_backward_rule_does(name):
    """At the kink itself the backward rule takes the slope of the piece ``pieces`` puts it
    on, ``Z <= 0``: the one the one-sided difference must come from."""
    act = activations.ACTIVATIONS[name]
    (c,) = act.kinks
    z = np.array([c - 1e-3, c, c + 1e-3])
    slope = act.backward(z, act.forward(z), np.ones(3))
    np.testing.assert_array_equal(GRADCHECK.pieces(z, act.kinks), [0, 0, 1])
    left = (act.forward(z[1]) - act.forward(z[0])) / 1e-3
    right = (act.forward(z[2]) - act.forward(z[1])) / 1e-3
    assert slope[1] == slope[0] == pytest.approx(left) and slope[2] == pytest.approx(right)
    assert left != pytest.approx(right)


@pytest.mark.parametrize("seed", range(20))
def test_a_fresh_relu_network_is_checked_one_sided_at_its_kinks(seed):
    """Zero biases put whole rows on the ReLU kink (a row whose layer-0 units are all off
    gives layer 1 ``Z = b = 0``): those biases are compared with the backward difference,
    whose step ``-h`` keeps the row on ``Z <= 0`` (13 of these 20 seeds failed with central
    differences alone; leaving the entries out hid a bug in them at every seed, below)."""
    X, y = _fresh_problem()
    m = MLP(6, hidden=(5, 4), seed=seed)  # numba, float32: the defaults
    report = gradcheck(m, X, y)
    assert report.ok and report.verdict == "ok", report
    # Each such bias is compared from below, unless its step -h also crosses a kink (at
    # seed 8 a row of layer 1's unit 2 is at Z = 4.9e-6 as well: not compared).
    listed = {(k.layer, k.name, k.index): k.side for k in report.kinks}
    assert all(listed[entry] in ((-1, 0) if seed == 8 else (-1,)) for entry in _on_a_kink(m, X))
    assert sum(b.kinks for b in report.blocks) == len(report.kinks)
    assert len(report.unchecked) == (seed == 8), report


def test_the_kink_report_lists_the_crossing_entries(monkeypatch):
    X, y = _fresh_problem()
    m = MLP(6, hidden=(5, 4), seed=0)
    report = gradcheck(m, X, y)
    # Seed 0: a row with every layer-0 unit off puts each of layer 1's four units on its kink;
    # their step +h crosses it, so the backward difference is taken, and compared.
    assert [str(k) for k in report.kinks] == [f"layer 1 b[{j}]" for j in range(4)]
    assert all(isinstance(k, Kink) and k.layer == 1 and k.side == -1 for k in report.kinks)
    errors = [abs(k.analytic - k.numeric) / max(abs(k.analytic) + abs(k.numeric), report.floor)
              for k in report.kinks]
    assert max(errors) < report.tolerance / 100
    assert 0 < report.per_layer[(1, "b")] == max(errors) and report.unchecked == ()
    text = str(report)
    assert text.splitlines()[1].split()[-1] == "kinks"
    assert ("crossed a kink on one side, compared one-sided from the other: 4 entries "
            "(layer 1 b[0], layer 1 b[1], layer 1 b[2], layer 1 b[3])") in text
    assert text.endswith(": ok") and "kinks=4, unchecked=0" in repr(report)
    # What the kink does to central differences: they average the two slopes, and the
    # entries fail (7.9e-02 at b[3] with the float32 tolerance 1e-4).
    _central_only(monkeypatch)
    central = gradcheck(m, X, y)
    assert central.kinks == () and central.where[:2] == (1, "b"), central
    assert central.max_error > 100 * central.tolerance


@pytest.mark.parametrize("seed", range(20))
def test_a_bug_in_the_biases_on_the_kinks_fails(seed, monkeypatch):
    """The reviewer's case: layer 1's db doubled, on the fresh network whose rows put layer 1's
    units on their kinks. It passed at 6 of these 20 seeds when the crossing entries were
    left out (at seed 0 all four of them); now it fails at every seed, located."""
    X, y = _fresh_problem()
    m = MLP(6, hidden=(5, 4), seed=seed, dtype="float64")
    right = m.loss_and_grad

    def doubled_db(*args, **kwargs):
        L, grads = right(*args, **kwargs)
        grads = [(dW.copy(), db.copy()) for dW, db in grads]
        grads[1] = (grads[1][0], grads[1][1] * 2.0)
        return L, grads

    assert gradcheck(m, X, y).ok
    monkeypatch.setattr(m, "loss_and_grad", doubled_db)
    report = gradcheck(m, X, y)
    assert not report.ok and report.verdict == "FAILED", report
    assert report.where[:2] == (1, "b") and report.max_error > 0.1, report


def _unit_near_its_kink(distance):
    """A float64 ReLU network at a generic point, but with unit 2 of layer 0 at
    ``Z = distance`` on row 0 (its bias set so), and the row's other units well away."""
    X, y = _problem("sigmoid")
    m = _model("relu", 2, "sigmoid")
    (W, b), *_ = m.params
    b[2] = distance - X[0] @ W[:, 2]
    # Corrected by Z as the forward pass rounds it: distance 0 is Z = 0 exactly.
    Z = reference.forward(m.params, X, reference.rules("relu", "sigmoid"))[1][0]
    b[2] += distance - Z[0, 2]
    return m, X, y


def test_an_entry_whose_step_crosses_a_kink_is_compared_from_the_other_side():
    h = 1e-4
    m, X, y = _unit_near_its_kink(0.5 * h)  # b[2] - h moves Z to -h/2: across; + h not
    report = gradcheck(m, X, y, h=h)
    assert report.ok, report
    assert ((0, "b", (2,)), 1) in {((k.layer, k.name, k.index), k.side) for k in report.kinks}
    assert report.unchecked == ()
    m, X, y = _unit_near_its_kink(5 * h)  # within 5 steps of the kink, not across
    report = gradcheck(m, X, y, h=h)
    assert report.ok and report.kinks == (), report


def test_a_wrong_derivative_near_a_kink_still_fails(monkeypatch):
    """A backward rule that switches the unit off a little above 0 (at 1e-3 rather than 0) is
    wrong only near the kink: at the unit 5 steps from it, whose steps do not cross it."""
    m, X, y = _unit_near_its_kink(5e-4)
    relu = activations.ACTIVATIONS["relu"]
    late = dataclasses.replace(relu, backward=lambda Z, H, dH: dH * (H > 1e-3))
    monkeypatch.setitem(activations.ACTIVATIONS, "relu", late)
    report = gradcheck(m, X, y)
    assert not report.ok and report.kinks == (), report
    assert report.where[0] == 0 and report.max_error > 1e-3
    assert report.per_layer[(0, "b")] > 1e-3  # b[2] is where the rule is wrong
    with pytest.raises(AssertionError, match=r"FAILED"):
        assert_gradients_match(report)


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_a_wrong_slope_on_the_kink_fails(name, monkeypatch):
    """A backward rule that takes the slope of the other piece at ``Z = 0`` exactly
    (``Z >= 0`` for ``Z > 0``) is wrong only on the kink: at the fresh network's layer-1
    biases, which the one-sided differences check (and which were left out before)."""
    X, y = _fresh_problem()
    m = MLP(6, hidden=(5, 4), activation=name, seed=0, backend="numpy", dtype="float64")
    if name == "leaky_relu":  # put row 0 on layer 1's kinks: layer 0 off there, H = 0
        m.theta[:] = np.random.default_rng(3).normal(0.0, 0.5, m.n_params)
        (W, b), (_, b1), _ = m.params
        b[:] = -(X[0] @ W)
        b1[:] = 0.0
    assert gradcheck(m, X, y).ok
    act = activations.ACTIVATIONS[name]
    slope = 0.0 if name == "relu" else activations.LEAKY_SLOPE
    upper = dataclasses.replace(act, backward=lambda Z, H, dH: dH * np.where(Z >= 0, 1.0, slope))
    monkeypatch.setitem(activations.ACTIVATIONS, name, upper)
    report = gradcheck(m, X, y)
    assert not report.ok and report.max_error > 1e-3, report
    assert report.where in {(k.layer, k.name, k.index) for k in report.kinks if k.side}
    if name == "relu":  # only layer 1 has units on the kink
        assert report.where[:2] == (1, "b")


def test_a_broken_backward_pass_still_fails_on_a_fresh_network(monkeypatch):
    """The fresh network of the review, on its kinks, with layer 0's dW 1 % off."""
    X, y = _fresh_problem()
    m = MLP(6, hidden=(5, 4), seed=0, backend="numpy", dtype="float64")
    original = reference.layer_backward

    def layer_backward(H_prev, W, delta):
        dW, db, dH = original(H_prev, W, delta)
        return (dW * 1.01 if W.shape == (6, 5) else dW), db, dH

    monkeypatch.setattr(reference, "layer_backward", layer_backward)
    report = gradcheck(m, X, y)
    assert not report.ok and report.where[:2] == (0, "W"), report
    assert len(report.kinks) == 4  # the crossings are still found, and listed


def _two_sided_kink():
    """A 2 -> 1 -> 1 ReLU network whose one hidden unit has ``Z = 0`` on row 0 and
    ``Z = h/2`` on row 1: its bias's step ``+h`` crosses the kink at row 0, ``-h`` at row 1."""
    h = 1e-4
    X = np.array([[1.0, 0.0], [1.0 + h, 0.0], [3.0, 1.0], [-2.0, 0.5]])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    m = MLP(2, (1,), "relu", "sigmoid", dtype="float64", backend="numpy")
    m.set_weights([(np.array([[0.5], [0.25]]), np.array([-0.5])),
                   (np.array([[1.5]]), np.array([0.1]))])
    return m, X, y


def test_an_array_no_entry_of_which_is_compared_is_not_checked():
    """Both steps of layer 0's only bias cross a kink: nothing can be compared there, so the
    check does not pass, though nothing failed. Code that reads only ``ok`` or compares
    ``max_error`` (``inf``) with the tolerance sees a check that did not pass."""
    m, X, y = _two_sided_kink()
    report = gradcheck(m, X, y)
    assert report.verdict == "not checked" and not report.ok, report
    assert math.isinf(report.max_error) and report.max_error == report.per_layer[(0, "b")]
    assert not report < 1e-6 and report > 1e-6 and report.where == (0, "b", ())
    assert [(str(k), k.side) for k in report.unchecked] == [("layer 0 W[0, 0]", 0),
                                                            ("layer 0 b[0]", 0)]
    block = report.blocks[1]
    assert (block.compared, block.unchecked, block.kinks) == (0, 1, 1)
    assert report.blocks[0].compared == 1  # W[1, 0] (its input is 0 on both rows): central
    assert max(b.max_error for b in report.blocks if b.compared) < 1e-6
    text = str(report)
    assert text.splitlines()[1].split()[-2:] == ["kinks", "unchecked"]
    assert "crossed a kink on both sides, not compared: 2 entries" in text
    assert text.endswith(
        "tolerance 1e-06: not checked: every entry of layer 0 b crossed a kink on both sides")
    with pytest.raises(AssertionError, match="not checked"):
        assert_gradients_match(report)


def test_a_failure_outranks_an_array_not_checked(monkeypatch):
    """With a bug elsewhere the verdict is FAILED, located at the bug."""
    m, X, y = _two_sided_kink()
    right = m.loss_and_grad

    def wrong_output_bias(*args, **kwargs):
        L, grads = right(*args, **kwargs)
        return L, [grads[0], (grads[1][0], grads[1][1] * 1.01)]

    monkeypatch.setattr(m, "loss_and_grad", wrong_output_bias)
    report = gradcheck(m, X, y)
    assert report.verdict == "FAILED" and not report.ok
    assert report.where == (1, "b", (0,)) and 1e-3 < report.max_error < 1e-2, report
    assert str(report).endswith(": FAILED")


def test_input_gradcheck_compares_inputs_whose_step_crosses_a_kink_one_sided(monkeypatch):
    """Row 0's inputs all move unit 2 of layer 0, which sits on its kink there: each input's
    step toward the side where the unit switches on (the sign of its weight) crosses it."""
    m, X, _ = _unit_near_its_kink(0.0)
    report = input_gradcheck(m, X)
    assert report.ok and report.unchecked == (), report
    W = m.params[0][0]
    assert {k.index: k.side for k in report.kinks} == {
        (0, j): -int(np.sign(W[j, 2])) for j in range(X.shape[1])}
    _central_only(monkeypatch)
    central = input_gradcheck(m, X)  # they average the slopes of unit 2's two pieces
    assert not central.ok and central.where[:2] == (None, "X") and central.where[2][0] == 0
    monkeypatch.undo()
    # A backward rule with the slope of the other piece at Z = 0 is wrong at row 0 only.
    relu = activations.ACTIVATIONS["relu"]
    upper = dataclasses.replace(relu, backward=lambda Z, H, dH: dH * (Z >= 0))
    monkeypatch.setitem(activations.ACTIVATIONS, "relu", upper)
    report = input_gradcheck(m, X)
    assert not report.ok and report.where[2][0] == 0 and report.max_error > 1e-3, report


def test_kink_crossings_of_a_single_relu():
    """max(x, 0) at -1, 0, 0.4, 0.6 and 2, with steps of 0.5: 0's step up leaves its piece
    (x <= 0), and 0.4's step down leaves its own (x > 0)."""
    down, up = kink_crossings(lambda x: [x > 0], np.array([-1.0, 0.0, 0.4, 0.6, 2.0]), h=0.5)
    np.testing.assert_array_equal(down, [False, False, True, False, False])
    np.testing.assert_array_equal(up, [False, True, False, False, False])


def test_one_sided_differences_take_the_slope_of_their_side():
    """|x| at 0: the backward difference gives -1, the forward one +1, the central one 0; at
    a smooth point all three agree with the derivative (one-sided: O(h^3), about 1e-11)."""
    x = np.zeros(3)
    np.testing.assert_array_equal(numerical_gradient(lambda x: np.abs(x).sum(), x,
                                                     side=[-1, 1, 0]), [-1.0, 1.0, 0.0])
    x = np.array([0.3, 1.1, -2.0])
    for side in (-1, 1):
        np.testing.assert_allclose(numerical_gradient(lambda x: np.sin(x).sum(), x, side=side),
                                   np.cos(x), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="side"):
        numerical_gradient(np.sum, x, side=2)


# --------------------------------------------------------------------------- rounding noise

# Fresh float64 networks (activation, n_inputs, hidden, rows, seed; X, y and the weights
# drawn from the seed) whose check failed with correct gradients before the floor followed
# the loss's rounding: entries below the floor 1e-6 were held to |a - n| < 1e-12, under the
# numerical gradient's own noise (errors 1.0e-6 to 1.7e-6; 9 of 240 such networks).
FAILED_BEFORE = [
    ("relu", 6, (5, 4), 60, 0), ("relu", 6, (8,), 60, 6), ("relu", 4, (3, 3, 3), 60, 1),
    ("relu", 10, (16, 8), 60, 5), ("leaky_relu", 6, (5, 4), 5, 9),
    ("leaky_relu", 6, (8,), 60, 6), ("leaky_relu", 4, (3, 3, 3), 5, 0),
    ("leaky_relu", 4, (3, 3, 3), 5, 2), ("leaky_relu", 4, (3, 3, 3), 20, 2),
]


def _fresh_float64(activation, n_inputs, hidden, rows, seed, backend="numba"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, n_inputs))
    y = (rng.random(rows) > 0.5).astype(float)
    m = MLP(n_inputs, hidden=hidden, activation=activation, dtype="float64", seed=seed,
            backend=backend)
    return m, X, y


@pytest.mark.parametrize("case", FAILED_BEFORE, ids=lambda c: "-".join(map(str, c)))
def test_a_fresh_float64_network_passes_its_rounding_noise(case, monkeypatch):
    m, X, y = _fresh_float64(*case)
    report = gradcheck(m, X, y)
    assert report.ok, report
    assert report.floor == report.noise / report.tolerance > TOLERANCES["float64"].floor
    # The old rule (no noise in the floor) fails it: the test could fail.
    monkeypatch.setattr(GRADCHECK, "NOISE_FACTOR", 0.0)
    old = gradcheck(m, X, y)
    assert not old.ok and old.floor == TOLERANCES["float64"].floor, old


def test_the_floor_follows_the_loss_rounding():
    """``noise = c u |L| / h`` from the loss at the point; the floor is ``noise / tolerance``
    where that is above the dtype's floor (shown in the title), the dtype's floor otherwise.
    The one-sided differences' floor follows their own noise, ``22/3`` as large."""
    m, X, y = _fresh_float64(*FAILED_BEFORE[0])
    for l2, h in ((0.0, 1e-4), (0.5, 1e-4), (0.0, 1e-3)):
        report = gradcheck(m, X, y, l2=l2, h=h)
        L = float(m.loss_and_grad(X, y, l2=l2)[0])
        assert math.isclose(report.noise, NOISE_FACTOR * UNIT_ROUNDOFF * L / h, rel_tol=1e-12)
        assert report.floor == max(1e-6, report.noise / 1e-6)
        assert report.one_sided_floor == max(1e-6, ONE_SIDED_NOISE_FACTOR * UNIT_ROUNDOFF * L
                                             / h / 1e-6) > report.floor
    assert gradcheck(m, X, y, l2=0.5).floor > 2 * gradcheck(m, X, y).floor  # L2 adds to L
    report = gradcheck(m, X, y)
    assert math.isclose(gradcheck(m, X, y, h=1e-3).floor, report.floor / 10, rel_tol=1e-12)
    title = str(report).splitlines()[0]
    assert [k.side for k in report.kinks] == [-1] * 4  # shown since entries were one-sided:
    assert title.endswith(f"floor={report.floor:.3g} (noise {report.noise:.2g} / tolerance), "
                          f"one-sided floor={report.one_sided_floor:.3g}")
    assert gradcheck(m, X, y, floor=1e-3).floor == 1e-3  # a floor above the noise's is kept
    # float32: the dtype's floor 1e-2 is far above the noise's (about 2e-8); title as before.
    m32 = MLP(6, hidden=(5, 4), seed=0)
    report = gradcheck(m32, X, y)
    assert report.floor == report.one_sided_floor == 0.01 and 0 < report.noise < 1e-10
    assert report.kinks and str(report).splitlines()[0].endswith("h=0.0001, floor=0.01")


def test_a_small_bug_still_fails_where_the_floor_is_raised(monkeypatch):
    """On a fresh float64 network whose floor the noise raised (to 2.4e-5): the largest entry
    of layer 0's dW (2.4e-2) 1e-4 too large (a relative error of 5e-5), or the smallest of
    layer 1's (6.4e-7, below the floor) off by 10 times the noise (2.4e-10), fails."""
    m, X, y = _fresh_float64(*FAILED_BEFORE[0], backend="numpy")
    clean = gradcheck(m, X, y)
    assert clean.ok and clean.floor > 2e-5
    grads = m.loss_and_grad(X, y)[1]
    big = np.unravel_index(np.argmax(np.abs(grads[0][0])), grads[0][0].shape)
    tiny = np.unravel_index(np.argmin(np.abs(grads[1][0])), grads[1][0].shape)
    assert abs(grads[0][0][big]) > 1e-2 and abs(grads[1][0][tiny]) < clean.floor / 10
    original = reference.layer_backward

    def plant(shape, entry, wrong):
        def layer_backward(H_prev, W, delta):
            dW, db, dH = original(H_prev, W, delta)
            if W.shape == shape:
                dW = dW.copy()
                dW[entry] = wrong(dW[entry])
            return dW, db, dH
        monkeypatch.setattr(reference, "layer_backward", layer_backward)

    plant((6, 5), big, lambda g: g * (1 + 1e-4))
    report = gradcheck(m, X, y)
    assert not report.ok and report.where == (0, "W", tuple(map(int, big))), report
    assert math.isclose(report.max_error, 1e-4 / 2, rel_tol=0.01)
    plant((5, 4), tiny, lambda g: g + 10 * clean.noise)
    report = gradcheck(m, X, y)
    assert not report.ok and report.where == (1, "W", tuple(map(int, tiny))), report
    assert math.isclose(report.max_error, 10 * report.tolerance, rel_tol=0.05)


def test_rounding_noise_bounds_the_numerical_error():
    """``f = 1000 + sum sin(x)``: the numerical gradient's error is rounding (of ``f``, about
    ``u 1000`` per evaluation), under the bound, and the bound not vacuous (measured: 5 %)."""
    x = np.random.default_rng(0).uniform(-3, 3, 2000)
    f = lambda x: 1000.0 + np.sin(x).sum()  # noqa: E731
    error = np.abs(numerical_gradient(f, x) - np.cos(x)).max()
    bound = rounding_noise(f(x), 1e-4)
    assert math.isclose(bound, 30 * 2.0**-53 * 1000.5 / 1e-4, rel_tol=1e-3)
    assert bound / 100 < error < bound
    # One-sided, from either side: 22 kappa for 3 kappa (measured: 3.7 % of the bound).
    bound = rounding_noise(f(x), 1e-4, one_sided=True)
    assert math.isclose(bound, 220 * 2.0**-53 * 1000.5 / 1e-4, rel_tol=1e-3)
    for side in (-1, 1):
        error = np.abs(numerical_gradient(f, x, side=side) - np.cos(x)).max()
        assert bound / 100 < error < bound
