"""The Kubernetes-HPA baseline a policy is compared against: same bounds and targets, HPA's algorithm."""

from __future__ import annotations

from scaler.policy.model import Behavior, Metric, MetricKind, Policy, Window


def hpa_baseline(policy: Policy) -> Policy:
    """What a team would otherwise run: an autoscaling/v2 HPA on the policy's utilization metrics (HPA
    scales on what it can average per pod), with the same min/max, targets and interval, default behavior,
    and raw (unsmoothed) metrics as HPA reads them. Latency, error-rate and gauge metrics are dropped unless
    the policy has no utilization metric."""
    util = [m for m in policy.metrics if m.kind == MetricKind.utilization] or list(policy.metrics)
    metrics = [Metric(name=m.name, query=m.query, kind=m.kind, target=m.target, window=Window(type="last"))
               for m in util]
    return Policy(
        name="hpa-baseline",
        description=f"Kubernetes HPA with {policy.name}'s bounds and targets",
        target=policy.target,
        algorithm="hpa",
        replicas=policy.replicas,
        interval=policy.interval,
        metrics=metrics,
        behavior=Behavior(),
        slo=policy.slo,
    )
