"""Reading the agent's TOML file into an AgentSpec (design 15.2).

Every key is checked: an unknown key or a bad value is a ConfigError naming the file, the key and
what is allowed, because a typo must never silently disable a schedule. Only this module knows
TOML; the rest of the agent takes the types of `cairn.agent.spec`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
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
from cairn.core.errors import CairnError
from cairn.core.units import parse_duration, parse_rate
from cairn.notify.message import AlertPolicy, ChannelSpec, EmailSpec, EventKind, WebhookSpec

DEFAULT_CONFIG = Path("/etc/cairn/agent.toml")
DEFAULT_STATE = Path("/var/lib/cairn-agent")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOOK_WHEN = ("before", "after", "failure", "always")
DUMP_KINDS = ("postgresql", "mysql")
PRIORITIES = ("low", "normal")
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

T = TypeVar("T")


class ConfigError(CairnError):
    """The agent's configuration file is unusable; the message names the file and the key."""


class UnknownJob(CairnError):
    """A job name that the configuration does not define."""


def find_job(spec: AgentSpec, name: str) -> JobSpec:
    for job in spec.jobs:
        if job.name == name:
            return job
    known = ", ".join(j.name for j in spec.jobs) or "none"
    raise UnknownJob(f"no job called {name!r} in the configuration (jobs: {known})")


class _Table:
    """One TOML table being read: hands out values by key, and knows the keys still unread."""

    def __init__(self, file: Path, where: str, data: object) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {where or 'the file'}: must be a table")
        self.file = file
        self.where = where
        self._data: dict[str, Any] = data
        self._unread = set(data)

    def key(self, name: str) -> str:
        if not name:
            return self.where
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key(name)}: {problem}")

    def has(self, name: str) -> bool:
        return name in self._data

    def peek(self, name: str) -> Any:
        return self._data.get(name)

    def renamed(self, where: str) -> _Table:
        self.where = where
        return self

    def raw(self, name: str) -> Any:
        self._unread.discard(name)
        return self._data.get(name)

    def get(self, name: str, kind: type[T], allowed: str, default: T | None = None) -> T | None:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"{value!r} is not allowed; expected {allowed}")
        return value

    def need(self, name: str, kind: type[T], allowed: str) -> T:
        value = self.get(name, kind, allowed)
        if value is None:
            raise self.fail(name, f"is required ({allowed})")
        return value

    def parsed(self, name: str, parse: Callable[[str], T], allowed: str) -> T | None:
        text = self.get(name, str, allowed)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            raise self.fail(name, f"{text!r} is not allowed; expected {allowed}") from exc

    def strings(self, name: str, allowed: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, f"{value!r} is not allowed; expected {allowed}")
        return tuple(value)

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.get(name, str, " or ".join(choices))
        if value is None:
            return default
        if value not in choices:
            raise self.fail(name, f"{value!r} is not allowed; one of {', '.join(choices)}")
        return value

    def tables(self, name: str) -> list[_Table]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            value = [value]
        return [_Table(self.file, f"{self.key(name)}[{i}]", v) for i, v in enumerate(value)]

    def table(self, name: str) -> _Table | None:
        value = self.raw(name)
        return None if value is None else _Table(self.file, self.key(name), value)

    def done(self, allowed: tuple[str, ...]) -> None:
        """Refuse the keys nobody read: they are typos or options of another version."""
        if self._unread:
            name = sorted(self._unread)[0]
            raise self.fail(name, f"unknown key; allowed here: {', '.join(allowed)}")


