"""The learned share-partner ranker: a logistic model over the share features
(models/share_features.py), its fitting (:func:`fit_conditional_logit`, :func:`fit_share_ranker`)
on training pairs (:func:`examples`), and its JSON form.

The score is linear in the standardised features and the model is logistic: among one share's
candidates, the chance that a friend is a recipient is the softmax of the scores (a conditional
logit, :func:`fit_conditional_logit`). It is learned from share records (positives: the
recipients of a (sharer, item); negatives: up to 50 of the sharer's other candidates) with an L2
penalty that shrinks it towards ranking by tie strength alone, by scipy's L-BFGS. Which share
records teach it and how the penalty is chosen is training/share_fitting.py's
``train_share_ranker``. A pointwise logistic regression on the same examples ranked worse (it
learns what separates recipients across shares, not within one). Saved as a JSON dict (never
pickle)::

    {"model": "logistic", "features": [...], "weights": [...], "bias": b,
     "mean": [...], "std": [...], "trained_on": {...}, "metrics": {...}}

``score = bias + Σ_f weight_f · (x_f - mean_f) / std_f``.

This module is pure numpy / scipy (no torch), so serving can import it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from socialrec.features.shares import ShareScoreFn, share_candidates
from socialrec.models.share_features import (
    FEATURES,
    ShareContext,
    share_features,
    split_by_group,
)


@dataclass
class ShareRanker:
    """A logistic model over :data:`FEATURES` (or a subset), as saved in ``share_ranker.json``."""

    features: list[str]
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    std: np.ndarray
    trained_on: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def decision(self, x: np.ndarray) -> np.ndarray:
        """``bias + w · standardised(x)`` for rows of the full :data:`FEATURES` matrix."""
        cols = [FEATURES.index(f) for f in self.features]
        return self.bias + ((x[:, cols] - self.mean) / self.std) @ self.weights

    def scorer(self, ctx: ShareContext) -> ShareScoreFn:
        def score(sharers: np.ndarray, items: np.ndarray,
                  cands: list[np.ndarray]) -> list[np.ndarray]:
            return split_by_group(self.decision(share_features(ctx, sharers, items, cands)), cands)

        return score

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "logistic",
            "features": list(self.features),
            "weights": [float(w) for w in self.weights],
            "bias": float(self.bias),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "trained_on": self.trained_on,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "share_ranker") -> ShareRanker:
        """Parse the JSON dict, refusing anything that would score wrongly."""
        if not isinstance(d, dict) or d.get("model") != "logistic":
            raise ValueError(f"{where}: expected a dict with \"model\": \"logistic\", got "
                             f"{d.get('model') if isinstance(d, dict) else type(d).__name__!r}")
        try:
            names = [str(f) for f in d["features"]]
            arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("weights", "mean", "std")}
            bias = float(d["bias"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: missing or non-numeric field: {exc}") from exc
        unknown = [f for f in names if f not in FEATURES]
        if unknown:
            raise ValueError(f"{where}: unknown features {unknown}; known: {list(FEATURES)}")
        for key, arr in arrays.items():
            if arr.shape != (len(names),):
                raise ValueError(f"{where}: {len(names)} features but {key} has shape {arr.shape}")
        if (arrays["std"] <= 0).any():
            raise ValueError(f"{where}: std must be positive")
        return cls(names, arrays["weights"], bias, arrays["mean"], arrays["std"],
                   dict(d.get("trained_on") or {}), dict(d.get("metrics") or {}))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ShareRanker:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON "
                             f"({exc.msg})") from None
        return cls.from_dict(d, where=str(path))


def fit_conditional_logit(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, l2: float = 1.0,
    prior: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The conditional logit of McFadden ("Conditional logit analysis of qualitative choice
    behavior", 1974): within each group (one share's candidates), the chance that a candidate
    is a recipient is the softmax of ``w · standardised(x)`` over the group. Several recipients
    share the target evenly (ListNet's top-one loss: Cao et al., "Learning to rank: from pairwise
    approach to listwise approach", ICML 2007).

    Minimises ``Σ_groups cross-entropy + l2 / 2 · |w - prior|²`` (``prior`` in standardised
    units, default 0) with L-BFGS. Only groups with both a recipient and a non-recipient say
    anything about ranking; the others are left out. No bias: it would cancel within every
    group. Returns ``(weights, mean, std)`` (constant columns get std 1).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(groups, kind="stable")
    x, y, groups = x[order], y[order], np.asarray(groups)[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if len(y) else np.zeros(0, int)
    size = np.diff(np.r_[starts, len(y)])
    n_pos = np.add.reduceat(y, starts) if len(y) else np.zeros(0)
    informative = (n_pos > 0) & (n_pos < size)
    if not informative.any():
        raise ValueError("no share has both a recipient and a non-recipient among its "
                         "candidates: nothing to learn a ranking from")
    rows = np.repeat(informative, size)
    x, y, size, n_pos = x[rows], y[rows], size[informative], n_pos[informative]
    starts = np.r_[0, np.cumsum(size)[:-1]]
    member = np.repeat(np.arange(len(size)), size)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-12] = 1.0
    z = (x - mean) / std
    target = y / n_pos[member]
    prior = np.zeros(x.shape[1]) if prior is None else np.asarray(prior, dtype=np.float64)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = z @ w
        top = np.maximum.reduceat(s, starts)
        e = np.exp(s - top[member])
        total = np.add.reduceat(e, starts)
        value = (top + np.log(total)).sum() - target @ s + 0.5 * l2 * (w - prior) @ (w - prior)
        return value, z.T @ (e / total[member] - target) + l2 * (w - prior)

    res = minimize(loss, prior.copy(), jac=True, method="L-BFGS-B")
    return res.x, mean, std


def fit_share_ranker(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    features: Sequence[str] = FEATURES,
    l2: float = 1.0,
    prior_feature: str | None = "tie_strength",
) -> ShareRanker:
    """Fit the ranker on examples (:func:`examples`) by :func:`fit_conditional_logit`.

    With ``prior_feature``, the weights are shrunk towards ranking by that feature alone (its
    weight from a one-feature fit, every other weight 0) instead of towards 0: a large ``l2``
    gives back the tie-strength baseline, a small one lets the data move every weight.
    """
    cols = [FEATURES.index(f) for f in features]
    prior = None
    if prior_feature is not None and prior_feature in features:
        k = list(features).index(prior_feature)
        alone, *_ = fit_conditional_logit(x[:, [cols[k]]], y, groups, l2=0.0)
        prior = np.zeros(len(cols))
        prior[k] = alone[0]
    w, mean, std = fit_conditional_logit(x[:, cols], y, groups, l2, prior)
    return ShareRanker(list(features), w, 0.0, mean, std,
                       trained_on={"examples": len(y), "positives": int(y.sum()), "l2": l2,
                                   "objective": "conditional logit (softmax over a share's "
                                                "candidates)",
                                   "prior": f"{prior_feature} alone" if prior is not None
                                   else "zero"})


def examples(
    ctx: ShareContext,
    groups: pd.DataFrame,
    hops: int = 1,
    max_negatives: int | None = 50,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``x``, labels ``y`` and group number (row of ``groups``, a frame of
    features/shares.py ``share_groups``) of every training pair: each group's recipients that
    are candidates (positives) and up to ``max_negatives`` of its other candidates (negatives,
    sampled without replacement). Groups with no recipient among their candidates teach nothing
    and are left out."""
    rng = rng or np.random.default_rng(0)
    sharers = groups["sharer"].to_numpy(dtype=np.int64)
    items = groups["item"].to_numpy(dtype=np.int64)
    cands = share_candidates(ctx.social, sharers, hops)
    keep_s, keep_i, keep_c, labels, gid = [], [], [], [], []
    for g, (c, rec) in enumerate(zip(cands, groups["recipients"], strict=True)):
        pos = np.isin(c, rec)
        if not pos.any():
            continue
        neg = c[~pos]
        if max_negatives is not None and len(neg) > max_negatives:
            neg = rng.choice(neg, max_negatives, replace=False)
        chosen = np.r_[c[pos], neg]
        keep_c.append(chosen)
        keep_s.append(sharers[g])
        keep_i.append(items[g])
        labels.append(np.r_[np.ones(pos.sum()), np.zeros(len(neg))])
        gid.append(np.full(len(chosen), g))
    if not keep_c:
        return np.zeros((0, len(FEATURES))), np.zeros(0), np.zeros(0, dtype=np.int64)
    x = share_features(ctx, np.array(keep_s), np.array(keep_i), keep_c)
    return x, np.concatenate(labels), np.concatenate(gid).astype(np.int64)
