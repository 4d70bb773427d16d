"""The server's certificate: the user's own, or a self-signed one made on first start.

Clients pin the certificate on first use (its SHA-256 fingerprint, shown by the server at start
and by `cairn server init`); afterwards a different certificate is an error, not a prompt.
The self-signed certificate is its own CA (so a client can verify against exactly it) and names
localhost, the loopback addresses and any host names given.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cairn.core.clock import SYSTEM_CLOCK, Clock, utc_now
from cairn.server.errors import ServerSetupError

WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")  # noqa: S104 (names, not a bind)
"""Listen addresses that name no host: never put in a certificate."""


def ensure_self_signed(
    folder: Path, hosts: Iterable[str], clock: Clock = SYSTEM_CLOCK
) -> tuple[Path, Path, bool]:
    """`folder`'s cert.pem and key.pem; when there is no certificate yet, the folder (0700) and
    a new self-signed one for `hosts` (wildcard listen addresses left out) are made first. The
    third value says whether it was made now."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.exists():
        return cert, key, False
    folder.mkdir(mode=0o700, exist_ok=True)
    make_self_signed(cert, key, [h for h in hosts if h not in WILDCARD_ADDRESSES], clock)
    return cert, key, True


def make_self_signed(cert: Path, key: Path, names: list[str], clock: Clock = SYSTEM_CLOCK) -> None:
    """Write a new EC P-256 key and a 10-year self-signed certificate for `names`."""
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cairn server")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost")]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = utc_now(clock)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(alt))), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(private, hashes.SHA256())
    )
    key_bytes = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_bytes)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def fingerprint(cert: Path) -> str:
    """SHA-256 of the certificate's DER form, as colon-free lowercase hex."""
    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise ServerSetupError(f"cannot read the certificate {cert}: {exc}") from exc
    return hashlib.sha256(loaded.public_bytes(serialization.Encoding.DER)).hexdigest()
