"""The production registry: `socialrec mlflow-server` (what `make mlflow-server` runs) on a fresh
PostgreSQL database with served artifacts, on a free port; then, entirely through that server:
train -> register -> alias -> serve -> promote a second version through the gate (and have a worse
third one refused) -> the running service picks the new champion up on POST /admin/reload."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
import sqlalchemy as sa

from socialrec.training import tracking
from tests.support.production import (
    MlflowServer,
    create_database,
    drop_database,
    new_database_name,
    pg_reachable,
)
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MODEL = "socialrec-srv"
GATE = ["test.recommend.ndcg_at_20", "test.recommend.recall_at_20"]


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    if not pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    name = new_database_name("socialrec_mlflow")
    yield create_database(name)
    drop_database(name)


@pytest.fixture(scope="module")
def mlflow_server(backend, tmp_path_factory) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(backend, root / "artifacts", root / "mlflow.log")
    yield server
    server.stop()


def _socialrec(args: list[str], uri: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([sys.executable, "-m", "socialrec.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_make_target_runs_this_command():
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "mlflow-server",
                          "MLFLOW_PORT=5999"], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert "socialrec mlflow-server --backend-store-uri postgresql+psycopg://" in out.stdout
    assert "--port 5999" in out.stdout


def test_train_register_serve_promote_through_the_server(mlflow_server, backend, tmp_path,
                                                         admin_token):
    uri = mlflow_server.url
    local_artifacts = tmp_path / "local-mlruns"
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""
dataset:
  name: srv
  source: synthetic
  synthetic: {{n_users: 300, n_items: 120, n_communities: 4, seed: 5}}
model: {{name: popularity}}
tracking:
  artifact_root: {local_artifacts}
  registered_model: {MODEL}
serving: {{model: {MODEL}}}
""")
    # train -> register: the first version takes the alias
    proc = _socialrec(["train", "--config", str(config)], uri)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"registered {MODEL} version 1, aliases: champion" in " ".join(proc.stdout.split())
    # the artifacts went through the server into its --artifacts-destination, not to a local root
    served_artifacts = Path(mlflow_server.log_path).parent / "artifacts"
    assert any(served_artifacts.rglob("meta.json"))
    assert not local_artifacts.exists()

    # serve: the service reads the registry over HTTP
    service = ServerProcess(
        {"MLFLOW_TRACKING_URI": uri, "SOCIALREC_MODEL": MODEL,
         "SOCIALREC_CACHE_DIR": str(tmp_path / "cache"), "SOCIALREC_POLL_SECONDS": "0",
         "SOCIALREC_EVENT_STORE": f"sqlite:///{tmp_path / 'events.db'}",
         "SOCIALREC_ADMIN_TOKEN": admin_token}, tmp_path / "service.log", timeout=180)
    try:
        assert _served_version(service.url) == f"{MODEL}/1"

        # a second version of the same files and run (equal metrics: the gate lets it
        # through), and a third of the same files whose run scores lower (refused)
        client = mlflow.MlflowClient(uri)
        v1 = client.get_model_version(MODEL, "1")
        files = v1.source  # models:/m-... (MLflow 3: the logged model the version came from)
        model_id = files.removeprefix("models:/")
        v2 = client.create_model_version(MODEL, files, run_id=v1.run_id, model_id=model_id)
        proc = _socialrec(["promote", "--model", MODEL, "--version", str(v2.version),
                           "--config", str(config)], uri)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        worse_run = client.create_run(client.get_run(v1.run_id).info.experiment_id)
        for metric in GATE:
            client.log_metric(worse_run.info.run_id, metric, 0.0)
        client.set_terminated(worse_run.info.run_id)
        v3 = client.create_model_version(MODEL, files, run_id=worse_run.info.run_id,
                                         model_id=model_id)
        assert v3.run_id == worse_run.info.run_id
        with pytest.raises(tracking.GateRefused):
            tracking.promote(client, MODEL, str(v3.version), "champion", GATE)
        assert client.get_model_version_by_alias(MODEL, "champion").version == v2.version

        # the running service picks the new champion up
        r = httpx.post(f"{service.url}/admin/reload", timeout=120,
                       headers={"Authorization": f"Bearer {admin_token}"})
        assert r.status_code == 200, r.text
        assert r.json() == {"models": {"champion": f"{MODEL}/2"}, "changed": ["champion"]}
        assert _served_version(service.url) == f"{MODEL}/2"
    finally:
        service.stop()

    # the registry lives in PostgreSQL
    engine = sa.create_engine(backend)
    with engine.connect() as conn:
        aliases = conn.execute(sa.text(
            "SELECT alias, version FROM registered_model_aliases WHERE name = :n"),
            {"n": MODEL}).all()
        versions = conn.execute(sa.text(
            "SELECT count(*) FROM model_versions WHERE name = :n"), {"n": MODEL}).scalar()
    engine.dispose()
    assert aliases == [("champion", 2)]
    assert versions == 3


def _served_version(url: str) -> str:
    r = httpx.post(f"{url}/recommend", json={"user_id": "u1", "k": 3}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]
