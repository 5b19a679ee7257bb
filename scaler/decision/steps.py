"""Steps of the decision path run on their own, over (targets,) arrays: one window, HPA's proposals,
prechecks and legacy path, stabilization and rate limits.

The tick (scaler.decision.kernel.tick) runs these same compiled pieces for every target in one pass;
these entry points run one of them by itself, so the tests derived from HPA's own
(replica_calculator_test.go, horizontal_test.go) pin the compiled code step by step, and a step can be
inspected without a whole decision. Times are unix seconds; nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaler.decision.kernel.behavior import limits
from scaler.decision.kernel.codes import LEGACY_WINDOW, SEASONAL, TREND
from scaler.decision.kernel.history import history_extreme, period_sum
from scaler.decision.kernel.proposals import propose_row
from scaler.decision.kernel.seasonal import seasonal_row
from scaler.decision.kernel.single import clamp_all, legacy_all, precheck_all, stabilize_all
from scaler.decision.kernel.windows import noisy_max_row, smooth_row
from scaler.decision.params import KINDS, SELECTS, WindowParams, fit_coefficients, rules, window_params
from scaler.policy.model import Behavior, Direction, MetricKind, Tolerance, Window


def _f(x: np.ndarray | float) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


def _per_target(x, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(_f(x), (n,)))


# ---------------------------------------------------------------------------------------------- history

@dataclass(frozen=True)
class History:
    """`t[k]` is when slot k was written (NaN = never); `v[k]` the per-target values written then.

    All targets of one policy tick together, so one timestamp per slot serves every target. The ring is
    sized by the caller to cover the longest look-back (see Policy.history_slots); pushing overwrites the
    oldest slot. Slots are rows: a push writes one contiguous row, and a pass over the slots reads every
    target's values of a slot together.
    """

    t: np.ndarray  # (slots,) float64 unix seconds, NaN where empty
    v: np.ndarray  # (slots, targets) float64, NaN where a target recorded nothing
    head: int = 0  # next slot to write

    @classmethod
    def empty(cls, targets: int, slots: int) -> History:
        return cls(t=np.full(slots, np.nan), v=np.full((slots, targets), np.nan), head=0)

    def push(self, now: float, values: np.ndarray, *, inplace: bool = False) -> History:
        """A History with `values` (targets,) recorded at `now`; NaN values record nothing.

        inplace=True writes into this History's buffers instead of copying them (the caller promises
        not to use the old History again).
        """
        t = self.t if inplace else self.t.copy()
        v = self.v if inplace else self.v.copy()
        t[self.head] = now
        v[self.head] = values
        return History(t=t, v=v, head=(self.head + 1) % t.shape[0])

    def within(self, now: float, seconds: float) -> np.ndarray:
        """Mask (slots,) of slots written strictly after `now - seconds` (a slot on the edge is out)."""
        return self.t > now - seconds  # NaN (never written) compares False

    def sum_within(self, now: float, seconds: float) -> np.ndarray:
        """Per target, the sum of values recorded in the last `seconds` (NaN counts as 0), as the rate
        limits count a period's scale events."""
        t, v = np.ascontiguousarray(self.t, dtype=float), np.ascontiguousarray(self.v, dtype=float)
        return period_sum(t, v, float(now - seconds), np.empty(v.shape[1]))

    def take(self, index: np.ndarray) -> History:
        """The history of a subset of targets (by index), e.g. to persist or inspect one target."""
        return History(t=self.t, v=self.v.take(index, axis=1), head=self.head)


# ---------------------------------------------------------------------------------------------- one window


@dataclass(frozen=True)
class SmoothState:
    """One window's ring (slots, targets) and the slot it writes next; a trend window's running sums; a seasonal
    window's numbers of its last step (`seasonal`: correlation, season, level_ratio, headroom, no_opinion, each
    (targets,), as scaler.decision.kernel.tick.Outputs names them); a noisy max's means (`sums`: mean change,
    mean level) and the ratio its last step compared (`noise`)."""

    ring: np.ndarray
    head: int
    sums: np.ndarray | None = None
    seasonal: dict[str, np.ndarray] | None = None
    noise: np.ndarray | None = None  # a max window with noisy_length: the noise its last step compared


