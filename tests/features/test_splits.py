import numpy as np
import pandas as pd
import pytest

from socialrec.features.splits import Split, make_split
from socialrec.features.synthetic import generate
from socialrec.features.tables import Dataset, conform

RANDOM = {"method": "random_ratio", "ratios": [0.8, 0.1, 0.1], "seed": 2026,
          "min_user_interactions": 3}


@pytest.fixture(scope="module")
def world() -> Dataset:
    return generate(500, 300, 8, seed=3)


def pairs(df: pd.DataFrame, a: str = "user_id", b: str = "item_id") -> set[tuple[str, str]]:
    return set(zip(df[a], df[b], strict=True))


def assert_pairs_disjoint(split: Split) -> None:
    train, valid, test = pairs(split.train), pairs(split.valid), pairs(split.test)
    assert not train & test and not train & valid and not valid & test


def interactions(rows: list[tuple[str, str, str, int]]) -> Dataset:
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "ts"])
    return Dataset(name="tiny", interactions=conform(df, "interactions"))


def test_random_ratio_keeps_every_pair_in_one_part(world):
    split = make_split(world, RANDOM)
    assert_pairs_disjoint(split)
    assert len(split.train) + len(split.valid) + len(split.test) == len(world.interactions)
    n_pairs = [len(pairs(part)) for part in (split.train, split.valid, split.test)]
    shares = np.array(n_pairs) / sum(n_pairs)
    assert np.allclose(shares, [0.8, 0.1, 0.1], atol=0.02)
    assert split.protocol.startswith("random per-user 80/10/10, seed 2026")
    assert split.social.equals(world.social) and split.cut_ts is None


def test_random_ratio_is_seeded(world):
    a, b = make_split(world, RANDOM), make_split(world, RANDOM)
    pd.testing.assert_frame_equal(a.test, b.test)
    c = make_split(world, {**RANDOM, "seed": 1})
    assert not a.test.equals(c.test)


def test_random_ratio_small_users_stay_in_train():
    ds = interactions([("a", "x", "view", 1), ("a", "x", "click", 2), ("a", "y", "view", 3),
                       *[("b", f"i{k}", "view", k) for k in range(40)]])
    split = make_split(ds, RANDOM)
    assert (split.train["user_id"] == "a").sum() == 3  # two pairs < 3: all in train
    assert len(split.test) > 0 and set(split.test["user_id"]) == {"b"}
    assert (split.train["user_id"] == "b").sum() >= 1


def test_random_shares_follow_by_share_action(world):
    split = make_split(world, RANDOM)
    parts = [pairs(s, "sharer_id", "item_id")
             for s in (split.train_shares, split.valid_shares, split.test_shares)]
    assert not parts[0] & parts[2] and not parts[0] & parts[1] and not parts[1] & parts[2]
    total = sum(len(s) for s in (split.train_shares, split.valid_shares, split.test_shares))
    assert total == len(world.shares)
    assert 0.7 < len(parts[0]) / sum(map(len, parts)) < 0.9


def test_temporal_nothing_after_the_cut_reaches_training(world):
    split = make_split(world, {"method": "temporal", "ratios": [0.8, 0.1, 0.1]})
    cut = split.cut_ts
    assert split.train["ts"].max() <= cut < split.valid["ts"].min()
    assert split.valid["ts"].max() < split.test["ts"].min()
    social_ts = split.social["ts"].dropna()
    assert len(social_ts) > 0 and social_ts.max() <= cut
    later_edges = (world.social["ts"] > cut).sum()
    assert later_edges > 0 and len(split.social) == len(world.social) - later_edges
    assert split.train_shares["ts"].max() <= cut < split.valid_shares["ts"].min()
    assert split.valid_shares["ts"].max() < split.test_shares["ts"].min()
    assert len(split.train_shares) + len(split.valid_shares) + len(split.test_shares) == len(
        world.shares)
    n = len(world.interactions)
    assert abs(len(split.train) / n - 0.8) < 0.02  # only repeats of seen pairs are dropped
    assert_pairs_disjoint(split)
    assert split.protocol.startswith("temporal")


def test_temporal_with_explicit_cuts(world):
    ts = world.interactions["ts"]
    test_start, valid_start = int(ts.quantile(0.9)), int(ts.quantile(0.7))
    split = make_split(world, {"method": "temporal", "cut_ts": test_start,
                               "valid_cut_ts": valid_start})
    assert split.cut_ts == valid_start - 1
    assert split.train["ts"].max() < valid_start <= split.valid["ts"].min()
    assert split.valid["ts"].max() < test_start <= split.test["ts"].min()


