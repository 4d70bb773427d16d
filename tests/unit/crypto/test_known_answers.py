"""Known-answer tests (S1): the primitives, and frozen vectors of Cairn's own derivations.

The frozen vectors pin the format: if one changes, repositories written by earlier versions would
no longer open. They must only ever change together with a new format version.
"""

from __future__ import annotations

import blake3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cairn.crypto.aead import SUITES, Opener, Sealer
from cairn.crypto.keys import MasterKey


def test_aes_256_gcm_nist_vectors() -> None:
    # NIST GCM test cases 13 and 14 (256-bit zero key, zero IV).
    gcm = AESGCM(bytes(32))
    assert gcm.encrypt(bytes(12), b"", None).hex() == "530f8afbc74536b9a963b4f1c4cb738b"
    assert gcm.encrypt(bytes(12), bytes(16), None).hex() == (
        "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
    )


def test_blake3_vector() -> None:
    assert blake3.blake3(b"").hexdigest() == (
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )


def test_only_aead_suites_exist() -> None:
    assert {s.name for s in SUITES.values()} == {"aes-256-gcm+blake3-session"}


FROZEN_ENVELOPE = (
    "0101" + "00" * 16 + "000000000000000000000001" + "aed76208f5aa28f5c7d728c9172e22a372cbf7b141"
)


def test_frozen_envelope_vector() -> None:
    key = bytes(range(32))
    assert Sealer(key, session_id=bytes(16)).seal(b"cairn", b"aad").hex() == FROZEN_ENVELOPE
    assert Opener(key).open(bytes.fromhex(FROZEN_ENVELOPE), b"aad") == b"cairn"


def test_frozen_subkey_derivation() -> None:
    keys = MasterKey(bytes(32)).subkeys()
    assert keys.data_id.hex() == "a0e996ca6251672806f537c70748db9d5646c93673bea084b5b7a5ed278d1cb2"
    assert keys.tree_id.hex() == "7df6c8845bd46230dbcc8901c366e3622242f9f2cff5cd6f57a6d0ff064f8b5d"
    assert keys.seal.hex() == "6e187735286fb9fd2f6bfc74b822b78841c8ff3caf21915299ef3cdabce0b4f8"
    assert keys.chunker_seed == 7482522024626385480
    assert keys.data_chunk_id(b"chunk").hex() == (
        "f3173adf9f60e9c8813950cf52e4e1e81e955d2f1dd89896abc55223fa06f902"
    )
