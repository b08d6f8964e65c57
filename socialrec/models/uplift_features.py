"""The features an uplift model reads for one (campaign item, user) pair, from what a bundle has.

One definition for training (socialrec/training/uplift.py, rows built from the event store),
serving (serving/push_objective.py) and the simulated worlds (evaluation/uplift_worlds.py), so a
model is always scored on the features it learned from. Columns, in order:

- ``affinity``: the user's score for the item (user · item embedding, what propensity ranks by);
- ``activity``, ``purchases``, ``friends``: log1p of the user's training interactions,
  purchases and social ties;
- ``friends_bought``: how many of the user's friends bought the item (social proof);
- ``item_buyers``: log1p of the item's training buyers (its popularity);
- ``push_count``: pushes the user received in the window before this one (push fatigue);
- ``user_pc0..``, ``item_pc0..``: the user and item embeddings projected on the first principal
  axes of the user embeddings (the projection is fitted at training and saved with the model).

Never imports torch (serving uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

BASE_FEATURES = ("affinity", "activity", "purchases", "friends", "friends_bought",
                 "item_buyers", "push_count")


def feature_names(n_components: int) -> list[str]:
    return [*BASE_FEATURES, *(f"user_pc{j}" for j in range(n_components)),
            *(f"item_pc{j}" for j in range(n_components))]


@dataclass
class FeatureSource:
    """The arrays features are read from (a ModelBundle has each under the same name)."""

    user_emb: np.ndarray
    item_emb: np.ndarray
    seen: sp.csr_matrix
    purchases: sp.csr_matrix
    social: sp.csr_matrix

    def __post_init__(self) -> None:
        self._buyers_csc: sp.csc_matrix | None = None

    def buyers_of(self, item: int) -> np.ndarray:
        if self._buyers_csc is None:
            self._buyers_csc = self.purchases.tocsc()
        csc = self._buyers_csc
        return csc.indices[csc.indptr[item]:csc.indptr[item + 1]]


def fit_projection(user_emb: np.ndarray, n_components: int) -> np.ndarray:
    """The first ``n_components`` principal axes of the user embeddings, as a (dim, k) matrix
    (fewer when the embeddings have fewer dimensions)."""
    k = min(n_components, user_emb.shape[1])
    if k == 0:
        return np.zeros((user_emb.shape[1], 0), dtype=np.float32)
    centred = user_emb - user_emb.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[: min(len(centred), 50_000)], full_matrices=False)
    return np.ascontiguousarray(vt[:k].T, dtype=np.float32)


def _row_counts(m: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    return np.diff(m.indptr)[rows].astype(np.float32)


def uplift_features(src: FeatureSource, users: np.ndarray, item: int, push_count: np.ndarray,
                    projection: np.ndarray) -> np.ndarray:
    """The feature matrix (float32, one row per user, columns :func:`feature_names`) of
    ``users`` (internal ids) for a campaign pushing ``item`` (internal id)."""
    return product_features(src, users, src.item_emb[item], src.buyers_of(item), push_count,
                            projection)


def product_features(src: FeatureSource, users: np.ndarray, item_vec: np.ndarray,
                     buyers: np.ndarray, push_count: np.ndarray, projection: np.ndarray
                     ) -> np.ndarray:
    """:func:`uplift_features` of a product given by its served vector and its buyers
    (internal user ids): also a product the model does not know (its folded-in or stand-in
    vector, the buyers the event store reported)."""
    users = np.asarray(users, dtype=np.int64)
    n = len(users)
    is_buyer = np.zeros(src.user_emb.shape[0], dtype=np.float32)
    buyers = np.asarray(buyers, dtype=np.int64)
    is_buyer[buyers] = 1.0
    friends = src.social[users]
    friends_bought = (friends > 0).astype(np.float32) @ is_buyer
    user_vecs = src.user_emb[users]
    k = projection.shape[1]
    out = np.empty((n, len(BASE_FEATURES) + 2 * k), dtype=np.float32)
    # embeddings may carry extra columns (an item bias); affinity is the served score
    out[:, 0] = user_vecs @ item_vec
    out[:, 1] = np.log1p(_row_counts(src.seen, users))
    out[:, 2] = np.log1p(_row_counts(src.purchases, users))
    out[:, 3] = np.log1p(_row_counts(src.social, users))
    out[:, 4] = np.asarray(friends_bought).ravel()
    out[:, 5] = np.log1p(len(buyers))
    out[:, 6] = np.asarray(push_count, dtype=np.float32)
    dim = projection.shape[0]
    out[:, 7:7 + k] = user_vecs[:, :dim] @ projection
    out[:, 7 + k:] = item_vec[:dim] @ projection
    return out
