"""predict.py: same scores as in-process, any column order, chunking, ranks, clean errors."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nn_core.testing import TOLERANCES, relative_error

pytestmark = pytest.mark.slow  # each test trains a model or runs predict.py end to end


REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"


def run_cli(script, *args, cwd=REPO, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small model trained by train.py on every 8th UCI row."""
    tmp = tmp_path_factory.mktemp("model")
    lines = UCI.read_text().splitlines()
    (tmp / "train.csv").write_text("\n".join([lines[0], *lines[1:][7::8]]) + "\n")
    proc = run_cli("train.py", "--input", tmp / "train.csv", "--epochs", "3", "--quiet",
                   "--output", tmp / "run")
    assert proc.returncode == 0, proc.stderr
    return tmp / "run"


@pytest.fixture()
def score_frame():
    """206 UCI rows (different from most training rows) as raw strings, plus an id column."""
    lines = UCI.read_text().splitlines()
    frame = pd.read_csv(io.StringIO("\n".join([lines[0], *lines[1:][3::60]])), dtype=str,
                        keep_default_na=False)
    frame.insert(0, "session", [f"S{i:04d}" for i in range(len(frame))])
    return frame


def in_process_scores(model_dir: Path, csv_path: Path) -> np.ndarray:
    from features.tabular import Schema, load_table
    from nn_core import load_model

    model = load_model(model_dir)
    pre = model.preprocessing
    roles = {kind: tuple(c["name"] for c in pre.columns if c["kind"] == kind)
             for kind in ("numeric", "categorical")}
    frame = load_table(csv_path, Schema(None, roles["numeric"], roles["categorical"]),
                       with_target=False)
    p = model.predict_proba(frame)
    # The Predictor computes the one-hot blocks' share of the first layer as gathered rows
    # (nn_core/onehot.py): the network on the feature matrix, up to the order of the sums.
    dense = model.network.predict_proba(pre.transform(frame))
    assert relative_error(dense, p) <= TOLERANCES[model.network.dtype]
    return p


def test_predict_matches_in_process_scores(model_dir, score_frame, tmp_path):
    """Propensities as 7 significant digits of the in-process scores; ranks and labels from
    the full-precision scores; the label at the dev F1 threshold train.py saved."""
    from features.scoring import rank_and_decile

    path = tmp_path / "in.csv"
    score_frame.to_csv(path, index=False)
    out = tmp_path / "scores.csv"
    proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--output", out,
                   "--id-column", "session")
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(out, dtype={"propensity": str})
    assert list(got.columns) == ["session", "propensity", "rank", "decile", "label"]
    assert list(got["session"]) == list(score_frame["session"])
    p = in_process_scores(model_dir, path)
    assert list(got["propensity"]) == [format(v, ".7g") for v in p]
    np.testing.assert_array_equal(got["rank"], rank_and_decile(p)[0])
    threshold = json.loads((model_dir / "model.json").read_text())["threshold"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert threshold == metrics["model"]["dev"]["threshold"]
    np.testing.assert_array_equal(got["label"], (p >= threshold).astype(int))
    assert 0 < got["label"].sum() < len(got)


@pytest.mark.slow  # several predict.py runs as commands
def test_shuffled_columns_chunks_and_extra_columns_give_identical_output(
    model_dir, score_frame, tmp_path
):
    plain = tmp_path / "plain.csv"
    score_frame.to_csv(plain, index=False)
    rng = np.random.default_rng(0)
    shuffled = score_frame[list(rng.permutation(score_frame.columns))].assign(note="x")
    mixed = tmp_path / "mixed.csv"
    shuffled.to_csv(mixed, index=False)
    outs = []
    for src, chunk in ((plain, 100_000), (mixed, 7)):
        out = tmp_path / f"out_{src.stem}.csv"
        proc = run_cli("predict.py", "--model", model_dir, "--input", src, "--output", out,
                       "--chunksize", chunk)
        assert proc.returncode == 0, proc.stderr
        outs.append(pd.read_csv(out))
    pd.testing.assert_frame_equal(outs[0], outs[1])
    assert list(outs[0]["row"]) == list(range(1, len(score_frame) + 1))


def test_rank_decile_and_top(model_dir, score_frame, tmp_path):
    path = tmp_path / "in.csv"
    score_frame.to_csv(path, index=False)
    out = tmp_path / "o.csv"
    proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--output", out,
                   "--id-column", "session", "--top", "3")
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(out)
    n = len(got)
    assert sorted(got["rank"]) == list(range(1, n + 1))
    by_rank = got.sort_values("rank")
    assert (np.diff(by_rank["propensity"]) <= 0).all()
    np.testing.assert_array_equal(got["decile"], (got["rank"] - 1) * 10 // n + 1)
    counts = got["decile"].value_counts()
    assert sorted(counts.index) == list(range(1, 11)) and counts.max() - counts.min() <= 1
    top3 = by_rank["session"].head(3).tolist()
    printed = [line.split()[0] for line in proc.stdout.splitlines()[2:5]]
    assert printed == top3 and f"top 3 of {n} rows" in proc.stdout


def test_rank_ties_keep_file_order():
    from features.scoring import rank_and_decile

    rank, decile = rank_and_decile(np.array([0.2, 0.9, 0.2, 0.5, 0.9]))
    np.testing.assert_array_equal(rank, [4, 1, 5, 3, 2])
    np.testing.assert_array_equal(decile, [7, 1, 9, 5, 3])


@pytest.mark.parametrize("kind", ["distinct", "few values", "all equal", "any float"])
def test_external_ranks_equal_a_stable_sort(kind):
    """The on-disk ranking (features/ranking.py) with tiny blocks, so that every level of
    its recursion runs: the ranks of a stable sort by descending score, ties in order."""
    from features.ranking import Spill, exact_ranks, score_keys, scores_of
    from features.scoring import rank_and_decile

    rng = np.random.default_rng(len(kind))
    n = 5_000
    p = {"distinct": rng.random(n),
         "few values": rng.choice([0.1, 0.5, -0.0, 0.0, 0.9], n),
         "all equal": np.full(n, 0.25),
         "any float": rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)}[kind]
    assert (scores_of(score_keys(p)) == p).all()
    for block, chunk in ((64, 100), (700, 33), (n, n)):
        with Spill(np.uint64) as keys:
            for start in range(0, n, 999):
                keys.append(score_keys(p[start : start + 999]))
            with exact_ranks(keys, block=block, chunk=chunk) as ranks:
                got = np.concatenate(list(ranks.chunks(512)))
        np.testing.assert_array_equal(got, rank_and_decile(p + 0.0)[0])


