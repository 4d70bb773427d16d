"""What the target already holds where a restore would write, compared with the snapshot.

Four states: nothing there (`absent`); the same entry (`match`: a file with the snapshot's
contents, a folder, an identical symlink, fifo or device); the same type with other contents
(`differs`: replaced by the rename of the new file, or recreated, with --overwrite); another type
(`blocked`: a folder where the snapshot has a file, a file or symlink where it has a folder;
removed first with --overwrite). Nothing here follows a symlink or opens a fifo.
"""

from __future__ import annotations

import os
import stat
from typing import Literal

from cairn.format.pack import BlobKind
from cairn.format.tree import Node
from cairn.restore.fswriter import Components, SafeTarget, UnsafePathError
from cairn.restore.protocols import ContentIdentifier

State = Literal["absent", "match", "differs", "blocked"]


def existing_state(
    repo: ContentIdentifier, target: SafeTarget, comps: Components, node: Node
) -> State:
    """absent, match, differs (same type, other contents) or blocked (another type)."""
    try:
        st = target.lstat(comps)
    except (OSError, UnsafePathError):
        return "differs"
    if st is None:
        return "absent"
    if (node.type == "dir") != stat.S_ISDIR(st.st_mode):
        return "blocked"
    if node.type == "dir":
        return "match"
    if node.type == "file":
        return _file_state(repo, target, comps, node, st)
    return "match" if _same_special(target, comps, node, st) else "differs"


def _file_state(
    repo: ContentIdentifier, target: SafeTarget, comps: Components, node: Node, st: os.stat_result
) -> State:
    if not stat.S_ISREG(st.st_mode) or st.st_size != node.size:
        return "differs"
    try:
        fd = target.open_existing(comps)
    except (OSError, UnsafePathError):
        return "differs"
    if fd is None:
        return "absent"
    with os.fdopen(fd, "rb", buffering=0) as stream:
        chunker = repo.chunker()
        ids = [repo.blob_id(BlobKind.DATA, c) for c in chunker.split_file(stream, st.st_size)]
    return "match" if ids == node.content else "differs"


def describe_conflict(target: SafeTarget, comps: Components, node: Node, state: State) -> str:
    """The path in the way, and why when it is of another type."""
    shown = target.show(comps)
    if state != "blocked":
        return shown
    return f"{shown} ({_BLOCKED[node.type == 'dir']})"


_BLOCKED = {
    True: "a file or symlink where the snapshot has a folder",
    False: "a folder where the snapshot has no folder",
}


def _same_special(target: SafeTarget, comps: Components, node: Node, st: os.stat_result) -> bool:
    """An existing symlink, fifo or device identical to the snapshot's: restoring it again is
    no conflict (a second restore into the same folder)."""
    if node.type == "symlink":
        return stat.S_ISLNK(st.st_mode) and target.read_link(comps) == node.target
    if node.type == "fifo":
        return stat.S_ISFIFO(st.st_mode)
    if node.type in ("chardev", "blockdev"):
        kind = stat.S_ISCHR if node.type == "chardev" else stat.S_ISBLK
        return kind(st.st_mode) and st.st_rdev == node.rdev
    return node.type == "socket"  # never restored: nothing to conflict with
