"""docs/events.md's first snippet runs as written, from the repository root (review finding
15: it called ``load_event_splits(path, ...)`` with ``path`` undefined)."""

import re
from pathlib import Path

import pytest
from events_common import REAL_EVENTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not REAL_EVENTS.is_dir(),
                    reason=f"real event samples not found at {REAL_EVENTS}")
def test_the_first_events_snippet_runs_as_written(monkeypatch):
    text = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(ROOT)
    names: dict = {}
    exec(compile(snippet, "docs/events.md", "exec"), names)
    assert names["ev"].attrs["report"]["format"] == "taobao"
    X, y = names["X"], names["y"]
    assert len(X) == len(y) > 0
    splits = names["splits"]
    assert len(splits.test[0]) == len(X)  # the snapshot at the test cutoff, 2017-12-01T16:00Z
