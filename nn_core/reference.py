"""The reference backend: the network's math in plain array code.

This module is the oracle the compiled backends are checked against, and
the code to read beside ``docs/math.md``. It is written against an *array
module* ``xp`` taken from the inputs (NumPy, or CuPy for the ``cupy``
backend), so the GPU backend runs exactly these lines. The element-wise
steps go through :func:`nn_core.fusion.fused`, which returns them unchanged
on NumPy and compiles each into one kernel on CuPy.

Notation (shapes for a batch of ``n`` rows; layer ``l = 1..L``, the last
one being the output layer of width 1):

* ``H_0 = X``                                   ``(n, d_0)``
* ``Z_l = H_{l-1} W_l + b_l``                   ``(n, d_l)``
* ``H_l = f(Z_l)`` for hidden layers (times the dropout mask ``D_l`` in training)
* ``Y = g(Z_L)``, ``g`` the output function     ``(n,)``
* ``L = (1/n) sum_i s_i l(Z_L,i, y_i) + (lambda/2) sum_l ||W_l||^2``
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

from .activations import ACTIVATIONS, BACKWARDS
from .fusion import fused
from .losses import LOSSES, OUTPUTS, output_delta


def array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np


# --- dropout masks from a counter-based hash -------------------------------
# The masks are a pure function of (seed, step, layer, row, unit), so every
# backend draws the same masks, and a run does not depend on thread order.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


# register_jitable: a plain Python function that compiled kernels may also call.
@register_jitable
def splitmix64(x):
    """SplitMix64 finaliser: a bijective scramble of 64-bit integers (uint64 in, out)."""
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


def uniform01(x):
    """Map uint64 counters to floats uniform in [0, 1), from the top 53 bits of the hash."""
    return (splitmix64(x) >> _S11) * (1.0 / 9007199254740992.0)


@register_jitable
def dropout_key(seed: int, step: int, layer: int):
    """One 64-bit key per (seed, optimizer step, layer): the base counter of a mask.

    Hashed on one-element arrays: NumPy warns on the (intended) wrap-around of
    uint64 scalar arithmetic, not on arrays. The compiled kernels call this
    same function.
    """
    k = splitmix64(np.full(1, seed, dtype=np.uint64))
    k = splitmix64(k ^ np.full(1, step, dtype=np.uint64))
    return splitmix64(k ^ np.full(1, layer, dtype=np.uint64))[0]


def dropout_mask(seed: int, step: int, layer: int, n: int, width: int, p: float, dtype, xp=np):
    """Inverted-dropout mask ``D`` of shape ``(n, width)``.

    ``D_ij = 1 / (1 - p)`` where unit ``j`` of row ``i`` is kept
    (probability ``1 - p``), else 0; scaling the kept units by ``1/(1-p)``
    keeps ``E[H D] = H``, so no rescaling is needed at prediction time.
    """
    counter = xp.arange(n * width, dtype=xp.uint64).reshape(n, width)
    D = xp.empty((n, width), dtype=dtype)
    fused(inverted_dropout, xp)(D, counter + dropout_key(seed, step, layer), p, 1.0 / (1.0 - p))
    return D


def inverted_dropout(D, counter, p, scale):
    """``D = [uniform01(counter) >= p] * scale``, written into ``D`` (``scale = 1 / (1 - p)``).

    The counter hash and the scaling are one fused kernel on a GPU instead of fifteen.
    """
    D[...] = (uniform01(counter) >= p).astype(D.dtype) * scale


# --- the element-wise parts of a layer, each one fused kernel on a GPU ----------
# Built once per activation and output: nn_core.fusion caches a fused kernel
# per function object.
def _bias_then(f):
    def bias_activation(Z, b):
        """``H = f(Z + b)``, given the product ``Z = H_prev W`` of a hidden layer."""
        return f(Z + b)

    bias_activation.__name__ = f"{f.__name__}_of_z_plus_b"
    return bias_activation


def _delta_after(g):
    def delta_from_logits(Z, y, s, n):
        """``delta = s (g(Z) - y) / n``, :func:`nn_core.losses.output_delta` of ``Y = g(Z)``."""
        return output_delta(g(Z), y, s, n)

    delta_from_logits.__name__ = f"{g.__name__}_output_delta"
    return delta_from_logits


def _weighted_sum_of(l):
    def weighted_loss_sum(Z, y, s):
        """``sum_i s_i l(Z_i, y_i)``: the data term of the loss before the mean."""
        return np.sum(s * l(Z, y))

    weighted_loss_sum.__name__ = f"{l.__name__}_weighted_sum"
    return weighted_loss_sum


#: activation name -> ``(Z, b) -> f(Z + b)``.
BIAS_ACTIVATIONS = {name: _bias_then(f) for name, f in ACTIVATIONS.items()}
#: output name -> ``(Z, y, s, n) -> s (g(Z) - y) / n``.
OUTPUT_DELTAS = {name: _delta_after(g) for name, g in OUTPUTS.items()}
#: output name -> ``(Z, y, s) -> sum_i s_i l(Z_i, y_i)``.
WEIGHTED_LOSS_SUMS = {name: _weighted_sum_of(l) for name, l in LOSSES.items()}


# --- forward and backward ----------------------------------------------------
def forward(params, X, activation: str, masks=None):
    """Forward pass through every layer.

    ``H_l = f(H_{l-1} W_l + b_l) [* D_l]`` for the hidden layers, then the
    output logits ``Z = H_{L-1} W_L + b_L``.

    Parameters
    ----------
    params : list of (W, b)
        ``W_l`` of shape ``(d_{l-1}, d_l)``, ``b_l`` of shape ``(d_l,)``.
    X : array of shape (n, d_0)
    activation : str
        Hidden activation name (``nn_core.activations.ACTIVATIONS``).
    masks : list of arrays, optional
        Dropout masks ``D_l`` of shape ``(n, d_l)``, one per hidden layer.

    Returns
    -------
    H : list of arrays
        ``[H_0 = X, H_1, ..., H_{L-1}]``, the inputs of each layer.
    A : list of arrays
        ``f(Z_l)`` of each hidden layer before dropout (``A_l = H_l`` without it).
    Z : array of shape (n,)
        Output logits.
    """
    bias_activation = fused(BIAS_ACTIVATIONS[activation], array_module(X))
    H, A = [X], []
    for l, (W, b) in enumerate(params[:-1]):
        A.append(bias_activation(H[-1] @ W, b))
        H.append(A[-1] if masks is None else A[-1] * masks[l])
    W_out, b_out = params[-1]
    Z = (H[-1] @ W_out + b_out)[:, 0]
    return H, A, Z


def backward(params, H, A, delta, activation: str, l2: float, masks=None):
    """Backpropagation, layer by layer from the output.

    With ``delta_l = dL/dZ_l`` (shape ``(n, d_l)``):

    * ``dW_l = H_{l-1}^T delta_l + lambda W_l``
    * ``db_l = sum over rows of delta_l``
    * ``delta_{l-1} = (delta_l W_l^T [* D_{l-1}]) * f'(Z_{l-1})``

    Parameters
    ----------
    params : list of (W, b)
    H, A : lists of arrays
        From :func:`forward`.
    delta : array of shape (n,)
        ``dL/dZ`` of the output logits (:func:`nn_core.losses.output_delta`).
    activation : str
    l2 : float
        ``lambda``, the L2 penalty on weights (biases are not penalised).
    masks : list of arrays, optional
        The dropout masks used in the forward pass.

    Returns
    -------
    list of (dW, db)
        Same order and shapes as ``params``.
    """
    backward_rule = fused(BACKWARDS[activation], array_module(delta))
    delta = delta[:, None]
    grads = [None] * len(params)
    for l in range(len(params) - 1, -1, -1):
        W, _ = params[l]
        dW = H[l].T @ delta
        if l2:
            dW = dW + l2 * W
        grads[l] = (dW, delta.sum(axis=0))
        if l > 0:
            dH = delta @ W.T
            if masks is not None:
                dH = dH * masks[l - 1]
            delta = backward_rule(A[l - 1], dH)
    return grads


def loss(params, Z, y, s, output: str, l2: float):
    """``L = (1/n) sum_i s_i l(Z_i, y_i) + (lambda/2) sum_l ||W_l||^2``.

    Returns a 0-d array of the array module, not a Python float: on a GPU,
    turning it into a float would wait for the device after every batch.
    """
    data = fused(WEIGHTED_LOSS_SUMS[output], array_module(Z))(Z, y, s) / Z.shape[0]
    if not l2:
        return data
    return data + sum((W * W).sum() for W, _ in params) * (l2 / 2)


def loss_and_grad(params, X, y, s, activation: str, output: str, l2: float, masks=None):
    """Loss and its gradient with respect to every ``W`` and ``b``.

    Parameters
    ----------
    params : list of (W, b)
    X : array of shape (n, d_0)
    y : array of shape (n,)
    s : array of shape (n,)
        Per-sample loss weights (:func:`nn_core.losses.sample_scale`).
    activation, output : str
    l2 : float
    masks : list of arrays, optional
        Dropout masks; ``None`` for the deterministic network.

    Returns
    -------
    loss : 0-d array
    grads : list of (dW, db)
    """
    H, A, Z = forward(params, X, activation, masks)
    delta = fused(OUTPUT_DELTAS[output], array_module(Z))(Z, y, s, X.shape[0])
    return loss(params, Z, y, s, output, l2), backward(params, H, A, delta, activation, l2, masks)


def predict(params, X, activation: str, output: str):
    """``Y = g(Z)`` for every row of ``X`` (shape ``(n,)``)."""
    return OUTPUTS[output](forward(params, X, activation)[2])


def train_epoch(
    theta,
    unflatten,
    X,
    y,
    s,
    order,
    batch_size,
    optimizer,
    lr,
    l2,
    decay_mask,
    activation,
    output,
    dropout,
    seed,
) -> float:
    """One epoch of mini-batch training (array form), updating ``theta`` in place.

    Parameters
    ----------
    theta : array of shape (P,)
        All parameters, flat.
    unflatten : callable
        ``unflatten(vector) -> list of (W, b)`` views of a flat vector.
    X, y, s : arrays
        Inputs ``(N, d_0)``, targets ``(N,)`` and per-sample weights ``(N,)``.
    order : array of shape (N,)
        Row order of this epoch (a permutation).
    batch_size : int
    optimizer : nn_core.optim.Optimizer
    lr, l2 : float
    decay_mask : array of shape (P,)
    activation, output : str
    dropout : float
        Drop probability of hidden units (0 disables dropout).
    seed : int
        Dropout seed; the masks of a step depend on (seed, optimizer.t, layer).

    Returns
    -------
    0-d array
        Mean training loss over the epoch (each batch's loss weighted by its size).
    """
    xp = array_module(theta)
    params = unflatten(theta)
    total = 0.0
    for start in range(0, order.shape[0], batch_size):
        rows = order[start : start + batch_size]
        Xb, n = X[rows], rows.shape[0]
        masks = None
        if dropout > 0:
            masks = [
                dropout_mask(seed, optimizer.t, l, n, W.shape[1], dropout, theta.dtype, xp)
                for l, (W, _) in enumerate(params[:-1])
            ]
        batch_loss, grads = loss_and_grad(
            params, Xb, y[rows], s[rows], activation, output, l2, masks
        )
        g = xp.concatenate([part.ravel() for pair in grads for part in pair])
        optimizer.step(theta, g, lr, decay_mask)
        total += batch_loss * n
    return total / order.shape[0]
