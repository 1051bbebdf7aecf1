"""Hidden-layer activations ``H = f(Z)`` and their backward rules, defined once.

Every function here is elementwise and written only with NumPy ufuncs and
operators that accept scalars as well as arrays, so the *same* definition
runs on NumPy arrays (the reference backend), on CuPy arrays (through
``__array_ufunc__``) and on single numbers inside Numba kernels
(``nn_core/kernels.py`` compiles these very functions with ``numba.njit``
and maps them over its buffers in a loop).

The backward rules are written in terms of the activation's *output* ``H``
rather than its input ``Z`` (as scikit-learn does): the forward pass has to
keep ``H`` anyway for the next layer's weight gradient, so no extra buffer
for ``Z`` is needed. Each backward rule takes the upstream gradient
``dH = dL/dH`` and returns ``dZ = dL/dZ = dH * f'(Z)``.

===========  ==========================  =====================================
name         f(Z)                         f'(Z) written with H = f(Z)
===========  ==========================  =====================================
relu         max(Z, 0)                    1 if H > 0 else 0
leaky_relu   Z if Z > 0 else a Z          1 if H > 0 else a      (a = 0.01)
tanh         tanh(Z)                      1 - H^2
sigmoid      1 / (1 + exp(-Z))            H (1 - H)
identity     Z                            1
===========  ==========================  =====================================
"""

from __future__ import annotations

import numpy as np

#: Slope of leaky ReLU for negative inputs (PyTorch's default).
LEAKY_SLOPE = 0.01


def relu(Z):
    """``H = max(Z, 0)``; multiplying by the boolean keeps Z's dtype."""
    return Z * (Z > 0)


def relu_backward(H, dH):
    """``dZ = dH * [H > 0]``: ReLU passes the gradient where it was active."""
    return dH * (H > 0)


def leaky_relu(Z):
    """``H = Z`` for ``Z > 0``, else ``LEAKY_SLOPE * Z``: the larger of the two (slope < 1)."""
    return np.maximum(Z, LEAKY_SLOPE * Z)


def leaky_relu_backward(H, dH):
    """``dZ = dH`` where ``H > 0``, else ``LEAKY_SLOPE * dH``.

    ``H`` has the sign of ``Z`` (the slope is positive), so the output is
    enough to tell the two pieces apart: ``max(sign(H), slope)`` is 1 for
    ``H > 0`` and the slope otherwise.
    """
    return dH * np.maximum(np.sign(H), LEAKY_SLOPE)


def tanh(Z):
    """``H = tanh(Z)``."""
    return np.tanh(Z)


def tanh_backward(H, dH):
    """``dZ = dH * (1 - H^2)``, since ``d tanh(z)/dz = 1 - tanh(z)^2``."""
    return dH * (1 - H * H)


def sigmoid(Z):
    """``H = 1 / (1 + exp(-Z))``, computed as ``exp(-log(1 + exp(-Z)))``.

    ``logaddexp(0, -Z) = log(1 + exp(-Z))`` never overflows, so large
    negative ``Z`` gives a tiny positive value instead of an overflow
    warning, and large positive ``Z`` gives exactly 1.
    """
    return np.exp(-np.logaddexp(0.0, -Z))


def sigmoid_backward(H, dH):
    """``dZ = dH * H (1 - H)``, since ``sigma'(z) = sigma(z) (1 - sigma(z))``."""
    return dH * H * (1 - H)


def identity(Z):
    """``H = Z`` (returns ``Z`` itself; callers never modify it in place)."""
    return Z


def identity_backward(H, dH):
    """``dZ = dH``."""
    return dH


#: name -> f, the forward rule ``H = f(Z)``.
ACTIVATIONS = {
    "relu": relu,
    "leaky_relu": leaky_relu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "identity": identity,
}

#: name -> backward rule ``(H, dH) -> dZ``.
BACKWARDS = {
    "relu": relu_backward,
    "leaky_relu": leaky_relu_backward,
    "tanh": tanh_backward,
    "sigmoid": sigmoid_backward,
    "identity": identity_backward,
}

#: Integer codes of the activations, for compiled kernels that dispatch on them.
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}

#: Output layers: sigmoid (probabilities, with binary cross-entropy) and
#: identity (values, with squared error), with their integer codes.
OUTPUT_CODES = {"sigmoid": 0, "identity": 1}
