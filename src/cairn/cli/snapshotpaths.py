"""Paths inside a snapshot as the command line gives them: absolute, in the escaped form every
command prints (cairn.core.pathnames), turned back into the bytes the trees hold.

Every command that takes a path inside a snapshot (`ls`, `dump`, `restore --include/--exclude`,
`ID:/sub`) goes through here, so what one command prints another accepts.
"""

from __future__ import annotations

import os

from cairn.core.errors import CairnError
from cairn.core.pathnames import unescape_path


class SnapshotPathError(CairnError):
    """A path inside a snapshot that is relative, or that the snapshot does not hold."""


def snapshot_path(text: str) -> bytes:
    """An absolute path inside a snapshot, normalised, as bytes; b"/" for the root."""
    raw = unescape_path(text)
    if not raw.startswith(b"/"):
        raise SnapshotPathError(
            f"{text!r} is a relative path; give the absolute path inside the snapshot, "
            "as `cairn ls SNAPSHOT` prints it"
        )
    return os.path.normpath(raw).replace(b"//", b"/")


def snapshot_patterns(texts: list[str]) -> list[str]:
    """Include/exclude patterns given in the escaped form, as text PatternSet.compile takes
    (its bytes recovered by os.fsencode)."""
    return [os.fsdecode(unescape_path(t)) for t in texts]
