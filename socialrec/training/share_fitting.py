"""Fitting the share-partner ranker (models/share_ranker.py) on a training split: which share
records teach it and how its L2 penalty is chosen. It lives in training because the choice is
made by the offline metric itself (``evaluation.offline.evaluate_share``), which models may not
import.

By default the examples are the *validation* share records, described by the training-period
context exactly as test records will be (:func:`train_share_ranker` says why not the training
records); ``l2`` is chosen by MRR@10 over cross-validation by (sharer, item) group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from socialrec.evaluation.offline import evaluate_share
from socialrec.features.graph import GraphData
from socialrec.features.shares import share_groups
from socialrec.features.tie_strength import structural_components
from socialrec.models.share_features import ShareContext
from socialrec.models.share_ranker import ShareRanker, examples, fit_share_ranker


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
        return r[select_metric], int(r["n_queries"])

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
