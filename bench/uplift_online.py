"""Online: propensity against uplift targeting, campaigns split by an experiment of the running
service (BentoML over HTTP, a real event store), users reacting from a simulated world's hidden
truth through /feedback, analysed by ``socialrec ab report``.

    .venv/bin/python -m bench.uplift_online --workdir /tmp/uplift-online

Bounded (``--history`` + ``--campaigns`` campaigns, one request and one feedback batch each),
then it stops the server. Steps, each a real component:

1. **the champion**: the world's bundle (training/uplift_sim.py ``world_bundle``: its
   embeddings give the served propensity score) is registered in an MLflow registry of
   ``--workdir`` and takes the alias ``champion``; it has no uplift model.
2. **history**: ``--history`` past campaigns of other items, logged in the event store as the
   service logs a campaign that reaches everyone (20 % held out at random, 20 % of the others
   given a random push or coupon, logged as explored); outcomes drawn from the hidden truth.
3. **learning**: ``socialrec uplift train --alias champion --set-alias challenger`` (a
   subprocess): rows from the store, the learner chosen on held-out campaigns, a new version
   with the uplift model registered as ``challenger``.
4. **online**: ``bentoml serve`` of the service with an experiment ``push_uplift`` (unit:
   campaign) sending half the campaigns to ``champion`` and half to ``challenger``, holdout
   ``--holdout`` of each campaign's users. Every campaign asks ``/push_targets`` for
   ``objective: uplift`` with the same budget of pushes (``--budget-share`` of the users, plain
   pushes only): the champion has no uplift model and answers by propensity (its response says
   so), the challenger allocates the budget by estimated incremental conversions.
5. **reactions**: every pushed user buys the campaign's item with their hidden probability
   under a push, every held-out user (read back from the store) with their probability without;
   unsubscribes likewise; purchases and unsubscribes go to ``POST /feedback``.
6. **analysis**: ``socialrec ab report -e push_uplift --json``; its per-variant incrementality
   (pushed users against the same campaigns' held-out users) divided by the pushes sent gives
   incremental conversions per unit of budget. The section "Online" of ``--out`` is rewritten
   with the figures, the true expected ones beside them, and the commands.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd

from socialrec.evaluation.uplift_worlds import WORLDS, campaign_log, make_world
from socialrec.features.events import HOLDOUT, EventStore
from socialrec.training import tracking
from socialrec.training.config import format_names, load_config
from socialrec.training.uplift_bench import ONLINE_HEADING
from socialrec.training.uplift_sim import log_campaigns, world_bundle
from tests.support.server import ServerProcess

EXPERIMENT = "push_uplift"


def experiments_file(path: Path, holdout: float) -> Path:
    path.write_text(f"""experiments:
  {EXPERIMENT}:
    endpoints: [push_targets]
    unit: campaign
    salt: uplift-online-1
    variants:
      propensity: {{weight: 0.5, alias: champion}}
      uplift: {{weight: 0.5, alias: challenger}}
    holdout: {{weight: {holdout}}}
