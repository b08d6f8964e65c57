"""``socialrec uplift benchmark``: uplift against propensity targeting where the truth is known
(the simulated worlds of evaluation/uplift_worlds.py) and on a real randomised campaign
(Hillstrom), side by side, into ``results/uplift.md`` and a Qini plot.

Per world, in one run: campaigns of training items are logged as the service logs them
(everyone reached, 20 % held out, 20 % of the rest given a random treatment, the others a plain
push), the T-learner of training/uplift.py is fitted on those rows, and then, on campaigns of
items it never saw:

- Qini and AUUC (causalml.metrics, ``normalize=True``: the curve divided by its final value) of
  random, propensity (the served score) and uplift ranking, on a randomised log (half held
  out, half pushed) of the held-out campaigns;
- incremental conversions of pushing the top 5 / 10 / 20 % of users by each ranking, from the
  true expected effects, as a fraction of the oracle's (the top users by true effect, positive
  effects only), and the unsubscribes each push list causes;
- the allocation of one money budget over push and coupon (models/allocation.py, by
  incremental margin) against giving the coupon to the top-propensity users, at equal true spend.
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
from socialrec.models.allocation import NONE, allocate
from socialrec.models.uplift_features import FeatureSource, fit_projection, uplift_features
from socialrec.training.uplift import features_for_rows, fit_uplift
from socialrec.training.uplift_config import TreatmentConfig, UpliftConfig

BUDGETS = (0.05, 0.10, 0.20)
POLICIES = ("random", "propensity", "uplift", "oracle")
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
    model, _ = fit_uplift(features_for_rows(src, rows, projection), rows, cfg, projection)
    push = model.treatment_names.index(PUSH)

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
    margin = {"coupon_top_propensity": 0.0, "allocation": 0.0, "oracle_allocation": 0.0,
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
                  "uplift": est.conversion[:, push], "oracle": true}
        for b in BUDGETS:
            k = round(b * world.n_users)
            incremental[b]["random"] += b * true.sum()
            unsubscribes[b]["random"] += b * caused.sum()
            for name, score in scores.items():
                top = np.argsort(-score, kind="stable")[:k]
                if name != "propensity":  # uplift targeting never pushes a negative effect
                    top = top[score[top] > 0]
                incremental[b][name] += true[top].sum()
                unsubscribes[b][name] += caused[top].sum()
        _allocate_margin(world, model, est, p, q, int(item), cfg, margin)
    return WorldResult(spec.name, len(rows), time.perf_counter() - t0,
                       {str(k): float(v) for k, v in qini.items()},
                       {str(k): float(v) for k, v in auuc.items()}, incremental, unsubscribes,
                       margin, curve)


def _allocate_margin(world: World, model: Any, est: Any, p: np.ndarray, q: np.ndarray,
                     item: int, cfg: UpliftConfig, out: dict[str, float], share: float = 0.10
                     ) -> None:
    """One money budget over push and coupon: the allocation by estimated incremental margin
    against coupons for the top-propensity users, at equal true spend."""
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
    oracle = allocate(true_margin, true_cost, spend).choice
    got = np.flatnonzero(oracle != NONE)
    out["spend"] += spend
    out["allocation"] += float(true_margin[picked, chosen[picked]].sum())
    out["coupon_top_propensity"] += float(true_margin[by_propensity[:n_base], 1].sum())
    out["oracle_allocation"] += float(true_margin[got, oracle[got]].sum())
    out["allocation_push"] += int((chosen == 0).sum())
    out["allocation_coupon"] += int((chosen == 1).sum())


# -- Hillstrom ----------------------------------------------------------------------------------

@dataclass
class HillstromResult:
    arm: str
    outcome: str
    qini: dict[str, list[float]]  # policy -> one value per split
    auuc: dict[str, list[float]]
    top30: dict[str, list[float]]  # policy -> incremental outcome in the top 30 % (per split)


def run_hillstrom(root: Path, base: UpliftConfig, splits: int = 10, seed: int = 0
                  ) -> list[HillstromResult]:
    """Both e-mail arms against no e-mail, for visit and spend: T-learners (classifier for visit,
    regressor for spend; LightGBM) on a stratified 70 % of customers, scored on the other 30 %,
    against a response model (the outcome under the e-mail, LightGBM on the treated) and random;
    ``splits`` stratified random splits give the spread."""
    import lightgbm as lgb
    from causalml.inference.meta import BaseTClassifier, BaseTRegressor
    from sklearn.model_selection import train_test_split

    from socialrec.features.datasets.hillstrom import ARMS, CONTROL, load_hillstrom

    campaign = load_hillstrom(root)
    x_all = campaign.features().to_numpy()
    arm_all = campaign.frame.segment.to_numpy()
    params = base.lightgbm.model_dump()
    results = {(arm, o): HillstromResult(arm, o, {}, {}, {})
               for arm in ARMS if arm != CONTROL for o in ("visit", "spend")}
    for s in range(splits):
        strata = arm_all + "|" + campaign.frame.visit.astype(str).to_numpy()
        train, test = train_test_split(np.arange(len(x_all)), test_size=0.3,
                                       stratify=strata, random_state=seed + s)
        for outcome in ("visit", "spend"):
            y = campaign.frame[outcome].to_numpy()
            if outcome == "visit":
                kwargs: dict[str, Any] = {"objective": "binary"}
                learner = BaseTClassifier(learner=lgb.LGBMClassifier(
                    **params, random_state=s, n_jobs=1, verbose=-1), control_name=CONTROL)
            else:
                kwargs = {"objective": "regression"}
                learner = BaseTRegressor(learner=lgb.LGBMRegressor(
                    **params, random_state=s, n_jobs=1, verbose=-1), control_name=CONTROL)
            learner.fit(x_all[train], treatment=arm_all[train], y=y[train])
            tau = learner.predict(x_all[test])
            for j, arm in enumerate(learner.t_groups):
                treated_train = train[arm_all[train] == arm]
                response = lgb.train({**kwargs, "verbose": -1, "seed": s,
                                      "num_leaves": params["num_leaves"],
                                      "learning_rate": params["learning_rate"],
                                      "min_data_in_leaf": params["min_child_samples"]},
                                     lgb.Dataset(x_all[treated_train], y[treated_train]),
                                     num_boost_round=params["n_estimators"])
                rows = test[np.isin(arm_all[test], [arm, CONTROL])]
                in_arm = np.isin(test, rows)
                frame = pd.DataFrame({
                    "y": y[rows], "w": (arm_all[rows] == arm).astype(int),
                    "random": np.random.default_rng(seed + s).random(len(rows)),
                    "response": response.predict(x_all[rows]),
                    "uplift": tau[in_arm, j],
                })
                qini, auuc = qini_auuc(frame, "y", "w")
                r = results[(arm, outcome)]
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
             "Learner: causalml `BaseTClassifier` (T-learner) with LightGBM, trained on the "
             f"service-style log of {TRAIN_CAMPAIGNS} campaigns (every user reached, 20 % held "
             "out, 20 % of the rest given a random push or coupon); measured on "
             f"{TEST_CAMPAIGNS} campaigns of items it never saw.", "",
             "### Qini / AUUC (causalml.metrics, normalize=True), held-out randomised log", "",
             "| world | random Qini | propensity Qini | uplift Qini | random AUUC | "
             "propensity AUUC | uplift AUUC |", "|---|---:|---:|---:|---:|---:|---:|"]
    for w in worlds:
        lines.append(f"| {w.name} | " + " | ".join(
            f"{d[p]:.4f}" for d in (w.qini, w.auuc) for p in ("random", "propensity", "uplift"))
            + " |")
    lines += ["", "### Incremental conversions of a push at a budget of users (true expected "
              "effects), as a fraction of the oracle's", "",
              "| world | budget | random | propensity | uplift | oracle (conversions) | "
              "uplift / propensity | unsubscribes caused: propensity | uplift |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w in worlds:
        for b in BUDGETS:
            inc, uns = w.incremental[b], w.unsubscribes[b]
            o = inc["oracle"]
            lines.append(
                f"| {w.name} | {b:.0%} | {inc['random'] / o:.3f} | {inc['propensity'] / o:.3f} "
                f"| {inc['uplift'] / o:.3f} | {o:.1f} | {inc['uplift'] / inc['propensity']:.3f} "
                f"| {uns['propensity']:.1f} | {uns['uplift']:.1f} |")
    lines += ["", "### One money budget over push and coupon (incremental margin, equal true "
              "spend)", "",
              "Budget: the true expected spend of coupons for the top 10 % by propensity; the "
              "allocation (models/allocation.py, by estimated incremental margin) is measured "
              "at its true spend, and the baseline gives coupons to the top-propensity users "
              "until it has spent the same.", "",
              "| world | spend | coupon to top propensity | allocation | oracle allocation | "
              "allocation / baseline | pushes / coupons given |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for w in worlds:
        m = w.margin
        lines.append(f"| {w.name} | {m['spend']:.0f} | {m['coupon_top_propensity']:.1f} | "
                     f"{m['allocation']:.1f} | {m['oracle_allocation']:.1f} | "
                     f"{m['allocation'] / m['coupon_top_propensity']:.2f}x | "
                     f"{m['allocation_push']:.0f} / {m['allocation_coupon']:.0f} |")
    if hillstrom:
        n = len(next(iter(hillstrom)).qini["uplift"])
        lines += ["", "## Real data: Hillstrom e-mail campaign", "",
                  f"Protocol: each e-mail arm against No E-Mail (two binary comparisons); {n} "
                  "stratified (arm x visit) random 70/30 splits of the 64,000 customers; on each, "
                  "a T-learner (causalml, LightGBM: classifier for visit, regressor for spend) "
                  "and a response model (LightGBM on the arm's customers: the outcome under the "
                  "e-mail) are fitted on the 70 % and scored on the 30 % (that arm's and the "
                  "control's customers). Figures: mean ± sd over splits.", "",
                  "| arm | outcome | Qini random | Qini response | Qini uplift | AUUC random | "
                  "AUUC response | AUUC uplift | top 30 %: incremental by uplift | by response "
                  "| uplift - response (95 % interval over splits) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
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
                "|")
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
    lines += ["", f"![Qini curves]({png.name})", ""]
    out.write_text("\n".join(lines) + "\n")
    return [out, png]


def run_benchmark(base: UpliftConfig, worlds: list[str], hillstrom_root: Path | None,
                  splits: int, out: Path, command: str, commit: str) -> list[Path]:
    results = [run_world(WORLDS[name], base) for name in worlds]
    hill = run_hillstrom(hillstrom_root, base, splits) if hillstrom_root is not None else []
    return write_report(results, hill, out, command, commit)
