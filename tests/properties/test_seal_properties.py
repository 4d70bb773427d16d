"""Envelope properties: round trip, any flipped byte fails, nonces never repeat (S1)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.core.errors import CairnError, IntegrityError
from cairn.crypto.aead import HEADER_SIZE, Opener, Sealer

KEY = os.urandom(32)


@given(st.binary(max_size=4096), st.binary(max_size=64))
def test_seal_then_open_returns_the_plaintext(plaintext: bytes, aad: bytes) -> None:
    assert Opener(KEY).open(Sealer(KEY).seal(plaintext, aad), aad) == plaintext


@given(st.binary(min_size=1, max_size=512), st.data())
def test_any_flipped_byte_fails_to_open(plaintext: bytes, data: st.DataObject) -> None:
    envelope = bytearray(Sealer(KEY).seal(plaintext, b"aad"))
    i = data.draw(st.integers(0, len(envelope) - 1))
    envelope[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(CairnError):
        Opener(KEY).open(bytes(envelope), b"aad")


@given(st.binary(max_size=256), st.binary(min_size=1, max_size=16))
def test_other_associated_data_fails(plaintext: bytes, suffix: bytes) -> None:
    envelope = Sealer(KEY).seal(plaintext, b"cairn/1 data")
    with pytest.raises(IntegrityError):
        Opener(KEY).open(envelope, b"cairn/1 data" + suffix)


def test_nonces_never_repeat_across_sessions_and_threads() -> None:
    # 50 sessions (as 50 processes or restarts would open) and one session shared by 4 threads.
    headers: list[bytes] = []
    for _session in range(50):
        sealer = Sealer(KEY)
        headers += [sealer.seal(b"x", b"")[:HEADER_SIZE] for _ in range(200)]
    shared = Sealer(KEY)

    def seal_many(_: int) -> list[bytes]:
        return [shared.seal(b"x", b"")[:HEADER_SIZE] for _ in range(2_500)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        for batch in pool.map(seal_many, range(4)):
            headers += batch
    # (session ID, nonce) names the key and nonce: it must never repeat.
    assert len(headers) == 20_000
    assert len(set(headers)) == len(headers)


def test_same_plaintext_twice_gives_different_ciphertexts() -> None:
    sealer = Sealer(KEY)
    assert sealer.seal(b"same", b"") != sealer.seal(b"same", b"")


def test_wrong_key_fails() -> None:
    with pytest.raises(IntegrityError):
        Opener(os.urandom(32)).open(Sealer(KEY).seal(b"secret", b""), b"")