def test_top_k_without_output_keeps_k_rows(model_dir, score_frame, tmp_path):
    """--top K alone prints the K best rows without ranking every row; the same rows and
    ranks as the full output."""
    from features.scoring import score_table, write_output
    from nn_core import load_model

    path = tmp_path / "in.csv"
    pd.concat([score_frame] * 3).to_csv(path, index=False)  # ties: each row three times
    model = load_model(model_dir)
    with score_table(path, model, "session", chunksize=50) as scored:
        top = write_output(scored, None, top=7)
        full_top = write_output(scored, tmp_path / "o.csv", top=7)
    full = pd.read_csv(tmp_path / "o.csv").sort_values("rank").head(7)
    assert list(top["rank"]) == list(range(1, 8)) and list(top["decile"]) == [1] * 7
    pd.testing.assert_frame_equal(top, full_top)
    assert list(top["session"]) == list(full["session"])
    np.testing.assert_allclose(top["propensity"], full["propensity"], rtol=5e-7, atol=0)


def test_output_text_has_7_significant_digits_and_quotes_ids():
    from features.scoring import _csv_ids, _digits, _propensity_text, format_rows

    p = np.array([0.0, 1.0, 0.5, 1e-16, 0.123456789012345678, 0.9999999999999999, 7e-4])
    raw = [s.encode() for s in ("a", 'b"c', "d,e", "", "é", "x\ny", "z")]
    ids = _csv_ids(np.frombuffer(b"".join(raw), dtype=np.uint8),
                   np.array([len(r) for r in raw]))
    text = format_rows([ids, _propensity_text(p), _digits(np.arange(1, 8) * 99, 3)])
    assert text.decode() == (
        'a,0,99\n"b""c",1,198\n"d,e",0.5,297\n,1e-16,396\né,0.1234568,495\n"x\ny",1,594\n'
        'z,0.0007,693\n')
    assert pd.read_csv(io.BytesIO(text), header=None, keep_default_na=False)[0].tolist() == [
        "a", 'b"c', "d,e", "", "é", "x\ny", "z"]


