"""``socialrec uplift benchmark``: uplift against propensity targeting where the truth is known
(the simulated worlds of evaluation/uplift_worlds.py) and on a real randomised campaign
(Hillstrom), side by side, into ``results/uplift.md`` and a Qini plot. On Hillstrom the
learner is chosen the same way, per split on a held-out part of its training customers
(:func:`run_hillstrom`).

Per world, in one run: campaigns of training items are logged as the service logs them
(everyone reached, 20 % held out, 20 % of the rest given a random treatment, the others a plain
push); the learner is chosen among causalml's T-, X-, R- and DR-learners by its Qini on training
campaigns held out of its fit (training/uplift.py ``select_learner``; the test campaigns are
never seen), refitted on every training campaign, and then, on campaigns of items it never saw:

- Qini and AUUC (causalml.metrics, ``normalize=True``: the curve divided by its final value) of
  random, propensity (the served score) and uplift ranking, on a randomised log (half held
  out, half pushed) of the held-out campaigns;
- incremental conversions of pushing the top 5 / 10 / 20 % of users by each ranking, from the
  true expected effects, as a fraction of the oracle's (the top users by true effect, positive
  effects only), and the unsubscribes each push list causes; beside them, for reference only,
  the ranking of a regression of the *true* effect on the same features (fitted on the training
  campaigns with the hidden truth no learner has): about the best these features allow;
- the allocation of one money budget over push and coupon (models/allocation.py, by
  incremental margin) against giving the coupon to the top-propensity users, and against a
  plain push (no coupon) to the top-propensity users, at equal true spend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialrec.evaluation.uplift_worlds import (
    COUPON,
    PUSH,
    WORLDS,
    World,
    WorldSpec,
    campaign_log,
    make_world,
)
from socialrec.features.events import CONTROL
from socialrec.models.allocation import NONE, allocate
from socialrec.models.uplift_features import FeatureSource, fit_projection, uplift_features
from socialrec.training.uplift import (
    LEARNERS,
    Selection,
    constant_propensity,
    effect_regressor,
    features_for_rows,
    fit_uplift,
    outcome_classifier,
    select_learner,
    treated_shares,
)
from socialrec.training.uplift_config import TreatmentConfig, UpliftConfig

BUDGETS = (0.05, 0.10, 0.20)
POLICIES = ("random", "propensity", "uplift", "features_oracle", "oracle")
TRAIN_CAMPAIGNS = 8
TEST_CAMPAIGNS = 4


def qini_auuc(frame: pd.DataFrame, outcome: str, treated: str) -> tuple[pd.Series, pd.Series]:
    """causalml's Qini and AUUC (normalised) of every score column of ``frame``."""
    from causalml.metrics import auuc_score, qini_score

    return (qini_score(frame, outcome_col=outcome, treatment_col=treated, normalize=True),
            auuc_score(frame, outcome_col=outcome, treatment_col=treated, normalize=True))


@dataclass
class WorldResult:
    name: str
    train_rows: int
    seconds: float
    qini: dict[str, float]
    auuc: dict[str, float]
    incremental: dict[float, dict[str, float]]  # budget -> policy -> incremental conversions
    unsubscribes: dict[float, dict[str, float]]
    margin: dict[str, float]
    selection: Selection
    qini_curve: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


def world_config(base: UpliftConfig, spec: WorldSpec) -> UpliftConfig:
    """The uplift settings with the world's two treatments and prices."""
    treatments = {PUSH: TreatmentConfig(coupon=0.0, send_cost=spec.send_cost),
                  COUPON: TreatmentConfig(coupon=spec.coupon_value, send_cost=spec.send_cost)}
    return base.model_copy(update={"treatments": treatments, "margin_rate": spec.margin_rate})


