"""The one-hot first layer (nn_core/onehot.py, NumbaBackend.predict_onehot) against the
reference on the feature matrix it stands for."""

from __future__ import annotations

import numpy as np
import pytest
from onehot_cases import COLUMNS, raw_inputs

from nn_core import MLP, backends
from nn_core.onehot import InputSplit, predict_inputs
from nn_core.preprocessing import features_from_inputs
from nn_core.testing import TOLERANCES, relative_error


def test_split_is_the_feature_matrix():
    split = InputSplit(COLUMNS)
    assert split.onehot_columns == [1, 4] and split.dense_columns == [0, 2, 3]
    assert split.dense.tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 12]
    assert split.start.tolist() == [4, 13] and split.n_features == 16
    U = raw_inputs(500)
    Xd, R = split.split(U)
    F = features_from_inputs(COLUMNS, U)[0]
    assert R.dtype == np.int32
    np.testing.assert_array_equal(backends.onehot_matrix(Xd, split.dense, R, 16), F)


def test_split_refuses_a_position_that_is_not_a_category():
    split = InputSplit(COLUMNS)
    for bad in (np.nan, 3.5, 4.0, -1.0):  # c1 has positions 0..3 (3: unseen)
        U = raw_inputs(20)
        U[7, 1] = bad
        assert split.split(U) is None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden", [(), (9,), (5, 4, 3)])
def test_numba_equals_the_reference(dtype, hidden):
    """Every row of a large table (serial and in two threads' slices, blocks not dividing
    it) equals the reference's prediction of the feature matrix."""
    split = InputSplit(COLUMNS)
    U = raw_inputs(5_000, seed=1)
    F = features_from_inputs(COLUMNS, U, dtype)[0]
    m = MLP(16, hidden, dtype=dtype, seed=3)
    want = backends.get("numpy").predict(m, F)
    for threads in (1, 2):
        got = predict_inputs(m, split, U, threads)
        assert got.dtype == np.dtype(dtype)
        assert relative_error(want, got) <= TOLERANCES[dtype]
    numpy_side = backends.get("numpy").predict_onehot(m, *split.split(U, dtype)[:1],
                                                      split.dense, split.split(U)[1])
    assert relative_error(want, numpy_side) <= TOLERANCES[dtype]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("blocks", [1, 8, 9, 17])
@pytest.mark.parametrize("hidden", [(), (6,), (5, 3)])
def test_blocks_in_passes_of_eight(dtype, blocks, hidden):
    """The kernel adds the gathered rows eight at a time (``kernels.GATHER``), padding the
    last pass with a row of zeros: any number of blocks, in one pass or several, gives
    the reference's prediction of the feature matrix (3 dense features, blocks of 3)."""
    rng = np.random.default_rng(blocks)
    n, n_inputs = 3_000, 3 + 3 * blocks
    Xd = rng.normal(size=(n, 3)).astype(dtype)
    R = (3 + 3 * np.arange(blocks) + rng.integers(0, 3, (n, blocks))).astype(np.int32)
    m = MLP(n_inputs, hidden, dtype=dtype, seed=1)
    want = backends.get("numpy").predict_onehot(m, Xd, np.arange(3), R)
    for threads in (1, 2):
        got = backends.get("numba").predict_onehot(m, Xd, np.arange(3), R, threads)
        assert relative_error(want, got) <= TOLERANCES[dtype]


def test_logits_and_a_table_of_one_hot_blocks_only():
    columns = [COLUMNS[1], COLUMNS[4]]
    split = InputSplit(columns)
    assert split.dense.size == 0
    U = raw_inputs(300)[:, [1, 4]]
    m = MLP(7, (6,), dtype="float64", seed=0)
    F = features_from_inputs(columns, U)[0]
    z = predict_inputs(m, split, U, output="identity")
    p = m.predict_proba(F)
    assert relative_error(1 / (1 + np.exp(-z)), p) <= TOLERANCES["float64"]


def test_not_finite_and_out_of_range():
    split = InputSplit(COLUMNS)
    m = MLP(16, (4,), dtype="float64", seed=0)
    U = raw_inputs(3_000)
    Xd, R = split.split(U)
    nb = backends.get("numba")
    for row in (0, 2_999):
        bad = Xd.copy()
        bad[row, 1] = np.inf
        assert nb.predict_onehot(m, bad, split.dense, R) is None
        assert backends.get("numpy").predict_onehot(m, bad, split.dense, R) is None
    R_bad = R.copy()
    R_bad[1_500, 0] = 16
    with pytest.raises(ValueError, match="out of range"):
        nb.predict_onehot(m, Xd, split.dense, R_bad)
    with pytest.raises(ValueError, match="out of range"):
        backends.onehot_matrix(Xd, split.dense, R_bad, 16)
    U[5, 2] = -1.0  # negative in a log1p column: NaN feature, the caller's error path
    assert predict_inputs(m, split, U) is None


def test_predictor_takes_the_one_hot_path_beyond_a_few_rows(tmp_path, monkeypatch):
    """``Predictor.predict_proba`` scores a table through the one-hot path (the same numbers
    as the network on the feature matrix, to rounding) and a few rows (online scoring)
    through the network's own few-row path (the same bits)."""
    import copy

    import pandas as pd

    from nn_core import load_model, modeldir, save_model
    from nn_core.onehot import FEW_ROWS
    from nn_core.preprocessing import Preprocessing

    m = MLP(16, (5,), dtype="float64", seed=0)
    save_model(tmp_path, m, Preprocessing(copy.deepcopy(COLUMNS)))
    model = load_model(tmp_path)
    rng = np.random.default_rng(4)
    n = 40
    frame = pd.DataFrame({"a": rng.normal(size=n).round(3).astype(str),
                          "c1": rng.choice(["x", "y", "z", "new"], n),
                          "b": rng.exponential(size=n).round(3).astype(str),
                          "c2": rng.choice(["p", "q", ""], n),
                          "c3": rng.choice(["u", "v"], n)})
    calls = []
    real = modeldir.predict_inputs
    monkeypatch.setattr(modeldir, "predict_inputs", lambda *a: calls.append(1) or real(*a))
    X = model.features(frame)
    p = model.predict_proba(frame)
    assert calls and relative_error(m.predict_proba(X), p) <= TOLERANCES["float64"]
    few = model.predict_proba(frame.iloc[:FEW_ROWS])
    assert len(calls) == 1
    np.testing.assert_array_equal(few, m.predict_proba(X[:FEW_ROWS]))
