"""Paths inside a snapshot: finding a node by its absolute path, and restic's `ID:/sub/folder`."""

from __future__ import annotations

import os

from cairn.cli.errors import UsageError
from cairn.core.ids import ChunkId
from cairn.format.tree import Node
from cairn.repository.repository import Repository
from cairn.snapshot.walk import load_tree


def split_ref(ref: str) -> tuple[str, str | None]:
    """`ID:/sub/folder` into the snapshot reference and the folder; a plain ID has none."""
    snapshot, colon, folder = ref.partition(":")
    if not colon:
        return ref, None
    if not folder.startswith("/"):
        raise UsageError(f"{ref}: give the folder as an absolute path, as in ID:/home/user")
    return snapshot, folder


def lookup(repo: Repository, tree_id: ChunkId, path: bytes) -> Node | None:
    """The node at an absolute path inside a snapshot; None for the root itself."""
    parts = [p for p in path.split(b"/") if p]
    tree: ChunkId | None = tree_id
    node: Node | None = None
    for part in parts:
        if tree is None:
            raise UsageError(f"{os.fsdecode(path)} is not in the snapshot")
        found = [n for n in load_tree(repo, tree) if n.name == part]
        if not found:
            raise UsageError(f"{os.fsdecode(path)} is not in the snapshot")
        node = found[0]
        tree = node.subtree
    return node


def folder_tree(repo: Repository, tree_id: ChunkId, path: str) -> ChunkId:
    """The tree of the folder at `path` in a snapshot (a usage error when it is no folder)."""
    node = lookup(repo, tree_id, os.fsencode(path))
    if node is None:
        return tree_id
    if node.type != "dir" or node.subtree is None:
        raise UsageError(f"{path} is a {node.type} in the snapshot, not a folder")
    return node.subtree
