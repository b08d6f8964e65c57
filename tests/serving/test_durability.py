"""Acknowledged feedback survives `kill -9` of the server."""

from __future__ import annotations

import httpx

from socialrec.features.events import EventStore


def test_acknowledged_feedback_survives_sigkill(bundle_dir, tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    server = start_server({"SOCIALREC_BUNDLE_DIR": str(bundle_dir),
                           "SOCIALREC_EVENT_STORE": url})
    acked: list[str] = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for batch in range(20):
            events = [{"event_id": f"k9-{batch}-{i}", "user_id": f"u{i}", "item_id": "i1",
                       "event": "purchase", "value": 9.5} for i in range(50)]
            r = client.post("/feedback", json={"events": events})
            assert r.status_code == 200 and r.json()["accepted"] == 50
            acked += [e["event_id"] for e in events]
    server.kill()  # SIGKILL to the whole process group, right after the last ack
    assert server.proc.returncode is not None
    with EventStore(url) as store:
        stored = set(store.feedback().event_id)
    assert set(acked) <= stored
    assert len(acked) == 1000
