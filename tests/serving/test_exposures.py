"""The exposure writer process: one transaction per list, flush ordering, bounded backlog,
and what happens when the writer dies."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa

from socialrec.features.events import EventStore
from socialrec.serving import exposures
from socialrec.serving.exposures import ExposureLog, ServedList

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def served(request_id: str, n: int) -> ServedList:
    return ServedList(request_id, NOW, "push_targets", "exp", "control", "m/1", "camp",
                      [f"u{i}" for i in range(n)], "i1", np.linspace(1, 0, n))


def test_flush_waits_for_everything_logged_before(tmp_path):
    url = f"sqlite:///{tmp_path / 'ev.db'}"
    log = ExposureLog(url)
    for r in range(30):
        log.log(served(f"r{r}", 40))
    assert log.flush(timeout=60)
    with EventStore(url) as store:
        rows = store.exposures()
    assert len(rows) == 30 * 40
    one = rows[rows.request_id == "r7"]
    assert one["rank"].tolist() == list(range(1, 41))  # ranks start at 1, in list order
    assert one.user_id.tolist() == [f"u{i}" for i in range(40)]
    assert log.pending_rows == 0 and log.failed_rows == 0
    log.close()
    assert log.proc.returncode == 0


def test_backlog_is_bounded(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ev.db'}"
    monkeypatch.setattr(exposures, "MAX_PENDING_ROWS", 100)
    log = ExposureLog(url)
    log.log(served("big", 101))  # more than the whole backlog may hold
    log.log(served("ok", 10))
    assert log.flush(timeout=60)
    assert log.dropped_rows == 101
    with EventStore(url) as store:
        assert set(store.exposures().request_id) == {"ok"}
    log.close()


def test_a_dead_writer_is_reported_not_waited_for(tmp_path):
    log = ExposureLog(f"sqlite:///{tmp_path / 'ev.db'}")
    log.log(served("queued", 5))  # the writer is still starting: this one is never acked
    log.proc.kill()
    start = time.monotonic()
    assert log.flush(timeout=60) is False
    assert time.monotonic() - start < 30
    assert not log.alive
    log.log(served("lost", 7))
    assert log.dropped_rows == 7
    log.close()


def test_values_are_the_lists_exposure_rows():
    held = ServedList("r1", NOW, "push_targets", "exp", "holdout", "m/1", "camp", ["u3", "u9"],
                      ["i1", "i2"], np.asarray([0.5, 0.25], dtype=np.float32),
                      ranks=np.asarray([2, 5]), treatments="push",
                      explored=np.asarray([True, False]))
    assert held.values() == [
        ("r1", NOW, "push_targets", "exp", "holdout", "m/1", "camp", "u3", "i1", 2, 0.5, "push",
         True),
        ("r1", NOW, "push_targets", "exp", "holdout", "m/1", "camp", "u9", "i2", 5, 0.25, "push",
         False)]
    assert [v[9] for v in served("r2", 3).values()] == [1, 2, 3]  # ranks from 1 by default
    with pytest.raises(ValueError, match="endpoint"):
        ServedList("r3", NOW, "nope", None, "v", "m", "u", "u", None, np.ones(2)).values()
    with pytest.raises(ValueError):  # one user id per entry, or one for the list
        ServedList("r4", NOW, "recommend", None, "v", "m", "u", ["u1"], None, np.ones(2)).values()


def test_a_campaign_sized_list_is_written_whole_and_in_order(tmp_path):
    url = f"sqlite:///{tmp_path / 'ev.db'}"
    log = ExposureLog(url)
    lists = [served("small", 3), served("big", 10_000), served("after", 5)]
    for one in lists:
        log.log(one)
    assert log.flush(timeout=120)
    log.close()
    with EventStore(url) as store:
        t = store.exposures_table
        with store.engine.connect() as conn:
            got = conn.execute(sa.select(t.c.request_id, t.c.user_id, t.c.rank)
                               .order_by(t.c.id)).all()
    assert [tuple(g) for g in got] == [(v[0], v[7], v[9]) for one in lists for v in one.values()]
