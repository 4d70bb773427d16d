"""A progress line for terminals."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from cairn.core.progress import SilentProgress
from cairn.core.units import format_size


class TerminalProgress(SilentProgress):
    """A status line on a terminal, redrawn five times a second; warnings printed as they come."""

    def __init__(self, verb: str, out: TextIO = sys.stderr, interval: float = 0.2) -> None:
        super().__init__()
        self._verb = verb
        self._out = out
        self._interval = interval
        self._files = 0
        self._bytes = 0
        self._total_files = 0
        self._total_bytes = 0
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()

    def add_total(self, files: int, size: int) -> None:
        with self._lock:
            self._total_files += files
            self._total_bytes += size

    def file_done(self, size: int) -> None:
        with self._lock:
            self._files += 1

    def bytes_done(self, size: int) -> None:
        with self._lock:
            self._bytes += size

    def warn(self, path: bytes, message: str) -> None:
        super().warn(path, message)
        with self._lock:
            self._out.write(f"\r\x1b[Kwarning: {path.decode(errors='replace')}: {message}\n")

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = self._bytes / elapsed
        pct = f" {100 * self._bytes / self._total_bytes:5.1f}%" if self._total_bytes else ""
        return (
            f"{self._verb}{pct}  {self._files} files  {format_size(self._bytes)}"
            f"  {format_size(rate)}/s  {elapsed:.0f}s"
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                self._out.write("\r\x1b[K" + self._line())
                self._out.flush()

    def finish(self) -> None:
        self._stop.set()
        self._thread.join()
        self._out.write("\r\x1b[K")
        self._out.flush()
