"""Email over SMTP (STARTTLS, implicit TLS, or plain on a trusted relay), one mail per message: for teams that
route by severity without Alertmanager."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from scaler.notify.base import (
    ENV_NAME,
    KIND,
    Channel,
    ChannelConfig,
    Message,
    NotifyContext,
    NotifyError,
    iso,
    read_secret,
    tls_context,
)
from scaler.units import PositiveSeconds

PORTS = {"starttls": 587, "tls": 465, "none": 25}


def _address(value: str) -> str:
    """One plain address: a display name is allowed, a line break (which would forge headers) is not."""
    name, addr = parseaddr(value)
    if "\r" in value or "\n" in value or "@" not in addr or addr.startswith("@") or addr.endswith("@"):
        raise ValueError(f"expected an email address, got {value!r}")
    return value.strip()


class EmailConfig(ChannelConfig):
    """An SMTP server and who gets the mail. The password only by reference."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)  # `from` has an alias

    kind: Literal["email"] = Field("email", description=KIND)
    host: str = Field(min_length=1, description="SMTP server host name")
    port: int | None = Field(None, ge=1, le=65535, description="SMTP port (default 587 for starttls, 465 for tls, "
                             "25 for none)")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls: upgrade a plain connection and refuse a server that cannot; tls: TLS "
        "from the first byte (SMTPS); none: plain text, for a relay on a trusted network only")
    ca_file: Path | None = Field(None, description="PEM bundle of the CAs that sign the server's certificate "
                                 "(default: the system's), relative to the config file")
    username: str | None = Field(None, min_length=1, description="Login name; none: send without logging in")
    password_env: str | None = Field(None, pattern=ENV_NAME, description="Environment variable holding the "
                                     "password")
    password_file: Path | None = Field(None, description="File holding the password, relative to the config file")
    sender: str = Field(alias="from", description="The From address, e.g. 'scaler <scaler@example.com>'")
    to: list[str] = Field(min_length=1, max_length=100, description="Recipient addresses")
    subject_prefix: str = Field("[scaler]", max_length=64, description="Put before every subject")
    timeout: PositiveSeconds = Field(10.0, description="Seconds to wait for the server at each step")

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _address(value)

    @field_validator("to")
    @classmethod
    def _recipients(cls, values: list[str]) -> list[str]:
        return [_address(v) for v in values]

    @model_validator(mode="after")
    def _login(self) -> EmailConfig:
        has_password = self.password_env is not None or self.password_file is not None
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("set at most one of password_env or password_file")
        if (self.username is None) != (not has_password):
            raise ValueError("username and a password (password_env or password_file) go together")
        if self.username is not None and self.security == "none":
            raise ValueError("logging in over a plain connection sends the password in the clear: use security "
                             "starttls or tls")
        if self.ca_file is not None and self.security == "none":
            raise ValueError("ca_file applies to starttls and tls only")
        return self

    def build(self, ctx: NotifyContext) -> EmailChannel:
        password = read_secret(self, "password", ctx)
        context = tls_context(self.ca_file, ctx.base_dir) if self.security != "none" else None
        return EmailChannel(self, password=password, context=context)


def subject(message: Message, prefix: str = "") -> str:
    """'[scaler] CRITICAL cannot scale web'; a condition's end: '[scaler] RESOLVED cannot scale web'. On one
    line, whatever the title holds."""
    tag = "RESOLVED" if message.status == "resolved" else message.severity.upper()
    return " ".join(f"{prefix} {tag} {message.title}".split())


def body(message: Message, *, now: float) -> str:
    """The text, then each field and label on its own line."""
    lines = [message.text, ""]
    if message.status is not None:
        since = f" since {iso(message.since)}" if message.since is not None else ""
        lines.append(f"status: {message.status}{since}")
    lines.append(f"severity: {message.routed}")
    lines += [f"{k}: {v}" for k, v in message.fields.items()]
    lines += [f"{k}: {v}" for k, v in message.labels.items() if k not in message.fields and k != "severity"]
    lines.append(f"at: {iso(message.at if message.at is not None else now)}")
    return "\n".join(lines) + "\n"


class EmailChannel(Channel):
    """One SMTP session per message: connect, secure, log in, send, quit."""

    def __init__(self, config: EmailConfig, *, password: str | None, context: ssl.SSLContext | None):
        super().__init__(config.name, frozenset(config.severities))
        self.config = config
        self.port = config.port or PORTS[config.security]
        self._password = password
        self._context = context

    def mail(self, message: Message, *, now: float) -> EmailMessage:
        c = self.config
        mail = EmailMessage()
        mail["From"] = c.sender
        mail["To"] = ", ".join(c.to)
        mail["Subject"] = subject(message, c.subject_prefix)
        mail["Date"] = formatdate(message.at if message.at is not None else now)
        mail["Message-ID"] = make_msgid(domain=parseaddr(c.sender)[1].rpartition("@")[2] or None)
        mail.set_content(body(message, now=now))
        return mail

    def send(self, message: Message, *, now: float) -> None:
        c = self.config
        mail = self.mail(message, now=now)
        try:
            if c.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.host, self.port, timeout=c.timeout, context=self._context)
            else:
                smtp = smtplib.SMTP(c.host, self.port, timeout=c.timeout)
            with smtp:
                if c.security == "starttls":
                    smtp.starttls(context=self._context)  # no STARTTLS offered: SMTPNotSupportedError, never plain
                if c.username is not None:
                    smtp.login(c.username, self._password or "")
                smtp.send_message(mail)
        except smtplib.SMTPResponseException as e:
            # The server's code says what happened; its text may quote what it was sent, so it stays out.
            raise NotifyError(f"SMTP {e.smtp_code} ({type(e).__name__})", provider="smtp", code=str(e.smtp_code),
                              transient=400 <= e.smtp_code < 500) from None
        except smtplib.SMTPRecipientsRefused as e:
            codes = sorted({str(code) for code, _ in e.recipients.values()})
            raise NotifyError(f"SMTP recipients refused ({', '.join(codes)})", provider="smtp", code=codes[0],
                              transient=False) from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as e:
            what = "timeout" if isinstance(e, TimeoutError) else type(e).__name__
            raise NotifyError(what, provider="smtp", code=what) from None
