"""The decision pipeline compiled (numba): one pass over the targets per tick, each target's steps in registers.

`decide` (scaler.decision.decide) builds a policy's Params (scaler.decision.params) once and calls `tick` every interval;
the simulator's closed loop (`run_chunk`, at the end) calls the same `tick`, so both run this code. Each
step is written for one target and reads as the README's pipeline: smooth, propose, band (or HPA
proposals), fallback, stabilize, rate limit, cooldown, panic, hold on missing data, prechecks, record.

All compiled code lives in this one module on purpose: numba's on-disk cache is checked against the
source file of each function only, so a compiled caller in another file could keep running a stale copy
of a function changed here. What it compiles in from other modules (the Params and Model tuples, read by
field position, and the Reason bits) is covered by scaler.decision.kernel.cache, which names the cache directory after
the content of those modules too.
"""

from __future__ import annotations

import math

import numpy as np

from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory
from scaler.decision.reasons import Reason

# isort: split
from numba import njit  # after scaler.decision.kernel.cache, which settles where numba caches

# Metric kinds and window kinds as small ints (the compiled code has no enums).
UTILIZATION, LATENCY, ERROR_RATE, GAUGE = 0, 1, 2, 3
LAST, EWMA, MEAN, MAX, PERCENTILE, TREND = 0, 1, 2, 3, 4, 5
SELECT_MAX, SELECT_MIN, SELECT_DISABLED = 0, 1, 2
PODS, PERCENT = 0, 1

MAX_SIGNAL_RATIO = 2.0
LEGACY_WINDOW = 300.0
SCALE_UP_FACTOR, SCALE_UP_MINIMUM = 2.0, 4.0

_NO_DATA, _FALLBACK, _IN_BAND = int(Reason.NO_DATA), int(Reason.FALLBACK), int(Reason.IN_BAND)
_UP, _DOWN, _PARTIAL = int(Reason.METRIC_UP), int(Reason.METRIC_DOWN), int(Reason.PARTIAL_DATA_UP)
_UP_STAB, _DOWN_STAB = int(Reason.SCALE_UP_STABILIZED), int(Reason.SCALE_DOWN_STABILIZED)
_UP_LIMIT, _DOWN_LIMIT = int(Reason.SCALE_UP_LIMIT), int(Reason.SCALE_DOWN_LIMIT)
_TOO_MANY, _TOO_FEW = int(Reason.TOO_MANY_REPLICAS), int(Reason.TOO_FEW_REPLICAS)
_UP_COOL, _DOWN_COOL, _PANIC = int(Reason.SCALE_UP_COOLDOWN), int(Reason.SCALE_DOWN_COOLDOWN), int(Reason.PANIC)
_DISABLED, _OUT_OF_RANGE = int(Reason.DISABLED), int(Reason.OUT_OF_RANGE)


# ---------------------------------------------------------------------------------------------- windows
# Each window kind has its own loop over the targets, chosen once per metric and tick; inside a loop there
# are no calls that take arrays (each would cost reference counting per target). A utilization window
# (load=True) averages value x serving replicas and reads back per serving replica.


@njit(cache=CACHE, error_model="numpy")
def _last_row(ring, head, write, xs, load, serving, out):
    """No window (or a one-slot ring): the sample itself."""
    for j in range(xs.shape[0]):
        x = xs[j] * serving[j] if load else xs[j]
        if write:
            ring[head, j] = x
        out[j] = x / serving[j] if load else x


@njit(cache=CACHE, error_model="numpy")
def _ewma_row(ring, alpha, xs, load, serving, out):
    """EWMA: the first sample starts the average; a missing one leaves it as it was (and reads NaN)."""
    for j in range(xs.shape[0]):
        x = xs[j] * serving[j] if load else xs[j]
        prev = ring[0, j]
        s = x if prev != prev else prev + alpha * (x - prev)
        if x == x:
            ring[0, j] = s
        out[j] = s / serving[j] if load else s


