"""Issue 13, the reading path of tables: pipes, compressed, binary, empty and non-UTF-8 files,
long header fields, duplicate names, a header only, CRLF and byte-order marks, row numbers
of later chunks. Each case asserts the exit status, one line on stderr naming the file (and
the row and column where there is one), no traceback, and no file created or changed.

predict.py runs in this process (``propensity.predict.main``) where it can, which is fast;
whole commands (a new interpreter, train.py) are marked slow.
"""

import gzip
import hashlib
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.tabular import MAX_HEADER_BYTES, DataError, Schema, load_table
from propensity import predict

REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "data" / "online_shoppers_intention.csv"
LINES = UCI.read_text().splitlines()
HEADER = LINES[0].split(",")


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its content."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def table_text(rows=range(0, 12330, 500), edit=None, newline="\n") -> str:
    """The UCI header and some rows; ``edit(list of cell lists)`` may change them."""
    cells = [LINES[0].split(",")] + [LINES[1 + i].split(",") for i in rows]
    if edit is not None:
        edit(cells)
    return newline.join(",".join(r) for r in cells) + newline


def set_cell(row: int, column: str, value: str):
    def edit(cells):
        cells[row][HEADER.index(column)] = value
    return edit


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small UCI model (every 20th row; untrained numpy weights) written by save_model."""
    from features.tabular import UCI_CATEGORICAL, UCI_NUMERIC, Preprocessor
    from nn_core import MLP
    from nn_core.modeldir import save_model

    tmp = tmp_path_factory.mktemp("model")
    (tmp / "train.csv").write_text(table_text(range(0, 12330, 20)))
    frame = load_table(tmp / "train.csv", Schema.uci())
    pre = Preprocessor(UCI_NUMERIC, UCI_CATEGORICAL, target="Revenue").fit(frame)
    return save_model(tmp / "run", MLP(pre.n_features, (4,), backend="numpy", seed=1), pre)


def predict_main(capsys, *args):
    """Run predict.py's main in this process: (status, stdout, stderr)."""
    status = predict.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line(err: str, *needles) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


def refused(capsys, model_dir, folder: Path, source, *needles, extra=()):
    """predict.py on ``source`` with ``--output`` in ``folder``: exit 1, one line with the
    needles, nothing created or changed in ``folder``."""
    before = snapshot(folder)
    status, _, err = predict_main(capsys, "--model", model_dir, "--input", source,
                                    "--output", folder / "scores.csv", *extra)
    assert status == 1, err
    assert_one_line(err, *needles)
    assert snapshot(folder) == before
    return err


class Pipe:
    """A pipe fed ``data`` by a thread: its path ``/dev/fd/N`` reads like ``<(cat f)``."""

    def __init__(self, data: bytes) -> None:
        self.r, w = os.pipe()
        self.path = f"/dev/fd/{self.r}"

        def feed():
            try:
                with os.fdopen(w, "wb") as fh:
                    fh.write(data)
            except BrokenPipeError:  # the reader stopped early (an error)
                pass

        self.thread = threading.Thread(target=feed, daemon=True)
        self.thread.start()

    def close(self) -> None:
        os.close(self.r)
        self.thread.join(timeout=10)


@pytest.fixture()
def pipe():
    pipes = []

    def make(data: bytes) -> Pipe:
        pipes.append(Pipe(data))
        return pipes[-1]

    yield make
    for p in pipes:
        p.close()


# ------------------------------------------------------------------------ pipes


def test_predict_reads_a_pipe_once(capsys, model_dir, tmp_path, pipe):
    src = tmp_path / "in.csv"
    src.write_text(table_text())
    status, _, err = predict_main(capsys, "--model", model_dir, "--input", src, "--output",
                                  tmp_path / "file.csv")
    assert status == 0, err
    p = pipe(src.read_bytes())
    status, _, err = predict_main(capsys, "--model", model_dir, "--input", p.path, "--output",
                                  tmp_path / "pipe.csv")
    assert status == 0, err
    assert (tmp_path / "pipe.csv").read_bytes() == (tmp_path / "file.csv").read_bytes()


