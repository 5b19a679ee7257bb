"""Filling a policy's windows from history before its first tick: the span each window needs, and running only
the windows over it.

The live loop asks its metric source for each metric's `span` (one range query per metric for all targets) when
it first loads a policy's state, fresh or saved, and `fill`s the window with the answer, so a 20-minute trend
fits its line, and a daily seasonal window reads yesterday, at the first tick after a restart or a deploy,
not twenty minutes or two days later. Nothing else of the state moves: the recommendation history, the scale
events, the cooldowns, panic and the blind counts are what the loop itself did, and history cannot tell them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from scaler.decision.kernel.backfill import fill_ewma, fill_noise, fill_ring
from scaler.decision.kernel.codes import EWMA, LAST, SEASONAL, TREND, UTILIZATION
from scaler.decision.kernel.seasonal import fill_seasonal
from scaler.decision.params import Params
from scaler.decision.state import State

EWMA_REACH = 1e-3
"""An EWMA is filled over the samples that still weigh at least this much together: ln(1000) / ln(1 / (1 -
alpha)) ticks, about ten half-lives (30 s half-life at 15 s: 20 ticks, 5 minutes)."""
MAX_SAMPLES = 10_000
"""The most samples one window is filled with (its ring's bound, MAX_WINDOW_SLOTS)."""


class Span(NamedTuple):
    """The samples a window is filled with: every `step` seconds from `start` to `end` (unix seconds)."""

    start: float
    end: float
    step: float

    @property
    def samples(self) -> int:
        return int(math.floor((self.end - self.start) / self.step + 1e-9)) + 1


def spans(params: Params, now: float) -> list[Span | None]:
    """Per metric, the history its window needs before a first tick at `now`, or None for a window that keeps
    nothing between ticks (last, or a one-slot ring).

    A ringed window (mean, max, percentile, trend) needs as many samples as it has slots, one interval apart,
    the newest one interval before now (a 20-minute trend at 15 s: 80 samples from now - 20 min to now - 15 s);
    a max with noisy_length at least the ticks its noise means still weigh (EWMA_REACH);
    an EWMA the samples that still weigh in (EWMA_REACH); a seasonal window one sample in each closed bucket of
    the last two periods, at a step of the bucket (a week of 5-minute buckets: 4,032, where 15 s would be
    80,640, more than a range query may ask for).
    """
    out: list[Span | None] = []
    dt = params.interval
    for i in range(params.kind.shape[0]):
        kind, slots = int(params.window[i]), int(params.slots[i])
        if kind == SEASONAL:
            bucket = float(params.bucket[i])
            now_bucket = math.floor(now / bucket)
            # mid-bucket, so a start or end rounded to a whole second stays in its bucket
            first = (now_bucket - int(params.buckets[i])) * bucket + bucket / 2
            out.append(Span(first, (now_bucket - 1) * bucket + bucket / 2, bucket))
            continue
        if kind == EWMA:
            alpha = float(params.alpha[i])
            count = 1 if alpha >= 1 else int(math.ceil(math.log(EWMA_REACH) / math.log(1.0 - alpha)))
        elif params.noise_alpha[i] > 0:
            # a noisy max: its ring, and the ticks its noise means still weigh (30 minutes' reach: 826 ticks)
            alpha = float(params.noise_alpha[i])
            reach = 1 if alpha >= 1 else int(math.ceil(math.log(EWMA_REACH) / math.log(1.0 - alpha)))
            count = max(slots, reach)
        elif kind == LAST or slots <= 1:
            out.append(None)
            continue
        else:
            count = slots
        count = max(1, min(count, MAX_SAMPLES))
        out.append(Span(now - count * dt, now - dt, dt))
    return out


def fill(params: Params, state: State, metric: int, times: np.ndarray, values: np.ndarray, *, ready: np.ndarray,
         now: float) -> State:
    """`state` with metric number `metric`'s window filled from history: `values` (samples, targets) taken at
    `times` (oldest first; NaN = no sample), before a first tick at `now`. The samples go in as that many ticks
    would have put them (a utilization window keeps value x the replicas serving, taken here as `ready`, the
    count serving now: history does not say how many served then), so a window that was saved moves on over
    them and one that was empty fills up; a target with no sample at all in the history keeps its window as
    it was. Nothing but the window changes. A new State is returned."""
    i = metric
    out = state.copy()
    kind, slots = int(params.window[i]), int(params.slots[i])
    a = int(params.ring_start[i])
    block = out.rings[a:a + slots]
    xs = np.ascontiguousarray(values, dtype=np.float64)
    if xs.ndim != 2 or xs.shape[1] != state.targets or xs.shape[0] != len(times):
        raise ValueError(f"values are {xs.shape}, expected ({len(times)}, {state.targets})")
    ready = np.asarray(ready, dtype=np.float64)
    serving = np.ascontiguousarray(np.where(ready > 0, ready, np.nan))
    load = int(params.kind[i]) == UTILIZATION and kind != LAST
    noisy = bool(params.noise_alpha[i] > 0)
    if kind == SEASONAL:
        fill_seasonal(float(params.bucket[i]), int(params.buckets[i]), int(params.level[i]),
                      float(params.headroom_q[i]), int(params.changes[i]), float(now),
                      np.ascontiguousarray(times, dtype=np.float64), xs, load, serving, block,
                      np.empty(max(1, slots)))
    elif kind == EWMA:
        fill_ewma(block, float(params.alpha[i]), xs, load, serving)
    elif kind != LAST and (slots > 1 or noisy):
        before = block.copy()
        if noisy:
            # the means move on from the newest sample the ring held, as the next tick would have
            newest = np.ascontiguousarray(block[(int(out.heads[i]) - 1) % slots])
            fill_noise(out.sums[i], float(params.noise_alpha[i]), newest, xs, load, serving)
        out.heads[i] = fill_ring(block, int(out.heads[i]), slots, xs, load, serving)
        # A target the history has nothing for keeps the samples it had, in order behind the new head: the
        # ring moved on for the others, and an empty history is not a run of missing samples.
        blank = ~np.isfinite(xs).any(axis=0)
        if blank.any():
            block[:, blank] = np.roll(before[:, blank], xs.shape[0], axis=0)
        if kind == TREND:
            out.resync[i] = True  # its running sums are added up afresh from the ring on the next tick
    return out
