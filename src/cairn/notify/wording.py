"""What failure, recovery and silence alerts say: what happened, the error code, what to do,
the log's last lines, and the host and job. Plain text for e-mail; the same as data (`details`)
for webhooks."""

from __future__ import annotations

from datetime import datetime

from cairn.core.units import format_size
from cairn.notify.message import Event, EventKind, RunSummary

TAIL_LINES = 30


def when(t: float | None) -> str:
    """A time for people: local, to the minute, with the zone."""
    if t is None:
        return "never"
    return datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.0f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def failure(run: RunSummary, failures: int, since: float, last_success: float | None) -> Event:
    """The job's run failed; `failures` runs have failed since `since` (this one included)."""
    code = run.error_code or "no error code"
    again = f" ({failures} failed runs since {when(since)})" if failures > 1 else ""
    subject = f"[cairn] FAILED: backup {run.job} on {run.host} ({code})"
    lines = [
        f"The backup job {run.job!r} on {run.host} failed at {when(run.ended)}{again}.",
        "",
        f"Error: {code}: {run.message or 'no message'}",
        f"Attempt: {run.attempt}",
        f"Last successful backup: {when(last_success)}",
        "",
        "What to do: the error code is explained in docs/errors.md (and docs/troubleshooting.md);",
        "fix the cause; the agent retries at the job's next scheduled run. `cairn agent status`",
        "shows every job's last and next run.",
        *_log(run),
    ]
    return Event(EventKind.FAILURE, run.host, run.job, subject, "\n".join(lines), _details(run))


def recovery(run: RunSummary, failures: int, since: float | None) -> Event:
    """The job succeeded after `failures` failed runs since `since`."""
    subject = f"[cairn] RECOVERED: backup {run.job} on {run.host}"
    snapshot = f"snapshot {run.snapshot[:8]}" if run.snapshot else "a snapshot"
    lines = [
        f"The backup job {run.job!r} on {run.host} succeeded again at {when(run.ended)}:",
        f"{snapshot}, {run.files} files, {format_size(run.bytes_added)} added.",
        f"It had failed {failures} time(s) since {when(since)}.",
        "",
        "Nothing to do.",
    ]
    details = {**_details(run), "failures": failures, "failing_since": since}
    return Event(EventKind.RECOVERY, run.host, run.job, subject, "\n".join(lines), details)


def silence(host: str, job: str, last_success: float | None, since: float, now: float) -> Event:
    """No successful run of `job` since `since` (its last success, or when it was first seen)."""
    subject = f"[cairn] SILENT: no backup of {job} on {host} for {hours(now - since)}"
    ago = "has never succeeded" if last_success is None else f"last succeeded {when(last_success)}"
    lines = [
        f"The backup job {job!r} on {host} has had no successful run for {hours(now - since)}",
        f"(it {ago}).",
        "",
        "What to do: check that the agent runs (`systemctl status cairn-agent`), that the job is",
        "not suspended and its repository is reachable (`cairn agent status`), and read the",
        "log of its last runs. A job that runs and fails sends failure alerts as well.",
    ]
    details: dict[str, object] = {"last_success": last_success, "silent_since": since}
    return Event(EventKind.SILENCE, host, job, subject, "\n".join(lines), details)


def _log(run: RunSummary) -> list[str]:
    tail = run.log_tail.splitlines()[-TAIL_LINES:]
    where = [f"Log: {run.log_path}"] if run.log_path else []
    if not tail:
        return ["", *where]
    return ["", *where, "Last lines of the log:", "", *(f"  {line}" for line in tail)]


def _details(run: RunSummary) -> dict[str, object]:
    return {
        "outcome": run.outcome.value,
        "error_code": run.error_code,
        "message": run.message,
        "started": run.started,
        "ended": run.ended,
        "attempt": run.attempt,
        "snapshot": run.snapshot,
        "files": run.files,
        "bytes_added": run.bytes_added,
        "log_path": run.log_path,
        "log_tail": run.log_tail,
    }