@dataclass(frozen=True)
class Smoother:
    """One metric's window at a tick interval, run on its own: `step` is pure, (state, samples) ->
    (value, state), and runs the compiled window the tick runs (scaler.decision.kernel.windows)."""

    window: WindowParams
    interval: float

    @classmethod
    def compile(cls, window: Window, interval: float) -> Smoother:
        return cls(window_params(window, interval), float(interval))

    @property
    def slots(self) -> int:
        return self.window.slots

    def empty(self, targets: int) -> SmoothState:
        return SmoothState(ring=np.full((self.slots, targets), np.nan), head=0)

    def step(self, state: SmoothState, x: np.ndarray, *, out: np.ndarray | None = None, now: float | None = None
             ) -> tuple[np.ndarray, SmoothState]:
        """Smoothed value per target; NaN wherever this tick's sample is missing ("no data" stays visible).
        The state passed in is left as it was. A seasonal window needs the tick's time, `now` (unix seconds):
        its buckets follow the clock."""
        w = self.window
        x = np.ascontiguousarray(x, dtype=np.float64)
        n = x.shape[0]
        ring = np.array(state.ring, dtype=np.float64, order="C", copy=True)
        value = np.empty(n) if out is None else out
        if w.kind == SEASONAL:
            if now is None:
                raise ValueError("a seasonal window steps at a time: pass now=")
            parts = {name: np.full(n, np.nan) for name in ("correlation", "season", "level_ratio", "headroom")}
            parts["no_opinion"] = np.zeros(n, dtype=np.bool_)
            seasonal_row(w.bucket, w.buckets, w.level, w.min_corr, w.headroom_q, w.changes, w.lead, float(now), ring,
                         state.head, x, False, np.ones(n), value, parts["correlation"], parts["season"],
                         parts["level_ratio"], parts["headroom"], parts["no_opinion"], np.empty(max(1, w.slots)))
            head = (state.head + 1) % w.changes if w.changes > 0 else 0
            return value, SmoothState(ring=ring, head=head, seasonal=parts)
        if w.noise_alpha > 0:
            sums = np.full((2, n), np.nan) if state.sums is None else np.array(state.sums, order="C", copy=True)
            noise = np.empty(n)
            noisy_max_row(ring, state.head, w.slots, w.short, w.noise_alpha, w.noise_above, sums, x, False,
                          np.ones(n), value, noise, np.empty(n))
            return value, SmoothState(ring=ring, head=(state.head + 1) % w.slots, sums=sums, noise=noise)
        trend = w.kind == TREND and w.slots > 1
        resync = trend and (state.sums is None or state.head == w.slots - 1)
        sums = (np.full((2, n), np.nan) if state.sums is None else np.array(state.sums, order="C", copy=True)) \
            if trend else np.empty((2, 0))
        p, q = fit_coefficients(w.slots, self.interval, w.lead) if trend else (0.0, 0.0)
        smooth_row(w.kind, w.slots, w.alpha, w.q, self.interval, w.lead, p, q, ring, state.head, sums, resync, x,
                   False, np.ones(n), value, np.empty(max(1, w.slots)), np.empty(n))
        return value, SmoothState(ring=ring, head=(state.head + 1) % w.slots, sums=sums if trend else None)


# ---------------------------------------------------------------------------------------------- HPA


