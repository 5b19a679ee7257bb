"""A policy as the compiled decision path reads it: one named tuple of numbers and arrays, built once per policy.

This is the only place a policy setting is turned into what the kernel reads: adding a setting means a
field in the policy model (scaler.policy.model), a field and its line in `params_of` here, and the step
in scaler.decision.kernel that uses it.

A Params has columns: a policy has one, which every target reads; `side_by_side` lays several policies
that share a state layout next to each other, one column per target of each, so one compiled run tries
them all (scaler.simulate.sweep).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from scaler.decision.kernel.codes import (
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
    SEASONAL,
    SEASONAL_ROWS,
    SELECT_DISABLED,
    SELECT_MAX,
    SELECT_MIN,
    TREND,
    UTILIZATION,
)
from scaler.policy.model import Direction, MetricKind, Policy, Window

KINDS = {"utilization": UTILIZATION, "latency": LATENCY, "error_rate": ERROR_RATE, "gauge": GAUGE}
WINDOWS = {"last": LAST, "ewma": EWMA, "mean": MEAN, "max": MAX, "percentile": PERCENTILE, "trend": TREND,
           "seasonal": SEASONAL}
SELECTS = {"max": SELECT_MAX, "min": SELECT_MIN, "disabled": SELECT_DISABLED}


class Params(NamedTuple):
    """A policy as the compiled code reads it, by field name. Per-metric arrays are (metrics,); rate-limit
    policies are rows of (type, value, period) per direction.

    The settings a tuner varies are per column: `columns` is 1 for a policy (every target reads column 0),
    or the run's target count when policies sit side by side (target j reads column j). Per-column
    per-metric values (target, up, down) are stored metric by metric, (metrics x columns,): metric i's
    row is [i x columns, (i + 1) x columns), so a policy's are (metrics,) as for every other per-metric
    field. Everything that shapes the state (windows, panic windows, history slots) is shared."""

    hpa: bool  # algorithm: hpa (tolerance and HPA's proposals) instead of the hysteresis band
    legacy: bool  # hpa without behavior: the pre-v2 normalization path
    kind: np.ndarray  # int64 metric kind
    target: np.ndarray  # per column: (metrics x columns,)
    whole: np.ndarray  # bool: hpa reads the value as a whole percent (truncated), as HPA does resource utilization
    up: np.ndarray  # per column: scale up above (band)
    down: np.ndarray  # per column: scale down below (band)
    window: np.ndarray  # int64 window kind
    slots: np.ndarray  # int64 ring length (1 for last and ewma)
    alpha: np.ndarray  # ewma weight of a new sample
    q: np.ndarray  # percentile, 0-100
    interval: float  # seconds between ticks
    lead: np.ndarray  # trend, seasonal: seconds ahead of the newest sample
    fit_p: np.ndarray  # trend: a full ring's value = fit_p x S + fit_q x U (scaler.decision.kernel.windows)
    fit_q: np.ndarray
    bucket: np.ndarray  # seasonal: seconds per bucket (0 for the other windows)
    buckets: np.ndarray  # int64 seasonal: buckets kept, two periods (0 for the others)
    level: np.ndarray  # int64 seasonal: buckets of the recent level
    min_corr: np.ndarray  # seasonal: the correlation at the period it asks from
    headroom_q: np.ndarray  # seasonal: percentile of the tick-to-tick changes added (0 without: changes is then 0)
    changes: np.ndarray  # int64 seasonal: tick-to-tick changes kept for the headroom (0: none)
    short: np.ndarray  # int64 max with noisy_length: slots read while not noisy (slots: the noisy span)
    noise_alpha: np.ndarray  # max with noisy_length: weight of a new tick in the noise means (0: no noise rule)
    noise_above: np.ndarray  # max with noisy_length: noisy above this mean change over mean level
    tol_down: float
    tol_up: float
    min: float
    max: float
    has_fallback: bool
    fallback_after: int  # ticks with a metric missing before the fallback count applies
    fallback_replicas: float
    up_window: np.ndarray  # (columns,) stabilization seconds
    down_window: np.ndarray  # (columns,)
    up_select: int
    down_select: int
    up_policies: np.ndarray  # (k, 3) float: type, value, period
    down_policies: np.ndarray
    cooldown_up: np.ndarray  # (columns,) seconds
    cooldown_down: np.ndarray  # (columns,)
    has_panic: bool
    panic_threshold: float
    panic_hold: float
    panic_rows: np.ndarray  # int64 metric rows that have a panic window (utilization)
    panic_slots: np.ndarray  # int64 ring length of each panic window
    ring_start: np.ndarray  # int64 first row of each metric's ring in the stacked rings
    panic_start: np.ndarray  # int64 first row of each panic window's ring
    history_slots: int  # slots of the recommendation and scale-event histories
    columns: int  # 1: every target reads column 0; else one column per target


def params_of(policy: Policy) -> Params:
    """`policy` as the compiled code reads it."""
    b = policy.effective_behavior
    ms = policy.metrics
    dt = float(policy.interval)
    windows = [window_params(m.window, dt) for m in ms]
    slots = [w.slots for w in windows]
    panic_rows = [i for i, m in enumerate(ms) if m.kind == MetricKind.utilization] if policy.panic else []
    # Panic reads a short mean over each utilization metric's raw samples (Knative: 10 % of the window).
    panic_slots = [window_params(Window(type="mean", length=policy.panic.window), dt).slots for _ in panic_rows] \
        if policy.panic else []
    fits = [fit_coefficients(w.slots, dt, w.lead) if w.kind == TREND and w.slots > 1 else (0.0, 0.0) for w in windows]
    f = np.array
    return Params(
        hpa=policy.algorithm == "hpa",
        legacy=policy.legacy,
        kind=f([KINDS[str(m.kind)] for m in ms], dtype=np.int64),
        target=f([m.target for m in ms], dtype=float),
        whole=f([policy.whole_percent(m) for m in ms], dtype=np.bool_),
        up=f([m.up_threshold for m in ms], dtype=float),
        down=f([m.down_threshold for m in ms], dtype=float),
        window=f([w.kind for w in windows], dtype=np.int64),
        slots=f(slots, dtype=np.int64),
        alpha=f([w.alpha for w in windows], dtype=float),
        q=f([w.q for w in windows], dtype=float),
        interval=dt,
        lead=f([w.lead for w in windows], dtype=float),
        fit_p=f([x[0] for x in fits], dtype=float),
        fit_q=f([x[1] for x in fits], dtype=float),
        bucket=f([w.bucket for w in windows], dtype=float),
        buckets=f([w.buckets for w in windows], dtype=np.int64),
        level=f([w.level for w in windows], dtype=np.int64),
        min_corr=f([w.min_corr for w in windows], dtype=float),
        headroom_q=f([w.headroom_q for w in windows], dtype=float),
        changes=f([w.changes for w in windows], dtype=np.int64),
        short=f([w.short for w in windows], dtype=np.int64),
        noise_alpha=f([w.noise_alpha for w in windows], dtype=float),
        noise_above=f([w.noise_above for w in windows], dtype=float),
        tol_down=float(policy.tolerance.down),
        tol_up=float(policy.tolerance.up),
        min=float(policy.replicas.min),
        max=float(policy.replicas.max),
        has_fallback=policy.fallback is not None,
        fallback_after=int(policy.fallback.failure_threshold) if policy.fallback else 0,
        fallback_replicas=float(policy.fallback.replicas) if policy.fallback else 0.0,
        up_window=f([b.scale_up.stabilization], dtype=float),
        down_window=f([b.scale_down.stabilization], dtype=float),
        up_select=SELECTS[b.scale_up.select],
        down_select=SELECTS[b.scale_down.select],
        up_policies=rules(b.scale_up),
        down_policies=rules(b.scale_down),
        cooldown_up=f([b.scale_up.cooldown], dtype=float),
        cooldown_down=f([b.scale_down.cooldown], dtype=float),
        has_panic=policy.panic is not None,
        panic_threshold=float(policy.panic.threshold) if policy.panic else 0.0,
        panic_hold=float(policy.panic.hold) if policy.panic else 0.0,
        panic_rows=f(panic_rows, dtype=np.int64),
        panic_slots=f(panic_slots, dtype=np.int64),
        ring_start=starts(slots),
        panic_start=starts(panic_slots),
        history_slots=policy.history_slots(),
        columns=1,
    )


PER_COLUMN = ("target", "up", "down", "up_window", "down_window", "cooldown_up", "cooldown_down")
"""The fields that may differ between columns (target, up and down are (metrics x columns,))."""


def side_by_side(params: Sequence[Params], width: int) -> Params:
    """Policies next to each other in one run, each over `width` targets: policy k's settings in columns
    k x width .. (k + 1) x width - 1, so the run's targets are the `width` targets once per policy, in
    that order. Every field but PER_COLUMN must be the same in all (ValueError naming the first that is
    not), except the history slots: the longest is kept, and a history longer than a policy needs reads
    the same, since each step looks back by time. One policy over its own targets is that policy."""
    if not params or width < 1:
        raise ValueError(f"side by side needs at least one policy and one target, got {len(params)} and {width}")
    first = params[0]
    if len(params) == 1:
        return first
    for k, p in enumerate(params[1:], start=1):
        for name in Params._fields:
            if name in PER_COLUMN or name in ("history_slots", "columns"):
                continue
            if not _same(getattr(first, name), getattr(p, name)):
                raise ValueError(f"policy {k} differs from policy 0 in {name}: only {', '.join(PER_COLUMN)} may")
        if p.columns != 1:
            raise ValueError(f"policy {k} already has {p.columns} columns")
    columns = len(params) * width
    wide = {}
    for name in PER_COLUMN:
        # each policy's (metrics,) or (1,) values as (metrics or 1, width), the policies' blocks side by side
        rows = [np.repeat(getattr(p, name).reshape(-1, 1), width, axis=1) for p in params]
        wide[name] = np.ascontiguousarray(np.concatenate(rows, axis=1).ravel())
    return first._replace(**wide, history_slots=max(p.history_slots for p in params), columns=columns)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    return type(a) is type(b) and a == b


class WindowParams(NamedTuple):
    """One window at a tick interval, as the compiled windows read it."""

    kind: int  # LAST, EWMA, MEAN, MAX, PERCENTILE, TREND, SEASONAL
    slots: int  # ring length: 20 min at 15 s -> 80; 1 for last and ewma (no ring); seasonal: its whole block
    alpha: float  # ewma weight of a new sample
    q: float  # percentile, 0-100
    lead: float  # trend, seasonal: seconds ahead of the newest sample
    bucket: float = 0.0  # seasonal: seconds per bucket
    buckets: int = 0  # seasonal: buckets of two periods (a day of 5-minute buckets: 576)
    level: int = 0  # seasonal: buckets of the recent level (30 min of 5-minute buckets: 6)
    min_corr: float = 0.0  # seasonal: asks from this correlation at the period
    headroom_q: float = 0.0  # seasonal: percentile of the tick-to-tick changes added (0 without: no changes kept)
    changes: int = 0  # seasonal: tick-to-tick changes kept for the headroom (30 min at 15 s: 120)
    short: int = 1  # max with noisy_length: slots read while not noisy (`length`); else slots
    noise_alpha: float = 0.0  # max with noisy_length: weight of a new tick in the noise means; 0: no noise rule
    noise_above: float = 0.0  # max with noisy_length: noisy above this mean change over mean level


def window_params(window: Window, interval: float) -> WindowParams:
    """`window` at this tick interval."""
    if window.type == "seasonal":
        # Its block: two periods of buckets, the running figures, then the changes (a day of 5-minute buckets
        # with a 30-minute headroom at 15 s: 576 + 8 + 120 = 704 rows).
        bucket = window.effective_bucket
        return WindowParams(
            kind=SEASONAL,
            slots=window.buckets + SEASONAL_ROWS + window.changes(interval),
            alpha=1.0,
            q=window.effective_q,
            lead=window.effective_lead,
            bucket=float(bucket),
            buckets=window.buckets,
            level=max(1, int(math.ceil(window.effective_level / bucket - 1e-9))),
            min_corr=float(window.effective_min_correlation),
            headroom_q=float(window.headroom_q) if window.headroom_q is not None else 0.0,
            changes=window.changes(interval),
        )
    slots = window.slots(interval)
    noisy = window.noisy_length is not None
    return WindowParams(
        kind=WINDOWS[window.type],
        slots=slots,
        # A half-life of h seconds at interval i: after h/i ticks an old sample weighs half.
        # 30 s half-life at 15 s ticks -> alpha = 1 - 0.5**(15/30) = 0.293.
        alpha=1.0 - 0.5 ** (interval / window.effective_half_life) if window.type == "ewma" else 1.0,
        q=window.effective_q,
        lead=window.effective_lead if window.type == "trend" else 0.0,
        # the noise means reach back about noise_span: a tick weighs interval / span (15 s over 30 min: 1/120)
        short=max(1, int(math.ceil(window.length / interval))) if noisy else slots,
        noise_alpha=min(1.0, interval / window.effective_noise_span) if noisy else 0.0,
        noise_above=float(window.effective_noisy_above) if noisy else 0.0,
    )


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


def rules(direction: Direction) -> np.ndarray:
    """A behavior direction's rate-limit policies as rows of (type, value, period)."""
    out = [[PODS if r.type == "pods" else PERCENT, float(r.value), float(r.period)] for r in direction.policies]
    return np.array(out, dtype=float).reshape(-1, 3)


def starts(slots: list[int]) -> np.ndarray:
    """First row of each ring when rings of these lengths are stacked: [2, 80, 1] -> [0, 2, 82]."""
    if not slots:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(slots, dtype=np.int64)[:-1]]).astype(np.int64)
