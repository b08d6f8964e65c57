"""Share-partner features: what the share ranker (models/share_ranker.py), its baselines
(models/share_baselines.py) and the service (serving/share.py) know about a candidate.

For a share ``(s, i)`` (sharer ``s`` shares item ``i``), the candidates are ``s``'s friends
(features/shares.py ``share_candidates``; ``hops=2`` adds friends of friends). Every candidate
``f`` gets the features :data:`FEATURES`, all from training-period data:

==========================  =======================================================================
``affinity``                ``user_emb[f] · item_emb[i]``: the friend's predicted interest
``sharer_similarity``       cosine of ``user_emb[s]`` and ``user_emb[f]`` (alike tastes: homophily)
``tie_strength``            ``social[s, f]`` (features/tie_strength.py); friend of a friend: the
                            strongest two-step path ``max_m w(s, m) · w(m, f)``
``past_shares``             ``log1p`` of past shares s → f
``past_joins``              ``log1p`` of those past shares that f joined
``reverse_shares``          ``log1p`` of past shares f → s (reciprocity)
``adamic_adar``             common friends, weighted ``1 / log(degree)`` (Adamic & Adar, 2003)
``co_interactions``         ``log1p`` of the items both s and f interacted with
``friend_popularity``       ``log1p`` of the shares f received from anyone
``friend_responsiveness``   ``(joins f made + 1) / (shares f received + 2)`` (Laplace-smoothed rate)
``two_hop``                 1 for a friend of a friend
==========================  =======================================================================

This module is pure numpy / scipy (no torch), so serving can import it: build a
:class:`ShareContext` from a bundle and call :func:`share_features`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialrec.features.graph import GraphData
from socialrec.features.sparse import binary
from socialrec.features.tie_strength import (
    TieComponents,
    adamic_adar_weights,
    combine,
    pair_values,
    pairwise_overlap,
    share_components,
    structural_components,
)

FEATURES: tuple[str, ...] = (
    "affinity", "sharer_similarity", "tie_strength", "past_shares", "past_joins",
    "reverse_shares", "adamic_adar", "co_interactions", "friend_popularity",
    "friend_responsiveness", "two_hop",
)


@dataclass
class ShareContext:
    """Embeddings and training-period matrices the features read (internal ids).

    ``social`` is the candidate graph with tie weights; ``share_counts`` / ``share_joins`` are
    directed sharer × recipient counts of past share records and of those joined; ``seen`` is the
    users × items training interactions (binary). Derived lookups are built once in
    ``__post_init__``.
    """

    user_emb: np.ndarray
    item_emb: np.ndarray
    social: sp.csr_matrix
    share_counts: sp.csr_matrix
    share_joins: sp.csr_matrix
    seen: sp.csr_matrix
    user_unit: np.ndarray = field(init=False, repr=False)
    friends: sp.csr_matrix = field(init=False, repr=False)
    aa_weights: sp.csr_matrix = field(init=False, repr=False)
    received: np.ndarray = field(init=False, repr=False)
    joined: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_emb = np.ascontiguousarray(self.user_emb, dtype=np.float32)
        self.item_emb = np.ascontiguousarray(self.item_emb, dtype=np.float32)
        n = self.social.shape[0]
        for name in ("share_counts", "share_joins"):
            if getattr(self, name).shape != (n, n):
                raise ValueError(f"{name} is {getattr(self, name).shape}, social is {(n, n)}")
        if self.user_emb.shape[0] != n or self.seen.shape[0] != n:
            raise ValueError(f"social has {n} users, user_emb {self.user_emb.shape[0]}, "
                             f"seen {self.seen.shape[0]}")
        norm = np.linalg.norm(self.user_emb, axis=1, keepdims=True)
        self.user_unit = self.user_emb / np.maximum(norm, 1e-12)
        self.social = sp.csr_matrix(self.social, dtype=np.float32)
        self.social.sum_duplicates()
        self.seen = binary(self.seen)
        self.friends = binary(self.social + self.social.T)
        self.aa_weights = adamic_adar_weights(self.social)
        self.received = np.asarray(self.share_counts.sum(axis=0), dtype=np.float64).ravel()
        self.joined = np.asarray(self.share_joins.sum(axis=0), dtype=np.float64).ravel()

    @classmethod
    def from_graph(
        cls,
        data: GraphData,
        user_emb: np.ndarray,
        item_emb: np.ndarray,
        shares: pd.DataFrame | None = None,
        cut: int | None = None,
        half_life: float | None = None,
        structure: tuple[sp.csr_matrix, sp.csr_matrix] | None = None,
    ) -> ShareContext:
        """The context of a training split: tie strength from ``data.social``, ``data.train`` and
        the share records ``shares`` (default ``data.shares_train``; never valid/test shares).

        ``structure`` is a precomputed ``structural_components(data.social, data.train)``, to
        reuse when building several contexts that differ only in their share records.
        """
        shares = data.shares_train if shares is None else shares
        aa, co = structure or structural_components(data.social, data.train)
        counts, joins, recent = share_components(shares, data.n_users, cut, half_life)
        tie = combine(data.social, TieComponents(counts, joins, recent, aa, co))
        return cls(user_emb, item_emb, tie, counts, joins, data.train)

    @classmethod
    def from_bundle(cls, bundle: Any) -> ShareContext:
        """The context of a :class:`~socialrec.models.bundle.ModelBundle`: ``social`` (tie
        weights), ``seen``, embeddings, and the share history CSRs ``share_counts`` and
        ``share_joins`` (``share_counts.npz`` / ``share_joins.npz`` in the bundle directory)."""
        missing = [n for n in ("share_counts", "share_joins") if getattr(bundle, n, None) is None]
        if missing:
            files = ", ".join(f"{m}.npz" for m in missing)
            raise ValueError(f"the bundle has no {' / '.join(missing)} ({files}): the share "
                             "ranker's history features need them")
        return cls(bundle.user_emb, bundle.item_emb, bundle.social, bundle.share_counts,
                   bundle.share_joins, bundle.seen)


def _two_hop_tie(social: sp.csr_matrix, sharers: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """``max_m social[s, m] · social[m, c]`` for each pair (the strongest two-step path)."""
    out = np.zeros(len(sharers), dtype=np.float64)
    order = np.argsort(sharers, kind="stable")
    bounds = np.flatnonzero(np.r_[True, sharers[order][1:] != sharers[order][:-1], True])
    for lo, hi in itertools.pairwise(bounds):
        s = sharers[order[lo]]
        a, b = social.indptr[s], social.indptr[s + 1]
        if a == b:
            continue
        paths = (sp.diags(social.data[a:b]) @ social[social.indices[a:b]]).tocsc()
        best = sp.csr_matrix(paths.max(axis=0))
        idx = order[lo:hi]
        out[idx] = pair_values(best, np.zeros(len(idx), dtype=np.int64), cands[idx])
    return out


def share_features(ctx: ShareContext, sharers: np.ndarray, items: np.ndarray,
                   cands: Sequence[np.ndarray]) -> np.ndarray:
    """The :data:`FEATURES` of every (sharer, item, candidate), stacked: ``(Σ len(cands), F)``
    float64, rows in the order of the concatenated candidate arrays."""
    lengths = np.array([len(c) for c in cands], dtype=np.int64)
    s = np.repeat(np.asarray(sharers, dtype=np.int64), lengths)
    i = np.repeat(np.asarray(items, dtype=np.int64), lengths)
    c = np.concatenate(cands).astype(np.int64) if len(cands) else np.zeros(0, dtype=np.int64)
    out = np.zeros((len(c), len(FEATURES)), dtype=np.float64)
    if len(c) == 0:
        return out
    col = {name: k for k, name in enumerate(FEATURES)}
    out[:, col["affinity"]] = np.einsum("ij,ij->i", ctx.user_emb[c], ctx.item_emb[i])
    out[:, col["sharer_similarity"]] = np.einsum("ij,ij->i", ctx.user_unit[s], ctx.user_unit[c])
    tie = pair_values(ctx.social, s, c)
    direct = tie > 0
    if (~direct).any():
        tie[~direct] = _two_hop_tie(ctx.social, s[~direct], c[~direct])
    out[:, col["tie_strength"]] = tie
    out[:, col["past_shares"]] = np.log1p(pair_values(ctx.share_counts, s, c))
    out[:, col["past_joins"]] = np.log1p(pair_values(ctx.share_joins, s, c))
    out[:, col["reverse_shares"]] = np.log1p(pair_values(ctx.share_counts, c, s))
    out[:, col["adamic_adar"]] = pairwise_overlap(ctx.friends, ctx.aa_weights, s, c)
    out[:, col["co_interactions"]] = np.log1p(pairwise_overlap(ctx.seen, ctx.seen, s, c))
    out[:, col["friend_popularity"]] = np.log1p(ctx.received[c])
    out[:, col["friend_responsiveness"]] = (ctx.joined[c] + 1.0) / (ctx.received[c] + 2.0)
    out[:, col["two_hop"]] = (~direct).astype(np.float64)
    return out


def split_by_group(values: np.ndarray, cands: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Cut ``values`` (one per candidate, candidate arrays concatenated) back into one array per
    candidate array: the return shape of a :data:`~socialrec.features.shares.ShareScoreFn`."""
    return np.split(values, np.cumsum([len(c) for c in cands])[:-1]) if len(cands) else []
