"""A rank of a distributed social-GNN fit on a tiny synthetic graph, for the equivalence and
restart tests (tests/training/test_distributed.py). Run by torchrun::

    torchrun --standalone --nproc-per-node 2 tests/training/ranked_fit.py OUT RUN_DIR [--kill-at N]

For every setting of :data:`SETTINGS` the ranks fit once and rank 0 writes the served embeddings,
the loss curve and the validation curve to ``OUT/<name>.npz``. ``--kill-at N``: on torchrun's first
attempt rank 1 kills itself (SIGKILL) after its N-th step, so that torchrun restarts every rank and
they resume from the last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import numpy as np

from socialrec.features.graph import GraphData, build_graph
from socialrec.features.splits import make_split
from socialrec.features.synthetic import generate
from socialrec.models.socialgnn import SocialGNNRecommender
from socialrec.training.distributed import RankInfo, RankRuntime, RankSettings, process_group

#: name -> model overrides; every one trains 3 epochs of a few steps each
SETTINGS: dict[str, dict] = {
    "softmax": {"loss": "softmax", "item_bias": True, "users_per_step": 96},
    "softmax_sampled": {"loss": "softmax", "softmax_negatives": 40, "users_per_step": 96},
    "ials": {"loss": "ials", "users_per_step": 96, "l2": 0.05},
    "bpr": {"loss": "bpr", "batch_size": 1500, "neg_candidates": 2},
}
COMMON = {"embedding_dim": 16, "num_layers": 2, "lr": 0.02, "l2": 1e-3, "epochs": 3,
          "patience": 5, "num_threads": 1, "seed": 11}


def tiny_graph() -> GraphData:
    world = generate(n_users=400, n_items=150, n_communities=5, seed=5)
    split = make_split(world, {"method": "random_ratio", "ratios": [0.8, 0.1, 0.1], "seed": 1})
    return build_graph(world, split)


def validator_for(data: GraphData):
    valid = data.valid.tocoo()

    def validate(user_emb: np.ndarray, item_emb: np.ndarray) -> float:
        return float((user_emb[valid.row] * item_emb[valid.col]).sum(axis=1).mean())

    return validate


def model_for(name: str, data: GraphData) -> SocialGNNRecommender:
    return SocialGNNRecommender(validator=validator_for(data), **{**COMMON, **SETTINGS[name]})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument("--kill-in", default="ials")
    parser.add_argument("--only", nargs="*", default=list(SETTINGS))
    parser.add_argument("--every", type=int, default=2)
    args = parser.parse_args()
    with process_group(60) as info:
        fit_every_setting(args, info)


def fit_every_setting(args: argparse.Namespace, info: RankInfo) -> None:
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    data = tiny_graph()
    for name in args.only:
        runtime = RankRuntime(info, RankSettings(run_dir=args.run_dir / name,
                                                 checkpoint_every_steps=args.every,
                                                 fingerprint=name))
        if args.kill_at and name == args.kill_in and first_attempt and info.rank == 1:
            reduce, steps = runtime.reduce_gradients, [0]

            def dying(module, reduce=reduce, steps=steps) -> None:
                reduce(module)
                steps[0] += 1
                if steps[0] == args.kill_at:
                    print(f"rank 1 killing itself after step {steps[0]}", file=sys.stderr,
                          flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)

            runtime.reduce_gradients = dying  # type: ignore[method-assign]
        resume = runtime.resume

        def announced(module, optimizer, resume=resume, name=name):
            state = resume(module, optimizer)
            if state is not None and info.rank == 0:
                print(f"resumed {name} at epoch {state.epoch} step {state.step}", file=sys.stderr,
                      flush=True)
            return state

        runtime.resume = announced  # type: ignore[method-assign]
        model = model_for(name, data)
        model.runtime = runtime
        model.fit(data, show_progress=False)
        if info.rank == 0:
            user_emb, item_emb = model.embeddings()
            args.out.mkdir(parents=True, exist_ok=True)
            np.savez(args.out / f"{name}.npz", user=user_emb, item=item_emb,
                     loss=np.asarray(model.history.loss),
                     valid=np.asarray([v for _, v in model.history.valid]),
                     traffic=np.asarray([runtime.partition.traffic.all_reduce,
                                         runtime.partition.traffic.gather]))


if __name__ == "__main__":
    main()
