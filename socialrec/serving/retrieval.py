"""Retrieval from a bundle's FAISS indexes, with business rules for pushes.

Push (item → users): FAISS returns the best-scoring users for the item, the rules remove some
(buyers, opt-outs, capped, held out), so one search of ``k`` is not enough. :func:`select_users`
over-fetches (``2k``), applies the rules to the candidates not judged yet, and grows the fetch
geometrically (x4) until ``k`` users pass; once a fetch would cover a large share of the users it
scores every user exactly instead (one matrix-vector product and a partial sort: features/ranking.py
``topk_one``, the top-k of offline evaluation), which both answers campaign-sized pushes fast and
guarantees ``k`` users whenever ``k`` eligible users exist. Every rule sees each user at most once
per request.

Recommend (user → items): one search of ``k`` plus the user's seen items, which are then removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import faiss
import numpy as np

from socialrec.features.ranking import topk_one
from socialrec.models.bundle import ModelBundle
from socialrec.models.index import kind, search_params
from socialrec.serving.rules import (
    CampaignHoldout,
    ExcludeBuyers,
    FrequencyCap,
    OptOut,
    PushCounts,
    Rule,
    Unsubscribes,
)
from socialrec.serving.schemas import PushRules

#: First fetch is this multiple of k.
OVERFETCH = 2
#: Each further fetch is this multiple of the previous one.
GROWTH = 4
#: A fetch of at least this share of all users is done exactly over all users instead.
EXACT_SHARE = 0.2


class Selected(NamedTuple):
    users: np.ndarray  # internal ids, best first
    scores: np.ndarray
    removed: dict[str, int]
    strategy: str
    #: rule name -> (users, scores) it removed above the last selected user, best first
    dropped: dict[str, tuple[np.ndarray, np.ndarray]]


class PushTargets(NamedTuple):
    user_ids: list[str]
    scores: np.ndarray
    removed: dict[str, int]
    strategy: str


def index_strategy(index: faiss.Index | None) -> str:
    """``faiss_flat``, ``faiss_hnsw`` or ``faiss_ivfpq`` (``exact`` without an index)."""
    return "exact" if index is None else f"faiss_{kind(index)}"


def search(index: faiss.Index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` rows of ``index`` for one query: ``(ids, scores)``, padding (-1) removed (an
    approximate index may return fewer than ``k``: callers fall back to exact scoring)."""
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    # per call (HNSW's beam, IVF's cells widened for big fetches): no race between requests
    scores, ids = index.search(q, k, params=search_params(index, k))
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]


class _Judge:
    """Applies the rules to users not judged yet and remembers each verdict (0 = eligible,
    i + 1 = removed by rule i), so that growing fetches never ask a rule twice."""

    def __init__(self, rules: Sequence[Rule], n_users: int) -> None:
        self.rules = list(rules)
        self.verdict = np.full(n_users, -1, dtype=np.int16)

    def judge(self, users: np.ndarray) -> None:
        todo = users[self.verdict[users] < 0]
        self.verdict[todo] = 0
        for i, rule in enumerate(self.rules):
            if len(todo) == 0:
                break
            out = rule.blocked(todo)
            self.verdict[todo[out]] = i + 1
            todo = todo[~out]

    def take(self, order: np.ndarray, scores: np.ndarray, k: int) -> Selected | None:
        """The first ``k`` eligible of ``order`` with the removal counts above the last one,
        or None when ``order`` holds fewer than ``k`` eligible users."""
        verdict = self.verdict[order]
        eligible = np.flatnonzero(verdict == 0)
        if len(eligible) < k:
            return None
        cut = eligible[k - 1] + 1 if k > 0 else 0
        return self._selected(order[:cut], scores[:cut], verdict[:cut])

    def take_all(self, order: np.ndarray, scores: np.ndarray) -> Selected:
        return self._selected(order, scores, self.verdict[order])

    def _selected(self, order: np.ndarray, scores: np.ndarray, verdict: np.ndarray) -> Selected:
        dropped = {rule.name: (order[verdict == i + 1], scores[verdict == i + 1])
                   for i, rule in enumerate(self.rules)}
        removed = {name: len(users) for name, (users, _) in dropped.items()}
        pick = verdict == 0
        return Selected(order[pick], scores[pick], removed, "", dropped)


def select_users(bundle: ModelBundle, item: int | None, k: int, rules: Sequence[Rule],
                 query: np.ndarray | None = None) -> Selected:
    """The ``k`` best users for ``item`` (internal id) that pass every rule; for a product the
    model does not know (``item`` None), for its vector ``query`` (serving/campaigns.py).

    Fewer than ``k`` only when fewer than ``k`` users are eligible at all.
    """
    n = len(bundle.user_emb)
    k = min(k, n)
    if query is None:
        if item is None:
            raise ValueError("select_users: give an item or a query vector")
        query = bundle.item_emb[item]
    judge = _Judge(rules, n)
    index = bundle.user_index
    fetch = min(n, OVERFETCH * k)
    if index is not None:
        while fetch < EXACT_SHARE * n:
            users, scores = search(index, query, fetch)
            judge.judge(users)
            found = judge.take(users, scores, k)
            if found is not None:
                return found._replace(strategy=index_strategy(index))
            fetch *= GROWTH
    while True:
        users, scores = topk_one(query, bundle.user_emb, fetch)
        judge.judge(users)
        found = judge.take(users, scores, k)
        if found is not None:
            return found._replace(strategy="exact")
        if fetch >= n:
            return judge.take_all(users, scores)._replace(strategy="exact")
        fetch = min(n, fetch * GROWTH)


