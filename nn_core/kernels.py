"""The ``numba`` backend: the reference math (``nn_core/reference.py``) as compiled kernels.

A whole epoch of mini-batch steps runs inside one compiled call,
:func:`train_epoch`, so Python is entered once per epoch, not once per
batch. The matrix products go to BLAS through ``np.dot`` (with ``out=``
buffers, so nothing is allocated per product; see :func:`matmul`); the activations, their
backward rules, the losses, the output delta and the optimizer rules are the
very functions of ``nn_core/activations.py``, ``nn_core/losses.py`` and
``nn_core/optim.py``, compiled here with ``numba.njit`` and applied element
by element in loops (a loop avoids the temporaries of the array form).
Each layer's forward and backward halves are :func:`layer_forward` and
:func:`layer_backward`, as in ``nn_core/reference.py``.

Element-wise work is written as loops rather than array expressions: a
loop compiles to less code (an array assignment brings in its shape checks
and their error messages, seconds of compile time) and allocates nothing.

Every kernel is also importable un-jitted as ``<name>.py_func`` for reading
and debugging. ``fastmath`` is on (all of it but FMA contraction, see
``_FASTMATH``): these are the fast path. The gradient check
(``nn_core/gradcheck.py``) checks the gradient these kernels compute for a
``numba`` model against float64 finite differences of the reference loss,
with a tolerance for the model's dtype.

Flat parameter layout: ``layout[l] = (w_off, b_off, fan_in, fan_out)``
locates ``W_l`` (row-major) and ``b_l`` in ``theta``; gradients use the
same layout in ``grad``.
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np
from numba import literal_unroll

from .activations import ACTIVATIONS
from .dropout import dropout_key
from .dropout import uniform01 as _uniform01_py
from .losses import LOSSES, OUTPUTS
from .losses import output_delta as _output_delta_py
from .optim import OPTIMIZERS, decayed

# fastmath without "contract": the compiler may reorder sums (reassoc, which
# lets it vectorise reductions), but not fuse a*b + c into one FMA. Numba
# decides FMA fusion differently when it JIT-compiles than when it writes the
# on-disk cache, so with "contract" the first run of a new cache trained to
# different weights than every later run from the same seed.
_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "afn", "reassoc"}
_jit = numba.njit(cache=True, fastmath=_FASTMATH, error_model="numpy", nogil=True)
_pjit = numba.njit(cache=True, fastmath=_FASTMATH, error_model="numpy", nogil=True, parallel=True)
# The prediction kernels test their input for NaN and infinity, so they may
# not let the compiler assume that no value is NaN or infinite (nnan, ninf).
_FINITE_SAFE_FASTMATH = _FASTMATH - {"nnan", "ninf"}
_pred_jit = numba.njit(cache=True, fastmath=_FINITE_SAFE_FASTMATH, error_model="numpy", nogil=True)

# literal_unroll over a tuple of compiled functions types them as "first-class
# functions", which Numba marks experimental; the code it generates is the same
# as an if/elif ladder over the functions (timed in docs/benchmarks.md).
warnings.filterwarnings(
    "ignore", "First-class function type feature is experimental",
    numba.NumbaExperimentalFeatureWarning,
)

# The shared definitions, compiled (not rewritten): one tuple per table, in
# the table's order, so that index k of a tuple is entry k of the table.
# The kernels take the index of the network's entry (``activation_index``
# and friends) and pick the rule with literal_unroll, which unrolls the loop
# over the tuple at compile time into one branch per entry: the branch for
# the network's rule holds a loop around that rule alone, inlined. An index
# outside the table is refused after the loop (Numba 0.68 cannot type a
# literal_unroll loop that follows a raise).
_F = tuple(_jit(a.forward) for a in ACTIVATIONS.values())
_F_BACKWARD = tuple(_jit(a.backward) for a in ACTIVATIONS.values())
_G = tuple(_jit(g) for g in OUTPUTS.values())
_G_AND_L = tuple((_jit(g), _jit(LOSSES[name])) for name, g in OUTPUTS.items())
_UPDATE = tuple(_jit(rule) for rule in OPTIMIZERS.values())
_decayed = _jit(decayed)
_output_delta = _jit(_output_delta_py)
_uniform01 = _jit(_uniform01_py)

N_ACTIVATIONS, N_OUTPUTS, N_OPTIMIZERS = len(ACTIVATIONS), len(OUTPUTS), len(OPTIMIZERS)
#: Index of the identity, the "activation" of the output layer's logits.
IDENTITY = list(ACTIVATIONS).index("identity")


def activation_index(name: str) -> int:
    """Index of an activation in the compiled kernels (its position in ``ACTIVATIONS``)."""
    return list(ACTIVATIONS).index(name)


def output_index(name: str) -> int:
    """Index of an output function in the compiled kernels (its position in ``OUTPUTS``)."""
    return list(OUTPUTS).index(name)


def optimizer_index(name: str) -> int:
    """Index of an optimizer rule in the compiled kernels (its position in ``OPTIMIZERS``)."""
    return list(OPTIMIZERS).index(name)


def bias_activate(act, Z, b):
    """``Z = f(Z + b)`` in place, for activation ``act`` (``Z``: (n, d), ``b``: (d,)).

    Adding the bias and applying ``f`` in one pass reads the layer's buffer
    once (prediction, which needs no ``Z`` afterwards).
    """
    n, d = Z.shape
    k = 0
    for f in literal_unroll(_F):
        if k == act:
            for i in range(n):
                for j in range(d):
                    Z[i, j] = f(Z[i, j] + b[j])
        k += 1
    if not 0 <= act < N_ACTIVATIONS:
        raise ValueError("bias_activate: unknown activation index")


def bias_activate_keep(act, Z, b, A):
    """``Z = Z + b`` in place and ``A = f(Z)`` (training: the backward rule needs both)."""
    n, d = Z.shape
    k = 0
    for f in literal_unroll(_F):
        if k == act:
            for i in range(n):
                for j in range(d):
                    z = Z[i, j] + b[j]
                    Z[i, j] = z
                    A[i, j] = f(z)
        k += 1
    if not 0 <= act < N_ACTIVATIONS:
        raise ValueError("bias_activate_keep: unknown activation index")


def activate(act, H):
    """``H = f(H)`` in place, for activation ``act`` (``H``: 1-D).

    The one-row twin of :func:`bias_activate` (single-row prediction adds the
    bias in :func:`row_times_matrix`). Neither is written in terms of the
    other: training through a row loop over this function was 12 % slower per
    batch of 32, and prediction through ``bias_activate`` on a (1, d) view
    25 % slower per row.
    """
    k = 0
    for f in literal_unroll(_F):
        if k == act:
            for j in range(H.shape[0]):
                H[j] = f(H[j])
        k += 1
    if not 0 <= act < N_ACTIVATIONS:
        raise ValueError("activate: unknown activation index")


def activation_backward(act, Z, A, dH):
    """``dH = dH * f'(Z)`` in place, given ``Z`` and ``A = f(Z)`` (1-D views)."""
    k = 0
    for f_backward in literal_unroll(_F_BACKWARD):
        if k == act:
            for i in range(dH.shape[0]):
                dH[i] = f_backward(Z[i], A[i], dH[i])
        k += 1
    if not 0 <= act < N_ACTIVATIONS:
        raise ValueError("activation_backward: unknown activation index")


