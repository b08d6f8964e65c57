"""What model selection watches: a task's metric on the validation split, or a combination.

One spelling serves early stopping (``model.early_stop_metric``), ``socialrec tune`` and the
choice between candidates (``model.name: auto``):

- ``push.ndcg@20`` — one task's metric (tasks: ``recommend``, ``push``, ``share``);
- ``ndcg@20`` — the same as ``recommend.ndcg@20`` (the spelling of configs before tasks);
- ``gmean(recommend.ndcg@20, push.ndcg@20)`` — the geometric mean of several: a model is better
  when its relative gain on one outweighs its relative loss on the other, whatever the two
  metrics' scales (on Epinions push ndcg is ~4x recommend's, so a plain sum would all but ignore
  recommend). The default (configs/defaults.yaml): a model that trades push away for recommend,
  or the other way round, is not chosen without anyone seeing it.

Every value is read on ``valid``, never ``test``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from socialrec.evaluation.config import check_metric_name
from socialrec.evaluation.offline import (
    Protocol,
    embedding_share_scorer,
    evaluate_push,
    evaluate_recommend,
    evaluate_share,
)
from socialrec.features.graph import GraphData

Task = Literal["recommend", "push", "share"]
TASKS: tuple[Task, ...] = ("recommend", "push", "share")

_GMEAN = re.compile(r"gmean\((?P<parts>[^()]*)\)")


@dataclass(frozen=True)
class TaskMetric:
    task: Task
    metric: str  # ndcg@20

    @property
    def k(self) -> int:
        return int(self.metric.split("@")[1])

    def __str__(self) -> str:
        return f"{self.task}.{self.metric}"


@dataclass(frozen=True)
class Objective:
    """A parsed ``model.early_stop_metric``: the geometric mean of ``parts`` (one part: itself)."""

    parts: tuple[TaskMetric, ...]
    text: str

    @property
    def tasks(self) -> list[Task]:
        return [t for t in TASKS if any(p.task == t for p in self.parts)]

    def ks(self, task: Task) -> list[int]:
        return sorted({p.k for p in self.parts if p.task == task})

    def value(self, metrics: dict[str, dict[str, float]]) -> float:
        """The objective from ``{task: {metric: value}}``: a part's value, or their geometric
        mean (0 as soon as one part is 0)."""
        values = [float(metrics[p.task][p.metric]) for p in self.parts]
        if len(values) == 1:
            return values[0]
        if min(values) <= 0:
            return 0.0
        return math.exp(sum(math.log(v) for v in values) / len(values))

    def __str__(self) -> str:
        return self.text


def _task_metric(text: str, whole: str) -> TaskMetric:
    task, dot, metric = text.strip().rpartition(".")
    if not dot:
        task = "recommend"
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} in {whole!r}; tasks: {', '.join(TASKS)}")
    return TaskMetric(task, check_metric_name(metric))


def parse_objective(text: str) -> Objective:
    """``push.ndcg@20``, ``ndcg@20`` (recommend) or ``gmean(recommend.ndcg@20, push.ndcg@20)``;
    a ValueError says what is expected."""
    text = text.strip()
    m = _GMEAN.fullmatch(text)
    pieces = m["parts"].split(",") if m else [text]
    if not all(p.strip() for p in pieces):
        raise ValueError(f"empty metric in {text!r}; expected e.g. "
                         "gmean(recommend.ndcg@20, push.ndcg@20)")
    parts = tuple(dict.fromkeys(_task_metric(p, text) for p in pieces))
    return Objective(parts, text)


def check_objective(text: str) -> str:
    """``text`` if :func:`parse_objective` reads it (for config validation)."""
    parse_objective(text)
    return text


def validation_metrics(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    data: GraphData,
    tasks: Sequence[Task],
    ks: Sequence[int],
    protocol: Protocol = "full",
    negatives: int = 999,
    seed: int = 2026,
    hops: int = 1,
) -> dict[str, dict[str, float]]:
    """``{task: metrics}`` on the validation split for each of ``tasks`` (share: the embedding
    scorer, over the validation share records)."""
    out: dict[str, dict[str, float]] = {}
    for task in tasks:
        if task == "recommend":
            out[task] = evaluate_recommend(user_emb, item_emb, data, "valid", ks, protocol,
                                           negatives, seed)
        elif task == "push":
            out[task] = evaluate_push(user_emb, item_emb, data, "valid", ks, protocol, negatives,
                                      seed)
        else:
            if not len(data.shares_valid):
                raise ValueError("the objective watches the share task, but the split has no "
                                 "validation share records")
            out[task] = evaluate_share(embedding_share_scorer(user_emb, item_emb), data, "valid",
                                       ks, hops)
    return out
