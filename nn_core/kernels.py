"""The ``numba`` backend: the reference math (``nn_core/reference.py``) as compiled kernels.

A whole epoch of mini-batch steps runs inside one compiled call,
:func:`train_epoch`, so Python is entered once per epoch, not once per
batch. The matrix products go to BLAS through ``np.dot`` (with ``out=``
buffers, so nothing is allocated per product), except the output layer's, which are
one column wide (:func:`output_logits`, :func:`output_layer_backward`); the activations, their
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

import functools
import math
import warnings

import numba
import numpy as np
from numba import literal_unroll

from . import numba_cache
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
# The prediction kernels test their input for NaN and infinity, so they may
# not let the compiler assume that no value is NaN or infinite (nnan, ninf).
_FINITE_SAFE_FASTMATH = _FASTMATH - {"nnan", "ninf"}

# What Numba compiles, and when. Compile time is the cost of a cold start
# (an empty cache: a first run, a new install, a changed source file), so
# only what a run uses is compiled, once:
#
# * entry points (``_entry``): the few functions Python calls (one epoch,
#   one epoch in parallel chunks, prediction in blocks, prediction of a few
#   rows), compiled per rule set (activation; for training also optimizer and
#   dropout on or off; see ``entry``) and argument dtypes when first called,
#   and cached on disk: a run compiles the entries it calls, for its
#   network's rules and dtype, and nothing else;
# * helpers (``_inline``): inlined into the entry that calls them before
#   typing (with the entry's fastmath flags), so that each is typed and
#   optimised once inside the entry instead of being compiled, linked and
#   re-optimised as a function of its own at every level of calls (about
#   0.1-0.3 s of compile time per function and signature);
# * the output function and loss, picked at run time by their index
#   (``_shared``: one small function, a branch per entry of ``OUTPUTS``,
#   compiled once per dtype and shared by every entry);
# * the rules of the tables, compiled as they are (``_rule``) when an entry
#   or a shared function uses them.
#
# The rule set reaches the helpers as literal integers (the entries are
# closures over the indices, which Numba treats as constants), and a helper
# picks its rule by indexing the table's tuple, ``_F[act]``: with a literal
# index that is resolved at compile time, so an entry holds its network's
# rules alone, inlined, and never compiles the others.
# The cached kernels compile in the rules of activations.py, losses.py, optim.py and
# dropout.py: stamp their cache with those files too, not with this file alone, so that
# a changed rule is compiled afresh rather than loaded stale (nn_core/numba_cache.py).
numba_cache.install()
_entry = numba.njit(cache=True, fastmath=_FASTMATH, error_model="numpy", nogil=True)
_parallel_entry = numba.njit(
    cache=True, fastmath=_FASTMATH, error_model="numpy", nogil=True, parallel=True
)
_predict_entry = numba.njit(
    cache=True, fastmath=_FINITE_SAFE_FASTMATH, error_model="numpy", nogil=True
)
_inline = numba.njit(inline="always", fastmath=_FASTMATH, error_model="numpy", nogil=True)
_shared = numba.njit(cache=True, fastmath=_FASTMATH, error_model="numpy", nogil=True)
_rule = numba.njit(fastmath=_FASTMATH, error_model="numpy", nogil=True)

# A tuple of compiled functions is typed with Numba's "first-class function"
# types, which it marks experimental; indexed with a literal (``_F[act]``) it
# gives back the one function itself (a direct, inlinable call), and
# literal_unroll over it (the shared functions) is the same code as an
# if/elif ladder over the functions.
warnings.filterwarnings(
    "ignore", "First-class function type feature is experimental",
    numba.NumbaExperimentalFeatureWarning,
)

# The shared definitions, compiled (not rewritten): one tuple per table, in
# the table's order, so that index k of a tuple is entry k of the table.
_F = tuple(_rule(a.forward) for a in ACTIVATIONS.values())
_F_BACKWARD = tuple(_rule(a.backward) for a in ACTIVATIONS.values())
_G = tuple(_rule(g) for g in OUTPUTS.values())
_G_AND_L = tuple((_rule(g), _rule(LOSSES[name])) for name, g in OUTPUTS.items())
_UPDATE = tuple(_rule(rule) for rule in OPTIMIZERS.values())
_decayed = _rule(decayed)
_output_delta = _rule(_output_delta_py)
_uniform01 = _rule(_uniform01_py)

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


def check_index(index, count: int, what: str) -> int:
    """``index`` as an int when ``0 <= index < count``; else ``ValueError`` naming ``what``."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not (
        0 <= index < count
    ):
        raise ValueError(f"unknown {what} index {index!r}: the table has {count} entries")
    return int(index)


