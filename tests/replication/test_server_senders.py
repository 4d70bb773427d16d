"""Many senders, one receiving Cairn server (design 17.14): each sending server has a
replication token of its own, given to its target with `--credentials`; the receiver binds each
token to the server ID it writes under, so one sender's token cannot read, write or move aside
another's copies, and revoking one sender's token stops that sender while the other goes on.
Three real `cairn server serve` processes, the real CLI, the real engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.crypto.hashing import object_name
from cairn.replication.layout import server_id
from tests.integration.test_cli_server import Client, admin
from tests.replication.test_serve_replicates import DEADLINE_S, names, wait_for_copies
from tests.replication.test_server_target import back_up
from tests.replication.test_target_credentials import credentials_file
from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, running_server

AREA = "offsite"


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    # the senders pin the receiver's certificate in this config folder at their first connection
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "senders-home"))
    monkeypatch.delenv("CAIRN_TOKEN", raising=False)
    with running_server(tmp_path / "receiver") as server:
        admin(server, "tenant", "add", AREA, "--quota", "200M")
        yield server


def replication_token(receiver: RunningServer, label: str) -> tuple[str, str]:
    """(ID, secret) of a new replication token of the area."""
    issued = admin(receiver, "token", "add", AREA, "--role", "replication", "--label", label)
    return str(issued["id"]), str(issued["token"])


def add_target(sender: RunningServer, receiver: RunningServer, creds: Path) -> None:
    location = receiver.location(AREA)
    args = ("server", "target", "add", AREA, location, "--credentials", str(creds))
    added = Cairn(sender.data).run(*args, "--data", str(sender.data))
    assert "FAILED" not in added.out, added.out


def wait_until(condition: Callable[[], Any], what: str, server: RunningServer) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what}; {server.log()[-3000:]}"
        time.sleep(0.5)
    return found


def failing_with(sender: RunningServer, words: str) -> bool:
    (row,) = admin(sender, "target", "status")
    return row["state"] == "failing" and words in str(row["last_error"]).lower()


def test_two_senders_each_with_its_own_token_and_one_revoked(
    receiver: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As operators run it: each sending `serve` replicates continuously with its own token."""
    reader = str(admin(receiver, "token", "add", AREA, "--role", "restore")["token"])
    monkeypatch.setenv("CAIRN_TOKEN", reader)  # the test reads every copy with a restore token
    id_a, secret_a = replication_token(receiver, "site-a")
    _, secret_b = replication_token(receiver, "site-b")
    with (
        running_server(tmp_path / "site-a") as site_a,
        running_server(tmp_path / "site-b") as site_b,
    ):
        copies = {}
        for site, secret in ((site_a, secret_a), (site_b, secret_b)):
            creds = credentials_file(tmp_path / f"creds-{site.data.name}", CAIRN_TOKEN=secret)
            add_target(site, receiver, creds)
            back_up(site, tmp_path / site.data.name)
            copies[site.data.name] = _wait_copied(site, receiver)
        copy_a = copies["site-a"].split(f"/{AREA}/", 1)[1]
        copy_b = copies["site-b"].split(f"/{AREA}/", 1)[1]
        _cannot_touch(receiver, secret_b, f"/v1/t/{AREA}/c/{copy_a}")
        _cannot_touch(receiver, secret_a, f"/v1/t/{AREA}/c/{copy_b}")

        admin(receiver, "token", "revoke", id_a)
        for site in (site_a, site_b):
            source = tmp_path / site.data.name / "src-alpha"
            (source / "third.txt").write_text(f"after the revocation at {site.data.name}\n" * 50)
            back_up_again(site, tmp_path / site.data.name)
        wait_until(
            lambda: failing_with(site_a, "authenticationfailed"), "site A not stopped", site_a
        )
        _wait_copied(site_b, receiver)  # site B goes on
        names_a = names(copies["site-a"])
        assert names_a < names(str(site_a.data / "tenants" / _tenant_id(site_a)))

        # a new token for site A takes over its copies (a rotated token, a restored server)
        _, secret_a2 = replication_token(receiver, "site-a rotated")
        credentials_file(tmp_path / "creds-site-a", CAIRN_TOKEN=secret_a2)
        admin(site_a, "target", "edit", AREA, "--priority", "1")  # tried again at once
        _wait_copied(site_a, receiver)
        _cannot_touch(receiver, secret_a2, f"/v1/t/{AREA}/c/{copy_b}")


def _tenant_id(site: RunningServer) -> str:
    return site.services().tenants.get("alpha").id


def _wait_copied(site: RunningServer, receiver: RunningServer) -> str:
    """The location of the site's copy on the receiver, once it holds everything."""
    copy = f"{receiver.location(AREA)}/{server_id(site.data)}/{_tenant_id(site)}"
    wait_for_copies(site, {AREA: copy}, str(site.data / "tenants" / _tenant_id(site)))
    return copy


def back_up_again(server: RunningServer, home: Path) -> None:
    """A second backup of the tenant `back_up` made, with the machine it made."""
    token = str(admin(server, "token", "add", "alpha", "--role", "backup")["token"])
    Client(server, "alpha", home / "home-alpha", token).run("backup", str(home / "src-alpha"))


def _cannot_touch(receiver: RunningServer, secret: str, copy: str) -> None:
    """`secret`'s holder can neither list, read, write nor move aside anything of `copy`."""
    data = b"bytes from a sender that does not own this copy"
    name = object_name(data).hex
    headers = {"authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=receiver.url, verify=False, headers=headers) as http:
        listed = http.get(f"{copy}/snapshots/")
        assert listed.status_code == 403 and "token of its own" in listed.text, listed.text
        assert http.put(f"{copy}/packs/{name}", content=data).status_code == 403
        snapshots = http.get(f"{copy}/snapshots/")
        assert snapshots.status_code == 403
        assert http.delete(f"{copy}/snapshots/{'0' * 64}").status_code == 403
        assert http.get(f"/v1/t/{AREA}/config/").status_code == 200  # the area's root: its own
