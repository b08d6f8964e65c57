"""The learned share-partner ranker (models/share_ranker.py): the conditional logit, its prior,
and the JSON round trip. How the ranker is fitted on a split (which shares, which L2) is
tests/training/test_share_fitting.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from socialrec.features.graph import GraphData
from socialrec.features.shares import share_candidates, share_groups
from socialrec.models.share_features import FEATURES, ShareContext
from socialrec.models.share_ranker import (
    ShareRanker,
    examples,
    fit_conditional_logit,
    fit_share_ranker,
)
from tests.support.share_worlds import DAY, loyal_world, random_embeddings


@pytest.fixture(scope="module")
def loyal() -> tuple[GraphData, np.ndarray, np.ndarray, ShareRanker]:
    """The loyal-friend world, random embeddings, and a ranker fitted on its validation shares."""
    data = loyal_world()
    user_emb, item_emb = random_embeddings(data)
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    ranker = fit_share_ranker(*examples(ctx, share_groups(data.shares_valid)))
    return data, user_emb, item_emb, ranker


def _choices(weights: np.ndarray, n_groups: int, size: int, seed: int = 0):
    """Groups of ``size`` candidates; one recipient each, drawn by softmax(weights · x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_groups * size, len(weights)))
    s = (x @ weights).reshape(n_groups, size)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    chosen = (p.cumsum(axis=1) > rng.random((n_groups, 1))).argmax(axis=1)
    y = np.zeros((n_groups, size))
    y[np.arange(n_groups), chosen] = 1
    return x, y.ravel(), np.repeat(np.arange(n_groups), size)


def test_conditional_logit_recovers_known_weights():
    x, y, groups = _choices(np.array([1.5, -1.0, 0.0]), n_groups=4000, size=8)
    w, _, std = fit_conditional_logit(x, y, groups, l2=1e-3)
    # weights are per standardised feature: divide by std for raw units
    np.testing.assert_allclose(w / std, [1.5, -1.0, 0.0], atol=0.1)
    # a strong L2 pulls towards the prior
    w_zero, *_ = fit_conditional_logit(x, y, groups, l2=1e6)
    np.testing.assert_allclose(w_zero, 0.0, atol=0.01)
    w_prior, *_ = fit_conditional_logit(x, y, groups, l2=1e6, prior=np.array([0.0, 0.0, 2.0]))
    np.testing.assert_allclose(w_prior, [0.0, 0.0, 2.0], atol=0.01)


def test_conditional_logit_ignores_shares_without_a_contrast():
    x, y, groups = _choices(np.array([1.0, 0.0]), n_groups=500, size=5)
    w, *_ = fit_conditional_logit(x, y, groups)
    # add groups where every candidate is a recipient, and single-candidate groups: no change
    x2 = np.r_[x, np.full((6, 2), 9.0)]
    y2 = np.r_[y, np.ones(6)]
    g2 = np.r_[groups, [1000, 1000, 1000, 1001, 1002, 1003]]
    np.testing.assert_allclose(fit_conditional_logit(x2, y2, g2)[0], w, atol=1e-6)
    with pytest.raises(ValueError, match="nothing to learn"):
        fit_conditional_logit(np.ones((4, 2)), np.ones(4), np.arange(4))


def test_a_huge_l2_gives_back_the_tie_strength_ranking(loyal):
    data, user_emb, item_emb, _ = loyal
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    x, y, g = examples(ctx, share_groups(data.shares_valid))
    ranker = fit_share_ranker(x, y, g, l2=1e9)
    assert ranker.trained_on["prior"] == "tie_strength alone"
    others = [w for f, w in zip(ranker.features, ranker.weights, strict=True)
              if f != "tie_strength"]
    assert np.abs(others).max() < 1e-3
    assert ranker.weights[ranker.features.index("tie_strength")] > 0


# --- JSON -----------------------------------------------------------------------------------------


def test_save_load_round_trip_through_json(loyal, tmp_path):
    data, user_emb, item_emb, ranker = loyal
    path = ranker.save(tmp_path / "share_ranker.json")
    raw = json.loads(path.read_text())
    assert raw["model"] == "logistic" and raw["features"] == list(FEATURES)
    assert {"weights", "bias", "mean", "std", "trained_on", "metrics"} <= set(raw)
    loaded = ShareRanker.load(path)
    assert loaded.to_dict() == ranker.to_dict()
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    sharers, items = np.array([0, 1]), np.array([0, 1])
    cands = share_candidates(ctx.social, sharers)
    for a, b in zip(loaded.scorer(ctx)(sharers, items, cands),
                    ranker.scorer(ctx)(sharers, items, cands), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_json_is_refused_with_a_clear_message(loyal, tmp_path):
    *_, ranker = loyal
    good = ranker.to_dict()
    with pytest.raises(ValueError, match="unknown features"):
        ShareRanker.from_dict({**good, "features": ["shoe_size", *good["features"][1:]]})
    with pytest.raises(ValueError, match="weights has shape"):
        ShareRanker.from_dict({**good, "weights": good["weights"][:-1]})
    with pytest.raises(ValueError, match="logistic"):
        ShareRanker.from_dict({**good, "model": "gbdt"})
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": "logistic",\n  "features": [}')
    with pytest.raises(ValueError, match=r"broken.json: line 2, column"):
        ShareRanker.load(broken)
