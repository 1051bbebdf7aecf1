"""The ``numba`` backend: the reference math (``nn_core/reference.py``) as compiled kernels.

A whole epoch of mini-batch steps runs inside one compiled call,
:func:`train_epoch`, so Python is entered once per epoch, not once per
batch. The matrix products go to BLAS through ``np.dot`` (with ``out=``
buffers, so nothing is allocated per product; see :func:`matmul`); the activations, their
backward rules, the losses and the output delta are the very functions of
``nn_core/activations.py`` and ``nn_core/losses.py``, compiled here with
``numba.njit``; the optimizer updates are loops over the flat parameter
vector (a loop avoids the temporaries of the array form in ``optim.py``).

Every kernel is also importable un-jitted as ``<name>.py_func`` for reading
and debugging. ``fastmath`` is on: these are the fast path. The gradient
check never runs here (it uses the float64 reference).

Flat parameter layout: ``layout[l] = (w_off, b_off, fan_in, fan_out)``
locates ``W_l`` (row-major) and ``b_l`` in ``theta``; gradients use the
same layout in ``grad``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import activations as _a
from . import losses as _lo
from .reference import splitmix64 as _splitmix64_py
from .reference import uniform01 as _uniform01_py

_jit = numba.njit(cache=True, fastmath=True, error_model="numpy", nogil=True)
# The prediction kernels test their input for NaN and infinity, so they may
# not let the compiler assume that no value is NaN or infinite (nnan, ninf).
_FINITE_SAFE_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
_pred_jit = numba.njit(cache=True, fastmath=_FINITE_SAFE_FASTMATH, error_model="numpy", nogil=True)
_pred_pjit = numba.njit(
    cache=True, fastmath=_FINITE_SAFE_FASTMATH, error_model="numpy", nogil=True, parallel=True
)

# The shared definitions, compiled (not rewritten).
_relu, _relu_b = _jit(_a.relu), _jit(_a.relu_backward)
_leaky, _leaky_b = _jit(_a.leaky_relu), _jit(_a.leaky_relu_backward)
_tanh, _tanh_b = _jit(_a.tanh), _jit(_a.tanh_backward)
_sigmoid, _sigmoid_b = _jit(_a.sigmoid), _jit(_a.sigmoid_backward)
_bce = _jit(_lo.bce_with_logits)
_half_sq = _jit(_lo.half_squared_error)
_output_delta = _jit(_lo.output_delta)
_splitmix64 = _jit(_splitmix64_py)
_uniform01 = _jit(_uniform01_py)

# Codes as in nn_core.activations.ACTIVATION_CODES / OUTPUT_CODES.
RELU, LEAKY_RELU, TANH, SIGMOID, IDENTITY = (
    _a.ACTIVATION_CODES[k] for k in ("relu", "leaky_relu", "tanh", "sigmoid", "identity")
)
OUT_SIGMOID = _a.OUTPUT_CODES["sigmoid"]


def activate(code, Z):
    """``Z = f(Z)`` in place (1-D view of a layer's buffer), for the activation ``code``.

    One loop per activation, so that each loop body is a single inlined
    scalar function that the compiler can vectorise.
    """
    if code == RELU:
        for k in range(Z.shape[0]):
            Z[k] = _relu(Z[k])
    elif code == LEAKY_RELU:
        for k in range(Z.shape[0]):
            Z[k] = _leaky(Z[k])
    elif code == TANH:
        for k in range(Z.shape[0]):
            Z[k] = _tanh(Z[k])
    elif code == SIGMOID:
        for k in range(Z.shape[0]):
            Z[k] = _sigmoid(Z[k])


def activation_backward(code, A, dH):
    """``dH = dH * f'(Z)`` in place, written with ``A = f(Z)`` (1-D views)."""
    if code == RELU:
        for k in range(dH.shape[0]):
            dH[k] = _relu_b(A[k], dH[k])
    elif code == LEAKY_RELU:
        for k in range(dH.shape[0]):
            dH[k] = _leaky_b(A[k], dH[k])
    elif code == TANH:
        for k in range(dH.shape[0]):
            dH[k] = _tanh_b(A[k], dH[k])
    elif code == SIGMOID:
        for k in range(dH.shape[0]):
            dH[k] = _sigmoid_b(A[k], dH[k])


def output_loss_delta(out_code, z, y, s, Y, delta):
    """Output, loss and output delta of a batch of ``n`` logits ``z``.

    ``Y = g(z)``; ``delta = s (Y - y) / n``; returns ``(1/n) sum_i s_i l(z_i, y_i)``.
    """
    n = z.shape[0]
    total = 0.0
    for i in range(n):
        if out_code == OUT_SIGMOID:
            Y[i] = _sigmoid(z[i])
            total += s[i] * _bce(z[i], y[i])
        else:
            Y[i] = z[i]
            total += s[i] * _half_sq(z[i], y[i])
        delta[i] = _output_delta(Y[i], y[i], s[i], n)
    return total / n


def dropout_key(seed, step, layer):
    """Same key as ``nn_core.reference.dropout_key``, from uint64 scalars."""
    k = _splitmix64(np.uint64(seed))
    k = _splitmix64(k ^ np.uint64(step))
    return _splitmix64(k ^ np.uint64(layer))


def fill_dropout_mask(key, p, D):
    """``D_ij = 1/(1-p)`` if ``uniform01(key + i*width + j) >= p`` else 0 (in place)."""
    n, width = D.shape
    key = np.uint64(key)  # a key passed from Python arrives as int64; uint64 + int64 is float64
    scale = 1.0 / (1.0 - p)
    for i in range(n):
        for j in range(width):
            u = _uniform01(np.uint64(i * width + j) + key)
            D[i, j] = scale if u >= p else 0.0


def optimizer_step(code, theta, g, m, v, t, lr, hyper, decay_mask):
    """One optimizer update over the flat vectors (loop form of ``Optimizer.step``).

    ``hyper = [mu, b1, 1 - b1, b2, 1 - b2, eps, wd]`` in ``theta``'s dtype
    (``Optimizer.hyper``): float32 constants keep a float32 loop in float32,
    which vectorises about 3x better than one mixed with float64. ``t`` is
    the step number after this update (1 for the first). Codes as in
    ``nn_core.optim.OPTIMIZER_CODES``: 0 SGD, 1 momentum, 2 Nesterov, 3 Adam.
    """
    mu, b1, one_m_b1, b2, one_m_b2, eps = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4], hyper[5]
    # Per-step scalars, computed in float64 and rounded once to theta's dtype.
    c = np.empty(4, dtype=theta.dtype)
    c[0] = lr
    c[1] = lr * hyper[6]
    c[2] = lr / (1.0 - b1**t)
    c[3] = 1.0 / math.sqrt(1.0 - b2**t)
    lr_, shrink, step, inv_root_bias2 = c[0], c[1], c[2], c[3]
    if shrink != 0.0:
        for k in range(theta.shape[0]):
            theta[k] -= shrink * decay_mask[k] * theta[k]
    if code == 0:
        for k in range(theta.shape[0]):
            theta[k] -= lr_ * g[k]
    elif code == 1:
        for k in range(theta.shape[0]):
            m[k] = mu * m[k] + g[k]
            theta[k] -= lr_ * m[k]
    elif code == 2:
        for k in range(theta.shape[0]):
            m[k] = mu * m[k] + g[k]
            theta[k] -= lr_ * (g[k] + mu * m[k])
    else:
        for k in range(theta.shape[0]):
            m[k] = b1 * m[k] + one_m_b1 * g[k]
            v[k] = b2 * v[k] + one_m_b2 * g[k] * g[k]
            theta[k] -= step * m[k] / (np.sqrt(v[k]) * inv_root_bias2 + eps)


