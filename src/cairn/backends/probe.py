"""The capability probe: prove a backend does what the contract needs before trusting it with
data (a server runs it at start against the storage its tenants will live on).

It writes a probe object, reads it back whole and in part, finds it in a listing, checks that
saving other bytes under its name is refused (a store that silently overwrites, such as an S3
server that ignores If-None-Match, would fail here), removes it and checks it is gone.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import AlreadyExists, BackendError


class ProbeFailed(BackendError):
    """The storage failed one step of the capability probe; the message names the step."""


def probe(backend: Backend, name_of: Callable[[bytes], str] | None = None) -> None:
    """Run every step against `backend`; raise ProbeFailed at the first that fails. With
    `name_of`, the probe object is named by it (a Cairn server stores only objects that hash
    to their names; backends may not import the hash, so the caller passes it)."""
    data = b"cairn capability probe " + secrets.token_bytes(64)
    handle = Handle(ObjectKind.LOCK, name_of(data) if name_of else secrets.token_hex(32))
    where = backend.location()

    def step(name: str, check: Callable[[], bool]) -> None:
        try:
            ok = check()
        except BackendError as exc:
            raise ProbeFailed(f"the storage at {where} failed the probe at {name}: {exc}") from exc
        if not ok:
            raise ProbeFailed(f"the storage at {where} failed the probe at {name}")

    step("write", lambda: _done(backend.save, handle, data))
    try:
        step("read", lambda: backend.load(handle) == data)
        step("ranged read", lambda: backend.load(handle, 5, 10) == data[5:15])
        step("list", lambda: any(i.handle == handle for i in backend.list(handle.kind)))
        step("refusing an overwrite", lambda: _refuses_overwrite(backend, handle, data))
    finally:
        step("delete", lambda: _done(backend.remove, handle))
    step("delete", lambda: not backend.exists(handle))


def _done(action: Callable[..., None], *args: object) -> bool:
    action(*args)
    return True


def _refuses_overwrite(backend: Backend, handle: Handle, data: bytes) -> bool:
    try:
        backend.save(handle, data + b" but other bytes")
    except AlreadyExists:
        return backend.load(handle) == data
    return False
