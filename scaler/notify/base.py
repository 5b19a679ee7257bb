"""The notification-channel interface: a Message, a Channel that routes by severity and delivers it, and the
config base every channel kind shares (name, severities, secrets read by scaler.secrets)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from scaler import secrets
from scaler.errors import ConfigError, Problem, ProviderError
from scaler.registry import ProviderConfig
from scaler.yamlio import Strict

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
Status = Literal["firing", "resolved"]
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
KIND = "Which channel: one of the keys of scaler.notify.registry.CHANNELS (slack when left out)"


@dataclass(frozen=True)
class Message:
    """One thing to tell people.

    A notice (`status` None) is said once: "scaled web 2 -> 4". A condition starts (`firing`) and ends
    (`resolved`); its `labels` name it the same way both times (alertname, severity, policy, target, ...), so an
    alert manager pairs the two and resolves what it paged for.
    """

    severity: Severity  # how it reads (a chat message's color); a condition's end reads as info
    title: str
    text: str
    fields: dict[str, str] = field(default_factory=dict)  # shown next to the text
    status: Status | None = None
    labels: dict[str, str] = field(default_factory=dict)  # a condition's identity; labels["severity"] is its own
    since: float | None = None  # unix seconds the condition began
    at: float | None = None  # unix seconds this was said (the tick's time)

    @property
    def routed(self) -> Severity:
        """The severity channels route by. A condition's end goes where its start went: a critical health rule
        resolving reads as info, but the channels that heard it fire hear it resolve."""
        own = self.labels.get("severity")
        if self.status is not None and own in SEVERITIES:
            return own  # type: ignore[return-value]
        return self.severity

    def with_labels(self, extra: Mapping[str, str]) -> Message:
        """This message with `extra` labels added; its own labels win."""
        return replace(self, labels={**extra, **self.labels})


class NotifyError(ProviderError):
    """A message was not delivered. The text names the channel's answer (an HTTP status, an SMTP code, the kind
    of connection failure), never a URL or a credential. `transient`: sending it again may work."""

    def __init__(self, message: str, *, provider: str, code: str = "", transient: bool = True):
        super().__init__(message, provider=provider, code=code)
        self.transient = transient


class Channel(ABC):
    """Where messages go: one webhook, one Alertmanager, one mailbox. Delivery happens on the notifier's thread,
    never the tick's; an error is a NotifyError and costs that message on that channel only."""

    def __init__(self, name: str, severities: frozenset[str]):
        self.name = name
        self.severities = severities

    def __repr__(self) -> str:  # never a URL or a secret
        return f"{type(self).__name__}(name={self.name!r}, severities={sorted(self.severities)})"

    def wants(self, message: Message) -> bool:
        return message.routed in self.severities

    @abstractmethod
    def send(self, message: Message, *, now: float) -> None:
        """Deliver one message; `now` (unix seconds) stamps what the message itself does not."""

    def due(self, now: float) -> float | None:
        """Seconds until `resend` should run (0: now), or None when this channel has nothing to repeat."""
        return None

    def resend(self, now: float) -> None:
        """Repeat what the receiver must keep hearing (Alertmanager: the alerts still firing); most channels
        have nothing to repeat."""
        return None


def iso(t: float) -> str:
    """Unix seconds as RFC 3339 in UTC ('2025-03-01T12:00:00.000Z'), as Alertmanager's API and mail read them."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class NotifyContext:
    """What building a channel needs besides its own config: where relative secret files are."""

    base_dir: Path | None = None
    environ: Mapping[str, str] | None = None  # default: os.environ


class ChannelConfig(ProviderConfig):
    """Base of every channel kind's config: a name for logs and the severities it receives."""

    name: str = Field(min_length=1, max_length=128, description="Channel name for logs (a URL, token or password "
                      "is never logged)")
    severities: list[str] = Field(["warning", "critical"], description="Severities this channel receives: some of "
                                  "info, warning, critical. A condition's end goes wherever its start went")

    @field_validator("severities")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if v not in SEVERITIES]
        if bad or not values:
            raise ValueError(f"expected some of info, warning, critical; got {values}")
        return values

    def build(self, ctx: NotifyContext) -> Channel:
        """The channel, with its secrets read (ConfigError naming the field when one cannot be); connects to
        nothing."""
        return super().build(ctx)


class BasicAuth(Strict):
    """HTTP basic auth; the password comes from the environment or a file, never the config itself."""

    username: str = Field(min_length=1, description="User name")
    password_env: str | None = Field(None, pattern=ENV_NAME, description="Environment variable holding the "
                                     "password")
    password_file: Path | None = Field(None, description="File holding the password, relative to the config file")

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        secrets.one_place(self, "password")
        return self


def read_secret(section: Any, name: str, ctx: NotifyContext, *, where: str = "") -> str | None:
    """The secret `section.<name>_env` or `section.<name>_file` points at, or None when it names neither. A
    secret that cannot be read is a ConfigError whose one problem names the field (under `where`)."""
    env, file = getattr(section, f"{name}_env"), getattr(section, f"{name}_file")
    if env is None and file is None:
        return None
    try:
        return secrets.read(env=env, file=file, base=ctx.base_dir, environ=ctx.environ)
    except secrets.SecretUnavailable as e:
        field_name = f"{name}_env" if env is not None else f"{name}_file"
        raise ConfigError("notify", [Problem(f"{where}{field_name}", str(e))]) from None


def tls_context(ca_file: Path | None, base: Path | None) -> ssl.SSLContext:
    """Certificate-verifying TLS, trusting `ca_file` (relative to `base`) instead of the system CAs when set."""
    if ca_file is None:
        return ssl.create_default_context()
    path = ca_file if ca_file.is_absolute() or base is None else base / ca_file
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("notify", [Problem("ca_file", f"cannot load {path}: {getattr(e, 'strerror', None) or e}")]
                          ) from None


def post_json(url: str, body: Any, *, headers: Mapping[str, str], timeout: float, provider: str,
              context: ssl.SSLContext | None = None) -> None:
    """POST `body` as JSON; a refusal or failure is a NotifyError naming the status or the kind of failure, never
    the URL (a webhook URL is itself a credential) nor the headers."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "scaler", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:  # noqa: S310 (config URL)
            answer.read()
    except urllib.error.HTTPError as e:
        # a 4xx other than a timeout or throttling will be refused again the same way
        again = e.code in (408, 429) or e.code >= 500
        raise NotifyError(f"HTTP {e.code}", provider=provider, code=str(e.code), transient=again) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        what = "timeout" if isinstance(reason, TimeoutError) else type(reason).__name__
        raise NotifyError(what, provider=provider, code=what) from None