def test_predict_pipe_with_a_bad_cell_names_the_file_row(capsys, model_dir, tmp_path, pipe):
    p = pipe(table_text(edit=set_cell(17, "ExitRates", "x")).encode())
    refused(capsys, model_dir, tmp_path, p.path, p.path, "data row 17", "'ExitRates'",
            "not a number", extra=("--chunksize", "5"))


def test_load_table_reads_a_pipe_once(tmp_path, pipe):
    src = tmp_path / "t.csv"
    src.write_text(table_text())
    p = pipe(src.read_bytes())
    pd.testing.assert_frame_equal(load_table(p.path, Schema.uci()), load_table(src, Schema.uci()))


def test_predict_id_column_from_a_pipe(capsys, model_dir, tmp_path, pipe):
    text = table_text()
    lines = text.splitlines()
    text = "\n".join(["session," + lines[0]]
                     + [f"S{i}," + line for i, line in enumerate(lines[1:])]) + "\n"
    p = pipe(text.encode())
    out = tmp_path / "o.csv"
    status, _, err = predict_main(capsys, "--model", model_dir, "--input", p.path, "--output",
                                  out, "--id-column", "session")
    assert status == 0, err
    assert list(pd.read_csv(out)["session"]) == [f"S{i}" for i in range(len(lines) - 1)]


# ------------------------------------------------------------------ not a CSV text file


@pytest.mark.parametrize("kind, needle", [
    ("gzip", "gzip-compressed"),
    ("zip", "zip archive"),
    ("binary", "binary"),
    ("empty", "the file is empty"),
    ("blank", "the file is empty"),
    ("latin1-header", "not a UTF-8 text file"),
    ("directory", "is a directory"),
    ("missing", "file not found"),
])
def test_not_a_csv_text_file(capsys, model_dir, tmp_path, kind, needle):
    src = tmp_path / "in.csv"
    text = table_text().encode()
    if kind == "gzip":
        src.write_bytes(gzip.compress(text))
    elif kind == "zip":
        with zipfile.ZipFile(src, "w") as z:
            z.writestr("in.csv", text)
    elif kind == "binary":
        src.write_bytes(bytes(range(256)) * 64)
    elif kind == "empty":
        src.write_bytes(b"")
    elif kind == "blank":
        src.write_bytes(b"\r\n\n")
    elif kind == "latin1-header":
        src.write_bytes("Année,".encode("latin-1") + text)
    elif kind == "directory":
        src.mkdir()
    refused(capsys, model_dir, tmp_path, src, src, needle)


