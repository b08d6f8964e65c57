"""``socialrec promote --experiment NAME``: ``champion`` follows the A/B verdict.

A retrain that passes its offline gate takes the ``challenger`` alias (training/retrain.py); the
experiment's treatment variant follows that alias, so the running service gives it the
variant's traffic share at its next alias poll, without a restart. This step reads the A/B
report of that challenger's traffic (evaluation/ab.py) and decides (:func:`decide`):

1. **Sample-ratio mismatch** (the split of units, or of held-out users, is not the configured
   one): nothing can be concluded — ``refused_srm``, nothing moves.
2. **Significant harm** on ``promotion.primary_metric`` (p < alpha, worse than control):
   ``rejected`` — the challenger alias goes back to the champion's version, which stops its
   traffic (the treatment arm then serves the champion: an A/A until the next retrain).
3. **Not enough evidence**: the smallest relative effect the test could detect at
   ``promotion.power`` and ``alpha`` with the standard error it has, ``(z(1-a/2) + z(power)) *
   se / control``, is larger than ``promotion.min_detectable_effect`` (or an arm has too few
   events for its normal approximation): ``wait`` — nothing moves, the next run looks again.
4. Otherwise, ``require: no_harm`` promotes (``champion`` moves to the challenger's version);
   ``require: win`` promotes only a significant improvement, and rejects a challenger whose
   powered test shows none.

Only the traffic of the challenger's current version counts: the window starts at that
version's first exposure in the treatment variant, and treatment rows served by an older
version are left out. Every decision, with the numbers behind it and the full A/B report, is an
MLflow run of its own (``promote <experiment>``), and promotions and rejections are tagged on the
version. The step is idempotent: with no challenger under test it says so and does nothing
(except, when the challenger alias is unset, pointing it at the champion's version, so that the
experiment's treatment variant always resolves to a model: an A/A until a retrain passes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import mlflow
from mlflow import MlflowClient
from scipy import stats

from socialrec.evaluation.ab import ABResult, ExperimentArms, analyze
from socialrec.evaluation.ab_attribution import PRE_PERIOD, unit_rows
from socialrec.features.events import HOLDOUT, EventStore
from socialrec.features.experiments import load_experiments
from socialrec.training import tracking
from socialrec.training.config import format_names
from socialrec.training.retrain import event_store_url

Verdict = Literal["promoted", "rejected", "wait", "refused_srm", "no_challenger"]


class PromotionError(RuntimeError):
    """The decision cannot be made (no such experiment, no variant on the challenger alias)."""


@dataclass
class Decision:
    verdict: Verdict
    reason: str
    experiment: str
    champion_version: str | None
    challenger_version: str | None
    metric: str = ""
    numbers: dict[str, float] = field(default_factory=dict)
    window_start: str = ""
    moved: dict[str, str] = field(default_factory=dict)  # alias -> version it now names
    run_id: str = ""


def detectable_effect(se: float, control: float, alpha: float, power: float) -> float:
    """The smallest relative effect a two-sided test at ``alpha`` detects with ``power`` given
    the standard error ``se`` of the difference (normal approximation); inf when undefined."""
    if not math.isfinite(se) or not control:
        return math.inf
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * se / abs(control))


def decide(result: ABResult, treatment: str, settings: dict[str, Any]) -> tuple[Verdict, str,
                                                                                 dict[str, float]]:
    """The verdict on ``treatment`` from an A/B report (module docstring), why, and the numbers
    it rests on. ``settings`` is the ``promotion:`` config section."""
    metric = settings["primary_metric"]
    alpha, power, mde = settings["alpha"], settings["power"], settings["min_detectable_effect"]
    srm_p = result.srm.p_value if result.srm else math.nan
    numbers: dict[str, float] = {"srm_p_value": srm_p}
    if result.holdout_srm is not None:
        numbers["holdout_srm_p_value"] = result.holdout_srm.p_value
    if result.flagged:
        which = [c.what for c in (result.srm, result.holdout_srm) if c is not None and c.flagged]
        return "refused_srm", (f"sample-ratio mismatch ({', '.join(which)}): the split is not "
                               "the configured one, so no comparison can be trusted"), numbers
    try:
        comparison = result.comparison(metric, treatment)
    except KeyError:
        return "wait", f"no {metric} comparison for variant {treatment!r} yet", numbers
    effect = comparison.effect
    reachable = detectable_effect(effect.se, effect.control, alpha, power)
    events = effect.events or (0, 0)
    numbers |= {"control": effect.control, "treatment": effect.treatment,
                "abs_lift": effect.abs_lift, "rel_lift": effect.rel_lift,
                "ci_low": effect.abs_ci[0], "ci_high": effect.abs_ci[1],
                "p_value": effect.p_value, "se": effect.se, "events_treatment": events[0],
                "events_control": events[1], "detectable_effect": reachable,
                "min_detectable_effect": mde}
    lift = f"{metric} {effect.treatment:.4g} vs {effect.control:.4g} ({effect.rel_lift:+.1%}, " \
           f"p={effect.p_value:.3g})"
    if comparison.significant and effect.abs_lift < 0:
        return "rejected", f"significant harm: {lift}", numbers
    if effect.small_sample or reachable > mde:
        why = (f"fewer than enough events for the test ({events[0]} / {events[1]})"
               if effect.small_sample else
               f"the test can detect {reachable:.1%}, not yet the {mde:.1%} required")
        return "wait", f"not enough evidence: {why}; {lift}", numbers
    if settings["require"] == "win":
        if comparison.significant and effect.abs_lift > 0:
            return "promoted", f"significant win: {lift}", numbers
        return "rejected", f"no significant win where one of {mde:.1%} would show: {lift}", \
            numbers
    return "promoted", f"no significant harm, and the test could see {mde:.1%}: {lift}", numbers


def _variants(path: str | Path, experiment: str, challenger_alias: str
              ) -> tuple[ExperimentArms, str, str]:
    """The experiment's arms, its control and the variant on ``challenger_alias``."""
    experiments = load_experiments(path).experiments
    if experiment not in experiments:
        raise PromotionError(f"{path}: no experiment {experiment!r} (found: "
                             f"{', '.join(experiments) or 'none'})")
    exp = experiments[experiment]
    treatments = [v for v, spec in exp.variants.items() if spec.alias == challenger_alias
                  and v != exp.control]
    if not treatments:
        raise PromotionError(f"experiment {experiment!r} has no treatment variant on alias "
                             f"{challenger_alias!r}: a challenger would get no traffic")
    if exp.variants[treatments[0]].weight == 0:
        raise PromotionError(f"experiment {experiment!r}: variant {treatments[0]!r} has weight "
                             "0; give it the traffic share a challenger should get")
    arms = ExperimentArms(experiment, {v: s.weight for v, s in exp.variants.items()},
                          exp.holdout.weight, exp.unit)
    return arms, exp.control, treatments[0]


