"""Ransomware with a backup-only token (RELIABILITY S7), with the real CLI and raw HTTP.

A tenant backs up several snapshots. Then an attacker holding the machine's backup token (and,
like ransomware on that machine, its repository password) tries every destructive thing: delete
every object, overwrite every object with other, truncated, empty and garbage bytes, write a new
config and key, flood hash-valid garbage, snapshot records whose sealed body is broken, and real
junk snapshots, plant locks that would stop prune for good, remove a lock another token saved
(and its own: allowed, and harmless), hide partial uploads past the quota, exhaust the quota,
and roll back in what the owner's forget and prune removed. Afterwards the owner, with the
tenant-admin token, restores every earlier snapshot bit-exact. And with the server's retention on:
a flood of snapshots labelled with the machine's jobs' group IDs (and random ones, and none) makes
retention forget none of the jobs' earlier snapshots (design 14.5).

What the owner sees, and does:
- `cairn snapshots` lists every snapshot it can open and names those it cannot in a warning
  (exit 0: one damaged snapshot hides no other, design 5);
  `check --read-data` reports each of those as an error (exit 20) and nothing else.
- The ones that cannot be opened, and the attacker's real snapshots (junk, or a rolled-back
  forgotten one), go by `cairn forget ID...` (forget names a snapshot by its ID, without opening
  it) and `prune`. Then `check --read-data` passes.
- Everything else the attacker tried was refused (403, 409, 400 or 507) and left nothing behind.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.backends.base import ObjectKind
from cairn.format.lock import SESSION_SIZE, LockRecord, encode_lock
from cairn.format.snapshot import SnapshotRecord, decode_snapshot, encode_snapshot
from cairn.server.auth import Role
from tests.support.clitools import Cairn, Result, manifest
from tests.support.securitykit import hex_name
from tests.support.serverfixture import RunningServer, running_server

WRITABLE = ("packs", "index", "reflists", "snapshots", "locks")
FAR_FUTURE_MS = 4_000_000_000_000  # the year 2096


class Machine:
    """One client machine of the tenant: its config folder, cache and token."""

    def __init__(self, server: RunningServer, home: Path, token: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home, self.token = home, token
        self.tool = Cairn(server.location("victim"), cache=home / "cache")

    def run(self, *args: str, check: bool = True, token: str | None = None) -> Result:
        env = self.tool.env(CAIRN_TOKEN=token or self.token, XDG_CONFIG_HOME=str(self.home))
        return self.tool.run(*args, check=check, env=env)


class Attacker:
    """Raw HTTP with the backup token."""

    def __init__(self, server: RunningServer, token: str) -> None:
        self.http = httpx.Client(
            base_url=f"{server.url}/v1/t/victim",
            headers={"authorization": f"Bearer {token}"},
            verify=False,
            timeout=60,
        )
        self.statuses: list[tuple[str, str, int]] = []

    def send(self, method: str, path: str, **kw: Any) -> int:
        status = self.http.request(method, path, **kw).status_code
        self.statuses.append((method, path.split("/")[1], status))
        assert status < 500 or status == 507, (method, path, status)  # 507: the quota
        return status

    def objects(self) -> dict[str, dict[str, bytes]]:
        found: dict[str, dict[str, bytes]] = {}
        for kind in ObjectKind:
            lines = self.http.get(f"/{kind.value}/").text.splitlines()
            names = [line.split('"')[3] for line in lines if line.startswith('{"name"')]
            found[kind.value] = {n: self.http.get(f"/{kind.value}/{n}").content for n in names}
        return found


def change(source: Path, step: int) -> None:
    (source / f"new-{step}.bin").write_bytes(os.urandom(50_000 + step))
    (source / "notes.txt").write_text(f"version {step}\n" * 2000)
    if step == 2:
        (source / "new-1.bin").unlink()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # the laxer setting: a backup token may remove the locks it saved (by default, nothing)
    ransom = tmp_path_factory.mktemp("ransom-server")
    with running_server(ransom, True, "--backup-releases-locks") as running:
        yield running


def test_a_backup_token_cannot_destroy_history(server: RunningServer, tmp_path: Path) -> None:
    owner_token = server.tenant("victim")
    backup_token = server.token("victim", Role.BACKUP)
    owner = Machine(server, tmp_path / "owner", owner_token)
    victim = Machine(server, tmp_path / "victim", backup_token)
    owner.run("init")

    source = tmp_path / "data"
    source.mkdir()
    (source / "photo.bin").write_bytes(os.urandom(300_000))
    kept: dict[str, dict[bytes, tuple[Any, ...]]] = {}
    for step in range(4):
        change(source, step)
        victim.run("backup", str(source))
        latest = victim.run("snapshots", "--json").json()[-1]["id"]
        kept[latest] = manifest(source)
    first = next(iter(kept))

    # the owner forgets the first snapshot and prunes; the attacker kept a copy of everything
    attacker = Attacker(server, backup_token)
    before_forget = attacker.objects()
    owner.run("forget", first)
    owner.run("prune")
    del kept[first]
    stored = attacker.objects()

    _delete_and_overwrite(attacker, stored)
    _plant_garbage(attacker)
    fakes = _plant_broken_seals(attacker, stored)
    _plant_locks(attacker)
    _remove_locks(attacker, server, owner_token)
    _roll_back(attacker, before_forget, stored)
    _hide_partial_uploads(attacker, server)
    _exhaust_the_quota(server, victim, tmp_path)
    for n in range(3):  # fake snapshots the attacker can make: real ones, with the password
        junk = tmp_path / f"fake-{n}"
        junk.mkdir()
        (junk / "ransom-note.txt").write_text("pay up\n")
        victim.run("backup", str(junk))

    attacker.http.close()
    refused = [s for s in attacker.statuses if s[2] not in (200, 201, 204)]
    print(f"\nattacker: {len(attacker.statuses)} requests, {len(refused)} refused")

    # the owner, later, with the tenant-admin token: the snapshots that cannot be opened are
    # named in warnings, the others listed; every earlier one restores bit-exact
    listed = owner.run("snapshots", "--json", check=False)
    assert listed.code == 0 and all(f[:8] in listed.err for f in fakes), listed.err
    ids = [s["id"] for s in listed.json()]
    assert set(kept) <= set(ids)
    for snapshot_id, expected in kept.items():
        target = tmp_path / f"restore-{snapshot_id}"
        owner.run("restore", snapshot_id, "--target", str(target))
        assert manifest(target / source.relative_to("/")) == expected, snapshot_id
        shutil.rmtree(target)
    check = owner.run("check", "--read-data", check=False)
    assert check.code == 20 and all(f[:8] in check.out for f in fakes), check.out + check.err
    assert check.out.count("error:") == len(fakes)  # the fakes, and nothing else

    # clean-up: forget what cannot be opened and the attacker's real snapshots, prune
    extra = [i for i in ids if i not in kept]  # real snapshots, made with the password
    assert len(extra) == 3 + 1  # the junk backups, and the rolled-back first one
    owner.run("forget", *fakes, *extra)
    owner.run("prune")
    owner.run("check", "--read-data")


def _delete_and_overwrite(attacker: Attacker, stored: dict[str, dict[str, bytes]]) -> None:
    for kind, objects in stored.items():
        for name, data in objects.items():
            assert attacker.send("DELETE", f"/{kind}/{name}") == 403
            expected = 409 if kind in WRITABLE else 403
            for other in (data[: len(data) // 2], b"", b"\x00" * len(data), data + b"x"):
                assert attacker.send("PUT", f"/{kind}/{name}", content=other) == expected
            assert attacker.send("PUT", f"/{kind}/{name}", content=data) in (200, 403)
    assert attacker.send("PUT", "/config/config", content=b"a new config") == 403
    key = b"an attacker's key"
    assert attacker.send("PUT", f"/keys/{hex_name(key)}", content=key) == 403


def _plant_garbage(attacker: Attacker) -> None:
    for kind in WRITABLE:
        for n in range(10):
            garbage = os.urandom(1000 + n)
            assert attacker.send("PUT", f"/{kind}/{hex_name(garbage)}", content=garbage) == 400


def _plant_broken_seals(attacker: Attacker, stored: dict[str, dict[str, bytes]]) -> list[str]:
    """Snapshot records the server can read (so it accepts them) whose sealed body is broken."""
    fakes = []
    for k, data in enumerate(list(stored["snapshots"].values()) * 2):
        record = decode_snapshot(data)
        sealed = bytearray(record.sealed)
        sealed[-1 - k] ^= 0xFF  # in the AEAD tag
        fake = encode_snapshot(SnapshotRecord(record.repo_id, record.reflists, bytes(sealed)))
        assert attacker.send("PUT", f"/snapshots/{hex_name(fake)}", content=fake) == 201
        fakes.append(hex_name(fake))
    return fakes


def _plant_locks(attacker: Attacker) -> None:
    """Locks that would stop prune, repair and the server's GC for ever, if accepted."""
    for purpose, refusal in (("prune", 403), ("repair", 403), ("backup", 400)):
        lock = encode_lock(
            LockRecord(os.urandom(SESSION_SIZE), purpose, 0, FAR_FUTURE_MS, b"sealed?")
        )
        assert attacker.send("PUT", f"/locks/{hex_name(lock)}", content=lock) == refusal


