"""nn_core/preprocessing.py: block_parts, the layout of a column's feature block, agrees with
block_width, feature_names and the features features_from_inputs writes."""

from __future__ import annotations

import numpy as np
import pytest

from nn_core.preprocessing import (
    ENCODING_KINDS,
    NUMERIC_ENCODINGS,
    PREPROCESS_RANK_VERSION,
    Preprocessing,
    block_parts,
    block_width,
    features_from_inputs,
    gaussian_rank,
    part_slices,
    piecewise_linear,
)

EDGES = [0.0, 1.0, 3.0, 6.0]  # T = 3 bins
KNOTS, SCORES, ENDS = [0.0, 2.0, 5.0], [-1.0, 0.0, 1.0], [-5.0, 5.0]


def _column(encoding: str, indicator: bool) -> dict:
    parts = NUMERIC_ENCODINGS[encoding]
    column = {"name": "a", "kind": "numeric", "log1p": True, "mean": 0.5, "std": 2.0,
              "impute": {"value": 1.0, "indicator": indicator}}
    if parts.rank or parts.ple:
        column["encoding"] = {"kind": ENCODING_KINDS[parts.rank, parts.ple],
                              "value": parts.value}
        if parts.rank:
            column["encoding"].update(knots=KNOTS, scores=SCORES, ends=ENDS)
        if parts.ple:
            column["encoding"]["edges"] = EDGES
    return column


def _preprocessing(encoding: str, indicator: bool) -> Preprocessing:
    """A checked preprocess.json of the numeric column ``a`` and a categorical ``m``."""
    doc = {"format": "purchase-propensity-preprocess", "format_version": PREPROCESS_RANK_VERSION,
           "target": None, "id_column": None,
           "columns": [_column(encoding, indicator),
                       {"name": "m", "kind": "categorical", "categories": ["x", "y"]},
                       # a Gaussian-rank column, whatever ``encoding`` is (format version 4)
                       {**_column("quantile", False), "name": "q"}]}
    return Preprocessing.from_dict(doc)


@pytest.mark.parametrize("indicator", [False, True])
@pytest.mark.parametrize("encoding", list(NUMERIC_ENCODINGS))
def test_block_parts_is_the_layout_of_names_widths_and_features(encoding, indicator):
    pre = _preprocessing(encoding, indicator)
    column = pre.columns[0]
    parts = NUMERIC_ENCODINGS[encoding]
    expected = ([("value", 1)] * parts.value + [("rank", 1)] * parts.rank
                + [("ple", len(EDGES) - 1)] * parts.ple + [("missing", 1)] * indicator)
    assert block_parts(column) == expected
    assert block_width(column) == sum(width for _, width in expected)
    assert block_parts(pre.columns[1]) == [("onehot", 3)]
    assert pre.n_features == sum(block_width(c) for c in pre.columns)

    names = pre.feature_names
    at = part_slices(column)
    suffix = {"value": lambda t: "log1p(a)", "rank": lambda t: "a[rank]",
              "ple": lambda t: f"a[ple {t}]", "missing": lambda t: "missing(a)"}
    assert [names[i] for s in at.values() for i in range(s.start, s.stop)] == names[
        :block_width(column)]
    for part, s in at.items():
        assert names[s] == [suffix[part](t) for t in range(1, s.stop - s.start + 1)]
    assert names[block_width(column):][:3] == ["m=x", "m=y", "m=<unseen>"]

    x = np.array([0.0, 0.5, 2.0, 4.0, 7.0, np.nan])
    U = np.column_stack([x, np.zeros_like(x), np.ones_like(x)])
    F, invalid = features_from_inputs(pre.columns, U)
    assert not invalid.any()
    filled = np.where(np.isnan(x), 1.0, x)  # the imputed value
    want = {"value": ((np.log1p(filled) - 0.5) / 2.0)[:, None],
            "rank": gaussian_rank(filled, KNOTS, SCORES, ENDS)[:, None],
            "ple": piecewise_linear(filled, EDGES),
            "missing": np.isnan(x)[:, None].astype(float)}
    for part, s in at.items():
        np.testing.assert_array_equal(F[:, s], want[part])
    q = part_slices(pre.columns[2], block_width(column) + 3)
    np.testing.assert_array_equal(F[:, q["rank"]], gaussian_rank(U[:, 2], KNOTS, SCORES,
                                                                 ENDS)[:, None])
