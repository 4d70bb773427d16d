"""E-mail by SMTP (design 15.6): STARTTLS or implicit TLS with a verified certificate, AUTH, plain
text. Plain SMTP is allowed to a loopback address only (a local relay such as Postfix).

smtplib's exceptions are translated once, here, into NotifyError subclasses that say what to do.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from cairn.notify.credentials import is_loopback, read_secret, tls_context
from cairn.notify.errors import (
    NotifyAuthFailed,
    NotifyError,
    NotifyRejected,
    NotifyTlsError,
    NotifyUnreachable,
)
from cairn.notify.message import EmailSpec, Event, EventKind

SECURITY = ("starttls", "tls", "none")


class EmailChannel:
    """Sends each event as one plain-text e-mail to the spec's recipients."""

    def __init__(self, spec: EmailSpec) -> None:
        if spec.security not in SECURITY:
            raise NotifyError(f"unknown e-mail security {spec.security!r}; one of {SECURITY}")
        self._spec = spec

    @property
    def on(self) -> frozenset[EventKind]:
        """The kinds of event this channel carries."""
        return self._spec.on

    @property
    def name(self) -> str:
        """For log lines: the recipients and the mail server."""
        spec = self._spec
        return f"e-mail to {', '.join(spec.recipients)} via {spec.smtp_host}:{spec.smtp_port}"

    def send(self, event: Event) -> None:
        message = compose(self._spec, event)
        where = f"{self._spec.smtp_host}:{self._spec.smtp_port}"
        try:
            with self._connect() as smtp:
                self._login(smtp)
                refused = smtp.send_message(message)
        except NotifyError:
            raise
        except OSError as exc:  # smtplib's exceptions are OSErrors too
            raise _translate(exc, where, self._spec.user) from exc
        if refused:
            raise NotifyRejected(
                f"the mail server {where} refused {', '.join(sorted(refused))} "
                "(the other recipients got the message)"
            )

    def _connect(self) -> smtplib.SMTP:
        spec = self._spec
        if spec.security == "tls":
            return smtplib.SMTP_SSL(
                spec.smtp_host, spec.smtp_port, timeout=spec.timeout_s, context=self._tls()
            )
        if spec.security == "none" and not is_loopback(spec.smtp_host):
            raise NotifyError(
                f'security "none" sends mail in clear text, so it is allowed to a loopback '
                f'address only, not {spec.smtp_host}; use "starttls" or "tls"'
            )
        smtp = smtplib.SMTP(spec.smtp_host, spec.smtp_port, timeout=spec.timeout_s)
        if spec.security == "starttls":
            self._starttls(smtp)
        return smtp

    def _starttls(self, smtp: smtplib.SMTP) -> None:
        """Upgrade to TLS, or refuse: never fall back to clear text (a stripped STARTTLS offer is
        exactly what an attacker in the middle would show)."""
        try:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise NotifyTlsError(
                    f"the mail server {self._spec.smtp_host}:{self._spec.smtp_port} does not "
                    'offer STARTTLS; refusing to send in clear text (use security "tls" if it '
                    "speaks TLS from the start)"
                )
            smtp.starttls(context=self._tls())
            smtp.ehlo()
        except BaseException:
            smtp.close()
            raise

    def _tls(self) -> ssl.SSLContext:
        return tls_context(self._spec.ca_file)

    def _login(self, smtp: smtplib.SMTP) -> None:
        spec = self._spec
        if spec.user is None:
            return
        if spec.password_file is None:
            raise NotifyError(f"e-mail user {spec.user!r} is set without a password_file")
        password = read_secret(spec.password_file, "SMTP password").decode()
        if not smtp.has_extn("auth"):
            smtp.ehlo_or_helo_if_needed()
        if not smtp.has_extn("auth"):
            raise NotifyAuthFailed(
                f"the mail server {spec.smtp_host}:{spec.smtp_port} offers no AUTH; "
                "remove `user` or use a server that authenticates"
            )
        smtp.login(spec.user, password)


def compose(spec: EmailSpec, event: Event) -> EmailMessage:
    """The e-mail for `event`: plain text (UTF-8), with Date and Message-ID, marked as sent by a
    machine (RFC 3834) so that auto-responders stay quiet."""
    message = EmailMessage()
    message["Subject"] = event.subject
    message["From"] = spec.sender
    message["To"] = ", ".join(spec.recipients)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=_domain(spec.sender))
    message["Auto-Submitted"] = "auto-generated"
    message["X-Cairn-Event"] = event.kind.value
    message.set_content(event.text)
    return message


def _domain(address: str) -> str:
    domain = address.rpartition("@")[2].strip("<> ")
    return domain or "cairn.invalid"


def _translate(exc: OSError, where: str, user: str | None) -> NotifyError:
    """The NotifyError that says what to do about `exc` (most specific classes first)."""
    if isinstance(exc, ssl.SSLError):
        return NotifyTlsError(f"TLS with the mail server {where} failed: {exc}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return NotifyAuthFailed(f"the mail server {where} refused user {user!r}: {_said(exc)}")
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPServerDisconnected):
        return NotifyUnreachable(f"the mail server {where} hung up: {exc}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return NotifyRejected(f"the mail server {where} refused every recipient: {exc.recipients}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return NotifyRejected(f"the mail server {where} answered {_said(exc)}")
    if isinstance(exc, smtplib.SMTPException):
        return NotifyError(f"sending mail through {where} failed: {exc}")
    return NotifyUnreachable(f"cannot reach the mail server {where}: {exc}")


def _said(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
    return f"{exc.smtp_code} {text}".strip()