def _remove_locks(attacker: Attacker, server: RunningServer, owner_token: str) -> None:
    """With --backup-releases-locks a backup token may remove a lock it saved (design 14.3):
    that only ends its own session,
    as a crash would, and committed snapshots never depend on a lock. Another token's lock (here
    the owner's, of a session still running) stays."""
    now = int(time.time() * 1000)
    own, others = (
        encode_lock(LockRecord(os.urandom(SESSION_SIZE), "backup", now, now + 600_000, b""))
        for _ in range(2)
    )
    with httpx.Client(base_url=f"{server.url}/v1/t/victim", verify=False) as http:
        headers = {"authorization": f"Bearer {owner_token}"}
        assert http.put(f"/locks/{hex_name(others)}", content=others, headers=headers).is_success
        assert attacker.send("DELETE", f"/locks/{hex_name(others)}") == 403
        assert attacker.send("PUT", f"/locks/{hex_name(others)}", content=others) == 200
        assert attacker.send("DELETE", f"/locks/{hex_name(others)}") == 403  # not its own
        assert attacker.send("PUT", f"/locks/{hex_name(own)}", content=own) == 201
        assert attacker.send("DELETE", f"/locks/{hex_name(own)}") == 204
        assert http.delete(f"/locks/{hex_name(others)}", headers=headers).status_code == 204


