"""A `bentoml serve` of the service as a child process on 127.0.0.1: start, wait until ready,
stop gracefully or kill -9. Used by the tests, the end-to-end test and bench/serving.py.

BentoML runs the service worker in a session of its own, so signalling the server's process group
alone would orphan it: stopping goes through the process tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil

SERVICE = "socialrec.serving.service:SocialRec"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bentoml_command(port: int) -> list[str]:
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    return [bentoml, "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]


class ServerProcess:
    """Starts ``command`` (default: ``bentoml serve`` of the service on a free port; ``{port}``
    in a custom command is replaced) with ``env`` added to this process's environment, logs to
    ``log_path`` and waits for ``READY_PATH`` to answer 200."""

    READY_PATH = "/readyz"

    def __init__(self, env: dict[str, str], log_path: Path, timeout: float = 120.0,
                 command: Sequence[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = log_path.open("w")
        argv = [a.replace("{port}", str(self.port)) for a in command] if command else \
            bentoml_command(self.port)
        inherited = dict(os.environ)
        if "MLFLOW_TRACKING_URI" in env and "MLFLOW_REGISTRY_URI" not in env:
            # mlflow.set_registry_uri() in this process exports its own registry; a server
            # given a tracking URI reads that URI's registry, not whatever this process used last
            inherited.pop("MLFLOW_REGISTRY_URI", None)
        full_env = {**inherited, "MLFLOW_DISABLE_TELEMETRY": "true",
                    "BENTOML_DO_NOT_TRACK": "true", **env}
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}{self.READY_PATH}", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        tail = self.tail()  # before stop() closes the log
        self.stop()
        raise TimeoutError(f"server not ready after {timeout} s:\n{tail}")

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def processes(self) -> list[psutil.Process]:
        """The server process and all its descendants."""
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the server and its workers at once: nothing gets to clean up."""
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=15)
        self.proc.wait(timeout=15)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the process group (a graceful shutdown), SIGKILL to what is left."""
        procs = self.processes()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(alive, timeout=15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log.close()
