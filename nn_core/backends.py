"""Backends: the same network math run by NumPy, Numba or CuPy, selected by name.

Each backend offers three operations on an :class:`nn_core.MLP` ``model``:

* ``predict(model, X, threads) -> (n,)`` NumPy array;
* ``loss_and_grad(model, X, y, s, l2) -> (float, [(dW, db), ...])``;
* ``fit(model, X, y, s, epochs, batch_size, optimizer, l2, seed, first_epoch, threads,
  lr_of_epoch, on_epoch)``: trains in place, calling ``on_epoch(epoch, loss)``
  after each epoch and stopping when it returns ``True``.

A backend reads the model's public attributes only (``theta``, ``layout``,
``unflatten``, ``decay_mask``, ``activation``, ``output``, ``dropout``,
``dtype``) and writes only ``theta``; it does not import ``nn_core.network``.

The row order of every epoch comes from :func:`epoch_order`, shared by all
backends, so that the same seed gives the same batches everywhere.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import numba
import numpy as np

from . import kernels, precompile, reference
from .fusion import fused
from .optim import Optimizer
from .validation import raise_not_finite

BACKENDS = ("numba", "numpy", "cupy")

# Below this many rows, predict in one serial call: a parallel region costs
# more than it saves on a few rows.
_PARALLEL_ROWS = 2048
# Rows per block in prediction, by the widest vector instructions the CPU has
# (see prediction_block): small enough that a block's activations stay in
# L1/L2, large enough that each BLAS call has rows to work on. Measured with
# ``python benchmarks/bench_train.py --predict-only --blocks 64,128,...``
# (docs/benchmarks.md): AVX-512 on a Zen 5 (1 MiB of L2 a core; 1024 rows of a
# 64-wide layer: 256 KiB a buffer in float32; 5-20 % faster than 128 rows on both
# paths, float32 and float64, since the one-hot path's gathers got cheaper), AVX2
# on a Zen 3 (512 KiB of L2; not re-measured there since).
_BLOCKS = {"avx512": 1024, "avx2": 256, "other": 256}
# A training batch is split across threads only when each thread gets at
# least this many rows: below it, the parallel region's start-up costs
# more than the split saves (measured in benchmarks/bench_train.py: batch
# 128 on 2 threads gains 30 %, batch 256 gains 2x, on an otherwise idle
# machine; on a busy one any parallel region can lose badly, so pass
# threads=1 there).
_MIN_ROWS_PER_THREAD = 128


class BackendUnavailableError(RuntimeError):
    """The backend asked for cannot run here (CuPy or a CUDA device is missing)."""


def check_backend(name: str) -> str:
    """Validate a backend name; for ``cupy``, check that CuPy and a CUDA device are present."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    if name == "cupy":
        cupy_module()
    return name


def cupy_module():
    """Import CuPy and check for a CUDA device, or raise one clear ``BackendUnavailableError``."""
    try:
        import cupy
    except ImportError as e:
        raise BackendUnavailableError(
            "backend 'cupy' needs CuPy: pip install 'purchase-propensity[gpu]' "
            f"(import failed: {e})"
        ) from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CuPy raises its own CUDA error types; any of them means no GPU
        raise BackendUnavailableError(
            f"backend 'cupy' needs a CUDA device; CUDA reports: {e}"
        ) from None
    if n < 1:
        raise BackendUnavailableError("backend 'cupy' needs a CUDA device; none was found")
    return cupy


@functools.cache
def prediction_block() -> int:
    """Rows per block of prediction on this CPU (``_BLOCKS`` by its widest vector set).

    Fixed per CPU kind, not timed at run time: rows are scored in the same
    blocks on every run, so the same model and rows give the same bits.
    """
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    isa = "avx512" if features.get("avx512f") else "avx2" if features.get("avx2") else "other"
    return _BLOCKS[isa]


def all_finite(X: np.ndarray) -> bool:
    """True when the 2-D array ``X`` holds no NaN or infinity (no temporary array)."""
    return bool(kernels.all_finite(X))


