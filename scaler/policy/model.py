"""The policy model (YAML, pydantic v2): what to watch, what to aim for, and how fast to move."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from scaler.units import PositiveSeconds, Seconds, format_duration
from scaler.yamlio import Strict

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=128)]

# What a policy may ask for. Each bound keeps one tick's work and memory small whatever the file says;
# every one is far outside what a working policy uses (the shipped ones: 15-30 s ticks, windows up to 20 min).
MIN_INTERVAL, MAX_INTERVAL = 1.0, 3600.0
"""Seconds between decisions: Prometheus rarely has a sample fresher than 1 s (every tick queries every metric
once, so 1 ms would be a thousand queries a second), and a decision less often than hourly is not autoscaling."""
MAX_WINDOW = 86400.0
"""The longest smoothing window, trend lead or panic window, in seconds (24 h): longer than any load pattern a
window smooths, and than every other look-back of a decision (stabilization 1 h, rate-limit periods 30 min)."""
MAX_WINDOW_SLOTS = 10_000
"""The most samples one window may keep per target: its ring is length / interval slots of 8 bytes, so
10,000 slots is 80 KB per target and metric (24 h at 15 s is 5,760; at a 1 s interval a window may span
2 h 46 min). A mean, max or percentile reads the whole ring every tick."""
MAX_PERIOD = 7 * 86400.0
"""The longest period of a seasonal window, in seconds (a week): the usual cycles of demand are daily and weekly.
A seasonal window is the one exception to MAX_WINDOW: it remembers two periods, but as bucket means, not samples,
so its ring is bounded by MAX_WINDOW_SLOTS buckets (two weeks of 5-minute buckets is 4,032)."""
MAX_METRICS = 16
"""Metrics per policy: each is one query per tick and one window ring per target."""
MAX_COUNT = 2**31 - 1
"""Replica counts and rate-limit values are Kubernetes int32s; every HPA manifest fits."""


def _at_most_a_day(seconds: float) -> float:
    if seconds > MAX_WINDOW:
        raise ValueError(f"must be at most {_duration(MAX_WINDOW)}, got {_duration(seconds)}")
    return seconds


def _duration(seconds: float) -> str:
    """'1d', '90s', '1ms' for messages; past a century, where days stop reading well, '1e+20 s'."""
    return format_duration(seconds) if seconds < 100 * 365 * 86400 else f"{seconds:g} s"


class MetricKind(StrEnum):
    utilization = "utilization"  # per-replica average that falls as replicas rise (CPU %, requests/replica)
    latency = "latency"  # seconds, e.g. p95 response time
    error_rate = "error_rate"  # fraction of requests that fail, 0..1
    gauge = "gauge"  # a total unaffected by replicas, e.g. queue length; target is per replica

    @property
    def valid_range(self) -> tuple[float, float]:
        """(lowest, highest) value an observation of this kind can take; outside it a reading is no data."""
        return VALID_RANGE[self]


VALID_RANGE: dict[MetricKind, tuple[float, float]] = {
    # Per-replica averages in the metric's own unit: CPU % or requests per replica, but also bytes per replica
    # (an HPA memory AverageValue of 2Gi imports as a utilization target of 2.1e9), so the ceiling is 1e15,
    # a petabyte per replica, rather than a CPU-sized 1e6 %.
    MetricKind.utilization: (0.0, 1e15),
    MetricKind.latency: (0.0, 1e6),  # seconds: 11.6 days; a timestamp or a nanosecond count lands above it
    MetricKind.error_rate: (0.0, 1.0),  # a fraction of requests
    MetricKind.gauge: (0.0, 1e15),  # a total such as a queue backlog or consumer lag
}
"""The values an observation of each kind can take. A reading outside (negative, above the ceiling, or not
finite) is a broken query or exporter, not load: the live loop treats it as no data for that target, reports
it and holds, rather than scaling 5 -> 50 on 1e308 or 5 -> 2 on -10. Every ceiling is far below where the
decision arithmetic could overflow (1e15 x 2^31 replicas x 10,000 window slots is about 2e28)."""


class Section(Strict):
    """A policy section: besides Strict's rules, every number is finite (NaN and infinity are never a setting:
    `target: .inf` would read every load as zero and scale down)."""

    model_config = ConfigDict(allow_inf_nan=False)


class Window(Section):
    """How raw samples are smoothed before deciding."""

    type: Literal["last", "ewma", "mean", "max", "percentile", "trend", "seasonal"] = Field(
        "ewma",
        description="last (no smoothing), ewma, mean, max or percentile over the window; trend: the "
        "least-squares line through the window's samples, read `lead` seconds ahead (flat until the samples "
        "reach back half the window; never below 0); seasonal: the load at the same time one period ago, "
        "`lead` seconds ahead, scaled by the ratio of the recent level to the level one period ago, asked only "
        "while the history shows the pattern (see min_correlation)",
    )
    length: Seconds = Field(
        60.0,
        description="Window length in seconds; samples older than this are dropped. At most 24 h, and at most "
        "10,000 samples at the policy's interval. Not for seasonal, whose reach is two periods",
    )
    half_life: Seconds | None = Field(
        None, description="ewma only: seconds for an old sample's weight to halve (default: length / 2)"
    )
    q: float | None = Field(None, gt=0, le=100, description="percentile only: which percentile (default 95)")
    lead: Seconds | None = Field(
        None,
        description="trend and seasonal: seconds after the newest sample to read the forecast at (default 90: a "
        "replica's 60 s start-up plus a metric's 30 s lag, how far ahead a scale-up decided now must look); "
        "at most 24 h, and for seasonal at most the period less one bucket",
    )
    period: Seconds | None = Field(
        None,
        description="seasonal only (required): seconds after which the load repeats, e.g. 1d (daily) or 1w "
        "(weekly); at most 1 week, and a whole number of buckets",
    )
    bucket: Seconds | None = Field(
        None,
        description="seasonal only: seconds of samples averaged into one remembered value (default 5m). The "
        "window keeps two periods of buckets, at most 10,000 (a week of 5-minute buckets is 2,016 per period); "
        "at least the policy's interval",
    )
    level: Seconds | None = Field(
        None,
        description="seasonal only: seconds of recent history whose mean, over the mean of the same span one "
        "period earlier, scales the forecast (default 30m, or the period if shorter: load 10 % above last "
        "week's at this hour reads last week's next bucket x 1.1); at least one bucket, at most the period. "
        "Also the span of the headroom",
    )
    min_correlation: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="seasonal only: the window asks only while the correlation between the last period's "
        "buckets and the period's before is at least this (default 0.5). Below it, or before half a period of "
        "buckets pairs with the period before (about 1.5 periods of history), it has no opinion: it asks for "
        "nothing and holds nothing back (see docs/decisions.md)",
    )
    headroom_q: float | None = Field(
        None,
        gt=0,
        le=100,
        description="seasonal only: add this percentile of the absolute tick-to-tick change of the last "
        "`level` to the forecast, a headroom for short-term noise in the metric's unit (e.g. 95); default none",
    )

    noisy_length: Seconds | None = Field(
        None,
        description="max only: while the metric is noisy (its changes from one tick to the next average more "
        "than `noisy_above` of its level), read the highest sample of this longer span instead of `length`, "
        "e.g. 5m (HPA's own scale-down window). A reading that swings every tick is covered at its recent peak "
        "rather than chased: a scale-up decided after a one-tick peak comes too late for it. A source sampled "
        "coarser than the interval repeats its value between samples, so its changes stay a small share of its "
        "level. Default: none",
    )
    noisy_above: float | None = Field(
        None,
        gt=0,
        le=10,
        description="max with noisy_length: the mean tick-to-tick change, as a share of the mean level, above "
        "which the metric is noisy (default 0.25; request counts of a few dozen per tick stay below it, a "
        "handful per tick is above: see docs/decisions.md)",
    )
    noise_span: Seconds | None = Field(
        None,
        description="max with noisy_length: how far back both means reach (exponentially weighted, default 30m)",
    )

    @field_validator("length", "lead", "noisy_length", "noise_span")
    @classmethod
    def _lengths(cls, seconds: float | None) -> float | None:
        return None if seconds is None else _at_most_a_day(seconds)

    @model_validator(mode="after")
    def _check(self) -> Window:
        if self.half_life is not None and self.type != "ewma":
            raise ValueError("half_life applies only to type: ewma")
        if self.q is not None and self.type != "percentile":
            raise ValueError("q applies only to type: percentile")
        if self.lead is not None and self.type not in ("trend", "seasonal"):
            raise ValueError("lead applies only to type: trend or seasonal")
        if self.type == "ewma" and self.half_life == 0:
            raise ValueError("half_life must be greater than 0")
        self._check_noisy()
        seasonal = ("period", "bucket", "level", "min_correlation", "headroom_q")
        if self.type != "seasonal":
            given = [name for name in seasonal if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to type: "
                                 "seasonal")
            return self
        self._check_seasonal()
        return self

    def _check_noisy(self) -> None:
        """noisy_length and its two settings: a max window's, longer than its length."""
        given = [name for name in ("noisy_length", "noisy_above", "noise_span") if getattr(self, name) is not None]
        if not given:
            return
        if self.type != "max":
            raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to type: max")
        if self.noisy_length is None:
            raise ValueError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} noisy_length, the span "
                             "read while the metric is noisy")
        if self.noisy_length <= self.length:
            raise ValueError(f"noisy_length ({_duration(self.noisy_length)}) must be longer than length "
                             f"({_duration(self.length)})")
        if self.noise_span is not None and self.noise_span <= 0:
            raise ValueError("noise_span must be greater than 0")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """As written, less a seasonal window's `length` (the default it was never given, and may not be), so a
        dumped policy validates again: the tuner and the benchmarks edit policies that way."""
        data = handler(self)
        if self.type == "seasonal" and isinstance(data, dict):
            data.pop("length", None)
        return data

    def _check_seasonal(self) -> None:
        """A seasonal window's own rules: its period in whole buckets, its ring within MAX_WINDOW_SLOTS."""
        if "length" in self.model_fields_set:
            raise ValueError("length does not apply to type: seasonal (it reaches back two periods: set period)")
        if self.period is None:
            raise ValueError("type: seasonal needs a period, e.g. period: 1d (daily) or 1w (weekly)")
        period, bucket, level = self.period, self.effective_bucket, self.effective_level
        if not 0 < period <= MAX_PERIOD:
            raise ValueError(f"period must be more than 0 and at most {_duration(MAX_PERIOD)}, got {_duration(period)}")
        if bucket <= 0 or bucket > period:
            raise ValueError(f"bucket must be more than 0 and at most the period ({_duration(period)}), got "
                             f"{_duration(bucket)}")
        per = period / bucket
        if abs(per - round(per)) > 1e-9 * per:
            raise ValueError(f"period ({_duration(period)}) must be a whole number of buckets ({_duration(bucket)})")
        if 2 * round(per) > MAX_WINDOW_SLOTS:
            raise ValueError(f"two periods of {_duration(period)} in buckets of {_duration(bucket)} are "
                             f"{2 * round(per):,} buckets per target, more than {MAX_WINDOW_SLOTS:,} (lengthen the "
                             "bucket)")
        if not bucket <= level <= period:
            raise ValueError(f"level must be from one bucket ({_duration(bucket)}) to the period "
                             f"({_duration(period)}), got {_duration(level)}")
        if self.effective_lead > period - bucket:
            raise ValueError(f"lead ({_duration(self.effective_lead)}) must be at most the period less one bucket "
                             f"({_duration(period - bucket)}): the forecast reads a bucket already closed")

    @property
    def ringed(self) -> bool:
        """Whether the window keeps its samples (a ring of slots); last and ewma keep one number."""
        return self.type in ("mean", "max", "percentile", "trend")

    def slots(self, interval: float) -> int:
        """Samples the window keeps per target at this tick interval (20 min at 15 s -> 80); 1 without a ring.
        A seasonal window: its bucket means and, with headroom_q, the tick-to-tick changes of the last `level`
        (a day of 5-minute buckets with a 30-minute headroom at 15 s: 576 + 120)."""
        if self.type == "seasonal":
            return self.buckets + self.changes(interval)
        if self.noisy_length is not None:
            return max(1, int(math.ceil(self.noisy_length / interval)))
        return max(1, int(math.ceil(self.length / interval))) if self.ringed else 1

    @property
    def buckets(self) -> int:
        """Seasonal: the buckets of two periods (a day of 5-minute buckets: 2 x 288 = 576); else 0."""
        if self.type != "seasonal" or self.period is None:
            return 0
        return 2 * int(round(self.period / self.effective_bucket))

    def changes(self, interval: float) -> int:
        """Seasonal with headroom_q: the tick-to-tick changes kept for the headroom (30 min at 15 s: 120)."""
        if self.type != "seasonal" or self.headroom_q is None:
            return 0
        return max(1, int(math.ceil(self.effective_level / interval)))

    @property
    def effective_half_life(self) -> float:
        return self.half_life if self.half_life is not None else max(self.length / 2, 1e-9)

    @property
    def effective_noisy_above(self) -> float:
        return self.noisy_above if self.noisy_above is not None else 0.25

    @property
    def effective_noise_span(self) -> float:
        return self.noise_span if self.noise_span is not None else 1800.0

    @property
    def effective_q(self) -> float:
        return self.q if self.q is not None else 95.0

    @property
    def effective_lead(self) -> float:
        return self.lead if self.lead is not None else 90.0

    @property
    def effective_bucket(self) -> float:
        return self.bucket if self.bucket is not None else 300.0

    @property
    def effective_level(self) -> float:
        if self.level is not None:
            return self.level
        return min(1800.0, self.period) if self.period is not None else 1800.0

    @property
    def effective_min_correlation(self) -> float:
        return self.min_correlation if self.min_correlation is not None else 0.5


