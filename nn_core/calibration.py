"""Post-hoc calibration of a combined logit, fitted on dev, stored as data.

A model's combined logit ``z`` (``nn_core.ensemble.Ensemble.logit``) gives the uncalibrated
probability ``p = sigma(z)``. A calibration maps it to ``q``, monotone non-decreasing, so the
ranking (ROC-AUC) is kept or, for isotonic ties, only coarsened:

* :class:`Platt`: ``q = sigma(a z + b)``, i.e. a logistic regression on the logit, ``(a, b)``
  minimising the dev log-loss (:func:`fit_logistic`, Newton's method);
* :class:`Isotonic`: the non-decreasing step function of ``p`` that minimises the dev squared
  error (pool-adjacent-violators, :func:`isotonic_fit`), stored as breakpoints ``(x_j, y_j)``
  and applied with linear interpolation between them, clipped to ``[y_0, y_m]`` outside
  ``[x_0, x_m]`` (what ``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip")`` predicts).

Each is written to and read from ``model.json`` as a small dict (``to_dict``/``from_dict``,
every value checked on reading). :func:`fit_logistic` is also the stacking of
``nn_core.ensemble``: a logistic regression on several members' logits.
"""

from __future__ import annotations

import math

import numpy as np

from .activations import sigmoid
from .losses import bce_with_logits

#: ``calibration.kind`` values of model.json (``"none"``: no calibration entry at all).
CALIBRATIONS = ("none", "platt", "isotonic")
#: Most breakpoints an isotonic calibration may store (one per distinct dev score at most).
MAX_BREAKPOINTS = 1 << 20


def fit_logistic(Z: np.ndarray, y: np.ndarray, max_iter: int = 100,
                 tol: float = 1e-10) -> tuple[np.ndarray, float]:
    """Unpenalised logistic regression ``P(y=1) = sigma(Z w + c)`` by Newton's method.

    Minimises the mean log-loss ``L(w, c) = (1/n) sum_i l(Z_i w + c, y_i)`` (``l`` the
    binary cross-entropy of the logit, ``nn_core/losses.py: bce_with_logits``). With
    ``A = [Z, 1]`` and ``pi = sigma(A theta)``: gradient ``g = A^T (pi - y) / n``, Hessian
    ``H = A^T diag(pi (1 - pi)) A / n``; step ``theta -= t H^{-1} g`` with ``t`` halved
    until the loss does not increase. A tiny ridge (1e-12 on ``H``'s diagonal) keeps the
    solve defined when the classes are separable, where the optimum is at infinity: the
    iterations then stop at ``max_iter`` with large but finite weights.

    Parameters
    ----------
    Z : ndarray, shape (n, k)
        Inputs, e.g. members' logits (k = 1: Platt scaling).
    y : ndarray, shape (n,)
        0/1 labels, both classes present.

    Returns
    -------
    w : ndarray, shape (k,)
    c : float
    """
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if Z.ndim != 2 or len(Z) != len(y) or len(y) == 0:
        raise ValueError(f"Z must be (n, k) with n = len(y) > 0, got {Z.shape} and {y.shape}")
    if not np.isfinite(Z).all():
        raise ValueError("Z must be finite")
    if not (0 < y.sum() < len(y)):
        raise ValueError("a logistic fit needs both classes in y")
    A = np.column_stack([Z, np.ones(len(y))])
    theta = np.zeros(A.shape[1])
    theta[-1] = math.log(y.mean() / (1 - y.mean()))  # start at the base rate

    def loss(t: np.ndarray) -> float:
        return float(np.mean(bce_with_logits(A @ t, y)))

    current = loss(theta)
    for _ in range(max_iter):
        pi = sigmoid(A @ theta)
        g = A.T @ (pi - y) / len(y)
        H = (A * (pi * (1 - pi))[:, None]).T @ A / len(y) + 1e-12 * np.eye(len(theta))
        step = np.linalg.solve(H, g)
        t = 1.0
        while t > 1e-10:
            candidate = theta - t * step
            new = loss(candidate)
            if new <= current:
                break
            t /= 2
        else:
            break  # no step decreases the loss: at the optimum to rounding
        theta, improvement, current = candidate, current - new, new
        if improvement <= tol * max(1.0, current) and np.max(np.abs(t * step)) < 1e-8:
            break
    return theta[:-1].copy(), float(theta[-1])


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints of the isotonic (non-decreasing) least-squares fit of ``y`` on ``x``.

    Rows with equal ``x`` are first merged into one point of weight ``n_x`` and value the
    mean of their ``y`` (tied scores get one fitted value). Pool-adjacent-violators then
    walks the distinct ``x`` in increasing order keeping a stack of blocks (weight, mean):
    a new point is a block; while the last block's mean is not above the one before it
    (a violation of monotonicity), the two are pooled into their weighted mean. The
    result minimises ``sum_i (f(x_i) - y_i)^2`` over non-decreasing ``f``.

    Of each block only its first and last ``x`` are kept (the interior points lie on the
    same level), so ``numpy.interp(p, x_out, y_out)`` gives the fitted step function at
    the data and linear interpolation between blocks.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Scores (e.g. uncalibrated dev probabilities).
    y : ndarray, shape (n,)
        0/1 labels (any real targets work).

    Returns
    -------
    x_out, y_out : ndarray, shape (m,)
        Strictly increasing breakpoints and their non-decreasing values, float64.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
        raise ValueError(f"x and y must be 1-D of one non-zero length, got {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    xs, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    weight, level, first, last = [], [], [], []  # the blocks' stack
    for j in range(len(xs)):
        weight.append(float(counts[j]))
        level.append(float(means[j]))
        first.append(j)
        last.append(j)
        while len(level) > 1 and level[-2] >= level[-1]:
            w = weight[-2] + weight[-1]
            level[-2] = (weight[-2] * level[-2] + weight[-1] * level[-1]) / w
            weight[-2], last[-2] = w, last[-1]
            del weight[-1], level[-1], first[-1], last[-1]
    keep_x, keep_y = [], []
    for lo, hi, v in zip(first, last, level, strict=True):
        keep_x += [xs[lo]] if lo == hi else [xs[lo], xs[hi]]
        keep_y += [v] if lo == hi else [v, v]
    return np.asarray(keep_x), np.asarray(keep_y)


class Platt:
    """``q = sigma(a z + b)`` of the combined logit ``z``.

    Attributes
    ----------
    a, b : float
    """

    kind = "platt"

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = float(a), float(b)

    @classmethod
    def fit(cls, z: np.ndarray, y: np.ndarray) -> Platt:
        """``(a, b)`` minimising the log-loss of ``sigma(a z + b)`` on ``(z, y)``."""
        w, c = fit_logistic(np.asarray(z, dtype=np.float64)[:, None], y)
        return cls(w[0], c)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n,) float64 of logits ``z`` (n,)."""
        return sigmoid(self.a * np.asarray(z, dtype=np.float64) + self.b)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "a": self.a, "b": self.b}


class Isotonic:
    """``q = interp(sigma(z); x, y)``: breakpoints ``x`` (strictly increasing, in [0, 1])
    with values ``y`` (non-decreasing, in [0, 1]), linear between them, clipped outside.

    Attributes
    ----------
    x, y : ndarray, shape (m,)
    """

    kind = "isotonic"

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)

    @classmethod
    def fit(cls, z: np.ndarray, y: np.ndarray) -> Isotonic:
        """The isotonic fit of ``y`` on the probabilities ``sigma(z)`` (:func:`isotonic_fit`)."""
        return cls(*isotonic_fit(sigmoid(np.asarray(z, dtype=np.float64)), y))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n,) float64 of logits ``z`` (n,)."""
        return np.interp(sigmoid(np.asarray(z, dtype=np.float64)), self.x, self.y)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "x": self.x.tolist(), "y": self.y.tolist()}


