"""Popularity, ALS and BPR baselines: the Recommender contract on the tiny world, plus their own
facts (popularity order, implicit's scores reproduced, the registry)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RecommenderContract

from socialrec.models import registry
from socialrec.models.base import Recommender
from socialrec.models.baselines import ALSModel, BPRModel, PopularityConfig, PopularityModel
from socialrec.models.registry import make_model, register_model, registered_models


class TestPopularity(RecommenderContract):
    def make_model(self) -> Recommender:
        return PopularityModel()

    def test_known_right_answer(self, fitted, tiny_world):
        """Counts are A0 23, B0 22, A1 21, the rest 20 (conftest); f2 has seen A0."""
        w = tiny_world
        items, _ = fitted.recommend(np.array([w.user("f2")]), 2, exclude=w.data.train)
        assert items[0].tolist() == [w.item("B0"), w.item("A1")]
        # Without exclusion every user gets the same list, most popular first.
        items, _ = fitted.recommend(np.array([w.user("a0"), w.user("b7")]), 3)
        assert items.tolist() == [[w.item("A0"), w.item("B0"), w.item("A1")]] * 2

    def test_ties_go_to_the_lower_item_id(self, fitted, tiny_world):
        items, _ = fitted.recommend(np.array([0]), tiny_world.data.n_items)
        twenty = items[0][3:]  # every item with 20 training users
        assert twenty.tolist() == sorted(twenty.tolist())

    def test_weighted_counts_event_weights(self, tiny_world):
        model = PopularityModel(weighted=True).fit(tiny_world.data)
        np.testing.assert_allclose(model.counts, np.asarray(tiny_world.data.train.sum(axis=0))[0])


class TestALS(RecommenderContract):
    def make_model(self) -> Recommender:
        # Two factors = the two communities (right answer on 8 of 8 seeds tried); with more,
        # ALS also fits the cyclic windows and may push an unseen community item down.
        return ALSModel(factors=2, iterations=10, num_threads=1)

    def test_confidence_is_one_plus_alpha_weight(self, tiny_world):
        train = tiny_world.data.train
        conf = ALSModel(alpha=3.0).confidence(train)
        np.testing.assert_allclose(conf.data, 1.0 + 3.0 * train.data)
        binary = ALSModel(alpha=3.0, weighting="binary").confidence(train)
        np.testing.assert_allclose(binary.data, 4.0)

    def test_same_seed_same_factors(self, fitted, tiny_world):
        again = self.make_model().fit(tiny_world.data, show_progress=False)
        np.testing.assert_array_equal(again.embeddings()[0], fitted.embeddings()[0])

    def test_bad_weighting_is_refused(self):
        with pytest.raises(ValueError, match="weighting"):
            ALSModel(weighting="tfidf")


class TestBPR(RecommenderContract):
    def make_model(self) -> Recommender:
        # Right answer on 8 of 8 seeds tried.
        return BPRModel(factors=8, learning_rate=0.05, iterations=200, num_threads=1)

    def test_inner_product_reproduces_implicit_scores(self, tiny_world):
        """The bias column is kept: our embeddings' inner product equals implicit's own scores."""
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        data = tiny_world.data
        pattern = data.train.copy()
        pattern.data[:] = 1.0
        ref = BayesianPersonalizedRanking(factors=8, iterations=20, random_state=5, num_threads=1)
        ref.fit(pattern, show_progress=False)
        ours = BPRModel(factors=8, iterations=20, learning_rate=0.01, seed=5, num_threads=1)
        user_emb, item_emb = ours.fit(data, show_progress=False).embeddings()
        assert user_emb.shape[1] == 9
        np.testing.assert_array_equal(user_emb[:, -1], 1.0)  # the column that carries item bias
        users = np.arange(data.n_users)
        ids, scores = ref.recommend(users, pattern[users], N=4)
        ours_scores = np.take_along_axis(user_emb @ item_emb.T, ids, axis=1)
        np.testing.assert_allclose(ours_scores, scores, rtol=1e-5, atol=1e-6)


def test_make_model_builds_each_baseline_with_its_params():
    assert isinstance(make_model("popularity", {}), PopularityModel)
    als = make_model("als", {"als": {"factors": 16, "alpha": 2.0}})
    assert isinstance(als, ALSModel) and als.config.factors == 16 and als.config.alpha == 2.0
    bpr = make_model("bpr", {"bpr": {"iterations": 3}})
    assert isinstance(bpr, BPRModel) and bpr.config.iterations == 3
    assert {"popularity", "als", "bpr"} <= set(registered_models())


def test_make_model_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"unknown model 'svd'.*als"):
        make_model("svd", {})
    with pytest.raises(ValueError, match=r"bad parameters for model 'als'.*factor"):
        make_model("als", {"als": {"factor": 16}})


def test_register_model_extends_the_registry(monkeypatch):
    registered_models()  # the real models first, then a copy this test may extend
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @register_model("test-constant", PopularityConfig)
    class Constant(PopularityModel):
        name = "test-constant"

    assert isinstance(make_model("test-constant", {}), Constant)
    with pytest.raises(ValueError, match="already registered"):
        register_model("test-constant", PopularityConfig)(PopularityModel)


def test_embeddings_before_fit_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not fitted"):
        ALSModel().embeddings()
