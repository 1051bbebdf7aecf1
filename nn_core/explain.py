"""Per-row reason codes: integrated gradients of the predicted probability, per raw column.

For a row ``x`` (the network inputs, after preprocessing) and a baseline ``x'``, the
integrated gradient of input ``j`` (Sundararajan, Taly and Yan 2017) is

    ``IG_j(x) = (x_j - x'_j) * integral_0^1 df/dx_j(x' + a (x - x')) da``

with ``f(x) = sigma(z(x))``, ``z = logit_bias + sum_k w_k z_k(x)`` the combined logit of
the model's members (``Predictor.members``; one network is ``[(network, 1.0)]``). By the
fundamental theorem of calculus along the straight path, ``sum_j IG_j = f(x) - f(x')``
(*completeness*). The calibration (Platt or isotonic, ``nn_core/calibration.py``) is not
explained: isotonic calibration is piecewise constant and has no useful gradient, so the
attributions are of the uncalibrated probability ``sigma(z)``.

The integral is computed with Gauss-Legendre quadrature on ``[0, 1]`` (:func:`gauss_legendre`),
``m`` nodes, ``DEFAULT_STEPS`` to start; a row whose attributions miss completeness by more
than ``RTOL`` (1 %) of ``|f(x) - f(x')|`` (or ``ATOL`` = 1e-4, whichever is larger) is recomputed
with twice the nodes, up to ``MAX_STEPS``; rows that still miss are reported
(:attr:`Explanation.failed`), never dropped. The gradient ``df/dx = sigma'(z) dz/dx`` is
:func:`nn_core.reference.input_gradient`, float64, for each member.

Attributions are summed per raw column over the features it produces
(``Preprocessing.column_slices``: a numeric value and its piecewise-linear bins, a one-hot
block, a missing indicator).

The baseline ``x'`` (:func:`baseline_features`) is the preprocessing of one raw row:

* with the model's training distributions (``drift_reference.json``,
  ``Predictor.reference``, ``nn_core/drift.py``): each numeric column at its training
  median (the smallest decile edge with at least half of the training values at or
  below it: the median itself, since the deciles include the level 1/2), each categorical
  column at its most frequent training category, no missing indicator set;
* without them (a model directory saved before they were stored): each numeric column at
  its training mean (the mean of ``log1p(x)`` for a log1p column, i.e. the raw value
  ``expm1(mean)``), so that its standardised value is 0, each categorical column with no
  category (its one-hot block all 0: no category's weights enter), no missing indicator.

What was used is said with the results (:attr:`Explanation.baseline`). The derivation and
the reasons are in docs/math.md, "Explanations".
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import reference
from .activations import sigmoid
from .preprocessing import Preprocessing, features_from_inputs

#: Gauss-Legendre nodes of the first pass.
DEFAULT_STEPS = 32
#: Most nodes a row is recomputed with before it is reported as failing completeness.
MAX_STEPS = 4096
#: Completeness: ``|sum_j IG_j - (f(x) - f(x'))| <= max(RTOL |f(x) - f(x')|, ATOL)``. The
#: floor: where ``f(x)`` is within 0.01 of ``f(x')``, 1 % of the difference is below what a
#: reason code can show, and the path's contributions may cancel to it (large ones of both
#: signs, each with its quadrature error), so the bound is 1e-4 there (0.01 percentage
#: points of probability).
RTOL = 0.01
ATOL = 1e-4
#: Rows integrated at a time (each node is one forward and backward pass over them).
BLOCK_ROWS = 4096
#: The two baselines in words (:func:`baseline_inputs`), for what the explanations print.
BASELINE_MEDIANS = ("training medians and most frequent categories (drift_reference.json), "
                    "no missing indicator")
BASELINE_MEANS = ("numeric columns at their training means, no category, no missing "
                  "indicator (no drift_reference.json)")


@functools.cache
def gauss_legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``a_i`` and weights ``v_i`` of ``m``-point Gauss-Legendre quadrature on [0, 1].

    ``integral_0^1 h(a) da ~ sum_i v_i h(a_i)``, exact for polynomials of degree
    ``2m - 1``; the weights sum to 1. Cached (read-only arrays): NumPy finds the nodes as
    the eigenvalues of an ``m x m`` matrix, a noticeable cost at ``m = 4096`` for every block.

    Returns
    -------
    a, v : ndarray of shape (m,)
    """
    t, w = np.polynomial.legendre.leggauss(m)
    a, v = (t + 1) / 2, w / 2
    a.flags.writeable = v.flags.writeable = False
    return a, v


