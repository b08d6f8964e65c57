"""The event store as training data: feedback events -> canonical tables, validated.

A retrain (training/retrain.py) learns from the base dataset plus what the service logged since.
:func:`store_tables` turns the event store's feedback (and the exposures it refers to) into the
canonical ``interactions``, ``social`` and ``shares`` tables (features/tables.py), refusing what
cannot be trusted or attributed, and counting every refusal by reason — nothing is dropped
silently:

============================  ==================================================================
``duplicate_event_id``        an event id seen before (the store's key keeps one per table, but a
                              store partitioned by time, or two stores read together, may not)
``future_timestamp``          later than the retrain's ``as_of`` (a client clock running ahead)
``before_data_window``        earlier than the data window's start (the parent's first event):
                              a clock set to 1970, or a replay of history the model already has
``unknown_request_id``        names a request id no exposure has (a client bug, or exposures
                              lost): it cannot be attributed to what was served
``missing_item``              an item event without an item id
``deleted_item``              an item the catalogue (the items table) no longer lists, or flags
                              ``deleted``
============================  ==================================================================

``unsubscribe`` events are push opt-outs, not interactions: they are counted as *ignored*, not
used and not refused (the push rules read them from the store directly).

Shares and new friendships. A ``join`` whose request id is a ``/share_partners`` request (the
event store's contract: a friend's join refers to the sharer's request, whose exposure rows name
the sharer) becomes a share record ``(sharer, item, joiner, joined)`` and a social edge
sharer–joiner, besides the joiner's ``join`` interaction. A ``share`` event whose frame carries a
``recipient_id`` column (one row per recipient) becomes a share record and a social edge too.
Every other event kind (view, click, cart, purchase, push_open, share, join) is an interaction of
its own kind.

Served or organic. An event that names a request id was caused, in part, by what the service
served (a push opened, a recommended item bought): ``served_pairs`` lists those (user, item)
pairs, so that a retrain can train on them without scoring models on them (a model is not to be
judged on outcomes the champion's own pushes produced).

Pure pandas, no I/O: the retrain reads the store and hands the frames in, and tests build them
by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from socialrec.features.tables import EVENT_TYPES, ValidationReport, conform

#: Refusal reasons, in the order they are checked (an event is counted under its first).
REASONS: tuple[str, ...] = ("duplicate_event_id", "future_timestamp", "before_data_window",
                            "unknown_request_id", "missing_item", "deleted_item")
#: Feedback kinds that are not interactions, with why.
IGNORED: dict[str, str] = {"unsubscribe": "a push opt-out, not an interaction"}
#: The file name refusals are reported under in the dataset's ValidationReport.
SOURCE = "event_store"
_EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass
class StoreTables:
    """The store's contribution to a training dataset, and what was made of every event."""

    interactions: pd.DataFrame
    social: pd.DataFrame
    shares: pd.DataFrame
    read: int  # feedback rows read
    used: int  # rows that became an interaction
    refused: dict[str, int] = field(default_factory=dict)  # reason -> rows
    ignored: dict[str, int] = field(default_factory=dict)  # event kind -> rows
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few event ids
    #: (user_id, item_id) of interactions attributed to a served list (a request id): what the
    #: serving policy caused, which a retrain trains on but never scores (features/window_split)
    served_pairs: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"user_id": [], "item_id": []}, dtype="string"))

    @property
    def total_refused(self) -> int:
        return sum(self.refused.values())

    def add_to(self, report: ValidationReport) -> None:
        """Record the refusals in a dataset's validation report (under ``event_store``)."""
        for reason, count in self.refused.items():
            first = self.examples.get(reason, [])[:1]  # the report keeps 5 examples a file
            report.add(SOURCE, reason, count, f"{reason}: event {first[0]}" if first else None)


