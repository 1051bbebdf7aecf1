"""The export formats: one call generates every file of a format, ``NAME.json`` included.

:func:`export` runs a format's generator and adds ``NAME.json`` (the input table, the
network and the size report); :func:`write_all` puts the files in place, all or none.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..io import remove_stale
from .c import generate_c, generate_c_int8
from .c_int8 import generate_c_int8_full
from .describe import INVALID_RULE, input_table
from .int8 import predict_int8_full
from .model import ExportError, ExportModel, predict_int8
from .onnx import generate_onnx
from .python import generate_python, generate_python_pure
from .report import arm_sizes
from .vectors import vectors_header

FORMATS = ("c", "c-int8", "c-int8-full", "python", "python-pure", "onnx")
DEFAULT_NAMES = {
    "c": "model",
    "c-int8": "model_int8",
    "c-int8-full": "model_int8_full",
    "python": "model_np",
    "python-pure": "model_pure",
    "onnx": "model",
}
EXPORT_FORMAT = "purchase-propensity-export"
GENERATORS = {
    "c": generate_c,
    "c-int8": generate_c_int8,
    "c-int8-full": generate_c_int8_full,
    "python": generate_python,
    "python-pure": generate_python_pure,
    "onnx": generate_onnx,
}
ENTRY_POINTS = {
    "c": "float {name}_predict(const float *x)",
    "c-int8": "float {name}_predict(const float *x)",
    "c-int8-full": "float {name}_predict(const float *x)",
    "python": "{name}.predict(x) / {name}.predict_proba(X)",
    "python-pure": "{name}.predict(x) / {name}.predict_proba(rows)",
    "onnx": 'graph {name}: input "x" float32 (n, n_inputs) -> output "p" float32 (n,)',
}
QUANTISATION = (
    "weights: symmetric int8 per output channel, s_j = max_i |W_ij| / 127; "
    "activations: symmetric int8 with a dynamic per-row scale t = max|a| / 127 before "
    "every layer (layer 0: the standardised numeric features; one-hot inputs are exact); "
    "int32 accumulation, float32 scales and biases; rounding half away from zero"
)
QUANTISATION_FULL = (
    "integer only: int8 weights (symmetric per output channel, s_j = max_i |W_ij| / 127) and "
    "activations (layer 0: scale 1/k, a one-hot feature = k; hidden layers: asymmetric, "
    "ranges from the calibration rows), int32 accumulators and biases, requantisation by "
    "fixed-point multipliers m 2^-r, activations by clamp (ReLU) or a 256-entry table, "
    "sigmoid by an interpolated table in fixed point (probability in steps of 2^-15); a "
    "combined model: each member's last layer requantised to w_k z_k in steps of 2^-12, "
    "summed with the bias c in 64 bits (Platt's a, b folded into w_k and c; an isotonic "
    "calibration composed into the output table)"
)


#: Module and header names an export may not take: ``NAME.py`` next to a user's code would
#: shadow the module of that name on ``import``, ``NAME.h`` a C standard header found
#: through ``-I``. The standard library, the libraries this project and its users import,
#: this project's own packages and scripts, and the C standard headers.
RESERVED_NAMES = frozenset(sys.stdlib_module_names) | {
    "numpy", "pandas", "numba", "llvmlite", "scipy", "matplotlib", "cupy", "sklearn",
    "pytest", "setuptools", "pip",
    "nn_core", "features", "benchmarks", "train", "predict", "tests",
    "assert", "complex", "ctype", "errno", "fenv", "float", "inttypes", "iso646", "limits",
    "locale", "math", "setjmp", "signal", "stdalign", "stdarg", "stdatomic", "stdbool",
    "stddef", "stdint", "stdio", "stdlib", "stdnoreturn", "string", "tgmath", "threads",
    "time", "uchar", "wchar", "wctype",
}


def check_name(name: str) -> None:
    """NAME must be a C identifier and a Python module name, and not a reserved name
    (:data:`RESERVED_NAMES`: e.g. ``numpy``, ``math``, ``json``, ``nn_core``, ``stdio``).

    Raises
    ------
    ExportError
        Naming the rule.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name) or keyword.iskeyword(name):
        raise ExportError(f"--name {name!r}: use letters, digits and '_' (not starting with a "
                          "digit), so that it is a valid C identifier and Python module name")
    if name in RESERVED_NAMES:
        raise ExportError(f"--name {name!r}: is the name of a module or C header that code "
                          f"using the export may need ({name}.py / {name}.h would shadow it); "
                          "choose another name")


