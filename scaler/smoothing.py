"""Smoothing windows (last, EWMA, mean, max, percentile) over many targets at once, as state + step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaler.policy import Window


@dataclass(frozen=True)
class Smoother:
    """One metric's window, compiled for a tick interval. `step` is pure: (state, samples) -> (value, state)."""

    kind: str
    slots: int  # ring length for mean/max/percentile; 1 otherwise
    alpha: float  # EWMA weight of a new sample
    q: float  # percentile

    @classmethod
    def compile(cls, window: Window, interval: float) -> Smoother:
        slots = max(1, int(math.ceil(window.length / interval))) if window.type in ("mean", "max", "percentile") else 1
        # A half-life of h seconds at interval i: after h/i ticks an old sample weighs half.
        # 30 s half-life at 15 s ticks -> alpha = 1 - 0.5**(15/30) = 0.293.
        alpha = 1.0 - 0.5 ** (interval / window.effective_half_life) if window.type == "ewma" else 1.0
        return cls(kind=window.type, slots=slots, alpha=alpha, q=window.effective_q)

    def empty(self, targets: int) -> SmoothState:
        return SmoothState(ring=np.full((targets, self.slots), np.nan), head=0)

    def step(self, state: SmoothState, x: np.ndarray, *, inplace: bool = False) -> tuple[np.ndarray, SmoothState]:
        """Smoothed value per target; NaN wherever this tick's sample is missing ("no data" stays visible).

        inplace=True reuses the state's ring (the caller drops the old state), as History.push does.
        """
        missing = np.isnan(x)
        if self.kind == "last":
            return x, state
        if self.kind == "ewma":
            prev = state.ring[:, 0]
            # First sample (prev NaN) starts the average; a missing sample leaves it untouched.
            s = np.where(np.isnan(prev), x, prev + self.alpha * (x - prev))
            kept = np.where(missing, prev, s)
            return s, SmoothState(ring=kept[:, None], head=0)
        ring = state.ring if inplace else state.ring.copy()
        ring[:, state.head] = x
        new = SmoothState(ring=ring, head=(state.head + 1) % self.slots)
        if self.slots == 1:
            return x, new
        if self.kind == "mean":
            present = ~np.isnan(ring)
            value = np.nan_to_num(ring).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
        elif self.kind == "max":
            value = np.fmax.reduce(ring, axis=1)  # ignores NaN slots
        else:
            with np.errstate(all="ignore"):
                value = np.nanpercentile(ring, self.q, axis=1) if np.isnan(ring).any() else np.percentile(
                    ring, self.q, axis=1
                )
        value[missing] = np.nan
        return value, new


@dataclass(frozen=True)
class SmoothState:
    ring: np.ndarray  # (targets, slots); for EWMA one column holding the running average
    head: int
