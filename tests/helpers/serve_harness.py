"""The HTTP server as a subprocess, and small models to serve (tests/cli/test_serve.py and
benchmarks/bench_serve.py; this module has no tests)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"


@contextlib.contextmanager
def running_server(model_dir: Path, *args: str, timeout: float = 120.0,
                   prelude: str = "") -> Iterator[dict]:
    """Start ``python serve.py --model DIR --port 0 ARGS`` on loopback and yield
    ``{"url", "process", "stderr", "drain"}`` once it listens (the port it prints); stop it
    (SIGTERM) afterwards. ``stderr`` collects the server's later lines (the thread
    ``drain`` ends when the server has exited and they are all in). ``prelude``: Python
    code the server's interpreter runs before serve.py (a test's injected fault)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    serve = str(REPO / "serve.py")
    program = [serve] if not prelude else [
        "-c", f"{prelude}\nimport runpy, sys\nsys.argv[0] = {serve!r}\n"
              f"runpy.run_path({serve!r}, run_name='__main__')"]
    proc = subprocess.Popen([sys.executable, *program, "--model", str(model_dir),
                             "--host", "127.0.0.1", "--port", "0", *args],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + timeout
    try:
        while url is None:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError(f"serve.py exited ({proc.wait()}): {''.join(lines)}")
            lines.append(line)
            if " on http://" in line:
                url = line.rsplit(" on ", 1)[1].strip()
            if time.monotonic() > deadline:
                raise TimeoutError(f"serve.py did not start in {timeout} s: {''.join(lines)}")
        drain = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        drain.start()
        yield {"url": url, "process": proc, "stderr": lines, "drain": drain}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def uci_rows(step: int = 20, start: int = 0) -> list[dict]:
    """Every ``step``-th UCI data row from ``start``, as the CSV's text cells."""
    import pandas as pd

    frame = pd.read_csv(UCI, dtype=str, keep_default_na=False)
    return frame.iloc[start::step].to_dict("records")


def typed(row: dict) -> dict:
    """A row of text cells as a JSON client sends it: numbers as numbers, ``TRUE`` and
    ``FALSE`` as booleans, other text as text."""
    from features.tabular import UCI_NUMERIC

    out = {}
    for k, v in row.items():
        if k in UCI_NUMERIC:
            out[k] = int(v) if v.lstrip("-").isdigit() else float(v)
        else:
            out[k] = {"TRUE": True, "FALSE": False}.get(v, v)
    return out


def table_model(path: Path, seed: int = 0, threshold: float = 0.3) -> Path:
    """A small UCI model (every 20th row, 3 epochs of a 4-unit network, NumPy backend) with a
    threshold, written by ``save_model``; another ``seed`` gives other weights."""
    from features.tabular import UCI_CATEGORICAL, UCI_NUMERIC, Preprocessor, Schema, load_table
    from nn_core import MLP
    from nn_core.modeldir import save_model

    frame = load_table(UCI, Schema.uci()).iloc[::20]
    pre = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue").fit(frame)
    X = pre.transform(frame)
    net = MLP(X.shape[1], (4,), backend="numpy", seed=seed)
    net.fit(X, frame["Revenue"].to_numpy(dtype=np.int8), epochs=3, batch_size=64, lr=1e-2)
    return save_model(path, net, pre, threshold=threshold)


def events_model(path: Path, X) -> Path:
    """An event-log model (untrained 4-unit network) over the feature frame ``X`` of
    ``features.events.features_at``, with a threshold at the median score."""
    from features.tabular import Preprocessor
    from nn_core import MLP
    from nn_core.modeldir import save_model

    train = X.assign(label=np.arange(len(X)) % 2)
    pre = Preprocessor(list(X.columns), [], target="label", id_column="user_id",
                       source={"kind": "events", "format": "canonical"}).fit(train)
    net = MLP(pre.n_features, (4,), backend="numpy", seed=1)
    p = net.predict_proba(pre.transform(X))
    return save_model(path, net, pre, threshold=float(np.median(p)))


def event_records(log, sessions: bool) -> list[dict]:
    """A canonical event table as the JSON events of ``POST /events``: ISO timestamps,
    ``session_id`` only with ``sessions`` (else the server derives sessions, as the reader
    did), ``null`` for a missing price."""
    cols = [c for c in ("user_id", "timestamp", "event_type", "session_id", "item_id",
                        "category", "price") if c in log.columns]
    if not sessions and "session_id" in cols:
        cols.remove("session_id")
    out = log[cols].assign(timestamp=[t.isoformat() for t in log["timestamp"]],
                           event_type=log["event_type"].astype(str))
    records = out.to_dict("records")
    for r in records:
        if "price" in r and r["price"] != r["price"]:
            r["price"] = None
    return records
