"""The local cache for a repository on a server (design 14.12), proved by the server's request log.

Real `cairn` processes against a real server over TLS. The server logs one JSON line a request;
these tests count the GETs of objects a command made, so they show what the cache saved, that a
damaged cache entry is fetched again without the user noticing, and that `check` and `--no-cache`
read storage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from tests.support.clitools import Cairn, manifest
from tests.support.serverfixture import RunningServer, running_server

OBJECT_ROUTE = "/v1/t/{tenant}/{kind}/{name}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


class Machine:
    """One client machine with its own cache folder, and a view of the server's request log."""

    def __init__(
        self, server: RunningServer, tenant: str, home: Path, token: str | None = None
    ) -> None:
        if token is None:  # the tenant's first machine makes it
            added = Cairn(server.data).run(
                "server", "tenant", "add", tenant, "--data", str(server.data), "--json"
            )
            token = str(added.json()["admin_token"])
        self.token = token
        self.server = server
        self.tenant = tenant
        self.home = home
        self.cache = home / "cache"
        self.tool = Cairn(server.location(tenant), cache=self.cache)
        self._seen = 0

    def run(self, *args: str, check: bool = True):
        env = self.tool.env(CAIRN_TOKEN=self.token, XDG_CONFIG_HOME=str(self.home))
        return self.tool.run(*args, check=check, env=env)

    def gets(self) -> list[str]:
        """The objects (kind/name) this tenant's clients GOT since the last call, but the config:
        every command reads it, as it is not named by its hash and so never cached."""
        lines = self.server.log().splitlines()
        fresh, self._seen = lines[self._seen :], len(lines)
        found = []
        for line in fresh:
            if not line.startswith('{"event": "request"'):
                continue
            entry = json.loads(line)
            if entry["route"] != OBJECT_ROUTE or entry["method"] != "GET":
                continue
            prefix = f"/v1/t/{self.tenant}/"
            if entry["path"].startswith(prefix) and entry["path"] != prefix + "config/config":
                found.append(entry["path"].removeprefix(prefix))
        return found

    def folder(self) -> Path:
        (only,) = [p for p in self.cache.iterdir() if p.is_dir()]
        return only


def kinds(paths: list[str]) -> set[str]:
    return {p.split("/")[0] for p in paths}


def source(root: Path, seed: int) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text(f"notes {seed}\n" * 2000)
    (root / "sub" / "data.bin").write_bytes(os.urandom(100_000))
    return root


def test_a_second_command_fetches_no_snapshot_index_or_key_again(
    server: RunningServer, tmp_path: Path
) -> None:
    m = Machine(server, "cached", tmp_path / "m")
    src = source(tmp_path / "src", 1)
    m.run("init")
    m.run("backup", str(src))
    m.run("snapshots")
    m.gets()

    m.run("snapshots")
    assert kinds(m.gets()) & {"snapshots", "keys", "index"} == set()

    (src / "more.txt").write_text("a change\n")
    m.run("backup", str(src))
    assert kinds(m.gets()) & {"snapshots", "keys", "index", "reflists"} == set(), (
        "the second backup read its keys, the index and the snapshots from the cache"
    )
    m.run("forget", "--keep-last", "1", "--prune")
    assert kinds(m.gets()) & {"snapshots", "index", "reflists"} == set()

    # Without the cache the same command fetches: the counting above can see fetches.
    m.run("--no-cache", "snapshots")
    assert {"snapshots", "keys"} <= kinds(m.gets())


def test_trees_read_once_come_from_the_cache(server: RunningServer, tmp_path: Path) -> None:
    m = Machine(server, "trees", tmp_path / "m")
    src = source(tmp_path / "src", 2)
    m.run("init")
    m.run("backup", str(src))
    first = m.run("ls", "latest").out
    assert "packs" in kinds(m.gets()), "the trees were range reads of packs"
    assert m.run("ls", "latest").out == first
    assert m.gets() == [], "nothing fetched: snapshot, index and trees from the cache"
    m.run("restore", "latest", "--target", str(tmp_path / "back"))
    assert manifest(tmp_path / "back" / src.relative_to("/")) == manifest(src)
    assert list((m.folder() / "trees").rglob("*")), "tree blobs cached"


def test_a_damaged_cache_entry_is_healed_transparently(
    server: RunningServer, tmp_path: Path
) -> None:
    m = Machine(server, "healed", tmp_path / "m")
    m.run("init")
    m.run("backup", str(source(tmp_path / "src", 3)))
    listed = m.run("snapshots", "--json").json()
    m.gets()
    (entry,) = (m.folder() / "snapshots").iterdir()
    damaged = bytearray(entry.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    entry.write_bytes(bytes(damaged))

    result = m.run("snapshots", "--json")
    assert result.json() == listed and "warning" not in result.err
    assert m.gets() == [f"snapshots/{entry.name}"], "fetched again, once"
    assert blake3.blake3(entry.read_bytes()).hexdigest() == entry.name, "and healed"
    m.run("snapshots")
    assert m.gets() == []

    listing = m.run("ls", "latest").out
    m.gets()
    trees = [tree for tree in (m.folder() / "trees").rglob("*") if tree.is_file()]
    assert trees
    for tree in trees:
        tree.write_bytes(b"garbage")
    assert m.run("ls", "latest").out == listing
    assert kinds(m.gets()) == {"packs"}, "the garbage trees were fetched again"
    assert m.run("ls", "latest").out == listing
    assert m.gets() == [], "and replaced"


def test_check_reads_storage_not_the_cache(server: RunningServer, tmp_path: Path) -> None:
    m = Machine(server, "checked", tmp_path / "m")
    m.run("init")
    m.run("backup", str(source(tmp_path / "src", 4)))
    m.run("ls", "latest")
    m.gets()
    m.run("check")
    assert {"snapshots", "index", "packs"} <= kinds(m.gets())


def test_copies_of_objects_the_repository_no_longer_lists_are_removed(
    server: RunningServer, tmp_path: Path
) -> None:
    m = Machine(server, "pruned", tmp_path / "m")
    src = source(tmp_path / "src", 5)
    m.run("init")
    m.run("backup", str(src))
    (src / "new.txt").write_text("new\n")
    m.run("backup", str(src))
    snaps = m.run("snapshots", "--json").json()
    assert len(list((m.folder() / "snapshots").iterdir())) == 2

    other = Machine(server, m.tenant, tmp_path / "o", m.token)  # its own cache
    other.run("forget", snaps[0]["id"])

    m.run("snapshots")
    names = [p.name for p in (m.folder() / "snapshots").iterdir()]
    assert names == [snaps[1]["id"]]
