"""HPA `behavior` steps over (targets,) arrays: stabilization, pods/percent rate limits, scale events."""

from __future__ import annotations

import numpy as np

from scaler.history import History, sum_rows
from scaler.policy import Behavior, Direction
from scaler.reasons import Reason


def _f(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=float)


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
    (recs.push); a record exactly `window` seconds old is out (History.within is strict).
    """
    current, proposal = _f(current), _f(proposal)
    up = recs.min_within(now, up_window, proposal)
    down = recs.max_within(now, down_window, proposal)
    # where(current < up, up, current), then where(out > down, down, out). np.maximum and np.minimum
    # return their second argument on a tie, as these wheres keep theirs; they differ only where up or
    # down is NaN, which needs a NaN proposal, and the result is NaN there anyway (below).
    out = np.minimum(down, np.maximum(up, current))
    missing = proposal != proposal
    return np.where(missing, np.nan, out) if np.count_nonzero(missing) else out


class _PeriodStarts:
    """The count each rate-limit period began with, per period, computed once however many policies (up and
    down) share a period: the scale-up and scale-down policies of one tick look at the same two histories."""

    def __init__(self, current: np.ndarray, up_events: History, down_events: History, now: float) -> None:
        self.current, self.up, self.down, self.now = current, up_events, down_events, now
        self.seen: dict[float, np.ndarray | None] = {}

    def __call__(self, period: float, targets: np.ndarray) -> np.ndarray:
        """The period's start for the targets at these indices."""
        start = self.seen.get(period)
        if start is None and period not in self.seen:
            # The count this period began with: 6 now, +4 and -2 inside the period -> it began at 4.
            up_slots = self.up.within(self.now, period)
            # Event histories pushed together may share one array of slot times: then one mask serves both.
            down_slots = up_slots if self.down.t is self.up.t else self.down.within(self.now, period)
            ups = self.up.rows(up_slots)
            if down_slots is up_slots:  # the same slots: no need to count them again
                downs = None if ups is None else self.down.v[up_slots]
            else:
                downs = self.down.rows(down_slots)
            if ups is None and downs is None:
                self.seen[period] = None  # no event in the period: worked out below for `targets` alone
            else:
                # Sums that count NaN as 0 (History.sum_of). A NaN or inf among the values would make the
                # plain sums, and so start, NaN or inf: a finite start means there was none to count as 0.
                start = self.current - (0.0 if ups is None else sum_rows(ups)) + (0.0 if downs is None else
                                                                                  sum_rows(downs))
                if np.count_nonzero(np.isfinite(start)) != start.size:
                    start = self.current - self.up.sum_of(up_slots) + self.down.sum_of(down_slots)
                self.seen[period] = start
        if start is None:
            # current - 0 + 0, which is current + 0 to the bit (0 - 0 = 0 keeps a -0 only until the + 0).
            return self.current[targets] + 0.0
        return start[targets]


def _up_limit(current: np.ndarray, direction: Direction, period_start: _PeriodStarts, targets) -> np.ndarray:
    if direction.select == "disabled":
        return current.copy()
    pick = np.maximum if direction.select == "max" else np.minimum
    out = None
    for p in direction.policies:
        start = period_start(p.period, targets)
        if p.type == "pods":
            proposed = start + p.value
        else:
            # Same float expression as HPA, so its rounding matches too: 100 * (1 + 10/100) is
            # 110.00000000000001, which rounds up to 111.
            proposed = np.ceil(start * (1 + p.value / 100))
        # The first policy alone is pick(-inf or +inf, proposed) = proposed: start from it.
        out = proposed if out is None else pick(out, proposed)
    return np.full(current.shape, -np.inf if direction.select == "max" else np.inf) if out is None else out


def _down_limit(current: np.ndarray, direction: Direction, period_start: _PeriodStarts, targets) -> np.ndarray:
    if direction.select == "disabled":
        return current.copy()
    pick = np.minimum if direction.select == "max" else np.maximum
    out = None
    for p in direction.policies:
        start = period_start(p.period, targets)
        if p.type == "pods":
            proposed = start - p.value
        else:
            proposed = np.trunc(start * (1 - p.value / 100))
        out = proposed if out is None else pick(out, proposed)
    return np.full(current.shape, np.inf if direction.select == "max" else -np.inf) if out is None else out


