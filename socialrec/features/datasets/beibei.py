"""BeiBei group-buying records (GBGCN): who launched a group-buy of which item, and who joined it.

Zhang, Gao, Jin, Li, *Group-Buying Recommendation for Social E-Commerce*, ICDE 2021
(arXiv:2010.06848). Files: see SOURCE.md in ``<root>/beibei_gbgcn``. The local copy is partial:
``tune.txt`` (one validation record per initiator), ``test.txt`` (one test record per initiator)
and ``invalid.txt`` (failed groups, no participants) are here; ``train.txt`` and
``social_relation.txt`` are not. So there is no friend graph, and the only successful records a
model can learn from are those of ``tune.txt``.

How the tables are made (no timestamps anywhere, ts is null):

- interactions: a failed group gives its initiator a ``share``; a successful one gives the
  initiator ``share`` + ``purchase`` and every participant ``join`` + ``purchase``.
- shares: one row per (initiator, item, participant) of a successful group, ``joined=True``.
  Failed groups are *not* share rows: nobody is known to have received them (the file names no
  recipient), and inventing one would be false; they are the initiator's ``share`` interactions.
- social: derived from the training records only (below), one row per unordered pair of
  initiator and participant, weight = the number of records they bought together in.

``ties_from`` (the ``dataset:`` option) picks one of two honest set-ups, both with
``given_split``:

- ``tune`` (default): evaluate on ``test.txt``; train on ``invalid.txt`` + ``tune.txt`` except a
  validation sample: the tune records of a seeded random ``valid_fraction`` of initiators
  (``valid_seed``). Ties come from the training tune records only, never from validation or test
  records.
- ``none``: the GBGCN roles (validate on ``tune.txt``, test on ``test.txt``); training has only
  the failed groups of ``invalid.txt``, so there are no ties and no successful records to learn
  from. For non-social baselines.

Valid / test targets are the initiators' events (GBGCN ranks the item for the initiator, 1
positive among 1 + 999 sampled negatives); the evaluated records' participants are in the valid /
test share rows (the share-partner targets) and in no training table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from socialrec.features.datasets.files import dataset_dir, on_error, option
from socialrec.features.datasets.group_buy import (
    GroupBuys,
    co_group_ties,
    concat,
    group_buy_interactions,
    group_buy_shares,
    hold_out,
    read_group_buys,
)
from socialrec.features.loader import OnError, SourceOptions, register_loader
from socialrec.features.tables import Dataset, ValidationReport, empty

NAME = "beibei_gbgcn"
TIES_FROM = ("tune", "none")


def _interactions(succeeded: list[GroupBuys], failed: GroupBuys) -> pd.DataFrame:
    frames = [group_buy_interactions(failed, succeeded=False)]
    frames += [group_buy_interactions(gb, succeeded=True) for gb in succeeded]
    return pd.concat(frames, ignore_index=True)


def _shares(parts: list[GroupBuys]) -> pd.DataFrame:
    return pd.concat([group_buy_shares(gb) for gb in parts], ignore_index=True)


def _targets(gb: GroupBuys) -> pd.DataFrame:
    return group_buy_interactions(gb, succeeded=True, initiators_only=True)


class BeiBeiOptions(SourceOptions):
    """The ``dataset:`` keys this loader reads (module docstring)."""

    ties_from: Literal["tune", "none"] = "tune"
    valid_fraction: float = Field(0.1, ge=0, le=1)  # ties_from: tune
    valid_seed: int = 2026
    on_error: OnError = "refuse"


@register_loader(NAME, options=BeiBeiOptions)
def load(cfg: dict, root: Path) -> Dataset:
    base = dataset_dir(root, NAME)
    errors = on_error(cfg)
    ties_from = option(cfg, "ties_from", TIES_FROM, "tune")
    report = ValidationReport()
    failed = read_group_buys(base / "invalid.txt", report, participants="none", errors=errors)
    tune = read_group_buys(base / "tune.txt", report, errors=errors)
    test = read_group_buys(base / "test.txt", report, errors=errors)

    notes = [
        "BeiBei (GBGCN) partial copy: train.txt and social_relation.txt are missing, so there is "
        "no friend graph; social ties are derived from group-buy records of the training part "
        "only (weight = records bought together).",
        "Failed groups (invalid.txt) are the initiator's 'share' interactions and no share rows: "
        "the file names no recipient. Successful groups: initiator share + purchase, "
        "participants join + purchase; share rows (initiator, item, participant, joined=True).",
        "No timestamps (ts is null). Use split.method: given; another split method would evaluate "
        "on records whose ties are in the graph.",
        "Evaluation targets are the initiators' items (GBGCN protocol: 1 positive vs 999 sampled "
        "negatives, which must be re-sampled: the released negative files are missing).",
    ]
    if ties_from == "tune":
        valid_mask = hold_out(tune, fraction=float(cfg.get("valid_fraction", 0.1)),
                              seed=int(cfg.get("valid_seed", 2026)), min_records=1)
        train, valid = tune.take(~valid_mask), tune.take(valid_mask)
        social = co_group_ties(train, report)
        given = {
            "train": _interactions([train], failed),
            "valid": _targets(valid),
            "test": _targets(test),
            "train_shares": _shares([train]),
            "valid_shares": _shares([valid]),
            "test_shares": _shares([test]),
            "social": social,
        }
        notes.append(
            f"ties_from: tune: test = test.txt; validation = the tune records of "
            f"{len(valid):,} randomly drawn initiators (valid_fraction, valid_seed); training = "
            f"invalid.txt + the other {len(train):,} tune records, the only source of the "
            f"{len(social):,} derived ties. test.txt never gives ties.")
    else:
        social = empty("social")
        given = {
            "train": _interactions([], failed),
            "valid": _targets(tune),
            "test": _targets(test),
            "train_shares": empty("shares"),
            "valid_shares": _shares([tune]),
            "test_shares": _shares([test]),
            "social": social,
        }
        notes.append("ties_from: none: validation = tune.txt, test = test.txt (the GBGCN roles); "
                     "training has only the failed groups of invalid.txt and no social ties.")
    records = concat([tune, test])
    return Dataset(
        allowed_splits=("given",),
        name=cfg.get("name") or NAME,
        interactions=_interactions([tune, test], failed),
        social=social,
        shares=group_buy_shares(records),
        social_symmetric=True,
        notes=notes,
        report=report,
        given_split=given,
    )
