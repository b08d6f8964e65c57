"""Share-partner baselines (models/share_baselines.py) on the loyal-friend world
(tests/support/share_worlds.py)."""

from __future__ import annotations

import numpy as np
import pytest

from socialrec.evaluation.offline import evaluate_share
from socialrec.features.shares import share_candidates
from socialrec.models.share_baselines import (
    affinity_scorer,
    friend_popularity_scorer,
    random_scorer,
    tie_strength_scorer,
)
from socialrec.models.share_features import ShareContext
from tests.support.share_worlds import DAY, N_SHARERS, loyal_world, random_embeddings


def test_baselines_score_every_candidate():
    data = loyal_world()
    user_emb, item_emb = random_embeddings(data)
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    sharers = np.arange(3)
    cands = share_candidates(ctx.social, sharers)
    for fn in (tie_strength_scorer(ctx), friend_popularity_scorer(ctx), affinity_scorer(ctx),
               random_scorer(1)):
        scores = fn(sharers, np.zeros(3, dtype=np.int64), cands)
        assert [len(s) for s in scores] == [len(c) for c in cands]
    # f0 received (and joined) the most: friend popularity and tie strength both put it first
    f0 = [int(data.users.get(f"s{s}f0")) for s in range(N_SHARERS)]
    for fn in (friend_popularity_scorer(ctx), tie_strength_scorer(ctx)):
        assert evaluate_share(fn, data, "test", ks=[1])["hit@1"] == pytest.approx(1.0)
    assert all(f in c for f, c in zip(f0, share_candidates(ctx.social, np.array(
        [int(data.users.get(f"s{s}")) for s in range(N_SHARERS)])), strict=True))
    # the random baseline is seeded
    a = random_scorer(5)(sharers, np.zeros(3, dtype=np.int64), cands)
    b = random_scorer(5)(sharers, np.zeros(3, dtype=np.int64), cands)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
