"""Opening a repository with the local cache of design 14.12: objects and tree blobs on disk.

The CLI decides whether to use it (remote repositories, not `check`, not `--no-cache`); this
module builds it: the repository's folder under the cache folder (0700), the caching backend with
the hash check backends may not import, and the tree-blob cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cairn.backends.base import Backend, Handle
from cairn.backends.wrappers.caching import CacheFolder, CachingBackend
from cairn.core.clock import Clock
from cairn.core.errors import FormatError
from cairn.core.ids import ObjectName
from cairn.crypto.hashing import object_name
from cairn.repository.repository import Repository, read_config
from cairn.repository.treecache import DEFAULT_TREE_CACHE_BYTES, TreeCache


def object_matches(handle: Handle, data: bytes) -> bool:
    """True when `data` hashes to the name of `handle` (the check of every cached object)."""
    try:
        return object_name(data) == ObjectName.from_hex(handle.name)
    except FormatError:
        return False


def private_folder(path: Path) -> Path:
    """Make `path` (and its parents) and restrict it to its owner; raises OSError."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def open_cached(
    backend: Backend,
    passphrase: bytes,
    clock: Clock,
    base: Path,
    warn: Callable[[str], None],
    tree_limit: int = DEFAULT_TREE_CACHE_BYTES,
) -> Repository:
    """Open the repository at `backend` with its cache in ``<base>/<repository id>/``.

    When that folder cannot be made, `warn` is told and the repository opens without a cache;
    every later failure of the cache is a miss.
    """
    config = read_config(backend)
    try:
        folder = private_folder(base / config.repo_id.hex())
    except OSError as exc:
        warn(f"the cache folder {base} is unusable ({exc.strerror or exc}); going on without it")
        return Repository.open(backend, passphrase, clock, config=config)
    cached = CachingBackend(backend, CacheFolder(folder), object_matches)
    repo = Repository.open(cached, passphrase, clock, config=config)
    repo.tree_cache = TreeCache(folder / "trees", tree_limit)
    return repo
