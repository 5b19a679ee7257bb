"""The seasonal window compiled: the load one period ago, `lead` ahead, scaled to today's level, asked only where
the history repeats itself (each target's correlation at the period), over every target of one metric.

A seasonal window's block of the stacked rings (rows x targets) holds B = 2 x period / bucket bucket means,
bucket n (the samples of [n x bucket, (n + 1) x bucket) in unix seconds) in row n mod B, so the rows line up
with the clock whatever ticks were missed; then the running figures (scaler.decision.kernel.codes: S_BUCKET ..
S_LAST, SEASONAL_ROWS rows); then, with a headroom, a ring of tick-to-tick changes written at the window's head.
Everything that reads a whole period (the correlation, the levels, the headroom's percentile) is worked out once
per target when a bucket closes (every 20 ticks for 5-minute buckets at 15 s), so a tick costs O(targets).
"""

from __future__ import annotations

import math

import numpy as np

from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory
from scaler.decision.kernel.codes import (
    S_BUCKET,
    S_CORR,
    S_COUNT,
    S_HEADROOM,
    S_LAST,
    S_LEVEL,
    S_RATIO,
    S_SUM,
    SEASONAL_ROWS,
)
from scaler.decision.kernel.windows import sorted_percentile

# isort: split
from numba import njit  # after the cache module, which settles where numba caches


@njit(cache=CACHE, error_model="numpy")
def _roll(block, j, buckets, nb):
    """Target j's buckets moved on to bucket `nb`: the bucket being filled closes (its mean into its row), the
    rows of buckets no tick reached are emptied, and bucket nb starts. A clock that went back empties every
    row: they no longer line up with time."""
    cb = block[buckets + S_BUCKET, j]
    if cb == cb:
        c = int(cb)
        if nb == c:
            return
        if nb < c or nb - c > buckets:
            for r in range(buckets):
                block[r, j] = math.nan
        else:
            count = block[buckets + S_COUNT, j]
            block[c % buckets, j] = block[buckets + S_SUM, j] / count if count > 0 else math.nan
            for k in range(c + 1, nb):
                block[k % buckets, j] = math.nan
    block[buckets + S_BUCKET, j] = nb
    block[buckets + S_SUM, j] = 0.0
    block[buckets + S_COUNT, j] = 0.0