def proposals(
    values: np.ndarray,
    targets: np.ndarray,
    kinds: Sequence[MetricKind | str],
    current: np.ndarray,
    ready: np.ndarray,
    tolerance: Tolerance,
    whole: Sequence[bool] | None = None,
) -> np.ndarray:
    """Replicas each metric asks for, shaped (metrics, targets); NaN where the value is missing.

    utilization, latency, error_rate follow replica_calculator's ratio rule: ratio = value / target;
    inside [1 - tolerance.down, 1 + tolerance.up] keep current, else ceil(ratio * ready). 30 % target,
    50 % observed, 3 ready -> ceil(3 * 50/30) = 5. From zero replicas (HPAScaleToZero) latency and
    error_rate act as Object/External Value metrics do: ceil(ratio).

    utilization also follows GetResourceReplicas on a scale-up while some replicas are not ready: those
    count as 0 % busy and the ratio is taken again over every replica. 60 % on 2 ready of 3, target 30 ->
    60 * 2/3 = 40 % -> ceil(3 * 40/30) = 4. If the new ratio falls back inside the tolerance or below 1
    (40 % on 1 ready of 3 -> 13 %), the count holds. With none ready there is no sample: NaN.

    gauge follows an External (or Object) AverageValue metric: ratio = total / (target * current), every
    replica counted as HPA counts status.replicas; inside the tolerance keep current, else
    ceil(total / target): 8600 total at 2150 per replica -> 4.

    `values` arrive already averaged over the ready replicas, and every replica is taken to request the
    same amount. A metric marked `whole` is a resource utilization, which HPA computes as a whole percent
    (int32(sum * 100 / requests)): 53.7 % on 3 ready against 50 counts as 53 -> ratio 1.06, inside the
    tolerance; with unready replicas the spread-out value is truncated the same way.
    """
    values = np.atleast_2d(_f(values))
    target = _f(targets).ravel()
    m, n = values.shape
    cur, rdy = _per_target(current, n), _per_target(ready, n)
    out, ratio, base = np.empty((m, n)), np.empty(n), np.empty(n)
    best, flags = np.empty(n), np.zeros(n, dtype=np.int64)
    whole = [False] * m if whole is None else list(whole)
    for i, k in enumerate(kinds):
        propose_row(True, KINDS[str(MetricKind(k))], float(target[i]), bool(whole[i]), 0.0, 0.0,
                    1.0 - tolerance.down, 1.0 + tolerance.up, np.ascontiguousarray(values[i]), cur, rdy, out[i],
                    ratio, base, best, flags)
    return out


def precheck(
    current: np.ndarray, min_replicas: np.ndarray | int, max_replicas: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray]:
    """HPA's reconcile prechecks: (forced count or NaN where metrics decide, reason mask).

    Current 0 with min > 0 means autoscaling is off: hold at 0 (DISABLED). Current 12 with max 10 goes
    to 10, current 1 with min 2 goes to 2 (OUT_OF_RANGE), without reading any metric.
    """
    current = _f(current)
    n = current.shape[0]
    return precheck_all(current, _per_target(min_replicas, n), _per_target(max_replicas, n))


def legacy_normalize(
    proposal: np.ndarray,
    current: np.ndarray,
    recs: History,
    now: float,
    min_replicas: np.ndarray | int,
    max_replicas: np.ndarray | int,
    *,
    window: float = LEGACY_WINDOW,
) -> tuple[np.ndarray, np.ndarray]:
    """HPA without `behavior` (normalizeDesiredReplicas): (value, reason mask).

    Stabilize with the highest of the proposal and the recommendations of the last `window` seconds; here
    a record exactly `window` old still counts (HPA drops only those *before* the cutoff). Then clamp to
    [min, min(max, max(2 * current, 4))]: current 3 may reach 6, current 1 may reach 4. Reasons, in HPA's
    order: SCALE_DOWN_STABILIZED if a recent recommendation raised it; TOO_FEW_REPLICAS below min; above
    the ceiling SCALE_UP_LIMIT when the 2x/4 cap is the lower bound, else TOO_MANY_REPLICAS (a tie is
    TOO_MANY).
    """
    proposal, current = _f(proposal), _f(current)
    n = current.shape[0]
    high = history_extreme(_f(recs.t), _f(recs.v), now - window, True, True, np.empty(n))
    return legacy_all(proposal, current, high, _per_target(min_replicas, n), _per_target(max_replicas, n))


# ---------------------------------------------------------------------------------------------- behavior


