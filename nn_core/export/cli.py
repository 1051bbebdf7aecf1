"""``python -m nn_core.export --model DIR --format FORMAT --output DIR [--name NAME]``.

The old spellings, a positional ``MODEL_DIR`` and ``--out``, still work and print one
deprecation line on stderr."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from ..io import (
    DefaultsHelpFormatter,
    OneLineArgumentParser,
    Terminated,
    describe_internal_error,
    describe_os_error,
    same_file,
    sigterm_as_interrupt,
    stdout_may_close,
)
from .formats import DEFAULT_NAMES, FORMATS, check_name, export, write_all
from .model import ExportError, load_model_dir
from .report import evaluate_csv, format_report, read_rows
from .vectors import vector_rows


def check_out(model_dir: Path, out: Path) -> str | None:
    """The problem with ``--output``, or None: an export never writes into the model
    directory, so ``out`` may not be ``model_dir`` nor a folder inside it (links resolved)."""
    model_real = Path(os.path.realpath(model_dir))
    out_real = Path(os.path.realpath(out))
    if out_real == model_real or model_real in out_real.parents:
        where = "is the model directory" if out_real == model_real else "is inside"
        return (f"--output {out}: {where}"
                f"{'' if out_real == model_real else ' ' + str(model_dir)}"
                "; an export never writes into the model directory (choose another --output)")
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the export command; returns the exit status (1 with a one-line error; 2 for an
    --output that is the model directory or inside it, nothing written)."""
    # The program's name as it was started: propensity-export when installed, else
    # python -m nn_core.export (whose sys.argv[0] is the package's __main__.py).
    started_as = Path(sys.argv[0]).name
    parser = OneLineArgumentParser(
        prog="python -m nn_core.export" if started_as == "__main__.py" else started_as,
        description="Export a model directory (model.json, weights.npz, preprocess.json) to a "
                    "C (float32 or int8), single-file Python or ONNX predictor of raw inputs.",
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, dest="model_dir",
                        metavar="MODEL_DIR", help="model directory written by train.py")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt",
                        help="the predictor to write (docs/embedded.md)")
    parser.add_argument("--output", required=True, type=Path, dest="out", metavar="DIR",
                        help="output directory; it may not be MODEL_DIR nor a folder inside "
                             "it (an export never writes into the model directory)")
    parser.add_argument("--name", help="base name of the files and C symbols; not the "
                        "name of a standard-library module, C standard header, numpy, pandas "
                        "or a package of this project "
                        "(default: " + ", ".join(f"{k}: {v}" for k, v in DEFAULT_NAMES.items())
                        + ")")
    parser.add_argument("--eval-csv", type=Path, help="labelled CSV (e.g. the test split): "
                        "also report ROC-AUC of float32 and, for the int8 formats, of int8")
    parser.add_argument("--calibration-csv", type=Path, help="CSV of raw rows with the input "
                        "columns (e.g. the training split) that fix the activation ranges of "
                        "c-int8-full (required there)")
    parser.add_argument("--test-vectors", type=int, metavar="N", help="C formats: also write "
                        "NAME_vectors.h, the first N valid rows of --eval-csv as raw input "
                        "vectors with predict.py's output and the format's own for each")
    parser.add_deprecated_alias("--out", "--output")
    parser.add_deprecated_positional("old_model_dir", "--model", "MODEL_DIR")
    args = parser.parse_args(argv)
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The export of the parsed command line; every failure is one line, nothing written."""
    name = DEFAULT_NAMES[args.fmt] if args.name is None else args.name  # "" is refused
    problem = check_out(args.model_dir, args.out)
    if problem is None and (args.out.is_symlink() or args.out.exists()) and not args.out.is_dir():
        problem = f"--output {args.out}: exists and is not a directory"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        check_name(name)
        model, mlp = load_model_dir(args.model_dir)
        if args.calibration_csv is not None and args.fmt != "c-int8-full":
            raise ExportError(f"--calibration-csv is for --format c-int8-full only (not "
                              f"{args.fmt}), whose activation ranges it fixes")
        calibration = (None if args.calibration_csv is None else read_rows(
            model, args.calibration_csv, labelled=False, flag="--calibration-csv")[1])
        vectors = (None if args.test_vectors is None else
                   vector_rows(model, args.model_dir, args.eval_csv, args.test_vectors))
        files, report = export(model, args.fmt, name, calibration, vectors)
        for fname in files:
            if args.calibration_csv is not None and same_file(args.out / fname,
                                                              args.calibration_csv):
                raise ExportError(f"--output {args.out}: {fname} would replace "
                                  f"--calibration-csv {args.calibration_csv}")
        for fname in files:
            if args.eval_csv is not None and same_file(args.out / fname, args.eval_csv):
                raise ExportError(f"--output {args.out}: {fname} would replace --eval-csv "
                                  f"{args.eval_csv}; choose another --output or --name")
        if args.eval_csv is not None:
            report["accuracy"] = evaluate_csv(model, mlp, args.eval_csv, args.fmt, calibration)
            doc = json.loads(files[f"{name}.json"])
            doc["size"] = report
            files[f"{name}.json"] = json.dumps(doc, indent=2) + "\n"
        write_all(args.out, files)
    except UnicodeDecodeError as e:
        return _error(f"{args.eval_csv}: not UTF-8 text (byte {e.start}: {e.reason})")
    except ValueError as e:  # ModelFileError and ExportError are ValueErrors
        return _error(e)
    except csv.Error as e:
        return _error(f"{args.eval_csv}: cannot read it as CSV: {e}")
    except OSError as e:
        return _error(describe_os_error(e))
    except MemoryError as e:
        return _error(f"out of memory ({e or 'allocation failed'}); nothing written")
    except Terminated:
        print("error: terminated (SIGTERM); nothing written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted; nothing written", file=sys.stderr)
        return 130
    except Exception as e:  # unexpected: one line, not a traceback
        return _error(describe_internal_error(e))
    with stdout_may_close():  # the files are written; `... | head` must not fail the export
        print(format_report(report))
        print(f"wrote {len(files)} files to {args.out}", flush=True)
    return 0


def _error(message) -> int:
    """Print ``error: MESSAGE`` (one line) on stderr; return 1."""
    text = " ".join(str(message).split()) or "unknown error"
    print(f"error: {text}", file=sys.stderr)
    return 1
