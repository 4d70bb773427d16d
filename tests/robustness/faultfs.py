"""A `FileSystem` that fails one chosen call, and the in-process CLI runner the robustness tests
share (RELIABILITY.md R3, R4, R5).

`FaultyFileSystem` passes every call to the real file system (`OsFileSystem`) and counts the calls
that change something, by kind: a write, an fsync of a file, an fsync of a folder, a hard link, a
rename, an open that creates a file, an unlink, a mkdir. Given a `Fault`, it makes the k-th call of
one kind raise ``OSError(errno)`` instead of happening (the real call is not made), or, for a
"short" fault, makes the k-th write store only part of its bytes and say so, as POSIX allows.

A clean run with no fault gives the counts; the tests then fail each counted call in turn. The
calls come from several threads (packs upload in parallel), so the counter is locked, and "the
k-th write" is the k-th to reach the file system, whichever thread makes it.

`run_cli` runs the real `cairn` command in this process (``cairn.cli.main.main``), optionally over
such a file system, and returns its exit code and output. `tree_manifest` describes a folder for
bit-exact comparison of a restore with its source; `copy_tree` and `reset_tree` put a starting
repository in place for each case; `publish` shows and saves a module's figures.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import stat
import threading
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from unittest import mock

import pytest

from cairn.backends.base import Backend
from cairn.backends.filesystem import OS_FILE_SYSTEM, FileSystem
from cairn.backends.local import LocalBackend
from cairn.backends.location import open_backend as default_open_backend
from cairn.cli import main as cli_main
from cairn.format.lock import LockOwner
from cairn.repository import locks
from cairn.repository.locks import this_process


class CallKind(Enum):
    """The kinds of file-system call a fault can hit."""

    WRITE = "write"
    FSYNC_FILE = "fsync-file"
    FSYNC_DIR = "fsync-dir"
    LINK = "link"
    RENAME = "rename"
    CREATE = "open-create"
    UNLINK = "unlink"
    MKDIR = "mkdir"


ERRNOS = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO, "EROFS": errno.EROFS}


@dataclass(frozen=True, slots=True)
class Fault:
    """Fail the `nth` call (1-based) of `kind` with `errno_name`; "SHORT" makes a write short."""

    kind: CallKind
    nth: int
    errno_name: str

    def __str__(self) -> str:
        return f"{self.errno_name} at {self.kind.value} #{self.nth}"


class FaultyFileSystem:
    """The real file system, counting its mutating calls and failing the one `fault` names.

    With ``hard_links=False`` every link() answers EPERM, as on a file system without hard links,
    so the backend publishes objects with rename() instead (and renames get counted and failed).
    """

    def __init__(
        self,
        fault: Fault | None = None,
        *,
        hard_links: bool = True,
        inner: FileSystem = OS_FILE_SYSTEM,
    ) -> None:
        self.fault = fault
        self.hard_links = hard_links
        self.counts: Counter[CallKind] = Counter()
        self.fired = False
        self._inner = inner
        self._dir_fds: set[int] = set()
        self._lock = threading.Lock()

    def _hit(self, kind: CallKind) -> str | None:
        """Count one call of `kind`; return the fault to apply to it, if any."""
        with self._lock:
            self.counts[kind] += 1
            fault = self.fault
            if fault is None or fault.kind is not kind or self.counts[kind] != fault.nth:
                return None
            self.fired = True
            return fault.errno_name

    def _fail(self, kind: CallKind, path: Path | None = None) -> None:
        name = self._hit(kind)
        if name is not None and name != "SHORT":
            code = ERRNOS[name]
            raise OSError(code, os.strerror(code), None if path is None else str(path))

    # ---- calls that change something -------------------------------------------------------

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_CREAT:
            self._fail(CallKind.CREATE, path)
        fd = self._inner.open(path, flags, mode)
        if flags & os.O_DIRECTORY:
            with self._lock:
                self._dir_fds.add(fd)
        return fd

    def write(self, fd: int, data: memoryview) -> int:
        name = self._hit(CallKind.WRITE)
        if name == "SHORT" and len(data) > 1:
            return self._inner.write(fd, data[: len(data) // 2])
        if name is not None and name != "SHORT":
            raise OSError(ERRNOS[name], os.strerror(ERRNOS[name]))
        return self._inner.write(fd, data)

    def fsync(self, fd: int) -> None:
        with self._lock:
            is_dir = fd in self._dir_fds
        self._fail(CallKind.FSYNC_DIR if is_dir else CallKind.FSYNC_FILE)
        self._inner.fsync(fd)

    def close(self, fd: int) -> None:
        with self._lock:
            self._dir_fds.discard(fd)
        self._inner.close(fd)

    def link(self, source: Path, target: Path) -> None:
        if not self.hard_links:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(target))
        self._fail(CallKind.LINK, target)
        self._inner.link(source, target)

    def rename(self, source: Path, target: Path) -> None:
        self._fail(CallKind.RENAME, target)
        self._inner.rename(source, target)

    def unlink(self, path: Path) -> None:
        self._fail(CallKind.UNLINK, path)
        self._inner.unlink(path)

    def mkdir(self, path: Path, mode: int, parents: bool) -> None:
        self._fail(CallKind.MKDIR, path)
        self._inner.mkdir(path, mode, parents)

    # ---- calls that only read --------------------------------------------------------------

    def pread(self, fd: int, count: int, offset: int) -> bytes:
        return self._inner.pread(fd, count, offset)

    def fsize(self, fd: int) -> int:
        return self._inner.fsize(fd)

    def size(self, path: Path) -> int:
        return self._inner.size(path)

    def lexists(self, path: Path) -> bool:
        return self._inner.lexists(path)

    def scan(self, folder: Path) -> list[tuple[str, bool]]:
        return self._inner.scan(folder)

    def listdir(self, folder: Path) -> list[str]:
        return self._inner.listdir(folder)

    def is_dir(self, path: Path) -> bool:
        return self._inner.is_dir(path)


# ---- running the real command in this process --------------------------------------------------

PASSWORD = "correct horse"
FAST_KDF = "t=1,m=64,p=1"
HANG_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class CliResult:
    """What one `cairn` command did: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}; stderr: {self.err.strip()!r}"


