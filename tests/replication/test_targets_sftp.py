"""`cairn server target add` against a real OpenSSH sshd: a good SFTP target is checked and
saved; a wrong password or an unknown host key fails with the backend's own code (E037, E038)
and nothing is saved (design 17.10)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cairn.server.app import open_services
from cairn.server.context import Settings
from tests.replication.test_targets_cli import UNICODE_FOLDER, target_cmd, target_json
from tests.support.storageservers import SshServer, missing_server
from tests.support.storageservers import sshd as sshd  # the session's server

pytestmark = pytest.mark.required("an SFTP server (OpenSSH sshd)")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    open_services(Settings(data=folder))
    return folder


def test_an_sftp_target_with_a_unicode_path_is_checked_and_saved(
    sshd: SshServer, data: Path, tmp_path: Path
) -> None:
    folder = tmp_path / UNICODE_FOLDER
    folder.mkdir()
    location = sshd.location(folder)
    env = sshd.env(CAIRN_SFTP_NO_AGENT="1")
    result = target_cmd(data, "add", "offsite", location, "--json", env=env).json()
    assert [(s["step"], s["ok"]) for s in result["check"]] == [
        ("open", True), ("connect", True), ("probe", True),
    ]  # fmt: skip
    assert result["target"]["location"] == location
    assert (folder / "cairn-probe").is_dir(), "the probe ran under its scratch prefix"
    tested = target_cmd(data, "test", "offsite", "--json", env=env).json()
    assert tested["ok"] is True


def test_a_wrong_password_is_e037_and_nothing_is_saved(
    sshd: SshServer, data: Path, tmp_path: Path
) -> None:
    if not sshd.passwords:
        missing_server("a password for sshd's user (root, unshare and openssl)")
    password_file = tmp_path / "sftp-password"
    password_file.write_text("not the password\n")
    env = {
        "CAIRN_SFTP_KNOWN_HOSTS": str(sshd.known_hosts),
        "CAIRN_SFTP_PASSWORD_FILE": str(password_file),
        "CAIRN_SFTP_NO_AGENT": "1",
        "HOME": str(tmp_path / "home"),  # no default keys to fall back on
    }
    result = target_cmd(data, "add", "offsite", sshd.location(tmp_path), check=False, env=env)
    assert result.code == 37 and "CAIRN-E037" in result.err, result.err
    assert "connect FAILED" in result.out
    assert target_json(data, "list") == []


def test_a_wrong_key_is_e037_and_nothing_is_saved(
    sshd: SshServer, data: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    env = sshd.env(CAIRN_SFTP_KEY=str(other), CAIRN_SFTP_NO_AGENT="1")
    result = target_cmd(data, "add", "offsite", sshd.location(tmp_path), check=False, env=env)
    assert result.code == 37 and "CAIRN-E037" in result.err, result.err
    assert target_json(data, "list") == []


def test_an_unknown_host_key_is_e038_and_nothing_is_saved(
    sshd: SshServer, data: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    env = sshd.env(CAIRN_SFTP_KNOWN_HOSTS=str(empty), CAIRN_SFTP_NO_AGENT="1")
    result = target_cmd(data, "add", "offsite", sshd.location(tmp_path), check=False, env=env)
    assert result.code == 38 and "CAIRN-E038" in result.err, result.err
    assert empty.read_text() == "", "a host key is never trusted silently"
    assert target_json(data, "list") == []
    audit = open_services(Settings(data=data)).audit.entries(100)
    assert not any(e["action"] == "add-target" for e in audit)


def test_test_reports_a_target_gone_bad_with_its_code(
    sshd: SshServer, data: Path, tmp_path: Path
) -> None:
    env = sshd.env(CAIRN_SFTP_NO_AGENT="1")
    target_cmd(data, "add", "offsite", sshd.location(tmp_path), env=env)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = target_cmd(
        data, "test", "offsite", check=False, env=sshd.env(CAIRN_SFTP_KNOWN_HOSTS=str(empty))
    )
    assert result.code == 38 and "FAILED" in result.out and "probe" not in result.out
