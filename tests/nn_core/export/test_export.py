"""nn_core.export: the exported predictors reproduce predict.py from raw inputs.

One small UCI model (16-8 ReLU, 4 epochs) is trained once per module; every target is
exported once and checked against the reference pipeline (the model directory's
preprocessing then the network, i.e. what predict.py computes) on every row of the bundled
CSV. Models with the other activations of ``nn_core.activations.ACTIVATIONS`` (SiLU and GELU
on the UCI rows, every one on synthetic data) go through all four targets as well.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from export_helpers import (
    REPO,
    STRICT_FLAGS,
    UCI_CSV,
    build_harness,
    c_arrays,
    export_cli,
    import_file,
    reference_predict,
    run_harness,
    train_uci_model,
    uci_case,
    unseen_and_extreme_rows,
)

from nn_core import export as ex
from nn_core.activations import ACTIVATIONS
from nn_core.metrics import roc_auc

NAMES = {"c": "pp_f32", "c-int8": "pp_i8", "python": "pp_np", "python-pure": "pp_pure"}


@pytest.fixture(scope="module")
def uci(tmp_path_factory):
    """Model dir, the full table, test rows, reference predictions and the raw input rows."""
    root = tmp_path_factory.mktemp("export")
    case = uci_case(root)
    out = root / "out"
    for fmt, name in NAMES.items():
        ex.write_all(out, ex.export(case["model"], fmt, name)[0])
    return {**case, "out": out, "ref": reference_predict(case["dir"], case["df"])}


NO_GCC = "gcc is not installed (Debian: apt-get install gcc); the C targets cannot be built"


@pytest.fixture(scope="module")
def binaries(uci):
    """gcc-built harnesses of the float32 and int8 predictors (empty without gcc)."""
    if shutil.which("gcc") is None:
        return {}
    return {fmt: build_harness(uci["out"], NAMES[fmt]) for fmt in ("c", "c-int8")}


def _run_c(binaries, fmt, X):
    if fmt not in binaries:
        pytest.skip(NO_GCC)
    return run_harness(binaries[fmt], X)


@pytest.fixture(scope="module")
def predictors(uci, binaries):
    """Callables X (n, n_inputs) -> predictions (n,) for every target."""
    np_mod = import_file(uci["out"] / "pp_np.py", "pp_np")
    pure = import_file(uci["out"] / "pp_pure.py", "pp_pure")
    return {
        "c": lambda X: _run_c(binaries, "c", X),
        "c-int8": lambda X: _run_c(binaries, "c-int8", X),
        "python": np_mod.predict_proba,
        "python-pure": lambda X: np.array(pure.predict_proba(X.tolist())),
    }


# --------------------------------------------------------------------------- C builds


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("fmt", ["c", "c-int8"])
def test_c_compiles_with_strict_warnings(uci, cc, fmt):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed (Debian: apt-get install {cc})")
    name = NAMES[fmt]
    obj = uci["out"] / f"{name}_{cc}.o"
    build = subprocess.run([cc, *STRICT_FLAGS, "-O2", "-c", str(uci["out"] / f"{name}.c"),
                            "-o", str(obj)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    source = (uci["out"] / f"{name}.c").read_text() + (uci["out"] / f"{name}.h").read_text()
    includes = {line.split()[1] for line in source.splitlines() if line.startswith("#include")}
    assert includes == {"<math.h>", f'"{name}.h"'}
    assert "malloc(" not in source
    assert not re.findall(r"^static (?!const )[^(]*[;=]", source, flags=re.M)  # no mutable state


def test_c_weights_are_printed_exactly(uci):
    """Every array literal parses back (Python and the C compiler) to the exported bits."""
    if shutil.which("gcc") is None:
        pytest.skip(NO_GCC)
    model = uci["model"]
    arrays = c_arrays((uci["out"] / "pp_f32.c").read_text())
    W0, b0 = ex.fold_first_layer(model)
    expected = {"pp_f32_W0": W0.ravel(), "pp_f32_B0": b0}
    for layer, (W, b) in enumerate(model.params[1:], start=1):
        expected[f"pp_f32_W{layer}"] = W.ravel()
        expected[f"pp_f32_B{layer}"] = b
    for key, value in expected.items():
        assert arrays[key].view(np.uint32).tolist() == value.view(np.uint32).tolist(), key
    # one-hot rows of layer 0 are the model's own rows, bit for bit
    onehot = [r for r in range(W0.shape[0]) if r not in {c.row for c in model.numeric}]
    W0_model = model.params[0][0]
    assert arrays["pp_f32_W0"].reshape(W0.shape)[onehot].tobytes() == W0_model[onehot].tobytes()
    # the compiler reads the same bits: dump every float with %a from a compiled program
    dump = uci["out"] / "dump.c"
    lines = ['#include <stdio.h>', '#include "pp_f32.c"', "int main(void)", "{", "    int i;"]
    for key, value in expected.items():
        lines.append(f'    for (i = 0; i < {value.size}; ++i) printf("%a\\n", (double){key}[i]);')
    lines += ["    return 0;", "}"]
    dump.write_text("\n".join(lines) + "\n")
    exe = uci["out"] / "dump"
    subprocess.run(["gcc", "-std=c99", "-I", str(uci["out"]), str(dump), "-o", str(exe), "-lm"],
                   check=True, capture_output=True)
    printed = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    bits = np.array([float.fromhex(t) for t in printed], dtype=np.float32).view(np.uint32)
    assert bits.tolist() == np.concatenate(list(expected.values())).view(np.uint32).tolist()


def test_int8_arrays_are_symmetric_per_channel(uci):
    model = uci["model"]
    arrays = c_arrays((uci["out"] / "pp_i8.c").read_text())
    for layer, (W, _) in enumerate(model.params):
        Q = arrays[f"pp_i8_Q{layer}"].reshape(W.shape)
        s = arrays[f"pp_i8_S{layer}"]
        assert np.abs(Q).max() == 127 and Q.min() >= -127
        assert np.all(np.abs(Q).max(axis=0) == 127)  # each channel uses its full range
        # dequantised weights are within half a step of the float weights
        assert np.all(np.abs(Q * s - W) <= 0.5 * s * (1 + 1e-6))


# --------------------------------------------------------------------------- agreement


def test_c_float32_matches_reference_on_every_row(uci, predictors):
    p = predictors["c"](uci["X"])
    assert p.shape == uci["ref"].shape
    assert np.max(np.abs(p - uci["ref"])) <= 1e-5


def test_numpy_predictor_matches_reference(uci, predictors):
    assert np.max(np.abs(predictors["python"](uci["X"]) - uci["ref"])) <= 1e-6


def test_pure_predictor_matches_reference(uci, predictors):
    rows = uci["test"][:1500]  # pure Python is slow: a subset of the rows
    p = predictors["python-pure"](uci["X"][rows])
    assert np.max(np.abs(p - uci["ref"][rows])) <= 1e-6


@pytest.mark.slow  # runs predict.py as a command
def test_targets_match_predict_py_cli(uci, predictors, tmp_path):
    """The bundled CSV through predict.py itself vs. every exported float target."""
    out = tmp_path / "scores.csv"
    res = subprocess.run([sys.executable, str(REPO / "predict.py"), "--model", str(uci["dir"]),
                          "--input", str(UCI_CSV), "--output", str(out)],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    scores = pd.read_csv(out).sort_values("row")["propensity"].to_numpy()
    assert len(scores) == len(uci["X"])
    assert np.max(np.abs(predictors["c"](uci["X"]) - scores)) <= 1e-5
    assert np.max(np.abs(predictors["python"](uci["X"]) - scores)) <= 1e-6
    rows = uci["test"][:300]
    assert np.max(np.abs(predictors["python-pure"](uci["X"][rows]) - scores[rows])) <= 1e-6


def test_int8_auc_close_to_float32_on_test_split(uci, predictors):
    test = uci["test"]
    y = uci["df"]["Revenue"].to_numpy()[test]
    p8 = predictors["c-int8"](uci["X"][test])
    auc32, auc8 = roc_auc(y, uci["ref"][test]), roc_auc(y, p8)
    assert abs(auc8 - auc32) <= 0.005, (auc32, auc8)
    # the NumPy model of the int8 scheme (used by --eval-csv) tracks the C code
    sim = ex.predict_int8(uci["model"], uci["X"][test])
    # (a value within float rounding of a quantisation step may round the other way: rare)
    assert np.mean(np.abs(sim - p8) <= 1e-6) >= 0.99 and np.max(np.abs(sim - p8)) <= 0.02


# --------------------------------------------------------------------------- documented edge cases


def _edge_rows(uci):
    """Raw rows with unseen/odd codes and extreme values, and the expected predictions."""
    model, df = uci["model"], uci["df"]
    base = df.iloc[uci["test"][:3]].reset_index(drop=True)
    X, frame = unseen_and_extreme_rows(model, base, (99.0, 2.5, -1.0, math.nan, math.inf, 1e30))
    expected = reference_predict(uci["dir"], frame)
    return X, expected


def _invalid_rows(uci):
    model = uci["model"]
    x0 = uci["X"][uci["test"][0]]
    rows = []
    for c in model.numeric:
        for value in (math.nan, math.inf, -math.inf) + ((-1e-3, -5.0) if c.log1p else ()):
            x = x0.copy()
            x[c.index] = value
            rows.append(x)
    return np.array(rows)


@pytest.mark.parametrize("fmt", list(NAMES))
def test_unseen_codes_and_extreme_values(uci, predictors, fmt):
    """Unseen codes act as an unseen text; 1e30 (1e30, 0, -0.5 where valid) as predict.py."""
    X, expected = _edge_rows(uci)
    p = predictors[fmt](X)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    tol = {"c": 1e-5, "c-int8": 0.05, "python": 1e-6, "python-pure": 1e-6}[fmt]
    assert np.max(np.abs(p - expected)) <= tol


@pytest.mark.parametrize("fmt", list(NAMES))
def test_invalid_numeric_values_give_nan(uci, predictors, fmt):
    """NaN, +-inf, and negatives in log1p columns (rows predict.py rejects) give NaN."""
    X = _invalid_rows(uci)
    assert np.all(np.isnan(predictors[fmt](X)))


def test_reference_rejects_what_exports_turn_into_nan(uci):
    """The NaN rule mirrors predict.py's errors: the preprocessing refuses these rows."""
    from nn_core import load_model

    pre = load_model(uci["dir"]).preprocessing
    log_col = next(c.name for c in uci["model"].numeric if c.log1p)
    for value in (math.nan, math.inf, -5.0):
        frame = uci["df"].iloc[:1].copy()
        frame[log_col] = value
        with pytest.raises(ValueError, match=log_col):
            pre.transform(frame)