Calibration = Platt | Isotonic


def fit_calibration(kind: str, z: np.ndarray, y: np.ndarray) -> Calibration | None:
    """The calibration ``kind`` (one of :data:`CALIBRATIONS`) fitted on logits ``z`` and
    labels ``y`` (dev); ``None`` for ``"none"``."""
    if kind not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {list(CALIBRATIONS)}, got {kind!r}")
    return None if kind == "none" else {"platt": Platt, "isotonic": Isotonic}[kind].fit(z, y)


def calibration_from_dict(doc, where: str) -> Calibration:
    """The calibration a ``model.json`` entry describes; ValueError starting with ``where``
    (e.g. ``"model.json: 'calibration'"``) for anything that is not exactly one of
    ``{"kind": "platt", "a": finite, "b": finite}`` or ``{"kind": "isotonic", "x": [...],
    "y": [...]}`` with 1 to MAX_BREAKPOINTS breakpoints, ``x`` strictly increasing in
    [0, 1] and ``y`` non-decreasing in [0, 1]."""
    def number(value) -> bool:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))

    if not isinstance(doc, dict) or doc.get("kind") not in ("platt", "isotonic"):
        raise ValueError(f"{where} must be an object with kind 'platt' or 'isotonic'")
    keys = {"platt": {"kind", "a", "b"}, "isotonic": {"kind", "x", "y"}}[doc["kind"]]
    if set(doc) != keys:
        raise ValueError(f"{where}: a {doc['kind']} calibration has exactly the keys "
                         f"{sorted(keys)}, got {sorted(doc)}")
    if doc["kind"] == "platt":
        if not (number(doc["a"]) and number(doc["b"])):
            raise ValueError(f"{where}: 'a' and 'b' must be finite numbers")
        return Platt(doc["a"], doc["b"])
    x, y = doc["x"], doc["y"]
    if not (isinstance(x, list) and isinstance(y, list) and 1 <= len(x) == len(y)
            <= MAX_BREAKPOINTS and all(number(v) for v in x + y)):
        raise ValueError(f"{where}: 'x' and 'y' must be lists of equal length (1 to "
                         f"{MAX_BREAKPOINTS:,}) of finite numbers")
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (np.all(np.diff(xa) > 0) and np.all(np.diff(ya) >= 0)):
        raise ValueError(f"{where}: 'x' must be strictly increasing and 'y' non-decreasing")
    if not (0 <= xa[0] and xa[-1] <= 1 and 0 <= ya[0] and ya[-1] <= 1):
        raise ValueError(f"{where}: breakpoints and values must lie in [0, 1]")
    return Isotonic(xa, ya)
