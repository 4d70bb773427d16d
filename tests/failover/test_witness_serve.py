"""The real `cairn witness serve` (design 19.3): leases by compare-and-swap over HTTPS with its
token, and an epoch that stays on disk across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.core.clock import SYSTEM_CLOCK
from cairn.failover.client import WitnessClient, parse_witness_url
from cairn.failover.errors import LeaseHeld, WitnessTokenRefused, WitnessUnreachable
from tests.support.witnessfixture import RunningWitness, running_witness, start_witness, stop


def _client(witness: RunningWitness, holder: str, token: str | None = None) -> WitnessClient:
    token = token or witness.token_file.read_text().strip()
    url = parse_witness_url(witness.url)
    return WitnessClient(url, token, "pair", holder, SYSTEM_CLOCK, timeout=10)


def test_one_candidate_wins_renews_and_releases(tmp_path: Path) -> None:
    with running_witness(tmp_path / "w") as witness:
        a, b = _client(witness, "a"), _client(witness, "b")
        granted = a.acquire(30)
        assert granted.epoch == 1
        with pytest.raises(LeaseHeld) as refused:
            b.acquire(30)
        assert (refused.value.holder, refused.value.epoch) == ("a", 1)
        renewed = a.renew(1, 30)
        assert renewed.epoch == 1 and renewed.sent >= granted.sent
        a.release(1)
        assert b.acquire(30).epoch == 2
        assert witness.lease("pair")["holder"] == "b"
        a.close()
        b.close()


def test_a_wrong_token_and_a_wrong_fingerprint_are_refused(tmp_path: Path) -> None:
    with running_witness(tmp_path / "w") as witness:
        wrong = _client(witness, "a", token="cairnw_" + "0" * 64)
        with pytest.raises(WitnessTokenRefused):
            wrong.acquire(30)
        wrong.close()
        url = parse_witness_url(witness.url.split("#")[0] + "#" + "ab" * 32)
        pinned_other = WitnessClient(url, "x", "pair", "a", SYSTEM_CLOCK, timeout=10)
        with pytest.raises(WitnessUnreachable, match="ab" * 32):
            pinned_other.acquire(30)
        pinned_other.close()
        answer: Any = httpx.post(
            f"https://127.0.0.1:{witness.port}/v1/leases/pair/acquire",
            json={"holder": "a", "ttl_s": 30},
            verify=False,
        )
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "CAIRN-E162"


def test_the_epoch_only_grows_across_a_restart(tmp_path: Path) -> None:
    witness = start_witness(tmp_path / "w")
    try:
        a = _client(witness, "a")
        assert a.acquire(30).epoch == 1
        a.close()
    finally:
        stop(witness.process)
    witness = start_witness(tmp_path / "w", witness.port)
    try:
        b = _client(witness, "b")
        with pytest.raises(LeaseHeld):
            b.acquire(30)  # a's lease counts from the restart: still held
        a = _client(witness, "a")
        assert a.acquire(30).epoch == 2
        a.close()
        b.close()
    finally:
        stop(witness.process)


def test_wrong_tokens_are_throttled_per_address_and_the_right_one_still_answered(
    tmp_path: Path,
) -> None:
    """10 wrong tokens a minute from an address, then 429 (E064) with Retry-After, as the
    server's sign-in (design 19.3); the pair's own token from that address is still served."""
    with running_witness(tmp_path / "w") as witness:
        url = f"https://127.0.0.1:{witness.port}/v1/leases/pair"

        def wrong() -> Any:
            headers = {"authorization": "Bearer cairnw_" + "1" * 64}
            return httpx.get(url, headers=headers, verify=False, timeout=10)

        codes = [wrong().status_code for _ in range(10)]
        assert codes == [401] * 10
        throttled = wrong()
        assert throttled.status_code == 429
        assert throttled.json()["error"]["code"] == "CAIRN-E064"
        assert int(throttled.headers["retry-after"]) >= 1
        client = _client(witness, "a", token="cairnw_" + "2" * 64)
        with pytest.raises(WitnessTokenRefused, match="too many wrong tokens"):
            client.acquire(30)
        client.close()
        right = _client(witness, "a")
        assert right.acquire(30).epoch == 1
        right.close()
