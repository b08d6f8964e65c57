"""Whether the service's dependencies answer: the model source and the event store.

An outage is logged once, as one WARNING line (what failed and what the service does meanwhile),
and again only when its error changes; the recovery as one INFO line. No traceback: a registry or
a database that does not answer is an operations fact, not a bug in this code, and a traceback
every poll would bury the log. ``GET /status`` shows every dependency's state (serving/http.py).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("socialrec.serving")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return message if len(message) <= limit else message[: limit - 1] + "…"


class Dependency:
    """One dependency's state: ``ok`` (None until first tried), the last error, since when."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ok: bool | None = None
        self.error: str | None = None
        self.since: datetime | None = None
        self._lock = threading.Lock()

    def up(self, detail: str = "") -> None:
        with self._lock:
            was = self.ok
            self.ok, self.error = True, None
            if was is not True:
                self.since = datetime.now(UTC)
        if was is False:
            log.info("%s reachable again%s", self.name, f"; {detail}" if detail else "")

    def down(self, exc: BaseException, meanwhile: str) -> None:
        """Record a failure; ``meanwhile`` says what the service does until it is back."""
        error = one_line(exc)
        with self._lock:
            changed = self.ok is not False or self.error != error
            if self.ok is not False:
                self.since = datetime.now(UTC)
            self.ok, self.error = False, error
        if changed:
            log.warning("%s unreachable: %s; %s", self.name, error, meanwhile)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"ok": self.ok, "error": self.error,
                    "since": self.since.isoformat() if self.since else None}
