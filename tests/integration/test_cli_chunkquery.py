"""Backups to a real server ask it which chunks it holds instead of loading the index (design
14.11): through the real `cairn` command and `cairn server serve` over TLS.

- A second backup of the same data stores no data chunk again (with the files cache, whose hits
  the server confirms, and without it).
- After a prune condemned everything, the next backup stores it all again, and what it stored
  restores bit-exact once the condemned packs are swept.
- Memory: against a repository whose indexes list many more chunks than the client's bounded
  index may hold, a backup never loads an index object (the server's request log says so; a
  `check`, which does load them, shows the count is real) and the bounded index never holds
  more answers than its capacity.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cairn.backends.remote import KnownServers, RemoteBackend, parse_address
from cairn.backends.wrappers.retrying import RetryingBackend
from cairn.backup.archiver import Archiver, BackupOptions
from cairn.core.clock import SystemClock
from cairn.core.ids import ChunkId, ObjectName
from cairn.core.progress import SilentProgress
from cairn.crypto.hashing import object_name
from cairn.format.index import IndexRecord, encode_index
from cairn.format.pack import BlobKind, PackEntry, parse_pack
from cairn.repository.remoteindex import remote_index
from cairn.repository.repository import Repository
from cairn.server.auth import Role
from cairn.source.walker import Walker
from tests.support.clitools import Cairn, Result, manifest
from tests.support.serverfixture import RunningServer, running_server

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("chunkquery-server")) as running:
        yield running


class Machine:
    """One client machine: its config folder (pinned certificate), cache and token."""

    def __init__(self, server: RunningServer, tenant: str, home: Path, token: str) -> None:
        self.home = home
        self.tool = Cairn(server.location(tenant), PASSWORD, cache=home / "cache")
        self.token = token

    def run(self, *args: str, token: str | None = None, check: bool = True) -> Result:
        env = self.tool.env(CAIRN_TOKEN=token or self.token, XDG_CONFIG_HOME=str(self.home))
        return self.tool.run(*args, env=env, check=check)


def setup_tenant(server: RunningServer, name: str, home: Path) -> tuple[Machine, str, str]:
    """A tenant with a repository; a machine holding its backup token; the admin token."""
    admin = server.tenant(name)
    machine = Machine(server, name, home, admin)
    machine.run("init")
    machine.token = server.token(name, Role.BACKUP)
    return machine, admin, machine.token


def source_tree(root: Path, seed: int, small_files: int = 30) -> Path:
    rng = random.Random(seed)
    for d in range(3):
        folder = root / f"dir{d}"
        folder.mkdir(parents=True)
        for i in range(small_files // 3):
            (folder / f"f{i}.bin").write_bytes(rng.randbytes(rng.randint(100, 40_000)))
    (root / "large.bin").write_bytes(rng.randbytes(3 << 20))  # several chunks
    return root


def packs(server: RunningServer, tenant: str) -> dict[str, list[PackEntry]]:
    """Every pack the tenant's storage holds, with its blobs (from the trailer)."""
    tenant_id = server.services().tenants.get(tenant).id
    folder = server.data / "tenants" / tenant_id / "packs"
    return {p.name: parse_pack(p.read_bytes()) for p in folder.glob("*/*")}


def data_blobs(entries: dict[str, list[PackEntry]]) -> set[bytes]:
    return {e.chunk_id for blobs in entries.values() for e in blobs if e.kind is BlobKind.DATA}


def backup(machine: Machine, source: Path, *extra: str) -> dict[str, int]:
    result: dict[str, int] = machine.run("backup", str(source), "--json", *extra).json()
    return result


def index_reads(server: RunningServer, token: str) -> int:
    """GETs of index objects the server answered for this token, from its JSON request log."""
    token_id = token.split("_")[1]
    count = 0
    for line in server.log().splitlines():
        start = line.find("{")
        if start < 0 or '"event": "request"' not in line:
            continue
        entry = json.loads(line[start:])
        if (
            entry["token"] == token_id
            and entry["method"] == "GET"
            and "/index/" in entry["path"]
            and entry["status"] == 200
        ):
            count += 1
    return count


def test_a_second_backup_stores_no_data_again(server: RunningServer, tmp_path: Path) -> None:
    machine, _, token = setup_tenant(server, "again", tmp_path / "home")
    source = source_tree(tmp_path / "src", 1)
    first = backup(machine, source)
    assert first["files_new"] == 31 and first["bytes_added"] > 3 << 20
    stored = packs(server, "again")

    cached = backup(machine, source)  # the files cache's hits, confirmed by the server
    assert cached["files_unmodified"] == 31 and cached["bytes_read"] == 0
    after_cached = packs(server, "again")
    read = backup(machine, source, "--no-cache")  # everything read, chunked, asked about
    assert read["files_new"] == 31 and read["bytes_read"] == first["bytes_read"]
    after_read = packs(server, "again")

    for before, after in ((stored, after_cached), (after_cached, after_read)):
        new = {name: after[name] for name in set(after) - set(before)}
        assert data_blobs(new) == set(), "a data chunk the server holds was stored again"
    assert index_reads(server, token) == 0


