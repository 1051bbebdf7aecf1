"""The network's inputs as dense features plus one-hot codes: a first layer without the zeros.

In the feature matrix ``X`` (n, d_0) of a :class:`nn_core.preprocessing.Preprocessing`, a
categorical column without imputation is a one-hot block: in every row exactly one of its
``K + 1`` features is 1 (the row's category, or the unseen bucket) and the others are 0. So
the first layer's product splits into the dense features ``X_d`` (the numeric columns and
any other block that is not one-hot) and one row of ``W_0`` per block:

    X W_0 = X_d W_0[dense] + sum_c W_0[s_c + k_ic]

where ``s_c`` is block ``c``'s first feature and ``k_ic`` row ``i``'s position in it
(``Preprocessing.inputs`` gives ``k``). On the bundled table (10 numeric columns, 7
categorical ones, 80 features) that is a 10-wide product and 7 row additions instead of an
80-wide product, most of whose terms are zero (docs/math.md, "One-hot inputs: the first
layer as gathered rows").

:class:`InputSplit` is the split for a preprocessing: which columns are dense and where the
one-hot blocks start; :meth:`InputSplit.split` turns raw inputs ``U`` into ``(X_d, R)``
with ``R_ic = s_c + k_ic``, computing the dense features with the transform itself
(``features_from_inputs`` on the dense columns alone), and :func:`predict_inputs` scores
them with the backend's ``predict_onehot`` (``nn_core/kernels.py: forward_rows_onehot``
for ``numba``). The results equal those of the feature matrix up to the order of the
additions (``tests/nn_core/test_onehot.py`` checks them against the reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import backends
from .preprocessing import block_width, features_from_inputs

#: Up to this many rows, ``nn_core.MLP.predict_proba`` scores the feature matrix one row at a
#: time with no BLAS and no thread limit to set (its few-row path): cheaper than this path's
#: per-call set-up for online scoring (``Predictor.predict_proba`` keeps it there).
FEW_ROWS = 16


class InputSplit:
    """Dense columns and one-hot blocks of a preprocessing's feature matrix.

    Parameters
    ----------
    columns : list of dict
        The fitted columns (``Preprocessing.columns``).

    Attributes
    ----------
    dense_columns : list of int
        Columns whose features are computed as they are (numeric ones; categorical ones
        with imputation, whose block may hold a missing indicator besides its 1).
    onehot_columns : list of int
        Categorical columns without imputation: one-hot blocks.
    dense : (d_dense,) int64 array
        The feature index of each dense feature, in order.
    start : (k,) int64 array
        The first feature of each one-hot block.
    sizes : (k,) int64 array
        ``K + 1``: the features of each one-hot block (the largest valid position is ``K``).
    n_features : int
    """

    def __init__(self, columns: Sequence[Mapping]) -> None:
        self.columns = list(columns)
        widths = [block_width(c) for c in self.columns]
        first = np.cumsum([0, *widths[:-1]]).astype(np.int64)
        self.onehot_columns = [i for i, c in enumerate(self.columns)
                               if c["kind"] == "categorical" and "impute" not in c]
        self.dense_columns = [i for i in range(len(self.columns))
                              if i not in self.onehot_columns]
        self.dense = np.array([f for i in self.dense_columns
                               for f in range(first[i], first[i] + widths[i])], dtype=np.int64)
        self.start = first[self.onehot_columns]
        self.sizes = np.array([widths[i] for i in self.onehot_columns], dtype=np.int64)
        self.n_features = int(sum(widths))

    @property
    def useful(self) -> bool:
        """Whether there is a one-hot block at all (else the dense path is the same work)."""
        return bool(self.onehot_columns)

    def split(self, U: np.ndarray, dtype=np.float64) -> tuple[np.ndarray, np.ndarray] | None:
        """``(X_d, R)`` of raw inputs ``U``, or None when a category position is not an
        integer in ``0..K`` (``features_from_inputs`` leaves such a block all zero) or a row
        is invalid (``features_from_inputs``'s ``invalid``): the caller takes the feature
        matrix and its checks.

        Parameters
        ----------
        U : ndarray, shape (n, n_columns), float64
            As ``Preprocessing.inputs`` gives it.
        dtype : numpy dtype
            Of ``X_d`` (the network's).

        Returns
        -------
        X_d : ndarray, shape (n, d_dense), ``dtype``
            The dense features, the same numbers as those columns of the feature matrix.
        R : ndarray, shape (n, k), int32, C order
            ``R_ic = start_c + k_ic``: the feature that is 1 in block ``c``.
        """
        k = U[:, self.onehot_columns]
        if not ((k >= 0) & (k < self.sizes) & (k == np.floor(k))).all():  # False for NaN
            return None
        Xd, invalid = features_from_inputs([self.columns[i] for i in self.dense_columns],
                                           U[:, self.dense_columns], dtype)
        if invalid.any():
            return None
        # C order (U's columns come out column-major): the kernel reads a block of R as one
        # run of indices (nn_core/kernels.py: indices_in_range).
        return Xd, np.ascontiguousarray(k + self.start, dtype=np.int32)


def predict_inputs(network, split: InputSplit, U: np.ndarray, threads: int | None = None,
                   output: str | None = None) -> np.ndarray | None:
    """The network's output ``g(z)`` (n,) for raw inputs ``U``, through the one-hot split.

    Parameters
    ----------
    network : nn_core.MLP
    split : InputSplit
        Of the network's preprocessing (``split.n_features == network.n_inputs``).
    U : ndarray, shape (n, n_columns)
        Raw inputs (``Preprocessing.inputs``).
    threads : int, optional
    output : str, optional
        Another output function than the network's (``"identity"``: the logits).

    Returns
    -------
    (n,) array of the network's dtype, or None where this path does not apply: a
    position that is not a category's, or a dense feature that is not a finite number of
    the network's dtype (the caller scores the feature matrix, whose checks name the row
    and column).
    """
    if split.n_features != network.n_inputs:
        raise ValueError(f"the split has {split.n_features} features, the network "
                         f"{network.n_inputs} inputs")
    parts = split.split(U, network.dtype)
    if parts is None:
        return None
    Xd, R = parts
    return backends.get(network.backend).predict_onehot(network, Xd, split.dense, R, threads,
                                                        output)
