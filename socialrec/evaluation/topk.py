"""Exact top-k by inner product in chunks, with exclusions (shared by evaluation and models)."""

from __future__ import annotations

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
    Rows with fewer than ``k`` admissible keys are padded with index -1 and score -inf.
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
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        sc = np.take_along_axis(part_scores, order, axis=1)
        idx[~np.isfinite(sc)] = -1
        out_idx[start:stop, :k_eff] = idx
        out_score[start:stop, :k_eff] = sc
    return out_idx, out_score
