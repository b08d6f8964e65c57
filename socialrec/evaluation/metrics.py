"""Top-k ranking metrics: Recall, NDCG, Hit, MRR and Precision @k, plus catalogue coverage.

Definitions (binary relevance; ``rel_j`` = 1 when the prediction at rank ``j`` (1-based) is
relevant, ``T`` = the query's ground truth):

- recall@k = Σ_{j≤k} rel_j / |T|
- precision@k = Σ_{j≤k} rel_j / k (padding counts as a miss, so a short list is not rewarded)
- hit@k = 1 if any rel_j = 1 for j ≤ k
- mrr@k = 1 / (rank of the first relevant prediction), 0 if none within k
- ndcg@k = DCG / IDCG with DCG = Σ_{j≤k} rel_j / log2(j + 1) and IDCG the DCG of min(|T|, k)
  relevant items at the top (Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR
  techniques", TOIS 2002)

These are the definitions of PyTorch Geometric's ``torch_geometric.metrics.LinkPred*`` (PyG 2.8);
we compute them with numpy so evaluation needs no torch and can handle ``-1`` padding (which PyG's
index arithmetic cannot), and a test checks the two agree. Queries whose ground truth is empty are
skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

METRICS: tuple[str, ...] = ("recall", "ndcg", "hit", "mrr", "precision")

Truth = sp.csr_matrix | sp.csr_array | Sequence[np.ndarray]


def csr_contains(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether ``m[rows[i], cols[i, j]]`` is stored (and nonzero), for a 2-d ``cols``.

    ``rows`` has one entry per row of ``cols``; negative entries of ``cols`` are never contained.
    Vectorised as a binary search of flat keys ``row * n_cols + col``, which a canonical CSR matrix
    holds in sorted order.
    """
    m = sp.csr_matrix(m)
    m.eliminate_zeros()
    m.sum_duplicates()  # canonical: sorted indices, no duplicates
    n_cols = np.int64(m.shape[1])
    stored_rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    keys = stored_rows * n_cols + m.indices.astype(np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    valid = (cols >= 0) & (cols < n_cols)
    query = np.asarray(rows, dtype=np.int64)[:, None] * n_cols + np.where(valid, cols, 0)
    if keys.size == 0:
        return np.zeros(cols.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return valid & (keys[pos] == query)


def _truth_csr(truth: Truth, n_rows: int, topk: np.ndarray) -> sp.csr_matrix:
    if isinstance(truth, sp.csr_matrix | sp.csr_array):
        m = sp.csr_matrix(truth)
        if m.shape[0] != n_rows:
            raise ValueError(f"ground truth has {m.shape[0]} rows, topk has {n_rows}")
        if topk.size and topk.max() >= m.shape[1]:
            raise ValueError(
                f"topk holds candidate index {int(topk.max())}, ground truth has only "
                f"{m.shape[1]} columns"
            )
        return m
    if len(truth) != n_rows:
        raise ValueError(f"ground truth has {len(truth)} rows, topk has {n_rows}")
    arrays = [np.unique(np.asarray(t, dtype=np.int64)) for t in truth]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    cols = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    if (cols < 0).any():
        raise ValueError("ground truth holds negative candidate indices")
    n_cols = int(max(cols.max(initial=-1), topk.max(initial=-1))) + 1
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sp.csr_matrix((np.ones(len(cols), dtype=np.int8), cols, indptr),
                         shape=(n_rows, max(n_cols, 1)))


def _check_ks(ks: Iterable[int], width: int) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if ks[-1] > width:
        raise ValueError(f"k={ks[-1]} asked for but topk has only {width} columns")
    return ks


@dataclass
class PerQuery:
    """Metric values of every evaluated query (``queries`` are their row numbers in ``topk``)."""

    values: dict[str, np.ndarray]  # "recall@10" -> one value per evaluated query
    queries: np.ndarray
    n_skipped: int  # queries with empty ground truth


def per_query_metrics(topk: np.ndarray, truth: Truth, ks: Iterable[int]) -> PerQuery:
    """Per-query metrics of ``topk`` (queries × K candidate indices, best first, ``-1`` padding).

    ``truth`` is a queries × candidates sparse matrix (nonzero = relevant) or one array of relevant
    candidate indices per query. A row of ``topk`` must not repeat a candidate.
    """
    topk = np.asarray(topk, dtype=np.int64)
    if topk.ndim != 2:
        raise ValueError(f"topk must be 2-d (queries × K), got shape {topk.shape}")
    ks = _check_ks(ks, topk.shape[1])
    m = _truth_csr(truth, topk.shape[0], topk)
    m.eliminate_zeros()
    m.sum_duplicates()
    n_true = np.diff(m.indptr)
    queries = np.flatnonzero(n_true > 0)
    rel = csr_contains(m[queries], np.arange(len(queries)), topk[queries, : ks[-1]])
    n_true = n_true[queries].astype(np.float64)

    ranks = np.arange(1, ks[-1] + 1, dtype=np.float64)
    gain = rel / np.log2(ranks + 1)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(ranks + 1))])
    first_rr = np.where(rel, 1.0 / ranks, 0.0)
    values: dict[str, np.ndarray] = {}
    for k in ks:
        hits = rel[:, :k].sum(axis=1)
        values[f"recall@{k}"] = hits / n_true
        values[f"ndcg@{k}"] = gain[:, :k].sum(axis=1) / ideal[np.minimum(n_true, k).astype(int)]
        values[f"hit@{k}"] = (hits > 0).astype(np.float64)
        values[f"mrr@{k}"] = first_rr[:, :k].max(axis=1, initial=0.0)
        values[f"precision@{k}"] = hits / k
    return PerQuery(values=values, queries=queries, n_skipped=int(topk.shape[0] - len(queries)))


def mean_metrics(per_query: PerQuery) -> dict[str, float]:
    """Means over evaluated queries (NaN when none), plus ``n_queries`` and ``n_skipped``."""
    n = len(per_query.queries)
    out: dict[str, float] = {
        name: float(v.mean()) if n else float("nan") for name, v in per_query.values.items()
    }
    out["n_queries"] = n
    out["n_skipped"] = per_query.n_skipped
    return out


def ranking_metrics(topk: np.ndarray, truth: Truth, ks: Iterable[int]) -> dict[str, float]:
    """Mean ``recall|ndcg|hit|mrr|precision@k`` over queries with non-empty ground truth.

    Returns e.g. ``{"recall@10": 0.12, "ndcg@10": 0.08, ..., "n_queries": 900, "n_skipped": 100}``.
    """
    return mean_metrics(per_query_metrics(topk, truth, ks))


def catalogue_coverage(topk: np.ndarray, n_candidates: int, ks: Iterable[int]) -> dict[str, float]:
    """``coverage@k``: share of the ``n_candidates`` that appear in at least one top-k list."""
    topk = np.asarray(topk, dtype=np.int64)
    out = {}
    for k in _check_ks(ks, topk.shape[1]):
        shown = np.unique(topk[:, :k])
        out[f"coverage@{k}"] = float((shown >= 0).sum() / n_candidates) if n_candidates else 0.0
    return out
