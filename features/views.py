"""Views of a feature matrix: the columns one numeric encoding would have given.

A model fitted with a numeric encoding that joins several parts (``"standard+ple"``: the
standardised value ``z`` and the piecewise-linear bins) holds, for every numeric column,
the features of each part. A *view* is an encoding of ``nn_core.preprocessing.
NUMERIC_ENCODINGS`` whose parts (its ``NumericEncoding``: ``value``, ``rank``, ``ple``)
the model's encoding (the *union*) has; its columns are the features that encoding alone
would have produced, in the same order:

* of a numeric column, the features of the view's parts, found by their place in the
  column's block (``nn_core/preprocessing.py: block_parts``): ``value`` the standardised
  value, ``rank`` the Gaussian rank, ``ple`` the bins; its missing indicator in every
  view; a column with none of the view's parts (a constant column has no piecewise-linear bins)
  with its value, as the view's encoding alone gives it (or, where the union has no value
  either, with what its block holds);
* every feature of a categorical column (one-hot block and missing indicator).

``train.py --ensemble-views`` trains ensemble member ``k`` on view ``k mod V``
(``nn_core/selection.py: train_and_evaluate``'s ``column_sets``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nn_core.preprocessing import NUMERIC_ENCODINGS, Preprocessing, part_slices

#: The parts in words, for messages, in block order.
PART_NAMES = {"value": "the standardised value", "rank": "the Gaussian rank",
              "ple": "the piecewise-linear bins"}


def encoding_parts(encoding: str) -> frozenset[str]:
    """The parts of a numeric encoding (``NUMERIC_ENCODINGS``):
    ``"standard+ple"`` -> {``value``, ``ple``}."""
    parts = NUMERIC_ENCODINGS[encoding]
    return frozenset(part for part in parts._fields if getattr(parts, part))


def check_views(views: Sequence[str], encoding: str) -> None:
    """Check that every view is a numeric encoding contained in ``encoding`` (the union).

    Raises
    ------
    ValueError
        Naming the first view that is no encoding of ``NUMERIC_ENCODINGS`` or needs a part
        the union lacks.
    """
    for view in (*views, encoding):
        if view not in NUMERIC_ENCODINGS:
            raise ValueError(f"{view!r} is no numeric encoding (one of "
                             f"{', '.join(NUMERIC_ENCODINGS)})")
    for view in views:
        lacks = [p for p in PART_NAMES if p in encoding_parts(view) - encoding_parts(encoding)]
        if lacks:
            raise ValueError(f"view {view} is not contained in the numeric encoding "
                             f"{encoding}: it lacks {' and '.join(map(PART_NAMES.get, lacks))}")


def view_columns(pre: Preprocessing, view: str) -> np.ndarray:
    """The columns of ``pre``'s feature matrix that the encoding ``view`` alone gives.

    Parameters
    ----------
    pre : Preprocessing
        Fitted, with a numeric encoding containing ``view`` (:func:`check_views`).
    view : str
        An encoding of ``NUMERIC_ENCODINGS``.

    Returns
    -------
    ndarray of intp, shape (d_view,)
        Increasing indices into the ``pre.n_features`` columns.

    Raises
    ------
    ValueError
        When no numeric column has the features of a part of ``view`` (``pre`` was fitted
        with an encoding that does not contain it).
    """
    parts = encoding_parts(view)
    keep, seen = [], set()
    for c, block in zip(pre.columns, pre.column_slices().values(), strict=True):
        if c["kind"] != "numeric":
            keep.extend(range(block.start, block.stop))
            continue
        found = part_slices(c, block.start)  # the features of each part, in block order
        present = set(found) - {"missing"}
        seen |= present
        # A constant column has no bins: the view's encoding alone gives its value (where
        # the union lacks the value too, the block as it is).
        parts_here = parts & present or {"value"} & present or present
        for part, features in found.items():
            if part == "missing" or part in parts_here:
                keep.extend(range(features.start, features.stop))
    lacks = [p for p in PART_NAMES if p in parts - seen]
    if seen and lacks:
        raise ValueError(f"view {view}: no numeric column has "
                         f"{' or '.join(map(PART_NAMES.get, lacks))} (the preprocessing's "
                         "encoding does not contain the view)")
    return np.asarray(keep, dtype=np.intp)
