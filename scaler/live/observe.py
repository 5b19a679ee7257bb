"""Step 1 of a tick: read every target's replica counts and every metric (one query per metric for all
targets), concurrently; a failure costs the target or the metric it hit, never the tick. A reading outside its
metric kind's range (negative, absurdly large, not finite) is no data for that target, and is reported.
Before a policy's first tick, `read_history` reads each metric's history the same way (one range query per
metric for all targets) for the windows to start from."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from scaler.decision.backfill import Span
from scaler.errors import PermanentError, ProviderError, ScalerError
from scaler.policy.model import Metric
from scaler.sources.base import MetricSource, range_grid
from scaler.targets.base import Replicas, ScaleTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejected:
    """A reading that cannot be a load (scaler.policy.model.VALID_RANGE), turned into no data for its target."""

    metric: str
    target: str  # the target's label value, as the query named it
    value: float
    valid: tuple[float, float]  # the range it fell outside


@dataclass(frozen=True)
class Observation:
    """What a tick saw, per target in column order."""

    reads: tuple[Replicas | ProviderError, ...]  # each target's counts, or why they could not be read
    read_ok: np.ndarray  # bool
    current: np.ndarray  # the count the decision starts from (a target not read: its last known count)
    ready: np.ndarray
    observed: np.ndarray  # (metrics, targets), NaN = no data (and for every target not read)
    query_errors: dict[str, str]  # metric name -> why its query failed
    rejected: tuple[Rejected, ...] = ()  # readings outside their kind's range, now NaN in `observed`


def observe(
    targets: Sequence[ScaleTarget],
    labels: Sequence[str],
    metrics: Sequence[Metric],
    *,
    target_label: str,
    known: np.ndarray,
    floor: int,
    source: MetricSource,
    now: float,
    call: Callable,
    pool: Executor,
) -> Observation:
    """Read targets and metrics together. A target that cannot be read keeps its last known count (`known`,
    else the policy minimum `floor`) and gets no data, so it is held and nothing is written to it.
    `call(fn)` runs a provider call with the shared retry policy."""
    reads_f = [pool.submit(_read_one, t, call) for t in targets]
    observed, errors = _read_metrics(metrics, labels, target_label, source, now, pool)
    rejected = _reject_out_of_range(metrics, labels, observed)
    reads = tuple(f.result() for f in reads_f)
    ok = np.array([isinstance(r, Replicas) for r in reads], dtype=bool)
    current = np.array([r.desired if isinstance(r, Replicas) else np.nan for r in reads], dtype=float)
    ready = np.array([r.ready if isinstance(r, Replicas) else np.nan for r in reads], dtype=float)
    current = np.where(ok, current, np.where(np.isnan(known), floor, known))
    ready = np.where(ok, ready, current)
    observed[:, ~ok] = np.nan
    return Observation(reads, ok, current, ready, observed, errors, rejected)


def _read_one(t: ScaleTarget, call: Callable) -> Replicas | ProviderError:
    try:
        return call(t.read)
    except ProviderError as e:
        return e
    except Exception as e:  # an adapter bug must cost one target, not the tick
        log.exception("reading %s failed", t.id)
        return PermanentError(f"{t.id}: {type(e).__name__}: {e}", code=type(e).__name__)


def _read_metrics(metrics: Sequence[Metric], labels: Sequence[str], by: str, source: MetricSource, now: float,
                  pool: Executor) -> tuple[np.ndarray, dict[str, str]]:
    """(metrics, targets) values, NaN where a query failed or returned nothing for a target."""
    observed = np.full((len(metrics), len(labels)), np.nan)
    column = {label: j for j, label in enumerate(labels)}
    errors: dict[str, str] = {}

    def one(m: Metric):
        try:
            return source.query(m.query, by=by, now=now)
        except ScalerError as e:
            return e

    # The queries go out together: a tick waits for the slowest one, not for their sum.
    for i, (m, got) in enumerate(zip(metrics, pool.map(one, metrics), strict=True)):
        if isinstance(got, Exception):
            errors[m.name] = str(got)
            continue
        row = observed[i]
        for label, value in got.items():
            j = column.get(label)
            if j is not None:
                row[j] = _number(value)
    return observed, errors


def _reject_out_of_range(metrics: Sequence[Metric], labels: Sequence[str],
                         observed: np.ndarray) -> tuple[Rejected, ...]:
    """Set every reading outside its kind's range to NaN in place, and say which they were.

    Utilization 1e308 on 5 replicas would ask for 50 and then overflow the decision log; -10 % would ask for 2.
    Neither is load, so the target gets what any missing reading gets: a hold (or the fallback), never a scale.
    NaN was already no data and is not reported again.
    """
    rejected: list[Rejected] = []
    for i, m in enumerate(metrics):
        low, high = m.kind.valid_range
        row = observed[i]
        bad = np.flatnonzero(~np.isnan(row) & ~((row >= low) & (row <= high)))
        rejected += [Rejected(m.name, labels[j], float(row[j]), (low, high)) for j in bad.tolist()]
        row[bad] = np.nan
    return tuple(rejected)


def _number(value: float) -> float:
    """The reading as a float; an integer beyond float range is infinite (and so out of range), not a crash."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


@dataclass(frozen=True)
class History:
    """One metric's history on its span's grid: times (samples,) and values (samples, targets), NaN = none."""

    times: np.ndarray
    values: np.ndarray
    found: int  # targets with at least one sample


def read_history(
    metrics: Sequence[Metric],
    labels: Sequence[str],
    spans: Sequence[Span | None],
    *,
    target_label: str,
    source: MetricSource,
    pool: Executor,
) -> tuple[dict[int, History], dict[str, str]]:
    """Each metric's history over its span (None: none needed), one range query per metric for all targets,
    concurrently: ({metric index: History}, {metric name: why its query failed}). A metric whose answer names
    none of the targets is left out of both (there is no history to fill from, and nothing failed); readings
    outside the metric kind's range are no data, as in a tick."""
    column = {label: j for j, label in enumerate(labels)}

    def one(i: int) -> History | Exception | None:
        m, span = metrics[i], spans[i]
        assert span is not None
        try:
            got = source.query_range(m.query, by=target_label, start=span.start, end=span.end, step=span.step)
        except ScalerError as e:
            return e
        times = range_grid(span.start, span.end, span.step)
        values = np.full((times.size, len(labels)), np.nan)
        low, high = m.kind.valid_range
        found = 0
        for label, series in got.items():
            j = column.get(label)
            if j is None:
                continue
            row = np.asarray(series, dtype=float)[:times.size]
            values[:row.size, j] = np.where((row >= low) & (row <= high), row, np.nan)
            found += int(np.isfinite(values[:, j]).any())
        return History(times, values, found) if found else None

    wanted = [i for i, span in enumerate(spans) if span is not None]
    histories: dict[int, History] = {}
    errors: dict[str, str] = {}
    for i, got in zip(wanted, pool.map(one, wanted), strict=True):
        if isinstance(got, Exception):
            errors[metrics[i].name] = str(got)
        elif got is not None:
            histories[i] = got
    return histories, errors
