"""The compiled and GPU backends against the NumPy reference, through one shared helper."""

import numba
import numpy as np
import pytest
from rule_sets import ACTIVATION_DTYPES, DTYPES, random_rule_set

from nn_core import MLP, activations
from nn_core.testing import OPTION_CASES, TOLERANCES, assert_backends_agree, relative_error


# The numba backend compiles a kernel per rule set and dtype: each activation is
# checked in one dtype (both dtypes are used), every output with each, each optimizer
# and dropout once, plus one random sample of the full product (tests/helpers/rule_sets.py).
@pytest.mark.parametrize("output", ["sigmoid", "identity"])
@pytest.mark.parametrize(("activation", "dtype"), ACTIVATION_DTYPES)
def test_numba_matches_numpy(activation, output, dtype):
    errors = assert_backends_agree("numpy", "numba", dtype, activation=activation, output=output)
    assert set(errors) >= {"predict", "predict_rows", "loss", "dW0", "db2", "theta_after_epoch"}


def _changes_rule_set(case) -> bool:
    return "dropout" in case or "optimizer" in case.get("fit_kwargs", {})


# Options that keep the rule set (depth, batch size, weight decay, schedules) in both
# dtypes; those that change it (optimizer, dropout) each in one, alternating.
NUMBA_OPTION_CASES = [
    (case, dtype) for case in OPTION_CASES if not _changes_rule_set(case) for dtype in DTYPES
] + [
    (case, DTYPES[i % 2]) for i, case in enumerate(c for c in OPTION_CASES if _changes_rule_set(c))
]


@pytest.mark.parametrize(("case", "dtype"), NUMBA_OPTION_CASES, ids=repr)
def test_numba_matches_numpy_options(case, dtype):
    assert_backends_agree("numpy", "numba", dtype, **case)


RULE_SEED, *RULE_SET = random_rule_set()


@pytest.mark.slow  # a fresh compile each run: the rule set is new to the cache
@pytest.mark.parametrize(("activation", "output", "dtype", "optimizer", "dropout"), [RULE_SET],
                         ids=[f"seed{RULE_SEED}-" + "-".join(map(str, RULE_SET))])
def test_numba_matches_numpy_random_rule_set(activation, output, dtype, optimizer, dropout):
    """One rule set drawn from the full product per run (NN_CORE_RULE_SEED=<seed> repeats it)."""
    fit_kwargs = {"optimizer": "momentum", "nesterov": True} if optimizer == "nesterov" else {
        "optimizer": optimizer}
    assert_backends_agree("numpy", "numba", dtype, activation=activation, output=output,
                          dropout=dropout, fit_kwargs=fit_kwargs)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 CPU threads")
@pytest.mark.parametrize(("dtype", "dropout"), [("float64", 0.0), ("float32", 0.3)])
def test_parallel_training_matches_numpy(dtype, dropout):
    """Batches of 512 on 2 threads: chunks computed in parallel, then summed."""
    from nn_core.backends import parallel_chunks

    assert parallel_chunks(512, 2) == 2
    assert_backends_agree(
        "numpy", "numba", dtype, n=1100, batch_size=512, dropout=dropout,
        fit_kwargs={"threads": 2, "epochs": 2},
    )


def test_helper_reports_a_disagreement(monkeypatch):
    """The helper is not vacuous: a backend that trains with another lr is caught."""
    from nn_core import backends

    numba_fit = backends.NumbaBackend.fit

    def skewed_fit(self, model, *args, **kwargs):
        *args, lr_of, on_epoch = args  # the schedule and the callback come last
        return numba_fit(self, model, *args, lambda e: lr_of(e) * 1.001, on_epoch, **kwargs)

    monkeypatch.setattr(backends.NumbaBackend, "fit", skewed_fit)
    with pytest.raises(AssertionError, match="theta_after_epoch"):
        assert_backends_agree("numpy", "numba", "float64")


def test_relative_error_definition():
    assert relative_error([1.0, -2.0], [1.0, -2.0]) == 0.0
    assert relative_error([1.0, -4.0], [1.5, -4.0]) == pytest.approx(0.125)
    assert relative_error([0.0], [0.0]) == 0.0
    with pytest.raises(AssertionError):
        relative_error([1.0], [1.0, 2.0])
    assert TOLERANCES["float64"] == 1e-10


