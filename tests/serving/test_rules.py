"""Each business rule against the bundle / event store it reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from socialrec.features.events import EventStore, Exposure
from socialrec.features.experiments import in_holdout
from socialrec.serving.rules import CampaignHoldout, ExcludeBuyers, FrequencyCap, OptOut

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_exclude_buyers_removes_exactly_the_buyers(bundle):
    item = int(np.argmax(np.asarray(bundle.purchases.sum(axis=0)).ravel()))
    truth = bundle.purchases[:, item].toarray().ravel() > 0
    users = np.arange(len(bundle.users))
    assert truth.sum() > 3
    assert np.array_equal(ExcludeBuyers(bundle, item).blocked(users), truth)
    assert np.array_equal(ExcludeBuyers(bundle, item).blocked(users[::-7]), truth[::-7])


def test_opt_out_removes_users_without_opt_in(bundle):
    users = np.arange(len(bundle.users))
    blocked = OptOut(bundle).blocked(users)
    assert blocked.any() and not blocked.all()
    assert np.array_equal(blocked, ~bundle.push_opt_in)


def test_frequency_cap_counts_pushes_in_the_window(bundle, tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")

    def push(user: str, hours_ago: float, endpoint: str = "push_targets") -> Exposure:
        return Exposure("r", NOW - timedelta(hours=hours_ago), endpoint, None, None, "v1", "c",
                        user, "i1", 1, 1.0)

    store.log_exposures([
        push("u1", 1), push("u1", 2),  # two recent pushes
        push("u2", 3),  # one recent push
        push("u3", 30),  # outside a 24 h window
        push("u4", 1, endpoint="recommend"),  # not a push
    ])
    users = bundle.users.to_index(["u1", "u2", "u3", "u4", "u5"])
    cap2 = FrequencyCap(bundle, store, max_pushes=2, window_hours=24, now=NOW)
    cap1 = FrequencyCap(bundle, store, max_pushes=1, window_hours=24, now=NOW)
    wide = FrequencyCap(bundle, store, max_pushes=1, window_hours=48, now=NOW)
    assert cap2.blocked(users).tolist() == [True, False, False, False, False]
    assert cap1.blocked(users).tolist() == [True, True, False, False, False]
    assert wide.blocked(users).tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match="max_pushes"):
        FrequencyCap(bundle, store, max_pushes=0, window_hours=24)
    store.close()


def test_campaign_holdout_is_the_ab_holdout(bundle):
    users = np.arange(len(bundle.users))
    rule = CampaignHoldout(bundle, salt="exp", share=0.2, campaign="c1")
    blocked = rule.blocked(users)
    assert np.array_equal(blocked, in_holdout("exp", 0.2, "c1", bundle.users.ids))
    assert 0.12 < blocked.mean() < 0.28
    other = CampaignHoldout(bundle, salt="exp", share=0.2, campaign="c2").blocked(users)
    assert not np.array_equal(blocked, other)
    assert not CampaignHoldout(bundle, "exp", 0.0, "c1").blocked(users).any()
    with pytest.raises(ValueError, match="share"):
        CampaignHoldout(bundle, "exp", 1.0, "c1")


def test_opt_out_honours_unsubscribe_feedback(bundle, tmp_path):
    from socialrec.features.events import Feedback

    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")
    users = np.arange(len(bundle.users))
    opted_in = np.flatnonzero(bundle.push_opt_in)[:3]
    before = OptOut(bundle, store).blocked(users)
    assert np.array_equal(before, ~bundle.push_opt_in)  # nobody unsubscribed yet
    ids = bundle.users.to_ids(opted_in)
    store.log_feedback([Feedback(f"e{i}", None, NOW, u, None, "unsubscribe")
                        for i, u in enumerate(ids[:2])]
                       + [Feedback("e9", None, NOW, ids[2], None, "click")])
    after = OptOut(bundle, store).blocked(users)
    expected = ~bundle.push_opt_in
    expected[opted_in[:2]] = True  # the two who unsubscribed, not the one who clicked
    assert np.array_equal(after, expected)
    store.close()
