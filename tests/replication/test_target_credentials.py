"""Per-target credentials (design 17.9): two SFTP targets on the real sshd, one logging in with
the fixture's key and one with a password, each from its own credentials file and none from the
server's environment, both pass the check and replicate through the scheduler and the opener
`serve` uses; a file others can read, or with a name no backend takes, is refused; the stored
spec holds the path, never a secret; a rotated file is read at the next open."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.backends.base import ObjectKind
from cairn.backends.location import open_backend
from cairn.core.clock import FrozenClock
from cairn.replication.check import check_location
from cairn.replication.credentials import (
    CredentialsFileUnusable,
    read_credentials,
    target_environ,
)
from cairn.replication.db import ReplicationDb
from cairn.replication.engine import Replicator
from cairn.replication.journal import Journal
from cairn.replication.layout import server_id, tenant_location
from cairn.replication.model import Target
from cairn.replication.scheduler import Scheduler
from cairn.replication.targets import BadTargetSetting, TargetStore, spec_to_json
from cairn.server.replicating import TargetOpener
from tests.replication.test_journal_rules import Tenants, put
from tests.replication.test_targets_cli import target_cmd, target_json
from tests.support.storageservers import SFTP_PASSWORD, SshServer, missing_server
from tests.support.storageservers import sshd as sshd  # the session's server

NO_SFTP_VARIABLES: dict[str, str] = {}
"""The server's environment in these tests: no CAIRN_SFTP_* at all."""


def credentials_file(path: Path, *, mode: int = 0o600, **variables: str) -> Path:
    path.write_text(
        "# a target's own login\n\n" + "".join(f"{k}={v}\n" for k, v in variables.items())
    )
    path.chmod(mode)
    return path


def test_only_known_names_are_taken_and_the_line_is_named(tmp_path: Path) -> None:
    good = credentials_file(
        tmp_path / "good", AWS_ACCESS_KEY_ID="id", AWS_SECRET_ACCESS_KEY="a=b c"
    )
    assert read_credentials(good) == {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "a=b c"}
    typo = credentials_file(tmp_path / "typo", CAIRN_SFTP_PASWORD="x")
    with pytest.raises(BadTargetSetting, match="line 3: unknown name 'CAIRN_SFTP_PASWORD'"):
        read_credentials(typo)
    bare = tmp_path / "bare"
    bare.write_text("CAIRN_SFTP_KEY\n")
    bare.chmod(0o600)
    with pytest.raises(BadTargetSetting, match="line 1: no NAME=value"):
        read_credentials(bare)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    shared = credentials_file(tmp_path / "creds", mode=mode, CAIRN_SFTP_PASSWORD="secret")
    with pytest.raises(CredentialsFileUnusable, match=f"mode {mode:04o}.*chmod 600"):
        read_credentials(shared)
    with pytest.raises(CredentialsFileUnusable, match="cannot read"):
        read_credentials(tmp_path / "missing")


def test_the_spec_keeps_the_path_never_a_secret(tmp_path: Path) -> None:
    creds = credentials_file(tmp_path / "creds", CAIRN_SFTP_PASSWORD="hunter2")
    target = Target("t", "/x", credentials=str(creds))
    assert str(creds) in spec_to_json(target) and "hunter2" not in spec_to_json(target)
    assert "credentials" not in spec_to_json(Target("t", "/x")), "an older Cairn reads it"
    environ = target_environ(target, {"CAIRN_SFTP_PASSWORD": "server's", "OTHER": "1"})
    assert environ == {"CAIRN_SFTP_PASSWORD": "hunter2", "OTHER": "1"}
    creds.write_text("CAIRN_SFTP_PASSWORD=rotated\n")
    assert target_environ(target, {})["CAIRN_SFTP_PASSWORD"] == "rotated", "read at each open"