@njit(cache=CACHE, error_model="numpy")
def _mean_max_row(highest, ring, head, slots, xs, load, serving, out, count):
    """Mean (highest=False) or max of the samples present in each target's ring, slot after slot over all
    targets. Missing samples are left out; a mean counts +-inf as the largest floats."""
    n = xs.shape[0]
    big = np.finfo(np.float64).max
    for j in range(n):
        ring[head, j] = xs[j] * serving[j] if load else xs[j]
        out[j] = math.nan if highest else 0.0
        count[j] = 0.0
    for k in range(slots):
        for j in range(n):
            v = ring[k, j]
            if v != v:
                continue
            if highest:
                if out[j] != out[j] or v > out[j]:
                    out[j] = v
            else:
                out[j] += min(max(v, -big), big)
                count[j] += 1.0
    for j in range(n):
        x = xs[j] * serving[j] if load else xs[j]
        value = out[j] if highest else (out[j] / count[j] if count[j] > 0 else math.nan)
        if x != x:
            value = math.nan  # this tick's sample is missing: no data, whatever the window holds
        out[j] = value / serving[j] if load else value


@njit(cache=CACHE, error_model="numpy")
def _percentile_row(ring, head, slots, q, xs, load, serving, out, scratch):
    """numpy's linear percentile of the samples present in each target's ring (NaN when there are none)."""
    qq = q / 100.0
    for j in range(xs.shape[0]):
        x = xs[j] * serving[j] if load else xs[j]
        ring[head, j] = x
        k = 0
        for s in range(slots):
            v = ring[s, j]
            if v == v:  # insertion sort into scratch[:k + 1]
                i = k
                while i > 0 and scratch[i - 1] > v:
                    scratch[i] = scratch[i - 1]
                    i -= 1
                scratch[i] = v
                k += 1
        value = math.nan
        if k > 0 and x == x:
            vi = k * qq + (1.0 + qq * -1.0) - 1.0  # numpy's virtual index for the linear method
            lo = np.floor(vi)
            gamma = vi - lo
            a = scratch[min(max(int(lo), 0), k - 1)]
            b = scratch[min(max(int(lo) + 1, 0), k - 1)]
            diff = b - a
            value = b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma
        out[j] = value / serving[j] if load else value


@njit(cache=CACHE, error_model="numpy")
def _trend_partial(ring, j, slots, newest, interval, lead):
    """The least-squares line over the samples present, read `lead` after the newest one (flat until the
    samples reach back half the window)."""
    n = 0.0
    st = stt = sy = sty = 0.0
    reach = -1.0
    for k in range(slots):
        v = ring[k, j]
        t = ((newest - k) % slots) * -interval
        if math.isfinite(v):
            n += 1.0
            st += t
            stt += t * t
            sy += v
            sty += v * t
            reach = max(reach, -t)
    if n == 0.0:
        return math.nan
    den = n * stt - st * st
    slope = 0.0
    if reach >= 0.5 * (slots - 1) * interval and den > 0:
        slope = (n * sty - st * sy) / den
    return (sy - slope * st) / n + slope * lead


@njit(cache=CACHE, error_model="numpy")
def _trend_row(ring, head, slots, interval, lead, fp, fq, sums, resync, xs, load, serving, out):
    """The least-squares line through each target's window read `lead` seconds after the newest sample.

    A full window's line is fp x S + fq x U of two running sums (S = sum of y, U = sum of y x age in
    ticks). Each tick every age grows by one and the oldest sample leaves: U' = U + S - slots x y_old,
    S' = S - y_old + y_new, so a tick costs O(targets), not O(targets x slots). The sums are added up
    afresh once per turn of the ring (`resync`), which also keeps rounding from building up; until then a
    missing sample makes that target's sums NaN, and its line is fitted from the samples present.
    Every metric here is a rate, a share or a count: a line falling below zero reads 0.
    """
    for j in range(xs.shape[0]):
        x = xs[j] * serving[j] if load else xs[j]
        old = ring[head, j]
        ring[head, j] = x
        if resync:
            s_ = 0.0
            u_ = 0.0
            for k in range(slots):
                s_ += ring[k, j]
            for k in range(slots):
                u_ += ring[k, j] * float((head - k) % slots)
            sums[0, j] = s_
            sums[1, j] = u_
        else:
            s0 = sums[0, j]
            u0 = sums[1, j]
            u0 = u0 + s0
            u0 = u0 - old * slots
            s0 = s0 - old
            s0 = s0 + x
            sums[0, j] = s0
            sums[1, j] = u0
        value = sums[0, j] * fp
        value += sums[1, j] * fq
        if not math.isfinite(value):
            value = _trend_partial(ring, j, slots, head, interval, lead)  # rare: a gap in the window
        if value == value:
            value = max(value, 0.0)
        if x != x:
            value = math.nan
        out[j] = value / serving[j] if load else value


