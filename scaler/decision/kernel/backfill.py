"""Ringed and EWMA windows filled from history, compiled: what their ticks would have written, without deciding.

The live loop fills its windows this way when it first loads a policy's state (scaler.decision.backfill), so a
trend window fits its line at the first tick after a restart instead of twenty minutes later. The seasonal
window's own fill is scaler.decision.kernel.seasonal.fill_seasonal.
"""

from __future__ import annotations

from scaler.decision.kernel.cache import CACHE  # before numba: it picks numba's cache directory
from scaler.decision.kernel.windows import noise_step

# isort: split
from numba import njit  # after the cache module, which settles where numba caches


@njit(cache=CACHE, error_model="numpy")
def fill_ring(ring, head, slots, xs, load, serving):
    """A ringed window (mean, max, percentile, trend) filled from history before its first tick: the samples
    (samples, targets), oldest first, written at head, head + 1, ... as that many ticks would have; the next
    head."""
    h = head
    for k in range(xs.shape[0]):
        for j in range(xs.shape[1]):
            ring[h, j] = xs[k, j] * serving[j] if load else xs[k, j]
        h = (h + 1) % slots
    return h


@njit(cache=CACHE, error_model="numpy")
def fill_ewma(ring, alpha, xs, load, serving):
    """An EWMA filled from history, sample after sample, as its ticks would (a missing sample leaves it)."""
    for k in range(xs.shape[0]):
        for j in range(xs.shape[1]):
            x = xs[k, j] * serving[j] if load else xs[k, j]
            prev = ring[0, j]
            s = x if prev != prev else prev + alpha * (x - prev)
            if x == x:
                ring[0, j] = s


@njit(cache=CACHE, error_model="numpy")
def fill_noise(sums, alpha, newest, xs, load, serving):
    """A noisy max's two means (sums[0] mean absolute tick-to-tick change, sums[1] mean level) moved on over the
    samples from history, oldest first, as its ticks would (scaler.decision.kernel.windows.noisy_max_row): the
    first change from `newest`, the sample its ring held last (as kept: x serving for a utilization window;
    NaN for none), then between samples next to each other only."""
    for j in range(xs.shape[1]):
        before = newest[j]
        for k in range(xs.shape[0]):
            x = xs[k, j] * serving[j] if load else xs[k, j]
            noise_step(sums, j, alpha, x, before)
            before = x
