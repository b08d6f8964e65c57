"""Ranking metrics against hand-computed values, and against PyG's LinkPred* metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from socialrec.evaluation.metrics import (
    catalogue_coverage,
    csr_contains,
    per_query_metrics,
    ranking_metrics,
)

# Four queries over candidates 0..5 (-1 = padding):
#   q0: truth {1, 3}, top [3, 0, 1]   hits at ranks 1 and 3
#   q1: truth {2},    top [0, 1, 2]   hit at rank 3
#   q2: truth {},     top [0, 1, 2]   skipped
#   q3: truth {5},    top [5, -1, -1] hit at rank 1, short list
TOPK = np.array([[3, 0, 1], [0, 1, 2], [0, 1, 2], [5, -1, -1]])
TRUTH = [np.array([1, 3]), np.array([2]), np.array([], dtype=int), np.array([5])]
L3 = 1 / math.log2(3)  # discount at rank 2; rank 1 -> 1, rank 3 -> 1/log2(4) = 0.5


def test_per_query_values_by_hand():
    pq = per_query_metrics(TOPK, TRUTH, ks=[1, 2, 3])
    assert pq.queries.tolist() == [0, 1, 3] and pq.n_skipped == 1
    v = {name: values.tolist() for name, values in pq.values.items()}
    # q0: 1 of 2 relevant in the top 1 and 2, both in the top 3.
    # q1: the only relevant item is at rank 3.  q3: at rank 1.
    assert v["recall@1"] == [1 / 2, 0, 1]
    assert v["recall@2"] == [1 / 2, 0, 1]
    assert v["recall@3"] == [2 / 2, 1, 1]
    assert v["precision@2"] == [1 / 2, 0, 1 / 2]  # padding is a miss: q3 gets 1/2
    assert v["precision@3"] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert v["hit@2"] == [1, 0, 1]
    assert v["mrr@2"] == [1, 0, 1]
    assert v["mrr@3"] == [1, 1 / 3, 1]
    # ndcg@2, q0: DCG = 1 (rank 1); IDCG over min(|T|=2, k=2) = 2 items = 1 + 1/log2(3).
    assert v["ndcg@1"] == [1, 0, 1]
    assert v["ndcg@2"] == pytest.approx([1 / (1 + L3), 0, 1])
    # ndcg@3: q0 DCG = 1 + 1/log2(4), IDCG = 1 + 1/log2(3); q1 DCG = 0.5 over IDCG 1.
    assert v["ndcg@3"] == pytest.approx([1.5 / (1 + L3), 0.5, 1])


def test_means_and_counts():
    m = ranking_metrics(TOPK, TRUTH, ks=[2, 3])
    assert m["recall@2"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert m["hit@3"] == 1.0
    assert m["n_queries"] == 3 and m["n_skipped"] == 1
    assert set(m) == {f"{name}@{k}" for name in ("recall", "ndcg", "hit", "mrr", "precision")
                      for k in (2, 3)} | {"n_queries", "n_skipped"}


def test_sparse_truth_equals_list_truth():
    rows = np.repeat(np.arange(len(TRUTH)), [len(t) for t in TRUTH])
    cols = np.concatenate(TRUTH)
    truth = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(4, 6))
    assert ranking_metrics(TOPK, truth, [1, 3]) == ranking_metrics(TOPK, TRUTH, [1, 3])


def test_no_query_with_truth_gives_nan_not_zero():
    m = ranking_metrics(np.array([[0, 1]]), [np.array([], dtype=int)], [2])
    assert math.isnan(m["recall@2"]) and m["n_queries"] == 0 and m["n_skipped"] == 1


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="k=4 asked for but topk has only 3 columns"):
        ranking_metrics(TOPK, TRUTH, [4])
    with pytest.raises(ValueError, match="ground truth has 2 rows, topk has 4"):
        ranking_metrics(TOPK, TRUTH[:2], [1])
    with pytest.raises(ValueError, match="only 4 columns"):
        ranking_metrics(TOPK, sp.csr_matrix((4, 4)), [1])


def test_catalogue_coverage():
    topk = np.array([[0, 1], [1, 2], [1, -1]])
    # top-1 lists show {0, 1}, top-2 lists {0, 1, 2}: of 10 candidates.
    assert catalogue_coverage(topk, 10, [1, 2]) == {"coverage@1": 0.2, "coverage@2": 0.3}


def test_csr_contains():
    m = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1]]))
    got = csr_contains(m, np.array([1, 0]), np.array([[0, 1, 2, -1], [1, 2, 0, 5]]))
    assert got.tolist() == [[True, False, True, False], [True, False, False, False]]


def test_agrees_with_pyg_link_pred_metrics():
    torch = pytest.importorskip("torch")
    from torch_geometric.metrics import (
        LinkPredHitRatio,
        LinkPredMRR,
        LinkPredNDCG,
        LinkPredPrecision,
        LinkPredRecall,
    )

    rng = np.random.default_rng(0)
    n_queries, n_candidates, width = 300, 40, 20
    topk = np.stack([rng.permutation(n_candidates)[:width] for _ in range(n_queries)])
    truth = sp.random(n_queries, n_candidates, density=0.1, random_state=rng, format="csr")
    ours = ranking_metrics(topk, truth, [1, 5, 20])
    coo = truth.tocoo()
    edge_label_index = torch.tensor(np.stack([coo.row, coo.col]), dtype=torch.long)
    pred = torch.tensor(topk)
    pyg = {"recall": LinkPredRecall, "ndcg": LinkPredNDCG, "mrr": LinkPredMRR,
           "hit": LinkPredHitRatio, "precision": LinkPredPrecision}
    assert ours["n_skipped"] > 0  # empty rows exist, and PyG skips them too
    for k in (1, 5, 20):
        for name, cls in pyg.items():
            metric = cls(k=k)
            metric.update(pred, edge_label_index)
            assert ours[f"{name}@{k}"] == pytest.approx(float(metric.compute()), abs=1e-6), \
                f"{name}@{k}"
