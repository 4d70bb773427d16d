"""Wall and CPU time of one command, and the CPU a server process spent meanwhile: a backend's
figure on a 2-core machine shared with its store is read with both (benches s3.py, webdav.py).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

Step = tuple[float, float, float]
"""Wall seconds, the command's CPU seconds (user + system) and the server's CPU seconds."""


def timed(cmd: list[str], env: dict[str, str], server: int | None = None) -> Step:
    """Run `cmd` (it must succeed) and time it. `server`: a pid whose CPU (and that of the
    processes of the group it leads: Apache's workers) counts as the server's."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = server_cpu(server)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, used, server_cpu(server) - served


def server_cpu(root: int | None) -> float:
    """CPU seconds used so far by process `root` (all its threads) and its process group."""
    if root is None:
        return 0.0
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(stat.parent.name) == root or int(fields[2]) == root:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
