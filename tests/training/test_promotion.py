"""``socialrec promote --experiment``: champion follows the A/B verdict, behind its guards (a
harmful challenger is stopped, an underpowered test waits, a sample-ratio mismatch decides
nothing), and every decision is an MLflow run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
import pytest
import yaml

from socialrec.evaluation.ab import analyze
from socialrec.evaluation.ab_attribution import unit_rows
from socialrec.features.events import EventStore, Exposure, Feedback
from socialrec.features.experiments import load_experiments
from socialrec.training import tracking
from socialrec.training.config import load_config
from socialrec.training.promotion import decide, detectable_effect, promote_by_experiment

NAME = "socialrec-promo"
T0 = datetime(2026, 1, 10, 8, tzinfo=UTC)
EXPERIMENTS = {"experiments": {"rec": {
    "endpoints": ["recommend"], "unit": "user", "salt": "promo-1",
    "variants": {"control": {"weight": 0.5, "alias": "champion"},
                 "challenger": {"weight": 0.5, "alias": "challenger"}}}}}


@pytest.fixture
def setup(tmp_path):
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENTS, sort_keys=False))
    cfg = load_config([], [
        "dataset.name=promo", f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
        f"tracking.artifact_root={tmp_path}/mlruns",
        f"serving.event_store=sqlite:///{tmp_path}/events.db",
        f"serving.experiments={path}", "promotion.min_detectable_effect=0.25"])
    client, experiment_id = tracking.setup(cfg)
    client.create_registered_model(NAME)
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment_id) as run:
            pass
        client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "challenger", "2")
    return cfg, client


def traffic(store_url: str, n_users: int, rates: dict[str, float], seed: int = 0,
            force_variant: str | None = None) -> None:
    """One /recommend exposure per user, routed as the service routes, and a purchase following
    it with the arm's rate (version 1 serves the control, version 2 the challenger)."""
    exp = load_experiments_from_dict()
    rng = np.random.default_rng(seed)
    exposures, feedback = [], []
    for n in range(n_users):
        user = f"u{n}"
        variant = force_variant or exp.assign(user)
        rid = f"r{n}"
        ts = T0 + timedelta(seconds=n)
        exposures.append(Exposure(rid, ts, "recommend", "rec", variant,
                                  f"{NAME}/{1 if variant == 'control' else 2}", user, user,
                                  "i1", 0, 1.0))
        if rng.random() < rates[variant]:
            feedback.append(Feedback(f"p{n}", rid, ts + timedelta(minutes=5), user, "i1",
                                     "purchase", 10.0))
    with EventStore(store_url) as store:
        store.log_exposures(exposures)
        store.log_feedback(feedback)


def load_experiments_from_dict():
    from socialrec.features.experiments import Experiments

    return Experiments.model_validate(EXPERIMENTS).experiments["rec"]


def aliases(client) -> tuple[str, str]:
    return (str(client.get_model_version_by_alias(NAME, "champion").version),
            str(client.get_model_version_by_alias(NAME, "challenger").version))


def test_a_harmful_challenger_is_stopped_and_never_becomes_champion(setup):
    cfg, client = setup
    traffic(cfg["serving"]["event_store"], 6000, {"control": 0.20, "challenger": 0.12})
    decision = promote_by_experiment(cfg, "rec", until=T0 + timedelta(hours=2))
    assert decision.verdict == "rejected", decision.reason
    assert "significant harm" in decision.reason
    assert decision.numbers["p_value"] < 0.05 and decision.numbers["abs_lift"] < 0
    assert aliases(client) == ("1", "1")  # its traffic stops: the arm serves the champion
    assert client.get_model_version(NAME, "2").tags["promotion.verdict"] == "rejected"
    run = client.get_run(decision.run_id)
    assert run.data.tags["promotion.verdict"] == "rejected"
    assert run.data.metrics["promotion.treatment"] < run.data.metrics["promotion.control"]
    # run again: nothing under test any more, nothing moves
    again = promote_by_experiment(cfg, "rec", until=T0 + timedelta(hours=2))
    assert again.verdict == "no_challenger" and not again.moved
    assert aliases(client) == ("1", "1")


def test_an_unset_challenger_alias_is_pointed_at_the_champion(setup):
    cfg, client = setup
    client.delete_registered_model_alias(NAME, "challenger")
    decision = promote_by_experiment(cfg, "rec")
    assert decision.verdict == "no_challenger" and decision.moved == {"challenger": "1"}
    assert aliases(client) == ("1", "1")


