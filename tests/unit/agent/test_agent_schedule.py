"""Schedule maths: every, cron, at/days in local time across DST changes; catch-up after
downtime (one run, never one per missed slot); jitter bounds."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.agent.schedule import Jitter, LastRun, next_due, next_slot
from cairn.agent.spec import At, Continuous, Cron, Every, WhenReachable
from cairn.notify.message import Outcome


@pytest.fixture(autouse=True)
def berlin() -> Iterator[None]:
    """A zone with daylight saving: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def local(*args: int) -> float:
    return time.mktime((*args, *([0] * (6 - len(args))), 0, 0, -1))  # type: ignore[arg-type]


def wall(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%a %Y-%m-%d %H:%M")


def slots(schedule: Cron | At, start: float, n: int) -> list[str]:
    out, t = [], start
    for _ in range(n):
        t = next_slot(schedule, t)
        out.append(wall(t))
    return out


def test_every_is_relative_to_the_last_start() -> None:
    assert next_slot(Every(3600), 1000.0) == 4600.0
    assert next_slot(WhenReachable(86400, 60), 1000.0) == 87400.0
    assert next_slot(Continuous(), 1000.0) == float("inf")


def test_cron_in_local_time() -> None:
    start = local(2026, 11, 29, 12, 0)
    assert slots(Cron("15 2 * * *"), start, 2) == ["Mon 2026-11-30 02:15", "Tue 2026-12-01 02:15"]
    assert slots(Cron("0 9 * * 1"), start, 2) == ["Mon 2026-11-30 09:00", "Mon 2026-12-07 09:00"]


def test_at_times_on_given_weekdays() -> None:
    schedule = At(("02:00", "14:30"), ("mon", "thu"))
    assert slots(schedule, local(2026, 11, 29, 12, 0), 4) == [
        "Mon 2026-11-30 02:00",
        "Mon 2026-11-30 14:30",
        "Thu 2026-12-03 02:00",
        "Thu 2026-12-03 14:30",
    ]
    assert slots(At(("23:59",)), local(2026, 11, 29, 23, 59), 1) == ["Mon 2026-11-30 23:59"]


def test_a_slot_in_the_spring_forward_gap_runs_after_the_jump_once() -> None:
    daily = slots(Cron("30 2 * * *"), local(2026, 3, 28, 12, 0), 3)
    assert daily == ["Sun 2026-03-29 03:30", "Mon 2026-03-30 02:30", "Tue 2026-03-31 02:30"]
    assert slots(At(("02:30",)), local(2026, 3, 28, 12, 0), 2) == daily[:2]


def test_the_fall_back_hour_runs_a_daily_slot_once() -> None:
    start = local(2026, 10, 24, 12, 0)
    for schedule in (Cron("30 2 * * *"), At(("02:30",))):
        instants = []
        t = start
        for _ in range(3):
            t = next_slot(schedule, t)
            instants.append(t)
        assert [wall(t) for t in instants] == [
            "Sun 2026-10-25 02:30",
            "Mon 2026-10-26 02:30",
            "Tue 2026-10-27 02:30",
        ]
        # the day with 25 hours still has exactly one run
        assert 24 * 3600 <= instants[1] - instants[0] <= 25 * 3600


@given(
    start=st.floats(min_value=1.7e9, max_value=1.9e9),
    expression=st.sampled_from(["*/7 * * * *", "15 2 * * *", "0 */3 * * 1-5", "30 1-3 * * *"]),
)
def test_cron_slots_always_move_forward_and_match_the_expression(
    start: float, expression: str
) -> None:
    t = start
    for _ in range(5):
        following = next_slot(Cron(expression), t)
        assert following > t
        assert following - t <= 8 * 86400
        minute = datetime.fromtimestamp(following).minute
        if expression.startswith("*/7"):
            assert minute % 7 == 0
        elif expression[0].isdigit():
            assert minute == int(expression.split()[0])
        t = following


@given(
    start=st.floats(min_value=1.7e9, max_value=1.9e9),
    times=st.lists(
        st.tuples(st.integers(0, 23), st.integers(0, 59)), min_size=1, max_size=4, unique=True
    ),
    days=st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])),
)
def test_at_slots_are_the_first_matching_local_time_after(
    start: float, times: list[tuple[int, int]], days: set[str]
) -> None:
    schedule = At(tuple(sorted(f"{h:02}:{m:02}" for h, m in times)), tuple(sorted(days)))
    following = next_slot(schedule, start)
    assert following > start
    moment = datetime.fromtimestamp(following)
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    assert not days or names[moment.weekday()] in days
    # a time in the spring-forward gap is moved one hour on; every other slot is exact
    assert (moment.hour, moment.minute) in {(h, m) for h, m in times} | {
        (h + 1, m) for h, m in times
    }


