"""Offline evaluation of the three tasks the service answers, from embeddings (score = inner
product).

- :func:`evaluate_recommend` — user → items
- :func:`evaluate_push` — item → users (precision push)
- :func:`evaluate_share` — (sharer, item) → friends (share partners)

Recommend and push rank either every candidate (``protocol="full"``, the default: the sharper
measure) or one held-out positive against ``negatives`` sampled non-interacted candidates
(``protocol="sampled"``, the protocol of GBGCN: Zhang et al., "Group-Buying Recommendation for
Social E-Commerce", ICDE 2021; metrics averaged over (query, positive) pairs; Krichene & Rendle,
"On Sampled Metrics for Item Recommendation", KDD 2020, explain why full ranking is preferred).

A target that the query already met in an excluded split (e.g. a user who viewed an item in train
and bought it in test) cannot be ranked, since seen candidates are removed from the ranking: such
targets are dropped from the ground truth and counted in ``n_seen_targets``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp

from socialrec.evaluation.metrics import (
    PerQuery,
    catalogue_coverage,
    mean_metrics,
    per_query_metrics,
    ranking_metrics,
)
from socialrec.features.graph import GraphData
from socialrec.features.ranking import top_candidates, topk_scores
from socialrec.features.shares import ShareScoreFn, share_candidates, share_groups
from socialrec.features.sparse import binary, is_binary

Target = Literal["valid", "test"]
Protocol = Literal["full", "sampled"]

#: Score-matrix entries computed at once (float32: 256 MiB), bounds memory for large catalogues.
_SCORE_BUDGET = 1 << 26
#: Rows × columns of the dense masks the negative sampler works on at once.
_SAMPLE_BUDGET = 1 << 22


def _target_and_exclusion(
    data: GraphData, target: Target
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """(target, excluded, every interaction), users × items, binary."""
    if target not in ("valid", "test"):
        raise ValueError(f"target must be 'valid' or 'test', got {target!r}")
    train, valid, test = binary(data.train), binary(data.valid), binary(data.test)
    if target == "valid":
        return valid, train, binary(train + valid + test)
    return test, binary(train + valid), binary(train + valid + test)


def _drop_seen(truth: sp.csr_matrix, exclude: sp.csr_matrix) -> tuple[sp.csr_matrix, int]:
    seen = truth.multiply(exclude).tocsr()
    seen.eliminate_zeros()
    kept = (truth - seen).tocsr()
    kept.eliminate_zeros()
    return kept, int(seen.nnz)


def _reject_sample(blocked: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct columns per row of the dense mask ``blocked``, none of them blocked.

    Sequential rejection sampling (draw uniformly, redraw what is blocked or already drawn), done
    for all pending slots at once: in each round a drawn cell is kept by exactly one of the slots
    that drew it, if it is free, and then blocked for the rest. Modifies ``blocked``.
    """
    n_rows, n_cols = blocked.shape
    free = ~blocked.ravel()
    out = np.empty(n_rows * n, dtype=np.int64)
    owner = np.empty(free.size, dtype=np.int64)
    base = np.repeat(np.arange(n_rows, dtype=np.int64) * n_cols, n)  # flat offset of each slot
    slot = np.arange(n_rows * n)
    while slot.size:
        draw = rng.integers(0, n_cols, size=slot.size)
        cell = base + draw
        ticket = np.arange(slot.size)
        ok = free[cell]
        owner[cell[ok]] = ticket[ok]  # one writer wins per cell
        ok &= owner[cell] == ticket
        out[slot[ok]] = draw[ok]
        free[cell[ok]] = False
        base, slot = base[~ok], slot[~ok]
    return out.reshape(n_rows, n)


