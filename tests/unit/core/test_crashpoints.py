"""Crash points: a traced run lists every hit; a run is killed or stopped at exactly the k-th."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import threading
from cairn.core.crashpoints import crashpoint
for _ in range(3):
    crashpoint("a")
crashpoint("b")
workers = [
    threading.Thread(target=lambda: [crashpoint("c") for _ in range(200)]) for _ in range(4)
]
for w in workers:
    w.start()
for w in workers:
    w.join()
print("done")
"""


def start(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    full = dict(os.environ, CAIRN_CRASH_TRACE=str(tmp_path / "trace"), **env)
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT], env=full, stdout=subprocess.PIPE, text=True
    )


def traced(tmp_path: Path) -> list[str]:
    return (tmp_path / "trace").read_text().split()


def test_the_trace_lists_every_hit_in_order(tmp_path: Path) -> None:
    out, _ = start(tmp_path).communicate(timeout=60)
    assert out == "done\n"
    assert traced(tmp_path) == ["a", "a", "a", "b"] + ["c"] * 800


def test_the_process_dies_by_sigkill_at_the_kth_hit(tmp_path: Path) -> None:
    proc = start(tmp_path, CAIRN_CRASH_AT="a:2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert out == ""
    assert traced(tmp_path) == ["a", "a"]


def test_hits_from_several_threads_are_each_counted_once(tmp_path: Path) -> None:
    proc = start(tmp_path, CAIRN_CRASH_AT="c:800")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the 800th hit of c was never counted"
    assert traced(tmp_path).count("c") == 800


def test_a_pause_stops_the_process_until_it_is_continued(tmp_path: Path) -> None:
    proc = start(tmp_path, CAIRN_CRASH_PAUSE="b:1")
    stopped = os.waitid(os.P_PID, proc.pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
    assert stopped is not None and stopped.si_code == os.CLD_STOPPED
    assert traced(tmp_path) == ["a", "a", "a", "b"]
    os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, "done\n")
