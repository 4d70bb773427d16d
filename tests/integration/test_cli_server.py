"""Two tenants back up to one real server over TLS, from separate client processes.

What an administrator and the machines they look after would do: make tenants and tokens with
`cairn server`, `init` with the tenant-admin token, back up with a backup-only token, restore,
and meet every refusal a role, a quota, a wrong token or a changed certificate brings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clitools import Cairn, manifest
from tests.support.serverfixture import RunningServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


def admin(server: RunningServer, *args: str) -> Any:
    tool = Cairn(server.data)  # the repository option is unused by `cairn server`
    result = tool.run("server", *args, "--data", str(server.data), "--json")
    parsed: Any = result.json()
    return parsed


class Client:
    """One machine: its own config folder (pinned certificates), cache and token."""

    def __init__(self, server: RunningServer, tenant: str, home: Path, token: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.tool = Cairn(server.location(tenant), cache=home / "cache")
        self.token = token

    def run(self, *args: str, check: bool = True, token: str | None = None, **env: str):
        extra = {"CAIRN_TOKEN": token or self.token, "XDG_CONFIG_HOME": str(self.home), **env}
        return self.tool.run(*args, check=check, env=self.tool.env(**extra))


def tree(root: Path, seed: int, size: int = 300_000) -> Path:
    root.mkdir(parents=True)
    (root / "notes.txt").write_text(f"notes of {seed}\n" * 5000)
    (root / "data.bin").write_bytes(os.urandom(size))
    return root


def test_two_tenants_back_up_and_stay_apart(server: RunningServer, tmp_path: Path) -> None:
    acme_admin = str(admin(server, "tenant", "add", "acme")["admin_token"])
    beta_admin = str(admin(server, "tenant", "add", "beta")["admin_token"])
    acme = Client(server, "acme", tmp_path / "acme", acme_admin)
    beta = Client(server, "beta", tmp_path / "beta", beta_admin)
    acme.run("init")
    beta.run("init")
    acme.token = str(admin(server, "token", "add", "acme", "--role", "backup")["token"])
    beta.token = str(admin(server, "token", "add", "beta", "--role", "backup")["token"])

    src_a, src_b = tree(tmp_path / "a", 1), tree(tmp_path / "b", 2)
    acme.run("backup", str(src_a))
    beta.run("backup", str(src_b))
    acme.run("restore", "latest", "--target", str(tmp_path / "ra"))
    assert manifest(tmp_path / "ra" / src_a.relative_to("/")) == manifest(src_a)
    acme.run("check", "--read-data")

    # beta's token on acme's path: the same answer as a tenant that does not exist
    crossed = Client(server, "acme", tmp_path / "crossed", beta.token).run("snapshots", check=False)
    nowhere = Client(server, "nosuch", tmp_path / "nowhere", beta.token).run(
        "snapshots", check=False
    )
    assert crossed.code == nowhere.code == 10
    assert "CAIRN-E010" in crossed.err

    # the certificate was pinned on first use
    pinned = (tmp_path / "acme" / "cairn" / "known_servers").read_text()
    assert f"127.0.0.1:{server.port} " in pinned


def test_a_backup_token_cannot_destroy_history(server: RunningServer, tmp_path: Path) -> None:
    admin_token = str(admin(server, "tenant", "add", "victim")["admin_token"])
    machine = Client(server, "victim", tmp_path / "m", admin_token)
    machine.run("init")
    machine.token = str(admin(server, "token", "add", "victim", "--role", "backup")["token"])
    source = tree(tmp_path / "src", 3)
    machine.run("backup", str(source))
    first = machine.run("snapshots", "--json").json()[0]["id"]

    for attempt in (
        ("forget", first),
        ("forget", "--keep-last", "0", "--prune"),
        ("prune",),
        ("key", "passwd", "--new-password-file", str(tmp_path / "pw")),
    ):
        (tmp_path / "pw").write_text("attacker\n")
        result = machine.run(*attempt, check=False)
        assert result.code in (62, 2), (attempt, result.err)
        assert "Traceback" not in result.err
    refused = machine.run("forget", first, check=False)
    assert refused.code == 62 and "CAIRN-E062" in refused.err

    machine.token = admin_token  # the owner, later: everything is still there
    machine.run("check", "--read-data")
    machine.run("restore", first, "--target", str(tmp_path / "back"))
    assert manifest(tmp_path / "back" / source.relative_to("/")) == manifest(source)


def test_a_quota_stops_one_tenant_with_a_clear_error(server: RunningServer, tmp_path: Path) -> None:
    small = str(admin(server, "tenant", "add", "small", "--quota", "1M")["admin_token"])
    roomy = str(admin(server, "tenant", "add", "roomy")["admin_token"])
    a = Client(server, "small", tmp_path / "s", small)
    b = Client(server, "roomy", tmp_path / "r", roomy)
    a.run("init")
    b.run("init")
    full = a.run("backup", str(tree(tmp_path / "big", 4, size=3_000_000)), check=False)
    assert full.code == 65 and "CAIRN-E065" in full.err
    assert "quota exceeded" in full.err and "of its 1.0 MiB (1048576 bytes)" in full.err
    b.run("backup", str(tree(tmp_path / "other", 5, size=3_000_000)))  # the other goes on
    a.run("check")  # the refused backup left the repository consistent


def test_bad_credentials_are_clear_errors(server: RunningServer, tmp_path: Path) -> None:
    token = str(admin(server, "tenant", "add", "creds")["admin_token"])
    machine = Client(server, "creds", tmp_path / "c", token)
    machine.run("init")
    wrong = machine.run("snapshots", check=False, token="cairn_000000000000_" + "0" * 64)
    assert wrong.code == 61 and "CAIRN-E061" in wrong.err
    issued = admin(server, "token", "add", "creds", "--role", "restore")
    assert machine.run("snapshots", token=str(issued["token"])).code == 0
    admin(server, "token", "revoke", str(issued["id"]))
    revoked = machine.run("snapshots", check=False, token=str(issued["token"]))
    assert revoked.code == 61
    missing = machine.tool.run("snapshots", check=False)  # no CAIRN_TOKEN at all
    assert missing.code == 67 and "CAIRN_TOKEN" in missing.err
    pinned = machine.run(
        "snapshots", check=False, CAIRN_SERVER_FINGERPRINT="ab" * 32, XDG_CONFIG_HOME=str(tmp_path)
    )
    assert pinned.code == 63 and "certificate" in pinned.err


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with running_server(tmp_path / "gone") as gone:
        location = gone.location("any")
    machine = Cairn(location, cache=tmp_path / "cache")
    env = machine.env(
        CAIRN_TOKEN="cairn_000000000000_" + "0" * 64,
        XDG_CONFIG_HOME=str(tmp_path),
        CAIRN_RETRY_FOR="1s",
    )
    result = machine.run("snapshots", check=False, env=env)
    assert result.code == 60 and "CAIRN-E060" in result.err


def test_the_audit_log_records_and_verifies(server: RunningServer, tmp_path: Path) -> None:
    token = str(admin(server, "tenant", "add", "audited")["admin_token"])
    Client(server, "audited", tmp_path / "x", token).run("init")
    verified = admin(server, "audit")
    assert verified["intact"] is True and int(str(verified["entries"])) > 0


def test_server_retention_and_gc_run_beside_backups(server: RunningServer, tmp_path: Path) -> None:
    owner = str(admin(server, "tenant", "add", "kept")["admin_token"])
    machine = Client(server, "kept", tmp_path / "m", owner)
    machine.run("init")
    machine.token = str(admin(server, "token", "add", "kept", "--role", "backup")["token"])
    source = tree(tmp_path / "src", 6)
    first_tree = manifest(source)
    machine.run("backup", str(source))
    for round_ in range(2):
        (source / "data.bin").write_bytes(os.urandom(200_000))
        (source / f"new{round_}.txt").write_text("more\n" * 1000)
        machine.run("backup", str(source))
    admin(server, "retention", "kept", "--keep-daily", "1")

    running = subprocess.Popen(  # a backup runs while the server collects garbage
        [sys.executable, "-m", "cairn.cli.main", "backup", str(source)],
        env=machine.tool.env(CAIRN_TOKEN=machine.token, XDG_CONFIG_HOME=str(machine.home)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reports = [admin(server, "gc", "kept") for _ in range(3)]
    _out, err = running.communicate(timeout=300)
    assert running.returncode == 0, err
    reports.append(admin(server, "gc", "kept"))
    # one group (one machine, one path): the first of the day and the newest stay, whenever the
    # running backup arrived; the two between them go
    forgotten = sum(int(r[0]["forgotten"]) for r in reports)
    assert forgotten == 2

    machine.token = owner
    machine.run("check", "--read-data")
    snapshots = machine.run("snapshots", "--json").json()
    oldest = min(snapshots, key=lambda s: s["time"])
    machine.run("restore", oldest["id"], "--target", str(tmp_path / "first"))
    assert manifest(tmp_path / "first" / source.relative_to("/")) == first_tree
    admin(server, "gc", "kept")
    admin(server, "gc", "kept")
    machine.run("check", "--read-data")


def agent_job(tmp: Path, server: RunningServer, tenant: str, token: str, paths: Path) -> Path:
    """An agent config with one job, `home`, as examples/agent.toml writes it."""
    (tmp / "home.token").write_text(token + "\n")
    (tmp / "home.pass").write_text("correct horse\n")
    config = tmp / "agent.toml"
    config.write_text(
        f'[agent]\nstate = "{tmp / "agent-state"}"\njitter = "0s"\n\n[[job]]\nname = "home"\n'
        f'repository = "{server.location(tenant)}"\npassword_file = "{tmp / "home.pass"}"\n'
        f'token_file = "{tmp / "home.token"}"\npaths = ["{paths}"]\nschedule = {{ every = "1h" }}\n'
    )
    return config


def test_retention_keeps_the_only_snapshot_of_each_job_of_a_machine(
    server: RunningServer, tmp_path: Path
) -> None:
    """Issue 11, item 2. One backup token sends a snapshot of one folder, then the agent's job
    `home` on the same machine, with the same token, sends one of another folder; retention
    `--keep-daily 14 --keep-weekly 8 --keep-monthly 24` and GC forgot the job's only snapshot
    (the second to arrive that day in the token's one group). Each set of paths of a machine is
    a group of its own, as `forget` groups, and a group's newest snapshot always stays."""
    owner = str(admin(server, "tenant", "add", "jobs")["admin_token"])
    machine = Client(server, "jobs", tmp_path / "m", owner)
    machine.run("init")
    machine.token = str(admin(server, "token", "add", "jobs", "--role", "backup")["token"])
    docs, data = tree(tmp_path / "usr-share-doc", 11), tree(tmp_path / "data", 12)
    machine.run("backup", str(docs))
    config = agent_job(tmp_path, server, "jobs", machine.token, data)
    env = machine.tool.env(XDG_CONFIG_HOME=str(machine.home))
    for name in ("CAIRN_PASSWORD", "CAIRN_REPOSITORY", "CAIRN_TOKEN"):
        env.pop(name, None)
    run_once = [sys.executable, "-m", "cairn.cli.main", "agent", "run-once", "home"]
    once = subprocess.run(
        [*run_once, "--config", str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert once.returncode == 0, once.stderr

    policy = ("--keep-daily", "14", "--keep-weekly", "8", "--keep-monthly", "24")
    admin(server, "retention", "jobs", *policy)
    reports = [admin(server, "gc", "jobs") for _ in range(2)]  # condemn, then sweep
    assert [r[0]["forgotten"] for r in reports] == [0, 0]

    machine.token = owner
    snapshots = machine.run("snapshots", "--json").json()
    assert sorted(s["paths"][0] for s in snapshots) == sorted([str(data), str(docs)])
    for source in (docs, data):
        (job,) = [s for s in snapshots if s["paths"] == [str(source)]]
        target = tmp_path / f"restored-{source.name}"
        machine.run("restore", job["id"], "--target", str(target))
        assert manifest(target / source.relative_to("/")) == manifest(source)
    machine.run("check", "--read-data")


def test_a_scrub_finds_a_damaged_pack(server: RunningServer, tmp_path: Path) -> None:
    owner = str(admin(server, "tenant", "add", "scrubbed")["admin_token"])
    machine = Client(server, "scrubbed", tmp_path / "m", owner)
    machine.run("init")
    machine.run("backup", str(tree(tmp_path / "src", 7)))
    assert admin(server, "scrub", "scrubbed")[0]["damaged"] == []
    tenant_id = server.services().tenants.get("scrubbed").id
    pack = next(
        p for p in (server.data / "tenants" / tenant_id / "packs").rglob("*") if p.is_file()
    )
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    tool = Cairn(server.data)
    found = tool.run("server", "scrub", "scrubbed", "--data", str(server.data), check=False)
    assert found.code == 20 and pack.name[:16] in found.out


def test_operators_see_metrics_status_and_request_logs(
    server: RunningServer, tmp_path: Path
) -> None:
    import httpx

    owner = str(admin(server, "tenant", "add", "watched", "--quota", "100M")["admin_token"])
    Client(server, "watched", tmp_path / "m", owner).run("init")
    operator = str(admin(server, "token", "add", "--role", "server-admin")["token"])
    headers = {"authorization": f"Bearer {operator}"}
    with httpx.Client(base_url=server.url, verify=False) as http:
        metrics = http.get("/v1/metrics", headers=headers)
        assert metrics.status_code == 200
        assert 'cairn_tenant_quota_bytes{tenant="watched"} 1.048576e+08' in metrics.text
        assert "cairn_requests_total" in metrics.text
        assert http.get("/v1/metrics").status_code == 401
        status = http.get("/v1/t/watched/status", headers={"authorization": f"Bearer {owner}"})
        assert status.json()["quota"] == 100 * 1024 * 1024 and status.json()["damage"] == []
    lines = [line for line in server.log().splitlines() if line.startswith('{"event": "request"')]
    assert any('"route": "/v1/t/{tenant}/{kind}/{name}"' in line for line in lines)


@pytest.fixture(scope="module")
def releasing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server started with --backup-releases-locks."""
    data = tmp_path_factory.mktemp("releasing")
    with running_server(data, True, "--backup-releases-locks") as running:
        yield running


def test_a_backup_removes_its_lock_so_gc_sweeps_at_once(
    releasing: RunningServer, tmp_path: Path
) -> None:
    """With --backup-releases-locks a backup token removes the lock it saved when its backup
    ends (design 14.3), so the next `cairn server gc` sweeps what the previous one condemned
    instead of waiting out the lease."""
    import httpx

    server = releasing

    owner = str(admin(server, "tenant", "add", "swept")["admin_token"])
    machine = Client(server, "swept", tmp_path / "m", owner)
    machine.run("init")
    machine.token = str(admin(server, "token", "add", "swept", "--role", "backup")["token"])
    machine.run("backup", str(tree(tmp_path / "old", 8)))
    machine.run("backup", str(tree(tmp_path / "new", 9)))
    with httpx.Client(base_url=f"{server.url}/v1/t/swept", verify=False) as http:
        listing = http.get("/locks/", headers={"authorization": f"Bearer {owner}"}).text
    assert listing.splitlines() == ['{"complete": true, "count": 0}'], listing

    old = min(machine.run("snapshots", "--json").json(), key=lambda s: s["time"])["id"]
    machine.run("forget", old, token=owner)
    condemned = admin(server, "gc", "swept")[0]
    assert int(condemned["condemned_packs"]) >= 1 and condemned["records_waiting"] == 0
    swept = admin(server, "gc", "swept")[0]
    assert swept["swept_packs"] == condemned["condemned_packs"], swept
    assert swept["records_waiting"] == 0
    machine.run("check", "--read-data", token=owner)


def test_an_expired_token_is_refused_with_its_own_code(
    server: RunningServer, tmp_path: Path
) -> None:
    import time

    owner = str(admin(server, "tenant", "add", "expiring")["admin_token"])
    machine = Client(server, "expiring", tmp_path / "m", owner)
    machine.run("init")
    lasting = admin(server, "token", "add", "expiring", "--role", "restore", "--expires", "90d")
    short = admin(server, "token", "add", "expiring", "--role", "restore", "--expires", "1s")
    assert int(str(lasting["expires_ms"])) > time.time() * 1000 + 89 * 24 * 3600 * 1000
    time.sleep(1.5)  # past the short token's expiry on the server's clock (this machine's)
    assert machine.run("snapshots", token=str(lasting["token"])).code == 0
    refused = machine.run("snapshots", check=False, token=str(short["token"]))
    assert refused.code == 75 and "CAIRN-E075" in refused.err and "expired at" in refused.err
    assert "Traceback" not in refused.err
    states = Cairn(server.data).run("server", "token", "list", "--data", str(server.data)).out
    line = next(x for x in states.splitlines() if x.startswith(str(short["id"])))
    assert line.rstrip().endswith("expired")
    bad = Cairn(server.data).run(
        "server",
        "token",
        "add",
        "expiring",
        "--role",
        "backup",
        "--expires",
        "soon",
        "--data",
        str(server.data),
        check=False,
    )
    assert bad.code == 2 and "CAIRN-E002" in bad.err and "--expires" in bad.err


def test_a_restore_reads_pack_spans_without_asking_their_size_first(
    server: RunningServer, tmp_path: Path
) -> None:
    """A ranged read is one GET (the answer's Content-Range gives the size): no HEAD per span."""
    owner = str(admin(server, "tenant", "add", "spans")["admin_token"])
    machine = Client(server, "spans", tmp_path / "m", owner)
    machine.run("init")
    src = tree(tmp_path / "src", 11, size=2_000_000)
    machine.run("backup", str(src))
    before = len(server.log().splitlines())
    machine.run("restore", "latest", "--target", str(tmp_path / "r"), "--no-cache")
    assert manifest(tmp_path / "r" / src.relative_to("/")) == manifest(src)
    requests = [
        json.loads(line) for line in server.log().splitlines()[before:] if '"request"' in line
    ]
    pack_reads = [r for r in requests if r["path"].startswith("/v1/t/spans/packs/")]
    assert any(r["method"] == "GET" and r["status"] == 206 for r in pack_reads), pack_reads
    assert not [r for r in pack_reads if r["method"] == "HEAD"], pack_reads
