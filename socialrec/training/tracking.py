"""MLflow tracking and registry: one run per training, one model version per bundle, aliases."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from socialrec.features.paths import project_dir
from socialrec.training.config import format_names

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

#: What a registered version needs at load time (inferring this costs ~10 s per log_model).
PIP_REQUIREMENTS = ["socialrec", "numpy", "scipy", "pandas", "faiss-cpu"]


def anchored_sqlite(uri: str) -> str:
    """A relative ``sqlite:///x.db`` URL anchored at the project directory (others unchanged), so
    that every command finds the same file whatever its working directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(project_dir() / uri[len(prefix) :])
    return uri


def tracking_uri(config: dict[str, Any]) -> str:
    """The configured tracking URI, a relative SQLite path anchored at the project directory."""
    return anchored_sqlite(config["tracking"]["uri"])


def artifact_location(config: dict[str, Any]) -> str | None:
    """Where new experiments keep their artifacts: ``tracking.artifact_root`` as a URI. None with
    a tracking server (an http(s) URI) and a local artifact root: the server's own served
    artifact store (``mlflow server --artifacts-destination``) keeps them, so clients upload and
    download through it (training/tracking_server.py); a root with a scheme (``s3://``) is used
    as given."""
    configured = str(config["tracking"]["artifact_root"])
    if "://" in configured:
        return configured
    if tracking_uri(config).startswith(("http://", "https://")):
        return None
    root = Path(configured)
    return (root if root.is_absolute() else project_dir() / root).resolve().as_uri()


def setup(config: dict[str, Any]) -> tuple[MlflowClient, str]:
    """Point MLflow at the configured store; return the client and the experiment id."""
    uri = tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = format_names(config)["experiment"]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        root = artifact_location(config)
        experiment_id = client.create_experiment(
            name, artifact_location=None if root is None else f"{root}/{name}"
        )
    else:
        experiment_id = experiment.experiment_id
    return client, experiment_id


def metric_key(split: str, task: str, metric: str) -> str:
    """``("test", "recommend", "ndcg@20")`` -> ``"test.recommend.ndcg_at_20"`` (MLflow: no '@')."""
    return f"{split}.{task}.{metric.replace('@', '_at_')}"


def flat_metrics(split: str, metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    return {
        metric_key(split, task, name): float(value)
        for task, values in metrics.items()
        for name, value in values.items()
        if isinstance(value, int | float)
    }


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def log_bundle(bundle_dir: Path, registered_model: str,
               tags: dict[str, str] | None = None) -> str:
    """Log the bundle as a pyfunc model (from code) in the active run; return the new version.
    ``tags`` are set on the version as it is created (one registry call: a version is never seen
    without them)."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={"bundle": str(bundle_dir)},
        pip_requirements=PIP_REQUIREMENTS,
        registered_model_name=None if tags else registered_model,
    )
    if tags:
        return str(mlflow.register_model(info.model_uri, registered_model, tags=tags).version)
    return str(info.registered_model_version)


def alias_holder(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def run_metrics(client: MlflowClient, version) -> dict[str, float]:
    return dict(client.get_run(version.run_id).data.metrics)


#: the endpoints that can follow their own alias, and the metric tasks (``test.<task>.*``) each
#: serves: its alias is gated on those
ENDPOINT_TASKS: dict[str, tuple[str, ...]] = {
    "push_targets": ("push",),
    "recommend": ("recommend",),
    "share_partners": ("share", "share_ranker"),
}


def endpoints_by_alias(config: dict[str, Any], endpoints: Iterable[str] = tuple(ENDPOINT_TASKS)
                       ) -> dict[str, list[str]]:
    """``{alias: the endpoints (of endpoints) it serves}``: ``tracking.aliases`` names an
    endpoint's own alias; every other endpoint serves under ``tracking.alias``."""
    own = config["tracking"]["aliases"]
    out: dict[str, list[str]] = {}
    for endpoint in endpoints:
        out.setdefault(own.get(endpoint, config["tracking"]["alias"]), []).append(endpoint)
    return out


def gate_metrics_for(config: dict[str, Any], alias: str) -> list[str]:
    """The gate metrics of ``alias``: those of the tasks of the endpoints it serves (an alias
    of some endpoints only, such as a push alias, is not held back by another task's metrics);
    every gate metric for an alias that serves every endpoint or no gate metric's task."""
    gate = list(config["tracking"]["gate_metrics"])
    served = endpoints_by_alias(config).get(alias, list(ENDPOINT_TASKS))
    if set(served) == set(ENDPOINT_TASKS):
        return gate
    tasks = {t for e in served for t in ENDPOINT_TASKS[e]}
    return [m for m in gate if m.split(".")[1:2] and m.split(".")[1] in tasks] or gate


class GateRefused(RuntimeError):
    """The candidate's offline metrics fall below the alias holder's."""

    def __init__(self, message: str, comparison: list[tuple[str, float | None, float]]) -> None:
        super().__init__(message)
        self.comparison = comparison


def gate_comparison(
    client: MlflowClient, name: str, version: str, alias: str, gate_metrics: list[str]
) -> list[tuple[str, float | None, float]]:
    """(metric, holder value or None, candidate value) for every gate metric."""
    candidate = run_metrics(client, client.get_model_version(name, version))
    holder_version = alias_holder(client, name, alias)
    holder = run_metrics(client, holder_version) if holder_version else {}
    rows = []
    for metric in gate_metrics:
        if metric not in candidate:
            raise GateRefused(f"version {version} has no metric {metric!r} to gate on", [])
        rows.append((metric, holder.get(metric), candidate[metric]))
    return rows


def promote(
    client: MlflowClient,
    name: str,
    version: str,
    alias: str,
    gate_metrics: list[str],
    force: bool = False,
) -> list[tuple[str, float | None, float]]:
    """Move ``alias`` to ``version`` unless a gate metric falls below the current holder's."""
    rows = gate_comparison(client, name, version, alias, gate_metrics)
    worse = [(m, h, c) for m, h, c in rows if h is not None and c < h]
    if worse and not force:
        detail = ", ".join(f"{m}: {c:.4f} < {h:.4f}" for m, h, c in worse)
        raise GateRefused(f"refused to move {alias!r} to version {version}: {detail}", rows)
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(
        name, version, f"promoted_to_{alias}", json.dumps({m: c for m, _, c in rows})
    )
    return rows