def test_propensity_text_is_pythons_7g_on_every_kind_of_value():
    """The column-at-once formatting against format(v, ".7g"): values over the whole
    double range, float32 values, powers of ten and their neighbours, rounding ties (which
    go through format), and values outside [0, 1] (an identity output)."""
    from features.scoring import _propensity_text

    rng = np.random.default_rng(7)
    powers = 10.0 ** np.arange(-20, 1)
    p = np.concatenate([
        10.0 ** rng.uniform(-330, 0, 100_000), rng.random(100_000),
        rng.random(50_000).astype(np.float32).astype(np.float64),
        powers, np.nextafter(powers, 0), np.nextafter(powers, 2),
        [0.0, -0.0, 5e-324, 1e-300, 9.9999995e-5, 0.99999995, 0.12345675, 0.5e-4, 1.5e-100],
        [np.nan, np.inf, -1.5, 2.5, -1e-7, 123456789.0],
    ])
    M, valid = _propensity_text(p)
    got = [bytes(row[v]).decode() for row, v in zip(M, valid, strict=True)]
    assert got == [format(v, ".7g") for v in p.tolist()]


def test_a_very_long_id_is_written_in_parts(model_dir, score_frame, tmp_path, monkeypatch):
    """Ids are stored one after the other, not padded to the longest: one id of 200,000
    characters costs its own length, and the rows around it are written in parts."""
    import features.scoring as scoring
    from nn_core import load_model

    monkeypatch.setattr(scoring, "MATRIX_BYTES", 1 << 20)  # parts of 5 rows here
    score_frame.loc[7, "session"] = "L" * 200_000
    path = tmp_path / "in.csv"
    score_frame.to_csv(path, index=False)
    with scoring.score_table(path, load_model(model_dir), "session", chunksize=40) as scored:
        scoring.write_output(scored, tmp_path / "o.csv")
    got = pd.read_csv(tmp_path / "o.csv")
    assert list(got["session"]) == list(score_frame["session"])


def test_score_table_in_chunks_equals_one_pass_of_the_predictor(model_dir, score_frame,
                                                                tmp_path):
    from features.scoring import score_table
    from nn_core import load_model

    score_frame.loc[[2, 40], "Month"] = "Jan"  # unseen in training
    path = tmp_path / "in.csv"
    score_frame.to_csv(path, index=False)
    model = load_model(model_dir)
    with score_table(path, model, "session", chunksize=9) as scored:
        p = scored.scores()
        assert scored.unseen == {"Month": 2} and scored.sizes == [9] * 22 + [8]
    with score_table(path, model, chunksize=1000) as scored:
        one_pass = scored.scores()
    np.testing.assert_array_equal(one_pass, model.predict_proba(score_frame))
    # float32 blocks of another height may round a row differently in the last bit
    np.testing.assert_allclose(p, one_pass, rtol=1e-6, atol=0)


def test_model_directory_without_preprocessing(model_dir, score_frame, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / "preprocess.json").unlink()
    path = tmp_path / "in.csv"
    score_frame.to_csv(path, index=False)
    proc = run_cli("predict.py", "--model", bare, "--input", path, "--output", tmp_path / "o.csv")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{bare / 'preprocess.json'}: file not found" in proc.stderr
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.slow  # several predict.py runs as commands
def test_unseen_categories_are_scored_through_the_bucket_and_counted(
    model_dir, score_frame, tmp_path
):
    score_frame.loc[[0, 5, 9], "Month"] = "Jan"  # no January in the UCI data
    score_frame.loc[3, "Browser"] = "99"
    path = tmp_path / "in.csv"
    score_frame.to_csv(path, index=False)
    out = tmp_path / "o.csv"
    proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert "4 values not seen in training" in proc.stderr
    assert "Browser: 1 row" in proc.stderr and "Month: 3 rows" in proc.stderr
    np.testing.assert_allclose(pd.read_csv(out)["propensity"], in_process_scores(model_dir, path),
                               rtol=5e-7, atol=0)


def _break(frame, row, column, value):
    frame.loc[row - 1, column] = value
    return frame


