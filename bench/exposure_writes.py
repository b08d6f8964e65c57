"""Exposure writes: what one logged row costs, the bulk path against the one it replaced.

    .venv/bin/python -m bench.exposure_writes            # SQLite file, and PostgreSQL if reachable
    .venv/bin/python -m bench.exposure_writes --lists 5 --no-append   # a quick look

Every served list becomes one exposure row per entry (features/events.py). For lists of 100 and
10,000 rows, each inserted in its own transaction as the writer process does when requests do
not overlap, the table gives microseconds per row and rows per second of:

* ``objects + Core``: the path before: an ``Exposure`` dataclass per row (validated one by one),
  then a SQLAlchemy Core ``insert()`` executed with one dict per row;
* ``bulk``: ``ServedList.values()`` (the list's shared fields checked once, one tuple per row)
  then ``EventStore.log_exposure_rows``: PostgreSQL ``COPY`` through psycopg 3, the driver's
  ``executemany`` on SQLite;
* ``writer process``: the whole way a service's list travels (serving/exposures.py): queued,
  pickled down the pipe, inserted by the writer process, acknowledged; ``flush`` returns when
  every list is committed.

``k=10,000 pushes/s`` is how many 10,000-user pushes per second the writer keeps up with at that
cost (one core). Appends to bench/RESULTS.md with the command, the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import shlex
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.results import publish
from socialrec.features.events import EXPOSURE_COLUMNS, EventStore, Exposure
from socialrec.serving.exposures import ExposureLog, ServedList

PG_URL = os.environ.get("SOCIALREC_BENCH_PG",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def served_list(n: int, i: int) -> ServedList:
    return ServedList(f"req-{uuid.uuid4().hex}", datetime.now(UTC), "push_targets", "push",
                      "control", "socialrec/7", f"campaign-{i}", [f"u{j}" for j in range(n)],
                      f"i{i}", np.linspace(1, 0, n, dtype=np.float32))


def objects_and_core(store: EventStore, served: ServedList) -> None:
    """The writer's path before the bulk insert: one Exposure per row, Core insert of dicts."""
    rows = [Exposure(served.request_id, served.ts, served.endpoint, served.experiment,
                     served.variant, served.model_version, served.unit_id, u,
                     served.item_ids if isinstance(served.item_ids, str) else None, rank,
                     float(s))
            for rank, (u, s) in enumerate(zip(served.user_ids, served.scores, strict=True), 1)]
    params = [{c: getattr(r, c) for c in EXPOSURE_COLUMNS} for r in rows]
    with store.engine.begin() as conn:
        conn.execute(store.exposures_table.insert(), params)


def bulk(store: EventStore, served: ServedList) -> None:
    store.log_exposure_rows(served.values())


def per_row_us(insert: Callable[[EventStore, ServedList], None], store: EventStore, n: int,
               lists: int) -> float:
    batch = [served_list(n, i) for i in range(lists)]
    insert(store, served_list(n, -1))  # warm-up
    t = time.perf_counter()
    for served in batch:
        insert(store, served)
    return (time.perf_counter() - t) / (n * lists) * 1e6


def writer_per_row_us(url: str, n: int, lists: int) -> float:
    """Through ExposureLog and its writer process, from the first log() to flush()."""
    log = ExposureLog(url)
    try:
        log.log(served_list(n, -1))
        log.flush(timeout=300)
        batch = [served_list(n, i) for i in range(lists)]
        t = time.perf_counter()
        for served in batch:
            log.log(served)
        if not log.flush(timeout=600):
            raise RuntimeError("the exposure writer did not commit in time")
        return (time.perf_counter() - t) / (n * lists) * 1e6
    finally:
        log.close()


def pickle_us(n: int) -> float:
    """The service side's share: pickling one list for the pipe (in its sender thread)."""
    served = served_list(n, 0)
    t = time.perf_counter()
    for _ in range(20):
        pickle.dumps(served, protocol=pickle.HIGHEST_PROTOCOL)
    return (time.perf_counter() - t) / (20 * n) * 1e6


def pg_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lists", type=int, default=20, help="lists of 10,000 rows (of 100: 10x)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-append", action="store_true", help="print only; leave RESULTS.md")
    args = ap.parse_args()

    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="socialrec-bench-") as tmp:
        stores = [("SQLite (WAL, synchronous=FULL)", f"sqlite:///{Path(tmp) / 'events.db'}",
                   "")]
        if not args.no_postgres and pg_reachable():
            stores.append(("PostgreSQL 127.0.0.1", PG_URL, f"bench{uuid.uuid4().hex[:8]}_"))
        for name, url, prefix in stores:
            store = EventStore(url, table_prefix=prefix)
            try:
                for n, lists in ((100, 10 * args.lists), (10_000, args.lists)):
                    old = per_row_us(objects_and_core, store, n, lists)
                    new = per_row_us(bulk, store, n, lists)
                    through = (writer_per_row_us(url, n, lists) if not prefix else float("nan"))
                    for path, us in (("objects + Core (before)", old), ("bulk", new),
                                     ("writer process (bulk)", through)):
                        if us != us:  # NaN: the writer process writes unprefixed tables only
                            continue
                        rows.append(f"| {name} | {n:,} | {path} | {us:.2f} | {1e6 / us:,.0f} | "
                                    f"{1e6 / us / 10_000:.1f} | {old / us:.1f}x | "
                                    f"{os.getloadavg()[0]:.1f} |")
                    print(rows[-3] if through == through else rows[-2], flush=True)
            finally:
                if prefix:
                    store.metadata.drop_all(store.engine)
                store.close()
    pickled = pickle_us(10_000)
    table = "\n".join([
        "| store | rows a list | path | µs / row | rows / s | k=10,000 pushes / s | "
        "speed-up vs before | load |",
        "|---|---:|---|---:|---:|---:|---:|---:|", *rows])
    command = "python -m bench.exposure_writes " + shlex.join(sys.argv[1:])
    header = (
        f"### Exposure writes — {started:%Y-%m-%d %H:%M} UTC\n\n"
        f"`{command.strip()}` — one transaction per list; {args.lists} lists of 10,000 rows and "
        f"{10 * args.lists} of 100 per cell; pickling a 10,000-row list for the pipe costs "
        f"{pickled:.2f} µs a row in the service's sender thread; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, 1-min load average {load_before:.1f} before the run (the "
        f"load column: after each cell).\n")
    publish(header, table, append=not args.no_append)


if __name__ == "__main__":
    main()