def bias_activate(act, Z, b):
    """``Z = f(Z + b)`` in place, for activation ``act`` (``Z``: (n, d), ``b``: (d,)).

    Adding the bias and applying ``f`` in one pass reads the layer's buffer
    once (prediction, which needs no ``Z`` afterwards).
    """
    f = _F[act]
    n, d = Z.shape
    for i in range(n):
        for j in range(d):
            Z[i, j] = f(Z[i, j] + b[j])


def bias_activate_keep(act, Z, b, A):
    """``Z = Z + b`` in place and ``A = f(Z)`` (training: the backward rule needs both)."""
    f = _F[act]
    n, d = Z.shape
    for i in range(n):
        for j in range(d):
            z = Z[i, j] + b[j]
            Z[i, j] = z
            A[i, j] = f(z)


def activate(act, H):
    """``H = f(H)`` in place, for activation ``act`` (``H``: 1-D).

    The one-row twin of :func:`bias_activate` (single-row prediction adds the
    bias in :func:`row_times_matrix`). Neither is written in terms of the
    other: training through a row loop over this function was 12 % slower per
    batch of 32, and prediction through ``bias_activate`` on a (1, d) view
    25 % slower per row.
    """
    f = _F[act]
    for j in range(H.shape[0]):
        H[j] = f(H[j])


def activation_backward(act, Z, A, dH):
    """``dH = dH * f'(Z)`` in place, given ``Z`` and ``A = f(Z)`` (1-D views)."""
    f_backward = _F_BACKWARD[act]
    for i in range(dH.shape[0]):
        dH[i] = f_backward(Z[i], A[i], dH[i])


def output_function(out, z):
    """``g(z)`` of one logit, for output function ``out``."""
    y = z
    k = 0
    for g in literal_unroll(_G):
        if k == out:
            y = g(z)
        k += 1
    return y


def apply_output(out, z):
    """``z = g(z)`` in place for the logits ``z`` (1-D), for output function ``out``."""
    k = 0
    for g in literal_unroll(_G):
        if k == out:
            for i in range(z.shape[0]):
                z[i] = g(z[i])
        k += 1


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


def drop_units(l, m, fo, dropout, seed, t, row0, A_buf, D_buf, H_buf):
    """``H_l = A_l * D_l``: layer ``l``'s mask drawn (:func:`fill_dropout_mask`) and applied.

    ``m`` rows of ``fo`` units; the buffers are the flat rows of
    :func:`workspace`'s ``A``, ``D`` and ``H``.
    """
    D = D_buf[l, : m * fo].reshape((m, fo))
    fill_dropout_mask(dropout_key(seed, t, l), dropout, D, row0)
    for k in range(m * fo):
        H_buf[l, k] = A_buf[l, k] * D_buf[l, k]


def keep_units(l, m, fo, dropout, seed, t, row0, A_buf, D_buf, H_buf):
    """No dropout: ``H_l`` is ``A_l`` itself, nothing to do (the twin of :func:`drop_units`)."""


def mask_delta(l, n, D_buf, d):
    """``d = d * D_l`` over the first ``n`` entries: the backward pass through the mask."""
    for k in range(n):
        d[k] *= D_buf[l, k]


def keep_delta(l, n, D_buf, d):
    """No dropout: the gradient passes unchanged (the twin of :func:`mask_delta`)."""


def optimizer_step(opt, theta, g, m, v, t, lr, hyper, decay_mask):
    """One optimizer update over the flat vectors: the rule ``opt`` of ``OPTIMIZERS``, per element.

    ``hyper = [mu, b1, 1 - b1, b2, 1 - b2, eps, wd]`` in ``theta``'s dtype
    (``Optimizer.hyper``): float32 constants keep a float32 loop in float32,
    which vectorises about 3x better than one mixed with float64. ``t`` is
    the step number after this update (1 for the first).
    """
    update = _UPDATE[opt]
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
    for k in range(theta.shape[0]):
        theta[k], m[k], v[k] = update(
            theta[k], g[k], m[k], v[k], lr_, mu, b1, one_m_b1, b2, one_m_b2, lr_t, r, eps
        )


