"""/push_targets with an objective and a budget, against an uplift model with a planted answer:
push helps exactly the users the item suits (affinity > 0), a coupon hurts everyone."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pytest
from pydantic import ValidationError

from socialrec.features.events import EventStore
from socialrec.models.uplift import FORMAT, UpliftModel
from socialrec.models.uplift_features import FeatureSource, feature_names, uplift_features
from socialrec.serving.schemas import PushRequest
from tests.support.bundles import random_bundle

ITEM = 7


def _booster(x: np.ndarray, p: np.ndarray, seed: int) -> lgb.Booster:
    y = (np.random.default_rng(seed).random(len(p)) < p).astype(int)
    return lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4, "seed": seed},
                     lgb.Dataset(x, y), num_boost_round=40)


@pytest.fixture(scope="module")
def uplift_bundle_dir(tmp_path_factory):
    bundle = random_bundle(n_users=800, n_items=60, dim=8, seed=5, shares=False)
    src = FeatureSource(bundle.user_emb, bundle.item_emb, bundle.seen, bundle.purchases,
                        bundle.social)
    users = np.tile(np.arange(len(bundle.users)), 8)
    projection = np.zeros((0, 0), dtype=np.float32)
    x = uplift_features(src, users, ITEM, np.zeros(len(users)), projection)
    suits = x[:, 0] > 0
    models = {
        "conversion": {"control": _booster(x, np.full(len(x), 0.05), 1),
                       "push": _booster(x, np.where(suits, 0.6, 0.05), 2),
                       "coupon": _booster(x, np.full(len(x), 0.01), 3)},
        "unsubscribe": {"control": 0.0, "push": 0.0, "coupon": 0.0},
    }
    manifest = {"format": FORMAT, "features": feature_names(0), "n_components": 0,
                "projection": [], "margin_rate": 0.5, "unsubscribe_cost": 1.0,
                "mean_price": 10.0, "push_window_days": 30, "exploration": 0.0,
                "treatments": [{"name": "push", "coupon": 0.0, "send_cost": 0.1},
                               {"name": "coupon", "coupon": 2.0, "send_cost": 0.1}]}
    bundle.uplift = UpliftModel.from_arms(manifest, models)
    path = tmp_path_factory.mktemp("uplift") / "bundle"
    bundle.save(path)
    return path, bundle, suits[: len(bundle.users)]


@pytest.fixture(scope="module")
def svc(uplift_bundle_dir, tmp_path_factory):
    from socialrec.serving.service import SocialRec

    url = f"sqlite:///{tmp_path_factory.mktemp('svc') / 'events.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOCIALREC_BUNDLE_DIR", str(uplift_bundle_dir[0]))
        mp.setenv("SOCIALREC_EVENT_STORE", url)
        mp.delenv("SOCIALREC_EXPERIMENTS", raising=False)
        mp.setenv("SOCIALREC_POLL_SECONDS", "0")
        service = SocialRec()
    yield service
    service.close()


def test_uplift_pushes_only_users_a_push_helps_and_never_the_hurting_coupon(
        svc, uplift_bundle_dir):
    _, bundle, suits = uplift_bundle_dir
    r = svc.push_targets(PushRequest(item_id=f"i{ITEM}", objective="uplift",
                                     budget={"pushes": 40}))
    users = bundle.users.to_index(r.users)
    assert r.objective == "uplift" and len(r.users) == 40
    assert suits[users].all()  # the planted persuadables
    assert set(r.treatments) == {"push"}  # the coupon lowers the chance to buy: never given
    assert all(e > 0.2 for e in r.effects) and len(r.reasons) == 40
    assert r.reasons[0].startswith("push: expected +")
    assert r.spent == pytest.approx(40.0)


def test_a_money_budget_counts_expected_costs_and_is_logged_with_treatments(svc):
    r = svc.push_targets(PushRequest(item_id=f"i{ITEM}", campaign_id="money",
                                     objective="margin", budget={"money": 2.05}))
    assert len(r.users) == 20 and r.spent <= 2.05  # 20 pushes at 0.1
    assert svc.exposures.flush(600)  # the writer process may be slow to start on a busy machine
    rows = EventStore(svc.settings.event_store).exposures()
    mine = rows[rows.unit_id == "money"]
    assert set(mine.treatment) == {"push"} and not mine.explored.any()


def test_bad_budgets_and_treatments_are_refused_naming_the_field(svc):
    resp = svc.push_targets(PushRequest(item_id=f"i{ITEM}", objective="uplift",
                                        budget={"money": 0.05}))
    body = json.loads(resp.body)
    assert resp.status_code == 422 and body["field"] == "budget.money"
    resp = svc.push_targets(PushRequest(item_id=f"i{ITEM}", objective="uplift",
                                        budget={"pushes": 5}, treatments=["sms"]))
    assert resp.status_code == 422 and json.loads(resp.body)["field"] == "treatments"
    with pytest.raises(ValidationError, match=r"budget\.pushes"):
        PushRequest(item_id="i1", budget={"pushes": -1})
    with pytest.raises(ValidationError, match=r"budget\.money"):
        PushRequest(item_id="i1", budget={"money": -5.0})


def test_without_an_uplift_model_propensity_answers_and_says_so(tmp_path):
    from socialrec.serving.service import SocialRec

    plain = random_bundle(n_users=300, n_items=40, dim=8, seed=1, shares=False)
    plain.save(tmp_path / "b")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOCIALREC_BUNDLE_DIR", str(tmp_path / "b"))
        mp.setenv("SOCIALREC_EVENT_STORE", f"sqlite:///{tmp_path / 'e.db'}")
        mp.delenv("SOCIALREC_EXPERIMENTS", raising=False)
        mp.setenv("SOCIALREC_POLL_SECONDS", "0")
        service = SocialRec()
    try:
        r = service.push_targets(PushRequest(item_id="i3", objective="uplift",
                                             budget={"pushes": 10}))
        assert r.objective == "propensity" and "no" in r.objective_note
        assert len(r.users) == 10 and np.all(np.diff(r.scores) <= 0)
    finally:
        service.close()


def test_the_push_command_writes_the_same_allocation(uplift_bundle_dir, tmp_path, monkeypatch):
    import pandas as pd

    from socialrec.cli import _push_with_budget
    from socialrec.serving.schemas import PushRules
    from socialrec.training.config import load_config

    _, bundle, suits = uplift_bundle_dir
    monkeypatch.setenv("SOCIALREC_EVENT_STORE", f"sqlite:///{tmp_path / 'e.db'}")
    out = tmp_path / "push.parquet"
    _push_with_budget(load_config([]), bundle, "v1", f"i{ITEM}", "uplift", 30, "pushes",
                      PushRules(holdout=False), out)
    frame = pd.read_parquet(out)
    assert len(frame) == 30 and set(frame.treatment) == {"push"}
    assert suits[bundle.users.to_index(frame.user_id)].all()
    assert frame.reason.str.startswith("push: expected").all()


def test_a_campaign_over_several_or_new_products_is_allocated_by_uplift(svc):
    r = svc.push_targets(PushRequest(item_ids=[f"i{ITEM}", "i8"], campaign_id="set",
                                     objective="uplift", budget={"pushes": 30}))
    assert r.objective == "uplift" and len(r.users) == 30 and r.item_id is None
    assert set(r.user_items) <= {f"i{ITEM}", "i8"} and len(r.user_items) == 30
    assert all(e > 0 for e in r.effects)  # the planted model: only users a push helps
    assert svc.exposures.flush(600)
    rows = EventStore(svc.settings.event_store).exposures()
    mine = rows[rows.unit_id == "set"].set_index("user_id")
    assert mine.item_id.loc[r.users].tolist() == r.user_items  # each user's own product
    new = svc.push_targets(PushRequest(item_id="brand-new", item_category="c0",
                                       objective="uplift", budget={"pushes": 10}))
    assert new.objective == "uplift" and new.new_items == {"brand-new": "category"}
    assert len(new.users) == 10 and new.item_id == "brand-new"
