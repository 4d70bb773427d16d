"""msgpack with hard limits: the one encoding of every structured object."""

from __future__ import annotations

from typing import Any

import msgpack

from cairn.core.errors import FormatError

# Limits bound what a crafted object can make a decoder allocate.
MAX_BIN = 64 * 1024 * 1024
MAX_ARRAY = 16 * 1024 * 1024
MAX_MAP = 1024 * 1024


def packb(obj: Any) -> bytes:
    """Encode one object."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpackb(data: bytes | memoryview) -> Any:
    """Decode one object, refusing trailing bytes, oversize containers and non-string map keys."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=MAX_BIN,
            max_str_len=MAX_BIN,
            max_array_len=MAX_ARRAY,
            max_map_len=MAX_MAP,
            max_ext_len=0,
        )
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
        msgpack.OutOfData,
        UnicodeDecodeError,
    ) as exc:
        raise FormatError(f"malformed object encoding: {exc}") from exc
