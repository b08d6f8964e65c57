"""The blend of two models' scores, served as one inner product (models/blend.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RecommenderContract
from test_socialgnn import SOFTMAX

from socialrec.models.base import Recommender
from socialrec.models.blend import BlendConfig, BlendRecommender, blended, score_spread
from socialrec.models.registry import make_model

SECTION = {"socialgnn": SOFTMAX, "als": {"factors": 2, "iterations": 10, "regularization": 0.1,
                                         "num_threads": 1}}


class TestBlend(RecommenderContract):
    def make_model(self) -> Recommender:
        return BlendRecommender(weight=0.5, model_section=SECTION)


def test_the_served_score_is_the_weighted_sum_of_the_scaled_scores():
    rng = np.random.default_rng(0)
    parts = [(rng.normal(size=(20, 3)), rng.normal(size=(15, 3))),
             (rng.normal(size=(20, 4)) * 7, rng.normal(size=(15, 4)))]
    spreads = [score_spread(u, i, 5000, 1) for u, i in parts]
    users, items = blended(parts, spreads, 0.3)
    expected = (0.7 * parts[0][0] @ parts[0][1].T / spreads[0]
                + 0.3 * parts[1][0] @ parts[1][1].T / spreads[1])
    np.testing.assert_allclose(users @ items.T, expected, rtol=1e-4, atol=1e-5)
    assert spreads[1] > 3 * spreads[0]  # the second model's scores spread ~7x wider


def test_the_weight_is_the_validation_best(tiny_world):
    """The validator is called once per weight (and by the GNN part per epoch); the weight with
    the highest value is kept."""
    blend_calls = []

    def validator(user_emb: np.ndarray, item_emb: np.ndarray) -> float:
        if user_emb.shape[1] == 2 + 2:  # the blend (2 GNN + 2 ALS columns), not the GNN alone
            blend_calls.append(user_emb)
        return -abs(len(blend_calls) - 3)  # the third weight tried wins

    model = make_model("blend", {**SECTION, "blend": {"weights": [0.0, 0.2, 0.5, 1.0]}},
                       validator=validator)
    assert isinstance(model, BlendRecommender)
    model.fit(tiny_world.data, show_progress=False)
    assert model.weight == 0.5 and list(model.weight_scores) == [0.0, 0.2, 0.5, 1.0]
    assert len(blend_calls) == 4 and not blend_calls[0][:, 2:].any()  # w = 0: no ALS columns
    # every part got the blend's seed
    assert all(part.config.seed == 2026 for part in model.parts)


def test_the_two_models_must_differ():
    with pytest.raises(ValueError, match="two different models"):
        BlendConfig(models=["als", "als"])
