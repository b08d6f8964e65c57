"""Brightkite in group-buying form, as shipped with J2PRec (Joint Product-Participant Rec.).

Built by the J2PRec authors (github.com/Anonym001/J2PREc, ``Data/brightkite``) from the Brightkite
location-based social network (Cho, Myers, Leskovec, *Friendship and Mobility*, KDD 2011): "items"
are places and "group buys" are constructed, not real purchases. It has BeiBei's layout
(``initiator item participant...``) with a friend graph, so it is the small complete stand-in for
share-partner training. Files: see SOURCE.md in ``<root>/brightkite_gb_j2prec``.

Tables (no timestamps, ts is null): initiator ``share`` + ``purchase``, participants ``join`` +
``purchase`` (as for BeiBei); one share row per (initiator, item, participant) with
``joined=True``; social = ``social_relation.txt`` (mutual, both directions listed).

``given_split``: test = ``test.txt``; validation = one random ``train_id.txt`` record of each of a
seeded random ``valid_fraction`` of the initiators with at least two records (``valid_seed``);
training = the other ``train_id.txt`` records. ``tune.txt`` is not used: it holds the same records
as ``test.txt`` (checked at load), so validating on it would tune on the test set.
``train.txt`` (items per user, derived from the records) and ``all_items.txt`` (undocumented) are
not read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import Field

from socialrec.features.datasets.files import dataset_dir, on_error, read_delimited
from socialrec.features.datasets.group_buy import (
    GroupBuys,
    group_buy_interactions,
    group_buy_shares,
    hold_out,
    read_group_buys,
)
from socialrec.features.loader import OnError, SourceOptions, register_loader
from socialrec.features.tables import Dataset, ValidationReport

NAME = "brightkite_gb_j2prec"


def _record_set(gb: GroupBuys) -> set[tuple[str, ...]]:
    participants = {record: tuple(sorted(names)) for record, names in
                    gb.members.groupby("record")["participant"]}
    rec = gb.records
    return {(i, t, *participants.get(k, ())) for k, (i, t) in
            enumerate(zip(rec["initiator"], rec["item"], strict=True))}


class BrightkiteOptions(SourceOptions):
    """The ``dataset:`` keys this loader reads (module docstring)."""

    valid_fraction: float = Field(1.0, ge=0, le=1)
    valid_seed: int = 2026
    on_error: OnError = "refuse"


@register_loader(NAME, options=BrightkiteOptions)
def load(cfg: dict, root: Path) -> Dataset:
    base = dataset_dir(root, NAME)
    errors = on_error(cfg)
    report = ValidationReport()
    records = read_group_buys(base / "train_id.txt", report, errors=errors)
    test = read_group_buys(base / "test.txt", report, sep=" ", errors=errors)
    tune = read_group_buys(base / "tune.txt", report, errors=errors)
    social = read_delimited(base / "social_relation.txt", "social", report, header=False,
                      columns={"src": "u", "dst": "v"}, errors=errors)

    valid_mask = hold_out(records, fraction=float(cfg.get("valid_fraction", 1.0)),
                          seed=int(cfg.get("valid_seed", 2026)), min_records=2)
    train, valid = records.take(~valid_mask), records.take(valid_mask)
    given = {
        "train": group_buy_interactions(train, succeeded=True),
        "valid": group_buy_interactions(valid, succeeded=True, initiators_only=True),
        "test": group_buy_interactions(test, succeeded=True, initiators_only=True),
        "train_shares": group_buy_shares(train),
        "valid_shares": group_buy_shares(valid),
        "test_shares": group_buy_shares(test),
    }
    same = _record_set(tune) == _record_set(test)
    notes = [
        "Brightkite group-buy set of J2PRec: constructed from a location-based social network "
        "('items' are places), not real e-commerce. No timestamps (ts is null).",
        "Initiator: share + purchase; participants: join + purchase; share rows (initiator, item, "
        "participant, joined=True). Friendship is mutual (social_relation.txt lists both "
        "directions).",
        f"given split: test = test.txt ({len(test):,} records); validation = {len(valid):,} "
        f"train_id.txt records (one each of a seeded random valid_fraction of initiators with 2+ "
        f"records); training = the other {len(train):,}. Use split.method: given.",
        "tune.txt is " + ("identical to test.txt (checked): not used, validating on it would tune "
                          "on the test set." if same else
                          "NOT identical to test.txt in this copy (upstream ships the same file "
                          "twice): it is not used either; check SOURCE.md."),
    ]
    return Dataset(
        name=cfg.get("name") or NAME,
        interactions=pd.concat([group_buy_interactions(records, succeeded=True),
                                group_buy_interactions(test, succeeded=True)],
                               ignore_index=True),
        social=social,
        shares=pd.concat([group_buy_shares(records), group_buy_shares(test)], ignore_index=True),
        social_symmetric=True,
        notes=notes,
        report=report,
        given_split=given,
    )

