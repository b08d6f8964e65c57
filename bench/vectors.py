"""User-index benchmark: approximate indexes (IVF-PQ, HNSW) beside exact search, same vectors, same
queries, same run.

    .venv/bin/python -m bench.vectors                          # 1M and 10M users x 64 dims
    .venv/bin/python -m bench.vectors --users 200000 --no-append   # a quick look

For each size, builds the user index of every kind with the shipped builder
(socialrec/models/index.py, ``build_index``) and reports build time, index memory, p50 / p99 of
one search at k=100 and k=10,000 through serving's ``search`` (serving/retrieval.py: the per-call
parameters the service uses, one OpenMP thread as in the service), and recall@100 (and @10,000)
against exact search over ``--recall-queries`` queries. Ratios are to exact search (IndexFlatIP)
measured in the same run. HNSW is skipped above ``--hnsw-max-users`` (its build rate at the sizes
it ran is printed). Prints a markdown table and appends it, with the command, the machine and
its load average, to bench/RESULTS.md.

The vectors (random, but with the structure of learned embeddings): users and items (the
queries) belong to 100 communities of Dirichlet sizes, each with 100 sub-interests; a vector is
its sub-interest's centre plus Gaussian noise, scaled by a log-normal norm (sigma 0.42: the
spread of user-vector norms of an ALS model trained on the synthetic world, whose IVF recall
against nprobe these settings follow at 20k users). Isotropic Gaussian vectors, by contrast,
have no neighbourhoods for any index to find.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import faiss
import numpy as np

from bench.results import publish
from socialrec.models.index import (
    IndexConfig,
    build_index,
    exact_topk,
    kind,
    raise_nprobe,
    recall_at,
)
from socialrec.serving.retrieval import search

COMMUNITIES = 100
SUB_INTERESTS = 100
SUB_SPREAD = 0.5
NOISE = 0.4
NORM_SIGMA = 0.42
CHUNK = 500_000


class World:
    """Community and sub-interest centres shared by users and items (fixed by ``seed``)."""

    def __init__(self, dim: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        communities = rng.normal(size=(COMMUNITIES, dim)) / np.sqrt(dim)
        offsets = SUB_SPREAD * rng.normal(size=(COMMUNITIES, SUB_INTERESTS, dim)) / np.sqrt(dim)
        self.centres = (communities[:, None, :] + offsets).reshape(-1, dim).astype(np.float32)
        self.weights = rng.dirichlet(np.full(COMMUNITIES, 3.0))
        self.dim = dim

    def vectors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, CHUNK):  # float32 chunks: 10M x 64 is 2.56 GB, float64 twice that
            m = min(CHUNK, n - start)
            which = (rng.choice(COMMUNITIES, size=m, p=self.weights) * SUB_INTERESTS
                     + rng.integers(SUB_INTERESTS, size=m))
            x = self.centres[which] + NOISE * rng.standard_normal(
                (m, self.dim), dtype=np.float32) / np.float32(np.sqrt(self.dim))
            out[start:start + m] = x * rng.lognormal(0, NORM_SIGMA, size=(m, 1)).astype(np.float32)
        return out


@dataclass
class Row:
    users: int
    name: str
    build_s: float = float("nan")
    memory_mb: float = float("nan")
    p50: dict[int, float] = field(default_factory=dict)
    p99: dict[int, float] = field(default_factory=dict)
    recall: dict[int, float] = field(default_factory=dict)
    note: str = ""


def index_mb(index: faiss.Index) -> float:
    """Bytes the index holds (its serialised size; a flat index: its vectors, not copied)."""
    if isinstance(index, faiss.IndexFlat):
        return index.ntotal * index.d * 4 / 2**20
    return faiss.serialize_index(index).nbytes / 2**20


def timed_searches(index: faiss.Index, queries: np.ndarray, k: int) -> np.ndarray:
    """Milliseconds of each query, one at a time on one OpenMP thread (as the service runs)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        search(index, queries[0], k)  # warm-up
        out = []
        for q in queries:
            t = time.perf_counter()
            search(index, q, k)
            out.append((time.perf_counter() - t) * 1000)
        return np.asarray(out)
    finally:
        faiss.omp_set_num_threads(threads)


