"""Reporting job results to a server (design 15.5). Interface agreed between the runner (caller)
and this module (owner: agentserver).

When a job's repository is a Cairn server, each run's result goes to `POST /v1/t/{tenant}/jobs`
with the job's own token, over the same client and certificate pinning as its backups
(`RemoteBackend`), so the server can show it and alert on failures and silence. A result holds
no file names: the job's name, the host, times, outcome, snapshot ID, counts, error code and a
short message. A report that cannot be delivered is logged (CAIRN-E091) and dropped; the next
run's report tells the server the news, and the agent's own history keeps every run.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping

from cairn.agent.schedule import describe, next_slot
from cairn.agent.spec import JobSpec, Schedule
from cairn.backends.location import remote_credentials
from cairn.notify.message import RunSummary

log = logging.getLogger("cairn.agent.report")

_PATH = re.compile(r"(?<![\w:/.~-])[~.]?/[^\s'\"]*")
MESSAGE_LIMIT = 1000
"""Characters of a run's message sent to the server (its first line matters most)."""
TIMEOUT_S = 30.0


def report_run(job: JobSpec, run: RunSummary) -> None:
    """Post the run's result to the job's server (only for cairns:// and cairn:// repositories;
    nothing for others). Never raises: a server that cannot be told is logged and skipped."""
    if not job.repository.startswith(("cairn://", "cairns://")):
        return
    try:
        _post(job, run, os.environ)
    except Exception as exc:  # never fail a job, or the agent, for want of a report
        log.warning(
            "CAIRN-E091 could not report run of job %s to %s: %s", job.name, job.repository, exc
        )


def _post(job: JobSpec, run: RunSummary, environ: Mapping[str, str]) -> None:
    credentials = remote_credentials(job.token_file, environ)
    if not credentials.token:
        raise ValueError("no token: set the job's token_file, or CAIRN_TOKEN")
    from cairn.backends.remote import KnownServers, RemoteBackend, parse_address  # httpx

    address = parse_address(job.repository)
    backend = RemoteBackend(
        address,
        credentials.token,
        KnownServers(credentials.known_servers),
        credentials.fingerprint,
        connections=1,
        timeout=TIMEOUT_S,
    )
    try:
        backend.post_json("jobs", report_body(run, job.schedule))
    finally:
        backend.close()


def report_body(run: RunSummary, schedule: Schedule | None = None) -> dict[str, object]:
    """The wire form of a run's result (docs/wire-protocol.md, "Job results"), with the job's
    schedule when given: its words, when the next run is due (the first slot after this run's
    start, 15.3) and the spacing of slots, so the server can tell a machine that is late from
    one that is not due yet (design 18.4)."""
    return {
        **({} if schedule is None else schedule_fields(schedule, run.started)),
        "job": run.job,
        "host": run.host,
        "started": run.started,
        "ended": run.ended,
        "outcome": run.outcome.value,
        "snapshot": run.snapshot,
        "files": run.files,
        "bytes_added": run.bytes_added,
        "error_code": run.error_code,
        "message": without_paths(run.message)[:MESSAGE_LIMIT],
    }


def without_paths(message: str) -> str:
    """`message` with absolute paths replaced by ``<path>``: a report names no files (an error
    message may quote the file it failed on)."""
    return _PATH.sub("<path>", message)


def schedule_fields(schedule: Schedule, started: float) -> dict[str, object]:
    """`schedule`, `next_due` and `period` of a report; a continuous job has no slots (null)."""
    due = next_slot(schedule, started)
    if math.isinf(due):
        return {"schedule": describe(schedule), "next_due": None, "period": None}
    return {
        "schedule": describe(schedule),
        "next_due": due,
        "period": round(next_slot(schedule, due) - due, 3),
    }
