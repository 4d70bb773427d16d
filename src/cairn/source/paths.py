"""The paths a user names for a backup: which can be read, and the folders above each."""

from __future__ import annotations

import os

from cairn.format.tree import Node
from cairn.source.walker import ancestor_nodes

Frames = dict[bytes, list[tuple[bytes, Node]]]
"""Each readable named path, with the nodes of the folders above it (top first)."""


def frame_paths(paths: list[bytes]) -> tuple[Frames, list[tuple[bytes, str]]]:
    """The named paths (made absolute and normalised, sorted) that can be read, with their
    frames; and those that cannot, each with why in words."""
    frames: Frames = {}
    missing: list[tuple[bytes, str]] = []
    for path in sorted({os.path.normpath(os.path.abspath(p)) for p in paths}):
        try:
            os.lstat(path)
            frames[path] = ancestor_nodes(path)
        except OSError as exc:
            missing.append((path, missing_reason(exc)))
    return frames, missing


def missing_reason(exc: OSError) -> str:
    """Why a named path cannot be backed up ("does not exist", "cannot read: permission denied")."""
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    if isinstance(exc, NotADirectoryError):
        return "a part of the path is not a folder"
    return f"cannot read: {(exc.strerror or str(exc)).lower()}"
