"""benchmarks/compare_models.py reads a run's test scores on its splits and refuses others."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_models",
                                                  ROOT / "benchmarks" / "compare_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_models"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["compare_models"]


def fake_run(path: Path, test_rows: dict[int, list[int]], shift: float = 0.0) -> Path:
    """A run directory with the three files the script reads (tiny, hand-made)."""
    path.mkdir()
    seeds = {str(s): {"train": [100, 101], "dev": [102], "test": rows}
             for s, rows in test_rows.items()}
    (path / "splits.json").write_text(json.dumps({"kind": "table", "path": "t.csv",
                                                  "seeds": seeds}))
    lines = ["seed,row,label,probability,baseline_probability"]
    for s, rows in test_rows.items():
        lines += [f"{s},{r},{r % 2},{0.1 * r + shift},{0.5}" for r in rows]
    (path / "test_predictions.csv").write_text("\n".join(lines) + "\n")
    runs = [{"model": {"dev": {"roc_auc": 0.9 + shift, "pr_auc": 0.7}},
             "baseline": {"dev": {"roc_auc": 0.8, "pr_auc": 0.6}}} for _ in test_rows]
    (path / "metrics.json").write_text(json.dumps({"runs": runs, "seconds": 4.0}))
    return path


def test_reads_scores_in_split_order(compare, tmp_path):
    ref = fake_run(tmp_path / "a", {0: [3, 1, 2], 1: [0, 4]})
    splits, _, _ = compare.read_run(ref)
    other = fake_run(tmp_path / "b", {0: [3, 1, 2], 1: [0, 4]}, shift=0.01)
    sc = compare.run_scores(other, splits)
    assert np.allclose(sc.test[0], [0.31, 0.11, 0.21]) and np.allclose(sc.test[1], [0.01, 0.41])
    assert sc.dev["roc_auc"] == pytest.approx([0.91, 0.91]) and sc.seconds_per_seed == 2.0
    base = compare.run_scores(ref, splits, "baseline_probability")
    assert np.allclose(base.test[0], 0.5) and base.dev["pr_auc"] == [0.6, 0.6]


def test_refuses_a_run_on_other_rows(compare, tmp_path):
    ref = fake_run(tmp_path / "a", {0: [3, 1, 2]})
    splits, _, _ = compare.read_run(ref)
    with pytest.raises(SystemExit, match="differs from the reference"):
        compare.run_scores(fake_run(tmp_path / "b", {0: [3, 1, 5]}), splits)
    with pytest.raises(SystemExit, match="differs from the reference"):
        compare.run_scores(fake_run(tmp_path / "c", {0: [3, 1, 2], 1: [0]}), splits)
    events = fake_run(tmp_path / "d", {0: [3, 1, 2]})
    (events / "splits.json").write_text(json.dumps({"kind": "events", "seeds": {}}))
    with pytest.raises(SystemExit, match="not a session-table run"):
        compare.read_run(events)
