"""``socialrec train``: load → validate → split → train → evaluate → bundle + indexes → MLflow
→ register."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml

from socialrec.evaluation.objective import Objective, Task, parse_objective
from socialrec.evaluation.objective import validation_metrics as objective_metrics
from socialrec.evaluation.offline import evaluate_all, evaluate_share
from socialrec.features.graph import GraphData, build_graph
from socialrec.features.loader import load_dataset
from socialrec.features.splits import Split, make_split
from socialrec.features.tables import Dataset
from socialrec.models.base import Recommender
from socialrec.models.bundle import ModelBundle
from socialrec.models.index import IndexConfig, build_indexes
from socialrec.models.registry import make_model
from socialrec.models.runtime import FitRuntime
from socialrec.models.share_features import ShareContext
from socialrec.training import tracking
from socialrec.training.config import data_root, format_names
from socialrec.training.share_fitting import train_share_ranker

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A dataset loaded, split and encoded: what every model of one benchmark shares."""

    dataset: Dataset
    split: Split
    graph: GraphData
    dataset_hash: str
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, dict[str, float]]
    bundle_dir: Path | None  # where the bundle was kept on disk (``bundle_out``), if anywhere
    registered_model: str
    model_version: str | None
    aliases_set: list[str]
    seconds: dict[str, float]
    peak_memory_mb: float
    valid_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # if asked for
    #: a composite model's parts (models/blend.py): part name -> its test metrics
    part_metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def dataset_hash(dataset: Dataset) -> str:
    """Content hash of the tables a model learns from (logged, and kept in the bundle's meta)."""
    h = hashlib.sha256()
    for frame in (dataset.interactions, dataset.social, dataset.shares):
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def prepare(config: dict[str, Any]) -> Prepared:
    seconds = {}
    t = time.perf_counter()
    dataset = load_dataset(config["dataset"], data_root(config))
    seconds["load"] = time.perf_counter() - t
    t = time.perf_counter()
    split = make_split(dataset, config["split"])
    graph = build_graph(dataset, split, config["graph"]["event_weights"])
    seconds["split_and_graph"] = time.perf_counter() - t
    return Prepared(dataset, split, graph, dataset_hash(dataset), seconds)


def validation_metrics(
    graph: GraphData, config: dict[str, Any], user_emb: np.ndarray, item_emb: np.ndarray,
    ks: list[int],
) -> dict[str, float]:
    """Recommend metrics on the validation split (never test), under the protocol the test is read
    with: a model chosen by full ranking is not the best one at ranking among sampled negatives
    (where popularity weighs more), and the other way round."""
    return task_validation_metrics(graph, config, user_emb, item_emb, ["recommend"], ks)[
        "recommend"]


def task_validation_metrics(
    graph: GraphData, config: dict[str, Any], user_emb: np.ndarray, item_emb: np.ndarray,
    tasks: Sequence[Task], ks: Sequence[int],
) -> dict[str, dict[str, float]]:
    """``{task: metrics}`` on the validation split for each of ``tasks``, under the test's
    protocol (:func:`validation_metrics`)."""
    evaluation = config["evaluation"]
    return objective_metrics(
        user_emb, item_emb, graph, tasks, ks, protocol=evaluation["protocol"],
        negatives=evaluation["negatives"], seed=config["split"]["seed"],
        hops=evaluation["share_hops"])


def objective_of(config: dict[str, Any]) -> Objective:
    """What early stopping, tuning and ``model.name: auto`` maximise: ``model.early_stop_metric``
    (evaluation/objective.py)."""
    return parse_objective(config["model"]["early_stop_metric"])


def objective_values(graph: GraphData, config: dict[str, Any], user_emb: np.ndarray,
                     item_emb: np.ndarray, ks: Sequence[int] = ()
                     ) -> tuple[float, dict[str, dict[str, float]]]:
    """The objective on validation, and the metrics it was computed from (every task it watches,
    at its cut-offs and ``ks``)."""
    objective = objective_of(config)
    tasks = objective.tasks
    cutoffs = sorted({*ks, *(p.k for p in objective.parts)})
    metrics = task_validation_metrics(graph, config, user_emb, item_emb, tasks, cutoffs)
    return objective.value(metrics), metrics


def validator_for(graph: GraphData, config: dict[str, Any]):
    """The early-stopping objective (``model.early_stop_metric``) as a function of the
    embeddings."""

    def validate(user_emb: np.ndarray, item_emb: np.ndarray) -> float:
        return objective_values(graph, config, user_emb, item_emb)[0]

    return validate


def fit_model(
    prepared: Prepared, config: dict[str, Any], show_progress: bool = True,
    runtime: FitRuntime | None = None,
) -> Recommender:
    """The configured model, fitted; ``runtime``: one rank of a distributed fit
    (training/distributed.py), for the models whose fit loop takes one."""
    model = make_model(
        config["model"]["name"], config["model"], validator=validator_for(prepared.graph, config)
    )
    if runtime is not None:
        if not hasattr(model, "runtime"):
            raise ValueError(f"model {config['model']['name']!r} does not train on several "
                             f"processes (--nproc); socialgnn and lightgcn do")
        model.runtime = runtime
    return model.fit(prepared.graph, show_progress=show_progress)


