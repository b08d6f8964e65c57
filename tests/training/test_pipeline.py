"""The training pipeline's validation: early stopping and tuning read the validation split under
the protocol the test is read with."""

from __future__ import annotations

import numpy as np
import pytest

from socialrec.evaluation.offline import evaluate_push, evaluate_recommend
from socialrec.training.config import load_config
from socialrec.training.pipeline import prepare, validation_metrics, validator_for


@pytest.fixture(scope="module")
def prepared_and_config():
    overrides = [
        "dataset.name=tinyvalid",
        "dataset.source=synthetic",
        "dataset.synthetic={n_users: 300, n_items: 400, n_communities: 4, seed: 5}",
        "split.method=random_ratio",
        "split.ratios=[0.8, 0.1, 0.1]",
        "model.early_stop_metric=ndcg@20",  # recommend's alone (the default also watches push)
    ]
    config = load_config([], overrides)
    return prepare(config), config


def embeddings(prepared, seed=0):
    rng = np.random.default_rng(seed)
    graph = prepared.graph
    return (rng.normal(size=(graph.n_users, 8)).astype(np.float32),
            rng.normal(size=(graph.n_items, 8)).astype(np.float32))


@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_validation_uses_the_test_protocol(prepared_and_config, protocol):
    prepared, config = prepared_and_config
    config = {**config, "evaluation": {**config["evaluation"], "protocol": protocol,
                                       "negatives": 50}}
    user_emb, item_emb = embeddings(prepared)
    expected = evaluate_recommend(user_emb, item_emb, prepared.graph, target="valid", ks=[20],
                                  protocol=protocol, negatives=50, seed=config["split"]["seed"])
    got = validation_metrics(prepared.graph, config, user_emb, item_emb, [20])
    assert got["ndcg@20"] == pytest.approx(expected["ndcg@20"])
    assert validator_for(prepared.graph, config)(user_emb, item_emb) == pytest.approx(
        expected["ndcg@20"])


def test_sampled_and_full_validation_differ(prepared_and_config):
    # 1 positive among 50 sampled negatives is far easier than among all 400 items: a validator
    # that ignored the protocol would return the same number for both
    prepared, config = prepared_and_config
    user_emb, item_emb = embeddings(prepared)
    values = {}
    for protocol in ("full", "sampled"):
        cfg = {**config, "evaluation": {**config["evaluation"], "protocol": protocol,
                                        "negatives": 50}}
        values[protocol] = validator_for(prepared.graph, cfg)(user_emb, item_emb)
    assert values["sampled"] > values["full"]


@pytest.mark.parametrize("objective", ["push.ndcg@20", "gmean(recommend.ndcg@20, push.ndcg@10)"])
def test_early_stopping_can_watch_push_or_a_combination(prepared_and_config, objective):
    prepared, config = prepared_and_config
    config = {**config, "model": {**config["model"], "early_stop_metric": objective}}
    user_emb, item_emb = embeddings(prepared)
    push = evaluate_push(user_emb, item_emb, prepared.graph, target="valid", ks=[10, 20],
                         seed=config["split"]["seed"])
    recommend = evaluate_recommend(user_emb, item_emb, prepared.graph, target="valid", ks=[20],
                                   seed=config["split"]["seed"])
    expected = (push["ndcg@20"] if objective == "push.ndcg@20"
                else np.sqrt(recommend["ndcg@20"] * push["ndcg@10"]))
    got = validator_for(prepared.graph, config)(user_emb, item_emb)
    assert got == pytest.approx(expected)


def test_the_share_ranker_is_trained_on_the_hops_it_is_evaluated_on(prepared_and_config,
                                                                   monkeypatch):
    """With evaluation.share_hops 2 the ranker must learn from 2-hop candidates too: trained on
    friends only it ranked friends of friends it had never seen, and collapsed."""
    import socialrec.training.pipeline as pipeline
    from socialrec.models.base import EmbeddingModel

    prepared, config = prepared_and_config
    config = {**config, "evaluation": {**config["evaluation"], "share_hops": 2}}
    seen = {}
    real = pipeline.train_share_ranker

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train_share_ranker", spy)
    metrics: dict = {}
    pipeline.make_bundle(prepared, EmbeddingModel(*embeddings(prepared)), config, metrics)
    assert seen["hops"] == 2 and "share_ranker" in metrics
