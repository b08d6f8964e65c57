"""One holder at a time, across processes and machines: a lease row in a shared SQL database.

Two retrains started at once (a CronJob that overlaps a manual run, two pods) must not both
train and register: the first to insert the lease row holds it; the other is refused at once,
told who holds it and since when. The row lives in the event store's database (SQLite or
PostgreSQL), which every job of a deployment already shares. A holder that dies without
releasing leaves a row that expires after ``ttl_s``: the next job takes it over with one
conditional UPDATE, so two jobs can never both take over the same dead lease.

    with Lease(engine, "retrain:socialrec-synthetic", ttl_s=6 * 3600):
        ...  # LeaseHeld raised on entry when another holder has it
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

_METADATA = sa.MetaData()
LEASES = sa.Table(
    "socialrec_leases", _METADATA,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),  # Unix seconds
    sa.Column("expires_at", sa.Float, nullable=False),
)


class LeaseHeld(RuntimeError):
    """Another holder has the lease."""


def holder_name() -> str:
    """Who this process is, for the refusal message of the next one."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """A named lease held for the duration of a ``with`` block (module docstring)."""

    def __init__(self, engine: Engine, name: str, ttl_s: float) -> None:
        self.engine, self.name, self.ttl_s = engine, name, ttl_s
        self.holder = holder_name()
        LEASES.create(engine, checkfirst=True)

    def acquire(self) -> None:
        now = time.time()
        row = {"name": self.name, "holder": self.holder, "acquired_at": now,
               "expires_at": now + self.ttl_s}
        try:
            with self.engine.begin() as conn:
                conn.execute(LEASES.insert(), row)
            return
        except IntegrityError:
            pass
        with self.engine.begin() as conn:  # taken: take it over only if it expired
            taken = conn.execute(
                LEASES.update().where(LEASES.c.name == self.name, LEASES.c.expires_at < now)
                .values(holder=self.holder, acquired_at=now, expires_at=now + self.ttl_s))
            if taken.rowcount == 1:
                return
            held = conn.execute(sa.select(LEASES).where(LEASES.c.name == self.name)).first()
        if held is None:  # released between our two statements: try once more
            return self.acquire()
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(held.acquired_at))
        raise LeaseHeld(f"{self.name!r} is held by {held.holder} since {since} (expires in "
                        f"{held.expires_at - now:.0f} s); not starting a second one")

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(LEASES.delete().where(LEASES.c.name == self.name,
                                               LEASES.c.holder == self.holder))

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
