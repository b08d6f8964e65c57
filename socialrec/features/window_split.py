"""The split of a retrain: everything trains except held-out users' most recent window.

A retrain (training/retrain.py) must learn from the most recent day — today's launches and
today's tastes are in it — and still be validated on that day, the future it will serve. So the
validation window is time-based (``[valid_start, ...)``), but only a random share of the users
active in it (``holdout_users``, drawn by a hash of the user id and the seed) are held out: all
their window events are targets, half of those users for early stopping (``valid``), half for the
offline gate (``test``); every other event, the other users' window events included, trains.
Held-out users' events before the window train as usual (they are the history the targets are
predicted from). Pairs a served list caused (``unscored``: a push opened, a pushed item bought)
train but are never targets: they reward the policy that served them, so the champion whose
pushes produced them would be judged on its own doing.

Share records, the share-partner ranker's training data, are cut by time: the most recent
``share_holdout`` of them (half valid, half test) are its targets, as a temporal split does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from socialrec.features.splits import Split
from socialrec.features.tables import Dataset

TRAIN, VALID, TEST = 0, 1, 2


def _unit_hash(ids: pd.Series, seed: int, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per id, the same for the same (id, seed, salt) everywhere."""
    keys = ids.astype(str) + f"\x1f{seed}\x1f{salt}"
    return pd.util.hash_pandas_object(keys, index=False).to_numpy() / float(2**64)


def held_out_users(users: pd.Series, share: float, seed: int) -> tuple[set[str], set[str]]:
    """(early-stopping users, gate users): ``share`` of ``users``, split in two halves."""
    unique = pd.Series(pd.unique(users.astype(str)))
    draw = _unit_hash(unique, seed, "holdout")
    held = unique[draw < share]
    half = _unit_hash(held, seed, "half") < 0.5
    return set(held[half]), set(held[~half])


def window_split(dataset: Dataset, valid_start: int, holdout_users: float, seed: int,
                 share_holdout: float = 0.2, unscored: pd.DataFrame | None = None) -> Split:
    """The retrain split of ``dataset`` (module docstring); ``valid_start`` in Unix seconds.
    ``unscored``: (user_id, item_id) pairs that train but are never targets (the pairs a served
    list caused: features/store_tables.py ``served_pairs``)."""
    inter = dataset.interactions
    ts = inter["ts"].to_numpy(dtype=np.float64, na_value=-np.inf)  # no time: history
    recent = ts >= valid_start
    if unscored is not None and len(unscored):
        served = pd.MultiIndex.from_frame(unscored[["user_id", "item_id"]].astype(str))
        pairs = pd.MultiIndex.from_arrays([inter["user_id"].astype(str),
                                           inter["item_id"].astype(str)])
        recent &= ~pairs.isin(served)
    valid_users, test_users = held_out_users(inter.loc[recent, "user_id"], holdout_users, seed)
    user = inter["user_id"].astype(str)
    part = np.full(len(inter), TRAIN)
    part[recent & user.isin(valid_users).to_numpy()] = VALID
    part[recent & user.isin(test_users).to_numpy()] = TEST

    shares = dataset.shares
    s_ts = shares["ts"].to_numpy(dtype=np.float64, na_value=-np.inf)
    s_part = np.full(len(shares), TRAIN)
    cut = None
    if len(shares):
        # held out from the time the latest share_holdout begin (ties stay together, so no
        # training share is dated after the cut); the earlier half of them valid, later test
        ordered = np.sort(s_ts)
        n_held = round(len(shares) * share_holdout)
        if n_held:
            held_from = ordered[len(shares) - n_held]
            test_from = ordered[len(shares) - n_held + n_held // 2]
            s_part[s_ts >= held_from] = VALID
            s_part[s_ts >= max(test_from, held_from)] = TEST
            if not (s_part == VALID).any():  # every held-out share at one time: all to test
                s_part[s_ts >= held_from] = TEST
            if np.isfinite(held_from):
                cut = int(held_from) - 1

    def piece(frame: pd.DataFrame, parts: np.ndarray, which: int) -> pd.DataFrame:
        return frame[parts == which].reset_index(drop=True)

    protocol = (f"retrain window: pairs from {pd.Timestamp(valid_start, unit='s', tz='UTC')} of "
                f"{holdout_users:.0%} of that window's users held out (half early stopping, half "
                f"the gate; {len(valid_users)} + {len(test_users)} users), everything else "
                f"trains; shares: the latest {share_holdout:.0%} by time held out")
    return Split(piece(inter, part, TRAIN), piece(inter, part, VALID), piece(inter, part, TEST),
                 dataset.social.reset_index(drop=True), piece(shares, s_part, TRAIN),
                 piece(shares, s_part, VALID), piece(shares, s_part, TEST), protocol=protocol,
                 cut_ts=cut)
