"""The ``evaluation:`` config section (configs/defaults.yaml), validated when a config is loaded."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from socialrec.evaluation.metrics import METRICS
from socialrec.features.validation import did_you_mean

_METRIC_AT_K = re.compile(r"(?P<metric>\w+)@(?P<k>[1-9]\d*)")


def check_metric_name(name: str) -> str:
    """``name`` if it is a ranking metric at a cut-off (``ndcg@20``), else a ValueError saying
    what is expected."""
    m = _METRIC_AT_K.fullmatch(name)
    if m and m["metric"] in METRICS:
        return name
    if m:
        hint = did_you_mean(m["metric"], METRICS)
        raise ValueError(f"unknown metric {m['metric']!r} in {name!r}{hint}; metrics: "
                         f"{', '.join(METRICS)}")
    raise ValueError(f"expected <metric>@<k> such as ndcg@20 (metrics: {', '.join(METRICS)}), "
                     f"got {name!r}")


class PublishedResult(BaseModel):
    """A published number quoted beside a benchmark table (never run here)."""

    model_config = ConfigDict(extra="forbid")

    model: str  # who published it
    metrics: dict[str, float]  # recall@10: 0.2064, ...
    note: str = ""  # what differs from this protocol
    task: Literal["recommend", "push", "share"] | None = None  # default: the table's first task

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, metrics: dict[str, float]) -> dict[str, float]:
        for name in metrics:
            check_metric_name(name)
        return metrics


class EvaluationConfig(BaseModel):
    """How every model is scored (evaluation/offline.py)."""

    model_config = ConfigDict(extra="forbid")

    ks: list[PositiveInt] = Field([10, 20], min_length=1)  # cut-offs of every ranking metric
    protocol: Literal["full", "sampled"] = "full"
    negatives: PositiveInt = 999  # sampled protocol: negatives per positive
    share_hops: Literal[1, 2] = 1  # share-partner candidates: friends (1) or friends of friends
    published: list[PublishedResult] = []
