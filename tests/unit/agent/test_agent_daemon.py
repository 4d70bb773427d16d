"""The agent's loop on a fake clock with a recording runner: due jobs run one at a time in order,
catch-up after downtime runs once and without jitter, jitter delays scheduled runs within its
bounds, suspend/resume is obeyed at the next step, an interrupted run is due at the next start,
a bad configuration on reload is refused and the old one kept, and `agent status` reads what the
history holds."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from cairn.agent.daemon import Daemon
from cairn.agent.history import History
from cairn.agent.spec import AgentSpec, At, Every, JobSpec
from cairn.agent.status import agent_status
from cairn.config.tomltable import ConfigError
from cairn.notify.message import Outcome, RunSummary

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeRunner:
    """Records which jobs ran when; each run takes `duration` seconds of the fake clock."""

    def __init__(self, clock: Clock, duration: float = 10.0) -> None:
        self.clock = clock
        self.duration = duration
        self.ran: list[tuple[str, float]] = []
        self.outcome = Outcome.SUCCESS
        self.error_code: str | None = None

    def run(self, job: JobSpec) -> RunSummary:
        started = self.clock.t
        self.ran.append((job.name, started))
        self.clock.t += self.duration
        return RunSummary(
            job.name, "host", started, self.clock.t, self.outcome, error_code=self.error_code
        )


def job(name: str, every: float = 3600.0, **kw: object) -> JobSpec:
    return JobSpec(name, "/srv/repo", ("/data",), Every(every), **kw)  # type: ignore[arg-type]


def daemon(
    tmp_path: Path, jobs: tuple[JobSpec, ...], clock: Clock, jitter: float = 0.0
) -> tuple[Daemon, FakeRunner]:
    spec = AgentSpec(state=tmp_path / "state", jobs=jobs, jitter_s=jitter)
    runner = FakeRunner(clock)
    d = Daemon(spec, lambda: spec, now=clock, runner=runner, log=lambda *a, **k: None, seed=7)  # type: ignore[arg-type]
    return d, runner


def advance_until_idle(d: Daemon, clock: Clock, horizon: float) -> None:
    """Drive the loop as `serve` does, sleeping on the fake clock."""
    end = clock.t + horizon
    while clock.t < end:
        delay = d.step()
        clock.t = min(end, clock.t + max(delay, 0.0))
        if delay > 0 and clock.t >= end:
            break


def test_due_jobs_run_one_at_a_time_in_order_and_then_on_their_schedule(tmp_path: Path) -> None:
    clock = Clock()
    d, runner = daemon(tmp_path, (job("a"), job("b", every=1800)), clock)
    advance_until_idle(d, clock, 3600 + 30)
    names = [name for name, _ in runner.ran]
    assert names[:2] == ["a", "b"]  # both never ran: due at once, queued, one after the other
    assert runner.ran[1][1] == T0 + 10  # b waited for a
    assert ("b", T0 + 10 + 1800) in runner.ran  # every 30 min after b's last start
    assert ("a", T0 + 3600) in runner.ran
    rows = d.history.runs()
    assert [(r.job, r.started) for r in rows] == runner.ran


def test_catch_up_after_downtime_runs_once_at_start_without_jitter(tmp_path: Path) -> None:
    clock = Clock()
    d, runner = daemon(tmp_path, (job("a"),), clock, jitter=600.0)
    advance_until_idle(d, clock, 700)  # the first run: due at once, plus its jitter
    assert len(runner.ran) == 1
    d.history.close()
    # The agent is down for a day and a half (36 missed hourly slots), then starts again.
    clock.t += 36 * 3600
    d2, runner2 = daemon(tmp_path, (job("a"),), clock, jitter=600.0)
    assert d2.plan(clock.t)[0].catch_up
    advance_until_idle(d2, clock, 3000)
    assert runner2.ran[0][1] == d2.started  # at once, no jitter
    assert len(runner2.ran) == 1  # one catch-up, not 36
    advance_until_idle(d2, clock, 3600)
    # then back on schedule, with a jitter in [0, 600)
    later = runner2.ran[1][1] - (runner2.ran[0][1] + 3600)
    assert 0 <= later < 600
    assert len(runner2.ran) == 2


def test_jitter_delays_scheduled_runs_within_its_bounds(tmp_path: Path) -> None:
    clock = Clock()
    d, runner = daemon(tmp_path, (job("a", every=600),), clock, jitter=120.0)
    advance_until_idle(d, clock, 6 * 3600)
    starts = [t for _, t in runner.ran]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps and all(600 <= g < 600 + 120 for g in gaps)
    assert len({round(g, 3) for g in gaps}) > 1  # drawn per slot


def test_suspend_and_resume_are_obeyed_at_the_next_step(tmp_path: Path) -> None:
    clock = Clock()
    d, runner = daemon(tmp_path, (job("a", every=60), job("b", every=60)), clock)
    advance_until_idle(d, clock, 30)
    d.history.set_suspended("b", True, clock.t)  # what `cairn agent suspend b` writes
    runner.ran.clear()
    advance_until_idle(d, clock, 600)
    assert {name for name, _ in runner.ran} == {"a"}
    status = {j.job: j for j in agent_status(d.spec, d.history, clock.t).jobs}
    assert status["b"].suspended and status["b"].next_run is None
    d.history.set_suspended("b", False, clock.t)
    runner.ran.clear()
    d.step()
    assert runner.ran[0][0] == "b"  # overdue: runs at the next step


def test_a_job_suspended_in_the_configuration_waits_for_resume(tmp_path: Path) -> None:
    clock = Clock()
    d, runner = daemon(tmp_path, (job("a", suspended=True),), clock)
    advance_until_idle(d, clock, 7200)
    assert runner.ran == []
    d.history.set_suspended("a", False, clock.t)
    d.step()
    assert [n for n, _ in runner.ran] == ["a"]


def test_an_interrupted_run_is_due_at_the_next_start(tmp_path: Path) -> None:
    clock = Clock()
    d, runner = daemon(tmp_path, (job("a", every=86400),), clock)
    runner.outcome = Outcome.INTERRUPTED
    d.step()
    assert d.history.last("a").outcome is Outcome.INTERRUPTED  # type: ignore[union-attr]
    d.history.close()
    clock.t += 60
    d2, runner2 = daemon(tmp_path, (job("a", every=86400),), clock)
    d2.step()
    assert runner2.ran == [("a", clock.t - 10)]


def test_wall_clock_schedules_wait_for_their_slot(tmp_path: Path) -> None:
    clock = Clock()
    spec_job = replace(job("nightly"), schedule=At(("02:15",)))
    d, runner = daemon(tmp_path, (spec_job,), clock)
    advance_until_idle(d, clock, 2 * 86400)
    assert len(runner.ran) == 2


def test_a_broken_configuration_on_reload_is_refused_and_the_old_one_kept(tmp_path: Path) -> None:
    clock = Clock()
    spec = AgentSpec(state=tmp_path / "state", jobs=(job("a"),), jitter_s=0)
    configs: list[object] = [
        ConfigError("agent.toml: job[x].every: bad"),
        replace(spec, jobs=(job("a"), job("new"))),
    ]
    logged: list[tuple[str, dict[str, object]]] = []

    def load() -> AgentSpec:
        item = configs.pop(0)
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[return-value]

    d = Daemon(
        spec,
        load,
        now=clock,
        runner=FakeRunner(clock),  # type: ignore[arg-type]
        log=lambda e, **f: logged.append((e, f)),
    )
    assert not d.reload()
    assert d.spec is spec
    assert logged[-1][0] == "reload_refused" and "job[x].every" in str(logged[-1][1]["error"])
    assert d.reload()
    assert [j.name for j in d.spec.jobs] == ["a", "new"]


def test_status_tells_what_the_history_holds(tmp_path: Path) -> None:
    clock = Clock()
    d, runner = daemon(tmp_path, (job("a"),), clock)
    runner.outcome, runner.error_code = Outcome.FAILURE, "CAIRN-E012"
    d.step()
    history = History(tmp_path / "state" / "history.db")  # as `cairn agent status` opens it
    status = agent_status(d.spec, history, clock.t).jobs[0]
    assert status.last is not None
    assert (status.last.outcome, status.last.error_code) == (Outcome.FAILURE, "CAIRN-E012")
    assert status.last.ended - status.last.started == 10.0
    assert status.next_run == T0 + 3600
