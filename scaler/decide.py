"""The one decision path: observations -> smoothing -> proposal -> stabilize -> rate limit -> clamp, with reasons.

`decide` is a pure function of (spec, state, observations, current replicas, now) over arrays shaped
(targets,) — the live loop and `scaler simulate` both call it; they differ only in where observations come
from and whether a target is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaler import behavior as bh
from scaler import hpa
from scaler.history import History
from scaler.policy import MetricKind, Policy
from scaler.reasons import Reason
from scaler.smoothing import Smoother, SmoothState


@dataclass(frozen=True)
class Spec:
    """A policy compiled to arrays once, so a tick does no parsing. Metric arrays are (metrics, 1)."""

    policy: Policy
    target: np.ndarray
    up: np.ndarray
    down: np.ndarray
    gauge: np.ndarray  # bool: proposal is total / per-replica target, not ratio * replicas
    utilization: np.ndarray  # bool: panic looks at these
    smoothers: tuple[Smoother, ...]
    panic_smoothers: tuple[Smoother, ...]
    min: int
    max: int
    slots: int

    @classmethod
    def of(cls, policy: Policy) -> Spec:
        col = lambda xs, dt=float: np.array(xs, dtype=dt).reshape(-1, 1)  # noqa: E731
        ms = policy.metrics
        panic = ()
        if policy.panic:
            from scaler.policy import Window

            short = Window(type="mean", length=policy.panic.window)
            panic = tuple(Smoother.compile(short, policy.interval) for _ in ms)
        return cls(
            policy=policy,
            target=col([m.target for m in ms]),
            up=col([m.up_threshold for m in ms]),
            down=col([m.down_threshold for m in ms]),
            gauge=col([m.kind == MetricKind.gauge for m in ms], bool),
            utilization=col([m.kind == MetricKind.utilization for m in ms], bool),
            smoothers=tuple(Smoother.compile(m.window, policy.interval) for m in ms),
            panic_smoothers=panic,
            min=policy.replicas.min,
            max=policy.replicas.max,
            slots=policy.history_slots(),
        )

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.policy.metrics]


@dataclass(frozen=True)
class State:
    """Everything a decision remembers between ticks, per target. Persist it to survive a restart."""

    smooth: tuple[SmoothState, ...]
    panic_smooth: tuple[SmoothState, ...]
    recs: History  # raw recommendations (HPA: stabilization history)
    up_events: History  # replicas added per tick (rate limits)
    down_events: History  # replicas removed per tick
    last_up: np.ndarray  # unix s of the last scale-up, NaN = never
    last_change: np.ndarray  # unix s of the last scale action either way
    panic_until: np.ndarray  # panic mode lasts while now < panic_until
    blind: np.ndarray  # consecutive ticks with a metric missing


def initial_state(spec: Spec, current: np.ndarray, now: float) -> State:
    """A fresh state that, like HPA after a restart, counts `current` as a recommendation made `now`:
    it holds back scale-down for one down-stabilization window instead of trusting an empty history."""
    n = len(current)
    recs = History.empty(n, spec.slots).push(now, np.asarray(current, dtype=float))
    nan = np.full(n, np.nan)
    return State(
        smooth=tuple(s.empty(n) for s in spec.smoothers),
        panic_smooth=tuple(s.empty(n) for s in spec.panic_smoothers),
        recs=recs,
        up_events=History.empty(n, spec.slots),
        down_events=History.empty(n, spec.slots),
        last_up=nan,
        last_change=nan.copy(),
        panic_until=nan.copy(),
        blind=np.zeros(n, dtype=np.int64),
    )


@dataclass(frozen=True)
class Decision:
    """The outcome for every target, with each stage's value so a decision can be explained."""

    desired: np.ndarray  # (targets,) int64
    reasons: np.ndarray  # (targets,) int64 mask of scaler.reasons.Reason
    state: State
    observed: np.ndarray  # (metrics, targets) what was read this tick (NaN = no data)
    smoothed: np.ndarray  # (metrics, targets) after the windows
    proposals: np.ndarray  # (metrics, targets) replicas each metric asks for (NaN = none)
    proposal: np.ndarray  # (targets,) after the band / tolerance and data checks
    stabilized: np.ndarray  # (targets,) after stabilization
    limited: np.ndarray  # (targets,) after rate limits and min/max


# Reason bits as plain ints: numpy handles them without the enum's per-call overhead.
_NO_DATA, _FALLBACK, _IN_BAND = int(Reason.NO_DATA), int(Reason.FALLBACK), int(Reason.IN_BAND)
_UP, _DOWN, _PARTIAL = int(Reason.METRIC_UP), int(Reason.METRIC_DOWN), int(Reason.PARTIAL_DATA_UP)
_UP_STAB, _DOWN_STAB = int(Reason.SCALE_UP_STABILIZED), int(Reason.SCALE_DOWN_STABILIZED)
_UP_COOL, _DOWN_COOL, _PANIC = int(Reason.SCALE_UP_COOLDOWN), int(Reason.SCALE_DOWN_COOLDOWN), int(Reason.PANIC)


