"""Loading a whole content-addressed object and proving it is the one its name promises."""

from __future__ import annotations

from cairn.backends.base import Backend, Handle
from cairn.backends.errors import NotFound
from cairn.core.ids import ObjectName
from cairn.crypto.hashing import verify_object
from cairn.repository.errors import ObjectMissing


def load_verified(backend: Backend, handle: Handle) -> bytes:
    """The bytes of `handle`, checked to hash to its name; a missing object is `ObjectMissing`."""
    try:
        data = backend.load(handle)
    except NotFound as exc:
        raise ObjectMissing(f"{handle} is missing from storage") from exc
    verify_object(ObjectName.from_hex(handle.name), data)
    return data