def run_world(spec: WorldSpec, base: UpliftConfig, seed: int = 0) -> WorldResult:
    t0 = time.perf_counter()
    cfg = world_config(base, spec)
    world = make_world(spec)
    src = FeatureSource(world.user_emb, world.item_emb, world.seen, world.purchases,
                        world.social)
    projection = fit_projection(world.user_emb, cfg.n_components)
    rng = np.random.default_rng(seed)
    items = rng.permutation(len(world.item_emb))[: TRAIN_CAMPAIGNS + TEST_CAMPAIGNS]
    train_items, test_items = items[:TRAIN_CAMPAIGNS], items[TRAIN_CAMPAIGNS:]
    rows = campaign_log(world, list(train_items), holdout=0.2, exploration=0.2, seed=seed)
    x_rows = features_for_rows(src, rows, projection)
    selection = select_learner(x_rows, rows, cfg, projection)
    model, _ = fit_uplift(x_rows, rows, cfg, projection, learner=selection.learner)
    push = model.treatment_names.index(PUSH)
    features_oracle = _features_oracle(world, rows, x_rows, cfg)

    # Qini / AUUC on a randomised log of the held-out campaigns
    test = campaign_log(world, list(test_items), holdout=0.5, exploration=0.0, seed=seed + 1)
    effects = model.effects(features_for_rows(src, test, projection),
                            price=world.price[test.item.to_numpy()])
    frame = pd.DataFrame({
        "y": test.conversion.to_numpy(), "w": (test.treatment == PUSH).astype(int).to_numpy(),
        "random": rng.random(len(test)),
        "propensity": world.score_rows(test.user.to_numpy(), test.item.to_numpy()),
        "uplift": effects.conversion[:, push],
    })
    qini, auuc = qini_auuc(frame, "y", "w")
    from causalml.metrics import get_qini

    curve = get_qini(frame, outcome_col="y", treatment_col="w", normalize=False)

    incremental = {b: dict.fromkeys(POLICIES, 0.0) for b in BUDGETS}
    unsubscribes = {b: dict.fromkeys(POLICIES, 0.0) for b in BUDGETS}
    margin = {"coupon_top_propensity": 0.0, "push_top_propensity": 0.0,
              "push_top_propensity_users": 0.0, "allocation": 0.0, "oracle_allocation": 0.0,
              "spend": 0.0, "allocation_push": 0.0, "allocation_coupon": 0.0}
    users = np.arange(world.n_users)
    for item in test_items:
        push_count = rng.poisson(world.fatigue)
        x = uplift_features(src, users, int(item), push_count, projection)
        p, q = world.response(users, int(item))
        true = p[:, 1] - p[:, 0]
        caused = q[:, 1] - q[:, 0]
        est = model.effects(x, price=world.price[item])
        scores = {"propensity": world.score(users, int(item)),
                  "uplift": est.conversion[:, push],
                  "features_oracle": features_oracle.predict(x), "oracle": true}
        for b in BUDGETS:
            k = round(b * world.n_users)
            incremental[b]["random"] += b * true.sum()
            unsubscribes[b]["random"] += b * caused.sum()
            for name, score in scores.items():
                top = np.argsort(-score, kind="stable")[:k]
                if name not in ("propensity", "features_oracle"):  # never a negative effect
                    top = top[score[top] > 0]
                incremental[b][name] += true[top].sum()
                unsubscribes[b][name] += caused[top].sum()
        _allocate_margin(world, model, est, p, q, int(item), cfg, margin)
    return WorldResult(spec.name, len(rows), time.perf_counter() - t0,
                       {str(k): float(v) for k, v in qini.items()},
                       {str(k): float(v) for k, v in auuc.items()}, incremental, unsubscribes,
                       margin, selection, curve)


def _features_oracle(world: World, rows: pd.DataFrame, x: np.ndarray, cfg: UpliftConfig) -> Any:
    """A regression of the TRUE effect of a push on the learner's features, fitted on the
    training campaigns: not a learner (no learner sees the truth), a reference for how well
    these features can rank at all."""
    import lightgbm as lgb

    true = np.zeros(len(rows))
    for item in rows.item.unique():
        at = (rows.item == item).to_numpy()
        p, _ = world.response(rows.user.to_numpy()[at], int(item))
        true[at] = p[:, 1] - p[:, 0]
    return lgb.LGBMRegressor(n_estimators=300, learning_rate=0.05, num_leaves=31,
                             min_child_samples=200, random_state=cfg.seed, n_jobs=1,
                             verbose=-1).fit(x, true)


