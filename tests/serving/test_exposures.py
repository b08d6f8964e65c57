"""The exposure writer: one transaction per list, flush ordering, bounded backlog."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from socialrec.features.events import EventStore
from socialrec.serving import exposures
from socialrec.serving.exposures import ExposureLog, ServedList

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def served(request_id: str, n: int) -> ServedList:
    return ServedList(request_id, NOW, "push_targets", "exp", "control", "m/1", "camp",
                      [f"u{i}" for i in range(n)], "i1", np.linspace(1, 0, n))


def test_flush_waits_for_everything_logged_before(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")
    log = ExposureLog(store)
    for r in range(30):
        log.log(served(f"r{r}", 40))
    assert log.flush(timeout=30)
    rows = store.exposures()
    assert len(rows) == 30 * 40
    one = rows[rows.request_id == "r7"]
    assert one["rank"].tolist() == list(range(1, 41))  # ranks start at 1, in list order
    assert one.user_id.tolist() == [f"u{i}" for i in range(40)]
    log.close()
    store.close()


def test_backlog_is_bounded(tmp_path, monkeypatch):
    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")
    monkeypatch.setattr(exposures, "MAX_PENDING_ROWS", 100)
    log = ExposureLog(store)
    log.log(served("big", 101))  # more than the whole backlog may hold
    log.log(served("ok", 10))
    assert log.flush(timeout=30)
    assert log.dropped_rows == 101
    assert set(store.exposures().request_id) == {"ok"}
    log.close()
    store.close()
