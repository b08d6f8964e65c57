"""``socialrec benchmark`` on a tiny synthetic world with a real SQLite MLflow store: one run per
model and seed under one benchmark tag, ablation rows layered from a file, and a markdown table
with mean ± std, the published anchors and the cost."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from socialrec.training.benchmark import git_commit, markdown, run_benchmark
from socialrec.training.config import load_config


@pytest.fixture
def config(tmp_path: Path) -> dict:
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""
dataset:
  name: tinybench
  source: synthetic
  synthetic: {{n_users: 300, n_items: 120, n_communities: 4, seed: 5}}
split: {{method: random_ratio, ratios: [0.8, 0.1, 0.1]}}
model:
  socialgnn: {{embedding_dim: 8, num_layers: 1, epochs: 3, patience: 2, users_per_step: 64,
              num_threads: 1}}
  als: {{factors: 8, iterations: 3, num_threads: 1}}
evaluation:
  published:
    - {{model: Someone's GNN, metrics: {{recall@10: 0.1234}}, note: another split}}
tracking:
  uri: sqlite:///{tmp_path}/mlruns.db
  artifact_root: {tmp_path}/mlruns
""")
    (tmp_path / "no_social.yaml").write_text("model: {socialgnn: {social_weight: 0.0}}\n")
    return load_config([path])


def test_runs_rows_and_table(config, tmp_path):
    ablation = f"socialgnn@{tmp_path / 'no_social.yaml'}"
    results, prepared, bench_id = run_benchmark(
        config, ["popularity", "als", "socialgnn", ablation], seeds=[1, 2], show_progress=False)

    assert [r.model for r in results] == ["popularity", "als", "socialgnn", "socialgnn@no_social"]
    assert [len(r.run_ids) for r in results] == [1, 2, 2, 2]  # popularity has no seed
    mlflow.set_tracking_uri(config["tracking"]["uri"])
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.benchmark = '{bench_id}'")
    assert len(runs) == 7
    by_name = {r.info.run_name: r for r in runs}
    key = "model.socialgnn.social_weight"
    assert by_name["socialgnn@no_social-seed1"].data.params[key] == "0.0"
    assert by_name["socialgnn-seed1"].data.params[key] != "0.0"

    text = markdown(results, prepared, config, "socialrec benchmark --tiny", [1, 2], bench_id)
    assert "Made by `socialrec benchmark --tiny`" in text
    recommend = text.split("## recommend")[1].split("##")[0]
    rows = [line for line in recommend.splitlines() if line.startswith("| socialgnn")]
    assert len(rows) == 2 and all(" ± " in row for row in rows)
    popularity = next(line for line in recommend.splitlines() if line.startswith("| popularity"))
    assert "| 0." in popularity and "±" not in popularity  # one run, no spread
    published = text.split("## Published numbers (quoted, not run here)")[1].split("##")[0]
    assert "| Someone's GNN | recommend | 0.1234 | — |" in published
    assert "another split" in published
    assert "| socialgnn@no_social |" in text.split("## Cost")[1]
    assert f"at commit `{git_commit()}`" in text  # by default: the tree as it is now

    # the commit taken when the runs started, even if HEAD moved on during them
    text = markdown(results, prepared, config, "socialrec benchmark --tiny", [1, 2], bench_id,
                    commit="abc1234")
    assert "at commit `abc1234`" in text


def test_a_blends_parts_get_rows_of_their_own(config):
    """The blend fits its GNN and its ALS: their test metrics come as rows without a cost line."""
    config["model"]["blend"] = {**config["model"]["blend"], "weights": [0.0, 0.5]}
    results, prepared, bench_id = run_benchmark(config, ["blend"], seeds=[1],
                                                show_progress=False)
    assert [r.model for r in results] == ["blend", "blend part: socialgnn", "blend part: als"]
    assert [len(r.metrics) for r in results] == [1, 1, 1]
    text = markdown(results, prepared, config, "socialrec benchmark --tiny", [1], bench_id)
    assert "| blend part: als |" in text.split("## push")[1]
    cost = text.split("## Cost")[1]
    assert "| blend |" in cost and "part" not in cost
