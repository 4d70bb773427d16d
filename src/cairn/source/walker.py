"""Walking the paths to back up, in post-order, applying excludes.

The walker yields events: a ``FileEvent`` or ``EntryEvent`` for each child of a folder, then a
``DirDoneEvent`` for the folder itself once all its children were yielded, so a caller can build
trees bottom-up. Problems with one entry become an ``ErrorEvent``; the walk goes on.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Generator, Iterator
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
_Child = tuple[bytes, "os.DirEntry[bytes] | None"]
"""A child's name, and its directory entry when the folder was listed (None: stat it by path)."""


@dataclass
class Walker:
    """Walks source paths; configured with the backup's exclusion rules."""

    excludes: PatternSet | None = None
    exclude_if_present: list[bytes] = field(default_factory=list)
    exclude_caches: bool = False
    one_file_system: bool = False
    metadata: bool = True
    """False: nodes without extended attributes and link targets (for counting only)."""
    named: frozenset[bytes] = frozenset()
    """Every path the user named (absolute, normalised). A named path is always backed up whole:
    `one_file_system` stops descent only into *other* file systems below it, and the walk passes
    through an unnamed mount point to reach a named path below it."""

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
        if not self.metadata:
            return node_from_stat(name, st)
        target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else b""
        return node_from_stat(name, st, target=target, xattrs=read_xattrs(path))

    def _dir(self, path: bytes, node: Node, st: os.stat_result, root_dev: int) -> Iterator[Event]:
        if path in self.named:
            root_dev = st.st_dev  # a named path is backed up whatever file system it is on
        if self.one_file_system and st.st_dev != root_dev:
            entries = self._toward_named(path)
        else:
            entries = yield from self._listing(path)
        names: list[bytes] = []
        for child_name, entry in entries:
            child = _join(path, child_name)
            if self.excludes is not None and self.excludes.matches(child):
                continue
            try:
                child_st = entry.stat(follow_symlinks=False) if entry else os.lstat(child)
            except OSError as exc:
                yield ErrorEvent(child, _reason(exc))
                continue
            names.append(child_name)
            yield from self._entry(child, child_name, child_st, root_dev)
        yield DirDoneEvent(path, node, names)

    def _listing(self, path: bytes) -> Generator[Event, None, list[_Child]]:
        """The folder's children, sorted, less those a marker file excludes."""
        try:
            with os.scandir(path) as it:
                entries: list[_Child] = sorted((e.name, e) for e in it)
        except OSError as exc:
            yield ErrorEvent(path, _reason(exc))
            entries = []
        keep_only = self._marker_exclusion(path, [n for n, _ in entries])
        if keep_only is None:
            return entries
        return [(n, e) for n, e in entries if n in keep_only]

    def _toward_named(self, path: bytes) -> list[_Child]:
        """Below a mount point `-x` does not enter: only the children that lead to named paths."""
        prefix = path.rstrip(b"/") + b"/"
        below = {n[len(prefix) :].split(b"/", 1)[0] for n in self.named if n.startswith(prefix)}
        return [(name, None) for name in sorted(below)]

    def _marker_exclusion(self, path: bytes, names: list[bytes]) -> set[bytes] | None:
        """None, or the only children kept because a marker excludes the folder's contents.

        The folder itself is kept with its marker files (as restic does), so a restore shows where
        the excluded data was and the next backup of the restored folder excludes it again; a
        cache folder keeps its CACHEDIR.TAG for the same reason.
        """
        markers = {marker for marker in self.exclude_if_present if marker in names}
        if markers:
            return markers
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
