"""The path of `make demo` at toy size: CLI train → MLflow registry → `socialrec serve` → HTTP.

Trains a tiny social GNN on a small synthetic world, registers it with alias ``champion`` in a real
SQLite MLflow store, starts the real BentoML server (which resolves the alias itself) on a free
port, and checks properties of real answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest

from socialrec.models.bundle import ModelBundle
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def config_file(workdir: Path) -> Path:
    cfg = workdir / "tiny.yaml"
    cfg.write_text(f"""
dataset:
  name: tiny
  source: synthetic
  synthetic: {{n_users: 800, n_items: 300, n_communities: 6, seed: 3}}
split: {{method: random_ratio, ratios: [0.8, 0.1, 0.1]}}
model:
  name: socialgnn
  socialgnn:
    {{embedding_dim: 16, num_layers: 2, epochs: 8, patience: 3, batch_size: 1024, lr: 0.01}}
tracking:
  uri: sqlite:///{workdir}/mlruns.db
  artifact_root: {workdir}/mlruns
serving:
  model: socialrec-tiny
  event_store: sqlite:///{workdir}/events.db
""")
    return cfg


@pytest.fixture(scope="module")
def trained(config_file: Path, workdir: Path) -> dict:
    metrics_out = workdir / "metrics.json"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "socialrec.cli",
            "train",
            "--config",
            str(config_file),
            "--metrics-out",
            str(metrics_out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(metrics_out.read_text())


@pytest.fixture(scope="module")
def bundle(trained, workdir: Path) -> ModelBundle:
    uri = f"sqlite:///{workdir}/mlruns.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # an earlier test in this process may have set another
    local = mlflow.artifacts.download_artifacts(
        "models:/socialrec-tiny@champion", dst_path=str(workdir / "download")
    )
    return ModelBundle.load(Path(local) / "artifacts" / "bundle")


@pytest.fixture(scope="module")
def server(trained, config_file: Path, workdir: Path):
    """`socialrec serve` itself (the CLI resolves the registry alias from the config)."""
    env = {"SOCIALREC_CACHE_DIR": str(workdir / "bundle-cache"), "MLFLOW_TRACKING_URI": ""}
    command = [sys.executable, "-m", "socialrec.cli", "serve", "--config",
               str(config_file), "--port", "{port}"]
    srv = ServerProcess(env, workdir / "server.log", command=command)
    yield srv.url
    srv.stop()


def test_metrics_file_has_every_task_and_cutoff(trained):
    assert set(trained) >= {"recommend", "push"}
    for task in ("recommend", "push"):
        for metric in ("recall", "ndcg", "hit", "mrr", "precision"):
            for k in (10, 20):
                value = trained[task][f"{metric}@{k}"]
                assert 0.0 <= value <= 1.0


def test_gnn_learns_more_than_chance(trained, bundle):
    # random ranking of ~300 items puts a test item in the top 20 with probability ~20/300
    assert trained["recommend"]["recall@20"] > 3 * 20 / len(bundle.items)


def test_bundle_is_the_registered_champion(bundle):
    assert bundle.meta["model_name"] == "socialgnn"
    assert bundle.meta["dataset"] == "tiny"
    assert bundle.user_index is not None and bundle.item_index is not None
    # 16 dimensions and the push calibration's column (socialgnn's default calibration: activity)
    assert bundle.user_emb.shape == (len(bundle.users), 17)
    assert bundle.item_emb.shape == (len(bundle.items), 17)


def test_push_never_targets_buyers(server, bundle):
    item = int(np.argmax(np.asarray(bundle.purchases.sum(axis=0)).ravel()))
    item_id = bundle.items.to_ids([item])[0]
    buyers = set(bundle.users.to_ids(bundle.purchases.tocsc()[:, item].indices))
    assert buyers, "the test needs an item somebody bought"
    r = httpx.post(f"{server}/push_targets", json={"item_id": item_id, "k": 200})
    assert r.status_code == 200, r.text
    body = r.json()
    users = body["users"]
    assert len(users) == 200 == len(set(users))
    assert not buyers & set(users)
    assert body["scores"] == sorted(body["scores"], reverse=True)
    assert body["request_id"] and body["model_version"]


def test_share_partners_are_friends_of_the_sharer(server, bundle):
    degree = np.diff(bundle.social.indptr)
    sharer = int(np.argmax(degree))
    friends = set(bundle.users.to_ids(bundle.social[sharer].indices))
    item_id = bundle.items.to_ids([0])[0]
    r = httpx.post(
        f"{server}/share_partners",
        json={"user_id": bundle.users.to_ids([sharer])[0], "item_id": item_id, "k": 5},
    )
    assert r.status_code == 200, r.text
    partners = r.json()["partners"]
    assert 0 < len(partners) <= 5
    assert {p["user_id"] for p in partners} <= friends
    scores = [p["score"] for p in partners]
    assert scores == sorted(scores, reverse=True)


def test_recommend_excludes_seen_items(server, bundle):
    user = int(np.argmax(np.diff(bundle.seen.indptr)))
    seen = set(bundle.items.to_ids(bundle.seen[user].indices))
    r = httpx.post(f"{server}/recommend", json={"user_id": bundle.users.to_ids([user])[0], "k": 10})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 10 and not seen & set(items)


def test_invalid_requests_get_4xx_with_a_message(server):
    r = httpx.post(
        f"{server}/share_partners", json={"user_id": "no-such-user", "item_id": "x", "k": 5}
    )
    assert 400 <= r.status_code < 500
    assert "no-such-user" in r.text
    r = httpx.post(f"{server}/push_targets", json={"item_id": "no-such-item", "k": 5})
    assert 400 <= r.status_code < 500 and "no-such-item" in r.text
    r = httpx.post(f"{server}/recommend", json={"user_id": "u", "k": 0})
    assert 400 <= r.status_code < 500 and "k" in r.text
