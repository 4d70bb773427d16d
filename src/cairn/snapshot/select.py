"""Choosing snapshots: by ID prefix, by the `latest` alias, by host, tag and path."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from cairn.core.ids import ObjectName
from cairn.repository.errors import ObjectMissing, SnapshotNotFound
from cairn.repository.repository import Repository, StoredSnapshot

LATEST = "latest"


@dataclass(frozen=True, slots=True)
class SnapshotFilter:
    """Which snapshots a command considers; empty lists match everything."""

    hosts: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def matches(self, snap: StoredSnapshot) -> bool:
        body = snap.body
        if self.hosts and body.host not in self.hosts:
            return False
        if self.tags and not all(_tag_group_matches(t, body.tags) for t in self.tags):
            return False
        return not self.paths or sorted(self.paths) == sorted(body.paths)


def _tag_group_matches(group: str, tags: list[str]) -> bool:
    # restic semantics: "--tag a,b" needs both a and b; repeated --tag options are alternatives,
    # here each option must hold.
    return all(t in tags for t in group.split(",") if t)


def snapshot_time(snap: StoredSnapshot) -> datetime:
    return datetime.fromisoformat(snap.body.time)


def load_snapshots(repo: Repository, filt: SnapshotFilter | None = None) -> list[StoredSnapshot]:
    """Every snapshot (matching `filt`), oldest first. One forgotten between the listing and its
    read (a forget on another machine, or the server's retention) is left out; one still listed
    that cannot be read is an error."""
    names = repo.snapshot_names()
    with ThreadPoolExecutor(max_workers=4) as pool:
        read = list(pool.map(lambda name: _read_unless_forgotten(repo, name), names))
    snaps = [s for s in read if s is not None]
    if filt is not None:
        snaps = [s for s in snaps if filt.matches(s)]
    return sorted(snaps, key=lambda s: (snapshot_time(s), s.name.hex))


def _read_unless_forgotten(repo: Repository, name: ObjectName) -> StoredSnapshot | None:
    try:
        return repo.read_snapshot(name)
    except ObjectMissing:
        if name in repo.snapshot_names():
            raise
        return None


def find_snapshot(repo: Repository, ref: str, filt: SnapshotFilter | None = None) -> StoredSnapshot:
    """Resolve `latest` or a unique ID prefix (at least 4 hex digits)."""
    snaps = load_snapshots(repo, filt)
    if ref == LATEST:
        if not snaps:
            raise SnapshotNotFound(
                "no snapshot matches (the repository has none, or the filters exclude all)"
            )
        return snaps[-1]
    ref = ref.lower()
    if len(ref) < 4 or any(c not in "0123456789abcdef" for c in ref):
        raise SnapshotNotFound(
            f"{ref!r} is neither `latest` nor a snapshot ID (at least 4 hex digits)"
        )
    found = [s for s in snaps if s.name.hex.startswith(ref)]
    if not found:
        raise SnapshotNotFound(f"no snapshot with ID {ref}")
    if len(found) > 1:
        raise SnapshotNotFound(
            f"snapshot ID {ref} is ambiguous: {', '.join(s.name.short() for s in found)}"
        )
    return found[0]


def short_ids(names: Iterable[ObjectName]) -> list[str]:
    return [n.short() for n in names]
