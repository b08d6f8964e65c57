"""Train / valid / test splits, made from the ``split:`` config section by :func:`make_split`.

Methods:

- ``random_ratio``: per user, a random ``ratios`` share of their items to train / valid / test
  (seeded); users with fewer than ``min_user_interactions`` distinct items stay whole in train.
- ``temporal``: one global time cut. Test starts at ``cut_ts`` (or at the ``ratios`` quantile of
  interaction times), valid is the slice before it (from ``valid_cut_ts``, or the valid share of
  ``ratios``), train is everything earlier. Social edges formed after the train cut are left out
  of ``split.social`` (edges without a time are kept: they are taken to predate the data), and
  ``split.cut_ts`` is the last second training may see.
- ``leave_last_out``: per user by time, the most recent item -> test, the one before -> valid.
- ``given``: the split the source ships (``dataset.given_split``).

The unit of every split is the (user, item) pair, not the event: all events of one user on one
item (view, click, purchase, repeats) land in the same part, so no test pair is also a training
pair. In a temporal split a pair belongs to the part of its first event; its later events are
dropped from valid / test (counted in ``protocol``). A ``given`` split is kept as shipped.

Share records follow the interactions: by the same time cuts (temporal), or per sharer with the
same ratios and seed (random), or last / second-last share per sharer (leave_last_out); their
unit is the share action (sharer, item), so all recipients of one share land in the same part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from socialrec.features.tables import Dataset, empty

Method = Literal["random_ratio", "temporal", "leave_last_out", "given"]
METHODS: tuple[str, ...] = get_args(Method)
TRAIN, VALID, TEST = 0, 1, 2


class SplitConfig(BaseModel):
    """The ``split:`` config section (configs/defaults.yaml). The defaults are those
    :func:`make_split` uses for a key its caller leaves out."""

    model_config = ConfigDict(extra="forbid")

    method: Method = "random_ratio"
    ratios: list[float] = [0.8, 0.1, 0.1]
    seed: int = 2026
    min_user_interactions: int = Field(3, ge=0)
    cut_ts: int | str | None = None  # temporal: Unix seconds or an ISO date (UTC)
    valid_cut_ts: int | str | None = None

    @field_validator("ratios")
    @classmethod
    def _train_valid_test(cls, ratios: list[float]) -> list[float]:
        if len(ratios) not in (2, 3) or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
            raise ValueError("expected [train, valid, test] (or [train, test]) shares summing to 1")
        return ratios


@dataclass
class Split:
    """Interactions and share records cut into train / valid / test, plus the social edges training
    may see (for a temporal split: only those at or before the cut). ``protocol`` names how it was
    made, for results files."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    social: pd.DataFrame
    train_shares: pd.DataFrame
    valid_shares: pd.DataFrame
    test_shares: pd.DataFrame
    protocol: str
    cut_ts: int | None = None


def make_split(dataset: Dataset, cfg: dict) -> Split:
    """The split the ``split:`` config section ``cfg`` describes (configs/defaults.yaml)."""
    method = cfg.get("method", "random_ratio")
    if dataset.allowed_splits is not None and method not in dataset.allowed_splits:
        raise ValueError(
            f"split.method: {method!r} would leak for dataset {dataset.name!r} "
            f"(its social ties are derived from records); use {' or '.join(dataset.allowed_splits)}"
        )
    ratios = cfg.get("ratios", (0.8, 0.1, 0.1))
    seed = int(cfg.get("seed", 2026))
    min_n = int(cfg.get("min_user_interactions", 3))
    if method == "random_ratio":
        return random_ratio_split(dataset, ratios, seed, min_n)
    if method == "temporal":
        return temporal_split(dataset, ratios, cfg.get("cut_ts"), cfg.get("valid_cut_ts"))
    if method == "leave_last_out":
        return leave_last_out_split(dataset, min_n)
    if method == "given":
        return given_split(dataset, ratios, seed)
    raise ValueError(f"split.method: unknown method {method!r}; one of {', '.join(METHODS)}")


def random_ratio_split(
    dataset: Dataset, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 2026,
    min_user_interactions: int = 3,
) -> Split:
    """Per user, a random ``ratios`` share of their (user, item) pairs to each part."""
    r = _ratios(ratios)
    inter = dataset.interactions
    pair, pair_user = _pairs(inter["user_id"], inter["item_id"])
    part = _random_parts(pair_user, r, np.random.default_rng(seed), min_user_interactions)[pair]
    train, valid, test = _cut(inter, part)
    shares = dataset.shares
    action, sharer = _pairs(shares["sharer_id"], shares["item_id"])
    share_part = _random_parts(sharer, r, np.random.default_rng(seed), 0)[action]
    protocol = (f"random per-user {_percent(r)}, seed {seed} (unit: distinct (user, item) pair; "
                f"users with < {min_user_interactions} pairs kept in train; shares random per "
                "sharer by share action)")
    return Split(train, valid, test, dataset.social.reset_index(drop=True),
                 *_cut(shares, share_part), protocol=protocol)


