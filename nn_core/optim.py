"""Optimizers and learning-rate schedules, in array form.

Every parameter of the network lives in one flat vector ``theta`` (the
``(W, b)`` pairs are views into it, see :class:`nn_core.network.MLP`), and
the gradient is a flat vector ``g`` of the same layout, so each update rule
below is a handful of whole-vector operations, in place (``sgd_update`` to
``adam_update``; on a GPU each is one fused kernel, see ``nn_core/fusion.py``).
These functions are the reference used by the ``numpy`` and ``cupy``
backends; the ``numba`` backend runs the same rules as loops inside its
epoch kernel (``nn_core/kernels.py: optimizer_step``) and is checked
against these.

The rules follow PyTorch's definitions, so either can serve as the other's
test oracle:

* SGD: ``theta <- theta - lr g``
* momentum: ``v <- mu v + g``; ``theta <- theta - lr v``
* Nesterov: ``v <- mu v + g``; ``theta <- theta - lr (g + mu v)``
* Adam: ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
  ``theta <- theta - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``

Decoupled weight decay (AdamW / SGDW) shrinks the weights first,
``theta <- theta - lr wd mask theta``, where ``mask`` is 1 on weights and 0
on biases; the L2 penalty instead enters the gradient (``nn_core/reference.py``).
"""

from __future__ import annotations

import math

import numpy as np

from .fusion import fused
from .reference import array_module

OPTIMIZER_CODES = {"sgd": 0, "momentum": 1, "nesterov": 2, "adam": 3}
SCHEDULES = ("constant", "step", "cosine")


class Optimizer:
    """State and hyper-parameters of one optimizer over a flat parameter vector.

    Parameters
    ----------
    name : {"sgd", "momentum", "nesterov", "adam"}
    n_params : int
        Length of ``theta``.
    dtype : numpy dtype
        Dtype of the state vectors (that of ``theta``).
    momentum : float
        ``mu`` for momentum and Nesterov.
    betas : tuple of float
        ``(b1, b2)`` for Adam.
    eps : float
        Adam's ``eps``.
    weight_decay : float
        Decoupled weight decay ``wd`` (0 disables it).
    xp : module
        Array module of the state (numpy or cupy).
    """

    def __init__(
        self,
        name: str,
        n_params: int,
        dtype,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        xp=np,
    ):
        if name not in OPTIMIZER_CODES:
            raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZER_CODES)}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Adam betas must be in [0, 1), got {betas}")
        if eps <= 0 or weight_decay < 0:
            raise ValueError("eps must be > 0 and weight_decay >= 0")
        self.name = name
        self.code = OPTIMIZER_CODES[name]
        self.momentum = float(momentum)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.t = 0
        # First and second moment (Adam) or velocity (momentum, in `m`).
        self.m = xp.zeros(n_params, dtype=dtype)
        self.v = xp.zeros(n_params if name == "adam" else 0, dtype=dtype)

    def hyper(self) -> np.ndarray:
        """The scalar hyper-parameters as a vector of the state's dtype, for compiled kernels.

        Returns
        -------
        array of shape (7,)
            ``[mu, b1, 1 - b1, b2, 1 - b2, eps, weight_decay]``.
        """
        b1, b2 = self.beta1, self.beta2
        values = [self.momentum, b1, 1 - b1, b2, 1 - b2, self.eps, self.weight_decay]
        return np.array(values, dtype=self.m.dtype)

    def step(self, theta, g, lr: float, decay_mask) -> None:
        """Update ``theta`` in place from the gradient ``g`` (array form).

        Each rule below is one fused kernel on a GPU (:func:`nn_core.fusion.fused`).

        Parameters
        ----------
        theta, g : arrays of shape (P,)
        lr : float
            Learning rate of this step.
        decay_mask : array of shape (P,)
            1 on weights, 0 on biases: where decoupled weight decay applies.
        """
        xp = array_module(theta)
        if self.weight_decay:
            fused(decay_weights, xp)(theta, decay_mask, lr * self.weight_decay)
        self.t += 1
        if self.name == "sgd":
            fused(sgd_update, xp)(theta, g, lr)
        elif self.name == "momentum":
            fused(momentum_update, xp)(theta, self.m, g, lr, self.momentum)
        elif self.name == "nesterov":
            fused(nesterov_update, xp)(theta, self.m, g, lr, self.momentum)
        else:
            b1, b2 = self.beta1, self.beta2
            # The bias corrections are scalars of this step, computed on the host.
            lr_t = lr / (1 - b1**self.t)
            sqrt_bias2 = math.sqrt(1 - b2**self.t)
            fused(adam_update, xp)(
                theta, self.m, self.v, g, b1, 1 - b1, b2, 1 - b2, lr_t, sqrt_bias2, self.eps
            )


