"""Counting what a backup will read, beside it, so its progress line can show a total.

restic does the same: a second walk of the same paths with the same exclusions, on its own
thread, that only sums sizes. It reads no extended attributes or link targets, and it warms the
kernel's caches for the walk that follows it. The total is reported once, when the count is
complete, so a percentage is never shown against a partial total.
"""

from __future__ import annotations

import dataclasses
import threading

from cairn.core.progress import Progress
from cairn.source.walker import FileEvent, Walker


class Scanner:
    """Walks the roots on a daemon thread and reports their files and bytes to `progress`."""

    def __init__(self, walker: Walker, roots: list[bytes], progress: Progress) -> None:
        self._walker = dataclasses.replace(walker, metadata=False)
        self._roots = roots
        self._progress = progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scanner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop counting (the backup ended first); the thread ends at its next entry."""
        self._stop.set()

    def _run(self) -> None:
        total = self.count()
        if total is not None:
            self._progress.add_total(*total)

    def count(self) -> tuple[int, int] | None:
        """(files, bytes) the backup will read, or None if stopped before the end."""
        files = size = 0
        for root in self._roots:
            for event in self._walker.walk(root):
                if self._stop.is_set():
                    return None
                if isinstance(event, FileEvent):
                    files += 1
                    size += event.node.size
        return files, size