class Combined:
    """The function explained: ``f(x) = g(c + sum_k w_k z_k(x))`` in float64.

    Parameters
    ----------
    members : sequence of (MLP, float)
        Networks and their weights ``w_k`` (``Predictor.members``).
    bias : float
        ``c`` (``Predictor.logit_bias``).

    Notes
    -----
    ``g`` is the sigmoid, or the identity for a single network with the identity output
    (then the attributions are of the value it predicts).
    """

    def __init__(self, members: Sequence[tuple], bias: float = 0.0) -> None:
        self.members = [(m.unflatten(m.theta.astype(np.float64)),
                         reference.rules(m.activation, m.output), float(w))
                        for m, w in members]
        self.bias = float(bias)
        self.n_inputs = members[0][0].n_inputs
        self.probability = members[0][0].output == "sigmoid"

    @classmethod
    def of(cls, predictor) -> Combined:
        """The combined function of a :class:`nn_core.Predictor` (one network before
        ensembles: ``[(predictor.network, 1.0)]``, bias 0)."""
        members = getattr(predictor, "members", None) or [(predictor.network, 1.0)]
        return cls(members, getattr(predictor, "logit_bias", 0.0))

    def g(self, z: np.ndarray) -> np.ndarray:
        """The output function of the combined logit: ``sigma(z)``, or ``z`` (identity)."""
        return sigmoid(z) if self.probability else z

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """``f(X)``, shape (n,)."""
        z = self.bias + sum(w * reference.forward(p, X, r)[3] for p, r, w in self.members)
        return self.g(z)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        """``df/dX = g'(z) sum_k w_k dz_k/dX``, shape (n, d)."""
        z, dz = self.bias, 0.0
        for params, r, w in self.members:
            z_k, dz_k = reference.input_gradient(params, X, r)
            z, dz = z + w * z_k, dz + w * dz_k
        if not self.probability:
            return dz
        p = sigmoid(z)
        return (p * (1 - p))[:, None] * dz


def integrated_gradients(f: Combined, X: np.ndarray, X0: np.ndarray, steps: int
                         ) -> np.ndarray:
    """``IG = (X - X0) * sum_i v_i df/dX(X0 + a_i (X - X0))`` (:func:`gauss_legendre`).

    Parameters
    ----------
    f : Combined
    X : ndarray of shape (n, d), float64
    X0 : ndarray of shape (d,) or (n, d), float64
        The baseline.
    steps : int
        Quadrature nodes ``m``.

    Returns
    -------
    ndarray of shape (n, d)
    """
    D = X - X0
    total = np.zeros_like(D)
    for a, v in zip(*gauss_legendre(steps), strict=True):
        total += v * f.gradient(X0 + a * D)
    return D * total