def output_logits(H, w, z):
    """``z = H w``: the output layer's product, one dot product per row (``w``: (d, 1)).

    The network has one output unit, so this product and the two of
    :func:`output_layer_backward` are one column wide or one deep: as
    loops they cost less than a BLAS call, and compile to less code.
    """
    n, d = H.shape
    for i in range(n):
        acc = 0.0
        for p in range(d):
            acc += H[i, p] * w[p, 0]
        z[i, 0] = acc


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
    :func:`output_logits`) so that training never compiles it.
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
    (m, d_out), written. ``Z`` is kept for the backward rule. The product
    goes to BLAS (``np.dot`` with ``out=``, so nothing is allocated).
    """
    np.dot(H_in, W, Z)
    bias_activate_keep(act, Z, b, A)


def layer_backward(H_in, W, delta, dW, db, dH_in):
    """``dW = H_in^T delta``, ``db = 1^T delta`` and, unless ``dH_in`` has no rows
    (the first layer), ``dH_in = delta W^T``; all written into the given buffers."""
    np.dot(H_in.T, delta, dW)
    column_sums(delta, db)
    if dH_in.shape[0] > 0:
        np.dot(delta, W.T, dH_in)


def output_layer_backward(H_in, w, delta, dw, db, dH_in):
    """:func:`layer_backward` of the output layer (one unit: ``w`` (d, 1), ``delta`` (m, 1)).

    ``dw = H_in^T delta`` adds up the rows of ``H_in`` scaled by ``delta``
    (contiguous rows, not the strided columns of ``H_in^T``);
    ``dH_in = delta w^T`` is an outer product.
    """
    m, d = H_in.shape
    for p in range(d):
        dw[p, 0] = 0.0
    for i in range(m):
        scale = delta[i, 0]
        for p in range(d):
            dw[p, 0] += H_in[i, p] * scale
    column_sums(delta, db)
    for i in range(dH_in.shape[0]):
        scale = delta[i, 0]
        for p in range(d):
            dH_in[i, p] = scale * w[p, 0]


def batch_gradient(
    X, y, s, rows, n, row0, theta, layout, act, out, masked, dropout, seed, t, grad, ws, c
):
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
    masked : int
        1 with dropout, 0 without (which then compiles no dropout code).
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
    H = H_buf if masked else A_buf
    apply_mask, mask_backward = _MASK[masked], _MASK_BACKWARD[masked]
    # Forward.
    for l in range(L):
        w_off, b_off, fi, fo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        W, b = theta[w_off : w_off + fi * fo].reshape((fi, fo)), theta[b_off : b_off + fo]
        H_in = Xb[:m] if l == 0 else H[l - 1, : m * fi].reshape((m, fi))
        if l == L - 1:  # the output layer's logits: z = H W + b
            output_logits(H_in, W, Z_out[:m])
            bias_activate(IDENTITY, Z_out[:m], b)
            break
        Z, A = Z_buf[l, : m * fo].reshape((m, fo)), A_buf[l, : m * fo].reshape((m, fo))
        layer_forward(act, H_in, W, b, Z, A)
        apply_mask(l, m, fo, dropout, seed, t, row0, A_buf, D_buf, H_buf)
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
        dW, db = grad[w_off : w_off + fi * fo].reshape((fi, fo)), grad[b_off : b_off + fo]
        if l == L - 1:
            output_layer_backward(H_in, W, delta, dW, db, dH)
        else:
            layer_backward(H_in, W, delta, dW, db, dH)
        if l > 0:
            mask_backward(l - 1, m * fi, D_buf, d_buf[1 - cur])
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


def epoch_kernel(act, opt, masked):
    """``epoch(X, y, s, order, theta, grad, layout, out, l2, m, v, t, lr, hyper, decay_mask,
    batch_size, dropout, seed) -> (loss, t)``: one epoch of mini-batch training for the rule
    set ``(act, opt, masked)``, updating ``theta``, ``m`` and ``v`` in place.

    The same steps as ``nn_core.reference.train_epoch``: for each batch, the
    gradient of the data loss (:func:`batch_gradient`), plus the L2 term
    (:func:`add_l2`), then one optimizer step (:func:`optimizer_step`).
    Compiled by :func:`entry` as it stands, a closure over the rule set's
    indices (which Numba takes as constants), and called through
    :func:`train_epoch`, where the arguments are described. Not a helper
    inlined into a wrapper: inlining copies the callee's whole intermediate
    representation block by block (for this one, half a second of a cold start).
    """

    def epoch(X, y, s, order, theta, grad, layout, out, l2, m, v, t, lr, hyper, decay_mask,
              batch_size, dropout, seed):
        N = X.shape[0]
        ws = workspace(1, batch_size, X.shape[1], layout.shape[0], max_width(layout),
                       theta.dtype)
        slot = np.int64(0)  # typed int64, not the literal 0 (which would compile another variant)
        total = 0.0
        for start in range(0, N, batch_size):
            rows = order[start : min(N, start + batch_size)]
            n = rows.shape[0]
            batch_loss = batch_gradient(
                X, y, s, rows, n, slot, theta, layout, act, out, masked, dropout, seed, t, grad,
                ws, slot,
            )
            batch_loss += add_l2(theta, grad, layout, l2)
            total += batch_loss * n
            t += 1
            optimizer_step(opt, theta, grad, m, v, t, lr, hyper, decay_mask)
        return total / N, t

    return epoch


def chunk_gradients(
    X, y, s, rows, theta, layout, act, out, masked, dropout, seed, t, grads, losses, ws
):
    """:func:`batch_gradient` over equal chunks of the batch ``rows``, in parallel.

    Each chunk writes its own ``grads[c]`` and ``losses[c]`` (no shared
    ``+=`` between threads); the caller adds them up in a fixed order.
    Returns the number of chunks used (the last batch may need fewer).
    """
    n = rows.shape[0]
    per_chunk = ws[0].shape[1]
    chunks = (n + per_chunk - 1) // per_chunk
    for i in numba.prange(chunks):
        c = np.int64(i)  # prange counts in uint64
        lo = c * per_chunk
        hi = min(n, lo + per_chunk)
        losses[c] = batch_gradient(
            X, y, s, rows[lo:hi], n, lo, theta, layout, act, out, masked, dropout, seed, t,
            grads[c], ws, c,
        )
    return chunks


def epoch_parallel_kernel(act, opt, masked):
    """``epoch_parallel(..., chunks)``: :func:`epoch_kernel`'s epoch with each batch split
    into ``chunks`` chunks of rows done in parallel (the same arguments, then ``chunks``).

    The chunks' gradients (:func:`chunk_gradients`) are summed in chunk
    order, so a run is repeatable for a given ``chunks``. Worth it only for
    large batches: starting a parallel region costs microseconds. A kernel
    of its own, so that serial training never pays for compiling it.
    """

    def epoch_parallel(X, y, s, order, theta, grad, layout, out, l2, m, v, t, lr, hyper,
                       decay_mask, batch_size, dropout, seed, chunks):
        N = X.shape[0]
        per_chunk = (batch_size + chunks - 1) // chunks
        ws = workspace(chunks, per_chunk, X.shape[1], layout.shape[0], max_width(layout),
                       theta.dtype)
        grads = np.empty((chunks, theta.shape[0]), dtype=theta.dtype)
        losses = np.empty(chunks)
        total = 0.0
        for start in range(0, N, batch_size):
            rows = order[start : min(N, start + batch_size)]
            used = chunk_gradients(X, y, s, rows, theta, layout, act, out, masked, dropout, seed,
                                   t, grads, losses, ws)
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

    return epoch_parallel


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


def block_finite(X, t):
    """True when the 2-D block ``X`` (n, d) holds no NaN or infinity; ``t``: (d,) scratch.

    ``x - x`` is 0 for a finite ``x`` and NaN for NaN or an infinity, so
    ``t_j = sum_i (X_ij - X_ij)`` is 0 for every column exactly when every
    element is finite. No early exit and no per-element branch, and each
    ``t_j`` is its own running sum: the loop over ``j`` vectorises as it
    stands (about 10x cheaper than a test per element with an early exit,
    which keeps the loop scalar). Compiled without fastmath, as its own function
    (never inlined into a fastmath kernel): ``reassoc`` or ``nnan`` would let
    the compiler cancel ``x - x`` to 0.
    """
    n, d = X.shape
    for j in range(d):
        t[j] = 0.0
    for i in range(n):
        for j in range(d):
            t[j] += X[i, j] - X[i, j]
    total = 0.0
    for j in range(d):
        total += t[j]
    return total == 0.0


def hidden_to_logits(act, Z, b, w, c, z):
    """``z_i = c + sum_j f(Z_ij + b_j) w_j``: the last hidden layer's bias and
    activation and the output layer's product (one unit) in one pass over ``Z``.

    ``Z``: (n, d), the last hidden layer's ``H W`` (no bias yet); ``b``, ``w``:
    (d,); ``c``: the output bias; ``z``: (n,), written. Prediction needs no
    ``H`` afterwards, so it is never written back.
    """
    f = _F[act]
    n, d = Z.shape
    for i in range(n):
        acc = c
        for j in range(d):
            acc += f(Z[i, j] + b[j]) * w[j]
        z[i] = acc


def upper_layers(n, theta, layout, act, out, H, p):
    """Every layer after the first layer's product: ``p = g(z)`` for ``n`` rows.

    ``H[0]`` holds ``Z_0 = X W_0`` (n, d_1), the first layer's product without
    its bias, however it was computed (a dense product, :func:`forward_rows`,
    or one with gathered rows, :func:`forward_rows_onehot`); ``H`` (2, at least
    n x widest layer) is the work buffer, the layers alternating between its two
    rows. Bias and activation are applied in place (:func:`bias_activate`),
    except in the last hidden layer, whose bias, activation and the output
    layer's product are one pass (:func:`hidden_to_logits`). With no hidden
    layer (logistic regression) ``Z_0`` is the logit less its bias.
    """
    L = layout.shape[0]
    w_off, b_off, fi = layout[L - 1, 0], layout[L - 1, 1], layout[L - 1, 2]
    w_out, c = theta[w_off : w_off + fi], theta[b_off]
    if L == 1:
        for i in range(n):
            p[i] = H[0, i] + c
    cur = 0
    for l in range(L - 1):
        w_off, b_off, fi, fo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        W, b = theta[w_off : w_off + fi * fo].reshape((fi, fo)), theta[b_off : b_off + fo]
        Z = H[cur, : n * fo].reshape((n, fo))
        if l > 0:
            np.dot(H[1 - cur, : n * fi].reshape((n, fi)), W, Z)
        if l < L - 2:
            bias_activate(act, Z, b)
            cur = 1 - cur
        else:
            hidden_to_logits(act, Z, b, w_out, c, p)
    apply_output(out, p)


def forward_rows(X, theta, layout, act, out, H, t, p):
    """``p = g(z)`` for the rows of one block ``X`` (n, d_0), all layers done on this block.

    The hidden layers' products go through BLAS (``np.dot``) into the work
    buffer ``H`` (2, at least n x widest layer; ``t``: (d_0,) scratch for the
    check); the layers after the first product are :func:`upper_layers`. A
    block small enough for its activations to stay in cache is read from
    memory once (the finiteness check, :func:`block_finite`) and never written
    back until ``p``. Returns False, computing nothing, when ``X`` holds NaN or
    infinity.
    """
    if not block_finite(X, t):
        return False
    n = X.shape[0]
    w_off, b_off, fi, fo = layout[0, 0], layout[0, 1], layout[0, 2], layout[0, 3]
    if layout.shape[0] == 1:  # no hidden layer (logistic regression): z = X w + c
        for i in range(n):
            acc = theta[b_off]
            for j in range(fi):
                acc += X[i, j] * theta[w_off + j]
            p[i] = acc
        apply_output(out, p)
        return True
    np.dot(X, theta[w_off : w_off + fi * fo].reshape((fi, fo)), H[0, : n * fo].reshape((n, fo)))
    upper_layers(n, theta, layout, act, out, H, p)
    return True


#: Gathered rows of ``W_0`` added per pass over a row of ``Z`` (:func:`add_gathered_rows`).
GATHER = 8
#: Lanes of the finiteness check of a contiguous block (:func:`contiguous_finite`).
LANES = 16


def contiguous_finite(X, t):
    """:func:`block_finite` of a C-contiguous block ``X``, read as rows of ``LANES`` values.

    The one-hot path's dense block is narrow (10 features on the bundled table), too
    narrow for the check's loop over columns to fill a vector register; the same
    numbers as rows of ``LANES`` fill it (with :func:`indices_in_range` over all of
    ``R`` at once: 2.8 ns a row for both checks instead of 7.9, measured on the
    bundled format's blocks of 128 rows). ``t``: (``LANES``,) scratch.
    """
    flat = X.reshape(X.size)
    m = X.size - X.size % LANES
    return block_finite(flat[:m].reshape((m // LANES, LANES)), t) and block_finite(
        flat[m:].reshape((1, X.size - m)), t)


def indices_in_range(R, limit):
    """True when every entry of the C-contiguous integer matrix ``R`` is in ``[0, limit)``.

    A running minimum and maximum over all of ``R`` at once, no branch per
    element (the loop vectorises): the gathered rows of :func:`add_gathered_rows`
    are read unchecked, so their indices are checked first.
    """
    r = R.reshape(R.size)
    lo, hi = 0, limit - 1
    for q in range(r.size):
        lo = min(lo, r[q])
        hi = max(hi, r[q])
    return lo >= 0 and hi < limit


def add_gathered_rows(Z, R, W, zero):
    """``Z_i += sum_c W[R_ic]``: the product of one-hot inputs with ``W``, as a sum of rows.

    Row ``i`` of the feature matrix holds a one-hot block per categorical column:
    a single 1, at feature ``R_ic`` for block ``c``. Its product with ``W``
    (d_0, d_1) is therefore the sum of those rows of ``W``, ``k`` row additions
    (``k``: the blocks) instead of a product over every feature of the blocks,
    most of them zero. ``Z``: (n, d_1), ``R``: (n, k) indices into ``W``'s rows.

    Eight rows per pass over ``Z_i`` (``GATHER``), so that ``Z_i`` is loaded and
    stored once per eight rows: one row per pass, each addition waited on the
    store of the one before (1.3x slower in float32, 2x in float64, measured). A
    last pass with fewer than eight rows left reads ``zero`` (d_1,), a row of
    zeros, in their place: always eight, no branch in the loop over the units.
    """
    n, k = R.shape
    for i in range(n):
        z = Z[i]
        for c in range(0, k, GATHER):
            G0 = W[R[i, c]]
            G1 = W[R[i, c + 1]] if c + 1 < k else zero
            G2 = W[R[i, c + 2]] if c + 2 < k else zero
            G3 = W[R[i, c + 3]] if c + 3 < k else zero
            G4 = W[R[i, c + 4]] if c + 4 < k else zero
            G5 = W[R[i, c + 5]] if c + 5 < k else zero
            G6 = W[R[i, c + 6]] if c + 6 < k else zero
            G7 = W[R[i, c + 7]] if c + 7 < k else zero
            for j in range(z.shape[0]):
                z[j] += ((G0[j] + G1[j]) + (G2[j] + G3[j])) + ((G4[j] + G5[j]) + (G6[j] + G7[j]))


def forward_rows_onehot(Xd, R, Wd, theta, layout, act, out, H, t, zero, p):
    """:func:`forward_rows` of a block whose inputs are given as dense features and one-hot codes.

    The feature matrix ``X`` (n, d_0) is not built: its dense columns are ``Xd``
    (n, d_dense) with their rows of ``W_0`` in ``Wd`` (d_dense, d_1), and each
    one-hot block's single 1 is at feature ``R_ic`` (``R``: (n, k)). The first
    product is ``X W_0 = Xd Wd + sum_c W_0[R_ic]`` (BLAS, then
    :func:`add_gathered_rows`); the rest is :func:`upper_layers`. ``Xd`` and ``R``
    C-contiguous; ``t``: (``LANES``,) scratch, ``zero``: (d_1,) zeros. Returns
    False, computing nothing, when ``Xd`` holds NaN or infinity or an index of
    ``R`` is not a row of ``W_0``.
    """
    w_off, fi, fo = layout[0, 0], layout[0, 2], layout[0, 3]
    if not (contiguous_finite(Xd, t) and indices_in_range(R, fi)):
        return False
    n = Xd.shape[0]
    Z = H[0, : n * fo].reshape((n, fo))
    if Xd.shape[1] > 0:
        np.dot(Xd, Wd, Z)
    else:
        for q in range(n * fo):
            H[0, q] = 0.0
    add_gathered_rows(Z, R, theta[w_off : w_off + fi * fo].reshape((fi, fo)), zero)
    upper_layers(n, theta, layout, act, out, H, p)
    return True


def blocks(X, theta, layout, act, out, block, p):
    """:func:`forward_rows` over consecutive blocks of ``block`` rows (serial).

    Blocks keep each layer's activations small enough to stay in cache; the
    best size depends on the CPU's caches and vector width, see
    ``nn_core.backends.prediction_block``. Returns False (at the first
    block that holds NaN or infinity) when any row does.
    """
    H = np.empty((2, min(block, X.shape[0]) * max_width(layout)), dtype=theta.dtype)
    t = np.empty(X.shape[1], dtype=X.dtype)
    for lo in range(0, X.shape[0], block):
        hi = min(X.shape[0], lo + block)
        if not forward_rows(X[lo:hi], theta, layout, act, out, H, t, p[lo:hi]):
            return False
    return True


def blocks_onehot(Xd, R, Wd, theta, layout, act, out, block, p):
    """:func:`forward_rows_onehot` over consecutive blocks of ``block`` rows (serial).

    Returns False (at the first block that holds NaN or infinity, or an index
    out of range) when any row does.
    """
    n = Xd.shape[0]
    H = np.empty((2, min(block, n) * max_width(layout)), dtype=theta.dtype)
    t = np.empty(LANES, dtype=Xd.dtype)
    zero = np.zeros(layout[0, 3], dtype=theta.dtype)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        if not forward_rows_onehot(Xd[lo:hi], R[lo:hi], Wd, theta, layout, act, out, H, t, zero,
                                   p[lo:hi]):
            return False
    return True


def few_rows(X, theta, layout, act, out, p):
    """``p = g(Z)`` for a few rows (online scoring), one at a time through :func:`forward_row`.

    No BLAS: for a few rows a BLAS call costs more than the arithmetic, and
    BLAS's own threads never come into play. Returns False, computing
    nothing, when ``X`` holds NaN or infinity.
    """
    if not block_finite(X, np.empty(X.shape[1], dtype=X.dtype)):
        return False
    h = np.empty((2, max_width(layout)), dtype=theta.dtype)
    for i in range(X.shape[0]):
        p[i] = forward_row(X[i], theta, layout, act, out, h)
    return True


def all_finite(X) -> bool:
    """True when no element of the 2-D array ``X`` is NaN or infinite (:func:`block_finite`).

    Plain Python around the compiled check, so that validation and prediction
    share one compiled function (a first run compiles nothing more for it).
    """
    return bool(block_finite(read_only(X), np.empty(X.shape[1], dtype=X.dtype)))


# --- compiled versions ------------------------------------------------------------
# Under the same names; the plain functions stay reachable as ``.py_func``
# (numba keeps them), for teaching and debugging. block_finite is compiled on
# its own, without fastmath (which would let the compiler assume every number
# is finite), for Python callers (all_finite) and the prediction kernels alike.
bias_activate = _inline(bias_activate)
bias_activate_keep = _inline(bias_activate_keep)
activate = _inline(activate)
activation_backward = _inline(activation_backward)
output_function = _shared(output_function)
apply_output = _shared(apply_output)
output_loss_delta = _shared(output_loss_delta)
optimizer_step = _inline(optimizer_step)
fill_dropout_mask = _inline(fill_dropout_mask)
drop_units = _inline(drop_units)
keep_units = _inline(keep_units)
mask_delta = _inline(mask_delta)
keep_delta = _inline(keep_delta)
output_logits = _inline(output_logits)
output_layer_backward = _inline(output_layer_backward)
column_sums = _inline(column_sums)
row_times_matrix = _inline(row_times_matrix)
layer_forward = _inline(layer_forward)
layer_backward = _inline(layer_backward)
batch_gradient = _inline(batch_gradient)
workspace = _inline(workspace)
add_l2 = _inline(add_l2)
max_width = _inline(max_width)
chunk_gradients = _parallel_entry(chunk_gradients)
forward_row = _inline(forward_row)
# fastmath=False given, not left out: a function left without it inherits its
# caller's flags, and reassoc would cancel block_finite's x - x.
block_finite = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=False)(block_finite)
hidden_to_logits = _inline(hidden_to_logits)
upper_layers = _inline(upper_layers)
forward_rows = _inline(forward_rows)
blocks = _inline(blocks)
contiguous_finite = _inline(contiguous_finite)
indices_in_range = _inline(indices_in_range)
add_gathered_rows = _inline(add_gathered_rows)
forward_rows_onehot = _inline(forward_rows_onehot)
blocks_onehot = _inline(blocks_onehot)
few_rows = _inline(few_rows)


# Dropout on (index 1) or off (0): the mask and its backward pass, or nothing.
_MASK = (keep_units, drop_units)
_MASK_BACKWARD = (keep_delta, mask_delta)
#: The optimizer a training entry is compiled for unless told otherwise: Adam,
#: ``MLP.fit``'s default (``NumbaBackend.loss_and_grad`` uses it too).
ADAM = list(OPTIMIZERS).index("adam")


# --- entry points: one compiled kernel per rule set ------------------------------------
@functools.cache
def entry(kind: str, act: int, opt: int = ADAM, masked: int = 0):
    """The entry ``kind`` for a rule set: a dispatcher, compiled on its first call.

    ``kind`` is ``"epoch"``, ``"epoch_parallel"`` (training: for activation
    ``act``, optimizer ``opt``, dropout on (``masked`` 1) or off), ``"blocks"``,
    ``"onehot"`` or ``"few"`` (prediction: for activation ``act``; ``opt`` and
    ``masked`` are not used). A closure over the indices (for training the epoch
    itself, :func:`epoch_kernel`, not a wrapper that inlines it): Numba takes a closure's
    integers as literal constants, so every helper the entry inlines resolves
    ``_F[act]``, ``_UPDATE[opt]`` and ``_MASK[masked]`` at compile time, and
    the entry holds those rules alone. The cache on disk tells the closures
    apart by those integers. The output function stays an argument (a branch
    per entry of ``OUTPUTS`` in :func:`output_loss_delta` and
    :func:`apply_output`, compiled once per dtype and shared by every entry):
    it is one small loop, and as an argument it does not double the entries a
    test suite sweeping activations and outputs compiles.
    """
    if kind == "epoch":
        return _entry(epoch_kernel(act, opt, masked))
    if kind == "epoch_parallel":
        return _entry(epoch_parallel_kernel(act, opt, masked))
    if kind == "blocks":

        def predict(X, theta, layout, out, block, p):
            return blocks(X, theta, layout, act, out, block, p)

        return _predict_entry(predict)
    if kind == "onehot":

        def predict_onehot(Xd, R, Wd, theta, layout, out, block, p):
            return blocks_onehot(Xd, R, Wd, theta, layout, act, out, block, p)

        return _predict_entry(predict_onehot)

    def predict_few(X, theta, layout, out, p):
        return few_rows(X, theta, layout, act, out, p)

    return _predict_entry(predict_few)


def read_only(X):
    """``X`` itself if read-only, else a read-only view of it (no copy).

    The kernels never write to their inputs, and Numba compiles a function once per
    argument type, where a writeable and a read-only array (a memory map, a column
    handed out under pandas' copy-on-write) are two types: passing every input
    read-only means one compile, not two.
    """
    if X.flags.writeable:
        X = X.view()
        X.flags.writeable = False
    return X


def train_epoch(
    X, y, s, order, theta, grad, layout, act, out, l2, opt, m, v, t, lr, hyper, decay_mask,
    batch_size, dropout, seed,
):
    """One epoch of mini-batch training (:func:`epoch`), compiled for the network's rules.

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
    kernel = entry("epoch", *_rule_set(act, opt, dropout))
    return kernel(read_only(X), y, s, order, theta, grad, layout,
                  check_index(out, N_OUTPUTS, "output"), l2,
                  m, v, t, lr, hyper, decay_mask, batch_size, dropout, seed)


def train_epoch_parallel(
    X, y, s, order, theta, grad, layout, act, out, l2, opt, m, v, t, lr, hyper, decay_mask,
    batch_size, dropout, seed, chunks,
):
    """:func:`train_epoch` with each batch split into ``chunks`` parallel chunks.

    Runs :func:`epoch_parallel`, compiled for the network's rules.
    """
    kernel = entry("epoch_parallel", *_rule_set(act, opt, dropout))
    return kernel(read_only(X), y, s, order, theta, grad, layout,
                  check_index(out, N_OUTPUTS, "output"), l2,
                  m, v, t, lr, hyper, decay_mask, batch_size, dropout, seed, chunks)


def predict_blocks(X, theta, layout, act, out, block, p):
    """``p = g(Z)`` for the rows of ``X`` in blocks of ``block`` rows (:func:`blocks`), serial.

    Releases the GIL, so that several Python threads can each run it on a
    slice of the rows (``nn_core.backends.NumbaBackend.predict``). Returns
    False when any row holds NaN or infinity.
    """
    kernel = entry("blocks", check_index(act, N_ACTIVATIONS, "activation"))
    return kernel(read_only(X), theta, layout, check_index(out, N_OUTPUTS, "output"), block, p)


def predict_blocks_onehot(Xd, R, Wd, theta, layout, act, out, block, p):
    """:func:`predict_blocks` of inputs given as dense features and one-hot codes
    (:func:`blocks_onehot`): ``p = g(z)`` in blocks of ``block`` rows, serial.

    ``Xd`` (n, d_dense) and ``Wd`` (d_dense, d_1) of ``theta``'s dtype, ``R`` (n, k)
    int32 indices of rows of ``W_0``; ``Xd`` and ``R`` are copied only if not
    C-contiguous (the kernel reads each block as one run of numbers). Releases the
    GIL. Returns False when a row of ``Xd`` holds NaN or infinity or an index is
    out of range.
    """
    kernel = entry("onehot", check_index(act, N_ACTIVATIONS, "activation"))
    Xd, R = np.ascontiguousarray(Xd), np.ascontiguousarray(R)
    return kernel(read_only(Xd), read_only(R), read_only(Wd), theta, layout,
                  check_index(out, N_OUTPUTS, "output"), block, p)


@functools.cache
def few_rows_kernel(act: int):
    """The compiled :func:`few_rows` for activation ``act``.

    Called as ``kernel(X, theta, layout, out, p)`` (``out`` checked by the
    caller, ``nn_core.network.MLP``, once); returns False, computing nothing,
    when ``X`` holds NaN or infinity. Handed out rather than wrapped, so that
    single-row prediction pays no second Python call.
    """
    return entry("few", check_index(act, N_ACTIVATIONS, "activation"))


def _rule_set(act, opt, dropout) -> tuple[int, int, int]:
    """The checked indices ``(act, opt, masked)`` that name a training entry."""
    return (
        check_index(act, N_ACTIVATIONS, "activation"),
        check_index(opt, N_OPTIMIZERS, "optimizer"),
        int(dropout > 0.0),
    )
