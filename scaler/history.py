"""Per-tick history for many targets at once: a ring of slots with one timestamp each, values per target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class History:
    """`t[k]` is when slot k was written (NaN = never); `v[:, k]` the per-target values written then.

    All targets of one policy tick together, so one timestamp per slot serves every target. The ring is
    sized by the caller to cover the longest look-back (see Policy.history_slots); pushing overwrites the
    oldest slot.
    """

    t: np.ndarray  # (slots,) float64 unix seconds, NaN where empty
    v: np.ndarray  # (targets, slots) float64, NaN where a target recorded nothing
    head: int = 0  # next slot to write

    @classmethod
    def empty(cls, targets: int, slots: int) -> History:
        return cls(t=np.full(slots, np.nan), v=np.full((targets, slots), np.nan), head=0)

    def push(self, now: float, values: np.ndarray, *, inplace: bool = False) -> History:
        """A History with `values` (targets,) recorded at `now`; NaN values record nothing.

        inplace=True writes into this History's buffers instead of copying them (the caller promises
        not to use the old History again): the simulator does this to avoid copying every tick.
        """
        t = self.t if inplace else self.t.copy()
        v = self.v if inplace else self.v.copy()
        t[self.head] = now
        v[:, self.head] = values
        return History(t=t, v=v, head=(self.head + 1) % t.shape[0])

    def within(self, now: float, seconds: float) -> np.ndarray:
        """Mask (slots,) of slots written strictly after `now - seconds` (a slot on the edge is out)."""
        return self.t > now - seconds  # NaN (never written) compares False

    def sum_within(self, now: float, seconds: float) -> np.ndarray:
        """Per target, the sum of values recorded in the last `seconds` (NaN counts as 0)."""
        mask = self.within(now, seconds)
        if not mask.any():
            return np.zeros(self.v.shape[0])
        return np.nan_to_num(self.v[:, mask]).sum(axis=1)

    def min_within(self, now: float, seconds: float, initial: np.ndarray) -> np.ndarray:
        """Per target, min(initial, values recorded in the last `seconds`)."""
        mask = self.within(now, seconds)
        if not mask.any():
            return initial
        # fmin ignores NaN (slots where a target recorded nothing) unless both sides are NaN.
        return np.fmin(initial, np.fmin.reduce(self.v[:, mask], axis=1))

    def max_within(self, now: float, seconds: float, initial: np.ndarray) -> np.ndarray:
        """Per target, max(initial, values recorded in the last `seconds`)."""
        mask = self.within(now, seconds)
        if not mask.any():
            return initial
        return np.fmax(initial, np.fmax.reduce(self.v[:, mask], axis=1))

    def take(self, index: np.ndarray) -> History:
        """The history of a subset of targets (by index), e.g. to persist or inspect one target."""
        return History(t=self.t, v=self.v[index], head=self.head)
