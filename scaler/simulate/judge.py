"""Judging policies fairly: one SLO for the whole run, and violations at HPA's equal cost.

A cheaper policy that violates the SLO more is not worse, and a dearer one that violates it less is not
better: it may only sit at another point of the same trade-off. So HPA is run at several CPU targets, which
traces its own cost/violation curve, and a policy is judged by its violation time against what HPA violates
*at the same replica-hours* (read off that curve by linear interpolation). Below 1 the policy is better than
any HPA a team could tune by its target alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaler.policy.model import Policy, Slo
from scaler.recordings.model import Recording
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.replay import Result, simulate
from scaler.simulate.world import World
from scaler.units import parse_duration

SWEEP_TARGETS = (30, 40, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95)  # CPU % targets of the HPA sweep


def parse_slo(text: str) -> Slo:
    """'latency=300ms,error_rate=0.01,utilization=90' (any of the three) as an Slo; ValueError naming the part."""
    fields: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("latency", "error_rate", "utilization"):
            raise ValueError(f"{part!r}: expected latency=DURATION, error_rate=FRACTION or utilization=PERCENT")
        try:
            fields[key] = parse_duration(value) if key == "latency" else float(value)
        except ValueError as e:
            raise ValueError(f"{part!r}: {e}") from None
    if not fields:
        raise ValueError("an SLO needs at least one of latency, error_rate, utilization")
    return Slo.model_validate(fields)


def describe_slo(slo: Slo) -> str:
    """'p95 latency <= 0.3 s, error rate <= 1 %, utilization <= 90 %' ('none' without any)."""
    parts = []
    if slo.latency is not None:
        parts.append(f"p95 latency <= {slo.latency:g} s")
    if slo.error_rate is not None:
        parts.append(f"error rate <= {slo.error_rate * 100:g} %")
    if slo.utilization is not None:
        parts.append(f"utilization <= {slo.utilization:g} %")
    return ", ".join(parts) or "none"


@dataclass(frozen=True)
class Point:
    """One run's cost and SLO violation, summed over targets."""

    name: str
    replica_hours: float
    violation_hours: float

    @classmethod
    def of(cls, r: Result) -> Point:
        return cls(r.policy.name, float(np.sum(r.replica_hours)), float(np.sum(r.slo_violation_seconds)) / 3600)


@dataclass(frozen=True)
class Curve:
    """HPA's cost/violation points at several CPU targets, cheapest first."""

    points: tuple[Point, ...]
    targets: tuple[float, ...]

    def violation_at(self, replica_hours: float) -> tuple[float, bool]:
        """HPA's violation hours at this cost, linearly interpolated between the two nearest points, and
        whether the cost lies inside the curve's range (outside, the nearest end is used and said so)."""
        costs = np.array([p.replica_hours for p in self.points])
        viols = np.array([p.violation_hours for p in self.points])
        order = np.argsort(costs)
        costs, viols = costs[order], viols[order]
        inside = bool(costs[0] <= replica_hours <= costs[-1])
        return float(np.interp(replica_hours, costs, viols)), inside


def hpa_curve(policy: Policy, rec: Recording, world: World, *,
              targets: Sequence[float] = SWEEP_TARGETS, v2_behavior: bool = False) -> Curve:
    """The HPA baseline of `policy` at each CPU target, totals only, judged by `world`'s SLO."""
    points = []
    for t in targets:
        r = simulate(hpa_baseline(policy, v2_behavior=v2_behavior, cpu_target=float(t)), rec, world, record=False)
        points.append(Point.of(r))
    return Curve(tuple(points), tuple(float(t) for t in targets))


@dataclass(frozen=True)
class Verdict:
    """A policy against HPA: at equal cost, and plainly against one HPA run."""

    point: Point
    hpa_at_equal_cost: float  # HPA's violation hours at the policy's replica-hours
    inside: bool  # the policy's cost lies within the HPA curve's range

    @property
    def ratio(self) -> float:
        """Violation time over HPA's at equal cost (inf when HPA violates nothing there and the policy does)."""
        if self.hpa_at_equal_cost > 0:
            return self.point.violation_hours / self.hpa_at_equal_cost
        return 1.0 if self.point.violation_hours == 0 else math.inf


def judge(point: Point, curve: Curve) -> Verdict:
    hpa, inside = curve.violation_at(point.replica_hours)
    return Verdict(point, hpa, inside)