def test_cli_refuses_a_world_readable_file_and_stores_the_path(
    tmp_path: Path, sshd: SshServer
) -> None:
    from cairn.server.app import open_services
    from cairn.server.context import Settings

    data = tmp_path / "data"
    open_services(Settings(data=data))
    folder = tmp_path / "offsite"
    folder.mkdir()
    creds = credentials_file(
        tmp_path / "creds",
        mode=0o644,
        CAIRN_SFTP_KEY=str(sshd.key),
        CAIRN_SFTP_KNOWN_HOSTS=str(sshd.known_hosts),
        CAIRN_SFTP_NO_AGENT="1",
    )
    location = sshd.location(folder)
    refused = target_cmd(data, "add", "t", location, "--credentials", str(creds), check=False)
    assert refused.code == 127 and "CAIRN-E127" in refused.err and "chmod 600" in refused.err
    assert target_json(data, "list") == []
    creds.chmod(0o600)
    added = target_json(data, "add", "t", location, "--credentials", str(creds))
    assert added["target"]["credentials"] == str(creds)
    assert [s["ok"] for s in added["check"]] == [True, True, True]
    cleared = target_cmd(data, "edit", "t", "--credentials", "none", check=False)
    assert cleared.code == 38, "without the file the server's environment has no trust: checked"
    assert target_json(data, "show", "t")["credentials"] == str(creds), "the old one stays"


@pytest.mark.required("an SFTP server (OpenSSH sshd)")
def test_two_sftp_targets_with_their_own_logins_check_and_replicate(
    sshd: SshServer, tmp_path: Path
) -> None:
    if not sshd.passwords:
        missing_server("a password for sshd's user (root, unshare and openssl)")
    known, agent = str(sshd.known_hosts), "1"
    by_key = credentials_file(
        tmp_path / "by-key",
        CAIRN_SFTP_KEY=str(sshd.key),
        CAIRN_SFTP_KNOWN_HOSTS=known,
        CAIRN_SFTP_NO_AGENT=agent,
    )
    by_password = credentials_file(
        tmp_path / "by-password",
        CAIRN_SFTP_PASSWORD=SFTP_PASSWORD,  # sshd authorizes no key but the fixture's
        CAIRN_SFTP_KNOWN_HOSTS=known,
        CAIRN_SFTP_NO_AGENT=agent,
    )
    clock = FrozenClock(datetime(2026, 12, 7, tzinfo=UTC))
    db = ReplicationDb(tmp_path / "replication.db")
    tenants = Tenants(Journal(db, clock))
    saved = [put(tenants.stack("t1"), ObjectKind.CONFIG, b"config")]
    saved += [put(tenants.stack("t1"), ObjectKind.PACK, bytes([n]) * 3000) for n in range(5)]
    store = TargetStore(db, clock)
    targets = []
    for name, creds in (("by-key", by_key), ("by-password", by_password)):
        folder = tmp_path / f"{name}-offsite"
        folder.mkdir()
        target = Target(name, sshd.location(folder), credentials=str(creds))
        steps = check_location(
            target.location,
            open_backend,
            clock,
            environ=target_environ(target, NO_SFTP_VARIABLES),
        )
        assert [s.ok for s in steps] == [True, True, True], name
        targets.append(store.add(target))

    ids = server_id(tmp_path)
    opener = TargetOpener(ids, environ=NO_SFTP_VARIABLES)
    replicator = Replicator(db, tenants, ids, clock)
    scheduler = Scheduler(db, store, replicator, opener, clock)
    try:
        reports = scheduler.tick()
    finally:
        opener.close()
    assert sorted((r.target, r.error, r.objects_sent) for r in reports) == [
        ("by-key", None, 6), ("by-password", None, 6),
    ]  # fmt: skip
    for target in targets:
        copy = open_backend(
            tenant_location(target.location, ids, "t1"),
            environ=target_environ(target, NO_SFTP_VARIABLES),
        )
        try:
            assert {info.handle for kind in ObjectKind for info in copy.list(kind)} == set(saved)
        finally:
            copy.close()


@pytest.mark.required("an SFTP server (OpenSSH sshd)")
def test_a_run_fails_with_e127_once_the_file_is_opened_up(sshd: SshServer, tmp_path: Path) -> None:
    clock = FrozenClock(datetime(2026, 12, 7, tzinfo=UTC))
    db = ReplicationDb(tmp_path / "replication.db")
    tenants = Tenants(Journal(db, clock))
    put(tenants.stack("t1"), ObjectKind.CONFIG, b"config")
    creds = credentials_file(tmp_path / "creds", CAIRN_SFTP_KEY=str(sshd.key))
    (tmp_path / "offsite").mkdir()
    store = TargetStore(db, clock)
    store.add(Target("t", sshd.location(tmp_path / "offsite"), credentials=str(creds)))
    creds.chmod(0o644)
    ids = server_id(tmp_path)
    scheduler = Scheduler(
        db, store, Replicator(db, tenants, ids, clock), TargetOpener(ids, {}), clock
    )
    (report,) = scheduler.tick()
    assert report.error is not None and "CredentialsFileUnusable" in report.error
