"""Output layers and their losses, computed from the logits ``Z`` (shape ``(n,)``).

The network's last layer is linear, ``Z = H W_y + b_y``; the output function
``g`` turns it into the prediction ``Y = g(Z)``:

* ``sigmoid`` output with binary cross-entropy (classification),
  ``l(z, y) = -y log sigma(z) - (1 - y) log(1 - sigma(z))``;
* ``identity`` output with half the squared error (the regression framing),
  ``l(z, y) = (z - y)^2 / 2``.

For both pairs the derivative of the loss with respect to the logit is the
same simple expression, ``dl/dz = g(z) - y`` (see :func:`output_delta`).
"""

from __future__ import annotations

import numpy as np

from .activations import identity, sigmoid


def bce_with_logits(Z, y):
    """Binary cross-entropy of ``sigma(Z)`` against ``y``, computed from the logits.

    ``l = max(z, 0) - z y + log(1 + exp(-|z|))``, which equals
    ``-y log sigma(z) - (1 - y) log(1 - sigma(z))`` but never evaluates
    ``exp`` of a positive number, so it stays finite for ``|z| = 1e4``.

    Parameters
    ----------
    Z : array of shape (n,)
        Logits.
    y : array of shape (n,)
        Targets in {0, 1}.

    Returns
    -------
    array of shape (n,)
        Per-sample loss.
    """
    return np.maximum(Z, 0) - Z * y + np.log1p(np.exp(-np.abs(Z)))


def half_squared_error(Z, y):
    """``l = (z - y)^2 / 2`` per sample; the 1/2 makes ``dl/dz = z - y``."""
    return 0.5 * (Z - y) ** 2


#: output name -> g, the output function ``Y = g(Z)``.
OUTPUTS = {"sigmoid": sigmoid, "identity": identity}

#: output name -> per-sample loss ``l(Z, y)``.
LOSSES = {"sigmoid": bce_with_logits, "identity": half_squared_error}


def output_delta(Y, y, s, n: int):
    """Gradient of the mean weighted loss with respect to the logits.

    For ``L = (1/n) sum_i s_i l(z_i, y_i)``:

    ``delta_i = dL/dz_i = s_i (Y_i - y_i) / n``.

    Why ``Y - y``: for the sigmoid with cross-entropy,
    ``dl/dY = (Y - y) / (Y (1 - Y))`` and ``dY/dz = Y (1 - Y)``; the two
    factors ``Y (1 - Y)`` cancel. For the identity with half squared error,
    ``dl/dz = z - y = Y - y`` directly.

    Parameters
    ----------
    Y : array of shape (n,)
        Predictions ``g(Z)``.
    y : array of shape (n,)
        Targets.
    s : array of shape (n,)
        Per-sample weights (sample weight times the positive-class weight).
    n : int
        Number of samples the loss is averaged over.

    Returns
    -------
    array of shape (n,)
    """
    return s * (Y - y) / n


def sample_scale(y, sample_weight, pos_weight: float):
    """Per-sample loss weights ``s_i = w_i * (pos_weight if y_i == 1 else 1)``.

    Parameters
    ----------
    y : array of shape (n,)
    sample_weight : array of shape (n,) or None
        ``None`` means all ones.
    pos_weight : float
        Weight of the positive class (e.g. ``n_neg / n_pos`` for balance).

    Returns
    -------
    array of shape (n,), the dtype of ``y``.
    """
    s = np.where(y == 1, y.dtype.type(pos_weight), y.dtype.type(1))
    if sample_weight is not None:
        s = s * sample_weight
    return s
