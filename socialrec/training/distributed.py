"""Training over several processes with torch's own launcher and ``torch.distributed``.

``socialrec train --nproc N ...`` execs torchrun, which starts N ranks of the same command::

    torchrun --standalone --nproc-per-node N --max-restarts R -m socialrec.cli train ...

(on several machines: ``torchrun --nnodes M --node-rank K --rdzv-backend c10d
--rdzv-endpoint HOST:PORT --nproc-per-node N -m socialrec.cli train ...`` on each; README.md).
Each rank loads the same config and data; the social GNN's fit loop (models/socialgnn.py) then
calls the hooks of :class:`RankRuntime`:

- **Users sharded over ranks, the same global batch.** Every rank draws the same batches (same
  seed); rank ``r`` keeps the ``r``-th contiguous share of each batch's users (BPR: triples), and
  its loss is normalised by the whole batch's totals (models/losses.py ``BatchShare``), so the
  ranks' losses add up to the one-process loss of that batch.
- **The graph partitioned over ranks, read-only and shared.** The local rank 0 of each machine
  writes the normalised adjacency once as ``.npy`` files; every rank memory-maps them (the page
  cache holds one copy per machine) and keeps its block of rows, balanced by non-zeros. A layer is
  ``A @ x``: each rank multiplies its block and the blocks are gathered (``broadcast`` from each
  owner); backward all-reduces the incoming gradient and multiplies it by the block again (the
  adjacency is symmetric). Without this every rank would propagate the whole graph, the bulk of a
  step, and two ranks would be no faster than one.
- **Gradients all-reduced.** After ``backward()`` each parameter's gradient is summed over ranks
  with ``torch.distributed.all_reduce`` — what DistributedDataParallel does, by hand: DDP only
  synchronises a backward that follows its own ``forward()``, and the recommender's steps call the
  module's ``layers()``/``split()`` and the loss objects instead; the one large gradient (the
  embedding table) is ready only at the very end of backward, so DDP's bucketing would have
  nothing to overlap either. Parameters start as rank 0's (broadcast), and every rank applies the
  same Adam step to the same sums, so they stay equal.
- **Rank 0 reports**: progress, validation (the value is broadcast, so every rank stops at the
  same epoch), MLflow logging, the bundle and registration (training/pipeline.py).
- **Checkpoints** every ``distributed.checkpoint_every_steps`` steps and at every epoch's end,
  written by rank 0 to a temporary file and renamed. When a rank dies torchrun stops the others
  and, within ``--max-restarts``, starts them all again: they resume from the last checkpoint
  (the samplers replay their draws to its step), so the result is the uninterrupted run's.
- gloo for CPU tensors, NCCL for CUDA tensors when torch sees a GPU (``cpu:gloo,cuda:nccl``); the
  social GNN trains on CPU today, so gloo is what carries its collectives.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from socialrec.features.paths import project_dir
from socialrec.models.gnn import SocialGNN
from socialrec.models.losses import BatchShare
from socialrec.models.runtime import FitHistory, FitRuntime, FitState

log = logging.getLogger(__name__)

#: Environment variables torchrun sets in every rank (and a rank started by hand needs).
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A distributed run that cannot go on; the message says which rank and what to check."""


def under_torchrun() -> bool:
    """Whether this process is a rank started by torchrun (or given its environment by hand)."""
    return all(name in os.environ for name in TORCHRUN_ENV)


def torchrun_command(nproc: int, max_restarts: int, args: list[str]) -> list[str]:
    """The launcher command that starts ``nproc`` ranks of ``socialrec <args>`` on this machine:
    torchrun itself (the script beside this Python, or its module)."""
    beside = Path(sys.executable).with_name("torchrun")
    launcher = [str(beside)] if beside.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", f"--nproc-per-node={nproc}",
            f"--max-restarts={max_restarts}", "-m", "socialrec.cli", *args]


