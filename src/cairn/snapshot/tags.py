"""Changing a snapshot's tags. A snapshot is an immutable object named by its hash, so a new
tag means a new snapshot object: the same body with the new tags, recording the snapshot it
replaces as `original` (restic's field), then the old object removed (design 13.6).

The order is the crash-safe one of every rewrite (check --repair's, 13.5): the new reflist,
then the new snapshot object, both durable (`Repository.commit_snapshot`, inside the session's
lease), and only then the old snapshot removed. A crash in between leaves both, the same data
under two tags; run again, `retag` finds the new one already there and only removes the old.
The new reflist has a salt, hence a name, of its own (3.5); the old one is left unnamed, and
the next prune removes it as it does a forgotten snapshot's.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import NotFound
from cairn.core.crashpoints import crashpoint
from cairn.core.ids import ChunkId, ObjectName
from cairn.format.snapshot import SnapshotBody, encode_body
from cairn.repository.repository import Repository, StoredSnapshot


@dataclass(frozen=True, slots=True)
class TagChange:
    """Tags to add and remove, or the whole set (`set_to`; restic's --set, which `[]` clears)."""

    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    set_to: list[str] | None = None

    def apply(self, tags: list[str]) -> list[str]:
        """The new tags, in the order they were, new ones last, without duplicates."""
        base = list(self.set_to) if self.set_to is not None else list(tags)
        kept = [t for t in base if t not in self.remove]
        kept += [t for t in self.add if t not in kept]
        return list(dict.fromkeys(kept))


def retagged_body(snap: StoredSnapshot, change: TagChange) -> SnapshotBody | None:
    """The body with the new tags; None when they are already what the change asks."""
    tags = change.apply(snap.body.tags)
    if tags == snap.body.tags:
        return None
    return replace(snap.body, tags=tags, original=snap.body.original or snap.name)


def retag(
    repo: Repository, snap: StoredSnapshot, body: SnapshotBody, others: list[StoredSnapshot]
) -> ObjectName:
    """Replace `snap` by a snapshot with `body`; returns the new snapshot's name.

    `others` are the repository's snapshots as the caller read them: one that already holds
    exactly `body` (a rerun after a crash) is taken instead of writing another. The caller holds
    a session, so a prune running meanwhile keeps what the new snapshot names.
    """
    wanted = encode_body(body)
    done = next((o for o in others if o.name != snap.name and encode_body(o.body) == wanted), None)
    name = done.name if done is not None else repo.commit_snapshot(body, _refs(repo, snap))
    crashpoint("tag.remove-old")
    with contextlib.suppress(NotFound):  # a forget, or another tag, removed it meanwhile
        repo.backend.remove(Handle(ObjectKind.SNAPSHOT, snap.name.hex))
    return name


def _refs(repo: Repository, snap: StoredSnapshot) -> set[ChunkId]:
    """What the old snapshot references, read from its reflists (the new one names the same)."""
    refs: set[ChunkId] = set()
    for reflist in snap.record.reflists:
        refs.update(repo.read_reflist(reflist))
    return refs
