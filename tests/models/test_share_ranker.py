"""The share-partner ranker: candidates, features, the learned model and its JSON round trip.

The "loyal friend" world: 40 sharers, each with 6 friends of their own (``s7`` has ``s7f0`` …
``s7f5``). Each sharer shares 6 items in training; every share goes to their friend ``f0``, who
joins it, and to one other friend drawn at random, who does not. Valid and test shares (one per
sharer, new items) go to ``f0`` alone. The right answer is known: ``f0`` — the friend who joined
every past share — must rank first, for every sharer.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from socialrec.evaluation.offline import evaluate_share, share_candidates
from socialrec.features.graph import GraphData, build_graph
from socialrec.features.splits import Split
from socialrec.features.tables import Dataset, conform
from socialrec.models.bundle import ModelBundle
from socialrec.models.share_ranker import (
    FEATURES,
    ShareContext,
    ShareRanker,
    affinity_scorer,
    candidates,
    examples,
    fit_conditional_logit,
    fit_share_ranker,
    friend_popularity_scorer,
    random_scorer,
    share_features,
    share_groups,
    tie_strength_scorer,
    train_share_ranker,
)

N_SHARERS, N_FRIENDS, N_ITEMS = 40, 6, 30
DAY = 86_400
SHARE_COLS = ["sharer_id", "item_id", "recipient_id", "ts", "joined"]


def _loyal_world(test_recipient: str = "f0") -> GraphData:
    rng = np.random.default_rng(3)
    social, inter, train, valid, test = [], [], [], [], []
    for s in range(N_SHARERS):
        sharer = f"s{s}"
        social += [(sharer, f"{sharer}f{j}") for j in range(N_FRIENDS)]
        for day, item in enumerate(rng.choice(N_ITEMS, 6, replace=False), start=1):
            other = f"{sharer}f{rng.integers(1, N_FRIENDS)}"
            train += [(sharer, f"i{item}", f"{sharer}f0", day * DAY, True),
                      (sharer, f"i{item}", other, day * DAY, False)]
            inter += [(sharer, f"i{item}", "purchase", day * DAY),
                      (f"{sharer}f0", f"i{item}", "purchase", day * DAY + 60)]
        valid.append((sharer, f"i{(s + 7) % N_ITEMS}", f"{sharer}f0", 10 * DAY, True))
        test.append((sharer, f"i{(s + 11) % N_ITEMS}", f"{sharer}{test_recipient}", 20 * DAY,
                     True))
    frames = {name: conform(pd.DataFrame(rows, columns=SHARE_COLS), "shares")
              for name, rows in (("train", train), ("valid", valid), ("test", test))}
    interactions = conform(pd.DataFrame(inter, columns=["user_id", "item_id", "event", "ts"]),
                           "interactions")
    social_df = conform(pd.DataFrame(social, columns=["src", "dst"]), "social")
    dataset = Dataset("loyal-friends", interactions=interactions, social=social_df,
                      shares=pd.concat(frames.values(), ignore_index=True))
    split = Split(train=interactions, valid=interactions.iloc[:0], test=interactions.iloc[:0],
                  social=social_df, train_shares=frames["train"], valid_shares=frames["valid"],
                  test_shares=frames["test"], protocol="hand-made", cut_ts=9 * DAY)
    return build_graph(dataset, split)


def _embeddings(data: GraphData, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(data.n_users, 4)).astype(np.float32),
            rng.normal(size=(data.n_items, 4)).astype(np.float32))


@pytest.fixture(scope="module")
def loyal() -> tuple[GraphData, np.ndarray, np.ndarray, ShareRanker]:
    data = _loyal_world()
    user_emb, item_emb = _embeddings(data)
    ranker = train_share_ranker(data, user_emb, item_emb, l2_grid=(0.1, 10.0), cut=9 * DAY)
    return data, user_emb, item_emb, ranker


def _graph(edges: list[tuple[int, int, float]], n: int) -> sp.csr_matrix:
    r, c, w = zip(*edges, strict=True)
    m = sp.csr_matrix((np.r_[w, w], (np.r_[r, c], np.r_[c, r])), shape=(n, n), dtype=np.float32)
    return m


# --- candidates -----------------------------------------------------------------------------------


# s=0 – a=1, s – b=2, a – c=3, b – c, c – d=4
DIAMOND = _graph([(0, 1, 2.0), (0, 2, 1.0), (1, 3, 3.0), (2, 3, 5.0), (3, 4, 1.0)], 5)


def test_one_hop_candidates_are_exactly_the_friends():
    assert [c.tolist() for c in candidates(DIAMOND, np.array([0, 3]), hops=1)] == [[1, 2],
                                                                                   [1, 2, 4]]


def test_two_hop_candidates_add_friends_of_friends_but_never_the_sharer():
    (two,) = candidates(DIAMOND, np.array([0]), hops=2)
    assert two.tolist() == [1, 2, 3]  # c (3) is a friend of a friend; d (4) is three hops away
    (from_c,) = candidates(DIAMOND, np.array([3]), hops=2)
    assert 3 not in from_c and set(from_c.tolist()) == {0, 1, 2, 4}


def test_candidates_match_the_evaluation_protocol():
    rng = np.random.default_rng(1)
    m = sp.random(60, 60, density=0.08, random_state=2, format="csr")
    sharers = rng.integers(0, 60, 25)
    for hops in (1, 2):
        ours, theirs = candidates(m, sharers, hops), share_candidates(m, sharers, hops)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_two_hop_features_take_the_strongest_path():
    empty = sp.csr_matrix((5, 5), dtype=np.float32)
    ctx = ShareContext(np.ones((5, 2)), np.ones((1, 2)), DIAMOND, empty, empty,
                       sp.csr_matrix((5, 1)))
    x = share_features(ctx, np.array([0]), np.array([0]), [np.array([1, 3])])
    tie, hop = FEATURES.index("tie_strength"), FEATURES.index("two_hop")
    # via a: 2 · 3 = 6, via b: 1 · 5 = 5
    assert x[:, tie].tolist() == [2.0, 6.0] and x[:, hop].tolist() == [0.0, 1.0]
    # s and a have no friend in common; s and c have a and b, of degree 2 each
    aa = FEATURES.index("adamic_adar")
    assert x[0, aa] == 0.0 and x[1, aa] == pytest.approx(2 / np.log(2))


# --- the learned ranker ---------------------------------------------------------------------------


def test_the_friend_who_joined_every_past_share_ranks_first(loyal):
    data, user_emb, item_emb, ranker = loyal
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    learned = evaluate_share(ranker.scorer(ctx), data, "test", ks=[1, 5])
    assert learned["n_queries"] == N_SHARERS
    assert learned["mrr@5"] == pytest.approx(1.0)
    assert learned["hit@1"] == pytest.approx(1.0)
    # the history features carry it, and the model knows it
    weights = dict(zip(ranker.features, ranker.weights, strict=True))
    assert weights["past_joins"] > 0 and weights["past_shares"] > 0
    # random and affinity (random embeddings here) do not find f0 every time
    for baseline in (random_scorer(0), affinity_scorer(ctx)):
        assert evaluate_share(baseline, data, "test", ks=[1, 5])["mrr@5"] < 0.8


def test_fitting_on_cross_fitted_training_shares_finds_the_loyal_friend_too(loyal):
    data, user_emb, item_emb, _ = loyal
    ranker = train_share_ranker(data, user_emb, item_emb, fit_on="train", l2_grid=(1.0,),
                                cut=9 * DAY)
    assert ranker.trained_on["fit_on"] == "train shares"
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    assert evaluate_share(ranker.scorer(ctx), data, "test", ks=[1])["hit@1"] == pytest.approx(1.0)


def test_learning_reads_no_test_share(loyal):
    data, user_emb, item_emb, ranker = loyal
    # Same world, but every test share goes to f3 instead: the learned model must not move.
    other = _loyal_world(test_recipient="f3")
    assert other.shares_test["recipient"].tolist() != data.shares_test["recipient"].tolist()
    again = train_share_ranker(other, user_emb, item_emb, l2_grid=(0.1, 10.0), cut=9 * DAY)
    assert again.to_dict() == ranker.to_dict()


def test_trained_on_and_metrics_are_recorded(loyal):
    *_, ranker = loyal
    assert ranker.trained_on["fit_on"] == "valid shares"
    assert ranker.trained_on["selected_by"].startswith("valid.mrr@10, 5-fold cross-validation")
    assert set(ranker.trained_on["by_l2"]) == {"0.1", "10.0"}
    assert ranker.trained_on["objective"].startswith("conditional logit")
    assert ranker.metrics["valid.mrr@10"] == pytest.approx(1.0)


def _choices(weights: np.ndarray, n_groups: int, size: int, seed: int = 0):
    """Groups of ``size`` candidates; one recipient each, drawn by softmax(weights · x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_groups * size, len(weights)))
    s = (x @ weights).reshape(n_groups, size)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    chosen = (p.cumsum(axis=1) > rng.random((n_groups, 1))).argmax(axis=1)
    y = np.zeros((n_groups, size))
    y[np.arange(n_groups), chosen] = 1
    return x, y.ravel(), np.repeat(np.arange(n_groups), size)


