"""The agent's configuration as data (design 15.2): what `config.py` makes of the TOML file.

Every other agent module takes these types; only `config.py` knows TOML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cairn.notify.message import AlertPolicy, ChannelSpec


@dataclass(frozen=True, slots=True)
class Window:
    """An upload limit that applies between two local times of day (`end` may be past midnight)."""

    start: str
    end: str
    limit: int
    """Bytes a second."""


@dataclass(frozen=True, slots=True)
class Every:
    interval_s: float


@dataclass(frozen=True, slots=True)
class Cron:
    expression: str


@dataclass(frozen=True, slots=True)
class At:
    times: tuple[str, ...]
    """Local "HH:MM" times."""
    days: tuple[str, ...] = ()
    """"mon" … "sun"; empty: every day."""


@dataclass(frozen=True, slots=True)
class Continuous:
    debounce_s: float = 30.0
    min_interval_s: float = 600.0


@dataclass(frozen=True, slots=True)
class WhenReachable:
    interval_s: float = 86400.0
    probe_s: float = 300.0


Schedule = Every | Cron | At | Continuous | WhenReachable


@dataclass(frozen=True, slots=True)
class HookSpec:
    when: str
    """"before", "after", "failure" or "always"."""
    run: tuple[str, ...] | str
    """An argument vector, or a string run by /bin/sh -c."""
    timeout_s: float = 600.0


@dataclass(frozen=True, slots=True)
class DumpSpec:
    kind: str
    """"postgresql" or "mysql" (MariaDB too)."""
    database: str
    """A database name, or "all"."""
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password_file: str | None = None
    options: tuple[str, ...] = ()
    """Extra arguments for pg_dump / mysqldump."""
    timeout_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    repository: str
    paths: tuple[str, ...]
    schedule: Schedule
    exclude: tuple[str, ...] = ()
    password_file: str | None = None
    password_command: str | None = None
    token_file: str | None = None
    tags: tuple[str, ...] = ()
    hooks: tuple[HookSpec, ...] = ()
    dumps: tuple[DumpSpec, ...] = ()
    retries: int = 3
    retry_backoff_s: float = 60.0
    timeout_s: float = 12 * 3600.0
    upload_limit: int | None = None
    priority: str | None = None
    """"low" or "normal"; None: the agent's."""
    suspended: bool = False


@dataclass(frozen=True, slots=True)
class AgentSpec:
    state: Path
    jobs: tuple[JobSpec, ...]
    jitter_s: float = 300.0
    upload_limit: int | None = None
    upload_windows: tuple[Window, ...] = ()
    priority: str = "normal"
    host: str | None = None
    """The name reported in notifications and to servers; None: the machine's host name."""
    channels: tuple[ChannelSpec, ...] = ()
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
