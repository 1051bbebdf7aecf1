"""``python -m nn_core.export MODEL_DIR --format FORMAT --out DIR [--name NAME]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .formats import DEFAULT_NAMES, FORMATS, check_name, export, write_all
from .model import load_model_dir
from .report import evaluate_csv, format_report


def main(argv: list[str] | None = None) -> int:
    """Run the export command; returns the exit status (1 with a one-line error)."""
    parser = argparse.ArgumentParser(
        prog="python -m nn_core.export",
        description="Export a model directory (model.json, weights.npz, preprocess.json) to a "
                    "C (float32 or int8) or single-file Python predictor of raw inputs.")
    parser.add_argument("model_dir", type=Path, help="directory written by train.py")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--name", help="base name of the files and C symbols "
                        "(default: " + ", ".join(f"{k}: {v}" for k, v in DEFAULT_NAMES.items())
                        + ")")
    parser.add_argument("--eval-csv", type=Path, help="labelled CSV (e.g. the test split): "
                        "also report ROC-AUC of float32 and, for c-int8, of int8")
    args = parser.parse_args(argv)
    name = args.name or DEFAULT_NAMES[args.fmt]
    try:
        check_name(name)
        model, mlp = load_model_dir(args.model_dir)
        files, report = export(model, args.fmt, name)
        if args.eval_csv is not None:
            report["accuracy"] = evaluate_csv(model, mlp, args.eval_csv, args.fmt)
            doc = json.loads(files[f"{name}.json"])
            doc["size"] = report
            files[f"{name}.json"] = json.dumps(doc, indent=2) + "\n"
        write_all(args.out, files)
    except (ValueError, OSError) as e:  # ModelFileError and ExportError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_report(report))
    print(f"wrote {len(files)} files to {args.out}")
    return 0
