"""The command lines' shared names, --config files, the reproduction files of a run
directory, and event logs given as several files.

* names: ``--input``, ``--output``, ``--model``, ``--events-format`` in train.py, predict.py and
  the export; the old spellings still work and print one deprecation line;
* ``--config`` (``propensity/config.py``): every setting from a JSON or TOML file, the command
  line overriding it, unknown keys refused; a run's ``config.json`` reproduces it bit for bit;
* ``splits.json`` and ``test_predictions.csv`` of a run directory;
* ``--events`` with several files or a glob, ``--min-history``, ``--stride``, and predict.py's
  ``--cutoff`` defaulting to the log's end.

Training runs in this process with a tiny network and few epochs (a few seconds warm).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from features.events import expand_paths, read_events
from features.synthetic import generate_events, write_canonical_csv
from nn_core.export import cli as export_cli
from propensity import config, predict, train

ROOT = Path(__file__).resolve().parents[2]
UCI = ROOT / "data" / "online_shoppers_intention.csv"
TINY = ["--hidden", "4", "--epochs", "3", "--quiet"]


def call(main, argv, capsys) -> tuple[int, str]:
    """``main(argv)`` in this process: (exit status, stderr)."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        status = exc.code
    return status, capsys.readouterr().err


def parse(parser, argv, capsys) -> tuple[dict, list[str]]:
    """The parsed settings of ``argv`` and the lines printed on stderr."""
    args = config.parse_args(parser, [str(a) for a in argv])
    return vars(args), capsys.readouterr().err.splitlines()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("old, new, dest, value", [
    ("--data", "--input", "input", "t.csv"),
    ("--out", "--output", "output", "runs/x"),
    ("--format", "--events-format", "events_format", "taobao"),
])
def test_train_old_spellings_are_aliases_with_one_deprecation_line(old, new, dest, value,
                                                                   capsys):
    got_new, err_new = parse(train.build_parser(), [new, value], capsys)
    got_old, err_old = parse(train.build_parser(), [old, value], capsys)
    assert got_old == got_new and str(got_new[dest]) == value
    assert err_new == []
    assert err_old == [f"train.py: {old} is deprecated; use {new}"]
    got_eq, err_eq = parse(train.build_parser(), [f"{old}={value}"], capsys)
    assert got_eq == got_new and len(err_eq) == 1


def test_predict_old_format_spelling(capsys):
    argv = ["--model", "m", "--events", "a.csv", "--events-format", "rees46"]
    got_new, err_new = parse(predict.build_parser(), argv, capsys)
    got_old, err_old = parse(predict.build_parser(), [*argv[:4], "--format", "rees46"], capsys)
    assert got_old == got_new and got_new["events_format"] == "rees46"
    assert err_new == [] and err_old == ["predict.py: --format is deprecated; use "
                                         "--events-format"]


def test_help_lists_the_new_names_and_notes_the_old(capsys):
    for parser, old in ((train.build_parser(), ("--data", "--out", "--format")),
                        (predict.build_parser(), ("--format",))):
        text = parser.format_help()
        body, note = text.split("Deprecated spellings")
        assert all(f"{o} " not in body and f"{o}," not in body for o in old), body
        assert all(o in note for o in old)
        assert "--events-format" in body and "--output" in body


def test_export_old_and_new_spellings_agree(tmp_path, capsys):
    missing = tmp_path / "no_model"
    new = call(export_cli.main, ["--model", missing, "--format", "c", "--output",
                                 tmp_path / "e"], capsys)
    old = call(export_cli.main, [missing, "--format", "c", "--out", tmp_path / "e"], capsys)
    assert new[0] == old[0] == 1
    prog = "python -m nn_core.export"
    assert new[1].splitlines() == [f"{prog}: error: {missing}: model directory not found"]
    assert sorted(old[1].splitlines()) == sorted([
        f"{prog}: --out is deprecated; use --output",
        f"{prog}: the positional MODEL_DIR is deprecated; use --model MODEL_DIR",
        *new[1].splitlines()])
    both = call(export_cli.main, [missing, "--model", missing, "--format", "c", "--output",
                                  tmp_path / "e"], capsys)
    assert both[0] == 2 and "not both" in both[1] and len(both[1].splitlines()) == 1
    neither = call(export_cli.main, ["--format", "c", "--output", tmp_path / "e"], capsys)
    assert neither[0] == 2 and "required: --model" in neither[1]
    assert not (tmp_path / "e").exists()


# --------------------------------------------------------------------------- --config


