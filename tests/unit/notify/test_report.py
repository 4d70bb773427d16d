"""The summary report: per job, the runs of the period and how they ended."""

from __future__ import annotations

from cairn.notify.message import EventKind, Outcome, RunSummary
from cairn.notify.report import summary_report

T = 1_772_000_000.0


def r(job: str, ended: float, outcome: Outcome, **kw: object) -> RunSummary:
    return RunSummary(job, "pc-7", ended - 10, ended, outcome, **kw)  # type: ignore[arg-type]


def test_the_report_counts_each_jobs_runs_in_the_period_only() -> None:
    runs = [
        r("home", T - 50, Outcome.SUCCESS, snapshot="00" * 32, bytes_added=1),  # before: left out
        r("home", T + 10, Outcome.SUCCESS, snapshot="aa" * 32, bytes_added=1024),
        r("home", T + 20, Outcome.WARNING, snapshot="bb" * 32, bytes_added=2048),
        r("home", T + 30, Outcome.FAILURE, error_code="CAIRN-E033"),
        r("db", T + 40, Outcome.INTERRUPTED),
    ]
    event = summary_report("pc-7", "weekly", T, T + 100, ["home", "db", "mail"], runs)
    assert event.kind is EventKind.REPORT and event.job == ""
    assert event.subject == "[cairn] weekly report for pc-7: 3 job(s), 1 failing, 1 without runs"
    lines = event.text.splitlines()
    assert (
        "home: 3 run(s), 2 succeeded, 1 with unreadable files, 1 failed; added 3.0 KiB; "
        "last snapshot bbbbbbbb; last run: failure (CAIRN-E033)"
    ) in lines
    assert (
        "db: 1 run(s), 0 succeeded, 0 failed; added 0 B; last snapshot none; last run: interrupted"
        in lines
    )
    assert "mail: no runs in this period" in lines
    home = event.details["jobs"]["home"]  # type: ignore[index]
    assert home == {
        "runs": 3,
        "successes": 2,
        "warnings": 1,
        "failures": 1,
        "bytes_added": 3072,
        "last_snapshot": "bb" * 32,
        "last_outcome": "failure",
        "last_error_code": "CAIRN-E033",
    }
