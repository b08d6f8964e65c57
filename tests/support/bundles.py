"""A servable bundle from random numbers, for service tests and serving benchmarks.

No training of embeddings: they are random (users and items of the same community point the
same way, so rankings have some structure), the social graph links users mostly within their
community, and interactions / purchases are drawn towards each user's best-scoring items. Share
records are simulated too (:func:`simulate_shares`): the older ones are the bundle's share
history, the newer ones teach the share-partner ranker (models/share_ranker.py), as
training/pipeline.py ``make_bundle`` does with validation shares, so the service's learned path
is the one exercised. Latency depends on the sizes, not on what the model learned, so this is
what bench/serving.py measures.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit

from socialrec.features.idmap import IdMap
from socialrec.features.shares import share_groups
from socialrec.features.tie_strength import share_matrices
from socialrec.models.bundle import ModelBundle
from socialrec.models.index import IndexConfig, build_indexes
from socialrec.models.share_features import ShareContext
from socialrec.models.share_ranker import examples, fit_share_ranker

#: Share records simulated per user; the last HOLD_OUT of them fit the ranker.
SHARES_PER_USER = 1.0
HOLD_OUT = 0.2


def random_bundle(n_users: int = 2000, n_items: int = 500, dim: int = 32, seed: int = 0,
                  n_communities: int = 8, friends: int = 8, interactions: int = 10,
                  no_interactions: float = 0.05, opt_out: float = 0.1, isolated: int = 0,
                  exact_threshold: int = 200_000, shares: bool = True,
                  index: IndexConfig | None = None) -> ModelBundle:
    """Users ``u0..``, items ``i0..`` in ``n_communities`` categories ``c0..``.

    ``no_interactions`` of the users have friends but no interaction of their own (cold users
    known only through the social graph); the last ``isolated`` users have neither friends nor
    interactions; ``opt_out`` of the users did not opt in to pushes. ``shares=False``: no share
    history and no share ranker (a dataset without share records).

    Indexes: ``index`` if given, else exact up to ``exact_threshold`` users and HNSW above (the
    shipped default, IVF-PQ, needs thousands of vectors to train its quantisers: test worlds
    ask for it explicitly).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_communities, dim))
    user_comm = rng.integers(n_communities, size=n_users)
    item_comm = rng.integers(n_communities, size=n_items)
    user_emb = (centres[user_comm] + rng.normal(size=(n_users, dim))) / np.sqrt(dim)
    item_emb = (centres[item_comm] + rng.normal(size=(n_items, dim))) / np.sqrt(dim)

    # Social: each user names `friends` others, 80 % from their own community; made mutual.
    src = np.repeat(np.arange(n_users), friends)
    same = rng.random(len(src)) < 0.8
    by_comm = [np.flatnonzero(user_comm == c) for c in range(n_communities)]
    dst = rng.integers(n_users, size=len(src))
    for c, members in enumerate(by_comm):
        pick = same & (user_comm[src] == c)
        dst[pick] = members[rng.integers(len(members), size=pick.sum())]
    lonely = np.arange(n_users) >= n_users - isolated
    dst[lonely[dst]] = (dst[lonely[dst]] % max(1, n_users - isolated))
    keep = (src != dst) & ~lonely[src]
    src, dst = src[keep], dst[keep]
    w = rng.uniform(0.05, 1.0, size=len(src))
    social = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([src, dst]),
                                                      np.concatenate([dst, src]))),
                           shape=(n_users, n_users)).tocsr()
    social.data = np.minimum(social.data, 1.0)  # a pair named twice keeps a weight <= 1

    # Interactions: sampled from each user's top 5 x `interactions` items.
    scores = user_emb @ item_emb.T
    pool = min(n_items, 5 * interactions)
    top = np.argpartition(-scores, pool - 1, axis=1)[:, :pool]
    rows, cols = [], []
    active = (rng.random(n_users) >= no_interactions) & ~lonely
    for u in np.flatnonzero(active):
        chosen = rng.choice(top[u], size=min(interactions, pool), replace=False)
        rows.append(np.full(len(chosen), u))
        cols.append(chosen)
    r, c = np.concatenate(rows), np.concatenate(cols)
    seen = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n_users, n_items))
    bought = rng.random(len(r)) < 0.3
    purchases = sp.csr_matrix((np.ones(bought.sum(), dtype=np.float32), (r[bought], c[bought])),
                              shape=(n_users, n_items))

    user_emb, item_emb = user_emb.astype(np.float32), item_emb.astype(np.float32)
    history: dict[str, Any] = {}
    if shares:
        records = simulate_shares(rng, social, seen, user_emb, item_emb,
                                  round(SHARES_PER_USER * n_users))
        old = records.iloc[:round((1 - HOLD_OUT) * len(records))]
        counts, joins = share_matrices(old, n_users)
        ctx = ShareContext(user_emb, item_emb, social, counts, joins, seen)
        x, y, g = examples(ctx, share_groups(records.iloc[len(old):]), rng=rng)
        history = {"share_counts": counts, "share_joins": joins}
        # too few shares to learn from (a tiny world): no ranker, the default ranking answers
        with contextlib.suppress(ValueError):
            history["share_ranker"] = fit_share_ranker(x, y, g).to_dict()

    bundle = ModelBundle(
        users=IdMap(f"u{i}" for i in range(n_users)),
        items=IdMap(f"i{j}" for j in range(n_items)),
        user_emb=user_emb,
        item_emb=item_emb,
        social=social,
        seen=seen,
        purchases=purchases,
        popularity=np.asarray(seen.sum(axis=0)).ravel().astype(np.float32),
        item_category=item_comm.astype(np.int64),
        push_opt_in=rng.random(n_users) >= opt_out,
        meta={"model": "random", "seed": seed,
              "categories": [f"c{i}" for i in range(n_communities)]},
        **history,
    )
    build_indexes(bundle, index or IndexConfig(exact_threshold=exact_threshold,
                                             approximate="hnsw"))
    return bundle


def simulate_shares(rng: np.random.Generator, social: sp.csr_matrix, seen: sp.csr_matrix,
                    user_emb: np.ndarray, item_emb: np.ndarray, n: int) -> pd.DataFrame:
    """``n`` shares in time order, one record per recipient: ``sharer, item, recipient,
    joined`` (internal ids). A sharer with friends shares an item they interacted with to 1–3
    friends, drawn by tie strength × how responsive the friend is; a recipient joins with a
    chance that grows with their interest in the item and their responsiveness."""
    responsive = rng.beta(2, 2, size=social.shape[0])
    sharers = np.flatnonzero((np.diff(social.indptr) > 0) & (np.diff(seen.indptr) > 0))
    rows = []
    for s in rng.choice(sharers, size=n) if len(sharers) else []:
        item = rng.choice(seen.indices[seen.indptr[s]:seen.indptr[s + 1]])
        lo, hi = social.indptr[s], social.indptr[s + 1]
        friends = social.indices[lo:hi]
        pull = social.data[lo:hi] * (0.2 + responsive[friends])
        chosen = rng.choice(friends, size=min(len(friends), rng.integers(1, 4)), replace=False,
                            p=pull / pull.sum())
        join = expit(3 * (user_emb[chosen] @ item_emb[item]) + 4 * responsive[chosen] - 3)
        rows += [(s, item, f, j) for f, j in zip(chosen, rng.random(len(chosen)) < join,
                                                  strict=True)]
    return pd.DataFrame(rows, columns=["sharer", "item", "recipient", "joined"])
