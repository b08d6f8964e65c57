"""Exposure logging off the request path, in a writer process of its own.

Every served list becomes exposure rows in the event store (one per entry: a 10,000-user push is
10,000 rows). Built as one ``Exposure`` object per row and inserted through SQLAlchemy Core with
a dict per row, they cost about 15 µs of Python per row on a quiet machine; done in a thread of
the service, that time was taken from requests through the GIL (a k=100 push went from 2.5 to
7.7 ms p50). So a request only queues its list; a sender thread pickles it down a pipe to
``python -m socialrec.serving.exposures <store url>``, which inserts everything that arrived
together in one transaction and acknowledges each batch on its stdout. The writer inserts in
bulk: :meth:`ServedList.values` checks a list's shared fields once and makes one tuple per row,
:meth:`EventStore.log_exposure_rows` sends them with PostgreSQL's ``COPY`` (psycopg 3) or the
SQLite driver's ``executemany``, about 3x less per row than before (bench/exposure_writes.py);
what is left is mostly the database's own insert and index work. The process stays: the Python
the writer still runs per row (building and binding tuples) would otherwise hold the service's
GIL, while the service's own share is one pickle per list (0.6 µs a row measured on a loaded
machine, in its sender thread).

* :meth:`ExposureLog.flush` waits until every list logged before the call is committed; the
  frequency cap calls it before counting pushes, so a push the service answered is always
  counted by the next one.
* One list always goes in one transaction (a campaign-sized push is one insert); lists arriving
  within :data:`LINGER_SECONDS` join it until it holds :data:`MAX_BATCH_ROWS` rows, so a busy
  service commits a few times per second rather than once per request.
* Memory stays bounded when the store cannot keep up: a list arriving while more than
  :data:`MAX_PENDING_ROWS` rows wait is dropped, counted in ``dropped_rows`` and logged.
* The writer exits when its stdin closes (the service stopped, or was killed: what it had
  received is still written). If the writer dies, :attr:`ExposureLog.alive` turns False (the
  service's /readyz then fails) and lists are dropped and counted rather than queued forever.

Feedback, by contrast, is written by the request itself, before its reply.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from typing import Any, BinaryIO

import numpy as np

log = logging.getLogger("socialrec.serving")

MAX_BATCH_ROWS = 50_000
#: How long the writer waits for more lists to share a transaction with (each transaction costs
#: ~1.5 ms of fixed work and an fsync, as much as 100 rows).
LINGER_SECONDS = 0.02
MAX_PENDING_ROWS = 5_000_000
_FRAME = struct.Struct("!Q")  # length prefix of each pickled list on the pipe


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
    ranks: np.ndarray | None = None  # 1, 2, 3, ... when None
    #: what each pushed user was given (one name for the list, or one per entry; None: not said)
    treatments: str | Sequence[str] | None = None
    explored: np.ndarray | None = None  # bool per entry: the treatment was drawn at random

    def values(self) -> list[tuple[Any, ...]]:
        """The list's exposure rows as tuples of ``EXPOSURE_COLUMNS`` values, best first: what
        :meth:`EventStore.log_exposure_rows` inserts. The fields every row shares are checked
        once, as an :class:`Exposure` would check them."""
        from socialrec.features.events import EXPOSURE_COLUMNS, Exposure

        n = len(self.scores)
        shared = Exposure(self.request_id, self.ts, self.endpoint, self.experiment, self.variant,
                          self.model_version, self.unit_id, "", None, 1, 0.0)

        def each(value: Any) -> Iterable[Any]:  # one value for the list, or one per entry
            return repeat(value, n) if value is None or isinstance(value, str) else value

        columns: dict[str, Iterable[Any]] = {
            **{c: repeat(getattr(shared, c), n) for c in (
                "request_id", "ts", "endpoint", "experiment", "variant", "model_version",
                "unit_id")},
            "user_id": each(self.user_ids),
            "item_id": each(self.item_ids),
            "rank": range(1, n + 1) if self.ranks is None else self.ranks.tolist(),
            "score": np.asarray(self.scores, dtype=np.float64).tolist(),
            "treatment": each(self.treatments),
            "explored": repeat(None, n) if self.explored is None else self.explored.tolist(),
        }
        return list(zip(*(columns[c] for c in EXPOSURE_COLUMNS), strict=True))


class ExposureLog:
    """The service's side: queue lists, track what the writer process acknowledged."""

    def __init__(self, store_url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "socialrec.serving.exposures", store_url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.outbox: queue.SimpleQueue[ServedList | None] = queue.SimpleQueue()
        self.cond = threading.Condition()
        self.queued = 0  # lists handed in
        self.done = 0  # lists the writer finished (committed or failed)
        self.pending_rows = 0
        self.dropped_rows = 0
        self.failed_rows = 0
        self.alive = True
        self.sender = threading.Thread(target=self._send, name="exposures-send", daemon=True)
        self.acker = threading.Thread(target=self._ack, name="exposures-ack", daemon=True)
        self.sender.start()
        self.acker.start()

    def log(self, served: ServedList) -> None:
        with self.cond:  # queue order == counter order, which flush relies on
            n = len(served.scores)
            if not self.alive or self.pending_rows + n > MAX_PENDING_ROWS:
                self.dropped_rows += n
                log.warning("exposure writer %s: dropped %d rows (%d so far)",
                            "down" if not self.alive else "backlogged", n, self.dropped_rows)
                return
            self.queued += 1
            self.pending_rows += n
            self.outbox.put(served)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every list logged before this call is committed; False on timeout or
        when the writer is down."""
        with self.cond:
            target = self.queued
            ok = self.cond.wait_for(lambda: self.done >= target or not self.alive, timeout)
            return bool(ok) and self.done >= target

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer."""
        self.flush(timeout)
        self.outbox.put(None)
        self.sender.join(timeout)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.acker.join(timeout)

    def _send(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        while True:
            served = self.outbox.get()
            try:
                if served is None:
                    stdin.close()
                    return
                data = pickle.dumps(served, protocol=pickle.HIGHEST_PROTOCOL)
                stdin.write(_FRAME.pack(len(data)) + data)
                stdin.flush()
            except OSError:  # the writer died: _ack notices and marks us down
                log.exception("exposure writer is gone")
                return

    def _ack(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            lists, rows, failed = (int(x) for x in line.split())
            with self.cond:
                self.done += lists
                self.pending_rows -= rows
                self.failed_rows += failed
                self.cond.notify_all()
        with self.cond:
            self.alive = False
            self.cond.notify_all()
        if self.proc.wait() != 0:
            log.error("exposure writer exited with %s", self.proc.returncode)


# -- the writer process ----------------------------------------------------------------------

def _read(stream: BinaryIO) -> ServedList | None:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    return pickle.loads(stream.read(size))


def write_forever(store_url: str, inbox: BinaryIO, acks: BinaryIO) -> None:
    """Insert the lists read from ``inbox`` until it closes; ack ``lists rows failed`` per batch."""
    from socialrec.features.events import EventStore

    store = EventStore(store_url)
    ended = False
    while not ended:
        first = _read(inbox)
        if first is None:
            break
        batch, rows = [first], len(first.scores)
        # What arrives within the linger joins this transaction (up to the cap).
        deadline = time.monotonic() + LINGER_SECONDS
        while rows < MAX_BATCH_ROWS and select.select(
                [inbox], [], [], max(0.0, deadline - time.monotonic()))[0]:
            nxt = _read(inbox)
            if nxt is None:
                ended = True
                break
            batch.append(nxt)
            rows += len(nxt.scores)
        failed = 0
        try:
            store.log_exposure_rows([row for served in batch for row in served.values()])
        except Exception:
            failed = rows
            log.exception("could not log %d exposures", rows)
        acks.write(f"{len(batch)} {rows} {failed}\n".encode())
        acks.flush()
    store.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    # Acks get the real stdout; anything else printing to stdout lands on stderr instead.
    ack_stream = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    write_forever(sys.argv[1], sys.stdin.buffer, ack_stream)
