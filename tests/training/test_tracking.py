"""Registry aliases and the promotion gate against a real SQLite MLflow store."""

import mlflow
import pytest

from socialrec.training import tracking
from socialrec.training.config import load_config

GATE = ["test.recommend.ndcg_at_20", "test.recommend.recall_at_20"]


@pytest.fixture
def store(tmp_path):
    cfg = load_config(
        [],
        [
            f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
            f"tracking.artifact_root={tmp_path}/mlruns",
            "dataset.name=gate",
        ],
    )
    client, experiment_id = tracking.setup(cfg)
    client.create_registered_model("m")
    return client, experiment_id


def add_version(client, experiment_id, ndcg: float, recall: float) -> str:
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metrics(
            {"test.recommend.ndcg_at_20": ndcg, "test.recommend.recall_at_20": recall}
        )
    version = client.create_model_version("m", f"{run.info.artifact_uri}/model", run.info.run_id)
    return version.version


def test_metric_keys_have_no_at_sign():
    assert tracking.metric_key("test", "push", "ndcg@10") == "test.push.ndcg_at_10"
    flat = tracking.flat_metrics("test", {"recommend": {"recall@20": 0.5, "note": "x"}})
    assert flat == {"test.recommend.recall_at_20": 0.5}


def test_first_version_takes_an_empty_alias(store):
    client, exp = store
    v1 = add_version(client, exp, 0.2, 0.3)
    rows = tracking.promote(client, "m", v1, "champion", GATE)
    assert client.get_model_version_by_alias("m", "champion").version == v1
    assert all(holder is None for _, holder, _ in rows)


def test_worse_candidate_is_refused_with_the_comparison(store):
    client, exp = store
    v1 = add_version(client, exp, 0.20, 0.30)
    tracking.promote(client, "m", v1, "champion", GATE)
    v2 = add_version(client, exp, 0.25, 0.29)  # better NDCG, worse recall
    with pytest.raises(tracking.GateRefused) as refused:
        tracking.promote(client, "m", v2, "champion", GATE)
    assert "recall_at_20" in str(refused.value)
    assert ("test.recommend.recall_at_20", 0.30, 0.29) in refused.value.comparison
    assert client.get_model_version_by_alias("m", "champion").version == v1


def test_equal_or_better_candidate_moves_the_alias(store):
    client, exp = store
    v1 = add_version(client, exp, 0.20, 0.30)
    tracking.promote(client, "m", v1, "champion", GATE)
    v2 = add_version(client, exp, 0.20, 0.31)
    tracking.promote(client, "m", v2, "champion", GATE)
    assert client.get_model_version_by_alias("m", "champion").version == v2


def test_force_overrides_the_gate(store):
    client, exp = store
    v1 = add_version(client, exp, 0.20, 0.30)
    tracking.promote(client, "m", v1, "champion", GATE)
    v2 = add_version(client, exp, 0.10, 0.10)
    tracking.promote(client, "m", v2, "champion", GATE, force=True)
    assert client.get_model_version_by_alias("m", "champion").version == v2


def test_relative_sqlite_uri_is_anchored_at_the_project():
    cfg = load_config()
    assert tracking.tracking_uri(cfg).startswith("sqlite:////")
