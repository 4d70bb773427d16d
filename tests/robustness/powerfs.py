"""An in-memory file system that forgets what was not made durable when the power is cut.

`PowerLossFS` implements `cairn.backends.filesystem.FileSystem`, so a `LocalBackend` runs on it
unchanged. It models what a POSIX file system promises across a power cut, assuming less than ext4
(data=ordered) actually gives:

- File contents are volatile until ``fsync`` on a descriptor of that file, which makes the file's
  current contents durable, and nothing else: not its name.
- A change to a folder's entries (``open`` with O_CREAT, ``link``, ``rename``, ``unlink``,
  ``mkdir``) is volatile until that folder is fsynced; so a new folder survives only if its parent
  was fsynced after the ``mkdir``. A rename between two folders is two independent changes.
- `PowerLossFS.power_cut` ends this file system (every later call fails with EIO, so code still
  running in the "dead" process changes nothing) and returns a new one holding what survived.
  ``names="durable"`` keeps each folder's entries as of its last fsync (the POSIX minimum);
  ``names="all"`` keeps every name change but still only durable contents (metadata journalled,
  data not: the zero-length-file-after-a-crash case). Contents are always the durable ones, except
  that a `Tear` lets the most recent write not yet fsynced partly survive: a random prefix of it
  (``prefix``), or a random prefix followed by garbage up to the write's full length
  (``garbage``), drawn from a seeded generator so every cut replays exactly.

Every mutating call is logged (`PowerLossFS.log`, `PowerLossFS.format_log`) with the fsync that
made it durable and, after a cut, its fate; `PowerLossFS.durable_ops` lists the durable ones in
the order they were issued. Symbolic links, permissions and timestamps are not modelled.
"""

from __future__ import annotations

import copy
import errno
import os
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

NameMode = Literal["durable", "all"]
TearMode = Literal["prefix", "garbage"]
ROOT_INO = 1
DIR_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Tear:
    """How the last un-fsynced write survives a cut, and the seed that picks the torn length."""

    mode: TearMode
    seed: int | str


@dataclass(slots=True)
class Op:
    """One mutating call, as logged."""

    seq: int
    call: str
    path: str
    detail: str = ""
    durable_at: int | None = None
    """The sequence number of the fsync that made it durable (its own for an fsync)."""
    fate: str = ""
    """Set at the cut: durable, survived (names="all"), torn, or lost."""
    waiting_on: set[int] = field(default_factory=set)
    """Inodes whose fsync this operation still waits for."""

    def describe(self) -> str:
        state = f"durable at #{self.durable_at}" if self.durable_at is not None else "volatile"
        fate = f", {self.fate}" if self.fate and self.fate != "durable" else ""
        detail = f" {self.detail}" if self.detail else ""
        return f"#{self.seq} {self.call} {self.path}{detail} [{state}{fate}]"


@dataclass(frozen=True, slots=True)
class CutReport:
    """What a power cut did."""

    names: NameMode
    seq: int
    """The last operation issued before the cut."""
    volatile_ops: int
    """Operations not durable at the cut (lost, or kept by names="all")."""
    torn_length: int = 0
    """The length of the write a `Tear` was applied to (0: none asked, or nothing to tear)."""
    torn_kept: int = 0
    """How much of it survived as written (the rest is gone, or garbage)."""
    torn_path: str | None = None
    """A name of the torn file after the cut; None if no name of it survived."""


@dataclass(slots=True)
class _File:
    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""


@dataclass(slots=True)
class _Dir:
    entries: dict[str, int] = field(default_factory=dict)
    durable: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Open:
    ino: int
    path: Path
    readable: bool
    writable: bool
    append: bool
    pos: int = 0


_Node = _File | _Dir


def _error(code: int, path: object = None) -> OSError:
    """An OSError of the subclass Python picks for `code` (FileNotFoundError for ENOENT...)."""
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), str(path))


