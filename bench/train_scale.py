"""Training cost of the social GNN on synthetic worlds of growing size: time per epoch, peak memory.

For each size: generate the world (features/synthetic.py), split it per user 80/10/10, build the
graph, then fit the social GNN (``--loss``: softmax by default, sampled for large catalogues;
ials, whose step costs (batch + items) × dim², not batch × items, and so takes far larger user
batches; bpr) for a
bounded number of steps (``--steps``, so a 1M-user epoch is extrapolated rather than waited for)
and score a sample of validation users in batches. Prints
one row per size: nodes, edges of the propagation graph, seconds per step, steps per epoch, seconds
per epoch (measured when the epoch fits in ``--steps``, else extrapolated), the fit's peak RSS and
the process's peak RSS (data generation included). The reference measured in the same run: one
sweep of implicit's ALS (64 factors, same threads) over the same training matrix; ``epoch_per_als``
is a GNN epoch in ALS sweeps, the figure to compare across machines.

    .venv/bin/python bench/train_scale.py --users 10000 100000 1000000 --steps 20

Memory is linear in edges: the adjacency is one sparse CSR matrix and the embedding table, its Adam
state and the L+1 layer outputs are (users + items) × dim each.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import resource
import time

import numpy as np
import psutil
import scipy.sparse as sp
import torch

from socialrec.evaluation.offline import evaluate_recommend
from socialrec.features.graph import build_graph
from socialrec.features.splits import make_split
from socialrec.features.synthetic import generate
from socialrec.models.baselines import ALSModel
from socialrec.models.gnn import SocialGNN
from socialrec.models.socialgnn import SocialGNNRecommender, limit_threads
from socialrec.training.memory import PeakMemory, release_unused_memory


def process_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def measure(n_users: int, args: argparse.Namespace) -> dict[str, float]:
    row: dict[str, float] = {"users": n_users}
    t = time.perf_counter()
    world = generate(n_users=n_users, n_items=max(n_users // 4, 100),
                     n_communities=max(4, min(200, n_users // 500)), seed=7)
    split = make_split(world, {"method": "random_ratio", "ratios": [0.8, 0.1, 0.1], "seed": 1,
                               "min_user_interactions": 3})
    data = build_graph(world, split)
    del world, split
    release_unused_memory()  # the generated tables' memory, before the fit is measured
    row["items"] = data.n_items
    row["data_s"] = time.perf_counter() - t
    row["start_mb"] = process_rss_mb()

    t = time.perf_counter()
    ALSModel(factors=64, iterations=1, num_threads=args.threads).fit(data, show_progress=False)
    row["als_sweep_s"] = time.perf_counter() - t
    release_unused_memory()

    model = SocialGNNRecommender(
        embedding_dim=64, loss=args.loss, softmax_negatives=args.softmax_negatives,
        users_per_step=args.users_per_step, batch_size=args.batch_size,
        num_threads=args.threads, seed=0,
    )
    with limit_threads(args.threads), PeakMemory() as mem:
        t = time.perf_counter()
        adj = model.adjacency(data)
        row["adjacency_s"] = time.perf_counter() - t
        row["edges"] = adj._nnz()
        module = SocialGNN(data.n_users, data.n_items, 64, model.config.num_layers)
        model.module = module
        model._unseen_items = np.asarray((data.train != 0).sum(axis=0)).ravel() == 0
        optimizer = torch.optim.Adam(module.parameters(), lr=model.config.lr)
        batches, step_loss = model.training_steps(data)
        times = []
        steps_per_epoch = 0
        for batch in batches():
            steps_per_epoch += 1
            if len(times) == args.steps:
                continue  # count the epoch's steps without running them
            t = time.perf_counter()
            loss = step_loss(adj, *batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - t)
        per_step = float(np.median(times[1:] if len(times) > 1 else times))
        row["s_per_step"] = per_step
        row["steps_per_epoch"] = steps_per_epoch
        measured = len(times) == steps_per_epoch
        row["s_per_epoch"] = sum(times) if measured else per_step * steps_per_epoch
        row["epoch_measured"] = float(measured)
        t = time.perf_counter()
        model._user_emb, model._item_emb = model._propagate(adj)
        row["propagate_s"] = time.perf_counter() - t

        # validation in batches, on a sample of users (the full-ranking cost is users × items)
        t = time.perf_counter()
        rng = np.random.default_rng(0)
        users = np.flatnonzero(np.diff(data.valid.indptr) > 0)
        sample = np.sort(rng.choice(users, min(args.eval_users, len(users)), replace=False))
        keep = np.zeros(data.n_users, dtype=bool)
        keep[sample] = True
        user_emb = np.where(keep[:, None], model._user_emb, 0).astype(np.float32)
        mask = sp.diags(keep.astype(np.float32))
        sampled = dataclasses.replace(data, valid=(mask @ data.valid).tocsr())
        metrics = evaluate_recommend(user_emb, model._item_emb, sampled, target="valid",
                                     ks=[20])
        row["eval_s"] = time.perf_counter() - t
        row["eval_users"] = len(sample)
        row["valid_ndcg@20"] = metrics["ndcg@20"]
    row["epoch_per_als"] = row["s_per_epoch"] / row["als_sweep_s"]
    row["fit_peak_mb"] = mem.peak_mb
    row["fit_delta_mb"] = mem.delta_mb
    row["process_peak_mb"] = process_peak_mb()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=20, help="BPR steps timed per size")
    parser.add_argument("--loss", choices=["softmax", "ials", "bpr"], default="softmax")
    parser.add_argument("--users-per-step", type=int, default=1024, help="softmax, ials")
    parser.add_argument("--softmax-negatives", type=int, default=4096,
                        help="softmax: sampled items per step (0: the whole catalogue)")
    parser.add_argument("--batch-size", type=int, default=65_536, help="bpr: triples per step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-users", type=int, default=5_000)
    args = parser.parse_args()
    print(f"# train_scale: {platform.machine()}, torch {torch.__version__}, {args.threads} "
          f"thread(s), loss {args.loss}, {args.users_per_step} users per step, "
          f"{args.softmax_negatives} sampled negatives (bpr: batch {args.batch_size})")
    cols = ["users", "items", "edges", "data_s", "adjacency_s", "s_per_step", "steps_per_epoch",
            "s_per_epoch", "epoch_measured", "als_sweep_s", "epoch_per_als", "propagate_s",
            "eval_users", "eval_s", "start_mb", "fit_peak_mb", "fit_delta_mb", "process_peak_mb"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---:|" * len(cols))
    for n in args.users:
        row = measure(n, args)
        print("| " + " | ".join(f"{row[c]:.0f}" if row[c] >= 100 or float(row[c]).is_integer()
                                else f"{row[c]:.2f}" for c in cols) + " |", flush=True)


if __name__ == "__main__":
    main()
