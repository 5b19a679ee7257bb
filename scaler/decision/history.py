"""Per-tick history for many targets at once: a ring of slots with one timestamp each, values per target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaler.decision.kernel import tick as kernel


@dataclass(frozen=True)
class History:
    """`t[k]` is when slot k was written (NaN = never); `v[k]` the per-target values written then.

    All targets of one policy tick together, so one timestamp per slot serves every target. The ring is
    sized by the caller to cover the longest look-back (see Policy.history_slots); pushing overwrites the
    oldest slot. Slots are rows: a push writes one contiguous row, and a pass over the slots reads every
    target's values of a slot together.
    """

    t: np.ndarray  # (slots,) float64 unix seconds, NaN where empty
    v: np.ndarray  # (slots, targets) float64, NaN where a target recorded nothing
    head: int = 0  # next slot to write

    @classmethod
    def empty(cls, targets: int, slots: int) -> History:
        return cls(t=np.full(slots, np.nan), v=np.full((slots, targets), np.nan), head=0)

    def push(self, now: float, values: np.ndarray, *, inplace: bool = False) -> History:
        """A History with `values` (targets,) recorded at `now`; NaN values record nothing.

        inplace=True writes into this History's buffers instead of copying them (the caller promises
        not to use the old History again).
        """
        t = self.t if inplace else self.t.copy()
        v = self.v if inplace else self.v.copy()
        t[self.head] = now
        v[self.head] = values
        return History(t=t, v=v, head=(self.head + 1) % t.shape[0])

    def within(self, now: float, seconds: float) -> np.ndarray:
        """Mask (slots,) of slots written strictly after `now - seconds` (a slot on the edge is out)."""
        return self.t > now - seconds  # NaN (never written) compares False

    def sum_within(self, now: float, seconds: float) -> np.ndarray:
        """Per target, the sum of values recorded in the last `seconds` (NaN counts as 0), as the rate
        limits count a period's scale events."""
        t, v = np.ascontiguousarray(self.t, dtype=float), np.ascontiguousarray(self.v, dtype=float)
        return kernel.period_sum(t, v, float(now - seconds), np.empty(v.shape[1]))

    def take(self, index: np.ndarray) -> History:
        """The history of a subset of targets (by index), e.g. to persist or inspect one target."""
        return History(t=self.t, v=self.v.take(index, axis=1), head=self.head)