# --------------------------------------------------------------------------- other activations

#: Activations of the table that the UCI fixture (ReLU) does not use, checked on real rows.
NEW_ACTIVATIONS = ("silu", "gelu")


@pytest.mark.parametrize("activation", NEW_ACTIVATIONS)
def test_other_activations_match_reference_on_uci_rows(tmp_path, activation):
    """A 16-8 SiLU or GELU model in every target: the same checks as the ReLU model's, on
    every row of the bundled CSV (pure Python on a subset); the C under the strict flags."""
    model_dir = tmp_path / "model"
    df, test = train_uci_model(model_dir, activation=activation)
    model, _ = ex.load_model_dir(model_dir)
    assert model.activation == activation
    out = tmp_path / "out"
    for fmt, name in NAMES.items():
        ex.write_all(out, ex.export(model, fmt, name)[0])
    X, ref = ex.encode_table(model, df), reference_predict(model_dir, df)
    np_mod = import_file(out / "pp_np.py", f"pp_np_{activation}")
    pure = import_file(out / "pp_pure.py", f"pp_pure_{activation}")
    assert np.max(np.abs(np_mod.predict_proba(X) - ref)) <= 1e-6
    rows = test[:300]
    assert np.max(np.abs(np.array(pure.predict_proba(X[rows].tolist())) - ref[rows])) <= 1e-6
    invalid = _invalid_rows({"model": model, "X": X, "test": test})
    assert np.all(np.isnan(np_mod.predict_proba(invalid)))
    assert all(math.isnan(p) for p in pure.predict_proba(invalid.tolist()))
    if shutil.which("gcc") is None:
        pytest.skip(NO_GCC)
    p32 = run_harness(build_harness(out, NAMES["c"]), X)
    assert np.max(np.abs(p32 - ref)) <= 1e-5
    exe8 = build_harness(out, NAMES["c-int8"])
    p8 = run_harness(exe8, X[test])
    y = df["Revenue"].to_numpy()[test]
    assert abs(roc_auc(y, p8) - roc_auc(y, ref[test])) <= 0.005
    sim = ex.predict_int8(model, X[test])
    assert np.mean(np.abs(sim - p8) <= 1e-6) >= 0.99 and np.max(np.abs(sim - p8)) <= 0.02
    assert np.all(np.isnan(run_harness(exe8, invalid)))


