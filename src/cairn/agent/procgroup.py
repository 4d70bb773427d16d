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

GRACE_S = 5.0
"""How long a group has between SIGTERM and SIGKILL."""


def group_alive(pgid: int) -> bool:
    """True while any process (a zombie leader included) is still in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
            return
        time.sleep(0.02)
    signal_group(pgid, signal.SIGKILL)
    process.wait()
