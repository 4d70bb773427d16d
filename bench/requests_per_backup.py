"""Requests per backup, by kind, from a `cairn server` request log (docs/performance.md).

    python bench/requests_per_backup.py WORKDIR/logs/cairn/server.log

A machine's backup token is recognised by its three lock PUTs (one per round of
bench/server_load.py --rounds 3) and no key PUT; its requests are split into rounds at each lock
PUT (the few requests a command makes before it saves its lock count towards the round before).
Admin tokens (init, check, forget, restores) are left out.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict


def main(path: str, rounds_expected: int = 3) -> None:
    per_token: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(path, errors="replace") as log:
        for line in log:
            if line.startswith('{"event": "request"'):
                entry = json.loads(line)
                per_token[entry["token"]].append(entry)
    rounds: dict[int, Counter[str]] = defaultdict(Counter)
    machines = 0
    for events in per_token.values():
        puts = [e["path"].split("/")[4] for e in events if e["method"] == "PUT"]
        if puts.count("locks") != rounds_expected or "keys" in puts:
            continue
        machines += 1
        number = 0
        for e in events:
            kind = e["path"].split("/")[4] if e["path"].count("/") >= 4 else "?"
            number += e["method"] == "PUT" and kind == "locks"
            what = f"{e['method']} {kind}{' (list)' if e['path'].endswith('/') else ''}"
            rounds[number][what] += 1
            rounds[number]["all"] += 1
    print(f"{machines} machines")
    for number in sorted(rounds)[1:]:
        counts = rounds[number]
        top = ", ".join(f"{k} {v / machines:.1f}" for k, v in counts.most_common(4)[1:])
        print(f"round {number}: {counts['all'] / machines:.1f} requests per backup ({top}, ...)")


if __name__ == "__main__":
    main(sys.argv[1])
