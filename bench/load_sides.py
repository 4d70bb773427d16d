"""The two sides of the server load benchmark, and the client processes they run.

A side is a server and the commands its clients run: Cairn (`cairn server serve` over TLS, a
tenant per organisation, a backup-only token per machine) or restic (`rclone serve restic` over
TLS with `--append-only`, the nearest thing to a backup-only credential, a repository path per
organisation). Each client is a process of its own, started with its own environment (token,
pinned certificate, cache), as the machines of a fleet would run it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import fleet

SRC = Path(__file__).resolve().parents[1] / "src"
PASSWORD = "load bench passphrase"  # noqa: S105 - throwaway benchmark repositories
CLIENT_TIMEOUT = 3600.0


# --- client processes --------------------------------------------------------------------------


@dataclass
class Job:
    label: str
    argv: list[str]
    env: dict[str, str]
    logs: Path


@dataclass
class Outcome:
    """One finished process: exit code, wall and CPU time, its own peak RSS (wait4), output."""

    label: str
    code: int
    seconds: float
    cpu_s: float
    max_rss_kib: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0


CLIENT_NICE = 10
"""Clients run at this niceness (`--client-nice`): on one machine, the server must not wait
for the CPU behind its own clients, which in a real fleet run on machines of their own."""


def _start(job: Job) -> tuple[subprocess.Popen[bytes], float]:
    job.logs.mkdir(parents=True, exist_ok=True)
    out = (job.logs / f"{job.label}.out").open("wb")
    err = (job.logs / f"{job.label}.err").open("wb")
    argv = ["nice", "-n", str(CLIENT_NICE), *job.argv] if CLIENT_NICE else job.argv
    with out, err:
        proc = subprocess.Popen(argv, env=job.env, stdout=out, stderr=err)
    return proc, time.perf_counter()


def _finish(job: Job, proc: subprocess.Popen[bytes], started: float) -> Outcome:
    """Wait for `proc` with wait4 (for its peak RSS); past CLIENT_TIMEOUT it is killed, so a
    deadlocked server shows up as failed clients, not as a benchmark that never ends."""
    timer = threading.Timer(CLIENT_TIMEOUT, proc.kill)
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    out = (job.logs / f"{job.label}.out").read_text(errors="replace")
    err = (job.logs / f"{job.label}.err").read_text(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    return Outcome(job.label, proc.returncode, seconds, cpu, usage.ru_maxrss, out, err)


def run_all(jobs: list[Job]) -> list[Outcome]:
    """Start every job at once, then wait for all of them."""
    started = [_start(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        waits = [pool.submit(_finish, j, p, t) for j, (p, t) in zip(jobs, started, strict=True)]
        return [w.result() for w in waits]


def run_one(job: Job) -> Outcome:
    return _finish(job, *_start(job))


def run_pooled(jobs: list[Job], width: int) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=width) as pool:
        return list(pool.map(run_one, jobs))


def require(outcomes: list[Outcome], what: str) -> None:
    for o in outcomes:
        if not o.ok:
            raise SystemExit(f"{what} ({o.label}) failed with {o.code}:\n{o.err[-3000:]}")


# --- the server process ------------------------------------------------------------------------


class RssSampler:
    """VmRSS of one process every `interval` seconds, in a thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def rss_kib(self) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def peak_since(self, t: float) -> int:
        return max((kib for at, kib in self.samples if at >= t), default=0)

    def _run(self) -> None:
        while True:
            rss = self.rss_kib()
            if rss is not None:
                self.samples.append((self.now(), rss))
            if self._stop.wait(self._interval):
                return


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text(errors='replace')}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"the server did not come up:\n{log.read_text(errors='replace')}")


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the bench's own loopback server; clients pin it
    return context


# --- the sides ---------------------------------------------------------------------------------


