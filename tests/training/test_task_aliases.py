"""Per-task aliases: what each alias is gated on, how a version takes them, and ``model.name:
auto`` choosing one candidate per alias on validation."""

from __future__ import annotations

import json

import mlflow
import pytest

from socialrec.training import tracking
from socialrec.training.auto import run_auto
from socialrec.training.config import ConfigError, load_config
from socialrec.training.pipeline import assign_aliases

PUSH_ALIAS = "tracking.aliases={push_targets: champion-push}"


def config(tmp_path, *overrides: str) -> dict:
    return load_config([], [f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
                            f"tracking.artifact_root={tmp_path}/mlruns", "dataset.name=tasks",
                            *overrides])


def test_an_alias_is_gated_on_the_metrics_of_the_tasks_it_serves(tmp_path):
    shared = config(tmp_path)
    assert tracking.gate_metrics_for(shared, "champion") == shared["tracking"]["gate_metrics"]
    split = config(tmp_path, PUSH_ALIAS)
    assert tracking.gate_metrics_for(split, "champion-push") == [
        "test.push.ndcg_at_20", "test.push.recall_at_20"]
    assert tracking.gate_metrics_for(split, "champion") == [
        "test.recommend.ndcg_at_20", "test.recommend.recall_at_20"]
    assert tracking.endpoints_by_alias(split) == {
        "champion-push": ["push_targets"], "champion": ["recommend", "share_partners"]}


def add_version(client, experiment_id, push: float, recommend: float) -> str:
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metrics({f"test.{task}.{m}_at_20": value
                            for task, value in (("push", push), ("recommend", recommend))
                            for m in ("ndcg", "recall")})
    return client.create_model_version("m", f"{run.info.artifact_uri}/model",
                                       run.info.run_id).version


def test_a_version_takes_each_task_alias_it_passes(tmp_path):
    cfg = config(tmp_path, PUSH_ALIAS)
    client, exp = tracking.setup(cfg)
    client.create_registered_model("m")
    v1 = add_version(client, exp, push=0.10, recommend=0.20)
    assert sorted(assign_aliases(client, "m", v1, cfg, promote=False)) == [
        "champion", "champion-push"]
    v2 = add_version(client, exp, push=0.12, recommend=0.19)  # better push, worse recommend
    assert assign_aliases(client, "m", v2, cfg, promote=True) == ["champion-push", "challenger"]
    assert client.get_model_version_by_alias("m", "champion-push").version == v2
    assert client.get_model_version_by_alias("m", "champion").version == v1


@pytest.fixture(scope="module")
def tiny_world_overrides():
    return ["dataset.source=synthetic",
            "dataset.synthetic={n_users: 300, n_items: 200, n_communities: 4, seed: 5}",
            "split.method=random_ratio", "model.name=auto",
            "model.auto.candidates=[popularity, als]",
            "model.als={factors: 8, iterations: 5, num_threads: 1}"]


def test_auto_serves_each_alias_by_its_best_candidate_on_validation(tmp_path,
                                                                     tiny_world_overrides):
    cfg = config(tmp_path, *tiny_world_overrides, PUSH_ALIAS)
    out = tmp_path / "auto.json"
    result = run_auto(cfg, show_progress=False, metrics_out=out)
    assert set(result.candidates) == {"popularity", "als"}
    assert result.tasks == {"champion-push": ["push"], "champion": ["recommend", "share"]}
    for alias, label in result.winners.items():
        best = max(result.candidates, key=lambda c: result.score(c, alias, "ndcg@20"))
        assert label == best
    # popularity ranks every user alike for an item: ALS wins pushes
    assert result.winners["champion-push"] == "als"
    client, _ = tracking.setup(cfg)
    for alias, label in result.winners.items():
        holder = client.get_model_version_by_alias("socialrec-tasks", alias)
        assert str(holder.version) == result.versions[label]
        assert alias in result.aliases_set[label]
    written = json.loads(out.read_text())
    assert written["winners"] == result.winners
    assert "valid" in written["candidates"]["als"] and "test" in written["candidates"]["als"]


def test_auto_refuses_a_metric_at_a_cut_off_it_does_not_evaluate(tmp_path,
                                                                  tiny_world_overrides):
    cfg = config(tmp_path, *tiny_world_overrides, "model.auto.metric=ndcg@5")
    with pytest.raises(ConfigError, match=r"cut-off must be one of evaluation\.ks"):
        run_auto(cfg, show_progress=False, register=False)
