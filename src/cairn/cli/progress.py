"""A progress line for terminals, fitted to the terminal's width."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from cairn.core.clock import SYSTEM_CLOCK
from cairn.core.pathnames import escape_path
from cairn.core.progress import SilentProgress
from cairn.core.units import format_duration, format_size


def terminal_columns(out: TextIO) -> int:
    """The width of the terminal `out` writes to (COLUMNS wins, as in other tools); else the
    width shutil finds for stdout, or 80."""
    try:
        return int(os.environ.get("COLUMNS") or 0) or os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size((80, 24)).columns


class TerminalProgress(SilentProgress):
    """A status line on a terminal, redrawn five times a second; warnings printed as they come.

    Percentage, total and time left appear once the total is known (restore plans it first;
    backup counts it in a scanner thread while it works). The line never passes the terminal's
    width: the least important fields are left off first, so a narrow terminal shows no wrapped
    lines."""

    def __init__(
        self,
        verb: str,
        out: TextIO = sys.stderr,
        interval: float = 0.2,
        *,
        columns: Callable[[], int] | None = None,
        clock: Callable[[], float] = SYSTEM_CLOCK.monotonic,
    ) -> None:
        super().__init__()
        self._verb = verb
        self._out = out
        self._interval = interval
        self._columns = columns or (lambda: terminal_columns(out))
        self._clock = clock
        self._files = 0
        self._bytes = 0
        self._total_files = 0
        self._total_bytes = 0
        self._start = clock()
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
            self._out.write(f"\r\x1b[Kwarning: {escape_path(path)}: {message}\n")

    def line(self) -> str:
        """The status line as it is drawn now (fitted to the terminal)."""
        with self._lock:
            return _fit(self._fields(), self._columns() - 1)

    def _fields(self) -> list[str]:
        """The line's fields, most important first."""
        elapsed = max(self._clock() - self._start, 1e-6)
        rate = self._bytes / elapsed
        done = format_size(self._bytes)
        if not self._total_bytes:
            return [
                self._verb,
                f"{self._files} files",
                done,
                f"{format_size(rate)}/s",
                format_duration(elapsed),
            ]
        fraction = min(self._bytes / self._total_bytes, 1.0)
        left = (self._total_bytes - self._bytes) / rate if rate > 0 else None
        return [
            f"{self._verb} {100 * fraction:5.1f}%",
            f"ETA {format_duration(max(left, 0))}" if left is not None else "ETA ?",
            f"{done} of {format_size(self._total_bytes)}",
            f"{self._files}/{self._total_files} files",
            f"{format_size(rate)}/s",
            format_duration(elapsed),
        ]

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            text = self.line()
            with self._lock:
                self._out.write("\r\x1b[K" + text)
                self._out.flush()

    def finish(self) -> None:
        self._stop.set()
        self._thread.join()
        self._out.write("\r\x1b[K")
        self._out.flush()


def _fit(fields: list[str], width: int) -> str:
    """As many fields as fit in `width`, in order; the first is cut if even it does not fit."""
    line = fields[0][: max(width, 0)]
    for field in fields[1:]:
        if len(line) + 2 + len(field) > width:
            break
        line += "  " + field
    return line
