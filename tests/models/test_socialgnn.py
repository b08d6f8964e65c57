"""The social GNN and plain LightGCN behind the Recommender contract (BPR and full-softmax
losses), plus the samplers that feed them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from conftest import RecommenderContract

from socialrec.features.idmap import IdMap
from socialrec.features.paths import project_dir
from socialrec.models.base import Recommender
from socialrec.models.registry import make_model, model_config
from socialrec.models.socialgnn import (
    BPRSampler,
    LightGCNRecommender,
    SocialGNNConfig,
    SocialGNNRecommender,
    UserBatchSampler,
)

SMALL = dict(embedding_dim=8, num_layers=2, lr=0.05, epochs=60, num_threads=1, seed=0)
# The softmax loss fits the cyclic windows themselves with 8 dimensions (and then may rank the
# item opposite a user's window below the other community): two dimensions, as ALS's factors.
SOFTMAX = {**SMALL, "embedding_dim": 2, "loss": "softmax", "users_per_step": 32,
           "temperature": 0.5, "calibration": "none"}  # calibrated: test_socialgnn_push.py


class TestSocialGNNBPR(RecommenderContract):
    def make_model(self) -> Recommender:
        return SocialGNNRecommender(**SMALL, loss="bpr", batch_size=256, social_weight=0.5)


class TestSocialGNNSoftmax(RecommenderContract):
    def make_model(self) -> Recommender:
        return SocialGNNRecommender(**SOFTMAX, social_weight=0.5)


class TestSocialGNNSampledSoftmax(RecommenderContract):
    def make_model(self) -> Recommender:
        return SocialGNNRecommender(**SOFTMAX, softmax_negatives=8, social_weight=0.5)


class TestSocialGNNSoftmaxItemBias(RecommenderContract):
    def make_model(self) -> Recommender:
        return SocialGNNRecommender(**SOFTMAX, item_bias=True, social_weight=0.5)


class TestSocialGNNIALS(RecommenderContract):
    def make_model(self) -> Recommender:
        return SocialGNNRecommender(**{**SOFTMAX, "loss": "ials", "l2": 0.1}, social_weight=0.5)


class TestLightGCN(RecommenderContract):
    def make_model(self) -> Recommender:
        return LightGCNRecommender(**SOFTMAX, social_weight=1.0)

    def test_has_no_social_edges(self, tiny_world):
        model = self.make_model()
        assert model.config.social_weight == 0.0
        n_users = tiny_world.data.n_users
        user_block = model.adjacency(tiny_world.data).to_dense()[:n_users, :n_users]
        assert user_block.abs().sum() == 0


def test_user_batches_cover_every_training_positive_once():
    train = sp.random(50, 30, density=0.2, format="csr", random_state=np.random.default_rng(1))
    train.data[:] = 1.0
    seen = []
    for users, rows, items, weights in UserBatchSampler(train, seed=3).epoch(7):
        assert (weights == 1).all()
        assert len(users) <= 7 and len(rows) == len(items)
        seen += [(int(users[r]), int(i)) for r, i in zip(rows, items, strict=True)]
    coo = train.tocoo()
    assert sorted(seen) == sorted(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


def test_bpr_negatives_rarely_hit_training_positives():
    rng = np.random.default_rng(0)
    train = sp.random(200, 50, density=0.3, format="csr", random_state=rng)
    sampler = BPRSampler(train, seed=0)
    users, pos, neg = next(sampler.epoch(4096))
    assert sampler.is_positive(users.numpy(), pos.numpy()).all()
    assert sampler.is_positive(users.numpy(), neg.numpy()).mean() < 0.15  # ~0.3² after one redraw


@pytest.mark.parametrize("bad", [dict(loss="hinge"), dict(cl_mode="sgl"), dict(neg_candidates=0),
                                 dict(softmax_negatives=-1), dict(confidence_weighting="tfidf"),
                                 dict(item_bias=True, loss="bpr"),
                                 dict(item_bias_init="uniform"), dict(cl_layer=3)])
def test_bad_parameters_are_refused_with_their_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SocialGNNRecommender(**bad)


def test_an_unknown_parameter_is_refused_naming_the_nearest_one():
    with pytest.raises(ValueError, match=r"unknown parameter 'embeding_dim' \(did you mean "
                                         r"'embedding_dim'\?\)"):
        SocialGNNRecommender(embeding_dim=8)
    with pytest.raises(ValueError, match=r"bad parameters for model 'lightgcn': unknown "
                                         r"parameter 'layers' \(did you mean 'num_layers'\?\)"):
        make_model("lightgcn", {"lightgcn": {"layers": 2}})


def test_config_defaults_are_those_of_defaults_yaml():
    """The typed defaults and configs/defaults.yaml say the same (a model built without a config
    section trains as `socialrec train` would)."""
    section = yaml.safe_load((project_dir() / "configs" / "defaults.yaml").read_text())["model"]
    for name in ("socialgnn", "als", "bpr", "popularity"):
        defaults = model_config(name)()
        for key, value in (section[name] or {}).items():
            assert getattr(defaults, key) == value, f"model.{name}.{key}"


def test_make_model_gives_lightgcn_socialgnn_settings_and_the_validator():
    def validator(user_emb: np.ndarray, item_emb: np.ndarray) -> float:
        return 0.0

    section = {"socialgnn": {"lr": 0.03, "social_weight": 0.5}, "lightgcn": {"num_layers": 3}}
    model = make_model("lightgcn", section, validator=validator)
    assert isinstance(model, LightGCNRecommender) and model.validator is validator
    assert model.config == SocialGNNConfig(lr=0.03, num_layers=3, social_weight=0.0)


@pytest.mark.parametrize("loss", ["softmax", "bpr", "ials"])
def test_an_item_without_training_edges_scores_zero(tiny_world, loss):
    """Its initial vector is noise (the cosine would make it a full-length random direction): it
    must not outrank the items the model learned, whatever the seed."""
    data = tiny_world.data
    items = IdMap([*data.items.ids, "NEW"])

    def widen(m: sp.csr_matrix) -> sp.csr_matrix:
        return sp.hstack([m, sp.csr_matrix((m.shape[0], 1), dtype=m.dtype)], format="csr")

    wider = dataclasses.replace(
        data, items=items, train=widen(data.train), valid=widen(data.valid),
        test=widen(data.test), purchases=widen(data.purchases),
        item_category=np.append(data.item_category, -1))
    new = items.get("NEW")
    params = {**SOFTMAX, "loss": loss} if loss != "bpr" else {**SMALL, "loss": "bpr",
                                                                "batch_size": 256}
    for seed in range(3):
        model = SocialGNNRecommender(**{**params, "seed": seed}).fit(wider, show_progress=False)
        assert not model.embeddings()[1][new].any()
        top, _ = model.recommend(tiny_world.community_users["A"], k=3, exclude=wider.train)
        assert new not in top


def test_item_bias_is_served_as_one_more_column_that_ranks_as_the_loss_does(tiny_world):
    """Served score = cos(u, i) + τ·b_i, the loss's logit cos/τ + b_i times τ: same ranking."""
    model = SocialGNNRecommender(**SOFTMAX, item_bias=True).fit(tiny_world.data,
                                                                  show_progress=False)
    user_emb, item_emb = model.embeddings()
    assert user_emb.shape[1] == item_emb.shape[1] == SOFTMAX["embedding_dim"] + 1
    assert (user_emb[:, -1] == 1).all()
    bias = model.module.item_bias.detach().numpy()
    assert np.abs(bias).max() > 0  # learned, not left at zero
    np.testing.assert_allclose(item_emb[:, -1], SOFTMAX["temperature"] * bias, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(user_emb[:, :-1], axis=1), 1, rtol=1e-5)


def test_item_bias_can_start_at_log_popularity(tiny_world):
    """With lr 0 nothing moves, so the served bias column is the initial one: the centred log1p of
    each item's summed loss weight, so the more popular of two items starts higher."""
    data = tiny_world.data
    model = SocialGNNRecommender(**{**SOFTMAX, "lr": 0.0, "epochs": 1}, item_bias=True,
                                 item_bias_init="log_popularity").fit(data, show_progress=False)
    counts = np.asarray(model._loss_weights(data.train).sum(axis=0)).ravel()
    log_counts = np.log1p(counts)
    bias = model.module.item_bias.detach().numpy()
    np.testing.assert_allclose(bias, log_counts - log_counts.mean(), rtol=1e-5, atol=1e-6)
    assert counts.max() > counts.min()  # the tiny world has popular and rare items
    assert bias[counts.argmax()] > bias[counts.argmin()]
    zero = SocialGNNRecommender(**{**SOFTMAX, "lr": 0.0, "epochs": 1}, item_bias=True).fit(
        data, show_progress=False)
    assert not zero.module.item_bias.detach().numpy().any()
