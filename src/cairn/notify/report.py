"""The summary report (design 15.6): per job, its runs in the period, how they ended, the last
snapshot and the bytes added. Plain text for e-mail; the same figures as data for webhooks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cairn.core.units import format_size
from cairn.notify.message import Event, EventKind, Outcome, RunSummary
from cairn.notify.wording import when

SAVED = (Outcome.SUCCESS, Outcome.WARNING)


@dataclass(frozen=True, slots=True)
class JobFigures:
    """One job's runs in the period."""

    job: str
    runs: int
    successes: int
    warnings: int
    failures: int
    bytes_added: int
    last_snapshot: str | None
    last_outcome: Outcome | None
    last_error: str | None

    @staticmethod
    def of(job: str, runs: Sequence[RunSummary]) -> JobFigures:
        ordered = sorted(runs, key=lambda r: r.ended)
        saved = [r for r in ordered if r.outcome in SAVED and r.snapshot]
        last = ordered[-1] if ordered else None
        return JobFigures(
            job=job,
            runs=len(ordered),
            successes=sum(r.outcome in SAVED for r in ordered),
            warnings=sum(r.outcome is Outcome.WARNING for r in ordered),
            failures=sum(r.outcome is Outcome.FAILURE for r in ordered),
            bytes_added=sum(r.bytes_added for r in ordered),
            last_snapshot=saved[-1].snapshot if saved else None,
            last_outcome=last.outcome if last else None,
            last_error=last.error_code if last and last.outcome is Outcome.FAILURE else None,
        )

    def line(self) -> str:
        if self.runs == 0:
            return f"{self.job}: no runs in this period"
        parts = [f"{self.runs} run(s)", f"{self.successes} succeeded"]
        if self.warnings:
            parts.append(f"{self.warnings} with unreadable files")
        parts.append(f"{self.failures} failed")
        snapshot = self.last_snapshot[:8] if self.last_snapshot else "none"
        last = self.last_outcome.value if self.last_outcome else "-"
        if self.last_error:
            last += f" ({self.last_error})"
        return (
            f"{self.job}: {', '.join(parts)}; added {format_size(self.bytes_added)}; "
            f"last snapshot {snapshot}; last run: {last}"
        )


def summary_report(
    host: str,
    every: str,
    since: float,
    until: float,
    jobs: Iterable[str],
    runs: Sequence[RunSummary],
) -> Event:
    """The report over `runs` that ended in (since, until], for every job named in `jobs` or seen
    in the runs (a job with no runs is listed, so a silent job cannot hide in a report)."""
    in_period = [r for r in runs if since < r.ended <= until]
    names = sorted(set(jobs) | {r.job for r in in_period})
    figures = [JobFigures.of(name, [r for r in in_period if r.job == name]) for name in names]
    failing = [f.job for f in figures if f.last_outcome is Outcome.FAILURE]
    idle = [f.job for f in figures if f.runs == 0]
    subject = f"[cairn] {every} report for {host}: {len(figures)} job(s)"
    if failing:
        subject += f", {len(failing)} failing"
    if idle:
        subject += f", {len(idle)} without runs"
    text = "\n".join(
        [
            f"Backups on {host} from {when(since)} to {when(until)}:",
            "",
            *(f.line() for f in figures),
            "",
            "`cairn agent status` shows each job's last run and next one.",
        ]
    )
    details: dict[str, object] = {
        "since": since,
        "until": until,
        "every": every,
        "jobs": {
            f.job: {
                "runs": f.runs,
                "successes": f.successes,
                "warnings": f.warnings,
                "failures": f.failures,
                "bytes_added": f.bytes_added,
                "last_snapshot": f.last_snapshot,
                "last_outcome": f.last_outcome.value if f.last_outcome else None,
                "last_error_code": f.last_error,
            }
            for f in figures
        },
    }
    return Event(EventKind.REPORT, host, "", subject, text, details)
