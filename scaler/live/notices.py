"""Step 6 of a tick: what to tell people (scaled, cannot scale, holding on missing data, metrics down or
back, health rules), each said when it starts and when it ends, not every tick.

Everything but a scale is a condition: its start is a `firing` message and its end a `resolved` one, both with
the same labels (alertname, severity, policy, target, ...), so Alertmanager resolves what it paged for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaler.decision.reasons import Reason, describe
from scaler.live.apply import TargetOutcome
from scaler.live.health import HealthEvent
from scaler.notify import Message, Severity

_NO_DATA = int(Reason.NO_DATA)

# The alertnames of the loop's own conditions (a health rule's alertname is the rule's name).
SCALED = "ScalerScaled"
CANNOT_SCALE = "ScalerCannotScale"
HOLDING = "ScalerHoldingOnMissingData"
METRICS_DOWN = "ScalerMetricsUnavailable"


@dataclass
class Memory:
    """What was already said, per target of one policy, so a condition is announced once and its end too."""

    holding: np.ndarray  # bool: held on missing data last tick
    held_since: np.ndarray  # when an announced hold began; NaN: none announced
    failing_since: np.ndarray  # when the writes began failing; NaN: they do not
    down_since: float | None = None  # when the policy's metric queries began failing

    @classmethod
    def empty(cls, targets: int) -> Memory:
        return cls(np.zeros(targets, dtype=bool), np.full(targets, np.nan), np.full(targets, np.nan))


def labels(alertname: str, severity: Severity, policy: str, target: str | None = None) -> dict[str, str]:
    """A condition's identity: the same for its firing and its resolved message."""
    out = {"alertname": alertname, "severity": severity, "policy": policy}
    if target is not None:
        out["target"] = target
    return out


def event_labels(e: HealthEvent) -> dict[str, str]:
    """A health event's labels, as notifications, Alertmanager and the runbook triggers see them: the rule's own
    labels, then alertname (the rule's name), policy, target and severity, which a rule label cannot change."""
    return {**e.rule.labels, "alertname": e.rule.name, "policy": e.policy, "target": e.target,
            "severity": e.rule.severity}


def notices(
    memory: Memory,
    *,
    policy: str,
    metric_names: Sequence[str],
    outcomes: Sequence[TargetOutcome],
    events: Sequence[HealthEvent],
    query_errors: dict[str, str],
    reasons: np.ndarray,
    observed: np.ndarray,
    now: float,
) -> list[Message]:
    """This tick's messages, in order: writes, health rules, the metric source, holds. `memory` moves on."""
    out: list[Message] = []
    where = {"policy": policy}
    for j, o in enumerate(outcomes):
        failing = labels(CANNOT_SCALE, "critical", policy, o.label)
        if o.written:
            out.append(Message("info", f"scaled {o.id}", f"{o.current} -> {o.desired} replicas "
                               f"({describe(o.reasons) or 'no reason'})", where,
                               labels=labels(SCALED, "info", policy, o.label), at=now))
        if o.write_error is not None:
            if np.isnan(memory.failing_since[j]):
                memory.failing_since[j] = now
                out.append(Message("critical", f"cannot scale {o.id}",
                                   f"writing {o.desired} replicas failed: {o.write_error}", where,
                                   status="firing", labels=failing, since=now, at=now))
        elif o.error is None and not np.isnan(memory.failing_since[j]):
            # read and written (or nothing left to write): the target can be scaled again
            out.append(Message("info", f"can scale {o.id} again", f"{o.current} -> {o.desired} replicas", where,
                               status="resolved", labels=failing, since=float(memory.failing_since[j]), at=now))
            memory.failing_since[j] = np.nan
    for e in events:
        severity = e.rule.severity if e.status == "firing" else "info"
        out.append(Message(severity, f"health rule {e.rule.name} {e.status}", f"{e.policy}/{e.target}: {e.evidence}",
                           {"policy": e.policy, "target": e.target}, status=e.status,  # type: ignore[arg-type]
                           labels=event_labels(e), since=e.since, at=now))
    # While the whole metric source is down, one message for the policy instead of one per target.
    down = labels(METRICS_DOWN, "critical", policy)
    if query_errors and memory.down_since is None:
        memory.down_since = now
        out.append(Message("critical", f"metrics unavailable for {policy}",
                           "holding every target at its current count (missing data never scales down): "
                           + "; ".join(f"{k}: {v}" for k, v in query_errors.items())[:500], where,
                           status="firing", labels=down, since=now, at=now))
    elif not query_errors and memory.down_since is not None:
        out.append(Message("info", f"metrics back for {policy}", "decisions resume", where, status="resolved",
                           labels=down, since=memory.down_since, at=now))
        memory.down_since = None
    holding = (np.asarray(reasons) & _NO_DATA) != 0
    if not query_errors:
        for j in np.flatnonzero(holding & ~memory.holding):
            missing = [metric_names[i] for i in range(len(metric_names)) if np.isnan(observed[i, j])]
            memory.held_since[j] = now
            out.append(Message("warning", f"holding {outcomes[j].id}", f"no fresh data for {', '.join(missing)}: "
                               f"holding at {outcomes[j].desired} replicas", where, status="firing",
                               labels=labels(HOLDING, "warning", policy, outcomes[j].label), since=now, at=now))
        for j in np.flatnonzero(~holding & ~np.isnan(memory.held_since)):
            out.append(Message("info", f"data back for {outcomes[j].id}", "decisions resume", where, status="resolved",
                               labels=labels(HOLDING, "warning", policy, outcomes[j].label),
                               since=float(memory.held_since[j]), at=now))
            memory.held_since[j] = np.nan
    memory.holding = holding
    return out
