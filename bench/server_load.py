"""One Cairn server under many concurrent backups, beside restic on `rclone serve restic`.

    python bench/server_load.py [--clients 50] [--tenants 5] [--scale tiny|small|medium]
                                [--rounds 3] [--tools cairn,restic] [--workdir /dev/shm/x]
                                [--gc-every MINUTES] [--client-nice N]
                                [--output FILE.md] [--json FILE]

The fleet (bench/fleet.py): `--clients` machines spread over `--tenants` tenants, each with its
own source tree: files the machines of a tenant share (deduplicated by the tenant's repository)
and files of its own. For each tool in turn, on the same trees (bench/load_sides.py): one server,
one repository per tenant, then `--rounds` rounds in which every machine starts a backup at the
same moment: the initial one, then one after a day of changes per round. From the second round
on, work runs beside the backups: for Cairn a `check` and a `forget` (of the tenant's first
machine's older snapshots) per tenant, while the server's own retention and garbage collection
run every `--gc-every` minutes and a scrub every `--scrub-every` hours; for restic a `check
--no-lock` per tenant (its forget and prune need an exclusive lock, so they cannot run beside
backups). Every client process runs at nice 10 (`--client-nice`): on one machine the server
gets the CPU before its clients, as it would if they ran on machines of their own.

Measured per round: the wall time from the start of the backups to the end of the last one, the
source bytes of all machines over that time, failed backups (exit code not 0); per tool: the
server's resident memory (VmRSS from /proc every 0.5 s: peak per round and at the end), its CPU
time, and for Cairn the answers by status from its /v1/metrics (503 + Retry-After is how it turns
clients away when busy). Afterwards: every acknowledged snapshot (a backup that exited 0), unless
forgotten on purpose, must be listed; a sample is restored and compared file by file with the
tree it was taken of (one per tenant and round, or all with --verify-all); `check --read-data`
runs on every tenant. Nothing is asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import fleet
import load_sides
from load_sides import (
    CairnSide,
    Outcome,
    ResticSide,
    RssSampler,
    Side,
    cpu_seconds,
    run_all,
    run_one,
    run_pooled,
    self_signed,
)


@dataclass
class Round:
    number: int
    seconds: float
    source_bytes: int
    backups: list[Outcome]
    side: list[Outcome]
    peak_rss_kib: int
    answers: Counter[str] | None

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.backups if not o.ok]


@dataclass
class Result:
    tool: str
    server: str
    side_work: str
    rounds: list[Round] = field(default_factory=list)
    idle_rss_kib: int = 0
    end_rss_kib: int = 0
    peak_rss_kib: int = 0
    server_cpu_s: float = 0.0
    server_crashed: int | None = None
    maintenance: str = "–"
    acknowledged: int = 0
    forgotten: int = 0
    missing: list[str] = field(default_factory=list)
    restored: int = 0
    corrupted: list[str] = field(default_factory=list)
    checks_failed: list[str] = field(default_factory=list)

    def answered(self, status: str) -> int | None:
        if any(r.answers is None for r in self.rounds):
            return None
        return sum(r.answers[status] for r in self.rounds if r.answers is not None)


@dataclass
class Fleet:
    machines: list[fleet.Machine]
    tenants: list[str]
    scale: fleet.Scale
    shared: dict[str, dict[str, bytes]] = field(default_factory=dict)
    expected: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    """(host, round) -> fingerprint of the tree that round backs up."""
    sizes: dict[int, int] = field(default_factory=dict)

    @classmethod
    def plan(cls, work: Path, clients: int, tenants: int, scale: fleet.Scale) -> Fleet:
        names = [f"t{i + 1}" for i in range(tenants)]
        machines = [
            fleet.Machine(
                names[i % tenants],
                i // tenants + 1,
                work / "trees" / f"c{i:03d}",
                work / "homes" / f"c{i:03d}",
            )
            for i in range(clients)
        ]
        return cls(machines, names, scale)

    def seed(self, m: fleet.Machine) -> int:
        return 1_000 * (self.tenants.index(m.tenant) + 1) + m.number

    def make(self) -> None:
        """The trees of round 1 (again, from the seeds, for the next tool)."""
        shutil.rmtree(self.machines[0].root.parent, ignore_errors=True)
        self.expected.clear()
        for i, tenant in enumerate(self.tenants):
            self.shared[tenant] = fleet.shared_files(i + 1, self.scale)
        for m in self.machines:
            fleet.make_tree(m, self.shared[m.tenant], self.seed(m), self.scale)
        self._record(1)

    def change(self, round_no: int) -> None:
        updates = {
            t: fleet.shared_update(i + 1, round_no, self.shared[t])
            for i, t in enumerate(self.tenants)
        }
        for m in self.machines:
            fleet.change_tree(m, self.seed(m), round_no, updates[m.tenant])
        self._record(round_no)

    def _record(self, round_no: int) -> None:
        self.sizes[round_no] = sum(fleet.tree_bytes(m.root) for m in self.machines)
        for m in self.machines:
            self.expected[(m.host, round_no)] = fleet.fingerprint(m.root)


Acknowledged = dict[tuple[str, int], str]


def run_rounds(
    side: Side, the_fleet: Fleet, rounds: int, result: Result, sampler: RssSampler
) -> tuple[Acknowledged, set[str]]:
    """Every round's backups at once, side jobs beside them from round 2; the acknowledged
    snapshots by (host, round), and those the side jobs forgot on purpose."""
    acknowledged: Acknowledged = {}
    forgotten: set[str] = set()
    before = side.answers()
    for round_no in range(1, rounds + 1):
        if round_no > 1:
            the_fleet.change(round_no)
        side_jobs = side.side_jobs(round_no) if round_no > 1 else []
        backups = [side.backup(m, round_no) for m in the_fleet.machines]
        t0 = sampler.now()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=1) as beside:
            side_future = beside.submit(run_all, side_jobs)
            outcomes = run_all(backups)
            seconds = time.perf_counter() - started
            side_outcomes = side_future.result()
        for m, outcome in zip(the_fleet.machines, outcomes, strict=True):
            if outcome.ok and (snap := side.snapshot_id(outcome)):
                acknowledged[(m.host, round_no)] = snap
        for outcome in side_outcomes:
            forgotten.update(side.forgotten(outcome))
        after = side.answers()
        answers = after - before if after is not None and before is not None else None
        before = after
        r = Round(
            round_no,
            seconds,
            the_fleet.sizes[round_no],
            outcomes,
            side_outcomes,
            sampler.peak_since(t0),
            answers,
        )
        result.rounds.append(r)
        _progress(side, r)
    return acknowledged, forgotten


def _progress(side: Side, r: Round) -> None:
    side_ok = sum(o.ok for o in r.side)
    busy = f", {r.answers['503']} answered 503" if r.answers is not None else ""
    print(
        f"  {side.name:7} round {r.number}: {r.seconds:6.1f} s, {len(r.failures)} failed, "
        f"beside: {side_ok}/{len(r.side)} ok, server RSS peak {r.peak_rss_kib / 1024:.0f} MiB"
        + busy,
        flush=True,
    )
    for o in r.failures[:3] + [o for o in r.side if not o.ok][:3]:
        print(f"    {o.label} exit {o.code}: {o.err.strip()[-300:]}", flush=True)


def verify(
    side: Side,
    the_fleet: Fleet,
    acknowledged: Acknowledged,
    forgotten: set[str],
    result: Result,
    verify_all: bool,
) -> None:
    kept = {k: s for k, s in acknowledged.items() if s not in forgotten}
    result.acknowledged = len(acknowledged)
    result.forgotten = len(acknowledged) - len(kept)
    listed = {t: side.snapshots(t) for t in the_fleet.tenants}
    tenant_of = {m.host: m.tenant for m in the_fleet.machines}
    root_of = {m.host: m.root for m in the_fleet.machines}
    for (host, round_no), snap in kept.items():
        if not any(s.startswith(snap) for s in listed[tenant_of[host]]):
            result.missing.append(f"{host} round {round_no} {snap}")
    sample = sorted(kept) if verify_all else _sample(the_fleet, kept)
    targets = side.work / f"{side.name}-restores"

    def restore(key: tuple[str, int]) -> tuple[tuple[str, int], Outcome, dict[str, str]]:
        target = targets / f"{key[0]}-r{key[1]}"
        target.mkdir(parents=True)
        outcome = run_one(side.restore(tenant_of[key[0]], kept[key], target))
        got = fleet.fingerprint(target / root_of[key[0]].relative_to("/")) if outcome.ok else {}
        shutil.rmtree(target, ignore_errors=True)
        return key, outcome, got

    with ThreadPoolExecutor(max_workers=2) as pool:
        for key, outcome, got in pool.map(restore, sample):
            result.restored += 1
            if not outcome.ok or got != the_fleet.expected[key]:
                detail = (
                    f"exit {outcome.code} {outcome.err[-300:]}" if not outcome.ok else "differs"
                )
                result.corrupted.append(f"{key[0]} round {key[1]}: {detail}")
    for outcome in run_pooled([side.check_read_data(t) for t in the_fleet.tenants], 2):
        if not outcome.ok:
            result.checks_failed.append(f"{outcome.label}: {outcome.err[-300:]}")


def _sample(the_fleet: Fleet, kept: Acknowledged) -> list[tuple[str, int]]:
    """One acknowledged snapshot per tenant and round, machines taken in turn."""
    picked = []
    for t in the_fleet.tenants:
        hosts = [m.host for m in the_fleet.machines if m.tenant == t]
        for r in sorted({r for _, r in kept}):
            turn = hosts[r % len(hosts) :] + hosts[: r % len(hosts)]
            picked += [(h, r) for h in turn if (h, r) in kept][:1]
    return picked


def run_side(side: Side, the_fleet: Fleet, args: argparse.Namespace) -> Result:
    result = Result(side.name, side.server_name, side.side_work)
    print(f"{side.name}: {side.server_name}, {len(the_fleet.tenants)} repositories", flush=True)
    side.setup()
    sampler = RssSampler(side.pid).start()
    result.idle_rss_kib = sampler.rss_kib() or 0
    try:
        cpu_before = cpu_seconds(side.pid)
        acknowledged, forgotten = run_rounds(side, the_fleet, args.rounds, result, sampler)
        result.server_cpu_s = cpu_seconds(side.pid) - cpu_before
        result.end_rss_kib = sampler.rss_kib() or 0
        print(f"{side.name}: verifying", flush=True)
        verify(side, the_fleet, acknowledged, forgotten, result, args.verify_all)
        result.peak_rss_kib = sampler.peak_since(0)
    finally:
        sampler.stop()
        result.server_crashed = side.stop()
    result.maintenance = side.maintenance()
    return result


# --- the report --------------------------------------------------------------------------------


def table(results: list[Result], clients: int, tenants: int) -> str:
    pair = len(results) == 2
    head = "| | " + " | ".join(f"{r.tool} ({r.server})" for r in results) + " |"
    lines = [head + (" cairn ÷ restic |" if pair else ""), "|---" * (len(results) + 1 + pair) + "|"]

    def row(label: str, cells: list[str], values: list[float] | None = None) -> None:
        ratio = ""
        if pair:
            ratio = f" {values[0] / values[1]:.2f}× |" if values and values[1] else " – |"
        lines.append(f"| {label} | " + " | ".join(cells) + " |" + ratio)

    def measured(label: str, values: list[float], fmt: str) -> None:
        row(label, [fmt.format(v) for v in values], values)

    def counted(label: str, values: list[int | None]) -> None:
        row(label, ["–" if v is None else str(v) for v in values])

    row(
        "clients (tenants × machines)",
        [f"{clients} ({tenants} × {clients // tenants})"] * len(results),
    )
    row("beside the backups from round 2", [r.side_work for r in results])
    row("client processes' niceness", [str(load_sides.CLIENT_NICE)] * len(results))
    for i in range(len(results[0].rounds)):
        what = "initial backup" if i == 0 else f"round {i + 1}, after changes"
        measured(f"{what}: wall time (s)", [r.rounds[i].seconds for r in results], "{:.1f}")
        measured(
            f"{what}: source read by all clients (MiB/s)",
            [r.rounds[i].source_bytes / 2**20 / r.rounds[i].seconds for r in results],
            "{:.1f}",
        )
    for i in range(len(results[0].rounds)):
        measured(
            f"round {i + 1}: CPU time of all backup clients (s)",
            [sum(o.cpu_s for o in r.rounds[i].backups) for r in results],
            "{:.0f}",
        )
    measured(
        "median backup time of one client (s)",
        [_median([o.seconds for rd in r.rounds for o in rd.backups]) for r in results],
        "{:.1f}",
    )
    measured(
        "peak RSS of one client (MiB)",
        [max(o.max_rss_kib for rd in r.rounds for o in rd.backups) / 1024 for r in results],
        "{:.0f}",
    )
    measured("server RSS after setup (MiB)", [r.idle_rss_kib / 1024 for r in results], "{:.0f}")
    for i in range(len(results[0].rounds)):
        peaks = [r.rounds[i].peak_rss_kib / 1024 for r in results]
        measured(f"server RSS peak in round {i + 1} (MiB)", peaks, "{:.0f}")
    measured("server RSS after the rounds (MiB)", [r.end_rss_kib / 1024 for r in results], "{:.0f}")
    measured(
        "server RSS peak, whole run with the restores and checks (MiB)",
        [r.peak_rss_kib / 1024 for r in results],
        "{:.0f}",
    )
    measured("server CPU time in the rounds (s)", [r.server_cpu_s for r in results], "{:.1f}")
    counted(
        "answers 503 + Retry-After (turned away, retried)", [r.answered("503") for r in results]
    )
    counted("answers 500", [r.answered("500") for r in results])
    counted("failed backups", [sum(len(rd.failures) for rd in r.rounds) for r in results])
    row("work beside the backups that failed", [_side_failed(r) for r in results])
    row("server maintenance during the run", [r.maintenance for r in results])
    row(
        "server crashed",
        ["no" if r.server_crashed is None else f"yes ({r.server_crashed})" for r in results],
    )
    counted("acknowledged snapshots", [r.acknowledged for r in results])
    counted("of them forgotten on purpose", [r.forgotten for r in results])
    counted("restored and compared file by file", [r.restored for r in results])
    counted("lost or corrupted snapshots", [len(r.missing) + len(r.corrupted) for r in results])
    counted("check --read-data failures afterwards", [len(r.checks_failed) for r in results])
    return "\n".join(lines)


def _side_failed(r: Result) -> str:
    side = [o for rd in r.rounds for o in rd.side]
    return f"{sum(not o.ok for o in side)} of {len(side)}"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def problems(results: list[Result]) -> str:
    lines = []
    for r in results:
        for label, items in (
            ("missing", r.missing),
            ("corrupted", r.corrupted),
            ("check --read-data failed", r.checks_failed),
        ):
            lines += [f"- {r.tool} {label}: {item}" for item in items[:10]]
        for rd in r.rounds:
            failed = rd.failures[:5] + [o for o in rd.side if not o.ok][:5]
            lines += [
                f"- {r.tool} round {rd.number} {o.label} exit {o.code}: {o.err.strip()[-300:]}"
                for o in failed
            ]
    return "\n".join(lines)


def versions() -> str:
    out = []
    for cmd in (["restic", "version"], ["rclone", "version"]):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            out.append(done.stdout.splitlines()[0])
        except (OSError, IndexError):
            out.append(f"{cmd[0]} not installed")
    return "; ".join(out)


def _raw(r: Result) -> dict[str, object]:
    out = {k: v for k, v in vars(r).items() if k != "rounds"}
    out["rounds"] = [
        {
            "number": rd.number,
            "seconds": rd.seconds,
            "source_bytes": rd.source_bytes,
            "peak_rss_kib": rd.peak_rss_kib,
            "answers": dict(rd.answers) if rd.answers is not None else None,
            "client_seconds": [o.seconds for o in rd.backups],
            "client_cpu_s": [o.cpu_s for o in rd.backups],
            "client_rss_kib": [o.max_rss_kib for o in rd.backups],
            "failures": [
                {"label": o.label, "code": o.code, "err": o.err[-1000:]} for o in rd.failures
            ],
            "beside": [{"label": o.label, "code": o.code, "seconds": o.seconds} for o in rd.side],
        }
        for rd in r.rounds
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--tenants", type=int, default=5, help="the clients are spread over these")
    parser.add_argument("--scale", choices=list(fleet.SCALES), default="small")
    parser.add_argument("--rounds", type=int, default=3, help="the initial backup, then changed")
    parser.add_argument("--tools", default="cairn,restic")
    parser.add_argument("--gc-every", type=float, default=0.25, help="server GC, minutes")
    parser.add_argument("--scrub-every", type=float, default=0.02, help="server scrub, hours")
    parser.add_argument("--max-uploads", type=int, help="cairn server serve --max-uploads")
    parser.add_argument(
        "--client-nice",
        type=int,
        default=load_sides.CLIENT_NICE,
        help="niceness of every client process; 0: clients compete with the server for the CPU",
    )
    parser.add_argument("--verify-all", action="store_true", help="restore every snapshot")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cairn-server-load"))
    parser.add_argument("--keep", action="store_true", help="keep the workdir (logs, repos)")
    parser.add_argument("--output", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args()
    load_sides.CLIENT_NICE = args.client_nice
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if "restic" in tools and not (shutil.which("restic") and shutil.which("rclone")):
        parser.exit(2, "restic and rclone are needed (apt-get install restic rclone)\n")
    if args.clients < args.tenants or args.rounds < 1:
        parser.exit(2, "--clients must be at least --tenants, and --rounds at least 1\n")

    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    the_fleet = Fleet.plan(work, args.clients, args.tenants, fleet.SCALES[args.scale])
    results = []
    for tool in tools:
        print(f"making {args.clients} source trees ({args.scale})", flush=True)
        the_fleet.make()
        print(f"  {the_fleet.sizes[1] / 2**20:.0f} MiB in all", flush=True)
        side: Side
        if tool == "cairn":
            side = CairnSide(
                work,
                the_fleet.tenants,
                the_fleet.machines,
                args.gc_every,
                args.scrub_every,
                args.max_uploads,
            )
        else:
            cert, key = self_signed(work / "rclone-tls")
            side = ResticSide(work, the_fleet.tenants, the_fleet.machines, cert, key)
        results.append(run_side(side, the_fleet, args))

    report = table(results, args.clients, args.tenants)
    trouble = problems(results)
    print("\n" + report + ("\n\n" + trouble if trouble else ""))
    machine = (
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {platform.platform()}; "
        f"{os.cpu_count()} cores; Python {platform.python_version()}; {versions()}"
    )
    command = "python bench/server_load.py " + " ".join(sys.argv[1:])
    if args.output:
        text = f"Measured: {machine}\n\nCommand: `{command}`\n\n{report}\n"
        args.output.write_text(text + (f"\n{trouble}\n" if trouble else ""))
    if args.json:
        args.json.write_text(json.dumps([_raw(r) for r in results], indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