def test_non_utf8_cell_names_the_data_row(capsys, model_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(table_text(edit=set_cell(9, "Month", "Ao\xfbt")).encode("latin-1"))
    refused(capsys, model_dir, tmp_path, src, src, "not a UTF-8 text file", "data row 9",
            extra=("--chunksize", "4"))


def test_load_table_refuses_gzip_with_the_file_named(tmp_path):
    src = tmp_path / "t.csv.gz"
    src.write_bytes(gzip.compress(table_text().encode()))
    with pytest.raises(DataError, match="gzip-compressed") as info:
        load_table(src, Schema.uci())
    assert str(src) in str(info.value)


# ------------------------------------------------------------------------- the header


def test_header_field_over_128_kib_is_read(capsys, model_dir, tmp_path):
    """The csv module's default field limit (128 KiB) does not apply to the header."""
    long_name = "x" * 200_000
    text = table_text()
    lines = text.splitlines()
    src = tmp_path / "in.csv"
    src.write_text("\n".join([lines[0] + "," + long_name]
                             + [line + ",1" for line in lines[1:]]) + "\n")
    status, _, err = predict_main(capsys, "--model", model_dir, "--input", src, "--output",
                                  tmp_path / "o.csv")
    assert status == 0, err
    assert len(pd.read_csv(tmp_path / "o.csv")) == len(lines) - 1


def test_missing_column_named_even_beside_a_huge_header_field(capsys, model_dir, tmp_path):
    text = table_text().replace("ExitRates", "y" * 300_000, 1)
    src = tmp_path / "in.csv"
    src.write_text(text)
    refused(capsys, model_dir, tmp_path, src, src, "'ExitRates'", "required column is missing")


def test_header_longer_than_the_limit_is_refused(capsys, model_dir, tmp_path):
    src = tmp_path / "in.csv"
    with open(src, "wb") as fh:  # one "line" with no line break, like a binary blob
        fh.write(b"a" * (MAX_HEADER_BYTES + 10))
    refused(capsys, model_dir, tmp_path, src, src, "header row is longer than")


@pytest.mark.parametrize("edit, needles", [
    (lambda t: t.replace("Region", "Browser", 1), ["column 'Browser'", "appears twice"]),
    (lambda t: t.replace(",Region,", ",,", 1), ["header field 14 is empty"]),
    (lambda t: t.replace("Month", " Month ", 1), None),  # names are stripped: accepted
])
def test_header_names(capsys, model_dir, tmp_path, edit, needles):
    src = tmp_path / "in.csv"
    src.write_text(edit(table_text()))
    if needles is None:
        status, _, err = predict_main(capsys, "--model", model_dir, "--input", src,
                                      "--output", tmp_path / "o.csv")
        assert status == 0, err
    else:
        refused(capsys, model_dir, tmp_path, src, src, *needles)


def test_header_only_has_no_data_rows(capsys, model_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(LINES[0] + "\n")
    refused(capsys, model_dir, tmp_path, src, src, "no data rows")
    with pytest.raises(DataError, match="no data rows"):
        load_table(src, Schema.uci())


def test_crlf_and_byte_order_mark_give_the_same_scores(capsys, model_dir, tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text(table_text())
    odd = tmp_path / "odd.csv"
    odd.write_bytes(b"\xef\xbb\xbf" + table_text(newline="\r\n").encode())
    outs = []
    for src in (plain, odd):
        out = tmp_path / f"o_{src.stem}.csv"
        status, _, err = predict_main(capsys, "--model", model_dir, "--input", src,
                                      "--output", out)
        assert status == 0, err
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    pd.testing.assert_frame_equal(load_table(plain, Schema.uci()), load_table(odd, Schema.uci()))


# ------------------------------------------------------------ rows of later chunks


@pytest.mark.parametrize("chunksize", [1, 4, 7, 1000])
@pytest.mark.parametrize("row", [1, 6, 23])
def test_row_numbers_are_file_rows_in_every_chunk(capsys, model_dir, tmp_path, chunksize, row):
    src = tmp_path / "in.csv"
    src.write_text(table_text(edit=set_cell(row, "BounceRates", "2.5")))
    refused(capsys, model_dir, tmp_path, src, src, f"data row {row} (line {row + 1}",
            "'BounceRates'", "above the allowed maximum 1", "'2.5'",
            extra=("--chunksize", chunksize))


@pytest.mark.parametrize("row", [3, 18])
def test_ragged_row_of_a_later_chunk(capsys, model_dir, tmp_path, row):
    def extra_field(cells):
        cells[row].append("9")

    src = tmp_path / "in.csv"
    src.write_text(table_text(edit=extra_field))
    refused(capsys, model_dir, tmp_path, src, src, f"data row {row}", "expected 18 fields",
            extra=("--chunksize", "5"))


def test_unterminated_quote_is_a_malformed_csv(capsys, model_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(table_text(edit=set_cell(4, "Month", '"Nov')))
    refused(capsys, model_dir, tmp_path, src, src, "malformed CSV")


def test_a_numeric_column_scanned_only_where_it_fails(tmp_path):
    """A column the parser reads as numbers is checked without a per-cell scan, and gives
    the same messages: infinite values and range errors show the cell's text."""
    for value, problem in (("inf", "infinite value"), ("-3", "below the allowed minimum 0"),
                           ("1.5", "above the allowed maximum 1")):
        src = tmp_path / "t.csv"
        src.write_text(table_text(edit=set_cell(5, "ExitRates", value)))
        with pytest.raises(DataError) as info:
            load_table(src, Schema.uci(), chunksize=3)
        assert (info.value.row, info.value.column) == (5, "ExitRates")
        assert problem in str(info.value) and repr(value) in str(info.value)


# ------------------------------------------------------------ whole commands (slow)


def run_cli(*args, timeout=300, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True,
                          timeout=timeout, env=env, **kw)


@pytest.mark.slow
def test_train_reads_a_process_substitution(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text(table_text(range(0, 12330, 6)))
    res = run_cli("-c", "import subprocess, sys; sys.exit(subprocess.call(['bash', '-c', "
                  f"'{sys.executable} train.py --input <(cat {src}) --epochs 1 --quiet "
                  f"--output {tmp_path / 'run'}']))")
    assert res.returncode == 0, res.stderr.decode()
    assert (tmp_path / "run" / "model.json").is_file()


@pytest.mark.slow
def test_predict_reads_a_process_substitution(model_dir, tmp_path):
    src = tmp_path / "t.csv"
    src.write_text(table_text())
    res = run_cli("-c", "import subprocess, sys; sys.exit(subprocess.call(['bash', '-c', "
                  f"'{sys.executable} predict.py --model {model_dir} --input <(cat {src})']))")
    assert res.returncode == 0, res.stderr.decode()
    got = pd.read_csv(pd.io.common.StringIO(res.stdout.decode()))
    assert list(got.columns) == ["row", "propensity", "rank", "decile"]
    assert len(got) == len(table_text().splitlines()) - 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gzip", "latin1"])
def test_train_bad_files_one_line_nothing_written(tmp_path, kind):
    src = tmp_path / "t.csv"
    text = table_text(edit=set_cell(7, "Month", "D\xe9c"))
    src.write_bytes(gzip.compress(text.encode()) if kind == "gzip" else text.encode("latin-1"))
    before = snapshot(tmp_path)
    res = run_cli("train.py", "--input", src, "--epochs", "1", "--quiet", "--output",
                  tmp_path / "run", text=True)
    assert res.returncode == 1, res.stderr
    assert_one_line(res.stderr, src, "gzip-compressed" if kind == "gzip" else "data row 7")
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def test_scores_of_a_pipe_equal_the_predictor(model_dir, tmp_path, pipe):
    from features.scoring import score_table
    from nn_core import load_model

    text = table_text()
    model = load_model(model_dir)
    with score_table(pipe(text.encode()).path, model, chunksize=3) as scored:
        p = scored.scores()
    expected = model.predict_proba(pd.read_csv(pd.io.common.StringIO(text), dtype=str))
    np.testing.assert_allclose(p, expected, rtol=1e-12, atol=0)


@pytest.mark.slow
def test_full_temporary_disk_names_the_temporary_folder(model_dir, tmp_path):
    """The scores are spilled to anonymous temporary files; a write that fails there
    (EFBIG past a file-size limit, as ENOSPC would) names the folder, and nothing is
    written."""
    import resource

    work = tmp_path / "work"
    work.mkdir()
    (work / "in.csv").write_text(table_text(list(range(12330)) * 2))  # 24,660 rows
    before = snapshot(work)
    res = run_cli("predict.py", "--model", model_dir, "--input", work / "in.csv", "--output",
                  work / "scores.csv", text=True,
                  preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)))
    assert res.returncode == 1, res.stderr
    assert_one_line(res.stderr, "File too large", "a temporary file in")
    assert snapshot(work) == before
