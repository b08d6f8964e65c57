"""Two replicas of the service on one machine sharing one PostgreSQL event store (a fresh database)
and one registry, as behind a load balancer: the same A/B variant for the same unit on both, a
frequency cap counting pushes answered by either, an alias change picked up by both, readiness
waiting for the bundle and the event store, and kill -9 of one replica under load leaving the other
answering with every acknowledged feedback event stored."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from socialrec.features.events import EventStore
from tests.support.production import (
    Starting,
    create_database,
    database_url,
    drop_database,
    get_json,
    new_database_name,
    pg_reachable,
    wait_until,
)
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg() -> Iterator[list[str]]:
    """Database names to drop at the end (the event store's is created now)."""
    if not pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    names = [new_database_name("socialrec_events")]
    create_database(names[0])
    yield names
    for name in names:
        drop_database(name)


@pytest.fixture(scope="module")
def replicas(pg, registry, experiments_file, admin_token, tmp_path_factory
             ) -> Iterator[dict[str, ServerProcess]]:
    """Replicas a and b (ready), and c started against a database that does not exist yet and
    an alias nobody set (see test_readiness_waits_for_bundle_and_event_store)."""
    registry.set_alias("champion", registry.versions[0])
    logs = tmp_path_factory.mktemp("replicas")
    common = {"MLFLOW_TRACKING_URI": registry.uri, "SOCIALREC_MODEL": registry.name,
              "SOCIALREC_POLL_SECONDS": "0", "SOCIALREC_THREADS": "4",
              "SOCIALREC_ADMIN_TOKEN": admin_token, "SOCIALREC_RETRY_SECONDS": "0.5"}
    shared = {**common, "SOCIALREC_EVENT_STORE": database_url(pg[0]),
              "SOCIALREC_EXPERIMENTS": str(experiments_file), "SOCIALREC_COMMIT_PUSHES": "1"}
    pg.append(new_database_name("socialrec_late"))  # not created: c waits for it
    late = {**common, "SOCIALREC_EVENT_STORE": database_url(pg[-1]), "SOCIALREC_ALIAS": "canary",
            "SOCIALREC_CACHE_DIR": str(logs / "cache-c")}
    servers: dict[str, ServerProcess] = {"c": Starting(late, logs / "c.log")}
    with ThreadPoolExecutor(2) as pool:  # start both at once (each ~20 s on 2 cores)
        futures = {name: pool.submit(ServerProcess, {**shared, "SOCIALREC_CACHE_DIR":
                                                     str(logs / f"cache-{name}")},
                                     logs / f"{name}.log", 240) for name in "ab"}
        try:
            servers |= {name: f.result() for name, f in futures.items()}
        except BaseException:
            for s in [*servers.values(), *(f.result() for f in futures.values()
                                           if f.exception() is None)]:
                s.stop()
            raise
    yield servers
    for server in servers.values():
        server.stop()
    registry.set_alias("champion", registry.versions[0])
    with contextlib.suppress(Exception):  # set by the readiness test
        registry.client().delete_registered_model_alias(registry.name, "canary")


def _post(server: ServerProcess, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def test_same_unit_same_variant_on_both(replicas):
    a, b = replicas["a"], replicas["b"]
    variants = set()
    for i in range(20):
        body = {"item_id": "i3", "campaign_id": f"campaign-{i}", "k": 5,
                "rules": {"holdout": False}}
        ra, rb = _post(a, "/push_targets", body), _post(b, "/push_targets", body)
        assert ra.status_code == rb.status_code == 200, (ra.text, rb.text)
        assert ra.json()["variant"] == rb.json()["variant"]
        variants.add(ra.json()["variant"])
        body = {"user_id": f"u{i}", "k": 3}
        ra, rb = _post(a, "/recommend", body), _post(b, "/recommend", body)
        assert (ra.json()["experiment"], ra.json()["variant"]) == \
            (rb.json()["experiment"], rb.json()["variant"]) == ("rec", "control")
    assert variants == {"control", "treatment"}  # both arms occur: the comparison means something


def test_frequency_cap_counts_pushes_across_replicas(replicas):
    a, b = replicas["a"], replicas["b"]
    capped = {"item_id": "i7", "campaign_id": "cap-test", "k": 30,
              "rules": {"holdout": False, "frequency_cap": {"max_pushes": 1, "window_hours": 1}}}
    first = _post(a, "/push_targets", capped)
    assert first.status_code == 200, first.text
    pushed = set(first.json()["users"])
    second = _post(b, "/push_targets", capped)  # at once, through the other replica
    assert second.status_code == 200, second.text
    assert not pushed & set(second.json()["users"])
    assert second.json()["removed"]["frequency_cap"] >= len(pushed)


def test_alias_change_picked_up_by_both(replicas, registry, admin_token):
    v1, v2 = registry.versions
    try:
        registry.set_alias("champion", v2)
        for server in (replicas["a"], replicas["b"]):
            r = httpx.post(f"{server.url}/admin/reload", timeout=120,
                           headers={"Authorization": f"Bearer {admin_token}"})
            assert r.status_code == 200, r.text
            assert r.json()["models"] == {"champion": f"{registry.name}/{v2}"}
            pushed = _post(server, "/push_targets", {"item_id": "i3", "k": 5})
            assert pushed.json()["model_version"] == f"{registry.name}/{v2}"
    finally:
        registry.set_alias("champion", v1)
        for server in (replicas["a"], replicas["b"]):
            httpx.post(f"{server.url}/admin/reload", timeout=120,
                       headers={"Authorization": f"Bearer {admin_token}"})


def test_readiness_waits_for_bundle_and_event_store(replicas, pg, registry):
    c = replicas["c"]
    assert isinstance(c, Starting)
    wait_until(lambda: _status(c)[0] in (200, 503), 180, "replica c to answer")
    code, status = _status(c)
    assert code == 503 and httpx.get(f"{c.url}/readyz", timeout=10).status_code == 503
    assert "event store not reachable" in status["waiting_for"]
    assert "no model for alias canary" in status["waiting_for"]
    r = _post(c, "/recommend", {"user_id": "u1"})
    assert r.status_code == 503 and r.json()["error"].startswith("not ready: ")

    create_database(pg[-1])  # the event store appears: still waiting for the bundle
    wait_until(lambda: _status(c)[1]["event_store"]["ok"] is True, 30, "c to reach its store")
    code, status = _status(c)
    assert code == 503 and status["waiting_for"].startswith("no model for alias canary")
    assert httpx.get(f"{c.url}/readyz", timeout=10).status_code == 503

    registry.set_alias("canary", registry.versions[0])  # the bundle appears: ready
    c.wait_ready(60)
    assert _post(c, "/recommend", {"user_id": "u1"}).json()["model_version"] == \
        f"{registry.name}/{registry.versions[0]}"


def _status(server: ServerProcess) -> tuple[int, dict]:
    try:
        return get_json(f"{server.url}/status")
    except httpx.HTTPError:
        return 0, {}


def test_kill_one_replica_under_load(replicas, pg):
    a, b = replicas["a"], replicas["b"]
    acked: list[str] = []  # feedback event ids whose POST answered 200
    b_failures: list[str] = []
    b_after_kill = 0
    killed = threading.Event()
    stop = threading.Event()
    ids = itertools.count()
    lock = threading.Lock()

    def feedback(server: ServerProcess) -> None:
        nonlocal b_after_kill
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                with lock:
                    batch = [f"kill-{next(ids)}" for _ in range(5)]
                try:
                    r = client.post("/feedback", json={"events": [
                        {"event_id": e, "user_id": "u1", "item_id": "i3", "event": "click"}
                        for e in batch]})
                except httpx.HTTPError as exc:
                    if server is b:
                        b_failures.append(repr(exc))
                    elif killed.is_set():
                        return  # a is gone: its client stops
                    continue
                if r.status_code == 200:
                    with lock:
                        acked.extend(batch)
                        b_after_kill += server is b and killed.is_set()
                elif server is b:
                    b_failures.append(f"{r.status_code} {r.text[:200]}")

    def pushes(server: ServerProcess) -> None:
        nonlocal b_after_kill
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in itertools.count():
                if stop.is_set():
                    return
                try:
                    r = client.post("/push_targets", json={
                        "item_id": f"i{i % 50}", "campaign_id": f"load-{i}", "k": 20})
                except httpx.HTTPError as exc:
                    if server is b:
                        b_failures.append(repr(exc))
                    elif killed.is_set():
                        return
                    continue
                if server is b:
                    if r.status_code != 200:
                        b_failures.append(f"{r.status_code} {r.text[:200]}")
                    elif killed.is_set():
                        with lock:
                            b_after_kill += 1

    threads = [threading.Thread(target=f, args=(s,)) for f in (feedback, pushes)
               for s in (a, b)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acked) >= 100, 60, "load on both replicas")
        acked_before_kill = len(acked)
        a.kill()  # SIGKILL to the replica's whole process tree, mid-traffic
        killed.set()
        wait_until(lambda: b_after_kill >= 30, 60, "b to keep answering")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert b_failures == []
    assert acked_before_kill >= 100
    with EventStore(database_url(pg[0])) as store:
        stored = set(store.feedback().event_id)
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"


def test_replica_logs_have_no_errors(replicas):
    """Nothing above logged an ERROR on the surviving replica (client errors are INFO lines)."""
    b = replicas["b"]
    b.log.flush()
    log = Path(b.log_path).read_text()
    assert "[ERROR]" not in log, log[-3000:]
