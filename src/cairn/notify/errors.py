"""What goes wrong when telling people, one class per thing to do about it.

```
NotifyError          CAIRN-E100  unusable settings (a secret file, "none" off loopback)
├── NotifyUnreachable    E101  the mail server or webhook did not answer (refused, timeout)
├── NotifyTlsError       E102  no STARTTLS offered, or the certificate did not verify
├── NotifyAuthFailed     E103  the mail server refused the user and password
└── NotifyRejected       E104  the server answered, but refused the message (a recipient, a 4xx/5xx)
```

A channel raises these; the Alerter logs them with their code and never fails a job because of
them. The codes are documented in docs/errors.md beside the CLI's.
"""

from __future__ import annotations

from typing import ClassVar

from cairn.core.errors import CairnError


class NotifyError(CairnError):
    """A notification could not be sent; the message says where and why."""

    code: ClassVar[str] = "CAIRN-E100"


class NotifyUnreachable(NotifyError):
    """The mail server or webhook did not answer; retried with the next alert."""

    code: ClassVar[str] = "CAIRN-E101"


class NotifyTlsError(NotifyError):
    """TLS could not be set up: STARTTLS not offered, or a certificate that did not verify."""

    code: ClassVar[str] = "CAIRN-E102"


class NotifyAuthFailed(NotifyError):
    """The mail server did not accept the user and password."""

    code: ClassVar[str] = "CAIRN-E103"


class NotifyRejected(NotifyError):
    """The server answered but refused the message (a recipient or sender, an HTTP error)."""

    code: ClassVar[str] = "CAIRN-E104"
