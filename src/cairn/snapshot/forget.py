"""forget: group snapshots, apply a retention policy, remove the snapshot objects not kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import NotFound
from cairn.core.crashpoints import crashpoint
from cairn.repository.repository import Repository, StoredSnapshot
from cairn.snapshot.retention import Candidate, Decision, Policy, apply_policy
from cairn.snapshot.select import snapshot_time

GROUP_FIELDS = ("host", "paths", "tags")


@dataclass(slots=True)
class ForgetGroup:
    """One group's key (host, paths, tags as chosen) and its decisions, newest first."""

    key: dict[str, str]
    decisions: list[Decision] = field(default_factory=list)


def group_key(snap: StoredSnapshot, group_by: tuple[str, ...]) -> tuple[str, ...]:
    body = snap.body
    values = {
        "host": body.host,
        "paths": ",".join(sorted(body.paths)),
        "tags": ",".join(sorted(body.tags)),
    }
    return tuple(values[f] for f in group_by)


def plan_forget(
    snaps: list[StoredSnapshot], policy: Policy, group_by: tuple[str, ...]
) -> list[ForgetGroup]:
    """Decide every snapshot: the groups in a stable order, each newest first."""
    groups: dict[tuple[str, ...], list[StoredSnapshot]] = {}
    for snap in snaps:
        groups.setdefault(group_key(snap, group_by), []).append(snap)
    planned = []
    for key in sorted(groups):
        candidates = [
            Candidate(s.name.hex, snapshot_time(s), tuple(s.body.tags)) for s in groups[key]
        ]
        planned.append(
            ForgetGroup(dict(zip(group_by, key, strict=True)), apply_policy(policy, candidates))
        )
    return planned


def remove_snapshots(
    repo: Repository, names: list[str], on_removed: Callable[[str], None] | None = None
) -> int:
    """Remove snapshot objects by full hex name; a name already gone is not an error."""
    removed = 0
    for name in names:
        crashpoint("forget.remove")
        try:
            repo.backend.remove(Handle(ObjectKind.SNAPSHOT, name))
        except NotFound:
            continue
        removed += 1
        if on_removed is not None:
            on_removed(name)
    return removed