def _ceil(x: np.ndarray) -> np.ndarray:
    # 4 * 85 / 70 = 4.857 -> 5; a value a hair over an integer from float error (3.0000000001) stays 3.
    return np.ceil(x - 1e-9)


def _scaler_proposals(spec: Spec, smoothed: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Replicas each metric asks for: ceil(base * value / target), or ceil(value / target) for gauges.

    70 % target, 85 % observed on 4 ready -> ceil(4 * 85 / 70) = 5; queue 120 at 10 per replica -> 12.
    """
    ratio = smoothed / spec.target
    return _ceil(np.where(spec.gauge, ratio, ratio * base))


def _band(spec: Spec, smoothed: np.ndarray, proposals: np.ndarray, current: np.ndarray):
    """Hysteresis: up if any metric is above its up threshold; down only if every metric is below its down
    threshold. Returns (raw proposal, reasons, any_missing, hold)."""
    any_missing = np.isnan(smoothed).any(axis=0)
    above = (smoothed > spec.up).any(axis=0)  # NaN compares False: a missing metric never votes
    below = (smoothed < spec.down).all(axis=0)  # ...and so blocks an all-below scale-down
    best = np.fmax.reduce(proposals, axis=0)  # the highest ask among metrics with data
    up = above & (best > current)
    down = below & (best < current)
    raw = np.where(up | down, best, current)
    # Missing data never lowers the count: without an up signal from the metrics we do have, hold.
    hold = any_missing & ~up
    reasons = up * _UP + down * _DOWN + (~(up | down) & ~any_missing) * _IN_BAND
    reasons += (up & any_missing) * _PARTIAL + hold * _NO_DATA
    return raw, reasons, any_missing, hold


def _hpa_raw(spec: Spec, smoothed: np.ndarray, current: np.ndarray, ready: np.ndarray):
    """HPA: max of per-metric proposals; if every metric failed, or some failed and the max would scale
    down, do nothing and record nothing."""
    kinds = [m.kind for m in spec.policy.metrics]
    props = hpa.proposals(smoothed, spec.target.ravel(), kinds, current, ready, spec.policy.tolerance)
    missing = np.isnan(props)
    any_missing = missing.any(axis=0)
    best = np.fmax.reduce(props, axis=0)
    invalid = missing.all(axis=0) | (any_missing & (best < current))
    raw = np.where(invalid, current, best)
    valid = ~invalid
    reasons = invalid * _NO_DATA + (valid & (raw > current)) * _UP + (valid & (raw < current)) * _DOWN
    reasons += (valid & (raw == current)) * _IN_BAND + (valid & any_missing) * _PARTIAL
    return props, raw, reasons, any_missing, invalid


def decide(
    spec: Spec,
    state: State,
    observed: np.ndarray,
    *,
    current: np.ndarray,
    now: float,
    ready: np.ndarray | None = None,
    reuse_state: bool = False,
) -> Decision:
    """One tick for every target of one policy.

    observed: (metrics, targets) latest raw samples, NaN where a read failed or was stale.
    current: replicas the target has now (read every tick; someone else may have changed them).
    ready: replicas serving traffic (defaults to current); utilization proposals scale from it.
    reuse_state: write into `state`'s buffers instead of copying them; the caller must not use `state`
    again (the simulator sets it; the live loop keeps the default).
    """
    with np.errstate(all="ignore"):
        return _decide(spec, state, np.asarray(observed, dtype=float), np.asarray(current, dtype=float),
                       now, current if ready is None else np.asarray(ready, dtype=float), reuse_state)


def _decide(spec: Spec, state: State, observed, current, now: float, ready, reuse: bool) -> Decision:
    pol = spec.policy
    n = current.shape[0]
    smoothed = np.empty((len(spec.smoothers), n))
    smooth = []
    for i, sm in enumerate(spec.smoothers):
        smoothed[i], st = sm.step(state.smooth[i], observed[i], inplace=reuse)
        smooth.append(st)

    if pol.algorithm == "hpa":
        proposals, raw, reasons, any_missing, hold = _hpa_raw(spec, smoothed, current, ready)
    else:
        # Replicas still starting carry no load yet; with none ready, size from the requested count.
        base = np.where(ready > 0, ready, current)
        proposals = _scaler_proposals(spec, smoothed, base)
        raw, reasons, any_missing, hold = _band(spec, smoothed, proposals, current)

    blind = np.where(any_missing, state.blind + 1, 0)
    fb = pol.fallback
    if fb is not None:
        # Blind long enough: raise to the fallback count, never below current or a healthy up proposal.
        use = (blind >= fb.failure_threshold) & (min(fb.replicas, spec.max) > raw)
        raw = np.where(use, min(fb.replicas, spec.max), raw)
        reasons = reasons + use * _FALLBACK
        hold = hold & ~use

    b = pol.effective_behavior
    stabilized, desired = raw.copy(), raw.copy()
    step_reasons = np.zeros(n, dtype=np.int64)
    if pol.legacy:
        desired, step_reasons = hpa.legacy_normalize(raw, current, state.recs, now, spec.min, spec.max)
        stabilized = desired
    else:
        # Where raw == current every later step returns current: the stabilized value is clamped between
        # min(raw, history) <= current and max(raw, history) >= current, and rate limits and cooldowns
        # only act on a change. So only targets that want to move are worked on (a handful per tick).
        act = np.flatnonzero((raw != current) & ~hold)
        if act.size:
            cur, want = current[act], raw[act]
            stab = bh.stabilize(cur, want, state.recs.take(act), now, b.scale_up.stabilization,
                                b.scale_down.stabilization)
            r = (stab < want) * _UP_STAB + (stab > want) * _DOWN_STAB
            lim, lim_r = bh.rate_limit(stab, cur, state.up_events.take(act), state.down_events.take(act),
                                       now, b, spec.min, spec.max)
            r = r | lim_r
            if pol.algorithm == "scaler" and (b.scale_up.cooldown or b.scale_down.cooldown):
                # No scale-up too soon after a scale-up; no scale-down too soon after any scale action.
                cool_up = (lim > cur) & (now - state.last_up[act] < b.scale_up.cooldown)
                cool_down = (lim < cur) & (now - state.last_change[act] < b.scale_down.cooldown)
                lim = np.where(cool_up | cool_down, cur, lim)
                r = r | cool_up * _UP_COOL | cool_down * _DOWN_COOL
            stabilized[act], desired[act], step_reasons[act] = stab, lim, r

    panic_smooth, panic_until = state.panic_smooth, state.panic_until
    if pol.panic is not None:
        desired, panic_until, panic_smooth, panic_reasons = _panic(spec, state, observed, current, ready, now,
                                                                   desired, reuse)
        step_reasons |= panic_reasons

    # Missing data: hold exactly. Out-of-range counts go to the bound without reading metrics (HPA).
    desired = np.where(hold, current, desired)
    reasons = reasons | np.where(hold, 0, step_reasons)
    if current.max(initial=spec.min) > spec.max or current.min(initial=spec.max) < spec.min or not current.all():
        forced, forced_reasons = hpa.precheck(current, spec.min, spec.max)
        is_forced = ~np.isnan(forced)
        desired = np.where(is_forced, forced, desired)
        reasons = np.where(is_forced, forced_reasons, reasons)
        hold = hold | is_forced

    # Record the raw recommendation (none where data was missing or the count was forced).
    recs = state.recs.push(now, np.where(hold, np.nan, raw), inplace=reuse)
    change = desired - current
    up_events = state.up_events.push(now, np.maximum(change, 0.0), inplace=reuse)
    down_events = state.down_events.push(now, np.maximum(-change, 0.0), inplace=reuse)
    new_state = State(
        smooth=tuple(smooth),
        panic_smooth=panic_smooth,
        recs=recs,
        up_events=up_events,
        down_events=down_events,
        last_up=np.where(change > 0, now, state.last_up),
        last_change=np.where(change != 0, now, state.last_change),
        panic_until=panic_until,
        blind=blind,
    )
    return Decision(
        desired=desired.astype(np.int64),
        reasons=np.asarray(reasons, dtype=np.int64),
        state=new_state,
        observed=observed,
        smoothed=smoothed,
        proposals=proposals,
        proposal=raw,
        stabilized=stabilized,
        limited=desired,
    )


def _panic(spec: Spec, state: State, observed, current, ready, now, desired, reuse):
    """Knative-style panic: when short-window load reaches threshold x target on a utilization metric,
    scale straight to the short-window proposal (no stabilization, rate limit or cooldown) and block
    scale-down until `hold` seconds pass without a trigger. 200 % of a 70 % target = 140 % -> panic."""
    p = spec.policy.panic
    short = np.empty_like(observed)
    smooth = []
    for i, sm in enumerate(spec.panic_smoothers):
        short[i], st = sm.step(state.panic_smooth[i], observed[i], inplace=reuse)
        smooth.append(st)
    ratio = np.fmax.reduce(np.where(spec.utilization, short / spec.target, np.nan), axis=0)
    trigger = ratio >= p.threshold
    panic_until = np.where(trigger, now + p.hold, state.panic_until)
    in_panic = trigger | (now < state.panic_until)
    if not in_panic.any():
        return desired, panic_until, tuple(smooth), np.zeros(desired.shape, dtype=np.int64)
    base = np.where(ready > 0, ready, current)
    burst = np.where(trigger, np.minimum(_ceil(base * ratio), spec.max), 0)
    out = np.where(in_panic, np.maximum(np.maximum(desired, current), burst), desired)
    return out, panic_until, tuple(smooth), (in_panic & (out != desired)) * _PANIC
