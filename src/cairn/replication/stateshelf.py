"""Where the server's sealed states live on a target, and the copy back (design 17.15):
`<target>/<server-id>/server-state/` holds the newest few states as `snapshots` objects whose
names sort by time; restore-from reads the newest, and copies each tenant's objects back,
re-hashed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError, NotFound
from cairn.backends.location import open_backend
from cairn.replication.engine import SEND_ORDER
from cairn.replication.errors import NoServerState, ServerIdNeeded
from cairn.replication.layout import tenant_location
from cairn.replication.transfer import hashes_to_name

STATE_FOLDER = "server-state"
KEEP = 5
"""States kept on each target: the newest few, so one damaged or rolled-back copy is not all."""
KIND = ObjectKind.SNAPSHOT
"""The kind the states are stored as (the backend protocol names objects by kind)."""
_SERVER_ID = re.compile(r"^[0-9a-f]{32}$")
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def state_location(location: str, server: str) -> str:
    """`<target>/<server-id>/server-state`, a backend location of its own."""
    return tenant_location(location, server, STATE_FOLDER)


def push(backend: Backend, name: str, blob: bytes, keep: int = KEEP) -> None:
    """Save one sealed state, then remove all but the newest `keep`."""
    backend.save(Handle(KIND, name), blob)
    names = sorted(info.handle.name for info in backend.list(KIND))
    for old in names[:-keep]:
        with contextlib.suppress(NotFound):
            backend.remove(Handle(KIND, old))


def newest(backend: Backend, where: str) -> bytes:
    """The bytes of the newest state at `backend` (NoServerState when it holds none)."""
    try:
        names = sorted(info.handle.name for info in backend.list(KIND))
    except NotFound:
        names = []
    if not names:
        raise NoServerState(f"{where} holds no server state (cairn server state-key set, 17.15)")
    return backend.load(Handle(KIND, names[-1]))


def find_server_ids(location: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The server IDs with a `server-state/` at `location`: a local or NAS folder, or an S3
    prefix (both list folders); other kinds cannot through the backend protocol, so they need
    the ID given (ServerIdNeeded)."""
    if location.startswith("s3:"):
        return _s3_server_ids(location, environ)
    if _REMOTE.match(location) and not location.startswith("local:"):
        raise ServerIdNeeded(
            f"{location} cannot be searched for servers: give --server-id (the 32-hex-digit "
            "folder name at the location)"
        )
    root = Path(location.removeprefix("local:")).expanduser()
    try:
        entries = sorted(p.name for p in root.iterdir() if (p / STATE_FOLDER).is_dir())
    except OSError as exc:
        raise NoServerState(f"cannot read {root}: {exc.strerror or exc}") from exc
    return [name for name in entries if _SERVER_ID.match(name)]


def _s3_server_ids(location: str, environ: Mapping[str, str] | None) -> list[str]:
    """The `<id>/` "folders" under an S3 prefix (a delimiter listing) that hold a state."""
    import botocore.exceptions  # only an S3 location pays for boto3

    from cairn.backends.s3 import parse_location, s3_client

    where = parse_location(location)
    client = s3_client(where.endpoint, 1, 60.0, environ)
    base = f"{where.prefix}/" if where.prefix else ""
    try:
        found: list[str] = []
        options = {"Bucket": where.bucket, "Prefix": base, "Delimiter": "/"}
        while True:
            page = client.list_objects_v2(**options)
            found += [p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
            if not page.get("IsTruncated"):
                break
            options["ContinuationToken"] = page["NextContinuationToken"]
        ids = [name for name in found if _SERVER_ID.match(name)]
        return sorted(
            name
            for name in ids
            if client.list_objects_v2(
                Bucket=where.bucket, Prefix=f"{base}{name}/{STATE_FOLDER}/", MaxKeys=1
            ).get("KeyCount")
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise NoServerState(f"cannot list {location}: {exc}") from exc
    finally:
        client.close()


def choose_server_id(
    location: str, given: str | None, environ: Mapping[str, str] | None = None
) -> str:
    """The server ID to restore: the one given, or the only one found (`environ`: the
    credentials to list with, the process's by default)."""
    if given is not None:
        if not _SERVER_ID.match(given):
            raise ServerIdNeeded(f"{given!r} is not a server ID (32 hex digits)")
        return given
    found = find_server_ids(location, environ)
    if not found:
        raise NoServerState(f"{location} holds no server's state")
    if len(found) > 1:
        raise ServerIdNeeded(
            f"{location} holds the state of {len(found)} servers: give --server-id, one of "
            + ", ".join(found)
        )
    return found[0]


@dataclass(slots=True)
class CopyReport:
    """What copying one tenant's objects back did."""

    objects: int = 0
    bytes: int = 0
    damaged: list[str] = field(default_factory=list)
    present: int = 0
    """Objects the storage held already with the same size (names are hashes: the same bytes),
    as a restore onto the storage a lost server used finds them."""


def _holds(into: Backend, handle: Handle, size: int) -> bool:
    try:
        return into.stat(handle).size == size
    except NotFound:
        return False


def copy_tenant(
    location: str,
    server: str,
    tenant_id: str,
    into: Backend,
    opener: Callable[[str], Backend] = open_backend,
) -> CopyReport:
    """Copy every object (not locks) of one tenant's copy on a target into `into`, in the send
    order (data before what names it), each re-hashed first: a damaged one is named, not
    written."""
    report = CopyReport()
    source = opener(tenant_location(location, server, tenant_id))
    try:
        for kind in SEND_ORDER:
            for info in list(source.list(kind)):
                if _holds(into, info.handle, info.size):
                    report.present += 1
                    continue
                data = source.load(info.handle)
                if not hashes_to_name(info.handle, data):
                    report.damaged.append(f"{tenant_id}/{info.handle}")
                    continue
                into.save(info.handle, data)
                report.objects += 1
                report.bytes += len(data)
    finally:
        with contextlib.suppress(BackendError):
            source.close()
    return report
