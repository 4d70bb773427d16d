"""The real `cairn` command against a real SeaweedFS S3 gateway: the issue's done-when, the
errors a user meets, resumed multipart uploads and broken connections."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.test_cli_roundtrip import make_tree
from tests.support.clitools import Cairn, manifest
from tests.support.storageservers import S3_BUCKET, SeaweedS3, missing_server, weed_binary


def s3_cairn(seaweed: SeaweedS3, tmp_path: Path, location: str | None = None) -> Cairn:
    return Cairn(location or seaweed.location(prefix=seaweed.fresh_prefix()), cache=tmp_path / "c")


def run_env(seaweed: SeaweedS3, tool: Cairn, **extra: str) -> dict[str, str]:
    return tool.env(**seaweed.env(**extra))


def test_init_backup_restore_check_forget_prune_key(seaweed: SeaweedS3, tmp_path: Path) -> None:
    tool = s3_cairn(seaweed, tmp_path)
    env = run_env(seaweed, tool)
    tool.run("init", env=env)
    src = make_tree(tmp_path)
    before = manifest(src)
    first = tool.run("backup", str(src), "--json", env=env).json()
    assert first["errors"] == []
    (src / "docs" / "notes.txt").write_text("changed\n")
    tool.run("backup", str(src), env=env)
    tool.run("restore", "latest", "--target", str(tmp_path / "out"), env=env)
    restored = manifest(tmp_path / "out" / src.relative_to("/"))
    assert restored == manifest(src)
    tool.run("restore", first["snapshot_id"], "--target", str(tmp_path / "old"), env=env)
    assert manifest(tmp_path / "old" / src.relative_to("/")) == before
    tool.run("check", "--read-data", env=env)
    tool.run("forget", "--keep-last", "1", env=env)
    assert len(tool.run("snapshots", "--json", env=env).json()) == 1
    tool.run("prune", "--max-unused", "0", env=env)
    tool.run("check", "--read-data", env=env)
    new_password = tmp_path / "new-pass"
    new_password.write_text("battery staple\n")
    tool.run("key", "add", "--new-password-file", str(new_password), env=env)
    other = Cairn(tool.repo, password="battery staple", cache=tmp_path / "c2")
    other.run("restore", "latest", "--target", str(tmp_path / "again"), env=run_env(seaweed, other))
    assert manifest(tmp_path / "again" / src.relative_to("/")) == manifest(src)
    keys = seaweed.keys(S3_BUCKET, str(tool.repo).rsplit("/", 1)[1] + "/")
    assert any("/packs/" in key for key in keys) and any(k.endswith("/config") for k in keys)


# ---- errors a user meets: a documented code, no traceback ------------------------------------


def cli_error(tool: Cairn, env: dict[str, str], *args: str) -> tuple[int, str]:
    result = tool.run(*args, check=False, env=env)
    assert result.code != 0
    assert "Traceback" not in result.err
    return result.code, result.err


def test_wrong_keys_are_e037(seaweed: SeaweedS3, tmp_path: Path) -> None:
    tool = s3_cairn(seaweed, tmp_path)
    env = run_env(seaweed, tool, AWS_SECRET_ACCESS_KEY="not the secret")
    code, err = cli_error(tool, env, "init")
    assert code == 37 and "CAIRN-E037" in err
    env = run_env(seaweed, tool, AWS_ACCESS_KEY_ID="nobody-has-this-key")
    code, err = cli_error(tool, env, "init")
    assert code == 37 and "CAIRN-E037" in err


def test_no_credentials_at_all_is_e037(seaweed: SeaweedS3, tmp_path: Path) -> None:
    tool = s3_cairn(seaweed, tmp_path)
    env = {k: v for k, v in tool.env().items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    code, err = cli_error(tool, env, "init")
    assert code == 37 and "AWS_ACCESS_KEY_ID" in err


def test_a_profile_file_gives_the_keys(seaweed: SeaweedS3, tmp_path: Path) -> None:
    tool = s3_cairn(seaweed, tmp_path)
    profiles = tmp_path / "credentials"
    profiles.write_text(
        "[backup]\n"
        f"aws_access_key_id = {seaweed.env()['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {seaweed.env()['AWS_SECRET_ACCESS_KEY']}\n"
    )
    env = {k: v for k, v in tool.env().items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(profiles), AWS_PROFILE="backup")
    tool.run("init", env=env)
    tool.run("snapshots", env=env)


def test_a_missing_bucket_is_e039(seaweed: SeaweedS3, tmp_path: Path) -> None:
    tool = s3_cairn(seaweed, tmp_path, seaweed.location(bucket="no-such-bucket", prefix="x"))
    code, err = cli_error(tool, run_env(seaweed, tool), "init")
    assert code == 39 and "no-such-bucket" in err


def test_access_denied_is_e031(seaweed: SeaweedS3, tmp_path: Path) -> None:
    from tests.support.storageservers import S3_READER_KEY, S3_READER_SECRET

    tool = s3_cairn(seaweed, tmp_path)
    env = run_env(
        seaweed, tool, AWS_ACCESS_KEY_ID=S3_READER_KEY, AWS_SECRET_ACCESS_KEY=S3_READER_SECRET
    )
    code, err = cli_error(tool, env, "init")
    assert code == 31 and "CAIRN-E031" in err


def test_plain_http_to_another_host_is_refused(tmp_path: Path) -> None:
    tool = Cairn("s3:http://192.0.2.1:9000/bucket/repo", cache=tmp_path / "c")
    _code, err = cli_error(tool, tool.env(), "init")
    assert "loopback only" in err and "s3:https://" in err


def test_tls_needs_a_trusted_certificate(seaweed: SeaweedS3, tmp_path: Path) -> None:
    from tests.support.notifyfixtures import make_certificates
    from tests.support.storageservers import CuttingRelay

    certs = make_certificates(tmp_path / "tls")
    front = CuttingRelay(seaweed.port, tls=certs.server_context())
    try:
        location = f"s3:https://127.0.0.1:{front.port}/{S3_BUCKET}/{seaweed.fresh_prefix()}"
        tool = Cairn(location, cache=tmp_path / "c")
        code, err = cli_error(tool, run_env(seaweed, tool), "init")
        assert code == 105 and "CAIRN-E105" in err
        tool.run("init", env=run_env(seaweed, tool, AWS_CA_BUNDLE=str(certs.ca_file)))
        src = tmp_path / "src"
        src.mkdir()
        (src / "f").write_bytes(os.urandom(100_000))
        tool.run("backup", str(src), env=run_env(seaweed, tool, AWS_CA_BUNDLE=str(certs.ca_file)))
    finally:
        front.close()
    plain = Cairn(f"s3:https://127.0.0.1:{seaweed.port}/{S3_BUCKET}/x", cache=tmp_path / "c")
    code, err = cli_error(plain, run_env(seaweed, plain), "init")
    assert code == 105, err


class OddServer:
    """An HTTP server that answers every request with one fixed status, type and body: a web
    page where S3 was expected, or a provider's quota answer."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "code"),
    [
        (200, b"<html><body>Welcome to nginx!</body></html>", "text/html", 106),
        (404, b"<html><body>Not here</body></html>", "text/html", 106),
        (
            507,
            b"<?xml version='1.0'?><Error><Code>QuotaExceeded</Code>"
            b"<Message>Bucket quota exceeded</Message></Error>",
            "application/xml",
            30,
        ),
    ],
    ids=["web-page", "web-404", "quota"],
)
def test_odd_answers_have_their_codes(
    tmp_path: Path, status: int, body: bytes, content_type: str, code: int
) -> None:
    server = OddServer(status, body, content_type)
    try:
        tool = Cairn(f"s3:http://127.0.0.1:{server.port}/bucket/repo", cache=tmp_path / "c")
        env = tool.env(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
        got, err = cli_error(tool, env, "init")
        assert got == code, err
    finally:
        server.close()


def test_a_full_store_fails_the_backup_cleanly(tmp_path: Path) -> None:
    """SeaweedFS with one volume of 1 MiB: full after a few objects. It answers a bare 500
    InternalError, so the client retries and reports E033; no snapshot is left behind, and what
    is stored stays consistent."""
    store = SeaweedS3(tmp_path / "weed", volume_size_mb=1, volumes=1)
    if weed_binary() is None:
        missing_server("SeaweedFS")
    store.start()
    try:
        tool = Cairn(store.location(prefix="full"), cache=tmp_path / "cache")
        env = tool.env(**store.env())
        tool.run("init", env=env)
        src = tmp_path / "src"
        src.mkdir()
        (src / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
        # a short retry budget: a full store stays full, the default 60 s would only be waited out
        failed = tool.run("backup", str(src), check=False, env={**env, "CAIRN_RETRY_FOR": "3s"})
        assert failed.code == 33 and "CAIRN-E033" in failed.err, failed.err
        assert "retried for 3 s" in failed.err and "Traceback" not in failed.err
        assert tool.run("snapshots", "--json", env=env).json() == []
        tool.run("check", env=env)
    finally:
        store.kill()  # its folder is the test's: no graceful stop to wait for


def test_a_backup_cut_off_from_the_store_fails_cleanly_and_the_next_succeeds(
    seaweed: SeaweedS3, tmp_path: Path
) -> None:
    from tests.support.storageservers import CuttingRelay

    relay = CuttingRelay(seaweed.port)
    try:
        location = seaweed.location(prefix=seaweed.fresh_prefix(), port=relay.port)
        tool = Cairn(location, cache=tmp_path / "cache")
        env = run_env(seaweed, tool)
        tool.run("init", env=env)
        src = tmp_path / "src"
        src.mkdir()
        for i in range(4):
            (src / f"f{i}.bin").write_bytes(os.urandom(5 * 1024 * 1024))
        relay.cut_after_sent = relay.sent + 7 * 1024 * 1024  # in the middle of the uploads
        # the relay stays cut: a short retry budget, not the default 60 s, is waited out
        failed = tool.run("backup", str(src), check=False, env={**env, "CAIRN_RETRY_FOR": "3s"})
        assert failed.code == 33 and "CAIRN-E033" in failed.err, failed.err
        assert "retried for 3 s" in failed.err
        relay.heal()
        assert tool.run("snapshots", "--json", env=env).json() == []
        tool.run("backup", str(src), env=env)
        tool.run("restore", "latest", "--target", str(tmp_path / "out"), env=env)
        assert manifest(tmp_path / "out" / src.relative_to("/")) == manifest(src)
        tool.run("check", "--read-data", env=env)
    finally:
        relay.close()
