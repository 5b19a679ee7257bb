"""HPA `behavior` steps over (targets,) arrays: stabilization and pods/percent rate limits.

Each is an entry point to one step of the compiled decision path (scaler.decision.kernel.tick), run on its own: the
tick runs these same pieces for every target, and the tests derived from HPA's own pin them here.
"""

from __future__ import annotations

import numpy as np

from scaler.decision.history import History
from scaler.decision.kernel import tick as kernel
from scaler.decision.params import SELECTS, rules
from scaler.policy.model import Behavior, Direction


def _f(x: np.ndarray | float) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


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
    low = kernel.history_extreme(t, v, now - up_window, False, False, np.empty(n))
    high = kernel.history_extreme(t, v, now - down_window, False, True, np.empty(n))
    return kernel.stabilize_all(current, proposal, low, high)


def _limit(current: np.ndarray, up_events: History, down_events: History, now: float, direction: Direction,
           up: bool) -> np.ndarray:
    n = current.shape[0]
    return kernel.limits(rules(direction), SELECTS[direction.select], current, _f(up_events.t),
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
    return kernel.clamp_all(desired, current, up, down, lo, hi)

