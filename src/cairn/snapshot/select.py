"""Choosing snapshots: by ID prefix, by the `latest` alias, by host, tag and path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from cairn.core.errors import CairnError, FormatError, IntegrityError
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


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A snapshot object that could not be read: damaged, malformed, or of a newer format."""

    name: ObjectName
    error: CairnError

    def raise_error(self) -> NoReturn:
        """Raise the error, of its own class (so its code stays), naming the snapshot."""
        raise type(self.error)(f"snapshot {self.name.short()}: {self.error}") from self.error


Skip = Callable[[Unreadable], None]
"""Told of each unreadable snapshot a choice leaves out (the CLI warns, naming it)."""


def _skip_or_raise(unreadable: list[Unreadable], skip: Skip | None) -> None:
    """Hand every unreadable snapshot to `skip`; without one, raise the first one's error."""
    if unreadable and skip is None:
        unreadable[0].raise_error()
    for u in unreadable:
        if skip is not None:
            skip(u)


def read_snapshots(
    repo: Repository, filt: SnapshotFilter | None = None
) -> tuple[list[StoredSnapshot], list[Unreadable]]:
    """Every readable snapshot (matching `filt`), oldest first, and those that cannot be read.

    One damaged snapshot must not hide the others (docs/errors.md: damage is confined to the
    snapshots that reference it); callers that must see everything use `load_snapshots`. A
    snapshot that vanishes between the listing and its read was removed by a forget running
    meanwhile: it is left out, as a listing a moment later would leave it out.
    """
    names = repo.snapshot_names()

    def read(name: ObjectName) -> StoredSnapshot | Unreadable | None:
        try:
            return repo.read_snapshot(name)
        except ObjectMissing:
            return None
        except (FormatError, IntegrityError) as exc:
            return Unreadable(name, exc)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(read, names))
    snaps = [r for r in results if isinstance(r, StoredSnapshot)]
    unreadable = [r for r in results if isinstance(r, Unreadable)]
    if filt is not None:
        snaps = [s for s in snaps if filt.matches(s)]
    return sorted(snaps, key=lambda s: (snapshot_time(s), s.name.hex)), unreadable


def load_snapshots(
    repo: Repository, filt: SnapshotFilter | None = None, skip: Skip | None = None
) -> list[StoredSnapshot]:
    """Every readable snapshot (matching `filt`), oldest first. Each unreadable one is left out
    and handed to `skip`; without `skip`, the first raises (for callers that must see all).

    Leaving a damaged snapshot out of a retention policy only ever keeps more: it is not
    removed (its time is unknown), and the others are judged as if it did not exist.
    """
    snaps, unreadable = read_snapshots(repo, filt)
    _skip_or_raise(unreadable, skip)
    return snaps


def find_snapshot(
    repo: Repository, ref: str, filt: SnapshotFilter | None = None, skip: Skip | None = None
) -> StoredSnapshot:
    """Resolve `latest` or a unique ID prefix (at least 4 hex digits).

    A damaged snapshot other than the one asked for does not matter. `latest` is the newest
    readable snapshot; the unreadable ones (one may be newer) go to `skip`, and without `skip`
    `latest` is refused while any snapshot is unreadable. A snapshot asked for by ID that
    cannot be read always raises.
    """
    snaps, unreadable = read_snapshots(repo, filt)
    if ref == LATEST:
        _skip_or_raise(unreadable, skip)
        if not snaps:
            damaged = f"; {len(unreadable)} cannot be read" if unreadable else ""
            raise SnapshotNotFound(
                "no snapshot matches (the repository has none, or the filters exclude all"
                f"{damaged})"
            )
        return snaps[-1]
    ref = _id_prefix(ref)
    found = [s.name for s in snaps if s.name.hex.startswith(ref)]
    broken = [u for u in unreadable if u.name.hex.startswith(ref)]
    if len(found) + len(broken) > 1:
        shown = ", ".join(n.short() for n in [*found, *(u.name for u in broken)])
        raise SnapshotNotFound(f"snapshot ID {ref} is ambiguous: {shown}")
    if broken:
        broken[0].raise_error()
    if not found:
        raise SnapshotNotFound(f"no snapshot with ID {ref}")
    return next(s for s in snaps if s.name == found[0])


def find_snapshot_names(repo: Repository, refs: list[str]) -> list[ObjectName]:
    """Resolve unique ID prefixes from the listing alone, without opening any snapshot: the ID
    names the object, so a snapshot whose sealed body does not open can still be named (forget
    removes it by name). `latest` needs the snapshots' times, so it is resolved by reading them."""
    listed = repo.snapshot_names()
    names = []
    for ref in refs:
        if ref == LATEST:
            names.append(find_snapshot(repo, ref).name)
            continue
        prefix = _id_prefix(ref)
        found = [n for n in listed if n.hex.startswith(prefix)]
        if len(found) > 1:
            shown = ", ".join(n.short() for n in found)
            raise SnapshotNotFound(f"snapshot ID {prefix} is ambiguous: {shown}")
        if not found:
            raise SnapshotNotFound(f"no snapshot with ID {prefix}")
        names.append(found[0])
    return names


def _id_prefix(ref: str) -> str:
    ref = ref.lower()
    if len(ref) < 4 or any(c not in "0123456789abcdef" for c in ref):
        raise SnapshotNotFound(
            f"{ref!r} is neither `latest` nor a snapshot ID (at least 4 hex digits)"
        )
    return ref


def short_ids(names: Iterable[ObjectName]) -> list[str]:
    return [n.short() for n in names]
