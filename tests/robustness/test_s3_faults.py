"""The S3 backend under faults, against a real SeaweedFS: uploads and downloads cut mid-way, a
multipart upload resumed by its retry, stale uploads aborted, a listing that breaks off, the
server restarted and killed mid-run."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import ListingIncomplete, TransientBackendError
from cairn.backends.s3 import S3Backend, S3Location, parse_location
from cairn.backends.testing.conformance import handle_for
from cairn.backends.wrappers.retrying import RetryingBackend
from tests.support.storageservers import S3_BUCKET, CuttingRelay, SeaweedS3

PART = 5 * 1024 * 1024  # the smallest part S3 allows


@pytest.fixture
def s3_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    return seaweed


@pytest.fixture
def relay(s3_env: SeaweedS3) -> Iterator[CuttingRelay]:
    front = CuttingRelay(s3_env.port)
    yield front
    front.close()


def via(relay: CuttingRelay, seaweed: SeaweedS3, **options: object) -> S3Backend:
    where = parse_location(seaweed.location(prefix=seaweed.fresh_prefix(), port=relay.port))
    return S3Backend.open(where, multipart_above=PART, part_size=PART, **options)


def direct(where: S3Location, seaweed: SeaweedS3) -> S3Backend:
    return S3Backend.open(
        S3Location(seaweed.endpoint, where.bucket, where.prefix),
        multipart_above=PART,
        part_size=PART,
    )


def uploads(seaweed: SeaweedS3, key: str) -> list[str]:
    answer = seaweed.client().list_multipart_uploads(Bucket=S3_BUCKET, Prefix=key)
    return [u["UploadId"] for u in answer.get("Uploads", []) if u["Key"] == key]


def parts_held(seaweed: SeaweedS3, key: str) -> int:
    (upload_id,) = uploads(seaweed, key)
    answer = seaweed.client().list_parts(Bucket=S3_BUCKET, Key=key, UploadId=upload_id)
    return len(answer.get("Parts", []))


def test_a_cut_multipart_upload_resumes_sending_only_the_missing_parts(
    s3_env: SeaweedS3, relay: CuttingRelay
) -> None:
    data = os.urandom(4 * PART + 12345)  # five parts
    handle = handle_for(ObjectKind.PACK, data)
    backend = via(relay, s3_env)
    key = backend.where.key(handle)
    relay.cut_after_sent = relay.sent + int(2.5 * PART)  # in the middle of the third part
    with pytest.raises(TransientBackendError):
        backend.save(handle, data)
    relay.heal()
    held = parts_held(s3_env, key)
    assert held == 2, "the server kept the parts that arrived whole"
    assert not backend.exists(handle), "nothing half-written is visible"
    assert all(i.handle != handle for i in backend.list(ObjectKind.PACK))
    before = relay.sent
    backend.save(handle, data)
    resent = relay.sent - before
    missing = len(data) - 2 * PART
    assert missing <= resent < missing + 64 * 1024, f"sent {resent} bytes again, not {missing}"
    assert backend.load(handle) == data
    assert uploads(s3_env, key) == [], "the completed upload is no longer listed"
    backend.close()


def test_stale_uploads_with_other_bytes_are_aborted(s3_env: SeaweedS3, relay: CuttingRelay) -> None:
    data = os.urandom(2 * PART + 1)
    handle = handle_for(ObjectKind.PACK, data)
    backend = via(relay, s3_env)
    key = backend.where.key(handle)
    client = s3_env.client()
    for _ in range(2):  # two abandoned uploads whose parts are not our bytes
        upload = client.create_multipart_upload(Bucket=S3_BUCKET, Key=key)["UploadId"]
        client.upload_part(
            Bucket=S3_BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=os.urandom(PART)
        )
    backend.save(handle, data)
    assert backend.load(handle) == data
    assert uploads(s3_env, key) == []
    backend.close()


def test_a_download_cut_midway_is_an_error_then_reads_whole(
    s3_env: SeaweedS3, relay: CuttingRelay
) -> None:
    data = os.urandom(12 * 1024 * 1024)
    handle = handle_for(ObjectKind.PACK, data)
    backend = via(relay, s3_env)
    backend.save(handle, data)
    relay.cut_after_received = relay.received + 4 * 1024 * 1024
    with pytest.raises(TransientBackendError):
        backend.load(handle)
    relay.heal()
    assert backend.load(handle) == data
    assert backend.load(handle, 5, 1000) == data[5:1005]
    backend.close()


def test_a_single_put_cut_midway_leaves_nothing(s3_env: SeaweedS3, relay: CuttingRelay) -> None:
    data = os.urandom(3 * 1024 * 1024)  # below the multipart size: one PUT
    handle = handle_for(ObjectKind.PACK, data)
    backend = via(relay, s3_env)
    relay.cut_after_sent = relay.sent + 1024 * 1024
    with pytest.raises(TransientBackendError):
        backend.save(handle, data)
    relay.heal()
    assert not backend.exists(handle)
    assert list(backend.list(ObjectKind.PACK)) == []
    backend.save(handle, data)
    assert backend.load(handle) == data
    backend.close()


def test_a_listing_that_breaks_off_is_listing_incomplete(
    s3_env: SeaweedS3, relay: CuttingRelay
) -> None:
    backend = via(relay, s3_env, page_size=5)
    for i in range(23):
        data = f"object {i}".encode()
        backend.save(handle_for(ObjectKind.INDEX, data), data)
    start = relay.received
    assert len(list(backend.list(ObjectKind.INDEX))) == 23
    whole = relay.received - start
    relay.cut_after_received = relay.received + whole // 2  # within the third of five pages
    with pytest.raises(ListingIncomplete):
        list(backend.list(ObjectKind.INDEX))
    relay.heal()
    assert len(list(backend.list(ObjectKind.INDEX))) == 23
    backend.close()


def test_the_server_restarted_between_calls(s3_env: SeaweedS3) -> None:
    where = parse_location(s3_env.location(prefix=s3_env.fresh_prefix()))
    backend = S3Backend.open(where)
    handle = Handle(ObjectKind.CONFIG, "config")
    backend.save(handle, b"before")
    s3_env.restart()
    assert backend.load(handle) == b"before"
    data = b"after the restart"
    backend.save(handle_for(ObjectKind.KEY, data), data)
    assert backend.load(handle_for(ObjectKind.KEY, data)) == data
    backend.close()


def test_the_server_killed_mid_upload_then_the_retry_completes(s3_env: SeaweedS3) -> None:
    where = parse_location(s3_env.location(prefix=s3_env.fresh_prefix()))
    backend = direct(where, s3_env)
    data = os.urandom(6 * PART)
    handle = handle_for(ObjectKind.PACK, data)
    failure: list[BaseException] = []

    def save() -> None:
        try:
            backend.save(handle, data)
        except TransientBackendError as exc:
            failure.append(exc)

    saver = threading.Thread(target=save)
    saver.start()
    while not uploads(s3_env, backend.where.key(handle)):
        pass
    s3_env.kill()
    saver.join()
    s3_env.start()
    assert failure, "the save saw the server go"
    assert not backend.exists(handle)
    RetryingBackend(backend).save(handle, data)
    assert backend.load(handle) == data
    assert uploads(s3_env, backend.where.key(handle)) == []
    backend.close()


def test_abandoned_uploads_under_the_prefix_are_aborted(s3_env: SeaweedS3) -> None:
    where = parse_location(s3_env.location(prefix=s3_env.fresh_prefix()))
    backend = S3Backend.open(where)
    key = backend.where.key(handle_for(ObjectKind.PACK, b"never finished"))
    s3_env.client().create_multipart_upload(Bucket=S3_BUCKET, Key=key)
    assert backend.abort_abandoned_uploads() == 0, "a fresh upload may still be running"
    assert len(uploads(s3_env, key)) == 1
    assert backend.abort_abandoned_uploads(older_than=-60) == 1
    assert uploads(s3_env, key) == []
    backend.close()
