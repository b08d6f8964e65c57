"""The service class called in-process (BentoML instantiates it like any class)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from socialrec.features.events import EventStore
from socialrec.features.experiments import in_holdout, load_experiments
from socialrec.serving.schemas import (
    FeedbackRequest,
    PushRequest,
    RecommendRequest,
    ShareRequest,
)


@pytest.fixture(scope="module")
def svc(bundle_dir, experiments_file, tmp_path_factory):
    from socialrec.serving.service import SocialRec

    url = f"sqlite:///{tmp_path_factory.mktemp('svc') / 'events.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOCIALREC_BUNDLE_DIR", str(bundle_dir))
        mp.setenv("SOCIALREC_EVENT_STORE", url)
        mp.setenv("SOCIALREC_EXPERIMENTS", str(experiments_file))
        mp.setenv("SOCIALREC_POLL_SECONDS", "0")
        service = SocialRec()
    yield service
    service.close()


def error(resp):
    """(status, body) of an error response."""
    return resp.status_code, json.loads(resp.body)


def test_push_applies_rules_and_routes_by_campaign(svc, bundle, experiments_file):
    exp = load_experiments(experiments_file).experiments["push"]
    for campaign in ("spring", "summer", "autumn", "winter"):
        r = svc.push_targets(PushRequest(item_id="i7", campaign_id=campaign, k=200))
        users = bundle.users.to_index(r.users)
        assert len(r.users) == 200 and np.all(np.diff(r.scores) <= 0)
        assert not np.isin(users, bundle.purchases[:, [7]].nonzero()[0]).any()
        assert bundle.push_opt_in[users].all()
        assert not in_holdout("push-test", 0.1, campaign, r.users).any()
        assert r.removed["holdout"] > 0 and r.removed["opt_out"] > 0
        assert r.variant == exp.assign(campaign) and r.experiment == "push"
        assert r.model_version.startswith("dir:") and len(r.request_id) == 36


def test_push_errors_name_the_field(svc, bundle):
    status, body = error(svc.push_targets(PushRequest(item_id="no-such-item", k=5)))
    assert status == 404 and body["field"] == "item_id" and "no-such-item" in body["error"]
    status, body = error(svc.push_targets(PushRequest(item_id="i1", k=len(bundle.users) + 1)))
    assert status == 422 and body["field"] == "k" and str(len(bundle.users)) in body["expected"]


def test_frequency_cap_sees_the_previous_push(svc):
    rules = {"frequency_cap": {"max_pushes": 1, "window_hours": 1}, "holdout": False}
    first = svc.push_targets(PushRequest(item_id="i11", campaign_id="cap-1", k=30, rules=rules))
    second = svc.push_targets(PushRequest(item_id="i11", campaign_id="cap-2", k=30, rules=rules))
    assert not set(first.users) & set(second.users)
    assert second.removed["frequency_cap"] >= 30


def test_served_lists_are_logged_as_exposures(svc):
    r = svc.push_targets(PushRequest(item_id="i2", campaign_id="logged", k=12))
    svc.exposures.flush()
    rows = svc.store.exposures()
    mine = rows[rows.request_id == r.request_id].sort_values("rank")
    assert mine.user_id.tolist() == r.users
    assert set(mine.variant) == {r.variant} and set(mine.model_version) == {r.model_version}
    assert set(mine.unit_id) == {"logged"} and set(mine.endpoint) == {"push_targets"}


def test_share_partners_are_friends_with_parts(svc, bundle):
    r = svc.share_partners(ShareRequest(user_id="u10", item_id="i3", k=5))
    friends = set(bundle.users.to_ids(bundle.social[10].indices))
    assert r.partners and {p.user_id for p in r.partners} <= friends
    assert [p.score for p in r.partners] == sorted((p.score for p in r.partners), reverse=True)
    assert set(r.partners[0].parts) >= {"affinity", "tie_strength", "past_joins"}
    assert r.item_fallback is None and r.reason is None


def test_share_fallbacks_and_lonely_sharer(svc, bundle):
    r = svc.share_partners(ShareRequest(user_id="u10", item_id="new-item", category="c1", k=3))
    assert r.item_fallback == "category" and r.strategy.endswith("+item_category")
    r = svc.share_partners(ShareRequest(user_id="u10", item_id="new-item", k=3))
    assert r.item_fallback == "popularity" and len(r.partners) == 3
    lonely = bundle.users.to_ids([len(bundle.users) - 1])[0]
    r = svc.share_partners(ShareRequest(user_id=lonely, item_id="i3", k=3, hops=2))
    assert r.partners == [] and "no friends" in r.reason
    status, body = error(svc.share_partners(ShareRequest(user_id="nobody", item_id="i3")))
    assert status == 404 and body["field"] == "user_id"


def test_recommend_strategies(svc, bundle):
    r = svc.recommend(RecommendRequest(user_id="stranger", k=4))
    assert r.strategy == "popular" and len(r.items) == 4
    cold = next(u for u in range(len(bundle.users))
                if bundle.seen[u].nnz == 0 and bundle.social[u].nnz > 0)
    r = svc.recommend(RecommendRequest(user_id=f"u{cold}", k=4))
    assert r.strategy == "friends_favourites"
    r = svc.recommend(RecommendRequest(user_id="u3", k=6))
    assert r.strategy in ("faiss_hnsw", "exact")
    assert not set(r.items) & set(bundle.items.to_ids(bundle.seen[3].indices))
    status, body = error(svc.recommend(RecommendRequest(user_id="u3", k=10_000)))
    assert status == 422 and body["field"] == "k"


def test_feedback_is_idempotent_and_committed(svc):
    events = [{"event_id": f"svc-{i}", "user_id": "u1", "item_id": "i1", "event": "click"}
              for i in range(5)]
    r = svc.feedback(FeedbackRequest(events=events))
    assert (r.accepted, r.duplicates) == (5, 0)
    r = svc.feedback(FeedbackRequest(events=[*events[:2], {**events[0], "event_id": "svc-new"}]))
    assert (r.accepted, r.duplicates) == (1, 2)
    # committed: a separate connection sees them
    stored = EventStore(svc.settings.event_store).feedback()
    assert {f"svc-{i}" for i in range(5)} | {"svc-new"} <= set(stored.event_id)


def test_service_never_imports_torch(bundle_dir, tmp_path):
    code = ("import sys; import socialrec.serving.service, socialrec.serving.loader, mlflow; "
            "from mlflow import MlflowClient; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "SOCIALREC_BUNDLE_DIR": str(bundle_dir)})
    assert out.stdout.strip() == "False"


def test_held_out_users_are_logged_where_they_would_have_ranked(svc):
    r = svc.push_targets(PushRequest(item_id="i5", campaign_id="held", k=300))
    svc.exposures.flush()
    rows = svc.store.exposures()
    mine = rows[rows.request_id == r.request_id]
    held = mine[mine.variant == "holdout"]
    assert len(held) == r.removed["holdout"] > 0
    assert in_holdout("push-test", 0.1, "held", held.user_id.tolist()).all()
    assert not set(held.user_id) & set(r.users)
    for _, row in held.iterrows():  # its rank in the list the holdout did not touch
        above = (np.asarray(r.scores) > row.score).sum() + (held.score > row.score).sum()
        assert row["rank"] == above + 1
    # held-out rows are not pushes: the frequency cap does not count them
    counts = svc.store.push_counts(held.user_id.tolist()[:5], since=held.ts.min())
    assert all(n == 0 for n in counts.values())


def test_share_exposures_name_the_sharer(svc):
    r = svc.share_partners(ShareRequest(user_id="u20", item_id="i4", k=4))
    svc.exposures.flush()
    rows = svc.store.exposures()
    mine = rows[rows.request_id == r.request_id].sort_values("rank")
    assert set(mine.user_id) == {"u20"} and set(mine.unit_id) == {"u20"}
    assert mine.score.tolist() == pytest.approx([p.score for p in r.partners])