class Side:
    """One tool with its server: how to start it and what each client runs."""

    name = ""
    server_name = ""
    side_work = ""
    """What runs beside the backups from the second round on (for the report)."""

    def __init__(self, work: Path, tenants: list[str], machines: list[fleet.Machine]) -> None:
        self.work = work
        self.tenants = tenants
        self.machines = machines
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def logs(self, *parts: str) -> Path:
        return self.work.joinpath("logs", self.name, *parts)

    def _launch(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.logs("server.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        _wait_for_port(self.port, self.proc, log)

    def stop(self) -> int | None:
        """Stop the server: None, or its exit code if it had already exited (a crash)."""
        assert self.proc is not None
        crashed = self.proc.poll()
        if crashed is not None:
            return crashed
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return None

    def setup(self) -> None:
        raise NotImplementedError

    def backup(self, m: fleet.Machine, round_no: int) -> Job:
        raise NotImplementedError

    def side_jobs(self, round_no: int) -> list[Job]:
        raise NotImplementedError

    def snapshot_id(self, outcome: Outcome) -> str | None:
        raise NotImplementedError

    def forgotten(self, outcome: Outcome) -> list[str]:
        """Snapshots a side job forgot on purpose."""
        return []

    def snapshots(self, tenant: str) -> set[str]:
        raise NotImplementedError

    def restore(self, tenant: str, snapshot: str, target: Path) -> Job:
        raise NotImplementedError

    def check_read_data(self, tenant: str) -> Job:
        raise NotImplementedError

    def answers(self) -> Counter[str] | None:
        """Requests answered so far, by HTTP status (None: the server does not say)."""
        return None

    def maintenance(self) -> str:
        """What the server's own maintenance did (for the report)."""
        return "–"


class CairnSide(Side):
    name = "cairn"
    server_name = "cairn server"
    side_work = "check + forget per tenant; server retention + GC every {gc} min"

    def __init__(
        self,
        work: Path,
        tenants: list[str],
        machines: list[fleet.Machine],
        gc_every_min: float,
        scrub_every_h: float,
        max_uploads: int | None,
    ) -> None:
        super().__init__(work, tenants, machines)
        self.data = work / "cairn-server"
        self.tokens: dict[str, str] = {}
        self.gc_every_min = gc_every_min
        self.scrub_every_h = scrub_every_h
        self.max_uploads = max_uploads
        self.side_work = self.side_work.format(gc=gc_every_min)

    def cairn(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cairn.cli.main", *args]

    def base_env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(SRC), "CAIRN_PASSWORD": PASSWORD}

    def env(self, tenant: str, token: str, home: Path) -> dict[str, str]:
        return {
            **self.base_env(),
            "CAIRN_REPOSITORY": f"cairns://127.0.0.1:{self.port}/{tenant}",
            "CAIRN_TOKEN": token,
            "XDG_CONFIG_HOME": str(home / "config"),
            "CAIRN_CACHE_DIR": str(home / "cache"),
        }

    def setup(self) -> None:
        self.data.mkdir(parents=True)
        self._make_tenants()
        argv = self.cairn("server", "serve", "--data", str(self.data))
        argv += ["--listen", f"127.0.0.1:{self.port}", "--gc-every", str(self.gc_every_min)]
        argv += ["--scrub-every", str(self.scrub_every_h)]
        if self.max_uploads is not None:
            argv += ["--max-uploads", str(self.max_uploads)]
        self._launch(argv, self.base_env())
        inits = [self.admin_job(f"init-{t}", t, self.logs("setup"), "init") for t in self.tenants]
        require(run_pooled(inits, 4), "cairn init")

    def _make_tenants(self) -> None:
        """Tenants with a retention policy (keep everything of the last day: the rule runs, and
        forgets nothing the benchmark must restore), their admin tokens, a backup token per
        machine and a server-admin token for the metrics: what `cairn server tenant add`,
        `retention` and `token add` do, in one process instead of 50 interpreter starts."""
        script = (
            "import json, sys\n"
            "from pathlib import Path\n"
            "from cairn.server.app import open_services\n"
            "from cairn.server.auth import Role\n"
            "from cairn.server.context import Settings\n"
            "from cairn.server.retention import parse_policy\n"
            "tenants, hosts = json.loads(sys.argv[2]), json.loads(sys.argv[3])\n"
            "s = open_services(Settings(data=Path(sys.argv[1])))\n"
            "out = {'operator': str(s.tokens.issue(Role.SERVER_ADMIN, None, 'bench'))}\n"
            "for t in tenants:\n"
            "    s.tenants.create(t)\n"
            "    s.tenants.set_retention(t, parse_policy('1d'))\n"
            "    out[t] = str(s.tokens.issue(Role.TENANT_ADMIN, t, 'bench admin'))\n"
            "for host, t in hosts.items():\n"
            "    out[host] = str(s.tokens.issue(Role.BACKUP, t, host))\n"
            "print(json.dumps(out))\n"
        )
        hosts = json.dumps({m.host: m.tenant for m in self.machines})
        argv = [sys.executable, "-c", script, str(self.data), json.dumps(self.tenants), hosts]
        done = subprocess.run(argv, env=self.base_env(), capture_output=True, text=True, check=True)
        self.tokens = json.loads(done.stdout)

    def admin_job(self, label: str, tenant: str, logs: Path, *args: str) -> Job:
        home = self.work / "admins" / f"cairn-{tenant}"
        env = self.env(tenant, self.tokens[tenant], home)
        return Job(label, self.cairn(*args, "--json"), env, logs)

    def backup(self, m: fleet.Machine, round_no: int) -> Job:
        argv = self.cairn("backup", "--json", "--host", m.host, str(m.root))
        env = self.env(m.tenant, self.tokens[m.host], m.home / "cairn")
        return Job(m.host, argv, env, self.logs(f"round{round_no}"))

    def side_jobs(self, round_no: int) -> list[Job]:
        """A check of every tenant, and a forget of the older snapshots of each tenant's first
        machine (garbage for the server's GC to collect while the backups run)."""
        logs = self.logs(f"round{round_no}")
        jobs = [self.admin_job(f"check-{t}", t, logs, "check") for t in self.tenants]
        forget = ("forget", "--host", "{t}-m01", "--keep-last", "1")
        jobs += [
            self.admin_job(f"forget-{t}", t, logs, *(a.format(t=t) for a in forget))
            for t in self.tenants
        ]
        return jobs

    def snapshot_id(self, outcome: Outcome) -> str | None:
        try:
            return str(json.loads(outcome.out.strip().splitlines()[-1])["snapshot_id"])
        except (ValueError, KeyError, IndexError):
            return None

    def forgotten(self, outcome: Outcome) -> list[str]:
        if not outcome.label.startswith("forget-") or not outcome.ok:
            return []
        return [str(name) for name in json.loads(outcome.out.strip().splitlines()[-1])["to_remove"]]

    def snapshots(self, tenant: str) -> set[str]:
        done = run_one(
            self.admin_job(f"snapshots-{tenant}", tenant, self.logs("verify"), "snapshots")
        )
        require([done], "cairn snapshots")
        return {str(s["id"]) for s in json.loads(done.out)}

    def restore(self, tenant: str, snapshot: str, target: Path) -> Job:
        args = ("restore", snapshot, "--target", str(target))
        return self.admin_job(f"restore-{snapshot[:12]}", tenant, self.logs("verify"), *args)

    def check_read_data(self, tenant: str) -> Job:
        args = ("check", "--read-data")
        return self.admin_job(f"check-read-data-{tenant}", tenant, self.logs("verify"), *args)

    def answers(self) -> Counter[str] | None:
        """From /v1/metrics: cairn_requests_total by status (503s are the turned-away uploads)."""
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}/v1/metrics",
            headers={"authorization": f"Bearer {self.tokens['operator']}"},
        )
        try:
            with urllib.request.urlopen(request, context=_unverified(), timeout=30) as answer:  # noqa: S310
                text = answer.read().decode()
        except OSError:
            return None
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            if line.startswith("cairn_requests_total{") and (
                m := re.search(r'status="(\d+)"', line)
            ):
                counts[m[1]] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    def maintenance(self) -> str:
        """GC runs, condemned and deleted packs, and failures, from the server's log lines."""
        log = self.logs("server.log").read_text(errors="replace")
        runs = re.findall(r"^gc t\d+: Report\((.*)\)$", log, re.M)
        field = lambda name, text: int(re.search(rf"{name}=(\d+)", text)[1])  # noqa: E731
        skipped = sum("skipped=None" not in r for r in runs)
        failed = len(re.findall(r"^maintenance of .* failed", log, re.M))
        return (
            f"{len(runs)} GC runs ({skipped} skipped, {failed} failed): "
            f"{sum(field('condemned_packs', r) for r in runs)} packs condemned, "
            f"{sum(field('swept_packs', r) for r in runs)} deleted"
        )


