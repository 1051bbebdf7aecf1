"""Every export format of a model trained with a numeric encoding (piecewise-linear:
``--numeric-encoding ple``, ``standard+ple``; Gaussian rank: ``quantile``, and the union
``standard+quantile+ple``) computes the encoding from the raw inputs and predicts what
predict.py predicts.

Four small UCI models: ``ple`` and ``quantile`` (the encoding replaces the standardised
value), ``standard+ple`` and ``standard+quantile+ple`` (beside it, with imputation of a
blanked log1p column, so that the imputed value is encoded too). The float targets (C
float32, NumPy, pure Python, ONNX) are held to ``Predictor.predict_proba`` on the bundled
rows (in most ranked columns many of them exactly at the first knot, 0, where the rank's
end rule gives Phi^-1(1e-7)) and on rows with values outside the training range and exactly
on the bin edges and the rank's knots; the int8 targets to their NumPy models and to the
float ROC-AUC; the C size report counts the edge, knot and end tables; on the emulated
Cortex-M4F (slow, skipped without the ARM toolchain) the float32 C and the integer-only
int8 C run the encodings on the device.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from export_helpers import UCI_CSV, build_harness, c_arrays, import_file, run_harness

from nn_core import export as ex
from nn_core.export.c import _lookup_bytes
from nn_core.export.int8 import calibrate, predict_int8_full
from nn_core.metrics import roc_auc
from nn_core.preprocessing import block_width, part_slices

pytestmark = pytest.mark.slow  # trains four models and compiles their predictors (about 20 s)

NAMES = {"c": "ple_f32", "c-int8": "ple_i8", "c-int8-full": "ple_full", "python": "ple_np",
         "python-pure": "ple_pure", "onnx": "ple_onnx"}


@pytest.fixture(scope="module", params=["ple", "standard+ple", "quantile",
                                        "standard+quantile+ple"])
def case(request, tmp_path_factory):
    """Model directory, ExportModel, MLP, the table, raw vectors, references, exports."""
    from features.tabular import UCI_CATEGORICAL, UCI_NUMERIC, Preprocessor, Schema, read_table
    from nn_core import MLP, load_model, save_model

    encoding = request.param
    root = tmp_path_factory.mktemp(encoding.replace("+", "_"))
    cells = pd.read_csv(UCI_CSV, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(1)
    n = len(cells)
    train = np.sort(rng.permutation(n)[: int(0.65 * n)])
    impute = encoding.startswith("standard+")
    if impute:
        cells.loc[rng.choice(n, n // 20, replace=False), "PageValues"] = ""
    path = root / "table.csv"
    cells.to_csv(path, index=False)
    df, _ = read_table(path, Schema.uci(), "impute" if impute else "error")
    pre = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue", impute=impute,
                       numeric_encoding=encoding, ple_bins=6, rank_knots=200).fit(df.iloc[train])
    X = pre.transform(df)
    m = MLP(X.shape[1], hidden=(12, 6), seed=0, backend="numpy")
    m.fit(X[train], df["Revenue"].to_numpy()[train], epochs=3, batch_size=64, lr=3e-3)
    save_model(root / "model", m, pre)
    model, mlp = ex.load_model_dir(root / "model")
    Xraw = ex.encode_table(model, df)
    out = root / "out"
    sizes = {}
    for fmt, name in NAMES.items():
        if fmt == "onnx" and not _has_onnx():
            continue
        files, sizes[fmt] = ex.export(model, fmt, name, calibration=Xraw[train])
        ex.write_all(out, files)
    return {"encoding": encoding, "model": model, "mlp": mlp, "df": df, "X": Xraw,
            "train": train, "test": np.setdiff1d(np.arange(n), train), "out": out,
            "sizes": sizes, "ref": load_model(root / "model").predict_proba(df), "binaries": {}}


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _predict(case, fmt, X):
    if fmt.startswith("c"):
        if shutil.which("gcc") is None:
            pytest.skip("gcc is not installed; the C targets cannot be built")
        if fmt not in case["binaries"]:  # compiled once per model and format
            case["binaries"][fmt] = build_harness(case["out"], NAMES[fmt])
        return run_harness(case["binaries"][fmt], X)
    if fmt == "onnx":
        if not _has_onnx():
            pytest.skip("onnx or onnxruntime is not installed (pip install '.[onnx]')")
        import onnxruntime as ort

        session = ort.InferenceSession(str(case["out"] / f"{NAMES[fmt]}.onnx"),
                                       providers=["CPUExecutionProvider"])
        return session.run(["p"], {"x": X.astype(np.float32)})[0].astype(np.float64)
    module = _module(case, fmt)
    return np.asarray(module.predict_proba(X.tolist() if fmt == "python-pure" else X))


def _module(case, fmt):
    """The one-file Python predictor ``fmt`` of the case, imported."""
    return import_file(case["out"] / f"{NAMES[fmt]}.py",
                       NAMES[fmt] + case["encoding"].replace("+", "_"))


def _extreme_rows(case) -> np.ndarray:
    """Rows with each encoded input set, in turn, to every edge or knot, to the middle of
    every bin or segment, below the first (where the column allows it) and far beyond the
    last."""
    model, X = case["model"], case["X"]
    base = X[case["test"][0]]
    rows = []
    for c in model.numeric:
        b = np.unique(np.r_[c.edges or [], (c.knots or [])[::7], (c.knots or [])[-1:]])
        if len(b) == 0:
            continue
        values = [*b, *(b[:-1] + b[1:]) / 2, b[-1] * 10 + 1, b[-1] + 1e6]
        if not c.log1p:
            values.append(b[0] - 1.0)
        for v in values:
            x = base.copy()
            x[c.index] = v
            rows.append(x)
    return np.array(rows)


def test_the_model_carries_the_encoding(case):
    model, encoding = case["model"], case["encoding"]
    assert (len(model.encoded) >= 8) == encoding.endswith("ple")
    assert len(model.ranked) == (len(model.numeric) if "quantile" in encoding else 0)
    assert all(c.value == encoding.startswith("standard") for c in model.encoded + model.ranked)
    assert model.params[0][0].shape[0] == sum(
        c.value + (c.knots is not None) + c.n_bins + (c.missing_row is not None)
        if c.kind == "numeric" else len(c.codes) + 1 + (c.missing_row is not None)
        for c in model.inputs)
    inputs = {row["name"]: row for row in json.loads((case["out"] / "ple_f32.json")
                                                     .read_text())["inputs"]}
    page = next(c for c in model.numeric if c.name == "PageValues")
    assert inputs["PageValues"].get("edges") == page.edges
    assert inputs["PageValues"].get("knots") == page.knots
    assert inputs["PageValues"].get("scores") == page.scores
    assert inputs["PageValues"].get("ends") == page.ends
    if model.ranked:  # the rows that catch a missed end rule: many exactly at q_1 (zeros)
        at_first = {c.name: np.mean(case["X"][:, c.index] == c.knots[0]) for c in model.ranked}
        assert sum(share >= 0.4 for share in at_first.values()) >= 5, at_first
        F = ex.features_from_codes(model, case["X"])
        for c in model.ranked:
            lo, hi = c.ends
            assert lo < -5.19 and hi > 5.19 and lo <= c.scores[0] and hi >= c.scores[-1]
            np.testing.assert_array_equal(F[case["X"][:, c.index] == c.knots[0], c.rank_row], lo)
            np.testing.assert_array_equal(F[case["X"][:, c.index] == c.knots[-1], c.rank_row],
                                          hi)


@pytest.mark.parametrize("fmt", ["python", "python-pure"])
def test_python_predictors_take_the_block_layout_as_data(case, fmt):
    """Each numeric input of INPUTS carries the features of its Gaussian rank and first bin
    (``rank_row``, ``ple_row``, where it has that encoding), those of the block's one
    layout (``part_slices``); the code reads them and works out no offset of its own."""
    model = case["model"]
    module = _module(case, fmt)
    start = 0
    for entry, column in zip(module.INPUTS, model.columns, strict=True):
        parts = part_slices(column, start)
        start += block_width(column)
        if column["kind"] == "numeric":
            assert entry.get("rank_row") == (parts["rank"].start if "rank" in parts else None)
            assert entry.get("ple_row") == (parts["ple"].start if "ple" in parts else None)
            assert entry["value"] == ("value" in parts)
        assert module._ROWS[entry["index"]] == min(s.start for s in parts.values())
    text = (case["out"] / f"{NAMES[fmt]}.py").read_text()
    assert 'c["rank_row"]' in text if model.ranked else 'rank_row' not in text
    assert 'c["ple_row"]' in text if model.encoded else 'ple_row' not in text
    assert 'row + c["value"]' not in text and '("knots" in c)' not in text


def test_numpy_predictor_places_every_feature_as_the_preprocessing(case):
    """The NumPy predictor's feature matrix is the preprocessing's
    (``features_from_codes``), feature by feature, on the bundled rows and on the edges,
    knots and values beyond them."""
    module = _module(case, "python")
    for X in (case["X"], _extreme_rows(case)):
        F, invalid = module.features(X)
        ref = ex.features_from_codes(case["model"], X)
        np.testing.assert_array_equal(invalid, np.isnan(ref).all(axis=1))
        np.testing.assert_allclose(F[~invalid], ref[~invalid], rtol=0, atol=1e-12)


@pytest.mark.parametrize("fmt", ["c", "python", "python-pure", "onnx"])
def test_float_targets_match_predict_on_every_row(case, fmt):
    rows = np.arange(len(case["df"])) if fmt != "python-pure" else case["test"][:600]
    p = _predict(case, fmt, case["X"][rows])
    tol = 1e-6 if fmt.startswith("python") else 1e-5
    assert np.max(np.abs(p - case["ref"][rows])) <= tol


@pytest.mark.parametrize("fmt", ["c", "python", "python-pure", "onnx"])
def test_float_targets_on_edges_and_outside_the_training_range(case, fmt):
    X = _extreme_rows(case)
    ref = case["mlp"].predict_proba(ex.features_from_codes(case["model"], X))
    assert np.all(np.isfinite(ref))
    p = _predict(case, fmt, X)
    tol = 1e-6 if fmt.startswith("python") else 1e-5
    assert np.max(np.abs(p - ref)) <= tol


def test_c_int8_matches_its_numpy_model_and_keeps_the_auc(case):
    X, test = case["X"], case["test"]
    p8 = _predict(case, "c-int8", X[test])
    sim = ex.predict_int8(case["model"], X[test])
    assert np.mean(np.abs(sim - p8) <= 1e-6) >= 0.99 and np.max(np.abs(sim - p8)) <= 0.02
    y = case["df"]["Revenue"].to_numpy()[test]
    assert abs(roc_auc(y, p8) - roc_auc(y, case["ref"][test])) <= 0.005
    extreme = _extreme_rows(case)
    assert np.max(np.abs(_predict(case, "c-int8", extreme)
                         - ex.predict_int8(case["model"], extreme))) <= 0.02


def test_c_int8_full_equals_its_numpy_model_and_keeps_the_auc(case):
    X, test = case["X"], case["test"]
    p = _predict(case, "c-int8-full", X[test])
    net = calibrate(case["model"], X[case["train"]])  # as the export calibrated it
    sim = predict_int8_full(case["model"], net, X[test])
    assert np.mean(np.abs(p - sim) <= 1e-9) >= 0.99
    y = case["df"]["Revenue"].to_numpy()[test]
    assert abs(roc_auc(y, p) - roc_auc(y, case["ref"][test])) <= 0.005


def test_size_report_counts_the_edge_and_knot_tables(case):
    """Each encoded input adds its edges b_0..b_{T-1} and reciprocal widths (2 T float32),
    each ranked input its knots, scores and ends (2 m + 2 float32) to the C predictors' read-only
    data, and the report counts them."""
    model = case["model"]
    source = (case["out"] / "ple_f32.c").read_text()
    arrays = c_arrays(source)
    for c in model.encoded:
        b = np.asarray(c.edges)
        np.testing.assert_array_equal(arrays[f"ple_f32_E{c.index}"], b[:-1].astype(np.float32))
        np.testing.assert_array_equal(arrays[f"ple_f32_R{c.index}"],
                                      (1 / np.diff(b)).astype(np.float32))
    for c in model.ranked:
        np.testing.assert_array_equal(arrays[f"ple_f32_RK{c.index}"],
                                      np.float32(c.knots))
        np.testing.assert_array_equal(arrays[f"ple_f32_RS{c.index}"],
                                      np.float32(c.scores))
        np.testing.assert_array_equal(arrays[f"ple_f32_RE{c.index}"], np.float32(c.ends))
    sizes = case["sizes"]["c"]
    tables = (sum(8 * c.n_bins for c in model.encoded)
              + sum(8 * c.n_knots + 8 for c in model.ranked))
    assert sizes["encoding_bytes"] == tables == model.encoding_bytes
    assert case["sizes"]["c-int8-full"]["encoding_bytes"] == tables
    assert sizes["weight_bytes"] == 4 * model.n_parameters + tables + _lookup_bytes(model)
    assert sizes["float32_weight_bytes" if "float32_weight_bytes" in sizes else
                 "weight_bytes"] >= tables
    assert case["sizes"]["c-int8"]["float32_weight_bytes"] == sizes["weight_bytes"]


@pytest.mark.parametrize("fmt", ["c", "c-int8-full"])  # cross-compiles and boots QEMU
def test_the_encoding_runs_on_the_device(case, fmt, tmp_path):
    """On the emulated Cortex-M4F: the float32 C within 1e-5 of predict.py, the
    integer-only int8 C equal to its NumPy model, on held-out vectors and extreme rows."""
    from device_harness import build, missing_tools, run

    reason = missing_tools()
    if reason is not None:
        pytest.skip(f"device harness: {reason}")
    X = np.vstack([case["X"][case["test"][:60]], _extreme_rows(case)[::3]])
    ref = case["mlp"].predict_proba(ex.features_from_codes(case["model"], X))
    name = ex.DEFAULT_NAMES[fmt]
    files, _ = ex.export(case["model"], fmt, name, calibration=case["X"][case["train"]],
                         vectors=(X, ref))
    ex.write_all(tmp_path, files)
    result = run(build(tmp_path, name, "cortex-m4f")["harness"], "cortex-m4f")
    if fmt == "c":
        assert np.max(np.abs(result.p - ref)) <= 1e-5
    else:
        expected = c_arrays(files[f"{name}_vectors.h"])[f"{name}_VEXP"]
        assert np.mean(result.p == expected) >= 0.98
        assert np.max(np.abs(result.p - expected)) <= 0.02


def test_c_int8_full_quantises_a_dead_unit(case):
    """A hidden unit whose weights L2 shrank to nothing beside its bias (seen in a
    PLE model: 1e-20 beside -0.03) gets a weight scale at which its bias fits the int32
    accumulator (it failed the export before); the other units are untouched."""
    import copy

    from nn_core.export.int8 import BIAS_LIMIT

    model = copy.deepcopy(case["model"])
    W, b = (a.copy() for a in model.params[0])
    W[:, 0], b[0] = 1e-20, -0.03
    model.params[0] = (W, b)
    calibration = case["X"][case["train"]]
    net = calibrate(model, calibration)
    assert np.abs(net.layers[0].bias[0]) <= BIAS_LIMIT * (1 + 1e-6)  # s rounded to float32
    assert not net.layers[0].Qt[0].any()  # its weights round to 0
    untouched = calibrate(case["model"], calibration)
    np.testing.assert_array_equal(net.layers[0].Qt[1:], untouched.layers[0].Qt[1:])
    X = case["X"][case["test"]]
    H = np.maximum(ex.features_from_codes(model, X) @ W + b, 0)
    for W_l, b_l in model.params[1:-1]:
        H = np.maximum(H @ W_l + b_l, 0)
    p_float = 1 / (1 + np.exp(-(H @ model.params[-1][0] + model.params[-1][1])[:, 0]))
    assert np.max(np.abs(predict_int8_full(model, net, X) - p_float)) <= 0.05


def test_rank_edge_cases_in_every_format(tmp_path):
    """Hand-made Gaussian ranks that the UCI models lack: one knot (a constant), two knots
    (no search) and two float64 knots that round to one float32 (the C search must not
    divide by their zero width); the grid holds every outer knot exactly (the end rule) and
    values just inside and beyond them. Logistic output ``sigma(g_a + g_b + g_c)``: the C
    and ONNX targets equal the float32 model ``gaussian_rank32``, the Python ones the
    definition."""
    from nn_core.export.model import ExportModel, build_inputs, gaussian_rank32
    from nn_core.preprocessing import gaussian_rank

    ranks = {"a": ([2.0], [0.7], [0.7, 0.7]), "b": ([0.0, 10.0], [-1.0, 2.0], [-5.0, 4.0]),
             "c": ([0.0, 1.0, 1.0 + 1e-12, 2.0, 3.0], [-2.0, -1.0, 0.0, 1.0, 2.0],
                   [-3.0, 3.5])}
    columns = [{"name": n, "kind": "numeric", "log1p": False, "mean": 0.0, "std": 1.0,
                "encoding": {"kind": "gaussian_rank", "value": False, "knots": q, "scores": s,
                             "ends": e}}
               for n, (q, s, e) in ranks.items()]
    inputs = build_inputs(columns, 3, "preprocess.json")
    model = ExportModel(inputs, [(np.ones((3, 1)), np.zeros(1))], "relu", "sigmoid",
                        dtype="float64")
    grid = np.r_[-1e6, -1.0, -1e-30, 0.0, 1e-6, 0.5, 1.0, 1.0 + 1e-7, 1.5, 2.0, 2.5, 2.9999,
                 3.0, 9.99, 10.0, 11.0, 1e30]
    X = np.stack(np.meshgrid(grid, grid, grid), axis=-1).reshape(-1, 3)
    X32 = X.astype(np.float32).astype(np.float64)  # what the C harness reads (scanf %f)

    def sigma(G):
        return 1 / (1 + np.exp(-G.sum(axis=1)))

    exact = sigma(np.column_stack([gaussian_rank(X[:, i], *ranks[n])
                                   for i, n in enumerate(ranks)]))
    as_float32 = sigma(np.column_stack([gaussian_rank32(X32[:, i], *ranks[n]).astype(float)
                                        for i, n in enumerate(ranks)]))
    assert np.max(np.abs(as_float32 - exact)) > 0.1  # x = 1: the collision moves g by 1
    without_ends = sigma(np.column_stack([gaussian_rank(X[:, i], q, s, [s[0], s[-1]])
                                          for i, (q, s, _) in enumerate(ranks.values())]))
    assert np.mean(np.abs(without_ends - exact) > 0.01) > 0.3  # the end rule matters here
    names = {"c": "rk_f32", "c-int8": "rk_i8", "c-int8-full": "rk_full", "python": "rk_np",
             "python-pure": "rk_pure", "onnx": "rk_onnx"}
    for fmt, name in names.items():
        if fmt == "onnx" and not _has_onnx():
            continue
        ex.write_all(tmp_path, ex.export(model, fmt, name, calibration=X)[0])
    module = import_file(tmp_path / "rk_np.py", "rk_np_edge")
    assert np.max(np.abs(module.predict_proba(X) - exact)) <= 1e-12
    module = import_file(tmp_path / "rk_pure.py", "rk_pure_edge")
    assert np.max(np.abs(np.array(module.predict_proba(X.tolist())) - exact)) <= 1e-12
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed; the C targets cannot be built")
    p = run_harness(build_harness(tmp_path, "rk_f32"), X)
    assert np.max(np.abs(p - as_float32)) <= 1e-6
    p8 = run_harness(build_harness(tmp_path, "rk_i8"), X)
    assert np.max(np.abs(p8 - ex.predict_int8(model, X32))) <= 1e-6
    full = run_harness(build_harness(tmp_path, "rk_full"), X)
    sim = predict_int8_full(model, calibrate(model, X), X32)
    assert np.max(np.abs(full - sim)) <= 1e-9  # the same multiples of 2^-15 (9 digits printed)
    if _has_onnx():
        import onnxruntime as ort

        session = ort.InferenceSession(str(tmp_path / "rk_onnx.onnx"),
                                       providers=["CPUExecutionProvider"])
        p = session.run(["p"], {"x": X.astype(np.float32)})[0]
        assert np.max(np.abs(p - as_float32)) <= 1e-6
