"""The three offline tasks on hand-built GraphData whose right answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from socialrec.evaluation.offline import (
    embedding_share_scorer,
    evaluate_all,
    evaluate_push,
    evaluate_recommend,
    evaluate_share,
    sample_negatives,
)
from socialrec.features.graph import GraphData
from socialrec.features.idmap import IdMap
from socialrec.features.shares import share_candidates


def pairs_matrix(pairs, shape) -> sp.csr_matrix:
    pairs = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
    return sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])),
                         shape=shape)


def shares_frame(records) -> pd.DataFrame:
    rows = list(records)
    return pd.DataFrame({
        "sharer": pd.Series([r[0] for r in rows], dtype=np.int64),
        "item": pd.Series([r[1] for r in rows], dtype=np.int64),
        "recipient": pd.Series([r[2] for r in rows], dtype=np.int64),
        "ts": pd.Series([0] * len(rows), dtype="Int64"),
        "joined": pd.Series([r[3] for r in rows], dtype=bool),
    })


def graph(n_users, n_items, train=(), valid=(), test=(), social=(), shares_valid=(),
          shares_test=()) -> GraphData:
    """GraphData in internal ids; ``social`` edges are made mutual."""
    shape = (n_users, n_items)
    edges = list(social) + [(b, a) for a, b in social]
    return GraphData(
        users=IdMap(f"u{i}" for i in range(n_users)),
        items=IdMap(f"i{i}" for i in range(n_items)),
        train=pairs_matrix(train, shape),
        valid=pairs_matrix(valid, shape),
        test=pairs_matrix(test, shape),
        social=pairs_matrix(edges, (n_users, n_users)),
        purchases=pairs_matrix((), shape),
        shares_train=shares_frame(()),
        shares_valid=shares_frame(shares_valid),
        shares_test=shares_frame(shares_test),
        item_category=np.full(n_items, -1),
        categories=[],
        push_opt_in=np.ones(n_users, dtype=bool),
    )


# --- recommend ------------------------------------------------------------------------------------

# Users 0 and 1 both prefer items in id order (item_emb = identity, user scores 5 > 4 > 3 > 2 > 1).
# User 0: train 0, valid 1, test 2.  User 1: train 0, test 4.  User 2: nothing to predict.
PREFS = np.array([[5, 4, 3, 2, 1], [5, 4, 3, 2, 1], [1, 1, 1, 1, 1]], dtype=np.float32)
EYE5 = np.eye(5, dtype=np.float32)
WORLD = graph(3, 5, train=[(0, 0), (1, 0)], valid=[(0, 1)], test=[(0, 2), (1, 4)])


def test_recommend_test_excludes_train_and_valid_items():
    m = evaluate_recommend(PREFS, EYE5, WORLD, target="test", ks=[1, 4])
    # User 0: items 0 (train) and 1 (valid) are out, so item 2 ranks first -> a hit at rank 1.
    # User 1: only item 0 is out; ranking [1, 2, 3, 4] puts the target 4 at rank 4.
    assert m["n_queries"] == 2 and m["n_skipped"] == 1
    assert m["recall@1"] == pytest.approx((1 + 0) / 2)
    assert m["mrr@4"] == pytest.approx((1 + 1 / 4) / 2)
    assert m["ndcg@4"] == pytest.approx((1 + 1 / math.log2(5)) / 2)
    # Top-1 lists are [2] and [1]: 2 of 5 items shown.
    assert m["coverage@1"] == pytest.approx(2 / 5)


def test_recommend_valid_excludes_train_only():
    m = evaluate_recommend(PREFS, EYE5, WORLD, target="valid", ks=[1])
    # User 0 alone has a valid item (1); with train item 0 out, it ranks first.
    assert m["n_queries"] == 1 and m["recall@1"] == 1.0


def test_target_seen_in_train_is_dropped_and_counted():
    data = graph(2, 5, train=[(0, 0), (1, 3)], test=[(0, 0), (0, 1), (1, 3)])
    m = evaluate_recommend(PREFS[:2], EYE5, data, target="test", ks=[1])
    # (0, 0) and (1, 3) were seen in train: user 0 keeps target 1 (rank 1), user 1 has none left.
    assert m["n_seen_targets"] == 2
    assert m["n_queries"] == 1 and m["n_skipped"] == 1 and m["recall@1"] == 1.0


def test_full_ranking_matches_brute_force_on_random_data():
    rng = np.random.default_rng(3)
    n_users, n_items = 60, 45
    train = sp.random(n_users, n_items, density=0.2, random_state=rng, format="csr")
    valid = sp.random(n_users, n_items, density=0.05, random_state=rng, format="csr")
    test = sp.random(n_users, n_items, density=0.05, random_state=rng, format="csr")
    data = graph(n_users, n_items)
    data.train, data.valid, data.test = train, valid, test
    user_emb = rng.normal(size=(n_users, 8)).astype(np.float32)
    item_emb = rng.normal(size=(n_items, 8)).astype(np.float32)
    m = evaluate_recommend(user_emb, item_emb, data, target="test", ks=[10])

    scores = user_emb @ item_emb.T
    seen = (train + valid).toarray() > 0
    recalls = []
    for u in range(n_users):
        truth = set(np.flatnonzero(test[u].toarray()[0])) - set(np.flatnonzero(seen[u]))
        if truth:
            order = [i for i in np.argsort(-scores[u]) if not seen[u, i]][:10]
            recalls.append(len(truth & set(order)) / len(truth))
    assert m["n_queries"] == len(recalls)
    assert m["recall@10"] == pytest.approx(np.mean(recalls))


def test_embeddings_that_do_not_fit_the_data_are_refused():
    with pytest.raises(ValueError, match="embeddings cover 3 queries × 4 candidates"):
        evaluate_recommend(PREFS, EYE5[:4], WORLD)
    with pytest.raises(ValueError, match="target must be"):
        evaluate_recommend(PREFS, EYE5, WORLD, target="train")


# --- push -----------------------------------------------------------------------------------------


def test_push_ranks_users_and_excludes_those_who_already_interacted():
    # Item 0 scores users 4 > 3 > 2 > 1 (user_emb = identity). User 0 met it in train, user 1 in
    # valid, user 2 in test. Item 1 has no target user.
    data = graph(4, 2, train=[(0, 0)], valid=[(1, 0)], test=[(2, 0)])
    user_emb = np.eye(4, dtype=np.float32)
    item_emb = np.array([[4, 3, 2, 1], [1, 1, 1, 1]], dtype=np.float32)
    m = evaluate_push(user_emb, item_emb, data, target="test", ks=[1])
    assert m["n_queries"] == 1 and m["n_skipped"] == 1
    assert m["hit@1"] == 1.0  # users 0 and 1 out, so user 2 ranks first
    assert m["coverage@1"] == pytest.approx(1 / 4)
    m = evaluate_push(user_emb, item_emb, data, target="valid", ks=[1])
    assert m["hit@1"] == 1.0  # user 0 out, so user 1 ranks first


# --- sampled protocol -----------------------------------------------------------------------------


def sampled_world(n_users=500, n_items=1100, seed=11) -> GraphData:
    """Every user: 5 train items and 4 test items, distinct, at random."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for u in range(n_users):
        items = rng.choice(n_items, 9, replace=False)
        train += [(u, i) for i in items[:5]]
        test += [(u, i) for i in items[5:]]
    return graph(n_users, n_items, train=train, test=test)


