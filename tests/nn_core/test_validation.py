"""Bad input gets a clear ValueError before any work; extreme logits stay finite."""

import numpy as np
import pytest

from nn_core import MLP
from nn_core.validation import as_number, check_epochs, check_lr


@pytest.fixture
def m():
    return MLP(3, (4,), dtype="float64", backend="numpy")


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[1.0, np.nan, 0.0]]), "NaN or infinity.*row 0, column 1"),
        (np.array([[1.0, 0.0, np.inf]]), "NaN or infinity.*row 0, column 2"),
        (np.zeros((0, 3)), "empty"),
        (np.zeros(3), "2-D"),
        (np.zeros((2, 4)), "4 columns, the network expects 3"),
        ([["a", "b", "c"]], "numeric"),
        # float32, the model's dtype: the numba backend's few-row path sees these first.
        (np.array([[1.0, np.nan, 0.0]], dtype=np.float32), "NaN or infinity.*row 0, column 1"),
        (np.array([[0.0] * 3, [-np.inf, 0, 0]], dtype=np.float32), "row 1, column 0"),
        (np.zeros((0, 3), dtype=np.float32), "empty"),
        (np.zeros((1, 4), dtype=np.float32), "4 columns, the network expects 3"),
        (np.zeros((1, 3, 1), dtype=np.float32), "2-D"),
    ],
)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_X(X, match, backend):
    model = MLP(3, (4,), backend=backend)
    with pytest.raises(ValueError, match=match):
        model.predict_proba(X)
    with pytest.raises(ValueError, match=match):
        model.fit(X, np.zeros(len(X) if np.ndim(X) == 2 else 1))


@pytest.mark.parametrize(
    "y, match",
    [
        (np.array([0.0, 2.0]), "0/1 labels.*2"),
        (np.array([0.0, -1.0]), "0/1 labels"),
        (np.array([0.0, 0.5]), "0/1 labels"),
        (np.array([0.0, np.nan]), "y holds NaN"),
        (np.array([0.0]), r"shape \(2,\)"),
    ],
)
def test_bad_y(m, y, match):
    with pytest.raises(ValueError, match=match):
        m.fit(np.zeros((2, 3)), y)
    with pytest.raises(ValueError, match=match):
        m.loss_and_grad(np.zeros((2, 3)), y)


def test_identity_output_accepts_real_targets():
    m = MLP(3, (4,), output="identity", dtype="float64")
    loss, _ = m.loss_and_grad(np.ones((2, 3)), np.array([0.3, -2.5]))
    assert np.isfinite(loss)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_weight": np.array([1.0, -1.0])}, ">= 0"),
        ({"sample_weight": np.array([1.0])}, "sample_weight must have shape"),
        ({"pos_weight": -1.0}, "pos_weight"),
        ({"l2": float("nan")}, "l2"),
        ({"lr": -0.1}, r"^lr must be a finite number > 0, got -0.1$"),
        ({"lr": 0}, r"^lr must be a finite number > 0, got 0.0$"),
        ({"lr": float("inf")}, r"^lr must be a finite number > 0, got inf$"),
        ({"lr": "0.1"}, r"^lr must be a finite number > 0, got '0.1'$"),
        ({"epochs": 0}, r"^epochs must be >= 1, got 0$"),
        ({"epochs": -3}, r"^epochs must be >= 1, got -3$"),
        ({"epochs": 1.5}, r"^epochs must be an integer, got 1.5$"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "adagrad"}, "unknown optimizer"),
        ({"schedule": "linear"}, "unknown schedule"),
        ({"threads": 10_000}, "threads"),
    ],
)
def test_bad_fit_options(kwargs, match):
    m = MLP(3, (4,), dtype="float64")
    theta = m.theta.copy()
    with pytest.raises(ValueError, match=match):
        m.fit(np.zeros((2, 3)), np.array([0.0, 1.0]), **kwargs)
    np.testing.assert_array_equal(m.theta, theta)  # nothing trained
    assert m._epochs_done == 0


@pytest.mark.parametrize(
    "check, value, expected",
    [(check_epochs, 1, 1), (check_epochs, 3.0, 3), (check_epochs, np.int64(7), 7),
     (check_lr, 1e-3, 1e-3), (check_lr, np.float32(0.5), 0.5), (check_lr, 2, 2.0)],
)
def test_the_shared_hyper_parameter_checks_accept(check, value, expected):
    result = check(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    "value, match",
    [(0.0, r"^x must be a finite number > 0, got 0.0$"),
     (-1, r"^x must be a finite number > 0, got -1.0$"),
     (float("nan"), r"^x must be a finite number > 0, got nan$"),
     (True, r"^x must be a finite number > 0, got True$"),
     (None, r"^x must be a finite number > 0, got None$")],
)
def test_as_number_names_the_argument_and_its_bound(value, match):
    with pytest.raises(ValueError, match=match):
        as_number(value, "x", strict=True)
    assert as_number(0.0, "x") == 0.0  # >= 0 unless strict
    with pytest.raises(ValueError, match=r"^x must be a finite number >= 2, got 1.5$"):
        as_number(1.5, "x", low=2.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "mish"}, "unknown activation"),
        ({"output": "softmax"}, "unknown output"),
        ({"dtype": "float16"}, "dtype"),
        ({"hidden": (3, 0)}, "widths"),
        ({"backend": "jax"}, "unknown backend"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_architecture(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(3, **kwargs)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_logits_give_finite_loss_and_gradients(backend, dtype):
    """Logits of magnitude 1e4: the loss is computed from logits, so nothing overflows."""
    m = MLP(2, (), dtype=dtype, backend=backend)
    m.set_weights([(np.array([[1.0], [0.0]]), np.array([0.0]))])
    X = np.array([[1e4, 0.0], [-1e4, 0.0], [1e4, 0.0], [-1e4, 0.0]])
    y = np.array([1.0, 0.0, 0.0, 1.0])  # two right with certainty, two wrong with certainty
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        loss, grads = m.loss_and_grad(X, y)
        p = m.predict_proba(X)
    # The two certain mistakes each cost |z| = 1e4; the mean over 4 rows is 5e3.
    assert np.isclose(loss, 5e3, rtol=1e-6)
    assert all(np.isfinite(g).all() for pair in grads for g in pair)
    assert np.array_equal(p, np.array([1.0, 0.0, 1.0, 0.0], dtype=dtype))


def test_divergence_is_reported():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)) * 100
    m = MLP(3, (8,), output="identity", dtype="float64")
    with pytest.raises(FloatingPointError, match="diverged"):
        m.fit(X, rng.normal(size=64) * 1e3, epochs=50, optimizer="sgd", lr=10.0)


