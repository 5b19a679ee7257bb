"""Smoothing windows (last, EWMA, mean, max, percentile, trend) over many targets at once, as state + step."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from scaler.history import build, nan_to_num, sum_rows
from scaler.policy import Window


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
        # The trend's running sums move on before the oldest sample is overwritten (None: add up afresh).
        sums = self._advance(state, x, inplace) if self.kind == "trend" else None
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
        elif self.kind == "trend":
            value, sums = self._trend(ring, state.head, sums, out)
            new = build(SmoothState, ring=ring, head=new.head, clean=clean, sums=sums)
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

    def _advance(self, state: SmoothState, x: np.ndarray, inplace: bool) -> np.ndarray | None:
        """The trend's running sums after `x` replaces the oldest sample, or None to add them up afresh.

        The fit of a full window needs two sums per target: S = sum of y and U = sum of y x age (in ticks).
        Each tick every age grows by one and the oldest sample (age slots - 1) leaves:
        U' = U + S - slots x y_old, S' = S - y_old + y_new. A missing sample makes a target's sums NaN
        until they are added up afresh, once per turn of the ring (which also keeps rounding from building
        up). So a full window costs O(targets) a tick, not O(targets x slots), and each target's sums
        depend on its own samples alone, not on the other targets sharing the arrays.
        """
        if state.sums is None or state.head == self.slots - 1:
            return None
        sums = state.sums if inplace else state.sums.copy()
        s, u = sums  # views: updated in place
        old = state.ring[state.head]
        u += s
        u -= old * self.slots
        s -= old
        s += x
        return sums

    def _trend(self, ring: np.ndarray, newest: int, sums: np.ndarray | None,
               out: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The least-squares line through the window's samples, read `lead` seconds after the newest one,
        and the running sums to keep.

        Time runs from the newest sample (t = 0) back; slot `newest` was written this tick. Samples 50, 60,
        70 at 15 s ticks: slope 10 / 15 s, the line passes 70 at t = 0, so a 90 s lead reads 70 + 60 = 130.
        Missing samples are left out of the fit. A slope read off a short stretch is mostly noise, so until
        the samples reach back half the window the line is flat (their mean).
        """
        with np.errstate(all="ignore"):
            if sums is None:
                age = ((newest - np.arange(self.slots)) % self.slots).astype(float)[:, None]
                sums = np.empty((2, ring.shape[1]))
                sums[0], sums[1] = _slot_sum(ring), _slot_sum(ring * age)
            # A full window's line is a fixed linear combination of its two sums (see _full_fit).
            p, q = self._full_fit
            value = np.multiply(sums[0], p, out=out)
            value += sums[1] * q
            partial = ~np.isfinite(value)  # targets whose window is not full (their sums are NaN)
            if np.count_nonzero(partial):
                value[partial] = self._partial_fit(ring, newest)[partial]
        # Every metric here is a rate, a share or a count: a line falling below zero reads 0.
        return np.maximum(value, 0.0, out=value), sums

    def _partial_fit(self, ring: np.ndarray, newest: int) -> np.ndarray:
        """The trend over a window with missing samples, which are left out of the fit."""
        age = (newest - np.arange(self.slots)) % self.slots
        t = (age * -self.interval)[:, None]  # (slots, 1) seconds relative to the newest sample
        present = np.isfinite(ring)
        y = np.where(present, ring, 0.0)
        n = np.add.reduce(present, axis=0).astype(float)
        st, stt = _slot_sum(present * t), _slot_sum(present * (t * t))
        sy, sty = _slot_sum(y), _slot_sum(y * t)
        den = n * stt - st * st  # 0 with a single sample
        reach = -np.fmin.reduce(np.where(present, t, np.nan), axis=0)  # age of the oldest sample, s
        sloped = (reach >= 0.5 * (self.slots - 1) * self.interval) & (den > 0)
        slope = np.where(sloped, (n * sty - st * sy) / np.where(sloped, den, 1.0), 0.0)
        # (With no sample at all n is 0 and the value NaN: no data.)
        return (sy - slope * st) / n + slope * self.lead

    @cached_property
    def _full_fit(self) -> tuple[float, float]:
        """(p, q) with the line's value `lead` ahead = p x S + q x U, for a full ring.

        With t = -age x interval, sum y = S and sum y t = -interval x U; n, sum t and sum t^2 are fixed.
        slope = (n sum(yt) - sum(t) S) / (n sum(t^2) - sum(t)^2), value = S / n + slope x (lead - sum(t) / n).
        """
        t = np.arange(self.slots) * -self.interval
        n, st, stt = float(self.slots), float(t.sum()), float((t * t).sum())
        den = n * stt - st * st
        a, b = -n * self.interval / den, -st / den  # slope = a U + b S
        e = self.lead - st / n
        return 1.0 / n + e * b, e * a


def _slot_sum(rows: np.ndarray) -> np.ndarray:
    """Per target, the sum of `rows` (slots, targets), added slot after slot whatever the number of
    targets, so a target's value does not depend on how many share the arrays. A reduction over axis 0
    adds whole rows in turn; with one target numpy would sum the column pairwise instead, so that case
    takes the running sum's last row (cumsum adds in order)."""
    return np.add.reduce(rows, axis=0) if rows.shape[1] != 1 else np.cumsum(rows, axis=0)[-1]


@dataclass(frozen=True)
class SmoothState:
    ring: np.ndarray  # (slots, targets); for EWMA one row holding the running average
    head: int
    clean: int = 0  # consecutive latest writes with every sample finite (capped at the ring length)
    sums: np.ndarray | None = None  # trend: running (sum of y, sum of y x age) once the ring is full
