"""Damaged files: what a restore or dump could not give back, and where in each file.

A chunk that no index lists (a repair removed it) or whose bytes fail verification takes with it
the byte ranges it fills in every file that holds it. Those files are never given back under their
own names with wrong bytes: `restore` writes every intact file and lists the damaged ones with
their lost ranges, `dump` refuses to stream one. The caller raises `DamagedFiles` once it has
reported its result, so the command ends with its own code (docs/errors.md, CAIRN-E023).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cairn.core.errors import CairnError

Range = tuple[int, int]
"""A half-open byte range [start, end) of a file."""


@dataclass(slots=True)
class DamagedFile:
    """One file (or folder, whose listing was lost) and the byte ranges it lost."""

    path: bytes
    size: int
    ranges: list[Range] = field(default_factory=list)
    saved_as: bytes | None = None
    """Where a restore put the intact parts (the lost ranges zeroed), if anywhere."""
    folder: bool = False

    def add(self, start: int, end: int) -> None:
        """Record a lost range, merged with a neighbour it touches."""
        self.ranges.append((start, end))
        self.ranges.sort()
        merged: list[Range] = []
        for lo, hi in self.ranges:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        self.ranges = merged

    @property
    def lost(self) -> int:
        return sum(hi - lo for lo, hi in self.ranges)


def describe(damaged: DamagedFile) -> str:
    """One line for humans: the path, what was lost, and where the intact parts are."""
    path = damaged.path.decode(errors="backslashreplace")
    if damaged.folder:
        return f"{path}: the folder's listing is damaged; nothing below it was restored"
    ranges = ", ".join(f"{lo}-{hi}" for lo, hi in damaged.ranges)
    line = f"{path}: {damaged.lost} of {damaged.size} bytes lost (bytes {ranges})"
    if damaged.saved_as is not None:
        line += f"; intact parts in {damaged.saved_as.decode(errors='backslashreplace')}"
    return line


class DamagedFiles(CairnError):
    """Some files could not be given back whole: the repository lost data they hold."""

    def __init__(self, damaged: list[DamagedFile]) -> None:
        count = len(damaged)
        super().__init__(
            f"{count} file(s) damaged in the repository, not given back under their names: "
            + "; ".join(describe(d) for d in damaged[:3])
            + (" ..." if count > 3 else "")
        )
        self.damaged = damaged
