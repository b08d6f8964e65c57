"""Cold start: what /recommend answers for users the model cannot score (:func:`cold_start`).

* a user with feedback events on products the model knows (a new user, or one the model knows
  only through friends) → their vector folded in from those events (models/foldin.py,
  serving/foldin_state.py), retrieved like any user's, the products they interacted with left
  out (strategy ``<retrieval>+user_foldin``);
* else a user with friends — in the social graph, or made by feedback (a share they joined) →
  their friends' favourites: items the friends interacted with, weighted by tie strength (1 for
  a friendship made by feedback) (strategy ``friends_favourites``), topped up with popular items
  when the friends have too few;
* else the most popular items (strategy ``popular``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from socialrec.models.bundle import ModelBundle
from socialrec.serving.foldin_state import ModelSignals
from socialrec.serving.retrieval import recommend_items

#: Tie strength of a friendship made by feedback (a join answering a share): the strongest.
FEEDBACK_TIE = 1.0


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
    return favourites_of(bundle, row.indices, row.data, k)


def favourites_of(bundle: ModelBundle, friends: np.ndarray, ties: np.ndarray, k: int
                  ) -> tuple[np.ndarray, np.ndarray, bool]:
    """:func:`friends_favourites` of the users ``friends`` (internal ids) with tie strengths
    ``ties``."""
    weighted = np.asarray(ties, dtype=np.float64) @ bundle.seen[np.asarray(friends, np.int64)]
    taste = np.asarray(weighted).ravel()
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


def cold_start(bundle: ModelBundle, signals: ModelSignals, user_id: str, user: int | None,
               new_friends: Iterable[str], k: int, exclude_seen: bool
               ) -> tuple[np.ndarray, np.ndarray, str]:
    """``(items, scores, strategy)`` for a user the bundle does not know (``user`` None) or
    knows without an interaction (module doc); ``new_friends``: friends made by feedback."""
    vector = signals.user_vector(user_id)
    if vector is not None:
        items, scores, strategy = recommend_items(bundle, None, k, exclude_seen, query=vector,
                                                  seen=signals.user_items(user_id))
        return items, scores, f"{strategy}+user_foldin"
    friends, ties = np.zeros(0, dtype=np.int64), np.zeros(0)
    if user is not None:
        row = bundle.social[user]
        friends, ties = row.indices.astype(np.int64), row.data.astype(np.float64)
    made = bundle.users.to_index(list(new_friends), missing=-1)
    made = np.setdiff1d(made[made >= 0], friends)
    friends = np.concatenate([friends, made])
    ties = np.concatenate([ties, np.full(len(made), FEEDBACK_TIE)])
    if len(friends):
        items, scores, found = favourites_of(bundle, friends, ties, k)
        if found:
            return items, scores, "friends_favourites"
    items, scores = popular_items(bundle, k)
    return items, scores, "popular"
