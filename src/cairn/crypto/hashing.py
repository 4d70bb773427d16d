"""Object names: BLAKE3-256 of an object's bytes, verifiable by anyone without keys."""

from __future__ import annotations

import blake3

from cairn.core.errors import IntegrityError
from cairn.core.ids import ObjectName


def object_name(data: bytes | memoryview) -> ObjectName:
    """The name of an object holding exactly `data`."""
    return ObjectName(blake3.blake3(data, max_threads=1).digest())


def verify_object(name: ObjectName, data: bytes | memoryview) -> None:
    """Raise IntegrityError unless `data` hashes to `name`."""
    actual = object_name(data)
    if actual != name:
        raise IntegrityError(f"object {name.short()} holds bytes that hash to {actual.short()}")
