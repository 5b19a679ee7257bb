"""What the recommendation and scale-event histories say, for every target in one pass over the slots."""

from __future__ import annotations

import math

from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory

# isort: split
from numba import njit  # after the cache module, which settles where numba caches


@njit(cache=CACHE, error_model="numpy")
def history_extreme(t, v, cutoff, inclusive, highest, out):
    """Per target, the highest (or lowest) value recorded after `cutoff` (at it too when inclusive), NaN
    when none: one pass over the slots for every target (rows are slots, so each is read in order). The
    loops have no branches (NaN compares false, so a missing value never wins), so they run as SIMD."""
    n = v.shape[1]
    start = -math.inf if highest else math.inf
    out[:] = start
    for k in range(t.shape[0]):
        tk = t[k]
        if not (tk > cutoff or (inclusive and tk == cutoff)):
            continue
        for j in range(n):
            x = v[k, j]
            o = out[j]
            out[j] = x if (x > o if highest else x < o) else o
    for j in range(n):
        if out[j] == start:
            out[j] = math.nan
    return out


@njit(cache=CACHE, error_model="numpy")
def history_extreme_cols(t, v, cutoffs, inclusive, highest, out):
    """history_extreme with a cutoff per target (policies side by side, each with its own window): a
    record counts for target j when written after cutoffs[j]. Still one pass over the slots, the
    cutoff test folded into the same select, so the inner loop stays free of branches."""
    n = v.shape[1]
    start = -math.inf if highest else math.inf
    out[:] = start
    for k in range(t.shape[0]):
        tk = t[k]
        if tk != tk:
            continue  # a slot never written
        for j in range(n):
            c = cutoffs[j]
            inside = tk > c or (inclusive and tk == c)
            x = v[k, j]
            o = out[j]
            out[j] = x if (inside and (x > o if highest else x < o)) else o
    for j in range(n):
        if out[j] == start:
            out[j] = math.nan
    return out


@njit(cache=CACHE, error_model="numpy")
def period_sum(t, v, cutoff, out):
    """Per target, the sum of the values recorded after `cutoff`, a missing one counted as 0 (slot after
    slot, so each target's sum is added in the same order whatever the other targets)."""
    out[:] = 0.0
    for k in range(t.shape[0]):
        if not t[k] > cutoff:
            continue
        for j in range(v.shape[1]):
            a = v[k, j]
            out[j] += a if a == a else 0.0
    return out
