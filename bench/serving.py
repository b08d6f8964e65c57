"""Serving latency: the BentoML service over HTTP beside the framework's floor and raw FAISS search,
same queries, same run.

    .venv/bin/python -m bench.serving                      # 20k users, 5k items, dim 64
    .venv/bin/python -m bench.serving --users 2000 --requests 100   # a quick look

(run from the repository root: it uses the tests' helpers in tests/support/). Builds a random
bundle (tests/support/bundles.py: latency depends on sizes, not on what was learned),
starts ``bentoml serve`` of the service and of the floor (bench/floor_service.py: endpoints of the
same request and response models that answer a fixed list, i.e. what BentoML itself costs) on
127.0.0.1 with the access log off, and sends a fixed number of requests per cell from 1, 8 and
32 concurrent keep-alive clients, in ``--rounds`` rounds alternating floor and service (so load
from elsewhere on the machine falls on both alike): ``/push_targets`` with k=100 and k=10,000
(default rules: opt-out and buyers excluded; every list logged as exposures) and
``/share_partners``. Beside each, the same queries answered in this process without the
service: a raw FAISS search of the user index (k users for the item) for pushes, the share
scoring function (serving/share.py) for share partners, timed one at a time on one OpenMP
thread, as the service runs them. Prints a markdown table and appends it, with the command and
the machine, to bench/RESULTS.md. Stops by itself: nothing is left running.

Targets (issue 18), at 1 client and k=100: ``/push_targets`` and ``/share_partners`` p50 within
1 ms of the floor's; k=10,000 pushes >= 100 req/s at 8 clients on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import httpx
import numpy as np

from bench.results import publish
from socialrec.serving.retrieval import search
from socialrec.serving.share import item_vector, rank_partners
from tests.support.bundles import random_bundle
from tests.support.server import ServerProcess


@dataclass
class Case:
    name: str
    path: str
    bodies: list[dict]
    raw: Callable[[int], object]  # runs query i without the service
    requests: int


@dataclass
class Cell:
    case: str
    clients: int
    latencies_ms: np.ndarray
    failed: int
    seconds: float


#: BentoML's per-service config: no access log line per request (service and floor alike).
NO_ACCESS_LOG = json.dumps({"services": {name: {"logging": {"access": {"enabled": False}}}
                                         for name in ("SocialRec", "Floor")}})


def start_server(bundle_dir: Path, workdir: Path, threads: int, event_store: str | None,
                 timeout: float) -> ServerProcess:
    return ServerProcess({
        "SOCIALREC_BUNDLE_DIR": str(bundle_dir),
        "SOCIALREC_EVENT_STORE": event_store or f"sqlite:///{workdir / 'events.db'}",
        "SOCIALREC_POLL_SECONDS": "0",
        "SOCIALREC_THREADS": str(threads),
        "BENTOML_CONFIG_OVERRIDES": NO_ACCESS_LOG,
    }, workdir / "server.log", timeout=timeout)


def start_floor(workdir: Path, threads: int, timeout: float) -> ServerProcess:
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    return ServerProcess(
        {"SOCIALREC_THREADS": str(threads), "BENTOML_CONFIG_OVERRIDES": NO_ACCESS_LOG},
        workdir / "floor.log", timeout=timeout,
        command=[bentoml, "serve", "bench.floor_service:Floor", "--host", "127.0.0.1",
                 "--port", "{port}"])


def interleaved(urls: dict[str, str], case: Case, clients: int, rounds: int) -> dict[str, Cell]:
    """``case.requests`` requests to each of ``urls`` (name -> base URL), in ``rounds`` rounds
    that alternate between them; the cells of each merged."""
    parts: dict[str, list[Cell]] = {name: [] for name in urls}
    per_round = Case(case.name, case.path, case.bodies, case.raw,
                     max(1, case.requests // rounds))
    for _ in range(rounds):
        for name, url in urls.items():
            parts[name].append(load(url, per_round, clients))
    return {name: Cell(case.name, clients,
                       np.concatenate([c.latencies_ms for c in cells]),
                       sum(c.failed for c in cells), sum(c.seconds for c in cells))
            for name, cells in parts.items()}


def load(url: str, case: Case, clients: int) -> Cell:
    """``case.requests`` requests from ``clients`` threads, each with its own connection."""
    latencies: list[float] = []
    failed = 0
    lock = threading.Lock()
    counter = iter(range(case.requests))

    def worker() -> None:
        nonlocal failed
        with httpx.Client(base_url=url, timeout=120) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = case.bodies[i % len(case.bodies)]
                t = time.perf_counter()
                try:
                    ok = client.post(case.path, json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    latencies.append(ms)
                    failed += not ok

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Cell(case.name, clients, np.asarray(latencies), failed, time.perf_counter() - start)


def raw_latencies(case: Case, n: int) -> np.ndarray:
    out = []
    for i in range(n):
        t = time.perf_counter()
        case.raw(i)
        out.append((time.perf_counter() - t) * 1000)
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--requests", type=int, default=600,
                    help="requests per cell (k=10,000 pushes: a sixth of it)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--threads", type=int, default=8, help="service request threads")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per cell, alternating floor and service")
    ap.add_argument("--event-store", default=None,
                    help="the service's event store URL (default: SQLite in a temporary folder)")
    ap.add_argument("--start-timeout", type=float, default=300,
                    help="seconds to wait for each server to be ready")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true", help="print only; leave RESULTS.md")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    faiss.omp_set_num_threads(1)  # as in the service: one thread per request
    t = time.perf_counter()
    bundle = random_bundle(n_users=args.users, n_items=args.items, dim=args.dim, seed=args.seed,
                           n_communities=40, friends=10, interactions=20)
    built = time.perf_counter() - t
    rng = np.random.default_rng(args.seed)
    items = rng.integers(len(bundle.items), size=200)
    sharers = rng.integers(len(bundle.users), size=200)
    big_k = min(10_000, len(bundle.users) // 2)
    user_index = bundle.user_index
    assert user_index is not None

    def share_raw(i: int) -> None:
        vec, _ = item_vector(bundle, int(items[i % 200]))
        rank_partners(bundle, int(sharers[i % 200]), vec, int(items[i % 200]), 10)

    cases = [
        Case("push_targets k=100", "/push_targets",
             [{"item_id": f"i{j}", "k": 100} for j in items],
             lambda i: search(user_index, bundle.item_emb[items[i % 200]], 100),
             args.requests),
        Case(f"push_targets k={big_k:,}", "/push_targets",
             [{"item_id": f"i{j}", "k": big_k} for j in items],
             lambda i: search(user_index, bundle.item_emb[items[i % 200]], big_k),
             max(20, args.requests // 6)),
        Case("share_partners k=10", "/share_partners",
             [{"user_id": f"u{u}", "item_id": f"i{j}", "k": 10}
              for u, j in zip(sharers, items, strict=True)],
             share_raw, args.requests),
    ]

    cells: list[tuple[Cell, Cell]] = []  # (service, floor)
    raws: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="socialrec-bench-") as tmp:
        workdir = Path(tmp)
        bundle.save(workdir / "bundle")
        server = start_server(workdir / "bundle", workdir, args.threads, args.event_store,
                              args.start_timeout)
        floor = None
        try:
            floor = start_floor(workdir, args.threads, args.start_timeout)
            urls = {"service": server.url, "floor": floor.url}
            for case in cases:
                warm = Case(case.name, case.path, case.bodies, case.raw, 20)
                for url in urls.values():
                    load(url, warm, 4)
                raws[case.name] = raw_latencies(case, min(case.requests, 400))
                for clients in args.clients:
                    got = interleaved(urls, case, clients, args.rounds)
                    cells.append((got["service"], got["floor"]))
                    print(f"  {case.name:<24} {clients:>3} clients: p50 "
                          f"{np.percentile(got['service'].latencies_ms, 50):.2f} ms, floor "
                          f"{np.percentile(got['floor'].latencies_ms, 50):.2f} ms "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)
            writer = exposure_writer(server.url)
        finally:
            server.stop(grace=30)
            if floor is not None:
                floor.stop(grace=30)

    table = render(cells, raws)
    command = "python -m bench.serving " + shlex.join(sys.argv[1:])
    header = (
        f"### Serving latency — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"`{command.strip()}` — bundle: {len(bundle.users):,} users, {len(bundle.items):,} "
        f"items, dim {args.dim}, user index {bundle.meta['index']['user']['type']} "
        f"(built in {built:.1f} s); service: 1 worker, {args.threads} threads, access log off, "
        f"exposures logged to {'SQLite' if args.event_store is None else 'the given store'}"
        f"{'' if writer is None else ' (writer at the end: ' + writer + ')'}; "
        f"{args.rounds} rounds per cell alternating service and floor; client and servers on one "
        f"machine "
        f"({platform.machine()}, {os.cpu_count()} CPUs, 1-min load average {load_before:.1f} "
        f"before the run, {os.getloadavg()[0]:.1f} after).\n"
        f"Floor = bench/floor_service.py, BentoML endpoints of the same request and response "
        f"models returning a fixed list of k users (partners), started the same way. "
        f"Raw = the same queries without the service, one at a time in-process (FAISS "
        f"search of k users for the item; for share partners the scoring function).\n"
    )
    publish(header, table, append=not args.no_append)


def exposure_writer(url: str) -> str | None:
    """The service's exposure-writer counters from ``GET /status`` (None where it has none)."""
    try:
        writer = httpx.get(f"{url}/status", timeout=10).json().get("exposure_writer")
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    if not isinstance(writer, dict):
        return None
    return ", ".join(f"{k} {v}" for k, v in writer.items())


def render(cells: list[tuple[Cell, Cell]], raws: dict[str, np.ndarray]) -> str:
    rows = ["| endpoint | clients | requests | failed | p50 ms | p95 ms | p99 ms | req/s | "
            "floor p50 ms | floor req/s | p50 − floor ms | p50 / floor | raw p50 ms | "
            "p50 / raw |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c, f in cells:
        p50, p95, p99 = np.percentile(c.latencies_ms, [50, 95, 99])
        floor = float(np.percentile(f.latencies_ms, 50))
        raw = float(np.percentile(raws[c.case], 50))
        rows.append(f"| {c.case} | {c.clients} | {len(c.latencies_ms)} | {c.failed + f.failed} | "
                    f"{p50:.2f} | {p95:.2f} | {p99:.2f} | {len(c.latencies_ms) / c.seconds:.0f} | "
                    f"{floor:.2f} | {len(f.latencies_ms) / f.seconds:.0f} | {p50 - floor:.2f} | "
                    f"{p50 / floor:.2f}x | {raw:.3f} | {p50 / raw:.1f}x |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
