"""A policy as the compiled decision path reads it: plain numbers and arrays (scaler.decision.kernel.tick has no enums,
models or dicts), built once per policy."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from scaler.decision.kernel.tick import (
    ERROR_RATE,
    EWMA,
    GAUGE,
    LAST,
    LATENCY,
    MAX,
    MEAN,
    PERCENT,
    PERCENTILE,
    PODS,
    SELECT_DISABLED,
    SELECT_MAX,
    SELECT_MIN,
    TREND,
    UTILIZATION,
)

KINDS = {"utilization": UTILIZATION, "latency": LATENCY, "error_rate": ERROR_RATE, "gauge": GAUGE}
WINDOWS = {"last": LAST, "ewma": EWMA, "mean": MEAN, "max": MAX, "percentile": PERCENTILE, "trend": TREND}
SELECTS = {"max": SELECT_MAX, "min": SELECT_MIN, "disabled": SELECT_DISABLED}


class Params(NamedTuple):
    """A policy as the compiled code reads it. Per-metric arrays are (metrics,); rate-limit policies are
    rows of (type, value, period) per direction."""

    hpa: bool
    legacy: bool
    kind: np.ndarray  # int64 metric kind
    target: np.ndarray
    up: np.ndarray
    down: np.ndarray
    window: np.ndarray  # int64 window kind
    slots: np.ndarray  # int64 ring length
    alpha: np.ndarray  # ewma weight
    q: np.ndarray  # percentile, 0-100
    interval: float
    lead: np.ndarray  # trend: seconds ahead
    fit_p: np.ndarray  # trend: value = fit_p x S + fit_q x U for a full ring
    fit_q: np.ndarray
    tol_down: float
    tol_up: float
    min: float
    max: float
    has_fallback: bool
    fallback_after: int
    fallback_replicas: float
    up_window: float
    down_window: float
    up_select: int
    down_select: int
    up_policies: np.ndarray  # (k, 3) float: type, value, period
    down_policies: np.ndarray
    cooldown_up: float
    cooldown_down: float
    has_panic: bool
    panic_threshold: float
    panic_hold: float
    panic_rows: np.ndarray  # int64 metric rows that have a panic window (utilization)
    panic_slots: np.ndarray  # int64 ring length of each panic window
    ring_start: np.ndarray  # int64 first row of each metric's ring in the stacked rings
    panic_start: np.ndarray  # int64 first row of each panic window's ring


def fit_coefficients(slots: int, interval: float, lead: float) -> tuple[float, float]:
    """(p, q) with a full trend ring's value `lead` ahead = p x S + q x U (S = sum of y, U = sum of y x age).

    With t = -age x interval: sum y t = -interval x U, and n, sum t, sum t^2 are fixed, so
    slope = (n sum(yt) - sum(t) S) / (n sum(t^2) - sum(t)^2) and value = S / n + slope x (lead - sum(t) / n).
    """
    t = np.arange(slots) * -interval
    n, st, stt = float(slots), float(t.sum()), float((t * t).sum())
    den = n * stt - st * st
    if den == 0:
        return 1.0 / n, 0.0
    a, b = -n * interval / den, -st / den  # slope = a U + b S
    e = lead - st / n
    return 1.0 / n + e * b, e * a


def params(spec) -> Params:
    """A compiled Spec (scaler.decision.decide.Spec) as the compiled code reads it."""
    pol = spec.policy
    b = pol.effective_behavior
    sm = spec.smoothers
    fits = [fit_coefficients(s.slots, pol.interval, s.lead) if s.kind == "trend" and s.slots > 1 else (0.0, 0.0)
            for s in sm]
    f = np.array
    return Params(
        hpa=pol.algorithm == "hpa",
        legacy=pol.legacy,
        kind=f([KINDS[str(k)] for k in spec.kinds], dtype=np.int64),
        target=spec.target.ravel().astype(float),
        up=spec.up.ravel().astype(float),
        down=spec.down.ravel().astype(float),
        window=f([WINDOWS[s.kind] for s in sm], dtype=np.int64),
        slots=f([s.slots for s in sm], dtype=np.int64),
        alpha=f([s.alpha for s in sm], dtype=float),
        q=f([s.q for s in sm], dtype=float),
        interval=float(pol.interval),
        lead=f([s.lead for s in sm], dtype=float),
        fit_p=f([x[0] for x in fits], dtype=float),
        fit_q=f([x[1] for x in fits], dtype=float),
        tol_down=float(pol.tolerance.down),
        tol_up=float(pol.tolerance.up),
        min=float(spec.min),
        max=float(spec.max),
        has_fallback=pol.fallback is not None,
        fallback_after=int(pol.fallback.failure_threshold) if pol.fallback else 0,
        fallback_replicas=float(pol.fallback.replicas) if pol.fallback else 0.0,
        up_window=float(b.scale_up.stabilization),
        down_window=float(b.scale_down.stabilization),
        up_select=SELECTS[b.scale_up.select],
        down_select=SELECTS[b.scale_down.select],
        up_policies=rules(b.scale_up),
        down_policies=rules(b.scale_down),
        cooldown_up=float(b.scale_up.cooldown),
        cooldown_down=float(b.scale_down.cooldown),
        has_panic=pol.panic is not None,
        panic_threshold=float(pol.panic.threshold) if pol.panic else 0.0,
        panic_hold=float(pol.panic.hold) if pol.panic else 0.0,
        panic_rows=f(spec.utilization_rows if pol.panic else (), dtype=np.int64),
        panic_slots=f([s.slots for s in spec.panic_smoothers], dtype=np.int64),
        ring_start=starts([s.slots for s in sm]),
        panic_start=starts([s.slots for s in spec.panic_smoothers]),
    )


def rules(direction) -> np.ndarray:
    """A behavior direction's rate-limit policies as rows of (type, value, period)."""
    out = [[PODS if r.type == "pods" else PERCENT, float(r.value), float(r.period)] for r in direction.policies]
    return np.array(out, dtype=float).reshape(-1, 3)


def starts(slots: list[int]) -> np.ndarray:
    """First row of each ring when rings of these lengths are stacked: [2, 80, 1] -> [0, 2, 82]."""
    return np.concatenate([[0], np.cumsum(slots, dtype=np.int64)[:-1]]).astype(np.int64) if slots else \
        np.zeros(0, dtype=np.int64)
