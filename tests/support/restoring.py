"""Restoring in-process from a memory repository: what the restorer tests and the crafted-snapshot
tests share."""

from __future__ import annotations

from pathlib import Path

from cairn.backends.memory import MemoryBackend
from cairn.core.clock import SystemClock
from cairn.core.ids import ChunkId
from cairn.core.progress import SilentProgress
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams
from cairn.repository.repository import Repository
from cairn.restore.restorer import RestoreOptions, Restorer, RestoreResult

SMALL = RepoParams(
    chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=64 * 1024, compression=3
)


def new_repo() -> Repository:
    return Repository.init(MemoryBackend(), b"pw", SystemClock(), kdf=TEST_KDF, params=SMALL)


def restore(repo: Repository, tree_id: ChunkId, target: Path, workers: int = 2) -> RestoreResult:
    options = RestoreOptions(target=target, workers=workers)
    return Restorer(repo, SilentProgress()).run(tree_id, options)
