"""features.ranking.stable_argsort: the permutation of NumPy's stable sort."""

import numpy as np
import pytest

from features.ranking import stable_argsort


@pytest.mark.parametrize("kind", ["distinct", "many ties", "all equal", "extremes", "tiny"])
def test_stable_argsort_is_the_stable_sort(kind):
    """Equal keys keep their order (checked against argsort(kind="stable")), with ties in
    runs and scattered, the extreme uint64 values, and 0 to 2 keys."""
    rng = np.random.default_rng(7)
    n = 20_000
    k = {"distinct": rng.integers(0, 2**63, n, dtype=np.uint64),
         "many ties": rng.integers(0, 50, n).astype(np.uint64),
         "all equal": np.full(n, 12345, dtype=np.uint64),
         "extremes": rng.choice(np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64), n),
         "tiny": np.array([3], dtype=np.uint64)}[kind]
    for keys in (k, k[:0], k[:2], k[::-1]):
        np.testing.assert_array_equal(stable_argsort(keys), np.argsort(keys, kind="stable"))
