"""A real SMTP server (aiosmtpd) in the test process on 127.0.0.1: plain, STARTTLS or implicit TLS with a
certificate from a private CA made here, optional login; it records every mail as the server received it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.alertmanager import free_port


@dataclass(frozen=True)
class Pki:
    ca: Path  # what a client trusts (ca_file)
    cert: Path
    key: Path


def private_ca(out: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1 (and localhost) signed by it, valid for a day around now."""
    out.mkdir(parents=True, exist_ok=True)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("scaler test mail CA")).issuer_name(name("scaler test mail CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(out / "ca.pem", out / "server.pem", out / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return pki


@dataclass(frozen=True)
class Received:
    """One mail as the server got it: the envelope, the parsed message, and how the session was secured."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS) when the mail was sent
    login: str | None  # who logged in, None when nobody did


@dataclass
class SmtpServer:
    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    refused_logins: int = 0


class _Handler:
    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.server.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), message, tls, login))
        return "250 OK"


@contextmanager
def smtp_server(workdir: Path, *, security: Literal["none", "starttls", "tls"] = "none",
                users: dict[str, str] | None = None) -> Iterator[tuple[SmtpServer, Pki | None]]:
    """(server, pki) of an SMTP server on a free 127.0.0.1 port; with `users` it offers AUTH (over TLS only)
    and requires it. `pki.ca` is the CA a client must trust for starttls and tls."""
    pki = private_ca(workdir / "pki") if security != "none" else None
    context = None
    if pki is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.cert, pki.key)
    server = SmtpServer("127.0.0.1", free_port())

    def authenticate(srv: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and users is not None and \
            users.get(data.login.decode()) == data.password.decode()
        if not ok:
            server.refused_logins += 1
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    options: dict[str, Any] = {}
    if security == "starttls":
        options.update(tls_context=context, require_starttls=True)
    if users is not None:
        # aiosmtpd counts only STARTTLS as TLS; with implicit TLS the whole session is encrypted anyway
        options.update(authenticator=authenticate, auth_required=True, auth_require_tls=security == "starttls")
    controller = Controller(_Handler(server), hostname=server.host, port=server.port,
                            ssl_context=context if security == "tls" else None, server_hostname="127.0.0.1",
                            ready_timeout=10, **options)
    controller.start()
    try:
        yield server, pki
    finally:
        controller.stop()