def test_sampled_protocol_perfect_model_scores_one():
    data = sampled_world(n_users=50)
    # score(u, i) = 1 for u's test items, else 0: every positive beats its 999 negatives.
    m = evaluate_recommend(data.test.toarray(), np.eye(data.n_items, dtype=np.float32), data,
                           target="test", ks=[1, 10], protocol="sampled", negatives=999)
    assert m["n_pairs"] == 200 and m["n_queries"] == 50
    for name in ("recall@1", "hit@1", "ndcg@1", "mrr@10", "ndcg@10"):
        assert m[name] == 1.0, name


def test_sampled_protocol_random_model_hits_k_in_1000():
    data = sampled_world()
    rng = np.random.default_rng(5)
    user_emb = rng.normal(size=(data.n_users, 16)).astype(np.float32)
    item_emb = rng.normal(size=(data.n_items, 16)).astype(np.float32)
    m = evaluate_recommend(user_emb, item_emb, data, target="test", ks=[10, 50],
                           protocol="sampled", negatives=999, seed=1)
    # The positive's rank is uniform on 1..1000, so hit@k = k/1000. Over 2000 pairs the standard
    # error is 0.0022 at k=10 and 0.0049 at k=50; the tolerances are > 4 of them.
    assert m["n_pairs"] == 2000
    assert m["hit@10"] == pytest.approx(0.01, abs=0.01)
    assert m["hit@50"] == pytest.approx(0.05, abs=0.02)


