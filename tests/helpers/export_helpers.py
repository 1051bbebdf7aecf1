"""Shared helpers of the export tests and benchmark: small models, C harness, loading exports."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
UCI_CSV = REPO / "data" / "online_shoppers_intention.csv"
STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-Wdouble-promotion",
                "-Wfloat-conversion", "-Wshadow")

# Reads rows of N_INPUTS numbers (text; "nan"/"inf" allowed) from stdin, prints one
# prediction per row with 9 significant digits (enough to round-trip a float32).
HARNESS = r"""
#include <stdio.h>
#include "NAME.h"

int main(void)
{
    float x[NAMEUP_N_INPUTS];
    for (;;) {
        int i;
        for (i = 0; i < NAMEUP_N_INPUTS; ++i) {
            if (scanf("%f", &x[i]) != 1) {
                return 0;
            }
        }
        printf("%.9g\n", (double)NAME_predict(x));
    }
}
"""


def train_uci_model(model_dir: Path, hidden=(16, 8), epochs: int = 4, seed: int = 0,
                    activation: str = "relu"):
    """Fit a small MLP on 65 % of the UCI rows; save model dir; return (df, test_idx)."""
    from features.tabular import UCI_CATEGORICAL, UCI_NUMERIC, Preprocessor, Schema, load_table
    from nn_core import MLP, save_model

    df = load_table(UCI_CSV, Schema.uci())
    idx = np.random.default_rng(seed).permutation(len(df))
    cut = int(0.65 * len(df))
    train, test = idx[:cut], idx[cut:]
    pre = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue").fit(df.iloc[train])
    X = pre.transform(df)
    m = MLP(X.shape[1], hidden=hidden, activation=activation, seed=seed, backend="numpy")
    m.fit(X[train], df["Revenue"].to_numpy()[train], epochs=epochs, batch_size=64, lr=3e-3)
    save_model(model_dir, m, pre)
    return df, np.sort(test)


def uci_case(root: Path) -> dict:
    """The UCI model of :func:`train_uci_model` saved in ``root/model``, loaded for export:
    ``dir``, ``model``, the full table ``df``, its ``test`` and ``train`` row indices and
    ``X``, every row encoded as the exported predictors take it."""
    from nn_core import export as ex

    model_dir = root / "model"
    df, test = train_uci_model(model_dir)
    model, _ = ex.load_model_dir(model_dir)
    return {"dir": model_dir, "model": model, "df": df, "test": test,
            "train": np.setdiff1d(np.arange(len(df)), test), "X": ex.encode_table(model, df)}


def reference_predict(model_dir: Path, df) -> np.ndarray:
    """What predict.py computes: the model directory's preprocessing, then the network."""
    from nn_core import load_model

    return load_model(model_dir).predict_proba(df)


def build_harness(src_dir: Path, name: str, cc: str = "gcc", flags=STRICT_FLAGS,
                  extra=("-O2",)) -> Path:
    """Compile the stdin/stdout harness against ``src_dir/NAME.c``; return the binary."""
    main = src_dir / f"harness_{name}.c"
    main.write_text(HARNESS.replace("NAMEUP", name.upper()).replace("NAME", name))
    exe = src_dir / f"harness_{name}_{cc}"
    build = subprocess.run([cc, *flags, *extra, "-I", str(src_dir), str(main),
                            str(src_dir / f"{name}.c"), "-o", str(exe), "-lm"],
                           capture_output=True, text=True)
    assert build.returncode == 0, f"{cc} failed on {name}.c:\n{build.stderr}"
    return exe


def run_harness(exe: Path, X: np.ndarray) -> np.ndarray:
    """Predictions of the compiled predictor for rows X (n, n_inputs)."""
    text = "\n".join(" ".join(repr(float(v)) for v in row) for row in X) + "\n"
    out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True)
    return np.array([float(v) for v in out.stdout.split()])


def c_arrays(source: str) -> dict[str, np.ndarray]:
    """Every ``static const`` array of a generated C file, parsed from its literals."""
    arrays = {}
    pattern = r"static const (float|signed char|unsigned char) (\w+)\[(\d+)\] = \{(.*?)\};"
    for ctype, name, n, body in re.findall(pattern, source, flags=re.S):
        items = [t.strip() for t in body.split(",") if t.strip()]
        assert len(items) == int(n), name
        if ctype == "float":
            # float32 parse of the decimal text, as the C compiler does for an f-suffixed literal
            arrays[name] = np.array([np.float32(t.rstrip("f")) for t in items], dtype=np.float32)
        else:
            arrays[name] = np.array([int(t) for t in items], dtype=np.int64)
    return arrays


def import_file(path: Path, module_name: str):
    """Import a generated one-file predictor."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def export_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nn_core.export", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True)


def unseen_and_extreme_rows(model, base, codes) -> tuple[np.ndarray, object]:
    """Rows that probe a predictor's edges: for each categorical column of ``model``, each
    raw code in ``codes`` (the encoded vector) beside the value "never-seen" (the table);
    for each numeric column 1e30, 0 and, where no log1p applies, -0.5. Returns
    (raw input vectors, the same rows as a table for the reference predictor), each
    derived from every row of ``base`` (a DataFrame of valid rows)."""
    import pandas as pd

    from nn_core import export as ex

    X_base = ex.encode_table(model, base)
    rows, frames = [], []
    probes = [(c.index, c.name, code, "never-seen") for c in model.categorical
              for code in codes]
    probes += [(c.index, c.name, value, value) for c in model.numeric
               for value in (1e30, 0.0) + (() if c.log1p else (-0.5,))]
    for index, name, encoded, raw in probes:
        x = X_base.copy()
        x[:, index] = encoded
        frame = base.copy()
        frame[name] = raw
        rows.append(x)
        frames.append(frame)
    return np.concatenate(rows), pd.concat(frames, ignore_index=True)
