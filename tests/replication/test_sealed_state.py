"""The sealed server state (design 17.15) on a real local folder target: it opens only with the
operator's passphrase, a changed header or body is refused (CAIRN-E148), the newest five are
kept, names sort by time, and `choose_server_id` finds the one server or asks which; the
server's carrier pushes at once for tenants and tokens, within a minute for other audited
changes, every 15 minutes, and not without a key."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.backends.base import Handle
from cairn.backends.location import open_backend
from cairn.core.clock import FrozenClock
from cairn.crypto.kdf import TEST_KDF
from cairn.replication.errors import (
    NoServerState,
    ServerIdNeeded,
    StateSealDamaged,
    WrongStatePassphrase,
)
from cairn.replication.model import Target
from cairn.replication.sealedstate import (
    MAGIC,
    load_key,
    new_key,
    open_sealed,
    save_key,
    seal,
    wrap_key,
)
from cairn.replication.stateshelf import KIND, choose_server_id, newest, push, state_location
from cairn.server.adminops import Actor
from cairn.server.app import open_services
from cairn.server.context import Settings
from cairn.server.layouts import LocalLayouts
from cairn.server.state import ServerState
from cairn.server.statecarry import EVERY_S, GAP_S, StateCarrier

SERVER = "ab" * 16
PASS = b"operator passphrase"


def test_a_sealed_state_opens_only_with_the_passphrase_and_unaltered() -> None:
    key = new_key(PASS, SERVER, TEST_KDF)
    name, blob = seal(key, {"state": {"tenants": ["alpha"]}}, 1_700_000_000_000)
    assert len(name) == 64 and name.startswith(f"{1_700_000_000_000:016x}")
    payload, opened = open_sealed(blob, PASS)
    assert payload == {"state": {"tenants": ["alpha"]}} and opened == key.key
    assert b"alpha" not in blob, "the payload travels sealed"
    with pytest.raises(WrongStatePassphrase) as wrong:
        open_sealed(blob, b"not it")
    assert wrong.value.code == "CAIRN-E145"
    later = blob.replace(b'"exported_ms": 1700000000000', b'"exported_ms": 1800000000000')
    assert later != blob
    with pytest.raises(StateSealDamaged):  # the header is in the AAD
        open_sealed(later, PASS)
    flipped = bytearray(blob)
    flipped[-5] ^= 1
    with pytest.raises(StateSealDamaged) as damaged:
        open_sealed(bytes(flipped), PASS)
    assert damaged.value.code == "CAIRN-E148"
    with pytest.raises(StateSealDamaged):
        open_sealed(b"PK" + struct.pack(">I", 2) + b"{}", PASS)
    assert blob.startswith(MAGIC)


def test_a_new_passphrase_wraps_the_same_key(tmp_path: Path) -> None:
    key = new_key(PASS, SERVER, TEST_KDF)
    save_key(tmp_path, key)
    assert (tmp_path / "state-key").stat().st_mode & 0o777 == 0o600
    again = load_key(tmp_path)
    assert again is not None and again.key == key.key
    changed = wrap_key(again.key, b"a new one", SERVER, TEST_KDF)
    _, blob = seal(changed, {"state": {}}, 1)
    assert open_sealed(blob, b"a new one")[1] == key.key
    with pytest.raises(WrongStatePassphrase):
        open_sealed(blob, PASS)
    assert load_key(tmp_path / "nowhere") is None


def test_a_target_keeps_the_newest_five_and_restore_finds_the_server(tmp_path: Path) -> None:
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    with pytest.raises(NoServerState):
        choose_server_id(str(offsite), None)
    where = state_location(str(offsite), SERVER)
    backend = open_backend(where, create=True)
    key = new_key(PASS, SERVER, TEST_KDF)
    for ms in range(1, 9):
        push(backend, *seal(key, {"state": {"n": ms}}, ms))
    names = sorted(info.handle.name for info in backend.list(KIND))
    assert [int(n[:16], 16) for n in names] == [4, 5, 6, 7, 8]
    assert open_sealed(newest(backend, where), PASS)[0] == {"state": {"n": 8}}
    assert choose_server_id(str(offsite), None) == SERVER
    (offsite / ("cd" * 16) / "server-state").mkdir(parents=True)
    with pytest.raises(ServerIdNeeded) as which:
        choose_server_id(str(offsite), None)
    assert SERVER in str(which.value) and which.value.code == "CAIRN-E147"
    assert choose_server_id(str(offsite), SERVER) == SERVER
    with pytest.raises(ServerIdNeeded):
        choose_server_id("sftp:backup@example.invalid:/offsite", None)
    backend.remove(Handle(KIND, names[-1]))
    assert open_sealed(newest(backend, where), PASS)[0] == {"state": {"n": 7}}


def test_the_carrier_pushes_when_state_changed_and_every_15_minutes(
    tmp_path: Path,
) -> None:
    clock = FrozenClock(datetime(2026, 12, 7, tzinfo=UTC))
    data = tmp_path / "data"
    services = open_services(Settings(data=data), clock=clock)
    state = ServerState(services.db, data, LocalLayouts(data / "tenants"), services.audit, clock)
    carrier = StateCarrier(state, services.db, data, services.server_id, clock)
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    target, paused = Target("f", str(offsite)), Target("p", str(offsite), paused=True)
    assert carrier.carry([target]) == [], "no state key: nothing is carried"

    actor = Actor("cli:test", "local")
    key = new_key(PASS, services.server_id, TEST_KDF)
    services.admin.set_state_key(actor, lambda: save_key(data, key), "new key")
    assert carrier.carry([target, paused]) == ["f"]
    assert carrier.carry([target]) == [], "nothing changed"
    services.admin.create_tenant(actor, "alpha", None)
    assert carrier.carry([target]) == ["f"], "a tenant goes at once"
    services.admin.export_state(actor)  # audited: the log moved, the tenants did not
    assert carrier.carry([target]) == []
    clock.advance(GAP_S)
    assert carrier.carry([target]) == ["f"], "other changes go within a minute"
    clock.advance(EVERY_S)
    assert carrier.carry([target]) == ["f"], "and every 15 minutes in any case"
    carrier.close()

    where = state_location(str(offsite), services.server_id)
    payload, _ = open_sealed(newest(open_backend(where), where), PASS)
    assert [row[0] for row in payload["state"]["tables"]["tenants"]] == ["alpha"]
    actions = [row[4] for row in payload["state"]["tables"]["audit"]]
    assert "set-state-key" in actions and "create-tenant" in actions
