"""What each replica knows from feedback about products and users its models have not seen:
their folded-in vectors (models/foldin.py), the buyers of new products, and friendships made by
shares — kept within seconds of the feedback, and rebuilt from the event store on start.

* :class:`ModelSignals` — one served bundle's state: for each product the bundle does not know,
  the summed event weight of every known user who interacted with it (and who bought it); for
  each user it does not know (or knows without an interaction), the same over known products;
  their vectors, recomputed whenever one of their events arrives. Events count once (by
  ``event_id``), so the state after any order of arrivals is :func:`~socialrec.models.foldin.
  fold_in_items` / ``fold_in_users`` of the events seen: a pure function of bundle + events.
* :class:`FoldIns` — the replica's states, one per served model version, and how events reach
  them: this replica's ``/feedback`` hands its events over before replying (:meth:`FoldIns.observe`,
  so a product is pushable the moment its first feedback is acknowledged); a background thread
  reads the store every ``SOCIALREC_FOLDIN_SECONDS`` for what other replicas received; a version
  served for the first time (start-up, an alias moving) is built from the store's last
  ``SOCIALREC_FOLDIN_DAYS`` of feedback before its first use. A retrain takes over from there
  (the retrained model knows the products).
* Friendships: a ``join`` answering a ``/share_partners`` response makes the joiner a friend of
  the sharer (the response's requesting user, from its exposures); a new user's friends'
  favourites then answer /recommend until their own events fold them in. (Feedback carries no
  share recipient today; a ``recipient_id`` column, if the store ever has one, is read the same
  way for ``share`` events.)

Settings, from the environment:

=================================  ===============================================================
SOCIALREC_FOLDIN_SECONDS           how often the store is read for other replicas' feedback
                                   (default 2; 0: only this replica's own feedback and start-up)
SOCIALREC_FOLDIN_DAYS              feedback read when a model version is first served (default 30)
SOCIALREC_FOLDIN_LOOKBACK_SECONDS  each read goes back this far before the previous one (default
                                   300): an event another replica received with an older ``ts``
                                   is seen here if it arrives within this margin, else at the
                                   next start or model swap
SOCIALREC_FOLDIN_RULE              ``auto`` (default): each model's own rule (models/foldin.py
                                   ``rule_for``); ``least_squares`` or ``propagation`` for every
                                   model (bench/foldin_rules.py compares them)
SOCIALREC_FOLDIN_PRIOR_USERS       a folded-in product whose push also names its category or seed
                                   items is shrunk towards them as if they were this many more
                                   users (default 1; 0: the events alone; models/foldin.py
                                   ``FoldIn.with_prior``, chosen in bench/foldin_rules.py)
=================================  ===============================================================
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from socialrec.features.events import FEEDBACK_COLUMNS, EventStore, Feedback
from socialrec.models.bundle import ModelBundle
from socialrec.models.foldin import FoldIn, FoldInKind, rule_for
from socialrec.serving.loader import LoadedModel

log = logging.getLogger("socialrec.serving")


@dataclass(frozen=True)
class FoldInSettings:
    poll_seconds: float = 2.0
    window_days: float = 30.0
    lookback_seconds: float = 300.0
    prior_users: float = 1.0
    rule: FoldInKind | None = None  # None: each model's own

    def __post_init__(self) -> None:
        if self.rule not in (None, "least_squares", "propagation"):
            raise ValueError(f"SOCIALREC_FOLDIN_RULE: expected auto, least_squares or "
                             f"propagation, got {self.rule!r}")

    @classmethod
    def from_env(cls) -> FoldInSettings:
        env = os.environ
        return cls(poll_seconds=float(env.get("SOCIALREC_FOLDIN_SECONDS", "2")),
                   window_days=float(env.get("SOCIALREC_FOLDIN_DAYS", "30")),
                   lookback_seconds=float(env.get("SOCIALREC_FOLDIN_LOOKBACK_SECONDS", "300")),
                   prior_users=float(env.get("SOCIALREC_FOLDIN_PRIOR_USERS", "1")),
                   rule=_rule_setting(env.get("SOCIALREC_FOLDIN_RULE", "auto")))


def _rule_setting(value: str) -> FoldInKind | None:
    if value == "auto":
        return None
    if value not in ("least_squares", "propagation"):
        raise ValueError(f"SOCIALREC_FOLDIN_RULE: expected auto, least_squares or propagation, "
                         f"got {value!r}")
    return value  # type: ignore[return-value]  # checked just above


def feedback_frame(events: Iterable[Feedback]) -> pd.DataFrame:
    """Feedback dataclasses as the frame :meth:`EventStore.feedback` returns."""
    return pd.DataFrame([[getattr(e, c) for c in FEEDBACK_COLUMNS] for e in events],
                        columns=FEEDBACK_COLUMNS)


class ModelSignals:
    """The fold-in state of one served bundle (see the module doc)."""

    def __init__(self, bundle: ModelBundle, prior_users: float = 0.0,
                 rule: FoldInKind | None = None) -> None:
        self.bundle = bundle
        self.fold = FoldIn(bundle, rule_for(bundle.meta, rule))
        #: how many users a product's stand-in (category, seed items) counts for beside its
        #: folded-in events (serving/campaigns.py)
        self.prior_users = prior_users
        self._lock = threading.Lock()
        self._counted: set[str] = set()  # event ids already summed
        self._item_pairs: dict[str, dict[int, float]] = {}  # new item -> known user -> weight
        self._buyers: dict[str, set[int]] = {}  # new item -> known users who bought it
        self._user_pairs: dict[str, dict[int, float]] = {}  # cold user -> known item -> weight
        self._item_vectors: dict[str, np.ndarray] = {}
        self._user_vectors: dict[str, np.ndarray] = {}
        self.updated_at: datetime | None = None

    def ingest(self, events: pd.DataFrame) -> tuple[set[str], set[str]]:
        """Count the events not counted yet; returns the new items and cold users whose vectors
        changed."""
        bundle, fold = self.bundle, self.fold
        events = events[events["item_id"].notna()]
        if events.empty:
            return set(), set()
        weight = events["event"].map(dict(fold.rule.event_weights))
        events = events[weight.notna()].assign(weight=weight[weight.notna()])
        new_item = ~events["item_id"].map(bundle.items.__contains__).astype(bool)
        user = bundle.users.to_index(events["user_id"], missing=-1)
        item = bundle.items.to_index(events["item_id"], missing=-1)
        cold = np.ones(len(events), dtype=bool)
        cold[user >= 0] = fold.user_degree[user[user >= 0]] == 0
        item_rows = new_item.to_numpy() & (user >= 0)
        user_rows = cold & (item >= 0)
        relevant = item_rows | user_rows
        items_changed: set[str] = set()
        users_changed: set[str] = set()
        with self._lock:
            fresh = relevant & ~events["event_id"].isin(self._counted).to_numpy()
            for row in np.flatnonzero(fresh):
                e = events.iloc[row]
                if str(e.event_id) in self._counted:  # repeated within this batch
                    continue
                self._counted.add(str(e.event_id))
                if item_rows[row]:
                    pairs = self._item_pairs.setdefault(str(e.item_id), {})
                    pairs[int(user[row])] = pairs.get(int(user[row]), 0.0) + float(e.weight)
                    if e.event == "purchase":
                        self._buyers.setdefault(str(e.item_id), set()).add(int(user[row]))
                    items_changed.add(str(e.item_id))
                if user_rows[row]:
                    pairs = self._user_pairs.setdefault(str(e.user_id), {})
                    pairs[int(item[row])] = pairs.get(int(item[row]), 0.0) + float(e.weight)
                    users_changed.add(str(e.user_id))
            for item_id in items_changed:
                users_of, weights = _arrays(self._item_pairs[item_id])
                self._item_vectors[item_id] = fold.item_vector(users_of, weights)
            for user_id in users_changed:
                items_of, weights = _arrays(self._user_pairs[user_id])
                self._user_vectors[user_id] = fold.user_vector(items_of, weights)
            if items_changed or users_changed:
                self.updated_at = datetime.now(UTC)
        return items_changed, users_changed

    def item_vector(self, item_id: str) -> np.ndarray | None:
        """The folded-in vector of a product the bundle does not know, once a known user has
        interacted with it."""
        return self._item_vectors.get(item_id)

    def item_users(self, item_id: str) -> int:
        """How many known users the product's vector was folded in from."""
        return len(self._item_pairs.get(item_id, ()))

    def buyers(self, item_id: str) -> np.ndarray:
        """Known users who bought a product the bundle does not know (internal ids)."""
        return np.fromiter(self._buyers.get(item_id, ()), dtype=np.int64)

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The folded-in vector of a user the bundle does not know (or knows without an
        interaction), once they interacted with a product the bundle knows."""
        return self._user_vectors.get(user_id)

    def user_items(self, user_id: str) -> np.ndarray:
        """Known products a cold user interacted with (internal ids)."""
        return np.fromiter(self._user_pairs.get(user_id, {}).keys(), dtype=np.int64)

    def summary(self) -> dict[str, Any]:
        return {"rule": self.fold.rule.why, "new_items": len(self._item_vectors),
                "new_users": len(self._user_vectors),
                "updated_at": None if self.updated_at is None else self.updated_at.isoformat()}


def _arrays(pairs: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    keys = np.fromiter(pairs.keys(), dtype=np.int64, count=len(pairs))
    values = np.fromiter(pairs.values(), dtype=np.float64, count=len(pairs))
    return keys, values


class FoldIns:
    """The replica's fold-in states, one per served model version, and the friendships feedback
    made (see the module doc). ``models`` and ``store`` are read at each use: the service's
    current bundles and its event store (None until it answers)."""

    def __init__(self, models: Callable[[], Iterable[LoadedModel]],
                 store: Callable[[], EventStore | None],
                 settings: FoldInSettings | None = None) -> None:
        self.settings = settings or FoldInSettings.from_env()
        self._models, self._store = models, store
        self._states: dict[str, ModelSignals] = {}  # model version -> its state, once built
        self._building: dict[str, ModelSignals] = {}  # being built: observe() feeds them too
        self._build_lock = threading.Lock()
        self._friends: dict[str, set[str]] = {}
        self._pending_joins: dict[str, tuple[set[str], float]] = {}  # request -> joiners, since
        self._resolved: set[tuple[str, str]] = set()  # (request, joiner) already looked up
        self._friends_lock = threading.Lock()
        self._read_since: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading ---------------------------------------------------------------------------------

    def signals(self, model: LoadedModel) -> ModelSignals:
        """The state of ``model``'s version, built from the store the first time it is asked
        for (a request waits for the build; the background thread usually has done it)."""
        state = self._states.get(model.version)
        if state is not None:
            return state
        with self._build_lock:
            state = self._states.get(model.version)
            if state is None:
                state = self._build(model)
                self._states[model.version] = state
                self._building.pop(model.version, None)
        return state

    def friends(self, user_id: str) -> set[str]:
        """Friends of ``user_id`` made by feedback (shares answered by a join), both ways."""
        return set(self._friends.get(user_id, ()))

    def status(self) -> dict[str, Any]:
        return {"models": {v: s.summary() for v, s in sorted(self._states.items())},
                "friendships": sum(len(f) for f in self._friends.values()) // 2,
                "pending_joins": len(self._pending_joins),
                "read_since": None if self._read_since is None else self._read_since.isoformat()}

    # -- events in -------------------------------------------------------------------------------

    def observe(self, events: list[Feedback]) -> None:
        """This replica's feedback, committed: counted at once by every built state."""
        if not events:
            return
        frame = feedback_frame(events)
        for state in [*self._states.values(), *self._building.values()]:
            state.ingest(frame)
        self._note_joins(frame)

    def poll(self) -> None:
        """One read of the store: feedback since the previous read (less the lookback) into
        every state; states of versions no longer served dropped; new versions built; joins
        resolved into friendships."""
        store = self._store()
        if store is None:
            return
        served = {m.version: m for m in self._models()}
        for version in set(self._states) - set(served):
            self._states.pop(version, None)
        for model in served.values():
            self.signals(model)
        started = datetime.now(UTC)
        since = (self._read_since or started) - timedelta(seconds=self.settings.lookback_seconds)
        frame = store.feedback(since=since)
        for state in list(self._states.values()):
            state.ingest(frame)
        self._note_joins(frame)
        self._resolve_joins(store)
        self._read_since = started

    def _build(self, model: LoadedModel) -> ModelSignals:
        """A new version's state from the store's window (caller holds ``_build_lock``). The
        state is put among those being built before the read, so an event committed meanwhile
        is either in the read or handed over by :meth:`observe` (counted once either way);
        requests see it once it is complete."""
        state = ModelSignals(model.bundle, self.settings.prior_users, self.settings.rule)
        self._building[model.version] = state
        store = self._store()
        if store is None:
            return state
        started = time.perf_counter()
        since = datetime.now(UTC) - timedelta(days=self.settings.window_days)
        frame = store.feedback(since=since)
        items, users = state.ingest(frame)
        self._note_joins(frame)
        self._resolve_joins(store)
        log.info("fold-in state of %s built from %d feedback events of the last %g days in "
                 "%.2f s: %d new items, %d new users (%s)", model.version, len(frame),
                 self.settings.window_days, time.perf_counter() - started, len(items),
                 len(users), state.fold.rule.why)
        return state

    # -- friendships -----------------------------------------------------------------------------

    def _note_joins(self, frame: pd.DataFrame) -> None:
        pairs: list[tuple[str, str]] = []
        joins = frame[(frame["event"] == "join") & frame["request_id"].notna()]
        now = time.monotonic()
        with self._friends_lock:
            for request_id, user_id in zip(joins["request_id"], joins["user_id"], strict=True):
                if (str(request_id), str(user_id)) in self._resolved:
                    continue  # read again within the lookback
                joiners, since = self._pending_joins.get(str(request_id), (set(), now))
                joiners.add(str(user_id))
                self._pending_joins[str(request_id)] = (joiners, since)
        if "recipient_id" in frame.columns:  # shares naming their recipient, if feedback has it
            shares = frame[(frame["event"] == "share") & frame["recipient_id"].notna()]
            pairs += list(zip(shares["user_id"].astype(str), shares["recipient_id"].astype(str),
                              strict=True))
        self._befriend(pairs)

    def _resolve_joins(self, store: EventStore) -> None:
        """Joins whose share response is in the store become friendships; those it never shows
        (not a share response, or an unknown request) are dropped after the lookback."""
        with self._friends_lock:
            pending = dict(self._pending_joins)
        if not pending:
            return
        sharers = store.sharers(list(pending))
        pairs = [(sharers[r], joiner) for r, (joiners, _) in pending.items() if r in sharers
                 for joiner in joiners]
        expired = time.monotonic() - self.settings.lookback_seconds
        with self._friends_lock:
            for request_id, (joiners, since) in pending.items():
                if request_id in sharers or since < expired:
                    self._pending_joins.pop(request_id, None)
                    self._resolved.update((request_id, j) for j in joiners)
        self._befriend(pairs)

    def _befriend(self, pairs: list[tuple[str, str]]) -> None:
        with self._friends_lock:
            for a, b in pairs:
                if a != b:
                    self._friends.setdefault(a, set()).add(b)
                    self._friends.setdefault(b, set()).add(a)

    # -- background ------------------------------------------------------------------------------

    def start(self) -> None:
        """Read the store every ``poll_seconds`` in a daemon thread (none when 0)."""
        if self.settings.poll_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="socialrec-foldin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Poll at once (building the served versions' states before the first request needs
        them), then every ``poll_seconds``."""
        while True:
            try:
                self.poll()
            except Exception as exc:  # the store may be down: the next poll tries again
                log.warning("fold-in: reading the event store failed: %s", exc)
            if self._stop.wait(self.settings.poll_seconds):
                return

    def close(self) -> None:
        self._stop.set()
