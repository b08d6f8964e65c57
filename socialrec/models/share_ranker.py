"""Share-partner ranking: "this user shares this item — which friends should receive it?"

Candidates are the sharer's friends (out-edges of the social graph; ``hops=2`` adds friends of
friends, never the sharer). Every candidate ``f`` of a share ``(s, i)`` gets the features
:data:`FEATURES`, all from training-period data:

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

The score is linear in the standardised features and the model is logistic: among one share's
candidates, the chance that a friend is a recipient is the softmax of the scores (a conditional
logit, :func:`fit_conditional_logit`). It is learned from share records (positives: the
recipients of a (sharer, item); negatives: up to 50 of the sharer's other candidates) with an L2
penalty that shrinks it towards ranking by tie strength alone, by scipy's L-BFGS. By default the
examples are the *validation* share records, described by the training-period context exactly
as test records will be (:func:`train_share_ranker` says why not the training records). A
pointwise logistic regression on the same examples ranked worse (it learns what separates
recipients across shares, not within one). Saved as a JSON dict (never pickle)::

    {"model": "logistic", "features": [...], "weights": [...], "bias": b,
     "mean": [...], "std": [...], "trained_on": {...}, "metrics": {...}}

``score = bias + Σ_f weight_f · (x_f - mean_f) / std_f``.

Baselines share the scoring interface ``score_fn(sharers, items, candidates) -> scores`` of
``evaluation.offline.evaluate_share``: tie strength alone, friend popularity, embedding affinity,
random friend.

This module is pure numpy / scipy (no torch), so serving can import it: build a
:class:`ShareContext` from a bundle and call :func:`share_features` / :class:`ShareRanker`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize

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

#: score_fn(sharers, items, candidates) -> one score array per candidate array.
ShareScoreFn = Callable[[np.ndarray, np.ndarray, list[np.ndarray]], list[np.ndarray]]


# --- context: what the features are computed from ------------------------------------------------


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


def candidates(social: sp.csr_matrix, sharers: np.ndarray, hops: int = 1) -> list[np.ndarray]:
    """Each sharer's friends (out-edges of ``social``; ``hops=2``: and friends of friends),
    sorted by user id, never the sharer — the candidate sets of ``evaluate_share``."""
    if hops not in (1, 2):
        raise ValueError(f"hops must be 1 or 2, got {hops}")
    sharers = np.asarray(sharers, dtype=np.int64)
    # only the sharers' rows are binarised for one hop: serving calls this per request
    reach = binary(social[sharers])
    if hops == 2:
        reach = reach + reach @ binary(social)
    reach = reach.tocsr()
    reach.sum_duplicates()
    reach.sort_indices()
    rows = np.split(reach.indices.astype(np.int64), reach.indptr[1:-1])
    return [c[c != s] for s, c in zip(sharers, rows, strict=True)]


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


def _split(values: np.ndarray, cands: Sequence[np.ndarray]) -> list[np.ndarray]:
    return np.split(values, np.cumsum([len(c) for c in cands])[:-1]) if len(cands) else []


# --- the learned ranker ---------------------------------------------------------------------------


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
            return _split(self.decision(share_features(ctx, sharers, items, cands)), cands)

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


# --- training examples ----------------------------------------------------------------------------


def share_groups(shares: pd.DataFrame) -> pd.DataFrame:
    """One row per (sharer, item) with the array of its distinct ``recipients`` (unknown ids, -1,
    left out)."""
    ok = (shares["sharer"] >= 0) & (shares["item"] >= 0) & (shares["recipient"] >= 0)
    g = (shares[ok].groupby(["sharer", "item"], sort=True)["recipient"]
         .apply(lambda r: np.unique(r.to_numpy(dtype=np.int64))).reset_index())
    return g.rename(columns={"recipient": "recipients"})


def _sample_groups(groups: pd.DataFrame, max_groups: int | None,
                   rng: np.random.Generator) -> pd.DataFrame:
    if max_groups is not None and len(groups) > max_groups:
        groups = groups.iloc[np.sort(rng.choice(len(groups), max_groups, replace=False))]
    return groups.reset_index(drop=True)


def _record_folds(shares: pd.DataFrame, groups: pd.DataFrame, fold_of_group: np.ndarray
                  ) -> np.ndarray:
    """The fold of each share record: its (sharer, item) group's; NaN for groups not drawn."""
    key = pd.MultiIndex.from_frame(shares[["sharer", "item"]])
    group_key = pd.MultiIndex.from_frame(groups[["sharer", "item"]])
    return pd.Series(fold_of_group, index=group_key).reindex(key).to_numpy(dtype=np.float64)


