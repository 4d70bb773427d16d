"""Reading the agent's TOML file into an AgentSpec (design 15.2).

Every key is checked: an unknown key or a bad value is a ConfigError naming the file, the key and
what is allowed, because a typo must never silently disable a schedule. Only this module knows
TOML; the rest of the agent takes the types of `cairn.agent.spec`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from cronsim import CronSim, CronSimError

from cairn.agent.spec import (
    AgentSpec,
    At,
    Continuous,
    Cron,
    DumpSpec,
    Every,
    HookSpec,
    JobSpec,
    Schedule,
    WhenReachable,
    Window,
)
from cairn.config.tomltable import DURATION, ConfigError, Table, positive
from cairn.core.errors import CairnError
from cairn.core.units import parse_interval, parse_rate
from cairn.notify.config import CLOCK_TIME, DAYS, alerts_of, channels_of, read_toml
from cairn.notify.message import AlertPolicy, ChannelSpec, EmailSpec

DEFAULT_CONFIG = Path("/etc/cairn/agent.toml")
DEFAULT_STATE = Path("/var/lib/cairn-agent")
HOOK_WHEN = ("before", "after", "failure", "always")
DUMP_KINDS = ("postgresql", "mysql")
PRIORITIES = ("low", "normal")
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

T = TypeVar("T")


class UnknownJob(CairnError):
    """A job name that the configuration does not define."""


def find_job(spec: AgentSpec, name: str) -> JobSpec:
    for job in spec.jobs:
        if job.name == name:
            return job
    known = ", ".join(j.name for j in spec.jobs) or "none"
    raise UnknownJob(f"no job called {name!r} in the configuration (jobs: {known})")


def load_config(path: Path) -> AgentSpec:
    """Read and check the file at `path`; raises ConfigError."""
    return parse_config(read_toml(path), path)


def state_folder(path: Path) -> Path:
    """The state folder the file at `path` names, read leniently, for when the file is broken
    elsewhere (`cairn agent status` still shows the history): `[agent] state` if it is an
    absolute path, else the default."""
    try:
        agent = read_toml(path).get("agent")
    except ConfigError:
        return DEFAULT_STATE
    state = agent.get("state") if isinstance(agent, dict) else None
    if isinstance(state, str) and state.startswith("/"):
        return Path(state)
    return DEFAULT_STATE


def named_files(spec: AgentSpec) -> list[tuple[str, str]]:
    """Every file the configuration names for a secret or a certificate, with its key as
    CAIRN-E080 names it: (`job[home].password_file`, `/etc/cairn/home.pass`)."""
    found: list[tuple[str, str]] = []
    for job in spec.jobs:
        where = f"job[{job.name}]"
        found += _files(where, password_file=job.password_file, token_file=job.token_file)
        for i, dump in enumerate(job.dumps):
            found += _files(f"{where}.dump[{i}]", password_file=dump.password_file)
    for i, channel in enumerate(spec.channels):
        where = f"notify[{i}]"
        if isinstance(channel, EmailSpec):
            found += _files(where, password_file=channel.password_file, ca_file=channel.ca_file)
        else:
            found += _files(where, secret_file=channel.secret_file, ca_file=channel.ca_file)
    return found


def _files(where: str, **keys: str | None) -> list[tuple[str, str]]:
    return [(f"{where}.{key}", value) for key, value in keys.items() if value is not None]


def check_files(spec: AgentSpec, file: Path) -> None:
    """Raise ConfigError for the first named file that cannot be read now (`cairn agent
    check-config`: a run would fail on it; the agent itself reads them only when it needs
    them, so a secret that is mounted later does not stop it from starting)."""
    for key, name in named_files(spec):
        try:
            with open(name, "rb") as f:
                f.read(1)
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
            raise ConfigError(
                f"{file}: {key}: {name} cannot be read ({problem}); name a readable file"
            ) from exc


RATE = "a rate such as 20 MiB/s"


def parse_config(data: Mapping[str, Any], file: Path) -> AgentSpec:
    top = Table(file, "", dict(data))
    agent = top.table("agent") or Table(file, "agent", {})
    jobs = tuple(_job(t) for t in top.tables("job"))
    channels = channels_of(top)
    alerts = alerts_of(top)
    top.done(("agent", "job", "notify", "alerts"))
    names = [j.name for j in jobs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{file}: job: two jobs are called {name!r}; names must differ")
    spec = _agent(agent, jobs, channels, alerts)
    return spec


def _agent(
    t: Table, jobs: tuple[JobSpec, ...], channels: tuple[ChannelSpec, ...], alerts: AlertPolicy
) -> AgentSpec:
    state = t.get("state", str, "a folder path")
    if state is not None and not state.startswith("/"):
        raise t.fail("state", f"{state!r} is not allowed; the path must be absolute")
    jitter = t.parsed("jitter", parse_interval, DURATION)
    spec = AgentSpec(
        state=Path(state) if state else DEFAULT_STATE,
        jobs=jobs,
        jitter_s=300.0 if jitter is None else jitter,
        upload_limit=t.parsed("upload_limit", parse_rate, RATE),
        upload_windows=tuple(_window(w) for w in t.tables("upload_windows")),
        priority=t.choice("priority", PRIORITIES, "normal") or "normal",
        host=t.get("host", str, "a host name"),
        channels=channels,
        alerts=alerts,
    )
    t.done(("state", "jitter", "upload_limit", "upload_windows", "priority", "host"))
    return spec


def _window(t: Table) -> Window:
    start = t.need("from", str, "a local time HH:MM")
    end = t.need("to", str, "a local time HH:MM")
    for key, value in (("from", start), ("to", end)):
        if not CLOCK_TIME.match(value):
            raise t.fail(key, f"{value!r} is not allowed; expected a local time HH:MM")
    limit = t.parsed("limit", parse_rate, RATE)
    if limit is None:
        raise t.fail("limit", f"is required ({RATE})")
    t.done(("from", "to", "limit"))
    return Window(start, end, limit)


JOB_KEYS = (
    "name",
    "repository",
    "paths",
    "schedule",
    "exclude",
    "password_file",
    "password_command",
    "token_file",
    "tags",
    "hook",
    "dump",
    "retries",
    "retry_backoff",
    "timeout",
    "upload_limit",
    "priority",
    "suspended",
)


def _job(t: Table) -> JobSpec:
    name = t.need("name", str, "a name of letters, digits, '.', '_' and '-'")
    if not JOB_NAME.match(name):
        raise t.fail("name", f"{name!r} is not allowed; letters, digits, '.', '_', '-' (max 64)")
    t = t.renamed(f"job[{name}]")
    paths = t.strings("paths", "a list of absolute paths")
    if not paths:
        raise t.fail("paths", "is required (a list of absolute paths)")
    for p in paths:
        if not p.startswith("/"):
            raise t.fail("paths", f"{p!r} is not allowed; paths must be absolute")
    schedule_table = t.table("schedule")
    if schedule_table is None:
        raise t.fail("schedule", "is required: { every = ... }, { cron = ... }, { at = [...] }, …")
    retries = t.get("retries", int, "a whole number from 0 to 100", 3)
    if retries is None or not 0 <= retries <= 100:
        raise t.fail("retries", f"{retries!r} is not allowed; a whole number from 0 to 100")
    backoff = t.parsed("retry_backoff", parse_interval, DURATION)
    timeout = t.parsed("timeout", parse_interval, DURATION)
    job = JobSpec(
        name=name,
        repository=t.need("repository", str, "a path or a cairn:// / cairns:// address"),
        paths=paths,
        schedule=_schedule(schedule_table),
        exclude=t.strings("exclude", "a list of patterns"),
        password_file=t.get("password_file", str, "a file path"),
        password_command=t.get("password_command", str, "a command line"),
        token_file=t.get("token_file", str, "a file path"),
        tags=t.strings("tags", "a list of tags"),
        hooks=tuple(_hook(h) for h in t.tables("hook")),
        dumps=tuple(_dump(d) for d in t.tables("dump")),
        retries=retries,
        retry_backoff_s=60.0 if backoff is None else backoff,
        timeout_s=12 * 3600.0 if timeout is None else timeout,
        upload_limit=t.parsed("upload_limit", parse_rate, RATE),
        priority=t.choice("priority", PRIORITIES),
        suspended=bool(t.get("suspended", bool, "true or false", False)),
    )
    if job.timeout_s <= 0:
        raise t.fail("timeout", "must be more than 0")
    t.done(JOB_KEYS)
    return job


SCHEDULE_KINDS = "every, cron, at (with days), continuous or when_reachable"


def _schedule(t: Table) -> Schedule:
    kinds = [k for k in ("every", "cron", "at", "continuous", "when_reachable") if t.has(k)]
    if kinds == ["every", "when_reachable"]:
        kinds = ["when_reachable"]  # `every` is its fallback interval
    if len(kinds) != 1:
        raise t.fail("", f"give exactly one of {SCHEDULE_KINDS}")
    return {
        "every": _every,
        "cron": _cron,
        "at": _at,
        "continuous": _continuous,
        "when_reachable": _when_reachable,
    }[kinds[0]](t)


def _every(t: Table) -> Schedule:
    schedule = Every(positive(t, "every"))
    t.done(("every",))
    return schedule


def _cron(t: Table) -> Schedule:
    expression = t.need("cron", str, "a five-field cron expression")
    if len(expression.split()) != 5:
        raise t.fail("cron", f"{expression!r} is not allowed; five fields: min hour day month dow")
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise t.fail("cron", f"{expression!r} is not allowed: {exc}") from exc
    t.done(("cron",))
    return Cron(expression)


def _at(t: Table) -> Schedule:
    times = t.strings("at", 'a list of local times such as ["02:00", "14:30"]')
    if not times:
        raise t.fail("at", "give at least one local time HH:MM")
    for value in times:
        if not CLOCK_TIME.match(value):
            raise t.fail("at", f"{value!r} is not allowed; expected a local time HH:MM")
    days = tuple(d.lower() for d in t.strings("days", "a list of mon … sun"))
    for day in days:
        if day not in DAYS:
            raise t.fail("days", f"{day!r} is not allowed; one of {', '.join(DAYS)}")
    t.done(("at", "days"))
    return At(tuple(sorted(set(times))), days)


def _continuous(t: Table) -> Schedule:
    if t.get("continuous", bool, "true") is not True:
        raise t.fail("continuous", "only `continuous = true` is allowed")
    schedule = Continuous(positive(t, "debounce", 30.0), positive(t, "min_interval", 600.0))
    t.done(("continuous", "debounce", "min_interval"))
    return schedule


def _when_reachable(t: Table) -> Schedule:
    if t.get("when_reachable", bool, "true") is not True:
        raise t.fail("when_reachable", "only `when_reachable = true` is allowed")
    schedule = WhenReachable(positive(t, "every", 86400.0), positive(t, "probe", 300.0))
    t.done(("when_reachable", "every", "probe"))
    return schedule


def _hook(t: Table) -> HookSpec:
    when = t.choice("when", HOOK_WHEN)
    if when is None:
        raise t.fail("when", f"is required ({', '.join(HOOK_WHEN)})")
    run = t.raw("run")
    if isinstance(run, list) and run and all(isinstance(a, str) for a in run):
        command: tuple[str, ...] | str = tuple(run)
    elif isinstance(run, str) and run.strip():
        command = run
    else:
        raise t.fail("run", f"{run!r} is not allowed; a list of arguments, or a shell command")
    spec = HookSpec(when, command, positive(t, "timeout", 600.0))
    t.done(("when", "run", "timeout"))
    return spec


def _dump(t: Table) -> DumpSpec:
    kind = t.choice("kind", DUMP_KINDS)
    if kind is None:
        raise t.fail("kind", f"is required ({', '.join(DUMP_KINDS)})")
    port = t.get("port", int, "a port number")
    if port is not None and not 0 < port < 65536:
        raise t.fail("port", f"{port} is not allowed; a port number 1-65535")
    spec = DumpSpec(
        kind=kind,
        database=t.need("database", str, 'a database name, or "all"'),
        host=t.get("host", str, "a host name or address"),
        port=port,
        user=t.get("user", str, "a user name"),
        password_file=t.get("password_file", str, "a file path"),
        options=t.strings("options", "a list of extra arguments"),
        timeout_s=positive(t, "timeout", 3600.0),
    )
    t.done(("kind", "database", "host", "port", "user", "password_file", "options", "timeout"))
    return spec
