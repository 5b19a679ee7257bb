"""One bounded retry policy for every adapter: exponential backoff with jitter, on TransientError only."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from scaler.errors import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Delays grow as initial * 2**(n-1) plus up to `jitter` seconds of random spread, capped at max_delay:
    initial 0.2 s -> 0.2, 0.4, 0.8, 1.6 ... s, never more than max_delay.
    """

    attempts: int = 5  # total tries including the first; 1 means no retry
    initial: float = 0.2  # seconds before the first retry
    max_delay: float = 5.0  # cap on any one delay, seconds
    jitter: float = 0.1  # random extra seconds added to each delay, spreads out synchronized retriers


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after try number `attempt` (1-based) failed."""
    return min(policy.max_delay, policy.initial * 2 ** (attempt - 1) + random.uniform(0, policy.jitter))


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, TransientError)


def call(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    deadline: float | None = None,
    now: Callable[[], float] | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """fn(), retried on TransientError per `policy`; any other error, or the last one, is re-raised as is.

    `sleep` (and `now` for the deadline) come from the caller's clock, so tests advance time instead of
    waiting. A retry whose delay would end after `deadline` is not attempted.
    """
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(max(1, policy.attempts))
    if deadline is not None and now is not None:
        # tenacity computes the next delay before asking `stop`, so the check covers the sleep too.
        stop = stop | (lambda rs: now() + (rs.upcoming_sleep or 0.0) > deadline)

    def before_sleep(rs: tenacity.RetryCallState) -> None:
        if on_retry is not None and rs.outcome is not None:
            on_retry(rs.attempt_number, rs.outcome.exception(), rs.upcoming_sleep)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_transient),
        wait=lambda rs: backoff(policy, rs.attempt_number),
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