# The update rules, in place. Scalars arrive as Python floats, which take the
# arrays' dtype (NumPy 2 and CuPy alike), so float32 state stays float32.
def decay_weights(theta, decay_mask, rate):
    """Decoupled weight decay: ``theta <- theta - rate mask theta`` (``rate = lr wd``)."""
    theta -= rate * decay_mask * theta


def sgd_update(theta, g, lr):
    """``theta <- theta - lr g``."""
    theta -= lr * g


def momentum_update(theta, m, g, lr, mu):
    """``m <- mu m + g``; ``theta <- theta - lr m`` (``m`` is the velocity)."""
    m *= mu
    m += g
    theta -= lr * m


def nesterov_update(theta, m, g, lr, mu):
    """``m <- mu m + g``; ``theta <- theta - lr (g + mu m)``: the step looks one velocity ahead."""
    m *= mu
    m += g
    theta -= lr * (g + mu * m)


def adam_update(theta, m, v, g, b1, one_minus_b1, b2, one_minus_b2, lr_t, sqrt_bias2, eps):
    """Adam: ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``theta <- theta - lr_t m / (sqrt(v) / sqrt_bias2 + eps)``.

    ``lr_t = lr / (1 - b1^t)`` and ``sqrt_bias2 = sqrt(1 - b2^t)`` carry the bias
    corrections of step ``t``, so that the update is
    ``lr m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1^t)`` and
    ``v_hat = v / (1 - b2^t)``.
    """
    m *= b1
    m += one_minus_b1 * g
    v *= b2
    v += one_minus_b2 * g * g
    theta -= lr_t * m / (np.sqrt(v) / sqrt_bias2 + eps)


def learning_rate(
    schedule: str,
    lr: float,
    epoch: int,
    epochs: int,
    step_size: int = 10,
    gamma: float = 0.5,
    lr_min: float = 0.0,
) -> float:
    """Learning rate of epoch ``epoch`` (0-based) under a schedule.

    * ``constant``: ``lr``
    * ``step``: ``lr * gamma ** floor(epoch / step_size)``
    * ``cosine``: ``lr_min + (lr - lr_min) (1 + cos(pi epoch / epochs)) / 2``

    Parameters
    ----------
    schedule : {"constant", "step", "cosine"}
    lr : float
        Base learning rate.
    epoch, epochs : int
        Current epoch and the total number of epochs of this ``fit`` call.
    step_size : int
        Epochs between two decays of the ``step`` schedule.
    gamma : float
        Decay factor of the ``step`` schedule.
    lr_min : float
        Final learning rate of the ``cosine`` schedule.

    Returns
    -------
    float
    """
    if schedule == "constant":
        return lr
    if step_size < 1 or not gamma > 0 or lr_min < 0:
        raise ValueError(
            f"need step_size >= 1, gamma > 0 and lr_min >= 0; got {step_size}, {gamma}, {lr_min}"
        )
    if schedule == "step":
        return lr * gamma ** (epoch // step_size)
    if schedule == "cosine":
        return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / max(epochs, 1))) / 2
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
