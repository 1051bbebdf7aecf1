"""Session-table schema, validation errors, the Preprocessor and the stratified split."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.tabular import (
    DataError,
    Preprocessor,
    Schema,
    iter_raw_chunks,
    load_table,
    parse_frame,
    read_table,
    schema_from_config,
    stratified_split,
)
from nn_core import MLP, load_model, save_model
from nn_core.io import ModelFileError
from nn_core.preprocessing import canonical_text

UCI = Path(__file__).resolve().parents[2] / "data" / "online_shoppers_intention.csv"
UCI_LINES = UCI.read_text().splitlines()  # header + 12,330 data rows (CRLF stripped)


def uci_subset(tmp_path: Path, n_rows: int = 6, edit=None, name: str = "t.csv") -> Path:
    """Write the header and the first ``n_rows`` UCI rows; ``edit(rows)`` may change them."""
    rows = [line.split(",") for line in UCI_LINES[: n_rows + 1]]
    if edit is not None:
        edit(rows)
    path = tmp_path / name
    path.write_text("\r\n".join(",".join(r) for r in rows) + "\r\n")
    return path


def set_cell(row: int, column: str, value: str):
    """An edit that sets data row ``row`` (1-based) of ``column``."""

    def edit(rows):
        rows[row][rows[0].index(column)] = value

    return edit


def test_uci_file_loads_with_documented_counts():
    frame = load_table(UCI, Schema.uci())
    assert len(frame) == 12_330
    assert int(frame["Revenue"].sum()) == 1_908
    assert frame["PageValues"].dtype == np.float64
    assert set(frame["Weekend"]) == {"TRUE", "FALSE"}
    assert set(frame["Month"]) == {"Feb", "Mar", "May", "June", "Jul", "Aug", "Sep", "Oct",
                                   "Nov", "Dec"}
    assert frame["Browser"].astype(int).between(1, 13).all()
    # scientific notation (e.g. 7.50E-05) parses as a number
    assert (frame["ExitRates"] > 0).any()


@pytest.mark.parametrize(
    "row, column, value, problem",
    [
        (3, "Administrative", "abc", "not a number"),
        (2, "ProductRelated_Duration", "", "missing value"),
        (4, "BounceRates", "NaN", "missing value"),
        (1, "PageValues", "inf", "infinite value"),
        (5, "Administrative_Duration", "-3", "below the allowed minimum 0"),
        (2, "ExitRates", "1.5", "above the allowed maximum 1"),
        (3, "Month", " ", "missing value"),
        (6, "Revenue", "maybe", "target must be TRUE/FALSE or 1/0"),
        (1, "Revenue", "", "missing target value"),
    ],
)
def test_each_cell_error_names_file_row_column_and_value(tmp_path, row, column, value, problem):
    path = uci_subset(tmp_path, edit=set_cell(row, column, value))
    with pytest.raises(DataError) as info:
        load_table(path, Schema.uci())
    err = info.value
    assert (err.row, err.column) == (row, column)
    message = str(err)
    assert str(path) in message
    assert f"data row {row} (line {row + 1}" in message
    assert repr(column) in message
    assert problem in message
    if value.strip():
        assert repr(value) in message


def test_earliest_bad_row_is_reported(tmp_path):
    def edit(rows):
        set_cell(5, "Administrative", "x")(rows)
        set_cell(2, "Weekend", "")(rows)

    with pytest.raises(DataError) as info:
        load_table(uci_subset(tmp_path, edit=edit), Schema.uci())
    assert (info.value.row, info.value.column) == (2, "Weekend")


def test_missing_column(tmp_path):
    def drop_region(rows):
        k = rows[0].index("Region")
        for r in rows:
            del r[k]

    with pytest.raises(DataError, match="column 'Region': required column is missing"):
        load_table(uci_subset(tmp_path, edit=drop_region), Schema.uci())


def test_empty_file_header_only_duplicate_header_and_ragged_row(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_table(empty, Schema.uci())
    with pytest.raises(DataError, match="no data rows"):
        load_table(uci_subset(tmp_path, n_rows=0), Schema.uci())

    def duplicate(rows):
        rows[0][1] = "Administrative"

    with pytest.raises(DataError, match="appears twice"):
        load_table(uci_subset(tmp_path, edit=duplicate), Schema.uci())

    def extra_field(rows):
        rows[3].append("surplus")

    with pytest.raises(DataError, match="expected 18 fields, found 19") as info:
        load_table(uci_subset(tmp_path, edit=extra_field), Schema.uci())
    assert info.value.row == 3

    def short_row(rows):
        del rows[2][-3:]

    with pytest.raises(DataError, match="malformed CSV: expected 18 fields, found 15") as info:
        load_table(uci_subset(tmp_path, edit=short_row), Schema.uci())
    assert info.value.row == 2  # not "missing value": the parser filled it with empty cells
    with pytest.raises(DataError, match="file not found"):
        load_table(tmp_path / "nope.csv", Schema.uci())


@pytest.mark.parametrize("chunksize", [2, 100])
def test_a_row_shorter_than_its_header_is_malformed(tmp_path, chunksize):
    """The parser fills a short row with empty cells; it is refused as a long row is, with
    the same message, even where only a column no rule reads is missing (the target when
    scoring); a table without that column at all is read."""
    def cut(row, n):
        return lambda rows: rows[row].__delitem__(slice(-n, None))

    scoring = Schema(None, Schema.uci().numeric, Schema.uci().categorical)
    for row, n, schema in ((2, 1, scoring), (5, 1, scoring), (3, 4, scoring), (4, 1, None)):
        path = uci_subset(tmp_path, edit=cut(row, n))
        with pytest.raises(DataError) as info:
            load_table(path, schema or Schema.uci(), with_target=schema is None,
                       chunksize=chunksize)
        assert str(info.value) == (f"{path}, data row {row} (line {row + 1}; row 1 is the "
                                   f"first row below the header): malformed CSV: expected 18 "
                                   f"fields, found {18 - n}")

    def drop_target(rows):
        for r in rows:
            del r[-1]

    assert len(load_table(uci_subset(tmp_path, edit=drop_target), scoring, with_target=False,
                          chunksize=chunksize)) == 6


def test_an_earlier_short_row_is_named_before_a_later_bad_cell(tmp_path):
    def edit(rows):
        del rows[2][-1]  # only the target, which scoring does not read
        rows[5][0] = "x"

    scoring = Schema(None, Schema.uci().numeric, Schema.uci().categorical)
    with pytest.raises(DataError, match="expected 18 fields, found 17") as info:
        load_table(uci_subset(tmp_path, edit=edit), scoring, with_target=False)
    assert info.value.row == 2


def test_the_line_is_where_the_row_starts_after_quoted_line_breaks_and_blank_lines(tmp_path):
    """Data row r is on line r + 1 only while no quoted field holds a line break and no line
    is blank; the line given is the physical line where the row starts."""
    def edit(rows):
        rows[2][15] = '"Returning\n_Visitor"'  # data row 2 spans lines 3 and 4
        rows[3][15] = '"Returning\r\n_Visitor"'  # data row 3: lines 5 and 6
        rows.insert(5, [""])  # a blank line 8, skipped: data row 5 on line 9
        rows[6][1] = "abc"

    path = uci_subset(tmp_path, edit=edit)
    with pytest.raises(DataError) as info:
        load_table(path, Schema.uci())
    assert info.value.row == 5 and "data row 5 (line 9;" in str(info.value)
    path.write_text(path.read_text().replace(",abc,", ",0,", 1))
    assert len(load_table(path, Schema.uci())) == 6

    def extra(rows):
        edit(rows)
        rows[6][1] = "0"
        rows[6].append("surplus")

    with pytest.raises(DataError) as info:  # the parser's own count says line 8
        load_table(uci_subset(tmp_path, edit=extra), Schema.uci())
    assert "data row 5 (line 9;" in str(info.value) and "found 19" in str(info.value)


def test_a_pipe_gives_the_data_row_without_a_line(tmp_path):
    """A pipe cannot be read again to find the line: the message gives the data row only."""
    import os
    import threading

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    text = uci_subset(tmp_path, edit=set_cell(3, "Administrative", "abc")).read_text()
    writer = threading.Thread(target=fifo.write_text, args=(text,))
    writer.start()
    try:
        with pytest.raises(DataError) as info:
            load_table(fifo, Schema.uci())
    finally:
        writer.join()
    assert f"{fifo}, data row 3 (row 1 is the first row below the header), " in str(info.value)


@pytest.mark.parametrize("chunksize", [2, 100])
@pytest.mark.parametrize("cell, problem", [
    ("1e400", "value beyond float range"), ("-1E+999", "value beyond float range"),
    ("1" + "0" * 400, "value beyond float range"), ("inf", "infinite value"),
    ("-Infinity", "infinite value"),
])
def test_a_number_beyond_float_range_is_quoted_as_written(tmp_path, chunksize, cell, problem):
    """The parser reads 1e400 as inf: the message quotes the cell, whether the column was
    read as numbers (chunksize 2: the other chunk) or as text (another bad cell in it)."""
    for other in ("0", "x"):
        def edit(rows, other=other):
            set_cell(3, "Administrative_Duration", cell)(rows)
            set_cell(6, "Administrative_Duration", other)(rows)

        with pytest.raises(DataError) as info:
            load_table(uci_subset(tmp_path, edit=edit), Schema.uci(), chunksize=chunksize)
        assert info.value.row == 3
        assert str(info.value).endswith(f"column 'Administrative_Duration': {problem} "
                                        f"(value: {cell!r})")


def test_byte_order_mark_and_blanks_around_names_are_tolerated(tmp_path):
    text = uci_subset(tmp_path).read_text().replace("Month,", " Month ,")
    path = tmp_path / "bom.csv"
    path.write_text("\ufeff" + text, encoding="utf-8")
    frame = load_table(path, Schema.uci())
    assert len(frame) == 6 and frame.loc[0, "Month"] == "Feb"


def test_row_numbers_continue_across_chunks(tmp_path):
    path = uci_subset(tmp_path, n_rows=9, edit=set_cell(8, "Informational", "?"))
    schema = Schema.uci()
    with pytest.raises(DataError) as info:
        for first_row, raw in iter_raw_chunks(path, None, chunksize=3):
            parse_frame(raw, schema, path, first_row)
    assert info.value.row == 8


@pytest.mark.parametrize(
    "text, expected",
    [(" 3.0 ", "3"), ("007", "7"), ("true", "TRUE"), ("FALSE", "FALSE"), ("Feb", "Feb"),
     ("0.5", "0.5"), ("1234567890123456789", "1234567890123456789"), ("-2", "-2")],
)
def test_canonical_category_text(text, expected):
    assert canonical_text(text) == expected


def small_frame():
    return pd.DataFrame({
        "count": [0.0, 1.0, 3.0, 7.0],
        "rate": [0.0, 0.5, 0.25, 0.25],
        "const": [2.0, 2.0, 2.0, 2.0],
        "code": ["2", "10", "2", "1"],
        "kind": ["b", "a", "a", "b"],
    })


def test_preprocessor_math_by_hand():
    df = small_frame()
    pre = Preprocessor(["count", "rate", "const"], ["code", "kind"]).fit(df)
    cols = {c["name"]: c for c in pre.columns}
    assert cols["count"]["log1p"] is True  # non-negative with max > 1
    assert cols["rate"]["log1p"] is False  # a fraction in [0, 1]
    assert cols["const"]["log1p"] is True and cols["const"]["std"] == 1.0
    assert cols["code"]["categories"] == ["1", "2", "10"]  # numbers sort numerically
    assert cols["kind"]["categories"] == ["a", "b"]
    assert pre.n_features == 3 + 4 + 3
    assert pre.feature_names == ["log1p(count)", "rate", "log1p(const)", "code=1", "code=2",
                                 "code=10", "code=<unseen>", "kind=a", "kind=b", "kind=<unseen>"]
    X = pre.transform(df)
    u = np.log1p(df["count"].to_numpy())
    np.testing.assert_allclose(X[:, 0], (u - u.mean()) / u.std())
    r = df["rate"].to_numpy()
    np.testing.assert_allclose(X[:, 1], (r - r.mean()) / r.std())
    np.testing.assert_allclose(X[:, 2], 0.0)
    np.testing.assert_array_equal(X[:, 3:7], [[0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0],
                                              [1, 0, 0, 0]])
    np.testing.assert_array_equal(X[:, 7:], [[0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_unseen_categories_use_the_bucket_and_are_counted():
    pre = Preprocessor(["count"], ["code", "kind"]).fit(small_frame())
    new = pd.DataFrame({"count": [1.0, 2.0], "code": ["2.0", "99"], "kind": ["c", "a"]})
    X = pre.transform(new)
    np.testing.assert_array_equal(X[:, 1:5], [[0, 1, 0, 0], [0, 0, 0, 1]])  # "2.0" is "2"
    np.testing.assert_array_equal(X[:, 5:], [[0, 0, 1], [1, 0, 0]])
    assert pre.unseen_counts(new) == {"code": 1, "kind": 1}


def test_column_order_does_not_matter_and_extra_columns_are_ignored():
    df = small_frame()
    pre = Preprocessor(["count", "rate"], ["code", "kind"]).fit(df)
    shuffled = df[["kind", "rate", "code", "const", "count"]].assign(extra="zzz")
    np.testing.assert_array_equal(pre.transform(shuffled), pre.transform(df))


def test_transform_errors_name_row_and_column():
    pre = Preprocessor(["count"], ["code"]).fit(small_frame())
    with pytest.raises(ValueError, match=r"row 2, column 'count': negative value"):
        pre.transform(pd.DataFrame({"count": [1.0, -1.0], "code": ["1", "2"]}))
    with pytest.raises(ValueError, match=r"row 12, column 'count': not a finite number"):
        pre.transform(pd.DataFrame({"count": [np.nan], "code": ["1"]}), first_row=12)
    with pytest.raises(ValueError, match="'code' is missing"):
        pre.transform(pd.DataFrame({"count": [1.0]}))


def test_save_load_round_trip_and_file_format(tmp_path):
    df = small_frame()
    pre = Preprocessor(["count", "rate"], ["code"], target="y", id_column="sid").fit(df)
    save_model(tmp_path, MLP(pre.n_features, (2,)), pre)
    doc = json.loads((tmp_path / "preprocess.json").read_text())
    assert doc["format"] == "purchase-propensity-preprocess" and doc["format_version"] == 1
    assert doc["target"] == "y" and doc["id_column"] == "sid"
    assert doc["source"] == {"kind": "table"}
    assert [c["name"] for c in doc["columns"]] == ["count", "rate", "code"]
    assert set(doc["columns"][0]) == {"name", "kind", "log1p", "mean", "std"}
    back = load_model(tmp_path)
    np.testing.assert_array_equal(back.preprocessing.transform(df), pre.transform(df))
    assert back.preprocessing.feature_names == pre.feature_names
    np.testing.assert_array_equal(
        back.predict_proba(df), back.network.predict_proba(pre.transform(df)).astype(np.float64)
    )


def test_load_errors_name_the_file(tmp_path):
    df = small_frame()
    pre = Preprocessor(["count", "rate"], ["code"]).fit(df)
    with pytest.raises(ModelFileError, match="model directory not found"):
        load_model(tmp_path / "missing")
    save_model(tmp_path, MLP(pre.n_features, (2,)))
    with pytest.raises(ModelFileError, match=r"preprocess\.json: missing"):
        load_model(tmp_path).predict_proba(df)
    (tmp_path / "preprocess.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"preprocess\.json"):
        load_model(tmp_path)
    (tmp_path / "preprocess.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFileError, match="not a preprocessing state file"):
        load_model(tmp_path)
    save_model(tmp_path, MLP(pre.n_features + 1, (2,)), pre)
    with pytest.raises(ModelFileError, match=r"expects 7 inputs but preprocess\.json builds 6"):
        load_model(tmp_path)


def test_stratified_split_partitions_and_keeps_the_class_balance():
    y = np.r_[np.ones(150, dtype=int), np.zeros(850, dtype=int)]
    train, dev, test = stratified_split(y, seed=3)
    assert len(np.intersect1d(train, dev)) == len(np.intersect1d(dev, test)) == 0
    np.testing.assert_array_equal(np.sort(np.r_[train, dev, test]), np.arange(1000))
    assert (len(train), len(dev), len(test)) == (700, 150, 150)
    assert [int(y[p].sum()) for p in (train, dev, test)] == [105, 23, 22]  # round(0.85 * 150) = 128
    again = stratified_split(y, seed=3)
    np.testing.assert_array_equal(again[0], train)
    assert not np.array_equal(stratified_split(y, seed=4)[0], train)


def test_schema_config_file(tmp_path):
    cfg = tmp_path / "roles.json"
    cfg.write_text(json.dumps({"target": "bought", "numeric": ["a"], "categorical": ["c"],
                               "ranges": {"a": [0, None]}}))
    roles = schema_from_config(cfg)
    assert roles == {"target": "bought", "numeric": ("a",), "categorical": ("c",),
                     "ranges": {"a": (0, None)}}
    cfg.write_text(json.dumps({"target": "bought", "numerics": ["a"]}))
    with pytest.raises(DataError, match="unknown key"):
        schema_from_config(cfg)
    with pytest.raises(ValueError, match="more than one role"):
        Schema("a", ("a",), ())


def test_separating_commas_skip_quoted_ones_across_blocks(tmp_path):
    """Commas inside quotes (with doubled quotes and line breaks there) are not counted,
    whatever block a quoted field starts or ends in."""
    from features.tabular import _separating_commas

    text = b'a,b,c\r\n1,"x,""y"",\r\nz",3\n"q""",,\n4,"",","\n'
    path = tmp_path / "q.csv"
    path.write_bytes(text)
    fd = os.open(path, os.O_RDONLY)
    try:
        for block_size in (1, 2, 3, 5, 7, 1 << 22):
            assert _separating_commas(fd, 7, block_size) == 6
    finally:
        os.close(fd)


