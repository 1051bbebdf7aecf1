"""train.py --rank-knots: the Gaussian rank's knot count reaches the model's preprocess.json
and config.json; refused without a rank encoding or out of range."""

from __future__ import annotations

import json

import pytest

from propensity import train

TINY = ("--hidden", "4", "--epochs", "1", "--quiet", "--importance-repeats", "0")


def _call(argv, capsys):
    try:
        status = train.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        status = exc.code
    return status, capsys.readouterr().err


@pytest.mark.slow  # trains on the bundled table
def test_rank_knots_reach_the_model(tmp_path, capsys):
    run = tmp_path / "run"
    status, err = _call(["--numeric-encoding", "quantile", "--rank-knots", "6", *TINY,
                         "--output", run], capsys)
    assert status == 0, err
    columns = [c for c in json.loads((run / "preprocess.json").read_text())["columns"]
               if c["kind"] == "numeric"]
    assert columns and all(1 <= len(c["encoding"]["knots"]) <= 6 for c in columns)
    assert max(len(c["encoding"]["knots"]) for c in columns) == 6
    assert json.loads((run / "config.json").read_text())["rank_knots"] == 6


@pytest.mark.parametrize(("args", "message"), [
    (("--rank-knots", "8"), "--rank-knots applies to --numeric-encoding quantile or "
                            "quantile+ple or standard+quantile or standard+quantile+ple only"),
    (("--numeric-encoding", "quantile", "--rank-knots", "1"),
     "--rank-knots must be in [2, 4096], got 1"),
    (("--numeric-encoding", "quantile", "--ple-bins", "4"),
     "--ple-bins applies to --numeric-encoding ple or standard+ple or quantile+ple"),
])
def test_refusals_are_one_line(tmp_path, capsys, args, message):
    status, err = _call([*args, *TINY, "--output", tmp_path / "run"], capsys)
    assert status == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
