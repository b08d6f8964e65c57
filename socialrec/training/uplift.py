"""Learning uplift from the service's own experiments: ``socialrec uplift train``.

Every campaign's holdout (features/experiments.py ``CampaignHoldout``) makes its push a
randomised experiment: held-out users are the control, pushed users are treated with what they
were given (the exposure's ``treatment``: ``push`` or a coupon treatment). :func:`campaign_rows`
reduces the event store to one row per (campaign, user) with the outcomes of the window after the
push: conversion (a purchase of the campaign's item), revenue, unsubscribe. :func:`check_rows`
refuses data it cannot trust, with counts: a campaign without holdout, too few control users,
too few users under a treatment, pushes whose window has not closed yet.

:func:`fit_uplift` fits causalml's T-learner (``BaseTClassifier``) with a LightGBM base learner
for conversion and for unsubscribing, and returns it as the bundle's
:class:`~socialrec.models.uplift.UpliftModel` (LightGBM text files + a JSON manifest, no pickle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from socialrec.features.events import CONTROL, HOLDOUT, PUSH
from socialrec.models.uplift import FORMAT, OUTCOMES, UpliftModel
from socialrec.models.uplift_features import FeatureSource, feature_names, uplift_features
from socialrec.training.uplift_config import UpliftConfig

log = logging.getLogger(__name__)


class NotEnoughEvidence(ValueError):
    """The experiments logged so far cannot support a model; the message says what is short."""


# -- rows from the event store -------------------------------------------------------------------

def campaign_rows(exposures: pd.DataFrame, feedback: pd.DataFrame, window: timedelta,
                  push_window: timedelta) -> pd.DataFrame:
    """One row per (campaign, user) pushed or held out by ``/push_targets``, with the outcomes
    of ``[first exposure, + window)`` and the pushes the user got in ``push_window`` before.

    Columns: campaign, item_id, user_id, ts, treatment, explored, push_count, conversion,
    revenue, unsubscribe, window_end. Old rows without a treatment are ``push`` (pushed) or
    ``control`` (held out).
    """
    ex = exposures[exposures.endpoint == "push_targets"].copy()
    if ex.empty:
        return pd.DataFrame(columns=["campaign", "item_id", "user_id", "ts", "treatment",
                                     "explored", "push_count", "conversion", "revenue",
                                     "unsubscribe", "window_end"])
    held = ex.variant == HOLDOUT
    given = ex.treatment if "treatment" in ex else pd.Series(None, index=ex.index)
    ex["treatment"] = given.where(given.notna(), np.where(held, CONTROL, PUSH))
    ex.loc[held, "treatment"] = CONTROL
    ex["explored"] = (ex.explored if "explored" in ex else False)
    ex["explored"] = ex["explored"].fillna(False).astype(bool)
    ex["campaign"] = ex.unit_id.fillna(ex.item_id)
    rows = (ex.sort_values("ts").groupby(["campaign", "user_id"], sort=True)
            .agg(item_id=("item_id", "first"), ts=("ts", "first"),
                 treatment=("treatment", "first"), explored=("explored", "first"))
            .reset_index())
    rows["window_end"] = rows.ts + window
    rows["push_count"] = _pushes_before(ex[~held], rows, push_window)

    fb = feedback[["user_id", "item_id", "event", "value", "ts"]]
    merged = rows[["campaign", "user_id", "item_id", "ts", "window_end"]].merge(
        fb.rename(columns={"ts": "event_ts", "item_id": "event_item"}), on="user_id")
    merged = merged[(merged.event_ts >= merged.ts) & (merged.event_ts < merged.window_end)]
    bought = merged[(merged.event == "purchase") & (merged.event_item == merged.item_id)]
    unsub = merged[merged.event == "unsubscribe"]
    key = ["campaign", "user_id"]
    rows = rows.merge(bought.groupby(key).value.agg(["size", "sum"]).rename(
        columns={"size": "purchases", "sum": "revenue"}), left_on=key, right_index=True,
        how="left")
    rows = rows.merge(unsub.groupby(key).size().rename("unsubscribes"), left_on=key,
                      right_index=True, how="left")
    rows["conversion"] = (rows.purchases.fillna(0) > 0).astype(np.int8)
    rows["revenue"] = rows.revenue.fillna(0.0)
    rows["unsubscribe"] = (rows.unsubscribes.fillna(0) > 0).astype(np.int8)
    return rows.drop(columns=["purchases", "unsubscribes"])


def _pushes_before(pushes: pd.DataFrame, rows: pd.DataFrame, push_window: timedelta
                   ) -> np.ndarray:
    """For each row, the pushes its user got in ``[ts - push_window, ts)``."""
    out = np.zeros(len(rows), dtype=np.int64)
    times = {u: np.sort(g.ts.to_numpy()) for u, g in pushes.groupby("user_id")}
    ts = rows.ts.to_numpy()
    start = (rows.ts - push_window).to_numpy()
    for i, user in enumerate(rows.user_id.to_numpy()):
        t = times.get(user)
        if t is not None:
            out[i] = np.searchsorted(t, ts[i], "left") - np.searchsorted(t, start[i], "left")
    return out


@dataclass
class Evidence:
    """What the rows hold, per treatment and per campaign (reported with every refusal)."""

    rows: int
    per_treatment: dict[str, int]
    campaigns: int
    campaigns_without_holdout: dict[str, int]  # campaign -> its users (all treated)
    open_windows: int  # rows whose outcome window had not closed at ``now``

    def summary(self) -> str:
        arms = ", ".join(f"{t} {n:,}" for t, n in self.per_treatment.items())
        return f"{self.rows:,} (campaign, user) rows in {self.campaigns} campaigns: {arms}"


def check_rows(rows: pd.DataFrame, cfg: UpliftConfig, now: datetime) -> tuple[pd.DataFrame,
                                                                              Evidence]:
    """The rows a model may learn from, or :class:`NotEnoughEvidence` naming what is short.

    Rows whose outcome window ends after ``now`` are left out (their outcomes are not known
    yet) and counted; a campaign with fewer than ``min_campaign_control`` held-out users is
    refused by name; fewer than ``min_control_users`` control rows or ``min_treated_users``
    rows of a configured treatment is refused with the counts.
    """
    open_ = rows.window_end > pd.Timestamp(now)
    closed = rows[~open_]
    per_campaign = closed.groupby("campaign").treatment.agg(
        users="size", control=lambda t: int((t == CONTROL).sum()))
    without = per_campaign[per_campaign.control < cfg.min_campaign_control]
    per_treatment = {CONTROL: int((closed.treatment == CONTROL).sum())}
    per_treatment |= {t: int((closed.treatment == t).sum()) for t in cfg.treatments}
    evidence = Evidence(len(closed), per_treatment, len(per_campaign),
                        {str(c): int(n) for c, n in without.users.items()}, int(open_.sum()))
    problems = []
    if open_.any():
        log.info("%d rows left out: their %s-day outcome window is still open",
                 open_.sum(), cfg.window_days)
    if len(without):
        named = ", ".join(f"{c} ({n} users, {k} held out)" for c, n, k in
                          zip(without.index[:10], without.users, without.control, strict=False))
        problems.append(f"{len(without)} campaign(s) without a holdout of at least "
                        f"{cfg.min_campaign_control} user(s): {named}"
                        + (" ..." if len(without) > 10 else ""))
    if per_treatment[CONTROL] < cfg.min_control_users:
        problems.append(f"{per_treatment[CONTROL]:,} control (held-out) users, fewer than "
                        f"uplift.min_control_users = {cfg.min_control_users:,}")
    for t in cfg.treatments:
        if per_treatment[t] < cfg.min_treated_users:
            problems.append(f"{per_treatment[t]:,} users given {t!r}, fewer than "
                            f"uplift.min_treated_users = {cfg.min_treated_users:,}")
    unknown = sorted(set(closed.treatment) - {CONTROL, *cfg.treatments})
    if unknown:
        problems.append(f"treatments in the exposures that uplift.treatments does not declare: "
                        f"{unknown}")
    if problems:
        raise NotEnoughEvidence(
            f"refusing to train an uplift model: {'; '.join(problems)}. Evidence: "
            f"{evidence.summary()}; {evidence.open_windows:,} rows still inside their outcome "
            f"window were left out.")
    return closed, evidence


# -- fitting ------------------------------------------------------------------------------------

def _learner(cfg: UpliftConfig) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(**cfg.lightgbm.model_dump(), random_state=cfg.seed, n_jobs=1,
                              verbose=-1)


def fit_t_learner(x: np.ndarray, treatment: np.ndarray, y: np.ndarray, cfg: UpliftConfig
                  ) -> tuple[Any, dict[str, lgb.Booster | float]]:
    """causalml's ``BaseTClassifier`` on one outcome, and its models by arm (a constant where
    an arm never or always saw the outcome: a classifier needs both classes)."""
    from causalml.inference.meta import BaseTClassifier

    arms = [CONTROL, *cfg.treatments]
    constant = {a: float(y[treatment == a].mean()) for a in arms
                if len(np.unique(y[treatment == a])) < 2}
    if constant:
        # Too few events for a classifier in some arm: every arm is its observed rate, so
        # the effect estimates stay differences of like with like.
        return None, {a: float(y[treatment == a].mean()) for a in arms}
    learner = BaseTClassifier(learner=_learner(cfg), control_name=CONTROL)
    learner.fit(x, treatment=treatment, y=y)
    models: dict[str, lgb.Booster | float] = {CONTROL: learner.model_c.booster_}
    for t in cfg.treatments:
        models[t] = learner.models_t[t].booster_
    return learner, models


def fit_uplift(x: np.ndarray, rows: pd.DataFrame, cfg: UpliftConfig, projection: np.ndarray,
               evidence: dict[str, Any] | None = None) -> tuple[UpliftModel, dict[str, Any]]:
    """Fit conversion and unsubscribe T-learners on ``x`` (features of ``rows``); return the
    servable model and the causalml learners (for comparisons; not saved)."""
    treatment = rows.treatment.to_numpy().astype(str)
    models: dict[str, dict[str, lgb.Booster | float]] = {}
    learners: dict[str, Any] = {}
    for outcome in OUTCOMES:
        learners[outcome], models[outcome] = fit_t_learner(
            x, treatment, rows[outcome].to_numpy().astype(int), cfg)
    bought = rows.revenue[rows.conversion > 0]
    manifest = {
        "format": FORMAT,
        "learner": "causalml.inference.meta.BaseTClassifier (T-learner)",
        "base_learner": f"lightgbm.LGBMClassifier {cfg.lightgbm.model_dump()}",
        "features": feature_names(projection.shape[1]),
        "n_components": int(projection.shape[1]),
        "projection": projection.astype(float).ravel().tolist(),
        "treatments": [{"name": t, **spec.model_dump()} for t, spec in cfg.treatments.items()],
        "margin_rate": cfg.margin_rate,
        "unsubscribe_cost": cfg.unsubscribe_cost,
        "mean_price": float(bought.mean()) if len(bought) else 0.0,
        "push_window_days": cfg.push_window_days,
        "window_days": cfg.window_days,
        "exploration": cfg.exploration,
        "evidence": evidence or {},
    }
    return UpliftModel(manifest, models), learners


def features_for_rows(src: FeatureSource, rows: pd.DataFrame, projection: np.ndarray,
                      user_col: str = "user", item_col: str = "item") -> np.ndarray:
    """The feature matrix of rows naming internal user and item ids, campaign by campaign."""
    x = np.empty((len(rows), len(feature_names(projection.shape[1]))), dtype=np.float32)
    users, items = rows[user_col].to_numpy(), rows[item_col].to_numpy()
    push_count = rows.push_count.to_numpy()
    for item in np.unique(items):
        at = np.flatnonzero(items == item)
        x[at] = uplift_features(src, users[at], int(item), push_count[at], projection)
    return x
