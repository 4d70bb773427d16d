"""Where each tenant's objects are kept: the ONE factory of tenants' raw backends (design 14.15).

Everything above it (accounting, and later the epoch fence and the replication journal) is built
by `server/tenantstore.py` over what this factory opens; a server that keeps its tenants
elsewhere (a bucket instead of the data folder) plugs in another `RawBackends` here and changes
nothing else. The tenant's ID (random, made by the server) is the only thing that names a place,
never request text.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cairn.backends.base import Backend
from cairn.backends.local import LocalBackend
from cairn.backends.location import open_backend

if TYPE_CHECKING:
    from cairn.server.context import Settings


class RawBackends(Protocol):
    """Makes and opens the raw backend of a tenant, by its ID."""

    def create(self, tenant_id: str) -> None:
        """Make the new tenant's empty repository layout."""
        ...

    def open(self, tenant_id: str) -> Backend:
        """The tenant's backend, with nothing stacked on it."""
        ...

    def storage_location(self, folder: str) -> str | None:
        """The backend location of `folder` in the tenants' storage; None for the data folder."""
        ...

    def open_copy(self, place: CopyPlace, create: bool) -> Backend:
        """The raw backend of a copy another server replicates into a tenant (design 17.14);
        with `create`, its empty layout is made first where the kind needs one."""
        ...


COPY_SEGMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
"""A segment of a copy's path inside its area: no dot, no slash, so it can name a folder."""


@dataclass(frozen=True, slots=True)
class CopyPlace:
    """Where one copy lives: `folder` (`copies`, or `removed` for what was moved aside), the
    area tenant's ID, and the copy's two segments `<server-id>/<tenant-id>`, checked here
    because they come from a request's path."""

    folder: str
    tenant_id: str
    server: str
    copy: str

    def __post_init__(self) -> None:
        if self.folder not in ("copies", "removed"):
            raise ValueError(f"no copy folder {self.folder!r}")
        if not (COPY_SEGMENT.fullmatch(self.server) and COPY_SEGMENT.fullmatch(self.copy)):
            raise ValueError("a copy's path is two segments of lowercase letters, digits, dashes")

    @property
    def relative(self) -> str:
        return f"{self.folder}/{self.tenant_id}/{self.server}/{self.copy}"


class LocalLayouts:
    """One local-backend layout per tenant under `root` (``<data>/tenants/<tenant id>/``)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._open: dict[str, Backend] = {}
        self._guard = threading.Lock()

    def create(self, tenant_id: str) -> None:
        LocalBackend.create(self._root / tenant_id)

    def open(self, tenant_id: str) -> Backend:
        with self._guard:
            backend = self._open.get(tenant_id)
            if backend is None:
                backend = self._open[tenant_id] = LocalBackend(self._root / tenant_id)
            return backend

    def storage_location(self, folder: str) -> str | None:
        return None

    def open_copy(self, place: CopyPlace, create: bool) -> Backend:
        """Under the data folder: ``<data>/copies/<tenant id>/<server>/<copy>/``."""
        path = self._root.parent / place.relative
        with self._guard:
            backend = self._open.get(place.relative)
            if backend is None or (create and not path.is_dir()):
                maker = LocalBackend.create if create else LocalBackend
                backend = self._open[place.relative] = maker(path)
            return backend


class StoredLayouts:
    """Each tenant under ``LOCATION/tenants/<tenant id>`` of a backend location (an S3 bucket,
    `serve --storage`): the database stays in the data folder; a prefix needs no making."""

    def __init__(self, location: str) -> None:
        self._location = location.rstrip("/")
        self._open: dict[str, Backend] = {}
        self._guard = threading.Lock()

    def create(self, tenant_id: str) -> None:
        """Nothing to make: a prefix in a bucket exists once an object is under it."""

    def open(self, tenant_id: str) -> Backend:
        with self._guard:
            backend = self._open.get(tenant_id)
            if backend is None:
                location = f"{self._location}/tenants/{tenant_id}"
                backend = self._open[tenant_id] = open_backend(location)
            return backend

    def storage_location(self, folder: str) -> str | None:
        return f"{self._location}/{folder}"

    def open_copy(self, place: CopyPlace, create: bool) -> Backend:
        """``LOCATION/copies/<tenant id>/<server>/<copy>``: a prefix, made by its first object."""
        with self._guard:
            backend = self._open.get(place.relative)
            if backend is None:
                location = f"{self._location}/{place.relative}"
                backend = self._open[place.relative] = open_backend(location)
            return backend


def raw_backends(settings: Settings, storage: str | None = None) -> RawBackends:
    """The factory of the server's tenants' raw backends: the data folder's ``tenants/``, or
    `storage`, a backend location (`serve --storage`, recorded in the data folder by
    app.tenant_storage)."""
    if storage is None:
        return LocalLayouts(settings.data / "tenants")
    return StoredLayouts(storage)
