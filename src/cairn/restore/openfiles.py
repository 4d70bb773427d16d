"""The files a restore is writing: created on their first chunk, finished after their last.

Blobs arrive pack by pack, so a file's chunks can arrive in any order and a file stays open until
its last chunk is written. At most `limit` descriptors are held: the least recently used file is
closed and reopened (without truncating) when its next chunk comes. Each file is written under its
partial name (fswriter.py) and handed to `on_finished` when its last chunk is in (or known lost);
`discard_unfinished` removes the partial files an interrupted restore leaves.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cairn.core.crashpoints import crashpoint
from cairn.format.tree import Node
from cairn.restore.damage import DamagedFile
from cairn.restore.fswriter import Components, SafeTarget

FinishFile = Callable[[Components, Node, DamagedFile | None], None]
"""Called with a complete partial file: it publishes it (or, when damaged, sets it aside)."""


@dataclass(slots=True)
class _File:
    comps: Components
    node: Node
    remaining: int
    written: int = 0
    created: bool = False
    finished: bool = False
    damage: DamagedFile | None = None


class OpenFiles:
    """Files being restored, by number; calls `on_finished` when a file is complete."""

    def __init__(self, target: SafeTarget, on_finished: FinishFile, limit: int = 256) -> None:
        self._target = target
        self._on_finished = on_finished
        self._limit = limit
        self._files: list[_File] = []
        self._fds: OrderedDict[int, int] = OrderedDict()
        self.bytes_written = 0
        """Bytes written to disk: the holes of sparse files are not counted."""

    def add(self, comps: Components, node: Node) -> int:
        """Register a file to restore; an empty one is created and finished at once."""
        number = len(self._files)
        self._files.append(_File(comps, node, remaining=len(node.content)))
        if not node.content:
            self._fd(number)
            self._finish(number)
        return number

    def write(self, number: int, offset: int, data: bytes) -> None:
        file = self._files[number]
        fd = self._fd(number)
        crashpoint("restore.write")  # tests stop a restore here, mid-file (CAIRN_CRASH_PAUSE)
        try:
            written = self._target.write_chunk(fd, offset, data)
        except OSError as exc:
            raise self._target.error(file.comps, exc) from exc
        file.written += len(data)
        self.bytes_written += written
        self._done_one(number)

    def lose(self, number: int, offset: int, size: int) -> None:
        """A chunk of the file is lost: its range stays a hole, and the file is damaged."""
        file = self._files[number]
        if file.damage is None:
            path = b"/" + b"/".join(file.comps)
            file.damage = DamagedFile(path, file.node.size)
        file.damage.add(offset, offset + size)
        self._fd(number)  # the file exists even if every chunk of it is lost
        self._done_one(number)

    def discard_unfinished(self) -> None:
        """Close what is still open and remove the partial files that were not finished."""
        self.close_all()
        for file in self._files:
            if file.created and not file.finished:
                self._target.discard_partial(file.comps)

    def close_all(self) -> None:
        """Close what is still open."""
        while self._fds:
            _, fd = self._fds.popitem()
            self._target.close_file(fd)

    def _done_one(self, number: int) -> None:
        file = self._files[number]
        file.remaining -= 1
        if file.remaining == 0:
            self._finish(number)

    def _fd(self, number: int) -> int:
        fd = self._fds.get(number)
        if fd is not None:
            self._fds.move_to_end(number)
            return fd
        file = self._files[number]
        if file.created:
            fd = self._target.reopen_partial(file.comps)
        else:
            fd = self._target.create_partial(file.comps)
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
            fd = self._target.reopen_partial(file.comps)
        try:
            self._target.finish_file(fd, file.node.size)
        except OSError as exc:
            raise self._target.error(file.comps, exc) from exc
        self._on_finished(file.comps, file.node, file.damage)
        file.finished = True