def test_separating_commas_agree_with_the_csv_module_or_refuse(tmp_path):
    """Over 300 small generated files (quoted fields with commas, doubled quotes and line
    breaks, blanks before quotes, short rows; in some, quotes the parser reads as text:
    ``x"y``, ``12" m``, ``"a"b``), the count for block sizes 1, 3, 7 and 4 MiB is the
    csv module's count of separators, or -1 (read again) in every block size; a file
    whose quotes all open or close a field is always counted."""
    import csv
    import random

    from features.tabular import _separating_commas

    rng = random.Random(0)
    path = tmp_path / "g.csv"
    counted = refused = 0
    for _ in range(300):
        width, stray = rng.randint(2, 5), rng.random() < 0.5
        blanks = rng.random() < 0.5  # skipinitialspace, as when a blank precedes a quote
        eol = rng.choice(["\n", "\r\n"])

        def cell(blanks=blanks, stray=stray):
            r = rng.random()
            if r < 0.3:
                return (rng.choice(["", " ", "  "]) if blanks else "") + '"' + rng.choice(
                    ["a,b", 'x""y', "l1\nl2,", ",,", "", '""']) + '"'
            if stray and r < 0.4:
                return rng.choice(['x"y', '12" m', '"a"b', 'a"', '"a" ', '"a""', '"'])
            return rng.choice(["1", "abc", "", "2.5", " "])

        rows = rng.randint(1, 20)
        short = rng.randrange(rows) if rng.random() < 0.5 else -1
        header = ",".join(f"c{i}" for i in range(width)) + eol
        data = eol.join(",".join(cell() for _ in range(width - (r == short)))
                        for r in range(rows)) + rng.choice([eol, ""])
        path.write_bytes((header + data).encode())
        expected = sum(len(fields) - 1 for fields in csv.reader(
            io.StringIO(data, newline=""), skipinitialspace=blanks) if fields)
        fd = os.open(path, os.O_RDONLY)
        try:
            got = {_separating_commas(fd, len(header.encode()), block_size, blanks)
                   for block_size in (1, 3, 7, 1 << 22)}
        finally:
            os.close(fd)
        assert got in ({expected}, {-1}), (data, got, expected)
        assert stray or got == {expected}, data
        counted += got == {expected} and '"' in data
        refused += got == {-1}
    assert counted > 100 and refused > 50