def matmul(A, B, C):
    """``C = A @ B`` into the preallocated ``C``.

    BLAS (``np.dot``) for the real matrix products; plain loops for a few
    rows (single-row prediction) and for the output layer's products, where
    ``C`` is one column wide or ``A`` one column deep: there a BLAS call
    costs more than the arithmetic.
    """
    n, k = A.shape
    m = B.shape[1]
    if n <= 4 and m > 1:
        # A few rows (single-row prediction): row times matrix, vectorised
        # over j, four rows of B per pass so that C is loaded and stored a
        # quarter as often.
        for i in range(n):
            C_i = C[i]
            C_i[:] = 0.0
            p = 0
            while p + 4 <= k:
                a0, a1, a2, a3 = A[i, p], A[i, p + 1], A[i, p + 2], A[i, p + 3]
                B0, B1, B2, B3 = B[p], B[p + 1], B[p + 2], B[p + 3]
                for j in range(m):
                    C_i[j] += a0 * B0[j] + a1 * B1[j] + a2 * B2[j] + a3 * B3[j]
                p += 4
            for q in range(p, k):
                a, B_q = A[i, q], B[q]
                for j in range(m):
                    C_i[j] += a * B_q[j]
    elif m == 1:
        for i in range(n):
            acc = 0.0
            for p in range(k):
                acc += A[i, p] * B[p, 0]
            C[i, 0] = acc
    elif k == 1:
        for i in range(n):
            a = A[i, 0]
            for j in range(m):
                C[i, j] = a * B[0, j]
    else:
        np.dot(A, B, C)


