"""Uplift learning: a planted effect is recovered, the saved model scores as causalml does (T-, X-,
R- and DR-learners), the learner is chosen on held-out campaigns, and data that cannot support a
model is refused with counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from socialrec.models.uplift import UpliftModel
from socialrec.training.uplift import (
    NotEnoughEvidence,
    campaign_rows,
    check_rows,
    fit_uplift,
    select_learner,
    treated_shares,
)
from socialrec.training.uplift_config import LightGBMConfig, TreatmentConfig, UpliftConfig

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def config(**over) -> UpliftConfig:
    base = dict(treatments={"push": TreatmentConfig(send_cost=0.1),
                            "coupon": TreatmentConfig(coupon=2.0, send_cost=0.1)},
                exploration=0.1, window_days=7, push_window_days=30, min_control_users=50,
                min_treated_users=50, min_campaign_control=1, margin_rate=0.5,
                unsubscribe_cost=1.0, n_components=0, validation_share=0.2,
                lightgbm=LightGBMConfig(n_estimators=60, min_child_samples=50, num_leaves=4))
    return UpliftConfig(**(base | over))


@pytest.fixture(scope="module")
def planted():
    """Push adds 0.3 to the chance to buy where x0 > 0, a coupon 0.5 where x1 > 0."""
    rng = np.random.default_rng(0)
    n = 12_000
    x = rng.standard_normal((n, 7)).astype(np.float32)
    treatment = rng.choice(["control", "push", "coupon"], n, p=[0.34, 0.33, 0.33])
    p = 0.1 + np.where((treatment == "push") & (x[:, 0] > 0), 0.3, 0.0) \
        + np.where((treatment == "coupon") & (x[:, 1] > 0), 0.5, 0.0)
    rows = pd.DataFrame({"treatment": treatment,
                         "conversion": (rng.random(n) < p).astype(int),
                         "revenue": 10.0,
                         "unsubscribe": (rng.random(n) < np.where(treatment == "control",
                                                                   0.01, 0.05)).astype(int)})
    model, learners = fit_uplift(x, rows, config(), np.zeros((0, 0), dtype=np.float32))
    return x, model, learners


def test_the_learner_recovers_a_planted_effect(planted):
    x, model, _ = planted
    tau = model.predict_effects(x)
    push, coupon = model.treatment_names.index("push"), model.treatment_names.index("coupon")
    assert tau[x[:, 0] > 0, push].mean() == pytest.approx(0.3, abs=0.06)
    assert tau[x[:, 0] <= 0, push].mean() == pytest.approx(0.0, abs=0.06)
    assert tau[x[:, 1] > 0, coupon].mean() == pytest.approx(0.5, abs=0.06)
    assert tau[x[:, 1] <= 0, coupon].mean() == pytest.approx(0.0, abs=0.06)


def test_the_saved_model_predicts_what_causalml_predicts(planted, tmp_path):
    x, model, learners = planted
    library = learners["conversion"].predict(x[:500])
    order = [list(learners["conversion"].t_groups).index(t) for t in model.treatment_names]
    loaded = UpliftModel.load(model.save(tmp_path / "uplift"))
    assert np.allclose(loaded.predict_effects(x[:500]), library[:, order], atol=1e-9)
    assert sorted(p.name for p in (tmp_path / "uplift").iterdir()) == [
        "conversion_control.txt", "conversion_coupon.txt", "conversion_push.txt",
        "manifest.json", "unsubscribe_control.txt", "unsubscribe_coupon.txt",
        "unsubscribe_push.txt"]


def test_margin_and_costs_follow_their_definitions(planted):
    x, model, _ = planted
    e = model.effects(x[:50], price=20.0)
    m = 20.0 * 0.5
    coupons = np.array([t.coupon for t in model.treatments])
    expected = (e.p_treated * (m - coupons) - (e.p_control * m)[:, None]
                - 1.0 * e.unsubscribe)
    assert np.allclose(e.margin, expected)
    costs = model.costs(e.p_treated, money=True)
    assert np.allclose(costs, 0.1 + coupons * e.p_treated)
    assert (model.costs(e.p_treated, money=False) == 1).all()


SMALL = LightGBMConfig(n_estimators=60, min_child_samples=50, num_leaves=4)


def _planted_campaigns(n: int, seed: int, campaigns: int = 5) -> tuple[np.ndarray, pd.DataFrame]:
    """As ``planted``, over ``campaigns`` campaigns: push +0.3 where x0 > 0, coupon +0.5 where
    x1 > 0."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 7)).astype(np.float32)
    treatment = rng.choice(["control", "push", "coupon"], n, p=[0.3, 0.5, 0.2])
    p = 0.1 + np.where((treatment == "push") & (x[:, 0] > 0), 0.3, 0.0) \
        + np.where((treatment == "coupon") & (x[:, 1] > 0), 0.5, 0.0)
    rows = pd.DataFrame({"campaign": rng.integers(0, campaigns, n), "treatment": treatment,
                         "conversion": (rng.random(n) < p).astype(int), "revenue": 10.0,
                         "unsubscribe": (rng.random(n) < 0.03).astype(int)})
    return x, rows


