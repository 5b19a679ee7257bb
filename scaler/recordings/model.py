"""The Recording type: recorded samples as (targets, times) arrays, built, merged, narrowed and resampled."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scaler.errors import DataError, Problem
from scaler.policy.model import VALID_RANGE

MAX_PROBLEMS = 20
"""An input with more problems than this lists the first ones and says how many more there were."""

MAX_EPOCH_SECONDS = 1e11
"""Unix seconds reach 1e11 only in the year 5138, while milliseconds passed 1e12 in 2001: a larger number
is a millisecond timestamp, which would otherwise land ~56,000 years in the future and never be replayed."""

REPLICAS = "replicas"
"""The reserved name (CSV column, JSON file stem, range query key) of the replicas serving when recorded."""

# What a recording may ask for. Every limit is checked before the memory it guards is allocated, and its error
# names the file and the limit: a 2-row file spanning 100 years must not become a 3 GB tick grid.
MAX_CELLS = 50_000_000
"""The most (target, time) cells a recording may span, on its own time axis or resampled onto a policy's ticks:
1,000 targets x 1 week of 15 s ticks is 40 M. A recording keeps 8 bytes per cell and series; `scaler simulate`
replays and writes targets a block at a time, so its timeline costs a block, not the run (about 60 bytes per
cell and policy once, for the whole run, through the Python API's `simulate`, and more with detail)."""
MAX_TARGETS = 10_000
"""Targets (rows of every array) in one recording."""
MAX_SERIES = 32
"""Metrics, plus replicas, in one recording: a CSV's value columns, a directory's files."""
MAX_FILE_BYTES = 64 * 2**20
"""The largest JSON file read (64 MiB: 3 M `[time, "value"]` pairs). Parsed JSON costs about 30 times its size in
memory (a Python list and two objects per sample), so this keeps a load within about 2 GB."""
MAX_CSV_BYTES = 2**30
"""The largest CSV file read (1 GiB: 40 M rows of `timestamp,target,value`, 1,000 targets x 1 week at 15 s). The
columnar reader keeps about 40 bytes per row (times, target numbers, values; never the text), about 1.6 GB here.
A file it cannot take as it is (a problem to report by row, a spelling only the row-by-row reader knows) is read
again row by row, a block at a time, which holds the file's text as well (1 to 4 bytes a character): at this
size about 4 GB at most, which is why the bound is on bytes."""
MAX_CELL_CHARS = 256
"""The longest CSV cell or JSON value, in characters: a timestamp needs at most 35 and a target name (a
Kubernetes object) 253. Checked before any cell is parsed; numpy would size a whole column by its longest cell,
at 4 bytes a character, so one 5 MB cell in 400 rows was an 8 GB array."""
MAX_VALUE = max(high for _, high in VALID_RANGE.values())
"""The largest value a recording may hold (1e15, the highest reading of any metric kind). Like a negative value
it is refused, naming the row, rather than read as no data: a recording is a file its owner can fix, and a
report whose cost and SLO figures quietly skipped readings would mislead. (The live loop cannot refuse what
Prometheus answers, so there such a reading is no data for its target, reported.)"""
BLOCK = 1 << 16
"""Cells converted at a time: a numpy text array of a block of 256-character cells is at most 64 MB."""
RESAMPLE_CELLS = 1 << 22
"""Cells of one block of targets resampled at a time (see resample)."""


@dataclass(frozen=True, eq=False)
class Recording:
    """Recorded metrics for N targets on one shared, strictly increasing time axis.

    A target that had no sample of a metric at one of the union times holds NaN there ("no data", never
    zero). The arrays are read-only: a replay never changes what was recorded. Equality is identity,
    because element-wise array comparison has no single truth value.
    """

    source: str  # file or directory (or URL) the data came from, for messages
    times: np.ndarray  # (T,) float64 unix seconds, strictly increasing, the union over targets and metrics
    targets: tuple[str, ...]  # (N,)
    metrics: dict[str, np.ndarray]  # metric name -> (N, T) float64, NaN = no sample at that time
    replicas: np.ndarray | None  # (N, T) replicas serving when recorded, NaN where unknown; None if absent
    step: float  # typical sample spacing in seconds (median spacing of one target's samples)

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        """One step past the last sample: the last sample covers [last, last + step)."""
        return float(self.times[-1]) + self.step


class Problems:
    """Collects every problem found in one input, keeps the first MAX_PROBLEMS and raises them together."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[Problem] = []
        self.count = 0

    def add(self, where: str, what: str) -> None:
        self.count += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(where, what))

    def extend(self, problems: Sequence[Problem], prefix: str = "") -> None:
        for p in problems:
            self.add(f"{prefix}{p.where}" if p.where else prefix.rstrip(": "), p.what)

    def absorb(self, other: Problems) -> None:
        """Every problem `other` found, after those found here: its kept ones, and the count of the rest."""
        for p in other.items:
            self.add(p.where, p.what)
        self.count += other.count - len(other.items)

    def __bool__(self) -> bool:
        return self.count > 0

    def raise_if_any(self) -> None:
        if not self.count:
            return
        problems = list(self.items)
        if self.count > len(problems):
            problems.append(Problem("", f"and {self.count - len(problems)} more"))
        raise DataError(self.source, problems)


def check_size(source: str, *, targets: int, times: int, series: int) -> None:
    """Raise a DataError naming `source` and the limit if (targets, times, series) arrays would be too big."""
    problems = Problems(source)
    if targets > MAX_TARGETS:
        problems.add("", f"{targets:,} targets, more than the limit of {MAX_TARGETS:,}")
    if series > MAX_SERIES:
        problems.add("", f"{series:,} metrics and replicas, more than the limit of {MAX_SERIES:,}")
    if targets * times > MAX_CELLS:
        problems.add(
            "",
            f"{targets:,} target(s) x {times:,} timestamps = {targets * times:,} cells, more than the limit of"
            f" {MAX_CELLS:,}",
        )
    problems.raise_if_any()


def duplicate_pairs(keys: np.ndarray, times: np.ndarray) -> list[tuple[int, int]]:
    """(later, earlier) index pairs of entries with the same (key, time), in input order.

    Sorting by (key, time) puts duplicates next to each other, so one pass over neighbours finds them all
    without a Python loop over the rows; the stable sort keeps the earlier row first.
    """
    order = np.lexsort((times, keys))
    same = (keys[order][1:] == keys[order][:-1]) & (times[order][1:] == times[order][:-1])
    pairs: list[tuple[int, int]] = []
    first = order[:-1][same]
    later = order[1:][same]
    # a run of three equal rows a, b, c reports b and c as duplicates of a, not c as a duplicate of b
    run_start: dict[tuple[int, float], int] = {}
    for e, lt in zip(first.tolist(), later.tolist(), strict=True):
        origin = run_start.setdefault((int(keys[e]), float(times[e])), e)
        pairs.append((lt, origin))
    pairs.sort()
    return pairs


def typical_step(times: np.ndarray, present: np.ndarray) -> float:
    """Median spacing between consecutive times at which one target has a sample; `present` is (N, T).

    Measured per target rather than on the union axis, so two targets scraped every 15 s but 7 s apart
    give a step of 15 s, not the 7-8 s between union times. A recording with no such pair falls back to
    the union axis.
    """
    if present.size and present.all():
        # every target sampled at every time: each target's spacings are the axis's own, and the median of a
        # multiset repeated N times is its median
        diffs = np.diff(times)
    else:
        # target by target (the median does not depend on the order): no (samples,) index arrays
        diffs = np.concatenate([np.diff(times[row]) for row in present]) if present.shape[0] else np.empty(0)
    if diffs.size == 0:
        diffs = np.diff(times)
    return float(np.median(diffs)) if diffs.size else 0.0


def _sampled(times: np.ndarray, series: Sequence[np.ndarray | None]) -> float:
    """typical_step with a target counted as sampled wherever any of `series` has a value."""
    arrays = [~np.isnan(arr) for arr in series if arr is not None]
    if not arrays:
        return typical_step(times, np.zeros((0, times.size), dtype=bool))
    return typical_step(times, np.logical_or.reduce(arrays))


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def build(
    source: str,
    *,
    targets: Sequence[str],
    target_index: np.ndarray,
    times: np.ndarray,
    values: Mapping[str, np.ndarray],
    replicas: np.ndarray | None = None,
    axis: np.ndarray | None = None,
    col: np.ndarray | None = None,
) -> Recording:
    """A Recording from samples in long form: sample i is target `targets[target_index[i]]` at `times[i]`.

    `values[name][i]` is that sample's value of metric `name` (NaN if the sample has none). Samples may come
    in any order; callers have already rejected duplicate (target, time) pairs, so each sample has its own
    cell. `axis` is np.unique(times) and `col` np.searchsorted(axis, times), when the caller has them already.
    """
    axis = np.unique(times) if axis is None else axis  # sorted union of sample times
    if axis.size < 2:
        raise DataError(source, "fewer than two distinct timestamps: a replay needs a span of time")
    check_size(source, targets=len(targets), times=axis.size, series=len(values) + (replicas is not None))
    col = np.searchsorted(axis, times) if col is None else col
    shape = (len(targets), axis.size)

    def place(per_sample: np.ndarray) -> np.ndarray:
        out = np.full(shape, np.nan)
        out[target_index, col] = per_sample
        return _frozen(out)

    # every sample counts as a sample time, even one whose values are all NaN ("no data" is still a row)
    present = np.zeros(shape, dtype=bool)
    present[target_index, col] = True
    return Recording(
        source=source,
        times=_frozen(axis.astype(np.float64)),
        targets=tuple(targets),
        metrics={name: place(v) for name, v in values.items()},
        replicas=None if replicas is None else place(replicas),
        step=typical_step(axis, present),
    )


def merge(source: str, parts: Sequence[Recording]) -> Recording:
    """One Recording from several (one per file or query) on the union of their timestamps.

    Every part must name the same targets, each metric may come from one part only, and at most one part
    may carry replicas; all disagreements are reported together.
    """
    if len(parts) == 1:
        only = parts[0]
        return Recording(source, only.times, only.targets, only.metrics, only.replicas, only.step)
    problems = Problems(source)
    targets = parts[0].targets
    for part in parts[1:]:
        if set(part.targets) != set(targets):
            problems.add(
                part.source,
                f"targets {_names(part.targets)} differ from {_names(targets)} in {parts[0].source}"
                " (every file or query must cover the same targets, named the same way)",
            )
    owner: dict[str, str] = {}
    replicas_from: str | None = None
    for part in parts:
        for name in part.metrics:
            if name in owner:
                problems.add(part.source, f"metric {name!r} also comes from {owner[name]}")
            owner.setdefault(name, part.source)
        if part.replicas is not None:
            if replicas_from is not None:
                problems.add(part.source, f"replicas also come from {replicas_from}")
            replicas_from = replicas_from or part.source
    problems.raise_if_any()

    axis = np.unique(np.concatenate([p.times for p in parts]))
    check_size(source, targets=len(targets), times=axis.size, series=len(owner) + (replicas_from is not None))
    row_of = {name: i for i, name in enumerate(targets)}
    metrics: dict[str, np.ndarray] = {}
    replicas: np.ndarray | None = None
    for part in parts:
        rows = np.array([row_of[t] for t in part.targets])
        cols = np.searchsorted(axis, part.times)

        def widen(arr: np.ndarray, rows: np.ndarray = rows, cols: np.ndarray = cols) -> np.ndarray:
            out = np.full((len(targets), axis.size), np.nan)
            out[np.ix_(rows, cols)] = arr
            return _frozen(out)

        metrics.update({name: widen(arr) for name, arr in part.metrics.items()})
        if part.replicas is not None:
            replicas = widen(part.replicas)
    return Recording(
        source=source,
        times=_frozen(axis),
        targets=targets,
        metrics=metrics,
        replicas=replicas,
        step=_sampled(axis, [*metrics.values(), replicas]),
    )


def select(rec: Recording, *, metric: str | None = None, target: str | None = None) -> Recording:
    """The same recording narrowed to one metric and/or one target (times stay the union axis)."""
    problems = Problems(rec.source)
    if metric is not None and metric not in rec.metrics:
        problems.add("", f"no metric {metric!r} (metrics: {_names(rec.metrics)})")
    if target is not None and target not in rec.targets:
        problems.add("", f"no target {target!r} (targets: {_names(rec.targets)})")
    problems.raise_if_any()
    metrics = rec.metrics if metric is None else {metric: rec.metrics[metric]}
    targets, replicas = rec.targets, rec.replicas
    if target is not None:
        row = rec.targets.index(target)
        metrics = {name: _frozen(arr[row : row + 1].copy()) for name, arr in metrics.items()}
        replicas = None if replicas is None else _frozen(replicas[row : row + 1].copy())
        targets = (target,)
    return Recording(
        rec.source, rec.times, targets, metrics, replicas, _sampled(rec.times, [*metrics.values(), replicas])
    )


def require_metrics(rec: Recording) -> Recording:
    """`rec` itself, if it has at least one metric to replay (a replicas series alone is not enough)."""
    if not rec.metrics:
        raise DataError(rec.source, "no metrics to replay (only replicas)")
    return rec


def resample(
    rec: Recording,
    *,
    interval: float,
    start: float | None = None,
    end: float | None = None,
    hold: float | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """The recording on a regular grid: (grid (K,), {metric: (N, K)}, replicas (N, K) or None).

    The grid runs from `start` (default: the first time) in steps of `interval` up to, not including, `end`
    (default: the last time + step, so the last sample gets its own step). Each grid point takes the latest
    sample of its series at or before it, but only while that sample is younger than `hold` seconds
    (default: rec.step), i.e. a sample covers [t, t + hold). Past that the point is NaN: a gap is missing
    data, never zero. With 5-min samples and one missing: grid points in the missing 5 minutes are NaN.
    Jittery raw scrapes (spacing 15.002 s around a 15 s step) want a hold slightly above the step.

    A grid of more than MAX_CELLS (targets x ticks) is a DataError, raised before anything is allocated: two
    samples 100 years apart at a 15 s interval would be 210 M ticks.
    """
    if not (interval > 0 and math.isfinite(interval)):
        raise ValueError(f"interval must be positive seconds, got {interval!r}")
    hold = rec.step if hold is None else float(hold)
    if not hold > 0:
        raise ValueError(f"hold must be positive seconds, got {hold!r}")
    first = rec.start if start is None else float(start)
    stop = rec.end if end is None else float(end)
    if not (math.isfinite(first) and math.isfinite(stop)):
        raise ValueError(f"start and end must be finite, got {first!r}, {stop!r}")
    count = _grid_size(first, stop, interval)
    _refuse_grid(rec, interval, first, stop, count, len(rec.targets))
    grid = first + interval * np.arange(count, dtype=np.float64)

    # last union time at or before each grid point, -1 before the first sample
    at = np.searchsorted(rec.times, grid, side="right") - 1
    positions = np.arange(rec.times.size)

    def held_rows(arr: np.ndarray) -> np.ndarray:
        # index of the latest non-NaN sample at or before each union time, per row (-1: none yet)
        latest = np.maximum.accumulate(np.where(np.isnan(arr), -1, positions), axis=1)
        src = np.where(at >= 0, latest[:, np.maximum(at, 0)], -1)  # (rows, K)
        safe = np.maximum(src, 0)
        fresh = (src >= 0) & (grid - rec.times[safe] < hold)
        return np.where(fresh, np.take_along_axis(arr, safe, axis=1), np.nan)

    # Rows are independent, so a block of them at a time: the intermediates (five (rows, K) arrays) cost a block,
    # not 5 x 8 bytes per cell of the whole grid (1.6 GB for 1,000 targets x 1 week at 15 s).
    rows = max(1, RESAMPLE_CELLS // max(count, rec.times.size, 1))

    def held(arr: np.ndarray) -> np.ndarray:
        if arr.shape[0] <= rows:
            return held_rows(arr)
        out = np.empty((arr.shape[0], count))
        for r0 in range(0, arr.shape[0], rows):
            out[r0 : r0 + rows] = held_rows(arr[r0 : r0 + rows])
        return out

    metrics = {name: held(arr) for name, arr in rec.metrics.items()}
    replicas = None if rec.replicas is None else held(rec.replicas)
    return grid, metrics, replicas


def grid_size(rec: Recording, *, interval: float) -> int:
    """Ticks of resample(rec, interval=interval) with the default start and end, computed without resampling."""
    return _grid_size(rec.start, rec.end, interval)


def check_grid(rec: Recording, *, interval: float, targets: int | None = None) -> int:
    """The ticks of resample(rec, interval=interval), after the check resample makes on the whole grid (for a
    caller that resamples a few targets at a time); `targets` counts them (default: all of rec's)."""
    count = grid_size(rec, interval=interval)
    _refuse_grid(rec, interval, rec.start, rec.end, count, len(rec.targets) if targets is None else targets)
    return count


def _refuse_grid(rec: Recording, interval: float, first: float, stop: float, count: int, targets: int) -> None:
    cells = targets * count
    if cells > MAX_CELLS:
        days = (stop - first) / 86400
        raise DataError(
            rec.source,
            f"resampled every {interval:g} s, its {days:,.1f} days (to one step past the last sample) are"
            f" {count:,} ticks x {targets:,} target(s) = {cells:,} cells, more than the limit of"
            f" {MAX_CELLS:,}: replay a shorter span or fewer targets, or use a policy with a longer interval",
        )


def _grid_size(first: float, stop: float, interval: float) -> int:
    # round before ceil so float noise in (end - start) / interval cannot add a grid point past `end`
    return max(0, int(np.ceil(round((stop - first) / interval, 9))))


def narrowed(rec: Recording, rows: slice) -> Recording:
    """The same recording for the targets in `rows` only, keeping its time axis and sample step.

    Resampling and replaying treat every target on its own, so the rows of a narrowed recording replay exactly
    as they do in the whole one (select() recomputes the step, which the whole recording's replay does not)."""
    return Recording(
        source=rec.source,
        times=rec.times,
        targets=rec.targets[rows],
        metrics={name: arr[rows] for name, arr in rec.metrics.items()},
        replicas=None if rec.replicas is None else rec.replicas[rows],
        step=rec.step,
    )


def _names(names: Sequence[str] | Mapping[str, object], limit: int = 8) -> str:
    """'a, b, c' for messages, shortened to the first `limit` names."""
    items = list(names)
    text = ", ".join(repr(n) for n in items[:limit])
    return f"{text}, ... ({len(items)} in all)" if len(items) > limit else text or "none"