def output_function(out, z):
    """``g(z)`` of one logit, for output function ``out``."""
    y = z
    k = 0
    for g in literal_unroll(_G):
        if k == out:
            y = g(z)
        k += 1
    return y


def output_loss_delta(out, z, y, s, Y, delta, n):
    """Output, loss and output delta of the logits ``z`` of (part of) a batch of ``n`` rows.

    ``Y = g(z)``; ``delta = s (Y - y) / n``; returns ``(1/n) sum_i s_i l(z_i, y_i)``.
    """
    total = 0.0
    k = 0
    for g_and_l in literal_unroll(_G_AND_L):
        if k == out:
            g, l = g_and_l
            for i in range(z.shape[0]):
                Y[i] = g(z[i])
                total += s[i] * l(z[i], y[i])
                delta[i] = _output_delta(Y[i], y[i], s[i], n)
        k += 1
    if not 0 <= out < N_OUTPUTS:
        raise ValueError("output_loss_delta: unknown output index")
    return total / n


def fill_dropout_mask(key, p, D, row0=0):
    """``D_ij = 1/(1-p)`` if ``uniform01(key + (row0 + i)*width + j) >= p`` else 0 (in place).

    ``row0`` is the position of ``D``'s first row in the whole batch, so a
    batch split into chunks draws the same mask as the batch in one piece.
    """
    n, width = D.shape
    key = np.uint64(key)  # a key passed from Python arrives as int64; uint64 + int64 is float64
    scale = 1.0 / (1.0 - p)
    for i in range(n):
        for j in range(width):
            u = _uniform01(np.uint64((row0 + i) * width + j) + key)
            D[i, j] = scale if u >= p else 0.0