class Metric(Section):
    """One signal and the value it should sit at."""

    name: Name = Field(description="Name used in reports and in recorded-metrics columns")
    query: str | None = Field(
        None, description="PromQL for the live loop, aggregated `by` the target label; not needed to simulate"
    )
    kind: MetricKind = Field(
        MetricKind.utilization,
        description="How the metric responds to replicas. It also sets which readings are data: utilization "
        "and gauge 0 to 1e15, latency 0 to 1e6 s, error_rate 0 to 1; a reading outside (or not finite) is no "
        "data for that target, reported and never acted on",
    )
    target: float = Field(
        gt=0,
        description="Value to hold: utilization in the metric's own unit (e.g. 70 for 70 % CPU), latency in "
        "seconds, error rate as a fraction, gauge as the amount one replica handles; within the kind's range",
    )
    scale_up_above: float | None = Field(
        None, description="Scale up when the smoothed value is above this (default: target * 1.1)"
    )
    scale_down_below: float | None = Field(
        None, description="Scale down only when the smoothed value is below this (default: target * 0.9)"
    )
    window: Window = Field(default_factory=Window)
    whole_percent: bool | None = Field(
        None,
        description="algorithm: hpa only: the value is a Kubernetes resource utilization (percent of the "
        "request), which HPA computes as a whole percent, truncated (53.7 % counts as 53). Default: true for "
        "a utilization metric under algorithm: hpa; an HPA manifest sets it from each metric's source (only "
        "Resource and ContainerResource Utilization targets are whole percents)",
    )

    @model_validator(mode="after")
    def _band(self) -> Metric:
        if self.whole_percent and self.kind != MetricKind.utilization:
            raise ValueError("whole_percent applies only to kind: utilization")
        high = self.kind.valid_range[1]
        if self.target > high:
            raise ValueError(f"target ({self.target:g}) is above the highest {self.kind} reading ({high:g})")
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


