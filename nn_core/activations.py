"""Hidden-layer activations ``H = f(Z)`` and their backward rules: one table, each rule once.

Every rule here is elementwise and written only with NumPy ufuncs and
operators that accept scalars as well as arrays, so the *same* definition
runs on NumPy arrays (the reference backend), on CuPy arrays (the ``cupy``
backend fuses it into one kernel) and on single numbers inside Numba kernels
(``nn_core/kernels.py`` compiles these very functions with ``numba.njit``).

Each backward rule takes the layer's input ``Z``, its output ``H = f(Z)``
and the upstream gradient ``dH = dL/dH`` and returns
``dZ = dL/dZ = dH * f'(Z)``. The ReLU family, tanh and sigmoid write
``f'`` with ``H`` (cheaper: no second ``exp`` or ``tanh``); SiLU and GELU
are not invertible, so their ``f'`` needs ``Z``.

===========  ================================  ===========================================
name         f(Z)                               f'(Z)
===========  ================================  ===========================================
relu         max(Z, 0)                          1 if H > 0 else 0
leaky_relu   Z if Z > 0 else a Z                1 if H > 0 else a      (a = 0.01)
tanh         tanh(Z)                            1 - H^2
sigmoid      1 / (1 + exp(-Z))                  H (1 - H)
identity     Z                                  1
silu         Z sigma(Z)                         sigma(Z) + H (1 - sigma(Z))
gelu         Z (1 + tanh(u)) / 2,               (1 + T) / 2 + Z (1 - T^2) u' / 2,
             u = c (Z + k Z^3)                  T = tanh(u), u' = c (1 + 3 k Z^2)
===========  ================================  ===========================================

``c = sqrt(2 / pi)`` and ``k = 0.044715`` in GELU's tanh form (Hendrycks and
Gimpel 2016; PyTorch's ``approximate="tanh"``).

:data:`ACTIVATIONS` is the one table: the reference, the kernels, the CuPy
backend and every exporter read their rule from it. Adding an activation
means adding one :class:`Activation` there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba.extending import register_jitable

#: Slope of leaky ReLU for negative inputs (PyTorch's default).
LEAKY_SLOPE = 0.01
#: GELU's tanh form: ``u = GELU_C (z + GELU_K z^3)``.
GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715


def relu(Z):
    """``H = max(Z, 0)``; multiplying by the boolean keeps Z's dtype."""
    return Z * (Z > 0)


def relu_backward(Z, H, dH):
    """``dZ = dH * [H > 0]``: ReLU passes the gradient where it was active."""
    return dH * (H > 0)


def leaky_relu(Z):
    """``H = Z`` for ``Z > 0``, else ``LEAKY_SLOPE * Z``: the larger of the two (slope < 1)."""
    return np.maximum(Z, LEAKY_SLOPE * Z)


def leaky_relu_backward(Z, H, dH):
    """``dZ = dH`` where ``H > 0``, else ``LEAKY_SLOPE * dH``.

    ``H`` has the sign of ``Z`` (the slope is positive), so the output is
    enough to tell the two pieces apart: ``max(sign(H), slope)`` is 1 for
    ``H > 0`` and the slope otherwise.
    """
    return dH * np.maximum(np.sign(H), LEAKY_SLOPE)


def tanh(Z):
    """``H = tanh(Z)``."""
    return np.tanh(Z)


def tanh_backward(Z, H, dH):
    """``dZ = dH * (1 - H^2)``, since ``d tanh(z)/dz = 1 - tanh(z)^2``."""
    return dH * (1 - H * H)


# register_jitable: silu calls sigmoid, also inside compiled kernels.
@register_jitable
def sigmoid(Z):
    """``H = 1 / (1 + exp(-Z))`` with one ``exp``, of a number ``<= 0`` (no overflow).

    With ``E = exp(-|Z|)``, in ``[0, 1]``: ``sigma(Z) = 1 / (1 + E)`` for ``Z >= 0``
    and ``E / (1 + E)`` for ``Z < 0`` (``1 / (1 + exp(-Z))`` times ``exp(Z) / exp(Z)``).
    The numerator, 1 or ``E``, is the larger of ``E`` and ``[Z >= 0]`` (since
    ``E <= 1``): a ufunc rather than a branch or ``np.where``, so the one rule runs on
    arrays, on numbers inside the kernels, and fused on a GPU (``nn_core/fusion.py``).
    Large positive ``Z`` gives exactly 1, large negative ``Z`` a tiny positive value
    (relative error a few ulp, where ``exp(-log(1 + exp(-Z)))`` lost ``|Z|`` ulp),
    and no warning either way (docs/math.md section 2).
    """
    E = np.exp(-np.abs(Z))
    return np.maximum(E, Z >= 0) / (1 + E)


def sigmoid_backward(Z, H, dH):
    """``dZ = dH * H (1 - H)``, since ``sigma'(z) = sigma(z) (1 - sigma(z))``."""
    return dH * H * (1 - H)


def identity(Z):
    """``H = Z`` (returns ``Z`` itself; callers never modify it in place)."""
    return Z


def identity_backward(Z, H, dH):
    """``dZ = dH``."""
    return dH


def silu(Z):
    """``H = Z sigma(Z)`` (SiLU, also called swish)."""
    return Z * sigmoid(Z)


def silu_backward(Z, H, dH):
    """``dZ = dH (sigma(Z) + H (1 - sigma(Z)))``.

    From the product rule, ``f' = sigma + Z sigma (1 - sigma)``, and
    ``Z sigma = H``.
    """
    s = sigmoid(Z)
    return dH * (s + H * (1 - s))