def optimizer_step(opt, theta, g, m, v, t, lr, hyper, decay_mask):
    """One optimizer update over the flat vectors: the rule ``opt`` of ``OPTIMIZERS``, per element.

    ``hyper = [mu, b1, 1 - b1, b2, 1 - b2, eps, wd]`` in ``theta``'s dtype
    (``Optimizer.hyper``): float32 constants keep a float32 loop in float32,
    which vectorises about 3x better than one mixed with float64. ``t`` is
    the step number after this update (1 for the first).
    """
    mu, b1, one_m_b1, b2, one_m_b2, eps = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4], hyper[5]
    # Per-step scalars, computed in float64 and rounded once to theta's dtype.
    c = np.empty(4, dtype=theta.dtype)
    c[0] = lr
    c[1] = lr * hyper[6]
    c[2] = lr / (1.0 - b1**t)
    c[3] = 1.0 / math.sqrt(1.0 - b2**t)
    lr_, rate, lr_t, r = c[0], c[1], c[2], c[3]
    if rate != 0.0:
        for k in range(theta.shape[0]):
            theta[k] = _decayed(theta[k], decay_mask[k], rate)
    i = 0
    for update in literal_unroll(_UPDATE):
        if i == opt:
            for k in range(theta.shape[0]):
                theta[k], m[k], v[k] = update(
                    theta[k], g[k], m[k], v[k], lr_, mu, b1, one_m_b1, b2, one_m_b2, lr_t, r, eps
                )
        i += 1
    if not 0 <= opt < N_OPTIMIZERS:
        raise ValueError("optimizer_step: unknown optimizer index")


def matmul(A, B, C):
    """``C = A @ B`` into the preallocated ``C``.

    BLAS (``np.dot``) for the real matrix products; plain loops for the
    output layer's products, where ``C`` is one column wide or ``A`` one
    column deep: there a BLAS call costs more than the arithmetic.
    """
    n, k = A.shape
    m = B.shape[1]
    if m == 1 and A.flags.c_contiguous:
        # One dot product per row of A (the output layer's forward product).
        for i in range(n):
            acc = 0.0
            for p in range(k):
                acc += A[i, p] * B[p, 0]
            C[i, 0] = acc
    elif m == 1:
        # A is a transposed matrix (``H^T`` in the output layer's ``dW``): its
        # columns are contiguous, so add them up scaled by B, rather than
        # reading its rows with a stride.
        for i in range(n):
            C[i, 0] = 0.0
        for p in range(k):
            b = B[p, 0]
            for i in range(n):
                C[i, 0] += A[i, p] * b
    elif k == 1:
        for i in range(n):
            a = A[i, 0]
            for j in range(m):
                C[i, j] = a * B[0, j]
    else:
        np.dot(A, B, C)


def column_sums(A, out):
    """``out = 1^T A``, the column sums of ``A`` (n, m) (the bias gradient ``db = 1^T delta``).

    Its own function, so that the compiler sees ``out`` as an array of its
    own and vectorises the loop over ``j`` (indexing the flat gradient with
    an offset inside the caller left it scalar, about 3x slower).
    """
    n, m = A.shape
    for j in range(m):
        out[j] = A[0, j]
    for i in range(1, n):
        for j in range(m):
            out[j] += A[i, j]