def load_config(path: Path) -> AgentSpec:
    """Read and check the file at `path`; raises ConfigError."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, path)


DURATION = "a duration such as 90s, 15m, 6h, 2d"
RATE = "a rate such as 20 MiB/s"


def parse_config(data: Mapping[str, Any], file: Path) -> AgentSpec:
    top = _Table(file, "", dict(data))
    agent = top.table("agent") or _Table(file, "agent", {})
    jobs = tuple(_job(t) for t in top.tables("job"))
    channels = tuple(_channel(t) for t in top.tables("notify"))
    alerts_table = top.table("alerts")
    alerts = _alerts(alerts_table) if alerts_table else AlertPolicy()
    top.done(("agent", "job", "notify", "alerts"))
    names = [j.name for j in jobs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{file}: job: two jobs are called {name!r}; names must differ")
    spec = _agent(agent, jobs, channels, alerts)
    return spec


def _agent(
    t: _Table, jobs: tuple[JobSpec, ...], channels: tuple[ChannelSpec, ...], alerts: AlertPolicy
) -> AgentSpec:
    state = t.get("state", str, "a folder path")
    if state is not None and not state.startswith("/"):
        raise t.fail("state", f"{state!r} is not allowed; the path must be absolute")
    jitter = t.parsed("jitter", parse_duration, DURATION)
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


def _window(t: _Table) -> Window:
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


def _job(t: _Table) -> JobSpec:
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
    backoff = t.parsed("retry_backoff", parse_duration, DURATION)
    timeout = t.parsed("timeout", parse_duration, DURATION)
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


def _schedule(t: _Table) -> Schedule:
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


def _positive(t: _Table, name: str, default: float | None = None) -> float:
    value = t.parsed(name, parse_duration, DURATION)
    if value is None:
        if default is None:
            raise t.fail(name, f"is required ({DURATION})")
        return default
    if value <= 0:
        raise t.fail(name, "must be more than 0")
    return value


def _every(t: _Table) -> Schedule:
    schedule = Every(_positive(t, "every"))
    t.done(("every",))
    return schedule


def _cron(t: _Table) -> Schedule:
    expression = t.need("cron", str, "a five-field cron expression")
    if len(expression.split()) != 5:
        raise t.fail("cron", f"{expression!r} is not allowed; five fields: min hour day month dow")
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise t.fail("cron", f"{expression!r} is not allowed: {exc}") from exc
    t.done(("cron",))
    return Cron(expression)


def _at(t: _Table) -> Schedule:
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


def _continuous(t: _Table) -> Schedule:
    if t.get("continuous", bool, "true") is not True:
        raise t.fail("continuous", "only `continuous = true` is allowed")
    schedule = Continuous(_positive(t, "debounce", 30.0), _positive(t, "min_interval", 600.0))
    t.done(("continuous", "debounce", "min_interval"))
    return schedule


def _when_reachable(t: _Table) -> Schedule:
    if t.get("when_reachable", bool, "true") is not True:
        raise t.fail("when_reachable", "only `when_reachable = true` is allowed")
    schedule = WhenReachable(_positive(t, "every", 86400.0), _positive(t, "probe", 300.0))
    t.done(("when_reachable", "every", "probe"))
    return schedule


def _hook(t: _Table) -> HookSpec:
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
    spec = HookSpec(when, command, _positive(t, "timeout", 600.0))
    t.done(("when", "run", "timeout"))
    return spec


def _dump(t: _Table) -> DumpSpec:
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
        timeout_s=_positive(t, "timeout", 3600.0),
    )
    t.done(("kind", "database", "host", "port", "user", "password_file", "options", "timeout"))
    return spec


EVENTS = tuple(k.value for k in EventKind)


def _events(t: _Table) -> frozenset[EventKind]:
    names = t.strings("on", f"a list of {', '.join(EVENTS)}")
    for name in names:
        if name not in EVENTS:
            raise t.fail("on", f"{name!r} is not allowed; one of {', '.join(EVENTS)}")
    return frozenset(EventKind(n) for n in names) if names else frozenset(EventKind)


def _channel(t: _Table) -> ChannelSpec:
    kind = t.choice("kind", ("email", "webhook"))
    if kind is None:
        raise t.fail("kind", "is required (email or webhook)")
    return _email(t) if kind == "email" else _webhook(t)


EMAIL_KEYS = (
    "kind",
    "smtp",
    "security",
    "from",
    "to",
    "user",
    "password_file",
    "on",
    "ca_file",
    "timeout",
)


def _email(t: _Table) -> ChannelSpec:
    smtp = t.need("smtp", str, "HOST:PORT of the mail server")
    host, _, port = smtp.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise t.fail("smtp", f"{smtp!r} is not allowed; expected HOST:PORT")
    recipients = t.strings("to", "a list of e-mail addresses")
    if not recipients:
        raise t.fail("to", "is required (a list of e-mail addresses)")
    spec = EmailSpec(
        smtp_host=host.strip("[]"),
        smtp_port=int(port),
        security=t.choice("security", ("starttls", "tls", "none"), "starttls") or "starttls",
        sender=t.need("from", str, "an e-mail address"),
        recipients=recipients,
        user=t.get("user", str, "a user name"),
        password_file=t.get("password_file", str, "a file path"),
        on=_events(t),
        ca_file=t.get("ca_file", str, "a PEM file path"),
        timeout_s=_positive(t, "timeout", 30.0),
    )
    t.done(EMAIL_KEYS)
    return spec


def _webhook(t: _Table) -> ChannelSpec:
    url = t.need("url", str, "an http:// or https:// address")
    if not url.startswith(("http://", "https://")):
        raise t.fail("url", f"{url!r} is not allowed; an http:// or https:// address")
    spec = WebhookSpec(
        url=url,
        secret_file=t.get("secret_file", str, "a file path"),
        on=_events(t),
        ca_file=t.get("ca_file", str, "a PEM file path"),
        timeout_s=_positive(t, "timeout", 30.0),
    )
    t.done(("kind", "url", "secret_file", "on", "ca_file", "timeout"))
    return spec


def _alerts(t: _Table) -> AlertPolicy:
    silence_s: float | None = 26 * 3600.0
    if t.peek("silence_after") == "off":
        t.raw("silence_after")
        silence_s = None
    elif t.has("silence_after"):
        silence_s = _positive(t, "silence_after")
    policy = AlertPolicy(silence_after_s=silence_s, repeat_s=_positive(t, "repeat", 24 * 3600.0))
    report = t.table("report")
    if report is not None:
        every = report.choice("every", ("daily", "weekly"))
        if every is None:
            raise report.fail("every", "is required (daily or weekly)")
        at = report.get("at", str, "a local time HH:MM", "07:00") or "07:00"
        if not CLOCK_TIME.match(at):
            raise report.fail("at", f"{at!r} is not allowed; expected a local time HH:MM")
        day = report.choice("day", DAYS, "mon") or "mon"
        report.done(("every", "at", "day"))
        policy = AlertPolicy(policy.silence_after_s, policy.repeat_s, every, at, day)
    t.done(("silence_after", "repeat", "report"))
    return policy
