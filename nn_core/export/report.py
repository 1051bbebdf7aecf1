"""The size report of an export, and the accuracy of the float32 and int8 predictors.

The report is printed by the export command and stored under ``size`` in ``NAME.json``.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import describe_os_error
from ..metrics import roc_auc
from ..network import MLP
from ..preprocessing import TARGET_LABELS, Preprocessing
from .int8 import calibrate, predict_int8_full
from .model import ExportError, ExportModel, encode_table, features_from_codes, predict_int8

#: What a compiler says when the disk or the file-size limit stops it.
_NO_ROOM = ("No space left on device", "File too large", "Disk quota exceeded")

#: Flags the issue fixes for the Cortex-M4 size measurement.
ARM_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c99")


def arm_sizes(c_files: dict[str, str], name: str) -> dict | None:
    """``.text/.data/.bss`` of ``NAME.c`` built by ``arm-none-eabi-gcc`` (None if absent).

    Berkeley ``size`` counts read-only data (the weight arrays) in ``.text``. The build
    happens in a temporary folder; an OS error there (temporary disk full, a file-size
    limit) is no reason to refuse the export, so it comes back as ``{"unmeasured": why}``.

    Raises
    ------
    ExportError
        The toolchain is installed but cannot compile the file.
    """
    gcc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
    if gcc is None or size is None:
        return None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for fname, text in c_files.items():
                try:
                    (Path(tmp) / fname).write_text(text)
                except OSError as e:  # EFBIG/ENOSPC carry no file name
                    raise OSError(e.errno, e.strerror, str(Path(tmp) / fname)) from None
            obj = Path(tmp) / f"{name}.o"
            build = subprocess.run([gcc, *ARM_FLAGS, "-c", str(Path(tmp) / f"{name}.c"),
                                    "-o", str(obj)], capture_output=True, text=True)
            if build.returncode != 0:
                if build.returncode < 0 or any(m in build.stderr for m in _NO_ROOM):
                    # killed by SIGXFSZ or out of room: the machine's limit, not our C
                    return {"unmeasured": " ".join(build.stderr.split())[:200]
                            or f"arm-none-eabi-gcc killed by signal {-build.returncode}"}
                raise ExportError(f"arm-none-eabi-gcc failed on {name}.c:\n{build.stderr}")
            out = subprocess.run([size, str(obj)], capture_output=True, text=True, check=True)
    except OSError as e:
        return {"unmeasured": describe_os_error(e)}
    text, data, bss = (int(v) for v in out.stdout.splitlines()[1].split()[:3])
    return {"flags": " ".join(ARM_FLAGS), "text": text, "data": data, "bss": bss}


def format_report(report: dict) -> str:
    """Human-readable lines of the size (and accuracy) report."""
    lines = [f"format {report['format']}: {', '.join(report['files'])}",
             f"  parameters:       {report['parameters']}",
             f"  weight bytes:     {report['weight_bytes']}"]
    if "float32_weight_bytes" in report:
        ratio = report["weight_bytes"] / report["float32_weight_bytes"]
        lines.append(f"  float32 weights:  {report['float32_weight_bytes']} bytes "
                     f"(int8 is {ratio:.1%} of it)")
    if "encoding_bytes" in report:
        lines.append(f"  encoding tables:  {report['encoding_bytes']} bytes (float32 knots, "
                     "scores and ends, edges and 1/widths; in the weight bytes)")
    where = "stack" if report["format"].startswith("c") else "working rows"
    lines.append(f"  RAM for buffers:  {report['ram_bytes']} bytes ({where})")
    arm = report.get("arm_cortex_m4")
    if arm and "unmeasured" in arm:
        lines.append(f"  cortex-m4 object: not measured ({arm['unmeasured']})")
    elif arm:
        lines.append(f"  cortex-m4 object: .text {arm['text']}  .data {arm['data']}  "
                     f".bss {arm['bss']}  ({arm['flags']})")
    elif report["format"].startswith("c"):
        lines.append("  cortex-m4 object: arm-none-eabi-gcc not installed, not measured")
    if "accuracy" in report:
        acc = report["accuracy"]
        line = f"  ROC-AUC on {acc['rows']} rows of {acc['csv']}: float32 {acc['float32']:.5f}"
        if "int8" in acc:
            line += f", int8 {acc['int8']:.5f} (difference {acc['int8'] - acc['float32']:+.5f})"
        lines.append(line)
    return "\n".join(lines)


def read_rows(model: ExportModel, path: Path, labelled: bool, flag: str = "--eval-csv"
              ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Every row of a CSV with the input columns (and the target if ``labelled``), checked.

    The cells are checked by the model's own rules, ``Preprocessing.inputs`` of
    ``nn_core/preprocessing.py`` (a number, finite, ``>= 0`` in a log1p column; in a column
    trained with imputation a missing cell is NaN, which the predictors impute): the one
    implementation that ``predict.py`` and ``Predictor.predict_proba`` apply to every table
    they score. A row that breaks a rule is an error, never left out.

    Returns
    -------
    frame : DataFrame, the rows as read (text cells)
    X : ndarray, shape (n, n_inputs), their raw inputs (categorical inputs as codes)
    y : ndarray of int (n,) when ``labelled``, else None

    Raises
    ------
    ExportError
        Missing file or column, no data row, a cell that breaks a rule, or a label that is
        not TRUE/FALSE/1/0 (naming the file, and the row and column of the first bad cell).
    """
    if path.is_dir():
        raise ExportError(f"{path}: is a directory, not a CSV file")
    if not path.exists():
        raise ExportError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except UnicodeDecodeError as e:
        raise ExportError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); a compressed "
                          "or binary file?") from None
    except (ValueError, csv.Error) as e:  # pandas' EmptyDataError and ParserError
        raise ExportError(f"{path}: cannot read it as CSV ({' '.join(str(e).split())})") \
            from None
    missing = [c.name for c in model.inputs if c.name not in df.columns]
    if labelled and model.target not in df.columns:
        missing.append(model.target)
    if missing:
        raise ExportError(f"{path}: missing column(s) {missing}")
    if df.empty:
        raise ExportError(f"{flag} {path}: the file has a header but no data rows")
    try:
        U = Preprocessing(model.columns, model.target).inputs(df)
    except ValueError as e:  # "row R, column 'C': ... (value: ...)"
        raise ExportError(f"{path}: {e}") from None
    y = None
    if labelled:
        labels = df[model.target].str.strip().str.upper().map(TARGET_LABELS)
        if labels.isna().any():
            i = int(np.flatnonzero(labels.isna())[0])
            raise ExportError(f"{path}: row {i + 1}, column {model.target!r}: not "
                              "TRUE/FALSE/1/0")
        y = labels.to_numpy(dtype=np.int64)
    numbers = df.copy()
    for c in model.numeric:  # the checked values (NaN: a missing cell to impute)
        numbers[c.name] = U[:, c.index]
    return df, encode_table(model, numbers), y


