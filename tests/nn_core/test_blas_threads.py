"""BLAS runs single-threaded inside every compiled kernel call of the ``numba`` backend.

The kernels call BLAS (``np.dot``, SciPy's OpenBLAS) on small matrices, from
their own threads or from Python threads (parallel prediction); a second
thread pool inside them only adds contention. Each test sets every BLAS
library to two threads outside, wraps a kernel entry so that it records
``threadpoolctl.threadpool_info()`` at the moment it is called, and checks
that every BLAS library was held to one thread there and is back to two
afterwards. The paths: prediction on one thread, prediction of 17-4,095 rows
(serial whatever the thread count), parallel prediction, serial and parallel
training, and the gradient (``loss_and_grad``, used by the gradient check).
The few-row prediction kernel calls no BLAS at all, which its compiled code
shows.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's OpenBLAS, the one the kernels call)
from threadpoolctl import threadpool_info, threadpool_limits

from nn_core import MLP, kernels

OUTSIDE = 2


def blas_threads() -> list[int]:
    """The thread count of every loaded BLAS library, now."""
    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


@pytest.fixture
def recorded(monkeypatch):
    """Wrap the kernel entries; yield the list of BLAS thread counts seen at each call."""
    seen: list[tuple[str, list[int]]] = []
    for name in ("predict_blocks", "train_epoch", "train_epoch_parallel"):
        original = getattr(kernels, name)

        def wrapper(*args, _original=original, _name=name):
            seen.append((_name, blas_threads()))
            return _original(*args)

        monkeypatch.setattr(kernels, name, wrapper)
    with threadpool_limits(limits=OUTSIDE, user_api="blas"):
        assert len(blas_threads()) >= 1 and set(blas_threads()) == {OUTSIDE}
        yield seen
        assert set(blas_threads()) == {OUTSIDE}, "the BLAS thread count was not restored"


def _data(n=600, d=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, (X[:, 0] + rng.normal(size=n) > 0).astype(np.float32)


def _check(seen, names):
    assert {name for name, _ in seen} == set(names), seen
    for name, counts in seen:
        assert counts and set(counts) == {1}, f"{name} ran with BLAS threads {counts}"


@pytest.mark.parametrize(
    ("rows", "threads"), [(100, 1), (3000, 1), (3000, 2), (5000, None), (10_000, 2)]
)
def test_predict_holds_blas_to_one_thread(recorded, rows, threads):
    X, _ = _data(rows)
    m = MLP(X.shape[1], (16, 8), seed=1)
    p = m.predict_proba(X, threads=threads)
    assert p.shape == (rows,)
    _check(recorded, {"predict_blocks"})
    # The parallel branch (two slices of at least 2,048 rows) calls once per slice.
    slices = 2 if rows >= 4096 and threads != 1 else 1
    assert len(recorded) == slices


@pytest.mark.parametrize(("batch", "threads", "entry"), [
    (32, 1, "train_epoch"), (32, 2, "train_epoch"), (256, 2, "train_epoch_parallel"),
])
def test_fit_holds_blas_to_one_thread(recorded, batch, threads, entry):
    X, y = _data()
    MLP(X.shape[1], (16, 8), seed=1).fit(X, y, epochs=2, batch_size=batch, threads=threads)
    _check(recorded, {entry})
    assert len(recorded) == 2  # one call per epoch


def test_fit_with_validation_holds_blas_in_its_predictions(recorded):
    X, y = _data()
    MLP(X.shape[1], (16,), seed=1).fit(X[:400], y[:400], epochs=2, batch_size=64,
                                        validation_data=(X[400:], y[400:]))
    _check(recorded, {"train_epoch", "predict_blocks"})


def test_loss_and_grad_holds_blas_to_one_thread(recorded):
    X, y = _data(200)
    loss, grads = MLP(X.shape[1], (16, 8), seed=1).loss_and_grad(X, y)
    assert np.isfinite(loss) and len(grads) == 3
    _check(recorded, {"train_epoch"})


def _fresh_llvm(kernel, *args) -> str:
    """The LLVM code of a compiled entry, compiled afresh (a cached one keeps only machine code)."""
    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(kernel.py_func)
    fresh(*args)
    return "".join(fresh.inspect_llvm(sig) for sig in fresh.signatures)


def test_the_few_row_kernel_calls_no_blas():
    """Up to 16 rows take their own kernel, plain loops: no BLAS, so no thread limit to pay."""
    X, _ = _data(16)
    m = MLP(X.shape[1], (16, 8), seed=1)
    p = np.empty(16, dtype=np.float32)
    code = _fresh_llvm(kernels.few_rows_kernel(*m._kernel_rules), X, m.theta, m.layout, p)
    assert code and "xxgemm" not in code
    np.testing.assert_allclose(p, m.predict_proba(X), rtol=1e-6)
    # The check can fail: the block kernel's code does call BLAS's gemm.
    blocks = kernels._compiled("blocks", *m._kernel_rules)
    assert "xxgemm" in _fresh_llvm(blocks, X, m.theta, m.layout, 128, p)
