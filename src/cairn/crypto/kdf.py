"""Passphrase key derivation: argon2id, with its cost as an explicit parameter."""

from __future__ import annotations

from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw


@dataclass(frozen=True, slots=True)
class KdfParams:
    """argon2id cost: time (passes), memory in KiB, parallelism."""

    t: int = 3
    m: int = 64 * 1024
    p: int = 4

    def validate(self) -> None:
        """Refuse parameters too weak to protect a key, or absurd enough to exhaust memory."""
        if not (1 <= self.t <= 64 and 8 <= self.m <= 4 * 1024 * 1024 and 1 <= self.p <= 64):
            raise ValueError(f"argon2id parameters out of range: {self}")


DEFAULT_KDF = KdfParams()
TEST_KDF = KdfParams(t=1, m=64, p=1)
"""Cheap parameters for tests only; never the default for a real repository."""


def derive_kek(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    """The 32-byte key-encryption key for one key object."""
    params.validate()
    out: bytes = hash_secret_raw(
        secret=passphrase,
        salt=salt,
        time_cost=params.t,
        memory_cost=params.m,
        parallelism=params.p,
        hash_len=32,
        type=Type.ID,
    )
    return out
