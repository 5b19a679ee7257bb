"""Step 7 of a tick: what the controller reports about itself: logs, its Prometheus metrics (/metrics), the
decision audit log (one JSON line per target), and the latest decision per target for `scaler status`."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from scaler.decision.decide import Decision
from scaler.decision.explain import Values
from scaler.decision.reasons import describe, describe_all
from scaler.errors import ProviderError, ScalerError
from scaler.live.apply import TargetOutcome
from scaler.live.decisionlog import DecisionLog
from scaler.live.health import HealthEvent
from scaler.live.metrics import LoopMetrics
from scaler.live.observe import Observation, Rejected
from scaler.store.base import StateStore

log = logging.getLogger(__name__)

_SHOWN = 10  # rejected readings named in one warning; a thousand broken targets make one line, not a thousand


class Telemetry:
    """Every report of a tick, each optional: `metrics` (Prometheus), `decisions` (the audit log)."""

    def __init__(self, *, metrics: LoopMetrics | None, decisions: DecisionLog | None, dry_run: bool):
        self.metrics = metrics
        self.decisions = decisions
        self.dry_run = dry_run

    def leader(self, leader: bool) -> None:
        if self.metrics:
            self.metrics.leader.set(1 if leader else 0)

    def count(self, policy: str, outcome: str) -> None:
        """One tick of `policy`: ok, metrics_failed or follower."""
        if self.metrics:
            self.metrics.ticks.labels(policy=policy, outcome=outcome).inc()

    def observed(self, policy: str, ids: Sequence[str], metric_names: Sequence[str], seen: Observation) -> None:
        for target, r in zip(ids, seen.reads, strict=True):
            if isinstance(r, ProviderError):
                log.warning("policy %s: reading %s failed: %s", policy, target, r,
                            extra={"policy": policy, "target": target})
                self._target_error(policy, target, "read", r)
        if self.metrics:
            for name in seen.query_errors:
                self.metrics.read_failures.labels(policy=policy, metric=name).inc()
            for i, name in enumerate(metric_names):
                self.metrics.missing.labels(policy=policy, metric=name).set(int(np.isnan(seen.observed[i]).sum()))
        if seen.query_errors:
            log.warning("policy %s: metric queries failed, holding where data is missing: %s", policy,
                        "; ".join(f"{k}: {v}" for k, v in seen.query_errors.items()), extra={"policy": policy})
        self._rejected(policy, seen.rejected)

    def decided(self, policy: str, seconds: float) -> None:
        if self.metrics:
            self.metrics.decide_seconds.labels(policy=policy).observe(seconds)

    def applied(self, policy: str, outcomes: Sequence[TargetOutcome]) -> None:
        for o in outcomes:
            if o.written:
                direction = "up" if o.desired > (o.current or 0) else "down"
                if self.metrics:
                    self.metrics.writes.labels(policy=policy, target=o.id, direction=direction).inc()
                log.info("policy %s: scaled %s %d -> %d (%s)", policy, o.id, o.current, o.desired,
                         describe(o.reasons), extra={"policy": policy, "target": o.id})
            elif o.write_error is not None:
                kind = "transient" if o.write_error.transient else "permanent"
                log.error("policy %s: writing %s failed (%s): %s", policy, o.id, kind, o.write_error,
                          extra={"policy": policy, "target": o.id})
                self._target_error(policy, o.id, "write", o.write_error)

    def health(self, events: Sequence[HealthEvent]) -> None:
        for e in events:
            log.warning("health rule %s %s for %s/%s: %s", e.rule.name, e.status, e.policy, e.target, e.evidence,
                        extra={"rule": e.rule.name, "policy": e.policy, "target": e.target, "status": e.status})
            if self.metrics:
                self.metrics.health.labels(rule=e.rule.name, policy=e.policy, target=e.target).set(
                    1 if e.status == "firing" else 0)
                self.metrics.health_events.labels(rule=e.rule.name, status=e.status).inc()

    def decision(self, policy: str, metric_names: Sequence[str], now: float, decision: Decision,
                 outcomes: Sequence[TargetOutcome], events: Sequence[HealthEvent]) -> None:
        """The decision's gauges and reason counts, and its audit-log lines."""
        noise = decision.steps.noise
        noisy = [i for i in range(len(metric_names)) if np.isfinite(noise[i]).any()]  # noisy max windows measured
        if self.metrics:
            self.metrics.count_reasons(policy, decision.reasons)
            for j, o in enumerate(outcomes):
                if o.current is not None:
                    self.metrics.current.labels(policy=policy, target=o.label).set(o.current)
                    self.metrics.ready.labels(policy=policy, target=o.label).set(o.ready)
                self.metrics.desired.labels(policy=policy, target=o.label).set(o.desired)
                for i in noisy:
                    if np.isfinite(noise[i, j]):
                        self.metrics.noise.labels(policy=policy, target=o.label, metric=metric_names[i]).set(
                            float(noise[i, j]))
        if self.decisions is None:
            return
        stamp = datetime.fromtimestamp(now, UTC).isoformat()
        observed, smoothed = _columns(decision.observed), _columns(decision.smoothed)
        proposal, stabilized = _columns(decision.proposal[None])[0], _columns(decision.stabilized[None])[0]
        shares = _columns(noise)
        reasons = describe_all(decision.reasons)
        records = [{
            "ts": stamp, "event": "decision", "policy": policy, "target": o.label, "id": o.id,
            "current": o.current, "ready": o.ready, "desired": o.desired, "written": o.written,
            "dry_run": self.dry_run, "reasons": reasons[j].split("+") if reasons[j] else [],
            "observed": {n: observed[i][j] for i, n in enumerate(metric_names)},
            "smoothed": {n: smoothed[i][j] for i, n in enumerate(metric_names)},
            "proposal": proposal[j], "stabilized": stabilized[j],
            **({"noise": {metric_names[i]: shares[i][j] for i in noisy}} if noisy else {}),
            **({"error": o.error} if o.error else {}),
        } for j, o in enumerate(outcomes)]
        records += [{"ts": stamp, "event": f"health.{e.status}", "rule": e.rule.name, "policy": e.policy,
                     "target": e.target, "since": e.since, "evidence": e.evidence} for e in events]
        try:
            self.decisions.write(records)
        except OSError as e:
            log.error("writing the decision log failed: %s", e)

    def status(self, store: StateStore, key: str, policy: str, now: float, decision: Decision,
               outcomes: Sequence[TargetOutcome], query_errors: dict[str, str]) -> None:
        """The latest decision per target, with every step's value (what `scaler status` explains)."""
        try:
            store.save(key, summary(policy, now, self.dry_run, decision, outcomes, query_errors))
        except ScalerError as e:
            log.error("policy %s: saving decisions failed: %s", policy, e)

    def finished(self, policy: str, now: float, seconds: float, query_errors: dict[str, str]) -> None:
        self.count(policy, "metrics_failed" if query_errors else "ok")
        if self.metrics:
            self.metrics.tick_seconds.labels(policy=policy).observe(seconds)
            if not query_errors:
                self.metrics.last_success.labels(policy=policy).set(now)

    def _rejected(self, policy: str, rejected: Sequence[Rejected]) -> None:
        """One warning per metric per tick naming its rejected readings (the first few of many targets), and
        the count on scaler_metric_rejected_total."""
        by_metric: dict[str, list[Rejected]] = {}
        for r in rejected:
            by_metric.setdefault(r.metric, []).append(r)
        for metric, rs in by_metric.items():
            low, high = rs[0].valid
            shown = ", ".join(f"{r.target}={r.value:g}" for r in rs[:_SHOWN])
            more = f" and {len(rs) - _SHOWN} more" if len(rs) > _SHOWN else ""
            log.warning("policy %s: metric %s: %d reading(s) outside %g..%g treated as no data: %s%s",
                        policy, metric, len(rs), low, high, shown, more,
                        extra={"policy": policy, "metric": metric})
            if self.metrics:
                self.metrics.rejected.labels(policy=policy, metric=metric).inc(len(rs))

    def _target_error(self, policy: str, target: str, operation: str, error: ProviderError) -> None:
        if self.metrics:
            self.metrics.target_errors.labels(policy=policy, target=target, operation=operation,
                                              error="transient" if error.transient else "permanent").inc()


def summary(policy: str, now: float, dry_run: bool, d: Decision, outcomes: Sequence[TargetOutcome],
            errors: dict[str, str]) -> bytes:
    """The latest decision per target, for `scaler status`."""
    observed, smoothed = _columns(d.observed), _columns(d.smoothed)
    return json.dumps({
        "policy": policy, "time": now, "dry_run": dry_run, "query_errors": errors,
        "targets": [{
            "label": o.label, "id": o.id, "current": o.current, "ready": o.ready, "desired": o.desired,
            "written": o.written, "reasons": o.reasons, "error": o.error,
            "observed": [row[j] for row in observed], "smoothed": [row[j] for row in smoothed],
            "steps": Values.of(d.steps, d.observed, d.current, j).to_json(),
        } for j, o in enumerate(outcomes)],
    }).encode()


def _columns(values: np.ndarray) -> list[list[float | None]]:
    """Rows of a (rows, targets) array as JSON-ready lists: rounded to 6 decimals, None for NaN/inf."""
    rounded = np.round(np.where(np.isfinite(values), values, np.nan), 6).tolist()
    return [[None if v != v else v for v in row] for row in rounded]