@njit(cache=CACHE, error_model="numpy")
def smooth_row(w, slots, alpha, q, interval, lead, fp, fq, ring, head, sums, resync, xs, load, serving, out,
                scratch, count):
    """One metric's window for every target: write this tick's samples at `head` and put the smoothed
    value in `out` (NaN wherever this tick's sample is missing: "no data" stays visible)."""
    if w == LAST or (slots == 1 and w != EWMA):
        _last_row(ring, head, w != LAST, xs, load, serving, out)
    elif w == EWMA:
        _ewma_row(ring, alpha, xs, load, serving, out)
    elif w == MEAN or w == MAX:
        _mean_max_row(w == MAX, ring, head, slots, xs, load, serving, out, count)
    elif w == PERCENTILE:
        _percentile_row(ring, head, slots, q, xs, load, serving, out, scratch)
    else:
        _trend_row(ring, head, slots, interval, lead, fp, fq, sums, resync, xs, load, serving, out)


# ---------------------------------------------------------------------------------------------- proposals


@njit(cache=CACHE, inline="always", error_model="numpy")
def _ceil(x):
    # 4 * 85 / 70 = 4.857 -> 5; a value a hair over an integer from float error (3.0000000001) stays 3.
    return np.ceil(x - 1e-9)


@njit(cache=CACHE, error_model="numpy")
def hpa_proposal(kind, target, lo, hi, value, cur, rdy):
    """HPA's replicas for one metric (replica_calculator), NaN where the value is missing. lo, hi: the
    tolerance band of the usage ratio (0.9, 1.1 by default)."""
    if value != value:
        return math.nan
    if kind == GAUGE:
        # An external/object metric: total / per-replica target, every replica counted (ready or not).
        g = value / (target * cur)
        return cur if lo <= g <= hi else np.ceil(value / target)
    ratio = value / target
    sized = cur if lo <= ratio <= hi else np.ceil(ratio * rdy)
    if kind != UTILIZATION:
        return np.ceil(ratio) if cur == 0 else sized
    if rdy <= 0:
        return math.nan
    if rdy < cur and ratio > 1.0:
        # Scaling up with replicas not ready: count them at 0 % (HPA's unready pods), and do not move
        # when that brings the ratio inside the band or below 1.
        new_ratio = (value * rdy / cur) / target
        new = np.ceil(new_ratio * cur)
        if (lo <= new_ratio <= hi) or new_ratio < 1.0 or new < cur:
            return cur
        return new
    return sized


ANY_MISSING, ALL_MISSING, ABOVE, NOT_BELOW = 1, 2, 4, 8


