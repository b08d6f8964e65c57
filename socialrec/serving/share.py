"""Share partners for the service: "this user shares this item — which friends should get it?"

The candidates (features/shares.py), the ranking by score with ties broken by user id
(features/ranking.py), the features (models/share_features.py) and the learned model
(models/share_ranker.py) are those offline evaluation and training use, each computed in one
place, so what is trained and evaluated offline is what is served. This module adds only what
serving needs around them:

- :class:`ShareModel`: the bundle's :class:`ShareContext` and :class:`ShareRanker`, built once
  per loaded bundle (serving/loader.py ``prepare`` builds it; :func:`share_model` finds it again);
- :func:`rank_partners`: one sharer's candidates (1 or 2 hops), their features, the ranking, and
  for each returned friend the ``parts`` (raw feature values of :data:`PARTS`) and a ``reason``
  (the features adding most to the score: weight × standardised value);
- the default ranking, when the bundle cannot use the learned one (no ``share_ranker.json``:
  a dataset without share records; no ``share_counts.npz`` / ``share_joins.npz``: a bundle from
  before they existed): friends by tie strength, then by affinity with the item, both of which
  every bundle has. The history parts (``past_shares``, ``past_joins``,
  ``friend_responsiveness``) then come from an empty share history;
- :func:`item_vector`: the stand-in for an item the model does not know (its category's mean
  item, else the popularity-weighted mean item).

Scores: the learned ranker's score is its conditional-logit utility ``bias + Σ weight_f · z_f``
(among one sharer's candidates, the chance a friend is the recipient is the softmax of these);
the default ranking's score is the tie strength.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from socialrec.features.ranking import rank_candidates
from socialrec.features.shares import share_candidates
from socialrec.models.bundle import ModelBundle
from socialrec.models.share_features import FEATURES, ShareContext, share_features
from socialrec.models.share_ranker import ShareRanker

#: The raw feature values each partner carries as ``parts`` (what a marketing UI shows).
#: ``past_shares`` / ``past_joins`` are ``log1p`` counts, as the ranker reads them.
PARTS: tuple[str, ...] = (
    "tie_strength", "affinity", "past_shares", "past_joins", "friend_responsiveness",
    "adamic_adar",
)
LEARNED = "share_ranker"
DEFAULT = "share_default:tie_strength,affinity"
#: Features named in a partner's reason, at most.
REASONS_SHOWN = 2

_COL = {name: k for k, name in enumerate(FEATURES)}


def _count(v: float) -> int:
    return round(float(np.expm1(v)))  # the history features are log1p counts


#: How a feature reads in a reason, given the partner's raw feature values.
_PHRASES: dict[str, Callable[[dict[str, float]], str]] = {
    "affinity": lambda r: "likely interested in this item",
    "sharer_similarity": lambda r: "has tastes like yours",
    "tie_strength": lambda r: f"a close tie (strength {r['tie_strength']:.2f})",
    "past_shares": lambda r: f"you shared with them {_count(r['past_shares'])} times",
    "past_joins": lambda r: f"joined {_count(r['past_joins'])} of your past shares",
    "reverse_shares": lambda r: f"shared with you {_count(r['reverse_shares'])} times",
    "adamic_adar": lambda r: "many friends in common",
    "co_interactions": lambda r: f"{_count(r['co_interactions'])} products in common with you",
    "friend_popularity": lambda r: "receives many shares",
    "friend_responsiveness": lambda r: (f"often acts on shares (join rate "
                                        f"{r['friend_responsiveness']:.0%})"),
    "two_hop": lambda r: "a friend of a friend",
}


@dataclass(frozen=True)
class ShareModel:
    """What ``/share_partners`` needs from one bundle: the feature context, and the learned
    ranker or (``ranker`` None) why the default ranking answers instead."""

    context: ShareContext
    ranker: ShareRanker | None
    why_default: str | None

    @property
    def strategy(self) -> str:
        return LEARNED if self.ranker is not None else DEFAULT

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, where: str = "bundle") -> ShareModel:
        """Parse the bundle's share ranker (ValueError naming ``where``/share_ranker.json if it
        is unusable) and build its context."""
        ranker = None
        if bundle.share_ranker is not None:
            ranker = ShareRanker.from_dict(bundle.share_ranker, f"{where}/share_ranker.json")
        missing = [f"{name}.npz" for name in ("share_counts", "share_joins")
                   if getattr(bundle, name) is None]
        if missing:
            n = len(bundle.users)
            empty = sp.csr_matrix((n, n)).astype(np.float32)
            context = ShareContext(bundle.user_emb, bundle.item_emb, bundle.social, empty, empty,
                                   bundle.seen)
            why = f"the bundle has no share history ({', '.join(missing)})"
            return cls(context, None, why)
        context = ShareContext.from_bundle(bundle)
        if ranker is None:
            return cls(context, None, "the bundle has no share_ranker.json (no share records "
                                      "to learn it from)")
        return cls(context, ranker, None)


#: id(bundle) -> its ShareModel; an entry goes when its bundle is garbage-collected.
_MODELS: dict[int, ShareModel] = {}


def prepare_share(bundle: ModelBundle, where: str = "bundle") -> ShareModel:
    """Build the bundle's :class:`ShareModel` and keep it for :func:`share_model`. A bundle is
    read-only once served: replacing its arrays would leave this one stale."""
    model = ShareModel.from_bundle(bundle, where)
    key = id(bundle)
    _MODELS[key] = model
    weakref.finalize(bundle, _MODELS.pop, key, None)
    return model


def share_model(bundle: ModelBundle) -> ShareModel:
    """The bundle's :class:`ShareModel`: the one its loader built, or built now (a bundle made
    in-process, as by the tests' random bundles)."""
    return _MODELS.get(id(bundle)) or prepare_share(bundle)


