"""Optimizers and learning-rate schedules: each update rule written once.

Every parameter of the network lives in one flat vector ``theta`` (the
``(W, b)`` pairs are views into it, see :class:`nn_core.network.MLP`), and
the gradient is a flat vector ``g`` of the same layout. Each rule below is
written for one element, with operators and NumPy ufuncs only, so the same
function updates whole vectors (the ``numpy`` backend, and the ``cupy``
backend, where it is one fused kernel) and single numbers inside the
``numba`` epoch kernel (``nn_core/kernels.py: optimizer_step`` compiles
these very functions).

The rules follow PyTorch's definitions, so either can serve as the other's
test oracle:

* SGD: ``theta <- theta - lr g``
* momentum: ``m <- mu m + g``; ``theta <- theta - lr m``
* Nesterov: ``m <- mu m + g``; ``theta <- theta - lr (g + mu m)``
* Adam: ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
  ``theta <- theta - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``

Every rule has the same arguments, ``(theta, g, m, v, *step)`` with
``step = (lr, mu, b1, 1 - b1, b2, 1 - b2, lr_t, r, eps)`` from
:meth:`Optimizer.step_scalars`, and returns the new ``(theta, m, v)``; a
rule ignores what it does not use (``m`` is the velocity of momentum and
Nesterov). ``lr_t = lr / (1 - b1^t)`` and ``r = 1 / sqrt(1 - b2^t)`` carry
Adam's bias corrections of step ``t``.

Decoupled weight decay (AdamW / SGDW) shrinks the weights first,
``theta <- theta - lr wd mask theta`` (:func:`decayed`), where
``mask`` is 1 on weights and 0 on biases; the L2 penalty instead enters the
gradient (``nn_core/reference.py``).
"""

from __future__ import annotations

import math

import numpy as np

from .fusion import fused
from .reference import array_module


def sgd(theta, g, m, v, lr, mu, b1, one_minus_b1, b2, one_minus_b2, lr_t, r, eps):
    """``theta <- theta - lr g``."""
    return theta - lr * g, m, v


def momentum(theta, g, m, v, lr, mu, b1, one_minus_b1, b2, one_minus_b2, lr_t, r, eps):
    """``m <- mu m + g``; ``theta <- theta - lr m``."""
    m = mu * m + g
    return theta - lr * m, m, v


def nesterov(theta, g, m, v, lr, mu, b1, one_minus_b1, b2, one_minus_b2, lr_t, r, eps):
    """``m <- mu m + g``; ``theta <- theta - lr (g + mu m)``: the step looks one velocity ahead."""
    m = mu * m + g
    return theta - lr * (g + mu * m), m, v


def adam(theta, g, m, v, lr, mu, b1, one_minus_b1, b2, one_minus_b2, lr_t, r, eps):
    """``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``theta <- theta - lr_t m / (sqrt(v) r + eps)``.

    With ``lr_t = lr / (1 - b1^t)`` and ``r = 1 / sqrt(1 - b2^t)`` this is
    ``lr m_hat / (sqrt(v_hat) + eps)``, ``m_hat = m / (1 - b1^t)``,
    ``v_hat = v / (1 - b2^t)``.
    """
    m = b1 * m + one_minus_b1 * g
    v = b2 * v + one_minus_b2 * g * g
    return theta - lr_t * m / (np.sqrt(v) * r + eps), m, v


#: name -> update rule ``(theta, g, m, v, *step) -> (theta, m, v)``. The order
#: fixes each optimizer's index in the compiled kernels.
OPTIMIZERS = {"sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adam": adam}


def decayed(theta, decay_mask, rate):
    """Decoupled weight decay: ``theta - rate mask theta`` (``rate = lr wd``)."""
    return theta - rate * decay_mask * theta


def decay_weights(theta, decay_mask, rate):
    """:func:`decayed` over whole vectors, in place."""
    theta[...] = decayed(theta, decay_mask, rate)


def _in_place(rule):
    def update(theta, g, m, v, lr, mu, b1, one_minus_b1, b2, one_minus_b2, lr_t, r, eps):
        """The rule over whole vectors, writing ``theta``, ``m`` and ``v`` in place."""
        new_theta, new_m, new_v = rule(
            theta, g, m, v, lr, mu, b1, one_minus_b1, b2, one_minus_b2, lr_t, r, eps
        )
        theta[...] = new_theta
        m[...] = new_m
        v[...] = new_v

    update.__name__ = f"{rule.__name__}_update"
    return update


#: name -> the rule in place over vectors (one fused kernel each on a GPU).
UPDATES = {name: _in_place(rule) for name, rule in OPTIMIZERS.items()}

SCHEDULES = ("constant", "step", "cosine")


def _number(name: str, value) -> float:
    """``value`` as a float; a ValueError naming ``name`` for text, None or a bool."""
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


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
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
        momentum = _number("momentum", momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not (isinstance(betas, tuple | list) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (b1, b2), got {betas!r}")
        betas = (_number("betas[0]", betas[0]), _number("betas[1]", betas[1]))
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Adam betas must be in [0, 1), got {betas}")
        eps, weight_decay = _number("eps", eps), _number("weight_decay", weight_decay)
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {eps}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
        self.name = name
        self.index = list(OPTIMIZERS).index(name)
        self.momentum = float(momentum)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.t = 0
        # First and second moment (Adam) or velocity (momentum, in `m`); every
        # rule takes both, so both have theta's length.
        self.m = xp.zeros(n_params, dtype=dtype)
        self.v = xp.zeros(n_params, dtype=dtype)

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

    def step_scalars(self, lr: float, t: int) -> tuple[float, ...]:
        """The scalars of step ``t`` (1 for the first) that every rule takes after its vectors.

        Returns
        -------
        tuple of float
            ``(lr, mu, b1, 1 - b1, b2, 1 - b2, lr_t, r, eps)`` with
            ``lr_t = lr / (1 - b1^t)`` and ``r = 1 / sqrt(1 - b2^t)``, computed in
            float64 (the rules round them once to the parameters' dtype).
        """
        b1, b2 = self.beta1, self.beta2
        lr_t = lr / (1.0 - b1**t)
        r = 1.0 / math.sqrt(1.0 - b2**t)
        return (lr, self.momentum, b1, 1 - b1, b2, 1 - b2, lr_t, r, self.eps)

    def step(self, theta, g, lr: float, decay_mask) -> None:
        """Update ``theta`` in place from the gradient ``g`` (array form).

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
        # The scalars go in as Python floats, which take the arrays' dtype
        # (NumPy 2 and CuPy alike), so float32 state stays float32.
        fused(UPDATES[self.name], xp)(theta, g, self.m, self.v, *self.step_scalars(lr, self.t))


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
    if not (step_size >= 1 and 0 < gamma < math.inf and 0 <= lr_min < math.inf):
        raise ValueError(
            f"need step_size >= 1, gamma > 0 and lr_min >= 0; got {step_size}, {gamma}, {lr_min}"
        )
    if schedule == "step":
        return lr * gamma ** (epoch // step_size)
    if schedule == "cosine":
        return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / max(epochs, 1))) / 2
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
