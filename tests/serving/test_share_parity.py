"""What is evaluated is exactly what is served, for share partners: on one synthetic world, the
candidates ``evaluate_share`` ranks and those ``/share_partners`` ranks (serving/share.py
``rank_partners`` over a bundle saved as training/pipeline.py ``make_bundle`` saves it, loaded
back) are the same sets for every (sharer, item, hops), and both rank them in the same order,
equal scores included (broken by user id)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from socialrec.evaluation.metrics import ranking_metrics
from socialrec.evaluation.offline import evaluate_share
from socialrec.features.graph import GraphData, build_graph
from socialrec.features.ranking import top_candidates
from socialrec.features.shares import share_groups
from socialrec.features.sparse import binary
from socialrec.features.splits import make_split
from socialrec.features.synthetic import generate
from socialrec.models.bundle import ModelBundle
from socialrec.models.share_features import ShareContext
from socialrec.models.share_ranker import ShareRanker, examples, fit_share_ranker
from socialrec.serving.share import item_vector, rank_partners

KS = [1, 3, 10]
#: Direct friends all score 0 and friends of friends -1: ties everywhere, broken by user id.
TIED = ShareRanker(["two_hop"], np.array([-1.0]), 0.0, np.array([0.0]), np.array([1.0]))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[GraphData, ShareContext, ModelBundle]:
    """A synthetic world, random embeddings, and its bundle written the way make_bundle writes
    one (tie-weighted social, training share history, a ranker fitted on validation shares),
    saved and loaded back."""
    dataset = generate(n_users=1500, n_items=300, n_communities=6, seed=4)
    split = make_split(dataset, {"method": "temporal", "ratios": [0.8, 0.1, 0.1]})
    graph = build_graph(dataset, split)
    rng = np.random.default_rng(0)
    user_emb = rng.normal(size=(graph.n_users, 8)).astype(np.float32)
    item_emb = rng.normal(size=(graph.n_items, 8)).astype(np.float32)
    ctx = ShareContext.from_graph(graph, user_emb, item_emb, cut=split.cut_ts)
    ranker = fit_share_ranker(*examples(ctx, share_groups(graph.shares_valid)))
    bundle = ModelBundle(
        users=graph.users, items=graph.items, user_emb=user_emb, item_emb=item_emb,
        social=ctx.social, seen=binary(graph.train), purchases=graph.purchases,
        popularity=np.ones(graph.n_items, dtype=np.float32), item_category=graph.item_category,
        push_opt_in=graph.push_opt_in, share_ranker=ranker.to_dict(),
        share_counts=ctx.share_counts, share_joins=ctx.share_joins)
    path = bundle.save(Path(tmp_path_factory.mktemp("parity")) / "bundle")
    return graph, ctx, ModelBundle.load(path)


def _evaluated(score_fn, graph: GraphData, hops: int, shares: pd.DataFrame | None = None):
    """What evaluate_share hands its score function: ``{(sharer, item): (candidates, scores)}``,
    and the metrics it reports."""
    seen: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def spy(sharers, items, cands):
        scores = score_fn(sharers, items, cands)
        for s, i, c, sc in zip(sharers, items, cands, scores, strict=True):
            seen[int(s), int(i)] = (c, np.asarray(sc))
        return scores

    data = graph if shares is None else replace(graph, shares_test=shares)
    return seen, evaluate_share(spy, data, "test", ks=KS, hops=hops, batch=64)


def _served(bundle: ModelBundle, sharer: int, item: int, k: int, hops: int) -> np.ndarray:
    vec, _ = item_vector(bundle, item)
    return rank_partners(bundle, sharer, vec, item, k, hops).users


@pytest.mark.parametrize("hops", [1, 2])
def test_evaluation_and_service_rank_the_same_candidates(world, hops):
    graph, _, bundle = world
    # 400 users share once each (item u mod n_items): evaluation's candidates for each, sorted
    users = np.sort(np.random.default_rng(hops).choice(graph.n_users, 400, replace=False))
    everyone = pd.DataFrame({"sharer": users, "item": users % graph.n_items,
                             "recipient": (users + 1) % graph.n_users, "ts": 0,
                             "joined": False})
    zero = lambda s, i, cands: [np.zeros(len(c)) for c in cands]  # noqa: E731
    evaluated, _ = _evaluated(zero, graph, hops, everyone)
    assert len(evaluated) == len(users)
    assert sum(len(c) > 0 for c, _ in evaluated.values()) > len(users) / 2
    for (s, i), (cands, _) in evaluated.items():
        served = _served(bundle, s, i, graph.n_users, hops)
        assert np.array_equal(np.sort(served), cands), (s, i, hops)


@pytest.mark.parametrize("hops", [1, 2])
@pytest.mark.parametrize("learned", [True, False], ids=["learned", "tied"])
def test_evaluation_and_service_rank_in_the_same_order(world, hops, learned):
    graph, ctx, bundle = world
    ranker = ShareRanker.from_dict(bundle.share_ranker) if learned else TIED
    served_bundle = bundle if learned else replace(bundle, share_ranker=TIED.to_dict())
    evaluated, metrics = _evaluated(ranker.scorer(ctx), graph, hops)
    groups = share_groups(graph.shares_test)
    assert len(groups) > 50
    served = np.full((len(groups), max(KS)), -1, dtype=np.int64)
    for row, (s, i) in enumerate(zip(groups["sharer"], groups["item"], strict=True)):
        cands, scores = evaluated[s, i]
        users = _served(served_bundle, s, i, max(KS), hops)
        served[row, : len(users)] = users
        # the served list is evaluation's ranking of the scores it was given
        assert np.array_equal(served[row], top_candidates([cands], [scores], max(KS))[0])
    # and the metrics of the served lists are the reported ones
    from_service = ranking_metrics(served, list(groups["recipients"]), KS)
    assert {name: metrics[name] for name in from_service} == from_service
