"""What the real-dataset loaders share: finding a dataset's directory, reading its plain tables, and
turning group-buy records (initiator, item, participants...) into the canonical tables.

Group-buy files (BeiBei of GBGCN, the J2PRec Brightkite set) have one record per line, a variable
number of ids: ``initiator item [participant ...]``. They are read here rather than with
``pandas.read_csv`` because the number of fields varies from line to line.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from socialrec.features.tables import ValidationReport, conform
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
    constants: dict[str, object] | None = None,
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
    constants: dict[str, object] | None = None,
    sep: str = "\t",
    errors: str = "refuse",
    header: bool = True,
) -> pd.DataFrame:
    """A delimited file read and converted to the canonical ``table`` (see :func:`read_raw`)."""
    raw, lines = read_raw(path, list(columns.values()), report, sep=sep, errors=errors,
                          header=header)
    return to_table(raw, table, report, file=path.name, lines=lines, columns=columns,
                    constants=constants, errors=errors)


# --- group-buy records -------------------------------------------------------------------------


@dataclass
class GroupBuys:
    """Group-buy records of one file: ``records`` (line, initiator, item; one row per record, in
    file order) and ``members`` (record = position in ``records``, participant; one row per
    participant)."""

    file: str
    records: pd.DataFrame
    members: pd.DataFrame

    def take(self, mask: np.ndarray) -> GroupBuys:
        """The records where ``mask`` holds, with their participants."""
        keep = np.flatnonzero(mask)
        position = np.full(len(self.records), -1, dtype=np.int64)
        position[keep] = np.arange(len(keep))
        members = self.members[mask[self.members["record"].to_numpy()]].copy()
        members["record"] = position[members["record"].to_numpy()]
        return GroupBuys(self.file, self.records.iloc[keep].reset_index(drop=True),
                         members.reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.records)


def read_group_buys(
    path: Path,
    report: ValidationReport,
    *,
    sep: str = "\t",
    participants: str = "some",
    errors: str = "refuse",
) -> GroupBuys:
    """Read ``initiator item [participant ...]`` lines (ids are non-negative integers).

    ``participants`` says what the file must hold: ``"some"`` (at least one: a successful group)
    or ``"none"`` (a failed group). Bad lines raise :class:`DataError` naming the line and field,
    or with ``errors="skip"`` are dropped and counted in ``report``; blank lines are counted and
    ignored.
    """
    file = path.name
    try:
        text = require_file(path).read_bytes().decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        raise DataError(file, None, None, "UTF-8 text", got=str(e)) from e
    raw_lines = text.split("\n")
    if raw_lines and raw_lines[-1] == "":  # the newline that ends the last line
        raw_lines.pop()
    # Split every line in Arrow: one flat array of tokens, each with its line (row) and position.
    lines = pa.array(raw_lines, type=pa.string())
    blank = pc.equal(pc.utf8_trim_whitespace(lines), "").to_numpy(zero_copy_only=False)
    tokens = pc.split_pattern(lines, sep)
    n_fields = pc.list_value_length(tokens).to_numpy()
    flat = pc.list_flatten(tokens)
    row = pc.list_parent_indices(tokens).to_numpy()
    pos = np.arange(len(flat)) - tokens.offsets.to_numpy()[:-1][row]
    not_id = ~pc.utf8_is_digit(flat).to_numpy(zero_copy_only=False)  # "" is not an id either

    if blank.any():
        report.add(file, "blank line (ignored)", int(blank.sum()))
    bad_id = np.bincount(row[not_id], minlength=len(lines)) > 0
    bad_count = n_fields < 3 if participants == "some" else n_fields != 2
    bad = (bad_id | bad_count) & ~blank
    if bad.any():
        sep_name = "TAB" if sep == "\t" else repr(sep)
        shape = ("an initiator id, an item id and at least one participant id" if participants ==
                 "some" else "exactly an initiator id and an item id")
        expected_count = f"{shape} separated by {sep_name}"
        expected_id = "a non-negative integer id"

        def error(line: int) -> DataError:  # 0-based line
            if bad_id[line]:
                k = int(np.flatnonzero((row == line) & not_id)[0])
                col = int(pos[k])
                name = ("initiator", "item")[col] if col < 2 else f"participant {col - 1}"
                return DataError(file, line + 1, name, expected_id, got=flat[k].as_py())
            n = int(n_fields[line])
            return DataError(file, line + 1, None, expected_count,
                             got=f"{n} field" + "s" * (n != 1))

        if errors == "refuse":
            raise error(int(np.flatnonzero(bad)[0]))
        for reason, mask in ((f"expected {expected_id}", bad_id & bad),
                             (f"expected {expected_count}", bad_count & ~bad_id & bad)):
            if mask.any():
                report.add(file, reason, int(mask.sum()), str(error(int(np.flatnonzero(mask)[0]))))

    keep = ~(blank | bad)
    record_of_line = np.cumsum(keep) - 1
    kept = keep[row]

    def tokens_where(mask: np.ndarray) -> pd.Series:
        return _strings(flat.filter(pa.array(kept & mask)))

    records = pd.DataFrame({
        "line": np.flatnonzero(keep) + 1,
        "initiator": tokens_where(pos == 0),
        "item": tokens_where(pos == 1),
    })
    slot = kept & (pos >= 2)
    members = pd.DataFrame({
        "record": record_of_line[row[slot]].astype(np.int64),
        "participant": tokens_where(pos >= 2),
    })
    return GroupBuys(file, records, members)


def _strings(array: pa.Array) -> pd.Series:
    """An Arrow string array as a canonical (``string``) pandas column, without a Python copy."""
    return pd.Series(array.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get))


def concat(parts: list[GroupBuys]) -> GroupBuys:
    """Records of several files as one (the ``file`` is the first one's; lines are per file)."""
    offset, members = 0, []
    for p in parts:
        members.append(p.members.assign(record=p.members["record"] + offset))
        offset += len(p.records)
    return GroupBuys(parts[0].file, pd.concat([p.records for p in parts], ignore_index=True),
                     pd.concat(members, ignore_index=True))


def _no_ts(n: int) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))


