"""The budget allocation against optima computed by hand and by enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from socialrec.models.allocation import NONE, allocate


def test_a_hand_computed_optimum():
    # Treatments: push (cost 1) and coupon (cost 3). Budget 5.
    # user 0: push worth 0.5, coupon 0.9 -> the upgrade push->coupon gains 0.4 for 2 (ratio 0.2)
    # user 1: push worth 0.3, coupon 1.2 -> coupon lies above the push: hull (0,0)->(3,1.2), 0.4
    # user 2: push worth 0.2, coupon 0.1 -> push only (ratio 0.2)
    # user 3: everything hurts (a sleeping dog): never treated
    # Best: user 0 push (1, 0.5), user 1 coupon (3, 1.2), and 1 left for user 2's push (0.2):
    # value 1.9 at cost 5; any other choice within 5 is worth less (e.g. user 0 coupon + user 2
    # push + 1 unused = 1.1; user 0 and 2 push + user 1 coupon = 1.9 at 5).
    value = np.array([[0.5, 0.9], [0.3, 1.2], [0.2, 0.1], [-0.1, -0.3]])
    cost = np.array([[1.0, 3.0]] * 4)
    a = allocate(value, cost, 5.0)
    assert a.choice.tolist() == [0, 1, 0, NONE]
    assert a.spent == pytest.approx(5.0) and a.value == pytest.approx(1.9)


def test_a_count_budget_takes_the_best_treatment_of_the_best_users():
    value = np.array([[0.1, 0.3], [0.5, 0.2], [0.05, 0.01], [0.0, -0.2]])
    a = allocate(value, np.ones_like(value), 2)
    assert a.choice.tolist() == [1, 0, NONE, NONE] and a.value == pytest.approx(0.8)


def _brute_force(value, cost, budget):
    best = 0.0
    options = [[NONE, *range(value.shape[1])] for _ in range(len(value))]
    for combo in itertools.product(*options):
        rows = [(u, t) for u, t in enumerate(combo) if t != NONE]
        if sum(cost[u, t] for u, t in rows) <= budget + 1e-9:
            best = max(best, sum(value[u, t] for u, t in rows))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_within_one_upgrade_of_the_optimum_and_never_over_budget(seed):
    rng = np.random.default_rng(seed)
    value = rng.normal(0.2, 0.3, (6, 2))
    cost = rng.uniform(0.5, 2.0, (6, 2))
    budget = float(rng.uniform(1, 5))
    a = allocate(value, cost, budget)
    best = _brute_force(value, cost, budget)
    assert a.spent <= budget + 1e-9
    assert (value[a.choice != NONE, a.choice[a.choice != NONE]] > 0).all()
    assert a.value >= best - value.clip(min=0).max() - 1e-9


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError, match="budget"):
        allocate(np.ones((2, 1)), np.ones((2, 1)), -1)
    with pytest.raises(ValueError, match="cost"):
        allocate(np.ones((2, 1)), np.zeros((2, 1)), 1)
