"""New products and users without a retrain, in the service called in-process: a product the
model has not seen is pushed by its category, its seed items, then its folded-in feedback; a
campaign over several products ranks each user by their best one; a new user folds in from their
events, else gets friends made by shares; the per-replica state is the pure fold-in of the
events and a restarted service rebuilds it from the event store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from socialrec.features.events import Exposure
from socialrec.models.foldin import FoldIn, fold_in_items, fold_in_users
from socialrec.serving.campaigns import best_of
from socialrec.serving.foldin_state import ModelSignals
from socialrec.serving.schemas import (
    FeedbackRequest,
    PushRequest,
    RecommendRequest,
    ShareRequest,
)

NO_HOLDOUT = {"holdout": False}


def make_service(bundle_dir, url):
    from socialrec.serving.service import SocialRec

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOCIALREC_BUNDLE_DIR", str(bundle_dir))
        mp.setenv("SOCIALREC_EVENT_STORE", url)
        mp.delenv("SOCIALREC_EXPERIMENTS", raising=False)
        mp.setenv("SOCIALREC_POLL_SECONDS", "0")
        mp.setenv("SOCIALREC_FOLDIN_SECONDS", "0")  # tests poll by hand
        return SocialRec()


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('foldin') / 'events.db'}"


@pytest.fixture(scope="module")
def svc(bundle_dir, store_url):
    service = make_service(bundle_dir, store_url)
    yield service
    service.close()


def error(resp):
    return resp.status_code, json.loads(resp.body)


def post(svc, events):
    return svc.feedback(FeedbackRequest(events=events))


def test_state_is_the_pure_fold_in_of_its_events(bundle):
    """Whatever the order and repeats of arrival, the state's vectors are fold_in_items /
    fold_in_users of the distinct events."""
    rng = np.random.default_rng(0)
    kinds = ["click", "purchase", "view", "share", "join", "push_open", "unsubscribe"]
    users = [f"u{i}" for i in rng.integers(0, 600, 40)] + ["new-a", "new-b", "u598", "u599"]
    items = [f"i{j}" for j in rng.integers(0, 120, 10)] + ["launch-a", "launch-b", "launch-c"]
    events = pd.DataFrame({
        "event_id": [f"e{n}" for n in range(300)],
        "request_id": None,
        "ts": pd.Timestamp.now(tz="UTC"),
        "user_id": rng.choice(users, 300),
        "item_id": rng.choice(items, 300),
        "event": rng.choice(kinds, 300),
        "value": 0.0,
    })
    state = ModelSignals(bundle)
    arrivals = pd.concat([events, events.sample(120, random_state=1)]).sample(frac=1.0,
                                                                              random_state=2)
    for chunk in np.array_split(np.arange(len(arrivals)), 7):
        state.ingest(arrivals.iloc[chunk])
    want_items = fold_in_items(bundle, events)
    want_users = fold_in_users(bundle, events)
    assert want_items and want_users
    for item_id, vector in want_items.items():
        np.testing.assert_allclose(state.item_vector(item_id), vector, rtol=1e-5, atol=1e-6)
    for user_id, vector in want_users.items():
        np.testing.assert_allclose(state.user_vector(user_id), vector, rtol=1e-5, atol=1e-6)
    assert state.item_vector("i1") is None  # the model knows it


def test_a_new_product_by_category_then_seeds_then_its_feedback(svc, bundle):
    status, body = error(svc.push_targets(PushRequest(item_id="launch-1", k=5)))
    assert status == 404 and body["field"] == "item_id" and "launch-1" in body["error"]
    r = svc.push_targets(PushRequest(item_id="launch-1", item_category="c2", k=20,
                                     rules=NO_HOLDOUT))
    assert r.strategy.endswith("+item_category") and r.new_items == {"launch-1": "category"}
    members = np.flatnonzero(bundle.item_category == 2)
    category = FoldIn(bundle).mean_item(members)
    np.testing.assert_allclose(r.scores, bundle.user_emb[bundle.users.to_index(r.users)]
                               @ category, rtol=1e-4, atol=1e-5)
    r = svc.push_targets(PushRequest(item_id="launch-1", seed_items=["i3", "i4"],
                                     item_category="c2", k=20, rules=NO_HOLDOUT))
    assert r.strategy.endswith("+item_seeds") and r.new_items == {"launch-1": "seeds"}
    status, body = error(svc.push_targets(PushRequest(item_id="launch-1",
                                                      seed_items=["i3", "nope"])))
    assert status == 422 and body["field"] == "seed_items" and "nope" in body["error"]

    events = [{"event_id": "l1-a", "user_id": "u5", "item_id": "launch-1", "event": "purchase"},
              {"event_id": "l1-b", "user_id": "u6", "item_id": "launch-1", "event": "click"},
              {"event_id": "l1-c", "user_id": "u7", "item_id": "launch-1", "event": "view"}]
    post(svc, events)
    r = svc.push_targets(PushRequest(item_id="launch-1", k=30, rules=NO_HOLDOUT))
    assert r.strategy.endswith("+item_foldin") and r.new_items == {"launch-1": "foldin"}
    assert r.item_id == "launch-1" and "u5" not in r.users  # a buyer is not pushed it again
    fold = FoldIn(bundle)
    vector = fold_in_items(bundle, pd.DataFrame(events), fold)["launch-1"]
    np.testing.assert_allclose(r.scores, bundle.user_emb[bundle.users.to_index(r.users)]
                               @ vector, rtol=1e-4, atol=1e-5)
    # what the product is said to be counts as one more user (SOCIALREC_FOLDIN_PRIOR_USERS)
    r = svc.push_targets(PushRequest(item_id="launch-1", item_category="c2", k=30,
                                     rules=NO_HOLDOUT))
    assert r.strategy.endswith("+item_foldin+category")
    assert r.new_items == {"launch-1": "foldin+category"}
    shrunk = fold.with_prior(vector, 3, fold.mean_item(members), 1.0)
    np.testing.assert_allclose(r.scores, bundle.user_emb[bundle.users.to_index(r.users)]
                               @ shrunk, rtol=1e-4, atol=1e-5)
    assert svc.exposures.flush()
    rows = svc.store.exposures()
    assert set(rows[rows.request_id == r.request_id].item_id) == {"launch-1"}
    # share partners for it: its folded-in vector stands for it too
    share = svc.share_partners(ShareRequest(user_id="u10", item_id="launch-1", k=3))
    assert share.item_fallback == "foldin" and share.strategy.endswith("+item_foldin")


def test_a_campaign_over_several_products_ranks_each_user_by_their_best(svc, bundle):
    post(svc, [{"event_id": "l2-a", "user_id": "u9", "item_id": "launch-2", "event": "click"}])
    names = ["i1", "i2", "launch-2"]
    r = svc.push_targets(PushRequest(item_ids=names, k=60,
                                     rules={**NO_HOLDOUT, "respect_opt_out": True}))
    assert r.strategy == "exact+item_set" and r.item_id is None
    assert r.new_items == {"launch-2": "foldin"} and r.campaign_id.startswith("items:")
    vectors = np.vstack([bundle.item_emb[1], bundle.item_emb[2],
                         fold_in_items(bundle, pd.DataFrame([{"user_id": "u9",
                                                               "item_id": "launch-2",
                                                               "event": "click"}]))["launch-2"]])
    scores = bundle.user_emb @ vectors.T
    bought = np.zeros_like(scores, dtype=bool)
    bought[:, :2] = bundle.purchases[:, [1, 2]].toarray() > 0
    scores[bought] = -np.inf
    best = scores.max(axis=1)
    eligible = bundle.push_opt_in & np.isfinite(best)
    order = np.lexsort((np.arange(len(best)), -best))
    want = [u for u in order if eligible[u]][:60]
    assert r.users == bundle.users.to_ids(want)
    np.testing.assert_allclose(r.scores, best[want], rtol=1e-4, atol=1e-5)
    assert r.user_items == [names[j] for j in scores[want].argmax(axis=1)]
    assert len(set(r.users)) == len(r.users)  # one push per user

    r = svc.push_targets(PushRequest(category="c1", k=40, rules=NO_HOLDOUT))
    assert r.campaign_id == "category:c1" and r.strategy == "exact+item_set"
    in_c1 = set(bundle.items.to_ids(np.flatnonzero(bundle.item_category == 1)))
    assert set(r.user_items) <= in_c1
    status, body = error(svc.push_targets(PushRequest(category="no-such-category")))
    assert status == 404 and body["field"] == "category"
    status, body = error(svc.push_targets(PushRequest(item_ids=["i1", "ghost"])))
    assert status == 404 and body["field"] == "item_ids" and "ghost" in body["error"]


def test_best_of_leaves_out_what_each_user_bought():
    import scipy.sparse as sp

    users = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    items = np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    bought = sp.csr_matrix(np.array([[1, 0], [0, 0], [1, 1]], dtype=bool))
    scores, best = best_of(users, items, bought)
    assert scores[0] == 0.0 and best[0] == 1  # bought its best: the other one
    assert scores[1] == 1.0 and best[1] == 1
    assert np.isneginf(scores[2])  # bought them all


def test_a_new_user_folds_in_else_gets_friends_made_by_shares(svc, bundle):
    r = svc.recommend(RecommendRequest(user_id="newbie", k=5))
    assert r.strategy == "popular"
    share = svc.share_partners(ShareRequest(user_id="u10", item_id="i3", k=3))
    assert svc.exposures.flush()
    # the newcomer joins u10's share of a product the model does not know: a friendship, and no
    # event on a known product yet
    post(svc, [{"event_id": "nb-join", "request_id": share.request_id, "user_id": "newbie",
                "item_id": "launch-3", "event": "join"}])
    svc.foldins.poll()
    assert svc.foldins.friends("newbie") == {"u10"}
    r = svc.recommend(RecommendRequest(user_id="newbie", k=5))
    assert r.strategy == "friends_favourites"
    liked = set(bundle.items.to_ids(bundle.seen[10].indices))
    assert set(r.items) <= liked or len(liked) < 5

    post(svc, [{"event_id": "nb-1", "user_id": "newbie", "item_id": "i8", "event": "purchase"},
               {"event_id": "nb-2", "user_id": "newbie", "item_id": "i9", "event": "click"}])
    r = svc.recommend(RecommendRequest(user_id="newbie", k=5))
    assert r.strategy.endswith("+user_foldin") and not {"i8", "i9"} & set(r.items)
    vector = fold_in_users(bundle, pd.DataFrame([("newbie", "i8", "purchase"),
                                                 ("newbie", "i9", "click")],
                                                columns=["user_id", "item_id", "event"]))
    np.testing.assert_allclose(r.scores, bundle.item_emb[bundle.items.to_index(r.items)]
                               @ vector["newbie"], rtol=1e-4, atol=1e-5)


def test_a_restarted_service_rebuilds_the_state_from_the_store(svc, bundle_dir, store_url):
    before_push = svc.push_targets(PushRequest(item_id="launch-1", k=25, rules=NO_HOLDOUT))
    before_rec = svc.recommend(RecommendRequest(user_id="newbie", k=5))
    again = make_service(bundle_dir, store_url)
    try:
        after_push = again.push_targets(PushRequest(item_id="launch-1", k=25, rules=NO_HOLDOUT))
        assert after_push.strategy == before_push.strategy
        assert after_push.users == before_push.users
        np.testing.assert_allclose(after_push.scores, before_push.scores, rtol=1e-6)
        after_rec = again.recommend(RecommendRequest(user_id="newbie", k=5))
        assert (after_rec.items, after_rec.strategy) == (before_rec.items, before_rec.strategy)
        again.foldins.poll()  # friendships: joins resolved against the stored share exposures
        assert again.foldins.friends("u10") == {"newbie"}
        status = again.foldins.status()
        assert next(iter(status["models"].values()))["new_items"] >= 2
    finally:
        again.close()


def test_sharers_are_the_requesting_users_of_share_responses(tmp_path):
    from socialrec.features.events import EventStore

    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    with EventStore(f"sqlite:///{tmp_path / 'e.db'}") as store:
        store.log_exposures([
            Exposure("share-1", now, "share_partners", None, None, "v", "u1", "u1", "i1", r, 0.5)
            for r in (1, 2)] + [
            Exposure("push-1", now, "push_targets", None, None, "v", "c", "u2", "i1", 1, 0.5)])
        assert store.sharers(["share-1", "push-1", "unknown"]) == {"share-1": "u1"}
