"""Fold-in latency: how soon a product launched now is targeted by a push after its first feedback.

    .venv/bin/python -m bench.foldin                        # 20k users, 5k items, dim 64
    .venv/bin/python -m bench.foldin --users 2000 --launches 5   # a quick look

(run from the repository root: it uses the tests' helpers in tests/support/). Two parts, same
random bundle (tests/support/bundles.py; the cost depends on sizes, not on what was learned):

1. In this process: building a bundle's fold-in (models/foldin.py ``FoldIn``: Gramians, degrees)
   and folding in one new product from 1 / 10 / 100 / 1,000 users' events, under both rules
   (least squares, propagation); median of repeated runs, one BLAS thread.
2. Through the real service: two ``bentoml serve`` replicas sharing one SQLite event store
   (fold-in poll every ``--poll`` seconds, the service's default 2). For each of ``--launches``
   new products: its first feedback (3 users' purchase / click / push_open) is posted to replica
   A, then A and B are asked for a push of the product until one is ranked by the folded-in
   vector (``strategy`` ends in ``+item_foldin``); the seconds from sending the feedback to that
   answer are recorded per replica.

Prints a markdown table and appends it, with the command, the machine and its load average, to
bench/RESULTS.md. Stops by itself: nothing is left running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from threadpoolctl import threadpool_limits

from bench.results import publish
from socialrec.models.foldin import FoldIn, FoldInRule
from tests.support.bundles import random_bundle
from tests.support.server import ServerProcess

SIZES = (1, 10, 100, 1000)


def in_process(bundle, repeats: int) -> list[str]:
    rows = ["| rule | build FoldIn (ms) | " + " | ".join(f"fold {n} users (µs)" for n in SIZES)
            + " |", "|---|---|" + "---|" * len(SIZES)]
    rng = np.random.default_rng(0)
    for rule in (FoldInRule("least_squares"), FoldInRule("propagation", normalize=True)):
        with threadpool_limits(1):
            t0 = time.perf_counter()
            fold = FoldIn(bundle, rule)
            fold.item_vector(np.array([0]), np.array([1.0]))  # the Gramian, computed once
            build = (time.perf_counter() - t0) * 1e3
            cells = []
            for n in SIZES:
                users = rng.choice(len(bundle.user_emb), size=n, replace=False)
                weights = rng.choice([1.0, 4.0, 5.0], size=n)
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fold.item_vector(users, weights)
                    times.append(time.perf_counter() - t0)
                cells.append(f"{np.median(times) * 1e6:.0f}")
        rows.append(f"| {rule.kind} | {build:.1f} | " + " | ".join(cells) + " |")
    return rows


def first_foldin(client: httpx.Client, item_id: str, since: float, timeout: float) -> float:
    while time.perf_counter() - since < timeout:
        r = client.post("/push_targets", json={"item_id": item_id, "k": 100,
                                               "item_category": "c1"})
        if r.status_code == 200 and "+item_foldin" in r.json()["strategy"]:
            return time.perf_counter() - since
        time.sleep(0.05)
    return float("nan")


def through_service(bundle, launches: int, poll: float) -> tuple[list[str], dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = bundle.save(Path(tmp) / "bundle")
        env = {"SOCIALREC_BUNDLE_DIR": str(path), "SOCIALREC_POLL_SECONDS": "0",
               "SOCIALREC_FOLDIN_SECONDS": str(poll),
               "SOCIALREC_EVENT_STORE": f"sqlite:///{Path(tmp) / 'events.db'}",
               # BentoML's per-service config: no access log line per request
               "BENTOML_CONFIG_OVERRIDES": json.dumps(
                   {"services": {"SocialRec": {"logging": {"access": {"enabled": False}}}}})}
        servers = [ServerProcess(env, Path(tmp) / f"replica{n}.log", timeout=600)
                   for n in range(2)]
        try:
            a, b = (httpx.Client(base_url=s.url, timeout=60) for s in servers)
            same, other, ack = [], [], []
            for n in range(launches):
                item = f"launch-{n}"
                events = [{"event_id": f"{item}-{k}", "user_id": f"u{17 * n + k}",
                           "item_id": item, "event": kind}
                          for k, kind in enumerate(("purchase", "click", "push_open"))]
                t0 = time.perf_counter()
                assert a.post("/feedback", json={"events": events}).status_code == 200
                ack.append(time.perf_counter() - t0)
                same.append(first_foldin(a, item, t0, 120))
                other.append(first_foldin(b, item, t0, 120))
        finally:
            for s in servers:
                s.stop()
    figures = {"ack_p50": float(np.median(ack)), "same_p50": float(np.nanmedian(same)),
               "same_max": float(np.nanmax(same)), "other_p50": float(np.nanmedian(other)),
               "other_max": float(np.nanmax(other))}
    rows = ["| replica asked | p50 (s) | max (s) |", "|---|---|---|",
            f"| A (took the feedback; /feedback itself p50 {figures['ack_p50']:.3f} s) | "
            f"{figures['same_p50']:.3f} | {figures['same_max']:.3f} |",
            f"| B (another replica, fold-in poll every {poll:g} s) | "
            f"{figures['other_p50']:.3f} | {figures['other_max']:.3f} |"]
    return rows, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--launches", type=int, default=20)
    parser.add_argument("--poll", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--no-append", action="store_true", help="print only")
    args = parser.parse_args()
    bundle = random_bundle(n_users=args.users, n_items=args.items, dim=args.dim, seed=0)
    load_before = os.getloadavg()
    part1 = in_process(bundle, args.repeats)
    part2, _ = through_service(bundle, args.launches, args.poll)
    load_after = os.getloadavg()
    command = "python -m bench.foldin " + shlex.join(sys.argv[1:])
    text = "\n".join([
        f"### Fold-in (bench/foldin.py), {datetime.now(UTC):%Y-%m-%d}", "",
        f"`{command.strip()}` — {args.users} users, {args.items} items, dim {args.dim}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{load_before[0]:.1f} before / {load_after[0]:.1f} after (shared machine).", "",
        "One new product folded in, in process (one BLAS thread):", "", *part1, "",
        f"A product launched now, through two real replicas sharing the event store: seconds "
        f"from posting its first feedback (3 events) to the first push ranked by its folded-in "
        f"vector, over {args.launches} launches:", "", *part2, ""])
    publish("", text.rstrip("\n"), append=not args.no_append)


if __name__ == "__main__":
    main()