@njit(cache=CACHE, error_model="numpy")
def _figures(block, closing, buckets, level, q, changes, nb, scratch):
    """What each closing target's forecast reads until its next bucket closes, worked out from its closed buckets
    nb - B .. nb - 1: the correlation of the last period's buckets with the period's before (over the pairs both
    have, at least half a period's; NaN with fewer, or when either is flat), the level ratio (the mean of the
    last `level` buckets over the mean of the same buckets a period earlier, the same pairs), the recent level,
    and the headroom (the q-th percentile of the tick-to-tick changes kept).

    The buckets are read a row at a time across the targets (rows x targets, row-major), so closing a bucket
    for 1,000 targets streams through the rows once per pass instead of striding through them per target; each
    target's sums still add its buckets in the same order."""
    period = buckets // 2
    n = block.shape[1]
    pairs = np.zeros(n)
    sa = np.zeros(n)
    sb = np.zeros(n)
    for k in range(nb - period, nb):
        ra, rb = k % buckets, (k - period) % buckets
        for j in range(n):
            if closing[j]:
                a = block[ra, j]
                b = block[rb, j]
                if math.isfinite(a) and math.isfinite(b):
                    pairs[j] += 1
                    sa[j] += a
                    sb[j] += b
    cab = np.zeros(n)
    caa = np.zeros(n)
    cbb = np.zeros(n)
    enough = max(3, (period + 1) // 2)
    for k in range(nb - period, nb):
        ra, rb = k % buckets, (k - period) % buckets
        for j in range(n):
            if closing[j] and pairs[j] >= enough:
                a = block[ra, j]
                b = block[rb, j]
                if math.isfinite(a) and math.isfinite(b):
                    ma = sa[j] / pairs[j]
                    mb = sb[j] / pairs[j]
                    cab[j] += (a - ma) * (b - mb)
                    caa[j] += (a - ma) * (a - ma)
                    cbb[j] += (b - mb) * (b - mb)
    # levels: 10 % more load over the last 30 minutes than over the same 30 minutes a period ago -> ratio 1.1
    now_sum = np.zeros(n)
    now_n = np.zeros(n)
    pair_now = np.zeros(n)
    pair_then = np.zeros(n)
    level_pairs = np.zeros(n)
    for k in range(nb - level, nb):
        ra, rb = k % buckets, (k - period) % buckets
        for j in range(n):
            if closing[j]:
                a = block[ra, j]
                b = block[rb, j]
                if math.isfinite(a):
                    now_sum[j] += a
                    now_n[j] += 1
                    if math.isfinite(b):
                        pair_now[j] += a
                        pair_then[j] += b
                        level_pairs[j] += 1
    for j in range(n):
        if not closing[j]:
            continue
        corr = math.nan
        if pairs[j] >= enough and caa[j] > 0 and cbb[j] > 0:
            corr = min(max(cab[j] / math.sqrt(caa[j] * cbb[j]), -1.0), 1.0)
        ratio = math.nan
        if level_pairs[j] > 0:
            if pair_then[j] > 0:
                ratio = pair_now[j] / pair_then[j]
            elif pair_now[j] == 0:
                ratio = 1.0  # idle then and idle now
        room = math.nan
        if changes > 0:
            kept = 0
            for r in range(changes):
                v = block[buckets + SEASONAL_ROWS + r, j]
                if math.isfinite(v):
                    scratch[kept] = v
                    kept += 1
            scratch[:kept].sort()
            room = sorted_percentile(scratch, kept, q)
        block[buckets + S_CORR, j] = corr
        block[buckets + S_RATIO, j] = ratio
        block[buckets + S_LEVEL, j] = now_sum[j] / now_n[j] if now_n[j] > 0 else math.nan
        block[buckets + S_HEADROOM, j] = room


@njit(cache=CACHE, error_model="numpy")
def seasonal_row(bucket, buckets, level, min_corr, q, changes, lead, now, block, head, xs, load, serving, out,
                 corr_out, season_out, ratio_out, room_out, silent, scratch):
    """One metric's seasonal window for every target at `now`: take this tick's samples into the bucket being
    filled (closing the last one when a new bucket starts) and put the forecast in `out`.

    The forecast for a target is the mean of the bucket one period before now + lead, times the level ratio,
    plus the headroom: at 14:00 with 5-minute buckets and lead 90 s, a daily window reads yesterday's
    14:00-14:05 bucket, 120 %, times 1.1 (today's last 30 minutes over yesterday's) = 132 %. It asks only
    while the correlation at the period is at least `min_corr`; otherwise it has no opinion (`silent`), and
    `out` reads the recent level for the record. A missing sample reads NaN, no data, as every window does.
    corr_out, season_out, ratio_out, room_out get the numbers the forecast used (in the metric's unit).
    """
    period = buckets // 2
    nb = int(math.floor(now / bucket))
    back = int(math.floor((now + lead) / bucket)) - period  # a closed bucket: lead <= period - bucket
    closing = np.zeros(xs.shape[0], dtype=np.bool_)
    for j in range(xs.shape[0]):
        if block[buckets + S_BUCKET, j] != nb:
            _roll(block, j, buckets, nb)
            closing[j] = True
    if closing.any():
        _figures(block, closing, buckets, level, q, changes, nb, scratch)
    for j in range(xs.shape[0]):
        x = xs[j] * serving[j] if load else xs[j]
        if math.isfinite(x):
            block[buckets + S_SUM, j] += x
            block[buckets + S_COUNT, j] += 1.0
        if changes > 0:
            block[buckets + SEASONAL_ROWS + head, j] = abs(x - block[buckets + S_LAST, j])  # NaN next to a gap
            block[buckets + S_LAST, j] = x
        corr = block[buckets + S_CORR, j]
        ratio = block[buckets + S_RATIO, j]
        past = block[back % buckets, j]
        room = block[buckets + S_HEADROOM, j] if changes > 0 else 0.0
        if room != room:
            room = 0.0  # no changes kept yet (a fresh start, or history read a bucket apart)
        asks = corr >= min_corr and math.isfinite(past) and math.isfinite(ratio)
        if asks:
            value = max(past * ratio + room, 0.0)
        else:
            value = block[buckets + S_LEVEL, j]
            if value != value:  # no closed bucket yet: the samples of this one so far
                count = block[buckets + S_COUNT, j]
                value = block[buckets + S_SUM, j] / count if count > 0 else math.nan
        per = serving[j] if load else 1.0
        if x != x:
            value = math.nan  # this tick's sample is missing: no data, whatever the window holds
        out[j] = value / per
        silent[j] = x == x and not asks
        corr_out[j] = corr
        season_out[j] = past / per
        ratio_out[j] = ratio
        room_out[j] = room / per


@njit(cache=CACHE, error_model="numpy")
def fill_seasonal(bucket, buckets, level, q, changes, now, times, xs, load, serving, block, scratch):
    """A seasonal window filled from history before its first tick at `now`: xs (samples, targets) taken at
    `times`, e.g. one a bucket (a range query at a step of the bucket). The window is moved on to now's bucket as
    a tick would; every closed bucket of the last two periods it has no value for gets the mean of the history's
    samples in it (a saved window keeps the means its ticks made); then its figures are worked out. The changes
    for the headroom are not filled: a history a bucket apart does not show them (the headroom reads 0 until
    the ticks have kept some)."""
    nb = int(math.floor(now / bucket))
    sums = np.zeros(buckets)
    counts = np.zeros(buckets)
    for j in range(xs.shape[1]):
        if block[buckets + S_BUCKET, j] != nb:
            _roll(block, j, buckets, nb)
        sums[:] = 0.0
        counts[:] = 0.0
        for k in range(times.shape[0]):
            n = int(math.floor(times[k] / bucket))
            if n < nb - buckets or n >= nb:
                continue
            x = xs[k, j] * serving[j] if load else xs[k, j]
            if math.isfinite(x):
                sums[n % buckets] += x
                counts[n % buckets] += 1.0
        for r in range(buckets):
            if counts[r] > 0 and not math.isfinite(block[r, j]):
                block[r, j] = sums[r] / counts[r]
        block[buckets + S_LAST, j] = math.nan  # the next change would span the gap, not one tick
    _figures(block, np.ones(xs.shape[1], dtype=np.bool_), buckets, level, q, changes, nb, scratch)
