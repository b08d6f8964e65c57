"""``socialrec benchmark``: every model on the same split, several seeds, one markdown table.

In the manner of RecBole-GNN's results files: the exact command, the protocol, the dataset, and
mean ± std over seeds of every metric next to training time and peak memory.
"""

from __future__ import annotations

import copy
import datetime as dt
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from socialrec.features.paths import project_dir
from socialrec.features.validation import did_you_mean
from socialrec.models.registry import registered_models
from socialrec.training.config import ConfigError, layer_over
from socialrec.training.memory import PeakMemory
from socialrec.training.pipeline import Prepared, describe, prepare, run_training


@dataclass
class ModelRuns:
    model: str
    metrics: list[dict[str, dict[str, float]]] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)
    seconds_to_best: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)


def seeded(config: dict[str, Any], model: str, seed: int) -> dict[str, Any]:
    cfg = copy.deepcopy(config)
    cfg["model"]["name"] = model
    section = cfg["model"].setdefault(model, {}) or {}
    cfg["model"][model] = section
    if model != "popularity":
        section["seed"] = seed
    return cfg


def layered(config: dict[str, Any], spec: str) -> tuple[str, str, dict[str, Any]]:
    """``"als"`` -> (``"als"``, ``"als"``, config); ``"als@configs/x.yaml"`` -> (``"als"``,
    ``"als@x"``, config with x.yaml and what it ``extends:`` layered on top): an ablation row.
    The layered config is validated like any other (a typo in x.yaml is refused naming it)."""
    model, _, layer = spec.partition("@")
    known = registered_models()
    if model not in known:
        raise ConfigError(f"--models {spec}: unknown model {model!r}{did_you_mean(model, known)}; "
                          f"models: {', '.join(known)}")
    if not layer:
        return model, model, config
    return model, f"{model}@{Path(layer).stem}", layer_over(config, Path(layer))


def run_benchmark(
    config: dict[str, Any],
    models: list[str],
    seeds: list[int],
    show_progress: bool = True,
    prepared: Prepared | None = None,
) -> tuple[list[ModelRuns], Prepared, str]:
    rows = [layered(config, spec) for spec in models]  # every row checked before anything runs
    prepared = prepared or prepare(config)
    bench_id = uuid.uuid4().hex[:8]
    results = []
    for model, label, model_config in rows:
        runs = ModelRuns(label)
        parts: dict[str, ModelRuns] = {}
        for seed in seeds if model != "popularity" else seeds[:1]:
            cfg = seeded(model_config, model, seed)
            t = time.perf_counter()
            with PeakMemory() as mem:
                result = run_training(
                    cfg,
                    register=False,
                    prepared=prepared,
                    show_progress=show_progress,
                    run_name=f"{label}-seed{seed}",
                    tags={"benchmark": bench_id, "seed": str(seed)},
                )
            runs.metrics.append(result.metrics)
            for part, metrics in result.part_metrics.items():  # a blend's parts: free rows
                parts.setdefault(part, ModelRuns(f"{label} part: {part}")).metrics.append(metrics)
            runs.fit_seconds.append(result.seconds.get("fit", time.perf_counter() - t))
            runs.seconds_to_best.append(
                result.seconds.get("to_best_epoch", result.seconds.get("fit", 0.0))
            )
            runs.peak_mb.append(mem.peak_mb)
            runs.run_ids.append(result.run_id)
        results.append(runs)
        results.extend(parts.values())
    return results, prepared, bench_id


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def git_commit() -> str:
    """The short commit of the code that ran, ``+dirty`` when tracked files differ from it."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=project_dir(), capture_output=True,
                                  text=True, check=True).stdout.strip()

        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown(
    results: list[ModelRuns],
    prepared: Prepared,
    config: dict[str, Any],
    command: str,
    seeds: list[int],
    bench_id: str,
    commit: str | None = None,
) -> str:
    """The results file. ``commit``: the code that ran, taken before the runs started (a
    benchmark lasts long enough for HEAD or the tree to move); by default the commit now."""
    summary = describe(prepared.dataset)
    commit = commit or git_commit()
    ks = config["evaluation"]["ks"]
    tasks = [
        t for t in ("recommend", "push", "share") if any(t in m for r in results for m in r.metrics)
    ]
    lines = [
        f"# {config['dataset']['name']}: benchmark",
        "",
        f"Made by `{command}` on {dt.date.today().isoformat()} at commit `{commit}` "
        f"({platform.machine()}, {platform.python_version()}); MLflow tag `benchmark={bench_id}`.",
        "",
        "## Protocol",
        "",
        f"- dataset: {summary['users']:,} users, {summary['items']:,} items, "
        f"{summary['interactions']:,} interactions, {summary['social_edges']:,} social edges, "
        f"{summary['share_records']:,} share records",
        f"- split: {prepared.split.protocol}",
        f"- ranking: {config['evaluation']['protocol']}"
        + (
            f" (1 positive vs {config['evaluation']['negatives']} sampled negatives)"
            if config["evaluation"]["protocol"] == "sampled"
            else " (every item ranked; training and validation items of the user excluded)"
        ),
        f"- seeds: {', '.join(map(str, seeds))} (model initialisation / sampling; "
        "the split is fixed); "
        "mean ± sample std over seeds",
        "- early stopping on validation "
        f"{config['model']['early_stop_metric']} (GNN models); test read once, at the end",
    ]
    for note in summary["notes"]:
        lines.append(f"- note: {note}")
    for task in tasks:
        names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "hit", "mrr", "precision")]
        extra = [
            n
            for n in ("coverage",)
            if any(n in m.get(task, {}) for r in results for m in r.metrics)
        ]
        lines += [
            "",
            f"## {task}",
            "",
            "| model | " + " | ".join(names + extra) + " |",
            "|---|" + "---:|" * (len(names) + len(extra)),
        ]
        for r in results:
            cells = []
            for name in names + extra:
                values = [m[task][name] for m in r.metrics if task in m and name in m[task]]
                cells.append(mean_std(values) if values else "—")
            lines.append(f"| {r.model} | " + " | ".join(cells) + " |")
    lines += _published(config["evaluation"].get("published") or [], tasks, ks)
    lines += [
        "",
        "## Cost",
        "",
        "| model | fit seconds | seconds to best epoch | peak RSS (MB) |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        if not r.fit_seconds:
            continue  # a part of a composite model: fitted (and costed) inside it
        lines.append(
            f"| {r.model} | {np.mean(r.fit_seconds):.1f} | {np.mean(r.seconds_to_best):.1f} "
            f"| {np.max(r.peak_mb):.0f} |"
        )
    return "\n".join(lines) + "\n"


def _published(anchors: list[dict[str, Any]], tasks: list[str], ks: list[int]) -> list[str]:
    """Published numbers to read the table against (``evaluation.published`` in the config):
    quoted, never run here, with what differs from this protocol."""
    if not anchors:
        return []
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    lines = ["", "## Published numbers (quoted, not run here)", "",
             "| model | task | " + " | ".join(names) + " | source and what differs |",
             "|---|---|" + "---:|" * len(names) + "---|"]
    for a in anchors:
        cells = [f"{a['metrics'][n]:.4f}" if n in a["metrics"] else "—" for n in names]
        lines.append(f"| {a['model']} | {a.get('task', tasks[0] if tasks else '')} | "
                     + " | ".join(cells) + f" | {a.get('note', '')} |")
    return lines


def write_results(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
