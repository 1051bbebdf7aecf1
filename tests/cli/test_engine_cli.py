"""--engine and --scheduler on the command lines: refused where they do not apply."""

from __future__ import annotations

import pytest

from propensity import predict, train


@pytest.mark.parametrize("argv, message", [
    (["--input", "t.csv", "--scheduler", "tcp://h:8786"],
     "--scheduler only applies to --engine dask"),
    (["--input", "t.csv", "--engine", "dask"], "--engine dask scores event logs (--events)"),
    (["--events", "t.csv", "--engine", "dask", "--drift-plot", "--output", "o.csv"],
     "error: --drift-plot: --engine dask has no input drift check"),
    (["--events", "t.csv", "--engine", "dask", "--drift-output", "d.json", "--drift-plot"],
     "error: --drift-output and --drift-plot: --engine dask has no input drift check"),
])
def test_predict_refuses(tmp_path, capsys, argv, message):
    (tmp_path / "t.csv").write_text("a\n1\n")
    if "--events" in argv:
        pytest.importorskip("dask", reason="--engine dask needs the scale extra")
    argv = [str(tmp_path / a) if a.endswith((".csv", ".json")) else a for a in argv]
    assert predict.main(["--model", str(tmp_path / "m"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def _exit_status(argv) -> int:
    try:
        return train.main(argv)
    except SystemExit as exc:  # a usage error found while parsing
        return exc.code


def test_train_refuses_engine_with_a_table(tmp_path, capsys):
    assert _exit_status(["--engine", "dask", "--output", str(tmp_path / "r")]) == 2
    assert "--engine applies to event logs (--events) only" in capsys.readouterr().err


def test_train_refuses_scheduler_without_dask(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user_id,timestamp,event_type\n1,2024-01-01T00:00:00Z,view\n")
    assert _exit_status(["--events", str(log), "--scheduler", "tcp://h:8786",
                         "--output", str(tmp_path / "r")]) == 2
    assert "--scheduler only applies to --engine dask" in capsys.readouterr().err
