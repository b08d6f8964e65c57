"""The drifting world of bench/loop.py: what simulated users really like, day by day.

Every parameter is in :class:`LoopParams`, fixed here BEFORE the loop was measured (issue 15:
written down first, never tuned afterwards). The world starts as the demo's synthetic world
(configs/synthetic.yaml: 20k users, 5k items, 40 communities, seed 7; its 90 days are the base
dataset the day-0 champion is trained on) and then lives ``days`` more days, the same for every
arm of the bench: what happens organically is planned per day from the world's own random
stream, before any arm is served, so it cannot depend on what an arm did. Only the reactions to
pushes depend on the arm, and they are drawn from a hash of (day, user, item, step), so the same
push gets the same reaction in every arm (common random numbers).

Hidden truth
------------
* Each item has a community (the base world's), a category, a price and an appeal ``pop`` (base
  items: 1 + the distinct users who touched it in the 90 base days; launched items: a draw from
  the base items' appeals). A product launched on day ``l`` is hot at first: its appeal is
  multiplied by ``1 + novelty_boost * exp(-(d - l) / novelty_days)`` on day ``d``.
* Each user has a taste: a distribution over communities, at first all on their own community.
  **Tastes shift**: every day ``drift_share`` of the users pick up an interest in another
  community (a friend's with probability ``drift_via_friends``, else one drawn by size), which
  takes ``drift_weight`` of their taste.
* Each user has an activity (log-normal, mean 1, as the base world's): the expected number of
  choices a day is ``choices_per_user_day * activity``.

Organic behaviour (each simulated day)
--------------------------------------
A choice is, with probability ``p_social``, a copy of a purchase a friend made in the last
``copy_window_days`` days (if the user has such a friend; else an own choice); with
probability ``p_global`` an item drawn by appeal from the whole live catalogue; otherwise a
community drawn from the user's taste, then an item of it by appeal. Each choice goes down the
funnel view -> click -> cart -> purchase with the base world's rates (``funnel_own``; copies of a
friend convert more, ``funnel_social``), at a uniform time of the day (each step a little later).
Every event reaches the service as feedback (organic: no request id).

Drift of the catalogue and the users
------------------------------------
* ``launch_share`` of the initial catalogue is launched each morning: community by the
  communities' sizes, category the community's most common one, price log-normal around the
  category's median, appeal as above. The shop adds them to its catalogue (the items table the
  retrain reads).
* ``delete_share`` of the catalogue is discontinued each morning (flagged ``deleted``; never
  chosen again).
* ``join_share`` x the initial users join each day through a friend's share: the sharer is one of
  the day's buyers with friends, the shared item one they bought; the sharer asks
  ``/share_partners`` for it and the newcomer's ``join`` answers that request; the newcomer buys
  the item, takes the sharer's community (``join_homophily``, else a random one), the sharer and
  up to ``join_extra_friends`` of the sharer's friends as friends, and is active from the next
  day.

Behaviour under a push (extends bench/ab_demo_traffic.py's tiers to a continuous affinity)
------------------------------------------------------------------------------------------
A pushed user's affinity to the item is ``rho = n_live_items * pi(u, i)`` (1: an average item),
``pi`` the chance that their next own choice is the item. They buy through the push with
``p = push_max * (1 - exp(-push_lambda * rho))`` (an average item pushed to a user of its
community: ~3.5 %; out of it: ~0.03 %; never above ``push_max``), open it with
``min(1, open_base + open_slope * p)`` and click it once opened with
``min(1, click_base + click_slope * p)`` (the purchase then follows with whatever probability
makes the total ``p``). Opens, clicks and purchases go to ``/feedback`` with the push's request
id. Held-out users are not pushed and only buy organically.

The bench's traffic (bench/loop.py)
-----------------------------------
Each day: a push campaign (``push_k`` users, the shop naming the product's category) for every
product launched that day and for ``campaigns_existing`` live products drawn at random (the
world's stream) among those bought in the last 7 days; ``/recommend`` (``recommend_k`` items) at
the start of the day for up to ``recommend_users`` of the day's buyers (recall of that day's
purchases); ``latency_probes`` of the launched products get their first feedback only at
campaign time, to time the first targeted push after it; and a few bad events a client would
send (``bad_*``: unknown request ids, clocks in the future or in 2001, events for discontinued
products, repeated event ids).

The loop's deliberately broken challengers: the retrain at the end of ``broken_gate_day`` trains
on shuffled interactions (the gate must stop it); the one at the end of ``broken_ab_day`` too,
and is forced past the gate (tolerance 1), so that the A/B guard must stop it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from socialrec.features.synthetic import generate


@dataclass(frozen=True)
class LoopParams:
    # the base world: the demo's (configs/synthetic.yaml)
    n_users: int = 20000
    n_items: int = 5000
    n_communities: int = 40
    base_seed: int = 7
    # the simulation
    days: int = 8
    seed: int = 2026
    # organic behaviour
    choices_per_user_day: float = 0.4
    p_social: float = 0.3
    p_global: float = 0.15
    funnel_own: tuple[float, float, float] = (0.5, 0.4, 0.5)
    funnel_social: tuple[float, float, float] = (0.7, 0.6, 0.7)
    copy_window_days: int = 3
    # drift
    launch_share: float = 0.03
    novelty_boost: float = 4.0
    novelty_days: float = 2.0
    delete_share: float = 0.003
    join_share: float = 0.01
    join_homophily: float = 0.85
    join_extra_friends: int = 2
    drift_share: float = 0.03
    drift_weight: float = 0.5
    drift_via_friends: float = 0.5
    # behaviour under a push
    push_lambda: float = 0.005
    push_max: float = 0.25
    open_base: float = 0.10
    open_slope: float = 2.0
    click_base: float = 0.30
    click_slope: float = 2.0
    # the bench's traffic
    campaigns_existing: int = 450
    push_k: int = 100
    recommend_k: int = 20
    recommend_users: int = 1500
    latency_probes: int = 5
    bad_unknown_request: int = 20
    bad_future: int = 10
    bad_old: int = 10
    bad_deleted: int = 20
    bad_duplicate: int = 10
    # the loop's deliberately broken challengers (shuffled interactions)
    broken_gate_day: int = 2
    broken_ab_day: int = 4

    def as_dict(self) -> dict:
        return asdict(self)


#: A few-minute version of the same world, to try the bench's plumbing (never reported).
TINY = LoopParams(n_users=2000, n_items=500, n_communities=10, days=3, campaigns_existing=40,
                  recommend_users=300, latency_probes=2, broken_gate_day=1, broken_ab_day=2)

EVENTS = ("view", "click", "cart", "purchase")


def unit_draw(*keys: object) -> float:
    """A uniform number in [0, 1) from the keys (the same in every arm and process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class DayPlan:
    """What happens organically on one day, before any arm is served."""

    day: int
    launched: list[str]
    deleted: list[str]
    events: pd.DataFrame  # user_id, item_id, event, t (fraction of the day), organic order
    joins: pd.DataFrame  # sharer_id, item_id, user_id (the newcomer), t
    buyers_sample: list[str]  # users whose day's purchases /recommend is measured on
    purchases: dict[str, set[str]]  # user -> items bought organically today
    campaigns: list[str]  # items pushed today: the launched ones first, then existing ones
    probes: list[str]  # launched items whose first feedback waits for campaign time
    stale_items: list[str] = field(default_factory=list)  # discontinued, for bad events


class World:
    """The hidden truth and its day-by-day drift (module docstring)."""

    def __init__(self, p: LoopParams) -> None:
        self.p = p
        self.rng = np.random.default_rng(p.seed)
        base = generate(p.n_users, p.n_items, p.n_communities, p.base_seed)
        self.base = base
        users, items = base.users, base.items
        assert users is not None and items is not None
        self.user_ids: list[str] = users.user_id.astype(str).tolist()
        self.user_index = {u: k for k, u in enumerate(self.user_ids)}
        self.user_comm = users.community.to_numpy(dtype=np.int64)
        self.activity = self.rng.lognormal(0.0, 0.75, len(self.user_ids))
        self.activity /= self.activity.mean()
        self.taste = np.zeros((len(self.user_ids), p.n_communities))
        self.taste[np.arange(len(self.user_ids)), self.user_comm] = 1.0
        self.active_from = np.zeros(len(self.user_ids), dtype=np.int64)
        self.friends: list[list[int]] = [[] for _ in self.user_ids]
        for src, dst in zip(base.social.src.astype(str), base.social.dst.astype(str),
                            strict=True):
            self.friends[self.user_index[src]].append(self.user_index[dst])

        inter = base.interactions
        touched = inter.groupby("item_id").user_id.nunique()
        self.item_ids: list[str] = items.item_id.astype(str).tolist()
        self.item_index = {i: k for k, i in enumerate(self.item_ids)}
        self.item_comm = items.community.to_numpy(dtype=np.int64)
        self.item_category = items.category.astype(str).tolist()
        self.price = items.price.to_numpy(dtype=np.float64)
        self.pop = 1.0 + touched.reindex(self.item_ids).fillna(0).to_numpy(dtype=np.float64)
        self.launch_day = np.full(len(self.item_ids), -10**6, dtype=np.int64)
        self.deleted = np.zeros(len(self.item_ids), dtype=bool)
        self.base_pop = self.pop.copy()
        comm_items = pd.Series(self.item_category).groupby(self.item_comm)
        self.comm_category = comm_items.agg(lambda s: s.value_counts().index[0]).to_dict()
        self.comm_size = np.bincount(self.item_comm, minlength=p.n_communities).astype(float)
        self.category_price = pd.Series(self.price).groupby(self.item_category).median().to_dict()
        self.recent: list[tuple[int, int, int]] = []  # (day, user, item) organic purchases
        last_week = inter[(inter.event == "purchase")
                          & (inter.ts >= inter.ts.max() - 7 * 86_400)]
        self.bought_lately: list[set[str]] = [set(last_week.item_id.astype(str))]
        self.day = 0

    # -- the truth -------------------------------------------------------------------------------

    def appeal(self, day: int) -> np.ndarray:
        """Each item's appeal on ``day`` (0 for discontinued items)."""
        age = day - self.launch_day
        novelty = 1.0 + self.p.novelty_boost * np.exp(-np.maximum(age, 0) / self.p.novelty_days)
        novelty[self.launch_day < 0] = 1.0
        return np.where(self.deleted, 0.0, self.pop * novelty)

    def affinity(self, day: int, users: list[str], item: str) -> np.ndarray:
        """``rho``: ``n_live * P(next own choice of u is item)`` for each known user (module
        docstring); 0 for ids the world does not know."""
        p = self.p
        w = self.appeal(day)
        i = self.item_index.get(item)
        if i is None or w[i] == 0:
            return np.zeros(len(users))
        comm = self.item_comm[i]
        in_comm = w[self.item_comm == comm].sum()
        idx = np.array([self.user_index.get(u, -1) for u in users])
        taste = np.where(idx >= 0, self.taste[np.maximum(idx, 0), comm], 0.0)
        own = 1.0 - p.p_social
        pi = (p.p_global * w[i] / w.sum() + (own - p.p_global) * taste * w[i] / in_comm) / own
        return np.where(idx >= 0, pi * int((w > 0).sum()), 0.0)

    def push_reactions(self, day: int, item: str, users: list[str]) -> list[tuple[str, bool,
                                                                              bool, bool]]:
        """(user, opened, clicked, bought) for each pushed user (module docstring)."""
        p = self.p
        buy = p.push_max * (1.0 - np.exp(-p.push_lambda * self.affinity(day, users, item)))
        out = []
        for user, pb in zip(users, buy, strict=True):
            p_open = min(1.0, p.open_base + p.open_slope * pb)
            p_click = min(1.0, p.click_base + p.click_slope * pb)
            opened = unit_draw(p.seed, day, user, item, "open") < p_open
            clicked = opened and unit_draw(p.seed, day, user, item, "click") < p_click
            bought = clicked and unit_draw(p.seed, day, user, item, "buy") < min(
                1.0, pb / (p_open * p_click))
            out.append((user, opened, clicked, bought))
        return out

    # -- the catalogue and the base tables -------------------------------------------------------

    def catalogue(self) -> pd.DataFrame:
        return pd.DataFrame({"item_id": self.item_ids, "category": self.item_category,
                             "price": self.price, "deleted": self.deleted})

    def write_base(self, root: Path) -> dict:
        """The base dataset as parquet files (the hidden columns left out); ``dataset.files``."""
        root.mkdir(parents=True, exist_ok=True)
        b = self.base
        assert b.users is not None
        tables = {"interactions": b.interactions, "social": b.social, "shares": b.shares,
                  "users": b.users[["user_id", "push_opt_in"]]}
        files = {}
        for name, frame in tables.items():
            frame.to_parquet(root / f"{name}.parquet", index=False)
            files[name] = {"path": str(root / f"{name}.parquet")}
        self.write_catalogue(root)
        files["items"] = {"path": str(root / "items.parquet")}
        return files

    def write_catalogue(self, root: Path) -> None:
        tmp = root / "items.parquet.tmp"
        self.catalogue().to_parquet(tmp, index=False)
        tmp.replace(root / "items.parquet")

    # -- one day ---------------------------------------------------------------------------------

    def next_day(self) -> DayPlan:
        """Advance the world by one day and plan its organic events."""
        self.day += 1
        d, p, rng = self.day, self.p, self.rng
        launched = self._launch(d)
        deleted = self._discontinue()
        self._drift()
        events, purchases = self._choices(d)
        joins, join_events = self._joins(d, events)
        events = pd.concat([events, join_events], ignore_index=True).sort_values(
            "t", kind="stable").reset_index(drop=True)
        for user, items in join_events[join_events.event == "purchase"].groupby("user_id"):
            purchases.setdefault(str(user), set()).update(items.item_id.astype(str))
        buyers = sorted(u for u in purchases if self.active_from[self.user_index[u]] < d)
        sample = (list(rng.choice(buyers, size=p.recommend_users, replace=False))
                  if len(buyers) > p.recommend_users else buyers)
        live = ~self.deleted
        lately = sorted(set().union(*self.bought_lately) - set(launched))
        lately = [i for i in lately if live[self.item_index[i]]]
        existing = rng.choice(lately, size=min(p.campaigns_existing, len(lately)), replace=False)
        campaigns = launched + [str(i) for i in existing]
        self.bought_lately = [*self.bought_lately[-6:],
                              set(events[events.event == "purchase"].item_id.astype(str))]
        stale = [i for i, gone in zip(self.item_ids, self.deleted, strict=True) if gone]
        return DayPlan(d, launched, deleted, events, joins, [str(u) for u in sample], purchases,
                       campaigns, launched[:p.latency_probes], stale)

    def _launch(self, d: int) -> list[str]:
        p, rng = self.p, self.rng
        n = round(p.launch_share * p.n_items)
        comm = rng.choice(p.n_communities, size=n, p=self.comm_size / self.comm_size.sum())
        ids = [f"new{d:02d}_{k:04d}" for k in range(n)]
        for item, c in zip(ids, comm, strict=True):
            category = self.comm_category[int(c)]
            self.item_index[item] = len(self.item_ids)
            self.item_ids.append(item)
            self.item_category.append(category)
        self.item_comm = np.concatenate([self.item_comm, comm])
        price = np.round(np.exp(rng.normal(np.log([self.category_price[self.item_category[
            self.item_index[i]]] for i in ids]), 0.5)), 2)
        self.price = np.concatenate([self.price, price])
        self.pop = np.concatenate([self.pop, rng.choice(self.base_pop, size=n)])
        self.launch_day = np.concatenate([self.launch_day, np.full(n, d)])
        self.deleted = np.concatenate([self.deleted, np.zeros(n, dtype=bool)])
        return ids

    def _discontinue(self) -> list[str]:
        p, rng = self.p, self.rng
        candidates = np.flatnonzero(~self.deleted & (self.launch_day < 0))
        gone = rng.choice(candidates, size=round(p.delete_share * p.n_items), replace=False)
        self.deleted[gone] = True
        return [self.item_ids[g] for g in gone]

    def _drift(self) -> None:
        p, rng = self.p, self.rng
        n_users = len(self.user_ids)
        movers = rng.choice(n_users, size=round(p.drift_share * n_users), replace=False)
        for u in movers:
            friends = self.friends[u]
            if friends and rng.random() < p.drift_via_friends:
                new = int(np.argmax(self.taste[friends[rng.integers(len(friends))]]))
            else:
                new = int(rng.choice(p.n_communities, p=self.comm_size / self.comm_size.sum()))
            self.taste[u] *= 1 - p.drift_weight
            self.taste[u, new] += p.drift_weight

    def _choices(self, d: int) -> tuple[pd.DataFrame, dict[str, set[str]]]:
        p, rng = self.p, self.rng
        w = self.appeal(d)
        live = np.flatnonzero(w > 0)
        active = np.flatnonzero(self.active_from < d)
        n = rng.poisson(self.activity[active] * p.choices_per_user_day)
        users = np.repeat(active, n)
        kind = rng.random(len(users))
        items = np.full(len(users), -1, dtype=np.int64)
        social = kind < p.p_social
        recent: dict[int, list[int]] = {}
        for day, user, item in self.recent:
            if day > d - 1 - p.copy_window_days and w[item] > 0:
                recent.setdefault(user, []).append(item)
        for k in np.flatnonzero(social):
            bought = [f for f in self.friends[users[k]] if f in recent]
            if bought:
                friend = bought[rng.integers(len(bought))]
                items[k] = recent[friend][rng.integers(len(recent[friend]))]
        glob = (kind >= p.p_social) & (kind < p.p_social + p.p_global)
        items[glob] = rng.choice(live, size=int(glob.sum()), p=w[live] / w[live].sum())
        own = items < 0
        own_users = users[own]
        cum = np.cumsum(self.taste[own_users], axis=1)
        comm = (rng.random(len(own_users))[:, None] * cum[:, -1:] > cum).sum(axis=1)
        picked = np.empty(len(own_users), dtype=np.int64)
        for c in np.unique(comm):
            members = live[self.item_comm[live] == c]
            where = comm == c
            if not len(members):  # every item of the community gone: a global choice
                picked[where] = rng.choice(live, size=int(where.sum()), p=w[live] / w[live].sum())
                continue
            picked[where] = rng.choice(members, size=int(where.sum()),
                                       p=w[members] / w[members].sum())
        items[own] = picked
        copied = social & ~own
        rates = np.where(copied[:, None], np.array(p.funnel_social), np.array(p.funnel_own))
        t = rng.random(len(users)) * 0.95
        rows: list[tuple[int, int, str, float]] = []
        level = np.zeros(len(users), dtype=np.int64)
        for step in range(1, 4):
            went = (level == step - 1) & (rng.random(len(users)) < rates[:, step - 1])
            level[went] = step
        for k in range(len(users)):
            for step in range(level[k] + 1):
                rows.append((users[k], items[k], EVENTS[step], t[k] + 0.005 * step))
        frame = pd.DataFrame(rows, columns=["u", "i", "event", "t"])
        purchases: dict[str, set[str]] = {}
        for u, i in zip(frame.u[frame.event == "purchase"], frame.i[frame.event == "purchase"],
                        strict=True):
            purchases.setdefault(self.user_ids[u], set()).add(self.item_ids[i])
            self.recent.append((d, int(u), int(i)))
        self.recent = [r for r in self.recent if r[0] > d - p.copy_window_days]
        events = pd.DataFrame({"user_id": [self.user_ids[u] for u in frame.u],
                               "item_id": [self.item_ids[i] for i in frame.i],
                               "event": frame.event, "t": frame.t})
        return events, purchases

    def _joins(self, d: int, events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        p, rng = self.p, self.rng
        bought = events[events.event == "purchase"]
        with_friends = bought[[bool(self.friends[self.user_index[u]]) for u in bought.user_id]]
        n = min(round(p.join_share * p.n_users), len(with_friends))
        chosen = with_friends.iloc[rng.choice(len(with_friends), size=n, replace=False)]
        joins, rows = [], []
        for k, (sharer, item, t) in enumerate(zip(chosen.user_id, chosen.item_id, chosen.t,
                                                  strict=True)):
            s = self.user_index[sharer]
            newcomer = f"j{d:02d}_{k:04d}"
            comm = (self.user_comm[s] if rng.random() < p.join_homophily
                    else int(rng.integers(p.n_communities)))
            u = len(self.user_ids)
            self.user_ids.append(newcomer)
            self.user_index[newcomer] = u
            self.user_comm = np.append(self.user_comm, comm)
            self.activity = np.append(self.activity, rng.lognormal(0.0, 0.75))
            taste = np.zeros((1, p.n_communities))
            taste[0, comm] = 1.0
            self.taste = np.vstack([self.taste, taste])
            self.active_from = np.append(self.active_from, d)
            extra = list(rng.permutation(self.friends[s]))[:p.join_extra_friends]
            self.friends.append([s, *extra])
            for f in [s, *extra]:
                self.friends[f].append(u)
            join_t = min(float(t) + 0.01, 0.999)
            joins.append((sharer, item, newcomer, join_t))
            rows += [(newcomer, item, "join", join_t), (newcomer, item, "purchase", join_t + 0.001)]
        return (pd.DataFrame(joins, columns=["sharer_id", "item_id", "user_id", "t"]),
                pd.DataFrame(rows, columns=["user_id", "item_id", "event", "t"]))