def _allocate_margin(world: World, model: Any, est: Any, p: np.ndarray, q: np.ndarray,
                     item: int, cfg: UpliftConfig, out: dict[str, float], share: float = 0.10
                     ) -> None:
    """One money budget over push and coupon: the allocation by estimated incremental margin
    against coupons for the top-propensity users and against plain pushes for them, at equal
    true spend."""
    spec = world.spec
    true_margin = world.margin(p, q, item, cfg.unsubscribe_cost)  # (n, 2): push, coupon
    true_cost = np.column_stack([np.full(len(p), spec.send_cost),
                                 spec.send_cost + spec.coupon_value * p[:, 2]])
    users = np.arange(world.n_users)
    by_propensity = np.argsort(-world.score(users, item), kind="stable")
    budget = float(true_cost[by_propensity[: round(share * world.n_users)], 1].sum())
    order = [model.treatment_names.index(t) for t in (PUSH, COUPON)]
    value = model.value(est, "margin")[:, order]
    cost = model.costs(est.p_treated, money=True)[:, order]
    chosen = allocate(value, cost, budget).choice
    picked = np.flatnonzero(chosen != NONE)
    spend = float(true_cost[picked, chosen[picked]].sum())
    # the baseline at the same true spend: top-propensity users get the coupon until it is spent
    cumulative = np.cumsum(true_cost[by_propensity, 1])
    n_base = int(np.searchsorted(cumulative, spend, side="right"))
    n_push = min(world.n_users, int(spend // spec.send_cost))  # a plain push costs its sending
    oracle = allocate(true_margin, true_cost, spend).choice
    got = np.flatnonzero(oracle != NONE)
    out["spend"] += spend
    out["allocation"] += float(true_margin[picked, chosen[picked]].sum())
    out["coupon_top_propensity"] += float(true_margin[by_propensity[:n_base], 1].sum())
    out["push_top_propensity"] += float(true_margin[by_propensity[:n_push], 0].sum())
    out["push_top_propensity_users"] += n_push
    out["oracle_allocation"] += float(true_margin[got, oracle[got]].sum())
    out["allocation_push"] += int((chosen == 0).sum())
    out["allocation_coupon"] += int((chosen == 1).sum())


# -- Hillstrom ----------------------------------------------------------------------------------

#: The Hillstrom outcomes the benchmark targets: visit (0/1: classifiers) and spend (regressors).
HILLSTROM_OUTCOMES = ("visit", "spend")


@dataclass
class HillstromResult:
    arm: str
    outcome: str
    qini: dict[str, list[float]]  # policy -> one value per split
    auuc: dict[str, list[float]]
    top30: dict[str, list[float]]  # policy -> incremental outcome in the top 30 % (per split)
    learners: list[str] = field(default_factory=list)  # the learner chosen, per split
    validation_qini: list[dict[str, float]] = field(default_factory=list)  # candidate -> Qini


@dataclass
class FittedEffects:
    """A fitted causalml learner and the constant treated shares it weighs by: ``(x)`` gives the
    estimated effect of each arm of :attr:`arms` (columns in that order)."""

    learner: Any
    shares: dict[str, float]

    @property
    def arms(self) -> list[str]:
        return [str(t) for t in self.learner.t_groups]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.learner.predict(x, p=constant_propensity(self.shares, len(x))))


def _outcome_regressor(cfg: UpliftConfig) -> Any:
    """An outcome regressor (spend) with the outcome learners' settings, ``uplift.lightgbm``."""
    import lightgbm as lgb

    return lgb.LGBMRegressor(**cfg.lightgbm.model_dump(), random_state=cfg.seed, n_jobs=1,
                             verbose=-1)


def hillstrom_learner(kind: str, outcome: str, cfg: UpliftConfig) -> Any:
    """causalml's learner ``kind`` (training/uplift.py ``LEARNERS``) for a Hillstrom outcome,
    built as training/uplift.py ``fit_learner`` builds it: for visit the classifier versions
    (LightGBM outcome classifiers ``uplift.lightgbm``, effect regressors
    ``uplift.effect_lightgbm``), for spend the regressor versions (outcome regressors with the
    same ``uplift.lightgbm`` settings); the DR-learner is causalml's ``BaseDRLearner`` with
    regressors for both (its fit takes the outcome models' ``predict``), as there."""
    from causalml.inference.meta import (
        BaseDRLearner,
        BaseRClassifier,
        BaseRRegressor,
        BaseTClassifier,
        BaseTRegressor,
        BaseXClassifier,
        BaseXRegressor,
    )

    if outcome not in HILLSTROM_OUTCOMES:
        raise ValueError(f"Hillstrom outcome {outcome!r}: expected one of {HILLSTROM_OUTCOMES}")
    visit = outcome == "visit"
    if kind == "t":
        return (BaseTClassifier(learner=outcome_classifier(cfg), control_name=CONTROL) if visit
                else BaseTRegressor(learner=_outcome_regressor(cfg), control_name=CONTROL))
    if kind == "x":
        return (BaseXClassifier(outcome_learner=outcome_classifier(cfg),
                                effect_learner=effect_regressor(cfg),
                                control_name=CONTROL) if visit
                else BaseXRegressor(control_outcome_learner=_outcome_regressor(cfg),
                                    treatment_outcome_learner=_outcome_regressor(cfg),
                                    control_effect_learner=effect_regressor(cfg),
                                    treatment_effect_learner=effect_regressor(cfg),
                                    control_name=CONTROL))
    if kind == "r":
        return (BaseRClassifier(outcome_learner=outcome_classifier(cfg),
                                effect_learner=effect_regressor(cfg),
                                control_name=CONTROL, n_fold=3, random_state=cfg.seed) if visit
                else BaseRRegressor(outcome_learner=_outcome_regressor(cfg),
                                    effect_learner=effect_regressor(cfg), control_name=CONTROL,
                                    n_fold=3, random_state=cfg.seed))
    if kind == "dr":
        return BaseDRLearner(learner=effect_regressor(cfg),
                             treatment_effect_learner=effect_regressor(cfg),
                             control_name=CONTROL)
    raise ValueError(f"uplift learner {kind!r}: expected one of {sorted(LEARNERS)}")


def fit_effects(kind: str, outcome: str, x: np.ndarray, treatment: np.ndarray, y: np.ndarray,
                cfg: UpliftConfig) -> FittedEffects:
    """:func:`hillstrom_learner` fitted on ``(x, treatment, y)`` (control rows: ``CONTROL``),
    the propensity given as each arm's constant treated share (the arms are randomised)."""
    learner = hillstrom_learner(kind, outcome, cfg)
    arms = sorted(str(t) for t in np.unique(treatment) if t != CONTROL)
    shares = treated_shares(treatment, arms)
    p = constant_propensity(shares, len(x))
    if kind == "r":
        learner.fit(x, treatment=treatment, y=y, p=p, verbose=False)
    elif kind == "dr":
        learner.fit(x, treatment=treatment, y=y, p=p, seed=cfg.seed)
    elif kind == "x":
        learner.fit(x, treatment=treatment, y=y, p=p)
    else:
        learner.fit(x, treatment=treatment, y=y)
    return FittedEffects(learner, shares)


def arm_qini(effect: np.ndarray, treatment: np.ndarray, y: np.ndarray, arm: str) -> float:
    """Qini (causalml, normalised: :func:`qini_auuc`) of ``effect`` on the rows of ``arm`` and of
    the control (all arrays over the same rows)."""
    part = np.isin(treatment, [arm, CONTROL])
    frame = pd.DataFrame({"y": y[part], "w": (treatment[part] == arm).astype(int),
                          "uplift": effect[part]})
    return float(qini_auuc(frame, "y", "w")[0]["uplift"])


def select_hillstrom_learner(x: np.ndarray, treatment: np.ndarray, y: np.ndarray, outcome: str,
                             cfg: UpliftConfig, strata: np.ndarray, seed: int = 0
                             ) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """The learner for each arm: ``uplift.learner``, or for ``auto`` the candidate of
    ``uplift.candidates`` whose estimated effect of that arm ranks a held-out stratified
    ``uplift.validation_share`` of these (training) rows best by Qini, each candidate fitted on
    the rest. Returns arm -> learner, and candidate -> arm -> validation Qini (empty when there
    is nothing to choose)."""
    from sklearn.model_selection import train_test_split

    arms = sorted(str(t) for t in np.unique(treatment) if t != CONTROL)
    if cfg.learner != "auto":
        return dict.fromkeys(arms, cfg.learner), {}
    candidates = list(cfg.candidates)
    if len(candidates) == 1:
        return dict.fromkeys(arms, candidates[0]), {}
    fit_rows, val_rows = train_test_split(np.arange(len(x)), test_size=cfg.validation_share,
                                          stratify=strata, random_state=seed)
    qini: dict[str, dict[str, float]] = {}
    for kind in candidates:
        effects = fit_effects(kind, outcome, x[fit_rows], treatment[fit_rows], y[fit_rows], cfg)
        tau = effects(x[val_rows])
        qini[kind] = {arm: arm_qini(tau[:, j], treatment[val_rows], y[val_rows], arm)
                      for j, arm in enumerate(effects.arms)}

    def score(kind: str, arm: str) -> float:
        value = qini[kind].get(arm, float("nan"))
        return value if np.isfinite(value) else -np.inf

    return {arm: max(candidates, key=lambda k: score(k, arm)) for arm in arms}, qini


def run_hillstrom(root: Path, base: UpliftConfig, splits: int = 10, seed: int = 0
                  ) -> list[HillstromResult]:
    """Both e-mail arms against no e-mail, for visit and spend. ``splits`` stratified (arm x
    visit) random 70/30 splits of the customers give the spread; on each, per arm and outcome,
    the uplift learner is chosen as on the simulated worlds (``uplift.learner``, or for
    ``auto`` the best of ``uplift.candidates``: causalml's T-, X-, R- and DR-learners,
    classifiers for visit, regressors for spend, LightGBM; :func:`select_hillstrom_learner`) by
    its normalised Qini on a stratified ``uplift.validation_share`` of the 70 % held out of its
    fit, then refitted on the whole 70 %. It is scored on the other 30 % (never used for the
    choice) against a response model (the outcome under the e-mail, LightGBM on the arm's
    customers of the 70 %) and random."""
    import lightgbm as lgb
    from sklearn.model_selection import train_test_split

    from socialrec.features.datasets.hillstrom import ARMS, load_hillstrom
    from socialrec.features.datasets.hillstrom import CONTROL as NO_EMAIL

    campaign = load_hillstrom(root)
    x_all = campaign.features().to_numpy()
    arm_all = campaign.frame.segment.to_numpy()
    given = np.where(arm_all == NO_EMAIL, CONTROL, arm_all).astype(str)  # the learners' control
    params = base.lightgbm.model_dump()
    results = {(arm, o): HillstromResult(arm, o, {}, {}, {})
               for arm in ARMS if arm != NO_EMAIL for o in HILLSTROM_OUTCOMES}
    strata = arm_all + "|" + campaign.frame.visit.astype(str).to_numpy()
    for s in range(splits):
        train, test = train_test_split(np.arange(len(x_all)), test_size=0.3,
                                       stratify=strata, random_state=seed + s)
        cfg = base.model_copy(update={"seed": base.seed + s})
        for outcome in HILLSTROM_OUTCOMES:
            y = campaign.frame[outcome].to_numpy()
            kwargs: dict[str, Any] = {"objective": "binary" if outcome == "visit"
                                      else "regression"}
            chosen, validation = select_hillstrom_learner(
                x_all[train], given[train], y[train], outcome, cfg, strata[train], seed + s)
            fitted = {kind: fit_effects(kind, outcome, x_all[train], given[train], y[train], cfg)
                      for kind in sorted(set(chosen.values()))}
            for arm, kind in chosen.items():
                treated_train = train[arm_all[train] == arm]
                response = lgb.train({**kwargs, "verbose": -1, "seed": s,
                                      "num_leaves": params["num_leaves"],
                                      "learning_rate": params["learning_rate"],
                                      "min_data_in_leaf": params["min_child_samples"]},
                                     lgb.Dataset(x_all[treated_train], y[treated_train]),
                                     num_boost_round=params["n_estimators"])
                rows = test[np.isin(arm_all[test], [arm, NO_EMAIL])]
                effects = fitted[kind]
                frame = pd.DataFrame({
                    "y": y[rows], "w": (arm_all[rows] == arm).astype(int),
                    "random": np.random.default_rng(seed + s).random(len(rows)),
                    "response": response.predict(x_all[rows]),
                    "uplift": effects(x_all[rows])[:, effects.arms.index(arm)],
                })
                qini, auuc = qini_auuc(frame, "y", "w")
                r = results[(arm, outcome)]
                r.learners.append(kind)
                r.validation_qini.append({k: v[arm] for k, v in validation.items() if arm in v})
                for policy in ("random", "response", "uplift"):
                    r.qini.setdefault(policy, []).append(float(qini[policy]))
                    r.auuc.setdefault(policy, []).append(float(auuc[policy]))
                    r.top30.setdefault(policy, []).append(_incremental_top(frame, policy, 0.3))
    return list(results.values())


def _incremental_top(frame: pd.DataFrame, score: str, share: float) -> float:
    """Incremental outcome of treating the top ``share`` by ``score``, estimated from the
    randomised rows there: (treated mean - control mean) x rows."""
    top = frame.nlargest(round(share * len(frame)), score)
    treated, control = top[top.w == 1].y, top[top.w == 0].y
    return float((treated.mean() - control.mean()) * len(top))


# -- the report ---------------------------------------------------------------------------------

def write_report(worlds: list[WorldResult], hillstrom: list[HillstromResult], out: Path,
                 command: str, commit: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# Uplift: targeting the incremental effect of a push or coupon", "",
             f"Made by `{command}` at commit `{commit}`. The worlds' parameters "
             "(socialrec/evaluation/uplift_worlds.py `WORLDS`) were fixed and committed before "
             "anything was measured on them and were not tuned afterwards.", "",
             "## Simulated worlds", "",
             f"Training data: the service-style log of {TRAIN_CAMPAIGNS} campaigns (every user "
             "reached, 20 % held out, 20 % of the rest given a random push or coupon); test: "
             f"{TEST_CAMPAIGNS} campaigns of items the learner never saw.", "",
             "### The learner, chosen on training campaigns only", "",
             "Each candidate (causalml, LightGBM base learners: outcome classifiers "
             "`uplift.lightgbm`, effect regressors `uplift.effect_lightgbm`) is fitted on the "
             "training campaigns but a held-out `uplift.validation_share` of them and scored by "
             "the Qini (normalised) of its estimated effect of each treatment on those held-out "
             "campaigns' rows of that treatment and of the control; the best mean is refitted on "
             "all training campaigns (unsubscribes: always a T-learner). The test campaigns play "
             "no part in the choice.", "",
             "| world | validation campaigns | " + " | ".join(
                 f"{k.upper()} Qini push / coupon" for k in LEARNERS) + " | chosen |",
             "|---|---|" + "---:|" * len(LEARNERS) + "---|"]
    for w in worlds:
        sel = w.selection
        cells = [" / ".join(f"{sel.qini[k].get(t, float('nan')):.4f}" for t in (PUSH, COUPON))
                 if k in sel.qini else "-" for k in LEARNERS]
        lines.append(f"| {w.name} | {', '.join(sel.validation_campaigns)} | "
                     + " | ".join(cells) + f" | **{sel.learner.upper()}** |")
    lines += ["",
             "### Qini / AUUC (causalml.metrics, normalize=True), held-out randomised log", "",
             "| world | random Qini | propensity Qini | uplift Qini | random AUUC | "
             "propensity AUUC | uplift AUUC |", "|---|---:|---:|---:|---:|---:|---:|"]
    for w in worlds:
        lines.append(f"| {w.name} | " + " | ".join(
            f"{d[p]:.4f}" for d in (w.qini, w.auuc) for p in ("random", "propensity", "uplift"))
            + " |")
    lines += ["", "### Incremental conversions of a push at a budget of users (true expected "
              "effects), as a fraction of the oracle's", "",
              "`features oracle`: a regression of the true effect on the learner's features, "
              "fitted with the hidden truth of the training campaigns (no learner can have it): "
              "roughly the best ranking these features allow, for reference.", "",
              "| world | budget | random | propensity | uplift | features oracle | oracle "
              "(conversions) | uplift / propensity | unsubscribes caused: propensity | uplift |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w in worlds:
        for b in BUDGETS:
            inc, uns = w.incremental[b], w.unsubscribes[b]
            o = inc["oracle"]
            lines.append(
                f"| {w.name} | {b:.0%} | {inc['random'] / o:.3f} | {inc['propensity'] / o:.3f} "
                f"| {inc['uplift'] / o:.3f} | {inc['features_oracle'] / o:.3f} | {o:.1f} "
                f"| {inc['uplift'] / inc['propensity']:.3f} "
                f"| {uns['propensity']:.1f} | {uns['uplift']:.1f} |")
    lines += ["", "### One money budget over push and coupon (incremental margin, equal true "
              "spend)", "",
              "Budget: the true expected spend of coupons for the top 10 % by propensity; the "
              "allocation (models/allocation.py, by estimated incremental margin) is measured "
              "at its true spend; the baselines spend the same on the top-propensity users: "
              "coupons (until spent), or plain pushes (send cost each; the spend buys more "
              "pushes than there are users when it is large: then everyone is pushed).", "",
              "| world | spend | coupon to top propensity | push to top propensity (users) | "
              "allocation | oracle allocation | allocation / coupon baseline | allocation / "
              "push baseline | pushes / coupons given |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w in worlds:
        m = w.margin
        lines.append(f"| {w.name} | {m['spend']:.0f} | {m['coupon_top_propensity']:.1f} | "
                     f"{m['push_top_propensity']:.1f} ({m['push_top_propensity_users']:.0f}) | "
                     f"{m['allocation']:.1f} | {m['oracle_allocation']:.1f} | "
                     f"{_ratio(m['allocation'], m['coupon_top_propensity'])} | "
                     f"{_ratio(m['allocation'], m['push_top_propensity'])} | "
                     f"{m['allocation_push']:.0f} / {m['allocation_coupon']:.0f} |")
    lines += hillstrom_lines(hillstrom)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name(out.stem + "_qini.png")
    fig, axes = plt.subplots(1, len(worlds), figsize=(5 * len(worlds), 4), squeeze=False)
    for ax, w in zip(axes[0], worlds, strict=True):
        c = w.qini_curve
        x = np.linspace(0, 1, len(c))
        for col in ("random", "propensity", "uplift"):
            ax.plot(x, c[col].to_numpy(), label=col)
        ax.set_title(w.name)
        ax.set_xlabel("share of users targeted")
        ax.set_ylabel("incremental conversions (Qini)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    lines += ["", f"![Qini curves]({png.name})", "", *targets(worlds, hillstrom)]
    online = _kept_section(out)
    out.write_text("\n".join(lines) + "\n" + (f"\n{online}" if online else ""))
    return [out, png]


def hillstrom_lines(hillstrom: list[HillstromResult]) -> list[str]:
    """The report's Hillstrom section: the protocol, the table with the learner chosen per
    split, and every candidate's validation Qini."""
    if not hillstrom:
        return []
    n = len(next(iter(hillstrom)).qini["uplift"])
    candidates = [k for k in LEARNERS
                  if any(k in v for r in hillstrom for v in r.validation_qini)]
    if candidates:
        names = [f"{k.upper()}-" for k in candidates]
        listed = (", ".join(names[:-1]) + " and " if len(names) > 1 else "") + names[-1]
        choice = (f"the uplift learner is chosen per arm and outcome among causalml's "
                  f"{listed}learners (`uplift.candidates`; "
                  "LightGBM: classifiers for visit, regressors for spend, as on the simulated "
                  "worlds) by its Qini (normalised) on a stratified (arm x visit) "
                  "`uplift.validation_share` of the 70 % held out of its fit, and refitted on "
                  "the whole 70 %")
    else:
        used = sorted({k for r in hillstrom for k in r.learners})
        choice = (f"the uplift learner is the {', '.join(k.upper() for k in used)}-learner "
                  "(`uplift.learner`; causalml, LightGBM: classifier for visit, regressor "
                  "for spend), fitted on the 70 %")
    lines = ["", "## Real data: Hillstrom e-mail campaign", "",
             f"Protocol: each e-mail arm against No E-Mail (two binary comparisons); {n} "
             "stratified (arm x visit) random 70/30 splits of the 64,000 customers; on each, "
             f"{choice}; a response model (LightGBM on the arm's customers: the outcome "
             "under the e-mail) is fitted on the 70 %; both are scored on the 30 % (that "
             "arm's and the control's customers), which plays no part in the choice. "
             "Figures: mean ± sd over splits.", "",
             "| arm | outcome | Qini random | Qini response | Qini uplift | AUUC random | "
             "AUUC response | AUUC uplift | top 30 %: incremental by uplift | by response "
             "| uplift - response (95 % interval over splits) | learner chosen (per split) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in hillstrom:
        def ms(values: list[float]) -> str:
            return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
        diff = np.array(r.top30["uplift"]) - np.array(r.top30["response"])
        lo, hi = np.percentile(diff, [2.5, 97.5])
        lines.append(
            f"| {r.arm} | {r.outcome} | {ms(r.qini['random'])} | {ms(r.qini['response'])} | "
            f"{ms(r.qini['uplift'])} | {ms(r.auuc['random'])} | {ms(r.auuc['response'])} | "
            f"{ms(r.auuc['uplift'])} | {np.mean(r.top30['uplift']):.1f} | "
            f"{np.mean(r.top30['response']):.1f} | {diff.mean():+.1f} [{lo:+.1f}, {hi:+.1f}] "
            f"| {', '.join(k.upper() for k in r.learners)} |")
    if candidates:
        lines += ["", "Validation Qini of each candidate (normalised, on the part of the 70 % "
                  "held out of its fit; mean ± sd over splits):", "",
                  "| arm | outcome | " + " | ".join(k.upper() for k in candidates) + " |",
                  "|---|---|" + "---:|" * len(candidates)]
        for r in hillstrom:
            cells = []
            for k in candidates:
                values = [v[k] for v in r.validation_qini if k in v]
                cells.append(f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
                             if len(values) > 1 else
                             f"{values[0]:.4f}" if values else "-")
            lines.append(f"| {r.arm} | {r.outcome} | " + " | ".join(cells) + " |")
    return lines


#: The online run's section of the report (bench/uplift_online.py writes it); a benchmark run
#: keeps it.
ONLINE_HEADING = "## Online: propensity against uplift targeting through the service"


def _kept_section(out: Path) -> str:
    if not out.exists():
        return ""
    text = out.read_text()
    at = text.find(ONLINE_HEADING)
    return text[at:].rstrip() + "\n" if at >= 0 else ""


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else f"{a:+.1f} against {b:+.1f} (baseline <= 0)"


def targets(worlds: list[WorldResult], hillstrom: list[HillstromResult]) -> list[str]:
    """The issue's targets against this run's figures, met or missed and by how much."""
    lines = ["## Against the issue's targets (computed from the tables above by the same "
             "command)", ""]
    by_name = {w.name: w for w in worlds}
    for name in ("2_sure_things", "3_sleeping_dogs"):
        if name not in by_name:
            continue
        inc = by_name[name].incremental[0.10]
        ratio, share = inc["uplift"] / inc["propensity"], inc["uplift"] / inc["oracle"]
        feasible = inc["features_oracle"] / inc["propensity"]
        met = ratio >= 1.3 and share >= 0.7
        short = "met" if ratio >= 1.3 else f"missed by {1.3 - ratio:.3f}x"
        lines.append(
            f"- World {name}, 10 % budget: uplift {ratio:.3f}x propensity's incremental "
            f"conversions (target 1.3x: {short}), {share:.1%} of the oracle's (target 70 %: "
            f"{'met' if share >= 0.7 else f'missed by {100 * (0.7 - share):.1f} points'}): "
            f"**{'met' if met else 'missed'}**. For reference the features oracle reaches "
            f"{feasible:.3f}x propensity and {inc['features_oracle'] / inc['oracle']:.1%} of the "
            "oracle.")
    if "1_proportional" in by_name:
        inc = by_name["1_proportional"].incremental[0.10]
        loss = 1 - inc["uplift"] / inc["propensity"]
        lines.append(f"- World 1_proportional, 10 % budget: uplift loses {loss:.1%} to "
                     f"propensity (target at most 5 %): **{'met' if loss <= 0.05 else 'missed'}**"
                     + ("" if loss <= 0.05 else f" by {100 * (loss - 0.05):.1f} points") + ".")
    for w in worlds:
        m = w.margin
        best = max(m["coupon_top_propensity"], m["push_top_propensity"])
        met = m["allocation"] >= 1.2 * best if best > 0 else m["allocation"] > best
        lines.append(
            f"- {w.name}, one money budget at equal spend: allocation {m['allocation']:.1f} "
            f"against coupons to the top-propensity users {m['coupon_top_propensity']:.1f} "
            f"({_ratio(m['allocation'], m['coupon_top_propensity'])}) and plain pushes to them "
            f"{m['push_top_propensity']:.1f} ({_ratio(m['allocation'], m['push_top_propensity'])}"
            f"); target +20 % over the better baseline: **{'met' if met else 'missed'}**.")
    for r in hillstrom:
        if r.outcome != "visit":
            continue
        diff = np.array(r.top30["uplift"]) - np.array(r.top30["response"])
        lo, hi = np.percentile(diff, [2.5, 97.5])
        lines.append(f"- Hillstrom {r.arm}, top 30 %: uplift captures {diff.mean():+.1f} "
                     f"incremental visits against the response model [{lo:+.1f}, {hi:+.1f}] "
                     f"({'more' if lo > 0 else 'fewer' if hi < 0 else 'not distinguishable'}).")
    return [*lines, ""]


def run_benchmark(base: UpliftConfig, worlds: list[str], hillstrom_root: Path | None,
                  splits: int, out: Path, command: str, commit: str) -> list[Path]:
    results = [run_world(WORLDS[name], base) for name in worlds]
    hill = run_hillstrom(hillstrom_root, base, splits) if hillstrom_root is not None else []
    return write_report(results, hill, out, command, commit)
