"""Sizes as people write them: 16MiB, 512k, 1G."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse ``16MiB``, ``512k``, ``1G`` or a plain byte count."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 512KiB, 16MiB, 1G)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_size(n: float) -> str:
    """Human-readable binary size: ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_RATE = re.compile(r"^\s*(.+?)\s*/\s*s\s*$", re.IGNORECASE)


def parse_interval(text: str) -> float:
    """Parse ``90s``, ``15m``, ``6h``, ``2d``, ``1w`` or plain seconds; returns seconds.

    An interval is short: ``m`` is minutes. A retention span (`--keep-within`), where ``m`` is
    months, is `cairn.snapshot.retention.parse_retention_span`."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 15m, 6h, 2d)")
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[(unit or "s").lower()]


def parse_rate(text: str) -> int:
    """Parse a rate such as ``20 MiB/s`` (or a plain size, meaning per second); bytes a second."""
    match = _RATE.match(text)
    return parse_size(match.group(1) if match else text)


def format_duration(seconds: float) -> str:
    """A duration as people read it: ``0.4s``, ``12s``, ``3m05s``, ``2h04m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
