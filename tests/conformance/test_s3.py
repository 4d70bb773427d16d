"""S3Backend passes the conformance suite against a real SeaweedFS S3 gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cairn.backends.base import Backend
from cairn.backends.s3 import S3Backend, parse_location
from cairn.backends.testing.conformance import BackendConformance
from tests.support.storageservers import SeaweedS3


@pytest.fixture
def s3_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    return seaweed


class TestS3Backend(BackendConformance):
    @pytest.fixture
    def backend(self, s3_env: SeaweedS3) -> Iterator[Backend]:
        where = parse_location(s3_env.location(prefix=s3_env.fresh_prefix()))
        backend = S3Backend.open(where)
        yield backend
        backend.close()


class TestS3BackendWithoutConditionalCreate(BackendConformance):
    """HEAD + compare instead of If-None-Match, for servers that ignore the header."""

    @pytest.fixture
    def backend(self, s3_env: SeaweedS3) -> Iterator[Backend]:
        where = parse_location(s3_env.location(prefix=s3_env.fresh_prefix()))
        backend = S3Backend.open(where, conditional=False)
        yield backend
        backend.close()
