"""A simulated shop (evaluation/uplift_worlds.py) as the service would hold it: a servable bundle
of its users and items, and its campaigns' exposures and feedback in an event store.

Used by the end-to-end test of ``socialrec uplift train`` (a registered world, its campaigns in
a store) and by the online run (bench/uplift_online.py), where the service itself logs the
exposures and only the users' reactions come from the world's hidden truth.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from socialrec.evaluation.uplift_worlds import CONTROL, World
from socialrec.features.events import HOLDOUT, EventStore, Exposure, Feedback
from socialrec.features.idmap import IdMap
from socialrec.models.bundle import ModelBundle
from socialrec.models.index import IndexConfig, build_indexes


def world_bundle(world: World) -> ModelBundle:
    """The bundle a model trained on ``world`` would ship: its embeddings (the served score),
    training interactions, purchases and friendships; every user opted in; one category."""
    n_items = len(world.item_emb)
    bundle = ModelBundle(
        users=IdMap(world.user_ids()), items=IdMap(world.item_ids()),
        user_emb=np.ascontiguousarray(world.user_emb, dtype=np.float32),
        item_emb=np.ascontiguousarray(world.item_emb, dtype=np.float32),
        social=world.social, seen=world.seen, purchases=world.purchases,
        popularity=np.asarray(world.seen.sum(axis=0)).ravel().astype(np.float32),
        item_category=np.zeros(n_items, dtype=np.int64),
        push_opt_in=np.ones(world.n_users, dtype=bool),
        meta={"model": f"uplift_world:{world.spec.name}", "categories": ["all"]})
    build_indexes(bundle, IndexConfig(exact_threshold=max(world.n_users, n_items)))
    return bundle


def log_campaigns(store: EventStore, world: World, rows: pd.DataFrame, start: datetime,
                  every: timedelta = timedelta(days=1), experiment: str = "push_model",
                  variant: str = "control", model_version: str = "1") -> None:
    """Write the campaigns of ``rows`` (``campaign_log``'s columns) as the service logs them:
    campaign ``c`` pushed at ``start + c * every`` (held-out users as ``variant="holdout"``
    rows, the others with their treatment), conversions as purchases of the campaign's item an
    hour later, unsubscribes two hours later."""
    users, items = world.user_ids(), world.item_ids()
    exposures, feedback = [], []
    for c in sorted(rows.campaign.unique()):
        part = rows[rows.campaign == c]
        ts = start + int(c) * every
        request = f"sim-{c}"
        columns = zip(part.user.to_numpy(), part.item.to_numpy(), part.treatment.to_numpy(),
                      part.explored.to_numpy(), part.conversion.to_numpy(),
                      part.revenue.to_numpy(), part.unsubscribe.to_numpy(), strict=True)
        for rank, (u, i, treatment, explored, bought, revenue, unsubscribed) in enumerate(
                columns, 1):
            held = treatment == CONTROL
            user, item = str(users[int(u)]), str(items[int(i)])
            exposures.append(Exposure(
                request, ts, "push_targets", experiment, HOLDOUT if held else variant,
                model_version, f"campaign-{c}", user, item, rank, 0.0,
                treatment=None if held else str(treatment), explored=bool(explored)))
            if bought:
                feedback.append(Feedback(f"{request}:{user}:purchase", None,
                                         ts + timedelta(hours=1), user, item, "purchase",
                                         float(revenue)))
            if unsubscribed:
                feedback.append(Feedback(f"{request}:{user}:unsubscribe", None,
                                         ts + timedelta(hours=2), user, None, "unsubscribe"))
    store.log_exposures(exposures)
    store.log_feedback(feedback)
