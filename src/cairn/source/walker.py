"""Walking the paths to back up, in post-order, applying excludes.

The walker yields events: a ``FileEvent`` or ``EntryEvent`` for each child of a folder, then a
``DirDoneEvent`` for the folder itself once all its children were yielded, so a caller can build
trees bottom-up. Problems with one entry become an ``ErrorEvent``; the walk goes on.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from cairn.core.patterns import PatternSet
from cairn.format.tree import Node
from cairn.source.metadata import node_from_stat, read_xattrs

CACHEDIR_TAG = b"CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


@dataclass(slots=True)
class FileEvent:
    """A regular file to read; `node` has its metadata, contents still empty."""

    path: bytes
    node: Node


@dataclass(slots=True)
class EntryEvent:
    """A symlink, device, fifo or socket: metadata only."""

    path: bytes
    node: Node


@dataclass(slots=True)
class DirDoneEvent:
    """A folder whose children have all been yielded."""

    path: bytes
    node: Node
    child_names: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class ErrorEvent:
    """An entry that could not be read; it is left out of the snapshot."""

    path: bytes
    message: str


Event = FileEvent | EntryEvent | DirDoneEvent | ErrorEvent


@dataclass
class Walker:
    """Walks source paths; configured with the backup's exclusion rules."""

    excludes: PatternSet | None = None
    exclude_if_present: list[bytes] = field(default_factory=list)
    exclude_caches: bool = False
    one_file_system: bool = False

    def walk(self, root: bytes) -> Iterator[Event]:
        """Events for `root` (absolute) and everything below it, in post-order."""
        try:
            st = os.lstat(root)
        except OSError as exc:
            yield ErrorEvent(root, _reason(exc))
            return
        yield from self._entry(root, os.path.basename(root) or b"/", st, st.st_dev)

    def _entry(
        self, path: bytes, name: bytes, st: os.stat_result, root_dev: int
    ) -> Iterator[Event]:
        try:
            node = self._node(path, name, st)
        except OSError as exc:
            yield ErrorEvent(path, _reason(exc))
            return
        if node.type == "file":
            yield FileEvent(path, node)
        elif node.type == "dir":
            yield from self._dir(path, node, st, root_dev)
        else:
            yield EntryEvent(path, node)

    def _node(self, path: bytes, name: bytes, st: os.stat_result) -> Node:
        target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else b""
        return node_from_stat(name, st, target=target, xattrs=read_xattrs(path))

    def _dir(self, path: bytes, node: Node, st: os.stat_result, root_dev: int) -> Iterator[Event]:
        names: list[bytes] = []
        if not (self.one_file_system and st.st_dev != root_dev):
            try:
                with os.scandir(path) as it:
                    entries = sorted((e.name, e) for e in it)
            except OSError as exc:
                yield ErrorEvent(path, _reason(exc))
                entries = []
            keep_only = self._marker_exclusion(path, [n for n, _ in entries])
            for child_name, entry in entries:
                if keep_only is not None and child_name not in keep_only:
                    continue
                child = _join(path, child_name)
                if self.excludes is not None and self.excludes.matches(child):
                    continue
                try:
                    child_st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    yield ErrorEvent(child, _reason(exc))
                    continue
                names.append(child_name)
                yield from self._entry(child, child_name, child_st, root_dev)
        yield DirDoneEvent(path, node, names)

    def _marker_exclusion(self, path: bytes, names: list[bytes]) -> set[bytes] | None:
        """None, or the only children kept because a marker excludes the folder's contents.

        The folder itself is kept (empty), so a restore shows where the excluded data was; a
        cache folder keeps its CACHEDIR.TAG, so the tag survives a restore.
        """
        if any(marker in names for marker in self.exclude_if_present):
            return set()
        if (
            self.exclude_caches
            and CACHEDIR_TAG in names
            and _is_cache_tag(_join(path, CACHEDIR_TAG))
        ):
            return {CACHEDIR_TAG}
        return None


def _is_cache_tag(path: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + name if parent.endswith(b"/") else parent + b"/" + name


def _reason(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"


def ancestor_nodes(path: bytes) -> list[tuple[bytes, Node]]:
    """Nodes of the folders above `path` (not `/`, not `path`), top first: the snapshot's frame."""
    out: list[tuple[bytes, Node]] = []
    parent = os.path.dirname(path)
    while parent not in (b"/", b""):
        st = os.lstat(parent)
        out.append((parent, node_from_stat(os.path.basename(parent), st)))
        parent = os.path.dirname(parent)
    return out[::-1]
