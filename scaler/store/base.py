"""The state-store and lease interfaces the control loop persists through."""

from __future__ import annotations

from typing import Protocol


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
