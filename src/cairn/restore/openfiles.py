"""The files a restore is writing: created on their first chunk, finished after their last.

Blobs arrive pack by pack, so a file's chunks can arrive in any order and a file stays open until
its last chunk is written. At most `limit` descriptors are held: the least recently used file is
closed and reopened (without truncating) when its next chunk comes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cairn.format.tree import Node
from cairn.restore.fswriter import Components, SafeTarget

FinishFile = Callable[[Components, Node, int], None]


@dataclass(slots=True)
class _File:
    comps: Components
    node: Node
    replace: bool
    remaining: int
    written: int = 0
    created: bool = False


class OpenFiles:
    """Files being restored, by number; calls `on_finished` when a file is complete."""

    def __init__(self, target: SafeTarget, on_finished: FinishFile, limit: int = 256) -> None:
        self._target = target
        self._on_finished = on_finished
        self._limit = limit
        self._files: list[_File] = []
        self._fds: OrderedDict[int, int] = OrderedDict()
        self.bytes_written = 0

    def add(self, comps: Components, node: Node, *, replace: bool) -> int:
        """Register a file to restore; an empty one is created and finished at once."""
        number = len(self._files)
        self._files.append(_File(comps, node, replace, remaining=len(node.content)))
        if not node.content:
            self._fd(number)
            self._finish(number)
        return number

    def write(self, number: int, offset: int, data: bytes) -> None:
        file = self._files[number]
        self._target.write_chunk(self._fd(number), offset, data)
        file.written += len(data)
        self.bytes_written += len(data)
        file.remaining -= 1
        if file.remaining == 0:
            self._finish(number)

    def close_all(self) -> None:
        """Close what is still open (after an error: those files stay incomplete)."""
        while self._fds:
            _, fd = self._fds.popitem()
            self._target.close_file(fd)

    def _fd(self, number: int) -> int:
        fd = self._fds.get(number)
        if fd is not None:
            self._fds.move_to_end(number)
            return fd
        file = self._files[number]
        if file.created:
            fd = self._target.reopen_file(file.comps)
        else:
            if file.replace:
                self._target.remove_if_exists(file.comps)
            fd = self._target.create_file(file.comps, file.node.size)
            file.created = True
        self._fds[number] = fd
        if len(self._fds) > self._limit:
            _, old = self._fds.popitem(last=False)
            self._target.close_file(old)
        return fd

    def _finish(self, number: int) -> None:
        file = self._files[number]
        fd = self._fds.pop(number, None)
        if fd is None:
            fd = self._target.reopen_file(file.comps)
        self._target.finish_file(fd, file.node.size)
        self._on_finished(file.comps, file.node, file.written)
