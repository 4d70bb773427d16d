"""E-mail against a real SMTP server (aiosmtpd) started on loopback: STARTTLS and implicit TLS
with a private CA, AUTH with a password; the message is read back from the server."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cairn.notify.alerts import Alerter
from cairn.notify.email import EmailChannel
from cairn.notify.errors import (
    NotifyAuthFailed,
    NotifyError,
    NotifyTlsError,
    NotifyUnreachable,
)
from cairn.notify.message import AlertPolicy, EmailSpec, Event, EventKind, Outcome, RunSummary
from tests.support.notifyfixtures import (
    SMTP_PASSWORD,
    SMTP_USER,
    Certificates,
    make_certificates,
    smtp_server,
)
from tests.support.serverfixture import free_port

EVENT = Event(
    EventKind.FAILURE,
    "pc-7",
    "home",
    "[cairn] FAILED: backup home on pc-7 (CAIRN-E033) – ünïcode",
    "The backup job 'home' failed.\nLast lines of the log:\n  boom",
    {"error_code": "CAIRN-E033"},
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "smtp.pass"
    path.write_text(SMTP_PASSWORD + "\n")
    return path


def spec(port: int, security: str, password_file: Path, certs: Certificates) -> EmailSpec:
    return EmailSpec(
        smtp_host="127.0.0.1",
        smtp_port=port,
        security=security,
        sender="cairn@pc-7.example",
        recipients=("ops@example.org", "boss@example.org"),
        user=SMTP_USER,
        password_file=str(password_file),
        ca_file=str(certs.ca_file),
        timeout_s=10,
    )


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_message_arrives_over_tls_after_auth(
    security: str, certs: Certificates, password_file: Path
) -> None:
    with smtp_server(certs, security) as server:
        EmailChannel(spec(server.port, security, password_file, certs)).send(EVENT)
        [got] = server.inbox.messages
    assert got.tls, "the message travelled over TLS"
    assert got.authenticated_as == SMTP_USER
    assert got.mail_from == "cairn@pc-7.example"
    assert got.rcpt_tos == ["ops@example.org", "boss@example.org"]
    message = got.message
    assert message["Subject"] == EVENT.subject
    assert message["To"] == "ops@example.org, boss@example.org"
    assert message["Date"] is not None
    assert message["Message-ID"].endswith("@pc-7.example>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content().rstrip("\n") == EVENT.text


def test_a_wrong_password_is_a_notify_error(
    certs: Certificates, password_file: Path, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the password\n")
    with smtp_server(certs, "starttls") as server:
        with pytest.raises(NotifyAuthFailed, match="refused user 'cairn'"):
            EmailChannel(spec(server.port, "starttls", wrong, certs)).send(EVENT)
        assert server.inbox.messages == []


def test_a_server_that_offers_no_starttls_gets_nothing(
    certs: Certificates, password_file: Path
) -> None:
    with smtp_server(None, "plain", auth=False) as server:
        with pytest.raises(NotifyTlsError, match="does not offer STARTTLS"):
            EmailChannel(spec(server.port, "starttls", password_file, certs)).send(EVENT)
        assert server.inbox.messages == [], "nothing was sent in clear text"


def test_a_certificate_from_an_untrusted_ca_is_refused(
    certs: Certificates, password_file: Path, tmp_path: Path
) -> None:
    other = make_certificates(tmp_path / "other")
    for security in ("starttls", "tls"):
        with smtp_server(certs, security) as server:
            untrusted = replace(spec(server.port, security, password_file, certs), ca_file=None)
            with pytest.raises(NotifyTlsError):
                EmailChannel(untrusted).send(EVENT)
            wrong_ca = replace(untrusted, ca_file=str(other.ca_file))
            with pytest.raises(NotifyTlsError):
                EmailChannel(wrong_ca).send(EVENT)
            assert server.inbox.messages == []


def test_a_server_that_is_down_is_a_notify_error(certs: Certificates, password_file: Path) -> None:
    with pytest.raises(NotifyUnreachable, match=r"127\.0\.0\.1"):
        EmailChannel(spec(free_port(), "starttls", password_file, certs)).send(EVENT)


def test_plain_smtp_goes_to_loopback_only(certs: Certificates, password_file: Path) -> None:
    with smtp_server(None, "plain", auth=False) as server:
        local = replace(spec(server.port, "none", password_file, certs), user=None)
        EmailChannel(local).send(EVENT)
        assert len(server.inbox.messages) == 1
    remote = replace(local, smtp_host="192.0.2.10")
    with pytest.raises(NotifyError, match="loopback"):
        EmailChannel(remote).send(EVENT)


def test_an_unreadable_password_file_is_a_notify_error(certs: Certificates, tmp_path: Path) -> None:
    with (
        smtp_server(certs, "starttls") as server,
        pytest.raises(NotifyError, match="cannot read the SMTP password file"),
    ):
        EmailChannel(spec(server.port, "starttls", tmp_path / "missing", certs)).send(EVENT)


def test_a_failing_before_hook_produces_a_failure_email_then_a_recovery_email(
    certs: Certificates, password_file: Path, tmp_path: Path
) -> None:
    """The issue's done-when, from the Alerter on: the run the agent records when a `before` hook
    fails becomes an e-mail that the test reads from the SMTP server."""
    clock = [1_772_000_000.0]
    failed = RunSummary(
        job="home",
        host="pc-7",
        started=clock[0] - 5,
        ended=clock[0],
        outcome=Outcome.FAILURE,
        error_code="CAIRN-E084",
        message="before hook /usr/local/sbin/snapshot-lvm exited with status 3",
        log_path="/var/lib/cairn-agent/logs/home/42.log",
        log_tail="Logical volume vg0/home: 0 free extents\nsnapshot-lvm: cannot create snapshot\n",
    )
    with smtp_server(certs, "starttls") as server:
        channel = EmailChannel(spec(server.port, "starttls", password_file, certs))
        alerter = Alerter([channel], AlertPolicy(), tmp_path / "alerts.json", lambda: clock[0])
        assert [e.kind for e in alerter.after_run(failed)] == [EventKind.FAILURE]
        [got] = server.inbox.messages
        text = got.message.get_content()
        assert got.message["Subject"] == "[cairn] FAILED: backup home on pc-7 (CAIRN-E084)"
        assert "snapshot-lvm exited with status 3" in text
        assert "snapshot-lvm: cannot create snapshot" in text, "the log's last lines"
        assert "/var/lib/cairn-agent/logs/home/42.log" in text
        assert "What to do" in text
        clock[0] += 3600
        succeeded = replace(
            failed,
            started=clock[0] - 5,
            ended=clock[0],
            outcome=Outcome.SUCCESS,
            error_code=None,
            snapshot="5e" * 32,
        )
        alerter.after_run(succeeded)
        assert [m.message["Subject"] for m in server.inbox.messages][1] == (
            "[cairn] RECOVERED: backup home on pc-7"
        )
