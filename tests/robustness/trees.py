"""Small source trees for the kill harness: a few MB that dedup, with a hardlink, a symlink and an
empty file, and versions of them that change, lose and get back files.

Every file's bytes are a function of (seed, name), so a version can bring back exactly the content
an older snapshot held (the case where a backup deduplicates against data a prune condemns).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

KIB = 1024


def content(seed: int, name: str, size: int) -> bytes:
    """Random bytes that depend only on (seed, name, size)."""
    return random.Random(f"{seed}:{name}").randbytes(size)


def text(seed: int, name: str, lines: int) -> bytes:
    """Compressible text that depends only on (seed, name, lines)."""
    rng = random.Random(f"{seed}:{name}")
    words = ["cairn", "pack", "index", "snapshot", "prune", "lock", "chunk", "tree", "key"]
    return "".join(
        " ".join(rng.choice(words) for _ in range(12)) + "\n" for _ in range(lines)
    ).encode()


def make_tree(root: Path, seed: int, scale: int = 1) -> Path:
    """Version 1: ~3 MB at scale 1 (files from 0 bytes to ~1.3 MB in nested folders)."""
    files = root / "files"
    files.mkdir(parents=True)
    for i in range(10):
        size = (4 + 19 * i) * KIB * scale
        (files / f"f{i:02}.bin").write_bytes(content(seed, f"f{i:02}", size))
    (root / "big.bin").write_bytes(content(seed, "big", 1300 * KIB * scale))
    notes = root / "notes" / "deeper"
    notes.mkdir(parents=True)
    for i in range(3):
        (notes / f"n{i}.txt").write_bytes(text(seed, f"n{i}", 400 * scale))
    dup = root / "dup"
    dup.mkdir()
    same = content(seed, "dup", 120 * KIB * scale)
    (dup / "a.bin").write_bytes(same)  # a and b dedup with each other,
    (dup / "b.bin").write_bytes(same)
    shutil.copyfile(files / "f03.bin", dup / "c.bin")  # c with a file elsewhere
    links = root / "links"
    links.mkdir()
    os.link(files / "f01.bin", links / "hard")
    os.symlink("../files/f02.bin", links / "sym")
    (root / "empty").write_bytes(b"")
    return root


def evolve(root: Path, seed: int, version: int, scale: int = 1) -> None:
    """Turn the tree into `version` (2 or 3) of itself.

    2: f04 and f05 are deleted, f02 and the end of big.bin change, a new file appears.
    3: f04 comes back with its version-1 bytes (data only forgotten snapshots hold), f03 changes,
       another new file appears.
    """
    files = root / "files"
    if version == 2:
        (files / "f04.bin").unlink()
        (files / "f05.bin").unlink()
        (files / "f02.bin").write_bytes(content(seed, "f02-v2", 50 * KIB * scale))
        with open(root / "big.bin", "ab") as big:
            big.write(content(seed, "big-v2", 300 * KIB * scale))
        (files / "new2.bin").write_bytes(content(seed, "new2", 90 * KIB * scale))
    elif version == 3:
        (files / "f04.bin").write_bytes(content(seed, "f04", (4 + 19 * 4) * KIB * scale))
        (files / "f03.bin").write_bytes(content(seed, "f03-v3", 70 * KIB * scale))
        (files / "new3.bin").write_bytes(content(seed, "new3", 110 * KIB * scale))
    else:
        raise ValueError(f"no version {version}")
