"""A retrain's split (features/window_split.py): held-out users' recent pairs are the targets,
pairs a served list caused train but are never targets."""

from __future__ import annotations

import pandas as pd

from socialrec.features.tables import Dataset, conform
from socialrec.features.window_split import window_split

WINDOW = 1_000


def dataset(rows: list[tuple[str, str, int]]) -> Dataset:
    inter = conform(pd.DataFrame({"user_id": [r[0] for r in rows],
                                  "item_id": [r[1] for r in rows],
                                  "event": "purchase", "ts": [r[2] for r in rows]}),
                    "interactions")
    return Dataset(name="window", interactions=inter)


def test_every_recent_pair_of_held_out_users_is_a_target_and_history_trains():
    rows = [(f"u{u}", f"i{i}", WINDOW + i) for u in range(40) for i in range(3)]
    rows += [(f"u{u}", "old", WINDOW - 1) for u in range(40)]
    split = window_split(dataset(rows), WINDOW, holdout_users=0.5, seed=1)
    targets = pd.concat([split.valid, split.test])
    assert 0 < targets.user_id.nunique() < 40
    assert (targets.ts >= WINDOW).all()
    held = set(targets.user_id)
    assert set(split.train.loc[split.train.user_id.isin(held), "item_id"]) == {"old"}
    assert len(split.train) + len(targets) == len(rows)


def test_pairs_a_served_list_caused_train_but_are_never_targets():
    rows = [(f"u{u}", f"i{i}", WINDOW + i) for u in range(40) for i in range(3)]
    served = pd.DataFrame({"user_id": [f"u{u}" for u in range(40)], "item_id": "i0"})
    plain = window_split(dataset(rows), WINDOW, holdout_users=0.5, seed=1)
    split = window_split(dataset(rows), WINDOW, holdout_users=0.5, seed=1, unscored=served)
    assert "i0" in set(plain.test.item_id) | set(plain.valid.item_id)
    targets = pd.concat([split.valid, split.test])
    assert "i0" not in set(targets.item_id)
    assert (split.train.item_id == "i0").sum() == 40  # every served pair trains
    assert len(split.train) + len(targets) == len(rows)
    # the organic targets are the same as without the served pairs
    organic = pd.concat([plain.valid, plain.test])
    assert sorted(map(tuple, organic.loc[organic.item_id != "i0", ["user_id", "item_id"]]
                      .values)) == sorted(map(tuple, targets[["user_id", "item_id"]].values))
