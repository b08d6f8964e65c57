"""A seeded A/B world with known answers, for testing the analysis and for demos.

Each exposed user has a latent propensity ``u ~ U(0, 1)``; their conversion probability is
``base * (1 + k) * u**k`` (mean ``base``; ``k`` = ``heterogeneity``), times ``1 + lift`` in a
treatment, divided by ``1 + push_lift`` when held out, times a campaign effect when campaigns
are the units. Pre-period activity (organic "view" events before the start, CUPED's covariate)
is Poisson with the same shape of rate in a second propensity whose latent normal correlates
``pre_correlation`` with the first. The assignment can deviate from the configured weights
(``actual_weights`` / ``actual_holdout``) to plant a sample-ratio mismatch.

:func:`simulate_rows` gives the per-(unit, user) rows the analysis works on, directly (fast:
the A/A and power studies run it hundreds of times); :func:`simulate_events` also expands them
into the exposures and feedback the service would have logged, and :func:`simulate` writes
those into an :class:`EventStore`. Reading them back through ``unit_rows`` gives the same rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from socialrec.evaluation.ab import ExperimentArms
from socialrec.evaluation.ab_attribution import ROW_COLUMNS
from socialrec.features.events import HOLDOUT, EventStore, Exposure, Feedback

LIST_SIZE = 3  # items per simulated recommendation list
_WRITE_BATCH = 20_000


@dataclass
class SimSpec:
    """What to simulate. ``units`` are users (``unit="user"``, the recommend endpoint) or
    campaigns of ``users_per_campaign`` pushed users each (``unit="campaign"``)."""

    experiment: str = "demo"
    unit: str = "user"
    units: int = 10_000
    users_per_campaign: int = 100
    weights: dict[str, float] = field(default_factory=lambda: {"control": 0.5, "treatment": 0.5})
    actual_weights: dict[str, float] | None = None  # the split that really happens (SRM)
    holdout: float = 0.0  # configured share of held-out users
    actual_holdout: float | None = None
    base_conversion: float = 0.1  # control conversion
    lift: float = 0.0  # relative conversion lift of every non-control variant
    revenue_lift: float = 0.0  # relative lift of the order value in non-control variants
    push_lift: float = 0.25  # conversion of pushed users relative to held-out ones, minus 1
    order_value: float = 30.0  # mean order value (Gamma, shape 2)
    heterogeneity: float = 1.0  # k: spread of users' propensities
    pre_correlation: float = 0.0  # correlation of the pre-period and experiment propensities
    pre_events: float = 5.0  # mean pre-period events per user
    pre_days: int = 28
    campaign_sd: float = 0.0  # log-sd of a per-campaign conversion effect
    open_rate: float = 0.3  # pushes opened (campaign units)
    click_rate: float = 0.1
    share_rate: float = 0.05
    joins_per_share: float = 0.8  # mean friends joining a share (user units only)
    start: datetime = datetime(2024, 3, 1, tzinfo=UTC)
    days: float = 14.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.unit not in ("user", "campaign"):
            raise ValueError(f"SimSpec.unit: expected 'user' or 'campaign', got {self.unit!r}")
        top = self.base_conversion * (1 + self.heterogeneity) * (1 + max(self.lift, 0.0))
        if top > 1:
            raise ValueError(
                f"SimSpec: base_conversion * (1 + heterogeneity) * (1 + lift) = {top:.3f} > 1; "
                "lower base_conversion or heterogeneity")
        for name, w in (("weights", self.weights), ("actual_weights", self.actual_weights)):
            if w is not None and abs(sum(w.values()) - 1) > 1e-9:
                raise ValueError(f"SimSpec.{name} must sum to 1, got {w}")

    @property
    def control(self) -> str:
        return next(iter(self.weights))

    def arms(self) -> ExperimentArms:
        """The configuration the analysis is told about (not the planted split)."""
        return ExperimentArms(self.experiment, dict(self.weights), self.holdout, self.unit)

    def truth(self) -> dict[str, float]:
        """The planted effects."""
        w = self.actual_weights or self.weights
        treat_share = sum(v for k, v in w.items() if k != self.control)
        pushed = self.base_conversion * (1 + treat_share * self.lift)
        return {
            "conversion_lift": self.lift,
            "revenue_lift": (1 + self.lift) * (1 + self.revenue_lift) - 1,
            "control_conversion": self.base_conversion,
            "treatment_conversion": self.base_conversion * (1 + self.lift),
            "holdout_conversion": self.base_conversion / (1 + self.push_lift),
            "push_conversion_lift": pushed / (self.base_conversion / (1 + self.push_lift)) - 1,
        }


@functools.lru_cache(maxsize=8)
def _ids(prefix: str, n: int) -> np.ndarray:
    """``prefix0 … prefix{n-1}`` (cached: the A/A and power studies ask for the same ids)."""
    ids = np.array([f"{prefix}{i}" for i in range(n)], dtype=object)
    ids.flags.writeable = False
    return ids


def _draw(spec: SimSpec) -> pd.DataFrame:
    """All per-row draws (the analysis columns plus what event expansion needs)."""
    rng = np.random.default_rng(spec.seed)
    variants = list(spec.weights)
    actual = spec.actual_weights or spec.weights
    probs = np.array([actual.get(v, 0.0) for v in variants])
    held_share = spec.holdout if spec.actual_holdout is None else spec.actual_holdout
    span = int(spec.days * 86400)
    prefix = spec.experiment

    if spec.unit == "user":
        n = spec.units
        unit_variant = rng.choice(variants, size=n, p=probs)
        held = rng.random(n) < held_share
        unit_ids = user_ids = _ids(f"{prefix}-u", n)
        items = rng.integers(0, 1000, n)  # an item of the first list, named in simulate_events
        offsets = rng.integers(0, span // 2, n)
        campaign_effect = np.ones(n)
        campaign = np.arange(n)
    else:
        m = spec.users_per_campaign
        n = spec.units * m
        campaign_variant = rng.choice(variants, size=spec.units, p=probs)
        campaign = np.repeat(np.arange(spec.units), m)
        unit_variant = campaign_variant[campaign]
        held = rng.random(n) < held_share
        unit_ids = np.array([f"{prefix}-c{c}" for c in range(spec.units)], dtype=object)[campaign]
        user_ids = np.array([f"{prefix}-c{c}-u{j}" for c in range(spec.units) for j in range(m)],
                            dtype=object)
        items = campaign
        offsets = rng.integers(0, span // 2, spec.units)[campaign]
        sd = spec.campaign_sd
        campaign_effect = np.exp(sd * rng.standard_normal(spec.units) - sd**2 / 2)[campaign]
    offsets[0] = 0  # the experiment starts with the first exposure
    arm = np.where(held, HOLDOUT, unit_variant).astype(object)
    treated = ~held & (unit_variant != spec.control)

    k = spec.heterogeneity
    z = rng.standard_normal(n)
    z_pre = spec.pre_correlation * z + np.sqrt(1 - spec.pre_correlation**2) * rng.standard_normal(n)
    propensity = (1 + k) * stats.norm.cdf(z) ** k
    p = spec.base_conversion * propensity * campaign_effect
    p = np.where(treated, p * (1 + spec.lift), p)
    p = np.where(held, p / (1 + spec.push_lift), p)
    bought = rng.random(n) < np.clip(p, 0, 1)
    value = np.round(rng.gamma(2.0, spec.order_value / 2, n), 2)
    value = np.where(treated, np.round(value * (1 + spec.revenue_lift), 2), value)
    pre_activity = rng.poisson(spec.pre_events * (1 + k) * stats.norm.cdf(z_pre) ** k)

    pushed = spec.unit == "campaign"
    opened = ~held & pushed & (rng.random(n) < spec.open_rate)
    clicked = ~held & (rng.random(n) < spec.click_rate)
    shared = ~held & (rng.random(n) < spec.share_rate)
    joins = np.where(shared & (spec.unit == "user"), rng.poisson(spec.joins_per_share, n), 0)
    requests = 1 + rng.poisson(0.5, n) if spec.unit == "user" else np.ones(n, dtype=int)

    # Times are seconds after the start until the frame is built (numpy is much faster here).
    def after(hours: float) -> np.ndarray:
        return np.minimum(offsets + np.round(rng.exponential(hours * 3600, n)) + 1, span - 1)

    purchase_at = after(24)
    event_at = {"open_ts": after(1), "click_ts": after(2), "share_ts": after(3)}
    start = pd.Timestamp(spec.start)

    def stamp(seconds: np.ndarray) -> pd.DatetimeIndex:
        return start + pd.to_timedelta(seconds, unit="s")

    return pd.DataFrame({
        "unit_id": unit_ids, "user_id": user_ids, "arm": arm,
        "unit_variant": np.where(held & (spec.unit == "user"), np.array(None), unit_variant),
        "exposures": requests * (LIST_SIZE if spec.unit == "user" else 1),
        "first_ts": stamp(offsets),
        "push_open": opened.astype(int), "click": clicked.astype(int),
        "purchase": bought.astype(int), "share": shared.astype(int), "join": joins,
        "cart": 0, "view": 0, "unsubscribe": 0,
        "revenue": np.where(bought, value, 0.0),
        "first_purchase_ts": stamp(np.where(bought, purchase_at, np.nan)),
        "pre_activity": pre_activity,
        # for event expansion only
        "item_id": items, "campaign": campaign, "requests": requests,
        **{name: stamp(at) for name, at in event_at.items()},
    })


def simulate_rows(spec: SimSpec) -> pd.DataFrame:
    """The rows :func:`socialrec.evaluation.ab_attribution.unit_rows` would build from the
    simulated events (same columns), without making the events."""
    return _draw(spec)[ROW_COLUMNS].copy()


def simulate_events(spec: SimSpec) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(rows, exposures, feedback): the rows and the events the service would have logged, as
    frames with EventStore's columns."""
    d = _draw(spec)
    rng = np.random.default_rng(spec.seed + 1)
    exp = spec.experiment
    model = {v: f"model-{v}" for v in spec.weights}
    n = len(d)
    held = (d.arm == HOLDOUT).to_numpy()
    user_ids = d.user_id.to_numpy()
    items = np.array([f"item-c{i}" if spec.unit == "campaign" else f"item{i}" for i in d.item_id],
                     dtype=object)

    # exposures
    if spec.unit == "user":
        row = np.repeat(np.arange(n), d.requests.to_numpy() * LIST_SIZE)
        within = np.arange(len(row)) - np.repeat(np.cumsum(d.requests * LIST_SIZE)
                                                 - d.requests * LIST_SIZE, d.requests * LIST_SIZE)
        request, rank = within // LIST_SIZE, within % LIST_SIZE
        request_ids = np.array([f"{exp}:r{r}:{q}" for r, q in zip(row, request, strict=True)],
                               dtype=object)
        ts = pd.DatetimeIndex(d.first_ts)[row] + pd.to_timedelta(request, unit="h")
        endpoint = "recommend"
        item = np.array([f"item{i}" for i in rng.integers(0, 1000, len(row))], dtype=object)
        item[rank == 0] = items[row[rank == 0]]
    else:
        row = np.arange(n)
        request_ids = np.array([f"{exp}:c{c}" for c in d.campaign], dtype=object)
        rank = np.arange(n) % spec.users_per_campaign
        ts = pd.DatetimeIndex(d.first_ts)
        endpoint = "push_targets"
        item = items
    exposures = pd.DataFrame({
        "request_id": request_ids, "ts": pd.to_datetime(ts, utc=True), "endpoint": endpoint,
        "experiment": exp, "variant": d.arm.to_numpy()[row],
        "model_version": [model.get(v) for v in d.unit_variant.to_numpy()[row]],
        "unit_id": d.unit_id.to_numpy()[row], "user_id": user_ids[row], "item_id": item,
        "rank": rank, "score": np.round(rng.random(len(row)), 6),
    })

    # feedback: the exposed act on their first request; held-out users only buy, organically
    first_request = np.where(held, np.array(None),
                             request_ids[np.searchsorted(row, np.arange(n))])
    parts = []
    for event, flag, when in (("push_open", d.push_open > 0, d.open_ts),
                              ("click", d.click > 0, d.click_ts),
                              ("purchase", d.purchase > 0, d.first_purchase_ts),
                              ("share", d.share > 0, d.share_ts)):
        idx = np.flatnonzero(flag.to_numpy())
        parts.append(pd.DataFrame({
            "event_id": [f"{exp}:{event}:{i}" for i in idx], "request_id": first_request[idx],
            "ts": pd.DatetimeIndex(when)[idx], "user_id": user_ids[idx], "item_id": items[idx],
            "event": event,
            "value": d.revenue.to_numpy()[idx] if event == "purchase" else 0.0}))
    joins = d["join"].to_numpy()
    joiner = np.repeat(np.arange(n), joins)
    nth = np.arange(len(joiner)) - np.repeat(np.cumsum(joins) - joins, joins)
    parts.append(pd.DataFrame({
        "event_id": [f"{exp}:join:{i}:{j}" for i, j in zip(joiner, nth, strict=True)],
        "request_id": first_request[joiner],
        "ts": pd.DatetimeIndex(d.share_ts)[joiner],  # the share's time: still inside the window
        "user_id": [f"{user_ids[i]}-friend{j}" for i, j in zip(joiner, nth, strict=True)],
        "item_id": items[joiner], "event": "join", "value": 0.0}))
    # pre-period activity, before the start
    pre = np.repeat(np.arange(n), d.pre_activity.to_numpy())
    before = rng.integers(1, spec.pre_days * 86400, len(pre))
    parts.append(pd.DataFrame({
        "event_id": [f"{exp}:pre:{i}:{j}" for j, i in enumerate(pre)], "request_id": None,
        "ts": pd.to_datetime(spec.start) - pd.to_timedelta(before, unit="s"),
        "user_id": user_ids[pre], "item_id": "pre", "event": "view", "value": 0.0}))
    feedback = pd.concat(parts, ignore_index=True)
    feedback["ts"] = pd.to_datetime(feedback.ts, utc=True)
    return d[ROW_COLUMNS].copy(), exposures, feedback


@dataclass
class SimResult:
    spec: SimSpec
    rows: pd.DataFrame
    exposures: int
    feedback: int
    truth: dict[str, float]


def _records(df: pd.DataFrame, cls: type[Any]) -> list[Any]:
    df = df.astype(object).where(df.notna(), None)
    df["ts"] = [t.to_pydatetime() for t in df.ts]
    return [cls(*r) for r in df.itertuples(index=False, name=None)]


def simulate(spec: SimSpec, store: EventStore) -> SimResult:
    """Simulate and write the exposures and feedback into ``store``."""
    rows, exposures, feedback = simulate_events(spec)
    for start in range(0, len(exposures), _WRITE_BATCH):
        store.log_exposures(_records(exposures.iloc[start:start + _WRITE_BATCH], Exposure))
    for start in range(0, len(feedback), _WRITE_BATCH):
        store.log_feedback(_records(feedback.iloc[start:start + _WRITE_BATCH], Feedback))
    return SimResult(spec, rows, len(exposures), len(feedback), spec.truth())


def end_of(spec: SimSpec) -> datetime:
    """The end of the simulated window (exclusive)."""
    return spec.start + timedelta(seconds=int(spec.days * 86400))
