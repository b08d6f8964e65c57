"""One rank of bench/train_distributed.py (started by torchrun): fit the social GNN on the graph
the bench wrote (memory-mapped), for a fixed number of steps, and report per-step times, bytes
moved and peak memory. Not a test, not a training entry point."""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch.distributed as dist

from socialrec.features.graph import GraphData
from socialrec.models.socialgnn import SocialGNNRecommender
from socialrec.training.distributed import RankInfo, RankRuntime, RankSettings, process_group


class Count:
    """Stands in for an IdMap where only its length is read."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class TimedRuntime(RankRuntime):
    """The rank runtime, stopped after ``steps`` steps of the first epoch, timing each."""

    def __init__(self, *args, steps: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_steps = steps
        self.step_seconds: list[float] = []
        self.traffic_after: list[tuple[int, int]] = []  # cumulative bytes after each step

    def batches(self, epoch: Iterator[tuple]) -> Iterator[tuple]:
        last = time.perf_counter()
        for batch in itertools.islice(super().batches(epoch), self.max_steps):
            yield batch
            now = time.perf_counter()
            self.step_seconds.append(now - last)
            assert self.partition is not None
            self.traffic_after.append((self.partition.traffic.all_reduce,
                                       self.partition.traffic.gather))
            last = now


def load_csr(folder: Path, shape: tuple[int, int]) -> sp.csr_matrix:
    arrays = [np.load(folder / f"{name}.npy", mmap_mode="c") for name in ("data", "indices",
                                                                          "indptr")]
    return sp.csr_matrix(tuple(arrays), shape=shape, copy=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("graph", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users-per-step", type=int, default=65536)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    with process_group(1800) as info:
        time_steps(args, info)


def time_steps(args: argparse.Namespace, info: RankInfo) -> None:
    meta = json.loads((args.graph / "meta.json").read_text())
    n_users, n_items = meta["users"], meta["items"]
    train = load_csr(args.graph / "train", (n_users, n_items))
    empty = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    data = GraphData(users=Count(n_users), items=Count(n_items), train=train,  # type: ignore[arg-type]
                     valid=empty, test=empty, social=sp.csr_matrix((n_users, n_users)),
                     purchases=empty, shares_train=None, shares_valid=None,  # type: ignore[arg-type]
                     shares_test=None, item_category=np.zeros(0), categories=[],  # type: ignore[arg-type]
                     push_opt_in=np.zeros(0, dtype=bool))
    runtime = TimedRuntime(info, RankSettings(args.run_dir, None, "bench"), steps=args.steps)
    model = SocialGNNRecommender(loss="ials", embedding_dim=args.dim, num_layers=2, epochs=1,
                                 users_per_step=args.users_per_step, num_threads=1, seed=0)
    model.runtime = runtime
    model.fit(data, show_progress=False)
    moved = np.diff(np.asarray([(0, 0), *runtime.traffic_after], dtype=np.float64), axis=0)
    report = {
        "rank": info.rank,
        "step_seconds": runtime.step_seconds,
        "all_reduce_bytes_per_step": float(moved[:, 0].mean()),
        "gather_bytes_per_step": float(moved[:, 1].mean()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "block_rows": list(runtime.partition.mine) if runtime.partition else None,
    }
    reports: list = [None] * info.world
    dist.all_gather_object(reports, report)
    if info.rank == 0:
        args.out.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