def make_bundle(
    prepared: Prepared, model: Recommender, config: dict[str, Any], metrics: dict[str, Any]
) -> ModelBundle:
    """Everything serving needs. Social edges carry tie strength from training-period events, and
    the share-partner ranker is learned when the split has validation share records (its test
    metrics are added to ``metrics`` as task ``share_ranker``)."""
    graph = prepared.graph
    user_emb, item_emb = model.embeddings()
    seen = graph.train.copy()
    seen.data[:] = 1.0
    context = ShareContext.from_graph(graph, user_emb, item_emb, cut=prepared.split.cut_ts)
    ranker = None
    if len(graph.shares_valid) and len(graph.shares_test):
        # trained on the candidates it will rank: with share_hops 2 friends of friends too (a
        # ranker trained on friends only ranked 2-hop candidates it had never seen, and collapsed)
        fitted = train_share_ranker(
            graph, user_emb, item_emb, hops=config["evaluation"]["share_hops"],
            cut=prepared.split.cut_ts, seed=int(config["split"]["seed"])
        )
        ranker = fitted.to_dict()
        metrics["share_ranker"] = evaluate_share(
            fitted.scorer(context),
            graph,
            "test",
            config["evaluation"]["ks"],
            config["evaluation"]["share_hops"],
        )
    bundle = ModelBundle(
        users=graph.users,
        items=graph.items,
        user_emb=user_emb,
        item_emb=item_emb,
        social=context.social,
        seen=seen,
        purchases=graph.purchases,
        popularity=np.asarray(seen.sum(axis=0)).ravel().astype(np.float32),
        item_category=graph.item_category,
        push_opt_in=graph.push_opt_in,
        share_ranker=ranker,
        share_counts=context.share_counts,
        share_joins=context.share_joins,
        warm_start=model.warm_start_state(),
        meta={
            "model_name": model.name,
            "dataset": config["dataset"]["name"],
            "dataset_hash": prepared.dataset_hash,
            "split_protocol": prepared.split.protocol,
            "config": config,
            "metrics": metrics,
            "categories": graph.categories,
            "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
            "warm_start": getattr(model, "warm_start_counts", None) or None,
        },
    )
    build_indexes(bundle, IndexConfig.model_validate(config["index"]))
    return bundle


def test_metrics(prepared: Prepared, config: dict[str, Any], user_emb: np.ndarray,
                 item_emb: np.ndarray) -> dict[str, dict[str, float]]:
    """Every task on the test split, as configured (read once per model, at the end)."""
    evaluation = config["evaluation"]
    return evaluate_all(user_emb, item_emb, prepared.graph, target="test", ks=evaluation["ks"],
                        protocol=evaluation["protocol"], negatives=evaluation["negatives"],
                        hops=evaluation["share_hops"], seed=config["split"]["seed"])


def objective_key(config: dict[str, Any]) -> str:
    """The objective as an MLflow metric name (no '@', '(', ',' or spaces):
    ``gmean(recommend.ndcg@20, push.ndcg@20)`` -> ``gmean.recommend.ndcg_at_20.push.ndcg_at_20``;
    ``ndcg@20`` keeps its old name ``ndcg_at_20``."""
    text = config["model"]["early_stop_metric"].replace("@", "_at_")
    return re.sub(r"[^\w.]+", ".", text).strip(".")


def describe(dataset: Dataset) -> dict[str, Any]:
    inter = dataset.interactions
    return {
        "name": dataset.name,
        "users": int(inter["user_id"].nunique()),
        "items": int(inter["item_id"].nunique()),
        "interactions": len(inter),
        "events": {str(k): int(v) for k, v in inter["event"].value_counts().items()},
        "social_edges": len(dataset.social),
        "share_records": len(dataset.shares),
        "notes": dataset.notes,
    }


