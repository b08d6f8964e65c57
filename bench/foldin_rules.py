"""Which fold-in rule places a new product best: least squares or one layer of propagation, per
model, measured on products the model never saw.

    .venv/bin/python -m bench.foldin_rules                  # 5k users, 1.2k items, 3 models
    .venv/bin/python -m bench.foldin_rules --users 2000 --items 500 --max-seconds 20  # a look

(run from the repository root). A synthetic world (configs/synthetic.yaml's generator, smaller)
is split as the demo splits it; ``--launches`` products with at least 25 interacting users are
then removed from the training matrix entirely — the models never see them, as for a product
launched after the last retrain. Three models are fitted on what is left: the demo's social GNN
(BPR loss, configs/synthetic.yaml), the social GNN under the softmax default
(configs/defaults.yaml) and implicit's ALS. Each launched product is then folded in
(models/foldin.py) from its first ``m`` users' events (by time; m = 1, 3, 10) under each rule,
and every other user is ranked by the folded-in vector: recall@50 of the product's later users
(all its other interactions, any split). Beside them, the product represented by its category's
mean (what serves before any feedback) and by a random vector.

Prints a markdown table and appends it with the command to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import shlex
import sys
import time
from datetime import UTC, datetime

import numpy as np
import scipy.sparse as sp

from bench.results import publish
from socialrec.features.graph import DEFAULT_EVENT_WEIGHTS
from socialrec.models.bundle import ModelBundle
from socialrec.models.foldin import FoldIn, FoldInRule, rule_for
from socialrec.models.registry import make_model
from socialrec.training.config import load_config
from socialrec.training.pipeline import prepare, validator_for

FIRST = (1, 3, 10)
K = 50
#: strengths of the category prior tried (FoldIn.with_prior: the stand-in as this many users)
PRIORS = (1.0, 3.0, 10.0)


def models(config: dict, max_seconds: float) -> dict[str, dict]:
    """name -> a config whose model section fits that model (one thread, a time budget)."""
    out = {}
    bpr = copy.deepcopy(config)  # configs/synthetic.yaml: the demo's BPR GNN
    bpr["model"]["socialgnn"].update(max_seconds=max_seconds, num_threads=1)
    out["socialgnn (BPR, demo)"] = bpr
    softmax = copy.deepcopy(config)
    softmax["model"]["socialgnn"].update(loss="softmax", num_layers=2, social_weight=0.3,
                                         lr=0.01, users_per_step=256, epochs=200, patience=5,
                                         max_seconds=max_seconds, num_threads=1)
    out["socialgnn (softmax)"] = softmax
    als = copy.deepcopy(config)
    als["model"]["name"] = "als"
    als["model"]["als"].update(num_threads=1)
    out["als"] = als
    return out


def first_users(prepared, launches: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each launched product's interacting users in order of their first event, with the summed
    event weight of each user's events on it."""
    graph, inter = prepared.graph, prepared.dataset.interactions
    items = graph.items.to_index_series(inter["item_id"])
    users = graph.users.to_index_series(inter["user_id"])
    weights = inter["event"].astype(str).map(DEFAULT_EVENT_WEIGHTS).fillna(0.0).to_numpy()
    out = {}
    for item in launches:
        rows = np.flatnonzero(items == item)
        order = rows[np.argsort(inter["ts"].to_numpy()[rows], kind="stable")]
        first = dict.fromkeys(users[order].tolist())
        w = np.bincount(users[rows], weights=weights[rows], minlength=graph.n_users)
        ids = np.fromiter(first, dtype=np.int64)
        out[int(item)] = (ids, w[ids])
    return out


