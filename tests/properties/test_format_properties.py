"""Every object encoding round-trips, and malformed bytes give a typed error (S3)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.core.errors import FormatError
from cairn.core.ids import ChunkId, ObjectName
from cairn.format.codec import packb, unpackb
from cairn.format.config import (
    ConfigRecord,
    KeyRecord,
    RepoParams,
    decode_config,
    decode_key,
    decode_params,
    encode_config,
    encode_key,
    encode_params,
)
from cairn.format.index import IndexRecord, decode_index, encode_index
from cairn.format.pack import BlobKind, build_pack, parse_pack
from cairn.format.reflist import decode_reflist, encode_reflist
from cairn.format.snapshot import (
    SnapshotBody,
    SnapshotRecord,
    decode_body,
    decode_snapshot,
    encode_body,
    encode_snapshot,
)
from cairn.format.tree import MAX_CHUNK_SIZE, NODE_TYPES, Node, decode_tree, encode_tree

ids = st.binary(min_size=32, max_size=32).map(ChunkId)
names = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b)
text = st.text(max_size=20)
ints = st.integers(0, 2**40)


@st.composite
def nodes(draw: st.DrawFn) -> Node:
    kind = draw(st.sampled_from(NODE_TYPES))
    content = draw(st.lists(ids, max_size=5)) if kind == "file" else []
    return Node(
        name=draw(names),
        type=kind,
        mode=draw(ints),
        uid=draw(ints),
        gid=draw(ints),
        user=draw(text),
        group=draw(text),
        mtime=draw(ints),
        atime=draw(ints),
        ctime=draw(ints),
        size=draw(ints),
        inode=draw(ints),
        dev=draw(ints),
        links=draw(st.integers(1, 10)),
        rdev=draw(ints),
        target=draw(st.binary(max_size=50)) if kind == "symlink" else b"",
        xattrs=draw(
            st.lists(
                st.tuples(st.binary(min_size=1, max_size=10), st.binary(max_size=20)), max_size=3
            )
        ),
        content=content,
        sizes=[draw(st.integers(1, MAX_CHUNK_SIZE)) for _ in content],
        subtree=draw(ids) if kind == "dir" else None,
    )


@given(st.lists(nodes(), max_size=8, unique_by=lambda n: n.name))
def test_tree_round_trip(tree: list[Node]) -> None:
    assert decode_tree(encode_tree(tree)) == sorted(tree, key=lambda n: n.name)


@given(
    st.lists(
        st.tuples(ids, st.sampled_from(BlobKind), st.binary(min_size=1, max_size=100)),
        max_size=10,
        unique_by=lambda b: b[0],
    )
)
def test_pack_round_trip(blobs: list[tuple[ChunkId, BlobKind, bytes]]) -> None:
    data, entries = build_pack(blobs)
    assert parse_pack(data) == entries
    for (_, _, sealed), entry in zip(blobs, entries, strict=True):
        assert data[entry.offset : entry.offset + entry.length] == sealed


@given(
    st.dictionaries(
        st.binary(min_size=32, max_size=32).map(ObjectName),
        st.lists(
            st.tuples(ids, st.sampled_from(BlobKind), st.binary(min_size=1, max_size=30)),
            min_size=1,
            max_size=4,
            unique_by=lambda b: b[0],
        ),
        max_size=4,
    )
)
def test_index_round_trip(packs: dict[ObjectName, list[tuple[ChunkId, BlobKind, bytes]]]) -> None:
    record = IndexRecord({name: build_pack(blobs)[1] for name, blobs in packs.items()})
    assert decode_index(encode_index(record)).packs == record.packs


@given(st.sets(ids, max_size=50), st.binary(min_size=16, max_size=16))
def test_reflist_round_trip(refs: set[ChunkId], salt: bytes) -> None:
    assert decode_reflist(encode_reflist(refs, salt)) == sorted(refs)


@given(
    st.binary(min_size=16, max_size=16),
    st.lists(st.binary(min_size=32, max_size=32).map(ObjectName), max_size=3),
    st.binary(max_size=100),
    st.none() | st.binary(min_size=16, max_size=16),
)
def test_snapshot_round_trip(
    repo_id: bytes, reflists: list[ObjectName], sealed: bytes, group: bytes | None
) -> None:
    record = SnapshotRecord(repo_id, reflists, sealed, group)
    assert decode_snapshot(encode_snapshot(record)) == record


def test_a_snapshot_without_a_group_keeps_the_bytes_of_format_1() -> None:
    """Old snapshots (and their names) stay what they were: the group is absent, not nil, and
    a record written before the group existed reads as having none (R11)."""
    record = SnapshotRecord(b"r" * 16, [ObjectName(b"n" * 32)], b"sealed")
    old = packb({"v": 1, "repo_id": b"r" * 16, "reflists": [b"n" * 32], "sealed": b"sealed"})
    assert encode_snapshot(record) == old
    assert decode_snapshot(old).group is None
    with pytest.raises(FormatError):
        decode_snapshot(packb({**unpackb(old), "group": b"short"}))


@given(
    text,
    text,
    st.lists(text, max_size=3),
    ids,
    st.none() | st.binary(min_size=32, max_size=32).map(ObjectName),
    st.none() | st.binary(min_size=16, max_size=16),
)
def test_snapshot_body_round_trip(
    host: str,
    user: str,
    tags: list[str],
    tree: ChunkId,
    parent: ObjectName | None,
    group: bytes | None,
) -> None:
    body = SnapshotBody(
        "2026-11-24T12:00:00+00:00", host, user, ["/x"], tags, tree, parent, {"files": 3}, False
    )
    body.group = group
    assert decode_body(encode_body(body)) == body


def test_config_and_key_round_trip() -> None:
    config = ConfigRecord(b"r" * 16, "2026-11-24T12:00:00", b"sealed")
    assert decode_config(encode_config(config)) == config
    params = RepoParams(512 * 1024, 512 * 1024, 8 << 20, 16 << 20, 3)
    assert decode_params(encode_params(params)) == params
    key = KeyRecord(b"r" * 16, 3, 65536, 4, b"s" * 16, "now", "host", "user", b"n" * 12, b"wrapped")
    assert decode_key(encode_key(key)) == key


DECODERS = [
    decode_tree,
    decode_index,
    decode_snapshot,
    decode_body,
    decode_config,
    decode_key,
    decode_params,
    decode_reflist,
    parse_pack,
]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda f: f.__name__)
@given(data=st.binary(max_size=300))
def test_malformed_bytes_give_a_typed_error(decode: object, data: bytes) -> None:
    with contextlib.suppress(FormatError):
        decode(data)  # type: ignore[operator]
