"""Bad input never answers 500, a client's mistake is one log line, and GET /status says what the
service serves and waits for."""

from __future__ import annotations

import time

import httpx
import pytest

POSTS = ["/push_targets", "/push_targets_stream", "/share_partners", "/recommend", "/feedback",
         "/admin/reload"]


@pytest.mark.parametrize("content_type", [
    "multipart/form-data",  # no boundary: BentoML's form parser raised, a 500 before
    "multipart/form-data; boundary=xyz",
    "application/x-www-form-urlencoded",
    "application/vnd.bentoml+pickle",
])
def test_bodies_that_are_not_json_get_415(client, content_type):
    for path in POSTS:
        r = client.post(path, content=b"user_id=u1", headers={"Content-Type": content_type})
        assert r.status_code == 415, (path, r.status_code, r.text)
        assert r.json() == {
            "error": f"unsupported Content-Type {content_type!r}: the body must be JSON",
            "field": "Content-Type", "expected": "application/json"}


def test_json_with_another_content_type_is_still_read_as_json(client):
    r = client.post("/recommend", content=b'{"user_id": "u1", "k": 3}',
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    r = client.post("/recommend", content=b'{"user_id": ', headers={"Content-Type": "text/plain"})
    assert r.status_code == 400


def _new_log_lines(server, before: int, wait_for: str) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        lines = server.log_path.read_text().splitlines()[before:]
        if any(wait_for in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_a_client_error_is_one_info_line_without_traceback(server, client):
    server.log.flush()
    before = len(server.log_path.read_text().splitlines())
    r = client.post("/recommend", json={"user_id": "u1", "k": 0})
    assert r.status_code == 400
    lines = _new_log_lines(server, before, "400 POST /recommend")
    reason = [line for line in lines if "400 POST /recommend" in line]
    assert len(reason) == 1, lines
    assert "[INFO]" in reason[0] and "k: Input should be greater than or equal to 1" in reason[0]
    assert not any("[ERROR]" in line or "Traceback" in line for line in lines), lines


def test_status_says_what_is_served(server):
    r = httpx.get(f"{server.url}/status", timeout=10)
    assert r.status_code == 200
    status = r.json()
    assert status["ready"] is True and status["waiting_for"] is None
    assert set(status["models"]) == {"champion"}
    assert status["model_source"]["ok"] is True
    assert status["model_source"]["where"].startswith("directory ")
    assert status["event_store"]["ok"] is True
    assert status["exposure_writer"]["alive"] is True


@pytest.mark.parametrize("price", [0, -1.5])
def test_a_price_that_is_not_positive_is_a_400_naming_it(client, price):
    r = client.post("/push_targets", json={"item_id": "i0", "item_price": price})
    assert r.status_code == 400, r.text
    assert r.json()["detail"][0]["loc"] == ["item_price"]
