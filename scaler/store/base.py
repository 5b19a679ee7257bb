"""The state-store and lease interfaces the control loop persists through, and what their builders share."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from secrets import token_hex
from typing import Protocol

from scaler.aws import AwsClients
from scaler.clock import Clock, SystemClock
from scaler.registry import ProviderConfig


class StateStore(Protocol):
    """Opaque blobs by key (one per policy and one for its latest decisions). Writes replace the whole value.

    Errors are scaler.errors.TransientError / PermanentError.
    """

    def load(self, key: str) -> bytes | None:
        """The last saved value, None if never saved."""

    def save(self, key: str, value: bytes) -> None:
        """Replace the value (atomically: a reader sees the old value or the new one, never a mix)."""


class Lease(Protocol):
    """Leader election: only the holder writes to targets. Time is passed in (unix seconds)."""

    @property
    def holder(self) -> str:
        """This process's identity (e.g. pod name + random suffix)."""

    @property
    def leader(self) -> str | None:
        """Who held the lease at our last acquire (None: unknown or nobody)."""

    def acquire(self, now: float) -> bool:
        """Take the lease if free or expired, renew it if ours; True if we hold it until now + ttl."""

    def held(self, now: float) -> bool:
        """Whether we still hold it, by our own last successful acquire (no provider call)."""

    def release(self) -> None:
        """Give it up at once (clean shutdown), so a follower need not wait out the TTL."""


def default_holder() -> str:
    """host-pid-random: unique per process, and readable in the lease table ('web-7f9c-12-a3f1c2')."""
    return f"{socket.gethostname()}-{os.getpid()}-{token_hex(3)}"


@dataclass(frozen=True)
class StoreContext:
    """What builders need besides their own config: shared AWS clients, the clock, this process's name."""

    aws: AwsClients = field(default_factory=AwsClients)
    clock: Clock = field(default_factory=SystemClock)
    holder: str = field(default_factory=default_holder)


class StoreConfig(ProviderConfig):
    """Base of every state store's config section (`state:` in the run config)."""

    def build(self, ctx: StoreContext) -> StateStore:
        """The store; opening it may create a local file, but no remote call is made."""
        return super().build(ctx)


class LeaseConfig(ProviderConfig):
    """Base of every lease's config section (`lease:` in the run config)."""

    def build(self, ctx: StoreContext) -> Lease:
        """The lease, held by `ctx.holder`; nothing is acquired until the loop asks."""
        return super().build(ctx)
