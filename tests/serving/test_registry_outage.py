"""A registry that stops answering (its SQLite file corrupted under the service) or does not
answer at start-up: the service keeps serving what it has, never a 500, and says so in
GET /status and in one log line."""

from __future__ import annotations

import shutil

import httpx

from tests.support.production import Starting, get_json, wait_until
from tests.support.server import ServerProcess


def _push(url: str) -> httpx.Response:
    return httpx.post(f"{url}/push_targets", json={"item_id": "i3", "k": 10}, timeout=30)


def test_service_outlives_its_registry(registry, tmp_path, start_server, admin_token):
    registry.set_alias("champion", registry.versions[0])
    db = tmp_path / "registry.db"  # a copy: corrupting it leaves the shared fixture intact
    shutil.copy(registry.uri.removeprefix("sqlite:///"), db)
    good = db.read_bytes()
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "SOCIALREC_MODEL": registry.name,
           "SOCIALREC_CACHE_DIR": str(tmp_path / "cache"),
           "SOCIALREC_EVENT_STORE": f"sqlite:///{tmp_path / 'events.db'}",
           "SOCIALREC_RETRY_SECONDS": "0.5"}
    served = f"{registry.name}/{registry.versions[0]}"
    first = start_server({**env, "SOCIALREC_POLL_SECONDS": "0.5"})

    db.write_bytes(b"this is not a database" * 100)  # the registry is gone
    wait_until(lambda: get_json(f"{first.url}/status")[1]["model_source"]["ok"] is False, 30,
               "the failed poll to show in /status")
    code, status = get_json(f"{first.url}/status")
    assert code == 200 and status["ready"] is True  # still serving: still ready
    assert status["models"] == {"champion": served}
    assert "DatabaseError" in status["model_source"]["error"]
    r = _push(first.url)
    assert r.status_code == 200 and r.json()["model_version"] == served
    reload = httpx.post(f"{first.url}/admin/reload", timeout=60,
                        headers={"Authorization": f"Bearer {admin_token}"})
    assert reload.status_code == 503
    assert reload.json()["error"].startswith("reload failed, still serving the old models")

    # Start-up without a registry: with the cache of an earlier run, the last known version
    # (second); with an empty cache, nothing: not ready, and every endpoint a JSON 503 (third).
    second = start_server(env)
    third = Starting({**env, "SOCIALREC_CACHE_DIR": str(tmp_path / "empty-cache"),
                      "SOCIALREC_POLL_SECONDS": "0", "SOCIALREC_THREADS": "2"},
                     tmp_path / "third.log")
    try:
        code, status = get_json(f"{second.url}/status")
        assert code == 200 and status["models"] == {"champion": served}
        assert status["model_source"]["ok"] is False
        assert _push(second.url).json()["model_version"] == served

        wait_until(lambda: _answers(third), 300, "the third service to answer")
        assert httpx.get(f"{third.url}/readyz", timeout=10).status_code == 503
        r = _push(third.url)
        assert r.status_code == 503 and r.json()["error"].startswith("not ready: no model for")
        code, status = get_json(f"{third.url}/status")
        assert code == 503 and status["models"] == {}

        db.write_bytes(good)  # the registry is back
        third.wait_ready(120)  # retried every 0.5 s
        assert _push(third.url).json()["model_version"] == served
        wait_until(lambda: get_json(f"{first.url}/status")[1]["model_source"]["ok"] is True, 30,
                   "the first service to see the registry again")
    finally:
        third.stop()

    # One WARNING line when the registry went away (not one per poll), one INFO line when it came
    # back, no traceback.
    first.log.flush()
    log = first.log_path.read_text()
    assert log.count("unreachable: ") == 1, log[-3000:]
    assert "reachable again" in log
    assert "Traceback" not in log


def _answers(server: ServerProcess) -> bool:
    try:
        return httpx.get(f"{server.url}/livez", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
