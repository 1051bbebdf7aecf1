"""A non-editable install puts the three commands on PATH, and they work from any directory.

The wheel is built offline from a copy of the sources (``pip wheel --no-deps
--no-build-isolation``) and installed into a fresh virtual environment; the runtime
dependencies (NumPy, Numba, ...) come from this environment through a ``.pth`` line with
its site-packages (whose own ``.pth`` files, the editable install of this checkout among
them, are not read), so the package itself can only come from the wheel. The commands run
in an empty temporary directory: ``--help``, a one-epoch training on the bundled data (found
where the wheel installed it) and on a small CSV, scoring, and an export.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What the wheel is built from (everything setup.cfg names).
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "data", "nn_core",
           "features", "propensity")
COMMANDS = ("propensity-train", "propensity-predict", "propensity-export", "propensity-serve")

pytestmark = pytest.mark.slow


def _run(args, cwd, env, timeout=600):
    res = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, f"{args}:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin directory, environment, empty working directory) of a fresh installation."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", root / "dist"], src, None)
    wheel = next((root / "dist").glob("purchase_propensity-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", venv], root, None)
    python = venv / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                root, None).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], root, None)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    work = root / "work"
    work.mkdir()
    return venv / "bin", env, work


def test_commands_are_on_path_and_the_package_comes_from_the_wheel(installed):
    bindir, env, work = installed
    for command in COMMANDS:
        assert shutil.which(command, path=env["PATH"]) == str(bindir / command)
        res = _run([command, "--help"], work, env)
        assert res.stdout.startswith(f"usage: {command}")
    where = _run([bindir / "python", "-c", "import nn_core, features, propensity.train as t; "
                  "print(nn_core.__file__); print(features.__file__); print(t.DEFAULT_DATA)"],
                 work, env).stdout.split()
    venv = bindir.parent
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert Path(where[2]).is_file() and (Path(where[2]).parent / "README.md").is_file()
    # the licences travel with the package: MIT for the code, the data's note beside it
    meta = _run([bindir / "python", "-c", "from importlib.metadata import distribution as d; "
                 "m = d('purchase-propensity'); print(m.metadata['License']); "
                 "print(*(str(f) for f in m.files if '.dist-info/' in str(f)))"],
                work, env).stdout.split()
    assert meta[0] == "MIT"
    # setuptools >= 77 puts them under .dist-info/licenses/ (data/README.md keeps its
    # folder there), older ones at the top of .dist-info/
    assert any(f.endswith(("dist-info/LICENSE", "licenses/LICENSE")) for f in meta), meta
    assert any(f.endswith(("dist-info/README.md", "licenses/data/README.md"))
               for f in meta), meta


def test_train_predict_export_from_an_empty_directory(installed):
    _, env, work = installed
    # the bundled data, found where the wheel put it
    _run(["propensity-train", "--epochs", "1", "--output", "bundled", "--quiet"], work, env)
    assert json.loads((work / "bundled" / "metrics.json").read_text())["model"]["test"]
    # a small CSV of one's own
    with open(ROOT / "data" / "online_shoppers_intention.csv", newline="") as fh:
        rows = list(csv.reader(fh))[:601]
    with open(work / "small.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    _run(["propensity-train", "--input", "small.csv", "--epochs", "1", "--output", "run",
          "--quiet"], work, env)
    assert (work / "run" / "model.json").is_file()
    _run(["propensity-predict", "--model", "run", "--input", "small.csv", "--output",
          "scores.csv"], work, env)
    with open(work / "scores.csv", newline="") as fh:
        scored = list(csv.DictReader(fh))
    assert len(scored) == 600 and all(0 <= float(r["propensity"]) <= 1 for r in scored)
    _run(["propensity-export", "--model", "run", "--format", "python", "--output", "export",
         "--name",
          "shop"], work, env)
    assert sorted(p.name for p in (work / "export").iterdir()) == ["shop.json", "shop.py"]


@pytest.mark.parametrize(("args", "status", "names"), [
    (["propensity-train", "--input", "missing.csv"], 1, "missing.csv: file not found"),
    (["propensity-predict", "--model", "nowhere", "--input", "x.csv"], 1, "nowhere"),
    (["propensity-export", "--model", "nowhere", "--format", "onnx"], 2, "--output"),
    (["propensity-serve", "--model", "nowhere"], 1, "nowhere"),
])
def test_errors_name_the_installed_command(installed, args, status, names):
    """One line that starts with the command's own name (not train.py), no traceback."""
    _, env, work = installed
    res = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == status
    assert res.stderr.startswith(f"{args[0]}: error:") and names in res.stderr
    assert len(res.stderr.splitlines()) == 1
