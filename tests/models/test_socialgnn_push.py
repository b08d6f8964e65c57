"""The social GNN's push remedies: the two-sided objective (a learned user bias served as one more
column) and the post-hoc calibration; neither changes any user's item ranking's contract."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RecommenderContract
from scipy.special import logsumexp
from test_socialgnn import SOFTMAX

from socialrec.models.base import Recommender
from socialrec.models.socialgnn import SocialGNNRecommender, calibrate_for_push


class TestSocialGNNTwoSided(RecommenderContract):
    def make_model(self) -> Recommender:
        return SocialGNNRecommender(**SOFTMAX, item_bias=True, push_weight=1.0,
                                    social_weight=0.5)


class TestSocialGNNTwoSidedSampledUsers(RecommenderContract):
    def make_model(self) -> Recommender:
        return SocialGNNRecommender(**SOFTMAX, push_weight=0.5, push_negatives=16)


class TestSocialGNNCalibrated(RecommenderContract):
    def make_model(self) -> Recommender:
        return SocialGNNRecommender(**{**SOFTMAX, "calibration": "activity"}, item_bias=True)


def test_the_user_bias_is_served_as_one_more_column(tiny_world):
    """Served score = cos + τ·b_i + τ·b_u: users carry τ·b_u against a column of ones."""
    model = SocialGNNRecommender(**SOFTMAX, item_bias=True, push_weight=1.0).fit(
        tiny_world.data, show_progress=False)
    user_emb, item_emb = model.embeddings()
    dim = SOFTMAX["embedding_dim"]
    assert user_emb.shape[1] == item_emb.shape[1] == dim + 2
    bias = model.module.user_bias.detach().numpy()
    assert np.abs(bias).max() > 0  # learned by the item-side term
    np.testing.assert_allclose(user_emb[:, -1], SOFTMAX["temperature"] * bias, rtol=1e-6)
    assert (item_emb[:, -1] == 1).all() and (user_emb[:, dim] == 1).all()


def test_calibration_scores_log_p_i_given_u_plus_log_activity_and_keeps_item_rankings():
    rng = np.random.default_rng(0)
    users = rng.normal(size=(50, 4)).astype(np.float32)
    items = rng.normal(size=(30, 4)).astype(np.float32)
    activity = np.log1p(rng.integers(0, 40, size=50)).astype(np.float32)
    t = 0.2
    cal_users, cal_items = calibrate_for_push(users, items, activity, t)
    served = cal_users @ cal_items.T
    logits = (users @ items.T).astype(np.float64) / t
    log_p = logits - logsumexp(logits, axis=1, keepdims=True)
    np.testing.assert_allclose(served, t * (log_p + activity[:, None]), rtol=1e-4, atol=1e-4)
    # a user's items rank as before (a constant per user was added) ...
    np.testing.assert_array_equal(np.argsort(-served, axis=1, kind="stable")[:, :10],
                                  np.argsort(-(users @ items.T), axis=1, kind="stable")[:, :10])
    # ... and blocks of a few users give the same numbers as all users at once
    small = calibrate_for_push(users, items, activity, t, chunk_entries=64)
    np.testing.assert_allclose(small[0], cal_users, rtol=1e-6)
    np.testing.assert_array_equal(small[1], cal_items)


def test_the_item_side_term_needs_the_softmax_loss():
    with pytest.raises(ValueError, match="needs loss 'softmax'"):
        SocialGNNRecommender(push_weight=1.0, loss="bpr")


def test_calibration_is_the_default_and_leaves_other_losses_as_trained(tiny_world):
    """Calibration (the default) applies to the softmax's log-probabilities; an iALS model's
    scores are served as trained: no extra column."""
    assert SocialGNNRecommender().config.calibration == "activity"
    ials = SocialGNNRecommender(**{**SOFTMAX, "loss": "ials", "l2": 0.1, "epochs": 2,
                                   "calibration": "activity"}).fit(tiny_world.data,
                                                                   show_progress=False)
    assert ials.embeddings()[0].shape[1] == SOFTMAX["embedding_dim"]
