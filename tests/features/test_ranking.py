"""Ranking primitives (features/ranking.py): exact top-k by inner product, and a group's
candidates by score with ties broken by candidate id."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from socialrec.features.ranking import rank_candidates, top_candidates, topk_one, topk_scores


def test_topk_scores_is_the_exact_top_k_with_exclusions_and_padding():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(7, 4)).astype(np.float32)
    keys = rng.normal(size=(30, 4)).astype(np.float32)
    exclude = sp.random(7, 30, density=0.3, random_state=1, format="csr")
    idx, scores = topk_scores(query, keys, 5, exclude=exclude, chunk=3)
    full = query @ keys.T
    full[exclude.toarray() != 0] = -np.inf
    want = np.argsort(-full, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(scores, np.take_along_axis(full, want, axis=1), rtol=1e-6)
    # fewer admissible keys than k: padded with -1 / -inf
    idx, scores = topk_scores(query[:1], keys, 4, candidates=np.array([3, 8]))
    assert sorted(idx[0, :2].tolist()) == [3, 8] and idx[0, 2:].tolist() == [-1, -1]
    assert np.isneginf(scores[0, 2:]).all()


def test_every_key_ranked_keeps_equal_scores_in_key_order():
    keys = np.array([[1.0], [2.0], [1.0], [2.0], [0.0]], dtype=np.float32)
    idx, _ = topk_scores(np.ones((1, 1), dtype=np.float32), keys, 5)
    assert idx[0].tolist() == [1, 3, 0, 2, 4]


def test_topk_one_is_a_row_of_topk_scores():
    rng = np.random.default_rng(2)
    keys = rng.normal(size=(50, 8)).astype(np.float32)
    q = rng.normal(size=8).astype(np.float32)
    for k in (1, 10, 50, 80):
        idx, scores = topk_one(q, keys, k)
        full_idx, full_scores = topk_scores(q[None], keys, k)
        keep = full_idx[0] >= 0
        np.testing.assert_array_equal(idx, full_idx[0][keep])
        np.testing.assert_array_equal(scores, full_scores[0][keep])
        assert len(idx) == min(k, 50)
        np.testing.assert_array_equal(scores, (keys @ q)[idx])


def test_candidates_rank_by_score_then_by_id():
    cands = np.array([9, 2, 7, 4])
    assert cands[rank_candidates(cands, np.array([1.0, 3.0, 1.0, 3.0]))].tolist() == [2, 4, 7, 9]
    # a second key orders equal scores before the id does
    then = np.array([0.0, 1.0, 5.0, 2.0])
    assert cands[rank_candidates(cands, np.array([1.0, 3.0, 1.0, 3.0]), then)].tolist() == \
        [4, 2, 7, 9]


def test_top_candidates_pads_short_groups():
    cands = [np.array([3, 5, 8]), np.array([1]), np.zeros(0, dtype=np.int64)]
    scores = [np.array([0.5, 0.5, 0.9]), np.array([0.0]), np.zeros(0)]
    assert top_candidates(cands, scores, 2).tolist() == [[8, 3], [1, -1], [-1, -1]]
