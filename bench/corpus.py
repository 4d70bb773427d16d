"""The benchmark corpus: ~1 GiB of mixed data, and a day of changes to it. Deterministic (seeded).

python bench/corpus.py make DIR [--scale 1.0] [--kind generated|tree|tiny] [--source /usr/share]
python bench/corpus.py change DIR [--scale 1.0] [--kind ...]

``--kind tree`` and ``--kind tiny`` are the real tree and the many tiny files of bench/corpora.py.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
from pathlib import Path

import corpora

MiB = 1024 * 1024
WORDS = [
    "def", "return", "import", "class", "self", "value", "index", "buffer", "result", "error",
    "config", "server", "client", "backup", "restore", "chunk", "pack", "snapshot", "tree", "node",
    "the", "a", "of", "to", "in", "is", "for", "with", "on", "that", "by", "this", "from", "at",
]  # fmt: skip


def _text(rng: random.Random, size: int) -> bytes:
    """Source-like text that zstd compresses roughly 3-4x (not 1000x)."""
    lines = []
    total = 0
    while total < size:
        indent = " " * (4 * rng.randrange(4))
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))
        line = f"{indent}{words}({rng.randrange(100000)}, {rng.random():.6f})\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _large_random(root: Path, rng: random.Random, scale: float) -> None:
    for i in range(2):
        _write(root / "large" / f"random-{i}.bin", rng.randbytes(int(150 * MiB * scale)))


def _large_text(root: Path, rng: random.Random, scale: float) -> None:
    for i in range(4):
        _write(root / "large" / f"log-{i}.txt", _text(rng, int(50 * MiB * scale)))


def _vm_image(root: Path, rng: random.Random, scale: float) -> None:
    """A disk-image-like file: repeated blocks, zero regions and unique blocks."""
    size = int(200 * MiB * scale)
    repeated = [rng.randbytes(64 * 1024) for _ in range(16)]
    path = root / "vm" / "disk.img"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            roll = rng.random()
            if roll < 0.3:
                block = bytes(1 * MiB)
            elif roll < 0.7:
                block = b"".join(rng.choice(repeated) for _ in range(16))
            else:
                block = rng.randbytes(1 * MiB)
            f.write(block[: size - written])
            written += len(block)


def _mid_size(root: Path, rng: random.Random, scale: float) -> None:
    for i in range(max(1, int(300 * scale))):
        size = rng.randrange(100 * 1024, 1 * MiB)
        data = _text(rng, size) if i % 2 else rng.randbytes(size)
        _write(root / "media" / f"set-{i % 12}" / f"item-{i}.dat", data)


def _small(root: Path, rng: random.Random, scale: float) -> None:
    count = max(10, int(20_000 * scale))
    folders = max(2, count // 50)
    for i in range(count):
        folder = root / "src" / f"pkg{i % folders // 20}" / f"mod{i % folders}"
        _write(folder / f"file_{i}.py", _text(rng, rng.randrange(200, 8 * 1024)))


def make(root: Path, scale: float = 1.0, seed: int = 1) -> None:
    rng = random.Random(seed)
    if root.exists():
        shutil.rmtree(root)
    for part in (_large_random, _large_text, _vm_image, _mid_size, _small):
        part(root, rng, scale)


def _insert(path: Path, rng: random.Random, count: int = 3, size: int = 100) -> None:
    data = bytearray(path.read_bytes())
    for _ in range(count):
        at = rng.randrange(len(data) or 1)
        data[at:at] = rng.randbytes(size)
    path.write_bytes(bytes(data))


def change(root: Path, scale: float = 1.0, seed: int = 2) -> None:
    """A day of changes: inserts mid-file, appends, edits, adds, deletes, a renamed folder."""
    rng = random.Random(seed)
    for big in [*sorted((root / "large").iterdir()), root / "vm" / "disk.img"]:
        _insert(big, rng)
    for log in sorted((root / "large").glob("log-*.txt")):
        with open(log, "ab") as f:
            f.write(_text(rng, int(2 * MiB * scale) or 1024))
    small = sorted((root / "src").rglob("*.py"))
    for path in rng.sample(small, max(1, len(small) // 50)):
        _insert(path, rng, count=1, size=40)
    for path in rng.sample(small, max(1, len(small) // 100)):
        path.unlink()
    for i in range(max(1, int(200 * scale))):
        _write(root / "src" / "new" / f"added_{i}.py", _text(rng, rng.randrange(200, 8 * 1024)))
    folders = sorted(p for p in (root / "src").iterdir() if p.is_dir() and p.name.startswith("pkg"))
    if folders:
        folders[0].rename(folders[0].with_name(folders[0].name + "-renamed"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["make", "change"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--kind", choices=["generated", "tree", "tiny"], default="generated")
    parser.add_argument("--source", type=Path, default=Path("/usr/share"))
    args = parser.parse_args()
    folder = args.folder.resolve()
    if args.kind == "generated":
        (make if args.action == "make" else change)(folder, args.scale)
    elif args.action == "change":
        corpora.change_any(folder)
    elif args.kind == "tree":
        corpora.make_tree(folder, args.source.resolve(), args.scale)
    else:
        corpora.make_tiny(folder, args.scale)
    size = sum(f.stat().st_size for f in args.folder.rglob("*") if f.is_file())
    print(f"{args.folder}: {size / MiB:.0f} MiB")


if __name__ == "__main__":
    os.umask(0o022)
    main()
