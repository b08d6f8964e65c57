"""The MLflow tracking server on PostgreSQL: tracking and registry past one machine (DESIGN.md).

``socialrec mlflow-server`` (``make mlflow-server``) creates the backend database if it does not
exist yet, then runs ``mlflow server`` in its place with

* the backend store (runs, metrics, registered models and aliases) in PostgreSQL, through
  psycopg 3 (``postgresql+psycopg://``; MLflow hands the URL to SQLAlchemy, so psycopg2 is not
  needed) and MLflow's own schema migrations on first start;
* served artifacts: clients upload and download through the server (``mlflow-artifacts:/``),
  which keeps them under ``--artifacts-destination`` (a directory here, ``s3://…`` in a cloud);
  so trainers and services need the server's URL only, no shared file system;
* one worker by default (every worker holds a pool of database connections);
* readiness at ``GET /health`` (``OK``).

Clients point ``MLFLOW_TRACKING_URI`` at ``http://host:port``; ``socialrec train`` then creates its
experiments without a local artifact location (training/tracking.py), so the artifacts go through
the server.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

DEFAULT_BACKEND = "postgresql+psycopg://postgres@127.0.0.1:5432/mlflow"


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database ``url`` names unless it exists; True if it was created.
    Other backends (SQLite creates its file itself) need nothing."""
    target = sa.engine.make_url(url)
    if target.get_backend_name() != "postgresql" or not target.database:
        return False
    engine = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                  {"name": target.database}).scalar()
            if not exists:
                name = conn.dialect.identifier_preparer.quote(target.database)
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
            return not exists
    finally:
        engine.dispose()


def server_command(backend: str, artifacts: str | Path, host: str = "127.0.0.1",
                   port: int = 5000, workers: int = 1, extra: Sequence[str] = ()) -> list[str]:
    """The ``mlflow server`` command line (the ``mlflow`` script of this Python environment)."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return [str(mlflow), "server", "--backend-store-uri", backend,
            "--serve-artifacts", "--artifacts-destination", str(artifacts),
            "--host", host, "--port", str(port), "--workers", str(workers), *extra]
