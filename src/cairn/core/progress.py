"""Progress reporting: the protocol long work reports to, and a silent implementation.

The CLI passes in a terminal display (cairn.cli.progress); library code never prints.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What the archiver and restorer report while they work."""

    def add_total(self, files: int, size: int) -> None: ...

    def file_done(self, size: int) -> None: ...

    def bytes_done(self, size: int) -> None: ...

    def warn(self, path: bytes, message: str) -> None: ...

    def file_action(self, path: bytes, action: str) -> None:
        """What was done with one file (backup: "stored" for a file read because it is new or
        changed; restore: "restored" or "verified"), for a verbose listing (`-v`)."""
        ...

    def finish(self) -> None: ...


class SilentProgress:
    """Reports nothing while working, but keeps the warnings."""

    def __init__(self) -> None:
        self.warnings: list[tuple[bytes, str]] = []

    def add_total(self, files: int, size: int) -> None:
        pass

    def file_done(self, size: int) -> None:
        pass

    def bytes_done(self, size: int) -> None:
        pass

    def warn(self, path: bytes, message: str) -> None:
        self.warnings.append((path, message))

    def file_action(self, path: bytes, action: str) -> None:
        pass

    def finish(self) -> None:
        pass
