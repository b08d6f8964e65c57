"""Fitting the share-partner ranker on a split (training/share_fitting.py), on the loyal-friend
world (tests/support/share_worlds.py): the friend who joined every past share must rank first,
and no test share may be read."""

from __future__ import annotations

import numpy as np
import pytest

from socialrec.evaluation.offline import evaluate_share
from socialrec.features.graph import GraphData
from socialrec.models.share_baselines import affinity_scorer, random_scorer
from socialrec.models.share_features import ShareContext
from socialrec.models.share_ranker import ShareRanker
from socialrec.training.share_fitting import train_share_ranker
from tests.support.share_worlds import DAY, N_SHARERS, loyal_world, random_embeddings


@pytest.fixture(scope="module")
def loyal() -> tuple[GraphData, np.ndarray, np.ndarray, ShareRanker]:
    data = loyal_world()
    user_emb, item_emb = random_embeddings(data)
    ranker = train_share_ranker(data, user_emb, item_emb, l2_grid=(0.1, 10.0), cut=9 * DAY)
    return data, user_emb, item_emb, ranker


def test_the_friend_who_joined_every_past_share_ranks_first(loyal):
    data, user_emb, item_emb, ranker = loyal
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    learned = evaluate_share(ranker.scorer(ctx), data, "test", ks=[1, 5])
    assert learned["n_queries"] == N_SHARERS
    assert learned["mrr@5"] == pytest.approx(1.0)
    assert learned["hit@1"] == pytest.approx(1.0)
    # the history features carry it, and the model knows it
    weights = dict(zip(ranker.features, ranker.weights, strict=True))
    assert weights["past_joins"] > 0 and weights["past_shares"] > 0
    # random and affinity (random embeddings here) do not find f0 every time
    for baseline in (random_scorer(0), affinity_scorer(ctx)):
        assert evaluate_share(baseline, data, "test", ks=[1, 5])["mrr@5"] < 0.8


def test_fitting_on_cross_fitted_training_shares_finds_the_loyal_friend_too(loyal):
    data, user_emb, item_emb, _ = loyal
    ranker = train_share_ranker(data, user_emb, item_emb, fit_on="train", l2_grid=(1.0,),
                                cut=9 * DAY)
    assert ranker.trained_on["fit_on"] == "train shares"
    ctx = ShareContext.from_graph(data, user_emb, item_emb, cut=9 * DAY)
    assert evaluate_share(ranker.scorer(ctx), data, "test", ks=[1])["hit@1"] == pytest.approx(1.0)


def test_learning_reads_no_test_share(loyal):
    data, user_emb, item_emb, ranker = loyal
    # Same world, but every test share goes to f3 instead: the learned model must not move.
    other = loyal_world(test_recipient="f3")
    assert other.shares_test["recipient"].tolist() != data.shares_test["recipient"].tolist()
    again = train_share_ranker(other, user_emb, item_emb, l2_grid=(0.1, 10.0), cut=9 * DAY)
    assert again.to_dict() == ranker.to_dict()


def test_trained_on_and_metrics_are_recorded(loyal):
    *_, ranker = loyal
    assert ranker.trained_on["fit_on"] == "valid shares"
    assert ranker.trained_on["selected_by"].startswith("valid.mrr@10, 5-fold cross-validation")
    assert set(ranker.trained_on["by_l2"]) == {"0.1", "10.0"}
    assert ranker.trained_on["objective"].startswith("conditional logit")
    assert ranker.metrics["valid.mrr@10"] == pytest.approx(1.0)
