"""Pushes under a budget, by objective: who gets which treatment, and why.

``objective: propensity`` (the default) ranks by the bundle's score, as ``/push_targets``
always did; a budget then only sets how many users (a number of pushes, or money divided by a
push's cost). ``uplift`` and ``margin`` score every eligible user's incremental effect under
each treatment with the bundle's uplift model (models/uplift.py) and allocate the budget across
users and treatments (models/allocation.py: a user whose every treatment is expected to hurt is
never pushed). A bundle without an uplift model answers with propensity and says so.

A campaign over several products (``item_ids``, ``category``) scores each user for the product
the campaign ranked them by (their best of the set); a product the model does not know is
scored from the vector serving represents it by (folded in from its feedback, its seeds or its
category) and the buyers the event store reported. The uplift model learned from one-product
campaigns: for a set its estimates are those of the user's product alone.

Of the users the allocation targets, a configured share (the model's ``exploration``) is given a
treatment drawn at random (a stable hash of campaign and user), logged as explored, so every
treatment's effect stays identifiable for the next model. Held-out users the allocation would
have targeted are logged as the control.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from socialrec.models.allocation import NONE, allocate
from socialrec.models.bundle import ModelBundle
from socialrec.models.uplift import UpliftModel
from socialrec.models.uplift_features import FeatureSource, product_features
from socialrec.serving.campaigns import Push
from socialrec.serving.foldin_state import ModelSignals
from socialrec.serving.rules import PushCounts, buyers


class BudgetError(ValueError):
    """A budget or treatment the request cannot have; ``field`` names it."""

    def __init__(self, message: str, field: str, expected: str) -> None:
        super().__init__(message)
        self.field, self.expected = field, expected


@dataclass(frozen=True)
class Products:
    """A campaign's products as the uplift features see them: served vector and buyers
    (internal user ids) of each, and for a set the product of every bundle user."""

    ids: list[str]
    vectors: np.ndarray  # (products, dim)
    buyers: list[np.ndarray]
    of_user: np.ndarray | None = None  # per bundle user: an index into ids; None: one product

    @classmethod
    def one(cls, bundle: ModelBundle, item: int) -> Products:
        """A campaign of one product the bundle knows (internal id ``item``)."""
        return cls(bundle.items.to_ids(np.array([item])), bundle.item_emb[[item]],
                   [buyers(bundle, item)])

    def of(self, users: np.ndarray) -> np.ndarray:
        """The product (index into ``ids``) each of ``users`` is scored for."""
        if self.of_user is None:
            return np.zeros(len(users), dtype=np.int64)
        return self.of_user[users]


def campaign_products(bundle: ModelBundle, signals: ModelSignals, push: Push) -> Products:
    """The products of a campaign as :func:`plan` scores them: served vectors and buyers (the
    bundle's for a product it knows, the event store's for a new one), each user's product."""
    target = push.target
    return Products(
        list(target.item_ids), target.vectors,
        [buyers(bundle, int(item)) if item >= 0 else signals.buyers(item_id)
         for item, item_id in zip(target.known, target.item_ids, strict=True)],
        push.best)


@dataclass
class Plan:
    users: np.ndarray  # internal ids to push, best value first
    items: list[str]  # the product of each pushed user
    treatments: list[str]
    explored: np.ndarray  # bool per pushed user
    values: np.ndarray  # objective value of the given treatment
    effects: np.ndarray  # incremental conversion probability of the given treatment
    costs: np.ndarray
    reasons: list[str]
    held: np.ndarray  # held-out users the allocation picked (the control)
    held_items: list[str]
    held_values: np.ndarray
    spent: float


def feature_source(bundle: ModelBundle) -> FeatureSource:
    src = bundle.meta.get("_uplift_source")
    if not isinstance(src, FeatureSource):
        src = FeatureSource(bundle.user_emb, bundle.item_emb, bundle.seen, bundle.purchases,
                            bundle.social)
        bundle.meta["_uplift_source"] = src  # built once per bundle (never saved: not JSON)
    return src


