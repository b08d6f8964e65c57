"""Share-partner features (models/share_features.py): the two-hop tie, and a context built from a
bundle reading exactly what the training context reads."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from socialrec.features.shares import share_candidates
from socialrec.models.bundle import ModelBundle
from socialrec.models.share_features import FEATURES, ShareContext, share_features
from tests.support.share_worlds import DAY, DIAMOND, loyal_world, random_embeddings


def test_two_hop_features_take_the_strongest_path():
    empty = sp.csr_matrix((5, 5), dtype=np.float32)
    ctx = ShareContext(np.ones((5, 2)), np.ones((1, 2)), DIAMOND, empty, empty,
                       sp.csr_matrix((5, 1)))
    x = share_features(ctx, np.array([0]), np.array([0]), [np.array([1, 3])])
    tie, hop = FEATURES.index("tie_strength"), FEATURES.index("two_hop")
    # via a: 2 · 3 = 6, via b: 1 · 5 = 5
    assert x[:, tie].tolist() == [2.0, 6.0] and x[:, hop].tolist() == [0.0, 1.0]
    # s and a have no friend in common; s and c have a and b, of degree 2 each
    aa = FEATURES.index("adamic_adar")
    assert x[0, aa] == 0.0 and x[1, aa] == pytest.approx(2 / np.log(2))


def test_context_from_a_bundle_needs_the_share_history():
    data = loyal_world()
    user_emb, item_emb = random_embeddings(data)
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    bundle = ModelBundle(
        users=data.users, items=data.items, user_emb=user_emb, item_emb=item_emb,
        social=ctx.social, seen=data.train, purchases=data.purchases,
        popularity=np.ones(data.n_items, dtype=np.float32), item_category=data.item_category,
        push_opt_in=data.push_opt_in)
    with pytest.raises(ValueError, match=r"share_counts\.npz, share_joins\.npz"):
        ShareContext.from_bundle(bundle)
    bundle.share_counts, bundle.share_joins = ctx.share_counts, ctx.share_joins
    served = ShareContext.from_bundle(bundle)
    sharers, items = np.arange(5), np.arange(5)
    cands = share_candidates(served.social, sharers)
    np.testing.assert_array_equal(share_features(served, sharers, items, cands),
                                  share_features(ctx, sharers, items, cands))
