"""The Kubernetes-HPA baseline a policy is compared against: the HPA a team would write for the same workload."""

from __future__ import annotations

from scaler.policy.model import Behavior, Metric, MetricKind, Policy, Window


def hpa_baseline(policy: Policy, *, v2_behavior: bool = False, cpu_target: float | None = None) -> Policy:
    """What a team would otherwise run: an autoscaling/v2 HorizontalPodAutoscaler manifest on the policy's
    utilization metrics (HPA scales on what it can average per pod), with the same min/max, targets and
    interval, raw (unsmoothed) metrics as HPA reads them, and no `behavior` section: the manifest most users
    write, which runs Kubernetes' legacy normalization (the highest recommendation of the last 5 minutes,
    window edge included; at most max(2 x current, 4) per step). `v2_behavior` writes out HPA's v2 behavior
    defaults instead (a 300 s scale-down window without its edge, +4 pods or +100 % per 15 s).

    Utilization is a resource utilization, read as a whole percent as HPA does. Latency, error-rate and
    gauge metrics are dropped unless the policy has no utilization metric, and so is a metric reading the same
    query as one before it (a forecast of that metric: HPA has none). `cpu_target` replaces the target
    of the CPU (the first utilization metric, and any reading its query): an HPA at another operating point,
    for cost/violation curves."""
    util = [m for m in policy.metrics if m.kind == MetricKind.utilization] or list(policy.metrics)
    cpu_query = util[0].query  # the demand metric; memory and other resources keep their own targets

    def target(m: Metric) -> float:
        moved = cpu_target is not None and m.kind == MetricKind.utilization and m.query == cpu_query
        return cpu_target if moved else m.target

    first = {}
    for m in util:
        first.setdefault(m.query if m.query is not None else m.name, m)
    metrics = [Metric(name=m.name, query=m.query, kind=m.kind, target=target(m), window=Window(type="last"))
               for m in first.values()]
    suffix = "" if cpu_target is None else f"-{cpu_target:g}"
    return Policy(
        name=("hpa-v2-baseline" if v2_behavior else "hpa-baseline") + suffix,
        description=f"Kubernetes HPA with {policy.name}'s bounds and targets, "
                    + ("v2 behavior defaults" if v2_behavior else "no behavior (legacy normalization)"),
        target=policy.target,
        algorithm="hpa",
        replicas=policy.replicas,
        interval=policy.interval,
        metrics=metrics,
        behavior=Behavior() if v2_behavior else None,
        slo=policy.slo,
    )