# --------------------------------------------------------------------------- other architectures

SYNTHETIC_CASES = [
    ((), "relu", "both", "float32"), ((5, 3), "tanh", "both", "float64"),
    ((4,), "leaky_relu", "both", "float32"), ((3,), "sigmoid", "both", "float32"),
    ((3, 2), "identity", "both", "float32"),
    ((5, 3), "silu", "both", "float32"), ((4,), "silu", "numeric", "float64"),
    ((5, 3), "gelu", "both", "float32"), ((4,), "gelu", "categorical", "float64"),
    ((), "relu", "categorical", "float32"), ((4,), "relu", "categorical", "float64"),
    ((), "relu", "numeric", "float32"), ((4,), "relu", "numeric", "float32"),
]


def test_synthetic_cases_cover_every_activation_of_the_table():
    """An activation added to nn_core.activations.ACTIVATIONS must be exported and tested."""
    assert {case[1] for case in SYNTHETIC_CASES if case[0]} == set(ACTIVATIONS)
    assert set(ex.SUPPORTED_ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize(("hidden", "activation", "columns", "dtype"), SYNTHETIC_CASES)
def test_small_synthetic_models_every_code_path(tmp_path, hidden, activation, columns, dtype):
    """Logistic regression and every activation of the table; codes by table search (wide
    integer range) and by lookup table (gaps); a numeric column with negative values (no
    log1p); models without numeric or without categorical inputs (the C must still build
    warning-free); float64 networks (C runs them in float32, Python in float64)."""
    from features.tabular import Preprocessor
    from nn_core import MLP, save_model

    if shutil.which("gcc") is None:
        pytest.skip(NO_GCC)
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame({
        "signed": rng.normal(size=n),
        "count": rng.poisson(3.0, size=n).astype(float),
        "wide": rng.choice(["-3", "5", "1000"], size=n),
        "gappy": rng.choice(["1", "2", "4", "9"], size=n),
        "label": rng.choice(["a", "b"], size=n),
    })
    y = rng.integers(0, 2, size=n)
    num_cols = ["signed", "count"] if columns != "categorical" else []
    cat_cols = ["wide", "gappy", "label"] if columns != "numeric" else []
    pre = Preprocessor(num_cols, cat_cols).fit(df)
    X = pre.transform(df)
    m = MLP(X.shape[1], hidden=hidden, activation=activation, dtype=dtype, seed=3,
            backend="numpy")
    m.fit(X, y, epochs=2, batch_size=32, lr=1e-2)
    save_model(tmp_path / "m", m, pre)
    model, _ = ex.load_model_dir(tmp_path / "m")
    files, _ = ex.export(model, "c", "syn")
    frame = df.copy()
    Xraw = ex.encode_table(model, df)
    if cat_cols:
        assert {c.name: c.code_scheme for c in model.categorical} == {
            "wide": "value", "gappy": "value", "label": "index"}
        assert "syn_code_search(" in files["syn.c"] and "syn_code_lut(" in files["syn.c"]
        wide = next(c.index for c in model.inputs if c.name == "wide")
        Xraw[:5, wide] = [7.0, 1000.5, np.nan, -4.0, 1e9]  # unseen codes of "wide"
        frame.loc[:4, "wide"] = "unseen"
    ex.write_all(tmp_path / "out", files)
    exe = build_harness(tmp_path / "out", "syn")
    ref = m.predict_proba(pre.transform(frame))
    assert np.max(np.abs(run_harness(exe, Xraw) - ref)) <= 1e-5
    files8, _ = ex.export(model, "c-int8", "syn8")
    ex.write_all(tmp_path / "out", files8)
    p8 = run_harness(build_harness(tmp_path / "out", "syn8"), Xraw)
    assert np.max(np.abs(p8 - ex.predict_int8(model, Xraw))) <= 1e-3
    for fmt in ("python", "python-pure"):
        fname = f"syn_{fmt.replace('-', '_')}"
        ex.write_all(tmp_path / "out", ex.export(model, fmt, fname)[0])
        mod = import_file(tmp_path / "out" / f"{fname}.py", fname)
        assert np.max(np.abs(np.asarray(mod.predict_proba(Xraw.tolist())) - ref)) <= 1e-6


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow  # runs the export as a command
def test_cli_writes_files_and_size_report(uci, tmp_path):
    out = tmp_path / "o"
    test_csv = tmp_path / "test.csv"
    raw = pd.read_csv(UCI_CSV, dtype=str, keep_default_na=False)
    raw.iloc[uci["test"]].to_csv(test_csv, index=False)
    res = export_cli("--model", uci["dir"], "--format", "c-int8", "--output", out, "--eval-csv",
                     test_csv)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model_int8.c", "model_int8.h",
                                                     "model_int8.json"]
    doc = json.loads((out / "model_int8.json").read_text())
    names = [i["name"] for i in doc["inputs"]]
    assert names == [c.name for c in uci["model"].inputs]
    month = next(i for i in doc["inputs"] if i["name"] == "Month")
    assert month["code_scheme"] == "index" and "unseen" in month["unseen"]
    assert month["values"] == uci["model"].inputs[names.index("Month")].categories
    size = doc["size"]
    assert size["parameters"] == sum(W.size + b.size for W, b in uci["model"].params)
    assert size["weight_bytes"] < 0.4 * size["float32_weight_bytes"]
    assert f"weight bytes:     {size['weight_bytes']}" in res.stdout
    assert "ROC-AUC on" in res.stdout and abs(size["accuracy"]["int8"]
                                               - size["accuracy"]["float32"]) <= 0.005
    if shutil.which("arm-none-eabi-gcc"):
        assert size["arm_cortex_m4"]["text"] > size["weight_bytes"]
        assert ".text" in res.stdout
    header = (out / "model_int8.h").read_text()
    for c in uci["model"].inputs:  # the header's comment table lists every input in order
        assert f"x[{c.index:<2d}] {c.name}" in header


