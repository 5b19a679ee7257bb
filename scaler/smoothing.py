"""Smoothing windows (last, EWMA, mean, max, percentile) over many targets at once, as state + step."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from scaler.history import build, nan_to_num, sum_rows
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
        return SmoothState(ring=np.full((self.slots, targets), np.nan), head=0)

    def step(
        self,
        state: SmoothState,
        x: np.ndarray,
        *,
        inplace: bool = False,
        finite: bool | None = None,
        out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, SmoothState]:
        """Smoothed value per target; NaN wherever this tick's sample is missing ("no data" stays visible).

        inplace=True reuses the state's ring (the caller drops the old state), as History.push does.
        finite: the caller already knows whether every sample in `x` is finite (None: check here).
        out: an array (targets,) to write the value into, which is then what is returned.
        """
        if self.kind == "last":
            if out is None:
                return x, state
            out[:] = x
            return out, state
        if finite is None:
            finite = np.count_nonzero(np.isfinite(x)) == x.shape[0]
        if self.kind == "ewma":
            prev = state.ring[0]
            # First sample (prev NaN) starts the average; a missing sample leaves it untouched.
            s = np.where(prev != prev, x, prev + self.alpha * (x - prev))
            # With every sample present, where(missing, prev, s) is s itself.
            kept = s if finite else np.where(x != x, prev, s)
            if out is not None:
                out[:] = s
                s = out
            return s, build(SmoothState, ring=kept[None, :], head=0, clean=0)
        ring = state.ring if inplace else state.ring.copy()
        ring[state.head] = x
        # `clean` counts the latest writes that were all finite; once it covers the ring, no slot holds
        # NaN or inf, and the NaN bookkeeping below can be skipped without changing a value.
        clean = min(state.clean + 1, self.slots) if finite else 0
        new = build(SmoothState, ring=ring, head=(state.head + 1) % self.slots, clean=clean)
        if self.slots == 1:
            if out is None:
                return x, new
            out[:] = x
            return out, new
        if self.kind == "mean":
            if clean == self.slots:
                # No NaN or inf in the ring: nan_to_num changes nothing and every slot counts.
                value = np.divide(sum_rows(ring), self.slots, out=out)
            else:
                present = ring == ring
                value = np.divide(sum_rows(nan_to_num(ring)), np.maximum(np.add.reduce(present, axis=0), 1),
                                  out=out)
        elif self.kind == "max":
            # fmax ignores NaN slots, and a maximum is the same in any order; two slots take one fmax,
            # cheaper than a reduction.
            value = np.fmax(ring[0], ring[1], out=out) if self.slots == 2 else np.fmax.reduce(ring, axis=0, out=out)
        else:
            # A percentile sorts each target's values, so the ring's layout does not change it.
            with np.errstate(all="ignore"), warnings.catch_warnings():
                # A target whose window holds no sample yet gives NaN (no data), which is what we want.
                warnings.simplefilter("ignore", RuntimeWarning)
                if clean < self.slots and np.isnan(ring).any():
                    value = np.nanpercentile(ring, self.q, axis=0, out=out)
                else:
                    value = np.percentile(ring, self.q, axis=0, out=out)
        if not finite:
            value[x != x] = np.nan
        return value, new


@dataclass(frozen=True)
class SmoothState:
    ring: np.ndarray  # (slots, targets); for EWMA one row holding the running average
    head: int
    clean: int = 0  # consecutive latest writes with every sample finite (capped at the ring length)
