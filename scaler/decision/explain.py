"""Human-readable reasons for a decision: which metric asked for what, and which step changed the number."""

from __future__ import annotations

import math

import numpy as np

from scaler.decision.reasons import Reason, describe
from scaler.policy.model import MetricKind, Policy


def _num(x: float) -> str:
    return "no data" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def explain(
    policy: Policy,
    *,
    observed: np.ndarray,
    smoothed: np.ndarray,
    replicas: float,
    ready: float,
    desired: float,
    reasons: int,
) -> str:
    """One line per decision, e.g.
    '4 -> 5 [METRIC_UP]: cpu 85 (smoothed 83.2) > 80: ceil(4 * 83.2 / 70) = 5'."""
    parts = []
    base = ready if ready > 0 else replicas
    for i, m in enumerate(policy.metrics):
        s = float(smoothed[i])
        text = f"{m.name} {_num(float(observed[i]))}"
        if m.window.type != "last":
            text += f" (smoothed {_num(s)})"
        if not math.isnan(s):
            if s > m.up_threshold:
                text += f" > {m.up_threshold:g}"
            elif s < m.down_threshold:
                text += f" < {m.down_threshold:g}"
            else:
                text += f" within [{m.down_threshold:g}, {m.up_threshold:g}]"
            if m.kind == MetricKind.gauge:
                text += f": ceil({_num(s)} / {m.target:g}) = {math.ceil(round(s / m.target, 9))}"
            else:
                text += f": ceil({base:g} * {_num(s)} / {m.target:g}) = {math.ceil(round(base * s / m.target, 9))}"
        parts.append(text)
    head = f"{replicas:g} -> {desired:g}" if desired != replicas else f"hold {replicas:g}"
    tags = describe(int(reasons)) or "NO_CHANGE"
    steps = _step_notes(policy, int(reasons))
    return f"{head} [{tags}]: " + "; ".join(parts) + (f" | {steps}" if steps else "")


_NOTES = {
    Reason.NO_DATA: "a metric has no fresh data: holding (missing data never scales down)",
    Reason.FALLBACK: "blind for too long: raised to fallback replicas",
    Reason.SCALE_UP_STABILIZED: "held back by a lower recommendation in the scale-up window",
    Reason.SCALE_DOWN_STABILIZED: "held up by a higher recommendation in the scale-down window",
    Reason.SCALE_UP_LIMIT: "capped by the scale-up rate limit",
    Reason.SCALE_DOWN_LIMIT: "capped by the scale-down rate limit",
    Reason.TOO_MANY_REPLICAS: "clamped to replicas.max",
    Reason.TOO_FEW_REPLICAS: "clamped to replicas.min",
    Reason.SCALE_UP_COOLDOWN: "scale-up cooldown",
    Reason.SCALE_DOWN_COOLDOWN: "scale-down cooldown",
    Reason.PANIC: "panic mode: burst on the short window, scale-down blocked",
    Reason.DISABLED: "current replicas are 0: autoscaling is off",
    Reason.OUT_OF_RANGE: "current replicas outside [min, max]: moved to the bound",
}


def _step_notes(policy: Policy, mask: int) -> str:
    return "; ".join(note for bit, note in _NOTES.items() if mask & bit)