@pytest.mark.slow  # several predict.py runs as commands
@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda f: f.drop(columns=["ExitRates"]), ["column 'ExitRates'", "required column is "
                                                   "missing"]),
        (lambda f: _break(f, 7, "ProductRelated", "many"),
         ["data row 7", "column 'ProductRelated'", "not a number", "'many'"]),
        (lambda f: _break(f, 12, "PageValues", "NaN"),
         ["data row 12", "column 'PageValues'", "missing value"]),
        (lambda f: _break(f, 3, "VisitorType", ""),
         ["data row 3", "column 'VisitorType'", "missing value"]),
        (lambda f: _break(f, 4, "Administrative", "-2"),
         ["data row 4", "column 'Administrative'", "below the allowed minimum 0"]),
        (lambda f: f.iloc[:0], ["no data rows"]),
    ],
)
def test_bad_input_gives_one_clean_message_and_no_output(
    model_dir, score_frame, tmp_path, change, expected
):
    path = tmp_path / "in.csv"
    change(score_frame).to_csv(path, index=False)
    out = tmp_path / "o.csv"
    proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--output", out,
                   "--chunksize", 5)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert str(path) in proc.stderr
    for part in expected:
        assert part in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]  # no output, no temporary file


@pytest.mark.slow  # several predict.py runs as commands
def test_empty_file_missing_model_and_missing_id_column(model_dir, score_frame, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    proc = run_cli("predict.py", "--model", model_dir, "--input", empty)
    assert proc.returncode == 1 and "empty.csv: the file is empty" in proc.stderr
    proc = run_cli("predict.py", "--model", tmp_path / "no_model", "--input", empty)
    assert proc.returncode == 1 and "no_model: model directory not found" in proc.stderr
    path = tmp_path / "in.csv"
    score_frame.to_csv(path, index=False)
    proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--id-column", "uid")
    assert proc.returncode == 1 and "column 'uid'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # several predict.py runs as commands
def test_failed_run_keeps_an_existing_output_file(model_dir, score_frame, tmp_path):
    path = tmp_path / "in.csv"
    _break(score_frame, 150, "Region", "").to_csv(path, index=False)
    out = tmp_path / "o.csv"
    out.write_text("previous results\n")
    proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--output", out,
                   "--chunksize", 20)
    assert proc.returncode == 1 and "data row 150" in proc.stderr
    assert out.read_text() == "previous results\n"
    assert sorted(os.listdir(tmp_path)) == ["in.csv", "o.csv"]


def test_stdout_output_without_output_flag(model_dir, score_frame, tmp_path):
    path = tmp_path / "in.csv"
    score_frame.head(12).to_csv(path, index=False)
    proc = run_cli("predict.py", "--model", model_dir, "--input", path)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(io.StringIO(proc.stdout))
    assert list(got.columns) == ["row", "propensity", "rank", "decile", "label"]
    assert len(got) == 12


EVENTS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "events"
TAOBAO = EVENTS / "taobao_userbehavior_head_sample.csv"


@pytest.mark.slow
@pytest.mark.skipif(not TAOBAO.is_file(), reason=f"event-log sample not found at {TAOBAO}")
def test_event_log_mode_train_then_predict(tmp_path):
    proc = run_cli("train.py", "--events", TAOBAO, "--events-format", "taobao", "--horizon", "2d",
                   "--epochs", "2", "--quiet", "--output", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    pre = json.loads((tmp_path / "run" / "preprocess.json").read_text())
    assert pre["source"] == {"kind": "events", "format": "taobao", "horizon": "2d"}
    assert all(c["kind"] == "numeric" for c in pre["columns"])
    info = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert info["kind"] == "events" and "cutoffs" in info["splits"]
    cutoff = "2017-12-01T16:00:00Z"
    out = tmp_path / "scores.csv"
    proc = run_cli("predict.py", "--model", tmp_path / "run", "--events", TAOBAO, "--cutoff",
                   cutoff, "--output", out)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(out)
    assert list(got.columns) == ["user_id", "propensity", "rank", "decile", "label"]

    import features.events as events
    from nn_core import load_model

    X = events.features_at(events.read_events(TAOBAO, format="taobao"), cutoff)
    model = load_model(tmp_path / "run")
    expected = model.network.predict_proba(model.preprocessing.transform(X))
    assert list(got["user_id"]) == list(X.index)
    np.testing.assert_allclose(got["propensity"], expected, rtol=5e-7, atol=0)
    # a table model refuses an event log, and the reverse
    proc = run_cli("predict.py", "--model", tmp_path / "run", "--input", out)
    assert proc.returncode == 2 and "trained on event-log features" in proc.stderr


@pytest.mark.slow  # several predict.py runs as commands
def test_threshold_flag_overrides_and_old_model_dirs_have_no_label(model_dir, score_frame,
                                                                   tmp_path):
    """--threshold T labels p >= T; a model directory saved before thresholds were stored
    (model.json without one) still loads and writes no label column unless given one."""
    import shutil

    path = tmp_path / "in.csv"
    score_frame.to_csv(path, index=False)
    out = tmp_path / "o.csv"
    proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--output", out,
                   "--threshold", "0.2")
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(out)
    p = in_process_scores(model_dir, path)
    np.testing.assert_array_equal(got["label"], (p >= 0.2).astype(int))
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    meta = json.loads((old / "model.json").read_text())
    del meta["threshold"]
    (old / "model.json").write_text(json.dumps(meta))
    proc = run_cli("predict.py", "--model", old, "--input", path, "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(out).columns) == ["row", "propensity", "rank", "decile"]
    proc = run_cli("predict.py", "--model", old, "--input", path, "--output", out,
                   "--threshold", "0.9", "--top", "2")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(pd.read_csv(out)["label"], (p >= 0.9).astype(int))
    assert proc.stdout.splitlines()[1].split() == ["row", "propensity", "rank", "decile",
                                                   "label"]
    for bad, message in (("1.5", "--threshold must be in [0, 1]"),
                         ("nan", "--threshold must be a finite number"),
                         ("x", "argument --threshold: invalid float value")):
        proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--output",
                       tmp_path / "new.csv", "--threshold", bad)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and not (tmp_path / "new.csv").exists()


