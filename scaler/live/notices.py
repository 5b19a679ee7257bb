"""Step 6 of a tick: what to tell people (scaled, cannot scale, holding on missing data, metrics down or
back, health rules), each said when it starts and when it ends, not every tick."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaler.decision.reasons import Reason, describe
from scaler.live.apply import TargetOutcome
from scaler.live.health import HealthEvent
from scaler.notify import Message

_NO_DATA = int(Reason.NO_DATA)


@dataclass
class Memory:
    """What was already said, per target of one policy, so a condition is announced once."""

    holding: np.ndarray  # bool: held on missing data last tick
    failing: np.ndarray  # bool: the last write failed
    metrics_down: bool = False

    @classmethod
    def empty(cls, targets: int) -> Memory:
        return cls(np.zeros(targets, dtype=bool), np.zeros(targets, dtype=bool))


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
) -> list[Message]:
    """This tick's messages, in order: writes, health rules, the metric source, holds. `memory` moves on."""
    out: list[Message] = []
    for j, o in enumerate(outcomes):
        if o.written:
            out.append(Message("info", f"scaled {o.id}", f"{o.current} -> {o.desired} replicas "
                               f"({describe(o.reasons) or 'no reason'})", {"policy": policy}))
            memory.failing[j] = False
        elif o.write_error is not None:
            if not memory.failing[j]:
                out.append(Message("critical", f"cannot scale {o.id}",
                                   f"writing {o.desired} replicas failed: {o.write_error}", {"policy": policy}))
            memory.failing[j] = True
    for e in events:
        severity = e.rule.severity if e.status == "firing" else "info"
        out.append(Message(severity, f"health rule {e.rule.name} {e.status}", f"{e.policy}/{e.target}: {e.evidence}",
                           {"policy": e.policy, "target": e.target}))
    # While the whole metric source is down, one message for the policy instead of one per target.
    if query_errors and not memory.metrics_down:
        out.append(Message("critical", f"metrics unavailable for {policy}",
                           "holding every target at its current count (missing data never scales down): "
                           + "; ".join(f"{k}: {v}" for k, v in query_errors.items())[:500], {"policy": policy}))
    elif not query_errors and memory.metrics_down:
        out.append(Message("info", f"metrics back for {policy}", "decisions resume", {"policy": policy}))
    memory.metrics_down = bool(query_errors)
    holding = (np.asarray(reasons) & _NO_DATA) != 0
    if not query_errors:
        for j in np.flatnonzero(holding & ~memory.holding):
            missing = [metric_names[i] for i in range(len(metric_names)) if np.isnan(observed[i, j])]
            out.append(Message("warning", f"holding {outcomes[j].id}", f"no fresh data for {', '.join(missing)}: "
                               f"holding at {outcomes[j].desired} replicas", {"policy": policy}))
    memory.holding = holding
    return out
