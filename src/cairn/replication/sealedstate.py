"""The server's state sealed for its targets (design 17.15): the operator's state key, wrapped
under a passphrase (argon2id, as a repository's key object, 3.2), and each state as one object
of a magic, a plaintext header (the wrapped key, the server ID, the time) and a 4.2 envelope of
the zstd-compressed payload, with the header in the AAD.

Keyless in the replication package's sense: it never touches a client's key; the state key is
the server operator's own.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from cairn.core.errors import FormatError, IntegrityError, UnsupportedFormat
from cairn.crypto.aead import Opener, Sealer, unwrap, wrap
from cairn.crypto.kdf import DEFAULT_KDF, KdfParams, derive_kek
from cairn.replication.errors import StateSealDamaged, WrongStatePassphrase

MAGIC = b"CAIRNSS1"
VERSION = 1
KEY_SIZE = 32
SALT_SIZE = 16
STATE_KEY_FILE = "state-key"


@dataclass(frozen=True, slots=True)
class StateKey:
    """The state key and its passphrase-wrapped copy (`wrapped`: the header's key fields)."""

    key: bytes = field(repr=False)
    server_id: str
    wrapped: dict[str, Any]


def _key_aad(server_id: str) -> bytes:
    return b"cairn/1|" + server_id.encode() + b"|server-state-key"


def _state_aad(server_id: str, header: bytes) -> bytes:
    return b"cairn/1|" + server_id.encode() + b"|server-state|" + header


def wrap_key(
    key: bytes, passphrase: bytes, server_id: str, params: KdfParams = DEFAULT_KDF
) -> StateKey:
    """`key` wrapped under `passphrase` with a new random salt (so one KEK seals one key)."""
    salt = os.urandom(SALT_SIZE)
    nonce, wrapped = wrap(derive_kek(passphrase, salt, params), key, _key_aad(server_id))
    fields = {"kdf": "argon2id", "t": params.t, "m": params.m, "p": params.p}
    fields |= {"salt": salt.hex(), "nonce": nonce.hex(), "wrapped": wrapped.hex()}
    return StateKey(key, server_id, fields)


def unwrap_key(fields: dict[str, Any], passphrase: bytes, server_id: str) -> bytes:
    """The state key from its wrapped copy; WrongStatePassphrase when it does not open."""
    try:
        params = KdfParams(int(fields["t"]), int(fields["m"]), int(fields["p"]))
        params.validate()
        salt, nonce = bytes.fromhex(fields["salt"]), bytes.fromhex(fields["nonce"])
        wrapped = bytes.fromhex(fields["wrapped"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StateSealDamaged(f"the state key's wrapped copy is malformed: {exc}") from exc
    try:
        return unwrap(derive_kek(passphrase, salt, params), nonce, wrapped, _key_aad(server_id))
    except IntegrityError as exc:
        raise WrongStatePassphrase(
            "the passphrase does not open the server's state key (or its copy was altered)"
        ) from exc


def new_key(passphrase: bytes, server_id: str, params: KdfParams = DEFAULT_KDF) -> StateKey:
    return wrap_key(secrets.token_bytes(KEY_SIZE), passphrase, server_id, params)


def save_key(data: Path, state_key: StateKey) -> None:
    """Write `DATA/state-key` (0600) under a temporary name, then rename it in place."""
    document = {
        "v": VERSION,
        "server_id": state_key.server_id,
        "key": state_key.key.hex(),
        "wrapped": state_key.wrapped,
    }
    path = data / STATE_KEY_FILE
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, json.dumps(document).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def load_key(data: Path) -> StateKey | None:
    """The state key in `DATA/state-key`; None when none was set."""
    path = data / STATE_KEY_FILE
    try:
        document = json.loads(path.read_text())
        return StateKey(
            bytes.fromhex(document["key"]), str(document["server_id"]), dict(document["wrapped"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateSealDamaged(f"{path} cannot be read: {exc}") from exc


def seal(state_key: StateKey, payload: dict[str, Any], exported_ms: int) -> tuple[str, bytes]:
    """One sealed state: its object name (time-sortable) and its bytes."""
    fields = {"v": VERSION, "server_id": state_key.server_id, "exported_ms": exported_ms}
    header = json.dumps(fields | state_key.wrapped, sort_keys=True).encode()
    body = zstandard.ZstdCompressor().compress(json.dumps(payload).encode())
    envelope = Sealer(state_key.key).seal(body, _state_aad(state_key.server_id, header))
    name = f"{exported_ms:016x}{secrets.token_hex(24)}"
    return name, MAGIC + struct.pack(">I", len(header)) + header + envelope


def read_header(blob: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """The header of a sealed state, its raw bytes and the envelope after it."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise StateSealDamaged("this object is not a sealed Cairn server state")
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    raw = blob[start : start + length]
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise StateSealDamaged(f"the sealed state's header is damaged: {exc}") from exc
    if not isinstance(header, dict) or header.get("v") != VERSION:
        raise StateSealDamaged(f"sealed state version {header!r:.40}: not one this Cairn reads")
    return header, raw, blob[start + length :]


def open_sealed(blob: bytes, passphrase: bytes) -> tuple[dict[str, Any], bytes]:
    """The payload of a sealed state and its state key, opened with the operator's passphrase."""
    header, raw, envelope = read_header(blob)
    server_id = str(header.get("server_id"))
    key = unwrap_key(header, passphrase, server_id)
    try:
        body = Opener(key).open(envelope, _state_aad(server_id, raw))
        payload = json.loads(zstandard.ZstdDecompressor().decompress(body))
    except (IntegrityError, FormatError, UnsupportedFormat, zstandard.ZstdError, ValueError) as exc:
        raise StateSealDamaged(f"the sealed state does not open: {exc}") from exc
    if not isinstance(payload, dict):
        raise StateSealDamaged("the sealed state holds no payload")
    return payload, key
