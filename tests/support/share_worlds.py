"""Share worlds whose right answers are known, for the share-partner tests (features, models,
training and serving).

The "loyal friend" world (:func:`loyal_world`): 40 sharers, each with 6 friends of their own
(``s7`` has ``s7f0`` … ``s7f5``). Each sharer shares 6 items in training; every share goes to
their friend ``f0``, who joins it, and to one other friend drawn at random, who does not. Valid
and test shares (one per sharer, new items) go to ``f0`` alone. The right answer is known:
``f0`` — the friend who joined every past share — must rank first, for every sharer.

The diamond (:data:`DIAMOND`): s=0 – a=1 (weight 2), s – b=2 (1), a – c=3 (3), b – c (5),
c – d=4 (1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialrec.features.graph import GraphData, build_graph
from socialrec.features.splits import Split
from socialrec.features.tables import Dataset, conform

N_SHARERS, N_FRIENDS, N_ITEMS = 40, 6, 30
DAY = 86_400
SHARE_COLS = ["sharer_id", "item_id", "recipient_id", "ts", "joined"]


def loyal_world(test_recipient: str = "f0") -> GraphData:
    rng = np.random.default_rng(3)
    social, inter, train, valid, test = [], [], [], [], []
    for s in range(N_SHARERS):
        sharer = f"s{s}"
        social += [(sharer, f"{sharer}f{j}") for j in range(N_FRIENDS)]
        for day, item in enumerate(rng.choice(N_ITEMS, 6, replace=False), start=1):
            other = f"{sharer}f{rng.integers(1, N_FRIENDS)}"
            train += [(sharer, f"i{item}", f"{sharer}f0", day * DAY, True),
                      (sharer, f"i{item}", other, day * DAY, False)]
            inter += [(sharer, f"i{item}", "purchase", day * DAY),
                      (f"{sharer}f0", f"i{item}", "purchase", day * DAY + 60)]
        valid.append((sharer, f"i{(s + 7) % N_ITEMS}", f"{sharer}f0", 10 * DAY, True))
        test.append((sharer, f"i{(s + 11) % N_ITEMS}", f"{sharer}{test_recipient}", 20 * DAY,
                     True))
    frames = {name: conform(pd.DataFrame(rows, columns=SHARE_COLS), "shares")
              for name, rows in (("train", train), ("valid", valid), ("test", test))}
    interactions = conform(pd.DataFrame(inter, columns=["user_id", "item_id", "event", "ts"]),
                           "interactions")
    social_df = conform(pd.DataFrame(social, columns=["src", "dst"]), "social")
    dataset = Dataset("loyal-friends", interactions=interactions, social=social_df,
                      shares=pd.concat(frames.values(), ignore_index=True))
    split = Split(train=interactions, valid=interactions.iloc[:0], test=interactions.iloc[:0],
                  social=social_df, train_shares=frames["train"], valid_shares=frames["valid"],
                  test_shares=frames["test"], protocol="hand-made", cut_ts=9 * DAY)
    return build_graph(dataset, split)


def random_embeddings(data: GraphData, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(data.n_users, 4)).astype(np.float32),
            rng.normal(size=(data.n_items, 4)).astype(np.float32))


def undirected(edges: list[tuple[int, int, float]], n: int) -> sp.csr_matrix:
    r, c, w = zip(*edges, strict=True)
    return sp.csr_matrix((np.r_[w, w], (np.r_[r, c], np.r_[c, r])), shape=(n, n),
                         dtype=np.float32)


DIAMOND = undirected([(0, 1, 2.0), (0, 2, 1.0), (1, 3, 3.0), (2, 3, 5.0), (3, 4, 1.0)], 5)
