"""What the service adds around BentoML's HTTP handling: JSON bodies only, ``GET /status``, and
one log line per client error.

* :class:`JsonBodies`: every endpoint reads a JSON body (the OpenAPI schema at /docs.json says
  ``application/json`` and nothing else). BentoML would parse form and multipart bodies itself, and
  a multipart body it cannot parse (``Content-Type: multipart/form-data`` without a boundary)
  becomes a 500; pickled bodies get a 415 with a traceback in the log. Those media types answer
  415 here, before BentoML reads the body. Any other (or no) Content-Type is read as JSON, as
  BentoML does, so a malformed body is a 400 naming the problem.
* :class:`StatusRoute`: ``GET /status``, the details BentoML's ``/readyz`` cannot carry (it
  answers 503 with a fixed sentence): what is served, from where, whether the model source and
  the event store answer and since when, the exposure writer's counters. 200 when ready, else 503.
* :class:`ClientErrorsOnOneLine`: BentoML logs every request that failed validation as ERROR
  "Exception on /recommend" with the pydantic traceback; a client's mistake becomes one INFO line
  (status, method, path, what was wrong), so the ERRORs left are the service's own.

Pure ASGI (no per-request task or body copy): a JSON request pays one header lookup.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("socialrec.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Media types BentoML would parse as something other than JSON (_bentoml_impl/serde.py).
NOT_JSON = ("multipart/", "application/x-www-form-urlencoded", "application/vnd.bentoml+pickle")
#: The logger of BentoML's ``log_exception`` (bentoml/_internal/server/http_app.py).
BENTOML_EXCEPTION_LOGGER = "bentoml._internal.server.http_app"


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


class JsonBodies:
    """415 for a POST whose body BentoML would not read as JSON (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            given = _header(scope, b"content-type")
            media = given.split(";")[0].strip().lower()
            if media.startswith(NOT_JSON):
                await send_json(send, 415, {
                    "error": f"unsupported Content-Type {given!r}: the body must be JSON",
                    "field": "Content-Type", "expected": "application/json"})
                return
        await self.app(scope, receive, send)


def service_status() -> tuple[bool, dict[str, Any]]:
    """(ready, details) from the ``status()`` of this worker's service instance."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        service = bentoml.get_current_service()
    except BentoMLException:  # not instantiated yet
        return False, {"ready": False, "waiting_for": "the service to start"}
    ready, details = service.status()
    return bool(ready), dict(details)


class StatusRoute:
    """``GET /status``: the service's readiness details, 200 when ready, else 503."""

    def __init__(self, app: ASGIApp, path: str = "/status") -> None:
        self.app, self.path = app, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == self.path and \
                scope.get("method") in ("GET", "HEAD"):
            ready, details = service_status()
            await send_json(send, 200 if ready else 503, details)
            return
        await self.app(scope, receive, send)


def add_http_edges(service: Any) -> None:
    """Put :class:`JsonBodies` and :class:`StatusRoute` on a ``bentoml.Service``."""
    service.add_asgi_middleware(JsonBodies)
    service.add_asgi_middleware(StatusRoute)


def client_error_status(exc: BaseException | None) -> int | None:
    """The 4xx status BentoML answers ``exc`` with, or None when it is the server's error."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException

    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, BentoMLException):
        status = int(exc.error_code)
    elif isinstance(exc, HTTPException):
        status = exc.status_code
    else:
        return None
    return status if 400 <= status < 500 else None


def _summary(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                    for e in exc.errors(include_url=False, include_input=False)[:3]]
        more = exc.error_count() - len(problems)
        return "; ".join(problems) + (f" (+{more} more)" if more > 0 else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class ClientErrorsOnOneLine(logging.Filter):
    """Rewrite BentoML's ``Exception on <path> [<method>]`` ERROR with a traceback into one INFO
    line when the exception is the client's (a 4xx): ``400 POST /recommend: k: Input should be
    greater than or equal to 1``. Server errors keep their ERROR and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = client_error_status(exc)
        if status is None or exc is None:
            return True
        path, method = (record.args if isinstance(record.args, tuple) and len(record.args) == 2
                        else ("?", "?"))
        record.msg, record.args = "%s %s %s: %s", (status, method, path, _summary(exc))
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info, record.exc_text = None, None
        return True


def log_client_errors_on_one_line() -> None:
    """Install :class:`ClientErrorsOnOneLine` (once) on BentoML's exception logger."""
    logger = logging.getLogger(BENTOML_EXCEPTION_LOGGER)
    if not any(isinstance(f, ClientErrorsOnOneLine) for f in logger.filters):
        logger.addFilter(ClientErrorsOnOneLine())
