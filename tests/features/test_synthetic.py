import numpy as np
import pandas as pd
import pytest

from socialrec.features.synthetic import DAY, START_TS, generate
from socialrec.features.tables import EVENT_TYPES, SCHEMAS

N_USERS, N_ITEMS, N_COMMUNITIES = 500, 400, 8


@pytest.fixture(scope="module")
def world():
    return generate(N_USERS, N_ITEMS, N_COMMUNITIES, seed=11)


def dtypes(df: pd.DataFrame, table: str) -> dict[str, str]:
    return {c: str(df[c].dtype) for c in SCHEMAS[table]}


def test_same_seed_same_world_other_seed_other_world(world):
    again = generate(N_USERS, N_ITEMS, N_COMMUNITIES, seed=11)
    for table in ("interactions", "social", "shares", "items", "users"):
        pd.testing.assert_frame_equal(getattr(world, table), getattr(again, table))
    other = generate(N_USERS, N_ITEMS, N_COMMUNITIES, seed=12)
    assert not world.interactions.equals(other.interactions)
    assert not world.social.equals(other.social)


def test_sizes_and_canonical_tables(world):
    assert len(world.users) == N_USERS and world.users["user_id"].is_unique
    assert len(world.items) == N_ITEMS and world.items["item_id"].is_unique
    for table in ("interactions", "social", "shares"):
        frame = getattr(world, table)
        expected = {c: str(pd.Series(dtype=t).dtype) for c, t in SCHEMAS[table].items()}
        assert list(frame.columns) == list(SCHEMAS[table]) and dtypes(frame, table) == expected
    inter = world.interactions
    assert set(inter["user_id"]) <= set(world.users["user_id"])
    assert set(inter["item_id"]) <= set(world.items["item_id"])
    assert 20 <= len(inter) / N_USERS <= 40  # the brief: ~20-40 interactions per user
    assert set(inter["event"]) == set(EVENT_TYPES) - {"rate", "push_open"}
    assert inter["ts"].between(START_TS, START_TS + 90 * DAY - 1).all()
    assert inter["ts"].is_monotonic_increasing
    assert 0.85 <= world.users["push_opt_in"].mean() <= 0.95
    assert world.items["category"].nunique() == N_COMMUNITIES // 2
    assert (world.items["price"] > 0).all()


def test_funnel_narrows(world):
    counts = world.interactions["event"].value_counts()
    assert counts["view"] > counts["click"] > counts["cart"] > 0
    assert counts["purchase"] > 0 and counts["share"] > 0 and counts["join"] > 0


def test_social_is_symmetric_without_self_loops_or_repeats(world):
    social = world.social
    edges = set(zip(social["src"], social["dst"], strict=True))
    assert edges == {(b, a) for a, b in edges}
    assert len(edges) == len(social)
    assert not (social["src"] == social["dst"]).any()
    assert world.social_symmetric
    degree = social["src"].value_counts()
    assert 7 <= degree.mean() <= 11
    assert degree.max() > 3 * degree.median()  # heavy-tailed degrees


def test_share_recipients_are_friends_of_the_sharer_who_bought_first(world):
    shares = world.shares
    assert len(shares) > 0
    friends = set(zip(world.social["src"], world.social["dst"], strict=True))
    assert all(pair in friends for pair in zip(shares["sharer_id"], shares["recipient_id"],
                                               strict=True))
    inter = world.interactions
    bought = inter[inter["event"] == "purchase"].groupby(["user_id", "item_id"])["ts"].min()
    first_buy = bought.reindex(pd.MultiIndex.from_frame(shares[["sharer_id", "item_id"]]))
    assert (first_buy.to_numpy() <= shares["ts"].to_numpy()).all()
    joined = shares[shares["joined"]]
    assert 0 < len(joined) < len(shares)
    joins = set(zip(inter.loc[inter["event"] == "join", "user_id"],
                    inter.loc[inter["event"] == "join", "item_id"], strict=True))
    assert set(zip(joined["recipient_id"], joined["item_id"], strict=True)) == joins