def test_sampled_protocol_counts_ties_against_the_positive():
    data = sampled_world(n_users=20)
    flat = np.ones((data.n_users, 1), dtype=np.float32), np.ones((data.n_items, 1), np.float32)
    m = evaluate_recommend(*flat, data, ks=[10], protocol="sampled", negatives=50)
    assert m["hit@10"] == 0.0  # a model that scores everything alike earns nothing


def test_sampled_protocol_is_seeded():
    data = sampled_world(n_users=40)
    rng = np.random.default_rng(0)
    u, i = rng.normal(size=(40, 4)), rng.normal(size=(1100, 4))
    a = evaluate_push(u, i, data, ks=[5], protocol="sampled", negatives=20, seed=3)
    b = evaluate_push(u, i, data, ks=[5], protocol="sampled", negatives=20, seed=3)
    assert a == b


@pytest.mark.parametrize("n", [1, 10])  # 15 unseen columns: rejection (< 8n) or random keys
def test_sample_negatives_is_uniform_over_unseen_without_repeats(n):
    seen = sp.csr_matrix(np.array([[1] * 5 + [0] * 15]))
    rows = np.zeros(3000, dtype=np.int64)
    neg = sample_negatives(seen, rows, n, np.random.default_rng(0))
    assert neg.shape == (3000, n)
    assert (neg >= 5).all() and (neg < 20).all()  # never a seen column
    assert (np.diff(neg, axis=1) > 0).all()  # sorted, hence no repeats
    counts = np.bincount(neg.ravel(), minlength=20)[5:]
    assert stats.chisquare(counts).pvalue > 0.001


def test_sample_negatives_refuses_rows_with_too_few_unseen():
    seen = sp.csr_matrix(np.array([[1, 1, 1, 0, 0]]))
    with pytest.raises(ValueError, match=r"row 0 has only 2 candidates.*negatives=3"):
        sample_negatives(seen, np.array([0]), 3, np.random.default_rng(0))


# --- share partners -------------------------------------------------------------------------------

# Friendships: 0-1, 0-2, 0-3, 1-4, 2-5. Test shares: user 0 shared item 0 to 1, 4 (joined) and 9
# (no friend of anyone); user 3 shared item 1 to 0.
SOCIAL = [(0, 1), (0, 2), (0, 3), (1, 4), (2, 5)]
SHARES = [(0, 0, 1, False), (0, 0, 4, True), (0, 0, 9, False), (3, 1, 0, False)]
# Affinity to item 0 (first column): 1 > 4 > 2 > 5 > 3; to item 1 (second column): all equal.
AFFINITY = np.zeros((10, 2), dtype=np.float32)
AFFINITY[[1, 4, 2, 5, 3], 0] = [0.9, 0.7, 0.5, 0.3, 0.1]
AFFINITY[:, 1] = 1.0
SHARE_WORLD = graph(10, 2, social=SOCIAL, shares_test=SHARES)
SCORER = embedding_share_scorer(AFFINITY, np.eye(2, dtype=np.float32))


