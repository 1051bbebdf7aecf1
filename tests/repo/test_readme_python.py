"""The README's Python runs as written: every ```python block, in order, in one namespace.

The blocks run in a subprocess whose working directory looks like the repository root to
them (``data/`` is the checkout's, linked) but is a temporary folder, so the files they
write (all under ``runs/``, which .gitignore covers: ``tests/repo/test_readme_paths.py``) land
there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

def readme_blocks() -> list[str]:
    """The ```python blocks of README.md, in order."""
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_the_python_it_promises():
    text = "\n".join(readme_blocks())
    assert len(readme_blocks()) >= 3
    for needed in ("validation_data=", "history.best_epoch", "PropensityClassifier",
                   "make_pipeline", '"--format", "onnx"', "train.main", "predict.main",
                   "export.main"):
        assert needed in text, needed
    assert "n_inputs=75" not in text


@pytest.mark.slow  # it trains networks and runs the three commands (about 10 s warm)
def test_every_python_block_runs_in_order(tmp_path):
    pytest.importorskip("sklearn", reason="the README's pipeline needs scikit-learn")
    pytest.importorskip("onnxruntime", reason="the README's ONNX block needs onnxruntime")
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n\n".join(readme_blocks()), encoding="utf-8")
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for written in ("runs/model/model.json", "runs/model/preprocess.json",
                    "runs/sk_model/model.json", "runs/readme/metrics.json", "runs/scores.csv",
                    "runs/export/propensity.onnx", "runs/export/propensity.json"):
        assert (tmp_path / written).is_file(), written
    meta = json.loads((tmp_path / "runs" / "model" / "model.json").read_text())
    assert meta["n_inputs"] == 80  # the bundled data's feature count (the old snippet said 75)