def _train(seed, threads):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, 10)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    m = MLP(10, (16, 8), seed=seed, dropout=0.2)
    m.fit(X, y, epochs=3, batch_size=32, shuffle_seed=seed, threads=threads)
    return m.theta.copy(), m.predict_proba(X, threads=threads)


def test_numba_training_is_bit_identical_across_runs():
    theta_a, p_a = _train(0, 1)
    theta_b, p_b = _train(0, 1)
    assert np.array_equal(theta_a, theta_b)
    assert np.array_equal(p_a, p_b)
    theta_c, _ = _train(1, 1)
    assert not np.array_equal(theta_a, theta_c)


def test_thread_count_is_restored():
    import numba

    before = numba.get_num_threads()
    _train(0, 1)
    assert numba.get_num_threads() == before


def test_parallel_and_serial_predict_agree():
    rng = np.random.default_rng(0)
    m = MLP(12, (20, 10), activation="tanh")
    X = rng.normal(size=(5000, 12)).astype(np.float32)
    serial = m.predict_proba(X, threads=1)
    parallel = m.predict_proba(X, threads=2)
    assert np.array_equal(serial, parallel)  # every row in the same block either way
    assert (
        relative_error(MLP(12, (20, 10), "tanh", backend="numpy").predict_proba(X), parallel) < 1e-5
    )


def test_single_rows_take_the_same_path_with_threads_none_or_one():
    m = MLP(12, (20, 10), activation="tanh")
    row = np.random.default_rng(1).normal(size=(1, 12)).astype(np.float32)
    assert np.array_equal(m.predict_proba(row), m.predict_proba(row, threads=1))
    with pytest.raises(ValueError, match="threads must be in"):
        m.predict_proba(row, threads=0)


def _cuda_available():
    try:
        from nn_core.backends import cupy_module

        cupy_module()
        return True
    except RuntimeError:
        return False


needs_cuda = pytest.mark.skipif(not _cuda_available(), reason="no CuPy or no CUDA device here")


@needs_cuda
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output", ["sigmoid", "identity"])
@pytest.mark.parametrize("activation", list(activations.ACTIVATIONS))
def test_cupy_matches_numpy(activation, output, dtype):
    """On a real GPU. Without one, tests/test_cupy_stand_in.py runs the same backend code
    on tests/strict_cupy.py, a stand-in with CuPy's rules on host and device arrays."""
    assert_backends_agree("numpy", "cupy", dtype, activation=activation, output=output)


@needs_cuda
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", OPTION_CASES, ids=repr)
def test_cupy_matches_numpy_options(case, dtype):
    assert_backends_agree("numpy", "cupy", dtype, **case)


def test_cupy_missing_gives_one_clear_error():
    if _cuda_available():
        pytest.skip("a CUDA device is present; this test covers machines without one")
    with pytest.raises(RuntimeError, match="backend 'cupy' needs"):
        MLP(3, (2,), backend="cupy")


_TRAIN_AND_HASH = """
import hashlib, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from nn_core import MLP
rng = np.random.default_rng(0)
X = rng.normal(size=(400, 20)).astype(np.float32)
y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
m = MLP(20, (16,), seed=0, dropout=0.1)
m.fit(X, y, epochs=2, batch_size=32, l2=1e-3, threads=1)
print(hashlib.sha256(m.theta.tobytes() + m.predict_proba(X).tobytes()).hexdigest())
"""


@pytest.mark.slow  # compiles every kernel afresh in a new process
def test_a_fresh_compile_and_the_cache_train_the_same_weights(tmp_path):
    """The first run of a new Numba cache (compiling) and a later run (loading it) are two
    different builds of the kernels; both must give bit-identical weights."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", _TRAIN_AND_HASH, root],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    ]
    assert any((tmp_path / "numba-cache").rglob("*.nbc"))  # the second run did use a cache
    assert runs[0] == runs[1]


def test_train_py_reports_a_missing_gpu_without_a_traceback(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    if _cuda_available():
        pytest.skip("a CUDA device is present; this test covers machines without one")
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(
        [sys.executable, str(root / "train.py"), "--backend", "cupy", "--quiet",
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert r.returncode == 1
    assert "backend 'cupy' needs" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()