class RatePolicy(Section):
    """At most `value` pods (or percent of the replicas at the period's start) per `period`."""

    type: Literal["pods", "percent"]
    value: int = Field(
        gt=0, le=MAX_COUNT, description="Pods, or percent of the replica count at the period's start"
    )
    period: PositiveSeconds = Field(description="Seconds the limit looks back over (HPA: periodSeconds)")

    @model_validator(mode="after")
    def _period(self) -> RatePolicy:
        if self.period > 1800:
            raise ValueError("period must be at most 1800 s (30 min), as in HPA")
        return self


class Direction(Section):
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


class Behavior(Section):
    scale_up: Direction = Field(default_factory=default_scale_up)
    scale_down: Direction = Field(default_factory=default_scale_down)


class Replicas(Section):
    min: int = Field(1, ge=0, le=MAX_COUNT, description="Never fewer replicas than this")
    max: int = Field(ge=1, le=MAX_COUNT, description="Never more replicas than this (at most 2^31 - 1)")

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Fallback(Section):
    """What to do when metrics cannot be read. Without it: hold the current count."""

    failure_threshold: int = Field(
        3, ge=1, le=MAX_COUNT, description="Consecutive ticks with no data before falling back"
    )
    replicas: int = Field(
        ge=1,
        le=MAX_COUNT,
        description="Replicas to run while blind; only ever raises the count (never below current or a "
        "healthy metric's recommendation)",
    )


