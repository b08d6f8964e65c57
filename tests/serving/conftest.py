"""Fixtures of the serving tests: a tiny random bundle (no training) and real `bentoml serve`
processes on free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import psutil
import pytest
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from socialrec.models.bundle import ModelBundle
from socialrec.serving.demo import random_bundle

BENTOML = str(Path(sys.executable).with_name("bentoml"))
SERVICE = "socialrec.serving.service:SocialRec"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `bentoml serve` child process in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, timeout: float = 90.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = log_path.open("w")
        full_env = {**os.environ, "SOCIALREC_POLL_SECONDS": "0", "SOCIALREC_THREADS": "4",
                    "SOCIALREC_ADMIN_TOKEN": ADMIN_TOKEN, "MLFLOW_DISABLE_TELEMETRY": "true",
                    "BENTOML_DO_NOT_TRACK": "true", **env}
        self.proc = subprocess.Popen(
            [BENTOML, "serve", SERVICE, "--host", "127.0.0.1", "--port", str(self.port)],
            env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def processes(self) -> list[psutil.Process]:
        """The `bentoml serve` process and its descendants. The service worker runs in a session
        of its own, so signalling the process group alone would orphan it."""
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the server and its worker at once: nothing gets to clean up."""
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=15)
        self.proc.wait(timeout=15)

    def stop(self) -> None:
        """SIGTERM to the process group (a graceful shutdown), SIGKILL to what is left."""
        procs = self.processes()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(alive, timeout=15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log.close()


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
        return mlflow.MlflowClient(tracking_uri=self.uri)

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
