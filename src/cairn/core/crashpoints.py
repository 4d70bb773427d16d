"""Named crash points: every durable operation announces itself here.

A durable operation (write, fsync, rename, delete, commit) calls ``crashpoint("local.save.rename")``
just before it happens. In normal runs that is one dictionary lookup. The robustness harness
(tests/robustness) sets ``CAIRN_CRASH_AT=<name>:<k>`` to kill the process with SIGKILL at the k-th
hit of a point, or ``CAIRN_CRASH_TRACE=<file>`` to record every point a workload hits, so it can
then kill the workload at each one in turn. ``CAIRN_CRASH_PAUSE=<name>:<k>`` stops the process
with SIGSTOP at the k-th hit instead, so a harness can run another command at an exact moment of
this one (a prune while a backup holds its lock and has loaded the index), then let it go on with
SIGCONT.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

_hits: Counter[str] = Counter()
_count_lock = threading.Lock()
_target: tuple[str, int] | None = None
_pause: tuple[str, int] | None = None
_trace_path: str | None = None


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec or ":" not in spec:
        return None
    name, _, count = spec.rpartition(":")
    return name, int(count)


def _configure() -> None:
    global _target, _pause, _trace_path
    _target = _parse(os.environ.get("CAIRN_CRASH_AT"))
    _pause = _parse(os.environ.get("CAIRN_CRASH_PAUSE"))
    _trace_path = os.environ.get("CAIRN_CRASH_TRACE") or None


def crashpoint(name: str) -> None:
    """Mark a durable operation; may kill or stop the process when a harness asked for it."""
    if _target is None and _pause is None and _trace_path is None:
        return
    # Several threads save at once (pack uploads, the lock renewer): the k-th hit must be one
    # hit, counted once, and the trace must list hits in the order they were counted.
    with _count_lock:
        _hits[name] += 1
        hit = (name, _hits[name])
        if _trace_path is not None:
            with open(_trace_path, "a", encoding="utf-8") as trace:
                trace.write(f"{name}\n")
        if hit == _target:
            os.kill(os.getpid(), signal.SIGKILL)
    if hit == _pause:
        os.kill(os.getpid(), signal.SIGSTOP)


_configure()