@dataclass(frozen=True)
class Explanation:
    """Attributions of rows, per raw column, on the scale of ``f`` (the probability).

    Attributes
    ----------
    columns : list of str
        The raw columns, in feature order.
    contributions : ndarray of shape (n, n_columns)
        Signed: ``sum`` over a row is ``value - baseline_value`` (within the tolerance).
    value : ndarray of shape (n,)
        ``f(x)``: the uncalibrated probability of each row (float64 reference).
    baseline_value : float
        ``f(x')``.
    baseline : str
        What the baseline is (:func:`baseline_inputs`).
    error : ndarray of shape (n,)
        ``|sum_j IG_j - (f(x) - f(x'))|``.
    steps : ndarray of shape (n,), int
        Quadrature nodes each row ended with.
    failed : ndarray of shape (n,), bool
        Rows whose ``error`` is above the tolerance even with ``MAX_STEPS`` nodes.
    """

    columns: list[str]
    contributions: np.ndarray
    value: np.ndarray
    baseline_value: float
    baseline: str
    error: np.ndarray
    steps: np.ndarray
    failed: np.ndarray

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` columns of largest ``|contribution|`` per row (ties: column order).

        Returns
        -------
        index : ndarray of shape (n, k), int
            Into :attr:`columns`, largest first.
        contribution : ndarray of shape (n, k)
        """
        order = np.argsort(-np.abs(self.contributions), axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(self.contributions, order, axis=1)

    def frame(self, k: int) -> pd.DataFrame:
        """``reason_1, contribution_1, ..., reason_k, contribution_k`` per row."""
        order, c = self.top(k)
        names = np.array(self.columns, dtype=object)
        table = {}
        for i in range(order.shape[1]):
            table[f"reason_{i + 1}"] = names[order[:, i]]
            table[f"contribution_{i + 1}"] = c[:, i]
        return pd.DataFrame(table)


def baseline_inputs(pre: Preprocessing, reference=None) -> tuple[np.ndarray, str]:
    """The baseline as a raw-input row ``U`` of :func:`nn_core.preprocessing.features_from_inputs`
    (numeric values; a category's position, -1 for none) and its description.

    Parameters
    ----------
    pre : Preprocessing
    reference : nn_core.drift.Reference, optional
        The training distributions (``Predictor.reference``): medians and most frequent
        categories. Without it, means and no category (module docstring).

    Returns
    -------
    U : ndarray of shape (1, n_columns), float64
    description : str
        :data:`BASELINE_MEDIANS` or :data:`BASELINE_MEANS`.
    """
    U = np.empty((1, len(pre.columns)))
    for i, c in enumerate(pre.columns):
        if reference is not None:
            counts = np.asarray(reference.columns[i]["counts"][:-1], dtype=np.float64)
            if c["kind"] == "numeric":  # counts: the bins (q_{j-1}, q_j], then (q_m, inf)
                edges = reference.columns[i]["edges"]
                at_or_below = np.cumsum(counts[:-1])
                j = int(np.argmax(at_or_below >= counts.sum() / 2))  # 0 if never: q_1
                U[0, i] = edges[j] if at_or_below[j] >= counts.sum() / 2 else edges[-1]
            else:  # counts: the categories, then unseen (0 in training)
                U[0, i] = int(np.argmax(counts[: len(c["categories"])]))
        elif c["kind"] == "numeric":
            U[0, i] = np.expm1(c["mean"]) if c["log1p"] else c["mean"]
        else:
            U[0, i] = -1  # no position: features_from_inputs sets nothing in the block
    return U, BASELINE_MEANS if reference is None else BASELINE_MEDIANS


def baseline_features(pre: Preprocessing, reference=None) -> np.ndarray:
    """The baseline ``x'`` (n_features,) float64: :func:`baseline_inputs` preprocessed."""
    return features_from_inputs(pre.columns, baseline_inputs(pre, reference)[0])[0][0]


def column_groups(predictor, n_inputs: int) -> dict[str, slice]:
    """Raw column -> its slice of the network inputs; one input each (``x0``, ``x1``, ...)
    for a model directory without preprocessing."""
    pre = predictor.preprocessing
    if pre is None:
        return {f"x{j}": slice(j, j + 1) for j in range(n_inputs)}
    return pre.column_slices()


def attribute(predictor, X, steps: int = DEFAULT_STEPS, max_steps: int = MAX_STEPS,
              rtol: float = RTOL, atol: float = ATOL) -> Explanation:
    """Integrated gradients of each row of features ``X``, per raw column.

    Parameters
    ----------
    predictor : nn_core.Predictor
    X : array of shape (n, n_inputs)
        The network inputs (``Predictor.features`` of a raw table).
    steps, max_steps : int
        Gauss-Legendre nodes of the first pass, and the most a failing row is retried with
        (doubling).
    rtol, atol : float
        Completeness tolerance (module docstring).

    Returns
    -------
    Explanation
    """
    if not 1 <= steps <= max_steps:
        raise ValueError(f"steps must be in [1, max_steps={max_steps}], got {steps}")
    f = Combined.of(predictor)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != f.n_inputs:
        raise ValueError(f"X must have shape (n, {f.n_inputs}), got {X.shape}")
    pre = predictor.preprocessing
    if pre is not None:
        reference = getattr(predictor, "reference", None)
        X0 = baseline_features(pre, reference)
        baseline = baseline_inputs(pre, reference)[1]
    else:
        X0, baseline = np.zeros(f.n_inputs), "every network input 0 (no preprocessing)"
    f0 = float(f(X0[None, :])[0])
    groups = column_groups(predictor, f.n_inputs)
    n = X.shape[0]
    contributions = np.empty((n, len(groups)))
    value, error = np.empty(n), np.empty(n)
    used = np.full(n, steps)
    for s in range(0, n, BLOCK_ROWS):
        rows = slice(s, min(s + BLOCK_ROWS, n))
        Xb = X[rows]
        fx = f(Xb)
        A = integrated_gradients(f, Xb, X0, steps)
        err = np.abs(A.sum(axis=1) - (fx - f0))
        tol = np.maximum(rtol * np.abs(fx - f0), atol)
        m = steps
        while m < max_steps and (err > tol).any():  # the rows that miss, with twice the nodes
            m = min(2 * m, max_steps)
            redo = np.flatnonzero(err > tol)
            A[redo] = integrated_gradients(f, Xb[redo], X0, m)
            err[redo] = np.abs(A[redo].sum(axis=1) - (fx[redo] - f0))
            used[s + redo] = m
        contributions[rows] = np.column_stack([A[:, g].sum(axis=1) for g in groups.values()])
        value[rows], error[rows] = fx, err
    tol = np.maximum(rtol * np.abs(value - f0), atol)
    return Explanation(list(groups), contributions, value, f0, baseline, error, used,
                       error > tol)


def explain(predictor, frame: pd.DataFrame, k: int, first_row: int = 1) -> pd.DataFrame:
    """The top-``k`` reasons of each row of a raw table: the Python form of
    ``predict.py --explain K``.

    Parameters
    ----------
    predictor : nn_core.Predictor
        With its preprocessing.
    frame : DataFrame
        Raw rows, as :meth:`nn_core.Predictor.predict_proba` takes them.
    k : int
        Reasons per row, ``1 <= k <=`` the number of raw columns.
    first_row : int
        1-based data-row number of ``frame``'s first row, for error messages.

    Returns
    -------
    DataFrame
        ``reason_1, contribution_1, ..., reason_k, contribution_k`` (signed, on the
        uncalibrated probability scale, relative to :func:`baseline_inputs`), then
        ``probability`` (``f(x)``, uncalibrated), ``baseline_probability`` (``f(x')``) and
        ``complete`` (completeness held within 1 %), one row per row of ``frame``.
    """
    n_columns = len(predictor.preprocessing.columns) if predictor.preprocessing else 0
    if not 1 <= k <= n_columns:
        raise ValueError(f"k must be in [1, {n_columns}] (the model's raw columns), got {k}")
    e = attribute(predictor, predictor.features(frame, first_row))
    out = e.frame(k)
    out["probability"] = e.value
    out["baseline_probability"] = e.baseline_value
    out["complete"] = ~e.failed
    out.index = frame.index
    return out


class ChunkExplainer:
    """Explanations of rows as they are scored in chunks (``predict.py --explain K`` and
    ``--explain-row N``): call it with each chunk's data-row numbers and features.

    Parameters
    ----------
    predictor : nn_core.Predictor
    k : int
        Reasons per row written as text columns (0: none).
    row : int, optional
        The data row (1-based, as the output's ``row`` id) whose whole :class:`Explanation`
        is kept, for a waterfall (:attr:`row_explanation`).

    Attributes
    ----------
    names : list of str
        The text columns a call returns: ``reason_1, contribution_1, ...``.
    rows, failed : int
        Rows explained so far, and those that missed completeness.
    row_explanation : Explanation or None
        Of ``row``, once a chunk held it.
    """

    def __init__(self, predictor, k: int = 0, row: int | None = None) -> None:
        n_columns = len(column_groups(predictor, predictor.network.n_inputs))
        if not 0 <= k <= n_columns:
            raise ValueError(f"k must be in [1, {n_columns}] (the model's raw columns), "
                             f"got {k}")
        self.predictor, self.k, self.row = predictor, k, row
        self.names = [f"{kind}_{i}" for i in range(1, k + 1)
                      for kind in ("reason", "contribution")]
        self.rows = self.failed = 0
        self.baseline_value: float | None = None
        self.baseline = ""
        self.row_explanation: Explanation | None = None

    def summary(self) -> str:
        """One line: what the contributions are, the baseline, and the rows that missed
        completeness (their count; they are written all the same)."""
        base = "" if self.baseline_value is None else f" = {self.baseline_value:.6g}"
        text = (f"contributions to the uncalibrated probability relative to f(baseline){base} "
                f"(baseline: {self.baseline})")
        if getattr(self.predictor, "calibration", None) is not None:
            text += ("; the model's calibration is not explained (the propensity column is "
                     "calibrated)")
        if self.k:
            text += (f"; completeness (the contributions sum to f(x) - f(baseline) within "
                     f"{RTOL:.0%}) failed for {self.failed:,} of {self.rows:,} rows")
        return text

    def __call__(self, data_rows: np.ndarray, X: np.ndarray) -> dict[str, list[str]]:
        """The reason and contribution texts of a chunk (``names``; contributions with 6
        significant digits), keeping ``row``'s explanation when the chunk holds it.

        Parameters
        ----------
        data_rows : ndarray of shape (n,), int
            The chunk's data-row numbers.
        X : ndarray of shape (n, n_inputs)
            Its features.
        """
        hit = np.flatnonzero(data_rows == self.row) if self.row is not None else []
        if self.k:
            e = attribute(self.predictor, X)
        elif len(hit):
            e = attribute(self.predictor, X[hit])
            hit = [0]
        else:
            return {}
        self.baseline_value, self.baseline = e.baseline_value, e.baseline
        if len(hit):
            i = hit[0]
            self.row_explanation = Explanation(
                e.columns, e.contributions[i : i + 1], e.value[i : i + 1], e.baseline_value,
                e.baseline, e.error[i : i + 1], e.steps[i : i + 1], e.failed[i : i + 1])
        if not self.k:
            return {}
        self.rows += len(e.value)
        self.failed += int(e.failed.sum())
        order, c = e.top(self.k)
        names = np.array(e.columns, dtype=object)
        texts = {}
        for i in range(self.k):
            texts[f"reason_{i + 1}"] = names[order[:, i]].tolist()
            texts[f"contribution_{i + 1}"] = [format(v, ".6g") for v in c[:, i].tolist()]
        return texts