""")
    return path


def socialrec(*args: str) -> str:
    command = [str(Path(sys.executable).with_name("socialrec")), *args]
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    print(done.stdout[-3000:], done.stderr[-3000:], flush=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} exited {done.returncode}")
    return done.stdout


def held_out(store_url: str, request_ids: set[str], timeout: float = 300.0) -> pd.DataFrame:
    """The held-out users of this run's requests, once the server's writer logged them all."""
    deadline = time.monotonic() + timeout
    with EventStore(store_url) as store:
        while True:
            ex = store.exposures(EXPERIMENT)
            ex = ex[ex.request_id.isin(request_ids)]
            if set(ex.request_id) >= request_ids:
                return ex[ex.variant == HOLDOUT]
            if time.monotonic() > deadline:
                raise SystemExit("the server did not log every push in time")
            time.sleep(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--world", default="3_sleeping_dogs", choices=sorted(WORLDS))
    ap.add_argument("--history", type=int, default=8, help="past campaigns to learn from")
    ap.add_argument("--campaigns", type=int, default=24, help="online campaigns")
    ap.add_argument("--budget-share", type=float, default=0.10)
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/uplift.md"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    # 1. the champion
    world = make_world(WORLDS[args.world])
    bundle_dir = world_bundle(world).save(work / "bundle")
    overrides = [f"tracking.uri=sqlite:///{work}/mlruns.db",
                 f"tracking.artifact_root={work}/mlruns"]
    cfg = load_config([], overrides)
    name = format_names(cfg)["registered_model"]
    client, _ = tracking.setup(cfg)
    with mlflow.start_run(run_name="world champion"):
        champion = tracking.log_bundle(bundle_dir, name)
    client.set_registered_model_alias(name, "champion", champion)
    print(f"{name} version {champion} = champion ({args.world})", flush=True)

    # 2. history, 3. learning
    items = rng.permutation(len(world.item_emb))[: args.history + args.campaigns]
    store_url = f"sqlite:///{work}/events.db"
    history = campaign_log(world, list(items[: args.history]), holdout=0.2, exploration=0.2,
                           seed=args.seed)
    with EventStore(store_url) as store:
        log_campaigns(store, world, history, datetime.now(UTC) - timedelta(days=60),
                      every=timedelta(days=3), experiment="history",
                      model_version=f"{name}/{champion}")
    train_command = ["uplift", "train", "--alias", "champion", "--set-alias", "challenger",
                     "--store", store_url, *(a for o in overrides for a in ("--set", o))]
    learned = socialrec(*train_command)

    # 4. online, 5. reactions
    experiments = experiments_file(work / "experiments.yaml", args.holdout)
    env = {"SOCIALREC_MODEL": name, "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlruns.db",
           "SOCIALREC_EXPERIMENTS": str(experiments), "SOCIALREC_EVENT_STORE": store_url,
           "SOCIALREC_CACHE_DIR": str(work / "cache"), "SOCIALREC_ALIAS": "champion"}
    budget = round(args.budget_share * world.n_users)
    started = datetime.now(UTC)
    server = ServerProcess(env, work / "server.log", timeout=600.0)
    truth: list[dict] = []
    try:
        with httpx.Client(base_url=server.url, timeout=600.0) as http:
            responses = []
            for c, item in enumerate(items[args.history:]):
                r = http.post("/push_targets", json={
                    "item_id": f"i{item}", "campaign_id": f"online-{c:03d}-i{item}",
                    "objective": "uplift", "budget": {"pushes": budget},
                    "treatments": ["push"]})
                if r.status_code != 200:
                    raise SystemExit(f"/push_targets: {r.status_code} {r.text}")
                responses.append((int(item), r.json()))
                print(f"campaign {c}: {responses[-1][1]['variant']} "
                      f"({responses[-1][1]['objective']}), {len(r.json()['users'])} pushes",
                      flush=True)
            held = held_out(store_url, {r["request_id"] for _, r in responses})
            by_request = held.groupby("request_id").user_id.agg(list)
            for item, resp in responses:
                pushed = np.array([int(u[1:]) for u in resp["users"]], dtype=np.int64)
                kept = np.array([int(u[1:]) for u in by_request.get(resp["request_id"], [])],
                                dtype=np.int64)
                events = []
                for users, arm, who in ((pushed, 1, "pushed"), (kept, 0, "held")):
                    p, q = world.response(users, item)
                    bought = rng.random(len(users)) < p[:, arm]
                    left = rng.random(len(users)) < q[:, arm]
                    for u in users[bought]:
                        events.append({"event_id": f"{resp['request_id']}:{u}:buy",
                                       "user_id": f"u{u}", "item_id": f"i{item}",
                                       "event": "purchase",
                                       "value": float(world.price[item])})
                    for u in users[left]:
                        events.append({"event_id": f"{resp['request_id']}:{u}:unsub",
                                       "user_id": f"u{u}", "event": "unsubscribe"})
                    truth.append({"variant": resp["variant"], "who": who, "users": len(users),
                                  "bought": int(bought.sum()), "unsubscribed": int(left.sum()),
                                  "true_incremental": float((p[:, 1] - p[:, 0]).sum())
                                  if who == "pushed" else 0.0,
                                  "true_unsubscribes_caused": float((q[:, 1] - q[:, 0]).sum())
                                  if who == "pushed" else 0.0})
                for start in range(0, len(events), 5000):
                    r = http.post("/feedback", json={"events": events[start:start + 5000]})
                    if r.status_code != 200:
                        raise SystemExit(f"/feedback: {r.status_code} {r.text}")
    finally:
        server.stop()

    # 6. analysis
    report = args.out.with_name("uplift_online_report.html")
    report_command = ["ab", "report", "-e", EXPERIMENT, "--store", store_url,
                      "--experiments", str(experiments), "--since", started.isoformat(),
                      "--out", str(report), "--json"]
    socialrec(*report_command)
    result = json.loads(report.with_suffix(".json").read_text())
    frame = pd.DataFrame(truth)
    section = online_section(args, result, frame, learned, budget, name, train_command,
                             report_command, time.perf_counter() - t0)
    text = args.out.read_text() if args.out.exists() else ""
    at = text.find(ONLINE_HEADING)
    args.out.write_text((text[:at] if at >= 0 else text).rstrip() + "\n\n" + section)
    (args.out.with_name("uplift_online_truth.csv")).write_text(frame.to_csv(index=False))
    print(section)


def online_section(args: argparse.Namespace, result: dict, truth: pd.DataFrame, learned: str,
                   budget: int, name: str, train_command: list[str],
                   report_command: list[str], seconds: float) -> str:
    chosen = next((line for line in learned.splitlines() if "learner" in line), "").strip()
    pushed = truth[truth.who == "pushed"].groupby("variant")
    held = truth[truth.who == "held"].groupby("variant")
    by_scope = {i["scope"]: i for i in result.get("incrementality", [])}
    lines = [ONLINE_HEADING, "",
             f"World `{args.world}` (chosen before the run: the world where a push can hurt). "
             f"{args.history} past campaigns in the event store, then {args.campaigns} "
             "campaigns through `bentoml serve` of the service, split by the experiment "
             f"`{EXPERIMENT}` (unit: campaign, 50 / 50, holdout {args.holdout:.0%} of each "
             "campaign's users): `propensity` serves the champion (no uplift model: it answers "
             "by propensity and says so), `uplift` the challenger that `socialrec uplift "
             f"train` registered ({chosen}). Each campaign asks for `objective: uplift`, "
             f"a budget of {budget:,} plain pushes ({args.budget_share:.0%} of the users). "
             "Users react from the world's hidden truth through `POST /feedback`.", "",
             "Commands (made by `.venv/bin/python -m bench.uplift_online --workdir DIR "
             f"--world {args.world}` in {seconds / 60:.0f} min):", "",
             f"    socialrec {' '.join(train_command)}",
             f"    socialrec {' '.join(report_command)}", "",
             "Measured by `socialrec ab report` (pushed users against the held-out users of the "
             "same campaigns; 95 % interval) and, beside it, the truth the world knows:", "",
             "| arm | campaigns | pushes sent | held-out users | incremental conversions "
             "(report) | per 1,000 pushes | true expected incremental | per 1,000 pushes | "
             "unsubscribes: pushed / held-out users | true unsubscribes caused |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for variant in sorted(pushed.groups):
        p, h = pushed.get_group(variant), held.get_group(variant) if variant in held.groups \
            else truth.iloc[:0]
        n = int(p.users.sum())
        inc = by_scope.get(variant, {})
        measured = inc.get("incremental_conversions", float("nan"))
        lo, hi = inc.get("incremental_conversions_ci", [float("nan")] * 2)
        true_inc = float(p.true_incremental.sum())
        lines.append(
            f"| {variant} | {len(p)} | {n:,} | {int(h.users.sum()):,} | {measured:.1f} "
            f"[{lo:.1f}, {hi:.1f}] | {1000 * measured / max(n, 1):.2f} | {true_inc:.1f} | "
            f"{1000 * true_inc / max(n, 1):.2f} | {int(p.unsubscribed.sum())} / "
            f"{int(h.unsubscribed.sum())} | {float(p.true_unsubscribes_caused.sum()):.1f} |")
    flagged = result.get("flagged")
    lines += ["", f"Report: [uplift_online_report.html](uplift_online_report.html) "
              f"(+ .json); sample-ratio check {'FLAGGED' if flagged else 'passed'}. The "
              "uplift arm sends fewer pushes than its budget when the allocation picks "
              "held-out users (they count against the budget but are only logged) or finds "
              "fewer users with a positive expected effect: per 1,000 pushes is the fair "
              "comparison. Registered model: "
              f"`{name}`; per-campaign truth in uplift_online_truth.csv.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
