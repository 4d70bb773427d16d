"""The server alerts on the job results agents report (`cairn server serve --notify FILE`):
a failure e-mail and a recovery e-mail read back from a real SMTP server, and silence judged on
the server's clock."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from cairn.notify.alerts import Alerter
from cairn.notify.message import AlertPolicy, Event, EventKind
from cairn.server.alerting import JobAlerts
from cairn.server.app import open_services
from cairn.server.auth import Role
from cairn.server.context import Settings
from cairn.server.jobresults import parse_report
from tests.support.notifyfixtures import (
    email_notify_file,
    make_certificates,
    smtp_server,
)
from tests.support.serverfixture import running_server

DEADLINE_S = 120.0


def report(url: str, token: str, outcome: str, error_code: str | None = None) -> None:
    now = time.time()
    body = {
        "job": "docs",
        "host": "laptop",
        "started": now - 5,
        "ended": now,
        "outcome": outcome,
        "snapshot": None,
        "files": 3,
        "bytes_added": 10,
        "error_code": error_code,
        "message": "storage unreachable" if error_code else "",
    }
    answer = httpx.post(
        f"{url}/v1/t/acme/jobs",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        verify=False,
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


def wait_for_mail(inbox: list, count: int) -> None:  # type: ignore[type-arg]
    end = time.monotonic() + DEADLINE_S
    while len(inbox) < count:
        assert time.monotonic() < end, f"only {len(inbox)} e-mails arrived"
        time.sleep(0.1)


def test_the_server_mails_a_reported_failure_and_the_recovery(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    with smtp_server(certs, "starttls") as mail:
        notify = email_notify_file(tmp_path, mail, certs, '[alerts]\nsilence_after = "26h"\n')
        with running_server(tmp_path / "server", True, "--notify", str(notify)) as server:
            server.tenant("acme")
            token = server.token("acme", Role.BACKUP)
            report(server.url, token, "failure", "CAIRN-E033")
            wait_for_mail(mail.inbox.messages, 1)
            failed = mail.inbox.messages[0].message
            assert "FAILED" in failed["Subject"] and "acme/laptop/docs" in failed["Subject"]
            assert "CAIRN-E033" in failed.get_content()
            report(server.url, token, "success")
            wait_for_mail(mail.inbox.messages, 2)
            assert "RECOVERED" in mail.inbox.messages[1].message["Subject"]
            report(server.url, token, "success")
            time.sleep(2)  # a second success tells nothing new
            assert len(mail.inbox.messages) == 2


def test_a_bad_notify_file_stops_the_server_from_starting(tmp_path: Path) -> None:
    notify = tmp_path / "notify.toml"
    notify.write_text('[[notify]]\nkind = "email"\nsmtp = "nowhere"\n')
    with pytest.raises(RuntimeError, match="CAIRN-E080"):  # noqa: SIM117
        with running_server(tmp_path / "server", True, "--notify", str(notify)):
            pass


class Collected:
    """A channel that keeps what it is given (the e-mail path is proven above)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def send(self, event: Event) -> None:
        self.events.append(event)


def test_silence_is_judged_by_the_servers_clock(tmp_path: Path) -> None:
    clock = [time.time()]
    services = open_services(Settings(data=tmp_path / "data"))
    services.tenants.create("acme", None)
    channel = Collected()
    policy = AlertPolicy(silence_after_s=3600.0)
    alerter = Alerter([channel], policy, tmp_path / "alerts.json", lambda: clock[0])
    alerts = JobAlerts(alerter, services.jobs, services.tenants)
    now = time.time()
    # the client claims a success in the far future: the server goes by its arrival time
    body = {
        "job": "docs",
        "host": "laptop",
        "started": now + 10 * 86400,
        "ended": now + 10 * 86400 + 5,
        "outcome": "success",
        "snapshot": None,
        "files": 1,
        "bytes_added": 1,
        "error_code": None,
        "message": "",
    }
    services.jobs.record("acme", parse_report(body), "token")
    alerts.tick()
    assert channel.events == []
    clock[0] += 2 * 3600
    alerts.tick()
    assert [e.kind for e in channel.events] == [EventKind.SILENCE]
    assert "acme/laptop/docs" in channel.events[0].subject
    alerts.tick()
    assert len(channel.events) == 1  # once per silence
