"""Test-wide settings: hypothesis profiles, no test reads the user's real cache or config, and
the slow tests run first."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.support.storageservers import SeaweedS3, seaweed_s3

pytest_plugins = ["tests.support.required"]  # suites CI must not skip (see there)

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("soak", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` (the kill harness's shards, a minute each) go first, in their order;
    the rest keep theirs. Run last, a slow test would hold one xdist worker long after the others
    ran out of work; run first, the others' short tests fill in around it (scripts/check runs
    xdist with `--dist worksteal`, so an idle worker takes queued tests from a busy one)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for name in (
        "CAIRN_REPOSITORY",
        "CAIRN_PASSWORD",
        "CAIRN_PASSWORD_FILE",
        "CAIRN_PASSWORD_COMMAND",
        "CAIRN_LIMIT_UPLOAD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS's S3 gateway, started once per session (tests/support/storageservers.py)."""
    with seaweed_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
