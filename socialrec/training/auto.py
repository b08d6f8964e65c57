"""``model.name: auto``: fit every candidate of ``model.auto`` on one split and serve each endpoint
by the candidate that wins its task on validation — the path for data new to us, with no
hand-tuning (README, "New data").

Each candidate (a model name, or ``model@file.yaml`` as in ``socialrec benchmark``) is trained and
tested like ``socialrec train`` would (one MLflow run each, tagged ``auto=<id>``) and scored on the
validation split for every task: recommend, push, and share when the split has validation share
records. Then, per alias of ``tracking.aliases`` (``push_targets: champion-push`` gives pushes
their own), the candidate with the best validation ``<task>.<model.auto.metric>`` over the tasks
of that alias's endpoints (their geometric mean when one alias serves several) is registered and
takes the alias — under the usual rules (free, or ``--promote`` and the alias's gate). A model
that wins nothing is not registered. The test split is read for the report only, never to choose.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow

from socialrec.evaluation.objective import Task
from socialrec.training import tracking
from socialrec.training.benchmark import layered
from socialrec.training.config import ConfigError, format_names
from socialrec.training.pipeline import (
    TrainResult,
    assign_aliases,
    peak_memory_mb,
    prepare,
    run_training,
)

log = logging.getLogger(__name__)

#: the task whose validation metric decides each endpoint (share: only with validation shares)
ENDPOINT_TASK: dict[str, Task] = {"push_targets": "push", "recommend": "recommend",
                                  "share_partners": "share"}


@dataclass
class AutoResult:
    candidates: dict[str, TrainResult]  # label -> its run (test metrics, valid_metrics)
    endpoints: dict[str, list[str]]  # alias -> the endpoints it serves
    tasks: dict[str, list[Task]]  # alias -> the tasks that chose it
    winners: dict[str, str]  # alias -> label of the candidate chosen for it
    versions: dict[str, str] = field(default_factory=dict)  # label -> registered version
    aliases_set: dict[str, list[str]] = field(default_factory=dict)  # label -> aliases it took
    peak_memory_mb: float = 0.0

    def score(self, label: str, alias: str, metric: str) -> float:
        """The validation score that decided ``alias``: the geometric mean of ``<task>.<metric>``
        over its tasks."""
        values = [self.candidates[label].valid_metrics[t][metric] for t in self.tasks[alias]]
        if min(values) <= 0:
            return 0.0
        return math.exp(sum(math.log(v) for v in values) / len(values))


def candidate_configs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{label: config}`` of every ``model.auto`` candidate (checked before anything runs)."""
    out = {}
    for spec in config["model"]["auto"]["candidates"]:
        model, label, cfg = layered(config, spec)
        cfg = copy.deepcopy(cfg)
        cfg["model"]["name"] = model
        if label in out:
            raise ConfigError(f"model.auto.candidates: {spec!r} is listed twice")
        out[label] = cfg
    return out


def run_auto(config: dict[str, Any], promote: bool = False, show_progress: bool = True,
             register: bool = True, metrics_out: Path | None = None) -> AutoResult:
    """Fit every candidate, choose one per alias on validation, register the winners."""
    metric = config["model"]["auto"]["metric"]
    if int(metric.split("@")[1]) not in config["evaluation"]["ks"]:
        raise ConfigError(f"model.auto.metric {metric!r}: its cut-off must be one of "
                          f"evaluation.ks {config['evaluation']['ks']}")
    candidates = candidate_configs(config)
    prepared = prepare(config)
    has_shares = len(prepared.graph.shares_valid) > 0
    endpoints = tracking.endpoints_by_alias(config)
    tasks = {alias: _tasks(served, has_shares) for alias, served in endpoints.items()}
    watched = _tasks([e for served in endpoints.values() for e in served], has_shares)
    tag = uuid.uuid4().hex[:8]
    name = format_names(config)["registered_model"]
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            label: run_training(cfg, register=False, prepared=prepared,
                                show_progress=show_progress, run_name=f"auto-{label}",
                                tags={"auto": tag}, bundle_out=Path(tmp) / label,
                                validation_tasks=watched)
            for label, cfg in candidates.items()
        }
        result = AutoResult(results, endpoints, tasks, {})
        for alias in endpoints:  # ties: the candidate listed first
            result.winners[alias] = max(results, key=lambda c: result.score(c, alias, metric))
        client, _ = tracking.setup(config)
        for label in dict.fromkeys(result.winners.values()):
            served = [e for a, won in result.winners.items() if won == label
                      for e in endpoints[a]]
            run = results[label]
            with mlflow.start_run(run_id=run.run_id):
                mlflow.set_tag("auto.won", ",".join(served))
                if register:
                    assert run.bundle_dir is not None
                    version = tracking.log_bundle(run.bundle_dir, name)
                    result.versions[label] = version
                    result.aliases_set[label] = assign_aliases(client, name, version, config,
                                                               promote, served)
    result.peak_memory_mb = peak_memory_mb()
    if metrics_out is not None:
        metrics_out.parent.mkdir(parents=True, exist_ok=True)
        metrics_out.write_text(json.dumps(
            {"winners": result.winners,
             "candidates": {label: {"test": r.metrics, "valid": r.valid_metrics}
                            for label, r in results.items()}}, indent=2))
    return result


def _tasks(endpoints: list[str], has_shares: bool) -> list[Task]:
    """The tasks that decide for ``endpoints``, in the order of :data:`ENDPOINT_TASK` (share:
    recommend's when there are no validation share records)."""
    tasks = {"recommend" if t == "share" and not has_shares else t
             for t in (ENDPOINT_TASK[e] for e in endpoints)}
    return [t for t in ENDPOINT_TASK.values() if t in tasks]
