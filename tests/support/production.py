"""Helpers of the production-path tests: fresh PostgreSQL databases, the MLflow tracking server,
and services started without waiting for readiness."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.support.server import ServerProcess

#: A database of the test PostgreSQL the tests may connect to (trust auth on these machines).
PG_URL = os.environ.get("SOCIALREC_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_reachable() -> bool:
    url = sa.engine.make_url(PG_URL)
    try:
        socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=1).close()
        return True
    except OSError:
        return False


def database_url(name: str) -> str:
    return sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _admin(statement: str) -> None:
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def create_database(name: str) -> str:
    _admin(f'CREATE DATABASE "{name}"')
    return database_url(name)


def drop_database(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_database_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new empty database for one test (its URL), dropped afterwards."""
    name = new_database_name(prefix)
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


class MlflowServer(ServerProcess):
    """``socialrec mlflow-server`` (what ``make mlflow-server`` runs) on a free port."""

    READY_PATH = "/health"

    def __init__(self, backend: str, artifacts: Path, log_path: Path,
                 timeout: float = 600.0) -> None:
        command = [sys.executable, "-m", "socialrec.cli", "mlflow-server",
                   "--backend-store-uri", backend, "--artifacts-destination", str(artifacts),
                   "--port", "{port}"]
        super().__init__({}, log_path, timeout, command=command)


class Starting(ServerProcess):
    """A service started without waiting; :meth:`wait_ready` waits later."""

    def _wait_ready(self, timeout: float) -> None:
        pass

    def wait_ready(self, timeout: float = 120.0) -> None:
        ServerProcess._wait_ready(self, timeout)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


def get_json(url: str) -> tuple[int, dict]:
    response = httpx.get(url, timeout=10)
    return response.status_code, response.json()
