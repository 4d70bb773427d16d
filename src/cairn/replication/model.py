"""The words of replication as data (design 17.1): a target, its mode, its filters, and what a
run did. Shared by the journal and engine (`journal.py`, `engine.py`) and the target registry
and CLI (`targets.py`, `cairn server target …`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from cairn.backends.base import ObjectKind


class Mode(Enum):
    """What a target does with the server's deletions (design 17.5)."""

    COPY = "copy"
    """Never deletes on the target (the default)."""
    MIRROR = "mirror"
    """Propagates the server's own journalled deletions after the quarantine delay."""
    ONLY_NEW = "only-new"
    """Replicates only what the journal records after the target was added (or `since`)."""


class Action(Enum):
    """One journal entry's change to a tenant's storage."""

    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One save or removal the server made in a tenant's storage, in the order it made them."""

    seq: int
    tenant_id: str
    kind: ObjectKind
    name: str
    size: int
    action: Action
    at_ms: int
    token: str = ""
    """The public ID of the token whose request made the change ('' for the server's own
    maintenance): what a target's machine filter matches."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Which changes a target takes. Empty means all."""

    tenants: tuple[str, ...] = ()
    """Tenant names."""
    tokens: tuple[str, ...] = ()
    """Public token IDs (the machines that uploaded)."""
    kinds: tuple[ObjectKind, ...] = ()
    """Object kinds. A repository copy needs config and keys: they are always sent."""


@dataclass(frozen=True, slots=True)
class Target:
    """One place the server replicates to (`cairn server target add`)."""

    name: str
    location: str
    """A backend location (design 6): a folder, `sftp:`, `s3:`, `webdav:`, `ftp://`, or
    `cairns://host:port` (another Cairn server, with a replication token)."""
    mode: Mode = Mode.COPY
    priority: int = 100
    """Lower runs first when several targets are due."""
    retries: int = 5
    backoff_s: float = 30.0
    """First wait after a failed run; doubles up to an hour."""
    limit_bps: int | None = None
    """Upload limit in bytes per second; None is unlimited."""
    windows: tuple[str, ...] = ()
    """Time-of-day windows (`22:00-06:00`) when the limit applies; empty is always."""
    schedule: str = "continuous"
    """`continuous` (a new object starts within seconds), `every 15m`, or a cron line."""
    filters: Filters = field(default_factory=Filters)
    paused: bool = False
    since_seq: int = 0
    """For only-new: the journal's head when the target was added (or at `--since`); the
    target takes the entries after it (and every config and keys entry, 17.5)."""
    quarantine_s: int = 14 * 86400
    """For mirror: how long a deletion waits on the target (restorable there meanwhile)."""
    max_delete_count: int = 1000
    """For mirror: more deletions than this in one run stop the target and alert."""
    max_delete_bytes: int = 50 * 2**30
    created_ms: int = 0
    credentials: str | None = None
    """The absolute path of the target's credentials file (design 17.9), read at each open and
    laid over the server's environment; None: the server's environment alone. Never a secret."""


@dataclass(slots=True)
class RunReport:
    """What one replication run to one target did."""

    target: str
    started_ms: int
    ended_ms: int = 0
    objects_sent: int = 0
    bytes_sent: int = 0
    objects_skipped: int = 0
    """Already on the target (same name and size)."""
    deletions: int = 0
    """Objects deleted on the target (mirror, once their quarantine was due)."""
    quarantined: int = 0
    """Removals this run put in quarantine (mirror)."""
    retries: int = 0
    damaged_at_source: list[str] = field(default_factory=list)
    """Objects that did not hash to their name on the server: reported, never sent."""
    error: str | None = None
    """The error code and message that stopped the run, if one did."""
    cursor: int = 0
    """The journal sequence the target has now taken everything up to."""


@dataclass(slots=True)
class AuditReport:
    """What one audit of one target found and repaired (design 17.7). Objects are named
    `<tenant-id>/<kind>/<name>`."""

    target: str
    started_ms: int
    ended_ms: int = 0
    objects_sent: int = 0
    """Missing on the target, sent now: the drift the journal did not carry."""
    bytes_sent: int = 0
    extra_on_target: list[str] = field(default_factory=list)
    """On the target, not on the server: reported, never deleted."""
    mismatched_on_target: list[str] = field(default_factory=list)
    """On the target with another size than the server's: a damaged copy (CAIRN-E132)."""
    damaged_at_source: list[str] = field(default_factory=list)
    source_empty: list[str] = field(default_factory=list)
    """Tenants whose storage on the server lists nothing while their copy holds objects: left
    alone (CAIRN-E133)."""
    error: str | None = None
