"""The exported C on emulated microcontrollers: Cortex-M4F (mps2-an386) and Cortex-M3
without FPU (mps2-an385) under qemu-system-arm, through tests/helpers/device_harness.py.

Each build cross-compiles the predictor under the strict flags with -Werror and runs it
on the test vectors of ``--test-vectors`` (``NAME_vectors.h``): the float32 C must be within
1e-5 of predict.py on every vector, the integer-only int8 C must equal its NumPy model.
Skipped, with the reason, where the ARM toolchain or QEMU is missing (Debian:
gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm; .ci/run installs them).
"""

from __future__ import annotations

import numpy as np
import pytest
from device_harness import BOARDS, build, missing_tools, model_sizes, run
from export_helpers import c_arrays, reference_predict, uci_case

from nn_core import export as ex
from nn_core.metrics import roc_auc

REASON = missing_tools()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"device harness: {REASON}"),
              pytest.mark.slow]  # cross-compiles and boots QEMU for every test
N_VECTORS = 150


@pytest.fixture(scope="module")
def uci(tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    case = uci_case(root)
    return {**case, "root": root,
            "ref": reference_predict(case["dir"], case["df"].iloc[case["test"]])}


def _export(uci, fmt, rows, out):
    model = uci["model"]
    name = ex.DEFAULT_NAMES[fmt]
    files, _ = ex.export(model, fmt, name, calibration=uci["X"][uci["train"]],
                         vectors=(uci["X"][uci["test"][rows]], uci["ref"][rows]))
    ex.write_all(out, files)
    return name, files


@pytest.mark.parametrize("board", list(BOARDS))
def test_float32_on_the_device_matches_predict_py(uci, board):
    """Every vector within 1e-5 of predict.py; the stack and sizes are measured."""
    out = uci["root"] / f"c_{board}"
    name, _ = _export(uci, "c", slice(0, N_VECTORS), out)
    elfs = build(out, name, board)
    result = run(elfs["harness"], board)
    ref = uci["ref"][:N_VECTORS]
    assert result.p.shape == ref.shape
    assert np.max(np.abs(result.p - ref)) <= 1e-5
    sizes = model_sizes(elfs, result.stack_bytes)
    W = sum(W.size + b.size for W, b in uci["model"].params)
    assert sizes["rodata"] >= 4 * W  # the float32 weights are read-only data
    assert 0 < sizes["stack"] < 4096 and sizes["bss"] == 0  # no writable state of its own
    assert result.instructions > 0 and 39.9 < result.instructions_per_tick < 40.1


@pytest.mark.parametrize("board", list(BOARDS))
@pytest.mark.parametrize("fmt", ["c-int8-full", "c-int8"])
def test_int8_on_the_device_equals_its_model(uci, board, fmt):
    """The int8 C gives its NumPy model's numbers (VEXP) on the device: the integer-only
    one exactly, the float-rescaled one to float32 rounding."""
    out = uci["root"] / f"{fmt}_{board}"
    name, files = _export(uci, fmt, slice(0, N_VECTORS), out)
    result = run(build(out, name, board)["harness"], board)
    expected = c_arrays(files[f"{name}_vectors.h"])[f"{name}_VEXP"]
    # libm's log1pf (and expf) may differ from NumPy's in the last bit, which can move an
    # input's code across a rounding boundary: rare, and then by one code
    close = result.p == expected if fmt == "c-int8-full" else (
        np.abs(result.p - expected) <= 1e-6)
    assert np.mean(close) >= 0.98
    assert np.max(np.abs(result.p - expected)) <= 0.02


@pytest.mark.slow
def test_cortex_m3_integer_int8_auc_size_and_instructions(uci):
    """On the Cortex-M3, all held-out rows: integer int8 ROC-AUC within 0.002 of float32,
    and less flash, RAM and instructions per inference than the float32 build."""
    test = uci["test"]
    y = uci["df"]["Revenue"].to_numpy()[test]
    measured = {}
    for fmt in ("c", "c-int8-full"):
        out = uci["root"] / f"m3_{fmt}"
        name, _ = _export(uci, fmt, slice(None), out)
        elfs = build(out, name, "cortex-m3")
        result = run(elfs["harness"], "cortex-m3")
        measured[fmt] = (roc_auc(y, result.p), model_sizes(elfs, result.stack_bytes),
                         result.instructions)
    (auc32, size32, ins32), (auc8, size8, ins8) = measured["c"], measured["c-int8-full"]
    assert abs(auc8 - auc32) <= 0.002, (auc32, auc8)
    assert size8["flash"] < size32["flash"] and size8["ram"] < size32["ram"]
    assert ins8 < ins32 / 2, (ins32, ins8)


def test_combined_integer_int8_on_the_device_equals_its_model(uci):
    """A combined model in c-int8-full on the Cortex-M3: the UCI network and a logistic
    regression (``hidden=()``), weights and a bias, Platt calibration; the device gives its
    NumPy model's numbers as for one network."""
    from nn_core import MLP, load_model, save_model
    from nn_core.calibration import Platt
    from nn_core.ensemble import Ensemble

    predictor = load_model(uci["dir"])
    train = uci["df"].iloc[uci["train"]]
    F = predictor.features(train)
    lr = MLP(F.shape[1], hidden=(), seed=1)
    lr.fit(F, train["Revenue"].to_numpy(), epochs=1, batch_size=64, lr=3e-3)
    d = save_model(uci["root"] / "combined_model",
                   Ensemble([(predictor.network, 0.7), (lr, 0.5)], bias=-0.2,
                            calibration=Platt(1.2, 0.1)), predictor.preprocessing)
    model, _ = ex.load_model_dir(d)
    rows = uci["test"][:N_VECTORS]
    ref = load_model(d).predict_proba(uci["df"].iloc[rows])
    files, _ = ex.export(model, "c-int8-full", "comb", calibration=uci["X"][uci["train"]],
                         vectors=(uci["X"][rows], ref))
    out = uci["root"] / "combined_m3"
    ex.write_all(out, files)
    result = run(build(out, "comb", "cortex-m3")["harness"], "cortex-m3")
    expected = c_arrays(files["comb_vectors.h"])["comb_VEXP"]
    assert np.mean(result.p == expected) >= 0.98  # as above: libm's log1pf may move a code
    assert np.max(np.abs(result.p - expected)) <= 0.02
    assert np.max(np.abs(result.p - ref)) <= 0.05
