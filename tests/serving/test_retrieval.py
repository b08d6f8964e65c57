"""Push retrieval with rules against a brute-force oracle; recommendation retrieval."""

from __future__ import annotations

import numpy as np
import pytest

from socialrec.serving.retrieval import (
    EXACT_SHARE,
    make_rules,
    push_targets,
    recommend_items,
    select_users,
)
from socialrec.serving.rules import ExcludeBuyers, OptOut, Rule
from socialrec.serving.schemas import PushRules
from tests.support.bundles import random_bundle


class KeepEvery(Rule):
    """Removes every user whose id is not a multiple of ``step`` and counts its calls."""

    name = "keep_every"

    def __init__(self, step: int) -> None:
        self.step = step
        self.asked: list[int] = []

    def blocked(self, users: np.ndarray) -> np.ndarray:
        self.asked.extend(users.tolist())
        return users % self.step != 0


@pytest.fixture(scope="module")
def flat_bundle():
    """Exact (flat) indexes: results must equal the oracle exactly."""
    return random_bundle(n_users=2000, n_items=50, dim=16, seed=11)


def oracle(bundle, item, k, rules):
    """Top ``k`` eligible users by exact score, and per rule the users it removed above the
    k-th chosen one (rules applied in order)."""
    scores = bundle.user_emb @ bundle.item_emb[item]
    order = np.argsort(-scores, kind="stable")
    verdict = np.zeros(len(order), dtype=int)
    for i, rule in enumerate(rules):
        open_ = verdict == 0
        verdict[open_] = np.where(rule.blocked(order[open_]), i + 1, 0)
    eligible = np.flatnonzero(verdict == 0)
    cut = eligible[k - 1] + 1 if len(eligible) >= k else len(order)
    removed = {r.name: int(np.sum(verdict[:cut] == i + 1)) for i, r in enumerate(rules)}
    return order[eligible[:k]], removed


@pytest.mark.parametrize("k", [1, 10, 150, 900])
def test_matches_the_oracle_with_rules(flat_bundle, k):
    b = flat_bundle
    for item in (0, 7, 31):
        rules = [OptOut(b), ExcludeBuyers(b, item)]
        chosen = select_users(b, item, k, rules)
        want, removed = oracle(b, item, k, rules)
        assert chosen.users.tolist() == want.tolist()
        assert chosen.removed == removed
        assert np.all(np.diff(chosen.scores) <= 0)
        expected = "exact" if 2 * k >= EXACT_SHARE * len(b.users) else "faiss_flat"
        assert chosen.strategy == expected


def test_rules_removing_95_percent_still_return_k(flat_bundle):
    b = flat_bundle
    eligible = np.arange(0, len(b.users), 20)  # 100 of 2000 users pass
    for k in (5, 60, 100):
        rule = KeepEvery(20)
        chosen = select_users(b, 3, k, [rule])
        want, removed = oracle(b, 3, k, [KeepEvery(20)])
        assert len(chosen.users) == k
        assert set(chosen.users.tolist()) <= set(eligible.tolist())
        assert chosen.users.tolist() == want.tolist()
        assert chosen.removed == removed
        assert len(rule.asked) == len(set(rule.asked))  # nobody judged twice
        dropped, dropped_scores = chosen.dropped["keep_every"]
        assert len(dropped) == removed["keep_every"] and not np.isin(dropped, eligible).any()
        assert np.all(dropped_scores >= chosen.scores[-1])  # all ranked above the last chosen
    # more than exist: every eligible user, best first
    chosen = select_users(b, 3, 150, [KeepEvery(20)])
    assert sorted(chosen.users.tolist()) == eligible.tolist()
    assert chosen.removed["keep_every"] == len(b.users) - len(eligible)


def test_hnsw_bundle_returns_eligible_users_with_high_recall(bundle):
    item = 5
    rules = [OptOut(bundle), ExcludeBuyers(bundle, item)]
    chosen = select_users(bundle, item, 20, rules)
    assert chosen.strategy == "faiss_hnsw"
    want, _ = oracle(bundle, item, 20, rules)
    assert len(set(chosen.users.tolist()) & set(want.tolist())) >= 18
    assert not OptOut(bundle).blocked(chosen.users).any()
    assert not ExcludeBuyers(bundle, item).blocked(chosen.users).any()


def test_push_targets_is_the_shared_entry_point(flat_bundle):
    b = flat_bundle
    out = push_targets(b, "i4", 25, PushRules())
    user_ids, _, removed, strategy = out
    want, _ = oracle(b, 4, 25, [OptOut(b), ExcludeBuyers(b, 4)])
    assert user_ids == b.users.to_ids(want)
    assert set(removed) == {"opt_out", "exclude_buyers"} and strategy == "faiss_flat"
    nothing = push_targets(b, "i4", 25, PushRules(exclude_buyers=False, respect_opt_out=False))
    assert nothing.removed == {}
    with pytest.raises(KeyError, match="nope"):
        push_targets(b, "nope", 5)
    with pytest.raises(ValueError, match="frequency_cap"):
        make_rules(b, 4, PushRules(frequency_cap={"max_pushes": 1, "window_hours": 1}), None)


def test_whole_population_push(flat_bundle):
    b = flat_bundle
    out = push_targets(b, "i9", len(b.users), PushRules(exclude_buyers=True, respect_opt_out=True))
    eligible = (~OptOut(b).blocked(np.arange(len(b.users)))
                & ~ExcludeBuyers(b, 9).blocked(np.arange(len(b.users))))
    assert len(out.user_ids) == eligible.sum()
    assert out.strategy == "exact"
    assert sum(out.removed.values()) + len(out.user_ids) == len(b.users)


def test_recommend_excludes_seen_and_is_sorted(bundle):
    user = int(np.argmax(bundle.seen.getnnz(axis=1)))
    seen = set(bundle.seen[user].indices.tolist())
    items, scores, strategy = recommend_items(bundle, user, 15, exclude_seen=True)
    assert len(items) == 15 and not seen & set(items.tolist())
    assert np.all(np.diff(scores) <= 0)
    exact = np.argsort(-(bundle.item_emb @ bundle.user_emb[user]))
    assert items.tolist() == [i for i in exact.tolist() if i not in seen][:15]
    with_seen, _, _ = recommend_items(bundle, user, 15, exclude_seen=False)
    assert with_seen.tolist() == exact[:15].tolist()
    assert strategy in ("faiss_hnsw", "exact")