@njit(cache=CACHE, error_model="numpy")
def propose_row(hpa, kind, target, up, down, tol_lo, tol_hi, values, current, ready, out, best, flags):
    """One metric's ask for every target, folded into each target's highest ask and flags. HPA counts a
    metric missing when it gives no proposal; the band, when it has no value (and a missing value is
    neither above the up threshold nor below the down one)."""
    for j in range(values.shape[0]):
        s = values[j]
        cur = current[j]
        rdy = ready[j]
        f = flags[j]
        if hpa:
            prop = hpa_proposal(kind, target, tol_lo, tol_hi, s, cur, rdy)
            missing = prop != prop
        else:
            # 70 % target, 85 % observed on 4 ready -> ceil(4 x 85 / 70) = 5; queue 120 at 10 each -> 12.
            ratio = s / target
            if kind == LATENCY or kind == ERROR_RATE:
                ratio = min(ratio, MAX_SIGNAL_RATIO) if ratio == ratio else ratio
            prop = _ceil(ratio if kind == GAUGE else ratio * (rdy if rdy > 0 else cur))
            missing = s != s
            if s > up:
                f |= ABOVE
            if not (s < down):
                f |= NOT_BELOW
        out[j] = prop
        if prop == prop:
            f &= ~ALL_MISSING
            if not (prop <= best[j]):  # best NaN (none yet) compares false too
                best[j] = prop
        if missing:
            f |= ANY_MISSING
        flags[j] = f



# ---------------------------------------------------------------------------------------------- history


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


# ---------------------------------------------------------------------------------------------- behavior


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
            return ceiling, (_UP_LIMIT if rate_bound else _TOO_MANY)
    elif want < cur:
        limit = min(down_limit, cur)
        rate_bound = lo < limit
        floor = limit if rate_bound else lo
        if want < floor:
            return floor, (_DOWN_LIMIT if rate_bound else _TOO_FEW)
    return want, 0


@njit(cache=CACHE, inline="always", error_model="numpy")
def legacy_one(raw, highest, cur, lo, hi):
    """HPA without behavior: the highest recommendation of the last 5 minutes (`highest`, NaN if none),
    then [min, min(max, max(2 x current, 4))]. Returns (value, reason)."""
    if raw != raw:
        return math.nan, 0
    stabilized = raw if highest != highest or highest <= raw else highest
    reason = _DOWN_STAB if stabilized > raw else 0
    cap = np.trunc(max(SCALE_UP_FACTOR * cur, SCALE_UP_MINIMUM))
    ceiling = cap if hi > cap else hi
    if stabilized < lo:
        return lo, reason | _TOO_FEW
    if stabilized > ceiling:
        return ceiling, reason | (_UP_LIMIT if hi > cap else _TOO_MANY)
    return stabilized, reason


@njit(cache=CACHE, inline="always", error_model="numpy")
def precheck_one(cur, lo, hi):
    """HPA's checks before reading metrics: (forced count or NaN, reason). Scaled to 0 by hand with min
    above 0: autoscaling is off; outside [min, max]: go to the bound."""
    if cur == 0 and lo > 0:
        return 0.0, _DISABLED
    if cur > hi:
        return hi, _OUT_OF_RANGE
    if cur < lo:
        return lo, _OUT_OF_RANGE
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


# ---------------------------------------------------------------------------------------------- the tick