def experiments_file(config: dict[str, Any], path: str | Path | None) -> Path:
    import os

    chosen = path or os.environ.get("SOCIALREC_EXPERIMENTS") or config["serving"]["experiments"]
    if not chosen:
        raise PromotionError("no experiments file: pass --experiments or set "
                             "serving.experiments")
    return Path(chosen)


def promote_by_experiment(config: dict[str, Any], experiment: str | None = None,
                          experiments: str | Path | None = None,
                          until: datetime | None = None) -> Decision:
    """Read the A/B report of the challenger's traffic and move ``champion`` if it passes
    (module docstring); every decision is logged to MLflow."""
    settings = config["promotion"]
    experiment = experiment or settings["experiment"]
    if not experiment:
        raise PromotionError("name the experiment: --experiment NAME or promotion.experiment")
    arms, control, treatment = _variants(experiments_file(config, experiments), experiment,
                                         settings["challenger_alias"])
    client, experiment_id = tracking.setup(config)
    name = format_names(config)["registered_model"]
    champion_alias = config["tracking"]["alias"]
    champion = tracking.alias_holder(client, name, champion_alias)
    challenger = tracking.alias_holder(client, name, settings["challenger_alias"])
    decision = Decision("no_challenger", "", experiment,
                        str(champion.version) if champion else None,
                        str(challenger.version) if challenger else None,
                        metric=settings["primary_metric"])
    result: ABResult | None = None
    if challenger is None or (champion is not None and challenger.version == champion.version):
        decision.reason = "no challenger under test (challenger is the champion, or unset)"
        if challenger is None and champion is not None:
            # the treatment variant must resolve to a model, or the service cannot get ready:
            # it serves the champion (an A/A) until a retrain passes its gate
            client.set_registered_model_alias(name, settings["challenger_alias"],
                                              str(champion.version))
            decision.moved = {settings["challenger_alias"]: str(champion.version)}
    else:
        result, decision.window_start, why = _report(config, experiment, arms, control,
                                                     treatment, f"{name}/{challenger.version}",
                                                     until)
        if result is None:
            decision.verdict, decision.reason = "wait", why
        else:
            decision.verdict, decision.reason, decision.numbers = decide(result, treatment,
                                                                         settings)
        _apply(client, name, decision, champion_alias, settings["challenger_alias"])
    decision.run_id = _log(experiment_id, decision, result)
    return decision


