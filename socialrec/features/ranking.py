"""Ranking primitives shared by offline evaluation, models and serving, so that what is evaluated
is ranked exactly as what is served.

- :func:`topk_scores` / :func:`topk_one`: the exact top-k keys by inner product (recommend,
  push, the service's exact scoring);
- :func:`rank_candidates` / :func:`top_candidates`: a group's candidates (a sharer's friends) by
  score, ties broken by candidate id (share partners).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def topk_scores(
    query: np.ndarray,
    keys: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    candidates: np.ndarray | None = None,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``keys`` and scores of the ``k`` best keys for every query row, best first.

    ``exclude`` is a (queries × keys) sparse mask of pairs to skip; ``candidates`` restricts keys.
    Rows with fewer than ``k`` admissible keys are padded with index -1 and score -inf. When
    ``k`` covers every key, equal scores keep key order.
    """
    query = np.asarray(query, dtype=np.float32)
    keys = np.asarray(keys, dtype=np.float32)
    n_keys = keys.shape[0]
    k_eff = min(k, n_keys)
    out_idx = np.full((len(query), k), -1, dtype=np.int64)
    out_score = np.full((len(query), k), -np.inf, dtype=np.float32)
    allowed = None
    if candidates is not None:
        allowed = np.zeros(n_keys, dtype=bool)
        allowed[np.asarray(candidates)] = True
    for start in range(0, len(query), chunk):
        stop = min(start + chunk, len(query))
        scores = query[start:stop] @ keys.T
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        if exclude is not None:
            block = exclude[start:stop].tocoo()
            scores[block.row, block.col] = -np.inf
        if k_eff < n_keys:
            part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        else:  # every key: nothing to partition, and the stable sort keeps ties in key order
            part = np.broadcast_to(np.arange(n_keys), scores.shape)
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        sc = np.take_along_axis(part_scores, order, axis=1)
        idx[~np.isfinite(sc)] = -1
        out_idx[start:stop, :k_eff] = idx
        out_score[start:stop, :k_eff] = sc
    return out_idx, out_score


def topk_one(query: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk_scores` of one query vector: ``(indices, scores)`` of its ``k`` best keys,
    best first, padding left out (the service's exact scoring of one item or one user)."""
    idx, scores = topk_scores(np.asarray(query).reshape(1, -1), keys, k)
    keep = idx[0] >= 0
    return idx[0][keep], scores[0][keep]


def rank_candidates(candidates: np.ndarray, scores: np.ndarray, *then: np.ndarray) -> np.ndarray:
    """Positions in ``candidates`` from best to worst: by ``scores`` descending, equal scores by
    each of ``then`` descending in turn, and what is still tied by candidate id ascending."""
    keys = [np.asarray(candidates)] + [-np.asarray(s) for s in reversed((scores, *then))]
    return np.lexsort(keys)


def top_candidates(candidates: Sequence[np.ndarray], scores: Sequence[np.ndarray], k: int
                   ) -> np.ndarray:
    """The ``k`` best candidates of every group by :func:`rank_candidates`, as a ``(groups, k)``
    array of candidate ids, rows of fewer candidates padded with -1."""
    topk = np.full((len(candidates), k), -1, dtype=np.int64)
    for row, (c, s) in enumerate(zip(candidates, scores, strict=True)):
        best = np.asarray(c)[rank_candidates(c, s)[:k]]
        topk[row, : len(best)] = best
    return topk
