"""The event store as training data: every refused event counted by reason, joins on share
requests become share records and friendships."""

from __future__ import annotations

import pandas as pd

from socialrec.features.store_tables import REASONS, store_tables, unix_seconds
from socialrec.features.tables import ValidationReport

T0 = pd.Timestamp("2026-01-10 12:00", tz="UTC")


def ts(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def exposures() -> pd.DataFrame:
    rows = [("push-1", "push_targets", "u1", "i1"), ("push-1", "push_targets", "u2", "i1"),
            ("share-1", "share_partners", "u1", "i2"), ("share-1", "share_partners", "u1", "i2")]
    return pd.DataFrame({"request_id": [r[0] for r in rows], "ts": ts(0),
                         "endpoint": [r[1] for r in rows], "user_id": [r[2] for r in rows],
                         "item_id": [r[3] for r in rows]})


def feedback(rows: list[tuple]) -> pd.DataFrame:
    cols = ["event_id", "request_id", "ts", "user_id", "item_id", "event", "value"]
    return pd.DataFrame(rows, columns=cols)


def test_every_bad_event_is_counted_under_its_reason():
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "deleted": [False, False, True]})
    rows = [
        ("e1", "push-1", ts(1), "u1", "i1", "push_open", 0.0),      # used
        ("e2", "push-1", ts(2), "u1", "i1", "purchase", 9.0),       # used
        ("e2", "push-1", ts(2), "u1", "i1", "purchase", 9.0),       # duplicate_event_id
        ("e3", None, ts(48), "u2", "i1", "view", 0.0),              # future_timestamp
        ("e4", None, pd.Timestamp("2001-01-01", tz="UTC"), "u2", "i1", "view", 0.0),  # before
        ("e5", "nope", ts(1), "u2", "i1", "click", 0.0),            # unknown_request_id
        ("e6", None, ts(1), "u2", None, "click", 0.0),              # missing_item
        ("e7", None, ts(1), "u2", "i3", "click", 0.0),              # deleted_item (flagged)
        ("e8", None, ts(1), "u2", "i9", "click", 0.0),              # deleted_item (not listed)
        ("e9", None, ts(1), "u2", None, "unsubscribe", 0.0),        # ignored, not refused
    ]
    out = store_tables(feedback(rows), exposures(), as_of=int(ts(3).timestamp()),
                       window_start=int(pd.Timestamp("2024-06-01", tz="UTC").timestamp()),
                       items=items)
    assert out.read == 10
    assert out.used == 2
    assert out.refused == {"duplicate_event_id": 1, "future_timestamp": 1,
                           "before_data_window": 1, "unknown_request_id": 1, "missing_item": 1,
                           "deleted_item": 2}
    assert list(out.refused) == [r for r in REASONS if r in out.refused]
    assert out.ignored == {"unsubscribe": 1}
    assert out.used + out.total_refused + sum(out.ignored.values()) == out.read  # nothing lost
    assert out.interactions["event"].tolist() == ["push_open", "purchase"]
    assert out.interactions["ts"].tolist() == [int(ts(1).timestamp()), int(ts(2).timestamp())]
    report = ValidationReport()
    out.add_to(report)
    assert report.refused["event_store"]["deleted_item"] == 2
    assert any("e5" in e for e in report.examples["event_store"])


def test_a_join_on_a_share_request_is_a_share_record_and_a_friendship():
    rows = [("j1", "share-1", ts(1), "newbie", None, "join", 0.0),   # item from the request
            ("p1", "share-1", ts(2), "newbie", "i2", "purchase", 5.0),
            ("j2", None, ts(1), "u3", "i1", "join", 0.0)]             # organic join: no sharer
    out = store_tables(feedback(rows), exposures(), as_of=int(ts(3).timestamp()))
    assert out.total_refused == 0
    assert out.shares[["sharer_id", "item_id", "recipient_id"]].values.tolist() == [
        ["u1", "i2", "newbie"]]
    assert out.shares["joined"].tolist() == [True]
    assert out.social[["src", "dst"]].values.tolist() == [["u1", "newbie"]]
    assert sorted(out.interactions["event"]) == ["join", "join", "purchase"]


def test_share_events_with_recipients_become_share_records():
    frame = feedback([("s1", None, ts(1), "u1", "i1", "share", 0.0),
                      ("s2", None, ts(1), "u1", "i1", "share", 0.0)])
    frame["recipient_id"] = ["u7", "u8"]
    out = store_tables(frame, exposures(), as_of=int(ts(3).timestamp()))
    assert out.shares["recipient_id"].tolist() == ["u7", "u8"]
    assert out.shares["joined"].tolist() == [False, False]
    assert len(out.social) == 2


def test_an_empty_store_gives_empty_tables():
    out = store_tables(feedback([]), exposures().iloc[:0], as_of=0)
    assert out.read == out.used == out.total_refused == 0
    assert list(out.interactions.columns) == ["user_id", "item_id", "event", "ts", "value"]


def test_a_deleted_column_read_as_text_is_understood():
    from socialrec.features.store_tables import deleted_flags

    assert deleted_flags(pd.Series(["False", "true", "1", None, "no"])).tolist() == [
        False, True, True, False, False]
    assert deleted_flags(pd.Series([False, True])).tolist() == [False, True]


def test_unix_seconds():
    assert unix_seconds(pd.Series([pd.Timestamp("1970-01-01 00:01", tz="UTC")])).tolist() == [60]


def test_events_naming_a_served_request_are_listed_as_served_pairs():
    rows = [
        ("e1", "push-1", ts(1), "u1", "i1", "push_open", 0.0),
        ("e2", "push-1", ts(2), "u1", "i1", "purchase", 9.0),
        ("e3", None, ts(2), "u2", "i1", "purchase", 9.0),  # organic
        ("e4", None, ts(2), "u1", "i2", "view", 0.0),  # organic
    ]
    out = store_tables(feedback(rows), exposures(), as_of=int(ts(3).timestamp()))
    assert out.used == 4
    assert out.served_pairs.values.tolist() == [["u1", "i1"]]
