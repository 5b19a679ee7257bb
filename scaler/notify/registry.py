"""The flat registry of notification-channel kinds, `kind -> config model`: a new kind is one module (its config
model, whose build(ctx) makes the channel, and the channel) plus one line here."""

from __future__ import annotations

from scaler.notify.alertmanager import AlertmanagerConfig
from scaler.notify.base import ChannelConfig
from scaler.notify.slack import SlackConfig
from scaler.notify.smtp import EmailConfig

DEFAULT = "slack"  # a `notify` entry that names no kind: the chat webhook every entry was before kinds existed

CHANNELS: dict[str, type[ChannelConfig]] = {
    "slack": SlackConfig,
    "alertmanager": AlertmanagerConfig,
    "email": EmailConfig,
}