def test_a_backup_after_a_prune_stores_again_what_was_condemned(
    server: RunningServer, tmp_path: Path
) -> None:
    machine, admin, _ = setup_tenant(server, "pruned", tmp_path / "home")
    source = source_tree(tmp_path / "src", 2)
    backup(machine, source)
    first_data = data_blobs(packs(server, "pruned"))
    snapshots = [s["id"] for s in machine.run("snapshots", "--json").json()]
    machine.run("forget", *snapshots, token=admin)
    machine.run("prune", token=admin)
    tenant_id = server.services().tenants.get("pruned").id
    assert list((server.data / "tenants" / tenant_id / "deletions").iterdir()), "nothing condemned"

    again = backup(machine, source)  # the files cache still says unchanged: the server does not
    assert again["files_new"] == 31 and again["bytes_added"] > 3 << 20
    held = packs(server, "pruned")
    assert data_blobs(held) == first_data
    condemned_and_new = [n for n, blobs in held.items() if first_data & {e.chunk_id for e in blobs}]
    assert len(condemned_and_new) >= 2, "the data is held by the condemned packs and new ones"

    machine.run("prune", token=admin)  # sweeps the condemned packs: the backup's session ended
    assert data_blobs(packs(server, "pruned")) == first_data
    target = tmp_path / "restored"
    machine.run("restore", "latest", "--target", str(target))
    assert manifest(target / source.relative_to("/")) == manifest(source)
    machine.run("check", "--read-data", token=admin)


def _fill_index(server: RunningServer, tenant: str, admin: str, objects: int, per: int) -> int:
    """Many small index objects through the real server (an owner may write any): `objects`
    of `per` entries each, of chunk IDs nobody backs up, in a pack the tenant holds."""
    (pack,) = list(packs(server, tenant))[:1]
    headers = {"authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=server.url, verify=False, headers=headers) as client:
        for _ in range(objects):
            entries = [PackEntry(ChunkId(os.urandom(32)), BlobKind.DATA, 8, 64) for _ in range(per)]
            data = encode_index(IndexRecord(packs={ObjectName.from_hex(pack): entries}))
            name = object_name(data).hex
            answer = client.put(f"/v1/t/{tenant}/index/{name}", content=data)
            assert answer.status_code == 201, answer.text
    return objects * per


def test_a_backup_to_a_large_repository_never_loads_the_index(
    server: RunningServer, tmp_path: Path
) -> None:
    machine, admin, token = setup_tenant(server, "large", tmp_path / "home")
    seed_source = source_tree(tmp_path / "seed", 3, small_files=3)
    backup(machine, seed_source)
    listed = _fill_index(server, "large", admin, objects=150, per=200)  # 30,000 entries

    source = source_tree(tmp_path / "src", 4, small_files=300)
    result = backup(machine, source)
    assert result["files_new"] == 301
    assert index_reads(server, token) == 0, "the backup loaded index objects"
    reader = server.token("large", Role.RESTORE)
    # check loads the whole index (and finds the made-up entries wrong): the log shows it
    machine.run("check", token=reader, check=False)
    assert index_reads(server, reader) >= 150

    # The same kind of backup in this process, to see inside the bounded index.
    capacity = 512
    assert listed > 50 * capacity
    more = source_tree(tmp_path / "more", 5, small_files=300)
    address = parse_address(server.location("large"))
    known = KnownServers(tmp_path / "home" / "cairn" / "known_servers")
    backend = RetryingBackend(RemoteBackend(address, token, known))
    repo = Repository.open(backend, PASSWORD.encode(), SystemClock())
    try:
        repo.begin_session("backup")
        index = remote_index(repo.backend, capacity=capacity)
        assert index is not None
        repo.use_chunk_index(index)
        done = Archiver(repo, Walker(), SilentProgress()).run(
            BackupOptions(paths=[os.fsencode(more), os.fsencode(source)])
        )
    finally:
        repo.close()
    assert done.files == 602 and done.files_new == 602
    assert 0 < index.peak <= capacity
    assert index.queries <= 602 // 8, "chunks were asked about one by one, not in batches"
    assert index_reads(server, token) == 0
    tenant_root = server.data / "tenants" / server.services().tenants.get("large").id
    assert done.snapshot is not None
    assert (tenant_root / "snapshots" / done.snapshot.hex).exists()
    target = tmp_path / "restored"
    machine.run("restore", done.snapshot.hex, "--target", str(target))
    assert manifest(target / more.relative_to("/")) == manifest(more)
