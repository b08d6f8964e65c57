"""Simulated shops where every user has a hidden response to each treatment: uplift with a known
answer.

A world is a population of users and items with what a trained bundle would hold (embeddings,
training interactions, purchases, friendships) and, hidden from every model, each user's chance
to buy a campaign's item with no push (``p0``), with a push, and with a push carrying a coupon,
and their chance to unsubscribe under each. The served propensity score is the inner product of
the embeddings (what ``/push_targets`` ranks by); ``p0`` is a logistic function of it, so
propensity ranking is as good as it gets at finding *buyers*. Whether a push *changes* what a user
does is set by hidden types that are not a function of propensity alone:

- persuadables: a push adds to their chance to buy;
- sure things: they buy anyway, a push adds nothing;
- lost causes: they do not buy either way;
- sleeping dogs: a push makes them less likely to buy and likely to unsubscribe;
- bargain hunters: a coupon moves them much more than a plain push.

Types are drawn from observable traits plus noise (activity, push fatigue, a direction of the
embedding space), so a model of the features can find them, imperfectly.

The three worlds of ``results/uplift.md`` (:data:`WORLDS`; fixed before anything was measured,
never tuned after):

1. ``proportional``: every user is a persuadable whose uplift is proportional to ``p0``
   (a push adds 60 %, a coupon 100 %): propensity targeting is near optimal there;
2. ``sure_things``: the most active users (who score highest) are mostly sure things, whose
   ``p0`` is high and uplift nil; persuadion works on the others, more where friends bought the
   item; a quarter of users are bargain hunters;
3. ``sleeping_dogs``: 10 % of users, mostly the push-fatigued (many past pushes, which
   propensity-targeted campaigns concentrate on high scorers), are sleeping dogs; the rest are
   persuadables; a quarter are bargain hunters.

Nothing here is a model: it only makes data (evaluation never imports models/).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit, logit

CONTROL, PUSH, COUPON = "control", "push", "coupon"
ARMS = (CONTROL, PUSH, COUPON)


@dataclass(frozen=True)
class WorldSpec:
    """A world's parameters (see the module docstring for what each kind of world does)."""

    name: str
    kind: str  # proportional | sure_things | sleeping_dogs
    n_users: int = 20_000
    n_items: int = 200
    dim: int = 8
    base_rate: float = 0.03  # mean p0
    propensity_slope: float = 1.2  # logit p0 per sd of the served score
    push_lift: float = 0.6  # proportional world: relative uplift of a push
    coupon_lift: float = 1.0  # proportional world: relative uplift of a coupon
    persuadable_lift: float = 0.03  # sure_things / sleeping_dogs: absolute uplift of a push
    sure_share_top: float = 0.7  # sure_things: share of sure things among the top quintile
    sure_p0: float = 0.25  # sure_things: their chance to buy anyway
    lost_share: float = 0.3  # sure_things: share of lost causes among the others
    sleeping_share: float = 0.10  # sleeping_dogs: share of sleeping dogs
    sleeping_unsubscribe: float = 0.3  # their chance to unsubscribe when pushed
    bargain_share: float = 0.25  # share of bargain hunters (not in the proportional world)
    bargain_lift: float = 0.08  # their extra uplift from a coupon
    unsubscribe_base: float = 0.002  # anyone's chance to unsubscribe when pushed
    coupon_value: float = 3.0
    send_cost: float = 0.02
    margin_rate: float = 0.3
    mean_price: float = 30.0
    seed: int = 0


#: The three documented worlds (fixed before measuring; see the module docstring).
WORLDS: dict[str, WorldSpec] = {
    "1_proportional": WorldSpec("1_proportional", "proportional", seed=1),
    "2_sure_things": WorldSpec("2_sure_things", "sure_things", seed=2),
    "3_sleeping_dogs": WorldSpec("3_sleeping_dogs", "sleeping_dogs", seed=3),
}


