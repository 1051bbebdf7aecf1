"""Finite-difference gradient check: the proof that backpropagation is right.

For every parameter ``theta_k`` the analytic gradient ``a_k`` from
:func:`nn_core.reference.loss_and_grad` is compared with a numerical one
from central differences,

``D(h) = (L(theta + h e_k) - L(theta - h e_k)) / (2 h)``,

whose error is ``O(h^2)`` (a one-sided difference would be ``O(h)``). One
Richardson step, ``n_k = (4 D(h/2) - D(h)) / 3``, cancels the ``h^2`` term
and leaves ``O(h^4)``, so ``h`` can be large enough (``1e-4``) that the
rounding error of ``L`` divided by ``2h`` stays near ``1e-12``; plain central
differences must trade one error against the other and stall near ``1e-10``,
too coarse for gradients of size ``1e-5`` at a tolerance of ``1e-6``.

The check runs in float64 on the reference backend without fastmath: in
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
    h: float = 1e-4,
    floor: float = 1e-6,
) -> float:
    """Largest relative error between analytic and numerical gradients.

    ``err_k = |a_k - n_k| / max(|a_k| + |n_k|, floor)``. The ``floor``
    turns the test into an absolute one for gradients below it: the
    numerical gradient carries about ``1e-12`` of rounding noise, which
    relative to a gradient of ``1e-7`` (or of exactly 0, a dead ReLU unit)
    would be large for no fault of the backward pass. With the default
    ``floor = 1e-6``, ``err < 1e-6`` demands ``|a_k - n_k| < 1e-12`` there.

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
        Largest central-difference step (``h/2`` is the other).
    floor : float
        Lower bound of the denominator (see above).

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
    r = reference.rules(model.activation, model.output)

    def loss_at() -> float:
        z = reference.forward(params, X, r)[3]
        return float(reference.loss(params, z, y, s, r, l2))

    _, grads = reference.loss_and_grad(params, X, y, s, r, l2)
    analytic = np.concatenate([g.ravel() for pair in grads for g in pair])
    numeric = np.empty_like(analytic)

    def central_difference(k: int, step: float) -> float:
        original = theta[k]
        theta[k] = original + step
        up = loss_at()
        theta[k] = original - step
        down = loss_at()
        theta[k] = original
        return (up - down) / (2 * step)

    for k in range(theta.shape[0]):
        numeric[k] = (4 * central_difference(k, h / 2) - central_difference(k, h)) / 3
    err = np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)
    return float(err.max())
