"""Cold start: what /recommend answers for users the model cannot score.

* a user the model never saw → the most popular items (strategy ``popular``);
* a user known only through the social graph (no interaction of their own) → their friends'
  favourites: items the friends interacted with, weighted by tie strength (strategy
  ``friends_favourites``), topped up with popular items when the friends have too few.
"""

from __future__ import annotations

import numpy as np

from socialrec.models.bundle import ModelBundle


def popular_items(bundle: ModelBundle, k: int, exclude: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most popular items (ties: lower id first), minus ``exclude``."""
    pop = np.asarray(bundle.popularity, dtype=np.float64)
    order = np.lexsort((np.arange(len(pop)), -pop))
    if exclude is not None and len(exclude):
        order = order[~np.isin(order, exclude)]
    top = order[:k]
    return top, pop[top].astype(np.float32)


def friends_favourites(bundle: ModelBundle, user: int, k: int
                       ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Items the user's friends interacted with, by tie-weighted count: ``(items, scores,
    found)``; ``found`` is False when the user has no friends with interactions (the list is
    then popular items only)."""
    row = bundle.social[user]
    taste = np.asarray((row @ bundle.seen).todense()).ravel()
    liked = np.flatnonzero(taste > 0)
    if len(liked) == 0:
        items, scores = popular_items(bundle, k)
        return items, scores, False
    order = liked[np.lexsort((liked, -taste[liked]))][:k]
    items, scores = order, taste[order].astype(np.float32)
    if len(items) < k:  # top up: friends' favourites first, then the most popular of the rest
        more, more_scores = popular_items(bundle, k - len(items), exclude=items)
        items = np.concatenate([items, more])
        scores = np.concatenate([scores, np.zeros_like(more_scores)])
    return items, scores, True


def has_interactions(bundle: ModelBundle, user: int) -> bool:
    return bool(bundle.seen.indptr[user + 1] > bundle.seen.indptr[user])
