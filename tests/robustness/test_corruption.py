"""R3, R4: every object type damaged every way; check finds it, nothing crashes, no wrong bytes.

One repository is built with every object kind of the layout, and more than one of most: the config;
two keys (the one in use came from `key passwd`, so an older key exists to roll back to); packs
that live snapshots use and packs a prune condemned; two indexes (one written by a prune, one by a
backup after it); named reflists and reflists a prune condemned; two live snapshots; two locks of
crashed sessions; two deletion records (the older one waits for its grace period). Objects that a
forget, a prune or a sweep removed on the way are kept aside as the "older versions" to roll back
to.

Each case copies that repository, damages one object (or two, for a swap) and runs the real
command in this process:

- `check` and `check --read-data` must find the damage (a non-zero exit with its documented code,
  and the damaged object named), unless the table `BY_DESIGN` below says, with its reason, why the
  case is harmless or cannot be detected; such cases must then leave every snapshot restorable
  bit-exact, and they are counted apart;
- `snapshots`, `ls` and `restore` of every snapshot must end with exit 0 or a typed error whose exit
  status is the one docs/errors.md gives its code; never a traceback or a hang;
- a restore that exits 0 wrote exactly the bytes and metadata that were backed up (0 silent
  corruptions), and every snapshot that does not depend on the damaged object restores bit-exact;
- the next backup of the same files either refuses with a typed error (the config or the key is
  damaged) or gives a snapshot that restores bit-exact ("heals": what went missing is stored
  again), except after damage to the bytes of a pack the index still lists, which only a repair
  can drop (see the xfail test below); the outcome is counted.

The matrix (object role x damage: detected / harmless / undetectable by design / MISSED) is printed
at the end (with ``-n 0``: xdist workers print nothing) and written to
``$CAIRN_ROBUSTNESS_REPORT/corruption.json`` when that is set.
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cairn.backends.local import LocalBackend
from cairn.cli.errors import CODES
from cairn.core.clock import SystemClock
from cairn.core.ids import ChunkId, ObjectName
from cairn.format.codec import packb, unpackb
from cairn.format.deletion import decode_deletion
from cairn.format.index import decode_index
from cairn.repository.repository import Repository
from tests.robustness.faultfs import (
    PASSWORD,
    CallKind,
    CliResult,
    Fault,
    FaultyFileSystem,
    copy_tree,
    publish,
    reset_tree,
    run_cli,
    tree_manifest,
)

OLD_PASSWORD = "old horse"
OTHER_PASSWORD = "other horse"
EXIT_OF = {code.code: code.exit for _cls, code in CODES}
Manifest = dict[str, tuple[object, ...]]
Key = tuple[str, str]
"""An object as (folder, name): ("config", "config"), ("packs", <hex>), ..."""


# ---- the repository with every object kind ----------------------------------------------------


@dataclass
class Fixture:
    root: Path
    repo: Path
    data: Path
    manifests: dict[str, Manifest] = field(default_factory=dict)
    """Snapshot name → what it restores to (live, forgotten and swept snapshots alike)."""
    roles: dict[str, Key] = field(default_factory=dict)
    """Role (e.g. "pack (holds a tree)") → the object that plays it."""
    partners: dict[str, Key] = field(default_factory=dict)
    """Role → another object of the same kind, to swap contents with."""
    history: dict[str, tuple[Key, bytes]] = field(default_factory=dict)
    """Role → an older object of its kind (removed since) to put back."""
    chunks: dict[str, set[ChunkId]] = field(default_factory=dict)
    """Live snapshot name → every chunk it references."""
    pack_of: dict[ChunkId, str] = field(default_factory=dict)
    """Chunk → the pack readers load it from."""
    indexed: dict[str, set[ChunkId]] = field(default_factory=dict)
    """Index name → the chunks it lists."""
    index_packs: dict[str, set[str]] = field(default_factory=dict)
    """Index name → the packs it lists."""
    condemned: dict[str, set[ChunkId]] = field(default_factory=dict)
    """Deletion record name → the chunks of the packs it condemned."""

    def snapshots(self) -> list[str]:
        return sorted(self.chunks)


def _write_version(data: Path, n: int) -> None:
    rng = random.Random(n)
    data.mkdir(exist_ok=True)
    (data / "common.bin").write_bytes(random.Random(0).randbytes(3000))
    (data / "unique.bin").write_bytes(rng.randbytes(2500))
    (data / "sub").mkdir(exist_ok=True)
    (data / "sub" / "version.txt").write_text(f"version {n}\n" * (10 + n))


def _objects(repo: Path) -> dict[Key, bytes]:
    found: dict[Key, bytes] = {}
    for path in repo.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            folder = path.relative_to(repo).parts[0]
            found[(folder, path.name)] = path.read_bytes()
    return found


def _path(repo: Path, key: Key) -> Path:
    folder, name = key
    if folder == "config":
        return repo / "config"
    if folder == "packs":
        return repo / "packs" / name[:2] / name
    return repo / folder / name


def _names(repo: Path, folder: str) -> set[str]:
    found = (repo / folder).rglob("*") if folder == "packs" else (repo / folder).iterdir()
    return {p.name for p in found if p.is_file() and not p.name.startswith(".")}


def _ok(result: CliResult, what: str) -> None:
    assert result.code == 0, f"{what}: {result}"


class Builder:
    """Runs the commands that build the fixture, keeping every object that disappears."""

    def __init__(self, fx: Fixture) -> None:
        self.fx = fx
        self.seen: dict[Key, bytes] = {}

    def cli(self, *argv: str, password: str = PASSWORD) -> None:
        _ok(run_cli(["-r", str(self.fx.repo), *argv], password=password), " ".join(argv))
        self.seen.update(_objects(self.fx.repo))

    def backup(self, version: int) -> str:
        _write_version(self.fx.data, version)
        before = _names(self.fx.repo, "snapshots")
        self.cli("--no-cache", "backup", str(self.fx.data))
        (name,) = _names(self.fx.repo, "snapshots") - before
        self.fx.manifests[name] = tree_manifest(self.fx.data)
        return name

    def crashed_lock(self) -> str:
        """A lock left by a session whose process died: a forget whose lock removal failed."""
        before = _names(self.fx.repo, "locks")
        argv = ["-r", str(self.fx.repo), "forget", "--keep-last", "100"]
        clean = FaultyFileSystem()
        _ok(run_cli(argv, clean), "forget")
        last_unlink = Fault(CallKind.UNLINK, clean.counts[CallKind.UNLINK], "EIO")
        _ok(run_cli(argv, FaultyFileSystem(last_unlink)), "forget whose lock stays")
        (name,) = _names(self.fx.repo, "locks") - before
        self.seen.update(_objects(self.fx.repo))
        return name

    def gone(self, key: Key) -> tuple[Key, bytes]:
        assert not _path(self.fx.repo, key).exists()
        return key, self.seen[key]


def _build(root: Path) -> Fixture:
    fx = Fixture(root, root / "repo", root / "data")
    b = Builder(fx)
    password_file = root / "password"
    password_file.write_text(PASSWORD + "\n")
    other_file = root / "other"
    other_file.write_text(OTHER_PASSWORD + "\n")
    b.cli("init", "--pack-size", "2KiB", password=OLD_PASSWORD)
    (old_key,) = _names(fx.repo, "keys")
    b.cli("key", "passwd", "--new-password-file", str(password_file), password=OLD_PASSWORD)
    (key_in_use,) = _names(fx.repo, "keys")
    b.cli("key", "add", "--new-password-file", str(other_file))
    (other_key,) = _names(fx.repo, "keys") - {key_in_use}
    s1 = b.backup(1)
    s2 = b.backup(2)
    first_indexes = _names(fx.repo, "index")
    b.cli("forget", s1, "--prune")
    (d1,) = _names(fx.repo, "deletions")
    (r1,) = _names(fx.repo, "reflists") - _reflists_named(fx.repo)
    s3 = b.backup(3)
    swept = _names(fx.repo, "packs")
    b.cli("prune")  # sweeps what the first prune condemned: s1's own packs and reflist
    swept -= _names(fx.repo, "packs")
    assert swept and not _names(fx.repo, "deletions")
    b.cli("forget", s2, "--prune")
    s4 = b.backup(4)
    l0 = b.crashed_lock()
    b.cli("forget", s3)
    b.cli("prune", "--grace", "1000")  # the older record waits: it is too young to sweep
    s5 = b.backup(5)
    l1, l2 = b.crashed_lock(), b.crashed_lock()

    _describe(fx)
    assert fx.snapshots() == sorted([s4, s5])
    d2, d3 = sorted(_names(fx.repo, "deletions"), key=lambda d: _created(fx.repo, d))
    prune_index, backup_index = _indexes_by_role(fx)
    tree_pack, shared_pack = _packs_by_role(fx, s5)
    condemned_pack = _condemned_pack(fx, d3)
    named = _reflist_of(fx.repo, s5)
    r4 = _reflist_of(fx.repo, s4)
    (r3,) = _reflists_in(fx.repo, d3)
    (r2,) = _reflists_in(fx.repo, d2)
    fx.roles = {
        "config": ("config", "config"),
        "key (in use)": ("keys", key_in_use),
        "key (other)": ("keys", other_key),
        "pack (holds a tree)": ("packs", tree_pack),
        "pack (shared data)": ("packs", shared_pack),
        "pack (condemned)": ("packs", condemned_pack),
        "index (of a backup)": ("index", backup_index),
        "index (of a prune)": ("index", prune_index),
        "reflist (named)": ("reflists", named),
        "reflist (condemned)": ("reflists", r3),
        "snapshot": ("snapshots", s5),
        "lock": ("locks", l1),
        "deletion record": ("deletions", d3),
    }
    fx.partners = {
        "key (in use)": ("keys", other_key),
        "key (other)": ("keys", key_in_use),
        "pack (holds a tree)": ("packs", shared_pack),
        "pack (shared data)": ("packs", tree_pack),
        "pack (condemned)": ("packs", tree_pack),
        "index (of a backup)": ("index", prune_index),
        "index (of a prune)": ("index", backup_index),
        "reflist (named)": ("reflists", r4),
        "reflist (condemned)": ("reflists", r2),
        "snapshot": ("snapshots", s4),
        "lock": ("locks", l2),
        "deletion record": ("deletions", d2),
    }
    fx.history = {
        "key (in use)": b.gone(("keys", old_key)),
        "pack (shared data)": b.gone(("packs", sorted(swept)[0])),
        "index (of a prune)": b.gone(("index", _listing_any(b, first_indexes, swept))),
        "reflist (condemned)": b.gone(("reflists", r1)),
        "snapshot": b.gone(("snapshots", s1)),
        "snapshot (forgotten, unswept)": b.gone(("snapshots", s3)),
        "lock": b.gone(("locks", l0)),
        "deletion record": b.gone(("deletions", d1)),
    }
    return fx


def _listing_any(b: Builder, indexes: set[str], packs: set[str]) -> str:
    """An index (since superseded) that lists one of `packs` (since swept)."""
    for name in sorted(indexes):
        record = decode_index(b.seen[("index", name)])
        if {p.hex for p in record.packs} & packs:
            return name
    raise AssertionError("no early index lists a swept pack")


def _reflists_named(repo: Path) -> set[str]:
    backend = LocalBackend(repo)
    r = Repository.open(backend, PASSWORD.encode(), SystemClock())
    return {n.hex for s in r.snapshot_names() for n in r.read_snapshot(s).record.reflists}


def _reflist_of(repo: Path, snapshot: str) -> str:
    r = Repository.open(LocalBackend(repo), PASSWORD.encode(), SystemClock())
    (reflist,) = r.read_snapshot(ObjectName.from_hex(snapshot)).record.reflists
    return reflist.hex


def _reflists_in(repo: Path, record: str) -> list[str]:
    data = _path(repo, ("deletions", record)).read_bytes()
    return [r.hex for r in decode_deletion(data).reflists]


def _created(repo: Path, record: str) -> int:
    return decode_deletion(_path(repo, ("deletions", record)).read_bytes()).created_ms


def _describe(fx: Fixture) -> None:
    """Which chunks each live snapshot uses, where readers find them, what lists them."""
    repo = Repository.open(LocalBackend(fx.repo), PASSWORD.encode(), SystemClock())
    repo.load_index()
    for name in repo.snapshot_names():
        snap = repo.read_snapshot(name)
        fx.chunks[name.hex] = {c for r in snap.record.reflists for c in repo.read_reflist(r)}
    for chunks in fx.chunks.values():
        for chunk in chunks:
            location = repo.index.get(chunk)
            assert location is not None
            fx.pack_of[chunk] = location.pack.hex
    for index in _names(fx.repo, "index"):
        record = decode_index(_path(fx.repo, ("index", index)).read_bytes())
        fx.indexed[index] = {e.chunk_id for es in record.packs.values() for e in es}
        fx.index_packs[index] = {p.hex for p in record.packs}
    for deletion_name in _names(fx.repo, "deletions"):
        deletion = decode_deletion(_path(fx.repo, ("deletions", deletion_name)).read_bytes())
        fx.condemned[deletion_name] = {e.chunk_id for es in deletion.packs.values() for e in es}


def _indexes_by_role(fx: Fixture) -> tuple[str, str]:
    """(the index a prune wrote, the index the last backup wrote)."""
    supersedes = {
        name: decode_index(_path(fx.repo, ("index", name)).read_bytes()).supersedes
        for name in fx.indexed
    }
    (prune,) = [n for n, s in supersedes.items() if s]
    (backup,) = [n for n, s in supersedes.items() if not s]
    return prune, backup


def _packs_by_role(fx: Fixture, newest: str) -> tuple[str, str]:
    """(the pack holding the newest snapshot's root tree, a pack both live snapshots use)."""
    repo = Repository.open(LocalBackend(fx.repo), PASSWORD.encode(), SystemClock())
    tree = repo.read_snapshot(ObjectName.from_hex(newest)).body.tree
    tree_pack = fx.pack_of[tree]
    a, b = fx.snapshots()
    shared = sorted({fx.pack_of[c] for c in fx.chunks[a] & fx.chunks[b]} - {tree_pack})
    return tree_pack, shared[0]


def _condemned_pack(fx: Fixture, record: str) -> str:
    deletion = decode_deletion(_path(fx.repo, ("deletions", record)).read_bytes())
    on_storage = _names(fx.repo, "packs")
    return sorted(p.hex for p in deletion.packs if p.hex in on_storage)[0]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return _build(tmp_path_factory.mktemp("corruption"))


# ---- damages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """One way to damage a repository; returns the objects it damaged or added."""

    name: str
    apply: Callable[[Fixture, Path, str], list[Key]]


def _rewrite(repo: Path, key: Key, change: Callable[[bytes], bytes]) -> list[Key]:
    path = _path(repo, key)
    path.write_bytes(change(path.read_bytes()))
    return [key]


def _truncate(length: Callable[[int], int]) -> Callable[[Fixture, Path, str], list[Key]]:
    def apply(fx: Fixture, repo: Path, role: str) -> list[Key]:
        return _rewrite(repo, fx.roles[role], lambda b: b[: length(len(b))])

    return apply


def _flip(where: Callable[[int], int]) -> Callable[[Fixture, Path, str], list[Key]]:
    def apply(fx: Fixture, repo: Path, role: str) -> list[Key]:
        def change(b: bytes) -> bytes:
            at = where(len(b))
            return b[:at] + bytes([b[at] ^ 0x10]) + b[at + 1 :]

        return _rewrite(repo, fx.roles[role], change)

    return apply


def _zero_block(fx: Fixture, repo: Path, role: str) -> list[Key]:
    def change(b: bytes) -> bytes:
        start = (len(b) // 2) // 4096 * 4096
        end = min(len(b), start + 4096)
        return b[:start] + bytes(end - start) + b[end:]

    return _rewrite(repo, fx.roles[role], change)


def _swap(fx: Fixture, repo: Path, role: str) -> list[Key]:
    a, b = _path(repo, fx.roles[role]), _path(repo, fx.partners[role])
    first, second = a.read_bytes(), b.read_bytes()
    a.write_bytes(second)
    b.write_bytes(first)
    return [fx.roles[role], fx.partners[role]]


OTHER_KIND = {
    "keys": "locks",
    "packs": "reflists",
    "index": "deletions",
    "reflists": "snapshots",
    "snapshots": "index",
    "locks": "snapshots",
    "deletions": "index",
}
"""Where `copy into another kind` puts an object: a folder whose reader decodes another format.
The name stays the object's hash, so only the kind is wrong (the config, whose name is fixed,
gets a key object's bytes instead)."""


def _other_kind(fx: Fixture, repo: Path, role: str) -> list[Key]:
    folder, name = fx.roles[role]
    if folder == "config":
        key = fx.roles["key (in use)"]
        _path(repo, ("config", "config")).write_bytes(_path(repo, key).read_bytes())
        return [("config", "config")]
    target = (OTHER_KIND[folder], name)
    _path(repo, target).write_bytes(_path(repo, fx.roles[role]).read_bytes())
    return [target]


def _duplicate(fx: Fixture, repo: Path, role: str) -> list[Key]:
    folder, name = fx.roles[role]
    copy = (folder, "".join(reversed(name)))  # another valid name, not the hash of the bytes
    _path(repo, copy).write_bytes(_path(repo, fx.roles[role]).read_bytes())
    return [copy]


def _delete(fx: Fixture, repo: Path, role: str) -> list[Key]:
    _path(repo, fx.roles[role]).unlink()
    return [fx.roles[role]]


def _roll_back(fx: Fixture, repo: Path, role: str) -> list[Key]:
    key, data = fx.history[role]
    _path(repo, key).write_bytes(data)
    return [key]


HEADER = 8
"""Header-only: the magic of packs and reflists; the map header and version of msgpack objects."""

DAMAGES = [
    Damage("truncated to 0", _truncate(lambda n: 0)),
    Damage("truncated to header", _truncate(lambda n: min(HEADER, n - 1))),
    Damage("truncated to half", _truncate(lambda n: n // 2)),
    Damage("flip at start", _flip(lambda n: 0)),
    Damage("flip in middle", _flip(lambda n: n // 2)),
    Damage("flip at end", _flip(lambda n: n - 1)),
    Damage("zeroed 4 KiB", _zero_block),  # the whole object when it is smaller
    Damage("swapped", _swap),
    Damage("as another kind", _other_kind),
    Damage("duplicated", _duplicate),
    Damage("deleted", _delete),
    Damage("rolled back", _roll_back),
]
ROLES = [
    "config",
    "key (in use)",
    "key (other)",
    "pack (holds a tree)",
    "pack (shared data)",
    "pack (condemned)",
    "index (of a backup)",
    "index (of a prune)",
    "reflist (named)",
    "reflist (condemned)",
    "snapshot",
    "snapshot (forgotten, unswept)",
    "lock",
    "deletion record",
]


def _applies(role: str, damage: str) -> bool:
    if role == "snapshot (forgotten, unswept)":
        return damage == "rolled back"
    if damage == "rolled back":
        return role in ROLLBACKS
    if damage == "swapped":
        return role != "config"
    if damage == "duplicated":
        return role != "config"  # its name is fixed: there is no other name for it
    return True


# The roles with an older version to put back. The config has none: it is written once by init
# and never changes (a key change writes a new key object, whose older version is rolled back
# here); a reflist or pack name is its hash, so its "older version" is a removed one.
ROLLBACKS = {
    "key (in use)",
    "pack (shared data)",
    "index (of a prune)",
    "reflist (condemned)",
    "snapshot",
    "snapshot (forgotten, unswept)",
    "lock",
    "deletion record",
}


# ---- what is expected -------------------------------------------------------------------------

DETECTED = "detected"
HARMLESS = "harmless by design"
UNDETECTABLE = "undetectable by design"

BY_DESIGN: dict[tuple[str, str], tuple[str, str]] = {
    ("key (in use)", "deleted"): (
        UNDETECTABLE,
        "without the key object its passphrase opens nothing: `wrong passphrase` (exit 12) is all "
        "anyone can say; the other key still opens the repository",
    ),
    ("key (other)", "deleted"): (
        UNDETECTABLE,
        "indistinguishable from `key remove`; the key in use still opens everything",
    ),
    ("key (in use)", "rolled back"): (
        UNDETECTABLE,
        "a key replaced by `key passwd` is an authentic key of this repository: its old "
        "passphrase opens it again; storage that kept a copy could always do this (design 9: "
        "rollback is not prevented)",
    ),
    ("pack (condemned)", "deleted"): (
        HARMLESS,
        "no snapshot uses a condemned pack; the sweep skips packs already gone",
    ),
    ("pack (shared data)", "rolled back"): (
        HARMLESS,
        "a swept pack put back is in no index and no record: a warning, and the next prune "
        "condemns it again",
    ),
    ("reflist (condemned)", "deleted"): (
        HARMLESS,
        "no snapshot names it; the sweep would delete it",
    ),
    ("reflist (condemned)", "rolled back"): (
        HARMLESS,
        "a swept reflist put back is named by no snapshot: the next prune condemns it again",
    ),
    ("snapshot", "deleted"): (
        UNDETECTABLE,
        "indistinguishable from `forget`; needs a client-side record of snapshots (design 9: "
        "future high-water mark). Every other snapshot restores",
    ),
    ("snapshot (forgotten, unswept)", "rolled back"): (
        UNDETECTABLE,
        "a forgotten snapshot whose data is condemned but not yet swept is complete and "
        "authentic: it restores bit-exact (design 9: rollback is not prevented)",
    ),
    ("lock", "deleted"): (
        HARMLESS,
        "the lock of a session that ended; prune removes such locks itself",
    ),
    ("lock", "rolled back"): (
        HARMLESS,
        "the lock of a session that ended: prune sees that and removes it",
    ),
    ("deletion record", "deleted"): (
        HARMLESS,
        "the state of a prune interrupted before it saved the record: its packs are in no index "
        "(a warning) and the next prune condemns them again",
    ),
    ("deletion record", "rolled back"): (
        HARMLESS,
        "a swept record put back names packs and reflists already deleted: readers never need "
        "them, and the next sweep skips them and removes the record",
    ),
}
"""(role, damage) → (expected outcome, why). Every other case must be detected."""


# ---- one case ---------------------------------------------------------------------------------


@dataclass
class CaseResult:
    role: str
    damage: str
    expected: str
    outcome: str
    problems: list[str] = field(default_factory=list)
    next_backup: str = ""


def _typed(result: CliResult, what: str) -> list[str]:
    """Exit 0, or a documented error code with its exit status; never a traceback."""
    problems = []
    if "Traceback" in result.err:
        problems.append(f"{what}: a traceback: {result.err[-600:]!r}")
    if result.code == 0:
        return problems
    match = re.search(r"error (CAIRN-E\d{3})", result.err)
    if match is None:
        return [*problems, f"{what}: exit {result.code} without an error code: {result}"]
    code = match[1]
    if code == "CAIRN-E999" or EXIT_OF.get(code) != result.code:
        problems.append(f"{what}: {code} with exit {result.code}: {result}")
    return problems


def _depends(fx: Fixture, damaged: list[Key]) -> set[str]:
    """The live snapshots a restore of which may fail because of the damaged objects."""
    hit: set[str] = set()
    for folder, name in damaged:
        if folder == "config" or (folder, name) == fx.roles["key (in use)"]:
            return set(fx.chunks)
        for snap, chunks in fx.chunks.items():
            if (
                (folder == "snapshots" and name == snap)
                or (folder == "packs" and any(fx.pack_of[c] == name for c in chunks))
                or (folder == "index" and chunks & _listed_only_in(fx, name))
            ):
                hit.add(snap)
    return hit


def _listed_only_in(fx: Fixture, index: str) -> set[ChunkId]:
    others: set[ChunkId] = set()
    for name, chunks in fx.indexed.items():
        if name != index:
            others |= chunks
    for chunks in fx.condemned.values():
        others |= chunks
    return fx.indexed.get(index, set()) - others


def _names_damage(fx: Fixture, result: CliResult, damaged: list[Key]) -> bool:
    """Does the report name a damaged object? Nothing names an index, so once one is gone the
    packs it listed (now in no index) are what a report can name."""
    names = {name for _folder, name in damaged}
    for folder, name in damaged:
        if folder == "index":
            names |= fx.index_packs.get(name, set())
    text = result.out + result.err
    return any(name[:8] in text for name in names)


def run_case(fx: Fixture, role: str, damage: Damage, base: Path) -> CaseResult:
    if base.exists():
        reset_tree(fx.repo, base)
    else:
        copy_tree(fx.repo, base)
    damaged = damage.apply(fx, base, role)
    expected, _why = BY_DESIGN.get((role, damage.name), (DETECTED, ""))
    repo = ["-r", str(base)]
    problems: list[str] = []
    checks = {
        "check": run_cli([*repo, "check"]),
        "check --read-data": run_cli([*repo, "check", "--read-data"]),
    }
    for what, result in checks.items():
        problems += _typed(result, what)
    deep = checks["check --read-data"]
    named = _names_damage(fx, deep, damaged)
    if deep.code == 0:
        outcome = "MISSED" if expected == DETECTED else expected
    elif named or expected != UNDETECTABLE:
        outcome = DETECTED
        if not named:
            problems.append(f"check --read-data does not name the damaged object: {deep}")
    else:
        outcome = UNDETECTABLE  # the command fails, but cannot know why (see BY_DESIGN)
    if outcome == DETECTED and not role.startswith("pack") and checks["check"].code == 0:
        problems.append("metadata damage found only by --read-data")
    problems += _typed(run_cli([*repo, "snapshots"]), "snapshots")
    problems += _restores(fx, base, damaged)
    if outcome != expected:
        problems.append(f"expected {expected}, got {outcome}: {deep}")
    heal, heal_problems = _next_backup(fx, base)
    problems += heal_problems
    live_pack_damaged = (role in LIVE_PACKS and damage.name in BYTE_DAMAGES) or (
        role.startswith("pack") and damage.name == "swapped"  # its partner is a live pack
    )
    if heal == NOT_HEALED and not live_pack_damaged:
        problems.append("the next backup exits 0 with a snapshot that does not restore")
    return CaseResult(role, damage.name, expected, outcome, problems, heal)


HEALED = "healed"
REFUSED = "refused"
NOT_HEALED = "NOT HEALED"
LIVE_PACKS = {"pack (holds a tree)", "pack (shared data)"}
BYTE_DAMAGES = {d.name for d in DAMAGES if d.name not in ("deleted", "as another kind")} - {
    "duplicated"
}
"""Damaged bytes inside a pack the index still lists: a backup deduplicates against them, so
only `check --repair` (design 13.5, next release) makes the next backup store them again. See
test_a_backup_after_damage_to_a_pack_stores_the_data_again."""


def _next_backup(fx: Fixture, base: Path) -> tuple[str, list[str]]:
    """R4: does the next backup of the same files give a snapshot that restores bit-exact?"""
    before = _names(base, "snapshots")
    result = run_cli(["-r", str(base), "--no-cache", "backup", str(fx.data)])
    problems = _typed(result, "the next backup")
    if result.code != 0:
        return REFUSED, problems
    (new,) = _names(base, "snapshots") - before
    target = base / "restore-next"
    restored = run_cli(["-r", str(base), "restore", new, "--target", str(target)])
    problems += _typed(restored, "restore of the next backup")
    try:
        if restored.code != 0:
            return NOT_HEALED, problems
        if tree_manifest(target / fx.data.relative_to("/")) != tree_manifest(fx.data):
            return NOT_HEALED, [*problems, "the next backup restores WRONG BYTES"]
        return HEALED, problems
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _restores(fx: Fixture, base: Path, damaged: list[Key]) -> list[str]:
    """ls and restore of every snapshot: typed errors only, no wrong bytes, and bit-exact for
    every snapshot that does not depend on the damage."""
    problems: list[str] = []
    may_fail = _depends(fx, damaged)
    rolled = {name for folder, name in damaged if folder == "snapshots" and name in fx.manifests}
    for snap in sorted(set(fx.chunks) | rolled):
        target = base / f"restore-{snap[:8]}"
        listing = run_cli(["-r", str(base), "ls", snap])
        problems += _typed(listing, f"ls {snap[:8]}")
        result = run_cli(["-r", str(base), "restore", snap, "--target", str(target)])
        problems += _typed(result, f"restore {snap[:8]}")
        if result.code == 0:
            restored = tree_manifest(target / fx.data.relative_to("/"))
            if restored != fx.manifests[snap]:
                problems.append(f"restore {snap[:8]} exits 0 with WRONG BYTES")
        elif snap in fx.chunks and snap not in may_fail:
            problems.append(f"restore {snap[:8]} fails, though it does not need the damage")
        if listing.code != 0 and snap in fx.chunks and snap not in may_fail:
            problems.append(f"ls {snap[:8]} fails, though it does not need the damage")
        shutil.rmtree(target, ignore_errors=True)
    return problems


# ---- the matrix -------------------------------------------------------------------------------

RESULTS: list[CaseResult] = []
SHORT = {DETECTED: "D", HARMLESS: "H", UNDETECTABLE: "U", "MISSED": "M"}


@pytest.fixture(scope="module", autouse=True)
def _matrix(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    cells = {(r.role, r.damage): SHORT[r.outcome] for r in RESULTS}
    width = max(len(r) for r in ROLES)
    lines = ["", "R3/R4 corruption matrix (D detected, H harmless, U undetectable by design, "]
    lines[-1] += "M MISSED, . not applicable):"
    lines.append(" " * width + "  " + " ".join(f"{i:>2}" for i in range(len(DAMAGES))))
    for role in ROLES:
        row = " ".join(f"{cells.get((role, d.name), '.'):>2}" for d in DAMAGES)
        lines.append(f"{role:<{width}}  {row}")
    lines += [f"  {i:>2}: {d.name}" for i, d in enumerate(DAMAGES)]
    totals = {o: sum(1 for r in RESULTS if r.outcome == o) for o in SHORT}
    lines.append("  " + ", ".join(f"{o}: {n}" for o, n in totals.items()) + f" of {len(RESULTS)}")
    heals = {h: sum(1 for r in RESULTS if r.next_backup == h) for h in (HEALED, REFUSED)}
    heals[NOT_HEALED] = sum(1 for r in RESULTS if r.next_backup == NOT_HEALED)
    lines.append("  the next backup: " + ", ".join(f"{h}: {n}" for h, n in heals.items()))
    by_design = {f"{role} / {damage}": v for (role, damage), v in BY_DESIGN.items()}
    document = {"cases": [r.__dict__ for r in RESULTS], "by_design": by_design}
    publish(request.config, lines, "corruption.json", document)


@pytest.mark.parametrize("role", ROLES)
def test_every_damage_is_found_and_no_wrong_bytes_are_restored(fixture: Fixture, role: str) -> None:
    problems: list[str] = []
    base = fixture.root / f"case-{ROLES.index(role)}"
    for damage in DAMAGES:
        if not _applies(role, damage.name):
            continue
        result = run_case(fixture, role, damage, base)
        RESULTS.append(result)
        problems += [f"{damage.name}: {p}" for p in result.problems]
    shutil.rmtree(base, ignore_errors=True)
    assert not problems, "\n".join(problems)


def test_the_by_design_table_names_real_cases() -> None:
    for role, damage in BY_DESIGN:
        assert role in ROLES and damage in {d.name for d in DAMAGES}
        assert _applies(role, damage), (role, damage)


# ---- single cases -----------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="a backup deduplicates against the damaged chunk, which the index still lists, so "
    "the new snapshot holds the same damage (it exits 0; restore then names the damaged files, "
    "CAIRN-E023, no wrong bytes). `check --repair --read-data` drops damaged blobs from the "
    "index first (design 13.5); closing it without that needs a backup that verifies the packs "
    "it deduplicates against",
)
def test_a_backup_after_damage_to_a_pack_stores_the_data_again(fixture: Fixture) -> None:
    base = fixture.root / "heal"
    copy_tree(fixture.repo, base)
    damaged = _flip(lambda n: n // 2)(fixture, base, "pack (shared data)")
    assert run_cli(["-r", str(base), "check", "--read-data"]).code == 20
    heal, problems = _next_backup(fixture, base)
    shutil.rmtree(base)
    assert not problems
    assert heal == HEALED, f"{damaged}: the next backup does not restore"


def test_a_backup_after_a_pack_was_deleted_stores_the_data_again(fixture: Fixture) -> None:
    base = fixture.root / "heal-deleted"
    copy_tree(fixture.repo, base)
    for role in LIVE_PACKS:
        _delete(fixture, base, role)
    heal, problems = _next_backup(fixture, base)
    assert not problems
    assert heal == HEALED
    result = run_cli(["-r", str(base), "check", "--read-data"])
    assert result.code == 20, "the older snapshots still miss the deleted packs' chunks"
    shutil.rmtree(base)


def _config_fields(data: bytes) -> dict[str, range]:
    """Where each top-level field of the config sits (its msgpack key and value)."""
    obj = unpackb(data)
    spans = {}
    for key, value in obj.items():
        encoded = packb(key) + packb(value)
        start = data.index(encoded)
        spans[key] = range(start, start + len(encoded))
    return spans


def _undetected_config_flips(fx: Fixture) -> list[int]:
    """Every byte of the config flipped in turn: the offsets `check` does not complain about."""
    base = fx.root / "config-bytes"
    copy_tree(fx.repo, base)
    original = (fx.repo / "config").read_bytes()
    missed = []
    for at in range(len(original)):
        flipped = original[:at] + bytes([original[at] ^ 0x10]) + original[at + 1 :]
        (base / "config").write_bytes(flipped)
        result = run_cli(["-r", str(base), "check"])
        assert not _typed(result, f"check with config byte {at} flipped")
        if result.code == 0:
            missed.append(at)
    shutil.rmtree(base)
    return missed


def test_every_flipped_config_byte_outside_its_created_time_is_found(fixture: Fixture) -> None:
    original = (fixture.repo / "config").read_bytes()
    created = _config_fields(original)["created"]
    missed = _undetected_config_flips(fixture)
    assert missed, "the unauthenticated created time goes unnoticed (see the xfail below)"
    assert set(missed) <= set(created), f"undetected flips outside `created`: {missed}"


@pytest.mark.xfail(
    strict=True,
    reason="the config's `created` field is plaintext and outside the AEAD's associated data "
    "(design 3.1), and the config has no hash name: a flipped byte there goes unnoticed. Nothing "
    "reads the field, so the damage is harmless, but it is undetected; binding it into the "
    "config's associated data is a format change",
)
def test_every_flipped_config_byte_is_found(fixture: Fixture) -> None:
    assert _undetected_config_flips(fixture) == []


def test_init_refuses_a_location_whose_config_is_missing(fixture: Fixture) -> None:
    base = fixture.root / "no-config"
    copy_tree(fixture.repo, base)
    (base / "config").unlink()
    opened = run_cli(["-r", str(base), "snapshots"])
    assert opened.code == 15 and "config" in opened.err and "is missing" in opened.err
    init = run_cli(["-r", str(base), "init"])
    assert init.code == 13 and "config is missing" in init.err
    assert not (base / "config").exists()
    shutil.rmtree(base)


def test_latest_skips_a_snapshot_that_cannot_be_read(fixture: Fixture) -> None:
    """Issue 11, item 13: one damaged snapshot blocks no other; it is named in a warning."""
    base = fixture.root / "latest"
    copy_tree(fixture.repo, base)
    damaged = _path(base, ("snapshots", fixture.roles["snapshot"][1]))
    damaged.write_bytes(b"")
    (other,) = set(fixture.snapshots()) - {damaged.name}
    result = run_cli(["-r", str(base), "restore", "latest", "--target", str(base / "out")])
    assert result.code == 0 and f"snapshot {damaged.name[:8]} cannot be read" in result.err
    assert other[:8] in result.out, "latest is the readable snapshot"
    by_id = run_cli(["-r", str(base), "restore", damaged.name[:8], "--target", str(base / "o2")])
    assert by_id.code == 21 and damaged.name[:8] in by_id.err
    listing = run_cli(["-r", str(base), "snapshots"])
    assert listing.code == 0 and damaged.name[:8] in listing.err
    assert other[:8] in listing.out, "the readable snapshot is still listed"
    shutil.rmtree(base)