def train_epoch(
    X,
    y,
    s,
    order,
    theta,
    grad,
    layout,
    act,
    out,
    l2,
    opt,
    m,
    v,
    t,
    lr,
    hyper,
    decay_mask,
    batch_size,
    dropout,
    seed,
):
    """One epoch of mini-batch training, updating ``theta``, ``m`` and ``v`` in place.

    The same steps as ``nn_core.reference.train_epoch``: for each batch,
    forward ``H_l = f(H_{l-1} W_l + b_l) [* D_l]``, loss, output delta
    ``s (Y - y) / n``, backward ``dW_l = H_{l-1}^T delta_l + lambda W_l``,
    ``db_l = 1^T delta_l``, ``delta_{l-1} = (delta_l W_l^T [* D_{l-1}]) f'``,
    then one optimizer step.

    Parameters
    ----------
    X : (N, d_0) array; y, s : (N,) arrays
        Inputs, targets and per-sample loss weights, all of ``theta``'s dtype.
    order : (N,) int64 array
        Row order of this epoch.
    theta, grad : (P,) arrays
        Flat parameters (updated) and gradient scratch space.
    layout : (L, 4) int64 array
    act, out : int
        Activation and output codes.
    l2 : float
    opt : int
        Optimizer code; ``m``, ``v`` its state vectors; ``t`` its step count so far.
    lr : float
    hyper : (7,) array of theta's dtype
        From ``Optimizer.hyper``.
    decay_mask : (P,) array
    batch_size : int
    dropout : float
    seed : int

    Returns
    -------
    (float, int)
        Mean training loss over the epoch, and the optimizer's step count after it.
    """
    N, d0 = X.shape
    L = layout.shape[0]
    maxw = 1
    for l in range(L):
        maxw = max(maxw, layout[l, 3])
    dt = theta.dtype
    Xb = np.empty((batch_size, d0), dtype=dt)
    yb = np.empty(batch_size, dtype=dt)
    sb = np.empty(batch_size, dtype=dt)
    Yb = np.empty(batch_size, dtype=dt)
    A_buf = np.empty((max(L - 1, 1), batch_size * maxw), dtype=dt)  # f(Z_l)
    H_buf = np.empty((max(L - 1, 1), batch_size * maxw), dtype=dt)  # f(Z_l) * D_l
    D_buf = np.empty((max(L - 1, 1), batch_size * maxw), dtype=dt)  # dropout masks
    d_buf = np.empty((2, batch_size * maxw), dtype=dt)  # delta_l, alternating
    Z_out = np.empty((batch_size, 1), dtype=dt)
    H = H_buf if dropout > 0.0 else A_buf
    total = 0.0
    for start in range(0, N, batch_size):
        n = min(batch_size, N - start)
        for i in range(n):
            r = order[start + i]
            Xb[i, :] = X[r, :]
            yb[i] = y[r]
            sb[i] = s[r]
        # Forward.
        for l in range(L):
            w_off, b_off, fi, fo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
            W = theta[w_off : w_off + fi * fo].reshape((fi, fo))
            b = theta[b_off : b_off + fo]
            H_in = Xb[:n] if l == 0 else H[l - 1, : n * fi].reshape((n, fi))
            Z = Z_out[:n] if l == L - 1 else A_buf[l, : n * fo].reshape((n, fo))
            matmul(H_in, W, Z)
            Z += b
            if l < L - 1:
                activate(act, A_buf[l, : n * fo])
                if dropout > 0.0:
                    D = D_buf[l, : n * fo].reshape((n, fo))
                    fill_dropout_mask(dropout_key(seed, t, l), dropout, D)
                    H_buf[l, : n * fo] = A_buf[l, : n * fo] * D_buf[l, : n * fo]
        cur = 0
        batch_loss = output_loss_delta(out, Z_out[:n, 0], yb[:n], sb[:n], Yb[:n], d_buf[cur, :n])
        if l2 != 0.0:
            penalty = 0.0
            for l in range(L):
                w_off, fi, fo = layout[l, 0], layout[l, 2], layout[l, 3]
                for k in range(w_off, w_off + fi * fo):
                    penalty += theta[k] * theta[k]
            batch_loss += 0.5 * l2 * penalty
        total += batch_loss * n
        # Backward.
        for l in range(L - 1, -1, -1):
            w_off, b_off, fi, fo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
            W = theta[w_off : w_off + fi * fo].reshape((fi, fo))
            dW = grad[w_off : w_off + fi * fo].reshape((fi, fo))
            delta = d_buf[cur, : n * fo].reshape((n, fo))
            H_in = Xb[:n] if l == 0 else H[l - 1, : n * fi].reshape((n, fi))
            matmul(H_in.T, delta, dW)
            if l2 != 0.0:
                for k in range(fi * fo):
                    grad[w_off + k] += l2 * theta[w_off + k]
            for j in range(fo):
                grad[b_off + j] = 0.0
            for i in range(n):
                for j in range(fo):
                    grad[b_off + j] += delta[i, j]
            if l > 0:
                dH = d_buf[1 - cur, : n * fi].reshape((n, fi))
                matmul(delta, W.T, dH)
                if dropout > 0.0:
                    dH *= D_buf[l - 1, : n * fi].reshape((n, fi))
                activation_backward(act, A_buf[l - 1, : n * fi], d_buf[1 - cur, : n * fi])
                cur = 1 - cur
        t += 1
        optimizer_step(opt, theta, grad, m, v, t, lr, hyper, decay_mask)
    return total / N, t


