"""Share-partner baselines the learned ranker (models/share_ranker.py) is measured against:
tie strength alone, friend popularity, embedding affinity, random friend. Each is a
:data:`~socialrec.features.shares.ShareScoreFn`, the interface of
``evaluation.offline.evaluate_share``.
"""

from __future__ import annotations

import numpy as np

from socialrec.features.shares import ShareScoreFn
from socialrec.models.share_features import (
    FEATURES,
    ShareContext,
    share_features,
    split_by_group,
)


def feature_scorer(ctx: ShareContext, name: str) -> ShareScoreFn:
    """Rank by one feature of :data:`FEATURES` alone (higher first)."""
    col = FEATURES.index(name)

    def score(sharers: np.ndarray, items: np.ndarray,
              cands: list[np.ndarray]) -> list[np.ndarray]:
        return split_by_group(share_features(ctx, sharers, items, cands)[:, col], cands)

    return score


def tie_strength_scorer(ctx: ShareContext) -> ShareScoreFn:
    """The combined tie weight alone (features/tie_strength.py)."""
    return feature_scorer(ctx, "tie_strength")


def affinity_scorer(ctx: ShareContext) -> ShareScoreFn:
    """Embedding affinity alone: the friend most likely to want the item."""
    return feature_scorer(ctx, "affinity")


def friend_popularity_scorer(ctx: ShareContext) -> ShareScoreFn:
    """How many training shares the friend received plus how many they joined."""
    def score(sharers: np.ndarray, items: np.ndarray,
              cands: list[np.ndarray]) -> list[np.ndarray]:
        return [ctx.received[c] + ctx.joined[c] for c in cands]

    return score


def random_scorer(seed: int = 0) -> ShareScoreFn:
    """A random order of the friends (seeded)."""
    rng = np.random.default_rng(seed)

    def score(sharers: np.ndarray, items: np.ndarray,
              cands: list[np.ndarray]) -> list[np.ndarray]:
        return [rng.random(len(c)) for c in cands]

    return score
