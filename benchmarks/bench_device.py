"""The exported C predictors on emulated Cortex-M4F and Cortex-M3 boards: accuracy, size, cost.

    python benchmarks/bench_device.py                       # trains the default model
    python benchmarks/bench_device.py --model-dir runs/latest [--vectors 500]

For the UCI table's default model (train.py's defaults: one hidden layer of 64 ReLU
units, seed 0, stratified 70/15/15 split; trained here through the same library calls,
or a ``--model-dir`` trained by train.py with seed 0), every C format (``c``, ``c-int8``,
``c-int8-full``; the last calibrated on the training split) is exported with the test
split as test vectors (``--test-vectors``), cross-compiled with arm-none-eabi-gcc ``-O2``
under the strict flags and ``-Werror``, and run under ``qemu-system-arm -icount shift=0``
on ``mps2-an386`` (Cortex-M4 with FPU, hard float) and ``mps2-an385`` (Cortex-M3, soft
float) through ``tests/helpers/device_harness.py``. Printed per format and board:

- test-split ROC-AUC of the device's outputs, and max |device - predict.py|;
- flash (``.text + .rodata + .data`` of the model alone: the size image with one call of
  ``NAME_predict`` minus the one without) and RAM (``.data + .bss`` likewise, plus the stack
  high-water mark of one call, by stack painting, the deepest over all vectors);
- instructions per inference: QEMU's ``-icount shift=0`` advances virtual time by 1 ns per
  guest instruction and SysTick counts the board's 25 MHz clock, so one tick is 40
  instructions (measured by a calibration loop of 2,000,000 instructions); the loop over
  all vectors minus the same loop calling an empty function, divided by the vectors.
  These are executed instructions, not cycles: QEMU models no pipeline, wait states or
  caches (DWT CYCCNT reads 0 on these boards).

Prints a Markdown table with the machine, tools, date and command.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "helpers"))


def train_default(model_dir: Path) -> None:
    """train.py's default model on the bundled table, through the same library calls."""
    from export_helpers import UCI_CSV

    from features.tabular import (
        UCI_CATEGORICAL,
        UCI_NUMERIC,
        Preprocessor,
        Schema,
        load_table,
        stratified_split,
    )
    from nn_core import save_model
    from nn_core.selection import NetConfig, train_network

    df = load_table(UCI_CSV, Schema.uci())
    y = df["Revenue"].to_numpy()
    train, dev, _ = stratified_split(y, 0)
    pre = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue").fit(df.iloc[train])
    X = {"train": pre.transform(df.iloc[train]), "dev": pre.transform(df.iloc[dev])}
    Y = {"train": y[train], "dev": y[dev]}
    mlp, _, _ = train_network(NetConfig(), X, Y, seed=0)
    save_model(model_dir, mlp, pre)


def tool_version(cmd: str) -> str:
    out = subprocess.run([cmd, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, help="a model trained by train.py with seed 0 "
                    "(default: train train.py's default model here)")
    ap.add_argument("--vectors", type=int, default=0,
                    help="test vectors (default 0: the whole test split)")
    ap.add_argument("--opt", default="-O2", help="optimisation flag (default -O2)")
    args = ap.parse_args()

    from device_harness import BOARDS, build, missing_tools, model_sizes, run
    from export_helpers import UCI_CSV, reference_predict

    from features.tabular import Schema, load_table, stratified_split
    from nn_core import export as ex
    from nn_core.metrics import roc_auc

    reason = missing_tools()
    if reason:
        sys.exit(f"bench_device: {reason}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = tmp / "model"
            train_default(model_dir)
        df = load_table(UCI_CSV, Schema.uci())
        y = df["Revenue"].to_numpy()
        train, _, test = stratified_split(y, 0)
        if args.vectors:
            test = test[:args.vectors]
        model, _ = ex.load_model_dir(model_dir)
        X_train = ex.encode_table(model, df.iloc[train])
        X = ex.encode_table(model, df.iloc[test])
        ref = reference_predict(model_dir, df.iloc[test])
        rows = []
        for fmt in ("c", "c-int8", "c-int8-full"):
            name = ex.DEFAULT_NAMES[fmt]
            files, _ = ex.export(model, fmt, name, calibration=X_train, vectors=(X, ref))
            out = tmp / fmt
            ex.write_all(out, files)
            for board in BOARDS:
                elfs = build(out, name, board, args.opt)
                result = run(elfs["harness"], board, timeout=1200)
                size = model_sizes(elfs, result.stack_bytes)
                rows.append((fmt, board, roc_auc(y[test], result.p),
                             float(np.max(np.abs(result.p - ref))), size,
                             result.instructions))
    print(f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; host "
          f"{platform.processor() or platform.machine()}; {tool_version('arm-none-eabi-gcc')}; "
          f"{tool_version('qemu-system-arm')}")
    print(f"command: python benchmarks/bench_device.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"model: {model_dir if args.model_dir else 'train.py defaults (64 ReLU, seed 0)'}, "
          f"hidden {model.widths[:-1]}, {len(test)} test vectors, predict.py test ROC-AUC "
          f"{roc_auc(y[test], ref):.5f}; flags {args.opt} -std=c99 -Werror (strict)\n")
    print("| format | board | test ROC-AUC | max \\|p - predict.py\\| | flash (text + rodata + "
          "data) | RAM (data + bss + stack) | instructions / inference |")
    print("|---|---|---:|---:|---|---|---:|")
    base = {board: ins for fmt, board, *_, ins in rows if fmt == "c"}
    for fmt, board, auc, err, s, ins in rows:
        print(f"| `{fmt}` | {board} ({BOARDS[board].machine}) | {auc:.5f} | {err:.1e} | "
              f"{s['flash']} ({s['text']} + {s['rodata']} + {s['data']}) | {s['ram']} "
              f"({s['data']} + {s['bss']} + {s['stack']}) | {ins:,.0f} "
              f"({ins / base[board]:.2f}x float32) |")


if __name__ == "__main__":
    main()