def row_times_matrix(a, B, b, c):
    """``c = a @ B + b`` for one row ``a`` (length k), ``B`` (k, m) and ``b`` (m,), without BLAS.

    For one row a BLAS call costs more than the arithmetic. Vectorised over
    the columns ``j``, eight rows of ``B`` per pass, so that ``c`` is loaded
    and stored an eighth as often. Its own function (not a branch of
    :func:`matmul`) so that training never compiles it.
    """
    k, m = B.shape
    for j in range(m):
        c[j] = b[j]
    p = 0
    while p + 8 <= k:
        a0, a1, a2, a3 = a[p], a[p + 1], a[p + 2], a[p + 3]
        a4, a5, a6, a7 = a[p + 4], a[p + 5], a[p + 6], a[p + 7]
        B0, B1, B2, B3 = B[p], B[p + 1], B[p + 2], B[p + 3]
        B4, B5, B6, B7 = B[p + 4], B[p + 5], B[p + 6], B[p + 7]
        for j in range(m):
            c[j] += (
                (a0 * B0[j] + a1 * B1[j])
                + (a2 * B2[j] + a3 * B3[j])
                + ((a4 * B4[j] + a5 * B5[j]) + (a6 * B6[j] + a7 * B7[j]))
            )
        p += 8
    for q in range(p, k):
        a_q, B_q = a[q], B[q]
        for j in range(m):
            c[j] += a_q * B_q[j]


def layer_forward(act, H_in, W, b, Z, A):
    """``Z = H_in W + b`` and ``A = f(Z)`` of one hidden layer of a training batch.

    ``H_in``: (m, d_in), ``W``: (d_in, d_out), ``b``: (d_out,); ``Z`` and ``A``:
    (m, d_out), written. ``Z`` is kept for the backward rule.
    """
    matmul(H_in, W, Z)
    bias_activate_keep(act, Z, b, A)


def layer_backward(H_in, W, delta, dW, db, dH_in):
    """``dW = H_in^T delta``, ``db = 1^T delta`` and, unless ``dH_in`` has no rows
    (the first layer), ``dH_in = delta W^T``; all written into the given buffers."""
    matmul(H_in.T, delta, dW)
    column_sums(delta, db)
    if dH_in.shape[0] > 0:
        matmul(delta, W.T, dH_in)


