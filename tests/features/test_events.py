"""The event store on a real SQLite file and a real PostgreSQL (skipped when it is not running)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from socialrec.features.events import (
    EXPOSURE_COLUMNS,
    EventStore,
    Exposure,
    Feedback,
    events_schema,
    iter_rows,
)

PG_URL = os.environ.get("SOCIALREC_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _pg_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
        yield s
        s.close()
        return
    if not _pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    # A private pair of tables per test, dropped afterwards.
    s = EventStore(PG_URL, table_prefix=f"t{uuid.uuid4().hex[:10]}_")
    yield s
    s.metadata.drop_all(s.engine)
    s.close()


def exposure(i: int, user: str, minutes: int, endpoint: str = "push_targets",
             experiment: str | None = "exp1") -> Exposure:
    return Exposure(request_id=f"req{i}", ts=T0 + timedelta(minutes=minutes), endpoint=endpoint,
                    experiment=experiment, variant="treatment" if i % 2 else "control",
                    model_version="3", unit_id=user, user_id=user, item_id="item9", rank=i % 5,
                    score=1.0 / (i + 1))


def feedback(i: int, minutes: int, event: str = "click", value: float = 0.0) -> Feedback:
    return Feedback(event_id=f"ev{i}", request_id=f"req{i}", ts=T0 + timedelta(minutes=minutes),
                    user_id=f"u{i}", item_id="item9", event=event, value=value)


def test_round_trip_keeps_every_field(store):
    rows = [exposure(i, f"u{i}", i) for i in range(6)]
    store.log_exposures(rows)
    df = store.exposures()
    assert len(df) == 6
    first = df.iloc[1]
    assert (first.request_id, first.variant, first["rank"], first.user_id) == (
        "req1", "treatment", 1, "u1")
    assert first.score == pytest.approx(0.5)
    assert str(df.ts.dt.tz) == "UTC"
    assert df.ts.iloc[1].to_pydatetime() == T0 + timedelta(minutes=1)

    organic = Feedback("org", None, T0, "u7", None, "view")
    store.log_feedback([feedback(1, 3, "purchase", 12.5), organic])
    fb = store.feedback()
    assert list(fb.event_id) == ["org", "ev1"]  # oldest first
    assert fb.set_index("event_id").loc["ev1", "value"] == 12.5
    assert fb.set_index("event_id").request_id.isna().loc["org"]


def test_feedback_is_idempotent_on_event_id(store):
    batch = [feedback(i, i) for i in range(5)]
    assert store.log_feedback(batch) == 5
    # Repeats, within the batch and against the table, are ignored and not counted.
    again = [*batch[:2], feedback(9, 9), feedback(9, 9)]
    assert store.log_feedback(again) == 1
    assert store.log_feedback([]) == 0
    assert sorted(store.feedback().event_id) == ["ev0", "ev1", "ev2", "ev3", "ev4", "ev9"]


def test_time_filters_are_half_open_and_by_experiment(store):
    store.log_exposures([exposure(i, f"u{i}", i * 10, experiment="exp1" if i < 4 else "exp2")
                         for i in range(6)])
    store.log_feedback([feedback(i, i * 10) for i in range(6)])
    since, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=40)
    assert list(store.exposures(since=since, until=until).request_id) == ["req1", "req2", "req3"]
    assert list(store.exposures("exp2").request_id) == ["req4", "req5"]
    assert list(store.exposures("exp1", since=since).request_id) == ["req1", "req2", "req3"]
    assert list(store.feedback(since=since, until=until).event_id) == ["ev1", "ev2", "ev3"]
    # A non-UTC zone means the same instant.
    plus2 = timezone(timedelta(hours=2))
    assert list(store.feedback(since=since.astimezone(plus2), until=until.astimezone(plus2))
                .event_id) == ["ev1", "ev2", "ev3"]


def test_push_counts_counts_only_pushes_since(store):
    rows = [exposure(i, "a", i) for i in range(5)]                       # 5 pushes to a
    rows += [exposure(10 + i, "b", 100 + i) for i in range(2)]           # 2 later pushes to b
    rows += [exposure(20, "a", 50, endpoint="recommend")]                # not a push
    rows += [replace(exposure(21, "b", 120), variant="holdout")]         # held out: not sent
    rows += [exposure(30 + i, f"x{i}", 60) for i in range(1500)]         # more ids than one chunk
    store.log_exposures(rows)
    ids = ["a", "b", "nobody"] + [f"x{i}" for i in range(1500)]
    counts = store.push_counts(ids, since=T0 + timedelta(minutes=2))
    assert counts["a"] == 3 and counts["b"] == 2 and counts["nobody"] == 0
    assert set(counts) == set(ids) and all(counts[f"x{i}"] == 1 for i in range(1500))
    assert store.push_counts(["a", "b"], since=T0 + timedelta(minutes=101)) == {"a": 0, "b": 1}


def test_bad_rows_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match=r"endpoint.*push_targets.*'email'"):
        exposure(1, "u", 0, endpoint="email")
    with pytest.raises(ValueError, match=r"event.*'like'"):
        feedback(1, 0, event="like")
    with pytest.raises(TypeError, match=r"Feedback\.ts: expected a datetime"):
        Feedback("e", None, "2024-01-01", "u", None, "view")  # type: ignore[arg-type]


def test_naive_timestamps_are_taken_as_utc():
    naive = Feedback("e", None, datetime(2024, 1, 1, 8), "u", None, "view")
    assert naive.ts == datetime(2024, 1, 1, 8, tzinfo=UTC)


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path):
    s = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    s.close()


def test_events_schema_prints_postgres_ddl():
    ddl = events_schema("postgresql+psycopg://")
    assert "CREATE TABLE exposures" in ddl and "TIMESTAMP WITH TIME ZONE" in ddl
    assert "CREATE INDEX ix_exposures_user_ts ON exposures (user_id, ts)" in ddl


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, text=True)


def test_acknowledged_feedback_survives_kill_9(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    proc = _python("""
        import sys, time
        from datetime import datetime, UTC
        from socialrec.features.events import EventStore, Feedback
        store = EventStore(sys.argv[1])
        for b in range(3):
            events = [Feedback(f"ev{b}-{i}", f"r{i}", datetime.now(UTC), f"u{i}", "i", "click")
                      for i in range(100)]
            print("acked", store.log_feedback(events), flush=True)
        time.sleep(60)  # killed here, with the pool's connections still open
    """, url)
    assert proc.stdout is not None
    lines = [proc.stdout.readline().strip() for _ in range(3)]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert lines == ["acked 100"] * 3
    reopened = EventStore(url)
    assert len(reopened.feedback()) == 300
    reopened.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    EventStore(url).close()
    code = """
        import sys
        from datetime import datetime, UTC
        from socialrec.features.events import EventStore, Exposure, Feedback
        store, w = EventStore(sys.argv[1]), sys.argv[2]
        for b in range(40):
            now = datetime.now(UTC)
            store.log_exposures([Exposure(f"{w}-{b}", now, "recommend", None, None, "1", "u", "u",
                                          f"i{k}", k, 0.0) for k in range(10)])
            store.log_feedback([Feedback(f"{w}-{b}", f"{w}-{b}", now, "u", "i0", "click")])
        print("done", flush=True)
    """
    workers = [_python(code, url, f"w{n}") for n in range(4)]
    for proc in workers:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.strip() == "done"
    s = EventStore(url)
    assert len(s.exposures()) == 4 * 40 * 10
    assert len(s.feedback()) == 4 * 40
    s.close()


@pytest.mark.postgres
def test_sqlite_store_copies_into_postgres(tmp_path):
    """The migration recipe of the module docstring (events_schema)."""
    if not _pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    old = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    old.log_exposures([exposure(i, f"u{i}", i, experiment=None if i == 2 else "exp1")
                       for i in range(5)])
    old.log_feedback([feedback(1, 3, "purchase", 9.5),
                      Feedback("org", None, T0, "u7", None, "view")])
    new = EventStore(PG_URL, table_prefix=f"t{uuid.uuid4().hex[:10]}_")
    try:
        new.log_exposures(list(iter_rows(old.exposures(), Exposure)))
        assert new.log_feedback(list(iter_rows(old.feedback(), Feedback))) == 2
        assert new.log_feedback(list(iter_rows(old.feedback(), Feedback))) == 0
        pd.testing.assert_frame_equal(new.exposures(), old.exposures())
        pd.testing.assert_frame_equal(new.feedback(), old.feedback())
    finally:
        new.metadata.drop_all(new.engine)
        new.close()
        old.close()


def test_exposures_keep_the_treatment_and_whether_it_was_explored(store):
    rows = [replace(exposure(1, "u1", 0), treatment="coupon5", explored=True),
            replace(exposure(2, "u2", 1), treatment="push", explored=False),
            exposure(3, "u3", 2)]  # written without a treatment (as before it existed)
    store.log_exposures(rows)
    got = store.exposures()
    assert got.treatment.tolist()[:2] == ["coupon5", "push"] and pd.isna(got.treatment[2])
    assert got.explored.tolist()[:2] == [True, False] and pd.isna(got.explored[2])
    assert [e.treatment for e in iter_rows(got, Exposure)] == ["coupon5", "push", None]


def test_a_store_made_before_the_treatment_columns_is_upgraded_and_stays_readable(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the exposures table as the first release made it
        conn.execute("CREATE TABLE exposures (id INTEGER PRIMARY KEY, request_id VARCHAR(64) NOT "
                     "NULL, ts DATETIME NOT NULL, endpoint VARCHAR(32) NOT NULL, experiment "
                     "VARCHAR(128), variant VARCHAR(128), model_version VARCHAR(128), unit_id "
                     "VARCHAR(128), user_id VARCHAR(128) NOT NULL, item_id VARCHAR(128), rank "
                     "INTEGER NOT NULL, score FLOAT NOT NULL)")
        conn.execute("INSERT INTO exposures VALUES (1, 'r0', '2024-03-01 12:00:00.000000', "
                     "'push_targets', 'e', 'holdout', '1', 'c', 'u0', 'i', 1, 0.5)")
    store = EventStore(f"sqlite:///{path}")
    store.log_exposures([replace(exposure(1, "u1", 5), treatment="push", explored=False)])
    got = store.exposures()
    assert got.user_id.tolist() == ["u0", "u1"]
    assert pd.isna(got.treatment[0]) and got.treatment[1] == "push"
    store.close()
    EventStore(f"sqlite:///{path}").close()  # a second start finds the columns there


def test_unsubscribed_names_the_users_who_opted_out_by_feedback(store):
    store.log_feedback([feedback(1, 0, "unsubscribe"), feedback(2, 5, "click"),
                        feedback(3, 10, "unsubscribe")])
    assert store.unsubscribed(["u1", "u2", "u3", "u4"]) == {"u1", "u3"}
    assert store.unsubscribed(["u1", "u3"], until=T0 + timedelta(minutes=5)) == {"u1"}


@pytest.mark.parametrize("opted_out", [300, 2500])
def test_a_campaign_sized_list_gets_the_same_opt_outs(store, opted_out):
    """From 1,000 ids on, the opt-out list is read first; with more opt-outs in the store than
    ids asked about, the ids are looked up one by one: the same answer either way."""
    store.log_feedback([feedback(i, i % 60, "unsubscribe" if i % 2 else "click")
                        for i in range(2 * opted_out)])
    asked = [f"u{i}" for i in range(0, 4000, 3)]  # 1,334 ids, half of them never seen
    want = {u for u in asked if int(u[1:]) % 2 and int(u[1:]) < 2 * opted_out}
    assert store.unsubscribed(asked) == want
    assert store.unsubscribed(asked[:999]) == want.intersection(asked[:999])
    until = T0 + timedelta(minutes=30)
    assert store.unsubscribed(asked, until=until) == {
        u for u in want if int(u[1:]) % 60 < 30}


def test_bulk_exposure_rows_lose_nothing_and_keep_their_order_and_values(store):
    """log_exposure_rows (COPY on PostgreSQL, executemany on SQLite): every row of every call,
    ids increasing in the order given, each value as given (a ts in another zone stored as UTC)."""
    plus_two = timezone(timedelta(hours=2))
    calls = [[(f"req{b}", (T0 + timedelta(seconds=b)).astimezone(plus_two if b == 1 else UTC),
               "push_targets", "exp1" if b else None, "control", "7", f"camp{b}",
               f"u{(b * 7919 + r) % 5000}", None if b == 2 else f"item{r % 3}", r + 1,
               1.0 / (r + 1), "coupon5" if r % 2 else None, bool(r % 3) if b else None)
              for r in range(n)] for b, n in enumerate((1, 2500, 40))]
    for rows in calls:
        store.log_exposure_rows(rows)
    t = store.exposures_table
    columns = [t.c[c] for c in EXPOSURE_COLUMNS]
    with store.engine.connect() as conn:
        got = conn.execute(sa.select(t.c.id, *columns).order_by(t.c.id)).all()
    want = [(*r[:1], r[1].astimezone(UTC), *r[2:]) for rows in calls for r in rows]
    assert [tuple(g[1:]) for g in got] == want
    ids = [g[0] for g in got]
    assert ids == sorted(set(ids))
    assert len(store.exposures()) == len(want)
    store.log_exposure_rows([])  # nothing to write: no transaction, no error
