"""cairn agent: scheduled backups (design 15; user guide docs/agent.md).

`run` is the long-running agent (in the foreground; systemd runs it as a service), `run-once`
runs one job now, `status` shows every job's last and next run, `suspend` and `resume` switch a
job off and on at run time, `check-config` checks the configuration file.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from cairn.agent.config import (
    DEFAULT_CONFIG,
    check_files,
    find_job,
    load_config,
    state_folder,
)
from cairn.agent.history import History, StateError
from cairn.agent.runner import Retrying
from cairn.agent.schedule import describe
from cairn.agent.spec import AgentSpec
from cairn.agent.status import AgentStatus, JobStatus, agent_status, known_status
from cairn.cli.context import Context
from cairn.cli.errors import EXIT_INTERRUPTED, EXIT_PARTIAL, exit_for
from cairn.config.tomltable import ConfigError
from cairn.core.clock import SYSTEM_CLOCK, epoch_s
from cairn.notify.errors import NotifyError
from cairn.notify.message import ChannelSpec, EmailSpec, Event, EventKind, Outcome, RunSummary


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("agent", parents=[common], help="run backups on schedules")
    actions = p.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="the agent's TOML file (default %(default)s)",
    )
    parents = [common, config]
    run = actions.add_parser("run", parents=parents, help="run the agent in the foreground")
    run.set_defaults(run=_run)
    once = actions.add_parser("run-once", parents=parents, help="run one job now and wait")
    once.add_argument("job", metavar="JOB")
    once.add_argument(
        "--log-json",
        action="store_true",
        help="also write the agent's JSON log lines on stderr (as `agent run` does)",
    )
    once.set_defaults(run=_run_once)
    status = actions.add_parser("status", parents=parents, help="each job's last and next run")
    status.set_defaults(run=_status)
    for name, verb in (("suspend", "stop starting"), ("resume", "start again")):
        q = actions.add_parser(name, parents=parents, help=f"{verb} a job's scheduled runs")
        q.add_argument("job", metavar="JOB")
        q.set_defaults(run=_switch, suspend=name == "suspend")
    check = actions.add_parser("check-config", parents=parents, help="check the configuration")
    check.set_defaults(run=_check_config)
    test = actions.add_parser(
        "test-notify", parents=parents, help="send a test message through every [[notify]] channel"
    )
    test.set_defaults(run=_test_notify)


def _spec(ctx: Context) -> AgentSpec:
    return load_config(ctx.args.config)


def _run(ctx: Context) -> int:
    path: Path = ctx.args.config
    from cairn.agent.daemon import Daemon  # the agent's machinery: only for the agent itself

    spec = load_config(path)
    Daemon(spec, lambda: load_config(path), runner=None).serve()
    return 0


def _run_once(ctx: Context) -> int:
    from cairn.agent.daemon import Daemon, JsonLog, host_name
    from cairn.agent.runner import BACKUP_PROGRAM, Runner

    spec = _spec(ctx)
    job = find_job(spec, ctx.args.job)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log = JsonLog() if ctx.args.log_json else _no_log
    runner = Runner(
        spec,
        host_name(spec),
        stop,
        program=BACKUP_PROGRAM,
        log=log,
        on_retry=lambda retrying: _say_retry(ctx, retrying),
    )
    daemon = Daemon(spec, lambda: spec, runner=runner, log=log)
    try:
        summary = daemon.run_job(job)
    finally:
        daemon.history.close()
    _show_run(ctx, summary)
    return _exit_status(summary)


def _no_log(event: str, **fields: Any) -> None:
    """`run-once` without --log-json: the run's log file has the details, stdout the summary."""


def _say_retry(ctx: Context, retrying: Retrying) -> None:
    """A run in the foreground can wait an hour between attempts: say so, on stderr (stdout
    holds the result)."""
    if not ctx.args.quiet:
        print(_retry_line(retrying), file=sys.stderr, flush=True)


