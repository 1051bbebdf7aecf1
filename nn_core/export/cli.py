"""``python -m nn_core.export --model DIR --format FORMAT --output DIR [--name NAME]``.

The old spellings, a positional ``MODEL_DIR`` and ``--out``, still work and print one
deprecation line on stderr."""

from __future__ import annotations

import argparse
import csv
import json
import os
import stat
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
from ..modeldir import MODEL_FILES, is_model_dir
from .formats import DEFAULT_NAMES, EXPORT_FORMAT, FORMATS, check_name, export, write_all
from .model import ExportError, load_model_dir
from .report import evaluate_csv, format_report, read_rows
from .vectors import vector_rows

#: Largest ``NAME.json`` read to find the files of an earlier export (the input table of a
#: model of many categories is long; an export's own stays far below).
MAX_MANIFEST_BYTES = 64 << 20


def check_out(model_dir: Path, out: Path) -> str | None:
    """The problem with ``--output``, or None: an export never writes into a model
    directory, so ``out`` may not be ``model_dir``, a folder inside it (links resolved), nor
    any other model directory (``nn_core.modeldir.is_model_dir``: it holds a model file)."""
    model_real = Path(os.path.realpath(model_dir))
    out_real = Path(os.path.realpath(out))
    if out_real == model_real or model_real in out_real.parents:
        where = "is the model directory" if out_real == model_real else "is inside"
        return (f"--output {out}: {where}"
                f"{'' if out_real == model_real else ' ' + str(model_dir)}"
                "; an export never writes into the model directory (choose another --output)")
    if out.is_dir() and is_model_dir(out):
        return (f"--output {out}: is a model directory (it holds "
                f"{', '.join(f for f in MODEL_FILES if os.path.lexists(out / f))}); an "
                "export never writes into a model directory (choose another --output)")
    return None


def earlier_export_files(out: Path, name: str) -> set[str]:
    """The files an earlier export named ``name`` wrote to ``out``: the ones its ``NAME.json``
    lists (``size.files``), each still a regular file; empty when ``out/NAME.json`` is not
    such an export's (another file of that name, not JSON, another format or name)."""
    manifest = out / f"{name}.json"
    try:
        st = manifest.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return set()
        doc = json.loads(manifest.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # JSON and UTF-8 errors are ValueErrors
        return set()
    if not (isinstance(doc, dict) and doc.get("format") == EXPORT_FORMAT
            and doc.get("name") == name and isinstance(doc.get("size"), dict)
            and isinstance(doc["size"].get("files"), list)):
        return set()
    own = set()
    for fname in doc["size"]["files"]:
        if isinstance(fname, str) and Path(fname).name == fname:  # a plain name, no path
            try:
                if stat.S_ISREG((out / fname).lstat().st_mode):
                    own.add(fname)
            except (OSError, ValueError):
                pass
    return own


def check_replaced(out: Path, name: str, files) -> None:
    """Refuse to replace a file in ``out`` that this export did not write earlier: each of
    ``files`` may exist there only as a file of an earlier export of the same ``name``
    (:func:`earlier_export_files`), which a new export replaces.

    Raises
    ------
    ExportError
        Naming the first file that is in the way.
    """
    present = [f for f in files if os.path.lexists(out / f)]
    if not present:
        return
    own = earlier_export_files(out, name)
    for fname in present:
        if fname not in own:
            raise ExportError(
                f"--output {out}: {fname} exists and is not a file of an earlier export "
                f"named {name!r} (an export replaces only its own files); choose another "
                "--output or --name, or remove it")


def main(argv: list[str] | None = None) -> int:
    """Run the export command; returns the exit status (1 with a one-line error; 2 for an
    --output that is a model directory, a folder inside MODEL_DIR or not a directory;
    nothing written)."""
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
                        help="output directory; not MODEL_DIR, a folder inside it, nor any "
                             "model directory; files of an earlier export of the same NAME "
                             "are replaced, no other file")
    parser.add_argument("--name", help="base name of the files and C symbols; not the "
                        "name of a standard-library module, C standard header, numpy, pandas "
                        "or a package of this project "
                        "(default: " + ", ".join(f"{k}: {v}" for k, v in DEFAULT_NAMES.items())
                        + ")")
    parser.add_argument("--eval-csv", type=Path, help="labelled CSV (e.g. the test split): "
                        "also report ROC-AUC of float32 and, for the int8 formats, of int8, "
                        "on every row (a bad cell is an error)")
    parser.add_argument("--calibration-csv", type=Path, help="CSV of raw rows with the input "
                        "columns (e.g. the training split) that fix the activation ranges of "
                        "c-int8-full (required there)")
    parser.add_argument("--test-vectors", type=int, metavar="N", help="C formats: also write "
                        "NAME_vectors.h, the first N rows of --eval-csv as raw input "
                        "vectors with predict.py's output and the format's own for each")
    parser.add_deprecated_alias("--out", "--output")
    parser.add_deprecated_positional("old_model_dir", "--model", "MODEL_DIR")
    args = parser.parse_args(argv)
    with sigterm_as_interrupt():
        return _run(args, parser.prog)


