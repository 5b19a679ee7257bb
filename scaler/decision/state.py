"""What a decision remembers between ticks, per target, as one named tuple of arrays the compiled code reads.

A decision *proposes*: `decide` returns a new State with the windows, the recommendation history, panic
and the blind counter moved on. What was actually written is *committed* afterwards with
`State.with_applied`: only then are the scale events (which rate limits count) and the cooldown clocks
recorded, so a write that failed, was clamped by the provider, or was never made (a dry run) never counts
as a scale action. Kubernetes' HPA stores its scale events the same way, after a successful update.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from scaler.decision.kernel.codes import TREND
from scaler.decision.kernel.tick import EVENTS, RECS, commit
from scaler.decision.params import Params

__all__ = ["EVENTS", "RECS", "State", "initial_state"]


class State(NamedTuple):
    """Every array a decision reads and writes. Rings are rows (slots) x targets, so a tick writes one
    contiguous row; the windows of all metrics are stacked into one array (metric i from
    Params.ring_start[i]), so the compiled code is the same for every policy."""

    rings: np.ndarray  # (sum of window slots, targets): every metric's window ring
    heads: np.ndarray  # int64 (metrics,): the ring slot each window writes next
    sums: np.ndarray  # (metrics, 2, targets): a trend window's running sums (unused by the others)
    resync: np.ndarray  # bool (metrics,): a trend window adds its sums up afresh on its next tick
    panic_rings: np.ndarray  # the panic windows' rings, stacked the same way (Params.panic_start)
    panic_heads: np.ndarray  # int64
    recs_t: np.ndarray  # (history slots,) unix s each recommendation slot was written, NaN = never
    recs_v: np.ndarray  # (history slots, targets) raw recommendations (HPA: the stabilization history)
    ev_t: np.ndarray  # (history slots,) unix s of each scale-event slot (one time for both directions)
    up_v: np.ndarray  # (history slots, targets) replicas added (rate limits)
    down_v: np.ndarray  # (history slots, targets) replicas removed
    hist_heads: np.ndarray  # int64 (2,): the next slot of the recommendations [RECS] and events [EVENTS]
    last_up: np.ndarray  # (targets,) unix s of the last scale-up written, NaN = never
    last_change: np.ndarray  # (targets,) unix s of the last scale action written either way
    panic_until: np.ndarray  # (targets,) panic mode lasts while now < panic_until
    blind: np.ndarray  # int64 (targets,): consecutive ticks with a metric missing

    @property
    def targets(self) -> int:
        return self.blind.shape[0]

    def copy(self) -> State:
        """A State sharing no array with this one."""
        return State(*(np.array(a, order="C", copy=True) for a in self))

    def with_recommendation(self, now: float, values: np.ndarray) -> State:
        """This state with `values` (targets,) recorded as recommendations made `now`, NaN recording
        nothing: how a restart counts the current replicas, as HPA does, so scale-down waits one
        stabilization window instead of trusting an empty or stale history."""
        out = self.copy()
        h = int(out.hist_heads[RECS])
        out.recs_t[h], out.recs_v[h] = now, values
        out.hist_heads[RECS] = (h + 1) % out.recs_t.shape[0]
        return out

    def with_applied(self, now: float, before: np.ndarray, applied: np.ndarray, *, reuse: bool = False) -> State:
        """This state with what was written at `now` recorded: for each target the count it had (`before`)
        and the count written (`applied`; NaN where nothing was written). A target scaled 4 -> 6 records
        +2 replicas (for the rate limits) and its scale-up time (for the cooldowns); one not written
        records nothing. reuse=True records into this state's own arrays (the caller drops it)."""
        out = self if reuse else self.copy()
        commit(out, float(now), _f(before), _f(applied))
        return out


def initial_state(params: Params, current: np.ndarray, now: float) -> State:
    """A fresh state that, like HPA after a restart, counts `current` as a recommendation made `now`:
    it holds back scale-down for one down-stabilization window instead of trusting an empty history."""
    current = _f(current)
    n, m, slots = current.shape[0], params.kind.shape[0], params.history_slots
    return State(
        rings=np.full((int(params.slots.sum()), n), np.nan),
        heads=np.zeros(m, dtype=np.int64),
        sums=np.full((m, 2, n), np.nan),
        # a trend window starts without running sums: it adds them up on its first tick
        resync=(params.window == TREND) & (params.slots > 1),
        panic_rings=np.full((int(params.panic_slots.sum()), n), np.nan),
        panic_heads=np.zeros(params.panic_slots.shape[0], dtype=np.int64),
        recs_t=np.full(slots, np.nan),
        recs_v=np.full((slots, n), np.nan),
        ev_t=np.full(slots, np.nan),
        up_v=np.full((slots, n), np.nan),
        down_v=np.full((slots, n), np.nan),
        hist_heads=np.zeros(2, dtype=np.int64),  # [RECS, EVENTS]
        last_up=np.full(n, np.nan),
        last_change=np.full(n, np.nan),
        panic_until=np.full(n, np.nan),
        blind=np.zeros(n, dtype=np.int64),
    ).with_recommendation(now, current)


def _f(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)