@dataclass
class Partners:
    users: np.ndarray
    scores: np.ndarray
    hop: np.ndarray
    parts: dict[str, np.ndarray]  # PARTS, aligned with users
    reasons: list[str]


def rank_partners(bundle: ModelBundle, sharer: int, item_vec: np.ndarray, item: int | None,
                  k: int, hops: int = 1) -> Partners:
    """The ``k`` best share partners of ``sharer`` for the item with internal id ``item``, or,
    when ``item`` is None (unknown to the model), for the item that ``item_vec`` stands for."""
    model = share_model(bundle)
    ctx = model.context
    cands = share_candidates(ctx.social, np.array([sharer]), hops)[0]
    if len(cands) == 0:
        empty = np.zeros(0)
        return Partners(cands, empty, empty.astype(np.int8), {p: empty for p in PARTS}, [])
    if item is None:
        # Item 0 of a context whose only item is the stand-in: a shallow copy, so the matrices
        # are shared and nothing is rebuilt.
        ctx = copy.copy(ctx)
        ctx.item_emb = np.asarray(item_vec, dtype=np.float32).reshape(1, -1)
        item = 0
    x = share_features(ctx, np.array([sharer]), np.array([item]), [cands])
    if model.ranker is not None:
        scores = model.ranker.decision(x)
        top = rank_candidates(cands, scores)[:k]
        reasons = _learned_reasons(model.ranker, x[top])
    else:
        scores = x[:, _COL["tie_strength"]]
        top = rank_candidates(cands, scores, x[:, _COL["affinity"]])[:k]
        reasons = [f"ranked by tie strength ({t:.2f}), then interest in the item"
                   for t in scores[top]]
    hop = np.where(x[top, _COL["two_hop"]] > 0, 2, 1).astype(np.int8)
    parts = {p: x[top, _COL[p]] for p in PARTS}
    return Partners(cands[top], scores[top], hop, parts, reasons)


def _learned_reasons(ranker: ShareRanker, x: np.ndarray) -> list[str]:
    """Per row of ``x`` (full feature rows): the features with the largest positive
    contributions ``weight × standardised value``, in words."""
    cols = [_COL[f] for f in ranker.features]
    contrib = (x[:, cols] - ranker.mean) / ranker.std * ranker.weights
    out = []
    for row, c in zip(x, contrib, strict=True):
        raw = dict(zip(FEATURES, row, strict=True))
        best = [j for j in np.argsort(-c, kind="stable")[:REASONS_SHOWN] if c[j] > 0]
        out.append("; ".join(_PHRASES[ranker.features[j]](raw) for j in best)
                   or "no strong signal; ranked by the share model")
    return out


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