def temporal_split(
    dataset: Dataset, ratios: Sequence[float] = (0.8, 0.1, 0.1), cut_ts: int | str | None = None,
    valid_cut_ts: int | str | None = None,
) -> Split:
    """One global time cut: train < valid start <= valid < test start <= test. The cuts are Unix
    seconds or ISO dates (UTC); without them they are the ``ratios`` quantiles of event times."""
    r = _ratios(ratios)
    inter = dataset.interactions
    ts = _timestamps(inter, "temporal")
    ordered = np.sort(ts)
    test_start = _quantile(ordered, r[TRAIN] + r[VALID]) if cut_ts is None else _to_ts(cut_ts)
    if valid_cut_ts is None:
        before = ordered[ordered < test_start]
        kept = r[TRAIN] + r[VALID]
        valid_start = _quantile(before, r[TRAIN] / kept) if kept > 0 and len(before) else test_start
    else:
        valid_start = _to_ts(valid_cut_ts)
    valid_start = min(valid_start, test_start)
    part = np.where(ts < valid_start, TRAIN, np.where(ts < test_start, VALID, TEST))
    # a pair stays in the part of its first event: later repeats are not new targets
    pair, _ = _pairs(inter["user_id"], inter["item_id"])
    first = np.full(pair.max(initial=-1) + 1, TEST, dtype=np.int64)
    np.minimum.at(first, pair, part)
    repeats = part != first[pair]
    train, valid, test = _cut(inter, np.where(repeats, -1, part))

    shares = dataset.shares
    s_ts = shares["ts"].to_numpy(dtype=np.float64, na_value=-np.inf)  # no time: train
    s_part = np.where(s_ts < valid_start, TRAIN, np.where(s_ts < test_start, VALID, TEST))
    social = dataset.social
    known = social["ts"].notna().to_numpy()
    social_ts = social["ts"].to_numpy(dtype=np.float64, na_value=-np.inf)
    social = social[~known | (social_ts < valid_start)].reset_index(drop=True)
    how = "ratios " + _percent(r) if cut_ts is None else f"cut_ts {test_start}"
    protocol = (f"temporal global cut ({how}): train before {_date(valid_start)}, valid before "
                f"{_date(test_start)}, test after; social edges after the train cut left out; "
                f"{int(repeats.sum())} later events of pairs seen in an earlier part dropped")
    return Split(train, valid, test, social, *_cut(shares, s_part), protocol=protocol,
                 cut_ts=valid_start - 1)


def leave_last_out_split(dataset: Dataset, min_user_interactions: int = 3) -> Split:
    """Per user, the (user, item) pair with the latest event -> test, the one before -> valid."""
    inter = dataset.interactions
    pair, pair_user = _pairs(inter["user_id"], inter["item_id"])
    last_ts = _last_ts(pair, _timestamps(inter, "leave_last_out"))
    part = _last_parts(pair_user, last_ts, min_user_interactions)[pair]
    shares = dataset.shares
    action, sharer = _pairs(shares["sharer_id"], shares["item_id"])
    s_ts = shares["ts"].to_numpy(dtype=np.float64, na_value=-np.inf)
    s_part = _last_parts(sharer, _last_ts(action, s_ts), min_user_interactions)[action]
    protocol = (f"leave-last-out per user by time (the latest (user, item) pair -> test, the one "
                f"before -> valid; users with < {min_user_interactions} pairs kept in train; "
                "shares likewise per sharer)")
    return Split(*_cut(inter, part), dataset.social.reset_index(drop=True), *_cut(shares, s_part),
                 protocol=protocol)


def given_split(dataset: Dataset, ratios: Sequence[float] = (0.8, 0.1, 0.1),
                seed: int = 2026) -> Split:
    """The split shipped with the source. Shares come from ``given_split["train_shares"]`` etc.
    when the loader provides them, else random per sharer (``ratios``, ``seed``); the social edges
    training sees from ``given_split["social"]`` when present, else all of ``dataset.social``."""
    given = dataset.given_split
    if not given or "train" not in given or "test" not in given:
        raise ValueError(f"split.method: given, but dataset {dataset.name!r} ships no "
                         "train/test split")
    part_frames = [given.get(k, empty("interactions")) for k in ("train", "valid", "test")]
    train, valid, test = (f.reset_index(drop=True) for f in part_frames)
    if "train_shares" in given:
        shares = [given.get(f"{k}_shares", empty("shares")).reset_index(drop=True)
                  for k in ("train", "valid", "test")]
        how_shares = "shares as shipped"
    else:
        action, sharer = _pairs(dataset.shares["sharer_id"], dataset.shares["item_id"])
        r = _ratios(ratios)
        part = _random_parts(sharer, r, np.random.default_rng(seed), 0)[action]
        shares = list(_cut(dataset.shares, part))
        how_shares = f"shares random per sharer {_percent(r)}, seed {seed}"
    # The loader may restrict the social edges training sees (Epinions: trust links up to the
    # training cut, dataset.given_social_max_ts; BeiBei: ties from training records only).
    social = given.get("social", dataset.social)
    train_shares, valid_shares, test_shares = shares
    return Split(train, valid, test, social.reset_index(drop=True), train_shares, valid_shares,
                 test_shares, protocol=f"given split shipped with {dataset.name} ({how_shares})")