def batch_gradient(X, y, s, rows, n, row0, theta, layout, act, out, dropout, seed, t, grad, ws, c):
    """Data loss and its gradient for the rows ``rows`` of a batch of ``n`` rows.

    Forward (:func:`layer_forward`) ``Z_l = H_{l-1} W_l + b_l``,
    ``H_l = f(Z_l) [* D_l]``; loss; output delta ``s (Y - y) / n``; backward
    (:func:`layer_backward`) ``dW_l = H_{l-1}^T delta_l``, ``db_l = 1^T delta_l``,
    then ``delta_{l-1} = (delta_l W_l^T [* D_{l-1}]) f'(Z_{l-1})``
    (:func:`activation_backward`). Dividing by the whole batch's ``n`` (not
    ``len(rows)``) makes the gradients of a batch's chunks add up to the batch's
    gradient. The L2 term is not included (:func:`add_l2` adds it once per batch).

    Parameters
    ----------
    X, y, s : arrays (N, d_0), (N,), (N,)
    rows : (m,) int64 array
        Row indices into ``X`` of this chunk.
    n : int
        Rows in the whole batch.
    row0 : int
        Position of this chunk's first row in the batch (for the dropout masks).
    theta : (P,) array
    layout : (L, 4) int64 array
    act, out : int
        Indices of the activation and the output function.
    dropout : float
    seed, t : int
        Dropout seed and the optimizer step count (the mask key).
    grad : (P,) array
        Written with this chunk's gradient.
    ws : tuple of arrays
        Work space from :func:`workspace`; this call uses slot ``c``.

    Returns
    -------
    float
        ``(1/n) sum over these rows of s_i l(z_i, y_i)``.
    """
    Xb, yb, sb, Yb, A_buf, H_buf = ws[0][c], ws[1][c], ws[2][c], ws[3][c], ws[4][c], ws[5][c]
    D_buf, d_buf, Z_out, Z_buf = ws[6][c], ws[7][c], ws[8][c], ws[9][c]
    m = rows.shape[0]
    L = layout.shape[0]
    for i in range(m):
        r = rows[i]
        for j in range(X.shape[1]):
            Xb[i, j] = X[r, j]
        yb[i] = y[r]
        sb[i] = s[r]
    H = H_buf if dropout > 0.0 else A_buf
    # Forward.
    for l in range(L):
        w_off, b_off, fi, fo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        W, b = theta[w_off : w_off + fi * fo].reshape((fi, fo)), theta[b_off : b_off + fo]
        H_in = Xb[:m] if l == 0 else H[l - 1, : m * fi].reshape((m, fi))
        if l == L - 1:  # the output layer's logits: z = H W + b
            matmul(H_in, W, Z_out[:m])
            bias_activate(IDENTITY, Z_out[:m], b)
            break
        Z, A = Z_buf[l, : m * fo].reshape((m, fo)), A_buf[l, : m * fo].reshape((m, fo))
        layer_forward(act, H_in, W, b, Z, A)
        if dropout > 0.0:
            D = D_buf[l, : m * fo].reshape((m, fo))
            fill_dropout_mask(dropout_key(seed, t, l), dropout, D, row0)
            for k in range(m * fo):
                H_buf[l, k] = A_buf[l, k] * D_buf[l, k]
    cur = 0
    data_loss = output_loss_delta(out, Z_out[:m, 0], yb[:m], sb[:m], Yb[:m], d_buf[cur, :m], n)
    # Backward.
    for l in range(L - 1, -1, -1):
        w_off, b_off, fi, fo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        W = theta[w_off : w_off + fi * fo].reshape((fi, fo))
        delta = d_buf[cur, : m * fo].reshape((m, fo))
        H_in = Xb[:m] if l == 0 else H[l - 1, : m * fi].reshape((m, fi))
        dH_rows = m if l > 0 else 0
        dH = d_buf[1 - cur, : dH_rows * fi].reshape((dH_rows, fi))
        layer_backward(H_in, W, delta, grad[w_off : w_off + fi * fo].reshape((fi, fo)),
                       grad[b_off : b_off + fo], dH)
        if l > 0:
            if dropout > 0.0:
                for k in range(m * fi):
                    d_buf[1 - cur, k] *= D_buf[l - 1, k]
            activation_backward(act, Z_buf[l - 1, : m * fi], A_buf[l - 1, : m * fi],
                                d_buf[1 - cur, : m * fi])
            cur = 1 - cur
    return data_loss


def workspace(slots, rows, d0, L, maxw, dt):
    """Buffers for ``slots`` concurrent :func:`batch_gradient` calls of up to ``rows`` rows."""
    k = max(L - 1, 1)
    return (
        np.empty((slots, rows, d0), dtype=dt),  # the chunk's input rows
        np.empty((slots, rows), dtype=dt),  # its targets y
        np.empty((slots, rows), dtype=dt),  # its loss weights s
        np.empty((slots, rows), dtype=dt),  # predictions Y
        np.empty((slots, k, rows * maxw), dtype=dt),  # A_l = f(Z_l)
        np.empty((slots, k, rows * maxw), dtype=dt),  # H_l = A_l * D_l
        np.empty((slots, k, rows * maxw), dtype=dt),  # D_l: dropout masks
        np.empty((slots, 2, rows * maxw), dtype=dt),  # delta_l, alternating
        np.empty((slots, rows, 1), dtype=dt),  # output logits
        np.empty((slots, k, rows * maxw), dtype=dt),  # Z_l = H_{l-1} W_l + b_l
    )


def add_l2(theta, grad, layout, l2):
    """Add ``lambda W`` to every weight gradient; return the penalty ``(lambda/2) sum W^2``."""
    penalty = 0.0
    if l2 != 0.0:
        for l in range(layout.shape[0]):
            w_off, fi, fo = layout[l, 0], layout[l, 2], layout[l, 3]
            for k in range(w_off, w_off + fi * fo):
                penalty += theta[k] * theta[k]
                grad[k] += l2 * theta[k]
    return 0.5 * l2 * penalty


