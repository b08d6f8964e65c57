"""What a push campaign targets — one product or several (a list, a category), new products
included — and the users it reaches.

The products of a request are ``item_id``, then ``item_ids``, then the model's products of
``category`` (each once). A product the model does not know is represented, in this order, by:

1. ``foldin`` — its vector folded in from its feedback events (models/foldin.py), as soon as one
   user the model knows has interacted with it (serving/foldin_state.py keeps these);
2. ``seeds`` — the mean of ``seed_items``, products the model knows that it resembles;
3. ``category`` — the mean of its category's products (``item_category``, else ``category``).

With events and a stand-in (2 or 3) both, the folded-in vector is shrunk towards the stand-in as
if it were ``SOCIALREC_FOLDIN_PRIOR_USERS`` more users (``foldin+seeds``, ``foldin+category``):
a product's first one or two events say less about it than what it is said to be. With none of
these it cannot be ranked for: 404 naming the product and what it lacks.

One product: users by their score for it (FAISS, then exact: serving/retrieval.py); its buyers
known to the event store are excluded along with the bundle's (``exclude_buyers``). Several: each
user is scored by their best product of the set — with ``exclude_buyers``, their best product
they have not bought; a user who bought them all is removed — and every rule is applied once per
user (one push per user per campaign). Every user is scored exactly, in blocks of users (never
the whole ``users × products`` matrix at once), so a campaign over ``P`` products costs ``P``
times one exact scoring; the response names each user's product (``user_items``) and the
exposures log it, so feedback is attributed to the product that was pushed.

Strategies: one known product keeps retrieval's (``faiss_flat``, ``exact``, ...); one new product
adds its representation (``faiss_flat+item_foldin``, ``exact+item_foldin+category``, ...); a set
answers ``exact+item_set``. ``new_items`` says how each new product was represented.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from socialrec.models.bundle import ModelBundle
from socialrec.serving.foldin_state import ModelSignals
from socialrec.serving.retrieval import Selected, make_rules, select_scored, select_users
from socialrec.serving.rules import CampaignHoldout, PushCounts, buyers
from socialrec.serving.schemas import ID_MAX, PushRequest

#: Scores computed at once when a set is scored (users per block × products).
SCORE_BLOCK = 1 << 22
FOLDIN, SEEDS, CATEGORY = "foldin", "seeds", "category"


class CampaignError(Exception):
    """A campaign the service cannot rank for: becomes a JSON 4xx naming the field."""

    def __init__(self, status: int, error: str, field: str, expected: str) -> None:
        super().__init__(error)
        self.status, self.field, self.expected = status, field, expected


def campaign_id(req: PushRequest) -> str:
    """The campaign (A/B unit, holdout key): as given, else the product, else the category,
    else a digest of the products (ids fit the event store's columns)."""
    if req.campaign_id is not None:
        return req.campaign_id
    if req.item_id is not None:
        return req.item_id
    if req.category is not None and len(req.category) + 9 <= ID_MAX:
        return f"category:{req.category}"
    names = sorted(set(req.item_ids or [])) + ([f"category:{req.category}"] if req.category
                                               else [])
    return "items:" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Target:
    """The products of a campaign: ids, one served vector each, the internal id of each (-1:
    the model does not know it), and how each new product was represented."""

    item_ids: list[str]
    vectors: np.ndarray
    known: np.ndarray
    new_items: dict[str, str]


def resolve(bundle: ModelBundle, signals: ModelSignals, req: PushRequest, version: str
            ) -> Target:
    """The products ``req`` names, as vectors (module doc); :class:`CampaignError` otherwise."""
    seeds = _seed_items(bundle, req, version)
    names = list(dict.fromkeys([*([req.item_id] if req.item_id else []), *(req.item_ids or [])]))
    members = np.zeros(0, dtype=np.int64)
    if req.category is not None:
        if req.category in bundle.categories:
            code = bundle.categories.index(req.category)
            members = np.flatnonzero(bundle.item_category == code)
        if len(members) == 0 and not names:
            raise CampaignError(404, f"category {req.category!r} has no product in model "
                                f"{version}", "category", "a category of the model's products")
    known = bundle.items.to_index(names, missing=-1)
    vectors = bundle.item_emb[np.maximum(known, 0)].copy() if names else np.zeros(
        (0, bundle.item_emb.shape[1]), dtype=np.float32)
    new_items: dict[str, str] = {}
    for row in np.flatnonzero(known < 0):
        vectors[row], new_items[names[row]] = _new_item(bundle, signals, req, names[row], seeds,
                                                        version)
    members = members[~np.isin(members, known)]
    return Target(names + bundle.items.to_ids(members),
                  np.vstack([vectors, bundle.item_emb[members]]).astype(np.float32),
                  np.concatenate([known, members]), new_items)


def _seed_items(bundle: ModelBundle, req: PushRequest, version: str) -> np.ndarray | None:
    if req.seed_items is None:
        return None
    seeds = bundle.items.to_index(req.seed_items, missing=-1)
    if (seeds < 0).any():
        unknown = [s for s, i in zip(req.seed_items, seeds, strict=True) if i < 0]
        raise CampaignError(422, f"seed_items {unknown[:5]!r} are not known to model {version}",
                            "seed_items", "products the model was trained on")
    return seeds


def _new_item(bundle: ModelBundle, signals: ModelSignals, req: PushRequest, item_id: str,
              seeds: np.ndarray | None, version: str) -> tuple[np.ndarray, str]:
    """A product the bundle does not know: its vector and what represented it (module doc)."""
    stand_in, said = None, ""
    if seeds is not None:
        stand_in, said = signals.fold.mean_item(seeds), SEEDS
    category = req.item_category or req.category
    if stand_in is None and category is not None and category in bundle.categories:
        members = np.flatnonzero(bundle.item_category == bundle.categories.index(category))
        stand_in, said = signals.fold.mean_item(members), CATEGORY
    folded = signals.item_vector(item_id)
    if folded is not None:
        if stand_in is None or signals.prior_users <= 0:
            return folded, FOLDIN
        shrunk = signals.fold.with_prior(folded, signals.item_users(item_id), stand_in,
                                         signals.prior_users)
        return shrunk, f"{FOLDIN}+{said}"
    if stand_in is not None:
        return stand_in, said
    field = "item_id" if item_id == req.item_id else "item_ids"
    why = (f"its category {category!r} has no product in the model" if category is not None
           else "no item_category was given")
    raise CampaignError(
        404, f"{field} {item_id!r} is not known to model {version} and has no signal to stand "
        f"for it yet: no feedback event by a known user, no seed_items, and {why}", field,
        "an item id the model was trained on, or feedback events for it, seed_items or "
        "item_category")


@dataclass(frozen=True)
class Push:
    """The users a campaign reaches: retrieval's :class:`Selected` (its strategy completed; its
    fields are this object's), the campaign's products, and for a set each user's product
    (``best``: an index into ``target.item_ids`` for every user of the bundle)."""

    selected: Selected
    target: Target
    best: np.ndarray | None

    @property
    def users(self) -> np.ndarray:
        return self.selected.users

    @property
    def scores(self) -> np.ndarray:
        return self.selected.scores

    @property
    def removed(self) -> dict[str, int]:
        return self.selected.removed

    @property
    def strategy(self) -> str:
        return self.selected.strategy

    @property
    def dropped(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return self.selected.dropped

    @property
    def item_id(self) -> str | None:
        """The product, for a one-product campaign."""
        return self.target.item_ids[0] if self.best is None else None

    def items_of(self, users: np.ndarray) -> str | list[str]:
        """What the exposures of ``users`` (internal ids) name: the product, or each user's."""
        if self.best is None:
            return self.target.item_ids[0]
        return [self.target.item_ids[int(i)] for i in self.best[users]]

    def counting(self, rule_names: Iterable[str]) -> Push:
        """This push with a ``removed`` count for every rule of ``rule_names`` (0: none)."""
        removed = dict.fromkeys(rule_names, 0) | self.removed
        return replace(self, selected=self.selected._replace(removed=removed))

    def fields(self) -> dict[str, Any]:
        """The response's fields about the products: ``item_id`` (one product), ``user_items``
        (a set: each returned user's) and ``new_items``."""
        return {"item_id": self.item_id,
                "user_items": None if self.best is None else self.items_of(self.users),
                "new_items": self.target.new_items or None}


def choose_users(bundle: ModelBundle, signals: ModelSignals, target: Target, k: int,
                 req: PushRequest, store: PushCounts | None, holdout: CampaignHoldout | None
                 ) -> Push:
    """The ``k`` best users for ``target`` under ``req.rules`` (module doc)."""
    exclude = req.rules.exclude_buyers
    if len(target.item_ids) == 1:
        item = int(target.known[0])
        if item >= 0:
            rules = make_rules(bundle, item, req.rules, store, holdout)
            return Push(select_users(bundle, item, k, rules), target, None)
        item_id = target.item_ids[0]
        rules = make_rules(bundle, None, req.rules, store, holdout,
                           buyers=signals.buyers(item_id))
        chosen = select_users(bundle, None, k, rules, query=target.vectors[0])
        source = target.new_items[item_id]
        return Push(chosen._replace(strategy=f"{chosen.strategy}+item_{source}"), target, None)
    bought = _bought(bundle, signals, target) if exclude else None
    scores, best = best_of(bundle.user_emb, target.vectors, bought)
    everything = np.flatnonzero(np.isneginf(scores))  # bought every product of the set
    rules = make_rules(bundle, None, req.rules, store, holdout, buyers=everything)
    chosen = select_scored(scores, k, rules)
    return Push(chosen._replace(strategy=f"{chosen.strategy}+item_set"), target, best)


def _bought(bundle: ModelBundle, signals: ModelSignals, target: Target) -> sp.csr_matrix:
    """users × products of the set: who bought which (the bundle's purchases; for new products,
    the buyers the event store reported)."""
    rows, cols = [], []
    for col, (item, item_id) in enumerate(zip(target.known, target.item_ids, strict=True)):
        users = buyers(bundle, int(item)) if item >= 0 else signals.buyers(item_id)
        rows.append(users)
        cols.append(np.full(len(users), col))
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(r), dtype=bool), (r, c)),
                         shape=(len(bundle.user_emb), len(target.item_ids)))


def best_of(user_emb: np.ndarray, vectors: np.ndarray, bought: sp.csr_matrix | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Each user's best score over the products ``vectors`` and which product gives it (ties:
    the first), leaving out products the user bought (``bought``: users × products); a user who
    bought them all scores ``-inf``."""
    n = len(user_emb)
    scores = np.empty(n, dtype=np.float32)
    best = np.empty(n, dtype=np.int64)
    step = max(1, SCORE_BLOCK // max(len(vectors), 1))
    for start in range(0, n, step):
        block = user_emb[start:start + step] @ vectors.T
        if bought is not None:
            mask = bought[start:start + step].tocoo()
            block[mask.row, mask.col] = -np.inf
        best[start:start + step] = block.argmax(axis=1)
        scores[start:start + step] = block.max(axis=1)
    return scores, best
