"""Share-partner benchmark: the learned ranker against its baselines, on every share dataset.

For each config: load → split → graph once (the split is fixed); per seed, fit the embedding model
(``training.pipeline.fit_model``; ``--model`` overrides the config's), learn the share ranker
from the training shares (L2 chosen on the validation shares), then rank the sharer's friends
for every test share with the ranker and each baseline (``evaluation.offline.evaluate_share``).
Writes one markdown file, in the manner of RecBole-GNN's results files: the command, the
protocol, mean ± sample std over seeds, and whether the learned ranker wins.

    .venv/bin/python bench/share_partners.py --config configs/synthetic.yaml \\
        --config configs/bdsc.yaml --seeds 0 1 2 --out results/share_partners.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from socialrec.evaluation.offline import evaluate_share
from socialrec.features.paths import project_dir
from socialrec.features.shares import share_candidates, share_groups
from socialrec.models.share_baselines import (
    affinity_scorer,
    friend_popularity_scorer,
    random_scorer,
    tie_strength_scorer,
)
from socialrec.models.share_features import FEATURES, ShareContext
from socialrec.training.benchmark import git_commit, mean_std, seeded
from socialrec.training.config import load_config
from socialrec.training.pipeline import describe, fit_model, prepare
from socialrec.training.share_fitting import train_share_ranker

KS = (5, 10)
METRICS = [f"{m}@{k}" for k in KS for m in ("recall", "ndcg", "mrr")]
METHODS = ("learned ranker", "learned, fit on train shares", "tie strength",
           "friend popularity", "embedding affinity", "random friend")
#: Rows that are the learned ranker itself (the verdict compares it with the others).
LEARNED = ("learned ranker", "learned, fit on train shares")


@dataclass
class DatasetRuns:
    name: str
    config_file: str
    embedding_model: str
    summary: dict
    protocol: str
    metrics: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # method -> per seed
    weights: list[dict[str, float]] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    coverage_2hop: float = float("nan")
    candidates_2hop: float = float("nan")
    trivial: float = float("nan")  # share of test queries with at most one candidate


def _zero_scorer(sharers, items, cands):
    return [np.zeros(len(c)) for c in cands]


def run_dataset(config_file: str, seeds: list[int], model: str | None,
                overrides: list[str]) -> DatasetRuns:
    config = load_config([config_file], overrides)
    if model:
        config["model"]["name"] = model
    hops = int(config["evaluation"].get("share_hops", 1))
    t = time.perf_counter()
    prepared = prepare(config)
    graph, cut = prepared.graph, prepared.split.cut_ts
    runs = DatasetRuns(config["dataset"]["name"], config_file, config["model"]["name"],
                       describe(prepared.dataset), prepared.split.protocol)
    runs.seconds["prepare"] = [time.perf_counter() - t]
    if len(graph.shares_test) == 0:
        raise SystemExit(f"{config_file}: the split has no test share records")
    two = evaluate_share(_zero_scorer, graph, "test", ks=[1], hops=2)
    runs.coverage_2hop, runs.candidates_2hop = two["coverage"], two["mean_candidates"]
    test_groups = share_groups(graph.shares_test)
    sizes = np.array([len(c) for c in share_candidates(graph.social, test_groups["sharer"], hops)])
    runs.trivial = float((sizes <= 1).mean()) if len(sizes) else float("nan")
    for seed in seeds:
        cfg = seeded(config, config["model"]["name"], seed)
        t = time.perf_counter()
        user_emb, item_emb = fit_model(prepared, cfg, show_progress=False).embeddings()
        runs.seconds.setdefault("embeddings", []).append(time.perf_counter() - t)
        t = time.perf_counter()
        ranker = train_share_ranker(graph, user_emb, item_emb, hops=hops, cut=cut, seed=seed)
        runs.seconds.setdefault("ranker", []).append(time.perf_counter() - t)
        on_train = train_share_ranker(graph, user_emb, item_emb, fit_on="train", hops=hops,
                                      cut=cut, seed=seed)
        runs.weights.append(dict(zip(ranker.features, ranker.weights, strict=True)))
        runs.l2.append(ranker.trained_on["l2"])
        ctx = ShareContext.from_graph(graph, user_emb, item_emb, cut=cut)
        scorers = {
            "learned ranker": ranker.scorer(ctx),
            "learned, fit on train shares": on_train.scorer(ctx),
            "tie strength": tie_strength_scorer(ctx),
            "friend popularity": friend_popularity_scorer(ctx),
            "embedding affinity": affinity_scorer(ctx),
            "random friend": random_scorer(seed),
        }
        for method, fn in scorers.items():
            result = evaluate_share(fn, graph, "test", ks=KS, hops=hops)
            runs.metrics.setdefault(method, []).append(result)
        print(f"{runs.name} seed {seed}: " + ", ".join(
            f"{m} {runs.metrics[m][-1]['mrr@10']:.4f}" for m in METHODS), file=sys.stderr)
    return runs


def _mrr(runs: DatasetRuns, method: str) -> np.ndarray:
    return np.array([m["mrr@10"] for m in runs.metrics[method]])


def best_baseline(runs: DatasetRuns) -> str:
    return max((m for m in METHODS if m not in LEARNED), key=lambda m: _mrr(runs, m).mean())


def verdict(runs: DatasetRuns) -> str:
    """Does the learned ranker beat every baseline on MRR@10, and by more than seed noise?"""
    learned, best = _mrr(runs, "learned ranker"), best_baseline(runs)
    other = _mrr(runs, best)
    gap = learned.mean() - other.mean()
    noise = float(np.std(learned - other, ddof=1)) if len(learned) > 1 else float("nan")
    if gap > 0:
        head = "beats every baseline on MRR@10"
    else:
        head = "does **not** beat every baseline on MRR@10"
    tail = (f"{learned.mean():.4f} vs {other.mean():.4f} for {best}, the best baseline: "
            f"difference {gap:+.4f}, seed std of the difference {noise:.4f}")
    if np.isfinite(noise) and abs(gap) <= 2 * noise:
        tail += " (within seed noise)"
    return f"the learned ranker {head} ({tail})"


def markdown(all_runs: list[DatasetRuns], command: str, seeds: list[int]) -> str:
    lines = [
        "# Share partners: learned ranker vs baselines",
        "",
        f"Made by `{command}` on {dt.date.today().isoformat()} at commit `{git_commit()}` "
        f"({platform.machine()}, Python {platform.python_version()}, 2 CPU threads).",
        "",
        "## Protocol",
        "",
        "- task: for each (sharer, item) of the **test** share records, rank the sharer's "
        "friends in the training-period social graph (1 hop); the truth is every recipient of "
        "that (sharer, item). `evaluation.offline.evaluate_share`.",
        "- a recipient who is not among the sharer's friends cannot be ranked and counts as a "
        "miss; **coverage** is the share of test recipients inside the candidate sets at all "
        "(the ceiling of Recall); coverage with 2 hops is given for reference.",
        "- embeddings: fitted once per seed on the training interactions "
        "(`training.pipeline.fit_model`, the config's `model.name` unless `--model` overrides "
        "it: see each dataset's 'Embeddings'); the affinity features and baseline use them.",
        "- learned ranker (`models/share_ranker.py`): a linear score over "
        f"{len(FEATURES)} features ({', '.join(f'`{f}`' for f in FEATURES)}) computed from the "
        "training period only (embeddings, social graph, training shares and interactions), "
        "fitted as a conditional logit (softmax over each share's candidates, the logistic "
        "model of which friends receive it) with an L2 penalty shrinking it towards ranking by "
        "tie strength alone. Examples: the **validation** share records (positives: the "
        "recipients of a (sharer, item); negatives: up to 50 of the sharer's other friends), "
        "so that they are described exactly as test records will be; L2 chosen from "
        "{0.1, 1, 10, 100, 1000} by MRR@10 over 5-fold cross-validation by (sharer, item) "
        "group, then refitted on all of them. Test records are read once, at the end.",
        "- learned, fit on train shares (ablation): the same model fitted on the training share "
        "records, share-history features cross-fitted over 5 folds of (sharer, item) groups so "
        "a share never counts as its own history; L2 chosen by MRR@10 on the validation shares. "
        "What cross-fitting cannot undo: a training share's own consequences (the recipient's "
        "join / purchase of the item) are training interactions, so the embeddings and "
        "`co_interactions` of its recipients remember it — features that look stronger in "
        "training than they will be at test time.",
        "- baselines: tie strength alone (`features/tie_strength.py`, one documented weight per "
        "social edge from training-period events), friend popularity (shares received + joined "
        "in training), embedding affinity alone (friend · item), random friend (seeded). Ties "
        "between equal scores are broken by user id.",
        f"- seeds: {', '.join(map(str, seeds))} (embedding initialisation, the ranker's fold "
        "and negative sampling, the random baseline); the split is fixed. Mean ± sample std.",
    ]
    lines += ["", "## Summary (MRR@10 on test, 1 hop)", "",
              "| dataset | learned ranker | best baseline | coverage | queries with ≤ 1 friend "
              "| verdict |", "|---|---:|---|---:|---:|---|"]
    for runs in all_runs:
        best = best_baseline(runs)
        learned, other = _mrr(runs, "learned ranker"), _mrr(runs, best)
        cov = runs.metrics["learned ranker"][0]["coverage"]
        lines.append(
            f"| {runs.name} | {mean_std(list(learned))} | {best}: {mean_std(list(other))} | "
            f"{cov:.4f} | {runs.trivial:.1%} | "
            f"{'wins' if learned.mean() > other.mean() else 'loses'} |")
    for runs in all_runs:
        s = runs.summary
        lines += [
            "",
            f"## {runs.name}",
            "",
            f"`{runs.config_file}`: {s['users']:,} users, {s['items']:,} items, "
            f"{s['interactions']:,} interactions, {s['social_edges']:,} social edges, "
            f"{s['share_records']:,} share records. Split: {runs.protocol}. Embeddings: "
            f"`{runs.embedding_model}`.",
            "",
        ]
        lines += [f"- note: {n}" for n in s["notes"]]
        first = runs.metrics["learned ranker"][0]
        lines += [
            f"- test: {first['n_queries']:,} (sharer, item) queries, "
            f"{first['mean_candidates']:.1f} friends per sharer on average, {runs.trivial:.1%} "
            "of queries with at most one (nothing to rank); 2 hops: "
            f"{runs.candidates_2hop:.1f} candidates, coverage {runs.coverage_2hop:.4f}",
            "",
            "| method | " + " | ".join(METRICS) + " | coverage |",
            "|---|" + "---:|" * (len(METRICS) + 1),
        ]
        for method in METHODS:
            cells = [mean_std([m[name] for m in runs.metrics[method]])
                     for name in [*METRICS, "coverage"]]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", f"Verdict: {verdict(runs)}.", "",
                  "Learned ranker's weights (standardised features, mean over seeds; L2 chosen: "
                  f"{', '.join(f'{v:g}' for v in runs.l2)}):", "",
                  "| " + " | ".join(FEATURES) + " |", "|" + "---:|" * len(FEATURES),
                  "| " + " | ".join(f"{np.mean([w[f] for w in runs.weights]):+.3f}"
                                    for f in FEATURES) + " |", ""]
        cost = ", ".join(f"{k} {np.mean(v):.1f} s" for k, v in runs.seconds.items())
        lines.append(f"Cost per seed: {cost}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True,
                        help="a dataset config with share records (repeat for several)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default=None,
                        help="embedding model (default: the config's model.name)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override key.path=value, applied to every config")
    parser.add_argument("--out", type=Path, default=project_dir() / "results/share_partners.md")
    args = parser.parse_args(argv)
    command = "python bench/share_partners.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with threadpool_limits(2):
        all_runs = [run_dataset(c, args.seeds, args.model, args.overrides) for c in args.config]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(all_runs, command, args.seeds))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
