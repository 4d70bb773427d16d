"""`-v/--verbose`: more detail where a command has more to say (docs/design.md 11).

At `-v`, `backup` lists each file it read and stored (new or changed; unchanged files the files
cache skipped are not listed) and `restore` each file it restored or found already right. They
report through the Progress protocol (`file_action`); this wraps the display the command chose
and prints those lines on stdout, whatever that display is (a terminal's line, or silence).
"""

from __future__ import annotations

import threading

from cairn.cli.output import Output, show_path
from cairn.core.progress import Progress


class VerboseProgress:
    """Passes everything to `inner`, and prints each file action as one line."""

    def __init__(self, inner: Progress, output: Output) -> None:
        self._inner = inner
        self._output = output
        self._lock = threading.Lock()  # archiver workers report from several threads

    def add_total(self, files: int, size: int) -> None:
        self._inner.add_total(files, size)

    def file_done(self, size: int) -> None:
        self._inner.file_done(size)

    def bytes_done(self, size: int) -> None:
        self._inner.bytes_done(size)

    def warn(self, path: bytes, message: str) -> None:
        self._inner.warn(path, message)

    def file_action(self, path: bytes, action: str) -> None:
        self._inner.file_action(path, action)
        with self._lock:
            self._output.text(f"{action:<9}{show_path(path)}")

    def finish(self) -> None:
        self._inner.finish()

    @property
    def warnings(self) -> list[tuple[bytes, str]]:
        """The inner display's warnings: the archiver reads them from its Progress."""
        return list(getattr(self._inner, "warnings", []))