def test_a_challenger_with_enough_evidence_and_no_harm_is_promoted(setup):
    cfg, client = setup
    traffic(cfg["serving"]["event_store"], 6000, {"control": 0.20, "challenger": 0.21})
    decision = promote_by_experiment(cfg, "rec", until=T0 + timedelta(hours=2))
    assert decision.verdict == "promoted", decision.reason
    assert decision.numbers["detectable_effect"] <= 0.25
    assert aliases(client) == ("2", "2")
    assert decision.moved == {"champion": "2"}


def test_require_win_rejects_a_powered_test_without_a_win(setup):
    cfg, client = setup
    traffic(cfg["serving"]["event_store"], 6000, {"control": 0.20, "challenger": 0.20})
    cfg = cfg | {"promotion": {**cfg["promotion"], "require": "win"}}
    decision = promote_by_experiment(cfg, "rec", until=T0 + timedelta(hours=2))
    assert decision.verdict == "rejected" and "no significant win" in decision.reason
    assert aliases(client)[0] == "1"


def test_too_little_traffic_waits(setup):
    cfg, client = setup
    traffic(cfg["serving"]["event_store"], 300, {"control": 0.20, "challenger": 0.21})
    decision = promote_by_experiment(cfg, "rec", until=T0 + timedelta(hours=2))
    assert decision.verdict == "wait" and "not enough evidence" in decision.reason
    assert aliases(client) == ("1", "2")


def test_no_traffic_for_the_challenger_yet_waits(setup):
    cfg, _ = setup
    traffic(cfg["serving"]["event_store"], 50, {"control": 0.2, "challenger": 0.2},
            force_variant="control")
    decision = promote_by_experiment(cfg, "rec")
    assert decision.verdict == "wait" and "has not served" in decision.reason


def test_a_sample_ratio_mismatch_decides_nothing():
    rng = np.random.default_rng(1)
    import pandas as pd

    n_c, n_t = 4000, 3000  # configured 50/50
    ex = pd.DataFrame({"request_id": [f"r{i}" for i in range(n_c + n_t)],
                       "ts": pd.Timestamp(T0), "endpoint": "recommend", "experiment": "rec",
                       "variant": ["control"] * n_c + ["challenger"] * n_t,
                       "model_version": "x", "unit_id": [f"u{i}" for i in range(n_c + n_t)],
                       "item_id": "i1", "rank": 0, "score": 1.0})
    ex["user_id"] = ex["unit_id"]
    buy = rng.random(n_c + n_t) < 0.2
    fb = pd.DataFrame({"event_id": [f"p{i}" for i in np.flatnonzero(buy)],
                       "request_id": ex.request_id[buy].to_numpy(),
                       "ts": pd.Timestamp(T0) + pd.Timedelta(minutes=1),
                       "user_id": ex.user_id[buy].to_numpy(), "item_id": "i1",
                       "event": "purchase", "value": 1.0})
    from socialrec.evaluation.ab import ExperimentArms

    result = analyze(unit_rows(ex, fb), ExperimentArms("rec", {"control": 0.5,
                                                               "challenger": 0.5}))
    settings = load_config([], ["dataset.name=x"])["promotion"]
    verdict, reason, numbers = decide(result, "challenger", settings)
    assert verdict == "refused_srm" and "sample-ratio mismatch" in reason
    assert numbers["srm_p_value"] < 0.001


def test_detectable_effect():
    # two arms of 4000 at 20 %: se = sqrt(2 * 0.16 / 4000); (1.96 + 0.84) * se / 0.2
    se = (2 * 0.16 / 4000) ** 0.5
    assert detectable_effect(se, 0.2, 0.05, 0.8) == pytest.approx(2.8016 * se / 0.2, rel=1e-3)
    assert detectable_effect(float("nan"), 0.2, 0.05, 0.8) == float("inf")
    assert detectable_effect(0.01, 0.0, 0.05, 0.8) == float("inf")


def test_the_experiment_must_route_the_challenger(setup):
    cfg, _ = setup
    from socialrec.training.promotion import PromotionError

    with pytest.raises(PromotionError, match="no experiment 'nope'"):
        promote_by_experiment(cfg, "nope")
    assert load_experiments(cfg["serving"]["experiments"]).experiments["rec"].unit == "user"
