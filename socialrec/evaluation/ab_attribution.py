"""Events -> one row per (unit, user): which exposed user did what after their exposure.

Exposures say which *unit* (the A/B randomisation unit: a user, or a campaign for pushes) got
which variant, and which *user* saw the list. :func:`unit_rows` reduces the event store to one
row per (unit, user) with what that user did afterwards. Feedback reaches a row

1. through its request id and user id (the pushed user opened the push, the requesting user
   clicked a recommendation);
2. through its request id alone when that request has one (unit, user) row (a friend joining a
   share counts for the sharer who asked for share partners);
3. without a request id (an organic event) when it comes after the row's first exposure: from
   the same user when the units are users, from the same user *and item* when the units are
   campaigns. This is the only way a held-out user, who never got a request id, can convert.

Held-out users appear in the exposures with ``variant == "holdout"`` (features/events.HOLDOUT).
The analysis of these rows is in :mod:`socialrec.evaluation.ab`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from socialrec.features.events import FEEDBACK_EVENTS, HOLDOUT

#: Pre-period read for CUPED's covariate, before the experiment's first exposure.
PRE_PERIOD = timedelta(days=28)

#: Columns of :func:`unit_rows` (and of the simulator's in-memory rows).
ROW_COLUMNS = ["unit_id", "user_id", "arm", "unit_variant", "exposures", "first_ts",
               *FEEDBACK_EVENTS, "revenue", "first_purchase_ts", "pre_activity"]


def unit_rows(exposures: pd.DataFrame, feedback: pd.DataFrame, *, start: datetime | None = None,
              end: datetime | None = None, pre_period: timedelta = PRE_PERIOD) -> pd.DataFrame:
    """One row per (unit, user) exposed in the experiment, with the feedback attributed to it
    (see the module docstring) in ``[start, end)`` and the user's number of feedback events in
    ``[start - pre_period, start)`` (``pre_activity``, CUPED's covariate).

    ``exposures`` are one experiment's (EventStore.exposures(experiment)); ``start`` defaults
    to the first exposure. ``arm`` is the unit's variant, or ``"holdout"`` for a held-out user;
    ``unit_variant`` is the unit's variant in both cases.
    """
    if exposures.empty:
        raise ValueError("no exposures: nothing to analyse (wrong experiment name or window?)")
    ex = exposures
    start = _utc(start if start is not None else ex.ts.min())
    end_ts = _utc(end) if end is not None else None

    unit_variant = ex[ex.variant != HOLDOUT].groupby("unit_id").variant.first()
    rows = ex.groupby(["unit_id", "user_id"], sort=True).agg(
        arm=("variant", "first"), exposures=("request_id", "size"), first_ts=("ts", "min"),
        item_id=("item_id", "first"),
    ).reset_index()
    rows["unit_variant"] = rows.unit_id.map(unit_variant)
    unit_is_user = bool((ex.unit_id == ex.user_id).all())

    in_window = (feedback.ts >= start) & (feedback.ts < end_ts if end_ts is not None else True)
    fb = feedback[in_window]
    attributed = _attribute(ex, fb, rows, unit_is_user)

    key = ["unit_id", "user_id"]
    counts = (attributed.groupby([*key, "event"]).size().unstack("event", fill_value=0)
              .reindex(columns=list(FEEDBACK_EVENTS), fill_value=0))
    purchases = attributed[attributed.event == "purchase"].groupby(key)
    outcome = counts.join(purchases.value.sum().rename("revenue")).join(
        purchases.ts.min().rename("first_purchase_ts"))
    rows = rows.merge(outcome, left_on=key, right_index=True, how="left")
    for event in FEEDBACK_EVENTS:
        rows[event] = rows[event].fillna(0).astype("int64")
    rows["revenue"] = rows["revenue"].fillna(0.0).astype("float64")

    pre = feedback[(feedback.ts >= start - pre_period) & (feedback.ts < start)]
    rows["pre_activity"] = rows.user_id.map(pre.groupby("user_id").size()).fillna(0).astype(
        "int64")
    return rows[ROW_COLUMNS]


def _utc(ts: datetime | pd.Timestamp) -> pd.Timestamp:
    """A UTC timestamp; a naive one is taken to be UTC already (as the event store does)."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _attribute(ex: pd.DataFrame, fb: pd.DataFrame, rows: pd.DataFrame,
               unit_is_user: bool) -> pd.DataFrame:
    """Feedback rows with the (unit_id, user_id) row each is attributed to."""
    cols = ["unit_id", "user_id", "event", "value", "ts"]
    linked = fb[fb.request_id.notna()]
    # 1. the exposed user acting on their own request
    pairs = ex[["request_id", "user_id", "unit_id"]].drop_duplicates(["request_id", "user_id"])
    by_pair = linked.merge(pairs, on=["request_id", "user_id"])
    # 2. someone else acting on a request that answered one (unit, user): a friend's join
    rest = linked[~linked.event_id.isin(by_pair.event_id)]
    per_request = ex.groupby("request_id").agg(unit_id=("unit_id", "first"),
                                               row_user=("user_id", "first"),
                                               n_users=("user_id", "nunique"),
                                               n_units=("unit_id", "nunique"))
    single = per_request[(per_request.n_users == 1) & (per_request.n_units == 1)]
    by_request = rest.merge(single[["unit_id", "row_user"]], left_on="request_id",
                            right_index=True)
    by_request = by_request.drop(columns="user_id").rename(columns={"row_user": "user_id"})
    # 3. organic events after the user's first exposure
    organic = fb[fb.request_id.isna()]
    on = ["user_id"] if unit_is_user else ["user_id", "item_id"]
    by_user = organic.merge(rows[["unit_id", "user_id", "item_id", "first_ts"]], on=on)
    by_user = by_user[by_user.ts >= by_user.first_ts]
    return pd.concat([by_pair[cols], by_request[cols], by_user[cols]], ignore_index=True)

