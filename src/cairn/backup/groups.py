"""Groups of files saved as one task, so that a backup to a server asks about all their chunks in
one query (design 14.11) instead of one query per file, and so that the walking thread hands work
to the pool once per group rather than once per file (with many small files the per-file
hand-off, a pool task and an in-flight slot each, cost the walk as much as its system calls).

Only small files (one chunk each) and files the files cache knows (their chunk IDs are known
without reading them) are grouped; a group closes at GROUP_FILES files, GROUP_BYTES bytes of
small files to read, or GROUP_IDS chunk IDs to ask about, and when the walk of a root ends. Each
file still gets a future of its own, so the tree builder waits for its files as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from cairn.format.tree import Node

NodeFuture = Future[Node | None]
Files = list[tuple[bytes, Node]]

GROUP_FILES = 64
GROUP_BYTES = 4 << 20
GROUP_IDS = 1024
"""Chunk IDs one group asks about at most: the bounded index's answers must outlive the group."""


class FileGroups:
    """Collects files into groups and submits each group to the worker pool as one task.
    Used by the walking thread only."""

    def __init__(self, save: Callable[[Files], list[Node | None]], small: int) -> None:
        self._save = save
        self._small = small
        self._files: list[tuple[bytes, Node, NodeFuture]] = []
        self._bytes = 0
        self._ids = 0

    def add(
        self,
        path: bytes,
        node: Node,
        ids: int,
        workers: ThreadPoolExecutor,
        slots: threading.BoundedSemaphore,
    ) -> NodeFuture:
        """Add a file that brings `ids` chunk IDs; its node's future."""
        if self._ids + ids > GROUP_IDS:
            self.submit(workers, slots)
        future: NodeFuture = Future()
        self._files.append((path, node, future))
        self._ids += ids
        self._bytes += node.size if node.size < self._small else 0
        if len(self._files) >= GROUP_FILES or self._bytes >= GROUP_BYTES:
            self.submit(workers, slots)
        return future

    def submit(self, workers: ThreadPoolExecutor, slots: threading.BoundedSemaphore) -> None:
        """Send the open group (if any) to the workers; it takes one of the in-flight slots."""
        group, self._files = self._files, []
        self._bytes = self._ids = 0
        if not group:
            return
        slots.acquire()
        task = workers.submit(self._save, [(path, node) for path, node, _ in group])
        task.add_done_callback(lambda _done: slots.release())
        task.add_done_callback(lambda done: _settle(done, [f for _, _, f in group]))


def _settle(done: Future[list[Node | None]], futures: list[NodeFuture]) -> None:
    """Pass a group's outcome on to the future of each of its files."""
    if done.cancelled():  # the run is being abandoned
        for future in futures:
            future.cancel()
        return
    error = done.exception()
    if error is not None:
        for future in futures:
            future.set_exception(error)
        return
    for future, node in zip(futures, done.result(), strict=True):
        future.set_result(node)
