"""Job results that agents report (design 15.5), as the server checks and keeps them.

Any token of the tenant may report (a backup token is what an agent holds). A result is small
and holds no file names: the job's name, the host, the run's times, its outcome, snapshot ID,
counts, error code and a short message. The server stores it with its own arrival time, which is
what ages and silence go by (a client's clock may be wrong). Storage is bounded against a flood
from a stolen token: the newest KEEP_PER_JOB results of each (host, job) are kept, and a tenant
reports at most MAX_JOBS distinct (host, job) pairs.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from cairn.core.clock import SYSTEM_CLOCK, Clock, epoch_ms
from cairn.server.db import Database
from cairn.server.errors import ServerError

OUTCOMES = ("success", "warning", "failure", "interrupted", "skipped")
"""Of these, `success` and `warning` (a snapshot was saved) end a silence."""
KEEP_PER_JOB = 50
MAX_JOBS = 1000
NAME_LIMIT = 100
HOST_LIMIT = 253
MESSAGE_LIMIT = 1000
MAX_COUNT = 2**63 - 1
MAX_TIME_S = 2**38
"""Seconds since the epoch: past the year 10,000 is nonsense (and keeps milliseconds in 63 bits)."""
ERROR_CODE = re.compile(r"CAIRN-[A-Z][0-9]{3}")
SNAPSHOT = re.compile(r"[0-9a-f]{64}")
FIELDS = frozenset(
    {
        "job",
        "host",
        "started",
        "ended",
        "outcome",
        "snapshot",
        "files",
        "bytes_added",
        "error_code",
        "message",
        "schedule",
        "next_due",
        "period",
    }
)


class BadJobReport(ServerError):
    """A job report the server refuses: a field missing, of the wrong type, or out of bounds."""

    status, code = 400, "CAIRN-E090"


class TooManyJobs(ServerError):
    """The tenant already reports MAX_JOBS distinct (host, job) pairs."""

    status, code = 400, "CAIRN-E090"


@dataclass(frozen=True, slots=True)
class JobResult:
    job: str
    host: str
    started_ms: int
    ended_ms: int
    outcome: str
    snapshot: str | None
    files: int
    bytes_added: int
    error_code: str | None
    message: str
    received_ms: int = 0
    schedule: str = ""
    """The job's schedule in words, as the agent describes it ("every 1h"); "" when not told."""
    next_due_ms: int | None = None
    """When the agent's schedule says the next run starts, by the agent's clock; None for a
    job with no slots (continuous) or an agent that does not say."""
    period_ms: int | None = None
    """The spacing of the job's slots, to tell a late run from a missed slot."""


@dataclass(frozen=True, slots=True)
class JobState:
    """The latest result of one (host, job), and when it last succeeded (server times)."""

    latest: JobResult
    last_success_ms: int | None

    @property
    def due_ms(self) -> int | None:
        """When the next result is due, by the server's clock: the agent's `next_due` moved by
        the gap between the run's end (agent's clock) and its arrival (server's), so a client
        whose clock is off is judged by its schedule, not by its clock."""
        latest = self.latest
        if latest.next_due_ms is None:
            return None
        return latest.next_due_ms + latest.received_ms - latest.ended_ms

    def as_json(self, now_ms: int) -> dict[str, Any]:
        return {
            **asdict(self.latest),
            "last_success_ms": self.last_success_ms,
            "age_s": max(0, now_ms - self.latest.received_ms) / 1000,
        }