class ResticSide(Side):
    name = "restic"
    server_name = "rclone serve restic"
    side_work = "check --no-lock per tenant (forget and prune need an exclusive lock)"

    def __init__(
        self, work: Path, tenants: list[str], machines: list[fleet.Machine], cert: Path, key: Path
    ) -> None:
        super().__init__(work, tenants, machines)
        self.data = work / "rclone-data"
        self.cert = cert
        self.key = key

    def env(self, home: Path) -> dict[str, str]:
        (home / "cache").mkdir(parents=True, exist_ok=True)
        return {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(home / "cache")}

    def restic(self, tenant: str, *args: str) -> list[str]:
        repo = f"rest:https://127.0.0.1:{self.port}/{tenant}/"
        return ["restic", "-r", repo, "--cacert", str(self.cert), *args]

    def setup(self) -> None:
        self.data.mkdir(parents=True)
        argv = ["rclone", "serve", "restic", str(self.data), "--addr", f"127.0.0.1:{self.port}"]
        argv += ["--cert", str(self.cert), "--key", str(self.key), "--append-only"]
        self._launch(argv)
        inits = [self.admin_job(f"init-{t}", t, self.logs("setup"), "init") for t in self.tenants]
        require(run_pooled(inits, 4), "restic init")

    def admin_job(self, label: str, tenant: str, logs: Path, *args: str) -> Job:
        home = self.work / "admins" / f"restic-{tenant}"
        return Job(label, self.restic(tenant, *args), self.env(home), logs)

    def backup(self, m: fleet.Machine, round_no: int) -> Job:
        argv = self.restic(m.tenant, "backup", "-q", "--json", "--host", m.host, str(m.root))
        return Job(m.host, argv, self.env(m.home / "restic"), self.logs(f"round{round_no}"))

    def side_jobs(self, round_no: int) -> list[Job]:
        logs = self.logs(f"round{round_no}")
        return [self.admin_job(f"check-{t}", t, logs, "--no-lock", "check") for t in self.tenants]

    def snapshot_id(self, outcome: Outcome) -> str | None:
        for line in reversed(outcome.out.splitlines()):
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("message_type") == "summary":
                return str(item.get("snapshot_id"))
        return None

    def snapshots(self, tenant: str) -> set[str]:
        args = ("snapshots", "--json")
        done = run_one(self.admin_job(f"snapshots-{tenant}", tenant, self.logs("verify"), *args))
        require([done], "restic snapshots")
        return {str(s["id"]) for s in json.loads(done.out)}

    def restore(self, tenant: str, snapshot: str, target: Path) -> Job:
        args = ("restore", snapshot, "--target", str(target))
        return self.admin_job(f"restore-{snapshot[:12]}", tenant, self.logs("verify"), *args)

    def check_read_data(self, tenant: str) -> Job:
        args = ("check", "--read-data")
        return self.admin_job(f"check-read-data-{tenant}", tenant, self.logs("verify"), *args)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for rclone, made by Cairn's own code, so both servers speak the same TLS."""
    script = (
        "import sys\nfrom pathlib import Path\nfrom cairn.server.tls import make_self_signed\n"
        "make_self_signed(Path(sys.argv[1]) / 'cert.pem', Path(sys.argv[1]) / 'key.pem', [])\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run([sys.executable, "-c", script, str(folder)], env=env, check=True)
    return folder / "cert.pem", folder / "key.pem"
