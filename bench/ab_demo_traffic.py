"""Push A/B traffic against a running service, with simulated user reactions as /feedback.

    .venv/bin/python bench/ab_demo_traffic.py --url http://127.0.0.1:3100 \\
        --store sqlite:////tmp/fresh/events.db --config configs/synthetic.yaml

Bounded: ``--campaigns`` pushes (one campaign per item, the items most users interacted with in
the training period, k users each, default rules), one feedback batch per campaign, then it
stops. Three phases:

1. **push**: ``POST /push_targets`` per campaign. The server routes each campaign to a variant of
   the ``push_model`` experiment (the experiments file it was started with decides which model)
   and logs the pushed users, and the users the campaign holdout removed (``variant
   "holdout"``), as exposures.
2. **read back**: the held-out users are not in the response (they are only logged), so they
   are read from the event store the server writes (``--store``, read only), once the server's
   exposure writer has caught up.
3. **react**: every targeted user (pushed or held out) reacts by the behaviour model below; the
   events go to ``POST /feedback``, referring to the push's request id when they follow it.

Behaviour model
---------------
Ground truth is the synthetic world's own future: the dataset and split of ``--config`` (the
demo's: ``load_dataset`` + ``make_split``). For campaign item ``i`` a targeted user ``u`` is

* ``buyer``      if ``u`` purchases ``i`` in the held-out test period,
* ``interested`` if ``u`` interacts with ``i`` otherwise in that period (view, click, cart, ...),
* ``none``       otherwise.

No model saw that period, so a model that targets more real buyers earns more conversions; that
is the only way the variants differ. Per (campaign, user), independently (probabilities in
:data:`BEHAVIOUR`):

* organic: ``u`` buys ``i`` anyway with P_organic[tier], pushed or not (the counterfactual);
* pushed users only: opens the push with P_open[tier], clicks it with P_click[tier] once opened;
  a click ends in a purchase with P_buy[tier], or surely when ``u`` would have bought anyway
  (the push takes the credit for an organic sale: attribution overstates incrementality);
* a purchase that followed a click is sent with the push's request id (push_open, click,
  purchase events); any other purchase is organic (no request id), so the analysis attributes
  it to the (campaign, user) row by user and item. Held-out users only ever buy organically.
  Revenue is the item's price.

Users no campaign targeted also buy organically in the real world; their purchases are not sent
because no exposure row can ever own them. Feedback is stamped by the server on arrival (after
every exposure of the run). Prints a per-arm summary with the ground truth (how many targeted
users were real buyers), and with ``--summary`` writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from socialrec.features.events import HOLDOUT, EventStore
from socialrec.features.loader import load_dataset
from socialrec.features.splits import make_split
from socialrec.training.config import load_config

TIERS = ("buyer", "interested", "none")
EXPERIMENT = "push_model"


@dataclass(frozen=True)
class Behaviour:
    """Reaction probabilities per ground-truth tier (buyer, interested, none)."""

    organic: tuple[float, float, float] = (0.30, 0.02, 0.001)
    open: tuple[float, float, float] = (0.50, 0.25, 0.04)
    click: tuple[float, float, float] = (0.60, 0.35, 0.10)
    buy: tuple[float, float, float] = (0.70, 0.15, 0.03)


BEHAVIOUR = Behaviour()


@dataclass
class World:
    """What the simulated users will really do, and what the campaigns push."""

    buyers: set[tuple[str, str]]  # (user, item) purchased in the test period
    interested: set[tuple[str, str]]  # other (user, item) interactions in the test period
    price: dict[str, float]
    items: list[str]  # campaign items, most popular in the training period first
    test_start: int

    def tier(self, user: str, item: str) -> int:
        if (user, item) in self.buyers:
            return 0
        return 1 if (user, item) in self.interested else 2


def load_world(config: Path, n_items: int) -> World:
    cfg = load_config([config])
    dataset = load_dataset(cfg["dataset"], config_dir=config.parent)
    split = make_split(dataset, cfg["split"])
    test_start = int(split.test.ts.min())
    # Every event of the test period, not only split.test's: a pair first seen in training and
    # bought later is a real future purchase too (the split drops such later events).
    future = dataset.interactions[dataset.interactions.ts >= test_start]
    buyers = _pairs(future[future.event == "purchase"])
    interested = _pairs(future) - buyers
    popular = split.train.groupby("item_id").user_id.nunique().sort_values(ascending=False)
    items = dataset.items
    price = (dict(zip(items.item_id.astype(str), items.price.astype(float), strict=True))
             if items is not None and "price" in items else {})
    return World(buyers, interested, price, [str(i) for i in popular.index[:n_items]],
                 test_start)


def _pairs(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df.user_id.astype(str), df.item_id.astype(str), strict=True))


def push(client: httpx.Client, campaigns: list[tuple[str, str]], k: int) -> list[dict]:
    out = []
    for n, (campaign, item) in enumerate(campaigns, 1):
        r = client.post("/push_targets", json={"item_id": item, "campaign_id": campaign, "k": k})
        if r.status_code != 200:
            raise SystemExit(f"/push_targets {campaign} ({item}): {r.status_code} {r.text}")
        out.append(r.json())
        if n % 50 == 0:
            print(f"  pushed {n}/{len(campaigns)} campaigns")
    return out


def read_exposures(store_url: str, since: datetime, request_ids: set[str],
                   timeout: float = 120.0) -> pd.DataFrame:
    """This run's push exposures, once the server's writer has logged every request."""
    deadline = time.monotonic() + timeout
    with EventStore(store_url) as store:
        while True:
            ex = store.exposures(EXPERIMENT, since=since)
            ex = ex[ex.request_id.isin(request_ids)]
            if set(ex.request_id) >= request_ids:
                return ex
            if time.monotonic() > deadline:
                missing = len(request_ids - set(ex.request_id))
                raise SystemExit(f"{store_url}: {missing} of {len(request_ids)} requests have "
                                 f"no exposures after {timeout:.0f} s (is --store the server's?)")
            time.sleep(0.5)


def react(rng: np.random.Generator, world: World, b: Behaviour, response: dict,
          held: list[str]) -> tuple[list[dict], list[dict]]:
    """Feedback events of one campaign, and one outcome record per targeted user."""
    rid, item = response["request_id"], response["item_id"]
    price = world.price.get(item, 1.0)
    events: list[dict] = []
    outcomes: list[dict] = []

    def event(user: str, kind: str, request_id: str | None) -> None:
        events.append({"event_id": f"abdemo:{rid}:{user}:{kind}", "request_id": request_id,
                       "user_id": user, "item_id": item, "event": kind,
                       "value": price if kind == "purchase" else 0.0})

    for user in response["users"]:
        t = world.tier(user, item)
        organic = rng.random() < b.organic[t]
        opened = rng.random() < b.open[t]
        clicked = opened and rng.random() < b.click[t]
        via_push = clicked and (organic or rng.random() < b.buy[t])
        if opened:
            event(user, "push_open", rid)
        if clicked:
            event(user, "click", rid)
        if via_push:
            event(user, "purchase", rid)
        elif organic:
            event(user, "purchase", None)
        outcomes.append({"arm": response["variant"], "tier": TIERS[t], "opened": opened,
                         "clicked": clicked, "bought": via_push or organic,
                         "via_push": via_push})
    for user in held:
        t = world.tier(user, item)
        organic = rng.random() < b.organic[t]
        if organic:
            event(user, "purchase", None)
        outcomes.append({"arm": HOLDOUT, "tier": TIERS[t], "opened": False, "clicked": False,
                         "bought": organic, "via_push": False})
    return events, outcomes


def summarise(outcomes: pd.DataFrame) -> dict[str, dict]:
    out = {}
    for arm, part in outcomes.groupby("arm", sort=True):
        tiers = Counter(part.tier)
        out[str(arm)] = {"users": len(part), **{f"tier_{t}": tiers.get(t, 0) for t in TIERS},
                         "buyer_share": tiers.get("buyer", 0) / len(part),
                         "opened": int(part.opened.sum()), "clicked": int(part.clicked.sum()),
                         "bought": int(part.bought.sum()),
                         "bought_via_push": int(part.via_push.sum()),
                         "conversion": float(part.bought.mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:3100", help="the running service")
    ap.add_argument("--store", required=True,
                    help="the server's event store URL (read back for the held-out users)")
    ap.add_argument("--config", type=Path, default=Path("configs/synthetic.yaml"),
                    help="the demo's config: dataset and split that define the ground truth")
    ap.add_argument("--campaigns", type=int, default=200)
    ap.add_argument("--k", type=int, default=200, help="users per push")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--summary", type=Path, help="write the run's summary here (JSON)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    world = load_world(args.config, args.campaigns)
    print(f"ground truth: {len(world.buyers):,} (user, item) purchases and "
          f"{len(world.interested):,} other pairs in the test period (from "
          f"{datetime.fromtimestamp(world.test_start, UTC):%Y-%m-%d %H:%M} UTC); "
          f"{len(world.items)} campaign items")
    campaigns = [(f"abdemo-{n:03d}-{item}", item) for n, item in enumerate(world.items)]
    started = datetime.now(UTC)
    with httpx.Client(base_url=args.url, timeout=60.0) as client:
        responses = push(client, campaigns, args.k)
        exposures = read_exposures(args.store, started, {r["request_id"] for r in responses})
        held = exposures[exposures.variant == HOLDOUT].groupby("request_id").user_id.agg(list)
        rng = np.random.default_rng(args.seed)
        outcomes: list[dict] = []
        sent = Counter()
        for response in responses:
            events, rows = react(rng, world, BEHAVIOUR, response,
                                 held.get(response["request_id"], []))
            outcomes += rows
            if events:
                r = client.post("/feedback", json={"events": events})
                if r.status_code != 200:
                    raise SystemExit(f"/feedback: {r.status_code} {r.text}")
                sent["accepted"] += r.json()["accepted"]
                sent["duplicates"] += r.json()["duplicates"]
                sent.update(e["event"] + (" (organic)" if e["request_id"] is None else "")
                            for e in events)
    arms = summarise(pd.DataFrame(outcomes))
    summary = {
        "started": started.isoformat(), "url": args.url, "store": args.store,
        "campaigns": len(responses), "k": args.k, "seed": args.seed,
        "variants": dict(Counter(r["variant"] for r in responses)),
        "model_versions": dict(Counter(f"{r['variant']}={r['model_version']}"
                                       for r in responses)),
        "held_out_removed": int(sum(r["removed"].get("holdout", 0) for r in responses)),
        "exposure_rows": len(exposures), "feedback": dict(sent), "arms": arms,
        "behaviour": asdict(BEHAVIOUR), "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"run started {summary['started']} (pass it to `socialrec ab report --since`)")
    print(f"campaigns per variant: {summary['variants']}; models: {summary['model_versions']}")
    print(f"exposure rows: {len(exposures):,}; feedback: {dict(sent)}")
    print(f"{'arm':<11} {'users':>7} {'buyers':>7} {'buyer %':>8} {'opened':>7} {'clicked':>8} "
          f"{'bought':>7} {'via push':>9} {'conv %':>7}")
    for arm, s in arms.items():
        print(f"{arm:<11} {s['users']:>7,} {s['tier_buyer']:>7,} {100 * s['buyer_share']:>7.2f}% "
              f"{s['opened']:>7,} {s['clicked']:>8,} {s['bought']:>7,} {s['bought_via_push']:>9,} "
              f"{100 * s['conversion']:>6.2f}%")
    print(f"done in {summary['seconds']} s")
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.summary}")


if __name__ == "__main__":
    main()
