"""Learning uplift from the service's own experiments: ``socialrec uplift train``.

Every campaign's holdout (features/experiments.py ``CampaignHoldout``) makes its push a
randomised experiment: held-out users are the control, pushed users are treated with what they
were given (the exposure's ``treatment``: ``push`` or a coupon treatment). :func:`campaign_rows`
reduces the event store to one row per (campaign, user) with the outcomes of the window after the
push: conversion (a purchase of the campaign's item), revenue, unsubscribe. :func:`check_rows`
refuses data it cannot trust, with counts: a campaign without holdout, too few control users,
too few users under a treatment, pushes whose window has not closed yet.

:func:`select_learner` picks the conversion learner among causalml's T-, X-, R- and DR-learners
(LightGBM base learners) by its Qini on campaigns held out of the training rows;
:func:`fit_uplift` fits it for conversion and a T-learner for unsubscribing, and returns them as
the bundle's :class:`~socialrec.models.uplift.UpliftModel` (LightGBM text files + a JSON
manifest, no pickle). causalml is imported only when fitting (its first import takes tens of
seconds: numba, shap).
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
from socialrec.models.uplift import (
    FORMAT,
    OUTCOMES,
    Combination,
    OutcomeModel,
    UpliftModel,
    t_learner_outcome,
)
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

#: The learners ``uplift.learner`` may name (``auto``: the best of ``uplift.candidates`` on
#: held-out campaigns, :func:`select_learner`).
LEARNERS = {
    "t": "causalml.inference.meta.BaseTClassifier (T-learner)",
    "x": "causalml.inference.meta.BaseXClassifier (X-learner)",
    "r": "causalml.inference.meta.BaseRClassifier (R-learner)",
    "dr": "causalml.inference.meta.BaseDRLearner (DR-learner)",
}


def outcome_classifier(cfg: UpliftConfig) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(**cfg.lightgbm.model_dump(), random_state=cfg.seed, n_jobs=1,
                              verbose=-1)


def effect_regressor(cfg: UpliftConfig) -> lgb.LGBMRegressor:
    return lgb.LGBMRegressor(**cfg.effect_lightgbm.model_dump(), random_state=cfg.seed,
                             n_jobs=1, verbose=-1)


def constant_propensity(shares: dict[str, float], n: int) -> dict[str, np.ndarray]:
    """The ``p`` causalml's X-, R- and DR-learners take: each treatment's share for all ``n``
    rows (treatment is randomised, whatever the features)."""
    return {t: np.full(n, share) for t, share in shares.items()}


def treated_shares(treatment: np.ndarray, treatments: list[str]) -> dict[str, float]:
    """Each treatment's share of its rows and the control's: the chance of being treated that
    X-, R- and DR-learners weigh by (constant: campaigns hold users out and explore at random
    whatever the features)."""
    control = int((treatment == CONTROL).sum())
    return {t: int((treatment == t).sum()) / max(1, int((treatment == t).sum()) + control)
            for t in treatments}


def fit_learner(kind: str, x: np.ndarray, treatment: np.ndarray, y: np.ndarray,
                cfg: UpliftConfig, outcome: str
                ) -> tuple[Any, OutcomeModel, dict[str, lgb.Booster]]:
    """causalml's learner ``kind`` (:data:`LEARNERS`) on one outcome, as the causalml object
    and the :class:`OutcomeModel` of its boosters (named ``<outcome>_...``). Where an arm
    never or always saw the outcome (a classifier needs both classes) every arm is its observed
    rate, so effects stay differences of like with like."""
    from causalml.inference.meta import (
        BaseDRLearner,
        BaseRClassifier,
        BaseTClassifier,
        BaseXClassifier,
    )

    names = list(cfg.treatments)
    arms = [CONTROL, *names]
    if any(len(np.unique(y[treatment == a])) < 2 for a in arms):
        model, boosters = t_learner_outcome({a: float(y[treatment == a].mean()) for a in arms},
                                            outcome, names)
        return None, model, boosters
    if kind == "t":
        learner = BaseTClassifier(learner=outcome_classifier(cfg), control_name=CONTROL)
        learner.fit(x, treatment=treatment, y=y)
        arm_models: dict[str, lgb.Booster | float] = {CONTROL: learner.model_c.booster_}
        arm_models |= {t: learner.models_t[t].booster_ for t in names}
        model, boosters = t_learner_outcome(arm_models, outcome, names)
        return learner, model, boosters
    shares = treated_shares(treatment, names)
    p = constant_propensity({t: shares[t] for t in names}, len(x))
    boosters = {}
    effects = {}
    if kind == "x":
        learner = BaseXClassifier(outcome_learner=outcome_classifier(cfg),
                                  effect_learner=effect_regressor(cfg),
                                  control_name=CONTROL)
        learner.fit(x, treatment=treatment, y=y, p=p)
        control_booster = learner.model_mu_c.booster_
        for t in names:
            boosters[f"{outcome}_tau_c_{t}"] = learner.models_tau_c[t].booster_
            boosters[f"{outcome}_tau_t_{t}"] = learner.models_tau_t[t].booster_
            effects[t] = Combination(((f"{outcome}_tau_c_{t}", shares[t]),
                                      (f"{outcome}_tau_t_{t}", 1.0 - shares[t])))
    elif kind == "r":
        learner = BaseRClassifier(outcome_learner=outcome_classifier(cfg),
                                  effect_learner=effect_regressor(cfg),
                                  control_name=CONTROL, n_fold=3, random_state=cfg.seed)
        learner.fit(x, treatment=treatment, y=y, p=p, verbose=False)
        for t in names:
            boosters[f"{outcome}_tau_{t}"] = learner.models_tau[t].booster_
            effects[t] = Combination(((f"{outcome}_tau_{t}", 1.0),))
        control_booster = outcome_classifier(cfg).fit(x[treatment == CONTROL],
                                               y[treatment == CONTROL]).booster_
    elif kind == "dr":
        learner = BaseDRLearner(learner=effect_regressor(cfg),
                                treatment_effect_learner=effect_regressor(cfg),
                                control_name=CONTROL)
        learner.fit(x, treatment=treatment, y=y, p=p, seed=cfg.seed)
        for t in names:
            folds = learner.models_tau[t]
            for i, fold in enumerate(folds):
                boosters[f"{outcome}_tau_{t}_{i}"] = fold.booster_
            effects[t] = Combination(tuple((f"{outcome}_tau_{t}_{i}", 1.0 / len(folds))
                                           for i in range(len(folds))))
        control_booster = outcome_classifier(cfg).fit(x[treatment == CONTROL],
                                               y[treatment == CONTROL]).booster_
    else:
        raise ValueError(f"uplift learner {kind!r}: expected one of {sorted(LEARNERS)}")
    boosters[f"{outcome}_control"] = control_booster
    return learner, OutcomeModel(Combination(((f"{outcome}_control", 1.0),)), effects), boosters


def fit_uplift(x: np.ndarray, rows: pd.DataFrame, cfg: UpliftConfig, projection: np.ndarray,
               evidence: dict[str, Any] | None = None, learner: str | None = None,
               outcomes: tuple[str, ...] = OUTCOMES) -> tuple[UpliftModel, dict[str, Any]]:
    """Fit the uplift learner on ``x`` (features of ``rows``): ``learner`` (default
    ``uplift.learner``; ``auto``: chosen by :func:`select_learner` on held-out campaigns) for
    conversion, a T-learner for unsubscribing (its effect is large where it exists: sleeping
    dogs). Returns the servable model and the causalml learners (for comparisons; not saved)."""
    kind = learner or cfg.learner
    if kind == "auto":
        kind = (select_learner(x, rows, cfg, projection).learner if "campaign" in rows
                else cfg.candidates[0])
    treatment = rows.treatment.to_numpy().astype(str)
    models: dict[str, OutcomeModel] = {}
    boosters: dict[str, lgb.Booster] = {}
    learners: dict[str, Any] = {}
    for outcome in outcomes:
        learners[outcome], models[outcome], found = fit_learner(
            kind if outcome == "conversion" else "t", x, treatment,
            rows[outcome].to_numpy().astype(int), cfg, outcome)
        boosters |= found
    bought = rows.revenue[rows.conversion > 0]
    manifest = {
        "format": FORMAT,
        "learner": kind,
        "learners": {"conversion": LEARNERS[kind], "unsubscribe": LEARNERS["t"]},
        "base_learner": f"lightgbm.LGBMClassifier {cfg.lightgbm.model_dump()}",
        "effect_learner": f"lightgbm.LGBMRegressor {cfg.effect_lightgbm.model_dump()}",
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
    return UpliftModel(manifest, models, boosters), learners


@dataclass
class Selection:
    """The learner chosen on held-out campaigns, and every candidate's validation Qini."""

    learner: str
    qini: dict[str, dict[str, float]]  # candidate -> treatment -> Qini (normalised)
    validation_campaigns: list[str]
    note: str = ""

    def score(self, candidate: str) -> float:
        values = list(self.qini[candidate].values())
        return float(np.mean(values)) if values else float("nan")


