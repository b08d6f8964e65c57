"""The simulated worlds hold the hidden responses their documentation promises."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from socialrec.evaluation.uplift_worlds import WORLDS, campaign_log, make_world


def small(name: str):
    return make_world(replace(WORLDS[name], n_users=3000, n_items=30))


def test_world_1_uplift_is_proportional_to_propensity():
    w = small("1_proportional")
    p, _ = w.response(np.arange(w.n_users), 3)
    inside = p[:, 2] < 1  # probabilities are clipped at 1
    assert inside.mean() > 0.99
    assert np.allclose(p[inside, 1] - p[inside, 0], 0.6 * p[inside, 0])
    assert np.allclose(p[inside, 2] - p[inside, 0], 1.0 * p[inside, 0])


def test_world_2_sure_things_are_active_and_unmoved():
    w = small("2_sure_things")
    users = np.arange(w.n_users)
    p, _ = w.response(users, 3)
    sure = w.kind == "sure"
    active = np.diff(w.seen.indptr)
    assert sure.mean() == pytest.approx(0.8 * 0.0 + 0.2 * 0.7, abs=0.03)
    assert active[sure].mean() > 1.5 * active[~sure].mean()
    assert np.allclose(p[sure, 1], p[sure, 0]) and (p[sure, 0] >= 0.25).all()


def test_world_3_has_ten_percent_sleeping_dogs_who_push_hurts():
    w = small("3_sleeping_dogs")
    p, q = w.response(np.arange(w.n_users), 3)
    dogs = w.kind == "sleeping"
    assert dogs.mean() == pytest.approx(0.10, abs=0.002)
    assert (p[dogs, 1] < p[dogs, 0]).all() and (q[dogs, 1] == 0.3).all()
    assert (p[~dogs, 1] > p[~dogs, 0]).all()


def test_the_campaign_log_holds_out_and_explores_as_asked():
    w = small("2_sure_things")
    log = campaign_log(w, [1, 2], holdout=0.2, exploration=0.5, seed=0)
    assert len(log) == 2 * w.n_users
    assert (log.treatment == "control").mean() == pytest.approx(0.2, abs=0.02)
    assert not log.explored[log.treatment == "control"].any()
    explored = log[log.explored]
    assert set(explored.treatment) == {"push", "coupon"}
    assert (log.treatment == "coupon").sum() == (explored.treatment == "coupon").sum()