class Panic(Section):
    """Knative-style burst mode: a short window that can scale up at once and blocks scale-down."""

    threshold: float = Field(
        2.0, gt=1, description="Enter panic when short-window load / target reaches this (2.0 = 200 %)"
    )
    window: PositiveSeconds = Field(
        6.0, description="Short window in seconds (Knative: 10 % of 60 s); at most 10,000 samples at the interval"
    )
    hold: Seconds = Field(60.0, description="Seconds panic lasts after its last trigger (no scale-down)")

    @field_validator("window")
    @classmethod
    def _window(cls, seconds: float) -> float:
        return _at_most_a_day(seconds)


class Slo(Section):
    """What counts as a violation, used by reports (cost vs. SLO) and the loop's health view."""

    latency: Seconds | None = Field(None, description="Max p95 latency in seconds (e.g. 300ms)")
    error_rate: float | None = Field(None, ge=0, le=1, description="Max error rate as a fraction (0.01 = 1 %)")
    utilization: float | None = Field(None, gt=0, description="Max utilization, in the metric's unit (90 = 90 %)")


class Tolerance(Section):
    """HPA tolerance per direction (v1.33+): ratios within [1 - down, 1 + up] keep the current count."""

    up: float = Field(0.1, ge=0, description="Fraction above target tolerated before scaling up")
    down: float = Field(0.1, ge=0, le=1, description="Fraction below target tolerated before scaling down")


