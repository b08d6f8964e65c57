"""A servable bundle from random numbers, for demos, service tests and serving benchmarks.

No training: embeddings are random (users and items of the same community point the same way,
so rankings have some structure), the social graph links users mostly within their community,
and interactions / purchases are drawn towards each user's best-scoring items. Latency depends
on the sizes, not on what the model learned, so this is what bench/serving.py measures.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from socialrec.features.idmap import IdMap
from socialrec.models.bundle import ModelBundle
from socialrec.training.index import build_indexes


def random_bundle(n_users: int = 2000, n_items: int = 500, dim: int = 32, seed: int = 0,
                  n_communities: int = 8, friends: int = 8, interactions: int = 10,
                  no_interactions: float = 0.05, opt_out: float = 0.1, isolated: int = 0,
                  exact_threshold: int = 200_000) -> ModelBundle:
    """Users ``u0..``, items ``i0..`` in ``n_communities`` categories ``c0..``.

    ``no_interactions`` of the users have friends but no interaction of their own (cold users
    known only through the social graph); the last ``isolated`` users have neither friends nor
    interactions; ``opt_out`` of the users did not opt in to pushes.
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

    bundle = ModelBundle(
        users=IdMap(f"u{i}" for i in range(n_users)),
        items=IdMap(f"i{j}" for j in range(n_items)),
        user_emb=user_emb.astype(np.float32),
        item_emb=item_emb.astype(np.float32),
        social=social,
        seen=seen,
        purchases=purchases,
        popularity=np.asarray(seen.sum(axis=0)).ravel().astype(np.float32),
        item_category=item_comm.astype(np.int64),
        push_opt_in=rng.random(n_users) >= opt_out,
        meta={"model": "random", "seed": seed,
              "categories": [f"c{i}" for i in range(n_communities)]},
    )
    build_indexes(bundle, exact_threshold=exact_threshold)
    return bundle
