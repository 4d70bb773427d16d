"""What the Alerter has told, kept in a JSON file so that a restart neither repeats nor forgets.

The file is replaced atomically (a temporary file, fsynced, renamed, the folder fsynced): a crash
leaves the old state or the new one. A file that cannot be read is logged and started afresh,
which at worst repeats one alert; it never stops the agent.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger("cairn.notify")

VERSION = 1


@dataclass
class JobState:
    """One job, as far as alerts are concerned."""

    first_seen: float
    host: str | None = None
    last_success: float | None = None
    failing: bool = False
    """The job's last run that ended in success or failure failed."""
    failures: int = 0
    """Failed runs since the people were last told it was fine."""
    failing_since: float | None = None
    told_failing: bool = False
    """The last failure or recovery alert delivered said "failing"."""
    told_failure_at: float | None = None
    silence_told_for: float | None = None
    """The silence (its start: the last success, or first_seen) that an alert was sent for."""


@dataclass
class AlertState:
    jobs: dict[str, JobState] = field(default_factory=dict)
    last_report: float | None = None
    """When the period of the next summary report began."""

    def job(self, name: str, now: float) -> JobState:
        if name not in self.jobs:
            self.jobs[name] = JobState(first_seen=now)
        return self.jobs[name]


def load_state(path: Path) -> AlertState:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return _decode(document)
    except FileNotFoundError:
        return AlertState()
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("alert state %s is unreadable (%s); starting afresh", path, exc)
        return AlertState()


def save_state(path: Path, state: AlertState) -> None:
    document = {
        "version": VERSION,
        "last_report": state.last_report,
        "jobs": {name: asdict(job) for name, job in state.jobs.items()},
    }
    data = json.dumps(document, indent=1, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _decode(document: Any) -> AlertState:
    if document.get("version") != VERSION:
        raise ValueError(f"unknown version {document.get('version')!r}")
    known = {f.name for f in fields(JobState)}
    jobs = {
        str(name): JobState(**{k: v for k, v in values.items() if k in known})
        for name, values in document["jobs"].items()
    }
    last_report = document.get("last_report")
    return AlertState(jobs, float(last_report) if last_report is not None else None)
