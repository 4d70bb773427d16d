"""Argument checks every backend applies before touching storage: object names and read ranges.

Names are checked before any path or key is built from them, so a name like ``../x`` can never
reach outside a backend's layout.
"""

from __future__ import annotations

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import BackendError
from cairn.core.ids import is_hex_name

CONFIG_NAME = "config"


def check_handle(handle: Handle) -> None:
    """Raise BackendError unless `handle` names a valid object of its kind.

    ``config`` is the only name of the CONFIG kind; every other kind takes 64 lowercase hex digits.
    """
    if handle.kind is ObjectKind.CONFIG:
        valid = handle.name == CONFIG_NAME
    else:
        valid = is_hex_name(handle.name)
    if not valid:
        raise BackendError(f"invalid object name {handle.name!r} for kind {handle.kind.value}")


def read_span(size: int, offset: int, length: int | None, handle: Handle) -> int:
    """How many bytes a load of `handle` (of `size` bytes) must return; raise if out of range."""
    if offset < 0 or (length is not None and length < 0):
        raise BackendError(f"invalid range offset={offset} length={length} for {handle}")
    wanted = size - offset if length is None else length
    if offset + wanted > size or wanted < 0:
        raise BackendError(
            f"range offset={offset} length={length} is beyond the end of {handle} ({size} bytes)"
        )
    return wanted