@njit(cache=CACHE, error_model="numpy")
def tick(p, rings, heads, sums, resync, panic_rings, panic_heads, recs_t, recs_v, recs_head, ev_t, up_v, down_v,
         ev_head, last_up, last_change, panic_until, blind, observed, current, ready, now,
         smoothed, proposals, raw_out, stabilized_out, desired_out, reasons_out):
    """One decision for every target, reading and updating the state arrays in place.

    rings: every metric's window ring stacked (sum of slots, targets), metric i's rows starting at
    p.ring_start[i]; heads: the slot each writes now; sums (metrics, 2, targets): a trend's running sums;
    resync[i] tells a trend to add its sums up afresh. panic_rings: the short windows of the utilization
    metrics, stacked the same way (p.panic_start). One array of each kind, whatever the policy, so the
    compiled code is the same for every policy. recs_*: the recommendation history; ev_t/up_v/down_v:
    the scale events (one slot time for both), written at recs_head / ev_head. Outputs are per target:
    smoothed and proposals (metrics, targets), raw proposal, stabilized, desired, reason mask.

    Steps that read the histories run first for every target (one pass over the slots); the loop over
    targets after them is plain arithmetic on each target's numbers.
    """
    m, n = observed.shape
    scratch = np.empty(max(1, p.slots.max()))
    count = np.empty(n)
    serving = np.empty(n)
    for j in range(n):
        serving[j] = ready[j] if ready[j] > 0 else math.nan
    # 1. smooth: metric by metric, each over every target
    for i in range(m):
        smooth_row(p.window[i], p.slots[i], p.alpha[i], p.q[i], p.interval, p.lead[i], p.fit_p[i], p.fit_q[i],
                    rings[p.ring_start[i]:p.ring_start[i] + p.slots[i]], heads[i], sums[i], resync[i], observed[i],
                    p.kind[i] == UTILIZATION and p.window[i] != LAST, serving, smoothed[i], scratch, count)
    # the panic windows (utilization metrics, raw values): the highest short-window value / target
    panic_ratio = np.full(n, math.nan)
    if p.has_panic:
        for r in range(p.panic_rows.shape[0]):
            a = p.panic_start[r]
            _panic_row(panic_rings[a:a + p.panic_slots[r]], panic_heads[r], p.panic_slots[r], observed[p.panic_rows[r]],
                       p.target[p.panic_rows[r]], panic_ratio)
    # what the history says, for every target at once (read before this tick's records are written)
    lo, hi = p.min, p.max
    high = np.empty(n)
    low = np.empty(n)
    up_lim = np.empty(n)
    down_lim = np.empty(n)
    if p.legacy:
        history_extreme(recs_t, recs_v, now - LEGACY_WINDOW, True, True, high)
    else:
        history_extreme(recs_t, recs_v, now - p.up_window, False, False, low)
        history_extreme(recs_t, recs_v, now - p.down_window, False, True, high)
        added = np.empty(n)
        removed = np.empty(n)
        limits(p.up_policies, p.up_select, current, ev_t, up_v, ev_t, down_v, now, True, added, removed, up_lim)
        limits(p.down_policies, p.down_select, current, ev_t, up_v, ev_t, down_v, now, False, added, removed,
               down_lim)
    # 2. propose: metric by metric over every target; per target the highest ask and what was missing
    best = np.full(n, math.nan)
    flags = np.full(n, ALL_MISSING, dtype=np.int64)  # ANY_MISSING, ALL_MISSING, ABOVE, NOT_BELOW bits
    for i in range(m):
        propose_row(p.hpa, p.kind[i], p.target[i], p.up[i], p.down[i], 1.0 - p.tol_down, 1.0 + p.tol_up,
                     smoothed[i], current, ready, proposals[i], best, flags)
    hpa, legacy = p.hpa, p.legacy
    fallback, fb_after, fb = p.has_fallback, p.fallback_after, min(p.fallback_replicas, p.max)
    cool_up, cool_down = p.cooldown_up, p.cooldown_down
    panic, panic_threshold, panic_hold = p.has_panic, p.panic_threshold, p.panic_hold
    for j in range(n):
        cur = current[j]
        rdy = ready[j]
        base = rdy if rdy > 0 else cur
        f = flags[j]
        any_missing = (f & ANY_MISSING) != 0
        all_missing = (f & ALL_MISSING) != 0
        above = (f & ABOVE) != 0
        below = (f & NOT_BELOW) == 0
        best_j = best[j]
        # 3. band (or HPA's validity rule), missing data
        if hpa:
            invalid = all_missing or (any_missing and best_j < cur)
            raw = cur if invalid else best_j
            if invalid:
                reasons = _NO_DATA
            elif raw > cur:
                reasons = _UP
            elif raw < cur:
                reasons = _DOWN
            else:
                reasons = _IN_BAND
            if any_missing and not invalid:
                reasons |= _PARTIAL
            hold = invalid
        else:
            up = above and best_j > cur
            down = below and best_j < cur
            raw = best_j if (up or down) else cur
            # Missing data never lowers the count: without an up signal from the metrics we have, hold.
            hold = any_missing and not up
            reasons = 0
            if up:
                reasons += _UP
                if any_missing:
                    reasons += _PARTIAL
            elif down:
                reasons += _DOWN
            elif not any_missing:
                reasons += _IN_BAND
            if hold:
                reasons += _NO_DATA
        blind[j] = blind[j] + 1 if any_missing else 0
        # Blind long enough: raise to the fallback count, never below current or a healthy up proposal.
        if fallback and blind[j] >= fb_after and fb > raw:
            raw = fb
            reasons += _FALLBACK
            hold = False
        # 4-6. stabilize, rate limit, cooldown
        desired = raw
        stabilized = raw
        steps = 0
        if legacy:
            desired, steps = legacy_one(raw, high[j], cur, lo, hi)
            stabilized = desired
        elif raw != cur and not hold:
            stab = stabilize_one(cur, raw, low[j], high[j])
            if stab > raw:
                steps |= _DOWN_STAB
            elif stab < raw:
                steps |= _UP_STAB
            desired, limited = clamp_step(stab, cur, up_lim[j], down_lim[j], lo, hi)
            steps |= limited
            if not hpa:
                # No scale-up too soon after a scale-up; no scale-down too soon after any scale action.
                # (a cooldown of 0 is none, even when the last action's time is ahead of this clock)
                if desired > cur and cool_up > 0 and now - last_up[j] < cool_up:
                    desired = cur
                    steps |= _UP_COOL
                elif desired < cur and cool_down > 0 and now - last_change[j] < cool_down:
                    desired = cur
                    steps |= _DOWN_COOL
            stabilized = stab
        # 7. panic: straight to the short-window ask, and no scale-down while it lasts
        if panic:
            ratio = panic_ratio[j]
            trigger = ratio >= panic_threshold
            still = now < panic_until[j]
            if trigger:
                panic_until[j] = now + panic_hold
            if trigger or still:
                burst = min(_ceil(base * ratio), hi) if trigger else 0.0
                out = max(max(desired, cur), burst)
                if out != desired:
                    steps |= _PANIC
                desired = out
        if hold and not legacy:
            stabilized = raw
        # 8. hold on missing data; out-of-range counts go to the bound without reading metrics (HPA)
        if hold:
            desired = cur
        else:
            reasons |= steps
        forced, forced_reason = precheck_one(cur, lo, hi)
        if forced == forced:
            desired, reasons, hold = forced, forced_reason, True
        # 9. record: the raw recommendation (none where held), and the change as scale events
        recs_v[recs_head, j] = math.nan if hold else raw
        change = desired - cur
        up_v[ev_head, j] = max(change, 0.0)
        down_v[ev_head, j] = max(-change, 0.0)
        if change > 0:
            last_up[j] = now
        if change != 0:
            last_change[j] = now
        raw_out[j] = raw
        stabilized_out[j] = stabilized
        desired_out[j] = desired
        reasons_out[j] = reasons
    # Each target wrote its own column of the newest slots after the history was read; the slots' times
    # are stamped once all have (until then the slots hold their old, evicted, records).
    recs_t[recs_head] = now
    ev_t[ev_head] = now


