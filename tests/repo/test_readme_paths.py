"""Everything the README's commands write lands in a git-ignored folder, not in the checkout.

The paths are read from README.md itself: ``--output``/``--out`` of the shell commands and
of the ``main([...])`` calls, ``save_model("...")`` and ``.save("...")`` of the Python blocks,
and ``runs/`` for a ``train.py`` run without ``--output``. They are matched against the
checkout's .gitignore with the rules git applies (``/`` anchors a pattern to the root, a
trailing ``/`` matches folders only, a folder's ignore covers what is inside).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
SHELL_OUTPUT = re.compile(r"--out(?:put)?[ =](\S+)")
PYTHON_OUTPUT = re.compile(r'"--out(?:put)?",\s*"([^"]+)"|save_model\("([^"]+)"|\.save\("([^"]+)"')


def written_paths(readme: str) -> set[str]:
    """The paths (relative to the repository root) that README's code blocks write."""
    paths = set()
    for lang, body in FENCE.findall(readme):
        text = body.replace("\\\n", " ")  # a shell command continued on the next line
        if lang == "bash":
            for command in text.splitlines():
                found = SHELL_OUTPUT.findall(command)
                paths.update(found)
                if "train.py" in command and not found:
                    paths.add("runs/")  # runs/<timestamp>/ and runs/latest
        else:
            paths.update(p for groups in PYTHON_OUTPUT.findall(text) for p in groups if p)
    return paths


def ignored(path: str, gitignore: str) -> bool:
    """Whether ``path`` (a file, or a folder when it ends with ``/``) or a folder above it
    is ignored by the patterns of ``gitignore`` (no ``!`` negations: the repo has none)."""
    patterns = [line.strip() for line in gitignore.splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "negations need a fuller matcher"
    parts = Path(path).parts
    for depth in range(1, len(parts) + 1):
        here = "/".join(parts[:depth])
        is_dir = depth < len(parts) or path.endswith("/")
        for pattern in patterns:
            dir_only, body = pattern.endswith("/"), pattern.strip("/")
            if dir_only and not is_dir:
                continue
            anchored = pattern.startswith("/") or "/" in body
            if fnmatch.fnmatchcase(here if anchored else parts[depth - 1], body):
                return True
    return False


def test_the_matcher_follows_gitignore_rules():
    rules = "runs/\n/export/\n*.pyc\nbuild/\n"
    assert ignored("runs/x/metrics.json", rules) and ignored("runs/", rules)
    assert ignored("export/c.h", rules) and not ignored("docs/export/c.h", rules)
    assert ignored("a/b.pyc", rules) and ignored("sub/build/x", rules)
    assert not ignored("scores.csv", rules) and not ignored("runs", rules)  # runs: a file
    assert not ignored("model/model.json", rules)


def test_the_readme_paths_are_found():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paths = written_paths(readme)
    # predict's output, both exports, the model directories and the commands' run directory
    assert len(paths) >= 5, paths
    assert any(p.endswith("scores.csv") for p in paths), paths
    assert written_paths('```bash\npython predict.py --model m \\\n    --output x.csv\n```\n'
                         '```python\nsave_model("m2/", m)\n```\n') == {"x.csv", "m2/"}


def test_every_path_the_readme_writes_is_git_ignored():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8")
    exposed = sorted(p for p in written_paths(readme) if not ignored(p, gitignore))
    assert not exposed, f"README commands write into the checkout, not git-ignored: {exposed}"