def test_temporal_cut_may_be_a_date():
    day = 86_400
    start = 1_722_470_400  # 2024-08-01 00:00 UTC
    ds = interactions([("a", "x", "view", start - day), ("a", "y", "view", start + day)])
    split = make_split(ds, {"method": "temporal", "cut_ts": "2024-08-01", "valid_cut_ts": start})
    assert split.train["item_id"].tolist() == ["x"] and split.test["item_id"].tolist() == ["y"]
    assert split.cut_ts == start - 1


def test_temporal_repeats_of_a_train_pair_are_dropped_from_test():
    ds = interactions([("a", "x", "view", 1), ("a", "y", "view", 2), ("a", "z", "view", 3),
                       ("a", "x", "purchase", 9), ("a", "w", "view", 10)])
    split = make_split(ds, {"method": "temporal", "cut_ts": 5, "valid_cut_ts": 5})
    assert split.train["item_id"].tolist() == ["x", "y", "z"]
    assert split.test["item_id"].tolist() == ["w"]
    assert "1 later events" in split.protocol


def test_leave_last_out_picks_the_latest_pair_by_time():
    ds = interactions([
        ("a", "x", "view", 1), ("a", "y", "view", 50), ("a", "z", "view", 30),
        ("a", "x", "purchase", 100),  # x was touched last, though first seen first
        ("a", "v", "view", 10),
        ("b", "x", "view", 5), ("b", "y", "view", 6),  # two pairs < 3: stays in train
    ])
    split = make_split(ds, {"method": "leave_last_out", "min_user_interactions": 3})
    assert split.test[["user_id", "item_id"]].values.tolist() == [["a", "x"], ["a", "x"]]
    assert split.valid[["user_id", "item_id"]].values.tolist() == [["a", "y"]]
    assert sorted(split.train["item_id"]) == ["v", "x", "y", "z"]
    assert (split.train["user_id"] == "b").sum() == 2
    assert_pairs_disjoint(split)


def test_leave_last_out_on_a_world(world):
    split = make_split(world, {"method": "leave_last_out", "min_user_interactions": 3})
    assert_pairs_disjoint(split)
    assert split.test.groupby("user_id")["item_id"].nunique().max() == 1
    last = world.interactions.groupby("user_id")["ts"].max()
    tested = split.test.groupby("user_id")["ts"].max()
    assert (tested == last.loc[tested.index]).all()


def test_given_split_is_used_as_shipped(world):
    train = world.interactions.iloc[:100]
    test = world.interactions.iloc[100:120]
    ds = Dataset(name="shipped", interactions=world.interactions, social=world.social,
                 shares=world.shares,
                 given_split={"train": train, "test": test})
    split = make_split(ds, {"method": "given"})
    pd.testing.assert_frame_equal(split.train, train.reset_index(drop=True))
    pd.testing.assert_frame_equal(split.test, test.reset_index(drop=True))
    assert split.valid.empty and "given" in split.protocol
    assert split.social.equals(world.social)
    restricted = Dataset(name="shipped", interactions=world.interactions,
                         given_split={"train": train, "test": test, "social": world.social[:10]})
    assert len(make_split(restricted, {"method": "given"}).social) == 10
    with pytest.raises(ValueError, match="ships no train/test split"):
        make_split(world, {"method": "given"})


def test_bad_split_configs_are_named(world):
    with pytest.raises(ValueError, match="unknown method 'by_magic'"):
        make_split(world, {"method": "by_magic"})
    with pytest.raises(ValueError, match="summing to 1"):
        make_split(world, {"method": "random_ratio", "ratios": [0.8, 0.3, 0.1]})
    no_time = interactions([("a", "x", "view", 1)])
    no_time.interactions["ts"] = pd.array([pd.NA], dtype="Int64")
    with pytest.raises(ValueError, match="needs timestamps"):
        make_split(no_time, {"method": "temporal"})


def test_a_source_with_derived_ties_refuses_a_leaking_split():
    from socialrec.features.splits import make_split
    from socialrec.features.synthetic import generate

    world = generate(n_users=200, n_items=50, n_communities=2, seed=1)
    world.allowed_splits = ("given",)
    with pytest.raises(ValueError, match="would leak"):
        make_split(world, {"method": "random_ratio"})
