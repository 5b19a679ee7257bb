"""The metric-source interface the live loop reads through: one instant query for all targets at once, and one
range query per metric for the history that fills the windows at start."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from scaler.registry import ProviderConfig


class MetricSource(Protocol):
    """Answers one query per metric per tick, grouped by the label that names the target.

    Errors are scaler.errors.TransientError / PermanentError; the loop turns any of them into "no data" for
    every target of that metric (never zero).
    """

    def query(self, promql: str, *, by: str, now: float) -> dict[str, float]:
        """{value of label `by`: finite value} for every series the query returned at time `now`.

        Series without the label, with a NaN or infinite value, or (for a range-vector result) whose newest
        sample is older than the source's staleness limit are left out: the caller reads a missing key as
        no data for that target.
        """

    def query_range(self, promql: str, *, by: str, start: float, end: float, step: float) -> dict[str, np.ndarray]:
        """{value of label `by`: values} of `promql` evaluated every `step` seconds from `start` to `end`, each
        an array on range_grid(start, end, step), NaN where the series had no finite value. Series without the
        label are left out. The live loop asks it once per metric when it loads a policy's state, to fill the
        windows; a source without it starts them empty."""


def range_grid(start: float, end: float, step: float) -> np.ndarray:
    """The times a range query answers at: start, start + step, ... up to end, with start and end in whole
    seconds as the Prometheus API client sends them (1,700,000,000.4 -> 1,700,000,000). ValueError for a step
    that is not positive or an end before the start."""
    if not (step > 0 and math.isfinite(step) and math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"a range needs a finite start, end and step > 0, got {start}, {end}, {step}")
    first, last = round(start), round(end)
    if last < first:
        raise ValueError(f"a range ends ({last}) before it starts ({first})")
    return first + step * np.arange(int(math.floor((last - first) / step + 1e-9)) + 1)


@dataclass(frozen=True)
class SourceContext:
    """What builders need besides their own config section."""

    base_dir: Path | None = None  # relative secret and CA files resolve against it: the config file's directory


class SourceConfig(ProviderConfig):
    """Base of every metric source's config section; see scaler.registry for the shape."""

    def build(self, ctx: SourceContext) -> MetricSource:
        """The source, with any secrets the config points at read now; ConfigError if one cannot be."""
        return super().build(ctx)
