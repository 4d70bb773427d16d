"""Typed field access for decoded maps: every decoder checks types through these."""

from __future__ import annotations

from typing import Any

from cairn.core.errors import FormatError, UnsupportedFormat
from cairn.core.ids import ID_SIZE


def require_map(obj: Any, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise FormatError(f"{what} is not a map")
    return obj


def require_version(obj: dict[str, Any], what: str, version: int) -> None:
    if obj.get("v") != version:
        raise UnsupportedFormat(f"{what} format version {obj.get('v')!r} is not supported")


def get_bytes(obj: dict[str, Any], key: str, size: int | None = None) -> bytes:
    value = obj.get(key)
    if not isinstance(value, bytes):
        raise FormatError(f"field {key!r} is not bytes")
    if size is not None and len(value) != size:
        raise FormatError(f"field {key!r} has {len(value)} bytes, expected {size}")
    return value


def get_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise FormatError(f"field {key!r} is not text")
    return value


def get_int(obj: dict[str, Any], key: str, low: int = 0, high: int = 2**63) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FormatError(f"field {key!r} is not an integer in [{low}, {high}]")
    return value


def get_list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise FormatError(f"field {key!r} is not a list")
    return value


def as_id(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != ID_SIZE:
        raise FormatError(f"{what} is not a 32-byte ID")
    return value


def as_int(value: Any, what: str, low: int = 0, high: int = 2**63) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FormatError(f"{what} is not an integer in [{low}, {high}]")
    return value
