"""Health rules the loop evaluates every tick: a smoothed metric past a threshold for a while, or an HTTP
health check failing N times in a row. A rule that starts or stops firing becomes an event with its evidence.

Evaluation is pure over arrays shaped (targets,): (rule, state, condition, now) -> (state, fired, resolved);
`evaluate` runs every rule bound to a policy's targets for one tick (step 5 of a tick) and returns its events.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from scaler.units import PositiveSeconds, Seconds
from scaler.yamlio import Strict

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=128)]
LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]


class _Strict(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)  # `for` has an alias


class HttpCheck(_Strict):
    """A GET per target per tick; `{target}` in the URL becomes the target's label value."""

    url: str = Field(pattern=r"^https?://", description="URL to probe, e.g. https://{target}.internal/healthz")
    timeout: PositiveSeconds = Field(2.0, description="Seconds to wait for an answer; no answer is a failure")
    expect_status: list[int] = Field(default_factory=list, description="Good statuses; empty means 200-399")


class HealthRule(_Strict):
    """Fires per target when its condition holds; resolves when it stops holding."""

    name: Name = Field(description="Rule name: the event's alertname, and what trigger rules match on")
    policy: Name | None = Field(None, description="Only targets of this policy (default: every policy)")
    metric: Name | None = Field(None, description="A metric of the policy, compared on its smoothed value")
    above: float | None = Field(None, description="Condition: smoothed value above this (metric's own unit)")
    below: float | None = Field(None, description="Condition: smoothed value below this")
    for_: Seconds = Field(0.0, alias="for", description="Seconds the condition must hold before firing "
                          "(no data resets it, as in Prometheus)")
    http: HttpCheck | None = Field(None, description="Instead of a metric: an HTTP health check")
    failures: int = Field(3, ge=1, le=1000, description="http: consecutive failed checks before firing")
    severity: Literal["warning", "critical"] = Field("critical", description="Routes the notification")
    labels: dict[LabelName, str] = Field(default_factory=dict, description="Extra labels on the event")

    @model_validator(mode="after")
    def _one_condition(self) -> HealthRule:
        if (self.metric is None) == (self.http is None):
            raise ValueError("set exactly one of metric or http")
        if self.metric is not None and (self.above is None) == (self.below is None):
            raise ValueError("a metric rule needs exactly one of above or below")
        if self.http is not None and (self.above is not None or self.below is not None or self.for_):
            raise ValueError("above, below and for apply to metric rules; http rules use failures")
        return self

    def describe(self) -> str:
        if self.http is not None:
            return f"health check {self.http.url} failed {self.failures} times in a row"
        op, limit = (">", self.above) if self.above is not None else ("<", self.below)
        held = f" for {self.for_:g}s" if self.for_ else ""
        return f"{self.metric} {op} {limit:g}{held}"


@dataclass(frozen=True)
class RuleState:
    """Per target: since when the condition holds (NaN: it does not), failed checks in a row, firing."""

    since: np.ndarray
    streak: np.ndarray
    firing: np.ndarray

    @classmethod
    def empty(cls, targets: int) -> RuleState:
        return cls(np.full(targets, np.nan), np.zeros(targets, dtype=np.int64), np.zeros(targets, dtype=bool))


def metric_condition(rule: HealthRule, smoothed: np.ndarray) -> np.ndarray:
    """Where the smoothed values (targets,) meet the rule; NaN (no data) never does."""
    with np.errstate(invalid="ignore"):
        return smoothed > rule.above if rule.above is not None else smoothed < rule.below


