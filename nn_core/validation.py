"""Validation of the arrays and numbers the network takes, in one place.

Every public method of :class:`nn_core.MLP` checks its inputs here and
raises one ``ValueError`` that says what is wrong, naming the argument and,
for NaN or infinity, the first row and column that holds it. The training
hyper-parameters that every trainer shares (:func:`check_epochs`,
:func:`check_lr`) are checked here too, so that ``MLP.fit`` and
``PropensityClassifier.fit`` refuse the same values with the same words.
"""

from __future__ import annotations

import math

import numpy as np

from . import kernels


def as_matrix(X, n_inputs: int, dtype, name: str = "X", check_finite: bool = True) -> np.ndarray:
    """Validate ``X`` as a non-empty ``(n, n_inputs)`` C-ordered array of ``dtype``.

    With ``check_finite`` (the default), NaN or infinity is an error too;
    the ``numba`` backend's predict kernel checks that itself, in the same
    pass over ``X``.
    """
    if not (type(X) is np.ndarray and X.dtype == dtype and X.flags.c_contiguous):
        try:
            X = np.ascontiguousarray(X, dtype=dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be a numeric array: {e}") from None
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_inputs), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 rows)")
    if X.shape[1] != n_inputs:
        raise ValueError(f"{name} has {X.shape[1]} columns, the network expects {n_inputs}")
    if check_finite and not kernels.all_finite(X):
        raise_not_finite(X, name)
    return X


def raise_not_finite(X: np.ndarray, name: str = "X"):
    """Raise the ``ValueError`` for an ``X`` that holds NaN or infinity, naming the first cell."""
    bad = np.argwhere(~np.isfinite(X))[0]
    raise ValueError(f"{name} holds NaN or infinity (first at row {bad[0]}, column {bad[1]})")


def as_vector(v, n: int, dtype, name: str) -> np.ndarray:
    """Validate ``v`` as a finite ``(n,)`` array of ``dtype``."""
    try:
        v = np.ascontiguousarray(v, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric: {e}") from None
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(
            f"{name} holds NaN or infinity (first at index {np.argmin(np.isfinite(v))})"
        )
    return v


def as_integer(value, name: str) -> int:
    """``value`` as an int: Python and NumPy integers, and floats with no fractional part
    (``2.0``); a ValueError naming ``name`` for anything else (``2.7``, ``True``, text)."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and math.isfinite(value) and value == int(value):
        return int(value)
    raise ValueError(f"{name} must be an integer, got {value!r}")


def as_number(value, name: str, low: float = 0.0, *, strict: bool = False) -> float:
    """``value`` as a finite float ``>= low`` (``> low`` with ``strict``).

    Python and NumPy numbers; a ValueError naming ``name`` for anything else (text, a
    boolean, None, NaN, infinity, a number out of range), e.g. ``"lr must be a finite
    number > 0, got 0.0"``.
    """
    bound = f"{'>' if strict else '>='} {low:g}"
    if isinstance(value, bool | np.bool_ | str | bytes):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}") from None
    if not math.isfinite(number) or number < low or (strict and number == low):
        raise ValueError(f"{name} must be a finite number {bound}, got {number}")
    return number


def check_epochs(epochs) -> int:
    """``epochs`` as an int ``>= 1``: training for no epoch is a mistake, not a no-op.

    The same bound as ``train.py --epochs``; a ValueError naming ``epochs`` otherwise.
    """
    epochs = as_integer(epochs, "epochs")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return epochs


def check_lr(lr) -> float:
    """The learning rate ``lr`` as a finite float ``> 0`` (the bound of ``train.py --lr``):
    at 0 nothing would move, and below it every step would climb the loss."""
    return as_number(lr, "lr", strict=True)