def measure(row: Row, index: faiss.Index, users: np.ndarray, queries: dict[str, np.ndarray],
            truth: dict[int, np.ndarray], ks: list[int]) -> None:
    row.memory_mb = index_mb(index)
    for k in ks:
        ms = timed_searches(index, queries[f"timed{k}"], k)
        row.p50[k], row.p99[k] = (float(v) for v in np.percentile(ms, [50, 99]))
    for k, ids in truth.items():
        row.recall[k] = (1.0 if kind(index) == "flat"
                         else recall_at(index, users, queries[f"recall{k}"], k, truth=ids))


def run_size(n: int, args: argparse.Namespace, world: World, hnsw_rate: list[float]) -> list[Row]:
    rng = np.random.default_rng(args.seed + n)
    t = time.perf_counter()
    users = world.vectors(n, rng)
    big = min(10_000, n // 10)
    ks = [100, big]
    queries = {"recall100": world.vectors(args.recall_queries, rng),
               f"recall{big}": world.vectors(args.recall_queries // 10, rng),
               "timed100": world.vectors(args.timed_queries, rng),
               f"timed{big}": world.vectors(args.timed_queries // 2, rng),
               "tune": world.vectors(args.recall_queries, rng)}  # nprobe's, not measured on
    truth = {100: exact_topk(users, queries["recall100"], 100),
             big: exact_topk(users, queries[f"recall{big}"], big)}
    print(f"{n:,} users: vectors and exact top-k in {time.perf_counter() - t:.0f} s "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    rows = []
    for name in args.kinds:
        row = Row(n, name)
        rows.append(row)
        if name == "hnsw" and n > args.hnsw_max_users:
            rate = f"{hnsw_rate[-1]:,.0f} vectors/s" if hnsw_rate else "not measured"
            row.note = (f"not built: above --hnsw-max-users {args.hnsw_max_users:,} (measured "
                        f"build rate {rate}: about {n / hnsw_rate[-1] / 3600:.1f} h here)"
                        if hnsw_rate else f"not built (build rate {rate})")
            continue
        config = IndexConfig(exact_threshold=n if name == "exact" else 0,
                             approximate="hnsw" if name == "hnsw" else "ivfpq",
                             refine_factor=args.refine_factor, pq_bytes=args.pq_bytes)
        t = time.perf_counter()
        index = build_index(users, config, seed=args.seed)
        # as build_indexes does: nprobe doubled until recall@100 reaches the floor (on queries
        # of their own, not the ones the recall below is measured on)
        raise_nprobe(index, users, queries["tune"], config.min_recall, len(queries["tune"]),
                     args.seed)
        row.build_s = time.perf_counter() - t
        if name == "hnsw":
            hnsw_rate.append(n / row.build_s)
        measure(row, index, users, queries, truth, ks)
        row.note = describe_index(index)
        print(f"  {name}: built in {row.build_s:.0f} s, recall@100 {row.recall[100]:.3f}, "
              f"p50 k=100 {row.p50[100]:.2f} ms (load {os.getloadavg()[0]:.1f})", flush=True)
        if name == "ivfpq":
            for nprobe in args.nprobe:  # the same index, other cells scanned: the trade-off
                probe = Row(n, f"ivfpq nprobe={nprobe}")
                faiss.extract_index_ivf(index).nprobe = nprobe
                measure(probe, index, users, queries, truth, ks)
                probe.build_s, probe.memory_mb = row.build_s, row.memory_mb
                probe.note = "same index, other nprobe"
                rows.append(probe)
        del index
        gc.collect()
    return rows


def describe_index(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexHNSWFlat):
        return (f"HNSW M={index.hnsw.nb_neighbors(1)}, efSearch {index.hnsw.efSearch} "  # type: ignore[attr-defined]
                "(>= k per call)")
    if kind(index) == "ivfpq":
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        pq = getattr(ivf, "pq", None)
        factor = getattr(index, "k_factor", 1)
        return (f"{type(ivf).__name__} nlist {ivf.nlist}, PQ M={getattr(pq, 'M', '?')}, "
                f"nprobe {ivf.nprobe} (more for large k), re-ranked x{factor:g}")
    return "IndexFlatIP"


def _ratio(a: float, b: float) -> float:
    return a / b if b == b and b else float("nan")  # NaN (b == b fails): not measured


def _num(v: float, fmt: str) -> str:
    return "—" if v != v else format(v, fmt)


def render(rows: list[Row]) -> str:
    big = max((k for r in rows for k in r.p50), default=10_000)
    lines = [f"| users | index | build s | memory MB | p50 ms k=100 | p99 ms k=100 | "
             f"p50 ms k={big:,} | p99 ms k={big:,} | recall@100 | recall@{big:,} | "
             f"memory / exact | p50 / exact k=100 | p50 / exact k={big:,} | notes |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    exact = {r.users: r for r in rows if r.name == "exact"}
    nan = float("nan")
    for r in rows:
        e = exact.get(r.users, Row(r.users, "none"))
        kb = max(r.p50, default=max(e.p50, default=big))
        lines.append(
            f"| {r.users:,} | {r.name} | {_num(r.build_s, '.1f')} | {_num(r.memory_mb, ',.0f')} | "
            f"{_num(r.p50.get(100, nan), '.2f')} | {_num(r.p99.get(100, nan), '.2f')} | "
            f"{_num(r.p50.get(kb, nan), '.2f')} | {_num(r.p99.get(kb, nan), '.2f')} | "
            f"{_num(r.recall.get(100, nan), '.3f')} | {_num(r.recall.get(kb, nan), '.3f')} | "
            f"{_num(_ratio(r.memory_mb, e.memory_mb), '.2f')} | "
            f"{_num(_ratio(r.p50.get(100, nan), e.p50.get(100, nan)), '.3f')} | "
            f"{_num(_ratio(r.p50.get(kb, nan), e.p50.get(kb, nan)), '.3f')} | {r.note} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--kinds", nargs="+", default=["exact", "ivfpq", "hnsw"],
                    choices=["exact", "ivfpq", "hnsw"])
    ap.add_argument("--nprobe", type=int, nargs="*", default=[32, 128],
                    help="IVF-PQ: also measure these nprobe on the same index")
    ap.add_argument("--hnsw-max-users", type=int, default=2_000_000,
                    help="skip HNSW above this size (its build time grows past an hour)")
    ap.add_argument("--refine-factor", type=int, default=IndexConfig().refine_factor,
                    help="IVF-PQ: candidates re-ranked per result (index.refine_factor)")
    ap.add_argument("--pq-bytes", type=int, default=IndexConfig().pq_bytes,
                    help="IVF-PQ: code bytes per vector (index.pq_bytes)")
    ap.add_argument("--recall-queries", type=int, default=200)
    ap.add_argument("--timed-queries", type=int, default=100,
                    help="queries timed per k (k=10,000: half as many)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true", help="print only; leave RESULTS.md")
    args = ap.parse_args()

    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    world = World(args.dim, args.seed)
    rows: list[Row] = []
    hnsw_rate: list[float] = []
    for n in args.users:
        rows.extend(run_size(n, args, world, hnsw_rate))
    table = render(rows)
    command = "python -m bench.vectors " + shlex.join(sys.argv[1:])
    header = (
        f"### User index — {started:%Y-%m-%d %H:%M} UTC\n\n"
        f"`{command.strip()}` — {args.dim} dims, clustered vectors (bench/vectors.py), "
        f"queries are item vectors of the same world; builds on {faiss.omp_get_max_threads()} "
        f"threads, searches one at a time on one thread through serving's `search`; recall "
        f"over {args.recall_queries} queries at k=100 and {args.recall_queries // 10} at the "
        f"large k; {platform.machine()}, {os.cpu_count()} CPUs, 1-min load average "
        f"{load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after.\n"
    )
    publish(header, table, append=not args.no_append)


if __name__ == "__main__":
    main()
