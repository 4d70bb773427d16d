"""`cairn server restore-from LOCATION` (design 17.15): a whole server rebuilt from a target —
the newest sealed state opened with the operator's passphrase, imported into a new data folder
under the same server ID (with the state key and the certificate), then every tenant's objects
copied back from `LOCATION/<server-id>/<tenant-id>/`, each re-hashed.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn.backends.errors import BackendError
from cairn.backends.location import open_backend
from cairn.core.clock import Clock
from cairn.replication.errors import CopiedObjectsDamaged, StateSealDamaged
from cairn.replication.layout import SERVER_ID_FILE
from cairn.replication.sealedstate import StateKey, open_sealed, read_header, save_key
from cairn.replication.stateshelf import choose_server_id, copy_tenant, newest, state_location
from cairn.server.adminops import Actor
from cairn.server.app import init_data_folder, open_services, probe_storage
from cairn.server.context import Settings
from cairn.server.state import check_document, require_empty
from cairn.server.statecarry import TLS_FILES

WRAPPED_FIELDS = ("kdf", "t", "m", "p", "salt", "nonce", "wrapped")


@dataclass(slots=True)
class Restored:
    """What restore-from did, for the command's output."""

    server_id: str
    exported_ms: int
    imported: dict[str, int]
    objects: int = 0
    bytes: int = 0
    present: int = 0
    tenants: list[str] = field(default_factory=list)


def read_state(
    location: str, given_id: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, bytes]:
    """The server ID and the newest sealed state at `location` (not opened yet)."""
    server = choose_server_id(location, given_id, environ)
    where = state_location(location, server)
    backend = open_backend(where, environ=environ)
    try:
        return server, newest(backend, where)
    finally:
        with contextlib.suppress(BackendError):
            backend.close()


def restore_from(
    settings: Settings,
    location: str,
    given_id: str | None,
    passphrase: bytes,
    actor: Actor,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
) -> Restored:
    """Rebuild the server at `settings.data` (new or empty) from `location`, opened with
    `environ` (the process's environment by default; `--credentials` lays a file over it).
    The tenants' objects go where `settings.storage` says (`--storage`), or into the data
    folder."""
    require_empty(settings.data)
    server, blob = read_state(location, given_id, environ)
    payload, key = open_sealed(blob, passphrase)
    header = read_header(blob)[0]
    if header.get("server_id") != server:
        raise StateSealDamaged(f"the newest state under {server} is another server's")
    document = payload.get("state")
    check_document(document)
    _prepare(settings.data, server, StateKey(key, server, _wrapped(header)), payload.get("tls"))
    services = open_services(settings, clock=clock)
    probe_storage(services)  # `--storage` proved as `serve` proves it, before a byte is copied
    restored = Restored(server, int(header.get("exported_ms", 0)), {})
    restored.imported = services.admin.import_state(actor, document)
    damaged: list[str] = []
    for tenant in services.tenants.all():
        into = services.tenants.backend(tenant)
        opener = functools.partial(open_backend, environ=environ)
        report = copy_tenant(location, server, tenant.id, into, opener)
        restored.objects += report.objects
        restored.bytes += report.bytes
        restored.present += report.present
        restored.tenants.append(tenant.name)
        damaged += report.damaged
        services.tenants.recount(tenant)
    if damaged:
        shown = ", ".join(damaged[:20]) + (" …" if len(damaged) > 20 else "")
        raise CopiedObjectsDamaged(
            f"{len(damaged)} objects at {location} do not hash to their names and were not "
            f"copied (everything else was): {shown}"
        )
    return restored


def _wrapped(header: dict[str, Any]) -> dict[str, Any]:
    return {name: header[name] for name in WRAPPED_FIELDS if name in header}


def _prepare(data: Path, server: str, key: StateKey, tls: Any) -> None:
    """The new data folder with the old server ID, the state key and the certificate, before
    anything opens it (which would make a new ID)."""
    init_data_folder(data)
    _write_private(data / SERVER_ID_FILE, server + "\n")
    save_key(data, key)
    if isinstance(tls, dict) and tls:
        (data / "tls").mkdir(mode=0o700, exist_ok=True)
        for name in TLS_FILES:
            if isinstance(tls.get(name), str):
                _write_private(data / "tls" / name, tls[name])


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