def _ended_owner() -> LockOwner:
    """This process as a lock owner whose process has ended (a start time that is not ours).

    Every in-process command stands for a separate `cairn` process that has exited once it
    returns, so a lock it left (its removal failed) must read as ended, as a dead process's lock
    does for the next command on this machine.
    """
    here = this_process()
    return LockOwner(here.host, here.boot, here.pid, start=1)


def run_cli(
    argv: list[str],
    fs: FileSystem | None = None,
    *,
    password: str = PASSWORD,
    timeout: float = HANG_SECONDS,
) -> CliResult:
    """Run ``cairn ARGV`` in this process; with `fs`, every repository access goes through it.

    The command runs on a helper thread so that a hang fails the test instead of stalling it.
    """
    out, err = io.StringIO(), io.StringIO()
    codes: list[int] = []
    failures: list[BaseException] = []

    def open_backend(location: str, create: bool = False, **_options: object) -> Backend:
        assert fs is not None
        path = Path(location)
        return LocalBackend.create(path, fs) if create else LocalBackend(path, fs)

    factory = open_backend if fs is not None else default_open_backend

    def target() -> None:
        try:
            codes.append(cli_main.main(argv, backend_factory=factory, out=out))
        except BaseException as exc:  # a crash of main() itself: reported below
            failures.append(exc)

    env = {"CAIRN_PASSWORD": password, "CAIRN_KDF": FAST_KDF}
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, env))
        stack.enter_context(mock.patch.object(locks, "this_process", _ended_owner))
        stack.enter_context(contextlib.redirect_stderr(err))
        thread = threading.Thread(target=target, name="cairn-cli", daemon=True)
        thread.start()
        thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"cairn {' '.join(argv)} hung (still running after {timeout} s)")
    if failures:
        raise AssertionError(f"cairn {' '.join(argv)} raised {failures[0]!r}") from failures[0]
    return CliResult(codes[0], out.getvalue(), err.getvalue())


def tree_manifest(root: Path) -> dict[str, tuple[object, ...]]:
    """Per relative path: type, mode, mtime and contents (or link target): what a bit-exact
    restore reproduces."""
    entries: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        kind = stat.S_IFMT(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            entries[rel] = (kind, os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            entries[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
        else:
            entries[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return entries


def copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)


def reset_tree(template: Path, base: Path) -> None:
    """Make `base` a copy of `template` again, changing only what differs: far cheaper than
    removing and copying a repository's 256 pack shard folders for every case."""
    for entry in os.scandir(base):
        original = template / entry.name
        if entry.is_dir(follow_symlinks=False):
            if original.is_dir() and not original.is_symlink():
                reset_tree(original, Path(entry.path))
            else:
                shutil.rmtree(entry.path)
        elif not original.is_file() or not _same_file(original, Path(entry.path)):
            os.unlink(entry.path)
    for entry in os.scandir(template):
        copy = base / entry.name
        if os.path.lexists(copy):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, copy, symlinks=True)
        else:
            shutil.copy2(entry.path, copy, follow_symlinks=False)


def _same_file(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def publish(config: pytest.Config, lines: list[str], filename: str, document: object) -> None:
    """Show a test module's figures on the terminal, past output capture, and write them as JSON
    into ``$CAIRN_ROBUSTNESS_REPORT`` when that names a folder."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            for line in lines:
                reporter.write_line(line)
    folder = os.environ.get("CAIRN_ROBUSTNESS_REPORT")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / filename).write_text(json.dumps(document, indent=1, default=list))
