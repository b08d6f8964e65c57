"""``socialrec retrain``: the daily step of the loop — base dataset + the event store's feedback,
ids kept, warm-started from the parent version, gated against the champion.

1. **One at a time.** A lease in the event store's database (training/lease.py): a second
   retrain started meanwhile refuses at once (:class:`~socialrec.training.lease.LeaseHeld`) and
   registers nothing.
2. **Tables.** The base dataset (``dataset:``) plus the store's feedback since ``--since`` (or
   ``retrain.since_days``), validated by features/store_tables.py: every refused event is
   counted by reason and reported (on the run, the version and the command's output), never
   dropped silently.
3. **Split.** features/window_split.py: the most recent ``retrain.valid_days`` are the
   validation window; a share of that window's users are held out (half early stopping, half the
   gate), everything else trains — today's launches included. With ``retrain.organic_targets``
   the held-out targets are organic events only: what a push or a recommendation caused trains
   but is not scored (it would favour the champion that served it).
4. **Ids.** The graph is encoded with the parent's IdMaps (``build_graph(id_maps=...)``): every
   index the parent had keeps its meaning; new users and items are appended.
5. **Warm start.** The model starts from the parent's layer-0 parameters (models/warm_start.py)
   with ``retrain.fine_tune`` applied (fewer epochs, shorter patience); ``--cold`` or a parent
   without them trains from scratch.
6. **Gate.** Champion and candidate are scored on the gate half of the recent window, on the
   users and items the champion knows (the pairs it could have served); a candidate below the
   champion on any ``tracking.gate_metrics`` (recommend and push) by more than
   ``retrain.gate_tolerance`` — significantly so at ``retrain.gate_alpha``, paired over the
   gate's queries: a day's held-out users are few — is refused: its run says why and nothing
   is registered.
7. **Registration.** A candidate that passes is registered with its lineage as version tags, set
   in the same call that creates the version (nothing half-registered), then takes
   ``promotion.challenger_alias`` (or ``--alias``): the experiment whose treatment follows that
   alias gives it its traffic share, and ``socialrec promote --experiment`` decides the rest.

Idempotent: the run records a hash of its training data, parent and settings; a retrain whose
hash a finished retrain already had does nothing and says which run that was.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import mlflow
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml
from mlflow import MlflowClient

from socialrec.evaluation.metrics import PerQuery
from socialrec.evaluation.offline import evaluate_per_query
from socialrec.features.events import EventStore
from socialrec.features.graph import GraphData, build_graph
from socialrec.features.idmap import IdMap
from socialrec.features.loader import load_dataset
from socialrec.features.store_tables import StoreTables, store_tables
from socialrec.features.tables import Dataset, ValidationReport, conform
from socialrec.features.window_split import window_split
from socialrec.models.bundle import ModelBundle
from socialrec.models.warm_start import has_state
from socialrec.training import tracking
from socialrec.training.config import data_root, format_names
from socialrec.training.lease import Lease
from socialrec.training.pipeline import Prepared, dataset_hash, run_training

log = logging.getLogger(__name__)

#: Models whose fit starts from a parent's parameters (the others always train from scratch).
WARM_MODELS = ("socialgnn", "lightgcn")
#: Exposures older than ``since`` by this much are read too: feedback may follow a push days later.
ATTRIBUTION_MARGIN = timedelta(days=30)
#: Tasks the gate can score on the champion's ids (share metrics need the share ranker).
GATE_TASKS = ("recommend", "push")
DAY = 86_400

Status = Literal["trained", "refused", "unchanged", "measured"]
#: Rewrites the training interactions before the fit (tests and bench/loop.py break a candidate
#: on purpose with it, to show the guards stop it).
TrainHook = Callable[[pd.DataFrame], pd.DataFrame]


class RetrainError(RuntimeError):
    """A retrain that cannot run (no parent, nothing to validate on); nothing was registered."""


@dataclass
class GateRow:
    """One gate metric: champion and candidate means over the gate's queries, and the candidate's
    relative change with the upper end of its one-sided confidence interval (paired over the
    queries; ``upper`` is the change itself when no significance level is set)."""

    metric: str
    champion: float
    candidate: float
    tolerance: float
    upper: float = math.inf  # the largest relative change (candidate / champion - 1) the data allow
    queries: int = 0

    @property
    def passed(self) -> bool:
        """Refused only when even ``upper`` falls short of the champion by more than the
        tolerance: a shortfall the gate's few queries cannot tell from noise passes."""
        return self.upper >= -self.tolerance


