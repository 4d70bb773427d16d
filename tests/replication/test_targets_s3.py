"""`cairn server target add` against SeaweedFS's S3 gateway: a bucket prefix with Unicode in
it is checked (the probe's object written and deleted) and saved; a missing bucket (E039) and
wrong keys (E037) pass through with their codes and nothing is saved (design 17.10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.server.app import open_services
from cairn.server.context import Settings
from tests.replication.test_targets_cli import target_cmd, target_json
from tests.support.storageservers import SeaweedS3

pytestmark = pytest.mark.required("an S3 server (SeaweedFS)")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    open_services(Settings(data=folder))
    return folder


def test_an_s3_target_is_checked_and_saved(seaweed: SeaweedS3, data: Path) -> None:
    prefix = f"{seaweed.fresh_prefix()}/Zürich ☃"
    location = seaweed.location(prefix=prefix)
    result = target_cmd(data, "add", "s3-eu", location, "--json", env=seaweed.env()).json()
    assert [s["step"] for s in result["check"] if s["ok"]] == ["open", "connect", "probe"]
    assert target_json(data, "list")[0]["location"] == location
    assert seaweed.keys(prefix=prefix) == [], "the probe deleted what it wrote"


def test_a_missing_bucket_is_e039_and_wrong_keys_e037(seaweed: SeaweedS3, data: Path) -> None:
    missing = seaweed.location(bucket="no-such-bucket", prefix="x")
    result = target_cmd(data, "add", "s3-eu", missing, check=False, env=seaweed.env())
    assert result.code == 39 and "CAIRN-E039" in result.err, result.err
    wrong = seaweed.env(AWS_SECRET_ACCESS_KEY="not the secret")
    result = target_cmd(data, "add", "s3-eu", seaweed.location(), check=False, env=wrong)
    assert result.code == 37 and "CAIRN-E037" in result.err, result.err
    assert target_json(data, "list") == []


def test_an_s3_target_logs_in_with_its_own_credentials_file(
    seaweed: SeaweedS3, data: Path, tmp_path: Path
) -> None:
    """Design 17.9: the file's keys, not the environment's, for this target alone."""
    creds = tmp_path / "s3.creds"
    creds.write_text("".join(f"{name}={value}\n" for name, value in seaweed.env().items()))
    creds.chmod(0o600)
    location = seaweed.location(prefix=seaweed.fresh_prefix())
    added = target_json(data, "add", "s3-own", location, "--credentials", str(creds))
    assert added["target"]["credentials"] == str(creds), "no AWS_* in the command's environment"
    creds.write_text(
        "".join(f"{k}={v}\n" for k, v in seaweed.env(AWS_SECRET_ACCESS_KEY="rotated").items())
    )
    result = target_cmd(data, "test", "s3-own", check=False, env=seaweed.env())
    assert result.code == 37 and "CAIRN-E037" in result.err, "the file wins over the environment"