def _exit_status(summary: RunSummary) -> int:
    if summary.outcome is Outcome.SUCCESS:
        return 0
    if summary.outcome is Outcome.WARNING:
        return EXIT_PARTIAL
    if summary.outcome is Outcome.INTERRUPTED:
        return EXIT_INTERRUPTED
    return exit_for(summary.error_code)


def _show_run(ctx: Context, run: RunSummary) -> None:
    out = ctx.output
    out.json(_run_json(run))
    error = f" {run.error_code}" if run.error_code else ""
    out.text(
        f"job {run.job}: {run.outcome.value}{error} in {_duration(run.ended - run.started)}"
        + (f", snapshot {run.snapshot[:8]}" if run.snapshot else "")
        + (f", attempt {run.attempt}" if run.attempt > 1 else "")
    )
    if run.message:
        out.text(f"  {run.message}")
    if run.log_path:
        out.text(f"  log: {run.log_path}")


def _run_json(run: RunSummary) -> dict[str, Any]:
    return {
        "job": run.job,
        "outcome": run.outcome.value,
        "started": run.started,
        "ended": run.ended,
        "attempt": run.attempt,
        "snapshot": run.snapshot,
        "files": run.files,
        "bytes_added": run.bytes_added,
        "error_code": run.error_code,
        "message": run.message,
        "log": run.log_path,
    }


def _status(ctx: Context) -> int:
    """Every job's last and next run. With a broken configuration file, what the state folder
    still knows is shown first, then the file's error (exit 80): an outage and a typo in the
    file often come together, and the history is what tells what happened."""
    try:
        spec = _spec(ctx)
    except ConfigError as exc:
        _show_status(ctx, _known_status(state_folder(ctx.args.config)), broken=exc)
        raise
    history = History(spec.state / "history.db")
    try:
        status = agent_status(spec, history, epoch_s(ctx.clock))
    finally:
        history.close()
    _show_status(ctx, status)
    return 0


def _known_status(state: Path) -> AgentStatus:
    """What the state folder the broken file seems to name holds, creating nothing there."""
    try:
        history = History.if_exists(state / "history.db")
    except StateError:
        history = None  # the configuration's error is the one to report
    try:
        return known_status(state, history)
    finally:
        if history is not None:
            history.close()


def _show_status(ctx: Context, status: AgentStatus, broken: ConfigError | None = None) -> None:
    out = ctx.output
    out.json(
        {
            "agent": {"running": status.pid is not None, "pid": status.pid},
            "started": status.started,
            "config_error": None if broken is None else str(broken),
            "jobs": [j.as_json() for j in status.jobs],
        }
    )
    if broken is not None:
        out.text("configuration: unusable (CAIRN-E080, below); what the history knows:")
    if status.pid is None:
        out.text("agent: not running")
    else:
        out.text(f"agent: running (pid {status.pid}) since {_when(status.started)}")
    out.text()
    out.table(
        ["JOB", "SCHEDULE", "LAST RUN", "OUTCOME", "DURATION", "NEXT RUN"],
        [_row(j) for j in status.jobs],
    )
    for j in status.jobs:
        if j.retrying is not None:
            out.text(_retry_line(j.retrying))


def _row(j: JobStatus) -> list[str]:
    """The last run is the last that ended (a running one is in NEXT RUN): "never" and "none"
    for a job that has not run yet."""
    last = j.last
    outcome = "none" if last is None else last.outcome.value
    if last is not None and last.error_code:
        outcome += f" ({last.error_code})"
    next_run = _when(j.next_run) if j.next_run is not None else "-"
    if j.next_note:
        next_run = j.next_note if j.next_run is None else f"{next_run} ({j.next_note})"
    if j.running:
        next_run = _running(j.retrying)
    return [
        j.job,
        j.schedule,
        _when(last.started) if last else "never",
        outcome,
        _duration(last.ended - last.started) if last else "-",
        next_run,
    ]


