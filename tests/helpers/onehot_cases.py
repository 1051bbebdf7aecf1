"""Raw inputs of a small mixed table for the one-hot first layer's tests
(tests/nn_core/test_onehot.py, tests/nn_core/test_ensemble_merge.py)."""

from __future__ import annotations

import numpy as np

#: A numeric column with a piecewise-linear encoding (z and 3 bins), a categorical one, a
#: log1p one, a categorical one with imputation and a missing indicator (a dense block),
#: another categorical one: 4 + 4 + 1 + 4 + 3 = 16 features.
COLUMNS = [
    {"name": "a", "kind": "numeric", "log1p": False, "mean": 0.5, "std": 2.0,
     "encoding": {"kind": "piecewise_linear", "edges": [-1.0, 0.0, 0.5, 2.0], "value": True}},
    {"name": "c1", "kind": "categorical", "categories": ["x", "y", "z"]},
    {"name": "b", "kind": "numeric", "log1p": True, "mean": 1.0, "std": 0.5},
    {"name": "c2", "kind": "categorical", "categories": ["p", "q"],
     "impute": {"value": "q", "indicator": True}},
    {"name": "c3", "kind": "categorical", "categories": ["u", "v"]},
]


def raw_inputs(n: int, seed: int = 0) -> np.ndarray:
    """Raw inputs ``U`` of :data:`COLUMNS`: numbers, and category positions (unseen included;
    NaN, a missing cell, in the imputing column)."""
    rng = np.random.default_rng(seed)
    U = np.empty((n, 5))
    U[:, 0] = rng.normal(size=n)
    U[:, 1] = rng.integers(0, 4, n)
    U[:, 2] = rng.exponential(size=n)
    U[:, 3] = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 3, n))
    U[:, 4] = rng.integers(0, 3, n)
    return U
