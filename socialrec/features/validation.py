"""Check a table read from a source file against its canonical schema (features/tables.py).

A loader maps the source's columns onto canonical names and hands the raw values (strings from a
text file, typed values from parquet) to :func:`validate_table`, which converts every column to its
canonical dtype. What cannot be converted is bad input:

- ``on_error: refuse`` (the default): the file is refused with a :class:`DataError` at the first
  bad row, naming the file, the line, the column and what was expected.
- ``on_error: skip``: bad rows are dropped, and every one is counted in the
  :class:`~socialrec.features.tables.ValidationReport` by reason, with a few example messages.

Duplicates policy: exact duplicate rows (equal in every column after conversion) are dropped in
both modes and counted under ``"exact duplicate row (dropped)"``. A repeated event with the same
timestamp is a logging artefact, and keeping it would double its weight in the graph; a source
without timestamps that means "repeated" should say so with a ``value`` (a count), as LastFM does.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from socialrec.features.tables import EVENT_TYPES, SCHEMAS, ValidationReport, conform

#: Columns every source of the table must provide (the others are optional, see tables.conform).
REQUIRED: dict[str, tuple[str, ...]] = {
    "interactions": ("user_id", "item_id", "event"),
    "social": ("src", "dst"),
    "shares": ("sharer_id", "item_id", "recipient_id"),
    "items": ("item_id",),
    "users": ("user_id",),
}

ID_COLUMNS = frozenset({"user_id", "item_id", "src", "dst", "sharer_id", "recipient_id"})
DUPLICATE_REASON = "exact duplicate row (dropped)"
ON_ERROR = ("refuse", "skip")

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
#: Value of an empty optional cell (tables.conform uses the same defaults for missing columns).
_BOOL_DEFAULTS = {"joined": False, "push_opt_in": True}


class DataError(ValueError):
    """Bad input, located: ``file``, ``line`` (1-based, the header is line 1), ``column`` and what
    was ``expected`` (plus what was found, when there is something to show).

    >>> str(DataError("interactions.csv", 17, "ts", "an integer Unix timestamp", got="yesterday"))
    "interactions.csv, line 17, column 'ts': expected an integer Unix timestamp, got 'yesterday'"
    """

    def __init__(
        self,
        file: str,
        line: int | None,
        column: str | None,
        expected: str,
        *,
        got: object = None,
        found: Sequence[object] | None = None,
        line_kind: str = "line",
    ) -> None:
        self.file, self.line, self.column, self.expected = file, line, column, expected
        self.got, self.found = got, list(found) if found is not None else None
        where = file
        if line is not None:
            where += f", {line_kind} {line}"
        if column is not None:
            where += f", column '{column}'"
        message = f"{where}: expected {expected}"
        if got is not None:
            message += f", got {str(got)!r}"
        if self.found is not None:
            message += "; columns found: " + ", ".join(str(c) for c in self.found)
        super().__init__(message)


@dataclass
class Lines:
    """Where a frame's rows came from, so that errors can name the source line.

    Row 0 is on line ``first`` (2 below a header line, 1 without one; ``kind="row"`` for formats
    without lines such as parquet). ``skipped`` lists physical lines the reader left out (skip mode,
    wrong number of fields), which shift every later row by one.
    """

    first: int = 2
    skipped: list[int] = field(default_factory=list)
    kind: str = "line"

    def of(self, row: int) -> int:
        line = self.first + row
        for s in sorted(self.skipped):
            if s <= line:
                line += 1
        return line


# Each converter returns the canonical values and a mask of cells that could not be converted.
Converter = Callable[[str, pd.Series], tuple[pd.Series, np.ndarray]]


def _as_text(s: pd.Series) -> pd.Series:
    """Stripped strings with <NA> for empty or missing cells."""
    text = s.astype("string").str.strip()
    return text.mask(text == "")


def _ids(col: str, s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    text = _as_text(s)
    return text, text.isna().to_numpy()


def _event(col: str, s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    text = _as_text(s).str.lower()
    return text, ~text.isin(EVENT_TYPES).fillna(False).to_numpy(dtype=bool)


def _number(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Floats (NaN for empty cells) and the mask of non-empty cells that are not finite numbers."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        values = s.astype("float64")
        return values, np.zeros(len(s), dtype=bool)
    text = _as_text(s)
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = text.notna().to_numpy() & ~np.isfinite(values.to_numpy())
    return values, bad


def _timestamp(col: str, s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    values, bad = _number(s)
    v = values.to_numpy()
    with np.errstate(invalid="ignore"):
        bad |= np.isfinite(v) & (np.floor(v) != v)
    ints = pd.array(np.where(np.isfinite(v) & ~bad, v, 0).astype(np.int64), dtype="Int64")
    ints[~np.isfinite(v) | bad] = pd.NA
    return pd.Series(ints, index=s.index), bad


def _float(col: str, s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    return _number(s)


def _bool(col: str, s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    default = _BOOL_DEFAULTS.get(col, False)
    if pd.api.types.is_bool_dtype(s):
        return s.fillna(default).astype(bool), np.zeros(len(s), dtype=bool)
    text = _as_text(s).str.lower()
    true, false = text.isin(_TRUE).fillna(False), text.isin(_FALSE).fillna(False)
    bad = (text.notna() & ~true & ~false).to_numpy(dtype=bool)
    return true.astype(bool) | (text.isna() & default).astype(bool), bad


def _text(col: str, s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    return _as_text(s), np.zeros(len(s), dtype=bool)


def _kind(col: str) -> tuple[Converter, str]:
    """The converter of a canonical column and the phrase that says what it expects."""
    if col in ID_COLUMNS:
        return _ids, "a non-empty id"
    if col == "event":
        return _event, "an event kind (one of " + ", ".join(EVENT_TYPES) + ")"
    if col == "ts":
        return _timestamp, "an integer Unix timestamp"
    if col in ("value", "weight", "price"):
        return _float, "a number"
    if col in ("joined", "push_opt_in"):
        return _bool, "a boolean (true/false, yes/no, 1/0)"
    return _text, "text"


def check_columns(
    columns: Sequence[str], table: str, file: str, line: int | None = 1,
    found: Sequence[object] | None = None,
) -> None:
    """Refuse a table whose canonical ``columns`` lack a required one (``found``: the source's)."""
    for col in REQUIRED[table]:
        if col not in columns:
            raise DataError(file, line, col, f"a column for {table} '{col}' (map one under "
                            "columns:, or give a value under constants:)",
                            found=columns if found is None else found)


def validate_table(
    raw: pd.DataFrame,
    table: str,
    *,
    file: str,
    report: ValidationReport,
    on_error: str = "refuse",
    lines: Lines | None = None,
) -> pd.DataFrame:
    """Convert ``raw`` (canonical column names, raw values) to the canonical frame of ``table``.

    Bad rows raise :class:`DataError` (``on_error="refuse"``) or are dropped and counted in
    ``report`` (``"skip"``); exact duplicate rows are dropped and counted either way. Extra columns
    of ``items`` / ``users`` are kept as text side information. The integer index of ``raw`` is each
    row's 0-based position in the file (rows the reader left out keep the others' positions), which
    ``lines`` turns into line numbers.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"{file}: on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    lines = lines or Lines()
    check_columns(list(raw.columns), table, file, line=1 if lines.first == 2 else None)
    if pd.api.types.is_integer_dtype(raw.index):
        positions = raw.index.to_numpy()
    else:
        positions = np.arange(len(raw))
    raw = raw.reset_index(drop=True)
    schema = SCHEMAS[table]
    columns = [c for c in schema if c in raw.columns]
    if table in ("items", "users"):
        columns += [c for c in raw.columns if c not in schema]

    converted: dict[str, pd.Series] = {}
    first_bad = np.full(len(raw), -1, dtype=np.int64)  # per row: index of its first bad column
    for j, col in enumerate(columns):
        convert, _ = _kind(col) if col in schema else (_text, "text")
        converted[col], bad = convert(col, raw[col])
        first_bad[(first_bad < 0) & bad] = j

    bad_rows = np.flatnonzero(first_bad >= 0)
    if len(bad_rows):
        if on_error == "refuse":
            raise _error_at(raw, columns, first_bad, bad_rows[0], positions, file, lines)
        for j in np.unique(first_bad[bad_rows]):
            rows = bad_rows[first_bad[bad_rows] == j]
            col = columns[j]
            example = str(_error_at(raw, columns, first_bad, rows[0], positions, file, lines))
            report.add(file, f"column '{col}': expected {_kind(col)[1]}", len(rows), example)

    df = pd.DataFrame(converted)
    df = df[first_bad < 0]
    duplicated = df.duplicated().to_numpy()
    if duplicated.any():
        row = int(positions[df.index[int(np.argmax(duplicated))]])
        example = f"{file}, {lines.kind} {lines.of(row)}: an exact duplicate of an earlier row"
        report.add(file, DUPLICATE_REASON, int(duplicated.sum()), example)
        df = df[~duplicated]
    return conform(df, table)


def _error_at(
    raw: pd.DataFrame, columns: list[str], first_bad: np.ndarray, row: int,
    positions: np.ndarray, file: str, lines: Lines,
) -> DataError:
    col = columns[first_bad[row]]
    value = raw[col].iloc[row]
    got = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else value
    line = lines.of(int(positions[row]))
    return DataError(file, line, col, _kind(col)[1], got=got, line_kind=lines.kind)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'ratios'?)`` when ``name`` is close to one of ``known`` (a typo), else
    ``""``: the hint a refused config key or value carries."""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