def export(model: ExportModel, fmt: str, name: str, calibration: np.ndarray | None = None,
           vectors: tuple[np.ndarray, np.ndarray] | None = None
           ) -> tuple[dict[str, str], dict]:
    """Generate every output file of one format in memory.

    Parameters
    ----------
    model : ExportModel
    fmt : str
        One of `FORMATS`.
    name : str
        Base name of the files (and C symbol prefix, Python module name).
    calibration : ndarray, shape (n, n_inputs), optional
        Raw rows (categorical inputs as codes) that fix the activation ranges of
        ``c-int8-full`` (required there, unused by the other formats).
    vectors : (X, reference), optional
        Raw rows (n, n_inputs) and predict.py's output for each (n,): adds the test-vector
        header ``NAME_vectors.h`` (C formats only; :mod:`nn_core.export.vectors`).

    Returns
    -------
    files : dict file name -> text (``NAME.json`` included), or bytes (``NAME.onnx``)
    report : dict, the size report (also stored in ``NAME.json``)

    Raises
    ------
    ExportError
        A bad name, or a model the format cannot represent.
    """
    check_name(name)
    if fmt == "c-int8-full":
        files, sizes = generate_c_int8_full(model, name, calibration)
    else:
        files, sizes = GENERATORS[fmt](model, name)
    if vectors is not None:
        X, reference = vectors
        X32 = np.asarray(X, dtype=np.float32).astype(np.float64)  # what the device passes
        expected = {"c": lambda: reference,
                    "c-int8": lambda: predict_int8(model, X32),
                    "c-int8-full": lambda: predict_int8_full(model, sizes["network"], X32),
                    }.get(fmt, lambda: reference)()
        files[f"{name}_vectors.h"] = vectors_header(name, fmt, X, reference, expected)
    report = {
        "format": fmt,
        "files": sorted([*files, f"{name}.json"]),
        "parameters": model.n_parameters,
        "weight_bytes": int(sizes["weight_bytes"]),
        "ram_bytes": int(sizes["ram_bytes"]),
    }
    if "float32_weight_bytes" in sizes:
        report["float32_weight_bytes"] = int(sizes["float32_weight_bytes"])
    if sizes.get("encoding_bytes"):  # a C target's encoding tables (in weight_bytes too)
        report["encoding_bytes"] = int(sizes["encoding_bytes"])
    if "opset" in sizes:
        report["opset"] = int(sizes["opset"])
    if fmt.startswith("c"):
        report["arm_cortex_m4"] = arm_sizes(files, name)
    doc = {
        "format": EXPORT_FORMAT,
        "format_version": 1,
        "name": name,
        "target_format": fmt,
        "entry_point": ENTRY_POINTS[fmt].format(name=name),
        "returns": (f"probability that {model.target} is TRUE" if model.output == "sigmoid"
                    else f"predicted {model.target}"),
        "invalid_numeric": INVALID_RULE,
        "network": {"features": int(model.params[0][0].shape[0]),
                    "layers": model.widths, "activation": model.activation,
                    "output": model.output},
        "inputs": input_table(model),
        "size": report,
    }
    if model.combined:
        doc["network"]["combination"] = {
            "members": [{"layers": [W.shape[1] for W, _ in m.params],
                         "activation": m.activation, "weight": m.weight}
                        for m in model.members],
            "logit_bias": model.logit_bias,
            "calibration": model.calibration["kind"] if model.calibration else "none",
        }
    if fmt == "c-int8":
        doc["quantisation"] = QUANTISATION
    if fmt == "c-int8-full":
        doc["quantisation"] = QUANTISATION_FULL
    files[f"{name}.json"] = json.dumps(doc, indent=2) + "\n"
    return files, report


def write_all(out_dir: Path, files: dict[str, str | bytes]) -> None:
    """Write every file or none: stage them all in a temporary folder, then rename each.

    Renames within one file system are atomic, so each file is complete; a failure while
    staging leaves ``out_dir`` as it was (a folder created here is removed again).
    """
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir)  # the staging folder of an export that was killed
    stage = Path(tempfile.mkdtemp(prefix=f".export.{os.getpid()}-", suffix=".partial",
                                  dir=out_dir))
    fname = None
    try:
        for fname, content in files.items():
            if isinstance(content, bytes):
                (stage / fname).write_bytes(content)
            else:
                (stage / fname).write_text(content, encoding="utf-8")
        for fname in files:
            (stage / fname).replace(out_dir / fname)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        if isinstance(exc, OSError) and exc.filename is None and fname is not None:
            raise OSError(exc.errno, exc.strerror, str(out_dir / fname)) from None  # ENOSPC
        raise
    stage.rmdir()
