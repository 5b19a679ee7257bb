"""Alerts to Alertmanager (`POST /api/v2/alerts`), whose routes, silences, inhibition and receivers (email,
PagerDuty, Opsgenie, chat) then do the paging. Conditions only: each firing and resolving message is one alert,
named by the same labels both times, and re-posted while it fires and for a while after it resolves, as
Prometheus does."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from scaler.notify.base import (
    ENV_NAME,
    KIND,
    BasicAuth,
    Channel,
    ChannelConfig,
    Message,
    NotifyContext,
    iso,
    post_json,
    read_secret,
    tls_context,
)
from scaler.units import PositiveSeconds, api_base

LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]
Key = tuple[tuple[str, str], ...]
HOLD = 4  # a posted firing alert holds for this many resend intervals (Prometheus: 4 x its resend delay)
BATCH = 500  # alerts per POST when re-sending


class AlertmanagerConfig(ChannelConfig):
    """An Alertmanager (or a compatible API: Mimir's, Grafana's). Credentials only by reference."""

    kind: Literal["alertmanager"] = Field("alertmanager", description=KIND)
    url: str = Field(description="Base URL, without /api/v2, e.g. http://alertmanager:9093")
    bearer_token_env: str | None = Field(None, pattern=ENV_NAME, description="Environment variable holding a "
                                         "bearer token")
    bearer_token_file: Path | None = Field(None, description="File holding a bearer token, relative to the config "
                                           "file")
    basic_auth: BasicAuth | None = Field(None, description="HTTP basic auth instead of a bearer token")
    ca_file: Path | None = Field(None, description="PEM bundle of the CAs that sign Alertmanager's certificate "
                                 "(https only; default: the system's)")
    timeout: PositiveSeconds = Field(5.0, description="Seconds to wait for Alertmanager to answer a post")
    resend: PositiveSeconds = Field(60.0, description="Seconds between re-posts of the alerts still firing. Each "
                                    "post holds for 4 times this, so an alert stays firing while scaler runs and "
                                    "Alertmanager resolves it by itself within 4 x resend of scaler stopping")
    labels: dict[LabelName, str] = Field(default_factory=dict, description="Labels added to every alert, e.g. "
                                         "{cluster: prod}; an alert's own labels win")
    generator_url: str | None = Field(None, pattern=r"^https?://", description="Link each alert carries back to "
                                      "its source, e.g. a dashboard")

    @field_validator("url")
    @classmethod
    def _api_base(cls, url: str) -> str:
        return api_base(url)

    @model_validator(mode="after")
    def _consistent(self) -> AlertmanagerConfig:
        ways = [n for n in ("bearer_token_env", "bearer_token_file", "basic_auth") if getattr(self, n) is not None]
        if len(ways) > 1:
            raise ValueError(f"set at most one of bearer_token_env, bearer_token_file, basic_auth (got "
                             f"{', '.join(ways)})")
        if self.ca_file is not None and not self.url.startswith("https://"):
            raise ValueError("ca_file only applies to an https:// URL")
        return self

    def build(self, ctx: NotifyContext) -> AlertmanagerChannel:
        headers: dict[str, str] = {}
        if (token := read_secret(self, "bearer_token", ctx)) is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif self.basic_auth is not None:
            password = read_secret(self.basic_auth, "password", ctx, where="basic_auth.") or ""
            pair = f"{self.basic_auth.username}:{password}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        context = tls_context(self.ca_file, ctx.base_dir) if self.url.startswith("https://") else None
        return AlertmanagerChannel(self, headers=headers, context=context)


def alert(message: Message, *, now: float, hold: float, labels: Mapping[str, str] | None = None,
          generator_url: str | None = None) -> dict[str, Any]:
    """The API's alert for a condition's message. Firing: it holds until now + hold (re-posting extends it);
    resolved: it ended when the message was said. Its labels are the same for both, so the second resolves
    the first: `labels` (the channel's), then the message's own, which win."""
    own = {**(labels or {}), **message.labels}
    own.setdefault("alertname", "scaler")
    own.setdefault("severity", message.routed)
    said = message.at if message.at is not None else now
    annotations = {"summary": message.title, "description": message.text}
    annotations.update({k: v for k, v in message.fields.items() if k.isidentifier() and k not in annotations})
    body: dict[str, Any] = {
        "labels": own,
        "annotations": annotations,
        "startsAt": iso(message.since if message.since is not None else said),
        "endsAt": iso(said) if message.status == "resolved" else iso(now + hold),
    }
    if generator_url:
        body["generatorURL"] = generator_url
    return body


def identity(body: Mapping[str, Any]) -> Key:
    """What Alertmanager tells alerts apart by: the whole label set."""
    return tuple(sorted(body["labels"].items()))


class AlertmanagerChannel(Channel):
    """Posts each condition's start and end as an alert, and every `resend` seconds posts again the alerts still
    firing (with a new hold) and those resolved within the last hold (unchanged), as Prometheus does.

    Re-posting a resolve is what makes it stick: Alertmanager merges an alert whose end still lies ahead of its
    own clock (scaler's clock a little ahead, a resolve sent within a second of the start) with the firing one,
    whose later end wins, and a resolve whose post failed would otherwise wait for that end. A firing alert whose
    post failed goes out again with the next re-post.
    """

    def __init__(self, config: AlertmanagerConfig, *, headers: Mapping[str, str], context: Any = None):
        super().__init__(config.name, frozenset(config.severities))
        self.url = f"{config.url}/api/v2/alerts"
        self.timeout = config.timeout
        self.every = config.resend
        self.hold = HOLD * config.resend
        self.labels = dict(config.labels)
        self.generator_url = config.generator_url
        self._headers = dict(headers)  # holds the credential
        self._context = context
        # By identity, touched on the notifier thread only: what fires, and what resolved with until when to
        # repeat it (the last firing post's hold: after that Alertmanager has resolved it anyway).
        self._firing: dict[Key, Message] = {}
        self._resolved: dict[Key, tuple[dict[str, Any], float]] = {}
        self._due_at: float | None = None

    @property
    def firing(self) -> int:
        return len(self._firing)

    def wants(self, message: Message) -> bool:
        # A notice ("scaled web 2 -> 4") has no end for Alertmanager to pair with: chat and email say those.
        return message.status is not None and super().wants(message)

    def alert(self, message: Message, now: float) -> dict[str, Any]:
        return alert(message, now=now, hold=self.hold, labels=self.labels, generator_url=self.generator_url)

    def send(self, message: Message, *, now: float) -> None:
        body = self.alert(message, now)
        key = identity(body)
        # The sets change before the post, so what this post loses the next re-post sends.
        if message.status == "firing":
            self._firing[key] = message
            self._resolved.pop(key, None)
        else:
            self._firing.pop(key, None)
            self._resolved[key] = (body, now + self.hold)
        if self._due_at is None:
            self._due_at = now + self.every
        self._post([body])

    def due(self, now: float) -> float | None:
        if self._due_at is None:
            return None
        return max(0.0, self._due_at - now)

    def resend(self, now: float) -> None:
        self._resolved = {k: (b, until) for k, (b, until) in self._resolved.items() if until > now}
        bodies = [self.alert(m, now) for m in self._firing.values()] + [b for b, _ in self._resolved.values()]
        self._due_at = now + self.every if self._firing or self._resolved else None
        for i in range(0, len(bodies), BATCH):
            self._post(bodies[i:i + BATCH])

    def _post(self, bodies: list[dict[str, Any]]) -> None:
        post_json(self.url, bodies, headers=self._headers, timeout=self.timeout, provider="alertmanager",
                  context=self._context)