@njit(cache=CACHE, error_model="numpy")
def _panic_row(ring, head, slots, xs, target, ratio):
    """One utilization metric's short window: write the samples, and raise ratio to short mean / target."""
    n = xs.shape[0]
    big = np.finfo(np.float64).max
    for j in range(n):
        x = xs[j]
        ring[head, j] = x
        short = x
        if slots > 1 and x == x:
            s = 0.0
            count = 0
            for k in range(slots):
                v = ring[k, j]
                if v == v:
                    count += 1
                    s += min(max(v, -big), big)
            short = s / count
        v = short / target
        if ratio[j] != ratio[j] or v > ratio[j]:
            ratio[j] = v


# ---------------------------------------------------------------------------------------------- one step
# Single steps over (targets,) arrays, for scaler.decision.behavior and scaler.decision.hpa to run one step on its own (the
# tick runs the same scalar pieces inline).


@njit(cache=CACHE, error_model="numpy")
def stabilize_all(current, proposal, low, high):
    out = np.empty_like(current)
    for j in range(current.shape[0]):
        p = proposal[j]
        out[j] = stabilize_one(current[j], p, low[j], high[j]) if p == p else math.nan
    return out


@njit(cache=CACHE, error_model="numpy")
def clamp_all(desired, current, up, down, lo, hi):
    value = np.empty_like(desired)
    mask = np.zeros(desired.shape[0], dtype=np.int64)
    for j in range(desired.shape[0]):
        value[j], mask[j] = clamp_step(desired[j], current[j], up[j], down[j], lo[j], hi[j])
    return value, mask


