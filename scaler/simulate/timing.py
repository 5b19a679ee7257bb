"""How coarse samples become ticks: held (each sample until the next, the default) or interpolated.

A 5-minute sample replayed at 15 s is either held for 20 ticks (a step every 5 minutes, whose edge lands
somewhere inside a policy's window) or drawn as the straight line to the next sample. Either way a missing
sample stays missing: where the next sample is more than 1.5 steps away the value is held until the gap.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from scaler.recordings.model import Recording

Timing = Literal["hold", "interpolate"]
DESCRIBE = {
    "hold": "each recorded sample held until the next (a gap longer than one sample step is no data)",
    "interpolate": "recorded samples joined by straight lines (a gap longer than one sample step is no data)",
}


def interpolated(rec: Recording, grid: np.ndarray, held: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The metrics on `grid`, each point on the line from the sample at or before it to the next sample of
    the same series; NaN wherever the held series (scaler.recordings.model.resample) is NaN."""
    at = np.searchsorted(rec.times, grid, side="right") - 1
    positions = np.arange(rec.times.size)
    out = {}
    for name, arr in rec.metrics.items():
        present = ~np.isnan(arr)
        latest = np.maximum.accumulate(np.where(present, positions, -1), axis=1)  # (N, T)
        # the earliest present sample after each union time: a reversed running minimum
        after = np.where(present, positions, positions.size)
        nxt = np.minimum.accumulate(after[:, ::-1], axis=1)[:, ::-1]
        nxt = np.concatenate([nxt[:, 1:], np.full((arr.shape[0], 1), positions.size)], axis=1)
        src = np.where(at >= 0, latest[:, np.maximum(at, 0)], -1)
        to = np.where(at >= 0, nxt[:, np.maximum(at, 0)], positions.size)
        ok = (src >= 0) & (to < positions.size)
        s, e = np.maximum(src, 0), np.minimum(to, positions.size - 1)
        t0, t1 = rec.times[s], rec.times[e]
        ok &= (t1 - t0) <= 1.5 * rec.step
        v0, v1 = np.take_along_axis(arr, s, axis=1), np.take_along_axis(arr, e, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            line = v0 + (v1 - v0) * (grid - t0) / (t1 - t0)
        base = held[name]
        out[name] = np.where(np.isnan(base), np.nan, np.where(ok, line, base))
    return out
