"""features/views.py: a view's columns of a union encoding's feature matrix are exactly the
matrix the view's encoding alone gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.tabular import Preprocessor
from features.views import check_views, encoding_parts, view_columns
from nn_core.preprocessing import NUMERIC_ENCODINGS

#: The encoding with the most parts (today standard+ple; with the Gaussian rank
#: standard+quantile+ple): every other encoding is a view of it.
UNION = max(NUMERIC_ENCODINGS, key=lambda e: len(encoding_parts(e)))


def _frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, n).astype(float)  # log1p'd (>= 0, max > 1)
    rates = rng.uniform(-1, 1, n)
    rates[::17] = np.nan  # missing: imputed, with an indicator
    return pd.DataFrame({"counts": counts, "rates": rates, "flat": np.full(n, 2.5),
                         "month": rng.choice(["Feb", "Mar", "Nov"], n),
                         "y": rng.integers(0, 2, n)})


def _fitted(encoding: str, df: pd.DataFrame) -> Preprocessor:
    return Preprocessor(["counts", "rates", "flat"], ["month"], target="y", impute=True,
                        numeric_encoding=encoding, ple_bins=5).fit(df)


@pytest.mark.parametrize("view", [v for v in NUMERIC_ENCODINGS
                                  if encoding_parts(v) <= encoding_parts(UNION)])
def test_a_views_columns_are_the_views_own_features(view):
    df = _frame()
    union, alone = _fitted(UNION, df), _fitted(view, df)
    cols = view_columns(union, view)
    assert np.all(np.diff(cols) > 0)
    assert [union.feature_names[i] for i in cols] == alone.feature_names
    assert np.array_equal(union.transform(df)[:, cols], alone.transform(df))
    assert "missing(rates)" in alone.feature_names  # in every view


def test_the_union_view_is_every_column_and_views_differ():
    union = _fitted(UNION, _frame())
    assert np.array_equal(view_columns(union, UNION), np.arange(union.n_features))
    assert len(view_columns(union, "standard")) < len(view_columns(union, "standard+ple"))
    assert not set(view_columns(union, "ple")) >= set(view_columns(union, "standard"))


def test_a_view_the_preprocessing_does_not_hold_is_refused():
    pre = _fitted("standard", _frame())
    with pytest.raises(ValueError, match="view standard\\+ple: no numeric column has the "
                                         "piecewise-linear bins"):
        view_columns(pre, "standard+ple")


@pytest.mark.parametrize("views, encoding, message", [
    (("standard+ple",), "standard", "view standard\\+ple is not contained in the numeric "
                                    "encoding standard: it lacks the piecewise-linear bins"),
    (("standard", "ple"), "ple", "view standard is not contained .* lacks the standardised"),
    (("quantile+ple",), "standard", "lacks the Gaussian rank and the piecewise-linear bins"),
    (("bins",), "standard+ple", "'bins' is no numeric encoding"),
    (("standard",), "everything", "'everything' is no numeric encoding"),
])
def test_check_views_names_the_first_bad_view(views, encoding, message):
    with pytest.raises(ValueError, match=message):
        check_views(views, encoding)


def test_contained_views_pass():
    check_views(("standard", "ple", "standard+ple"), "standard+ple")
