"""Key objects: the master key wrapped under passphrases (design.md 3.2)."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import NotFound
from cairn.core.clock import Clock
from cairn.core.errors import FormatError, IntegrityError
from cairn.core.ids import ObjectName
from cairn.crypto.aead import unwrap, wrap
from cairn.crypto.hashing import object_name, verify_object
from cairn.crypto.kdf import KdfParams, derive_kek
from cairn.crypto.keys import MasterKey
from cairn.format.config import KeyRecord, decode_key, encode_key
from cairn.repository.errors import KeyManagementError, ObjectMissing, WrongPassword

KEY_AAD = b"cairn/1"


def _aad(repo_id: bytes) -> bytes:
    return KEY_AAD + repo_id + b"key"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key object as `key list` shows it."""

    name: ObjectName
    created: str
    host: str
    user: str


def make_key(
    master: MasterKey, repo_id: bytes, passphrase: bytes, kdf: KdfParams, clock: Clock
) -> bytes:
    """Wrap `master` under `passphrase` into the bytes of a new key object."""
    salt = os.urandom(16)
    kek = derive_kek(passphrase, salt, kdf)
    nonce, wrapped = wrap(kek, master.raw, _aad(repo_id))
    record = KeyRecord(
        repo_id=repo_id,
        kdf_t=kdf.t,
        kdf_m=kdf.m,
        kdf_p=kdf.p,
        salt=salt,
        created=clock.now().isoformat(timespec="seconds"),
        host=socket.gethostname(),
        user=getpass.getuser(),
        nonce=nonce,
        wrapped=wrapped,
    )
    return encode_key(record)


def save_key(backend: Backend, data: bytes) -> ObjectName:
    name = object_name(data)
    backend.save(Handle(ObjectKind.KEY, name.hex), data)
    return name


def read_key(backend: Backend, name: ObjectName) -> KeyRecord:
    """Load, verify and decode one key object; raises FormatError or IntegrityError."""
    try:
        data = backend.load(Handle(ObjectKind.KEY, name.hex))
    except NotFound as exc:
        raise ObjectMissing(f"keys/{name.hex} is missing from storage") from exc
    verify_object(name, data)
    return decode_key(data)


def _key_objects(
    backend: Backend, damaged: list[str] | None = None
) -> Iterator[tuple[ObjectName, KeyRecord]]:
    """Every readable key object; a damaged one must not hide the others (check reports it,
    and `damaged` collects a description of it)."""
    for info in sorted(backend.list(ObjectKind.KEY), key=lambda i: i.handle.name):
        name = ObjectName.from_hex(info.handle.name)
        try:
            yield name, read_key(backend, name)
        except ObjectMissing:
            continue  # removed since it was listed
        except (FormatError, IntegrityError) as exc:
            if damaged is not None:
                damaged.append(f"key object {name.short()} is damaged ({exc})")


def unlock(backend: Backend, repo_id: bytes, passphrase: bytes) -> tuple[MasterKey, ObjectName]:
    """Try every key object; return the master key and the key that opened it."""
    damaged: list[str] = []
    for name, record in _key_objects(backend, damaged):
        if record.repo_id != repo_id:
            continue
        params = KdfParams(record.kdf_t, record.kdf_m, record.kdf_p)
        kek = derive_kek(passphrase, record.salt, params)
        try:
            raw = unwrap(kek, record.nonce, record.wrapped, _aad(repo_id))
        except IntegrityError:
            continue
        return MasterKey(raw), name
    message = "wrong passphrase: no key of this repository opens with it"
    if damaged:
        # The damaged one may be this passphrase's key: say so instead of blaming the user.
        message += f"; {'; '.join(damaged)}: if that was this passphrase's key, open the "
        message += "repository with another key and run `cairn check`"
    raise WrongPassword(message)


def list_keys(backend: Backend) -> list[KeyInfo]:
    return [KeyInfo(n, r.created, r.host, r.user) for n, r in _key_objects(backend)]


def remove_key(backend: Backend, name: ObjectName, current: ObjectName) -> None:
    """Remove a key object; refuses the key in use, so a repository never loses its last key."""
    if name == current:
        raise KeyManagementError(
            "refusing to remove the key you are using; open the repository with another key first"
        )
    try:
        backend.remove(Handle(ObjectKind.KEY, name.hex))
    except NotFound as exc:
        raise KeyManagementError(f"no key {name.short()} in this repository") from exc
