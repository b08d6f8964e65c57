"""Group-buy records (BeiBei of GBGCN, the J2PRec Brightkite set) and the canonical tables made
from them: interactions, shares, co-purchase social ties, and the validation records held out.

Group-buy files have one record per line, a variable number of ids: ``initiator item
[participant ...]``. They are read here rather than with ``pandas.read_csv`` because the number
of fields varies from line to line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from socialrec.features.datasets.files import require_file
from socialrec.features.tables import ValidationReport, conform
from socialrec.features.validation import DataError


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
