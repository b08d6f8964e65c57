"""Business rules of a push: which candidate users must not receive it.

Each rule is one small class holding its own parameters; :meth:`Rule.blocked` takes an array of
candidate users (internal ids) and says, for each, whether the rule removes it. Retrieval
(serving/retrieval.py) applies the rules in order to the candidates FAISS returns, each rule
seeing only the survivors of the previous ones, and counts what each removed.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from socialrec.features.experiments import in_holdout
from socialrec.models.bundle import ModelBundle


class PushCounts(Protocol):
    """What the frequency cap needs from the event store (features/events.py)."""

    def push_counts(self, user_ids: list[str], since: datetime) -> dict[str, int]: ...


@runtime_checkable
class Unsubscribes(Protocol):
    """What the opt-out rule needs from the event store: who sent an ``unsubscribe``."""

    def unsubscribed(self, user_ids: list[str], until: datetime | None = None) -> set[str]: ...


class Rule(ABC):
    #: The key of this rule in a response's ``removed`` counts.
    name: str

    @abstractmethod
    def blocked(self, users: np.ndarray) -> np.ndarray:
        """A boolean array: True where ``users[i]`` must not receive the push."""


_by_item: dict[int, sp.csc_matrix] = {}


def buyers(bundle: ModelBundle, item: int) -> np.ndarray:
    """Users who bought ``item``, from a column-major copy of ``bundle.purchases`` made once per
    matrix (kept while the matrix lives)."""
    key = id(bundle.purchases)
    csc = _by_item.get(key)
    if csc is None:
        csc = _by_item[key] = bundle.purchases.tocsc()
        weakref.finalize(bundle.purchases, _by_item.pop, key, None)
    return csc.indices[csc.indptr[item]:csc.indptr[item + 1]]


class ExcludeBuyers(Rule):
    """Users who already bought the item (``bundle.purchases``) are not pushed it again; ``also``
    adds buyers the bundle does not hold (of a product it does not know, ``item`` None: those
    the event store reported, serving/campaigns.py)."""

    name = "exclude_buyers"

    def __init__(self, bundle: ModelBundle, item: int | None,
                 also: np.ndarray | None = None) -> None:
        known = buyers(bundle, item) if item is not None else np.zeros(0, dtype=np.int64)
        self.buyers = known if also is None else np.union1d(known, also)

    def blocked(self, users: np.ndarray) -> np.ndarray:
        return np.isin(users, self.buyers)


class OptOut(Rule):
    """Users who did not opt in to pushes (``bundle.push_opt_in``), and, given the event store,
    users who opted out since through an ``unsubscribe`` feedback event.

    The store is asked at every request (for the candidates the bundle lets through), so an
    opt-out posted to any replica is honoured by every replica from the next push on.
    """

    name = "opt_out"

    def __init__(self, bundle: ModelBundle, store: Unsubscribes | None = None) -> None:
        self.opt_in = bundle.push_opt_in
        self.users = bundle.users
        self.store = store

    def blocked(self, users: np.ndarray) -> np.ndarray:
        out = ~self.opt_in[users]
        if self.store is not None and not out.all():
            ids = self.users.to_ids(users[~out])
            gone = self.store.unsubscribed(ids)
            if gone:
                out[~out] = np.fromiter((u in gone for u in ids), dtype=bool, count=len(ids))
        return out


class FrequencyCap(Rule):
    """Users who already received ``max_pushes`` pushes in the last ``window_hours``.

    Pushes are the ``push_targets`` exposures of the event store, so every push this service
    answered counts, whatever the campaign.
    """

    name = "frequency_cap"

    def __init__(self, bundle: ModelBundle, store: PushCounts, max_pushes: int,
                 window_hours: float, now: datetime | None = None) -> None:
        if max_pushes < 1:
            raise ValueError(f"frequency_cap.max_pushes: expected >= 1, got {max_pushes}")
        if window_hours <= 0:
            raise ValueError(f"frequency_cap.window_hours: expected > 0, got {window_hours}")
        self.users = bundle.users
        self.store = store
        self.max_pushes = max_pushes
        self.since = (now or datetime.now(UTC)) - timedelta(hours=window_hours)

    def blocked(self, users: np.ndarray) -> np.ndarray:
        if len(users) == 0:
            return np.zeros(0, dtype=bool)
        ids = self.users.to_ids(users)
        counts = self.store.push_counts(ids, self.since)
        return np.fromiter((counts[u] >= self.max_pushes for u in ids), dtype=bool,
                           count=len(ids))


class CampaignHoldout(Rule):
    """A random ``share`` of users held out of this campaign (the A/B holdout; see
    features/experiments.py).

    ``salt`` is the experiment's salt; the campaign id makes each campaign's holdout its own.
    """

    name = "holdout"

    def __init__(self, bundle: ModelBundle, salt: str, share: float, campaign: str) -> None:
        if not 0.0 <= share < 1.0:
            raise ValueError(f"holdout share: expected 0 <= share < 1, got {share}")
        self.users = bundle.users
        self.salt, self.share, self.campaign = salt, share, campaign

    def blocked(self, users: np.ndarray) -> np.ndarray:
        if self.share == 0.0 or len(users) == 0:
            return np.zeros(len(users), dtype=bool)
        return in_holdout(self.salt, self.share, self.campaign, self.users.to_ids(users))