def sample_negatives(
    seen: sp.csr_matrix, rows: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` distinct columns per entry of ``rows``, uniform among the columns ``seen[row]`` lacks.

    Returns ``(len(rows), n)`` int64, each row sorted. Rows with few unseen columns take the ``n``
    smallest of uniform random keys over them; the others are drawn by rejection, which costs
    about 8× more per negative than a key costs per column (measured), hence the switch at ``8n``.
    """
    # Evaluation passes a prepared matrix once per batch; copy only what is not one already.
    if not is_binary(seen):
        seen = binary(seen)
    rows = np.asarray(rows, dtype=np.int64)
    n_cols = seen.shape[1]
    unseen = n_cols - np.diff(seen.indptr)[rows]
    if len(rows) and unseen.min() < n:
        bad = rows[np.argmin(unseen)]
        raise ValueError(
            f"row {bad} has only {unseen.min()} candidates it has not interacted with, "
            f"fewer than negatives={n}; lower `evaluation.negatives` or use protocol='full'"
        )
    out = np.empty((len(rows), n), dtype=np.int64)
    step = max(1, _SAMPLE_BUDGET // max(n_cols, 1))
    for start in range(0, len(rows), step):
        sub = seen[rows[start: start + step]]
        blocked = np.zeros(sub.shape, dtype=bool)
        blocked[np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr)), sub.indices] = True
        by_keys = unseen[start: start + step] < 8 * n
        block = np.empty((sub.shape[0], n), dtype=np.int64)
        if by_keys.any():
            keys = rng.random((int(by_keys.sum()), n_cols), dtype=np.float32)
            keys[blocked[by_keys]] = np.inf
            block[by_keys] = np.argpartition(keys, n - 1, axis=1)[:, :n]
        if not by_keys.all():
            block[~by_keys] = _reject_sample(blocked[~by_keys], n, rng)
        out[start: start + step] = np.sort(block, axis=1)
    return out


def _full_ranking(
    query_emb: np.ndarray,
    key_emb: np.ndarray,
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: list[int],
) -> tuple[PerQuery, dict[str, float]]:
    """Per-query metrics of ranking every candidate, and the lists' catalogue coverage."""
    queries = np.flatnonzero(np.diff(truth.indptr) > 0)
    chunk = max(1, min(4096, _SCORE_BUDGET // max(1, key_emb.shape[0])))
    topk, _ = topk_scores(query_emb[queries], key_emb, max(ks), exclude=exclude[queries],
                          chunk=chunk)
    return (per_query_metrics(topk, truth[queries], ks),
            catalogue_coverage(topk, key_emb.shape[0], ks))


def _sampled_ranking(
    query_emb: np.ndarray,
    key_emb: np.ndarray,
    truth: sp.csr_matrix,
    interacted: sp.csr_matrix,
    ks: list[int],
    negatives: int,
    seed: int,
) -> PerQuery:
    """Rank each (query, positive) pair's positive among ``negatives`` sampled negatives: the
    metrics per pair.

    Ties count against the positive (a model that scores everything alike gets no credit).
    """
    rng = np.random.default_rng(seed)
    coo = truth.tocoo()
    order = np.lexsort((coo.col, coo.row))
    pair_q, pair_pos = coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)
    batch = max(1, min(4096, _SAMPLE_BUDGET // max(key_emb.shape[0], 1)))
    ranks = np.empty(len(pair_q), dtype=np.int64)
    for start in range(0, len(pair_q), batch):
        q, pos = pair_q[start: start + batch], pair_pos[start: start + batch]
        neg = sample_negatives(interacted, q, negatives, rng)
        uq, inv = np.unique(q, return_inverse=True)
        scores = query_emb[uq] @ key_emb.T
        pos_score = scores[inv, pos]
        neg_score = scores[inv[:, None], neg]
        ranks[start: start + batch] = (neg_score >= pos_score[:, None]).sum(axis=1)

    # Express each pair as a top-K list holding the positive (candidate 0) at its rank, so the
    # metrics come from the same code as full ranking.
    k_max = max(ks)
    parts: list[PerQuery] = []
    for start in range(0, len(ranks), 65536):
        r = ranks[start: start + 65536]
        topk = np.full((len(r), k_max), -1, dtype=np.int64)
        inside = r < k_max
        topk[np.flatnonzero(inside), r[inside]] = 0
        truth_pairs = sp.csr_matrix(np.ones((len(r), 1), dtype=np.int8))
        parts.append(per_query_metrics(topk, truth_pairs, ks))
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "hit", "mrr", "precision")]
    return PerQuery(
        values={n: np.concatenate([p.values[n] for p in parts] or [np.zeros(0)]) for n in names},
        queries=np.arange(len(ranks)),
        n_skipped=0,
    )


def _ranked(
    query_emb: np.ndarray,
    key_emb: np.ndarray,
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix,
    interacted: sp.csr_matrix,
    ks: Iterable[int],
    protocol: Protocol,
    negatives: int,
    seed: int,
) -> tuple[PerQuery, dict[str, float]]:
    """The metrics of every evaluated query (full: a query; sampled: a (query, positive) pair)
    and the figures about the whole evaluation (counts, coverage)."""
    ks = sorted({int(k) for k in ks})
    query_emb = np.ascontiguousarray(query_emb, dtype=np.float32)
    key_emb = np.ascontiguousarray(key_emb, dtype=np.float32)
    if query_emb.shape[0] != truth.shape[0] or key_emb.shape[0] != truth.shape[1]:
        raise ValueError(
            f"embeddings cover {query_emb.shape[0]} queries × {key_emb.shape[0]} candidates, "
            f"the data has {truth.shape[0]} × {truth.shape[1]}"
        )
    truth, n_seen = _drop_seen(truth, exclude)
    n_queries = int((np.diff(truth.indptr) > 0).sum())
    out: dict[str, float] = {}
    if protocol == "full":
        per_query, out = _full_ranking(query_emb, key_emb, truth, exclude, ks)
    elif protocol == "sampled":
        per_query = _sampled_ranking(query_emb, key_emb, truth, interacted, ks, negatives, seed)
        out["n_pairs"] = len(per_query.queries)
    else:
        raise ValueError(f"protocol must be 'full' or 'sampled', got {protocol!r}")
    out["n_queries"] = n_queries
    out["n_skipped"] = truth.shape[0] - n_queries
    out["n_seen_targets"] = n_seen
    return per_query, out


def evaluate_recommend(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    data: GraphData,
    target: Target = "test",
    ks: Iterable[int] = (10, 20),
    protocol: Protocol = "full",
    negatives: int = 999,
    seed: int = 2026,
) -> dict[str, float]:
    """User → items: rank items for every user with at least one ``target`` item.

    Items the user met in train (and in valid, when ``target="test"``) are removed from the ranking.
    Returns ``recall|ndcg|hit|mrr|precision@k``, ``coverage@k`` (full protocol: share of items in
    any top-k list), ``n_queries`` (users evaluated), ``n_skipped`` (users without targets),
    ``n_seen_targets`` and, for the sampled protocol, ``n_pairs``.
    """
    per_query, out = _task_ranking(user_emb, item_emb, data, "recommend", target, ks, protocol,
                                   negatives, seed)
    return {**mean_metrics(per_query), **out}


def evaluate_push(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    data: GraphData,
    target: Target = "test",
    ks: Iterable[int] = (10, 20),
    protocol: Protocol = "full",
    negatives: int = 999,
    seed: int = 2026,
) -> dict[str, float]:
    """Item → users (precision push): rank users for every item with at least one ``target`` user.

    Positives are the users who interacted with the item in the target split; users who interacted
    with it in train (and valid, for test) are removed from the ranking. Keys as
    :func:`evaluate_recommend`, with queries = items and ``coverage@k`` = share of users reached.
    """
    per_query, out = _task_ranking(user_emb, item_emb, data, "push", target, ks, protocol,
                                   negatives, seed)
    return {**mean_metrics(per_query), **out}


def evaluate_per_query(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    data: GraphData,
    task: Literal["recommend", "push"],
    target: Target = "test",
    ks: Iterable[int] = (10, 20),
    protocol: Protocol = "full",
    negatives: int = 999,
    seed: int = 2026,
) -> PerQuery:
    """The metrics of :func:`evaluate_recommend` or :func:`evaluate_push` query by query (pair by
    pair for the sampled protocol), before they are averaged: two models evaluated on the same
    data have the same queries, in the same order, for a paired comparison (the retrain gate)."""
    return _task_ranking(user_emb, item_emb, data, task, target, ks, protocol, negatives,
                         seed)[0]


def _task_ranking(user_emb: np.ndarray, item_emb: np.ndarray, data: GraphData,
                  task: Literal["recommend", "push"], target: Target, ks: Iterable[int],
                  protocol: Protocol, negatives: int, seed: int
                  ) -> tuple[PerQuery, dict[str, float]]:
    """:func:`_ranked` for a task: users query items (recommend) or items query users (push)."""
    truth, exclude, interacted = _target_and_exclusion(data, target)
    if task == "push":
        truth, exclude, interacted = truth.T.tocsr(), exclude.T.tocsr(), interacted.T.tocsr()
        user_emb, item_emb = item_emb, user_emb
    return _ranked(user_emb, item_emb, truth, exclude, interacted, ks, protocol, negatives, seed)


# --- share partners -------------------------------------------------------------------------------


def embedding_share_scorer(user_emb: np.ndarray, item_emb: np.ndarray) -> ShareScoreFn:
    """The default share score: candidate–item affinity, ``user_emb[c] @ item_emb[i]``."""
    user_emb = np.asarray(user_emb, dtype=np.float32)
    item_emb = np.asarray(item_emb, dtype=np.float32)

    def score(sharers: np.ndarray, items: np.ndarray,
              candidates: list[np.ndarray]) -> list[np.ndarray]:
        # One small matvec per group keeps the gathered rows in cache; a flat gather of every
        # candidate's row was 25x slower on 2-hop candidate sets (hundreds per group).
        return [user_emb[c] @ item_emb[i] for i, c in zip(items, candidates, strict=True)]

    return score


def _as_csr(rows: list[np.ndarray], n_cols: int) -> sp.csr_matrix:
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    cols = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr),
                         shape=(len(rows), n_cols))


def evaluate_share(
    score_fn: ShareScoreFn,
    data: GraphData,
    target: Target = "test",
    ks: Iterable[int] = (10, 20),
    hops: int = 1,
    batch: int = 4096,
) -> dict[str, float]:
    """Share partners: for each (sharer, item) of the target split's share records, rank the
    sharer's friends (``hops=2``: and friends of friends) by ``score_fn``; the truth is every
    recipient of that (sharer, item).

    Recipients outside the candidate set count as misses. Returns the ranking metrics, ``coverage``
    (share of true recipients inside the candidate set at all), ``mean_candidates``, ``n_queries``,
    ``n_skipped``, ``n_dropped_records`` (unknown ids) and, when any recipient joined, the same
    metrics against joined recipients only, prefixed ``joined_``.
    """
    if target not in ("valid", "test"):
        raise ValueError(f"target must be 'valid' or 'test', got {target!r}")
    ks = sorted({int(k) for k in ks})
    shares = data.shares_valid if target == "valid" else data.shares_test
    groups = share_groups(shares)
    n_dropped = int(len(shares) - (
        (shares["sharer"] >= 0) & (shares["item"] >= 0) & (shares["recipient"] >= 0)).sum())
    truths = {"": list(groups["recipients"])}
    if any(len(j) for j in groups["joined"]):
        truths["joined_"] = list(groups["joined"])
    truth_csr = {prefix: _as_csr(t, data.n_users) for prefix, t in truths.items()}

    sharers = groups["sharer"].to_numpy(dtype=np.int64)
    items = groups["item"].to_numpy(dtype=np.int64)
    social = binary(data.social)
    topk = np.full((len(groups), max(ks)), -1, dtype=np.int64)
    covered = dict.fromkeys(truths, 0.0)
    n_candidates = 0
    for start in range(0, len(groups), batch):
        stop = min(start + batch, len(groups))
        cands = share_candidates(social, sharers[start:stop], hops)
        scores = score_fn(sharers[start:stop], items[start:stop], cands)
        lengths = np.array([len(c) for c in cands], dtype=np.int64)
        if len(scores) != len(cands) or any(
                len(sc) != n for sc, n in zip(scores, lengths, strict=True)):
            raise ValueError("score_fn must return one score per candidate, for every group")
        topk[start:stop] = top_candidates(cands, scores, max(ks))
        reachable = _as_csr(cands, data.n_users)
        for prefix, m in truth_csr.items():
            covered[prefix] += m[start:stop].multiply(reachable).sum()
        n_candidates += int(lengths.sum())

    out: dict[str, float] = {}
    for prefix, truth in truths.items():
        metrics = ranking_metrics(topk, truth, ks)
        n_true = truth_csr[prefix].nnz
        metrics["coverage"] = float(covered[prefix] / n_true) if n_true else float("nan")
        out.update({prefix + name: value for name, value in metrics.items()})
    out["mean_candidates"] = n_candidates / len(groups) if len(groups) else 0.0
    out["n_dropped_records"] = n_dropped
    return out


def evaluate_all(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    data: GraphData,
    target: Target = "test",
    ks: Sequence[int] = (10, 20),
    protocol: Protocol = "full",
    negatives: int = 999,
    seed: int = 2026,
    hops: int = 1,
) -> dict[str, dict[str, float]]:
    """All three tasks with the embedding scorers: ``{"recommend": {...}, "push": {...},
    "share": {...}}`` (``share`` only when the target split has share records)."""
    out = {
        "recommend": evaluate_recommend(user_emb, item_emb, data, target, ks, protocol,
                                        negatives, seed),
        "push": evaluate_push(user_emb, item_emb, data, target, ks, protocol, negatives, seed),
    }
    shares = data.shares_valid if target == "valid" else data.shares_test
    if len(shares):
        out["share"] = evaluate_share(embedding_share_scorer(user_emb, item_emb), data, target,
                                      ks, hops)
    return out
