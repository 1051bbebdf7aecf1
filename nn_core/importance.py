"""Permutation importance: how much a model's ROC-AUC drops when one raw column is shuffled.

For a model scored by ``score(X) -> p`` on rows ``X`` (n, d) with labels ``y``, and a raw
column ``j`` whose features are the group ``G_j`` of columns of ``X`` (its one-hot block, its
value and missing indicator, its piecewise-linear bins: ``Preprocessing.column_slices``),

    I_j = AUC(y, score(X)) - AUC(y, score(X with the rows of X[:, G_j] permuted)),

averaged over ``R`` seeded permutations (mean and sample standard deviation over the
repeats). Permuting a whole group moves the column's features together, which is the same
as shuffling the raw column before preprocessing (the transform works cell by cell), but
needs no second pass through the preprocessing. A drop near 0 means the model does not use
the column (or another column carries the same information: correlated columns share
their importance, each looking less important than the pair); a negative mean is noise.

This is Breiman's (2001) importance as scikit-learn's ``permutation_importance`` computes
it, written over our own ROC-AUC (``nn_core/metrics.py: roc_auc``) so that it needs no
optional dependency and can permute groups of columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .metrics import roc_auc

#: Permutations per column of train.py (``--importance-repeats``).
DEFAULT_REPEATS = 5


@dataclass
class Importance:
    """The result of :func:`permutation_importance`.

    Attributes
    ----------
    columns : list of str
        Raw column names, most important first (largest mean drop; ties by name).
    drops : ndarray, shape (n_columns, n_repeats)
        ``AUC(X) - AUC(X permuted)`` of each column (row, in ``columns`` order) and repeat.
    baseline : float
        ``AUC(y, score(X))`` of the rows as given.
    """

    columns: list[str]
    drops: np.ndarray
    baseline: float

    @property
    def mean(self) -> np.ndarray:
        """Mean drop per column, shape (n_columns,)."""
        return self.drops.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation of the drops over the repeats (0 for one repeat)."""
        R = self.drops.shape[1]
        return self.drops.std(axis=1, ddof=1) if R > 1 else np.zeros(len(self.columns))

    def rows(self, model: str) -> list[dict]:
        """The ``importance.csv`` rows of this result: ``model, column, mean_drop,
        std_drop, rank`` (rank 1 = the largest mean drop)."""
        return [{"model": model, "column": name, "mean_drop": float(m), "std_drop": float(s),
                 "rank": k + 1}
                for k, (name, m, s) in enumerate(zip(self.columns, self.mean, self.std,
                                                     strict=True))]


def permutation_importance(
    score: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    groups: Mapping[str, slice | np.ndarray | list[int]],
    n_repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
) -> Importance:
    """Permutation importance of column groups: the ROC-AUC drop when a group is shuffled.

    Parameters
    ----------
    score : callable
        ``score(X) -> (n,)`` scores of a feature matrix (e.g. a network's
        ``predict_proba``).
    X : ndarray, shape (n, d)
        Rows to score (dev rows: not those the model was fitted on).
    y : ndarray, shape (n,)
        0/1 labels, both classes present.
    groups : mapping of str to slice or index array
        Each raw column's features (``Preprocessing.column_slices()``); every column of
        ``X`` in a group of its own for a plain matrix.
    n_repeats : int
        ``R``, permutations per group.
    seed : int
        Seed of the permutations: repeat ``r`` of every group uses the same row permutation
        (``numpy.random.default_rng(seed)``, ``R`` permutations drawn once), so that the
        groups are compared on equal terms.

    Returns
    -------
    Importance
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (n, d) with n = len(y) = {len(y)}, got {X.shape}")
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    if not groups:
        raise ValueError("no column groups given")
    baseline = roc_auc(y, score(X))
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(len(X)) for _ in range(n_repeats)]
    names = list(groups)
    drops = np.empty((len(names), n_repeats))
    Xp = X.copy()
    for j, name in enumerate(names):
        cols = groups[name]
        for r, perm in enumerate(perms):
            Xp[:, cols] = X[:, cols][perm]
            drops[j, r] = baseline - roc_auc(y, score(Xp))
        Xp[:, cols] = X[:, cols]  # put the group back before the next one
    order = sorted(range(len(names)), key=lambda j: (-drops[j].mean(), names[j]))
    return Importance([names[j] for j in order], drops[order], baseline)
