"""Tie strength on a hand-made world whose every component can be counted by hand.

Friends (undirected): a–b, a–c, b–c, c–d, d–e. Training interactions: a and b both bought i1 and
i2, c bought i1, e bought i3. Training shares (ts in days): a→b i1 at day 10 (joined),
a→b i2 at day 20 (not joined), b→a i1 at day 30 (joined), c→e i3 at day 30 (e is not c's friend).
Test shares: a→c i1 at day 50, three times — they must change nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from socialrec.features.graph import GraphData, build_graph
from socialrec.features.splits import Split
from socialrec.features.tables import Dataset, conform
from socialrec.features.tie_strength import (
    combine,
    graph_tie_strength,
    recency_weights,
    tie_components,
    tie_strength,
)

DAY = 86_400
CUT = 40 * DAY


def _world(test_shares: list[tuple] | None = None) -> GraphData:
    inter = conform(pd.DataFrame(
        [("a", "i1", "purchase", DAY), ("a", "i2", "purchase", DAY), ("b", "i1", "purchase", DAY),
         ("b", "i2", "click", DAY), ("c", "i1", "purchase", DAY), ("e", "i3", "purchase", DAY),
         ("d", "i3", "view", 45 * DAY)],
        columns=["user_id", "item_id", "event", "ts"]), "interactions")
    social = conform(pd.DataFrame([("a", "b"), ("a", "c"), ("b", "c"), ("c", "d"), ("d", "e")],
                                  columns=["src", "dst"]), "social")
    cols = ["sharer_id", "item_id", "recipient_id", "ts", "joined"]
    train_shares = conform(pd.DataFrame(
        [("a", "i1", "b", 10 * DAY, True), ("a", "i2", "b", 20 * DAY, False),
         ("b", "i1", "a", 30 * DAY, True), ("c", "i3", "e", 30 * DAY, False)], columns=cols),
        "shares")
    test = conform(pd.DataFrame(test_shares or [], columns=cols), "shares")
    none = conform(pd.DataFrame(columns=cols), "shares")
    dataset = Dataset("tiny-ties", interactions=inter, social=social,
                      shares=pd.concat([train_shares, test], ignore_index=True))
    early = inter["ts"] < CUT
    split = Split(train=inter[early], valid=inter.iloc[:0], test=inter[~early], social=social,
                  train_shares=train_shares, valid_shares=none, test_shares=test,
                  protocol="hand-made", cut_ts=CUT)
    return build_graph(dataset, split)


@pytest.fixture(scope="module")
def world() -> GraphData:
    return _world()


def _ix(data: GraphData, *names: str) -> list[int]:
    return [int(data.users.get(n)) for n in names]


def test_share_counts_and_joins_are_directed(world):
    a, b, c, e = _ix(world, "a", "b", "c", "e")
    parts = tie_components(world.social, world.train, world.shares_train, cut=CUT)
    assert parts.shares[a, b] == 2 and parts.shares[b, a] == 1 and parts.shares[c, e] == 1
    assert parts.joins[a, b] == 1 and parts.joins[b, a] == 1 and parts.joins[c, e] == 0


def test_recent_shares_sum_both_directions_with_the_half_life(world):
    a, b = _ix(world, "a", "b")
    parts = tie_components(world.social, world.train, world.shares_train, cut=CUT,
                           half_life=10 * DAY)
    # ages 30, 20 and 10 days with a 10-day half-life
    expected = 2.0 ** -3 + 2.0 ** -2 + 2.0 ** -1
    assert parts.recent_shares[a, b] == pytest.approx(expected)
    assert parts.recent_shares[b, a] == pytest.approx(expected)


def test_recency_default_half_life_is_a_quarter_of_the_span():
    ts = pd.Series([0, 40, 80, pd.NA], dtype="Int64")
    w = recency_weights(ts, cut=80, half_life=None)  # span 80 -> half-life 20
    np.testing.assert_allclose(w, [2.0 ** -4, 2.0 ** -2, 1.0, 1.0])


def test_adamic_adar_and_co_interactions_on_friend_edges(world):
    a, b, c, d = _ix(world, "a", "b", "c", "d")
    parts = tie_components(world.social, world.train, world.shares_train, cut=CUT)
    # a and b have one common friend, c, of degree 3
    assert parts.adamic_adar[a, b] == pytest.approx(1 / math.log(3))
    # a and c: common friend b (degree 2); c and d: none
    assert parts.adamic_adar[a, c] == pytest.approx(1 / math.log(2))
    assert parts.adamic_adar[c, d] == 0
    assert parts.co_interactions[a, b] == 2 and parts.co_interactions[b, c] == 1
    assert parts.co_interactions[a, d] == 0  # not friends: not stored


def test_combined_weight_follows_the_documented_formula(world):
    a, b, c, e = _ix(world, "a", "b", "c", "e")
    parts = tie_components(world.social, world.train, world.shares_train, cut=CUT,
                           half_life=10 * DAY)
    w = combine(world.social, parts)
    recent = 2.0 ** -3 + 2.0 ** -2 + 2.0 ** -1
    expected = 1 + math.log1p(recent) + math.log1p(2) + math.log1p(1 / math.log(3)) + math.log1p(2)
    assert w[a, b] == pytest.approx(expected, rel=1e-6)
    assert w[b, a] == pytest.approx(expected, rel=1e-6)
    # same edges as the social graph: c shared with e, but they are not friends
    assert w[c, e] == 0
    assert set(zip(*w.nonzero(), strict=True)) == set(zip(*world.social.nonzero(), strict=True))
    # a friendship with nothing behind it keeps the base weight 1
    d = _ix(world, "d")[0]
    assert w[d, e] == pytest.approx(1.0)


def test_test_shares_change_nothing():
    before = graph_tie_strength(_world(), cut=CUT)
    data = _world([("a", "i1", "c", 50 * DAY, True)] * 3)
    after = graph_tie_strength(data, cut=CUT)
    assert (before != after).nnz == 0
    # ... whereas the same records in training would strengthen a–c
    a, c = _ix(data, "a", "c")
    leaked = tie_strength(data.social, data.train,
                          pd.concat([data.shares_train, data.shares_test], ignore_index=True))
    assert leaked[a, c] > after[a, c]


def test_shares_after_the_cut_are_refused(world):
    late = world.shares_train.copy()
    late.loc[len(late)] = {"sharer": 0, "item": 0, "recipient": 1, "ts": CUT + 1, "joined": True}
    with pytest.raises(ValueError, match="after the cut"):
        tie_strength(world.social, world.train, late, cut=CUT)