def recall(scores: np.ndarray, used: np.ndarray, later: np.ndarray) -> float:
    scores = scores.astype(np.float64).copy()
    scores[used] = -np.inf
    top = np.argpartition(-scores, K)[:K]
    return len(np.intersect1d(top, later)) / min(K, len(later))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=1200)
    parser.add_argument("--launches", type=int, default=150)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=7, help="the world's seed")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    config = load_config(["configs/synthetic.yaml"], [
        f"dataset.synthetic.n_users={args.users}", f"dataset.synthetic.n_items={args.items}",
        "dataset.synthetic.n_communities=20", f"dataset.synthetic.seed={args.seed}"])
    prepared = prepare(config)
    graph = prepared.graph
    rng = np.random.default_rng(0)
    reach = np.asarray((graph.train + graph.valid + graph.test).astype(bool).sum(axis=0)).ravel()
    launches = rng.choice(np.flatnonzero(reach >= 25), size=args.launches, replace=False)
    keep = np.ones(graph.n_items, dtype=np.float32)
    keep[launches] = 0.0
    train = sp.csr_matrix(graph.train @ sp.diags(keep))
    train.eliminate_zeros()
    hidden = dataclasses.replace(graph, train=train)
    seen = train.copy()
    seen.data[:] = 1.0
    interacted = first_users(prepared, launches)
    rows = []
    fit_seconds = {}
    for name, cfg in models(config, args.max_seconds).items():
        t0 = time.perf_counter()
        model = make_model(cfg["model"]["name"], cfg["model"],
                           validator=validator_for(hidden, cfg))
        model.fit(hidden, show_progress=False)
        fit_seconds[name] = time.perf_counter() - t0
        user_emb, item_emb = model.embeddings()
        bundle = ModelBundle(
            users=graph.users, items=graph.items, user_emb=user_emb, item_emb=item_emb,
            social=graph.social, seen=seen, purchases=graph.purchases,
            popularity=np.asarray(seen.sum(axis=0)).ravel().astype(np.float32),
            item_category=graph.item_category, push_opt_in=graph.push_opt_in,
            meta={"model_name": cfg["model"]["name"], "config": cfg})
        own = rule_for(bundle.meta)
        rules = {
            "least squares (α 1, λ 0.01)": FoldInRule("least_squares"),
            "propagation": FoldInRule("propagation", normalize=own.normalize),
        }
        folds = {label: FoldIn(bundle, rule) for label, rule in rules.items()}
        results: dict[str, list[list[float]]] = {label: [[] for _ in FIRST] for label in folds}
        own_label = next(label for label, rule in rules.items() if rule.kind == own.kind)
        for strength in PRIORS:
            results[f"{own_label} + category as {strength:g} users"] = [[] for _ in FIRST]
        results["category mean (no feedback)"] = [[] for _ in FIRST]
        results["random vector"] = [[] for _ in FIRST]
        for item, (users, weights) in interacted.items():
            members = np.flatnonzero((graph.item_category == graph.item_category[item])
                                     & (keep > 0))
            category = folds[own_label].mean_item(members)
            for col, m in enumerate(FIRST):
                used, later = users[:m], users[m:]
                if len(later) == 0:
                    continue
                for label, fold in folds.items():
                    vector = fold.item_vector(used, weights[:m])
                    results[label][col].append(recall(user_emb @ vector, used, later))
                    if label != own_label or category is None:
                        continue
                    for strength in PRIORS:
                        shrunk = fold.with_prior(vector, m, category, strength)
                        results[f"{label} + category as {strength:g} users"][col].append(
                            recall(user_emb @ shrunk, used, later))
                if category is not None:
                    results["category mean (no feedback)"][col].append(
                        recall(user_emb @ category, used, later))
                results["random vector"][col].append(
                    recall(user_emb @ rng.normal(size=user_emb.shape[1]), used, later))
        for label, cols in results.items():
            mark = " (its rule)" if label.startswith(
                "propagation" if own.kind == "propagation" else "least") else ""
            rows.append(f"| {name} | {label}{mark} | "
                        + " | ".join(f"{np.mean(c):.3f}" for c in cols) + " |")
    command = "python -m bench.foldin_rules " + shlex.join(sys.argv[1:])
    text = "\n".join([
        f"### Fold-in rules (bench/foldin_rules.py), {datetime.now(UTC):%Y-%m-%d}", "",
        f"`{command.strip()}` — synthetic world of {args.users} users, {args.items} items "
        f"(seed {args.seed}); "
        f"{len(launches)} products removed from training, folded in from their first m users "
        f"(by time); recall@{K} of their other users among all users. Fits: "
        + ", ".join(f"{n} {s:.0f} s" for n, s in fit_seconds.items())
        + f"; load average {os.getloadavg()[0]:.1f}.", "",
        f"| model | new product represented by | m = {FIRST[0]} | m = {FIRST[1]} | "
        f"m = {FIRST[2]} |", "|---|---|---|---|---|", *rows, ""])
    publish("", text.rstrip("\n"), append=not args.no_append)


if __name__ == "__main__":
    main()
