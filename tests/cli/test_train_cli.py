"""train.py end to end on small subsets: run directory, metrics.json shape, plots, errors.

The libraries under it (training with early stopping, tuning, the data adapters) are tested
through their own API in ``tests/test_training.py``.
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # each test runs train.py end to end


REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"
METRIC_KEYS = {"roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1",
               "threshold", "lift_at_10", "ece"}
PLOTS = ("loss_curves.png", "roc.png", "pr.png", "reliability.png", "gains.png")


def run_cli(*args, cwd=REPO, timeout=120):
    """Run train.py in a subprocess; return the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "train.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def uci_sample(path: Path, every: int = 8, edit=None) -> Path:
    """Header plus every ``every``-th UCI row (1,541 rows for 8, ~15 % buyers)."""
    lines = UCI.read_text().splitlines()
    rows = [lines[0], *lines[1:][every - 1 :: every]]
    if edit is not None:
        rows = edit(rows)
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """A two-seed run of 4 epochs, not --quiet, stderr not a terminal: (run dir, process)."""
    tmp = tmp_path_factory.mktemp("train")
    data = uci_sample(tmp / "sample.csv")
    out = tmp / "run"
    proc = run_cli("--input", data, "--seeds", "0,1", "--epochs", "4", "--output", out)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def run_dir(two_seeds):
    return two_seeds[0]


