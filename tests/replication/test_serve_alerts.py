"""A failing replication target e-mails its operator, and e-mails again when it recovers
(issue 14's "done when", design 17.12): a real `cairn server serve --notify FILE`, an SFTP target
on OpenSSH's sshd reached through the shared `CuttingRelay`, a real SMTP server (aiosmtpd) whose
inbox the test reads. The relay cut and refusing connections is the target's server gone; healed
and the target edited (the operator's fix), the next run succeeds at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.test_offsite_copies import sftp_env as sftp_env
from tests.support.notifyfixtures import (
    email_notify_file,
    make_certificates,
    smtp_server,
)
from tests.support.serverfixture import RunningServer, running_server
from tests.support.storageservers import CuttingRelay, SshServer
from tests.support.storageservers import sshd as sshd  # the session's server

DEADLINE_S = 240.0
"""A bound on a wait: a run gives a dead target up after its retries (60 s), on a slow,
shared machine."""


def wait_for(what: str, ready: Any, server: RunningServer) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S}s; {server.log()}"
        time.sleep(0.3)


def status(server: RunningServer) -> dict[str, Any]:
    rows = admin(server, "target", "status")
    assert len(rows) == 1, rows
    return dict(rows[0])


def test_a_failing_target_sends_an_alert_and_then_the_recovery(
    sftp_env: SshServer, tmp_path: Path
) -> None:
    sshd = sftp_env  # its keys in this process's environment: `target add` checks the login
    certs = make_certificates(tmp_path / "certs")
    relay = CuttingRelay(sshd.port)
    sshd.write_known_hosts([sshd.port, relay.port])
    with smtp_server(certs, "starttls") as mail:
        notify = email_notify_file(tmp_path, mail, certs)
        inbox = mail.inbox.messages
        data = tmp_path / "data"
        with running_server(
            data,
            True,
            "--notify",
            str(notify),
        ) as server:
            token = str(admin(server, "tenant", "add", "acme")["admin_token"])
            client = Client(server, "acme", tmp_path / "home", token)
            client.run("init")
            source = tree(tmp_path / "src", 3, size=100_000)
            client.run("backup", str(source))
            location = sshd.location(tmp_path / "offsite", port=relay.port)
            admin(server, "target", "add", "sftp", location, "--retries", "0", "--backoff", "1s")
            wait_for("the first copy", lambda: status(server)["lag_objects"] == 0, server)
            assert inbox == [], "a healthy target tells nothing"

            relay.cut()  # the target's server is gone: connections cut, new ones refused
            (source / "later.bin").write_bytes(b"after the target went away\n" * 5000)
            client.run("backup", str(source))
            wait_for("the failure e-mail", lambda: len(inbox) >= 1, server)
            failed = inbox[0].message
            assert "FAILED" in failed["Subject"] and "replication/sftp" in failed["Subject"]
            assert "replication to sftp failed" in failed.get_content()
            assert status(server)["state"] == "failing"

            relay.heal()
            admin(server, "target", "edit", "sftp", "--backoff", "2s")  # the operator's fix
            wait_for("the recovery e-mail", lambda: len(inbox) >= 2, server)
            recovered = inbox[1].message
            assert "RECOVERED" in recovered["Subject"], recovered["Subject"]
            assert "replication/sftp" in recovered["Subject"]
            row = status(server)
            assert (row["state"], row["lag_objects"], row["failures"]) == ("ok", 0, 0), row
    relay.close()