def step(
    rule: HealthRule, state: RuleState, condition: np.ndarray, now: float, *, checked: np.ndarray | None = None
) -> tuple[RuleState, np.ndarray, np.ndarray]:
    """Advance one tick. For http rules `condition` is "this check failed" and `checked` says which targets
    were probed (an unprobed one keeps its streak). Returns (state, fired, resolved) as bool masks.

    error_rate > 0.05 for 300 s, ticks every 15 s: true from t=0 -> since=0; fires at t=300, not t=285.
    """
    if rule.http is not None:
        checked = np.ones_like(condition) if checked is None else checked
        streak = np.where(checked, np.where(condition, state.streak + 1, 0), state.streak)
        active = streak >= rule.failures
        since = np.where(active, np.where(np.isnan(state.since), now, state.since), np.nan)
    else:
        streak = state.streak
        since = np.where(condition, np.where(np.isnan(state.since), now, state.since), np.nan)
        active = condition & (now - since >= rule.for_ - 1e-9)
    fired = active & ~state.firing
    resolved = state.firing & ~active
    return RuleState(since=since, streak=streak, firing=active), fired, resolved


@dataclass(frozen=True)
class Probe:
    ok: bool
    status: str  # HTTP status, or the kind of failure ("timeout", "ConnectionRefusedError")


def probe(check: HttpCheck, target: str) -> Probe:
    """One GET of the check's URL for `target`; any error or unexpected status is a failed check."""
    url = check.url.replace("{target}", target)
    try:
        with urllib.request.urlopen(url, timeout=check.timeout) as answer:  # noqa: S310 (URL is config)
            status = answer.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return Probe(False, "timeout" if isinstance(reason, TimeoutError) else type(reason).__name__)
    good = status in check.expect_status if check.expect_status else 200 <= status < 400
    return Probe(good, str(status))


def evidence(rule: HealthRule, value: float | None, probe_status: str | None, streak: int) -> str:
    """What made the rule fire, in one line: 'p95_latency 31.2 > 30' or 'GET ... failed 3 times: 503'."""
    if rule.http is not None:
        return f"health check failed {streak} times in a row, last answer {probe_status or 'none'}"
    shown = "no data" if value is None or math.isnan(value) else f"{value:.4g}"
    return f"{rule.metric} {shown}: {rule.describe()}"


@dataclass
class Bound:
    """A health rule bound to one policy's targets, with its per-target state."""

    rule: HealthRule
    metric: int | None  # row of the metric in the policy, None for http rules
    state: RuleState


def bind(rules: Sequence[HealthRule], policy: str, metric_names: Sequence[str], targets: int) -> list[Bound]:
    """The rules that apply to `policy` (every policy's, or its own; a metric rule only if it has the metric)."""
    out = []
    for r in rules:
        if r.policy not in (None, policy) or (r.metric is not None and r.metric not in metric_names):
            continue
        row = list(metric_names).index(r.metric) if r.metric is not None else None
        out.append(Bound(r, row, RuleState.empty(targets)))
    return out


@dataclass(frozen=True)
class HealthEvent:
    rule: HealthRule
    policy: str
    target: str
    status: str  # firing | resolved
    since: float
    evidence: str


def evaluate(bound: Sequence[Bound], smoothed: np.ndarray, *, policy: str, labels: Sequence[str], now: float,
             pool: Executor) -> list[HealthEvent]:
    """One tick of every bound rule (their states move on): an event per target that starts or stops firing.
    Metric rules read the decision's smoothed values (metrics, targets); http rules probe each target."""
    events: list[HealthEvent] = []
    for b in bound:
        rule = b.rule
        probes: list[Probe] | None = None
        before = b.state.since  # a resolved event keeps the start of what it resolves
        if rule.http is not None:
            probes = list(pool.map(lambda label, c=rule.http: probe(c, label), labels))
            condition = np.array([not p.ok for p in probes], dtype=bool)
        else:
            condition = metric_condition(rule, smoothed[b.metric])
        b.state, fired, resolved = step(rule, b.state, condition, now)
        for j in np.flatnonzero(fired | resolved):
            value = None if b.metric is None else float(smoothed[b.metric, j])
            status = "firing" if fired[j] else "resolved"
            since = float(b.state.since[j] if fired[j] else before[j])
            text = evidence(rule, value, probes[j].status if probes else None, int(b.state.streak[j]))
            events.append(HealthEvent(rule, policy, labels[j], status, since, text))
    return events