def unix_seconds(ts: pd.Series) -> pd.Series:
    """Aware timestamps -> Unix seconds (Int64, as canonical ``ts`` columns are)."""
    return ((pd.to_datetime(ts, utc=True) - _EPOCH) // pd.Timedelta(seconds=1)).astype("Int64")


def store_tables(feedback: pd.DataFrame, exposures: pd.DataFrame, *, as_of: int,
                 window_start: int | None = None,
                 items: pd.DataFrame | None = None) -> StoreTables:
    """Canonical tables from the store's ``feedback`` and ``exposures`` frames
    (``EventStore.feedback()`` / ``.exposures()``), validated as the module docstring says.

    ``as_of`` and ``window_start`` are Unix seconds; ``items`` is the catalogue (its ``item_id``
    column and, when present, a boolean ``deleted`` column): None checks no item.
    """
    fb = feedback.reset_index(drop=True).copy()
    fb["ts_s"] = unix_seconds(fb["ts"]) if len(fb) else pd.Series(dtype="Int64")
    share_requests = _share_requests(exposures)
    # a join on a share_partners request may omit its item: it is the shared one
    via_share = fb["request_id"].isin(share_requests.index) & (fb["event"] == "join")
    fb.loc[via_share & fb["item_id"].isna(), "item_id"] = fb.loc[
        via_share & fb["item_id"].isna(), "request_id"].map(share_requests["item_id"])

    reason = pd.Series(pd.NA, index=fb.index, dtype="string")

    def refuse(mask: pd.Series | np.ndarray, why: str) -> None:
        reason.loc[np.asarray(mask) & reason.isna().to_numpy()] = why

    refuse(fb["event_id"].duplicated(keep="first"), "duplicate_event_id")
    refuse((fb["ts_s"] > as_of).fillna(False), "future_timestamp")
    if window_start is not None:
        refuse((fb["ts_s"] < window_start).fillna(False), "before_data_window")
    known_requests = set(exposures["request_id"].astype(str)) if len(exposures) else set()
    refuse(fb["request_id"].notna() & ~fb["request_id"].astype(str).isin(known_requests),
           "unknown_request_id")
    is_interaction = ~fb["event"].isin(list(IGNORED))
    refuse(is_interaction & fb["item_id"].isna(), "missing_item")
    if items is not None:
        live = items
        if "deleted" in items.columns:
            live = items[~deleted_flags(items["deleted"])]
        catalogue = set(live["item_id"].astype(str))
        refuse(is_interaction & fb["item_id"].notna() & ~fb["item_id"].astype(str).isin(catalogue),
               "deleted_item")

    refused = {r: int(n) for r, n in reason.value_counts().items()}
    examples = {str(r): fb.loc[reason == r, "event_id"].astype(str).head(3).tolist()
                for r in refused}
    kept = fb[reason.isna()]
    ignored = {str(k): int(n) for k, n in kept.loc[~kept["event"].isin(EVENT_TYPES),
                                                   "event"].value_counts().items()}
    used = kept[kept["event"].isin(EVENT_TYPES)]

    interactions = conform(pd.DataFrame({
        "user_id": used["user_id"], "item_id": used["item_id"], "event": used["event"],
        "ts": used["ts_s"], "value": used["value"].astype("float64"),
    }), "interactions")
    shares, social = _shares_and_ties(used, share_requests)
    served = used.loc[used["request_id"].notna(), ["user_id", "item_id"]].astype("string")
    return StoreTables(interactions, social, shares, read=len(fb), used=len(used),
                       refused={r: refused[r] for r in REASONS if r in refused},
                       ignored=ignored, examples=examples,
                       served_pairs=served.drop_duplicates().reset_index(drop=True))


def deleted_flags(column: pd.Series) -> np.ndarray:
    """A catalogue's ``deleted`` column as booleans: bools as they are, text as true / 1 / yes
    (a file source reads extra columns as text)."""
    if pd.api.types.is_bool_dtype(column):
        return column.fillna(False).to_numpy(dtype=bool)
    return column.astype("string").str.strip().str.lower().isin(["true", "1", "yes"]).to_numpy(
        dtype=bool)


def _share_requests(exposures: pd.DataFrame) -> pd.DataFrame:
    """``/share_partners`` requests: request_id -> the sharer (the requesting user) and item."""
    if exposures.empty:
        return pd.DataFrame({"sharer_id": pd.Series(dtype="string"),
                             "item_id": pd.Series(dtype="string")})
    share = exposures[exposures["endpoint"] == "share_partners"]
    return (share.groupby("request_id")
            .agg(sharer_id=("user_id", "first"), item_id=("item_id", "first")))


def _shares_and_ties(used: pd.DataFrame, share_requests: pd.DataFrame
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Share records and social edges carried by joins on share requests and by share events
    with a ``recipient_id``."""
    parts = []
    joins = used[(used["event"] == "join") & used["request_id"].isin(share_requests.index)]
    if len(joins):
        parts.append(pd.DataFrame({
            "sharer_id": joins["request_id"].map(share_requests["sharer_id"]),
            "item_id": joins["item_id"], "recipient_id": joins["user_id"],
            "ts": joins["ts_s"], "joined": True}))
    if "recipient_id" in used.columns:
        sent = used[(used["event"] == "share") & used["recipient_id"].notna()]
        if len(sent):
            parts.append(pd.DataFrame({
                "sharer_id": sent["user_id"], "item_id": sent["item_id"],
                "recipient_id": sent["recipient_id"], "ts": sent["ts_s"], "joined": False}))
    if not parts:
        return conform(pd.DataFrame(), "shares"), conform(pd.DataFrame(), "social")
    shares = pd.concat(parts, ignore_index=True)
    shares = shares[shares["sharer_id"].astype(str) != shares["recipient_id"].astype(str)]
    social = pd.DataFrame({"src": shares["sharer_id"], "dst": shares["recipient_id"],
                           "weight": 1.0, "ts": shares["ts"]})
    social = social.drop_duplicates(["src", "dst"])
    return conform(shares, "shares"), conform(social, "social")
