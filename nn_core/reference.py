"""The reference backend: the network's math in plain array code, to read beside docs/math.md.

This module is the oracle the compiled backends are checked against. Each
layer has a forward and a backward function side by side
(:func:`layer_forward` / :func:`layer_backward`); :func:`forward`,
:func:`backward`, :func:`loss_and_grad` and :func:`train_epoch` chain them;
:func:`input_gradient` carries backpropagation one step further, to ``dz/dX``.

The element-wise rules (the activation ``f`` and its backward rule, the
output function ``g`` and the loss ``l``) come from the tables in
``activations.py`` and ``losses.py`` as one :class:`Rules` value
(:func:`rules`). The code is written against NumPy's names but works on any
array module with the same API: the ``cupy`` backend runs these very lines
on the GPU, passing a :class:`Rules` whose functions it has fused into one
kernel each (``nn_core/backends.py: CupyBackend``).

Notation (shapes for a batch of ``n`` rows; layer ``l = 1..L``, the last
one being the output layer of width 1):

* ``H_0 = X``                                   ``(n, d_0)``
* ``Z_l = H_{l-1} W_l + b_l``                   ``(n, d_l)``
* ``H_l = f(Z_l)`` for hidden layers (times the dropout mask ``D_l`` in training)
* ``Y = g(Z_L)``, ``g`` the output function     ``(n,)``
* ``L = (1/n) sum_i s_i l(Z_L,i, y_i) + (lambda/2) sum_l ||W_l||^2``
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .activations import ACTIVATIONS
from .dropout import dropout_mask
from .losses import LOSSES, OUTPUTS, output_delta


def array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np


class Rules(NamedTuple):
    """The element-wise rules of one network (all elementwise, see the tables they come from).

    Attributes
    ----------
    f : callable
        Hidden activation ``H = f(Z)`` (``nn_core/activations.py``).
    f_backward : callable
        ``(Z, H, dH) -> dZ = dH * f'(Z)``.
    g : callable
        Output function ``Y = g(Z)`` (``nn_core/losses.py: OUTPUTS``).
    l : callable
        Per-sample loss ``l(Z, y)`` of the logits (``nn_core/losses.py: LOSSES``).
    """

    f: Callable
    f_backward: Callable
    g: Callable
    l: Callable


def rules(activation: str, output: str) -> Rules:
    """The :class:`Rules` of a network with this hidden activation and output."""
    act = ACTIVATIONS[activation]
    return Rules(act.forward, act.backward, OUTPUTS[output], LOSSES[output])


# --- one layer: forward and backward side by side ----------------------------
def layer_forward(H_prev, W, b, f):
    """``Z = H_prev W + b`` and ``H = f(Z)``.

    Parameters
    ----------
    H_prev : array of shape (n, d_in)
    W : array of shape (d_in, d_out)
    b : array of shape (d_out,)
    f : callable
        The activation (the identity for the output layer).

    Returns
    -------
    Z, H : arrays of shape (n, d_out)
    """
    Z = H_prev @ W + b
    return Z, f(Z)


def layer_backward(H_prev, W, delta):
    """Gradients of ``Z = H_prev W + b`` from ``delta = dL/dZ``.

    * ``dW = H_prev^T delta``
    * ``db = 1^T delta`` (the sum over rows)
    * ``dH_prev = delta W^T``

    Parameters
    ----------
    H_prev : array of shape (n, d_in)
    W : array of shape (d_in, d_out)
    delta : array of shape (n, d_out)

    Returns
    -------
    dW : (d_in, d_out), db : (d_out,), dH_prev : (n, d_in)
    """
    return H_prev.T @ delta, delta.sum(axis=0), delta @ W.T


# --- the whole network -------------------------------------------------------
def forward(params, X, r: Rules, masks=None):
    """Forward pass through every layer.

    ``Z_l = H_{l-1} W_l + b_l`` and ``H_l = f(Z_l) [* D_l]`` for the hidden
    layers, then the output logits ``Z = H_{L-1} W_L + b_L``.

    Parameters
    ----------
    params : list of (W, b)
        ``W_l`` of shape ``(d_{l-1}, d_l)``, ``b_l`` of shape ``(d_l,)``.
    X : array of shape (n, d_0)
    r : Rules
    masks : list of arrays, optional
        Dropout masks ``D_l`` of shape ``(n, d_l)``, one per hidden layer.

    Returns
    -------
    H : list of arrays
        ``[H_0 = X, H_1, ..., H_{L-1}]``, the inputs of each layer.
    Z : list of arrays
        ``[Z_1, ..., Z_{L-1}]`` of the hidden layers.
    A : list of arrays
        ``f(Z_l)`` of each hidden layer before dropout (``A_l = H_l`` without it).
    z : array of shape (n,)
        Output logits.
    """
    H, Z, A = [X], [], []
    for l, (W, b) in enumerate(params[:-1]):
        Z_l, A_l = layer_forward(H[-1], W, b, r.f)
        Z.append(Z_l)
        A.append(A_l)
        H.append(A_l if masks is None else A_l * masks[l])
    W_out, b_out = params[-1]
    z = (H[-1] @ W_out + b_out)[:, 0]
    return H, Z, A, z


def backward(params, H, Z, A, delta, r: Rules, l2: float, masks=None):
    """Backpropagation, layer by layer from the output.

    With ``delta_l = dL/dZ_l`` (shape ``(n, d_l)``):

    * ``dW_l = H_{l-1}^T delta_l + lambda W_l``
    * ``db_l = sum over rows of delta_l``
    * ``delta_{l-1} = (delta_l W_l^T [* D_{l-1}]) * f'(Z_{l-1})``

    Parameters
    ----------
    params : list of (W, b)
    H, Z, A : lists of arrays
        From :func:`forward`.
    delta : array of shape (n,)
        ``dL/dz`` of the output logits (:func:`nn_core.losses.output_delta`).
    r : Rules
    l2 : float
        ``lambda``, the L2 penalty on weights (biases are not penalised).
    masks : list of arrays, optional
        The dropout masks used in the forward pass.

    Returns
    -------
    list of (dW, db)
        Same order and shapes as ``params``.
    """
    delta = delta[:, None]
    grads = [None] * len(params)
    for l in range(len(params) - 1, -1, -1):
        W, _ = params[l]
        dW, db, dH = layer_backward(H[l], W, delta)
        if l2:
            dW = dW + l2 * W
        grads[l] = (dW, db)
        if l > 0:
            if masks is not None:
                dH = dH * masks[l - 1]
            delta = r.f_backward(Z[l - 1], A[l - 1], dH)
    return grads


def input_gradient(params, X, r: Rules):
    """The output logit and its gradient with respect to the inputs, ``dz/dX``.

    Backpropagation one step past the first layer, with ``delta_L = dz/dz = 1``
    instead of ``dL/dz``, no weight gradients, and the last step kept:

    * ``delta_{l-1} = (delta_l W_l^T) * f'(Z_{l-1})`` (as in :func:`backward`)
    * ``dz/dX = delta_1 W_1^T`` (``dH_prev`` of :func:`layer_backward` at ``l = 1``)

    Row ``i`` of ``z`` depends on row ``i`` of ``X`` only, so row ``i`` of the
    result is the gradient of ``z_i`` (docs/math.md, "Gradients with respect to
    the inputs"). The probability ``Y = g(z)`` has ``dY/dX = g'(z) dz/dX``
    (``sigma(z) (1 - sigma(z))`` for the sigmoid output), applied by the caller.

    Parameters
    ----------
    params : list of (W, b)
    X : array of shape (n, d_0)
    r : Rules

    Returns
    -------
    z : array of shape (n,)
        The output logits.
    dX : array of shape (n, d_0)
        ``dX[i, j] = dz_i / dX[i, j]``.
    """
    _, Z, A, z = forward(params, X, r)
    delta = array_module(X).ones_like(z)[:, None]  # dz/dz of the output layer, (n, 1)
    for l in range(len(params) - 1, 0, -1):
        W, _ = params[l]
        # dz/dH_{l-1} = delta_l W_l^T, then through f: delta_{l-1}, shape (n, d_{l-1})
        delta = r.f_backward(Z[l - 1], A[l - 1], delta @ W.T)
    W, _ = params[0]
    return z, delta @ W.T


def loss(params, z, y, s, r: Rules, l2: float):
    """``L = (1/n) sum_i s_i l(z_i, y_i) + (lambda/2) sum_l ||W_l||^2``.

    Returns a 0-d array of the array module, not a Python float: on a GPU,
    turning it into a float would wait for the device after every batch.
    """
    data = np.sum(s * r.l(z, y)) / z.shape[0]
    if not l2:
        return data
    return data + sum((W * W).sum() for W, _ in params) * (l2 / 2)


def loss_and_grad(params, X, y, s, r: Rules, l2: float, masks=None):
    """Loss and its gradient with respect to every ``W`` and ``b``.

    Parameters
    ----------
    params : list of (W, b)
    X : array of shape (n, d_0)
    y : array of shape (n,)
    s : array of shape (n,)
        Per-sample loss weights (:func:`nn_core.losses.sample_scale`).
    r : Rules
    l2 : float
    masks : list of arrays, optional
        Dropout masks; ``None`` for the deterministic network.

    Returns
    -------
    loss : 0-d array
    grads : list of (dW, db)
    """
    H, Z, A, z = forward(params, X, r, masks)
    delta = output_delta(r.g(z), y, s, X.shape[0])
    return loss(params, z, y, s, r, l2), backward(params, H, Z, A, delta, r, l2, masks)


def predict(params, X, r: Rules):
    """``Y = g(z)`` for every row of ``X`` (shape ``(n,)``)."""
    return r.g(forward(params, X, r)[3])


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
    r,
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
    r : Rules
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
        batch_loss, grads = loss_and_grad(params, Xb, y[rows], s[rows], r, l2, masks)
        g = xp.concatenate([part.ravel() for pair in grads for part in pair])
        optimizer.step(theta, g, lr, decay_mask)
        total += batch_loss * n
    return total / order.shape[0]
