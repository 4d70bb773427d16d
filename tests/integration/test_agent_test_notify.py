"""`cairn agent test-notify`: one test message through every channel, read back from a real SMTP
server; a wrong password is reported with its code, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.support.clitools import Cairn
from tests.support.notifyfixtures import SMTP_PASSWORD, SMTP_USER, make_certificates, smtp_server

CAIRN = (sys.executable, "-m", "cairn.cli.main")


def _config(tmp_path: Path, port: int, ca: Path, password: str) -> Path:
    secret = tmp_path / "smtp.pass"
    secret.write_text(password + "\n")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nstate = "{tmp_path / "state"}"\nhost = "pc-7"\n\n'
        "[[notify]]\n"
        f'kind = "email"\nsmtp = "127.0.0.1:{port}"\nsecurity = "starttls"\n'
        f'user = "{SMTP_USER}"\npassword_file = "{secret}"\nca_file = "{ca}"\n'
        'from = "cairn@pc-7.example"\nto = ["ops@example.org"]\non = ["failure"]\n'
    )
    return config


def _test_notify(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cairn.cli.main",
            "agent",
            "test-notify",
            "--json",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=Cairn(config.parent).env(),
        timeout=120,
        check=False,
    )


def test_a_test_message_arrives_whatever_the_channels_events(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    with smtp_server(certs, "starttls") as mail:
        done = _test_notify(_config(tmp_path, mail.port, certs.ca_file, SMTP_PASSWORD))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["channels"][0]["sent"] is True
        deadline = time.monotonic() + 30
        while not mail.inbox.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        got = mail.inbox.messages[0]
        assert "test message" in got.message["Subject"] and "pc-7" in got.message["Subject"]
        assert got.rcpt_tos == ["ops@example.org"] and got.tls


def test_a_wrong_password_is_reported_with_its_code(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    with smtp_server(certs, "starttls") as mail:
        done = _test_notify(_config(tmp_path, mail.port, certs.ca_file, "wrong"))
        assert done.returncode == 103, done.stderr
        assert "Traceback" not in done.stderr
        out = json.loads(done.stdout)
        assert out["result"]["channels"][0]["code"] == "CAIRN-E103"
        assert out["error"]["code"] == "CAIRN-E103"
        assert mail.inbox.messages == []
