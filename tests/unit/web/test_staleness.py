"""Staleness against a job's own schedule (design 18.4, web/staleness.py): the rule on chosen
instants, the agent's schedule fields as the server parses them, and the server's clock."""

from __future__ import annotations

import pytest

from cairn.agent.report import report_body, schedule_fields
from cairn.agent.spec import At, Continuous, Cron, Every
from cairn.notify.message import Outcome, RunSummary
from cairn.server.jobresults import BadJobReport, JobResult, JobState, parse_report
from cairn.web.staleness import GRACE_FLOOR_MS, Staleness, grace_ms, staleness

HOUR = 3600 * 1000
DAY = 24 * HOUR


def state(
    due_in_ms: int | None,
    period_ms: int | None,
    succeeded: bool = True,
    skew_ms: int = 0,
    run_ms: int = 60_000,
) -> JobState:
    """The latest result arrived at server time 0; the agent's clock is `skew_ms` ahead."""
    ended = skew_ms
    result = JobResult(
        "home", "laptop", ended - run_ms, ended, "success", None, 1, 1, None, "",
        received_ms=0,
        schedule="every 1h",
        next_due_ms=None if due_in_ms is None else ended + due_in_ms,
        period_ms=period_ms,
    )  # fmt: skip
    return JobState(result, 0 if succeeded else None)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0, Staleness.ON_TIME),
        (HOUR, Staleness.ON_TIME),
        (HOUR + GRACE_FLOOR_MS, Staleness.ON_TIME),
        (HOUR + GRACE_FLOOR_MS + 1, Staleness.LATE),
        (2 * HOUR + GRACE_FLOOR_MS, Staleness.LATE),
        (2 * HOUR + GRACE_FLOOR_MS + 1, Staleness.MISSED),
        (30 * DAY, Staleness.MISSED),
    ],
)
def test_an_hourly_job_is_on_time_then_late_then_missed(now: int, expected: Staleness) -> None:
    assert staleness(state(HOUR, HOUR), now) is expected


def test_a_weekly_job_is_not_stale_on_its_second_day() -> None:
    weekly = state(7 * DAY, 7 * DAY)
    assert staleness(weekly, 2 * DAY) is Staleness.ON_TIME
    assert staleness(weekly, 7 * DAY + weekly_grace(weekly) + 1) is Staleness.LATE


def weekly_grace(s: JobState) -> int:
    return grace_ms(s)


def test_the_grace_grows_with_the_period_and_the_run() -> None:
    assert grace_ms(state(HOUR, HOUR)) == GRACE_FLOOR_MS
    assert grace_ms(state(DAY, DAY)) == DAY // 20
    assert grace_ms(state(HOUR, HOUR, run_ms=HOUR)) == 2 * HOUR


def test_never_and_unscheduled() -> None:
    assert staleness(state(HOUR, HOUR, succeeded=False), 0) is Staleness.NEVER
    assert staleness(state(None, None), 30 * DAY) is Staleness.UNSCHEDULED
    assert staleness(state(HOUR, None), 30 * DAY) is Staleness.LATE  # no period: never "missed"


def test_the_agents_clock_does_not_matter() -> None:
    """An agent whose clock is a day ahead reports a due time a day ahead too; the server
    judges by the gap, on its own clock."""
    ahead = state(HOUR, HOUR, skew_ms=DAY)
    assert ahead.due_ms == HOUR
    assert staleness(ahead, 3 * HOUR) is Staleness.MISSED


def test_the_agent_reports_its_schedule_and_the_server_parses_it() -> None:
    run = RunSummary(
        job="home", host="laptop", started=1000.0, ended=1010.0, outcome=Outcome.SUCCESS
    )
    body = report_body(run, Every(3600.0))
    assert (body["schedule"], body["next_due"], body["period"]) == ("every 1h", 4600.0, 3600.0)
    parsed = parse_report(body)
    assert (parsed.next_due_ms, parsed.period_ms) == (4_600_000, 3_600_000)
    continuous = report_body(run, Continuous())
    assert continuous["next_due"] is None and continuous["period"] is None
    assert parse_report(continuous).next_due_ms is None
    assert "schedule" not in report_body(run)  # no schedule given: none sent


def test_wall_clock_schedules_report_their_spacing() -> None:
    assert schedule_fields(Cron("0 * * * *"), 7200.0)["period"] == 3600.0
    assert schedule_fields(At(("02:00",)), 0.0)["period"] == 86400.0


@pytest.mark.parametrize(
    "bad", [{"period": 0}, {"period": -5}, {"next_due": "soon"}, {"schedule": "x" * 101}]
)
def test_bad_schedule_fields_are_refused(bad: dict[str, object]) -> None:
    run = RunSummary(job="home", host="laptop", started=1.0, ended=2.0, outcome=Outcome.SUCCESS)
    with pytest.raises(BadJobReport):
        parse_report({**report_body(run), **bad})