def examples(
    ctx: ShareContext,
    groups: pd.DataFrame,
    hops: int = 1,
    max_negatives: int | None = 50,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``x``, labels ``y`` and group number (row of ``groups``) of every training pair:
    each group's recipients that are candidates (positives) and up to ``max_negatives`` of its
    other candidates (negatives, sampled without replacement). Groups with no recipient among
    their candidates teach nothing and are left out."""
    rng = rng or np.random.default_rng(0)
    sharers = groups["sharer"].to_numpy(dtype=np.int64)
    items = groups["item"].to_numpy(dtype=np.int64)
    cands = candidates(ctx.social, sharers, hops)
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


def cross_fitted_examples(
    data: GraphData,
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    folds: int = 5,
    hops: int = 1,
    max_negatives: int | None = 50,
    max_groups: int | None = None,
    cut: int | None = None,
    half_life: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training pairs from ``data.shares_train`` whose share-history features do not see their
    own share: the (sharer, item) groups are cut into ``folds`` and each fold's features are
    computed from a context built on the other folds' records (cross-fitting).

    What cross-fitting cannot undo: the interactions a training share itself caused (the
    recipient's join / purchase of the item) are in ``data.train``, so the embeddings and
    ``co_interactions`` of a training positive still remember its share. That is why
    :func:`train_share_ranker` fits on the validation shares by default.
    """
    rng = np.random.default_rng(seed)
    shares = data.shares_train
    groups = _sample_groups(share_groups(shares), max_groups, rng)
    fold_of_group = rng.integers(0, folds, len(groups))
    record_fold = _record_folds(shares, groups, fold_of_group)
    structure = structural_components(data.social, data.train)
    xs, ys, gs = [], [], []
    for k in range(folds):
        # records of groups not drawn (NaN fold) stay in every fold's history
        history = shares[record_fold != k]
        ctx = ShareContext.from_graph(data, user_emb, item_emb, history, cut, half_life,
                                      structure)
        in_fold = np.flatnonzero(fold_of_group == k)
        x, y, g = examples(ctx, groups.iloc[in_fold], hops, max_negatives, rng)
        xs.append(x)
        ys.append(y)
        gs.append(in_fold[g] if len(g) else g)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


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


def train_share_ranker(
    data: GraphData,
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    fit_on: str = "valid",
    l2_grid: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0),
    hops: int = 1,
    folds: int = 5,
    max_negatives: int | None = 50,
    max_groups: int | None = 50_000,
    cut: int | None = None,
    half_life: float | None = None,
    seed: int = 0,
    select_metric: str = "mrr@10",
) -> ShareRanker:
    """Learn the ranker's weights from share records; test shares are never read.

    ``fit_on="valid"`` (default): the examples are the validation share records, described by
    the training-period context, exactly as test records will be (their recipients' reactions
    are in no training table, unlike those of training shares: see
    :func:`cross_fitted_examples`); ``l2`` is chosen by ``select_metric`` over ``folds``-fold
    cross-validation by (sharer, item) group, then the model is refitted on every group.

    ``fit_on="train"``: the examples are the training share records with cross-fitted history
    features; ``l2`` is chosen by ``select_metric`` on the validation shares.
    """
    from socialrec.evaluation.offline import evaluate_share

    if fit_on not in ("valid", "train"):
        raise ValueError(f"fit_on must be 'valid' or 'train', got {fit_on!r}")
    if len(data.shares_valid) == 0:
        raise ValueError("the split has no validation share records: the share ranker is "
                         "fitted (fit_on='valid') or tuned (fit_on='train') on them")
    rng = np.random.default_rng(seed)
    k = int(select_metric.split("@")[1])
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=cut, half_life=half_life)

    def score(ranker: ShareRanker, shares: pd.DataFrame) -> tuple[float, int]:
        held_out = replace(data, shares_valid=shares)
        r = evaluate_share(ranker.scorer(ctx), held_out, "valid", ks=[k], hops=hops)
        return r[select_metric], r["n_queries"]

    values = []
    if fit_on == "valid":
        groups = _sample_groups(share_groups(data.shares_valid), max_groups, rng)
        x, y, g = examples(ctx, groups, hops, max_negatives, rng)
        fold_of_group = rng.integers(0, folds, len(groups))
        record_fold = _record_folds(data.shares_valid, groups, fold_of_group)
        for l2 in l2_grid:
            per_fold = []
            for f in range(folds):
                train_rows = fold_of_group[g] != f
                ranker = fit_share_ranker(x[train_rows], y[train_rows], g[train_rows], l2=l2)
                per_fold.append(score(ranker, data.shares_valid[record_fold == f]))
            metric, n = np.array([m for m in per_fold if m[1] > 0], dtype=np.float64).T
            values.append(float((metric * n).sum() / n.sum()))
        best = fit_share_ranker(x, y, g, l2=l2_grid[int(np.argmax(values))])
        selected_by = f"valid.{select_metric}, {folds}-fold cross-validation by (sharer, item)"
    else:
        x, y, g = cross_fitted_examples(data, user_emb, item_emb, folds, hops, max_negatives,
                                        max_groups, cut, half_life, seed)
        fitted = [fit_share_ranker(x, y, g, l2=l2) for l2 in l2_grid]
        values = [score(r, data.shares_valid)[0] for r in fitted]
        best = fitted[int(np.argmax(values))]
        selected_by = f"valid.{select_metric}"
    best.metrics[f"valid.{select_metric}"] = float(max(values))
    best.trained_on.update(
        fit_on=f"{fit_on} shares", hops=hops, folds=folds, max_negatives=max_negatives,
        groups=len(np.unique(g)), selected_by=selected_by,
        by_l2={str(l2): float(v) for l2, v in zip(l2_grid, values, strict=True)})
    return best


# --- baselines ------------------------------------------------------------------------------------


def feature_scorer(ctx: ShareContext, name: str) -> ShareScoreFn:
    """Rank by one feature of :data:`FEATURES` alone (higher first)."""
    col = FEATURES.index(name)

    def score(sharers: np.ndarray, items: np.ndarray,
              cands: list[np.ndarray]) -> list[np.ndarray]:
        return _split(share_features(ctx, sharers, items, cands)[:, col], cands)

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
