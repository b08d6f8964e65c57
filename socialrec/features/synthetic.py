"""A seeded synthetic social-commerce world, for demos, tests and scale benchmarks.

The generative story (every step vectorised over all users at once, so a million users take about
a minute and the 20k-user demo a second or two; the same seed makes the same world, row for row):

1. **Communities.** Community sizes are drawn from a Dirichlet; every user and every item has one
   primary community (every community gets at least one item). Each community belongs to one of
   ``n_communities // 2`` product categories; an item takes its community's category (90%) or a
   random one, and a log-normal price around its category's price level.
2. **Friends.** A Chung–Lu graph with homophily: each user gets a power-law (Pareto) expected
   degree; an edge starts at a user drawn by degree and ends, with probability ``homophily``, at a
   user of the same community drawn by degree, else at any user. Edges are undirected (the social
   table lists both directions), without self-loops or repeats. Each tie has a hidden strength
   (Beta(2, 3), +0.25 within a community) and a formation time: 80% before the 90-day window, the
   rest inside it (the observed weight is 1: tie strength is for models to learn from co-activity).
3. **Own choices.** Users have log-normal activity. Each own choice of an item is, with probability
   ``p_global / (1 - p_social)``, drawn by global popularity, otherwise from the user's community
   by popularity; item popularity is power-law (Pareto), so it is power-law within communities too.
4. **Social influence.** A further ``p_social`` share of choices copies a friend (drawn by tie
   strength): an item the friend bought if they bought any, else one they looked at, some time
   (exponential, mean 2 days) after the friend did, and converts to a purchase more often than an
   own choice. A model that reads the friend graph can therefore predict items that neither the
   user's history nor their community's popularity explain.
5. **Funnel.** Every choice is a view at a uniform time in the window, then click, cart and purchase
   with falling probabilities, each a little later.
6. **Shares.** A buyer shares the item (probability ``share_prob``) with 1 + Poisson friends drawn
   by tie strength; the sharer gets a ``share`` interaction and a share record per recipient. A
   recipient joins with probability ``sigmoid(-3.3 + 3·strength + 1·[item from the recipient's
   community])``; joiners get ``join`` and ``purchase`` interactions, and their purchases can be
   shared again, ``cascade_depth`` generations deep.

The users table carries ``push_opt_in`` (90% true) and the hidden ``community``; the items table
``category``, ``price`` and ``community``. Events after the window's end are clamped to its last
second (copied choices falling after it are dropped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from socialrec.features.tables import EVENT_TYPES, Dataset, ValidationReport

START_TS = 1_717_200_000  # 2024-06-01 00:00:00 UTC
DAY = 86_400
_EVENT = {name: np.int8(k) for k, name in enumerate(EVENT_TYPES)}


class SyntheticConfig(BaseModel):
    """The ``dataset.synthetic`` section: the keyword arguments of :func:`generate`, with its
    defaults (tests/training/test_config.py checks that the two agree)."""

    model_config = ConfigDict(extra="forbid")

    n_users: int = Field(20000, ge=2)
    n_items: int = Field(5000, ge=1)
    n_communities: int = Field(40, ge=1)
    seed: int = 7
    days: int = Field(90, ge=1)
    start_ts: int = START_TS
    mean_friends: float = Field(10.0, ge=0)
    homophily: float = Field(0.85, ge=0, le=1)
    choices_per_user: float = Field(16.0, gt=0)
    p_social: float = Field(0.3, ge=0, le=1)
    p_global: float = Field(0.15, ge=0, le=1)
    share_prob: float = Field(0.3, ge=0, le=1)
    share_fanout: float = Field(2.0, ge=0)
    cascade_depth: int = Field(2, ge=0)
    push_opt_in_rate: float = Field(0.9, ge=0, le=1)


def generate(
    n_users: int = 20000,
    n_items: int = 5000,
    n_communities: int = 40,
    seed: int = 7,
    *,
    days: int = 90,
    start_ts: int = START_TS,
    mean_friends: float = 10.0,
    homophily: float = 0.85,
    choices_per_user: float = 16.0,
    p_social: float = 0.3,
    p_global: float = 0.15,
    share_prob: float = 0.3,
    share_fanout: float = 2.0,
    cascade_depth: int = 2,
    push_opt_in_rate: float = 0.9,
) -> Dataset:
    """A social-commerce world of ``n_users`` users and ``n_items`` items (module docstring).

    The defaults give ~30 interactions and ~10 friends per user.
    """
    if n_users < 2 or n_items < n_communities or n_communities < 1:
        raise ValueError("need n_users >= 2 and n_items >= n_communities >= 1")
    if not 0 <= p_social + p_global < 1:
        raise ValueError("need 0 <= p_social + p_global < 1")
    rng = np.random.default_rng(seed)
    end = start_ts + days * DAY

    # 1. communities, categories, prices
    comm_p = rng.dirichlet(np.full(n_communities, 3.0))
    user_comm = rng.choice(n_communities, n_users, p=comm_p)
    item_comm = rng.permutation(np.concatenate([
        np.arange(n_communities), rng.choice(n_communities, n_items - n_communities, p=comm_p)]))
    n_categories = max(1, n_communities // 2)
    comm_category = rng.permutation(n_communities) % n_categories
    item_category = np.where(rng.random(n_items) < 0.9, comm_category[item_comm],
                             rng.integers(0, n_categories, n_items))
    price_level = rng.uniform(np.log(5), np.log(300), n_categories)
    price = np.round(np.exp(rng.normal(price_level[item_category], 0.5)), 2)
    popularity = rng.pareto(1.5, n_items) + 1.0

    # 2. friends
    friends = _friend_graph(rng, user_comm, mean_friends, homophily, start_ts, days)

    # 3. own choices, by community or global popularity
    activity = rng.lognormal(0.0, 0.75, n_users)
    activity /= activity.mean()
    n_own = 1 + rng.poisson(activity * max(choices_per_user * (1 - p_social) - 1, 0))
    own_user = np.repeat(np.arange(n_users), n_own)
    own_item = _pick_by_group(rng, user_comm[own_user], item_comm, popularity)
    by_global = rng.random(len(own_user)) < p_global / (1 - p_social)
    own_item[by_global] = _pick_by_group(rng, np.zeros(by_global.sum(), dtype=np.int64),
                                         np.zeros(n_items, dtype=np.int64), popularity)
    own_ts = start_ts + rng.integers(0, days * DAY, len(own_user))
    events = _Events()
    own_level, own_last_ts = events.funnel(rng, own_user, own_item, own_ts, end, (0.5, 0.4, 0.5))

    # 4. social influence: copy a friend's purchase (or, failing that, something they looked at)
    n_copy = rng.poisson(activity * choices_per_user * p_social)
    n_copy[friends.degree == 0] = 0
    copy_user = np.repeat(np.arange(n_users), n_copy)
    friend = friends.dst[friends.pick(rng, copy_user)]
    # the friend's choices at their best funnel level (own choices are already grouped by user)
    best = np.maximum.reduceat(own_level, np.cumsum(n_own) - n_own)
    top = np.flatnonzero(own_level == best[own_user])
    top_ptr = np.concatenate([[0], np.cumsum(np.bincount(own_user[top], minlength=n_users))])
    lo, hi = top_ptr[friend], top_ptr[friend + 1]
    copied = top[lo + (rng.random(len(friend)) * (hi - lo)).astype(np.int64)]
    copy_ts = own_last_ts[copied] + rng.exponential(2 * DAY, len(copied)).astype(np.int64)
    keep = copy_ts < end
    events.funnel(rng, copy_user[keep], own_item[copied[keep]], copy_ts[keep], end, (0.7, 0.6, 0.7))

    # 6. shares and their cascades
    buyers = events.purchases()
    share_parts: list[tuple[np.ndarray, ...]] = []
    for _ in range(cascade_depth):
        buyers = _share(rng, buyers, friends, user_comm, item_comm, share_prob, share_fanout, end,
                        events, share_parts)

    return Dataset(
        name="synthetic",
        interactions=events.frame(n_users, n_items),
        social=friends.frame(n_users),
        shares=_shares_frame(share_parts, n_users, n_items),
        items=pd.DataFrame({
            "item_id": _ids("i", np.arange(n_items), n_items),
            "category": _ids("cat_", item_category, n_categories),
            "price": price.astype(np.float64),
            "community": item_comm.astype(np.int64),
        }),
        users=pd.DataFrame({
            "user_id": _ids("u", np.arange(n_users), n_users),
            "push_opt_in": rng.random(n_users) < push_opt_in_rate,
            "community": user_comm.astype(np.int64),
        }),
        social_symmetric=True,
        notes=[f"synthetic world (features/synthetic.py): seed {seed}, {n_communities} "
               f"communities, {days} days from {pd.Timestamp(start_ts, unit='s').date()}"],
        report=ValidationReport(),
    )


def _pick_in_ranges(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray,
                    cum: np.ndarray) -> np.ndarray:
    """For each draw, a position in ``[lo, hi)`` picked with probability proportional to the
    weights whose running sum is ``cum`` (ranges must be non-empty)."""
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    target = base + rng.random(len(lo)) * (cum[hi - 1] - base)
    return np.clip(np.searchsorted(cum, target, side="right"), lo, hi - 1)


def _pick_by_group(rng: np.random.Generator, draw_group: np.ndarray, member_group: np.ndarray,
                   weight: np.ndarray) -> np.ndarray:
    """For each draw, a member of group ``draw_group[k]`` picked proportionally to ``weight``
    (every drawn group must have a member)."""
    order = np.argsort(member_group, kind="stable")
    n_groups = max(member_group.max(initial=0), draw_group.max(initial=0)) + 1
    ptr = np.concatenate([[0], np.cumsum(np.bincount(member_group, minlength=n_groups))])
    cum = np.cumsum(weight[order])
    return order[_pick_in_ranges(rng, ptr[draw_group], ptr[draw_group + 1], cum)]


class _Friends:
    """The undirected friend graph: CSR adjacency (both directions) with hidden tie strengths."""

    def __init__(self, a: np.ndarray, b: np.ndarray, strength: np.ndarray, ts: np.ndarray,
                 n_users: int) -> None:
        self.a, self.b, self.strength_ab, self.ts_ab = a, b, strength, ts
        src = np.concatenate([a, b])
        order = np.argsort(src, kind="stable")
        self.dst = np.concatenate([b, a])[order]
        self.strength = np.concatenate([strength, strength])[order]
        self.degree = np.bincount(src, minlength=n_users)
        self.ptr = np.concatenate([[0], np.cumsum(self.degree)])
        self._cum = np.cumsum(self.strength)

    def pick(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """Adjacency positions of one friend per user, drawn by tie strength (users need one)."""
        return _pick_in_ranges(rng, self.ptr[users], self.ptr[users + 1], self._cum)

    def frame(self, n_users: int) -> pd.DataFrame:
        src, dst = np.concatenate([self.a, self.b]), np.concatenate([self.b, self.a])
        order = np.lexsort((dst, src))
        return pd.DataFrame({
            "src": _ids("u", src[order], n_users),
            "dst": _ids("u", dst[order], n_users),
            "weight": np.ones(len(src), dtype=np.float64),
            "ts": pd.array(np.concatenate([self.ts_ab, self.ts_ab])[order], dtype="Int64"),
        })


def _friend_graph(rng: np.random.Generator, user_comm: np.ndarray, mean_friends: float,
                  homophily: float, start_ts: int, days: int) -> _Friends:
    n = len(user_comm)
    weight = rng.pareto(2.5, n) + 1.0
    weight = np.minimum(weight * mean_friends / weight.mean(), max(1.0, (n - 1) / 2))
    m = round(n * mean_friends / 2)
    src = _pick_by_group(rng, np.zeros(m, dtype=np.int64), np.zeros(n, dtype=np.int64), weight)
    dst = _pick_by_group(rng, user_comm[src], user_comm, weight)
    across = rng.random(m) >= homophily
    dst[across] = _pick_by_group(rng, np.zeros(across.sum(), dtype=np.int64),
                                 np.zeros(n, dtype=np.int64), weight)
    a, b = np.minimum(src, dst), np.maximum(src, dst)
    key = np.unique((a * n + b)[a != b])
    a, b = key // n, key % n
    strength = np.minimum(rng.beta(2.0, 3.0, len(a)) + 0.25 * (user_comm[a] == user_comm[b]), 1.0)
    before = rng.random(len(a)) < 0.8
    ts = np.where(before, start_ts - rng.integers(1, 365 * DAY, len(a)),
                  start_ts + rng.integers(0, days * DAY, len(a)))
    return _Friends(a, b, strength, ts, n)


class _Events:
    """Interactions accumulated as integer arrays (user, item, event code, ts)."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, user: np.ndarray, item: np.ndarray, event: str, ts: np.ndarray) -> None:
        self.parts.append((user, item, np.full(len(user), _EVENT[event]), ts))

    def funnel(self, rng: np.random.Generator, user: np.ndarray, item: np.ndarray, ts: np.ndarray,
               end: int, rates: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        """view → click → cart → purchase, each with its rate given the previous step, a little
        later each time. Returns each choice's deepest level (0..3) and the time it was reached."""
        n = len(user)
        level = np.zeros(n, dtype=np.int8)
        last = ts.copy()
        self.add(user, item, "view", ts)
        for step, (event, rate, delay) in enumerate(
                zip(("click", "cart", "purchase"), rates, (120, 600, 3600), strict=True), start=1):
            went = (level == step - 1) & (rng.random(n) < rate)
            level[went] = step
            later = last[went] + rng.exponential(delay, went.sum()).astype(np.int64)
            last[went] = np.minimum(later, end - 1)
            self.add(user[went], item[went], event, last[went])
        return level, last

    def purchases(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [p for p in self.parts if len(p[2]) and p[2][0] == _EVENT["purchase"]]
        return tuple(np.concatenate([p[k] for p in parts]) for k in (0, 1, 3))  # type: ignore[return-value]

    def frame(self, n_users: int, n_items: int) -> pd.DataFrame:
        user, item, event, ts = (np.concatenate([p[k] for p in self.parts]) for k in range(4))
        order = np.lexsort((event, item, user, ts))
        return pd.DataFrame({
            "user_id": _ids("u", user[order], n_users),
            "item_id": _ids("i", item[order], n_items),
            "event": pd.array(pa.array(list(EVENT_TYPES)).take(pa.array(event[order])),
                              dtype="string"),
            "ts": pd.array(ts[order].astype(np.int64), dtype="Int64"),
            "value": np.ones(len(order), dtype=np.float64),
        })


def _share(rng: np.random.Generator, buyers: tuple[np.ndarray, np.ndarray, np.ndarray],
           friends: _Friends, user_comm: np.ndarray, item_comm: np.ndarray, share_prob: float,
           share_fanout: float, end: int, events: _Events,
           out: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One generation of shares of ``buyers``' purchases; returns the joiners' purchases."""
    user, item, ts = buyers
    shares = (rng.random(len(user)) < share_prob) & (friends.degree[user] > 0)
    user, item = user[shares], item[shares]
    ts = np.minimum(ts[shares] + rng.exponential(1800, shares.sum()).astype(np.int64), end - 1)
    events.add(user, item, "share", ts)
    fanout = np.minimum(1 + rng.poisson(max(share_fanout - 1, 0), len(user)), friends.degree[user])
    action = np.repeat(np.arange(len(user)), fanout)
    pos = friends.pick(rng, user[action])
    # a friend drawn twice for the same share action is one recipient
    _, first = np.unique(action * len(friends.degree) + friends.dst[pos], return_index=True)
    action, pos = action[first], pos[first]
    recipient = friends.dst[pos]
    share_item, share_ts = item[action], ts[action]
    own_taste = user_comm[recipient] == item_comm[share_item]
    logit = -3.3 + 3.0 * friends.strength[pos] + 1.0 * own_taste
    joined = rng.random(len(pos)) < 1.0 / (1.0 + np.exp(-logit))
    out.append((user[action], share_item, recipient, share_ts, joined))
    j_user, j_item = recipient[joined], share_item[joined]
    join_delay = rng.exponential(4 * 3600, joined.sum()).astype(np.int64)
    join_ts = np.minimum(share_ts[joined] + join_delay, end - 1)
    buy_ts = np.minimum(join_ts + rng.exponential(1200, len(join_ts)).astype(np.int64), end - 1)
    events.add(j_user, j_item, "join", join_ts)
    events.add(j_user, j_item, "purchase", buy_ts)
    return j_user, j_item, buy_ts


def _shares_frame(parts: list[tuple[np.ndarray, ...]], n_users: int, n_items: int) -> pd.DataFrame:
    sharer, item, recipient, ts, joined = (np.concatenate([p[k] for p in parts]) for k in range(5))
    order = np.lexsort((recipient, item, sharer, ts))
    return pd.DataFrame({
        "sharer_id": _ids("u", sharer[order], n_users),
        "item_id": _ids("i", item[order], n_items),
        "recipient_id": _ids("u", recipient[order], n_users),
        "ts": pd.array(ts[order].astype(np.int64), dtype="Int64"),
        "joined": joined[order].astype(bool),
    })


def _ids(prefix: str, codes: np.ndarray, n: int) -> pd.arrays.ArrowStringArray:
    """External string ids ``prefix + code`` (built once per distinct code, then gathered)."""
    names = pa.array(np.char.add(prefix, np.arange(n).astype(str)))
    return pd.array(names.take(pa.array(np.asarray(codes, dtype=np.int64))), dtype="string")


# --- worlds larger than memory: the same story, written in chunks of users ----------------------


def arrow_ids(prefix: str, codes: np.ndarray) -> pa.Array:
    """``prefix + code`` for each code, built by Arrow (no Python string per id)."""
    text = pc.cast(pa.array(np.asarray(codes, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, text, "")


def write_world(out: str | Path, n_users: int, n_items: int, n_communities: int = 40,
                seed: int = 7, *, chunk_users: int = 250_000, days: int = 90,
                start_ts: int = START_TS, mean_friends: float = 10.0, homophily: float = 0.85,
                choices_per_user: float = 16.0, p_social: float = 0.3, p_global: float = 0.15,
                share_prob: float = 0.3, share_fanout: float = 2.0, cascade_depth: int = 2,
                push_opt_in_rate: float = 0.9) -> dict[str, int]:
    """:func:`generate`'s world written as Parquet parts, ``chunk_users`` users at a time, so
    that memory holds the per-user and friend arrays plus one chunk's events, never the tables::

        out/interactions/part-*.parquet  out/shares/part-*.parquet  out/social/part-*.parquet
        out/users/part-*.parquet         out/items.parquet

    The story is :func:`generate`'s with one difference that chunks need: a copied choice copies
    the friend's *representative* choice (their first choice at their deepest funnel level),
    kept per user from a first pass over the chunks, instead of one drawn among their top ones.
    Each chunk draws from its own seeded stream, so the same arguments write the same files; the
    rows differ from :func:`generate`'s. Returns row counts per table.
    """
    import pyarrow.parquet as pq

    if n_users < 2 or n_items < n_communities or n_communities < 1:
        raise ValueError("need n_users >= 2 and n_items >= n_communities >= 1")
    out = Path(out)
    for sub in ("interactions", "shares", "social", "users"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    end = start_ts + days * DAY
    comm_p = rng.dirichlet(np.full(n_communities, 3.0))
    user_comm = rng.choice(n_communities, n_users, p=comm_p).astype(np.int32)
    item_comm = rng.permutation(np.concatenate([
        np.arange(n_communities), rng.choice(n_communities, n_items - n_communities, p=comm_p)]))
    n_categories = max(1, n_communities // 2)
    comm_category = rng.permutation(n_communities) % n_categories
    item_category = np.where(rng.random(n_items) < 0.9, comm_category[item_comm],
                             rng.integers(0, n_categories, n_items))
    price_level = rng.uniform(np.log(5), np.log(300), n_categories)
    price = np.round(np.exp(rng.normal(price_level[item_category], 0.5)), 2)
    popularity = rng.pareto(1.5, n_items) + 1.0
    friends = _friend_graph(rng, user_comm, mean_friends, homophily, start_ts, days)
    activity = rng.lognormal(0.0, 0.75, n_users).astype(np.float32)
    activity /= activity.mean()
    rows = {"interactions": 0, "shares": 0, "social": 0, "users": 0, "items": n_items}

    pq.write_table(pa.table({
        "item_id": arrow_ids("i", np.arange(n_items)),
        "category": arrow_ids("cat_", item_category), "price": price.astype(np.float64),
        "community": item_comm.astype(np.int64)}), out / "items.parquet")
    chunks = [(lo, min(lo + chunk_users, n_users)) for lo in range(0, n_users, chunk_users)]

    def own_choices(k: int, lo: int, hi: int) -> tuple[_Events, np.ndarray, np.ndarray,
                                                        np.ndarray, np.ndarray]:
        crng = np.random.default_rng([seed, 1, k])
        users = np.arange(lo, hi)
        n_own = 1 + crng.poisson(activity[users] * max(choices_per_user * (1 - p_social) - 1, 0))
        own_user = np.repeat(users, n_own)
        own_item = _pick_by_group(crng, user_comm[own_user], item_comm, popularity)
        by_global = crng.random(len(own_user)) < p_global / (1 - p_social)
        own_item[by_global] = _pick_by_group(crng, np.zeros(by_global.sum(), dtype=np.int64),
                                             np.zeros(n_items, dtype=np.int64), popularity)
        own_ts = start_ts + crng.integers(0, days * DAY, len(own_user))
        events = _Events()
        level, last = events.funnel(crng, own_user, own_item, own_ts, end, (0.5, 0.4, 0.5))
        return events, own_user, own_item, level, last

    # pass 1: every user's representative choice (first at their deepest level)
    rep_item = np.zeros(n_users, dtype=np.int32)
    rep_ts = np.zeros(n_users, dtype=np.int64)
    for k, (lo, hi) in enumerate(chunks):
        _, own_user, own_item, level, last = own_choices(k, lo, hi)
        order = np.lexsort((-level.astype(np.int64), own_user))  # by user, deepest first
        first = order[np.r_[True, own_user[order][1:] != own_user[order][:-1]]]
        rep_item[own_user[first]] = own_item[first]
        rep_ts[own_user[first]] = last[first]

    # pass 2: each chunk's own choices again, its copies, shares and cascades, written out
    for k, (lo, hi) in enumerate(chunks):
        events = own_choices(k, lo, hi)[0]
        crng = np.random.default_rng([seed, 2, k])
        users = np.arange(lo, hi)
        n_copy = crng.poisson(activity[users] * choices_per_user * p_social)
        n_copy[friends.degree[users] == 0] = 0
        copy_user = np.repeat(users, n_copy)
        friend = friends.dst[friends.pick(crng, copy_user)]
        copy_ts = rep_ts[friend] + crng.exponential(2 * DAY, len(friend)).astype(np.int64)
        keep = copy_ts < end
        events.funnel(crng, copy_user[keep], rep_item[friend[keep]].astype(np.int64),
                      copy_ts[keep], end, (0.7, 0.6, 0.7))
        buyers = events.purchases()
        share_parts: list[tuple[np.ndarray, ...]] = []
        for _ in range(cascade_depth):
            buyers = _share(crng, buyers, friends, user_comm, item_comm, share_prob,
                            share_fanout, end, events, share_parts)
        user, item, event, ts = (np.concatenate([p[j] for p in events.parts]) for j in range(4))
        order = np.lexsort((event, item, user, ts))
        pq.write_table(pa.table({
            "user_id": arrow_ids("u", user[order]), "item_id": arrow_ids("i", item[order]),
            "event": pa.array(list(EVENT_TYPES)).take(pa.array(event[order])),
            "ts": pa.array(ts[order].astype(np.int64)),
            "value": pa.array(np.ones(len(order)))}),
            out / "interactions" / f"part-{k:05d}.parquet")
        rows["interactions"] += len(order)
        if share_parts:
            sharer, s_item, recipient, s_ts, joined = (
                np.concatenate([p[j] for p in share_parts]) for j in range(5))
            pq.write_table(pa.table({
                "sharer_id": arrow_ids("u", sharer), "item_id": arrow_ids("i", s_item),
                "recipient_id": arrow_ids("u", recipient), "ts": pa.array(s_ts.astype(np.int64)),
                "joined": pa.array(joined.astype(bool))}), out / "shares" / f"part-{k:05d}.parquet")
            rows["shares"] += len(sharer)
        urng = np.random.default_rng([seed, 3, k])
        pq.write_table(pa.table({
            "user_id": arrow_ids("u", users),
            "push_opt_in": pa.array(urng.random(len(users)) < push_opt_in_rate),
            "community": pa.array(user_comm[users].astype(np.int64))}),
            out / "users" / f"part-{k:05d}.parquet")
        rows["users"] += len(users)
        # the friendships of this chunk's users, both directions (as generate's social table)
        sel = (friends.a >= lo) & (friends.a < hi)
        a, b = friends.a[sel], friends.b[sel]
        ts_ab = friends.ts_ab[sel]
        pq.write_table(pa.table({
            "src": arrow_ids("u", np.r_[a, b]), "dst": arrow_ids("u", np.r_[b, a]),
            "weight": pa.array(np.ones(2 * len(a))), "ts": pa.array(np.r_[ts_ab, ts_ab])}),
            out / "social" / f"part-{k:05d}.parquet")
        rows["social"] += 2 * len(a)
    return rows