def validation_qini(effects: np.ndarray, rows: pd.DataFrame, treatments: list[str],
                    seed: int = 0) -> dict[str, float]:
    """Qini (causalml, normalised) of each treatment's estimated effect on the rows given that
    treatment or none (the control), where both arms are present."""
    from causalml.metrics import qini_score

    out = {}
    given = rows.treatment.to_numpy().astype(str)
    y = rows.conversion.to_numpy()
    for j, name in enumerate(treatments):
        part = np.isin(given, [name, CONTROL])
        w = (given[part] == name).astype(int)
        if w.min(initial=1) == w.max(initial=0) or y[part].max(initial=0) == 0:
            continue
        frame = pd.DataFrame({"y": y[part], "w": w, "uplift": effects[part, j]})
        out[name] = float(qini_score(frame, outcome_col="y", treatment_col="w",
                                     normalize=True)["uplift"])
    return out


def split_campaigns(rows: pd.DataFrame, share: float, seed: int) -> np.ndarray:
    """A boolean mask of the rows of the campaigns kept aside for validation (``share`` of the
    campaigns, at least one; none when there is only one campaign)."""
    campaigns = np.asarray(sorted(rows.campaign.unique(), key=str), dtype=object)
    if len(campaigns) < 2:
        return np.zeros(len(rows), dtype=bool)
    rng = np.random.default_rng(seed)
    held = rng.choice(campaigns, max(1, round(share * len(campaigns))), replace=False)
    return rows.campaign.isin(set(held)).to_numpy()


