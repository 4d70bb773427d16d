"""Webhooks against a real HTTP(S) server on loopback: the JSON arrives, signed with HMAC-SHA256
when a secret is set; failures are NotifyErrors that say why."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from cairn.notify.errors import NotifyError, NotifyRejected, NotifyTlsError, NotifyUnreachable
from cairn.notify.message import Event, EventKind, WebhookSpec
from cairn.notify.webhook import WebhookChannel
from tests.support.notifyfixtures import Certificates, make_certificates, webhook_server
from tests.support.serverfixture import free_port

EVENT = Event(
    EventKind.SILENCE,
    "pc-7",
    "home",
    "[cairn] SILENT: no backup of home on pc-7 for 26 h",
    "No successful run for 26 h.",
    {"last_success": 1_772_000_000.0, "silent_since": 1_772_000_000.0},
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("pki"))


def test_the_event_arrives_as_signed_json_over_verified_tls(
    certs: Certificates, tmp_path: Path
) -> None:
    secret = tmp_path / "webhook.secret"
    secret.write_text("s3cret-shared\n")
    with webhook_server(certs) as server:
        spec = WebhookSpec(server.url, str(secret), ca_file=str(certs.ca_file), timeout_s=10)
        WebhookChannel(spec).send(EVENT)
    [hit] = server.hits
    assert hit.path == "/hook/T0K3N"
    assert hit.headers["content-type"] == "application/json"
    expected = hmac.new(b"s3cret-shared", hit.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hit.headers["x-cairn-signature"], f"sha256={expected}")
    document = json.loads(hit.body)
    assert document["kind"] == "silence"
    assert (document["host"], document["job"]) == ("pc-7", "home")
    assert document["subject"] == EVENT.subject
    assert document["text"] == EVENT.text
    assert document["details"]["last_success"] == 1_772_000_000.0


def test_without_a_secret_there_is_no_signature(certs: Certificates) -> None:
    with webhook_server(None) as server:
        WebhookChannel(WebhookSpec(server.url)).send(EVENT)
    [hit] = server.hits
    assert "x-cairn-signature" not in hit.headers
    assert json.loads(hit.body)["kind"] == "silence"


def test_an_error_answer_is_rejected_with_the_status(certs: Certificates) -> None:
    with webhook_server(certs) as server:
        server.status[:] = [500]
        channel = WebhookChannel(WebhookSpec(server.url, ca_file=str(certs.ca_file)))
        with pytest.raises(NotifyRejected, match="answered 500"):
            channel.send(EVENT)


def test_an_untrusted_certificate_is_refused(certs: Certificates) -> None:
    with webhook_server(certs) as server:
        with pytest.raises(NotifyTlsError):
            WebhookChannel(WebhookSpec(server.url, timeout_s=10)).send(EVENT)
        assert server.hits == []


def test_a_webhook_that_is_down_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(NotifyUnreachable, match="cannot reach the webhook"):
        WebhookChannel(WebhookSpec(url, timeout_s=5)).send(EVENT)


def test_plain_http_is_for_loopback_only_and_a_missing_secret_file_is_an_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(NotifyError, match="plain HTTP"):
        WebhookChannel(WebhookSpec("http://hooks.example/x"))
    with pytest.raises(NotifyError, match="not an https"):
        WebhookChannel(WebhookSpec("ftp://hooks.example/x"))
    with webhook_server(None) as server:
        spec = WebhookSpec(server.url, secret_file=str(tmp_path / "missing"))
        with pytest.raises(NotifyError, match="webhook secret file"):
            WebhookChannel(spec).send(EVENT)
        assert server.hits == []
