"""The numba backend holds BLAS to one thread inside every kernel call (issue 14, point 1).

The kernels call BLAS (``np.dot``) on small matrices from inside their own threads; a BLAS
thread pool there only adds contention. The kernel entries are wrapped here to record how
many threads BLAS would use at the moment each call starts, with BLAS first set to two.
"""

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from nn_core import MLP, kernels  # noqa: E402


def _blas_threads() -> set[int]:
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS the kernels call)

    return {lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"}


@pytest.fixture
def recorded(monkeypatch):
    """Wrap the kernel entries; yield {kernel name: [BLAS thread counts at each call]}."""
    calls: dict[str, list[set[int]]] = {}
    for name in ("predict_blocks", "predict_blocks_onehot", "train_epoch",
                 "train_epoch_parallel"):
        kernel = getattr(kernels, name)

        def wrapper(*args, _kernel=kernel, _name=name):
            calls.setdefault(_name, []).append(_blas_threads())
            return _kernel(*args)

        monkeypatch.setattr(kernels, name, wrapper)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if _blas_threads() != {2}:
            pytest.skip("this BLAS cannot be set to two threads, so the limit is not seen")
        yield calls


@pytest.mark.parametrize("rows, threads", [(100, 1), (3000, 1), (3000, 2), (20000, 2)])
def test_predict_holds_blas_to_one_thread(recorded, rows, threads):
    rng = np.random.default_rng(0)
    model = MLP(5, (8,), backend="numba", seed=0)
    model.predict_proba(rng.normal(size=(rows, 5)).astype(np.float32), threads=threads)
    assert recorded["predict_blocks"] and all(t == {1} for t in recorded["predict_blocks"])


@pytest.mark.parametrize("rows, threads", [(100, 1), (20000, 2)])
def test_one_hot_prediction_holds_blas_to_one_thread(recorded, rows, threads):
    from nn_core import backends

    rng = np.random.default_rng(0)
    model = MLP(8, (8,), backend="numba", seed=0)
    Xd = rng.normal(size=(rows, 3)).astype(np.float32)
    R = (3 + rng.integers(0, 5, size=(rows, 1))).astype(np.int32)  # one block: features 3..7
    backends.get("numba").predict_onehot(model, Xd, np.arange(3), R, threads)
    calls = recorded["predict_blocks_onehot"]
    assert calls and all(t == {1} for t in calls)


@pytest.mark.parametrize("batch_size, threads, kernel", [(32, 1, "train_epoch"),
                                                         (512, 2, "train_epoch_parallel")])
def test_fit_holds_blas_to_one_thread(recorded, batch_size, threads, kernel):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2048, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    MLP(5, (8,), backend="numba", seed=0).fit(X, y, epochs=2, batch_size=batch_size,
                                              threads=threads)
    assert len(recorded[kernel]) == 2 and all(t == {1} for t in recorded[kernel])


def test_blas_is_given_back_its_threads_after_a_call(recorded):
    MLP(5, (8,), backend="numba").predict_proba(np.zeros((100, 5), np.float32), threads=1)
    assert _blas_threads() == {2}
