"""Named crash points: every durable operation announces itself here.

A durable operation (write, fsync, rename, delete, commit) calls ``crashpoint("local.save.rename")``
just before it happens. In normal runs that is one global lookup. The robustness harness
(tests/robustness) sets ``CAIRN_CRASH_AT=<name>:<k>`` to kill the process with SIGKILL at the k-th
hit of a point, or ``CAIRN_CRASH_TRACE=<file>`` to record every point a workload hits, so it can
then kill the workload at each one in turn. ``CAIRN_CRASH_PAUSE=<name>:<k>`` stops the process
with SIGSTOP at the k-th hit instead, so a harness can run another command at an exact moment of
this one (a prune while a backup holds its lock and has loaded the index), then let it go on with
SIGCONT. In-process harnesses (the power-loss simulation) install a handler with `set_handler`:
it is called with the point's name at every hit, from whichever thread hits it, and may raise to
stop the workload there.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable

Handler = Callable[[str], None]

_hits: Counter[str] = Counter()
_count_lock = threading.Lock()
_target: tuple[str, int] | None = None
_pause: tuple[str, int] | None = None
_trace_path: str | None = None
_handler: Handler | None = None
_armed = False


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
    _rearm()


def _rearm() -> None:
    global _armed
    _armed = (
        _target is not None or _pause is not None or _trace_path is not None or _handler is not None
    )


def set_handler(handler: Handler | None) -> None:
    """Call `handler(name)` at every crash point hit in this process; None removes it.

    For tests: the handler must be thread-safe (uploads hit crash points from worker threads).
    An exception it raises propagates from the crash point, before the durable operation.
    """
    global _handler
    _handler = handler
    _rearm()


def crashpoint(name: str) -> None:
    """Mark a durable operation; may kill or stop the process when a harness asked for it."""
    if not _armed:
        return
    handler = _handler  # read once: another thread may remove it meanwhile
    if handler is not None:
        handler(name)
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