def _run(args: argparse.Namespace, prog: str) -> int:
    """The export of the parsed command line; every failure is one line starting with
    ``PROG: error:``, nothing written."""
    name = DEFAULT_NAMES[args.fmt] if args.name is None else args.name  # "" is refused
    problem = check_out(args.model_dir, args.out)
    if problem is None and (args.out.is_symlink() or args.out.exists()) and not args.out.is_dir():
        problem = f"--output {args.out}: exists and is not a directory"
    if problem:
        return _error(prog, problem, 2)
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
        check_replaced(args.out, name, files)
        if args.eval_csv is not None:
            report["accuracy"] = evaluate_csv(model, mlp, args.eval_csv, args.fmt, calibration)
            doc = json.loads(files[f"{name}.json"])
            doc["size"] = report
            files[f"{name}.json"] = json.dumps(doc, indent=2) + "\n"
        try:
            write_all(args.out, files)
        except OSError as e:
            raise _in_output(e, args.out) from None
    except UnicodeDecodeError as e:
        return _error(prog, f"{args.eval_csv}: not UTF-8 text (byte {e.start}: {e.reason})")
    except ValueError as e:  # ModelFileError and ExportError are ValueErrors
        return _error(prog, e)
    except csv.Error as e:
        return _error(prog, f"{args.eval_csv}: cannot read it as CSV: {e}")
    except OSError as e:
        return _error(prog, describe_os_error(e))
    except MemoryError as e:
        return _error(prog, f"out of memory ({e or 'allocation failed'}); nothing written")
    except Terminated:
        return _error(prog, "terminated (SIGTERM); nothing written", 143)
    except KeyboardInterrupt:
        return _error(prog, "interrupted; nothing written", 130)
    except Exception as e:  # unexpected: one line, not a traceback
        return _error(prog, describe_internal_error(e))
    with stdout_may_close():  # the files are written; `... | head` must not fail the export
        print(format_report(report))
        print(f"wrote {len(files)} files to {args.out}", flush=True)
    return 0


def _in_output(e: OSError, out: Path) -> OSError:
    """``e`` as the user sees it: an error on the export's staging folder in ``out`` or a
    file in it (``formats.write_all``'s ``.export.*.partial``, an internal name) names
    ``--output out`` instead; any other is ``e`` itself."""
    if e.filename is None:
        return e
    path, base = Path(os.path.abspath(e.filename)), Path(os.path.abspath(out))
    staged = base in path.parents and path.relative_to(base).parts[0].startswith(".export.")
    return OSError(e.errno, e.strerror, f"--output {out}") if staged else e


def _error(prog: str, message, status: int = 1) -> int:
    """Print ``PROG: error: MESSAGE`` (one line, as the other commands and argparse do) on
    stderr; return ``status``."""
    text = " ".join(str(message).split()) or "unknown error"
    print(f"{prog}: error: {text}", file=sys.stderr)
    return status