def test_a_job_never_run_is_due_at_once_or_at_its_next_slot() -> None:
    now = local(2026, 11, 29, 12, 0)
    assert next_due(Every(3600), None, now - 5, now).at == now - 5  # type: ignore[union-attr]
    due = next_due(Cron("15 2 * * *"), None, now, now)
    assert due is not None and wall(due.at) == "Mon 2026-11-30 02:15" and not due.catch_up
    assert next_due(Continuous(), None, now, now) is None


def test_catch_up_after_downtime_is_one_run_at_once_not_one_per_missed_slot() -> None:
    # The agent was down from Friday to Monday noon; a daily 02:15 job missed three slots.
    last = LastRun(local(2026, 11, 27, 2, 15), Outcome.SUCCESS)
    started = local(2026, 11, 30, 12, 0)
    due = next_due(Cron("15 2 * * *"), last, started, started)
    assert due is not None and due.catch_up
    assert due.start_time(jitter=123.0) == due.at <= started  # at once, no jitter
    # That run starts now; the next is the next slot, not another missed one.
    after = next_due(Cron("15 2 * * *"), LastRun(started, Outcome.SUCCESS), started, started + 1)
    assert after is not None and not after.catch_up
    assert wall(after.at) == "Tue 2026-12-01 02:15"
    # every: the same, once.
    every = next_due(Every(3600), LastRun(started - 86400, Outcome.FAILURE), started, started)
    assert every is not None and every.catch_up


def test_a_slot_that_comes_while_the_agent_runs_is_not_a_catch_up() -> None:
    started = local(2026, 11, 29, 12, 0)
    last = LastRun(started + 10, Outcome.SUCCESS)
    due = next_due(Every(3600), last, started, started + 20)
    assert due is not None and not due.catch_up
    assert due.start_time(jitter=30.0) == last.started + 3600 + 30.0


def test_an_interrupted_run_is_due_at_the_next_start() -> None:
    last = LastRun(local(2026, 11, 29, 11, 59), Outcome.INTERRUPTED)
    started = local(2026, 11, 29, 12, 0)
    due = next_due(Every(86400), last, started, started + 5)
    assert due is not None and due.catch_up and due.at <= started + 5


@given(
    jitter=st.floats(min_value=0.001, max_value=86400),
    seed=st.integers(),
    slot=st.floats(min_value=0, max_value=2e9),
)
def test_jitter_stays_in_its_bounds_and_is_stable_per_slot(
    jitter: float, seed: int, slot: float
) -> None:
    j = Jitter(jitter, seed)
    first = j.for_slot("home", slot)
    assert 0 <= first < jitter
    assert j.for_slot("home", slot) == first  # drawn once per slot, not at every look


def test_jitter_spreads_agents_and_zero_turns_it_off() -> None:
    offsets = {Jitter(300.0, seed).for_slot("home", 1000.0) for seed in range(100)}
    assert len(offsets) > 90  # a hundred agents do not start in the same second
    assert Jitter(0.0, 1).for_slot("home", 1000.0) == 0.0
