"""What the real-dataset loaders share to read their files: finding a dataset's directory and a
file in it, the loader options every dataset takes, and plain delimited tables read into the
canonical ones (validated, bad lines refused or counted).
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from socialrec.features.tables import ValidationReport
from socialrec.features.validation import DataError, Lines, validate_table

ON_ERROR = ("refuse", "skip")
_BAD_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_SKIPPED = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")


def dataset_dir(root: Path, name: str) -> Path:
    """``<root>/<name>``, refused with a message saying how to point at it when it is absent."""
    path = Path(root) / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset {name!r}: no directory {path}; set dataset.root or SOCIALREC_DATA_ROOT to "
            "the directory holding the real datasets")
    return path


def on_error(cfg: dict) -> str:
    """``dataset.on_error``: refuse (default: the first bad line raises DataError) or skip (bad
    lines are dropped and counted in the dataset's report)."""
    value = cfg.get("on_error", "refuse")
    if value not in ON_ERROR:
        raise ValueError(f"dataset.on_error must be one of {', '.join(ON_ERROR)}, not {value!r}")
    return value


def option(cfg: dict, key: str, allowed: tuple[Any, ...], default: Any) -> Any:
    """A dataset option that must take one of a few values."""
    value = cfg.get(key, default)
    if value not in allowed:
        choices = ", ".join(str(a) for a in allowed)
        raise ValueError(f"dataset.{key} must be one of {choices}, not {value!r}")
    return value


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (see SOURCE.md beside it)")
    return path


def read_raw(
    path: Path, columns: list[str], report: ValidationReport, *, sep: str = "\t",
    errors: str = "refuse", header: bool = True,
) -> tuple[pd.DataFrame, Lines]:
    """The ``columns`` of a delimited file with a header (``header=False``: a file without one,
    whose fields are ``columns`` in order), as strings.

    The frame's integer index is each row's position in the file, so that
    :func:`~socialrec.features.validation.validate_table` names the right line; blank lines are
    counted in ``report`` and left out, and so are (``errors="skip"``) lines with the wrong number
    of fields, which refuse the file otherwise.
    """
    file = require_file(path).name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            raw = pd.read_csv(
                path, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                header=0 if header else None, names=None if header else columns,
                skip_blank_lines=False, on_bad_lines="error" if errors == "refuse" else "warn",
                # TSV has no quoting: a '"' inside an artist's name is just a character.
                quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL)
        except pd.errors.ParserError as e:
            m = _BAD_FIELDS.search(str(e))
            if not m:
                raise DataError(file, None, None, "a delimited text file", got=str(e)) from e
            raise DataError(file, int(m[2]), None, f"{m[1]} fields separated by {sep!r}",
                            got=f"{m[3]} fields") from e
        except pd.errors.EmptyDataError as e:
            raise DataError(file, 1, None, "a header line" if header else "data",
                            got="an empty file") from e
        except UnicodeDecodeError as e:
            raise DataError(file, None, None, "UTF-8 text", got=str(e)) from e
    lines = Lines(first=2 if header else 1)
    for warning in caught:
        m = _SKIPPED.search(str(warning.message))
        if m:
            lines.skipped.append(int(m[1]))
            report.add(file, "wrong number of fields", 1,
                       f"{file}, line {m[1]}: expected {m[2]} fields separated by {sep!r}, "
                       f"got {m[3]} fields")
    raw.columns = [str(c).strip() for c in raw.columns]
    for col in columns:
        if col not in raw.columns:
            raise DataError(file, 1, col, f"a column {col!r}", found=list(raw.columns))
    raw = raw[columns]
    blank = (raw == "").all(axis=1).to_numpy()
    if blank.any():
        report.add(file, "blank line (ignored)", int(blank.sum()))
        raw = raw[~blank]
    return raw, lines


def to_table(
    raw: pd.DataFrame,
    table: str,
    report: ValidationReport,
    *,
    file: str,
    lines: Lines,
    columns: dict[str, str],
    constants: dict[str, Any] | None = None,
    errors: str = "refuse",
) -> pd.DataFrame:
    """The canonical ``table`` from raw string columns (``columns``: canonical name -> source
    column) and ``constants``, validated (bad rows refused or counted, exact duplicates counted)."""
    mapped = pd.DataFrame({canon: _fast_number(raw[source], _NUMERIC.get(canon))
                           for canon, source in columns.items()}, index=raw.index)
    for canon, value in (constants or {}).items():
        mapped[canon] = value
    return validate_table(mapped, table, file=file, report=report, on_error=errors, lines=lines)


#: Canonical numeric columns and the Arrow type their text is cast to on the fast path.
_NUMERIC = {"ts": pa.int64(), "value": pa.float64(), "weight": pa.float64(),
            "price": pa.float64()}


def _fast_number(text: pd.Series, arrow_type: pa.DataType | None) -> pd.Series:
    """Numbers cast in Arrow when every cell is a clean number (the usual case, ~10x faster than
    pandas.to_numeric); otherwise the text itself, so that validation finds and names the bad cell.
    """
    if arrow_type is None or pd.api.types.is_numeric_dtype(text):
        return text
    try:
        values = pc.cast(pa.array(text, type=pa.string()), arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return text
    if values.null_count:
        return text
    return pd.Series(values.to_numpy(zero_copy_only=False), index=text.index)


def read_delimited(
    path: Path,
    table: str,
    report: ValidationReport,
    *,
    columns: dict[str, str],
    constants: dict[str, Any] | None = None,
    sep: str = "\t",
    errors: str = "refuse",
    header: bool = True,
) -> pd.DataFrame:
    """A delimited file read and converted to the canonical ``table`` (see :func:`read_raw`)."""
    raw, lines = read_raw(path, list(columns.values()), report, sep=sep, errors=errors,
                          header=header)
    return to_table(raw, table, report, file=path.name, lines=lines, columns=columns,
                    constants=constants, errors=errors)