@pytest.mark.slow  # runs the export as a command
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing_dir", "model directory not found"),
        ("no_preprocess", "preprocess.json"),
        ("bad_model_json", "model.json"),
        ("feature_mismatch", "preprocess.json builds"),
        ("bad_name", "--name"),
    ],
)
def test_cli_bad_model_dir_clear_error_no_output(uci, tmp_path, damage, message):
    model_dir = tmp_path / "m"
    shutil.copytree(uci["dir"], model_dir)
    name = "ok_name"
    if damage == "missing_dir":
        shutil.rmtree(model_dir)
    elif damage == "no_preprocess":
        (model_dir / "preprocess.json").unlink()
    elif damage == "bad_model_json":
        (model_dir / "model.json").write_text("{not json")
    elif damage == "feature_mismatch":
        doc = json.loads((model_dir / "preprocess.json").read_text())
        doc["columns"] = doc["columns"][:-1]
        (model_dir / "preprocess.json").write_text(json.dumps(doc))
    else:
        name = "1bad-name"
    out = tmp_path / "out"
    res = export_cli("--model", model_dir, "--format", "c", "--output", out, "--name", name)
    assert res.returncode != 0
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


@pytest.mark.slow  # runs the export as a command
def test_existing_output_untouched_on_error(uci, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.c").write_text("old")
    res = export_cli("--model", tmp_path / "nowhere", "--format", "c", "--output", out)
    assert res.returncode == 1 and "not found" in res.stderr
    assert [p.name for p in out.iterdir()] == ["model.c"]
    assert (out / "model.c").read_text() == "old"
