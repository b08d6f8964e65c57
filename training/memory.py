"""Peak resident memory of a block of code, sampled (ru_maxrss only ever grows per process)."""

from __future__ import annotations

import threading

import psutil


class PeakMemory:
    """``with PeakMemory() as m: ...`` then ``m.peak_mb`` (process RSS peak inside the block) and
    ``m.delta_mb`` (peak minus RSS at entry). Sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss_mb(self) -> float:
        return self.process.memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> PeakMemory:
        self.start_mb = self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb
