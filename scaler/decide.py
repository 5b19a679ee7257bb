"""The one decision path: observations -> smoothing -> proposal -> stabilize -> rate limit -> clamp, with reasons.

`decide` is a pure function of (spec, state, observations, current replicas, now) over arrays shaped
(targets,) — the live loop and `scaler simulate` both call it; they differ only in where observations come
from and whether a target is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scaler import behavior as bh
from scaler import hpa
from scaler.history import History, build
from scaler.policy import MetricKind, Policy
from scaler.reasons import Reason
from scaler.smoothing import Smoother, SmoothState

# Latency and error rate are not proportional to load: a saturated replica's p95 sits at its timeout
# (10 s against a 0.5 s target would ask for 20x). One decision asks for at most 2x the serving replicas
# from them; the next decision sees the effect.
MAX_SIGNAL_RATIO = 2.0


@dataclass(frozen=True)
class Spec:
    """A policy compiled to arrays once, so a tick does no parsing. Metric arrays are (metrics, 1)."""

    policy: Policy
    target: np.ndarray
    up: np.ndarray
    down: np.ndarray
    gauge: np.ndarray  # bool: proposal is total / per-replica target, not ratio * replicas
    utilization: np.ndarray  # bool: panic looks at these
    load: np.ndarray  # bool: utilization metrics whose window smooths: the window averages value x ready
    bounded: np.ndarray  # bool: latency and error rate, whose ask is capped at MAX_SIGNAL_RATIO x ready
    smoothers: tuple[Smoother, ...]
    panic_smoothers: tuple[Smoother, ...]  # one per utilization metric (the only ones panic reads)
    min: int
    max: int
    slots: int
    # Derived from the fields above in __post_init__: plain Python values a tick reads without re-deriving.
    kinds: tuple[MetricKind, ...] = field(init=False, repr=False, compare=False)
    utilization_rows: tuple[int, ...] = field(init=False, repr=False, compare=False)
    load_rows: tuple[int, ...] = field(init=False, repr=False, compare=False)  # rows where `load` is set
    bounded_rows: tuple[int, ...] = field(init=False, repr=False, compare=False)  # rows where `bounded` is set
    gauges: int = field(init=False, repr=False, compare=False)  # how many metrics are gauges
    smooths: bool = field(init=False, repr=False, compare=False)  # some window is not "last"

    def __post_init__(self) -> None:
        kinds = tuple(MetricKind(m.kind) for m in self.policy.metrics)
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "utilization_rows",
                           tuple(i for i, k in enumerate(kinds) if k == MetricKind.utilization))
        object.__setattr__(self, "load_rows", tuple(int(i) for i in np.flatnonzero(self.load.ravel())))
        object.__setattr__(self, "bounded_rows", tuple(int(i) for i in np.flatnonzero(self.bounded.ravel())))
        object.__setattr__(self, "gauges", sum(k == MetricKind.gauge for k in kinds))
        object.__setattr__(self, "smooths", any(sm.kind != "last" for sm in self.smoothers))

    @classmethod
    def of(cls, policy: Policy) -> Spec:
        col = lambda xs, dt=float: np.array(xs, dtype=dt).reshape(-1, 1)  # noqa: E731
        ms = policy.metrics
        panic = ()
        if policy.panic:
            from scaler.policy import Window

            short = Window(type="mean", length=policy.panic.window)
            panic = tuple(Smoother.compile(short, policy.interval) for m in ms if m.kind == MetricKind.utilization)
        return cls(
            policy=policy,
            target=col([m.target for m in ms]),
            up=col([m.up_threshold for m in ms]),
            down=col([m.down_threshold for m in ms]),
            gauge=col([m.kind == MetricKind.gauge for m in ms], bool),
            utilization=col([m.kind == MetricKind.utilization for m in ms], bool),
            load=col([m.kind == MetricKind.utilization and m.window.type != "last" for m in ms], bool),
            bounded=col([m.kind in (MetricKind.latency, MetricKind.error_rate) for m in ms], bool),
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
    # Both event histories are pushed together every tick, so they can share one array of slot times
    # (while they are updated in place): rate limits then find a period's slots once for both.
    up_events = History.empty(n, spec.slots)
    return State(
        smooth=tuple(s.empty(n) for s in spec.smoothers),
        panic_smooth=tuple(s.empty(n) for s in spec.panic_smoothers),
        recs=recs,
        up_events=up_events,
        down_events=History(t=up_events.t, v=np.full((spec.slots, n), np.nan)),
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


def _band_reasons(up, down, any_missing):
    """Reasons of the hysteresis band from its three outcomes per target."""
    hold = any_missing & ~up
    reasons = up * _UP + down * _DOWN + (~(up | down) & ~any_missing) * _IN_BAND
    return reasons + (up & any_missing) * _PARTIAL + hold * _NO_DATA


def _hpa_reasons(invalid, gt, lt, eq, any_missing):
    """Reasons of HPA's proposal step from raw vs current (gt, lt, eq) and the data checks."""
    valid = ~invalid
    reasons = invalid * _NO_DATA + (valid & gt) * _UP + (valid & lt) * _DOWN
    return reasons + (valid & eq) * _IN_BAND + (valid & any_missing) * _PARTIAL


def _table(formula, inputs: int) -> np.ndarray:
    """`formula` evaluated once for every combination of its boolean inputs, indexed by the combination
    (bit j of the index is input j). A tick then looks a reason up per target with one take instead of
    evaluating the formula's dozen array operations; the table holds exactly what the formula gives."""
    index = np.arange(2**inputs)
    return np.asarray(formula(*[((index >> j) & 1).astype(bool) for j in range(inputs)]), dtype=np.int64)


_BAND_TABLE = _table(_band_reasons, 3)
_HPA_TABLE = _table(_hpa_reasons, 5)


def _lookup(table: np.ndarray, n: int, *inputs: np.ndarray | None) -> np.ndarray:
    """table[index] per target, the index built from bool arrays (None = all False)."""
    index = None
    for j, b in enumerate(inputs):
        if b is None:
            continue
        bit = b.view(np.uint8)  # a bool array is bytes of 0 and 1
        bit = bit << j if j else bit
        index = bit if index is None else index | bit
    return np.full(n, table[0]) if index is None else table.take(index)


def _ceil(x: np.ndarray) -> np.ndarray:
    # 4 * 85 / 70 = 4.857 -> 5; a value a hair over an integer from float error (3.0000000001) stays 3.
    return np.ceil(x - 1e-9)


def _scaler_proposals(spec: Spec, smoothed: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Replicas each metric asks for: ceil(base * value / target), or ceil(value / target) for gauges.

    70 % target, 85 % observed on 4 ready -> ceil(4 * 85 / 70) = 5; queue 120 at 10 per replica -> 12.
    """
    ratio = smoothed / spec.target
    for i in spec.bounded_rows:  # where(bounded, minimum(ratio, cap), ratio), row by row on the temporary
        np.minimum(ratio[i], MAX_SIGNAL_RATIO, out=ratio[i])
    if spec.gauges == 0:
        x = np.multiply(ratio, base, out=ratio)  # where(all False, ratio, ratio * base) is ratio * base
    elif spec.gauges == len(spec.kinds):
        x = ratio
    else:
        x = np.where(spec.gauge, ratio, ratio * base)
    return np.ceil(np.subtract(x, 1e-9, out=x), out=x)  # _ceil, in place on the temporary


_FILLED: dict[tuple[int, int], np.ndarray] = {}


def _filled(n: int, value: int) -> np.ndarray:
    """A new int64 array of n copies of `value` (copied from a kept template: cheaper than filling)."""
    template = _FILLED.get((n, value))
    if template is None:
        template = _FILLED[n, value] = np.full(n, value, dtype=np.int64)
    return template.copy()


def _band(spec: Spec, smoothed: np.ndarray, proposals: np.ndarray, current: np.ndarray):
    """Hysteresis: up if any metric is above its up threshold; down only if every metric is below its down
    threshold. Returns (raw proposal, reasons, any_missing, hold); any_missing and hold are None when no
    metric of any target is missing (all False)."""
    missing = smoothed != smoothed
    any_missing = np.logical_or.reduce(missing, axis=0) if np.count_nonzero(missing) else None
    above = np.logical_or.reduce(smoothed > spec.up, axis=0)  # NaN compares False: a missing metric never votes
    below = np.logical_and.reduce(smoothed < spec.down, axis=0)  # ...and so blocks an all-below scale-down
    best = np.fmax.reduce(proposals, axis=0)  # the highest ask among metrics with data
    up = above & (best > current)
    down = below & (best < current)
    raw = np.where(up | down, best, current)
    if any_missing is not None:
        # Missing data never lowers the count: without an up signal from the metrics we do have, hold.
        hold = any_missing & ~up
        return raw, _lookup(_BAND_TABLE, current.shape[0], up, down, any_missing), any_missing, hold
    # Nothing missing: the table's entries for (up, down) = (F, F), (T, F), (F, T). Up and down never hold
    # together (best > current and best < current), so setting the up and the down entries over the
    # inside-the-band one gives each target its own entry.
    reasons = _filled(current.shape[0], int(_BAND_TABLE[0]))
    reasons[up] = _BAND_TABLE[1]
    reasons[down] = _BAND_TABLE[2]
    return raw, reasons, None, None


def _hpa_raw(spec: Spec, smoothed: np.ndarray, current: np.ndarray, ready: np.ndarray):
    """HPA: max of per-metric proposals; if every metric failed, or some failed and the max would scale
    down, do nothing and record nothing."""
    props = hpa.proposals(smoothed, spec.target.ravel(), spec.kinds, current, ready, spec.policy.tolerance)
    best = np.fmax.reduce(props, axis=0)
    missing = props != props
    if np.count_nonzero(missing):
        any_missing = np.logical_or.reduce(missing, axis=0)
        invalid = np.logical_and.reduce(missing, axis=0) | (any_missing & (best < current))
        raw = np.where(invalid, current, best)
        reasons = _lookup(_HPA_TABLE, current.shape[0], invalid, raw > current, raw < current, raw == current,
                          any_missing)
        return props, raw, reasons, any_missing, invalid
    # Nothing missing (invalid and any_missing all False, raw is best): where raw == current the inputs
    # are (F, F, F, T, F), table entry 8; only the others need a look-up.
    raw = best
    reasons = _filled(current.shape[0], int(_HPA_TABLE[8]))
    movers = (raw != current).nonzero()[0]
    if movers.size:
        r, c = raw[movers], current[movers]
        reasons[movers] = _lookup(_HPA_TABLE, movers.size, None, r > c, r < c, r == c)
    return props, raw, reasons, None, None


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
    # (Where every target has some ready, where(ready > 0, ready, x) below is ready itself.)
    all_ready = np.count_nonzero(ready > 0) == n
    # Utilization windows average the load (value x the replicas it was read on), not the percentage: a
    # window holding 100 % on 3 replicas and 90 % on 5 is 3 then 4.5 replicas of work, 75 % of 5, not 95 %.
    # Only those rows change (where(load, observed * serving, observed), row by row on a copy).
    if spec.load_rows:
        serving = ready if all_ready else np.where(ready > 0, ready, np.nan)
        observed_in = observed.copy()
        for i in spec.load_rows:
            np.multiply(observed[i], serving, out=observed_in[i])
    else:
        observed_in = observed
    # One finiteness check for every metric and target lets the windows skip their NaN bookkeeping.
    finite = np.count_nonzero(np.isfinite(observed_in)) == observed_in.size if spec.smooths else None
    smoothed = np.empty((len(spec.smoothers), n))
    smooth = [sm.step(state.smooth[i], observed_in[i], inplace=reuse, finite=finite, out=smoothed[i])[1]
              for i, sm in enumerate(spec.smoothers)]
    for i in spec.load_rows:  # back to a utilization: where(load, smoothed / serving, smoothed), in place
        np.divide(smoothed[i], serving, out=smoothed[i])

    if pol.algorithm == "hpa":
        proposals, raw, reasons, any_missing, hold = _hpa_raw(spec, smoothed, current, ready)
    else:
        # Replicas still starting carry no load yet; with none ready, size from the requested count.
        base = ready if all_ready else np.where(ready > 0, ready, current)
        proposals = _scaler_proposals(spec, smoothed, base)
        raw, reasons, any_missing, hold = _band(spec, smoothed, proposals, current)

    # any_missing None means all False: every blind count restarts at 0.
    blind = np.zeros(n, dtype=np.int64) if any_missing is None else np.where(any_missing, state.blind + 1, 0)
    fb = pol.fallback
    if fb is not None and any_missing is not None:
        # Blind long enough: raise to the fallback count, never below current or a healthy up proposal.
        # (With nothing missing no count is blind, so nothing falls back.)
        use = (blind >= fb.failure_threshold) & (min(fb.replicas, spec.max) > raw)
        raw = np.where(use, min(fb.replicas, spec.max), raw)
        reasons = reasons + use * _FALLBACK
        hold = hold & ~use

    b = pol.effective_behavior
    # stabilized and desired start as raw itself (no copy): none of them is written in place below.
    stabilized = desired = raw
    step_reasons = None  # None = all 0
    if pol.legacy:
        desired, step_reasons = hpa.legacy_normalize(raw, current, state.recs, now, spec.min, spec.max)
        stabilized = desired
    else:
        # Where raw == current every later step returns current with no reason: the stabilized value is
        # clamped between min(raw, history) <= current and max(raw, history) >= current, and rate limits
        # and cooldowns only act on a change. So the steps run only when some target wants to move, and
        # they run on every target at once: for the others they give back current (= raw) and reason 0,
        # as if skipped, and whole rows cost less than picking out the movers (often a fifth of them).
        moves = raw != current
        if np.count_nonzero(moves if hold is None else moves & ~hold):
            stab = bh.stabilize(current, raw, state.recs, now, b.scale_up.stabilization, b.scale_down.stabilization)
            step_reasons = (stab > raw) * _DOWN_STAB
            below = stab < raw
            if np.count_nonzero(below):
                step_reasons += below * _UP_STAB
            desired, lim_r = bh.rate_limit(stab, current, state.up_events, state.down_events, now, b, spec.min,
                                           spec.max)
            step_reasons |= lim_r
            if pol.algorithm == "scaler" and (b.scale_up.cooldown or b.scale_down.cooldown):
                # No scale-up too soon after a scale-up; no scale-down too soon after any scale action.
                cool_up = (desired > current) & (now - state.last_up < b.scale_up.cooldown)
                cool_down = (desired < current) & (now - state.last_change < b.scale_down.cooldown)
                desired = np.where(cool_up | cool_down, current, desired)
                step_reasons = step_reasons | cool_up * _UP_COOL | cool_down * _DOWN_COOL
            # A held target keeps raw as its stabilized value; its count and reasons are held below.
            stabilized = stab if hold is None else np.where(hold, raw, stab)

    panic_smooth, panic_until = state.panic_smooth, state.panic_until
    if pol.panic is not None:
        desired, panic_until, panic_smooth, panic_reasons = _panic(spec, state, observed, current, ready, now,
                                                                   desired, reuse, finite)
        if panic_reasons is not None:
            step_reasons = panic_reasons if step_reasons is None else step_reasons | panic_reasons

    # Missing data: hold exactly. Out-of-range counts go to the bound without reading metrics (HPA).
    # (hold None: nothing to hold, and where(all False, ...) would change nothing.)
    if hold is not None:
        desired = np.where(hold, current, desired)
        if step_reasons is not None:
            reasons = reasons | np.where(hold, 0, step_reasons)
    elif step_reasons is not None:
        reasons = reasons | step_reasons
    # precheck forces nothing where current is inside [min, max] and not 0, so calling it only when some
    # count is outside [max(min, 1), max] (a slightly wider test than it needs) changes no value.
    if np.count_nonzero(current > spec.max) or np.count_nonzero(current < max(spec.min, 1)):
        forced, forced_reasons = hpa.precheck(current, spec.min, spec.max)
        is_forced = ~np.isnan(forced)
        desired = np.where(is_forced, forced, desired)
        reasons = np.where(is_forced, forced_reasons, reasons)
        hold = is_forced if hold is None else hold | is_forced

    # Record the raw recommendation (none where data was missing or the count was forced), and the change
    # as scale events: max(change, 0) up, max(-change, 0) down, written straight into the new slots.
    recs = state.recs.push(now, raw if hold is None else np.where(hold, np.nan, raw), inplace=reuse)
    change = desired - current
    zero = np.zeros(n)  # maximum(x, 0.0) against an array of 0.0 gives the same, and is cheaper
    up_events, up_row = state.up_events.advance(now, inplace=reuse)
    np.maximum(change, zero, out=up_row)
    down_events, down_row = state.down_events.advance(now, inplace=reuse)
    np.maximum(np.negative(change, out=down_row), zero, out=down_row)
    grew, changed = change > 0, change != 0
    new_state = build(
        State,
        smooth=tuple(smooth),
        panic_smooth=panic_smooth,
        recs=recs,
        up_events=up_events,
        down_events=down_events,
        last_up=_stamp(state.last_up, grew, now),
        last_change=_stamp(state.last_change, changed, now),
        panic_until=panic_until,
        blind=blind,
    )
    return build(
        Decision,
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


def _stamp(last: np.ndarray, where: np.ndarray, now: float) -> np.ndarray:
    """np.where(where, now, last), without a copy when `where` is all False (then it is `last` itself)."""
    if not np.count_nonzero(where):
        return last
    out = last.copy()
    out[where] = now
    return out


def _panic(spec: Spec, state: State, observed, current, ready, now, desired, reuse, finite):
    """Knative-style panic: when short-window load reaches threshold x target on a utilization metric,
    scale straight to the short-window proposal (no stabilization, rate limit or cooldown) and block
    scale-down until `hold` seconds pass without a trigger. 200 % of a 70 % target = 140 % -> panic.
    Returns (desired, panic_until, short-window states, reasons or None when no target is in panic)."""
    p = spec.policy.panic
    smooth = []
    ratio = None
    # Only utilization metrics get a short window: the highest short/target among them (fmax skips a
    # missing one) is all panic reads, so the others' windows could never change a decision.
    for j, i in enumerate(spec.utilization_rows):
        short, st = spec.panic_smoothers[j].step(state.panic_smooth[j], observed[i], inplace=reuse, finite=finite)
        smooth.append(st)
        r = short / spec.target[i, 0]
        ratio = r if ratio is None else np.fmax(ratio, r)
    if ratio is None:
        ratio = np.full(desired.shape, np.nan)  # no utilization metric: nothing can trigger
    trigger = ratio >= p.threshold
    triggered = np.count_nonzero(trigger)
    panic_until = np.where(trigger, now + p.hold, state.panic_until) if triggered else state.panic_until
    still = now < state.panic_until
    if not triggered and not np.count_nonzero(still):
        return desired, panic_until, tuple(smooth), None  # no target in panic
    in_panic = trigger | still
    base = np.where(ready > 0, ready, current)
    burst = np.where(trigger, np.minimum(_ceil(base * ratio), spec.max), 0)
    out = np.where(in_panic, np.maximum(np.maximum(desired, current), burst), desired)
    return out, panic_until, tuple(smooth), (in_panic & (out != desired)) * _PANIC
