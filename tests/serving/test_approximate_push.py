"""Pushes from an IVF-PQ user index (the default above index.exact_threshold): exactly k eligible
users at every size, the exact fallback when the index comes back short, and per-call search
parameters that concurrent requests cannot race on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import pytest

from socialrec.models.index import IndexConfig
from socialrec.serving.retrieval import EXACT_SHARE, push_targets, search, select_users
from socialrec.serving.rules import ExcludeBuyers, OptOut, Rule
from socialrec.serving.schemas import PushRules
from tests.support.bundles import random_bundle


class KeepEvery(Rule):
    """Removes every user whose id is not a multiple of ``step`` and records who it judged."""

    name = "keep_every"

    def __init__(self, step: int) -> None:
        self.step = step
        self.asked: list[int] = []

    def blocked(self, users: np.ndarray) -> np.ndarray:
        self.asked.extend(users.tolist())
        return users % self.step != 0


@pytest.fixture(scope="module")
def bundle():
    """4000 users (threshold 1000: an IVF-PQ user index, 16 of 253 cells scanned, 8 candidates
    re-ranked per result), 60 items."""
    return random_bundle(n_users=4000, n_items=60, dim=16, seed=21, shares=False,
                         index=IndexConfig(exact_threshold=1000, pq_bytes=8, ivf_nprobe=16,
                                           refine_factor=8))


def exact_eligible(bundle, item, rules):
    """Every eligible user, best first, by exact score."""
    order = np.argsort(-(bundle.user_emb @ bundle.item_emb[item]), kind="stable")
    ok = np.ones(len(order), dtype=bool)
    for rule in rules:
        ok &= ~rule.blocked(order)
    return order[ok]


def test_the_index_is_ivfpq_and_pushes_come_from_it(bundle):
    assert bundle.meta["index"]["user"]["type"] == "IndexRefine"
    for item in (0, 17, 42):
        rules = [OptOut(bundle), ExcludeBuyers(bundle, item)]
        chosen = select_users(bundle, item, 50, rules)
        assert chosen.strategy == "faiss_ivfpq"
        assert len(chosen.users) == 50 and len(set(chosen.users.tolist())) == 50
        assert not any(rule.blocked(chosen.users).any() for rule in rules)
        best = exact_eligible(bundle, item, rules)[:50]
        assert len(np.intersect1d(chosen.users, best)) >= 45  # approximate, but close


@pytest.mark.parametrize("share", [0.05, 0.5, 1.0])
def test_campaign_sized_pushes_return_exactly_k_eligible_users(bundle, share):
    item = 9
    rules = PushRules(exclude_buyers=True, respect_opt_out=True)
    eligible = exact_eligible(bundle, item, [OptOut(bundle), ExcludeBuyers(bundle, item)])
    k = max(1, int(share * len(eligible)))
    out = push_targets(bundle, f"i{item}", k, rules)
    assert len(out.user_ids) == k and len(set(out.user_ids)) == k
    assert set(out.user_ids) <= set(bundle.users.to_ids(eligible))
    # asking for every user gives every eligible one, best first
    every = push_targets(bundle, f"i{item}", len(bundle.users), rules)
    assert every.user_ids == bundle.users.to_ids(eligible) and every.strategy == "exact"


def test_rules_removing_95_percent_still_return_k_judging_each_user_once(bundle):
    for k in (5, 40, 150):
        rule = KeepEvery(20)
        chosen = select_users(bundle, 3, k, [rule])
        assert len(chosen.users) == k and np.all(chosen.users % 20 == 0)
        assert len(rule.asked) == len(set(rule.asked))


def test_a_short_approximate_fetch_falls_back_to_exact_scoring(bundle):
    """An index that returns fewer users than asked (here: all but 100 users removed from its
    inverted lists) still yields exactly k eligible users: the exact pass finds the rest."""
    short = faiss.clone_index(bundle.user_index)
    ivf = faiss.downcast_index(short.base_index)
    gone = np.flatnonzero(np.arange(len(bundle.users)) % 40 != 0).astype(np.int64)
    ivf.remove_ids(faiss.IDSelectorBatch(gone))
    sparse = type(bundle)(**{**bundle.__dict__, "user_index": short})
    assert len(search(short, bundle.item_emb[7], 300)[0]) < 300  # it does come back short
    rules = [OptOut(bundle), ExcludeBuyers(bundle, 7)]
    chosen = select_users(sparse, 7, 300, rules)
    assert chosen.strategy == "exact" and EXACT_SHARE * len(bundle.users) > 2 * 300
    assert chosen.users.tolist() == exact_eligible(bundle, 7, rules)[:300].tolist()


def test_concurrent_searches_of_different_sizes_do_not_race(bundle):
    index = bundle.user_index
    nprobe = faiss.downcast_index(index.base_index).nprobe
    queries = [(int(i), k) for i in range(20) for k in (10, 2000)]  # 2000: more cells per call
    alone = [search(index, bundle.item_emb[i], k) for i, k in queries]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda q: search(index, bundle.item_emb[q[0]], q[1]),
                                 queries * 3))
    for (ids, scores), (want_ids, want_scores) in zip(together, alone * 3, strict=True):
        assert np.array_equal(ids, want_ids) and np.allclose(scores, want_scores)
    assert faiss.downcast_index(index.base_index).nprobe == nprobe  # the index's own setting
