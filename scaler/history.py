"""Per-tick history for many targets at once: a ring of slots with one timestamp each, values per target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BIG = np.finfo(float).max


def nan_to_num(x: np.ndarray) -> np.ndarray:
    """np.nan_to_num(x) for a float array (NaN -> 0, +-inf -> +-max float), without its Python overhead."""
    return np.where(x != x, 0.0, np.minimum(np.maximum(x, -_BIG), _BIG))


def sum_rows(rows: np.ndarray) -> np.ndarray:
    """Per column, the sum of `rows` (k, targets), rounded exactly as `rows.T.copy().sum(axis=1)` rounds.

    numpy adds the values of one contiguous row left to right when there are fewer than 8 of them, and in
    pairwise blocks from 8 on. Adding whole rows one after another (a reduction over axis 0) is the same
    left-to-right order, so for k < 8 it gives the same bits without a loop per target; from 8 on the
    values are laid out per target first, so the order is numpy's own.
    """
    if rows.shape[0] < 8:
        return np.add.reduce(rows, axis=0)
    return np.ascontiguousarray(rows.T).sum(axis=1)


def build(cls, **fields):
    """cls(**fields) for a frozen dataclass given every one of its fields, without its generated __init__.

    That __init__ sets each field through object.__setattr__ to get past the frozen guard, which for a
    small state object made every tick costs more than the tick's arithmetic; filling the instance dict
    at once makes the same object (same fields, equal, frozen afterwards). Not for classes with defaults
    left out or a __post_init__.
    """
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


@dataclass(frozen=True)
class History:
    """`t[k]` is when slot k was written (NaN = never); `v[k]` the per-target values written then.

    All targets of one policy tick together, so one timestamp per slot serves every target. The ring is
    sized by the caller to cover the longest look-back (see Policy.history_slots); pushing overwrites the
    oldest slot. Slots are rows: a push writes one contiguous row, and a reduction over slots runs across
    all targets at once (a reduction along a short last axis would loop once per target).
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
        not to use the old History again): the simulator does this to avoid copying every tick.
        """
        history, row = self.advance(now, inplace=inplace)
        row[:] = values
        return history

    def advance(self, now: float, *, inplace: bool = False) -> tuple[History, np.ndarray]:
        """push(now, values) in two steps: the new History, and its newest row (targets,) for the caller
        to fill in place (e.g. as a numpy `out=`), which saves building `values` and copying them."""
        t = self.t if inplace else self.t.copy()
        v = self.v if inplace else self.v.copy()
        t[self.head] = now
        return build(History, t=t, v=v, head=(self.head + 1) % t.shape[0]), v[self.head]

    def within(self, now: float, seconds: float) -> np.ndarray:
        """Mask (slots,) of slots written strictly after `now - seconds` (a slot on the edge is out)."""
        return self.t > now - seconds  # NaN (never written) compares False

    def rows_within(self, now: float, seconds: float) -> np.ndarray | None:
        """The values (k, targets) of the slots `within` the window, None when there are none."""
        return self.rows(self.within(now, seconds))

    def rows(self, mask: np.ndarray) -> np.ndarray | None:
        """The values (k, targets) of the slots in `mask` (slots,), None when there are none."""
        return self.v[mask] if np.count_nonzero(mask) else None

    def sum_within(self, now: float, seconds: float) -> np.ndarray:
        """Per target, the sum of values recorded in the last `seconds` (NaN counts as 0)."""
        return self.sum_of(self.within(now, seconds))

    def sum_of(self, mask: np.ndarray) -> np.ndarray:
        """Per target, the sum of the values in the slots of `mask` (NaN counts as 0)."""
        rows = self.rows(mask)
        if rows is None:
            return np.zeros(self.v.shape[1])
        total = sum_rows(rows)
        # nan_to_num changes only NaN and inf, and either one makes the plain sum NaN or inf: a finite sum
        # means there was nothing to change. (A finite overflow to inf is summed again, to the same inf.)
        if np.count_nonzero(np.isfinite(total)) == total.size:
            return total
        return sum_rows(nan_to_num(rows))

    def min_within(self, now: float, seconds: float, initial: np.ndarray) -> np.ndarray:
        """Per target, min(initial, values recorded in the last `seconds`)."""
        rows = self.rows_within(now, seconds)
        if rows is None:
            return initial
        # fmin ignores NaN (slots where a target recorded nothing) unless both sides are NaN; a minimum
        # does not depend on the order it is taken in, so reducing across rows is exact.
        return np.fmin(initial, np.fmin.reduce(rows, axis=0))

    def max_within(self, now: float, seconds: float, initial: np.ndarray) -> np.ndarray:
        """Per target, max(initial, values recorded in the last `seconds`)."""
        rows = self.rows_within(now, seconds)
        if rows is None:
            return initial
        return np.fmax(initial, np.fmax.reduce(rows, axis=0))

    def take(self, index: np.ndarray) -> History:
        """The history of a subset of targets (by index), e.g. to persist or inspect one target."""
        return build(History, t=self.t, v=self.v.take(index, axis=1), head=self.head)
