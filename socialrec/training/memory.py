"""Peak resident memory of a block of code, sampled (ru_maxrss only ever grows per process), and
handing memory that tables no longer use back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading

import psutil
import pyarrow as pa


def release_unused_memory() -> None:
    """Return freed memory to the OS: Arrow's pool and glibc's heap keep what was freed for reuse.

    Measured in bench/train_scale.py (100k synthetic users): after the generated tables were
    deleted the process still held 737 MB; Arrow's ``release_unused`` took it to 389 MB and glibc's
    ``malloc_trim`` to 199 MB. Without it a 1M-user fit started from 4.8 GB of dead tables.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()
    libc_name = ctypes.util.find_library("c")
    if libc_name and "libc.so" in libc_name:  # glibc only; other allocators lack malloc_trim
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


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
