"""Reading `[[notify]]` channels and `[alerts]` from a checked TOML table (design 15.6): shared by
the agent's configuration file and the server's `--notify` file."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cairn.config.tomltable import ConfigError, Table, positive
from cairn.notify.message import AlertPolicy, ChannelSpec, EmailSpec, EventKind, WebhookSpec

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Notify = tuple[tuple[ChannelSpec, ...], AlertPolicy]
"""The channels to tell, and when."""
CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def load_notify_file(path: Path) -> Notify:
    """A file of only `[[notify]]` and `[alerts]` (the server's); raises ConfigError."""
    return parse_notify(read_toml(path), path)


def read_toml(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from exc
    try:
        return tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def parse_notify(
    data: Mapping[str, Any], file: Path
) -> tuple[tuple[ChannelSpec, ...], AlertPolicy]:
    top = Table(file, "", dict(data))
    channels = channels_of(top)
    alerts = alerts_of(top)
    top.done(("notify", "alerts"))
    return channels, alerts


def channels_of(top: Table) -> tuple[ChannelSpec, ...]:
    return tuple(_channel(t) for t in top.tables("notify"))


def alerts_of(top: Table) -> AlertPolicy:
    table = top.table("alerts")
    return _alerts(table) if table else AlertPolicy()


EVENTS = tuple(k.value for k in EventKind)


def _events(t: Table) -> frozenset[EventKind]:
    names = t.strings("on", f"a list of {', '.join(EVENTS)}")
    for name in names:
        if name not in EVENTS:
            raise t.fail("on", f"{name!r} is not allowed; one of {', '.join(EVENTS)}")
    return frozenset(EventKind(n) for n in names) if names else frozenset(EventKind)


def _channel(t: Table) -> ChannelSpec:
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


def _email(t: Table) -> ChannelSpec:
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
        timeout_s=positive(t, "timeout", 30.0),
    )
    t.done(EMAIL_KEYS)
    return spec


def _webhook(t: Table) -> ChannelSpec:
    url = t.need("url", str, "an http:// or https:// address")
    if not url.startswith(("http://", "https://")):
        raise t.fail("url", f"{url!r} is not allowed; an http:// or https:// address")
    spec = WebhookSpec(
        url=url,
        secret_file=t.get("secret_file", str, "a file path"),
        on=_events(t),
        ca_file=t.get("ca_file", str, "a PEM file path"),
        timeout_s=positive(t, "timeout", 30.0),
    )
    t.done(("kind", "url", "secret_file", "on", "ca_file", "timeout"))
    return spec


def _alerts(t: Table) -> AlertPolicy:
    silence_s: float | None = 26 * 3600.0
    if t.peek("silence_after") == "off":
        t.raw("silence_after")
        silence_s = None
    elif t.has("silence_after"):
        silence_s = positive(t, "silence_after")
    policy = AlertPolicy(silence_after_s=silence_s, repeat_s=positive(t, "repeat", 24 * 3600.0))
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
