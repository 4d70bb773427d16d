"""The envelope: AES-256-GCM under per-session keys (design.md 4.2).

A session is one process that writes. It draws a random 128-bit session ID, derives its key as
keyed-BLAKE3(seal_key, session_id), and numbers its messages with a counter that lives only in
memory. Two processes, a restart or a crash-resume therefore never share a key, and within a
session the counter never repeats, so a nonce is never reused under a key.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cairn.core.errors import FormatError, IntegrityError, UnsupportedFormat

ENVELOPE_VERSION = 1
SESSION_ID_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
HEADER_SIZE = 2 + SESSION_ID_SIZE + NONCE_SIZE
OVERHEAD = HEADER_SIZE + TAG_SIZE
MAX_MESSAGES_PER_SESSION = 2**32


@dataclass(frozen=True, slots=True)
class Suite:
    """An AEAD cipher suite, described as data."""

    id: int
    name: str
    key_size: int


AES_256_GCM = Suite(id=1, name="aes-256-gcm+blake3-session", key_size=32)
SUITES = {AES_256_GCM.id: AES_256_GCM}


def session_key(seal_key: bytes, session_id: bytes) -> bytes:
    """The AEAD key of one session."""
    key: bytes = blake3.blake3(session_id, key=seal_key).digest()
    return key


class Sealer:
    """Seals byte strings for one session; thread-safe."""

    def __init__(self, seal_key: bytes, session_id: bytes | None = None) -> None:
        self.session_id = session_id or os.urandom(SESSION_ID_SIZE)
        self._cipher = AESGCM(session_key(seal_key, self.session_id))
        self._header = bytes([ENVELOPE_VERSION, AES_256_GCM.id]) + self.session_id
        self._counter = 0
        self._lock = threading.Lock()

    def _next_nonce(self) -> bytes:
        with self._lock:
            self._counter += 1
            if self._counter >= MAX_MESSAGES_PER_SESSION:
                raise RuntimeError("session exhausted its nonces; start a new session")
            return struct.pack(">IQ", 0, self._counter)

    def seal(self, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        """Encrypt and authenticate `plaintext`, binding `aad`."""
        nonce = self._next_nonce()
        return self._header + nonce + self._cipher.encrypt(nonce, plaintext, aad)


class Opener:
    """Opens envelopes of any session; caches the per-session ciphers it has derived."""

    def __init__(self, seal_key: bytes, cache_size: int = 256) -> None:
        self._seal_key = seal_key
        self._ciphers: OrderedDict[bytes, AESGCM] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _cipher(self, session_id: bytes) -> AESGCM:
        with self._lock:
            cipher = self._ciphers.get(session_id)
            if cipher is not None:
                self._ciphers.move_to_end(session_id)
                return cipher
        cipher = AESGCM(session_key(self._seal_key, session_id))
        with self._lock:
            self._ciphers[session_id] = cipher
            if len(self._ciphers) > self._cache_size:
                self._ciphers.popitem(last=False)
        return cipher

    def open(self, envelope: bytes | memoryview, aad: bytes) -> bytes:
        """Verify and decrypt; raise IntegrityError on any tampering."""
        view = memoryview(envelope)
        if len(view) < OVERHEAD:
            raise FormatError(f"envelope of {len(view)} bytes is shorter than its header")
        if view[0] != ENVELOPE_VERSION:
            raise UnsupportedFormat(f"envelope version {view[0]} is not supported")
        if view[1] not in SUITES:
            raise UnsupportedFormat(f"cipher suite {view[1]} is not supported")
        session_id = bytes(view[2 : 2 + SESSION_ID_SIZE])
        nonce = bytes(view[2 + SESSION_ID_SIZE : HEADER_SIZE])
        try:
            plaintext: bytes = self._cipher(session_id).decrypt(nonce, view[HEADER_SIZE:], aad)
        except InvalidTag as exc:
            raise IntegrityError(
                "authentication failed: the data was altered or misplaced"
            ) from exc
        return plaintext


def wrap(key: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """One-shot AES-256-GCM under a single-use key (key objects): returns (nonce, ciphertext)."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, aad)


def unwrap(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of wrap; raises IntegrityError when the key is wrong or data altered."""
    try:
        plaintext: bytes = AESGCM(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError) as exc:
        raise IntegrityError("key unwrap failed") from exc
    return plaintext
