"""The proof of the loop: four arms over a drifting world, through the real service.

    .venv/bin/python -m bench.loop                 # the demo-sized world, 8 days (~2 h on 2 cores)
    .venv/bin/python -m bench.loop --tiny          # a few minutes: the plumbing only, not reported

(run from the repository root: it uses tests/support/server.py to start ``bentoml serve``).

The world is bench/loop_world.py's (its parameters, and the settings below, were fixed before
anything was measured). A day-0 champion is trained once on the base dataset
(configs/synthetic.yaml's model settings); every arm starts from a copy of that registry, with
its own event store, experiments file and ``bentoml serve`` process, and lives the same days:

(a) **frozen**: the day-0 champion, nothing learned from traffic;
(b) **fold-in only**: the day-0 champion, new products and users folded in from feedback within
    seconds (serving/foldin_state.py);
(c) **daily cold retrain**: every night ``socialrec retrain --cold --alias champion`` (from
    scratch on base + event store; the gate against the champion), no fold-in;
(d) **the loop**: fold-in, and every night ``socialrec promote --experiment push_model`` (the
    A/B verdict on the day's challenger, 50 % of push campaigns) then ``socialrec retrain`` (warm
    start; a passing version becomes the next challenger). Two of its retrains are broken on
    purpose (shuffled interactions, LoopParams.broken_*): the gate, then the A/B guard, must stop
    them. On its normal days a cold retrain on the same data is also trained and not registered,
    to compare warm and cold at equal data.

Arms without fold-in get their feedback written to their event store directly instead of through
``/feedback`` (the replica never sees it; ``SOCIALREC_FOLDIN_SECONDS=0`` and ``_DAYS=0``), which
is what a service without fold-in would make of it; the retrains read the same store either way.

A simulated day is compressed into minutes of wall-clock time (feedback is stamped on arrival),
so a retrain's validation window is the wall-clock span of the day just served
(``retrain.valid_days`` set to it).

Per day and arm: push conversion (pushed users who bought the pushed product through the push),
recall@20 of the day's purchases (``/recommend`` at the start of the day for the day's buyers),
the share of the day's launched products reached by a targeted push on their first day (users
ranked from the product's own signal: a known or folded-in product; a push that stood it in by
its category is a fallback), the share of ``/push_targets`` and ``/recommend`` requests answered
by a fallback (popular items, friends' favourites, a new product by its category, a 404), and
the training time. Writes results/loop.md and one PNG per figure, and logs them to MLflow
(experiment ``socialrec-loop-bench`` of the project's tracking store).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from bench.loop_world import TINY, DayPlan, LoopParams, World
from socialrec.features.events import EventStore, Feedback
from socialrec.training import tracking
from socialrec.training.config import load_config
from socialrec.training.pipeline import run_training
from socialrec.training.promotion import promote_by_experiment
from socialrec.training.retrain import RetrainError, retrain
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
NAME = "socialrec-loop"
#: Settings of the system under test, fixed with the world's parameters before measuring.
SETTINGS: dict[str, Any] = {
    "challenger_share": 0.5,  # arm (d): push campaigns the challenger answers
    "holdout": 0.05,
    "promotion": {"experiment": "push_model", "primary_metric": "conversion",
                  "require": "no_harm", "min_detectable_effect": 0.3, "power": 0.8,
                  "alpha": 0.05},
    "retrain": {},  # configs/defaults.yaml's retrain section as shipped
    "feedback_batch": 2000,
    "poll_seconds": 2,
}
FALLBACK_RECOMMEND = ("popular", "friends_favourites")
FIGURES = {  # key: (title, unit)
    "push_conversion": ("push conversion", "share of pushed users who bought"),
    "recall": ("recall@20 of the day's purchases", "recall"),
    # added after the first full run, as a diagnosis: /recommend leaves out items the user met
    # before (exclude_seen), and a retrained bundle knows the views and push opens that precede
    # a purchase, the frozen one does not
    "recall_seen_allowed": ("recall@20 of the day's purchases, items met before allowed",
                            "recall"),
    "launch_reach": ("launched products reached by a targeted push on day one", "share"),
    "fallback_share": ("requests answered by a fallback", "share"),
    "train_seconds": ("training time (fit)", "seconds"),
}


@dataclass
class Arm:
    key: str
    label: str
    foldin: bool
    retrain: str | None  # None, "cold" or "warm"
    dir: Path = Path()
    config: dict[str, Any] = field(default_factory=dict)
    server: ServerProcess | None = None
    http: httpx.Client | None = None
    days: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.dir}/events.db"

    @property
    def experiments_path(self) -> Path:
        return self.dir / "experiments.yaml"


ARMS = (Arm("a", "frozen day-0 champion", foldin=False, retrain=None),
        Arm("b", "fold-in only", foldin=True, retrain=None),
        Arm("c", "daily cold retrain", foldin=False, retrain="cold"),
        Arm("d", "the loop", foldin=True, retrain="warm"))


def base_config(work: Path, files: dict, tiny: bool) -> dict[str, Any]:
    overrides = [
        "dataset.name=loop", "dataset.source=files",
        f"dataset.files={json.dumps(files)}",
        f"tracking.uri=sqlite:///{work}/registry/mlruns.db",
        f"tracking.artifact_root={work}/artifacts",
        "tracking.experiment=socialrec-loop", f"tracking.registered_model={NAME}",
        f"serving.model={NAME}",
        *(f"promotion.{key}={json.dumps(value)}" for key, value in SETTINGS["promotion"].items()),
        # the social GNN of configs/synthetic.yaml for every task: the loop retrains and folds in
        # one model (the demo's `model.name: auto` picks a model per task once, at training)
        "model.name=socialgnn",
        "tracking.aliases.push_targets=champion", "serving.aliases.push_targets=champion",
    ]
    if tiny:
        overrides += ["model.socialgnn.epochs=4", "model.socialgnn.batch_size=4096",
                      "index.exact_threshold=1000000"]
    return load_config([ROOT / "configs" / "synthetic.yaml"], overrides)


def experiments_file(path: Path, challenger_share: float) -> None:
    doc = {"experiments": {"push_model": {
        "endpoints": ["push_targets"], "unit": "campaign", "salt": "loop-push-1",
        "variants": {"control": {"weight": 1 - challenger_share, "alias": "champion"},
                     "challenger": {"weight": challenger_share, "alias": "challenger"}},
        "holdout": {"weight": SETTINGS["holdout"]}}}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def start_arm(arm: Arm, work: Path, base: dict[str, Any]) -> None:
    arm.dir = work / f"arm_{arm.key}"
    arm.dir.mkdir(parents=True)
    shutil.copy(work / "registry" / "mlruns.db", arm.dir / "mlruns.db")
    arm.config = copy.deepcopy(base)
    arm.config["tracking"]["uri"] = f"sqlite:///{arm.dir}/mlruns.db"
    arm.config["serving"]["event_store"] = arm.store_url
    arm.config["serving"]["experiments"] = str(arm.experiments_path)
    share = SETTINGS["challenger_share"] if arm.key == "d" else 0.0
    experiments_file(arm.experiments_path, share)
    if share:
        client, _ = tracking.setup(arm.config)
        client.set_registered_model_alias(NAME, "challenger", "1")  # an A/A until a retrain
    env = {"MLFLOW_TRACKING_URI": arm.config["tracking"]["uri"], "SOCIALREC_MODEL": NAME,
           "SOCIALREC_ALIAS": "champion", "SOCIALREC_EVENT_STORE": arm.store_url,
           "SOCIALREC_EXPERIMENTS": str(arm.experiments_path),
           "SOCIALREC_POLL_SECONDS": str(SETTINGS["poll_seconds"]),
           "SOCIALREC_CACHE_DIR": str(arm.dir / "cache"), "SOCIALREC_THREADS": "4"}
    if not arm.foldin:
        env |= {"SOCIALREC_FOLDIN_SECONDS": "0", "SOCIALREC_FOLDIN_DAYS": "0"}
    arm.server = ServerProcess(env, arm.dir / "server.log", timeout=600)
    arm.http = httpx.Client(base_url=arm.server.url, timeout=120)


def stop_arm(arm: Arm) -> None:
    if arm.http is not None:
        arm.http.close()
    if arm.server is not None:
        arm.server.stop()


# -- one day of one arm ------------------------------------------------------------------------


class Traffic:
    """Sends one arm's feedback: through /feedback (fold-in arms) or into its store directly."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        self.sent: list[dict[str, Any]] = []
        self.answers: Counter[str] = Counter()

    def send(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        batch = SETTINGS["feedback_batch"]
        for start in range(0, len(events), batch):
            part = events[start:start + batch]
            if self.arm.foldin:
                assert self.arm.http is not None
                r = self.arm.http.post("/feedback", json={"events": part})
                if r.status_code != 200:
                    raise SystemExit(f"arm {self.arm.key} /feedback: {r.status_code} {r.text}")
                self.answers.update(r.json())
            else:
                rows = [Feedback(e["event_id"], e.get("request_id"),
                                 datetime.fromisoformat(e["ts"]) if e.get("ts")
                                 else datetime.now(UTC), e["user_id"], e.get("item_id"),
                                 e["event"], e.get("value", 0.0)) for e in part]
                with EventStore(self.arm.store_url) as store:
                    new = store.log_feedback(rows)
                self.answers.update({"accepted": new, "duplicates": len(rows) - new})
        self.sent += events


def organic(frame: pd.DataFrame, day: int, prices: dict[str, float]) -> list[dict[str, Any]]:
    """Organic feedback (no request id): event ids from the plan's row numbers."""
    return [{"event_id": f"o{day:02d}-{k}", "user_id": u, "item_id": i, "event": e,
             "value": prices.get(i, 0.0) if e == "purchase" else 0.0}
            for k, u, i, e in zip(frame.index, frame.user_id, frame.item_id, frame.event,
                                  strict=True)]


def bad_events(world: World, plan: DayPlan, sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The day's bad client events (LoopParams.bad_*), the same in every arm."""
    p, d = world.p, plan.day
    users = sorted(plan.purchases)[:50] or world.user_ids[:50]
    live = [i for i in plan.campaigns if not i.startswith("new")][:50]
    out: list[dict[str, Any]] = []
    for k in range(p.bad_unknown_request):
        out.append({"event_id": f"bad-req-{d}-{k}", "request_id": f"ghost-{d}-{k}",
                    "user_id": users[k % len(users)], "item_id": live[k % len(live)],
                    "event": "click"})
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    for k in range(p.bad_future):
        out.append({"event_id": f"bad-future-{d}-{k}", "user_id": users[k % len(users)],
                    "item_id": live[k % len(live)], "event": "view", "ts": future})
    for k in range(p.bad_old):
        out.append({"event_id": f"bad-old-{d}-{k}", "user_id": users[k % len(users)],
                    "item_id": live[k % len(live)], "event": "view",
                    "ts": "2001-06-01T00:00:00+00:00"})
    for k, item in enumerate((plan.stale_items * p.bad_deleted)[:p.bad_deleted]):
        out.append({"event_id": f"bad-deleted-{d}-{k}", "user_id": users[k % len(users)],
                    "item_id": item, "event": "view"})
    out += [dict(e) for e in sent[:p.bad_duplicate]]  # a client retrying: the same event ids
    return out


def share_and_join(arm: Arm, world: World, joins: pd.DataFrame, day: int,
                   category: dict[str, str]) -> list[dict[str, Any]]:
    """Each newcomer's sharer asks /share_partners; the newcomer's join answers that request."""
    assert arm.http is not None
    events = []
    for k, (sharer, item, newcomer) in enumerate(zip(joins.sharer_id, joins.item_id,
                                                     joins.user_id, strict=True)):
        r = arm.http.post("/share_partners", json={"user_id": sharer, "item_id": item, "k": 10,
                                                   "category": category.get(item)})
        rid = r.json()["request_id"] if r.status_code == 200 and r.json()["partners"] else None
        events.append({"event_id": f"join-{day}-{k}", "request_id": rid, "user_id": newcomer,
                       "item_id": item, "event": "join"})
    return events


def push(arm: Arm, day: int, item: str, category: str, k: int) -> tuple[int, dict[str, Any]]:
    """One campaign for ``item`` (the shop names its category, for a product the model does not
    know)."""
    assert arm.http is not None
    r = arm.http.post("/push_targets", json={
        "item_id": item, "campaign_id": f"d{day:02d}-{item}", "k": k, "item_category": category})
    return r.status_code, (r.json() if r.status_code == 200 else {"error": r.text[:200]})


def run_day(arm: Arm, world: World, plan: DayPlan) -> dict[str, Any]:
    assert arm.http is not None
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    traffic = Traffic(arm)
    category = dict(zip(world.item_ids, world.item_category, strict=True))
    prices = dict(zip(world.item_ids, world.price.tolist(), strict=True))
    k_rec = world.p.recommend_k

    # 1. recommendations at the start of the day, for the day's buyers
    recalls, recalls_seen, fallback, requests = [], [], 0, 0
    for user in plan.buyers_sample:
        r = arm.http.post("/recommend", json={"user_id": user, "k": k_rec})
        requests += 1
        if r.status_code != 200:
            fallback += 1
            recalls.append(0.0)
            recalls_seen.append(0.0)
            continue
        body = r.json()
        fallback += any(s in body["strategy"] for s in FALLBACK_RECOMMEND)
        bought = plan.purchases[user]
        recalls.append(len(bought & set(body["items"])) / len(bought))
        seen = arm.http.post("/recommend", json={"user_id": user, "k": k_rec,
                                                 "exclude_seen": False})
        items = seen.json()["items"] if seen.status_code == 200 else []
        recalls_seen.append(len(bought & set(items)) / len(bought))

    # 2. the morning: organic events before noon (the probes' held back), joins, bad events
    events = plan.events
    morning = events[events.t < 0.5]
    first_events = morning[morning.item_id.isin(plan.launched)]
    probes = [i for i in plan.launched if i in set(first_events.item_id)][:world.p.latency_probes]
    held = morning.item_id.isin(probes)
    joins_am = plan.joins[plan.joins.t < 0.5]
    traffic.send(organic(morning[~held & (morning.event != "join")], plan.day, prices))
    join_events = share_and_join(arm, world, joins_am, plan.day, category)
    traffic.send(join_events)
    traffic.send(bad_events(world, plan, traffic.sent))

    # 3. noon: the campaigns; the probes' first feedback only now, then pushed until folded in
    latencies: list[float] = []
    outcomes: list[dict[str, Any]] = []
    responses: dict[str, tuple[int, dict[str, Any]]] = {}
    for item in probes:
        start = time.perf_counter()
        traffic.send(organic(morning[morning.item_id == item], plan.day, prices))
        while True:
            status, body = push(arm, plan.day, item, category[item], world.p.push_k)
            # "foldin", or "foldin+category": its folded-in vector shrunk towards its category
            how = (body.get("new_items") or {}).get(item) if status == 200 else None
            folded = str(how).startswith("foldin")
            if folded or not arm.foldin or time.perf_counter() - start > 60:
                break
            time.sleep(0.25)
        if arm.foldin:
            latencies.append(time.perf_counter() - start if folded else float("inf"))
        responses[item] = (status, body)
    for item in plan.campaigns:
        if item not in responses:
            responses[item] = push(arm, plan.day, item, category[item], world.p.push_k)
    reactions: list[dict[str, Any]] = []
    reached = 0
    for item, (status, body) in responses.items():
        requests += 1
        new = (body.get("new_items") or {}).get(item) if status == 200 else None
        is_fallback = status != 200 or new in ("category", "seeds")
        fallback += is_fallback
        launched = item in plan.launched
        if launched and status == 200 and body["users"] and not is_fallback:
            reached += 1
        if status != 200:
            continue
        for user, opened, clicked, bought in world.push_reactions(plan.day, item, body["users"]):
            rid = body["request_id"]
            for kind, happened in (("push_open", opened), ("click", clicked),
                                   ("purchase", bought)):
                if happened:
                    reactions.append({"event_id": f"p-{rid}-{user}-{kind}", "request_id": rid,
                                      "user_id": user, "item_id": item, "event": kind,
                                      "value": prices[item] if kind == "purchase" else 0.0})
            outcomes.append({"item": item, "launched": launched, "variant": body["variant"],
                             "version": body["model_version"], "bought": bought})
    traffic.send(reactions)

    # 4. the afternoon
    afternoon = events[events.t >= 0.5]
    traffic.send(organic(afternoon[afternoon.event != "join"], plan.day, prices))
    traffic.send(share_and_join(arm, world, plan.joins[plan.joins.t >= 0.5], plan.day,
                                category))

    out = pd.DataFrame(outcomes)
    by_variant = ({str(v): float(g.bought.mean()) for v, g in out.groupby("variant")}
                  if len(out) else {})
    return {
        "day": plan.day, "started": started.isoformat(),
        "push_conversion": float(out.bought.mean()) if len(out) else 0.0,
        "push_conversion_launched": (float(out[out.launched].bought.mean())
                                     if len(out) and out.launched.any() else 0.0),
        "push_conversion_by_variant": by_variant,
        "pushed_users": len(out),
        "recall": float(np.mean(recalls)) if recalls else 0.0,
        "recall_seen_allowed": float(np.mean(recalls_seen)) if recalls_seen else 0.0,
        "launch_reach": reached / max(len(plan.launched), 1),
        "fallback_share": fallback / max(requests, 1),
        "latency_s": latencies,
        "feedback": dict(traffic.answers), "events_sent": len(traffic.sent),
        "serve_seconds": time.perf_counter() - t0, "train_seconds": 0.0,
    }


# -- the nights --------------------------------------------------------------------------------


def shuffled(train: pd.DataFrame) -> pd.DataFrame:
    """A deliberately broken candidate: every interaction's item shuffled."""
    rng = np.random.default_rng(0)
    return train.assign(item_id=rng.permutation(train.item_id.to_numpy()))


def night(arm: Arm, world: World, day: dict[str, Any]) -> None:
    """After the day: (c) a cold retrain straight to champion; (d) the A/B verdict on the
    challenger, then a warm retrain to the next challenger (plus a cold one on the same data,
    measured only)."""
    if arm.retrain is None:
        return
    started = datetime.fromisoformat(day["started"])
    now = datetime.now(UTC)
    cfg = copy.deepcopy(arm.config)
    cfg["retrain"]["valid_days"] = (now - started).total_seconds() / 86_400
    p = world.p
    if arm.retrain == "cold":
        result = attempt(lambda: retrain(cfg, as_of=now, cold=True, alias="champion",
                                         show_progress=False))
        day["retrain"] = summary(result)
        day["train_seconds"] = result.seconds.get("fit", 0.0) if result else 0.0
    else:
        decision = promote_by_experiment(cfg, "push_model", arm.experiments_path)
        day["promotion"] = {"verdict": decision.verdict, "reason": decision.reason,
                            "challenger": decision.challenger_version,
                            "champion": decision.champion_version, "moved": decision.moved,
                            "numbers": decision.numbers}
        broken = day["day"] in (p.broken_gate_day, p.broken_ab_day)
        if day["day"] == p.broken_ab_day:
            cfg["retrain"]["gate_tolerance"] = 0.999  # forced past the gate: A/B must stop it
        result = attempt(lambda: retrain(cfg, as_of=now, show_progress=False,
                                         train_hook=shuffled if broken else None))
        day["retrain"] = summary(result) | {"broken": broken}
        day["train_seconds"] = result.seconds.get("fit", 0.0) if result else 0.0
        if not broken:
            cold = attempt(lambda: retrain(cfg, as_of=now, cold=True, register=False,
                                           show_progress=False))
            day["cold_same_data"] = summary(cold)
    wait_for_aliases(arm)


def attempt(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except RetrainError as err:
        print(f"  retrain could not run: {err}")
        return None


def summary(result: Any) -> dict[str, Any]:
    if result is None:
        return {"status": "error"}
    return {"status": result.status, "version": result.version, "note": result.note,
            "fit_seconds": result.seconds.get("fit", 0.0), "aliases": result.aliases,
            "gate": [{"metric": g.metric, "champion": g.champion, "candidate": g.candidate,
                      "upper": g.upper, "passed": g.passed} for g in result.gate],
            "refused": result.store.refused if result.store else {},
            "ignored": result.store.ignored if result.store else {},
            "used": result.store.used if result.store else 0,
            "warm_start": result.warm_start,
            "new_users": result.lineage.get("lineage.new_users"),
            "new_items": result.lineage.get("lineage.new_items")}


def gate_cell(retrain_summary: dict[str, Any]) -> str:
    """A night's gate on recommend and push ndcg@20: candidate vs champion (change at best)."""
    cells = [f"{g['metric'].split('.')[1]} {g['candidate']:.4f} vs {g['champion']:.4f} "
             f"({g['upper']:+.0%})" for g in retrain_summary.get("gate", [])
             if g["metric"].endswith("ndcg_at_20")]
    return ", ".join(cells) or "—"


def wait_for_aliases(arm: Arm, timeout: float = 300) -> None:
    """Until the arm's service serves what the registry's aliases name."""
    client, _ = tracking.setup(arm.config)
    wanted = {a: f"{NAME}/{v.version}" for a in ("champion", "challenger")
              if (v := tracking.alias_holder(client, NAME, a)) is not None}
    assert arm.http is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        served = arm.http.get("/status").json().get("models", {})
        if all(served.get(a, w) == w for a, w in wanted.items()):
            return
        time.sleep(1)
    raise SystemExit(f"arm {arm.key}: the service still serves {served}, not {wanted}")


# -- results -----------------------------------------------------------------------------------


def table(arms: tuple[Arm, ...], key: str, fmt: str) -> list[str]:
    days = [d["day"] for d in arms[0].days]
    lines = ["| arm | " + " | ".join(f"day {d}" for d in days) + " |",
             "|---|" + "---:|" * len(days)]
    for arm in arms:
        lines.append(f"| ({arm.key}) {arm.label} | "
                     + " | ".join(format(d[key], fmt) for d in arm.days) + " |")
    return lines


def plots(arms: tuple[Arm, ...], out: Path, prefix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, (title, unit) in FIGURES.items():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for arm in arms:
            ax.plot([d["day"] for d in arm.days], [d[key] for d in arm.days], marker="o",
                    label=f"({arm.key}) {arm.label}")
        ax.set(title=title, xlabel="simulated day", ylabel=unit)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{prefix}_{key}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def targets(arms: dict[str, Arm], day7: int) -> list[str]:
    a, c, d = arms["a"].days, arms["c"].days, arms["d"].days
    at = {k: (d[day7 - 1][k], a[day7 - 1][k]) for k in
          ("push_conversion", "recall", "launch_reach", "fallback_share")}
    ahead = {k: (v[0] < v[1]) if k == "fallback_share" else (v[0] > v[1]) for k, v in at.items()}
    recall_c = float(np.mean([x["recall"] for x in c[1:]]))
    recall_d = float(np.mean([x["recall"] for x in d[1:]]))
    normal = [x for x in d if not (x.get("retrain") or {}).get("broken")]
    time_c = float(np.sum([x["train_seconds"] for x in c]))
    time_d = float(np.sum([x["train_seconds"] for x in normal]))
    gate_stop = [x for x in d if (x.get("retrain") or {}).get("broken")
                 and x["retrain"]["status"] == "refused"]
    ab_stop = [x for x in d if (x.get("promotion") or {}).get("verdict") == "rejected"]
    champions = {x["day"]: (x.get("promotion") or {}).get("champion") for x in d}
    lines = ["| target | measured | met |", "|---|---|---|"]
    for k, (dv, av) in at.items():
        better = "lower" if k == "fallback_share" else "higher"
        lines.append(f"| (d) ahead of (a) on {k} by day {day7} ({better} is better) | "
                     f"{dv:.4f} vs {av:.4f} | {'yes' if ahead[k] else 'no'} |")
    gap = (recall_d - recall_c) / recall_c if recall_c else float("nan")
    lines.append(f"| (d) within 2 % of (c) on recall (mean of days 2..) | {recall_d:.4f} vs "
                 f"{recall_c:.4f} ({gap:+.1%}) | {'yes' if gap >= -0.02 else 'no'} |")
    ratio = time_d / time_c if time_c else float("nan")
    lines.append(f"| (d)'s training time <= 25 % of (c)'s (all nights, fit seconds) | "
                 f"{time_d:.0f} s vs {time_c:.0f} s ({ratio:.0%}) | "
                 f"{'yes' if ratio <= 0.25 else 'no'} |")
    lines.append(f"| the broken challengers are stopped (gate / A/B guard) and never champion | "
                 f"gate: {len(gate_stop)}, A/B guard: {len(ab_stop)}; champions by day: "
                 f"{champions} | see below |")
    return lines


def write_results(arms: tuple[Arm, ...], params: LoopParams, command: str, out_md: Path,
                  prefix: str, seconds: float) -> list[Path]:
    by_key = {a.key: a for a in arms}
    day7 = min(7, params.days)
    pngs = plots(arms, out_md.parent, prefix)
    latencies = [x for a in arms for d in a.days for x in d["latency_s"]]
    finite = [x for x in latencies if np.isfinite(x)]
    lines = [
        "# The learning loop over simulated days (issue 15)", "",
        f"Command: `{command}` (commit {commit()}, {seconds / 60:.0f} min on "
        f"{os.cpu_count()} cores).", "",
        "World and behaviour: bench/loop_world.py (`LoopParams`, fixed before measuring); the "
        "arms and settings: bench/loop.py. Demo-sized world (20k users, 5k items at the start), "
        f"{params.days} simulated days.", "",
        "## Targets", "", *targets(by_key, day7), "",
        f"Fold-in latency (first feedback of a launched product -> its first push ranked by the "
        f"folded-in vector, arms b and d, {len(latencies)} probes): median "
        f"{np.median(finite) if finite else float('nan'):.2f} s, max "
        f"{max(finite) if finite else float('nan'):.2f} s, "
        f"{sum(not np.isfinite(x) for x in latencies)} over 60 s.", "",
    ]
    for key, (title, unit) in FIGURES.items():
        fmt = ".1f" if key == "train_seconds" else ".4f"
        lines += [f"## {title} ({unit})", "", *table(arms, key, fmt), "",
                  f"![{title}]({prefix}_{key}.png)", ""]
    lines += ["## The loop's nights (arm d)", "",
              "| day | A/B verdict on the challenger | retrain | fit s | cold on the same data: "
              "fit s | gate: candidate vs champion, ndcg@20 (change at best) |",
              "|---|---|---|---|---|---|"]
    for d in by_key["d"].days:
        promo = d.get("promotion", {})
        rt = d.get("retrain", {})
        cold = d.get("cold_same_data", {})
        lines.append(
            f"| {d['day']} | {promo.get('verdict', '—')}: {promo.get('reason', '')[:120]} | "
            f"{rt.get('status', '—')}{' (broken on purpose)' if rt.get('broken') else ''} "
            f"v{rt.get('version') or '—'} | {rt.get('fit_seconds', 0):.1f} | "
            f"{cold.get('fit_seconds', 0):.1f} | warm: {gate_cell(rt)}; cold: {gate_cell(cold)} |")
    lines += ["", "## Arm (c)'s nights", "", "| day | retrain | fit s | refused events |",
              "|---|---|---|---|"]
    for d in by_key["c"].days:
        rt = d.get("retrain", {})
        lines.append(f"| {d['day']} | {rt.get('status')} v{rt.get('version') or '—'} "
                     f"{rt.get('note', '')[:240]} | {rt.get('fit_seconds', 0):.1f} | "
                     f"{rt.get('refused', {})} |")
    lines += ["", "## Notes", "",
              "- A simulated day is a few minutes of wall-clock time; a retrain's validation "
              "window is the day just served.",
              "- Arms (a) and (c) have no fold-in: their feedback is written to their event store "
              "directly (the replica never sees it).",
              *[f"- ({a.key}) {n}" for a in arms for n in a.notes], ""]
    out_md.write_text("\n".join(lines))
    return pngs


def commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def log_to_mlflow(arms: tuple[Arm, ...], params: LoopParams, files: list[Path]) -> None:
    import mlflow

    cfg = load_config([], ["dataset.name=loop"])
    uri = tracking.tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("socialrec-loop-bench")
    with mlflow.start_run(run_name=f"loop {params.days} days"):
        mlflow.log_params({k: str(v) for k, v in params.as_dict().items()})
        for arm in arms:
            for d in arm.days:
                mlflow.log_metrics({f"{arm.key}.{k}": float(d[k]) for k in FIGURES},
                                   step=d["day"])
        for path in files:
            mlflow.log_artifact(str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a small world for a quick look")
    ap.add_argument("--workdir", type=Path, help="keep the run's files here (default: a "
                                                 "temporary directory, removed at the end)")
    ap.add_argument("--out", type=Path, help="results markdown (default results/loop.md; "
                                             "--tiny: the work directory)")
    args = ap.parse_args()
    params = TINY if args.tiny else LoopParams()
    command = "python -m bench.loop " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t_start = time.perf_counter()
    tmp = None if args.workdir else tempfile.mkdtemp(prefix="socialrec-loop-")
    work = (args.workdir or Path(str(tmp))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out_md = args.out or (work / "loop.md" if args.tiny else RESULTS / "loop.md")
    print(f"work directory {work}")
    world = World(params)
    files = world.write_base(work / "base")
    base = base_config(work, files, args.tiny)
    t = time.perf_counter()
    result = run_training(base, show_progress=False)
    print(f"day-0 champion: version {result.model_version} in {time.perf_counter() - t:.0f} s; "
          f"test {result.metrics['recommend']}")
    arms = tuple(copy.deepcopy(a) for a in ARMS)
    try:
        for arm in arms:
            start_arm(arm, work, base)
            print(f"arm ({arm.key}) {arm.label}: serving at {arm.server.url if arm.server else ''}")
        for _ in range(params.days):
            plan = world.next_day()
            world.write_catalogue(work / "base")
            print(f"day {plan.day}: {len(plan.events):,} organic events, "
                  f"{len(plan.launched)} launched, {len(plan.joins)} joins, "
                  f"{len(plan.campaigns)} campaigns")
            for arm in arms:
                day = run_day(arm, world, plan)
                t = time.perf_counter()
                night(arm, world, day)
                day["night_seconds"] = time.perf_counter() - t
                arm.days.append(day)
                print(f"  ({arm.key}) conversion {day['push_conversion']:.4f} recall "
                      f"{day['recall']:.4f} reach {day['launch_reach']:.2f} fallback "
                      f"{day['fallback_share']:.3f} train {day['train_seconds']:.0f} s "
                      f"(day {day['serve_seconds']:.0f} s, night {day['night_seconds']:.0f} s)"
                      + (f" promotion {day['promotion']['verdict']}" if "promotion" in day
                         else "")
                      + (f" retrain {day['retrain']['status']}" if "retrain" in day else ""))
            (work / "days.json").write_text(json.dumps(
                {a.key: a.days for a in arms}, indent=1, default=str))
    finally:
        for arm in arms:
            stop_arm(arm)
    seconds = time.perf_counter() - t_start
    prefix = "loop"
    pngs = write_results(arms, params, command, out_md, prefix, seconds)
    raw = out_md.with_suffix(".json")
    raw.write_text(json.dumps({"params": params.as_dict(), "settings": SETTINGS,
                               "arms": {a.key: a.days for a in arms}}, indent=1, default=str))
    log_to_mlflow(arms, params, [out_md, raw, *pngs])
    print(out_md.read_text())
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
