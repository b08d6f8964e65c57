"""Share partners as served (serving/share.py over models/share_features.py and share_ranker.py)
and the cold-start fallbacks, on the tiny demo bundle (which carries share history and a learned
ranker) and on a bundle written the way training/pipeline.py ``make_bundle`` writes one."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from socialrec.features.idmap import IdMap
from socialrec.features.shares import share_groups
from socialrec.features.tie_strength import share_matrices
from socialrec.models.bundle import ModelBundle
from socialrec.models.index import build_indexes
from socialrec.models.share_features import FEATURES, ShareContext
from socialrec.models.share_ranker import ShareRanker, examples, fit_share_ranker
from socialrec.serving.fallback import friends_favourites, popular_items
from socialrec.serving.loader import DirectorySource
from socialrec.serving.schemas import ShareRequest
from socialrec.serving.share import (
    DEFAULT,
    LEARNED,
    PARTS,
    item_vector,
    rank_partners,
    share_model,
)

SHARER, ITEM = 10, 3


def friends_of(bundle, u):
    return set(bundle.social[u].indices.tolist()) - {u}


def candidates_of(bundle, u):
    return np.array(sorted(friends_of(bundle, u)))


def ranked(bundle, sharer=SHARER, item=ITEM, k=100, hops=1):
    vec, _ = item_vector(bundle, item)
    return rank_partners(bundle, sharer, vec, item, k, hops)


# -- the learned path ----------------------------------------------------------------------------

def test_the_demo_bundle_is_served_by_its_learned_ranker(bundle):
    model = share_model(bundle)
    assert model.strategy == LEARNED and model.why_default is None
    got = ranked(bundle, k=5)
    assert set(got.users.tolist()) <= friends_of(bundle, SHARER)
    assert len(got.users) == min(5, len(friends_of(bundle, SHARER)))
    assert np.all(np.diff(got.scores) <= 0)
    assert set(got.parts) == set(PARTS) and all(len(v) == 5 for v in got.parts.values())
    assert len(got.reasons) == 5 and all(got.reasons)
    # the very scores of the offline scorer (ShareRanker.scorer): one code path
    ctx = ShareContext.from_bundle(bundle)
    every = candidates_of(bundle, SHARER)
    offline = ShareRanker.from_dict(bundle.share_ranker).scorer(ctx)(
        np.array([SHARER]), np.array([ITEM]), [every])[0]
    assert got.scores == pytest.approx(np.sort(offline)[::-1][:5])


def test_a_friend_with_many_past_joins_ranks_first(bundle):
    friends = candidates_of(bundle, SHARER)
    ties = bundle.social[SHARER].toarray().ravel()[friends]
    loyal = int(friends[np.argmin(ties)])  # the weakest tie: only the joins can lift them
    n = len(bundle.users)
    history = sp.csr_matrix(([5.0], ([SHARER], [loyal])), shape=(n, n), dtype=np.float32)
    ranker = ShareRanker(["past_joins", "tie_strength"], np.array([2.0, 0.5]), 0.0,
                         np.array([0.1, 0.5]), np.array([0.3, 0.2]))
    b = replace(bundle, share_counts=history, share_joins=history,
                share_ranker=ranker.to_dict())
    got = ranked(b)
    assert got.users[0] == loyal
    assert got.parts["past_joins"][0] == pytest.approx(np.log1p(5))
    assert got.parts["past_shares"][0] == pytest.approx(np.log1p(5))
    assert got.reasons[0].startswith("joined 5 of your past shares")
    # the others have no history: ordered by tie strength, as the ranker's second feature says
    assert np.all(np.diff(got.parts["tie_strength"][1:]) <= 0)
    assert np.all(np.diff(got.scores) <= 0)


def test_two_hops_add_friends_of_friends_below_their_path(bundle):
    got = ranked(bundle, k=1000, hops=2)
    friends = friends_of(bundle, SHARER)
    assert (got.hop == 1).sum() == len(friends)
    assert {int(u) for u, h in zip(got.users, got.hop, strict=True) if h == 1} == friends
    second = got.users[got.hop == 2]
    assert not set(second.tolist()) & (friends | {SHARER})
    dense = bundle.social.toarray()
    for f, t in zip(second[:10], got.parts["tie_strength"][got.hop == 2][:10], strict=True):
        assert t == pytest.approx(max(dense[SHARER, m] * dense[m, f] for m in friends), rel=1e-5)


# -- the default ranking --------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["share_ranker", "share_history"])
def test_without_ranker_or_history_friends_go_by_tie_strength(bundle, missing):
    gone = ({"share_ranker": None} if missing == "share_ranker"
            else {"share_counts": None, "share_joins": None})
    b = replace(bundle, **gone)
    model = share_model(b)
    assert model.ranker is None and model.strategy == DEFAULT
    assert ("share_ranker.json" if missing == "share_ranker" else "share_counts.npz") \
        in model.why_default
    got = ranked(b)
    ties = b.social[SHARER].toarray().ravel()[got.users]
    assert set(got.users.tolist()) == friends_of(b, SHARER)
    assert got.scores == pytest.approx(ties) and np.all(np.diff(ties) <= 0)
    assert got.reasons[0] == f"ranked by tie strength ({ties[0]:.2f}), then interest in the item"


def test_equal_ties_are_ordered_by_affinity(bundle):
    unweighted = bundle.social.copy()
    unweighted.data[:] = 1.0  # an older bundle: social edges without tie strength
    b = replace(bundle, social=unweighted, share_ranker=None, share_counts=None,
                share_joins=None)
    got = ranked(b)
    affinity = b.user_emb[got.users] @ b.item_emb[ITEM]
    assert got.parts["affinity"] == pytest.approx(affinity, rel=1e-5)
    assert np.all(np.diff(affinity) <= 1e-6) and np.all(got.scores == 1.0)


def test_no_friends_gives_an_empty_list(bundle):
    lonely = len(bundle.users) - 1
    got = ranked(bundle, sharer=lonely, hops=2)
    assert len(got.users) == 0 and got.reasons == [] and set(got.parts) == set(PARTS)


# -- unknown items -------------------------------------------------------------------------------

def test_unknown_item_falls_back_to_category_then_popularity(bundle):
    vec, how = item_vector(bundle, None, "c2")
    members = bundle.item_category == 2
    assert how == "category" and np.allclose(vec, bundle.item_emb[members].mean(axis=0))
    got = rank_partners(bundle, SHARER, vec, None, k=5)
    assert got.parts["affinity"] == pytest.approx(bundle.user_emb[got.users] @ vec, rel=1e-5)
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


# -- a bundle as training writes it, loaded and served --------------------------------------------

N_SHARERS, N_FRIENDS, N_ITEMS = 30, 5, 20


def trained_like_bundle() -> ModelBundle:
    """Every sharer ``s`` has friends ``s·f0..f4``; ``f0`` is the weakest tie but received and
    joined 4 past shares (one other friend received each too, and did not join). The validation
    shares, all to ``f0``, teach the ranker; the rest is what make_bundle writes."""
    rng = np.random.default_rng(5)
    n = N_SHARERS * (1 + N_FRIENDS)
    friend = np.arange(n).reshape(N_SHARERS, 1 + N_FRIENDS)  # column 0: the sharer
    sharers = np.repeat(friend[:, 0], N_FRIENDS)
    mates = friend[:, 1:].ravel()
    ties = np.tile([0.2, 0.5, 0.6, 0.7, 0.9], N_SHARERS)
    social = sp.csr_matrix((np.r_[ties, ties], (np.r_[sharers, mates], np.r_[mates, sharers])),
                           shape=(n, n), dtype=np.float32)
    past, valid = [], []
    for row in friend:
        for item in rng.choice(N_ITEMS, 4, replace=False):
            past += [(row[0], item, row[1], True), (row[0], item, rng.choice(row[2:]), False)]
        valid.append((row[0], rng.integers(N_ITEMS), row[1], True))
    cols = ["sharer", "item", "recipient", "joined"]
    counts, joins = share_matrices(pd.DataFrame(past, columns=cols), n)
    seen = sp.csr_matrix((np.ones(n), (np.arange(n), rng.integers(N_ITEMS, size=n))),
                         shape=(n, N_ITEMS), dtype=np.float32)
    user_emb = rng.normal(size=(n, 8)).astype(np.float32)
    item_emb = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    ctx = ShareContext(user_emb, item_emb, social, counts, joins, seen)
    x, y, g = examples(ctx, share_groups(pd.DataFrame(valid, columns=cols)))
    ranker = fit_share_ranker(x, y, g)
    assert ranker.weights[FEATURES.index("past_joins")] > 0
    bundle = ModelBundle(
        users=IdMap(f"u{i}" for i in range(n)), items=IdMap(f"i{j}" for j in range(N_ITEMS)),
        user_emb=user_emb, item_emb=item_emb, social=social, seen=seen,
        purchases=sp.csr_matrix((n, N_ITEMS), dtype=np.float32),
        popularity=np.asarray(seen.sum(axis=0)).ravel().astype(np.float32),
        item_category=np.full(N_ITEMS, -1), push_opt_in=np.ones(n, dtype=bool),
        share_ranker=ranker.to_dict(), share_counts=counts, share_joins=joins,
    )
    build_indexes(bundle)
    return bundle


def test_a_trained_bundle_loads_and_serves(tmp_path, monkeypatch):
    path = trained_like_bundle().save(tmp_path / "bundle")
    assert json.loads((path / "share_ranker.json").read_text())["model"] == "logistic"
    from socialrec.serving.service import SocialRec

    monkeypatch.setenv("SOCIALREC_BUNDLE_DIR", str(path))
    monkeypatch.setenv("SOCIALREC_EVENT_STORE", f"sqlite:///{tmp_path / 'events.db'}")
    monkeypatch.setenv("SOCIALREC_POLL_SECONDS", "0")
    monkeypatch.delenv("SOCIALREC_EXPERIMENTS", raising=False)
    svc = SocialRec()
    try:
        for s in (0, 6, 174):
            r = svc.share_partners(ShareRequest(user_id=f"u{s}", item_id="i3", k=5))
            assert r.strategy == LEARNED and r.reason is None
            assert r.partners[0].user_id == f"u{s + 1}"  # f0, the weakest tie
            assert r.partners[0].parts["past_joins"] == pytest.approx(np.log1p(4))
            assert [p.score for p in r.partners] == sorted((p.score for p in r.partners),
                                                           reverse=True)
    finally:
        svc.close()


def test_an_unusable_share_ranker_is_refused_at_load(bundle, tmp_path):
    bad = {**bundle.share_ranker, "features": ["shoe_size", *bundle.share_ranker["features"][1:]]}
    path = replace(bundle, share_ranker=bad).save(tmp_path / "bundle")
    with pytest.raises(ValueError, match=r"share_ranker\.json: unknown features \['shoe_size'\]"):
        DirectorySource(path).load("champion", "v")
    ranker = DirectorySource(path).path / "share_ranker.json"
    ranker.write_text(json.dumps({"features": ["tie_strength"], "weights": [1.0], "bias": 0}))
    with pytest.raises(ValueError, match="logistic"):
        DirectorySource(path).load("champion", "v")
