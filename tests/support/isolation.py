"""A pytest plugin every test runs under (pyproject.toml: addopts -p tests.support.isolation)."""

from __future__ import annotations

import os

import pytest

#: mlflow.set_tracking_uri / set_registry_uri also write these into os.environ (for child
#: processes), so an in-process test or fixture would point every later test's `socialrec`
#: subprocess at its own registry.
MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
AT_START = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}


@pytest.fixture(autouse=True)
def _mlflow_uris_do_not_leak():
    """Each test starts with the MLflow URI variables the session started with."""
    for name, value in AT_START.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    yield
