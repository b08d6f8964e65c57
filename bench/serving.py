"""Serving latency: the BentoML service over HTTP beside raw FAISS search, same queries, same run.

    .venv/bin/python -m bench.serving                      # 20k users, 5k items, dim 64
    .venv/bin/python -m bench.serving --users 2000 --requests 100   # a quick look

(run from the repository root: it uses the tests' helpers in tests/support/). Builds a random
bundle (tests/support/bundles.py: latency depends on sizes, not on what was learned),
starts ``bentoml serve`` on 127.0.0.1 with the access log off, and sends a fixed number of
requests per cell from 1, 8 and 32 concurrent keep-alive clients: ``/push_targets`` with k=100
and k=10,000 (default rules: opt-out and buyers excluded; every list logged as exposures) and
``/share_partners``. Beside each, the same queries answered in this process without the
service: a raw FAISS search of the user index (k users for the item) for pushes, the share
scoring function (serving/share.py) for share partners, timed one at a time on one OpenMP
thread, as the service runs them. Prints a markdown table and appends it, with the command and
the machine, to bench/RESULTS.md. Stops by itself: nothing is left running.
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

from socialrec.serving.retrieval import search
from socialrec.serving.share import item_vector, rank_partners
from tests.support.bundles import random_bundle
from tests.support.server import ServerProcess

RESULTS = Path(__file__).with_name("RESULTS.md")


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


def start_server(bundle_dir: Path, workdir: Path, threads: int) -> ServerProcess:
    return ServerProcess({
        "SOCIALREC_BUNDLE_DIR": str(bundle_dir),
        "SOCIALREC_EVENT_STORE": f"sqlite:///{workdir / 'events.db'}",
        "SOCIALREC_POLL_SECONDS": "0",
        "SOCIALREC_THREADS": str(threads),
        # BentoML's per-service config: no access log line per request.
        "BENTOML_CONFIG_OVERRIDES": json.dumps(
            {"services": {"SocialRec": {"logging": {"access": {"enabled": False}}}}}),
    }, workdir / "server.log")


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

    def share_raw(i: int) -> None:
        vec, _ = item_vector(bundle, int(items[i % 200]))
        rank_partners(bundle, int(sharers[i % 200]), vec, int(items[i % 200]), 10)

    cases = [
        Case("push_targets k=100", "/push_targets",
             [{"item_id": f"i{j}", "k": 100} for j in items],
             lambda i: search(bundle.user_index, bundle.item_emb[items[i % 200]], 100),
             args.requests),
        Case(f"push_targets k={big_k:,}", "/push_targets",
             [{"item_id": f"i{j}", "k": big_k} for j in items],
             lambda i: search(bundle.user_index, bundle.item_emb[items[i % 200]], big_k),
             max(20, args.requests // 6)),
        Case("share_partners k=10", "/share_partners",
             [{"user_id": f"u{u}", "item_id": f"i{j}", "k": 10}
              for u, j in zip(sharers, items, strict=True)],
             share_raw, args.requests),
    ]

    cells: list[Cell] = []
    raws: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="socialrec-bench-") as tmp:
        workdir = Path(tmp)
        bundle.save(workdir / "bundle")
        server = start_server(workdir / "bundle", workdir, args.threads)
        url = server.url
        try:
            for case in cases:
                warm = Case(case.name, case.path, case.bodies, case.raw, 20)
                load(url, warm, 4)
                raws[case.name] = raw_latencies(case, min(case.requests, 400))
                for clients in args.clients:
                    cells.append(load(url, case, clients))
                    print(f"  {case.name:<24} {clients:>3} clients: "
                          f"p50 {np.percentile(cells[-1].latencies_ms, 50):.2f} ms", flush=True)
        finally:
            server.stop(grace=30)

    table = render(cells, raws)
    command = "python -m bench.serving " + shlex.join(sys.argv[1:])
    header = (
        f"### Serving latency — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"`{command.strip()}` — bundle: {len(bundle.users):,} users, {len(bundle.items):,} "
        f"items, dim {args.dim}, user index {bundle.meta['index']['user']['type']} "
        f"(built in {built:.1f} s); service: 1 worker, {args.threads} threads, access log off, "
        f"exposures logged to SQLite; client and server on one machine "
        f"({platform.machine()}, {os.cpu_count()} CPUs, 1-min load average {load_before:.1f} "
        f"before the run, {os.getloadavg()[0]:.1f} after).\n"
        f"Raw = the same queries without the service, one at a time in-process (FAISS "
        f"search of k users for the item; for share partners the scoring function).\n"
    )
    print("\n" + header + "\n" + table)
    if not args.no_append:
        with RESULTS.open("a") as f:
            f.write("\n" + header + "\n" + table + "\n")
        print(f"appended to {RESULTS}")


def render(cells: list[Cell], raws: dict[str, np.ndarray]) -> str:
    rows = ["| endpoint | clients | requests | failed | p50 ms | p95 ms | p99 ms | req/s | "
            "raw p50 ms | p50 − raw ms | p50 / raw |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        p50, p95, p99 = np.percentile(c.latencies_ms, [50, 95, 99])
        raw = float(np.percentile(raws[c.case], 50))
        rows.append(f"| {c.case} | {c.clients} | {len(c.latencies_ms)} | {c.failed} | "
                    f"{p50:.2f} | {p95:.2f} | {p99:.2f} | {len(c.latencies_ms) / c.seconds:.0f} | "
                    f"{raw:.3f} | {p50 - raw:.2f} | {p50 / raw:.1f}x |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
