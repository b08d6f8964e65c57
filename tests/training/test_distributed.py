"""Distributed fits (training/distributed.py): real torchrun processes on CPU (gloo).

One torchrun job (2 ranks) fits every loss on a tiny graph (tests/training/ranked_fit.py); during
the iALS fit rank 1 kills itself mid-epoch on the first attempt, so torchrun restarts both ranks
and they resume from the last checkpoint. Each result is compared with the one-process fit of the
same settings and global batch.

Tolerance: the ranks add up their gradients in another order than one process does, so the
parameters differ by float32 rounding carried through 3 epochs of Adam: measured at most 1.3e-5
on unit-norm softmax embeddings and below 1e-6 for the other losses; asserted below 1e-4.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from socialrec.models.losses import BatchShare, BPRLoss, IALSLoss, SoftmaxLoss
from socialrec.training.distributed import (
    DistributedError,
    RankInfo,
    RankRuntime,
    RankSettings,
    balanced_rows,
    init_process_group,
    launch_problem,
    torchrun_command,
    torchrun_env,
)
from tests.training.ranked_fit import SETTINGS, model_for, tiny_graph

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "training" / "ranked_fit.py"
TOLERANCE = 1e-4
KILL_AT = 7  # rank 1's 7th iALS step: epoch 2 of 3 (5 steps an epoch), checkpoints every 2 steps


@pytest.fixture(scope="module")
def ranked(tmp_path_factory) -> tuple[Path, str]:
    """Run the torchrun job once: (its output folder, its log)."""
    tmp = tmp_path_factory.mktemp("ranked")
    command = [*torchrun_command(2, 1, [])[:-2], str(WORKER), str(tmp / "out"),
               str(tmp / "run"), "--kill-at", str(KILL_AT), "--kill-in", "ials"]
    env = torchrun_env({**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    return tmp / "out", log


@pytest.fixture(scope="module")
def graph():
    return tiny_graph()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SETTINGS))
def test_two_ranks_fit_the_one_process_model(ranked, graph, name):
    out, _ = ranked
    alone = model_for(name, graph).fit(graph, show_progress=False)
    got = np.load(out / f"{name}.npz")
    user_emb, item_emb = alone.embeddings()
    assert np.abs(got["user"] - user_emb).max() < TOLERANCE
    assert np.abs(got["item"] - item_emb).max() < TOLERANCE
    np.testing.assert_allclose(got["loss"], alone.history.loss, rtol=1e-5)
    np.testing.assert_allclose(got["valid"], [v for _, v in alone.history.valid], rtol=1e-5)
    all_reduced, gathered = got["traffic"]
    assert all_reduced > 0 and gathered > 0  # the ranks did talk


@pytest.mark.slow
def test_a_killed_rank_restarts_every_rank_from_the_last_checkpoint(ranked, graph):
    _, log = ranked
    assert f"rank 1 killing itself after step {KILL_AT}" in log
    # checkpoints every 2 steps: the 6th step (epoch 2, its 1st) is the last one before the kill
    assert "resumed ials at epoch 2 step 1" in log
    # ... and the run went on to the model an uninterrupted run gives (the loss curve included)
    alone = model_for("ials", graph).fit(graph, show_progress=False)
    got = np.load(ranked[0] / "ials.npz")
    assert np.abs(got["user"] - alone.embeddings()[0]).max() < TOLERANCE
    np.testing.assert_allclose(got["loss"], alone.history.loss, rtol=1e-5)
    np.testing.assert_allclose(got["valid"], [v for _, v in alone.history.valid], rtol=1e-5)


# --- the pieces, without processes ---------------------------------------------------------------


def test_row_blocks_cover_the_graph_in_balanced_contiguous_ranges():
    degree = np.r_[np.full(100, 50), np.full(400, 5)]  # heavy rows first, like users before items
    indptr = np.r_[0, np.cumsum(degree)]
    blocks = balanced_rows(indptr, 3)
    assert blocks[0][0] == 0 and blocks[-1][1] == 500
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    work = [indptr[hi] - indptr[lo] + (hi - lo) for lo, hi in blocks]
    assert max(work) / min(work) < 1.1
    with pytest.raises(ValueError, match="cannot partition a graph of 2 nodes over 3 ranks"):
        balanced_rows(np.array([0, 1, 2]), 3)


def _runtime(rank: int, world: int, loss: str) -> RankRuntime:
    runtime = RankRuntime(RankInfo(rank, world, rank, "gloo"),
                          RankSettings(Path("unused"), None, "x"))
    runtime.loss = loss
    return runtime


@pytest.mark.parametrize("loss", ["softmax", "ials", "bpr"])
def test_the_shares_losses_add_up_to_the_whole_batchs_loss(loss):
    """What makes 2 ranks equal to 1: each rank's loss on its share, normalised by the whole
    batch's totals, sums to the one-process loss (and so do the gradients)."""
    g = torch.Generator().manual_seed(0)
    n_users, n_items, dim = 30, 20, 8
    e0 = torch.randn(n_users + n_items, dim, generator=g, requires_grad=True)
    user_emb, item_emb = e0[:n_users] * 1.5, e0[n_users:] * 0.5
    if loss == "bpr":
        users = torch.randint(0, n_users, (23,), generator=g)
        batch = (users, torch.randint(0, n_items, (23,), generator=g),
                 torch.randint(0, n_items, (23,), generator=g))
        fn = BPRLoss(l2=0.1)

        def call(b, share=None):
            return fn(user_emb, item_emb, *b[:3], e0, n_users, share)
    else:
        users = torch.randperm(n_users, generator=g)[:11]
        counts = torch.randint(1, 5, (11,), generator=g)
        rows = torch.repeat_interleave(torch.arange(11), counts)
        items = torch.randint(0, n_items, (len(rows),), generator=g)
        weights = torch.rand(len(rows), generator=g) + 0.5
        batch = (users, rows, items, weights)
        if loss == "softmax":
            soft = SoftmaxLoss(temperature=0.2, l2=0.1)

            def call(b, share=None):
                return soft(user_emb, item_emb, *b[:4], e0, n_users, None, share)
        else:
            ials = IALSLoss(l2=0.1)

            def call(b, share=None):
                return ials(user_emb, item_emb, *b[:4], e0, n_users, share)
    whole = call(batch)
    (grad_whole,) = torch.autograd.grad(whole, e0, retain_graph=True)
    shares = [next(_runtime(r, 3, loss).batches(iter([batch]))) for r in range(3)]
    assert all(isinstance(s[-1], BatchShare) for s in shares)
    parts = [call(s[:-1], s[-1]) for s in shares]
    assert sum(len(s[0]) for s in shares) == len(batch[0])
    torch.testing.assert_close(sum(parts), whole)
    (grad_parts,) = torch.autograd.grad(sum(parts), e0)
    torch.testing.assert_close(grad_parts, grad_whole)


