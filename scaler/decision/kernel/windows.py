"""Smoothing windows (last, EWMA, mean, max, percentile, trend; a max that reads further back while the metric is
noisy) compiled, each over every target of one metric.

Each window kind has its own loop over the targets, chosen once per metric and tick; inside a loop there
are no calls that take arrays (each would cost reference counting per target). A utilization window
(load=True) averages value x serving replicas and reads back per serving replica.
"""

from __future__ import annotations

import math

import numpy as np

from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory
from scaler.decision.kernel.codes import EWMA, LAST, MAX, MEAN, PERCENTILE

# isort: split
from numba import njit  # after the cache module, which settles where numba caches


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
def noise_step(sums, j, alpha, x, before):
    """A noisy max's two means for target j moved on by one sample x (`before`: the sample of the tick before;
    NaN: none): sums[0, j] the mean absolute change, sums[1, j] the mean level, each started by its first term.
    A missing sample moves neither."""
    if x == x:
        level = sums[1, j]
        sums[1, j] = x if level != level else level + alpha * (x - level)
        if before == before:
            d = abs(x - before)
            change = sums[0, j]
            sums[0, j] = d if change != change else change + alpha * (d - change)


@njit(cache=CACHE, error_model="numpy")
def noisy_max_row(ring, head, slots, short, alpha, above, sums, xs, load, serving, out, noise, span):
    """A max window that reads further back while the metric is noisy: the highest sample present of the last
    `short` slots, or of all `slots` while the mean tick-to-tick change is more than `above` x the mean level.

    Both means are exponentially weighted (a new tick weighs `alpha`) and kept in `sums`: row 0 the mean
    absolute change from the previous tick's sample, row 1 the mean level. A utilization window measures its
    load (value x serving), so adding replicas is not noise. A source sampled coarser than the interval
    repeats its value between samples, so its mean change stays a small share of its level. `noise` gets
    each target's mean change over its mean level (NaN until both are known); `span` is scratch.
    Slot after slot over all targets, as the plain max.
    """
    n = xs.shape[0]
    prev = (head - 1 + slots) % slots
    noisy = False
    for j in range(n):
        x = xs[j] * serving[j] if load else xs[j]
        before = ring[prev, j]
        ring[head, j] = x
        noise_step(sums, j, alpha, x, before)
        change, level = sums[0, j], sums[1, j]
        ratio = math.nan
        if change == change and level == level:
            ratio = change / level if level > 0 else (0.0 if change == 0 else math.inf)
        noise[j] = ratio
        span[j] = slots if ratio > above else short
        noisy = noisy or ratio > above
        out[j] = math.nan
    # the short span for every target, then the rest of the ring for the noisy ones (if any)
    for k in range(slots if noisy else short):
        slot = (head - k + slots) % slots
        for j in range(n):
            if k >= span[j]:
                continue
            v = ring[slot, j]
            if v == v and (out[j] != out[j] or v > out[j]):
                out[j] = v
    for j in range(n):
        x = xs[j]
        value = out[j]
        if x != x:
            value = math.nan  # this tick's sample is missing: no data, whatever the window holds
        out[j] = value / serving[j] if load else value


@njit(cache=CACHE, error_model="numpy")
def sorted_percentile(values, k, q):
    """numpy's linear percentile of values[:k], sorted (NaN when k is 0)."""
    if k == 0:
        return math.nan
    qq = q / 100.0
    vi = k * qq + (1.0 + qq * -1.0) - 1.0  # numpy's virtual index for the linear method
    lo = np.floor(vi)
    gamma = vi - lo
    a = values[min(max(int(lo), 0), k - 1)]
    b = values[min(max(int(lo) + 1, 0), k - 1)]
    diff = b - a
    return b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma


@njit(cache=CACHE, error_model="numpy")
def _percentile_row(ring, head, slots, q, xs, load, serving, out, scratch):
    """numpy's linear percentile of the samples present in each target's ring (NaN when there are none)."""
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
        value = sorted_percentile(scratch, k, q) if x == x else math.nan
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


@njit(cache=CACHE, error_model="numpy")
def panic_row(ring, head, slots, xs, target, wide, ratio):
    """One utilization metric's short window: write the samples, and raise ratio to short mean / target
    (the metric's row of per-column targets: column j when `wide`, else column 0)."""
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
        v = short / target[j if wide else 0]
        if ratio[j] != ratio[j] or v > ratio[j]:
            ratio[j] = v
