"""copy: snapshots from one repository into another, sealed with the destination's keys.

Chunk IDs are keyed per repository (design 4.1), so the source's IDs mean nothing in the
destination: every data blob is read as plaintext from the source and stored through the
destination's blob saver, which gives it the destination's ID and deduplicates it against what
the destination holds; trees are rewritten bottom-up with the new IDs (3.7: a tree's subtrees
and contents are stored before it); one snapshot object per source snapshot, committed as a
backup commits (packs, index, reflist, then the snapshot: 5.4), so a copy interrupted midway
keeps the snapshots it finished and reuses the packs it stored.

Blobs keep the source's boundaries (no re-chunking): a restore needs only the bytes. The copy
records the source snapshot in `original` (restic's field; the source's own `original` if it
has one), which is how a second copy knows what it already copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cairn.core.ids import ChunkId, ObjectName
from cairn.format.pack import BlobKind
from cairn.format.tree import Node, encode_tree
from cairn.repository.repository import Repository, StoredSnapshot
from cairn.snapshot.walk import load_tree


def origin(snap: StoredSnapshot) -> ObjectName:
    """The snapshot a copy of `snap` stands for: its own original, else itself."""
    return snap.body.original or snap.name


def already_copied(sources: list[StoredSnapshot], present: list[StoredSnapshot]) -> set[ObjectName]:
    """Names of the `sources` that `present` (the destination's snapshots) already holds."""
    held = {origin(s) for s in present}
    return {s.name for s in sources if origin(s) in held}


@dataclass(slots=True)
class CopyStats:
    """What one copy run did, for the report."""

    snapshots: int = 0
    blobs_read: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    trees: int = 0


@dataclass(slots=True)
class SnapshotCopier:
    """Copies snapshots from `source` into `dest` (which has `start_writing` called and its
    index loaded). Blobs already copied in this run are not read again."""

    source: Repository
    dest: Repository
    stats: CopyStats = field(default_factory=CopyStats)
    _data: dict[ChunkId, ChunkId] = field(default_factory=dict)
    _refs: set[ChunkId] = field(default_factory=set)

    def copy(self, snap: StoredSnapshot) -> ObjectName:
        """Copy one snapshot; returns the name of the new snapshot in `dest`."""
        self._refs = set()
        tree = self._copy_tree(snap.body.tree)
        body = replace(snap.body, tree=tree, parent=None, original=origin(snap))
        name = self.dest.commit_snapshot(body, self._refs)
        self.stats.snapshots += 1
        return name

    def _copy_tree(self, tree_id: ChunkId) -> ChunkId:
        nodes = [self._copy_node(n) for n in load_tree(self.source, tree_id)]
        new_id, added = self.dest.store_blob(BlobKind.TREE, encode_tree(nodes))
        self._refs.add(new_id)
        self.stats.trees += 1
        self.stats.bytes_added += added
        return new_id

    def _copy_node(self, node: Node) -> Node:
        if node.subtree is not None:
            return replace(node, subtree=self._copy_tree(node.subtree))
        if node.content:
            return replace(node, content=[self._copy_data(c) for c in node.content])
        return node

    def _copy_data(self, chunk_id: ChunkId) -> ChunkId:
        new_id = self._data.get(chunk_id)
        if new_id is None:
            plaintext = self.source.fetch_blob(BlobKind.DATA, chunk_id)
            new_id, added = self.dest.store_blob(BlobKind.DATA, plaintext)
            self._data[chunk_id] = new_id
            self.stats.blobs_read += 1
            self.stats.bytes_read += len(plaintext)
            self.stats.bytes_added += added
        self._refs.add(new_id)
        return new_id
