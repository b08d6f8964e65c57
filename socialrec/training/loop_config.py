"""``retrain:`` and ``promotion:``, the two steps of the learning loop (DESIGN.md, "The loop"):
``socialrec retrain`` (training/retrain.py) and ``socialrec promote --experiment``
(training/promotion.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from socialrec.evaluation.ab import METRIC_BY_NAME


class RetrainConfig(BaseModel):
    """How a retrain reads the event store, splits off its recent window, starts from its parent
    and gates its result."""

    model_config = ConfigDict(extra="forbid")

    parent_alias: str = "champion"  # the version a retrain extends (ids, warm start, lineage)
    event_store: str | None = None  # the store to learn from; null: serving.event_store
    since_days: float | None = Field(None, gt=0)  # read store events this recent (null: all)
    valid_days: float = Field(1.0, gt=0)  # the recent window validation and the gate read
    holdout_users: float = Field(0.2, gt=0, lt=1)  # share of the window's users held out
    organic_targets: bool = True  # score only events no served list caused (they still train)
    warm_start: bool = True  # start from the parent's parameters (false: a cold train)
    fine_tune: dict[str, Any] = {"epochs": 10, "patience": 2}  # model keys for a warm start
    gate_tolerance: float = Field(0.01, ge=0, lt=1)  # relative shortfall the gate forgives
    gate_alpha: float | None = Field(0.05, gt=0, lt=1)  # refuse only a significant shortfall
    lock_ttl_s: float = Field(21600.0, gt=0)  # a lock older than this is taken to be dead


class PromotionConfig(BaseModel):
    """When ``socialrec promote --experiment`` moves ``champion`` to the challenger."""

    model_config = ConfigDict(extra="forbid")

    experiment: str | None = None  # the experiment whose verdict decides (--experiment wins)
    challenger_alias: str = "challenger"  # the alias the experiment's treatment variant follows
    primary_metric: str = "conversion"  # a metric of the A/B report (evaluation/ab.py)
    require: Literal["no_harm", "win"] = "no_harm"
    min_detectable_effect: float = Field(0.1, gt=0)  # relative to the control's value
    power: float = Field(0.8, gt=0, lt=1)
    alpha: float = Field(0.05, gt=0, lt=1)

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        if name not in METRIC_BY_NAME:
            raise ValueError(f"unknown A/B metric {name!r}; one of {', '.join(METRIC_BY_NAME)}")
        return name