def _ratios(ratios: Sequence[float]) -> np.ndarray:
    r = np.asarray(list(ratios), dtype=np.float64)
    if len(r) == 2:
        r = np.array([r[0], 0.0, r[1]])
    if len(r) != 3 or (r < 0).any() or not np.isclose(r.sum(), 1.0):
        raise ValueError(f"split.ratios: expected [train, valid, test] summing to 1, got {ratios}")
    return r


def _to_ts(value: int | str) -> int:
    """Unix seconds, or an ISO date / date-time (UTC) such as ``2024-08-01``."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        return int(stamp.timestamp())
    return int(value)


def _percent(r: np.ndarray) -> str:
    return "/".join(f"{100 * x:g}" for x in r)


def _date(ts: int) -> str:
    return f"{pd.Timestamp(ts, unit='s').isoformat()} UTC ({ts})"


def _pairs(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dense id of each row's (a, b) pair (in order of first appearance), and each pair's ``a``."""
    a_code, _ = pd.factorize(a)
    b_code, b_uniques = pd.factorize(b)
    pair, _ = pd.factorize(a_code.astype(np.int64) * max(len(b_uniques), 1) + b_code)
    pair_a = np.zeros(pair.max(initial=-1) + 1, dtype=np.int64)
    pair_a[pair] = a_code
    return pair, pair_a


def _timestamps(inter: pd.DataFrame, method: str) -> np.ndarray:
    if inter["ts"].isna().any():
        raise ValueError(f"split.method {method} needs timestamps, but "
                         f"{int(inter['ts'].isna().sum())} interactions have none")
    return inter["ts"].to_numpy(dtype=np.int64)


def _quantile(ordered: np.ndarray, q: float) -> int:
    """The first time at or above which a ``1 - q`` share of the sorted times lie."""
    k = int(q * len(ordered))
    return int(ordered[k]) if k < len(ordered) else int(ordered[-1]) + 1


def _last_ts(pair: np.ndarray, ts: np.ndarray) -> np.ndarray:
    last = np.full(pair.max(initial=-1) + 1, -np.inf)
    np.maximum.at(last, pair, ts.astype(np.float64))
    return last


def _random_parts(group: np.ndarray, r: np.ndarray, rng: np.random.Generator,
                  min_size: int) -> np.ndarray:
    """A part for each unit (one per entry of ``group``, the unit's user): each group's units are
    shuffled and the first round(n·r_test) go to test, the next round(n·r_valid) to valid. The
    rounding is randomised (floor(x + U)), so that the expected shares equal ``r`` exactly even
    for small groups; groups smaller than ``min_size`` stay in train."""
    n_units = len(group)
    shuffled = rng.permutation(n_units)
    order = shuffled[np.argsort(group[shuffled], kind="stable")]  # by group, random within
    counts = np.bincount(group)
    rank = np.empty(n_units, dtype=np.int64)
    rank[order] = np.arange(n_units) - np.repeat(np.cumsum(counts) - counts, counts)
    n = counts.astype(np.float64)
    n_test = np.floor(n * r[TEST] + rng.random(len(counts)))
    n_valid = np.floor(n * r[VALID] + rng.random(len(counts)))
    if min_size > 0:  # a user who is split keeps at least one training pair
        n_valid = np.minimum(n_valid, np.maximum(n - 1 - n_test, 0))
        n_test = np.minimum(n_test, n - 1)
    n_test[counts < min_size] = 0
    n_valid[counts < min_size] = 0
    nt, nv = n_test[group], n_valid[group]
    return np.where(rank < nt, TEST, np.where(rank < nt + nv, VALID, TRAIN))


def _last_parts(group: np.ndarray, last_ts: np.ndarray, min_size: int) -> np.ndarray:
    """Per group, the unit with the latest time -> test, the one before -> valid (ties: the unit
    that first appears later in the data counts as later)."""
    n_units = len(group)
    by_time = np.argsort(last_ts, kind="stable")
    order = by_time[np.argsort(group[by_time], kind="stable")]  # by group, then time, then unit
    counts = np.bincount(group)
    from_end = np.empty(n_units, dtype=np.int64)  # 0 for the latest unit of its group
    from_end[order] = np.repeat(np.cumsum(counts), counts) - 1 - np.arange(n_units)
    size = counts[group]
    part = np.where(from_end == 0, TEST, np.where(from_end == 1, VALID, TRAIN))
    part[(size < max(min_size, 2)) | ((from_end == 1) & (size < 3))] = TRAIN
    return part


def _cut(df: pd.DataFrame, part: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, valid, test = (df[part == p].reset_index(drop=True) for p in (TRAIN, VALID, TEST))
    return train, valid, test