def test_homophily_friends_mostly_share_a_community(world):
    community = world.users.set_index("user_id")["community"]
    same = community.loc[world.social["src"]].to_numpy() == community.loc[
        world.social["dst"]].to_numpy()
    by_chance = (community.value_counts(normalize=True) ** 2).sum()
    assert same.mean() > 0.7 and by_chance < 0.3


def friend_lift(world) -> float:
    """P(y touched item | y's friend x bought it) / the same for same-community strangers x, y."""
    inter = world.interactions
    touched = inter.groupby("user_id")["item_id"].apply(set)
    bought = inter[inter["event"] == "purchase"].groupby("user_id")["item_id"].apply(set)
    community = world.users.set_index("user_id")["community"]

    def follow_rate(pairs):
        hits = sum(len(bought.get(x, set()) & touched[y]) for x, y in pairs)
        return hits / sum(len(bought.get(x, set())) for x, _ in pairs)

    social = world.social.sample(1000, random_state=0)
    friends = set(zip(world.social["src"], world.social["dst"], strict=True))
    rng = np.random.default_rng(0)
    users = community.index.to_numpy()
    candidates = zip(rng.choice(users, 20000), rng.choice(users, 20000), strict=True)
    strangers = [(x, y) for x, y in candidates
                 if x != y and community[x] == community[y] and (x, y) not in friends][:1000]
    assert len(strangers) == 1000
    friend_pairs = list(zip(social["src"], social["dst"], strict=True))
    return follow_rate(friend_pairs) / follow_rate(strangers)


def test_friends_buy_what_friends_bought_beyond_community_taste(world):
    """Social influence: a friend's purchases say more than the community's (the graph helps),
    and it is the influence steps (copying friends, shares) that make it so."""
    assert friend_lift(world) > 1.25
    without = generate(N_USERS, N_ITEMS, N_COMMUNITIES, seed=11, p_social=0.0, share_prob=0.0)
    assert friend_lift(without) < 1.05


def test_community_taste_items_of_the_users_community_dominate(world):
    inter = world.interactions.merge(world.users[["user_id", "community"]], on="user_id")
    inter = inter.merge(world.items[["item_id", "community"]], on="item_id",
                        suffixes=("_user", "_item"))
    assert (inter["community_user"] == inter["community_item"]).mean() > 0.5


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="n_items"):
        generate(n_users=10, n_items=3, n_communities=5)


def test_a_world_written_in_chunks_is_the_same_story_and_the_same_files(tmp_path):
    """write_world (chunks of users, Parquet parts) against generate: the same sizes of things,
    the same files for the same seed, and a training graph built part by part."""
    from socialrec.features.graph import graph_from_parquet
    from socialrec.features.synthetic import write_world

    rows = write_world(tmp_path / "a", 3000, 800, 8, seed=3, chunk_users=700)
    write_world(tmp_path / "b", 3000, 800, 8, seed=3, chunk_users=700)
    for table in ("interactions", "shares", "social", "users"):
        a = pd.read_parquet(tmp_path / "a" / table)
        pd.testing.assert_frame_equal(a, pd.read_parquet(tmp_path / "b" / table))
        assert len(a) == rows[table]
    whole = generate(n_users=3000, n_items=800, n_communities=8, seed=3)
    assert 0.8 < rows["interactions"] / len(whole.interactions) < 1.25
    assert 0.9 < rows["social"] / len(whole.social) < 1.1
    assert 0.6 < rows["shares"] / len(whole.shares) < 1.6
    graph = graph_from_parquet(tmp_path / "a")
    assert graph.n_users == 3000 and graph.n_items == 800
    assert graph.users.ids[:3] == ["u0", "u1", "u2"]
    inter = pd.read_parquet(tmp_path / "a" / "interactions")
    assert graph.train.nnz < inter[["user_id", "item_id"]].drop_duplicates().shape[0]
    assert (graph.social != graph.social.T).nnz == 0 and graph.social.nnz == rows["social"]
