"""The Alerter decides when to tell: failure, repeat, recovery, silence, reports; and remembers
across restarts. Fake channels and a fake clock; the real channels have their own tests."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cairn.notify.alerts import Alerter, channel_for, last_slot
from cairn.notify.email import EmailChannel
from cairn.notify.errors import NotifyError, NotifyUnreachable
from cairn.notify.message import (
    AlertPolicy,
    EmailSpec,
    Event,
    EventKind,
    Outcome,
    RunSummary,
    WebhookSpec,
)
from cairn.notify.webhook import WebhookChannel

HOUR = 3600.0
START = datetime(2026, 3, 2, 10, 0).timestamp()  # a Monday, local time


class Clock:
    def __init__(self) -> None:
        self.t = START

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeChannel:
    def __init__(self, on: frozenset[EventKind] = frozenset(EventKind)) -> None:
        self.on = on
        self.events: list[Event] = []
        self.broken: NotifyError | None = None

    def send(self, event: Event) -> None:
        if self.broken is not None:
            raise self.broken
        self.events.append(event)

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]


def run(clock: Clock, outcome: Outcome, job: str = "home", **kw: object) -> RunSummary:
    values: dict[str, object] = {
        "job": job,
        "host": "pc-7",
        "started": clock() - 60,
        "ended": clock(),
        "outcome": outcome,
    }
    if outcome is Outcome.FAILURE:
        values.update(error_code="CAIRN-E081", message="before hook exited with status 3")
        values.update(log_tail="mounting /dev/vg0/snap\nerror: no space left in volume group\n")
    if outcome is Outcome.SUCCESS:
        values.update(snapshot="ab" * 32, files=12, bytes_added=4096)
    values.update(kw)
    return RunSummary(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(tmp_path: Path, clock: Clock, *channels: FakeChannel, **policy: object) -> Alerter:
    values: dict[str, Any] = {"silence_after_s": 26 * HOUR, "repeat_s": 24 * HOUR}
    values.update(policy)
    return Alerter(
        channels,
        AlertPolicy(**values),
        tmp_path / "alerts.json",
        clock,
        host="pc-7",
    )


def test_the_first_failure_alerts_with_code_hint_log_host_and_job(
    tmp_path: Path, clock: Clock
) -> None:
    channel = FakeChannel()
    sent = make(tmp_path, clock, channel).after_run(run(clock, Outcome.FAILURE))
    assert [e.kind for e in sent] == [EventKind.FAILURE]
    event = channel.events[0]
    assert (event.host, event.job) == ("pc-7", "home")
    assert "FAILED" in event.subject and "CAIRN-E081" in event.subject
    assert "before hook exited with status 3" in event.text
    assert "What to do" in event.text
    assert "error: no space left in volume group" in event.text, "the log's last lines"
    assert event.details["error_code"] == "CAIRN-E081"
    assert event.details["outcome"] == "failure"


def test_a_job_that_keeps_failing_alerts_again_only_after_repeat(
    tmp_path: Path, clock: Clock
) -> None:
    channel = FakeChannel()
    alerter = make(tmp_path, clock, channel, repeat_s=24 * HOUR)
    alerter.after_run(run(clock, Outcome.FAILURE))
    for _ in range(23):
        clock.advance(HOUR)
        assert alerter.after_run(run(clock, Outcome.FAILURE)) == []
    clock.advance(HOUR)
    assert [e.kind for e in alerter.after_run(run(clock, Outcome.FAILURE))] == [EventKind.FAILURE]
    assert "25 failed runs" in channel.events[-1].text
    assert len(channel.events) == 2


def test_the_first_success_after_failures_is_a_recovery_and_then_quiet(
    tmp_path: Path, clock: Clock
) -> None:
    channel = FakeChannel()
    alerter = make(tmp_path, clock, channel)
    alerter.after_run(run(clock, Outcome.SUCCESS))
    assert channel.events == [], "a success after successes says nothing"
    alerter.after_run(run(clock, Outcome.FAILURE))
    clock.advance(HOUR)
    alerter.after_run(run(clock, Outcome.FAILURE))
    clock.advance(HOUR)
    alerter.after_run(run(clock, Outcome.SUCCESS))
    clock.advance(HOUR)
    alerter.after_run(run(clock, Outcome.SUCCESS))
    assert channel.kinds() == [EventKind.FAILURE, EventKind.RECOVERY]
    assert "failed 2 time(s)" in channel.events[1].text
    clock.advance(HOUR)
    alerter.after_run(run(clock, Outcome.FAILURE))
    assert channel.kinds()[-1] is EventKind.FAILURE, "a new failure after recovery alerts at once"


def test_warnings_count_as_success_and_interrupted_or_skipped_runs_say_nothing(
    tmp_path: Path, clock: Clock
) -> None:
    channel = FakeChannel()
    alerter = make(tmp_path, clock, channel)
    alerter.after_run(run(clock, Outcome.FAILURE))
    alerter.after_run(run(clock, Outcome.INTERRUPTED))
    alerter.after_run(run(clock, Outcome.SKIPPED))
    assert channel.kinds() == [EventKind.FAILURE]
    alerter.after_run(run(clock, Outcome.WARNING, snapshot="cd" * 32))
    assert channel.kinds() == [EventKind.FAILURE, EventKind.RECOVERY]


def test_each_channel_gets_only_the_kinds_it_asked_for(tmp_path: Path, clock: Clock) -> None:
    failures = FakeChannel(frozenset({EventKind.FAILURE}))
    everything = FakeChannel()
    alerter = make(tmp_path, clock, failures, everything)
    alerter.after_run(run(clock, Outcome.FAILURE))
    alerter.after_run(run(clock, Outcome.SUCCESS))
    assert failures.kinds() == [EventKind.FAILURE]
    assert everything.kinds() == [EventKind.FAILURE, EventKind.RECOVERY]


def test_a_channel_that_cannot_send_is_logged_never_raised_and_tried_again(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    channel = FakeChannel()
    channel.broken = NotifyUnreachable("cannot reach the mail server smtp.example:587")
    alerter = make(tmp_path, clock, channel)
    with caplog.at_level(logging.WARNING, logger="cairn.notify"):
        assert alerter.after_run(run(clock, Outcome.FAILURE)) == []
    assert "CAIRN-E101" in caplog.text and "smtp.example:587" in caplog.text
    channel.broken = None
    clock.advance(HOUR)
    alerter.after_run(run(clock, Outcome.FAILURE))
    assert channel.kinds() == [EventKind.FAILURE], "not told yet, so the next failure tells"


def test_one_working_channel_is_enough_to_count_as_told(tmp_path: Path, clock: Clock) -> None:
    broken, working = FakeChannel(), FakeChannel()
    broken.broken = NotifyError("bad settings")
    alerter = make(tmp_path, clock, broken, working)
    alerter.after_run(run(clock, Outcome.FAILURE))
    clock.advance(HOUR)
    alerter.after_run(run(clock, Outcome.FAILURE))
    assert working.kinds() == [EventKind.FAILURE]


def test_an_unexpected_channel_error_does_not_escape(tmp_path: Path, clock: Clock) -> None:
    class Buggy:
        def send(self, event: Event) -> None:
            raise RuntimeError("a bug in a channel")

    alerter = Alerter([Buggy()], AlertPolicy(), tmp_path / "a.json", clock, host="pc-7")
    assert alerter.after_run(run(clock, Outcome.FAILURE)) == []


def test_silence_alerts_once_per_silence_and_a_success_resets_it(
    tmp_path: Path, clock: Clock
) -> None:
    channel = FakeChannel()
    alerter = make(tmp_path, clock, channel, silence_after_s=26 * HOUR)
    last = clock()
    clock.advance(25 * HOUR)
    assert alerter.tick({"home": last}, []) == []
    clock.advance(1 * HOUR)
    sent = alerter.tick({"home": last}, [])
    assert [e.kind for e in sent] == [EventKind.SILENCE]
    assert "26 h" in sent[0].subject and sent[0].job == "home"
    for _ in range(30):
        clock.advance(HOUR)
        assert alerter.tick({"home": last}, []) == [], "once per silence"
    alerter.after_run(run(clock, Outcome.SUCCESS))
    clock.advance(25 * HOUR)
    assert alerter.tick({"home": clock() - 25 * HOUR}, []) == []
    clock.advance(1 * HOUR)
    assert [e.kind for e in alerter.tick({"home": clock() - 26 * HOUR}, [])] == [EventKind.SILENCE]


def test_a_job_that_never_succeeded_goes_silent_counted_from_when_it_was_first_seen(
    tmp_path: Path, clock: Clock
) -> None:
    channel = FakeChannel()
    alerter = make(tmp_path, clock, channel, silence_after_s=26 * HOUR)
    alerter.tick({"db": None}, [])
    clock.advance(26 * HOUR)
    sent = alerter.tick({"db": None}, [])
    assert [e.kind for e in sent] == [EventKind.SILENCE]
    assert "never succeeded" in sent[0].text


def test_no_silence_alerts_when_turned_off(tmp_path: Path, clock: Clock) -> None:
    channel = FakeChannel()
    alerter = make(tmp_path, clock, channel, silence_after_s=None)
    alerter.tick({"db": None}, [])
    clock.advance(1000 * HOUR)
    assert alerter.tick({"db": None}, []) == []


def test_a_restart_neither_repeats_nor_forgets(tmp_path: Path, clock: Clock) -> None:
    channel = FakeChannel()
    make(tmp_path, clock, channel).after_run(run(clock, Outcome.FAILURE))
    clock.advance(HOUR)
    again = make(tmp_path, clock, channel)
    again.after_run(run(clock, Outcome.FAILURE))
    assert channel.kinds() == [EventKind.FAILURE], "not repeated after the restart"
    clock.advance(HOUR)
    make(tmp_path, clock, channel).after_run(run(clock, Outcome.SUCCESS))
    assert channel.kinds() == [EventKind.FAILURE, EventKind.RECOVERY], "not forgotten"


def test_an_unreadable_state_file_starts_afresh(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "alerts.json").write_text("{ not json")
    channel = FakeChannel()
    with caplog.at_level(logging.WARNING, logger="cairn.notify"):
        alerter = make(tmp_path, clock, channel)
    assert "unreadable" in caplog.text
    alerter.after_run(run(clock, Outcome.FAILURE))
    assert channel.kinds() == [EventKind.FAILURE]
    assert (tmp_path / "alerts.json").read_text().startswith("{")


def test_the_daily_report_comes_once_a_day_at_its_time_over_the_period(
    tmp_path: Path, clock: Clock
) -> None:
    channel = FakeChannel()
    alerter = make(
        tmp_path, clock, channel, report_every="daily", report_at="07:00", silence_after_s=None
    )
    jobs: dict[str, float | None] = {"home": clock(), "db": None}
    assert alerter.tick(jobs, []) == [], "the first period starts now"
    clock.advance(HOUR)
    history = [run(clock, Outcome.SUCCESS), run(clock, Outcome.FAILURE, job="db")]
    clock.t = datetime(2026, 3, 3, 6, 59).timestamp()
    assert alerter.tick(jobs, history) == []
    clock.t = datetime(2026, 3, 3, 7, 0).timestamp()
    sent = alerter.tick(jobs, history)
    assert [e.kind for e in sent] == [EventKind.REPORT]
    report = sent[0]
    assert "daily report for pc-7" in report.subject and "1 failing" in report.subject
    assert "home: 1 run(s), 1 succeeded, 0 failed" in report.text
    assert "db: 1 run(s), 0 succeeded, 1 failed" in report.text
    assert report.details["jobs"]["home"]["bytes_added"] == 4096  # type: ignore[index]
    clock.advance(HOUR)
    assert alerter.tick(jobs, history) == [], "once per day"
    clock.t = datetime(2026, 3, 4, 7, 1).timestamp()
    again = alerter.tick(jobs, history)
    assert "home: no runs in this period" in again[0].text, "old runs are not counted twice"


def test_a_report_missed_while_the_agent_was_down_comes_once_at_start(
    tmp_path: Path, clock: Clock
) -> None:
    channel = FakeChannel()
    quiet = {"report_every": "daily", "silence_after_s": None}
    make(tmp_path, clock, channel, **quiet).tick({"home": None}, [])
    clock.advance(5 * 24 * HOUR)
    alerter = make(tmp_path, clock, channel, **quiet)
    assert len(alerter.tick({"home": None}, [])) == 1
    assert alerter.tick({"home": None}, []) == []


def test_weekly_reports_fall_on_their_day() -> None:
    policy = AlertPolicy(report_every="weekly", report_day="thu", report_at="07:30")
    wednesday = datetime(2026, 3, 4, 12, 0)
    slot = datetime.fromtimestamp(last_slot(wednesday.timestamp(), policy))
    assert slot == datetime(2026, 2, 26, 7, 30), "the Thursday before"
    thursday = datetime(2026, 3, 5, 7, 30)
    assert datetime.fromtimestamp(last_slot(thursday.timestamp(), policy)) == thursday
    daily = AlertPolicy(report_every="daily", report_at="07:00")
    early = datetime(2026, 3, 5, 6, 0)
    assert datetime.fromtimestamp(last_slot(early.timestamp(), daily)) == early.replace(
        hour=7
    ) - timedelta(days=1)


def test_channel_for_picks_the_channel_and_refuses_settings_that_cannot_work() -> None:
    email = EmailSpec("smtp.example", 587, "starttls", "cairn@example", ("ops@example",))
    assert isinstance(channel_for(email), EmailChannel)
    assert isinstance(channel_for(WebhookSpec("https://hooks.example/x")), WebhookChannel)
    with pytest.raises(NotifyError, match="https"):
        channel_for(WebhookSpec("http://hooks.example/x"))
    with pytest.raises(NotifyError, match="security"):
        channel_for(EmailSpec("smtp.example", 25, "ssl", "cairn@example", ("ops@example",)))


def test_the_state_file_is_json_replaced_whole(tmp_path: Path, clock: Clock) -> None:
    make(tmp_path, clock, FakeChannel()).after_run(run(clock, Outcome.FAILURE))
    document = json.loads((tmp_path / "alerts.json").read_text())
    assert document["version"] == 1
    assert document["jobs"]["home"]["told_failing"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.json"], "no temporary left"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"report_every": "hourly"}, "daily"),
        ({"report_every": "daily", "report_at": "7am"}, "07:00"),
        ({"report_every": "daily", "report_at": "24:00"}, "07:00"),
        ({"report_every": "weekly", "report_day": "someday"}, "mon"),
        ({"repeat_s": 0}, "positive"),
    ],
)
def test_a_schedule_that_cannot_work_is_refused_at_start(
    tmp_path: Path, clock: Clock, policy: dict[str, object], message: str
) -> None:
    with pytest.raises(NotifyError, match=message):
        make(tmp_path, clock, FakeChannel(), **policy)
