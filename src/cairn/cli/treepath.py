"""Finding what a path inside a snapshot names: a node for `dump`, a folder's tree for restic's
`ID:/sub/folder`. Paths come in the escaped form every command prints (cli.snapshotpaths)."""

from __future__ import annotations

from cairn.cli.errors import UsageError
from cairn.cli.snapshotpaths import SnapshotPathError, snapshot_path
from cairn.core.ids import ChunkId
from cairn.core.pathnames import escape_path
from cairn.format.tree import Node
from cairn.repository.repository import Repository
from cairn.snapshot.walk import find_node


def split_ref(ref: str) -> tuple[str, str | None]:
    """`ID:/sub/folder` into the snapshot reference and the folder; a plain ID has none."""
    snapshot, colon, folder = ref.partition(":")
    if not colon:
        return ref, None
    if not folder.startswith("/"):
        raise UsageError(f"{ref}: give the folder as an absolute path, as in ID:/home/user")
    return snapshot, folder


def lookup(repo: Repository, tree_id: ChunkId, text: str) -> Node | None:
    """The node at an absolute path inside a snapshot; None for the root itself. A path the
    snapshot does not hold is SnapshotPathError (CAIRN-E019)."""
    path = snapshot_path(text)
    if path == b"/":
        return None
    node = find_node(repo, tree_id, path)
    if node is None:
        raise SnapshotPathError(f"{escape_path(path)} is not in the snapshot")
    return node


def folder_tree(repo: Repository, tree_id: ChunkId, text: str) -> ChunkId:
    """The tree of the folder at `text` in a snapshot (a usage error when it is no folder)."""
    node = lookup(repo, tree_id, text)
    if node is None:
        return tree_id
    if node.type != "dir" or node.subtree is None:
        raise UsageError(f"{text} is a {node.type} in the snapshot, not a folder")
    return node.subtree
