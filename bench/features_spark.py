"""The Spark feature job (features/spark_job.py) against the pandas path on synthetic event logs
written in chunks (features/synthetic.py ``write_world``): wall time and peak memory of each,
each in its own process.

- pandas: the ``files`` loader reads the Parquet parts, features/splits.py cuts the temporal
  split, features/graph.py encodes it and features/tie_strength.py weighs the ties (what
  ``socialrec train`` does before fitting);
- Spark: ``socialrec data build-tables`` (local[2]): the same tables, split and tie strengths,
  written as Parquet. Peak memory is the summed PSS of the job's processes (the JVM included).

    .venv/bin/python -m bench.features_spark --users 1000000
    .venv/bin/python -m bench.features_spark --users 10000000 --choices 4 --friends 4 --no-pandas
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.train_distributed import ROOT, TreePss, load
from socialrec.features.synthetic import write_world

PANDAS_PATH = """
import json, sys, time
from pathlib import Path
import yaml
from socialrec.features.graph import build_graph
from socialrec.features.loader import load_dataset
from socialrec.features.splits import make_split
from socialrec.features.tie_strength import graph_tie_strength
cfg = yaml.safe_load(Path(sys.argv[1]).read_text())
t = time.perf_counter()
dataset = load_dataset(cfg["dataset"], Path("."), Path("."))
split = make_split(dataset, cfg["split"])
graph = build_graph(dataset, split)
ties = graph_tie_strength(graph)
print(json.dumps({"interactions": len(dataset.interactions), "train": len(split.train),
                  "ties": int(ties.nnz), "seconds": time.perf_counter() - t}))
"""


def logs_config(world: Path) -> dict:
    return {
        "dataset": {"name": "world", "source": "files", "files": {
            "interactions": {"path": str(world / "interactions"), "format": "parquet"},
            "social": {"path": str(world / "social"), "format": "parquet"},
            "shares": {"path": str(world / "shares"), "format": "parquet"},
            "items": {"path": str(world / "items.parquet")},
            "users": {"path": str(world / "users"), "format": "parquet"}}},
        "split": {"method": "temporal", "ratios": [0.8, 0.1, 0.1]},
    }


def measured(command: list[str], env: dict) -> dict:
    before = load()
    t = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    pss = TreePss(proc.pid)
    out, _ = proc.communicate()
    pss.stop()
    if proc.returncode:
        raise SystemExit(f"{command[:3]} failed ({proc.returncode})")
    return {"wall_s": time.perf_counter() - t, "peak_pss_mb": pss.peak_mb,
            "load_before": before, "load_after": load(), "output": out.strip()[-400:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--choices", type=float, default=16.0)
    parser.add_argument("--friends", type=float, default=10.0)
    parser.add_argument("--memory", default="8g", help="Spark driver memory")
    parser.add_argument("--no-pandas", action="store_true", help="the Spark job alone")
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "bench_features")
    args = parser.parse_args()
    world = args.work / f"world-{args.users}-c{args.choices:g}-f{args.friends:g}"
    if not (world / "items.parquet").exists():
        t = time.perf_counter()
        rows = write_world(world, args.users, max(args.users // 4, 100),
                           max(4, min(200, args.users // 500)), seed=7,
                           choices_per_user=args.choices, mean_friends=args.friends)
        print(json.dumps({"world": rows, "seconds": time.perf_counter() - t}), flush=True)
    config = args.work / f"logs-{args.users}.yaml"
    config.write_text(yaml.safe_dump(logs_config(world)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = {}
    if not args.no_pandas:
        results["pandas"] = measured([sys.executable, "-c", PANDAS_PATH, str(config)], env)
    out = args.work / f"tables-{args.users}"
    socialrec = str(Path(sys.executable).with_name("socialrec"))
    results["spark local[2]"] = measured(
        [socialrec, "data", "build-tables", "--config", str(config), "--out", str(out),
         "--master", "local[2]", "--memory", args.memory], env)
    print(json.dumps(results, indent=2))
    print("| path | wall s | peak PSS MB | load before | load after |\n|---|---:|---:|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['wall_s']:.0f} | {row['peak_pss_mb']:.0f} | {row['load_before']} "
              f"| {row['load_after']} |")


if __name__ == "__main__":
    main()
