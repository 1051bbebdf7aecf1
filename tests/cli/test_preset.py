"""train.py --preset: a named set of defaults that --config files and flags override."""

from __future__ import annotations

import json

import pytest

from propensity import config, train


def resolved(argv: list[str]) -> dict:
    """The settings train.py would run with (parsed exactly as train.main does)."""
    parser = train.build_parser()
    train.apply_preset(parser, argv)
    return vars(config.parse_args(parser, argv, {"ranges": train._ranges}))


def test_preset_none_is_the_built_in_defaults():
    plain, named = resolved([]), resolved(["--preset", "none"])
    assert plain == named
    assert (plain["lr"], plain["ensemble"], plain["numeric_encoding"]) == (1e-3, 1, "standard")


def test_dev_best_sets_its_settings_and_flags_win():
    args = resolved(["--preset", "dev-best"])
    for dest, value in train.PRESETS["dev-best"].items():
        assert args[dest] == value
    assert args["preset"] == "dev-best"
    args = resolved(["--preset", "dev-best", "--lr", "0.01", "--ensemble", "2"])
    assert (args["lr"], args["ensemble"], args["numeric_encoding"]) == (0.01, 2,
                                                                         "standard+ple")


def test_preset_in_a_config_file_and_the_file_beats_the_preset(tmp_path):
    only_preset = tmp_path / "a.json"
    only_preset.write_text(json.dumps({"preset": "dev-best"}))
    args = resolved(["--config", str(only_preset)])
    assert (args["lr"], args["ensemble"]) == (3e-3, 5)
    both = tmp_path / "b.json"
    both.write_text(json.dumps({"preset": "dev-best", "ensemble": 3}))
    args = resolved(["--config", str(both)])
    assert (args["lr"], args["ensemble"]) == (3e-3, 3)
    # The command line's preset is the one used, and its flags still win over the file.
    args = resolved(["--config", str(both), "--preset", "none", "--lr", "0.02"])
    assert (args["preset"], args["lr"], args["ensemble"]) == ("none", 0.02, 3)


def test_bad_presets_are_one_line_usage_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        train.main(["--preset", "best-ever"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--preset" in err and "dev-best" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        train.main(["--preset", "dev-best", "--events", str(tmp_path / "log.csv")])
    assert exc.value.code == 2
    assert "--preset applies to session tables" in capsys.readouterr().err


@pytest.mark.slow
def test_a_dev_best_run_saves_the_combined_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--preset", "dev-best", "--epochs", "2", "--quiet",
                       "--importance-repeats", "0", "--output", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["preset"] == "dev-best" and saved["ensemble"] == 5 and saved["lr"] == 3e-3
    model = json.loads((out / "model.json").read_text())
    assert len(model["members"]) == 5
    numeric = [c for c in json.loads((out / "preprocess.json").read_text())["columns"]
               if c["kind"] == "numeric"]
    # standard+ple: each numeric column keeps its standardised value and adds PLE bins.
    assert numeric and all(c["encoding"]["kind"] == "piecewise_linear" and c["encoding"]["value"]
                           for c in numeric)