@dataclass
class World:
    spec: WorldSpec
    user_emb: np.ndarray
    item_emb: np.ndarray
    seen: sp.csr_matrix
    purchases: sp.csr_matrix
    social: sp.csr_matrix
    price: np.ndarray  # per item
    fatigue: np.ndarray  # per user: mean pushes received in a window
    # hidden per-user traits
    kind: np.ndarray  # per user: persuadable | sure | lost | sleeping
    bargain: np.ndarray  # bool per user
    calibration: float = 0.0  # intercept making mean p0 = base_rate
    score_scale: float = 1.0  # makes the served score unit-sd before the logistic

    @property
    def n_users(self) -> int:
        return len(self.user_emb)

    def user_ids(self) -> np.ndarray:
        return np.array([f"u{i}" for i in range(self.n_users)], dtype=object)

    def item_ids(self) -> np.ndarray:
        return np.array([f"i{i}" for i in range(len(self.item_emb))], dtype=object)

    def score(self, users: np.ndarray, item: int) -> np.ndarray:
        """The served propensity score (what ``/push_targets`` ranks by)."""
        return self.user_emb[users] @ self.item_emb[item]

    def score_rows(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The served score of each (user, item) pair."""
        return np.einsum("ij,ij->i", self.user_emb[users], self.item_emb[items])

    def friends_bought(self, users: np.ndarray, item: int) -> np.ndarray:
        buyers = np.zeros(self.n_users, dtype=np.float64)
        buyers[self.purchases[:, item].nonzero()[0]] = 1.0
        return np.asarray((self.social[users] > 0).astype(np.float64) @ buyers).ravel()

    def response(self, users: np.ndarray, item: int) -> tuple[np.ndarray, np.ndarray]:
        """The hidden truth for ``users`` in a campaign of ``item``: ``(p, q)``, each (n, 3) with
        columns :data:`ARMS`: chance to buy, and to unsubscribe, under each arm."""
        s = self.spec
        z = self.score(users, item) * self.score_scale
        p0 = expit(self.calibration + s.propensity_slope * z)
        kind = self.kind[users]
        n = len(users)
        if s.kind == "proportional":
            d_push = s.push_lift * p0
            d_coupon = s.coupon_lift * p0
        else:
            social = np.minimum(self.friends_bought(users, item), 3.0) / 3.0
            d_push = np.where(kind == "persuadable",
                              s.persuadable_lift * (0.5 + social) + 0.3 * p0, 0.0)
            sure = kind == "sure"
            p0 = np.where(sure, np.maximum(p0, s.sure_p0), p0)
            p0 = np.where(kind == "lost", 0.2 * p0, p0)
            sleeping = kind == "sleeping"
            d_push = np.where(sleeping, -0.6 * p0, d_push)
            d_coupon = np.where(sleeping, d_push, 1.2 * d_push)
        if s.kind != "proportional":
            d_coupon = d_coupon + np.where(self.bargain[users] & (kind != "sleeping"),
                                           s.bargain_lift, 0.0)
        p = np.clip(np.column_stack([p0, p0 + d_push, p0 + d_coupon]), 0.0, 1.0)
        q_push = np.where(kind == "sleeping", s.sleeping_unsubscribe, s.unsubscribe_base)
        q = np.column_stack([np.full(n, s.unsubscribe_base / 4), q_push, q_push])
        return p, q

    def margin(self, p: np.ndarray, q: np.ndarray, item: int, unsubscribe_cost: float
               ) -> np.ndarray:
        """(n, 2) true incremental margin of push and coupon (as UpliftModel.effects defines
        it) from the true ``p`` and ``q`` of :meth:`response`."""
        m = self.price[item] * self.spec.margin_rate
        push = p[:, 1] * m - p[:, 0] * m - unsubscribe_cost * (q[:, 1] - q[:, 0])
        coupon = (p[:, 2] * (m - self.spec.coupon_value) - p[:, 0] * m
                  - unsubscribe_cost * (q[:, 2] - q[:, 0]))
        return np.column_stack([push, coupon])


def make_world(spec: WorldSpec) -> World:
    """Draw a world (the same spec gives the same world)."""
    rng = np.random.default_rng(spec.seed)
    n, m, d = spec.n_users, spec.n_items, spec.dim
    activity = rng.lognormal(2.5, 0.8, n)  # expected training interactions
    n_seen = np.maximum(1, rng.poisson(activity))
    direction = rng.standard_normal((n, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    # Active users' vectors are longer, as a trained model's are: they score higher everywhere.
    norm = 0.5 + np.log1p(n_seen) / np.log1p(n_seen).mean()
    user_emb = (direction * norm[:, None]).astype(np.float32)
    item_emb = (rng.standard_normal((m, d)) / np.sqrt(d)).astype(np.float32)
    item_pop = rng.dirichlet(np.full(m, 0.5))
    rows = np.repeat(np.arange(n), n_seen)
    cols = rng.choice(m, size=len(rows), p=item_pop)
    seen = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, m))
    seen.data[:] = 1.0
    bought = rng.random(seen.nnz) < 0.25
    coo = seen.tocoo()
    purchases = sp.csr_matrix((np.ones(bought.sum(), dtype=np.float32),
                               (coo.row[bought], coo.col[bought])), shape=(n, m))
    n_edges = n * 4
    src, dst = rng.integers(0, n, n_edges), rng.integers(0, n, n_edges)
    keep = src != dst
    social = sp.csr_matrix((np.ones(2 * keep.sum(), dtype=np.float32),
                            (np.r_[src[keep], dst[keep]], np.r_[dst[keep], src[keep]])),
                           shape=(n, n))
    social.data[:] = 1.0
    price = np.round(rng.lognormal(np.log(spec.mean_price) - 0.125, 0.5, m), 2)
    # Push fatigue: campaigns that target by propensity push active users most.
    activity_rank = pd.Series(n_seen).rank(pct=True).to_numpy()
    fatigue = 0.5 + 5.0 * activity_rank**2 * rng.uniform(0.5, 1.5, n)

    kind = np.full(n, "persuadable", dtype=object)
    trait = direction[:, 0]  # a direction of taste the model can see through the embeddings
    bargain = trait > np.quantile(trait, 1 - spec.bargain_share)
    if spec.kind == "sure_things":
        top = activity_rank > 0.8
        kind[top & (rng.random(n) < spec.sure_share_top)] = "sure"
        lost_score = -direction[:, 1] + 0.5 * rng.standard_normal(n)
        lost = (kind == "persuadable") & (lost_score > np.quantile(lost_score,
                                                                   1 - spec.lost_share))
        kind[lost] = "lost"
    elif spec.kind == "sleeping_dogs":
        tired = np.log(fatigue) + 0.3 * rng.standard_normal(n)
        kind[tired > np.quantile(tired, 1 - spec.sleeping_share)] = "sleeping"
    elif spec.kind != "proportional":
        raise ValueError(f"WorldSpec.kind: expected proportional | sure_things | "
                         f"sleeping_dogs, got {spec.kind!r}")
    world = World(spec, user_emb, item_emb, seen, purchases, social, price, fatigue, kind,
                  bargain)
    # Scale scores to unit sd and set the intercept so that mean p0 is the base rate.
    sample_users = rng.integers(0, n, 20_000)
    sample_items = rng.integers(0, m, 20_000)
    scores = np.einsum("ij,ij->i", user_emb[sample_users], item_emb[sample_items])
    world.score_scale = float(1.0 / scores.std())
    z = scores * world.score_scale
    lo, hi = logit(spec.base_rate) - 5, logit(spec.base_rate) + 1
    for _ in range(50):  # bisection on the intercept
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expit(mid + spec.propensity_slope * z).mean() < spec.base_rate \
            else (lo, mid)
    world.calibration = (lo + hi) / 2
    return world


def campaign_log(world: World, items: list[int], *, holdout: float, exploration: float,
                 policy_arm: str = PUSH, users_per_campaign: int | None = None,
                 seed: int = 0) -> pd.DataFrame:
    """What the service would log for campaigns of ``items``: each campaign reaches every user
    (or a random ``users_per_campaign``); ``holdout`` of them are held out (control), and of
    the rest ``exploration`` get a random treatment (push or coupon, logged as explored) and
    the others ``policy_arm``. Outcomes are drawn from the hidden responses.

    Columns: campaign, item, user, treatment, explored, push_count, conversion, revenue,
    unsubscribe (and the true p of the assigned arm, for checks).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for c, item in enumerate(items):
        users = (np.arange(world.n_users) if users_per_campaign is None
                 else np.sort(rng.choice(world.n_users, users_per_campaign, replace=False)))
        n = len(users)
        held = rng.random(n) < holdout
        explored = ~held & (rng.random(n) < exploration)
        arm = np.where(held, CONTROL, policy_arm).astype(object)
        arm[explored] = rng.choice([PUSH, COUPON], size=int(explored.sum()))
        p, q = world.response(users, item)
        col = np.select([arm == CONTROL, arm == PUSH], [0, 1], 2)
        bought = rng.random(n) < p[np.arange(n), col]
        parts.append(pd.DataFrame({
            "campaign": c, "item": item, "user": users, "treatment": arm, "explored": explored,
            "push_count": rng.poisson(world.fatigue[users]),
            "conversion": bought.astype(np.int8),
            "revenue": np.where(bought, world.price[item], 0.0),
            "unsubscribe": (rng.random(n) < q[np.arange(n), col]).astype(np.int8),
        }))
    return pd.concat(parts, ignore_index=True)
