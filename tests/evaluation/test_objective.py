"""What model selection watches: one task's metric, or the geometric mean of several."""

import math

import numpy as np
import pytest

from socialrec.evaluation.objective import (
    TaskMetric,
    check_objective,
    parse_objective,
    validation_metrics,
)
from socialrec.evaluation.offline import evaluate_push, evaluate_recommend
from socialrec.features.graph import build_graph
from socialrec.features.splits import make_split
from socialrec.features.synthetic import generate


def test_a_bare_metric_is_recommends_and_a_task_prefix_names_the_task():
    assert parse_objective("ndcg@20").parts == (TaskMetric("recommend", "ndcg@20"),)
    assert parse_objective("push.recall@10").parts == (TaskMetric("push", "recall@10"),)
    both = parse_objective("gmean(recommend.ndcg@20, push.ndcg@10)")
    assert both.parts == (TaskMetric("recommend", "ndcg@20"), TaskMetric("push", "ndcg@10"))
    assert both.tasks == ["recommend", "push"] and both.ks("push") == [10]


def test_the_value_is_the_part_or_the_geometric_mean_of_the_parts():
    metrics = {"recommend": {"ndcg@20": 0.2}, "push": {"ndcg@20": 0.05}}
    assert parse_objective("push.ndcg@20").value(metrics) == 0.05
    assert parse_objective("gmean(recommend.ndcg@20, push.ndcg@20)").value(metrics) == (
        pytest.approx(math.sqrt(0.2 * 0.05)))
    metrics["push"]["ndcg@20"] = 0.0
    assert parse_objective("gmean(recommend.ndcg@20, push.ndcg@20)").value(metrics) == 0.0


@pytest.mark.parametrize("text, message", [
    ("pussh.ndcg@20", "unknown task 'pussh'"),
    ("push.ndgc@20", "unknown metric 'ndgc'"),
    ("gmean(recommend.ndcg@20, )", "empty metric"),
    ("push.ndcg", "expected <metric>@<k>"),
])
def test_bad_objectives_are_refused_saying_why(text, message):
    with pytest.raises(ValueError, match=message):
        check_objective(text)


def test_validation_metrics_are_the_offline_metrics_on_valid():
    data = generate(n_users=200, n_items=150, n_communities=4, seed=3)
    split = make_split(data, {"method": "random_ratio", "ratios": [0.8, 0.1, 0.1], "seed": 1,
                              "min_user_interactions": 3})
    graph = build_graph(data, split, {"view": 0.5, "click": 1.0, "cart": 2.0, "purchase": 4.0,
                                      "rate": 1.0, "share": 3.0, "join": 4.0, "push_open": 1.0})
    rng = np.random.default_rng(0)
    u = rng.normal(size=(graph.n_users, 8)).astype(np.float32)
    i = rng.normal(size=(graph.n_items, 8)).astype(np.float32)
    got = validation_metrics(u, i, graph, ["recommend", "push"], [20])
    assert got["recommend"]["ndcg@20"] == evaluate_recommend(u, i, graph, "valid", [20])["ndcg@20"]
    assert got["push"]["ndcg@20"] == evaluate_push(u, i, graph, "valid", [20])["ndcg@20"]
