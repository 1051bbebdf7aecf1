"""docs/embedded.md's commands that pass a run's test split to ``--eval-csv`` run as written.

The block is the fenced one of docs/embedded.md that reads ``splits.json``. Its commands run
one by one in a temporary folder that looks like the repository root to them (``data/`` and
``train.py`` linked), ``python`` being this interpreter.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def fenced_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks of a Markdown text."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def eval_split_commands() -> list[str]:
    """The commands of the docs/embedded.md block that builds the test-split CSV."""
    blocks = [b for b in fenced_blocks((ROOT / "docs" / "embedded.md").read_text("utf-8"))
              if "splits.json" in b]
    assert len(blocks) == 1, "docs/embedded.md: expected one command block using splits.json"
    return [line for line in blocks[0].splitlines() if line.strip()]


def test_the_block_trains_cuts_the_test_rows_and_exports_with_them():
    commands = eval_split_commands()
    assert [shlex.split(c)[:2] for c in commands] == [
        ["python", "train.py"], ["python", "-c"], ["python", "-m"]]
    assert "--eval-csv" in commands[-1] and "--output" in commands[0]


@pytest.mark.slow  # trains the default network and runs three commands (about 10 s warm)
def test_eval_split_commands_run_and_report_the_test_auc(tmp_path):
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    (tmp_path / "train.py").symlink_to(ROOT / "train.py")
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for command in eval_split_commands():
        argv = [sys.executable, *shlex.split(command)[1:]]
        res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=900)
        assert res.returncode == 0, (command, res.stdout[-2000:], res.stderr[-2000:])
        assert "deprecated" not in res.stderr, (command, res.stderr)
    run = tmp_path / "runs" / "embedded"
    splits = json.loads((run / "splits.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    test_rows = splits["seeds"]["0"]["test"]
    assert len(test_rows) == metrics["data"]["split_sizes"]["test"]
    assert set(test_rows).isdisjoint(splits["seeds"]["0"]["train"])
    assert set(test_rows).isdisjoint(splits["seeds"]["0"]["dev"])
    with open(ROOT / "data" / "online_shoppers_intention.csv", newline="") as fh:
        source = list(csv.reader(fh))
    with open(run / "test.csv", newline="") as fh:
        cut = list(csv.reader(fh))
    # The test CSV holds exactly those data rows of the training file, text unchanged.
    assert cut == [source[0]] + [source[1 + i] for i in test_rows]
    with open(run / "test_predictions.csv", newline="") as fh:
        predictions = list(csv.DictReader(fh))
    assert [int(p["row"]) for p in predictions] == test_rows
    labels = {"TRUE": 1, "FALSE": 0}
    assert [int(p["label"]) for p in predictions] == [labels[r[-1]] for r in cut[1:]]
    # The export's float32 AUC on the cut rows is the run's own test ROC-AUC.
    report = json.loads((tmp_path / "runs" / "embedded-c" / "model_int8.json").read_text())["size"]
    assert report["accuracy"]["rows"] == len(test_rows)
    assert report["accuracy"]["float32"] == pytest.approx(metrics["model"]["test"]["roc_auc"],
                                                          abs=1e-6)
