"""The file-system calls the local backend makes, behind one seam.

`LocalBackend` never calls ``os`` directly: it calls a `FileSystem`. In production that is
`OsFileSystem`, a thin pass-through. The robustness tests substitute file systems that fail a chosen
call with ENOSPC, EIO or EROFS, or that keep written bytes volatile until they are fsynced and
drop them at a simulated power loss (tests/robustness). Every method raises ``OSError`` exactly as
the ``os`` function it stands for; translating errors is the backend's job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class FileSystem(Protocol):
    """The POSIX calls of the local backend; paths are absolute, descriptors are ints."""

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int: ...

    def write(self, fd: int, data: memoryview) -> int: ...

    def pread(self, fd: int, count: int, offset: int) -> bytes: ...

    def fsize(self, fd: int) -> int:
        """The size of the open file `fd` (``fstat().st_size``)."""
        ...

    def fsync(self, fd: int) -> None: ...

    def close(self, fd: int) -> None: ...

    def link(self, source: Path, target: Path) -> None: ...

    def rename(self, source: Path, target: Path) -> None: ...

    def unlink(self, path: Path) -> None: ...

    def size(self, path: Path) -> int:
        """The size of the file at `path` (``stat().st_size``), following symlinks."""
        ...

    def lexists(self, path: Path) -> bool: ...

    def scan(self, folder: Path) -> list[tuple[str, bool]]:
        """The entries of `folder` as (name, is a folder) pairs."""
        ...

    def listdir(self, folder: Path) -> list[str]: ...

    def mkdir(self, path: Path, mode: int, parents: bool) -> None:
        """Create a folder; an existing one is fine (``exist_ok``)."""
        ...

    def is_dir(self, path: Path) -> bool: ...


class OsFileSystem:
    """The real file system: each method is the ``os`` call of the same name."""

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)

    def pread(self, fd: int, count: int, offset: int) -> bytes:
        return os.pread(fd, count, offset)

    def fsize(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def link(self, source: Path, target: Path) -> None:
        os.link(source, target)

    def rename(self, source: Path, target: Path) -> None:
        os.rename(source, target)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def size(self, path: Path) -> int:
        return os.stat(path).st_size

    def lexists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def scan(self, folder: Path) -> list[tuple[str, bool]]:
        with os.scandir(folder) as entries:
            return [(entry.name, entry.is_dir()) for entry in entries]

    def listdir(self, folder: Path) -> list[str]:
        return os.listdir(folder)

    def mkdir(self, path: Path, mode: int, parents: bool) -> None:
        path.mkdir(mode=mode, parents=parents, exist_ok=True)

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()


OS_FILE_SYSTEM = OsFileSystem()
