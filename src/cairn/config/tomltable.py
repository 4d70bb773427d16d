"""Checking a TOML table key by key, so that a configuration error names the file, the key and
what is allowed (the agent's file, the server's notification file). Standard library only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cairn.core.errors import CairnError
from cairn.core.units import parse_interval

T = TypeVar("T")
DURATION = "a duration such as 90s, 15m, 6h, 2d"


class ConfigError(CairnError):
    """A configuration file is unusable; the message names the file and the key."""


class Table:
    """One TOML table being read: hands out values by key, and knows the keys still unread."""

    def __init__(self, file: Path, where: str, data: object) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {where or 'the file'}: must be a table")
        self.file = file
        self.where = where
        self._data: dict[str, Any] = data
        self._unread = set(data)

    def key(self, name: str) -> str:
        if not name:
            return self.where
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key(name)}: {problem}")

    def has(self, name: str) -> bool:
        return name in self._data

    def peek(self, name: str) -> Any:
        return self._data.get(name)

    def renamed(self, where: str) -> Table:
        self.where = where
        return self

    def raw(self, name: str) -> Any:
        self._unread.discard(name)
        return self._data.get(name)

    def get(self, name: str, kind: type[T], allowed: str, default: T | None = None) -> T | None:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"{value!r} is not allowed; expected {allowed}")
        return value

    def need(self, name: str, kind: type[T], allowed: str) -> T:
        value = self.get(name, kind, allowed)
        if value is None:
            raise self.fail(name, f"is required ({allowed})")
        return value

    def parsed(self, name: str, parse: Callable[[str], T], allowed: str) -> T | None:
        text = self.get(name, str, allowed)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            raise self.fail(name, f"{text!r} is not allowed; expected {allowed}") from exc

    def strings(self, name: str, allowed: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, f"{value!r} is not allowed; expected {allowed}")
        return tuple(value)

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.get(name, str, " or ".join(choices))
        if value is None:
            return default
        if value not in choices:
            raise self.fail(name, f"{value!r} is not allowed; one of {', '.join(choices)}")
        return value

    def tables(self, name: str) -> list[Table]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            value = [value]
        return [Table(self.file, f"{self.key(name)}[{i}]", v) for i, v in enumerate(value)]

    def table(self, name: str) -> Table | None:
        value = self.raw(name)
        return None if value is None else Table(self.file, self.key(name), value)

    def done(self, allowed: tuple[str, ...]) -> None:
        """Refuse the keys nobody read: they are typos or options of another version."""
        if self._unread:
            name = sorted(self._unread)[0]
            raise self.fail(name, f"unknown key; allowed here: {', '.join(allowed)}")


def positive(t: Table, name: str, default: float | None = None) -> float:
    value = t.parsed(name, parse_interval, DURATION)
    if value is None:
        if default is None:
            raise t.fail(name, f"is required ({DURATION})")
        return default
    if value <= 0:
        raise t.fail(name, "must be more than 0")
    return value
