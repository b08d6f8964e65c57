"""``socialrec tune`` on a tiny synthetic world with a real SQLite MLflow store: trials are runs
with validation metrics only, and the best configuration comes back as a YAML that extends the
tuned file and loads as a config."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import typer
import yaml
from typer.testing import CliRunner

from socialrec.training.config import ConfigError, load_config
from socialrec.training.tune import SPACES, read_space, trial_config, tune, tune_app


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "configs" / "tiny.yaml"
    path.parent.mkdir()
    path.write_text(f"""
dataset:
  name: tinytune
  source: synthetic
  synthetic: {{n_users: 300, n_items: 120, n_communities: 4, seed: 5}}
split: {{method: random_ratio, ratios: [0.8, 0.1, 0.1]}}
model:
  early_stop_metric: ndcg@20  # recommend's alone (the default also watches push)
  socialgnn: {{embedding_dim: 8, num_layers: 1, epochs: 3, patience: 2, batch_size: 512,
              lr: 0.01, num_threads: 1}}
tracking:
  uri: sqlite:///{tmp_path}/mlruns.db
  artifact_root: {tmp_path}/mlruns
""")
    return path


def runs_of(config_file: Path):
    cfg = load_config([config_file])
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    experiment = mlflow.get_experiment_by_name("socialrec-tinytune")
    return mlflow.search_runs([experiment.experiment_id], output_format="list")


def test_als_trials_are_runs_and_the_best_yaml_extends_the_config(config_file, tmp_path):
    out = tmp_path / "best" / "als_best.yaml"
    path = tune(config_file, trials=3, model="als", out=out)
    assert path == out

    text = out.read_text()
    body = yaml.safe_load(text)
    assert body["extends"] == "../configs/tiny.yaml"  # relative to the written file
    assert body["model"]["name"] == "als"
    assert text.startswith("# Best of 3 Optuna trials for als: valid ndcg@20 = ")
    cfg = load_config([out])  # the written file is a usable experiment config
    assert cfg["dataset"]["name"] == "tinytune"
    assert cfg["model"]["name"] == "als"
    assert set(SPACES["als"]) <= set(cfg["model"]["als"])

    runs = runs_of(config_file)
    trials = [r for r in runs if "trial" in r.data.tags]
    parents = [r for r in runs if r.info.run_name == "tune-als"]
    assert len(trials) == 3 and len(parents) == 1
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert "valid.recommend.ndcg_at_20" in run.data.metrics
        assert not any(key.startswith("test") for key in run.data.metrics), "tune read test"
    best = max(r.data.metrics["valid.recommend.ndcg_at_20"] for r in trials)
    assert parents[0].data.metrics["best.valid.ndcg_at_20"] == pytest.approx(best)
    assert f"= {best:.4f}." in text.splitlines()[0]


def test_gnn_trials_run_and_keep_untuned_keys(config_file, tmp_path):
    out = tmp_path / "lgcn.yaml"
    space = {"lr": ("log", 1e-3, 1e-2), "num_layers": ("int", 1, 2)}
    tune(config_file, trials=2, model="lightgcn", out=out, space=space)
    section = yaml.safe_load(out.read_text())["model"]["lightgcn"]
    assert 1e-3 <= section["lr"] <= 1e-2 and section["num_layers"] in (1, 2)
    # inherited from the socialgnn section of the tuned file, so the YAML alone reproduces it
    assert section["embedding_dim"] == 8 and section["epochs"] == 3
    assert "seed" not in section  # the benchmark sets seeds


def test_trial_config_changes_only_the_model_section():
    base = load_config([])
    cfg = trial_config(base, "als", {"alpha": 7.0})
    assert cfg["model"]["name"] == "als" and cfg["model"]["als"]["alpha"] == 7.0
    assert cfg["model"]["als"]["factors"] == base["model"]["als"]["factors"]
    assert base["model"]["als"]["alpha"] != 7.0  # the base config is not modified


def test_space_file_is_checked(tmp_path):
    good = tmp_path / "space.yaml"
    good.write_text("lr: [log, 0.001, 0.01]\nnum_layers: [int, 1, 3]\n")
    assert read_space(good) == {"lr": ("log", 0.001, 0.01), "num_layers": ("int", 1, 3)}
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [uniform, 0.001, 0.01]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: 'lr' must be"):
        read_space(bad)


def test_cli_mounts_as_one_command(config_file, tmp_path):
    app = typer.Typer()
    app.add_typer(tune_app, name="tune")

    @app.command()
    def other() -> None:  # a second command, so that `tune` is a sub-command as in socialrec
        pass

    out = tmp_path / "cli.yaml"
    result = CliRunner().invoke(app, ["tune", "--config", str(config_file), "--trials", "1",
                                      "--model", "als", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "best config written to" in result.output
    assert yaml.safe_load(out.read_text())["model"]["name"] == "als"

    result = CliRunner().invoke(app, ["tune", "--config", str(config_file), "--trials", "1",
                                      "--model", "popularity"])
    assert result.exit_code == 2
    assert "no search space for model 'popularity'" in result.output


def test_a_time_budgeted_search_runs_trials_until_the_budget_is_spent(config_file, tmp_path):
    app = typer.Typer()
    app.add_typer(tune_app, name="tune")

    @app.command()
    def other() -> None:
        pass

    out = tmp_path / "budget.yaml"
    result = CliRunner().invoke(app, ["tune", "--config", str(config_file), "--model", "als",
                                      "--budget-minutes", "0.001", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # the budget ran out during the first trial: no trial count was asked for, one ran
    assert out.read_text().startswith("# Best of 1 Optuna trials for als")