def test_config_file_sets_any_flag_and_the_command_line_overrides_it(tmp_path, capsys):
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"lr": 0.01, "hidden": [16, 8], "batch-size": 64,
                                     "seeds": "0,1", "no_restore_best": True,
                                     "events-format": "taobao"}))
    toml_file = tmp_path / "c.toml"
    toml_file.write_text('lr = 0.01\nhidden = [16, 8]\nbatch_size = 64\nseeds = "0,1"\n'
                         'no-restore-best = true\nevents_format = "taobao"\n')
    for path in (json_file, toml_file):
        got, err = parse(train.build_parser(), ["--config", path], capsys)
        assert (got["lr"], got["hidden"], got["batch_size"], got["seeds"]) == (
            0.01, (16, 8), 64, (0, 1))
        assert got["no_restore_best"] is True and got["events_format"] == "taobao"
        assert err == []
        over, _ = parse(train.build_parser(), ["--lr", "0.2", "--config", path, "--hidden",
                                               "3"], capsys)
        assert (over["lr"], over["hidden"], over["batch_size"]) == (0.2, (3,), 64)
    defaults, _ = parse(train.build_parser(), [], capsys)
    assert defaults["lr"] == train.NetConfig().lr


@pytest.mark.parametrize("content, name, expected", [
    ({"lr": 0.01, "learning_rate": 1}, "c.json", "unknown key 'learning_rate'"),
    ({"help": True}, "c.json", "unknown key 'help'"),
    ({"epochs": "many"}, "c.json", "key 'epochs': invalid int value: 'many'"),
    ({"activation": "swish"}, "c.json", "key 'activation': 'swish' is not one of"),
    ({"quiet": "yes"}, "c.json", "key 'quiet': expected true or false"),
    ({"lr": None}, "c.json", "key 'lr': null is not a value of --lr"),
    ({"ranges": {"x": [2, 1]}}, "c.json", "low 2 is above high 1"),
    ([1, 2], "c.json", "must be a JSON object"),
    ("lr = ", "c.toml", "not valid TOML"),
    ("{", "c.json", "not valid JSON"),
])
def test_bad_config_files_are_refused_in_one_line(tmp_path, capsys, content, name, expected):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    status, err = call(train.main, ["--config", path], capsys)
    assert status == 1
    assert len(err.splitlines()) == 1 and expected in err and f"--config {path}" in err, err


@pytest.mark.parametrize("name, text", [
    ("c.json", '{"lr": 0.01, "seeds": [0, 1]}'),
    ("c.toml", 'lr = 0.01\nseeds = [0, 1]\n'),
])
def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path, capsys, name, text):
    """As a CSV is: editors on Windows start UTF-8 files with one."""
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    got, err = parse(train.build_parser(), ["--config", path], capsys)
    assert (got["lr"], got["seeds"], err) == (0.01, (0, 1), [])


@pytest.mark.parametrize("argv, seed", [
    (["--seeds", "0,0"], 0),
    (["--seeds", "1,0,1"], 1),
    (["--config", {"seeds": [0, 0]}], 0),
    (["--config", {"seeds": "2,3"}, "--seeds", "5,4,5,4"], 5),
])
def test_a_seed_given_twice_is_a_usage_error(tmp_path, capsys, argv, seed):
    """Whether from the command line or a file: one check, before the data is read."""
    for a in argv:
        if isinstance(a, dict):
            (tmp_path / "c.json").write_text(json.dumps(a))
    argv = [tmp_path / "c.json" if isinstance(a, dict) else a for a in argv]
    status, err = call(train.main, [*argv, "--input", tmp_path / "missing.csv", "--output",
                                    tmp_path / "run", *TINY], capsys)
    assert (status, err) == (2, f"train.py: error: --seeds: {seed} is listed twice (a "
                             "repeated seed would count one run twice in the mean and std)\n")
    assert not (tmp_path / "run").exists()


def test_an_old_key_works_with_a_deprecation_line(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data": "t.csv"}))
    got, err = parse(train.build_parser(), ["--config", path], capsys)
    assert str(got["input"]) == "t.csv"
    assert err == [f"train.py: --config {path}: key 'data' is deprecated; use 'input'"]


@pytest.mark.slow
def test_a_role_file_keeps_working(tmp_path, capsys):
    table = tmp_path / "t.csv"
    rows = [f"{i % 7},{'ab'[i % 2]},{int(i % 3 == 0)},{i % 5 - 1}" for i in range(300)]
    table.write_text("x,c,y,z\n" + "\n".join(rows) + "\n")
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({"target": "y", "numeric": ["x", "z"], "categorical": ["c"],
                                 "ranges": {"z": [0, None]}}))
    status, err = call(train.main, ["--input", table, "--config", roles, "--output",
                                    tmp_path / "r", *TINY], capsys)
    assert status == 1 and "column 'z'" in err, err
    roles.write_text(json.dumps({"target": "y", "numeric": ["x", "z"], "categorical": ["c"],
                                 "ranges": {"z": [-1, None]}}))
    status, err = call(train.main, ["--input", table, "--config", roles, "--output",
                                    tmp_path / "r", *TINY], capsys)
    assert status == 0, err
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["numeric"] == ["x", "z"] and saved["ranges"] == {"z": [-1, None]}


