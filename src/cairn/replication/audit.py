"""The audit of one tenant's copy on a target (design 17.7): both sides listed and compared,
what is missing sent (hashed at the source, verified on the target), the rest reported.

It is the net under the journal: an object saved by a server that died before journalling it,
or one a run passed because it was damaged at the source and that is good again, is found here.
It never deletes: an object on the target that the server lacks is only reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import NotFound
from cairn.replication.model import AuditReport
from cairn.replication.transfer import Sender, hashes_to_name


def run_audit(
    source: Backend,
    target: Backend,
    tenant_id: str,
    report: AuditReport,
    *,
    kinds: Sequence[ObjectKind],
    wanted: set[Handle] | None,
    read_data: bool = False,
) -> None:
    """Audit one tenant's `kinds`, in sending order. With `wanted`, only those objects are the
    target's to hold (only-new, a token filter); the others are neither sent nor reported.
    With `read_data`, every copy of the right size is also read and hashed: a flipped byte keeps
    the size, so only reading finds it (a listing costs a request a thousand objects; this, one
    an object and all their bytes)."""
    held = {kind: _listing(source, kind) for kind in kinds}
    if not any(held.values()):
        if any(_listing(target, kind) for kind in kinds):
            report.source_empty.append(tenant_id)
        return
    sender = Sender()
    for kind in kinds:
        copies = _listing(target, kind)
        for name, size in held[kind].items():
            handle = Handle(kind, name)
            if wanted is not None and handle not in wanted and kind is not ObjectKind.CONFIG:
                continue
            where = f"{tenant_id}/{handle}"
            if name not in copies:
                sender.send(source, target, handle, size, where=tenant_id, missing=True)
            elif copies[name] != size or (read_data and _damaged(source, target, handle)):
                report.mismatched_on_target.append(where)
        report.extra_on_target += [
            f"{tenant_id}/{kind.value}/{name}" for name in copies if name not in held[kind]
        ]
    report.objects_sent += sender.sent
    report.bytes_sent += sender.bytes_sent
    report.damaged_at_source += sender.damaged


def _damaged(source: Backend, target: Backend, handle: Handle) -> bool:
    """Whether the target's copy of `handle` is not the object: it does not hash to its name
    (`config`, named by role, not by hash: it differs from the server's)."""
    try:
        held = target.load(handle)
    except NotFound:
        return True  # listed, then gone: the next audit sends it
    if handle.kind is ObjectKind.CONFIG:
        return held != source.load(handle)
    return not hashes_to_name(handle, held)


def _listing(backend: Backend, kind: ObjectKind) -> dict[str, int]:
    return {info.handle.name: info.size for info in backend.list(kind)}
