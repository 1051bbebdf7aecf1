"""Export a trained model directory: C (float32, int8), one-file Python, and ONNX.

``python -m nn_core.export --model MODEL_DIR --format FORMAT --output DIR [--name NAME]``
with FORMAT one of ``c``, ``c-int8``, ``c-int8-full``, ``python``, ``python-pure``, ``onnx``.

A model directory (``model.json`` + ``weights.npz`` + ``preprocess.json``, written by
``train.py``) describes the whole map from a raw session row to a purchase probability:

    raw row --(log1p, standardise, one-hot)--> feature vector f --(MLP)--> p

Every exported predictor takes the **raw inputs** ``x`` (one value per input column, in the
order of ``preprocess.json``) and does the preprocessing itself:

- a numeric input is passed as-is; the predictor applies ``log1p`` where the column has it
  and the standardisation ``(u - mean) / std``;
- a categorical input is passed as its integer **code** stored in a float (see
  `categorical_codes`); the predictor turns it into the one-hot block, a code that is not in
  the list (another number, a non-integer, NaN) selects the "unseen" bucket, exactly as an
  unseen text does in ``predict.py``;
- invalid numeric inputs, i.e. NaN, +-inf, or a negative value in a ``log1p`` column (the rows
  ``predict.py`` rejects with an error), make the predictor return NaN: a device cannot raise,
  and NaN cannot be mistaken for a probability.

Modules: ``model`` (reading the model directory, the reference maths), ``c``, ``python``
and ``onnx`` (the generators; the folding and int8 schemes are described in ``c``; ``onnx``
needs the ``onnx`` package, an optional extra), ``describe`` (the
input table every format documents), ``formats`` (``export`` and ``NAME.json``), ``report``
(sizes and accuracy), ``cli``, and ``templating`` with the template files in ``templates/``.
"""

from .c import c_float, generate_c, generate_c_int8
from .c_int8 import generate_c_int8_full
from .cli import main
from .describe import INVALID_RULE, UNSEEN_RULE, input_table, network_line, table_comment
from .formats import (
    DEFAULT_NAMES,
    EXPORT_FORMAT,
    FORMATS,
    GENERATORS,
    check_name,
    export,
    write_all,
)
from .int8 import IntegerNetwork, calibrate, predict_int8_full
from .model import (
    MAX_EXACT_CODE,
    SUPPORTED_ACTIVATIONS,
    SUPPORTED_OUTPUTS,
    ExportError,
    ExportModel,
    Input,
    build_inputs,
    categorical_codes,
    encode_table,
    features_from_codes,
    fold_first_layer,
    load_model_dir,
    predict_int8,
    quantise_int8,
)
from .onnx import OPSET, generate_onnx
from .python import generate_python, generate_python_pure, py_float
from .report import ARM_FLAGS, arm_sizes, evaluate_csv, format_report, read_rows
from .vectors import VECTOR_FORMATS, vector_rows, vectors_header

__all__ = [
    "ARM_FLAGS",
    "DEFAULT_NAMES",
    "EXPORT_FORMAT",
    "FORMATS",
    "GENERATORS",
    "INVALID_RULE",
    "MAX_EXACT_CODE",
    "OPSET",
    "SUPPORTED_ACTIVATIONS",
    "SUPPORTED_OUTPUTS",
    "UNSEEN_RULE",
    "VECTOR_FORMATS",
    "ExportError",
    "ExportModel",
    "Input",
    "IntegerNetwork",
    "arm_sizes",
    "build_inputs",
    "c_float",
    "calibrate",
    "categorical_codes",
    "check_name",
    "encode_table",
    "evaluate_csv",
    "export",
    "features_from_codes",
    "fold_first_layer",
    "format_report",
    "generate_c",
    "generate_c_int8",
    "generate_c_int8_full",
    "generate_onnx",
    "generate_python",
    "generate_python_pure",
    "input_table",
    "load_model_dir",
    "main",
    "network_line",
    "predict_int8",
    "predict_int8_full",
    "py_float",
    "quantise_int8",
    "read_rows",
    "table_comment",
    "vector_rows",
    "vectors_header",
    "write_all",
]
