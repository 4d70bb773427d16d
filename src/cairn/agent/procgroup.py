"""Ending a command together with everything it started (design 15.4).

Hooks and dump tools start in a session of their own (`start_new_session=True`), so their process
group is the command plus every child and grandchild that did not leave on purpose. Ending the
group, not just the process we started, is what keeps a hook's `sleep 1000 &` from outliving it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

GRACE_S = 5.0
"""How long a group has between SIGTERM and SIGKILL."""


def group_alive(pgid: int) -> bool:
    """True while a process of the group is still running. Zombies do not count: an orphan's
    zombie lingers until PID 1 reaps it, which some container inits do only now and then."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc/self"):
        return True
    return any(pgrp == pgid and state not in "ZX" for state, pgrp in _processes())


def _processes() -> Iterator[tuple[str, int]]:
    """(state, process group) of every process, from /proc (Linux)."""
    with os.scandir("/proc") as entries:
        names = [entry.name for entry in entries if entry.name.isdigit()]
    for name in names:
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield fields[0].decode(), int(fields[2])


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def end_group(process: subprocess.Popen[bytes], grace_s: float = GRACE_S) -> None:
    """SIGTERM to the whole group, SIGKILL to what is left after `grace_s`; reaps the leader.

    The group ID is the leader's PID, which the kernel does not hand out again while any member
    of the group lives, so signalling it after the leader was reaped reaches only its leftovers.
    """
    pgid = process.pid
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()
        if not group_alive(pgid):
            break
        time.sleep(0.02)
    else:
        signal_group(pgid, signal.SIGKILL)
    process.wait()