def select_learner(x: np.ndarray, rows: pd.DataFrame, cfg: UpliftConfig,
                   projection: np.ndarray) -> Selection:
    """``uplift.learner``, or for ``auto`` the candidate of ``uplift.candidates`` whose
    conversion effects rank the held-out campaigns best: each candidate is fitted on the other
    campaigns and scored by its Qini on the held-out ones (mean over treatments). The test
    campaigns of a benchmark are never among ``rows``."""
    in_val = split_campaigns(rows, cfg.validation_share, cfg.seed)
    held = sorted(str(c) for c in rows.campaign[in_val].unique())
    candidates = list(cfg.candidates) if cfg.learner == "auto" else [cfg.learner]
    qini: dict[str, dict[str, float]] = {}
    if in_val.any() and (~in_val).any():
        for kind in candidates:
            model, _ = fit_uplift(x[~in_val], rows[~in_val], cfg, projection, learner=kind,
                                  outcomes=("conversion",))
            qini[kind] = validation_qini(model.predict_effects(x[in_val]), rows[in_val],
                                         model.treatment_names)
            log.info("uplift learner %s: validation Qini %s", kind, qini[kind])
    scored = [k for k in candidates if qini.get(k)]
    if cfg.learner != "auto":
        return Selection(cfg.learner, qini, held, "uplift.learner")
    if not scored:
        return Selection(candidates[0], qini, held, "no campaign to validate on: the first "
                         "candidate")
    best = max(scored, key=lambda k: float(np.mean(list(qini[k].values()))))
    return Selection(best, qini, held, "best mean validation Qini")


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
