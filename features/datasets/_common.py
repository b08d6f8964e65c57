"""What the real-dataset loaders share: finding a dataset's directory, reading its plain tables, and
turning group-buy records (initiator, item, participants...) into the canonical tables.

Group-buy files (BeiBei of GBGCN, the J2PRec Brightkite set) have one record per line, a variable
number of ids: ``initiator item [participant ...]``. They are read here rather than with
``pandas.read_csv`` because the number of fields varies from line to line.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialrec.features.tables import ValidationReport, conform
from socialrec.features.validation import DataError, Lines, validate_table

ON_ERROR = ("refuse", "skip")
_BAD_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_SKIPPED = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")


def dataset_dir(cfg: dict, root: Path, name: str) -> Path:
    """``<root>/<name>``, refused with a message saying how to point at it when it is absent."""
    path = Path(root) / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset {name!r}: no directory {path}; set dataset.root or SOCIALREC_DATA_ROOT to the "
            "directory holding the real datasets")
    return path


def on_error(cfg: dict) -> str:
    """``dataset.on_error``: refuse (default: the first bad line raises DataError) or skip (bad lines
    are dropped and counted in the dataset's report)."""
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
    errors: str = "refuse",
) -> tuple[pd.DataFrame, Lines]:
    """The ``columns`` of a delimited file with a header, as strings.

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
            raise DataError(file, 1, None, "a header line", got="an empty file") from e
        except UnicodeDecodeError as e:
            raise DataError(file, None, None, "UTF-8 text", got=str(e)) from e
    lines = Lines(first=2)
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
    mapped = pd.DataFrame({canon: raw[source] for canon, source in columns.items()},
                          index=raw.index)
    for canon, value in (constants or {}).items():
        mapped[canon] = value
    return validate_table(mapped, table, file=file, report=report, on_error=errors, lines=lines)


def read_tsv(
    path: Path,
    table: str,
    report: ValidationReport,
    *,
    columns: dict[str, str],
    constants: dict[str, object] | None = None,
    sep: str = "\t",
    errors: str = "refuse",
) -> pd.DataFrame:
    """A delimited file with a header, read and converted to the canonical ``table``."""
    raw, lines = read_raw(path, list(columns.values()), report, sep=sep, errors=errors)
    return to_table(raw, table, report, file=path.name, lines=lines, columns=columns,
                    constants=constants, errors=errors)


# --- group-buy records -------------------------------------------------------------------------


@dataclass
class GroupBuys:
    """Group-buy records of one file: ``records`` (line, initiator, item; one row per record, in file
    order) and ``members`` (record = position in ``records``, participant; one row per participant).
    """

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

    ``participants`` says what the file must hold: ``"some"`` (at least one: a successful group) or
    ``"none"`` (a failed group). Bad lines raise :class:`DataError` naming the line and field, or with
    ``errors="skip"`` are dropped and counted in ``report``; blank lines are counted and ignored.
    """
    file = path.name
    try:
        text = require_file(path).read_bytes().decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        raise DataError(file, None, None, "UTF-8 text", got=str(e)) from e
    lines = pd.Series(text.split("\n"), dtype="string")
    if len(lines) and lines.iloc[-1] == "":  # the newline that ends the last line
        lines = lines.iloc[:-1]
    blank = (lines.str.strip() == "").to_numpy(dtype=bool)
    n_fields = lines.str.count(re.escape(sep)).to_numpy(dtype=np.int64) + 1
    width = max(int(n_fields.max(initial=1)), 2)
    # The C parser splits fast; every line becomes one row (blank ones too, so rows = lines) and
    # a missing field reads as "", so the field count comes from the line itself.
    fields = pd.read_csv(io.StringIO(text), sep=sep, header=None, names=range(width),
                         dtype="string", keep_default_na=False, na_filter=False,
                         skip_blank_lines=False, quoting=csv.QUOTE_NONE)
    if len(fields) != len(lines):  # cannot happen with QUOTE_NONE; guard the line numbers anyway
        raise DataError(file, None, None, f"one record per line, fields separated by {sep!r}")
    if blank.any():
        report.add(file, "blank line (ignored)", int(blank.sum()))
    keep = ~blank
    line_no = np.flatnonzero(keep) + 1
    fields, n_fields = fields[keep].reset_index(drop=True), n_fields[keep]

    present = np.arange(width)[None, :] < n_fields[:, None]
    digits = np.column_stack([fields[c].str.isdigit().to_numpy(dtype=bool) for c in fields])
    is_id = ~present | digits
    bad_id = ~is_id.all(axis=1)
    bad_count = n_fields < 3 if participants == "some" else n_fields != 2
    bad = bad_count | bad_id
    if bad.any():
        sep_name = "TAB" if sep == "\t" else repr(sep)
        shape = ("an initiator id, an item id and at least one participant id" if participants ==
                 "some" else "exactly an initiator id and an item id")
        expected_count = f"{shape} separated by {sep_name}"
        expected_id = "a non-negative integer id"

        def error(row: int) -> DataError:
            if bad_id[row]:
                col = int(np.argmin(is_id[row]))
                name = ("initiator", "item")[col] if col < 2 else f"participant {col - 1}"
                return DataError(file, int(line_no[row]), name, expected_id,
                                 got=fields.iat[row, col])
            return DataError(file, int(line_no[row]), None, expected_count,
                             got=f"{n_fields[row]} field" + "s" * (n_fields[row] != 1))

        if errors == "refuse":
            raise error(int(np.flatnonzero(bad)[0]))
        for reason, mask in ((f"expected {expected_id}", bad_id),
                             (f"expected {expected_count}", bad_count & ~bad_id)):
            if mask.any():
                report.add(file, reason, int(mask.sum()), str(error(int(np.flatnonzero(mask)[0]))))
        fields, present, line_no = fields[~bad].reset_index(drop=True), present[~bad], line_no[~bad]

    records = pd.DataFrame({"line": line_no, "initiator": fields[0], "item": fields[1]})
    # Participants column by column, then back in record order.
    slots = [(np.flatnonzero(present[:, c]), fields[c][present[:, c]]) for c in range(2, width)]
    record = np.concatenate([r for r, _ in slots]) if slots else np.zeros(0, dtype=np.int64)
    order = np.argsort(record, kind="stable")
    participant = (pd.concat([p for _, p in slots], ignore_index=True) if slots
                   else pd.Series(dtype="string"))
    members = pd.DataFrame({"record": record[order].astype(np.int64),
                            "participant": participant.iloc[order].reset_index(drop=True)})
    return GroupBuys(file, records, members)


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
    """One share row per (initiator, item, participant): the participant joined (``joined=True``)."""
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
