"""Share partners' inputs, one definition for offline evaluation, training and serving: who the
candidates of a share are (:func:`share_candidates`), how share records group into queries
(:func:`share_groups`), and the scoring interface every share-partner scorer follows
(:data:`ShareScoreFn`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialrec.features.sparse import binary

#: score_fn(sharers, items, candidates) -> one score array per candidate array.
ShareScoreFn = Callable[[np.ndarray, np.ndarray, list[np.ndarray]], list[np.ndarray]]


def share_candidates(social: sp.csr_matrix, sharers: np.ndarray, hops: int = 1
                     ) -> list[np.ndarray]:
    """Each sharer's friends (``hops=1``), or friends and friends of friends (``hops=2``), sorted
    by user id, never the sharer. Friends are the sharer's row of ``social`` (for a directed
    source: the users the sharer points to); edge weights do not matter."""
    if hops not in (1, 2):
        raise ValueError(f"hops must be 1 or 2, got {hops}")
    sharers = np.asarray(sharers, dtype=np.int64)
    # Only the rows needed are read and binarised (the sharers', and for two hops their
    # friends'), never the whole graph: serving calls this per request.
    reach = binary(social[sharers])
    if hops == 2:
        friends = np.unique(reach.indices)
        reach = reach + reach[:, friends] @ binary(social[friends])
    reach = reach.tocsr()
    reach.sum_duplicates()
    reach.sort_indices()
    rows = np.split(reach.indices.astype(np.int64), reach.indptr[1:-1])
    return [c[c != s] for s, c in zip(sharers, rows, strict=True)]


def share_groups(shares: pd.DataFrame) -> pd.DataFrame:
    """One row per (sharer, item) of share records, sorted, with the arrays of its distinct
    ``recipients`` and of those who ``joined`` (acted on the share), both sorted by user id.

    Records with an unknown sharer, item or recipient (internal id -1) are dropped; the caller
    counts them.
    """
    ok = (shares["sharer"] >= 0) & (shares["item"] >= 0) & (shares["recipient"] >= 0)
    per_recipient = (
        shares[ok].groupby(["sharer", "item", "recipient"], sort=True)["joined"].any().reset_index()
    )
    if per_recipient.empty:
        return pd.DataFrame({"sharer": np.zeros(0, dtype=np.int64),
                             "item": np.zeros(0, dtype=np.int64), "recipients": [], "joined": []})
    keys = per_recipient[["sharer", "item"]].to_numpy(dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)])
    recipients = np.split(per_recipient["recipient"].to_numpy(dtype=np.int64), starts[1:])
    joined = np.split(per_recipient["joined"].to_numpy(dtype=bool), starts[1:])
    return pd.DataFrame({
        "sharer": keys[starts, 0],
        "item": keys[starts, 1],
        "recipients": recipients,
        "joined": [r[m] for r, m in zip(recipients, joined, strict=True)],
    })
