"""Share-partner scoring: "this user shares this item — which friends should receive it?"

Pure numpy / scipy functions over a :class:`ModelBundle`, shared by the service and the
share-ranker's training and evaluation (models/), so that what is trained is what is served.

Candidates are the sharer's friends (out-edges of ``bundle.social``), optionally friends of
friends (``hops=2``). Each candidate gets the features :data:`FEATURES`:

``affinity``        friend embedding · item embedding (the friend's predicted interest)
``tie_strength``    ``bundle.social[sharer, friend]``; for a friend of a friend, the strongest
                    two-step path ``max_m w(s, m) · w(m, f)``
``past_joins``      how many of this sharer's past shares the friend joined (from the optional
                    ``bundle.share_joins``, a sharer × recipient CSR; 0 when the bundle has none)
``mutual_friends``  friends the sharer and the candidate have in common
``already_bought``  1 when the friend already bought the item (they need no share)
``two_hop``         1 for a friend of a friend

The score is a logistic model ``sigmoid(bias + Σ weight_f · feature_f)`` with the weights of
``bundle.share_ranker`` (``{"features": [...], "weights": [...], "bias": b}``, learned by the
share-ranker on real share / group-buy records) when the bundle has one, else
:data:`DEFAULT_RANKER`: interest and tie strength count alike, past joins and mutual friends add,
a friend who already bought the item or is two hops away is pushed down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from socialrec.models.bundle import ModelBundle
from socialrec.serving.rules import buyers

FEATURES: tuple[str, ...] = (
    "affinity", "tie_strength", "past_joins", "mutual_friends", "already_bought", "two_hop",
)

DEFAULT_RANKER: dict[str, Any] = {
    "name": "default",
    "features": list(FEATURES),
    "weights": [1.0, 1.0, 0.5, 0.1, -2.0, -0.5],
    "bias": 0.0,
}

#: Phrases of the reason string, for the feature that contributes most to a partner's score.
_REASONS = {
    "affinity": "likely interested in this item",
    "tie_strength": "a close tie of yours",
    "past_joins": "joined your past shares",
    "mutual_friends": "shares many friends with you",
}


def check_ranker(ranker: dict[str, Any], where: str = "share_ranker") -> dict[str, Any]:
    """``ranker`` if it is a usable logistic model over known features; else ValueError."""
    try:
        names, weights, bias = ranker["features"], ranker["weights"], float(ranker["bias"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: expected {{'features': [...], 'weights': [...], 'bias': b}}, "
                         f"got {ranker!r}") from exc
    unknown = [f for f in names if f not in FEATURES]
    if unknown:
        raise ValueError(f"{where}: unknown features {unknown}; expected some of {FEATURES}")
    if len(names) != len(weights):
        raise ValueError(f"{where}: {len(names)} features but {len(weights)} weights")
    return {**ranker, "features": list(names), "weights": [float(w) for w in weights],
            "bias": bias}


def _row(m: sp.csr_matrix, i: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = m.indptr[i], m.indptr[i + 1]
    return m.indices[lo:hi], m.data[lo:hi]


def candidates(bundle: ModelBundle, sharer: int, hops: int = 1
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(users, hop, tie_strength)`` of the sharer's friends (and friends of friends)."""
    friends, w = _row(bundle.social, sharer)
    keep = friends != sharer
    friends, w = friends[keep], w[keep].astype(np.float32)
    hop = np.ones(len(friends), dtype=np.int8)
    if hops < 2 or len(friends) == 0:
        return friends, hop, w
    # Strongest two-step path to each friend of a friend: scale each friend's row by the
    # sharer's tie to that friend, then take the column maximum.
    paths = sp.diags(w) @ bundle.social[friends]
    best = np.asarray(paths.max(axis=0).todense()).ravel()
    second = np.flatnonzero(best > 0)
    second = second[~np.isin(second, friends) & (second != sharer)]
    return (np.concatenate([friends, second]),
            np.concatenate([hop, np.full(len(second), 2, dtype=np.int8)]),
            np.concatenate([w, best[second].astype(np.float32)]))


