"""The policy model (YAML, pydantic v2): what to watch, what to aim for, and how fast to move."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scaler.units import PositiveSeconds, Seconds
from scaler.yamlio import Strict

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=128)]


class MetricKind(StrEnum):
    utilization = "utilization"  # per-replica average that falls as replicas rise (CPU %, requests/replica)
    latency = "latency"  # seconds, e.g. p95 response time
    error_rate = "error_rate"  # fraction of requests that fail, 0..1
    gauge = "gauge"  # a total unaffected by replicas, e.g. queue length; target is per replica


class Window(Strict):
    """How raw samples are smoothed before deciding."""

    type: Literal["last", "ewma", "mean", "max", "percentile", "trend"] = Field(
        "ewma",
        description="last (no smoothing), ewma, mean, max or percentile over the window; trend: the "
        "least-squares line through the window's samples, read `lead` seconds ahead (flat until the samples "
        "reach back half the window; never below 0)",
    )
    length: Seconds = Field(60.0, description="Window length in seconds; samples older than this are dropped")
    half_life: Seconds | None = Field(
        None, description="ewma only: seconds for an old sample's weight to halve (default: length / 2)"
    )
    q: float | None = Field(None, gt=0, le=100, description="percentile only: which percentile (default 95)")
    lead: Seconds | None = Field(
        None,
        description="trend only: seconds after the newest sample to read the fitted line at (default 90: a "
        "replica's 60 s start-up plus a metric's 30 s lag, how far ahead a scale-up decided now must look)",
    )

    @model_validator(mode="after")
    def _check(self) -> Window:
        if self.half_life is not None and self.type != "ewma":
            raise ValueError("half_life applies only to type: ewma")
        if self.q is not None and self.type != "percentile":
            raise ValueError("q applies only to type: percentile")
        if self.lead is not None and self.type != "trend":
            raise ValueError("lead applies only to type: trend")
        if self.type == "ewma" and self.half_life == 0:
            raise ValueError("half_life must be greater than 0")
        return self

    @property
    def effective_half_life(self) -> float:
        return self.half_life if self.half_life is not None else max(self.length / 2, 1e-9)

    @property
    def effective_q(self) -> float:
        return self.q if self.q is not None else 95.0

    @property
    def effective_lead(self) -> float:
        return self.lead if self.lead is not None else 90.0


class Metric(Strict):
    """One signal and the value it should sit at."""

    name: Name = Field(description="Name used in reports and in recorded-metrics columns")
    query: str | None = Field(
        None, description="PromQL for the live loop, aggregated `by` the target label; not needed to simulate"
    )
    kind: MetricKind = Field(MetricKind.utilization, description="How the metric responds to replicas")
    target: float = Field(
        gt=0,
        description="Value to hold: utilization in the metric's own unit (e.g. 70 for 70 % CPU), latency in "
        "seconds, error rate as a fraction, gauge as the amount one replica handles",
    )
    scale_up_above: float | None = Field(
        None, description="Scale up when the smoothed value is above this (default: target * 1.1)"
    )
    scale_down_below: float | None = Field(
        None, description="Scale down only when the smoothed value is below this (default: target * 0.9)"
    )
    window: Window = Field(default_factory=Window)

    @model_validator(mode="after")
    def _band(self) -> Metric:
        up, down = self.up_threshold, self.down_threshold
        if down > up:
            raise ValueError(f"scale_down_below ({down:g}) must not exceed scale_up_above ({up:g})")
        return self

    @property
    def up_threshold(self) -> float:
        return self.scale_up_above if self.scale_up_above is not None else self.target * 1.1

    @property
    def down_threshold(self) -> float:
        return self.scale_down_below if self.scale_down_below is not None else self.target * 0.9


class RatePolicy(Strict):
    """At most `value` pods (or percent of the replicas at the period's start) per `period`."""

    type: Literal["pods", "percent"]
    value: int = Field(gt=0, description="Pods, or percent of the replica count at the period's start")
    period: PositiveSeconds = Field(description="Seconds the limit looks back over (HPA: periodSeconds)")

    @model_validator(mode="after")
    def _period(self) -> RatePolicy:
        if self.period > 1800:
            raise ValueError("period must be at most 1800 s (30 min), as in HPA")
        return self


class Direction(Strict):
    """How one direction (up or down) is paced."""

    stabilization: Seconds = Field(
        description="Seconds of recommendation history considered: up takes the lowest, down the highest"
    )
    policies: list[RatePolicy] = Field(description="Rate limits; select picks among them")
    select: Literal["max", "min", "disabled"] = Field(
        "max", description="max: the policy allowing the largest change; min: the smallest; disabled: never"
    )
    cooldown: Seconds = Field(
        0.0,
        description="Up: seconds after a scale-up before another. Down: seconds after any scale action "
        "before a scale-down",
    )

    @model_validator(mode="after")
    def _limits(self) -> Direction:
        if self.stabilization > 3600:
            raise ValueError("stabilization must be at most 3600 s, as in HPA")
        if not self.policies and self.select != "disabled":
            raise ValueError("policies must list at least one rate limit unless select is 'disabled'")
        return self


def default_scale_up() -> Direction:
    """HPA's default: no stabilization, +4 pods or +100 % per 15 s, whichever is more."""
    return Direction(
        stabilization=0,
        policies=[RatePolicy(type="pods", value=4, period=15), RatePolicy(type="percent", value=100, period=15)],
        select="max",
    )


def default_scale_down() -> Direction:
    """HPA's default: 300 s stabilization, -100 % per 15 s."""
    return Direction(stabilization=300, policies=[RatePolicy(type="percent", value=100, period=15)], select="max")


class Behavior(Strict):
    scale_up: Direction = Field(default_factory=default_scale_up)
    scale_down: Direction = Field(default_factory=default_scale_down)


class Replicas(Strict):
    min: int = Field(1, ge=0, description="Never fewer replicas than this")
    max: int = Field(ge=1, description="Never more replicas than this")

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Fallback(Strict):
    """What to do when metrics cannot be read. Without it: hold the current count."""

    failure_threshold: int = Field(3, ge=1, description="Consecutive ticks with no data before falling back")
    replicas: int = Field(
        ge=1,
        description="Replicas to run while blind; only ever raises the count (never below current or a "
        "healthy metric's recommendation)",
    )


class Panic(Strict):
    """Knative-style burst mode: a short window that can scale up at once and blocks scale-down."""

    threshold: float = Field(
        2.0, gt=1, description="Enter panic when short-window load / target reaches this (2.0 = 200 %)"
    )
    window: PositiveSeconds = Field(6.0, description="Short window in seconds (Knative: 10 % of 60 s)")
    hold: Seconds = Field(60.0, description="Seconds panic lasts after its last trigger (no scale-down)")


class Slo(Strict):
    """What counts as a violation, used by reports (cost vs. SLO) and the loop's health view."""

    latency: Seconds | None = Field(None, description="Max p95 latency in seconds (e.g. 300ms)")
    error_rate: float | None = Field(None, ge=0, le=1, description="Max error rate as a fraction (0.01 = 1 %)")
    utilization: float | None = Field(None, gt=0, description="Max utilization, in the metric's unit (90 = 90 %)")


class Tolerance(Strict):
    """HPA tolerance per direction (v1.33+): ratios within [1 - down, 1 + up] keep the current count."""

    up: float = Field(0.1, ge=0, description="Fraction above target tolerated before scaling up")
    down: float = Field(0.1, ge=0, le=1, description="Fraction below target tolerated before scaling down")


class Target(BaseModel):
    """What the policy scales. Simulation needs none; the live loop reads provider-specific fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = Field(description="dry-run, aws-asg, aws-ecs or kubernetes")
    name: str = Field(description="The target's name (group, service, deployment)")


class Policy(Strict):
    """One autoscaling policy."""

    name: Name = Field(description="Policy name, used in reports")
    description: str = ""
    target: Target | None = None
    algorithm: Literal["scaler", "hpa"] = Field(
        "scaler",
        description="scaler: hysteresis bands per metric; hpa: the Kubernetes HPA algorithm (tolerance)",
    )
    replicas: Replicas
    interval: PositiveSeconds = Field(15.0, description="Seconds between decisions")
    metrics: list[Metric] = Field(min_length=1)
    behavior: Behavior | None = Field(
        None, description="Stabilization, rate limits, cooldowns; HPA defaults when absent (hpa: legacy path)"
    )
    tolerance: Tolerance = Field(default_factory=Tolerance, description="hpa algorithm only")
    fallback: Fallback | None = None
    panic: Panic | None = None
    slo: Slo = Field(default_factory=Slo)

    @model_validator(mode="after")
    def _check(self) -> Policy:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(dupes)}")
        if self.fallback and self.fallback.replicas > self.replicas.max:
            raise ValueError(f"fallback.replicas ({self.fallback.replicas}) exceeds replicas.max")
        if self.algorithm == "hpa" and (self.panic or self.fallback):
            raise ValueError("panic and fallback are not part of the HPA algorithm; use algorithm: scaler")
        if self.algorithm == "hpa" and any(d.cooldown for d in self._directions()):
            raise ValueError("cooldown is not part of the HPA algorithm; use stabilization or algorithm: scaler")
        return self

    def _directions(self) -> list[Direction]:
        return [self.behavior.scale_up, self.behavior.scale_down] if self.behavior else []

    @property
    def effective_behavior(self) -> Behavior:
        return self.behavior or Behavior()

    @property
    def legacy(self) -> bool:
        """HPA without `behavior`: the pre-v2 normalization path."""
        return self.algorithm == "hpa" and self.behavior is None

    def history_seconds(self) -> float:
        """How far back decisions look: stabilization windows and rate-limit periods."""
        b = self.effective_behavior
        spans = [b.scale_up.stabilization, b.scale_down.stabilization, 300.0 if self.legacy else 0.0]
        spans += [p.period for d in (b.scale_up, b.scale_down) for p in d.policies]
        return max(spans)

    def history_slots(self) -> int:
        """Ring-buffer slots that cover history_seconds at this interval, with margin for a late tick."""
        return int(math.ceil(self.history_seconds() / self.interval)) + 2
