"""Smoothing windows (last, EWMA, mean, max, percentile, trend) over many targets at once: compiled per policy
interval, with their state."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaler.decision.kernel import tick as kernel
from scaler.decision.params import WINDOWS, fit_coefficients
from scaler.policy.model import Window


@dataclass(frozen=True)
class Smoother:
    """One metric's window, compiled for a tick interval. `step` is pure: (state, samples) -> (value, state)."""

    kind: str
    slots: int  # ring length for mean/max/percentile/trend; 1 otherwise
    alpha: float  # EWMA weight of a new sample
    q: float  # percentile
    interval: float = 0.0  # trend: seconds between samples
    lead: float = 0.0  # trend: seconds ahead of the newest sample to read the fitted line at

    @classmethod
    def compile(cls, window: Window, interval: float) -> Smoother:
        ring = window.type in ("mean", "max", "percentile", "trend")
        slots = max(1, int(math.ceil(window.length / interval))) if ring else 1
        # A half-life of h seconds at interval i: after h/i ticks an old sample weighs half.
        # 30 s half-life at 15 s ticks -> alpha = 1 - 0.5**(15/30) = 0.293.
        alpha = 1.0 - 0.5 ** (interval / window.effective_half_life) if window.type == "ewma" else 1.0
        return cls(kind=window.type, slots=slots, alpha=alpha, q=window.effective_q, interval=float(interval),
                   lead=window.effective_lead if window.type == "trend" else 0.0)

    def empty(self, targets: int) -> SmoothState:
        return SmoothState(ring=np.full((self.slots, targets), np.nan), head=0)

    def step(self, state: SmoothState, x: np.ndarray, *, out: np.ndarray | None = None
             ) -> tuple[np.ndarray, SmoothState]:
        """Smoothed value per target; NaN wherever this tick's sample is missing ("no data" stays visible).

        Pure: the state passed in is left as it was. The window itself is the compiled one the decision
        path runs (scaler.decision.kernel.tick.smooth_row); this is its single-window entry point.
        """
        x = np.ascontiguousarray(x, dtype=np.float64)
        n = x.shape[0]
        ring = np.array(state.ring, dtype=np.float64, order="C", copy=True)
        trend = self.kind == "trend" and self.slots > 1
        resync = trend and (state.sums is None or state.head == self.slots - 1)
        sums = (np.full((2, n), np.nan) if state.sums is None else np.array(state.sums, order="C", copy=True)) \
            if trend else np.empty((2, 0))
        p, q = fit_coefficients(self.slots, self.interval, self.lead) if trend else (0.0, 0.0)
        value = np.empty(n) if out is None else out
        kernel.smooth_row(WINDOWS[self.kind], self.slots, self.alpha, self.q, self.interval, self.lead, p, q,
                          ring, state.head, sums, resync, x, False, np.ones(n), value,
                          np.empty(max(1, self.slots)), np.empty(n))
        head = (state.head + 1) % self.slots
        return value, SmoothState(ring=ring, head=head, sums=sums if trend else None)


@dataclass(frozen=True)
class SmoothState:
    ring: np.ndarray  # (slots, targets); for EWMA one row holding the running average
    head: int
    clean: int = 0  # kept in saved states for their format; no longer read
    sums: np.ndarray | None = None  # trend: running (sum of y, sum of y x age) once the ring is full
