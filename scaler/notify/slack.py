"""Chat through a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat, Teams' Slack-compatible
hooks): the default channel kind, for teams without Alertmanager."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from scaler import secrets
from scaler.errors import ConfigError, Problem
from scaler.notify.base import (
    ENV_NAME,
    KIND,
    Channel,
    ChannelConfig,
    Message,
    NotifyContext,
    Severity,
    post_json,
    read_secret,
)
from scaler.units import PositiveSeconds

COLORS = {"info": "#2eb886", "warning": "#daa038", "critical": "#a30200"}


def slack_payload(severity: Severity, title: str, text: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    """A message Slack (and Mattermost, Rocket.Chat, Teams' Slack-compatible hooks) renders: a text line for
    clients that show only that, and a colored attachment with the details."""
    return {
        "text": f"[{severity.upper()}] {title}: {text}",
        "attachments": [
            {
                "color": COLORS[severity],
                "title": title,
                "text": text,
                "fields": [{"title": "severity", "value": severity, "short": True}]
                + [{"title": k, "value": v, "short": True} for k, v in (fields or {}).items()],
            }
        ],
    }


class SlackConfig(ChannelConfig):
    """A Slack-compatible incoming webhook. Its URL embeds a credential: it never goes in the config file."""

    kind: Literal["slack"] = Field("slack", description=KIND)
    url_env: str | None = Field(None, pattern=ENV_NAME, description="Environment variable holding the webhook URL")
    url_file: Path | None = Field(None, description="File holding the webhook URL, relative to the config file")
    timeout: PositiveSeconds = Field(5.0, description="Seconds to wait for the chat service to answer a post")

    @model_validator(mode="after")
    def _one_source(self) -> SlackConfig:
        secrets.one_place(self, "url")
        return self

    def build(self, ctx: NotifyContext) -> SlackChannel:
        url = read_secret(self, "url", ctx)
        if url is None or not url.startswith(("https://", "http://")):
            # Never echo the value: it is a credential.
            raise ConfigError("notify", [Problem("", "the webhook URL must start with https:// or http://")])
        return SlackChannel(self, url)


class SlackChannel(Channel):
    """Posts each message as a colored attachment."""

    def __init__(self, config: SlackConfig, url: str):
        super().__init__(config.name, frozenset(config.severities))
        self.timeout = config.timeout
        self._url = url

    def send(self, message: Message, *, now: float) -> None:
        body = slack_payload(message.severity, message.title, message.text, message.fields)
        post_json(self._url, body, headers={}, timeout=self.timeout, provider="slack")