def parse_report(body: dict[str, Any]) -> JobResult:
    """The JobResult in a request body, or BadJobReport saying what is wrong."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadJobReport(f"unknown fields: {', '.join(unknown)[:200]}")
    started = _time(body, "started")
    ended = _time(body, "ended")
    if ended < started:
        raise BadJobReport("ended is before started")
    outcome = body.get("outcome")
    if outcome not in OUTCOMES:
        raise BadJobReport(f"outcome must be one of {', '.join(OUTCOMES)}")
    return JobResult(
        job=_text(body, "job", NAME_LIMIT, required=True),
        host=_text(body, "host", HOST_LIMIT, required=True),
        started_ms=started,
        ended_ms=ended,
        outcome=str(outcome),
        snapshot=_matching(body, "snapshot", SNAPSHOT),
        files=_count(body, "files"),
        bytes_added=_count(body, "bytes_added"),
        error_code=_matching(body, "error_code", ERROR_CODE),
        message=_text(body, "message", MESSAGE_LIMIT, required=False, lines=True),
        schedule=_text(body, "schedule", NAME_LIMIT, required=False),
        next_due_ms=None if body.get("next_due") is None else _time(body, "next_due"),
        period_ms=_period(body),
    )


def _period(body: dict[str, Any]) -> int | None:
    if body.get("period") is None:
        return None
    period = _time(body, "period")
    if period <= 0:
        raise BadJobReport("period must be a positive number of seconds, or null")
    return period


def _text(body: dict[str, Any], key: str, limit: int, required: bool, lines: bool = False) -> str:
    value = body.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        need = "non-empty " if required else ""
        raise BadJobReport(f"{key} must be {need}text of at most {limit} characters")
    allowed = value.replace("\n", "").replace("\t", "") if lines else value
    if not allowed.isprintable():
        raise BadJobReport(f"{key} holds control characters")
    return value


def _time(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadJobReport(f"{key} must be seconds since the epoch")
    if not (math.isfinite(value) and 0 <= value <= MAX_TIME_S):
        raise BadJobReport(f"{key} is out of range")
    return int(value * 1000)


def _count(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise BadJobReport(f"{key} must be a whole number from 0 to {MAX_COUNT}")
    return value


def _matching(body: dict[str, Any], key: str, form: re.Pattern[str]) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not form.fullmatch(value):
        raise BadJobReport(f"{key} must be null or match {form.pattern}")
    return value


class JobResults:
    """The job results of every tenant, in the server's database."""

    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock

    def record(self, tenant: str, result: JobResult, token: str) -> int:
        """Store a reported result; returns the server's time of arrival (ms)."""
        received = epoch_ms(self._clock)
        with self._db.write() as conn:
            known = conn.execute(
                "SELECT 1 FROM job_results WHERE tenant = ? AND host = ? AND job = ? LIMIT 1",
                (tenant, result.host, result.job),
            ).fetchone()
            if known is None:
                (pairs,) = conn.execute(
                    "SELECT COUNT(*) FROM (SELECT DISTINCT host, job FROM job_results "
                    "WHERE tenant = ?)",
                    (tenant,),
                ).fetchone()
                if pairs >= MAX_JOBS:
                    raise TooManyJobs(f"this tenant already reports {MAX_JOBS} jobs")
            conn.execute(
                "INSERT INTO job_results (tenant, host, job, started_ms, ended_ms, outcome, "
                "snapshot, files, bytes_added, error_code, message, received_ms, token, schedule, "
                "next_due_ms, period_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    result.host,
                    result.job,
                    result.started_ms,
                    result.ended_ms,
                    result.outcome,
                    result.snapshot,
                    result.files,
                    result.bytes_added,
                    result.error_code,
                    result.message,
                    received,
                    token,
                    result.schedule,
                    result.next_due_ms,
                    result.period_ms,
                ),
            )
            conn.execute(
                "DELETE FROM job_results WHERE tenant = ? AND host = ? AND job = ? AND seq NOT "
                "IN (SELECT seq FROM job_results WHERE tenant = ? AND host = ? AND job = ? "
                "ORDER BY seq DESC LIMIT ?)",
                (tenant, result.host, result.job) * 2 + (KEEP_PER_JOB,),
            )
        return received

    def latest(self, tenant: str) -> list[JobState]:
        """The latest result of each (host, job) of `tenant`, sorted by host and job."""
        rows = self._db.read().execute(
            "SELECT job, host, started_ms, ended_ms, outcome, snapshot, files, bytes_added, "
            "error_code, message, received_ms, schedule, next_due_ms, period_ms, "
            "(SELECT MAX(s.received_ms) FROM job_results s WHERE s.tenant = r.tenant AND "
            "s.host = r.host AND s.job = r.job AND s.outcome IN ('success', 'warning')) "
            "FROM job_results r WHERE tenant = ? AND seq = (SELECT MAX(seq) FROM job_results l "
            "WHERE l.tenant = r.tenant AND l.host = r.host AND l.job = r.job) "
            "ORDER BY host, job",
            (tenant,),
        )
        return [JobState(JobResult(*row[:14]), row[14]) for row in rows]
