"""The metric-source interface the live loop reads through: one instant query for all targets at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


@dataclass(frozen=True)
class SourceContext:
    """What builders need besides their own config section."""

    base_dir: Path | None = None  # relative secret and CA files resolve against it: the config file's directory


class SourceConfig(ProviderConfig):
    """Base of every metric source's config section; see scaler.registry for the shape."""

    def build(self, ctx: SourceContext) -> MetricSource:
        """The source, with any secrets the config points at read now; ConfigError if one cannot be."""
        return super().build(ctx)
