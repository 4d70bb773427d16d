"""Reporting job results to a server (design 15.5). Interface agreed between the runner (caller)
and this module (owner: agentserver)."""

from __future__ import annotations

from cairn.agent.spec import JobSpec
from cairn.notify.message import RunSummary


def report_run(job: JobSpec, run: RunSummary) -> None:
    """Post the run's result to the job's server (only for cairns:// and cairn:// repositories;
    nothing for others). Never raises: a server that cannot be told is logged and skipped."""
    raise NotImplementedError
