"""Share-partner scoring and the cold-start fallbacks on the tiny bundle."""

from __future__ import annotations

import numpy as np
import pytest

from socialrec.serving.fallback import friends_favourites, popular_items
from socialrec.serving.share import (
    DEFAULT_RANKER,
    candidates,
    check_ranker,
    item_vector,
    rank_partners,
)


def friends_of(bundle, u):
    return set(bundle.social[u].indices.tolist()) - {u}


def test_one_hop_candidates_are_the_friends_with_their_ties(bundle):
    users, hop, tie = candidates(bundle, 10, hops=1)
    assert set(users.tolist()) == friends_of(bundle, 10)
    assert np.all(hop == 1)
    assert np.allclose(tie, bundle.social[10].toarray().ravel()[users])


def test_two_hop_ties_are_the_strongest_path(bundle):
    s = 10
    users, hop, tie = candidates(bundle, s, hops=2)
    first = friends_of(bundle, s)
    second = users[hop == 2]
    assert not set(second.tolist()) & (first | {s})
    dense = bundle.social.toarray()
    for f, t in zip(second[:20], tie[hop == 2][:20], strict=True):
        paths = [dense[s, m] * dense[m, f] for m in first if dense[m, f] > 0]
        assert t == pytest.approx(max(paths), rel=1e-5)


def test_partners_are_friends_sorted_by_score(bundle):
    vec, fallback = item_vector(bundle, 3)
    got = rank_partners(bundle, 10, vec, 3, k=5)
    assert fallback is None
    assert set(got.users.tolist()) <= friends_of(bundle, 10)
    assert np.all(np.diff(got.scores) <= 0)
    assert len(got.users) == min(5, len(friends_of(bundle, 10)))
    assert len(got.reasons) == len(got.users)
    bought = bundle.purchases[got.users][:, 3].toarray().ravel()
    assert np.array_equal(got.features["already_bought"], bought)


def test_a_learned_ranker_sets_the_order(bundle):
    vec, _ = item_vector(bundle, 3)
    by_tie = {"features": ["tie_strength"], "weights": [1.0], "bias": 0.0}
    got = rank_partners(bundle, 10, vec, 3, k=100, ranker=by_tie)
    ties = bundle.social[10].toarray().ravel()[got.users]
    assert np.all(np.diff(ties) <= 0)
    with pytest.raises(ValueError, match="unknown features"):
        check_ranker({"features": ["shoe_size"], "weights": [1.0], "bias": 0})
    assert check_ranker(DEFAULT_RANKER)["features"] == DEFAULT_RANKER["features"]


def test_no_friends_gives_an_empty_list(bundle):
    lonely = len(bundle.users) - 1
    vec, _ = item_vector(bundle, 3)
    assert len(rank_partners(bundle, lonely, vec, 3, k=5, hops=2).users) == 0


def test_unknown_item_falls_back_to_category_then_popularity(bundle):
    vec, how = item_vector(bundle, None, "c2")
    members = bundle.item_category == 2
    assert how == "category" and np.allclose(vec, bundle.item_emb[members].mean(axis=0))
    vec, how = item_vector(bundle, None, "no-such-category")
    assert how == "popularity"
    w = bundle.popularity / bundle.popularity.sum()
    assert np.allclose(vec, w @ bundle.item_emb, atol=1e-5)


def test_popular_items_and_friends_favourites(bundle):
    _, scores = popular_items(bundle, 5)
    assert np.all(np.diff(scores) <= 0)
    assert scores[0] == bundle.popularity.max()
    cold = next(u for u in range(len(bundle.users))
                if bundle.seen[u].nnz == 0 and bundle.social[u].nnz > 0)
    favs, fscores, found = friends_favourites(bundle, cold, 5)
    taste = (bundle.social[cold] @ bundle.seen).toarray().ravel()
    assert found and np.all(np.diff(fscores) <= 0)
    assert np.allclose(fscores, np.sort(taste)[::-1][:5])
    assert taste[favs[0]] == taste.max()