def _explore_draw(campaign: str, user_ids: list[str]) -> np.ndarray:
    """A stable uniform number in [0, 1) per (campaign, user)."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(f"explore\x1f{campaign}\x1f{u}".encode(),
                                        digest_size=8).digest(), "big") / 2**64
         for u in user_ids), dtype=np.float64, count=len(user_ids))


def check_budget(model: UpliftModel | None, money: float | None, pushes: int | None,
                 send_costs: dict[str, float], allowed: list[str] | None) -> list[str]:
    """The treatments the request may use; refuses unknown ones and a budget too small for one
    push (naming the field)."""
    names = model.treatment_names if model is not None else ["push"]
    for where, given in (("treatments", allowed or []), ("budget.costs", list(send_costs))):
        unknown = [t for t in given if t not in names]
        if unknown:
            raise BudgetError(f"unknown treatment(s) {unknown}; this model has {names}", where,
                              f"treatment names among {names}")
    use = allowed or names
    if pushes is not None and pushes < 1:
        raise BudgetError(f"budget.pushes={pushes}: not enough for one push", "budget.pushes",
                          "an integer >= 1")
    if money is not None and model is not None:
        cheapest = min(send_costs.get(t.name, t.send_cost) for t in model.treatments
                       if t.name in use)
        if money < cheapest or money <= 0:
            raise BudgetError(f"budget.money={money:g} is below the cost of one push "
                              f"({cheapest:g})", "budget.money", f"at least {cheapest:g}")
    return use


def plan(bundle: ModelBundle, model: UpliftModel, products: Products, campaign: str,
         eligible: np.ndarray, held: np.ndarray, objective: str, money: float | None,
         pushes: int | None, treatments: list[str], send_costs: dict[str, float],
         store: PushCounts | None, price: float | None, now: datetime) -> Plan:
    """Allocate the budget over ``eligible`` and ``held`` users (internal ids) and the
    ``treatments`` by ``objective`` for the campaign's ``products``; see the module
    docstring."""
    candidates = np.concatenate([eligible, held]).astype(np.int64)
    is_held = np.r_[np.zeros(len(eligible), bool), np.ones(len(held), bool)]
    ids = bundle.users.to_ids(candidates)
    if store is not None and len(ids):
        since = now - timedelta(days=model.push_window_days)
        counts = store.push_counts(ids, since)
        push_count = np.fromiter((counts[u] for u in ids), dtype=np.float32, count=len(ids))
    else:
        push_count = np.zeros(len(ids), dtype=np.float32)
    src = feature_source(bundle)
    product = products.of(candidates)
    x = np.empty((len(candidates), len(model.features)), dtype=np.float32)
    for j in np.unique(product):
        at = np.flatnonzero(product == j)
        x[at] = product_features(src, candidates[at], products.vectors[j], products.buyers[j],
                                 push_count[at], model.projection)
    effects = model.effects(x, price)
    columns = [model.treatment_names.index(t) for t in treatments]
    value = model.value(effects, "margin" if objective == "margin" else "uplift")[:, columns]
    cost = model.costs(effects.p_treated, money is not None, send_costs)[:, columns]
    budget = float(money) if money is not None else float(pushes or 0)
    chosen = allocate(value, cost, budget).choice
    picked = np.flatnonzero(chosen != NONE)
    picked = picked[np.argsort(-value[picked, chosen[picked]], kind="stable")]
    col = chosen[picked]
    given = np.array(treatments, dtype=object)[col]
    # exploration: a random share of the targeted get a random treatment
    share = float(model.manifest.get("exploration", 0.0))
    pushed = picked[~is_held[picked]]
    draw = _explore_draw(campaign, [ids[i] for i in pushed])
    explored = draw < share
    if explored.any():
        # a second, independent draw from the same hash picks the treatment
        pick = np.minimum((draw[explored] / share * len(treatments)).astype(int),
                          len(treatments) - 1)
        pushed_given = given[~is_held[picked]]
        pushed_given[explored] = np.array(treatments, dtype=object)[pick]
        given[~is_held[picked]] = pushed_given
    t_col = np.array([treatments.index(t) for t in given], dtype=np.int64)
    model_cols = np.array(columns)[t_col]
    friends_bought = x[picked, 4]
    values = value[picked, t_col]
    conv = effects.conversion[picked, model_cols]
    costs = cost[picked, t_col]
    explored_all = np.zeros(len(picked), dtype=bool)
    explored_all[~is_held[picked]] = explored
    reasons = [_reason(t, c, int(f), bool(e)) for t, c, f, e in zip(
        given, conv, friends_bought, explored_all, strict=True)]
    keep = ~is_held[picked]
    items = np.array(products.ids, dtype=object)[product[picked]]
    return Plan(candidates[picked[keep]], [str(i) for i in items[keep]],
                [str(t) for t in given[keep]], explored, values[keep], conv[keep], costs[keep],
                [r for r, k in zip(reasons, keep, strict=True) if k],
                candidates[picked[~keep]], [str(i) for i in items[~keep]], values[~keep],
                float(costs[keep].sum()))


def _reason(treatment: str, effect: float, friends_bought: int, explored: bool) -> str:
    if explored:
        text = f"{treatment} drawn at random (exploration)"
    else:
        text = f"{treatment}: expected {100 * effect:+.1f} pp chance to buy"
    if friends_bought > 0:
        text += f"; {friends_bought} friend{'s' if friends_bought > 1 else ''} bought it"
    return text