def gate_row(metric: str, champion: np.ndarray, candidate: np.ndarray, tolerance: float,
             alpha: float | None) -> GateRow:
    """Compare per-query values of one metric (same queries, same order) of champion and
    candidate. With ``alpha`` the relative change's upper bound is the one-sided ``1 - alpha``
    normal bound of the paired differences' mean (the queries are many: items or users)."""
    base, mean = float(champion.mean()), float(candidate.mean())
    change = mean / base - 1 if base > 0 else (0.0 if mean >= base else -math.inf)
    upper = change
    if alpha is not None and len(champion) > 1 and base > 0:
        diff = candidate - champion
        se = float(diff.std(ddof=1)) / math.sqrt(len(diff))
        upper = change + NormalDist().inv_cdf(1 - alpha) * se / base
    return GateRow(metric, base, mean, tolerance, upper, len(champion))


@dataclass
class RetrainResult:
    status: Status
    run_id: str
    parent_version: str
    champion_version: str | None
    version: str | None = None
    aliases: list[str] = field(default_factory=list)
    store: StoreTables | None = None
    lineage: dict[str, str] = field(default_factory=dict)
    gate: list[GateRow] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    warm_start: dict[str, int] = field(default_factory=dict)
    note: str = ""

    @property
    def gate_passed(self) -> bool:
        return all(row.passed for row in self.gate)


def event_store_url(config: dict[str, Any]) -> str:
    """``retrain.event_store``, else env ``SOCIALREC_EVENT_STORE`` (as the service reads it),
    else ``serving.event_store``; a relative SQLite path is anchored at the project."""
    url = (config["retrain"]["event_store"] or os.environ.get("SOCIALREC_EVENT_STORE")
           or config["serving"]["event_store"])
    return tracking.anchored_sqlite(url)


def download_bundle(client: MlflowClient, name: str, version: str, dst: Path) -> Path:
    """The bundle directory of registered ``version`` (a pyfunc model logged with
    ``artifacts={"bundle": dir}``), downloaded under ``dst``."""
    uri = client.get_model_version_download_uri(name, version)
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                         tracking_uri=client.tracking_uri))
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
    entry = (mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts") or {}).get(
        "bundle")
    if not entry or not (model_dir / entry["path"] / "meta.json").exists():
        raise RetrainError(f"{name} version {version}: its model has no bundle artifact")
    return model_dir / entry["path"]