def evaluate_csv(model: ExportModel, mlp: MLP, path: Path, fmt: str,
                 calibration: np.ndarray | None = None) -> dict:
    """ROC-AUC of the float32 network (and of the int8 scheme for c-int8 and c-int8-full)
    on the rows of a labelled CSV (:func:`read_rows`: every row, each checked).

    ``calibration`` (raw rows) is the c-int8-full calibration, whose quantisation is
    rebuilt here (:func:`nn_core.export.int8.calibrate`, deterministic).

    Raises
    ------
    ExportError
        As :func:`read_rows`, or labels of one class only (naming the file).
    """
    _, X, y = read_rows(model, path, labelled=True)
    if y.min() == y.max():  # roc_auc's own message would not name the file
        raise ExportError(f"--eval-csv {path}: ROC-AUC needs both classes of "
                          f"{model.target!r} (got {int(y.sum())} positives, "
                          f"{int(len(y) - y.sum())} negatives)")
    F = features_from_codes(model, X)
    result = {"csv": str(path), "rows": len(y), "float32": roc_auc(y, mlp.predict_proba(F))}
    if fmt == "c-int8":
        result["int8"] = roc_auc(y, predict_int8(model, X))
    elif fmt == "c-int8-full" and calibration is not None:
        net = calibrate(model, calibration)
        result["int8"] = roc_auc(y, predict_int8_full(model, net, X.astype(np.float32)))
    return result
