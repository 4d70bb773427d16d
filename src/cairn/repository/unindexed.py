"""Packs a backup stored but could not index, kept in the local cache for the next run (design
14.13).

A backup that stops early indexes the packs it stored (`Repository.close`). When the storage
itself went away (a server killed or cut off for longer than the retry budget, a token revoked),
that last index cannot be written either, and those packs are on the server in no index: the
next run would upload them again, and they would count against the quota until garbage
collection. So the run writes the index it could not save into its cache folder instead, and the
next backup, once its lock is saved, indexes the packs that the storage still holds and no
deletion record names. The client knows their entries already: no listing of the tenant's packs
and no pack trailer is read.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cairn.backends.base import Handle, ObjectKind
from cairn.core.errors import FormatError, IntegrityError
from cairn.core.ids import ObjectName
from cairn.crypto.hashing import object_name
from cairn.format.index import IndexRecord, decode_index, encode_index
from cairn.format.pack import PackEntry
from cairn.repository.errors import ObjectMissing
from cairn.repository.localcache import private_folder
from cairn.repository.repository import Repository, read_deletion

SUFFIX = ".index"


class UnindexedPacks:
    """One folder of index records not yet saved to the repository, one file each."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def keep(self, record: IndexRecord) -> None:
        """Write `record` down for the next run (atomically; a cache that cannot be written
        costs only uploading those packs again)."""
        if not record.packs:
            return
        data = encode_index(record)
        path = self._folder / f"{object_name(data).hex}{SUFFIX}"
        temporary = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            private_folder(self._folder)
            with temporary.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            temporary.rename(path)

    def adopt(self, repo: Repository) -> int:
        """Index the kept packs that storage holds and no deletion record names, as `repo`'s
        session's own; the number of packs indexed. Call it after the session's lock is saved
        and before the index is consulted. The records are removed once done; they stay when a
        deletion record cannot be read (the next run tries again)."""
        files = sorted(self._folder.glob(f"*{SUFFIX}")) if self._folder.is_dir() else []
        if not files:
            return 0
        condemned = _condemned_packs(repo)
        if condemned is None:
            return 0
        stored = {
            pack: entries
            for pack, entries in _read_all(files).items()
            if pack not in condemned and repo.backend.exists(Handle(ObjectKind.PACK, pack.hex))
        }
        if stored:
            repo.index_stored_packs(IndexRecord(packs=stored))
        for file in files:
            file.unlink(missing_ok=True)
        return len(stored)


def _read_all(files: list[Path]) -> dict[ObjectName, list[PackEntry]]:
    """The packs of every readable record (a damaged file is left out: only a re-upload)."""
    packs: dict[ObjectName, list[PackEntry]] = {}
    for file in files:
        try:
            packs.update(decode_index(file.read_bytes()).packs)
        except (OSError, FormatError):
            continue
    return packs


def _condemned_packs(repo: Repository) -> set[ObjectName] | None:
    """The packs every deletion record names (a prune or the server's garbage collection means
    to delete them: never index one again); None when a record cannot be read."""
    condemned: set[ObjectName] = set()
    for info in repo.backend.list(ObjectKind.DELETION):
        try:
            condemned.update(read_deletion(repo.backend, info.handle).packs)
        except ObjectMissing:
            continue  # swept meanwhile: its packs are gone, and exists() says so
        except (FormatError, IntegrityError):
            return None
    return condemned
