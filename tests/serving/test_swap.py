"""A model swap under load: alias moves in the registry, zero failed requests."""

from __future__ import annotations

import itertools
import threading
import time

import httpx


def test_alias_change_under_load_fails_no_request(registry, tmp_path, start_server,
                                                  admin_token):
    v1, v2 = registry.versions
    registry.set_alias("champion", v1)
    server = start_server({
        "MLFLOW_TRACKING_URI": registry.uri,
        "SOCIALREC_MODEL": registry.name,
        "SOCIALREC_CACHE_DIR": str(tmp_path / "cache"),
        "SOCIALREC_EVENT_STORE": f"sqlite:///{tmp_path / 'events.db'}",
        "SOCIALREC_POLL_SECONDS": "1",
    })
    name = registry.name
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post("/push_targets", json={"item_id": "i3", "k": 50})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200 or len(r.json()["users"]) != 50:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
                else:
                    seen.append(r.json()["model_version"])

    def wait_for(version: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not (seen and seen[-1] == version):
            assert time.monotonic() < deadline, f"still serving {seen[-1:]} not {version}"
            time.sleep(0.05)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(f"{name}/{v1}")
        registry.set_alias("champion", v2)  # picked up by the 1 s poll
        wait_for(f"{name}/{v2}")
        registry.set_alias("champion", v1)  # picked up at once by an admin reload
        with httpx.Client(base_url=server.url, timeout=60) as admin:
            r = admin.post("/admin/reload", headers={"Authorization": f"Bearer {admin_token}"})
        assert r.status_code == 200, r.text
        assert r.json()["models"] == {"champion": f"{name}/{v1}"}
        wait_for(f"{name}/{v1}", timeout=5)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        registry.set_alias("champion", v1)
    assert failures == []
    assert len(seen) > 20
    # every answer came from one complete version, and the switch happened once each way
    assert set(seen) == {f"{name}/{v1}", f"{name}/{v2}"}
    switches = sum(a != b for a, b in itertools.pairwise(seen))
    assert switches <= 4  # two swaps; the two client threads may interleave at each