@pytest.mark.slow  # several predict.py runs as commands
def test_keep_columns_copies_cells_as_written(model_dir, score_frame, tmp_path):
    """Kept columns come after the id, each cell as in the file (ids and kept text columns
    are never read as numbers: 007 stays 007), a model column as the model reads it;
    chunks, --top and --on-invalid skip keep them on their rows."""
    frame = score_frame.assign(
        session=[f"00{i}" for i in range(len(score_frame))],
        note=[f'n{i}, "q"' if i % 3 else "TRUE" for i in range(len(score_frame))])
    frame.loc[4, "Region"] = ""  # a bad cell: its row is left out under skip
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "o.csv"
    keep = ["note", "Month", "Weekend", "ProductRelated"]
    proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--output", out,
                   "--id-column", "session", "--keep-columns", " note,Month ,Weekend,"
                   "ProductRelated", "--chunksize", 7, "--on-invalid", "skip", "--top", "3")
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(got.columns) == ["session", *keep, "propensity", "rank", "decile", "label"]
    expected = frame.drop(index=4)
    assert list(got["session"]) == list(expected["session"])
    for name in ("note", "Month", "Weekend"):  # Weekend is TRUE/FALSE in the file
        assert list(got[name]) == list(expected[name]), name
    assert list(got["ProductRelated"]) == [str(int(v)) for v in expected["ProductRelated"]]
    top = got.sort_values("rank", key=lambda r: r.astype(int)).head(3)
    printed = [line.split()[:2] for line in proc.stdout.splitlines()[2:5]]
    assert printed == [[s, n.split()[0]] for s, n in zip(top["session"], top["note"],
                                                          strict=True)]


