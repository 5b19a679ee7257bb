"""The decision pipeline compiled: one tick for every target (`tick`), and recording what was written (`commit`).

`scaler.decision.decide` calls `tick` every interval for the live loop; the simulator's closed loop
(scaler.simulate.closedloop) calls the same `tick`, so both run this code. A tick reads the policy
(scaler.decision.params.Params), the state (scaler.decision.state.State) and this tick's observations,
updates the state in place and fills the outputs (`Outputs`). Each target's steps read as the pipeline in
docs/decisions.md: smooth, propose, band (or HPA's validity rule), fallback, stabilize, rate limit,
cooldown, panic, hold on missing data, prechecks, record the recommendation.

A tick only proposes: the scale events the rate limits count and the cooldown clocks are recorded by
`commit`, from what was actually written (the live loop) or applied (the simulated world).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from scaler.decision.kernel.behavior import clamp_step, legacy_one, limits, precheck_one, stabilize_one
from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory
from scaler.decision.kernel.codes import (
    DOWN,
    DOWN_COOL,
    DOWN_STAB,
    FALLBACK,
    IN_BAND,
    LAST,
    LEGACY_WINDOW,
    NO_DATA,
    PANIC,
    PARTIAL,
    SEASONAL,
    TREND,
    UP,
    UP_COOL,
    UP_STAB,
    UTILIZATION,
)
from scaler.decision.kernel.history import history_extreme, history_extreme_cols
from scaler.decision.kernel.proposals import ABOVE, ALL_MISSING, ANY_MISSING, NOT_BELOW, _ceil, propose_cols
from scaler.decision.kernel.seasonal import seasonal_row
from scaler.decision.kernel.windows import noisy_max_row, panic_row, smooth_row

# isort: split
from numba import njit  # after the cache module, which settles where numba caches

RECS, EVENTS = 0, 1  # rows of State.hist_heads


class Outputs(NamedTuple):
    """What one tick decided, for every target, with the values each step used (so `--explain` prints the
    numbers the decision used, never a recomputation)."""

    smoothed: np.ndarray  # (metrics, targets) after the windows; NaN = no data
    asks: np.ndarray  # (metrics, targets) replicas each metric asks for: ceil(ask_ratio x ask_base)
    ask_ratio: np.ndarray  # (metrics, targets) the ratio it multiplied (NaN: inside HPA's tolerance, kept)
    ask_base: np.ndarray  # (metrics, targets) the replica count it multiplied (ready, current or 1)
    raw: np.ndarray  # (targets,) the proposal after the band / HPA's validity rule and the fallback
    low: np.ndarray  # (targets,) lowest recommendation in the scale-up window, NaN = none
    high: np.ndarray  # (targets,) highest in the scale-down window (legacy: the last 300 s)
    stabilized: np.ndarray  # (targets,) after stabilization
    up_limit: np.ndarray  # (targets,) the highest count the scale-up rate limits allow now
    down_limit: np.ndarray  # (targets,) the lowest the scale-down rate limits allow now
    limited: np.ndarray  # (targets,) after the rate limits and [min, max]
    desired: np.ndarray  # (targets,) the decision: after cooldowns, panic, holds and prechecks
    reasons: np.ndarray  # int64 (targets,) mask of scaler.decision.reasons.Reason
    # A seasonal window's numbers (metrics, targets), NaN in the other windows' rows (scaler.decision.kernel.
    # seasonal): forecast = season x level_ratio + headroom, asked only when correlation >= min_correlation.
    correlation: np.ndarray  # its latest correlation at the period (as of the last closed bucket)
    season: np.ndarray  # the bucket one period before now + lead, in the metric's unit
    level_ratio: np.ndarray  # the recent level over the level one period before
    headroom: np.ndarray  # the noise headroom added, in the metric's unit (0 without headroom_q)
    no_opinion: np.ndarray  # bool: the window asked nothing (no pattern, or not enough history yet)
    # A max window with noisy_length (metrics, targets), NaN in the other rows: the mean tick-to-tick change over
    # the mean level it compared with noisy_above (scaler.decision.kernel.windows.noisy_max_row).
    noise: np.ndarray


WINDOW_OUTPUTS = ("correlation", "season", "level_ratio", "headroom", "no_opinion", "noise")
"""The per-metric Outputs only some windows write (seasonal; a max with noisy_length); the other windows' rows
stay as `outputs` made them."""


def outputs(metrics: int, targets: int) -> Outputs:
    """Output arrays for one tick (the seasonal numbers NaN and no_opinion False, for rows no window writes)."""
    e2, e1 = (lambda: np.empty((metrics, targets))), (lambda: np.empty(targets))
    nan2 = lambda: np.full((metrics, targets), np.nan)  # noqa: E731
    return Outputs(smoothed=e2(), asks=e2(), ask_ratio=e2(), ask_base=e2(), raw=e1(), low=e1(), high=e1(),
                   stabilized=e1(), up_limit=e1(), down_limit=e1(), limited=e1(), desired=e1(),
                   reasons=np.empty(targets, dtype=np.int64), correlation=nan2(), season=nan2(),
                   level_ratio=nan2(), headroom=nan2(), no_opinion=np.zeros((metrics, targets), dtype=np.bool_),
                   noise=nan2())


@njit(cache=CACHE, error_model="numpy")
def tick(p, s, observed, current, ready, now, o):
    """One decision for every target: `s` (a State) is read and moved on in place, `o` (Outputs) filled.

    observed (metrics, targets): this tick's samples, NaN = no data; current: the count each target has;
    ready: how many of them serve. Steps that read the histories run first for every target (one pass
    over the slots); the loop over targets after them is plain arithmetic on each target's numbers.
    A policy's settings are one column every target reads; policies side by side (Params.columns = n)
    give target j column j.
    """
    m, n = observed.shape
    cols = p.columns
    wide = cols > 1
    if wide and cols != n:
        raise ValueError("the policies side by side have another number of columns than there are targets")
    scratch = np.empty(max(1, p.slots.max()))
    count = np.empty(n)  # scratch of the mean and max windows
    serving = np.empty(n)
    for j in range(n):
        serving[j] = ready[j] if ready[j] > 0 else math.nan
    # 1. smooth: metric by metric, each over every target
    for i in range(m):
        a = p.ring_start[i]
        load = p.kind[i] == UTILIZATION and p.window[i] != LAST
        if p.window[i] == SEASONAL:
            seasonal_row(p.bucket[i], p.buckets[i], p.level[i], p.min_corr[i], p.headroom_q[i], p.changes[i],
                         p.lead[i], now, s.rings[a:a + p.slots[i]], s.heads[i], observed[i], load, serving,
                         o.smoothed[i], o.correlation[i], o.season[i], o.level_ratio[i], o.headroom[i],
                         o.no_opinion[i], scratch)
        elif p.noise_alpha[i] > 0:
            noisy_max_row(s.rings[a:a + p.slots[i]], s.heads[i], p.slots[i], p.short[i], p.noise_alpha[i],
                          p.noise_above[i], s.sums[i], observed[i], load, serving, o.smoothed[i], o.noise[i], count)
        else:
            smooth_row(p.window[i], p.slots[i], p.alpha[i], p.q[i], p.interval, p.lead[i], p.fit_p[i], p.fit_q[i],
                       s.rings[a:a + p.slots[i]], s.heads[i], s.sums[i], s.resync[i], observed[i], load, serving,
                       o.smoothed[i], scratch, count)
    # the panic windows (utilization metrics, raw values): the highest short-window value / target
    panic_ratio = np.full(n, math.nan)
    if p.has_panic:
        for r in range(p.panic_rows.shape[0]):
            a = p.panic_start[r]
            i = p.panic_rows[r]
            panic_row(s.panic_rings[a:a + p.panic_slots[r]], s.panic_heads[r], p.panic_slots[r], observed[i],
                      p.target[i * cols:(i + 1) * cols], wide, panic_ratio)
    # what the history says, for every target at once (read before this tick's records are written)
    lo, hi = p.min, p.max
    low, high, up_lim, down_lim = o.low, o.high, o.up_limit, o.down_limit
    if p.legacy:
        history_extreme(s.recs_t, s.recs_v, now - LEGACY_WINDOW, True, True, high)
        low[:] = math.nan
        up_lim[:] = math.nan
        down_lim[:] = math.nan
    elif wide:
        # each column its own windows: cutoff now - window per target (one more read per element)
        cut_up = np.empty(n)
        cut_down = np.empty(n)
        for j in range(n):
            cut_up[j] = now - p.up_window[j]
            cut_down[j] = now - p.down_window[j]
        history_extreme_cols(s.recs_t, s.recs_v, cut_up, False, False, low)
        history_extreme_cols(s.recs_t, s.recs_v, cut_down, False, True, high)
    else:
        history_extreme(s.recs_t, s.recs_v, now - p.up_window[0], False, False, low)
        history_extreme(s.recs_t, s.recs_v, now - p.down_window[0], False, True, high)
    if not p.legacy:
        added = np.empty(n)
        removed = np.empty(n)
        limits(p.up_policies, p.up_select, current, s.ev_t, s.up_v, s.ev_t, s.down_v, now, True, added, removed,
               up_lim)
        limits(p.down_policies, p.down_select, current, s.ev_t, s.up_v, s.ev_t, s.down_v, now, False, added,
               removed, down_lim)
    # 2. propose: metric by metric over every target; per target the highest ask and what was missing
    best = np.full(n, math.nan)
    flags = np.full(n, ALL_MISSING, dtype=np.int64)  # ANY_MISSING, ALL_MISSING, ABOVE, NOT_BELOW bits
    for i in range(m):
        row = slice(i * cols, (i + 1) * cols)
        propose_cols(p.hpa, p.kind[i], p.target[row], p.whole[i], p.up[row], p.down[row], wide, 1.0 - p.tol_down,
                     1.0 + p.tol_up, o.smoothed[i], o.no_opinion[i], current, ready, o.asks[i], o.ask_ratio[i],
                     o.ask_base[i], best, flags)
    hpa, legacy = p.hpa, p.legacy
    fallback, fb_after, fb = p.has_fallback, p.fallback_after, min(p.fallback_replicas, p.max)
    cools_up, cools_down = p.cooldown_up, p.cooldown_down
    panic, panic_threshold, panic_hold = p.has_panic, p.panic_threshold, p.panic_hold
    blind, panic_until, recs_head = s.blind, s.panic_until, s.hist_heads[RECS]
    for j in range(n):
        c = j if wide else 0
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
            # (no ask at all but no metric missing: every metric had no opinion, which keeps the count)
            invalid = all_missing or (any_missing and not best_j >= cur)
            raw = cur if invalid or best_j != best_j else best_j
            if invalid:
                reasons = NO_DATA
            elif raw > cur:
                reasons = UP
            elif raw < cur:
                reasons = DOWN
            else:
                reasons = IN_BAND
            if any_missing and not invalid:
                reasons |= PARTIAL
            hold = invalid
        else:
            up = above and best_j > cur
            down = below and best_j < cur
            raw = best_j if (up or down) else cur
            # Missing data never lowers the count: without an up signal from the metrics we have, hold.
            hold = any_missing and not up
            reasons = 0
            if up:
                reasons += UP
                if any_missing:
                    reasons += PARTIAL
            elif down:
                reasons += DOWN
            elif not any_missing:
                reasons += IN_BAND
            if hold:
                reasons += NO_DATA
        blind[j] = blind[j] + 1 if any_missing else 0
        # Blind long enough: raise to the fallback count, never below current or a healthy up proposal.
        if fallback and blind[j] >= fb_after and fb > raw:
            raw = fb
            reasons += FALLBACK
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
                steps |= DOWN_STAB
            elif stab < raw:
                steps |= UP_STAB
            desired, limited = clamp_step(stab, cur, up_lim[j], down_lim[j], lo, hi)
            steps |= limited
            stabilized = stab
        o.limited[j] = desired
        if not hpa and raw != cur and not hold:
            # No scale-up too soon after a scale-up; no scale-down too soon after any scale action.
            # (a cooldown of 0 is none, even when the last action's time is ahead of this clock)
            cool_up, cool_down = cools_up[c], cools_down[c]
            if desired > cur and cool_up > 0 and now - s.last_up[j] < cool_up:
                desired = cur
                steps |= UP_COOL
            elif desired < cur and cool_down > 0 and now - s.last_change[j] < cool_down:
                desired = cur
                steps |= DOWN_COOL
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
                    steps |= PANIC
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
        # 9. record the raw recommendation (none where held); the scale events wait for `commit`
        s.recs_v[recs_head, j] = math.nan if hold else raw
        o.raw[j] = raw
        o.stabilized[j] = stabilized
        o.desired[j] = desired
        o.reasons[j] = reasons
    # Each target wrote its own column of the newest slot after the history was read; the slot's time is
    # stamped once all have (until then it holds its old, evicted, record).
    s.recs_t[recs_head] = now
    advance(p, s)


@njit(cache=CACHE, error_model="numpy")
def advance(p, s):
    """Every window and the recommendation history one slot on, after a tick wrote its slots."""
    for i in range(s.heads.shape[0]):
        if p.window[i] == SEASONAL:
            # its buckets follow the clock; the head is the slot of its next tick-to-tick change
            s.heads[i] = (s.heads[i] + 1) % p.changes[i] if p.changes[i] > 0 else 0
            s.resync[i] = False
            continue
        s.heads[i] = (s.heads[i] + 1) % p.slots[i]
        # a trend window adds its running sums up afresh once per turn of its ring
        s.resync[i] = p.window[i] == TREND and p.slots[i] > 1 and s.heads[i] == p.slots[i] - 1
    for r in range(s.panic_heads.shape[0]):
        s.panic_heads[r] = (s.panic_heads[r] + 1) % p.panic_slots[r]
    s.hist_heads[RECS] = (s.hist_heads[RECS] + 1) % s.recs_t.shape[0]


@njit(cache=CACHE, error_model="numpy")
def commit(s, now, before, applied):
    """Record what was written at `now` as scale events and cooldown clocks: per target the count it had
    (`before`) and the count written (`applied`, NaN where nothing was). 4 -> 6 adds a +2 event and sets
    last_up; NaN or an unchanged count records no change. One event slot per tick either way."""
    h = s.hist_heads[EVENTS]
    for j in range(before.shape[0]):
        a = applied[j]
        change = a - before[j] if a == a else 0.0
        s.up_v[h, j] = max(change, 0.0)
        s.down_v[h, j] = max(-change, 0.0)
        if change > 0:
            s.last_up[j] = now
        if change != 0:
            s.last_change[j] = now
    s.ev_t[h] = now
    s.hist_heads[EVENTS] = (h + 1) % s.ev_t.shape[0]