def test_more_ranks_than_a_step_has_users_is_refused():
    users = torch.arange(3)
    batch = (users, torch.arange(3), torch.arange(3), torch.ones(3))
    with pytest.raises(ValueError, match="--nproc 4 is more than the data can shard: a step has "
                                         "3 users"):
        next(_runtime(0, 4, "ials").batches(iter([batch])))


def test_launch_refuses_more_processes_than_a_step_can_share():
    config = {"model": {"name": "socialgnn", "socialgnn": {"loss": "softmax",
                                                           "users_per_step": 4}}}
    assert "users_per_step=4 cannot be shared by 8 ranks" in launch_problem(config, 8)
    assert launch_problem(config, 4) is None
    assert "trains in one process" in launch_problem({"model": {"name": "als"}}, 2)


def test_a_rank_that_cannot_reach_the_others_fails_clearly(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DistributedError, match=rf"rank 1 of 2 could not reach the others at "
                                               rf"127.0.0.1:{port} within 2 s"):
        init_process_group(2)


def test_the_launcher_is_torchrun():
    command = torchrun_command(3, 2, ["train", "--config", "x.yaml"])
    assert Path(command[0]).name == "torchrun" or command[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc-per-node=3" in command and "--max-restarts=2" in command
    assert command[-5:] == ["-m", "socialrec.cli", "train", "--config", "x.yaml"]
    assert sys.executable  # the launcher runs beside this interpreter


# --- the command, end to end ---------------------------------------------------------------------

TINY = """
dataset:
  name: tiny
  source: synthetic
  synthetic: {n_users: 500, n_items: 150, n_communities: 5, seed: 3}
split: {method: temporal, ratios: [0.8, 0.1, 0.1]}
model:
  name: socialgnn
  socialgnn: {loss: ials, users_per_step: 128, embedding_dim: 16, num_layers: 2, epochs: 2,
              num_threads: 1, l2: 0.05}
tracking:
  uri: sqlite:///{tmp}/mlruns.db
  artifact_root: {tmp}/mlruns
distributed:
  checkpoint_dir: {tmp}/checkpoints
  max_restarts: 0
  timeout_s: 120
"""


def _tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("{tmp}", str(tmp_path)))
    return path


