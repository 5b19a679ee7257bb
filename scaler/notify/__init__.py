"""Notifications: messages from the control loop, routed by severity to channels of several kinds (a chat
webhook, Alertmanager, email) and delivered off the tick.

`base` holds the Message and the Channel interface, `notifier` the queue and its thread, one module per kind
(`slack`, `alertmanager`, `smtp`) its config model and channel, and `registry` the kinds.
"""

from scaler.notify.base import SEVERITIES, Channel, ChannelConfig, Message, NotifyContext, NotifyError, Severity
from scaler.notify.notifier import Notifier
from scaler.notify.slack import slack_payload

__all__ = ["SEVERITIES", "Channel", "ChannelConfig", "Message", "Notifier", "NotifyContext", "NotifyError",
           "Severity", "slack_payload"]
