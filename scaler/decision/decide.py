"""The one decision path: observations -> smoothing -> proposal -> stabilize -> rate limit -> clamp, with reasons.

`decide` is a pure function of (spec, state, observations, current replicas, now) over arrays shaped
(targets,) — the live loop and `scaler simulate` both call it; they differ only in where observations come
from and whether a target is written. The steps themselves are compiled (scaler.decision.kernel.tick): one pass over
the targets per tick; this module holds the policy compiled for them, the state, and the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scaler.decision.history import History
from scaler.decision.kernel import tick as kernel
from scaler.decision.params import Params, params
from scaler.decision.smoothing import Smoother, SmoothState
from scaler.policy.model import MetricKind, Policy, Window


@dataclass(frozen=True)
class Spec:
    """A policy compiled once, so a tick does no parsing. Metric arrays are (metrics, 1)."""

    policy: Policy
    target: np.ndarray
    up: np.ndarray
    down: np.ndarray
    gauge: np.ndarray  # bool: proposal is total / per-replica target, not ratio * replicas
    smoothers: tuple[Smoother, ...]
    panic_smoothers: tuple[Smoother, ...]  # one per utilization metric (the only ones panic reads)
    min: int
    max: int
    slots: int
    # Derived from the fields above in __post_init__.
    kinds: tuple[MetricKind, ...] = field(init=False, repr=False, compare=False)
    utilization_rows: tuple[int, ...] = field(init=False, repr=False, compare=False)
    params: Params = field(init=False, repr=False, compare=False)  # what the compiled tick reads

    def __post_init__(self) -> None:
        kinds = tuple(MetricKind(m.kind) for m in self.policy.metrics)
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "utilization_rows",
                           tuple(i for i, k in enumerate(kinds) if k == MetricKind.utilization))
        object.__setattr__(self, "params", params(self))

    @classmethod
    def of(cls, policy: Policy) -> Spec:
        col = lambda xs, dt=float: np.array(xs, dtype=dt).reshape(-1, 1)  # noqa: E731
        ms = policy.metrics
        panic = ()
        if policy.panic:
            short = Window(type="mean", length=policy.panic.window)
            panic = tuple(Smoother.compile(short, policy.interval) for m in ms if m.kind == MetricKind.utilization)
        return cls(
            policy=policy,
            target=col([m.target for m in ms]),
            up=col([m.up_threshold for m in ms]),
            down=col([m.down_threshold for m in ms]),
            gauge=col([m.kind == MetricKind.gauge for m in ms], bool),
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
    reasons: np.ndarray  # (targets,) int64 mask of scaler.decision.reasons.Reason
    state: State
    observed: np.ndarray  # (metrics, targets) what was read this tick (NaN = no data)
    smoothed: np.ndarray  # (metrics, targets) after the windows
    proposals: np.ndarray  # (metrics, targets) replicas each metric asks for (NaN = none)
    proposal: np.ndarray  # (targets,) after the band / tolerance and data checks
    stabilized: np.ndarray  # (targets,) after stabilization
    limited: np.ndarray  # (targets,) after rate limits and min/max


@dataclass
class Arrays:
    """A State as the compiled tick reads and writes it: the same arrays (C order), heads as numbers.

    The two event histories share one array of slot times (they are pushed together every tick). A trend
    window whose running sums are missing (a fresh or loaded state) adds them up afresh (`resync`).
    """

    rings: np.ndarray  # every window's ring stacked: (sum of slots, targets)
    heads: np.ndarray  # int64 per metric: the ring slot this tick writes
    sums: np.ndarray  # (metrics, 2, targets): a trend window's running sums (unused for the others)
    resync: np.ndarray  # bool per metric
    panic_rings: np.ndarray  # the panic windows' rings stacked
    panic_heads: np.ndarray
    recs_t: np.ndarray
    recs_v: np.ndarray
    recs_head: int
    ev_t: np.ndarray
    up_v: np.ndarray
    down_v: np.ndarray
    ev_head: int
    last_up: np.ndarray
    last_change: np.ndarray
    panic_until: np.ndarray
    blind: np.ndarray

    @classmethod
    def of(cls, spec: Spec, state: State, *, copy: bool = True) -> Arrays:
        """The arrays of `state`: copies, or with copy=False shared where they can be (the caller drops `state`)."""

        def own(a, dtype=np.float64):
            return np.array(a, dtype=dtype, order="C", copy=True) if copy else np.ascontiguousarray(a, dtype=dtype)

        n = state.recs.v.shape[1]
        m = len(spec.smoothers)
        up, down = state.up_events, state.down_events
        if up.head != down.head or (up.t is not down.t and not np.array_equal(up.t, down.t, equal_nan=True)):
            raise ValueError("the scale-up and scale-down event histories must be pushed together")
        sums, resync = np.full((m, 2, n), np.nan), np.zeros(m, dtype=np.bool_)
        for i, (sm, s) in enumerate(zip(spec.smoothers, state.smooth, strict=True)):
            if sm.kind == "trend" and sm.slots > 1:
                resync[i] = s.sums is None or s.head == sm.slots - 1
                if s.sums is not None:
                    sums[i] = s.sums
        return cls(
            rings=_stack([s.ring for s in state.smooth], n),
            heads=np.array([s.head for s in state.smooth], dtype=np.int64),
            sums=sums,
            resync=resync,
            panic_rings=_stack([s.ring for s in state.panic_smooth], n),
            panic_heads=np.array([s.head for s in state.panic_smooth], dtype=np.int64),
            recs_t=own(state.recs.t), recs_v=own(state.recs.v), recs_head=int(state.recs.head),
            ev_t=own(state.up_events.t), up_v=own(state.up_events.v), down_v=own(state.down_events.v),
            ev_head=int(state.up_events.head),
            last_up=own(state.last_up), last_change=own(state.last_change), panic_until=own(state.panic_until),
            blind=own(state.blind, np.int64),
        )

    def args(self) -> tuple:
        """The state arguments of kernel.tick, in its order."""
        return (self.rings, self.heads, self.sums, self.resync, self.panic_rings, self.panic_heads, self.recs_t,
                self.recs_v, self.recs_head, self.ev_t, self.up_v, self.down_v, self.ev_head, self.last_up,
                self.last_change, self.panic_until, self.blind)

    def state(self, spec: Spec) -> State:
        """The State after a tick: every head one slot on (rings and sums are views of these arrays)."""
        p = spec.params
        smooth = tuple(
            SmoothState(ring=self.rings[p.ring_start[i]:p.ring_start[i] + sm.slots],
                        head=(int(self.heads[i]) + 1) % sm.slots,
                        sums=self.sums[i] if sm.kind == "trend" and sm.slots > 1 else None)
            for i, sm in enumerate(spec.smoothers))
        panic = tuple(SmoothState(ring=self.panic_rings[p.panic_start[r]:p.panic_start[r] + sm.slots],
                                  head=(int(self.panic_heads[r]) + 1) % sm.slots)
                      for r, sm in enumerate(spec.panic_smoothers))
        recs_head, ev_head = (self.recs_head + 1) % spec.slots, (self.ev_head + 1) % spec.slots
        return State(smooth=smooth, panic_smooth=panic,
                     recs=History(t=self.recs_t, v=self.recs_v, head=recs_head),
                     up_events=History(t=self.ev_t, v=self.up_v, head=ev_head),
                     down_events=History(t=self.ev_t, v=self.down_v, head=ev_head),
                     last_up=self.last_up, last_change=self.last_change, panic_until=self.panic_until,
                     blind=self.blind)


def _stack(rings: list[np.ndarray], n: int) -> np.ndarray:
    """Rings (slots, targets) one after another in a new array (sum of slots, targets)."""
    return np.concatenate(rings).astype(np.float64, order="C") if rings else np.empty((0, n))


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
    again.
    """
    observed = np.ascontiguousarray(observed, dtype=np.float64)
    current = np.ascontiguousarray(current, dtype=np.float64)
    ready = current if ready is None else np.ascontiguousarray(ready, dtype=np.float64)
    m, n = observed.shape
    arrays = Arrays.of(spec, state, copy=not reuse_state)
    smoothed, proposals = np.empty((m, n)), np.empty((m, n))
    raw, stabilized, desired = np.empty(n), np.empty(n), np.empty(n)
    reasons = np.empty(n, dtype=np.int64)
    kernel.tick(spec.params, *arrays.args(), observed, current, ready, float(now),
                smoothed, proposals, raw, stabilized, desired, reasons)
    return Decision(desired=desired.astype(np.int64), reasons=reasons, state=arrays.state(spec),
                    observed=observed, smoothed=smoothed, proposals=proposals, proposal=raw,
                    stabilized=stabilized, limited=desired)


def warm() -> float:
    """Compile the decision path, or load it from numba's on-disk cache, so the first real tick does not pay
    for it (compiling takes about half a minute, once per machine and version; loading, under a second).
    Every policy runs the same compiled code, so one small decision warms it for all. Returns the seconds
    it took."""
    import time

    from scaler import defaults
    from scaler.policy.model import load_policy

    start = time.perf_counter()
    spec = Spec.of(load_policy(defaults.DEFAULT_POLICY))
    one = np.ones(1)
    decide(spec, initial_state(spec, one, 0.0), np.full((len(spec.smoothers), 1), np.nan), current=one, now=15.0)
    return time.perf_counter() - start