def parallel_chunks(batch_size: int, threads: int) -> int:
    """How many parallel chunks to split each training batch into (1: serial)."""
    return max(1, min(threads, batch_size // _MIN_ROWS_PER_THREAD))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The row permutation of epoch ``epoch`` (int64, shape ``(n,)``), from ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def onehot_matrix(Xd: np.ndarray, dense: np.ndarray, R: np.ndarray, n_inputs: int
                  ) -> np.ndarray:
    """The feature matrix ``X`` (n, n_inputs) of inputs given as dense features and one-hot
    codes: ``X[:, dense] = Xd`` and ``X[i, R[i, c]] = 1``, 0 elsewhere
    (``NumbaBackend.predict_onehot`` takes the same three arrays without building it).

    Raises
    ------
    ValueError
        An index of ``R`` outside ``[0, n_inputs)``.
    """
    if R.size and (R.min() < 0 or R.max() >= n_inputs):
        raise ValueError(f"one-hot index out of range [0, {n_inputs})")
    X = np.zeros((Xd.shape[0], n_inputs), dtype=Xd.dtype)
    X[:, np.asarray(dense, dtype=np.intp)] = Xd
    X[np.arange(R.shape[0])[:, None], R] = 1
    return X


_blas_controller = None


def check_threads(threads) -> int:
    """Validate a thread count: an integer in ``1..NUMBA_NUM_THREADS``."""
    if not 1 <= int(threads) <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"threads must be in 1..{numba.config.NUMBA_NUM_THREADS}, got {threads}")
    return int(threads)


@contextlib.contextmanager
def threads_limited(threads: int | None):
    """Run with ``threads`` Numba threads and single-threaded BLAS; restore both after.

    BLAS is held to one thread because the kernels call it on small
    matrices, from inside their own threads: a second thread pool there
    only adds contention (and run-to-run timing swings).
    """
    global _blas_controller
    if _blas_controller is None:
        # np.dot in the kernels calls SciPy's OpenBLAS (not NumPy's); it must be
        # loaded before the controller takes stock of the libraries, or the
        # limit would miss it.
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    previous = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(check_threads(threads))
    try:
        with _blas_controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(previous)


class NumpyBackend:
    """The reference (``nn_core/reference.py``) on NumPy arrays."""

    xp = np

    def to_device(self, a):
        return a

    def to_host(self, a):
        return a

    def rules(self, model) -> reference.Rules:
        """The element-wise rules of ``model``, as the reference takes them."""
        return reference.rules(model.activation, model.output)

    def predict(self, model, X, threads=None):
        params = self._params(model)
        return self.to_host(reference.predict(params, self.to_device(X), self.rules(model)))

    def predict_onehot(self, model, Xd, dense, R, threads=None, output=None):
        """:meth:`NumbaBackend.predict_onehot` by the reference: the feature matrix built
        (:func:`onehot_matrix`) and predicted; None when ``Xd`` holds NaN or infinity."""
        X = onehot_matrix(Xd, dense, R, model.n_inputs)
        if not np.isfinite(Xd).all():
            return None
        rules = reference.rules(model.activation, output or model.output)
        return self.to_host(reference.predict(self._params(model), self.to_device(X), rules))

    def loss_and_grad(self, model, X, y, s, l2):
        loss, grads = reference.loss_and_grad(
            self._params(model), *(self.to_device(a) for a in (X, y, s)), self.rules(model), l2
        )
        return float(loss), [(self.to_host(dW), self.to_host(db)) for dW, db in grads]

    def _params(self, model):
        return model.unflatten(self.to_device(model.theta))

    def fit(
        self, model, X, y, s, epochs, batch_size, opt, l2, seed, first_epoch, threads,
        lr_of_epoch, on_epoch, weights_each_epoch=True,
    ):
        """Train with the reference code on this backend's arrays.

        On a device (``to_device`` / ``to_host`` are copies) the transfers are:
        the data, ``theta``, the decay mask and the optimizer state go to the
        device once; each epoch, its row order goes there (drawn on the host, so
        that every backend gets the same batches) and the loss (one scalar)
        comes back. ``theta`` comes back after each epoch only when
        ``weights_each_epoch`` (the caller has a callback, e.g. early stopping,
        which predicts and keeps the best weights), otherwise once at the end.
        Nothing is copied per batch. On any exit, an exception inside an epoch
        included, ``theta`` and the optimizer state come back together, so the
        model is left as the NumPy backend (which updates in place) leaves it.
        """
        X, y, s = (self.to_device(a) for a in (X, y, s))
        theta, decay_mask = self.to_device(model.theta), self.to_device(model.decay_mask)
        opt.m, opt.v = self.to_device(opt.m), self.to_device(opt.v)
        r = self.rules(model)
        host_is_current = True
        try:
            for epoch in range(epochs):
                order = self.to_device(epoch_order(X.shape[0], seed, first_epoch + epoch))
                host_is_current = False
                loss = reference.train_epoch(
                    theta,
                    model.unflatten,
                    X,
                    y,
                    s,
                    order,
                    batch_size,
                    opt,
                    lr_of_epoch(epoch),
                    l2,
                    decay_mask,
                    r,
                    model.dropout,
                    seed,
                )
                loss = float(loss)
                if weights_each_epoch:
                    self._copy_back(theta, model.theta)
                    host_is_current = True
                if on_epoch(epoch, loss):
                    break
        finally:
            if not host_is_current:
                self._copy_back(theta, model.theta)
            opt.m, opt.v = self.to_host(opt.m), self.to_host(opt.v)

    def _copy_back(self, theta, host_theta) -> None:
        """Copy the parameters trained on the device into the model's ``theta`` (host)."""
        if theta is not host_theta:
            host_theta[...] = self.to_host(theta)


