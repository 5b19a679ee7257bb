"""Fakes of the control loop's own interfaces (metric source, scale target, state store, lease) for engine
tests; the adapters themselves are tested against real Prometheus, moto and a Kubernetes API stand-in."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scaler.errors import PermanentError, TransientError
from scaler.sources.base import range_grid
from scaler.targets.base import Replicas


@dataclass
class FakeSource:
    """values[query] = {label value: number}; `down` makes every query fail like a dead Prometheus.

    history[query] = {label value: function of unix time} answers range queries on range_grid(start, end, step)
    (a query without history answers no series); `ranges` records each range query asked, as (query, start, end,
    step), and `range_down` makes them fail."""

    values: dict[str, dict[str, float]] = field(default_factory=dict)
    down: bool = False
    queries: int = 0
    history: dict[str, dict[str, Callable[[float], float]]] = field(default_factory=dict)
    range_down: bool = False
    ranges: list[tuple[str, float, float, float]] = field(default_factory=list)

    def query(self, promql: str, *, by: str, now: float) -> dict[str, float]:
        self.queries += 1
        if self.down:
            raise TransientError("prometheus: connection refused", provider="prometheus", code="ConnectionError")
        return {k: v for k, v in self.values.get(promql, {}).items() if math.isfinite(v)}

    def query_range(self, promql: str, *, by: str, start: float, end: float, step: float) -> dict[str, np.ndarray]:
        self.ranges.append((promql, start, end, step))
        if self.down or self.range_down:
            raise TransientError("prometheus: connection refused", provider="prometheus", code="ConnectionError")
        times = range_grid(start, end, step)
        return {label: np.array([f(t) for t in times], dtype=float)
                for label, f in self.history.get(promql, {}).items()}


@dataclass
class FakeTarget:
    """A target that counts its calls; `fail_writes` is a list of errors raised by the next writes."""

    name: str
    desired: int = 3
    ready: int | None = None
    min: int | None = None
    max: int | None = None
    fail_reads: list[Exception] = field(default_factory=list)
    fail_writes: list[Exception] = field(default_factory=list)
    writes: list[int] = field(default_factory=list)
    write_calls: int = 0

    @property
    def id(self) -> str:
        return f"fake:{self.name}"

    def read(self) -> Replicas:
        if self.fail_reads:
            raise self.fail_reads.pop(0)
        return Replicas(self.desired, self.desired if self.ready is None else self.ready, self.min, self.max)

    def write(self, replicas: int) -> None:
        self.write_calls += 1
        if self.fail_writes:
            raise self.fail_writes.pop(0)
        self.writes.append(replicas)
        self.desired = replicas


def throttled() -> TransientError:
    return TransientError("fake SetDesiredCapacity: ThrottlingException", provider="fake", code="ThrottlingException")


def denied() -> PermanentError:
    return PermanentError("fake SetDesiredCapacity: AccessDenied", provider="fake", code="AccessDenied")


@dataclass
class MemoryStore:
    data: dict[str, bytes] = field(default_factory=dict)

    def load(self, key: str) -> bytes | None:
        return self.data.get(key)

    def save(self, key: str, value: bytes) -> None:
        self.data[key] = bytes(value)


@dataclass
class FakeLease:
    leader: bool = True
    holder: str = "me"

    def acquire(self, now: float) -> bool:
        return self.leader

    def held(self, now: float) -> bool:
        return self.leader

    def release(self) -> None:
        self.leader = False