def max_width(layout):
    """Width of the widest layer (the size of an activation buffer row)."""
    w = 1
    for l in range(layout.shape[0]):
        w = max(w, layout[l, 3])
    return w


def train_epoch(
    X, y, s, order, theta, grad, layout, act, out, l2, opt, m, v, t, lr, hyper, decay_mask,
    batch_size, dropout, seed,
):
    """One epoch of mini-batch training, updating ``theta``, ``m`` and ``v`` in place.

    The same steps as ``nn_core.reference.train_epoch``: for each batch, the
    gradient of the data loss (:func:`batch_gradient`), plus the L2 term
    (:func:`add_l2`), then one optimizer step (:func:`optimizer_step`).

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
    N = X.shape[0]
    ws = workspace(1, batch_size, X.shape[1], layout.shape[0], max_width(layout), theta.dtype)
    slot = np.int64(0)  # typed int64, not the literal 0 (which would compile another variant)
    total = 0.0
    for start in range(0, N, batch_size):
        rows = order[start : min(N, start + batch_size)]
        n = rows.shape[0]
        batch_loss = batch_gradient(
            X, y, s, rows, n, slot, theta, layout, act, out, dropout, seed, t, grad, ws, slot
        )
        batch_loss += add_l2(theta, grad, layout, l2)
        total += batch_loss * n
        t += 1
        optimizer_step(opt, theta, grad, m, v, t, lr, hyper, decay_mask)
    return total / N, t


def chunk_gradients(X, y, s, rows, theta, layout, act, out, dropout, seed, t, grads, losses, ws):
    """:func:`batch_gradient` over equal chunks of the batch ``rows``, in parallel.

    Each chunk writes its own ``grads[c]`` and ``losses[c]`` (no shared
    ``+=`` between threads); the caller adds them up in a fixed order.
    Returns the number of chunks used (the last batch may need fewer).
    """
    n = rows.shape[0]
    per_chunk = ws[0].shape[1]
    chunks = (n + per_chunk - 1) // per_chunk
    for i in numba.prange(chunks):
        c = np.int64(i)  # prange counts in uint64; int64 reuses train_epoch's compiled variant
        lo = c * per_chunk
        hi = min(n, lo + per_chunk)
        losses[c] = batch_gradient(
            X, y, s, rows[lo:hi], n, lo, theta, layout, act, out, dropout, seed, t, grads[c], ws, c
        )
    return chunks


def train_epoch_parallel(
    X, y, s, order, theta, grad, layout, act, out, l2, opt, m, v, t, lr, hyper, decay_mask,
    batch_size, dropout, seed, chunks,
):
    """:func:`train_epoch` with each batch split into ``chunks`` chunks of rows done in parallel.

    The chunks' gradients (:func:`chunk_gradients`) are summed in chunk
    order, so a run is repeatable for a given ``chunks``. Worth it only for
    large batches: starting a parallel region costs microseconds. A kernel
    of its own, so that serial training never pays for compiling it.
    """
    N = X.shape[0]
    per_chunk = (batch_size + chunks - 1) // chunks
    ws = workspace(chunks, per_chunk, X.shape[1], layout.shape[0], max_width(layout), theta.dtype)
    grads = np.empty((chunks, theta.shape[0]), dtype=theta.dtype)
    losses = np.empty(chunks)
    total = 0.0
    for start in range(0, N, batch_size):
        rows = order[start : min(N, start + batch_size)]
        used = chunk_gradients(X, y, s, rows, theta, layout, act, out, dropout, seed, t, grads,
                               losses, ws)
        batch_loss = losses[0]
        for k in range(grad.shape[0]):
            grad[k] = grads[0, k]
        for c in range(1, used):
            batch_loss += losses[c]
            for k in range(grad.shape[0]):
                grad[k] += grads[c, k]
        batch_loss += add_l2(theta, grad, layout, l2)
        total += batch_loss * rows.shape[0]
        t += 1
        optimizer_step(opt, theta, grad, m, v, t, lr, hyper, decay_mask)
    return total / N, t


def forward_row(x, theta, layout, act, out, h):
    """``g(z)`` for one row ``x`` (length ``n_inputs``), without BLAS.

    ``h_l = f(h_{l-1} W_l + b_l)`` with ``h_0 = x``, then
    ``z = h_{L-1} w_L + b_L`` as one dot product. ``h``: (2, widest layer)
    scratch; the hidden layers alternate between its two rows.
    """
    L = layout.shape[0]
    a = x
    for l in range(L - 1):
        w_off, b_off, fi, fo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        H = h[l % 2, :fo]
        row_times_matrix(
            a, theta[w_off : w_off + fi * fo].reshape((fi, fo)), theta[b_off : b_off + fo], H
        )
        activate(act, H)
        a = H
    w_off, b_off, fi = layout[L - 1, 0], layout[L - 1, 1], layout[L - 1, 2]
    z = theta[b_off]
    for q in range(fi):
        z += a[q] * theta[w_off + q]
    return output_function(out, z)


def forward_rows(X, theta, layout, act, out, p):
    """``p = g(Z)`` for the rows of ``X`` (serial; buffers sized to the widest layer).

    Up to four rows (online scoring) go one at a time through
    :func:`forward_row`; more rows go through BLAS, a layer at a time.
    Returns False, computing nothing, when ``X`` holds NaN or infinity.
    """
    if not all_finite(X):
        return False
    n = X.shape[0]
    L = layout.shape[0]
    if n <= 4:
        h = np.empty((2, max_width(layout)), dtype=theta.dtype)
        for i in range(n):
            p[i] = forward_row(X[i], theta, layout, act, out, h)
        return True
    bufs = np.empty((2, n * max_width(layout)), dtype=theta.dtype)
    Z_out = np.empty((n, 1), dtype=theta.dtype)
    cur = 0
    for l in range(L):
        w_off, b_off, fi, fo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        W = theta[w_off : w_off + fi * fo].reshape((fi, fo))
        H_in = X if l == 0 else bufs[1 - cur, : n * fi].reshape((n, fi))
        Z = Z_out if l == L - 1 else bufs[cur, : n * fo].reshape((n, fo))
        matmul(H_in, W, Z)
        bias_activate(act if l < L - 1 else IDENTITY, Z, theta[b_off : b_off + fo])
        if l < L - 1:
            cur = 1 - cur
    for i in range(n):
        p[i] = output_function(out, Z_out[i, 0])
    return True


def predict_blocks(X, theta, layout, act, out, block, p):
    """:func:`forward_rows` over consecutive blocks of ``block`` rows (serial).

    Blocks keep each layer's activations small enough to stay in cache.
    Releases the GIL, so that several Python threads can each run it on a
    slice of the rows (``nn_core.backends.NumbaBackend.predict``).
    Returns False when any row holds NaN or infinity.
    """
    finite = True
    for lo in range(0, X.shape[0], block):
        hi = min(X.shape[0], lo + block)
        finite &= forward_rows(X[lo:hi], theta, layout, act, out, p[lo:hi])
    return finite


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
bias_activate = _jit(bias_activate)
activate = _jit(activate)
activation_backward = _jit(activation_backward)
bias_activate_keep = _jit(bias_activate_keep)
output_function = _jit(output_function)
layer_forward = _jit(layer_forward)
layer_backward = _jit(layer_backward)
output_loss_delta = _jit(output_loss_delta)
fill_dropout_mask = _jit(fill_dropout_mask)
all_finite = numba.njit(cache=True, nogil=True)(all_finite)
optimizer_step = _jit(optimizer_step)
matmul = _jit(matmul)
column_sums = _jit(column_sums)
row_times_matrix = _jit(row_times_matrix)
batch_gradient = _jit(batch_gradient)
workspace = _jit(workspace)
add_l2 = _jit(add_l2)
max_width = _jit(max_width)
train_epoch = _jit(train_epoch)
chunk_gradients = _pjit(chunk_gradients)
train_epoch_parallel = _jit(train_epoch_parallel)
forward_row = _pred_jit(forward_row)
forward_rows = _pred_jit(forward_rows)
predict_blocks = _pred_jit(predict_blocks)