def _roll_back(
    attacker: Attacker, old: dict[str, dict[str, bytes]], now: dict[str, dict[str, bytes]]
) -> None:
    """Put back what the owner's forget and prune removed, in write order."""
    for kind in WRITABLE:
        for name, data in old[kind].items():
            if name not in now[kind]:
                status = attacker.send("PUT", f"/{kind}/{name}", content=data)
                assert status in (201, 400), (kind, status)


def _hide_partial_uploads(attacker: Attacker, server: RunningServer) -> None:
    """Partial uploads are bytes on the server's disk: they count against the quota."""
    usage = attacker.http.get("/usage").json()
    headroom = 200_000
    server.services().tenants.set_quota("victim", usage["used"] + headroom)
    accepted = 0
    for _ in range(5):
        part = os.urandom(headroom - 10)
        name = hex_name(part + b"never finished")
        headers = {"upload-offset": "0", "upload-length": str(headroom - 1)}
        status = attacker.send("PATCH", f"/uploads/packs/{name}", content=part, headers=headers)
        accepted += status == 204
    assert accepted == 1, "partial uploads together passed the quota"
    server.services().tenants.set_quota("victim", None)


def _exhaust_the_quota(server: RunningServer, victim: Machine, tmp: Path) -> None:
    usage = server.services().tenants.get("victim")
    server.services().tenants.set_quota("victim", usage.used + 400_000)
    junk = tmp / "junk"
    junk.mkdir()
    (junk / "noise.bin").write_bytes(os.urandom(2_000_000))
    full = victim.run("backup", str(junk), check=False)
    assert full.code == 65 and "CAIRN-E065" in full.err
    server.services().tenants.set_quota("victim", None)


def _broken_seal_snapshot(server: RunningServer, tmp_path: Path, tenant: str) -> tuple[Any, ...]:
    owner_token = server.tenant(tenant)
    owner = Machine(server, tmp_path / "owner", owner_token)
    owner.tool = Cairn(server.location(tenant), cache=tmp_path / "owner" / "cache")
    owner.run("init")
    source = tmp_path / "data"
    source.mkdir()
    (source / "a.bin").write_bytes(os.urandom(100_000))
    owner.run("backup", str(source))
    real = owner.run("snapshots", "--json").json()[0]["id"]
    with httpx.Client(
        base_url=f"{server.url}/v1/t/{tenant}",
        headers={"authorization": f"Bearer {server.token(tenant, Role.BACKUP)}"},
        verify=False,
    ) as attacker:
        name = attacker.get("/snapshots/").text.split('"')[3]
        record = decode_snapshot(attacker.get(f"/snapshots/{name}").content)
        sealed = record.sealed[:-1] + bytes([record.sealed[-1] ^ 0xFF])  # in the AEAD tag
        fake = encode_snapshot(SnapshotRecord(record.repo_id, record.reflists, sealed))
        planted = attacker.put(f"/snapshots/{hex_name(fake)}", content=fake).status_code
    return owner, source, real, planted, hex_name(fake)