@njit(cache=CACHE, error_model="numpy")
def precheck_all(current, lo, hi):
    forced = np.empty_like(current)
    mask = np.zeros(current.shape[0], dtype=np.int64)
    for j in range(current.shape[0]):
        forced[j], mask[j] = precheck_one(current[j], lo[j], hi[j])
    return forced, mask


@njit(cache=CACHE, error_model="numpy")
def legacy_all(proposal, current, high, lo, hi):
    value = np.empty_like(proposal)
    mask = np.zeros(proposal.shape[0], dtype=np.int64)
    for j in range(proposal.shape[0]):
        value[j], mask[j] = legacy_one(proposal[j], high[j], current[j], lo[j], hi[j])
    return value, mask


# ---------------------------------------------------------------------------------------------- closed loop
# The simulated world and the tick, one step after another (scaler.simulate.replay prepares the arrays and calls
# run_chunk for successive chunks of ticks). `w` is a scaler.simulate.world.Model.


@njit(cache=CACHE, error_model="numpy")
def latency(scale, cap, rho):
    """p95 latency (s) of one replica at utilization rho, as an M/M/1 queue: scale / (1 - rho), where
    scale = service time x ln 20 (the p95 of an exponential sojourn is ln 20 x its mean); a saturated
    replica (rho >= 1) sits at `cap`, a client timeout. 20 ms service: rho 0.5 -> 0.12 s, 0.8 -> 0.30 s."""
    if rho != rho:
        return math.nan
    lat = scale / max(1.0 - rho, 1e-12)
    if rho >= 1.0:
        lat = cap
    return min(lat, cap)


@njit(cache=CACHE, error_model="numpy")
def error_rate(rho):
    """Share of requests that fail: the demand above capacity (rho 1.25 -> 0.2)."""
    if rho != rho:
        return math.nan
    return 1.0 - 1.0 / max(rho, 1.0)