def _report(config: dict[str, Any], experiment: str, arms: ExperimentArms, control: str,
            treatment: str, label: str, until: datetime | None
            ) -> tuple[ABResult | None, str, str]:
    """The A/B report of ``label``'s traffic in ``treatment`` against ``control``, its window
    start, or None and why there is none yet."""
    with EventStore(event_store_url(config)) as store:
        exposures = store.exposures(experiment, until=until)
        mine = exposures[(exposures.variant == treatment) & (exposures.model_version == label)]
        if mine.empty:
            return None, "", (f"the service has not served {label} in variant {treatment!r} "
                              "yet (is the treatment's weight > 0, and has it polled the alias?)")
        start = mine.ts.min()
        window = exposures[(exposures.ts >= start)
                           & ((exposures.variant != treatment)
                              | (exposures.model_version == label))]
        window = window[window.variant.isin([control, treatment, HOLDOUT])]
        feedback = store.feedback(since=start.to_pydatetime() - PRE_PERIOD, until=until)
    rows = unit_rows(window, feedback, start=start, end=until)
    if control not in set(rows.arm):
        return None, start.isoformat(), f"no {control!r} traffic since {start.isoformat()}"
    arms_now = ExperimentArms(arms.name, {v: w for v, w in arms.weights.items()
                                          if v in (control, treatment)}, arms.holdout, arms.unit)
    total = sum(arms_now.weights.values())
    arms_now = ExperimentArms(arms.name, {v: w / total for v, w in arms_now.weights.items()},
                              arms.holdout, arms.unit)
    alpha = config["promotion"]["alpha"]
    return (analyze(rows, arms_now, experiment=experiment, control=control, alpha=alpha,
                    start=start.to_pydatetime(), end=until, timeline=False),
            start.isoformat(), "")


def _apply(client: MlflowClient, name: str, decision: Decision, champion_alias: str,
           challenger_alias: str) -> None:
    """Move the aliases the verdict calls for, and tag the challenger's version with it."""
    version = decision.challenger_version
    assert version is not None
    if decision.verdict == "promoted":
        client.set_registered_model_alias(name, champion_alias, version)
        decision.moved = {champion_alias: version}
    elif decision.verdict == "rejected" and decision.champion_version is not None:
        # its traffic stops: the treatment arm serves the champion until the next challenger
        client.set_registered_model_alias(name, challenger_alias, decision.champion_version)
        decision.moved = {challenger_alias: decision.champion_version}
    if decision.verdict in ("promoted", "rejected"):
        client.set_model_version_tag(name, version, "promotion.verdict", decision.verdict)
        client.set_model_version_tag(name, version, "promotion.reason", decision.reason[:500])


def _log(experiment_id: str, decision: Decision, result: ABResult | None) -> str:
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=f"promote {decision.experiment}") as run:
        mlflow.set_tags({"promotion.verdict": decision.verdict,
                         "promotion.experiment": decision.experiment,
                         "promotion.champion_version": decision.champion_version or "",
                         "promotion.challenger_version": decision.challenger_version or "",
                         "promotion.metric": decision.metric,
                         "promotion.window_start": decision.window_start,
                         "promotion.reason": decision.reason[:500],
                         **{f"promotion.moved.{a}": v for a, v in decision.moved.items()}})
        finite = {f"promotion.{k}": v for k, v in decision.numbers.items()
                  if isinstance(v, int | float) and math.isfinite(v)}
        if finite:
            mlflow.log_metrics(finite)
        mlflow.log_dict({"decision": asdict(decision) | {"run_id": run.info.run_id},
                         "report": result.to_dict() if result is not None else None},
                        "promotion/decision.json")
        return run.info.run_id