def test_a_quote_inside_an_unquoted_field_makes_the_short_row_found(tmp_path):
    """A quote the parser reads as text (``x"y``) must not let the commas of a later quoted
    field make up for a short row (review: counted 6 of 6, the row was accepted, its
    missing cell imputed); the same quotes with no short row are no error."""
    scoring = Schema(None, ("c",), ("b",), "a")
    path = tmp_path / "stray.csv"
    path.write_text('a,b,c\n1,x"y,2\n3,4\n"5,6,7,8,9,0",1,2\n')
    for on_invalid in ("error", "impute"):
        with pytest.raises(DataError) as info:
            read_table(path, scoring, on_invalid=on_invalid, with_target=False)
        assert str(info.value) == (f"{path}, data row 2 (line 3; row 1 is the first row "
                                   "below the header): malformed CSV: expected 3 fields, "
                                   "found 2")
    path.write_text('a,b,c\n1,12" monitor,2\n3,4,\n"5,6",1,2\n')
    frame, _ = read_table(path, scoring, on_invalid="impute", with_target=False)
    assert frame["b"].tolist() == ['12" monitor', "4", "1"]


@pytest.mark.parametrize("chunksize", [2, 100])
def test_a_short_row_of_a_quoted_file_is_found_and_a_full_one_is_not_read_again(
        tmp_path, chunksize, monkeypatch):
    """A file with quotes and an empty last column: its separating commas are counted; a
    short row (after a quoted line break and a quoted comma) is named at its row and line,
    and a file with none is not read again with the csv module."""
    import features.tabular as tabular

    scoring = Schema(None, Schema.uci().numeric, Schema.uci().categorical)

    def quoted(rows):
        for r in rows[1:]:
            r[-1] = ""  # no Revenue: what scoring files have
        rows[1][15] = '"Returning,""Visitor"""'
        rows[2][15] = '"Returning\n_Visitor"'  # data row 2 on lines 3 and 4

    def short(rows):
        quoted(rows)
        del rows[4][-2:]  # data row 4, on line 6

    path = uci_subset(tmp_path, edit=short)
    with pytest.raises(DataError) as info:
        load_table(path, scoring, with_target=False, chunksize=chunksize)
    assert str(info.value) == (f"{path}, data row 4 (line 6; row 1 is the first row below "
                               "the header): malformed CSV: expected 18 fields, found 16")

    def no_second_read(*args):
        raise AssertionError("read again")

    monkeypatch.setattr(tabular, "_data_records", no_second_read)
    frame = load_table(uci_subset(tmp_path, edit=quoted), scoring, with_target=False,
                       chunksize=chunksize)
    assert len(frame) == 6 and frame["VisitorType"].iloc[0] == 'Returning,"Visitor"'


@pytest.mark.parametrize("cell", ["1e308", "9007199254740993", "2.50", "-0.5e1"])
def test_a_number_the_parser_read_is_quoted_as_written(tmp_path, cell):
    """Not as the float's digits (1e308: 309 of them) nor its shortest text."""
    path = uci_subset(tmp_path, edit=set_cell(4, "SpecialDay", cell))
    with pytest.raises(DataError) as info:
        load_table(path, Schema.uci())
    assert info.value.row == 4 and info.value.value == cell


def test_a_parsed_number_without_the_file_is_its_shortest_text():
    """Where the file cannot be read again (a pipe): integers below 2**53 by their digits,
    others by the shortest text that reads back as the same float."""
    from features.tabular import _number_text

    text = _number_text(np.array([3.0, 1e308, 2.5, -2.0**60]))
    assert [text(i) for i in range(4)] == ["3", "1e+308", "2.5", "-1.152921504606847e+18"]