def stabilize(
    current: np.ndarray,
    proposal: np.ndarray,
    recs: History,
    now: float,
    up_window: float,
    down_window: float,
) -> np.ndarray:
    """HPA stabilizeRecommendationWithBehaviors: hold `current` inside [up, down].

    up = the lowest of the proposal and the recommendations of the last `up_window` seconds, down = the
    highest over `down_window`. Recommendations 4 and 5 in the down window, proposal 3, current 100:
    down = 5, so the count falls to 5, not 3. The caller records the raw proposal afterwards
    (recs.push); a record exactly `window` seconds old is out. A NaN proposal stays NaN.
    """
    current, proposal = _f(current), _f(proposal)
    t, v, n = _f(recs.t), _f(recs.v), current.shape[0]
    low = history_extreme(t, v, now - up_window, False, False, np.empty(n))
    high = history_extreme(t, v, now - down_window, False, True, np.empty(n))
    return stabilize_all(current, proposal, low, high)


def _limit(current: np.ndarray, up_events: History, down_events: History, now: float, direction: Direction,
           up: bool) -> np.ndarray:
    n = current.shape[0]
    return limits(rules(direction), SELECTS[direction.select], current, _f(up_events.t),
                         _f(up_events.v), _f(down_events.t), _f(down_events.v), float(now), up, np.empty(n),
                         np.empty(n), np.empty(n))


def scale_up_limit(
    current: np.ndarray, up_events: History, down_events: History, now: float, direction: Direction
) -> np.ndarray:
    """HPA calculateScaleUpLimitWithScalingRules: the highest count the scale-up policies allow now.

    Each policy counts from the period's start: Pods adds `value`, Percent multiplies by 1 + value/100
    rounded up (periodStart 5, +100 % -> ceil(5 * 2) = 10; the same float expression as HPA, so
    100 * (1 + 10/100) = 110.00000000000001 rounds up to 111 there too). select max takes the largest
    allowance, min the smallest; disabled allows nothing beyond current. The result may be below current
    (after a burst of scale-ups under a tighter policy); rate_limit raises it back to current.
    """
    return _limit(_f(current), up_events, down_events, now, direction, True)


def scale_down_limit(
    current: np.ndarray, up_events: History, down_events: History, now: float, direction: Direction
) -> np.ndarray:
    """HPA calculateScaleDownLimitWithBehaviors: the lowest count the scale-down policies allow now.

    Pods subtracts `value` from the period's start; Percent keeps start * (1 - value/100) truncated toward
    zero (periodStart 5, -50 % -> int(2.5) = 2). select max allows the largest drop (the lowest count),
    min the smallest; disabled allows nothing below current.
    """
    return _limit(_f(current), up_events, down_events, now, direction, False)


def rate_limit(
    desired: np.ndarray,
    current: np.ndarray,
    up_events: History,
    down_events: History,
    now: float,
    behavior: Behavior,
    min_replicas: np.ndarray | int,
    max_replicas: np.ndarray | int,
) -> tuple[np.ndarray, np.ndarray]:
    """HPA convertDesiredReplicasWithBehaviorRate: (value, reason mask) after rate limits and bounds.

    Going up, the ceiling is min(max, scale-up limit) and the limit never falls below current; the reason
    is SCALE_UP_LIMIT when the rate limit is the tighter bound, else TOO_MANY_REPLICAS (a tie counts as
    TOO_MANY, as in HPA). Going down, mirrored with SCALE_DOWN_LIMIT / TOO_FEW_REPLICAS. A count that does
    not move is not clamped here (HPA's prechecks already put current inside [min, max]). Reasons are set
    only where the value changed; NaN passes through.
    """
    desired, current = _f(desired), _f(current)
    lo = np.ascontiguousarray(np.broadcast_to(_f(min_replicas), current.shape))
    hi = np.ascontiguousarray(np.broadcast_to(_f(max_replicas), current.shape))
    up = _limit(current, up_events, down_events, now, behavior.scale_up, True)
    down = _limit(current, up_events, down_events, now, behavior.scale_down, False)
    return clamp_all(desired, current, up, down, lo, hi)
