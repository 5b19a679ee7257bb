"""HPA `behavior` steps over (targets,) arrays: stabilization, pods/percent rate limits, scale events."""

from __future__ import annotations

import numpy as np

from scaler.history import History
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
    out = np.where(current < up, up, current)
    out = np.where(out > down, down, out)
    return np.where(np.isnan(proposal), np.nan, out)


def _period_start(current: np.ndarray, up_events: History, down_events: History, now: float, period: float):
    # The count this period began with: 6 now, +4 and -2 inside the period -> it began at 4.
    return current - up_events.sum_within(now, period) + down_events.sum_within(now, period)


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
    if direction.select == "disabled":
        return current.copy()
    pick = np.maximum if direction.select == "max" else np.minimum
    out = np.full(current.shape, -np.inf if direction.select == "max" else np.inf)
    for p in direction.policies:
        start = _period_start(current, up_events, down_events, now, p.period)
        if p.type == "pods":
            proposed = start + p.value
        else:
            # Same float expression as HPA, so its rounding matches too: 100 * (1 + 10/100) is
            # 110.00000000000001, which rounds up to 111.
            proposed = np.ceil(start * (1 + p.value / 100))
        out = pick(out, proposed)
    return out


def scale_down_limit(
    current: np.ndarray, up_events: History, down_events: History, now: float, direction: Direction
) -> np.ndarray:
    """HPA calculateScaleDownLimitWithBehaviors: the lowest count the scale-down policies allow now.

    Pods subtracts `value` from the period's start; Percent keeps start * (1 - value/100) truncated toward
    zero (periodStart 5, -50 % -> int(2.5) = 2). select max allows the largest drop (the lowest count),
    min the smallest; disabled allows nothing below current.
    """
    current = _f(current)
    if direction.select == "disabled":
        return current.copy()
    pick = np.minimum if direction.select == "max" else np.maximum
    out = np.full(current.shape, np.inf if direction.select == "max" else -np.inf)
    for p in direction.policies:
        start = _period_start(current, up_events, down_events, now, p.period)
        if p.type == "pods":
            proposed = start - p.value
        else:
            proposed = np.trunc(start * (1 - p.value / 100))
        out = pick(out, proposed)
    return out


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
    with np.errstate(invalid="ignore"):
        going_up = desired > current
        going_down = desired < current

    events = (up_events, down_events, now)
    up_limit = np.maximum(scale_up_limit(current, *events, behavior.scale_up), current)
    ceiling = np.where(hi > up_limit, up_limit, hi)
    up_reason = np.where(hi > up_limit, Reason.SCALE_UP_LIMIT, Reason.TOO_MANY_REPLICAS)
    capped = going_up & (desired > ceiling)

    down_limit = np.minimum(scale_down_limit(current, *events, behavior.scale_down), current)
    floor = np.where(lo < down_limit, down_limit, lo)
    down_reason = np.where(lo < down_limit, Reason.SCALE_DOWN_LIMIT, Reason.TOO_FEW_REPLICAS)
    raised = going_down & (desired < floor)

    value = np.where(capped, ceiling, np.where(raised, floor, desired))
    mask = np.where(capped, up_reason, 0) | np.where(raised, down_reason, 0)
    return value, mask.astype(np.int64)


def record_events(
    up_events: History, down_events: History, now: float, current: np.ndarray, desired: np.ndarray
) -> tuple[History, History]:
    """HPA storeScaleEvent: push |desired - current| into the up or down history (0 elsewhere).

    5 -> 8 records 3 up and 0 down; no change, or no decision (NaN), records 0 in both.
    """
    change = _f(desired) - _f(current)
    change = np.where(np.isnan(change), 0.0, change)
    return up_events.push(now, np.maximum(change, 0.0)), down_events.push(now, np.maximum(-change, 0.0))