def _running(retrying: Retrying | None) -> str:
    if retrying is None:
        return "running now"
    attempt = f"attempt {retrying.failed + 1} of {retrying.attempts}"
    if retrying.retry_at <= epoch_s(SYSTEM_CLOCK):
        return f"running now ({attempt})"
    return f"{attempt} at {_when(retrying.retry_at)}"


def _retry_line(r: Retrying) -> str:
    code = f"{r.error_code}: " if r.error_code else ""
    return (
        f"{r.job}: attempt {r.failed} of {r.attempts} failed ({code}{r.message or 'no message'}); "
        f"attempt {r.failed + 1} at {_when(r.retry_at)}"
    )


def _when(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02}m" if hours else f"{minutes}m{secs:02}s"


def _switch(ctx: Context) -> int:
    spec = _spec(ctx)
    job = find_job(spec, ctx.args.job)
    history = History(spec.state / "history.db")
    try:
        history.set_suspended(job.name, ctx.args.suspend, epoch_s(ctx.clock))
    finally:
        history.close()
    state = "suspended" if ctx.args.suspend else "resumed"
    ctx.output.json({"job": job.name, "suspended": ctx.args.suspend})
    ctx.output.text(f"job {job.name} {state}")
    return 0


def _check_config(ctx: Context) -> int:
    """The file, and every password, token, secret and CA file it names (readable now)."""
    spec = _spec(ctx)
    check_files(spec, ctx.args.config)
    ctx.output.json(
        {
            "config": str(ctx.args.config),
            "state": str(spec.state),
            "jobs": [{"name": j.name, "schedule": describe(j.schedule)} for j in spec.jobs],
        }
    )
    ctx.output.text(f"{ctx.args.config}: ok, {len(spec.jobs)} job(s), state in {spec.state}")
    for job in spec.jobs:
        ctx.output.text(f"  {job.name}: {describe(job.schedule)}, {job.repository}")
    return 0


def _test_notify(ctx: Context) -> int:
    """Send one test message through every channel, whatever its `on`; report each. Fails with
    the first channel's error code (CAIRN-E100 to E104) if any could not send; a file without
    a channel is a configuration error (CAIRN-E080): there is nothing to test."""
    from cairn.agent.daemon import host_name
    from cairn.notify.alerts import channel_for

    spec = _spec(ctx)
    if not spec.channels:
        raise ConfigError(
            f"{ctx.args.config}: notify: no [[notify]] channel to test; add one (docs/agent.md, "
            '"Notifications")'
        )
    host = host_name(spec)
    event = Event(
        EventKind.REPORT,
        host,
        "",
        subject=f"[cairn] test message from the agent on {host}",
        text=f"This is a test of the notifications of the Cairn agent on {host}, sent by "
        "`cairn agent test-notify`. If it reached you, alerts will too.",
        details={"test": True},
    )
    results: list[dict[str, Any]] = []
    failed: NotifyError | None = None
    for channel in spec.channels:
        where = _channel_name(channel)
        try:
            channel_for(channel).send(event)
        except NotifyError as exc:
            results.append({"channel": where, "sent": False, "code": exc.code, "error": str(exc)})
            ctx.output.text(f"{where}: NOT sent: {exc.code}: {exc}")
            failed = failed or exc
            continue
        results.append({"channel": where, "sent": True})
        ctx.output.text(f"{where}: sent")
    ctx.output.json({"channels": results})
    if failed is not None:
        raise failed
    return 0


def _channel_name(channel: ChannelSpec) -> str:
    """Where a channel sends, for people (a webhook's path often holds a token: left out)."""
    if isinstance(channel, EmailSpec):
        return (
            f"e-mail via {channel.smtp_host}:{channel.smtp_port} to {', '.join(channel.recipients)}"
        )
    return f"webhook to {urlsplit(channel.url).hostname}"
