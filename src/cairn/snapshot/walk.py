"""Walking a snapshot's trees: every node with its absolute path."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from cairn.core.ids import ChunkId
from cairn.format.pack import BlobKind
from cairn.format.tree import Node, decode_tree
from cairn.snapshot.protocols import BlobLoader


def load_tree(loader: BlobLoader, tree_id: ChunkId) -> list[Node]:
    return decode_tree(loader.fetch_blob(BlobKind.TREE, tree_id))


def walk(
    loader: BlobLoader,
    tree_id: ChunkId,
    prefix: bytes = b"",
    descend: Callable[[bytes, Node], bool] | None = None,
) -> Iterator[tuple[bytes, Node]]:
    """Yield (absolute path, node) in pre-order, sorted by name.

    `descend(path, node)` decides whether to enter a directory (all of them by default).
    """
    for node in load_tree(loader, tree_id):
        path = prefix + b"/" + node.name
        yield path, node
        if (
            node.type == "dir"
            and node.subtree is not None
            and (descend is None or descend(path, node))
        ):
            yield from walk(loader, node.subtree, path, descend)


def diff_trees(
    loader: BlobLoader, a: ChunkId | None, b: ChunkId | None, prefix: bytes = b""
) -> Iterator[tuple[str, bytes, Node]]:
    """Yield ("+", path, node), ("-", ...), ("M", ...) for changes from tree `a` to tree `b`.

    Identical subtrees (same ID) are skipped without loading them.
    """
    if a == b:
        return
    old = {n.name: n for n in load_tree(loader, a)} if a is not None else {}
    new = {n.name: n for n in load_tree(loader, b)} if b is not None else {}
    for name in sorted(old.keys() | new.keys()):
        path = prefix + b"/" + name
        before, after = old.get(name), new.get(name)
        if before is None and after is not None:
            yield "+", path, after
            yield from _subtree_all("+", loader, after, path)
        elif after is None and before is not None:
            yield "-", path, before
            yield from _subtree_all("-", loader, before, path)
        elif before is not None and after is not None:
            yield from _diff_node(loader, before, after, path)


def _subtree_all(
    sign: str, loader: BlobLoader, node: Node, path: bytes
) -> Iterator[tuple[str, bytes, Node]]:
    if node.type == "dir" and node.subtree is not None:
        for sub_path, sub in walk(loader, node.subtree, path):
            yield sign, sub_path, sub


def _diff_node(
    loader: BlobLoader, before: Node, after: Node, path: bytes
) -> Iterator[tuple[str, bytes, Node]]:
    if before.type != after.type:
        yield "-", path, before
        yield from _subtree_all("-", loader, before, path)
        yield "+", path, after
        yield from _subtree_all("+", loader, after, path)
        return
    if after.type == "dir":
        if _meta(before) != _meta(after):
            yield "M", path, after
        yield from diff_trees(loader, before.subtree, after.subtree, path)
    elif (
        before.content != after.content
        or before.target != after.target
        or _meta(before) != _meta(after)
    ):
        yield "M", path, after


def _meta(n: Node) -> tuple[object, ...]:
    return (n.mode, n.uid, n.gid, n.mtime, n.size, tuple(n.xattrs))


def find_node(loader: BlobLoader, tree_id: ChunkId, path: bytes) -> Node | None:
    """The node at absolute `path` inside the snapshot whose root tree is `tree_id`, or None
    when the snapshot does not hold it (b"/" is the root itself, which has no node: None)."""
    node: Node | None = None
    tree: ChunkId | None = tree_id
    for part in (p for p in path.split(b"/") if p):
        if tree is None:
            return None
        node = next((n for n in load_tree(loader, tree) if n.name == part), None)
        if node is None:
            return None
        tree = node.subtree
    return node
