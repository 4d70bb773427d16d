"""The repository config and key objects (design.md 3.1, 3.2)."""

from __future__ import annotations

from dataclasses import dataclass

from cairn.core.errors import UnsupportedFormat
from cairn.core.ids import REPO_ID_SIZE
from cairn.format.codec import packb, unpackb
from cairn.format.fields import get_bytes, get_int, get_str, require_map, require_version

CONFIG_VERSION = 1
KEY_VERSION = 1


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    """The outer config object: the public repository ID and the sealed parameters."""

    repo_id: bytes
    created: str
    sealed: bytes


@dataclass(frozen=True, slots=True)
class RepoParams:
    """Parameters fixed at init and authenticated by the master key."""

    chunk_min: int
    chunk_avg: int
    chunk_max: int
    pack_size: int
    compression: int


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key object: the master key wrapped by a passphrase-derived key."""

    repo_id: bytes
    kdf_t: int
    kdf_m: int
    kdf_p: int
    salt: bytes
    created: str
    host: str
    user: str
    nonce: bytes
    wrapped: bytes


def encode_config(record: ConfigRecord) -> bytes:
    return packb(
        {
            "v": CONFIG_VERSION,
            "repo_id": record.repo_id,
            "created": record.created,
            "sealed": record.sealed,
        }
    )


def decode_config(data: bytes) -> ConfigRecord:
    obj = require_map(unpackb(data), "config")
    require_version(obj, "config", CONFIG_VERSION)
    return ConfigRecord(
        repo_id=get_bytes(obj, "repo_id", REPO_ID_SIZE),
        created=get_str(obj, "created"),
        sealed=get_bytes(obj, "sealed"),
    )


def encode_params(p: RepoParams) -> bytes:
    return packb(
        {
            "v": CONFIG_VERSION,
            "chunker": {"min": p.chunk_min, "avg": p.chunk_avg, "max": p.chunk_max},
            "pack_size": p.pack_size,
            "compression": p.compression,
        }
    )


def decode_params(data: bytes) -> RepoParams:
    obj = require_map(unpackb(data), "config parameters")
    require_version(obj, "config parameters", CONFIG_VERSION)
    chunker = require_map(obj.get("chunker"), "chunker parameters")
    return RepoParams(
        chunk_min=get_int(chunker, "min", 64, 1 << 20),
        chunk_avg=get_int(chunker, "avg", 256, 4 << 20),
        chunk_max=get_int(chunker, "max", 1024, 16 << 20),
        pack_size=get_int(obj, "pack_size", 1 << 10, 1 << 30),
        compression=get_int(obj, "compression", 0, 22),
    )


def encode_key(k: KeyRecord) -> bytes:
    return packb(
        {
            "v": KEY_VERSION,
            "repo_id": k.repo_id,
            "kdf": "argon2id",
            "t": k.kdf_t,
            "m": k.kdf_m,
            "p": k.kdf_p,
            "salt": k.salt,
            "created": k.created,
            "host": k.host,
            "user": k.user,
            "nonce": k.nonce,
            "wrapped": k.wrapped,
        }
    )


def decode_key(data: bytes) -> KeyRecord:
    obj = require_map(unpackb(data), "key")
    require_version(obj, "key", KEY_VERSION)
    if obj.get("kdf") != "argon2id":
        raise UnsupportedFormat(f"key derivation {obj.get('kdf')!r} is not supported")
    return KeyRecord(
        repo_id=get_bytes(obj, "repo_id", REPO_ID_SIZE),
        kdf_t=get_int(obj, "t", 1, 64),
        kdf_m=get_int(obj, "m", 8, 4 * 1024 * 1024),
        kdf_p=get_int(obj, "p", 1, 64),
        salt=get_bytes(obj, "salt", 16),
        created=get_str(obj, "created"),
        host=get_str(obj, "host"),
        user=get_str(obj, "user"),
        nonce=get_bytes(obj, "nonce", 12),
        wrapped=get_bytes(obj, "wrapped"),
    )