def combine(base: Dataset, store: StoreTables) -> Dataset:
    """The base dataset with the store's interactions, share records and friendships added."""
    report = copy.deepcopy(base.report) if base.report is not None else ValidationReport()
    store.add_to(report)

    def stacked(table: str, frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
        return conform(pd.concat([f for f in frames if len(f)] or [frames[0]],
                                 ignore_index=True), table)

    return Dataset(
        name=base.name,
        interactions=stacked("interactions", [base.interactions, store.interactions]),
        social=stacked("social", [base.social, store.social]),
        shares=stacked("shares", [base.shares, store.shares]),
        items=base.items, users=base.users, social_symmetric=base.social_symmetric,
        notes=[*base.notes, f"event store: {store.used:,} of {store.read:,} feedback events "
               f"used, {store.total_refused:,} refused"],
        report=report, allowed_splits=base.allowed_splits,
    )


def restrict(graph: GraphData, users: IdMap, items: IdMap) -> tuple[GraphData, np.ndarray,
                                                                     np.ndarray]:
    """``graph`` cut down to ``users`` x ``items`` (ids of another model, all known to
    ``graph``), in their order; also returns their rows / columns in ``graph``."""
    rows = graph.users.to_index_series(pd.Series(users.ids, dtype="string"))
    cols = graph.items.to_index_series(pd.Series(items.ids, dtype="string"))
    if (rows < 0).any() or (cols < 0).any():
        raise RetrainError("the champion knows ids the candidate does not: ids were renumbered")

    def block(m: sp.csr_matrix) -> sp.csr_matrix:
        return sp.csr_matrix(m)[rows][:, cols]

    no_shares = graph.shares_train.iloc[:0]
    return GraphData(
        users=users, items=items, train=block(graph.train), valid=block(graph.valid),
        test=block(graph.test), social=sp.csr_matrix(graph.social)[rows][:, rows],
        purchases=block(graph.purchases), shares_train=no_shares, shares_valid=no_shares,
        shares_test=no_shares, item_category=graph.item_category[cols],
        categories=graph.categories, push_opt_in=graph.push_opt_in[rows],
    ), rows, cols


def gate_metric_names(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(gate metric, task, metric name) of the gate metrics the gate can score."""
    out = []
    for name in config["tracking"]["gate_metrics"]:
        parts = name.split(".")
        if len(parts) == 3 and parts[1] in GATE_TASKS:
            out.append((name, parts[1], parts[2].replace("_at_", "@")))
    return out


def gate(config: dict[str, Any], graph: GraphData, champion: ModelBundle,
         candidate: ModelBundle) -> list[GateRow]:
    """Champion and candidate on the gate half of the recent window (``graph.test``), on the
    users and items the champion knows."""
    sub, rows, cols = restrict(graph, champion.users, champion.items)
    wanted = gate_metric_names(config)
    if not wanted:
        raise RetrainError(f"tracking.gate_metrics has no {' or '.join(GATE_TASKS)} metric to "
                           "gate a retrain on")
    ks = sorted({int(m.split("@")[1]) for _, _, m in wanted})
    evaluation = config["evaluation"]
    common = {"target": "test", "ks": ks, "protocol": evaluation["protocol"],
              "negatives": evaluation["negatives"], "seed": config["split"]["seed"]}
    values: dict[str, dict[str, PerQuery]] = {}
    for who, user_emb, item_emb in (
            ("champion", champion.user_emb, champion.item_emb),
            ("candidate", candidate.user_emb[rows], candidate.item_emb[cols])):
        values[who] = {task: evaluate_per_query(user_emb, item_emb, sub, task, **common)
                       for task in ("recommend", "push")}
    r_cfg = config["retrain"]
    return [gate_row(name, values["champion"][task].values[metric],
                     values["candidate"][task].values[metric], r_cfg["gate_tolerance"],
                     r_cfg["gate_alpha"])
            for name, task, metric in wanted]


def _fit_config(config: dict[str, Any], parent_dir: Path, warm: bool) -> tuple[dict[str, Any],
                                                                              str]:
    """The config the candidate is fitted with, and how it starts (``warm`` / ``cold`` and why)."""
    cfg = copy.deepcopy(config)
    name = cfg["model"]["name"]
    if not warm:
        return cfg, "cold"
    if name not in WARM_MODELS:
        return cfg, f"cold ({name} has no warm start)"
    if not has_state(parent_dir):
        return cfg, "cold (the parent bundle has no layer-0 parameters)"
    section = cfg["model"].setdefault(name, {})
    section.update(cfg["retrain"]["fine_tune"])
    section["warm_start"] = str(parent_dir)
    return cfg, "warm"


def _data_hash(dataset: Dataset, parent_version: str, fit_config: dict[str, Any],
               start: str) -> str:
    """What a retrain learns from and how: the tables, the parent, the model and retrain
    settings (not the lock's, not the warm start's temporary path)."""
    model = copy.deepcopy(fit_config["model"])
    for section in model.values():
        if isinstance(section, dict):
            section.pop("warm_start", None)
    retrain_settings = {k: v for k, v in fit_config["retrain"].items() if k != "lock_ttl_s"}
    settings = {"parent": parent_version, "start": start, "model": model,
                "retrain": retrain_settings, "graph": fit_config["graph"]}
    h = hashlib.sha256(dataset_hash(dataset).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _finished_run(experiment_id: str, data_hash: str) -> Any | None:
    runs = mlflow.search_runs(experiment_ids=[experiment_id], output_format="list",
                              filter_string=f"tags.`retrain.data_hash` = '{data_hash}'")
    done = [r for r in runs if r.data.tags.get("retrain.status") in ("trained", "refused",
                                                                     "measured")]
    return done[0] if done else None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def retrain(config: dict[str, Any], *, since: datetime | None = None,
            as_of: datetime | None = None, cold: bool = False, alias: str | None = None,
            show_progress: bool = True, train_hook: TrainHook | None = None,
            register: bool = True) -> RetrainResult:
    """Run the retrain step (module docstring); raises :class:`RetrainError` when it cannot,
    ``LeaseHeld`` when another retrain runs. ``as_of`` is "now" (the window's end);
    ``alias`` the alias a passing version takes (default ``promotion.challenger_alias``);
    ``register=False`` trains, gates and logs the run but registers nothing (status
    ``measured``: e.g. a cold train on the same data, to compare with a warm one)."""
    client, experiment_id = tracking.setup(config)
    name = format_names(config)["registered_model"]
    url = event_store_url(config)
    with EventStore(url) as store, Lease(store.engine, f"retrain:{name}",
                                         config["retrain"]["lock_ttl_s"]):
        return _retrain(config, client, experiment_id, name, store, since=since,
                        as_of=as_of, cold=cold, alias=alias, show_progress=show_progress,
                        train_hook=train_hook, register=register)


def _retrain(config: dict[str, Any], client: MlflowClient, experiment_id: str, name: str,
             store: EventStore, *, since: datetime | None, as_of: datetime | None, cold: bool,
             alias: str | None, show_progress: bool,
             train_hook: TrainHook | None, register: bool) -> RetrainResult:
    r_cfg = config["retrain"]
    parent = tracking.alias_holder(client, name, r_cfg["parent_alias"])
    if parent is None:
        raise RetrainError(f"no version of {name} holds alias {r_cfg['parent_alias']!r}: "
                           "train one first (socialrec train)")
    champion_alias = config["tracking"]["alias"]
    champion = tracking.alias_holder(client, name, champion_alias)
    as_of = as_of or datetime.now(UTC)
    as_of_s = int(as_of.timestamp())
    if since is None and r_cfg["since_days"] is not None:
        since = as_of - timedelta(days=r_cfg["since_days"])
    parent_tags = client.get_run(parent.run_id).data.tags

    with tempfile.TemporaryDirectory(prefix="socialrec-retrain-") as tmp:
        tmp_path = Path(tmp)
        parent_dir = download_bundle(client, name, str(parent.version), tmp_path / "parent")
        base = load_dataset(config["dataset"], data_root(config))
        base_ts = base.interactions["ts"].dropna()
        window_start = (int(pd.Timestamp(parent_tags["lineage.window_start"]).timestamp())
                        if "lineage.window_start" in parent_tags
                        else int(base_ts.min()) if len(base_ts) else None)
        feedback = store.feedback(since=since)
        exposures = store.exposures(since=None if since is None else since - ATTRIBUTION_MARGIN)
        tables = store_tables(feedback, exposures, as_of=as_of_s, window_start=window_start,
                              items=base.items)
        dataset = combine(base, tables)
        valid_start = int(as_of_s - r_cfg["valid_days"] * DAY)
        split = window_split(dataset, valid_start, r_cfg["holdout_users"],
                             int(config["split"]["seed"]),
                             unscored=tables.served_pairs if r_cfg["organic_targets"] else None)
        if train_hook is not None:
            split.train = train_hook(split.train)
        if split.valid.empty or split.test.empty:
            raise RetrainError(
                f"no held-out pairs in the last {r_cfg['valid_days']} days (valid "
                f"{len(split.valid)}, gate {len(split.test)} events): nothing to validate a "
                "retrain on; is the service writing feedback to this event store?")
        ids = (IdMap.load(parent_dir / "users.npy"), IdMap.load(parent_dir / "items.npy"))
        n_parent = (len(ids[0]), len(ids[1]))
        graph = build_graph(dataset, split, config["graph"]["event_weights"], id_maps=ids)
        fit_config, start = _fit_config(config, parent_dir, warm=not cold)
        data_hash = _data_hash(dataset, str(parent.version), fit_config,
                               start + (" hooked" if train_hook is not None else "")
                               + ("" if register else " measured"))
        done = _finished_run(experiment_id, data_hash)
        if done is not None:
            return RetrainResult("unchanged", done.info.run_id, str(parent.version),
                                 str(champion.version) if champion else None,
                                 version=done.data.tags.get("retrain.version"),
                                 note=f"run {done.info.run_id} already retrained on this data "
                                      f"({done.data.tags.get('retrain.status')})")
        lineage = {
            "lineage.parent_version": str(parent.version),
            "lineage.parent_run_id": parent.run_id,
            "lineage.champion_version": str(champion.version) if champion else "",
            "lineage.window_start": _iso(window_start) if window_start is not None else "",
            "lineage.window_end": _iso(as_of_s),
            "lineage.valid_start": _iso(valid_start),
            "lineage.store_since": since.isoformat() if since else "",
            "lineage.event_store": store.engine.url.render_as_string(hide_password=True),
            "lineage.events_read": str(tables.read),
            "lineage.events_used": str(tables.used),
            "lineage.events_refused": str(tables.total_refused),
            **{f"lineage.refused.{k}": str(v) for k, v in tables.refused.items()},
            **{f"lineage.ignored.{k}": str(v) for k, v in tables.ignored.items()},
            "lineage.new_users": str(graph.n_users - n_parent[0]),
            "lineage.new_items": str(graph.n_items - n_parent[1]),
            "lineage.start": start,
            "retrain.data_hash": data_hash,
        }
        prepared = Prepared(dataset, split, graph, dataset_hash(dataset))
        result = run_training(
            fit_config, prepared=prepared, register=False, bundle_out=tmp_path / "bundle",
            run_name=f"retrain {fit_config['model']['name']} ({start.split()[0]})",
            tags=lineage, show_progress=show_progress)
        candidate = ModelBundle.load(tmp_path / "bundle")
        if champion is None:
            champion_bundle, rows = candidate, []
        else:
            champion_dir = parent_dir if champion.version == parent.version else (
                download_bundle(client, name, str(champion.version), tmp_path / "champion"))
            champion_bundle = ModelBundle.load(champion_dir)
            rows = gate(config, graph, champion_bundle, candidate)
        out = RetrainResult("refused", result.run_id, str(parent.version),
                            str(champion.version) if champion else None, store=tables,
                            lineage=lineage, gate=rows, seconds=result.seconds,
                            metrics=result.metrics,
                            warm_start=_warm_start_counts(candidate))
        with mlflow.start_run(run_id=result.run_id):
            mlflow.log_metrics({"retrain.events_read": tables.read,
                                "retrain.events_used": tables.used,
                                "retrain.events_refused": tables.total_refused,
                                **{f"gate.champion.{r.metric}": r.champion for r in rows},
                                **{f"gate.candidate.{r.metric}": r.candidate for r in rows},
                                **{f"gate.upper_change.{r.metric}": r.upper for r in rows}})
            mlflow.log_dict({"store": {"read": tables.read, "used": tables.used,
                                       "refused": tables.refused, "ignored": tables.ignored,
                                       "examples": tables.examples},
                             "gate": [vars(r) | {"passed": r.passed} for r in rows],
                             "warm_start": out.warm_start}, "report/retrain.json")
            verdict = "passed" if out.gate_passed else "refused"
            mlflow.set_tag("gate.verdict", verdict)
            if out.gate_passed and not register:
                out.status = "measured"
            elif out.gate_passed:
                gate_tags = {f"gate.{r.metric}": f"{r.candidate:.4f} vs {r.champion:.4f}"
                             for r in rows}
                out.version = tracking.log_bundle(
                    tmp_path / "bundle", name, tags={**lineage, "gate.verdict": verdict,
                                                     **gate_tags})
                target = alias or config["promotion"]["challenger_alias"]
                client.set_registered_model_alias(name, target, out.version)
                out.aliases = [target]
                out.status = "trained"
                mlflow.set_tag("retrain.version", out.version)
            else:
                worse = [r for r in rows if not r.passed]
                out.note = "gate refused: " + ", ".join(
                    f"{r.metric} {r.candidate:.4f} < {r.champion:.4f} (at best {r.upper:+.1%} "
                f"over {r.queries} queries)" for r in worse)
                mlflow.set_tag("gate.refused", out.note[:500])
            mlflow.set_tag("retrain.status", out.status)  # last: marks the run complete
        return out


def _warm_start_counts(bundle: ModelBundle) -> dict[str, int]:
    """How the candidate's rows started, as the fit recorded it in the bundle's meta."""
    counts = bundle.meta.get("warm_start")
    return {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {}