def scale_up_limit(
    current: np.ndarray, up_events: History, down_events: History, now: float, direction: Direction
) -> np.ndarray:
    """HPA calculateScaleUpLimitWithScalingRules: the highest count the scale-up policies allow now.

    Each policy counts from the period's start: Pods adds `value`, Percent multiplies by 1 + value/100
    rounded up (periodStart 5, +100 % -> ceil(5 * 2) = 10). select max takes the largest allowance, min
    the smallest; disabled allows nothing beyond current. The result may be below current (after a burst
    of scale-ups under a tighter policy); rate_limit raises it back to current.
    """
    current = _f(current)
    return _up_limit(current, direction, _PeriodStarts(current, up_events, down_events, now), slice(None))


def scale_down_limit(
    current: np.ndarray, up_events: History, down_events: History, now: float, direction: Direction
) -> np.ndarray:
    """HPA calculateScaleDownLimitWithBehaviors: the lowest count the scale-down policies allow now.

    Pods subtracts `value` from the period's start; Percent keeps start * (1 - value/100) truncated toward
    zero (periodStart 5, -50 % -> int(2.5) = 2). select max allows the largest drop (the lowest count),
    min the smallest; disabled allows nothing below current.
    """
    current = _f(current)
    return _down_limit(current, direction, _PeriodStarts(current, up_events, down_events, now), slice(None))


_UP_LIMIT, _TOO_MANY = int(Reason.SCALE_UP_LIMIT), int(Reason.TOO_MANY_REPLICAS)
_DOWN_LIMIT, _TOO_FEW = int(Reason.SCALE_DOWN_LIMIT), int(Reason.TOO_FEW_REPLICAS)


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
    lo, hi = _f(min_replicas), _f(max_replicas)
    period_start = _PeriodStarts(current, up_events, down_events, now)
    value, mask = desired.copy(), np.zeros(desired.shape, dtype=np.int64)
    # Each direction's limit only acts where a target moves that way (elsewhere its `capped` or `raised`
    # is False and nothing changes), so it is worked out for those targets alone: usually a few.
    going_up = (desired > current).nonzero()[0]  # comparisons with NaN are False, and quiet
    if going_up.size:
        cur, want, top = current[going_up], desired[going_up], hi if hi.ndim == 0 else hi[going_up]
        up_limit = np.maximum(_up_limit(cur, behavior.scale_up, period_start, going_up), cur)
        rate_bound = top > up_limit
        ceiling = np.where(rate_bound, up_limit, top)
        capped = want > ceiling
        value[going_up] = np.where(capped, ceiling, want)
        mask[going_up] = np.where(capped, np.where(rate_bound, _UP_LIMIT, _TOO_MANY), 0)
    going_down = (desired < current).nonzero()[0]
    if going_down.size:
        cur, want, bottom = current[going_down], desired[going_down], lo if lo.ndim == 0 else lo[going_down]
        down_limit = np.minimum(_down_limit(cur, behavior.scale_down, period_start, going_down), cur)
        rate_bound = bottom < down_limit
        floor = np.where(rate_bound, down_limit, bottom)
        raised = want < floor
        value[going_down] = np.where(raised, floor, want)
        mask[going_down] = np.where(raised, np.where(rate_bound, _DOWN_LIMIT, _TOO_FEW), 0)
    return value, mask


def record_events(
    up_events: History, down_events: History, now: float, current: np.ndarray, desired: np.ndarray
) -> tuple[History, History]:
    """HPA storeScaleEvent: push |desired - current| into the up or down history (0 elsewhere).

    5 -> 8 records 3 up and 0 down; no change, or no decision (NaN), records 0 in both.
    """
    change = _f(desired) - _f(current)
    change = np.where(np.isnan(change), 0.0, change)
    return up_events.push(now, np.maximum(change, 0.0)), down_events.push(now, np.maximum(-change, 0.0))