def gelu(Z):
    """``H = Z (1 + tanh(u)) / 2`` with ``u = GELU_C (Z + GELU_K Z^3)`` (GELU, tanh form)."""
    return 0.5 * Z * (1 + np.tanh(GELU_C * (Z + GELU_K * Z * Z * Z)))


def gelu_backward(Z, H, dH):
    """``dZ = dH ((1 + T) / 2 + Z (1 - T^2) u' / 2)``.

    ``T = tanh(u)`` and ``u' = du/dZ = GELU_C (1 + 3 GELU_K Z^2)``.
    """
    T = np.tanh(GELU_C * (Z + GELU_K * Z * Z * Z))
    du = GELU_C * (1 + 3 * GELU_K * Z * Z)
    return dH * (0.5 * (1 + T) + 0.5 * Z * (1 - T * T) * du)


@dataclass(frozen=True)
class Activation:
    """One hidden activation: its rules, and how exported code spells ``f``.

    Attributes
    ----------
    forward : callable
        ``H = f(Z)``, elementwise.
    backward : callable
        ``(Z, H, dH) -> dZ = dH * f'(Z)``, elementwise.
    c : str
        ``f`` as a float32 C expression of ``{v}`` (``{name}`` is the
        exported symbol prefix; ``{name}_sigmoid`` is the exporter's
        overflow-free sigmoid). ``"{v}"`` means nothing to compute.
    py : str
        ``f`` as a Python expression of the float ``v`` (``math`` and the
        exported module's ``_sigmoid``), for the dependency-free predictor.
    numpy : str
        ``f`` as a NumPy expression of the array ``Z`` (constants as
        ``Z.dtype.type(...)``, so that float32 stays float32), for the
        one-file NumPy predictor.
    onnx : callable
        ``f`` as ONNX operators: ``onnx(op, Z)`` returns the name of the tensor
        ``f(Z)``, where ``op(op_type, *inputs, **attributes)`` adds one node
        and returns its output's name (a float input is a scalar constant),
        and ``Z`` names the input tensor (``nn_core/export/onnx.py``).
    kinks : tuple of float
        The points ``z`` where ``f`` has no derivative (the ReLU family's 0), in
        increasing order; ``()`` for a smooth ``f``. Where a finite-difference step
        moves a pre-activation across one, the gradient check compares a one-sided
        difference from the other side (``nn_core/gradcheck.py: kink_crossings``).
    """

    forward: Callable
    backward: Callable
    c: str
    py: str
    numpy: str
    onnx: Callable[[Callable[..., str], str], str]
    kinks: tuple[float, ...] = ()


#: name -> :class:`Activation`. The order fixes each activation's index in
#: the compiled kernels (``nn_core/kernels.py``).
ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(
        relu, relu_backward,
        c="{v} > 0.0f ? {v} : 0.0f",
        py="v if v > 0 else 0.0",
        numpy="Z * (Z > 0)",
        onnx=lambda op, Z: op("Relu", Z),
        kinks=(0.0,),
    ),
    "leaky_relu": Activation(
        leaky_relu, leaky_relu_backward,
        c=f"{{v}} > 0.0f ? {{v}} : {LEAKY_SLOPE!r}f * {{v}}",
        py="v if v > 0 else LEAKY_SLOPE * v",
        numpy="np.where(Z > 0, Z, Z.dtype.type(LEAKY_SLOPE) * Z)",
        onnx=lambda op, Z: op("LeakyRelu", Z, alpha=LEAKY_SLOPE),
        kinks=(0.0,),
    ),
    "tanh": Activation(
        tanh, tanh_backward,
        c="tanhf({v})",
        py="math.tanh(v)",
        numpy="np.tanh(Z)",
        onnx=lambda op, Z: op("Tanh", Z),
    ),
    # The C runtime's NAME_sigmoid and the pure-Python predictor's _sigmoid write the same
    # rule as ``sigmoid`` with a branch (nn_core/export/templates/).
    "sigmoid": Activation(
        sigmoid, sigmoid_backward,
        c="{name}_sigmoid({v})",
        py="_sigmoid(v)",
        numpy="np.maximum(E := np.exp(-np.abs(Z)), Z >= 0) / (1 + E)",
        onnx=lambda op, Z: op("Sigmoid", Z),
    ),
    "identity": Activation(identity, identity_backward, c="{v}", py="v", numpy="Z",
                           onnx=lambda op, Z: Z),
    "silu": Activation(
        silu, silu_backward,
        c="{v} * {name}_sigmoid({v})",
        py="v * _sigmoid(v)",
        numpy="Z * (np.maximum(E := np.exp(-np.abs(Z)), Z >= 0) / (1 + E))",
        onnx=lambda op, Z: op("Mul", Z, op("Sigmoid", Z)),
    ),
    "gelu": Activation(
        gelu, gelu_backward,
        c=(f"0.5f * {{v}} * (1.0f + tanhf({GELU_C!r}f"
           f" * ({{v}} + {GELU_K!r}f * {{v}} * {{v}} * {{v}})))"),
        py=f"0.5 * v * (1.0 + math.tanh({GELU_C!r} * (v + {GELU_K!r} * v * v * v)))",
        numpy=(f"0.5 * Z * (1 + np.tanh(Z.dtype.type({GELU_C!r})"
               f" * (Z + Z.dtype.type({GELU_K!r}) * Z * Z * Z)))"),
        # The tanh form written out (ONNX's own Gelu operator needs opset 20).
        onnx=lambda op, Z: op("Mul", op("Mul", 0.5, Z), op("Add", 1.0, op("Tanh", op(
            "Mul", GELU_C, op("Add", Z, op("Mul", GELU_K, op("Mul", Z, op("Mul", Z, Z)))))))),
    ),
}
