"""Exposure logging off the request path.

Every served list becomes exposure rows in the event store, but a request does not wait for the
insert (an fsync'd SQLite commit costs more than the whole retrieval): it hands the list to
:class:`ExposureLog`, whose writer thread inserts everything pending in one transaction.
:meth:`ExposureLog.flush` waits until every list handed in before the call is written; the
frequency cap calls it before counting pushes, so a push the service answered is always counted
by the next one. Exposures still queued when the process is killed with SIGKILL are lost
(feedback, by contrast, is written before its reply).

One list always goes in one transaction (a campaign-sized push is one insert); lists waiting
behind it join that transaction until it holds :data:`MAX_BATCH_ROWS` rows. Memory stays bounded
when the store cannot keep up: a list arriving while more than :data:`MAX_PENDING_ROWS` rows wait
is dropped, counted in ``dropped_rows`` and logged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from socialrec.features.events import EventStore, Exposure

log = logging.getLogger("socialrec.serving")

MAX_BATCH_ROWS = 50_000
MAX_PENDING_ROWS = 5_000_000


@dataclass
class ServedList:
    """One response's ranked list; ``user_ids`` / ``item_ids`` are one id for the whole list or
    one per entry."""

    request_id: str
    ts: datetime
    endpoint: str
    experiment: str | None
    variant: str
    model_version: str
    unit_id: str
    user_ids: str | Sequence[str]
    item_ids: str | Sequence[str] | None
    scores: np.ndarray

    def rows(self) -> list[Exposure]:
        n = len(self.scores)
        users = [self.user_ids] * n if isinstance(self.user_ids, str) else self.user_ids
        items = ([self.item_ids] * n if self.item_ids is None or isinstance(self.item_ids, str)
                 else self.item_ids)
        return [
            Exposure(self.request_id, self.ts, self.endpoint, self.experiment, self.variant,
                     self.model_version, self.unit_id, u, i, rank, float(s))
            for rank, (u, i, s) in enumerate(zip(users, items, self.scores, strict=True), 1)
        ]


class ExposureLog:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.queue: queue.SimpleQueue[ServedList | None] = queue.SimpleQueue()
        self.cond = threading.Condition()
        self.queued = 0  # lists handed in
        self.done = 0  # lists written (or given up on)
        self.failed_rows = 0
        self.dropped_rows = 0
        self.pending_rows = 0
        self.thread = threading.Thread(target=self._run, name="socialrec-exposures", daemon=True)
        self.thread.start()

    def log(self, served: ServedList) -> None:
        with self.cond:  # queue order == counter order, which flush relies on
            if self.pending_rows + len(served.scores) > MAX_PENDING_ROWS:
                self.dropped_rows += len(served.scores)
                log.warning("exposure backlog over %d rows: dropped %d (%d so far)",
                            MAX_PENDING_ROWS, len(served.scores), self.dropped_rows)
                return
            self.queued += 1
            self.pending_rows += len(served.scores)
            self.queue.put(served)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every list logged before this call is written; False on timeout."""
        with self.cond:
            target = self.queued
            return self.cond.wait_for(lambda: self.done >= target, timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self.queue.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            rows_in_batch = len(first.scores)
            stop = False
            while rows_in_batch < MAX_BATCH_ROWS:  # what is pending goes in one transaction
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                rows_in_batch += len(nxt.scores)
            rows = [row for served in batch for row in served.rows()]
            try:
                self.store.log_exposures(rows)
            except Exception:
                self.failed_rows += len(rows)
                log.exception("could not log %d exposures (%d lost so far)", len(rows),
                              self.failed_rows)
            with self.cond:
                self.done += len(batch)
                self.pending_rows -= rows_in_batch
                self.cond.notify_all()
            if stop:
                return