@njit(cache=CACHE, error_model="numpy")
def run_chunk(p, w, k0, times, load, gauges,
              rings, heads, sums, resync, panic_rings, panic_heads, recs_t, recs_v, head, ev_t, up_v, down_v,
              last_up, last_change, panic_until, blind,
              requests, seen, seen_ready,
              hours, violation, no_data, ups, downs, peak,
              record, tl_replicas, tl_ready, tl_desired, tl_observed, tl_smoothed, tl_slo, tl_reasons):
    """Ticks k0 .. k0 + len(load) - 1 of the closed loop, updating every state array in place.

    load: (ticks, targets) demand in replica-equivalents (NaN: a gap in the recording); gauges: (metrics,
    ticks, targets) recorded values of gauge metrics. requests: ring (delay, targets), row k % delay the
    count requested at tick k - delay; a replica requested at tick j serves from tick j + delay, and with
    the newest removed first, ready = the smallest request of the last `delay` ticks (60 s at 15 s -> 4).
    seen / seen_ready: ring (lag + 1, ...) of what the world showed at each tick; the controller reads
    the one from `lag` ticks ago, metrics and the ready count together (pairing old utilization with
    today's ready count would count load against replicas that were not serving yet). Returns the
    history head after the chunk; timeline rows are written at absolute tick numbers when `record`.
    """
    ticks, n = load.shape
    m = p.kind.shape[0]
    d, lag = w.delay, w.lag
    ring_len = lag + 1
    dt = w.interval
    hour = dt / 3600.0
    ready = np.empty(n)
    current = np.empty(n)
    rho = np.empty(n)
    lat, err, util = np.empty(n), np.empty(n), np.empty(n)
    unseen = np.full((m, n), math.nan)
    smoothed, proposals = np.empty((m, n)), np.empty((m, n))
    raw, stabilized, desired = np.empty(n), np.empty(n), np.empty(n)
    reasons = np.empty(n, dtype=np.int64)
    slots = recs_t.shape[0]
    for c in range(ticks):
        k = k0 + c
        # the world now: ready replicas, utilization rho = demand / ready, and the true metrics
        for j in range(n):
            r = requests[0, j]
            for i in range(1, d):
                r = min(r, requests[i, j])
            ready[j] = r
            current[j] = requests[(k - 1 + d) % d, j]
            x = load[c, j]
            if r > 0:
                rho[j] = x / r
            else:
                rho[j] = math.inf if x > 0 else 0.0
        # latency and error rate of every target once (the metrics and the SLO check both read them);
        # NaN where the recording has a gap, so no metric at all is seen there
        for j in range(n):
            q = rho[j] if load[c, j] == load[c, j] else math.nan
            lat[j] = latency(w.latency_scale, w.latency_cap, q)
            err[j] = error_rate(q)
            util[j] = min(q, 1.0) * 100.0 if q == q else math.nan
        truth = seen[k % ring_len]
        for i in range(m):
            kind = p.kind[i]
            if kind == UTILIZATION:
                truth[i] = util
            elif kind == LATENCY:
                truth[i] = lat
            elif kind == ERROR_RATE:
                truth[i] = err
            else:
                for j in range(n):
                    truth[i, j] = gauges[i, c, j] if load[c, j] == load[c, j] else math.nan
        seen_ready[k % ring_len] = ready
        observed = seen[(k - lag) % ring_len] if k >= lag else unseen
        view = seen_ready[(k - lag) % ring_len] if k >= lag else ready
        # the decision, as the live loop makes it
        tick(p, rings, heads, sums, resync, panic_rings, panic_heads, recs_t, recs_v, head, ev_t, up_v,
                    down_v, head, last_up, last_change, panic_until, blind, observed, current, view, times[c],
                    smoothed, proposals, raw, stabilized, desired, reasons)
        head = (head + 1) % slots
        for i in range(m):
            heads[i] = (heads[i] + 1) % p.slots[i]
            resync[i] = p.window[i] == TREND and heads[i] == p.slots[i] - 1
        for r in range(p.panic_slots.shape[0]):
            panic_heads[r] = (panic_heads[r] + 1) % p.panic_slots[r]
        requests[k % d] = desired
        # what it cost and how the world fared this tick
        for j in range(n):
            x = load[c, j]
            known = x == x
            breach = False
            if known:
                if lat[j] > w.slo_latency or err[j] > w.slo_error_rate or rho[j] * 100.0 > w.slo_utilization:
                    breach = True  # (no SLO of a kind is NaN, which no value exceeds)
            else:
                no_data[j] += dt
            if breach:
                violation[j] += dt
            now_count = desired[j]
            hours[j] += now_count * hour
            if now_count > current[j]:
                ups[j] += 1
            elif now_count < current[j]:
                downs[j] += 1
            if now_count > peak[j]:
                peak[j] = now_count
            if record:
                tl_replicas[k, j] = current[j]
                tl_ready[k, j] = ready[j]
                tl_desired[k, j] = now_count
                tl_slo[k, j] = (0 if breach else 1) if known else -1
                tl_reasons[k, j] = reasons[j]
                for i in range(m):
                    tl_observed[k, i, j] = observed[i, j]
                    tl_smoothed[k, i, j] = smoothed[i, j]
    return head


@njit(cache=CACHE, error_model="numpy")
def world_metrics(scale, cap, rho, lat, err):
    """latency() and error_rate() for every element of rho (1-d), into lat and err."""
    for j in range(rho.shape[0]):
        lat[j] = latency(scale, cap, rho[j])
        err[j] = error_rate(rho[j])
