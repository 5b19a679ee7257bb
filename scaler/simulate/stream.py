"""Replaying a fleet a block of targets at a time: each block's timeline is written as it is produced, then let go.

Targets never interact in a replay, so a block of them replays exactly as it does among all the others
(tests/simulate/test_equivalence.py pins it for any split); each block goes to the timeline writer and only the
per-target totals are kept. 100 targets x 1 week at 15 s is 4 M (target, tick) cells, about 230 MB of timeline
per policy when held whole; in blocks of BLOCK_CELLS it is never more than ~120 MB. The report needs the full
timeline of a few targets only (the one shown, or the worst of a fleet): those are replayed again, alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from scaler.errors import DataError
from scaler.policy.model import Policy
from scaler.recordings.model import Recording, check_grid, narrowed
from scaler.simulate.closedloop import Timeline
from scaler.simulate.replay import Demand, Result, demand_for, simulate, window_notes
from scaler.simulate.world import World

BLOCK_CELLS = 1 << 21
"""(target, tick) cells replayed and written at a time: about 120 MB of timeline (~57 bytes a cell)."""
KEEP_CELLS = 1 << 20
"""A run of at most this many cells per policy keeps its whole timeline in memory (for the report)."""
DETAIL_CELLS = 10_000_000
"""The most cells a run explained decision by decision may have: every output of every tick is kept (about
200 bytes a cell), and printed."""

Progress = Callable[[float, float], None]


class Sink:
    """Where each replayed block goes (scaler.simulate.output's timeline writers)."""

    def write(self, result: Result) -> None: ...


@dataclass
class Replay:
    """A run: each policy's result (per-target totals; the whole timeline too when the run is small), and the
    means to replay one target again in full for the pictures."""

    rec: Recording
    world: World
    policies: list[Policy]
    results: list[Result]
    options: dict[str, Any] = field(default_factory=dict)

    def single(self, i: int, target: int) -> Result:
        """Policy i's replay of target number `target` alone, its whole timeline recorded."""
        r = self.results[i]
        if r.timeline is not None and r.timeline.desired.shape[0] == len(r.times):
            return one_target(r, target)
        alone = narrowed(self.rec, slice(target, target + 1))
        return simulate(self.policies[i], alone, self.world, record=True, **self.options)


def replay(
    policies: Sequence[Policy],
    rec: Recording,
    world: World,
    *,
    sink: Sink | None = None,
    detail: bool = False,
    progress: Callable[[Policy], Progress | None] | None = None,
    block_cells: int | None = None,
    **options: Any,
) -> Replay:
    """Every policy replayed over `rec`; with a `sink`, each block of targets' timeline is handed to it.

    Without a sink (and without `detail`) nothing per tick is kept, and all targets replay at once (split over
    processes when there are many). `progress(policy)` gives each policy's progress callback (done, total) in
    target-ticks. `block_cells` (default BLOCK_CELLS) sizes the blocks; `options` go to
    scaler.simulate.replay.simulate for every block.
    """
    n = len(rec.targets)
    record = sink is not None or detail
    results = []
    for policy in policies:
        ticks = check_grid(rec, interval=policy.interval)  # the whole grid's bound, though blocks resample it
        if detail and n * ticks > DETAIL_CELLS:
            raise DataError(rec.source, f"{n:,} target(s) x {ticks:,} ticks = {n * ticks:,} cells: explaining a run "
                                        f"keeps every decision of every tick, at most {DETAIL_CELLS:,} cells")
        per = n if not record or detail else max(1, (block_cells or BLOCK_CELLS) // max(ticks, 1))
        blocks = [slice(a, min(n, a + per)) for a in range(0, n, per)]
        step = progress(policy) if progress is not None else None
        parts = []
        for block in blocks:
            part = rec if len(blocks) == 1 else narrowed(rec, block)
            told = None if step is None else _told(step, block, n)
            r = simulate(policy, part, world, record=record, detail=detail, progress=told, **options)
            if sink is not None:
                sink.write(r)
            if len(blocks) > 1 or (not detail and n * ticks > KEEP_CELLS):
                r = replace(r, timeline=None)  # the sink may still be writing the one it was given
            parts.append(r)
        results.append(joined(parts))
    return Replay(rec=rec, world=world, policies=list(policies), results=results, options=dict(options))


def timeline_metrics(policies: Sequence[Policy], rec: Recording, world: World) -> list[str]:
    """The metric columns of the run's timeline, known before it starts: the union of each policy's metrics
    as replayed (a metric absent by design from the recording is left out of its policy, as simulate does).
    Which are absent depends on the recording's metric names only, so a recording of no targets tells."""
    names: list[str] = []
    none = narrowed(rec, slice(0, 0))
    for policy in policies:
        absent = demand_for(policy, none, world).absent
        names += [m.name for m in policy.metrics if m.name not in absent and m.name not in names]
    return names


def _told(step: Progress, block: slice, n: int) -> Callable[[int, int], None]:
    """simulate's progress (ticks done of one block) as the whole policy's, in target-ticks."""
    return lambda k, ticks: step(block.start * ticks + k * (block.stop - block.start), n * ticks)


def joined(parts: Sequence[Result]) -> Result:
    """One Result from the results of consecutive blocks of targets (the timeline is not kept)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    changes: dict[str, Any] = {"targets": tuple(t for p in parts for t in p.targets), "timeline": None,
                               "demand": _joined_demand([p.demand for p in parts], len(first.targets))}
    for f in fields(Result):
        if f.name in changes or f.name == "times":
            continue
        value = getattr(first, f.name)
        if isinstance(value, np.ndarray) and value.shape[:1] == (len(first.targets),):
            changes[f.name] = np.concatenate([getattr(p, f.name) for p in parts])
    if first.window_ticks is not None:
        # The notes on the seasonal and noisy windows (run() puts them last, one per window) tell every block's
        # targets.
        ms = first.policy.metrics
        counted = sum(1 for m in ms if m.window.type == "seasonal" or m.window.noisy_length is not None)
        asked, corr = changes["window_ticks"], changes["seasonal_correlation"]
        changes["notes"] = first.notes[:len(first.notes) - counted] + window_notes(
            first.policy, np.ascontiguousarray(asked.T), np.ascontiguousarray(corr.T), len(first.times))
    return replace(first, **changes)


def _joined_demand(parts: Sequence[Demand], n: int) -> Demand:
    first = parts[0]
    changes: dict[str, Any] = {}
    for f in fields(Demand):
        value = getattr(first, f.name)
        if f.name == "times":
            continue
        if isinstance(value, np.ndarray) and value.shape[:1] == (n,):
            changes[f.name] = np.concatenate([getattr(p, f.name) for p in parts])
        elif isinstance(value, dict) and all(isinstance(v, np.ndarray) for v in value.values()):
            changes[f.name] = {k: np.concatenate([getattr(p, f.name)[k] for p in parts]) for k in value}
    return replace(first, **changes)


def one_target(r: Result, j: int) -> Result:
    """Result `r` narrowed to its target number j (views of its arrays)."""
    tl = r.timeline
    assert tl is not None
    keep = slice(j, j + 1)
    timeline = Timeline(*(a[..., keep] for a in tl[:-1]),
                        decisions=type(tl.decisions)(*(a[..., keep] for a in tl.decisions)))
    changes: dict[str, Any] = {"targets": (r.targets[j],), "timeline": timeline}
    for f in fields(Result):
        value = getattr(r, f.name)
        per_target = isinstance(value, np.ndarray) and value.shape[:1] == (len(r.targets),)
        if per_target and f.name not in ("times", "targets"):
            changes[f.name] = value[keep]
    return replace(r, **changes)
