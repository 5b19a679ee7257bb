"""Chat notifications from the control loop: Slack-compatible webhooks, routed by severity, sent off the tick."""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
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


@dataclass(frozen=True)
class Message:
    severity: Severity
    title: str
    text: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Channel:
    """One incoming-webhook URL (a secret: it embeds the credential) and the severities it receives."""

    name: str
    url: str = field(repr=False)
    severities: frozenset[str]


class Notifier:
    """Queues messages and posts them on one background thread, so a slow chat service never delays a tick.

    Routing is by severity, as on-call teams route alerts: e.g. critical to the paging channel and the team
    channel, warning to the team channel only. A failed post is logged (by channel name, never by URL) and
    dropped: the audit log, not the chat, is the record.
    """

    def __init__(self, channels: Sequence[Channel], *, timeout: float = 5.0, capacity: int = 1000):
        self.channels = list(channels)
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[tuple[Channel, Message] | None] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None

    def send(self, message: Message) -> None:
        for channel in self.channels:
            if message.severity in channel.severities:
                self._start()
                try:
                    self._queue.put_nowait((channel, message))
                except queue.Full:
                    self.failed += 1
                    log.warning("notification to %s dropped: queue full", channel.name)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="scaler-notify", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._post(*item)
            finally:
                self._queue.task_done()

    def _post(self, channel: Channel, message: Message) -> None:
        body = json.dumps(slack_payload(message.severity, message.title, message.text, message.fields)).encode()
        request = urllib.request.Request(channel.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "scaler"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 (URL is config)
                answer.read()
            self.sent += 1
        except urllib.error.HTTPError as e:
            self.failed += 1
            log.warning("notification to %s failed: HTTP %s", channel.name, e.code)
        except (urllib.error.URLError, OSError) as e:
            self.failed += 1
            reason = getattr(e, "reason", e)
            log.warning("notification to %s failed: %s", channel.name, type(reason).__name__)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued message was posted or dropped; False if `timeout` passed first."""
        if self._thread is None:
            return True
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self.flush(timeout)
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
