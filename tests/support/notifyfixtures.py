"""Real servers for the notification tests, on loopback: an SMTP server (aiosmtpd) with
STARTTLS and AUTH, or implicit TLS, or neither; an HTTPS/HTTP webhook receiver (http.server in a
thread); and a private CA whose certificates they present, trusted by the client through
`ca_file`. What the servers received is read back by the tests."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.serverfixture import free_port

SMTP_USER = "cairn"
SMTP_PASSWORD = "smtp secret"


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    """The private CA (PEM) the clients trust."""
    cert_file: Path
    key_file: Path
    """The servers' certificate (for 127.0.0.1 and localhost) and key."""

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificates(folder: Path, *, expired: bool = False) -> Certificates:
    """A CA and a server certificate it signed (made with `cryptography`)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cairn test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    end = now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    certs = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    certs.ca_file.write_bytes(ca.public_bytes(pem))
    certs.cert_file.write_bytes(cert.public_bytes(pem))
    certs.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certs


@dataclass
class Received:
    """One message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated_as: str | None
    tls: bool


@dataclass
class Inbox:
    """The aiosmtpd handler: keeps every message it is given."""

    messages: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        user = session.auth_data.login.decode() if session.auth_data else None
        self.messages.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                message,
                user,
                session.ssl is not None
                or _transport(server).get_extra_info("ssl_object") is not None,
            )
        )
        self.arrived.set()
        return "250 OK"


def _transport(server: SMTP) -> Any:
    """The connection the server answers on (set for as long as a message is being handled)."""
    assert server.transport is not None
    return server.transport


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@dataclass
class MailServer:
    port: int
    inbox: Inbox


@contextmanager
def smtp_server(
    certs: Certificates | None, mode: str = "starttls", *, auth: bool = True
) -> Iterator[MailServer]:
    """An SMTP server on 127.0.0.1: mode "starttls" (offers STARTTLS, requires it before AUTH),
    "tls" (implicit TLS from the first byte) or "plain" (offers no STARTTLS at all)."""
    inbox = Inbox()
    port = free_port()
    kwargs: dict[str, Any] = {}
    if auth:
        kwargs.update(authenticator=_authenticator, auth_required=True)
    if mode == "starttls":
        assert certs is not None
        kwargs.update(tls_context=certs.server_context(), require_starttls=True)
    elif mode == "tls":
        assert certs is not None
        # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS from the start,
        # so AUTH is offered without it (and not required, which aiosmtpd warns about).
        kwargs.update(
            ssl_context=certs.server_context(), auth_require_tls=False, auth_required=False
        )
    elif auth:
        kwargs.update(auth_require_tls=False)
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield MailServer(port, inbox)
    finally:
        controller.stop()


def email_notify_file(folder: Path, mail: MailServer, certs: Certificates, extra: str = "") -> Path:
    """A `--notify` TOML file in `folder` with one e-mail channel to `mail` over STARTTLS, logged
    in with the test user (its password in a file beside it); `extra` is appended."""
    secret = folder / "smtp.pass"
    secret.write_text(SMTP_PASSWORD + "\n")
    notify = folder / "notify.toml"
    notify.write_text(
        "[[notify]]\n"
        f'kind = "email"\nsmtp = "127.0.0.1:{mail.port}"\nsecurity = "starttls"\n'
        f'user = "{SMTP_USER}"\npassword_file = "{secret}"\nca_file = "{certs.ca_file}"\n'
        'from = "cairn@backup.example"\nto = ["ops@example.org"]\n' + extra
    )
    return notify


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    url: str
    hits: list[Hit]
    status: list[int]
    """The status the next requests are answered with (the last one repeats)."""


@contextmanager
def webhook_server(certs: Certificates | None) -> Iterator[WebhookServer]:
    """An HTTP(S) server on 127.0.0.1 that records every POST and answers 204 (or as told)."""
    hits: list[Hit] = []
    status = [204]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            code = status.pop(0) if len(status) > 1 else status[0]
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if certs is not None:
        httpd.socket = certs.server_context().wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if certs is not None else "http"
    try:
        yield WebhookServer(
            f"{scheme}://127.0.0.1:{httpd.server_address[1]}/hook/T0K3N", hits, status
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