def forward_rows(X, theta, layout, act, out, p):
    """``p = g(Z)`` for the rows of ``X`` (serial; buffers sized to the widest layer).

    Returns False, computing nothing, when ``X`` holds NaN or infinity.
    """
    if not all_finite(X):
        return False
    n = X.shape[0]
    L = layout.shape[0]
    maxw = 1
    for l in range(L):
        maxw = max(maxw, layout[l, 3])
    bufs = np.empty((2, n * maxw), dtype=theta.dtype)
    Z_out = np.empty((n, 1), dtype=theta.dtype)
    cur = 0
    for l in range(L):
        w_off, b_off, fi, fo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        W = theta[w_off : w_off + fi * fo].reshape((fi, fo))
        H_in = X if l == 0 else bufs[1 - cur, : n * fi].reshape((n, fi))
        Z = Z_out if l == L - 1 else bufs[cur, : n * fo].reshape((n, fo))
        matmul(H_in, W, Z)
        Z += theta[b_off : b_off + fo]
        if l < L - 1:
            activate(act, bufs[cur, : n * fo])
            cur = 1 - cur
    for i in range(n):
        p[i] = _sigmoid(Z_out[i, 0]) if out == OUT_SIGMOID else Z_out[i, 0]
    return True


def predict_blocks(X, theta, layout, act, out, block, p):
    """:func:`forward_rows` over blocks of ``block`` rows, the blocks in parallel.

    Returns False when any block held NaN or infinity (each block records
    its own flag: no shared write between threads).
    """
    n = X.shape[0]
    n_blocks = (n + block - 1) // block
    finite = np.empty(n_blocks, dtype=np.bool_)
    for k in numba.prange(n_blocks):
        lo = k * block
        hi = min(n, lo + block)
        finite[k] = forward_rows(X[lo:hi], theta, layout, act, out, p[lo:hi])
    return finite.all()


def all_finite(X):
    """True when no element of the 2-D array ``X`` is NaN or infinite (stops at the first)."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            if not math.isfinite(X[i, j]):
                return False
    return True


# Compiled versions under the same names (all_finite without fastmath, which
# would let the compiler assume every number is finite); the plain functions stay reachable
# as `.py_func` (numba keeps them), for teaching and debugging.
activate = _jit(activate)
activation_backward = _jit(activation_backward)
output_loss_delta = _jit(output_loss_delta)
dropout_key = _jit(dropout_key)
fill_dropout_mask = _jit(fill_dropout_mask)
all_finite = numba.njit(cache=True, nogil=True)(all_finite)
optimizer_step = _jit(optimizer_step)
matmul = _jit(matmul)
train_epoch = _jit(train_epoch)
forward_rows = _pred_jit(forward_rows)
predict_blocks = _pred_pjit(predict_blocks)