def test_a_continued_fit_validates_its_hyper_parameters_too():
    m = MLP(3, (4,), dtype="float64")
    X, y = np.zeros((4, 3)), np.array([0.0, 1.0, 0.0, 1.0])
    m.fit(X, y, epochs=1)
    with pytest.raises(ValueError, match="weight_decay"):
        m.fit(X, y, epochs=1, weight_decay=-5.0)
    with pytest.raises(ValueError, match="betas"):
        m.fit(X, y, epochs=1, betas=(2.0, 0.5))


def test_pos_weight_is_refused_for_the_identity_output():
    m = MLP(3, (4,), output="identity", dtype="float64")
    with pytest.raises(ValueError, match="pos_weight is for 0/1 labels"):
        m.fit(np.zeros((3, 3)), np.array([0.5, 1.0, 2.0]), pos_weight=3.0)


@pytest.mark.parametrize(
    "kwargs", [{"step_size": 0}, {"gamma": 0.0}, {"lr_min": -1.0, "schedule": "cosine"}]
)
def test_bad_schedule_parameters(kwargs):
    kwargs = {"schedule": "step", **kwargs}
    with pytest.raises(ValueError, match="step_size >= 1, gamma > 0"):
        MLP(3, (4,)).fit(np.zeros((2, 3)), np.array([0.0, 1.0]), **kwargs)


def test_kernels_refuse_unknown_indices():
    from nn_core import kernels

    # The entries check the indices before picking (and compiling) a kernel for them.
    m = MLP(3, (4,))
    X, p = np.zeros((2, 3), dtype=np.float32), np.empty(2, dtype=np.float32)
    with pytest.raises(ValueError, match="unknown activation index"):
        kernels.predict_blocks(X, m.theta, m.layout, 99, 0, 128, p)
    with pytest.raises(ValueError, match="unknown output index"):
        kernels.predict_blocks(X, m.theta, m.layout, 0, -1, 128, p)
    with pytest.raises(ValueError, match="unknown activation index"):
        kernels.few_rows_kernel(-1)
    z = np.zeros_like(m.theta)
    with pytest.raises(ValueError, match="unknown optimizer index"):
        kernels.train_epoch(X, p, p, np.arange(2), m.theta, z, m.layout, 0, 0, 0.0, 9, z, z, 0,
                            0.1, np.zeros(7, np.float32), z, 2, 0.0, 0)
    with pytest.raises(ValueError, match="unknown activation index"):
        kernels.train_epoch_parallel(X, p, p, np.arange(2), m.theta, z, m.layout, True, 0, 0.0, 0,
                                     z, z, 0, 0.1, np.zeros(7, np.float32), z, 2, 0.0, 0, 2)


def test_check_finite_features_names_the_input_column_not_a_feature_index():
    import pandas as pd

    from nn_core.preprocessing import FeatureValueError, check_finite_features

    columns = [{"name": "a", "kind": "numeric"},
               {"name": "city", "kind": "categorical", "categories": ["x", "y"]},
               {"name": "amount", "kind": "numeric"}]
    F = np.zeros((3, 5))
    check_finite_features(F, columns)  # finite: nothing
    F[2, 4] = 1e39  # finite in float64, not in float32
    check_finite_features(F, columns, dtype=np.float64)
    frame = pd.DataFrame({"a": [0, 0, 0], "city": ["x", "y", "x"], "amount": [1, 2, 1e300]})
    with pytest.raises(FeatureValueError, match=r"^row 12, column 'amount': too far .* "
                       r"float32\) \(value: '1e\+300'\)$") as info:
        check_finite_features(F, columns, frame, first_row=10, dtype=np.float32)
    assert (info.value.row, info.value.column) == (12, "amount")
    F[0, 2] = np.nan
    with pytest.raises(FeatureValueError, match=r"^row 1, column 'city'"):
        check_finite_features(F, columns)


@pytest.mark.parametrize("name, value", [("momentum", float("nan")), ("eps", 0.0),
                                         ("weight_decay", float("inf")), ("betas", (0.9,))])
def test_optimizer_hyper_parameters_are_checked_by_name(name, value):
    from nn_core.optim import Optimizer

    kwargs = {"momentum": 0.9, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
              name: value}
    with pytest.raises(ValueError, match=rf"^{name}"):
        Optimizer("adam", 4, np.float32, **kwargs)
