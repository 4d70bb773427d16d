"""The archiver and the restorer use only their narrow repository roles (issue 12 item 6).

Each is handed a view of a real repository that exposes the members of its role protocol and
nothing else: a use of any other Repository member fails the round trip with AttributeError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cairn.backends.memory import MemoryBackend
from cairn.backup.archiver import Archiver, BackupOptions
from cairn.backup.protocols import BackupTarget
from cairn.core.clock import SystemClock
from cairn.core.progress import SilentProgress
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams
from cairn.repository.repository import Repository
from cairn.restore.protocols import RestoreSource
from cairn.restore.restorer import RestoreOptions, Restorer
from cairn.source.walker import Walker

SMALL = RepoParams(
    chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=64 * 1024, compression=3
)


def role_members(role: type) -> frozenset[str]:
    """The public names a protocol declares, its bases' included."""
    return frozenset(
        name
        for cls in role.__mro__
        if cls.__module__.startswith("cairn.")
        for name in vars(cls)
        if not name.startswith("_")
    )


class RoleView:
    """A repository seen through one role: any other member is an AttributeError."""

    def __init__(self, repo: Repository, role: type) -> None:
        self._repo = repo
        self._allowed = role_members(role)

    def __getattr__(self, name: str) -> Any:
        if name not in self._allowed:
            raise AttributeError(f"{name} is not part of the role")
        return getattr(self._repo, name)


def test_a_backup_and_its_restore_use_only_their_roles(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(50_000))
    (src / "small").write_bytes(b"hello")
    repo = Repository.init(MemoryBackend(), b"pw", SystemClock(), kdf=TEST_KDF, params=SMALL)
    repo.load_index()
    as_target: Any = RoleView(repo, BackupTarget)
    result = Archiver(as_target, Walker(), SilentProgress()).run(
        BackupOptions(paths=[os.fsencode(src)])
    )
    assert result.errors == [] and result.snapshot is not None
    tree = repo.read_snapshot(result.snapshot).body.tree
    as_source: Any = RoleView(repo, RestoreSource)
    Restorer(as_source, SilentProgress()).run(tree, RestoreOptions(target=tmp_path / "out"))
    out = tmp_path / "out" / src.relative_to("/")
    assert (out / "big").read_bytes() == (src / "big").read_bytes()
    assert (out / "small").read_bytes() == b"hello"
    assert len(role_members(BackupTarget)) == 9 and len(role_members(RestoreSource)) == 6
