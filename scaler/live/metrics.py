"""The control loop's own Prometheus metrics (served on /metrics)."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from scaler.decision.reasons import Reason


class LoopMetrics:
    def __init__(self, registry: CollectorRegistry):
        r = registry
        self.ticks = Counter("scaler_ticks_total", "Policy ticks, by outcome: ok, metrics_failed (some query "
                             "failed: held where data was missing), follower (not the leader: skipped)",
                             ["policy", "outcome"], registry=r)
        self.tick_seconds = Histogram("scaler_tick_duration_seconds", "Wall time of one policy tick",
                                      ["policy"], registry=r,
                                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.decide_seconds = Histogram("scaler_decide_duration_seconds", "Decision compute of one policy tick "
                                        "(all targets, no I/O)", ["policy"], registry=r,
                                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
        self.decisions = Counter("scaler_decisions_total", "Target decisions, by each reason bit they carry",
                                 ["policy", "reason"], registry=r)
        self.current = Gauge("scaler_replicas_current", "Replicas the target had when read", ["policy", "target"],
                             registry=r)
        self.ready = Gauge("scaler_replicas_ready", "Replicas serving when read", ["policy", "target"], registry=r)
        self.desired = Gauge("scaler_replicas_desired", "Replicas decided", ["policy", "target"], registry=r)
        self.read_failures = Counter("scaler_metric_read_failures_total", "Metric queries that failed",
                                     ["policy", "metric"], registry=r)
        self.missing = Gauge("scaler_metric_missing_targets", "Targets with no fresh value for the metric",
                             ["policy", "metric"], registry=r)
        self.rejected = Counter("scaler_metric_rejected_total", "Readings outside their metric kind's range "
                                "(negative, not finite, above its ceiling), treated as no data for that target",
                                ["policy", "metric"], registry=r)
        self.target_errors = Counter("scaler_target_errors_total", "Target reads/writes that failed after retries",
                                     ["policy", "target", "operation", "error"], registry=r)
        self.writes = Counter("scaler_scale_writes_total", "Replica counts written to targets",
                              ["policy", "target", "direction"], registry=r)
        self.last_success = Gauge("scaler_last_successful_tick_timestamp_seconds",
                                  "Unix time of the last tick whose every metric query succeeded", ["policy"],
                                  registry=r)
        self.leader = Gauge("scaler_leader", "1 while this controller holds the lease and may write", registry=r)
        self.noise = Gauge("scaler_window_noise", "A max window with noisy_length: its mean tick-to-tick change "
                           "over its mean level; above the window's noisy_above it reads its long span",
                           ["policy", "target", "metric"], registry=r)
        self.health = Gauge("scaler_health_rule_firing", "1 while a health rule fires for a target",
                            ["rule", "policy", "target"], registry=r)
        self.health_events = Counter("scaler_health_events_total", "Health-rule events", ["rule", "status"],
                                     registry=r)

    def count_reasons(self, policy: str, masks) -> None:
        """One increment per (target, reason bit); a decision with no bit counts as NO_CHANGE."""
        masks = np.asarray(masks, dtype=np.int64)
        for bit in Reason:
            n = int(np.count_nonzero(masks & int(bit)))
            if n:
                self.decisions.labels(policy=policy, reason=bit.name).inc(n)
        none = int(np.count_nonzero(masks == 0))
        if none:
            self.decisions.labels(policy=policy, reason="NO_CHANGE").inc(none)