def _curves_png(model: Recommender, path: Path) -> bool:
    history = getattr(model, "history", None)
    if history is None or not history.loss:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(range(1, len(history.loss) + 1), history.loss)
    ax[0].set(title="training loss (BPR)", xlabel="epoch")
    if history.valid:
        epochs, values = zip(*history.valid, strict=True)
        ax[1].plot(epochs, values, marker=".")
        ax[1].axvline(history.best_epoch, color="grey", linestyle="--", label="best")
        ax[1].legend()
    ax[1].set(title="validation", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    lines = ["| task | metric | value |", "|---|---|---:|"]
    for task, values in metrics.items():
        for name, value in values.items():
            if isinstance(value, int | float):
                lines.append(f"| {task} | {name} | {value:.4f} |")
    return "\n".join(lines) + "\n"


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_training(
    config: dict[str, Any],
    metrics_out: Path | None = None,
    promote: bool = False,
    show_progress: bool = True,
    register: bool = True,
    prepared: Prepared | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    bundle_out: Path | None = None,
    validation_tasks: Sequence[Task] = (),
    runtime: FitRuntime | None = None,
) -> TrainResult:
    """Train one model as configured and record it in MLflow; with ``validation_tasks`` their
    validation metrics are computed too (``valid_metrics``, logged as ``valid.<task>.*``).

    A new version gets the configured alias when no version holds it yet; with ``promote`` it also
    takes the alias from a holder whose gate metrics it matches or beats (else it keeps
    ``challenger`` and the comparison is logged). ``runtime``: this is rank 0 of a distributed
    fit (training/distributed.py); the other ranks only fit.
    """
    seconds: dict[str, float] = {}
    prepared = prepared or prepare(config)
    seconds.update(prepared.seconds)
    client, experiment_id = tracking.setup(config)
    names = format_names(config)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name or config["model"]["name"], tags=tags
    ) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in tracking.flatten("", config, {}).items()})
        mlflow.set_tags(
            {
                "dataset": config["dataset"]["name"],
                "dataset_hash": prepared.dataset_hash,
                "split": prepared.split.protocol,
                "model": config["model"]["name"],
            }
        )
        t = time.perf_counter()
        if runtime is not None:  # rank 0 of a distributed fit (training/distributed.py)
            mlflow.set_tag("distributed.world_size", os.environ.get("WORLD_SIZE", "1"))
        model = fit_model(prepared, config, show_progress, runtime)
        seconds["fit"] = time.perf_counter() - t
        t = time.perf_counter()
        user_emb, item_emb = model.embeddings()
        metrics = test_metrics(prepared, config, user_emb, item_emb)
        # a composite model's parts on the same test (a blend's GNN and ALS: its ablation)
        part_metrics = {part.name: test_metrics(prepared, config, *part.embeddings())
                        for part in getattr(model, "parts", [])}
        seconds["evaluate"] = time.perf_counter() - t
        valid_metrics = {}
        if validation_tasks:
            valid_metrics = task_validation_metrics(prepared.graph, config, user_emb, item_emb,
                                                    validation_tasks, config["evaluation"]["ks"])
            mlflow.log_metrics(tracking.flat_metrics("valid", valid_metrics))
        history = getattr(model, "history", None)
        if history is not None:
            for epoch, loss in enumerate(history.loss, start=1):
                mlflow.log_metric("train.loss", loss, step=epoch)
            for epoch, value in history.valid:
                mlflow.log_metric(f"valid.{objective_key(config)}", value, step=epoch)
            seconds["to_best_epoch"] = history.seconds_to_best
            mlflow.log_metrics(
                {
                    "best_epoch": history.best_epoch,
                    "epochs_run": len(history.loss),
                    "seconds_per_epoch": float(np.mean(history.epoch_seconds)),
                }
            )
        version, aliases, bundle_dir = None, [], None
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            if register or bundle_out is not None:
                t = time.perf_counter()
                bundle = make_bundle(prepared, model, config, metrics)
                bundle_dir = bundle.save(bundle_out or tmp_path / "bundle")
                seconds["bundle_and_index"] = time.perf_counter() - t
            memory = peak_memory_mb()
            mlflow.log_metrics(tracking.flat_metrics("test", metrics))
            mlflow.log_metrics(
                {f"seconds.{k}": v for k, v in seconds.items()} | {"peak_memory_mb": memory}
            )
            report = tmp_path / "report"
            report.mkdir()
            (report / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            (report / "dataset.json").write_text(json.dumps(describe(prepared.dataset), indent=2))
            (report / "metrics.md").write_text(metrics_table(metrics))
            _curves_png(model, report / "curves.png")
            mlflow.log_artifacts(str(report), artifact_path="report")
            if register and bundle_dir is not None:
                version = tracking.log_bundle(bundle_dir, names["registered_model"])
                aliases = assign_aliases(
                    client, names["registered_model"], version, config, promote
                )
    if metrics_out is not None:
        metrics_out.parent.mkdir(parents=True, exist_ok=True)
        metrics_out.write_text(json.dumps(metrics, indent=2))
    return TrainResult(
        run.info.run_id,
        metrics,
        bundle_out,
        names["registered_model"],
        version,
        aliases,
        seconds,
        memory,
        valid_metrics,
        part_metrics,
    )


def assign_aliases(client, name: str, version: str, config: dict[str, Any], promote: bool,
                   endpoints: Sequence[str] = tuple(tracking.ENDPOINT_TASKS)) -> list[str]:
    """Give ``version`` the alias of each of ``endpoints`` (``tracking.aliases``, else
    ``tracking.alias``): one no version holds yet, or, with ``promote``, one whose holder it
    matches or beats on that alias's gate metrics; when an alias stays with another version,
    ``version`` becomes ``challenger``."""
    taken, kept_back = [], False
    for alias in tracking.endpoints_by_alias(config, endpoints):
        if tracking.alias_holder(client, name, alias) is None:
            client.set_registered_model_alias(name, alias, version)
            taken.append(alias)
            continue
        if promote:
            try:
                tracking.promote(client, name, version, alias,
                                 tracking.gate_metrics_for(config, alias))
                taken.append(alias)
                continue
            except tracking.GateRefused as refused:
                log.warning("%s", refused)
        kept_back = True
    if kept_back:
        client.set_registered_model_alias(name, "challenger", version)
        taken.append("challenger")
    return taken
