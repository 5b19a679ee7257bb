"""The notifier: routes each message to the channels that want its severity and delivers it on one background
thread, so a slow chat service, Alertmanager or mail server never delays a tick."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence

from scaler.clock import Clock, SystemClock
from scaler.notify.base import Channel, Message, NotifyError

log = logging.getLogger(__name__)

Labeler = Callable[[Mapping[str, str]], Mapping[str, str]]


class Notifier:
    """Queues (channel, message) pairs and delivers them in order on one thread; between messages it lets each
    channel repeat what must be repeated (Alertmanager's firing alerts).

    Routing is by severity, as on-call teams route alerts: e.g. critical to chat, email and the pager, warning
    to chat and email. A failed delivery is logged by channel name (never a URL or a credential) and dropped:
    the audit log, not the chat, is the record. A full queue (`capacity`) drops the newest message, counted.
    `labels(message.labels)` adds labels to each condition's message before routing (e.g. the runbook it
    starts); it must depend on the labels only, so a condition's start and end carry the same ones.
    """

    def __init__(self, channels: Sequence[Channel], *, clock: Clock | None = None, capacity: int = 1000,
                 labels: Labeler | None = None):
        self.channels = list(channels)
        self.clock = clock or SystemClock()
        self.labels = labels
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[tuple[Channel, Message] | None] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def send(self, message: Message) -> None:
        if self.labels is not None and message.status is not None and message.labels:
            message = message.with_labels(self.labels(message.labels))
        for channel in self.channels:
            if channel.wants(message):
                self._start()
                try:
                    self._queue.put_nowait((channel, message))
                except queue.Full:
                    self.failed += 1
                    log.warning("notification to %s dropped: queue full", channel.name)

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="scaler-notify", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle())
            except queue.Empty:
                self._repeat()
                continue
            try:
                if item is None:
                    return
                channel, message = item
                if self._deliver(channel, lambda c=channel, m=message: c.send(m, now=self.clock.now())):
                    self.sent += 1
                else:
                    self.failed += 1
            finally:
                self._queue.task_done()
            self._repeat()

    def _idle(self) -> float | None:
        """How long the thread may wait for a message before a channel wants to repeat something."""
        now = self.clock.now()
        waits = [d for c in self.channels if (d := c.due(now)) is not None]
        return min(waits) if waits else None

    def _repeat(self) -> None:
        now = self.clock.now()
        for channel in self.channels:
            due = channel.due(now)
            if due is not None and due <= 0:
                self._deliver(channel, lambda c=channel: c.resend(now))

    @staticmethod
    def _deliver(channel: Channel, do: Callable[[], None]) -> bool:
        try:
            do()
            return True
        except NotifyError as e:
            log.warning("notification to %s failed: %s", channel.name, e)
        except Exception:  # a channel's bug must not end the thread that serves every channel
            log.exception("notification to %s failed", channel.name)
        return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued message was delivered or dropped; False if `timeout` passed first."""
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
