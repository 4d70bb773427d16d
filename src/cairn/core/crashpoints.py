"""Named crash points: every durable operation announces itself here.

A durable operation (write, fsync, rename, delete, commit) calls ``crashpoint("local.save.rename")``
just before it happens. In normal runs that is one dictionary lookup. The robustness harness
(tests/robustness) sets ``CAIRN_CRASH_AT=<name>:<k>`` to kill the process with SIGKILL at the k-th
hit of a point, or ``CAIRN_CRASH_TRACE=<file>`` to record every point a workload hits, so it can
then kill the workload at each one in turn.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter[str] = Counter()
_target: tuple[str, int] | None = None
_trace_path: str | None = None


def _configure() -> None:
    global _target, _trace_path
    spec = os.environ.get("CAIRN_CRASH_AT")
    if spec and ":" in spec:
        name, _, count = spec.rpartition(":")
        _target = (name, int(count))
    _trace_path = os.environ.get("CAIRN_CRASH_TRACE") or None


def crashpoint(name: str) -> None:
    """Mark a durable operation; may kill the process when a harness asked for it."""
    if _target is None and _trace_path is None:
        return
    _hits[name] += 1
    if _trace_path is not None:
        with open(_trace_path, "a", encoding="utf-8") as trace:
            trace.write(f"{name}\n")
    if _target is not None and _target == (name, _hits[name]):
        os.kill(os.getpid(), signal.SIGKILL)


_configure()