class PowerLossFS:
    """A file system in memory, with durability modelled as described in the module docstring.

    Thread-safe: every call holds one lock. ``hard_links=False`` answers ``link`` with EPERM, as
    FAT and some FUSE mounts do, so the backend's rename fallback can be exercised too.
    """

    def __init__(self, hard_links: bool = True, folders: tuple[str, ...] = ("/",)) -> None:
        self.hard_links = hard_links
        self._inodes: dict[int, _Node] = {ROOT_INO: _Dir()}
        self._next_ino = ROOT_INO + 1
        self._fds: dict[int, _Open] = {}
        self._next_fd = 3
        self._lock = threading.RLock()
        self._dead = False
        self._log: list[Op] = []
        self._pending: dict[int, list[Op]] = {}
        self._unsynced: list[tuple[int, int, bytes]] = []
        self.cut: CutReport | None = None
        """Set on the file system a cut returned: what the cut did."""
        for folder in folders:
            self._mkdirs_durably(Path(folder))

    # ---- inspection ---------------------------------------------------------------------

    @property
    def log(self) -> list[Op]:
        with self._lock:
            return list(self._log)

    def durable_ops(self) -> list[Op]:
        """The operations that were durable (at the cut, or now), in the order issued."""
        return [op for op in self.log if op.durable_at is not None]

    def format_log(self, last: int | None = None) -> str:
        ops = self.log
        return "\n".join(op.describe() for op in ops[-last if last else 0 :])

    def read_file(self, path: Path) -> bytes:
        """The current contents of a file (for tests)."""
        with self._lock:
            node = self._inodes[self._lookup(path)]
            if not isinstance(node, _File):
                raise _error(errno.EISDIR, path)
            return bytes(node.data)

    def clone(self, hard_links: bool | None = None) -> PowerLossFS:
        """A copy of the current state (durable and volatile alike), with an empty log."""
        with self._lock:
            self._alive()
            if self._fds:
                raise RuntimeError("clone with open descriptors")
            other = PowerLossFS(self.hard_links if hard_links is None else hard_links)
            other._inodes = copy.deepcopy(self._inodes)
            other._next_ino = self._next_ino
            other._unsynced = list(self._unsynced)
            return other

    # ---- the cut ------------------------------------------------------------------------

    def power_cut(self, names: NameMode = "durable", tear: Tear | None = None) -> PowerLossFS:
        """End this file system; return a new one holding what survives (see the module doc)."""
        with self._lock:
            self._alive()
            self._dead = True
            survivor = PowerLossFS(self.hard_links)
            survivor._next_ino = self._next_ino
            survivor._inodes = self._surviving_nodes(names)
            torn = self._unsynced[-1] if tear is not None and self._unsynced else None
            report = CutReport(
                names,
                self._log[-1].seq if self._log else 0,
                sum(1 for op in self._log if op.durable_at is None),
            )
            if torn is not None and tear is not None:
                ino, offset, chunk = torn
                node = survivor._inodes.get(ino, _File())
                kept = _apply_tear(node, offset, chunk, tear)
                path = survivor._path_of(ino) if ino in survivor._inodes else None
                report = replace(report, torn_length=len(chunk), torn_kept=kept, torn_path=path)
            self._settle_fates(names, torn)
            survivor.cut = report
            return survivor

    def _surviving_nodes(self, names: NameMode) -> dict[int, _Node]:
        """Every node reachable from the root through surviving entries, as it survives."""
        out: dict[int, _Node] = {}
        todo = [ROOT_INO]
        while todo:
            ino = todo.pop()
            if ino in out:
                continue
            node = self._inodes[ino]
            if isinstance(node, _File):
                out[ino] = _File(bytearray(node.durable), node.durable)
                continue
            entries = dict(node.durable if names == "durable" else node.entries)
            out[ino] = _Dir(entries, dict(entries))
            todo.extend(entries.values())
        return out

    def _settle_fates(self, names: NameMode, torn: tuple[int, int, bytes] | None) -> None:
        torn_op = None
        if torn is not None:
            writes = [op for op in self._pending.get(torn[0], []) if op.call == "write"]
            torn_op = writes[-1] if writes else None
        for op in self._log:
            if op.durable_at is not None:
                op.fate = "durable"
            elif op is torn_op:
                op.fate = "torn"
            elif names == "all" and op.call not in ("write", "truncate"):
                op.fate = "survived"
            else:
                op.fate = "lost"

    def _path_of(self, target: int) -> str | None:
        todo: list[tuple[int, str]] = [(ROOT_INO, "")]
        while todo:
            ino, path = todo.pop()
            node = self._inodes[ino]
            if isinstance(node, _Dir):
                for name, child in sorted(node.entries.items()):
                    if child == target:
                        return f"{path}/{name}"
                    todo.append((child, f"{path}/{name}"))
        return None

    # ---- the FileSystem protocol --------------------------------------------------------

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int:
        with self._lock:
            self._alive()
            access = flags & os.O_ACCMODE
            parent, name = self._parent(path)
            ino = parent.entries.get(name) if name else ROOT_INO
            if ino is not None and flags & os.O_CREAT and flags & os.O_EXCL:
                raise _error(errno.EEXIST, path)
            if ino is None:
                if not flags & os.O_CREAT:
                    raise _error(errno.ENOENT, path)
                ino = self._new(_File())
                parent.entries[name] = ino
                self._record("create", path, on=[self._lookup(path.parent)])
            node = self._inodes[ino]
            if isinstance(node, _File) and flags & os.O_DIRECTORY:
                raise _error(errno.ENOTDIR, path)
            if isinstance(node, _Dir) and access != os.O_RDONLY:
                raise _error(errno.EISDIR, path)
            if isinstance(node, _File) and flags & os.O_TRUNC and access != os.O_RDONLY:
                node.data.clear()
                self._record("truncate", path, on=[ino])
            fd = self._next_fd
            self._next_fd += 1
            self._fds[fd] = _Open(
                ino,
                Path(path),
                readable=access in (os.O_RDONLY, os.O_RDWR),
                writable=access in (os.O_WRONLY, os.O_RDWR),
                append=bool(flags & os.O_APPEND),
            )
            return fd

    def write(self, fd: int, data: memoryview) -> int:
        with self._lock:
            handle = self._fd(fd)
            node = self._inodes[handle.ino]
            if not handle.writable or not isinstance(node, _File):
                raise _error(errno.EBADF)
            chunk = bytes(data)
            offset = len(node.data) if handle.append else handle.pos
            _overlay(node.data, offset, chunk)
            handle.pos = offset + len(chunk)
            self._unsynced.append((handle.ino, offset, chunk))
            self._record("write", handle.path, f"{len(chunk)} bytes at {offset}", on=[handle.ino])
            return len(chunk)

    def pread(self, fd: int, count: int, offset: int) -> bytes:
        with self._lock:
            handle = self._fd(fd)
            node = self._inodes[handle.ino]
            if not handle.readable:
                raise _error(errno.EBADF)
            if isinstance(node, _Dir):
                raise _error(errno.EISDIR)
            return bytes(node.data[offset : offset + count])

    def fsize(self, fd: int) -> int:
        with self._lock:
            node = self._inodes[self._fd(fd).ino]
            return len(node.data) if isinstance(node, _File) else DIR_SIZE

    def fsync(self, fd: int) -> None:
        with self._lock:
            handle = self._fd(fd)
            ino = handle.ino
            node = self._inodes[ino]
            if isinstance(node, _File):
                node.durable = bytes(node.data)
                self._unsynced = [w for w in self._unsynced if w[0] != ino]
            else:
                node.durable = dict(node.entries)
            op = self._record("fsync", handle.path)
            op.durable_at = op.seq
            for pending in self._pending.pop(ino, []):
                pending.waiting_on.discard(ino)
                if not pending.waiting_on:
                    pending.durable_at = op.seq

    def close(self, fd: int) -> None:
        with self._lock:
            self._fd(fd)
            del self._fds[fd]

    def link(self, source: Path, target: Path) -> None:
        with self._lock:
            self._alive()
            ino = self._lookup(source)
            if not self.hard_links or isinstance(self._inodes[ino], _Dir):
                raise _error(errno.EPERM, source)
            parent, name = self._parent(target)
            if not name or name in parent.entries:
                raise _error(errno.EEXIST, target)
            parent.entries[name] = ino
            self._record("link", str(source), f"-> {target}", on=[self._lookup(target.parent)])

    def rename(self, source: Path, target: Path) -> None:
        with self._lock:
            self._alive()
            old_parent, old_name = self._parent(source)
            new_parent, new_name = self._parent(target)
            ino = old_parent.entries.get(old_name) if old_name else ROOT_INO
            if ino is None:
                raise _error(errno.ENOENT, source)
            if not old_name or not new_name or _inside(target, source):
                raise _error(errno.EINVAL, source)
            existing = new_parent.entries.get(new_name)
            if existing == ino:
                return
            if existing is not None:
                self._check_replaceable(self._inodes[ino], self._inodes[existing], target)
            del old_parent.entries[old_name]
            new_parent.entries[new_name] = ino
            on = {self._lookup(source.parent), self._lookup(target.parent)}
            self._record("rename", str(source), f"-> {target}", on=sorted(on))

    def unlink(self, path: Path) -> None:
        with self._lock:
            self._alive()
            parent, name = self._parent(path)
            ino = parent.entries.get(name) if name else ROOT_INO
            if ino is None:
                raise _error(errno.ENOENT, path)
            if isinstance(self._inodes[ino], _Dir):
                raise _error(errno.EISDIR, path)
            del parent.entries[name]
            self._record("unlink", path, on=[self._lookup(path.parent)])

    def size(self, path: Path) -> int:
        with self._lock:
            self._alive()
            node = self._inodes[self._lookup(path)]
            return len(node.data) if isinstance(node, _File) else DIR_SIZE

    def lexists(self, path: Path) -> bool:
        with self._lock:
            self._alive()
            return self._exists(path)

    def scan(self, folder: Path) -> list[tuple[str, bool]]:
        with self._lock:
            self._alive()
            node = self._folder(folder)
            return [(n, isinstance(self._inodes[i], _Dir)) for n, i in sorted(node.entries.items())]

    def listdir(self, folder: Path) -> list[str]:
        return [name for name, _ in self.scan(folder)]

    def mkdir(self, path: Path, mode: int, parents: bool) -> None:
        with self._lock:
            self._alive()
            self._mkdir(Path(path), parents)

    def is_dir(self, path: Path) -> bool:
        with self._lock:
            self._alive()
            try:
                return isinstance(self._inodes[self._lookup(path)], _Dir)
            except OSError:
                return False

    # ---- internals ----------------------------------------------------------------------

    def _alive(self) -> None:
        if self._dead:
            raise OSError(errno.EIO, "the power is off: this file system ended at a power cut")

    def _fd(self, fd: int) -> _Open:
        self._alive()
        handle = self._fds.get(fd)
        if handle is None:
            raise _error(errno.EBADF)
        return handle

    def _new(self, node: _Node) -> int:
        ino = self._next_ino
        self._next_ino += 1
        self._inodes[ino] = node
        return ino

    def _record(self, call: str, path: object, detail: str = "", on: Iterable[int] = ()) -> Op:
        op = Op(len(self._log) + 1, call, str(path), detail, waiting_on=set(on))
        self._log.append(op)
        for ino in on:
            self._pending.setdefault(ino, []).append(op)
        return op

    def _parts(self, path: Path) -> tuple[str, ...]:
        path = Path(path)
        if not path.is_absolute():
            raise ValueError(f"PowerLossFS takes absolute paths, not {path}")
        return tuple(p for p in path.parts[1:] if p not in ("", "."))

    def _lookup(self, path: Path) -> int:
        ino = ROOT_INO
        for part in self._parts(path):
            node = self._inodes[ino]
            if not isinstance(node, _Dir):
                raise _error(errno.ENOTDIR, path)
            if part == "..":
                raise ValueError(f"PowerLossFS does not resolve '..' in {path}")
            child = node.entries.get(part)
            if child is None:
                raise _error(errno.ENOENT, path)
            ino = child
        return ino

    def _parent(self, path: Path) -> tuple[_Dir, str]:
        """The folder holding `path` and the last name ("" for the root itself)."""
        parts = self._parts(path)
        if not parts:
            return self._folder(Path("/")), ""
        return self._folder(Path("/", *parts[:-1])), parts[-1]

    def _folder(self, path: Path) -> _Dir:
        node = self._inodes[self._lookup(path)]
        if not isinstance(node, _Dir):
            raise _error(errno.ENOTDIR, path)
        return node

    def _exists(self, path: Path) -> bool:
        try:
            self._lookup(path)
        except OSError:
            return False
        return True

    def _mkdir(self, path: Path, parents: bool) -> None:
        parts = self._parts(path)
        if not parts:
            return
        if self._exists(path):
            if not isinstance(self._inodes[self._lookup(path)], _Dir):
                raise _error(errno.EEXIST, path)
            return
        parent_path = Path("/", *parts[:-1])
        if parents and not self._exists(parent_path):
            self._mkdir(parent_path, parents=True)
        parent, name = self._parent(path)
        parent.entries[name] = self._new(_Dir())
        self._record("mkdir", path, on=[self._lookup(parent_path)])

    def _mkdirs_durably(self, path: Path) -> None:
        """Folders that exist before anything runs (the disk as it was), durable from the start."""
        ino = ROOT_INO
        for part in self._parts(path):
            node = self._inodes[ino]
            assert isinstance(node, _Dir)
            if part not in node.entries:
                node.entries[part] = node.durable[part] = self._new(_Dir())
            ino = node.entries[part]

    def _check_replaceable(self, moving: _Node, existing: _Node, target: Path) -> None:
        if isinstance(moving, _File) and isinstance(existing, _Dir):
            raise _error(errno.EISDIR, target)
        if isinstance(moving, _Dir) and isinstance(existing, _File):
            raise _error(errno.ENOTDIR, target)
        if isinstance(existing, _Dir) and existing.entries:
            raise _error(errno.ENOTEMPTY, target)


def _overlay(data: bytearray, offset: int, chunk: bytes) -> None:
    if offset > len(data):
        data.extend(bytes(offset - len(data)))
    data[offset : offset + len(chunk)] = chunk


def _inside(path: Path, folder: Path) -> bool:
    return Path(path) != Path(folder) and Path(folder) in Path(path).parents


def _apply_tear(node: _Node, offset: int, chunk: bytes, tear: Tear) -> int:
    """Let part of the write (`offset`, `chunk`) reach `node`; return the bytes kept as written."""
    assert isinstance(node, _File)
    rng = random.Random(tear.seed)
    kept = rng.randrange(len(chunk)) if chunk else 0
    torn = chunk[:kept]
    if tear.mode == "garbage":
        torn += rng.randbytes(len(chunk) - kept)
    _overlay(node.data, offset, torn)
    node.durable = bytes(node.data)
    return kept