def test_a_snapshot_with_a_broken_seal_does_not_stop_restores(
    server: RunningServer, tmp_path: Path
) -> None:
    owner, source, real, planted, _ = _broken_seal_snapshot(server, tmp_path, "sealed")
    assert planted == 201
    owner.run("restore", real, "--target", str(tmp_path / "back"))
    assert manifest(tmp_path / "back" / source.relative_to("/")) == manifest(source)


def test_the_owner_can_remove_a_snapshot_with_a_broken_seal(
    server: RunningServer, tmp_path: Path
) -> None:
    """What the owner sees, and how they clean up with raw HTTP (`cairn forget ID` does too)."""
    owner, source, real, _, fake = _broken_seal_snapshot(server, tmp_path, "cleanup")
    seen = owner.run("snapshots", check=False)
    assert seen.code == 0 and real[:8] in seen.out and fake[:8] in seen.err
    check = owner.run("check", check=False)
    assert check.code == 20 and f"error: snapshot {fake[:8]}" in check.out
    with httpx.Client(
        base_url=f"{server.url}/v1/t/cleanup",
        headers={"authorization": f"Bearer {owner.token}"},
        verify=False,
    ) as http:  # the tenant-admin token removes it; a backup token could not (403)
        assert http.delete(f"/snapshots/{fake}").status_code == 204
    owner.run("restore", real, "--target", str(tmp_path / "back"))
    assert manifest(tmp_path / "back" / source.relative_to("/")) == manifest(source)
    owner.run("check", "--read-data")


def test_forget_removes_a_snapshot_it_cannot_open(server: RunningServer, tmp_path: Path) -> None:
    owner, *_, fake = _broken_seal_snapshot(server, tmp_path, "forgetting")
    owner.run("forget", fake[:8])
    assert owner.run("snapshots").code == 0


def test_a_flood_in_many_groups_makes_retention_forget_no_earlier_snapshot(
    server: RunningServer, tmp_path: Path
) -> None:
    """Issue 11, item 2, under attack. One machine, one backup token, two jobs (two sets of
    paths, as examples/agent.toml runs them), each with its only snapshot of the day. Ransomware
    with that token then floods snapshots labelled with both jobs' group IDs (copied from their
    records, which a backup token may read), random group IDs and none, and backs up junk of its
    own. The server's retention (`--keep-daily 14 --keep-weekly 8 --keep-monthly 24`) and GC run:
    both jobs' snapshots still restore bit-exact."""
    owner = Machine(server, tmp_path / "owner", server.tenant("jobs"))
    owner.tool = Cairn(server.location("jobs"), cache=tmp_path / "owner" / "cache")
    victim = Machine(server, tmp_path / "victim", server.token("jobs", Role.BACKUP))
    victim.tool = Cairn(server.location("jobs"), cache=tmp_path / "victim" / "cache")
    owner.run("init")
    sources = {name: tmp_path / name for name in ("usr-share-doc", "data")}
    for n, source in enumerate(sources.values()):
        source.mkdir()
        (source / "file.bin").write_bytes(os.urandom(100_000 + n))
        victim.run("backup", str(source))
    jobs = victim.run("snapshots", "--json").json()
    assert len(jobs) == 2

    with httpx.Client(
        base_url=f"{server.url}/v1/t/jobs",
        headers={"authorization": f"Bearer {victim.token}"},
        verify=False,
    ) as attacker:
        records = [decode_snapshot(attacker.get(f"/snapshots/{job['id']}").content) for job in jobs]
        labels = [*(r.group for r in records), None, *(os.urandom(16) for _ in range(8))]
        assert all(r.group is not None for r in records)
        for k in range(60):  # sealed bodies the server cannot judge; plaintext it accepts
            base = records[k % 2]
            sealed = base.sealed[:-1] + bytes([k])
            fake = encode_snapshot(replace(base, sealed=sealed, group=labels[k % len(labels)]))
            assert attacker.put(f"/snapshots/{hex_name(fake)}", content=fake).status_code == 201
    junk = tmp_path / "ransom"
    junk.mkdir()
    (junk / "note.txt").write_text("pay up\n")
    victim.run("backup", str(junk))

    admin = Cairn(server.data)
    policy = ("--keep-daily", "14", "--keep-weekly", "8", "--keep-monthly", "24")
    admin.run("server", "retention", "jobs", *policy, "--data", str(server.data))
    for _ in range(2):  # condemn, then sweep
        admin.run("server", "gc", "jobs", "--data", str(server.data))

    for job in jobs:
        target = tmp_path / f"restore-{job['id'][:8]}"
        owner.run("restore", job["id"], "--target", str(target))
        source = Path(job["paths"][0])
        assert manifest(target / source.relative_to("/")) == manifest(source), job["paths"]