class CupyBackend(NumpyBackend):
    """The same reference code on CuPy arrays (the array-module pattern).

    Data, parameters and optimizer state stay on the GPU for a whole ``fit``;
    per epoch only the loss (a scalar) comes back, and the parameters too
    when ``fit`` has a callback, see :meth:`NumpyBackend.fit`. The reference's
    element-wise rules run as fused kernels (``nn_core/fusion.py``).
    ``tests/helpers/strict_cupy.py`` stands in for CuPy in the CPU suite, with CuPy's rules on
    host arrays and on fused functions.
    """

    @property
    def xp(self):
        return cupy_module()

    def to_device(self, a):
        return self.xp.asarray(a)

    def to_host(self, a):
        return self.xp.asnumpy(a)

    def rules(self, model) -> reference.Rules:
        """The reference's rules, each fused into one GPU kernel (``nn_core/fusion.py``)."""
        xp = self.xp
        return reference.Rules(*(fused(rule, xp) for rule in super().rules(model)))


class NumbaBackend:
    """Compiled kernels (``nn_core/kernels.py``)."""

    def predict(self, model, X, threads=None):
        precompile.wait()  # the kernel may be compiling in a child process (a cold start)
        act, out = kernels.activation_index(model.activation), kernels.output_index(model.output)

        def kernel(lo, hi, block, p):
            return kernels.predict_blocks(X[lo:hi], model.theta, model.layout, act, out,
                                          block, p[lo:hi])

        p = self._in_slices(kernel, X.shape[0], model.theta.dtype, threads)
        if p is None:
            raise_not_finite(X)
        return p

    def predict_onehot(self, model, Xd, dense, R, threads=None, output=None):
        """Predictions for inputs given as dense features and one-hot codes.

        The feature matrix ``X`` (n, n_inputs) is ``Xd`` in the columns ``dense``
        and, in row ``i``, a 1 at each feature ``R[i, c]`` (one per one-hot
        block), 0 elsewhere; it is never built: the first layer is ``Xd W_0[dense]
        + sum_c W_0[R_ic]`` (``nn_core/kernels.py: forward_rows_onehot``).

        Parameters
        ----------
        model : MLP
        Xd : (n, d_dense) array of ``model.dtype``
        dense : (d_dense,) int array
            The feature index of each column of ``Xd``.
        R : (n, k) int32 array
            Feature indices of the ones, each in ``[0, n_inputs)``.
        threads : int, optional
        output : str, optional
            An output function of ``OUTPUTS`` other than the model's (``"identity"``:
            the logits).

        Returns
        -------
        (n,) array of ``model.dtype``, or None when a row of ``Xd`` holds NaN or
        infinity (the caller names the cell: it knows the columns).

        Raises
        ------
        ValueError
            An index of ``R`` that is not a feature.
        """
        precompile.wait_all()  # a child may be saving a one-hot kernel (a cold train.py)
        act = kernels.activation_index(model.activation)
        out = kernels.output_index(output or model.output)
        W0 = model.unflatten(model.theta)[0][0]
        Wd = np.ascontiguousarray(W0[np.asarray(dense, dtype=np.intp)])

        def kernel(lo, hi, block, p):
            return kernels.predict_blocks_onehot(Xd[lo:hi], R[lo:hi], Wd, model.theta,
                                                 model.layout, act, out, block, p[lo:hi])

        p = self._in_slices(kernel, Xd.shape[0], model.theta.dtype, threads)
        if p is None and R.size and (R.min() < 0 or R.max() >= model.n_inputs):
            raise ValueError(f"one-hot index out of range [0, {model.n_inputs})")
        return p

    @staticmethod
    def _in_slices(kernel, n, dtype, threads):
        """``p`` (n,) from ``kernel(lo, hi, block, p)`` over the rows, or None when it
        returned False (a row it cannot score).

        Serial, or one slice of rows per thread: the kernel releases the GIL,
        so Python threads run it in parallel with no compiled parallel region to
        build. Slices start on block boundaries, so every row lands in the same
        block as in a serial run and gets the same bits (BLAS may round a row
        differently in a block of another height).
        """
        p = np.empty(n, dtype=dtype)
        block = prediction_block()
        n_threads = numba.get_num_threads() if threads is None else check_threads(threads)
        slices = min(n_threads, n // _PARALLEL_ROWS)
        # BLAS to one thread on every path: the threads, if any, are ours.
        with threads_limited(None):
            if slices <= 1:
                finite = kernel(0, n, block, p)
            else:
                blocks = -(-n // block)
                bounds = [min(n, block * (blocks * k // slices)) for k in range(slices + 1)]
                finite = all(_thread_pool().map(
                    lambda k: kernel(bounds[k], bounds[k + 1], block, p), range(slices)))
        return p if finite else None

    def loss_and_grad(self, model, X, y, s, l2):
        # One full-batch step of the epoch kernel computes exactly this
        # gradient; the optimizer's learning rate is 0 so nothing moves. Adam,
        # fit's default, so that the kernel is the one training compiles.
        grad = np.zeros_like(model.theta)
        theta = model.theta.copy()
        m, v = np.zeros_like(theta), np.zeros_like(theta)  # Adam's state; with lr 0 theta stays
        act, out = kernels.activation_index(model.activation), kernels.output_index(model.output)
        with threads_limited(None):
            loss, _ = kernels.train_epoch(
                X, y, s, np.arange(X.shape[0], dtype=np.int64), theta, grad, model.layout, act,
                out, l2, kernels.ADAM, m, v, 0, 0.0, Optimizer("adam", 1, model.dtype).hyper(),
                np.zeros_like(theta), X.shape[0], 0.0, 0,
            )
        return float(loss), [(dW.copy(), db.copy()) for dW, db in model.unflatten(grad)]

    def fit(
        self, model, X, y, s, epochs, batch_size, opt, l2, seed, first_epoch, threads,
        lr_of_epoch, on_epoch, weights_each_epoch=True,
    ):
        # ``weights_each_epoch`` is moot here: the kernels update model.theta in place.
        grad = np.zeros_like(model.theta)
        act, out = kernels.activation_index(model.activation), kernels.output_index(model.output)
        rule = kernels.optimizer_index(opt.name)
        hyper = opt.hyper()
        with threads_limited(threads):
            chunks = parallel_chunks(batch_size, numba.get_num_threads())
            for epoch in range(epochs):
                order = epoch_order(X.shape[0], seed, first_epoch + epoch)
                args = (
                    X, y, s, order, model.theta, grad, model.layout, act, out, l2, rule,
                    opt.m, opt.v, opt.t, lr_of_epoch(epoch), hyper, model.decay_mask,
                    batch_size, model.dropout, seed,
                )
                if chunks > 1:
                    loss, opt.t = kernels.train_epoch_parallel(*args, chunks)
                else:
                    loss, opt.t = kernels.train_epoch(*args)
                if on_epoch(epoch, float(loss)):
                    break


_POOL = None


def _thread_pool():
    """One shared pool of Python threads for parallel prediction (created on first use)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS)
    return _POOL


_INSTANCES: dict[str, object] = {}


def get(name: str):
    """The backend object of that name."""
    if name not in _INSTANCES:
        cls: Callable = {"numba": NumbaBackend, "numpy": NumpyBackend, "cupy": CupyBackend}[name]
        _INSTANCES[name] = cls()
    return _INSTANCES[name]
