"""What a notification says, and the settings of the channels that carry it (design 15.6).

Shared by the agent and the server; parsed from TOML by `cairn.agent.config` (and the server's
`--notify` file) into these types, carried by `email.py` and `webhook.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class EventKind(Enum):
    FAILURE = "failure"
    RECOVERY = "recovery"
    SILENCE = "silence"
    REPORT = "report"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing to tell: a job failed, recovered or went silent, or a summary report."""

    kind: EventKind
    host: str
    job: str
    subject: str
    """One line, for an e-mail subject or a chat message."""
    text: str
    """Plain text: what happened, the error code, what to do, the log's last lines."""
    details: dict[str, object] = field(default_factory=dict)
    """The same as data (outcome, error code, times, snapshot ID), for webhooks."""


@dataclass(frozen=True, slots=True)
class EmailSpec:
    smtp_host: str
    smtp_port: int
    security: str
    """"starttls", "tls" or "none" (none only to a loopback address)."""
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password_file: str | None = None
    on: frozenset[EventKind] = frozenset(EventKind)
    ca_file: str | None = None
    """Trust this CA (PEM) instead of the system's, for a server with a private certificate."""
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    url: str
    secret_file: str | None = None
    """HMAC-SHA256 of the body with this secret goes in X-Cairn-Signature."""
    on: frozenset[EventKind] = frozenset(EventKind)
    ca_file: str | None = None
    timeout_s: float = 30.0


ChannelSpec = EmailSpec | WebhookSpec


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    silence_after_s: float | None = 26 * 3600
    repeat_s: float = 24 * 3600
    """While a job keeps failing, tell again at most this often."""
    report_every: str | None = None
    """"daily" or "weekly" (None: no summary report)."""
    report_at: str = "07:00"
    report_day: str = "mon"


class Channel(Protocol):
    """Carries events: e-mail or a webhook. `send` raises NotifyError when it cannot."""

    def send(self, event: Event) -> None: ...


class Outcome(Enum):
    SUCCESS = "success"
    WARNING = "warning"
    """The snapshot was saved, but some files could not be read."""
    FAILURE = "failure"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run of one job, as the agent's history keeps it and the alerts and reports read it."""

    job: str
    host: str
    started: float
    """Seconds since the epoch."""
    ended: float
    outcome: Outcome
    attempt: int = 1
    snapshot: str | None = None
    files: int = 0
    bytes_added: int = 0
    error_code: str | None = None
    message: str = ""
    log_path: str | None = None
    log_tail: str = ""