def test_conditional_logit_recovers_known_weights():
    x, y, groups = _choices(np.array([1.5, -1.0, 0.0]), n_groups=4000, size=8)
    w, _, std = fit_conditional_logit(x, y, groups, l2=1e-3)
    # weights are per standardised feature: divide by std for raw units
    np.testing.assert_allclose(w / std, [1.5, -1.0, 0.0], atol=0.1)
    # a strong L2 pulls towards the prior
    w_zero, *_ = fit_conditional_logit(x, y, groups, l2=1e6)
    np.testing.assert_allclose(w_zero, 0.0, atol=0.01)
    w_prior, *_ = fit_conditional_logit(x, y, groups, l2=1e6, prior=np.array([0.0, 0.0, 2.0]))
    np.testing.assert_allclose(w_prior, [0.0, 0.0, 2.0], atol=0.01)


def test_conditional_logit_ignores_shares_without_a_contrast():
    x, y, groups = _choices(np.array([1.0, 0.0]), n_groups=500, size=5)
    w, *_ = fit_conditional_logit(x, y, groups)
    # add groups where every candidate is a recipient, and single-candidate groups: no change
    x2 = np.r_[x, np.full((6, 2), 9.0)]
    y2 = np.r_[y, np.ones(6)]
    g2 = np.r_[groups, [1000, 1000, 1000, 1001, 1002, 1003]]
    np.testing.assert_allclose(fit_conditional_logit(x2, y2, g2)[0], w, atol=1e-6)
    with pytest.raises(ValueError, match="nothing to learn"):
        fit_conditional_logit(np.ones((4, 2)), np.ones(4), np.arange(4))