class Target(BaseModel):
    """What the policy scales. Simulation needs none; the live loop reads provider-specific fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = Field(description="dry-run, aws-asg, aws-ecs or kubernetes")
    name: str = Field(description="The target's name (group, service, deployment)")


class Policy(Section):
    """One autoscaling policy."""

    name: Name = Field(description="Policy name, used in reports")
    description: str = ""
    target: Target | None = None
    algorithm: Literal["scaler", "hpa"] = Field(
        "scaler",
        description="scaler: hysteresis bands per metric; hpa: the Kubernetes HPA algorithm (tolerance)",
    )
    replicas: Replicas
    interval: PositiveSeconds = Field(15.0, description="Seconds between decisions, from 1 s to 1 h")
    metrics: list[Metric] = Field(min_length=1, max_length=MAX_METRICS)
    behavior: Behavior | None = Field(
        None, description="Stabilization, rate limits, cooldowns; HPA defaults when absent (hpa: legacy path)"
    )
    tolerance: Tolerance = Field(default_factory=Tolerance, description="hpa algorithm only")
    fallback: Fallback | None = None
    panic: Panic | None = None
    slo: Slo = Field(default_factory=Slo)

    @field_validator("interval")
    @classmethod
    def _interval(cls, seconds: float) -> float:
        if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
            raise ValueError(
                f"must be from {_duration(MIN_INTERVAL)} to {_duration(MAX_INTERVAL)}, got {_duration(seconds)}"
            )
        return seconds

    @model_validator(mode="after")
    def _check(self) -> Policy:
        too_long = self._oversized_windows()
        if too_long:
            raise ValueError("; ".join(too_long))
        if all(m.window.type == "seasonal" for m in self.metrics):
            # A seasonal window has no opinion before 1.5 periods of history or where there is no pattern;
            # a policy of nothing else would then never move.
            raise ValueError("a seasonal window asks only where the history shows its pattern: the policy needs "
                             "at least one metric with another window to decide the rest of the time")
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

    def _oversized_windows(self) -> list[str]:
        """A message for each window that would keep more than MAX_WINDOW_SLOTS samples at this interval (a
        seasonal window: its headroom's tick-to-tick changes; its buckets are checked by the window itself),
        or whose buckets are shorter than a tick."""
        windows = [(f"metrics[{i}].window.{'length' if m.window.noisy_length is None else 'noisy_length'}",
                    m.window) for i, m in enumerate(self.metrics) if m.window.type != "seasonal"]
        if self.panic is not None:
            windows.append(("panic.window", Window(type="mean", length=self.panic.window)))
        every = _duration(self.interval)
        out = [
            f"{where}: {_duration(w.noisy_length or w.length)} at an interval of {every} is "
            f"{w.slots(self.interval):,} samples "
            f"per target, more than {MAX_WINDOW_SLOTS:,} (shorten the window or lengthen the interval)"
            for where, w in windows
            if w.slots(self.interval) > MAX_WINDOW_SLOTS
        ]
        for i, m in enumerate(self.metrics):
            w = m.window
            if w.type != "seasonal":
                continue
            if w.effective_bucket < self.interval:
                out.append(f"metrics[{i}].window.bucket: {_duration(w.effective_bucket)} is shorter than the "
                           f"interval ({every}): a bucket must hold at least one tick")
            if w.changes(self.interval) > MAX_WINDOW_SLOTS:
                out.append(f"metrics[{i}].window.level: the headroom over {_duration(w.effective_level)} at an "
                           f"interval of {every} is {w.changes(self.interval):,} samples per target, more than "
                           f"{MAX_WINDOW_SLOTS:,} (shorten the level or lengthen the interval)")
        return out

    def _directions(self) -> list[Direction]:
        return [self.behavior.scale_up, self.behavior.scale_down] if self.behavior else []

    @property
    def effective_behavior(self) -> Behavior:
        return self.behavior or Behavior()

    def whole_percent(self, metric: Metric) -> bool:
        """Whether HPA's algorithm reads this metric as a whole (truncated) percent."""
        return (self.algorithm == "hpa" and metric.kind == MetricKind.utilization
                and metric.whole_percent is not False)

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
