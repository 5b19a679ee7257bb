"""What each metric asks for: the hysteresis band's ratio rule, or HPA's replica calculator, compiled."""

from __future__ import annotations

import math

import numpy as np

from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory
from scaler.decision.kernel.codes import ERROR_RATE, GAUGE, LATENCY, MAX_SIGNAL_RATIO, UTILIZATION

# isort: split
from numba import njit  # after the cache module, which settles where numba caches


@njit(cache=CACHE, inline="always", error_model="numpy")
def _ceil(x):
    # 4 * 85 / 70 = 4.857 -> 5; a value a hair over an integer from float error (3.0000000001) stays 3.
    return np.ceil(x - 1e-9)


@njit(cache=CACHE, error_model="numpy")
def hpa_proposal(kind, target, lo, hi, value, cur, rdy, whole):
    """HPA's replicas for one metric (replica_calculator), as (replicas, ratio, base) with replicas =
    ceil(ratio x base), or (cur, NaN, cur) where the ratio is inside the tolerance and the count stays;
    all NaN where the value is missing. lo, hi: the tolerance band of the usage ratio (0.9, 1.1 by
    default). whole: the value is a resource utilization, which HPA takes as a whole percent
    (int32(usage x 100 / requests): 53.7 -> 53)."""
    if value != value:
        return math.nan, math.nan, math.nan
    if kind == GAUGE:
        # An external/object metric: total / per-replica target, every replica counted (ready or not).
        g = value / (target * cur)
        if lo <= g <= hi:
            return cur, math.nan, cur
        return np.ceil(value / target), value / target, 1.0
    ratio = (np.floor(value) if whole else value) / target
    if kind != UTILIZATION and cur == 0:
        return np.ceil(ratio), ratio, 1.0
    if lo <= ratio <= hi:
        sized, sized_ratio, sized_base = cur, math.nan, cur
    else:
        sized, sized_ratio, sized_base = np.ceil(ratio * rdy), ratio, rdy
    if kind != UTILIZATION:
        return sized, sized_ratio, sized_base
    if rdy <= 0:
        return math.nan, math.nan, math.nan
    if rdy < cur and ratio > 1.0:
        # Scaling up with replicas not ready: count them at 0 % (HPA's unready pods), and do not move
        # when that brings the ratio inside the band or below 1.
        spread = value * rdy / cur  # the same usage over every replica's request
        new_ratio = (np.floor(spread) if whole else spread) / target
        new = np.ceil(new_ratio * cur)
        if (lo <= new_ratio <= hi) or new_ratio < 1.0 or new < cur:
            return cur, math.nan, cur
        return new, new_ratio, cur
    return sized, sized_ratio, sized_base


ANY_MISSING, ALL_MISSING, ABOVE, NOT_BELOW = 1, 2, 4, 8


@njit(cache=CACHE, error_model="numpy")
def propose_row(hpa, kind, target, whole, up, down, tol_lo, tol_hi, values, current, ready, out, ratio_out,
                base_out, best, flags):
    """propose_cols with one target and band for every target (scaler.decision.steps runs it alone)."""
    propose_cols(hpa, kind, np.full(1, target), whole, np.full(1, up), np.full(1, down), False, tol_lo, tol_hi,
                 values, np.zeros(values.shape[0], dtype=np.bool_), current, ready, out, ratio_out, base_out, best,
                 flags)


@njit(cache=CACHE, error_model="numpy")
def propose_cols(hpa, kind, target, whole, up, down, wide, tol_lo, tol_hi, values, silent, current, ready, out,
                 ratio_out, base_out, best, flags):
    """One metric's ask for every target (out = ceil(ratio_out x base_out), the factors kept so a decision
    can be explained with the numbers it used), folded into each target's highest ask and flags. HPA
    counts a metric missing when it gives no proposal; the band, when it has no value (and a missing
    value is neither above the up threshold nor below the down one). target, up, down: the metric's row
    of per-column values (Params): target j reads column j when `wide`, else column 0.

    A target whose window has no opinion (`silent`: a seasonal window without its pattern) asks nothing and
    counts for nothing: not missing, not above, and no bar to a scale-down the other metrics agree on."""
    for j in range(values.shape[0]):
        if silent[j]:
            out[j] = math.nan
            ratio_out[j] = math.nan
            base_out[j] = math.nan
            flags[j] &= ~ALL_MISSING  # it has data; the hold for "no metric at all" is not its to call
            continue
        c = j if wide else 0
        t = target[c]
        s = values[j]
        cur = current[j]
        rdy = ready[j]
        f = flags[j]
        if hpa:
            prop, ratio, base = hpa_proposal(kind, t, tol_lo, tol_hi, s, cur, rdy, whole)
            missing = prop != prop
        else:
            # 70 % target, 85 % observed on 4 ready -> ceil(4 x 85 / 70) = 5; queue 120 at 10 each -> 12.
            ratio = s / t
            if kind == LATENCY or kind == ERROR_RATE:
                ratio = min(ratio, MAX_SIGNAL_RATIO) if ratio == ratio else ratio
            if kind == GAUGE:
                base = 1.0
                prop = _ceil(ratio)
            else:
                base = rdy if rdy > 0 else cur
                prop = _ceil(ratio * base)
            missing = s != s
            if s > up[c]:
                f |= ABOVE
            if not (s < down[c]):
                f |= NOT_BELOW
        out[j] = prop
        ratio_out[j] = ratio
        base_out[j] = base
        if prop == prop:
            f &= ~ALL_MISSING
            if not (prop <= best[j]):  # best NaN (none yet) compares false too
                best[j] = prop
        if missing:
            f |= ANY_MISSING
        flags[j] = f