@pytest.mark.parametrize("kind", ["x", "r", "dr"])
def test_each_learner_recovers_the_effect_and_scores_as_causalml_does(kind, tmp_path):
    x, rows = _planted_campaigns(6000, seed=1)
    cfg = config(effect_lightgbm=SMALL)
    model, learners = fit_uplift(x, rows, cfg, np.zeros((0, 0), dtype=np.float32), learner=kind)
    library = learners["conversion"]
    if kind == "x":  # the X-learner weighs its two effect models by the treated share
        shares = treated_shares(rows.treatment.to_numpy(), list(cfg.treatments))
        expected = library.predict(x[:300], p={t: np.full(300, v) for t, v in shares.items()})
    else:
        expected = library.predict(x[:300])
    order = [list(library.t_groups).index(t) for t in model.treatment_names]
    loaded = UpliftModel.load(model.save(tmp_path / "uplift"))
    assert loaded.manifest["learner"] == kind
    assert np.allclose(loaded.predict_effects(x[:300]), np.asarray(expected)[:, order],
                       atol=1e-9)
    tau = loaded.predict_effects(x)
    push, coupon = model.treatment_names.index("push"), model.treatment_names.index("coupon")
    assert tau[x[:, 0] > 0, push].mean() - tau[x[:, 0] <= 0, push].mean() > 0.15
    assert tau[x[:, 1] > 0, coupon].mean() - tau[x[:, 1] <= 0, coupon].mean() > 0.25
    p0, pt = loaded.probabilities("conversion", x[:300])
    assert ((pt >= 0) & (pt <= 1)).all() and p0.mean() == pytest.approx(0.1, abs=0.04)


def test_auto_chooses_the_learner_by_qini_on_held_out_campaigns():
    x, rows = _planted_campaigns(8000, seed=2)
    cfg = config(learner="auto", candidates=["t", "x"], validation_share=0.4,
                 effect_lightgbm=SMALL)
    selection = select_learner(x, rows, cfg, np.zeros((0, 0), dtype=np.float32))
    assert len(selection.validation_campaigns) == 2
    assert set(selection.qini) == {"t", "x"}
    assert all(set(q) == {"push", "coupon"} for q in selection.qini.values())
    assert all(v > 0.2 for q in selection.qini.values() for v in q.values())  # planted: found
    assert selection.learner == max(selection.qini, key=selection.score)
    fixed = select_learner(x, rows, config(learner="t", effect_lightgbm=SMALL),
                           np.zeros((0, 0), dtype=np.float32))
    assert fixed.learner == "t" and set(fixed.qini) == {"t"}


def _events(n_campaigns: int = 2, users: int = 120, held_every: int = 4):
    exposures, feedback = [], []
    for c in range(n_campaigns):
        ts = T0 + timedelta(days=c)
        for u in range(users):
            held = u % held_every == 0
            exposures.append({"request_id": f"r{c}", "ts": ts, "endpoint": "push_targets",
                              "experiment": "e", "variant": "holdout" if held else "a",
                              "model_version": "1", "unit_id": f"camp{c}",
                              "user_id": f"u{u}", "item_id": f"i{c}", "rank": u, "score": 1.0,
                              "treatment": None if held else ("coupon" if u % 2 else "push"),
                              "explored": False})
            if u % 3 == 0:
                feedback.append({"user_id": f"u{u}", "item_id": f"i{c}", "event": "purchase",
                                 "value": 5.0, "ts": ts + timedelta(days=1)})
            if u % 5 == 0:  # a purchase after the window does not count
                feedback.append({"user_id": f"u{u}", "item_id": f"i{c}", "event": "purchase",
                                 "value": 5.0, "ts": ts + timedelta(days=9)})
    return pd.DataFrame(exposures), pd.DataFrame(feedback)


def test_campaign_rows_take_outcomes_in_the_window():
    exposures, feedback = _events()
    rows = campaign_rows(exposures, feedback, timedelta(days=7), timedelta(days=30))
    assert len(rows) == 240
    assert set(rows.treatment) == {"control", "push", "coupon"}
    assert (rows.treatment == "control").sum() == 60
    u0 = rows[(rows.user_id == "u15") & (rows.campaign == "camp0")].iloc[0]
    assert u0.conversion == 1 and u0.revenue == 5.0  # the day-9 purchase is outside
    u5 = rows[(rows.user_id == "u5") & (rows.campaign == "camp0")].iloc[0]
    assert u5.conversion == 0
    assert rows[rows.campaign == "camp1"].push_count.max() == 1  # pushed once, the day before


def test_data_that_cannot_support_a_model_is_refused_with_counts():
    exposures, feedback = _events()
    rows = campaign_rows(exposures, feedback, timedelta(days=7), timedelta(days=30))
    ok, evidence = check_rows(rows, config(min_control_users=50), T0 + timedelta(days=30))
    assert len(ok) == 240 and evidence.per_treatment["control"] == 60
    with pytest.raises(NotEnoughEvidence, match=r"60 control .* fewer than .* 100"):
        check_rows(rows, config(min_control_users=100), T0 + timedelta(days=30))
    no_holdout = rows[~((rows.campaign == "camp1") & (rows.treatment == "control"))]
    with pytest.raises(NotEnoughEvidence, match=r"1 campaign\(s\) without a holdout.*camp1 "
                                                r"\(90 users, 0 held out\)"):
        check_rows(no_holdout, config(min_control_users=10), T0 + timedelta(days=30))
    # a day after the second campaign its window is open: its rows are left out, and counted
    with pytest.raises(NotEnoughEvidence, match="120 rows still inside their outcome window"):
        check_rows(rows, config(min_control_users=31), T0 + timedelta(days=7.5))
