"""The machines of the server load benchmark and their source trees (seeded, deterministic).

A tenant is an organisation; its machines share a set of files (the same system and application
files on every machine, so the server's repository deduplicates them across machines) and each
has its own (documents, binaries, a growing log). Between rounds every machine changes a little
of its own data, and the shared set gets the same update on every machine of the tenant.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB

# Bytes mapped onto 32 letters: ~5 bits of entropy per byte, so zstd gains ~1.6x (text-like),
# and made at C speed by bytes.translate.
_TEXT = bytes((b"etaoinshrdlucmfwypvbgkqjxz \n.,;("[i % 32]) for i in range(256))


@dataclass(frozen=True)
class Scale:
    """Per machine: `shared` bytes in `shared_files` files (the same on every machine of a
    tenant) and `unique` bytes in `unique_files` files (its own)."""

    name: str
    shared: int
    shared_files: int
    unique: int
    unique_files: int


SCALES = {
    "tiny": Scale("tiny", 1 * MiB, 20, 512 * KiB, 10),
    "small": Scale("small", 4 * MiB, 80, 2 * MiB, 40),
    "medium": Scale("medium", 24 * MiB, 300, 12 * MiB, 150),
}


@dataclass(frozen=True)
class Machine:
    tenant: str
    number: int
    root: Path
    """Its source tree; the backup path."""
    home: Path
    """Its per-tool state: caches, pinned certificates, logs."""

    @property
    def host(self) -> str:
        return f"{self.tenant}-m{self.number:02d}"


def _data(rng: random.Random, size: int, text: bool) -> bytes:
    raw = rng.randbytes(size)
    return raw.translate(_TEXT) if text else raw


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _sizes(rng: random.Random, total: int, count: int) -> list[int]:
    """`count` sizes summing to about `total`, from a few KiB to a few times the mean."""
    weights = [rng.paretovariate(1.5) for _ in range(count)]
    scale = total / sum(weights)
    return [max(1 * KiB, int(w * scale)) for w in weights]


def shared_files(tenant_seed: int, scale: Scale) -> dict[str, bytes]:
    """The tenant's shared set: relative path -> bytes (half text, half binary)."""
    rng = random.Random(tenant_seed)
    files = {}
    for i, size in enumerate(_sizes(rng, scale.shared, scale.shared_files)):
        text = i % 2 == 0
        files[f"shared/d{i % 8}/f{i:04d}.{'txt' if text else 'bin'}"] = _data(rng, size, text)
    return files


def make_tree(machine: Machine, shared: dict[str, bytes], seed: int, scale: Scale) -> None:
    for rel, data in shared.items():
        _write(machine.root / rel, data)
    rng = random.Random(seed)
    for i, size in enumerate(_sizes(rng, scale.unique, scale.unique_files)):
        text = i % 3 != 0
        _write(
            machine.root / f"own/d{i % 5}/u{i:04d}.{'txt' if text else 'bin'}",
            _data(rng, size, text),
        )
    _write(machine.root / "own/activity.log", _data(rng, 64 * KiB, True))


def change_tree(
    machine: Machine, seed: int, round_no: int, shared_update: dict[str, bytes]
) -> None:
    """A day on one machine: append to the log, edit a tenth of its own files in place, add two,
    delete one; and the tenant-wide update of the shared set."""
    rng = random.Random(seed * 1000 + round_no)
    own = sorted((machine.root / "own").rglob("*.*"))
    with open(machine.root / "own/activity.log", "ab") as log:
        log.write(_data(rng, 16 * KiB, True))
    for path in rng.sample(own, max(1, len(own) // 10)):
        if path.name == "activity.log":
            continue
        data = bytearray(path.read_bytes())
        at = rng.randrange(len(data))
        data[at : at + 100] = _data(rng, 100, path.suffix == ".txt")
        path.write_bytes(bytes(data))
    for j in range(2):
        _write(
            machine.root / f"own/new/r{round_no}-{j}.txt",
            _data(rng, rng.randrange(4, 200) * KiB, True),
        )
    victims = [p for p in own if p.name != "activity.log" and p.exists()]
    rng.choice(victims).unlink()
    for rel, data in shared_update.items():
        _write(machine.root / rel, data)


def shared_update(tenant_seed: int, round_no: int, shared: dict[str, bytes]) -> dict[str, bytes]:
    """The same edit of a few shared files on every machine of a tenant (an update)."""
    rng = random.Random(tenant_seed * 7919 + round_no)
    names = rng.sample(sorted(shared), max(1, len(shared) // 20))
    update = {}
    for rel in names:
        data = bytearray(shared[rel])
        at = rng.randrange(len(data))
        data[at : at + 4 * KiB] = _data(rng, 4 * KiB, rel.endswith(".txt"))
        update[rel] = shared[rel] = bytes(data)
    return update


def fingerprint(root: Path) -> dict[str, str]:
    """Content hash of every file, by path relative to root."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.blake2b(path.read_bytes()).hexdigest()
    return out


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