def launch_problem(config: dict[str, Any], nproc: int) -> str | None:
    """What makes ``nproc`` ranks impossible for ``config``, known before any data is read (the
    ranks check the data itself): None when nothing does."""
    name = config["model"]["name"]
    if nproc < 1:
        return "needs at least one process"
    if name not in ("socialgnn", "lightgcn"):
        return f"model {name!r} trains in one process; socialgnn and lightgcn train on several"
    model = config["model"].get(name) or {}
    merged = {**(config["model"].get("socialgnn") or {}), **model}
    for key in ("cl_weight", "push_weight"):
        if merged.get(key, 0) > 0:
            return unsupported(name, key)
    loss = merged.get("loss", "softmax")
    key = "batch_size" if loss == "bpr" else "users_per_step"
    per_step = merged.get(key, 4096 if loss == "bpr" else 256)
    if per_step < nproc:
        return (f"model.{name}.{key}={per_step} cannot be shared by {nproc} ranks (each rank "
                f"takes a share of every step's batch); use at most {per_step} processes")
    return None


def unsupported(model: str, key: str) -> str:
    return (f"model.{model}.{key} > 0 is not supported by a distributed fit yet (its term is "
            f"not split over ranks); train it in one process")


def torchrun_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to start torchrun in: ``base`` (this process's) with the ranks' own
    rendezvous store. torchrun otherwise shares its store with the ranks, and after an elastic
    restart a rank can read a peer's address from the attempt before and fail to connect
    (pytorch/pytorch#135712; seen here as gloo's "Connection refused" in one restart in two)."""
    return {**(os.environ if base is None else base), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def launch(nproc: int, max_restarts: int, args: list[str]) -> None:
    """Replace this process by torchrun starting ``nproc`` ranks of ``socialrec <args>``."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    command = torchrun_command(nproc, max_restarts, without_nproc(args))
    os.execve(command[0], command, torchrun_env())


def without_nproc(args: list[str]) -> list[str]:
    """``args`` less ``--nproc N`` / ``--nproc=N`` (torchrun would take it for its own
    ``--nproc-per-node``; the ranks know they are ranks from their environment)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


@dataclass
class RankInfo:
    rank: int
    world: int
    local_rank: int
    backend: str


def init_process_group(timeout_s: float) -> RankInfo:
    """Join the job torchrun started (its environment says where), or fail within ``timeout_s``
    with a message naming the rendezvous this rank could not reach."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    # collectives on CPU tensors go through gloo, on CUDA tensors through NCCL
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as err:  # DistNetworkError / DistStoreError are both
        raise DistributedError(
            f"rank {rank} of {world} could not reach the others at {where} within "
            f"{timeout_s:g} s (distributed.timeout_s): {str(err).splitlines()[0]} Check that "
            f"every rank was started "
            f"with the same rendezvous endpoint and that it is reachable from this machine."
        ) from None
    return RankInfo(rank, world, local_rank, backend)


@contextmanager
def process_group(timeout_s: float) -> Iterator[RankInfo]:
    """:func:`init_process_group`, left again on the way out. A rank that exits with its gloo
    group still alive can abort in the group's destructor ("terminate called without an active
    exception"): torchrun then reads a finished rank as a failed one."""
    info = init_process_group(timeout_s)
    try:
        yield info
    finally:
        dist.destroy_process_group()


# --- the graph, partitioned by rows --------------------------------------------------------------


def balanced_rows(indptr: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous row ranges of a CSR matrix with about equal work each (non-zeros plus
    one per row): users have many more edges than a row count would say."""
    n = len(indptr) - 1
    if n < parts:
        raise ValueError(f"cannot partition a graph of {n} nodes over {parts} ranks")
    cost = indptr.astype(np.float64) + np.arange(n + 1)
    cuts = np.searchsorted(cost, cost[-1] * np.arange(1, parts) / parts)
    cuts = np.clip(cuts, np.arange(1, parts), n - parts + np.arange(1, parts))  # no empty block
    edges = [0, *(int(c) for c in cuts), n]
    return list(itertools.pairwise(edges))


@dataclass
class Traffic:
    """Payload bytes this rank moved through collectives, by kind."""

    all_reduce: int = 0
    gather: int = 0
    steps: int = 0

    def per_step(self) -> dict[str, float]:
        n = max(self.steps, 1)
        return {"all_reduce_bytes_per_step": self.all_reduce / n,
                "gather_bytes_per_step": self.gather / n}


@dataclass
class Partition:
    """Which rows of the graph each rank multiplies, and the collectives that join the blocks."""

    bounds: list[tuple[int, int]]
    rank: int
    traffic: Traffic = field(default_factory=Traffic)

    @property
    def n(self) -> int:
        return self.bounds[-1][1]

    @property
    def mine(self) -> tuple[int, int]:
        return self.bounds[self.rank]

    def gather(self, block: Tensor) -> Tensor:
        """Every rank's block of rows, stacked: the whole ``n × d`` result on every rank."""
        out = block.new_empty((self.n, block.shape[1]))
        lo, hi = self.mine
        out[lo:hi] = block
        for owner, (a, b) in enumerate(self.bounds):
            dist.broadcast(out[a:b], src=owner)
        self.traffic.gather += out.numel() * out.element_size()
        return out

    def all_reduce(self, tensor: Tensor) -> Tensor:
        dist.all_reduce(tensor)
        self.traffic.all_reduce += tensor.numel() * tensor.element_size()
        return tensor


class _PartitionedSpMM(torch.autograd.Function):
    """``A @ x`` with ``A`` symmetric and split by rows over ranks; ``x`` is the same on every
    rank. Forward: this rank's rows, then gathered. Backward: the gradient each rank holds is its
    part (its loss's); their sum, times this rank's rows of ``A`` (``Aᵀ = A``), is this rank's part
    of the gradient of ``x`` — the other rows are the other ranks' parts, and the parts add up when
    the parameters' gradients are all-reduced."""

    @staticmethod
    def forward(ctx, block: Tensor, x: Tensor, part: Partition) -> Tensor:
        ctx.block, ctx.part = block, part
        return part.gather(torch.sparse.mm(block, x))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor, None]:
        part: Partition = ctx.part
        total = part.all_reduce(grad.contiguous().clone())
        mine = torch.sparse.mm(ctx.block, total)
        lo, hi = part.mine
        total.zero_()
        total[lo:hi] = mine
        return None, total, None


class PartitionedPropagation:
    """A :class:`~socialrec.models.gnn.SocialGNN` layer for a rank: ``adj`` is its block of rows."""

    def __init__(self, part: Partition) -> None:
        self.part = part

    def __call__(self, adj: Tensor, x: Tensor) -> Tensor:
        return _PartitionedSpMM.apply(adj, x, self.part)


CSR_FILES = ("indptr", "indices", "data")


def write_csr(directory: Path, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> None:
    """The three arrays as ``.npy`` files in ``directory``, complete or not at all (written to a
    temporary directory beside it, then renamed)."""
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, array in zip(CSR_FILES, (indptr, indices, data), strict=True):
        np.save(tmp / f"{name}.npy", array, allow_pickle=False)
    os.replace(tmp, directory)


def map_csr(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of :func:`write_csr`, memory-mapped (copy-on-write: pages are shared by every
    process that maps them until one writes, which nothing here does)."""
    loaded = [np.load(directory / f"{name}.npy", mmap_mode="c", allow_pickle=False)
              for name in CSR_FILES]
    return loaded[0], loaded[1], loaded[2]


def row_block(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, rows: tuple[int, int]
              ) -> Tensor:
    """Rows ``[lo, hi)`` of a CSR matrix as a torch CSR tensor over the mapped arrays (no copy of
    the non-zeros)."""
    lo, hi = rows
    start, end = int(indptr[lo]), int(indptr[hi])
    crow = torch.from_numpy(np.asarray(indptr[lo:hi + 1], dtype=np.int64) - start)
    return torch.sparse_csr_tensor(crow, torch.from_numpy(indices[start:end]),
                                   torch.from_numpy(data[start:end]),
                                   size=(hi - lo, len(indptr) - 1), check_invariants=False)


# --- one rank of a fit ---------------------------------------------------------------------------


@dataclass
class RankSettings:
    """What a rank's runtime needs of the ``distributed:`` config section."""

    run_dir: Path  # this run's checkpoints and shared graph (one per config and dataset)
    checkpoint_every_steps: int | None
    fingerprint: str  # config + dataset: a checkpoint of anything else is never resumed


class RankRuntime(FitRuntime):
    """The hooks of models/runtime.py for one rank of a torchrun job (module docstring)."""

    def __init__(self, info: RankInfo, settings: RankSettings) -> None:
        self.info = info
        self.settings = settings
        self.main = info.rank == 0
        self.partition: Partition | None = None
        self.loss = "softmax"
        self.steps = 0

    @property
    def checkpoint_path(self) -> Path:
        return self.settings.run_dir / "fit.npz"

    # the graph
    def adjacency(self, build: Callable[[], Tensor]) -> Tensor:
        shared = self.settings.run_dir / "adjacency"
        if self.info.local_rank == 0 and not shared.is_dir():
            adj = build()
            write_csr(shared, adj.crow_indices().numpy(), adj.col_indices().numpy(),
                      adj.values().numpy())
            del adj
        dist.barrier()
        indptr, indices, data = map_csr(shared)
        self.partition = Partition(balanced_rows(indptr, self.info.world), self.info.rank)
        return row_block(indptr, indices, data, self.partition.mine)

    def prepare(self, module: nn.Module, config: Any) -> None:
        for key in ("cl_weight", "push_weight"):
            if getattr(config, key, 0) > 0:
                raise ValueError(unsupported("socialgnn", key))
        self.loss = config.loss
        for param in module.parameters():  # every rank starts from rank 0's initialisation
            dist.broadcast(param.data, src=0)
        assert self.partition is not None, "adjacency() comes first"
        if not isinstance(module, SocialGNN):
            raise TypeError(f"a distributed fit propagates a SocialGNN, not {type(module)}")
        module.propagation = PartitionedPropagation(self.partition)

    # the batches
    def batches(self, epoch: Iterator[tuple]) -> Iterator[tuple]:
        world, rank = self.info.world, self.info.rank
        for i, batch in enumerate(epoch):
            size = len(batch[0])
            if i == 0 and size < world:
                unit = "triples (model.socialgnn.batch_size)" if self.loss == "bpr" else (
                    "users (model.socialgnn.users_per_step, and users with training items)")
                raise ValueError(f"--nproc {world} is more than the data can shard: a step has "
                                 f"{size} {unit}, fewer than one per rank")
            base, extra = divmod(size, world)
            lo = rank * base + min(rank, extra)
            hi = lo + base + (rank < extra)
            yield _share(batch, lo, hi, self.loss, rank, world)

    def reduce_gradients(self, module: nn.Module) -> None:
        assert self.partition is not None
        for param in module.parameters():
            if param.grad is not None:
                self.partition.all_reduce(param.grad)
        self.partition.traffic.steps += 1

    def total(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def any(self, flag: bool) -> bool:
        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def validate(self, validator: Callable[[np.ndarray, np.ndarray], float],
                 user_emb: np.ndarray, item_emb: np.ndarray) -> float:
        t = torch.tensor([validator(user_emb, item_emb) if self.main else 0.0],
                         dtype=torch.float64)
        dist.broadcast(t, src=0)
        return float(t.item())

    # checkpoints
    def resume(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> FitState | None:
        path = self.checkpoint_path
        if not path.exists():
            return None
        saved = load_checkpoint(path)
        if saved["fingerprint"] != self.settings.fingerprint:
            raise DistributedError(f"{path} was written by another config or dataset; remove it")
        module.load_state_dict(saved["module"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        if not self.main:  # the epoch's loss so far is kept by rank 0 (the shares are summed)
            state["epoch_loss"] = 0.0
        if self.main:
            log.info("resuming from %s: epoch %d, step %d", path, state["epoch"], state["step"])
        return FitState(best=saved["best"], history=_history_from(saved["history"]), **state)

    def checkpoint(self, state: FitState, module: nn.Module, optimizer: torch.optim.Optimizer,
                   end_of_epoch: bool) -> None:
        every = self.settings.checkpoint_every_steps
        if every is None:
            return
        if not end_of_epoch:
            self.steps += 1
            if self.steps % every:
                return
        epoch_loss = self.total(state.epoch_loss)  # every rank's share of the epoch so far
        if not self.main:
            return
        saved = {
            "fingerprint": self.settings.fingerprint,
            "module": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best": state.best,
            "history": asdict(state.history),
            "state": {"epoch": state.epoch, "step": state.step, "epoch_loss": epoch_loss,
                      "stale": state.stale, "seconds": state.seconds},
        }
        path = self.checkpoint_path
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(saved, tmp)
        os.replace(tmp, path)

    def finished(self) -> None:
        dist.barrier()  # nobody reads the shared graph any more
        if self.main:
            shutil.rmtree(self.settings.run_dir, ignore_errors=True)


def save_checkpoint(saved: dict[str, Any], path: Path) -> None:
    """``saved`` (nested dicts, lists and scalars with tensors among them: a state_dict, an
    optimizer's, the RNG state) as one .npz without pickle: each tensor an array, the structure
    JSON in the entry ``__structure__`` (dict keys kept with their type: optimizer state is keyed
    by int)."""
    arrays: dict[str, np.ndarray] = {}

    def encode(value: Any) -> Any:
        if isinstance(value, Tensor):
            name = f"t{len(arrays)}"
            arrays[name] = value.detach().cpu().numpy()
            return {"tensor": name}
        if isinstance(value, dict):
            return {"dict": [[k, encode(v)] for k, v in value.items()]}
        if isinstance(value, list | tuple):
            return {"list": [encode(v) for v in value]}
        return {"value": value}

    structure = json.dumps(encode(saved))
    arrays["__structure__"] = np.frombuffer(structure.encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its own flag


def load_checkpoint(path: Path) -> dict[str, Any]:
    """What :func:`save_checkpoint` wrote (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}

    def decode(node: dict[str, Any]) -> Any:
        if "tensor" in node:
            return torch.from_numpy(arrays[node["tensor"]].copy())
        if "dict" in node:
            return {k: decode(v) for k, v in node["dict"]}
        if "list" in node:
            return [decode(v) for v in node["list"]]
        return node["value"]

    return decode(json.loads(arrays.pop("__structure__").tobytes().decode()))


def _history_from(saved: dict[str, Any]) -> FitHistory:
    return FitHistory(**{**saved, "valid": [(int(e), float(v)) for e, v in saved["valid"]]})


def _share(batch: tuple, lo: int, hi: int, loss: str, rank: int, world: int) -> tuple:
    """Users (or triples) ``[lo, hi)`` of a step's batch, and the batch's totals."""
    if loss == "bpr":
        users, pos, neg = batch
        return users[lo:hi], pos[lo:hi], neg[lo:hi], BatchShare(size=len(users))
    users, rows, items, weights = batch
    # the positives of users lo..hi-1 are a contiguous run: rows are sorted
    a, b = (int(x) for x in torch.searchsorted(rows, torch.tensor([lo, hi])))
    charged = torch.unique(items)[rank::world] if loss == "softmax" else None
    share = BatchShare(size=len(users), weight=float(weights.sum()), items=charged)
    return users[lo:hi], rows[a:b] - lo, items[a:b], weights[a:b], share


def run_key(config: dict[str, Any], dataset_hash: str) -> str:
    """A run's identity for its checkpoints: the resolved config and the data's content hash, so
    that a restart (the same command again) finds them and nothing else does."""
    text = json.dumps(config, sort_keys=True, default=str) + dataset_hash
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_root(config: dict[str, Any]) -> Path:
    root = Path(config["distributed"]["checkpoint_dir"]).expanduser()
    return root if root.is_absolute() else project_dir() / root


def rank_runtime(info: RankInfo, config: dict[str, Any], dataset_hash: str) -> RankRuntime:
    key = run_key(config, dataset_hash)
    settings = RankSettings(run_dir=checkpoint_root(config) / key,
                            checkpoint_every_steps=config["distributed"]["checkpoint_every_steps"],
                            fingerprint=key)
    return RankRuntime(info, settings)


def train_on_rank(config: dict[str, Any], **run_options: Any):
    """One rank of ``socialrec train`` under torchrun: every rank loads the data and fits; rank 0
    also evaluates, logs to MLflow and registers (training/pipeline.py), and returns its
    :class:`~socialrec.training.pipeline.TrainResult`; the others return None."""
    from socialrec.training.pipeline import fit_model, prepare, run_training

    with process_group(float(config["distributed"]["timeout_s"])) as info:
        prepared = prepare(config)
        runtime = rank_runtime(info, config, prepared.dataset_hash)
        try:
            if info.rank == 0:
                return run_training(config, prepared=prepared, runtime=runtime, **run_options)
            fit_model(prepared, config, show_progress=False, runtime=runtime)
            return None
        except RuntimeError as err:
            if "Connection closed by peer" in str(err) or "Timed out" in str(err):
                raise DistributedError(
                    f"rank {info.rank} lost the other ranks (distributed.timeout_s="
                    f"{config['distributed']['timeout_s']}): {err}") from err
            raise
