"""Finite-difference gradient check: the proof that backpropagation is right.

For every parameter ``theta_k`` the analytic gradient ``a_k`` from
:func:`nn_core.reference.loss_and_grad` is compared with a numerical one
from central differences,

``n_k = (L(theta + h e_k) - L(theta - h e_k)) / (2 h)``,

whose error is ``O(h^2)`` (a one-sided difference would be ``O(h)``). The
check runs in float64 on the reference backend without fastmath: in
float32 the rounding error of ``L``, about ``1e-7 |L|``, divided by ``2h``
would swamp any real discrepancy.
"""

from __future__ import annotations

import numpy as np

from . import reference
from .losses import sample_scale


def gradcheck(
    model,
    X,
    y,
    sample_weight=None,
    pos_weight: float = 1.0,
    l2: float = 0.0,
    h: float = 1e-5,
    floor: float = 1e-8,
) -> float:
    """Largest relative error between analytic and numerical gradients.

    ``err_k = |a_k - n_k| / max(|a_k| + |n_k|, floor)``; the ``floor``
    keeps parameters whose true gradient is exactly 0 (a dead ReLU unit)
    from dividing rounding noise by zero.

    Parameters
    ----------
    model : nn_core.MLP
        Any backend or dtype; its weights are copied to float64.
    X : array of shape (n, n_inputs)
    y : array of shape (n,)
    sample_weight : array of shape (n,), optional
    pos_weight, l2 : float
        As in :meth:`nn_core.MLP.loss_and_grad`.
    h : float
        Central-difference step.
    floor : float
        Lower bound of the denominator.

    Returns
    -------
    float
        ``max_k err_k`` over every weight and bias.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    model._check_Xy(X, y, sample_weight)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
    s = sample_scale(y, sample_weight, pos_weight)
    theta = model.theta.astype(np.float64)
    params = model.unflatten(theta)

    def loss_at() -> float:
        Z = reference.forward(params, X, model.activation)[2]
        return float(reference.loss(params, Z, y, s, model.output, l2))

    _, grads = reference.loss_and_grad(params, X, y, s, model.activation, model.output, l2)
    analytic = np.concatenate([g.ravel() for pair in grads for g in pair])
    numeric = np.empty_like(analytic)
    for k in range(theta.shape[0]):
        original = theta[k]
        theta[k] = original + h
        up = loss_at()
        theta[k] = original - h
        down = loss_at()
        theta[k] = original
        numeric[k] = (up - down) / (2 * h)
    err = np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)
    return float(err.max())