# --------------------------------------------------------------------------- reproduction


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A 2-seed run on the bundled table and its repetition from its own config.json."""
    tmp = tmp_path_factory.mktemp("repro")
    first = tmp / "first"
    assert train.main(["--input", str(UCI), "--seeds", "0,1", "--lr", "0.003", *TINY,
                       "--output", str(first)]) == 0
    again = tmp / "again"
    assert train.main(["--config", str(first / "config.json"), "--output", str(again)]) == 0
    return first, again


@pytest.mark.slow
def test_config_json_reproduces_the_run_bit_for_bit(two_runs):
    first, again = two_runs
    saved = json.loads((first / "config.json").read_text())
    assert saved["lr"] == 0.003 and saved["seeds"] == [0, 1] and saved["hidden"] == [4]
    assert saved["input"] == str(UCI) and "output" not in saved and "config" not in saved
    assert {"batch_size", "dtype", "patience", "split", "events_format"} <= set(saved)
    for name in ("weights.npz", "baseline/weights.npz", "model.json", "preprocess.json",
                 "test_predictions.csv", "splits.json", "config.json", "history.csv"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in two_runs)
    for key in ("model", "baseline", "mean", "std", "runs", "best_epoch", "config"):
        assert m1[key] == m2[key], key


@pytest.mark.slow
def test_splits_json_partitions_the_data_rows_per_seed(two_runs):
    first, _ = two_runs
    splits = json.loads((first / "splits.json").read_text())
    metrics = json.loads((first / "metrics.json").read_text())
    n = metrics["data"]["rows"]
    assert splits["kind"] == "table" and set(splits["seeds"]) == {"0", "1"}
    for parts in splits["seeds"].values():
        rows = parts["train"] + parts["dev"] + parts["test"]
        assert sorted(rows) == list(range(n))
        assert {k: len(v) for k, v in parts.items()} == metrics["data"]["split_sizes"]
    assert splits["seeds"]["0"]["test"] != splits["seeds"]["1"]["test"]
    labels = pd.read_csv(UCI)["Revenue"].astype(int).to_numpy()
    with open(first / "test_predictions.csv", newline="") as fh:
        predictions = list(csv.DictReader(fh))
    for seed in ("0", "1"):
        mine = [p for p in predictions if p["seed"] == seed]
        assert [int(p["row"]) for p in mine] == splits["seeds"][seed]["test"]
        assert [int(p["label"]) for p in mine] == labels[splits["seeds"][seed]["test"]].tolist()
        assert all(0 < float(p["probability"]) < 1 and 0 < float(p["baseline_probability"]) < 1
                   for p in mine)


@pytest.mark.slow
def test_test_predictions_are_the_saved_models_scores(two_runs, tmp_path, capsys):
    """Seed 0's test probabilities are what predict.py gives the saved model on those rows."""
    first, _ = two_runs
    splits = json.loads((first / "splits.json").read_text())
    test_rows = splits["seeds"]["0"]["test"]
    cut = tmp_path / "test.csv"
    pd.read_csv(UCI, dtype=str, keep_default_na=False).iloc[test_rows].to_csv(cut, index=False)
    assert call(predict.main, ["--model", first, "--input", cut, "--output",
                               tmp_path / "s.csv"], capsys)[0] == 0
    scored = pd.read_csv(tmp_path / "s.csv").sort_values("row")["propensity"].to_numpy()
    saved = pd.read_csv(first / "test_predictions.csv").query("seed == 0")["probability"]
    assert scored == pytest.approx(saved.to_numpy(), rel=1e-6, abs=1e-9)


# --------------------------------------------------------------------------- event logs


@pytest.fixture(scope="module")
def daily_logs(tmp_path_factory):
    """A 6-day synthetic log as one file and as daily files, days 3 and 4 also in an
    overlapping file."""
    tmp = tmp_path_factory.mktemp("daily")
    events = generate_events(n_users=300, days=6, n_items=300, n_categories=10, seed=5)
    whole = tmp / "whole.csv"
    write_canonical_csv(events, whole)
    days = events["timestamp"].dt.floor("D")
    for i, day in enumerate(sorted(days.unique())):
        write_canonical_csv(events[days == day], tmp / f"day_{i}.csv")
    write_canonical_csv(events[(days >= sorted(days.unique())[3]) &
                               (days <= sorted(days.unique())[4])], tmp / "day_overlap.csv")
    return tmp, whole, len(events)


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["user_id", "timestamp", "event_type", "item_id"],
                          kind="stable").reset_index(drop=True)


