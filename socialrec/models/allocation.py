"""One budget across users and treatments: a multiple-choice knapsack, solved greedily by ratio.

Each user gets at most one treatment (or none); treatment ``t`` for user ``u`` is worth
``value[u, t]`` (an expected incremental conversion or margin) and costs ``cost[u, t]`` (one push,
or money); the total cost may not exceed the budget. This is the multiple-choice knapsack of
coupon allocation (Zhao et al. 2019, "A unified framework for marketing budget allocation";
Albert & Goldenberg 2022): its Lagrangian relaxation is solved exactly by the greedy below
(Sinha & Zoltners 1979), which is what those papers' dual descent converges to.

For each user, the options not dominated form the upper convex hull of ``(cost, value)`` points
starting at "no treatment" ``(0, 0)``; moving up that hull is a sequence of upgrades whose value
per unit of cost decreases. All users' upgrades are taken best ratio first while the budget
lasts (an upgrade is taken only after the same user's previous one), then the rest of the budget
is filled with the best upgrades that still fit. The result is within one upgrade's value of the
relaxed optimum, and optimal whenever the budget is used up exactly by whole upgrades.

Options with no positive value are never on the hull: a user whose every treatment is expected
to hurt (a "sleeping dog") is never treated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

NONE = -1  # the choice of a user given no treatment


class Allocation(NamedTuple):
    choice: np.ndarray  # per user: the chosen treatment's column, or NONE
    spent: float
    value: float


def hull_upgrades(value: np.ndarray, cost: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every user's upgrades along their convex hull: ``(user, step, to_option, d_cost,
    d_value)``, one entry per upgrade, ``step`` counting from 0 for each user."""
    n, t = value.shape
    users, steps, targets, d_costs, d_values = [], [], [], [], []
    cur_cost = np.zeros(n)
    cur_value = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    rows = np.arange(n)
    for step in range(t):
        dc = cost - cur_cost[:, None]
        dv = value - cur_value[:, None]
        ok = (dc > 0) & (dv > 0) & alive[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ok, dv / np.where(ok, dc, 1.0), -np.inf)
        best = np.argmax(ratio, axis=1)
        has = np.isfinite(ratio[rows, best])
        if not has.any():
            break
        who = rows[has]
        to = best[has]
        users.append(who)
        steps.append(np.full(len(who), step))
        targets.append(to)
        d_costs.append(dc[who, to])
        d_values.append(dv[who, to])
        cur_cost[who] = cost[who, to]
        cur_value[who] = value[who, to]
        alive &= has
    if not users:
        empty = np.zeros(0)
        return (empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64), empty,
                empty)
    return (np.concatenate(users), np.concatenate(steps), np.concatenate(targets),
            np.concatenate(d_costs), np.concatenate(d_values))


def allocate(value: np.ndarray, cost: np.ndarray, budget: float) -> Allocation:
    """The treatment of each user (column of ``value`` / ``cost``, or :data:`NONE`) under
    ``budget``; see the module docstring. ``value`` and ``cost`` are (users, treatments)."""
    value = np.asarray(value, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    if value.shape != cost.shape or value.ndim != 2:
        raise ValueError(f"value {value.shape} and cost {cost.shape}: expected two arrays of "
                         "the same (users, treatments) shape")
    if budget < 0:
        raise ValueError(f"budget: expected >= 0, got {budget}")
    if (cost <= 0).any():
        raise ValueError("cost: every treatment must cost more than 0")
    n = value.shape[0]
    choice = np.full(n, NONE, dtype=np.int64)
    users, steps, targets, d_cost, d_value = hull_upgrades(value, cost)
    if len(users) == 0:
        return Allocation(choice, 0.0, 0.0)
    order = np.lexsort((steps, -(d_value / d_cost)))  # best ratio first; a user's steps in order
    users, steps, targets = users[order], steps[order], targets[order]
    d_cost, d_value = d_cost[order], d_value[order]
    # The prefix that fits is taken whole (a user's steps are in order within it).
    fits = np.cumsum(d_cost) <= budget + 1e-9
    cut = int(np.argmin(fits)) if not fits.all() else len(fits)
    taken_steps = np.zeros(n, dtype=np.int64)  # how many upgrades each user has taken
    choice[users[:cut]] = targets[:cut]  # later steps of a user overwrite earlier ones
    np.add.at(taken_steps, users[:cut], 1)
    left = budget - float(d_cost[:cut].sum())
    # Fill: the next upgrades that still fit, in ratio order, each after its user's previous.
    cheapest_after = np.minimum.accumulate(d_cost[::-1])[::-1]
    for j in range(cut, len(users)):
        if cheapest_after[j] > left + 1e-9:
            break
        if d_cost[j] <= left + 1e-9 and taken_steps[users[j]] == steps[j]:
            choice[users[j]] = targets[j]
            taken_steps[users[j]] += 1
            left -= float(d_cost[j])
    chosen = choice != NONE
    rows = np.flatnonzero(chosen)
    spent = float(cost[rows, choice[rows]].sum())
    return Allocation(choice, spent, float(value[rows, choice[rows]].sum()))