def test_a_huge_l2_gives_back_the_tie_strength_ranking(loyal):
    data, user_emb, item_emb, _ = loyal
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    x, y, g = examples(ctx, share_groups(data.shares_valid))
    ranker = fit_share_ranker(x, y, g, l2=1e9)
    assert ranker.trained_on["prior"] == "tie_strength alone"
    others = [w for f, w in zip(ranker.features, ranker.weights, strict=True)
              if f != "tie_strength"]
    assert np.abs(others).max() < 1e-3
    assert ranker.weights[ranker.features.index("tie_strength")] > 0


# --- JSON -----------------------------------------------------------------------------------------


def test_save_load_round_trip_through_json(loyal, tmp_path):
    data, user_emb, item_emb, ranker = loyal
    path = ranker.save(tmp_path / "share_ranker.json")
    raw = json.loads(path.read_text())
    assert raw["model"] == "logistic" and raw["features"] == list(FEATURES)
    assert {"weights", "bias", "mean", "std", "trained_on", "metrics"} <= set(raw)
    loaded = ShareRanker.load(path)
    assert loaded.to_dict() == ranker.to_dict()
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    sharers, items = np.array([0, 1]), np.array([0, 1])
    cands = candidates(ctx.social, sharers)
    for a, b in zip(loaded.scorer(ctx)(sharers, items, cands),
                    ranker.scorer(ctx)(sharers, items, cands), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_json_is_refused_with_a_clear_message(loyal, tmp_path):
    *_, ranker = loyal
    good = ranker.to_dict()
    with pytest.raises(ValueError, match="unknown features"):
        ShareRanker.from_dict({**good, "features": ["shoe_size", *good["features"][1:]]})
    with pytest.raises(ValueError, match="weights has shape"):
        ShareRanker.from_dict({**good, "weights": good["weights"][:-1]})
    with pytest.raises(ValueError, match="logistic"):
        ShareRanker.from_dict({**good, "model": "gbdt"})
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": "logistic",\n  "features": [}')
    with pytest.raises(ValueError, match=r"broken.json: line 2, column"):
        ShareRanker.load(broken)


# --- baselines and the bundle ---------------------------------------------------------------------


def test_baselines_score_every_candidate(loyal):
    data, user_emb, item_emb, _ = loyal
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    sharers = np.arange(3)
    cands = candidates(ctx.social, sharers)
    for fn in (tie_strength_scorer(ctx), friend_popularity_scorer(ctx), affinity_scorer(ctx),
               random_scorer(1)):
        scores = fn(sharers, np.zeros(3, dtype=np.int64), cands)
        assert [len(s) for s in scores] == [len(c) for c in cands]
    # f0 received (and joined) the most: friend popularity and tie strength both put it first
    f0 = [int(data.users.get(f"s{s}f0")) for s in range(N_SHARERS)]
    for fn in (friend_popularity_scorer(ctx), tie_strength_scorer(ctx)):
        assert evaluate_share(fn, data, "test", ks=[1])["hit@1"] == pytest.approx(1.0)
    assert all(f in c for f, c in zip(f0, candidates(ctx.social, np.array(
        [int(data.users.get(f"s{s}")) for s in range(N_SHARERS)])), strict=True))
    # the random baseline is seeded
    a = random_scorer(5)(sharers, np.zeros(3, dtype=np.int64), cands)
    b = random_scorer(5)(sharers, np.zeros(3, dtype=np.int64), cands)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_context_from_a_bundle_needs_the_share_history(loyal):
    data, user_emb, item_emb, _ = loyal
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    bundle = ModelBundle(
        users=data.users, items=data.items, user_emb=user_emb, item_emb=item_emb,
        social=ctx.social, seen=data.train, purchases=data.purchases,
        popularity=np.ones(data.n_items, dtype=np.float32), item_category=data.item_category,
        push_opt_in=data.push_opt_in)
    with pytest.raises(ValueError, match=r"share_counts\.npz, share_joins\.npz"):
        ShareContext.from_bundle(bundle)
    bundle.share_counts, bundle.share_joins = ctx.share_counts, ctx.share_joins
    served = ShareContext.from_bundle(bundle)
    sharers, items = np.arange(5), np.arange(5)
    cands = candidates(served.social, sharers)
    np.testing.assert_array_equal(share_features(served, sharers, items, cands),
                                  share_features(ctx, sharers, items, cands))
