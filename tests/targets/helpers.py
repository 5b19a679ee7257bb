"""Helpers for target tests: AWS fault injection through botocore hooks, and a sleep that only records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse

Moto = Callable[[str], Any]  # the `moto` fixture: service name -> a boto3 client on in-process moto


class FailNTimes:
    """Register on `before-call.<service>.<Operation>`: the first `n` calls get `code` without reaching moto.

    A before-call answer short-circuits the send, so botocore's retry layer never sees it: `calls` counts
    exactly the calls the target made.
    """

    def __init__(self, n: int, code: str = "ThrottlingException", status: int = 400) -> None:
        self.n, self.code, self.status, self.calls = n, code, status, 0

    def __call__(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        self.calls += 1
        if self.calls <= self.n:
            return (
                AWSResponse("http://fault", self.status, {}, None),
                {"Error": {"Code": self.code, "Message": "injected"},
                 "ResponseMetadata": {"HTTPStatusCode": self.status}},
            )
        return None  # pass through to moto


class Sleeps:
    """A sleep for scaler.retry.call that only remembers how long it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
