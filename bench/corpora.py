"""Two more benchmark corpora beside the generated one (issue 18): a real tree and many tiny files.

- ``tree``: a copy of a real folder (Debian's ``/usr/share`` by default: ~49,000 files, ~714 MiB of
  text, images, compressed and binary files, folders and symbolic links). ``scale`` keeps an evenly
  spread share of its files (0.1 = every tenth file, folders and links as they fall), so a quick
  run keeps the tree's mix of sizes and depths.
- ``tiny``: 100,000 files of 300 bytes in 100 folders at scale 1.0 (the file count scales, the
  folder count stays 100 while there are 100 files per folder): the per-file cost and nothing else.

``change_any`` is the day of changes for both: 2 % of the files get 40 bytes inserted, 1 % are
deleted, new files amounting to 1 % are added (copies of existing sizes), and one folder is renamed.
Deterministic (seeded); the real tree is as deterministic as its source.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

TINY_SIZE = 300
TINY_FOLDERS = 100


def _source_entries(source: Path) -> list[Path]:
    """Regular files and symbolic links under source, sorted (so a scale picks the same files)."""
    out = []
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_symlink() or path.is_file():
                out.append(path)
    return out


def make_tree(root: Path, source: Path, scale: float = 1.0) -> None:
    """Copy an evenly spread ``scale`` share of source's files into root (contents, modes,
    times)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    entries = _source_entries(source)
    for i, path in enumerate(entries):
        if int((i + 1) * scale) == int(i * scale):
            continue
        dest = root / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            if path.is_symlink():
                os.symlink(os.readlink(path), dest)
            else:
                shutil.copy2(path, dest)
        except OSError:
            continue  # unreadable on this machine: not part of the corpus


def make_tiny(root: Path, scale: float = 1.0, seed: int = 3) -> None:
    """100,000 x scale files of 300 bytes of source-like text in up to 100 folders."""
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    count = max(100, int(100_000 * scale))
    folders = min(TINY_FOLDERS, max(1, count // 100))
    for f in range(folders):
        (root / f"d{f:03}").mkdir(parents=True)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"return", b"value", b"index", b"chunk"]
    for i in range(count):
        line = b" ".join(rng.choice(words) for _ in range(40)) + b"\n"
        data = (line + str(i).encode() + b"\n" + line)[:TINY_SIZE].ljust(TINY_SIZE, b"#")
        (root / f"d{i % folders:03}" / f"f{i:06}.txt").write_bytes(data)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def change_any(root: Path, seed: int = 2) -> None:
    """A day of changes for any tree: edits, deletes, additions and a renamed folder."""
    rng = random.Random(seed)
    files = _files(root)
    for path in rng.sample(files, max(1, len(files) // 50)):
        data = bytearray(path.read_bytes())
        at = rng.randrange(len(data) or 1)
        data[at:at] = rng.randbytes(40)
        path.write_bytes(bytes(data))
    for path in rng.sample(files, max(1, len(files) // 100)):
        if path.exists():
            path.unlink()
    added = root / "added-today"
    added.mkdir(exist_ok=True)
    for i, like in enumerate(rng.sample(files, max(1, len(files) // 100))):
        size = like.stat().st_size if like.exists() else TINY_SIZE
        (added / f"new-{i}.bin").write_bytes(rng.randbytes(min(size, 1 << 20)))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p != added)
    if folders:
        folders[-1].rename(folders[-1].with_name(folders[-1].name + "-renamed"))