def test_run_directory_holds_model_state_history_and_plots(run_dir):
    for name in ("model.json", "weights.npz", "preprocess.json", "metrics.json", "history.csv",
                 "baseline/model.json", "baseline/weights.npz", "baseline/preprocess.json",
                 *PLOTS):
        assert (run_dir / name).is_file(), name
    pre = json.loads((run_dir / "preprocess.json").read_text())
    assert pre["target"] == "Revenue" and pre["source"] == {"kind": "table"}
    model = json.loads((run_dir / "model.json").read_text())
    baseline = json.loads((run_dir / "baseline/model.json").read_text())
    assert model["hidden"] == [64] and baseline["hidden"] == []
    assert model["n_inputs"] == baseline["n_inputs"]
    with open(run_dir / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert set(rows[0]) == {"seed", "model", "epoch", "train_objective", "train_loss",
                            "dev_loss", "dev_roc_auc"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for seed in ("0", "1"):
        for name in ("mlp", "baseline"):
            mine = [r for r in rows if r["seed"] == seed and r["model"] == name]
            epochs = [int(r["epoch"]) for r in mine]
            # --epochs 4 is the network's; the baseline has its own (BASELINE.epochs)
            assert epochs == list(range(1, len(epochs) + 1))
            assert 1 <= len(epochs) <= (4 if name == "mlp" else 200)
            # the reported best epoch is the best dev ROC-AUC of the written history
            key = "best_epoch" if name == "mlp" else "baseline_best_epoch"
            aucs = [float(r["dev_roc_auc"]) for r in mine]
            assert metrics["runs"][int(seed)][key] == int(np.argmax(aucs)) + 1


def test_stdout_gives_dev_then_test_metrics_within_100_columns(two_seeds):
    out = two_seeds[1].stdout
    lines = out.splitlines()
    width = max(map(len, lines))
    assert width <= 100, [line for line in lines if len(line) > 100]
    dev = lines.index("dev metrics (mean ± std over seeds 0,1)")
    test = lines.index("test metrics (mean ± std over seeds 0,1)")
    assert dev < test
    m = json.loads((two_seeds[0] / "metrics.json").read_text())
    for part, at in (("dev", dev), ("test", test)):
        mlp, mlp_std, base = lines[at + 2], lines[at + 3], lines[at + 4]
        assert mlp.startswith("MLP ") and base.startswith("logistic regression ")
        assert f"{m['mean']['model'][part]['roc_auc']:.4f}" in mlp.split()
        assert f"±{m['std']['model'][part]['roc_auc']:.4f}" in mlp_std.split()
        assert f"{m['mean']['baseline'][part]['pr_auc']:.4f}" in base.split()
    # both models' settings, the baseline's fixed ones beside it
    assert "MLP: hidden 64 relu, adam lr 0.001, batch 128, l2 0.001" in out
    assert "logistic regression (fixed, docs/results.md): adam lr 0.03, batch 128, l2 0.0001" in out


def test_off_a_terminal_progress_is_one_line_per_model(two_seeds):
    err = two_seeds[1].stderr
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line != "compiling kernels (first run only)"]
    assert [line.split(":")[0] for line in lines] == [
        "seed 0 MLP", "seed 0 baseline", "seed 1 MLP", "seed 1 baseline"]
    m = json.loads((two_seeds[0] / "metrics.json").read_text())
    for seed, (mlp, base) in enumerate(zip(lines[::2], lines[1::2], strict=True)):
        run = m["runs"][seed]
        assert mlp.startswith(f"seed {seed} MLP: 4 epochs, best epoch {run['best_epoch']}, "
                              f"dev roc_auc {run['model']['dev']['roc_auc']:.4f}, ")
        assert f"best epoch {run['baseline_best_epoch']}, " in base
        assert mlp.endswith(" s") and base.endswith(" s")


@pytest.mark.slow  # trains with train.py run as a command
def test_the_baseline_keeps_its_own_settings_whatever_the_network_flags(tmp_path):
    from nn_core.selection import BASELINE

    data = uci_sample(tmp_path / "s.csv", every=16)
    runs = {}
    for name, flags in (("defaults", []),
                        ("other", ["--lr", "0.05", "--l2", "0.01", "--batch-size", "32",
                                   "--patience", "3", "--monitor", "loss",
                                   "--pos-weight", "auto", "--dropout", "0.2"])):
        proc = run_cli("--input", data, "--epochs", "3", "--quiet", *flags, "--output",
                       tmp_path / name)
        assert proc.returncode == 0, proc.stderr
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    for m in runs.values():
        saved = m["baseline_config"]
        assert saved["lr"] == BASELINE.lr and saved["l2"] == BASELINE.l2
        assert saved["batch_size"] == BASELINE.batch_size and saved["patience"] == 10
    assert runs["other"]["config"]["lr"] == 0.05  # the network did take the flags
    # the same baseline, bit for bit: same metrics on dev and test
    assert runs["other"]["baseline"] == runs["defaults"]["baseline"]
    assert runs["other"]["model"] != runs["defaults"]["model"]


def test_metrics_json_has_the_documented_shape(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    for section in (m, m["mean"], m["std"]):
        for name in ("model", "baseline"):
            for part in ("dev", "test"):
                assert METRIC_KEYS <= set(section[name][part])
    assert [r["seed"] for r in m["runs"]] == [0, 1]
    assert m["model"] == m["runs"][0]["model"]  # top level = the saved (first) seed
    aucs = [r["model"]["test"]["roc_auc"] for r in m["runs"]]
    assert m["mean"]["model"]["test"]["roc_auc"] == pytest.approx(np.mean(aucs))
    assert m["std"]["model"]["test"]["roc_auc"] == pytest.approx(np.std(aucs, ddof=1))
    # the threshold is tuned on dev and reused on test
    assert m["model"]["test"]["threshold"] == m["model"]["dev"]["threshold"]
    assert m["data"]["split_sizes"] == {"train": 1079, "dev": 231, "test": 231}
    assert 0.5 < m["model"]["test"]["roc_auc"] <= 1.0


def test_plots_are_non_empty_pngs(run_dir):
    for name in PLOTS:
        blob = (run_dir / name).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5_000, name


@pytest.mark.slow  # trains with train.py run as a command
def test_default_out_is_timestamped_and_latest_points_at_it(tmp_path):
    data = uci_sample(tmp_path / "s.csv", every=16)
    proc = run_cli("--input", data, "--epochs", "2", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = [p for p in (tmp_path / "runs").iterdir() if p.name != "latest"]
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file()
    latest = tmp_path / "runs" / "latest"
    if latest.is_symlink():
        assert latest.resolve() == runs[0].resolve()
    else:
        assert latest.read_text().strip() == runs[0].name


@pytest.mark.slow  # trains with train.py run as a command
def test_tune_saves_the_trials_table(tmp_path):
    data = uci_sample(tmp_path / "s.csv", every=16)
    proc = run_cli("--input", data, "--epochs", "2", "--tune", "3", "--quiet", "--output",
                   tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "run" / "tune_trials.csv") as fh:
        trials = list(csv.DictReader(fh))
    assert [t["trial"] for t in trials] == ["0", "1", "2"]
    assert sum(t["selected"] == "True" for t in trials) == 1
    best = max(trials, key=lambda t: float(t["dev_roc_auc"]))
    assert best["selected"] == "True"  # chosen on dev ROC-AUC
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["tune"]["selected"]["trial"] == int(best["trial"])
    hidden = best["hidden"]
    expected_hidden = [] if hidden == "none" else [int(h) for h in hidden.split(",")]
    assert m["config"]["hidden"] == expected_hidden
    # stdout says which trial won, on what, and its settings
    assert f"tune: trial {best['trial']}" in proc.stdout
    assert f"dev roc_auc {float(best['dev_roc_auc']):.4f}" in proc.stdout
    settings = next(line for line in proc.stdout.splitlines() if line.startswith("MLP: "))
    layers = "no hidden layer" if hidden == "none" else f"hidden {hidden} relu"
    assert settings.startswith(f"MLP: {layers}, adam lr {float(best['lr']):.3g}, batch "
                               f"{best['batch_size']}, l2 {float(best['l2']):.3g}")


def synthetic_table(path: Path, n: int = 400) -> Path:
    """A non-UCI session table: id, two quantities, a channel code and a yes/no target."""
    rng = np.random.default_rng(1)
    visits = rng.poisson(3, n)
    channel = rng.choice(["ads", "mail", "direct"], n)
    spend = rng.gamma(2.0, 20.0, n).round(2)
    logit = 0.6 * visits - 2.5 + (channel == "mail") * 1.0
    bought = rng.random(n) < 1 / (1 + np.exp(-logit))
    lines = ["sid,visits,spend,channel,bought"]
    lines += [f"s{i},{v},{s},{c},{int(b)}"
              for i, (v, s, c, b) in enumerate(zip(visits, spend, channel, bought, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow  # trains with train.py run as a command
@pytest.mark.parametrize("how", ["flags", "config"])
def test_any_session_table_with_column_roles(tmp_path, how):
    data = synthetic_table(tmp_path / "shop.csv")
    if how == "flags":
        roles = ["--target", "bought", "--numeric", "visits,spend", "--categorical", "channel",
                 "--id-column", "sid"]
    else:
        cfg = tmp_path / "roles.json"
        cfg.write_text(json.dumps({"target": "bought", "numeric": ["visits", "spend"],
                                   "categorical": ["channel"], "id_column": "sid",
                                   "ranges": {"visits": [0, None]}}))
        roles = ["--config", cfg]
    proc = run_cli("--input", data, *roles, "--epochs", "3", "--quiet", "--output", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    pre = json.loads((tmp_path / "r" / "preprocess.json").read_text())
    assert [c["name"] for c in pre["columns"]] == ["visits", "spend", "channel"]
    assert pre["columns"][2]["categories"] == ["ads", "direct", "mail"]
    assert pre["target"] == "bought" and pre["id_column"] == "sid"


def test_bad_data_gives_one_clean_message_and_no_output(tmp_path):
    def break_row(rows):
        cells = rows[5].split(",")
        cells[6] = "oops"  # BounceRates of data row 5
        rows[5] = ",".join(cells)
        return rows

    data = uci_sample(tmp_path / "bad.csv", edit=break_row)
    proc = run_cli("--input", data, "--quiet", "--output", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    for part in (str(data), "data row 5", "'BounceRates'", "not a number", "'oops'"):
        assert part in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.csv"]


def test_a_run_that_fails_midway_leaves_nothing_behind(tmp_path):
    data = uci_sample(tmp_path / "s.csv", every=16)
    proc = run_cli("--input", data, "--lr", "1e30", "--epochs", "3", "--quiet", "--output",
                   tmp_path / "run")
    assert proc.returncode == 1 and "diverged" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["s.csv"]  # no run dir, no .partial leftovers


@pytest.mark.slow  # a train.py command per case (test_reliability.py checks flags in-process)
@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--lr", "-1"], 2, "--lr must be > 0"),
        (["--hidden", "64,x"], 2, "expected comma-separated integers"),
        (["--pos-weight", "-2"], 2, "pos-weight must be > 0"),
        (["--target", "nope"], 1, "column 'nope': required column is missing"),
        (["--input", "missing.csv"], 1, "missing.csv: file not found"),
        (["--split", "0.98,0.01,0.01"], 2, "needs both classes"),
        (["--numeric", "Administrative", "--categorical", "Administrative"], 2,
         "more than one role"),
    ],
)
def test_usage_errors(tmp_path, args, code, message):
    data = uci_sample(tmp_path / "s.csv", every=32)
    proc = run_cli("--input", data, *args, "--quiet", "--output", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode == code
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_out_must_be_new_or_empty(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    proc = run_cli("--input", uci_sample(tmp_path / "s.csv", every=32), "--output",
                   tmp_path / "run")
    assert proc.returncode == 2 and "not an empty directory" in proc.stderr
    assert os.listdir(tmp_path / "run") == ["keep.txt"]



def call_main(argv, capsys) -> tuple[int, str]:
    """``propensity.train.main(argv)`` in this process: (exit status, stderr)."""
    from propensity import train

    try:
        status = train.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        status = exc.code
    return status, capsys.readouterr().err


def test_an_output_that_is_a_file_is_refused_as_a_file(tmp_path, capsys):
    (tmp_path / "b2.csv").write_text("keep me")
    status, err = call_main(["--input", uci_sample(tmp_path / "s.csv", every=32), "--quiet",
                             "--output", tmp_path / "b2.csv"], capsys)
    assert (status, err) == (2, f"train.py: error: --output {tmp_path / 'b2.csv'}: is a "
                             "file, not a directory (a run directory must be new or an empty "
                             "directory)\n")
    assert (tmp_path / "b2.csv").read_text() == "keep me"


def test_errors_fitting_the_preprocessing_name_the_file(tmp_path, capsys):
    """Column statistics of the training rows that cannot be had (features.tabular's
    Preprocessor.fit) are bad data: exit 1, one line naming the file and the column."""
    rng = np.random.default_rng(0)
    big = tmp_path / "big.csv"
    big.write_text("a,b,y\n" + "".join(f"{rng.normal()},{(-1) ** i * 1e200},{i % 3 == 0:d}\n"
                                       for i in range(300)))
    status, err = call_main(["--input", big, "--target", "y", "--numeric", "a,b", "--quiet",
                             "--output", tmp_path / "r1"], capsys)
    assert status == 1 and err.startswith(f"train.py: error: {big}: column 'b': values too "
                                          "large to standardise") and err.count("\n") == 1, err

    def blank_bounce_rates(rows):
        return [rows[0]] + [",".join(c if j != 6 else "" for j, c in enumerate(r.split(",")))
                            for r in rows[1:]]

    blank = uci_sample(tmp_path / "blank.csv", every=32, edit=blank_bounce_rates)
    status, err = call_main(["--input", blank, "--on-invalid", "impute", "--quiet",
                             "--output", tmp_path / "r2"], capsys)
    assert (status, err) == (1, f"train.py: error: {blank}: column 'BounceRates': every "
                             "training value is missing; nothing to impute from (leave the "
                             "column out)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "blank.csv"]


def test_threads_is_checked_once_for_every_command(capsys):
    """One rule and one message for train.py and predict.py (``propensity.check_threads``),
    a usage error: exit status 2 through ``run_command`` whatever the command."""
    from numba import config as numba_config

    from propensity import UsageError, check_threads, run_command

    most = numba_config.NUMBA_NUM_THREADS
    for threads in (None, 1, most):
        check_threads(threads)
    for threads in (0, -1, most + 1):
        with pytest.raises(UsageError) as caught:
            check_threads(threads)
        assert str(caught.value) == f"--threads must be in [1, {most}] (this machine), got " \
            f"{threads}"
    assert run_command("predict", lambda: check_threads(0), source="x.csv",
                       nothing_written="no output written") == 2
    assert capsys.readouterr().err == (f"predict.py: error: --threads must be in [1, {most}] "
                                       "(this machine), got 0\n")
    status, err = call_main(["--threads", "0", "--quiet"], capsys)
    assert (status, err) == (2, f"train.py: error: --threads must be in [1, {most}] (this "
                             "machine), got 0\n")


@pytest.mark.slow  # trains with train.py run as a command
@pytest.mark.parametrize("restore", [True, False])
def test_patience_and_restore_flags_reach_early_stopping(tmp_path, restore):
    data = uci_sample(tmp_path / "s.csv", every=6)
    flags = [] if restore else ["--no-restore-best"]
    proc = run_cli("--input", data, "--patience", "2", "--epochs", "60", "--quiet", *flags,
                   "--output", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "run" / "history.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["model"] == "mlp"]
    aucs = [float(r["dev_roc_auc"]) for r in rows]
    best = int(np.argmax(aucs)) + 1
    if len(rows) < 60:  # stopped early: exactly `patience` epochs after the best one
        assert len(rows) == best + 2
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["config"]["patience"] == 2 and m["config"]["restore_best"] is restore
    # the saved model is the best dev epoch's (or, with --no-restore-best, the last one's)
    held = best if restore else len(rows)
    assert m["best_epoch"] == held
    assert m["model"]["dev"]["roc_auc"] == pytest.approx(aucs[held - 1], abs=1e-12)


@pytest.mark.slow  # a train.py command per case (test_reliability.py checks flags in-process)
@pytest.mark.parametrize(
    "args, message",
    [
        (["--horizon", "2d"], "--horizon applies to event logs (--events) only"),
        (["--cutoff=2019-12-01", "--drop-invalid"],
         "--cutoff, --drop-invalid apply to event logs (--events) only"),
        (["--events-format", "canonical"], "--events-format applies to event logs"),
        (["--stride", "1h"], "--stride applies to event logs"),
        (["--events", "log.csv", "--numeric", "a,b"],
         "--numeric applies to session tables (--input) only, not to --events"),
        (["--events", "log.csv", "--target", "y", "--id-column", "sid"],
         "--target, --id-column apply to session tables (--input) only"),
        (["--events", "log.csv", "--split", "0.6,0.2,0.2"], "--split applies to session tables"),
        (["--events", "log.csv", "--input", "x.csv"], "--input applies to session tables"),
        (["--momentum", "0.5"], "--momentum applies to --optimizer momentum or nesterov only"),
    ],
)
def test_flags_that_do_not_apply_are_refused_in_one_line(tmp_path, args, message):
    proc = run_cli(*args, "--output", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert os.listdir(tmp_path) == []


def test_flags_that_do_apply_are_not_refused():
    from nn_core.io import options_given
    from propensity.train import build_parser, inapplicable

    parser = build_parser()
    for argv in (["--horizon", "2d", "--events", "x.csv"], ["--optimizer", "nesterov",
                 "--momentum", "0.5"], ["--numeric", "a", "--target", "y"], ["--hor=2d"]):
        args = parser.parse_args(argv)
        given = options_given(parser, argv)
        if argv == ["--hor=2d"]:  # an abbreviation is still that option
            assert given == {"horizon"} and inapplicable(args, given)
        else:
            assert inapplicable(args, given) is None, argv


def help_of(command: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, *command, "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow  # a train.py command per case (test_reliability.py checks flags in-process)
@pytest.mark.parametrize("command, parser", [
    ([str(REPO / "train.py")], "propensity.train"),
    ([str(REPO / "predict.py")], "propensity.predict"),
    (["-m", "nn_core.export"], None),
])
def test_help_shows_every_default_once(command, parser):
    text = help_of(command)
    assert "(default: None)" not in text
    options = re.findall(r"^  (--[a-z0-9-]+)(.*?)(?=^  -|^\S|\Z)", text, re.S | re.M)
    assert len(options) >= 5
    for option, body in options:
        assert body.count("default") <= 1, (option, body)
    if parser is None:
        return
    import importlib

    ap = importlib.import_module(parser).build_parser()
    with_defaults = {a.option_strings[0]: a.default for a in ap._actions
                     if a.option_strings and a.help is not argparse.SUPPRESS
                     and a.default not in (None, False, argparse.SUPPRESS)}
    assert with_defaults
    bodies = dict(options)
    for option, default in with_defaults.items():
        assert "default" in bodies[option], option
        if isinstance(default, int | float | str) and "(default: " in bodies[option]:
            assert f"(default: {default})" in " ".join(bodies[option].split()), option


def test_train_help_gives_the_network_defaults():
    text = " ".join(help_of([str(REPO / "train.py")]).split())
    for shown in ("--lr LR learning rate (default: 0.001)", "(default: 128)",
                  "hidden-layer activation (default: relu)", "update rule (default: adam)",
                  "(default: float32)", "(default: numba)", "(default: constant)",
                  "(default: canonical)", "(default: 64)", "(default: 0.7,0.15,0.15)"):
        assert shown in text, shown


def test_kernels_cached_tells_a_cold_cache_from_a_warm_one(tmp_path):
    from nn_core import MLP
    from nn_core.training import kernels_cached

    code = ("from nn_core.training import kernels_cached; "
            "print(kernels_cached('float32', 128))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(tmp_path)}
    cold = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert cold.stdout.strip() == "False", cold.stderr
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    MLP(3, hidden=(4,), seed=0).fit(X, y, epochs=1, validation_data=(X, y), threads=1)
    assert kernels_cached("float32", 128, threads=1) is True  # compiled in this process


def test_the_progress_bar_waits_for_the_first_epoch_to_estimate(monkeypatch):
    import io

    from nn_core.training import EpochEnd

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for terminal in (True, False):
        err = Terminal() if terminal else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        end = EpochEnd(lambda X: np.full(len(X), 0.5), lambda: None, lambda w: None,
                       validation=(np.zeros((4, 1)), np.array([0, 1, 0, 1])),
                       monitor="val_loss", verbose=1, epochs=3, desc="demo")
        before = err.getvalue()
        for _ in range(3):
            end(0.5)
        end.finish()
        text = err.getvalue()
        if terminal:
            assert "first epoch" in before and "<" not in before  # no time left guessed
            assert "3/3" in text
        else:
            assert before == "" and "\r" not in text
            assert text == text.splitlines()[0] + "\n"
            assert text.startswith("demo: 3 epochs, best epoch 1, dev loss 0.6931, ")


@pytest.mark.slow  # compiles the kernels from an empty cache (about 30 s of CPU)
def test_compiling_is_announced_on_a_cold_cache_only(tmp_path):
    """train.py says "compiling kernels (first run only)" exactly when Numba's cache lacks
    the kernels: on the first run of an empty cache, not on the second."""
    data = uci_sample(tmp_path / "s.csv", every=32)
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first, second = (
        subprocess.run([sys.executable, str(REPO / "train.py"), "--input", str(data),
                        "--epochs", "2", "--output", str(tmp_path / name)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHONPATH": str(REPO), **env})
        for name in ("cold", "warm"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stderr.splitlines()[0] == "compiling kernels (first run only)"
    assert "compiling" not in second.stderr