def test_share_candidates_one_and_two_hops():
    social = SHARE_WORLD.social
    assert [c.tolist() for c in share_candidates(social, np.array([0, 3]), hops=1)] == \
        [[1, 2, 3], [0]]
    # Two hops: friends of friends join, the sharer never does.
    assert [c.tolist() for c in share_candidates(social, np.array([0, 3]), hops=2)] == \
        [[1, 2, 3, 4, 5], [0, 1, 2]]


def test_share_one_hop():
    m = evaluate_share(SCORER, SHARE_WORLD, target="test", ks=[1, 3], hops=1)
    # (0, item 0): candidates 1, 2, 3 ranked [1, 2, 3]; truth {1, 4, 9}: only 1 is reachable.
    # (3, item 1): candidate 0, truth {0}.
    assert m["n_queries"] == 2
    assert m["coverage"] == pytest.approx(2 / 4)  # recipients 1 and 0 of 1, 4, 9, 0
    assert m["recall@1"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["recall@3"] == pytest.approx((1 / 3 + 1) / 2)  # 4 and 9 are misses, not skipped
    assert m["hit@1"] == 1.0
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"] == pytest.approx((1 / idcg3 + 1) / 2)
    assert m["mean_candidates"] == pytest.approx((3 + 1) / 2)
    # Joined: only recipient 4 of (0, item 0), who is not a friend of 0.
    assert m["joined_n_queries"] == 1 and m["joined_n_skipped"] == 1
    assert m["joined_recall@3"] == 0.0 and m["joined_coverage"] == 0.0


def test_share_two_hops_reaches_friends_of_friends():
    m = evaluate_share(SCORER, SHARE_WORLD, target="test", ks=[2, 3], hops=2)
    # (0, item 0): ranking [1, 4, 2, 5, 3] puts recipients 1 and 4 first; 9 stays out of reach.
    # (3, item 1): candidates 0, 1, 2 tie; the lower id (0, the recipient) comes first.
    assert m["coverage"] == pytest.approx(3 / 4)
    assert m["recall@2"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["ndcg@2"] == 1.0
    assert m["joined_recall@2"] == 1.0 and m["joined_mrr@3"] == 0.5


def test_share_uses_the_given_score_function():
    def worst_first(sharers, items, candidates):
        return [-s for s in SCORER(sharers, items, candidates)]

    m = evaluate_share(worst_first, SHARE_WORLD, target="test", ks=[1], hops=1)
    # (0, item 0) now ranks [3, 2, 1]: no hit at 1; (3, item 1) still has one candidate.
    assert m["recall@1"] == pytest.approx((0 + 1) / 2)


def test_share_without_joins_has_no_joined_variant_and_valid_reads_valid_shares():
    data = graph(10, 2, social=SOCIAL, shares_valid=[(0, 0, 2, False)], shares_test=SHARES)
    m = evaluate_share(SCORER, data, target="valid", ks=[1])
    assert m["n_queries"] == 1 and m["recall@1"] == 0.0  # 1 outranks the recipient 2
    assert not any(name.startswith("joined_") for name in m)


def test_share_records_with_unknown_ids_are_dropped_and_counted():
    data = graph(10, 2, social=SOCIAL, shares_test=[*SHARES, (0, 0, -1, True), (-1, 1, 2, False)])
    m = evaluate_share(SCORER, data, ks=[1])
    assert m["n_dropped_records"] == 2
    assert m["n_queries"] == 2 and m["coverage"] == pytest.approx(2 / 4)  # as without them


def test_share_score_fn_must_score_every_candidate():
    with pytest.raises(ValueError, match="one score per candidate"):
        evaluate_share(lambda s, i, c: [x[:1] for x in c], SHARE_WORLD, ks=[1])


def test_evaluate_all_groups_the_tasks():
    out = evaluate_all(AFFINITY, np.eye(2, dtype=np.float32), SHARE_WORLD, ks=[1], hops=2)
    assert set(out) == {"recommend", "push", "share"}
    assert out["share"]["coverage"] == pytest.approx(3 / 4)
    assert out["recommend"]["n_queries"] == 0  # no test interactions in this world
