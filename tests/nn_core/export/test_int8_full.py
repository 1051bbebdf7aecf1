"""c-int8-full: the integer-only int8 predictor, its NumPy model and its fixed-point maths.

The 16-8 ReLU UCI model of the export tests is quantised with its training rows as the
calibration set; the compiled C (gcc, x86-64) must equal the NumPy model
``nn_core.export.int8.predict_int8_full`` on every row of the bundled CSV, and keep the
held-out ROC-AUC within 0.002 of float32. The same on the device: test_device.py.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from export_helpers import (
    STRICT_FLAGS,
    UCI_CSV,
    build_harness,
    export_cli,
    reference_predict,
    run_harness,
    uci_case,
)

from nn_core import export as ex
from nn_core.activations import ACTIVATIONS
from nn_core.export import int8
from nn_core.metrics import roc_auc

NO_GCC = "gcc is not installed (Debian: apt-get install gcc); the C targets cannot be built"


@pytest.fixture(scope="module")
def uci(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8full")
    case = uci_case(root)
    calibration = case["X"][case["train"]]
    files, report = ex.export(case["model"], "c-int8-full", "pp_full", calibration=calibration)
    ex.write_all(root / "out", files)
    return {**case, "out": root / "out", "files": files, "report": report,
            "net": int8.calibrate(case["model"], calibration)}


# --------------------------------------------------------------------------- fixed point


def test_fixed_point_multiplier_represents_the_real_one():
    M = np.array([0.999999, 0.5, 0.3, 1e-3, 2.0**-20, 7.3e-9, 1.0, 3.7, 1000.0])
    m, r = int8.fixed_point_multiplier(M)
    assert np.all((m >= 2**30) & (m < 2**31)) and np.all((r >= 1) & (r <= 62))
    assert np.all(np.abs(m * 2.0 ** -r.astype(float) / M - 1) <= 2.0**-31)
    for bad in (2.0**30, 0.0, 2.0**-40, math.inf):
        with pytest.raises(ex.ExportError, match="multiplier"):
            int8.fixed_point_multiplier(np.array([bad]))


def test_requantise_is_the_exact_product_rounded_half_up():
    """One rounding shift of the 64-bit product (the C code's) against exact rationals."""
    rng = np.random.default_rng(0)
    acc = rng.integers(-2**30, 2**30, size=400)
    m, r = int8.fixed_point_multiplier(rng.uniform(1e-6, 3.0, size=400))
    got = int8.requantise(acc, m, r)
    for a, mi, ri, g in zip(acc, m, r, got, strict=True):
        exact = Fraction(int(a) * int(mi), 2 ** int(ri))
        want = math.floor(exact + Fraction(1, 2))
        assert g == max(-int8.SATURATE, min(int8.SATURATE, want))
    assert int8.requantise(np.array([3, -3]), np.array([2**30, 2**30]),
                           np.array([32, 31])).tolist() == [1, -1]  # 0.75 -> 1, -1.5 -> -1


def test_sigmoid_table_tracks_the_sigmoid(uci):
    net = uci["net"]
    L = np.arange(-20 << int8.LOGIT_BITS, 20 << int8.LOGIT_BITS, 37)
    p = int8.sigmoid_q15(net, L) / 2.0**int8.PROB_BITS
    exact = 1 / (1 + np.exp(-L / 2.0**int8.LOGIT_BITS))
    assert np.max(np.abs(p - exact)) <= 2.5e-4  # interpolation (h^2/8 max|f''|) + rounding
    assert np.all(np.diff(p) >= 0)  # monotone: ranking is kept up to ties


# --------------------------------------------------------------------------- C = NumPy model


def test_c_compiles_strict_and_has_no_float_in_the_network(uci):
    if shutil.which("gcc") is None:
        pytest.skip(NO_GCC)
    source = uci["files"]["pp_full.c"]
    exe = build_harness(uci["out"], "pp_full")  # STRICT_FLAGS, -Werror
    assert exe.exists() and "-Werror" in STRICT_FLAGS
    # the network's runtime functions hold no float type or literal
    for helper in ("dot", "dot_rows", "requantise", "activate"):
        text = re.search(rf"static [\w ]+? pp_full_{helper}\(.*?\n}}\n", source, re.S).group(0)
        assert "float" not in text and not re.search(r"\d\.\d*f?\b", text), helper
    # the body: after the inputs' quantisation, integers only up to the final conversion
    body = source.split("/* layer 0 */", 1)[1]
    assert "float" not in body.split("return pp_full_probability", 1)[0]
    assert "log1pf" in source and "expf" not in source  # sigmoid by table, not libm


def test_c_equals_numpy_model_on_every_row(uci):
    if shutil.which("gcc") is None:
        pytest.skip(NO_GCC)
    p = run_harness(build_harness(uci["out"], "pp_full"), uci["X"])
    sim = int8.predict_int8_full(uci["model"], uci["net"], uci["X"].astype(np.float32))
    # printed with 9 digits: equal float32 values read back within 1e-9; a float rounding
    # tie in an input's quantisation may move one code (rare)
    assert np.mean(np.abs(p - sim) <= 1e-9) >= 0.999, np.mean(np.abs(p - sim) <= 1e-9)
    assert np.all(np.abs(p * 2**15 - np.round(p * 2**15)) <= 1e-4)  # multiples of 2^-15


def test_auc_within_0_002_of_float32_on_held_out_rows(uci):
    test = uci["test"]
    y = uci["df"]["Revenue"].to_numpy()[test]
    ref = reference_predict(uci["dir"], uci["df"].iloc[test])
    p = int8.predict_int8_full(uci["model"], uci["net"], uci["X"][test].astype(np.float32))
    assert abs(roc_auc(y, p) - roc_auc(y, ref)) <= 0.002, (roc_auc(y, p), roc_auc(y, ref))
    assert np.max(np.abs(p - ref)) <= 0.05


def test_invalid_and_unseen_inputs(uci):
    if shutil.which("gcc") is None:
        pytest.skip(NO_GCC)
    model, X = uci["model"], uci["X"][uci["test"][:2]]
    rows = []
    for c in model.numeric:
        for value in (math.nan, math.inf) + ((-1.0,) if c.log1p else ()):
            x = X[0].copy()
            x[c.index] = value
            rows.append(x)
    exe = build_harness(uci["out"], "pp_full")
    assert np.all(np.isnan(run_harness(exe, np.array(rows))))
    odd = []
    for c in model.categorical:  # unseen codes; extreme numerics clamp to the input range
        for value in (99.0, 2.5, math.nan):
            x = X[1].copy()
            x[c.index] = value
            odd.append(x)
    for c in model.numeric:
        x = X[1].copy()
        x[c.index] = 1e30
        odd.append(x)
    odd = np.array(odd)
    p = run_harness(exe, odd)
    assert np.all((p >= 0) & (p <= 1))
    sim = int8.predict_int8_full(model, uci["net"], odd.astype(np.float32))
    assert np.max(np.abs(p - sim)) <= 1e-9  # the same float32 (printed with 9 digits)


SYNTHETIC = [((), "relu", "sigmoid"), ((5, 3), "tanh", "sigmoid"), ((4,), "leaky_relu", "sigmoid"),
             ((3,), "sigmoid", "sigmoid"), ((3, 2), "identity", "identity"),
             ((5, 3), "silu", "sigmoid"), ((4,), "gelu", "sigmoid"), ((4, 4), "relu", "identity")]


def test_synthetic_cases_cover_every_activation():
    assert {a for h, a, _ in SYNTHETIC if h} == set(ACTIVATIONS)


@pytest.mark.parametrize(("hidden", "activation", "output"), SYNTHETIC)
def test_every_activation_and_output_c_equals_numpy(tmp_path, hidden, activation, output):
    """Activation tables, the identity output, no hidden layer; C = NumPy model, and the
    network stays close to the float one."""
    from features.tabular import Preprocessor
    from nn_core import MLP, save_model

    if shutil.which("gcc") is None:
        pytest.skip(NO_GCC)
    rng = np.random.default_rng(2)
    n = 300
    df = pd.DataFrame({"signed": rng.normal(size=n), "count": rng.poisson(3.0, n).astype(float),
                       "gappy": rng.choice(["1", "2", "4", "9"], size=n),
                       "label": rng.choice(["a", "b", "c"], size=n)})
    y = (df["signed"] + (df["label"] == "a") + rng.normal(size=n) > 0.5).astype(int).to_numpy()
    pre = Preprocessor(["signed", "count"], ["gappy", "label"]).fit(df)
    F = pre.transform(df)
    m = MLP(F.shape[1], hidden=hidden, activation=activation, output=output, seed=3,
            backend="numpy")
    m.fit(F, y, epochs=20, batch_size=32, lr=1e-2)
    save_model(tmp_path / "m", m, pre)
    model, _ = ex.load_model_dir(tmp_path / "m")
    X = ex.encode_table(model, df)
    files, report = ex.export(model, "c-int8-full", "syn", calibration=X)
    ex.write_all(tmp_path / "out", files)
    p = run_harness(build_harness(tmp_path / "out", "syn"), X)
    sim = int8.predict_int8_full(model, int8.calibrate(model, X), X.astype(np.float32))
    assert np.max(np.abs(p - sim) / np.maximum(1, np.abs(sim))) <= 1e-6
    ref = m.predict_proba(F)
    scale = max(1.0, float(np.abs(ref).max()))
    assert np.max(np.abs(sim - ref)) <= 0.06 * scale
    assert report["format"] == "c-int8-full" and report["ram_bytes"] > 0


# --------------------------------------------------------------------------- combined models


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    """A combined model on a synthetic table: a ReLU and a tanh network and a logistic
    regression (``hidden=()``), one weight negative, a bias, Platt calibration."""
    from features.tabular import Preprocessor
    from nn_core import MLP, save_model
    from nn_core.calibration import Platt
    from nn_core.ensemble import Ensemble

    rng = np.random.default_rng(5)
    n = 240
    df = pd.DataFrame({"signed": rng.normal(size=n), "count": rng.poisson(3.0, n).astype(float),
                       "label": rng.choice(["a", "b", "c"], size=n)})
    y = (df["signed"] + (df["label"] == "a") + rng.normal(size=n) > 0.5).astype(int).to_numpy()
    pre = Preprocessor(["signed", "count"], ["label"]).fit(df)
    F = pre.transform(df)
    nets = []
    for seed, hidden, activation in ((0, (5,), "relu"), (1, (4, 3), "tanh"), (2, (), "relu")):
        m = MLP(F.shape[1], hidden=hidden, activation=activation, seed=seed, backend="numpy")
        m.fit(F, y, epochs=2, batch_size=60, lr=2e-2)
        nets.append(m)
    d = save_model(tmp_path_factory.mktemp("comb") / "m",
                   Ensemble([(nets[0], 0.6), (nets[1], -0.3), (nets[2], 0.7)], bias=-0.25,
                            calibration=Platt(1.3, -0.4)), pre)
    model, _ = ex.load_model_dir(d)
    return {"dir": d, "df": df, "model": model, "X": ex.encode_table(model, df)}


def test_combined_c_equals_numpy_model_and_follows_the_float_model(combined, tmp_path):
    from nn_core import load_model

    if shutil.which("gcc") is None:
        pytest.skip(NO_GCC)
    model, X = combined["model"], combined["X"]
    files, report = ex.export(model, "c-int8-full", "comb", calibration=X)
    ex.write_all(tmp_path, files)
    source = files["comb.c"]
    for j in range(3):
        assert f"comb_M{j}Q0[" in source  # member j's own tables
    assert "comb_M2Q1" not in source  # the logistic regression has one layer
    body = source.split("sum = ", 1)[1].split("return comb_probability", 1)[0]
    assert "float" not in body  # integer only from the inputs' codes to the probability
    p = run_harness(build_harness(tmp_path, "comb"), X)
    sim = int8.predict_int8_full(model, int8.calibrate(model, X), X.astype(np.float32))
    assert np.max(np.abs(p - sim)) <= 1e-9
    ref = load_model(combined["dir"]).predict_proba(combined["df"])
    assert np.max(np.abs(sim - ref)) <= 0.03
    assert report["ram_bytes"] > 0


def test_platt_is_folded_into_the_member_weights_and_bias(combined):
    """sigma(a (c + sum_k w_k z_k) + b) quantises to the very integers of the uncalibrated
    model with weights a w_k and bias a c + b."""
    import dataclasses

    from nn_core.export.model import Member

    model, X = combined["model"], combined["X"]
    a, b = model.calibration["a"], model.calibration["b"]
    folded = dataclasses.replace(
        model, weight=a * model.weight, calibration=None, logit_bias=a * model.logit_bias + b,
        others=[Member(m.params, m.activation, a * m.weight) for m in model.others])
    net, ref = int8.calibrate(model, X), int8.calibrate(folded, X)
    assert net.logit_bias == ref.logit_bias == round((a * -0.25 + b) * 2**int8.LOGIT_BITS)
    for layers, ref_layers in zip(net.members, ref.members, strict=True):
        for L, R in zip(layers, ref_layers, strict=True):
            for field in ("Qt", "bias", "mult", "shift"):
                np.testing.assert_array_equal(getattr(L, field), getattr(R, field))
    last = net.members[1][-1]  # w_1 < 0: its int8 weights and bias are negated
    plain = int8.calibrate(dataclasses.replace(folded, weight=1.0, others=[], logit_bias=0.0,
                                               params=model.others[0].params), X)
    np.testing.assert_array_equal(last.Qt, -plain.layers[-1].Qt)


def test_a_member_of_weight_zero_is_refused(combined):
    import dataclasses

    with pytest.raises(ex.ExportError, match="member 0 has weight 0"):
        int8.calibrate(dataclasses.replace(combined["model"], weight=0.0), combined["X"])


def test_isotonic_table_tracks_the_calibrated_sigmoid(combined):
    """The output table of an isotonic calibration q: q(sigmoid(L 2^-12)) within the
    sigmoid table's error times q's steepest slope, plus the rounding."""
    import dataclasses

    model = combined["model"]
    cal = {"kind": "isotonic", "x": [0.0, 0.2, 0.5, 0.9, 1.0], "y": [0.0, 0.05, 0.3, 0.8, 1.0]}
    net = int8.calibrate(dataclasses.replace(model, calibration=cal), combined["X"])
    L = np.arange(-20 << int8.LOGIT_BITS, 20 << int8.LOGIT_BITS, 37)
    q = int8.calibrated_q15(net, L) / 2.0**int8.PROB_BITS
    exact = np.interp(1 / (1 + np.exp(-L / 2.0**int8.LOGIT_BITS)), cal["x"], cal["y"])
    slope = np.max(np.diff(cal["y"]) / np.diff(cal["x"]))
    # a kink of q at a breakpoint bends the table's chord by at most slope * sigma' * step / 4
    assert np.max(np.abs(q - exact)) <= slope * (2.5e-4 + 0.25 / 32) + 2**-15
    assert np.all(np.diff(q) >= 0)  # monotone: the ranking is kept up to ties


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow  # runs the export as commands
def test_cli_needs_calibration_and_writes_vectors(uci, tmp_path, capsys):
    raw = pd.read_csv(UCI_CSV, dtype=str, keep_default_na=False)
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    raw.iloc[uci["train"]].drop(columns="Revenue").to_csv(train_csv, index=False)
    raw.iloc[uci["test"]].to_csv(test_csv, index=False)
    out = tmp_path / "o"
    status = ex.main(["--model", str(uci["dir"]), "--format", "c-int8-full", "--output",
                      str(out)])
    err = capsys.readouterr().err
    assert status == 1 and "--calibration-csv" in err and not out.exists()
    assert len(err.strip().splitlines()) == 1
    res = export_cli("--model", uci["dir"], "--format", "c-int8-full", "--output", out,
                     "--calibration-csv", train_csv, "--eval-csv", test_csv,
                     "--test-vectors", "40")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["model_int8_full.c", "model_int8_full.h", "model_int8_full.json",
                     "model_int8_full_vectors.h"]
    doc = json.loads((out / "model_int8_full.json").read_text())
    acc = doc["size"]["accuracy"]
    assert abs(acc["int8"] - acc["float32"]) <= 0.002
    assert "integer only" in doc["quantisation"]
    # the CLI's calibration from the CSV text is the one of the in-process export
    assert (out / "model_int8_full.c").read_text() == uci["files"]["pp_full.c"].replace(
        "pp_full", "model_int8_full").replace("PP_FULL", "MODEL_INT8_FULL")


def test_test_vectors_header(uci, tmp_path, capsys):
    """The header's rows are the CSV's first rows as float32; VREF is predict.py's output
    and VEXP the format's; it compiles with the predictor and lists N vectors."""
    raw = pd.read_csv(UCI_CSV, dtype=str, keep_default_na=False)
    test_csv = tmp_path / "test.csv"
    raw.iloc[uci["test"]].to_csv(test_csv, index=False)
    out = tmp_path / "o"
    status = ex.main(["--model", str(uci["dir"]), "--format", "c", "--output", str(out),
                      "--eval-csv", str(test_csv), "--test-vectors", "25"])
    assert status == 0, capsys.readouterr().err
    text = (out / "model_vectors.h").read_text()
    assert "#define MODEL_N_VECTORS 25" in text
    from export_helpers import c_arrays

    arrays = c_arrays(text)
    ref = reference_predict(uci["dir"], uci["df"].iloc[uci["test"][:25]])
    assert np.max(np.abs(arrays["model_VREF"] - ref)) <= 1e-7
    assert np.array_equal(arrays["model_VREF"], arrays["model_VEXP"])
    rows = re.search(r"model_VX\[25\]\[MODEL_N_INPUTS\] = \{(.*?)\n\};", text, re.S).group(1)
    first = [float(v.rstrip("f")) if v not in ("NAN",) else math.nan
             for v in re.search(r"\{([^{}]*)\}", rows).group(1).split(", ")]
    x0 = uci["X"][uci["test"][0]].astype(np.float32)
    assert np.array_equal(np.float32(first), x0, equal_nan=True)
    for fmt, args, message in (
        ("c", ("--test-vectors", "5"), "--eval-csv"),
        ("c", ("--test-vectors", "0", "--eval-csv", test_csv), "at least 1"),
        ("python", ("--test-vectors", "5", "--eval-csv", test_csv), "C header"),
        ("c", ("--calibration-csv", test_csv), "c-int8-full only"),
    ):
        status = ex.main(["--model", str(uci["dir"]), "--format", fmt, "--output",
                          str(tmp_path / "x"), *map(str, args)])
        err = capsys.readouterr().err
        assert status == 1 and message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()


def test_imputed_inputs_and_missing_indicators(tmp_path):
    """A model trained with imputation: a missing (NaN) input takes the imputed value and
    sets its indicator, as in predict.py; the C equals its NumPy model on those rows."""
    from features.tabular import Preprocessor
    from nn_core import MLP, load_model, save_model

    if shutil.which("gcc") is None:
        pytest.skip(NO_GCC)
    rng = np.random.default_rng(4)
    n = 400
    df = pd.DataFrame({"count": rng.poisson(3.0, n).astype(float), "signed": rng.normal(size=n),
                       "label": rng.choice(["a", "b", "c"], size=n)})
    df.loc[rng.choice(n, 40, replace=False), "count"] = np.nan
    df.loc[rng.choice(n, 40, replace=False), "label"] = np.nan
    y = (df["signed"] + (df["label"] == "a") > 0.3).astype(int).to_numpy()
    pre = Preprocessor(["count", "signed"], ["label"], impute=True).fit(df)
    m = MLP(pre.transform(df).shape[1], hidden=(6,), seed=1, backend="numpy")
    m.fit(pre.transform(df), y, epochs=10, batch_size=32, lr=1e-2)
    save_model(tmp_path / "m", m, pre)
    model, _ = ex.load_model_dir(tmp_path / "m")
    assert {c.name for c in model.inputs if c.missing_row is not None} == {"count", "label"}
    X = ex.encode_table(model, df)
    files, _ = ex.export(model, "c-int8-full", "imputing", calibration=X)
    ex.write_all(tmp_path / "out", files)
    holes = np.flatnonzero(np.isnan(X).any(axis=1))
    p = run_harness(build_harness(tmp_path / "out", "imputing"), X[holes])
    sim = int8.predict_int8_full(model, int8.calibrate(model, X), X[holes].astype(np.float32))
    assert np.all(np.isfinite(p)) and np.max(np.abs(p - sim)) <= 1e-9
    ref = load_model(tmp_path / "m").predict_proba(df.iloc[holes])
    assert np.max(np.abs(sim - ref)) <= 0.03