def features(bundle: ModelBundle, sharer: int, users: np.ndarray, hop: np.ndarray,
             tie: np.ndarray, item_vec: np.ndarray, item: int | None) -> dict[str, np.ndarray]:
    """The :data:`FEATURES` of each candidate ``users`` (``item`` None: an unknown item)."""
    affinity = bundle.user_emb[users] @ item_vec.astype(np.float32, copy=False)
    friends, _ = _row(bundle.social, sharer)
    mutual = (bundle.social[users][:, friends].getnnz(axis=1).astype(np.float32)
              if len(friends) else np.zeros(len(users), dtype=np.float32))
    joins = getattr(bundle, "share_joins", None)
    past = (np.asarray(joins[sharer][:, users].todense(), dtype=np.float32).ravel()
            if joins is not None else np.zeros(len(users), dtype=np.float32))
    bought = (np.isin(users, buyers(bundle, item)) if item is not None
              else np.zeros(len(users), dtype=bool))
    return {
        "affinity": affinity.astype(np.float32),
        "tie_strength": tie.astype(np.float32),
        "past_joins": past,
        "mutual_friends": mutual,
        "already_bought": bought.astype(np.float32),
        "two_hop": (hop == 2).astype(np.float32),
    }


def scores(feats: dict[str, np.ndarray], ranker: dict[str, Any] | None = None) -> np.ndarray:
    """``sigmoid(bias + Σ w_f · feats[f])`` for the ranker's features (default: DEFAULT_RANKER)."""
    r = ranker or DEFAULT_RANKER
    z = np.full(len(next(iter(feats.values()))), float(r["bias"]), dtype=np.float64)
    for name, w in zip(r["features"], r["weights"], strict=True):
        z += float(w) * feats[name]
    return expit(z)


def reasons(feats: dict[str, np.ndarray], ranker: dict[str, Any] | None = None) -> list[str]:
    """A short why per candidate: the feature adding most to its score."""
    r = ranker or DEFAULT_RANKER
    named = [(n, w) for n, w in zip(r["features"], r["weights"], strict=True) if n in _REASONS]
    if not named:
        return ["ranked by the share model"] * len(next(iter(feats.values())))
    contrib = np.stack([w * feats[n] for n, w in named])
    best = contrib.argmax(axis=0)
    out = []
    for i, b in enumerate(best):
        name = named[b][0]
        if contrib[b, i] <= 0:
            out.append("no strong signal; ranked by the share model")
        elif name == "past_joins":
            out.append(f"joined {int(feats['past_joins'][i])} of your past shares")
        elif name == "mutual_friends":
            out.append(f"{int(feats['mutual_friends'][i])} mutual friends")
        elif name == "tie_strength":
            out.append(f"{_REASONS[name]} (tie {feats['tie_strength'][i]:.2f})")
        else:
            out.append(_REASONS[name])
    return out


@dataclass
class Partners:
    users: np.ndarray
    scores: np.ndarray
    hop: np.ndarray
    features: dict[str, np.ndarray]  # aligned with users
    reasons: list[str]


def rank_partners(bundle: ModelBundle, sharer: int, item_vec: np.ndarray, item: int | None,
                  k: int, hops: int = 1, ranker: dict[str, Any] | None = None) -> Partners:
    """The ``k`` best share partners of ``sharer`` for an item (internal id ``item`` or None),
    represented by ``item_vec``; ``ranker`` defaults to ``bundle.share_ranker``."""
    ranker = ranker or bundle.share_ranker or DEFAULT_RANKER
    users, hop, tie = candidates(bundle, sharer, hops)
    if len(users) == 0:
        empty = {f: np.zeros(0, dtype=np.float32) for f in FEATURES}
        return Partners(users, np.zeros(0), hop, empty, [])
    feats = features(bundle, sharer, users, hop, tie, item_vec, item)
    s = scores(feats, ranker)
    top = np.lexsort((users, -s))[:k]  # score descending, user id breaks ties
    chosen = {f: v[top] for f, v in feats.items()}
    return Partners(users[top], s[top], hop[top], chosen, reasons(chosen, ranker))


def item_vector(bundle: ModelBundle, item: int | None, category: str | None = None
                ) -> tuple[np.ndarray, str | None]:
    """The embedding standing for an item: its own, else the mean of its category's items
    ("category"), else the popularity-weighted mean item ("popularity")."""
    if item is not None:
        return bundle.item_emb[item], None
    if category is not None and category in bundle.categories:
        members = bundle.item_category == bundle.categories.index(category)
        if members.any():
            return bundle.item_emb[members].mean(axis=0), "category"
    weights = np.asarray(bundle.popularity, dtype=np.float64)
    if weights.sum() <= 0:
        weights = np.ones(len(weights))
    return (weights / weights.sum()) @ bundle.item_emb, "popularity"
