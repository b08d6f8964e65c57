"""Distributed training of the social GNN (training/distributed.py) on synthetic worlds: 1 rank ×
1 thread against 2 ranks × 1 thread in the same run, the same global batch (iALS loss).

For each size: write the world in chunks (features/synthetic.py ``write_world``, kept in
``--work`` for the next run), build its training graph part by part (features/graph.py
``graph_from_parquet``) and the normalised adjacency once (written where every rank memory-maps
it), then start torchrun with 1 and with 2 ranks (bench/rank_steps.py), each fitting ``--steps``
steps. Per configuration: seconds per step (median of the steps after the first), an epoch
extrapolated from it, bytes all-reduced and gathered per step by each rank, each rank's peak RSS,
and the peak of the ranks' summed PSS (proportional set size: pages the ranks share, such as the
mapped graph, are counted once). Scaling efficiency = t(1 rank) / (2 × t(2 ranks)).

    .venv/bin/python -m bench.train_distributed --users 1000000 --steps 6
    .venv/bin/python -m bench.train_distributed --users 10000000 --dim 16 --choices 4 --friends 4

The load average is printed beside every figure: on a shared machine a scaling figure means
something only when both cores were free.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from socialrec.features.graph import graph_from_parquet
from socialrec.features.synthetic import write_world
from socialrec.models.socialgnn import SocialGNNRecommender
from socialrec.training.distributed import torchrun_command, torchrun_env, write_csr
from socialrec.training.memory import PeakMemory

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


class TreePss:
    """Peak of the summed PSS of a process and its descendants, sampled."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.root = psutil.Process(pid)
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += proc.memory_full_info().pss
            self.peak_mb = max(self.peak_mb, total / 2**20)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def prepare(args: argparse.Namespace) -> tuple[Path, dict]:
    """The world, its graph and its adjacency in ``--work`` (made once, reused)."""
    base = args.work / f"world-{args.users}-c{args.choices:g}-f{args.friends:g}"
    graph_dir = base / "graph"
    facts: dict = {}
    if not (base / "world.json").exists():
        with PeakMemory() as mem:
            t = time.perf_counter()
            rows = write_world(base / "world", args.users, max(args.users // 4, 100),
                               max(4, min(200, args.users // 500)), seed=7,
                               choices_per_user=args.choices, mean_friends=args.friends,
                               chunk_users=args.chunk_users)
        facts |= {"world_rows": rows, "world_s": time.perf_counter() - t,
                  "world_peak_mb": mem.peak_mb, "world_load": load()}
        (base / "world.json").write_text(json.dumps(facts))
    facts |= json.loads((base / "world.json").read_text())
    if not (graph_dir / "meta.json").exists():
        with PeakMemory() as mem:
            t = time.perf_counter()
            graph = graph_from_parquet(base / "world")
            facts["graph_s"] = time.perf_counter() - t
            facts["graph_peak_mb"] = mem.peak_mb
            t = time.perf_counter()
            adj = SocialGNNRecommender(social_weight=0.3).adjacency(graph)
            facts["adjacency_s"] = time.perf_counter() - t
            facts["adjacency_nnz"] = int(adj._nnz())
            write_csr(graph_dir / "adjacency", adj.crow_indices().numpy(),
                      adj.col_indices().numpy(), adj.values().numpy())
            del adj
            train = graph.train
            write_csr(graph_dir / "train", train.indptr, train.indices, train.data)
            facts |= {"users": graph.n_users, "items": graph.n_items, "train_nnz": train.nnz,
                      "social_nnz": graph.social.nnz}
        facts["graph_and_adjacency_peak_mb"] = mem.peak_mb
        graph_dir.mkdir(parents=True, exist_ok=True)
        (graph_dir / "meta.json").write_text(json.dumps(facts, default=str))
    return graph_dir, json.loads((graph_dir / "meta.json").read_text())


def run(graph_dir: Path, nproc: int, args: argparse.Namespace) -> dict:
    run_dir = args.work / f"run-{nproc}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    (run_dir / "adjacency").symlink_to(graph_dir / "adjacency")  # the ranks map the shared graph
    out = args.work / f"ranks-{nproc}.json"
    script = [str(ROOT / "bench" / "rank_steps.py"), str(graph_dir), str(run_dir), str(out),
              "--dim", str(args.dim), "--users-per-step", str(args.users_per_step),
              "--steps", str(args.steps)]
    command = [*torchrun_command(nproc, 0, [])[:-2], *script]
    env = torchrun_env({**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    before = load()
    t = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT)
    pss = TreePss(proc.pid)
    code = proc.wait()
    pss.stop()
    if code != 0:
        raise SystemExit(f"torchrun with {nproc} ranks failed ({code})")
    ranks = json.loads(out.read_text())
    steps = np.asarray([r["step_seconds"] for r in ranks])
    per_step = float(np.median(steps.max(axis=0)[1:]))  # a step ends when its slowest rank does
    return {"nproc": nproc, "s_per_step": per_step, "wall_s": time.perf_counter() - t,
            "all_reduce_mb_per_step": max(r["all_reduce_bytes_per_step"] for r in ranks) / 2**20,
            "gather_mb_per_step": max(r["gather_bytes_per_step"] for r in ranks) / 2**20,
            "peak_rss_mb_per_rank": [round(r["peak_rss_mb"]) for r in ranks],
            "peak_pss_total_mb": pss.peak_mb, "load_before": before, "load_after": load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--choices", type=float, default=16.0, help="own choices per user")
    parser.add_argument("--friends", type=float, default=10.0, help="mean friends per user")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users-per-step", type=int, default=65536)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--chunk-users", type=int, default=250_000)
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "bench_distributed")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    graph_dir, facts = prepare(args)
    print(json.dumps(facts, default=str), flush=True)
    rows = [run(graph_dir, nproc, args) for nproc in (1, 2)]
    one, two = rows
    steps_per_epoch = int(np.ceil(facts["users"] / args.users_per_step))
    for row in rows:
        row["s_per_epoch"] = row["s_per_step"] * steps_per_epoch
    efficiency = one["s_per_step"] / (2 * two["s_per_step"])
    print(json.dumps({"rows": rows, "scaling_efficiency": efficiency,
                      "steps_per_epoch": steps_per_epoch}, indent=2))
    cols = ["nproc", "s_per_step", "s_per_epoch", "all_reduce_mb_per_step",
            "gather_mb_per_step", "peak_rss_mb_per_rank", "peak_pss_total_mb", "load_before",
            "load_after"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    print(f"scaling efficiency {efficiency:.1%} ({sys.argv[1:]})")


if __name__ == "__main__":
    main()
