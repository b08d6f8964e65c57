"""Fixtures of the serving tests: a tiny random bundle (no training) and real `bentoml serve`
processes on free ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from socialrec.models.bundle import ModelBundle
from tests.support.bundles import random_bundle
from tests.support.server import ServerProcess

ADMIN_TOKEN = "test-admin-token"

EXPERIMENTS_YAML = """\
experiments:
  push:
    endpoints: [push_targets]
    unit: campaign
    salt: push-test
    variants:
      control: {weight: 0.5, alias: champion}
      treatment: {weight: 0.5, alias: champion}
    holdout: {weight: 0.1}
  rec:
    endpoints: [recommend, share_partners]
    unit: user
    salt: rec-test
    variants:
      control: {weight: 1.0, alias: champion}
"""


@pytest.fixture(scope="session")
def bundle() -> ModelBundle:
    """600 users (the last 5 without friends or interactions), 120 items, 6 communities; HNSW
    indexes (threshold 100) so that the approximate path is the one exercised."""
    return random_bundle(n_users=600, n_items=120, dim=16, seed=3, n_communities=6, isolated=5,
                         exact_threshold=100)


@pytest.fixture(scope="session")
def bundle_dir(bundle, tmp_path_factory) -> Path:
    return bundle.save(tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture(scope="session")
def experiments_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("exp") / "experiments.yaml"
    path.write_text(EXPERIMENTS_YAML)
    return path


class Server(ServerProcess):
    """The service on a free port with the test settings (no polling, 4 threads, admin token)."""

    def __init__(self, env: dict[str, str], log_path: Path, timeout: float = 240.0) -> None:
        super().__init__({"SOCIALREC_POLL_SECONDS": "0", "SOCIALREC_THREADS": "4",
                          "SOCIALREC_ADMIN_TOKEN": ADMIN_TOKEN, **env}, log_path, timeout)


@pytest.fixture
def start_server(tmp_path) -> Iterator[Callable[[dict[str, str]], Server]]:
    """Start extra servers (env overrides) for one test; all are stopped at its end."""
    started: list[Server] = []

    def start(env: dict[str, str]) -> Server:
        started.append(Server(env, tmp_path / f"server{len(started)}.log"))
        return started[-1]

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def admin_token() -> str:
    return ADMIN_TOKEN


@pytest.fixture(scope="session")
def event_store_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('events') / 'events.db'}"


@pytest.fixture(scope="session")
def server(bundle_dir, experiments_file, event_store_url, tmp_path_factory) -> Iterator[Server]:
    """One server for the HTTP tests that leave it running."""
    srv = Server({"SOCIALREC_BUNDLE_DIR": str(bundle_dir),
                  "SOCIALREC_EVENT_STORE": event_store_url,
                  "SOCIALREC_EXPERIMENTS": str(experiments_file)},
                 tmp_path_factory.mktemp("logs") / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


class _BundleModel(mlflow.pyfunc.PythonModel):
    """The smallest pyfunc carrying a bundle as an artifact (like training/tracking.py logs)."""

    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


@dataclass
class Registry:
    uri: str
    name: str
    versions: list[str]
    bundles: list[ModelBundle]

    def client(self):
        return mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def set_alias(self, alias: str, version: str) -> None:
        self.client().set_registered_model_alias(self.name, alias, version)


@pytest.fixture(scope="session")
def registry(bundle, tmp_path_factory) -> Registry:
    """A real MLflow registry (SQLite + local artifacts) holding two versions of a model:
    v1 is the test bundle, v2 a bundle of the same ids with other embeddings. champion -> v1."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    name = "socialrec-test"
    other = random_bundle(n_users=600, n_items=120, dim=16, seed=4, n_communities=6, isolated=5,
                          exact_threshold=100)
    versions, bundles = [], []
    # The fluent API logs to the global tracking URI: point it here only for this block, so
    # other tests keep their own.
    with _use_tracking_uri(uri):
        experiment = mlflow.create_experiment("serving-tests",
                                              artifact_location=(root / "artifacts").as_uri())
        # v1 as training/tracking.py names it (…/bundle), v2 under another directory name
        for b, path in [(bundle, root / "v1" / "bundle"), (other, root / "other")]:
            b.save(path)
            with mlflow.start_run(experiment_id=experiment):
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=_BundleModel(), artifacts={"bundle": str(path)},
                    pip_requirements=["numpy"], registered_model_name=name)
            versions.append(str(info.registered_model_version))
            bundles.append(b)
    reg = Registry(uri, name, versions, bundles)
    reg.set_alias("champion", versions[0])
    return reg
