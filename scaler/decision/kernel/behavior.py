"""HPA's behavior steps for one target (stabilization, rate limits, bounds, the legacy path, prechecks),
and the rate limits of every target from the scale-event history."""

from __future__ import annotations

import math

import numpy as np

from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory
from scaler.decision.kernel.codes import (
    DISABLED,
    DOWN_LIMIT,
    DOWN_STAB,
    OUT_OF_RANGE,
    PODS,
    SCALE_UP_FACTOR,
    SCALE_UP_MINIMUM,
    SELECT_DISABLED,
    SELECT_MAX,
    TOO_FEW,
    TOO_MANY,
    UP_LIMIT,
)
from scaler.decision.kernel.history import period_sum

# isort: split
from numba import njit  # after the cache module, which settles where numba caches


@njit(cache=CACHE, inline="always", error_model="numpy")
def stabilize_one(cur, proposal, up_low, down_high):
    """HPA's stabilization: current held between the lowest recommendation of the up window and the
    highest of the down window, each including the proposal (up_low / down_high NaN: none in the window).
    Down window holding 8, 6 and proposal 5 on current 7 -> min(8, max(5, 7)) = 7: no scale-down yet."""
    up = proposal if up_low != up_low else min(up_low, proposal)
    down = proposal if down_high != down_high else max(down_high, proposal)
    return min(down, max(up, cur))


@njit(cache=CACHE, inline="always", error_model="numpy")
def up_allowed(kind, value, start):
    """Replicas one scale-up policy allows from the count its period began with: 4 pods from 10 -> 14;
    100 % from 3 -> ceil(3 x 2) = 6."""
    return start + value if kind == PODS else np.ceil(start * (1 + value / 100))


@njit(cache=CACHE, inline="always", error_model="numpy")
def down_allowed(kind, value, start):
    """Replicas one scale-down policy allows: 2 pods from 10 -> 8; 10 % from 15 -> trunc(13.5) = 13."""
    return start - value if kind == PODS else np.trunc(start * (1 - value / 100))


@njit(cache=CACHE, inline="always", error_model="numpy")
def pick(select, a, b, up):
    """selectPolicy over two allowances (NaN = none yet): Max is the larger change, Min the smaller."""
    if a != a:
        return b
    larger = (select == SELECT_MAX) == up
    return max(a, b) if larger else min(a, b)


@njit(cache=CACHE, inline="always", error_model="numpy")
def clamp_step(want, cur, up_limit, down_limit, lo, hi):
    """(value, reason) after the rate limit and bounds of the direction `want` moves in; the reason says
    which bound bit (a rate limit where it is the tighter one, else min/max)."""
    if want > cur:
        limit = max(up_limit, cur)
        rate_bound = hi > limit
        ceiling = limit if rate_bound else hi
        if want > ceiling:
            return ceiling, (UP_LIMIT if rate_bound else TOO_MANY)
    elif want < cur:
        limit = min(down_limit, cur)
        rate_bound = lo < limit
        floor = limit if rate_bound else lo
        if want < floor:
            return floor, (DOWN_LIMIT if rate_bound else TOO_FEW)
    return want, 0


@njit(cache=CACHE, inline="always", error_model="numpy")
def legacy_one(raw, highest, cur, lo, hi):
    """HPA without behavior: the highest recommendation of the last 5 minutes (`highest`, NaN if none),
    then [min, min(max, max(2 x current, 4))]. Returns (value, reason)."""
    if raw != raw:
        return math.nan, 0
    stabilized = raw if highest != highest or highest <= raw else highest
    reason = DOWN_STAB if stabilized > raw else 0
    cap = np.trunc(max(SCALE_UP_FACTOR * cur, SCALE_UP_MINIMUM))
    ceiling = cap if hi > cap else hi
    if stabilized < lo:
        return lo, reason | TOO_FEW
    if stabilized > ceiling:
        return ceiling, reason | (UP_LIMIT if hi > cap else TOO_MANY)
    return stabilized, reason


@njit(cache=CACHE, inline="always", error_model="numpy")
def precheck_one(cur, lo, hi):
    """HPA's checks before reading metrics: (forced count or NaN, reason). Scaled to 0 by hand with min
    above 0: autoscaling is off; outside [min, max]: go to the bound."""
    if cur == 0 and lo > 0:
        return 0.0, DISABLED
    if cur > hi:
        return hi, OUT_OF_RANGE
    if cur < lo:
        return lo, OUT_OF_RANGE
    return math.nan, 0


@njit(cache=CACHE, error_model="numpy")
def limits(policies, select, cur, up_t, up_v, down_t, down_v, now, up, added, removed, out):
    """Per target, the count one direction's rate-limit policies allow (HPA's calculateScaleUpLimit /
    calculateScaleDownLimit). Each policy counts from the count its period began with: current - replicas
    added + replicas removed inside it (6 now, +4 and -2 in the period -> it began at 4). Disabled: the
    current count; no policy: -inf up, +inf down under select max (the other way round under min)."""
    n = cur.shape[0]
    if select == SELECT_DISABLED:
        out[:] = cur
        return out
    out[:] = math.nan
    for r in range(policies.shape[0]):
        kind, value, period = int(policies[r, 0]), policies[r, 1], policies[r, 2]
        period_sum(up_t, up_v, now - period, added)
        period_sum(down_t, down_v, now - period, removed)
        for j in range(n):
            start = cur[j] - added[j] + removed[j]
            allowed = up_allowed(kind, value, start) if up else down_allowed(kind, value, start)
            out[j] = pick(select, out[j], allowed, up)
    if policies.shape[0] == 0:
        out[:] = -math.inf if (select == SELECT_MAX) == up else math.inf
    return out
