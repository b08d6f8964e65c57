"""Layered configuration: defaults < files (extends) < --set overrides."""

import pytest

from socialrec.training.config import ConfigError, load_config


def test_defaults_alone_resolve():
    cfg = load_config()
    assert cfg["model"]["name"] == "socialgnn"
    assert cfg["model"]["socialgnn"]["embedding_dim"] == 64


def test_files_then_overrides_win(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("dataset: {name: base}\nmodel: {socialgnn: {lr: 0.01}}\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("extends: base.yaml\nmodel: {socialgnn: {num_layers: 2}}\n")
    cfg = load_config([exp], ["model.socialgnn.lr=0.5", "evaluation.ks=[5, 50]"])
    assert cfg["dataset"]["name"] == "base"
    assert cfg["model"]["socialgnn"]["num_layers"] == 2
    assert cfg["model"]["socialgnn"]["lr"] == 0.5
    assert cfg["evaluation"]["ks"] == [5, 50]
    # untouched defaults survive the merge
    assert cfg["model"]["socialgnn"]["embedding_dim"] == 64


def test_relative_data_paths_resolve_against_their_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "c.yaml"
    f.write_text("dataset: {source: files, files: {interactions: {path: data/x.csv}}}\n")
    cfg = load_config([f])
    assert cfg["dataset"]["files"]["interactions"]["path"] == str(
        tmp_path / "sub" / "data" / "x.csv"
    )


def test_typo_in_a_closed_section_is_refused(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("tracking: {urii: sqlite:///x.db}\n")
    with pytest.raises(ConfigError, match="urii"):
        load_config([f])


def test_unknown_top_level_section_is_refused(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("modle: {name: als}\n")
    with pytest.raises(ConfigError, match="modle"):
        load_config([f])


def test_invalid_yaml_names_file_and_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("model:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml, line \d+, column \d+"):
        load_config([f])


def test_extends_loop_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config([tmp_path / "a.yaml"])


def test_override_needs_equals():
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config([], ["model.lr"])


def test_environment_wins_for_data_root_and_tracking(monkeypatch):
    monkeypatch.setenv("SOCIALREC_DATA_ROOT", "/data/here")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://x/y")
    cfg = load_config()
    assert cfg["dataset"]["root"] == "/data/here"
    assert cfg["tracking"]["uri"] == "postgresql://x/y"
