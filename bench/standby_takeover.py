"""Takeover time of a hot-standby pair (design 19): kill -9 of the primary → the other server
reports itself primary, over N rounds with one witness on loopback. Prints p50 and max.

    .venv/bin/python -m bench.standby_takeover --rounds 5 --ttl 10

This slice has no data sync and no clients following, so this is the lease part of issue 15's
takeover time only (kill to the first write the new primary would accept)."""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from pathlib import Path

from tests.support.serverfixture import free_ports, wait_until_up
from tests.support.witnessfixture import (
    RunningWitness,
    role,
    running_witness,
    spawn_pair_member,
    stop,
    wait_for,
)


def one_round(root: Path, witness: RunningWitness, ttl: str, lease: str) -> float:
    port_a, port_b = free_ports(2)
    extra = ("--lease-ttl", ttl, "--lease", lease)
    a = spawn_pair_member(root / "a", port_a, port_b, witness, *extra)
    b = spawn_pair_member(root / "b", port_b, port_a, witness, *extra)
    try:
        wait_until_up(a)
        wait_until_up(b)
        wait_for("one leads", lambda: "primary" in (role(a), role(b)))
        first, other = (a, b) if role(a) == "primary" else (b, a)
        killed = time.monotonic()
        first.process.send_signal(signal.SIGKILL)
        while role(other) != "primary":
            time.sleep(0.05)
        return time.monotonic() - killed
    finally:
        stop(a.process)
        stop(b.process)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ttl", default="10")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_witness(Path(tmp) / "w") as witness:
        times = [
            one_round(Path(tmp) / f"r{i}", witness, args.ttl, f"r{i}") for i in range(args.rounds)
        ]
    print(
        f"ttl {args.ttl} s, {args.rounds} rounds: takeover p50 {statistics.median(times):.1f} s, "
        f"max {max(times):.1f} s ({', '.join(f'{t:.1f}' for t in times)})"
    )


if __name__ == "__main__":
    main()