def test_several_files_are_read_as_one_log(daily_logs):
    tmp, whole, n = daily_logs
    files = expand_paths([str(tmp / "day_*.csv")])
    assert [f.name for f in files] == [f"day_{i}.csv" for i in range(6)] + ["day_overlap.csv"]
    assert expand_paths([files[0], str(tmp / "day_0.csv")]) == [files[0]]
    one = read_events(whole, "canonical")
    many = read_events(files, "canonical")
    pd.testing.assert_frame_equal(_canonical(many), _canonical(one))
    report = many.attrs["report"]
    assert report["n_events"] == n and report["files"] == [str(f) for f in files]
    assert report["n_overlap_dropped"] == sum(1 for _ in open(tmp / "day_overlap.csv")) - 1


def test_a_repeated_event_within_one_file_is_kept(tmp_path):
    rows = ["user_id,timestamp,event_type", "1,2024-01-01T10:00:00Z,view",
            "1,2024-01-01T10:00:00Z,view", "2,2024-01-01T10:20:00Z,cart",
            "3,2024-01-01T10:30:00Z,view"]
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "b.csv").write_text("\n".join(rows[:2] + rows[3:4]) + "\n")
    log = read_events([tmp_path / "a.csv", tmp_path / "b.csv"], "canonical")
    # user 1's two views (twice in a.csv, once in b.csv), user 2's cart, user 3's view
    assert log["user_id"].tolist() == [1, 1, 2, 3]
    assert log.attrs["report"]["n_overlap_dropped"] == 2


def test_files_of_one_log_must_have_the_same_columns(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,timestamp,event_type\n1,2024-01-01T10:00Z,view\n")
    (tmp_path / "b.csv").write_text("user_id,timestamp,event_type,price\n"
                                    "1,2024-01-02T10:00Z,view,3.5\n")
    with pytest.raises(ValueError, match=r"b\.csv: its columns .* differ from those of"):
        read_events([tmp_path / "a.csv", tmp_path / "b.csv"], "canonical")
    with pytest.raises(ValueError, match="no file matches"):
        expand_paths([str(tmp_path / "nothing_*.csv")])


@pytest.mark.slow
def test_train_on_daily_files_with_min_history_and_stride(daily_logs, tmp_path, capsys):
    tmp, whole, _ = daily_logs
    run = tmp_path / "run"
    status, err = call(train.main, ["--events", tmp / "day_*.csv", "--min-history", "12h",
                                    "--stride", "12h", "--output", run, *TINY], capsys)
    assert status == 0, err
    cutoffs = json.loads((run / "metrics.json").read_text())["data"]["splits"]["cutoffs"]
    # 6 days, horizon 1d: test at day 5, dev at day 4, training from day 3 back every 12 h
    # while 12 h of log precede: 3, 2.5, 2, 1.5, 1, 0.5 days after the start.
    assert len(cutoffs["train"]) == 6
    saved = json.loads((run / "config.json").read_text())
    assert saved["min_history"] == "12h" and saved["stride"] == "12h"
    assert [Path(p).name for p in saved["events"]] == [f"day_{i}.csv" for i in range(6)] + [
        "day_overlap.csv"]
    splits = json.loads((run / "splits.json").read_text())
    assert splits["kind"] == "events" and splits["cutoffs"] == cutoffs
    status, err = call(train.main, ["--events", whole, "--stride", "1s", "--output",
                                    tmp_path / "r2", *TINY], capsys)
    assert status == 1 and "training cutoffs" in err and "--stride" in err

    # predict.py: no --cutoff scores at the log's end, as --cutoff END does.
    end = read_events(whole, "canonical").attrs["report"]["time_range"][1]
    status, err = call(predict.main, ["--model", run, "--events", whole, "--output",
                                      tmp_path / "a.csv"], capsys)
    assert status == 0, err
    assert f"at {end} (the log's end)" in err
    assert call(predict.main, ["--model", run, "--events", whole, "--cutoff", end,
                               "--output", tmp_path / "b.csv"], capsys)[0] == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert call(predict.main, ["--model", run, "--events", tmp / "day_*.csv", "--output",
                               tmp_path / "c.csv"], capsys)[0] == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "c.csv").read_bytes()
