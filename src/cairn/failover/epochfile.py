"""`DATA/standby.json`: the highest epoch this server has seen, on disk before it acts on it.

A server never leads under an epoch lower than one it has seen (a witness whose database was
lost would hand out old epochs again). `cairn server standby promote --force` writes a bumped
epoch here with `forced`, and a running server without a witness takes it up (design 19.5).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cairn.failover.errors import StandbyUsage

NAME = "standby.json"
STATUS = "standby-status.json"


@dataclass(frozen=True, slots=True)
class EpochRecord:
    epoch: int = 0
    forced: bool = False


def read_epoch(data: Path) -> EpochRecord:
    try:
        raw = json.loads((data / NAME).read_text())
        return EpochRecord(int(raw["epoch"]), bool(raw.get("forced", False)))
    except FileNotFoundError:
        return EpochRecord()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StandbyUsage(f"cannot read {data / NAME}: {exc}") from exc


def write_epoch(data: Path, record: EpochRecord) -> None:
    write_json(data / NAME, {"epoch": record.epoch, "forced": record.forced})


def write_json(path: Path, value: object) -> None:
    """Replace `path` whole and durably (write, fsync, rename, fsync the folder)."""
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(value, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
