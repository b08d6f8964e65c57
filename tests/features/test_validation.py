import pandas as pd
import pytest

from socialrec.features.tables import SCHEMAS, ValidationReport
from socialrec.features.validation import DUPLICATE_REASON, DataError, Lines, validate_table


def interactions(**columns):
    base = {"user_id": ["u1", "u2", "u3"], "item_id": ["i1", "i2", "i3"],
            "event": ["view", "click", "purchase"], "ts": ["10", "20", "30"]}
    base.update(columns)
    return pd.DataFrame(base, dtype=str)


def test_message_names_file_line_column_expected_and_got():
    err = DataError("interactions.csv", 17, "ts", "an integer Unix timestamp", got="yesterday")
    assert str(err) == ("interactions.csv, line 17, column 'ts': expected an integer Unix "
                        "timestamp, got 'yesterday'")
    assert (err.file, err.line, err.column) == ("interactions.csv", 17, "ts")
    assert isinstance(err, ValueError)


def test_valid_table_gets_canonical_dtypes():
    df = validate_table(interactions(value=["1", "", "2.5"]), "interactions", file="f.csv",
                        report=ValidationReport())
    assert df.dtypes.astype(str).to_dict() == {c: str(pd.Series(dtype=t).dtype)
                                              for c, t in SCHEMAS["interactions"].items()}
    assert df["ts"].tolist() == [10, 20, 30]
    assert df["value"].iloc[2] == 2.5 and pd.isna(df["value"].iloc[1])


@pytest.mark.parametrize(("column", "values", "row", "expected"), [
    ("ts", ["10", "yesterday", "30"], 1, "an integer Unix timestamp"),
    ("ts", ["10", "20", "30.5"], 2, "an integer Unix timestamp"),
    ("value", ["1", "2", "lots"], 2, "a number"),
    ("event", ["view", "like", "click"], 1, "an event kind"),
    ("user_id", ["u1", "u2", "  "], 2, "a non-empty id"),
    ("item_id", ["", "i2", "i3"], 0, "a non-empty id"),
])
def test_first_bad_row_is_refused_with_its_line(column, values, row, expected):
    with pytest.raises(DataError) as info:
        validate_table(interactions(**{column: values}), "interactions", file="f.csv",
                       report=ValidationReport())
    err = info.value
    assert (err.file, err.line, err.column) == ("f.csv", row + 2, column)  # header is line 1
    assert err.expected.startswith(expected)
    assert err.got == values[row]


def test_first_bad_row_wins_over_a_later_one_in_an_earlier_column():
    raw = interactions(user_id=["u1", "u2", ""], ts=["10", "x", "30"])
    with pytest.raises(DataError) as info:
        validate_table(raw, "interactions", file="f.csv", report=ValidationReport())
    assert (info.value.line, info.value.column) == (3, "ts")


def test_missing_required_column_names_it_and_the_columns_found():
    raw = interactions().drop(columns="event")
    with pytest.raises(DataError, match="'event'") as info:
        validate_table(raw, "interactions", file="f.csv", report=ValidationReport())
    assert info.value.column == "event"
    assert info.value.found == ["user_id", "item_id", "ts"]
    assert "columns found: user_id, item_id, ts" in str(info.value)


def test_skip_drops_bad_rows_and_counts_each_by_reason():
    raw = pd.DataFrame({
        "user_id": ["u1", "", "u3", "u4", "u5", "u6"],
        "item_id": ["i1", "i2", "i3", "i4", "i5", "i6"],
        "event": ["view", "view", "nope", "click", "nope", "cart"],
        "ts": ["1", "2", "3", "x", "5", "6"],
    }, dtype=str)
    report = ValidationReport()
    df = validate_table(raw, "interactions", file="f.csv", report=report, on_error="skip")
    assert df["user_id"].tolist() == ["u1", "u6"]
    reasons = report.refused["f.csv"]
    assert reasons["column 'user_id': expected a non-empty id"] == 1
    assert sum(v for k, v in reasons.items() if k.startswith("column 'event'")) == 2
    assert reasons["column 'ts': expected an integer Unix timestamp"] == 1
    assert report.total_refused == 4
    assert "f.csv, line 3, column 'user_id'" in report.examples["f.csv"][0]


def test_exact_duplicates_are_dropped_and_counted():
    raw = pd.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": ["x", "x", "x", "x"],
                        "event": ["view", "view", "click", "view"], "ts": ["1", "1", "1", "1"]})
    report = ValidationReport()
    df = validate_table(raw, "interactions", file="f.csv", report=report)
    assert len(df) == 3
    assert report.refused["f.csv"] == {DUPLICATE_REASON: 1}
    assert report.examples["f.csv"] == ["f.csv, line 3: an exact duplicate of an earlier row"]


def test_line_numbers_follow_rows_the_reader_left_out():
    # rows 0..2 of the frame sit on lines 2, 4, 6: lines 3 and 5 were skipped by the reader
    raw = interactions(ts=["1", "2", "bad"])
    with pytest.raises(DataError) as info:
        validate_table(raw, "interactions", file="f.csv", report=ValidationReport(),
                       lines=Lines(first=2, skipped=[3, 5]))
    assert info.value.line == 6


def test_booleans_and_side_columns():
    users = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "push_opt_in": ["yes", "0", "", "TRUE"],
                          "city": ["x", "", "y", "z"]})
    df = validate_table(users, "users", file="users.csv", report=ValidationReport())
    assert df["push_opt_in"].tolist() == [True, False, True, True]  # empty: the default, opted in
    assert df["city"].tolist()[0] == "x" and pd.isna(df["city"].iloc[1])
    with pytest.raises(DataError, match="line 3, column 'push_opt_in': expected a boolean"):
        validate_table(users.assign(push_opt_in=["yes", "maybe", "", "1"]), "users",
                       file="users.csv", report=ValidationReport())


def test_typed_values_from_parquet_are_accepted():
    raw = pd.DataFrame({"src": [1, 2], "dst": [2, 3], "ts": [5.0, None], "weight": [0.5, 2]})
    df = validate_table(raw, "social", file="s.parquet", report=ValidationReport(),
                        lines=Lines(first=1, kind="row"))
    assert df["src"].tolist() == ["1", "2"]
    assert df["ts"].iloc[0] == 5 and pd.isna(df["ts"].iloc[1])


def test_unknown_on_error_is_refused():
    with pytest.raises(ValueError, match="on_error"):
        validate_table(interactions(), "interactions", file="f.csv", report=ValidationReport(),
                       on_error="ignore")
