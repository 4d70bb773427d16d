"""The one-time invitation code (design 20.3): what a joining machine needs to reach the
offering peer (its address), to know it is the right one (its certificate fingerprint), and to
prove it was invited (a 128-bit secret of which the offering peer keeps only a hash).

`cairnpeer1-` and the lowercase base32 (no padding) of: a version byte, the 32-byte fingerprint,
the 16-byte secret, and the address `HOST:PORT` in UTF-8. Short enough to read out or paste.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

import blake3

from cairn.peers.errors import BadInvitationCode

PREFIX = "cairnpeer1-"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class Invitation:
    address: str
    fingerprint: str
    secret: bytes

    def code(self) -> str:
        raw = bytes([_VERSION]) + bytes.fromhex(self.fingerprint) + self.secret
        raw += self.address.encode()
        return PREFIX + base64.b32encode(raw).decode().rstrip("=").lower()


def new_invitation(address: str, fingerprint: str) -> Invitation:
    return Invitation(address, fingerprint, secrets.token_bytes(16))


def secret_hash(secret: bytes) -> bytes:
    """What the offering peer keeps of a secret: a 128-bit random secret needs no slow hash."""
    return blake3.blake3(secret).digest()


def decode(code: str) -> Invitation:
    """The invitation a code carries; BadInvitationCode for any text that is not one."""
    text = code.strip().lower()
    if not text.startswith(PREFIX):
        raise BadInvitationCode(f"{code[:20]!r}... is not an invitation code (they begin {PREFIX})")
    body = text[len(PREFIX) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
        address = raw[49:].decode()
    except (binascii.Error, ValueError) as exc:
        raise BadInvitationCode("the invitation code is damaged: copy it again") from exc
    if len(raw) < 52 or raw[0] != _VERSION or ":" not in address:
        raise BadInvitationCode("the invitation code is damaged or from another Cairn version")
    return Invitation(address, raw[1:33].hex(), raw[33:49])