def _socialrec(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = torchrun_env({**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"})
    return subprocess.run([str(Path(sys.executable).with_name("socialrec")), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def _registered(tmp_path: Path) -> tuple[list, list]:
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    versions = client.search_model_versions("name='socialrec-tiny'")
    return runs, versions


@pytest.mark.slow
def test_train_nproc_2_logs_and_registers_once_from_rank_0(tmp_path):
    done = _socialrec(["train", "--config", str(_tiny_config(tmp_path)), "--nproc", "2",
                       "--bundle-out", str(tmp_path / "bundle")], tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "registered socialrec-tiny version 1" in done.stdout
    runs, versions = _registered(tmp_path)
    assert len(runs) == 1 and len(versions) == 1  # rank 1 logged nothing
    assert runs[0].data.tags["distributed.world_size"] == "2"
    assert runs[0].info.status == "FINISHED"
    assert (tmp_path / "bundle" / "meta.json").exists()
    assert not any((tmp_path / "checkpoints").iterdir())  # removed once the fit ended


@pytest.mark.slow
def test_a_failing_rank_leaves_no_model(tmp_path):
    """Started by torchrun directly (as on a cluster): the ranks refuse a setting they cannot
    split; the run fails and nothing is registered or bundled."""
    config = _tiny_config(tmp_path)
    command = torchrun_command(2, 0, ["train", "--config", str(config), "--set",
                                      "model.socialgnn.cl_weight=0.1",
                                      "--bundle-out", str(tmp_path / "bundle")])
    env = torchrun_env({**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"})
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode != 0
    assert "model.socialgnn.cl_weight > 0 is not supported by a distributed fit" in (
        done.stdout + done.stderr)
    runs, versions = _registered(tmp_path)
    assert versions == [] and not (tmp_path / "bundle").exists()
    assert all(run.info.status != "FINISHED" for run in runs)


def test_a_checkpoint_round_trips_without_pickle(tmp_path):
    """Module, Adam state (keyed by int), RNG state, -inf and nested lists come back equal from
    the .npz (read with allow_pickle=False)."""
    from socialrec.training.distributed import load_checkpoint, save_checkpoint

    module = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    module(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    saved = {"module": module.state_dict(), "optimizer": optimizer.state_dict(),
             "torch_rng": torch.get_rng_state(), "best": {"emb": torch.arange(6.0)},
             "history": {"best_valid": float("-inf"), "valid": [(1, 0.5), (2, 0.25)]}}
    save_checkpoint(saved, tmp_path / "fit.npz")
    np.load(tmp_path / "fit.npz", allow_pickle=False).close()
    got = load_checkpoint(tmp_path / "fit.npz")
    other = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.01)
    other.load_state_dict(got["optimizer"])
    assert set(got["optimizer"]["state"]) == {0, 1}
    for key, value in module.state_dict().items():
        assert torch.equal(got["module"][key], value)
    assert torch.equal(got["torch_rng"], saved["torch_rng"])
    assert got["history"] == {"best_valid": float("-inf"), "valid": [[1, 0.5], [2, 0.25]]}
