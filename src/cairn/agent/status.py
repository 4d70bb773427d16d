"""What `cairn agent status` shows (design 15.5): per job, the last run (start, outcome,
duration, error), the next run, and whether it is suspended — from the configuration, the
history, and the running agent's own plan when one runs.

The next run is the agent's plan when it runs (jitter included); otherwise it is computed from
the schedule, as if the agent started now (a missed slot shows as "at agent start"). A running
job whose attempt failed shows that attempt and when the next starts.

With a configuration file that cannot be read, `known_status` shows what the state folder
still tells: every job in the history, and the running agent's plan (it runs on the last good
configuration).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn.agent.daemon import read_agent_file, suspended_jobs
from cairn.agent.history import History
from cairn.agent.runner import Retrying
from cairn.agent.schedule import describe, next_due
from cairn.agent.spec import AgentSpec, JobSpec
from cairn.notify.message import RunSummary


@dataclass(frozen=True, slots=True)
class JobStatus:
    job: str
    schedule: str
    suspended: bool
    running: bool
    last: RunSummary | None
    next_run: float | None
    """Seconds since the epoch; None: none planned (suspended, or waiting for an event)."""
    next_note: str
    """Why the next run is when it is: "", "catch-up", "at agent start", "on change", …"""
    retrying: Retrying | None = None
    """While running: the attempt that failed and when the next starts; None otherwise."""

    def as_json(self) -> dict[str, Any]:
        last = self.last
        return {
            "job": self.job,
            "schedule": self.schedule,
            "suspended": self.suspended,
            "running": self.running,
            "next_run": self.next_run,
            "next_note": self.next_note,
            "retrying": None if self.retrying is None else self.retrying.as_json(),
            "last_run": None
            if last is None
            else {
                "started": last.started,
                "ended": last.ended,
                "duration_s": round(last.ended - last.started, 3),
                "outcome": last.outcome.value,
                "attempt": last.attempt,
                "snapshot": last.snapshot,
                "files": last.files,
                "bytes_added": last.bytes_added,
                "error_code": last.error_code,
                "message": last.message,
                "log": last.log_path,
            },
        }


@dataclass(frozen=True, slots=True)
class AgentStatus:
    pid: int | None
    """The running agent's process ID; None when no agent runs on this state folder."""
    started: float | None
    jobs: list[JobStatus]


def agent_status(spec: AgentSpec, history: History, now: float) -> AgentStatus:
    agent = read_agent_file(spec.state)
    suspended = suspended_jobs(spec, history)
    jobs = [_job_status(job, history, agent, job.name in suspended, now) for job in spec.jobs]
    if agent is None:
        return AgentStatus(None, None, jobs)
    return AgentStatus(int(agent["pid"]), float(agent["started"]), jobs)


def _job_status(
    job: JobSpec, history: History, agent: dict[str, Any] | None, suspended: bool, now: float
) -> JobStatus:
    last = history.last(job.name)
    running = agent is not None and agent.get("running") == job.name
    next_run, note = _next(job, history, agent, now)
    if suspended:
        next_run, note = None, "suspended"
    retrying = _retrying(agent, job.name) if running else None
    return JobStatus(
        job.name, describe(job.schedule), suspended, running, last, next_run, note, retrying
    )


def _retrying(agent: dict[str, Any] | None, job: str) -> Retrying | None:
    retrying = Retrying.from_json((agent or {}).get("retrying"))
    return retrying if retrying is not None and retrying.job == job else None


def known_status(state: Path, history: History | None) -> AgentStatus:
    """What the state folder tells without a configuration: each job of the history (None:
    there is none) and of the running agent's plan, with its last run, the agent's next
    start, its retry."""
    agent = read_agent_file(state)
    planned: dict[str, Any] = (agent or {}).get("next", {})
    running = (agent or {}).get("running")
    recorded = history.jobs() if history is not None else []
    switches = history.suspended() if history is not None else {}
    names = sorted({*recorded, *planned, *([running] if running else [])})
    jobs = []
    for name in names:
        is_running = running == name
        next_run = planned.get(name)
        jobs.append(
            JobStatus(
                name,
                "?",
                suspended=switches.get(name, False),
                running=is_running,
                last=history.last(name) if history is not None else None,
                next_run=None if next_run is None else float(next_run),
                next_note="" if agent is not None else "agent not running",
                retrying=_retrying(agent, name) if is_running else None,
            )
        )
    if agent is None:
        return AgentStatus(None, None, jobs)
    return AgentStatus(int(agent["pid"]), float(agent["started"]), jobs)


def _next(
    job: JobSpec, history: History, agent: dict[str, Any] | None, now: float
) -> tuple[float | None, str]:
    if agent is not None:
        planned = agent.get("next", {}).get(job.name)
        if planned is None:
            return None, "waiting for a trigger"
        return float(planned), "due now" if planned <= now else ""
    due = next_due(job.schedule, history.last_run(job.name), now, now)
    if due is None:
        return None, "waiting for a trigger"
    if due.catch_up or due.at <= now:
        return due.at, "at agent start"
    return due.at, "agent not running"