def select_scored(scores: np.ndarray, k: int, rules: Sequence[Rule]) -> Selected:
    """The ``k`` best users by ``scores`` (one per user, computed by the caller: a campaign over
    several products scores each user by their best, serving/campaigns.py) that pass every
    rule: :func:`select_users`' exact path, equal scores in user order."""
    n = len(scores)
    k = min(k, n)
    judge = _Judge(rules, n)
    fetch = min(n, OVERFETCH * k)
    while True:
        users = np.argpartition(-scores, fetch - 1)[:fetch] if 0 < fetch < n else np.arange(n)
        users = users[np.lexsort((users, -scores[users]))]
        judge.judge(users)
        found = judge.take(users, scores[users], k)
        if found is not None:
            return found._replace(strategy="exact")
        if fetch >= n:
            return judge.take_all(users, scores[users])._replace(strategy="exact")
        fetch = min(n, fetch * GROWTH)


def make_rules(bundle: ModelBundle, item: int | None, settings: PushRules,
               store: PushCounts | None, holdout: CampaignHoldout | None = None,
               now: datetime | None = None, buyers: np.ndarray | None = None) -> list[Rule]:
    """The rules ``settings`` asks for, cheapest first (the frequency cap reads the store, so it
    only sees the users every other rule let through). With a store, the opt-out rule also
    honours ``unsubscribe`` feedback. ``item`` is None for a push the bundle holds no product
    for (a new product, a campaign over several): ``buyers`` then says whom to exclude."""
    rules: list[Rule] = []
    if settings.respect_opt_out:
        rules.append(OptOut(bundle, store if isinstance(store, Unsubscribes) else None))
    if settings.exclude_buyers:
        rules.append(ExcludeBuyers(bundle, item, buyers))
    if settings.holdout and holdout is not None:
        rules.append(holdout)
    if settings.frequency_cap is not None:
        if store is None:
            raise ValueError("rules.frequency_cap needs an event store (none given)")
        cap = settings.frequency_cap
        rules.append(FrequencyCap(bundle, store, cap.max_pushes, cap.window_hours, now))
    return rules


def push_targets(bundle: ModelBundle, item_id: str, k: int, rules: PushRules | None = None,
                 store: PushCounts | None = None, holdout: CampaignHoldout | None = None
                 ) -> PushTargets:
    """The ``k`` users to push ``item_id`` to under ``rules``: ``(user_ids, scores, removed,
    strategy)``. Shared by the service and the ``socialrec push`` command.

    ``store`` (an :class:`~socialrec.features.events.EventStore`) is needed for a frequency cap;
    ``holdout`` is the experiment's :class:`CampaignHoldout` (none: nobody is held out).
    Raises ``KeyError`` for an item the bundle does not know and ``ValueError`` for ``k < 1``.
    """
    item = bundle.items.get(item_id)
    if item is None:
        raise KeyError(f"item_id {item_id!r} is not in the model's item map")
    if k < 1:
        raise ValueError(f"k: expected >= 1, got {k}")
    chosen = select_users(bundle, item, k,
                          make_rules(bundle, item, rules or PushRules(), store, holdout))
    return PushTargets(bundle.users.to_ids(chosen.users), chosen.scores, chosen.removed,
                       chosen.strategy)


def recommend_items(bundle: ModelBundle, user: int | None, k: int, exclude_seen: bool,
                    query: np.ndarray | None = None, seen: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, str]:
    """Top ``k`` items for ``user`` (internal id): ``(items, scores, strategy)``; for a user the
    model has no vector for (``user`` None), for their folded-in ``query`` and the items they
    interacted with, ``seen`` (serving/fallback.py)."""
    n_items = len(bundle.item_emb)
    if query is None or seen is None:
        if user is None:
            raise ValueError("recommend_items: give a user or a query vector and its seen items")
        query = bundle.user_emb[user] if query is None else query
        seen = (bundle.seen.indices[bundle.seen.indptr[user]:bundle.seen.indptr[user + 1]]
                if seen is None else seen)
    k = min(k, n_items - (len(seen) if exclude_seen else 0))
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), "exact"
    fetch = min(n_items, k + (len(seen) if exclude_seen else 0))
    index = bundle.item_index
    strategy = index_strategy(index)
    if index is not None and fetch < EXACT_SHARE * n_items:
        items, scores = search(index, query, fetch)
    else:
        items, scores = topk_one(query, bundle.item_emb, fetch)
        strategy = "exact"
    if exclude_seen and len(seen):
        keep = ~np.isin(items, seen)
        items, scores = items[keep], scores[keep]
    if len(items) < k:  # an approximate index came back short: answer exactly
        items, scores = topk_one(query, bundle.item_emb, fetch)
        if exclude_seen and len(seen):
            keep = ~np.isin(items, seen)
            items, scores = items[keep], scores[keep]
        strategy = "exact"
    return items[:k], scores[:k], strategy