def _events(users: pd.Series, items: pd.Series, event: str) -> pd.DataFrame:
    n = len(users)
    return pd.DataFrame({
        "user_id": users.reset_index(drop=True), "item_id": items.reset_index(drop=True),
        "event": pd.Series(np.full(n, event, dtype=object), dtype="string"),
        "ts": _no_ts(n), "value": np.ones(n),
    })


def group_buy_interactions(
    gb: GroupBuys, *, succeeded: bool, initiators_only: bool = False,
) -> pd.DataFrame:
    """Interactions of group-buy records (no timestamps): the initiator ``share`` s the item (and
    ``purchase`` s it when the group succeeded); every participant ``join`` s and ``purchase`` s it
    (joining a group-buy is buying at the group price). ``initiators_only``: one ``share`` row per
    record (an evaluation target: the item the initiator launched)."""
    rec = gb.records
    frames = [_events(rec["initiator"], rec["item"], "share")]
    if succeeded and not initiators_only:
        frames.append(_events(rec["initiator"], rec["item"], "purchase"))
        items = rec["item"].take(gb.members["record"].to_numpy())
        for event in ("join", "purchase"):
            frames.append(_events(gb.members["participant"], items, event))
    return conform(pd.concat(frames, ignore_index=True), "interactions")


def group_buy_shares(gb: GroupBuys) -> pd.DataFrame:
    """One share row per (initiator, item, participant), ``joined=True``: the participant joined."""
    rec = gb.records
    position = gb.members["record"].to_numpy()
    n = len(position)
    return conform(pd.DataFrame({
        "sharer_id": rec["initiator"].take(position).reset_index(drop=True),
        "item_id": rec["item"].take(position).reset_index(drop=True),
        "recipient_id": gb.members["participant"].reset_index(drop=True),
        "ts": _no_ts(n),
        "joined": np.ones(n, dtype=bool),
    }), "shares")


def co_group_ties(gb: GroupBuys, report: ValidationReport) -> pd.DataFrame:
    """Social ties derived from group-buy records: one row per unordered (initiator, participant)
    pair, ``src < dst``, weight = the number of records in which the two bought together. A record
    naming its initiator as a participant gives no tie; such slots are counted in ``report``."""
    shares = group_buy_shares(gb)
    a, b = shares["sharer_id"], shares["recipient_id"]
    self_pair = (a == b).to_numpy(dtype=bool)
    if self_pair.any():
        report.add(gb.file, "initiator listed as own participant (no tie derived)",
                   int(self_pair.sum()))
    lo = a.where(a < b, b)[~self_pair]
    hi = a.where(a >= b, b)[~self_pair]
    pairs = pd.DataFrame({"src": lo, "dst": hi})
    ties = pairs.groupby(["src", "dst"], sort=True).size().rename("weight").reset_index()
    return conform(ties.assign(ts=_no_ts(len(ties))), "social")


def hold_out(
    gb: GroupBuys, *, fraction: float, seed: int, min_records: int,
) -> np.ndarray:
    """Mask of validation records carved out of ``gb``: among initiators with at least
    ``min_records`` records, a seeded random ``fraction`` of them give up one random record each
    (the leave-one-out validation of GBGCN, Zhang et al., ICDE 2021, on a sample of users).

    The draw depends on the records' content, not their order in the file (users are sorted first).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"dataset.valid_fraction must be in [0, 1], not {fraction}")
    rng = np.random.default_rng(seed)
    user, users = pd.factorize(gb.records["initiator"], sort=True)
    item, _ = pd.factorize(gb.records["item"], sort=True)
    eligible = np.flatnonzero(np.bincount(user, minlength=len(users)) >= min_records)
    chosen = rng.choice(eligible, size=round(fraction * len(eligible)), replace=False)
    # One random record of each user: records in (user, item) order, shuffled within each user,
    # then the first of each user.
    order = np.lexsort((item, user))
    shuffled = order[np.lexsort((rng.random(len(order)), user[order]))]
    by_user = user[shuffled]
    first = np.ones(len(shuffled), dtype=bool)
    first[1:] = by_user[1:] != by_user[:-1]
    record_of = np.empty(len(users), dtype=np.int64)
    record_of[by_user[first]] = shuffled[first]
    mask = np.zeros(len(gb.records), dtype=bool)
    mask[record_of[chosen]] = True
    return mask