@pytest.mark.slow  # a predict.py command per case
@pytest.mark.parametrize("keep, status, message", [
    ("note,Nope", 1, "column 'Nope': required column is missing (given in --keep-columns)"),
    ("Month,rank", 2, "--keep-columns: 'rank' is already a column of the output"),
    ("Month,,Region", 2, "an empty column name"),
    ("Month,Month", 2, "'Month' is listed twice"),
    ("session", 1, "'session' is already a column of the output"),
])
def test_keep_columns_refusals_are_one_line(model_dir, score_frame, tmp_path, keep, status,
                                            message):
    path = tmp_path / "in.csv"
    score_frame.assign(note="x").to_csv(path, index=False)
    proc = run_cli("predict.py", "--model", model_dir, "--input", path, "--output",
                   tmp_path / "o.csv", "--id-column", "session", "--keep-columns", keep)
    assert proc.returncode == status and message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def test_keep_columns_is_refused_with_events(model_dir, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,category_id,behavior_type,timestamp\n1,2,3,pv,1511544070\n")
    proc = run_cli("predict.py", "--model", model_dir, "--events", log, "--keep-columns",
                   "item_id")
    assert proc.returncode == 2 and "--keep-columns only applies to --input" in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("flag", ["--output", "--rejected", "--drift-output", "--plot"])
def test_dash_is_refused_as_a_file_name(model_dir, tmp_path, capsys, monkeypatch, flag):
    """`--output -` is no stdout shorthand: a usage error, not a file named "-"."""
    from propensity.predict import main

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "in.csv"
    path.write_text(UCI.read_text().split("\n", 3)[0] + "\n")
    extra = {"--output": [], "--rejected": ["--on-invalid", "skip", "--output", "o.csv"],
             "--drift-output": ["--output", "o.csv"], "--plot": ["--explain-row", "1"]}[flag]
    assert main(["--model", str(model_dir), "--input", str(path), flag, "-", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"predict.py: error: {flag} -: '-' is not stdout here; give a file")
    assert err.count("\n") == 1 and sorted(os.listdir(tmp_path)) == ["in.csv"]


@pytest.mark.parametrize("fails", ["mkstemp", "replace"])
def test_write_errors_name_the_users_file(model_dir, score_frame, tmp_path, capsys,
                                          monkeypatch, fails):
    """A temporary file that cannot be created, or renamed onto its file: the message names
    the file the user asked for (--output, the drift report, --rejected), never the
    temporary name, and no temporary file is left."""
    import tempfile

    from propensity.predict import main

    path = tmp_path / "in.csv"
    score_frame.to_csv(path, index=False)
    out = tmp_path / "o.csv"
    runs = {tmp_path / "d.json": ["--output", out, "--drift-output", tmp_path / "d.json"],
            out: ["--output", out, "--no-drift"],
            tmp_path / "r.csv": ["--output", out, "--no-drift", "--on-invalid", "skip",
                                 "--rejected", tmp_path / "r.csv"]}
    mkstemp, replace = tempfile.mkstemp, os.replace
    for named, args in runs.items():
        out.unlink(missing_ok=True)  # the drift report is renamed after the output

        def refuse_temp(*a, named=named, **k):
            if k["prefix"].startswith(f".{named.name}."):
                raise PermissionError(13, "Permission denied", f"{k['dir']}/{k['prefix']}x.tmp")
            return mkstemp(*a, **k)

        def refuse_rename(src, dst, named=named):
            if Path(dst) == named:
                raise PermissionError(13, "Permission denied", str(src), str(dst))
            return replace(src, dst)

        if fails == "mkstemp":
            monkeypatch.setattr(tempfile, "mkstemp", refuse_temp)
        else:
            monkeypatch.setattr(os, "replace", refuse_rename)
        assert main(["--model", str(model_dir), "--input", str(path),
                     *map(str, args)]) == 1
        assert capsys.readouterr().err == f"predict.py: error: {named}: Permission denied\n"
        assert not named.exists()
        assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


@pytest.mark.parametrize("threads", ["0", "-1", "100000"])
def test_threads_out_of_range_is_train_pys_usage_error(tmp_path, capsys, threads):
    """The rule and message of train.py (propensity.check_threads), exit status 2, before
    anything is read."""
    from numba import config as numba_config

    from propensity.predict import main

    most = numba_config.NUMBA_NUM_THREADS
    assert main(["--model", str(tmp_path / "m"), "--input", str(tmp_path / "in.csv"),
                 "--threads", threads]) == 2
    assert capsys.readouterr().err == (f"predict.py: error: --threads must be in [1, {most}] "
                                       f"(this machine), got {threads}\n")


def test_a_plain_run_imports_no_plotting_or_optional_library(model_dir, score_frame, tmp_path):
    """predict.py's fixed cost: matplotlib (~0.3 s) only with --plot/--drift-plot, and no
    optional extra (scikit-learn, dask, onnx, torch) at all, on a plain scoring run."""
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    score_frame.to_csv(src, index=False)
    heavy = ("matplotlib", "sklearn", "dask", "onnx", "onnxruntime", "torch")
    code = ("import sys; from propensity.predict import main; "
            f"rc = main(['--model', {str(model_dir)!r}, '--input', {str(src)!r}, "
            f"'--output', {str(out)!r}]); "
            f"print(rc, [m for m in {heavy!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[-2] == "0 []", proc.stdout[-500:]
    assert out.exists()
